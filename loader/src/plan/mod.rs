//! The layout plan: every byte a module needs, worked out before any memory is
//! allocated. The caller can read it to reserve memory, and the later stages
//! check that what they used is exactly what it promised.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use goblin::elf::section_header::{
    SHF_ALLOC, SHF_EXECINSTR, SHF_TLS, SHF_WRITE, SHT_FINI_ARRAY, SHT_GROUP, SHT_INIT_ARRAY,
    SHT_NOBITS, SHT_NOTE, SHT_PREINIT_ARRAY,
};

use crate::addr::Alignment;
use crate::arch::Machine;
use crate::arch::RelocationProblem;
use crate::arch::{x86_64, Needs, RelocationType, SlotSizes};
use crate::error::{ErrorKind, LoadError, SectionProblem, SymbolProblem};
use crate::kinds::{Extent, SectionKind, Segment, MAX_ALIGNMENT, MAX_MODULE_SIZE};
use crate::names::{NameMap, NAME_HASHER};
use crate::object::relocation_error;
use crate::object::{
    Object, Rela, RelocationSection, Section, SHN_ABS, SHN_COMMON, SHN_LORESERVE, SHN_UNDEF,
    STT_FILE,
};

/// `SHT_X86_64_UNWIND`, the type gas gives `.eh_frame` on x86-64.
const SHT_X86_64_UNWIND: u32 = 0x7000_0001;
/// The name assemblers give the GOT; each module's refers to its own.
const GOT_SYMBOL: &str = "_GLOBAL_OFFSET_TABLE_";
/// The name C++ gives the handle `__cxa_atexit` files a shared object's
/// destructors under; each module has its own (see [`Binding::DsoHandle`]).
pub(crate) const DSO_HANDLE_SYMBOL: &str = "__dso_handle";

/// Whether an undefined `name` is one each module defines for itself.
pub(crate) fn is_module_defined(name: &str) -> bool {
    name == GOT_SYMBOL || name == DSO_HANDLE_SYMBOL
}

/// The exact layout of one module, computed before allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    kinds: [Extent; 6],
    segments: [Extent; 3],
    size: u64,
    align: Alignment,
    got_slots: u32,
    stub_slots: u32,
    pending_imports: u32,
    relocations: Vec<(RelocationType, u64)>,
}

impl Plan {
    /// The exact extent of one kind.
    pub fn kind(&self, kind: SectionKind) -> Extent {
        self.kinds.get(kind.slot()).copied().unwrap_or(EMPTY)
    }

    /// The page-rounded extent of one segment (what finalize protects).
    pub fn segment(&self, segment: Segment) -> Extent {
        self.segments.get(segment.slot()).copied().unwrap_or(EMPTY)
    }

    /// Bytes of the single contiguous reservation the module needs: a whole
    /// number of pages, and at least one.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Alignment of that reservation: at least a page.
    pub fn alignment(&self) -> Alignment {
        self.align
    }

    /// GOT slots reserved: one per distinct symbol reached through the GOT,
    /// except loads of symbols in the module itself, which are relaxed to `lea`.
    pub fn got_slots(&self) -> u32 {
        self.got_slots
    }

    /// Stubs (x86-64) or veneers (AArch64) reserved: one per distinct call
    /// target outside the module, since its distance is unknown until placement.
    /// On AArch64 a target is a symbol and addend pair, because a veneer jumps
    /// to their sum.
    pub fn stub_slots(&self) -> u32 {
        self.stub_slots
    }

    /// Imports planned as pending (see [`Loader::late_binding`](crate::Loader::late_binding)):
    /// names nothing defined when the module was planned, reached only
    /// through loader-owned slots. Each takes a GOT slot (counted in
    /// [`Plan::got_slots`]), a two-word context after the GOT's slots and a
    /// lazy entry after the stubs, all inside the [`SectionKind::Got`] and
    /// [`SectionKind::Stubs`] extents.
    pub fn pending_imports(&self) -> u32 {
        self.pending_imports
    }

    /// How many relocations of each type will be applied, by type.
    pub fn relocation_counts(&self) -> &[(RelocationType, u64)] {
        &self.relocations
    }

    /// Total relocations to apply.
    pub fn relocation_total(&self) -> u64 {
        self.relocations.iter().map(|(_, count)| count).sum()
    }
}

const EMPTY: Extent = Extent {
    offset: 0,
    size: 0,
    align: Alignment::BYTE,
};

/// Where a loaded section (or the GOT, stub or `COMMON` area) goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Placement {
    pub kind: SectionKind,
    pub offset: u64,
    pub size: u64,
}

impl Placement {
    /// The bytes `[at, at + len)` of this piece, as a range of the reservation,
    /// or `None` if the numbers do not fit a `usize`.
    pub fn range(&self, at: u64, len: u64) -> Option<core::ops::Range<usize>> {
        let start = usize::try_from(self.offset.checked_add(at)?).ok()?;
        Some(start..start.checked_add(usize::try_from(len).ok()?)?)
    }

    /// The whole piece, as a range of the reservation.
    pub fn whole(&self) -> Option<core::ops::Range<usize>> {
        self.range(0, self.size)
    }
}

/// How a symbol gets its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Binding {
    /// The null symbol and file symbols: never referenced.
    Unused,
    /// Defined in a loaded section of this module.
    Section { section: usize, value: u64 },
    /// `SHN_ABS`.
    Absolute(u64),
    /// A `COMMON` symbol placed at this offset of the common area.
    Common { offset: u64 },
    /// Looked up by name at relocation time.
    External,
    /// A weak definition in a loaded section that yielded to a definition
    /// already in the namespace: looked up by name like `External`, and if the
    /// name is gone by relocation time, the module's own copy is used.
    Yielded { section: usize, value: u64 },
    /// `_GLOBAL_OFFSET_TABLE_`: this module's own GOT.
    GotBase,
    /// `__dso_handle`: an address unique to this module, as a shared
    /// object's is, so that destructors a C++ module registers with
    /// `__cxa_atexit` can be run for it alone (`__cxa_finalize`). It is
    /// the address of a GOT slot of its own, which holds that address.
    DsoHandle,
    /// Defined in a section that is not loaded.
    Discarded,
}

