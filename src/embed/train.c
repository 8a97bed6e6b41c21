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
#include "embed/train.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void trainer_free(trainer *t) {
    free(t->grad); free(t->m1); free(t->m2);
    free(t->best_params); free(t->best_buf);
    free(t->train0); free(t->train); free(t->xi); free(t->xt); free(t->de_i); free(t->de_t);
    free(t->sent_img); free(t->pick); free(t->img_rows); free(t->cap_rows);
    free(t->counts); free(t->e_all[0]); free(t->e_all[1]); free(t->scratch); free(t->errs);
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

/* This rank's images [lo, hi) of every batch (all of it alone), the images
 * and sentences of each rank, and the gathered embeddings' buffers. */
static duet_status split_batch(trainer *t, duet_error *err) {
    size_t B = batch_cap(t), S = t->p.sents_per_image, R = (size_t)t->ranks;
    size_t me = (size_t)duet_comm_rank(t->comm);
    if (B < R)
        return duet_fail(err, DUET_ERR_INVALID_ARG,
                         "train: a batch of %zu images cannot be split over %zu ranks "
                         "(fewer ranks, or more training images)", B, R);
    t->counts = duet_alloc_array(2 * R, sizeof(size_t));
    if (!t->counts) return duet_fail(err, DUET_ERR_NOMEM, "train: out of memory");
    for (size_t r = 0; r < R; r++) {
        t->counts[r] = B * (r + 1) / R - B * r / R;
        t->counts[R + r] = t->counts[r] * S;
    }
    t->lo = B * me / R;
    t->hi = B * (me + 1) / R;
    if (R > 1) {
        t->e_all[0] = duet_alloc_array(B, t->p.embed_dim * sizeof(float));
        t->e_all[1] = duet_alloc_array(B * S, t->p.embed_dim * sizeof(float));
        if (!t->e_all[0] || !t->e_all[1]) return duet_fail(err, DUET_ERR_NOMEM, "train: out of memory");
    }
    return DUET_OK;
}

static duet_status alloc_buffers(trainer *t, duet_error *err) {
    duet_model *m = t->m;
    size_t B = batch_cap(t), S = t->p.sents_per_image, ns = B * S,
           o = t->p.embed_dim;
    duet_status st = split_batch(t, err);
    if (st) return st;
    size_t Bl = t->hi - t->lo, nsl = Bl * S; /* this rank's rows */
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
        t->xi = duet_embed_alloc(Bl, m->br[0].d_in * sizeof(float), 0);
        t->xt = duet_embed_alloc(nsl, m->br[1].d_in * sizeof(float), 0);
    }
    t->de_i = duet_alloc_array(B, o * sizeof(float));
    t->de_t = duet_alloc_array(ns, o * sizeof(float));
    t->sent_img = duet_alloc_array(ns, sizeof(size_t));
    t->pick = duet_alloc_array(t->pick_cap, sizeof(size_t));
    t->img_rows = duet_alloc_array(B, sizeof(size_t));
    size_t wide = m->br[0].d_in > m->br[1].d_in ? m->br[0].d_in : m->br[1].d_in;
    t->scratch = duet_alloc_array(duet_embed_max_threads(), wide * sizeof(float));
    t->errs = duet_calloc_array(duet_embed_max_threads(), sizeof *t->errs);
    t->cap_rows = duet_alloc_array(ns, sizeof(size_t));
    if (!t->grad || !t->m1 || !t->m2 || !t->best_params || !t->best_buf ||
        (f32 && (!t->xi || !t->xt)) || !t->de_i || !t->de_t || !t->sent_img || !t->pick ||
        !t->img_rows || !t->cap_rows || !t->scratch || !t->errs)
        return duet_fail(err, DUET_ERR_NOMEM, "train: out of memory for batch buffers");
    duet_model_views(m, t->grad, t->g);
    memcpy(t->best_params, m->params, m->n_params * sizeof(float));
    memcpy(t->best_buf, m->buffers, m->n_buffers * sizeof(float));
    if ((st = duet_branch_ws_init_dnn(&t->ws[0], &m->br[0], Bl, &t->dnn, err)) ||
        (st = duet_branch_ws_init_dnn(&t->ws[1], &m->br[1], nsl, &t->dnn, err)) ||
        (st = duet_loss_ws_init_dnn(&t->lws, B, ns, t->p.top_k, &t->dnn, err)))
        return st;
    size_t n_all[2] = {B, ns}, row0[2] = {t->lo, t->lo * S};
    for (int s = 0; s < 2; s++) {
        t->ws[s].comm = t->comm;
        t->ws[s].n_all = n_all[s];
        t->ws[s].row0 = row0[s];
    }
    return DUET_OK;
}

typedef struct gather_job {
    const duet_features *src; /* the feature rows                           */
    const size_t *rows;     /* [n] its rows to take                         */
    size_t cols;
    float *dst;             /* [n x cols], or NULL                          */
    uint16_t *dst_h;        /* [n x cols] bf16, when dst is NULL            */
    float *scratch;         /* [threads x cols]: rows on their way to bf16  */
    duet_error *errs;       /* [threads]                                    */
    int failed;             /* a read failed (its thread's errs says how)   */
} gather_job;

