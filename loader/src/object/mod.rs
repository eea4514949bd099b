//! Reading a relocatable object: goblin parses, this file checks every offset,
//! size and index the later stages rely on, so they can index without panicking.

pub(crate) mod debug;
pub(crate) mod join;

mod read;
mod symbols;

use alloc::boxed::Box;
use alloc::vec::Vec;

use goblin::container::{Container, Ctx, Endian};
use goblin::elf::section_header::SectionHeader;
use goblin::elf::Elf;

use crate::addr::Alignment;
use crate::arch::{Machine, Rela, RelocationProblem, RelocationType};
use crate::error::{ErrorKind, LoadError, RelocationFailure, SectionRef};
use crate::limits::{Limit, Limits};
#[cfg(doc)]
use crate::names::name_hash;
use join::Member;
use read::{
    check_counts, check_identity, check_overlaps, check_string_tables, check_tables, read_groups,
    read_relocations, read_sections,
};
use symbols::read_symbols;

const ET_REL: u16 = 1;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const GRP_COMDAT: u32 = 1;
/// Bytes of an ELF64 header, section header, symbol, `Rela` and `Rel` entry.
const EHDR_SIZE: usize = 64;
const SHDR_SIZE: usize = 64;
const SYM_SIZE: u64 = 24;
const RELA_SIZE: u64 = 24;
const REL_SIZE: u64 = 16;

/// `SHN_UNDEF`.
pub(crate) const SHN_UNDEF: u32 = 0;
/// First reserved section index.
pub(crate) const SHN_LORESERVE: u32 = 0xff00;
/// `SHN_ABS`.
pub(crate) const SHN_ABS: u32 = 0xfff1;
/// `SHN_COMMON`.
pub(crate) const SHN_COMMON: u32 = 0xfff2;
/// `SHN_XINDEX`.
pub(crate) const SHN_XINDEX: u32 = 0xffff;

pub(crate) const STB_LOCAL: u8 = 0;
pub(crate) const STB_GLOBAL: u8 = 1;
pub(crate) const STB_WEAK: u8 = 2;
/// `STB_GNU_UNIQUE`: g++ gives it to inline variables and template statics.
/// One definition per process, so it behaves like a weak definition here.
pub(crate) const STB_GNU_UNIQUE: u8 = 10;
pub(crate) const STT_SECTION: u8 = 3;
pub(crate) const STT_FILE: u8 = 4;
pub(crate) const STV_DEFAULT: u8 = 0;
pub(crate) const STV_HIDDEN: u8 = 2;
pub(crate) const STV_PROTECTED: u8 = 3;

/// One section header, checked: `data` is in the file (or `None` for
/// `SHT_NOBITS`), and `align` is a power of two.
#[derive(Clone, Debug)]
pub(crate) struct Section<'a> {
    pub name: &'a str,
    pub sh_type: u32,
    pub flags: u64,
    pub size: u64,
    pub align: Alignment,
    pub info: u32,
    pub link: u32,
    pub data: Option<&'a [u8]>,
}

/// One symbol table entry, with its name looked up.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Symbol<'a> {
    pub name: &'a str,
    /// The name's [`name_hash`], found in the same pass as its end.
    pub hash: u64,
    /// Where the name starts in [`Object::strings`].
    pub name_at: u32,
    pub value: u64,
    pub size: u64,
    pub shndx: u32,
    pub bind: u8,
    pub kind: u8,
    pub visibility: u8,
}

impl Symbol<'_> {
    pub fn is_global(&self) -> bool {
        matches!(self.bind, STB_GLOBAL | STB_WEAK | STB_GNU_UNIQUE)
    }

    /// Weak and unique definitions yield to an earlier definition of the name.
    pub fn is_weak(&self) -> bool {
        matches!(self.bind, STB_WEAK | STB_GNU_UNIQUE)
    }

    pub fn is_undefined(&self) -> bool {
        self.shndx == SHN_UNDEF
    }

    /// Visible to other modules: hidden and internal symbols stay private to
    /// their object, as they would to a shared library.
    pub fn is_exported(&self) -> bool {
        self.is_global()
            && !self.is_undefined()
            && (self.visibility == STV_DEFAULT || self.visibility == STV_PROTECTED)
    }
}

