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

/* e [n x o] = z / ||z|| in place; inv_norm [n]. */
static void l2_normalize_rows(float *z, size_t n, size_t o, float *inv_norm) {
    for (size_t r = 0; r < n; r++) {
        float *row = z + r * o;
        double s = 0.0;
        for (size_t c = 0; c < o; c++) s += (double)row[c] * row[c];
        double nrm = sqrt(s);
        float inv = (float)(1.0 / (nrm > 1e-12 ? nrm : 1e-12));
        inv_norm[r] = inv;
        for (size_t c = 0; c < o; c++) row[c] *= inv;
    }
}

/* dz [n x o] = (de - e (e . de)) * inv_norm, from the gradient de w.r.t. the
 * normalized rows e. */
static void l2_normalize_backward(const float *e, const float *de,
                                  const float *inv_norm, size_t n, size_t o,
                                  float *dz) {
    for (size_t r = 0; r < n; r++) {
        const float *er = e + r * o, *dr = de + r * o;
        double dot = 0.0;
        for (size_t c = 0; c < o; c++) dot += (double)er[c] * dr[c];
        float fd = (float)dot, s = inv_norm[r];
        for (size_t c = 0; c < o; c++) dz[r * o + c] = (dr[c] - er[c] * fd) * s;
    }
}

/* Batch statistics of z [n x h] by column: mean, biased variance. */
static void column_stats(const float *z, size_t n, size_t h, float *mean,
                         float *var) {
    for (size_t c = 0; c < h; c++) { mean[c] = 0.0f; var[c] = 0.0f; }
    /* two passes in double-free float with row-major streaming */
    for (size_t r = 0; r < n; r++)
        for (size_t c = 0; c < h; c++) mean[c] += z[r * h + c];
    for (size_t c = 0; c < h; c++) mean[c] /= (float)n;
    for (size_t r = 0; r < n; r++)
        for (size_t c = 0; c < h; c++) {
            float dv = z[r * h + c] - mean[c];
            var[c] += dv * dv;
        }
    for (size_t c = 0; c < h; c++) var[c] /= (float)n;
}

/* The MLP's middle: z [n x h] (in ws->xh) -> xh (in place), and
 * d = dropout(relu(gamma*xh + beta)) into ws->d. */
static void bn_relu_dropout(const duet_bparams *w, duet_bnstats *bn,
                            const duet_params *p, size_t n, size_t h,
                            int train, duet_rng *rng, const float *mask_override,
                            duet_branch_ws *ws) {
    float *z = ws->xh;
    if (train) {
        column_stats(z, n, h, ws->mean, ws->var);
        float mom = p->bn_momentum, unb = (float)n / (float)(n - 1);
        for (size_t c = 0; c < h; c++) {
            bn->mean[c] = (1.0f - mom) * bn->mean[c] + mom * ws->mean[c];
            bn->var[c] = (1.0f - mom) * bn->var[c] + mom * ws->var[c] * unb;
        }
    } else {
        memcpy(ws->mean, bn->mean, h * sizeof(float));
        memcpy(ws->var, bn->var, h * sizeof(float));
    }
    for (size_t c = 0; c < h; c++)
        ws->inv_std[c] = 1.0f / sqrtf(ws->var[c] + p->bn_eps);
    float keep = 1.0f - p->dropout, scale = keep > 0 ? 1.0f / keep : 0.0f;
    int drop = train && p->dropout > 0.0f;
    for (size_t r = 0; r < n; r++) {
        float *zr = z + r * h, *dr = ws->d + r * h, *mr = ws->mask + r * h;
        for (size_t c = 0; c < h; c++) {
            float xh = (zr[c] - ws->mean[c]) * ws->inv_std[c];
            zr[c] = xh;
            float y = w->gamma[c] * xh + w->beta[c];
            float m = 1.0f;
            if (mask_override) m = mask_override[r * h + c];
            else if (drop) m = duet_rng_uniform(rng) < p->dropout ? 0.0f : scale;
            mr[c] = m;
            dr[c] = (y > 0.0f ? y : 0.0f) * m;
        }
    }
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

/* BN + ReLU + dropout backward: dd [n x h] holds dD on entry and dZ1 on exit.
 * dY = dD * M where D > 0 (D > 0 iff ReLU passed and the unit was kept). */
static void bn_relu_dropout_backward(const duet_bparams *w, duet_bparams *g,
                                     size_t n, size_t h, duet_branch_ws *ws) {
    float *dd = ws->dd;
    memset(g->gamma, 0, h * sizeof(float));
    memset(g->beta, 0, h * sizeof(float));
    for (size_t r = 0; r < n; r++) {
        float *ddr = dd + r * h;
        const float *dr = ws->d + r * h, *mr = ws->mask + r * h,
                    *xr = ws->xh + r * h;
        for (size_t c = 0; c < h; c++) {
            float dy = dr[c] > 0.0f ? ddr[c] * mr[c] : 0.0f;
            ddr[c] = dy;
            g->gamma[c] += dy * xr[c];
            g->beta[c] += dy;
        }
    }
    /* dZ1 = inv_std/n * (n*dXh - sum(dXh) - Xh*sum(dXh*Xh)), dXh = dY*gamma */
    float fn = (float)n;
    for (size_t r = 0; r < n; r++) {
        float *ddr = dd + r * h;
        const float *xr = ws->xh + r * h;
        for (size_t c = 0; c < h; c++) {
            float gm = w->gamma[c];
            ddr[c] = ws->inv_std[c] / fn *
                     (fn * ddr[c] * gm - g->beta[c] * gm - xr[c] * g->gamma[c] * gm);
        }
    }
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
