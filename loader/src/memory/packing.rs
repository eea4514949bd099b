//! Sub-page placement for packed mode: the bookkeeping, with no memory access.
//!
//! In packed mode the segments of many modules share pages by permission
//! class (code, read-only, writable). Each class owns *chunks*, runs of whole
//! pages taken from the region's heap, and hands out *pieces*, byte ranges of
//! any size and alignment inside them. A piece may cross page boundaries
//! (and the boundary between two adjacent chunks of its class), so pieces of
//! any size pack without per-page waste.
//!
//! A page is *committed* while at least one live piece touches it: that is
//! when it carries its class's permissions. A page no live piece touches is
//! *idle*: read-write, like free region memory, and not counted as used by
//! modules. A chunk whose pages are all idle goes back to the heap.
//!
//! This file only computes addresses; `region.rs` takes chunks from the heap,
//! changes page permissions and returns chunks, as this bookkeeping says.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::addr::{Alignment, PageSize};
use crate::memory::ranges::FreeRanges;

/// The smallest chunk a class takes from the heap, in pages. Larger chunks
/// waste less at their ends (a piece that does not fit the rest of a chunk
/// leaves that rest to smaller pieces), smaller ones hold less idle address
/// space. Idle pages are never committed: see [`Pool::committed_bytes`].
pub(crate) const CHUNK_PAGES: u64 = 32;

/// The pieces of one permission class: which bytes of its chunks are free and
/// how many live pieces touch each page.
#[derive(Debug)]
pub(crate) struct Pool {
    /// The region's pages, the granule of permissions.
    page: PageSize,
    /// The free bytes of the chunks.
    free: FreeRanges,
    /// Committed pages: page address → number of live pieces touching it.
    pages: BTreeMap<u64, u32>,
    /// Chunks taken from the heap: start → end.
    chunks: BTreeMap<u64, u64>,
    /// Bytes in live pieces.
    live: u64,
}

/// A piece just taken, and the pages that it committed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Taken {
    /// The piece's first byte.
    pub start: u64,
    /// Runs of pages (start, end) that were idle and are now committed: they
    /// need their class's permissions before the piece is written.
    pub committed: Vec<(u64, u64)>,
}

/// A run of pages taken from the heap in one allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Chunk {
    /// Its first byte.
    pub start: u64,
    /// One past its last byte.
    pub end: u64,
}

/// How much of a pool is in use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PoolUsage {
    /// Bytes of the chunks taken from the heap.
    pub chunks: u64,
    /// Bytes of committed pages (whole pages).
    pub committed: u64,
    /// Bytes in live pieces.
    pub live: u64,
}

impl Pool {
    /// An empty pool for a region with pages of `page`.
    pub const fn new(page: PageSize) -> Self {
        Self {
            page,
            free: FreeRanges::new(),
            pages: BTreeMap::new(),
            chunks: BTreeMap::new(),
            live: 0,
        }
    }

    /// Takes `size` bytes (more than 0) aligned to `align` from the free
    /// ranges, or `None` if no free range fits. The piece goes to the start
    /// of the shortest range that holds it (see [`FreeRanges::take`]): that
    /// keeps the long ranges (idle pages at the ends of chunks) whole and
    /// fills the gaps between live pieces, whose pages are committed already.
    pub fn take(&mut self, size: u64, align: Alignment) -> Option<Taken> {
        if size == 0 {
            return None;
        }
        let start = self.free.take(size, align)?;
        let end = start.checked_add(size)?;
        self.live = self.live.saturating_add(size);
        let mut committed: Vec<(u64, u64)> = Vec::new();
        for page in pages_of(self.page, start, end) {
            let count = self.pages.entry(page).or_insert(0);
            if *count == 0 {
                let page_end = page.saturating_add(self.page.bytes());
                match committed.last_mut() {
                    Some((_, run_end)) if *run_end == page => *run_end = page_end,
                    _ => committed.push((page, page_end)),
                }
            }
            *count = count.saturating_add(1);
        }
        Some(Taken { start, committed })
    }

