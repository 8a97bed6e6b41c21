/* pca_rand.c -- the randomized PCA (Halko, Martinsson, Tropp 2011,
 * algorithm 4.4, subspace iteration), every large step a matrix product on
 * oneDNN in the run's precision (f32, or bf16 inputs with f32 accumulation;
 * pca_la.c):
 *
 *   1. the covariance C [d x d] of the centred data: the tiles on and above
 *      the diagonal, blocks of rows accumulated, then mirrored;
 *   2. Y = C Omega (Omega Gaussian [d x l], l = dout + p), then q times
 *      Y = C LU(Y);
 *   3. Q = orth(Y): LU, then CholeskyQR2 in f32 (Householder QR when the
 *      Cholesky factorization breaks down, or by option);
 *   4. Z = C Q: the variance along each column, q_j . z_j, orders the
 *      columns; when l is small, Rayleigh-Ritz on Q^T Z instead.
 *
 * The products keep one plan per shape (pca_la.c). */
#include "pca_la.h"
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NB 2048   /* rows of x per covariance block */
#define TB 64     /* transposition tile             */

/* CPU seconds of the process (every thread). */
static double cpu_seconds(void) { return (double)clock() / CLOCKS_PER_SEC; }

duet_pca_opts duet_pca_default_opts(void) {
    duet_pca_opts o = {.power_iters = 2, .oversample = 0, .ritz_max = 1024, .prec = DUET_PRECISION_F32, .seed = 1,
                       .orth = DUET_PCA_ORTH_CHOLQR, .times = NULL, .cpu_times = NULL,
                       .passes = NULL};
    return o;
}

/* What the fit works on: the covariance C [d x d] (both triangles) in f32
 * and, for bf16 products, its bf16 copy; a bf16 copy of the left factor. */
typedef struct rpca {
    size_t n, d, l;
    dnnl_data_type_t dt;
    float *cov;
    uint16_t *cov_h, *qh;
    duet_pca_la la;
} rpca;

/* Yt [l x d] = Qt [l x d] C: the transpose of Y = C Q (C symmetric). */
static duet_status cmul(rpca *r, const float *Qt, float *Yt, duet_error *err) {
    size_t d = r->d, l = r->l;
    if (r->dt == dnnl_f32) return duet_pca_mul(&r->la, dnnl_f32, l, d, d, Qt, d, r->cov, d, Yt, d, err);
    duet_status st = duet_dnn_to_bf16(&r->la.dnn, Qt, r->qh, l * d, err);
    return st ? st : duet_pca_mul(&r->la, dnnl_bf16, l, d, d, r->qh, d, r->cov_h, d, Yt, d, err);
}

/* bt [d x nb] (dt) = the transpose of rows b0.. of x, centred on m and
 * scaled by s; blk [d x nb] f32 scratch. Rows j of bt are made on the
 * threads of duet_parallel_for. */
typedef struct cblock {
    const float *x;
    const double *m;
    size_t b0, nb, d;
    float s, *blk;
    void *bt;
    dnnl_data_type_t dt;
} cblock;
static void centred_rows(void *ctx, size_t j0, size_t j1) {
    const cblock *c = ctx;
    for (size_t i0 = 0; i0 < c->nb; i0 += TB)
        for (size_t jt = j0; jt < j1; jt += TB) {
            size_t i1 = i0 + TB < c->nb ? i0 + TB : c->nb, jt1 = jt + TB < j1 ? jt + TB : j1;
            for (size_t i = i0; i < i1; i++) {
                const float *row = c->x + (c->b0 + i) * c->d;
                for (size_t j = jt; j < jt1; j++) c->blk[j * c->nb + i] = (float)(row[j] - c->m[j]) * c->s;
            }
        }
    if (c->dt == dnnl_bf16) duet_f32_to_bf16(c->blk + j0 * c->nb, (uint16_t *)c->bt + j0 * c->nb, (j1 - j0) * c->nb);
}

/* r->cov = the covariance of x [n x d] about m (both triangles); for bf16,
 * also r->cov_h. */
