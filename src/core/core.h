/* core.h -- private helpers shared by every part of duet (not installed).
 *
 * Errors: duet_fail() formats a message into a caller's duet_error and
 * returns the status, so a failing path reads
 *     return duet_fail(err, DUET_ERR_FORMAT, "%s: line %zu: ...", path, line);
 * Sizes: duet_mul_size()/duet_add_size() detect overflow before an
 * allocation. Files: duet_read_file() reads a whole file with a size cap;
 * duet_atomic_* write through "PATH.tmp.PID" and rename onto PATH. */
#ifndef DUET_CORE_H
#define DUET_CORE_H

#include "duet.h"
#include <stdarg.h>
#include <stdbool.h>

#if defined(__GNUC__)
#define DUET_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define DUET_PRINTF(a, b)
#endif

/* Sets err (if not NULL) and returns st. */
duet_status duet_fail(duet_error *err, duet_status st, const char *fmt, ...)
    DUET_PRINTF(3, 4);
/* Prepends "prefix: " to an existing message (for context). Returns st. */
duet_status duet_fail_wrap(duet_error *err, duet_status st, const char *fmt, ...)
    DUET_PRINTF(3, 4);

/* *out = a * b; false on overflow. */
static inline bool duet_mul_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return false;
    *out = a * b;
    return true;
}
/* *out = a + b; false on overflow. */
static inline bool duet_add_size(size_t a, size_t b, size_t *out) {
    if (b > SIZE_MAX - a) return false;
    *out = a + b;
    return true;
}
/* malloc(n * size) with overflow check; NULL on overflow or failure.
 * n == 0 returns a valid 1-byte allocation so that callers never see NULL
 * for an empty array. Caller frees with free(). */
void *duet_alloc_array(size_t n, size_t size);
void *duet_calloc_array(size_t n, size_t size);
/* duet_alloc_array for large arrays about to be written whole: the kernel
 * maps every page of an allocation of 1 MiB or more at once
 * (MADV_POPULATE_WRITE) instead of one page fault per 4 KiB page on first
 * touch. On the Firecracker machine, 2 GB the process had just freed took
 * 0.8 s to touch page by page and 0.47 s to populate; memory the host had
 * taken back costs up to 2.5 s per GB either way (benchmarks that time a
 * first pass over fresh memory measure this). Caller frees with free(). */
void *duet_alloc_populated(size_t n, size_t size);
/* Returns p grown (realloc) so that it holds at least n + 1 elements of
 * elem bytes, doubling *cap (from 16) with overflow checks; *cap is updated
 * only on success. NULL on overflow or allocation failure (p is then
 * untouched and still the caller's). */
void *duet_grow(void *p, size_t *cap, size_t n, size_t elem);
/* strdup that returns NULL on NULL. Caller frees with free(). */
char *duet_strdup(const char *s);
/* duet_strdup that sets *oom when s is not NULL and the copy fails, so a
 * run of copies is checked once. Caller frees with free(). */
static inline char *duet_strdup_or_flag(const char *s, int *oom) {
    char *r = duet_strdup(s);
    if (s && !r) *oom = 1;
    return r;
}

/* Reads the whole of path into *buf (NUL-terminated, caller frees with
 * free()), *len bytes excluding the NUL. Refuses files over max_bytes. */
duet_status duet_read_file(const char *path, size_t max_bytes, char **buf,
                           size_t *len, duet_error *err);

/* Atomic file writing: open a temp file beside path, write, then commit
 * (fflush, fsync, rename) or abort (remove the temp). */
typedef struct duet_atomic_file {
    FILE *fp;
    char *path;     /* final path  */
    char *tmp;      /* temp path   */
} duet_atomic_file;
duet_status duet_atomic_open(duet_atomic_file *af, const char *path,
                             duet_error *err);
/* Writes n bytes; on a short write returns DUET_ERR_IO naming the path. */
duet_status duet_atomic_write(duet_atomic_file *af, const void *p, size_t n,
                              duet_error *err);
duet_status duet_atomic_commit(duet_atomic_file *af, duet_error *err);
void duet_atomic_abort(duet_atomic_file *af); /* NULL-safe, idempotent */

/* CRC-32C (Castagnoli; SSE4.2 instruction, table loop elsewhere).
 * duet_crc32c continues crc (0 to start) over n bytes; _combine gives the
 * CRC of A then B from crc(A), crc(B) and B's length; _parallel hashes
 * blocks of 4 MiB on the threads of duet_parallel_for and combines them
 * (the same value). duet_file_crc32c: the whole file (memory-mapped). */
uint32_t duet_crc32c(uint32_t crc, const void *p, size_t n);
uint32_t duet_crc32c_combine(uint32_t crc1, uint32_t crc2, size_t len2);
uint32_t duet_crc32c_parallel(const void *p, size_t n);
duet_status duet_file_crc32c(const char *path, uint32_t *out, duet_error *err);

/* duet's tensor file: every file duet writes (models, checkpoints) is
 *   magic[8] | u32 format version | u32 mark | u64 header bytes | header JSON |
 *   space padding to a multiple of 64 | float32 arrays, back to back |
 *   u32 CRC-32C of every byte before it
 * little-endian; mark is DUET_TF_CRC_MARK. The JSON header is the caller's
 * object plus an "arrays" list [{"name": N, "count": C}, ...] that the writer
 * adds and the reader checks against the file size.
 * Readers verify the checksum before anything else is parsed (a mismatch is
 * DUET_ERR_FORMAT naming the file). Files of the format version before
 * want_version (the layout before checksums: mark 0, no trailer) are read
 * unverified (duet_tf_file.checksum = 0), so each kind bumped its version
 * when checksums came: a single flipped bit in the version, mark or
 * trailer of a new file can never make it look like an old one. */
