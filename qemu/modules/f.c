/* Module F: defines what E waits for. */
#include "kernel.h"

static long offset = 7;

long f_square(long value) { return value * value; }

long f_offset(void) { return offset; }
