/* fisher.c -- Fisher vectors of sentences over a diagonal GMM or a HGLMM
 * (gradients w.r.t. means and scales, normalized by the closed-form
 * diagonal Fisher information, signed square root, L2 normalization).
 * The E-step of all tokens of a batch is one pair of SGEMMs; the per-sentence
 * statistics run in parallel over sentences. */
#include "text.h"
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LOG2PI 1.8378770664093453

void duet_fv_free(duet_fv_model *m) {
    if (!m) return;
    free(m->w); free(m->mu); free(m->scale); free(m->lap); free(m->logc);
    free(m->inv_var); free(m->mu_iv);
    memset(m, 0, sizeof *m);
}

size_t duet_fv_dim(const duet_fv_model *m) { return 2 * m->k * m->d; }

static duet_status fv_alloc(duet_fv_model *m, int kind, size_t k, size_t d) {
    memset(m, 0, sizeof *m);
    m->kind = kind; m->k = k; m->d = d;
    m->w = duet_alloc_array(k, sizeof(float));
    m->logc = duet_alloc_array(k, sizeof(float));
    m->mu = duet_alloc_array(k, d * sizeof(float));
    m->scale = duet_alloc_array(k, d * sizeof(float));
    m->inv_var = duet_alloc_array(k, d * sizeof(float));
    m->mu_iv = duet_alloc_array(k, d * sizeof(float));
    m->lap = duet_calloc_array(k, d);
    if (!m->w || !m->logc || !m->mu || !m->scale || !m->inv_var || !m->mu_iv || !m->lap) {
        duet_fv_free(m);
        return DUET_ERR_NOMEM;
    }
    return DUET_OK;
}

/* Fills logc, inv_var and mu_iv from w, mu, scale, lap. logc holds
 * log w - sum log normalizer - sum_{Gaussian dims} mu^2 / (2 sigma^2). */
static void fv_prepare(duet_fv_model *m) {
    size_t k = m->k, d = m->d;
    for (size_t a = 0; a < k; a++) {
        double c = log((double)m->w[a]);
        for (size_t j = 0; j < d; j++) {
            size_t i = a * d + j;
            double s = m->scale[i], mu = m->mu[i];
            if (m->lap[i]) { c -= log(2 * s); m->inv_var[i] = 0; m->mu_iv[i] = 0; }
            else {
                c -= 0.5 * LOG2PI + log(s) + 0.5 * mu * mu / (s * s);
                m->inv_var[i] = (float)(1.0 / (s * s));
                m->mu_iv[i] = (float)(mu / (s * s));
            }
        }
        m->logc[a] = (float)c;
    }
}

duet_status duet_fv_from_gmm(duet_fv_model *m, const duet_gmm *g) {
    if (fv_alloc(m, 0, g->k, g->d)) return DUET_ERR_NOMEM;
    for (size_t a = 0; a < g->k; a++) m->w[a] = (float)g->w[a];
    for (size_t i = 0; i < g->k * g->d; i++) { m->mu[i] = (float)g->mu[i]; m->scale[i] = (float)sqrt(g->var[i]); }
    fv_prepare(m);
    return DUET_OK;
}

duet_status duet_fv_from_hglmm(duet_fv_model *m, const duet_hglmm *h) {
    if (fv_alloc(m, 1, h->k, h->d)) return DUET_ERR_NOMEM;
    for (size_t a = 0; a < h->k; a++) m->w[a] = (float)h->w[a];
    for (size_t i = 0; i < h->k * h->d; i++) {
        m->mu[i] = (float)h->mu[i]; m->scale[i] = (float)h->scale[i]; m->lap[i] = h->lap[i];
    }
    fv_prepare(m);
    return DUET_OK;
}

typedef struct fv_ctx {
    const duet_fv_model *m;
    const float *x;
    const size_t *start;
    float *lp;        /* [ntok x k] log posteriors -> posteriors */
    float *out;
    size_t ldo;
    int has_lap;
} fv_ctx;

/* Laplace terms (if any) and the softmax over components, per token. */
static void fv_post(void *vctx, size_t b, size_t e) {
    fv_ctx *c = vctx;
    const duet_fv_model *m = c->m;
    size_t k = m->k, d = m->d;
    for (size_t t = b; t < e; t++) {
        float *r = c->lp + t * k;
        if (c->has_lap) {
            const float *xt = c->x + t * d;
            for (size_t a = 0; a < k; a++) {
                float s = 0;
                const unsigned char *lp = m->lap + a * d;
                const float *mu = m->mu + a * d, *sc = m->scale + a * d;
                for (size_t j = 0; j < d; j++) if (lp[j]) s += fabsf(xt[j] - mu[j]) / sc[j];
                r[a] -= s;
            }
        }
        float mx = r[0], s = 0;
        for (size_t a = 1; a < k; a++) if (r[a] > mx) mx = r[a];
        for (size_t a = 0; a < k; a++) { r[a] = expf(r[a] - mx); s += r[a]; }
        float inv = 1.0f / s;
        for (size_t a = 0; a < k; a++) r[a] *= inv;
    }
}

