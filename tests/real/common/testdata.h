/*
 * testdata.h: what the compression programs of the real-program harness
 * share: deterministic compressible data and FNV-1a checksums. Header-only
 * (static functions) so each program stays one main.c plus its library.
 */
#ifndef REAL_TESTDATA_H
#define REAL_TESTDATA_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A few MB: large enough that every library runs its block loops many
 * times, small enough that a run under qemu stays in seconds. */
#define TESTDATA_SIZE ((size_t)3 << 20)

static uint64_t testdata_state = 0x9e3779b97f4a7c15u;

static uint32_t testdata_next(void)
{
    /* xorshift64*: fixed seed, so every run makes the same bytes. */
    testdata_state ^= testdata_state >> 12;
    testdata_state ^= testdata_state << 25;
    testdata_state ^= testdata_state >> 27;
    return (uint32_t)((testdata_state * 0x2545f4914f6cdd1du) >> 32);
}

/* Text-like data: words from a small vocabulary, numbers, and runs, so it
 * compresses to roughly a third, like real data, rather than not at all. */
static unsigned char *testdata_make(size_t size)
{
    static const char *const words[] = {
        "modload", "object", "symbol", "relocation", "section", "module",
        "the", "a", "of", "loads", "binds", "resolves", "kernel", "host",
        "page", "table", "entry", "stub", "got", "plt", "data", "text",
    };
    const size_t word_count = sizeof words / sizeof words[0];
    unsigned char *data = malloc(size);
    if (data == NULL)
        return NULL;
    size_t at = 0;
    while (at < size) {
        uint32_t choice = testdata_next();
        char piece[64];
        int length;
        switch (choice % 8) {
        case 0:
            length = snprintf(piece, sizeof piece, "%u ", choice >> 8);
            break;
        case 1:
            length = (int)(choice >> 8) % 24 + 1;
            for (int i = 0; i < length; i++)
                piece[i] = (char)('A' + (choice >> 3) % 26);
            break;
        default:
            length = snprintf(piece, sizeof piece, "%s ", words[(choice >> 4) % word_count]);
            break;
        }
        for (int i = 0; i < length && at < size; i++)
            data[at++] = (unsigned char)piece[i];
    }
    return data;
}

static uint64_t fnv1a(const void *bytes, size_t size)
{
    const unsigned char *p = bytes;
    uint64_t hash = 0xcbf29ce484222325u;
    for (size_t i = 0; i < size; i++) {
        hash ^= p[i];
        hash *= 0x100000001b3u;
    }
    return hash;
}

/* Prints one "label: input -> compressed" line with both checksums. */
static void report(const char *label, const void *input, size_t input_size,
                   const void *compressed, size_t compressed_size)
{
    printf("%s: %zu -> %zu bytes, data fnv %016llx, compressed fnv %016llx\n", label,
           input_size, compressed_size, (unsigned long long)fnv1a(input, input_size),
           (unsigned long long)fnv1a(compressed, compressed_size));
}

/* Reports a round trip of `size` bytes that came back as `restored_size`
 * bytes at `restored`: the sizes and checksums if they are `data` again and
 * `ok` (the library said so too), else that it failed. Returns whether it held. */
static int settle(const char *label, int ok, const unsigned char *data, size_t size,
                  const void *compressed, size_t compressed_size, const void *restored,
                  size_t restored_size)
{
    ok = ok && restored_size == size && memcmp(restored, data, size) == 0;
    if (ok)
        report(label, data, size, compressed, compressed_size);
    else
        printf("%s: round trip FAILED\n", label);
    return ok;
}

/* The end of every main: frees the test data, says how the round trips
 * went, and gives the exit status. */
static int testdata_finish(unsigned char *data, int ok)
{
    free(data);
    printf("%s\n", ok ? "round trips ok" : "round trips FAILED");
    return ok ? 0 : 1;
}

#endif
