//! `modload run --perf-map`: the modules' symbols in `/tmp/perf-PID.map`,
//! the file `perf report` reads to name code that no ELF file on disk
//! describes (JIT code; here, module code in anonymous memory).
//!
//! The format is one symbol per line, `START SIZE NAME`, START and SIZE
//! in hexadecimal without `0x`. Names are `function [module.o]`, so a
//! profile tells which module a function came from.

use std::fmt::Write as _;
use std::path::PathBuf;

use modload::{Module, ModuleSymbol};

use crate::Failure;

/// Writes the map of `modules`' symbols for this process and returns its path.
pub fn write(modules: &[Module<'_>]) -> Result<PathBuf, Failure> {
    let mut map = String::new();
    for module in modules {
        let name = module.name().unwrap_or_default();
        append_module(&mut map, crate::module_file_name(&name), &module.symbols());
    }
    let path = PathBuf::from(format!("/tmp/perf-{}.map", std::process::id()));
    std::fs::write(&path, map).map_err(|error| Failure::io(&path.to_string_lossy(), &error))?;
    Ok(path)
}

/// Appends one line per symbol of a module named `module`; `symbols` are
/// sorted by address. A symbol of size 0 (an assembly label without
/// `.size`) reaches to the next symbol of its section; the last one of a
/// section, whose end is unknown here, is left out rather than guessed, and
/// so is one where a sized symbol starts: that symbol already names the
/// code, and a second, wider entry at its address would contend with it.
fn append_module(map: &mut String, module: &str, symbols: &[ModuleSymbol]) {
    for (index, symbol) in symbols.iter().enumerate() {
        if symbol.size == 0 && sized_symbol_starts_at(symbols, symbol) {
            continue;
        }
        let size = match symbol.size {
            0 => symbols
                .iter()
                .skip(index + 1)
                .find(|next| next.section == symbol.section && next.address > symbol.address)
                .map_or(0, |next| next.address.as_u64() - symbol.address.as_u64()),
            size => size,
        };
        if size == 0 {
            continue;
        }
        // perf takes the rest of the line as the name: a line break in a
        // name (ELF allows any byte but NUL) would start a bogus entry.
        let name: String = symbol
            .name
            .chars()
            .map(|character| match character.is_control() {
                true => '?',
                false => character,
            })
            .collect();
        let _ = writeln!(
            map,
            "{:x} {size:x} {name} [{module}]",
            symbol.address.as_u64()
        );
    }
}

/// Whether a symbol with a size starts where `label` does, in its section;
/// `symbols` are sorted by address.
fn sized_symbol_starts_at(symbols: &[ModuleSymbol], label: &ModuleSymbol) -> bool {
    let first = symbols.partition_point(|symbol| symbol.address < label.address);
    symbols
        .iter()
        .skip(first)
        .take_while(|symbol| symbol.address == label.address)
        .any(|symbol| symbol.size > 0 && symbol.section == label.section)
}

#[cfg(test)]
mod tests {
    use super::*;
    use modload::VirtAddr;

    fn symbol(name: &str, address: u64, size: u64, section: &str) -> ModuleSymbol {
        ModuleSymbol {
            name: name.into(),
            address: VirtAddr::new(address),
            size,
            section: section.into(),
        }
    }

    #[test]
    fn lines_in_perf_format() {
        let mut map = String::new();
        append_module(
            &mut map,
            "loop.o",
            &[
                symbol("entry_label", 0x7f00_0000_1000, 0, ".text"),
                symbol("hot_loop", 0x7f00_0000_1000, 0x40, ".text"),
                symbol("label", 0x7f00_0000_1040, 0, ".text"),
                symbol("inner_label", 0x7f00_0000_1058, 0, ".text"),
                symbol("after", 0x7f00_0000_1058, 0x8, ".text"),
                symbol("last_label", 0x7f00_0000_1060, 0, ".text"),
                symbol("odd\nname", 0x7f00_0000_2000, 0x4, ".data"),
            ],
        );
        assert_eq!(
            map,
            "7f0000001000 40 hot_loop [loop.o]\n\
             7f0000001040 18 label [loop.o]\n\
             7f0000001058 8 after [loop.o]\n\
             7f0000002000 4 odd?name [loop.o]\n"
        );
    }
}
