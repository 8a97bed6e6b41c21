/* run.c -- the main job as a graph of cached stages (docs/RUN.md).
 *
 *   image   --\
 *   vectors --> text --> train --> eval
 *                           \----> index (with image)
 *
 * Every stage has a key: the FNV-1a of a text listing its inputs (upstream
 * keys, file identities, dataset content hashes, every setting). Its outputs
 * go to WORK/<stage>-<key>/ and its manifest stage.json is written last
 * (temp + rename), so "stage.json exists with this key" means "done". */
#define _XOPEN_SOURCE 700
#include "run/run.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define MANIFEST "stage.json"
#define RUN_VERSION 1

static const char *const stage_names[DUET_STAGE_COUNT] = {
    "image", "vectors", "text", "train", "eval", "index"};

const char *duet_stage_name(int s) {
    return s >= 0 && s < DUET_STAGE_COUNT ? stage_names[s] : "?";
}

void duet_run_default_config(duet_run_config *c) {
    memset(c, 0, sizeof *c);
    c->cnn = "resnet50";
    c->crops = 1;
    c->text = duet_textmodel_default_params();
    c->train = duet_default_params();
    /* The main job's training profile, tuned on Flickr8K validation recall
     * (docs/RUN.md, "Defaults"): smaller batches with a larger step and a
     * slower decay, a wider margin, early stop on validation R-sum. */
    c->train.batch_images = 128;
    c->train.lr = 2e-4f;
    c->train.lr_decay = 0.93f;
    c->train.epochs = 25;
    c->train.patience = 3;
    c->train.margin = 0.1f;
    c->examples = 6;
    c->build_index = 1;
}

/* ------------------------------------------------------------ utilities */

uint64_t duet_fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) { h ^= b[i]; h *= 1099511628211ULL; }
    return h;
}

void duet_sb_printf(duet_sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->n;
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? room : 0, fmt, ap);
        va_end(ap);
        if (k < 0) { b->oom = 1; return; }
        if (b->s && (size_t)k < room) { b->n += (size_t)k; return; }
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + (size_t)k + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) { b->oom = 1; return; }
        b->s = s;
        b->cap = cap;
    }
}

void duet_sb_html(duet_sbuf *b, const char *t) {
    for (; t && *t; t++) {
        switch (*t) {
        case '<': duet_sb_printf(b, "&lt;"); break;
        case '>': duet_sb_printf(b, "&gt;"); break;
        case '&': duet_sb_printf(b, "&amp;"); break;
        case '"': duet_sb_printf(b, "&quot;"); break;
        case '\'': duet_sb_printf(b, "&#39;"); break;
        default: duet_sb_printf(b, "%c", *t);
        }
    }
}

void duet_sb_free(duet_sbuf *b) {
    if (!b) return;
    free(b->s);
    memset(b, 0, sizeof *b);
}

duet_status duet_write_text(const char *path, const char *text, size_t len, duet_error *err) {
    duet_atomic_file af;
    duet_status st = duet_atomic_open(&af, path, err);
    if (!st) st = duet_atomic_write(&af, text, len, err);
    if (!st) return duet_atomic_commit(&af, err);
    duet_atomic_abort(&af);
    return st;
}

json_t *duet_eval_to_json(const duet_eval_result *r) {
    const duet_recall *q[2] = {&r->i2t, &r->t2i};
    json_t *o = json_object();
    for (int s = 0; s < 2; s++)
        json_object_set_new(o, s ? "t2i" : "i2t",
                            json_pack("{s:f, s:f, s:f, s:f, s:f}", "r1", q[s]->r1, "r5", q[s]->r5,
                                      "r10", q[s]->r10, "medr", q[s]->medr, "meanr", q[s]->meanr));
    json_object_set_new(o, "rsum", json_real(r->rsum));
    json_object_set_new(o, "n_images", json_integer((json_int_t)r->n_images));
    json_object_set_new(o, "n_captions", json_integer((json_int_t)r->n_captions));
    json_object_set_new(o, "n_folds", json_integer((json_int_t)r->n_folds));
    return o;
}

void duet_eval_from_json(const json_t *o, duet_eval_result *r) {
    memset(r, 0, sizeof *r);
    duet_recall *q[2] = {&r->i2t, &r->t2i};
    for (int s = 0; s < 2; s++) {
        json_t *x = json_object_get(o, s ? "t2i" : "i2t");
        q[s]->r1 = json_number_value(json_object_get(x, "r1"));
        q[s]->r5 = json_number_value(json_object_get(x, "r5"));
        q[s]->r10 = json_number_value(json_object_get(x, "r10"));
        q[s]->medr = json_number_value(json_object_get(x, "medr"));
        q[s]->meanr = json_number_value(json_object_get(x, "meanr"));
    }
    r->rsum = json_number_value(json_object_get(o, "rsum"));
    r->n_images = (size_t)json_integer_value(json_object_get(o, "n_images"));
    r->n_captions = (size_t)json_integer_value(json_object_get(o, "n_captions"));
    r->n_folds = (size_t)json_integer_value(json_object_get(o, "n_folds"));
}

const duet_eval_result duet_klein2015_flickr8k = {
    {22.6, 48.8, 61.2, 0, 0}, {19.1, 45.3, 60.4, 0, 0}, 257.4, 1000, 5000, 1};

void duet_run_describe(const duet_run_config *c, char *buf, size_t n) {
    const duet_params *p = &c->train;
    snprintf(buf, n, "%s, %s, %s%s", duet_encoder_name(c->text.encoder), p->linear ? "linear" : "MLP",
             p->one_way ? "one-way" : "two-way", p->w_txt_struct > 0 || p->w_img_struct > 0 ? " + structure" : "");
}

void duet_run_result_free(duet_run_result *r) {
    if (!r) return;
    for (int s = 0; s < DUET_STAGE_COUNT; s++) free(r->stage[s].dir);
    free(r->logs);
    for (size_t i = 0; r->examples && i < r->n_examples; i++) {
        duet_run_example *x = &r->examples[i];
        free(x->query);
        free(x->truth);
        for (size_t k = 0; k < x->n_top; k++) free(x->top[k]);
    }
    free(r->examples);
    free(r->model_path); free(r->text_model_path); free(r->image_features);
    free(r->text_features); free(r->index_path);
    memset(r, 0, sizeof *r);
}

/* mkdir -p */
static duet_status make_dirs(const char *path, duet_error *err) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "%s: path too long", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return duet_fail(err, DUET_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
            *p = c;
            if (!c) break;
        }
    }
    return DUET_OK;
}

/* A file's identity for a key: absolute path, size and modification time
 * (large inputs such as CNN weights and word vectors are not re-read). */
