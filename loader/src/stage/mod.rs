//! The load stages as types. Each transition consumes the previous stage, so a
//! module cannot be relocated before it is placed or started before it is
//! finalized. Dropping any stage frees what it holds and changes nothing else.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::OnceCell;

use crate::addr::VirtAddr;
use crate::arch::Machine;
use crate::arch::RelocationProblem;
use crate::arch::{aarch64, write_field, x86_64, Applied, FixupInputs, Range, SlotSizes};
use crate::error::{ErrorKind, LoadError};
use crate::kinds::Permissions;
use crate::kinds::{SectionKind, Segment};
use crate::link::lazy::LazyAreas;
use crate::loader::Loader;
use crate::memory::{LayoutBytes, ModuleMemory};
use crate::module::Module;
use crate::names::{NameMap, EMPTY_NAME_HASH};
use crate::namespace::late::PendingImport;
use crate::namespace::{DefinitionKind, ModuleNames, ModuleRecord, NameList, NameSizes, Pins};
use crate::object::relocation_error;
use crate::object::{Object, Rela, RelocationSection};
use crate::plan::{stub_addend, Binding, EntryBits, Layout, Placement, Plan};

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

/// Target address of each piece. Starts as the load address (run in place).
struct Targets {
    sections: Vec<u64>,
    got: u64,
    stubs: u64,
    common: u64,
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
        let mut memory = match loader.packing {
            Some(writer) => ModuleMemory::packed(loader.region, &plan, loader.protection, writer)
                .map_err(|kind| object.error(kind))?,
            None if loader.grouping => {
                ModuleMemory::grouped(loader.region, &plan).map_err(|kind| object.error(kind))?
            }
            None => ModuleMemory::new(
                loader
                    .region
                    .reserve(plan.size(), plan.alignment().bytes())
                    .ok_or_else(|| {
                        object.error(ErrorKind::OutOfMemory {
                            size: plan.size(),
                            align: plan.alignment().bytes(),
                        })
                    })?,
            ),
        };
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

fn mismatch(object: &Object<'_>, kind: SectionKind, planned: u64, used: u64) -> LoadError {
    object.error(ErrorKind::PlanMismatch {
        kind,
        planned,
        used,
    })
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
        let areas = [
            (".got", self.layout.got, self.targets.got),
            (".stubs", self.layout.stubs, self.targets.stubs),
            ("COMMON", self.layout.common, self.targets.common),
        ];
        for (name, placement, target) in areas {
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
        let got_base = targets.got;
        let stub_base = targets.stubs;
        let SlotSizes {
            got_slot: got_size,
            stub: stub_size,
            ..
        } = SlotSizes::of(object.machine);

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
        let mut stub_used = vec![false; plan.stub_slots() as usize];
        let mut applied = 0u64;
        // Whole records only for entries the fast path declines: a module
        // whose entries all take it (most x86-64 code) never builds them.
        let symbol_targets = SymbolTargets {
            layout: &layout,
            values: &values,
            absent_weak: &resolution.absent_weak,
            got: got_base,
            got_size,
            built: OnceCell::new(),
        };
        let mut first_entry = 0usize;
        // S alone, 8 bytes a symbol, for the fast path: the symbols of a
        // large module's calls are all over the table, and 8 bytes a symbol
        // keep far more of it in the first-level cache than whole records.
        let addresses: Vec<u64> = values
            .iter()
            .map(|value| value.unwrap_or(NO_FAST_ADDRESS))
            .collect();
        for relocations in &object.relocations {
            let first = first_entry;
            first_entry = first_entry.saturating_add(relocations.len());
            let Some(placement) = layout.placements.get(relocations.target).copied().flatten()
            else {
                continue;
            };
            let section_target = targets
                .sections
                .get(relocations.target)
                .copied()
                .unwrap_or(0);
            let section_bytes = placement
                .whole()
                .and_then(|range| bytes.get_mut(range))
                .ok_or_else(|| mismatch(&object, placement.kind, placement.offset, plan.size()))?;
            let unwind = layout.unwind.contains(&relocations.target);
            // An unwind table describes every function of its object, those
            // of COMDAT copies another module owns too. Their entries point
            // into the table itself (in reach of any field), and are then
            // given an empty range, so no unwinder takes them for code.
            let unwind_values: Vec<Option<u64>> = match unwind {
                true => values
                    .iter()
                    .map(|value| value.or(Some(section_target)))
                    .collect(),
                false => Vec::new(),
            };
            let unwind_addresses: Vec<u64> = unwind_values.iter().flatten().copied().collect();
            let unwind_targets = SymbolTargets {
                layout: &layout,
                values: &unwind_values,
                absent_weak: &resolution.absent_weak,
                got: got_base,
                got_size,
                built: OnceCell::new(),
            };
            let section = SectionFixups {
                object: &object,
                index: relocations.target,
                symbols: if unwind {
                    &unwind_targets
                } else {
                    &symbol_targets
                },
                addresses: if unwind {
                    &unwind_addresses
                } else {
                    &addresses
                },
                stub_slots: &layout.stub_slot,
                target: section_target,
                got: got_base,
                stubs: stub_base,
                stub_size,
            };
            // One loop per machine, so each inlines its own engine's common path.
            match object.machine {
                Machine::X86_64 => section.apply_x86_64(
                    relocations,
                    (&layout.relaxed, first),
                    section_bytes,
                    &mut stub_used,
                ),
                Machine::AArch64 => {
                    section.apply_aarch64(relocations, section_bytes, &mut stub_used)
                }
            }?;
            if unwind {
                let data = object
                    .sections
                    .get(relocations.target)
                    .and_then(|section| section.data)
                    .unwrap_or_default();
                empty_discarded_fdes(object.machine, data, relocations, &values, section_bytes);
            }
            applied = applied.saturating_add(relocations.len() as u64);
        }
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

struct Resolution<'l> {
    /// Per symbol index: the address of an external symbol.
    external: Vec<Option<u64>>,
    /// Per symbol index: a weak undefined symbol that nothing defines (its
    /// address is 0, but AArch64 relative references resolve it differently).
    absent_weak: Vec<bool>,
    /// The symbol indices of the pending imports nothing defines now, in
    /// ascending order.
    unbound: Vec<usize>,
    pins: Pins<'l>,
}

/// Looks up every external name once, in namespace order, then the fallback.
/// Also names (and hashes, once) the module's global definitions: a strong
/// one the namespace already has fails the load here, before relocating.
fn resolve<'l>(
    loader: &Loader<'l>,
    object: &Object<'_>,
    layout: &Layout<'_>,
) -> Result<(Resolution<'l>, NameList), LoadError> {
    // A yielded weak definition is still this module's: it is offered as a
    // weak export at its own address, so it can take the name over when the
    // definition it yielded to goes.
    let defines = |symbol: &crate::object::Symbol<'_>, binding: &Binding| {
        symbol.is_global()
            && (binding.is_defined_here() || matches!(binding, Binding::Yielded { .. }))
    };
    let symbols = || object.symbols.iter().zip(&layout.bindings);
    // Measured first, so the names and definitions are allocated once.
    let mut sizes = NameSizes::new();
    for (symbol, _) in symbols().filter(|(symbol, binding)| defines(symbol, binding)) {
        sizes.add(symbol.name_at as usize, symbol.name.len());
    }
    let global_definitions = symbols()
        .enumerate()
        .filter(|(_, (symbol, binding))| defines(symbol, binding))
        .map(|(index, (symbol, binding))| {
            let exported = symbol.is_exported();
            let weak = symbol.is_weak();
            let kind = DefinitionKind {
                exported,
                // A COMMON symbol is a tentative definition: a real one may follow.
                weak: weak || matches!(binding, Binding::Common { .. }),
                strong_here: exported && !weak && binding.is_defined_here(),
            };
            let at = symbol.name_at as usize;
            (index, at, symbol.name, symbol.hash, kind)
        });
    let globals = NameList::collect(sizes, object.strings, global_definitions)
        .map_err(|kind| object.error(kind))?;
    if let Some(duplicate) = loader.namespace.find_duplicate(&globals) {
        return Err(object.error(duplicate));
    }
    let wanted: Vec<usize> = (0..object.symbols.len())
        .filter(|index| {
            matches!(
                layout.bindings.get(*index),
                Some(Binding::External | Binding::Yielded { .. })
            )
        })
        .collect();
    let names: Vec<(&str, u64)> = wanted
        .iter()
        .map(|index| {
            object
                .symbols
                .get(*index)
                .map_or(("", EMPTY_NAME_HASH), |symbol| (symbol.name, symbol.hash))
        })
        .collect();
    let comdats: Vec<Option<&str>> = wanted
        .iter()
        .map(|index| layout.comdat_of.get(index).copied())
        .collect();
    let (found, pins) = loader.namespace.resolve_and_pin(&names, &comdats);
    let mut external = vec![None; object.symbols.len()];
    let mut absent_weak = vec![false; object.symbols.len()];
    let mut unbound = Vec::new();
    let mut missing: Vec<Box<str>> = Vec::new();
    for ((index, (name, _)), found) in wanted.iter().zip(&names).zip(found) {
        let weak = object
            .symbols
            .get(*index)
            .is_some_and(|symbol| symbol.is_weak());
        let address = found.or_else(|| {
            loader
                .fallback
                .and_then(|fallback| fallback.resolve(name))
                .map(VirtAddr::as_u64)
        });
        let yielded = matches!(layout.bindings.get(*index), Some(Binding::Yielded { .. }));
        if yielded {
            // Found: bind to it. Gone: `symbol_values` uses the module's own copy.
            if let Some(slot) = external.get_mut(*index) {
                *slot = address;
            }
            continue;
        }
        if address.is_none() && weak {
            if let Some(flag) = absent_weak.get_mut(*index) {
                *flag = true;
            }
        }
        match address.or(if weak { Some(0) } else { None }) {
            Some(address) => {
                if let Some(slot) = external.get_mut(*index) {
                    *slot = Some(address);
                }
            }
            // Planned as pending (`layout.pending` is in symbol order): its
            // slots lead to the unbound path. `wanted` ascends, so does this.
            None if layout.pending.binary_search(index).is_ok() => unbound.push(*index),
            None => missing.push((*name).into()),
        }
    }
    if !missing.is_empty() {
        missing.sort_unstable();
        missing.dedup();
        return Err(object.error(ErrorKind::Unresolved { names: missing }));
    }
    let resolution = Resolution {
        external,
        absent_weak,
        unbound,
        pins,
    };
    Ok((resolution, globals))
}