static duet_status covariance(rpca *r, const float *x, const double *m, duet_error *err) {
    size_t d = r->d, n = r->n, nb0 = n < NB ? n : NB;
    float *blk = duet_alloc_array(nb0, d * sizeof(float));
    uint16_t *bh = r->dt == dnnl_bf16 ? duet_alloc_array(nb0, d * sizeof(uint16_t)) : NULL;
    duet_status st = !blk || (r->dt == dnnl_bf16 && !bh) ? duet_fail(err, DUET_ERR_NOMEM, "pca: out of memory") : DUET_OK;
    float s = 1.0f / sqrtf((float)(n - 1));
    for (size_t b0 = 0; !st && b0 < n; b0 += NB) {
        size_t nb = n - b0 < NB ? n - b0 : NB;
        cblock cb = {x, m, b0, nb, d, s, blk, bh, r->dt};
        duet_parallel_for(d, TB, centred_rows, &cb);
        st = duet_pca_syrk_upper(&r->la, r->dt, d, nb, bh ? (const void *)bh : blk, nb, r->cov, d, err);
    }
    free(blk);
    free(bh);
    /* mirror the upper triangle, by tiles */
    for (size_t i0 = 0; !st && i0 < d; i0 += TB)
        for (size_t j0 = 0; j0 <= i0; j0 += TB)
            for (size_t i = i0; i < i0 + TB && i < d; i++)
                for (size_t j = j0; j < j0 + TB && j < i; j++) r->cov[i * d + j] = r->cov[j * d + i];
    if (!st && r->dt == dnnl_bf16) st = duet_dnn_to_bf16(&r->la.dnn, r->cov, r->cov_h, d * d, err);
    return st;
}

/* Rayleigh-Ritz in span(Q): B = Q^T Z [l x l], its eigenvectors V (LAPACK
 * ssyevd: divide and conquer, whose vectors are orthogonal to working
 * precision; MRRR's lost 1e-3 here); Qt becomes V^T Qt (the Ritz vectors,
 * ascending), rq their values, ord the descending order. yt is scratch. */
static duet_status ritz(float **qt, float **yt, size_t d, size_t l, float *rq, size_t *ord, duet_error *err) {
    float *B = duet_alloc_array(l, l * sizeof(float));
    if (!B) return duet_fail(err, DUET_ERR_NOMEM, "pca: out of memory");
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)l, (int)l, (int)d, 1.0f, *qt, (int)d, *yt, (int)d, 0.0f,
                B, (int)l);
    lapack_int info = LAPACKE_ssyevd(LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int)l, B, (lapack_int)l, rq);
    if (info) {
        free(B);
        return duet_fail(err, DUET_ERR_NONFINITE, "pca: LAPACK ssyevd of the %zu x %zu Ritz matrix failed (info %d)", l,
                         l, (int)info);
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)l, (int)d, (int)l, 1.0f, B, (int)l, *qt, (int)d, 0.0f,
                *yt, (int)d);
    float *t = *qt; *qt = *yt; *yt = t;
    for (size_t c = 0; c < l; c++) ord[c] = l - 1 - c;
    free(B);
    return DUET_OK;
}

/* rq[c] = q_c . z_c (the variance along column c), ord by decreasing rq. */
static void quotients(const float *qt, const float *zt, size_t d, size_t l, float *rq, size_t *ord) {
    for (size_t c = 0; c < l; c++) {
        double s = 0;
        for (size_t j = 0; j < d; j++) s += (double)qt[c * d + j] * zt[c * d + j];
        rq[c] = (float)s;
        ord[c] = c;
    }
    for (size_t a = 1; a < l; a++) {   /* insertion sort: nearly sorted */
        size_t v = ord[a], b = a;
        for (; b > 0 && rq[ord[b - 1]] < rq[v]; b--) ord[b] = ord[b - 1];
        ord[b] = v;
    }
}

