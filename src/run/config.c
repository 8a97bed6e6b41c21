/* config.c -- the main job's settings: stage names, the default
 * configuration, its validation and one-line description, the run's dataset
 * (--limit), and the published row the results are printed beside. */
#define _XOPEN_SOURCE 700
#include "run/run.h"
#include <stdlib.h>
#include <string.h>

static const char *const stage_names[DUET_STAGE_COUNT] = {
    "image", "vectors", "text", "train", "eval", "index"};

const char *duet_stage_name(int s) {
    return s >= 0 && s < DUET_STAGE_COUNT ? stage_names[s] : "?";
}

void duet_run_default_config(duet_run_config *c) {
    memset(c, 0, sizeof *c);
    c->cnn = "resnet50";
    /* Chosen on Flickr8K validation R-sum (docs/RUN.md, "Defaults on
     * validation"): the paper's 10 crops, both Fisher vectors, and an
     * ensemble of DUET_RUN_ENSEMBLE seeds. */
    c->crops = 10;
    c->text = duet_textmodel_default_params();
    c->text.encoder = DUET_ENC_FV_BOTH;
    c->ensemble = DUET_RUN_ENSEMBLE;
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
    c->train.top_k_final = 1;   /* K 10 -> 1 over the epochs: +5.4 validation R-sum (docs/RUN.md) */
    c->examples = 6;
    c->build_index = 1;
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
    free(r->text_features); free(r->index_path); free(r->model_description); free(r->members);
    memset(r, 0, sizeof *r);
}

duet_status duet_run_check_config(const duet_run_config *c, duet_error *err) {
    if (!c->dataset || !c->work || !c->images || !c->cnn || !c->cnn_weights)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "run: dataset, images, work, cnn and cnn_weights are required");
    if (strcmp(c->cnn, "resnet50") && strcmp(c->cnn, "mobilenetv2"))
        return duet_fail(err, DUET_ERR_INVALID_ARG, "run: cnn '%s' is not resnet50 or mobilenetv2", c->cnn);
    if (c->crops != 1 && c->crops != 10)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "run: crops is %d, not 1 or 10", c->crops);
    if (c->ensemble > DUET_ENSEMBLE_MAX)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "run: an ensemble of %zu models (at most %d)", c->ensemble,
                         DUET_ENSEMBLE_MAX);
    if (c->text.encoder != DUET_ENC_TFIDF && !c->vectors)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "run: the %s encoder needs word vectors",
                         duet_encoder_name(c->text.encoder));
    return duet_params_validate(&c->train, err);
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
    duet_status st = duet_dataset_subset(d, keep, out, err);
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
