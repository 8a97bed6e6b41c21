/* gmm.c -- diagonal Gaussian mixture (EM as scikit-learn's GaussianMixture
 * with covariance_type='diag') and Klein's hybrid Gaussian-Laplacian mixture
 * (HGLMM). The GMM E-step and sufficient statistics are GEMMs (dgemm) over
 * blocks of points; EM runs in double. */
#include "text.h"
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 8192
#define LOG2PI 1.8378770664093453

void duet_gmm_free(duet_gmm *g) {
    if (!g) return;
    free(g->w); free(g->mu); free(g->var);
    memset(g, 0, sizeof *g);
}

duet_status duet_gmm_alloc(duet_gmm *g, size_t k, size_t d) {
    memset(g, 0, sizeof *g);
    g->k = k; g->d = d;
    g->w = duet_calloc_array(k, sizeof(double));
    g->mu = duet_calloc_array(k, d * sizeof(double));
    g->var = duet_calloc_array(k, d * sizeof(double));
    if (!g->w || !g->mu || !g->var || !k || !d) { duet_gmm_free(g); return DUET_ERR_NOMEM; }
    return DUET_OK;
}

static double wt_of(const float *wt, size_t i) { return wt ? (double)wt[i] : 1.0; }

duet_status duet_gmm_init_kmeanspp(duet_gmm *g, const float *x, const float *wt,
                                   size_t n, duet_rng *rng, duet_error *err) {
    size_t k = g->k, d = g->d;
    if (n < k) return duet_fail(err, DUET_ERR_EMPTY, "gmm: %zu points for %zu components", n, k);
    double *dist = duet_alloc_array(n, sizeof(double));
    if (!dist) return duet_fail(err, DUET_ERR_NOMEM, "gmm: out of memory");
    /* global mean and variance */
    double W = 0;
    double *m = calloc(d, sizeof(double)), *v = calloc(d, sizeof(double));
    if (!m || !v) { free(dist); free(m); free(v); return duet_fail(err, DUET_ERR_NOMEM, "gmm: out of memory"); }
    for (size_t i = 0; i < n; i++) { double w = wt_of(wt, i); W += w; for (size_t j = 0; j < d; j++) m[j] += w * x[i * d + j]; }
    for (size_t j = 0; j < d; j++) m[j] /= W;
    for (size_t i = 0; i < n; i++) { double w = wt_of(wt, i); for (size_t j = 0; j < d; j++) { double t = x[i * d + j] - m[j]; v[j] += w * t * t; } }
    for (size_t j = 0; j < d; j++) v[j] = v[j] / W + 1e-6;
    /* k-means++: first centre by weight, then by weight x squared distance */
    for (size_t c = 0; c < k; c++) {
        size_t pick = 0;
        double tot = 0;
        for (size_t i = 0; i < n; i++) tot += (c == 0 ? 1.0 : dist[i]) * wt_of(wt, i);
        double r = (double)duet_rng_uniform(rng) * tot, acc = 0;
        for (pick = 0; pick < n - 1; pick++) {
            acc += (c == 0 ? 1.0 : dist[pick]) * wt_of(wt, pick);
            if (acc > r) break;
        }
        for (size_t j = 0; j < d; j++) g->mu[c * d + j] = x[pick * d + j];
        for (size_t i = 0; i < n; i++) {
            double s = 0;
            for (size_t j = 0; j < d; j++) { double t = x[i * d + j] - g->mu[c * d + j]; s += t * t; }
            if (c == 0 || s < dist[i]) dist[i] = s;
        }
    }
    for (size_t c = 0; c < k; c++) {
        g->w[c] = 1.0 / (double)k;
        memcpy(g->var + c * d, v, d * sizeof(double));
    }
    free(dist); free(m); free(v);
    return DUET_OK;
}

/* Rows [b, e) of a block of log-joint rows lp [nb x k]: each row becomes the
 * weighted posterior w_i * p(a | x_i), and rll[i] = log sum_a exp(lp[i, a]),
 * the point's log-likelihood. Rows are independent (run on both cores). */
typedef struct posterior_ctx {
    double *lp, *rll;
    const float *wt;
    size_t b0, k;
} posterior_ctx;

