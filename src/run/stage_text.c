/* stage_text.c -- the vectors stage (word vectors restricted to the
 * captions' words) and the text stage (the text model fit on the training
 * captions, and every caption's features). */
#define _XOPEN_SOURCE 700
#include "run/run.h"
#include "text/text.h"
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static int uses_vectors(const duet_run_state *rs) { return rs->c->text.encoder != DUET_ENC_TFIDF; }

duet_status duet_stage_vectors(duet_run_state *rs, duet_error *err) {
    const int S = DUET_STAGE_VECTORS;
    if (!uses_vectors(rs)) {
        rs->res->stage[S].state = DUET_STAGE_SKIPPED;
        return DUET_OK;
    }
    duet_sbuf in = {0};
    int done;
    duet_sb_printf(&in, "stage=vectors\ncaptions=%016llx\n", (unsigned long long)rs->data_hash);
    duet_status st = duet_stage_file_ident(&in, "vectors", rs->c->vectors, err);
    if (!st) st = duet_stage_open(rs, S, &in, &done, err);
    if (st || done) { duet_sb_free(&in); return st; }
    duet_vectors *v = NULL;
    char out[PATH_MAX];
    duet_stage_path(rs, S, "vectors.duet", out, sizeof out);
    st = duet_vectors_import(rs->c->vectors, DUET_VEC_AUTO, &v, err);
    size_t n0 = st ? 0 : duet_vectors_count(v);
    if (!st) st = duet_vectors_restrict(v, rs->d, err);
    if (!st) st = duet_vectors_save(v, out, err);
    if (!st) {
        duet_run_say(rs, "vectors %zu of %zu words occur in the captions", duet_vectors_count(v), n0);
        st = duet_stage_close(rs, S, json_pack("{s:s, s:I, s:I, s:I}", "vectors", "vectors.duet", "words",
                                          (json_int_t)duet_vectors_count(v), "source_words", (json_int_t)n0,
                                          "dim", (json_int_t)duet_vectors_dim(v)), &in, err);
    }
    duet_vectors_free(v);
    duet_sb_free(&in);
    return st;
}

static void text_progress(void *user, const char *stage, size_t done, size_t total) {
    const duet_run_state *rs = user;
    duet_run_say(rs, "text    %s (%zu)", stage, total);
    (void)done;
}

duet_status duet_stage_text(duet_run_state *rs, duet_error *err) {
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
    if (rs->c->feature_dtype == DUET_DTYPE_F16) /* only then: f32 keys stay as they were */
        duet_sb_printf(&in, "feature_dtype=f16\n");
    /* The exact PCA's key text is the one from before there were methods;
     * the randomized one adds its settings only when a PCA will run: the
     * raw dimension exceeds pca_dim (the fv-* and mean dimensions follow
     * from the word vectors' width; tf-idf's vocabulary is not known yet) */
    duet_textmodel_params tp = *p;
    tp.precision = rs->prec;
    size_t wd = (size_t)json_integer_value(json_object_get(rs->man[DUET_STAGE_VECTORS], "dim"));
    size_t raw = duet_textmodel_raw_dim(p->encoder, p->components, wd, 0);
    if (p->pca_dim && (raw == 0 || p->pca_dim < raw) && p->pca_method != DUET_PCA_EXACT) {
        duet_sb_printf(&in, "pca_method=%s\npca_iters=%d\n", duet_pca_method_name(p->pca_method), p->pca_iters);
        duet_stage_key_precision(rs, &in);
    }
    duet_status st = duet_stage_open(rs, S, &in, &done, err);
    if (st || done) { duet_sb_free(&in); return st; }
    duet_vectors *v = NULL;
    duet_textmodel *m = NULL;
    duet_text_stats fs, es;
    duet_mat f = {0};
    char vp[PATH_MAX], mp[PATH_MAX], fp[PATH_MAX];
    duet_stage_path(rs, DUET_STAGE_VECTORS, "vectors.duet", vp, sizeof vp);
    duet_stage_path(rs, S, "text.model", mp, sizeof mp);
    duet_stage_path(rs, S, "features.npy", fp, sizeof fp);
    if (uses_vectors(rs)) st = duet_vectors_load(vp, &v, err);
    if (!st) st = duet_textmodel_fit(rs->d, v, &tp, text_progress, rs, &m, &fs, err);
    duet_vectors_free(v);
    if (!st) st = duet_textmodel_save(m, mp, err);
    if (!st) {
        f.rows = rs->d->n_captions;
        f.cols = duet_textmodel_dim(m);
        if (!(f.data = duet_alloc_array(f.rows, f.cols * sizeof(float))))
            st = duet_fail(err, DUET_ERR_NOMEM, "run: out of memory (%zu x %zu text features)", f.rows, f.cols);
    }
    if (!st) st = duet_textmodel_encode(m, (const char *const *)rs->d->captions, f.rows, &f, NULL, &es, err);
    if (!st) st = duet_npy_write_as(fp, &f, rs->c->feature_dtype, err);
    char hex[17] = "";
    if (!st) st = duet_file_hash(mp, hex, err);
    if (!st) {
        char hash[32];
        snprintf(hash, sizeof hash, "fnv1a64:%s", hex);
        duet_run_say(rs, "text    %s: %zu-D; %zu of %zu tokens known, %zu captions with no known word",
            duet_encoder_name(p->encoder), f.cols, es.n_known, es.n_tokens, es.n_empty);
        st = duet_stage_close(rs, S, json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:f}", "text_model",
                                          "text.model", "text_model_hash", hash, "features", "features.npy",
                                          "dtype", rs->c->feature_dtype == DUET_DTYPE_F16 ? "f16" : "f32",
                                          "dim", (json_int_t)f.cols, "tokens", (json_int_t)es.n_tokens,
                                          "known", (json_int_t)es.n_known, "empty", (json_int_t)es.n_empty,
                                          "fit_seconds", fs.seconds), &in, err);
    }
    duet_mat_free(&f);
    duet_textmodel_free(m);
    duet_sb_free(&in);
    return st;
}