    /// Undoes a [`Pool::take`] whose committed pages could not be given their
    /// permissions. The pages it committed are idle again (they never left
    /// read-write); no chunk is released, so the next load reuses them.
    pub fn untake(&mut self, start: u64, size: u64) {
        // The pages went 0 → 1 and were never protected: no work to report.
        let _ = self.give_back(start, size);
    }

    /// Frees the piece `[start, start + size)`, which [`Pool::take`] returned,
    /// and returns the runs of pages (start, end) that no live piece touches
    /// any more: they go back to read-write before anything else uses them.
    pub fn free(&mut self, start: u64, size: u64) -> Vec<(u64, u64)> {
        self.give_back(start, size)
    }

    /// Removes from the pool every chunk overlapping `[start, end)` that no
    /// committed page lies in, and returns them: they go back to the heap.
    pub fn idle_chunks(&mut self, start: u64, end: u64) -> Vec<Chunk> {
        let idle: Vec<Chunk> = self
            .chunks
            .range(..end)
            .rev()
            .take_while(|(_, &chunk_end)| chunk_end > start)
            .map(|(&chunk_start, &chunk_end)| Chunk {
                start: chunk_start,
                end: chunk_end,
            })
            .filter(|chunk| self.pages.range(chunk.start..chunk.end).next().is_none())
            .collect();
        for chunk in &idle {
            self.chunks.remove(&chunk.start);
            self.free.remove(chunk.start, chunk.end);
        }
        idle
    }

    /// Marks `[start, start + size)` free and returns the runs of pages that
    /// no live piece touches any more.
    fn give_back(&mut self, start: u64, size: u64) -> Vec<(u64, u64)> {
        let end = start.saturating_add(size);
        self.live = self.live.saturating_sub(size);
        self.free.give(start, end);
        let mut idle: Vec<(u64, u64)> = Vec::new();
        for page in pages_of(self.page, start, end) {
            let now_idle = match self.pages.get_mut(&page) {
                Some(count) if *count > 1 => {
                    *count = count.saturating_sub(1);
                    false
                }
                Some(_) => true,
                None => false,
            };
            if now_idle {
                self.pages.remove(&page);
                let page_end = page.saturating_add(self.page.bytes());
                match idle.last_mut() {
                    Some((_, run_end)) if *run_end == page => *run_end = page_end,
                    _ => idle.push((page, page_end)),
                }
            }
        }
        idle
    }

    /// Keeps the page at `page` committed for good, with no free bytes: for a
    /// page that could not be made read-write again, so nothing reuses it and
    /// its chunk never goes back to the heap. Returns whether the page was
    /// idle until now (so its bytes are newly lost).
    pub fn quarantine(&mut self, page: u64) -> bool {
        let end = page.saturating_add(self.page.bytes());
        self.free.remove(page, end);
        let count = self.pages.entry(page).or_insert(0);
        let was_idle = *count == 0;
        *count = count.saturating_add(1);
        was_idle
    }

    /// Adds a chunk taken from the heap: all of it free and idle.
    pub fn add_chunk(&mut self, chunk: Chunk) {
        self.chunks.insert(chunk.start, chunk.end);
        self.free.give(chunk.start, chunk.end);
    }

    /// Bytes of chunks, committed pages and live pieces.
    pub fn usage(&self) -> PoolUsage {
        PoolUsage {
            chunks: self
                .chunks
                .iter()
                .map(|(start, end)| end.saturating_sub(*start))
                .fold(0, u64::saturating_add),
            committed: self.committed_bytes(),
            live: self.live,
        }
    }

    /// Whole pages that hold at least one live piece, in bytes.
    pub fn committed_bytes(&self) -> u64 {
        (self.pages.len() as u64).saturating_mul(self.page.bytes())
    }