/// Bytes in a GOT slot, on every machine.
const GOT_WORD: u64 = 8;

/// In [`SectionFixups::addresses`]: the symbol has no address. The fast path
/// declines its entries, and the full engine, which reads the whole record,
/// says why. A symbol whose address happens to be this value (it is not a
/// canonical address) is declined too, and the full engine applies it.
const NO_FAST_ADDRESS: u64 = 1 << 63;

/// The inputs shared by every entry of one relocation section.
struct SectionFixups<'s, 'o> {
    object: &'s Object<'o>,
    /// The index of the section the entries patch.
    index: usize,
    symbols: &'s SymbolTargets<'s>,
    /// Per symbol: its address as in `symbols`, or [`NO_FAST_ADDRESS`].
    addresses: &'s [u64],
    /// The plan's stubs, by `(symbol, addend key)`.
    stub_slots: &'s NameMap<(usize, i64), u32>,
    /// The section's target address.
    target: u64,
    got: u64,
    stubs: u64,
    stub_size: u64,
}

impl SectionFixups<'_, '_> {
    /// Applies the x86-64 `relocations` to the section's `bytes`. Entry `i`
    /// is relaxed if bit `first + i` of `relaxed` is set: the plan's decision.
    /// Marks the stubs calls went through.
    fn apply_x86_64(
        &self,
        relocations: &RelocationSection<'_>,
        (relaxed, first): (&EntryBits, usize),
        bytes: &mut [u8],
        stub_used: &mut [bool],
    ) -> Result<(), LoadError> {
        // Code built without `-fPIC` (kernel code, typically) has no load to
        // relax: its loop needs no relaxation bits and no selects.
        if relaxed.any_in(first, relocations.len()) {
            self.apply_x86_64_entries::<true>(relocations, (relaxed, first), bytes, stub_used)
        } else {
            self.apply_x86_64_entries::<false>(relocations, (relaxed, first), bytes, stub_used)
        }
    }

