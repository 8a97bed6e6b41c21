/* textmodel.c -- sentence encoders (mean, tf-idf, Fisher vectors over a GMM
 * and a HGLMM, their concatenation, PCA), fitted on the train split; the
 * text model file. Definitions in docs/TEXT.md. */
#define _POSIX_C_SOURCE 200809L
#include "text.h"
#include <cblas.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char TM_MAGIC[8] = {'D', 'U', 'E', 'T', 'T', 'X', 'T', 'M'};
#define CHUNK 1024
#define TOKENIZER "letters-v1"

static const char *enc_names[] = {"mean", "tfidf", "fv-gmm", "fv-hglmm", "fv-both"};

int duet_encoder_parse(const char *s) {
    for (int i = 0; i < 5; i++) if (strcmp(s, enc_names[i]) == 0) return i;
    return -1;
}
const char *duet_encoder_name(duet_encoder e) { return (unsigned)e < 5 ? enc_names[e] : "?"; }

duet_textmodel_params duet_textmodel_default_params(void) {
    duet_textmodel_params p;
    memset(&p, 0, sizeof p);
    p.encoder = DUET_ENC_FV_GMM;
    p.components = 30;
    p.pca_dim = 6000;
    p.pca_samples = 0;
    p.em_iters = 100;
    p.em_tol = 1e-5;
    p.reg_covar = 1e-6;
    p.min_scale = 1e-3;
    p.seed = 1;
    return p;
}

struct duet_textmodel {
    duet_encoder enc;
    duet_textmodel_params p;
    size_t dim_raw, dim;
    /* word vectors (mean, fv-*): L2-normalized rows */
    duet_vocab wv; size_t wd; float *wvec;
    /* tf-idf */
    duet_vocab tv; float *idf;
    /* mixtures */
    int has_gmm, has_hglmm;
    duet_fv_model fg, fh;
    /* ICA applied to the word table (fv-*): mean [wd], unmix [wd x wd] */
    int has_ica; float *ica_mean, *ica_unmix;
    /* PCA (pca_out == 0: none) */
    size_t pca_out; float *pca_mean, *pca_basis;
};

void duet_textmodel_free(duet_textmodel *m) {
    if (!m) return;
    duet_vocab_free(&m->wv); free(m->wvec);
    duet_vocab_free(&m->tv); free(m->idf);
    duet_fv_free(&m->fg); duet_fv_free(&m->fh);
    free(m->pca_mean); free(m->pca_basis);
    free(m->ica_mean); free(m->ica_unmix);
    free(m);
}
size_t duet_textmodel_dim(const duet_textmodel *m) { return m->dim; }
duet_encoder duet_textmodel_encoder(const duet_textmodel *m) { return m->enc; }

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

/* Packs words into a blob of NUL-terminated strings; caller frees. */
static char *pack_words(const char *const *w, size_t n, size_t *len) {
    size_t bl = 0;
    for (size_t i = 0; i < n; i++) bl += strlen(w[i]) + 1;
    char *b = malloc(bl ? bl : 1);
    if (!b) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) { size_t l = strlen(w[i]) + 1; memcpy(b + o, w[i], l); o += l; }
    *len = bl;
    return b;
}

/* ------------------------------------------------------------ encoding */

static void set_dims(duet_textmodel *m) {
    size_t kd2 = 2 * m->p.components * m->wd;
    switch (m->enc) {
    case DUET_ENC_MEAN: m->dim_raw = m->wd; break;
    case DUET_ENC_TFIDF: m->dim_raw = m->tv.n; break;
    case DUET_ENC_FV_GMM: case DUET_ENC_FV_HGLMM: m->dim_raw = kd2; break;
    case DUET_ENC_FV_BOTH: m->dim_raw = 2 * kd2; break;
    }
    m->dim = m->pca_out ? m->pca_out : m->dim_raw;
}