static void gather_range(void *ctx, size_t r0, size_t r1) {
    gather_job *j = ctx;
    size_t th = duet_embed_thread();
    float *tmp = j->scratch + th * j->cols;
    for (size_t r = r0; r < r1; r++) {
        float *d = j->dst ? j->dst + r * j->cols : tmp;
        const float *row = duet_features_row(j->src, j->rows[r], d, &j->errs[th]);
        if (!row) {
            __atomic_store_n(&j->failed, (int)th + 1, __ATOMIC_RELAXED);
            return;
        }
        if (j->dst) {
            if (row != d) memcpy(d, row, j->cols * sizeof(float));
        } else {
            duet_f32_to_bf16(row, j->dst_h + r * j->cols, j->cols);
        }
    }
}

/* Copies rows[0..n) of src into dst (f32) or dst_h (bf16), on the threads. */
static duet_status gather(trainer *t, const duet_features *src, const size_t *rows, size_t n, float *dst,
                          uint16_t *dst_h, duet_error *err) {
    gather_job j = {src, rows, duet_features_cols(src), dst, dst_h, t->scratch, t->errs, 0};
    duet_features_prefetch(src, rows, n);
    duet_embed_parallel_for(n, j.cols, gather_range, &j);
    if (!j.failed) return DUET_OK;
    if (err) *err = t->errs[j.failed - 1];
    return t->errs[j.failed - 1].status;
}

/* Fills the batch of images ids[0..B): features and S sampled sentences each
 * (without replacement when the image has at least S captions). The
 * sampling runs first (it draws from the RNG; every rank draws the whole
 * batch), then the copies of this rank's rows on the threads: into t->xi /
 * t->xt in f32, into the workspaces' bf16 inputs in bf16. */
static duet_status fill_batch(trainer *t, const size_t *ids, size_t B, duet_error *err) {
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
    size_t lo = t->lo, n = t->hi - t->lo;
    duet_status st = gather(t, t->img, t->img_rows + lo, n, t->xi, t->ws[0].xb, err);
    return st ? st : gather(t, t->txt, t->cap_rows + lo * S, n * S, t->xt, t->ws[1].xb, err);
}

/* Forward, loss, backward and update on the batch fill_batch gathered.
 * Several ranks: each runs its rows through the branches; the loss sees
 * the embeddings of the whole batch (gathered on every rank, which all
 * compute the same loss and gradients), each rank back-propagates its rows'
 * gradients, and the parameter gradients are summed over the ranks (started
 * by the backward passes as each is known, finished here): every rank then
 * takes the same optimizer step. */
