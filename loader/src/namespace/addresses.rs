//! From an address back to a module, a section and a symbol: what a fault
//! handler, a backtrace or a profiler asks.
//!
//! Each module keeps an [`AddressMap`]: its sections with their load and
//! target addresses, and its symbols (local ones too: a crash in a `static`
//! function should name it) sorted by section and offset, their names in
//! one string. The namespace indexes every section's address ranges in one
//! ordered map, so a lookup is one search over all modules' sections and one
//! binary search over a section's symbols, and it allocates nothing.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use crate::addr::VirtAddr;
use crate::kinds::Segment;
use crate::namespace::state::State;
use crate::namespace::{ModuleId, Namespace};

/// Where an address falls in a loaded module, from [`Namespace::locate`].
/// It borrows the namespace's tables while the namespace is locked: copy out
/// what is needed inside the closure.
#[derive(Clone, Copy, Debug)]
pub struct Location<'a> {
    /// The module.
    pub module: ModuleId,
    /// The name the module was loaded under.
    pub module_name: &'a str,
    /// The section's name as in the object (`.text`, `.text.poke`, `.data`),
    /// or `.got`, `.stubs` or `COMMON` for the areas the loader adds.
    pub section: &'a str,
    /// The start of the range the address fell in: the section's load
    /// address, or its target address where it was linked for another.
    pub section_start: VirtAddr,
    /// The address's offset from `section_start`.
    pub section_offset: u64,
    /// The symbol the address is in, if any.
    pub symbol: Option<LocatedSymbol<'a>>,
}

/// The symbol an address is in, and how far into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocatedSymbol<'a> {
    /// Its name.
    pub name: &'a str,
    /// The address's offset from the symbol's start.
    pub offset: u64,
    /// Its size, as the object gives it (0 for labels without `.size`).
    pub size: u64,
}

impl fmt::Display for Location<'_> {
    /// `poke+0x8 [g.o]`, or `.text+0x40 [g.o]` where no symbol holds the address.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.symbol {
            Some(symbol) => write!(f, "{}+{:#x}", symbol.name, symbol.offset)?,
            None => write!(f, "{}+{:#x}", self.section, self.section_offset)?,
        }
        write!(f, " [{}]", self.module_name)
    }
}

/// One symbol of a loaded module, from [`Module::symbols`](crate::Module::symbols).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleSymbol {
    /// Its name.
    pub name: Box<str>,
    /// Where it is: its section's target address plus its offset.
    pub address: VirtAddr,
    /// Its size, as the object gives it.
    pub size: u64,
    /// The section it is in.
    pub section: Box<str>,
}

/// A loaded section (or loader area) in a module's [`AddressMap`].
#[derive(Clone, Debug)]
pub(crate) struct MappedSection {
    /// In the map's `names`.
    name: (u32, u32),
    /// Where its bytes were placed in the region.
    load: u64,
    /// Where it was linked to run.
    target: u64,
    size: u64,
    segment: Segment,
    /// Which member of a joined set, the section's index there and the
    /// size its header gives (a loaded unwind table is longer by its
    /// terminator); `None` for the GOT, stubs and COMMON, which no object
    /// has a header for.
    header: Option<(u32, u32, u64)>,
    /// Its symbols, in the map's `symbols`.
    symbols: Range<u32>,
}

/// Sixteen bytes: a module is below 2 GiB, so offsets and sizes fit.
#[derive(Clone, Copy, Debug)]
struct MappedSymbol {
    offset: u32,
    /// Cut to what is left of the section.
    size: u32,
    /// The name, in the map's `names`.
    name: (u32, u32),
}

impl MappedSymbol {
    const EMPTY: Self = Self {
        offset: 0,
        size: 0,
        name: (0, 0),
    };
}

/// A module's sections and symbols by address. Built once per load.
#[derive(Debug, Default)]
pub(crate) struct AddressMap {
    /// Sorted by load address; empty sections are left out.
    sections: Box<[MappedSection]>,
    /// Section by section, each section's sorted by offset.
    symbols: Box<[MappedSymbol]>,
    /// Section and symbol names.
    names: Box<str>,
}