impl Binding {
    /// Defined by this module itself, not looked up by name.
    pub fn is_defined_here(self) -> bool {
        matches!(
            self,
            Binding::Section { .. } | Binding::Common { .. } | Binding::Absolute(_)
        )
    }

    /// Placed inside this module's reservation, so within 32-bit reach of its
    /// code (an absolute symbol may be anywhere).
    pub fn is_placed_here(self) -> bool {
        matches!(self, Binding::Section { .. } | Binding::Common { .. })
    }
}

/// Everything the later stages need besides the public [`Plan`].
pub(crate) struct Layout<'a> {
    /// Per section index.
    pub placements: Vec<Option<Placement>>,
    /// Per symbol index.
    pub bindings: Vec<Binding>,
    pub got: Placement,
    pub stubs: Placement,
    pub common: Placement,
    /// Per symbol index: its GOT slot and stub, if planned.
    pub got_slot: Vec<Option<u32>>,
    /// Per call target `(symbol index, addend key)`: its stub. Relocation
    /// finds an entry's stub here again rather than carrying a record per
    /// entry from planning: the key is a pure function of the entry.
    pub stub_slot: NameMap<(usize, i64), u32>,
    /// Per relocation entry, all sections' entries in a row (in the order
    /// of `Object::relocations`): whether planning relaxed it (see
    /// [`relaxes`]). Relocation obeys this rather than reading the
    /// instruction again: one bit an entry, where the file's bytes would be
    /// one more stream through memory.
    pub relaxed: EntryBits,
    /// Section indices of init and fini arrays, in run order (fini reversed later).
    pub init: Vec<usize>,
    pub fini: Vec<usize>,
    /// Symbol indices of the pending imports, in the order of their
    /// contexts and lazy entries. Each has a GOT slot in `got_slot`.
    pub pending: Vec<usize>,
    /// Section indices of the unwind tables loaded, each followed by a
    /// zero terminator.
    pub unwind: Vec<usize>,
    /// COMDAT signatures this module loads (and so will own).
    pub comdats: Vec<&'a str>,
    /// Global symbols of COMDAT copies discarded here, by symbol index: the
    /// group's signature, whose owner resolves the name even if it keeps the
    /// symbol hidden.
    pub comdat_of: BTreeMap<usize, &'a str>,
}

/// What planning asks of the namespace a module will join: which names it
/// defines already (a weak definition yields to them) and which COMDAT
/// groups it holds (a module's copy is then not loaded).
pub(crate) trait Existing {
    /// Whether some loaded module or the host exports `name`.
    fn is_defined(&self, name: &str) -> bool;
    /// Whether a loaded module owns the COMDAT group `signature`.
    fn has_comdat(&self, signature: &str) -> bool;
}

