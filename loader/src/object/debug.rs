//! The object a debugger reads for a loaded module: the module's own ELF
//! bytes with each loaded section's address set to where it runs. GDB's JIT
//! interface takes such a relocatable object, reads its symbols and DWARF,
//! and applies the debug sections' relocations against those addresses.

use alloc::vec::Vec;

use crate::error::DebugObjectError;

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
    let table = u64::from_le_bytes(read(elf, 0x28).ok_or(DebugObjectError::NotAnObject)?);
    let entry = u16::from_le_bytes(read(elf, 0x3a).ok_or(DebugObjectError::NotAnObject)?);
    let count = u16::from_le_bytes(read(elf, 0x3c).ok_or(DebugObjectError::NotAnObject)?);
    let table = usize::try_from(table).map_err(|_| DebugObjectError::BadSectionHeaders)?;
    let end = usize::from(count)
        .checked_mul(SECTION_HEADER_SIZE)
        .and_then(|size| size.checked_add(table))
        .filter(|end| *end <= elf.len());
    if usize::from(entry) != SECTION_HEADER_SIZE || end.is_none() {
        return Err(DebugObjectError::BadSectionHeaders);
    }
    let mut copy = elf.to_vec();
    for (index, address, size) in sections {
        let mismatch = DebugObjectError::NotTheLoadedObject { section: index };
        // Below `count`, so inside the table checked above.
        let at = (index < u32::from(count))
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
