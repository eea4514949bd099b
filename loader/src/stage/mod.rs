//! The load stages as types. Each transition consumes the previous stage, so a
//! module cannot be relocated before it is placed or started before it is
//! finalized. Dropping any stage frees what it holds and changes nothing else.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::addr::VirtAddr;
use crate::error::{ErrorKind, LoadError};
use crate::kinds::Permissions;
use crate::kinds::{SectionKind, Segment};
use crate::link::apply::apply_relocations;
use crate::link::lazy::LazyAreas;
use crate::link::resolve::resolve;
use crate::link::slots::fill_got_and_stubs;
use crate::link::{definitions, mismatch, read_pointers, symbol_values, Targets};
use crate::loader::Loader;
use crate::memory::ModuleMemory;
use crate::module::Module;
use crate::namespace::late::PendingImport;
use crate::namespace::{AddressMap, ModuleNames, ModuleRecord, Pins};
use crate::object::Object;
use crate::plan::{Binding, Layout, Placement, Plan};

/// Stage 1: planned. The exact sizes are known ([`Planned::plan`]); nothing is
/// allocated yet.
pub struct Planned<'l, 'a> {
    loader: Loader<'l>,
    object: Object<'a>,
    plan: Plan,
    layout: Layout<'a>,
}

/// Stage 2: allocated in the region and copied. Sections may now be mapped to
/// other target addresses before relocation.
pub struct Placed<'l, 'a> {
    loader: Loader<'l>,
    object: Object<'a>,
    plan: Plan,
    layout: Layout<'a>,
    memory: ModuleMemory,
    targets: Targets,
}

/// Stage 3: relocated for its target addresses. Its bytes can be read (and
/// copied elsewhere); pages are not protected yet.
pub struct Relocated<'l> {
    loader: Loader<'l>,
    parts: Parts<'l>,
}

/// Stage 4: finalized. Pages have their permissions and the instruction cache
/// has been synchronised. [`Finalized::start`] publishes it and runs its constructors.
pub struct Finalized<'l> {
    loader: Loader<'l>,
    parts: Parts<'l>,
}

/// What a relocated module carries into the namespace.
struct Parts<'l> {
    name: Box<str>,
    plan: Plan,
    report: LoadReport,
    memory: ModuleMemory,
    /// `(target, size)` of every code piece.
    code_targets: Vec<(VirtAddr, u64)>,
    /// Every global definition, by name: exported or not.
    symbols: ModuleNames,
    comdats: Vec<Box<str>>,
    init: Vec<VirtAddr>,
    fini: Vec<VirtAddr>,
    pins: Pins<'l>,
    /// The imports left pending, for the namespace to bind later.
    pending: Vec<PendingImport>,
    /// Where each loaded unwind table runs.
    unwind_tables: Vec<VirtAddr>,
    /// The module's `__dso_handle`, if it refers to one.
    dso_handle: Option<VirtAddr>,
    /// Its sections and symbols by address.
    addresses: AddressMap,
}

/// The constructors of a module published by [`Finalized::start_later`], in
/// the order `start` would run them.
#[must_use = "a module's constructors must run before its code is used"]
pub struct Constructors {
    init: Vec<VirtAddr>,
}

impl Constructors {
    /// Runs them.
    ///
    /// # Safety
    /// The module must still be loaded, and running its constructors now
    /// must be sound (what [`Finalized::start`] asks of its caller).
    pub unsafe fn run(self) {
        for constructor in self.init {
            // SAFETY: the caller guarantees the module is loaded and that its
            // constructors may run; init_array entries are `extern "C" fn()`.
            unsafe { crate::call::call_void(constructor) };
        }
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.init.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.init.is_empty()
    }
}

