//! A module's global names: measured, collected once and indexed by name.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::error::ErrorKind;
use crate::namespace::index::{HashIndex, Position, Probe};

/// How a module defines a global name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DefinitionKind {
    /// Offered to other modules (default or protected visibility).
    pub exported: bool,
    /// Yields to an earlier definition at publish (weak, unique, `COMMON`).
    pub weak: bool,
    /// Checked against the namespace before relocating: a second strong
    /// definition fails the load early.
    pub strong_here: bool,
}

/// One global definition of a module.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Definition {
    pub(crate) hash: u64,
    /// Its address once placed; until [`NameList::finish`], the symbol's
    /// index in its table.
    pub(crate) address: u64,
    /// The name's bytes in the module's `text`.
    pub(crate) start: u32,
    pub(crate) end: u32,
    pub(crate) kind: DefinitionKind,
    /// Has an address: only placed definitions are indexed and exported.
    pub(crate) placed: bool,
}

/// A module's global definitions while it loads: named and hashed, not yet
/// placed. [`NameList::finish`] gives them addresses.
pub(crate) struct NameList {
    /// The definitions' names, at the offsets they record: a copy of the
    /// stretch of the string table that holds them, or each name copied.
    pub(crate) text: Vec<u8>,
    pub(crate) definitions: Vec<Definition>,
}

/// The refusal of more than 2^32 definitions or bytes of names, which no real
/// object has, so that positions and offsets fit in 32 bits.
pub(crate) const TOO_MANY_NAMES: ErrorKind = ErrorKind::Malformed {
    what: "symbol table (over 2^32 global definitions or bytes of their names)",
};

/// How many definitions a [`NameList`] will hold, how many bytes their
/// names have, and where in the string table the names lie, measured first
/// so that everything is allocated once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NameSizes {
    pub(crate) count: usize,
    pub(crate) bytes: usize,
    /// The string table bytes from the first name's start to the last
    /// name's end (empty while `count` is 0).
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl NameSizes {
    /// No names yet.
    pub const fn new() -> Self {
        Self {
            count: 0,
            bytes: 0,
            start: usize::MAX,
            end: 0,
        }
    }

    /// Counts a name of `len` bytes at offset `at` of the string table.
    #[inline]
    pub fn add(&mut self, at: usize, len: usize) {
        self.count = self.count.saturating_add(1);
        self.bytes = self.bytes.saturating_add(len);
        self.start = self.start.min(at);
        self.end = self.end.max(at.saturating_add(len));
    }

    /// The stretch of `table` to copy whole, if the names fill most of it:
    /// one copy instead of one per name, for at most twice the bytes.
    pub(crate) fn shared<'t>(&self, table: &'t [u8]) -> Option<&'t [u8]> {
        let span = self.end.checked_sub(self.start)?;
        let limit = self.bytes.saturating_mul(2).saturating_add(64);
        if span > limit {
            return None;
        }
        table.get(self.start..self.end)
    }
}

impl NameList {
    /// The definitions `(symbol index, name's offset in table, name, name's
    /// hash, kind)`, in symbol table order, measured by `sizes` (one
    /// allocation each for the names and the definitions). The hashes are
    /// the ones the symbol table reader computed ([`name_hash`]): no name is
    /// hashed again during the load. Each name must be the bytes of `table`
    /// at its offset, or `table` must not hold the names' stretch: a
    /// [joined](crate::Object::join) object, whose names lie in several
    /// string tables, passes an empty one, and each name is then copied
    /// from its `&str`.
    #[inline(never)]
    pub fn collect<'n>(
        sizes: NameSizes,
        table: &[u8],
        definitions: impl Iterator<Item = (usize, usize, &'n str, u64, DefinitionKind)>,
    ) -> Result<Self, ErrorKind> {
        if u32::try_from(sizes.count).is_err() || u32::try_from(sizes.bytes).is_err() {
            return Err(TOO_MANY_NAMES);
        }
        let mut definitions_out = Vec::with_capacity(sizes.count);
        let text = match sizes.shared(table) {
            Some(shared) => {
                let base = sizes.start;
                for (symbol, at, name, hash, kind) in definitions {
                    // Past 2^32 only if the whole span is, which is refused below.
                    let start = at.wrapping_sub(base) as u32;
                    definitions_out.push(Definition {
                        hash,
                        address: symbol as u64,
                        start,
                        end: start.wrapping_add(name.len() as u32),
                        kind,
                        placed: false,
                    });
                }
                shared.to_vec()
            }
            None => {
                let mut text = Vec::with_capacity(sizes.bytes);
                for (symbol, _, name, hash, kind) in definitions {
                    let start = text.len() as u32;
                    text.extend_from_slice(name.as_bytes());
                    definitions_out.push(Definition {
                        hash,
                        address: symbol as u64,
                        start,
                        end: text.len() as u32,
                        kind,
                        placed: false,
                    });
                }
                text
            }
        };
        // Every offset and position is at most these, so if they fit in 32
        // bits, no conversion above truncated.
        if u32::try_from(text.len()).is_err() || u32::try_from(definitions_out.len()).is_err() {
            return Err(TOO_MANY_NAMES);
        }
        Ok(Self {
            text,
            definitions: definitions_out,
        })
    }

