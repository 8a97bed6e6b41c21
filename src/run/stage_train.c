/* stage_train.c -- the train stage (duet_train with validation model
 * selection, checkpointed every epoch) and the eval stage (validation and
 * test Recall@K, example queries). */
#define _XOPEN_SOURCE 700
#include "run/run.h"
#include <math.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

typedef struct train_ctx { duet_run_state *rs; int epochs; } train_ctx;


static int train_step(void *user, int epoch, size_t step, size_t steps, double loss) {
    train_ctx *t = user;
    const duet_run_state *rs = t->rs;
    if (rs->h && rs->h->progress)
        rs->h->progress(rs->h->user, "train", (size_t)(epoch - 1) * steps + step, (size_t)t->epochs * steps);
    (void)loss;
    return duet_run_cancelled(rs);
}

static void train_epoch(void *user, const duet_epoch_log *l) {
    train_ctx *t = user;
    char val[32] = "-";
    if (l->val_rsum >= 0) snprintf(val, sizeof val, "%.1f", l->val_rsum);
    duet_run_say(t->rs, "train   epoch %d/%d  loss %.4f  val R-sum %s  lr %.3g  %.1f s", l->epoch, t->epochs,
        l->loss, val, (double)l->lr, l->seconds);
}

static duet_status train_key(const duet_run_state *rs, const duet_params *p, duet_sbuf *in) {
    duet_sb_printf(in, "stage=train\nimage=%s\ntext=%s\ndataset=%016llx\n", rs->res->stage[DUET_STAGE_IMAGE].key,
                   rs->res->stage[DUET_STAGE_TEXT].key, (unsigned long long)rs->data_hash);
    duet_sb_printf(in, "linear=%d hidden=%zu embed_dim=%zu dropout=%.9g bn_eps=%.9g bn_momentum=%.9g\n",
                   p->linear, p->hidden, p->embed_dim, (double)p->dropout, (double)p->bn_eps, (double)p->bn_momentum);
    duet_sb_printf(in, "margin=%.9g top_k=%zu w_i2t=%.9g w_t2i=%.9g w_img_struct=%.9g w_txt_struct=%.9g one_way=%d\n",
                   (double)p->margin, p->top_k, (double)p->w_i2t, (double)p->w_t2i, (double)p->w_img_struct,
                   (double)p->w_txt_struct, p->one_way);
    if (p->top_k_final) duet_sb_printf(in, "top_k_final=%zu\n", p->top_k_final); /* only then: keys stay */
    duet_sb_printf(in, "batch_images=%zu sents_per_image=%zu optimizer=%d lr=%.9g lr_decay=%.9g momentum=%.9g "
                   "weight_decay=%.9g adam=%.9g,%.9g,%.9g epochs=%d patience=%d seed=%llu\n",
                   p->batch_images, p->sents_per_image, (int)p->optimizer, (double)p->lr, (double)p->lr_decay,
                   (double)p->momentum, (double)p->weight_decay, (double)p->adam_beta1, (double)p->adam_beta2,
                   (double)p->adam_eps, p->epochs, p->patience, (unsigned long long)p->seed);
    duet_stage_key_precision(rs, in);
    return DUET_OK;
}

/* What rank 0 tells the other ranks of the train stage: whether it is to
 * be built, and the files (rank 0 alone knows the stages before it). */
typedef struct train_share {
    int st, done;
    duet_upstream u;
    char ck[PATH_MAX];
} train_share;

/* Trains one model with settings p (the run's, or an ensemble member's:
 * another seed) under the key a run of those settings has. Under MPI every
 * rank trains (data-parallel, docs/SCALE.md) on the features rank 0 wrote,
 * which every rank must be able to read at the same path; rank 0 alone
 * writes the model and the stage. */