/// What a load used, to compare with its [`Plan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadReport {
    /// GOT slots filled (always the plan's count: every slot has a user).
    pub got_slots_used: u32,
    /// Stubs that calls actually went through (at most the plan's count).
    pub stubs_used: u32,
    /// Relocations applied.
    pub relocations_applied: u64,
    /// Bytes of the reservation.
    pub reserved: u64,
    /// Pending imports nothing defined when the module was relocated (see
    /// [`Loader::late_binding`]): their slots lead to the unbound path until
    /// a definition arrives. [`Module::imports`](crate::Module::imports)
    /// tells how many have been bound since.
    pub pending_imports: u32,
}

/// A loaded section as it was placed: for tools that copy or describe modules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedPiece {
    /// The input section index, or `None` for the GOT, stub and `COMMON` areas.
    pub section: Option<usize>,
    /// The section name, or the area's name (`.got`, `.stubs`, `COMMON`).
    pub name: Box<str>,
    /// What it holds.
    pub kind: SectionKind,
    /// Offset of its bytes in the plan's layout (in the reservation, unless
    /// the module is grouped or packed).
    pub offset: u64,
    /// Its size in bytes.
    pub size: u64,
    /// The address it is relocated for.
    pub target: VirtAddr,
}

impl<'l, 'a> Planned<'l, 'a> {
    pub(crate) fn new(
        loader: Loader<'l>,
        object: Object<'a>,
        plan: Plan,
        layout: Layout<'a>,
    ) -> Self {
        Self {
            loader,
            object,
            plan,
            layout,
        }
    }

    /// The exact layout this module will take.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The parsed object.
    pub fn object(&self) -> &Object<'a> {
        &self.object
    }

    /// Reserves the plan's memory in the loader's region (one contiguous block)
    /// and copies the sections in. Bss, padding, the GOT and stubs start zeroed.
    ///
    /// A [packed](Loader::packed) loader instead takes one piece per segment
    /// in pages shared with other modules (the pieces' addresses become the
    /// targets) and copies the sections into staging memory laid out as in
    /// the plan, where they are relocated until `finalize`.
    pub fn allocate(self) -> Result<Placed<'l, 'a>, LoadError> {
        let Planned {
            loader,
            object,
            plan,
            layout,
        } = self;
        let mut memory =
            ModuleMemory::allocate(loader.region, &plan, loader.placement, loader.protection)
                .map_err(|kind| object.error(kind))?;
        let mut bytes = memory.layout_bytes();
        let mut used = [0u64; 6];
        let mut copied = Vec::with_capacity(layout.placements.len());
        for (index, placement) in layout.placements.iter().enumerate() {
            let (Some(placement), Some(section)) = (placement, object.sections.get(index)) else {
                continue;
            };
            if let Some(data) = section.data {
                let range = usize::try_from(placement.offset)
                    .ok()
                    .and_then(|start| Some(start..start.checked_add(data.len())?));
                let destination = range
                    .clone()
                    .and_then(|range| bytes.get_mut(range))
                    .ok_or_else(|| {
                        mismatch(&object, placement.kind, placement.offset, plan.size())
                    })?;
                destination.copy_from_slice(data);
                copied.extend(range);
            }
            add_use(&mut used, placement);
        }
        // Zero every byte the copies did not write (padding, bss, GOT, stubs):
        // zeroing the whole block first would write most of it twice.
        copied.sort_unstable_by_key(|range| range.start);
        bytes.zero_except(&copied);
        for area in [layout.got, layout.stubs, layout.common] {
            add_use(&mut used, &area);
        }
        // The plan promised exact figures; check the placement kept them.
        for (kind, used) in SectionKind::ALL.iter().zip(used) {
            let extent = plan.kind(*kind);
            if used > extent.size {
                return Err(mismatch(&object, *kind, extent.size, used));
            }
        }
        // Each piece runs at its offset from the reservation's start, or, packed,
        // from its segment's piece.
        let target =
            |placement: &Placement| memory.target(placement.kind.segment(), placement.offset);
        let targets = Targets {
            sections: layout
                .placements
                .iter()
                .map(|placement| placement.as_ref().map_or(0, target))
                .collect(),
            got: target(&layout.got),
            stubs: target(&layout.stubs),
            common: target(&layout.common),
        };
        Ok(Placed {
            loader,
            object,
            plan,
            layout,
            memory,
            targets,
        })
    }
}

