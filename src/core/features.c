/* features.c -- feature sources (duet.h, "feature sources"): a .npy file
 * mapped read-only, or a view of a matrix in memory, read row by row.
 *
 * A file-backed mapping counts the pages a process has touched in its
 * resident set (RssFile) until they are unmapped: reading every row of a
 * 15 GB file over an epoch would leave 15 GB resident. duet_features_release
 * drops them (MADV_DONTNEED on a shared read-only file mapping only unmaps:
 * the data stays in the page cache, where the next touch finds it). The
 * mapping is MADV_RANDOM: a batch's rows are scattered, read-ahead would
 * only fetch rows nobody asked for. */
#define _DEFAULT_SOURCE
#define _FILE_OFFSET_BITS 64
#include "npy.h"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct duet_features {
    const float *mem;            /* a view: the matrix's data, else NULL       */
    void *map;                   /* the file's mapping                         */
    size_t map_len;
    const unsigned char *data;   /* the file's first element                   */
    npy_info in;                 /* rows, cols, element size and byte order   */
    int native;                  /* the file holds this host's float32         */
};

int duet_dtype_parse(const char *s) {
    if (!s) return -1;
    if (strcmp(s, "f32") == 0 || strcmp(s, "float32") == 0) return DUET_DTYPE_F32;
    if (strcmp(s, "f16") == 0 || strcmp(s, "float16") == 0) return DUET_DTYPE_F16;
    return -1;
}

duet_status duet_features_wrap(const duet_mat *m, duet_features **out, duet_error *err) {
    *out = NULL;
    duet_features *f = calloc(1, sizeof *f);
    if (!f) return duet_fail(err, DUET_ERR_NOMEM, "features: out of memory");
    f->mem = m->data;
    f->in = (npy_info){m->rows, m->cols, sizeof(float), host_big(), m->rows * m->cols,
                       m->rows * m->cols * sizeof(float)};
    f->native = 1;
    *out = f;
    return DUET_OK;
}

/* Validates the mapped file (len bytes at p) and fills f's layout. */
static duet_status parse_mapped(duet_features *f, const unsigned char *p, size_t len, const char *path,
                                duet_error *err) {
    size_t pre, hlen;
    duet_status st = duet_npy_preamble(p, len, path, &pre, &hlen, err);
    if (st) return st;
    if (len - pre < hlen) return duet_npy_header_past_end(path, hlen, len - pre, err);
    if ((st = duet_npy_header((const char *)p + pre, hlen, path, &f->in, err))) return st;
    if ((st = duet_npy_check_length(path, &f->in, len - pre - hlen, err))) return st;
    f->data = p + pre + hlen;
    /* rows are read in place only when aligned for float loads */
    f->native = f->in.itemsize == 4 && f->in.big == host_big() && (uintptr_t)f->data % sizeof(float) == 0;
    return DUET_OK;
}

duet_status duet_features_open(const char *path, duet_features **out, duet_error *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return duet_fail(err, DUET_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return duet_fail(err, DUET_ERR_IO, "%s: not a regular file (a feature file is mapped)", path);
    }
    if ((uintmax_t)sb.st_size > SIZE_MAX || sb.st_size == 0) {
        close(fd);
        return duet_fail(err, DUET_ERR_FORMAT, "%s: %s", path, sb.st_size ? "too large to map" : "empty file");
    }
    size_t len = (size_t)sb.st_size;
    void *map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    close(fd); /* the mapping keeps the file */
    if (map == MAP_FAILED) return duet_fail(err, DUET_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
    duet_features *f = calloc(1, sizeof *f);
    duet_status st = f ? parse_mapped(f, map, len, path, err)
                       : duet_fail(err, DUET_ERR_NOMEM, "features: out of memory");
    if (st) {
        munmap(map, len);
        free(f);
        return st;
    }
    madvise(map, len, MADV_RANDOM);
    f->map = map;
    f->map_len = len;
    *out = f;
    return DUET_OK;
}

void duet_features_close(duet_features *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->map_len);
    free(f);
}

size_t duet_features_rows(const duet_features *f) { return f->in.rows; }
size_t duet_features_cols(const duet_features *f) { return f->in.cols; }

const char *duet_features_dtype(const duet_features *f) {
    return f->in.itemsize == 2 ? "f16" : f->in.itemsize == 4 ? "f32" : "f64";
}

const float *duet_features_row(const duet_features *f, size_t r, float *scratch) {
    size_t c = f->in.cols;
    if (f->mem) return f->mem + r * c;
    const unsigned char *src = f->data + r * c * f->in.itemsize;
    if (f->native) return (const float *)(const void *)src;
    duet_npy_convert(src, c, &f->in, scratch);
    return scratch;
}

void duet_features_gather(const duet_features *f, const size_t *idx, size_t n, float *dst) {
    size_t c = f->in.cols;
    for (size_t i = 0; i < n; i++) {
        float *d = dst + i * c;
        const float *row = duet_features_row(f, idx[i], d);
        if (row != d) memcpy(d, row, c * sizeof(float));
    }
}

void duet_features_release(const duet_features *f) {
    if (f && f->map) madvise(f->map, f->map_len, MADV_DONTNEED);
}

/* 1 when one of n elements at p (f's element type) may be NaN or Inf: an
 * all-ones exponent, tested on the bits (a loop the compiler vectorizes). */
static int any_nonfinite(const duet_features *f, const unsigned char *p, size_t n) {
    uint32_t bad = 0;
    if (f->in.itemsize == 2) {
        for (size_t i = 0; i < n; i++) {
            uint16_t h = ld16(p + 2 * i, f->in.big);
            bad |= (h & 0x7c00u) == 0x7c00u;
        }
    } else if (f->in.itemsize == 4) {
        for (size_t i = 0; i < n; i++) {
            uint32_t u = ld32(p + 4 * i, f->in.big);
            bad |= (u & 0x7f800000u) == 0x7f800000u;
        }
    } else { /* float64 may also overflow float32: check the converted rows */
        bad = n > 0;
    }
    return bad != 0;
}

#define CHECK_BLOCK ((size_t)64 << 20) /* bytes read between releases */

duet_status duet_features_check_finite(const duet_features *f, const char *name, duet_error *err) {
    if (f->mem) {
        duet_mat m = {(float *)f->mem, f->in.rows, f->in.cols};
        return duet_mat_check_finite(&m, name, err);
    }
    size_t row_bytes = f->in.cols * f->in.itemsize;
    size_t per = row_bytes ? CHECK_BLOCK / row_bytes + 1 : f->in.rows;
    float *scratch = duet_alloc_array(f->in.cols ? f->in.cols : 1, sizeof(float));
    if (!scratch) return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", name);
    duet_status st = DUET_OK;
    for (size_t r0 = 0; r0 < f->in.rows && !st; r0 += per) {
        size_t r1 = f->in.rows - r0 < per ? f->in.rows : r0 + per;
        if (any_nonfinite(f, f->data + r0 * row_bytes, (r1 - r0) * f->in.cols))
            for (size_t r = r0; r < r1 && !st; r++) { /* where: the row's float32 values */
                const float *row = duet_features_row(f, r, scratch);
                for (size_t c = 0; c < f->in.cols && !st; c++)
                    if (row[c] - row[c] != 0.0f)
                        st = duet_fail(err, DUET_ERR_NONFINITE, "%s: non-finite value (%s) at row %zu, column %zu",
                                       name, row[c] != row[c] ? "NaN" : "Inf", r, c);
            }
        duet_features_release(f);
    }
    free(scratch);
    return st;
}
