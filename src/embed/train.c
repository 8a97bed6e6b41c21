/* train.c -- the training loop (docs/MODEL.md, "Batch" and "Optimization").
 *
 *   for each epoch:
 *     shuffle the training images (seeded RNG)
 *     for each batch of B images, S sentences each:
 *       forward both branches -> loss -> backward -> weight decay -> update
 *     evaluate on the validation split; keep the best parameters
 *     write the checkpoint (if asked)
 *
 * The trainer owns: the model, a gradient slab and the optimizer slabs (all
 * with the parameter slab's layout), the best parameters, the RNG, and the
 * oneDNN engine of its products in the run's precision. In bf16 (mixed
 * precision) the batch is gathered straight into bf16, the products of both
 * branches take bf16 inputs (the model's bf16 mirror of W1/W2, rewritten by
 * every optimizer step) and accumulate in f32; the loss, batch-norm, the
 * gradients, the master weights and the optimizer state stay f32. */
#include "embed/embed.h"
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char CKPT_MAGIC[8] = {'D', 'U', 'E', 'T', 'C', 'K', 'P', 'T'};
#define CKPT_VERSION 2   /* 2: with a CRC-32C (core.h); 1 still read */

typedef struct trainer {
    const duet_dataset *d;
    const duet_mat *img, *txt;
    duet_params p;
    duet_model *m;
    duet_dnn dnn;                   /* engine, stream and resolved precision   */
    float *grad, *m1, *m2;          /* [n_params] each (m2 unused for SGD)     */
    float *best_params, *best_buf;  /* copies of the best epoch                */
    duet_bparams g[2];              /* views into grad                         */
    duet_rng rng;
    size_t *train0;                 /* training images (with captions), sorted */
    size_t *train;                  /* this epoch's order                      */
    size_t n_train;
    /* batch buffers */
    float *xi, *xt;                 /* [B x d_img], [B*S x d_txt] (f32 only;
                                       bf16 gathers into ws[s].xb)             */
    size_t *img_rows, *cap_rows;    /* [B], [B*S]: the batch's feature rows    */
    float *de_i, *de_t;             /* [B x o], [B*S x o]                      */
    size_t *sent_img;               /* [B*S]                                   */
    size_t *pick;                   /* caption sampling scratch                */
    size_t pick_cap;
    duet_branch_ws ws[2];
    duet_loss_ws lws;
    /* progress */
    int epoch;                      /* epochs completed                        */
    long long adam_t;               /* optimizer steps taken                   */
    float lr;
    int best_epoch, bad_epochs;
    double best_rsum;
    duet_epoch_log *log;
    size_t n_log;
} trainer;

static void trainer_free(trainer *t) {
    free(t->grad); free(t->m1); free(t->m2);
    free(t->best_params); free(t->best_buf);
    free(t->train0); free(t->train); free(t->xi); free(t->xt); free(t->de_i); free(t->de_t);
    free(t->sent_img); free(t->pick); free(t->img_rows); free(t->cap_rows);
    duet_branch_ws_free(&t->ws[0]);
    duet_branch_ws_free(&t->ws[1]);
    duet_loss_ws_free(&t->lws);
    duet_dnn_fini(&t->dnn);
    free(t->log);
    duet_model_free(t->m);
}

/* Training images: the train split's images that have captions. */
static duet_status collect_train(trainer *t, duet_error *err) {
    size_t *idx, n;
    duet_status st = duet_dataset_split_images(t->d, DUET_SPLIT_TRAIN, &idx, &n, err);
    if (st) return st;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (t->d->image_cap_start[idx[i] + 1] > t->d->image_cap_start[idx[i]])
            idx[k++] = idx[i];
    t->train0 = idx;
    t->n_train = k;
    t->train = duet_alloc_array(k, sizeof(size_t));
    if (!t->train) return duet_fail(err, DUET_ERR_NOMEM, "train: out of memory");
    if (k < 2)
        return duet_fail(err, DUET_ERR_EMPTY,
                         "train: %s has %zu training images with captions; at least 2 are needed",
                         t->d->source, k);
    return DUET_OK;
}

