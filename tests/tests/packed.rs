//! Packed placement on the host (`Loader::packed` with a memfd region and its
//! `MemfdWriter`): many small modules share pages by permission class, run,
//! and unload back to an empty region; no mapping is ever writable and
//! executable; a module keeps running while others are loaded into and
//! unloaded from its pages; failed loads change nothing; and the pages
//! committed stay within 5% of the sections.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::placement::*;
use common::*;
use modload::{ErrorKind, Loader, Module, Namespace, PackedUsage, Region, RegionUsage};
use modload_platform::host::{new_packed_region, PackedRegion, Placement, HOST_PROTECTION};
use modload_tests::{compile_c, fixture, CModel};

const PAGE: u64 = 4096;

/// A packed region and a namespace of their own, with the host exports.
struct Packed {
    packed: PackedRegion,
    namespace: &'static Namespace,
    baseline: RegionUsage,
}

impl Packed {
    fn new(size: usize) -> Self {
        let packed = new_packed_region(size, Placement::Anywhere).expect("packed region");
        let namespace: &'static Namespace = Box::leak(Box::new(Namespace::new()));
        for (name, function) in [
            ("host_add", host_add as *const ()),
            ("host_mul", host_mul as *const ()),
            ("host_record", host_record as *const ()),
            ("host_counter", host_counter as *const ()),
        ] {
            namespace
                .add_host_export(name, address(function))
                .expect("fresh namespace");
        }
        Self {
            packed,
            namespace,
            baseline: packed.region.usage(),
        }
    }

    fn region(&self) -> &'static Region {
        self.packed.region
    }

    fn loader(&self) -> Loader<'static> {
        Loader::new(self.namespace, self.packed.region, &HOST_PROTECTION).packed(self.packed.writer)
    }

    fn try_load(&self, name: &str, bytes: &[u8]) -> Result<Module<'static>, modload::LoadError> {
        // SAFETY: the fixtures are this project's own test code.
        unsafe { self.loader().load(name, bytes) }
    }

    fn load(&self, name: &str, bytes: &[u8]) -> Module<'static> {
        self.try_load(name, bytes)
            .unwrap_or_else(|error| panic!("load {name}: {error}"))
    }

    /// The region's address range.
    fn range(&self) -> (u64, u64) {
        let start = self.region().start().as_u64();
        (start, start + self.region().usage().size as u64)
    }

    fn assert_empty(&self) {
        assert_eq!(self.region().usage(), self.baseline, "region usage changed");
        assert_eq!(self.region().packed_usage(), PackedUsage::default());
    }
}

/// Every page of the region is read-write (and not executable).
fn assert_region_read_write(env: &Packed) {
    let (start, end) = env.range();
    assert_range_read_write(start, end);
}

/// 120 small modules, each importing from the one before, packed: every one
/// runs, they share pages (far fewer pages than three per module), the pages
/// committed are within 5% of the sum of their sections, and unloading them
/// all gives every page back, read-write.
#[test]
fn many_small_modules_pack_run_and_unload() {
    let env = Packed::new(64 << 20);
    let chain = chain();
    let loader = env.loader();
    let section_sum: u64 = chain
        .iter()
        .enumerate()
        .map(|(index, bytes)| sections(&loader, &chain_name(index + 1), bytes))
        .sum();

    let (modules, snapshots) = watching_maps(|| {
        let mut modules = Vec::new();
        for (index, bytes) in chain.iter().enumerate() {
            let n = index + 1;
            let module = env.load(&chain_name(n), bytes);
            assert_eq!(chain_value(&module, n), (n * (n + 1) / 2) as i64);
            modules.push(module);
        }
        modules
    });
    assert!(snapshots > 0);
    for (index, module) in modules.iter().enumerate() {
        let n = index + 1;
        check_chain_module(module, n);
        let bulk = format!("chain_{n}_bulk");
        assert_eq!(call1(module, &bulk, 11), call1(module, &bulk, 11));
    }

    let usage = env.region().packed_usage();
    let committed = usage.committed as u64;
    let overhead = committed as f64 / section_sum as f64 - 1.0;
    eprintln!(
        "{COUNT} packed modules: sections {section_sum} B, pieces {} B, committed pages {committed} B \
         ({:+.2}%), chunks reserved {} B, region used {} B",
        usage.pieces,
        overhead * 100.0,
        usage.reserved,
        env.region().usage().used - env.baseline.used,
    );
    assert!(usage.pieces as u64 >= section_sum);
    assert!(
        committed as f64 <= section_sum as f64 * 1.05,
        "packed overhead {:+.2}% (committed {committed} B for {section_sum} B of sections)",
        overhead * 100.0
    );
    // What the region handed to packing covers the committed pages, plus at
    // most the idle rest of one chunk per class.
    let reserved = (env.region().usage().used - env.baseline.used) as u64;
    assert_eq!(reserved, usage.reserved as u64);
    assert!(reserved >= committed);
    // Far below the default mode's at least three pages per module.
    assert!(committed < COUNT as u64 * 3 * PAGE);

    let ((), _) = watching_maps(|| {
        for module in modules.into_iter().rev() {
            module.unload().expect("unload in reverse order");
        }
    });
    env.assert_empty();
    assert_region_read_write(&env);
}

