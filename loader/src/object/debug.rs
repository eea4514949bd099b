//! The object a debugger reads for a loaded module: the module's own ELF
//! bytes with each loaded section's address set to where it runs. GDB's JIT
//! interface takes such a relocatable object, reads its symbols and DWARF,
//! and applies the debug sections' relocations against those addresses.

use alloc::vec::Vec;

use crate::error::DebugObjectError;
use crate::object::read::section_table;

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const ET_REL: u16 = 1;
const SECTION_HEADER_SIZE: usize = 64;
/// Offsets in an `Elf64_Shdr`.
const SH_ADDR: usize = 0x10;
const SH_SIZE: usize = 0x20;

fn read<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// A copy of `elf` with section `index`'s `sh_addr` set to `address` for
/// each `(index, address, size)`; the size must match, so bytes other than
/// the loaded object's are refused.
pub(crate) fn with_section_addresses(
    elf: &[u8],
    sections: impl IntoIterator<Item = (u32, u64, u64)>,
) -> Result<Vec<u8>, DebugObjectError> {
    let identity = read::<6>(elf, 0).ok_or(DebugObjectError::NotAnObject)?;
    let [m0, m1, m2, m3, class, data] = identity;
    let kind = read(elf, 16).map(u16::from_le_bytes);
    if [m0, m1, m2, m3] != *ELF_MAGIC
        || class != ELFCLASS64
        || data != ELFDATA2LSB
        || kind != Some(ET_REL)
    {
        return Err(DebugObjectError::NotAnObject);
    }
    let mut copy = elf.to_vec();
    let mut sections = sections.into_iter().peekable();
    if sections.peek().is_none() {
        // Nothing was loaded: the headers, whatever they hold, stay as they are.
        return Ok(copy);
    }
    // Read as the loader read them (the entry size is not consulted; a
    // count of 0 means section 0's size holds it).
    let (table, count) = section_table(elf).ok_or(DebugObjectError::BadSectionHeaders)?;
    let end = usize::try_from(count)
        .ok()
        .and_then(|count| count.checked_mul(SECTION_HEADER_SIZE))
        .and_then(|size| size.checked_add(table))
        .filter(|end| *end <= elf.len());
    if end.is_none() {
        return Err(DebugObjectError::BadSectionHeaders);
    }
    for (index, address, size) in sections {
        let mismatch = DebugObjectError::NotTheLoadedObject { section: index };
        // Below `count`, so inside the table checked above.
        let at = (u64::from(index) < count)
            .then(|| {
                (index as usize)
                    .checked_mul(SECTION_HEADER_SIZE)?
                    .checked_add(table)
            })
            .flatten()
            .ok_or(mismatch.clone())?;
        let recorded = read::<8>(&copy, at.saturating_add(SH_SIZE)).map(u64::from_le_bytes);
        if recorded != Some(size) {
            return Err(mismatch);
        }
        let field = at.saturating_add(SH_ADDR);
        copy.get_mut(field..field.saturating_add(8))
            .ok_or(mismatch)?
            .copy_from_slice(&address.to_le_bytes());
    }
    Ok(copy)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ELF header for a relocatable x86-64 object with `count` section
    /// headers at `table`.
    fn header(table: u64, count: u16) -> Vec<u8> {
        let mut bytes = alloc::vec![0u8; 64];
        bytes[..4].copy_from_slice(ELF_MAGIC);
        bytes[4] = ELFCLASS64;
        bytes[5] = ELFDATA2LSB;
        bytes[16..18].copy_from_slice(&ET_REL.to_le_bytes());
        bytes[0x28..0x30].copy_from_slice(&table.to_le_bytes());
        bytes[0x3c..0x3e].copy_from_slice(&count.to_le_bytes());
        bytes
    }

    #[test]
    fn patches_the_address_of_each_section_given() {
        let mut elf = header(64, 3);
        elf.resize(64 + 3 * 64, 0);
        // Section 2 is 0x30 bytes long.
        elf[64 + 2 * 64 + SH_SIZE..][..8].copy_from_slice(&0x30u64.to_le_bytes());
        let debug = with_section_addresses(&elf, [(2, 0xdead_0000, 0x30)]).unwrap();
        assert_eq!(
            &debug[64 + 2 * 64 + SH_ADDR..][..8],
            &0xdead_0000u64.to_le_bytes()
        );
        // Everything else is as it was.
        let mut unpatched = debug.clone();
        unpatched[64 + 2 * 64 + SH_ADDR..][..8].fill(0);
        assert_eq!(unpatched, elf);
        assert_eq!(
            with_section_addresses(&elf, [(2, 0x1000, 0x31)]),
            Err(DebugObjectError::NotTheLoadedObject { section: 2 })
        );
        assert_eq!(
            with_section_addresses(&elf, [(3, 0x1000, 0)]),
            Err(DebugObjectError::NotTheLoadedObject { section: 3 })
        );
    }

    #[test]
    fn headers_are_read_only_when_a_section_needs_them() {
        // A table past the end: refused only if something must be patched.
        let elf = header(0x1000, 4);
        assert_eq!(with_section_addresses(&elf, []), Ok(elf.clone()));
        assert_eq!(
            with_section_addresses(&elf, [(1, 0x1000, 0)]),
            Err(DebugObjectError::BadSectionHeaders)
        );
    }

    #[test]
    fn other_files_are_refused() {
        assert_eq!(
            with_section_addresses(b"\x7fELF", []),
            Err(DebugObjectError::NotAnObject)
        );
        let mut executable = header(64, 0);
        executable[16] = 2;
        assert_eq!(
            with_section_addresses(&executable, []),
            Err(DebugObjectError::NotAnObject)
        );
    }
}