#define DUET_TF_CRC_MARK 0x43323343u   /* "C32C" */
typedef struct duet_tf_array {
    const char *name;
    const float *data;
    size_t count;
} duet_tf_array;

/* Writes atomically; header_json is a JSON object text (without "arrays"). */
duet_status duet_tf_write(const char *path, const char magic[8],
                          uint32_t version, const char *header_json,
                          const duet_tf_array *arrays, size_t n_arrays,
                          duet_error *err);
/* The same; *crc (optional) = the checksum the file ends with. */
duet_status duet_tf_write_sum(const char *path, const char magic[8],
                              uint32_t version, const char *header_json,
                              const duet_tf_array *arrays, size_t n_arrays,
                              uint32_t *crc, duet_error *err);
/* The checks before the header of len bytes at buf: magic, version
 * (want_version, or the one before it), checksum mark and CRC. *body = the
 * bytes before the trailer (len for an old file), *verified = 1 when the
 * CRC was checked, *crc (optional) = it. For readers of their own. */
duet_status duet_tf_check(const char *buf, size_t len, const char *path,
                          const char magic[8], uint32_t want_version,
                          const char *kind, size_t *body, int *verified,
                          uint32_t *crc, duet_error *err);

/* A loaded tensor file: the whole file in memory. Free with duet_tf_free. */
typedef struct duet_tf_file {
    char *buf;            /* owned                                       */
    size_t len;           /* bytes before the checksum trailer           */
    uint32_t version;
    int checksum;         /* 1: CRC verified; 0: an old file without one */
    uint32_t crc;         /* the verified CRC-32C (0 when none)          */
    void *header;         /* json_t * (jansson), owned                   */
    size_t n_arrays;
    char **names;         /* [n_arrays] owned                            */
    float **data;         /* [n_arrays] views into buf (64-byte aligned) */
    size_t *counts;       /* [n_arrays]                                  */
    int borrowed;         /* 1: buf belongs to the caller (not freed)    */
} duet_tf_file;

/* Reads and validates path (magic, version == want_version or the one
 * before, checksum, header JSON, array table vs file size). kind names the
 * file type in messages. */
duet_status duet_tf_read(const char *path, const char magic[8],
                         uint32_t want_version, const char *kind,
                         duet_tf_file *tf, duet_error *err);
/* The same on len bytes of buf, which it takes over (freed with the file,
 * or at once on failure). For fuzzing and in-memory files. */
duet_status duet_tf_parse(char *buf, size_t len, const char *path,
                          const char magic[8], uint32_t want_version,
                          const char *kind, duet_tf_file *tf, duet_error *err);
/* The same on len bytes the caller keeps (e.g. a memory-mapped file, page
 * aligned so the arrays stay 64-byte aligned): buf is never freed and must
 * outlive tf; arrays are views into it. */
duet_status duet_tf_parse_view(const char *buf, size_t len, const char *path,
                               const char magic[8], uint32_t want_version,
                               const char *kind, duet_tf_file *tf, duet_error *err);
/* The array named name, which must hold exactly count floats (count 0: any);
 * NULL with an error naming the file and array otherwise. */
const float *duet_tf_array_get(const duet_tf_file *tf, const char *path,
                               const char *name, size_t count, size_t *got,
                               duet_error *err);
void duet_tf_free(duet_tf_file *tf); /* NULL-safe */
/* 1 when path is a tensor file that carries a checksum (its mark), 0 when
 * not (a file of the version before checksums), -1 when unreadable; reads
 * 16 bytes, verifies nothing (the loaders do). For warnings. */
int duet_tf_file_checksummed(const char *path);

/* Runs fn(ctx, begin, end) over [0, n) split into one contiguous chunk per
 * thread (as many threads as OpenBLAS uses, at most DUET_MAX_THREADS, and
 * each chunk at least min_per_thread long); returns when all are done. */
#define DUET_MAX_THREADS 64
typedef void (*duet_range_fn)(void *ctx, size_t begin, size_t end);
void duet_parallel_for(size_t n, size_t min_per_thread, duet_range_fn fn, void *ctx);

/* Monotonic seconds. */
double duet_now(void);

/* mkdir -p: creates path and its missing parents (mode 0777 & ~umask). */
duet_status duet_make_dirs(const char *path, duet_error *err);

/* This process's peak resident memory so far, in KiB (0 if unknown). */
long duet_peak_rss_kb(void);

/* A growable NUL-terminated string (keys, JSON, HTML). Zero-initialize it;
 * the caller owns b->s and frees it with duet_sb_free. oom is set (and later
 * appends ignored) when an allocation fails: check it once at the end. */
typedef struct duet_sbuf {
    char *s;
    size_t n, cap;
    int oom;
} duet_sbuf;
void duet_sb_printf(duet_sbuf *b, const char *fmt, ...) DUET_PRINTF(2, 3);
void duet_sb_html(duet_sbuf *b, const char *text); /* HTML-escaped */
void duet_sb_free(duet_sbuf *b);                   /* NULL-safe */

/* 64-bit FNV-1a of n bytes, continuing from h (start: DUET_FNV_INIT). */
#define DUET_FNV_INIT 1469598103934665603ULL
uint64_t duet_fnv(uint64_t h, const void *p, size_t n);

/* Writes len bytes of text to path atomically (temp file + rename). */
duet_status duet_write_text(const char *path, const char *text, size_t len,
                            duet_error *err);

#endif
