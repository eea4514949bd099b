//! Regions with 16 and 64 KiB pages on the host (a 4 KiB-page kernel maps
//! them aligned and protects them in runs of its own pages), as an AArch64
//! kernel built for those page sizes has: modules are planned in the
//! region's pages, load, run and unload in each placement, every range the
//! loader protects is whole pages of the region, no page is ever writable
//! and executable, and the region comes back as it was. And a backend that
//! refuses every call: the failed loads' pages are counted as lost, exactly,
//! and the rest of the region keeps working.

mod common;

use std::sync::Mutex;

use common::placement::{
    assert_no_writable_executable, assert_range_read_write, chain_object, check_chain_module,
    perms_at,
};
use common::{address, host_add};
use modload::{
    ErrorKind, Loader, MemoryProtection, Module, Namespace, Object, PageSize, Permissions, Plan,
    ProtectionError, Region, RegionUsage, Segment, VirtAddr,
};
use modload_platform::host::{
    host_page_size, new_packed_region, new_packed_region_with_page_size, new_region,
    new_region_with_page_size, PackedRegion, Placement, HOST_PROTECTION,
};

/// Chain modules per load sequence: each links to the one before it.
const MODULES: usize = 6;
const REGION_SIZE: usize = 32 << 20;
const LARGE_PAGES: [PageSize; 2] = [PageSize::Size16KiB, PageSize::Size64KiB];

fn chain_bytes() -> Vec<Vec<u8>> {
    (1..=MODULES)
        .map(|n| modload_tests::read(&chain_object(n)))
        .collect()
}

fn namespace() -> &'static Namespace {
    let namespace: &'static Namespace = Box::leak(Box::new(Namespace::new()));
    namespace
        .add_host_export("host_add", address(host_add as *const ()))
        .expect("fresh namespace");
    namespace
}

/// The host's protection, with every call it is asked for recorded.
struct Recording {
    calls: Mutex<Vec<(u64, u64, Permissions)>>,
}

impl Recording {
    fn leaked() -> &'static Self {
        Box::leak(Box::new(Self {
            calls: Mutex::new(Vec::new()),
        }))
    }

    fn calls(&self) -> Vec<(u64, u64, Permissions)> {
        self.calls.lock().unwrap().clone()
    }
}

impl MemoryProtection for Recording {
    fn protect(
        &self,
        start: VirtAddr,
        len: u64,
        permissions: Permissions,
    ) -> Result<(), ProtectionError> {
        self.calls
            .lock()
            .unwrap()
            .push((start.as_u64(), len, permissions));
        HOST_PROTECTION.protect(start, len, permissions)
    }

    fn sync_instruction_cache(&self, start: VirtAddr, len: u64) {
        HOST_PROTECTION.sync_instruction_cache(start, len);
    }
}

/// Refuses every call, as a backend that cannot change permissions at all.
struct Refusing;

const REFUSED: i32 = libc::EACCES;

impl MemoryProtection for Refusing {
    fn protect(&self, _: VirtAddr, _: u64, _: Permissions) -> Result<(), ProtectionError> {
        Err(ProtectionError { code: REFUSED })
    }

    fn sync_instruction_cache(&self, _: VirtAddr, _: u64) {}
}

static REFUSING: Refusing = Refusing;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Contiguous,
    Grouped,
    Packed,
}

const KINDS: [Kind; 3] = [Kind::Contiguous, Kind::Grouped, Kind::Packed];

/// A region with pages of `page`, and the packed region's writer when
/// `kind` is packed.
fn region(kind: Kind, page: PageSize) -> (&'static Region, Option<PackedRegion>) {
    if kind == Kind::Packed {
        let packed = new_packed_region_with_page_size(REGION_SIZE, Placement::Anywhere, page)
            .expect("packed region");
        (packed.region, Some(packed))
    } else {
        let region =
            new_region_with_page_size(REGION_SIZE, Placement::Anywhere, page).expect("region");
        (region, None)
    }
}

fn loader(
    kind: Kind,
    namespace: &'static Namespace,
    region: &'static Region,
    packed: Option<PackedRegion>,
    protection: &'static dyn MemoryProtection,
) -> Loader<'static> {
    let loader = Loader::new(namespace, region, protection);
    match (kind, packed) {
        (Kind::Grouped, _) => loader.grouped(),
        (Kind::Packed, Some(packed)) => loader.packed(packed.writer),
        _ => loader,
    }
}

fn plan_of(loader: &Loader<'_>, n: usize, bytes: &[u8]) -> Plan {
    let object = Object::parse(&format!("chain{n}.o"), bytes).expect("parse");
    loader.plan(object).expect("plan").plan().clone()
}

