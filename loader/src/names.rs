//! Names as every table keys them: one hash per name, computed once where
//! the name is read (the symbol table reader hashes a name in the same pass
//! that finds its end) and stored beside it wherever it goes, so that no
//! table hashes a string again.

use foldhash::fast::FixedState;
use hashbrown::HashMap;

/// The hasher of every name index: fixed (a `no_std` kernel has no entropy to
/// seed one), fast on short strings. Names come from the modules loaded, which
/// the loader's owner chose (and may have required signatures for).
pub(crate) type NameHasher = FixedState;

/// A hash index keyed by name.
pub(crate) type NameMap<K, V> = HashMap<K, V, NameHasher>;

/// The seed of every name index.
pub(crate) const NAME_HASHER: NameHasher = FixedState::with_seed(0x6d6f_646c_6f61_6400);

/// The one hash of a name that every table stores and probes with. Never 0,
/// which marks an empty slot of the namespace's index; the top bit is the one
/// given up, because slots are chosen by the low bits.
///
/// It is [`NameHash`] over the name's 8-byte words, so that the symbol table
/// reader can hash a name in the same pass that finds its NUL.
pub(crate) fn name_hash(name: &str) -> u64 {
    let (words, tail) = name.as_bytes().as_chunks::<8>();
    let mut state = NameHash::new();
    for word in words {
        state = state.word(u64::from_le_bytes(*word));
    }
    let mut last = [0u8; 8];
    if let Some(start) = last.get_mut(..tail.len()) {
        start.copy_from_slice(tail);
    }
    state.finish(u64::from_le_bytes(last))
}

/// The hash of the empty name (symbols without one).
pub(crate) const EMPTY_NAME_HASH: u64 = NameHash::new().finish(0);

/// The 64-bit product of `x` and `y`, folded: both halves of the 128-bit
/// product, so every bit of the inputs reaches the low bits slots are
/// chosen by.
const fn fold(x: u64, y: u64) -> u64 {
    let full = (x as u128).wrapping_mul(y as u128);
    (full as u64) ^ ((full >> 64) as u64)
}

/// [`name_hash`] in steps: one multiply per 8 bytes of name, and one for the
/// last, zero-padded (possibly empty) word. Names have no NUL bytes, so the
/// words determine the name without its length: the last word is the only
/// one with zero bytes, and they are its padding. A name with a NUL (only
/// ever a name asked for, never one read from a table) may share its hash
/// with a shorter one, which costs a byte comparison, never a wrong answer.
#[derive(Clone, Copy)]
pub(crate) struct NameHash(u64);

impl NameHash {
    /// Odd, with bits spread over the word (the 64-bit golden ratio).
    const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

    /// Before the first word.
    pub const fn new() -> Self {
        Self(0x6d6f_646c_6f61_6400)
    }

    /// Takes in eight bytes of name (little-endian), none of them NUL.
    #[inline]
    pub const fn word(self, word: u64) -> Self {
        Self(fold(self.0 ^ word, Self::MULTIPLIER))
    }

    /// The hash, given the name's last bytes (fewer than eight, possibly
    /// none) as a little-endian word padded with zeros.
    #[inline]
    pub const fn finish(self, last: u64) -> u64 {
        // Another multiplier than `word`'s keeps the last step apart from
        // a full word's.
        fold(self.0 ^ last, Self::MULTIPLIER.rotate_left(32) | 1) | 1 << 63
    }
}