static void posterior_rows(void *vctx, size_t b, size_t e) {
    posterior_ctx *c = vctx;
    size_t k = c->k;
    for (size_t i = b; i < e; i++) {
        double *r = c->lp + i * k, mx = r[0], sum = 0;
        for (size_t a = 1; a < k; a++) if (r[a] > mx) mx = r[a];
        for (size_t a = 0; a < k; a++) { r[a] = exp(r[a] - mx); sum += r[a]; }
        c->rll[i] = mx + log(sum);
        double f = wt_of(c->wt, c->b0 + i) / sum;
        for (size_t a = 0; a < k; a++) r[a] *= f;
    }
}

/* One pass over x: mean log-likelihood under g (returned) and, when s0 is
 * not NULL, the weighted statistics S0 [k] and S12 = [S1 | S2] [k x 2d].
 * Per block of points the E-step is one DGEMM [x | x^2] [mu/var | -1/(2var)]^T
 * and the statistics one DGEMM post^T [x | x^2]. xx_all: [n x 2d] prebuilt
 * [x | x^2] rows, or NULL to build them per block in work. */
static double gmm_pass(const duet_gmm *g, const float *x, const double *xx_all,
                       const float *wt, size_t n, double *s0, double *s12,
                       double *work) {
    size_t k = g->k, d = g->d, d2 = 2 * d;
    double *xb = work, *lp = xb + BLOCK * d2;
    double *pr = lp + BLOCK * k, *c = pr + k * d2, *rll = c + k;
    for (size_t a = 0; a < k; a++) {
        double s = log(g->w[a]);
        for (size_t j = 0; j < d; j++) {
            double vv = g->var[a * d + j], m = g->mu[a * d + j];
            pr[a * d2 + j] = m / vv;
            pr[a * d2 + d + j] = -0.5 / vv;
            s -= 0.5 * (LOG2PI + log(vv)) + 0.5 * m * m / vv;
        }
        c[a] = s;
    }
    if (s0) { memset(s0, 0, k * sizeof(double)); memset(s12, 0, k * d2 * sizeof(double)); }
    double ll = 0, W = 0;
    for (size_t b0 = 0; b0 < n; b0 += BLOCK) {
        size_t nb = n - b0 < BLOCK ? n - b0 : BLOCK;
        const double *xx = xx_all ? xx_all + b0 * d2 : xb;
        if (!xx_all)
            for (size_t i = 0; i < nb; i++)
                for (size_t j = 0; j < d; j++) {
                    double v = x[(b0 + i) * d + j];
                    xb[i * d2 + j] = v; xb[i * d2 + d + j] = v * v;
                }
        for (size_t i = 0; i < nb; i++) memcpy(lp + i * k, c, k * sizeof(double));
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)k, (int)d2, 1.0, xx, (int)d2, pr, (int)d2, 1.0, lp, (int)k);
        posterior_ctx pc = {lp, rll, wt, b0, k};
        duet_parallel_for(nb, 512, posterior_rows, &pc);
        for (size_t i = 0; i < nb; i++) {   /* serial sums: same result for any thread count */
            double w = wt_of(wt, b0 + i);
            ll += w * rll[i]; W += w;
            if (s0) for (size_t a = 0; a < k; a++) s0[a] += lp[i * k + a];
        }
        if (s0)
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)k, (int)d2, (int)nb, 1.0, lp, (int)k, xx, (int)d2, 1.0, s12, (int)d2);
    }
    return W > 0 ? ll / W : 0;
}

static double *gmm_work(size_t k, size_t d) {
    size_t a = 2 * BLOCK * d + BLOCK * k + 2 * k * d + k + BLOCK;
    return duet_alloc_array(a, sizeof(double));
}

double duet_gmm_score(const duet_gmm *g, const float *x, const float *wt, size_t n) {
    double *work = gmm_work(g->k, g->d);
    if (!work) return NAN;
    double ll = gmm_pass(g, x, NULL, wt, n, NULL, NULL, work);
    free(work);
    return ll;
}