static duet_status train_one(duet_run_state *rs, const duet_params *p, duet_error *err) {
    const int S = DUET_STAGE_TRAIN;
    duet_comm *comm = rs->c->comm;
    int rank0 = duet_comm_rank(comm) == 0;
    duet_sbuf in = {0};
    train_share sh = {0};
    duet_status st = DUET_OK;
    if (rank0) {
        train_key(rs, p, &in);
        st = duet_stage_open(rs, S, &in, &sh.done, err);
        if (!st && !sh.done) {
            duet_upstream_paths(rs, &sh.u);
            duet_stage_path(rs, S, "model.ckpt", sh.ck, sizeof sh.ck);
        }
        sh.st = st;
    }
    if (duet_comm_size(comm) > 1) {
        duet_status b = duet_comm_bcast(comm, &sh, sizeof sh, err);
        if (b) st = b;
        else if (!rank0 && sh.st) st = duet_fail(err, DUET_ERR_IO, "rank 0 failed to open the train stage");
    }
    if (st || sh.done) { duet_sb_free(&in); return st; }
    duet_upstream u = sh.u;
    const char *ck = sh.ck;
    duet_features *img = NULL, *txt = NULL;
    duet_model *m = NULL;
    duet_epoch_log *logs = NULL;
    size_t nlogs = 0;
    st = duet_run_load_features(rs, &u, &img, &txt, 0, err); /* duet_train_features scans them */
    st = duet_comm_all_ok(comm, st, err);   /* a rank that cannot read them stops every rank */
    FILE *probe = st || !rank0 ? NULL : fopen(ck, "rb");
    if (probe) { fclose(probe); duet_run_say(rs, "train   resuming from %s", ck); }
    train_ctx tc = {rs, p->epochs};
    duet_train_opts o = {ck, 1, train_step, &tc, train_epoch, &tc, rs->h ? rs->h->cancel : NULL, comm};
    duet_params tp = *p;
    tp.precision = rs->prec;
    if (!st) st = duet_train_features(rs->d, img, txt, &tp, &o, &m, &logs, &nlogs, err);
    if (st == DUET_ERR_INTERRUPTED) duet_run_interrupted(S, err);
    duet_features_close(img);
    duet_features_close(txt);
    if (!rank0) { /* rank 0 writes the model; every rank learns whether it could */
        free(logs);
        duet_model_free(m);
        return duet_comm_all_ok(comm, st, err);
    }
    if (!st) {
        duet_model_info *info = duet_model_info_of(m);
        const char *hash = json_string_value(json_object_get(rs->man[DUET_STAGE_TEXT], "text_model_hash"));
        const char *im = json_string_value(json_object_get(rs->man[DUET_STAGE_IMAGE], "image_model"));
        free(info->dataset);
        int oom = 0;
        info->dataset = duet_strdup_or_flag(rs->c->dataset, &oom);
        info->image_features = duet_strdup_or_flag(u.img, &oom);
        info->text_features = duet_strdup_or_flag(u.txt, &oom);
        info->text_model = duet_strdup_or_flag(u.textmodel, &oom);
        info->text_model_hash = duet_strdup_or_flag(hash, &oom);
        info->image_model = duet_strdup_or_flag(im, &oom);
        st = oom ? duet_fail(err, DUET_ERR_NOMEM, "run: out of memory") : duet_model_save(m, u.model, err);
    }
    if (!st) {
        duet_model_info *info = duet_model_info_of(m);
        json_t *eps = json_array();
        for (size_t i = 0; i < nlogs; i++)
            json_array_append_new(eps, json_pack("{s:i, s:f, s:f, s:f, s:f}", "epoch", logs[i].epoch, "loss",
                                                 logs[i].loss, "val_rsum", logs[i].val_rsum, "seconds",
                                                 logs[i].seconds, "lr", (double)logs[i].lr));
        st = duet_stage_close(rs, S, json_pack("{s:s, s:i, s:i, s:f, s:o}", "model", "model.duet", "epochs_run",
                                          info->epochs_run, "best_epoch", info->best_epoch, "best_val_rsum",
                                          (double)info->best_val_rsum, "epochs", eps), &in, err);
        if (!st) remove(ck);
    }
    st = duet_comm_all_ok(comm, st, err);
    free(logs);
    duet_model_free(m);
    duet_sb_free(&in);
    return st;
}

/* The validation R-sum of the ensemble e (as the eval stage computes it:
 * the whole split, the run's precision) into *rsum; 0 without a split. */
