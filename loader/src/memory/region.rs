//! The region: memory that modules live in, owned by a `static` rather than by
//! any loader, so loaded code outlives the loader that placed it.
//!
//! This file and `call.rs` are the only places in the crate that touch raw memory.
//!
//! Three ways to place modules share one region: a contiguous [`Reservation`]
//! per module (the default); grouped, a reservation of whole pages per
//! segment, among other modules' segments of the same permissions (see
//! `grouping.rs`); and packed [`Piece`]s, one per segment, that share pages
//! with other modules' segments of the same permissions (see `packing.rs`
//! for the bookkeeping and [`crate::PageWriter`] for how bytes get into
//! pages that are already read-only or executable).

use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, Ordering};

use spin::Mutex;

use crate::addr::{Alignment, PageSize, VirtAddr};
use crate::error::ErrorKind;
use crate::kinds::Permissions;
use crate::kinds::Segment;
use crate::memory::grouping::Grouping;
use crate::memory::packing::{Chunk, Pool};
use crate::memory::protection::{MemoryProtection, PageWriter};
use crate::memory::ranges::FreeRanges;
use crate::memory::usage::{GroupedUsage, PackedUsage, RegionError, RegionUsage};

/// A block of memory that module sections are allocated from.
///
/// A `Region` can live in a `static` (its constructor is `const`) and is shared
/// by every loader and module that uses it. By default each module takes one
/// contiguous reservation, so a module's parts always stay within reach of
/// each other; [grouped](crate::Loader::grouped) and [packed](crate::Loader::packed)
/// modules' segments may lie apart, anywhere in the region.
///
/// Its memory is protected in pages of a [`PageSize`] given at
/// [`Region::init_with_page_size`] (4 KiB with [`Region::init`]): every
/// module planned by a [`Loader`](crate::Loader) of this region is laid out
/// in those pages, and every range passed to the [`MemoryProtection`] is
/// made of them.
///
/// ```
/// static REGION: modload::Region = modload::Region::new();
/// assert_eq!(REGION.usage().size, 0);
/// ```
pub struct Region {
    heap: Mutex<Heap>,
    /// The [`PageSize`] as its shift, set once by `init` (under every lock,
    /// before the region has memory), read without a lock on every plan.
    page_shift: AtomicU8,
    /// Packed placement's pages, one pool per segment kind. Locked before
    /// `heap` whenever both are held.
    pools: Mutex<[Pool; 3]>,
    /// Grouped placement's pages, one class per segment kind. Locked before
    /// `heap` whenever both are held.
    groups: Mutex<[Grouping; 3]>,
}

/// The region's memory and which of it is free. Reservations and packed
/// chunks are found in logarithmic time however many holes earlier
/// unloads left (see `ranges.rs`), and nothing is written into free memory.
struct Heap {
    /// The pointer the region was given, 0 bytes long before `init`: every
    /// pointer into the memory is derived from it, for its provenance.
    bottom: *mut u8,
    size: usize,
    /// Bytes allocated: live reservations and chunks, and the lost ones.
    used: usize,
    /// Bytes of `used` kept out of use for good: see [`RegionUsage::lost`].
    lost: usize,
    free: FreeRanges,
}

// SAFETY: `bottom` is only an origin to derive pointers from, under the
// region's lock; the memory it points to belongs to the region alone (the
// contract of `Region::init`), whichever thread holds the lock.
unsafe impl Send for Heap {}

impl Heap {
    const fn empty() -> Self {
        Self {
            bottom: core::ptr::null_mut(),
            size: 0,
            used: 0,
            lost: 0,
            free: FreeRanges::new(),
        }
    }

    fn bottom_address(&self) -> u64 {
        VirtAddr::from_ptr(self.bottom.cast_const()).as_u64()
    }

    /// `size` bytes (more than 0) aligned to `align`, or `None` if no free
    /// range holds them.
    fn allocate(&mut self, size: u64, align: Alignment) -> Option<NonNull<u8>> {
        let start = self.free.take(size, align)?;
        let Some(pointer) = self.pointer_to(start) else {
            // Not inside the memory: cannot happen, as every free range is.
            self.free.give(start, start.saturating_add(size));
            return None;
        };
        self.used = self.used.saturating_add(usize::try_from(size).ok()?);
        Some(pointer)
    }

    /// Gives back `[start, start + size)`, which `allocate` returned.
    fn deallocate(&mut self, start: u64, size: u64) {
        self.free.give(start, start.saturating_add(size));
        self.used = self
            .used
            .saturating_sub(usize::try_from(size).unwrap_or(usize::MAX));
    }