/// Computes the plan for `object`, given what the namespace already holds.
/// `pending` marks, per symbol index, the undefined names that nothing
/// defines and that may stay pending (empty without late binding).
pub(crate) fn plan<'a>(
    object: &Object<'a>,
    namespace: &impl Existing,
    pending: &[bool],
    keep_unwind: bool,
) -> Result<(Plan, Layout<'a>), LoadError> {
    let (discarded, comdats) = discarded_sections(object, namespace);
    let mut kinds: [Vec<usize>; 6] = Default::default();
    let mut loaded = vec![false; object.sections.len()];
    let mut init = Vec::new();
    let mut fini = Vec::new();
    for (index, section) in object.sections.iter().enumerate() {
        if discarded.get(index).copied().flatten().is_some() || !is_loaded(section, keep_unwind) {
            continue;
        }
        let kind = classify(section).map_err(|problem| {
            object.error(ErrorKind::Section {
                section: object.section_ref(index),
                problem,
            })
        })?;
        if section.align.bytes() > MAX_ALIGNMENT {
            let align = section.align.bytes();
            return Err(object.error(ErrorKind::Section {
                section: object.section_ref(index),
                problem: SectionProblem::BadAlignment { align },
            }));
        }
        match section.sh_type {
            SHT_INIT_ARRAY => init.push((array_priority(section.name), index)),
            SHT_FINI_ARRAY => fini.push((array_priority(section.name), index)),
            _ => {}
        }
        if let (Some(list), Some(flag)) = (kinds.get_mut(kind.slot()), loaded.get_mut(index)) {
            list.push(index);
            *flag = true;
        }
    }
    init.sort_unstable();
    fini.sort_unstable();

    let (bindings, comdat_of) = bind_symbols(object, &loaded, &discarded, namespace)?;
    let mut commons: Vec<(usize, u64, Alignment)> = Vec::new();
    for (index, symbol) in object.symbols.iter().enumerate() {
        if bindings.get(index) == Some(&Binding::Common { offset: 0 }) {
            let align = Alignment::from_elf(symbol.value)
                .filter(|align| align.bytes() <= MAX_ALIGNMENT)
                .ok_or_else(|| {
                    object.error(ErrorKind::Symbol {
                        index,
                        name: symbol.name.into(),
                        problem: SymbolProblem::BadCommonAlignment {
                            align: symbol.value,
                        },
                    })
                })?;
            commons.push((index, symbol.size, align));
        }
    }

    let slots = assign_slots(object, &loaded, &bindings, pending)?;
    let SlotSizes {
        got_slot: got_slot_size,
        stub: stub_size,
        stub_align,
        lazy_entry,
        ..
    } = SlotSizes::of(object.machine);
    let pending_count = slots.pending.len() as u64;

    let mut builder = Builder::default();
    let mut placements = vec![None; object.sections.len()];
    let place_sections =
        |builder: &mut Builder, kind: SectionKind, placements: &mut Vec<Option<Placement>>| {
            for &index in kinds
                .get(kind.slot())
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                if let Some(section) = object.sections.get(index) {
                    let size = match is_unwind_table(section) {
                        true => section.size.saturating_add(UNWIND_TERMINATOR),
                        false => section.size,
                    };
                    let placement = builder.place(kind, size, section.align);
                    if let (Some(slot), Some(placement)) = (placements.get_mut(index), placement) {
                        *slot = Some(placement);
                    }
                }
            }
        };
    let too_large = |builder: &Builder| {
        object.error(ErrorKind::ModuleTooLarge {
            size: builder.cursor,
        })
    };

    builder.start_segment(Segment::Code);
    place_sections(&mut builder, SectionKind::Text, &mut placements);
    let stubs = builder
        .place(
            SectionKind::Stubs,
            u64::from(slots.stub_count)
                .saturating_mul(stub_size)
                .saturating_add(pending_count.saturating_mul(lazy_entry)),
            Alignment::new(stub_align).unwrap_or(Alignment::BYTE),
        )
        .ok_or_else(|| too_large(&builder))?;
    builder.start_segment(Segment::ReadOnly);
    place_sections(&mut builder, SectionKind::ReadOnly, &mut placements);
    let got = builder
        .place(
            SectionKind::Got,
            u64::from(slots.got_count)
                .saturating_add(pending_count.saturating_mul(PENDING_CONTEXT_SLOTS))
                .saturating_mul(got_slot_size),
            Alignment::new(got_slot_size).unwrap_or(Alignment::BYTE),
        )
        .ok_or_else(|| too_large(&builder))?;
    builder.start_segment(Segment::Writable);
    place_sections(&mut builder, SectionKind::Data, &mut placements);
    place_sections(&mut builder, SectionKind::Bss, &mut placements);
    // COMMON symbols form one area at the end of bss, in symbol order.
    let common_align = commons
        .iter()
        .fold(Alignment::BYTE, |acc, (_, _, align)| acc.max(*align));
    let mut common_size = 0u64;
    let mut bindings = bindings;
    for (index, size, align) in &commons {
        let offset = align
            .align_up(common_size)
            .ok_or_else(|| too_large(&builder))?;
        common_size = offset
            .checked_add(*size)
            .ok_or_else(|| too_large(&builder))?;
        if let Some(binding) = bindings.get_mut(*index) {
            *binding = Binding::Common { offset };
        }
    }
    let common = builder
        .place(SectionKind::Bss, common_size, common_align)
        .ok_or_else(|| too_large(&builder))?;
    let cursor = builder.cursor;
    let plan = builder
        .finish(
            slots.got_count,
            slots.stub_count,
            pending_count as u32,
            slots.counts,
        )
        .ok_or_else(|| object.error(ErrorKind::ModuleTooLarge { size: cursor }))?;
    if plan.size > MAX_MODULE_SIZE {
        return Err(object.error(ErrorKind::ModuleTooLarge { size: plan.size }));
    }
    let layout = Layout {
        placements,
        bindings,
        got,
        stubs,
        common,
        got_slot: slots.got_slot,
        stub_slot: slots.stub_slot,
        relaxed: slots.relaxed,
        pending: slots.pending,
        unwind: (0..object.sections.len())
            .filter(|index| {
                loaded.get(*index) == Some(&true)
                    && object.sections.get(*index).is_some_and(is_unwind_table)
            })
            .collect(),
        init: init.into_iter().map(|(_, index)| index).collect(),
        fini: fini.into_iter().map(|(_, index)| index).collect(),
        comdats,
        comdat_of,
    };
    Ok((plan, layout))
}

/// Sections are loaded when allocated at run time. Notes are dropped, and
/// so is `.eh_frame` unless `keep_unwind` asks for it (see
/// [`Loader::keep_unwind_tables`](crate::Loader::keep_unwind_tables)): a
/// kernel has no unwinder to read it, and modules are built with
/// `panic=abort`/`-fno-asynchronous-unwind-tables`, so this saves its memory.
fn is_loaded(section: &Section<'_>, keep_unwind: bool) -> bool {
    section.flags & u64::from(SHF_ALLOC) != 0
        && section.sh_type != SHT_NOTE
        && section.sh_type != SHT_GROUP
        && (keep_unwind || !is_unwind_table(section))
}

/// Whether `section` is a table of call frame information (`.eh_frame`).
pub(crate) fn is_unwind_table(section: &Section<'_>) -> bool {
    section.sh_type == SHT_X86_64_UNWIND || section.name == ".eh_frame"
}

/// Zero bytes after each unwind table: the terminator (a zero length) that
/// an unwinder's `__register_frame` reads up to, which a linker would add.
pub(crate) const UNWIND_TERMINATOR: u64 = 4;

fn classify(section: &Section<'_>) -> Result<SectionKind, SectionProblem> {
    let flag = |bit: u32| section.flags & u64::from(bit) != 0;
    if flag(SHF_TLS) {
        return Err(SectionProblem::ThreadLocal);
    }
    Ok(match (flag(SHF_WRITE), flag(SHF_EXECINSTR)) {
        (true, true) => return Err(SectionProblem::WritableAndExecutable),
        (false, true) => SectionKind::Text,
        _ if section.sh_type == SHT_NOBITS => SectionKind::Bss,
        _ if matches!(
            section.sh_type,
            SHT_INIT_ARRAY | SHT_FINI_ARRAY | SHT_PREINIT_ARRAY
        ) =>
        {
            SectionKind::ReadOnly
        }
        (true, false) if section.name.starts_with(".data.rel.ro") => SectionKind::ReadOnly,
        (true, false) => SectionKind::Data,
        (false, false) => SectionKind::ReadOnly,
    })
}

