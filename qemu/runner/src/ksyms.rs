//! The kernel's own symbol table, like Linux's kallsyms: the kernel is linked,
//! its function symbols are read with `llvm-nm-22`, written as a compact
//! sorted table, and the kernel is built again with that table inside (the
//! `.kernel_symbols` section, which the linker script places after everything
//! else, so no other address moves). The kernel reads it in its fault reports.
//!
//! Table format (little endian), read by `qemu/kernel/src/ksyms.rs`:
//!
//! ```text
//! "KSYM"  u32 count  u32 names_len
//! count x { u64 address, u32 size, u32 name_start }   sorted by address
//! names_len bytes of UTF-8 names; name i is names[name_start(i)..name_start(i + 1)]
//! ```

use std::path::Path;
use std::process::Command;

/// The table's first four bytes.
pub const MAGIC: &[u8; 4] = b"KSYM";

/// One defined symbol of the kernel as `llvm-nm -n -S -C` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NmSymbol {
    pub address: u64,
    pub size: u64,
    pub kind: char,
    pub name: String,
}

/// Parses `llvm-nm -n --defined-only -S -C` output; lines without a size
/// (absolute symbols in some nm versions) get size 0.
pub fn parse_nm(output: &str) -> Result<Vec<NmSymbol>, String> {
    let mut symbols = Vec::new();
    for line in output.lines().filter(|line| !line.trim().is_empty()) {
        let bad = || format!("unexpected llvm-nm line: {line:?}");
        let (address, rest) = line.split_once(' ').ok_or_else(bad)?;
        let address = u64::from_str_radix(address, 16).map_err(|_| bad())?;
        let (size, rest) = match rest.split_once(' ') {
            Some((size, rest)) if size.len() > 1 => {
                (u64::from_str_radix(size, 16).map_err(|_| bad())?, rest)
            }
            _ => (0, rest.trim_start()),
        };
        let mut chars = rest.chars();
        let kind = chars.next().ok_or_else(bad)?;
        let name = without_llvm_suffix(chars.as_str().trim_start()).to_owned();
        symbols.push(NmSymbol {
            address,
            size,
            kind,
            name,
        });
    }
    Ok(symbols)
}

/// Drops the `.llvm.<digits>` suffix LLVM gives local symbols it promotes
/// across codegen units (demangled: ` (.llvm.<digits>)` or, after a
/// disambiguator, ` (.0.llvm.<digits>)`): a hash of the unit's contents,
/// which differs between the two links though the symbol does not.
fn without_llvm_suffix(name: &str) -> &str {
    let digits = |text: &str| !text.is_empty() && text.chars().all(|c| c.is_ascii_digit());
    let llvm_suffix = |suffix: &str| {
        suffix.rsplit_once(".llvm.").is_some_and(|(before, hash)| {
            digits(hash)
                && before
                    .split('.')
                    .all(|part| part.is_empty() || digits(part))
        })
    };
    if let Some((path, suffix)) = name.rsplit_once(" (") {
        if suffix.strip_suffix(')').is_some_and(llvm_suffix) {
            return path;
        }
    }
    match name.rsplit_once(".llvm.") {
        Some((path, suffix)) if digits(suffix) => path,
        _ => name,
    }
}

/// Drops the `::h<16 hex digits>` hash of a demangled legacy Rust name.
fn without_hash(name: &str) -> &str {
    match name.rsplit_once("::h") {
        Some((path, hash))
            if hash.len() == 16 && hash.chars().all(|digit| digit.is_ascii_hexdigit()) =>
        {
            path
        }
        _ => name,
    }
}

/// The kernel's functions: text symbols (`T`, `t`, `W`, `w`) below
/// `__text_end`, one per address, sorted.
pub fn functions(symbols: &[NmSymbol]) -> Result<Vec<(u64, u64, String)>, String> {
    let text_end = symbols
        .iter()
        .find(|symbol| symbol.name == "__text_end")
        .map(|symbol| symbol.address)
        .ok_or("the kernel has no __text_end symbol")?;
    let mut functions: Vec<(u64, u64, String)> = symbols
        .iter()
        .filter(|symbol| matches!(symbol.kind, 'T' | 't' | 'W' | 'w'))
        .filter(|symbol| symbol.address < text_end)
        .map(|symbol| {
            (
                symbol.address,
                symbol.size,
                without_hash(&symbol.name).to_owned(),
            )
        })
        .collect();
    functions.sort_by_key(|function| function.0);
    // Aliases at one address: keep the first name nm lists, with the largest size.
    functions.dedup_by(|later, kept| {
        if later.0 == kept.0 {
            kept.1 = kept.1.max(later.1);
            true
        } else {
            false
        }
    });
    Ok(functions)
}