static duet_status ensemble_val(duet_run_state *rs, duet_model *e, double *rsum, duet_error *err) {
    *rsum = 0;
    if (!rs->res->n_split[DUET_SPLIT_VAL]) return DUET_OK;
    duet_upstream u;
    duet_upstream_paths(rs, &u);
    duet_features *img = NULL, *txt = NULL;
    duet_eval_result v = {0};
    duet_status st = duet_model_set_precision(e, rs->prec, err);
    if (!st) st = duet_run_load_features(rs, &u, &img, &txt, 0, err);
    if (!st) st = duet_evaluate_features(e, rs->d, img, txt, DUET_SPLIT_VAL, 0, 0, &v, err);
    duet_features_close(img);
    duet_features_close(txt);
    if (!st) *rsum = v.rsum;
    return st;
}

/* --ensemble N: members with seeds seed .. seed + N - 1, each the train
 * stage of a run with that seed (so a run's model is reused as a member and
 * the reverse), then the ensemble's own stage: its key names the members',
 * its model.duet is the ensemble file (duet_model_ensemble) and its
 * manifest lists the members. Under MPI every member is trained by all
 * the ranks; rank 0 alone writes the ensemble. */
duet_status duet_stage_train(duet_run_state *rs, duet_error *err) {
    const int S = DUET_STAGE_TRAIN;
    size_t n = rs->c->ensemble > 1 ? rs->c->ensemble : 1;
    if (n == 1) return train_one(rs, &rs->c->train, err);
    if (duet_comm_rank(rs->c->comm) != 0) {   /* the others train each member with rank 0 */
        duet_status st = DUET_OK;
        for (size_t k = 0; !st && k < n; k++) {
            duet_params p = rs->c->train;
            p.seed += (uint64_t)k;
            st = train_one(rs, &p, err);
        }
        return st;
    }
    duet_run_stage *rst = &rs->res->stage[S];
    json_t *members = json_array();
    duet_sbuf in = {0};
    double secs = 0, bsecs = 0;
    duet_status st = members ? DUET_OK : duet_fail(err, DUET_ERR_NOMEM, "run: out of memory");
    duet_sb_printf(&in, "stage=train-ensemble\nmembers=%zu\n", n);
    for (size_t k = 0; !st && k < n; k++) {
        duet_params p = rs->c->train;
        p.seed += (uint64_t)k;
        duet_run_say(rs, "train   ensemble member %zu/%zu (seed %llu)", k + 1, n, (unsigned long long)p.seed);
        st = train_one(rs, &p, err);
        if (st) break;
        json_t *m = json_deep_copy(rs->man[S]);
        char mp[PATH_MAX];
        duet_stage_path(rs, S, "model.duet", mp, sizeof mp);
        json_object_set_new(m, "dir", json_string(rst->dir));
        json_object_set_new(m, "path", json_string(mp));
        json_object_set_new(m, "seed", json_integer((json_int_t)p.seed));
        json_object_del(m, "inputs");
        json_array_append_new(members, m);
        duet_sb_printf(&in, "member=%s\n", rst->key);
        secs += rst->seconds;
        bsecs += rst->build_seconds;
        json_decref(rs->man[S]);
        rs->man[S] = NULL;
        free(rst->dir);
        rst->dir = NULL;
    }
    int done = 0;
    if (!st) st = duet_stage_open(rs, S, &in, &done, err);
    if (!st && !done) {
        duet_model *m[DUET_ENSEMBLE_MAX] = {0}, *e = NULL;
        for (size_t k = 0; !st && k < n; k++)
            st = duet_model_load(json_string_value(json_object_get(json_array_get(members, k), "path")), &m[k], err);
        if (!st) st = duet_model_ensemble(m, n, &e, err);
        if (st) for (size_t k = 0; k < n; k++) duet_model_free(m[k]);
        char mp[PATH_MAX];
        duet_stage_path(rs, S, "model.duet", mp, sizeof mp);
        if (!st) st = duet_model_save(e, mp, err);
        double vr = 0;
        if (!st) st = ensemble_val(rs, e, &vr, err);
        if (!st) duet_run_say(rs, "train   ensemble of %zu: val R-sum %.1f", n, vr);
        duet_model_free(e);
        /* best_val_rsum: the ensemble's own; each member's epochs are in
         * members[]; the top-level epochs are member 1's (the report's
         * training curves), as before */
        json_t *m0 = json_array_get(members, 0);
        if (!st)
            st = duet_stage_close(rs, S, json_pack("{s:s, s:I, s:O, s:O, s:f, s:O, s:O}", "model", "model.duet",
                                                   "n_members", (json_int_t)n, "epochs_run",
                                                   json_object_get(m0, "epochs_run"), "best_epoch",
                                                   json_object_get(m0, "best_epoch"), "best_val_rsum", vr,
                                                   "epochs", json_object_get(m0, "epochs"), "members", members),
                                  &in, err);
    }
    if (!st) {   /* this run's time in the stage: the members' and the ensemble's */
        rst->seconds += secs;
        rst->build_seconds += bsecs;
    }
    json_decref(members);
    duet_sb_free(&in);
    return st;
}