static size_t batch_cap(const trainer *t) {
    return t->n_train < t->p.batch_images ? t->n_train : t->p.batch_images;
}

/* A branch's failure (its message is in its workspace) into err. */
static duet_status branch_fail(const duet_branch_ws *ws, duet_status st, duet_error *err) {
    if (err) *err = ws->err;
    return st;
}

static duet_status alloc_buffers(trainer *t, duet_error *err) {
    duet_model *m = t->m;
    size_t B = batch_cap(t), S = t->p.sents_per_image, ns = B * S,
           o = t->p.embed_dim;
    size_t maxc = 0;
    for (size_t i = 0; i < t->d->n_images; i++) {
        size_t c = t->d->image_cap_start[i + 1] - t->d->image_cap_start[i];
        if (c > maxc) maxc = c;
    }
    t->pick_cap = maxc > S ? maxc : S;
    t->grad = duet_embed_alloc(m->n_params, sizeof(float), 1);
    t->m1 = duet_embed_alloc(m->n_params, sizeof(float), 1);
    t->m2 = duet_embed_alloc(m->n_params, sizeof(float), 1);
    t->best_params = duet_embed_alloc(m->n_params, sizeof(float), 0);
    t->best_buf = duet_alloc_array(m->n_buffers, sizeof(float));
    int f32 = t->dnn.prec != DUET_PRECISION_BF16;
    if (f32) {
        t->xi = duet_embed_alloc(B, m->br[0].d_in * sizeof(float), 0);
        t->xt = duet_embed_alloc(ns, m->br[1].d_in * sizeof(float), 0);
    }
    t->de_i = duet_alloc_array(B, o * sizeof(float));
    t->de_t = duet_alloc_array(ns, o * sizeof(float));
    t->sent_img = duet_alloc_array(ns, sizeof(size_t));
    t->pick = duet_alloc_array(t->pick_cap, sizeof(size_t));
    t->img_rows = duet_alloc_array(B, sizeof(size_t));
    t->cap_rows = duet_alloc_array(ns, sizeof(size_t));
    if (!t->grad || !t->m1 || !t->m2 || !t->best_params || !t->best_buf ||
        (f32 && (!t->xi || !t->xt)) || !t->de_i || !t->de_t || !t->sent_img || !t->pick ||
        !t->img_rows || !t->cap_rows)
        return duet_fail(err, DUET_ERR_NOMEM, "train: out of memory for batch buffers");
    duet_model_views(m, t->grad, t->g);
    memcpy(t->best_params, m->params, m->n_params * sizeof(float));
    memcpy(t->best_buf, m->buffers, m->n_buffers * sizeof(float));
    duet_status st;
    if ((st = duet_branch_ws_init_dnn(&t->ws[0], &m->br[0], B, &t->dnn, err)) ||
        (st = duet_branch_ws_init_dnn(&t->ws[1], &m->br[1], ns, &t->dnn, err)) ||
        (st = duet_loss_ws_init_dnn(&t->lws, B, ns, t->p.top_k, &t->dnn, err)))
        return st;
    return DUET_OK;
}

typedef struct gather_job {
    const float *src;       /* feature matrix                               */
    const size_t *rows;     /* [n] its rows to take                         */
    size_t cols;
    float *dst;             /* [n x cols], or NULL                          */
    uint16_t *dst_h;        /* [n x cols] bf16, when dst is NULL            */
} gather_job;

static void gather_range(void *ctx, size_t r0, size_t r1) {
    gather_job *j = ctx;
    for (size_t r = r0; r < r1; r++) {
        const float *row = j->src + j->rows[r] * j->cols;
        if (j->dst) memcpy(j->dst + r * j->cols, row, j->cols * sizeof(float));
        else duet_f32_to_bf16(row, j->dst_h + r * j->cols, j->cols);
    }
}

