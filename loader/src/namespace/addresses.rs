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
    name: Range<u32>,
    /// Where its bytes were placed in the region.
    load: u64,
    /// Where it was linked to run.
    target: u64,
    size: u64,
    /// Which member of a joined set, the section's index there and the
    /// size its header gives (a loaded unwind table is longer by its
    /// terminator); `None` for the GOT, stubs and COMMON, which no object
    /// has a header for.
    header: Option<(u32, u32, u64)>,
    /// Its symbols, in the map's `symbols`.
    symbols: Range<u32>,
}

#[derive(Clone, Copy, Debug)]
struct MappedSymbol {
    offset: u64,
    size: u64,
    name: (u32, u32),
}

/// A module's sections and symbols by address. Built once per load.
#[derive(Debug, Default)]
pub(crate) struct AddressMap {
    sections: Box<[MappedSection]>,
    /// Section by section, each section's sorted by offset.
    symbols: Box<[MappedSymbol]>,
    names: Box<str>,
}

/// Collects a module's sections and symbols in any order.
#[derive(Default)]
pub(crate) struct AddressMapBuilder {
    sections: Vec<MappedSection>,
    /// `(section position, symbol)`.
    symbols: Vec<(u32, MappedSymbol)>,
    names: String,
}

impl AddressMapBuilder {
    /// A builder for about `sections` sections and `symbols` symbols.
    pub(crate) fn with_capacity(sections: usize, symbols: usize) -> Self {
        Self {
            sections: Vec::with_capacity(sections),
            symbols: Vec::with_capacity(symbols),
            names: String::new(),
        }
    }

    fn intern(&mut self, name: &str) -> (u32, u32) {
        // Names are bounded by the loader's limits, far below 4 GiB.
        let start = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push_str(name);
        let end = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        (start, end)
    }

    /// Adds a section of `size` bytes placed at `load` and linked for
    /// `target`; `header` is `(member, index, size)` of its section header.
    /// Returns its position, for [`AddressMapBuilder::symbol`].
    pub(crate) fn section(
        &mut self,
        name: &str,
        header: Option<(u32, u32, u64)>,
        load: u64,
        target: u64,
        size: u64,
    ) -> u32 {
        let (start, end) = self.intern(name);
        let position = u32::try_from(self.sections.len()).unwrap_or(u32::MAX);
        self.sections.push(MappedSection {
            name: start..end,
            load,
            target,
            size,
            header,
            symbols: 0..0,
        });
        position
    }

    /// Adds a symbol at `offset` into the section at `section`. One that
    /// does not start inside the section (an end marker, or a broken
    /// object) names no byte of it and is left out.
    pub(crate) fn symbol(&mut self, section: u32, name: &str, offset: u64, size: u64) {
        let inside = self
            .sections
            .get(section as usize)
            .is_some_and(|section| offset < section.size);
        if !inside {
            return;
        }
        let name = self.intern(name);
        self.symbols
            .push((section, MappedSymbol { offset, size, name }));
    }

    pub(crate) fn finish(self) -> AddressMap {
        let Self {
            mut sections,
            mut symbols,
            names,
        } = self;
        // By section, then offset; at one offset the larger symbol first,
        // so a sized function wins over a label at its start.
        symbols.sort_unstable_by(|(a_section, a), (b_section, b)| {
            (a_section, a.offset, b.size).cmp(&(b_section, b.offset, a.size))
        });
        // Each section's symbols follow the previous section's.
        let mut start = 0u32;
        for (position, section) in (0u32..).zip(sections.iter_mut()) {
            let rest = symbols.get(start as usize..).unwrap_or_default();
            let count = rest.partition_point(|(owner, _)| *owner <= position);
            let end = start.saturating_add(u32::try_from(count).unwrap_or(u32::MAX));
            section.symbols = start..end;
            start = end;
        }
        AddressMap {
            sections: sections.into_boxed_slice(),
            symbols: symbols.into_iter().map(|(_, symbol)| symbol).collect(),
            names: names.into_boxed_str(),
        }
    }
}

impl AddressMap {
    fn name(&self, range: (u32, u32)) -> &str {
        self.names
            .get(range.0 as usize..range.1 as usize)
            .unwrap_or("?")
    }

