/* Module G: faults on purpose, for the kernels' fault reports. The kernel
 * calls g_run, which calls g_poke, which writes to G's read-only data. */
#include "kernel.h"

const char g_banner[16] = "read-only";

/* Not inlined, so that the fault is in g_poke and g_run is its caller's
 * frame; the volatile store is the faulting instruction. */
__attribute__((noinline)) int g_poke(volatile char *target) {
    *target = 'X';
    return target[1];
}

/* Uses g_poke's result, so the call is not a tail call and g_run keeps its
 * frame while g_poke runs. */
int g_run(void) { return g_poke((volatile char *)g_banner) + 1; }

/* Still answers after the fault. */
int g_value(void) { return 13; }
