/* shard.c -- a gallery index in S shard files plus a manifest
 * (docs/SCALE.md). Shard i is an ordinary index file (DUETINDX) holding the
 * contiguous image rows [N i / S, N (i+1) / S) and caption rows likewise,
 * named PATH.<i+1>-of-<S> beside the manifest PATH: a tensor file
 * "DUETSHRD" whose header lists every shard's file name, rows, first rows
 * and CRC-32C (so a shard of another build is refused). The manifest is
 * written last, atomically, after every shard. Opening shards [first,
 * first + count) gives one index of their rows in order (one shard: the
 * shard file itself, memory-mapped; several: copied into memory), whose
 * row i is the gallery's row offset + i. */
#define _POSIX_C_SOURCE 200809L
#include "search/search.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define MANIFEST_VERSION 1
#define MAX_SHARDS 65536
static const char MANIFEST_MAGIC[8] = {'D', 'U', 'E', 'T', 'S', 'H', 'R', 'D'};

int duet_index_is_manifest(const char *path) {
    FILE *f = fopen(path, "rb");
    char m[8];
    size_t got = f ? fread(m, 1, 8, f) : 0;
    if (f) fclose(f);
    return got == 8 && memcmp(m, MANIFEST_MAGIC, 8) == 0;
}

size_t duet_index_shards(const duet_index *ix) { return ix->n_shards; }
size_t duet_index_offset(const duet_index *ix, int side) { return ix->offset[side ? 1 : 0]; }
size_t duet_index_total(const duet_index *ix, int side) { return ix->total[side ? 1 : 0]; }

/* dir of path (with its '/') + name into out[n]. */
static void beside(const char *path, const char *name, char *out, size_t n) {
    const char *sl = strrchr(path, '/');
    int dl = sl ? (int)(sl - path + 1) : 0;
    snprintf(out, n, "%.*s%s", dl, path, name);
}

duet_status duet_index_write_sharded(const char *path, const duet_index_meta *meta, const duet_index_rows *rows,
                                     size_t shards, duet_error *err) {
    if (!rows || !rows->n_images || !rows->image_names)
        return duet_fail(err, DUET_ERR_EMPTY, "%s: an index needs at least one image row", path);
    if (shards < 1 || shards > rows->n_images || shards > MAX_SHARDS)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "%s: %zu shards for %zu images (1 to min(images, %d))", path,
                         shards, rows->n_images, MAX_SHARDS);
    /* names unique over the whole gallery, not only within each shard */
    duet_status st = duet_index_check_names(rows, path, err);
    if (st) return st;
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    json_t *list = json_array();
    for (size_t i = 0; !st && i < shards; i++) {
        size_t i0 = rows->n_images * i / shards, i1 = rows->n_images * (i + 1) / shards;
        size_t c0 = rows->n_captions * i / shards, c1 = rows->n_captions * (i + 1) / shards;
        duet_index_rows r = {rows->dim, i1 - i0, rows->image_emb ? rows->image_emb + i0 * rows->dim : NULL,
                             rows->image_names + i0, c1 - c0,
                             rows->caption_emb ? rows->caption_emb + c0 * rows->dim : NULL,
                             rows->caption_texts ? rows->caption_texts + c0 : NULL};
        char name[4096], file[8192];
        snprintf(name, sizeof name, "%s.%zu-of-%zu", base, i + 1, shards);
        beside(path, name, file, sizeof file);
        json_t *extra = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "shard", (json_int_t)i, "shards",
                                  (json_int_t)shards, "image_offset", (json_int_t)i0, "caption_offset",
                                  (json_int_t)c0, "gallery_images", (json_int_t)rows->n_images,
                                  "gallery_captions", (json_int_t)rows->n_captions);
        uint32_t crc = 0;
        st = extra ? duet_index_write_ex(file, meta, &r, extra, &crc, err)
                   : duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
        json_decref(extra);
        char hex[16];
        snprintf(hex, sizeof hex, "%08x", crc);
        if (!st) json_array_append_new(list, json_pack("{s:s, s:I, s:I, s:I, s:I, s:s}", "file", name, "images",
                                                       (json_int_t)(i1 - i0), "captions", (json_int_t)(c1 - c0),
                                                       "image_offset", (json_int_t)i0, "caption_offset",
                                                       (json_int_t)c0, "crc32c", hex));
    }
    json_t *h = st ? NULL : json_pack("{s:s, s:s, s:I, s:I, s:I, s:o}", "kind", "duet-index-shards", "duet_version",
                                      DUET_VERSION_STRING, "dim", (json_int_t)rows->dim, "n_images",
                                      (json_int_t)rows->n_images, "n_captions", (json_int_t)rows->n_captions,
                                      "shards", json_incref(list));
    json_decref(list);
    char *hdr = h ? json_dumps(h, JSON_INDENT(1) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(h);
    if (!st && !hdr) st = duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    if (!st) st = duet_tf_write(path, MANIFEST_MAGIC, MANIFEST_VERSION, hdr, NULL, 0, err);
    free(hdr);
    return st;
}

