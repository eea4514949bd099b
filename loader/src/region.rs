//! The region: memory that modules live in, owned by a `static` rather than by
//! any loader, so loaded code outlives the loader that placed it.
//!
//! This file and `call.rs` are the only places in the crate that touch raw memory.

use core::alloc::Layout;
use core::ptr::NonNull;

use linked_list_allocator::Heap;
use spin::Mutex;

use crate::addr::VirtAddr;

/// A block of memory that module sections are allocated from.
///
/// A `Region` can live in a `static` (its constructor is `const`) and is shared
/// by every loader and module that uses it. Each module takes one contiguous
/// reservation, so a module's parts always stay within reach of each other.
///
/// ```
/// static REGION: modload::Region = modload::Region::new();
/// assert_eq!(REGION.usage().size, 0);
/// ```
pub struct Region {
    heap: Mutex<Heap>,
}

/// How much of a region is in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionUsage {
    /// Total bytes handed to the region.
    pub size: usize,
    /// Bytes in live reservations.
    pub used: usize,
    /// Bytes not reserved.
    pub free: usize,
}

/// Why a region could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionError {
    /// `init` was called on a region that already has memory.
    AlreadyInitialized,
    /// The memory is too small or its start is not page-aligned.
    UnusableMemory,
}

impl core::fmt::Display for RegionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            RegionError::AlreadyInitialized => "region already has memory",
            RegionError::UnusableMemory => "memory is too small or not page-aligned",
        })
    }
}

impl core::error::Error for RegionError {}

impl Region {
    /// An empty region; give it memory with [`Region::init`].
    pub const fn new() -> Self {
        Self {
            heap: Mutex::new(Heap::empty()),
        }
    }

    /// Hands `[start, start + size)` to the region.
    ///
    /// `start` must be page-aligned (the loader protects whole pages of it).
    ///
    /// # Safety
    /// The memory must be valid for reads and writes, stay valid for the rest of
    /// the program, and be used by nothing but this region from now on. Pages
    /// must be readable and writable when handed over.
    pub unsafe fn init(&self, start: *mut u8, size: usize) -> Result<(), RegionError> {
        let mut heap = self.heap.lock();
        if heap.size() != 0 {
            return Err(RegionError::AlreadyInitialized);
        }
        let aligned = VirtAddr::from_ptr(start)
            .as_u64()
            .is_multiple_of(crate::Alignment::PAGE.bytes());
        if start.is_null() || !aligned || size < crate::Alignment::PAGE.bytes() as usize {
            return Err(RegionError::UnusableMemory);
        }
        // SAFETY: the caller guarantees the memory is valid, writable, lives
        // forever and belongs to this region alone, which is what `Heap::init` needs.
        unsafe { heap.init(start, size) };
        Ok(())
    }

    /// Current usage.
    pub fn usage(&self) -> RegionUsage {
        let heap = self.heap.lock();
        RegionUsage {
            size: heap.size(),
            used: heap.used(),
            free: heap.free(),
        }
    }

    /// The first address of the region's memory (0 before `init`).
    pub fn start(&self) -> VirtAddr {
        VirtAddr::from_ptr(self.heap.lock().bottom())
    }

    /// Reserves `size` bytes aligned to `align`, both already validated by the plan.
    pub(crate) fn reserve(&'static self, size: u64, align: u64) -> Option<Reservation> {
        let layout =
            Layout::from_size_align(usize::try_from(size).ok()?, usize::try_from(align).ok()?)
                .ok()?;
        if layout.size() == 0 {
            return None;
        }
        let start = self.heap.lock().allocate_first_fit(layout).ok()?;
        Some(Reservation {
            region: self,
            start,
            layout,
        })
    }
}

impl Default for Region {
    fn default() -> Self {
        Self::new()
    }
}

/// One module's memory in a region: a contiguous, exclusively owned block.
/// Dropping it gives the block back to the region.
pub(crate) struct Reservation {
    region: &'static Region,
    start: NonNull<u8>,
    layout: Layout,
}

// SAFETY: a reservation is the only handle to its block, so moving it to another
// thread moves exclusive ownership; the region it points to is `Sync`.
unsafe impl Send for Reservation {}
// SAFETY: `&Reservation` only reads the block (`bytes`), never writes it.
unsafe impl Sync for Reservation {}

impl Reservation {
    /// Where the block starts.
    pub(crate) fn start(&self) -> VirtAddr {
        VirtAddr::from_ptr(self.start.as_ptr())
    }

    /// Its length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.layout.size() as u64
    }

    /// The block's bytes, for copying sections in and patching them.
    ///
    /// Callers only use this before the block's pages are protected: the stage
    /// types in `stage.rs` give out `&mut` access only until `finalize`.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the block is `layout.size()` bytes that the region handed to
        // this reservation alone; `&mut self` makes this the only live reference.
        // The pages are writable because finalize has not protected them yet.
        unsafe { core::slice::from_raw_parts_mut(self.start.as_ptr(), self.layout.size()) }
    }

    /// The block's bytes, read-only. Every loaded page is at least readable.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: as in `bytes_mut`; shared access only reads, and no page of a
        // loaded module is ever made unreadable.
        unsafe { core::slice::from_raw_parts(self.start.as_ptr(), self.layout.size()) }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // SAFETY: `start` and `layout` are exactly what `allocate_first_fit`
        // returned and took, and the block is freed once because `drop` runs once.
        // Callers make the pages writable again before dropping (the heap writes
        // its free-list node into them): see `ModuleMemory` in `stage.rs`.
        unsafe { self.region.heap.lock().deallocate(self.start, self.layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::boxed::Box;
    use alloc::vec;

    fn leaked_region(pages: usize) -> &'static Region {
        let region: &'static Region = Box::leak(Box::new(Region::new()));
        // Over-allocate and align by hand: the test heap gives no page alignment.
        let memory: &'static mut [u8] = vec![0u8; (pages + 1) * 4096].leak();
        let offset = memory.as_ptr().align_offset(4096);
        let start = memory.as_mut_ptr().wrapping_add(offset);
        // SAFETY: the leaked vector is valid forever and used only by this region.
        unsafe { region.init(start, pages * 4096) }.ok();
        region
    }

    #[test]
    fn reservations_return_their_memory() {
        let region = leaked_region(4);
        let before = region.usage();
        assert_eq!(before.used, 0);
        let block = region.reserve(8192, 4096);
        assert!(block.is_some());
        assert_eq!(region.usage().used, 8192);
        drop(block);
        assert_eq!(region.usage(), before);
    }

    #[test]
    fn init_twice_is_refused() {
        let region = leaked_region(1);
        let mut other = [0u8; 8];
        // SAFETY: the call is refused before the pointer is used.
        let again = unsafe { region.init(other.as_mut_ptr(), 8) };
        assert_eq!(again, Err(RegionError::AlreadyInitialized));
    }

    #[test]
    fn exhaustion_is_reported() {
        let region = leaked_region(1);
        assert!(region.reserve(8192, 4096).is_none());
    }
}
