/* index.c -- the gallery index file: a duet tensor file (core.h) "DUETINDX"
 * whose JSON header holds the shapes and provenance, and whose arrays hold
 * the embeddings and the names/texts as NUL-terminated UTF-8 bytes. Opened
 * memory-mapped, the embeddings are used in place; names are indexed with
 * one pass over the bytes and a hash table for /images/NAME lookups. */
#define _POSIX_C_SOURCE 200809L
#include "search/search.h"
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char INDEX_MAGIC[8] = {'D', 'U', 'E', 'T', 'I', 'N', 'D', 'X'};

/* Header fields of the provenance; precision and isa are absent from
 * indexes written before them (read as NULL). */
static const char *const META_KEYS[DUET_INDEX_META] = {"model", "model_hash", "text_model", "text_model_hash",
                                                 "image_model", "image_root", "precision", "isa"};

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) { h ^= (unsigned char)*s; h *= 1099511628211ULL; }
    return h;
}

/* Packs n strings (borrowed) NUL-terminated and zero-padded to 4 bytes into
 * a new buffer (caller frees); *bytes = unpadded length. */
static char *pack_texts(const char *const *t, size_t n, const char *what, size_t *bytes,
                        size_t *floats, duet_error *err) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = t[i] ? strlen(t[i]) : 0;
        if (!t[i] || l > DUET_INDEX_MAX_TEXT || !duet_utf8_valid(t[i], l)) {
            duet_fail(err, DUET_ERR_INVALID_ARG, "index: %s %zu is missing, longer than %d bytes "
                      "or not valid UTF-8", what, i, DUET_INDEX_MAX_TEXT);
            return NULL;
        }
        if (!duet_add_size(total, l + 1, &total)) {
            duet_fail(err, DUET_ERR_NOMEM, "index: %s overflow", what);
            return NULL;
        }
    }
    size_t padded = (total + 3) / 4 * 4;
    char *buf = calloc(padded ? padded : 4, 1);
    if (!buf) { duet_fail(err, DUET_ERR_NOMEM, "index: out of memory for %s", what); return NULL; }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(t[i]);
        memcpy(buf + o, t[i], l + 1);
        o += l + 1;
    }
    *bytes = total;
    *floats = padded / 4;
    return buf;
}

/* Declared in search.h. */
duet_status duet_index_build_hash(duet_index *ix, const char *path, duet_error *err) {
    size_t n = ix->n[0], cap = 16;
    while (cap < 2 * n) cap *= 2;
    ix->hash = calloc(cap, sizeof *ix->hash);
    if (!ix->hash) return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory for the name table", path);
    ix->hcap = cap;
    for (size_t i = 0; i < n; i++) {
        size_t h = (size_t)fnv1a(ix->text[0][i]) & (cap - 1);
        while (ix->hash[h]) {
            if (strcmp(ix->text[0][ix->hash[h] - 1], ix->text[0][i]) == 0)
                return duet_fail(err, path ? DUET_ERR_FORMAT : DUET_ERR_INVALID_ARG,
                                 "%s: image name '%s' appears twice (rows %zu and %zu)",
                                 path ? path : "index", ix->text[0][i], ix->hash[h] - 1, i);
            h = (h + 1) & (cap - 1);
        }
        ix->hash[h] = i + 1;
    }
    return DUET_OK;
}

/* Declared in search.h: names must be unique, checked with the same table
 * the reader builds. */
duet_status duet_index_check_names(const duet_index_rows *rows, const char *path, duet_error *err) {
    duet_index chk = {0};
    chk.n[0] = rows->n_images;
    chk.text[0] = (const char **)rows->image_names;
    for (size_t i = 0; i < rows->n_images; i++)
        if (!rows->image_names[i] || !rows->image_names[i][0])
            return duet_fail(err, DUET_ERR_INVALID_ARG, "%s: image name %zu is empty", path, i);
    duet_status st = duet_index_build_hash(&chk, NULL, err);
    free(chk.hash);
    return st;
}

/* meta, rows: borrowed. */
duet_status duet_index_write(const char *path, const duet_index_meta *meta,
                             const duet_index_rows *rows, duet_error *err) {
    return duet_index_write_ex(path, meta, rows, NULL, NULL, err);
}

