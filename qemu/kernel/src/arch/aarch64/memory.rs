//! The kernel's page tables: an identity map with W^X per section, the UART,
//! and the module regions as 4 KiB read-write pages, built with the MMU off
//! and then handed to the platform backend, which every later change goes
//! through.

use core::ops::Range;
use core::sync::atomic::{AtomicBool, Ordering};

use modload::{MemoryProtection, Permissions, VirtAddr};
use modload_platform::aarch64::{
    Aarch64Protection, MapError, MemoryAttributes, PageTables, TableFrame, PAGE_SIZE,
};

/// The permission backend over the live tables (after [`init`]).
pub static PROTECTION: Aarch64Protection = Aarch64Protection::new();

/// Table frames: the kernel image and the stacks take about 4, each 16 MiB
/// module region 8 level-3 tables, the alias window up to 8, plus the root and
/// two level-2 tables.
const TABLE_FRAMES: usize = 48;

/// The table pool, in `.bss` (so identity-mapped read-write, as the tables
/// must stay writable).
static mut TABLE_POOL: [TableFrame; TABLE_FRAMES] = [const { TableFrame::new() }; TABLE_FRAMES];

/// Set by the first [`init`], which alone may take the pool.
static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// Virtual addresses kept free for alias mappings: 16 MiB at 0x7000_0000,
/// above the 512 MiB of RAM (never identity-mapped), about 750 MiB from the
/// kernel text (calls into the kernel need veneers) and within the ±4 GiB of
/// `adrp`.
const ALIAS_WINDOW: Range<u64> = 0x7000_0000..0x7100_0000;

extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __data_end: u8;
    static __stack_bottom: u8;
    static __stack_top: u8;
    static __exception_stack_bottom: u8;
    static __exception_stack_top: u8;
    static __module_region_start: u8;
    static __module_region_end: u8;
    static __module_region_far_start: u8;
    static __module_region_far_end: u8;
    static __kernel_symbols_start: u8;
    static __kernel_symbols_end: u8;
}

macro_rules! symbol {
    ($name:ident) => {
        core::ptr::addr_of!($name) as u64
    };
}

/// The near and far module regions from the linker script.
pub fn module_regions() -> (Range<u64>, Range<u64>) {
    (
        symbol!(__module_region_start)..symbol!(__module_region_end),
        symbol!(__module_region_far_start)..symbol!(__module_region_far_end),
    )
}

/// See [`ALIAS_WINDOW`].
pub fn alias_window() -> Range<u64> {
    ALIAS_WINDOW
}

/// The kernel stack and the exception stack.
pub fn stacks() -> [Range<u64>; 2] {
    [
        symbol!(__stack_bottom)..symbol!(__stack_top),
        symbol!(__exception_stack_bottom)..symbol!(__exception_stack_top),
    ]
}

/// Whether `address` is in the unmapped guard page below the kernel stack.
pub fn is_stack_guard(address: u64) -> bool {
    let bottom = symbol!(__stack_bottom);
    (bottom.saturating_sub(PAGE_SIZE)..bottom).contains(&address)
}

