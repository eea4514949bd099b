/*
 * zstd's program for the real-program harness: compresses a few MB of
 * deterministic data at two levels one-shot and once through the streaming
 * API, checks each round trip, prints sizes and checksums (zstd's own XXH64
 * of the data too). Exits 0, or 1 on any failure.
 */
#include <string.h>

#include "../common/testdata.h"
#include "zstd.h"

static int one_shot(const unsigned char *data, size_t size, int level)
{
    size_t capacity = ZSTD_compressBound(size);
    unsigned char *compressed = malloc(capacity);
    unsigned char *restored = malloc(size);
    if (!compressed || !restored)
        return 0;
    size_t compressed_size = ZSTD_compress(compressed, capacity, data, size, level);
    if (ZSTD_isError(compressed_size)) {
        printf("level %d compress FAILED: %s\n", level, ZSTD_getErrorName(compressed_size));
        return 0;
    }
    unsigned long long declared = ZSTD_getFrameContentSize(compressed, compressed_size);
    size_t restored_size = ZSTD_decompress(restored, size, compressed, compressed_size);
    char label[32];
    snprintf(label, sizeof label, "level %d", level);
    int ok = settle(label, !ZSTD_isError(restored_size) && declared == size, data, size,
                    compressed, compressed_size, restored, restored_size);
    free(compressed);
    free(restored);
    return ok;
}

static int streaming(const unsigned char *data, size_t size)
{
    size_t capacity = ZSTD_compressBound(size);
    unsigned char *compressed = malloc(capacity);
    unsigned char *restored = malloc(size);
    ZSTD_CCtx *compressor = ZSTD_createCCtx();
    ZSTD_DCtx *decompressor = ZSTD_createDCtx();
    if (!compressed || !restored || !compressor || !decompressor)
        return 0;
    ZSTD_CCtx_setParameter(compressor, ZSTD_c_compressionLevel, 12);
    ZSTD_CCtx_setParameter(compressor, ZSTD_c_checksumFlag, 1);
    ZSTD_outBuffer out = { compressed, capacity, 0 };
    for (size_t offered = 0; offered < size;) {
        size_t chunk = size - offered < 100000 ? size - offered : 100000;
        ZSTD_inBuffer in = { data + offered, chunk, 0 };
        int last = offered + chunk == size;
        size_t remaining;
        do {
            remaining = ZSTD_compressStream2(compressor, &out, &in,
                                             last ? ZSTD_e_end : ZSTD_e_continue);
            if (ZSTD_isError(remaining)) {
                printf("stream compress FAILED: %s\n", ZSTD_getErrorName(remaining));
                return 0;
            }
        } while (last ? remaining != 0 : in.pos < in.size);
        offered += chunk;
    }
    ZSTD_inBuffer in = { compressed, out.pos, 0 };
    ZSTD_outBuffer back = { restored, size, 0 };
    while (in.pos < in.size) {
        size_t status = ZSTD_decompressStream(decompressor, &back, &in);
        if (ZSTD_isError(status)) {
            printf("stream decompress FAILED: %s\n", ZSTD_getErrorName(status));
            return 0;
        }
    }
    int ok = settle("stream level 12 with checksum", 1, data, size, compressed, out.pos, restored,
                    back.pos);
    ZSTD_freeCCtx(compressor);
    ZSTD_freeDCtx(decompressor);
    free(compressed);
    free(restored);
    return ok;
}

int main(void)
{
    unsigned char *data = testdata_make(TESTDATA_SIZE);
    if (data == NULL)
        return 1;
    printf("zstd %s\n", ZSTD_versionString());
    int ok = one_shot(data, TESTDATA_SIZE, 1) && one_shot(data, TESTDATA_SIZE, 3) &&
             streaming(data, TESTDATA_SIZE);
    return testdata_finish(data, ok);
}
