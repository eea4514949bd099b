//! The AArch64 kernel backend: EL1 stage-1 page tables with W^X per 4 KiB page.
//!
//! [`PageTables`] manages a translation regime with a 4 KiB granule and a
//! 39-bit virtual address space (`TCR_EL1.T0SZ` = 25), so a walk starts at
//! level 1 and ends at level 3; every mapping is a level-3 page, so changing
//! the permissions of one page never needs a block split. Tables come from a
//! pool of frames the caller gives once (a `static`), and the pool must be
//! identity-mapped: a table's virtual address is its physical address.
//!
//! [`Aarch64Protection`] puts the tables behind a lock and implements
//! [`MemoryProtection`] over them: `protect` rewrites the level-3 descriptors
//! and invalidates exactly the TLB entries of the pages it touched, and
//! `sync_instruction_cache` maintains only the pages the tables map.
//!
//! Permissions map to descriptors as follows (EL0 never has access):
//!
//! | permissions | `AP[2:1]` | `PXN` | `UXN` |
//! | --- | --- | --- | --- |
//! | `r--` | `10` (read-only) | 1 | 1 |
//! | `rw-` | `00` (read-write) | 1 | 1 |
//! | `r-x` | `10` (read-only) | 0 | 1 |
//! | `rwx` | refused | | |
//! | `---` | the descriptor is made invalid, and remembers its page | | |
//!
//! EL1 cannot have execute-only or write-only pages: execute implies read and
//! write implies read. The register values the kernel needs to turn this
//! regime on ([`mair_value`], [`tcr_value`]) live here too, so the attribute
//! indices and walk attributes always agree with the descriptors; on a
//! bare-metal AArch64 target, `enable_mmu` writes them.
//!
//! Only the TLB and register instructions are AArch64-specific (and only built
//! for `target_os = "none"`, where the code runs at EL1); the table logic is
//! plain Rust, so it is unit-tested on any host.

use core::sync::atomic::{AtomicU64, Ordering};

use aarch64_cpu::registers::{MAIR_EL1, TCR_EL1};
use modload::{MemoryProtection, Permissions, ProtectionError, VirtAddr};

mod tables;

pub use tables::{Mapping, PageTables, TableFrame};

/// The translation granule and the size of every mapping.
pub const PAGE_SIZE: u64 = 4096;
/// Bits of virtual address the regime translates: `[0, 2^39)`.
pub const VIRTUAL_ADDRESS_BITS: u32 = 39;
/// `TCR_EL1.T0SZ` for [`VIRTUAL_ADDRESS_BITS`].
pub const T0SZ: u64 = 64 - VIRTUAL_ADDRESS_BITS as u64;
/// Descriptors per table.
const ENTRIES: usize = 512;
/// The end of the translated virtual address space.
const VIRTUAL_LIMIT: u64 = 1 << VIRTUAL_ADDRESS_BITS;
/// The largest output address a descriptor holds (bits `[47:12]`).
const PHYSICAL_LIMIT: u64 = 1 << 48;
/// Bytes one level-2 descriptor covers (one level-3 table).
const LEVEL2_SPAN: u64 = 1 << 21;
/// Bytes one level-1 descriptor covers (one level-2 table).
const LEVEL1_SPAN: u64 = 1 << 30;

bitflags::bitflags! {
    /// A VMSAv8-64 stage-1 descriptor with a 4 KiB granule: the bits this
    /// module sets. Table descriptors use only `VALID`, `TABLE_OR_PAGE` and
    /// the address.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Descriptor: u64 {
        /// Bit 0: the descriptor translates; clear, the access faults.
        const VALID = 1;
        /// Bit 1: at levels 1 and 2 the descriptor points to the next table
        /// (clear would be a block); at level 3 it must be set for a page.
        const TABLE_OR_PAGE = 1 << 1;
        /// Bits `[4:2]`, `AttrIndx`: which `MAIR_EL1` attribute byte applies
        /// (see [`MemoryAttributes`]).
        const ATTRIBUTE_INDEX = 0b111 << 2;
        /// Bit 6, `AP[1]`: EL0 may access the page. Never set here.
        const EL0_ACCESS = 1 << 6;
        /// Bit 7, `AP[2]`: read-only at every level.
        const READ_ONLY = 1 << 7;
        /// Bits `[9:8]`, `SH` = `0b11`: inner shareable, so every core's
        /// caches see the same memory (Device memory ignores it).
        const INNER_SHAREABLE = 0b11 << 8;
        /// Bit 10, `AF`: the page was accessed. Set from the start, so no
        /// access-flag fault ever happens.
        const ACCESSED = 1 << 10;
        /// Bits `[47:12]`: the output address (next table or page frame).
        const ADDRESS = 0x0000_ffff_ffff_f000;
        /// Bit 53, `PXN`: EL1 may not execute from the page.
        const PRIVILEGED_EXECUTE_NEVER = 1 << 53;
        /// Bit 54, `UXN`: EL0 may not execute from the page. Always set.
        const UNPRIVILEGED_EXECUTE_NEVER = 1 << 54;
        /// Bit 55, ignored by the hardware: on an invalid level-3
        /// descriptor, the page is mapped but its permissions are "none", and
        /// the rest of the descriptor still holds its address and attributes.
        const NO_ACCESS = 1 << 55;
    }
}