/// Collects a module's sections and symbols in any order.
#[derive(Default)]
pub(crate) struct AddressMapBuilder {
    sections: Vec<MappedSection>,
    /// `(section position, symbol)`.
    symbols: Vec<(u32, MappedSymbol)>,
    /// Section and symbol names.
    names: String,
}

/// In a [`RangeKey`]: the range is the load addresses of one segment of
/// the module, whose sections are searched by address.
const SEGMENT_SPAN: u32 = u32::MAX;

impl AddressMapBuilder {
    /// A builder for about `sections` sections.
    pub(crate) fn with_capacity(sections: usize) -> Self {
        Self {
            sections: Vec::with_capacity(sections),
            ..Self::default()
        }
    }

    /// Makes room for `symbols` more symbols whose names take `name_bytes`.
    pub(crate) fn reserve_symbols(&mut self, symbols: usize, name_bytes: usize) {
        self.symbols.reserve_exact(symbols);
        self.names.reserve_exact(name_bytes);
    }

    /// Adds a section of `size` bytes placed at `load` and linked for
    /// `target`; `header` is `(member, index, size)` of its section header.
    /// Returns its position, for [`AddressMapBuilder::symbol`], or `None`
    /// for an empty section, which holds no address.
    pub(crate) fn section(
        &mut self,
        name: &str,
        header: Option<(u32, u32, u64)>,
        segment: Segment,
        (load, target, size): (u64, u64, u64),
    ) -> Option<u32> {
        if size == 0 {
            return None;
        }
        // Names are bounded by the loader's limits, far below 4 GiB.
        let start = u32::try_from(self.names.len()).ok()?;
        self.names.push_str(name);
        let end = u32::try_from(self.names.len()).ok()?;
        let position = u32::try_from(self.sections.len()).ok()?;
        self.sections.push(MappedSection {
            name: (start, end),
            load,
            target,
            size,
            segment,
            header,
            symbols: 0..0,
        });
        Some(position)
    }

    /// Adds a symbol at `offset` into the section at `section`. One that
    /// does not start inside the section (an end marker, or a broken
    /// object) names no byte of it and is left out.
    pub(crate) fn symbol(&mut self, section: u32, name: &str, offset: u64, size: u64) {
        let Some(section_size) = self
            .sections
            .get(section as usize)
            .map(|section| section.size)
        else {
            return;
        };
        // Sections are below `MAX_MODULE_SIZE` (2 GiB), so inside one the
        // offset and the size left fit 32 bits.
        let (Ok(offset32), Ok(start)) = (u32::try_from(offset), u32::try_from(self.names.len()))
        else {
            return;
        };
        if offset >= section_size {
            return;
        }
        let left = section_size.wrapping_sub(offset);
        let size = u32::try_from(size.min(left)).unwrap_or(u32::MAX);
        self.names.push_str(name);
        let end = u32::try_from(self.names.len()).unwrap_or(start);
        self.symbols.push((
            section,
            MappedSymbol {
                offset: offset32,
                size,
                name: (start, end),
            },
        ));
    }