duet_status duet_gmm_em(duet_gmm *g, const float *x, const float *wt, size_t n,
                        int max_iter, double tol, double reg_covar, double *ll_trace,
                        int *iters, duet_error *err) {
    size_t k = g->k, d = g->d;
    if (n == 0) return duet_fail(err, DUET_ERR_EMPTY, "gmm: no points");
    double *work = gmm_work(k, d);
    double *s0 = duet_alloc_array(k, sizeof(double));
    double *s12 = duet_alloc_array(k, 2 * d * sizeof(double));
    if (!work || !s0 || !s12) { free(work); free(s0); free(s12); return duet_fail(err, DUET_ERR_NOMEM, "gmm: out of memory"); }
    /* [x | x^2] in double once, when it takes at most 1 GiB */
    double *xx = NULL;
    size_t bytes;
    if (duet_mul_size(n, 2 * d * sizeof(double), &bytes) && bytes <= ((size_t)1 << 30) && (xx = malloc(bytes)))
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < d; j++) {
                double v = x[i * d + j];
                xx[i * 2 * d + j] = v; xx[i * 2 * d + d + j] = v * v;
            }
    double prev = -INFINITY;
    int it;
    duet_status st = DUET_OK;
    for (it = 0; it < max_iter; it++) {
        double ll = gmm_pass(g, x, xx, wt, n, s0, s12, work);
        if (!isfinite(ll)) { st = duet_fail(err, DUET_ERR_NONFINITE, "gmm: log-likelihood not finite at iteration %d", it + 1); break; }
        if (ll_trace) ll_trace[it] = ll;
        double tot = 0;
        for (size_t a = 0; a < k; a++) { s0[a] += 10 * 2.220446049250313e-16; tot += s0[a]; }
        for (size_t a = 0; a < k; a++) {
            g->w[a] = s0[a] / tot;
            for (size_t j = 0; j < d; j++) {
                double m = s12[a * 2 * d + j] / s0[a];
                double v = s12[a * 2 * d + d + j] / s0[a] - m * m;
                if (v < 0) v = 0;
                g->mu[a * d + j] = m;
                g->var[a * d + j] = v + reg_covar;
            }
        }
        int done = tol > 0 && fabs(ll - prev) < tol;
        prev = ll;
        if (done) { it++; break; }
    }
    if (iters) *iters = it;
    free(work); free(s0); free(s12); free(xx);
    return st;
}

/* ------------------------------------------------------------ HGLMM */

void duet_hglmm_free(duet_hglmm *h) {
    if (!h) return;
    free(h->w); free(h->mu); free(h->scale); free(h->lap);
    memset(h, 0, sizeof *h);
}

duet_status duet_hglmm_alloc(duet_hglmm *h, size_t k, size_t d) {
    memset(h, 0, sizeof *h);
    h->k = k; h->d = d;
    h->w = duet_calloc_array(k, sizeof(double));
    h->mu = duet_calloc_array(k, d * sizeof(double));
    h->scale = duet_calloc_array(k, d * sizeof(double));
    h->lap = duet_calloc_array(k, d);
    if (!h->w || !h->mu || !h->scale || !h->lap || !k || !d) { duet_hglmm_free(h); return DUET_ERR_NOMEM; }
    return DUET_OK;
}

duet_status duet_hglmm_from_gmm(duet_hglmm *h, const duet_gmm *g) {
    duet_status st = duet_hglmm_alloc(h, g->k, g->d);
    if (st) return st;
    memcpy(h->w, g->w, g->k * sizeof(double));
    memcpy(h->mu, g->mu, g->k * g->d * sizeof(double));
    for (size_t i = 0; i < g->k * g->d; i++) h->scale[i] = sqrt(g->var[i]);
    return DUET_OK;
}

typedef struct hg_ctx {
    const duet_hglmm *h;
    const float *x, *wt;
    double *post;        /* [n x k] weighted posteriors */
    double *c;           /* [k] log w - sum log normalizers */
    double *ll_part;     /* [n] */
} hg_ctx;

static void hg_estep(void *vctx, size_t b, size_t e) {
    hg_ctx *cx = vctx;
    const duet_hglmm *h = cx->h;
    size_t k = h->k, d = h->d;
    for (size_t i = b; i < e; i++) {
        const float *xi = cx->x + i * d;
        double *r = cx->post + i * k, mx = -INFINITY, s = 0;
        for (size_t a = 0; a < k; a++) {
            double t = cx->c[a];
            const double *mu = h->mu + a * d, *sc = h->scale + a * d;
            const unsigned char *lp = h->lap + a * d;
            for (size_t j = 0; j < d; j++) {
                double z = (xi[j] - mu[j]) / sc[j];
                t -= lp[j] ? fabs(z) : 0.5 * z * z;
            }
            r[a] = t;
            if (t > mx) mx = t;
        }
        for (size_t a = 0; a < k; a++) { r[a] = exp(r[a] - mx); s += r[a]; }
        double w = wt_of(cx->wt, i);
        cx->ll_part[i] = w * (mx + log(s));
        for (size_t a = 0; a < k; a++) r[a] *= w / s;
    }
}