fn load(loader: &Loader<'static>, n: usize, bytes: &[u8]) -> Module<'static> {
    // SAFETY: the fixtures are this project's own test code.
    unsafe { loader.load(&format!("chain{n}.o"), bytes) }
        .unwrap_or_else(|error| panic!("load chain{n}.o: {error}"))
}

fn assert_balanced(usage: RegionUsage) {
    assert_eq!(
        usage.used + usage.free + usage.lost,
        usage.size,
        "{usage:?}"
    );
}

/// Every segment of the plan starts and ends on the region's page
/// boundaries, so no page holds two segments' permissions.
fn assert_plan_in_pages(plan: &Plan, page: PageSize) {
    let bytes = page.bytes();
    assert_eq!(plan.page_size(), page);
    assert_eq!(plan.size() % bytes, 0, "{plan:?}");
    assert!(plan.alignment().bytes() >= bytes, "{plan:?}");
    let mut ends = Vec::new();
    for segment in Segment::ALL {
        let extent = plan.segment(segment);
        if extent.size == 0 {
            continue;
        }
        assert_eq!(extent.offset % bytes, 0, "{segment:?} in {plan:?}");
        assert_eq!(extent.size % bytes, 0, "{segment:?} in {plan:?}");
        ends.push((extent.offset, extent.offset + extent.size));
    }
    ends.sort_unstable();
    for pair in ends.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "segments share a page: {plan:?}");
    }
}

/// A host region is protected in the kernel's pages, and a region of
/// larger pages is aligned to them.
#[test]
fn host_regions_take_the_kernels_page_size() {
    // SAFETY: sysconf reads a configuration value and touches no memory.
    let kernel = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    let host = host_page_size().expect("a supported page size");
    assert_eq!(host.bytes(), kernel);
    assert_eq!(
        new_region(1 << 20, Placement::Anywhere)
            .unwrap()
            .page_size(),
        host
    );
    let packed = new_packed_region(1 << 20, Placement::Anywhere).unwrap();
    assert_eq!(packed.region.page_size(), host);
    for page in LARGE_PAGES {
        for _ in 0..4 {
            let region = new_region_with_page_size(1 << 20, Placement::Anywhere, page).unwrap();
            assert_eq!(region.page_size(), page);
            assert_eq!(region.start().as_u64() % page.bytes(), 0);
            assert_eq!(region.usage().size, 1 << 20);
        }
    }
}

/// Modules planned, loaded, run and unloaded in a region with 16 and
/// 64 KiB pages, in each placement.
#[test]
fn modules_load_run_and_unload_in_large_pages() {
    let chain = chain_bytes();
    for page in LARGE_PAGES {
        for kind in KINDS {
            let what = format!("{kind:?}, {page} pages");
            let (region, packed) = region(kind, page);
            assert_eq!(region.page_size(), page, "{what}");
            assert_eq!(region.start().as_u64() % page.bytes(), 0, "{what}");
            let baseline = region.usage();
            let recording = Recording::leaked();
            let loader = loader(kind, namespace(), region, packed, recording);

            let mut modules = Vec::new();
            for (index, bytes) in chain.iter().enumerate() {
                let n = index + 1;
                assert_plan_in_pages(&plan_of(&loader, n, bytes), page);
                let module = load(&loader, n, bytes);
                check_chain_module(&module, n);
                let code = module.symbol(&format!("chain_{n}_value")).expect("code");
                assert_eq!(perms_at(code.as_u64()).get(..3), Some("r-x"), "{what}");
                modules.push(module);
                assert_balanced(region.usage());
            }
            assert_no_writable_executable();
            // Every module still answers once all are loaded.
            for (index, module) in modules.iter().enumerate() {
                check_chain_module(module, index + 1);
            }
            while let Some(module) = modules.pop() {
                module.unload().unwrap_or_else(|_| panic!("{what}: unload"));
            }

            let calls = recording.calls();
            assert!(!calls.is_empty(), "{what}: nothing protected");
            let region_start = region.start().as_u64();
            let region_end = region_start + region.usage().size as u64;
            for &(start, len, permissions) in &calls {
                assert_eq!(start % page.bytes(), 0, "{what}: {start:#x}+{len:#x}");
                assert_eq!(len % page.bytes(), 0, "{what}: {start:#x}+{len:#x}");
                assert!(len > 0, "{what}");
                assert!(!permissions.is_writable_and_executable(), "{what}");
                assert!(
                    region_start <= start && start + len <= region_end,
                    "{what}: {start:#x}+{len:#x} outside the region"
                );
            }
            assert_eq!(region.usage(), baseline, "{what}: not back to the start");
            assert_range_read_write(region_start, region_end);
        }
    }
}

