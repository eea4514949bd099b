//! The Linux host backend: region memory from `mmap`, permissions through `mprotect`,
//! and, for packed placement, a region on a `memfd` with a [`MemfdWriter`] that
//! writes into its read-only and executable pages through temporary windows.

use std::io;

use modload::{
    MemoryProtection, PageSize, PageWriter, Permissions, ProtectionError, Region, VirtAddr,
};

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
/// nothing else. It wants an address aligned to the kernel's page size, which
/// on AArch64 may be 16 or 64 KiB: a 4 KiB guess would fail with `EINVAL`
/// and silently skip the cache maintenance.
fn is_mapped(start: VirtAddr, len: u64) -> bool {
    let page_size = page_size().unwrap_or(4096);
    let page = start.as_u64() & !(page_size - 1);
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

/// Resolves names from this process and the shared libraries it has loaded
/// (libc, libm, ...), through `dlsym(RTLD_DEFAULT, name)`: for
/// [`Loader::with_fallback`](modload::Loader::with_fallback), so that
/// modules may call what a program linked with `cc` could, such as
/// `__stack_chk_fail`, `memcpy` or `printf`, without an export for each.
///
/// ```no_run
/// use modload::{Loader, Namespace, Region};
/// use modload_platform::host::{map_region, Placement, ProcessSymbols, HOST_PROTECTION};
///
/// static REGION: Region = Region::new();
/// static NAMESPACE: Namespace = Namespace::new();
///
/// # fn main() -> std::io::Result<()> {
/// map_region(&REGION, 1 << 20, Placement::Anywhere)?;
/// let loader = Loader::new(&NAMESPACE, &REGION, &HOST_PROTECTION).with_fallback(&ProcessSymbols);
/// # let _ = loader;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessSymbols;

impl modload::SymbolResolver for ProcessSymbols {
    fn resolve(&self, name: &str) -> Option<VirtAddr> {
        let name = std::ffi::CString::new(name).ok()?;
        // SAFETY: `name` is NUL-terminated; RTLD_DEFAULT searches the
        // process's global scope, and dlsym takes its own lock.
        let address = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        (!address.is_null()).then(|| VirtAddr::from_ptr(address.cast_const()))
    }
}

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

/// The size of this host's pages, the granule `mprotect` works in
/// (`sysconf(_SC_PAGESIZE)`): what a region on this host is protected in
/// unless a larger page size is asked for.
pub fn host_page_size() -> io::Result<PageSize> {
    let bytes = page_size()?;
    PageSize::new(bytes).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            format!("this kernel's pages are {bytes} bytes, not 4, 16 or 64 KiB"),
        )
    })
}

/// Maps `size` bytes of fresh read-write memory, never unmapped, and hands it
/// to `region`, protected in the host's pages ([`host_page_size`]).
pub fn map_region(region: &'static Region, size: usize, placement: Placement) -> io::Result<()> {
    map_region_with_page_size(region, size, placement, host_page_size()?)
}

/// [`map_region`] for a region protected in pages of `page`, which must be a
/// multiple of the host's (a 4 KiB host can protect 16 or 64 KiB pages, as
/// runs of its own): the mapping is `page`-aligned.
pub fn map_region_with_page_size(
    region: &'static Region,
    size: usize,
    placement: Placement,
    page: PageSize,
) -> io::Result<()> {
    let mapped = mapped_size(size, page)?;
    let memory = map_placed(mapped, placement, None)?;
    give_to(region, memory, size, page).inspect_err(|_| {
        // SAFETY: the mapping is fresh, and the region refused it, so nothing
        // refers to it: unmapping it leaks nothing and breaks nothing.
        unsafe { libc::munmap(memory, mapped) };
    })
}

/// Bytes to map for a region of `size` bytes in pages of `page`: room
/// beyond it (see [`alignment_slack`]) for its `page`-aligned start.
fn mapped_size(size: usize, page: PageSize) -> io::Result<usize> {
    size.checked_add(alignment_slack(page)?)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "region too large"))
}

/// Bytes to map beyond a region's size so that a mapping, aligned to the
/// host's pages, holds `page`-aligned memory; an error if the host cannot
/// protect pages of `page`.
fn alignment_slack(page: PageSize) -> io::Result<usize> {
    let host = page_size()?;
    if page.bytes() < host || !page.bytes().is_multiple_of(host) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{page} pages cannot be protected on a host with {host}-byte pages"),
        ));
    }
    usize::try_from(page.bytes() - host)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "page too large"))
}