/// Code pages keep read+execute from the moment a piece is placed in them
/// until the last piece in them goes: a thread calls module A in a loop while
/// B is loaded into A's code page and C is unloaded from it, and A's page is
/// never anything but `r-x` in any snapshot of the maps. B's code starts in
/// the page A's looping function is in.
#[test]
fn a_module_keeps_running_while_its_pages_are_shared_and_freed() {
    let env = Packed::new(16 << 20);
    let chain = chain();
    let a = env.load(&chain_name(1), &chain[0]);
    let spin = "chain_1_spin";
    let a_spin = a.symbol(spin).expect("chain_1_spin").as_u64();
    let a_page = a_spin & !(PAGE - 1);
    assert_eq!(perms_at(a_page), "r-xs");

    let stop = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    let observed = AtomicU64::new(0);
    std::thread::scope(|scope| {
        let caller = scope.spawn(|| {
            // SAFETY: chain_1_spin is `long f(long)`.
            let function = unsafe { a.get::<extern "C" fn(i64) -> i64>(spin) }.unwrap();
            let mut x = 0i64;
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(function(x), x + 1);
                x += 1;
                calls.fetch_add(1, Ordering::Relaxed);
            }
        });
        let watcher = scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                assert_no_writable_executable();
                assert_eq!(perms_at(a_page), "r-xs", "A's code page changed");
                observed.fetch_add(1, Ordering::Relaxed);
            }
        });
        // Stops the threads even if an assertion below fails.
        let _stop = StopOnDrop(&stop);
        for _ in 0..20 {
            // B goes right after A, into the page A's `spin` runs from;
            // C (which imports from B) after B. Then B is unloaded from A's
            // page while C still runs, and C after it.
            let b = env.load(&chain_name(2), &chain[1]);
            let b_start = b.symbol("chain_2_f0").unwrap().as_u64();
            assert_eq!(
                b_start & !(PAGE - 1),
                a_page,
                "B was not packed into A's code page"
            );
            let c = env.load(&chain_name(3), &chain[2]);
            assert_eq!(chain_value(&c, 3), 6);
            assert_eq!(call1(&c, "chain_3_spin", 1), 4);
            // B cannot go while C binds to it.
            let b = b.unload().unwrap_err().module;
            assert_eq!(chain_value(&b, 2), 3);
            c.unload().expect("unload C");
            b.unload().expect("unload B from A's page");
            assert_eq!(perms_at(a_page), "r-xs");
            // SAFETY: A keeps the page mapped and readable (r-x); only bytes
            // are read, nothing runs from them.
            let left = unsafe { std::slice::from_raw_parts(b_start as *const u8, 32) };
            assert!(
                left.iter().all(|byte| *byte == 0),
                "B's code was left in A's executable page: {left:02x?}"
            );
        }
        // Let both threads get some work done, then stop them.
        while (calls.load(Ordering::Relaxed) < 1000 || observed.load(Ordering::Relaxed) < 10)
            && !caller.is_finished()
            && !watcher.is_finished()
        {
            std::thread::yield_now();
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(chain_value(&a, 1), 1);
    a.unload().expect("unload A");
    env.assert_empty();
    assert_region_read_write(&env);
}

/// A load that fails after its pieces were taken (an unresolved symbol is
/// found while relocating) leaves the region and earlier modules as they were.
#[test]
fn failed_packed_loads_change_nothing() {
    let env = Packed::new(16 << 20);
    let chain = chain();
    let first = env.load(&chain_name(1), &chain[0]);
    let second = env.load(&chain_name(2), &chain[1]);
    let usage = env.region().usage();
    let packed = env.region().packed_usage();

    let unresolved = modload_tests::read(&compile_c(&fixture("unresolved.c"), CModel::Pic, &[]));
    let error = env.try_load("unresolved.o", &unresolved).unwrap_err();
    assert!(
        matches!(error.kind, ErrorKind::Unresolved { .. }),
        "{error}"
    );
    assert_eq!(env.region().usage(), usage);
    assert_eq!(env.region().packed_usage(), packed);

    // Module 4 needs module 3, which is not loaded.
    let error = env.try_load(&chain_name(4), &chain[3]).unwrap_err();
    assert!(
        matches!(error.kind, ErrorKind::Unresolved { .. }),
        "{error}"
    );
    assert_eq!(env.region().usage(), usage);
    assert_eq!(env.region().packed_usage(), packed);

    // Dropping a module between the stages frees its pieces too.
    let object = env.loader().parse(&chain_name(3), &chain[2]).unwrap();
    let relocated = env.loader().plan(object).unwrap().allocate().unwrap();
    assert!(env.region().packed_usage().pieces > packed.pieces);
    drop(relocated.relocate().unwrap());
    assert_eq!(env.region().usage(), usage);
    assert_eq!(env.region().packed_usage(), packed);

    assert_eq!(chain_value(&second, 2), 3);
    second.unload().unwrap();
    first.unload().unwrap();
    env.assert_empty();
}

