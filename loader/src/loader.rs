//! The loader: which namespace, region and platform a load uses. It is a small
//! `Copy` value; modules never depend on it staying alive.

use crate::addr::VirtAddr;
use crate::error::LoadError;
use crate::limits::{Limit, Limits};
use crate::memory::protection::{MemoryProtection, PageWriter};
use crate::memory::region::Region;
use crate::memory::PlacementPolicy;
use crate::namespace::Namespace;
use crate::object::Object;

/// Resolves names the namespace does not define (the last step of resolution).
pub trait SymbolResolver: Sync {
    /// The address of `name`, if this resolver knows it.
    fn resolve(&self, name: &str) -> Option<VirtAddr>;
}

impl<F: Fn(&str) -> Option<VirtAddr> + Sync> SymbolResolver for F {
    fn resolve(&self, name: &str) -> Option<VirtAddr> {
        self(name)
    }
}

/// Loads modules into a namespace, from a region, through a platform.
///
/// Dropping a loader changes nothing: loaded modules belong to the namespace
/// and their memory to the region.
#[derive(Clone, Copy)]
pub struct Loader<'l> {
    pub(crate) namespace: &'l Namespace,
    pub(crate) region: &'static Region,
    pub(crate) protection: &'static dyn MemoryProtection,
    pub(crate) fallback: Option<&'l dyn SymbolResolver>,
    pub(crate) limits: Limits,
    /// Contiguous by default; [`Loader::grouped`] or [`Loader::packed`].
    pub(crate) placement: PlacementPolicy,
    /// Whether imports may stay pending (see [`Loader::late_binding`]).
    pub(crate) late_binding: bool,
    /// Whether `.eh_frame` is loaded (see [`Loader::keep_unwind_tables`]).
    pub(crate) unwind_tables: bool,
    /// When set, only objects signed by one of these keys are loaded.
    #[cfg(feature = "signature")]
    pub(crate) trusted: Option<&'l crate::signature::TrustedKeys>,
}

impl<'l> Loader<'l> {
    /// A loader for `namespace`, allocating from `region` and protecting pages
    /// through `protection`.
    pub fn new(
        namespace: &'l Namespace,
        region: &'static Region,
        protection: &'static dyn MemoryProtection,
    ) -> Self {
        Self {
            namespace,
            region,
            protection,
            fallback: None,
            limits: Limits::DEFAULT,
            placement: PlacementPolicy::Contiguous,
            late_binding: false,
            unwind_tables: false,
            #[cfg(feature = "signature")]
            trusted: None,
        }
    }

    /// Lets a module load while some of the functions it imports have no
    /// definition yet: late binding, off by default.
    ///
    /// A strong undefined name that neither the namespace nor the fallback
    /// defines when the module is planned becomes a *pending import*, if
    /// every relocation that names it is a call through a slot the loader
    /// owns: through a stub (x86-64 `PLT32`), a veneer (AArch64
    /// `CALL26`/`JUMP26` with addend 0), or its GOT slot (x86-64
    /// `call *f@GOTPCREL(%rip)` and `jmp *...`, as gcc's `-fno-plt` emits). A
    /// pending import's stub jumps through its GOT slot, and the slot leads
    /// to a lazy entry of the module until a definition exists: a call there
    /// enters the loader's unbound path, which reports the calling module and
    /// the name through the namespace's hook ([`Namespace::set_unbound_hook`])
    /// and returns 0 to the caller. It never jumps to address 0.
    ///
    /// When a later module (or [`Namespace::add_host_export`]) defines the
    /// name, every waiting slot is bound to it with one aligned 8-byte store:
    /// the GOT page, read-only data that is never executable, is made
    /// read-write for the store and read-only again, so no page is ever
    /// writable and executable. The binding records the dependency: the
    /// definer cannot be unloaded while a module bound to it remains. A call
    /// that read the slot just before the store reaches the lazy entry, whose
    /// unbound path forwards it to the definition.
    ///
    /// Names reached any other way (data references, absolute or
    /// PC-relative addresses, and loads of a GOT slot, which may read data
    /// that no lazy entry can stand in for) cannot wait: the load fails with
    /// [`ErrorKind::Unresolved`](crate::ErrorKind::Unresolved) naming them, as without late binding.
    /// Pending imports are counted in the plan ([`Plan::pending_imports`](crate::Plan::pending_imports)),
    /// and [`LoadReport::pending_imports`](crate::LoadReport::pending_imports)
    /// says how many were still pending when the module was relocated.
    ///
    /// The lazy entries hold this namespace's address, so late binding needs
    /// a namespace that lives for the rest of the program (a `static`). The
    /// unbound path exists for x86-64 and AArch64 hosts; a module for another
    /// machine traps (`ud2`, `brk`) if it calls an unbound import.
    ///
    /// [`Namespace::set_unbound_hook`]: crate::Namespace::set_unbound_hook
    /// [`Namespace::add_host_export`]: crate::Namespace::add_host_export
    pub fn late_binding(mut self) -> Self
    where
        'l: 'static,
    {
        self.late_binding = true;
        self
    }