fn add_use(used: &mut [u64; 6], placement: &Placement) {
    let slot = SectionKind::ALL
        .iter()
        .position(|kind| *kind == placement.kind);
    if let Some(total) = slot.and_then(|slot| used.get_mut(slot)) {
        *total = total.saturating_add(placement.size);
    }
}

impl<'l, 'a> Placed<'l, 'a> {
    /// The exact layout this module took.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Where the module's bytes are now.
    pub fn load_address(&self) -> VirtAddr {
        self.memory.start()
    }

    /// Relocates the whole module for `base`: every piece keeps its offset from
    /// the start of the reservation. Use it to run the module at another address
    /// of the same layout (an alias mapping, a copy destination).
    pub fn map_module(&mut self, base: VirtAddr) -> Result<(), LoadError> {
        for segment in Segment::ALL {
            let offset = self.plan.segment(segment).offset;
            let target = base.checked_add(offset).ok_or_else(|| {
                self.object
                    .error(ErrorKind::ModuleTooLarge { size: offset })
            })?;
            self.map_segment(segment, target)?;
        }
        Ok(())
    }

    /// Relocates one segment for `target`, its new start address. Pieces keep
    /// their offsets within the segment.
    pub fn map_segment(&mut self, segment: Segment, target: VirtAddr) -> Result<(), LoadError> {
        let start = self.plan.segment(segment).offset;
        // Where a piece at `offset` lands, or `None` past the end of the address space.
        let shift = |placement: &Placement| {
            if placement.kind.segment() != segment {
                return Ok(None);
            }
            placement
                .offset
                .checked_sub(start)
                .and_then(|within| target.checked_add(within))
                .map(|address| Some(address.as_u64()))
                .ok_or_else(|| {
                    self.object.error(ErrorKind::ModuleTooLarge {
                        size: self.plan.size(),
                    })
                })
        };
        // Work out every new address first, so a failure changes nothing.
        let sections = self
            .layout
            .placements
            .iter()
            .map(|placement| placement.as_ref().map_or(Ok(None), shift))
            .collect::<Result<Vec<_>, _>>()?;
        let got = shift(&self.layout.got)?;
        let stubs = shift(&self.layout.stubs)?;
        let common = shift(&self.layout.common)?;
        for (slot, address) in self.targets.sections.iter_mut().zip(sections) {
            *slot = address.unwrap_or(*slot);
        }
        self.targets.got = got.unwrap_or(self.targets.got);
        self.targets.stubs = stubs.unwrap_or(self.targets.stubs);
        self.targets.common = common.unwrap_or(self.targets.common);
        Ok(())
    }

    /// Relocates one input section for `target`. Relocations that then fall out of
    /// reach are reported as overflows, as always.
    pub fn map_section(&mut self, index: usize, target: VirtAddr) -> Result<(), LoadError> {
        let loaded = self
            .layout
            .placements
            .get(index)
            .copied()
            .flatten()
            .is_some();
        match self.targets.sections.get_mut(index) {
            Some(slot) if loaded => {
                *slot = target.as_u64();
                Ok(())
            }
            _ => Err(self.object.error(ErrorKind::SectionNotLoaded { index })),
        }
    }

    /// Every loaded piece with its place and target address.
    pub fn pieces(&self) -> Vec<PlacedPiece> {
        let mut pieces: Vec<PlacedPiece> = self
            .layout
            .placements
            .iter()
            .enumerate()
            .filter_map(|(index, placement)| {
                let placement = (*placement)?;
                Some(PlacedPiece {
                    section: Some(index),
                    name: self
                        .object
                        .sections
                        .get(index)
                        .map_or("?", |section| section.name)
                        .into(),
                    kind: placement.kind,
                    offset: placement.offset,
                    size: placement.size,
                    target: VirtAddr::new(self.targets.sections.get(index).copied().unwrap_or(0)),
                })
            })
            .collect();
        for (name, placement, target) in loader_areas(&self.layout, &self.targets) {
            if placement.size > 0 {
                pieces.push(PlacedPiece {
                    section: None,
                    name: name.into(),
                    kind: placement.kind,
                    offset: placement.offset,
                    size: placement.size,
                    target: VirtAddr::new(target),
                });
            }
        }
        pieces
    }