/// A section of relocations and the section it patches. Its entries are
/// read straight from the file's bytes each time a stage walks them: decoding
/// a 24-byte entry costs less than storing and reloading a decoded copy.
pub(crate) struct RelocationSection<'a> {
    pub target: usize,
    /// Whole entries only (`sh_entsize` is checked to be 24).
    pub(crate) entries: &'a [[u8; RELA_SIZE as usize]],
    /// Where the symbol table these entries index starts in the object's:
    /// 0, but in a [joined](Object::join) object, where each member's
    /// symbols follow the members before it. One add an entry, where
    /// copying the entries with their indices rewritten would allocate.
    pub(crate) symbol_base: u32,
}

impl<'a> RelocationSection<'a> {
    /// How many entries the section holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entries, decoded in file order.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = Rela> + 'a {
        let symbol_base = self.symbol_base;
        self.entries
            .iter()
            .map(move |entry| Rela::decode(entry, symbol_base))
    }
}

/// A `SHT_GROUP` section: its signature and member section indices.
pub(crate) struct Group<'a> {
    pub signature: &'a str,
    pub comdat: bool,
    pub members: Vec<u32>,
}

/// A parsed relocatable object, the input to planning. It borrows the file's bytes.
pub struct Object<'a> {
    pub(crate) name: Box<str>,
    pub(crate) machine: Machine,
    pub(crate) sections: Vec<Section<'a>>,
    pub(crate) symbols: Vec<Symbol<'a>>,
    /// The symbol table's string table (empty without a symbol table, and
    /// in a [joined](Object::join) object, whose names are in several: names
    /// are then read from each symbol's `name`).
    pub(crate) strings: &'a [u8],
    pub(crate) relocations: Vec<RelocationSection<'a>>,
    pub(crate) groups: Vec<Group<'a>>,
    /// The member objects of a [joined](Object::join) object, in order;
    /// empty for a parsed one.
    pub(crate) members: Vec<Member>,
    /// The key whose signature was checked before parsing, if one was. A
    /// joined object has one if all its members were checked with that key.
    #[cfg(feature = "signature")]
    pub(crate) signer: Option<[u8; 32]>,
    /// A joined object's members' keys, one per member (`None` for a member
    /// that was not checked); empty for a parsed object.
    #[cfg(feature = "signature")]
    pub(crate) member_signers: Vec<Option<[u8; 32]>>,
}

impl<'a> Object<'a> {
    /// Parses `bytes` as an ELF64 little-endian relocatable object. `name` names
    /// the module in errors and in the namespace. The default [`Limits`] apply.
    pub fn parse(name: &str, bytes: &'a [u8]) -> Result<Self, LoadError> {
        Self::parse_with_limits(name, bytes, &Limits::DEFAULT)
    }