/// Memory types, each one attribute byte of `MAIR_EL1` ([`mair_value`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemoryAttributes {
    /// Index 0: normal memory, write-back, read- and write-allocate, inner
    /// and outer. RAM, code and page tables.
    Normal,
    /// Index 1: Device-nGnRE. Memory-mapped I/O such as a UART; never executable.
    Device,
}

impl MemoryAttributes {
    /// The `AttrIndx` value.
    const fn index(self) -> u64 {
        match self {
            MemoryAttributes::Normal => 0,
            MemoryAttributes::Device => 1,
        }
    }

    /// The descriptor bits selecting this type.
    fn bits(self) -> Descriptor {
        Descriptor::from_bits_retain(self.index() << 2)
    }

    /// The type a descriptor selects, if it is one of ours.
    fn from_descriptor(descriptor: Descriptor) -> Option<Self> {
        match (descriptor & Descriptor::ATTRIBUTE_INDEX).bits() >> 2 {
            0 => Some(MemoryAttributes::Normal),
            1 => Some(MemoryAttributes::Device),
            _ => None,
        }
    }
}

/// `MAIR_EL1` for [`MemoryAttributes`]: attribute 0 normal write-back
/// (`0xff`), attribute 1 Device-nGnRE (`0x04`).
pub fn mair_value() -> u64 {
    (MAIR_EL1::Attr0_Normal_Outer::WriteBack_NonTransient_ReadWriteAlloc
        + MAIR_EL1::Attr0_Normal_Inner::WriteBack_NonTransient_ReadWriteAlloc
        + MAIR_EL1::Attr1_Device::nonGathering_nonReordering_EarlyWriteAck)
        .value
}

/// `TCR_EL1` for this regime: TTBR0 only (TTBR1 walks disabled), T0SZ 25,
/// 4 KiB granule, table walks inner shareable and write-back cacheable, and
/// the intermediate physical address size from `ID_AA64MMFR0_EL1.PARange`
/// (`pa_range`, capped at 48 bits, which is all a descriptor here holds).
pub fn tcr_value(pa_range: u64) -> u64 {
    // PARange and IPS share one encoding: 0b000 is 32 bits ... 0b101 48 bits.
    let ips = pa_range.min(0b101);
    (TCR_EL1::T0SZ.val(T0SZ)
        + TCR_EL1::EPD0::EnableTTBR0Walks
        + TCR_EL1::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
        + TCR_EL1::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
        + TCR_EL1::SH0::Inner
        + TCR_EL1::TG0::KiB_4
        + TCR_EL1::A1::TTBR0
        + TCR_EL1::EPD1::DisableTTBR1Walks
        + TCR_EL1::IPS.val(ips))
    .value
}

/// Why the tables refused a request; nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// An address or length is not a multiple of [`PAGE_SIZE`].
    Misaligned,
    /// The range wraps, or lies beyond the 39-bit virtual or 48-bit physical space.
    OutOfRange,
    /// Writable and executable at once: W^X forbids it.
    WritableAndExecutable,
    /// Device memory is never executable.
    ExecutableDevice,
    /// A page of the range is already mapped.
    AlreadyMapped,
    /// A page of the range is not mapped.
    NotMapped,
    /// The frame pool has no table left for the new mapping.
    OutOfTables,
    /// A descriptor is not one these tables write (a block, or a table outside
    /// the pool): the tables were changed behind their back.
    Foreign,
    /// The pool cannot hold tables: empty, or beyond the 48-bit physical space.
    BadPool,
    /// [`Aarch64Protection`] has no tables installed yet.
    NotInstalled,
}