    /// Resolves symbols (host exports, loaded modules, then the fallback) and
    /// applies every relocation for the target addresses. Fails with every
    /// unresolved name at once; on any failure the namespace is unchanged.
    pub fn relocate(self) -> Result<Relocated<'l>, LoadError> {
        let Placed {
            loader,
            object,
            plan,
            layout,
            mut memory,
            targets,
        } = self;
        let (resolution, globals) = resolve(&loader, &object, &layout)?;
        let lazy = LazyAreas::of(&object, &plan, &layout, targets.got, targets.stubs);
        let mut values = symbol_values(&layout, &targets, &resolution.external);
        lazy.point_unbound_at_slots(&mut values, &layout, &resolution.unbound);
        let mut bytes = memory.layout_bytes();
        fill_got_and_stubs(&object, &layout, &values, &mut bytes)?;
        let namespace = VirtAddr::from_ptr(core::ptr::from_ref(loader.namespace)).as_u64();
        let pending = lazy
            .fill(
                &object,
                &layout,
                &resolution.unbound,
                (namespace, crate::unbound::entry_for(object.machine)),
                &mut bytes,
            )
            // Only a layout the plan did not promise can fail here, as in
            // `fill_got_and_stubs`.
            .map_err(|_| {
                let got = plan.kind(SectionKind::Got);
                mismatch(&object, SectionKind::Got, got.size, 0)
            })?;
        let (applied, stub_used) = apply_relocations(
            &object,
            &layout,
            &plan,
            &targets,
            (&values, &resolution.absent_weak),
            &mut bytes,
        )?;
        let init = read_pointers(&layout.init, &layout, &bytes);
        let mut fini = read_pointers(&layout.fini, &layout, &bytes);
        fini.reverse();

        let report = LoadReport {
            got_slots_used: layout.got_slot.iter().flatten().count() as u32,
            stubs_used: stub_used.iter().filter(|used| **used).count() as u32,
            relocations_applied: applied,
            reserved: memory.len(),
            pending_imports: pending.len() as u32,
        };
        if u64::from(report.got_slots_used) != u64::from(plan.got_slots())
            || applied != plan.relocation_total()
        {
            return Err(mismatch(
                &object,
                SectionKind::Got,
                u64::from(plan.got_slots()),
                u64::from(report.got_slots_used),
            ));
        }
        let symbols = definitions(globals, &layout, &targets, &values);
        let addresses = map::address_map(&object, &layout, &targets, &memory);
        // Where code will execute, piece by piece: sections may have been
        // mapped apart, and each target range needs its instruction cache synced.
        let code_targets = targets
            .sections
            .iter()
            .zip(&layout.placements)
            .filter_map(|(target, placement)| placement.map(|placement| (*target, placement)))
            .chain([(targets.stubs, layout.stubs)])
            .filter(|(_, placement)| {
                placement.kind.segment() == Segment::Code && placement.size > 0
            })
            .map(|(target, placement)| (VirtAddr::new(target), placement.size))
            .collect();
        let parts = Parts {
            name: object.name.clone(),
            plan,
            report,
            memory,
            code_targets,
            symbols,
            comdats: layout
                .comdats
                .iter()
                .map(|signature| (*signature).into())
                .collect(),
            init,
            fini,
            pins: resolution.pins,
            pending,
            addresses,
            unwind_tables: layout
                .unwind
                .iter()
                .filter_map(|index| targets.sections.get(*index))
                .map(|target| VirtAddr::new(*target))
                .collect(),
            dso_handle: layout
                .bindings
                .iter()
                .position(|binding| *binding == Binding::DsoHandle)
                .and_then(|index| values.get(index).copied().flatten())
                .map(VirtAddr::new),
        };
        Ok(Relocated { loader, parts })
    }
}