/// A pending import bound in a region of large pages: its GOT slot's page,
/// one whole region page, is made read-write for the store and read-only
/// again, and the module then calls the definition.
#[test]
fn pending_imports_bind_through_whole_large_pages() {
    let chain = chain_bytes();
    for page in LARGE_PAGES {
        for kind in KINDS {
            let what = format!("{kind:?}, {page} pages");
            let (region, packed) = region(kind, page);
            let baseline = region.usage();
            let recording = Recording::leaked();
            let loader = loader(kind, namespace(), region, packed, recording).late_binding();
            // chain2 first: its call to chain_1_value waits for chain1.
            let caller = load(&loader, 2, &chain[1]);
            assert_eq!(caller.imports().pending, 1, "{what}");
            let before = recording.calls().len();
            let definer = load(&loader, 1, &chain[0]);
            assert_eq!(caller.imports().pending, 0, "{what}");
            check_chain_module(&caller, 2);
            let calls = recording.calls();
            let bound = calls[before..].windows(2).any(|pair| {
                let ((start, len, first), (again, len_again, second)) = (pair[0], pair[1]);
                start == again
                    && len == page.bytes()
                    && len_again == page.bytes()
                    && start % page.bytes() == 0
                    && first == Permissions::READ_WRITE
                    && second == Permissions::READ_ONLY
            });
            assert!(bound, "{what}: no whole-page store in {calls:x?}");
            assert_no_writable_executable();
            caller.unload().unwrap_or_else(|_| panic!("{what}: unload"));
            definer
                .unload()
                .unwrap_or_else(|_| panic!("{what}: unload"));
            assert_eq!(region.usage(), baseline, "{what}");
        }
    }
}

/// The same modules give the same answers whatever the page size, and the
/// plan of each is its 4 KiB plan's sections in larger pages: the exact
/// sizes do not change, the page-rounded ones are whole large pages.
#[test]
fn plans_differ_only_in_their_pages() {
    let chain = chain_bytes();
    let small_region =
        new_region_with_page_size(1 << 20, Placement::Anywhere, PageSize::Size4KiB).unwrap();
    let small = Loader::new(namespace(), small_region, &HOST_PROTECTION);
    for page in LARGE_PAGES {
        let region = new_region_with_page_size(1 << 20, Placement::Anywhere, page).unwrap();
        let large = Loader::new(namespace(), region, &HOST_PROTECTION);
        for (index, bytes) in chain.iter().enumerate().take(1) {
            let (four, big) = (
                plan_of(&small, index + 1, bytes),
                plan_of(&large, index + 1, bytes),
            );
            assert_plan_in_pages(&four, PageSize::Size4KiB);
            assert_plan_in_pages(&big, page);
            for kind in modload::SectionKind::ALL {
                assert_eq!(four.kind(kind).size, big.kind(kind).size, "{kind:?}");
            }
            assert_eq!(four.got_slots(), big.got_slots());
            assert!(big.size() > four.size(), "{page}: {big:?}");
        }
    }
}

/// A backend that refuses every call: each load fails with its error, the
/// pages the loader asked it to change (and could not restore) are counted
/// as lost, exactly, and never handed out again; the rest of the region
/// still serves loads through a working backend, which give back all they
/// took.
#[test]
fn refused_protection_loses_exactly_the_pages_it_touched() {
    let chain = chain_bytes();
    for page in [PageSize::Size4KiB, PageSize::Size64KiB] {
        for kind in KINDS {
            let what = format!("{kind:?}, {page} pages");
            let (region, packed) = region(kind, page);
            let baseline = region.usage();
            assert_eq!(baseline.lost, 0);
            let namespace = namespace();
            let refusing = loader(kind, namespace, region, packed, &REFUSING);
            let plan = plan_of(&refusing, 1, &chain[0]);
            // Contiguous: the whole block could not be made read-write again.
            // Grouped and packed: the code segment's pages, the first the
            // loader asked to change (the others were never touched).
            let per_load = match kind {
                Kind::Contiguous => plan.size(),
                Kind::Grouped | Kind::Packed => plan.segment(Segment::Code).size,
            } as usize;
            for attempt in 1..=2 {
                // SAFETY: the fixtures are this project's own test code.
                let error = unsafe { refusing.load("chain1.o", &chain[0]) }
                    .map(|_| ())
                    .expect_err("every protect is refused");
                assert!(
                    matches!(error.kind, ErrorKind::Protection { code, .. } if code == REFUSED),
                    "{what}: {error}"
                );
                let usage = region.usage();
                assert_eq!(usage.lost, attempt * per_load, "{what}: {usage:?}");
                assert_balanced(usage);
            }
            assert!(namespace.lookup("chain_1_value").is_none(), "{what}");

            let lost = region.usage().lost;
            let working = loader(kind, namespace, region, packed, &HOST_PROTECTION);
            let modules: Vec<_> = chain
                .iter()
                .enumerate()
                .map(|(index, bytes)| load(&working, index + 1, bytes))
                .collect();
            for (index, module) in modules.iter().enumerate() {
                check_chain_module(module, index + 1);
            }
            for module in modules.into_iter().rev() {
                module.unload().unwrap_or_else(|_| panic!("{what}: unload"));
            }
            let usage = region.usage();
            assert_eq!(usage.lost, lost, "{what}: {usage:?}");
            assert_balanced(usage);
            // What is still used is only what grouped and packed placement
            // keep of the chunks that hold lost pages.
            let expected_used = match kind {
                Kind::Contiguous => baseline.used,
                Kind::Grouped => region.grouped_usage().reserved - lost,
                Kind::Packed => region.packed_usage().reserved - lost,
            };
            assert_eq!(usage.used, expected_used, "{what}: {usage:?}");
        }
    }
}
