/*
 * zlib's program for the real-program harness: compresses a few MB of
 * deterministic data at levels 1 and 6 and as a level-9 gzip stream, checks
 * each round trip, prints sizes and checksums. Exits 0, or 1 on any failure.
 */
#include <string.h>

#include "../common/testdata.h"
#include "zlib.h"

static int one_shot(const unsigned char *data, size_t size, int level)
{
    uLongf compressed_size = compressBound(size);
    unsigned char *compressed = malloc(compressed_size);
    unsigned char *restored = malloc(size);
    uLongf restored_size = size;
    int ok = compressed && restored &&
             compress2(compressed, &compressed_size, data, size, level) == Z_OK &&
             uncompress(restored, &restored_size, compressed, compressed_size) == Z_OK;
    char label[32];
    snprintf(label, sizeof label, "compress2 level %d", level);
    ok = settle(label, ok, data, size, compressed, compressed_size, restored, restored_size);
    free(compressed);
    free(restored);
    return ok;
}

/* deflate/inflate in 64 KiB chunks with a gzip header, as a stream. */
static int streaming(const unsigned char *data, size_t size)
{
    size_t capacity = deflateBound(NULL, size) + 64;
    unsigned char *compressed = malloc(capacity);
    unsigned char *restored = malloc(size);
    if (!compressed || !restored)
        return 0;
    z_stream deflater = { 0 };
    if (deflateInit2(&deflater, 9, Z_DEFLATED, 16 + 15, 9, Z_DEFAULT_STRATEGY) != Z_OK)
        return 0;
    deflater.next_out = compressed;
    deflater.avail_out = (uInt)capacity;
    size_t offered = 0;
    int status;
    do {
        size_t chunk = size - offered < 65536 ? size - offered : 65536;
        deflater.next_in = (Bytef *)data + offered;
        deflater.avail_in = (uInt)chunk;
        offered += chunk;
        status = deflate(&deflater, offered == size ? Z_FINISH : Z_NO_FLUSH);
    } while (status == Z_OK && offered < size);
    while (status == Z_OK)
        status = deflate(&deflater, Z_FINISH);
    size_t compressed_size = deflater.total_out;
    deflateEnd(&deflater);
    if (status != Z_STREAM_END) {
        printf("deflate stream FAILED (%d)\n", status);
        return 0;
    }

    z_stream inflater = { 0 };
    if (inflateInit2(&inflater, 16 + 15) != Z_OK)
        return 0;
    inflater.next_in = compressed;
    inflater.avail_in = (uInt)compressed_size;
    inflater.next_out = restored;
    inflater.avail_out = (uInt)size;
    status = inflate(&inflater, Z_FINISH);
    size_t restored_size = inflater.total_out;
    inflateEnd(&inflater);
    int ok = settle("gzip stream level 9", status == Z_STREAM_END, data, size, compressed,
                    compressed_size, restored, restored_size);
    free(compressed);
    free(restored);
    return ok;
}

int main(void)
{
    unsigned char *data = testdata_make(TESTDATA_SIZE);
    if (data == NULL)
        return 1;
    printf("zlib %s\n", zlibVersion());
    printf("crc32 %08lx adler32 %08lx\n", crc32(0, data, TESTDATA_SIZE),
           adler32(1, data, TESTDATA_SIZE));
    int ok = one_shot(data, TESTDATA_SIZE, 1) && one_shot(data, TESTDATA_SIZE, 6) &&
             streaming(data, TESTDATA_SIZE);
    return testdata_finish(data, ok);
}
