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
    int encoder;     /* -1: the base configuration's; ENC_OTHER: other_encoder() */
    int linear;      /* -1: base's */
    int one_way;     /* -1: base's */
    int structure;   /* -1: base's; 0 off; 1 on */
    int crops;       /* -1: base's; CROPS_OTHER: 1 where the base has 10, else 10 */
    int seed_offset;
} grid_row;

#define ENC_OTHER (-2)
#define CROPS_OTHER (-2)
#define N_SEEDS 5
enum {
    ROW_ENC = 0,      /* 0-3: mean, fv-gmm, fv-hglmm, fv-both */
    ROW_CROPS = 10,   /* the base with the other crop protocol */
    ROW_SEED0 = 11,   /* 11-15: the base with seeds s .. s+4 */
    ROW_OTHER0 = 16,  /* 16-17: the other strong encoder with seeds s+1, s+2 */
    N_GRID = 18
};

static const grid_row grid[N_GRID] = {
    {"text encoder", DUET_ENC_MEAN, -1, -1, -1, -1, 0},
    {"text encoder", DUET_ENC_FV_GMM, -1, -1, -1, -1, 0},
    {"text encoder", DUET_ENC_FV_HGLMM, -1, -1, -1, -1, 0},
    {"text encoder", DUET_ENC_FV_BOTH, -1, -1, -1, -1, 0},
    {"network and loss", -1, 1, 1, 0, -1, 0},
    {"network and loss", -1, 1, 0, 0, -1, 0},
    {"network and loss", -1, 1, 0, 1, -1, 0},
    {"network and loss", -1, 0, 1, 0, -1, 0},
    {"network and loss", -1, 0, 0, 0, -1, 0},
    {"network and loss", -1, 0, 0, 1, -1, 0},
    {"crops", -1, -1, -1, -1, CROPS_OTHER, 0},
    {"seeds", -1, -1, -1, -1, -1, 0},
    {"seeds", -1, -1, -1, -1, -1, 1},
    {"seeds", -1, -1, -1, -1, -1, 2},
    {"seeds", -1, -1, -1, -1, -1, 3},
    {"seeds", -1, -1, -1, -1, -1, 4},
    {"seeds, other encoder", ENC_OTHER, -1, -1, -1, -1, 1},
    {"seeds, other encoder", ENC_OTHER, -1, -1, -1, -1, 2},
};

/* The second-strongest encoder beside the base's, for its own seeds and
 * ensembles: fv-gmm when the base is fv-both, fv-both otherwise. */
static duet_encoder other_encoder(const duet_run_config *base) {
    return base->text.encoder == DUET_ENC_FV_BOTH ? DUET_ENC_FV_GMM : DUET_ENC_FV_BOTH;
}

