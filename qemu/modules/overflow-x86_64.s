/* Refused: a one-byte PC-relative displacement cannot reach the kernel. */
    .text
    .globl overflow_entry
overflow_entry:
    .byte 0xeb
    .reloc ., R_X86_64_PC8, kernel_print - 1
    .byte 0