duet_status duet_pca_fit_randomized(const float *x, size_t n, size_t din, size_t dout, const duet_pca_opts *o,
                                    float *mean, float *basis, float *var, duet_error *err) {
    if (n < 2) return duet_fail(err, DUET_ERR_EMPTY, "pca: %zu samples (need 2 or more)", n);
    if (dout < 1 || dout > din) return duet_fail(err, DUET_ERR_INVALID_ARG, "pca: %zu components of a %zu-D input", dout, din);
    if (din > 65535) return duet_fail(err, DUET_ERR_INVALID_ARG, "pca: input dimension %zu too large", din);
    if (o->power_iters < 0 || o->power_iters > 100) return duet_fail(err, DUET_ERR_INVALID_ARG, "pca: %d power iterations (0..100)", o->power_iters);
    if (o->orth != DUET_PCA_ORTH_CHOLQR && o->orth != DUET_PCA_ORTH_HOUSEHOLDER)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "pca: unknown orthonormalization %d", o->orth);
    size_t p = o->oversample ? o->oversample : (dout / 50 > 10 ? dout / 50 : 10);
    size_t d = din, l = dout + p < din ? dout + p : din;
    rpca r;
    memset(&r, 0, sizeof r);
    r.n = n; r.d = d; r.l = l;
    duet_status st = duet_pca_la_init(&r.la, o->prec, err);
    if (st) return st;
    r.dt = duet_dnn_dt(r.la.dnn.prec);
    int bf = r.dt == dnnl_bf16;
    double *m = calloc(d, sizeof(double));
    r.cov = duet_calloc_array(d, d * sizeof(float));
    float *qt = duet_alloc_array(l, d * sizeof(float)), *yt = duet_alloc_array(l, d * sizeof(float));
    float *rq = duet_alloc_array(l, sizeof(float));
    size_t *ord = duet_alloc_array(l, sizeof(size_t));
    int *ipiv = duet_alloc_array(l, sizeof(int)), passes = 0;
    if (bf) {
        r.cov_h = duet_alloc_array(d, d * sizeof(uint16_t));
        r.qh = duet_alloc_array(l, d * sizeof(uint16_t));
    }
    if (!m || !r.cov || !qt || !yt || !rq || !ord || !ipiv || (bf && (!r.cov_h || !r.qh))) {
        st = duet_fail(err, DUET_ERR_NOMEM, "pca: out of memory (%zu x %zu covariance, %zu x %zu subspace)", d, d, d, l);
        goto done;
    }
    double tm[DUET_PCA_PHASES] = {0}, cm[DUET_PCA_PHASES] = {0}, t0 = duet_now(), t1, c0 = cpu_seconds(), c1;
#define PHASE(i) (t1 = duet_now(), tm[i] += t1 - t0, t0 = t1, c1 = cpu_seconds(), cm[i] += c1 - c0, c0 = c1)
    duet_pca_mean(x, n, d, m, mean);
    for (size_t j = 0; j < d; j++)   /* a NaN or Inf anywhere makes its column's mean one */
        if (!isfinite(m[j])) { st = duet_fail(err, DUET_ERR_NONFINITE, "pca: column %zu of the input holds NaN or Inf", j); goto done; }
    if ((st = covariance(&r, x, m, err))) goto done;
    PHASE(0);
    /* Q = orth(C (LU C)^q Omega), Omega Gaussian [d x l] (seeded) */
    duet_rng rng;
    duet_rng_seed(&rng, o->seed);
    for (size_t i = 0; i < l * d; i++) qt[i] = duet_rng_normal(&rng);
    for (int it = 0; it <= o->power_iters; it++) {
        if ((st = cmul(&r, qt, yt, err))) goto done;
        PHASE(1);
        if (it < o->power_iters) {
            if ((st = duet_pca_lu(yt, d, l, ipiv, err))) goto done;
            PHASE(2);
        } else {
            if ((st = duet_pca_orthonormalize(yt, d, l, o->orth, ipiv, &passes, err))) goto done;
            PHASE(3);
        }
        float *t = qt; qt = yt; yt = t;
    }
    /* Z = C Q; the variance along q_j is q_j . z_j */
    if ((st = cmul(&r, qt, yt, err))) goto done;
    PHASE(1);
    if (l <= o->ritz_max) st = ritz(&qt, &yt, d, l, rq, ord, err);
    else quotients(qt, yt, d, l, rq, ord);
    if (st) goto done;
    for (size_t c = 0; c < dout; c++) {   /* sign: largest entry positive */
        const float *q = qt + ord[c] * d;
        float big = 0;
        for (size_t j = 0; j < d; j++) if (fabsf(q[j]) > fabsf(big)) big = q[j];
        if (var) var[c] = rq[ord[c]];
        if (big < 0) for (size_t j = 0; j < d; j++) qt[ord[c] * d + j] = -q[j];
    }
    for (size_t j0 = 0; j0 < d; j0 += TB)   /* basis [d x dout]: by tiles */
        for (size_t k0 = 0; k0 < dout; k0 += TB)
            for (size_t j = j0; j < j0 + TB && j < d; j++)
                for (size_t c = k0; c < k0 + TB && c < dout; c++) basis[j * dout + c] = qt[ord[c] * d + j];
    PHASE(4);
    if (o->times) memcpy(o->times, tm, sizeof tm);
    if (o->cpu_times) memcpy(o->cpu_times, cm, sizeof cm);
    if (o->passes) *o->passes = passes;
#undef PHASE
done:
    free(m); free(r.cov); free(r.cov_h); free(r.qh); free(qt); free(yt); free(rq); free(ord); free(ipiv);
    duet_pca_la_fini(&r.la);
    return st;
}
