/* vectors_wink.c -- wink-embeddings JSON ({"dimensions": D, "size": N,
 * "l2NormIndex": D, "wordIndex": D + 1, "vectors": {word: [D values, L2
 * norm, row], ...}}) parsed as a stream by yajl callbacks: from a buffer
 * (duet_vectors_parse_wink) or from a file in 1 MB chunks
 * (duet_vectors_read_wink, progress on a terminal). */
#define _POSIX_C_SOURCE 200809L
#include "text.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yajl/yajl_parse.h>

/* ------------------------------------------------------------ wink JSON */

enum { K_OTHER, K_DIM, K_SIZE, K_L2, K_WIDX, K_VECTORS };

typedef struct wink {
    const char *name;
    duet_error *err;
    duet_status st;
    int depth;          /* 0 outside, 1 in the top map, ...               */
    int key;            /* current top-level key (K_*)                    */
    long long dim, size, l2i, widx;
    size_t total_len;
    char *word; size_t word_len;  /* current word in "vectors"           */
    double *vals; size_t n_vals;
    float *vec;         /* [size x dim] by word index                     */
    char **words;       /* [size] by word index                           */
    size_t n_rows;
} wink;

static int wk_fail(wink *w, duet_status st, const char *fmt, const char *a) {
    char m[512];
    snprintf(m, sizeof m, fmt, a);
    w->st = duet_fail(w->err, st, "%s: %s", w->name, m);
    return 0;
}

static int wk_prepare(wink *w) {
    if (w->vec) return 1;
    if (w->dim < 1 || w->dim > DUET_VEC_MAX_DIM) return wk_fail(w, DUET_ERR_FORMAT, "field 'dimensions' missing before 'vectors' or out of range%s", "");
    if (w->size < 1 || (unsigned long long)w->size > w->total_len / (2 * (size_t)w->dim + 2))
        return wk_fail(w, DUET_ERR_FORMAT, "field 'size' missing before 'vectors' or too large for the file%s", "");
    if (w->l2i >= 0 && w->l2i != w->dim) return wk_fail(w, DUET_ERR_FORMAT, "field 'l2NormIndex' differs from 'dimensions'%s", "");
    if (w->widx >= 0 && w->widx != w->dim + 1) return wk_fail(w, DUET_ERR_FORMAT, "field 'wordIndex' differs from 'dimensions' + 1%s", "");
    w->vec = duet_alloc_array((size_t)w->size, (size_t)w->dim * sizeof(float));
    w->words = duet_calloc_array((size_t)w->size, sizeof(char *));
    w->vals = duet_alloc_array((size_t)w->dim + 2, sizeof(double));
    if (!w->vec || !w->words || !w->vals) return wk_fail(w, DUET_ERR_NOMEM, "out of memory%s", "");
    return 1;
}

static int wk_number(void *ctx, const char *s, size_t l) {
    wink *w = ctx;
    char tmp[64];
    if (l >= sizeof tmp) return wk_fail(w, DUET_ERR_FORMAT, "a number literal is too long%s", "");
    memcpy(tmp, s, l); tmp[l] = '\0';
    char *end;
    double x = strtod(tmp, &end);
    if (w->depth == 1) {
        int hdr = w->key == K_DIM || w->key == K_SIZE || w->key == K_L2 || w->key == K_WIDX;
        if (hdr && w->vec) return wk_fail(w, DUET_ERR_FORMAT, "a header field (dimensions, size, l2NormIndex, wordIndex) after 'vectors'%s", "");
        long long v = -1;
        if (x >= 0 && x < 9.0e15 && x == floor(x)) v = (long long)x;
        if (w->key == K_DIM) w->dim = v;
        else if (w->key == K_SIZE) w->size = v;
        else if (w->key == K_L2) w->l2i = v;
        else if (w->key == K_WIDX) w->widx = v;
        return 1;
    }
    if (w->key == K_VECTORS && w->depth == 3) {
        if (w->n_vals >= (size_t)w->dim + 2) return wk_fail(w, DUET_ERR_SHAPE, "vectors['%.64s']: more than dimensions + 2 numbers", w->word);
        w->vals[w->n_vals++] = x;
        return 1;
    }
    if (w->key == K_VECTORS) return wk_fail(w, DUET_ERR_FORMAT, "'vectors' holds a number where a list was expected%s", "");
    return 1;
}

static int wk_other(void *ctx) { /* null */
    wink *w = ctx;
    if (w->key == K_VECTORS && w->depth >= 2) return wk_fail(w, DUET_ERR_FORMAT, "'vectors' holds a null where numbers were expected (word '%.64s')", w->word ? w->word : "");
    return 1;
}
static int wk_bool(void *ctx, int b) { (void)b; return wk_other(ctx); }