    /// A pointer to `address`, inside the region's memory, derived from the
    /// pointer the region was given (so it carries that memory's provenance).
    fn pointer_to(&self, address: u64) -> Option<NonNull<u8>> {
        let offset = address.checked_sub(self.bottom_address())?;
        if offset >= self.size as u64 {
            return None;
        }
        NonNull::new(self.bottom.wrapping_add(usize::try_from(offset).ok()?))
    }
}

impl Region {
    /// An empty region; give it memory with [`Region::init`].
    pub const fn new() -> Self {
        Self::with_page_size(PageSize::Size4KiB)
    }

    /// An empty region whose plans are laid out in pages of `page`, before
    /// it has memory: for sizing modules for a machine with those pages
    /// (`modload plan --page-size`). [`Region::init_with_page_size`] sets
    /// the page size again when memory comes.
    ///
    /// ```
    /// use modload::{PageSize, Region};
    /// static SIXTEEN: Region = Region::with_page_size(PageSize::Size16KiB);
    /// assert_eq!(SIXTEEN.page_size(), PageSize::Size16KiB);
    /// ```
    pub const fn with_page_size(page: PageSize) -> Self {
        Self {
            heap: Mutex::new(Heap::empty()),
            page_shift: AtomicU8::new(page as u8),
            pools: Mutex::new([Pool::new(page), Pool::new(page), Pool::new(page)]),
            groups: Mutex::new([
                Grouping::new(page),
                Grouping::new(page),
                Grouping::new(page),
            ]),
        }
    }

    /// Hands `[start, start + size)` to the region, to be protected in
    /// 4 KiB pages: [`Region::init_with_page_size`] with
    /// [`PageSize::Size4KiB`].
    ///
    /// # Safety
    /// As for [`Region::init_with_page_size`].
    pub unsafe fn init(&self, start: *mut u8, size: usize) -> Result<(), RegionError> {
        // SAFETY: the caller upholds the same contract.
        unsafe { self.init_with_page_size(start, size, PageSize::Size4KiB) }
    }

    /// Hands `[start, start + size)` to the region, whose permissions the
    /// loader changes in pages of `page`: every module planned for this
    /// region has its segments on `page` boundaries, and every range given
    /// to the [`MemoryProtection`] is whole pages of it. `page` must be a
    /// multiple of the page size the platform protects memory in (on a
    /// host, its kernel's), or protecting fails; larger is fine.
    ///
    /// `start` must be a multiple of `page` and `size` at least one page
    /// (a part of a page at the end is never used: everything the loader
    /// reserves is whole pages).
    ///
    /// # Safety
    /// The memory must be valid for reads and writes, stay valid for the rest of
    /// the program, and be used by nothing but this region from now on. Pages
    /// must be readable and writable when handed over.
    pub unsafe fn init_with_page_size(
        &self,
        start: *mut u8,
        size: usize,
        page: PageSize,
    ) -> Result<(), RegionError> {
        // Every lock, in their order: the page size goes into the pools and
        // groups before any memory can be taken.
        let mut pools = self.pools.lock();
        let mut groups = self.groups.lock();
        let mut heap = self.heap.lock();
        if heap.size != 0 {
            return Err(RegionError::AlreadyInitialized);
        }
        let first = VirtAddr::from_ptr(start.cast_const());
        if start.is_null() {
            return Err(RegionError::NullStart);
        }
        if !page.alignment().is_aligned(first.as_u64()) {
            return Err(RegionError::Misaligned { start: first, page });
        }
        let minimum = usize::try_from(page.bytes()).unwrap_or(usize::MAX);
        if size < minimum {
            return Err(RegionError::TooSmall { size, minimum });
        }
        let Some(end) = first.checked_add(size as u64) else {
            return Err(RegionError::WrapsAround { start: first, size });
        };
        *pools = [Pool::new(page), Pool::new(page), Pool::new(page)];
        *groups = [
            Grouping::new(page),
            Grouping::new(page),
            Grouping::new(page),
        ];
        self.page_shift.store(page as u8, Ordering::Release);
        heap.bottom = start;
        heap.size = size;
        heap.free.give(first.as_u64(), end.as_u64());
        Ok(())
    }

    /// The size of the pages the region's memory is protected in (4 KiB
    /// until `init` says otherwise).
    pub fn page_size(&self) -> PageSize {
        match self.page_shift.load(Ordering::Acquire) {
            14 => PageSize::Size16KiB,
            16 => PageSize::Size64KiB,
            _ => PageSize::Size4KiB,
        }
    }

