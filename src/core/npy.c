/* npy.c -- NumPy .npy arrays: parse (memory), read (streaming), write (atomic).
 *
 * A .npy file is
 *     "\x93NUMPY" MAJOR MINOR HLEN HEADER DATA
 * HLEN is a little-endian u16 (version 1.0) or u32 (2.0, 3.0); HEADER is a
 * Python dict literal padded with spaces and ended by '\n' (npy_header.c).
 * One parser (duet_npy_preamble then duet_npy_header) serves duet_npy_parse
 * and duet_npy_read; the data that follows must be exactly as long as the
 * header implies. This file converts the data (float16/32/64, either byte
 * order) to float32 and holds the public API. */
#define _POSIX_C_SOURCE 200809L
#define _FILE_OFFSET_BITS 64
#include "npy.h"
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NPY_CHUNK ((size_t)1 << 16)      /* bytes per chunk when converting */
#define NPY_PRE_MAX 12                   /* longest preamble (v2, v3)       */

/* ------------------------------------------------------------ conversion */

/* IEEE half -> float, exact for every input (NaN payloads kept). */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0) { /* zero or subnormal: man * 2^-24, exact in float */
        float f = (float)man * 0x1p-24f;
        return sign ? -f : f;
    }
    uint32_t bits = exp == 31 ? sign | 0x7f800000u | man << 13        /* Inf/NaN */
                              : sign | (exp + 112u) << 23 | man << 13; /* normal  */
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Converts n file elements at src (layout per in) into dst[0..n). */
void duet_npy_convert(const unsigned char *src, size_t n, const npy_info *in,
                      float *dst) {
    size_t i;
    if (in->itemsize == 4 && in->big == host_big()) {
        if (n) memcpy(dst, src, n * sizeof *dst);
    } else if (in->itemsize == 2) {
        for (i = 0; i < n; i++) dst[i] = half_to_float(ld16(src + 2 * i, in->big));
    } else if (in->itemsize == 4) {
        for (i = 0; i < n; i++) {
            uint32_t u = ld32(src + 4 * i, in->big);
            memcpy(dst + i, &u, sizeof u);
        }
    } else {
        for (i = 0; i < n; i++) {
            uint64_t u = ld64(src + 8 * i, in->big);
            double d;
            memcpy(&d, &u, sizeof d);
            dst[i] = (float)d; /* round to nearest; out of range -> Inf */
        }
    }
}

/* ------------------------------------------------------------ checks */

/* The message for a header that runs past the end of the input. */
duet_status duet_npy_header_past_end(const char *name, size_t hlen,
                                     size_t avail, duet_error *err) {
    return duet_fail(err, DUET_ERR_FORMAT,
                     "%s: truncated: header length %zu runs past the end of "
                     "the file (only %zu header bytes follow the preamble)",
                     name, hlen, avail);
}

static const char *npy_type_name(size_t itemsize) {
    return itemsize == 2 ? "float16" : itemsize == 4 ? "float32" : "float64";
}

/* DUET_OK if exactly in->data_bytes follow the header (have). */
duet_status duet_npy_check_length(const char *name, const npy_info *in,
                                  uintmax_t have, duet_error *err) {
    if (have == in->data_bytes) return DUET_OK;
    return duet_fail(err, DUET_ERR_FORMAT,
                     have < in->data_bytes
                         ? "%s: truncated: header says %zu x %zu %s (%zu bytes) "
                           "but only %" PRIuMAX " bytes follow"
                         : "%s: trailing garbage: header says %zu x %zu %s "
                           "(%zu bytes) but %" PRIuMAX " bytes follow",
                     name, in->rows, in->cols, npy_type_name(in->itemsize),
                     in->data_bytes, have);
}

/* ------------------------------------------------------------ public API */

/* Parses len bytes at buf (borrowed). On success out->data is allocated
 * (caller frees with duet_mat_free); on failure *out is zeroed. */
duet_status duet_npy_parse(const void *buf, size_t len, const char *name,
                           duet_mat *out, duet_error *err) {
    if (!name) name = "(memory)";
    if (!out || (!buf && len))
        return duet_fail(err, DUET_ERR_INVALID_ARG,
                         "%s: duet_npy_parse: NULL buffer or output", name);
    *out = (duet_mat){0};
    const unsigned char *p = buf;
    size_t pre, hlen;
    npy_info in;
    duet_status st = duet_npy_preamble(p, len, name, &pre, &hlen, err);
    if (st != DUET_OK) return st;
    if (len - pre < hlen) return duet_npy_header_past_end(name, hlen, len - pre, err);
    st = duet_npy_header((const char *)p + pre, hlen, name, &in, err);
    if (st == DUET_OK) st = duet_npy_check_length(name, &in, len - pre - hlen, err);
    if (st != DUET_OK) return st;
    float *d = duet_alloc_array(in.count, sizeof(float));
    if (!d)
        return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory for %zu x %zu "
                         "floats", name, in.rows, in.cols);
    duet_npy_convert(p + pre + hlen, in.count, &in, d);
    *out = (duet_mat){d, in.rows, in.cols};
    return DUET_OK;
}

