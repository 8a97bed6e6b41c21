/* branch.c -- one branch of the network, forward and backward.
 *
 *   MLP:    x -> fc(W1,b1) -> batch-norm(gamma,beta) -> ReLU -> dropout
 *             -> fc(W2,b2) -> L2-normalize
 *   linear: x -> fc(W1,b1) -> L2-normalize
 *
 * Every product goes through cblas_sgemm; the element-wise kernels are plain
 * loops. Shapes: x [n x d_in], hidden h, output o. See docs/MODEL.md. */
#include "embed/embed.h"
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

size_t duet_branch_layout(const duet_branch *b, float *base, duet_bparams *v) {
    size_t o = b->out, h = b->hidden, d = b->d_in;
    size_t n1 = b->linear ? d * o : d * h;
    size_t sizes[6] = {n1, b->linear ? o : h, b->linear ? 0 : h,
                       b->linear ? 0 : h, b->linear ? 0 : h * o,
                       b->linear ? 0 : o};
    float **views[6];
    duet_bparams dummy;
    if (!v) v = &dummy;
    views[0] = &v->W1; views[1] = &v->b1; views[2] = &v->gamma;
    views[3] = &v->beta; views[4] = &v->W2; views[5] = &v->b2;
    size_t off = 0;
    for (int i = 0; i < 6; i++) {
        *views[i] = (base && sizes[i]) ? base + off : NULL;
        off += sizes[i];
    }
    return off;
}

void duet_branch_ws_free(duet_branch_ws *ws) {
    if (!ws) return;
    float **arr[] = {&ws->xh, &ws->mask, &ws->d, &ws->dd, &ws->e, &ws->de,
                     &ws->inv_norm, &ws->mean, &ws->var, &ws->inv_std, &ws->ones};
    for (size_t i = 0; i < sizeof arr / sizeof arr[0]; i++) {
        free(*arr[i]);
        *arr[i] = NULL;
    }
    ws->cap = 0;
}

duet_status duet_branch_ws_init(duet_branch_ws *ws, const duet_branch *b,
                                size_t cap, duet_error *err) {
    memset(ws, 0, sizeof *ws);
    size_t h = b->linear ? 1 : b->hidden, nh;
    if (!duet_mul_size(cap, h, &nh))
        return duet_fail(err, DUET_ERR_NOMEM, "branch workspace: size overflow");
    ws->cap = cap;
    ws->xh = duet_alloc_array(nh, sizeof(float));
    ws->mask = duet_alloc_array(nh, sizeof(float));
    ws->d = duet_alloc_array(nh, sizeof(float));
    ws->dd = duet_alloc_array(nh, sizeof(float));
    ws->e = duet_alloc_array(cap, b->out * sizeof(float));
    ws->de = duet_alloc_array(cap, b->out * sizeof(float));
    ws->inv_norm = duet_alloc_array(cap, sizeof(float));
    ws->mean = duet_alloc_array(h, sizeof(float));
    ws->var = duet_alloc_array(h, sizeof(float));
    ws->inv_std = duet_alloc_array(h, sizeof(float));
    ws->ones = duet_alloc_array(cap, sizeof(float));
    if (!ws->xh || !ws->mask || !ws->d || !ws->dd || !ws->e || !ws->de ||
        !ws->inv_norm || !ws->mean || !ws->var || !ws->inv_std || !ws->ones) {
        duet_branch_ws_free(ws);
        return duet_fail(err, DUET_ERR_NOMEM,
                         "branch workspace: out of memory (%zu rows)", cap);
    }
    for (size_t i = 0; i < cap; i++) ws->ones[i] = 1.0f;
    return DUET_OK;
}

/* Y [n x c] = X [n x k] . W [k x c] + 1 b^T */
static void fc_forward(const float *x, const float *W, const float *bias,
                       size_t n, size_t k, size_t c, float *y) {
    for (size_t r = 0; r < n; r++) memcpy(y + r * c, bias, c * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)c,
                (int)k, 1.0f, x, (int)k, W, (int)c, 1.0f, y, (int)c);
}

/* dW [k x c] = X^T dY; db [c] = column sums of dY (through sgemv). */
static void fc_backward_params(const float *x, const float *dy, size_t n,
                               size_t k, size_t c, const float *ones,
                               float *dW, float *db) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)k, (int)c,
                (int)n, 1.0f, x, (int)k, dy, (int)c, 0.0f, dW, (int)c);
    cblas_sgemv(CblasRowMajor, CblasTrans, (int)n, (int)c, 1.0f, dy, (int)c,
                ones, 1, 0.0f, db, 1);
}

/* The element-wise kernels below run on duet_parallel_for: rows or column
 * ranges split into one contiguous chunk per thread. Each chunk computes the
 * same values whatever the split, so results do not depend on the thread
 * count. */

typedef struct rows_job {
    float *z;               /* [n x o] rows to normalize / normalized rows  */
    const float *de;        /* [n x o] gradient w.r.t. the normalized rows  */
    float *dz;              /* [n x o] out: gradient w.r.t. z               */
    float *inv_norm;        /* [n]                                          */
    size_t o;
} rows_job;

