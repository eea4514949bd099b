/* Module E: loaded before F, whose functions it calls. With late binding
 * both calls wait, through E's stubs and GOT slots, until F arrives. */
#include "kernel.h"

long f_square(long value);
long f_offset(void);

long e_call(long value) { return f_square(value) + f_offset(); }
