/* checkpoint.c -- the trainer's checkpoint: the model, the optimizer's
 * moments, the best model so far and the progress (epoch, step count,
 * learning rate, RNG state, history) in one tensor file, so that a resumed
 * run repeats an uninterrupted one. */
#include "embed/train.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char CKPT_MAGIC[8] = {'D', 'U', 'E', 'T', 'C', 'K', 'P', 'T'};
#define CKPT_VERSION 2   /* 2: with a CRC-32C (core.h); 1 still read */


static char *checkpoint_header(const trainer *t) {
    char *mh = duet_model_header_json(t->m);
    json_t *h = mh ? json_loads(mh, 0, NULL) : NULL;
    free(mh);
    if (!h) return NULL;
    json_t *hist = json_array();
    for (size_t i = 0; i < t->n_log; i++) {
        const duet_epoch_log *l = &t->log[i];
        json_array_append_new(hist, json_pack("{s:i, s:f, s:f, s:f, s:f}", "epoch", l->epoch,
                                              "loss", l->loss, "val_rsum", l->val_rsum,
                                              "seconds", l->seconds, "lr", (double)l->lr));
    }
    char rng[4][17];
    for (int i = 0; i < 4; i++)
        snprintf(rng[i], sizeof rng[i], "%016llx", (unsigned long long)t->rng.s[i]);
    json_object_set_new(h, "kind", json_string("duet-checkpoint"));
    json_object_set_new(h, "train", json_pack("{s:i, s:I, s:f, s:i, s:i, s:f, s:[s,s,s,s], s:o}",
        "epoch", t->epoch, "adam_t", (json_int_t)t->adam_t, "lr", (double)t->lr,
        "best_epoch", t->best_epoch, "bad_epochs", t->bad_epochs,
        "best_rsum", t->best_rsum, "rng", rng[0], rng[1], rng[2], rng[3],
        "history", hist));
    char *s = json_dumps(h, JSON_PRESERVE_ORDER);
    json_decref(h);
    return s;
}

duet_status duet_train_save_checkpoint(const trainer *t, const char *path, duet_error *err) {
    char *hdr = checkpoint_header(t);
    if (!hdr) return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    const duet_model *m = t->m;
    duet_tf_array a[6] = {{"params", m->params, m->n_params},
                          {"buffers", m->buffers, m->n_buffers},
                          {"opt_m1", t->m1, m->n_params},
                          {"opt_m2", t->m2, m->n_params},
                          {"best_params", t->best_params, m->n_params},
                          {"best_buffers", t->best_buf, m->n_buffers}};
    duet_status st = duet_tf_write(path, CKPT_MAGIC, CKPT_VERSION, hdr, a, 6, err);
    free(hdr);
    return st;
}

/* The settings that must agree between a checkpoint (a) and the run
 * resuming it (b): NULL when they all do, else the flag of the first that
 * differs, with both values in buf ("--hidden 16 (the checkpoint: 32)"). */
static const char *run_diff(const duet_params *a, const duet_params *b, char *buf, size_t n) {
#define SAME(field, flag)                                                                                      \
    if (a->field != b->field) {                                                                                \
        snprintf(buf, n, "%s %.7g (the checkpoint: %.7g)", flag, (double)b->field, (double)a->field);          \
        return buf;                                                                                            \
    }
    SAME(linear, "--linear") SAME(hidden, "--hidden") SAME(embed_dim, "--embed-dim") SAME(dropout, "--dropout")
    SAME(margin, "--margin") SAME(top_k, "--top-k") SAME(top_k_final, "--top-k-final") SAME(w_i2t, "--w-i2t")
    SAME(w_t2i, "--w-t2i") SAME(w_img_struct, "--w-img-struct") SAME(w_txt_struct, "--w-txt-struct")
    SAME(one_way, "--one-way") SAME(batch_images, "--batch-images") SAME(sents_per_image, "--sents-per-image")
    SAME(optimizer, "--optimizer") SAME(lr, "--lr") SAME(lr_decay, "--lr-decay") SAME(weight_decay, "--weight-decay")
#undef SAME
    if (a->seed != b->seed) {
        snprintf(buf, n, "--seed %llu (the checkpoint: %llu)", (unsigned long long)b->seed,
                 (unsigned long long)a->seed);
        return buf;
    }
    return NULL;
}

static duet_status restore_train_state(trainer *t, json_t *tr, const char *path,
                                       duet_error *err) {
    json_t *rng = json_object_get(tr, "rng"), *hist = json_object_get(tr, "history");
    if (!json_is_object(tr) || !json_is_array(rng) || json_array_size(rng) != 4 ||
        !json_is_array(hist))
        return duet_fail(err, DUET_ERR_FORMAT, "%s: field 'train' is missing or incomplete", path);
    for (int i = 0; i < 4; i++) {
        const char *s = json_string_value(json_array_get(rng, (size_t)i));
        if (!s) return duet_fail(err, DUET_ERR_FORMAT, "%s: field train.rng[%d] is not a string", path, i);
        t->rng.s[i] = strtoull(s, NULL, 16);
    }
    t->epoch = (int)json_integer_value(json_object_get(tr, "epoch"));
    t->adam_t = (long long)json_integer_value(json_object_get(tr, "adam_t"));
    t->lr = (float)json_number_value(json_object_get(tr, "lr"));
    t->best_epoch = (int)json_integer_value(json_object_get(tr, "best_epoch"));
    t->bad_epochs = (int)json_integer_value(json_object_get(tr, "bad_epochs"));
    t->best_rsum = json_number_value(json_object_get(tr, "best_rsum"));
    size_t n = json_array_size(hist);
    if (t->epoch < 0 || (size_t)t->epoch != n || !(t->lr > 0.0f))
        return duet_fail(err, DUET_ERR_FORMAT, "%s: training state is inconsistent (epoch %d, %zu history records)",
                         path, t->epoch, n);
    t->log = duet_calloc_array(n + (size_t)t->p.epochs + 1, sizeof *t->log);
    if (!t->log) return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) {
        json_t *r = json_array_get(hist, i);
        t->log[i] = (duet_epoch_log){(int)json_integer_value(json_object_get(r, "epoch")),
                                     json_number_value(json_object_get(r, "loss")),
                                     json_number_value(json_object_get(r, "val_rsum")),
                                     json_number_value(json_object_get(r, "seconds")),
                                     (float)json_number_value(json_object_get(r, "lr"))};
    }
    t->n_log = n;
    return DUET_OK;
}