    /// Every address range to index: each section's load range, and its
    /// target range where that differs. `(start, end, section position)`.
    pub(crate) fn ranges(&self) -> impl Iterator<Item = (u64, u64, u32)> + '_ {
        self.sections
            .iter()
            .zip(0u32..)
            .filter(|(section, _)| section.size > 0)
            .flat_map(|(section, position)| {
                let range = |start: u64| (start, start.saturating_add(section.size), position);
                let target = (section.target != section.load).then(|| range(section.target));
                core::iter::once(range(section.load)).chain(target)
            })
    }

    /// The section at `position`: its name, and its offset for `address`
    /// in whichever of its ranges holds it.
    fn section_at(&self, position: u32, address: u64) -> Option<(&MappedSection, u64, u64)> {
        let section = self.sections.get(position as usize)?;
        [section.target, section.load]
            .into_iter()
            .find(|start| (*start..start.saturating_add(section.size)).contains(&address))
            .map(|start| (section, start, address.wrapping_sub(start)))
    }

    /// The symbol holding `offset` in `section`: the last one starting at
    /// or before it, if its size reaches the offset; a symbol of size 0 (an
    /// assembler label) reaches up to the next symbol.
    fn symbol_at(&self, section: &MappedSection, offset: u64) -> Option<LocatedSymbol<'_>> {
        let symbols = self
            .symbols
            .get(section.symbols.start as usize..section.symbols.end as usize)?;
        let after = symbols.partition_point(|symbol| symbol.offset <= offset);
        let candidate = symbols.get(after.checked_sub(1)?)?;
        // The candidate starts at or before `offset`.
        let into = offset.wrapping_sub(candidate.offset);
        (candidate.size == 0 || into < candidate.size).then(|| LocatedSymbol {
            name: self.name(candidate.name),
            offset: into,
            size: candidate.size,
        })
    }

    /// Where `address` is, within section `position`.
    fn locate(
        &self,
        position: u32,
        address: u64,
    ) -> Option<(&str, u64, u64, Option<LocatedSymbol<'_>>)> {
        let (section, start, offset) = self.section_at(position, address)?;
        let name = self
            .names
            .get(section.name.start as usize..section.name.end as usize)
            .unwrap_or("?");
        Some((name, start, offset, self.symbol_at(section, offset)))
    }

    /// Every symbol at its target address, sorted by address.
    pub(crate) fn symbols(&self) -> Vec<ModuleSymbol> {
        let mut all: Vec<ModuleSymbol> = self
            .sections
            .iter()
            .flat_map(|section| {
                let section_name = self
                    .names
                    .get(section.name.start as usize..section.name.end as usize)
                    .unwrap_or("?");
                self.symbols
                    .get(section.symbols.start as usize..section.symbols.end as usize)
                    .unwrap_or_default()
                    .iter()
                    .map(move |symbol| ModuleSymbol {
                        name: self.name(symbol.name).into(),
                        address: VirtAddr::new(section.target.wrapping_add(symbol.offset)),
                        size: symbol.size,
                        section: section_name.into(),
                    })
            })
            .collect();
        all.sort_by_key(|symbol| symbol.address);
        all
    }

    /// `(member, index, target, header size)` of every section that has a header.
    pub(crate) fn headers(&self) -> impl Iterator<Item = (u32, u32, u64, u64)> + '_ {
        self.sections.iter().filter_map(|section| {
            let (member, index, size) = section.header?;
            Some((member, index, section.target, size))
        })
    }
}

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
        let (&(_, slot, position), &end) = self
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
        let (section, start, section_offset, symbol) =
            record.addresses.locate(position, address)?;
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
        let text = builder.section(".text", Some((0, 1, 0x100)), 0x1000, 0x1000, 0x100);
        let data = builder.section(".data", Some((0, 2, 0x20)), 0x2000, 0x9000, 0x20);
        builder.symbol(text, "second", 0x40, 0x10);
        builder.symbol(text, "first", 0x0, 0x20);
        builder.symbol(text, "label", 0x80, 0);
        builder.symbol(text, "after_label", 0xc0, 4);
        builder.symbol(data, "value", 0x8, 8);
        builder.symbol(data, "__stop_data", 0x20, 0);
        builder.finish()
    }

    /// The section, the offset in it, and the symbol and offset in that.
    type Found = (String, u64, Option<(String, u64)>);

    fn find(map: &AddressMap, address: u64) -> Option<Found> {
        let (position, _) = map
            .sections
            .iter()
            .zip(0u32..)
            .find(|(section, position)| {
                map.section_at(*position, address).is_some() && section.size > 0
            })
            .map(|(_, position)| (position, ()))?;
        let (section, _, offset, symbol) = map.locate(position, address)?;
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
                ("second".into(), 0x1040, 0x10),
                ("label".into(), 0x1080, 0),
                ("after_label".into(), 0x10c0, 4),
                ("value".into(), 0x9008, 8),
            ]
        );
    }
}
