/* features.c -- feature sources (duet.h, "feature sources"): a .npy file
 * read row by row with positioned reads, or a view of a matrix in memory.
 *
 * Rows are read with pread(2), not through a memory map: a mapped file
 * counts in the resident set every page a fault brings in, and on this
 * kernel a fault maps the page cache's whole large folio (measured: 100
 * scattered 8 KB rows of a mapped file -> 58 MB resident), so that a batch
 * of a few MB of rows showed as hundreds of MB. pread copies just the rows;
 * the file's pages stay in the page cache, shared by every process of the
 * machine that reads the file (the ranks of a job), and count in none of
 * their resident sets. POSIX_FADV_RANDOM: a batch's rows are scattered,
 * read-ahead would fetch rows nobody asked for. */
#define _DEFAULT_SOURCE
#define _FILE_OFFSET_BITS 64
#include "npy.h"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct duet_features {
    const float *mem;            /* a view: the matrix's data, else NULL       */
    int fd;                      /* the file (-1 for a view)                   */
    off_t data_off;              /* where its first element is                 */
    npy_info in;                 /* rows, cols, element size and byte order   */
    int native;                  /* the file holds this host's float32         */
    char *path;
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
    f->fd = -1;
    f->in = (npy_info){m->rows, m->cols, sizeof(float), host_big(), m->rows * m->cols,
                       m->rows * m->cols * sizeof(float)};
    f->native = 1;
    *out = f;
    return DUET_OK;
}

/* n bytes at offset off of f's file into buf: DUET_OK, or DUET_ERR_IO. */
static duet_status read_at(const duet_features *f, void *buf, size_t n, off_t off, duet_error *err) {
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t got = pread(f->fd, p, n, off);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0)
            return duet_fail(err, DUET_ERR_IO, "%s: read error at byte %jd: %s", f->path, (intmax_t)off,
                             got < 0 ? strerror(errno) : "the file shrank");
        p += got;
        n -= (size_t)got;
        off += got;
    }
    return DUET_OK;
}

#define HEAD_MAX 65536 /* preamble and header read at once (longer: refused) */

/* Reads and validates the preamble and header (the file's size against
 * them: truncated and over-long files are refused before any row). */
static duet_status parse_head(duet_features *f, uintmax_t size, duet_error *err) {
    size_t avail = size < HEAD_MAX ? (size_t)size : HEAD_MAX, pre, hlen;
    unsigned char *h = malloc(avail ? avail : 1);
    if (!h) return duet_fail(err, DUET_ERR_NOMEM, "features: out of memory");
    duet_status st = read_at(f, h, avail, 0, err);
    if (!st) st = duet_npy_preamble(h, avail, f->path, &pre, &hlen, err);
    if (!st && avail - pre < hlen)
        st = size > HEAD_MAX ? duet_fail(err, DUET_ERR_FORMAT, "%s: header of %zu bytes is too long", f->path, hlen)
                             : duet_npy_header_past_end(f->path, hlen, avail - pre, err);
    if (!st) st = duet_npy_header((const char *)h + pre, hlen, f->path, &f->in, err);
    if (!st) st = duet_npy_check_length(f->path, &f->in, size - pre - hlen, err);
    free(h);
    f->data_off = (off_t)(pre + hlen);
    f->native = f->in.itemsize == 4 && f->in.big == host_big();
    return st;
}