static void fv_sent(void *vctx, size_t b, size_t e) {
    fv_ctx *c = vctx;
    const duet_fv_model *m = c->m;
    size_t k = m->k, d = m->d, kd = k * d;
    for (size_t s = b; s < e; s++) {
        float *o = c->out + s * c->ldo;
        memset(o, 0, 2 * kd * sizeof(float));
        size_t t0 = c->start[s], t1 = c->start[s + 1];
        if (t1 == t0) continue;
        for (size_t t = t0; t < t1; t++) {
            const float *xt = c->x + t * d, *g = c->lp + t * k;
            for (size_t a = 0; a < k; a++) {
                float ga = g[a];
                const float *mu = m->mu + a * d, *sc = m->scale + a * d;
                float *o1 = o + a * d, *o2 = o + kd + a * d;
                if (c->has_lap) {
                    const unsigned char *lp = m->lap + a * d;
                    for (size_t j = 0; j < d; j++) {
                        float z = (xt[j] - mu[j]) / sc[j];
                        if (lp[j]) { o1[j] += ga * (float)((z > 0) - (z < 0)); o2[j] += ga * (fabsf(z) - 1.0f); }
                        else { o1[j] += ga * z; o2[j] += ga * (z * z - 1.0f); }
                    }
                } else {
                    for (size_t j = 0; j < d; j++) {
                        float z = (xt[j] - mu[j]) / sc[j];
                        o1[j] += ga * z; o2[j] += ga * (z * z - 1.0f);
                    }
                }
            }
        }
        float T = (float)(t1 - t0);
        double ss = 0;
        for (size_t a = 0; a < k; a++) {
            float f1 = 1.0f / (T * sqrtf(m->w[a])), f2g = 1.0f / (T * sqrtf(2.0f * m->w[a]));
            for (size_t j = 0; j < d; j++) {
                size_t i = a * d + j;
                float g1 = o[i] * f1, g2 = o[kd + i] * (m->lap[i] ? f1 : f2g);
                g1 = g1 >= 0 ? sqrtf(g1) : -sqrtf(-g1);
                g2 = g2 >= 0 ? sqrtf(g2) : -sqrtf(-g2);
                o[i] = g1; o[kd + i] = g2;
                ss += (double)g1 * g1 + (double)g2 * g2;
            }
        }
        if (ss > 0) {
            float inv = (float)(1.0 / sqrt(ss));
            for (size_t i = 0; i < 2 * kd; i++) o[i] *= inv;
        }
    }
}

duet_status duet_fv_encode(const duet_fv_model *m, const float *x, const size_t *start,
                           size_t n, float *out, size_t ldo, duet_error *err) {
    size_t k = m->k, d = m->d, ntok = start[n] - start[0];
    if (start[0] != 0) return duet_fail(err, DUET_ERR_INVALID_ARG, "fisher: start[0] must be 0");
    float *lp = duet_alloc_array(ntok ? ntok : 1, k * sizeof(float));
    float *x2 = duet_alloc_array(ntok ? ntok : 1, d * sizeof(float));
    if (!lp || !x2) { free(lp); free(x2); return duet_fail(err, DUET_ERR_NOMEM, "fisher: out of memory (%zu tokens)", ntok); }
    int has_lap = 0;
    for (size_t i = 0; i < k * d; i++) if (m->lap[i]) { has_lap = 1; break; }
    if (ntok) {
        for (size_t i = 0; i < ntok * d; i++) x2[i] = x[i] * x[i];
        for (size_t t = 0; t < ntok; t++) memcpy(lp + t * k, m->logc, k * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)ntok, (int)k, (int)d, -0.5f, x2, (int)d, m->inv_var, (int)d, 1.0f, lp, (int)k);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)ntok, (int)k, (int)d, 1.0f, x, (int)d, m->mu_iv, (int)d, 1.0f, lp, (int)k);
    }
    free(x2);
    fv_ctx c = {m, x, start, lp, out, ldo, has_lap};
    duet_parallel_for(ntok, 512, fv_post, &c);
    duet_parallel_for(n, 16, fv_sent, &c);
    free(lp);
    return DUET_OK;
}