/// The table bytes for `functions` (sorted by address).
pub fn encode(functions: &[(u64, u64, String)]) -> Result<Vec<u8>, String> {
    let mut entries = Vec::new();
    let mut names = Vec::new();
    for (address, size, name) in functions {
        let size = u32::try_from(*size).map_err(|_| format!("{name}: size {size:#x}"))?;
        let start = u32::try_from(names.len()).map_err(|_| "names exceed 4 GiB")?;
        entries.extend_from_slice(&address.to_le_bytes());
        entries.extend_from_slice(&size.to_le_bytes());
        entries.extend_from_slice(&start.to_le_bytes());
        names.extend_from_slice(name.as_bytes());
    }
    let count = u32::try_from(functions.len()).map_err(|_| "too many symbols")?;
    let names_len = u32::try_from(names.len()).map_err(|_| "names exceed 4 GiB")?;
    let mut table = MAGIC.to_vec();
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&names_len.to_le_bytes());
    table.extend_from_slice(&entries);
    table.extend_from_slice(&names);
    Ok(table)
}

/// Every defined symbol of the ELF file at `path`.
pub fn read_symbols(path: &Path) -> Result<Vec<NmSymbol>, String> {
    let output = Command::new("llvm-nm-22")
        .args(["-n", "--defined-only", "-S", "-C"])
        .arg(path)
        .output()
        .map_err(|error| format!("cannot start llvm-nm-22: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "llvm-nm-22 {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    parse_nm(&String::from_utf8_lossy(&output.stdout))
}

/// The bytes of section `name` in the ELF file at `path`.
pub fn section_bytes(path: &Path, name: &str, scratch: &Path) -> Result<Vec<u8>, String> {
    let output = Command::new("llvm-objcopy-22")
        .arg(format!("--dump-section={name}={}", scratch.display()))
        .arg(path)
        .arg(scratch.with_extension("elf"))
        .output()
        .map_err(|error| format!("cannot start llvm-objcopy-22: {error}"))?;
    let _ = std::fs::remove_file(scratch.with_extension("elf"));
    if !output.status.success() {
        return Err(format!(
            "llvm-objcopy-22 --dump-section {name} {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let bytes = std::fs::read(scratch).map_err(|error| format!("{}: {error}", scratch.display()));
    let _ = std::fs::remove_file(scratch);
    bytes
}

/// The symbols two links must agree on: all but the table's own, which lie
/// at or after `__kernel_symbols_start`.
fn placed_before_table(symbols: &[NmSymbol]) -> Result<Vec<&NmSymbol>, String> {
    let table_start = symbols
        .iter()
        .find(|symbol| symbol.name == "__kernel_symbols_start")
        .map(|symbol| symbol.address)
        .ok_or("the kernel has no __kernel_symbols_start symbol")?;
    Ok(symbols
        .iter()
        .filter(|symbol| symbol.address < table_start)
        .collect())
}

/// Fails unless every symbol before the table has the same address, size and
/// kind in both links, naming the first few that moved. Names are not
/// compared: LLVM's suffixes for promoted locals may differ between links.
pub fn same_addresses(first: &[NmSymbol], second: &[NmSymbol]) -> Result<(), String> {
    let first = placed_before_table(first)?;
    let second = placed_before_table(second)?;
    let place = |symbol: &&NmSymbol| (symbol.address, symbol.size, symbol.kind);
    if first.len() == second.len() && first.iter().map(place).eq(second.iter().map(place)) {
        return Ok(());
    }
    let moved: Vec<String> = first
        .iter()
        .zip(&second)
        .filter(|(one, two)| place(one) != place(two))
        .take(5)
        .map(|(one, two)| {
            format!(
                "{} at {:#x} (size {:#x}), then {} at {:#x} (size {:#x})",
                one.name, one.address, one.size, two.name, two.address, two.size
            )
        })
        .collect();
    Err(format!(
        "the kernel's symbols moved when its symbol table was added ({} then {} symbols): {}",
        first.len(),
        second.len(),
        moved.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NM: &str = "\
0000000000100000 0000000000000000 R __kernel_start
0000000000101000 0000000000000000 T _start32
00000000001010b0 000000000000001e t core::ptr::drop_in_place::<alloc::boxed::Box<str>>
00000000001010b0 0000000000000020 t an_alias
00000000001010d0 00000000000001a1 t modload_test_kernel::scenario::step13::h0123456789abcdef
0000000000101280 0000000000000010 t <alloc::raw_vec::RawVecInner>::finish_grow (.llvm.460274754563838581)
0000000000101290 0000000000000010 t anon.965b83e3e5d1ddb6588c80cead9eadb5.7.llvm.2854121644247622666
00000000001012a0 0000000000000010 t modload_test_kernel::faults::report (.0.llvm.17919417080454498473)
00000000001012b0 0000000000000010 t <T as core::fmt::Debug>::fmt (.keep)
0000000000102000 0000000000000008 r some_rodata
0000000000102000 0000000000000000 T __text_end
0000000000103000 0000000000000000 t after_text
";

    #[test]
    fn functions_are_text_symbols_sorted_without_hashes_or_aliases() {
        let symbols = parse_nm(NM).unwrap();
        assert_eq!(symbols.len(), 12);
        let functions = functions(&symbols).unwrap();
        assert_eq!(
            functions,
            [
                (0x101000, 0, "_start32".to_owned()),
                (
                    0x1010b0,
                    0x20,
                    "core::ptr::drop_in_place::<alloc::boxed::Box<str>>".to_owned()
                ),
                (
                    0x1010d0,
                    0x1a1,
                    "modload_test_kernel::scenario::step13".to_owned()
                ),
                (
                    0x101280,
                    0x10,
                    "<alloc::raw_vec::RawVecInner>::finish_grow".to_owned()
                ),
                (
                    0x101290,
                    0x10,
                    "anon.965b83e3e5d1ddb6588c80cead9eadb5.7".to_owned()
                ),
                (
                    0x1012a0,
                    0x10,
                    "modload_test_kernel::faults::report".to_owned()
                ),
                (
                    0x1012b0,
                    0x10,
                    "<T as core::fmt::Debug>::fmt (.keep)".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn the_table_layout_is_what_the_kernel_reads() {
        let table =
            encode(&[(0x1000, 0x10, "ab".to_owned()), (0x1010, 4, "c".to_owned())]).unwrap();
        let mut want = b"KSYM".to_vec();
        want.extend_from_slice(&2u32.to_le_bytes());
        want.extend_from_slice(&3u32.to_le_bytes());
        want.extend_from_slice(&0x1000u64.to_le_bytes());
        want.extend_from_slice(&0x10u32.to_le_bytes());
        want.extend_from_slice(&0u32.to_le_bytes());
        want.extend_from_slice(&0x1010u64.to_le_bytes());
        want.extend_from_slice(&4u32.to_le_bytes());
        want.extend_from_slice(&2u32.to_le_bytes());
        want.extend_from_slice(b"abc");
        assert_eq!(table, want);
    }

    #[test]
    fn a_moved_symbol_fails_the_comparison() {
        let with_table =
            format!("{NM}0000000000200000 0000000000000000 R __kernel_symbols_start\n");
        let first = parse_nm(&with_table).unwrap();
        let mut second = first.clone();
        assert_eq!(same_addresses(&first, &second), Ok(()));
        // The table's own symbols may differ...
        second.push(NmSymbol {
            address: 0x200010,
            size: 4,
            kind: 'R',
            name: "table".to_owned(),
        });
        assert_eq!(same_addresses(&first, &second), Ok(()));
        // ...anything before it may not.
        second[2].address += 0x10;
        let error = same_addresses(&first, &second).unwrap_err();
        assert!(error.contains("drop_in_place"), "{error}");
    }
}