/* Declared in search.h. */
duet_status duet_index_write_ex(const char *path, const duet_index_meta *meta, const duet_index_rows *rows,
                                const void *extra, uint32_t *crc, duet_error *err) {
    if (!rows || !rows->dim || !rows->n_images || !rows->image_emb || !rows->image_names)
        return duet_fail(err, DUET_ERR_EMPTY, "%s: an index needs at least one image row", path);
    if (rows->n_images > DUET_INDEX_MAX_ROWS || rows->n_captions > DUET_INDEX_MAX_ROWS)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "%s: more than %zu rows", path, DUET_INDEX_MAX_ROWS);
    if (rows->n_captions && (!rows->caption_emb || !rows->caption_texts))
        return duet_fail(err, DUET_ERR_INVALID_ARG, "%s: captions need embeddings and texts", path);
    size_t ni, nc;
    if (!duet_mul_size(rows->n_images, rows->dim, &ni) || !duet_mul_size(rows->n_captions, rows->dim, &nc))
        return duet_fail(err, DUET_ERR_NOMEM, "%s: sizes overflow", path);
    duet_mat im = {(float *)rows->image_emb, rows->n_images, rows->dim};
    duet_mat cm = {(float *)rows->caption_emb, rows->n_captions, rows->dim};
    duet_status st;
    if ((st = duet_mat_check_finite(&im, "index image embeddings", err))) return st;
    if (nc && (st = duet_mat_check_finite(&cm, "index caption embeddings", err))) return st;
    if ((st = duet_index_check_names(rows, path, err))) return st;
    size_t nb_bytes = 0, nb_f = 0, cb_bytes = 0, cb_f = 0;
    char *nb = pack_texts(rows->image_names, rows->n_images, "image name", &nb_bytes, &nb_f, err);
    if (!nb) return err ? err->status : DUET_ERR_INVALID_ARG;
    char *cb = pack_texts(rows->caption_texts, rows->n_captions, "caption", &cb_bytes, &cb_f, err);
    if (!cb) { free(nb); return err ? err->status : DUET_ERR_INVALID_ARG; }
    json_t *h = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "kind", "duet-index",
                          "duet_version", DUET_VERSION_STRING, "dim", (json_int_t)rows->dim,
                          "n_images", (json_int_t)rows->n_images,
                          "n_captions", (json_int_t)rows->n_captions,
                          "image_names_bytes", (json_int_t)nb_bytes,
                          "caption_texts_bytes", (json_int_t)cb_bytes);
    const char *mv[DUET_INDEX_META] = {0};
    if (meta) {
        mv[0] = meta->model; mv[1] = meta->model_hash; mv[2] = meta->text_model;
        mv[3] = meta->text_model_hash; mv[4] = meta->image_model; mv[5] = meta->image_root;
        mv[6] = meta->precision;
    }
    mv[7] = duet_cpu_isa();   /* where the embeddings were computed */
    for (int i = 0; h && i < DUET_INDEX_META; i++)
        json_object_set_new(h, META_KEYS[i], mv[i] ? json_string(mv[i]) : json_null());
    if (h && extra) json_object_update(h, (json_t *)extra);
    char *hdr = h ? json_dumps(h, JSON_PRESERVE_ORDER) : NULL;
    json_decref(h);
    if (!hdr) { free(nb); free(cb); return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path); }
    duet_tf_array arrays[4] = {{"image_emb", rows->image_emb, ni},
                               {"caption_emb", rows->caption_emb, nc},
                               {"image_names_utf8", (const float *)(void *)nb, nb_f},
                               {"caption_texts_utf8", (const float *)(void *)cb, cb_f}};
    st = duet_tf_write_sum(path, INDEX_MAGIC, DUET_INDEX_FORMAT_VERSION, hdr, arrays, 4, crc, err);
    free(hdr); free(nb); free(cb);
    return st;
}

void duet_index_free(duet_index *ix) {
    if (!ix) return;
    duet_tf_free(&ix->tf);
    for (int s = 0; s < 2; s++) free(ix->own_emb[s]);
    free(ix->own_text);
    if (ix->map) munmap(ix->map, ix->map_len);
    for (int s = 0; s < 2; s++) free(ix->text[s]);
    for (int i = 0; i < DUET_INDEX_META; i++) free(ix->meta[i]);
    free(ix->hash);
    free(ix->shard_file);
    free(ix);
}

