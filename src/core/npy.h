/* npy.h -- what the two halves of the .npy code share (private to
 * src/core): npy_header.c reads and writes the preamble and header dict,
 * npy.c converts, reads and writes the data (the public API). */
#ifndef DUET_NPY_H
#define DUET_NPY_H

#include "core.h"
#include <stdint.h>
#include <string.h>

/* What a header says about the data that follows it. */
typedef struct npy_info {
    size_t rows, cols;   /* a 1-D (n,) array is n x 1                  */
    size_t itemsize;     /* bytes per element in the file: 2, 4 or 8   */
    bool big;            /* the file's elements are big-endian         */
    size_t count;        /* rows * cols                                */
    size_t data_bytes;   /* count * itemsize                           */
} npy_info;

/* ------------------------------------------------------------ byte order */

static inline bool host_big(void) {
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 0;
}

static inline uint16_t ld16(const unsigned char *p, bool big) {
    return big ? (uint16_t)(p[0] << 8 | p[1]) : (uint16_t)(p[1] << 8 | p[0]);
}

static inline uint32_t ld32(const unsigned char *p, bool big) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v = v << 8 | p[big ? i : 3 - i];
    return v;
}

static inline uint64_t ld64(const unsigned char *p, bool big) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[big ? i : 7 - i];
    return v;
}

/* ------------------------------------------------------------ header */

/* Checks the magic and version in the first avail bytes of p and decodes
 * the header length. *pre_len: 10 (v1.0) or 12 (v2.0, v3.0). Borrows p. */
duet_status duet_npy_preamble(const unsigned char *p, size_t avail,
                              const char *name, size_t *pre_len,
                              size_t *hlen, duet_error *err);
/* The one header parser: hlen bytes at h (borrowed) -> *in. */
duet_status duet_npy_header(const char *h, size_t hlen, const char *name,
                            npy_info *in, duet_error *err);
/* Fills buf (cap >= 256) with a v1.0 preamble and '<f4' header padded so
 * that the data starts at a multiple of 64; returns its length. */
size_t duet_npy_make_header(unsigned char *buf, size_t rows, size_t cols);
/* The same with another dtype descr ("<f2"). */
size_t duet_npy_make_header_dtype(unsigned char *buf, size_t rows, size_t cols,
                                  const char *descr);

/* ------------------------------------------------------------ data (npy.c) */

/* Converts n file elements at src (layout per in) into dst[0..n). */
void duet_npy_convert(const unsigned char *src, size_t n, const npy_info *in,
                      float *dst);
/* The message for a header running past the end (avail bytes follow). */
duet_status duet_npy_header_past_end(const char *name, size_t hlen, size_t avail,
                                     duet_error *err);
/* DUET_OK if exactly in->data_bytes follow the header (have). */
duet_status duet_npy_check_length(const char *name, const npy_info *in,
                                  uintmax_t have, duet_error *err);

#endif
