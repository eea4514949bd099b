//! The AArch64 layer on QEMU's `virt` board: PL011 console, an exception
//! vector table that catches permission faults, EL1 page tables with W^X per
//! 4 KiB page through `modload-platform` (MMU on with `SCTLR_EL1.WXN`), and
//! PSCI `SYSTEM_OFF` to exit.

mod boot;
mod exceptions;
mod memory;
mod psci;
// The shared kernel may or may not run the self-test; either way builds clean.
#[allow(dead_code)]
mod selftest;
mod uart;

use core::ops::Range;

use modload::{MemoryProtection, Permissions};

pub use exceptions::probe;
#[allow(unused_imports)]
pub use selftest::self_test;

/// Console, exception vectors, page tables, MMU on. Called once, first.
///
/// The identity map gives kernel text `r-x`, rodata `r--`, data, bss and the
/// stacks `rw-` (never executable), the PL011 Device-nGnRE `rw-`, and both
/// module regions `rw-` in 4 KiB pages; the guard pages below the stacks and
/// everything else stay unmapped.
pub fn init() {
    uart::init();
    exceptions::init();
    if let Err(error) = memory::init() {
        uart::print(format_args!("aarch64: page tables: {}\n", error.as_str()));
        exit(false);
    }
}

/// Writes bytes to the PL011 UART.
pub fn write_console(bytes: &[u8]) {
    uart::write_bytes(bytes);
}

/// Ends the run: prints `EXIT PASS` or `EXIT FAIL` (QEMU's exit status does not
/// carry the verdict on this board) and powers off through PSCI.
pub fn exit(success: bool) -> ! {
    uart::write_bytes(if success {
        b"EXIT PASS\n"
    } else {
        b"EXIT FAIL\n"
    });
    psci::system_off()
}

/// The page-permission backend over the kernel's page tables.
pub fn protection() -> &'static dyn MemoryProtection {
    &memory::PROTECTION
}

/// Maps `[alias, alias + len)` (inside [`alias_window`]) to the physical pages
/// behind `[existing, existing + len)` with `permissions`, never W+X. An
/// executable alias has its instruction cache synchronised, so code can run
/// there at once.
pub fn map_alias(
    alias: u64,
    existing: u64,
    len: u64,
    permissions: Permissions,
) -> Result<(), &'static str> {
    memory::map_alias(alias, existing, len, permissions)
}

/// Removes an alias made by [`map_alias`], and its TLB entries.
pub fn unmap_alias(alias: u64, len: u64) {
    memory::unmap_alias(alias, len);
}

/// Virtual addresses kept for aliases: 16 MiB at 0x7000_0000, mapped only by
/// [`map_alias`]. Beyond direct-call reach of the kernel text.
pub fn alias_window() -> Range<u64> {
    memory::alias_window()
}

/// The stacks a backtrace may read: the kernel's (`SP_EL0`) and the
/// exception handlers' (`SP_EL1`).
pub fn stacks() -> [Range<u64>; 2] {
    memory::stacks()
}

/// The near module region (within ±128 MiB of all kernel text) and the far one
/// (beyond 128 MiB of every byte of it, so calls into the kernel need veneers).
pub fn module_regions() -> (Range<u64>, Range<u64>) {
    memory::module_regions()
}
