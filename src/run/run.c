/* run.c -- the main job as a graph of cached stages (docs/RUN.md):
 *
 *   image   --\
 *   vectors --> text --> train --> eval
 *                           \----> index (with image)
 *
 * duet_run loads the dataset, runs each stage in order (stage.c is the
 * engine, stage_*.c the stages), then collects the results from the
 * stages' manifests and writes WORK/run.json. */
#define _XOPEN_SOURCE 700
#include "run/run.h"
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>



static void hash_dataset(duet_run_state *rs) {
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

static duet_status load_dataset(duet_run_state *rs, duet_error *err) {
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

static char *stage_file(const duet_run_state *rs, int s, const char *field) {
    const char *f = json_string_value(json_object_get(rs->man[s], field));
    if (!f) return NULL;
    duet_sbuf b = {0};
    duet_sb_printf(&b, "%s/%s", rs->res->stage[s].dir, f);
    if (b.oom) { duet_sb_free(&b); return NULL; }
    return b.s;
}

static duet_status collect(duet_run_state *rs, duet_error *err) {
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
    r->model_description = duet_strdup_or_flag(json_string_value(json_object_get(ev, "model_description")), &oom);
    json_t *tm = json_object_get(tr, "members"), *em = json_object_get(ev, "members");
    if (json_array_size(tm) > 0) {   /* an ensemble: its members, each on its own */
        r->n_members = json_array_size(tm);
        r->members = duet_calloc_array(r->n_members, sizeof *r->members);
        if (!r->members) return duet_fail(err, DUET_ERR_NOMEM, "run: out of memory");
        for (size_t k = 0; k < r->n_members; k++) {
            json_t *t = json_array_get(tm, k), *e = json_array_get(em, k);
            r->members[k].seed = (uint64_t)json_integer_value(json_object_get(t, "seed"));
            r->members[k].best_epoch = (int)json_integer_value(json_object_get(t, "best_epoch"));
            r->members[k].epochs_run = (int)json_integer_value(json_object_get(t, "epochs_run"));
            duet_eval_from_json(json_object_get(e, "val"), &r->members[k].val);
            duet_eval_from_json(json_object_get(e, "test"), &r->members[k].test);
        }
    }
    for (size_t i = 0; i < r->n_examples; i++) {
        json_t *e = json_array_get(ex, i), *top = json_object_get(e, "top");
        duet_run_example *x = &r->examples[i];
        x->query = duet_strdup_or_flag(json_string_value(json_object_get(e, "query")), &oom);
        x->truth = duet_strdup_or_flag(json_string_value(json_object_get(e, "truth")), &oom);
        x->truth_rank = (int)json_integer_value(json_object_get(e, "truth_rank"));
        for (size_t k = 0; k < json_array_size(top) && k < 5; k++) {
            json_t *t = json_array_get(top, k);
            x->top[k] = duet_strdup_or_flag(json_string_value(json_object_get(t, "image")), &oom);
            x->score[k] = (float)json_number_value(json_object_get(t, "score"));
            x->n_top = k + 1;
        }
    }
    return oom ? duet_fail(err, DUET_ERR_NOMEM, "run: out of memory") : DUET_OK;
}

duet_status duet_run(const duet_run_config *c, const duet_run_hooks *h, duet_run_result *res,
                     duet_error *err) {
    memset(res, 0, sizeof *res);
    double t0 = duet_now();
    duet_status st = duet_run_check_config(c, err);
    if (st) return st;
    int rank = duet_comm_rank(c->comm);
    if ((st = duet_make_dirs(c->work, err))) return st;
    int lock = rank == 0 ? duet_run_lock(c->work, err) : -1;   /* rank 0 owns the work directory */
    if (rank == 0 && lock < 0) return err ? err->status : DUET_ERR_IO;
    if (c->train.threads > 0) duet_set_threads(c->train.threads);
    duet_run_state rs = {c, h, res, NULL, 0, 0, {0}, 0, DUET_PRECISION_F32};
    if ((st = duet_precision_resolve(c->train.precision, &rs.prec, err))) { if (lock >= 0) close(lock); return st; }
    st = load_dataset(&rs, err);
    duet_status (*const stages[DUET_STAGE_COUNT])(duet_run_state *, duet_error *) = {
        duet_stage_image, duet_stage_vectors, duet_stage_text, duet_stage_train, duet_stage_eval, duet_stage_index};
    /* under MPI every rank computes its share of the image stage, encodes
     * its share of the captions in the text stage (whose model rank 0 fits
     * alone) and trains (data-parallel) on its share of the machine's
     * cores; rank 0 runs the other stages alone, on all of them unless
     * --threads says otherwise, while the others wait quietly */
    int ranks = duet_comm_size(c->comm);
    for (int s = 0; !st && s < DUET_STAGE_COUNT; s++) {
        int all = s == DUET_STAGE_IMAGE || s == DUET_STAGE_TEXT || s == DUET_STAGE_TRAIN;
        if (rank != 0 && !all) continue;
        if (duet_run_cancelled(&rs)) { st = duet_run_interrupted(s, err); break; }
        if (ranks > 1 && all && s != DUET_STAGE_IMAGE && (st = duet_comm_wait_all(c->comm, err))) break;
        if (s > DUET_STAGE_IMAGE) duet_run_share_threads(&rs, s == DUET_STAGE_TRAIN);
        st = stages[s](&rs, err);
        if (st && st != DUET_ERR_INTERRUPTED)
            duet_fail_wrap(err, st, "stage %s", duet_stage_name(s));
    }
    if (!st && duet_comm_size(c->comm) > 1) st = duet_comm_wait_all(c->comm, err);
    if (rank != 0) {   /* its result: the image stage only */
        duet_dataset_free(rs.d);
        return st;
    }
    if (!st) st = collect(&rs, err);
    res->seconds = duet_now() - t0;
    res->peak_rss_kb = duet_peak_rss_kb();
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
    if (lock >= 0) close(lock);
    return st;
}
