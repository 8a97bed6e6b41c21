/* branch.c -- one branch of the network, forward and backward.
 *
 *   MLP:    x -> fc(W1,b1) -> batch-norm(gamma,beta) -> ReLU -> dropout
 *             -> fc(W2,b2) -> L2-normalize
 *   linear: x -> fc(W1,b1) -> L2-normalize
 *
 * Every product runs on oneDNN (mm.c) in the workspace's precision: f32, or
 * bf16 inputs with f32 accumulation (the bf16 copies of the activations are
 * written by the element-wise kernels that produce them, so no pass of its
 * own converts them); the element-wise kernels are plain loops in f32.
 * Shapes: x [n x d_in], hidden h, output o. See docs/MODEL.md. */
#include "embed/embed.h"
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
    v->W1h = v->W2h = NULL;
    return off;
}

void duet_branch_ws_free(duet_branch_ws *ws) {
    if (!ws) return;
    float **arr[] = {&ws->xh, &ws->d, &ws->dd, &ws->e, &ws->de,
                     &ws->inv_norm, &ws->mean, &ws->var, &ws->inv_std};
    for (size_t i = 0; i < sizeof arr / sizeof arr[0]; i++) free(*arr[i]);
    free(ws->xb); free(ws->hb); free(ws->ob); free(ws->wb);
    duet_mm_cache_free(&ws->mm);
    memset(ws, 0, sizeof *ws);
}

/* bf16 products run on the batch padded to a multiple of PAD rows: AMX
 * multiplies tiles of 32 bf16 along the sum and 16 rows, and oneDNN 2.6
 * runs a ragged batch markedly slower (2 cores, 1000 -> 1024 rows: text
 * fc1 25.6 -> 22.4 ms, its weight gradient 27.4 -> 24.1 ms; image weight
 * gradient, 500 -> 512 rows, 9.0 -> 6.8 ms). The padding rows of the
 * products' outputs are never read; those the sums run over are zero. */
#define PAD 32
static size_t padded(const duet_branch_ws *ws, size_t n) {
    return ws->bf16 ? (n + PAD - 1) / PAD * PAD : n;
}

duet_status duet_branch_ws_init_dnn(duet_branch_ws *ws, const duet_branch *b,
                                    size_t cap, duet_dnn *dnn, duet_error *err) {
    memset(ws, 0, sizeof *ws);
    ws->cap = cap;
    ws->bf16 = dnn && dnn->prec == DUET_PRECISION_BF16;
    size_t h = b->linear ? 1 : b->hidden, rows = padded(ws, cap), nh, nd;
    if (rows < cap || !duet_mul_size(rows, h, &nh) || !duet_mul_size(rows, b->d_in, &nd))
        return duet_fail(err, DUET_ERR_NOMEM, "branch workspace: size overflow");
    ws->xh = duet_embed_alloc(nh, sizeof(float), 0);
    if (!ws->bf16) ws->d = duet_embed_alloc(nh, sizeof(float), 0);
    ws->dd = duet_embed_alloc(nh, sizeof(float), 0);
    ws->e = duet_embed_alloc(rows, b->out * sizeof(float), 0);
    ws->de = duet_embed_alloc(cap, b->out * sizeof(float), 0);
    ws->inv_norm = duet_alloc_array(cap, sizeof(float));
    ws->mean = duet_alloc_array(h, sizeof(float));
    ws->var = duet_alloc_array(h, sizeof(float));
    ws->inv_std = duet_alloc_array(h, sizeof(float));
    int ok = ws->xh && (ws->d || ws->bf16) && ws->dd && ws->e && ws->de &&
             ws->inv_norm && ws->mean && ws->var && ws->inv_std;
    if (ok && ws->bf16) {
        ws->xb = duet_embed_alloc(nd, sizeof(uint16_t), 1);
        ws->hb = duet_embed_alloc(nh, sizeof(uint16_t), 1);
        ws->ob = duet_embed_alloc(rows, b->out * sizeof(uint16_t), 1);
        ok = ws->xb && ws->hb && ws->ob;
    }
    if (!ok) {
        duet_branch_ws_free(ws);
        return duet_fail(err, DUET_ERR_NOMEM,
                         "branch workspace: out of memory (%zu rows)", cap);
    }
    duet_status st = duet_mm_cache_init(&ws->mm, dnn, err);
    if (st) duet_branch_ws_free(ws);
    return st;
}