/* Raw encodings of n texts into raw [n x dim_raw]; flags/stats updated. */
static duet_status encode_raw(const duet_textmodel *m, const char *const *texts, size_t n,
                              float *raw, uint8_t *flags, duet_text_stats *st,
                              duet_tokens *tk, duet_error *err) {
    size_t dr = m->dim_raw, d = m->wd;
    size_t *start = duet_alloc_array(n + 1, sizeof(size_t));
    size_t ntok_cap = 0; float *x = NULL;
    long *rows = NULL; size_t rows_cap = 0, nrows = 0;
    duet_status s = DUET_OK;
    if (!start) return duet_fail(err, DUET_ERR_NOMEM, "encode: out of memory");
    memset(raw, 0, n * dr * sizeof(float));
    start[0] = 0;
    for (size_t i = 0; i < n && !s; i++) {
        s = duet_tokenize(texts[i], strlen(texts[i]), tk, err);
        if (s) break;
        st->n_invalid_utf8 += tk->n_invalid;
        st->n_tokens += tk->n;
        size_t known = 0;
        float *r = raw + i * dr;
        for (size_t j = 0; j < tk->n; j++) {
            long w = m->enc == DUET_ENC_TFIDF ? duet_vocab_find(&m->tv, tk->tok[j]) : duet_vocab_find(&m->wv, tk->tok[j]);
            if (w < 0) continue;
            known++;
            if (m->enc == DUET_ENC_MEAN) {
                const float *v = m->wvec + (size_t)w * d;
                for (size_t c = 0; c < d; c++) r[c] += v[c];
            } else if (m->enc == DUET_ENC_TFIDF) {
                r[w] += 1.0f;
            } else {
                if (nrows == rows_cap) {
                    size_t nc = rows_cap ? 2 * rows_cap : 4096;
                    long *nr = realloc(rows, nc * sizeof *nr);
                    if (!nr) { s = duet_fail(err, DUET_ERR_NOMEM, "encode: out of memory"); break; }
                    rows = nr; rows_cap = nc;
                }
                rows[nrows++] = w;
            }
        }
        start[i + 1] = nrows;
        st->n_known += known;
        if (flags) flags[i] = known ? 0 : DUET_TEXT_FLAG_EMPTY;
        if (!known) { st->n_empty++; continue; }
        if (m->enc == DUET_ENC_MEAN) {
            for (size_t c = 0; c < d; c++) r[c] /= (float)known;
        } else if (m->enc == DUET_ENC_TFIDF) {
            double ss = 0;
            for (size_t c = 0; c < dr; c++) if (r[c] != 0) { r[c] *= m->idf[c]; ss += (double)r[c] * r[c]; }
            float inv = (float)(1.0 / sqrt(ss));
            for (size_t c = 0; c < dr; c++) r[c] *= inv;
        }
    }
    if (!s && m->enc >= DUET_ENC_FV_GMM) {
        ntok_cap = nrows;
        x = duet_alloc_array(ntok_cap ? ntok_cap : 1, d * sizeof(float));
        if (!x) s = duet_fail(err, DUET_ERR_NOMEM, "encode: out of memory");
        for (size_t t = 0; !s && t < nrows; t++) memcpy(x + t * d, m->wvec + (size_t)rows[t] * d, d * sizeof(float));
        size_t kd2 = 2 * m->p.components * d;
        if (!s && m->has_gmm) s = duet_fv_encode(&m->fg, x, start, n, raw, dr, err);
        if (!s && m->has_hglmm) s = duet_fv_encode(&m->fh, x, start, n, raw + (m->has_gmm ? kd2 : 0), dr, err);
        if (!s && m->enc == DUET_ENC_FV_BOTH)
            for (size_t i = 0; i < n * dr; i++) raw[i] *= 0.70710678118654752f;
    }
    free(start); free(x); free(rows);
    return s;
}