static duet_status get_count(json_t *h, const char *path, const char *key, size_t max,
                             size_t *out, duet_error *err) {
    json_t *v = json_object_get(h, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (unsigned long long)json_integer_value(v) > max)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: header field '%s' is missing, not an integer "
                         "or outside 0..%zu", path, key, max);
    *out = (size_t)json_integer_value(v);
    return DUET_OK;
}

/* Splits the byte array `name` into n strings (views into the file). */
static duet_status read_texts(duet_index *ix, int side, const char *path, const char *name,
                              size_t bytes, duet_error *err) {
    size_t n = ix->n[side], floats = (bytes + 3) / 4, got;
    const char *b = (const char *)(const void *)duet_tf_array_get(&ix->tf, path, name, 0, &got, err);
    if (!b) return err ? err->status : DUET_ERR_FORMAT;
    if (got != floats)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: array '%s' holds %zu floats, %zu bytes need %zu",
                         path, name, got, bytes, floats);
    ix->text[side] = duet_alloc_array(n, sizeof(char *));
    if (!ix->text[side]) return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const char *z = o < bytes ? memchr(b + o, '\0', bytes - o) : NULL;
        if (!z)
            return duet_fail(err, DUET_ERR_FORMAT, "%s: '%s' ends after %zu of %zu strings", path, name, i, n);
        size_t l = (size_t)(z - (b + o));
        if (l > DUET_INDEX_MAX_TEXT || !duet_utf8_valid(b + o, l) || (side == 0 && l == 0))
            return duet_fail(err, DUET_ERR_FORMAT, "%s: '%s' string %zu is empty, too long or not valid UTF-8",
                             path, name, i);
        ix->text[side][i] = b + o;
        o += l + 1;
    }
    if (o != bytes)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: '%s' holds %zu bytes after its %zu strings", path, name,
                         bytes - o, n);
    for (size_t i = bytes; i < floats * 4; i++)
        if (b[i]) return duet_fail(err, DUET_ERR_FORMAT, "%s: '%s' padding is not zero", path, name);
    return DUET_OK;
}

static duet_status from_tf(duet_index *ix, const char *path, duet_error *err) {
    json_t *h = ix->tf.header;
    const char *kind = json_string_value(json_object_get(h, "kind"));
    if (!kind || strcmp(kind, "duet-index") != 0)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: header field 'kind' is not \"duet-index\"", path);
    size_t nb = 0, cb = 0;
    duet_status st;
    if ((st = get_count(h, path, "dim", 1 << 20, &ix->dim, err)) ||
        (st = get_count(h, path, "n_images", DUET_INDEX_MAX_ROWS, &ix->n[0], err)) ||
        (st = get_count(h, path, "n_captions", DUET_INDEX_MAX_ROWS, &ix->n[1], err)) ||
        (st = get_count(h, path, "image_names_bytes", ix->tf.len, &nb, err)) ||
        (st = get_count(h, path, "caption_texts_bytes", ix->tf.len, &cb, err)))
        return st;
    if (ix->dim == 0 || ix->n[0] == 0)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: header says dim %zu, %zu images (need >= 1)", path,
                         ix->dim, ix->n[0]);
    for (int i = 0; i < DUET_INDEX_META; i++) {
        json_t *v = json_object_get(h, META_KEYS[i]);
        if (v && !json_is_null(v) && !json_is_string(v))
            return duet_fail(err, DUET_ERR_FORMAT, "%s: header field '%s' is not a string", path, META_KEYS[i]);
        if (json_is_string(v) && !(ix->meta[i] = duet_strdup(json_string_value(v))))
            return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    }
    const char *names[2] = {"image_emb", "caption_emb"};
    for (int s = 0; s < 2; s++) {
        size_t cnt;
        if (!duet_mul_size(ix->n[s], ix->dim, &cnt))
            return duet_fail(err, DUET_ERR_FORMAT, "%s: %zu x %zu overflows", path, ix->n[s], ix->dim);
        ix->emb[s] = duet_tf_array_get(&ix->tf, path, names[s], cnt, NULL, err);
        if (!ix->emb[s]) return err ? err->status : DUET_ERR_FORMAT;
    }
    if ((st = read_texts(ix, 0, path, "image_names_utf8", nb, err)) ||
        (st = read_texts(ix, 1, path, "caption_texts_utf8", cb, err)))
        return st;
    return duet_index_build_hash(ix, path, err);
}