    /// Current usage.
    pub fn usage(&self) -> RegionUsage {
        let heap = self.heap.lock();
        let lost = heap.lost.min(heap.used);
        RegionUsage {
            size: heap.size,
            used: heap.used.saturating_sub(lost),
            free: heap.size.saturating_sub(heap.used),
            lost,
        }
    }

    /// Counts `bytes`, which stay allocated for good, as lost.
    fn record_lost(&self, bytes: u64) {
        let mut heap = self.heap.lock();
        heap.lost = heap
            .lost
            .saturating_add(usize::try_from(bytes).unwrap_or(usize::MAX));
    }

    /// What packed placement holds of this region, over every permission class.
    pub fn packed_usage(&self) -> PackedUsage {
        let pools = self.pools.lock();
        let mut total = PackedUsage::default();
        for usage in pools.iter().map(Pool::usage) {
            let bytes = |value: u64| usize::try_from(value).unwrap_or(usize::MAX);
            total.reserved = total.reserved.saturating_add(bytes(usage.chunks));
            total.committed = total.committed.saturating_add(bytes(usage.committed));
            total.pieces = total.pieces.saturating_add(bytes(usage.live));
        }
        total
    }

    /// What grouped placement ([`crate::Loader::grouped`]) holds of this
    /// region, over every permission class.
    pub fn grouped_usage(&self) -> GroupedUsage {
        let groups = self.groups.lock();
        let mut total = GroupedUsage::default();
        for usage in groups.iter().map(Grouping::usage) {
            let bytes = |value: u64| usize::try_from(value).unwrap_or(usize::MAX);
            total.reserved = total.reserved.saturating_add(bytes(usage.chunks));
            total.segments = total.segments.saturating_add(bytes(usage.live));
        }
        total
    }

    /// The first address of the region's memory (0 before `init`).
    pub fn start(&self) -> VirtAddr {
        VirtAddr::new(self.heap.lock().bottom_address())
    }

    /// Reserves `size` bytes aligned to `align`, both already validated by the plan.
    pub(crate) fn reserve(&'static self, size: u64, align: u64) -> Option<Reservation> {
        let layout =
            Layout::from_size_align(usize::try_from(size).ok()?, usize::try_from(align).ok()?)
                .ok()?;
        if layout.size() == 0 {
            return None;
        }
        let start = self.heap.lock().allocate(size, Alignment::new(align)?)?;
        Some(Reservation {
            region: self,
            start,
            layout,
            home: Home::Heap,
        })
    }

    /// Reserves whole pages for a segment of kind `segment`, `size` bytes
    /// (rounded up to pages) aligned to `align` (at least a page), among
    /// other modules' segments of that kind (see `grouping.rs`). The pages
    /// are read-write, like any free region memory.
    pub(crate) fn reserve_grouped(
        &'static self,
        segment: Segment,
        size: u64,
        align: Alignment,
    ) -> Option<Reservation> {
        let page = self.page_size().alignment();
        let size = page.align_up(size)?;
        let align = align.max(page);
        let layout = Layout::from_size_align(
            usize::try_from(size).ok()?,
            usize::try_from(align.bytes()).ok()?,
        )
        .ok()?;
        if size == 0 {
            return None;
        }
        let mut groups = self.groups.lock();
        let group = groups.get_mut(pool_slot(segment))?;
        let start = match group.take(size, align) {
            Some(start) => start,
            None => {
                let region_size = self.heap.lock().size as u64;
                let chunk = self.take_chunk(group.chunk_size(size, align, region_size)?, align)?;
                group.add_chunk(chunk);
                match group.take(size, align) {
                    Some(start) => start,
                    None => {
                        self.return_chunks(group.release(chunk.start).as_slice());
                        return None;
                    }
                }
            }
        };
        let Some(pointer) = self.pointer_in(start) else {
            // Not inside the memory: cannot happen, as every chunk is.
            if let Some(chunk) = group.free(start, size) {
                self.return_chunks(&[chunk]);
            }
            return None;
        };
        Some(Reservation {
            region: self,
            start: pointer,
            layout,
            home: Home::Group(segment),
        })
    }
}