/// `.init_array.NNNNN` runs by ascending NNNNN, before plain `.init_array`
/// (which gcc uses for the default priority, 65535).
fn array_priority(name: &str) -> u32 {
    name.rsplit_once('.')
        .and_then(|(_, digits)| digits.parse::<u32>().ok())
        .unwrap_or(65_536)
}

/// Sections of COMDAT groups that an earlier module already loaded, and the
/// signatures of the groups this module will load itself.
/// Per section: the signature of the COMDAT group that discards it, if an
/// earlier module loaded that group.
type Discarded<'a> = Vec<Option<&'a str>>;

fn discarded_sections<'a>(
    object: &Object<'a>,
    namespace: &impl Existing,
) -> (Discarded<'a>, Vec<&'a str>) {
    let mut discarded = vec![None; object.sections.len()];
    let mut owned = Vec::new();
    for group in object.groups.iter().filter(|group| group.comdat) {
        if namespace.has_comdat(group.signature) {
            for &member in &group.members {
                if let Some(flag) = discarded.get_mut(member as usize) {
                    *flag = Some(group.signature);
                }
            }
        } else {
            owned.push(group.signature);
        }
    }
    (discarded, owned)
}

fn bind_symbols<'a>(
    object: &Object<'a>,
    loaded: &[bool],
    discarded: &[Option<&'a str>],
    namespace: &impl Existing,
) -> Result<(Vec<Binding>, BTreeMap<usize, &'a str>), LoadError> {
    let mut comdat_of = BTreeMap::new();
    let mut bindings = Vec::with_capacity(object.symbols.len());
    for (index, symbol) in object.symbols.iter().enumerate() {
        let shndx = symbol.shndx;
        let fail = |problem| {
            object.error(ErrorKind::Symbol {
                index,
                name: symbol.name.into(),
                problem,
            })
        };
        let binding = if index == 0 || symbol.kind == STT_FILE {
            Binding::Unused
        } else if shndx == SHN_UNDEF && symbol.name == GOT_SYMBOL {
            Binding::GotBase
        } else if shndx == SHN_UNDEF && symbol.name == DSO_HANDLE_SYMBOL {
            Binding::DsoHandle
        } else if shndx == SHN_UNDEF {
            Binding::External
        } else if shndx == SHN_ABS {
            Binding::Absolute(symbol.value)
        } else if shndx == SHN_COMMON {
            // A tentative definition: the first one loaded wins, like a weak symbol.
            if namespace.is_defined(symbol.name) {
                Binding::External
            } else {
                Binding::Common { offset: 0 }
            }
        } else if shndx >= SHN_LORESERVE {
            return Err(fail(SymbolProblem::BadSectionIndex { shndx }));
        } else if let Some(signature) = discarded.get(shndx as usize).copied().flatten() {
            if symbol.is_global() {
                // The first copy may have kept it hidden: then only its
                // group's owner can answer for it (see `Layout::comdat_of`).
                comdat_of.insert(index, signature);
                Binding::External
            } else {
                Binding::Discarded
            }
        } else if !loaded.get(shndx as usize).copied().unwrap_or(false) {
            Binding::Discarded
        } else {
            let size = object
                .sections
                .get(shndx as usize)
                .map_or(0, |section| section.size);
            if symbol.value > size {
                return Err(fail(SymbolProblem::OutOfSection));
            }
            // A weak definition yields to one already loaded, but keeps its own
            // copy in case that one is gone by relocation time.
            if symbol.is_weak() && symbol.is_exported() && namespace.is_defined(symbol.name) {
                Binding::Yielded {
                    section: shndx as usize,
                    value: symbol.value,
                }
            } else {
                Binding::Section {
                    section: shndx as usize,
                    value: symbol.value,
                }
            }
        };
        bindings.push(binding);
    }
    Ok((bindings, comdat_of))
}

/// GOT slots a pending import's context takes after the GOT's own slots:
/// the namespace, then the address of the unbound path.
pub(crate) const PENDING_CONTEXT_SLOTS: u64 = 2;

struct Slots {
    relaxed: EntryBits,
    /// Pending symbols some entry reaches other than through a slot: they
    /// cannot wait, so they are unresolved.
    unpendable: Vec<usize>,
    /// The pending imports, by symbol index.
    pending: Vec<usize>,
    got_slot: Vec<Option<u32>>,
    stub_slot: NameMap<(usize, i64), u32>,
    got_count: u32,
    stub_count: u32,
    counts: Vec<(RelocationType, u64)>,
}