    /// The size of a chunk for a piece of `size` bytes aligned to `align`:
    /// at least [`CHUNK_PAGES`] pages, whole pages, room for the piece at
    /// any alignment.
    pub fn chunk_size(&self, size: u64, align: Alignment) -> Option<u64> {
        let page = self.page.bytes();
        let needed = size.checked_add(align.bytes().saturating_sub(page))?;
        self.page
            .alignment()
            .align_up(needed.max(CHUNK_PAGES.saturating_mul(page)))
    }
}

/// The addresses of the pages of `page` bytes that `[start, end)` touches.
fn pages_of(page: PageSize, start: u64, end: u64) -> impl Iterator<Item = u64> {
    let first = page.page_start(start);
    let last = page
        .alignment()
        .align_up(end)
        .unwrap_or(page.page_start(u64::MAX));
    (first..last).step_by(page.bytes() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::A16;
    use alloc::vec;

    /// The tests' page size, 4 KiB unless a test says otherwise.
    const PAGE: u64 = 4096;
    const CHUNK: u64 = CHUNK_PAGES * PAGE;

    impl Default for Pool {
        fn default() -> Self {
            Pool::new(PageSize::Size4KiB)
        }
    }

    fn chunk_size(size: u64, align: Alignment) -> Option<u64> {
        Pool::default().chunk_size(size, align)
    }

    fn chunk(start: u64, end: u64) -> Chunk {
        Chunk { start, end }
    }

    fn pool_with_chunk(start: u64, pages: u64) -> Pool {
        let mut pool = Pool::default();
        pool.add_chunk(chunk(start, start + pages * PAGE));
        pool
    }

    /// Runs of pages or chunks, as (start, end).
    type Runs = Vec<(u64, u64)>;

    /// Frees a piece and returns (pages now idle, chunks now idle).
    fn free(pool: &mut Pool, start: u64, size: u64) -> (Runs, Runs) {
        let pages = pool.free(start, size);
        let mut chunks: Vec<(u64, u64)> = pool
            .idle_chunks(start, start + size)
            .iter()
            .map(|chunk| (chunk.start, chunk.end))
            .collect();
        chunks.sort_unstable();
        (pages, chunks)
    }

    #[test]
    fn pieces_share_pages_and_honour_alignment() {
        let mut pool = pool_with_chunk(0x10000, 4);
        let a = pool.take(100, A16).unwrap();
        assert_eq!(a.start, 0x10000);
        assert_eq!(a.committed, vec![(0x10000, 0x11000)]);
        let b = pool.take(10, A16).unwrap();
        // 100 rounded up to 16: the next piece starts at 112, in the same page.
        assert_eq!(b.start, 0x10070);
        assert!(b.committed.is_empty());
        let page_aligned = pool.take(8, PageSize::Size4KiB.alignment()).unwrap();
        assert_eq!(page_aligned.start, 0x11000);
        assert_eq!(page_aligned.committed, vec![(0x11000, 0x12000)]);
        // The gap before the page-aligned piece is reused by a later small piece.
        let c = pool.take(16, A16).unwrap();
        assert_eq!(c.start, 0x10080);
        assert_eq!(pool.usage().committed, 2 * PAGE);
        assert_eq!(pool.usage().live, 100 + 10 + 8 + 16);
    }

    #[test]
    fn a_piece_crosses_pages_and_commits_each_once() {
        let mut pool = pool_with_chunk(0, 4);
        let a = pool.take(3000, A16).unwrap();
        let b = pool.take(6000, A16).unwrap();
        assert_eq!(b.start, 3008);
        // b touches page 0 (already committed) and pages 1 and 2.
        assert_eq!(b.committed, vec![(PAGE, 3 * PAGE)]);
        // Page 0 still holds the start of b.
        assert_eq!(free(&mut pool, a.start, 3000), (vec![], vec![]));
        assert_eq!(
            free(&mut pool, b.start, 6000),
            (vec![(0, 3 * PAGE)], vec![(0, 4 * PAGE)])
        );
        assert_eq!(pool.usage(), PoolUsage::default());
    }

    #[test]
    fn freed_bytes_are_reused_before_new_pages() {
        let mut pool = pool_with_chunk(0, 2);
        let a = pool.take(64, A16).unwrap();
        let b = pool.take(64, A16).unwrap();
        let c = pool.take(64, A16).unwrap();
        assert!(pool.free(b.start, 64).is_empty());
        let d = pool.take(48, A16).unwrap();
        assert_eq!(d.start, b.start);
        let e = pool.take(32, A16).unwrap();
        // 16 bytes left where b was are too small: e goes after c.
        assert_eq!(e.start, c.start + 64);
        assert_eq!(pool.usage().committed, PAGE);
        let _ = a;
    }

    #[test]
    fn no_fit_without_a_chunk_and_too_big_for_the_chunk() {
        let mut pool = Pool::default();
        assert_eq!(pool.take(8, A16), None);
        pool.add_chunk(chunk(0, PAGE));
        assert_eq!(pool.take(PAGE + 1, A16), None);
        assert_eq!(pool.take(0, A16), None);
        assert!(pool.take(PAGE, A16).is_some());
        assert_eq!(pool.take(1, Alignment::BYTE), None);
    }

    #[test]
    fn adjacent_chunks_merge_and_return_separately() {
        let mut pool = pool_with_chunk(0, 1);
        pool.add_chunk(chunk(PAGE, 2 * PAGE));
        // One piece across both chunks.
        let a = pool.take(PAGE + 8, Alignment::BYTE).unwrap();
        assert_eq!(a.start, 0);
        assert_eq!(
            free(&mut pool, 0, PAGE + 8),
            (vec![(0, 2 * PAGE)], vec![(0, PAGE), (PAGE, 2 * PAGE)])
        );
        assert_eq!(pool.usage(), PoolUsage::default());
        assert_eq!(pool.take(1, Alignment::BYTE), None);
    }

    #[test]
    fn a_chunk_stays_while_any_page_is_committed() {
        let mut pool = pool_with_chunk(0, 4);
        let a = pool.take(100, A16).unwrap();
        let far = pool.take(100, Alignment::new(2 * PAGE).unwrap()).unwrap();
        assert_eq!(far.start, 2 * PAGE);
        assert_eq!(free(&mut pool, a.start, 100), (vec![(0, PAGE)], vec![]));
        assert_eq!(
            free(&mut pool, far.start, 100),
            (vec![(2 * PAGE, 3 * PAGE)], vec![(0, 4 * PAGE)])
        );
    }

    #[test]
    fn untake_and_idle_chunk_removal_restore_the_pool() {
        let mut pool = Pool::default();
        pool.add_chunk(chunk(0, 2 * PAGE));
        let a = pool.take(5000, A16).unwrap();
        pool.untake(a.start, 5000);
        assert_eq!(pool.usage().committed, 0);
        assert_eq!(pool.usage().live, 0);
        assert_eq!(pool.idle_chunks(0, 1), vec![chunk(0, 2 * PAGE)]);
        assert_eq!(pool.usage(), PoolUsage::default());
        assert_eq!(pool.take(1, Alignment::BYTE), None);
    }

    #[test]
    fn quarantined_pages_keep_their_chunk() {
        let mut pool = pool_with_chunk(0, 2);
        let a = pool.take(100, A16).unwrap();
        assert_eq!(
            free(&mut pool, a.start, 100),
            (vec![(0, PAGE)], vec![(0, 2 * PAGE)])
        );
        pool.add_chunk(chunk(0, 2 * PAGE));
        pool.quarantine(PAGE);
        let b = pool.take(PAGE, Alignment::BYTE).unwrap();
        assert_eq!(b.start, 0);
        // Only page 1 is left, and it is quarantined.
        assert_eq!(pool.take(1, Alignment::BYTE), None);
        assert_eq!(free(&mut pool, b.start, PAGE).1, vec![]);
    }

    /// With 64 KiB pages, pages are committed and given back 64 KiB at a
    /// time, and chunks are whole 64 KiB pages.
    #[test]
    fn large_pages_commit_and_idle_whole_pages() {
        const BIG: u64 = 65536;
        let mut pool = Pool::new(PageSize::Size64KiB);
        assert_eq!(pool.chunk_size(1, A16), Some(CHUNK_PAGES * BIG));
        assert_eq!(
            pool.chunk_size(CHUNK_PAGES * BIG + 1, A16),
            Some((CHUNK_PAGES + 1) * BIG)
        );
        pool.add_chunk(chunk(0x100_0000, 0x100_0000 + 4 * BIG));
        let a = pool.take(5000, A16).unwrap();
        assert_eq!(a.committed, vec![(0x100_0000, 0x100_0000 + BIG)]);
        let b = pool.take(BIG, A16).unwrap();
        assert_eq!(b.committed, vec![(0x100_0000 + BIG, 0x100_0000 + 2 * BIG)]);
        assert_eq!(pool.usage().committed, 2 * BIG);
        assert_eq!(pool.free(a.start, 5000), vec![]);
        assert_eq!(
            pool.free(b.start, BIG),
            vec![(0x100_0000, 0x100_0000 + 2 * BIG)]
        );
        assert!(pool.quarantine(0x100_0000 + 3 * BIG));
        assert!(!pool.quarantine(0x100_0000 + 3 * BIG));
        assert_eq!(pool.usage().committed, BIG);
    }

    #[test]
    fn chunks_fit_their_piece() {
        assert_eq!(chunk_size(1, A16), Some(CHUNK));
        assert_eq!(chunk_size(CHUNK + 1, A16), Some(CHUNK + PAGE));
        let big = Alignment::new(4 * PAGE).unwrap();
        assert_eq!(chunk_size(CHUNK, big), Some(CHUNK + 3 * PAGE));
        assert_eq!(chunk_size(u64::MAX, A16), None);
    }

    /// Many pieces of mixed sizes taken and freed in a scrambled order: the
    /// pool never hands out overlapping bytes and ends empty.
    #[test]
    fn random_takes_and_frees_never_overlap_and_end_empty() {
        let mut pool = Pool::default();
        let mut next_chunk = 0x100_0000u64;
        let mut live: Vec<(u64, u64)> = Vec::new();
        let mut random = crate::testing::xorshift(0x2545_f491_4f6c_dd1d);
        for round in 0..4000 {
            if live.is_empty() || !random().is_multiple_of(3) {
                let size = 1 + random() % 9000;
                let align = Alignment::new(1 << (random() % 7)).unwrap();
                let taken = match pool.take(size, align) {
                    Some(taken) => taken,
                    None => {
                        let len = chunk_size(size, align).unwrap();
                        // A gap between chunks, so they do not always merge.
                        pool.add_chunk(chunk(next_chunk, next_chunk + len));
                        next_chunk += len + PAGE * (random() % 2);
                        pool.take(size, align).unwrap()
                    }
                };
                assert_eq!(taken.start % align.bytes(), 0);
                for &(start, len) in &live {
                    assert!(taken.start + size <= start || start + len <= taken.start);
                }
                live.push((taken.start, size));
            } else {
                let index = (random() % live.len() as u64) as usize;
                let (start, size) = live.swap_remove(index);
                free(&mut pool, start, size);
            }
            if round % 16 != 0 {
                continue;
            }
            pool.free.check();
            let committed: alloc::collections::BTreeSet<u64> = live
                .iter()
                .flat_map(|&(start, size)| pages_of(PageSize::Size4KiB, start, start + size))
                .collect();
            assert_eq!(pool.usage().committed, committed.len() as u64 * PAGE);
        }
        for (start, size) in live.drain(..) {
            free(&mut pool, start, size);
        }
        assert_eq!(pool.usage(), PoolUsage::default());
        assert!(pool.free.is_empty());
    }
}
