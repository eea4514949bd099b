//! The namespace's hash index: open addressing over stored name hashes.

use alloc::vec::Vec;

/// An entry of a [`HashIndex`]: knows its (nonzero) hash.
pub(crate) trait Hashed: Copy {
    /// The empty slot; its hash is 0.
    const EMPTY: Self;
    fn hash(&self) -> u64;
}

/// An open-addressing table with linear probing over stored hashes.
///
/// `hashbrown`'s SwissTable costs 50 to 65 instructions per insert or probe
/// here (its group scan and `reserve` check are not inlined without its
/// `inline-more` feature); most lookups in this table end at the first slot,
/// for a dozen. Kept at most half full, so a probe always meets an empty slot
/// and runs are short. Removal shifts the run back instead of leaving
/// tombstones, so lookups never slow down as modules come and go. Growth
/// reinserts by stored hash: no name is hashed again.
pub(crate) struct HashIndex<T> {
    /// Empty, or a power of two long.
    pub(crate) slots: Vec<T>,
    pub(crate) len: usize,
}

/// Where a probe ended.
pub(crate) enum Probe {
    Found(usize),
    /// The empty slot where the entry would go.
    Vacant(usize),
}

impl<T: Hashed> HashIndex<T> {
    pub(crate) const fn new() -> Self {
        Self {
            slots: Vec::new(),
            len: 0,
        }
    }

    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let mut index = Self::new();
        index.reserve(capacity);
        index
    }

    #[inline]
    pub(crate) fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// Room for `additional` more entries without growing.
    #[inline]
    pub(crate) fn reserve(&mut self, additional: usize) {
        let wanted = self.len.saturating_add(additional).saturating_mul(2);
        if wanted > self.slots.len() {
            self.grow(wanted);
        }
    }

    /// Moves every entry to a table of at least `wanted` slots.
    #[cold]
    pub(crate) fn grow(&mut self, wanted: usize) {
        let size = wanted
            .max(16)
            .checked_next_power_of_two()
            .unwrap_or(usize::MAX);
        let old = core::mem::replace(&mut self.slots, alloc::vec![T::EMPTY; size]);
        for entry in old {
            if entry.hash() != 0 {
                if let Probe::Vacant(at) = self.probe(entry.hash(), |_| false) {
                    if let Some(slot) = self.slots.get_mut(at) {
                        *slot = entry;
                    }
                }
            }
        }
    }

    /// The entry with `hash` that `eq` accepts, else the slot for one.
    /// `Vacant` with no slot behind it only in an empty table.
    #[inline]
    pub(crate) fn probe(&self, hash: u64, mut eq: impl FnMut(&T) -> bool) -> Probe {
        let mask = self.mask();
        let mut at = hash as usize & mask;
        // At most half full: the run ends at an empty slot.
        while let Some(slot) = self.slots.get(at) {
            let stored = slot.hash();
            if stored == 0 {
                return Probe::Vacant(at);
            }
            if stored == hash && eq(slot) {
                return Probe::Found(at);
            }
            at = at.wrapping_add(1) & mask;
        }
        Probe::Vacant(at)
    }

    /// Reads the home slot of each of `hashes`, so that the cache misses of
    /// a batch of probes overlap. These reads do not wait on one another,
    /// where each probe's loop waits on its own. Once thousands of modules
    /// have made the table larger than the caches, most probes miss.
    pub(crate) fn warm(&self, hashes: impl Iterator<Item = u64>) {
        // A table this small stays in the second-level cache: nothing to
        // overlap, and the reads would only cost their instructions.
        const FROM_BYTES: usize = 256 * 1024;
        if self.slots.len().saturating_mul(core::mem::size_of::<T>()) < FROM_BYTES {
            return;
        }
        let mask = self.mask();
        let mut seen = 0u64;
        for hash in hashes {
            if let Some(slot) = self.slots.get(hash as usize & mask) {
                seen ^= slot.hash();
            }
        }
        core::hint::black_box(seen);
    }

    #[inline]
    pub(crate) fn find(&self, hash: u64, eq: impl FnMut(&T) -> bool) -> Option<&T> {
        match self.probe(hash, eq) {
            Probe::Found(at) => self.slots.get(at),
            Probe::Vacant(_) => None,
        }
    }

    /// Puts `entry` in slot `at`, which `probe` found vacant with no insert
    /// or removal since (and after a `reserve` that made room for it).
    #[inline]
    pub(crate) fn fill(&mut self, at: usize, entry: T) {
        if let Some(slot) = self.slots.get_mut(at) {
            *slot = entry;
            self.len = self.len.saturating_add(1);
        }
    }

    /// Adds `entry`, known not to be in the table.
    #[inline]
    pub(crate) fn insert(&mut self, entry: T) {
        self.reserve(1);
        if let Probe::Vacant(at) = self.probe(entry.hash(), |_| false) {
            self.fill(at, entry);
        }
    }

    /// Removes the entry in slot `at`, moving later entries of its run back
    /// so that every entry stays reachable from its home slot.
    #[inline]
    pub(crate) fn remove_at(&mut self, at: usize) {
        let mask = self.mask();
        let mut hole = at;
        let mut next = at.wrapping_add(1) & mask;
        // Only the hash is read of an entry that stays where it is.
        while let Some(stored) = self.slots.get(next).map(Hashed::hash) {
            if stored == 0 {
                break;
            }
            let home = stored as usize & mask;
            // It may fill the hole if the hole lies between its home and
            // where it is now (cyclically).
            if next.wrapping_sub(home) & mask >= next.wrapping_sub(hole) & mask {
                if let Some(&entry) = self.slots.get(next) {
                    if let Some(slot) = self.slots.get_mut(hole) {
                        *slot = entry;
                    }
                }
                hole = next;
            }
            next = next.wrapping_add(1) & mask;
        }
        if let Some(slot) = self.slots.get_mut(hole) {
            *slot = T::EMPTY;
            self.len = self.len.saturating_sub(1);
        }
    }

    /// Removes the entry with `hash` that `eq` accepts, if any.
    #[inline]
    pub(crate) fn remove(&mut self, hash: u64, eq: impl FnMut(&T) -> bool) {
        if let Probe::Found(at) = self.probe(hash, eq) {
            self.remove_at(at);
        }
    }
}

/// A module index slot: a name's hash and its definition's position.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Position {
    pub(crate) hash: u64,
    pub(crate) at: u32,
}

impl Hashed for Position {
    const EMPTY: Self = Self { hash: 0, at: 0 };
    fn hash(&self) -> u64 {
        self.hash
    }
}
