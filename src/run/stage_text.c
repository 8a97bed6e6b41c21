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

/* The text stage's key text (rank 0: it alone knows the vectors stage). */
static void text_key(const duet_run_state *rs, duet_sbuf *in) {
    const duet_textmodel_params *p = &rs->c->text;
    duet_sb_printf(in, "stage=text\nvectors=%s\ndataset=%016llx\nencoder=%s\ncomponents=%zu\npca=%zu\n"
                   "pca_samples=%zu\nem_iters=%d\nem_tol=%.9g\nreg_covar=%.9g\nmin_scale=%.9g\nica=%d\nseed=%llu\n",
                   uses_vectors(rs) ? rs->res->stage[DUET_STAGE_VECTORS].key : "none",
                   (unsigned long long)rs->data_hash, duet_encoder_name(p->encoder), p->components,
                   p->pca_dim, p->pca_samples, p->em_iters, p->em_tol, p->reg_covar, p->min_scale, p->ica,
                   (unsigned long long)p->seed);
    if (rs->c->feature_dtype == DUET_DTYPE_F16) /* only then: f32 keys stay as they were */
        duet_sb_printf(in, "feature_dtype=f16\n");
    /* The exact PCA's key text is the one from before there were methods;
     * the randomized one adds its settings only when a PCA will run: the
     * raw dimension exceeds pca_dim (the fv-* and mean dimensions follow
     * from the word vectors' width; tf-idf's vocabulary is not known yet) */
    size_t wd = (size_t)json_integer_value(json_object_get(rs->man[DUET_STAGE_VECTORS], "dim"));
    size_t raw = duet_textmodel_raw_dim(p->encoder, p->components, wd, 0);
    if (p->pca_dim && (raw == 0 || p->pca_dim < raw) && p->pca_method != DUET_PCA_EXACT) {
        duet_sb_printf(in, "pca_method=%s\npca_iters=%d\n", duet_pca_method_name(p->pca_method), p->pca_iters);
        /* revision 2 (the PCA rebuilt for speed: another Gaussian stream,
         * CholeskyQR2 without an unneeded third pass) and the start */
        duet_sb_printf(in, "pca_rev=2\npca_start=%s\n", duet_pca_start_name(p->pca_start));
        duet_stage_key_precision(rs, in);
    }
}

/* Rank 0 fits the text model on the training captions and saves it at mp;
 * *m: the model (caller frees). */
static duet_status fit_model(duet_run_state *rs, const char *mp, duet_textmodel **m, duet_text_stats *fs,
                             duet_error *err) {
    duet_textmodel_params tp = rs->c->text;
    tp.precision = rs->prec;
    duet_vectors *v = NULL;
    char vp[PATH_MAX];
    duet_stage_path(rs, DUET_STAGE_VECTORS, "vectors.duet", vp, sizeof vp);
    duet_status st = uses_vectors(rs) ? duet_vectors_load(vp, &v, err) : DUET_OK;
    if (!st) st = duet_textmodel_fit(rs->d, v, &tp, text_progress, rs, m, fs, err);
    duet_vectors_free(v);
    if (!st) st = duet_textmodel_save(*m, mp, err);
    return st;
}

/* Under MPI, every rank: rank 0 sends the text model file it wrote at path
 * (st: whether it could fit and write it) to the others, which load it
 * from the bytes into *m (caller frees): no rank reads rank 0's files. */
static duet_status share_model(duet_comm *comm, duet_status st, const char *path, duet_textmodel **m,
                               duet_error *err) {
    int rank0 = duet_comm_rank(comm) == 0;
    char *buf = NULL;
    uint64_t len = 0; /* 0: rank 0 has no model to send */
    if (rank0 && !st) {
        size_t n = 0;
        st = duet_read_file(path, (size_t)1 << 40, &buf, &n, err);
        if (!st) len = n;
    }
    duet_status b = duet_comm_bcast(comm, &len, sizeof len, err);
    if (!b && len && !rank0 && !(buf = malloc((size_t)len)))
        b = duet_fail(err, DUET_ERR_NOMEM, "run: out of memory (a text model of %llu bytes)", (unsigned long long)len);
    if (!b && len) b = duet_comm_bcast(comm, buf, (size_t)len, err);
    if (b || rank0) { free(buf); return b ? b : st; }
    if (!len) return duet_fail(err, DUET_ERR_IO, "rank 0 could not fit the text model (its message says why)");
    return duet_textmodel_load_mem(buf, (size_t)len, "the text model from rank 0", m, err);
}

/* Every rank encodes its share of the captions: a contiguous run of whole
 * DUET_TEXT_BATCH batches (so every caption is encoded in the same batch as
 * in one process); rank 0 gathers the rows in order into *f (caller frees)
 * and the counts of every rank into *es. */