duet_status duet_textmodel_encode(const duet_textmodel *m, const char *const *texts, size_t n,
                                  duet_mat *out, uint8_t *flags, duet_text_stats *stats,
                                  duet_error *err) {
    if (out->rows != n || out->cols != m->dim)
        return duet_fail(err, DUET_ERR_SHAPE, "encode: output is [%zu x %zu], need [%zu x %zu]", out->rows, out->cols, n, m->dim);
    duet_text_stats st;
    memset(&st, 0, sizeof st);
    double t0 = duet_now();
    duet_tokens tk = {0};
    float *raw = m->pca_out ? duet_alloc_array(CHUNK, m->dim_raw * sizeof(float)) : NULL;
    uint8_t fl[CHUNK];
    if (m->pca_out && !raw) return duet_fail(err, DUET_ERR_NOMEM, "encode: out of memory");
    duet_status s = DUET_OK;
    for (size_t b = 0; b < n && !s; b += CHUNK) {
        size_t nb = n - b < CHUNK ? n - b : CHUNK;
        float *dst = m->pca_out ? raw : out->data + b * m->dim;
        s = encode_raw(m, texts + b, nb, dst, fl, &st, &tk, err);
        if (s) break;
        if (m->pca_out) {
            duet_pca_apply(raw, nb, m->dim_raw, m->pca_out, m->pca_mean, m->pca_basis, out->data + b * m->dim);
            for (size_t i = 0; i < nb; i++)
                if (fl[i]) memset(out->data + (b + i) * m->dim, 0, m->dim * sizeof(float));
        }
        if (flags) memcpy(flags + b, fl, nb);
    }
    free(raw);
    duet_tokens_free(&tk);
    st.n_captions = n;
    st.seconds = duet_now() - t0;
    if (stats) *stats = st;
    return s;
}

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
    char *blob = pack_words(words, keep, &bl);
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
            char *blob = pack_words((const char *const *)sorted, ws.n, &bl);
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
        set_dims(m);
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
                for (size_t b = 0; b < np && !s; b += CHUNK) {
                    size_t nb = np - b < CHUNK ? np - b : CHUNK;
                    s = encode_raw(m, sub + b, nb, enc + b * m->dim_raw, fl + b, &est, &tk, err);
                }
                size_t keep = 0;
                for (size_t i = 0; !s && i < np; i++)
                    if (!fl[i]) { if (keep != i) memcpy(enc + keep * m->dim_raw, enc + i * m->dim_raw, m->dim_raw * sizeof(float)); keep++; }
                prog(progress, user, "pca", 0, keep);
                if (!s) s = duet_pca_fit(enc, keep, m->dim_raw, pd, m->pca_mean, m->pca_basis, NULL, err);
                if (!s) { m->pca_out = pd; set_dims(m); }
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

/* ------------------------------------------------------------ file */

static size_t slots(size_t bytes) { return (bytes + 3) / 4; }

static float *blob_slots(const duet_vocab *v, size_t *bl) {
    size_t len;
    char *b = pack_words(v->word, v->n, &len);
    if (!b) return NULL;
    float *f = calloc(slots(len) ? slots(len) : 1, 4);
    if (f) memcpy(f, b, len);
    free(b);
    *bl = len;
    return f;
}