static int wk_string(void *ctx, const unsigned char *s, size_t l) {
    wink *w = ctx;
    (void)s; (void)l;
    if (w->key == K_VECTORS && w->depth >= 2) return wk_fail(w, DUET_ERR_FORMAT, "'vectors' holds a string where numbers were expected (word '%.64s')", w->word ? w->word : "");
    return 1;
}

static int wk_start_map(void *ctx) {
    wink *w = ctx;
    w->depth++;
    if (w->depth == 2 && w->key == K_VECTORS) return wk_prepare(w);
    if (w->key == K_VECTORS && w->depth > 2) return wk_fail(w, DUET_ERR_FORMAT, "'vectors' holds an object where a list was expected%s", "");
    return 1;
}

static int wk_key(void *ctx, const unsigned char *k, size_t l) {
    wink *w = ctx;
    if (w->depth == 1) {
        w->key = K_OTHER;
#define KEYIS(s) (l == sizeof(s) - 1 && memcmp(k, s, l) == 0)
        if (KEYIS("dimensions")) w->key = K_DIM;
        else if (KEYIS("size")) w->key = K_SIZE;
        else if (KEYIS("l2NormIndex")) w->key = K_L2;
        else if (KEYIS("wordIndex")) w->key = K_WIDX;
        else if (KEYIS("vectors")) w->key = K_VECTORS;
#undef KEYIS
        return 1;
    }
    if (w->depth == 2 && w->key == K_VECTORS) {
        if (l == 0 || l > DUET_VEC_MAX_WORD || memchr(k, '\0', l)) return wk_fail(w, DUET_ERR_FORMAT, "'vectors' has an empty, NUL-holding or over-long word%s", "");
        char *nw = realloc(w->word, l + 1);
        if (!nw) return wk_fail(w, DUET_ERR_NOMEM, "out of memory%s", "");
        memcpy(nw, k, l); nw[l] = '\0';
        w->word = nw; w->word_len = l;
        w->n_vals = 0;
    }
    return 1;
}

static int wk_end_map(void *ctx) { wink *w = ctx; w->depth--; if (w->depth == 1) {} return 1; }

static int wk_start_array(void *ctx) {
    wink *w = ctx;
    w->depth++;
    if (w->key == K_VECTORS && w->depth == 2) return wk_fail(w, DUET_ERR_FORMAT, "'vectors' is a list, expected an object word -> numbers%s", "");
    if (w->key == K_VECTORS && w->depth > 3) return wk_fail(w, DUET_ERR_FORMAT, "vectors['%.64s'] holds a nested list", w->word ? w->word : "");
    return 1;
}

static int wk_end_array(void *ctx) {
    wink *w = ctx;
    if (w->key == K_VECTORS && w->depth == 3) {
        size_t d = (size_t)w->dim;
        if (w->n_vals != d + 2) {
            char m[160];
            snprintf(m, sizeof m, "vectors['%.64s'] has %zu numbers, 'dimensions' + 2 = %zu", w->word, w->n_vals, d + 2);
            return wk_fail(w, DUET_ERR_SHAPE, "%s", m);
        }
        double ix = w->vals[d + 1];
        if (!(ix >= 0 && ix < (double)w->size) || ix != (double)(long long)ix)
            return wk_fail(w, DUET_ERR_FORMAT, "vectors['%.64s']: word index out of [0, size)", w->word);
        size_t r = (size_t)ix;
        if (w->words[r]) return wk_fail(w, DUET_ERR_FORMAT, "vectors['%.64s']: word index already used by another word", w->word);
        double ss = 0;
        for (size_t j = 0; j < d; j++) {
            if (!isfinite(w->vals[j]) || fabs(w->vals[j]) > 3.0e38) return wk_fail(w, DUET_ERR_NONFINITE, "vectors['%.64s']: a value is not finite", w->word);
            w->vec[r * d + j] = (float)w->vals[j];
            ss += w->vals[j] * w->vals[j];
        }
        double nrm = w->vals[d];
        if (!(fabs(sqrt(ss) - nrm) <= 1e-4 * (nrm > 1 ? nrm : 1) + 1e-6))
            return wk_fail(w, DUET_ERR_FORMAT, "vectors['%.64s']: the stored L2 norm disagrees with the values", w->word);
        w->words[r] = w->word;
        w->word = NULL;
        w->n_rows++;
    }
    w->depth--;
    return 1;
}

static const yajl_callbacks wink_cb = {
    wk_other, wk_bool, NULL, NULL, wk_number, wk_string,
    wk_start_map, wk_key, wk_end_map, wk_start_array, wk_end_array};

/* ------------------------------------------------------------ parse runs */

typedef struct wink_run { wink w; yajl_handle h; size_t consumed; } wink_run;

static duet_status wink_begin(wink_run *r, const char *name, size_t total, duet_error *err) {
    memset(r, 0, sizeof *r);
    r->w.name = name; r->w.err = err; r->w.total_len = total;
    r->w.dim = r->w.size = r->w.l2i = r->w.widx = -1;
    r->h = yajl_alloc(&wink_cb, NULL, &r->w);
    if (!r->h) return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", name);
    return DUET_OK;
}

static duet_status wink_status(wink_run *r, yajl_status ys, const unsigned char *chunk, size_t n) {
    if (ys == yajl_status_ok) { r->consumed += n; return DUET_OK; }
    if (ys == yajl_status_client_canceled) return r->w.st ? r->w.st : DUET_ERR_FORMAT;
    size_t at = r->consumed + yajl_get_bytes_consumed(r->h);
    unsigned char *m = yajl_get_error(r->h, 0, chunk, n);
    duet_status st = duet_fail(r->w.err, DUET_ERR_FORMAT, "%s: JSON error at byte %zu: %s", r->w.name, at, m ? (const char *)m : "?");
    if (m) yajl_free_error(r->h, m);
    return st;
}

static duet_status wink_feed(wink_run *r, const char *p, size_t n) {
    return wink_status(r, yajl_parse(r->h, (const unsigned char *)p, n), (const unsigned char *)p, n);
}

static void wink_cleanup(wink_run *r) {
    if (r->h) yajl_free(r->h);
    if (r->w.words) for (long long i = 0; i < r->w.size; i++) free(r->w.words[i]);
    free(r->w.words); free(r->w.vec); free(r->w.vals); free(r->w.word);
}

static duet_status wink_end(wink_run *r, duet_vectors **out, duet_error *err) {
    duet_status st = wink_status(r, yajl_complete_parse(r->h), NULL, 0);
    wink *w = &r->w;
    if (!st && !w->vec) st = duet_fail(err, DUET_ERR_FORMAT, "%s: no 'vectors' object", w->name);
    if (!st && w->n_rows != (size_t)w->size)
        st = duet_fail(err, DUET_ERR_SHAPE, "%s: 'size' says %lld words, 'vectors' holds %zu", w->name, w->size, w->n_rows);
    if (st) { wink_cleanup(r); return st; }
    size_t bl = 0;
    for (size_t i = 0; i < w->n_rows; i++) bl += strlen(w->words[i]) + 1;
    duet_vectors *v = calloc(1, sizeof *v);
    char *blob = malloc(bl ? bl : 1);
    if (!v || !blob) { free(v); free(blob); wink_cleanup(r); return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", w->name); }
    size_t o = 0;
    for (size_t i = 0; i < w->n_rows; i++) { size_t l = strlen(w->words[i]) + 1; memcpy(blob + o, w->words[i], l); o += l; }
    v->n = w->n_rows; v->dim = (size_t)w->dim;
    v->own = v->vec = w->vec; w->vec = NULL;
    v->source_format = duet_strdup("wink");
    st = duet_vocab_build(&v->vocab, blob, bl, v->n, 0, w->name, err);
    if (st) { free(blob); wink_cleanup(r); duet_vectors_free(v); return st; }
    v->vocab.blob = blob;
    wink_cleanup(r);
    *out = v;
    return DUET_OK;
}

/* ------------------------------------------------------------ buffer, file */

duet_status duet_vectors_parse_wink(const char *buf, size_t len, const char *name,
                                    duet_vectors **out, duet_error *err) {
    *out = NULL;
    wink_run r;
    duet_status st = wink_begin(&r, name, len, err);
    if (st) return st;
    for (size_t o = 0; o < len && !st; o += 65536)
        st = wink_feed(&r, buf + o, len - o < 65536 ? len - o : 65536);
    if (st) { wink_cleanup(&r); return st; }
    return wink_end(&r, out, err);
}

static int is_tty_stderr(void) { return isatty(2); }

/* Streams the file at path through the parser (declared in text.h). */
duet_status duet_vectors_read_wink(const char *path, duet_vectors **out, duet_error *err) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return duet_fail(err, DUET_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    size_t total = fstat(fileno(fp), &sb) == 0 ? (size_t)sb.st_size : 0;
    wink_run r;
    duet_status st = wink_begin(&r, path, total, err);
    char *chunk = malloc(1 << 20);
    if (!chunk && !st) st = duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    size_t done = 0, next = 0;
    int tty = is_tty_stderr();
    while (!st) {
        size_t n = fread(chunk, 1, 1 << 20, fp);
        if (n == 0) { if (ferror(fp)) st = duet_fail(err, DUET_ERR_IO, "%s: read error", path); break; }
        st = wink_feed(&r, chunk, n);
        done += n;
        if (tty && done >= next) { fprintf(stderr, "\rwink: %zu / %zu MB", done >> 20, total >> 20); next = done + (16u << 20); }
    }
    if (tty) fprintf(stderr, "\n");
    free(chunk);
    fclose(fp);
    if (st) { wink_cleanup(&r); return st; }
    return wink_end(&r, out, err);
}
