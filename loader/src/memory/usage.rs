//! What a region reports: how much of it is in use, and why it refused the
//! memory it was given.

use crate::addr::{PageSize, VirtAddr};
#[cfg(doc)]
use crate::memory::protection::MemoryProtection;

/// How much of a region packed placement ([`crate::Loader::packed`]) uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PackedUsage {
    /// Bytes of the chunks packed placement holds from the region (part of
    /// [`RegionUsage::used`]): committed pages and idle pages kept for the
    /// next pieces of the same permissions.
    pub reserved: usize,
    /// Bytes of the whole pages that hold at least one live piece: the pages
    /// that carry module permissions. Idle pages stay read-write.
    pub committed: usize,
    /// Bytes in live pieces (each module segment's exact size).
    pub pieces: usize,
}

/// How much of a region grouped placement ([`crate::Loader::grouped`]) uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupedUsage {
    /// Bytes of the chunks taken from the region for grouped segments
    /// (counted in [`RegionUsage::used`]).
    pub reserved: usize,
    /// Bytes of the pages of loaded modules' segments in them.
    pub segments: usize,
}

/// How much of a region is in use: `used + free + lost == size` at every
/// moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionUsage {
    /// Total bytes handed to the region.
    pub size: usize,
    /// Bytes in live reservations (and the chunks grouped and packed
    /// placement hold), not counting `lost`.
    pub used: usize,
    /// Bytes not reserved.
    pub free: usize,
    /// Bytes kept out of use for good because the [`MemoryProtection`]
    /// could not make them read-write again.
    ///
    /// A failed load leaves the region as it was, except memory whose
    /// permissions the backend could not restore: it is counted in `lost`
    /// and never handed out again. The same holds for unloading, which
    /// makes a module's pages read-write before the region reuses them.
    /// The loader never hands out memory whose permissions it does not know
    /// (the next module would fault writing it); a backend that refuses
    /// every call loses the pages of each load that tried to protect them.
    pub lost: usize,
}

/// Why a region could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionError {
    /// `init` was called on a region that already has memory.
    AlreadyInitialized,
    /// The memory's start is a null pointer.
    NullStart,
    /// The memory's start is not a multiple of the region's page size.
    Misaligned {
        /// The start given.
        start: VirtAddr,
        /// The region's page size.
        page: PageSize,
    },
    /// The memory is smaller than one page.
    TooSmall {
        /// Bytes given.
        size: usize,
        /// The fewest bytes a region takes: one page.
        minimum: usize,
    },
    /// The memory runs past the end of the address space.
    WrapsAround {
        /// The start given.
        start: VirtAddr,
        /// Bytes given.
        size: usize,
    },
}

impl core::fmt::Display for RegionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            RegionError::AlreadyInitialized => f.write_str("region already has memory"),
            RegionError::NullStart => f.write_str("region memory starts at a null pointer"),
            RegionError::Misaligned { start, page } => write!(
                f,
                "region memory at {start} is not aligned to its {page} pages ({:#x} bytes)",
                page.bytes()
            ),
            RegionError::TooSmall { size, minimum } => write!(
                f,
                "region memory of {size} bytes is smaller than one page ({minimum} bytes)"
            ),
            RegionError::WrapsAround { start, size } => write!(
                f,
                "region memory of {size} bytes at {start} runs past the end of the address space"
            ),
        }
    }
}

impl core::error::Error for RegionError {}