fn assign_slots(
    object: &Object<'_>,
    loaded: &[bool],
    bindings: &[Binding],
    pending: &[bool],
) -> Result<Slots, LoadError> {
    let symbol_count = object.symbols.len();
    let entry_count = object
        .relocations
        .iter()
        .map(|relocations| relocations.len())
        .fold(0usize, usize::saturating_add);
    let mut slots = Slots {
        relaxed: EntryBits::zeroed(entry_count),
        unpendable: Vec::new(),
        pending: Vec::new(),
        got_slot: vec![None; symbol_count],
        stub_slot: NameMap::with_hasher(NAME_HASHER),
        got_count: 0,
        stub_count: 0,
        counts: Vec::new(),
    };
    // What each entry needs of its symbol, worked out once per symbol.
    let classes: Vec<u8> = bindings
        .iter()
        .zip(pending.iter().copied().chain(core::iter::repeat(false)))
        .map(|(binding, pending)| match pending {
            // Only slots may reach it: every other entry fails the class.
            true => NeedBits::GOT_SLOT | NeedBits::STUB | NeedBits::PENDING,
            false => symbol_needs(object.machine, *binding),
        })
        .collect();
    let mut counts = TypeCounts::new(object.machine);
    // `relaxed` has one bit per entry of every section, in order.
    let mut next_entry = 0usize;
    for relocations in &object.relocations {
        let first = next_entry;
        next_entry = next_entry.saturating_add(relocations.len());
        if !loaded.get(relocations.target).copied().unwrap_or(false) {
            continue;
        }
        let data = object
            .sections
            .get(relocations.target)
            .and_then(|section| section.data)
            .unwrap_or_default();
        // One loop per machine, so that neither tests the machine per entry.
        match object.machine {
            Machine::X86_64 => {
                scan_entries::<false>(relocations, first, data, &classes, &mut counts, &mut slots)
            }
            Machine::AArch64 => {
                scan_entries::<true>(relocations, first, data, &classes, &mut counts, &mut slots)
            }
        }
        .map_err(|(entry, problem)| {
            relocation_error(object, relocations.target, &entry, problem)
        })?;
    }
    slots.counts = counts.into_list();
    if !slots.unpendable.is_empty() {
        let mut names: Vec<alloc::boxed::Box<str>> = slots
            .unpendable
            .iter()
            .map(|index| object.symbol_name(*index))
            .collect();
        names.sort_unstable();
        names.dedup();
        return Err(object.error(ErrorKind::Unresolved { names }));
    }
    for (index, binding) in bindings.iter().enumerate() {
        if *binding == Binding::DsoHandle {
            claim(&mut slots.got_slot, &mut slots.got_count, index);
        }
    }
    // Every pending import gets a GOT slot, the one binding writes, whether
    // or not an entry loads it.
    for (index, _) in pending.iter().enumerate().filter(|(_, pending)| **pending) {
        claim(&mut slots.got_slot, &mut slots.got_count, index);
        slots.pending.push(index);
    }
    Ok(slots)
}

/// Counts the entries of one relocation section, records which are relaxed
/// and reserves the GOT slots and stubs they need; the failing entry and
/// why, if one cannot be applied. Not inlined into [`plan`], so that this
/// loop has the registers to itself.
#[inline(never)]
fn scan_entries<const AARCH64: bool>(
    relocations: &RelocationSection<'_>,
    first: usize,
    data: &[u8],
    classes: &[u8],
    counts: &mut TypeCounts,
    slots: &mut Slots,
) -> Result<(), (Rela, RelocationProblem)> {
    let machine = if AARCH64 {
        Machine::AArch64
    } else {
        Machine::X86_64
    };
    for (position, entry) in relocations.entries().enumerate() {
        // What the type needs, narrowed to what its symbol calls for.
        let needs = counts.count_for(machine, entry.r_type);
        let applies = needs & classes.get(entry.r_sym()).copied().unwrap_or(0);
        // Nearly every entry: a call or reference that needs nothing more.
        if applies == NeedBits::SUPPORTED {
            continue;
        }
        let pending = classes.get(entry.r_sym()).copied().unwrap_or(0) & NeedBits::PENDING != 0;
        // A pending symbol reached other than through a slot cannot wait.
        if applies == 0 && pending && needs != 0 {
            if entry.r_type != 0 {
                slots.unpendable.push(entry.r_sym());
            }
            continue;
        }
        // A bad type or symbol index leaves nothing.
        if applies == 0 {
            let problem = match needs {
                0 => RelocationProblem::Unsupported,
                _ => RelocationProblem::BadSymbol,
            };
            return Err((entry, problem));
        }
        // Only a load of a symbol placed here reads the instruction's bytes:
        // the reads, not the branches, were the cost when every entry made
        // them (criterion, `phase-large_nopic/plan`: 164 µs, now 116 µs).
        let relaxed = !AARCH64 && applies & NeedBits::RELAXABLE != 0 && relaxes(&entry, data);
        if relaxed {
            slots.relaxed.set(first.saturating_add(position));
        }
        // A relaxed load needs no slot: clear that bit.
        let wants = applies & (NeedBits::GOT_SLOT | NeedBits::STUB) & !(u8::from(relaxed) << 1);
        if pending && !reaches_by_call::<AARCH64>(&entry, data, wants) {
            slots.unpendable.push(entry.r_sym());
            continue;
        }
        if wants != 0 {
            slots.reserve(
                machine,
                &entry,
                wants & NeedBits::GOT_SLOT != 0,
                wants & NeedBits::STUB != 0,
            );
        }
    }
    Ok(())
}

/// Whether an entry of a pending import that wants `wants` (a stub, a GOT
/// slot) is a call or jump through that slot, so that the unbound path can
/// stand in for the function. A stub serves calls alone (an AArch64 veneer
/// only with addend 0, since it jumps to the symbol itself). A GOT slot may
/// hold a function to call or data to read, which no lazy entry can stand
/// in for: only an x86-64 `call *sym@GOTPCREL(%rip)` or `jmp *...`
/// (`-fno-plt`) may wait.
fn reaches_by_call<const AARCH64: bool>(entry: &Rela, data: &[u8], wants: u8) -> bool {
    if wants & NeedBits::STUB != 0 {
        return !AARCH64 || entry.r_addend == 0;
    }
    if AARCH64 || entry.r_addend != -4 {
        return false;
    }
    let offset = usize::try_from(entry.r_offset).unwrap_or(usize::MAX);
    let opcode = data
        .get(offset.wrapping_sub(2)..)
        .and_then(<[u8]>::first_chunk::<2>)
        .copied();
    matches!(opcode, Some([0xff, 0x15 | 0x25]))
}

impl Slots {
    /// Gives `entry`'s symbol a GOT slot and its call a stub, as wanted,
    /// unless they have them.
    fn reserve(&mut self, machine: Machine, entry: &Rela, wants_slot: bool, wants_stub: bool) {
        if wants_slot {
            claim(&mut self.got_slot, &mut self.got_count, entry.r_sym());
        }
        if wants_stub {
            let key = (entry.r_sym(), stub_addend(machine, entry.r_addend));
            let next = self.stub_count;
            if *self.stub_slot.entry(key).or_insert(next) == next {
                self.stub_count = self.stub_count.saturating_add(1);
            }
        }
    }
}

