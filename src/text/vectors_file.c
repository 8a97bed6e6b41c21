/* vectors_file.c -- duet's own word-vectors file: a tensor file (magic
 * "DUETVECS") holding the vocabulary as packed NUL-terminated UTF-8
 * ("vocab_utf8") and the [n x dim] float32 rows ("vectors"). Save, parse
 * from a buffer, and load by memory-mapping. */
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

/* ------------------------------------------------------------ duet file */

/* The file's magic (declared in text.h: import's format guess reads it). */
const char duet_vec_magic[8] = {'D', 'U', 'E', 'T', 'V', 'E', 'C', 'S'};

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
    duet_status st = duet_tf_write(path, duet_vec_magic, DUET_VECTORS_FORMAT_VERSION, hs, arr, 2, err);
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
    duet_status st = duet_tf_parse(buf, len, name, duet_vec_magic, DUET_VECTORS_FORMAT_VERSION, "vectors", &v->tf, err);
    if (st) { free(v); return st; }
    long long n = hdr_int(&v->tf, "n_words"), d = hdr_int(&v->tf, "dim"), bl = hdr_int(&v->tf, "vocab_bytes");
    size_t cnt;
    if (n < 1 || d < 1 || d > DUET_VEC_MAX_DIM || bl < n || !duet_mul_size((size_t)n, (size_t)d, &cnt)) {
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
    uint64_t hlen;
    memcpy(&hlen, b + 16, 8);
    if (!v) { st = duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path); goto fail; }
    v->map = map; v->map_len = len;
    if (memcmp(b, duet_vec_magic, 8) != 0) { st = duet_fail(err, DUET_ERR_FORMAT, "%s: not a duet vectors file (bad magic)", path); goto fail; }
    int verified; /* version, checksum mark and CRC (core.h); len: the bytes before the CRC */
    if ((st = duet_tf_check(b, len, path, duet_vec_magic, DUET_VECTORS_FORMAT_VERSION, "vectors", &len, &verified, NULL, err))) goto fail;
    if (hlen > (64u << 20) || hlen > len - 24 || (24 + hlen) % 64 != 0) { st = duet_fail(err, DUET_ERR_FORMAT, "%s: truncated or corrupt header", path); goto fail; }
    json_error_t je;
    h = json_loadb(b + 24, (size_t)hlen, 0, &je);
    if (!json_is_object(h)) { st = duet_fail(err, DUET_ERR_FORMAT, "%s: header JSON: %s", path, je.text); goto fail; }
    json_t *ns = json_object_get(h, "n_words"), *ds = json_object_get(h, "dim"), *bs = json_object_get(h, "vocab_bytes"), *tab = json_object_get(h, "arrays");
    long long n = json_is_integer(ns) ? json_integer_value(ns) : -1, d = json_is_integer(ds) ? json_integer_value(ds) : -1, bl = json_is_integer(bs) ? json_integer_value(bs) : -1;
    size_t cnt;
    if (n < 1 || d < 1 || d > DUET_VEC_MAX_DIM || bl < n || !duet_mul_size((size_t)n, (size_t)d, &cnt) || !json_is_array(tab) || json_array_size(tab) != 2) {
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
