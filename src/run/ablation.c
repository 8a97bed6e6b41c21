/* ablation.c -- the grid of the paper's tables (Wang et al. 2016, tables 1-2)
 * run through duet_run on one work directory, so every configuration shares
 * the stages it has in common (image features always; vectors and text
 * features across network/loss variants). */
#define _XOPEN_SOURCE 700
#include "run/run.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct grid_row {
    const char *group;
    int encoder;     /* -1: the base configuration's */
    int linear;      /* -1: base's */
    int one_way;     /* -1: base's */
    int structure;   /* -1: base's; 0 off; 1 on */
    int seed_offset;
} grid_row;

static const grid_row grid[] = {
    {"text encoder", DUET_ENC_MEAN, -1, -1, -1, 0},
    {"text encoder", DUET_ENC_FV_GMM, -1, -1, -1, 0},
    {"text encoder", DUET_ENC_FV_HGLMM, -1, -1, -1, 0},
    {"text encoder", DUET_ENC_FV_BOTH, -1, -1, -1, 0},
    {"network and loss", -1, 1, 1, 0, 0},
    {"network and loss", -1, 1, 0, 0, 0},
    {"network and loss", -1, 1, 0, 1, 0},
    {"network and loss", -1, 0, 1, 0, 0},
    {"network and loss", -1, 0, 0, 0, 0},
    {"network and loss", -1, 0, 0, 1, 0},
    {"seeds", -1, -1, -1, -1, 0},
    {"seeds", -1, -1, -1, -1, 1},
    {"seeds", -1, -1, -1, -1, 2},
    {"seeds, fv-both", DUET_ENC_FV_BOTH, -1, -1, -1, 1},
    {"seeds, fv-both", DUET_ENC_FV_BOTH, -1, -1, -1, 2},
};
#define N_GRID (sizeof grid / sizeof grid[0])
#define N_SEEDS 3
#define SEED_ROW0 10   /* rows 10, 11, 12: the base configuration's seeds */

static duet_run_config row_config(const duet_run_config *base, const grid_row *g) {
    duet_run_config c = *base;
    c.build_index = 0;
    c.ensemble = 0;   /* every row is one training; ensembles are evaluated after */
    if (g->encoder >= 0) c.text.encoder = (duet_encoder)g->encoder;
    if (g->linear >= 0) c.train.linear = g->linear;
    if (g->one_way >= 0) c.train.one_way = g->one_way;
    if (g->structure == 0) c.train.w_txt_struct = c.train.w_img_struct = 0.0f;
    if (g->structure == 1 && c.train.w_txt_struct <= 0.0f)
        c.train.w_txt_struct = duet_default_params().w_txt_struct;
    c.train.seed = base->train.seed + (uint64_t)g->seed_offset;
    return c;
}

/* The six recalls and the R-sum of r, in table order. */
static void metrics(const duet_eval_result *r, double m[7]) {
    double v[7] = {r->i2t.r1, r->i2t.r5, r->i2t.r10, r->t2i.r1, r->t2i.r5, r->t2i.r10, r->rsum};
    memcpy(m, v, sizeof v);
}

static const char *const metric_names[7] = {"i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum"};

/* Ensembles evaluated after the grid from its rows' models (no training):
 * the base's three seeds, the three Fisher-vector encoders, fv-both's three
 * seeds, and all seven MLP two-way + structure models of those. */
#define ENS_MAX 8
typedef struct ens_row {
    const char *name;
    size_t n;
    size_t rows[ENS_MAX];
} ens_row;
static const ens_row ensembles[] = {
    {"ensemble of the 3 seeds", 3, {10, 11, 12}},
    {"ensemble fv-gmm + fv-hglmm + fv-both", 3, {1, 2, 3}},
    {"ensemble of 3 fv-both seeds", 3, {3, 13, 14}},
    {"ensemble of all 7 (3 fv-gmm, fv-hglmm, 3 fv-both)", 7, {10, 11, 12, 2, 3, 13, 14}},
};
#define N_ENS (sizeof ensembles / sizeof ensembles[0])

/* The test split of d as a dataset of its own (duet_dataset_subset: the
 * captions grouped by image, the order evaluation uses on d too), and
 * where its rows come from: img_rows[n_images], cap_rows[n_captions] index
 * d's feature rows. Caller frees *out, *img_rows, *cap_rows. */
