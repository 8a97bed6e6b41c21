/* phrases.c -- region/phrase training data from Flickr30K Entities: one
 * "image" per (image, entity with a box) -- the entity's box -- whose
 * "captions" are every phrase that names the entity. So the structure term
 * of the loss (a caption's neighbours are the other captions of its image)
 * makes the phrases of one box neighbours, as the paper does. The region
 * feature is duet_roi_features of the box, then its geometry when asked. */
#include "region/region.h"
#include "data/data.h"
#include <stdlib.h>
#include <string.h>

static int str_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The split of an entities image: from DIR/{train,val,test}.txt when the
 * lists exist (Flickr30K Entities ships them; read_list sorts them), else
 * by a hash of its name: 80% train, 10% val, 10% test. */
static int split_of(const char *name, char **const lists[3], const size_t n_list[3]) {
    size_t l = strcspn(name, ".");
    char id[512];
    if (l < sizeof id) {
        memcpy(id, name, l);
        id[l] = '\0';
        const char *key = id;
        for (int s = 0; s < 3; s++)
            if (n_list[s] && bsearch(&key, lists[s], n_list[s], sizeof(char *), str_cmp)) return s;
    }
    if (n_list[0] + n_list[1] + n_list[2]) return -1;          /* in no list: not used */
    uint64_t h = duet_fnv(DUET_FNV_INIT, name, l);
    unsigned r = (unsigned)(h % 10);
    return r < 8 ? DUET_SPLIT_TRAIN : (r == 8 ? DUET_SPLIT_VAL : DUET_SPLIT_TEST);
}

static void free_list(char **l, size_t n) {
    for (size_t i = 0; i < n; i++) free(l[i]);
    free(l);
}