    pub(crate) fn finish(self) -> AddressMap {
        let Self {
            mut sections,
            symbols,
            names,
        } = self;
        // Symbols grouped by section (counted, then placed: linear), then
        // each section's sorted by offset. At one offset the larger symbol
        // comes last, where the search ends, so a function wins over a label
        // at its start. Each section keeps the range of its own, so the
        // sections can then be put in address order without moving them.
        let mut next_of: Vec<u32> = alloc::vec![0; sections.len()];
        for (section, _) in &symbols {
            if let Some(count) = next_of.get_mut(*section as usize) {
                *count = count.saturating_add(1);
            }
        }
        let mut next = 0u32;
        for (section, count) in sections.iter_mut().zip(&mut next_of) {
            let end = next.saturating_add(*count);
            section.symbols = next..end;
            *count = next;
            next = end;
        }
        let mut placed = alloc::vec![MappedSymbol::EMPTY; next as usize];
        for (section, symbol) in symbols {
            let Some(at) = next_of.get_mut(section as usize) else {
                continue;
            };
            if let Some(slot) = placed.get_mut(*at as usize) {
                *slot = symbol;
            }
            *at = at.saturating_add(1);
        }
        sections.sort_unstable_by_key(|section| section.load);
        let sorted = sections;
        let mut scratch = Vec::new();
        for section in &sorted {
            let run = section.symbols.start as usize..section.symbols.end as usize;
            if let Some(run) = placed.get_mut(run) {
                sort_by_offset(run, &mut scratch);
            }
        }
        AddressMap {
            sections: sorted.into_boxed_slice(),
            symbols: placed.into_boxed_slice(),
            names: names.into_boxed_str(),
        }
    }
}
/// Sorts one section's symbols by offset, and at one offset by size: a
/// radix sort on the offset's bytes (linear, where a comparison sort of a
/// large module's thousands of symbols in hash order cost more than the rest
/// of the map), then the rare runs of one offset by size.
fn sort_by_offset(symbols: &mut [MappedSymbol], scratch: &mut Vec<MappedSymbol>) {
    if symbols.len() <= 32 {
        symbols.sort_unstable_by_key(|symbol| (symbol.offset, symbol.size));
        return;
    }
    // Every byte's histogram in one read.
    let mut counts = [[0u32; 256]; 4];
    for symbol in symbols.iter() {
        for (byte, histogram) in symbol.offset.to_le_bytes().iter().zip(&mut counts) {
            if let Some(count) = histogram.get_mut(usize::from(*byte)) {
                *count = count.wrapping_add(1);
            }
        }
    }
    scratch.clear();
    scratch.resize(symbols.len(), MappedSymbol::EMPTY);
    let total = u32::try_from(symbols.len()).unwrap_or(u32::MAX);
    let (mut from, mut to) = (&mut *symbols, scratch.as_mut_slice());
    let mut in_scratch = false;
    for (position, histogram) in counts.iter().enumerate() {
        // A byte all offsets share orders nothing.
        if histogram.contains(&total) {
            continue;
        }
        let mut next = [0u32; 256];
        let mut sum = 0u32;
        for (start, count) in next.iter_mut().zip(histogram) {
            *start = sum;
            sum = sum.wrapping_add(*count);
        }
        // A stable pass: equal bytes keep their order.
        for symbol in from.iter() {
            let byte = symbol
                .offset
                .to_le_bytes()
                .get(position)
                .copied()
                .unwrap_or(0);
            if let Some(at) = next.get_mut(usize::from(byte)) {
                if let Some(slot) = to.get_mut(*at as usize) {
                    *slot = *symbol;
                }
                *at = at.wrapping_add(1);
            }
        }
        core::mem::swap(&mut from, &mut to);
        in_scratch = !in_scratch;
    }
    if in_scratch {
        to.copy_from_slice(from);
    }
    for run in symbols.chunk_by_mut(|a, b| a.offset == b.offset) {
        if run.len() > 1 {
            run.sort_unstable_by_key(|symbol| symbol.size);
        }
    }
}

impl AddressMap {
    fn text(&self, (start, end): (u32, u32)) -> &str {
        self.names.get(start as usize..end as usize).unwrap_or("?")
    }

