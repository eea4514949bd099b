//! Reading and checking an object's headers, sections, relocation
//! sections and groups.

use alloc::vec::Vec;

use goblin::elf::section_header::{
    SectionHeader, SHT_GROUP, SHT_NOBITS, SHT_REL, SHT_RELA, SHT_STRTAB, SHT_SYMTAB,
};

use crate::addr::Alignment;
use crate::error::{ErrorKind, SectionProblem, SectionRef};
use crate::limits::{Limit, Limits};
use crate::object::symbols::Strings;
use crate::object::{
    section_ref, Group, RelocationSection, Section, Symbol, EHDR_SIZE, ELFCLASS64, ELFDATA2LSB,
    GRP_COMDAT, RELA_SIZE, REL_SIZE, SHDR_SIZE, STT_SECTION, SYM_SIZE,
};

#[inline]
pub(crate) fn check_identity(bytes: &[u8]) -> Result<(), ErrorKind> {
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

pub(crate) fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let field = bytes.get(at..at.checked_add(2)?)?;
    field.try_into().ok().map(u16::from_le_bytes)
}

pub(crate) fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let field = bytes.get(at..at.checked_add(4)?)?;
    field.try_into().ok().map(u32::from_le_bytes)
}

pub(crate) fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let field = bytes.get(at..at.checked_add(8)?)?;
    field.try_into().ok().map(u64::from_le_bytes)
}

/// Where the section header table is and how many entries it has, from the
/// raw ELF header (`e_shnum == 0` means the count is in section 0's `sh_size`).
/// `None` when the header cannot say: goblin then reports the damage.
pub(crate) fn section_table(bytes: &[u8]) -> Option<(usize, u64)> {
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
#[inline]
pub(crate) fn check_counts(bytes: &[u8], limits: &Limits) -> Result<(), ErrorKind> {
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
#[inline]
pub(crate) fn check_tables(
    headers: &[SectionHeader],
    sections: &[Section<'_>],
) -> Result<(), ErrorKind> {
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
#[inline]
pub(crate) fn check_string_tables(sections: &[Section<'_>]) -> Result<(), ErrorKind> {
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
#[inline]
pub(crate) fn check_overlaps(
    table_start: u64,
    headers: &[SectionHeader],
    sections: &[Section<'_>],
) -> Result<(), ErrorKind> {
    /// Marks the two header ranges among the section ranges.
    pub(crate) const HEADERS: usize = usize::MAX;
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

#[inline]
pub(crate) fn read_sections<'a>(
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
pub(crate) fn file_range<'a>(bytes: &'a [u8], header: &SectionHeader) -> Option<&'a [u8]> {
    let start = usize::try_from(header.sh_offset).ok()?;
    let len = usize::try_from(header.sh_size).ok()?;
    bytes.get(start..start.checked_add(len)?)
}

#[inline]
pub(crate) fn read_relocations<'a>(
    sections: &[Section<'a>],
) -> Result<Vec<RelocationSection<'a>>, ErrorKind> {
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

#[inline]
pub(crate) fn read_groups<'a>(
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
