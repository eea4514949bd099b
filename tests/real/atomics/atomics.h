/*
 * The real-program harness's atomics program: counters of 1, 2, 4 and 8
 * bytes defined in counters.c and updated from main.c's threads with
 * fetch_add, compare_exchange and exchange. On AArch64, gcc's default
 * (-moutline-atomics) turns each into a call such as
 * __aarch64_ldadd4_acq_rel, which the loader must resolve.
 */
#ifndef REAL_ATOMICS_H
#define REAL_ATOMICS_H

#include <stdatomic.h>
#include <stdint.h>

extern _Atomic uint8_t counter8;
extern _Atomic uint16_t counter16;
extern _Atomic uint32_t counter32;
extern _Atomic uint64_t counter64;
extern _Atomic uint64_t maximum64;
extern _Atomic uint32_t last_writer;

/* One round of updates by `worker`: fetch_add on every width, a CAS loop
 * that raises maximum64 to `candidate`, an exchange of last_writer. */
void update_counters(uint32_t worker, uint64_t candidate);

/* Sums with compare_exchange loops only (no fetch_add), per width. */
void add_by_cas(uint32_t amount);

/* Returns the old value of each counter while swapping in zero. */
uint64_t drain_counters(void);

#endif
