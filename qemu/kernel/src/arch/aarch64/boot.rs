//! `_start`: QEMU's `-kernel` enters the ELF's entry point with the MMU off, at
//! EL1 (or EL2 with `-machine virtualization=on`). This code drops to EL1 if
//! needed, untraps FP/SIMD (compiled Rust uses the vector registers), gives
//! exceptions their own stack (`SP_EL1`) and the kernel another (`SP_EL0`, so
//! the kernel runs in EL1t), zeroes `.bss` and calls `crate::kernel_main`.

use core::sync::atomic::{AtomicU64, Ordering};

core::arch::global_asm!(
    r#"
    .section .text.boot, "ax"
    .global _start
_start:
    mrs     x19, CurrentEL
    ubfx    x19, x19, #2, #2        /* x19 = the exception level we booted at */
    cmp     x19, #1
    b.eq    el1_entry
    cmp     x19, #2
    b.ne    park                    /* EL3 is not supported */

    /* EL2: EL1 runs AArch64 and traps nothing to EL2 (HCR_EL2.RW only). */
    mov     x9, #(1 << 31)
    msr     hcr_el2, x9
    /* EL1 may use the physical counter and timer (CNTHCTL_EL2.EL1PCTEN, EL1PCEN). */
    mrs     x9, cnthctl_el2
    orr     x9, x9, #3
    msr     cnthctl_el2, x9
    msr     cntvoff_el2, xzr
    /* CPTR_EL2: its RES1 bits only, so FP/SIMD does not trap to EL2. */
    mov     x9, #0x33ff
    msr     cptr_el2, x9
    msr     hstr_el2, xzr
    /* SCTLR_EL1: RES1 bits (0x30d00800), MMU and caches off until Rust turns them on. */
    mov     x9, #0x0800
    movk    x9, #0x30d0, lsl #16
    msr     sctlr_el1, x9
    /* Return to EL1h with D, A, I and F masked. */
    mov     x9, #0x3c5
    msr     spsr_el2, x9
    adr     x9, el1_entry
    msr     elr_el2, x9
    eret

el1_entry:
    /* CPACR_EL1.FPEN = 0b11: FP/SIMD does not trap at EL1 or EL0. */
    mov     x9, #(3 << 20)
    msr     cpacr_el1, x9
    isb
    /* Exceptions take SP_EL1: point it at the exception stack. */
    msr     spsel, #1
    adrp    x9, __exception_stack_top
    add     x9, x9, :lo12:__exception_stack_top
    mov     sp, x9
    /* The kernel runs on SP_EL0. */
    adrp    x9, __stack_top
    add     x9, x9, :lo12:__stack_top
    msr     sp_el0, x9
    msr     spsel, #0
    /* Zero .bss 16 bytes at a time (the linker script aligns both ends to 16). */
    adrp    x9, __bss_start
    add     x9, x9, :lo12:__bss_start
    adrp    x10, __bss_end
    add     x10, x10, :lo12:__bss_end
1:  cmp     x9, x10
    b.hs    2f
    stp     xzr, xzr, [x9], #16
    b       1b
2:  mov     x0, x19
    bl      {entry}
park:
    wfe
    b       park
"#,
    entry = sym rust_entry,
);

/// The exception level `_start` was entered at (1 or 2).
static BOOT_EXCEPTION_LEVEL: AtomicU64 = AtomicU64::new(0);

/// Whether the machine entered the kernel at EL2, so EL2 belongs to no
/// hypervisor and PSCI calls must go to EL3 firmware (`smc`), not `hvc`.
pub fn booted_at_el2() -> bool {
    BOOT_EXCEPTION_LEVEL.load(Ordering::Relaxed) == 2
}

/// Called once by `_start` at EL1 with both stacks set and `.bss` zeroed.
extern "C" fn rust_entry(boot_exception_level: u64) -> ! {
    // A plain store: the MMU is still off, so memory is Device memory, where
    // atomic read-modify-write instructions (exclusives) may not work.
    BOOT_EXCEPTION_LEVEL.store(boot_exception_level, Ordering::Relaxed);
    crate::kernel_main()
}
