/* Refused: TBZ reaches only ±32 KiB, and the kernel is further away. */
    .text
    .globl overflow_entry
overflow_entry:
    tbz x0, #0, kernel_print
    ret
