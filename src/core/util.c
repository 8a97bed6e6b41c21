/* util.c -- allocation, whole-file reads, atomic writes, directories,
 * clocks, threads, peak memory. */
#define _DEFAULT_SOURCE /* madvise */
#include "core.h"
#include <cblas.h>
#include <omp.h>
#include <errno.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void *duet_alloc_array(size_t n, size_t size) {
    size_t bytes;
    if (!duet_mul_size(n, size, &bytes)) return NULL;
    return malloc(bytes ? bytes : 1);
}

/* MADV_POPULATE_WRITE: Linux 5.14 and later (older kernels refuse the
 * advice with EINVAL, which leaves the allocation as malloc made it). */
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

void *duet_alloc_populated(size_t n, size_t size) {
    size_t bytes;
    if (!duet_mul_size(n, size, &bytes)) return NULL;
    char *p = malloc(bytes ? bytes : 1);
    long pg = sysconf(_SC_PAGESIZE);
    if (!p || pg <= 0 || bytes < ((size_t)1 << 20)) return p;
    /* the whole pages inside [p, p + bytes) */
    uintptr_t a = ((uintptr_t)p + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1), e = ((uintptr_t)p + bytes) & ~((uintptr_t)pg - 1);
    if (e > a) (void)madvise((void *)a, e - a, MADV_POPULATE_WRITE);
    return p;
}

void *duet_calloc_array(size_t n, size_t size) {
    size_t bytes;
    if (!duet_mul_size(n, size, &bytes)) return NULL;
    return calloc(bytes ? bytes : 1, 1);
}

void *duet_grow(void *p, size_t *cap, size_t n, size_t elem) {
    if (n < *cap) return p;
    size_t ncap = 16, bytes;
    if (*cap && !duet_mul_size(*cap, 2, &ncap)) return NULL;
    if (!duet_mul_size(ncap, elem, &bytes)) return NULL;
    void *q = realloc(p, bytes);
    if (q) *cap = ncap;
    return q;
}

char *duet_strdup(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

void duet_mat_free(duet_mat *m) {
    if (!m) return;
    free(m->data);
    m->data = NULL;
    m->rows = m->cols = 0;
}

duet_status duet_mat_check_finite(const duet_mat *m, const char *name,
                                  duet_error *err) {
    size_t n = m->rows * m->cols;
    for (size_t i = 0; i < n; i++) {
        float v = m->data[i];
        if (v - v != 0.0f) /* NaN or Inf */
            return duet_fail(err, DUET_ERR_NONFINITE,
                             "%s: non-finite value (%s) at row %zu, column %zu",
                             name, v != v ? "NaN" : "Inf", i / m->cols,
                             i % m->cols);
    }
    return DUET_OK;
}

duet_status duet_read_file(const char *path, size_t max_bytes, char **buf,
                           size_t *len, duet_error *err) {
    *buf = NULL;
    *len = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return duet_fail(err, DUET_ERR_IO, "%s: cannot open: %s", path,
                         strerror(errno));
    duet_status st = DUET_OK;
    size_t cap = 1 << 16, n = 0;
    char *p = malloc(cap);
    if (!p) { fclose(fp); return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path); }
    for (;;) {
        if (n == cap - 1) {
            if (cap > max_bytes) {
                st = duet_fail(err, DUET_ERR_FORMAT,
                               "%s: file larger than the %zu-byte limit", path,
                               max_bytes);
                goto out;
            }
            size_t ncap = cap * 2;
            char *q = realloc(p, ncap);
            if (!q) { st = duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path); goto out; }
            p = q;
            cap = ncap;
        }
        size_t got = fread(p + n, 1, cap - 1 - n, fp);
        n += got;
        if (got == 0) {
            if (ferror(fp))
                st = duet_fail(err, DUET_ERR_IO, "%s: read error: %s", path,
                               strerror(errno));
            break;
        }
    }
    if (st == DUET_OK && n > max_bytes)
        st = duet_fail(err, DUET_ERR_FORMAT,
                       "%s: file larger than the %zu-byte limit", path, max_bytes);
out:
    fclose(fp);
    if (st != DUET_OK) { free(p); return st; }
    p[n] = '\0';
    *buf = p;
    *len = n;
    return DUET_OK;
}

duet_status duet_atomic_open(duet_atomic_file *af, const char *path,
                             duet_error *err) {
    memset(af, 0, sizeof *af);
    size_t n = strlen(path) + 32;
    af->path = duet_strdup(path);
    af->tmp = malloc(n);
    if (!af->path || !af->tmp) {
        duet_atomic_abort(af);
        return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    }
    snprintf(af->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    af->fp = fopen(af->tmp, "wb");
    if (!af->fp) {
        duet_status st = duet_fail(err, DUET_ERR_IO, "%s: cannot create: %s",
                                   af->tmp, strerror(errno));
        duet_atomic_abort(af);
        return st;
    }
    return DUET_OK;
}

duet_status duet_atomic_write(duet_atomic_file *af, const void *p, size_t n,
                              duet_error *err) {
    if (n && fwrite(p, 1, n, af->fp) != n)
        return duet_fail(err, DUET_ERR_IO, "%s: write failed: %s", af->tmp,
                         strerror(errno));
    return DUET_OK;
}

duet_status duet_atomic_commit(duet_atomic_file *af, duet_error *err) {
    duet_status st = DUET_OK;
    if (fflush(af->fp) != 0 || fsync(fileno(af->fp)) != 0)
        st = duet_fail(err, DUET_ERR_IO, "%s: flush failed: %s", af->tmp,
                       strerror(errno));
    if (fclose(af->fp) != 0 && st == DUET_OK)
        st = duet_fail(err, DUET_ERR_IO, "%s: close failed: %s", af->tmp,
                       strerror(errno));
    af->fp = NULL;
    if (st == DUET_OK && rename(af->tmp, af->path) != 0)
        st = duet_fail(err, DUET_ERR_IO, "%s: rename to %s failed: %s",
                       af->tmp, af->path, strerror(errno));
    if (st != DUET_OK) remove(af->tmp);
    free(af->tmp);
    free(af->path);
    af->tmp = af->path = NULL;
    return st;
}

void duet_atomic_abort(duet_atomic_file *af) {
    if (!af) return;
    if (af->fp) fclose(af->fp);
    if (af->tmp) remove(af->tmp);
    free(af->tmp);
    free(af->path);
    memset(af, 0, sizeof *af);
}

double duet_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void duet_set_threads(int n) {
    if (n < 1) return;
    openblas_set_num_threads(n);
    omp_set_num_threads(n); /* oneDNN's threads */
}

duet_status duet_make_dirs(const char *path, duet_error *err) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "%s: path too long", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return duet_fail(err, DUET_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
            *p = c;
            if (!c) break;
        }
    }
    return DUET_OK;
}


long duet_peak_rss_kb(void) {
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : 0;
}