impl<'l> Relocated<'l> {
    /// The plan the module was loaded by.
    pub fn plan(&self) -> &Plan {
        &self.parts.plan
    }

    /// What the load used, for comparison with the plan.
    pub fn report(&self) -> LoadReport {
        self.parts.report
    }

    /// The module's relocated bytes, laid out as in the plan: empty for a
    /// [grouped](Loader::grouped) module, whose segments are apart (see
    /// [`Relocated::segment_bytes`]).
    pub fn bytes(&self) -> &[u8] {
        self.parts.memory.bytes()
    }

    /// The relocated bytes of one segment, from its first byte to the end
    /// of its pages, wherever the module is placed.
    pub fn segment_bytes(&self, segment: Segment) -> &[u8] {
        self.parts.memory.segment_bytes(segment, &self.parts.plan)
    }

    /// Where the bytes are now.
    pub fn load_address(&self) -> VirtAddr {
        self.parts.memory.start()
    }

    /// Sets page permissions (text read+execute, read-only data and GOT read,
    /// data and bss read+write; never write+execute) and synchronises the
    /// instruction cache for the code's target range.
    ///
    /// A [packed](Loader::packed) module's pages have their permissions
    /// already: its segments are copied from the staging bytes into their
    /// pieces (code and read-only data through the loader's page writer), the
    /// instruction cache is synchronised for the code piece, and the staging
    /// bytes are freed.
    pub fn finalize(self) -> Result<Finalized<'l>, LoadError> {
        let Relocated { loader, mut parts } = self;
        if parts.memory.is_packed() {
            parts
                .memory
                .commit()
                .map_err(|kind| LoadError::new(&parts.name, kind))?;
            let code = parts.memory.packed_code();
            if let Some((target, size)) = code {
                loader.protection.sync_instruction_cache(target, size);
            }
            let (code_start, code_size) =
                code.map_or((0, 0), |(target, size)| (target.as_u64(), size));
            let code_end = code_start.saturating_add(code_size);
            for &(target, size) in &parts.code_targets {
                if !(code_start..code_end).contains(&target.as_u64()) {
                    loader.protection.sync_instruction_cache(target, size);
                }
            }
            return Ok(Finalized { loader, parts });
        }
        // Region memory rests read-write (`Region::init` takes it so, and a
        // module's memory is made so again before the region reuses it), so
        // the writable segment needs no call: one system call fewer a load.
        let ranges: Vec<_> = Segment::ALL
            .iter()
            .filter(|segment| segment.permissions() != Permissions::READ_WRITE)
            .map(|segment| {
                let extent = parts.plan.segment(*segment);
                (extent.offset, extent.size, segment.permissions())
            })
            .collect();
        parts
            .memory
            .protect(loader.protection, &ranges)
            .map_err(|kind| LoadError::new(&parts.name, kind))?;
        let code = parts.plan.segment(Segment::Code);
        let code_load = VirtAddr::new(parts.memory.target(Segment::Code, code.offset));
        loader
            .protection
            .sync_instruction_cache(code_load, code.size);
        // Code mapped elsewhere runs from there once the caller copies it; keep
        // those ranges coherent too (a no-op where the targets are the load address).
        let load_end = code_load.as_u64().saturating_add(code.size);
        for &(target, size) in &parts.code_targets {
            if !(code_load.as_u64()..load_end).contains(&target.as_u64()) {
                loader.protection.sync_instruction_cache(target, size);
            }
        }
        Ok(Finalized { loader, parts })
    }
}

impl<'l> Finalized<'l> {
    /// What the load used, for comparison with the plan.
    pub fn report(&self) -> LoadReport {
        self.parts.report
    }

