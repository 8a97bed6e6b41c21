/* flickr8k.c -- the Flickr8K caption dataset: Flickr8k.token.txt (lines
 * "NAME#k<TAB>caption") and the train, dev and test image lists
 * (Flickr_8k.{train,dev,test}Images.txt, one name a line).
 *
 * Captions of images in no list are skipped and counted in n_skipped; an
 * image listed twice, or listed without captions, is an error. */
#include "data/builder.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    duet_data_map map; /* name -> index into e */
} f8_splits;

/* Frees the entries (their names are borrowed from the split buffers). */
static void f8_free(f8_splits *s) {
    free(s->e);
    duet_data_map_free(&s->map);
    memset(s, 0, sizeof *s);
}

/* One image name at files[split]:line; refuses names listed twice. */
static duet_status f8_add(f8_splits *s, const duet_text_buf *files, int split,
                          const char *name, size_t len, size_t line,
                          duet_error *err) {
    const char *file = files[split].name;
    duet_status st = duet_data_check_line_text(name, len, "image name", file,
                                               line, err);
    if (st) return st;
    size_t k;
    if (duet_data_map_find(&s->map, name, len, &k)) {
        const f8_entry *o = &s->e[k];
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s:%zu: image '%.*s' is already listed in %s:%zu",
                         file, line, duet_data_quote_len(len), name,
                         files[o->split].name, o->line);
    }
    void *p = duet_grow(s->e, &s->cap, s->n, sizeof *s->e);
    if (!p) return duet_data_nomem(err, file);
    s->e = p;
    f8_entry e = {name, len, line, (uint8_t)split, false};
    if (!duet_data_map_put(&s->map, name, len, s->n))
        return duet_data_nomem(err, file);
    s->e[s->n++] = e;
    return DUET_OK;
}

/* Reads the three split files into s. */
static duet_status f8_read_splits(f8_splits *s, const duet_text_buf files[3],
                                  duet_error *err) {
    for (int split = DUET_SPLIT_TRAIN; split <= DUET_SPLIT_TEST; split++) {
        duet_data_lines it =
            duet_data_lines_of(files[split].data, files[split].len);
        const char *line;
        size_t n;
        while (duet_data_next_line(&it, &line, &n)) {
            if (duet_data_is_blank(line, n)) continue;
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
static duet_status f8_token_line(duet_data_builder *b, f8_splits *s,
                                 const char *line, size_t n, size_t lineno,
                                 const char *file, duet_error *err) {
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
    if (!duet_data_map_find(&s->map, line, name_len, &k)) {
        b->n_skipped++;
        return DUET_OK;
    }
    const char *cap = tab + 1;
    size_t cap_len = n - key_len - 1;
    duet_status st = duet_data_check_line_text(cap, cap_len, "caption", file,
                                               lineno, err);
    if (st) return st;
    s->e[k].used = true;
    if (!duet_data_builder_find(b, line, name_len, &img) &&
        (st = duet_data_builder_add_image(b, line, name_len, s->e[k].split,
                                          lineno, &img, file, err)))
        return st;
    return duet_data_builder_add_caption(b, cap, cap_len, img, file, err);
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
                             files[e->split].name, e->line,
                             duet_data_quote_len(e->len), e->name,
                             token_file);
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
    duet_data_builder b = {0};
    duet_status st = f8_read_splits(&s, splits, err);
    duet_data_lines it = duet_data_lines_of(tokens->data, tokens->len);
    const char *line;
    size_t n;
    while (st == DUET_OK && duet_data_next_line(&it, &line, &n))
        if (!duet_data_is_blank(line, n))
            st = f8_token_line(&b, &s, line, n, it.line, tokens->name, err);
    if (st == DUET_OK) st = f8_check_used(&s, splits, tokens->name, err);
    if (st == DUET_OK) st = duet_data_builder_finish(&b, name, out, err);
    duet_data_builder_free(&b);
    f8_free(&s);
    return st;
}

/* ---------------------------------------------------------------- loading */

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

/* Declared in builder.h. */
duet_status duet_data_load_flickr8k(const char *dir, duet_dataset **out,
                                    duet_error *err) {
    duet_text_buf f[4] = {{0}};
    char *data[4] = {0};
    duet_status st = DUET_OK;
    for (int i = 0; i < 4 && st == DUET_OK; i++) {
        char *path = join_path(dir, f8_files[i]);
        if (!path) { st = duet_data_nomem(err, dir); break; }
        f[i].name = path;
        st = duet_read_file(path, DUET_DATA_MAX_BYTES, &data[i], &f[i].len,
                            err);
        f[i].data = data[i];
    }
    if (st == DUET_OK)
        st = duet_dataset_parse_flickr8k(&f[3], f, dir, out, err);
    for (int i = 0; i < 4; i++) {
        free(data[i]);
        free((char *)f[i].name);
    }
    return st;
}
