/* dataset.c -- the caption dataset object: split names, the builder every
 * parser feeds (builder.h), loading by spec, subsets and checks.
 *
 * The formats live in tsv.c, karpathy.c and flickr8k.c. Each feeds a
 * builder (growable arrays of images and captions plus a name -> image
 * index hash map) and duet_data_builder_finish() turns it into a
 * duet_dataset with the CSR grouping of captions by image. Inputs are
 * (pointer, length) buffers that need not be NUL-terminated; every string
 * stored in a dataset is checked to be valid UTF-8 without NUL bytes. */
#include "data/builder.h"
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- splits */

/* Returns a static string; never NULL. */
const char *duet_split_name(duet_split s) {
    switch (s) {
    case DUET_SPLIT_TRAIN: return "train";
    case DUET_SPLIT_VAL: return "val";
    case DUET_SPLIT_TEST: return "test";
    case DUET_SPLIT_NONE: return "none";
    case DUET_SPLIT_ALL: return "all";
    }
    return "unknown";
}

/* s is borrowed; NULL and unknown names give -1. */
int duet_split_parse(const char *s) {
    static const struct { const char *name; int split; } names[] = {
        {"train", DUET_SPLIT_TRAIN}, {"restval", DUET_SPLIT_TRAIN},
        {"val", DUET_SPLIT_VAL},     {"dev", DUET_SPLIT_VAL},
        {"test", DUET_SPLIT_TEST},   {"all", DUET_SPLIT_ALL},
    };
    if (!s) return -1;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i].name) == 0) return names[i].split;
    return -1;
}

/* -------------------------------------------------------------- text */

/* Length of the UTF-8 sequence led by byte c (0: invalid lead byte), with
 * the payload bits of c in *cp and the smallest code point it may encode
 * (to refuse overlong forms) in *min. */
static size_t utf8_lead(unsigned c, unsigned *cp, unsigned *min) {
    if (c >= 0xC2 && c <= 0xDF) { *cp = c & 0x1F; *min = 0x80; return 2; }
    if (c >= 0xE0 && c <= 0xEF) { *cp = c & 0x0F; *min = 0x800; return 3; }
    if (c >= 0xF0 && c <= 0xF4) { *cp = c & 0x07; *min = 0x10000; return 4; }
    return 0;
}

/* Declared in builder.h. */
const char *duet_data_text_problem(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        unsigned c = *p, cp, min;
        if (c == 0) return "NUL byte";
        if (c < 0x80) { p++; continue; }
        size_t k = utf8_lead(c, &cp, &min);
        if (k == 0 || (size_t)(end - p) < k) return "invalid UTF-8";
        for (size_t i = 1; i < k; i++) {
            if ((p[i] & 0xC0) != 0x80) return "invalid UTF-8";
            cp = (cp << 6) | (p[i] & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return "invalid UTF-8";
        p += k;
    }
    return NULL;
}

/* Declared in builder.h. */
char *duet_data_dup_bytes(const char *s, size_t n) {
    size_t bytes;
    if (!duet_add_size(n, 1, &bytes)) return NULL;
    char *p = malloc(bytes);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* Declared in builder.h. */
duet_status duet_data_check_line_text(const char *s, size_t n,
                                      const char *what, const char *file,
                                      size_t line, duet_error *err) {
    if (n == 0)
        return duet_fail(err, DUET_ERR_FORMAT, "%s:%zu: empty %s", file, line,
                         what);
    const char *why = duet_data_text_problem(s, n);
    if (why)
        return duet_fail(err, DUET_ERR_FORMAT, "%s:%zu: %s in %s", file, line,
                         why, what);
    return DUET_OK;
}

/* Declared in builder.h. */
duet_status duet_data_nomem(duet_error *err, const char *file) {
    return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", file);
}

/* ------------------------------------------------------------- lines */

/* Declared in builder.h. */
duet_data_lines duet_data_lines_of(const char *buf, size_t len) {
    duet_data_lines it = {buf, buf + len, 0};
    return it;
}

/* Declared in builder.h. */
bool duet_data_next_line(duet_data_lines *it, const char **s, size_t *n) {
    if (it->p >= it->end) return false;
    const char *nl = memchr(it->p, '\n', (size_t)(it->end - it->p));
    const char *e = nl ? nl : it->end;
    *s = it->p;
    *n = (size_t)(e - it->p);
    if (*n > 0 && (*s)[*n - 1] == '\r') (*n)--;
    it->p = nl ? nl + 1 : it->end;
    it->line++;
    return true;
}

/* Declared in builder.h. */
bool duet_data_is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t') return false;
    return true;
}

/* ------------------------------------------------------- growable arrays */

/* ------------------------------------------------------ name -> index map */

/* FNV-1a, 64-bit. */
static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211u;
    }
    return h;
}

/* The slot holding key, or the empty slot where it would go. */
static duet_data_slot *map_slot_for(const duet_data_map *m, const char *key,
                                    size_t len) {
    size_t mask = m->cap - 1, i = (size_t)hash_bytes(key, len) & mask;
    for (;;) {
        duet_data_slot *s = &m->slots[i];
        if (!s->key || (s->len == len && memcmp(s->key, key, len) == 0))
            return s;
        i = (i + 1) & mask;
    }
}

/* Declared in builder.h. */
bool duet_data_map_find(const duet_data_map *m, const char *key, size_t len,
                        size_t *val) {
    if (m->cap == 0) return false;
    const duet_data_slot *s = map_slot_for(m, key, len);
    if (!s->key) return false;
    *val = s->val;
    return true;
}

/* Doubles the table (at least 64 slots); false on overflow or no memory. */
static bool map_rehash(duet_data_map *m) {
    size_t ncap = 64;
    if (m->cap && !duet_mul_size(m->cap, 2, &ncap)) return false;
    duet_data_slot *old = m->slots;
    size_t ocap = m->cap;
    m->slots = duet_calloc_array(ncap, sizeof *m->slots);
    if (!m->slots) { m->slots = old; return false; }
    m->cap = ncap;
    for (size_t i = 0; i < ocap; i++)
        if (old[i].key) *map_slot_for(m, old[i].key, old[i].len) = old[i];
    free(old);
    return true;
}

/* Declared in builder.h. */
bool duet_data_map_put(duet_data_map *m, const char *key, size_t len,
                       size_t val) {
    if (m->n >= m->cap / 2 && !map_rehash(m)) return false;
    duet_data_slot *s = map_slot_for(m, key, len);
    s->key = key;
    s->len = len;
    s->val = val;
    m->n++;
    return true;
}

/* Declared in builder.h. */
void duet_data_map_free(duet_data_map *m) {
    free(m->slots);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------- builder */

/* Declared in builder.h. */
void duet_data_builder_free(duet_data_builder *b) {
    for (size_t i = 0; i < b->n_images; i++) free(b->names[i]);
    for (size_t j = 0; j < b->n_caps; j++) free(b->caps[j]);
    free(b->names);
    free(b->splits);
    free(b->where);
    free(b->caps);
    free(b->cap_img);
    duet_data_map_free(&b->map);
    memset(b, 0, sizeof *b);
}

/* Declared in builder.h. */
bool duet_data_builder_find(const duet_data_builder *b, const char *name,
                            size_t len, size_t *idx) {
    return duet_data_map_find(&b->map, name, len, idx);
}

/* Declared in builder.h. */
duet_status duet_data_builder_add_image(duet_data_builder *b,
                                        const char *name, size_t len,
                                        int split, size_t where, size_t *idx,
                                        const char *file, duet_error *err) {
    void *p;
    size_t n = b->n_images;
    if (!(p = duet_grow(b->names, &b->cap_names, n, sizeof(char *))))
        return duet_data_nomem(err, file);
    b->names = p;
    if (!(p = duet_grow(b->splits, &b->cap_splits, n, 1)))
        return duet_data_nomem(err, file);
    b->splits = p;
    if (!(p = duet_grow(b->where, &b->cap_where, n, sizeof(size_t))))
        return duet_data_nomem(err, file);
    b->where = p;
    char *copy = duet_data_dup_bytes(name, len);
    if (!copy) return duet_data_nomem(err, file);
    if (!duet_data_map_put(&b->map, copy, len, n)) {
        free(copy);
        return duet_data_nomem(err, file);
    }
    b->names[n] = copy;
    b->splits[n] = (uint8_t)split;
    b->where[n] = where;
    *idx = b->n_images++;
    return DUET_OK;
}

/* Declared in builder.h. */
duet_status duet_data_builder_add_caption(duet_data_builder *b,
                                          const char *text, size_t len,
                                          size_t img, const char *file,
                                          duet_error *err) {
    void *p;
    size_t n = b->n_caps;
    if (!(p = duet_grow(b->caps, &b->cap_caps, n, sizeof(char *))))
        return duet_data_nomem(err, file);
    b->caps = p;
    if (!(p = duet_grow(b->cap_img, &b->cap_cap_img, n, sizeof(size_t))))
        return duet_data_nomem(err, file);
    b->cap_img = p;
    char *copy = duet_data_dup_bytes(text, len);
    if (!copy) return duet_data_nomem(err, file);
    b->caps[b->n_caps] = copy;
    b->cap_img[b->n_caps++] = img;
    return DUET_OK;
}

/* Fills the CSR arrays of d from d->caption_image (counting sort, which
 * keeps file order within each image). Arrays are allocated into d. */
static bool build_csr(duet_dataset *d) {
    size_t n1;
    if (!duet_add_size(d->n_images, 1, &n1)) return false;
    size_t *start = duet_calloc_array(n1, sizeof *start);
    size_t *caps = duet_alloc_array(d->n_captions, sizeof *caps);
    if (!start || !caps) { free(start); free(caps); return false; }
    for (size_t j = 0; j < d->n_captions; j++) start[d->caption_image[j] + 1]++;
    for (size_t i = 0; i < d->n_images; i++) start[i + 1] += start[i];
    /* start[i] is used as the write cursor of image i, after which it holds
     * the old start[i + 1]; shifting right restores it. */
    for (size_t j = 0; j < d->n_captions; j++)
        caps[start[d->caption_image[j]]++] = j;
    for (size_t i = d->n_images; i > 0; i--) start[i] = start[i - 1];
    start[0] = 0;
    d->image_cap_start = start;
    d->image_caps = caps;
    return true;
}

/* Declared in builder.h. */
duet_status duet_data_builder_finish(duet_data_builder *b,
                                     const char *source, duet_dataset **out,
                                     duet_error *err) {
    if (b->n_images == 0 || b->n_caps == 0)
        return duet_fail(err, DUET_ERR_EMPTY, "%s: no images with captions",
                         source);
    duet_dataset *d = calloc(1, sizeof *d);
    if (!d) return duet_data_nomem(err, source);
    d->n_images = b->n_images;
    d->n_captions = b->n_caps;
    d->image_names = b->names;
    d->image_split = b->splits;
    d->captions = b->caps;
    d->caption_image = b->cap_img;
    d->n_skipped = b->n_skipped;
    b->names = NULL; b->splits = NULL; b->caps = NULL; b->cap_img = NULL;
    b->n_images = b->n_caps = 0;
    duet_data_builder_free(b);
    d->source = duet_strdup(source);
    if (!d->source || !build_csr(d)) {
        duet_dataset_free(d);
        return duet_data_nomem(err, source);
    }
    *out = d;
    return DUET_OK;
}

/* ---------------------------------------------------------------- loading */

typedef duet_status (*buffer_parser)(const char *, size_t, const char *,
                                     duet_dataset **, duet_error *);

/* Reads path and parses it with parse. */
static duet_status load_file(const char *path, buffer_parser parse,
                             duet_dataset **out, duet_error *err) {
    char *buf;
    size_t len;
    duet_status st = duet_read_file(path, DUET_DATA_MAX_BYTES, &buf, &len, err);
    if (st) return st;
    st = parse(buf, len, path, out, err);
    free(buf);
    return st;
}

/* true if spec is "prefix:ARG"; *arg then points at ARG. */
static bool spec_is(const char *spec, const char *prefix, const char **arg) {
    size_t n = strlen(prefix);
    if (strncmp(spec, prefix, n) != 0 || spec[n] != ':') return false;
    *arg = spec + n + 1;
    return true;
}

/* Dispatches on the spec prefix. */
static duet_status load_spec(const char *spec, duet_dataset **out,
                             duet_error *err) {
    const char *arg;
    if (spec_is(spec, "flickr8k", &arg) && *arg)
        return duet_data_load_flickr8k(arg, out, err);
    if (spec_is(spec, "karpathy", &arg) && *arg)
        return load_file(arg, duet_dataset_parse_karpathy, out, err);
    if (spec_is(spec, "tsv", &arg) && *arg)
        return load_file(arg, duet_dataset_parse_tsv, out, err);
    return duet_fail(err, DUET_ERR_INVALID_ARG,
                     "unknown dataset '%s': use flickr8k:DIR, karpathy:FILE "
                     "or tsv:FILE", spec);
}

/* spec is borrowed and copied into (*out)->source. */
duet_status duet_dataset_load(const char *spec, duet_dataset **out,
                              duet_error *err) {
    if (!out)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "dataset: out is NULL");
    *out = NULL;
    if (!spec)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "dataset: spec is NULL");
    duet_status st = load_spec(spec, out, err);
    if (st) return st;
    char *src = duet_strdup(spec);
    if (!src) {
        duet_dataset_free(*out);
        *out = NULL;
        return duet_data_nomem(err, spec);
    }
    free((*out)->source);
    (*out)->source = src;
    return DUET_OK;
}

/* Frees d and everything it owns. NULL-safe. */
void duet_dataset_free(duet_dataset *d) {
    if (!d) return;
    if (d->image_names)
        for (size_t i = 0; i < d->n_images; i++) free(d->image_names[i]);
    if (d->captions)
        for (size_t j = 0; j < d->n_captions; j++) free(d->captions[j]);
    free(d->source);
    free(d->image_names);
    free(d->image_split);
    free(d->captions);
    free(d->caption_image);
    free(d->image_cap_start);
    free(d->image_caps);
    free(d);
}

/* ------------------------------------------------------------ selecting */

/* d is borrowed; *idx is allocated (caller frees with free()). */
duet_status duet_dataset_split_images(const duet_dataset *d, duet_split s,
                                      size_t **idx, size_t *n,
                                      duet_error *err) {
    if (!d || !idx || !n)
        return duet_fail(err, DUET_ERR_INVALID_ARG,
                         "split_images: NULL argument");
    *idx = NULL;
    *n = 0;
    if ((unsigned)s > DUET_SPLIT_ALL)
        return duet_fail(err, DUET_ERR_INVALID_ARG,
                         "split_images: unknown split %d", (int)s);
    size_t count = 0;
    for (size_t i = 0; i < d->n_images; i++)
        count += s == DUET_SPLIT_ALL || d->image_split[i] == s;
    size_t *p = duet_alloc_array(count, sizeof *p);
    if (!p) return duet_data_nomem(err, d->source ? d->source : "dataset");
    for (size_t i = 0, k = 0; i < d->n_images; i++)
        if (s == DUET_SPLIT_ALL || d->image_split[i] == s) p[k++] = i;
    *idx = p;
    *n = count;
    return DUET_OK;
}

/* Declared in data.h. */
duet_status duet_dataset_subset(const duet_dataset *d, const uint8_t *keep,
                                duet_dataset **out, duet_error *err) {
    *out = NULL;
    size_t ni = 0, nc = 0;
    duet_dataset *s = calloc(1, sizeof *s);
    if (!s) return duet_data_nomem(err, d->source ? d->source : "dataset subset");
    for (size_t i = 0; i < d->n_images; i++)
        if (keep[i]) {
            ni++;
            nc += d->image_cap_start[i + 1] - d->image_cap_start[i];
        }
    int oom = 0;
    s->image_names = duet_calloc_array(ni, sizeof(char *));
    s->image_split = duet_calloc_array(ni, 1);
    s->captions = duet_calloc_array(nc, sizeof(char *));
    s->caption_image = duet_calloc_array(nc, sizeof(size_t));
    s->image_cap_start = duet_calloc_array(ni + 1, sizeof(size_t));
    s->image_caps = duet_calloc_array(nc, sizeof(size_t));
    s->source = duet_strdup_or_flag(d->source, &oom);
    oom |= !s->image_names || !s->image_split || !s->captions ||
           !s->caption_image || !s->image_cap_start || !s->image_caps;
    /* captions grouped by image, in the order of each image's captions */
    for (size_t i = 0; i < d->n_images && !oom; i++) {
        if (!keep[i]) continue;
        size_t k = s->n_images++;
        s->image_names[k] = duet_strdup_or_flag(d->image_names[i], &oom);
        s->image_split[k] = d->image_split[i];
        s->image_cap_start[k] = s->n_captions;
        size_t a = d->image_cap_start[i], z = d->image_cap_start[i + 1];
        for (size_t q = a; q < z; q++) {
            size_t j = s->n_captions++;
            s->captions[j] = duet_strdup_or_flag(d->captions[d->image_caps[q]], &oom);
            s->caption_image[j] = k;
            s->image_caps[j] = j;
        }
        s->image_cap_start[k + 1] = s->n_captions;
    }
    if (oom) {
        duet_dataset_free(s);
        return duet_data_nomem(err, d->source ? d->source : "dataset subset");
    }
    *out = s;
    return DUET_OK;
}

/* -------------------------------------------------------------- checking */

/* Checks the CSR group of image i: its captions point back to i and come in
 * increasing (file) order. */
static duet_status check_group(const duet_dataset *d, size_t i,
                               duet_error *err) {
    size_t a = d->image_cap_start[i], z = d->image_cap_start[i + 1];
    if (a > z || z > d->n_captions)
        return duet_fail(err, DUET_ERR_FORMAT, "image %zu: bad CSR range", i);
    for (size_t k = a; k < z; k++) {
        size_t j = d->image_caps[k];
        if (j >= d->n_captions || d->caption_image[j] != i ||
            (k > a && j <= d->image_caps[k - 1]))
            return duet_fail(err, DUET_ERR_FORMAT,
                             "image %zu: bad CSR entry %zu", i, k);
    }
    return DUET_OK;
}

/* d is borrowed. */
duet_status duet_dataset_check(const duet_dataset *d, duet_error *err) {
    if (!d || !d->source || !d->image_names || !d->image_split ||
        !d->captions || !d->caption_image || !d->image_cap_start ||
        !d->image_caps)
        return duet_fail(err, DUET_ERR_FORMAT, "dataset: NULL member");
    for (size_t i = 0; i < d->n_images; i++)
        if (!d->image_names[i] || d->image_split[i] > DUET_SPLIT_NONE)
            return duet_fail(err, DUET_ERR_FORMAT, "image %zu: bad name/split",
                             i);
    for (size_t j = 0; j < d->n_captions; j++)
        if (!d->captions[j] || d->caption_image[j] >= d->n_images)
            return duet_fail(err, DUET_ERR_FORMAT, "caption %zu: bad", j);
    if (d->image_cap_start[0] != 0 ||
        d->image_cap_start[d->n_images] != d->n_captions)
        return duet_fail(err, DUET_ERR_FORMAT, "dataset: bad CSR bounds");
    for (size_t i = 0; i < d->n_images; i++) {
        duet_status st = check_group(d, i, err);
        if (st) return st;
    }
    return DUET_OK;
}
