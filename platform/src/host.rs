//! The Linux host backend: region memory from `mmap`, permissions through `mprotect`.

use std::io;

use modload::{MemoryProtection, Permissions, ProtectionError, Region, RegionError, VirtAddr};

/// Page permissions through `mprotect`. x86-64 keeps instruction fetch coherent
/// with stores, so instruction-cache maintenance is a no-op there.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostProtection;

impl MemoryProtection for HostProtection {
    fn protect(
        &self,
        start: VirtAddr,
        len: u64,
        permissions: Permissions,
    ) -> Result<(), ProtectionError> {
        if permissions.is_writable_and_executable() {
            return Err(ProtectionError { code: libc::EPERM });
        }
        let mut flags = libc::PROT_NONE;
        for (permission, flag) in [
            (Permissions::READ, libc::PROT_READ),
            (Permissions::WRITE, libc::PROT_WRITE),
            (Permissions::EXECUTE, libc::PROT_EXEC),
        ] {
            if permissions.contains(permission) {
                flags |= flag;
            }
        }
        let address =
            usize::try_from(start.as_u64()).map_err(|_| ProtectionError { code: libc::EINVAL })?;
        let len = usize::try_from(len).map_err(|_| ProtectionError { code: libc::EINVAL })?;
        // SAFETY: mprotect changes only permissions; the loader passes page-aligned
        // ranges of region memory it owns, and the kernel checks the range itself
        // (an unmapped or misaligned range fails with an errno, it is not UB).
        let result = unsafe { libc::mprotect(address as *mut libc::c_void, len, flags) };
        if result == 0 {
            Ok(())
        } else {
            Err(ProtectionError {
                code: io::Error::last_os_error().raw_os_error().unwrap_or(-1),
            })
        }
    }

    fn sync_instruction_cache(&self, _start: VirtAddr, _len: u64) {
        // x86-64 snoops stores into the instruction stream; nothing to do.
        // On an AArch64 host this would need `dc cvau`/`ic ivau`; the kernel
        // backends do that, and this host backend is built for x86-64 only.
    }
}

/// The protection backend as a `'static` reference, as loaders want it.
pub static HOST_PROTECTION: HostProtection = HostProtection;

/// Where to ask the kernel to put a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Wherever `mmap` likes: in practice next to the shared libraries, so
    /// modules reach libc's data with 32-bit PC-relative references.
    Anywhere,
    /// At or above this address, which must be free. Below 2 GiB, code compiled
    /// `-fno-pic` for the small code model (32-bit absolute addresses) can run.
    Near(u64),
}

/// Maps `size` bytes of fresh read-write memory, never unmapped, and hands it
/// to `region`.
pub fn map_region(region: &'static Region, size: usize, placement: Placement) -> io::Result<()> {
    let hint = match placement {
        Placement::Anywhere => std::ptr::null_mut(),
        Placement::Near(address) => address as usize as *mut libc::c_void,
    };
    // SAFETY: an anonymous private mapping touches no existing memory; with a
    // hint and no MAP_FIXED the kernel never replaces an existing mapping.
    let memory = unsafe {
        libc::mmap(
            hint,
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if memory == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the mapping is fresh, readable, writable, page-aligned, never
    // unmapped (so valid for 'static) and known to nothing but this region.
    unsafe { region.init(memory.cast(), size) }.map_err(|error| match error {
        RegionError::AlreadyInitialized => {
            io::Error::new(io::ErrorKind::AlreadyExists, "region already has memory")
        }
        RegionError::UnusableMemory => {
            io::Error::new(io::ErrorKind::InvalidInput, "mapping unusable as a region")
        }
    })
}

/// A new region in leaked memory, for tests and tools that need several.
pub fn new_region(size: usize, placement: Placement) -> io::Result<&'static Region> {
    let region: &'static Region = Box::leak(Box::new(Region::new()));
    map_region(region, size, placement)?;
    Ok(region)
}