/// Hands `size` bytes of a fresh mapping, from its first `page`-aligned
/// byte (which [`alignment_slack`] left room for), to `region`.
fn give_to(
    region: &'static Region,
    memory: *mut libc::c_void,
    size: usize,
    page: PageSize,
) -> io::Result<()> {
    let address = memory as usize as u64;
    let skip = page.alignment().align_up(address).unwrap_or(address) - address;
    let start = memory.cast::<u8>().wrapping_add(skip as usize);
    // SAFETY: `[start, start + size)` lies in the mapping (the slack covers
    // `skip`), which is fresh, readable, writable, `page`-aligned from
    // `start`, never unmapped (so valid for 'static) and known to nothing but
    // this region.
    unsafe { region.init_with_page_size(start, size, page) }.map_err(|error| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("mapping unusable as a region: {error}"),
        )
    })
}

/// A fresh read-write mapping of `size` bytes where `placement` says:
/// anonymous, or of `fd` from offset 0, shared.
fn map_placed(
    size: usize,
    placement: Placement,
    fd: Option<libc::c_int>,
) -> io::Result<*mut libc::c_void> {
    match placement {
        Placement::Anywhere => map_fresh(std::ptr::null_mut(), size, fd),
        Placement::Near(start) => map_near(start, size, fd),
    }
}