/* One id a line of DIR/NAME.txt, sorted; an absent file gives an empty list. */
static duet_status read_list(const char *dir, const char *name, char ***out, size_t *n, duet_error *err) {
    *out = NULL;
    *n = 0;
    char p[4096], *buf = NULL;
    size_t len = 0;
    snprintf(p, sizeof p, "%s/%s.txt", dir, name);
    FILE *f = fopen(p, "rb");
    if (!f) return DUET_OK;
    fclose(f);
    duet_status st = duet_read_file(p, (size_t)64 << 20, &buf, &len, err);
    if (st) return st;
    size_t cap = 0;
    for (size_t i = 0; i < len && !st;) {
        size_t e = i;
        while (e < len && buf[e] != '\n') e++;
        size_t e2 = e;
        while (e2 > i && (buf[e2 - 1] == '\r' || buf[e2 - 1] == ' ')) e2--;
        if (e2 > i) {
            if (*n == cap) {
                cap = cap ? 2 * cap : 1024;
                char **nl = realloc(*out, cap * sizeof *nl);
                if (!nl) { st = duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", p); break; }
                *out = nl;
            }
            char *s = malloc(e2 - i + 1);
            if (!s) { st = duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", p); break; }
            memcpy(s, buf + i, e2 - i);
            s[e2 - i] = '\0';
            (*out)[(*n)++] = s;
        }
        i = e + 1;
    }
    free(buf);
    if (st) { free_list(*out, *n); *out = NULL; *n = 0; }
    else if (*n) qsort(*out, *n, sizeof **out, str_cmp);
    return st;
}

/* Appends text to sb without tabs or newlines. */
static void put_clean(duet_sbuf *sb, const char *s) {
    for (; *s; s++) duet_sb_printf(sb, "%c", (*s == '\t' || *s == '\n' || *s == '\r') ? ' ' : *s);
}

duet_status duet_phrase_data(duet_cnn *cnn, const duet_entities *ent, const char *entities_dir,
                             const char *image_dir, int geometry, duet_dataset **d_out, duet_mat *img_out,
                             duet_error *err) {
    *d_out = NULL;
    memset(img_out, 0, sizeof *img_out);
    char **lists[3] = {0};
    size_t n_list[3] = {0};
    static const char *const names[3] = {"train", "val", "test"};
    duet_status st = DUET_OK;
    for (int s = 0; s < 3 && !st; s++) st = read_list(entities_dir, names[s], &lists[s], &n_list[s], err);
    int mh, mw, c;
    duet_cnn_map_shape(cnn, &mh, &mw, &c);
    size_t dim = (size_t)c + (geometry ? DUET_BOX_GEOMETRY : 0), n_reg = 0, cap_reg = 0;
    const size_t plane = (size_t)DUET_IMAGE_SIDE * DUET_IMAGE_SIDE * 3;
    float *in = duet_alloc_array(plane, sizeof(float)), *map = duet_alloc_array((size_t)mh * mw, (size_t)c * sizeof(float));
    float *feat = NULL;
    duet_sbuf tsv = {0};
    if (!st && (!in || !map)) st = duet_fail(err, DUET_ERR_NOMEM, "phrase data: out of memory");
    for (size_t i = 0; i < ent->n_images && !st; i++) {
        const duet_entities_image *ei = &ent->images[i];
        int split = split_of(ei->name, lists, n_list);
        if (split < 0) continue;
        /* the entities of this image that have a box, in first-phrase order */
        duet_image im = {0};
        int loaded = 0;
        for (size_t p = 0; p < ei->n_phrases && !st; p++) {
            const duet_phrase *ph = &ei->phrases[p];
            if (!ph->has_box) continue;
            size_t first = p;
            for (size_t q = 0; q < p; q++)
                if (ei->phrases[q].entity == ph->entity) { first = q; break; }
            if (first != p) continue;                       /* entity done */
            if (!loaded) {
                char path[8192];
                snprintf(path, sizeof path, "%s/%s", image_dir, ei->name);
                st = duet_image_read(path, &im, err);
                if (!st) st = duet_image_crops(&im, 1, in, err);
                if (!st) st = duet_cnn_run_map(cnn, in, 1, map, NULL, err);
                if (st) break;
                loaded = 1;
            }
            if (n_reg == cap_reg) {
                cap_reg = cap_reg ? 2 * cap_reg : 1024;
                float *nf = duet_alloc_array(cap_reg, dim * sizeof(float));
                if (!nf) { st = duet_fail(err, DUET_ERR_NOMEM, "phrase data: out of memory"); break; }
                if (n_reg) memcpy(nf, feat, n_reg * dim * sizeof(float));
                free(feat);
                feat = nf;
            }
            st = duet_roi_features(map, mh, mw, c, im.width, im.height, &ph->box, 1, feat + n_reg * dim, err);
            if (st) { duet_fail_wrap(err, st, "%s: entity %u", ei->name, (unsigned)ph->entity); break; }
            if (geometry) duet_box_geometry(&ph->box, im.width, im.height, feat + n_reg * dim + c);
            for (size_t q = p; q < ei->n_phrases; q++) {
                if (ei->phrases[q].entity != ph->entity) continue;
                duet_sb_printf(&tsv, "%s#%u\t", ei->name, ph->entity);
                put_clean(&tsv, ei->phrases[q].text);
                duet_sb_printf(&tsv, "\t%s\n", names[split]);
            }
            n_reg++;
        }
        duet_image_free(&im);
    }
    if (!st && n_reg == 0) st = duet_fail(err, DUET_ERR_FORMAT, "%s: no phrase with a box", entities_dir);
    if (!st && tsv.oom) st = duet_fail(err, DUET_ERR_NOMEM, "phrase data: out of memory");
    if (!st) st = duet_dataset_parse_tsv(tsv.s, tsv.n, "entities", d_out, err);
    if (!st && (*d_out)->n_images != n_reg)
        st = duet_fail(err, DUET_ERR_SHAPE, "phrase data: %zu regions but %zu dataset images", n_reg, (*d_out)->n_images);
    if (!st) *img_out = (duet_mat){feat, n_reg, dim};
    else { free(feat); duet_dataset_free(*d_out); *d_out = NULL; }
    for (int s = 0; s < 3; s++) free_list(lists[s], n_list[s]);
    free(in); free(map);
    duet_sb_free(&tsv);
    return st;
}