/// What the entries that name a symbol bound as `binding` may need, as
/// [`NeedBits`] to be ANDed with an entry type's: every symbol can take a
/// GOT slot, a load of one placed in the module (see
/// [`Binding::is_placed_here`]) can be relaxed, and a call to one that may
/// be out of reach may need a stub or veneer.
fn symbol_needs(machine: Machine, binding: Binding) -> u8 {
    let bit = |set: bool, bit: u8| if set { bit } else { 0 };
    NeedBits::SUPPORTED
        | NeedBits::GOT_SLOT
        | bit(binding.is_placed_here(), NeedBits::RELAXABLE)
        | bit(may_be_out_of_reach(machine, binding), NeedBits::STUB)
}

/// Relocations counted by type, in a fixed table: one slot per type number
/// a machine supports (x86-64 numbers them from 0, AArch64 from 256).
struct TypeCounts {
    machine: Machine,
    /// One more than there are slots: the last counts types without one.
    counts: [u64; TYPE_SLOTS + 1],
    /// What each slot's type needs, as [`NeedBits`]; 0 for types the
    /// machine lacks, and in the last slot.
    needs: [u8; TYPE_SLOTS + 1],
}

const TYPE_SLOTS: usize = 128;

/// [`Needs`] as bits, so that one table byte answers for an entry.
struct NeedBits;

impl NeedBits {
    const SUPPORTED: u8 = 1;
    const GOT_SLOT: u8 = 2;
    const STUB: u8 = 4;
    const RELAXABLE: u8 = 8;
    /// On a symbol's class only: the symbol is a pending import.
    const PENDING: u8 = 16;

    fn of(needs: Option<Needs>) -> u8 {
        let bit = |set: bool, bit: u8| if set { bit } else { 0 };
        needs.map_or(0, |needs| {
            Self::SUPPORTED
                | bit(needs.got_slot, Self::GOT_SLOT)
                | bit(needs.stub, Self::STUB)
                | bit(needs.relaxable, Self::RELAXABLE)
        })
    }
}

impl TypeCounts {
    /// An empty count, with what each of `machine`'s types needs looked up
    /// once for all entries.
    fn new(machine: Machine) -> Self {
        let mut needs = [0; TYPE_SLOTS + 1];
        for (slot, needs) in needs.iter_mut().enumerate().take(TYPE_SLOTS) {
            let r_type = Self::r_type(machine, slot);
            // Slots no type number maps to stay unsupported.
            if Self::slot(machine, r_type) == Some(slot) {
                *needs = NeedBits::of(crate::arch::needs(machine, r_type));
            }
        }
        Self {
            machine,
            counts: [0; TYPE_SLOTS + 1],
            needs,
        }
    }

    /// [`Self::count_for`] with the table's machine.
    #[cfg(test)]
    fn count(&mut self, r_type: u32) -> u8 {
        self.count_for(self.machine, r_type)
    }

    /// Counts one entry of type `r_type` and returns its [`NeedBits`]: 0,
    /// uncounted, if the machine does not support the type. `machine` must
    /// be the table's; a caller that knows it at compile time passes it, so
    /// that the machine is not tested per entry.
    #[inline(always)]
    fn count_for(&mut self, machine: Machine, r_type: u32) -> u8 {
        // Types without a slot share the last, whose needs are 0. Counting
        // unsupported types too, instead of testing first, keeps the loops
        // that call this free of branches; the list leaves them out.
        let slot = Self::slot(machine, r_type).unwrap_or(TYPE_SLOTS);
        if let Some(count) = self.counts.get_mut(slot) {
            // At most one per entry of a file: no overflow.
            *count = count.wrapping_add(1);
        }
        self.needs.get(slot).copied().unwrap_or(0)
    }

    /// [`Self::count`] as [`Needs`], or `None` for an unsupported type.
    #[cfg(test)]
    fn tally(&mut self, r_type: u32) -> Option<Needs> {
        let bits = self.count(r_type);
        (bits != 0).then_some(Needs {
            got_slot: bits & NeedBits::GOT_SLOT != 0,
            stub: bits & NeedBits::STUB != 0,
            relaxable: bits & NeedBits::RELAXABLE != 0,
        })
    }

    /// The table slot of `r_type`, for types a machine may support.
    #[inline(always)]
    fn slot(machine: Machine, r_type: u32) -> Option<usize> {
        let slot = match machine {
            Machine::X86_64 => r_type,
            // R_AARCH64_NONE is 0; the ABI's other types start at 256.
            Machine::AArch64 if r_type == 0 => 0,
            Machine::AArch64 => r_type.checked_sub(256)?.checked_add(64)?,
        };
        usize::try_from(slot).ok().filter(|slot| *slot < TYPE_SLOTS)
    }

    /// The type number slot `slot` stands for.
    fn r_type(machine: Machine, slot: usize) -> u32 {
        let slot = slot as u32;
        match machine {
            Machine::X86_64 => slot,
            Machine::AArch64 if slot == 0 => 0,
            Machine::AArch64 => slot.saturating_add(256).saturating_sub(64),
        }
    }

    /// The non-zero counts by type, in type order.
    fn into_list(self) -> Vec<(RelocationType, u64)> {
        let machine = self.machine;
        let machine_number = machine.e_machine();
        self.counts
            .iter()
            .zip(self.needs)
            .enumerate()
            .filter(|(_, (count, needs))| **count > 0 && *needs != 0)
            .map(|(slot, (count, _))| {
                let raw = Self::r_type(machine, slot);
                (
                    RelocationType {
                        machine: machine_number,
                        raw,
                    },
                    *count,
                )
            })
            .collect()
    }
}