    /// [`Self::apply_x86_64`]'s loop, for a section with relaxed loads
    /// (`RELAXES`) or without. Not inlined into [`Placed::relocate`], so
    /// that this loop has the registers to itself.
    #[inline(never)]
    fn apply_x86_64_entries<const RELAXES: bool>(
        &self,
        relocations: &RelocationSection<'_>,
        (relaxed, first): (&EntryBits, usize),
        bytes: &mut [u8],
        stub_used: &mut [bool],
    ) -> Result<(), LoadError> {
        let mut relaxed = relaxed.cursor(first);
        for (position, entry) in relocations.entries().enumerate() {
            let relax = RELAXES && relaxed.next_bit();
            // The engine's fast path first: it applies nearly every entry,
            // and declines, writing nothing, where the full path is needed.
            // Loads through a GOT slot (rare outside position-independent
            // references to other modules) take the full path.
            let symbol = self
                .addresses
                .get(entry.r_sym())
                .copied()
                .unwrap_or(NO_FAST_ADDRESS);
            let place = self.target.wrapping_add(entry.r_offset);
            let fast = symbol != NO_FAST_ADDRESS
                && usize::try_from(entry.r_offset).is_ok_and(|offset| {
                    let (r_type, addend) = (entry.r_type, entry.r_addend);
                    if RELAXES {
                        x86_64::apply_fast(r_type, bytes, offset, symbol, addend, place, relax)
                    } else {
                        x86_64::apply_fast_unrelaxed(r_type, bytes, offset, symbol, addend, place)
                    }
                });
            if fast {
                continue;
            }
            // By position: the entry itself would be kept in memory for it,
            // on the fast path too.
            self.apply_one_x86_64(relocations, position, relax, bytes, stub_used)?;
        }
        Ok(())
    }

    /// Entry `position` through the full engine, for what the fast path
    /// declined: it applies the entry (marking its stub if the call went
    /// through it) or says exactly why not.
    #[inline(never)]
    fn apply_one_x86_64(
        &self,
        relocations: &RelocationSection<'_>,
        position: usize,
        relax: bool,
        bytes: &mut [u8],
        stub_used: &mut [bool],
    ) -> Result<(), LoadError> {
        let Some(entry) = relocations.get(position) else {
            return Ok(());
        };
        let target = self.symbols.get().get(entry.r_sym());
        let applied = (|| {
            let target = target.ok_or(RelocationProblem::BadSymbol)?;
            let offset =
                usize::try_from(entry.r_offset).map_err(|_| RelocationProblem::OutOfBounds)?;
            // An x86-64 stub jumps to the symbol itself: one per symbol.
            let inputs = self
                .inputs(&entry, target, target.stub)
                .ok_or(RelocationProblem::TargetNotLoaded)?;
            x86_64::apply_common(entry.r_type, bytes, offset, &inputs, relax).unwrap_or_else(|| {
                let inputs = self.sized(&entry, &inputs);
                x86_64::apply(entry.r_type, bytes, offset, &inputs, relax)
            })
        })();
        match applied {
            Ok(Applied::Direct) => Ok(()),
            Ok(Applied::ThroughStub) => {
                mark_used(stub_used, target.map_or(SymbolTarget::NO_SLOT, |t| t.stub));
                Ok(())
            }
            Err(problem) => Err(relocation_error(self.object, self.index, &entry, problem)),
        }
    }

    /// Applies the AArch64 `relocations` to the section's `bytes`, marking
    /// the veneers branches went through.
    fn apply_aarch64(
        &self,
        relocations: &RelocationSection<'_>,
        bytes: &mut [u8],
        stub_used: &mut [bool],
    ) -> Result<(), LoadError> {
        let symbols = self.symbols.get();
        for entry in relocations.entries() {
            let fail = |problem| relocation_error(self.object, self.index, &entry, problem);
            let target = symbols
                .get(entry.r_sym())
                .ok_or_else(|| fail(RelocationProblem::BadSymbol))?;
            let offset = usize::try_from(entry.r_offset)
                .map_err(|_| fail(RelocationProblem::OutOfBounds))?;
            // A veneer jumps to symbol plus addend, so each addend has its own.
            let veneer = if entry.r_addend == 0 {
                target.stub
            } else {
                let key = (entry.r_sym(), stub_addend(Machine::AArch64, entry.r_addend));
                self.stub_slots
                    .get(&key)
                    .copied()
                    .unwrap_or(SymbolTarget::NO_SLOT)
            };
            let mut inputs = self
                .inputs(&entry, target, veneer)
                .ok_or_else(|| fail(RelocationProblem::TargetNotLoaded))?;
            if target.is(SymbolTarget::ABSENT_WEAK) {
                inputs.symbol = aarch64::absent_weak_symbol(entry.r_type, inputs.place);
            }
            let outcome = aarch64::apply(entry.r_type, bytes, offset, &self.sized(&entry, &inputs))
                .map_err(fail)?;
            if outcome == Applied::ThroughStub {
                mark_used(stub_used, veneer);
            }
        }
        Ok(())
    }

