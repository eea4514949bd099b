//! The Linux host backend: region memory from `mmap`, permissions through `mprotect`.

use std::io;

use modload::{MemoryProtection, Permissions, ProtectionError, Region, RegionError, VirtAddr};

/// Page permissions through `mprotect`, and instruction-cache maintenance
/// through [`crate::cache`] (a no-op on x86-64, which keeps instruction fetch
/// coherent with stores).
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

    fn sync_instruction_cache(&self, start: VirtAddr, len: u64) {
        // x86-64 snoops stores into the instruction stream: nothing to do.
        // Elsewhere only ranges this process has mapped can be maintained; code
        // linked for another address is synced by whoever copies it there.
        if cfg!(target_arch = "x86_64") || !is_mapped(start, len) {
            return;
        }
        // SAFETY: the range is mapped in this process (checked just above).
        unsafe { crate::cache::sync_instruction_cache(start.as_u64(), len) };
    }
}

/// Whether every page of `[start, start + len)` is mapped in this process.
/// `msync` with no flags fails with `ENOMEM` on an unmapped page and does
/// nothing else.
fn is_mapped(start: VirtAddr, len: u64) -> bool {
    let page = start.as_u64() & !0xfff;
    let (Ok(address), Ok(len)) = (
        usize::try_from(page),
        usize::try_from(len.saturating_add(start.as_u64() - page)),
    ) else {
        return false;
    };
    // SAFETY: msync without MS_SYNC/MS_INVALIDATE only checks the range; an
    // unmapped range is an error return, not undefined behaviour.
    unsafe { libc::msync(address as *mut libc::c_void, len, libc::MS_ASYNC) == 0 }
}

/// The protection backend as a `'static` reference, as loaders want it.
pub static HOST_PROTECTION: HostProtection = HostProtection;

/// Where to ask the kernel to put a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Wherever `mmap` likes: in practice next to the shared libraries, so
    /// modules reach libc's data with 32-bit PC-relative references.
    Anywhere,
    /// The first free range at or above this address, searching upward in steps
    /// of the region's size, below 4 GiB. Below 2 GiB, code compiled `-fno-pic`
    /// for the small code model (32-bit absolute addresses) can run.
    Near(u64),
}

/// Maps `size` bytes of fresh read-write memory, never unmapped, and hands it
/// to `region`.
pub fn map_region(region: &'static Region, size: usize, placement: Placement) -> io::Result<()> {
    let memory = match placement {
        Placement::Anywhere => map_anonymous(std::ptr::null_mut(), size)?,
        Placement::Near(start) => map_near(start, size)?,
    };
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

/// `MAP_FIXED_NOREPLACE` fails where anything is mapped already, so the search
/// never disturbs another mapping (a plain hint is silently ignored instead).
fn map_near(start: u64, size: usize) -> io::Result<*mut libc::c_void> {
    let step = (size as u64).max(1 << 20);
    let mut address = start;
    while address.saturating_add(size as u64) <= 1 << 32 {
        match map_anonymous(address as usize as *mut libc::c_void, size) {
            Ok(memory) => return Ok(memory),
            Err(error) if error.raw_os_error() == Some(libc::EEXIST) => address += step,
            Err(error) => return Err(error),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::OutOfMemory,
        "no free range below 4 GiB",
    ))
}

/// An anonymous read-write mapping; with a non-null `at`, exactly there or an error.
fn map_anonymous(at: *mut libc::c_void, size: usize) -> io::Result<*mut libc::c_void> {
    let fixed = if at.is_null() {
        0
    } else {
        libc::MAP_FIXED_NOREPLACE
    };
    // SAFETY: an anonymous private mapping touches no existing memory, and
    // MAP_FIXED_NOREPLACE refuses (EEXIST) rather than replace a mapping.
    let memory = unsafe {
        libc::mmap(
            at,
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | fixed,
            -1,
            0,
        )
    };
    if memory == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    if !at.is_null() && memory != at {
        // Kernels before 4.17 treat the flag as a hint; do not keep a stray mapping.
        // SAFETY: `memory` is the mapping just created, used by nothing.
        unsafe { libc::munmap(memory, size) };
        return Err(io::Error::from_raw_os_error(libc::EEXIST));
    }
    Ok(memory)
}

/// A new region in leaked memory, for tests and tools that need several.
pub fn new_region(size: usize, placement: Placement) -> io::Result<&'static Region> {
    let region: &'static Region = Box::leak(Box::new(Region::new()));
    map_region(region, size, placement)?;
    Ok(region)
}