/* The error for a data read that stopped after got bytes. */
static duet_status npy_short_read(FILE *fp, const char *path,
                                  const npy_info *in, size_t got,
                                  duet_error *err) {
    if (ferror(fp))
        return duet_fail(err, DUET_ERR_IO, "%s: read error: %s", path,
                         strerror(errno));
    return duet_npy_check_length(path, in, got, err);
}

/* Reads the data (positioned at its start) into dst[0..in->count): straight
 * into dst when the file holds native float32, else through a chunk. */
static duet_status npy_read_data(FILE *fp, const char *path,
                                 const npy_info *in, float *dst,
                                 duet_error *err) {
    if (in->itemsize == 4 && in->big == host_big()) {
        size_t got = in->data_bytes ? fread(dst, 1, in->data_bytes, fp) : 0;
        return got == in->data_bytes ? DUET_OK
                                     : npy_short_read(fp, path, in, got, err);
    }
    unsigned char *chunk = malloc(NPY_CHUNK);
    if (!chunk) return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    size_t per = NPY_CHUNK / in->itemsize, done = 0;
    duet_status st = DUET_OK;
    while (done < in->count && st == DUET_OK) {
        size_t k = in->count - done < per ? in->count - done : per;
        size_t got = fread(chunk, 1, k * in->itemsize, fp);
        if (got != k * in->itemsize)
            st = npy_short_read(fp, path, in, done * in->itemsize + got, err);
        else
            duet_npy_convert(chunk, k, in, dst + done);
        done += k;
    }
    free(chunk);
    return st;
}

/* Reads preamble, header and data from fp (borrowed) into out. */
static duet_status npy_read_stream(FILE *fp, const char *path, duet_mat *out,
                                   duet_error *err) {
    struct stat sb;
    bool sized = fstat(fileno(fp), &sb) == 0 && S_ISREG(sb.st_mode);
    unsigned char pre[NPY_PRE_MAX];
    size_t got = fread(pre, 1, 10, fp), pre_len, hlen;
    if (got == 10 && pre[6] >= 2) got += fread(pre + 10, 1, 2, fp);
    if (ferror(fp))
        return duet_fail(err, DUET_ERR_IO, "%s: read error: %s", path,
                         strerror(errno));
    duet_status st = duet_npy_preamble(pre, got, path, &pre_len, &hlen, err);
    if (st != DUET_OK) return st;
    char *h = duet_alloc_array(hlen, 1);
    if (!h) return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    got = hlen ? fread(h, 1, hlen, fp) : 0;
    npy_info in;
    if (got != hlen)
        st = ferror(fp) ? duet_fail(err, DUET_ERR_IO, "%s: read error: %s",
                                    path, strerror(errno))
                        : duet_npy_header_past_end(path, hlen, got, err);
    else
        st = duet_npy_header(h, hlen, path, &in, err);
    free(h);
    if (st != DUET_OK) return st;
    if (sized) { /* refuse a wrong size before allocating */
        uintmax_t size = (uintmax_t)sb.st_size, start = pre_len + hlen;
        st = duet_npy_check_length(path, &in, size > start ? size - start : 0, err);
        if (st != DUET_OK) return st;
    }
    out->data = duet_alloc_array(in.count, sizeof(float));
    if (!out->data)
        return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory for %zu x %zu "
                         "floats", path, in.rows, in.cols);
    st = npy_read_data(fp, path, &in, out->data, err);
    if (st != DUET_OK) return st;
    if (getc(fp) != EOF) /* the file grew, or a pipe */
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s: trailing garbage after the %zu x %zu %s data",
                         path, in.rows, in.cols, npy_type_name(in.itemsize));
    out->rows = in.rows;
    out->cols = in.cols;
    return DUET_OK;
}

/* Reads path without loading it whole. On success out->data is allocated
 * (caller frees with duet_mat_free); on failure *out is zeroed. */
duet_status duet_npy_read(const char *path, duet_mat *out, duet_error *err) {
    if (!path || !out)
        return duet_fail(err, DUET_ERR_INVALID_ARG,
                         "duet_npy_read: NULL path or output");
    *out = (duet_mat){0};
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return duet_fail(err, DUET_ERR_IO, "%s: cannot open: %s", path,
                         strerror(errno));
    duet_status st = npy_read_stream(fp, path, out, err);
    fclose(fp); /* read-only: nothing to lose on close */
    if (st != DUET_OK) duet_mat_free(out);
    return st;
}

/* float -> IEEE half, rounded to nearest even (numpy's astype(float16)):
 * overflow to +-Inf, underflow through the subnormals to +-0. */
