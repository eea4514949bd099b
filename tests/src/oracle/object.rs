//! The input objects, read independently of the loader: sections, symbols and
//! relocations (with goblin), and the copy with unique section names that a
//! linker script can place one by one.

use std::collections::BTreeMap;

use goblin::elf::section_header::{SHT_NOBITS, SHT_REL, SHT_RELA};
use goblin::elf::Elf;

/// `SHN_XINDEX`: the real `e_shstrndx` is in section 0's `sh_link`.
const SHN_XINDEX: u16 = 0xffff;
/// Bytes of an ELF64 section header.
const SECTION_HEADER_SIZE: usize = 64;

/// One section header.
#[derive(Clone, Debug)]
pub struct InputSection {
    /// Its name.
    pub name: String,
    /// `sh_type`.
    pub sh_type: u32,
    /// `sh_flags`.
    pub flags: u64,
    /// `sh_size`.
    pub size: u64,
}

/// One relocation, RELA or REL (REL gets addend 0; neither x86-64 nor
/// AArch64 objects use REL).
#[derive(Clone, Copy, Debug)]
pub struct InputRelocation {
    /// Offset in the patched section.
    pub offset: u64,
    /// `ELF64_R_TYPE`.
    pub r_type: u32,
    /// Symbol index.
    pub symbol: usize,
    /// The addend.
    pub addend: i64,
}

/// A relocatable object as the oracle needs it.
#[derive(Clone, Debug)]
pub struct InputObject {
    /// `e_machine`.
    pub machine: u16,
    /// Sections by index.
    pub sections: Vec<InputSection>,
    /// Symbol names by index; a section symbol gets its section's name.
    pub symbol_names: Vec<String>,
    /// Relocations by the index of the section they patch.
    pub relocations: BTreeMap<usize, Vec<InputRelocation>>,
    /// The section contents, by index (empty for `SHT_NOBITS`).
    pub contents: Vec<Vec<u8>>,
}

impl InputObject {
    /// Reads an object. Panics (with `what`) if goblin cannot.
    pub fn parse(what: &str, bytes: &[u8]) -> InputObject {
        let elf = Elf::parse(bytes).unwrap_or_else(|e| panic!("{what}: goblin: {e}"));
        let sections: Vec<InputSection> = elf
            .section_headers
            .iter()
            .map(|header| InputSection {
                name: elf
                    .shdr_strtab
                    .get_at(header.sh_name)
                    .unwrap_or("?")
                    .to_owned(),
                sh_type: header.sh_type,
                flags: header.sh_flags,
                size: header.sh_size,
            })
            .collect();
        let contents = elf
            .section_headers
            .iter()
            .map(|header| {
                if header.sh_type == SHT_NOBITS {
                    return Vec::new();
                }
                let start = header.sh_offset as usize;
                bytes
                    .get(start..start + header.sh_size as usize)
                    .unwrap_or_else(|| panic!("{what}: a section runs past the file"))
                    .to_vec()
            })
            .collect();
        let symbol_names = elf
            .syms
            .iter()
            .map(|symbol| {
                let name = elf.strtab.get_at(symbol.st_name).unwrap_or("");
                if name.is_empty() && symbol.st_type() == goblin::elf::sym::STT_SECTION {
                    sections
                        .get(symbol.st_shndx)
                        .map_or_else(String::new, |section| section.name.clone())
                } else {
                    name.to_owned()
                }
            })
            .collect();
        let mut relocations: BTreeMap<usize, Vec<InputRelocation>> = BTreeMap::new();
        for (index, list) in &elf.shdr_relocs {
            let header = &elf.section_headers[*index];
            if header.sh_type != SHT_RELA && header.sh_type != SHT_REL {
                continue;
            }
            let entries = relocations.entry(header.sh_info as usize).or_default();
            entries.extend(list.iter().map(|entry| InputRelocation {
                offset: entry.r_offset,
                r_type: entry.r_type,
                symbol: entry.r_sym,
                addend: entry.r_addend.unwrap_or(0),
            }));
        }
        InputObject {
            machine: elf.header.e_machine,
            sections,
            symbol_names,
            relocations,
            contents,
        }
    }

