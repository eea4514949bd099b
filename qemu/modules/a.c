/* Module A: loaded first. Prints through the kernel, owns data that C writes
 * and rodata that must not be writable. */
#include "kernel.h"

int a_data = 5;
const char a_rodata[64] = "module A's read-only data";
static int started;

__attribute__((constructor)) static void a_init(void) { started = 1; }
__attribute__((destructor)) static void a_fini(void) { kernel_fini_note(1); }

void a_hello(void) { KERNEL_PRINT("hello from module A (C)"); }

/* 42 once the constructor has run. */
int a_value(void) { return started ? 42 : -1; }

int a_get_data(void) { return a_data; }