/// A region too small for the pieces: the load fails with `OutOfMemory` and
/// takes nothing.
#[test]
fn packed_out_of_memory_is_reported_and_leaves_nothing() {
    // 128 KiB: one chunk for code fits, none for the rest.
    let env = Packed::new(32 * PAGE as usize);
    let chain = chain();
    let error = env.try_load(&chain_name(1), &chain[0]).unwrap_err();
    assert!(
        matches!(error.kind, ErrorKind::OutOfMemory { .. }),
        "{error}"
    );
    env.assert_empty();
}

/// The m1, m2, m3 chain (constructors, destructors, tables of code addresses
/// in relro data, data pointing into an earlier module) packed.
#[test]
fn the_module_chain_runs_packed() {
    let env = Packed::new(16 << 20);
    let object = |name: &str| {
        let path = compile_c(&fixture(name), CModel::Pic, &[]);
        (module_name(&path), modload_tests::read(&path))
    };
    let (m1_name, m1) = object("m1.c");
    let (m2_name, m2) = object("m2.c");
    let (m3_name, m3) = object("m3.c");
    take_log();
    let m1 = env.load(&m1_name, &m1);
    let m2 = env.load(&m2_name, &m2);
    let m3 = env.load(&m3_name, &m3);
    assert_eq!(take_log(), [300, 301]);
    assert_eq!(call0(&m1, "m1_value"), 42);
    assert_eq!(call1(&m1, "m1_fill", 2), 152);
    assert_eq!(call1(&m1, "m1_scratch_at", 5), 7);
    assert_eq!(call2(&m1, "m1_dispatch", 3, 10), 100);
    assert_eq!(call1(&m2, "m2_scale", 3), 126);
    assert_eq!(call0(&m2, "m2_counter_via_ptr"), 7);
    assert_eq!(call0(&m3, "m3_ctor_state"), 12);
    assert_eq!(call0(&m3, "m3_greeting_ok"), 1);
    assert_eq!(call1(&m3, "m3_combine", 2), 94);
    // All three modules' code shares one page.
    let page =
        |module: &Module<'_>, name: &str| module.symbol(name).unwrap().as_u64() & !(PAGE - 1);
    assert_eq!(page(&m1, "m1_value"), page(&m3, "m3_combine"));
    m3.unload().unwrap();
    assert_eq!(take_log(), [302]);
    m2.unload().unwrap();
    m1.unload().unwrap();
    env.assert_empty();
    assert_region_read_write(&env);
}

/// Packed and default loads share one region: the default mode's
/// reservations and packed chunks come from the same heap and both return.
#[test]
fn packed_and_default_loads_share_a_region() {
    let env = Packed::new(16 << 20);
    let chain = chain();
    let packed = env.load(&chain_name(1), &chain[0]);
    let plain_loader = Loader::new(env.namespace, env.region(), &HOST_PROTECTION);
    // SAFETY: the fixtures are this project's own test code.
    let plain = unsafe { plain_loader.load(&chain_name(2), &chain[1]) }.unwrap();
    assert_eq!(chain_value(&plain, 2), 3);
    let second_packed = env.load(&chain_name(3), &chain[2]);
    assert_eq!(chain_value(&second_packed, 3), 6);
    second_packed.unload().unwrap();
    plain.unload().unwrap();
    packed.unload().unwrap();
    env.assert_empty();
    assert_region_read_write(&env);
}

/// The other host writer, the temporary `mmap` window, packs and runs the
/// same modules, and its windows are never executable either.
#[test]
fn the_window_writer_packs_too() {
    let env = Packed::new(16 << 20);
    let chain = chain();
    let loader = env.loader().packed(env.packed.window_writer);
    let (modules, _) = watching_maps(|| {
        (1..=10)
            .map(|n| {
                // SAFETY: the fixtures are this project's own test code.
                let module = unsafe { loader.load(&chain_name(n), &chain[n - 1]) }.unwrap();
                assert_eq!(chain_value(&module, n), (n * (n + 1) / 2) as i64);
                assert_eq!(
                    call0(&module, &format!("chain_{n}_check")),
                    (4 * n + 2) as i64
                );
                module
            })
            .collect::<Vec<_>>()
    });
    for module in modules.into_iter().rev() {
        module.unload().unwrap();
    }
    env.assert_empty();
    assert_region_read_write(&env);
}