impl Region {
    /// Takes a packed piece of `size` bytes (more than 0) aligned to `align`
    /// for a segment of kind `segment`, sharing pages with other modules'
    /// segments of the same kind. Pages the piece is the first to touch get
    /// the segment's permissions through `protection` before this returns, so
    /// the piece's bytes must be written through a [`PageWriter`] (see
    /// [`Piece::write`]). On failure nothing changes.
    pub(crate) fn reserve_piece(
        &'static self,
        segment: Segment,
        size: u64,
        align: Alignment,
        protection: &'static dyn MemoryProtection,
    ) -> Result<Piece, ErrorKind> {
        let out_of_memory = || ErrorKind::OutOfMemory {
            size,
            align: align.bytes(),
        };
        let mut pools = self.pools.lock();
        let pool = pools
            .get_mut(pool_slot(segment))
            .ok_or_else(out_of_memory)?;
        let taken = match pool.take(size, align) {
            Some(taken) => taken,
            None => {
                let chunk = pool
                    .chunk_size(size, align)
                    .and_then(|len| self.take_chunk(len, align))
                    .ok_or_else(out_of_memory)?;
                pool.add_chunk(chunk);
                match pool.take(size, align) {
                    Some(taken) => taken,
                    None => {
                        self.return_chunks(&pool.idle_chunks(chunk.start, chunk.end));
                        return Err(out_of_memory());
                    }
                }
            }
        };
        let end = taken.start.saturating_add(size);
        let permissions = segment.permissions();
        if permissions != Permissions::READ_WRITE {
            for (index, &(start, run_end)) in taken.committed.iter().enumerate() {
                let len = run_end.saturating_sub(start);
                let Err(error) = protection.protect(VirtAddr::new(start), len, permissions) else {
                    continue;
                };
                // Undo: the runs protected so far (and the one that failed,
                // which may be half done) go back to read-write, or stay out
                // of use for good if even that fails.
                pool.untake(taken.start, size);
                for &(undo, undo_end) in taken.committed.iter().take(index.saturating_add(1)) {
                    let undo_len = undo_end.saturating_sub(undo);
                    if protection
                        .protect(VirtAddr::new(undo), undo_len, Permissions::READ_WRITE)
                        .is_err()
                    {
                        self.quarantine(pool, undo, undo_end);
                    }
                }
                self.return_chunks(&pool.idle_chunks(taken.start, end));
                return Err(ErrorKind::Protection {
                    start: VirtAddr::new(start),
                    len,
                    code: error.code,
                });
            }
        }
        Ok(Piece {
            region: self,
            segment,
            start: taken.start,
            size,
            protection,
        })
    }

    /// Frees a piece: pages no live piece touches any more go back to
    /// read-write, and chunks with no committed page go back to the heap.
    fn release_piece(&self, piece: &Piece) {
        let mut pools = self.pools.lock();
        let Some(pool) = pools.get_mut(pool_slot(piece.segment)) else {
            return;
        };
        let idle = pool.free(piece.start, piece.size);
        if piece.segment.permissions() != Permissions::READ_WRITE {
            for (start, end) in idle {
                let len = end.saturating_sub(start);
                if piece
                    .protection
                    .protect(VirtAddr::new(start), len, Permissions::READ_WRITE)
                    .is_err()
                {
                    // The next piece placed here could not be written: keep
                    // the page (and its chunk) out of use.
                    self.quarantine(pool, start, end);
                }
            }
        }
        let end = piece.start.saturating_add(piece.size);
        let chunks = pool.idle_chunks(piece.start, end);
        self.return_chunks(&chunks);
    }

    /// A chunk of `len` bytes (whole pages) from the heap, aligned to `align`
    /// or a page, whichever is more.
    fn take_chunk(&self, len: u64, align: Alignment) -> Option<Chunk> {
        let chunk_align = align.max(self.page_size().alignment()).bytes();
        let start = self
            .heap
            .lock()
            .allocate(len, Alignment::new(chunk_align)?)?;
        let start = VirtAddr::from_ptr(start.as_ptr()).as_u64();
        Some(Chunk {
            start,
            end: start.checked_add(len)?,
        })
    }

    /// Gives idle chunks back to the heap.
    fn return_chunks(&self, chunks: &[Chunk]) {
        if chunks.is_empty() {
            return;
        }
        let mut heap = self.heap.lock();
        for chunk in chunks {
            // `take_chunk` allocated exactly this block (the pool kept it),
            // and the pool gives a chunk back once, when no live piece lies
            // in it. Every page of it is read-write again (released pages
            // were made read-write or quarantined, and a quarantined page
            // keeps its chunk), so the next reservation can write it.
            heap.deallocate(chunk.start, chunk.end.saturating_sub(chunk.start));
        }
    }