    /// Loads each module's call frame information (`.eh_frame`) as
    /// read-only data, each table followed by a zero terminator, instead of
    /// dropping it: for hosts with an unwinder, where C++ exceptions (or
    /// Rust panics that unwind) must pass through module code. The host
    /// registers the tables ([`Finalized::unwind_tables`](crate::Finalized::unwind_tables),
    /// e.g. with libgcc's `__register_frame`) before the module runs, and
    /// deregisters them ([`Module::unwind_tables`](crate::Module::unwind_tables))
    /// before unloading it. Entries that describe code this module does not
    /// load (a COMDAT copy another module owns) point at address 0 + their
    /// addend, as a linker resolves references to discarded sections, so no
    /// unwinder matches them to real code.
    pub fn keep_unwind_tables(mut self) -> Self {
        self.unwind_tables = true;
        self
    }

    /// This loader with late binding turned off again: every import must
    /// resolve at load, and a failed load names every missing one.
    pub fn without_late_binding(mut self) -> Self {
        self.late_binding = false;
        self
    }

    /// Loads within `limits` instead of [`Limits::DEFAULT`].
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Packs modules: each module's three segments (code, read-only,
    /// writable) go into pages shared with other packed modules' segments of
    /// the same permissions, at sub-page granularity, instead of a
    /// reservation of its own in which each segment starts on a fresh page.
    /// Many small modules then take about the sum of their sections (a
    /// single one still needs a page per class).
    ///
    /// Pages keep their permissions while any module uses them, so W^X holds
    /// at every instant for code other modules are running: [`Planned::allocate`]
    /// takes the pieces (their addresses become the targets) and staging
    /// memory from the loader's heap for the bytes; relocation works on the
    /// staging bytes; [`Relocated::finalize`](crate::Relocated::finalize)
    /// copies code and read-only data into their pieces through `writer`
    /// (never through a writable executable mapping), syncs the instruction
    /// cache and frees the staging bytes, so [`Finalized::bytes`](crate::Finalized::bytes)
    /// is empty. Unloading zeroes the module's code through `writer` (so no
    /// unloaded code stays executable in a shared page) and frees the
    /// pieces; a page no module uses any more
    /// becomes read-write again and returns to the region with its chunk.
    /// [`LoadReport::reserved`](crate::LoadReport::reserved) is then the sum of
    /// the module's pieces, and [`Region::packed_usage`] tells the pages
    /// committed to packed modules apart from the chunks held for them.
    ///
    /// `writer` must serve this loader's region (on the host, the
    /// `MemfdWriter` of a region made by `modload_platform::host::new_packed_region`).
    /// Packed modules are meant to run where they are placed: mapping
    /// segments elsewhere before relocation ([`Placed::map_segment`](crate::Placed::map_segment))
    /// still relocates them for there, but finalize copies those bytes into
    /// the pieces; take them from [`Relocated::bytes`](crate::Relocated::bytes) instead.
    ///
    /// [`Planned::allocate`]: crate::Planned::allocate
    pub fn packed(mut self, writer: &'static dyn PageWriter) -> Self {
        self.placement = PlacementPolicy::Packed(writer);
        self
    }

