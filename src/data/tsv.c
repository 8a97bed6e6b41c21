/* tsv.c -- caption datasets as TSV: lines "image<TAB>caption[<TAB>split]".
 *
 * Either every line has a split column or none does (then every image is
 * train); an image's lines must agree on its split. Blank lines are
 * skipped; "\r\n" line ends are accepted. */
#include "data/builder.h"
#include <string.h>

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
    duet_data_builder b;
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
                         duet_data_quote_len(fn[2]), f[2]);
    return DUET_OK;
}

/* Finds or adds the image of a line and checks its split agrees with the
 * image's earlier lines. */
static duet_status tsv_image(tsv_state *t, const char *name, size_t len,
                             int split, size_t line, size_t *idx,
                             duet_error *err) {
    if (!duet_data_builder_find(&t->b, name, len, idx))
        return duet_data_builder_add_image(&t->b, name, len, split, line, idx,
                                           t->file, err);
    int had = t->b.splits[*idx];
    if (had != split)
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s:%zu: image '%.*s' is in split %s here but in %s "
                         "on line %zu", t->file, line,
                         duet_data_quote_len(len), name,
                         duet_split_name((duet_split)split),
                         duet_split_name((duet_split)had), t->b.where[*idx]);
    return DUET_OK;
}

/* Checks the field count of a line: 2 or 3, and the same on every line. */
static duet_status tsv_columns(tsv_state *t, int nf, size_t line,
                               duet_error *err) {
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
    return DUET_OK;
}

/* One non-blank line "image<TAB>caption[<TAB>split]". */
static duet_status tsv_line(tsv_state *t, const char *s, size_t n,
                            size_t line, duet_error *err) {
    const char *f[3] = {NULL, NULL, NULL};
    size_t fn[3] = {0, 0, 0};
    int nf = split_tabs(s, n, f, fn, 3);
    duet_status st;
    int split;
    size_t img;
    if ((st = tsv_columns(t, nf, line, err)) ||
        (st = duet_data_check_line_text(f[0], fn[0], "image name", t->file,
                                        line, err)) ||
        (st = duet_data_check_line_text(f[1], fn[1], "caption", t->file,
                                        line, err)) ||
        (st = tsv_split(t, f, fn, line, &split, err)) ||
        (st = tsv_image(t, f[0], fn[0], split, line, &img, err)))
        return st;
    return duet_data_builder_add_caption(&t->b, f[1], fn[1], img, t->file,
                                         err);
}

/* buf and name are borrowed; *out: caller frees with duet_dataset_free. */
duet_status duet_dataset_parse_tsv(const char *buf, size_t len,
                                   const char *name, duet_dataset **out,
                                   duet_error *err) {
    *out = NULL;
    tsv_state t = {.file = name};
    duet_data_lines it = duet_data_lines_of(buf, len);
    const char *s;
    size_t n;
    duet_status st = DUET_OK;
    while (st == DUET_OK && duet_data_next_line(&it, &s, &n))
        if (!duet_data_is_blank(s, n)) st = tsv_line(&t, s, n, it.line, err);
    if (st == DUET_OK) st = duet_data_builder_finish(&t.b, name, out, err);
    duet_data_builder_free(&t.b);
    return st;
}
