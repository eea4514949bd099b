//! Reading a relocatable object: goblin parses, this file checks every offset,
//! size and index the later stages rely on, so they can index without panicking.

pub(crate) mod join;

use alloc::boxed::Box;
use alloc::vec::Vec;

use goblin::container::{Container, Ctx, Endian};
use goblin::elf::section_header::{
    SectionHeader, SHT_GROUP, SHT_NOBITS, SHT_REL, SHT_RELA, SHT_STRTAB, SHT_SYMTAB,
};
use goblin::elf::Elf;

use crate::addr::Alignment;
use crate::arch::{Machine, RelocationProblem, RelocationType};
use crate::error::{
    ErrorKind, LoadError, RelocationFailure, SectionProblem, SectionRef, SymbolProblem,
};
use crate::limits::{Limit, Limits};
#[cfg(doc)]
use crate::names::name_hash;
use crate::names::{NameHash, EMPTY_NAME_HASH};
use crate::object::join::Member;

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

/// One `Rela` entry, decoded once at parse time for planning and relocation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Rela {
    pub r_offset: u64,
    pub r_addend: i64,
    /// The symbol index (`ELF64_R_SYM`, 32 bits): 24 bytes an entry.
    sym: u32,
    /// The type (`ELF64_R_TYPE`).
    pub r_type: u32,
}

impl Rela {
    /// The symbol index.
    pub fn r_sym(&self) -> usize {
        self.sym as usize
    }

