//! The platform interface: page permissions and instruction-cache maintenance.
//! The `modload-platform` crate implements it for the host and for kernels.

use crate::addr::VirtAddr;
use crate::kinds::Permissions;

/// A platform's refusal, with its own error code (an errno on the host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtectionError {
    /// Platform-specific code.
    pub code: i32,
}

impl core::fmt::Display for ProtectionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "the platform refused to change page permissions (code {})",
            self.code
        )
    }
}

impl core::error::Error for ProtectionError {}

/// What the loader needs from the platform to finalize a module.
///
/// `start` and `len` are always multiples of [`Alignment::PAGE`](crate::Alignment::PAGE),
/// and the loader never asks for writable and executable at once.
pub trait MemoryProtection: Sync {
    /// Sets the permissions of `[start, start + len)`, the memory where the
    /// module's bytes are, and drops stale TLB entries for it.
    fn protect(
        &self,
        start: VirtAddr,
        len: u64,
        permissions: Permissions,
    ) -> Result<(), ProtectionError>;

    /// Makes instructions written to `[start, start + len)` visible to instruction
    /// fetch (clean the data cache, invalidate the instruction cache, barriers).
    fn sync_instruction_cache(&self, start: VirtAddr, len: u64);
}

/// A platform that changes nothing: for linking modules for another machine
/// or address, where the caller copies the bytes away and protects them there.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProtection;

impl MemoryProtection for NoProtection {
    fn protect(&self, _: VirtAddr, _: u64, _: Permissions) -> Result<(), ProtectionError> {
        Ok(())
    }

    fn sync_instruction_cache(&self, _: VirtAddr, _: u64) {}
}

/// Writes into region pages that are read-only or executable where modules
/// run from them: what packed placement ([`Loader::packed`](crate::Loader::packed))
/// needs, in the spirit of Linux's `text_poke` and its `execmem` ROX cache.
///
/// In packed mode the code of several modules shares pages. A page holding
/// finalized code stays read+execute for as long as any of it is in use, and
/// other modules may be running from it (on other cores) while a new module's
/// code is copied next to theirs. So the bytes cannot be written through the
/// mapping code runs from, not even briefly: the writer must reach the same
/// memory through another, non-executable path. Options, and what they cost:
///
/// - **Through the memory's backing object, with no mapping at all** (the
///   host's `MemfdWriter` in `modload-platform`: `pwrite` to the `memfd` the
///   region maps): no writable view of the pages exists in the address space
///   at any moment; one system call per write.
/// - **A temporary writable window** (the host's `window_writer`, and what
///   `text_poke` does with a private `mm`): map the target pages writable and
///   never executable at another address, copy, unmap. No writable view of
///   code outlives the copy; the price is a map, page faults and an unmap
///   (with its TLB shootdown) per write. A kernel without a file to write
///   through does this with a per-CPU slot in its page tables.
/// - **A permanent non-executable alias** of the whole region: writes are
///   plain copies, but every module's code is writable somewhere for as long
///   as it is loaded, which gives up much of what W^X is for.
/// - **Making the page writable in place**: breaks W^X for the code that
///   runs from it, so never done here.
///
/// The loader calls the writer only for the code and read-only classes, with
/// ranges of pieces it owns alone and that no code runs from yet; writable
/// data is copied in place, since those pages are read-write anyway.
pub trait PageWriter: Sync {
    /// Copies `bytes` to `[target, target + bytes.len())` without making any
    /// mapping both writable and executable and without changing the
    /// permissions of the mapping at `target`. Stores must be visible to
    /// other cores' loads when it returns (the caller then synchronises the
    /// instruction cache for `target`).
    ///
    /// # Safety
    /// The range must lie in memory this writer serves (its region), belong to
    /// the caller alone, and be neither executed nor referenced by anything
    /// else while the call lasts.
    unsafe fn write(&self, target: VirtAddr, bytes: &[u8]) -> Result<(), ProtectionError>;
}
