/* vectors_text.c -- the word-vector text formats (GloVe: "word v1 v2 ..." a
 * line; word2vec text and fastText .vec: the same after an "N D" line) and
 * the word2vec binary format, collected by a growing builder. */
#include "text.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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

/* Turns a builder into vectors (builder emptied). */
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
            if (d < 1 || d > DUET_VEC_MAX_DIM) { st = duet_fail(err, DUET_ERR_FORMAT, "%s:1: header: dimension %llu out of range [1, %d]", name, d, DUET_VEC_MAX_DIM); goto done; }
            if (n < 1 || n > len / (2 * d + 2)) { st = duet_fail(err, DUET_ERR_FORMAT, "%s:1: header: %llu words of %llu values cannot fit a %zu-byte file", name, n, d, len); goto done; }
            want_n = (size_t)n; b.dim = (size_t)d;
            continue;
        }
        size_t wl = 0;
        while (wl < l && ln[wl] != ' ' && ln[wl] != '\t') wl++;
        if (wl == l) { st = duet_fail(err, DUET_ERR_FORMAT, "%s:%zu: a word without values", name, line); goto done; }
        if (wl > DUET_VEC_MAX_WORD) { st = duet_fail(err, DUET_ERR_FORMAT, "%s:%zu: word longer than %d bytes", name, line, DUET_VEC_MAX_WORD); goto done; }
        if (b.dim == 0) { /* GloVe: the first row sets the dimension */
            size_t cnt = 0; int bad;
            float dummy;
            parse_floats(ln + wl, &dummy, 0, &cnt, &bad);
            if (bad) { st = duet_fail(err, DUET_ERR_FORMAT, "%s:%zu: word '%.*s': value %zu is not a number", name, line, (int)(wl > 64 ? 64 : wl), ln, cnt + 1); goto done; }
            if (cnt < 1 || cnt > DUET_VEC_MAX_DIM) { st = duet_fail(err, DUET_ERR_FORMAT, "%s:%zu: %zu values (dimension must be in [1, %d])", name, line, cnt, DUET_VEC_MAX_DIM); goto done; }
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

/* ------------------------------------------------------------ word2vec binary */

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
    if (d < 1 || d > DUET_VEC_MAX_DIM) return duet_fail(err, DUET_ERR_FORMAT, "%s: header: dimension %llu out of range [1, %d]", name, d, DUET_VEC_MAX_DIM);
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
        while (pos < len && buf[pos] != ' ' && pos - w0 <= DUET_VEC_MAX_WORD) {
            if (buf[pos] == '\0' || buf[pos] == '\n') { st = duet_fail(err, DUET_ERR_FORMAT, "%s: entry %zu: word contains a NUL or newline byte", name, i + 1); goto done; }
            pos++;
        }
        if (pos >= len) { st = duet_fail(err, DUET_ERR_FORMAT, "%s: truncated at entry %zu of %llu (in the word)", name, i + 1, n); goto done; }
        if (pos - w0 > DUET_VEC_MAX_WORD) { st = duet_fail(err, DUET_ERR_FORMAT, "%s: entry %zu: word longer than %d bytes", name, i + 1, DUET_VEC_MAX_WORD); goto done; }
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