static duet_status train_step(trainer *t, size_t B, duet_loss_terms *lt,
                              duet_error *err) {
    duet_model *m = t->m;
    size_t S = t->p.sents_per_image, ns = B * S, o = t->p.embed_dim, Bl = t->hi - t->lo;
    const float *x[2] = {t->xi, t->xt}; /* NULL in bf16: the rows are in ws[s].xb */
    size_t n[2] = {Bl, Bl * S};
    duet_status st;
    for (int s = 0; s < 2; s++)
        if ((st = duet_branch_forward(&m->br[s], &m->w[s], &m->bn[s], &m->p, x[s], n[s], 1,
                                      &t->rng, NULL, &t->ws[s])))
            return branch_fail(&t->ws[s], st, err);
    const float *e[2] = {t->ws[0].e, t->ws[1].e};
    for (int s = 0; s < 2 && t->ranks > 1; s++) {
        st = duet_comm_allgather_rows(t->comm, t->ws[s].e, t->counts + s * t->ranks, o * sizeof(float),
                                      t->e_all[s], err);
        if (st) return st;
        e[s] = t->e_all[s];
    }
    duet_params lp = m->p;   /* the model's settings with this epoch's K (--top-k-final) */
    lp.top_k = duet_top_k_at(&t->p, t->epoch);
    st = duet_loss(&lp, e[0], B, e[1], ns, o,
                   t->sent_img, NULL, lt, t->de_i, t->de_t, &t->lws, err);
    if (st) return st;
    if (!isfinite(lt->total))
        return duet_fail(err, DUET_ERR_NONFINITE,
                         "train: the loss became %g at epoch %d; lower --lr",
                         (double)lt->total, t->epoch + 1);
    const float *de[2] = {t->de_i + t->lo * o, t->de_t + t->lo * S * o}; /* this rank's rows */
    for (int s = 0; s < 2; s++)
        if ((st = duet_branch_backward(&m->br[s], &m->w[s], x[s], n[s], de[s], &t->g[s], &t->ws[s])))
            return branch_fail(&t->ws[s], st, err);
    if ((st = duet_comm_allreduce_wait(t->comm, err))) return st;
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

/* ---------------------------------------------------------------- epochs */

/* Whether to stop before the next step: asked by the caller (cancel, or
 * the progress callback) on any rank; the ranks agree, so that all stop at
 * the same step. */
static duet_status should_stop(trainer *t, const duet_train_opts *o, int *stop, duet_error *err) {
    *stop = t->stop_req || (o && o->cancel && *o->cancel);
    duet_status st = duet_comm_any(t->comm, stop, err);
    if (!st && *stop)
        st = duet_fail(err, DUET_ERR_INTERRUPTED, "train: interrupted in epoch %d", t->epoch + 1);
    return st;
}

static duet_status run_epoch(trainer *t, const duet_train_opts *o,
                             double *mean_loss, duet_error *err) {
    size_t B = batch_cap(t);
    size_t steps = t->n_train / B;  /* the remainder waits for a later shuffle */
    /* each epoch shuffles the canonical order, so that an epoch depends on
     * the RNG state alone (and a resumed run repeats an uninterrupted one) */
    memcpy(t->train, t->train0, t->n_train * sizeof(size_t));
    duet_rng_shuffle(&t->rng, t->train, t->n_train);
    double sum = 0.0;
    int stop;
    duet_status st;
    for (size_t s = 0; s < steps; s++) {
        if ((st = should_stop(t, o, &stop, err))) return st;
        duet_loss_terms lt;
        if ((st = fill_batch(t, t->train + s * B, B, err)) || (st = train_step(t, B, &lt, err))) return st;
        sum += lt.total;
        if (o && o->progress &&
            o->progress(o->progress_user, t->epoch + 1, s + 1, steps, sum / (double)(s + 1)))
            t->stop_req = 1;
    }
    *mean_loss = sum / (double)steps;
    return should_stop(t, o, &stop, err);
}

/* Validation, best-model bookkeeping, the log record and the checkpoint. */
static duet_status end_epoch(trainer *t, int val, double loss, double secs,
                             const duet_train_opts *o, int *stop,
                             duet_error *err) {
    duet_model *m = t->m;
    double rsum = -1.0;
    if (t->ranks > 1) { /* the ranks hold the same parameters; rank 0's are the record */
        duet_status st = duet_comm_bcast(t->comm, m->params, m->n_params * sizeof(float), err);
        if (!st) st = duet_comm_bcast(t->comm, m->buffers, m->n_buffers * sizeof(float), err);
        if (st) return st;
        duet_model_sync_bf16(m);
    }
    if (val) { /* every rank evaluates (the same figures): it needs them to choose */
        duet_eval_result r;
        duet_status st = duet_evaluate_features(m, t->d, t->img, t->txt, DUET_SPLIT_VAL, 0, 0, &r, err);
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
    if (o && o->checkpoint_path && duet_comm_rank(t->comm) == 0)
        return duet_train_save_checkpoint(t, o->checkpoint_path, err);
    return DUET_OK;
}

static duet_status train_setup(trainer *t, const duet_dataset *d,
                               const duet_features *img, const duet_features *txt,
                               const duet_params *p, const duet_train_opts *o,
                               duet_error *err) {
    memset(t, 0, sizeof *t);
    t->d = d; t->img = img; t->txt = txt; t->p = *p;
    t->comm = o ? o->comm : NULL;
    t->ranks = duet_comm_size(t->comm);
    duet_status st = duet_params_validate(p, err);
    if (!st) st = duet_check_feature_sources(d, img, "image features", txt, "text features", 1, err);
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
    if ((st = duet_model_create(duet_features_cols(img), duet_features_cols(txt), &t->p, &t->rng, &t->m, err)))
        return st;
    snprintf(t->m->isa, sizeof t->m->isa, "%s", duet_cpu_isa());
    /* the products read the model's bf16 mirror, which validation also
     * embeds with */
    if ((st = duet_model_set_precision(t->m, t->dnn.prec, err))) return st;
    if ((st = alloc_buffers(t, err))) return st;
    t->lr = p->lr;
    t->best_rsum = -1.0;
    /* rank 0 reads the checkpoint and hands its state to the others */
    int resumed = 0;
    if (o && o->resume && o->checkpoint_path && duet_comm_rank(t->comm) == 0) {
        FILE *f = fopen(o->checkpoint_path, "rb");
        if (f) {
            fclose(f);
            st = duet_train_load_checkpoint(t, o->checkpoint_path, err);
            resumed = 1;
        }
    }
    if (t->ranks > 1 && (st = duet_comm_all_ok(t->comm, st, err))) return st;
    if (st) return st;
    if (t->ranks > 1 && (st = duet_comm_bcast(t->comm, &resumed, sizeof resumed, err))) return st;
    if (resumed) return t->ranks > 1 ? duet_train_share_state(t, err) : DUET_OK;
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
    duet_features *fi = NULL, *ft = NULL;
    duet_status st = duet_features_wrap(img, &fi, err);
    if (!st) st = duet_features_wrap(txt, &ft, err);
    if (!st) st = duet_train_features(d, fi, ft, p, opts, out, logs, n_logs, err);
    duet_features_close(fi);
    duet_features_close(ft);
    return st;
}

duet_status duet_train_features(const duet_dataset *d, const duet_features *img, const duet_features *txt,
                                const duet_params *p, const duet_train_opts *opts, duet_model **out,
                                duet_epoch_log **logs, size_t *n_logs, duet_error *err) {
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
