//! The reference link: `ld.lld-22` with a generated linker script that puts
//! every loaded input section exactly where modload put it, and the output
//! read back by address.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use goblin::elf::section_header::{SHF_ALLOC, SHT_NOBITS};
use goblin::elf::sym::STB_LOCAL;
use goblin::elf::Elf;

/// The lld binary the oracle runs.
pub const LLD: &str = "ld.lld-22";

/// One output section of the script: an input section at its address.
#[derive(Clone, Debug)]
pub struct Placement {
    /// The (unique) section name in the renamed object.
    pub name: String,
    /// Where modload put it.
    pub address: u64,
}

/// Writes the linker script: each placed section in its own output section at
/// its own address (`AT` too, so each gets its own `PT_LOAD` and lld never
/// fills the gaps between distant addresses in the file), the sections
/// modload does not load discarded, and lld's own sections (GOT, PLT, ...) at
/// `synthetic`, away from everything else. Anything else is an orphan, which
/// `--orphan-handling=error` turns into an error instead of a guess.
pub fn script(placements: &[Placement], discard_prefix: &str, synthetic: u64) -> String {
    let mut out = String::from("SECTIONS\n{\n");
    for placement in placements {
        let _ = writeln!(
            out,
            "  {name} {address:#x} : AT({address:#x}) {{ *({name}) }}",
            name = placement.name,
            address = placement.address
        );
    }
    let _ = writeln!(
        out,
        "  /DISCARD/ : {{ *({discard_prefix}*) *(.comment) *(.note*) *(.eh_frame) }}"
    );
    let _ = writeln!(
        out,
        "  .got {synthetic:#x} : AT({synthetic:#x}) {{ *(.got) }}\n  \
         .got.plt : {{ *(.got.plt) }}\n  .plt : {{ *(.plt) }}\n  .iplt : {{ *(.iplt) }}\n  \
         .rela.dyn : {{ *(.rela.dyn) }}\n  .rela.plt : {{ *(.rela.plt) }}\n  \
         .bss : {{ *(.bss) *(COMMON) }}"
    );
    out.push_str(
        "  .symtab 0 : { *(.symtab) }\n  .strtab 0 : { *(.strtab) }\n  \
         .shstrtab 0 : { *(.shstrtab) }\n}\n",
    );
    out
}

/// Links `objects` with lld's own layout, starting at `base`: for objects
/// modload refused before laying anything out.
pub fn link_default(
    objects: &[PathBuf],
    base: u64,
    symbols: &[(String, u64)],
    output: &Path,
) -> Result<(), String> {
    let mut command = Command::new(LLD);
    command.args(["-static", "--no-pie", "--no-relax", "-O0", "--entry=0"]);
    command.arg(format!("--image-base={base:#x}"));
    run(command, objects, symbols, output)
}

/// Links `objects` with `script` into `output`, defining `symbols` as
/// absolute symbols. Relaxation is off (lld must not rewrite GOT loads), so is
/// string merging (`-O0`), and the output is a static executable, so every
/// symbol is resolved at link time. Returns lld's stderr when it refuses.
pub fn link(
    objects: &[PathBuf],
    script: &Path,
    symbols: &[(String, u64)],
    output: &Path,
) -> Result<(), String> {
    let mut command = Command::new(LLD);
    command
        .args([
            "-static",
            "--no-pie",
            "--no-relax",
            "-O0",
            "--entry=0",
            "-z",
            "max-page-size=4096",
            "-z",
            "common-page-size=4096",
            "--orphan-handling=error",
            // lld appends range-extension thunks (AArch64) to the output
            // section of the caller, which then runs into the next placed
            // section; the comparison reads each section's own bytes.
            "--no-check-sections",
            // RELRO wants its sections contiguous; modload's are where they are.
            "-z",
            "norelro",
        ])
        .arg("-T")
        .arg(script);
    run(command, objects, symbols, output)
}

fn run(
    mut command: Command,
    objects: &[PathBuf],
    symbols: &[(String, u64)],
    output: &Path,
) -> Result<(), String> {
    for (name, address) in symbols {
        command.arg(format!("--defsym={name}={address:#x}"));
    }
    command.args(objects).arg("-o").arg(output);
    command.env("LC_ALL", "C");
    let result = command
        .output()
        .unwrap_or_else(|e| panic!("cannot start {LLD} (install lld-22): {e}"));
    if result.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&result.stderr).into_owned())
    }
}