    /// Decodes one little-endian `Elf64_Rela` whose symbol table starts at
    /// `symbol_base` of the object's (0 but in a [joined](Object::join) one).
    #[inline]
    fn decode(entry: &[u8; RELA_SIZE as usize], symbol_base: u32) -> Self {
        let (words, _) = entry.as_chunks::<8>();
        // Three whole words: the lookups are resolved at compile time.
        let word = |at: usize| words.get(at).copied().map_or(0, u64::from_le_bytes);
        let r_info = word(1);
        Self {
            r_offset: word(0),
            r_addend: word(2) as i64,
            // `Object::join` checked that every index of a member is inside
            // its table, so the sum is inside the set's and cannot wrap.
            sym: ((r_info >> 32) as u32).wrapping_add(symbol_base),
            r_type: r_info as u32,
        }
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

    /// Entry `index`, decoded.
    pub fn get(&self, index: usize) -> Option<Rela> {
        self.entries
            .get(index)
            .map(|entry| Rela::decode(entry, self.symbol_base))
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

fn check_identity(bytes: &[u8]) -> Result<(), ErrorKind> {
    if bytes.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err(ErrorKind::NotElf);
    }
    let class = bytes.get(4).copied().unwrap_or(0);
    if class != ELFCLASS64 {
        return Err(ErrorKind::UnsupportedClass { class });
    }
    let data = bytes.get(5).copied().unwrap_or(0);
    if data != ELFDATA2LSB {
        return Err(ErrorKind::UnsupportedEndian { data });
    }
    Ok(())
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let field = bytes.get(at..at.checked_add(2)?)?;
    field.try_into().ok().map(u16::from_le_bytes)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let field = bytes.get(at..at.checked_add(4)?)?;
    field.try_into().ok().map(u32::from_le_bytes)
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let field = bytes.get(at..at.checked_add(8)?)?;
    field.try_into().ok().map(u64::from_le_bytes)
}

/// Where the section header table is and how many entries it has, from the
/// raw ELF header (`e_shnum == 0` means the count is in section 0's `sh_size`).
/// `None` when the header cannot say: goblin then reports the damage.
fn section_table(bytes: &[u8]) -> Option<(usize, u64)> {
    let offset = usize::try_from(read_u64(bytes, 40)?).ok()?;
    if offset == 0 {
        return Some((0, 0));
    }
    let count = match read_u16(bytes, 60)? {
        0 => read_u64(bytes, offset.checked_add(32)?)?,
        count => u64::from(count),
    };
    Some((offset, count))
}

/// Checks the section, symbol and relocation counts against `limits`, from
/// the raw headers and before goblin reads (and allocates for) any table.
/// Walking the headers costs nothing: it stops at the first one outside the
/// file, so it never takes more steps than the file has 64-byte blocks.
fn check_counts(bytes: &[u8], limits: &Limits) -> Result<(), ErrorKind> {
    let Some((offset, count)) = section_table(bytes) else {
        return Ok(());
    };
    limits.check(Limit::Sections, count)?;
    let mut symbols = 0u64;
    let mut relocations = 0u64;
    let mut at = offset;
    for _ in 0..count {
        let (Some(sh_type), Some(size)) = (
            read_u32(bytes, at.saturating_add(4)),
            read_u64(bytes, at.saturating_add(32)),
        ) else {
            break;
        };
        match sh_type {
            SHT_SYMTAB => symbols = symbols.saturating_add(size / SYM_SIZE),
            SHT_RELA => relocations = relocations.saturating_add(size / RELA_SIZE),
            SHT_REL => relocations = relocations.saturating_add(size / REL_SIZE),
            _ => {}
        }
        at = at.saturating_add(SHDR_SIZE);
    }
    limits.check(Limit::Symbols, symbols)?;
    Ok(limits.check(Limit::Relocations, relocations)?)
}

/// Table sections must have their type's entry size, and there is one symbol
/// table. goblin reads the last symbol table by its `sh_entsize`, so either
/// flaw would make it read other bytes as symbols than the table holds.
fn check_tables(headers: &[SectionHeader], sections: &[Section<'_>]) -> Result<(), ErrorKind> {
    let mut symbol_tables = 0usize;
    for (index, header) in headers.iter().enumerate() {
        let entsize = match header.sh_type {
            SHT_SYMTAB => {
                symbol_tables = symbol_tables.saturating_add(1);
                SYM_SIZE
            }
            SHT_RELA => RELA_SIZE,
            SHT_GROUP => 4,
            _ => continue,
        };
        if header.sh_entsize != entsize {
            return Err(ErrorKind::Section {
                section: section_ref(sections, index),
                problem: SectionProblem::BadEntrySize {
                    entsize: header.sh_entsize,
                },
            });
        }
    }
    if symbol_tables > 1 {
        return Err(ErrorKind::Malformed {
            what: "more than one symbol table",
        });
    }
    Ok(())
}

/// Every string table must end with NUL (the ELF rule): otherwise its last
/// name runs on to the end of the table, and a name read by offset could be
/// any bytes the author liked.
fn check_string_tables(sections: &[Section<'_>]) -> Result<(), ErrorKind> {
    for (index, section) in sections.iter().enumerate() {
        let data = section.data.unwrap_or_default();
        if section.sh_type == SHT_STRTAB && data.last().is_some_and(|last| *last != 0) {
            return Err(ErrorKind::Section {
                section: section_ref(sections, index),
                problem: SectionProblem::UnterminatedStrings,
            });
        }
    }
    Ok(())
}

/// No two sections may share bytes of the file, and none may overlap the ELF
/// header or the section header table. Assemblers never emit such objects;
/// one that does could make a relocation section describe itself, or one
/// section's patches change another's contents.
fn check_overlaps(
    table_start: u64,
    headers: &[SectionHeader],
    sections: &[Section<'_>],
) -> Result<(), ErrorKind> {
    /// Marks the two header ranges among the section ranges.
    const HEADERS: usize = usize::MAX;
    let table_end = (sections.len() as u64)
        .checked_mul(SHDR_SIZE as u64)
        .and_then(|len| table_start.checked_add(len))
        .unwrap_or(u64::MAX);
    let mut ranges: Vec<(u64, u64, usize)> = Vec::with_capacity(sections.len().saturating_add(2));
    ranges.push((0, EHDR_SIZE as u64, HEADERS));
    if table_start != 0 {
        ranges.push((table_start, table_end, HEADERS));
    }
    for (index, header) in headers.iter().enumerate() {
        // NOBITS sections and empty ones occupy no bytes of the file.
        if header.sh_type != SHT_NOBITS && header.sh_size != 0 {
            let end = header.sh_offset.saturating_add(header.sh_size);
            ranges.push((header.sh_offset, end, index));
        }
    }
    ranges.sort_unstable();
    // Sweep in file order, remembering the range that reaches furthest.
    let mut furthest: Option<(u64, usize)> = None;
    for &(start, end, index) in &ranges {
        if let Some((reach, holder)) = furthest {
            if start < reach {
                let (section, other) = match (holder, index) {
                    (HEADERS, section) | (section, HEADERS) => (section, HEADERS),
                    (a, b) => (a.max(b), a.min(b)),
                };
                if section == HEADERS {
                    // The two header ranges overlap each other: goblin read
                    // the table regardless, so the file is simply damaged.
                    return Err(ErrorKind::Malformed {
                        what: "section header table overlaps the ELF header",
                    });
                }
                let problem = if other == HEADERS {
                    SectionProblem::OverlapsHeaders
                } else {
                    SectionProblem::Overlaps { other }
                };
                return Err(ErrorKind::Section {
                    section: section_ref(sections, section),
                    problem,
                });
            }
        }
        if furthest.is_none_or(|(reach, _)| end > reach) {
            furthest = Some((end, index));
        }
    }
    Ok(())
}

fn read_sections<'a>(
    headers: &[SectionHeader],
    names_index: u32,
    bytes: &'a [u8],
) -> Result<Vec<Section<'a>>, ErrorKind> {
    // Section names come from the section name table, if it is where the
    // header says; a name that cannot be read prints as "?".
    let names = headers
        .get(names_index as usize)
        .filter(|header| header.sh_type == SHT_STRTAB && names_index != 0)
        .and_then(|header| file_range(bytes, header))
        .map_or(Strings::EMPTY, Strings::new);
    let mut sections = Vec::with_capacity(headers.len());
    for header in headers {
        let name = names.get(header.sh_name as u64).unwrap_or("?");
        let index = sections.len();
        let problem = |problem| ErrorKind::Section {
            section: SectionRef {
                index,
                name: name.into(),
            },
            problem,
        };
        let align = Alignment::from_elf(header.sh_addralign).ok_or_else(|| {
            problem(SectionProblem::BadAlignment {
                align: header.sh_addralign,
            })
        })?;
        let data = if header.sh_type == SHT_NOBITS {
            None
        } else {
            Some(file_range(bytes, header).ok_or_else(|| problem(SectionProblem::OutOfBounds))?)
        };
        sections.push(Section {
            name,
            sh_type: header.sh_type,
            flags: header.sh_flags,
            size: header.sh_size,
            align,
            info: header.sh_info,
            link: header.sh_link,
            data,
        });
    }
    Ok(sections)
}

/// The file bytes a section header describes, if they are in the file.
fn file_range<'a>(bytes: &'a [u8], header: &SectionHeader) -> Option<&'a [u8]> {
    let start = usize::try_from(header.sh_offset).ok()?;
    let len = usize::try_from(header.sh_size).ok()?;
    bytes.get(start..start.checked_add(len)?)
}

/// A string table, checked as UTF-8 once: names are then cut out of it
/// without checking each again. A table that is not UTF-8 as a whole (ELF
/// names are bytes) still yields every name that is.
#[derive(Clone, Copy)]
struct Strings<'a> {
    bytes: &'a [u8],
    text: Option<&'a str>,
}

