//! Unwind tables of a module: their entries for code not loaded.

use alloc::vec::Vec;

use crate::arch::data_width;
use crate::arch::Machine;
use crate::object::RelocationSection;

/// Gives every FDE of an unwind table whose function was not loaded (its
/// `pc_begin` names a symbol with no address) an empty range: zeroes the
/// `pc_range` that follows `pc_begin`, in the same encoding. `data` is the
/// table as in the file (its lengths are never relocated); `bytes` is the
/// relocated table.
pub(crate) fn empty_discarded_fdes(
    machine: Machine,
    data: &[u8],
    relocations: &RelocationSection<'_>,
    values: &[Option<u64>],
    bytes: &mut [u8],
) {
    let word = |at: usize| {
        data.get(at..)
            .and_then(<[u8]>::first_chunk::<4>)
            .map(|word| u32::from_le_bytes(*word))
    };
    let mut pc_begins = Vec::new();
    let mut at = 0usize;
    // Each entry: a 4-byte length (0xffffffff: 64-bit lengths, not used for
    // .eh_frame by any compiler here, so the walk stops), then the CIE
    // pointer, 0 in a CIE; an FDE's pc_begin follows it.
    while let Some(length) = word(at).filter(|length| *length != 0 && *length != u32::MAX) {
        if word(at.saturating_add(4)).is_some_and(|cie_pointer| cie_pointer != 0) {
            pc_begins.push(at.saturating_add(8) as u64);
        }
        at = at.saturating_add(4).saturating_add(length as usize);
    }
    for entry in relocations.entries() {
        let discarded = values.get(entry.r_sym()).is_some_and(Option::is_none);
        if !discarded || pc_begins.binary_search(&entry.r_offset).is_err() {
            continue;
        }
        let width = data_width(machine, entry.r_type);
        let range = usize::try_from(entry.r_offset)
            .ok()
            .and_then(|start| start.checked_add(width))
            .and_then(|start| Some(start..start.checked_add(width)?));
        if let Some(range_bytes) = range.and_then(|range| bytes.get_mut(range)) {
            range_bytes.fill(0);
        }
    }
}