static duet_status test_view(const duet_dataset *d, duet_dataset **out, size_t **img_rows, size_t **cap_rows,
                             duet_error *err) {
    *out = NULL;
    *img_rows = *cap_rows = NULL;
    uint8_t *keep = duet_calloc_array(d->n_images ? d->n_images : 1, 1);
    *img_rows = malloc(sizeof(size_t) * (d->n_images ? d->n_images : 1));
    *cap_rows = malloc(sizeof(size_t) * (d->n_captions ? d->n_captions : 1));
    if (!keep || !*img_rows || !*cap_rows) { free(keep); return duet_fail(err, DUET_ERR_NOMEM, "ensemble: out of memory"); }
    size_t ni = 0, nc = 0;
    for (size_t i = 0; i < d->n_images; i++) {
        if (d->image_split[i] != DUET_SPLIT_TEST) continue;
        keep[i] = 1;
        (*img_rows)[ni++] = i;
        for (size_t q = d->image_cap_start[i]; q < d->image_cap_start[i + 1]; q++) (*cap_rows)[nc++] = d->image_caps[q];
    }
    duet_status st = duet_dataset_subset(d, keep, out, err);
    free(keep);
    return st;
}

/* Reads the .npy at path and keeps only rows[0..n) of it, in that order:
 * one full matrix in memory at a time. */
static duet_status read_rows(const char *path, const size_t *rows, size_t n, duet_mat *out, duet_error *err) {
    duet_mat full = {0};
    duet_status st = duet_npy_read(path, &full, err);
    if (st) return st;
    for (size_t r = 0; r < n; r++)
        if (rows[r] >= full.rows) { duet_mat_free(&full); return duet_fail(err, DUET_ERR_SHAPE, "%s: %zu rows, row %zu wanted", path, full.rows, rows[r]); }
    out->data = duet_alloc_array(n ? n : 1, full.cols * sizeof(float));
    if (!out->data) { duet_mat_free(&full); return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path); }
    out->rows = n;
    out->cols = full.cols;
    for (size_t r = 0; r < n; r++) memcpy(out->data + r * full.cols, full.data + rows[r] * full.cols, full.cols * sizeof(float));
    duet_mat_free(&full);
    return DUET_OK;
}

/* Test recall of the ensemble of grid rows e->rows, from the files the runs
 * left: model_path[i], image_feats[i], text_feats[i]. Only the test rows of
 * each member's features are kept. */
static duet_status eval_ensemble(const duet_run_config *base, const ens_row *e, char *const *model_path,
                                 char *const *image_feats, char *const *text_feats, duet_eval_result *res,
                                 duet_error *err) {
    duet_dataset *d = NULL, *dt = NULL;
    size_t *ir = NULL, *cr = NULL;
    duet_model *m[ENS_MAX] = {0};
    duet_mat img[ENS_MAX] = {{0}}, txt[ENS_MAX] = {{0}};
    const duet_mat *ia[ENS_MAX], *ta[ENS_MAX];
    duet_status st = duet_run_load_dataset(base, &d, err);
    if (!st) st = test_view(d, &dt, &ir, &cr, err);
    for (size_t k = 0; k < e->n && !st; k++) {
        size_t i = e->rows[k];
        st = duet_model_load(model_path[i], &m[k], err);
        ia[k] = ta[k] = NULL;   /* members that share a feature file share its rows: read once */
        for (size_t j = 0; j < k; j++) {
            if (!ia[k] && strcmp(image_feats[e->rows[j]], image_feats[i]) == 0) ia[k] = ia[j];
            if (!ta[k] && strcmp(text_feats[e->rows[j]], text_feats[i]) == 0) ta[k] = ta[j];
        }
        if (!st && !ia[k]) {
            st = read_rows(image_feats[i], ir, dt->n_images, &img[k], err);
            ia[k] = &img[k];
        }
        if (!st && !ta[k]) {
            st = read_rows(text_feats[i], cr, dt->n_captions, &txt[k], err);
            ta[k] = &txt[k];
        }
    }
    if (!st) st = duet_evaluate_ensemble((const duet_model *const *)m, ia, ta, e->n, dt, DUET_SPLIT_TEST,
                                         base->fold_size, res, err);
    for (size_t k = 0; k < e->n; k++) { duet_model_free(m[k]); duet_mat_free(&img[k]); duet_mat_free(&txt[k]); }
    duet_dataset_free(d);
    duet_dataset_free(dt);
    free(ir);
    free(cr);
    return st ? duet_fail_wrap(err, st, e->name) : DUET_OK;
}