impl<'a> Strings<'a> {
    const EMPTY: Strings<'static> = Strings {
        bytes: &[],
        text: Some(""),
    };

    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            text: core::str::from_utf8(bytes).ok(),
        }
    }

    /// The NUL-terminated name at `offset`, or `None` if the offset is
    /// outside the table, splits a character, or the name is not UTF-8.
    fn get(&self, offset: u64) -> Option<&'a str> {
        let offset = usize::try_from(offset).ok()?;
        match self.text {
            Some(text) => {
                let rest = text.get(offset..)?;
                let end = rest
                    .bytes()
                    .position(|byte| byte == 0)
                    .unwrap_or(rest.len());
                // NUL is a whole character, so the cut is on a boundary.
                rest.get(..end)
            }
            None => {
                let rest = self.bytes.get(offset..)?;
                let end = rest
                    .iter()
                    .position(|byte| *byte == 0)
                    .unwrap_or(rest.len());
                core::str::from_utf8(rest.get(..end)?).ok()
            }
        }
    }

    /// [`Strings::get`] and the name's [`name_hash`], from one pass over the
    /// name's 8-byte words: each word is searched for a NUL and, if it has
    /// none, hashed. A name without a NUL runs to the end of the table (which
    /// `check_string_tables` refuses for string tables read as such).
    #[inline]
    fn get_hashed(&self, offset: usize) -> Option<(&'a str, u64)> {
        const ONES: u64 = u64::from_le_bytes([0x01; 8]);
        const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
        let rest = self.bytes.get(offset..)?;
        let mut state = NameHash::new();
        let mut len = 0usize;
        let last = loop {
            let word = match rest.get(len..len.wrapping_add(8)) {
                Some(&[b0, b1, b2, b3, b4, b5, b6, b7]) => {
                    u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7])
                }
                // The table's last bytes, padded with zeros: they end the
                // name at the end of the table.
                _ => {
                    let mut padded = [0u8; 8];
                    let tail = rest.get(len..).unwrap_or_default();
                    if let Some(start) = padded.get_mut(..tail.len()) {
                        start.copy_from_slice(tail);
                    }
                    u64::from_le_bytes(padded)
                }
            };
            // The lowest set bit is the high bit of the first zero byte;
            // bits above it may be false (borrows), below it none are.
            let zeros = word.wrapping_sub(ONES) & !word & HIGHS;
            if zeros != 0 {
                len = len.wrapping_add((zeros.trailing_zeros() / 8) as usize);
                let first_zero = zeros & zeros.wrapping_neg();
                let below = (first_zero >> 7).wrapping_sub(1);
                break word & below;
            }
            state = state.word(word);
            len = len.wrapping_add(8);
        };
        let name = match self.text {
            // NUL is a whole character, so the end is on a boundary.
            Some(text) => text.get(offset..offset.checked_add(len)?)?,
            None => core::str::from_utf8(rest.get(..len)?).ok()?,
        };
        Some((name, state.finish(last)))
    }
}