    /// Like [`Object::parse`], within `limits`. The object size, section,
    /// symbol and relocation counts are checked against the headers before
    /// any table is read, so a hostile file is refused before the parser
    /// allocates for it.
    pub fn parse_with_limits(
        name: &str,
        bytes: &'a [u8],
        limits: &Limits,
    ) -> Result<Self, LoadError> {
        let fail = |kind| LoadError::new(name, kind);
        limits
            .check(Limit::ObjectSize, bytes.len() as u64)
            .map_err(|exceeded| fail(exceeded.into()))?;
        check_identity(bytes).map_err(fail)?;
        check_counts(bytes, limits).map_err(fail)?;
        // goblin reads the ELF header and the section header table; the
        // tables inside sections are read here, straight from their bytes,
        // so no string or symbol is copied into an intermediate table.
        let malformed = || {
            fail(ErrorKind::Malformed {
                what: "ELF headers or tables",
            })
        };
        let header = Elf::parse_header(bytes).map_err(|_| malformed())?;
        if header.e_type != ET_REL {
            return Err(fail(ErrorKind::NotRelocatable {
                e_type: header.e_type,
            }));
        }
        let machine = Machine::from_e_machine(header.e_machine).ok_or_else(|| {
            fail(ErrorKind::UnsupportedMachine {
                e_machine: header.e_machine,
            })
        })?;
        let ctx = Ctx::new(Container::Big, Endian::Little);
        let table_offset = usize::try_from(header.e_shoff).map_err(|_| malformed())?;
        let headers = SectionHeader::parse(bytes, table_offset, usize::from(header.e_shnum), ctx)
            .map_err(|_| malformed())?;
        let names_index = match u32::from(header.e_shstrndx) {
            SHN_XINDEX => headers.first().map_or(0, |first| first.sh_link),
            index => index,
        };
        let sections = read_sections(&headers, names_index, bytes).map_err(fail)?;
        check_tables(&headers, &sections).map_err(fail)?;
        check_string_tables(&sections).map_err(fail)?;
        check_overlaps(header.e_shoff, &headers, &sections).map_err(fail)?;
        let (symbols, strings) = read_symbols(&sections, limits).map_err(fail)?;
        let relocations = read_relocations(&sections).map_err(fail)?;
        let groups = read_groups(&sections, &symbols).map_err(fail)?;
        Ok(Self {
            name: name.into(),
            machine,
            sections,
            symbols,
            strings,
            relocations,
            groups,
            members: Vec::new(),
            #[cfg(feature = "signature")]
            signer: None,
            #[cfg(feature = "signature")]
            member_signers: Vec::new(),
        })
    }

    /// The module name given to [`Object::parse`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The machine the object is for.
    pub fn machine(&self) -> Machine {
        self.machine
    }

    /// A reference to section `index` for error messages.
    pub(crate) fn section_ref(&self, index: usize) -> SectionRef {
        section_ref(&self.sections, index)
    }

    /// The error `kind` of this object. In a joined object, an error about
    /// one of its sections or symbols names the member it came from, with
    /// the member's own index (see [`LoadError::member`]).
    pub(crate) fn error(&self, kind: ErrorKind) -> LoadError {
        if self.members.is_empty() {
            LoadError::new(&self.name, kind)
        } else {
            self.member_error(kind)
        }
    }

    /// A printable name for symbol `index`: its own, or its section's for
    /// section symbols.
    pub(crate) fn symbol_name(&self, index: usize) -> Box<str> {
        match self.symbols.get(index) {
            Some(symbol) if symbol.kind == STT_SECTION => self
                .sections
                .get(symbol.shndx as usize)
                .map_or("?", |section| section.name)
                .into(),
            Some(symbol) => symbol.name.into(),
            None => "?".into(),
        }
    }
}

/// The error for relocation `entry` of relocation section `section`: out of
/// line, so the loops that may call it stay small.
#[cold]
#[inline(never)]
pub(crate) fn relocation_error(
    object: &Object<'_>,
    section: usize,
    entry: &Rela,
    problem: RelocationProblem,
) -> LoadError {
    object.error(ErrorKind::Relocation(Box::new(RelocationFailure {
        section: object.section_ref(section),
        offset: entry.r_offset,
        r_type: RelocationType {
            machine: object.machine.e_machine(),
            raw: entry.r_type,
        },
        symbol: object.symbol_name(entry.r_sym()),
        problem,
    })))
}

fn section_ref(sections: &[Section<'_>], index: usize) -> SectionRef {
    SectionRef {
        index,
        name: sections
            .get(index)
            .map_or("?", |section| section.name)
            .into(),
    }
}