/// Whether a call to a symbol bound this way may land out of direct reach.
/// Symbols placed in the module are always in reach. An AArch64 branch reaches
/// only ±128 MiB, so absolute symbols get a veneer too; on x86-64 they are
/// expected within ±2 GiB, as in the kernel code model.
fn may_be_out_of_reach(machine: Machine, binding: Binding) -> bool {
    match binding {
        Binding::External | Binding::Yielded { .. } => true,
        Binding::Absolute(_) => machine == Machine::AArch64,
        _ => false,
    }
}

/// The addend part of a stub's key. An x86-64 stub jumps to the symbol and the
/// call adds its own addend, so one stub serves all; an AArch64 veneer jumps to
/// symbol plus addend, so each addend needs its own.
pub(crate) fn stub_addend(machine: Machine, addend: i64) -> i64 {
    match machine {
        Machine::X86_64 => 0,
        Machine::AArch64 => addend,
    }
}

/// One bit per relocation entry, all clear until set.
pub(crate) struct EntryBits {
    words: Vec<u64>,
}

impl EntryBits {
    fn zeroed(entries: usize) -> Self {
        Self {
            words: alloc::vec![0; entries.div_ceil(64)],
        }
    }

    /// Sets bit `index`; an index past the end is ignored.
    fn set(&mut self, index: usize) {
        if let Some(word) = self.words.get_mut(index / 64) {
            *word |= 1 << (index % 64);
        }
    }

    /// Whether any of the `count` bits from `start` is set.
    pub fn any_in(&self, start: usize, count: usize) -> bool {
        let end = start
            .saturating_add(count)
            .min(self.words.len().saturating_mul(64));
        if start >= end {
            return false;
        }
        // The last bit in the range: `end` is past `start`, so at least 1.
        let end_bit = end.wrapping_sub(1);
        // Whole words but the first and the last, which are masked to the
        // range's bits.
        let (first, last) = (start / 64, end_bit / 64);
        let edge = |at: usize, mask: u64| self.words.get(at).is_some_and(|word| word & mask != 0);
        let low = !mask_below(start % 64);
        let high = mask_below((end_bit % 64).wrapping_add(1));
        if first == last {
            return edge(first, low & high);
        }
        let inner = self
            .words
            .get(first.wrapping_add(1)..last)
            .unwrap_or_default();
        edge(first, low) || edge(last, high) || inner.iter().any(|word| *word != 0)
    }

    /// Reads the bits in order from bit `start`, a word at a time.
    pub fn cursor(&self, start: usize) -> BitCursor<'_> {
        BitCursor {
            word: self
                .words
                .get(start / 64)
                .map_or(0, |word| word >> (start % 64)),
            words: &self.words,
            next: start,
        }
    }
}

/// The low `bits` bits set (`bits` at most 64).
fn mask_below(bits: usize) -> u64 {
    1u64.checked_shl(bits as u32)
        .map_or(u64::MAX, |bit| bit.wrapping_sub(1))
}

/// [`EntryBits`] read in order: one shift an entry, and one load a word,
/// where looking each bit up would cost a bounds check and a variable shift.
pub(crate) struct BitCursor<'b> {
    words: &'b [u64],
    /// The rest of the current word, its next bit lowest.
    word: u64,
    /// The index of the next bit.
    next: usize,
}

impl BitCursor<'_> {
    /// The next bit; `false` past the end.
    #[inline(always)]
    pub fn next_bit(&mut self) -> bool {
        if self.next.is_multiple_of(64) {
            self.word = self.words.get(self.next / 64).copied().unwrap_or(0);
        }
        let bit = self.word & 1 != 0;
        self.word >>= 1;
        self.next = self.next.wrapping_add(1);
        bit
    }
}

/// Whether a relaxable GOT load (x86-64 `GOTPCRELX`) becomes `lea` of the
/// symbol itself, judged from the file's bytes (`data`, the section as in the
/// file), which no relocation changes. Planning asks, and records the
/// answer for relocation in [`Layout::relaxed`]. Only the plain
/// `mov sym@GOTPCREL(%rip)` (addend -4) loads the slot itself; another addend
/// reads other bytes, which `lea` cannot reproduce. The caller has checked
/// that the symbol is placed in the module, so in reach.
#[inline]
fn relaxes(entry: &Rela, data: &[u8]) -> bool {
    // The opcode and ModRM bytes before the field, as one little-endian
    // word; an offset below 2 wraps to a start `get` refuses.
    let offset = usize::try_from(entry.r_offset).unwrap_or(usize::MAX);
    let pair = data
        .get(offset.wrapping_sub(2)..)
        .and_then(<[u8]>::first_chunk::<2>)
        .copied()
        .unwrap_or_default();
    // `&`, not `&&`: see `x86_64::is_relaxable_load`.
    (entry.r_addend == -4) & x86_64::is_relaxable_pair(pair)
}

fn claim(slots: &mut [Option<u32>], count: &mut u32, symbol: usize) {
    if let Some(slot @ None) = slots.get_mut(symbol) {
        *slot = Some(*count);
        *count = count.saturating_add(1);
    }
}

/// Lays pieces out one after another, segment by segment.
#[derive(Default)]
struct Builder {
    cursor: u64,
    kinds: [Option<Extent>; 6],
    segments: [Option<Extent>; 3],
    current: Option<Segment>,
    align: Option<Alignment>,
    overflowed: bool,
}

impl Builder {
    fn start_segment(&mut self, segment: Segment) {
        self.close_segment();
        self.current = Some(segment);
    }

    /// Rounds the open segment up to whole pages.
    fn close_segment(&mut self) {
        if let Some(extent) = self
            .current
            .and_then(|segment| self.segments.get_mut(segment.slot()))
            .and_then(Option::as_mut)
        {
            match Alignment::PAGE.align_up(extent.offset.saturating_add(extent.size)) {
                Some(end) => {
                    extent.size = end.saturating_sub(extent.offset);
                    self.cursor = end;
                }
                None => self.overflowed = true,
            }
        }
        self.current = None;
    }

