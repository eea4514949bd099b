//! The x86-64 layer: PVH boot, COM1 console, 4 KiB page tables through the
//! `x86_64` crate with `NO_EXECUTE`/`WRITABLE` per page, an IDT that catches
//! page faults, and `isa-debug-exit`.

mod boot;
mod faults;
mod paging;
mod serial;

use core::ops::Range;

use modload::{MemoryProtection, Permissions};
use x86_64::instructions::port::Port;

pub use faults::probe;

/// Console, paging, exceptions. Called once, first.
pub fn init() {
    serial::init();
    faults::init();
    paging::init();
}

/// Writes bytes to COM1.
pub fn write_console(bytes: &[u8]) {
    serial::write(bytes);
}

/// Ends the run: `isa-debug-exit` makes QEMU exit with `(code << 1) | 1`.
pub fn exit(success: bool) -> ! {
    let mut port: Port<u32> = Port::new(0xf4);
    // SAFETY: port 0xf4 is QEMU's isa-debug-exit device (the runner adds it);
    // writing to it only stops the machine.
    unsafe { port.write(if success { 0x10 } else { 0x11 }) };
    loop {
        x86_64::instructions::hlt();
    }
}

/// The page-permission backend over the kernel's page tables.
pub fn protection() -> &'static dyn MemoryProtection {
    &paging::PROTECTION
}

/// See [`paging::map_alias`].
pub fn map_alias(
    alias: u64,
    existing: u64,
    len: u64,
    permissions: Permissions,
) -> Result<(), &'static str> {
    paging::map_alias(alias, existing, len, permissions)
}

/// See [`paging::unmap_alias`].
pub fn unmap_alias(alias: u64, len: u64) {
    paging::unmap_alias(alias, len);
}

/// Virtual addresses kept free for alias mappings: 1 GiB, beyond the 256 MiB
/// of RAM and its identity mapping.
pub fn alias_window() -> Range<u64> {
    0x4000_0000..0x4100_0000
}

extern "C" {
    static __module_region_start: u8;
    static __module_region_end: u8;
    static __stack_bottom: u8;
    static __stack_top: u8;
}

/// The stacks a backtrace may read: the kernel's only stack, which the
/// exception handlers share.
pub fn stacks() -> [Range<u64>; 1] {
    let bottom = core::ptr::addr_of!(__stack_bottom) as u64;
    let top = core::ptr::addr_of!(__stack_top) as u64;
    [bottom..top]
}

/// The module region from the linker script. It sits right after the kernel,
/// well within ±2 GiB of it, as the kernel code model needs; there is no far
/// region on x86-64.
pub fn module_regions() -> (Range<u64>, Range<u64>) {
    let start = core::ptr::addr_of!(__module_region_start) as u64;
    let end = core::ptr::addr_of!(__module_region_end) as u64;
    (start..end, 0..0)
}