impl MapError {
    /// An errno-style number for [`ProtectionError::code`], as the host backend
    /// reports `mprotect`'s errno.
    pub const fn code(self) -> i32 {
        match self {
            MapError::WritableAndExecutable | MapError::ExecutableDevice => 1, // EPERM
            MapError::OutOfTables => 12,                                       // ENOMEM
            MapError::NotMapped => 14,                                         // EFAULT
            MapError::AlreadyMapped => 17,                                     // EEXIST
            MapError::NotInstalled => 19,                                      // ENODEV
            MapError::Misaligned | MapError::OutOfRange | MapError::BadPool => 22, // EINVAL
            MapError::Foreign => 5,                                            // EIO
        }
    }

    /// A short description, for consoles.
    pub const fn as_str(self) -> &'static str {
        match self {
            MapError::Misaligned => "address or length not page-aligned",
            MapError::OutOfRange => "range outside the address space",
            MapError::WritableAndExecutable => "writable and executable (W^X)",
            MapError::ExecutableDevice => "device memory cannot be executable",
            MapError::AlreadyMapped => "page already mapped",
            MapError::NotMapped => "page not mapped",
            MapError::OutOfTables => "no page-table frame left",
            MapError::Foreign => "descriptor not written by these tables",
            MapError::BadPool => "unusable page-table pool",
            MapError::NotInstalled => "no page tables installed",
        }
    }
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::error::Error for MapError {}

impl From<MapError> for ProtectionError {
    fn from(error: MapError) -> Self {
        ProtectionError { code: error.code() }
    }
}

/// Whether `value` is a multiple of [`PAGE_SIZE`].
const fn is_page_aligned(value: u64) -> bool {
    value & (PAGE_SIZE - 1) == 0
}

/// The level-3 descriptor bits for `permissions` (everything but the address
/// and the attribute index).
pub fn permission_bits(permissions: Permissions) -> Result<Descriptor, MapError> {
    if permissions.is_writable_and_executable() {
        return Err(MapError::WritableAndExecutable);
    }
    if permissions.is_empty() {
        return Ok(Descriptor::NO_ACCESS | Descriptor::TABLE_OR_PAGE);
    }
    let mut bits = Descriptor::VALID
        | Descriptor::TABLE_OR_PAGE
        | Descriptor::INNER_SHAREABLE
        | Descriptor::ACCESSED
        | Descriptor::UNPRIVILEGED_EXECUTE_NEVER;
    if !permissions.contains(Permissions::WRITE) {
        bits |= Descriptor::READ_ONLY;
    }
    if !permissions.contains(Permissions::EXECUTE) {
        bits |= Descriptor::PRIVILEGED_EXECUTE_NEVER;
    }
    Ok(bits)
}

/// A whole level-3 page descriptor.
pub fn page_descriptor(
    physical: u64,
    permissions: Permissions,
    attributes: MemoryAttributes,
) -> Result<Descriptor, MapError> {
    if !is_page_aligned(physical) {
        return Err(MapError::Misaligned);
    }
    if physical >= PHYSICAL_LIMIT {
        return Err(MapError::OutOfRange);
    }
    if attributes == MemoryAttributes::Device && permissions.contains(Permissions::EXECUTE) {
        return Err(MapError::ExecutableDevice);
    }
    Ok(permission_bits(permissions)? | attributes.bits() | Descriptor::from_bits_retain(physical))
}

/// What a page descriptor grants at EL1.
fn permissions_of(descriptor: Descriptor) -> Permissions {
    if !descriptor.contains(Descriptor::VALID) {
        return Permissions::empty();
    }
    let mut permissions = Permissions::READ;
    if !descriptor.contains(Descriptor::READ_ONLY) {
        permissions |= Permissions::WRITE;
    }
    if !descriptor.contains(Descriptor::PRIVILEGED_EXECUTE_NEVER) {
        permissions |= Permissions::EXECUTE;
    }
    permissions
}

/// Whether a level-3 descriptor maps a page (accessible or "no access").
fn is_page(descriptor: Descriptor) -> bool {
    descriptor.contains(Descriptor::TABLE_OR_PAGE)
        && descriptor.intersects(Descriptor::VALID | Descriptor::NO_ACCESS)
}