    /// The formula's inputs for `entry`, whose symbol is `target` and whose
    /// call may use stub `stub`; `None` if the symbol has no address.
    #[inline(always)]
    fn inputs(&self, entry: &Rela, target: &SymbolTarget, stub: u32) -> Option<FixupInputs> {
        Some(FixupInputs {
            symbol: target.address()?,
            addend: entry.r_addend,
            place: self.target.wrapping_add(entry.r_offset),
            got: self.got,
            got_slot: target.got_slot(),
            stub: slot_address(self.stubs, self.stub_size, stub),
            symbol_size: 0,
        })
    }

    /// `inputs` with Z, the symbol's size, which only a few types read.
    fn sized(&self, entry: &Rela, inputs: &FixupInputs) -> FixupInputs {
        FixupInputs {
            symbol_size: self
                .object
                .symbols
                .get(entry.r_sym())
                .map_or(0, |symbol| symbol.size),
            ..*inputs
        }
    }
}

fn mark_used(used: &mut [bool], slot: u32) {
    if let Some(used) = used.get_mut(slot as usize) {
        *used = true;
    }
}

/// The target address of slot `slot` of an area of `size`-byte slots at
/// `base` (the GOT, the stubs), or `None` for [`SymbolTarget::NO_SLOT`].
/// Slots lie inside the reservation, so this never wraps.
#[inline(always)]
fn slot_address(base: u64, size: u64, slot: u32) -> Option<u64> {
    (slot != SymbolTarget::NO_SLOT).then(|| base.wrapping_add(u64::from(slot).wrapping_mul(size)))
}

/// What relocating needs of one symbol, gathered once for all its entries
/// into 24 bytes, so that the records of a large module stay in cache.
#[derive(Clone, Copy)]
struct SymbolTarget {
    /// S, when [`Self::HAS_ADDRESS`] is set (a discarded section has none).
    address: u64,
    /// The target address of its GOT slot, when [`Self::HAS_GOT_SLOT`] is set.
    got_slot: u64,
    /// Its stub (x86-64) or addend-0 veneer (AArch64), or [`Self::NO_SLOT`].
    stub: u32,
    flags: u32,
}

impl SymbolTarget {
    /// No stub: slot numbers are counted per module, far below this.
    const NO_SLOT: u32 = u32::MAX;
    const HAS_ADDRESS: u32 = 1;
    const HAS_GOT_SLOT: u32 = 2;
    /// A weak undefined symbol nothing defines (AArch64 resolves it
    /// differently per relocation type).
    const ABSENT_WEAK: u32 = 4;

    #[inline(always)]
    fn is(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    #[inline(always)]
    fn address(&self) -> Option<u64> {
        self.is(Self::HAS_ADDRESS).then_some(self.address)
    }

    #[inline(always)]
    fn got_slot(&self) -> Option<u64> {
        self.is(Self::HAS_GOT_SLOT).then_some(self.got_slot)
    }
}

/// One [`SymbolTarget`] per symbol, for a GOT of `got_size`-byte slots at
/// target address `got`, built on first use.
struct SymbolTargets<'s> {
    layout: &'s Layout<'s>,
    values: &'s [Option<u64>],
    absent_weak: &'s [bool],
    got: u64,
    got_size: u64,
    built: OnceCell<Vec<SymbolTarget>>,
}

