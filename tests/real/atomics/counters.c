/* The counters and their update functions (see atomics.h). */
#include "atomics.h"

_Atomic uint8_t counter8;
_Atomic uint16_t counter16;
_Atomic uint32_t counter32;
_Atomic uint64_t counter64;
_Atomic uint64_t maximum64;
_Atomic uint32_t last_writer;

void update_counters(uint32_t worker, uint64_t candidate)
{
    atomic_fetch_add_explicit(&counter8, 3, memory_order_relaxed);
    atomic_fetch_add_explicit(&counter16, 5, memory_order_acq_rel);
    atomic_fetch_add(&counter32, 7);
    atomic_fetch_add(&counter64, 0x100000001u);
    uint64_t seen = atomic_load(&maximum64);
    while (seen < candidate && !atomic_compare_exchange_weak(&maximum64, &seen, candidate)) {
    }
    atomic_exchange(&last_writer, worker);
}

void add_by_cas(uint32_t amount)
{
    uint8_t old8 = atomic_load(&counter8);
    while (!atomic_compare_exchange_strong(&counter8, &old8, (uint8_t)(old8 + amount))) {
    }
    uint16_t old16 = atomic_load(&counter16);
    while (!atomic_compare_exchange_strong(&counter16, &old16, (uint16_t)(old16 + amount))) {
    }
    uint32_t old32 = atomic_load(&counter32);
    while (!atomic_compare_exchange_weak(&counter32, &old32, old32 + amount)) {
    }
    uint64_t old64 = atomic_load(&counter64);
    while (!atomic_compare_exchange_weak(&counter64, &old64, old64 + amount)) {
    }
}

uint64_t drain_counters(void)
{
    uint64_t sum = atomic_exchange(&counter8, 0);
    sum += atomic_exchange(&counter16, 0);
    sum += atomic_exchange(&counter32, 0);
    sum += atomic_exchange(&counter64, 0);
    return sum;
}