/* After the file is read (st): its fields, then *out = ix, or ix freed. */
static duet_status finish(duet_index *ix, const char *path, duet_status st, duet_index **out, duet_error *err) {
    if (!st) st = from_tf(ix, path, err);
    if (st) { duet_index_free(ix); return st; }
    ix->verified = ix->tf.checksum;
    ix->n_shards = ix->my_shards = 1;
    ix->total[0] = ix->n[0];
    ix->total[1] = ix->n[1];
    *out = ix;
    return DUET_OK;
}

duet_status duet_index_open(const char *path, int use_mmap, duet_index **out, duet_error *err) {
    *out = NULL;
    if (duet_index_is_manifest(path)) return duet_index_open_shards(path, 0, (size_t)-1, use_mmap, out, err);
    return duet_index_open_file(path, use_mmap, out, err);
}

/* Declared in search.h. */
duet_status duet_index_open_file(const char *path, int use_mmap, duet_index **out, duet_error *err) {
    *out = NULL;
    duet_index *ix = calloc(1, sizeof *ix);
    if (!ix) return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    duet_status st;
    if (use_mmap) {
        int fd = open(path, O_RDONLY);
        if (fd < 0) { free(ix); return duet_fail(err, DUET_ERR_IO, "%s: cannot open", path); }
        struct stat sb;
        if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size <= 0) {
            close(fd); free(ix);
            return duet_fail(err, DUET_ERR_FORMAT, "%s: not a regular non-empty file", path);
        }
        ix->map_len = (size_t)sb.st_size;
        ix->map = mmap(NULL, ix->map_len, PROT_READ, MAP_SHARED, fd, 0);
        close(fd);
        if (ix->map == MAP_FAILED) {
            free(ix);
            return duet_fail(err, DUET_ERR_IO, "%s: mmap of %zu bytes failed", path, (size_t)sb.st_size);
        }
        st = duet_tf_parse_view(ix->map, ix->map_len, path, INDEX_MAGIC, DUET_INDEX_FORMAT_VERSION,
                                "index", &ix->tf, err);
    } else {
        st = duet_tf_read(path, INDEX_MAGIC, DUET_INDEX_FORMAT_VERSION, "index", &ix->tf, err);
    }
    return finish(ix, path, st, out, err);
}

/* Declared in search.h. */
duet_status duet_index_parse(char *buf, size_t len, const char *name, duet_index **out, duet_error *err) {
    *out = NULL;
    duet_index *ix = calloc(1, sizeof *ix);
    if (!ix) { free(buf); return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", name); }
    duet_status st = duet_tf_parse(buf, len, name, INDEX_MAGIC, DUET_INDEX_FORMAT_VERSION, "index", &ix->tf, err);
    return finish(ix, name, st, out, err);
}

int duet_index_verified(const duet_index *ix) { return ix->verified; }

size_t duet_index_dim(const duet_index *ix) { return ix->dim; }
size_t duet_index_count(const duet_index *ix, int side) { return ix->n[side ? 1 : 0]; }

duet_mat duet_index_embeddings(const duet_index *ix, int side) {
    int s = side ? 1 : 0;
    return (duet_mat){(float *)ix->emb[s], ix->n[s], ix->dim};
}

const char *duet_index_text(const duet_index *ix, int side, size_t i) {
    int s = side ? 1 : 0;
    return i < ix->n[s] ? ix->text[s][i] : NULL;
}

size_t duet_index_find_image(const duet_index *ix, const char *name) {
    if (!name || !ix->hcap) return (size_t)-1;
    size_t h = (size_t)fnv1a(name) & (ix->hcap - 1);
    while (ix->hash[h]) {
        if (strcmp(ix->text[0][ix->hash[h] - 1], name) == 0) return ix->hash[h] - 1;
        h = (h + 1) & (ix->hcap - 1);
    }
    return (size_t)-1;
}

duet_index_meta duet_index_meta_of(const duet_index *ix) {
    return (duet_index_meta){ix->meta[0], ix->meta[1], ix->meta[2], ix->meta[3],
                             ix->meta[4], ix->meta[5], ix->meta[6], ix->meta[7]};
}
