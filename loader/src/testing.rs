//! Helpers shared by the crate's unit tests.

use crate::addr::Alignment;

/// 16-byte alignment, the usual one for code and data pieces.
pub(crate) const A16: Alignment = match Alignment::new(16) {
    Some(align) => align,
    None => Alignment::BYTE,
};

/// A xorshift64 generator from `seed` (not 0): the same sequence on every
/// run and every host, so a failing random case can be replayed.
pub(crate) fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}
