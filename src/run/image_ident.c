/* image_ident.c -- the content identity of a dataset's images, for the
 * image stage's key: every image's size and CRC-32C, so that files copied
 * or re-provisioned with new modification times (the same bytes) keep the
 * cached CNN features, and changed bytes do not.
 *
 * Reading every image on every run would cost seconds, so the work
 * directory keeps what was read: WORK/image-ident.tsv, a text file
 *
 *   duet-image-ident 1
 *   <crc32c hex> <size> <mtime s> <mtime ns> <inode> <name>     (one a line,
 *                                                              dataset order)
 *
 * A file whose size, mtime and inode match its line is not read again;
 * the others are, and the file is rewritten (atomically). The cache is
 * only a shortcut: a missing, foreign or malformed one is rebuilt, never
 * an error. */
#define _XOPEN_SOURCE 700
#include "run/run.h"
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define IDENT_MAGIC "duet-image-ident 1\n"
#define IDENT_MAX_BYTES ((size_t)1 << 28)

typedef struct ident {
    uint32_t crc;
    int64_t size, sec, nsec, ino;
    const char *name;   /* into the cache file's buffer, or NULL */
} ident;

/* Parses the cache file buf [len bytes, NUL-terminated] into at most n
 * entries of e (in file order); returns how many. Stops at the first line
 * that is not well formed. Names are cut out in place. */
static size_t parse_cache(char *buf, size_t len, ident *e, size_t n) {
    size_t ml = strlen(IDENT_MAGIC), k = 0;
    if (len < ml || memcmp(buf, IDENT_MAGIC, ml) != 0) return 0;
    char *p = buf + ml, *end = buf + len;
    while (p < end && k < n) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) break;
        *nl = '\0';
        unsigned long crc;
        long long size, sec, nsec, ino;
        int used = 0;
        if (sscanf(p, "%8lx %lld %lld %lld %lld %n", &crc, &size, &sec, &nsec, &ino, &used) != 5 || used <= 0 ||
            p[used] == '\0' || size < 0)
            break;
        e[k++] = (ident){(uint32_t)crc, size, sec, nsec, ino, p + used};
        p = nl + 1;
    }
    return k;
}

/* Writes the identities of names[0..n) to path, atomically. */
static duet_status write_cache(const char *path, char *const *names, const ident *e, size_t n, duet_error *err) {
    duet_atomic_file af;
    duet_status st = duet_atomic_open(&af, path, err);
    if (st) return st;
    if (fputs(IDENT_MAGIC, af.fp) < 0) st = duet_fail(err, DUET_ERR_IO, "%s: write failed", path);
    for (size_t i = 0; !st && i < n; i++)
        if (!strchr(names[i], '\n') &&
            fprintf(af.fp, "%08" PRIx32 " %lld %lld %lld %lld %s\n", e[i].crc, (long long)e[i].size,
                    (long long)e[i].sec, (long long)e[i].nsec, (long long)e[i].ino, names[i]) < 0)
            st = duet_fail(err, DUET_ERR_IO, "%s: write failed", path);
    if (st) { duet_atomic_abort(&af); return st; }
    return duet_atomic_commit(&af, err);
}

duet_status duet_run_image_ident(const char *work, const char *dir, char *const *names, size_t n, uint64_t h,
                                 uint64_t *out, size_t *reread, duet_error *err) {
    char cpath[PATH_MAX];
    if (snprintf(cpath, sizeof cpath, "%s/image-ident.tsv", work) >= (int)sizeof cpath)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "%s: work directory path too long", work);
    ident *cur = duet_calloc_array(n ? n : 1, sizeof *cur), *old = duet_calloc_array(n ? n : 1, sizeof *old);
    char *buf = NULL;
    size_t len = 0, nold = 0, miss = 0;
    duet_sbuf p = {0};
    duet_status st = cur && old ? DUET_OK : duet_fail(err, DUET_ERR_NOMEM, "run: out of memory");
    if (!st && duet_read_file(cpath, IDENT_MAX_BYTES, &buf, &len, NULL) == DUET_OK) nold = parse_cache(buf, len, old, n);
    for (size_t i = 0; !st && i < n; i++) {
        struct stat sb;
        p.n = 0;
        duet_sb_printf(&p, "%s/%s", dir, names[i]);
        if (p.oom) { st = duet_fail(err, DUET_ERR_NOMEM, "run: out of memory"); break; }
        if (stat(p.s, &sb) != 0) { st = duet_fail(err, DUET_ERR_IO, "%s: image not found: %s", p.s, strerror(errno)); break; }
        cur[i] = (ident){0, (int64_t)sb.st_size, (int64_t)sb.st_mtim.tv_sec, (int64_t)sb.st_mtim.tv_nsec,
                         (int64_t)sb.st_ino, NULL};
        const ident *o = i < nold ? &old[i] : NULL;
        if (o && strcmp(o->name, names[i]) == 0 && o->size == cur[i].size && o->sec == cur[i].sec &&
            o->nsec == cur[i].nsec && o->ino == cur[i].ino)
            cur[i].crc = o->crc;
        else if (sb.st_size == 0) miss++;   /* an empty file: CRC 0, nothing to read */
        else {
            st = duet_file_crc32c(p.s, &cur[i].crc, err);
            miss++;
        }
        int64_t v[2] = {cur[i].size, (int64_t)cur[i].crc};
        h = duet_fnv(h, v, sizeof v);
    }
    /* the cache is a shortcut: failing to write it costs a re-read, no more */
    if (!st && (miss || nold != n)) {
        duet_error ignored = {0};
        (void)write_cache(cpath, names, cur, n, &ignored);
    }
    duet_sb_free(&p);
    free(buf);
    free(cur);
    free(old);
    if (!st) { *out = h; if (reread) *reread = miss; }
    return st;
}
