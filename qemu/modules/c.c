/* Module C: holds pointers to A's function and data, and writes A's data. */
#include "kernel.h"

extern int a_value(void);
extern int a_data;

int (*c_pointer)(void) = a_value;
int *c_data_pointer = &a_data;

__attribute__((destructor)) static void c_fini(void) { kernel_fini_note(3); }

int c_run(void) {
    *c_data_pointer = 99;
    return c_pointer();
}
