/*
 * Runs four threads that update counters.c's atomics, then checks and
 * prints the totals, which do not depend on the interleaving. Also uses
 * atomics of its own on every width. Exits 0, or 1 if a total is wrong.
 */
#include <pthread.h>
#include <stdio.h>

#include "atomics.h"

enum { THREADS = 4, ROUNDS = 20000 };

static _Atomic uint8_t flags8;
static _Atomic uint16_t flags16;
static _Atomic int32_t signed32 = 1000;
static _Atomic int64_t signed64 = -5;
static atomic_flag spin = ATOMIC_FLAG_INIT;
static uint64_t guarded_total;

static void *work(void *argument)
{
    uint32_t worker = (uint32_t)(uintptr_t)argument;
    for (uint32_t round = 0; round < ROUNDS; round++) {
        update_counters(worker, (uint64_t)worker * ROUNDS + round);
        if (round % 8 == 0)
            add_by_cas(1);
        atomic_fetch_or(&flags8, (uint8_t)(1u << worker));
        atomic_fetch_xor(&flags16, (uint16_t)(1u << (worker + 4)));
        atomic_fetch_sub(&signed32, 1);
        atomic_fetch_and(&signed64, ~(int64_t)0);
        while (atomic_flag_test_and_set_explicit(&spin, memory_order_acquire)) {
        }
        guarded_total += round;
        atomic_flag_clear_explicit(&spin, memory_order_release);
    }
    return NULL;
}

int main(void)
{
    pthread_t threads[THREADS];
    for (uintptr_t i = 0; i < THREADS; i++)
        if (pthread_create(&threads[i], NULL, work, (void *)i) != 0) {
            printf("pthread_create FAILED\n");
            return 1;
        }
    for (int i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);

    const uint64_t updates = (uint64_t)THREADS * ROUNDS;
    const uint64_t cas_adds = (uint64_t)THREADS * (ROUNDS / 8);
    uint8_t c8 = atomic_load(&counter8);
    uint16_t c16 = atomic_load(&counter16);
    uint32_t c32 = atomic_load(&counter32);
    uint64_t c64 = atomic_load(&counter64);
    printf("counter8 %u counter16 %u counter32 %u counter64 %llu\n", c8, c16, c32,
           (unsigned long long)c64);
    printf("maximum64 %llu last_writer < %d: %d\n", (unsigned long long)atomic_load(&maximum64),
           THREADS, atomic_load(&last_writer) < THREADS);
    printf("flags8 %#x flags16 %#x signed32 %d signed64 %lld guarded %llu\n",
           atomic_load(&flags8), atomic_load(&flags16), (int)atomic_load(&signed32),
           (long long)atomic_load(&signed64), (unsigned long long)guarded_total);

    int ok = c8 == (uint8_t)(updates * 3 + cas_adds) && c16 == (uint16_t)(updates * 5 + cas_adds) &&
             c32 == (uint32_t)(updates * 7 + cas_adds) && c64 == updates * 0x100000001u + cas_adds &&
             atomic_load(&maximum64) == (uint64_t)(THREADS - 1) * ROUNDS + ROUNDS - 1 &&
             atomic_load(&flags8) == (1u << THREADS) - 1 && atomic_load(&flags16) == 0 &&
             atomic_load(&signed32) == 1000 - (int32_t)updates && atomic_load(&signed64) == -5 &&
             guarded_total == (uint64_t)THREADS * ROUNDS * (ROUNDS - 1) / 2;
    uint64_t drained = drain_counters();
    printf("drained %llu, now %u %u %u %llu\n", (unsigned long long)drained, counter8, counter16,
           counter32, (unsigned long long)counter64);
    printf("%s\n", ok ? "totals ok" : "totals WRONG");
    return ok ? 0 : 1;
}
