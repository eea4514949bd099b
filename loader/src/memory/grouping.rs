//! Grouped placement's bookkeeping: whole pages by permission class, with no
//! memory access.
//!
//! In grouped mode ([`crate::Loader::grouped`]) each segment of a module
//! takes whole pages of its own, as in the default mode, but from a run of
//! pages that only segments of its permission class use. Code then follows
//! code, and read-only data follows read-only data, so protecting a new
//! module's pages extends a run that already has their permissions instead
//! of cutting a new one out of the read-write rest. On Linux each run of
//! pages with one permission is one mapping (a VMA): the default layout,
//! code, read-only and writable pages side by side for every module, costs
//! three mappings a module and two splits a load, and grouped placement a
//! few mappings in all.
//!
//! Each class owns *chunks*, runs of pages taken from the region's heap,
//! and hands out whole-page *pieces* inside them. A chunk with no piece left
//! goes back to the heap. A class's chunks are at least 1/512 of the region
//! and as large as the class's chunks so far, up to [`LARGEST_CHUNK_PAGES`] pages: a
//! small region (up to 2 MiB) holding one small module keeps nothing idle,
//! and a region holding thousands of modules takes few chunks.
//!
//! This file only computes addresses; `region.rs` takes chunks from the heap
//! and returns them, as this bookkeeping says.

use alloc::collections::BTreeMap;

use crate::addr::{Alignment, PageSize};
use crate::memory::packing::Chunk;
use crate::memory::ranges::FreeRanges;

/// The largest chunk a class takes for pieces smaller than it, in pages.
pub(crate) const LARGEST_CHUNK_PAGES: u64 = 64;

/// The pieces of one permission class.
#[derive(Debug)]
pub(crate) struct Grouping {
    /// The region's pages, the granule of permissions.
    page: PageSize,
    /// The free pages of the chunks.
    free: FreeRanges,
    /// Chunks taken from the heap, by start.
    chunks: BTreeMap<u64, ChunkUse>,
    /// Bytes of all chunks.
    chunk_bytes: u64,
    /// Bytes in live pieces.
    live: u64,
}

/// A chunk's end and the bytes of live pieces in it.
#[derive(Clone, Copy, Debug)]
struct ChunkUse {
    end: u64,
    live: u64,
}

/// How much of a class's pages are in use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct GroupingUsage {
    /// Bytes of the chunks taken from the heap.
    pub chunks: u64,
    /// Bytes in live pieces (whole pages).
    pub live: u64,
}

impl Grouping {
    /// An empty class for a region with pages of `page`.
    pub const fn new(page: PageSize) -> Self {
        Self {
            page,
            free: FreeRanges::new(),
            chunks: BTreeMap::new(),
            chunk_bytes: 0,
            live: 0,
        }
    }

    /// Takes `size` bytes (a whole number of pages, more than 0) aligned to
    /// `align` (at least a page), or `None` if no chunk has room. The piece
    /// goes to the start of the shortest free run that holds it, so pieces
    /// taken one after another lie side by side.
    pub fn take(&mut self, size: u64, align: Alignment) -> Option<u64> {
        let start = self.free.take(size, align)?;
        if let Some((_, chunk)) = self.chunks.range_mut(..=start).next_back() {
            chunk.live = chunk.live.saturating_add(size);
        }
        self.live = self.live.saturating_add(size);
        Some(start)
    }

    /// Frees the piece `[start, start + size)` that [`Grouping::take`]
    /// returned. If its chunk holds no piece any more, the chunk leaves the
    /// class and is returned, for the heap.
    pub fn free(&mut self, start: u64, size: u64) -> Option<Chunk> {
        self.free.give(start, start.saturating_add(size));
        self.live = self.live.saturating_sub(size);
        let (&chunk_start, chunk) = self.chunks.range_mut(..=start).next_back()?;
        chunk.live = chunk.live.saturating_sub(size);
        if chunk.live != 0 {
            return None;
        }
        self.release(chunk_start)
    }

    /// Removes the chunk at `start` if no piece lies in it, and returns it.
    pub fn release(&mut self, start: u64) -> Option<Chunk> {
        let chunk = *self.chunks.get(&start)?;
        if chunk.live != 0 {
            return None;
        }
        self.chunks.remove(&start);
        self.free.remove(start, chunk.end);
        let len = chunk.end.saturating_sub(start);
        self.chunk_bytes = self.chunk_bytes.saturating_sub(len);
        Some(Chunk {
            start,
            end: chunk.end,
        })
    }

    /// Adds a chunk taken from the heap: all of it free.
    pub fn add_chunk(&mut self, chunk: Chunk) {
        let len = chunk.end.saturating_sub(chunk.start);
        self.chunks.insert(
            chunk.start,
            ChunkUse {
                end: chunk.end,
                live: 0,
            },
        );
        self.chunk_bytes = self.chunk_bytes.saturating_add(len);
        self.free.give(chunk.start, chunk.end);
    }

