//! Target addresses and alignments, with arithmetic that cannot overflow silently.

use core::fmt;

/// An address in the address space where module code runs (the *target*).
///
/// It is a plain 64-bit number on every host, so a 64-bit module can be linked
/// for another machine. Arithmetic is checked: values come from untrusted ELF
/// files, and an overflow means the input was bad, not that the address wraps.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct VirtAddr(u64);

impl VirtAddr {
    /// The address `value`.
    pub const fn new(value: u64) -> Self {
        Self(value)
    }

    /// The address of a host pointer.
    pub fn from_ptr<T: ?Sized>(pointer: *const T) -> Self {
        Self(pointer.cast::<u8>() as usize as u64)
    }

    /// The address as a number.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// `self + offset`, or `None` past the end of the 64-bit space.
    pub const fn checked_add(self, offset: u64) -> Option<Self> {
        match self.0.checked_add(offset) {
            Some(value) => Some(Self(value)),
            None => None,
        }
    }

    /// The distance from `base` up to `self`, or `None` when `self < base`.
    pub const fn checked_offset_from(self, base: VirtAddr) -> Option<u64> {
        self.0.checked_sub(base.0)
    }
}

impl fmt::Debug for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VirtAddr({:#x})", self.0)
    }
}

impl fmt::Display for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::LowerHex for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

/// A power-of-two alignment in bytes. The constructor is the only way to get
/// one, so every `Alignment` in the loader is valid.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Alignment(u64);

impl Alignment {
    /// No constraint (1 byte).
    pub const BYTE: Alignment = Alignment(1);
    /// The page size the loader protects memory in: 4 KiB on both supported
    /// architectures (the AArch64 kernels use the 4 KiB granule).
    pub const PAGE: Alignment = Alignment(4096);

    /// `bytes` as an alignment, if it is a power of two.
    pub const fn new(bytes: u64) -> Option<Self> {
        if bytes.is_power_of_two() {
            Some(Self(bytes))
        } else {
            None
        }
    }

    /// An ELF `sh_addralign`/`st_value` alignment, where 0 means "none".
    pub const fn from_elf(value: u64) -> Option<Self> {
        if value == 0 {
            Some(Self::BYTE)
        } else {
            Self::new(value)
        }
    }

    /// The alignment in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// The smallest multiple of this alignment at or above `value`.
    pub const fn align_up(self, value: u64) -> Option<u64> {
        // `self.0` is a power of two, so at least 1: `mask` cannot wrap.
        let mask = self.0.wrapping_sub(1);
        match value.checked_add(mask) {
            Some(bumped) => Some(bumped & !mask),
            None => None,
        }
    }

    /// Whether `value` is a multiple of this alignment.
    pub const fn is_aligned(self, value: u64) -> bool {
        value & self.0.wrapping_sub(1) == 0
    }

    /// The larger of two alignments.
    pub fn max(self, other: Alignment) -> Alignment {
        if other.0 > self.0 {
            other
        } else {
            self
        }
    }
}

impl fmt::Debug for Alignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Alignment({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_rejects_non_powers_of_two() {
        assert!(Alignment::new(0).is_none());
        assert!(Alignment::new(3).is_none());
        assert_eq!(Alignment::from_elf(0), Some(Alignment::BYTE));
        assert_eq!(Alignment::new(8).map(Alignment::bytes), Some(8));
    }

    #[test]
    fn align_up_reports_overflow() {
        assert_eq!(Alignment::PAGE.align_up(1), Some(4096));
        assert_eq!(Alignment::PAGE.align_up(4096), Some(4096));
        assert_eq!(Alignment::PAGE.align_up(u64::MAX), None);
    }

    #[test]
    fn address_arithmetic_is_checked() {
        assert_eq!(VirtAddr::new(u64::MAX).checked_add(1), None);
        assert_eq!(
            VirtAddr::new(10).checked_offset_from(VirtAddr::new(11)),
            None
        );
        assert_eq!(
            VirtAddr::new(10).checked_offset_from(VirtAddr::new(4)),
            Some(6)
        );
    }
}
