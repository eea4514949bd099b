//! The unbound path: where a call to a pending import goes until a definition
//! exists (see [`crate::Loader::late_binding`]).
//!
//! A pending import's lazy entry puts the address of the import's context
//! in a scratch register (`r11` on x86-64, `x16` on AArch64) and jumps to
//! [`modload_unbound_entry`], an assembly routine. It saves every register
//! that may carry an argument, asks the namespace named in the context what
//! to do, and either jumps on to the definition with the arguments intact
//! (the import was bound after the caller read its slot, or the caller kept
//! a function pointer read before binding) or returns 0 to the caller (in
//! the integer and the first vector return registers) after the namespace
//! has reported the call through its hook.

use crate::arch::Machine;
use crate::namespace::Namespace;

/// The unbound path's address for modules of `machine`, if they run on this
/// host's architecture; `None` otherwise (their lazy entries trap instead).
pub(crate) fn entry_for(machine: Machine) -> Option<u64> {
    let host = if cfg!(target_arch = "x86_64") {
        Some(Machine::X86_64)
    } else if cfg!(target_arch = "aarch64") {
        Some(Machine::AArch64)
    } else {
        None
    };
    if host != Some(machine) {
        return None;
    }
    entry_address()
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn entry_address() -> Option<u64> {
    unsafe extern "C" {
        fn modload_unbound_entry();
    }
    let entry: unsafe extern "C" fn() = modload_unbound_entry;
    Some(entry as usize as u64)
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn entry_address() -> Option<u64> {
    None
}

/// Called by the assembly routine with the context of the import that was
/// called: returns the address to continue at, or 0 to return 0 to the
/// caller (the hook has been told).
///
/// # Safety
/// `context` must be the context of a pending import of a loaded module,
/// which the loader wrote: two words, the namespace's address first.
unsafe extern "C" fn modload_resolve_unbound(context: *const u64) -> u64 {
    // SAFETY: the lazy entry that called the routine passed its own
    // import's context, which lies in the module's read-only GOT for as
    // long as the module is loaded, and whose first word the loader wrote
    // as the address of the namespace the module lives in; late binding
    // requires that namespace to live for the rest of the program.
    let namespace = unsafe { &*(context.read() as usize as *const Namespace) };
    namespace.unbound_call(context as usize as u64)
}

// x86-64: entered by a jump, with the caller's return address on the stack
// (so the stack is 8 bytes off 16-byte alignment, as at any function entry)
// and the context in r11. Saves the integer argument registers, rax (the
// vector-register count of a variadic call) and r10 (the static chain),
// and the vector argument registers where SSE is enabled.
#[cfg(target_arch = "x86_64")]
macro_rules! x86_64_routine {
    ($save_vectors:literal, $restore_vectors:literal, $zero_vector:literal) => {
        core::arch::global_asm!(
            ".pushsection .text.modload_unbound_entry,\"ax\",@progbits",
            ".globl modload_unbound_entry",
            ".hidden modload_unbound_entry",
            ".type modload_unbound_entry,@function",
            ".p2align 4",
            "modload_unbound_entry:",
            "push rbp",
            "mov rbp, rsp",
            "push rdi",
            "push rsi",
            "push rdx",
            "push rcx",
            "push r8",
            "push r9",
            "push rax",
            "push r10",
            "sub rsp, 128",
            $save_vectors,
            "mov rdi, r11",
            "call {resolve}",
            "mov r11, rax",
            $restore_vectors,
            "add rsp, 128",
            "pop r10",
            "pop rax",
            "pop r9",
            "pop r8",
            "pop rcx",
            "pop rdx",
            "pop rsi",
            "pop rdi",
            "pop rbp",
            "test r11, r11",
            "jz 2f",
            "jmp r11",
            "2:",
            "xor eax, eax",
            "xor edx, edx",
            $zero_vector,
            "ret",
            ".size modload_unbound_entry, . - modload_unbound_entry",
            ".popsection",
            resolve = sym modload_resolve_unbound,
        );
    };
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
x86_64_routine!(
    "movdqu [rsp], xmm0\nmovdqu [rsp + 16], xmm1\nmovdqu [rsp + 32], xmm2\nmovdqu [rsp + 48], xmm3\nmovdqu [rsp + 64], xmm4\nmovdqu [rsp + 80], xmm5\nmovdqu [rsp + 96], xmm6\nmovdqu [rsp + 112], xmm7",
    "movdqu xmm0, [rsp]\nmovdqu xmm1, [rsp + 16]\nmovdqu xmm2, [rsp + 32]\nmovdqu xmm3, [rsp + 48]\nmovdqu xmm4, [rsp + 64]\nmovdqu xmm5, [rsp + 80]\nmovdqu xmm6, [rsp + 96]\nmovdqu xmm7, [rsp + 112]",
    "pxor xmm0, xmm0"
);

// A kernel built without SSE passes no arguments in vector registers.
#[cfg(all(target_arch = "x86_64", not(target_feature = "sse2")))]
x86_64_routine!("", "", "");

// AArch64: entered by `br`, so x30 still holds the caller's return address,
// with the context in x16. Saves x0-x8 (x8: the indirect result address)
// and, where the FP/SIMD unit is in use, q0-q7.
#[cfg(target_arch = "aarch64")]
macro_rules! aarch64_routine {
    ($save_vectors:literal, $restore_vectors:literal, $zero_vector:literal) => {
        core::arch::global_asm!(
            ".pushsection .text.modload_unbound_entry,\"ax\",@progbits",
            ".globl modload_unbound_entry",
            ".hidden modload_unbound_entry",
            ".type modload_unbound_entry,%function",
            ".p2align 4",
            "modload_unbound_entry:",
            "stp x29, x30, [sp, #-16]!",
            "mov x29, sp",
            "stp x0, x1, [sp, #-16]!",
            "stp x2, x3, [sp, #-16]!",
            "stp x4, x5, [sp, #-16]!",
            "stp x6, x7, [sp, #-16]!",
            "stp x8, xzr, [sp, #-16]!",
            $save_vectors,
            "mov x0, x16",
            "bl {resolve}",
            "mov x16, x0",
            $restore_vectors,
            "ldp x8, xzr, [sp], #16",
            "ldp x6, x7, [sp], #16",
            "ldp x4, x5, [sp], #16",
            "ldp x2, x3, [sp], #16",
            "ldp x0, x1, [sp], #16",
            "ldp x29, x30, [sp], #16",
            "cbz x16, 2f",
            "br x16",
            "2:",
            "mov x0, #0",
            "mov x1, #0",
            $zero_vector,
            "ret",
            ".size modload_unbound_entry, . - modload_unbound_entry",
            ".popsection",
            resolve = sym modload_resolve_unbound,
        );
    };
}

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
aarch64_routine!(
    "stp q0, q1, [sp, #-32]!\nstp q2, q3, [sp, #-32]!\nstp q4, q5, [sp, #-32]!\nstp q6, q7, [sp, #-32]!",
    "ldp q6, q7, [sp], #32\nldp q4, q5, [sp], #32\nldp q2, q3, [sp], #32\nldp q0, q1, [sp], #32",
    "movi v0.2d, #0"
);

#[cfg(all(target_arch = "aarch64", not(target_feature = "neon")))]
aarch64_routine!("", "", "");