static duet_status file_ident(duet_sbuf *b, const char *what, const char *path, duet_error *err) {
    struct stat sb;
    char abs[PATH_MAX];
    if (!path) return duet_fail(err, DUET_ERR_INVALID_ARG, "run: no %s file given", what);
    if (stat(path, &sb) != 0 || !realpath(path, abs))
        return duet_fail(err, DUET_ERR_IO, "%s: %s not found: %s", path, what, strerror(errno));
    duet_sb_printf(b, "%s=%s size=%lld mtime=%lld.%09ld\n", what, abs, (long long)sb.st_size,
                   (long long)sb.st_mtim.tv_sec, (long)sb.st_mtim.tv_nsec);
    return DUET_OK;
}

static long peak_rss_kb(void) {
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : 0;
}

/* ------------------------------------------------------------ the state */

typedef struct run_state {
    const duet_run_config *c;
    const duet_run_hooks *h;
    duet_run_result *res;
    duet_dataset *d;             /* (subset of) the dataset, owned */
    uint64_t names_hash, data_hash;
    json_t *man[DUET_STAGE_COUNT]; /* manifests of done stages, owned */
    double t_stage;
} run_state;

static void say(const run_state *rs, const char *fmt, ...) DUET_PRINTF(2, 3);
static void say(const run_state *rs, const char *fmt, ...) {
    if (!rs->h || !rs->h->log) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    rs->h->log(rs->h->user, line);
}

static int cancelled(const run_state *rs) { return rs->h && rs->h->cancel && *rs->h->cancel; }

static duet_status interrupted(int s, duet_error *err) {
    return duet_fail(err, DUET_ERR_INTERRUPTED, "interrupted in stage %s; run the same "
                     "command again to resume", duet_stage_name(s));
}

/* Path of a file in stage s's directory (a static-size buffer of the caller). */
static void stage_path(const run_state *rs, int s, const char *file, char *out, size_t n) {
    snprintf(out, n, "%s/%s", rs->res->stage[s].dir, file);
}

/* Removes temp files ("*.tmp.*") an interrupted writer left in dir. */
static void clean_temps(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char p[PATH_MAX];
    while ((de = readdir(d)))
        if (strstr(de->d_name, ".tmp.")) {
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            remove(p);
        }
    closedir(d);
}

/* 1 when an output file a manifest names is gone (deleted by hand). */
static int outputs_missing(const run_state *rs, int s, const json_t *m) {
    static const char *const fields[] = {"features", "vectors", "text_model", "model", "index"};
    char p[PATH_MAX];
    struct stat sb;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const char *f = json_string_value(json_object_get(m, fields[i]));
        if (!f) continue;
        stage_path(rs, s, f, p, sizeof p);
        if (stat(p, &sb) != 0) {
            say(rs, "%-7s %s is missing: building the stage again", stage_names[s], p);
            return 1;
        }
    }
    return 0;
}

/* Computes stage s's key from its inputs text and looks for its manifest.
 * Returns DUET_OK; *done = 1 when the stage is complete. */
static duet_status stage_open(run_state *rs, int s, duet_sbuf *inputs, int *done, duet_error *err) {
    duet_run_stage *st = &rs->res->stage[s];
    *done = 0;
    duet_sb_printf(inputs, "run-version=%d\n", RUN_VERSION);
    if (inputs->oom) return duet_fail(err, DUET_ERR_NOMEM, "run: out of memory");
    snprintf(st->key, sizeof st->key, "%016llx",
             (unsigned long long)duet_fnv(DUET_FNV_INIT, inputs->s, inputs->n));
    duet_sbuf dir = {0};
    duet_sb_printf(&dir, "%s/%s-%s", rs->c->work, stage_names[s], st->key);
    if (dir.oom) return duet_fail(err, DUET_ERR_NOMEM, "run: out of memory");
    st->dir = dir.s;
    rs->t_stage = duet_now();
    char mp[PATH_MAX];
    stage_path(rs, s, MANIFEST, mp, sizeof mp);
    json_error_t je;
    json_t *m = json_load_file(mp, 0, &je);
    const char *k = m ? json_string_value(json_object_get(m, "key")) : NULL;
    if (k && strcmp(k, st->key) == 0 && !outputs_missing(rs, s, m)) {
        rs->man[s] = m;
        st->state = DUET_STAGE_CACHED;
        st->build_seconds = json_number_value(json_object_get(m, "seconds"));
        long pk = (long)json_integer_value(json_object_get(m, "peak_rss_kb"));
        if (pk > rs->res->build_peak_rss_kb) rs->res->build_peak_rss_kb = pk;
        st->seconds = duet_now() - rs->t_stage;
        say(rs, "%-7s cached  %s (built in %.1f s)", stage_names[s], st->dir, st->build_seconds);
        *done = 1;
        return DUET_OK;
    }
    json_decref(m);
    duet_status e = make_dirs(st->dir, err);
    if (e) return e;
    clean_temps(st->dir);
    say(rs, "%-7s running %s", stage_names[s], st->dir);
    return DUET_OK;
}

/* Writes stage s's manifest m (taken over) last, marking the stage done. */
static duet_status stage_close(run_state *rs, int s, json_t *m, const duet_sbuf *inputs, duet_error *err) {
    duet_run_stage *st = &rs->res->stage[s];
    if (!m) return duet_fail(err, DUET_ERR_NOMEM, "run: out of memory");
    st->build_seconds = st->seconds = duet_now() - rs->t_stage;
    if (peak_rss_kb() > rs->res->build_peak_rss_kb) rs->res->build_peak_rss_kb = peak_rss_kb();
    json_object_set_new(m, "stage", json_string(stage_names[s]));
    json_object_set_new(m, "key", json_string(st->key));
    json_object_set_new(m, "seconds", json_real(st->seconds));
    json_object_set_new(m, "peak_rss_kb", json_integer(peak_rss_kb()));
    json_object_set_new(m, "inputs", json_string(inputs->s));
    char *txt = json_dumps(m, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(8));
    char mp[PATH_MAX];
    stage_path(rs, s, MANIFEST, mp, sizeof mp);
    duet_status e = txt ? duet_write_text(mp, txt, strlen(txt), err)
                        : duet_fail(err, DUET_ERR_NOMEM, "run: out of memory");
    free(txt);
    if (e) { json_decref(m); return e; }
    rs->man[s] = m;
    st->state = DUET_STAGE_BUILT;
    say(rs, "%-7s built   in %.1f s", stage_names[s], st->seconds);
    return DUET_OK;
}

/* The files later stages read from the stages before them. */
typedef struct upstream {
    char img[PATH_MAX], txt[PATH_MAX], textmodel[PATH_MAX], model[PATH_MAX];
} upstream;