    /// Every address range to index, `(start, end, tag)`: the load
    /// addresses of each segment's sections (a module's segment lies in one
    /// reservation or piece of its own, so no other module's section is
    /// inside), tagged [`SEGMENT_SPAN`]; and each section's target range
    /// where that differs from its load range, tagged with its position.
    pub(crate) fn ranges(&self) -> impl Iterator<Item = (u64, u64, u32)> + '_ {
        let spans = Segment::ALL.into_iter().filter_map(|segment| {
            let mut sections = self
                .sections
                .iter()
                .filter(move |section| section.segment == segment);
            let first = sections.next()?;
            let end = |section: &MappedSection| section.load.saturating_add(section.size);
            let last = sections.fold(end(first), |last, section| last.max(end(section)));
            Some((first.load, last, SEGMENT_SPAN))
        });
        let targets = self
            .sections
            .iter()
            .zip(0u32..)
            .filter(|(section, _)| section.target != section.load)
            .map(|(section, position)| {
                let end = section.target.saturating_add(section.size);
                (section.target, end, position)
            });
        spans.chain(targets)
    }

    /// The section the range tagged `tag` finds `address` in, the start of
    /// the range it is in, and the offset.
    fn section_at(&self, tag: u32, address: u64) -> Option<(&MappedSection, u64, u64)> {
        let (section, start) = if tag == SEGMENT_SPAN {
            let after = self
                .sections
                .partition_point(|section| section.load <= address);
            let section = self.sections.get(after.checked_sub(1)?)?;
            (section, section.load)
        } else {
            let section = self.sections.get(tag as usize)?;
            (section, section.target)
        };
        let offset = address.checked_sub(start)?;
        (offset < section.size).then_some((section, start, offset))
    }

    /// The symbol holding `offset` in `section`: the last one starting at
    /// or before it, if its size reaches the offset; a symbol of size 0 (an
    /// assembler label) reaches up to the next symbol.
    fn symbol_at(&self, section: &MappedSection, offset: u64) -> Option<LocatedSymbol<'_>> {
        let symbols = self
            .symbols
            .get(section.symbols.start as usize..section.symbols.end as usize)?;
        let after = symbols.partition_point(|symbol| u64::from(symbol.offset) <= offset);
        let candidate = symbols.get(after.checked_sub(1)?)?;
        // The candidate starts at or before `offset`.
        let into = offset.wrapping_sub(u64::from(candidate.offset));
        (candidate.size == 0 || into < u64::from(candidate.size)).then(|| LocatedSymbol {
            name: self.text(candidate.name),
            offset: into,
            size: u64::from(candidate.size),
        })
    }

    /// Where `address` is, found by the range tagged `tag`: the section's
    /// name, the range's start, the offset, and the symbol.
    fn locate(&self, tag: u32, address: u64) -> Option<Found<'_>> {
        let (section, start, offset) = self.section_at(tag, address)?;
        Some((
            self.text(section.name),
            start,
            offset,
            self.symbol_at(section, offset),
        ))
    }

    /// Every symbol at its target address, sorted by address.
    pub(crate) fn symbols(&self) -> Vec<ModuleSymbol> {
        let mut all: Vec<ModuleSymbol> = self
            .sections
            .iter()
            .flat_map(|section| {
                let section_name = self.text(section.name);
                self.symbols
                    .get(section.symbols.start as usize..section.symbols.end as usize)
                    .unwrap_or_default()
                    .iter()
                    .map(move |symbol| ModuleSymbol {
                        name: self.text(symbol.name).into(),
                        address: VirtAddr::new(
                            section.target.wrapping_add(u64::from(symbol.offset)),
                        ),
                        size: u64::from(symbol.size),
                        section: section_name.into(),
                    })
            })
            .collect();
        all.sort_by_key(|symbol| symbol.address);
        all
    }

    /// `(member, index, target, header size)` of every section that has a
    /// header (the map holds no empty section: it tells a debugger nothing).
    pub(crate) fn headers(&self) -> impl Iterator<Item = (u32, u32, u64, u64)> + '_ {
        self.sections.iter().filter_map(|section| {
            let (member, index, size) = section.header?;
            Some((member, index, section.target, size))
        })
    }
}

/// What a module's map says of an address: the section's name, the
/// matched range's start, the offset into it, and the symbol.
type Found<'a> = (&'a str, u64, u64, Option<LocatedSymbol<'a>>);

/// The key of one indexed range: its start, then whose it is, so that two
/// ranges starting at one address (target addresses are the caller's
/// choice) are both kept.
pub(crate) type RangeKey = (u64, u32, u32);

impl State {
    /// Indexes the ranges of the module in `slot`.
    pub(crate) fn index_addresses(&mut self, slot: u32) {
        let Some(Some(record)) = self.modules.get(slot as usize) else {
            return;
        };
        for (start, end, section) in record.addresses.ranges() {
            self.ranges.insert((start, slot, section), end);
        }
    }

    /// Removes the ranges of the module in `slot`, whose map is `map`.
    pub(crate) fn unindex_addresses(&mut self, slot: u32, map: &AddressMap) {
        for (start, _, section) in map.ranges() {
            self.ranges.remove(&(start, slot, section));
        }
    }