/* One shard of a manifest, as its header lists it. */
typedef struct shard_ent {
    const char *file;
    size_t n[2], off[2];
    unsigned long crc;
} shard_ent;

static size_t json_size(json_t *o, const char *k, int *bad) {
    json_t *v = json_object_get(o, k);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (unsigned long long)json_integer_value(v) > DUET_INDEX_MAX_ROWS) {
        *bad = 1;
        return 0;
    }
    return (size_t)json_integer_value(v);
}

/* Reads the shard table of manifest tf into e[*n] (caller frees; views
 * into tf's header) and checks that the shards tile the gallery. */
static duet_status read_manifest(const duet_tf_file *tf, const char *path, shard_ent **ents, size_t *n,
                                 size_t total[2], size_t *dim, duet_error *err) {
    json_t *h = tf->header, *list = json_object_get(h, "shards");
    const char *kind = json_string_value(json_object_get(h, "kind"));
    int bad = !kind || strcmp(kind, "duet-index-shards") != 0 || !json_is_array(list);
    total[0] = json_size(h, "n_images", &bad);
    total[1] = json_size(h, "n_captions", &bad);
    *dim = json_size(h, "dim", &bad);
    size_t s = json_array_size(list);
    if (bad || s < 1 || s > MAX_SHARDS || *dim < 1)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: not a shard manifest (fields kind, dim, n_images, n_captions, "
                         "shards: 1 to %d entries)", path, MAX_SHARDS);
    shard_ent *e = duet_calloc_array(s, sizeof *e);
    if (!e) return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    size_t next[2] = {0, 0};
    for (size_t i = 0; i < s; i++) {
        json_t *o = json_array_get(list, i);
        e[i].file = json_string_value(json_object_get(o, "file"));
        const char *hex = json_string_value(json_object_get(o, "crc32c"));
        char *end = NULL;
        e[i].crc = hex ? strtoul(hex, &end, 16) : 0;
        e[i].n[0] = json_size(o, "images", &bad);
        e[i].n[1] = json_size(o, "captions", &bad);
        e[i].off[0] = json_size(o, "image_offset", &bad);
        e[i].off[1] = json_size(o, "caption_offset", &bad);
        bad |= !e[i].file || !e[i].file[0] || strchr(e[i].file, '/') || !hex || strlen(hex) != 8 || *end ||
               e[i].n[0] < 1;
        for (int sd = 0; sd < 2 && !bad; sd++) {
            bad |= e[i].off[sd] != next[sd];
            next[sd] += e[i].n[sd];
        }
        if (bad) {
            free(e);
            return duet_fail(err, DUET_ERR_FORMAT, "%s: shard entry %zu is malformed or does not follow the one "
                             "before it (file, images >= 1, captions, offsets, crc32c)", path, i);
        }
    }
    if (next[0] != total[0] || next[1] != total[1]) {
        free(e);
        return duet_fail(err, DUET_ERR_FORMAT, "%s: the shards hold %zu images and %zu captions, the manifest "
                         "says %zu and %zu", path, next[0], next[1], total[0], total[1]);
    }
    *ents = e;
    *n = s;
    return DUET_OK;
}

/* Opens shard e (file beside path) and checks it is the one the manifest
 * lists. */
static duet_status open_one(const char *path, const shard_ent *e, size_t dim, int use_mmap, duet_index **out,
                            duet_error *err) {
    char file[8192];
    beside(path, e->file, file, sizeof file);
    duet_status st = duet_index_open_file(file, use_mmap, out, err);
    if (st) return st;
    duet_index *ix = *out;
    if (!ix->verified || ix->tf.crc != e->crc || ix->dim != dim || ix->n[0] != e->n[0] || ix->n[1] != e->n[1]) {
        duet_index_free(ix);
        *out = NULL;
        return duet_fail(err, DUET_ERR_FORMAT, "%s: not the shard the manifest %s lists (crc32c %08lx, %zu images, "
                         "%zu captions, dim %zu): a shard of another build? Build the index again", file, path,
                         e->crc, e->n[0], e->n[1], dim);
    }
    return DUET_OK;
}

/* The rows of the shards sh[0 .. m) copied into one index. */
static duet_status concat(duet_index **sh, size_t m, const char *path, duet_index **out, duet_error *err) {
    duet_index *ix = calloc(1, sizeof *ix);
    if (!ix) return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    ix->dim = sh[0]->dim;
    size_t bytes = 0;
    int oom = 0;
    for (size_t i = 0; i < m; i++)
        for (int s = 0; s < 2; s++) {
            ix->n[s] += sh[i]->n[s];
            for (size_t r = 0; r < sh[i]->n[s]; r++) bytes += strlen(sh[i]->text[s][r]) + 1;
        }
    for (int s = 0; s < 2; s++) {
        ix->own_emb[s] = duet_alloc_array(ix->n[s], ix->dim * sizeof(float));
        ix->text[s] = duet_alloc_array(ix->n[s], sizeof(char *));
        oom |= !ix->own_emb[s] || !ix->text[s];
        ix->emb[s] = ix->own_emb[s];
    }
    ix->own_text = malloc(bytes ? bytes : 1);
    for (int i = 0; i < DUET_INDEX_META; i++) ix->meta[i] = duet_strdup_or_flag(sh[0]->meta[i], &oom);
    if (oom || !ix->own_text) {
        duet_index_free(ix);
        return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory for %zu + %zu rows of %zu", path, ix->n[0],
                         ix->n[1], ix->dim);
    }
    char *t = ix->own_text;
    ix->verified = 1;
    for (int s = 0; s < 2; s++)
        for (size_t i = 0, row = 0; i < m; i++) {
            if (sh[i]->n[s]) memcpy(ix->own_emb[s] + row * ix->dim, sh[i]->emb[s], sh[i]->n[s] * ix->dim * sizeof(float));
            for (size_t r = 0; r < sh[i]->n[s]; r++, row++) {
                size_t l = strlen(sh[i]->text[s][r]) + 1;
                memcpy(t, sh[i]->text[s][r], l);
                ix->text[s][row] = t;
                t += l;
            }
            ix->verified &= sh[i]->verified;
        }
    duet_status st = duet_index_build_hash(ix, path, err);
    if (st) { duet_index_free(ix); return st; }
    *out = ix;
    return DUET_OK;
}

/* Shards [first, first + count) of the manifest tf (read from path) as
 * duet_index_open_shards; count (size_t)-1: to the last. part/parts
 * (parts > 0): the caller's part of the shards instead. */
static duet_status open_range(const char *path, const duet_tf_file *tf, size_t first, size_t count, size_t part,
                              size_t parts, int use_mmap, duet_index **out, duet_error *err) {
    shard_ent *e = NULL;
    size_t s = 0, total[2], dim;
    duet_status st = read_manifest(tf, path, &e, &s, total, &dim, err);
    if (!st && parts && (part >= parts || parts > s))
        st = duet_fail(err, DUET_ERR_INVALID_ARG, "%s: part %zu of %zu asked of an index of %zu shards (at most "
                       "one part a shard: run with at most %zu processes)", path, part + 1, parts, s, s);
    if (!st && parts) {
        first = s * part / parts;
        count = s * (part + 1) / parts - first;
    }
    if (!st && (first >= s || count == 0))
        st = duet_fail(err, DUET_ERR_INVALID_ARG, "%s: shards from %zu (%zu of them) asked of an index of %zu shards",
                       path, first, count, s);
    if (!st && count > s - first) count = s - first;
    duet_index **sh = st ? NULL : duet_calloc_array(count, sizeof *sh);
    if (!st && !sh) st = duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; !st && i < count; i++)
        st = open_one(path, &e[first + i], dim, count == 1 ? use_mmap : 1, &sh[i], err);
    duet_index *ix = NULL;
    if (!st && count == 1) { ix = sh[0]; sh[0] = NULL; }
    else if (!st) st = concat(sh, count, path, &ix, err);
    if (!st && !(ix->shard_file = duet_strdup(e[first].file))) {
        duet_index_free(ix);
        st = duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    }
    if (!st) {
        ix->n_shards = s;
        ix->first_shard = first;
        ix->my_shards = count;
        for (int sd = 0; sd < 2; sd++) {
            ix->offset[sd] = e[first].off[sd];
            ix->total[sd] = total[sd];
        }
        ix->verified &= tf->checksum;
        *out = ix;
    }
    for (size_t i = 0; sh && i < count; i++) duet_index_free(sh[i]);
    free(sh);
    free(e);
    return st;
}

/* The manifest is read (and its CRC checked) once. */
static duet_status open_manifest(const char *path, size_t first, size_t count, size_t part, size_t parts,
                                 int use_mmap, duet_index **out, duet_error *err) {
    *out = NULL;
    duet_tf_file tf;
    duet_status st = duet_tf_read(path, MANIFEST_MAGIC, MANIFEST_VERSION, "shard manifest", &tf, err);
    if (st) return st;
    st = open_range(path, &tf, first, count, part, parts, use_mmap, out, err);
    duet_tf_free(&tf);
    return st;
}

duet_status duet_index_open_part(const char *path, size_t part, size_t parts, int use_mmap, duet_index **out,
                                 duet_error *err) {
    if (parts < 1) {
        *out = NULL;
        return duet_fail(err, DUET_ERR_INVALID_ARG, "%s: part %zu of 0 parts asked", path, part + 1);
    }
    return open_manifest(path, 0, 0, part, parts, use_mmap, out, err);
}

duet_status duet_index_open_shards(const char *path, size_t first, size_t count, int use_mmap, duet_index **out,
                                   duet_error *err) {
    return open_manifest(path, first, count, 0, 0, use_mmap, out, err);
}