static duet_run_config row_config(const duet_run_config *base, const grid_row *g) {
    duet_run_config c = *base;
    c.build_index = 0;
    c.ensemble = 0;   /* every row is one training; ensembles are evaluated after */
    if (g->encoder >= 0) c.text.encoder = (duet_encoder)g->encoder;
    if (g->encoder == ENC_OTHER) c.text.encoder = other_encoder(base);
    if (g->linear >= 0) c.train.linear = g->linear;
    if (g->one_way >= 0) c.train.one_way = g->one_way;
    if (g->structure == 0) c.train.w_txt_struct = c.train.w_img_struct = 0.0f;
    if (g->structure == 1 && c.train.w_txt_struct <= 0.0f)
        c.train.w_txt_struct = duet_default_params().w_txt_struct;
    if (g->crops == CROPS_OTHER) c.crops = base->crops == 10 ? 1 : 10;
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
 * the base with 1 to 5 seeds (the ensemble sizes), the three Fisher-vector
 * encoders, the other encoder's three seeds, and seven models of both. */
#define ENS_MAX 8
#define N_ENS (N_SEEDS + 3)
typedef struct ens_row {
    char name[96];
    size_t n;
    size_t rows[ENS_MAX];
} ens_row;

static void make_ensembles(const duet_run_config *base, ens_row e[N_ENS]) {
    const char *bn = duet_encoder_name(base->text.encoder), *on = duet_encoder_name(other_encoder(base));
    size_t other = ROW_ENC;   /* the text-encoder row of the other encoder */
    for (size_t i = ROW_ENC; i < ROW_ENC + 4; i++)
        if (grid[i].encoder == (int)other_encoder(base)) other = i;
    for (size_t k = 1; k <= N_SEEDS; k++) {
        ens_row *r = &e[k - 1];
        snprintf(r->name, sizeof r->name, "ensemble of %zu seed%s", k, k == 1 ? "" : "s");
        r->n = k;
        for (size_t q = 0; q < k; q++) r->rows[q] = ROW_SEED0 + q;
    }
    ens_row *f = &e[N_SEEDS], *o = &e[N_SEEDS + 1], *a = &e[N_SEEDS + 2];
    *f = (ens_row){.n = 3, .rows = {ROW_ENC + 1, ROW_ENC + 2, ROW_ENC + 3}, .name = ""};
    snprintf(f->name, sizeof f->name, "ensemble fv-gmm + fv-hglmm + fv-both");
    *o = (ens_row){.n = 3, .rows = {other, ROW_OTHER0, ROW_OTHER0 + 1}, .name = ""};
    snprintf(o->name, sizeof o->name, "ensemble of 3 %s seeds", on);
    *a = (ens_row){.n = 7, .rows = {ROW_SEED0, ROW_SEED0 + 1, ROW_SEED0 + 2, ROW_ENC + 2, other, ROW_OTHER0,
                                    ROW_OTHER0 + 1}, .name = ""};
    snprintf(a->name, sizeof a->name, "ensemble of all 7 (3 %s, fv-hglmm, 3 %s)", bn, on);
}

/* Validation and test recall of the ensemble of grid rows e->rows of d,
 * from the files the runs left: model_path[i], image_feats[i],
 * text_feats[i] (read by row; members that share a file share one source). */
static duet_status eval_ensemble(const duet_run_config *base, const duet_dataset *d, const ens_row *e,
                                 char *const *model_path, char *const *image_feats, char *const *text_feats,
                                 duet_eval_result *val, duet_eval_result *test, duet_error *err) {
    duet_model *m[ENS_MAX] = {0};
    duet_features *img[ENS_MAX] = {0}, *txt[ENS_MAX] = {0};
    const duet_features *ia[ENS_MAX], *ta[ENS_MAX];
    duet_status st = DUET_OK;
    for (size_t k = 0; k < e->n && !st; k++) {
        size_t i = e->rows[k];
        st = duet_model_load(model_path[i], &m[k], err);
        ia[k] = ta[k] = NULL;
        for (size_t j = 0; j < k; j++) {
            if (!ia[k] && strcmp(image_feats[e->rows[j]], image_feats[i]) == 0) ia[k] = ia[j];
            if (!ta[k] && strcmp(text_feats[e->rows[j]], text_feats[i]) == 0) ta[k] = ta[j];
        }
        if (!st && !ia[k]) st = duet_features_open(image_feats[i], &img[k], err), ia[k] = img[k];
        if (!st && !ta[k]) st = duet_features_open(text_feats[i], &txt[k], err), ta[k] = txt[k];
    }
    const duet_model *const *mc = (const duet_model *const *)m;
    if (!st) st = duet_evaluate_ensemble_features(mc, ia, ta, e->n, d, DUET_SPLIT_VAL, 0, 0, val, err);
    if (!st) st = duet_evaluate_ensemble_features(mc, ia, ta, e->n, d, DUET_SPLIT_TEST, base->fold_size, 0, test, err);
    for (size_t k = 0; k < e->n; k++) { duet_model_free(m[k]); duet_features_close(img[k]); duet_features_close(txt[k]); }
    return st ? duet_fail_wrap(err, st, e->name) : DUET_OK;
}

/* "## Defaults on validation": for crops, text encoder and ensemble size,
 * each candidate's validation R-sum and the one it favours, beside the
 * base's setting (the test split plays no part in it). */
static void choices(duet_sbuf *md, const duet_run_config *base, const double *val, const duet_eval_result *ens_val) {
    duet_sb_printf(md, "\n## Defaults on validation\n\nEach default is chosen on the validation split's R-sum "
                   "(the test split plays no part):\n\n");
    int other_crops = base->crops == 10 ? 1 : 10, best_crops = val[ROW_CROPS] > val[ROW_SEED0] ? other_crops : base->crops;
    duet_sb_printf(md, "- crops: %d crop%s %.1f, %d crop%s %.1f: %d favoured (this run: %d)\n", base->crops,
                   base->crops == 1 ? "" : "s", val[ROW_SEED0], other_crops, other_crops == 1 ? "" : "s",
                   val[ROW_CROPS], best_crops, base->crops);
    size_t be = ROW_ENC;
    duet_sb_printf(md, "- text encoder:");
    for (size_t i = ROW_ENC; i < ROW_ENC + 4; i++) {
        duet_sb_printf(md, " %s %.1f%s", duet_encoder_name(grid[i].encoder), val[i], i + 1 < ROW_ENC + 4 ? "," : "");
        if (val[i] > val[be]) be = i;
    }
    duet_sb_printf(md, ": %s favoured (this run: %s)\n", duet_encoder_name(grid[be].encoder),
                   duet_encoder_name(base->text.encoder));
    duet_sb_printf(md, "- ensemble size:");
    for (size_t k = 0; k < N_SEEDS; k++) duet_sb_printf(md, " %zu: %.1f%s", k + 1, ens_val[k].rsum, k + 1 < N_SEEDS ? "," : "");
    duet_sb_printf(md, " (this run: %zu; each member costs one training)\n", base->ensemble > 1 ? base->ensemble : (size_t)1);
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
    ens_row ensembles[N_ENS];
    make_ensembles(base, ensembles);
    duet_eval_result ens[N_ENS], ens_val[N_ENS];
    duet_dataset *d = NULL;
    if (!st) st = duet_run_load_dataset(base, &d, err);
    for (size_t i = 0; i < N_ENS && !st; i++) {
        if (h && h->log) {
            char line[160];
            snprintf(line, sizeof line, "ablation: %.95s", ensembles[i].name);
            h->log(h->user, line);
        }
        st = eval_ensemble(base, d, &ensembles[i], model_path, image_feats, text_feats, &ens_val[i], &ens[i], err);
    }
    duet_dataset_free(d);
    for (size_t i = 0; i < N_GRID; i++) { free(model_path[i]); free(image_feats[i]); free(text_feats[i]); }
    if (st) return duet_fail_wrap(err, st, "ablation");

    /* mean and sample standard deviation over the seeds of the base */
    double mean[7] = {0}, sd[7] = {0}, m[7];
    size_t s0 = ROW_SEED0;
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
                   "| group | text | crops | network | loss | seed | i→t R@1 | R@5 | R@10 | t→i R@1 | R@5 | R@10 | R-sum | val R-sum | train s |\n"
                   "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
                   base->dataset, base->cnn, base->crops, base->crops == 1 ? "" : "s", (size_t)N_GRID,
                   (unsigned long long)base->train.seed);
    for (size_t i = 0; i < N_GRID; i++) {
        duet_run_config c = row_config(base, &grid[i]);
        int structure = c.train.w_txt_struct > 0 || c.train.w_img_struct > 0;
        metrics(&res[i], m);
        duet_sb_printf(&md, "| %s | %s | %d | %s | %s%s | %llu | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |\n",
                       grid[i].group, duet_encoder_name(c.text.encoder), c.crops, c.train.linear ? "linear" : "MLP",
                       c.train.one_way ? "one-way" : "two-way", structure ? " + structure" : "",
                       (unsigned long long)c.train.seed, m[0], m[1], m[2], m[3], m[4], m[5], m[6], val_rsum[i],
                       train_s[i]);
        json_t *row = json_pack("{s:s, s:s, s:i, s:b, s:b, s:b, s:f, s:I, s:o, s:f, s:i, s:f, s:s}", "group",
                                grid[i].group, "encoder", duet_encoder_name(c.text.encoder), "crops", c.crops, "linear", c.train.linear, "one_way",
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
        snprintf(n_enc, sizeof n_enc, "%zu model%s", e->n, e->n == 1 ? "" : "s");
        metrics(&ens[i], m);
        duet_sb_printf(&md, "| %s | %s | %d | %s | %s%s | %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | |\n",
                       e->name, same_enc ? duet_encoder_name(c.text.encoder) : "several", c.crops,
                       c.train.linear ? "linear" : "MLP", c.train.one_way ? "one-way" : "two-way",
                       structure ? " + structure" : "", n_enc, m[0], m[1], m[2], m[3], m[4], m[5], m[6],
                       ens_val[i].rsum);
        json_t *rows_used = json_array();
        for (size_t q = 0; q < e->n; q++) json_array_append_new(rows_used, json_integer((json_int_t)e->rows[q]));
        json_array_append_new(jens, json_pack("{s:s, s:o, s:o, s:o}", "name", ensembles[i].name, "grid_rows",
                                              rows_used, "val", duet_eval_to_json(&ens_val[i]), "test",
                                              duet_eval_to_json(&ens[i])));
    }
    duet_sb_printf(&md, "\nEnsemble rows train nothing: they average the cosine similarities of the grid rows' models "
                   "(duet_ensemble_embed, as `duet eval --model A,B,C` and an ensemble model file, `duet run "
                   "--ensemble N`).\n");
    choices(&md, base, val_rsum, ens_val);
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
