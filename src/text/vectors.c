/* vectors.c -- word vectors: the object and its accessors, the format
 * names, import (guessing the format, then one parser) and
 * duet_vectors_restrict. The parsers: vectors_text.c (GloVe, word2vec text
 * and binary, fastText .vec), vectors_wink.c (wink JSON via yajl,
 * streaming), vectors_file.c (duet's vectors file). */
#define _POSIX_C_SOURCE 200809L
#include "text.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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
    if (len >= 8 && memcmp(p, duet_vec_magic, 8) == 0) return DUET_VEC_DUET;
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
    if (fmt == DUET_VEC_WINK) return duet_vectors_read_wink(path, out, err);
    mapped m;
    duet_status st = map_file(path, &m, err);
    if (st) return st;
    if (fmt == DUET_VEC_AUTO) fmt = guess(path, m.p, m.len);
    switch (fmt) {
    case DUET_VEC_DUET: munmap(m.p, m.len); return duet_vectors_load(path, out, err);
    case DUET_VEC_WINK: munmap(m.p, m.len); return duet_vectors_read_wink(path, out, err);
    case DUET_VEC_W2V_BIN: st = duet_vectors_parse_w2v_bin(m.p, m.len, path, out, err); break;
    case DUET_VEC_W2V_TEXT: st = duet_vectors_parse_text(m.p, m.len, 1, "word2vec-text", path, out, err); break;
    case DUET_VEC_FASTTEXT: st = duet_vectors_parse_text(m.p, m.len, 1, "fasttext", path, out, err); break;
    default: st = duet_vectors_parse_text(m.p, m.len, 0, "glove", path, out, err); break;
    }
    munmap(m.p, m.len);
    return st;
}

/* ------------------------------------------------------------ restrict */

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