/// The symbols and the string table their names are in.
fn read_symbols<'a>(
    sections: &[Section<'a>],
    limits: &Limits,
) -> Result<(Vec<Symbol<'a>>, &'a [u8]), ErrorKind> {
    // `check_tables` allowed at most one symbol table.
    let Some((table_index, table)) = sections
        .iter()
        .enumerate()
        .find(|(_, section)| section.sh_type == SHT_SYMTAB)
    else {
        return Ok((Vec::new(), &[]));
    };
    let names = sections
        .get(table.link as usize)
        .filter(|section| section.sh_type == SHT_STRTAB && table.link != 0)
        .and_then(|section| section.data)
        .map(Strings::new)
        .ok_or_else(|| ErrorKind::Section {
            section: section_ref(sections, table_index),
            problem: SectionProblem::BadLink,
        })?;
    let (entries, _) = table
        .data
        .unwrap_or_default()
        .as_chunks::<{ SYM_SIZE as usize }>();
    let section_count = sections.len();
    let mut symbols = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let raw = RawSymbol::decode(entry);
        let fail = |name: &str, problem| ErrorKind::Symbol {
            index,
            name: name.into(),
            problem,
        };
        let (name, hash) = if raw.name == 0 {
            ("", EMPTY_NAME_HASH)
        } else {
            names
                .get_hashed(raw.name as usize)
                .ok_or_else(|| fail("?", SymbolProblem::BadName))?
        };
        limits.check(Limit::SymbolNameLength, name.len() as u64)?;
        let shndx = u32::from(raw.shndx);
        if shndx == SHN_XINDEX {
            return Err(fail(name, SymbolProblem::ExtendedIndex));
        }
        let kind = raw.info & 0xf;
        let in_a_section = shndx != SHN_UNDEF && shndx < SHN_LORESERVE;
        if in_a_section && shndx as usize >= section_count && kind != STT_FILE {
            return Err(fail(name, SymbolProblem::BadSectionIndex { shndx }));
        }
        symbols.push(Symbol {
            name,
            hash,
            name_at: raw.name,
            value: raw.value,
            size: raw.size,
            shndx,
            bind: raw.info >> 4,
            kind,
            visibility: raw.other & 0x3,
        });
    }
    Ok((symbols, names.bytes))
}

/// One little-endian `Elf64_Sym`, as its fields.
struct RawSymbol {
    name: u32,
    info: u8,
    other: u8,
    shndx: u16,
    value: u64,
    size: u64,
}

impl RawSymbol {
    #[inline]
    fn decode(entry: &[u8; SYM_SIZE as usize]) -> Self {
        let (words, _) = entry.as_chunks::<8>();
        // Three whole words: the lookups are resolved at compile time.
        let word = |at: usize| words.get(at).copied().unwrap_or_default();
        let [n0, n1, n2, n3, info, other, s0, s1] = word(0);
        Self {
            name: u32::from_le_bytes([n0, n1, n2, n3]),
            info,
            other,
            shndx: u16::from_le_bytes([s0, s1]),
            value: u64::from_le_bytes(word(1)),
            size: u64::from_le_bytes(word(2)),
        }
    }
}

fn read_relocations<'a>(sections: &[Section<'a>]) -> Result<Vec<RelocationSection<'a>>, ErrorKind> {
    let mut relocations = Vec::new();
    for (index, section) in sections.iter().enumerate() {
        let problem = |problem| ErrorKind::Section {
            section: section_ref(sections, index),
            problem,
        };
        match section.sh_type {
            SHT_RELA => {}
            SHT_REL => return Err(problem(SectionProblem::ImplicitAddends)),
            _ => continue,
        }
        let target = section.info as usize;
        if target == 0 || target >= sections.len() {
            return Err(problem(SectionProblem::BadLink));
        }
        // `check_tables` made `sh_entsize` 24: a partial entry at the end is
        // ignored, as every ELF reader counts `sh_size / sh_entsize` entries.
        let (entries, _) = section
            .data
            .unwrap_or_default()
            .as_chunks::<{ RELA_SIZE as usize }>();
        relocations.push(RelocationSection {
            target,
            entries,
            symbol_base: 0,
        });
    }
    Ok(relocations)
}

