//! Reading an object's symbol table: names cut from a string table checked
//! once, and hashed in the same pass.

use alloc::vec::Vec;

use goblin::elf::section_header::{SHT_STRTAB, SHT_SYMTAB};

use crate::error::{ErrorKind, SectionProblem, SymbolProblem};
use crate::limits::{Limit, Limits};
#[cfg(doc)]
use crate::names::name_hash;
use crate::names::{NameHash, EMPTY_NAME_HASH};
use crate::object::{
    section_ref, Section, Symbol, SHN_LORESERVE, SHN_UNDEF, SHN_XINDEX, STT_FILE, SYM_SIZE,
};

/// A string table, checked as UTF-8 once: names are then cut out of it
/// without checking each again. A table that is not UTF-8 as a whole (ELF
/// names are bytes) still yields every name that is.
#[derive(Clone, Copy)]
pub(crate) struct Strings<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) text: Option<&'a str>,
}

impl<'a> Strings<'a> {
    pub(crate) const EMPTY: Strings<'static> = Strings {
        bytes: &[],
        text: Some(""),
    };

    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            text: core::str::from_utf8(bytes).ok(),
        }
    }

    /// The NUL-terminated name at `offset`, or `None` if the offset is
    /// outside the table, splits a character, or the name is not UTF-8.
    pub(crate) fn get(&self, offset: u64) -> Option<&'a str> {
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
    pub(crate) fn get_hashed(&self, offset: usize) -> Option<(&'a str, u64)> {
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
#[inline]
pub(crate) fn read_symbols<'a>(
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
pub(crate) struct RawSymbol {
    pub(crate) name: u32,
    pub(crate) info: u8,
    pub(crate) other: u8,
    pub(crate) shndx: u16,
    pub(crate) value: u64,
    pub(crate) size: u64,
}

impl RawSymbol {
    #[inline]
    pub(crate) fn decode(entry: &[u8; SYM_SIZE as usize]) -> Self {
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
