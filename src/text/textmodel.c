/* textmodel.c -- sentence encoders (mean, tf-idf, Fisher vectors over a GMM
 * and a HGLMM, their concatenation, PCA): the parameters, the object and
 * encoding. Fitting on the train split is in textmodel_fit.c, the text
 * model file in textmodel_file.c. Definitions in docs/TEXT.md. */
#define _POSIX_C_SOURCE 200809L
#include "text.h"
#include "core/dnn.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

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
    p.pca_method = DUET_PCA_RANDOMIZED;
    p.pca_iters = 2;
    p.pca_start = DUET_PCA_START_GAUSSIAN;
    p.precision = DUET_PRECISION_F32;
    return p;
}

static const char *pca_names[] = {"exact", "randomized"};
const char *duet_pca_method_name(int method) { return method == DUET_PCA_RANDOMIZED ? pca_names[1] : pca_names[0]; }
int duet_pca_method_parse(const char *s) {
    for (int i = 0; i < 2; i++) if (strcmp(s, pca_names[i]) == 0) return i;
    return -1;
}

static const char *start_names[] = {"gaussian", "samples"};
const char *duet_pca_start_name(int start) { return start == DUET_PCA_START_SAMPLES ? start_names[1] : start_names[0]; }
int duet_pca_start_parse(const char *s) {
    for (int i = 0; i < 2; i++) if (strcmp(s, start_names[i]) == 0) return i;
    return -1;
}

duet_status duet_textmodel_prepare_pca(duet_textmodel *m, duet_error *err) {
    if (!m->pca_out || !m->pca_bf16 || m->pca_basis_h || !duet_cpu_has_bf16()) return DUET_OK;
    size_t cnt = m->dim_raw * m->pca_out;
    m->pca_basis_h = duet_alloc_array(cnt, sizeof(uint16_t));
    if (!m->pca_basis_h) return duet_fail(err, DUET_ERR_NOMEM, "textmodel: out of memory (bf16 PCA basis)");
    duet_f32_to_bf16(m->pca_basis, m->pca_basis_h, cnt);
    return DUET_OK;
}

void duet_textmodel_free(duet_textmodel *m) {
    if (!m) return;
    duet_vocab_free(&m->wv); free(m->wvec);
    duet_vocab_free(&m->tv); free(m->idf);
    duet_fv_free(&m->fg); duet_fv_free(&m->fh);
    free(m->pca_mean); free(m->pca_basis); free(m->pca_basis_h);
    free(m->ica_mean); free(m->ica_unmix);
    free(m);
}
size_t duet_textmodel_dim(const duet_textmodel *m) { return m->dim; }
duet_encoder duet_textmodel_encoder(const duet_textmodel *m) { return m->enc; }

/* ------------------------------------------------------------ word blobs */

/* Packs words into a blob of NUL-terminated strings; caller frees. */
char *duet_textmodel_pack_words(const char *const *w, size_t n, size_t *len) {
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

size_t duet_textmodel_raw_dim(duet_encoder enc, size_t components, size_t word_dim, size_t vocab) {
    size_t kd2 = 2 * components * word_dim;
    switch (enc) {
    case DUET_ENC_MEAN: return word_dim;
    case DUET_ENC_TFIDF: return vocab;
    case DUET_ENC_FV_GMM: case DUET_ENC_FV_HGLMM: return kd2;
    case DUET_ENC_FV_BOTH: return 2 * kd2;
    }
    return 0;
}

void duet_textmodel_set_dims(duet_textmodel *m) {
    m->dim_raw = duet_textmodel_raw_dim(m->enc, m->p.components, m->wd, m->tv.n);
    m->dim = m->pca_out ? m->pca_out : m->dim_raw;
}

/* Raw encodings of n texts into raw [n x dim_raw]; flags/stats updated. */
duet_status duet_textmodel_encode_raw(const duet_textmodel *m, const char *const *texts, size_t n,
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
    float *raw = m->pca_out ? duet_alloc_array(DUET_TEXT_CHUNK, m->dim_raw * sizeof(float)) : NULL;
    uint8_t fl[DUET_TEXT_CHUNK];
    if (m->pca_out && !raw) return duet_fail(err, DUET_ERR_NOMEM, "encode: out of memory");
    duet_status s = DUET_OK;
    for (size_t b = 0; b < n && !s; b += DUET_TEXT_CHUNK) {
        size_t nb = n - b < DUET_TEXT_CHUNK ? n - b : DUET_TEXT_CHUNK;
        float *dst = m->pca_out ? raw : out->data + b * m->dim;
        s = duet_textmodel_encode_raw(m, texts + b, nb, dst, fl, &st, &tk, err);
        if (s) break;
        if (m->pca_out) {
            if (m->pca_basis_h)
                s = duet_pca_apply_bf16(raw, nb, m->dim_raw, m->pca_out, m->pca_mean, m->pca_basis_h,
                                        out->data + b * m->dim, err);
            else
                duet_pca_apply(raw, nb, m->dim_raw, m->pca_out, m->pca_mean, m->pca_basis, out->data + b * m->dim);
            if (s) break;
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