/* e = z / ||z|| in place (norm clamped below at 1e-12). */
static void l2_rows(void *ctx, size_t r0, size_t r1) {
    rows_job *j = ctx;
    for (size_t r = r0; r < r1; r++) {
        float *row = j->z + r * j->o;
        double s = 0.0;
        for (size_t c = 0; c < j->o; c++) s += (double)row[c] * row[c];
        double nrm = sqrt(s);
        float inv = (float)(1.0 / (nrm > 1e-12 ? nrm : 1e-12));
        j->inv_norm[r] = inv;
        for (size_t c = 0; c < j->o; c++) row[c] *= inv;
    }
}

/* dz = (de - e (e . de)) * inv_norm. */
static void l2_rows_backward(void *ctx, size_t r0, size_t r1) {
    rows_job *j = ctx;
    for (size_t r = r0; r < r1; r++) {
        const float *er = j->z + r * j->o, *dr = j->de + r * j->o;
        double dot = 0.0;
        for (size_t c = 0; c < j->o; c++) dot += (double)er[c] * dr[c];
        float fd = (float)dot, s = j->inv_norm[r];
        for (size_t c = 0; c < j->o; c++) j->dz[r * j->o + c] = (dr[c] - er[c] * fd) * s;
    }
}

static void l2_normalize_rows(float *z, size_t n, size_t o, float *inv_norm) {
    rows_job j = {z, NULL, NULL, inv_norm, o};
    duet_parallel_for(n, 64, l2_rows, &j);
}

static void l2_normalize_backward(const float *e, const float *de,
                                  const float *inv_norm, size_t n, size_t o,
                                  float *dz) {
    rows_job j = {(float *)e, de, dz, (float *)inv_norm, o};
    duet_parallel_for(n, 64, l2_rows_backward, &j);
}

typedef struct bn_job {
    const duet_bparams *w;
    duet_bparams *g;
    duet_bnstats *bn;
    const duet_params *p;
    duet_branch_ws *ws;
    size_t n, h;
    int train, drop;
    uint64_t mask_seed;
    const float *mask_override;
} bn_job;

/* Columns [c0, c1): batch mean and biased variance (training) or the running
 * statistics (evaluation), the running-statistic update, 1/sqrt(var+eps). */
static void bn_stats_cols(void *ctx, size_t c0, size_t c1) {
    bn_job *j = ctx;
    duet_branch_ws *ws = j->ws;
    const float *z = ws->xh;
    size_t n = j->n, h = j->h;
    if (j->train) {
        for (size_t c = c0; c < c1; c++) { ws->mean[c] = 0.0f; ws->var[c] = 0.0f; }
        for (size_t r = 0; r < n; r++)
            for (size_t c = c0; c < c1; c++) ws->mean[c] += z[r * h + c];
        for (size_t c = c0; c < c1; c++) ws->mean[c] /= (float)n;
        for (size_t r = 0; r < n; r++)
            for (size_t c = c0; c < c1; c++) {
                float dv = z[r * h + c] - ws->mean[c];
                ws->var[c] += dv * dv;
            }
        float mom = j->p->bn_momentum, unb = (float)n / (float)(n - 1);
        for (size_t c = c0; c < c1; c++) {
            ws->var[c] /= (float)n;
            j->bn->mean[c] = (1.0f - mom) * j->bn->mean[c] + mom * ws->mean[c];
            j->bn->var[c] = (1.0f - mom) * j->bn->var[c] + mom * ws->var[c] * unb;
        }
    } else {
        for (size_t c = c0; c < c1; c++) { ws->mean[c] = j->bn->mean[c]; ws->var[c] = j->bn->var[c]; }
    }
    for (size_t c = c0; c < c1; c++) ws->inv_std[c] = 1.0f / sqrtf(ws->var[c] + j->p->bn_eps);
}

/* Rows [r0, r1): xh = (z - mean) * inv_std in place, d = dropout(relu(gamma
 * xh + beta)). Row r's dropout mask comes from its own RNG stream seeded
 * from (mask_seed, r), so the masks do not depend on the thread count. */
static void bn_rows(void *ctx, size_t r0, size_t r1) {
    bn_job *j = ctx;
    duet_branch_ws *ws = j->ws;
    size_t h = j->h;
    float p = j->p->dropout, scale = 1.0f / (1.0f - p);
    for (size_t r = r0; r < r1; r++) {
        float *zr = ws->xh + r * h, *dr = ws->d + r * h, *mr = ws->mask + r * h;
        duet_rng rr;
        if (j->drop) duet_rng_seed(&rr, j->mask_seed ^ (0x9e3779b97f4a7c15ULL * (r + 1)));
        for (size_t c = 0; c < h; c++) {
            float xh = (zr[c] - ws->mean[c]) * ws->inv_std[c];
            zr[c] = xh;
            float y = j->w->gamma[c] * xh + j->w->beta[c];
            float m = 1.0f;
            if (j->mask_override) m = j->mask_override[r * h + c];
            else if (j->drop) m = duet_rng_uniform(&rr) < p ? 0.0f : scale;
            mr[c] = m;
            dr[c] = (y > 0.0f ? y : 0.0f) * m;
        }
    }
}