static void hg_consts(const duet_hglmm *h, double *c) {
    for (size_t a = 0; a < h->k; a++) {
        double s = log(h->w[a]);
        for (size_t j = 0; j < h->d; j++) {
            double sc = h->scale[a * h->d + j];
            s -= h->lap[a * h->d + j] ? log(2 * sc) : 0.5 * LOG2PI + log(sc);
        }
        c[a] = s;
    }
}

static double hg_pass(const duet_hglmm *h, const float *x, const float *wt, size_t n,
                      double *post, double *llp) {
    double c[4096];
    double *cc = h->k <= 4096 ? c : malloc(h->k * sizeof(double));
    if (!cc) return NAN;
    hg_consts(h, cc);
    hg_ctx cx = {h, x, wt, post, cc, llp};
    duet_parallel_for(n, 256, hg_estep, &cx);
    double ll = 0, W = 0;
    for (size_t i = 0; i < n; i++) { ll += llp[i]; W += wt_of(wt, i); }
    if (cc != c) free(cc);
    return W > 0 ? ll / W : 0;
}

double duet_hglmm_score(const duet_hglmm *h, const float *x, const float *wt, size_t n) {
    double *post = duet_alloc_array(n, h->k * sizeof(double)), *llp = duet_alloc_array(n, sizeof(double));
    double ll = (post && llp) ? hg_pass(h, x, wt, n, post, llp) : NAN;
    free(post); free(llp);
    return ll;
}

/* M-step over dimensions [b, e): for each dimension j and component a the
 * better of the Gaussian and the Laplacian weighted MLE. */
typedef struct hm_ctx {
    duet_hglmm *h;
    const float *x;
    const double *post, *s0;
    const uint32_t *order;   /* [d x n] points sorted by x[:, j] */
    size_t n;
    double min_scale;
    double *scratch;         /* [d x 4k] */
} hm_ctx;

static void hg_mstep(void *vctx, size_t b, size_t e) {
    hm_ctx *cx = vctx;
    duet_hglmm *h = cx->h;
    size_t k = h->k, d = h->d, n = cx->n;
    for (size_t j = b; j < e; j++) {
        double *acc = cx->scratch + j * 4 * k;
        double *sx = acc, *sxx = acc + k, *cum = acc + 2 * k, *med = acc + 3 * k;
        memset(acc, 0, 3 * k * sizeof(double));
        for (size_t i = 0; i < n; i++) {
            double xv = cx->x[i * d + j];
            const double *r = cx->post + i * k;
            for (size_t a = 0; a < k; a++) { sx[a] += r[a] * xv; sxx[a] += r[a] * xv * xv; }
        }
        /* weighted medians: walk the points in increasing x[:, j] */
        size_t left = k;
        for (size_t a = 0; a < k; a++) med[a] = NAN;
        const uint32_t *ord = cx->order + j * n;
        for (size_t q = 0; q < n && left; q++) {
            size_t i = ord[q];
            const double *r = cx->post + i * k;
            for (size_t a = 0; a < k; a++) {
                if (!isnan(med[a])) continue;
                cum[a] += r[a];
                if (cum[a] >= 0.5 * cx->s0[a]) { med[a] = cx->x[i * d + j]; left--; }
            }
        }
        for (size_t a = 0; a < k; a++) {
            double N = cx->s0[a];
            double mg = sx[a] / N, vg = sxx[a] / N - mg * mg;
            if (vg < 0) vg = 0;
            double ml = isnan(med[a]) ? mg : med[a], mad = 0;
            for (size_t i = 0; i < n; i++) mad += cx->post[i * k + a] * fabs(cx->x[i * d + j] - ml);
            mad /= N;
            double ms = cx->min_scale;
            double sg = sqrt(vg) > ms ? sqrt(vg) : ms;
            double bl = mad > ms ? mad : ms;
            double qg = -0.5 * LOG2PI - log(sg) - 0.5 * vg / (sg * sg);
            double ql = -log(2 * bl) - mad / bl;
            size_t ix = a * d + j;
            if (ql > qg) { h->lap[ix] = 1; h->mu[ix] = ml; h->scale[ix] = bl; }
            else { h->lap[ix] = 0; h->mu[ix] = mg; h->scale[ix] = sg; }
        }
    }
}

