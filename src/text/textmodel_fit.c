/* textmodel_fit.c -- fitting a text model on the train split: the
 * training words (a counting string set), the tf-idf vocabulary and idf,
 * Klein's optional ICA of the word vectors, the GMM and HGLMM by EM, and
 * PCA of the raw encodings. Definitions in docs/TEXT.md. */
#define _POSIX_C_SOURCE 200809L
#include "text.h"
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ string set */

typedef struct strset {
    char **w; size_t n, cap;     /* words in insertion order (owned) */
    size_t *cnt;                 /* document (or token) counts       */
    uint32_t *slot; size_t ns;
} strset;

static uint64_t hash_s(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) { h ^= (unsigned char)*s; h *= 1099511628211ull; }
    return h;
}
static void strset_free(strset *s) {
    for (size_t i = 0; i < s->n; i++) free(s->w[i]);
    free(s->w); free(s->cnt); free(s->slot);
    memset(s, 0, sizeof *s);
}
/* Returns the row of w, inserting it; -1 on allocation failure. */
static long strset_add(strset *s, const char *w) {
    if (2 * (s->n + 1) > s->ns) {
        size_t ns = s->ns ? 2 * s->ns : 1024;
        uint32_t *sl = calloc(ns, sizeof *sl);
        if (!sl) return -1;
        for (size_t i = 0; i < s->n; i++) {
            size_t h = (size_t)hash_s(s->w[i]) & (ns - 1);
            while (sl[h]) h = (h + 1) & (ns - 1);
            sl[h] = (uint32_t)(i + 1);
        }
        free(s->slot); s->slot = sl; s->ns = ns;
    }
    size_t h = (size_t)hash_s(w) & (s->ns - 1);
    while (s->slot[h]) {
        if (strcmp(s->w[s->slot[h] - 1], w) == 0) return (long)(s->slot[h] - 1);
        h = (h + 1) & (s->ns - 1);
    }
    if (s->n == s->cap) {
        size_t nc = s->cap ? 2 * s->cap : 1024;
        char **nw = realloc(s->w, nc * sizeof *nw);
        if (!nw) return -1;
        s->w = nw;
        size_t *ncn = realloc(s->cnt, nc * sizeof *ncn);
        if (!ncn) return -1;
        s->cnt = ncn; s->cap = nc;
    }
    s->w[s->n] = duet_strdup(w);
    if (!s->w[s->n]) return -1;
    s->cnt[s->n] = 0;
    s->slot[h] = (uint32_t)(s->n + 1);
    return (long)s->n++;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* ------------------------------------------------------------ fitting */

static duet_status copy_word_vectors(duet_textmodel *m, const duet_vectors *v, duet_error *err) {
    size_t n = v->n, d = v->dim, keep = 0;
    m->wd = d;
    m->wvec = duet_alloc_array(n, d * sizeof(float));
    const char **words = duet_alloc_array(n, sizeof(char *));
    if (!m->wvec || !words) { free(words); return duet_fail(err, DUET_ERR_NOMEM, "textmodel: out of memory"); }
    for (size_t i = 0; i < n; i++) {
        const float *r = v->vec + i * d;
        double ss = 0;
        for (size_t c = 0; c < d; c++) ss += (double)r[c] * r[c];
        if (!(ss > 0)) continue;  /* a zero vector carries no direction: dropped */
        float inv = (float)(1.0 / sqrt(ss));
        for (size_t c = 0; c < d; c++) m->wvec[keep * d + c] = r[c] * inv;
        words[keep++] = v->vocab.word[i];
    }
    size_t bl;
    char *blob = duet_textmodel_pack_words(words, keep, &bl);
    free(words);
    if (!blob) return duet_fail(err, DUET_ERR_NOMEM, "textmodel: out of memory");
    duet_status s = duet_vocab_build(&m->wv, blob, bl, keep, 0, "word vectors", err);
    if (s) { free(blob); return s; }
    m->wv.blob = blob;
    return DUET_OK;
}

static void prog(duet_text_progress_fn f, void *u, const char *stage, size_t a, size_t b) { if (f) f(u, stage, a, b); }

duet_status duet_textmodel_fit(const duet_dataset *d, const duet_vectors *v,
                               const duet_textmodel_params *p,
                               duet_text_progress_fn progress, void *user,
                               duet_textmodel **out, duet_text_stats *stats,
                               duet_error *err) {
    *out = NULL;
    double t0 = duet_now();
    if ((unsigned)p->encoder > DUET_ENC_FV_BOTH) return duet_fail(err, DUET_ERR_INVALID_ARG, "textmodel: unknown encoder %d", (int)p->encoder);
    if (p->encoder != DUET_ENC_TFIDF && !v) return duet_fail(err, DUET_ERR_INVALID_ARG, "textmodel: encoder '%s' needs word vectors", duet_encoder_name(p->encoder));
    if (p->encoder >= DUET_ENC_FV_GMM && (p->components < 1 || p->components > 4096))
        return duet_fail(err, DUET_ERR_INVALID_ARG, "textmodel: components %zu out of range [1, 4096]", p->components);
    if (p->em_iters < 1) return duet_fail(err, DUET_ERR_INVALID_ARG, "textmodel: em_iters must be >= 1");
    if (p->pca_method != DUET_PCA_EXACT && p->pca_method != DUET_PCA_RANDOMIZED)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "textmodel: unknown PCA method %d", p->pca_method);
    if (p->pca_iters < 0 || p->pca_iters > 100)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "textmodel: pca_iters %d is outside 0..100", p->pca_iters);
    if (p->pca_start != DUET_PCA_START_GAUSSIAN && p->pca_start != DUET_PCA_START_SAMPLES)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "textmodel: pca_start %d is not gaussian (0) or samples (1)",
                         p->pca_start);
    /* the training captions */
    size_t ntr = 0;
    const char **tr = duet_alloc_array(d->n_captions, sizeof(char *));
    if (!tr) return duet_fail(err, DUET_ERR_NOMEM, "textmodel: out of memory");
    for (size_t j = 0; j < d->n_captions; j++)
        if (d->image_split[d->caption_image[j]] == DUET_SPLIT_TRAIN) tr[ntr++] = d->captions[j];
    if (ntr == 0) { free(tr); return duet_fail(err, DUET_ERR_EMPTY, "textmodel: %s has no training captions", d->source ? d->source : "the dataset"); }
    duet_textmodel *m = calloc(1, sizeof *m);
    if (!m) { free(tr); return duet_fail(err, DUET_ERR_NOMEM, "textmodel: out of memory"); }
    m->enc = p->encoder;
    m->p = *p;
    duet_text_stats st;
    memset(&st, 0, sizeof st);
    duet_status s = DUET_OK;
    duet_tokens tk = {0};
    strset ws = {0};
    float *x = NULL, *wt = NULL, *enc = NULL;
    duet_gmm g = {0};
    duet_hglmm h = {0};
    if (m->enc != DUET_ENC_TFIDF) s = copy_word_vectors(m, v, err);
    /* tokenize the training captions: counts of tokens (vector words) or
     * document frequencies (tf-idf) */
    prog(progress, user, "tokenize", 0, ntr);
    for (size_t i = 0; i < ntr && !s; i++) {
        s = duet_tokenize(tr[i], strlen(tr[i]), &tk, err);
        if (s) break;
        st.n_tokens += tk.n;
        st.n_invalid_utf8 += tk.n_invalid;
        size_t known = 0;
        for (size_t j = 0; j < tk.n; j++) {
            if (m->enc != DUET_ENC_TFIDF && duet_vocab_find(&m->wv, tk.tok[j]) < 0) continue;
            known++;
            long r = strset_add(&ws, tk.tok[j]);
            if (r < 0) { s = duet_fail(err, DUET_ERR_NOMEM, "textmodel: out of memory"); break; }
            if (m->enc == DUET_ENC_TFIDF) {
                /* document frequency: count once per caption */
                int seen = 0;
                for (size_t q = 0; q < j; q++) if (strcmp(tk.tok[q], tk.tok[j]) == 0) { seen = 1; break; }
                if (!seen) ws.cnt[r]++;
            } else ws.cnt[r]++;
        }
        st.n_known += known;
        if (!known) st.n_empty++;
    }
    st.n_captions = ntr;
    if (!s && ws.n == 0) s = duet_fail(err, DUET_ERR_EMPTY, "textmodel: no training caption has a known word");
    if (!s && m->enc == DUET_ENC_TFIDF) {
        /* vocabulary sorted by bytes (= code points), idf smoothed as
         * scikit-learn's TfidfVectorizer: ln((1 + N) / (1 + df)) + 1 */
        size_t *ord = duet_alloc_array(ws.n, sizeof(size_t));
        char **sorted = duet_alloc_array(ws.n, sizeof(char *));
        m->idf = duet_alloc_array(ws.n, sizeof(float));
        if (!ord || !sorted || !m->idf) s = duet_fail(err, DUET_ERR_NOMEM, "textmodel: out of memory");
        if (!s) {
            memcpy(sorted, ws.w, ws.n * sizeof(char *));
            qsort(sorted, ws.n, sizeof(char *), cmp_str);
            size_t bl;
            char *blob = duet_textmodel_pack_words((const char *const *)sorted, ws.n, &bl);
            if (!blob) s = duet_fail(err, DUET_ERR_NOMEM, "textmodel: out of memory");
            else if ((s = duet_vocab_build(&m->tv, blob, bl, ws.n, 0, "tfidf vocabulary", err))) free(blob);
            else m->tv.blob = blob;
        }
        for (size_t i = 0; !s && i < ws.n; i++) {
            long r = duet_vocab_find(&m->tv, ws.w[i]);
            m->idf[r] = (float)(log((1.0 + (double)ntr) / (1.0 + (double)ws.cnt[i])) + 1.0);
        }
        free(ord); free(sorted);
    }
    if (!s && m->enc >= DUET_ENC_FV_GMM) {
        size_t K = p->components, D = m->wd;
        /* EM on distinct words weighted by their token counts */
        x = duet_alloc_array(ws.n, D * sizeof(float));
        wt = duet_alloc_array(ws.n, sizeof(float));
        if (!x || !wt) s = duet_fail(err, DUET_ERR_NOMEM, "textmodel: out of memory");
        for (size_t i = 0; !s && i < ws.n; i++) {
            long r = duet_vocab_find(&m->wv, ws.w[i]);
            memcpy(x + i * D, m->wvec + (size_t)r * D, D * sizeof(float));
            wt[i] = (float)ws.cnt[i];
        }
        if (!s && ws.n < K) s = duet_fail(err, DUET_ERR_EMPTY, "textmodel: %zu distinct training words for %zu components", ws.n, K);
        if (!s && p->ica) {
            /* Klein's option: rotate the word vectors into independent
             * components (fitted on the training words, count-weighted),
             * then transform the whole table so encoding is unchanged */
            prog(progress, user, "ica", 0, ws.n);
            duet_rng ir;
            duet_rng_seed(&ir, p->seed ^ 0x1CAull);
            m->ica_mean = duet_alloc_array(D, sizeof(float));
            m->ica_unmix = duet_alloc_array(D, D * sizeof(float));
            float *row = duet_alloc_array(D, sizeof(float));
            if (!m->ica_mean || !m->ica_unmix || !row) s = duet_fail(err, DUET_ERR_NOMEM, "textmodel: out of memory");
            if (!s) s = duet_ica_fit(x, wt, ws.n, D, 200, 1e-4, &ir, m->ica_mean, m->ica_unmix, NULL, err);
            for (size_t i = 0; !s && i < m->wv.n; i++) {
                float *vr = m->wvec + i * D;
                for (size_t c = 0; c < D; c++) row[c] = vr[c] - m->ica_mean[c];
                cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)D, (int)D, 1.0f, m->ica_unmix, (int)D, row, 1, 0.0f, vr, 1);
            }
            for (size_t i = 0; !s && i < ws.n; i++)
                memcpy(x + i * D, m->wvec + (size_t)duet_vocab_find(&m->wv, ws.w[i]) * D, D * sizeof(float));
            free(row);
            if (!s) m->has_ica = 1;
        }
        if (!s && duet_gmm_alloc(&g, K, D)) s = duet_fail(err, DUET_ERR_NOMEM, "textmodel: out of memory");
        duet_rng rng;
        duet_rng_seed(&rng, p->seed);
        if (!s) s = duet_gmm_init_kmeanspp(&g, x, wt, ws.n, &rng, err);
        prog(progress, user, "gmm", 0, (size_t)p->em_iters);
        if (!s) s = duet_gmm_em(&g, x, wt, ws.n, p->em_iters, p->em_tol, p->reg_covar, NULL, &st.em_iters_gmm, err);
        if (!s) st.ll_gmm = duet_gmm_score(&g, x, wt, ws.n);
        if (!s && m->enc != DUET_ENC_FV_HGLMM) {
            if (duet_fv_from_gmm(&m->fg, &g)) s = duet_fail(err, DUET_ERR_NOMEM, "textmodel: out of memory");
            else m->has_gmm = 1;
        }
        if (!s && m->enc != DUET_ENC_FV_GMM) {
            prog(progress, user, "hglmm", 0, (size_t)p->em_iters);
            if (duet_hglmm_from_gmm(&h, &g)) s = duet_fail(err, DUET_ERR_NOMEM, "textmodel: out of memory");
            if (!s) s = duet_hglmm_em(&h, x, wt, ws.n, p->em_iters, p->em_tol, p->min_scale, NULL, &st.em_iters_hglmm, err);
            if (!s) st.ll_hglmm = duet_hglmm_score(&h, x, wt, ws.n);
            if (!s) { if (duet_fv_from_hglmm(&m->fh, &h)) s = duet_fail(err, DUET_ERR_NOMEM, "textmodel: out of memory"); else m->has_hglmm = 1; }
        }
    }
    if (!s) {
        duet_textmodel_set_dims(m);
        size_t pd = p->pca_dim;
        if (pd && pd < m->dim_raw) {
            /* PCA on the raw encodings of (a seeded subset of) the training
             * captions that have a known word */
            size_t np = p->pca_samples && p->pca_samples < ntr ? p->pca_samples : ntr;
            const char **sub = duet_alloc_array(np, sizeof(char *));
            size_t *idx = duet_alloc_array(ntr, sizeof(size_t));
            enc = duet_alloc_array(np, m->dim_raw * sizeof(float));
            uint8_t *fl = malloc(np);
            m->pca_mean = duet_alloc_array(m->dim_raw, sizeof(float));
            m->pca_basis = duet_alloc_array(m->dim_raw, pd * sizeof(float));
            if (!sub || !idx || !enc || !fl || !m->pca_mean || !m->pca_basis)
                s = duet_fail(err, DUET_ERR_NOMEM, "textmodel: out of memory (PCA of %zu x %zu)", np, m->dim_raw);
            if (!s) {
                for (size_t i = 0; i < ntr; i++) idx[i] = i;
                if (np < ntr) {
                    duet_rng rng;
                    duet_rng_seed(&rng, p->seed ^ 0x5043415ull);
                    duet_rng_shuffle(&rng, idx, ntr);
                }
                for (size_t i = 0; i < np; i++) sub[i] = tr[idx[i]];
                duet_text_stats est;
                memset(&est, 0, sizeof est);
                prog(progress, user, "encode for PCA", 0, np);
                for (size_t b = 0; b < np && !s; b += DUET_TEXT_CHUNK) {
                    size_t nb = np - b < DUET_TEXT_CHUNK ? np - b : DUET_TEXT_CHUNK;
                    s = duet_textmodel_encode_raw(m, sub + b, nb, enc + b * m->dim_raw, fl + b, &est, &tk, err);
                }
                size_t keep = 0;
                for (size_t i = 0; !s && i < np; i++)
                    if (!fl[i]) { if (keep != i) memcpy(enc + keep * m->dim_raw, enc + i * m->dim_raw, m->dim_raw * sizeof(float)); keep++; }
                prog(progress, user, "pca", 0, keep);
                double tp = duet_now();
                if (!s && p->pca_method == DUET_PCA_EXACT) {
                    s = duet_pca_fit(enc, keep, m->dim_raw, pd, m->pca_mean, m->pca_basis, NULL, err);
                } else if (!s) {
                    duet_pca_opts po = duet_pca_default_opts();
                    po.power_iters = p->pca_iters;
                    po.start = p->pca_start;
                    po.seed = p->seed ^ 0x52504341ull;
                    s = duet_precision_resolve(p->precision, &po.prec, err);
                    /* enc is spent after the fit: the fit may use its memory */
                    if (!s) s = duet_pca_fit_randomized_in_place(enc, keep, m->dim_raw, pd, &po, m->pca_mean,
                                                                 m->pca_basis, NULL, err);
                    m->pca_bf16 = po.prec == DUET_PRECISION_BF16;
                }
                st.pca_seconds = duet_now() - tp;
                if (!s) { m->pca_out = pd; duet_textmodel_set_dims(m); s = duet_textmodel_prepare_pca(m, err); }
            }
            free(sub); free(idx); free(fl);
        }
    }
    duet_tokens_free(&tk);
    strset_free(&ws);
    free(x); free(wt); free(enc); free(tr);
    duet_gmm_free(&g);
    duet_hglmm_free(&h);
    if (s) { duet_textmodel_free(m); return s; }
    st.seconds = duet_now() - t0;
    if (stats) *stats = st;
    *out = m;
    return DUET_OK;
}