static void upstream_paths(const run_state *rs, upstream *u) {
    stage_path(rs, DUET_STAGE_IMAGE, "features.npy", u->img, sizeof u->img);
    stage_path(rs, DUET_STAGE_TEXT, "features.npy", u->txt, sizeof u->txt);
    stage_path(rs, DUET_STAGE_TEXT, "text.model", u->textmodel, sizeof u->textmodel);
    stage_path(rs, DUET_STAGE_TRAIN, "model.duet", u->model, sizeof u->model);
}

/* Reads the image and caption features (caller frees both with
 * duet_mat_free, also on failure) and checks them against the dataset. */
static duet_status load_features(const run_state *rs, const upstream *u, duet_mat *img, duet_mat *txt,
                                 duet_error *err) {
    duet_status st = duet_npy_read(u->img, img, err);
    if (!st) st = duet_npy_read(u->txt, txt, err);
    if (!st) st = duet_check_features(rs->d, img, u->img, txt, u->txt, err);
    return st;
}

/* ------------------------------------------------------------ dataset */

static char *dup_or_null(const char *s, int *oom) {
    char *r = duet_strdup(s);
    if (s && !r) *oom = 1;
    return r;
}

/* Declared in run.h. */
duet_status duet_run_subset(const duet_dataset *d, const uint8_t *keep, duet_dataset **out, duet_error *err) {
    *out = NULL;
    size_t ni = 0, nc = 0;
    duet_dataset *s = calloc(1, sizeof *s);
    if (!s) return duet_fail(err, DUET_ERR_NOMEM, "run: out of memory");
    for (size_t i = 0; i < d->n_images; i++)
        if (keep[i]) { ni++; nc += d->image_cap_start[i + 1] - d->image_cap_start[i]; }
    int oom = 0;
    s->image_names = duet_calloc_array(ni, sizeof(char *));
    s->image_split = duet_calloc_array(ni, 1);
    s->captions = duet_calloc_array(nc, sizeof(char *));
    s->caption_image = duet_calloc_array(nc, sizeof(size_t));
    s->image_cap_start = duet_calloc_array(ni + 1, sizeof(size_t));
    s->image_caps = duet_calloc_array(nc, sizeof(size_t));
    s->source = dup_or_null(d->source, &oom);
    oom |= !s->image_names || !s->image_split || !s->captions || !s->caption_image ||
           !s->image_cap_start || !s->image_caps;
    /* captions grouped by image, in the order of each image's captions */
    for (size_t i = 0; i < d->n_images && !oom; i++) {
        if (!keep[i]) continue;
        size_t k = s->n_images++;
        s->image_names[k] = dup_or_null(d->image_names[i], &oom);
        s->image_split[k] = d->image_split[i];
        s->image_cap_start[k] = s->n_captions;
        for (size_t q = d->image_cap_start[i]; q < d->image_cap_start[i + 1]; q++) {
            size_t j = s->n_captions++;
            s->captions[j] = dup_or_null(d->captions[d->image_caps[q]], &oom);
            s->caption_image[j] = k;
            s->image_caps[j] = j;
        }
        s->image_cap_start[k + 1] = s->n_captions;
    }
    if (oom) { duet_dataset_free(s); return duet_fail(err, DUET_ERR_NOMEM, "run: out of memory"); }
    *out = s;
    return DUET_OK;
}

/* The first `limit` images of each split (--limit). */
static duet_status subset(const duet_dataset *d, size_t limit, duet_dataset **out, duet_error *err) {
    size_t cnt[DUET_SPLIT_TEST + 1] = {0};
    uint8_t *keep = duet_calloc_array(d->n_images ? d->n_images : 1, 1);
    if (!keep) return duet_fail(err, DUET_ERR_NOMEM, "run: out of memory");
    for (size_t i = 0; i < d->n_images; i++) {
        int sp = d->image_split[i];
        if (sp > DUET_SPLIT_TEST || cnt[sp] >= limit) continue;
        cnt[sp]++;
        keep[i] = 1;
    }
    duet_status st = duet_run_subset(d, keep, out, err);
    free(keep);
    return st;
}

duet_status duet_run_load_dataset(const duet_run_config *c, duet_dataset **out, duet_error *err) {
    *out = NULL;
    duet_dataset *full = NULL;
    duet_status st = duet_dataset_load(c->dataset, &full, err);
    if (st || !c->limit) { *out = full; return st; }
    st = subset(full, c->limit, out, err);
    duet_dataset_free(full);
    return st;
}

static void hash_dataset(run_state *rs) {
    const duet_dataset *d = rs->d;
    uint64_t hn = DUET_FNV_INIT, hd;
    for (size_t i = 0; i < d->n_images; i++) hn = duet_fnv(hn, d->image_names[i], strlen(d->image_names[i]) + 1);
    hd = duet_fnv(hn, d->image_split, d->n_images);
    for (size_t j = 0; j < d->n_captions; j++) {
        hd = duet_fnv(hd, d->captions[j], strlen(d->captions[j]) + 1);
        uint64_t im = d->caption_image[j];
        hd = duet_fnv(hd, &im, sizeof im);
    }
    rs->names_hash = hn;
    rs->data_hash = hd;
}

static duet_status load_dataset(run_state *rs, duet_error *err) {
    duet_status st = duet_run_load_dataset(rs->c, &rs->d, err);
    if (st) return st;
    for (size_t i = 0; i < rs->d->n_images; i++)
        if (rs->d->image_split[i] <= DUET_SPLIT_TEST) rs->res->n_split[rs->d->image_split[i]]++;
    rs->res->n_captions = rs->d->n_captions;
    if (!rs->res->n_split[DUET_SPLIT_TRAIN] || !rs->res->n_split[DUET_SPLIT_TEST])
        return duet_fail(err, DUET_ERR_EMPTY, "%s: the run needs train and test images "
                         "(%zu train, %zu test)", rs->c->dataset, rs->res->n_split[0], rs->res->n_split[2]);
    hash_dataset(rs);
    return DUET_OK;
}

/* ------------------------------------------------------------ image */

