/*
 * bzip2's program for the real-program harness: compresses a few MB of
 * deterministic data with block sizes 1 and 9 through the buffer API and
 * once through the streaming API, checks each round trip, prints sizes and
 * checksums. Exits 0, or 1 on any failure.
 */
#include <string.h>

#include "../common/testdata.h"
#include "bzlib.h"

static int buffers(const unsigned char *data, size_t size, int block_size)
{
    unsigned int capacity = (unsigned int)(size + size / 100 + 600);
    unsigned int compressed_size = capacity, restored_size = (unsigned int)size;
    char *compressed = malloc(capacity);
    char *restored = malloc(size);
    if (!compressed || !restored)
        return 0;
    int ok = BZ2_bzBuffToBuffCompress(compressed, &compressed_size, (char *)data,
                                      (unsigned int)size, block_size, 0, 0) == BZ_OK &&
             BZ2_bzBuffToBuffDecompress(restored, &restored_size, compressed, compressed_size,
                                        0, 0) == BZ_OK;
    char label[32];
    snprintf(label, sizeof label, "buffers block size %d", block_size);
    ok = settle(label, ok, data, size, compressed, compressed_size, restored, restored_size);
    free(compressed);
    free(restored);
    return ok;
}

static int streaming(const unsigned char *data, size_t size)
{
    size_t capacity = size + size / 100 + 600;
    char *compressed = malloc(capacity);
    char *restored = malloc(size);
    if (!compressed || !restored)
        return 0;
    bz_stream compressor;
    memset(&compressor, 0, sizeof compressor);
    if (BZ2_bzCompressInit(&compressor, 5, 0, 30) != BZ_OK)
        return 0;
    compressor.next_in = (char *)data;
    compressor.avail_in = (unsigned int)size;
    compressor.next_out = compressed;
    compressor.avail_out = (unsigned int)capacity;
    int status;
    do
        status = BZ2_bzCompress(&compressor, BZ_FINISH);
    while (status == BZ_FINISH_OK);
    size_t compressed_size = compressor.total_out_lo32;
    BZ2_bzCompressEnd(&compressor);
    if (status != BZ_STREAM_END) {
        printf("stream compress FAILED (%d)\n", status);
        return 0;
    }
    bz_stream decompressor;
    memset(&decompressor, 0, sizeof decompressor);
    if (BZ2_bzDecompressInit(&decompressor, 0, 1) != BZ_OK)
        return 0;
    decompressor.next_in = compressed;
    decompressor.avail_in = (unsigned int)compressed_size;
    decompressor.next_out = restored;
    decompressor.avail_out = (unsigned int)size;
    status = BZ2_bzDecompress(&decompressor);
    size_t restored_size = decompressor.total_out_lo32;
    BZ2_bzDecompressEnd(&decompressor);
    int ok = settle("stream block size 5, small decompress", status == BZ_STREAM_END, data, size,
                    compressed, compressed_size, restored, restored_size);
    free(compressed);
    free(restored);
    return ok;
}

int main(void)
{
    unsigned char *data = testdata_make(TESTDATA_SIZE);
    if (data == NULL)
        return 1;
    printf("bzip2 %s\n", BZ2_bzlibVersion());
    int ok = buffers(data, TESTDATA_SIZE, 1) && buffers(data, TESTDATA_SIZE, 9) &&
             streaming(data, TESTDATA_SIZE);
    return testdata_finish(data, ok);
}