    /// The relocations that patch section `section`.
    pub fn relocations_of(&self, section: usize) -> &[InputRelocation] {
        self.relocations
            .get(&section)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// A readable name for symbol `index`.
    pub fn symbol_name(&self, index: usize) -> &str {
        self.symbol_names
            .get(index)
            .map(String::as_str)
            .unwrap_or("?")
    }
}

/// Changes, in place, the type of every RELA relocation of type `from` in an
/// ELF64 little-endian object to `to`. For relocation types a reference
/// linker lacks but defines another type with the same formula for.
pub fn retype_relocations(bytes: &mut [u8], from: u32, to: u32) {
    let u64_at =
        |bytes: &[u8], at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let section_headers = u64_at(bytes, 0x28) as usize;
    let count = u16::from_le_bytes([bytes[0x3c], bytes[0x3d]]) as usize;
    for index in 0..count {
        let header = section_headers + index * SECTION_HEADER_SIZE;
        let sh_type = u32::from_le_bytes(bytes[header + 4..header + 8].try_into().unwrap());
        if sh_type != SHT_RELA {
            continue;
        }
        let offset = u64_at(bytes, header + 24) as usize;
        let size = u64_at(bytes, header + 32) as usize;
        for entry in (offset..offset + size).step_by(24) {
            let info = u64_at(bytes, entry + 8);
            if info as u32 == from {
                let retyped = (info & !0xffff_ffff) | u64::from(to);
                bytes[entry + 8..entry + 16].copy_from_slice(&retyped.to_le_bytes());
            }
        }
    }
}

/// A copy of `bytes` whose sections in `names` carry the new names; the others
/// keep theirs. Nothing else changes (types, flags, contents, groups, symbols),
/// so a linker sees the same object under different section names.
///
/// The new section-name table is the old one with the new names appended, and
/// goes at the end of the file: offsets into the old table stay valid, which
/// matters when the symbol table shares it (LLVM writes one `.strtab` for
/// both). `e_shstrndx`'s header and each renamed `sh_name` are repointed.
pub fn rename_sections(bytes: &[u8], names: &BTreeMap<usize, String>) -> Vec<u8> {
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    assert!(
        bytes.len() >= 64 && bytes[..4] == *b"\x7fELF" && bytes[4] == 2 && bytes[5] == 1,
        "only ELF64 little-endian objects can be renamed"
    );
    let section_headers = u64_at(0x28) as usize;
    let entry_size = u16_at(0x3a) as usize;
    assert_eq!(entry_size, SECTION_HEADER_SIZE, "unexpected e_shentsize");
    let header = |index: usize| section_headers + index * SECTION_HEADER_SIZE;
    let mut count = u16_at(0x3c) as usize;
    if count == 0 {
        // More than 0xff00 sections: the real count is section 0's sh_size.
        count = u64_at(header(0) + 32) as usize;
    }
    let mut strings_index = u16_at(0x3e) as usize;
    if strings_index == usize::from(SHN_XINDEX) {
        strings_index = u32_at(header(0) + 40) as usize;
    }
    let strings_header = header(strings_index);
    let old_offset = u64_at(strings_header + 24) as usize;
    let old_size = u64_at(strings_header + 32) as usize;

    let mut table = bytes[old_offset..old_offset + old_size].to_vec();
    let mut out = bytes.to_vec();
    for (&index, name) in names {
        assert!(index < count, "no section {index} to rename");
        assert!(!name.contains('\0'), "section names cannot contain NUL");
        let name_offset = table.len() as u32;
        table.extend_from_slice(name.as_bytes());
        table.push(0);
        out[header(index)..header(index) + 4].copy_from_slice(&name_offset.to_le_bytes());
    }
    let new_offset = out.len() as u64;
    out.extend_from_slice(&table);
    out[strings_header + 24..strings_header + 32].copy_from_slice(&new_offset.to_le_bytes());
    out[strings_header + 32..strings_header + 40]
        .copy_from_slice(&(table.len() as u64).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 relocatable object: null, `.text` (4 bytes),
    /// `.rela.text` (one entry of type 30), `.shstrtab`.
    fn tiny_object() -> Vec<u8> {
        let names = b"\0.text\0.rela.text\0.shstrtab\0";
        let text = [0x90u8; 4];
        let mut rela = Vec::new();
        rela.extend_from_slice(&0u64.to_le_bytes());
        rela.extend_from_slice(&((5u64 << 32) | 30).to_le_bytes());
        rela.extend_from_slice(&(-4i64).to_le_bytes());
        let text_at = 64;
        let rela_at = text_at + text.len();
        let names_at = rela_at + rela.len();
        let headers_at = names_at + names.len();
        let mut out = vec![0u8; 64];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2;
        out[5] = 1;
        out[6] = 1;
        out[0x10..0x12].copy_from_slice(&1u16.to_le_bytes());
        out[0x12..0x14].copy_from_slice(&62u16.to_le_bytes());
        out[0x14..0x18].copy_from_slice(&1u32.to_le_bytes());
        out[0x28..0x30].copy_from_slice(&(headers_at as u64).to_le_bytes());
        out[0x34..0x36].copy_from_slice(&64u16.to_le_bytes());
        out[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        out[0x3c..0x3e].copy_from_slice(&4u16.to_le_bytes());
        out[0x3e..0x40].copy_from_slice(&3u16.to_le_bytes());
        out.extend_from_slice(&text);
        out.extend_from_slice(&rela);
        out.extend_from_slice(names);
        let header =
            |name: u32, sh_type: u32, flags: u64, offset: usize, size: usize, info: u32| {
                let mut h = vec![0u8; 64];
                h[0..4].copy_from_slice(&name.to_le_bytes());
                h[4..8].copy_from_slice(&sh_type.to_le_bytes());
                h[8..16].copy_from_slice(&flags.to_le_bytes());
                h[24..32].copy_from_slice(&(offset as u64).to_le_bytes());
                h[32..40].copy_from_slice(&(size as u64).to_le_bytes());
                h[44..48].copy_from_slice(&info.to_le_bytes());
                h[48..56].copy_from_slice(&1u64.to_le_bytes());
                if sh_type == SHT_RELA {
                    h[56..64].copy_from_slice(&24u64.to_le_bytes());
                }
                h
            };
        out.extend(header(0, 0, 0, 0, 0, 0));
        out.extend(header(1, 1, 6, text_at, text.len(), 0));
        out.extend(header(7, SHT_RELA, 0x40, rela_at, rela.len(), 1));
        out.extend(header(18, 3, 0, names_at, names.len(), 0));
        out
    }

    fn section_names(bytes: &[u8]) -> Vec<String> {
        let elf = Elf::parse(bytes).unwrap();
        elf.section_headers
            .iter()
            .map(|h| elf.shdr_strtab.get_at(h.sh_name).unwrap().to_owned())
            .collect()
    }

    #[test]
    fn renames_only_the_named_sections() {
        let original = tiny_object();
        assert_eq!(
            section_names(&original),
            ["", ".text", ".rela.text", ".shstrtab"]
        );
        let renamed = rename_sections(&original, &BTreeMap::from([(1, ".ml0_1".to_owned())]));
        assert_eq!(
            section_names(&renamed),
            ["", ".ml0_1", ".rela.text", ".shstrtab"]
        );
        // Everything before the appended table is unchanged but the headers'
        // sh_name of .text and the table's offset and size.
        assert_eq!(renamed[64..68], original[64..68]);
        let object = InputObject::parse("tiny", &renamed);
        assert_eq!(object.sections[1].sh_type, 1);
        assert_eq!(object.relocations_of(1)[0].r_type, 30);
    }

    #[test]
    fn retypes_relocations() {
        let mut object = tiny_object();
        retype_relocations(&mut object, 30, 27);
        let parsed = InputObject::parse("tiny", &object);
        let relocation = parsed.relocations_of(1)[0];
        assert_eq!(
            (relocation.r_type, relocation.symbol, relocation.addend),
            (27, 5, -4)
        );
        retype_relocations(&mut object, 30, 1);
        assert_eq!(
            InputObject::parse("tiny", &object).relocations_of(1)[0].r_type,
            27
        );
    }
}
