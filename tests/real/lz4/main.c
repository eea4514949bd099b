/*
 * lz4's program for the real-program harness: compresses a few MB of
 * deterministic data with the block API (fast and HC) and the frame API
 * (which checksums with xxhash), checks each round trip, prints sizes and
 * checksums. Exits 0, or 1 on any failure.
 */
#include <string.h>

#include "../common/testdata.h"
#include "lz4.h"
#include "lz4frame.h"
#include "lz4hc.h"

static int block(const unsigned char *data, size_t size, int high_compression)
{
    int capacity = LZ4_compressBound((int)size);
    unsigned char *compressed = malloc((size_t)capacity);
    unsigned char *restored = malloc(size);
    if (!compressed || !restored)
        return 0;
    int compressed_size =
        high_compression
            ? LZ4_compress_HC((const char *)data, (char *)compressed, (int)size, capacity, 9)
            : LZ4_compress_default((const char *)data, (char *)compressed, (int)size, capacity);
    int restored_size = compressed_size > 0
                            ? LZ4_decompress_safe((const char *)compressed, (char *)restored,
                                                  compressed_size, (int)size)
                            : -1;
    int ok = settle(high_compression ? "block HC level 9" : "block default",
                    compressed_size > 0 && restored_size >= 0, data, size, compressed,
                    (size_t)compressed_size, restored, (size_t)restored_size);
    free(compressed);
    free(restored);
    return ok;
}

static int frame(const unsigned char *data, size_t size)
{
    LZ4F_preferences_t preferences;
    memset(&preferences, 0, sizeof preferences);
    preferences.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
    preferences.frameInfo.blockChecksumFlag = LZ4F_blockChecksumEnabled;
    preferences.compressionLevel = 3;
    size_t capacity = LZ4F_compressFrameBound(size, &preferences);
    unsigned char *compressed = malloc(capacity);
    unsigned char *restored = malloc(size);
    if (!compressed || !restored)
        return 0;
    size_t compressed_size = LZ4F_compressFrame(compressed, capacity, data, size, &preferences);
    if (LZ4F_isError(compressed_size)) {
        printf("frame compress FAILED: %s\n", LZ4F_getErrorName(compressed_size));
        return 0;
    }
    LZ4F_dctx *context;
    if (LZ4F_isError(LZ4F_createDecompressionContext(&context, LZ4F_VERSION)))
        return 0;
    size_t restored_size = 0, consumed = 0, hint = 1;
    while (hint != 0 && consumed < compressed_size) {
        size_t out = size - restored_size, in = compressed_size - consumed;
        hint = LZ4F_decompress(context, restored + restored_size, &out, compressed + consumed,
                               &in, NULL);
        if (LZ4F_isError(hint)) {
            printf("frame decompress FAILED: %s\n", LZ4F_getErrorName(hint));
            return 0;
        }
        restored_size += out;
        consumed += in;
    }
    LZ4F_freeDecompressionContext(context);
    int ok = settle("frame level 3 with checksums", 1, data, size, compressed, compressed_size,
                    restored, restored_size);
    free(compressed);
    free(restored);
    return ok;
}

int main(void)
{
    unsigned char *data = testdata_make(TESTDATA_SIZE);
    if (data == NULL)
        return 1;
    printf("lz4 %s\n", LZ4_versionString());
    int ok = block(data, TESTDATA_SIZE, 0) && block(data, TESTDATA_SIZE, 1) &&
             frame(data, TESTDATA_SIZE);
    return testdata_finish(data, ok);
}