fn read_groups<'a>(
    sections: &[Section<'a>],
    symbols: &[Symbol<'a>],
) -> Result<Vec<Group<'a>>, ErrorKind> {
    let mut groups = Vec::new();
    for (index, section) in sections.iter().enumerate() {
        if section.sh_type != SHT_GROUP {
            continue;
        }
        let bad = || ErrorKind::Section {
            section: section_ref(sections, index),
            problem: SectionProblem::BadGroup,
        };
        let words: Vec<u32> = section
            .data
            .unwrap_or_default()
            .chunks_exact(4)
            .filter_map(|word| word.try_into().ok().map(u32::from_le_bytes))
            .collect();
        let (flags, members) = words.split_first().ok_or_else(bad)?;
        if members
            .iter()
            .any(|&member| member as usize >= sections.len() || member == 0)
        {
            return Err(bad());
        }
        // sh_info names the signature symbol. A section symbol (as gas emits for
        // groups named after their section) stands for its section's name.
        let symbol = symbols.get(section.info as usize).ok_or_else(bad)?;
        let signature = if symbol.kind == STT_SECTION {
            sections.get(symbol.shndx as usize).ok_or_else(bad)?.name
        } else {
            symbol.name
        };
        groups.push(Group {
            signature,
            comdat: flags & GRP_COMDAT != 0,
            members: members.to_vec(),
        });
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::Strings;
    use crate::names::name_hash;
    use alloc::string::String;
    use alloc::vec::Vec;

    /// Names of every length 0..=40, ASCII and not, packed into tables with
    /// each name in every position: first, in the middle, and last with its
    /// NUL as the table's last byte or with no NUL at all.
    #[test]
    fn hashed_names_match_name_hash() {
        let pieces = ["a", "é", "ab", "€", "𝄞", "_Z3foo", "x.y"];
        let mut names: Vec<String> = Vec::new();
        for len in 0..=40usize {
            for (start, _) in pieces.iter().enumerate() {
                let mut name = String::new();
                let mut turn = start;
                while name.len() < len {
                    name.push_str(pieces[turn % pieces.len()]);
                    turn += 1;
                }
                // Cut back to `len` bytes on a character boundary.
                while name.len() > len {
                    name.pop();
                }
                names.push(name);
            }
        }
        for name in &names {
            let places: [(&[u8], &[u8]); 4] = [
                (b"", b"\0"),
                (b"xyz\0", b"\0more\0"),
                (b"p\0", b""),
                // Not UTF-8 as a whole.
                (b"\xff\0", b"\0"),
            ];
            for (before, after) in places {
                let offset = before.len();
                let bytes = [before, name.as_bytes(), after].concat();
                let strings = Strings::new(&bytes);
                let (found, hash) = strings.get_hashed(offset).expect("name in table");
                assert_eq!(found, name, "{name:?} after {before:?}");
                assert_eq!(hash, name_hash(name), "{name:?} after {before:?}");
                assert_eq!(strings.get(offset as u64), Some(name.as_str()));
            }
        }
    }

    #[test]
    fn hashed_names_refuse_what_get_refuses() {
        let table = "ab\0é\0\0".as_bytes();
        let strings = Strings::new(table);
        for offset in 0..=table.len() + 9 {
            assert_eq!(
                strings.get_hashed(offset).map(|(name, _)| name),
                strings.get(offset as u64),
                "offset {offset}"
            );
        }
        // Not UTF-8: the name at 0 is refused, the one after it is not.
        let strings = Strings::new(b"a\xff\0b\0");
        assert_eq!(strings.get_hashed(0), None);
        assert_eq!(strings.get_hashed(3).map(|(name, _)| name), Some("b"));
    }

    #[test]
    fn name_hashes_differ_and_are_never_zero() {
        let mut seen = alloc::collections::BTreeSet::new();
        for number in 0..20_000u32 {
            for prefix in ["f", "g", "module_function_", ""] {
                let name = alloc::format!("{prefix}{number}");
                let hash = name_hash(&name);
                assert_ne!(hash, 0);
                assert!(seen.insert(hash), "{name} collides");
            }
        }
        assert_ne!(name_hash(""), 0);
    }
}
