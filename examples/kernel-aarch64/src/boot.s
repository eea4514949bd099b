/*
 * `_start`: QEMU's `-kernel` enters here at EL1 (the virt board without
 * virtualization=on), MMU off. Rust code uses the FP/SIMD registers, so
 * untrap them first (CPACR_EL1.FPEN), then set the stack, zero .bss and call
 * `kernel_main`.
 */
    .section .text.boot, "ax"
    .global _start
_start:
    mov     x9, #(3 << 20)
    msr     cpacr_el1, x9
    isb
    adrp    x9, stack_top
    add     x9, x9, :lo12:stack_top
    mov     sp, x9
    adrp    x9, __bss_start
    add     x9, x9, :lo12:__bss_start
    adrp    x10, __bss_end
    add     x10, x10, :lo12:__bss_end
1:  cmp     x9, x10
    b.hs    2f
    stp     xzr, xzr, [x9], #16
    b       1b
2:  bl      kernel_main
3:  wfe
    b       3b

    .section .bss.boot, "aw", @nobits
    .p2align 4
stack:  .skip 65536
stack_top:
