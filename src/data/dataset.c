/* dataset.c -- caption datasets: Flickr8K, Karpathy split JSON, TSV.
 *
 * Every loader feeds a `builder` (growable arrays of images and captions
 * plus a name -> image index hash map) and builder_finish() turns it into a
 * duet_dataset with the CSR grouping of captions by image. Inputs are
 * (pointer, length) buffers that need not be NUL-terminated; every string
 * stored in a dataset is checked to be valid UTF-8 without NUL bytes. */
#include "data/data.h"
#include <jansson.h>
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

/* Parses the n bytes at s as a split an image can belong to (train, val,
 * test); -1 otherwise ("all" is a selector, not an image's split). */
static int parse_image_split(const char *s, size_t n) {
    char tmp[16];
    if (n >= sizeof tmp || memchr(s, '\0', n)) return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    int v = duet_split_parse(tmp);
    return v >= DUET_SPLIT_TRAIN && v <= DUET_SPLIT_TEST ? v : -1;
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

/* NULL if s[0..n) is valid UTF-8 with no NUL byte, else the reason. */
static const char *text_problem(const char *s, size_t n) {
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

/* Copies n bytes into a new NUL-terminated string; caller frees with
 * free(). NULL on allocation failure. */
static char *dup_bytes(const char *s, size_t n) {
    size_t bytes;
    if (!duet_add_size(n, 1, &bytes)) return NULL;
    char *p = malloc(bytes);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* At most this many bytes of an offending value are quoted in messages. */
#define QUOTE_MAX 80
static int quote_len(size_t n) { return (int)(n > QUOTE_MAX ? QUOTE_MAX : n); }

/* Checks a text field of a line: non-empty, valid UTF-8, no NUL.
 * `what` names the field ("caption", "image name"). */
static duet_status check_line_text(const char *s, size_t n, const char *what,
                                   const char *file, size_t line,
                                   duet_error *err) {
    if (n == 0)
        return duet_fail(err, DUET_ERR_FORMAT, "%s:%zu: empty %s", file, line,
                         what);
    const char *why = text_problem(s, n);
    if (why)
        return duet_fail(err, DUET_ERR_FORMAT, "%s:%zu: %s in %s", file, line,
                         why, what);
    return DUET_OK;
}

/* ------------------------------------------------------------- lines */

/* Iterates over the lines of a buffer; line numbers are 1-based. */
typedef struct line_iter {
    const char *p, *end;
    size_t line;
} line_iter;

/* An iterator over buf[0..len) (borrowed; must outlive it). */
static line_iter lines_of(const char *buf, size_t len) {
    line_iter it = {buf, buf + len, 0};
    return it;
}

/* Next line without its "\n" or "\r\n" (a missing final newline is fine);
 * *s points into the buffer. false at the end. */
static bool next_line(line_iter *it, const char **s, size_t *n) {
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

/* A line of only spaces and tabs (or nothing) is blank and skipped. */
static bool is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t') return false;
    return true;
}

/* ------------------------------------------------------- growable arrays */

/* Returns p grown (realloc) so that it holds at least n + 1 elements of
 * elem bytes, doubling *cap with overflow checks; *cap is updated only on
 * success. NULL on overflow or allocation failure (p is then untouched). */
static void *grow_for_one(void *p, size_t *cap, size_t n, size_t elem) {
    if (n < *cap) return p;
    size_t ncap = 16, bytes;
    if (*cap && !duet_mul_size(*cap, 2, &ncap)) return NULL;
    if (!duet_mul_size(ncap, elem, &bytes)) return NULL;
    void *q = realloc(p, bytes);
    if (q) *cap = ncap;
    return q;
}

/* ------------------------------------------------------ name -> index map */

/* Open addressing, linear probing. Keys are borrowed (ptr, len) byte
 * strings that must outlive the map. */
typedef struct map_slot {
    const char *key; /* NULL: empty slot */
    size_t len;
    size_t val;
} map_slot;

typedef struct name_map {
    map_slot *slots;
    size_t cap; /* 0 or a power of two */
    size_t n;
} name_map;

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
static map_slot *map_slot_for(const name_map *m, const char *key, size_t len) {
    size_t mask = m->cap - 1, i = (size_t)hash_bytes(key, len) & mask;
    for (;;) {
        map_slot *s = &m->slots[i];
        if (!s->key || (s->len == len && memcmp(s->key, key, len) == 0))
            return s;
        i = (i + 1) & mask;
    }
}

/* true and *val if key is present. */
static bool map_find(const name_map *m, const char *key, size_t len,
                     size_t *val) {
    if (m->cap == 0) return false;
    const map_slot *s = map_slot_for(m, key, len);
    if (!s->key) return false;
    *val = s->val;
    return true;
}

/* Doubles the table (at least 64 slots); false on overflow or no memory. */
static bool map_rehash(name_map *m) {
    size_t ncap = 64;
    if (m->cap && !duet_mul_size(m->cap, 2, &ncap)) return false;
    map_slot *old = m->slots;
    size_t ocap = m->cap;
    m->slots = duet_calloc_array(ncap, sizeof *m->slots);
    if (!m->slots) { m->slots = old; return false; }
    m->cap = ncap;
    for (size_t i = 0; i < ocap; i++)
        if (old[i].key) *map_slot_for(m, old[i].key, old[i].len) = old[i];
    free(old);
    return true;
}

/* Inserts key (which must not be present) -> val; false if out of memory.
 * The key bytes are borrowed. */
static bool map_put(name_map *m, const char *key, size_t len, size_t val) {
    if (m->n >= m->cap / 2 && !map_rehash(m)) return false;
    map_slot *s = map_slot_for(m, key, len);
    s->key = key;
    s->len = len;
    s->val = val;
    m->n++;
    return true;
}

/* Frees the slots (not the borrowed keys). */
static void map_free(name_map *m) {
    free(m->slots);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------- builder */

/* A dataset under construction. Owns every array and string until
 * builder_finish() hands them to a duet_dataset. */
typedef struct builder {
    char **names;      /* [n_images] owned strings                 */
    uint8_t *splits;   /* [n_images]                               */
    size_t *where;     /* [n_images] line (or JSON index) first seen */
    size_t n_images, cap_names, cap_splits, cap_where;
    char **caps;       /* [n_caps] owned strings                   */
    size_t *cap_img;   /* [n_caps]                                 */
    size_t n_caps, cap_caps, cap_cap_img;
    size_t n_skipped;
    name_map map;      /* image name -> index; keys are names[i]   */
} builder;

/* DUET_ERR_NOMEM naming the file being read. */
static duet_status nomem(duet_error *err, const char *file) {
    return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", file);
}

/* Frees everything b still owns and empties it. */
static void builder_free(builder *b) {
    for (size_t i = 0; i < b->n_images; i++) free(b->names[i]);
    for (size_t j = 0; j < b->n_caps; j++) free(b->caps[j]);
    free(b->names);
    free(b->splits);
    free(b->where);
    free(b->caps);
    free(b->cap_img);
    map_free(&b->map);
    memset(b, 0, sizeof *b);
}

/* true and *idx if an image of that name exists. */
static bool builder_find(const builder *b, const char *name, size_t len,
                         size_t *idx) {
    return map_find(&b->map, name, len, idx);
}

/* Appends a new image (name copied); *idx receives its index. */
static duet_status builder_add_image(builder *b, const char *name, size_t len,
                                     int split, size_t where, size_t *idx,
                                     const char *file, duet_error *err) {
    void *p;
    if (!(p = grow_for_one(b->names, &b->cap_names, b->n_images, sizeof(char *))))
        return nomem(err, file);
    b->names = p;
    if (!(p = grow_for_one(b->splits, &b->cap_splits, b->n_images, 1)))
        return nomem(err, file);
    b->splits = p;
    if (!(p = grow_for_one(b->where, &b->cap_where, b->n_images, sizeof(size_t))))
        return nomem(err, file);
    b->where = p;
    char *copy = dup_bytes(name, len);
    if (!copy) return nomem(err, file);
    if (!map_put(&b->map, copy, len, b->n_images)) {
        free(copy);
        return nomem(err, file);
    }
    b->names[b->n_images] = copy;
    b->splits[b->n_images] = (uint8_t)split;
    b->where[b->n_images] = where;
    *idx = b->n_images++;
    return DUET_OK;
}

/* Appends a caption (copied) of image img. */
static duet_status builder_add_caption(builder *b, const char *text,
                                       size_t len, size_t img,
                                       const char *file, duet_error *err) {
    void *p;
    if (!(p = grow_for_one(b->caps, &b->cap_caps, b->n_caps, sizeof(char *))))
        return nomem(err, file);
    b->caps = p;
    if (!(p = grow_for_one(b->cap_img, &b->cap_cap_img, b->n_caps, sizeof(size_t))))
        return nomem(err, file);
    b->cap_img = p;
    char *copy = dup_bytes(text, len);
    if (!copy) return nomem(err, file);
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

/* Moves b's contents into a new dataset *out (b is left empty). An empty
 * result is DUET_ERR_EMPTY. source is copied. */
static duet_status builder_finish(builder *b, const char *source,
                                  duet_dataset **out, duet_error *err) {
    if (b->n_images == 0 || b->n_caps == 0)
        return duet_fail(err, DUET_ERR_EMPTY, "%s: no images with captions",
                         source);
    duet_dataset *d = calloc(1, sizeof *d);
    if (!d) return nomem(err, source);
    d->n_images = b->n_images;
    d->n_captions = b->n_caps;
    d->image_names = b->names;
    d->image_split = b->splits;
    d->captions = b->caps;
    d->caption_image = b->cap_img;
    d->n_skipped = b->n_skipped;
    b->names = NULL; b->splits = NULL; b->caps = NULL; b->cap_img = NULL;
    b->n_images = b->n_caps = 0;
    builder_free(b);
    d->source = duet_strdup(source);
    if (!d->source || !build_csr(d)) {
        duet_dataset_free(d);
        return nomem(err, source);
    }
    *out = d;
    return DUET_OK;
}

/* ------------------------------------------------------------------- TSV */

/* Splits s[0..n) at TABs into at most max fields; returns the number of
 * fields found (max + 1 means "more than max"). */
static int split_tabs(const char *s, size_t n, const char **f, size_t *fn,
                      int max) {
    int k = 0;
    const char *end = s + n;
    for (;;) {
        const char *tab = memchr(s, '\t', (size_t)(end - s));
        const char *e = tab ? tab : end;
        if (k == max) return max + 1;
        f[k] = s;
        fn[k] = (size_t)(e - s);
        k++;
        if (!tab) return k;
        s = tab + 1;
    }
}

/* State shared by the lines of one TSV file. */
typedef struct tsv_state {
    builder b;
    const char *file;
    int ncols;        /* 0 until the first line */
    size_t cols_line; /* the line that fixed ncols */
} tsv_state;

/* The split column of one line (train when the file has none). */
static duet_status tsv_split(const tsv_state *t, const char **f,
                             const size_t *fn, size_t line, int *split,
                             duet_error *err) {
    *split = DUET_SPLIT_TRAIN;
    if (t->ncols == 2) return DUET_OK;
    *split = parse_image_split(f[2], fn[2]);
    if (*split < 0)
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s:%zu: unknown split '%.*s' (expected train, val, "
                         "dev, test or restval)", t->file, line,
                         quote_len(fn[2]), f[2]);
    return DUET_OK;
}

/* Finds or adds the image of a line and checks its split agrees with the
 * image's earlier lines. */
static duet_status tsv_image(tsv_state *t, const char *name, size_t len,
                             int split, size_t line, size_t *idx,
                             duet_error *err) {
    if (!builder_find(&t->b, name, len, idx))
        return builder_add_image(&t->b, name, len, split, line, idx, t->file,
                                 err);
    int had = t->b.splits[*idx];
    if (had != split)
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s:%zu: image '%.*s' is in split %s here but in %s "
                         "on line %zu", t->file, line, quote_len(len), name,
                         duet_split_name((duet_split)split),
                         duet_split_name((duet_split)had), t->b.where[*idx]);
    return DUET_OK;
}

/* One non-blank line "image<TAB>caption[<TAB>split]". */
static duet_status tsv_line(tsv_state *t, const char *s, size_t n,
                            size_t line, duet_error *err) {
    const char *f[3] = {NULL, NULL, NULL};
    size_t fn[3] = {0, 0, 0};
    int nf = split_tabs(s, n, f, fn, 3);
    if (nf < 2)
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s:%zu: expected image<TAB>caption[<TAB>split], "
                         "found no TAB", t->file, line);
    if (nf > 3)
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s:%zu: more than 3 TAB-separated fields (expected "
                         "image<TAB>caption[<TAB>split])", t->file, line);
    if (t->ncols == 0) { t->ncols = nf; t->cols_line = line; }
    if (nf != t->ncols)
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s:%zu: %d columns but line %zu has %d (either "
                         "every line has a split column or none)", t->file,
                         line, nf, t->cols_line, t->ncols);
    duet_status st;
    int split;
    size_t img;
    if ((st = check_line_text(f[0], fn[0], "image name", t->file, line, err)) ||
        (st = check_line_text(f[1], fn[1], "caption", t->file, line, err)) ||
        (st = tsv_split(t, f, fn, line, &split, err)) ||
        (st = tsv_image(t, f[0], fn[0], split, line, &img, err)))
        return st;
    return builder_add_caption(&t->b, f[1], fn[1], img, t->file, err);
}

/* buf and name are borrowed; *out: caller frees with duet_dataset_free. */
duet_status duet_dataset_parse_tsv(const char *buf, size_t len,
                                   const char *name, duet_dataset **out,
                                   duet_error *err) {
    *out = NULL;
    tsv_state t = {.file = name};
    line_iter it = lines_of(buf, len);
    const char *s;
    size_t n;
    duet_status st = DUET_OK;
    while (st == DUET_OK && next_line(&it, &s, &n))
        if (!is_blank(s, n)) st = tsv_line(&t, s, n, it.line, err);
    if (st == DUET_OK) st = builder_finish(&t.b, name, out, err);
    builder_free(&t.b);
    return st;
}

/* -------------------------------------------------------------- Karpathy */

/* "a string", "an integer", ... for messages; static. */
static const char *json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "an unknown value";
}

/* The string member `key` of obj (named `path` in messages) as *s, *n
 * (borrowed from obj). A missing optional member gives *s = NULL. */
static duet_status json_str(const json_t *obj, const char *key, bool required,
                            const char *file, const char *path,
                            const char **s, size_t *n, duet_error *err) {
    const json_t *v = json_object_get(obj, key);
    *s = NULL;
    *n = 0;
    if (!v && !required) return DUET_OK;
    if (!v)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: %s.%s: missing", file,
                         path, key);
    if (!json_is_string(v))
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s: %s.%s: expected a string, got %s", file, path,
                         key, json_type_name(v));
    *s = json_string_value(v);
    *n = json_string_length(v);
    const char *why = text_problem(*s, *n);
    if (why)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: %s.%s: %s", file, path,
                         key, why);
    return DUET_OK;
}

/* Karpathy's split names: train, val, test, restval (-> train). */
static int karpathy_split(const char *s) {
    if (strcmp(s, "train") == 0 || strcmp(s, "restval") == 0)
        return DUET_SPLIT_TRAIN;
    if (strcmp(s, "val") == 0) return DUET_SPLIT_VAL;
    if (strcmp(s, "test") == 0) return DUET_SPLIT_TEST;
    return -1;
}

/* The fields of one images[i] entry, borrowed from the JSON tree. */
typedef struct kimage {
    const char *filename, *filepath;
    size_t filename_len, filepath_len;
    int split;
    const json_t *sentences;
} kimage;

/* Reads sentences[k].raw of image i into *raw, *n (trailing '\r' cut). */
static duet_status karpathy_raw(const json_t *sents, size_t i, size_t k,
                                const char *file, const char **raw, size_t *n,
                                duet_error *err) {
    char path[96];
    snprintf(path, sizeof path, "images[%zu].sentences[%zu]", i, k);
    const json_t *sent = json_array_get(sents, k);
    if (!json_is_object(sent))
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s: %s: expected an object, got %s", file, path,
                         json_type_name(sent));
    duet_status st = json_str(sent, "raw", true, file, path, raw, n, err);
    if (st) return st;
    if (*n > 0 && (*raw)[*n - 1] == '\r') (*n)--;
    if (*n == 0)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: %s.raw: empty caption",
                         file, path);
    return DUET_OK;
}

/* The "sentences" array of img (named `path` in messages). */
static duet_status karpathy_sentences(const json_t *img, const char *file,
                                      const char *path, const json_t **sents,
                                      duet_error *err) {
    *sents = json_object_get(img, "sentences");
    if (!*sents)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: %s.sentences: missing",
                         file, path);
    if (!json_is_array(*sents))
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s: %s.sentences: expected an array, got %s", file,
                         path, json_type_name(*sents));
    return DUET_OK;
}

/* Validates images[i] (an object) and fills *k. */
static duet_status karpathy_fields(const json_t *img, size_t i,
                                   const char *file, kimage *k,
                                   duet_error *err) {
    char path[64];
    snprintf(path, sizeof path, "images[%zu]", i);
    if (!json_is_object(img))
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s: %s: expected an object, got %s", file, path,
                         json_type_name(img));
    const char *split;
    size_t split_len;
    duet_status st;
    if ((st = json_str(img, "filename", true, file, path, &k->filename,
                       &k->filename_len, err)) ||
        (st = json_str(img, "filepath", false, file, path, &k->filepath,
                       &k->filepath_len, err)) ||
        (st = json_str(img, "split", true, file, path, &split, &split_len,
                       err)))
        return st;
    if (k->filename_len == 0)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: %s.filename: empty", file,
                         path);
    if ((k->split = karpathy_split(split)) < 0)
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s: %s.split: unknown split '%.*s' (expected train, "
                         "val, test or restval)", file, path,
                         quote_len(split_len), split);
    return karpathy_sentences(img, file, path, &k->sentences, err);
}

/* The image name: "filepath/filename", or filename when filepath is absent
 * or empty. Caller frees with free(); NULL if out of memory. */
static char *karpathy_name(const kimage *k) {
    if (!k->filepath || k->filepath_len == 0)
        return dup_bytes(k->filename, k->filename_len);
    size_t n;
    if (!duet_add_size(k->filepath_len, k->filename_len, &n) ||
        !duet_add_size(n, 2, &n))
        return NULL;
    char *p = malloc(n);
    if (!p) return NULL;
    memcpy(p, k->filepath, k->filepath_len);
    p[k->filepath_len] = '/';
    memcpy(p + k->filepath_len + 1, k->filename, k->filename_len);
    p[n - 1] = '\0';
    return p;
}

/* Adds images[i] as a new image (refusing duplicate names). */
static duet_status karpathy_add(builder *b, const kimage *k, size_t i,
                                const char *file, size_t *idx,
                                duet_error *err) {
    char *name = karpathy_name(k);
    if (!name) return nomem(err, file);
    size_t len = strlen(name), prev;
    duet_status st;
    if (builder_find(b, name, len, &prev))
        st = duet_fail(err, DUET_ERR_FORMAT,
                       "%s: images[%zu]: duplicate image '%.*s' (also "
                       "images[%zu])", file, i, quote_len(len), name,
                       b->where[prev]);
    else
        st = builder_add_image(b, name, len, k->split, i, idx, file, err);
    free(name);
    return st;
}

/* One images[i] entry; an image without sentences is skipped. */
static duet_status karpathy_image(builder *b, const json_t *img, size_t i,
                                  const char *file, duet_error *err) {
    kimage k;
    duet_status st = karpathy_fields(img, i, file, &k, err);
    if (st) return st;
    size_t ns = json_array_size(k.sentences), idx = 0;
    const char *raw;
    size_t n;
    for (size_t j = 0; j < ns; j++)
        if ((st = karpathy_raw(k.sentences, i, j, file, &raw, &n, err)))
            return st;
    if (ns == 0) { b->n_skipped++; return DUET_OK; }
    if ((st = karpathy_add(b, &k, i, file, &idx, err))) return st;
    for (size_t j = 0; j < ns && st == DUET_OK; j++) {
        karpathy_raw(k.sentences, i, j, file, &raw, &n, err); /* checked */
        st = builder_add_caption(b, raw, n, idx, file, err);
    }
    return st;
}

/* The top-level "images" array of root. */
static duet_status karpathy_images(const json_t *root, const char *file,
                                   const json_t **images, duet_error *err) {
    if (!json_is_object(root))
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s: top level: expected an object, got %s", file,
                         json_type_name(root));
    *images = json_object_get(root, "images");
    if (!*images)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: images: missing", file);
    if (!json_is_array(*images))
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s: images: expected an array, got %s", file,
                         json_type_name(*images));
    return DUET_OK;
}

/* Parses the JSON text with jansson; syntax errors name line and column. */
static duet_status karpathy_json(const char *buf, size_t len, const char *file,
                                 json_t **root, duet_error *err) {
    json_error_t je;
    *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    if (*root) return DUET_OK;
    if (json_error_code(&je) == json_error_out_of_memory)
        return nomem(err, file);
    return duet_fail(err, DUET_ERR_FORMAT, "%s:%d:%d: JSON error: %s%s", file,
                     je.line, je.column, je.text,
                     json_error_code(&je) == json_error_invalid_utf8
                         ? " (invalid UTF-8)" : "");
}

/* buf and name are borrowed; *out: caller frees with duet_dataset_free.
 * The jansson tree is freed before returning. */
duet_status duet_dataset_parse_karpathy(const char *buf, size_t len,
                                        const char *name, duet_dataset **out,
                                        duet_error *err) {
    *out = NULL;
    json_t *root;
    const json_t *images = NULL;
    duet_status st = karpathy_json(buf, len, name, &root, err);
    if (st) return st;
    builder b = {0};
    st = karpathy_images(root, name, &images, err);
    size_t n = st ? 0 : json_array_size(images);
    for (size_t i = 0; i < n && st == DUET_OK; i++)
        st = karpathy_image(&b, json_array_get(images, i), i, name, err);
    if (st == DUET_OK) st = builder_finish(&b, name, out, err);
    builder_free(&b);
    json_decref(root);
    return st;
}

/* -------------------------------------------------------------- Flickr8K */

/* An image listed in a split file. name points into that file's buffer. */
typedef struct f8_entry {
    const char *name;
    size_t len;
    size_t line;
    uint8_t split;
    bool used; /* has at least one caption */
} f8_entry;

/* The images of the three split files. */
typedef struct f8_splits {
    f8_entry *e;
    size_t n, cap;
    name_map map; /* name -> index into e */
} f8_splits;

/* Frees the entries (their names are borrowed from the split buffers). */
static void f8_free(f8_splits *s) {
    free(s->e);
    map_free(&s->map);
    memset(s, 0, sizeof *s);
}

/* One image name at files[split]:line; refuses names listed twice. */
static duet_status f8_add(f8_splits *s, const duet_text_buf *files, int split,
                          const char *name, size_t len, size_t line,
                          duet_error *err) {
    const char *file = files[split].name;
    duet_status st = check_line_text(name, len, "image name", file, line, err);
    if (st) return st;
    size_t k;
    if (map_find(&s->map, name, len, &k)) {
        const f8_entry *o = &s->e[k];
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s:%zu: image '%.*s' is already listed in %s:%zu",
                         file, line, quote_len(len), name,
                         files[o->split].name, o->line);
    }
    void *p = grow_for_one(s->e, &s->cap, s->n, sizeof *s->e);
    if (!p) return nomem(err, file);
    s->e = p;
    f8_entry e = {name, len, line, (uint8_t)split, false};
    if (!map_put(&s->map, name, len, s->n)) return nomem(err, file);
    s->e[s->n++] = e;
    return DUET_OK;
}

/* Reads the three split files into s. */
static duet_status f8_read_splits(f8_splits *s, const duet_text_buf files[3],
                                  duet_error *err) {
    for (int split = DUET_SPLIT_TRAIN; split <= DUET_SPLIT_TEST; split++) {
        line_iter it = lines_of(files[split].data, files[split].len);
        const char *line;
        size_t n;
        while (next_line(&it, &line, &n)) {
            if (is_blank(line, n)) continue;
            duet_status st = f8_add(s, files, split, line, n, it.line, err);
            if (st) return st;
        }
    }
    return DUET_OK;
}

/* Length of the image name in a caption key "NAME#k": up to the last '#'
 * (the whole key when it has none). */
static size_t f8_key_name_len(const char *key, size_t n) {
    for (size_t i = n; i > 0; i--)
        if (key[i - 1] == '#') return i - 1;
    return n;
}

/* One non-blank line "NAME#k<TAB>caption" of the token file. */
static duet_status f8_token_line(builder *b, f8_splits *s, const char *line,
                                 size_t n, size_t lineno, const char *file,
                                 duet_error *err) {
    const char *tab = memchr(line, '\t', n);
    if (!tab)
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s:%zu: expected NAME#k<TAB>caption, found no TAB",
                         file, lineno);
    size_t key_len = (size_t)(tab - line), k, img;
    size_t name_len = f8_key_name_len(line, key_len);
    if (name_len == 0)
        return duet_fail(err, DUET_ERR_FORMAT, "%s:%zu: empty image name",
                         file, lineno);
    if (!map_find(&s->map, line, name_len, &k)) { b->n_skipped++; return DUET_OK; }
    const char *cap = tab + 1;
    size_t cap_len = n - key_len - 1;
    duet_status st = check_line_text(cap, cap_len, "caption", file, lineno, err);
    if (st) return st;
    s->e[k].used = true;
    if (!builder_find(b, line, name_len, &img) &&
        (st = builder_add_image(b, line, name_len, s->e[k].split, lineno, &img,
                                file, err)))
        return st;
    return builder_add_caption(b, cap, cap_len, img, file, err);
}

/* Every image of a split file must have captions. */
static duet_status f8_check_used(const f8_splits *s,
                                 const duet_text_buf files[3],
                                 const char *token_file, duet_error *err) {
    for (size_t k = 0; k < s->n; k++) {
        const f8_entry *e = &s->e[k];
        if (!e->used)
            return duet_fail(err, DUET_ERR_FORMAT,
                             "%s:%zu: image '%.*s' has no captions in %s",
                             files[e->split].name, e->line, quote_len(e->len),
                             e->name, token_file);
    }
    return DUET_OK;
}

/* All buffers are borrowed; *out: caller frees with duet_dataset_free. */
duet_status duet_dataset_parse_flickr8k(const duet_text_buf *tokens,
                                        const duet_text_buf splits[3],
                                        const char *name, duet_dataset **out,
                                        duet_error *err) {
    *out = NULL;
    f8_splits s = {0};
    builder b = {0};
    duet_status st = f8_read_splits(&s, splits, err);
    line_iter it = lines_of(tokens->data, tokens->len);
    const char *line;
    size_t n;
    while (st == DUET_OK && next_line(&it, &line, &n))
        if (!is_blank(line, n))
            st = f8_token_line(&b, &s, line, n, it.line, tokens->name, err);
    if (st == DUET_OK) st = f8_check_used(&s, splits, tokens->name, err);
    if (st == DUET_OK) st = builder_finish(&b, name, out, err);
    builder_free(&b);
    f8_free(&s);
    return st;
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

/* "DIR/NAME" (no doubled '/'); caller frees with free(); NULL if no memory. */
static char *join_path(const char *dir, const char *name) {
    size_t dn = strlen(dir), nn = strlen(name), total;
    bool slash = dn > 0 && dir[dn - 1] != '/';
    if (!duet_add_size(dn, nn, &total) || !duet_add_size(total, 2, &total))
        return NULL;
    char *p = malloc(total);
    if (p) snprintf(p, total, "%s%s%s", dir, slash ? "/" : "", name);
    return p;
}

static const char *const f8_files[4] = {
    "Flickr_8k.trainImages.txt", "Flickr_8k.devImages.txt",
    "Flickr_8k.testImages.txt", "Flickr8k.token.txt",
};

/* Reads DIR's four Flickr8K files and parses them. */
static duet_status load_flickr8k(const char *dir, duet_dataset **out,
                                 duet_error *err) {
    duet_text_buf f[4] = {{0}};
    char *data[4] = {0};
    duet_status st = DUET_OK;
    for (int i = 0; i < 4 && st == DUET_OK; i++) {
        char *path = join_path(dir, f8_files[i]);
        if (!path) { st = nomem(err, dir); break; }
        f[i].name = path;
        st = duet_read_file(path, DUET_DATA_MAX_BYTES, &data[i], &f[i].len, err);
        f[i].data = data[i];
    }
    if (st == DUET_OK) st = duet_dataset_parse_flickr8k(&f[3], f, dir, out, err);
    for (int i = 0; i < 4; i++) {
        free(data[i]);
        free((char *)f[i].name);
    }
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
        return load_flickr8k(arg, out, err);
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
        return nomem(err, spec);
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
    if (!p) return nomem(err, d->source ? d->source : "dataset");
    for (size_t i = 0, k = 0; i < d->n_images; i++)
        if (s == DUET_SPLIT_ALL || d->image_split[i] == s) p[k++] = i;
    *idx = p;
    *n = count;
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