duet_status duet_textmodel_save(const duet_textmodel *m, const char *path, duet_error *err) {
    size_t wbl = 0, tbl = 0;
    float *wb = m->wv.n ? blob_slots(&m->wv, &wbl) : NULL;
    float *tb = m->tv.n ? blob_slots(&m->tv, &tbl) : NULL;
    size_t K = m->p.components, D = m->wd;
    float *lapf = NULL;
    duet_status s = DUET_OK;
    if ((m->wv.n && !wb) || (m->tv.n && !tb)) s = duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    if (!s && m->has_hglmm) {
        lapf = duet_alloc_array(K, D * sizeof(float));
        if (!lapf) s = duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
        else for (size_t i = 0; i < K * D; i++) lapf[i] = m->fh.lap[i];
    }
    json_t *hj = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:b}",
                           "kind", "duet text model", "encoder", duet_encoder_name(m->enc),
                           "tokenizer", TOKENIZER, "components", (json_int_t)K,
                           "word_dim", (json_int_t)D, "n_words", (json_int_t)m->wv.n,
                           "vocab_bytes", (json_int_t)wbl, "n_tfidf", (json_int_t)m->tv.n,
                           "tfidf_vocab_bytes", (json_int_t)tbl, "raw_dim", (json_int_t)m->dim_raw,
                           "pca_dim", (json_int_t)m->pca_out, "dim", (json_int_t)m->dim,
                           "gmm", m->has_gmm, "hglmm", m->has_hglmm);
    if (hj) json_object_set_new(hj, "ica", json_boolean(m->has_ica));
    char *hs = hj ? json_dumps(hj, JSON_PRESERVE_ORDER) : NULL;
    json_decref(hj);
    if (!s && !hs) s = duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    if (!s) {
        duet_tf_array a[16];
        size_t na = 0;
        if (m->wv.n) { a[na++] = (duet_tf_array){"vocab_utf8", wb, slots(wbl)}; a[na++] = (duet_tf_array){"word_vectors", m->wvec, m->wv.n * D}; }
        if (m->tv.n) { a[na++] = (duet_tf_array){"tfidf_vocab_utf8", tb, slots(tbl)}; a[na++] = (duet_tf_array){"idf", m->idf, m->tv.n}; }
        if (m->has_gmm) {
            a[na++] = (duet_tf_array){"gmm_weights", m->fg.w, K};
            a[na++] = (duet_tf_array){"gmm_means", m->fg.mu, K * D};
            a[na++] = (duet_tf_array){"gmm_sigmas", m->fg.scale, K * D};
        }
        if (m->has_hglmm) {
            a[na++] = (duet_tf_array){"hglmm_weights", m->fh.w, K};
            a[na++] = (duet_tf_array){"hglmm_means", m->fh.mu, K * D};
            a[na++] = (duet_tf_array){"hglmm_scales", m->fh.scale, K * D};
            a[na++] = (duet_tf_array){"hglmm_laplace", lapf, K * D};
        }
        if (m->has_ica) {
            a[na++] = (duet_tf_array){"ica_mean", m->ica_mean, D};
            a[na++] = (duet_tf_array){"ica_unmixing", m->ica_unmix, D * D};
        }
        if (m->pca_out) {
            a[na++] = (duet_tf_array){"pca_mean", m->pca_mean, m->dim_raw};
            a[na++] = (duet_tf_array){"pca_basis", m->pca_basis, m->dim_raw * m->pca_out};
        }
        s = duet_tf_write(path, TM_MAGIC, DUET_TEXTMODEL_FORMAT_VERSION, hs, a, na, err);
    }
    free(hs); free(wb); free(tb); free(lapf);
    return s;
}

static long long jint(json_t *h, const char *k) {
    json_t *x = json_object_get(h, k);
    return json_is_integer(x) ? (long long)json_integer_value(x) : -1;
}

static float *dup_arr(const duet_tf_file *tf, const char *path, const char *name, size_t count, duet_error *err) {
    const float *a = duet_tf_array_get(tf, path, name, count, NULL, err);
    if (!a) return NULL;
    float *c = duet_alloc_array(count ? count : 1, sizeof(float));
    if (!c) { duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path); return NULL; }
    memcpy(c, a, count * sizeof(float));
    for (size_t i = 0; i < count; i++)
        if (!isfinite(c[i])) { free(c); duet_fail(err, DUET_ERR_NONFINITE, "%s: array '%s': element %zu is not finite", path, name, i); return NULL; }
    return c;
}

static duet_status load_vocab(const duet_tf_file *tf, const char *path, const char *arr, size_t n, long long bl,
                              duet_vocab *v, duet_error *err) {
    if (bl < (long long)n || bl > (1ll << 40)) return duet_fail(err, DUET_ERR_FORMAT, "%s: vocabulary byte count out of range for '%s'", path, arr);
    const float *b = duet_tf_array_get(tf, path, arr, slots((size_t)bl), NULL, err);
    if (!b) return err ? err->status : DUET_ERR_FORMAT;
    return duet_vocab_build(v, (const char *)(const void *)b, (size_t)bl, n, 1, path, err);
}