duet_status duet_features_open(const char *path, duet_features **out, duet_error *err) {
    *out = NULL;
    duet_features *f = calloc(1, sizeof *f);
    if (!f || !(f->path = duet_strdup(path))) {
        free(f);
        return duet_fail(err, DUET_ERR_NOMEM, "features: out of memory");
    }
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    duet_status st = DUET_OK;
    if (f->fd < 0) st = duet_fail(err, DUET_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    else if (fstat(f->fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        st = duet_fail(err, DUET_ERR_IO, "%s: not a regular file (feature files are read by row)", path);
    else st = parse_head(f, (uintmax_t)sb.st_size, err);
    if (st) {
        duet_features_close(f);
        return st;
    }
    posix_fadvise(f->fd, 0, 0, POSIX_FADV_RANDOM);
    *out = f;
    return DUET_OK;
}

void duet_features_close(duet_features *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    free(f->path);
    free(f);
}

size_t duet_features_rows(const duet_features *f) { return f->in.rows; }
int duet_features_is_file(const duet_features *f) { return f->mem == NULL; }
size_t duet_features_cols(const duet_features *f) { return f->in.cols; }

const char *duet_features_dtype(const duet_features *f) {
    return f->in.itemsize == 2 ? "f16" : f->in.itemsize == 4 ? "f32" : "f64";
}

/* Rows [r0, r1) as float32 into dst ([r1 - r0 x cols]); raw [bytes] is
 * scratch for a dtype other than native float32. */
static duet_status read_rows(const duet_features *f, size_t r0, size_t r1, float *dst, unsigned char *raw,
                             duet_error *err) {
    size_t c = f->in.cols, rb = c * f->in.itemsize;
    off_t off = f->data_off + (off_t)(r0 * rb);
    if (f->native) return read_at(f, dst, (r1 - r0) * rb, off, err);
    duet_status st = read_at(f, raw, (r1 - r0) * rb, off, err);
    if (!st) duet_npy_convert(raw, (r1 - r0) * c, &f->in, dst);
    return st;
}

static const float *read_row(const duet_features *f, size_t r, float *scratch, duet_error *err);

/* DUET_OK when row r of file name (c floats at row) is finite, else
 * DUET_ERR_NONFINITE naming the file, row, column and NaN or Inf. */
static duet_status check_row(const char *name, size_t r, const float *row, size_t c, duet_error *err) {
    uint32_t bad = 0;
    for (size_t i = 0; i < c; i++) { /* the exponent bits: a loop the compiler vectorizes */
        uint32_t u;
        memcpy(&u, row + i, sizeof u);
        bad |= (u & 0x7f800000u) == 0x7f800000u;
    }
    if (!bad) return DUET_OK;
    size_t i = 0;
    while (row[i] - row[i] == 0.0f) i++;
    return duet_fail(err, DUET_ERR_NONFINITE, "%s: non-finite value (%s) at row %zu, column %zu", name,
                     row[i] != row[i] ? "NaN" : "Inf", r, i);
}

/* The row just read if finite, else NULL with err naming where. */
static const float *finite_row(const duet_features *f, size_t r, const float *row, duet_error *err) {
    return check_row(f->path, r, row, f->in.cols, err) ? NULL : row;
}

const float *duet_features_row(const duet_features *f, size_t r, float *scratch, duet_error *err) {
    if (f->mem) return f->mem + r * f->in.cols;
    const float *row = read_row(f, r, scratch, err);
    return row ? finite_row(f, r, row, err) : NULL;
}

/* Row r of the file read (and converted) into scratch; NULL on failure. */
static const float *read_row(const duet_features *f, size_t r, float *scratch, duet_error *err) {
    if (f->native) return read_rows(f, r, r + 1, scratch, NULL, err) ? NULL : scratch;
    size_t c = f->in.cols, rb = c * f->in.itemsize;
    if (f->in.itemsize == 2) {
        /* the float16 bytes in the top half of scratch, converted from the
         * front: element i (read at 2c + 2i) is read before float i+1
         * (bytes 4i+4..) could reach it */
        unsigned char *raw = (unsigned char *)scratch + c * sizeof(float) - rb;
        if (read_at(f, raw, rb, f->data_off + (off_t)(r * rb), err)) return NULL;
        duet_npy_convert(raw, c, &f->in, scratch);
        return scratch;
    }
    unsigned char *raw = malloc(rb); /* float64: wider than the result */
    duet_status st = raw ? read_rows(f, r, r + 1, scratch, raw, err)
                         : duet_fail(err, DUET_ERR_NOMEM, "features: out of memory");
    free(raw);
    return st ? NULL : scratch;
}

void duet_features_prefetch(const duet_features *f, const size_t *idx, size_t n) {
    if (f->mem) return;
    size_t rb = f->in.cols * f->in.itemsize;
    for (size_t i = 0; i < n; i++)
        posix_fadvise(f->fd, f->data_off + (off_t)(idx[i] * rb), (off_t)rb, POSIX_FADV_WILLNEED);
}

duet_status duet_features_gather(const duet_features *f, const size_t *idx, size_t n, float *dst,
                                 duet_error *err) {
    size_t c = f->in.cols;
    duet_features_prefetch(f, idx, n);
    for (size_t i = 0; i < n; i++) {
        float *d = dst + i * c;
        const float *row = duet_features_row(f, idx[i], d, err);
        if (!row) return err ? err->status : DUET_ERR_IO;
        if (row != d) memcpy(d, row, c * sizeof(float));
    }
    return DUET_OK;
}

#define CHECK_BLOCK ((size_t)16 << 20) /* bytes read at once by the scan */

duet_status duet_features_check_finite(const duet_features *f, const char *name, duet_error *err) {
    size_t c = f->in.cols;
    if (f->mem) {
        duet_mat m = {(float *)f->mem, f->in.rows, c};
        return duet_mat_check_finite(&m, name, err);
    }
    size_t per = c ? CHECK_BLOCK / (c * sizeof(float)) + 1 : f->in.rows;
    if (per > f->in.rows) per = f->in.rows ? f->in.rows : 1;
    float *buf = duet_alloc_array(per, (c ? c : 1) * sizeof(float));
    unsigned char *raw = f->native ? NULL : duet_alloc_array(per, (c ? c : 1) * f->in.itemsize);
    if (!buf || (!f->native && !raw)) {
        free(buf); free(raw);
        return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", name);
    }
    duet_status st = DUET_OK;
    for (size_t r0 = 0; r0 < f->in.rows && !st; r0 += per) {
        size_t r1 = f->in.rows - r0 < per ? f->in.rows : r0 + per;
        if ((st = read_rows(f, r0, r1, buf, raw, err))) break;
        for (size_t r = r0; r < r1 && !st; r++) st = check_row(name, r, buf + (r - r0) * c, c, err);
    }
    free(buf);
    free(raw);
    return st;
}
