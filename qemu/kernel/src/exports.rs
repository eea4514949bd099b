//! The kernel's exports: `(name, address)` entries that the `export!` macro
//! places in the `.kernel_exports` linker section. The loader reads the whole
//! section as the host namespace, so adding an export is one line next to the
//! function and nothing else.

use core::sync::atomic::{AtomicU64, Ordering};

use modload::{Namespace, VirtAddr};

/// One exported symbol.
#[repr(C)]
pub struct Export {
    /// The name modules link against.
    pub name: &'static str,
    /// The function's address.
    pub address: *const (),
}

// SAFETY: entries are written by the linker and never change; the raw pointer
// is only read as an address.
unsafe impl Sync for Export {}

/// Exports a function: `export!(kernel_print);`.
macro_rules! export {
    ($function:ident) => {
        const _: () = {
            #[used]
            #[link_section = ".kernel_exports"]
            static ENTRY: $crate::exports::Export = $crate::exports::Export {
                name: stringify!($function),
                address: $function as *const (),
            };
        };
    };
}

extern "C" {
    // Markers the linker script puts around the section; only their addresses count.
    static __kernel_exports_start: u8;
    static __kernel_exports_end: u8;
}

/// Every entry of the `.kernel_exports` section.
pub fn all() -> &'static [Export] {
    let start = core::ptr::addr_of!(__kernel_exports_start).cast::<Export>();
    let end = core::ptr::addr_of!(__kernel_exports_end).cast::<Export>();
    let count = (end as usize - start as usize) / core::mem::size_of::<Export>();
    // SAFETY: the linker script brackets the section with these two symbols,
    // and the section holds only `Export` entries placed by `export!`, each
    // aligned and initialised at link time.
    unsafe { core::slice::from_raw_parts(start, count) }
}

/// Adds every export to `namespace`; returns how many.
pub fn publish(namespace: &Namespace) -> Result<usize, &'static str> {
    let exports = all();
    for export in exports {
        namespace
            .add_host_export(export.name, VirtAddr::from_ptr(export.address))
            .map_err(|_| "duplicate kernel export")?;
    }
    Ok(exports.len())
}

/// Lines printed by modules through `kernel_print`.
pub static PRINTS: AtomicU64 = AtomicU64::new(0);
/// The counter modules bump through `kernel_counter_add`.
pub static COUNTER: AtomicU64 = AtomicU64::new(0);
/// One bit per module id whose destructor ran (`kernel_fini_note`).
pub static FINI_NOTES: AtomicU64 = AtomicU64::new(0);
/// Bytes handed out by `kernel_alloc` and not yet freed.
pub static ALLOCATED: AtomicU64 = AtomicU64::new(0);

/// Prints `len` bytes at `text` as one line.
///
/// # Safety
/// `text` must point to `len` readable bytes.
pub unsafe extern "C" fn kernel_print(text: *const u8, len: usize) {
    // SAFETY: forwarded from this function's contract.
    let bytes = unsafe { core::slice::from_raw_parts(text, len) };
    let line = core::str::from_utf8(bytes).unwrap_or("<not UTF-8>");
    PRINTS.fetch_add(1, Ordering::Relaxed);
    println!("  module says: {line}");
}
export!(kernel_print);

/// Adds `delta` to the kernel counter and returns the new value.
pub extern "C" fn kernel_counter_add(delta: u64) -> u64 {
    COUNTER
        .fetch_add(delta, Ordering::Relaxed)
        .wrapping_add(delta)
}
export!(kernel_counter_add);

/// Records that module `id`'s destructor ran.
pub extern "C" fn kernel_fini_note(id: u64) {
    FINI_NOTES.fetch_or(1u64.checked_shl(id as u32).unwrap_or(0), Ordering::Relaxed);
}
export!(kernel_fini_note);

/// Allocates from the kernel heap; null on failure.
pub extern "C" fn kernel_alloc(size: usize, align: usize) -> *mut u8 {
    match core::alloc::Layout::from_size_align(size, align) {
        Ok(layout) if size > 0 => {
            // SAFETY: the layout has a non-zero size.
            let memory = unsafe { alloc::alloc::alloc(layout) };
            if !memory.is_null() {
                ALLOCATED.fetch_add(size as u64, Ordering::Relaxed);
            }
            memory
        }
        _ => core::ptr::null_mut(),
    }
}
export!(kernel_alloc);

/// Frees what `kernel_alloc(size, align)` returned.
///
/// # Safety
/// `memory` must come from `kernel_alloc` with the same size and alignment.
pub unsafe extern "C" fn kernel_free(memory: *mut u8, size: usize, align: usize) {
    if let Ok(layout) = core::alloc::Layout::from_size_align(size, align) {
        if !memory.is_null() {
            ALLOCATED.fetch_sub(size as u64, Ordering::Relaxed);
            // SAFETY: forwarded from this function's contract.
            unsafe { alloc::alloc::dealloc(memory, layout) };
        }
    }
}
export!(kernel_free);
