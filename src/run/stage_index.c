/* stage_index.c -- the index stage: the search index of the test
 * images and their captions. */
#define _XOPEN_SOURCE 700
#include "run/run.h"
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* The search index of the test images and captions (duet_index_write, issue
 * 5), served by `duet serve --index WORK/index-KEY/test.index`. */
duet_status duet_stage_index(duet_run_state *rs, duet_error *err) {
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
    duet_stage_key_precision(rs, &in);
    duet_status st = duet_stage_open(rs, S, &in, &done, err);
    if (st || done) { duet_sb_free(&in); return st; }
    duet_upstream u;
    duet_upstream_paths(rs, &u);
    duet_features *img = NULL, *txt = NULL;
    duet_mat ie = {0}, te = {0};
    duet_model *m = NULL;
    size_t *ti = NULL, nti = 0, *caps = NULL, nc = 0;
    const char **names = NULL, **texts = NULL;
    char mhex[17] = "", mhash[32], *tmh = NULL;
    st = duet_model_load(u.model, &m, err);
    if (!st) st = duet_model_set_precision(m, rs->prec, err);
    if (!st) st = duet_file_hash(u.model, mhex, err);
    if (!st) st = duet_run_load_features(rs, &u, &img, &txt, 0, err); /* scanned by the train stage */
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
        st = duet_run_embed_rows(m, DUET_SIDE_IMAGE, img, ti, nti, &ie, err);
    }
    if (!st) st = duet_run_embed_rows(m, DUET_SIDE_TEXT, txt, caps, nc, &te, err);
    if (!st) {
        snprintf(mhash, sizeof mhash, "fnv1a64:%s", mhex);
        duet_model_info *info = duet_model_info_of(m);
        tmh = info->text_model_hash;
        char amp[PATH_MAX], atm[PATH_MAX];
        if (!realpath(u.model, amp)) snprintf(amp, sizeof amp, "%s", u.model);
        if (!realpath(u.textmodel, atm)) snprintf(atm, sizeof atm, "%s", u.textmodel);
        duet_index_meta meta = {amp, mhash, atm, tmh, info->image_model, abs, duet_precision_name(rs->prec), NULL};
        duet_index_rows rows = {ie.cols, nti, ie.data, names, nc, te.data, texts};
        char xp[PATH_MAX];
        duet_stage_path(rs, S, "test.index", xp, sizeof xp);
        st = duet_index_write(xp, &meta, &rows, err);
    }
    if (!st)
        st = duet_stage_close(rs, S, json_pack("{s:s, s:I, s:I}", "index", "test.index", "images", (json_int_t)nti,
                                          "captions", (json_int_t)nc), &in, err);
    free(ti); free(caps); free(names); free(texts);
    duet_features_close(img); duet_features_close(txt); duet_mat_free(&ie); duet_mat_free(&te);
    duet_model_free(m);
    duet_sb_free(&in);
    return st;
}
