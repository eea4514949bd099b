/*
 * PVH entry: QEMU's `-kernel` finds the XEN_ELFNOTE_PHYS32_ENTRY note and
 * jumps to `_start32` in 32-bit protected mode, paging off. This zeroes .bss,
 * identity-maps the first GiB with 2 MiB pages, enables long mode with
 * no-execute pages (EFER.NXE) and read-only pages enforced in ring 0
 * (CR0.WP), and calls `kernel_main`.
 */
    .section .note.Xen, "a", @note
    .p2align 2
    .long 4, 4, 18          /* name size, descriptor size, PHYS32_ENTRY */
    .asciz "Xen"
    .p2align 2
    .long _start32

    .section .text.boot, "ax"
    .code32
    .global _start32
_start32:
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    xor %eax, %eax
    rep stosb
    movl $(boot_pdpt + 3), boot_pml4
    movl $(boot_pd + 3), boot_pdpt
    xor %ecx, %ecx          /* 512 entries: present, writable, 2 MiB */
1:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax
    mov %eax, boot_pd(,%ecx,8)
    inc %ecx
    cmp $512, %ecx
    jne 1b
    mov %cr4, %eax
    or $0x20, %eax          /* PAE */
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx   /* EFER: LME | NXE */
    rdmsr
    or $0x900, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80010001, %eax    /* PG | WP | PE */
    mov %eax, %cr0
    lgdt gdt_pointer
    ljmp $0x08, $start64

    .code64
start64:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    lea stack_top(%rip), %rsp
    call kernel_main
2:  hlt
    jmp 2b

    .section .rodata.boot, "a"
    .p2align 3
gdt:
    .quad 0
    .quad 0x00af9a000000ffff    /* 64-bit code */
    .quad 0x00cf92000000ffff    /* data */
gdt_pointer:
    .word gdt_pointer - gdt - 1
    .long gdt

    .section .bss.boot, "aw", @nobits
    .p2align 12
    .global boot_pml4
boot_pml4: .skip 4096
boot_pdpt: .skip 4096
boot_pd:   .skip 4096
stack:     .skip 65536
stack_top:
