/* vectors.c -- word vector importers (GloVe text, word2vec text/binary,
 * fastText .vec, wink JSON via yajl, streaming) and duet's vectors file. */
#define _POSIX_C_SOURCE 200809L
#include "text.h"
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yajl/yajl_parse.h>

static const char VEC_MAGIC[8] = {'D', 'U', 'E', 'T', 'V', 'E', 'C', 'S'};
#define MAX_DIM 100000
#define MAX_WORD 4096

static const char *fmt_names[] = {"auto", "glove", "word2vec-bin", "word2vec-text",
                                  "fasttext", "wink", "duet"};

int duet_vec_format_parse(const char *s) {
    for (int i = 0; i < (int)(sizeof fmt_names / sizeof *fmt_names); i++)
        if (strcmp(s, fmt_names[i]) == 0) return i;
    return -1;
}
const char *duet_vec_format_name(duet_vec_format f) {
    return (unsigned)f < sizeof fmt_names / sizeof *fmt_names ? fmt_names[f] : "?";
}

void duet_vectors_free(duet_vectors *v) {
    if (!v) return;
    duet_vocab_free(&v->vocab);
    free(v->own);
    duet_tf_free(&v->tf);
    if (v->map) munmap(v->map, v->map_len);
    free(v->source_format);
    free(v);
}
size_t duet_vectors_count(const duet_vectors *v) { return v->n; }
size_t duet_vectors_dim(const duet_vectors *v) { return v->dim; }
const char *duet_vectors_word(const duet_vectors *v, size_t i) { return i < v->n ? v->vocab.word[i] : NULL; }
const float *duet_vectors_get(const duet_vectors *v, const char *word) {
    long r = duet_vocab_find(&v->vocab, word);
    return r < 0 ? NULL : v->vec + (size_t)r * v->dim;
}

/* ------------------------------------------------------------ builder */

typedef struct builder {
    char *blob; size_t blob_len, blob_cap;
    float *vec; size_t n, cap;   /* rows */
    size_t dim;
} builder;

static void builder_free(builder *b) { free(b->blob); free(b->vec); memset(b, 0, sizeof *b); }

static int builder_add(builder *b, const char *w, size_t wl, const float *row) {
    if (b->n == b->cap) {
        size_t nc = b->cap ? 2 * b->cap : 1024, bytes;
        if (!duet_mul_size(nc, b->dim * sizeof(float), &bytes)) return 0;
        float *nv = realloc(b->vec, bytes);
        if (!nv) return 0;
        b->vec = nv; b->cap = nc;
    }
    if (b->blob_len + wl + 1 > b->blob_cap) {
        size_t nc = b->blob_cap ? 2 * b->blob_cap : 16384;
        while (nc < b->blob_len + wl + 1) nc *= 2;
        char *nb = realloc(b->blob, nc);
        if (!nb) return 0;
        b->blob = nb; b->blob_cap = nc;
    }
    memcpy(b->blob + b->blob_len, w, wl);
    b->blob[b->blob_len + wl] = '\0';
    b->blob_len += wl + 1;
    memcpy(b->vec + b->n * b->dim, row, b->dim * sizeof(float));
    b->n++;
    return 1;
}

/* Turns a builder into vectors (builder emptied). line0: line of entry 0
 * (for duplicate messages; 0: entries). */
static duet_status builder_finish(builder *b, const char *fmt, const char *name,
                                  duet_vectors **out, duet_error *err) {
    *out = NULL;
    if (b->n == 0) { builder_free(b); return duet_fail(err, DUET_ERR_EMPTY, "%s: no word vectors", name); }
    duet_vectors *v = calloc(1, sizeof *v);
    if (!v) { builder_free(b); return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", name); }
    v->n = b->n; v->dim = b->dim;
    v->own = b->vec; v->vec = b->vec; b->vec = NULL;
    v->source_format = duet_strdup(fmt);
    duet_status st = duet_vocab_build(&v->vocab, b->blob, b->blob_len, b->n, 0, name, err);
    if (st) { builder_free(b); duet_vectors_free(v); return st; }
    v->vocab.blob = b->blob; /* take ownership */
    b->blob = NULL;
    builder_free(b);
    *out = v;
    return DUET_OK;
}

/* ------------------------------------------------------------ text formats */

static int is_sp(char c) { return c == ' ' || c == '\t' || c == '\r'; }

/* Parses floats from s (NUL-terminated) into row; returns the count parsed
 * (up to max), *bad set to the index of an unparsable field. */
static size_t parse_floats(char *s, float *row, size_t max, size_t *count_all, int *bad) {
    size_t k = 0, all = 0;
    *bad = 0;
    for (;;) {
        while (is_sp(*s)) s++;
        if (!*s) break;
        char *end;
        errno = 0;
        float x = strtof(s, &end);
        if (end == s || (*end && !is_sp(*end))) { *bad = 1; *count_all = all; return k; }
        if (k < max) row[k++] = x;
        all++;
        s = end;
    }
    *count_all = all;
    return k;
}

duet_status duet_vectors_parse_text(const char *buf, size_t len, int has_header,
                                    const char *fmt, const char *name,
                                    duet_vectors **out, duet_error *err) {
    *out = NULL;
    builder b = {0};
    size_t pos = 0, line = 0, want_n = 0;
    char *ln = NULL; size_t ln_cap = 0;
    float *row = NULL;
    duet_status st = DUET_OK;
    while (pos < len) {
        const char *e = memchr(buf + pos, '\n', len - pos);
        size_t l = e ? (size_t)(e - (buf + pos)) : len - pos;
        line++;
        const char *p = buf + pos;
        pos += l + (e ? 1 : 0);
        while (l && (p[l - 1] == '\r' || p[l - 1] == ' ' || p[l - 1] == '\t')) l--;
        if (l == 0) {
            if (pos >= len) break;
            st = duet_fail(err, DUET_ERR_FORMAT, "%s:%zu: empty line", name, line);
            goto done;
        }
        if (memchr(p, '\0', l)) { st = duet_fail(err, DUET_ERR_FORMAT, "%s:%zu: NUL byte in a line", name, line); goto done; }
        if (l + 1 > ln_cap) {
            char *nl = realloc(ln, l + 1);
            if (!nl) { st = duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", name); goto done; }
            ln = nl; ln_cap = l + 1;
        }
        memcpy(ln, p, l); ln[l] = '\0';
        if (has_header && line == 1) {
            unsigned long long n, d; char extra;
            if (sscanf(ln, "%llu %llu %c", &n, &d, &extra) != 2)
                { st = duet_fail(err, DUET_ERR_FORMAT, "%s:1: header: expected 'N D' (word count, dimension), got '%.60s'", name, ln); goto done; }
            if (d < 1 || d > MAX_DIM) { st = duet_fail(err, DUET_ERR_FORMAT, "%s:1: header: dimension %llu out of range [1, %d]", name, d, MAX_DIM); goto done; }
            if (n < 1 || n > len / (2 * d + 2)) { st = duet_fail(err, DUET_ERR_FORMAT, "%s:1: header: %llu words of %llu values cannot fit a %zu-byte file", name, n, d, len); goto done; }
            want_n = (size_t)n; b.dim = (size_t)d;
            continue;
        }
        size_t wl = 0;
        while (wl < l && ln[wl] != ' ' && ln[wl] != '\t') wl++;
        if (wl == l) { st = duet_fail(err, DUET_ERR_FORMAT, "%s:%zu: a word without values", name, line); goto done; }
        if (wl > MAX_WORD) { st = duet_fail(err, DUET_ERR_FORMAT, "%s:%zu: word longer than %d bytes", name, line, MAX_WORD); goto done; }
        if (b.dim == 0) { /* GloVe: the first row sets the dimension */
            size_t cnt = 0; int bad;
            float dummy;
            parse_floats(ln + wl, &dummy, 0, &cnt, &bad);
            if (bad) { st = duet_fail(err, DUET_ERR_FORMAT, "%s:%zu: word '%.*s': value %zu is not a number", name, line, (int)(wl > 64 ? 64 : wl), ln, cnt + 1); goto done; }
            if (cnt < 1 || cnt > MAX_DIM) { st = duet_fail(err, DUET_ERR_FORMAT, "%s:%zu: %zu values (dimension must be in [1, %d])", name, line, cnt, MAX_DIM); goto done; }
            b.dim = cnt;
        }
        if (!row) {
            row = duet_alloc_array(b.dim, sizeof *row);
            if (!row) { st = duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", name); goto done; }
        }
        if (has_header && b.n >= want_n) { st = duet_fail(err, DUET_ERR_SHAPE, "%s:%zu: more rows than the %zu the header announces", name, line, want_n); goto done; }
        size_t cnt = 0; int bad;
        parse_floats(ln + wl, row, b.dim, &cnt, &bad);
        if (bad) { st = duet_fail(err, DUET_ERR_FORMAT, "%s:%zu: word '%.*s': value %zu is not a number", name, line, (int)(wl > 64 ? 64 : wl), ln, cnt + 1); goto done; }
        if (cnt != b.dim) { st = duet_fail(err, DUET_ERR_SHAPE, "%s:%zu: word '%.*s' has %zu values, %s %zu", name, line, (int)(wl > 64 ? 64 : wl), ln, cnt, has_header ? "the header says" : "the first row has", b.dim); goto done; }
        for (size_t j = 0; j < b.dim; j++)
            if (!isfinite(row[j])) { st = duet_fail(err, DUET_ERR_NONFINITE, "%s:%zu: word '%.*s': value %zu is not finite", name, line, (int)(wl > 64 ? 64 : wl), ln, j + 1); goto done; }
        if (!builder_add(&b, ln, wl, row)) { st = duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", name); goto done; }
    }
    if (has_header && line == 0) { st = duet_fail(err, DUET_ERR_FORMAT, "%s: empty file", name); goto done; }
    if (has_header && b.n != want_n) { st = duet_fail(err, DUET_ERR_SHAPE, "%s: truncated: the header announces %zu words, the file has %zu", name, want_n, b.n); goto done; }
done:
    free(ln); free(row);
    if (st) { builder_free(&b); return st; }
    return builder_finish(&b, fmt, name, out, err);
}

duet_status duet_vectors_parse_w2v_bin(const char *buf, size_t len, const char *name,
                                       duet_vectors **out, duet_error *err) {
    *out = NULL;
    const char *e = memchr(buf, '\n', len < 256 ? len : 256);
    if (!e) return duet_fail(err, DUET_ERR_FORMAT, "%s: header: no 'N D' line", name);
    char hdr[257];
    size_t hl = (size_t)(e - buf);
    memcpy(hdr, buf, hl); hdr[hl] = '\0';
    unsigned long long n, d; char extra;
    if (sscanf(hdr, "%llu %llu %c", &n, &d, &extra) != 2)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: header: expected 'N D', got '%.60s'", name, hdr);
    if (d < 1 || d > MAX_DIM) return duet_fail(err, DUET_ERR_FORMAT, "%s: header: dimension %llu out of range [1, %d]", name, d, MAX_DIM);
    size_t pos = hl + 1;
    if (n < 1 || n > (len - pos) / (4 * d + 2))
        return duet_fail(err, DUET_ERR_FORMAT, "%s: header: %llu words of %llu floats cannot fit a %zu-byte file (truncated?)", name, n, d, len);
    builder b = {0};
    b.dim = (size_t)d;
    float *row = duet_alloc_array(b.dim, sizeof *row);
    if (!row) return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", name);
    duet_status st = DUET_OK;
    for (size_t i = 0; i < n; i++) {
        while (pos < len && (buf[pos] == '\n' || buf[pos] == ' ')) pos++;
        size_t w0 = pos;
        while (pos < len && buf[pos] != ' ' && pos - w0 <= MAX_WORD) {
            if (buf[pos] == '\0' || buf[pos] == '\n') { st = duet_fail(err, DUET_ERR_FORMAT, "%s: entry %zu: word contains a NUL or newline byte", name, i + 1); goto done; }
            pos++;
        }
        if (pos >= len) { st = duet_fail(err, DUET_ERR_FORMAT, "%s: truncated at entry %zu of %llu (in the word)", name, i + 1, n); goto done; }
        if (pos - w0 > MAX_WORD) { st = duet_fail(err, DUET_ERR_FORMAT, "%s: entry %zu: word longer than %d bytes", name, i + 1, MAX_WORD); goto done; }
        size_t wl = pos - w0;
        if (wl == 0) { st = duet_fail(err, DUET_ERR_FORMAT, "%s: entry %zu: empty word", name, i + 1); goto done; }
        pos++; /* the space */
        if (len - pos < 4 * b.dim) { st = duet_fail(err, DUET_ERR_FORMAT, "%s: truncated at entry %zu of %llu ('%.*s'): %zu of %zu vector bytes", name, i + 1, n, (int)(wl > 64 ? 64 : wl), buf + w0, len - pos, 4 * b.dim); goto done; }
        memcpy(row, buf + pos, 4 * b.dim);
        pos += 4 * b.dim;
        for (size_t j = 0; j < b.dim; j++)
            if (!isfinite(row[j])) { st = duet_fail(err, DUET_ERR_NONFINITE, "%s: entry %zu ('%.*s'): value %zu is not finite", name, i + 1, (int)(wl > 64 ? 64 : wl), buf + w0, j + 1); goto done; }
        if (!builder_add(&b, buf + w0, wl, row)) { st = duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", name); goto done; }
    }
    while (pos < len && (buf[pos] == '\n' || buf[pos] == ' ')) pos++;
    if (pos != len) { st = duet_fail(err, DUET_ERR_SHAPE, "%s: %zu bytes after the %llu entries the header announces", name, len - pos, n); goto done; }
done:
    free(row);
    if (st) { builder_free(&b); return st; }
    return builder_finish(&b, "word2vec-bin", name, out, err);
}

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
    if (w->dim < 1 || w->dim > MAX_DIM) return wk_fail(w, DUET_ERR_FORMAT, "field 'dimensions' missing before 'vectors' or out of range%s", "");
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
        if (l == 0 || l > MAX_WORD || memchr(k, '\0', l)) return wk_fail(w, DUET_ERR_FORMAT, "'vectors' has an empty, NUL-holding or over-long word%s", "");
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

static duet_status wink_file(const char *path, duet_vectors **out, duet_error *err) {
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

/* ------------------------------------------------------------ duet file */

static size_t vocab_slots(size_t bytes) { return (bytes + 3) / 4; }

duet_status duet_vectors_save(const duet_vectors *v, const char *path, duet_error *err) {
    size_t bl = 0;
    for (size_t i = 0; i < v->n; i++) bl += strlen(v->vocab.word[i]) + 1;
    size_t slots = vocab_slots(bl);
    char *blob = calloc(slots ? slots : 1, 4);
    if (!blob) return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    size_t o = 0;
    for (size_t i = 0; i < v->n; i++) { size_t l = strlen(v->vocab.word[i]) + 1; memcpy(blob + o, v->vocab.word[i], l); o += l; }
    json_t *h = json_pack("{s:s, s:I, s:I, s:I, s:s, s:s}", "kind", "duet word vectors",
                          "n_words", (json_int_t)v->n, "dim", (json_int_t)v->dim,
                          "vocab_bytes", (json_int_t)bl, "format",
                          v->source_format ? v->source_format : "?", "tokenizer", "letters-v1");
    char *hs = h ? json_dumps(h, JSON_PRESERVE_ORDER) : NULL;
    json_decref(h);
    if (!hs) { free(blob); return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path); }
    duet_tf_array arr[2] = {{"vocab_utf8", (const float *)(const void *)blob, slots},
                            {"vectors", v->vec, v->n * v->dim}};
    duet_status st = duet_tf_write(path, VEC_MAGIC, DUET_VECTORS_FORMAT_VERSION, hs, arr, 2, err);
    free(hs); free(blob);
    return st;
}

static long long hdr_int(const duet_tf_file *tf, const char *k) {
    json_t *x = json_object_get((json_t *)tf->header, k);
    return json_is_integer(x) ? (long long)json_integer_value(x) : -1;
}

duet_status duet_vectors_parse_file(char *buf, size_t len, const char *name,
                                    duet_vectors **out, duet_error *err) {
    *out = NULL;
    duet_vectors *v = calloc(1, sizeof *v);
    if (!v) { free(buf); return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", name); }
    duet_status st = duet_tf_parse(buf, len, name, VEC_MAGIC, DUET_VECTORS_FORMAT_VERSION, "vectors", &v->tf, err);
    if (st) { free(v); return st; }
    long long n = hdr_int(&v->tf, "n_words"), d = hdr_int(&v->tf, "dim"), bl = hdr_int(&v->tf, "vocab_bytes");
    size_t cnt;
    if (n < 1 || d < 1 || d > MAX_DIM || bl < n || !duet_mul_size((size_t)n, (size_t)d, &cnt)) {
        duet_vectors_free(v);
        return duet_fail(err, DUET_ERR_FORMAT, "%s: header fields n_words, dim, vocab_bytes missing or out of range", name);
    }
    const float *blob = duet_tf_array_get(&v->tf, name, "vocab_utf8", vocab_slots((size_t)bl), NULL, err);
    const float *vec = blob ? duet_tf_array_get(&v->tf, name, "vectors", cnt, NULL, err) : NULL;
    if (!vec) { st = err ? err->status : DUET_ERR_FORMAT; duet_vectors_free(v); return st; }
    v->n = (size_t)n; v->dim = (size_t)d;
    v->vec = (float *)vec;
    json_t *f = json_object_get((json_t *)v->tf.header, "format");
    v->source_format = duet_strdup(json_is_string(f) ? json_string_value(f) : "duet");
    st = duet_vocab_build(&v->vocab, (const char *)(const void *)blob, (size_t)bl, v->n, 0, name, err);
    if (st) { duet_vectors_free(v); return st; }
    for (size_t i = 0; i < cnt; i++)
        if (!isfinite(vec[i])) {
            duet_vectors_free(v);
            return duet_fail(err, DUET_ERR_NONFINITE, "%s: vectors: row %zu, column %zu is not finite", name, i / (size_t)d, i % (size_t)d);
        }
    *out = v;
    return DUET_OK;
}

/* Maps the file and reads the tensor-file layout itself (core's reader
 * copies the whole file into memory; mapping avoids the copy: loading
 * GloVe-6B-100d takes a fraction of a second). Same checks as duet_tf_parse. */
duet_status duet_vectors_load(const char *path, duet_vectors **out, duet_error *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return duet_fail(err, DUET_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) { close(fd); return duet_fail(err, DUET_ERR_IO, "%s: %s", path, strerror(errno)); }
    size_t len = (size_t)sb.st_size;
    if (len < 24) { close(fd); return duet_fail(err, DUET_ERR_FORMAT, "%s: not a duet vectors file (bad magic)", path); }
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return duet_fail(err, DUET_ERR_IO, "%s: mmap: %s", path, strerror(errno));
    const char *b = map;
    duet_vectors *v = calloc(1, sizeof *v);
    json_t *h = NULL;
    duet_status st = DUET_OK;
    uint32_t ver; uint64_t hlen;
    memcpy(&ver, b + 8, 4); memcpy(&hlen, b + 16, 8);
    if (!v) { st = duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path); goto fail; }
    v->map = map; v->map_len = len;
    if (memcmp(b, VEC_MAGIC, 8) != 0) { st = duet_fail(err, DUET_ERR_FORMAT, "%s: not a duet vectors file (bad magic)", path); goto fail; }
    if (ver != DUET_VECTORS_FORMAT_VERSION) { st = duet_fail(err, DUET_ERR_VERSION, "%s: vectors format version %u, this duet reads version %u", path, ver, DUET_VECTORS_FORMAT_VERSION); goto fail; }
    if (hlen > (64u << 20) || hlen > len - 24 || (24 + hlen) % 64 != 0) { st = duet_fail(err, DUET_ERR_FORMAT, "%s: truncated or corrupt header", path); goto fail; }
    json_error_t je;
    h = json_loadb(b + 24, (size_t)hlen, 0, &je);
    if (!json_is_object(h)) { st = duet_fail(err, DUET_ERR_FORMAT, "%s: header JSON: %s", path, je.text); goto fail; }
    json_t *ns = json_object_get(h, "n_words"), *ds = json_object_get(h, "dim"), *bs = json_object_get(h, "vocab_bytes"), *tab = json_object_get(h, "arrays");
    long long n = json_is_integer(ns) ? json_integer_value(ns) : -1, d = json_is_integer(ds) ? json_integer_value(ds) : -1, bl = json_is_integer(bs) ? json_integer_value(bs) : -1;
    size_t cnt;
    if (n < 1 || d < 1 || d > MAX_DIM || bl < n || !duet_mul_size((size_t)n, (size_t)d, &cnt) || !json_is_array(tab) || json_array_size(tab) != 2) {
        st = duet_fail(err, DUET_ERR_FORMAT, "%s: header fields n_words, dim, vocab_bytes, arrays missing or out of range", path); goto fail;
    }
    size_t want[2] = {vocab_slots((size_t)bl), cnt}, off = 24 + (size_t)hlen;
    const char *names[2] = {"vocab_utf8", "vectors"};
    for (int i = 0; i < 2; i++) {
        json_t *a = json_array_get(tab, (size_t)i), *nm = json_object_get(a, "name"), *ct = json_object_get(a, "count");
        if (!json_is_string(nm) || strcmp(json_string_value(nm), names[i]) != 0 || !json_is_integer(ct) || (size_t)json_integer_value(ct) != want[i]) {
            st = duet_fail(err, DUET_ERR_SHAPE, "%s: array %d should be '%s' of %zu floats", path, i, names[i], want[i]); goto fail;
        }
    }
    if (len - off != 4 * (want[0] + want[1])) { st = duet_fail(err, DUET_ERR_FORMAT, "%s: truncated or padded: %zu data bytes, the header needs %zu", path, len - off, 4 * (want[0] + want[1])); goto fail; }
    v->n = (size_t)n; v->dim = (size_t)d;
    v->vec = (float *)(void *)(b + off + 4 * want[0]);
    json_t *f = json_object_get(h, "format");
    v->source_format = duet_strdup(json_is_string(f) ? json_string_value(f) : "duet");
    if ((st = duet_vocab_build(&v->vocab, b + off, (size_t)bl, v->n, 0, path, err))) goto fail;
    for (size_t i = 0; i < cnt; i++)
        if (!isfinite(v->vec[i])) { st = duet_fail(err, DUET_ERR_NONFINITE, "%s: vectors: row %zu ('%s'), column %zu is not finite", path, i / (size_t)d, v->vocab.word[i / (size_t)d], i % (size_t)d); goto fail; }
    json_decref(h);
    *out = v;
    return DUET_OK;
fail:
    json_decref(h);
    if (v) duet_vectors_free(v); else munmap(map, len);
    return st;
}

/* ------------------------------------------------------------ import */

typedef struct mapped { void *p; size_t len; } mapped;

static duet_status map_file(const char *path, mapped *m, duet_error *err) {
    m->p = NULL; m->len = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return duet_fail(err, DUET_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) { close(fd); return duet_fail(err, DUET_ERR_IO, "%s: %s", path, strerror(errno)); }
    m->len = (size_t)sb.st_size;
    if (m->len == 0) { close(fd); return duet_fail(err, DUET_ERR_EMPTY, "%s: empty file", path); }
    m->p = mmap(NULL, m->len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m->p == MAP_FAILED) { m->p = NULL; return duet_fail(err, DUET_ERR_IO, "%s: mmap: %s", path, strerror(errno)); }
    return DUET_OK;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static duet_vec_format guess(const char *path, const char *p, size_t len) {
    if (len >= 8 && memcmp(p, VEC_MAGIC, 8) == 0) return DUET_VEC_DUET;
    if (ends_with(path, ".json")) return DUET_VEC_WINK;
    size_t i = 0;
    while (i < len && (p[i] == ' ' || p[i] == '\n' || p[i] == '\r' || p[i] == '\t')) i++;
    if (i < len && p[i] == '{') return DUET_VEC_WINK;
    if (ends_with(path, ".bin")) return DUET_VEC_W2V_BIN;
    char first[128];
    size_t l = 0;
    while (l < len && l < sizeof first - 1 && p[l] != '\n') { first[l] = p[l]; l++; }
    first[l] = '\0';
    unsigned long long a, b; char extra;
    if (sscanf(first, "%llu %llu %c", &a, &b, &extra) == 2) return DUET_VEC_W2V_TEXT;
    return DUET_VEC_GLOVE;
}

duet_status duet_vectors_import(const char *path, duet_vec_format fmt,
                                duet_vectors **out, duet_error *err) {
    *out = NULL;
    if (fmt == DUET_VEC_DUET) return duet_vectors_load(path, out, err);
    if (fmt == DUET_VEC_WINK) return wink_file(path, out, err);
    mapped m;
    duet_status st = map_file(path, &m, err);
    if (st) return st;
    if (fmt == DUET_VEC_AUTO) fmt = guess(path, m.p, m.len);
    switch (fmt) {
    case DUET_VEC_DUET: munmap(m.p, m.len); return duet_vectors_load(path, out, err);
    case DUET_VEC_WINK: munmap(m.p, m.len); return wink_file(path, out, err);
    case DUET_VEC_W2V_BIN: st = duet_vectors_parse_w2v_bin(m.p, m.len, path, out, err); break;
    case DUET_VEC_W2V_TEXT: st = duet_vectors_parse_text(m.p, m.len, 1, "word2vec-text", path, out, err); break;
    case DUET_VEC_FASTTEXT: st = duet_vectors_parse_text(m.p, m.len, 1, "fasttext", path, out, err); break;
    default: st = duet_vectors_parse_text(m.p, m.len, 0, "glove", path, out, err); break;
    }
    munmap(m.p, m.len);
    return st;
}

duet_status duet_vectors_restrict(duet_vectors *v, const duet_dataset *d, duet_error *err) {
    unsigned char *keep = calloc(v->n ? v->n : 1, 1);
    if (!keep) return duet_fail(err, DUET_ERR_NOMEM, "restrict: out of memory");
    duet_tokens t = {0};
    duet_status st = DUET_OK;
    for (size_t c = 0; c < d->n_captions && !st; c++) {
        st = duet_tokenize(d->captions[c], strlen(d->captions[c]), &t, err);
        for (size_t i = 0; !st && i < t.n; i++) {
            long r = duet_vocab_find(&v->vocab, t.tok[i]);
            if (r >= 0) keep[r] = 1;
        }
    }
    duet_tokens_free(&t);
    size_t n = 0, bl = 0;
    for (size_t i = 0; i < v->n; i++) if (keep[i]) { n++; bl += strlen(v->vocab.word[i]) + 1; }
    if (!st && n == 0) st = duet_fail(err, DUET_ERR_EMPTY, "restrict: no word of %s has a vector", d->source ? d->source : "the dataset");
    if (st) { free(keep); return st; }
    float *vec = duet_alloc_array(n, v->dim * sizeof(float));
    char *blob = malloc(bl);
    if (!vec || !blob) { free(vec); free(blob); free(keep); return duet_fail(err, DUET_ERR_NOMEM, "restrict: out of memory"); }
    size_t r = 0, o = 0;
    for (size_t i = 0; i < v->n; i++) {
        if (!keep[i]) continue;
        size_t l = strlen(v->vocab.word[i]) + 1;
        memcpy(blob + o, v->vocab.word[i], l); o += l;
        memcpy(vec + r * v->dim, v->vec + i * v->dim, v->dim * sizeof(float));
        r++;
    }
    free(keep);
    duet_vocab nv;
    st = duet_vocab_build(&nv, blob, bl, n, 0, "restrict", err);
    if (st) { free(vec); free(blob); return st; }
    nv.blob = blob;
    duet_vocab_free(&v->vocab);
    v->vocab = nv;
    free(v->own);
    duet_tf_free(&v->tf);
    v->own = v->vec = vec;
    v->n = n;
    return DUET_OK;
}