/// [`PageTables`] behind a lock, as [`MemoryProtection`] for the loader.
///
/// `protect` is [`PageTables::protect`]; `sync_instruction_cache` runs
/// [`crate::cache::sync_instruction_cache`] over the accessible pages of the
/// range only (maintenance by address faults on an unmapped page), so code
/// linked for an address that is not mapped yet is skipped, to be synced when
/// it is.
pub struct Aarch64Protection {
    tables: spin::Mutex<Option<PageTables>>,
}

impl Aarch64Protection {
    /// No tables yet: every request fails with [`MapError::NotInstalled`].
    pub const fn new() -> Self {
        Aarch64Protection {
            tables: spin::Mutex::new(None),
        }
    }

    /// Hands over the tables. Returns them back if some were installed before.
    ///
    /// # Safety
    /// `tables` must be the regime in `TTBR0_EL1` on every core that runs
    /// code using this backend (see `enable_mmu`), and stay there: the cache
    /// maintenance trusts them to tell which addresses are mapped.
    pub unsafe fn install(&self, tables: PageTables) -> Result<(), PageTables> {
        let mut slot = self.tables.lock();
        if slot.is_some() {
            return Err(tables);
        }
        *slot = Some(tables);
        Ok(())
    }

    /// Runs `f` on the tables, under the lock.
    pub fn with_tables<R>(
        &self,
        f: impl FnOnce(&mut PageTables) -> Result<R, MapError>,
    ) -> Result<R, MapError> {
        match self.tables.lock().as_mut() {
            Some(tables) => f(tables),
            None => Err(MapError::NotInstalled),
        }
    }
}

impl Default for Aarch64Protection {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryProtection for Aarch64Protection {
    fn protect(
        &self,
        start: VirtAddr,
        len: u64,
        permissions: Permissions,
    ) -> Result<(), ProtectionError> {
        Ok(self.with_tables(|tables| tables.protect(start.as_u64(), len, permissions))?)
    }

    fn sync_instruction_cache(&self, start: VirtAddr, len: u64) {
        // The lock stays held, so no page can be unmapped during maintenance.
        let _ = self.with_tables(|tables| {
            tables.for_each_accessible_run(start.as_u64(), len, |from, size| {
                // SAFETY: the run is mapped with a valid translation in these
                // tables, which `install`'s contract makes the live regime, and
                // every valid page is readable at EL1; the lock keeps it mapped.
                unsafe { crate::cache::sync_instruction_cache(from, size) }
            });
            Ok(())
        });
    }
}

/// Programs `MAIR_EL1`, `TCR_EL1` and `TTBR0_EL1` for `tables`, invalidates
/// the local TLB and turns on the MMU, data and instruction caches and
/// `SCTLR_EL1.WXN` (so a writable page is never executable, whatever its
/// descriptor says).
///
/// # Safety
/// Must run at EL1 with the MMU off, and `tables` must identity-map the code
/// running this function, its stack and everything it uses afterwards, with
/// the pool itself mapped writable if the tables will change later.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub unsafe fn enable_mmu(tables: &PageTables) {
    use aarch64_cpu::asm::barrier;
    use aarch64_cpu::registers::{ReadWriteable, Readable, Writeable};
    use aarch64_cpu::registers::{ID_AA64MMFR0_EL1, SCTLR_EL1, TTBR0_EL1};

    MAIR_EL1.set(mair_value());
    TCR_EL1.set(tcr_value(ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange)));
    TTBR0_EL1.set_baddr(tables.root_address());
    // The tables were written with the MMU off; make them visible to the
    // walker and drop anything cached from before.
    barrier::dsb(barrier::ISHST);
    tlb::invalidate_all();
    barrier::isb(barrier::SY);
    SCTLR_EL1.modify(
        SCTLR_EL1::M::Enable
            + SCTLR_EL1::C::Cacheable
            + SCTLR_EL1::I::Cacheable
            + SCTLR_EL1::WXN::Enable
            + SCTLR_EL1::A::Disable,
    );
    barrier::isb(barrier::SY);
}

/// TLB maintenance. Only a bare-metal AArch64 build runs at EL1 and has the
/// instructions; elsewhere (host tests, user space) the tables are only data.
mod tlb {
    #[cfg(all(target_arch = "aarch64", target_os = "none"))]
    use aarch64_cpu::asm::barrier;

    /// After turning invalid descriptors valid: make the stores visible to
    /// the walker before later instructions use the addresses.
    pub(super) fn tables_written() {
        #[cfg(all(target_arch = "aarch64", target_os = "none"))]
        {
            barrier::dsb(barrier::ISHST);
            barrier::isb(barrier::SY);
        }
    }