/// Builds the tables with the MMU off, turns the MMU on and installs them.
pub fn init() -> Result<(), MapError> {
    // Load and store, not `swap`: with the MMU off memory is Device memory,
    // where exclusives may not work. Boot is single-threaded.
    if INITIALIZED.load(Ordering::Relaxed) {
        return Err(MapError::AlreadyMapped);
    }
    INITIALIZED.store(true, Ordering::Relaxed);
    // SAFETY: the flag above makes this the only reference ever taken to the
    // pool, and the pool is used by nothing else.
    let pool: &'static mut [TableFrame] = unsafe { &mut *core::ptr::addr_of_mut!(TABLE_POOL) };
    let mut tables = PageTables::new(pool)?;
    let normal = MemoryAttributes::Normal;
    let sections = [
        (
            symbol!(__text_start),
            symbol!(__text_end),
            Permissions::CODE,
        ),
        (
            symbol!(__rodata_start),
            symbol!(__rodata_end),
            Permissions::READ_ONLY,
        ),
        (
            symbol!(__data_start),
            symbol!(__data_end),
            Permissions::READ_WRITE,
        ),
        (
            symbol!(__stack_bottom),
            symbol!(__stack_top),
            Permissions::READ_WRITE,
        ),
        (
            symbol!(__exception_stack_bottom),
            symbol!(__exception_stack_top),
            Permissions::READ_WRITE,
        ),
        // The kernel's symbol table, after the module regions.
        (
            symbol!(__kernel_symbols_start),
            symbol!(__kernel_symbols_end),
            Permissions::READ_ONLY,
        ),
    ];
    for (start, end, permissions) in sections {
        tables.identity_map(start, end, permissions, normal)?;
    }
    tables.identity_map(
        super::uart::BASE,
        super::uart::BASE + PAGE_SIZE,
        Permissions::READ_WRITE,
        MemoryAttributes::Device,
    )?;
    let (near, far) = module_regions();
    for region in [near, far] {
        tables.identity_map(region.start, region.end, Permissions::READ_WRITE, normal)?;
    }
    // SAFETY: we are at EL1 with the MMU off (boot enters here once, checked
    // above), and the tables identity-map everything the kernel touches from
    // now on: its code, rodata, data and bss (with the pool), both stacks, its
    // symbol table, the UART and the module regions.
    unsafe { modload_platform::aarch64::enable_mmu(&tables) };
    // SAFETY: these tables are now in TTBR0_EL1, on the only core, for good.
    unsafe { PROTECTION.install(tables) }.map_err(|_| MapError::AlreadyMapped)
}

/// `len` rounded up to whole pages.
fn page_length(len: u64) -> Result<u64, &'static str> {
    len.checked_add(PAGE_SIZE - 1)
        .map(|len| len & !(PAGE_SIZE - 1))
        .ok_or("length overflows")
}

/// Whether `[start, start + len)` lies inside the alias window.
fn in_alias_window(start: u64, len: u64) -> bool {
    start >= ALIAS_WINDOW.start
        && start
            .checked_add(len)
            .is_some_and(|end| end <= ALIAS_WINDOW.end)
}

/// Maps `[alias, alias + len)` (inside the alias window, `len` rounded up to
/// pages) to the physical pages of `[existing, existing + len)`, with
/// `permissions`; executable aliases get their instruction cache synchronised,
/// so code runs there at once.
pub fn map_alias(
    alias: u64,
    existing: u64,
    len: u64,
    permissions: Permissions,
) -> Result<(), &'static str> {
    if permissions.is_writable_and_executable() {
        return Err("writable and executable (W^X)");
    }
    let len = page_length(len)?;
    if !in_alias_window(alias, len) {
        return Err("outside the alias window");
    }
    PROTECTION
        .with_tables(|tables| tables.map_alias(alias, existing, len, permissions))
        .map_err(MapError::as_str)?;
    if permissions.contains(Permissions::EXECUTE) {
        // The data cache is physically tagged, so the bytes written at
        // `existing` are already visible here; the instruction cache may be
        // tagged by virtual address, so maintain it at the alias.
        PROTECTION.sync_instruction_cache(VirtAddr::new(alias), len);
    }
    Ok(())
}

/// Removes an alias made by [`map_alias`] (`len` rounded up to pages) and
/// its TLB entries. A range outside the window or not fully mapped is
/// reported on the console and left alone.
pub fn unmap_alias(alias: u64, len: u64) {
    let result = page_length(len).and_then(|len| {
        if !in_alias_window(alias, len) {
            return Err("outside the alias window");
        }
        PROTECTION
            .with_tables(|tables| tables.unmap(alias, len))
            .map_err(MapError::as_str)
    });
    if let Err(why) = result {
        super::uart::print(format_args!("unmap_alias({alias:#x}, {len:#x}): {why}\n"));
    }
}