/* The MLP's middle: z [n x h] (in ws->xh) -> xh (in place), and
 * d = dropout(relu(gamma*xh + beta)) into ws->d. */
static void bn_relu_dropout(const duet_bparams *w, duet_bnstats *bn,
                            const duet_params *p, size_t n, size_t h,
                            int train, duet_rng *rng, const float *mask_override,
                            duet_branch_ws *ws) {
    bn_job j = {w, NULL, bn, p, ws, n, h, train, train && p->dropout > 0.0f, 0,
                mask_override};
    if (j.drop && !mask_override) j.mask_seed = duet_rng_u64(rng);
    duet_parallel_for(h, 64, bn_stats_cols, &j);
    duet_parallel_for(n, 16, bn_rows, &j);
}

void duet_branch_forward(const duet_branch *b, const duet_bparams *w,
                         duet_bnstats *bn, const duet_params *p,
                         const float *x, size_t n, int train, duet_rng *rng,
                         const float *mask_override, duet_branch_ws *ws) {
    size_t d = b->d_in, h = b->hidden, o = b->out;
    if (b->linear) {
        fc_forward(x, w->W1, w->b1, n, d, o, ws->e);      /* [n x o] */
    } else {
        fc_forward(x, w->W1, w->b1, n, d, h, ws->xh);     /* [n x h] */
        bn_relu_dropout(w, bn, p, n, h, train, rng, mask_override, ws);
        fc_forward(ws->d, w->W2, w->b2, n, h, o, ws->e);  /* [n x o] */
    }
    l2_normalize_rows(ws->e, n, o, ws->inv_norm);
}

/* BN + ReLU + dropout backward on columns [c0, c1): ws->dd holds dD on
 * entry and dZ1 on exit. dY = dD * M where D > 0 (D > 0 iff the ReLU passed
 * and the unit was kept); dgamma = sum(dY xh), dbeta = sum(dY);
 * dZ1 = inv_std/n * (n dY gamma - dbeta gamma - xh dgamma gamma). */
static void bn_backward_cols(void *ctx, size_t c0, size_t c1) {
    bn_job *j = ctx;
    duet_branch_ws *ws = j->ws;
    duet_bparams *g = j->g;
    size_t n = j->n, h = j->h;
    for (size_t c = c0; c < c1; c++) { g->gamma[c] = 0.0f; g->beta[c] = 0.0f; }
    for (size_t r = 0; r < n; r++) {
        float *ddr = ws->dd + r * h;
        const float *dr = ws->d + r * h, *mr = ws->mask + r * h, *xr = ws->xh + r * h;
        for (size_t c = c0; c < c1; c++) {
            float dy = dr[c] > 0.0f ? ddr[c] * mr[c] : 0.0f;
            ddr[c] = dy;
            g->gamma[c] += dy * xr[c];
            g->beta[c] += dy;
        }
    }
    float fn = (float)n;
    for (size_t r = 0; r < n; r++) {
        float *ddr = ws->dd + r * h;
        const float *xr = ws->xh + r * h;
        for (size_t c = c0; c < c1; c++) {
            float gm = j->w->gamma[c];
            ddr[c] = ws->inv_std[c] / fn *
                     (fn * ddr[c] * gm - g->beta[c] * gm - xr[c] * g->gamma[c] * gm);
        }
    }
}

static void bn_relu_dropout_backward(const duet_bparams *w, duet_bparams *g,
                                     size_t n, size_t h, duet_branch_ws *ws) {
    bn_job j = {w, g, NULL, NULL, ws, n, h, 1, 0, 0, NULL};
    duet_parallel_for(h, 64, bn_backward_cols, &j);
}

void duet_branch_backward(const duet_branch *b, const duet_bparams *w,
                          const float *x, size_t n, const float *dE,
                          duet_bparams *g, duet_branch_ws *ws) {
    size_t d = b->d_in, h = b->hidden, o = b->out;
    l2_normalize_backward(ws->e, dE, ws->inv_norm, n, o, ws->de); /* dZ2 */
    if (b->linear) {
        fc_backward_params(x, ws->de, n, d, o, ws->ones, g->W1, g->b1);
        return;
    }
    fc_backward_params(ws->d, ws->de, n, h, o, ws->ones, g->W2, g->b2);
    /* dD [n x h] = dZ2 [n x o] . W2^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)h, (int)o,
                1.0f, ws->de, (int)o, w->W2, (int)o, 0.0f, ws->dd, (int)h);
    bn_relu_dropout_backward(w, g, n, h, ws);
    fc_backward_params(x, ws->dd, n, d, h, ws->ones, g->W1, g->b1);
}
