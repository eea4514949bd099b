//! Shared set-up for modload's fuzz targets: one host region and namespace per
//! process, a module loaded before any fuzz input (which must keep working),
//! a fallback resolver that knows every name, and the checks each input must
//! pass besides "no panic": the plan's promises and an unchanged region.

use std::sync::OnceLock;

use modload::signature::{public_key, TrustedKeys};
use modload::{
    Loader, Module, ModuleId, Namespace, Plan, Region, RegionUsage, SectionKind, Segment,
    SymbolResolver, VirtAddr, MAX_MODULE_SIZE,
};
use modload_platform::host::{
    new_packed_region, new_region, PackedRegion, Placement, HOST_PROTECTION,
};

/// The module loaded before any input: `tests/fixtures/m1.c`, x86_64, `-fPIC`.
const BASE: &[u8] = include_bytes!("../seeds/x86_64-m1-pic.o");
const REGION_SIZE: usize = 16 << 20;

extern "C" fn host_add(a: i64, b: i64) -> i64 {
    a.wrapping_add(b)
}

/// Resolves every name to an 8-aligned address inside the region, chosen by
/// a hash of the name: relocations then compute real values in reach instead
/// of stopping at "unresolved".
pub struct Fallback {
    start: u64,
}

impl SymbolResolver for Fallback {
    fn resolve(&self, name: &str) -> Option<VirtAddr> {
        let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        let offset = (hash % REGION_SIZE as u64) & !7;
        Some(VirtAddr::new(self.start.wrapping_add(offset)))
    }
}

/// The process-wide state the targets share.
pub struct Host {
    /// Module memory.
    pub region: &'static Region,
    /// Host exports and the base module.
    pub namespace: &'static Namespace,
    /// The base module's id.
    pub base: ModuleId,
    /// Region usage with only the base module loaded.
    pub baseline: RegionUsage,
    /// Trusts the key of seed `[7; 32]`.
    pub keys: TrustedKeys,
    /// A second region, for packed placement ([`Host::packed_loader`]).
    pub packed: PackedRegion,
    /// The packed region's usage before any input (nothing loaded there).
    pub packed_baseline: RegionUsage,
    fallback: Fallback,
}

/// The shared state, set up on first use.
pub fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        let region = new_region(REGION_SIZE, Placement::Anywhere).expect("map the region");
        let namespace: &'static Namespace = Box::leak(Box::new(Namespace::new()));
        namespace
            .add_host_export("host_add", VirtAddr::from_ptr(host_add as *const ()))
            .expect("fresh namespace");
        let loader = Loader::new(namespace, region, &HOST_PROTECTION);
        // SAFETY: the base module is this project's own fixture, m1.c.
        let base = unsafe { loader.load("base.o", BASE) }.expect("load the base module");
        let mut keys = TrustedKeys::new();
        keys.add(&public_key(&[7; 32])).expect("a valid key");
        let packed =
            new_packed_region(REGION_SIZE, Placement::Anywhere).expect("map the packed region");
        let packed_baseline = packed.region.usage();
        let host = Host {
            region,
            namespace,
            base: base.id(),
            baseline: region.usage(),
            keys,
            packed,
            packed_baseline,
            fallback: Fallback {
                start: region.start().as_u64(),
            },
        };
        host.check_base();
        host
    })
}

impl Host {
    /// A loader for this host that protects pages for real.
    pub fn loader(&'static self) -> Loader<'static> {
        Loader::new(self.namespace, self.region, &HOST_PROTECTION).with_fallback(&self.fallback)
    }

    /// A loader with no fallback, late binding and unwind tables: names the
    /// namespace lacks become pending imports where only calls reach them
    /// (bound to nothing, unloaded with the module), and `.eh_frame` is
    /// loaded and relocated.
    pub fn late_loader(&'static self) -> Loader<'static> {
        Loader::new(self.namespace, self.region, &HOST_PROTECTION)
            .late_binding()
            .keep_unwind_tables()
    }

    /// A loader that packs modules into the packed region (same namespace
    /// and fallback: names resolve into the other region, so some fields are
    /// out of reach, which is one more error path to go through).
    pub fn packed_loader(&'static self) -> Loader<'static> {
        Loader::new(self.namespace, self.packed.region, &HOST_PROTECTION)
            .packed(self.packed.writer)
            .with_fallback(&self.fallback)
    }

    /// Nothing is packed any more: no piece, no committed page, and the
    /// packed region's heap as before any input.
    pub fn check_packed_unchanged(&self) {
        let usage = self.packed.region.packed_usage();
        assert_eq!(usage.pieces, 0, "packed pieces left: {usage:?}");
        assert_eq!(usage.committed, 0, "packed pages left committed: {usage:?}");
        assert_eq!(
            self.packed.region.usage(),
            self.packed_baseline,
            "packed region usage changed"
        );
    }

    /// No grouped segment is left, and no chunk held for one.
    pub fn check_grouped_unchanged(&self) {
        let usage = self.region.grouped_usage();
        assert_eq!(
            usage,
            modload::GroupedUsage::default(),
            "grouped pages left"
        );
    }

    /// The base module still answers correctly.
    pub fn check_base(&self) {
        let base = Module::from_id(self.namespace, self.base).expect("base module still loaded");
        // SAFETY: m1.c defines `long m1_square(long)` and `long m1_value(void)`.
        let square =
            unsafe { base.get::<extern "C" fn(i64) -> i64>("m1_square") }.expect("m1_square");
        // SAFETY: as above.
        let value = unsafe { base.get::<extern "C" fn() -> i64>("m1_value") }.expect("m1_value");
        assert_eq!(square(9), 81);
        assert_eq!(value(), 42);
    }

    /// Nothing but the base module is loaded, and the region is as it was.
    pub fn check_unchanged(&self) {
        assert_eq!(self.region.usage(), self.baseline, "region usage changed");
        let modules = self.namespace.modules();
        assert_eq!(modules.len(), 1, "modules left loaded: {modules:?}");
    }
}

/// The plan's promises: whole pages, extents inside the reservation, kinds
/// inside their segments, segments in order and apart.
pub fn check_plan(plan: &Plan) {
    let size = plan.size();
    let page = plan.page_size().bytes();
    assert!(size >= page && size.is_multiple_of(page), "size {size}");
    assert!(size <= MAX_MODULE_SIZE, "size {size}");
    assert!(plan.alignment().bytes() >= page);
    let mut previous_end = 0u64;
    for segment in Segment::ALL {
        let extent = plan.segment(segment);
        if extent.size == 0 {
            continue;
        }
        let end = extent.offset.checked_add(extent.size).expect("segment end");
        assert!(
            extent.offset.is_multiple_of(page) && end.is_multiple_of(page),
            "{segment:?} {extent:?}"
        );
        assert!(extent.offset >= previous_end, "{segment:?} overlaps");
        assert!(end <= size, "{segment:?} past the end");
        previous_end = end;
    }
    for kind in SectionKind::ALL {
        let extent = plan.kind(kind);
        if extent.size == 0 {
            continue;
        }
        let end = extent.offset.checked_add(extent.size).expect("kind end");
        let segment = plan.segment(kind.segment());
        assert!(
            extent.offset >= segment.offset && end <= segment.offset + segment.size,
            "{kind:?} {extent:?} outside {segment:?}"
        );
    }
}