    /// Gives each definition its address (`address_of(symbol index)`); one
    /// without an address is neither indexed nor exported.
    pub fn finish(self, mut address_of: impl FnMut(usize) -> Option<u64>) -> ModuleNames {
        let Self {
            text,
            mut definitions,
        } = self;
        let mut exported = 0usize;
        for definition in &mut definitions {
            if let Some(address) = usize::try_from(definition.address)
                .ok()
                .and_then(&mut address_of)
            {
                definition.address = address;
                definition.placed = true;
                exported = exported.saturating_add(usize::from(definition.kind.exported));
            }
        }
        ModuleNames {
            text: text.into_boxed_slice(),
            definitions: definitions.into_boxed_slice(),
            index: None,
            exported,
        }
    }
}

/// The bytes of `definition`'s name in `text` (empty if the range is bad,
/// which `NameList` never makes).
#[inline]
pub(crate) fn name_bytes<'t>(text: &'t [u8], definition: &Definition) -> &'t [u8] {
    text.get(definition.start as usize..definition.end as usize)
        .unwrap_or_default()
}

/// A loaded module's global definitions: every name in one allocation, and
/// an index by name over the placed ones, exported or not.
pub(crate) struct ModuleNames {
    pub(crate) text: Box<[u8]>,
    pub(crate) definitions: Box<[Definition]>,
    /// Positions in `definitions`; the stored hashes stand in for the names.
    /// Built by the first lookup: most modules are never asked for a name
    /// directly (their exports are found through the namespace's table), so
    /// loading does not pay for it.
    pub(crate) index: Option<HashIndex<Position>>,
    /// How many definitions are exported (and placed).
    pub(crate) exported: usize,
}

impl ModuleNames {
    #[inline]
    pub(crate) fn definition(&self, at: u32) -> Option<&Definition> {
        self.definitions.get(at as usize)
    }

    /// The name of definition `at`.
    #[inline]
    pub(crate) fn name(&self, at: u32) -> Option<&[u8]> {
        self.definition(at)
            .map(|definition| name_bytes(&self.text, definition))
    }

    /// The first placed definition of `name` (hashed as `hash`).
    #[inline]
    pub(crate) fn lookup(&mut self, hash: u64, name: &[u8]) -> Option<&Definition> {
        let Self {
            text,
            definitions,
            index,
            ..
        } = self;
        let index = index.get_or_insert_with(|| index_names(text, definitions));
        let position = index.find(hash, |position| {
            definitions
                .get(position.at as usize)
                .is_some_and(|definition| name_bytes(text, definition) == name)
        })?;
        definitions.get(position.at as usize)
    }
}

/// An index of the placed `definitions` by name: the first of each name.
#[cold]
pub(crate) fn index_names(text: &[u8], definitions: &[Definition]) -> HashIndex<Position> {
    let mut index: HashIndex<Position> = HashIndex::with_capacity(definitions.len());
    for (definition, at) in definitions.iter().zip(0u32..) {
        if !definition.placed {
            continue;
        }
        let name = name_bytes(text, definition);
        let probe = index.probe(definition.hash, |position| {
            definitions
                .get(position.at as usize)
                .is_some_and(|other| name_bytes(text, other) == name)
        });
        if let Probe::Vacant(slot) = probe {
            index.fill(
                slot,
                Position {
                    hash: definition.hash,
                    at,
                },
            );
        }
    }
    index
}
