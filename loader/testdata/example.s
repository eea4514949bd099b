# The object behind the crate-level example: one function that returns the
# address of a host export, through a single R_X86_64_64.
# Rebuild with: gcc -c testdata/example.s -o testdata/example.o
    .text
    .globl  kernel_print_address
kernel_print_address:
    movabsq $kernel_print, %rax
    ret