static duet_status mix_load(duet_fv_model *f, int kind, const duet_tf_file *tf, const char *path,
                            size_t K, size_t D, duet_error *err) {
    const char *pre = kind ? "hglmm" : "gmm";
    char nw[32], nm[32], ns[32], nl[32];
    snprintf(nw, sizeof nw, "%s_weights", pre); snprintf(nm, sizeof nm, "%s_means", pre);
    snprintf(ns, sizeof ns, "%s_%s", pre, kind ? "scales" : "sigmas"); snprintf(nl, sizeof nl, "%s_laplace", pre);
    memset(f, 0, sizeof *f);
    f->kind = kind; f->k = K; f->d = D;
    f->w = dup_arr(tf, path, nw, K, err);
    f->mu = f->w ? dup_arr(tf, path, nm, K * D, err) : NULL;
    f->scale = f->mu ? dup_arr(tf, path, ns, K * D, err) : NULL;
    float *lap = f->scale && kind ? dup_arr(tf, path, nl, K * D, err) : NULL;
    f->lap = calloc((K * D) != 0 ? K * D : 1, 1);
    f->logc = duet_alloc_array(K, sizeof(float));
    f->inv_var = duet_alloc_array(K, D * sizeof(float));
    f->mu_iv = duet_alloc_array(K, D * sizeof(float));
    if (!f->scale || (kind && !lap) || !f->lap || !f->logc || !f->inv_var || !f->mu_iv) {
        free(lap);
        return err && err->status ? err->status : duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    }
    for (size_t i = 0; i < K; i++)
        if (!(f->w[i] > 0)) { free(lap); return duet_fail(err, DUET_ERR_FORMAT, "%s: %s: weight %zu is not positive", path, nw, i); }
    for (size_t i = 0; i < K * D; i++) {
        if (!(f->scale[i] > 0)) { free(lap); return duet_fail(err, DUET_ERR_FORMAT, "%s: %s: element %zu is not positive", path, ns, i); }
        if (lap) f->lap[i] = lap[i] != 0;
    }
    free(lap);
    /* the same constants as duet_fv_from_gmm / _hglmm */
    duet_hglmm h;
    if (duet_hglmm_alloc(&h, K, D)) return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    for (size_t a = 0; a < K; a++) h.w[a] = f->w[a];
    for (size_t i = 0; i < K * D; i++) { h.mu[i] = f->mu[i]; h.scale[i] = f->scale[i]; h.lap[i] = f->lap[i]; }
    duet_fv_model tmp;
    duet_status s = duet_fv_from_hglmm(&tmp, &h);
    duet_hglmm_free(&h);
    if (s) return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    memcpy(f->logc, tmp.logc, K * sizeof(float));
    memcpy(f->inv_var, tmp.inv_var, K * D * sizeof(float));
    memcpy(f->mu_iv, tmp.mu_iv, K * D * sizeof(float));
    duet_fv_free(&tmp);
    return DUET_OK;
}