    /// Groups segments by permissions: each of a module's segments (code,
    /// read-only, writable) takes whole pages of its own, as by default, but
    /// next to other grouped modules' segments of the same permissions
    /// instead of next to its own module's other segments. Modules keep
    /// pages to themselves (W^X and unloading work as by default, and the
    /// bytes are relocated in place), and protecting a new module's code
    /// extends a run of code pages instead of cutting one out of the
    /// read-write rest. Where each run of pages with one set of permissions
    /// costs the platform something, as a mapping (VMA) does on Linux, the
    /// default costs three runs a module and grouped placement a few in all:
    /// `mprotect` takes less than half as long, and stays as fast however
    /// many modules are loaded.
    ///
    /// Each kind of segment takes chunks of pages from the region: at least
    /// 1/512 of the region, growing with the number of modules, up to 64
    /// pages (in a region of up to 2 MiB, a lone module's chunks are exactly
    /// its segments). A chunk no segment uses goes back to the region.
    ///
    /// A module's segments may lie apart in the region (as packed ones do):
    /// references between them must reach across it, which every x86-64 and
    /// AArch64 relocation does in a region of up to 2 GiB.
    /// [`Relocated::bytes`](crate::Relocated::bytes) is empty (the segments
    /// are not in one block); [`Relocated::segment_bytes`](crate::Relocated::segment_bytes)
    /// gives each. Ignored by a [packed](Loader::packed) loader.
    pub fn grouped(mut self) -> Self {
        if !self.is_packed() {
            self.placement = PlacementPolicy::Grouped;
        }
        self
    }

    /// Whether this loader lets imports wait ([`Loader::late_binding`]).
    pub fn has_late_binding(&self) -> bool {
        self.late_binding
    }

    /// Whether this loader groups segments ([`Loader::grouped`]).
    pub fn is_grouped(&self) -> bool {
        matches!(self.placement, PlacementPolicy::Grouped)
    }

    /// Whether this loader packs modules ([`Loader::packed`]).
    pub fn is_packed(&self) -> bool {
        matches!(self.placement, PlacementPolicy::Packed(_))
    }

    /// The limits this loader enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Requires every module to carry a signature by one of `keys` (see
    /// [`crate::signature`]). [`Loader::parse`] checks it before parsing;
    /// [`Loader::plan`] refuses an object that was not parsed that way.
    #[cfg(feature = "signature")]
    #[cfg_attr(docsrs, doc(cfg(feature = "signature")))]
    pub fn require_signatures(mut self, keys: &'l crate::signature::TrustedKeys) -> Self {
        self.trusted = Some(keys);
        self
    }

    /// Parses `bytes` for this loader: checks the object size, then the
    /// signature when signatures are required (before anything is parsed or
    /// allocated), then parses within the loader's limits. A signed module's
    /// trailer is not part of the parsed object.
    pub fn parse<'a>(&self, name: &str, bytes: &'a [u8]) -> Result<Object<'a>, LoadError> {
        self.limits
            .check(Limit::ObjectSize, bytes.len() as u64)
            .map_err(|exceeded| LoadError::new(name, exceeded.into()))?;
        #[cfg(feature = "signature")]
        if let Some(keys) = self.trusted {
            let verified = crate::signature::verify(bytes, keys).map_err(|problem| {
                LoadError::new(name, crate::error::ErrorKind::Signature { problem })
            })?;
            let mut object = Object::parse_with_limits(name, verified.payload, &self.limits)?;
            object.signer = Some(verified.signer);
            return Ok(object);
        }
        Object::parse_with_limits(name, bytes, &self.limits)
    }

    /// Resolves names the namespace lacks through `resolver`: any
    /// [`SymbolResolver`], or a closure.
    ///
    /// ```
    /// use modload::{Loader, Namespace, NoProtection, Region, VirtAddr};
    ///
    /// static REGION: Region = Region::new();
    /// static NAMESPACE: Namespace = Namespace::new();
    ///
    /// // A kernel's own symbol table, looked up only for names no module defines.
    /// let kernel_symbols = |name: &str| match name {
    ///     "kernel_print" => Some(VirtAddr::new(0xffff_ffff_8000_1000)),
    ///     _ => None,
    /// };
    /// let loader = Loader::new(&NAMESPACE, &REGION, &NoProtection).with_fallback(&kernel_symbols);
    /// # let _ = loader;
    /// ```
    pub fn with_fallback(mut self, resolver: &'l dyn SymbolResolver) -> Self {
        self.fallback = Some(resolver);
        self
    }

    /// The namespace modules are loaded into.
    pub fn namespace(&self) -> &'l Namespace {
        self.namespace
    }

    /// The region module memory comes from.
    pub fn region(&self) -> &'static Region {
        self.region
    }
}