static duet_status encode_captions(duet_run_state *rs, const duet_textmodel *m, duet_mat *f, duet_text_stats *es,
                                   duet_error *err) {
    duet_comm *comm = rs->c->comm;
    size_t n = rs->d->n_captions, dim = duet_textmodel_dim(m), lo = 0, hi = n;
    duet_comm_range(comm, n, DUET_TEXT_BATCH, &lo, &hi);
    duet_mat part = {duet_alloc_array(hi - lo ? hi - lo : 1, dim * sizeof(float)), hi - lo, dim};
    duet_status st = part.data ? DUET_OK
        : duet_fail(err, DUET_ERR_NOMEM, "run: out of memory (%zu x %zu text features)", hi - lo, dim);
    memset(es, 0, sizeof *es);
    if (!st && hi > lo)
        st = duet_textmodel_encode(m, (const char *const *)rs->d->captions + lo, hi - lo, &part, NULL, es, err);
    if (duet_comm_size(comm) == 1) {
        if (st) duet_mat_free(&part);
        *f = part;
        return st;
    }
    st = duet_comm_all_ok(comm, st, err); /* a rank that failed stops every rank here */
    float *all = NULL;
    size_t got = 0, *counts = NULL, mine[4] = {es->n_captions, es->n_tokens, es->n_known, es->n_empty};
    if (!st) st = duet_comm_gather_rows(comm, mine, 1, sizeof mine, (void **)&counts, NULL, err);
    if (!st) st = duet_comm_gather_rows(comm, part.data, part.rows, dim * sizeof(float), (void **)&all, &got, err);
    duet_mat_free(&part);
    if (!st && all) {
        *f = (duet_mat){all, got, dim};
        memset(es, 0, sizeof *es);
        for (int r = 0; r < duet_comm_size(comm); r++) {
            es->n_captions += counts[4 * r];
            es->n_tokens += counts[4 * r + 1];
            es->n_known += counts[4 * r + 2];
            es->n_empty += counts[4 * r + 3];
        }
    } else free(all);
    free(counts);
    return st;
}

/* The text stage. Under MPI rank 0 decides whether it is cached and fits
 * the text model alone (the others wait without spinning), sends the model
 * to every rank, every rank encodes its share of the captions, and rank 0
 * gathers them and writes the stage: the same files as one process. */
duet_status duet_stage_text(duet_run_state *rs, duet_error *err) {
    const int S = DUET_STAGE_TEXT;
    duet_comm *comm = rs->c->comm;
    int rank0 = duet_comm_rank(comm) == 0, ranks = duet_comm_size(comm);
    duet_sbuf in = {0};
    struct { int st, done; } sh = {0, 0};
    duet_status st = DUET_OK;
    if (rank0) {
        text_key(rs, &in);
        st = sh.st = duet_stage_open(rs, S, &in, &sh.done, err);
    }
    if (ranks > 1) {
        duet_status b = duet_comm_bcast(comm, &sh, sizeof sh, err);
        if (b) st = b;
        else if (!rank0 && sh.st) st = duet_fail(err, DUET_ERR_IO, "rank 0 failed to open the text stage");
    }
    if (st || sh.done) { duet_sb_free(&in); return st; }
    duet_textmodel *m = NULL;
    duet_text_stats fs = {0}, es = {0};
    duet_mat f = {0};
    char mp[PATH_MAX] = "", fp[PATH_MAX] = "";
    if (rank0) {
        duet_stage_path(rs, S, "text.model", mp, sizeof mp);
        duet_stage_path(rs, S, "features.npy", fp, sizeof fp);
        st = fit_model(rs, mp, &m, &fs, err);
    }
    if (ranks > 1) {
        duet_status w = duet_comm_wait_all(comm, err); /* the others wait for the fit without spinning */
        st = share_model(comm, w ? w : st, mp, &m, err);
        st = duet_comm_all_ok(comm, st, err);
        duet_run_share_threads(rs, 1); /* every rank encodes on its share of the cores */
    }
    if (!st) st = encode_captions(rs, m, &f, &es, err);
    uint32_t crc = 0;   /* computed while writing: the manifest needs no second read of the file */
    if (!st && rank0) st = duet_npy_write_crc(fp, &f, rs->c->feature_dtype, &crc, err);
    char hex[17] = "";
    if (!st && rank0) st = duet_file_hash(mp, hex, err);
    if (!st && rank0) {
        char hash[32];
        snprintf(hash, sizeof hash, "fnv1a64:%s", hex);
        duet_run_say(rs, "text    %s: %zu-D; %zu of %zu tokens known, %zu captions with no known word; fit %.1f s "
            "(PCA %.1f s)", duet_encoder_name(rs->c->text.encoder), f.cols, es.n_known, es.n_tokens, es.n_empty,
            fs.seconds, fs.pca_seconds);
        json_t *man = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:f}", "text_model", "text.model",
                                "text_model_hash", hash, "features", "features.npy", "dtype",
                                rs->c->feature_dtype == DUET_DTYPE_F16 ? "f16" : "f32", "dim", (json_int_t)f.cols,
                                "tokens", (json_int_t)es.n_tokens, "known", (json_int_t)es.n_known, "empty",
                                (json_int_t)es.n_empty, "fit_seconds", fs.seconds);
        if (man && fs.pca_seconds > 0) json_object_set_new(man, "pca_seconds", json_real(fs.pca_seconds));
        duet_stage_set_crc(man, "features.npy", crc);
        st = duet_stage_close(rs, S, man, &in, err);
    }
    if (ranks > 1) st = duet_comm_all_ok(comm, st, err); /* every rank learns whether rank 0 wrote the stage */
    duet_mat_free(&f);
    duet_textmodel_free(m);
    duet_sb_free(&in);
    return st;
}