duet_status duet_branch_ws_init(duet_branch_ws *ws, const duet_branch *b,
                                size_t cap, duet_error *err) {
    return duet_branch_ws_init_dnn(ws, b, cap, NULL, err);
}

/* ------------------------------------------------------------- products */

/* C [m x n] = op(A) op(B) (+ bias) in the workspace's precision: A and B
 * are float arrays in f32, uint16_t (bf16) arrays in bf16. */
static duet_status product(duet_branch_ws *ws, size_t m, size_t n, size_t k,
                           const void *a, int ta, const void *b, int tb,
                           const float *bias, float *c, duet_error *err) {
    duet_mm op = {m, n, k, ws->bf16 ? dnnl_bf16 : dnnl_f32,
                  a, ta ? m : k, ta, b, tb ? k : n, tb, bias, c, n, 0};
    return duet_mm_run(&ws->mm, &op, err);
}

typedef struct colsum_job {
    const float *x;
    float *out;
    size_t n, c;
} colsum_job;

static void colsum_cols(void *ctx, size_t c0, size_t c1) {
    colsum_job *j = ctx;
    for (size_t c = c0; c < c1; c++) j->out[c] = 0.0f;
    for (size_t r = 0; r < j->n; r++)
        for (size_t c = c0; c < c1; c++) j->out[c] += j->x[r * j->c + c];
}

/* out [c] = the column sums of x [n x c]. */
static void col_sums(const float *x, size_t n, size_t c, float *out) {
    colsum_job j = {x, out, n, c};
    duet_embed_parallel_for(c, n, colsum_cols, &j);
}

/* The bf16 weights of a pass: w's own copies, or W1 and W2 converted into
 * ws->wb (W1 first). */
static duet_status bf16_weights(const duet_branch *b, const duet_bparams *w,
                                duet_branch_ws *ws, const uint16_t **w1,
                                const uint16_t **w2) {
    size_t n1 = b->d_in * (b->linear ? b->out : b->hidden);
    size_t n2 = b->linear ? 0 : b->hidden * b->out;
    *w1 = w->W1h;
    *w2 = w->W2h;
    if (*w1 && (*w2 || b->linear)) return DUET_OK;
    if (!ws->wb && !(ws->wb = duet_embed_alloc(n1 + n2, sizeof(uint16_t), 0)))
        return duet_fail(&ws->err, DUET_ERR_NOMEM, "branch: out of memory for bf16 weights");
    duet_embed_bf16_rows(w->W1, b->d_in, n1 / b->d_in, ws->wb);
    if (n2) duet_embed_bf16_rows(w->W2, b->hidden, b->out, ws->wb + n1);
    *w1 = ws->wb;
    *w2 = n2 ? ws->wb + n1 : NULL;
    return DUET_OK;
}

/* The element-wise kernels below run on duet_embed_parallel_for: rows or column
 * ranges split into one contiguous chunk per thread. Each chunk computes the
 * same values whatever the split, so results do not depend on the thread
 * count. */

typedef struct rows_job {
    float *z;               /* [n x o] rows to normalize / normalized rows  */
    const float *de;        /* [n x o] gradient w.r.t. the normalized rows  */
    float *dz;              /* [n x o] out: gradient w.r.t. z               */
    float *inv_norm;        /* [n]                                          */
    uint16_t *dzb;          /* [n x o] bf16 copy of dz, or NULL             */
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
        if (j->dzb) duet_f32_to_bf16(j->dz + r * j->o, j->dzb + r * j->o, j->o);
    }
}

static void l2_normalize_rows(float *z, size_t n, size_t o, float *inv_norm) {
    rows_job j = {z, NULL, NULL, inv_norm, NULL, o};
    duet_embed_parallel_for(n, 2 * o, l2_rows, &j);
}

static void l2_normalize_backward(const float *e, const float *de,
                                  const float *inv_norm, size_t n, size_t o,
                                  float *dz, uint16_t *dzb) {
    rows_job j = {(float *)e, de, dz, (float *)inv_norm, dzb, o};
    duet_embed_parallel_for(n, 3 * o, l2_rows_backward, &j);
}

