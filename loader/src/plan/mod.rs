//! The layout plan: every byte a module needs, worked out before any memory is
//! allocated. The caller can read it to reserve memory, and the later stages
//! check that what they used is exactly what it promised.

mod bindings;
mod layout;
mod sections;
mod slots;

pub(crate) use slots::{EntryBits, PENDING_CONTEXT_SLOTS};

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use goblin::elf::section_header::{SHT_FINI_ARRAY, SHT_INIT_ARRAY};

use crate::addr::{Alignment, PageSize};
use crate::arch::{RelocationType, SlotSizes};
use crate::error::{ErrorKind, LoadError, SectionProblem, SymbolProblem};
use crate::kinds::{Extent, SectionKind, Segment, MAX_ALIGNMENT, MAX_MODULE_SIZE};
use crate::names::NameMap;
use crate::object::Object;
use bindings::bind_symbols;
use layout::Builder;
use sections::{
    array_priority, classify, discarded_sections, is_loaded, is_unwind_table, UNWIND_TERMINATOR,
};
use slots::assign_slots;

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
    page: PageSize,
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

    /// The extent of one segment, rounded to whole pages of
    /// [`Plan::page_size`] (what finalize protects).
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

    /// The page size the layout is made for: the page size of the region of
    /// the loader that made the plan. Segments start on its boundaries and
    /// their sizes, like [`Plan::size`], are multiples of it.
    pub fn page_size(&self) -> PageSize {
        self.page
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
/// defines and that may stay pending (empty without late binding). Segments
/// are laid out in pages of `page`, the region's.
pub(crate) fn plan<'a>(
    object: &Object<'a>,
    namespace: &impl Existing,
    pending: &[bool],
    keep_unwind: bool,
    page: PageSize,
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

    let mut builder = Builder::new(page);
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

#[cfg(test)]
mod tests {
    use super::slots::{TypeCounts, TYPE_SLOTS};
    use super::*;
    use crate::arch::{x86_64, Machine};

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
