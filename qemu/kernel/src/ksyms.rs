//! The kernel's own function names, like Linux's kallsyms: a sorted table the
//! runner writes from the linked kernel (format in
//! `qemu/runner/src/ksyms.rs`) and links into `.kernel_symbols`, the last
//! section of the image. Lookups allocate nothing and never panic, so fault
//! handlers use them.

/// The table, placed by the linker script between the two markers below.
/// Never read through this static: the compiler could fold reads of bytes it
/// knows, and the code must not depend on the table, or adding it would move
/// the functions it names.
#[used]
#[link_section = ".kernel_symbols"]
static TABLE: [u8; include_bytes!(env!("KERNEL_SYMBOL_TABLE")).len()] =
    *include_bytes!(env!("KERNEL_SYMBOL_TABLE"));

extern "C" {
    // Markers the linker script puts around `.kernel_symbols`; only their addresses count.
    static __kernel_symbols_start: u8;
    static __kernel_symbols_end: u8;
}

const HEADER: usize = 12;
const ENTRY: usize = 16;

/// A kernel function containing an address.
#[derive(Clone, Copy, Debug)]
pub struct KernelSymbol {
    /// The demangled name, without the hash.
    pub name: &'static str,
    /// The address minus the function's start.
    pub offset: u64,
}

fn bytes() -> &'static [u8] {
    let start = core::ptr::addr_of!(__kernel_symbols_start);
    let end = core::ptr::addr_of!(__kernel_symbols_end);
    let len = (end as usize).saturating_sub(start as usize);
    // SAFETY: the linker script brackets `.kernel_symbols` with these markers;
    // the section is read-only, mapped by the architecture layer for the
    // kernel's whole life, and holds only the table.
    unsafe { core::slice::from_raw_parts(start, len) }
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let field = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(field.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let field = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(field.try_into().ok()?))
}

/// The table's parts: entries and names, checked against its length.
fn table() -> Option<(&'static [u8], &'static [u8])> {
    let bytes = bytes();
    if bytes.get(..4)? != b"KSYM" {
        return None;
    }
    let count = u32_at(bytes, 4)? as usize;
    let names_len = u32_at(bytes, 8)? as usize;
    let entries_end = HEADER.checked_add(count.checked_mul(ENTRY)?)?;
    let entries = bytes.get(HEADER..entries_end)?;
    let names = bytes.get(entries_end..entries_end.checked_add(names_len)?)?;
    Some((entries, names))
}

/// How many functions the table names.
pub fn count() -> usize {
    table().map_or(0, |(entries, _)| entries.len() / ENTRY)
}

/// The kernel function containing `address`: the last one starting at or
/// before it, if `address` is within its size (or, for a symbol of size 0,
/// before the next one). O(log n).
pub fn lookup(address: u64) -> Option<KernelSymbol> {
    let (entries, names) = table()?;
    let count = entries.len() / ENTRY;
    let start_of = |index: usize| u64_at(entries, index * ENTRY);
    // The number of entries starting at or before `address`.
    let (mut low, mut high) = (0, count);
    while low < high {
        let middle = low + (high - low) / 2;
        if start_of(middle)? <= address {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    let index = low.checked_sub(1)?;
    let entry = index * ENTRY;
    let start = u64_at(entries, entry)?;
    let size = u64::from(u32_at(entries, entry + 8)?);
    let offset = address - start;
    let next = if index + 1 < count {
        start_of(index + 1)
    } else {
        None
    };
    let inside = if size > 0 {
        offset < size
    } else {
        next.is_some_and(|next| address < next)
    };
    if !inside {
        return None;
    }
    let name_start = u32_at(entries, entry + 12)? as usize;
    let name_end = if index + 1 < count {
        u32_at(entries, entry + ENTRY + 12)? as usize
    } else {
        names.len()
    };
    let name = core::str::from_utf8(names.get(name_start..name_end)?).ok()?;
    Some(KernelSymbol { name, offset })
}