static duet_status image_key(run_state *rs, duet_sbuf *in, duet_error *err) {
    const duet_run_config *c = rs->c;
    char abs[PATH_MAX];
    if (!c->images || !realpath(c->images, abs))
        return duet_fail(err, DUET_ERR_IO, "%s: image directory not found", c->images ? c->images : "(none)");
    duet_sb_printf(in, "stage=image\ncnn=%s\ncrops=%d\nimages=%s\n", c->cnn, c->crops, abs);
    duet_status st = file_ident(in, "weights", c->cnn_weights, err);
    if (st) return st;
    /* every image file's size and mtime, in dataset order */
    uint64_t h = rs->names_hash;
    duet_sbuf p = {0};
    for (size_t i = 0; i < rs->d->n_images; i++) {
        struct stat sb;
        p.n = 0;
        duet_sb_printf(&p, "%s/%s", abs, rs->d->image_names[i]);
        if (p.oom) { duet_sb_free(&p); return duet_fail(err, DUET_ERR_NOMEM, "run: out of memory"); }
        if (stat(p.s, &sb) != 0) {
            st = duet_fail(err, DUET_ERR_IO, "%s: image of %s not found: %s", p.s, c->dataset, strerror(errno));
            duet_sb_free(&p);
            return st;
        }
        int64_t v[3] = {(int64_t)sb.st_size, (int64_t)sb.st_mtim.tv_sec, (int64_t)sb.st_mtim.tv_nsec};
        h = duet_fnv(h, v, sizeof v);
    }
    duet_sb_free(&p);
    duet_sb_printf(in, "n_images=%zu files=%016llx\n", rs->d->n_images, (unsigned long long)h);
    return DUET_OK;
}

static duet_status image_part(run_state *rs, duet_cnn *net, size_t b0, size_t b1, float *feats,
                              duet_error *err) {
    enum { BATCH = 8 };
    size_t dim = duet_cnn_feature_dim(net);
    duet_image ims[BATCH];
    const duet_image *ip[BATCH];
    char path[PATH_MAX];
    duet_status st = DUET_OK;
    for (size_t i = b0; i < b1 && !st; i += BATCH) {
        if (cancelled(rs)) return interrupted(DUET_STAGE_IMAGE, err);
        size_t m = b1 - i < BATCH ? b1 - i : BATCH, got = 0;
        for (; got < m; got++) {
            snprintf(path, sizeof path, "%s/%s", rs->c->images, rs->d->image_names[i + got]);
            if ((st = duet_image_read(path, &ims[got], err))) break;
            ip[got] = &ims[got];
        }
        if (!st) st = duet_cnn_images(net, ip, m, rs->c->crops, rs->c->crops == 10 ? 20 : BATCH,
                                      feats + (i - b0) * dim, NULL, err);
        for (size_t k = 0; k < got; k++) duet_image_free(&ims[k]);
        if (rs->h && rs->h->progress) rs->h->progress(rs->h->user, "image", i + m, rs->d->n_images);
    }
    return st;
}

static duet_status stage_image(run_state *rs, duet_error *err) {
    const int S = DUET_STAGE_IMAGE;
    duet_sbuf in = {0};
    int done;
    duet_status st = image_key(rs, &in, err);
    if (!st) st = stage_open(rs, S, &in, &done, err);
    if (st || done) { duet_sb_free(&in); return st; }
    duet_cnn *net = NULL;
    const char *w = rs->c->cnn_weights;
    size_t l = strlen(w);
    if (l > 7 && strcmp(w + l - 7, ".tflite") == 0) st = duet_cnn_load_tflite(w, &net, err);
    else st = duet_cnn_load_tfjs(w, &net, err);
    size_t n = rs->d->n_images, dim = st ? 0 : duet_cnn_feature_dim(net);
    duet_mat f = {st ? NULL : duet_alloc_array(n, dim * sizeof(float)), n, dim};
    if (!st && !f.data) st = duet_fail(err, DUET_ERR_NOMEM, "run: out of memory (%zu x %zu image features)", n, dim);
    size_t nparts = (n + DUET_RUN_PART - 1) / DUET_RUN_PART, reused = 0;
    char pp[PATH_MAX];
    for (size_t p = 0; !st && p < nparts; p++) {
        size_t b0 = p * DUET_RUN_PART, b1 = b0 + DUET_RUN_PART < n ? b0 + DUET_RUN_PART : n;
        snprintf(pp, sizeof pp, "%s/part-%05zu.npy", rs->res->stage[S].dir, p);
        duet_mat part = {0};
        duet_error ignore = {0};
        if (duet_npy_read(pp, &part, &ignore) == DUET_OK && part.rows == b1 - b0 && part.cols == dim) {
            memcpy(f.data + b0 * dim, part.data, (b1 - b0) * dim * sizeof(float));
            duet_mat_free(&part);
            reused++;
            continue;
        }
        duet_mat_free(&part);
        st = image_part(rs, net, b0, b1, f.data + b0 * dim, err);
        duet_mat pm = {f.data + b0 * dim, b1 - b0, dim};
        if (!st) st = duet_npy_write(pp, &pm, err);
    }
    if (reused) say(rs, "image   resumed: %zu of %zu parts were done", reused, nparts);
    char out[PATH_MAX];
    stage_path(rs, S, "features.npy", out, sizeof out);
    if (!st) st = duet_mat_check_finite(&f, out, err);
    if (!st) st = duet_npy_write(out, &f, err);
    if (!st) {
        char desc[128];
        snprintf(desc, sizeof desc, "%s crops=%d", rs->c->cnn, rs->c->crops);
        st = stage_close(rs, S, json_pack("{s:s, s:I, s:I, s:s}", "features", "features.npy", "rows",
                                          (json_int_t)n, "dim", (json_int_t)dim, "image_model", desc),
                         &in, err);
    }
    if (!st)
        for (size_t p = 0; p < nparts; p++) {
            snprintf(pp, sizeof pp, "%s/part-%05zu.npy", rs->res->stage[S].dir, p);
            remove(pp);
        }
    duet_mat_free(&f);
    duet_cnn_free(net);
    duet_sb_free(&in);
    return st;
}

/* ------------------------------------------------------------ vectors */

static int uses_vectors(const run_state *rs) { return rs->c->text.encoder != DUET_ENC_TFIDF; }

static duet_status stage_vectors(run_state *rs, duet_error *err) {
    const int S = DUET_STAGE_VECTORS;
    if (!uses_vectors(rs)) {
        rs->res->stage[S].state = DUET_STAGE_SKIPPED;
        return DUET_OK;
    }
    duet_sbuf in = {0};
    int done;
    duet_sb_printf(&in, "stage=vectors\ncaptions=%016llx\n", (unsigned long long)rs->data_hash);
    duet_status st = file_ident(&in, "vectors", rs->c->vectors, err);
    if (!st) st = stage_open(rs, S, &in, &done, err);
    if (st || done) { duet_sb_free(&in); return st; }
    duet_vectors *v = NULL;
    char out[PATH_MAX];
    stage_path(rs, S, "vectors.duet", out, sizeof out);
    st = duet_vectors_import(rs->c->vectors, DUET_VEC_AUTO, &v, err);
    size_t n0 = st ? 0 : duet_vectors_count(v);
    if (!st) st = duet_vectors_restrict(v, rs->d, err);
    if (!st) st = duet_vectors_save(v, out, err);
    if (!st) {
        say(rs, "vectors %zu of %zu words occur in the captions", duet_vectors_count(v), n0);
        st = stage_close(rs, S, json_pack("{s:s, s:I, s:I, s:I}", "vectors", "vectors.duet", "words",
                                          (json_int_t)duet_vectors_count(v), "source_words", (json_int_t)n0,
                                          "dim", (json_int_t)duet_vectors_dim(v)), &in, err);
    }
    duet_vectors_free(v);
    duet_sb_free(&in);
    return st;
}