typedef struct sort_ctx { const float *x; size_t d, n; uint32_t *order; int failed; } sort_ctx;
typedef struct vi { float v; uint32_t i; } vi;
static int cmp_vi(const void *a, const void *b) {
    const vi *p = a, *q = b;
    if (p->v != q->v) return (p->v > q->v) - (p->v < q->v);
    return (p->i > q->i) - (p->i < q->i);
}
static void sort_dims(void *vctx, size_t b, size_t e) {
    sort_ctx *s = vctx;
    vi *tmp = duet_alloc_array(s->n, sizeof *tmp);
    if (!tmp) { s->failed = 1; return; }
    for (size_t j = b; j < e; j++) {
        for (size_t i = 0; i < s->n; i++) tmp[i] = (vi){s->x[i * s->d + j], (uint32_t)i};
        qsort(tmp, s->n, sizeof *tmp, cmp_vi);
        uint32_t *o = s->order + j * s->n;
        for (size_t i = 0; i < s->n; i++) o[i] = tmp[i].i;
    }
    free(tmp);
}

duet_status duet_hglmm_em(duet_hglmm *h, const float *x, const float *wt, size_t n,
                          int max_iter, double tol, double min_scale, double *ll_trace,
                          int *iters, duet_error *err) {
    size_t k = h->k, d = h->d;
    if (n == 0) return duet_fail(err, DUET_ERR_EMPTY, "hglmm: no points");
    if (n >= UINT32_MAX) return duet_fail(err, DUET_ERR_INVALID_ARG, "hglmm: too many points (%zu)", n);
    double *post = duet_alloc_array(n, k * sizeof(double));
    double *llp = duet_alloc_array(n, sizeof(double));
    double *s0 = duet_alloc_array(k, sizeof(double));
    uint32_t *order = duet_alloc_array(n, d * sizeof(uint32_t));
    double *scratch = duet_alloc_array(d, 4 * k * sizeof(double));
    if (!post || !llp || !s0 || !order || !scratch) {
        free(post); free(llp); free(s0); free(order); free(scratch);
        return duet_fail(err, DUET_ERR_NOMEM, "hglmm: out of memory (%zu points x %zu dims)", n, d);
    }
    sort_ctx sc = {x, d, n, order, 0};
    duet_parallel_for(d, 1, sort_dims, &sc);
    if (sc.failed) {
        free(post); free(llp); free(s0); free(order); free(scratch);
        return duet_fail(err, DUET_ERR_NOMEM, "hglmm: out of memory");
    }
    double prev = -INFINITY;
    int it;
    duet_status st = DUET_OK;
    for (it = 0; it < max_iter; it++) {
        double ll = hg_pass(h, x, wt, n, post, llp);
        if (!isfinite(ll)) { st = duet_fail(err, DUET_ERR_NONFINITE, "hglmm: log-likelihood not finite at iteration %d", it + 1); break; }
        if (ll_trace) ll_trace[it] = ll;
        double tot = 0;
        memset(s0, 0, k * sizeof(double));
        for (size_t i = 0; i < n; i++) for (size_t a = 0; a < k; a++) s0[a] += post[i * k + a];
        for (size_t a = 0; a < k; a++) { s0[a] += 1e-12; tot += s0[a]; }
        for (size_t a = 0; a < k; a++) h->w[a] = s0[a] / tot;
        hm_ctx mc = {h, x, post, s0, order, n, min_scale, scratch};
        duet_parallel_for(d, 1, hg_mstep, &mc);
        int done = tol > 0 && fabs(ll - prev) < tol;
        prev = ll;
        if (done) { it++; break; }
    }
    if (iters) *iters = it;
    free(post); free(llp); free(s0); free(order); free(scratch);
    return st;
}