    /// After changing or removing the level-3 descriptors of `[start, end)`:
    /// `dsb ishst`, `tlbi vae1is` per page, `dsb ish`, `isb`.
    pub(super) fn invalidate_pages(start: u64, end: u64) {
        #[cfg(all(target_arch = "aarch64", target_os = "none"))]
        {
            barrier::dsb(barrier::ISHST);
            for page in super::tables::pages(start, end) {
                // The operand is VA[55:12] in bits [43:0]; the ASID field is
                // zero, and our descriptors are global (nG clear), so the
                // entry goes for every ASID.
                let operand = (page >> 12) & ((1 << 44) - 1);
                // SAFETY: TLB invalidation only makes later accesses walk the
                // tables again; it cannot break memory safety.
                unsafe {
                    core::arch::asm!("tlbi vae1is, {}", in(reg) operand, options(nostack, preserves_flags))
                };
            }
            barrier::dsb(barrier::ISH);
            barrier::isb(barrier::SY);
        }
        #[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
        let _ = (start, end);
    }

    /// Drops every EL1 TLB entry of this core (before the MMU goes on).
    #[cfg(all(target_arch = "aarch64", target_os = "none"))]
    pub(super) fn invalidate_all() {
        // SAFETY: as above, invalidation only forces new walks.
        unsafe { core::arch::asm!("tlbi vmalle1", options(nostack, preserves_flags)) };
        barrier::dsb(barrier::NSH);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::boxed::Box;
    use std::vec::Vec;

    use super::*;

    const RW: Permissions = Permissions::READ_WRITE;
    const RX: Permissions = Permissions::CODE;
    const R: Permissions = Permissions::READ_ONLY;

    fn tables(frames: usize) -> PageTables {
        let pool: Vec<TableFrame> = (0..frames).map(|_| TableFrame::new()).collect();
        PageTables::new(Box::leak(pool.into_boxed_slice())).expect("pool")
    }

    fn raw_leaf(tables: &PageTables, va: u64) -> u64 {
        tables
            .leaf(va)
            .expect("walk")
            .expect("table")
            .load(Ordering::Relaxed)
    }

    #[test]
    fn descriptor_bits_are_architectural() {
        assert_eq!(Descriptor::VALID.bits(), 1 << 0);
        assert_eq!(Descriptor::TABLE_OR_PAGE.bits(), 1 << 1);
        assert_eq!(Descriptor::ATTRIBUTE_INDEX.bits(), 0x1c);
        assert_eq!(Descriptor::EL0_ACCESS.bits(), 1 << 6);
        assert_eq!(Descriptor::READ_ONLY.bits(), 1 << 7);
        assert_eq!(Descriptor::INNER_SHAREABLE.bits(), 0x300);
        assert_eq!(Descriptor::ACCESSED.bits(), 1 << 10);
        assert_eq!(Descriptor::PRIVILEGED_EXECUTE_NEVER.bits(), 1 << 53);
        assert_eq!(Descriptor::UNPRIVILEGED_EXECUTE_NEVER.bits(), 1 << 54);
    }

    #[test]
    fn page_descriptors_encode_each_permission() {
        let pa = 0x4020_3000;
        let common = 0x3 | 0x300 | 0x400 | (1 << 54); // valid+page, SH inner, AF, UXN
        let normal = |p| {
            page_descriptor(pa, p, MemoryAttributes::Normal)
                .unwrap()
                .bits()
        };
        assert_eq!(normal(R), pa | common | (1 << 7) | (1 << 53));
        assert_eq!(normal(RW), pa | common | (1 << 53));
        assert_eq!(normal(RX), pa | common | (1 << 7));
        let device = page_descriptor(0x0900_0000, RW, MemoryAttributes::Device).unwrap();
        assert_eq!(device.bits(), 0x0900_0000 | common | (1 << 53) | (1 << 2));
        // No descriptor this module writes gives EL0 access.
        for p in [R, RW, RX] {
            assert_eq!(normal(p) & (1 << 6), 0);
        }
    }

    #[test]
    fn writable_and_executable_is_refused_everywhere() {
        let rwx = Permissions::all();
        let wx = Permissions::WRITE | Permissions::EXECUTE;
        for p in [rwx, wx] {
            assert_eq!(permission_bits(p), Err(MapError::WritableAndExecutable));
            assert_eq!(
                page_descriptor(0x1000, p, MemoryAttributes::Normal),
                Err(MapError::WritableAndExecutable)
            );
        }
        let mut t = tables(8);
        assert_eq!(
            t.map(0x1000, 0x1000, 0x1000, rwx, MemoryAttributes::Normal),
            Err(MapError::WritableAndExecutable)
        );
        t.map(0x1000, 0x1000, 0x1000, RW, MemoryAttributes::Normal)
            .unwrap();
        assert_eq!(
            t.protect(0x1000, 0x1000, rwx),
            Err(MapError::WritableAndExecutable)
        );
        assert_eq!(
            t.map_alias(0x8000, 0x1000, 0x1000, rwx),
            Err(MapError::WritableAndExecutable)
        );
        assert_eq!(t.translate(0x1000).unwrap().permissions, RW);
    }

    #[test]
    fn device_memory_is_never_executable() {
        let mut t = tables(8);
        assert_eq!(
            t.map(
                0x0900_0000,
                0x0900_0000,
                0x1000,
                R | Permissions::EXECUTE,
                MemoryAttributes::Device
            ),
            Err(MapError::ExecutableDevice)
        );
        t.map(
            0x0900_0000,
            0x0900_0000,
            0x1000,
            RW,
            MemoryAttributes::Device,
        )
        .unwrap();
        assert_eq!(
            t.protect(0x0900_0000, 0x1000, RX),
            Err(MapError::ExecutableDevice)
        );
    }

    #[test]
    fn map_translate_and_walk_three_levels() {
        let mut t = tables(8);
        let va = 0x4020_0000;
        t.map(va, va, 0x3000, RX, MemoryAttributes::Normal).unwrap();
        // Root, one level-2 and one level-3 table.
        assert_eq!(t.free_tables(), 5);
        let root = t.root().entry(1).load(Ordering::Relaxed);
        assert_eq!(root & 0b11, 0b11, "level-1 table descriptor");
        assert_eq!(root & Descriptor::ADDRESS.bits(), t.base + PAGE_SIZE);
        for page in [va, va + 0x1000, va + 0x2fff] {
            let m = t.translate(page).unwrap();
            assert_eq!(m.physical, page & !0xfff);
            assert_eq!(m.permissions, RX);
            assert_eq!(m.attributes, MemoryAttributes::Normal);
        }
        assert_eq!(t.translate(va + 0x3000), None);
        assert_eq!(t.translate(VIRTUAL_LIMIT), None);
        assert!(t.is_accessible(va + 5, 0x2000));
        assert!(!t.is_accessible(va, 0x4000));
    }

    #[test]
    fn protect_rewrites_permissions_only() {
        let mut t = tables(8);
        let (va, pa) = (0x5000_0000, 0x4800_0000);
        t.map(va, pa, 0x2000, RW, MemoryAttributes::Normal).unwrap();
        t.protect(va, 0x1000, RX).unwrap();
        let leaf = raw_leaf(&t, va);
        assert_eq!(leaf & Descriptor::ADDRESS.bits(), pa);
        assert_eq!(leaf & (1 << 53), 0, "PXN clear");
        assert_ne!(leaf & (1 << 7), 0, "read-only");
        assert_eq!(t.translate(va + 0x1000).unwrap().permissions, RW);
        t.protect(va, 0x2000, R).unwrap();
        assert_eq!(t.translate(va).unwrap().permissions, R);
        // "No access" keeps the page, so it can be given permissions again.
        t.protect(va, 0x1000, Permissions::empty()).unwrap();
        assert_eq!(raw_leaf(&t, va) & 1, 0, "invalid for the hardware");
        assert!(!t.is_accessible(va, 1));
        assert_eq!(t.translate(va).unwrap().permissions, Permissions::empty());
        t.protect(va, 0x1000, RW).unwrap();
        assert_eq!(t.translate(va).unwrap().physical, pa);
        assert_eq!(t.translate(va).unwrap().permissions, RW);
    }

    #[test]
    fn refusals_change_nothing() {
        let mut t = tables(8);
        t.map(0x1000, 0x1000, 0x1000, RW, MemoryAttributes::Normal)
            .unwrap();
        // Overlaps the mapped page at its end.
        assert_eq!(
            t.map(0x0000, 0x9000, 0x2000, R, MemoryAttributes::Normal),
            Err(MapError::AlreadyMapped)
        );
        assert_eq!(t.translate(0x0), None);
        // One of the two pages is not mapped: nothing is protected.
        assert_eq!(t.protect(0x1000, 0x2000, R), Err(MapError::NotMapped));
        assert_eq!(t.translate(0x1000).unwrap().permissions, RW);
        assert_eq!(t.unmap(0x1000, 0x2000), Err(MapError::NotMapped));
        assert!(t.translate(0x1000).is_some());
        assert_eq!(t.protect(0x1800, 0x1000, R), Err(MapError::Misaligned));
        assert_eq!(t.protect(0x1000, 0x800, R), Err(MapError::Misaligned));
        assert_eq!(
            t.map(
                VIRTUAL_LIMIT - 0x1000,
                0,
                0x2000,
                R,
                MemoryAttributes::Normal
            ),
            Err(MapError::OutOfRange)
        );
        assert_eq!(
            t.map(0x2000, PHYSICAL_LIMIT, 0x1000, R, MemoryAttributes::Normal),
            Err(MapError::OutOfRange)
        );
        assert_eq!(t.protect(!0xfff, 0x2000, R), Err(MapError::OutOfRange));
    }

    #[test]
    fn running_out_of_tables_maps_nothing() {
        // Root plus two frames: one level-2 and one level-3 table.
        let mut t = tables(3);
        // Crosses a 2 MiB boundary: needs two level-3 tables.
        assert_eq!(
            t.map(0x1f_f000, 0x1f_f000, 0x2000, RW, MemoryAttributes::Normal),
            Err(MapError::OutOfTables)
        );
        assert_eq!(t.free_tables(), 2);
        assert_eq!(t.translate(0x1f_f000), None);
        t.map(0x1f_e000, 0x1f_e000, 0x2000, RW, MemoryAttributes::Normal)
            .unwrap();
        assert_eq!(t.free_tables(), 0);
        // A new gigabyte needs two more.
        assert_eq!(
            t.map(LEVEL1_SPAN, 0, 0x1000, RW, MemoryAttributes::Normal),
            Err(MapError::OutOfTables)
        );
        // Same level-3 table: no new frame needed.
        t.map(0x1f_d000, 0x1f_d000, 0x1000, R, MemoryAttributes::Normal)
            .unwrap();
    }

    #[test]
    fn tables_needed_counts_levels() {
        let mut t = tables(32);
        // 3 GiB-aligned chunks of 2 MiB across two gigabytes.
        let start = LEVEL1_SPAN - LEVEL2_SPAN;
        assert_eq!(
            t.tables_needed(start, start + 3 * LEVEL2_SPAN).unwrap(),
            2 + 1 + 2
        );
        t.map(start, start, PAGE_SIZE, RW, MemoryAttributes::Normal)
            .unwrap();
        assert_eq!(
            t.tables_needed(start, start + 3 * LEVEL2_SPAN).unwrap(),
            1 + 2
        );
        t.map(
            start + PAGE_SIZE,
            start + PAGE_SIZE,
            3 * LEVEL2_SPAN - PAGE_SIZE,
            RW,
            MemoryAttributes::Normal,
        )
        .unwrap();
        assert_eq!(t.tables_needed(start, start + 3 * LEVEL2_SPAN).unwrap(), 0);
        assert!(t.is_accessible(start, 3 * LEVEL2_SPAN));
    }

    #[test]
    fn unmap_removes_translations() {
        let mut t = tables(8);
        t.map(0x10_0000, 0x10_0000, 0x3000, RW, MemoryAttributes::Normal)
            .unwrap();
        t.unmap(0x10_1000, 0x1000).unwrap();
        assert!(t.translate(0x10_0000).is_some());
        assert_eq!(t.translate(0x10_1000), None);
        assert_eq!(raw_leaf(&t, 0x10_1000), 0);
        assert!(t.translate(0x10_2000).is_some());
        // The page can be mapped again, elsewhere.
        t.map(0x10_1000, 0x7000, 0x1000, R, MemoryAttributes::Normal)
            .unwrap();
        assert_eq!(t.translate(0x10_1000).unwrap().physical, 0x7000);
    }

    #[test]
    fn aliases_share_physical_pages() {
        let mut t = tables(8);
        t.map(
            0x4100_0000,
            0x4100_0000,
            0x2000,
            RW,
            MemoryAttributes::Normal,
        )
        .unwrap();
        t.map_alias(0x7000_0000, 0x4100_0000, 0x2000, RX).unwrap();
        let alias = t.translate(0x7000_1000).unwrap();
        assert_eq!(alias.physical, 0x4100_1000);
        assert_eq!(alias.permissions, RX);
        // The original keeps its own permissions.
        assert_eq!(t.translate(0x4100_1000).unwrap().permissions, RW);
        assert_eq!(
            t.map_alias(0x7000_0000, 0x4100_0000, 0x1000, R),
            Err(MapError::AlreadyMapped)
        );
        // The second source page is not mapped: no alias page is made.
        assert_eq!(
            t.map_alias(0x7010_0000, 0x4100_1000, 0x2000, R),
            Err(MapError::NotMapped)
        );
        assert_eq!(t.translate(0x7010_0000), None);
        t.unmap(0x7000_0000, 0x2000).unwrap();
        assert_eq!(t.translate(0x7000_0000), None);
        assert!(t.translate(0x4100_0000).is_some());
    }

    #[test]
    fn accessible_runs_skip_unmapped_and_no_access_pages() {
        let mut t = tables(8);
        t.map(0x1000, 0x1000, 0x5000, RW, MemoryAttributes::Normal)
            .unwrap();
        t.unmap(0x3000, 0x1000).unwrap();
        t.protect(0x5000, 0x1000, Permissions::empty()).unwrap();
        let mut runs = Vec::new();
        t.for_each_accessible_run(0x1800, 0x5000, |start, len| runs.push((start, len)));
        assert_eq!(runs, [(0x1800, 0x1800), (0x4000, 0x1000)]);
        runs.clear();
        t.for_each_accessible_run(0x4100, 0x10, |start, len| runs.push((start, len)));
        assert_eq!(runs, [(0x4100, 0x10)]);
    }

    #[test]
    fn foreign_descriptors_are_reported() {
        let t = tables(4);
        // A level-1 block descriptor (bit 1 clear), which these tables never write.
        t.root().entry(0).store(0x1 | 0x400, Ordering::Relaxed);
        assert_eq!(t.leaf(0x1000).err(), Some(MapError::Foreign));
        // A table outside the pool.
        t.root()
            .entry(0)
            .store(0x3 | 0x1234_5000, Ordering::Relaxed);
        assert_eq!(t.leaf(0x1000).err(), Some(MapError::Foreign));
        assert_eq!(t.translate(0x1000), None);
    }

    #[test]
    fn protection_backend_reports_errors_as_codes() {
        let backend = Aarch64Protection::new();
        assert_eq!(
            backend.protect(VirtAddr::new(0x1000), 0x1000, R),
            Err(ProtectionError { code: 19 })
        );
        let mut t = tables(8);
        t.map(0x1000, 0x1000, 0x1000, RW, MemoryAttributes::Normal)
            .unwrap();
        // SAFETY: host test: nothing runs with these tables, and the cache
        // maintenance is a no-op off AArch64.
        unsafe { backend.install(t) }.ok().unwrap();
        assert_eq!(backend.protect(VirtAddr::new(0x1000), 0x1000, RX), Ok(()));
        assert_eq!(
            backend.protect(VirtAddr::new(0x1000), 0x1000, Permissions::all()),
            Err(ProtectionError { code: 1 })
        );
        assert_eq!(
            backend.protect(VirtAddr::new(0x2000), 0x1000, R),
            Err(ProtectionError { code: 14 })
        );
        backend.sync_instruction_cache(VirtAddr::new(0x0), 0x4000);
        let permissions = backend.with_tables(|t| Ok(t.translate(0x1000).unwrap().permissions));
        assert_eq!(permissions, Ok(RX));
    }

    #[test]
    fn register_values() {
        assert_eq!(mair_value(), 0x04ff);
        let tcr = tcr_value(0b100); // 44-bit physical addresses (Cortex-A57)
        assert_eq!(tcr & 0x3f, 25, "T0SZ");
        assert_eq!((tcr >> 8) & 0b11, 0b01, "IRGN0 write-back");
        assert_eq!((tcr >> 10) & 0b11, 0b01, "ORGN0 write-back");
        assert_eq!((tcr >> 12) & 0b11, 0b11, "SH0 inner");
        assert_eq!((tcr >> 14) & 0b11, 0b00, "TG0 4 KiB");
        assert_eq!((tcr >> 23) & 1, 1, "EPD1");
        assert_eq!((tcr >> 32) & 0b111, 0b100, "IPS 44 bits");
        assert_eq!((tcr_value(0b110) >> 32) & 0b111, 0b101, "capped at 48 bits");
    }
}