/* ------------------------------------------------------------ text */

static void text_progress(void *user, const char *stage, size_t done, size_t total) {
    const run_state *rs = user;
    say(rs, "text    %s (%zu)", stage, total);
    (void)done;
}

static duet_status stage_text(run_state *rs, duet_error *err) {
    const int S = DUET_STAGE_TEXT;
    const duet_textmodel_params *p = &rs->c->text;
    duet_sbuf in = {0};
    int done;
    duet_sb_printf(&in, "stage=text\nvectors=%s\ndataset=%016llx\nencoder=%s\ncomponents=%zu\npca=%zu\n"
                   "pca_samples=%zu\nem_iters=%d\nem_tol=%.9g\nreg_covar=%.9g\nmin_scale=%.9g\nica=%d\nseed=%llu\n",
                   uses_vectors(rs) ? rs->res->stage[DUET_STAGE_VECTORS].key : "none",
                   (unsigned long long)rs->data_hash, duet_encoder_name(p->encoder), p->components,
                   p->pca_dim, p->pca_samples, p->em_iters, p->em_tol, p->reg_covar, p->min_scale, p->ica,
                   (unsigned long long)p->seed);
    duet_status st = stage_open(rs, S, &in, &done, err);
    if (st || done) { duet_sb_free(&in); return st; }
    duet_vectors *v = NULL;
    duet_textmodel *m = NULL;
    duet_text_stats fs, es;
    duet_mat f = {0};
    char vp[PATH_MAX], mp[PATH_MAX], fp[PATH_MAX];
    stage_path(rs, DUET_STAGE_VECTORS, "vectors.duet", vp, sizeof vp);
    stage_path(rs, S, "text.model", mp, sizeof mp);
    stage_path(rs, S, "features.npy", fp, sizeof fp);
    if (uses_vectors(rs)) st = duet_vectors_load(vp, &v, err);
    if (!st) st = duet_textmodel_fit(rs->d, v, p, text_progress, rs, &m, &fs, err);
    duet_vectors_free(v);
    if (!st) st = duet_textmodel_save(m, mp, err);
    if (!st) {
        f.rows = rs->d->n_captions;
        f.cols = duet_textmodel_dim(m);
        if (!(f.data = duet_alloc_array(f.rows, f.cols * sizeof(float))))
            st = duet_fail(err, DUET_ERR_NOMEM, "run: out of memory (%zu x %zu text features)", f.rows, f.cols);
    }
    if (!st) st = duet_textmodel_encode(m, (const char *const *)rs->d->captions, f.rows, &f, NULL, &es, err);
    if (!st) st = duet_npy_write(fp, &f, err);
    char hex[17] = "";
    if (!st) st = duet_file_hash(mp, hex, err);
    if (!st) {
        char hash[32];
        snprintf(hash, sizeof hash, "fnv1a64:%s", hex);
        say(rs, "text    %s: %zu-D; %zu of %zu tokens known, %zu captions with no known word",
            duet_encoder_name(p->encoder), f.cols, es.n_known, es.n_tokens, es.n_empty);
        st = stage_close(rs, S, json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:f}", "text_model", "text.model",
                                          "text_model_hash", hash, "features", "features.npy",
                                          "dim", (json_int_t)f.cols, "tokens", (json_int_t)es.n_tokens,
                                          "known", (json_int_t)es.n_known, "empty", (json_int_t)es.n_empty,
                                          "fit_seconds", fs.seconds), &in, err);
    }
    duet_mat_free(&f);
    duet_textmodel_free(m);
    duet_sb_free(&in);
    return st;
}

/* ------------------------------------------------------------ train */

typedef struct train_ctx { run_state *rs; int epochs; } train_ctx;

static int train_step(void *user, int epoch, size_t step, size_t steps, double loss) {
    train_ctx *t = user;
    const run_state *rs = t->rs;
    if (rs->h && rs->h->progress)
        rs->h->progress(rs->h->user, "train", (size_t)(epoch - 1) * steps + step, (size_t)t->epochs * steps);
    (void)loss;
    return cancelled(rs);
}

static void train_epoch(void *user, const duet_epoch_log *l) {
    train_ctx *t = user;
    char val[32] = "-";
    if (l->val_rsum >= 0) snprintf(val, sizeof val, "%.1f", l->val_rsum);
    say(t->rs, "train   epoch %d/%d  loss %.4f  val R-sum %s  lr %.3g  %.1f s", l->epoch, t->epochs,
        l->loss, val, (double)l->lr, l->seconds);
}

static duet_status train_key(const run_state *rs, duet_sbuf *in) {
    const duet_params *p = &rs->c->train;
    duet_sb_printf(in, "stage=train\nimage=%s\ntext=%s\ndataset=%016llx\n", rs->res->stage[DUET_STAGE_IMAGE].key,
                   rs->res->stage[DUET_STAGE_TEXT].key, (unsigned long long)rs->data_hash);
    duet_sb_printf(in, "linear=%d hidden=%zu embed_dim=%zu dropout=%.9g bn_eps=%.9g bn_momentum=%.9g\n",
                   p->linear, p->hidden, p->embed_dim, (double)p->dropout, (double)p->bn_eps, (double)p->bn_momentum);
    duet_sb_printf(in, "margin=%.9g top_k=%zu w_i2t=%.9g w_t2i=%.9g w_img_struct=%.9g w_txt_struct=%.9g one_way=%d\n",
                   (double)p->margin, p->top_k, (double)p->w_i2t, (double)p->w_t2i, (double)p->w_img_struct,
                   (double)p->w_txt_struct, p->one_way);
    duet_sb_printf(in, "batch_images=%zu sents_per_image=%zu optimizer=%d lr=%.9g lr_decay=%.9g momentum=%.9g "
                   "weight_decay=%.9g adam=%.9g,%.9g,%.9g epochs=%d patience=%d seed=%llu\n",
                   p->batch_images, p->sents_per_image, (int)p->optimizer, (double)p->lr, (double)p->lr_decay,
                   (double)p->momentum, (double)p->weight_decay, (double)p->adam_beta1, (double)p->adam_beta2,
                   (double)p->adam_eps, p->epochs, p->patience, (unsigned long long)p->seed);
    return DUET_OK;
}

