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

/// The size of the pages a [`Region`](crate::Region)'s memory is protected
/// in: the granule of every permission change, so each segment of a module
/// starts and ends on one of these boundaries. AArch64 kernels and hosts may
/// use 4, 16 or 64 KiB pages; x86-64 uses 4 KiB.
///
/// The value is the page's shift (log2 of its bytes), so rounding to a page
/// is a mask, as cheap as with a constant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum PageSize {
    /// 4 KiB pages: x86-64, and AArch64 with the 4 KiB granule.
    #[default]
    Size4KiB = 12,
    /// 16 KiB pages (AArch64, e.g. Apple silicon and some Android kernels).
    Size16KiB = 14,
    /// 64 KiB pages (AArch64, e.g. some server distributions).
    Size64KiB = 16,
}

impl PageSize {
    /// The page size of `bytes` (4096, 16384 or 65536), if it is one of them.
    pub const fn new(bytes: u64) -> Option<Self> {
        match bytes {
            4096 => Some(Self::Size4KiB),
            16384 => Some(Self::Size16KiB),
            65536 => Some(Self::Size64KiB),
            _ => None,
        }
    }

    /// The page's size in bytes.
    pub const fn bytes(self) -> u64 {
        1 << self as u8
    }

    /// The page's size as an alignment.
    pub const fn alignment(self) -> Alignment {
        Alignment(self.bytes())
    }

    /// The first address of the page `value` lies in.
    pub const fn page_start(self, value: u64) -> u64 {
        value & !self.bytes().wrapping_sub(1)
    }
}

impl fmt::Display for PageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} KiB", self.bytes() >> 10)
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
        let page = PageSize::Size4KiB.alignment();
        assert_eq!(page.align_up(1), Some(4096));
        assert_eq!(page.align_up(4096), Some(4096));
        assert_eq!(page.align_up(u64::MAX), None);
    }

    #[test]
    fn page_sizes_are_the_three_granules() {
        for (page, bytes) in [
            (PageSize::Size4KiB, 4096),
            (PageSize::Size16KiB, 16384),
            (PageSize::Size64KiB, 65536),
        ] {
            assert_eq!(page.bytes(), bytes);
            assert_eq!(PageSize::new(bytes), Some(page));
            assert_eq!(page.alignment().align_up(1), Some(bytes));
            assert_eq!(page.page_start(bytes + 5), bytes);
        }
        assert_eq!(PageSize::default(), PageSize::Size4KiB);
        for bad in [0, 1, 2048, 8192, 32768, 1 << 17, 4095] {
            assert_eq!(PageSize::new(bad), None, "{bad}");
        }
        assert_eq!(alloc::format!("{}", PageSize::Size64KiB), "64 KiB");
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