duet_status duet_branch_forward(const duet_branch *b, const duet_bparams *w,
                                duet_bnstats *bn, const duet_params *p,
                                const float *x, size_t n, int train, duet_rng *rng,
                                const float *mask_override, duet_branch_ws *ws) {
    size_t d = b->d_in, h = b->hidden, o = b->out, np = padded(ws, n);
    const void *xa = x, *w1 = w->W1, *w2 = w->W2;
    duet_error *err = &ws->err;
    if (ws->bf16) {
        const uint16_t *h1, *h2;
        duet_status st = bf16_weights(b, w, ws, &h1, &h2);
        if (st) return st;
        if (x) duet_embed_bf16_rows(x, n, d, ws->xb);
        xa = ws->xb;
        w1 = h1;
        w2 = h2;
    }
    if (b->linear) {
        duet_status st = product(ws, np, o, d, xa, 0, w1, 0, w->b1, ws->e, err); /* [n x o] */
        if (st) return st;
    } else {
        duet_status st = product(ws, np, h, d, xa, 0, w1, 0, w->b1, ws->xh, err); /* [n x h] */
        if (st) return st;
        if ((st = duet_bn_forward(w, bn, p, n, h, train, rng, mask_override, ws))) return st;
        st = product(ws, np, o, h, ws->bf16 ? (const void *)ws->hb : ws->d, 0, w2, 0,
                     w->b2, ws->e, err);                                         /* [n x o] */
        if (st) return st;
    }
    l2_normalize_rows(ws->e, n, o, ws->inv_norm);
    return DUET_OK;
}

/* Data-parallel training: starts summing n gradients at g over the ranks. */
static duet_status reduce(duet_branch_ws *ws, float *g, size_t n) {
    return duet_comm_size(ws->comm) > 1 ? duet_comm_allreduce_start(ws->comm, g, n, &ws->err) : DUET_OK;
}

duet_status duet_branch_backward(const duet_branch *b, const duet_bparams *w,
                                 const float *x, size_t n, const float *dE,
                                 duet_bparams *g, duet_branch_ws *ws) {
    size_t d = b->d_in, h = b->hidden, o = b->out, np = padded(ws, n);
    int bf = ws->bf16;
    duet_error *err = &ws->err;
    const void *xa = bf ? (const void *)ws->xb : x;
    const void *dz2 = bf ? (const void *)ws->ob : ws->de;
    l2_normalize_backward(ws->e, dE, ws->inv_norm, n, o, ws->de, bf ? ws->ob : NULL); /* dZ2 */
    if (bf) { /* the padding rows the sums below run over: zero */
        memset(ws->ob + n * o, 0, (np - n) * o * sizeof(uint16_t));
        if (!b->linear) memset(ws->hb + n * h, 0, (np - n) * h * sizeof(uint16_t));
    }
    if (b->linear) { /* dW1 = X^T dZ, db1 = sums of dZ */
        col_sums(ws->de, n, o, g->b1);
        duet_status st = product(ws, d, o, np, xa, 1, dz2, 0, NULL, g->W1, err);
        return st ? st : reduce(ws, g->W1, d * o + o);
    }
    /* dW2 [h x o] = D^T dZ2, db2 = sums of dZ2, dD [n x h] = dZ2 W2^T */
    duet_status st = product(ws, h, o, np, bf ? (const void *)ws->hb : ws->d, 1, dz2, 0, NULL, g->W2, err);
    col_sums(ws->de, n, o, g->b2);
    const void *w2 = w->W2;
    if (bf) w2 = w->W2h ? w->W2h : ws->wb + d * h; /* as converted by the forward pass */
    if (!st) st = reduce(ws, g->W2, h * o + o);                  /* W2, b2: adjacent */
    if (!st) st = product(ws, np, h, o, dz2, 0, w2, 1, NULL, ws->dd, err);
    if (!st) st = duet_bn_backward(w, g, n, h, ws);               /* dZ1, dgamma, dbeta, db1 */
    if (!st) st = product(ws, d, h, np, xa, 1, bf ? (const void *)ws->hb : ws->dd, 0, NULL, g->W1, err);
    return st ? st : reduce(ws, g->W1, d * h + h);                  /* W1, b1: adjacent */
}