/* Copies rows[0..n) of src into dst (f32) or dst_h (bf16), on the threads. */
static void gather(const duet_mat *src, const size_t *rows, size_t n, float *dst,
                   uint16_t *dst_h) {
    gather_job j = {src->data, rows, src->cols, dst, dst_h};
    duet_embed_parallel_for(n, src->cols, gather_range, &j);
}

/* Fills the batch of images ids[0..B): features and S sampled sentences each
 * (without replacement when the image has at least S captions). The
 * sampling runs first (it draws from the RNG), then the copies on the
 * threads: into t->xi / t->xt in f32, into the workspaces' bf16 inputs in
 * bf16. */
static void fill_batch(trainer *t, const size_t *ids, size_t B) {
    const duet_dataset *d = t->d;
    size_t S = t->p.sents_per_image;
    for (size_t b = 0; b < B; b++) {
        size_t im = ids[b];
        t->img_rows[b] = im;
        size_t c0 = d->image_cap_start[im], nc = d->image_cap_start[im + 1] - c0;
        for (size_t q = 0; q < nc; q++) t->pick[q] = q;
        for (size_t s = 0; s < S; s++) {
            size_t q;
            if (nc >= S) { /* partial Fisher-Yates */
                size_t r = s + (size_t)duet_rng_below(&t->rng, nc - s);
                size_t tmp = t->pick[s]; t->pick[s] = t->pick[r]; t->pick[r] = tmp;
                q = t->pick[s];
            } else {
                q = (size_t)duet_rng_below(&t->rng, nc);
            }
            size_t j = b * S + s;
            t->cap_rows[j] = d->image_caps[c0 + q];
            t->sent_img[j] = b;
        }
    }
    gather(t->img, t->img_rows, B, t->xi, t->ws[0].xb);
    gather(t->txt, t->cap_rows, B * S, t->xt, t->ws[1].xb);
}

/* Forward, loss, backward and update on the batch fill_batch gathered. */
static duet_status train_step(trainer *t, size_t B, duet_loss_terms *lt,
                              duet_error *err) {
    duet_model *m = t->m;
    size_t ns = B * t->p.sents_per_image, o = t->p.embed_dim;
    const float *x[2] = {t->xi, t->xt}; /* NULL in bf16: the rows are in ws[s].xb */
    size_t n[2] = {B, ns};
    duet_status st;
    for (int s = 0; s < 2; s++)
        if ((st = duet_branch_forward(&m->br[s], &m->w[s], &m->bn[s], &m->p, x[s], n[s], 1,
                                      &t->rng, NULL, &t->ws[s])))
            return branch_fail(&t->ws[s], st, err);
    st = duet_loss(&m->p, t->ws[0].e, B, t->ws[1].e, ns, o,
                   t->sent_img, NULL, lt, t->de_i, t->de_t, &t->lws, err);
    if (st) return st;
    if (!isfinite(lt->total))
        return duet_fail(err, DUET_ERR_NONFINITE,
                         "train: the loss became %g at epoch %d; lower --lr",
                         (double)lt->total, t->epoch + 1);
    const float *de[2] = {t->de_i, t->de_t};
    for (int s = 0; s < 2; s++)
        if ((st = duet_branch_backward(&m->br[s], &m->w[s], x[s], n[s], de[s], &t->g[s], &t->ws[s])))
            return branch_fail(&t->ws[s], st, err);
    duet_weight_decay(m, t->g, t->p.weight_decay);
    t->adam_t++;
    duet_optimizer_step_mirror(&t->p, m->params, m->params_h, t->grad, t->m1, t->m2,
                               m->n_params, t->adam_t, t->lr);
    return DUET_OK;
}
static int has_val(const duet_dataset *d) {
    for (size_t i = 0; i < d->n_images; i++)
        if (d->image_split[i] == DUET_SPLIT_VAL &&
            d->image_cap_start[i + 1] > d->image_cap_start[i])
            return 1;
    return 0;
}

/* ---------------------------------------------------------- checkpoints */

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

