/* The test kernel's exports (qemu/kernel/src/exports.rs). */
#ifndef MODLOAD_TEST_KERNEL_H
#define MODLOAD_TEST_KERNEL_H

void kernel_print(const char *text, unsigned long len);
unsigned long kernel_counter_add(unsigned long delta);
void kernel_fini_note(unsigned long id);
void *kernel_alloc(unsigned long size, unsigned long align);
void kernel_free(void *memory, unsigned long size, unsigned long align);

#define KERNEL_PRINT(literal) kernel_print(literal, sizeof(literal) - 1)

#endif
