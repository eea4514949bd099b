//! A minimal x86-64 kernel that loads one C module with modload: the module
//! calls the kernel's `kernel_print`, the kernel calls the module's
//! `module_answer` and prints the result, unloads the module and exits QEMU.
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
use modload::{Loader, Namespace, ProtectionError, Region, VirtAddr};
use modload_platform::x86_64::{split_huge_pages, PageProtection};
use x86_64::instructions::port::Port;
use x86_64::registers::control::Cr3;
use x86_64::structures::paging::{FrameAllocator, OffsetPageTable, PageTable, PhysFrame, Size4KiB};

// The boot code: from QEMU's 32-bit entry to `kernel_main` in long mode.
core::arch::global_asm!(include_str!("boot.s"), options(att_syntax));

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
static PROTECTION: PageProtection = PageProtection::new();

const REGION_SIZE: u64 = 2 << 20;
extern "C" {
    /// From link.ld: 2 MiB-aligned, right after the kernel.
    static __module_region_start: u8;
}

#[no_mangle]
extern "C" fn kernel_main() -> ! {
    // SAFETY: called once, before any allocation; nothing else uses the array.
    unsafe {
        HEAP.lock()
            .init(core::ptr::addr_of_mut!(HEAP_MEMORY).cast(), 64 * 1024)
    };
    match run() {
        Ok(()) => exit(0x10),
        Err(error) => {
            println!("error: {error}");
            exit(0x11)
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let region = core::ptr::addr_of!(__module_region_start) as u64;
    map_region_with_small_pages(region)?;
    // SAFETY: the region's memory is mapped read-write (just above), outside
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

/// The boot code maps the first GiB with 2 MiB pages, but the loader sets
/// permissions per 4 KiB page: split the region's 2 MiB page into 4 KiB
/// pages and hand the tables to [`PROTECTION`].
fn map_region_with_small_pages(start: u64) -> Result<(), ProtectionError> {
    // One page table covers the 2 MiB region.
    static mut REGION_TABLE: PageTable = PageTable::new();
    struct OneTable(Option<PhysFrame>);
    // SAFETY: hands out one zeroed, 4 KiB-aligned frame (a static, identity-
    // mapped) that nothing else uses, once.
    unsafe impl FrameAllocator<Size4KiB> for OneTable {
        fn allocate_frame(&mut self) -> Option<PhysFrame> {
            self.0.take()
        }
    }
    let table = core::ptr::addr_of!(REGION_TABLE) as u64;
    let mut frames = OneTable(PhysFrame::from_start_address(x86_64::PhysAddr::new(table)).ok());

    let root = Cr3::read().0.start_address().as_u64() as *mut PageTable;
    // SAFETY: memory is identity-mapped (offset 0), and these are the live
    // tables, referenced from nowhere else.
    let mut tables = unsafe { OffsetPageTable::new(&mut *root, x86_64::VirtAddr::new(0)) };
    // SAFETY: the region has its own 2 MiB page (link.ld), which nothing
    // uses yet: no code, stack or table of ours is in it.
    unsafe { split_huge_pages(&mut tables, start, REGION_SIZE, &mut frames)? };
    PROTECTION.install(tables);
    Ok(())
}

/// Writes to COM1, which QEMU connects to `-serial stdio` (QEMU's UART needs
/// no set-up; real hardware would want a baud rate and a busy-wait).
fn print(args: core::fmt::Arguments<'_>) {
    struct Com1;
    impl Write for Com1 {
        fn write_str(&mut self, text: &str) -> core::fmt::Result {
            for byte in text.bytes() {
                // SAFETY: port 0x3f8 is COM1's data register; writing sends a byte.
                unsafe { Port::<u8>::new(0x3f8).write(byte) };
            }
            Ok(())
        }
    }
    let _ = Com1.write_fmt(args);
}

/// Stops QEMU through its isa-debug-exit device: QEMU exits with `(code << 1) | 1`.
fn exit(code: u32) -> ! {
    // SAFETY: port 0xf4 is isa-debug-exit (see the runner in .cargo/config.toml).
    unsafe { Port::<u32>::new(0xf4).write(code) };
    loop {
        x86_64::instructions::hlt();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("panic: {info}");
    exit(0x11)
}