    /// The size of the next chunk for a piece of `size` bytes aligned to
    /// `align`, in a region of `region_size` bytes: room for the piece at
    /// any alignment, and as large as the class's chunks so far, or 1/512
    /// of the region, up to [`LARGEST_CHUNK_PAGES`] pages.
    pub fn chunk_size(&self, size: u64, align: Alignment, region_size: u64) -> Option<u64> {
        let page = self.page.bytes();
        let needed = size.checked_add(align.bytes().saturating_sub(page))?;
        let largest = LARGEST_CHUNK_PAGES.saturating_mul(page);
        let grown = self.chunk_bytes.max(region_size / 512).min(largest);
        self.page.alignment().align_up(needed.max(grown))
    }

    /// Bytes of chunks and of live pieces.
    pub fn usage(&self) -> GroupingUsage {
        GroupingUsage {
            chunks: self.chunk_bytes,
            live: self.live,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests' page size.
    const PAGE: u64 = 4096;

    impl Default for Grouping {
        fn default() -> Self {
            Grouping::new(PageSize::Size4KiB)
        }
    }

    fn chunk(start: u64, end: u64) -> Chunk {
        Chunk { start, end }
    }

    #[test]
    fn pieces_taken_in_turn_lie_side_by_side() {
        let mut class = Grouping::default();
        class.add_chunk(chunk(0x10_000, 0x10_000 + 8 * PAGE));
        let first = class.take(2 * PAGE, PageSize::Size4KiB.alignment());
        let second = class.take(PAGE, PageSize::Size4KiB.alignment());
        let third = class.take(3 * PAGE, PageSize::Size4KiB.alignment());
        assert_eq!(first, Some(0x10_000));
        assert_eq!(second, Some(0x10_000 + 2 * PAGE));
        assert_eq!(third, Some(0x10_000 + 3 * PAGE));
        assert_eq!(class.take(3 * PAGE, PageSize::Size4KiB.alignment()), None);
        assert_eq!(class.usage().live, 6 * PAGE);
    }

    #[test]
    fn a_chunk_goes_back_once_its_last_piece_is_freed() {
        let mut class = Grouping::default();
        let whole = chunk(0x20_000, 0x20_000 + 4 * PAGE);
        class.add_chunk(whole);
        let a = class.take(PAGE, PageSize::Size4KiB.alignment()).unwrap();
        let b = class
            .take(2 * PAGE, PageSize::Size4KiB.alignment())
            .unwrap();
        assert_eq!(class.free(a, PAGE), None);
        assert_eq!(class.free(b, 2 * PAGE), Some(whole));
        assert_eq!(class.usage(), GroupingUsage::default());
        // Its pages are no longer the class's to hand out.
        assert_eq!(class.take(PAGE, PageSize::Size4KiB.alignment()), None);
    }

    #[test]
    fn chunks_grow_with_the_class_up_to_the_largest() {
        let mut class = Grouping::default();
        let small_region = 2 << 20;
        // Alone in a small region, a piece gets a chunk of its own size:
        // nothing idle.
        assert_eq!(
            class.chunk_size(2 * PAGE, PageSize::Size4KiB.alignment(), small_region),
            Some(2 * PAGE)
        );
        class.add_chunk(chunk(0, 2 * PAGE));
        assert_eq!(
            class.chunk_size(PAGE, PageSize::Size4KiB.alignment(), small_region),
            Some(2 * PAGE)
        );
        class.add_chunk(chunk(0x100_000, 0x100_000 + 40 * PAGE));
        assert_eq!(
            class.chunk_size(PAGE, PageSize::Size4KiB.alignment(), small_region),
            Some(42 * PAGE)
        );
        class.add_chunk(chunk(0x200_000, 0x200_000 + 30 * PAGE));
        assert_eq!(
            class.chunk_size(PAGE, PageSize::Size4KiB.alignment(), small_region),
            Some(LARGEST_CHUNK_PAGES * PAGE)
        );
        // A larger piece still fits, at any alignment.
        let align = Alignment::new(4 * PAGE).unwrap();
        assert_eq!(
            class.chunk_size(100 * PAGE, align, small_region),
            Some(103 * PAGE)
        );
    }

    #[test]
    fn a_large_region_starts_with_larger_chunks() {
        let class = Grouping::default();
        assert_eq!(
            class.chunk_size(PAGE, PageSize::Size4KiB.alignment(), 16 << 20),
            Some(8 * PAGE)
        );
        assert_eq!(
            class.chunk_size(PAGE, PageSize::Size4KiB.alignment(), 1 << 30),
            Some(LARGEST_CHUNK_PAGES * PAGE)
        );
        assert_eq!(
            class.chunk_size(PAGE + 1, PageSize::Size4KiB.alignment(), 0),
            Some(2 * PAGE)
        );
    }

    #[test]
    fn a_chunk_with_a_piece_is_not_released() {
        let mut class = Grouping::default();
        class.add_chunk(chunk(0x40_000, 0x40_000 + 2 * PAGE));
        let piece = class.take(PAGE, PageSize::Size4KiB.alignment()).unwrap();
        assert_eq!(class.release(0x40_000), None);
        assert!(class.free(piece, PAGE).is_some());
        assert_eq!(class.release(0x40_000), None);
    }
}
