/* Loaded and unloaded 200 times: fresh zeroed data on every load. */
#include "kernel.h"

static unsigned long calls;

unsigned long stress_value(unsigned long x) {
    calls++;
    kernel_counter_add(1);
    return x + calls;
}
