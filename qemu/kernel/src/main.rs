//! A small test kernel that loads modules with modload, one at a time, under
//! real page permissions, and reports each step of its scenario on the console.
//! The host runner (`qemu/runner`) boots it in QEMU and reads the report.
#![no_std]
#![no_main]
#![cfg_attr(target_arch = "x86_64", feature(abi_x86_interrupt))]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

extern crate alloc;

#[macro_use]
mod console;
mod arch;
mod archive;
mod debugger;
mod exports;
mod fault_report;
mod ksyms;
mod scenario;
mod writer;

use linked_list_allocator::LockedHeap;

/// The kernel heap: the loader's bookkeeping and the modules' `kernel_alloc`.
#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

const HEAP_SIZE: usize = 4 << 20;

/// Heap memory, in `.bss`.
#[repr(C, align(4096))]
struct HeapMemory([u8; HEAP_SIZE]);

static mut HEAP_MEMORY: HeapMemory = HeapMemory([0; HEAP_SIZE]);

/// The Rust entry point, called by each architecture's boot code with a stack
/// and a zeroed `.bss`.
pub fn kernel_main() -> ! {
    arch::init();
    // SAFETY: called once, before any allocation; the memory is a static used
    // by nothing else, so the heap owns it for the rest of the run.
    unsafe {
        HEAP.lock()
            .init(core::ptr::addr_of_mut!(HEAP_MEMORY).cast(), HEAP_SIZE)
    };
    println!(
        "modload test kernel ({}) up, {} functions in its symbol table",
        scenario::ARCH,
        ksyms::count()
    );
    let passed = scenario::run();
    arch::exit(passed)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("KERNEL PANIC: {info}");
    arch::exit(false)
}