/// An allocated section of lld's output.
#[derive(Clone, Debug)]
pub struct OutputSection {
    /// Its name.
    pub name: String,
    /// Its address.
    pub address: u64,
    /// Its size.
    pub size: u64,
    /// File offset of its bytes (none for `SHT_NOBITS`).
    pub offset: Option<u64>,
}

/// lld's output, readable by address.
pub struct LldImage {
    bytes: Vec<u8>,
    /// Allocated sections.
    pub sections: Vec<OutputSection>,
    /// Symbol values by name; globals win over locals of the same name.
    pub symbols: BTreeMap<String, u64>,
}

impl LldImage {
    /// Reads lld's output file.
    pub fn open(path: &Path) -> LldImage {
        let bytes = crate::read(path);
        let elf = Elf::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let sections = elf
            .section_headers
            .iter()
            .filter(|header| header.sh_flags & u64::from(SHF_ALLOC) != 0)
            .map(|header| OutputSection {
                name: elf
                    .shdr_strtab
                    .get_at(header.sh_name)
                    .unwrap_or("?")
                    .to_owned(),
                address: header.sh_addr,
                size: header.sh_size,
                offset: (header.sh_type != SHT_NOBITS).then_some(header.sh_offset),
            })
            .collect();
        let mut symbols = BTreeMap::new();
        let mut locals = BTreeMap::new();
        for symbol in elf.syms.iter() {
            let Some(name) = elf.strtab.get_at(symbol.st_name) else {
                continue;
            };
            if name.is_empty() {
                continue;
            }
            let table = if symbol.st_bind() == STB_LOCAL {
                &mut locals
            } else {
                &mut symbols
            };
            table.entry(name.to_owned()).or_insert(symbol.st_value);
        }
        for (name, value) in locals {
            symbols.entry(name).or_insert(value);
        }
        drop(elf);
        LldImage {
            bytes,
            sections,
            symbols,
        }
    }

    /// The allocated section called `name`.
    pub fn section(&self, name: &str) -> Option<&OutputSection> {
        self.sections.iter().find(|section| section.name == name)
    }

    /// The allocated section holding `[address, address + len)`. Where
    /// sections overlap (a section grown by thunks runs into the next), the
    /// one that starts last wins: the grown one only extends into it.
    pub fn section_at(&self, address: u64, len: u64) -> Option<&OutputSection> {
        self.sections
            .iter()
            .filter(|section| {
                address >= section.address
                    && address
                        .checked_add(len)
                        .is_some_and(|end| end <= section.address.saturating_add(section.size))
            })
            .max_by_key(|section| section.address)
    }

    /// The contents of `section` (zeros for `SHT_NOBITS`).
    pub fn contents(&self, section: &OutputSection) -> Vec<u8> {
        match section.offset {
            Some(offset) => self
                .bytes
                .get(offset as usize..(offset + section.size) as usize)
                .unwrap_or_else(|| panic!("lld's {} runs past its file", section.name))
                .to_vec(),
            None => vec![0; section.size as usize],
        }
    }

    /// `len` bytes at `offset` of `section`'s own contents.
    pub fn read_in(&self, section: &OutputSection, offset: u64, len: usize) -> Option<Vec<u8>> {
        let start = usize::try_from(offset).ok()?;
        self.contents(section)
            .get(start..start + len)
            .map(<[u8]>::to_vec)
    }

    /// `len` bytes at `address`, if one section holds them all.
    pub fn read(&self, address: u64, len: usize) -> Option<Vec<u8>> {
        let section = self.section_at(address, len as u64)?;
        let start = (address - section.address) as usize;
        Some(self.contents(section)[start..start + len].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_place_each_section() {
        let text = script(
            &[Placement {
                name: ".ml0_1".into(),
                address: 0xffff_ffff_8000_0000,
            }],
            ".mlx",
            0xffff_ffff_9000_0000,
        );
        assert!(text.contains(".ml0_1 0xffffffff80000000 : AT(0xffffffff80000000) { *(.ml0_1) }"));
        assert!(text.contains("/DISCARD/ : { *(.mlx*)"));
        assert!(text.contains(".got 0xffffffff90000000 : AT(0xffffffff90000000) { *(.got) }"));
    }
}