    /// Keeps the pages of `[start, end)` out of use for good, and counts
    /// those not kept already as lost.
    fn quarantine(&self, pool: &mut Pool, start: u64, end: u64) {
        let page = self.page_size().bytes();
        let mut lost = 0u64;
        let mut at = start;
        while at < end {
            if pool.quarantine(at) {
                lost = lost.saturating_add(page);
            }
            at = at.saturating_add(page);
        }
        self.record_lost(lost);
    }

    /// A pointer to `address`, inside the region's memory (see
    /// [`Heap::pointer_to`]).
    fn pointer_in(&self, address: u64) -> Option<NonNull<u8>> {
        self.heap.lock().pointer_to(address)
    }
}

/// The pool of a segment kind.
fn pool_slot(segment: Segment) -> usize {
    match segment {
        Segment::Code => 0,
        Segment::ReadOnly => 1,
        Segment::Writable => 2,
    }
}

/// One packed segment of a module: `size` bytes in pages shared with other
/// modules' segments of the same permissions. Dropping it frees the bytes;
/// a page left with no live piece becomes read-write again, and a chunk left
/// with no committed page returns to the region's heap.
pub(crate) struct Piece {
    region: &'static Region,
    segment: Segment,
    start: u64,
    size: u64,
    protection: &'static dyn MemoryProtection,
}

impl Piece {
    /// Where the piece starts.
    pub(crate) fn start(&self) -> VirtAddr {
        VirtAddr::new(self.start)
    }

    /// The region the piece is in.
    pub(crate) fn region(&self) -> &'static Region {
        self.region
    }

    /// Its length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.size
    }

    /// Copies `bytes` to the start of the piece: through `writer` for code and
    /// read-only pieces, whose pages already carry their final permissions,
    /// and in place for writable ones, whose pages are read-write.
    pub(crate) fn write(&mut self, bytes: &[u8], writer: &dyn PageWriter) -> Result<(), ErrorKind> {
        let len = bytes.len() as u64;
        if len > self.size {
            return Err(ErrorKind::ModuleTooLarge { size: len });
        }
        if self.segment.permissions() != Permissions::READ_WRITE {
            // SAFETY: the range lies in this piece (checked above), which the
            // region handed to this `Piece` alone; `&mut self` makes this the
            // only write, and the module is not published yet, so no code runs
            // from the piece and nothing else refers to it. The writer serves
            // this region: the loader was given it for this region.
            return unsafe { writer.write(self.start(), bytes) }.map_err(|error| {
                ErrorKind::Protection {
                    start: self.start(),
                    len,
                    code: error.code,
                }
            });
        }
        let destination = self.region.pointer_in(self.start);
        let Some(destination) = destination else {
            return Err(ErrorKind::OutOfMemory {
                size: self.size,
                align: 1,
            });
        };
        // SAFETY: the destination is the start of this piece, inside the
        // region's memory (`pointer_in` checked it), and `len` bytes fit in the
        // piece (checked above). The piece belongs to this `Piece` alone and
        // `&mut self` makes this the only access; writable pieces' pages are
        // read-write at every moment (they are never protected). `bytes` is
        // ordinary memory, so the two ranges cannot overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), destination.as_ptr(), bytes.len())
        };
        Ok(())
    }

    /// Overwrites a code piece with zeros through `writer`, as its module
    /// goes: its page may stay executable for the modules that share it, and
    /// an unloaded module's instructions left there would be code anyone
    /// could still jump into (zero words are permanently undefined
    /// instructions on AArch64; Linux fills freed code in its shared
    /// executable pages with traps for the same reason). Other pieces, whose
    /// pages are never executable, are left as they are: a write costs a
    /// system call on the host. Best effort: a failed write leaves the old
    /// bytes, as a page that is not shared would.
    pub(crate) fn scrub(&mut self, writer: &dyn PageWriter) {
        if !self.segment.permissions().contains(Permissions::EXECUTE) {
            return;
        }
        // A `static` (in .bss, so it costs no file size): a small module's
        // code goes in one write, one system call on the host.
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        let mut at = 0u64;
        while at < self.size {
            let len = self.size.saturating_sub(at).min(ZEROS.len() as u64);
            let (Some(bytes), Some(target)) =
                (ZEROS.get(..len as usize), self.start().checked_add(at))
            else {
                return;
            };
            // SAFETY: `[target, target + len)` lies in this piece (`at + len`
            // is at most its size), which the region handed to this `Piece`
            // alone; `&mut self` makes this the only write. The module that
            // owned it is gone (unloaded, or never published), so no code
            // runs from the piece and nothing refers to it. The writer
            // serves this region: the loader was given it for this region.
            if unsafe { writer.write(target, bytes) }.is_err() {
                return;
            }
            at = at.saturating_add(len);
        }
    }
}