duet_status duet_run_ablation(const duet_run_config *base, const duet_run_hooks *h, char **markdown,
                              duet_error *err) {
    if (markdown) *markdown = NULL;
    double t0 = duet_now();
    duet_eval_result res[N_GRID];
    double train_s[N_GRID], val_rsum[N_GRID];
    int best[N_GRID];
    char keys[N_GRID][17];
    char *model_path[N_GRID] = {0}, *image_feats[N_GRID] = {0}, *text_feats[N_GRID] = {0};
    duet_status st = DUET_OK;
    for (size_t i = 0; i < N_GRID && !st; i++) {
        duet_run_config c = row_config(base, &grid[i]);
        char desc[160], line[256];
        duet_run_describe(&c, desc, sizeof desc);
        if (h && h->log) {
            snprintf(line, sizeof line, "ablation %zu/%zu: %s, seed %llu", i + 1, (size_t)N_GRID, desc,
                     (unsigned long long)c.train.seed);
            h->log(h->user, line);
        }
        duet_run_result r;
        st = duet_run(&c, h, &r, err);
        if (!st) {
            res[i] = r.test;
            train_s[i] = r.stage[DUET_STAGE_TRAIN].build_seconds;
            val_rsum[i] = r.val.rsum;
            best[i] = r.best_epoch;
            memcpy(keys[i], r.stage[DUET_STAGE_TRAIN].key, 17);
            model_path[i] = r.model_path ? strdup(r.model_path) : NULL;
            image_feats[i] = r.image_features ? strdup(r.image_features) : NULL;
            text_feats[i] = r.text_features ? strdup(r.text_features) : NULL;
            if (!model_path[i] || !image_feats[i] || !text_feats[i])
                st = duet_fail(err, DUET_ERR_NOMEM, "ablation: out of memory");
        }
        duet_run_result_free(&r);
    }
    duet_eval_result ens[N_ENS];
    for (size_t i = 0; i < N_ENS && !st; i++) {
        if (h && h->log) {
            char line[160];
            snprintf(line, sizeof line, "ablation: %s", ensembles[i].name);
            h->log(h->user, line);
        }
        st = eval_ensemble(base, &ensembles[i], model_path, image_feats, text_feats, &ens[i], err);
    }
    for (size_t i = 0; i < N_GRID; i++) { free(model_path[i]); free(image_feats[i]); free(text_feats[i]); }
    if (st) return duet_fail_wrap(err, st, "ablation");

    /* mean and sample standard deviation over the seeds of the base */
    double mean[7] = {0}, sd[7] = {0}, m[7];
    size_t s0 = SEED_ROW0;
    for (size_t i = s0; i < s0 + N_SEEDS; i++) {
        metrics(&res[i], m);
        for (int k = 0; k < 7; k++) mean[k] += m[k] / N_SEEDS;
    }
    for (size_t i = s0; i < s0 + N_SEEDS; i++) {
        metrics(&res[i], m);
        for (int k = 0; k < 7; k++) sd[k] += (m[k] - mean[k]) * (m[k] - mean[k]) / (N_SEEDS - 1);
    }
    for (int k = 0; k < 7; k++) sd[k] = sqrt(sd[k]);

    duet_sbuf md = {0};
    json_t *rows = json_array();
    duet_sb_printf(&md, "# Ablation: %s\n\n%s features, %d crop%s; %zu configurations, results on the test split. "
                   "Every row is one training run (seed %llu unless noted); `train s` is its training time.\n\n"
                   "| group | text | network | loss | seed | i→t R@1 | R@5 | R@10 | t→i R@1 | R@5 | R@10 | R-sum | val R-sum | train s |\n"
                   "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
                   base->dataset, base->cnn, base->crops, base->crops == 1 ? "" : "s", (size_t)N_GRID,
                   (unsigned long long)base->train.seed);
    for (size_t i = 0; i < N_GRID; i++) {
        duet_run_config c = row_config(base, &grid[i]);
        int structure = c.train.w_txt_struct > 0 || c.train.w_img_struct > 0;
        metrics(&res[i], m);
        duet_sb_printf(&md, "| %s | %s | %s | %s%s | %llu | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |\n",
                       grid[i].group, duet_encoder_name(c.text.encoder), c.train.linear ? "linear" : "MLP",
                       c.train.one_way ? "one-way" : "two-way", structure ? " + structure" : "",
                       (unsigned long long)c.train.seed, m[0], m[1], m[2], m[3], m[4], m[5], m[6], val_rsum[i],
                       train_s[i]);
        json_t *row = json_pack("{s:s, s:s, s:b, s:b, s:b, s:f, s:I, s:o, s:f, s:i, s:f, s:s}", "group", grid[i].group,
                                "encoder", duet_encoder_name(c.text.encoder), "linear", c.train.linear, "one_way",
                                c.train.one_way, "structure", structure, "w_txt_struct", (double)c.train.w_txt_struct,
                                "seed", (json_int_t)c.train.seed, "test", duet_eval_to_json(&res[i]), "val_rsum",
                                val_rsum[i], "best_epoch", best[i], "train_seconds", train_s[i], "train_key", keys[i]);
        json_array_append_new(rows, row);
    }
    json_t *jens = json_array();
    for (size_t i = 0; i < N_ENS; i++) {
        const ens_row *e = &ensembles[i];
        duet_run_config c = row_config(base, &grid[e->rows[0]]);
        int same_enc = 1, structure = c.train.w_txt_struct > 0 || c.train.w_img_struct > 0;
        for (size_t q = 1; q < e->n; q++)
            same_enc &= row_config(base, &grid[e->rows[q]]).text.encoder == c.text.encoder;
        char n_enc[32];
        snprintf(n_enc, sizeof n_enc, "%zu models", e->n);
        metrics(&ens[i], m);
        duet_sb_printf(&md, "| %s | %s | %s | %s%s | %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | | |\n",
                       e->name, same_enc ? duet_encoder_name(c.text.encoder) : "several",
                       c.train.linear ? "linear" : "MLP", c.train.one_way ? "one-way" : "two-way",
                       structure ? " + structure" : "", n_enc, m[0], m[1], m[2], m[3], m[4], m[5], m[6]);
        json_t *rows_used = json_array();
        for (size_t q = 0; q < e->n; q++) json_array_append_new(rows_used, json_integer((json_int_t)e->rows[q]));
        json_array_append_new(jens, json_pack("{s:s, s:o, s:o}", "name", ensembles[i].name, "grid_rows", rows_used,
                                              "test", duet_eval_to_json(&ens[i])));
    }
    duet_sb_printf(&md, "\nEnsemble rows train nothing: they average the cosine similarities of the grid rows' models "
                   "(duet_ensemble_embed, as `duet eval --model A,B,C` and an ensemble model file, `duet run "
                   "--ensemble N`).\n");
    const duet_eval_result *k = &duet_klein2015_flickr8k;
    duet_sb_printf(&md, "\nBase configuration over %d seeds (mean ± sample std):\n\n"
                   "| | i→t R@1 | R@5 | R@10 | t→i R@1 | R@5 | R@10 | R-sum |\n|---|---:|---:|---:|---:|---:|---:|---:|\n"
                   "| duet | ", N_SEEDS);
    for (int q = 0; q < 7; q++) duet_sb_printf(&md, "%.1f ± %.1f | ", mean[q], sd[q]);
    duet_sb_printf(&md, "\n| Klein et al. 2015, mean vector + CCA (Flickr8K) | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |\n"
                   "\nGrid time %.0f s (cached stages are reused).\n", k->i2t.r1, k->i2t.r5, k->i2t.r10, k->t2i.r1,
                   k->t2i.r5, k->t2i.r10, k->rsum, duet_now() - t0);
    json_t *jm = json_object(), *js = json_object(), *seeds = json_array();
    for (int q = 0; q < 7; q++) {
        json_object_set_new(jm, metric_names[q], json_real(mean[q]));
        json_object_set_new(js, metric_names[q], json_real(sd[q]));
    }
    for (size_t i = s0; i < s0 + N_SEEDS; i++) json_array_append_new(seeds, json_integer((json_int_t)(base->train.seed + (uint64_t)grid[i].seed_offset)));
    json_t *o = json_pack("{s:s, s:s, s:i, s:I, s:o, s:o, s:{s:o, s:o, s:o}, s:f}", "dataset", base->dataset, "cnn",
                          base->cnn, "crops", base->crops, "limit", (json_int_t)base->limit, "rows", rows, "ensembles", jens, "seeds",
                          "seeds", seeds, "mean", jm, "std", js, "seconds", duet_now() - t0);
    char *jt = o ? json_dumps(o, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(o);
    duet_sbuf pm = {0}, pj = {0};
    duet_sb_printf(&pm, "%s/ablation.md", base->work);
    duet_sb_printf(&pj, "%s/ablation.json", base->work);
    if (md.oom || pm.oom || pj.oom || !jt) st = duet_fail(err, DUET_ERR_NOMEM, "ablation: out of memory");
    if (!st) st = duet_write_text(pj.s, jt, strlen(jt), err);
    if (!st) st = duet_write_text(pm.s, md.s, md.n, err);
    free(jt);
    duet_sb_free(&pm);
    duet_sb_free(&pj);
    if (!st && markdown) { *markdown = md.s; md.s = NULL; }
    duet_sb_free(&md);
    return st;
}