/// `MAP_FIXED_NOREPLACE` fails where anything is mapped already, so the search
/// never disturbs another mapping (a plain hint is silently ignored instead).
fn map_near(start: u64, size: usize, fd: Option<libc::c_int>) -> io::Result<*mut libc::c_void> {
    let step = (size as u64).max(1 << 20);
    let mut address = start;
    while address.saturating_add(size as u64) <= 1 << 32 {
        match map_fresh(address as usize as *mut libc::c_void, size, fd) {
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

/// A read-write mapping, anonymous and private or of `fd` and shared; with a
/// non-null `at`, exactly there or an error.
fn map_fresh(
    at: *mut libc::c_void,
    size: usize,
    fd: Option<libc::c_int>,
) -> io::Result<*mut libc::c_void> {
    let fixed = if at.is_null() {
        0
    } else {
        libc::MAP_FIXED_NOREPLACE
    };
    let (kind, fd) = match fd {
        Some(fd) => (libc::MAP_SHARED, fd),
        None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1),
    };
    // SAFETY: a new mapping touches no existing memory (MAP_FIXED_NOREPLACE
    // refuses, with EEXIST, rather than replace a mapping); a file mapping
    // of a bad descriptor or range fails with an errno.
    let memory = unsafe {
        libc::mmap(
            at,
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            kind | fixed,
            fd,
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

/// A new region in leaked memory, for tests and tools that need several,
/// protected in the host's pages.
pub fn new_region(size: usize, placement: Placement) -> io::Result<&'static Region> {
    new_region_with_page_size(size, placement, host_page_size()?)
}

/// [`new_region`] protected in pages of `page` (see
/// [`map_region_with_page_size`]).
pub fn new_region_with_page_size(
    size: usize,
    placement: Placement,
    page: PageSize,
) -> io::Result<&'static Region> {
    let region: &'static Region = Box::leak(Box::new(Region::new()));
    map_region_with_page_size(region, size, placement, page)?;
    Ok(region)
}

/// A region for packed placement and the writer that fills its pages.
#[derive(Clone, Copy)]
pub struct PackedRegion {
    /// The region, backed by a `memfd`.
    pub region: &'static Region,
    /// Writes into the region's pages through the `memfd` (`pwrite`).
    pub writer: &'static MemfdWriter,
    /// Writes into the region's pages through temporary windows (`mmap`,
    /// copy, `munmap`): the other path, kept to compare their costs.
    pub window_writer: &'static MemfdWriter,
}

/// A new region for packed placement ([`modload::Loader::packed`]) in leaked
/// memory: `size` bytes of a `memfd` mapped shared, read-write, where
/// `placement` says, and never unmapped, with the [`MemfdWriter`]s that write
/// into its pages once they are read-only or executable.
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// use modload::{Loader, Namespace};
/// use modload_platform::host::{new_packed_region, Placement, HOST_PROTECTION};
///
/// let packed = new_packed_region(16 << 20, Placement::Anywhere)?;
/// let namespace: &'static Namespace = Box::leak(Box::new(Namespace::new()));
/// let loader = Loader::new(namespace, packed.region, &HOST_PROTECTION).packed(packed.writer);
/// # let _ = loader;
/// # Ok(())
/// # }
/// ```
pub fn new_packed_region(size: usize, placement: Placement) -> io::Result<PackedRegion> {
    new_packed_region_with_page_size(size, placement, host_page_size()?)
}

/// [`new_packed_region`] protected in pages of `page`, which must be a
/// multiple of the host's (see [`map_region_with_page_size`]).
pub fn new_packed_region_with_page_size(
    size: usize,
    placement: Placement,
    page: PageSize,
) -> io::Result<PackedRegion> {
    let mapped = mapped_size(size, page)?;
    let fd = memfd(mapped)?;
    let memory = match map_placed(mapped, placement, Some(fd)) {
        Ok(memory) => memory,
        Err(error) => {
            // SAFETY: `fd` is the descriptor just created, used by nothing else.
            unsafe { libc::close(fd) };
            return Err(error);
        }
    };
    let region: &'static Region = Box::leak(Box::new(Region::new()));
    // The descriptor stays open with the mapping: both live as long as the
    // process. The writers reach the whole mapping, from its file offset 0.
    give_to(region, memory, size, page)?;
    let writer = MemfdWriter {
        fd,
        base: VirtAddr::from_ptr(memory.cast::<u8>().cast_const()).as_u64(),
        size: mapped as u64,
        page: page_size()?,
        path: WritePath::File,
    };
    let window_writer = MemfdWriter {
        path: WritePath::Window,
        ..writer
    };
    Ok(PackedRegion {
        region,
        writer: Box::leak(Box::new(writer)),
        window_writer: Box::leak(Box::new(window_writer)),
    })
}

/// A `memfd` of `size` bytes that may be mapped executable.
fn memfd(size: usize) -> io::Result<libc::c_int> {
    let name = c"modload-region";
    // MFD_EXEC (Linux 6.3) asks for an executable memfd even where the
    // `vm.memfd_noexec` sysctl would make it non-executable by default;
    // older kernels refuse the flag, and their memfds are executable anyway.
    let mut fd = -1;
    for flags in [libc::MFD_CLOEXEC | libc::MFD_EXEC, libc::MFD_CLOEXEC] {
        // SAFETY: `name` is NUL-terminated; memfd_create creates a new
        // descriptor and touches no memory of ours.
        fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
        if fd >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
            break;
        }
    }
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let length = libc::off_t::try_from(size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "region too large"))?;
    // SAFETY: `fd` is the memfd just created; ftruncate only sizes it.
    if unsafe { libc::ftruncate(fd, length) } != 0 {
        let error = io::Error::last_os_error();
        // SAFETY: as above; nothing else uses `fd`.
        unsafe { libc::close(fd) };
        return Err(error);
    }
    Ok(fd)
}

fn page_size() -> io::Result<u64> {
    // SAFETY: sysconf reads a configuration value and touches no memory.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page)
        .ok()
        .filter(|page| page.is_power_of_two())
        .ok_or_else(|| io::Error::other("no page size"))
}

/// Writes into a packed region's pages without any writable mapping of them
/// that code could run from: the mapping modules run from keeps its
/// read+execute (or read-only) permissions throughout, so no mapping is ever
/// writable and executable, and no writable view of loaded code outlives the
/// write. Two paths, both through the region's `memfd`:
///
/// - **`pwrite` to the `memfd`** (the [`PackedRegion::writer`]): the kernel
///   copies the bytes into the file's pages, which are the very pages the
///   region maps (shared), so every mapping sees them at once. No writable
///   mapping of the pages exists in the process at any moment, not even a
///   temporary one, and no TLB entry has to be shot down: one system call per
///   write.
/// - **A temporary window** (the [`PackedRegion::window_writer`], what
///   `text_poke` does in the Linux kernel with a private `mm`): the pages'
///   range of the `memfd` is mapped again, read-write and never executable,
///   at an address the kernel picks, the bytes are copied, and the window is
///   unmapped. It costs an `mmap`, page faults on the window and a `munmap`
///   with its TLB shootdown per write: measured slower than `pwrite` (see
///   `docs/PERFORMANCE.md`, section 4), so it is kept only to compare.
///
/// Not chosen: a permanent non-executable alias of the whole region (writes
/// would be plain copies, but every loaded module's code would stay writable
/// at a second address for as long as it is loaded, giving up most of what
/// W^X protects against).
#[derive(Clone, Copy, Debug)]
pub struct MemfdWriter {
    fd: libc::c_int,
    /// Where the region's mapping starts.
    base: u64,
    size: u64,
    page: u64,
    path: WritePath,
}

/// How a [`MemfdWriter`] reaches the pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WritePath {
    /// `pwrite` at the pages' file offset.
    File,
    /// A temporary shared read-write mapping of the pages.
    Window,
}