impl Drop for Piece {
    fn drop(&mut self) {
        self.region.release_piece(self);
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
    home: Home,
}

/// Where a reservation goes back to.
#[derive(Clone, Copy)]
enum Home {
    /// The region's heap (a whole module).
    Heap,
    /// The grouped pages of a segment kind (one segment).
    Group(Segment),
}

// SAFETY: a reservation is the only handle to its block, so moving it to another
// thread moves exclusive ownership; the region it points to is `Sync`.
unsafe impl Send for Reservation {}
// SAFETY: `&Reservation` only reads the block (`bytes`), never writes it.
unsafe impl Sync for Reservation {}

impl Reservation {
    /// Keeps the block out of use for good, counted in
    /// [`RegionUsage::lost`]: for a block whose pages could not be made
    /// read-write again, which the next reservation could not write.
    pub(crate) fn keep_out_of_use(self) {
        self.region.record_lost(self.len());
        core::mem::forget(self);
    }

    /// The region the block is in.
    pub(crate) fn region(&self) -> &'static Region {
        self.region
    }

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
        // `start` and the size are exactly what `reserve` or `reserve_grouped`
        // took, and `drop` runs once. Callers make the pages writable again
        // first, so that the next reservation can write them: see
        // `ModuleMemory` in `memory.rs`.
        let start = VirtAddr::from_ptr(self.start.as_ptr().cast_const()).as_u64();
        let size = self.layout.size() as u64;
        match self.home {
            Home::Heap => self.region.heap.lock().deallocate(start, size),
            Home::Group(segment) => {
                let mut groups = self.region.groups.lock();
                let chunk = groups
                    .get_mut(pool_slot(segment))
                    .and_then(|group| group.free(start, size));
                // A chunk with no segment left goes back whole; its pages are
                // all read-write again, as every segment's was made before
                // its reservation was dropped.
                if let Some(chunk) = chunk {
                    self.region.return_chunks(&[chunk]);
                }
            }
        }
    }
}

