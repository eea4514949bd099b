//! Free address ranges, for the region's reservations and for packed
//! placement's pools: a fit is found, and a range given back and merged, in
//! time logarithmic in the number of ranges. After thousands of loads and
//! unloads in any order, memory can be left in thousands of holes. A list of
//! holes walked first-fit would then cost a load one cache miss per hole
//! (a millisecond at 5,000 holes), and that cost would grow with every
//! module loaded before it.
//!
//! Only addresses are kept here, in the loader's heap: nothing is written
//! into the free memory itself, so a range's pages may have any permissions.

use alloc::collections::{BTreeMap, BTreeSet};

use crate::addr::Alignment;

/// Disjoint free ranges `[start, end)`, never empty, adjacent ones merged.
#[derive(Debug, Default)]
pub(crate) struct FreeRanges {
    /// start → end.
    by_start: BTreeMap<u64, u64>,
    /// The same ranges as (length, start), for finding a fit.
    by_length: BTreeSet<(u64, u64)>,
}

/// How many ranges shorter than sure to hold a piece [`FreeRanges::take`]
/// tries first, for a tighter fit.
const TIGHT_TRIES: usize = 4;

impl FreeRanges {
    /// No free range.
    pub const fn new() -> Self {
        Self {
            by_start: BTreeMap::new(),
            by_length: BTreeSet::new(),
        }
    }

    /// Takes `size` bytes (more than 0) aligned to `align` and returns their
    /// start, or `None` if no range holds them. They come from the start of
    /// the shortest range that holds them: long ranges stay whole for large
    /// requests, and gaps are filled first.
    pub fn take(&mut self, size: u64, align: Alignment) -> Option<u64> {
        if size == 0 {
            return None;
        }
        let fits = |&(length, from): &(u64, u64)| {
            let to = from.checked_add(length)?;
            let start = align.align_up(from)?;
            let end = start.checked_add(size)?;
            (end <= to).then_some((from, to, start, end))
        };
        // A range at least this long holds the piece wherever it starts.
        let sure = size.checked_add(align.bytes().saturating_sub(1))?;
        // Shorter ones may or may not, by where they start: a few are tried
        // first, then the shortest sure one, so a take stays logarithmic.
        // Only when no range is sure (about to fail, or a range exactly as
        // long as the piece was just added) are the rest of the shorter
        // ones tried.
        let tight = self.by_length.range((size, 0)..(sure, 0));
        let (from, to, start, end) = tight
            .clone()
            .take(TIGHT_TRIES)
            .find_map(fits)
            .or_else(|| self.by_length.range((sure, 0)..).next().and_then(fits))
            .or_else(|| tight.skip(TIGHT_TRIES).find_map(fits))?;
        self.unlist(from);
        if from < start {
            self.list(from, start);
        }
        if end < to {
            self.list(end, to);
        }
        Some(start)
    }

    /// Marks `[start, end)` free, merging it with its neighbours. It must not
    /// overlap a free range.
    pub fn give(&mut self, mut start: u64, mut end: u64) {
        if let Some((&before, &before_end)) = self.by_start.range(..start).next_back() {
            if before_end == start {
                self.unlist(before);
                start = before;
            }
        }
        if let Some(after_end) = self.unlist(end) {
            end = after_end;
        }
        if start < end {
            self.list(start, end);
        }
    }

    /// Takes `[start, end)` out of the free ranges, if one free range holds
    /// all of it.
    pub fn remove(&mut self, start: u64, end: u64) {
        let Some((&from, &to)) = self.by_start.range(..=start).next_back() else {
            return;
        };
        if to < end {
            return;
        }
        self.unlist(from);
        if from < start {
            self.list(from, start);
        }
        if end < to {
            self.list(end, to);
        }
    }