    fn locate(&self, address: u64) -> Option<Location<'_>> {
        // The range starting last at or before the address; where ranges
        // overlap (only target addresses can), the one starting latest.
        let (&(_, slot, tag), &end) = self
            .ranges
            .range(..=(address, u32::MAX, u32::MAX))
            .next_back()?;
        if address >= end {
            return None;
        }
        let record = self.modules.get(slot as usize)?.as_ref()?;
        let module = ModuleId {
            serial: record.serial,
            slot,
        };
        let (section, start, section_offset, symbol) = record.addresses.locate(tag, address)?;
        Some(Location {
            module,
            module_name: &record.name,
            section,
            section_start: VirtAddr::new(start),
            section_offset,
            symbol,
        })
    }
}

impl Namespace {
    /// Which module, section and symbol `address` is in, at the address
    /// where a section was placed or at the one it was linked for. `f` sees
    /// the answer while the namespace is locked.
    ///
    /// A search over every loaded section, then a binary search over one
    /// section's symbols; nothing is allocated.
    ///
    /// Load addresses never overlap. Target addresses are the caller's
    /// choice: where two modules were linked for overlapping ranges, the
    /// range that starts last at or before `address` answers, and if it
    /// ends before `address`, nothing does.
    ///
    /// ```
    /// # let namespace = modload::Namespace::new();
    /// let name = namespace.locate(modload::VirtAddr::new(0x1234), |found| {
    ///     found.map(|location| location.module_name.len())
    /// });
    /// assert_eq!(name, None);
    /// ```
    pub fn locate<R>(&self, address: VirtAddr, f: impl FnOnce(Option<&Location<'_>>) -> R) -> R {
        let state = self.state.lock();
        f(state.locate(address.as_u64()).as_ref())
    }

    /// [`Namespace::locate`] for fault and signal handlers: `None`, without
    /// calling `f`, if the namespace is locked (the fault may have come from
    /// code holding it), where `locate` would wait forever.
    pub fn try_locate<R>(
        &self,
        address: VirtAddr,
        f: impl FnOnce(Option<&Location<'_>>) -> R,
    ) -> Option<R> {
        let state = self.state.try_lock()?;
        Some(f(state.locate(address.as_u64()).as_ref()))
    }

    /// The symbols of module `id`, sorted by address.
    pub(crate) fn module_symbols(&self, id: ModuleId) -> Vec<ModuleSymbol> {
        self.state
            .lock()
            .record(id)
            .map(|record| record.addresses.symbols())
            .unwrap_or_default()
    }

    /// `(member, index, target, size)` of module `id`'s sections that have
    /// headers, for a debug object.
    pub(crate) fn module_section_headers(&self, id: ModuleId) -> Option<Vec<(u32, u32, u64, u64)>> {
        self.state
            .lock()
            .record(id)
            .map(|record| record.addresses.headers().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> AddressMap {
        let mut builder = AddressMapBuilder::default();
        // Added out of address order, as an object's headers may be.
        let data = builder
            .section(
                ".data",
                Some((0, 2, 0x20)),
                Segment::Writable,
                (0x2000, 0x9000, 0x20),
            )
            .unwrap();
        let text = builder
            .section(
                ".text",
                Some((0, 1, 0x100)),
                Segment::Code,
                (0x1000, 0x1000, 0x100),
            )
            .unwrap();
        let empty = (0x1100, 0x1100, 0);
        assert_eq!(builder.section(".empty", None, Segment::Code, empty), None);
        builder.symbol(text, "second", 0x40, 0x10);
        builder.symbol(text, "first", 0x0, 0x20);
        builder.symbol(text, "label", 0x80, 0);
        builder.symbol(text, "after_label", 0xc0, 4);
        builder.symbol(data, "value", 0x8, 8);
        builder.symbol(data, "__stop_data", 0x20, 0);
        // A label where a function starts: the function is the answer.
        builder.symbol(text, "second_label", 0x40, 0);
        builder.finish()
    }

    /// The section, the offset in it, and the symbol and offset in that.
    type Owned = (String, u64, Option<(String, u64)>);

    /// As the namespace finds it: the range starting last at or before
    /// the address, then the map.
    fn find(map: &AddressMap, address: u64) -> Option<Owned> {
        let (_, end, tag) = map
            .ranges()
            .filter(|(start, ..)| *start <= address)
            .max_by_key(|(start, ..)| *start)?;
        if address >= end {
            return None;
        }
        let (section, _, offset, symbol) = map.locate(tag, address)?;
        Some((
            section.into(),
            offset,
            symbol.map(|symbol| (symbol.name.into(), symbol.offset)),
        ))
    }

    #[test]
    fn first_and_last_byte_of_a_symbol() {
        let map = map();
        assert_eq!(
            find(&map, 0x1000),
            Some((".text".into(), 0, Some(("first".into(), 0))))
        );
        assert_eq!(
            find(&map, 0x101f),
            Some((".text".into(), 0x1f, Some(("first".into(), 0x1f))))
        );
        assert_eq!(
            find(&map, 0x1040),
            Some((".text".into(), 0x40, Some(("second".into(), 0))))
        );
        assert_eq!(
            find(&map, 0x104f),
            Some((".text".into(), 0x4f, Some(("second".into(), 0xf))))
        );
    }

    #[test]
    fn between_symbols_names_only_the_section() {
        let map = map();
        assert_eq!(find(&map, 0x1020), Some((".text".into(), 0x20, None)));
        assert_eq!(find(&map, 0x1050), Some((".text".into(), 0x50, None)));
    }

    #[test]
    fn a_symbol_of_size_zero_reaches_the_next_symbol() {
        let map = map();
        assert_eq!(
            find(&map, 0x1080),
            Some((".text".into(), 0x80, Some(("label".into(), 0))))
        );
        assert_eq!(
            find(&map, 0x10bf),
            Some((".text".into(), 0xbf, Some(("label".into(), 0x3f))))
        );
        assert_eq!(
            find(&map, 0x10c0),
            Some((".text".into(), 0xc0, Some(("after_label".into(), 0))))
        );
        // Past the last symbol's end, still in the section.
        assert_eq!(find(&map, 0x10c4), Some((".text".into(), 0xc4, None)));
    }

    #[test]
    fn load_and_target_addresses_both_answer() {
        let map = map();
        assert_eq!(
            find(&map, 0x2008),
            Some((".data".into(), 8, Some(("value".into(), 0))))
        );
        assert_eq!(
            find(&map, 0x9008),
            Some((".data".into(), 8, Some(("value".into(), 0))))
        );
        assert_eq!(find(&map, 0x9020), None);
        assert_eq!(find(&map, 0x1100), None);
    }

    #[test]
    fn symbols_list_at_target_addresses() {
        let names: Vec<_> = map()
            .symbols()
            .into_iter()
            .map(|symbol| (symbol.name, symbol.address.as_u64(), symbol.size))
            .collect();
        assert_eq!(
            names,
            [
                ("first".into(), 0x1000, 0x20),
                ("second_label".into(), 0x1040, 0),
                ("second".into(), 0x1040, 0x10),
                ("label".into(), 0x1080, 0),
                ("after_label".into(), 0x10c0, 4),
                ("value".into(), 0x9008, 8),
            ]
        );
    }

    #[test]
    fn the_radix_sort_orders_as_a_comparison_sort_does() {
        // A fixed pseudo-random sequence: offsets across all four bytes,
        // with repeats, and sizes that differ at one offset.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut symbols: Vec<MappedSymbol> = (0..1000u32)
            .map(|at| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let offset = match at % 4 {
                    0 => (state as u32) & 0xff,
                    1 => (state as u32) & 0xffff,
                    _ => state as u32 >> 1,
                };
                MappedSymbol {
                    offset,
                    size: (state >> 40) as u32 & 3,
                    name: (at, at),
                }
            })
            .collect();
        let mut expected = symbols.clone();
        expected.sort_by_key(|symbol| (symbol.offset, symbol.size));
        sort_by_offset(&mut symbols, &mut Vec::new());
        let key = |symbols: &[MappedSymbol]| -> Vec<(u32, u32)> {
            symbols
                .iter()
                .map(|symbol| (symbol.offset, symbol.size))
                .collect()
        };
        assert_eq!(key(&symbols), key(&expected));
    }
}