/// Stores `value` at `address` with one aligned 8-byte atomic store, which
/// a concurrent reader on any core sees whole, before or after: how a
/// pending import's GOT slot is bound.
///
/// # Safety
/// `address` must be 8-byte aligned, lie in region memory that the caller's
/// module owns, and be writable now.
pub(crate) unsafe fn store_word(address: u64, value: u64) {
    let pointer = address as usize as *mut u64;
    // SAFETY: the caller guarantees the word is aligned, owned and writable;
    // every other access to it is a read (code loading its slot).
    let word = unsafe { core::sync::atomic::AtomicU64::from_ptr(pointer) };
    word.store(value, core::sync::atomic::Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::boxed::Box;
    use alloc::vec;

    use crate::memory::packing::CHUNK_PAGES;

    fn leaked_region(pages: usize) -> &'static Region {
        leaked_region_of(pages, PageSize::Size4KiB)
    }

    /// A region of `pages` pages of `page`, in leaked heap memory.
    fn leaked_region_of(pages: usize, page: PageSize) -> &'static Region {
        let region: &'static Region = Box::leak(Box::new(Region::new()));
        let bytes = page.bytes() as usize;
        // Over-allocate and align by hand: the test heap gives no page alignment.
        let memory: &'static mut [u8] = vec![0u8; (pages + 1) * bytes].leak();
        let offset = memory.as_ptr().align_offset(bytes);
        let start = memory.as_mut_ptr().wrapping_add(offset);
        // SAFETY: the leaked vector is valid forever and used only by this region.
        unsafe { region.init_with_page_size(start, pages * bytes, page) }.ok();
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

    /// Thousands of holes too small for a large reservation: it is still
    /// found (past all of them), a small one goes into a hole rather than
    /// splitting the large free rest, and every byte comes back.
    #[test]
    fn reservations_find_room_past_many_holes() {
        let region = leaked_region(2 * 3000 + 300);
        let before = region.usage();
        let mut small: alloc::vec::Vec<_> = (0..6000).map(|_| region.reserve(4096, 4096)).collect();
        assert!(small.iter().all(Option::is_some));
        for block in small.iter_mut().step_by(2) {
            drop(block.take());
        }
        assert_eq!(region.usage().used, 3000 * 4096);
        let large = region
            .reserve(256 * 4096, 4096)
            .expect("room past the holes");
        assert!(large.start().as_u64() >= region.start().as_u64() + 6000 * 4096);
        let hole = region.reserve(4096, 4096).expect("a hole");
        assert!(hole.start().as_u64() < region.start().as_u64() + 6000 * 4096);
        drop((large, hole, small));
        assert_eq!(region.usage(), before);
        // Whole again: one reservation of everything fits.
        let all = region.reserve(before.size as u64, 4096);
        assert!(all.is_some());
    }

    #[test]
    fn init_twice_is_refused() {
        let region = leaked_region(1);
        let mut other = [0u8; 8];
        // SAFETY: the call is refused before the pointer is used.
        let again = unsafe { region.init(other.as_mut_ptr(), 8) };
        assert_eq!(again, Err(RegionError::AlreadyInitialized));
    }

    /// Each wrong start or size is refused with the numbers that make it
    /// wrong, and the region stays empty (a good `init` still works).
    #[test]
    fn init_names_what_is_wrong_with_the_memory() {
        let region: &'static Region = Box::leak(Box::new(Region::new()));
        let page = PageSize::Size16KiB;
        let memory: &'static mut [u8] = vec![0u8; 3 * 16384].leak();
        let offset = memory.as_ptr().align_offset(16384);
        let start = memory.as_mut_ptr().wrapping_add(offset);
        let at = VirtAddr::from_ptr(start.cast_const());
        let init = |start: *mut u8, size| {
            // SAFETY: the memory is leaked, used by this region alone, and a
            // refused call does not keep it.
            unsafe { region.init_with_page_size(start, size, page) }
        };
        assert_eq!(
            init(core::ptr::null_mut(), 16384),
            Err(RegionError::NullStart)
        );
        let misaligned = start.wrapping_add(4096);
        let error = init(misaligned, 16384).unwrap_err();
        assert_eq!(
            error,
            RegionError::Misaligned {
                start: at.checked_add(4096).unwrap(),
                page
            }
        );
        assert!(alloc::format!("{error}").contains("16 KiB"), "{error}");
        let error = init(start, 16383).unwrap_err();
        assert_eq!(
            error,
            RegionError::TooSmall {
                size: 16383,
                minimum: 16384
            }
        );
        let text = alloc::format!("{error}");
        assert!(text.contains("16383") && text.contains("16384"), "{text}");
        let top = !0xffff_u64 as usize as *mut u8;
        assert!(matches!(
            init(top, 1 << 20),
            Err(RegionError::WrapsAround {
                size: 0x10_0000,
                ..
            })
        ));
        assert_eq!(region.usage().size, 0);
        assert_eq!(region.page_size(), PageSize::Size4KiB);
        init(start, 2 * 16384).unwrap();
        assert_eq!(region.page_size(), page);
        assert_eq!(region.usage().free, 2 * 16384);
    }

    /// With 64 KiB pages, grouped reservations and packed chunks are whole
    /// 64 KiB pages on 64 KiB boundaries.
    #[test]
    fn large_pages_round_every_reservation() {
        const BIG: u64 = 65536;
        let region = leaked_region_of(80, PageSize::Size64KiB);
        let before = region.usage();
        let grouped = region
            .reserve_grouped(Segment::Code, 100, Alignment::new(16).unwrap())
            .unwrap();
        assert_eq!(grouped.len(), BIG);
        assert_eq!(grouped.start().as_u64() % BIG, 0);
        let piece = region
            .reserve_piece(Segment::ReadOnly, 10, Alignment::BYTE, &NO_PROTECTION)
            .unwrap();
        assert_eq!(region.packed_usage().committed, BIG as usize);
        assert_eq!(region.packed_usage().reserved, (CHUNK_PAGES * BIG) as usize);
        assert_eq!(piece.start().as_u64() % BIG, 0);
        drop((grouped, piece));
        assert_eq!(region.usage(), before);
    }

    /// Refuses every call: nothing can be protected or restored.
    struct Refusing;

    impl MemoryProtection for Refusing {
        fn protect(
            &self,
            _: VirtAddr,
            _: u64,
            _: Permissions,
        ) -> Result<(), crate::ProtectionError> {
            Err(crate::ProtectionError { code: 13 })
        }

        fn sync_instruction_cache(&self, _: VirtAddr, _: u64) {}
    }

    static REFUSING: Refusing = Refusing;

    /// A packed piece whose pages cannot be protected nor restored: the
    /// pages stay out of use, counted as lost, and the rest of the region
    /// still serves.
    #[test]
    fn unrestorable_packed_pages_are_counted_as_lost() {
        let region = leaked_region(128);
        let error = region.reserve_piece(Segment::Code, 5000, Alignment::BYTE, &REFUSING);
        assert!(matches!(error, Err(ErrorKind::Protection { code: 13, .. })));
        let usage = region.usage();
        assert_eq!(usage.lost, 2 * 4096);
        assert_eq!(usage.used + usage.free + usage.lost, usage.size);
        // The same refusal again takes fresh pages; the lost ones stay lost.
        assert!(region
            .reserve_piece(Segment::Code, 100, Alignment::BYTE, &REFUSING)
            .is_err());
        assert_eq!(region.usage().lost, 3 * 4096);
        let fine = region
            .reserve_piece(Segment::Code, 100, Alignment::BYTE, &NO_PROTECTION)
            .unwrap();
        drop(fine);
        let after = region.usage();
        assert_eq!(after.lost, 3 * 4096);
        assert_eq!(after.used + after.free + after.lost, after.size);
    }

    /// Writes in place: the test region's pages are never protected.
    struct InPlace;

    impl PageWriter for InPlace {
        unsafe fn write(
            &self,
            target: VirtAddr,
            bytes: &[u8],
        ) -> Result<(), crate::ProtectionError> {
            // SAFETY: the caller guarantees the range is its own piece of the
            // test region, which is plain read-write memory.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    target.as_u64() as usize as *mut u8,
                    bytes.len(),
                )
            };
            Ok(())
        }
    }

    static NO_PROTECTION: crate::NoProtection = crate::NoProtection;

    #[test]
    fn packed_pieces_share_pages_and_give_them_back() {
        let region = leaked_region(128);
        let before = region.usage();
        let piece = |segment, size| {
            region
                .reserve_piece(segment, size, Alignment::new(16).unwrap(), &NO_PROTECTION)
                .unwrap()
        };
        let mut a = piece(Segment::Code, 100);
        let mut b = piece(Segment::Code, 200);
        let mut data = piece(Segment::Writable, 24);
        // Two code pieces in one page, data in a chunk of its own.
        assert_eq!(b.start().as_u64(), a.start().as_u64() + 112);
        assert_eq!(region.usage().used, 2 * (CHUNK_PAGES * 4096) as usize);
        let packed = region.packed_usage();
        assert_eq!(packed.committed, 2 * 4096);
        assert_eq!(packed.pieces, 324);
        a.write(&[0xc3; 100], &InPlace).unwrap();
        b.write(&[0x90; 200], &InPlace).unwrap();
        data.write(&[7; 24], &InPlace).unwrap();
        assert!(b.write(&[0; 201], &InPlace).is_err());
        // SAFETY: the pieces were just written and nothing else uses them.
        let read =
            |piece: &Piece, at: u64| unsafe { *((piece.start().as_u64() + at) as *const u8) };
        assert_eq!(
            (read(&a, 99), read(&b, 0), read(&data, 23)),
            (0xc3, 0x90, 7)
        );
        drop(a);
        // b still holds the page and the chunk.
        assert_eq!(region.packed_usage().committed, 2 * 4096);
        let c = piece(Segment::Code, 50);
        assert_eq!(
            c.start().as_u64(),
            b.start().as_u64() - 112,
            "freed bytes reused"
        );
        drop((b, c, data));
        assert_eq!(region.usage(), before);
        assert_eq!(region.packed_usage(), PackedUsage::default());
    }

    #[test]
    fn packed_exhaustion_takes_nothing() {
        let region = leaked_region(40);
        let before = region.usage();
        let code = region
            .reserve_piece(
                Segment::Code,
                4096,
                PageSize::Size4KiB.alignment(),
                &NO_PROTECTION,
            )
            .unwrap();
        let error = region.reserve_piece(Segment::ReadOnly, 8, Alignment::BYTE, &NO_PROTECTION);
        assert!(matches!(error, Err(ErrorKind::OutOfMemory { .. })));
        drop(code);
        assert_eq!(region.usage(), before);
        // Larger than the region: refused, nothing taken.
        let error = region.reserve_piece(Segment::Code, 1 << 30, Alignment::BYTE, &NO_PROTECTION);
        assert!(error.is_err());
        assert_eq!(region.usage(), before);
    }

    #[test]
    fn exhaustion_is_reported() {
        let region = leaked_region(1);
        assert!(region.reserve(8192, 4096).is_none());
    }
}
