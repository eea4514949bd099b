//! Grouped placement on the host (`Loader::grouped`): each segment takes
//! pages of its own next to other modules' segments of the same permissions.
//! Modules run and unload back to an empty region in any order; the region
//! holds a few mappings however many modules are loaded, where the default
//! layout holds about three a module; no mapping is ever writable and
//! executable; failed loads change nothing; and a module alone takes no
//! more of the region than its own pages.

mod common;

use common::placement::*;
use common::*;
use modload::{ErrorKind, GroupedUsage, Loader, Namespace, Region, Segment};
use modload_platform::host::{new_region, Placement, HOST_PROTECTION};

fn grouped(env: &Env) -> Loader<'static> {
    env.loader().grouped()
}

fn load(loader: &Loader<'static>, n: usize) -> modload::Module<'static> {
    let bytes = chain().get(n - 1).expect("chain module");
    // SAFETY: the fixtures are this project's own test code.
    unsafe { loader.load(&chain_name(n), bytes) }
        .unwrap_or_else(|error| panic!("load {}: {error}", chain_name(n)))
}

fn region_range(env: &Env) -> (u64, u64) {
    let start = env.region.start().as_u64();
    (start, start + env.region.usage().size as u64)
}

fn assert_empty(env: &Env) {
    env.assert_back_to_baseline();
    assert_eq!(env.region.grouped_usage(), GroupedUsage::default());
    let (start, end) = region_range(env);
    assert_range_read_write(start, end);
}

/// 120 chain modules, grouped: every one runs, code sits in `r-x` pages and
/// data in `rw-` ones, the region is a handful of mappings where the same
/// modules placed by default make about three a module, and unloading them
/// all in reverse gives every page back, read-write.
#[test]
fn many_grouped_modules_run_in_few_mappings_and_unload() {
    let env = Env::anywhere();
    let loader = grouped(&env);
    let (modules, snapshots) = watching_maps(|| {
        (1..=COUNT)
            .map(|n| {
                let module = load(&loader, n);
                assert_eq!(chain_value(&module, n), (n * (n + 1) / 2) as i64);
                module
            })
            .collect::<Vec<_>>()
    });
    assert!(snapshots > 0);
    for (index, module) in modules.iter().enumerate() {
        let n = index + 1;
        check_chain_module(module, n);
        let code = module.symbol(&format!("chain_{n}_value")).expect("code");
        assert_eq!(perms_at(code.as_u64()).get(..3), Some("r-x"));
    }
    let (start, end) = region_range(&env);
    let grouped_maps = mappings_in(start, end).len();
    let usage = env.region.grouped_usage();
    assert!(usage.segments >= COUNT * 3 * 4096, "{usage:?}");
    assert_eq!(env.used() - env.baseline.used, usage.reserved);

    // The same modules placed by default, for comparison.
    let other = Env::anywhere();
    let default_modules: Vec<_> = (1..=COUNT).map(|n| load(&other.loader(), n)).collect();
    let (other_start, other_end) = region_range(&other);
    let default_maps = mappings_in(other_start, other_end).len();
    eprintln!(
        "{COUNT} modules: {grouped_maps} mappings grouped ({} B of chunks for {} B of \
         segments), {default_maps} placed by default",
        usage.reserved, usage.segments
    );
    assert!(default_maps >= 2 * COUNT, "{default_maps} default mappings");
    assert!(
        grouped_maps * 10 <= default_maps,
        "{grouped_maps} grouped mappings against {default_maps}"
    );
    for module in default_modules.into_iter().rev() {
        unload(module);
    }
    other.assert_back_to_baseline();

    let ((), _) = watching_maps(|| {
        for module in modules.into_iter().rev() {
            unload(module);
        }
    });
    assert_empty(&env);
}

/// A grouped loader into a namespace of its own (with the host exports) on
/// `region`, so that its modules depend on no other.
fn separate(region: &'static Region) -> Loader<'static> {
    let namespace: &'static Namespace = Box::leak(Box::new(Namespace::new()));
    namespace
        .add_host_export("host_add", address(host_add as *const ()))
        .expect("fresh namespace");
    Loader::new(namespace, region, &HOST_PROTECTION).grouped()
}

/// Unloading in any order (every other module first, then the rest) leaves
/// holes that later loads fill, and in the end gives every chunk back. The
/// modules are the chain's first, each in a namespace of its own, so any of
/// them can go first.
#[test]
fn grouped_modules_unload_in_any_order() {
    let env = Env::anywhere();
    let mut modules: Vec<Option<_>> = (0..40)
        .map(|_| Some(load(&separate(env.region), 1)))
        .collect();
    let (full, full_segments) = (env.used(), env.region.grouped_usage().segments);
    for slot in modules.iter_mut().skip(1).step_by(2) {
        unload(slot.take().expect("loaded"));
    }
    assert_eq!(env.region.grouped_usage().segments * 2, full_segments);
    // The freed pages are taken again before any new chunk.
    let again: Vec<_> = (0..20).map(|_| load(&separate(env.region), 1)).collect();
    assert_eq!(env.region.grouped_usage().segments, full_segments);
    assert_eq!(env.used(), full);
    for module in modules.iter().flatten().chain(&again) {
        assert_eq!(chain_value(module, 1), 1);
    }
    for module in again.into_iter().chain(modules.into_iter().flatten()) {
        unload(module);
    }
    assert_empty(&env);
}

/// A module alone in a small region takes exactly its own pages: each
/// class's first chunk is as large as its first segment. In a larger
/// region, each class holds a chunk of 1/512 of it.
#[test]
fn a_grouped_module_alone_takes_only_its_pages() {
    let region = new_region(2 << 20, Placement::Anywhere).expect("small region");
    let baseline = region.usage();
    let module = load(&separate(region), 1);
    let usage = region.grouped_usage();
    assert_eq!(usage.reserved, usage.segments);
    assert_eq!(region.usage().used - baseline.used, usage.segments);
    // Code, read-only data and data: at least a page each.
    assert!(usage.segments >= 3 * 4096);
    unload(module);
    assert_eq!(region.usage(), baseline);
    assert_eq!(region.grouped_usage(), GroupedUsage::default());

    let env = Env::anywhere();
    let module = load(&separate(env.region), 1);
    let chunk = env.region.usage().size / 512;
    assert_eq!(env.region.grouped_usage().reserved, 3 * chunk);
    unload(module);
    assert_empty(&env);
}

/// A load that fails (an import nothing defines) leaves no page taken.
#[test]
fn failed_grouped_loads_change_nothing() {
    let env = Env::anywhere();
    let loader = grouped(&env);
    let first = load(&loader, 1);
    let before = (env.used(), env.region.grouped_usage());
    let bytes = chain().get(9).expect("chain module");
    // SAFETY: the fixtures are this project's own test code.
    let Err(error) = (unsafe { loader.load(&chain_name(10), bytes) }) else {
        panic!("chain_9_value is not defined");
    };
    assert!(
        matches!(error.kind, ErrorKind::Unresolved { .. }),
        "{error}"
    );
    assert_eq!((env.used(), env.region.grouped_usage()), before);
    unload(first);
    assert_empty(&env);
}

/// The stages work on the segments where they are: each is relocated in
/// place, `bytes` is empty (there is no one block), and `segment_bytes`
/// gives each segment where its code will run.
#[test]
fn grouped_segments_are_read_where_they_are() {
    let env = Env::anywhere();
    let loader = grouped(&env);
    let bytes = chain().first().expect("chain module");
    let object = loader.parse(&chain_name(1), bytes).expect("parse");
    let finalized = loader
        .plan(object)
        .expect("plan")
        .allocate()
        .expect("allocate")
        .relocate()
        .expect("relocate")
        .finalize()
        .expect("finalize");
    assert!(finalized.bytes().is_empty());
    let code = finalized.segment_bytes(Segment::Code);
    let data = finalized.segment_bytes(Segment::Writable);
    assert!(!code.is_empty() && !data.is_empty());
    assert_eq!(perms_at(code.as_ptr() as u64).get(..3), Some("r-x"));
    assert_eq!(perms_at(data.as_ptr() as u64).get(..3), Some("rw-"));
    let code = code.as_ptr() as u64..code.as_ptr() as u64 + code.len() as u64;
    // SAFETY: the fixture's constructors are this project's own test code.
    let module = unsafe { finalized.start() }.expect("start");
    let value = module.symbol("chain_1_value").expect("symbol").as_u64();
    assert!(code.contains(&value), "{value:#x} outside {code:x?}");
    assert_eq!(chain_value(&module, 1), 1);
    unload(module);
    assert_empty(&env);
}