static duet_status save_checkpoint(const trainer *t, const char *path,
                                   duet_error *err) {
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

/* The settings that must agree between a checkpoint and the run resuming it. */
static int same_run(const duet_params *a, const duet_params *b) {
    return a->linear == b->linear && a->hidden == b->hidden &&
           a->embed_dim == b->embed_dim && a->dropout == b->dropout &&
           a->margin == b->margin && a->top_k == b->top_k &&
           a->w_i2t == b->w_i2t && a->w_t2i == b->w_t2i &&
           a->w_img_struct == b->w_img_struct && a->w_txt_struct == b->w_txt_struct &&
           a->one_way == b->one_way && a->batch_images == b->batch_images &&
           a->sents_per_image == b->sents_per_image && a->optimizer == b->optimizer &&
           a->lr == b->lr && a->lr_decay == b->lr_decay &&
           a->weight_decay == b->weight_decay && a->seed == b->seed;
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

static duet_status load_checkpoint(trainer *t, const char *path, duet_error *err) {
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
    if (!st && (m->br[0].d_in != t->img->cols || m->br[1].d_in != t->txt->cols ||
                !same_run(&m->p, &t->p)))
        st = duet_fail(err, DUET_ERR_INVALID_ARG,
                       "%s: the checkpoint was made with other settings or feature "
                       "widths (%zu/%zu); resume with the flags of the original run",
                       path, m->br[0].d_in, m->br[1].d_in);
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

/* ---------------------------------------------------------------- epochs */

static int cancelled(const duet_train_opts *o) { return o && o->cancel && *o->cancel; }

static duet_status run_epoch(trainer *t, const duet_train_opts *o,
                             double *mean_loss, duet_error *err) {
    size_t B = batch_cap(t);
    size_t steps = t->n_train / B;  /* the remainder waits for a later shuffle */
    /* each epoch shuffles the canonical order, so that an epoch depends on
     * the RNG state alone (and a resumed run repeats an uninterrupted one) */
    memcpy(t->train, t->train0, t->n_train * sizeof(size_t));
    duet_rng_shuffle(&t->rng, t->train, t->n_train);
    double sum = 0.0;
    for (size_t s = 0; s < steps; s++) {
        if (cancelled(o))
            return duet_fail(err, DUET_ERR_INTERRUPTED, "train: interrupted in epoch %d", t->epoch + 1);
        fill_batch(t, t->train + s * B, B);
        duet_loss_terms lt;
        duet_status st = train_step(t, B, &lt, err);
        if (st) return st;
        sum += lt.total;
        if (o && o->progress &&
            o->progress(o->progress_user, t->epoch + 1, s + 1, steps, sum / (double)(s + 1)))
            return duet_fail(err, DUET_ERR_INTERRUPTED, "train: interrupted in epoch %d", t->epoch + 1);
    }
    *mean_loss = sum / (double)steps;
    return DUET_OK;
}

/* Validation, best-model bookkeeping, the log record and the checkpoint. */
static duet_status end_epoch(trainer *t, int val, double loss, double secs,
                             const duet_train_opts *o, int *stop,
                             duet_error *err) {
    duet_model *m = t->m;
    double rsum = -1.0;
    if (val) {
        duet_eval_result r;
        duet_status st = duet_evaluate(m, t->d, t->img, t->txt, DUET_SPLIT_VAL, 0, &r, err);
        if (st) return st;
        rsum = r.rsum;
    }
    t->epoch++;
    if (!val || rsum > t->best_rsum) {
        t->best_rsum = rsum;
        t->best_epoch = t->epoch;
        t->bad_epochs = 0;
        memcpy(t->best_params, m->params, m->n_params * sizeof(float));
        memcpy(t->best_buf, m->buffers, m->n_buffers * sizeof(float));
    } else {
        t->bad_epochs++;
    }
    t->log[t->n_log++] = (duet_epoch_log){t->epoch, loss, rsum, secs, t->lr};
    t->lr *= t->p.lr_decay;
    if (o && o->on_epoch) o->on_epoch(o->epoch_user, &t->log[t->n_log - 1]);
    *stop = t->p.patience > 0 && t->bad_epochs >= t->p.patience;
    if (o && o->checkpoint_path) return save_checkpoint(t, o->checkpoint_path, err);
    return DUET_OK;
}

static duet_status train_setup(trainer *t, const duet_dataset *d,
                               const duet_mat *img, const duet_mat *txt,
                               const duet_params *p, const duet_train_opts *o,
                               duet_error *err) {
    memset(t, 0, sizeof *t);
    t->d = d; t->img = img; t->txt = txt; t->p = *p;
    duet_status st = duet_params_validate(p, err);
    if (!st) st = duet_check_features(d, img, "image features", txt, "text features", err);
    if (st) return st;
    if (p->w_img_struct != 0.0f)
        return duet_fail(err, DUET_ERR_INVALID_ARG,
                         "train: w_img_struct is %g, but %s gives its images no "
                         "neighbours (the image structure term needs them)",
                         (double)p->w_img_struct, d->source);
    if (p->threads > 0) duet_set_threads(p->threads);
    if ((st = duet_dnn_init(&t->dnn, p->precision, err))) return st;
    t->p.precision = t->dnn.prec; /* resolved: what the model file records */
    duet_rng_seed(&t->rng, p->seed);
    if ((st = collect_train(t, err))) return st;
    if ((st = duet_model_create(img->cols, txt->cols, &t->p, &t->rng, &t->m, err))) return st;
    snprintf(t->m->isa, sizeof t->m->isa, "%s", duet_cpu_isa());
    /* the products read the model's bf16 mirror, which validation also
     * embeds with */
    if ((st = duet_model_set_precision(t->m, t->dnn.prec, err))) return st;
    if ((st = alloc_buffers(t, err))) return st;
    t->lr = p->lr;
    t->best_rsum = -1.0;
    if (o && o->resume && o->checkpoint_path) {
        FILE *f = fopen(o->checkpoint_path, "rb");
        if (f) {
            fclose(f);
            return load_checkpoint(t, o->checkpoint_path, err);
        }
    }
    t->log = duet_calloc_array((size_t)p->epochs + 1, sizeof *t->log);
    if (!t->log) return duet_fail(err, DUET_ERR_NOMEM, "train: out of memory");
    return DUET_OK;
}

duet_status duet_train(const duet_dataset *d, const duet_mat *img,
                       const duet_mat *txt, const duet_params *p,
                       const duet_train_opts *opts, duet_model **out,
                       duet_epoch_log **logs, size_t *n_logs,
                       duet_error *err) {
    *out = NULL;
    if (logs) *logs = NULL;
    if (n_logs) *n_logs = 0;
    trainer t;
    duet_status st = train_setup(&t, d, img, txt, p, opts, err);
    int val = st ? 0 : has_val(d), stop = 0;
    while (!st && !stop && t.epoch < p->epochs) {
        double t0 = duet_now(), loss = 0.0;
        st = run_epoch(&t, opts, &loss, err);
        if (!st) st = end_epoch(&t, val, loss, duet_now() - t0, opts, &stop, err);
    }
    if (st) { trainer_free(&t); return st; }
    duet_model *m = t.m;
    memcpy(m->params, t.best_params, m->n_params * sizeof(float));
    memcpy(m->buffers, t.best_buf, m->n_buffers * sizeof(float));
    duet_model_sync_bf16(m);
    m->p.epochs = p->epochs;
    m->info.dataset = duet_strdup(d->source);
    m->info.epochs_run = t.epoch;
    m->info.best_epoch = t.best_epoch;
    m->info.best_val_rsum = (float)t.best_rsum;
    t.m = NULL;
    if (logs) { *logs = t.log; t.log = NULL; }
    if (n_logs) *n_logs = t.n_log;
    trainer_free(&t);
    *out = m;
    return DUET_OK;
}
