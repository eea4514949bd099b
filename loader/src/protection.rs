//! The platform interface: page permissions and instruction-cache maintenance.
//! The `modload-platform` crate implements it for the host and for kernels.

use crate::addr::VirtAddr;

bitflags::bitflags! {
    /// Access rights for a range of pages.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Permissions: u8 {
        /// Loads are allowed.
        const READ = 1;
        /// Stores are allowed.
        const WRITE = 1 << 1;
        /// Instruction fetches are allowed.
        const EXECUTE = 1 << 2;
    }
}

impl Permissions {
    /// Text: read and execute.
    pub const CODE: Permissions = Permissions::READ.union(Permissions::EXECUTE);
    /// Read-only data, the GOT and other data sealed after relocation.
    pub const READ_ONLY: Permissions = Permissions::READ;
    /// Data and bss.
    pub const READ_WRITE: Permissions = Permissions::READ.union(Permissions::WRITE);

    /// Whether these permissions would break W^X.
    pub const fn is_writable_and_executable(self) -> bool {
        self.contains(Permissions::WRITE.union(Permissions::EXECUTE))
    }
}

/// A platform's refusal, with its own error code (an errno on the host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtectionError {
    /// Platform-specific code.
    pub code: i32,
}

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
