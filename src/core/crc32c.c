/* crc32c.c -- CRC-32C (Castagnoli, the checksum of iSCSI, ext4 and
 * RocksDB) of the files duet writes: the SSE4.2 crc32 instruction, 8 bytes
 * a step, with a nibble-table loop where the CPU lacks it; large buffers are
 * cut into blocks hashed by several threads and the block CRCs combined
 * (multiplication by x^(8 len) modulo the polynomial, as zlib's
 * crc32_combine). Check value: crc32c("123456789") = 0xe3069283. */
#define _POSIX_C_SOURCE 200809L
#include "core.h"
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#define POLY 0x82f63b78u         /* reflected Castagnoli polynomial */
#define BLOCK ((size_t)4 << 20)  /* bytes per thread task          */

/* crc of one nibble, reflected */
static const uint32_t NIBBLE[16] = {
    0x00000000, 0x105ec76f, 0x20bd8ede, 0x30e349b1, 0x417b1dbc, 0x5125dad3, 0x61c69362, 0x7198540d,
    0x82f63b78, 0x92a8fc17, 0xa24bb5a6, 0xb21572c9, 0xc38d26c4, 0xd3d3e1ab, 0xe330a81a, 0xf36e6f75};

static uint32_t update_soft(uint32_t c, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        c = (c >> 4) ^ NIBBLE[c & 15];
        c = (c >> 4) ^ NIBBLE[c & 15];
    }
    return c;
}

/* a(x) b(x) modulo the polynomial (bit 31 is x^0) */
static uint32_t multmodp(uint32_t a, uint32_t b) {
    uint32_t m = (uint32_t)1 << 31, r = 0;
    for (;;) {
        if (a & m) {
            r ^= b;
            if ((a & (m - 1)) == 0) break;
        }
        m >>= 1;
        b = b & 1 ? (b >> 1) ^ POLY : b >> 1;
    }
    return r;
}

/* x^(8 n) modulo the polynomial: square-and-multiply over x^(2^k) */
static uint32_t x8nmodp(size_t n) {
    uint32_t sq = (uint32_t)1 << 30, p = (uint32_t)1 << 31;   /* x^1, x^0 */
    for (int k = 0; k < 3; k++) sq = multmodp(sq, sq);        /* x^8 */
    for (; n; n >>= 1) {
        if (n & 1) p = multmodp(sq, p);
        sq = multmodp(sq, sq);
    }
    return p;
}

#if defined(__x86_64__)
#define LANE 8192   /* bytes of each of the three interleaved streams */

__attribute__((target("sse4.2"))) static uint64_t words_hw(uint64_t c, const unsigned char *p, size_t n) {
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
    }
    return c;
}

/* The crc32 instruction has a latency of 3 cycles and a throughput of 1: three
 * independent streams over consecutive lanes keep it busy; the lanes' CRCs
 * (registers, without the pre/post inversion) are joined by multiplying by
 * x^(8 LANE), a constant computed once a call. */
__attribute__((target("sse4.2"))) static uint32_t update_hw(uint32_t c, const unsigned char *p, size_t n) {
    uint64_t c64 = c;
    while (n && ((uintptr_t)p & 7)) { c64 = _mm_crc32_u8((uint32_t)c64, *p++); n--; }
    if (n >= 3 * LANE) {
        uint32_t shift = x8nmodp(LANE);
        for (; n >= 3 * LANE; n -= 3 * LANE, p += 3 * LANE) {
            uint64_t a = c64, b = 0, d = 0;
            for (size_t i = 0; i < LANE; i += 8) {
                uint64_t w0, w1, w2;
                memcpy(&w0, p + i, 8);
                memcpy(&w1, p + LANE + i, 8);
                memcpy(&w2, p + 2 * LANE + i, 8);
                a = _mm_crc32_u64(a, w0);
                b = _mm_crc32_u64(b, w1);
                d = _mm_crc32_u64(d, w2);
            }
            c64 = multmodp(shift, multmodp(shift, (uint32_t)a) ^ (uint32_t)b) ^ (uint32_t)d;
        }
    }
    c64 = words_hw(c64, p, n & ~(size_t)7);
    p += n & ~(size_t)7;
    for (n &= 7; n--;) c64 = _mm_crc32_u8((uint32_t)c64, *p++);
    return (uint32_t)c64;
}
#endif

uint32_t duet_crc32c(uint32_t crc, const void *p, size_t n) {
    uint32_t c = ~crc;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) return ~update_hw(c, p, n);
#endif
    return ~update_soft(c, p, n);
}

uint32_t duet_crc32c_combine(uint32_t crc1, uint32_t crc2, size_t len2) {
    return multmodp(x8nmodp(len2), crc1) ^ crc2;
}

typedef struct par_ctx {
    const unsigned char *p;
    size_t n;
    uint32_t *crc;   /* [blocks] */
} par_ctx;

static void crc_blocks(void *vc, size_t b0, size_t b1) {
    par_ctx *c = vc;
    for (size_t b = b0; b < b1; b++) {
        size_t off = b * BLOCK, len = c->n - off < BLOCK ? c->n - off : BLOCK;
        c->crc[b] = duet_crc32c(0, c->p + off, len);
    }
}

uint32_t duet_crc32c_parallel(const void *p, size_t n) {
    size_t blocks = (n + BLOCK - 1) / BLOCK;
    if (blocks < 2) return duet_crc32c(0, p, n);
    uint32_t *crc = duet_alloc_array(blocks, sizeof *crc);
    if (!crc) return duet_crc32c(0, p, n);   /* no memory: one thread */
    par_ctx c = {p, n, crc};
    duet_parallel_for(blocks, 1, crc_blocks, &c);
    uint32_t r = crc[0];
    for (size_t b = 1; b < blocks; b++) r = duet_crc32c_combine(r, crc[b], b + 1 < blocks ? BLOCK : n - b * BLOCK);
    free(crc);
    return r;
}

duet_status duet_file_crc32c(const char *path, uint32_t *out, duet_error *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return duet_fail(err, DUET_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return duet_fail(err, DUET_ERR_IO, "%s: not a regular file", path);
    }
    size_t n = (size_t)sb.st_size;
    if (n == 0) { close(fd); *out = 0; return DUET_OK; }
    void *m = mmap(NULL, n, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return duet_fail(err, DUET_ERR_IO, "%s: mmap of %zu bytes failed: %s", path, n, strerror(errno));
    *out = duet_crc32c_parallel(m, n);
    munmap(m, n);
    return DUET_OK;
}
