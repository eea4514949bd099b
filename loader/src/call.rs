//! The one place where the loader enters module code or turns an address into
//! a function pointer.

use core::mem::size_of;

use crate::addr::VirtAddr;

/// Calls the `extern "C" fn()` at `address`.
///
/// # Safety
/// `address` must be the entry of an `extern "C" fn()` in code that is mapped
/// executable at that address, and calling it now must be sound.
pub(crate) unsafe fn call_void(address: VirtAddr) {
    if let Ok(function) = usize::try_from(address.as_u64()) {
        // SAFETY: the caller guarantees `address` is the entry of an
        // `extern "C" fn()`; `usize` and function pointers have the same size.
        let function: extern "C" fn() =
            unsafe { core::mem::transmute::<usize, extern "C" fn()>(function) };
        function();
    }
}

/// Reinterprets `address` as a value of type `F` (a function pointer type).
/// Returns `None` when `F` is not pointer-sized.
///
/// # Safety
/// `F` must be a function pointer (or pointer) type whose signature matches the
/// code or data at `address`.
pub(crate) unsafe fn address_as<F: Copy>(address: VirtAddr) -> Option<F> {
    if size_of::<F>() != size_of::<usize>() {
        return None;
    }
    let raw = usize::try_from(address.as_u64()).ok()?;
    // SAFETY: `F` is pointer-sized (checked above) and the caller guarantees it
    // is a pointer type valid for this address.
    Some(unsafe { core::mem::transmute_copy::<usize, F>(&raw) })
}