    /// The module's relocated bytes, to copy to the target addresses: empty
    /// for a [grouped](Loader::grouped) or [packed](Loader::packed) module
    /// (see [`Finalized::segment_bytes`]).
    pub fn bytes(&self) -> &[u8] {
        self.parts.memory.bytes()
    }

    /// The relocated bytes of one segment, from its first byte to the end
    /// of its pages, to copy to its target address (empty for a packed
    /// module, whose bytes are in their pieces).
    pub fn segment_bytes(&self, segment: Segment) -> &[u8] {
        self.parts.memory.segment_bytes(segment, &self.parts.plan)
    }

    /// Where each of the module's unwind tables (`.eh_frame`, zero-terminated)
    /// runs, when the loader keeps them ([`Loader::keep_unwind_tables`]): to
    /// register with the host's unwinder before [`Finalized::start`] runs
    /// constructors that may throw.
    pub fn unwind_tables(&self) -> &[VirtAddr] {
        &self.parts.unwind_tables
    }

    /// Publishes the module's symbols in the namespace and runs its constructors
    /// (`.init_array`, by priority then order) at their target addresses.
    ///
    /// # Safety
    /// The module's code must be present and executable at its target addresses
    /// (true when nothing was mapped elsewhere), and running it must be sound.
    pub unsafe fn start(self) -> Result<Module<'l>, LoadError> {
        // SAFETY: forwarded from this function's contract.
        let (module, constructors) = unsafe { self.start_later() }?;
        // SAFETY: the caller guarantees the module's code is in place and
        // safe to run, and it has just been published.
        unsafe { constructors.run() };
        Ok(module)
    }

    /// Publishes the module like [`Finalized::start`], but leaves running its
    /// constructors to the caller: for a host that loads several modules
    /// before any of them runs, as a static link runs every object's
    /// constructors, in link order, only once all are in place (and calls
    /// between them then find every definition). Its destructors run at
    /// unload, as after `start`.
    ///
    /// # Safety
    /// As for [`Finalized::start`]: the module's code must be present and
    /// executable at its target addresses, since later modules may call it
    /// and its destructors run when it is unloaded.
    pub unsafe fn start_later(self) -> Result<(Module<'l>, Constructors), LoadError> {
        let (module, init) = self.publish_parts(true)?;
        Ok((module, Constructors { init }))
    }

    /// Publishes the module's symbols without running any of its code: for a
    /// module linked to run on another machine or at another address, which
    /// later modules still link against. Its constructors never run here, and
    /// neither do its destructors when it is unloaded.
    pub fn publish(self) -> Result<Module<'l>, LoadError> {
        self.publish_parts(false).map(|(module, _)| module)
    }

    fn publish_parts(self, runs_here: bool) -> Result<(Module<'l>, Vec<VirtAddr>), LoadError> {
        let Finalized { loader, parts } = self;
        let Parts {
            name,
            memory,
            symbols,
            comdats,
            init,
            fini,
            pins,
            pending,
            dso_handle,
            unwind_tables,
            addresses,
            ..
        } = parts;
        let fini = if runs_here { fini } else { Vec::new() };
        let record = ModuleRecord::new(
            name.clone(),
            symbols,
            comdats,
            fini,
            memory,
            loader.protection,
        )
        .with_late_parts(pending, dso_handle)
        .with_unwind_tables(unwind_tables)
        .with_addresses(addresses);
        let id = loader
            .namespace
            .publish(record, pins)
            .map_err(|kind| LoadError::new(&name, kind))?;
        let init = if runs_here { init } else { Vec::new() };
        Ok((Module::new(loader.namespace, id), init))
    }
}
/// The areas the loader adds to a module, which no section header
/// describes: each with its name, placement and target address.
fn loader_areas(layout: &Layout<'_>, targets: &Targets) -> [(&'static str, Placement, u64); 3] {
    [
        (".got", layout.got, targets.got),
        (".stubs", layout.stubs, targets.stubs),
        ("COMMON", layout.common, targets.common),
    ]
}

pub(crate) mod entry;
mod map;
pub(crate) mod sets;