    /// Places a piece, or records that the layout overflowed (which makes
    /// `finish` fail) so no caller can drop a piece by ignoring `None`.
    fn place(&mut self, kind: SectionKind, size: u64, align: Alignment) -> Option<Placement> {
        let placed = self.try_place(kind, size, align);
        if placed.is_none() {
            self.overflowed = true;
        }
        placed
    }

    fn try_place(&mut self, kind: SectionKind, size: u64, align: Alignment) -> Option<Placement> {
        let segment = self.current?;
        let segment_extent = self.segments.get_mut(segment.slot())?;
        if segment_extent.is_none() {
            // A segment starts on a fresh page, aligned for its strictest piece;
            // its alignment can only grow, which the reservation's alignment covers.
            let offset = Alignment::PAGE.max(align).align_up(self.cursor)?;
            *segment_extent = Some(Extent {
                offset,
                size: 0,
                align: Alignment::PAGE,
            });
            self.cursor = offset;
        }
        let offset = align.align_up(self.cursor)?;
        let end = offset.checked_add(size)?;
        self.cursor = end;
        if let Some(extent) = segment_extent {
            extent.size = end.saturating_sub(extent.offset);
            extent.align = extent.align.max(align);
            self.align = Some(self.align.unwrap_or(Alignment::PAGE).max(extent.align));
        }
        let slot = self.kinds.get_mut(kind.slot())?;
        let extent = slot.get_or_insert(Extent {
            offset,
            size: 0,
            align: Alignment::BYTE,
        });
        extent.size = end.saturating_sub(extent.offset);
        extent.align = extent.align.max(align);
        Some(Placement { kind, offset, size })
    }

    fn finish(
        mut self,
        got_slots: u32,
        stub_slots: u32,
        pending_imports: u32,
        relocations: Vec<(RelocationType, u64)>,
    ) -> Option<Plan> {
        self.close_segment();
        if self.overflowed {
            return None;
        }
        let size = self.cursor.max(Alignment::PAGE.bytes());
        Some(Plan {
            kinds: self.kinds.map(|extent| extent.unwrap_or(EMPTY)),
            segments: self.segments.map(|extent| extent.unwrap_or(EMPTY)),
            size,
            align: self.align.unwrap_or(Alignment::PAGE),
            got_slots,
            stub_slots,
            pending_imports,
            relocations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `any_in` sees a set bit exactly when it lies in the range, in the
    /// first, a middle or the last word, and nothing past the end.
    #[test]
    fn any_in_sees_exactly_the_bits_of_its_range() {
        for set in [0usize, 1, 63, 64, 65, 127, 128, 200] {
            let mut bits = EntryBits::zeroed(256);
            bits.set(set);
            for start in [0usize, 1, 60, 63, 64, 65, 100, 128, 199, 200, 201] {
                for count in [0usize, 1, 2, 5, 64, 70, 300] {
                    let want = start <= set && set < start + count;
                    assert_eq!(bits.any_in(start, count), want, "{set} {start} {count}");
                }
            }
        }
    }

    /// A cursor reads back what was set, from any start, across word
    /// boundaries and the clear runs of other sections, and `false` past the end.
    #[test]
    fn bit_cursor_reads_back_set_bits_from_any_start() {
        let pattern = |index: usize| (index * 7 + index / 5).is_multiple_of(3);
        let mut bits = EntryBits::zeroed(300);
        let mut expected = Vec::new();
        for index in 0..300 {
            // A stretch left clear, as for a section that is not loaded.
            let value = pattern(index) && !(100..170).contains(&index);
            if value {
                bits.set(index);
            }
            expected.push(value);
        }
        // Past the end: ignored.
        bits.set(100_000);
        for start in [0, 1, 63, 64, 65, 127, 128, 170, 255, 299, 300] {
            let mut cursor = bits.cursor(start);
            for index in start..start + 80 {
                let want = expected.get(index).copied().unwrap_or(false);
                assert_eq!(cursor.next_bit(), want, "start {start}, bit {index}");
            }
        }
    }

    #[test]
    fn type_slots_map_back_to_their_types() {
        for machine in [Machine::X86_64, Machine::AArch64] {
            let mut seen = [false; TYPE_SLOTS];
            for r_type in 0..2048u32 {
                let Some(slot) = TypeCounts::slot(machine, r_type) else {
                    assert!(
                        crate::arch::needs(machine, r_type).is_none(),
                        "{machine:?} type {r_type} is supported but has no slot"
                    );
                    continue;
                };
                assert!(!seen[slot], "{machine:?}: slot {slot} taken twice");
                seen[slot] = true;
                assert_eq!(TypeCounts::r_type(machine, slot), r_type);
            }
        }
    }

    #[test]
    fn the_needs_table_agrees_with_each_engine() {
        for machine in [Machine::X86_64, Machine::AArch64] {
            let mut counts = TypeCounts::new(machine);
            for r_type in 0..2048u32 {
                assert_eq!(
                    counts.tally(r_type),
                    crate::arch::needs(machine, r_type),
                    "{machine:?} type {r_type}"
                );
            }
        }
    }

    #[test]
    fn counts_list_each_type_once_in_order() {
        let mut counts = TypeCounts::new(Machine::X86_64);
        let types = [
            x86_64::R_X86_64_PLT32,
            x86_64::R_X86_64_PC32,
            x86_64::R_X86_64_PLT32,
        ];
        for r_type in types {
            assert!(counts.tally(r_type).is_some());
        }
        assert!(counts.tally(16).is_none(), "TLS");
        assert!(counts.tally(1 << 20).is_none());
        let list = counts.into_list();
        let raw: Vec<(u32, u64)> = list.iter().map(|(t, n)| (t.raw, *n)).collect();
        assert_eq!(
            raw,
            [(x86_64::R_X86_64_PC32, 1), (x86_64::R_X86_64_PLT32, 2)]
        );
    }
}
