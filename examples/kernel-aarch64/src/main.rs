//! A minimal AArch64 kernel that loads one C module with modload: the module
//! calls the kernel's `kernel_print`, the kernel calls the module's
//! `module_answer` and prints the result, unloads the module and powers off.
//!
//! Run it with `RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 /usr/bin/cargo run --release`.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use core::error::Error;
use core::ffi::{c_char, CStr};
use core::fmt::Write;

use linked_list_allocator::LockedHeap;
use modload::{Loader, Namespace, Permissions, Region, VirtAddr};
use modload_platform::aarch64::{
    enable_mmu, Aarch64Protection, MapError, MemoryAttributes, PageTables, TableFrame,
};

// The boot code: FP on, a stack, a zeroed .bss, then `kernel_main`.
core::arch::global_asm!(include_str!("boot.s"));

/// `println!` to the serial console (see [`print`]).
macro_rules! println {
    ($($arg:tt)*) => { print(format_args!("{}\n", format_args!($($arg)*))) };
}

/// The module, compiled from module.c by build.rs.
static MODULE_O: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/module.o"));

/// The loader keeps its bookkeeping on the heap: module.o's record and
/// symbols take about 1.6 KiB while it is loaded, and the parsed object and
/// its plan a few KiB more during the load. 64 KiB is plenty.
#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();
static mut HEAP_MEMORY: [u8; 64 * 1024] = [0; 64 * 1024];

/// Module memory and module symbols: statics, so modules outlive any loader.
static REGION: Region = Region::new();
static NAMESPACE: Namespace = Namespace::new();
/// Sets the page permissions the loader asks for (code r-x, data rw-) in our
/// page tables, once they are installed.
static PROTECTION: Aarch64Protection = Aarch64Protection::new();

const REGION_SIZE: u64 = 2 << 20;
/// The PL011 UART of QEMU's virt board.
const UART: u64 = 0x0900_0000;
extern "C" {
    // From link.ld.
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __data_end: u8;
    static __module_region_start: u8;
}

#[no_mangle]
extern "C" fn kernel_main() -> ! {
    // The MMU comes first: with it off, all memory is Device memory, where
    // the heap's atomics (exclusives) and unaligned accesses fault.
    if let Err(error) = map_memory() {
        println!("page tables: {error}");
        power_off();
    }
    // SAFETY: called once, before any allocation; nothing else uses the array.
    unsafe {
        HEAP.lock()
            .init(core::ptr::addr_of_mut!(HEAP_MEMORY).cast(), 64 * 1024)
    };
    if let Err(error) = run() {
        println!("error: {error}");
    }
    power_off()
}

fn run() -> Result<(), Box<dyn Error>> {
    let region = core::ptr::addr_of!(__module_region_start) as u64;
    // SAFETY: the region's memory is mapped read-write (map_memory), outside
    // the kernel image, and used by nothing but the region from now on.
    unsafe { REGION.init(region as *mut u8, REGION_SIZE as usize)? };
    // The kernel's exports: what modules may call.
    NAMESPACE.add_host_export(
        "kernel_print",
        VirtAddr::from_ptr(kernel_print as *const ()),
    )?;

    let loader = Loader::new(&NAMESPACE, &REGION, &PROTECTION);
    // SAFETY: module.o is our own code; loading runs its constructors.
    let module = unsafe { loader.load("module.o", MODULE_O) }?;
    {
        // SAFETY: module.c defines `int module_answer(int)`.
        let answer = unsafe { module.get::<extern "C" fn(i32) -> i32>("module_answer") }
            .ok_or("module.o has no module_answer")?;
        println!("module says: {}", answer(7));
    }
    module.unload()?;
    println!(
        "module unloaded, region bytes in use: {}",
        REGION.usage().used
    );
    Ok(())
}

/// Exported to modules as `void kernel_print(const char *text)`.
extern "C" fn kernel_print(text: *const c_char) {
    // SAFETY: modules pass NUL-terminated strings.
    let text = unsafe { CStr::from_ptr(text) };
    println!("{}", text.to_str().unwrap_or("(not UTF-8)"));
}

/// Identity-maps the kernel with W^X per part, the UART and the module region
/// (4 KiB pages, read-write, not executable until the loader says so), turns
/// the MMU on and hands the tables to [`PROTECTION`].
fn map_memory() -> Result<(), MapError> {
    // Root, one level-2 and level-3 table each for the UART, the kernel and
    // the region: 6 tables.
    static mut TABLES: [TableFrame; 6] = [const { TableFrame::new() }; 6];
    // SAFETY: called once (at boot), so this is the only reference to TABLES.
    let mut tables = PageTables::new(unsafe { &mut *core::ptr::addr_of_mut!(TABLES) })?;
    let text = core::ptr::addr_of!(__text_start) as u64;
    let text_end = core::ptr::addr_of!(__text_end) as u64;
    let rodata_end = core::ptr::addr_of!(__rodata_end) as u64;
    let data_end = core::ptr::addr_of!(__data_end) as u64;
    let region = core::ptr::addr_of!(__module_region_start) as u64;
    let normal = MemoryAttributes::Normal;
    tables.identity_map(text, text_end, Permissions::CODE, normal)?;
    tables.identity_map(text_end, rodata_end, Permissions::READ_ONLY, normal)?;
    tables.identity_map(rodata_end, data_end, Permissions::READ_WRITE, normal)?;
    tables.identity_map(
        region,
        region + REGION_SIZE,
        Permissions::READ_WRITE,
        normal,
    )?;
    tables.identity_map(
        UART,
        UART + 4096,
        Permissions::READ_WRITE,
        MemoryAttributes::Device,
    )?;
    // SAFETY: at EL1 with the MMU off, and the tables map everything the
    // kernel touches from now on: code, data, .bss (stack, heap, tables), the
    // UART and the region.
    unsafe { enable_mmu(&tables) };
    // SAFETY: these tables are now in TTBR0_EL1 on the only core, for good.
    // (It returns the tables if some were installed before: not at boot.)
    unsafe { PROTECTION.install(tables) }.map_err(|_| MapError::AlreadyMapped)
}

/// Writes to the UART's data register (QEMU's PL011 needs no set-up; real
/// hardware would want a baud rate and a wait for room in the FIFO).
fn print(args: core::fmt::Arguments<'_>) {
    struct Pl011;
    impl Write for Pl011 {
        fn write_str(&mut self, text: &str) -> core::fmt::Result {
            for byte in text.bytes() {
                // SAFETY: UART + 0 is the PL011 data register; writing sends a byte.
                unsafe { core::ptr::write_volatile(UART as *mut u32, u32::from(byte)) };
            }
            Ok(())
        }
    }
    let _ = Pl011.write_fmt(args);
}

/// PSCI SYSTEM_OFF through the hypervisor call QEMU's virt board answers at
/// EL1: QEMU exits.
fn power_off() -> ! {
    // SAFETY: a PSCI call that does not return; the registers the SMC calling
    // convention lets the firmware change are declared clobbered.
    unsafe {
        core::arch::asm!("hvc #0", in("x0") 0x8400_0008u64, clobber_abi("C"), options(nomem, nostack))
    };
    loop {
        core::hint::spin_loop();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("panic: {info}");
    power_off()
}
