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
/// # The calls the loader makes
///
/// Every range passed to [`protect`](MemoryProtection::protect) lies in the
/// loader's [`Region`](crate::Region), and its `start` and `len` are
/// multiples of the region's [`PageSize`](crate::PageSize) (more than 0).
/// The loader never asks for writable and executable at once. Region memory
/// rests read-write: [`Region::init`](crate::Region::init) takes it so, and
/// the loader makes a module's pages read-write again before the region
/// hands them out another time. So:
///
/// - **Loading** (at [`Relocated::finalize`](crate::Relocated::finalize)):
///   one call per non-empty code and read-only segment, read+execute and
///   read-only. Writable data pages are never passed: they stay read-write.
///   [Grouped](crate::Loader::grouped) modules make the same calls, one per
///   segment's pages. [Packed](crate::Loader::packed) modules call at
///   [`Planned::allocate`](crate::Planned::allocate) instead, for the pages a
///   new piece is the first to occupy (pages shared with loaded modules have
///   their permissions already).
/// - **Unloading** (or dropping a module that failed after finalize): one
///   call that makes the module's whole block read-write again (grouped: one
///   per protected segment; packed: one per run of pages no module uses any
///   more).
/// - **Binding a pending import** ([`Loader::late_binding`](crate::Loader::late_binding)):
///   the one page of the slot, read-write, then read-only again.
///
/// # When a call fails
///
/// A failed `protect` fails the load with
/// [`ErrorKind::Protection`](crate::ErrorKind::Protection), carrying the
/// platform's code, after the loader asked for read-write again on every
/// page it had asked to change (the whole block for a contiguous module).
/// If that restore fails too (a contiguous module's block is tried once
/// more as the failed load's memory goes), or unloading's does, the pages' permissions
/// are unknown, so the region never hands them out again: they are counted
/// in [`RegionUsage::lost`](crate::RegionUsage::lost), and the rest of the
/// region goes on serving. A backend must therefore leave a range either
/// fully changed or report the failure. When re-protecting a late-bound
/// slot's page fails, the import stays pending (its page may stay
/// read-write: it holds no code).
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