impl MemfdWriter {
    /// `pwrite`s `bytes` at `offset` of the `memfd`, in as many calls as it takes.
    ///
    /// # Safety
    /// As [`PageWriter::write`]: the bytes written belong to the caller alone.
    unsafe fn write_file(&self, offset: u64, bytes: &[u8]) -> Result<(), ProtectionError> {
        let mut done = 0usize;
        while let Some(rest) = bytes.get(done..).filter(|rest| !rest.is_empty()) {
            let at = libc::off_t::try_from(offset.saturating_add(done as u64))
                .map_err(|_| ProtectionError { code: libc::EINVAL })?;
            // SAFETY: `rest` is a live slice of `rest.len()` readable bytes;
            // pwrite reads them and writes the file, touching no memory of ours.
            let written = unsafe { libc::pwrite(self.fd, rest.as_ptr().cast(), rest.len(), at) };
            match usize::try_from(written) {
                Ok(0) => return Err(ProtectionError { code: libc::EIO }),
                Ok(count) => done = done.saturating_add(count),
                Err(_) => {
                    let code = io::Error::last_os_error().raw_os_error().unwrap_or(-1);
                    if code != libc::EINTR {
                        return Err(ProtectionError { code });
                    }
                }
            }
        }
        Ok(())
    }

    /// Maps the pages around `[start, end)` read-write at a new address,
    /// copies `bytes` there and unmaps them.
    ///
    /// # Safety
    /// As [`PageWriter::write`], and `[start, end)` lies in the region with
    /// `end - start == bytes.len()`.
    unsafe fn write_window(
        &self,
        start: u64,
        end: u64,
        bytes: &[u8],
    ) -> Result<(), ProtectionError> {
        let invalid = ProtectionError { code: libc::EINVAL };
        let mask = self.page - 1;
        let first = start & !mask;
        let last = end.checked_add(mask).ok_or(invalid)? & !mask;
        let window_len = usize::try_from(last - first).map_err(|_| invalid)?;
        let file_offset = libc::off_t::try_from(first - self.base).map_err(|_| invalid)?;
        // SAFETY: a new shared mapping of our own memfd, where the kernel
        // chooses: it replaces nothing. Read-write, never executable.
        let window = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                window_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.fd,
                file_offset,
            )
        };
        if window == libc::MAP_FAILED {
            return Err(ProtectionError {
                code: io::Error::last_os_error().raw_os_error().unwrap_or(-1),
            });
        }
        let within = (start - first) as usize;
        // SAFETY: the window maps `[first, last)` of the region's memory, which
        // contains `[start, end)`, so the destination is `bytes.len()` writable
        // bytes inside it; the caller guarantees the range is its own and not
        // in use, and `bytes` cannot overlap a mapping created just now.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                window.cast::<u8>().add(within),
                bytes.len(),
            )
        };
        // SAFETY: `window` is the mapping created above, used by nothing else.
        let unmapped = unsafe { libc::munmap(window, window_len) };
        if unmapped != 0 {
            return Err(ProtectionError {
                code: io::Error::last_os_error().raw_os_error().unwrap_or(-1),
            });
        }
        Ok(())
    }
}

impl PageWriter for MemfdWriter {
    unsafe fn write(&self, target: VirtAddr, bytes: &[u8]) -> Result<(), ProtectionError> {
        let invalid = ProtectionError { code: libc::EINVAL };
        if bytes.is_empty() {
            return Ok(());
        }
        let start = target.as_u64();
        let end = start.checked_add(bytes.len() as u64).ok_or(invalid)?;
        let region_end = self.base.saturating_add(self.size);
        if start < self.base || end > region_end {
            return Err(invalid);
        }
        match self.path {
            // SAFETY: forwarded from this function's contract; the range lies
            // in the region (checked above), at this offset of the memfd.
            WritePath::File => unsafe { self.write_file(start - self.base, bytes) },
            // SAFETY: as above, and `end - start` is `bytes.len()`.
            WritePath::Window => unsafe { self.write_window(start, end, bytes) },
        }
    }
}