static duet_status stage_train(run_state *rs, duet_error *err) {
    const int S = DUET_STAGE_TRAIN;
    duet_sbuf in = {0};
    int done;
    train_key(rs, &in);
    duet_status st = stage_open(rs, S, &in, &done, err);
    if (st || done) { duet_sb_free(&in); return st; }
    upstream u;
    char ck[PATH_MAX];
    upstream_paths(rs, &u);
    stage_path(rs, S, "model.ckpt", ck, sizeof ck);
    duet_mat img = {0}, txt = {0};
    duet_model *m = NULL;
    duet_epoch_log *logs = NULL;
    size_t nlogs = 0;
    st = load_features(rs, &u, &img, &txt, err);
    FILE *probe = st ? NULL : fopen(ck, "rb");
    if (probe) { fclose(probe); say(rs, "train   resuming from %s", ck); }
    train_ctx tc = {rs, rs->c->train.epochs};
    duet_train_opts o = {ck, 1, train_step, &tc, train_epoch, &tc, rs->h ? rs->h->cancel : NULL};
    if (!st) st = duet_train(rs->d, &img, &txt, &rs->c->train, &o, &m, &logs, &nlogs, err);
    if (st == DUET_ERR_INTERRUPTED) interrupted(S, err);
    duet_mat_free(&img);
    duet_mat_free(&txt);
    if (!st) {
        duet_model_info *info = duet_model_info_of(m);
        const char *hash = json_string_value(json_object_get(rs->man[DUET_STAGE_TEXT], "text_model_hash"));
        const char *im = json_string_value(json_object_get(rs->man[DUET_STAGE_IMAGE], "image_model"));
        free(info->dataset);
        int oom = 0;
        info->dataset = dup_or_null(rs->c->dataset, &oom);
        info->image_features = dup_or_null(u.img, &oom);
        info->text_features = dup_or_null(u.txt, &oom);
        info->text_model = dup_or_null(u.textmodel, &oom);
        info->text_model_hash = dup_or_null(hash, &oom);
        info->image_model = dup_or_null(im, &oom);
        st = oom ? duet_fail(err, DUET_ERR_NOMEM, "run: out of memory") : duet_model_save(m, u.model, err);
    }
    if (!st) {
        duet_model_info *info = duet_model_info_of(m);
        json_t *eps = json_array();
        for (size_t i = 0; i < nlogs; i++)
            json_array_append_new(eps, json_pack("{s:i, s:f, s:f, s:f, s:f}", "epoch", logs[i].epoch, "loss",
                                                 logs[i].loss, "val_rsum", logs[i].val_rsum, "seconds",
                                                 logs[i].seconds, "lr", (double)logs[i].lr));
        st = stage_close(rs, S, json_pack("{s:s, s:i, s:i, s:f, s:o}", "model", "model.duet", "epochs_run",
                                          info->epochs_run, "best_epoch", info->best_epoch, "best_val_rsum",
                                          (double)info->best_val_rsum, "epochs", eps), &in, err);
        if (!st) remove(ck);
    }
    free(logs);
    duet_model_free(m);
    duet_sb_free(&in);
    return st;
}

/* ------------------------------------------------------------ eval */

/* Embeds the rows `rows` of x (all when rows is NULL) with one branch. */
static duet_status embed_rows(const duet_model *m, int side, const duet_mat *x, const size_t *rows, size_t n,
                              duet_mat *out, duet_error *err) {
    duet_mat sel = {duet_alloc_array(n, x->cols * sizeof(float)), n, x->cols};
    out->rows = n;
    out->cols = duet_model_embed_dim(m);
    out->data = duet_alloc_array(n, out->cols * sizeof(float));
    if (!sel.data || !out->data) { duet_mat_free(&sel); return duet_fail(err, DUET_ERR_NOMEM, "run: out of memory"); }
    for (size_t i = 0; i < n; i++) memcpy(sel.data + i * x->cols, x->data + rows[i] * x->cols, x->cols * sizeof(float));
    duet_status st = duet_model_embed(m, side, &sel, out, err);
    duet_mat_free(&sel);
    return st;
}

/* A few test captions (evenly spread) as queries against the test images. */
static json_t *examples(run_state *rs, const duet_model *m, const duet_mat *img, const duet_mat *txt,
                        duet_error *err, duet_status *st) {
    json_t *arr = json_array();
    size_t *ti = NULL, nti = 0;
    duet_mat ie = {0}, qe = {0};
    size_t nq = rs->c->examples;
    if (!nq) return arr;
    if ((*st = duet_dataset_split_images(rs->d, DUET_SPLIT_TEST, &ti, &nti, err))) goto out;
    if (nq > nti) nq = nti;
    size_t *qrows = duet_alloc_array(nq, sizeof(size_t)), *qimg = duet_alloc_array(nq, sizeof(size_t));
    float *sc = duet_alloc_array(nti, sizeof(float));
    if (!qrows || !qimg || !sc) { *st = duet_fail(err, DUET_ERR_NOMEM, "run: out of memory"); goto out2; }
    for (size_t q = 0; q < nq; q++) {
        size_t k = q * nti / nq, im = ti[k];
        qimg[q] = k;
        qrows[q] = rs->d->image_caps[rs->d->image_cap_start[im]];
    }
    if ((*st = embed_rows(m, DUET_SIDE_IMAGE, img, ti, nti, &ie, err)) ||
        (*st = embed_rows(m, DUET_SIDE_TEXT, txt, qrows, nq, &qe, err)))
        goto out2;
    for (size_t q = 0; q < nq; q++) {
        for (size_t i = 0; i < nti; i++) {
            double s = 0;
            for (size_t c = 0; c < ie.cols; c++) s += (double)qe.data[q * qe.cols + c] * ie.data[i * ie.cols + c];
            sc[i] = (float)s;
        }
        int rank = 1;
        for (size_t i = 0; i < nti; i++) rank += sc[i] > sc[qimg[q]];
        json_t *top = json_array();
        for (int k = 0; k < 5 && (size_t)k < nti; k++) {
            size_t b = 0;
            for (size_t i = 1; i < nti; i++) if (sc[i] > sc[b]) b = i;
            json_array_append_new(top, json_pack("{s:s, s:f}", "image", rs->d->image_names[ti[b]], "score", (double)sc[b]));
            sc[b] = -INFINITY;
        }
        json_array_append_new(arr, json_pack("{s:s, s:s, s:i, s:o}", "query", rs->d->captions[qrows[q]], "truth",
                                             rs->d->image_names[ti[qimg[q]]], "truth_rank", rank, "top", top));
    }
out2:
    free(qrows); free(qimg); free(sc);
out:
    free(ti);
    duet_mat_free(&ie);
    duet_mat_free(&qe);
    return arr;
}