impl SymbolTargets<'_> {
    /// One record per symbol, built by the first call.
    fn get(&self) -> &[SymbolTarget] {
        self.built.get_or_init(|| self.build())
    }

    fn build(&self) -> Vec<SymbolTarget> {
        let flag = |set: bool, flag: u32| if set { flag } else { 0 };
        let mut targets: Vec<SymbolTarget> = self
            .values
            .iter()
            .enumerate()
            .map(|(index, address)| {
                let got_slot = self.layout.got_slot.get(index).copied().flatten();
                let slot = got_slot.unwrap_or(SymbolTarget::NO_SLOT);
                SymbolTarget {
                    address: address.unwrap_or(0),
                    got_slot: slot_address(self.got, self.got_size, slot).unwrap_or(0),
                    stub: SymbolTarget::NO_SLOT,
                    flags: flag(address.is_some(), SymbolTarget::HAS_ADDRESS)
                        | flag(got_slot.is_some(), SymbolTarget::HAS_GOT_SLOT)
                        | flag(
                            self.absent_weak.get(index) == Some(&true),
                            SymbolTarget::ABSENT_WEAK,
                        ),
                }
            })
            .collect();
        // Nearly every call's stub has addend key 0 (every x86-64 one does):
        // those sit in the symbol's record.
        for (&(symbol, addend), &slot) in &self.layout.stub_slot {
            if let (0, Some(target)) = (addend, targets.get_mut(symbol)) {
                target.stub = slot;
            }
        }
        targets
    }
}

/// Gives every FDE of an unwind table whose function was not loaded (its
/// `pc_begin` names a symbol with no address) an empty range: zeroes the
/// `pc_range` that follows `pc_begin`, in the same encoding. `data` is the
/// table as in the file (its lengths are never relocated); `bytes` is the
/// relocated table.
fn empty_discarded_fdes(
    machine: Machine,
    data: &[u8],
    relocations: &RelocationSection<'_>,
    values: &[Option<u64>],
    bytes: &mut [u8],
) {
    let word = |at: usize| {
        data.get(at..)
            .and_then(<[u8]>::first_chunk::<4>)
            .map(|word| u32::from_le_bytes(*word))
    };
    let mut pc_begins = Vec::new();
    let mut at = 0usize;
    // Each entry: a 4-byte length (0xffffffff: 64-bit lengths, not used for
    // .eh_frame by any compiler here, so the walk stops), then the CIE
    // pointer, 0 in a CIE; an FDE's pc_begin follows it.
    while let Some(length) = word(at).filter(|length| *length != 0 && *length != u32::MAX) {
        if word(at.saturating_add(4)).is_some_and(|cie_pointer| cie_pointer != 0) {
            pc_begins.push(at.saturating_add(8) as u64);
        }
        at = at.saturating_add(4).saturating_add(length as usize);
    }
    for entry in relocations.entries() {
        let discarded = values.get(entry.r_sym()).is_some_and(Option::is_none);
        if !discarded || pc_begins.binary_search(&entry.r_offset).is_err() {
            continue;
        }
        let width: usize = match (machine, entry.r_type) {
            (Machine::X86_64, x86_64::R_X86_64_64 | x86_64::R_X86_64_PC64) => 8,
            (Machine::AArch64, aarch64::R_AARCH64_ABS64 | aarch64::R_AARCH64_PREL64) => 8,
            _ => 4,
        };
        let range = usize::try_from(entry.r_offset)
            .ok()
            .and_then(|start| start.checked_add(width))
            .and_then(|start| Some(start..start.checked_add(width)?));
        if let Some(range_bytes) = range.and_then(|range| bytes.get_mut(range)) {
            range_bytes.fill(0);
        }
    }
}

/// The target address of `value` in loaded section `section`.
fn own_copy(targets: &Targets, section: usize, value: u64) -> Option<u64> {
    targets
        .sections
        .get(section)
        .map(|base| base.wrapping_add(value))
}

/// S for every symbol, or `None` where it has no address (discarded).
fn symbol_values(
    layout: &Layout<'_>,
    targets: &Targets,
    external: &[Option<u64>],
) -> Vec<Option<u64>> {
    layout
        .bindings
        .iter()
        .enumerate()
        .map(|(index, binding)| match *binding {
            Binding::Unused => Some(0),
            Binding::Section { section, value } => own_copy(targets, section, value),
            Binding::Absolute(value) => Some(value),
            Binding::Common { offset } => Some(targets.common.wrapping_add(offset)),
            Binding::External => external.get(index).copied().flatten(),
            Binding::Yielded { section, value } => external
                .get(index)
                .copied()
                .flatten()
                .or_else(|| own_copy(targets, section, value)),
            Binding::GotBase => Some(targets.got),
            Binding::DsoHandle => layout
                .got_slot
                .get(index)
                .copied()
                .flatten()
                .and_then(|slot| slot_address(targets.got, GOT_WORD, slot)),
            Binding::Discarded => None,
        })
        .collect()
}

