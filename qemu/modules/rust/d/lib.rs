//! Module D: staged in one place, run at an alias address.
#![no_std]

use core::ptr::addr_of_mut;

extern "C" {
    fn kernel_counter_add(delta: u64) -> u64;
    fn kernel_fini_note(id: u64);
}

/// Plain data rather than an atomic: D runs on one core, and atomics could
/// pull in out-of-line helpers that the kernel does not export.
static mut STATE: u64 = 0;

extern "C" fn d_init() {
    // SAFETY: D's own data, touched by one core at a time.
    unsafe { addr_of_mut!(STATE).write_volatile(10) };
}

extern "C" fn d_fini() {
    // SAFETY: a kernel export.
    unsafe { kernel_fini_note(4) };
}

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = d_init;

#[used]
#[link_section = ".fini_array"]
static FINI: extern "C" fn() = d_fini;

/// Adds `x` to the state the constructor set to 10, and returns it times 3.
#[no_mangle]
pub extern "C" fn d_compute(x: u64) -> u64 {
    // SAFETY: a kernel export, and D's own data as in `d_init`.
    unsafe {
        kernel_counter_add(1);
        let state = addr_of_mut!(STATE).read_volatile().wrapping_add(x);
        addr_of_mut!(STATE).write_volatile(state);
        state.wrapping_mul(3)
    }
}

/// Where D's code runs: the address of `d_compute`, as D itself sees it.
#[no_mangle]
pub extern "C" fn d_where() -> u64 {
    d_compute as usize as u64
}