static json_t *examples(duet_run_state *rs, const duet_model *m, const duet_features *img, const duet_features *txt,
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
    if ((*st = duet_run_embed_rows(m, DUET_SIDE_IMAGE, img, ti, nti, &ie, err)) ||
        (*st = duet_run_embed_rows(m, DUET_SIDE_TEXT, txt, qrows, nq, &qe, err)))
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

duet_status duet_stage_eval(duet_run_state *rs, duet_error *err) {
    const int S = DUET_STAGE_EVAL;
    duet_sbuf in = {0};
    int done;
    duet_sb_printf(&in, "stage=eval\ntrain=%s\nfold_size=%zu\nexamples=%zu\n", rs->res->stage[DUET_STAGE_TRAIN].key,
                   rs->c->fold_size, rs->c->examples);
    duet_stage_key_precision(rs, &in);
    duet_status st = duet_stage_open(rs, S, &in, &done, err);
    if (st || done) { duet_sb_free(&in); return st; }
    duet_upstream u;
    duet_upstream_paths(rs, &u);
    duet_features *img = NULL, *txt = NULL;
    duet_model *m = NULL;
    duet_eval_result val = {0}, test = {0};
    st = duet_model_load(u.model, &m, err);
    if (!st) st = duet_model_set_precision(m, rs->prec, err);
    if (!st) st = duet_run_load_features(rs, &u, &img, &txt, 1, err);
    if (!st && rs->res->n_split[DUET_SPLIT_VAL])
        st = duet_evaluate_features(m, rs->d, img, txt, DUET_SPLIT_VAL, 0, 0, &val, err);
    if (!st) st = duet_evaluate_features(m, rs->d, img, txt, DUET_SPLIT_TEST, rs->c->fold_size, 0, &test, err);
    json_t *ex = st ? NULL : examples(rs, m, img, txt, err, &st);
    json_t *mem = json_array();   /* an ensemble's members, each on its own */
    for (size_t k = 0; !st && duet_model_members(m) > 1 && k < duet_model_members(m); k++) {
        duet_eval_result mv = {0}, mt = {0};
        const duet_model *mk = duet_model_member(m, k);
        if (rs->res->n_split[DUET_SPLIT_VAL]) st = duet_evaluate_features(mk, rs->d, img, txt, DUET_SPLIT_VAL, 0, 0, &mv, err);
        if (!st) st = duet_evaluate_features(mk, rs->d, img, txt, DUET_SPLIT_TEST, rs->c->fold_size, 0, &mt, err);
        if (!st) {
            duet_run_say(rs, "eval    member %zu: test R-sum %.1f", k + 1, mt.rsum);
            json_array_append_new(mem, json_pack("{s:I, s:o, s:o}", "seed", (json_int_t)duet_model_params(mk)->seed,
                                                 "val", duet_eval_to_json(&mv), "test", duet_eval_to_json(&mt)));
        }
    }
    char desc[256];
    if (!st) duet_model_describe(m, desc, sizeof desc);
    if (!st) {
        duet_run_say(rs, "eval    test R-sum %.1f (image->text R@1 %.1f, text->image R@1 %.1f)", test.rsum, test.i2t.r1,
            test.t2i.r1);
        json_t *man = json_pack("{s:o, s:o, s:o}", "val", duet_eval_to_json(&val), "test", duet_eval_to_json(&test),
                                "examples", ex);
        if (man) json_object_set_new(man, "model_description", json_string(desc));
        if (man && json_array_size(mem)) json_object_set(man, "members", mem);
        st = duet_stage_close(rs, S, man, &in, err);
        ex = NULL;
    }
    json_decref(mem);
    json_decref(ex);
    duet_features_close(img);
    duet_features_close(txt);
    duet_model_free(m);
    duet_sb_free(&in);
    return st;
}