fn fill_got_and_stubs(
    object: &Object<'_>,
    layout: &Layout<'_>,
    values: &[Option<u64>],
    bytes: &mut LayoutBytes<'_>,
) -> Result<(), LoadError> {
    let sizes = SlotSizes::of(object.machine);
    let got = Slots {
        object,
        values,
        entries: layout
            .got_slot
            .iter()
            .enumerate()
            .filter_map(|(symbol, slot)| Some(((*slot)?, symbol, 0)))
            .collect(),
        area: layout.got,
        size: sizes.got_slot,
    };
    got.fill(bytes, |slot, value| {
        write_field(slot, 0, slot.len(), i128::from(value), Range::Either)
    })?;
    let stubs = Slots {
        object,
        values,
        entries: layout
            .stub_slot
            .iter()
            .map(|(&(symbol, addend), &slot)| (slot, symbol, addend))
            .collect(),
        area: layout.stubs,
        size: sizes.stub,
    };
    stubs.fill(bytes, |stub, value| match object.machine {
        Machine::X86_64 => x86_64::write_stub(stub, value),
        Machine::AArch64 => aarch64::write_veneer(stub, value),
    })
}

/// One area of fixed-size slots (the GOT, the stubs) and what each slot holds.
struct Slots<'s, 'o> {
    object: &'s Object<'o>,
    values: &'s [Option<u64>],
    /// `(slot, symbol index, addend)`: the slot holds or jumps to symbol + addend.
    entries: Vec<(u32, usize, i64)>,
    area: Placement,
    size: u64,
}

impl Slots<'_, '_> {
    /// Writes each slot with `write(slot_bytes, target_address)`.
    fn fill(
        &self,
        bytes: &mut LayoutBytes<'_>,
        write: impl Fn(&mut [u8], u64) -> Result<(), RelocationProblem>,
    ) -> Result<(), LoadError> {
        let broken = || mismatch(self.object, self.area.kind, self.area.size, 0);
        for &(slot, index, addend) in &self.entries {
            let value = self
                .values
                .get(index)
                .copied()
                .flatten()
                .ok_or_else(|| discarded_target(self.object, index))?;
            let slot_bytes = self
                .area
                .range(u64::from(slot).saturating_mul(self.size), self.size)
                .and_then(|range| bytes.get_mut(range))
                .ok_or_else(broken)?;
            write(slot_bytes, value.wrapping_add_signed(addend)).map_err(|_| broken())?;
        }
        Ok(())
    }
}

fn discarded_target(object: &Object<'_>, index: usize) -> LoadError {
    object.error(ErrorKind::Symbol {
        index,
        name: object.symbol_name(index),
        problem: crate::error::SymbolProblem::BadSectionIndex {
            shndx: object.symbols.get(index).map_or(0, |symbol| symbol.shndx),
        },
    })
}

/// The non-null entries of the given pointer arrays, in order.
fn read_pointers(
    sections: &[usize],
    layout: &Layout<'_>,
    bytes: &LayoutBytes<'_>,
) -> Vec<VirtAddr> {
    let mut pointers = Vec::new();
    for index in sections {
        let Some(placement) = layout.placements.get(*index).copied().flatten() else {
            continue;
        };
        let array = placement.whole().and_then(|range| bytes.get(range));
        for entry in array.unwrap_or_default().chunks_exact(8) {
            let value = entry.try_into().map_or(0, u64::from_le_bytes);
            // 0 and -1 are the conventional "no entry" markers.
            if value != 0 && value != u64::MAX {
                pointers.push(VirtAddr::new(value));
            }
        }
    }
    pointers
}

/// The module's global definitions (named in `resolve`) at their addresses,
/// indexed by name; those without an address are dropped.
fn definitions(
    globals: NameList,
    layout: &Layout<'_>,
    targets: &Targets,
    values: &[Option<u64>],
) -> ModuleNames {
    globals.finish(|index| match layout.bindings.get(index)? {
        Binding::Yielded { section, value } => own_copy(targets, *section, *value),
        _ => values.get(index).copied().flatten(),
    })
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
        .with_unwind_tables(unwind_tables);
        let id = loader
            .namespace
            .publish(record, pins)
            .map_err(|kind| LoadError::new(&name, kind))?;
        let init = if runs_here { init } else { Vec::new() };
        Ok((Module::new(loader.namespace, id), init))
    }
}
pub(crate) mod entry;
pub(crate) mod sets;