static duet_status stage_eval(run_state *rs, duet_error *err) {
    const int S = DUET_STAGE_EVAL;
    duet_sbuf in = {0};
    int done;
    duet_sb_printf(&in, "stage=eval\ntrain=%s\nfold_size=%zu\nexamples=%zu\n", rs->res->stage[DUET_STAGE_TRAIN].key,
                   rs->c->fold_size, rs->c->examples);
    duet_status st = stage_open(rs, S, &in, &done, err);
    if (st || done) { duet_sb_free(&in); return st; }
    upstream u;
    upstream_paths(rs, &u);
    duet_mat img = {0}, txt = {0};
    duet_model *m = NULL;
    duet_eval_result val = {0}, test = {0};
    st = duet_model_load(u.model, &m, err);
    if (!st) st = load_features(rs, &u, &img, &txt, err);
    if (!st && rs->res->n_split[DUET_SPLIT_VAL])
        st = duet_evaluate(m, rs->d, &img, &txt, DUET_SPLIT_VAL, 0, &val, err);
    if (!st) st = duet_evaluate(m, rs->d, &img, &txt, DUET_SPLIT_TEST, rs->c->fold_size, &test, err);
    json_t *ex = st ? NULL : examples(rs, m, &img, &txt, err, &st);
    if (!st) {
        say(rs, "eval    test R-sum %.1f (image->text R@1 %.1f, text->image R@1 %.1f)", test.rsum, test.i2t.r1,
            test.t2i.r1);
        st = stage_close(rs, S, json_pack("{s:o, s:o, s:o}", "val", duet_eval_to_json(&val), "test",
                                          duet_eval_to_json(&test), "examples", ex), &in, err);
        ex = NULL;
    }
    json_decref(ex);
    duet_mat_free(&img);
    duet_mat_free(&txt);
    duet_model_free(m);
    duet_sb_free(&in);
    return st;
}

/* ------------------------------------------------------------ index */

/* The search index of the test images and captions (duet_index_write, issue
 * 5), served by `duet serve --index WORK/index-KEY/test.index`. */
static duet_status stage_index(run_state *rs, duet_error *err) {
    const int S = DUET_STAGE_INDEX;
    if (!rs->c->build_index) {
        rs->res->stage[S].state = DUET_STAGE_SKIPPED;
        return DUET_OK;
    }
    duet_sbuf in = {0};
    int done;
    char abs[PATH_MAX];
    if (!realpath(rs->c->images, abs)) snprintf(abs, sizeof abs, "%s", rs->c->images);
    char wabs[PATH_MAX];
    if (!realpath(rs->c->work, wabs)) snprintf(wabs, sizeof wabs, "%s", rs->c->work);
    /* the index records absolute paths of the model files: the work dir is an input */
    duet_sb_printf(&in, "stage=index\ntrain=%s\nimages=%s\nwork=%s\n", rs->res->stage[DUET_STAGE_TRAIN].key, abs, wabs);
    duet_status st = stage_open(rs, S, &in, &done, err);
    if (st || done) { duet_sb_free(&in); return st; }
    upstream u;
    char xp[PATH_MAX];
    upstream_paths(rs, &u);
    stage_path(rs, S, "test.index", xp, sizeof xp);
    duet_mat img = {0}, txt = {0}, ie = {0}, te = {0};
    duet_model *m = NULL;
    size_t *ti = NULL, nti = 0, *caps = NULL, nc = 0;
    const char **names = NULL, **texts = NULL;
    char mhex[17] = "", mhash[32], *tmh = NULL;
    st = duet_model_load(u.model, &m, err);
    if (!st) st = duet_file_hash(u.model, mhex, err);
    if (!st) st = load_features(rs, &u, &img, &txt, err);
    if (!st) st = duet_dataset_split_images(rs->d, DUET_SPLIT_TEST, &ti, &nti, err);
    if (!st) {
        for (size_t k = 0; k < nti; k++) nc += rs->d->image_cap_start[ti[k] + 1] - rs->d->image_cap_start[ti[k]];
        caps = duet_alloc_array(nc, sizeof(size_t));
        names = duet_alloc_array(nti, sizeof(char *));
        texts = duet_alloc_array(nc, sizeof(char *));
        if (!caps || !names || !texts) st = duet_fail(err, DUET_ERR_NOMEM, "run: out of memory");
    }
    if (!st) {
        size_t j = 0;
        for (size_t k = 0; k < nti; k++) {
            names[k] = rs->d->image_names[ti[k]];
            for (size_t q = rs->d->image_cap_start[ti[k]]; q < rs->d->image_cap_start[ti[k] + 1]; q++) {
                caps[j] = rs->d->image_caps[q];
                texts[j] = rs->d->captions[caps[j]];
                j++;
            }
        }
        st = embed_rows(m, DUET_SIDE_IMAGE, &img, ti, nti, &ie, err);
    }
    if (!st) st = embed_rows(m, DUET_SIDE_TEXT, &txt, caps, nc, &te, err);
    if (!st) {
        snprintf(mhash, sizeof mhash, "fnv1a64:%s", mhex);
        duet_model_info *info = duet_model_info_of(m);
        tmh = info->text_model_hash;
        char amp[PATH_MAX], atm[PATH_MAX];
        if (!realpath(u.model, amp)) snprintf(amp, sizeof amp, "%s", u.model);
        if (!realpath(u.textmodel, atm)) snprintf(atm, sizeof atm, "%s", u.textmodel);
        duet_index_meta meta = {amp, mhash, atm, tmh, info->image_model, abs};
        duet_index_rows rows = {ie.cols, nti, ie.data, names, nc, te.data, texts};
        st = duet_index_write(xp, &meta, &rows, err);
    }
    if (!st)
        st = stage_close(rs, S, json_pack("{s:s, s:I, s:I}", "index", "test.index", "images", (json_int_t)nti,
                                          "captions", (json_int_t)nc), &in, err);
    free(ti); free(caps); free(names); free(texts);
    duet_mat_free(&img); duet_mat_free(&txt); duet_mat_free(&ie); duet_mat_free(&te);
    duet_model_free(m);
    duet_sb_free(&in);
    return st;
}

/* ------------------------------------------------------------ results */

static char *stage_file(const run_state *rs, int s, const char *field) {
    const char *f = json_string_value(json_object_get(rs->man[s], field));
    if (!f) return NULL;
    duet_sbuf b = {0};
    duet_sb_printf(&b, "%s/%s", rs->res->stage[s].dir, f);
    if (b.oom) { duet_sb_free(&b); return NULL; }
    return b.s;
}