    /// Whether no range is free.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.by_start.is_empty()
    }

    fn list(&mut self, start: u64, end: u64) {
        self.by_start.insert(start, end);
        self.by_length.insert((end.saturating_sub(start), start));
    }

    /// Takes the range starting at `start` out of both indexes and returns
    /// its end, if there is one.
    fn unlist(&mut self, start: u64) -> Option<u64> {
        let end = self.by_start.remove(&start)?;
        self.by_length.remove(&(end.saturating_sub(start), start));
        Some(end)
    }

    /// Panics unless both indexes list the same ranges, none empty, none
    /// adjacent to the next.
    #[cfg(test)]
    pub fn check(&self) {
        let by_start: BTreeSet<(u64, u64)> = self
            .by_start
            .iter()
            .map(|(&start, &end)| (end - start, start))
            .collect();
        assert_eq!(by_start, self.by_length);
        let mut previous_end = None;
        for (&start, &end) in &self.by_start {
            assert!(start < end);
            assert!(previous_end.is_none_or(|previous| previous < start));
            previous_end = Some(end);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::A16;
    use alloc::vec::Vec;

    fn ranges(start: u64, end: u64) -> FreeRanges {
        let mut ranges = FreeRanges::new();
        ranges.give(start, end);
        ranges
    }

    /// Among ranges that hold a piece, the shortest is used, so a gap is
    /// filled before a long range is split; and a range that is long enough
    /// only at the wrong alignment is passed over.
    #[test]
    fn pieces_go_to_the_shortest_range_that_holds_them() {
        let mut free = ranges(0x10000, 0x18000);
        let a = free.take(0x100, A16).unwrap();
        let gap = free.take(0x40, A16).unwrap();
        let b = free.take(0x100, A16).unwrap();
        let small_gap = free.take(0x20, A16).unwrap();
        let _c = free.take(0x100, A16).unwrap();
        assert_eq!((a, gap, b), (0x10000, 0x10100, 0x10140));
        free.give(gap, gap + 0x40);
        free.give(small_gap, small_gap + 0x20);
        free.check();
        // 0x20 fits the later 0x20 gap exactly: the earlier, longer gap
        // stays whole (first fit by address would split it).
        assert_eq!(free.take(0x20, A16), Some(small_gap));
        // 0x30 fits the 0x40 gap, not the long rest.
        assert_eq!(free.take(0x30, A16), Some(gap));
        // Every gap is now too short: the long rest.
        assert!(free.take(0x20, A16).unwrap() > 0x10260);
        free.check();
        // A range as long as the piece but misaligned for it is skipped.
        let mut free = ranges(0x20000, 0x21000);
        let _first = free.take(0x10, A16).unwrap();
        let odd = free.take(0x40, A16).unwrap();
        let _rest = free.take(0x100, A16).unwrap();
        free.give(odd, odd + 0x40);
        // [0x20010, 0x20050) is free and 0x40 long, but a 0x40 piece aligned
        // to 256 fits only in the rest of the page.
        let aligned = free.take(0x40, Alignment::new(256).unwrap());
        assert_eq!(aligned, Some(0x20200));
        free.check();
    }

    /// More than `TIGHT_TRIES` ranges just long enough but misaligned, and
    /// one that fits: it is still found (the last resort), so a take fails
    /// only when nothing fits.
    #[test]
    fn a_fit_among_many_misaligned_ranges_is_found() {
        let mut free = FreeRanges::new();
        for index in 0..10u64 {
            let start = 0x10000 * (index + 1) + 8;
            free.give(start, start + 0x40);
        }
        free.give(0x100000, 0x100040);
        assert_eq!(free.take(0x40, A16), Some(0x100000));
        assert_eq!(free.take(0x40, A16), None);
        free.check();
    }

    /// Gives and takes merge and split ranges so that, whatever the order,
    /// giving everything back leaves the first range whole again.
    #[test]
    fn random_takes_and_gives_end_whole() {
        let mut free = ranges(0x1000_0000, 0x1100_0000);
        let mut live: Vec<(u64, u64)> = Vec::new();
        let mut random = crate::testing::xorshift(0x2545_f491_4f6c_dd1d);
        for round in 0..5000 {
            if live.is_empty() || !random().is_multiple_of(3) {
                let size = 1 + random() % 20_000;
                let align = Alignment::new(1 << (random() % 13)).unwrap();
                let Some(start) = free.take(size, align) else {
                    continue;
                };
                assert_eq!(start % align.bytes(), 0);
                for &(other, other_size) in &live {
                    assert!(start + size <= other || other + other_size <= start);
                }
                live.push((start, size));
            } else {
                let index = (random() % live.len() as u64) as usize;
                let (start, size) = live.swap_remove(index);
                free.give(start, start + size);
            }
            if round % 64 == 0 {
                free.check();
            }
        }
        for (start, size) in live.drain(..) {
            free.give(start, start + size);
        }
        free.check();
        assert_eq!(free.take(0x100_0000, A16), Some(0x1000_0000));
        assert!(free.is_empty());
    }
}
