//! PVH entry: QEMU's `-kernel` finds the `XEN_ELFNOTE_PHYS32_ENTRY` note and
//! enters `_start32` in 32-bit protected mode with paging off. This code
//! identity-maps the first GiB with 2 MiB pages (enough to reach the Rust
//! code), turns on long mode with `EFER.NXE` and `CR0.WP`, and calls
//! `crate::kernel_main`. Rust then replaces these tables with 4 KiB mappings.

core::arch::global_asm!(
    r#"
    .section .note.Xen, "a", @note
    .p2align 2
    .long 4                 /* name size: "Xen\0" */
    .long 4                 /* descriptor size */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .p2align 2
    .long _start32
    .p2align 2

    .section .text.boot, "ax"
    .code32
    .global _start32
_start32:
    cli
    /* Zero the boot tables: the loader zeroes nothing it has no bytes for. */
    mov $boot_tables_start, %edi
    mov $boot_tables_end, %ecx
    sub %edi, %ecx
    shr $2, %ecx
    xor %eax, %eax
    rep stosl
    movl $(boot_pdpt + 3), boot_pml4
    movl $(boot_pd + 3), boot_pdpt
    /* 512 two-MiB pages: present, writable, large. */
    xor %ecx, %ecx
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
    mov $0xC0000080, %ecx   /* EFER */
    rdmsr
    or $0x900, %eax         /* LME | NXE */
    wrmsr
    mov %cr0, %eax
    or $0x80010001, %eax    /* PG | WP | PE */
    mov %eax, %cr0
    lgdt boot_gdt_pointer
    ljmp $0x08, $start64

    .code64
start64:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %ax, %fs
    mov %ax, %gs
    lea __stack_top(%rip), %rsp
    lea __bss_start(%rip), %rdi
    lea __bss_end(%rip), %rcx
    sub %rdi, %rcx
    xor %eax, %eax
    rep stosb
    call {entry}
2:  hlt
    jmp 2b

    .section .rodata.boot, "a"
    .p2align 3
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff    /* 64-bit code */
    .quad 0x00cf92000000ffff    /* data */
boot_gdt_end:
boot_gdt_pointer:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt

    .section .boot_tables, "aw", @nobits
    .p2align 12
boot_tables_start:
boot_pml4: .skip 4096
boot_pdpt: .skip 4096
boot_pd:   .skip 4096
boot_tables_end:
    "#,
    entry = sym rust_entry,
    options(att_syntax)
);

/// Called once from `start64` with a stack and a zeroed `.bss`.
extern "C" fn rust_entry() -> ! {
    crate::kernel_main()
}