static uint16_t float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* Inf, NaN (kept quiet) */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u | (ax >> 13 & 0x3ffu) : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds past 65504 */
    if (ax < 0x38800000u) { /* below 2^-14: a subnormal half (or zero) */
        float a;
        memcpy(&a, &ax, sizeof a);
        /* a * 2^24 is the subnormal's integer; rint rounds half to even */
        return (uint16_t)(sign | (uint32_t)__builtin_rintf(a * 0x1p24f));
    }
    uint32_t r = ax + 0xfffu + (ax >> 13 & 1u) - (112u << 23); /* rebias, round to even */
    return (uint16_t)(sign | r >> 13);
}

/* Writes n bytes and folds them into *crc (the CRC-32C of the file so far). */
static duet_status npy_put(duet_atomic_file *af, const void *p, size_t n, uint32_t *crc,
                           duet_error *err) {
    *crc = duet_crc32c(*crc, p, n);
    return duet_atomic_write(af, p, n, err);
}

/* Writes count floats as little-endian float32, or float16 when half
 * (data borrowed), folding the bytes into *crc. */
static duet_status npy_write_data(duet_atomic_file *af, const float *data,
                                  size_t count, int half, uint32_t *crc,
                                  duet_error *err) {
    if (half) {
        unsigned char chunk[4096];
        duet_status st = DUET_OK;
        for (size_t i = 0; i < count && st == DUET_OK; i += sizeof chunk / 2) {
            size_t k = count - i < sizeof chunk / 2 ? count - i : sizeof chunk / 2;
            for (size_t j = 0; j < k; j++) {
                uint16_t h = float_to_half(data[i + j]);
                chunk[2 * j] = (unsigned char)h;
                chunk[2 * j + 1] = (unsigned char)(h >> 8);
            }
            st = npy_put(af, chunk, 2 * k, crc, err);
        }
        return st;
    }
    if (!host_big()) return npy_put(af, data, count * sizeof *data, crc, err);
    unsigned char chunk[4096];
    duet_status st = DUET_OK;
    for (size_t i = 0; i < count && st == DUET_OK; i += sizeof chunk / 4) {
        size_t k = count - i < sizeof chunk / 4 ? count - i : sizeof chunk / 4;
        for (size_t j = 0; j < k; j++) {
            uint32_t u;
            memcpy(&u, data + i + j, sizeof u);
            for (int b = 0; b < 4; b++) chunk[4 * j + b] = (unsigned char)(u >> 8 * b);
        }
        st = npy_put(af, chunk, 4 * k, crc, err);
    }
    return st;
}

/* Writes m (borrowed) to path through "path.tmp.PID" and rename; on any
 * failure the temporary is removed and path is left untouched. */
duet_status duet_npy_write(const char *path, const duet_mat *m,
                           duet_error *err) {
    return duet_npy_write_as(path, m, DUET_DTYPE_F32, err);
}

duet_status duet_npy_write_as(const char *path, const duet_mat *m, duet_dtype dt,
                              duet_error *err) {
    return duet_npy_write_crc(path, m, dt, NULL, err);
}

/* duet_npy_write_as that also gives the CRC-32C of the whole file written
 * (crc may be NULL; set only on success), computed while writing. */
duet_status duet_npy_write_crc(const char *path, const duet_mat *m, duet_dtype dt,
                               uint32_t *crc_out, duet_error *err) {
    if (!path || !m)
        return duet_fail(err, DUET_ERR_INVALID_ARG,
                         "duet_npy_write: NULL path or matrix");
    size_t count, bytes;
    if (!duet_mul_size(m->rows, m->cols, &count) ||
        !duet_mul_size(count, sizeof(float), &bytes))
        return duet_fail(err, DUET_ERR_INVALID_ARG,
                         "%s: matrix %zu x %zu is too large", path, m->rows,
                         m->cols);
    if (count && !m->data)
        return duet_fail(err, DUET_ERR_INVALID_ARG,
                         "%s: matrix %zu x %zu has no data", path, m->rows,
                         m->cols);
    unsigned char hdr[256];
    if (dt != DUET_DTYPE_F32 && dt != DUET_DTYPE_F16)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "%s: writes float32 or float16, not dtype %d", path, (int)dt);
    size_t hl = duet_npy_make_header_dtype(hdr, m->rows, m->cols, dt == DUET_DTYPE_F16 ? "<f2" : "<f4");
    duet_atomic_file af;
    duet_status st = duet_atomic_open(&af, path, err);
    if (st != DUET_OK) return st;
    uint32_t crc = 0;
    st = npy_put(&af, hdr, hl, &crc, err);
    if (st == DUET_OK) st = npy_write_data(&af, m->data, count, dt == DUET_DTYPE_F16, &crc, err);
    if (st != DUET_OK) {
        duet_atomic_abort(&af);
        return st;
    }
    st = duet_atomic_commit(&af, err);
    if (st == DUET_OK && crc_out) *crc_out = crc;
    return st;
}