duet_status duet_train_load_checkpoint(trainer *t, const char *path, duet_error *err) {
    duet_tf_file tf;
    duet_status st = duet_tf_read(path, CKPT_MAGIC, CKPT_VERSION, "checkpoint", &tf, err);
    if (st) return st;
    json_t *h = tf.header;
    json_t *kind = json_object_get(h, "kind");
    duet_model *m = NULL;
    if (!json_is_string(kind) || strcmp(json_string_value(kind), "duet-checkpoint") != 0)
        st = duet_fail(err, DUET_ERR_FORMAT, "%s: field 'kind' is not \"duet-checkpoint\"", path);
    else /* the model part reads like a model file */
        json_object_set_new(h, "kind", json_string("duet-model"));
    if (!st) st = duet_model_from_tf(&tf, path, &m, err);
    if (!st && m->p.precision != t->p.precision)
        st = duet_fail(err, DUET_ERR_INVALID_ARG,
                       "%s: the checkpoint was trained in %s, this run computes in %s; "
                       "resume with --precision %s", path, duet_precision_name(m->p.precision),
                       duet_precision_name(t->p.precision), duet_precision_name(m->p.precision));
    char why[160];
    const char *diff = st ? NULL : run_diff(&m->p, &t->p, why, sizeof why);
    if (!st && (m->br[0].d_in != duet_features_cols(t->img) || m->br[1].d_in != duet_features_cols(t->txt)))
        st = duet_fail(err, DUET_ERR_INVALID_ARG,
                       "%s: the checkpoint was made on features %zu/%zu wide, this run's are %zu/%zu; resume with "
                       "the features of the original run", path, m->br[0].d_in, m->br[1].d_in,
                       duet_features_cols(t->img), duet_features_cols(t->txt));
    else if (!st && diff)
        st = duet_fail(err, DUET_ERR_INVALID_ARG,
                       "%s: the checkpoint was made with other settings: %s; resume with the flags of the "
                       "original run", path, diff);
    if (!st) {
        /* keep the run's own epochs/patience/threads; take the weights */
        memcpy(t->m->params, m->params, m->n_params * sizeof(float));
        memcpy(t->m->buffers, m->buffers, m->n_buffers * sizeof(float));
        duet_model_sync_bf16(t->m);
        const char *names[4] = {"opt_m1", "opt_m2", "best_params", "best_buffers"};
        float *dst[4] = {t->m1, t->m2, t->best_params, t->best_buf};
        size_t cnt[4] = {m->n_params, m->n_params, m->n_params, m->n_buffers};
        for (int i = 0; i < 4 && !st; i++) {
            const float *src = duet_tf_array_get(&tf, path, names[i], cnt[i], NULL, err);
            if (!src) st = err ? err->status : DUET_ERR_FORMAT;
            else memcpy(dst[i], src, cnt[i] * sizeof(float));
        }
    }
    if (!st) st = restore_train_state(t, json_object_get(h, "train"), path, err);
    duet_model_free(m);
    duet_tf_free(&tf);
    return st;
}

duet_status duet_train_share_state(trainer *t, duet_error *err) {
    duet_model *m = t->m;
    struct {
        int epoch, best_epoch, bad_epochs;
        long long adam_t;
        float lr;
        double best_rsum;
        duet_rng rng;
        size_t n_log;
    } s = {t->epoch, t->best_epoch, t->bad_epochs, t->adam_t, t->lr, t->best_rsum, t->rng, t->n_log};
    duet_status st = duet_comm_bcast(t->comm, &s, sizeof s, err);
    if (st) return st;
    if (!t->log) { /* not rank 0: room for the history and this run's epochs */
        t->log = duet_calloc_array(s.n_log + (size_t)t->p.epochs + 1, sizeof *t->log);
        if (!t->log) return duet_fail(err, DUET_ERR_NOMEM, "train: out of memory");
    }
    t->epoch = s.epoch; t->best_epoch = s.best_epoch; t->bad_epochs = s.bad_epochs;
    t->adam_t = s.adam_t; t->lr = s.lr; t->best_rsum = s.best_rsum; t->rng = s.rng; t->n_log = s.n_log;
    void *bufs[7] = {t->log, m->params, m->buffers, t->m1, t->m2, t->best_params, t->best_buf};
    size_t bytes[7] = {s.n_log * sizeof *t->log, m->n_params * sizeof(float), m->n_buffers * sizeof(float),
                       m->n_params * sizeof(float), m->n_params * sizeof(float), m->n_params * sizeof(float),
                       m->n_buffers * sizeof(float)};
    for (int i = 0; i < 7 && !st; i++) st = duet_comm_bcast(t->comm, bufs[i], bytes[i], err);
    if (!st) duet_model_sync_bf16(m);
    return st;
}
