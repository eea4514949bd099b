//! Module B: calls module A and the kernel's exports.
#![no_std]

extern "C" {
    fn a_value() -> i32;
    fn kernel_print(text: *const u8, len: usize);
    fn kernel_counter_add(delta: u64) -> u64;
    fn kernel_alloc(size: usize, align: usize) -> *mut u8;
    fn kernel_free(memory: *mut u8, size: usize, align: usize);
    fn kernel_fini_note(id: u64);
}

/// A's value times two, plus one: 85. Bumps the kernel counter once.
#[no_mangle]
pub extern "C" fn b_compute() -> i64 {
    let message = b"hello from module B (Rust)";
    // SAFETY: the kernel's exports, called as they are declared there.
    unsafe {
        kernel_print(message.as_ptr(), message.len());
        let memory = kernel_alloc(64, 8);
        if memory.is_null() {
            return -1;
        }
        memory.write_volatile(7);
        let seven = memory.read_volatile();
        kernel_free(memory, 64, 8);
        kernel_counter_add(1);
        i64::from(a_value()) * 2 + i64::from(seven) - 6
    }
}

extern "C" fn b_fini() {
    // SAFETY: a kernel export.
    unsafe { kernel_fini_note(2) };
}

#[used]
#[link_section = ".fini_array"]
static FINI: extern "C" fn() = b_fini;