static duet_status collect(run_state *rs, duet_error *err) {
    duet_run_result *r = rs->res;
    json_t *tr = rs->man[DUET_STAGE_TRAIN], *ev = rs->man[DUET_STAGE_EVAL];
    r->model_path = stage_file(rs, DUET_STAGE_TRAIN, "model");
    r->text_model_path = stage_file(rs, DUET_STAGE_TEXT, "text_model");
    r->image_features = stage_file(rs, DUET_STAGE_IMAGE, "features");
    r->text_features = stage_file(rs, DUET_STAGE_TEXT, "features");
    if (rs->man[DUET_STAGE_INDEX]) r->index_path = stage_file(rs, DUET_STAGE_INDEX, "index");
    r->image_dim = (size_t)json_integer_value(json_object_get(rs->man[DUET_STAGE_IMAGE], "dim"));
    r->text_dim = (size_t)json_integer_value(json_object_get(rs->man[DUET_STAGE_TEXT], "dim"));
    r->best_epoch = (int)json_integer_value(json_object_get(tr, "best_epoch"));
    r->epochs_run = (int)json_integer_value(json_object_get(tr, "epochs_run"));
    json_t *eps = json_object_get(tr, "epochs");
    r->n_logs = json_array_size(eps);
    r->logs = duet_calloc_array(r->n_logs, sizeof *r->logs);
    json_t *ex = json_object_get(ev, "examples");
    r->n_examples = json_array_size(ex);
    r->examples = duet_calloc_array(r->n_examples, sizeof *r->examples);
    if (!r->logs || !r->examples || !r->model_path || !r->text_model_path)
        return duet_fail(err, DUET_ERR_NOMEM, "run: out of memory");
    for (size_t i = 0; i < r->n_logs; i++) {
        json_t *e = json_array_get(eps, i);
        r->logs[i].epoch = (int)json_integer_value(json_object_get(e, "epoch"));
        r->logs[i].loss = json_number_value(json_object_get(e, "loss"));
        r->logs[i].val_rsum = json_number_value(json_object_get(e, "val_rsum"));
        r->logs[i].seconds = json_number_value(json_object_get(e, "seconds"));
        r->logs[i].lr = (float)json_number_value(json_object_get(e, "lr"));
    }
    duet_eval_from_json(json_object_get(ev, "val"), &r->val);
    duet_eval_from_json(json_object_get(ev, "test"), &r->test);
    int oom = 0;
    for (size_t i = 0; i < r->n_examples; i++) {
        json_t *e = json_array_get(ex, i), *top = json_object_get(e, "top");
        duet_run_example *x = &r->examples[i];
        x->query = dup_or_null(json_string_value(json_object_get(e, "query")), &oom);
        x->truth = dup_or_null(json_string_value(json_object_get(e, "truth")), &oom);
        x->truth_rank = (int)json_integer_value(json_object_get(e, "truth_rank"));
        for (size_t k = 0; k < json_array_size(top) && k < 5; k++) {
            json_t *t = json_array_get(top, k);
            x->top[k] = dup_or_null(json_string_value(json_object_get(t, "image")), &oom);
            x->score[k] = (float)json_number_value(json_object_get(t, "score"));
            x->n_top = k + 1;
        }
    }
    return oom ? duet_fail(err, DUET_ERR_NOMEM, "run: out of memory") : DUET_OK;
}

static duet_status check_config(const duet_run_config *c, duet_error *err) {
    if (!c->dataset || !c->work || !c->images || !c->cnn || !c->cnn_weights)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "run: dataset, images, work, cnn and cnn_weights are required");
    if (strcmp(c->cnn, "resnet50") && strcmp(c->cnn, "mobilenetv2"))
        return duet_fail(err, DUET_ERR_INVALID_ARG, "run: cnn '%s' is not resnet50 or mobilenetv2", c->cnn);
    if (c->crops != 1 && c->crops != 10)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "run: crops is %d, not 1 or 10", c->crops);
    if (c->text.encoder != DUET_ENC_TFIDF && !c->vectors)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "run: the %s encoder needs word vectors",
                         duet_encoder_name(c->text.encoder));
    return duet_params_validate(&c->train, err);
}

/* One run per work directory at a time: a POSIX record lock on WORK/.lock,
 * released by the kernel when the process ends, however it ends. Returns
 * the descriptor to close when done, or -1 after setting err. */
static int lock_work(const char *work, duet_error *err) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/.lock", work);
    int fd = open(p, O_RDWR | O_CREAT, 0666);
    if (fd < 0) {
        duet_fail(err, DUET_ERR_IO, "%s: cannot open: %s", p, strerror(errno));
        return -1;
    }
    struct flock fl = {0};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (fcntl(fd, F_SETLK, &fl) != 0) {
        duet_fail(err, DUET_ERR_IO, "%s is in use by another duet run (lock %s); wait for it to finish", work, p);
        close(fd);
        return -1;
    }
    clean_temps(work);
    return fd;
}

duet_status duet_run(const duet_run_config *c, const duet_run_hooks *h, duet_run_result *res,
                     duet_error *err) {
    memset(res, 0, sizeof *res);
    double t0 = duet_now();
    duet_status st = check_config(c, err);
    if (st) return st;
    if ((st = make_dirs(c->work, err))) return st;
    int lock = lock_work(c->work, err);
    if (lock < 0) return err ? err->status : DUET_ERR_IO;
    if (c->train.threads > 0) duet_set_threads(c->train.threads);
    run_state rs = {c, h, res, NULL, 0, 0, {0}, 0};
    st = load_dataset(&rs, err);
    duet_status (*const stages[DUET_STAGE_COUNT])(run_state *, duet_error *) = {
        stage_image, stage_vectors, stage_text, stage_train, stage_eval, stage_index};
    for (int s = 0; !st && s < DUET_STAGE_COUNT; s++) {
        if (cancelled(&rs)) { st = interrupted(s, err); break; }
        st = stages[s](&rs, err);
        if (st && st != DUET_ERR_INTERRUPTED)
            duet_fail_wrap(err, st, "stage %s", stage_names[s]);
    }
    if (!st) st = collect(&rs, err);
    res->seconds = duet_now() - t0;
    res->peak_rss_kb = peak_rss_kb();
    if (!st) {
        char *js = NULL;
        duet_sbuf p = {0};
        duet_sb_printf(&p, "%s/run.json", c->work);
        st = p.oom ? duet_fail(err, DUET_ERR_NOMEM, "run: out of memory") : duet_run_json(c, res, &js, err);
        if (!st) st = duet_write_text(p.s, js, strlen(js), err);
        free(js);
        duet_sb_free(&p);
    }
    for (int s = 0; s < DUET_STAGE_COUNT; s++) json_decref(rs.man[s]);
    duet_dataset_free(rs.d);
    close(lock);
    return st;
}