duet_status duet_textmodel_load(const char *path, duet_textmodel **out, duet_error *err) {
    *out = NULL;
    duet_tf_file tf;
    duet_status s = duet_tf_read(path, TM_MAGIC, DUET_TEXTMODEL_FORMAT_VERSION, "text model", &tf, err);
    if (s) return s;
    json_t *h = (json_t *)tf.header;
    duet_textmodel *m = calloc(1, sizeof *m);
    if (!m) { duet_tf_free(&tf); return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path); }
    json_t *je = json_object_get(h, "encoder"), *jt = json_object_get(h, "tokenizer");
    int enc = json_is_string(je) ? duet_encoder_parse(json_string_value(je)) : -1;
    long long K = jint(h, "components"), D = jint(h, "word_dim"), nw = jint(h, "n_words"),
              nt = jint(h, "n_tfidf"), pca = jint(h, "pca_dim"), dim = jint(h, "dim"), raw = jint(h, "raw_dim");
    if (enc < 0) { s = duet_fail(err, DUET_ERR_FORMAT, "%s: header field 'encoder' missing or unknown", path); goto done; }
    if (!json_is_string(jt) || strcmp(json_string_value(jt), TOKENIZER) != 0) { s = duet_fail(err, DUET_ERR_VERSION, "%s: tokenizer '%s', this duet has '%s'", path, json_is_string(jt) ? json_string_value(jt) : "?", TOKENIZER); goto done; }
    if (K < 0 || K > 4096 || D < 0 || D > 100000 || nw < 0 || nt < 0 || pca < 0 || dim < 1 || raw < 1) { s = duet_fail(err, DUET_ERR_FORMAT, "%s: header fields components, word_dim, n_words, n_tfidf, pca_dim, dim, raw_dim missing or out of range", path); goto done; }
    m->enc = (duet_encoder)enc;
    m->p = duet_textmodel_default_params();
    m->p.encoder = m->enc; m->p.components = (size_t)K; m->p.pca_dim = (size_t)pca;
    m->wd = (size_t)D;
    if (m->enc == DUET_ENC_TFIDF) {
        if (nt < 1) { s = duet_fail(err, DUET_ERR_FORMAT, "%s: a tf-idf model without vocabulary", path); goto done; }
        if ((s = load_vocab(&tf, path, "tfidf_vocab_utf8", (size_t)nt, jint(h, "tfidf_vocab_bytes"), &m->tv, err))) goto done;
        if (!(m->idf = dup_arr(&tf, path, "idf", (size_t)nt, err))) { s = err ? err->status : DUET_ERR_FORMAT; goto done; }
    } else {
        size_t cnt;
        if (nw < 1 || D < 1 || !duet_mul_size((size_t)nw, (size_t)D, &cnt)) { s = duet_fail(err, DUET_ERR_FORMAT, "%s: word vectors missing", path); goto done; }
        if ((s = load_vocab(&tf, path, "vocab_utf8", (size_t)nw, jint(h, "vocab_bytes"), &m->wv, err))) goto done;
        if (!(m->wvec = dup_arr(&tf, path, "word_vectors", cnt, err))) { s = err ? err->status : DUET_ERR_FORMAT; goto done; }
    }
    if (m->enc >= DUET_ENC_FV_GMM) {
        if (K < 1) { s = duet_fail(err, DUET_ERR_FORMAT, "%s: a Fisher-vector model with 0 components", path); goto done; }
        if (m->enc != DUET_ENC_FV_HGLMM) { if ((s = mix_load(&m->fg, 0, &tf, path, (size_t)K, (size_t)D, err))) goto done; m->has_gmm = 1; }
        if (m->enc != DUET_ENC_FV_GMM) { if ((s = mix_load(&m->fh, 1, &tf, path, (size_t)K, (size_t)D, err))) goto done; m->has_hglmm = 1; }
    }
    if (json_is_true(json_object_get(h, "ica"))) {
        if (m->enc < DUET_ENC_FV_GMM || D < 1) { s = duet_fail(err, DUET_ERR_FORMAT, "%s: 'ica' set for an encoder without mixtures", path); goto done; }
        if (!(m->ica_mean = dup_arr(&tf, path, "ica_mean", (size_t)D, err))) { s = err ? err->status : DUET_ERR_FORMAT; goto done; }
        if (!(m->ica_unmix = dup_arr(&tf, path, "ica_unmixing", (size_t)D * (size_t)D, err))) { s = err ? err->status : DUET_ERR_FORMAT; goto done; }
        m->has_ica = 1;
        m->p.ica = 1;
    }
    set_dims(m);
    if ((long long)m->dim_raw != raw) { s = duet_fail(err, DUET_ERR_SHAPE, "%s: raw_dim %lld disagrees with the encoder's %zu", path, raw, m->dim_raw); goto done; }
    if (pca) {
        size_t cnt;
        if ((size_t)pca > m->dim_raw || !duet_mul_size(m->dim_raw, (size_t)pca, &cnt)) { s = duet_fail(err, DUET_ERR_SHAPE, "%s: pca_dim %lld out of range", path, pca); goto done; }
        if (!(m->pca_mean = dup_arr(&tf, path, "pca_mean", m->dim_raw, err))) { s = err ? err->status : DUET_ERR_FORMAT; goto done; }
        if (!(m->pca_basis = dup_arr(&tf, path, "pca_basis", cnt, err))) { s = err ? err->status : DUET_ERR_FORMAT; goto done; }
        m->pca_out = (size_t)pca;
    }
    set_dims(m);
    if ((long long)m->dim != dim) { s = duet_fail(err, DUET_ERR_SHAPE, "%s: dim %lld disagrees with the encoder's %zu", path, dim, m->dim); goto done; }
done:
    duet_tf_free(&tf);
    if (s) { duet_textmodel_free(m); return s; }
    *out = m;
    return DUET_OK;
}

duet_status duet_file_hash(const char *path, char hex[17], duet_error *err) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return duet_fail(err, DUET_ERR_IO, "%s: cannot open", path);
    uint64_t h = 1469598103934665603ull;
    unsigned char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, fp)) > 0)
        for (size_t i = 0; i < n; i++) { h ^= buf[i]; h *= 1099511628211ull; }
    int bad = ferror(fp);
    fclose(fp);
    if (bad) return duet_fail(err, DUET_ERR_IO, "%s: read error", path);
    snprintf(hex, 17, "%016llx", (unsigned long long)h);
    return DUET_OK;
}
