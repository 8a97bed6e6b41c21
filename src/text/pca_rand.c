/* pca_rand.c -- the randomized PCA (Halko, Martinsson, Tropp 2011,
 * algorithm 4.4, subspace iteration), every large step a matrix product on
 * oneDNN in the run's precision (f32, or bf16 inputs with f32 accumulation;
 * pca_la.c):
 *
 *   1. the covariance C [d x d] of the centred data: the tiles on and above
 *      the diagonal, each a product over a whole block of samples (all of
 *      them where they fit), then mirrored;
 *   2. Y = C Omega (Omega [d x l], l = dout + p: Gaussian, or samples),
 *      then q times Y = C LU(Y);
 *   3. Q = orth(Y): LU, then CholeskyQR2 in f32 (Householder QR when the
 *      Cholesky factorization breaks down, or by option);
 *   4. Z = C Q: the variance along each column, q_j . z_j, orders the
 *      columns; when l is small, Rayleigh-Ritz on Q^T Z instead.
 *
 * The products keep one plan per shape (pca_la.c). Memory: one slab for
 * every large array, or, in place, the input's own bytes (bf16). Timings
 * and the reasons for each choice: docs/RUN.md, "the PCA in under 20 s". */
#include "pca_la.h"
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BLOCK_BYTES ((size_t)1 << 30) /* a centred block of samples, at most
                                         (duet_pca_opts.block_bytes)        */
#define TB 64                         /* transposition tile                 */

/* CPU seconds of the process (every thread). */
static double cpu_seconds(void) { return (double)clock() / CLOCKS_PER_SEC; }

duet_pca_opts duet_pca_default_opts(void) {
    duet_pca_opts o = {.power_iters = 2, .oversample = 0, .ritz_max = 1024, .prec = DUET_PRECISION_F32, .seed = 1,
                       .orth = DUET_PCA_ORTH_CHOLQR, .times = NULL, .cpu_times = NULL,
                       .passes = NULL};
    return o;
}

/* What the fit works on. Every large array is a view of one slab, made
 * once (a first touch of fresh memory costs up to 2.5 s per GB on the
 * Firecracker machine), or of the input's bytes (in place). In the slab,
 * the covariance the products use stays at its start; behind it, the
 * covariance phase's scratch (a centred block of samples; for bf16 over
 * several blocks, the f32 sums) and then the iterations' arrays take the
 * same bytes in turn. */
typedef struct rpca {
    size_t n, d, l, nb0;   /* nb0: samples per covariance block           */
    dnnl_data_type_t dt;
    char *slab;
    float *cov;            /* f32 covariance (f32 products; bf16 over
                              several blocks: the sums, covariance phase)  */
    uint16_t *cov_h;       /* bf16 covariance (bf16 products)              */
    void *bt;              /* a centred, transposed block [d x nb0]        */
    float *qt, *yt;        /* the subspace [l x d] and its product         */
    uint16_t *qh;          /* bf16 copy of qt                              */
    duet_pca_la la;
} rpca;

static size_t round_page(size_t b) { return (b + 4095) / 4096 * 4096; }

/* Lays out and allocates r->slab (populated) for r->n, d, l, dt and
 * blocks of at most block_bytes (0: BLOCK_BYTES). */
static duet_status slab_make(rpca *r, size_t block_bytes, duet_error *err) {
    size_t d = r->d, l = r->l, es = r->dt == dnnl_bf16 ? 2 : 4;
    r->nb0 = (block_bytes ? block_bytes : BLOCK_BYTES) / (d * es);
    if (r->nb0 < 256) r->nb0 = 256;
    if (r->nb0 > r->n) r->nb0 = r->n;
    int sums = r->dt == dnnl_bf16 && r->nb0 < r->n;   /* bf16 over several blocks: f32 sums */
    size_t keep = round_page(d * d * es), bt = round_page(r->nb0 * d * es);
    size_t a = bt + (sums ? round_page(d * d * sizeof(float)) : 0);
    size_t b = 2 * round_page(l * d * sizeof(float)) + (es == 2 ? round_page(l * d * 2) : 0);
    size_t total = keep + (a > b ? a : b);
    r->slab = duet_alloc_populated(total, 1);
    if (!r->slab)
        return duet_fail(err, DUET_ERR_NOMEM, "pca: out of memory (%.2f GB: %zu x %zu covariance, %zu x %zu "
                         "samples, %zu x %zu subspace)", (double)total / 1e9, d, d, r->nb0, d, d, l);
    char *s = r->slab;
    if (es == 2) r->cov_h = (uint16_t *)s;
    else r->cov = (float *)s;
    r->bt = s + keep;
    if (sums) r->cov = (float *)(s + keep + bt);
    r->qt = (float *)(s + keep);
    r->yt = (float *)(s + keep + round_page(l * d * sizeof(float)));
    if (es == 2) r->qh = (uint16_t *)(s + keep + 2 * round_page(l * d * sizeof(float)));
    return DUET_OK;
}

/* Yt [l x d] = Qt [l x d] C: the transpose of Y = C Q (C symmetric). */
static duet_status cmul(rpca *r, const float *Qt, float *Yt, duet_error *err) {
    size_t d = r->d, l = r->l;
    if (r->dt == dnnl_f32) return duet_pca_mul(&r->la, dnnl_f32, l, d, d, Qt, d, r->cov, d, Yt, d, err);
    duet_status st = duet_dnn_to_bf16(&r->la.dnn, Qt, r->qh, l * d, err);
    return st ? st : duet_pca_mul(&r->la, dnnl_bf16, l, d, d, r->qh, d, r->cov_h, d, Yt, d, err);
}

/* bt [d x nb] (dt) = rows b0.. of x (nb of them), centred on m, scaled by
 * s and transposed, by tiles of TB x TB; rows j0..j1 of bt are made on
 * one thread of duet_parallel_for. */
typedef struct cblock {
    const float *x;
    const double *m;
    size_t b0, nb, d;
    float s;
    void *bt;
    dnnl_data_type_t dt;
} cblock;
/* t [jn] = (row - m) * s, the subtraction in double; inlined into both the
 * baseline and the AVX-512 build of its callers (a constant trip count
 * for whole tiles: vectorized at -O2). */
static inline __attribute__((always_inline)) void centre(float *t, const float *row, const double *m, float s,
                                                          size_t jn) {
    if (jn == TB) for (size_t j = 0; j < TB; j++) t[j] = (float)(row[j] - m[j]) * s;
    else for (size_t j = 0; j < jn; j++) t[j] = (float)(row[j] - m[j]) * s;
}

static inline __attribute__((always_inline)) void centred_rows_body(const cblock *c, size_t j0, size_t j1) {
    float a[TB * TB], t[TB * TB];
    for (size_t jt = j0; jt < j1; jt += TB) {
        size_t jn = j1 - jt < TB ? j1 - jt : TB;
        for (size_t i0 = 0; i0 < c->nb; i0 += TB) {
            size_t in = c->nb - i0 < TB ? c->nb - i0 : TB;
            for (size_t i = 0; i < in; i++)     /* a [in x jn]: centred, along the rows of x */
                centre(a + i * TB, c->x + (c->b0 + i0 + i) * c->d + jt, c->m + jt, c->s, jn);
            for (size_t j = 0; j < jn; j++)     /* t [jn x in]: its transpose, in L1 */
                for (size_t i = 0; i < in; i++) t[j * TB + i] = a[i * TB + j];
            for (size_t j = 0; j < jn; j++) {
                size_t o = (jt + j) * c->nb + i0;
                if (c->dt == dnnl_bf16) duet_f32_to_bf16(t + j * TB, (uint16_t *)c->bt + o, in);
                else memcpy((float *)c->bt + o, t + j * TB, in * sizeof(float));
            }
        }
    }
}
/* The same loops compiled for AVX-512 where the CPU has it (1.05 s ->
 * 0.59 s for 30,000 x 12,000 on the AMX machine against the baseline SSE2
 * build), for the baseline elsewhere. */
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f"))) static void centred_rows_avx512(const cblock *c, size_t j0, size_t j1) {
    centred_rows_body(c, j0, j1);
}
#endif
static void centred_rows(void *ctx, size_t j0, size_t j1) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx512f")) { centred_rows_avx512(ctx, j0, j1); return; }
#endif
    centred_rows_body(ctx, j0, j1);
}

/* The lower triangle of c [d x d] (elements of es bytes) = the upper one
 * transposed, by tiles. */
static void mirror(void *c, size_t d, size_t es) {
    for (size_t i0 = 0; i0 < d; i0 += TB)
        for (size_t j0 = 0; j0 <= i0; j0 += TB)
            for (size_t i = i0; i < i0 + TB && i < d; i++)
                for (size_t j = j0; j < j0 + TB && j < i; j++) {
                    if (es == 2) ((uint16_t *)c)[i * d + j] = ((uint16_t *)c)[j * d + i];
                    else ((float *)c)[i * d + j] = ((float *)c)[j * d + i];
                }
}

/* In place (duet_pca_fit_randomized_in_place): the samples centred,
 * scaled and rounded to bf16 over the first half of x's own bytes, row by
 * row from the first element on (element e is written at byte 2e, whose
 * f32 was read before: one thread), the covariance formed from them (the
 * tiles' left factor their transposed view) into the end of x's bytes, the
 * iterations' arrays at its start once the samples are spent: no fresh
 * memory. Only for bf16, n >= d and a start other than samples, when it
 * all fits in n d floats. */
static int in_place_fits(const rpca *r, int start) {
    size_t d = r->d, l = r->l, need = 2 * round_page(l * d * 4) + round_page(l * d * 2) + round_page(d * d * 2);
    return r->dt == dnnl_bf16 && start != DUET_PCA_START_SAMPLES && r->n >= r->d && need <= r->n * d * 4;
}
static void in_place_views(rpca *r, float *x) {
    size_t d = r->d, l = r->l;
    char *s = (char *)x;
    r->cov_h = (uint16_t *)(s + (r->n * d * 4 - d * d * 2) / 64 * 64);
    r->qt = (float *)s;
    r->yt = (float *)(s + round_page(l * d * 4));
    r->qh = (uint16_t *)(s + 2 * round_page(l * d * 4));
}
static inline __attribute__((always_inline)) void to_bf16_rows_body(float *x, size_t n, size_t d, const double *m,
                                                                   float s) {
    uint16_t *y = (uint16_t *)x;
    float t[TB];
    for (size_t i = 0; i < n; i++)
        for (size_t j0 = 0; j0 < d; j0 += TB) {
            size_t jn = d - j0 < TB ? d - j0 : TB;
            centre(t, x + i * d + j0, m + j0, s, jn);
            duet_f32_to_bf16(t, y + i * d + j0, jn);
        }
}
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f"))) static void to_bf16_rows_avx512(float *x, size_t n, size_t d, const double *m,
                                                                    float s) {
    to_bf16_rows_body(x, n, d, m, s);
}
#endif
static duet_status covariance_in_place(rpca *r, float *x, const double *m, duet_error *err) {
    size_t d = r->d, n = r->n;
    float s = 1.0f / sqrtf((float)(n - 1));
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx512f")) to_bf16_rows_avx512(x, n, d, m, s);
    else
#endif
        to_bf16_rows_body(x, n, d, m, s);
    duet_status st = duet_pca_syrk_upper(&r->la, dnnl_bf16, dnnl_bf16, d, n, x, d, 1, 0, r->cov_h, d, err);
    if (!st) mirror(r->cov_h, d, 2);
    return st;
}

/* The covariance of x [n x d] about m, both triangles, into r->cov (f32)
 * or r->cov_h (bf16): blocks of samples, each centred and transposed into
 * r->bt, times themselves on the upper tiles over the block's whole
 * length. bf16 in one block: the tiles round their f32 sums to bf16 as
 * they write them; over several blocks: f32 sums in r->cov, then rounded. */
static duet_status covariance(rpca *r, const float *x, const double *m, duet_error *err) {
    size_t d = r->d, n = r->n, nb0 = r->nb0;
    int one = nb0 == n, bf = r->dt == dnnl_bf16;
    duet_status st = DUET_OK;
    float s = 1.0f / sqrtf((float)(n - 1));
    for (size_t b0 = 0; !st && b0 < n; b0 += nb0) {
        size_t nb = n - b0 < nb0 ? n - b0 : nb0;
        cblock cb = {x, m, b0, nb, d, s, r->bt, r->dt};
        duet_parallel_for(d, TB, centred_rows, &cb);
        st = bf && one ? duet_pca_syrk_upper(&r->la, r->dt, dnnl_bf16, d, nb, r->bt, nb, 0, 0, r->cov_h, d, err)
                       : duet_pca_syrk_upper(&r->la, r->dt, dnnl_f32, d, nb, r->bt, nb, 0, b0 > 0, r->cov, d, err);
    }
    if (!st && bf && !one) st = duet_dnn_to_bf16(&r->la.dnn, r->cov, r->cov_h, d * d, err);
    if (!st) mirror(bf ? (void *)r->cov_h : (void *)r->cov, d, bf ? 2 : 4);
    if (bf) r->cov = NULL;   /* its bytes go to the iterations */
    return st;
}

/* Rows r0..r1 of the Gaussian start Omega^T [l x d]: row c from its own
 * stream, seeded by the c-th draw of the seed's stream, so the start does
 * not depend on the number of threads; normals by Marsaglia's polar
 * method (two per accepted pair). */
typedef struct gauss_job { float *qt; size_t d; const uint64_t *seeds; } gauss_job;
static void gaussian_rows(void *ctx, size_t r0, size_t r1) {
    const gauss_job *g = ctx;
    for (size_t c = r0; c < r1; c++) {
        duet_rng rng;
        duet_rng_seed(&rng, g->seeds[c]);
        float *q = g->qt + c * g->d;
        for (size_t j = 0; j < g->d;) {
            double u = (double)(duet_rng_u64(&rng) >> 11) * (2.0 / 9007199254740992.0) - 1.0;
            double v = (double)(duet_rng_u64(&rng) >> 11) * (2.0 / 9007199254740992.0) - 1.0;
            double w = u * u + v * v;
            if (w >= 1.0 || w == 0.0) continue;
            double f = sqrt(-2.0 * log(w) / w);
            q[j++] = (float)(u * f);
            if (j < g->d) q[j++] = (float)(v * f);
        }
    }
}
static duet_status gaussian_start(float *qt, size_t l, size_t d, uint64_t seed, duet_error *err) {
    uint64_t *seeds = duet_alloc_array(l, sizeof(uint64_t));
    if (!seeds) return duet_fail(err, DUET_ERR_NOMEM, "pca: out of memory");
    duet_rng rng;
    duet_rng_seed(&rng, seed);
    for (size_t c = 0; c < l; c++) seeds[c] = duet_rng_u64(&rng);
    gauss_job g = {qt, d, seeds};
    duet_parallel_for(l, 16, gaussian_rows, &g);
    free(seeds);
    return DUET_OK;
}

/* Rows c0..c1 of the start = centred samples idx[c] of x. */
typedef struct sample_job { float *qt; const float *x; const double *m; size_t d; const size_t *idx; } sample_job;
static void sample_rows(void *ctx, size_t c0, size_t c1) {
    const sample_job *g = ctx;
    for (size_t c = c0; c < c1; c++) {
        const float *row = g->x + g->idx[c] * g->d;
        for (size_t j = 0; j < g->d; j++) g->qt[c * g->d + j] = (float)(row[j] - g->m[j]);
    }
}
/* qt [l x d] = min(n, l) centred samples of x [n x d], drawn without
 * replacement (a partial Fisher-Yates shuffle on the seed's stream); the
 * rest, when n < l, Gaussian. */
static duet_status sample_start(float *qt, size_t l, size_t d, const float *x, size_t n, const double *m,
                                uint64_t seed, duet_error *err) {
    size_t *idx = duet_alloc_array(n, sizeof(size_t)), k = n < l ? n : l;
    if (!idx) return duet_fail(err, DUET_ERR_NOMEM, "pca: out of memory");
    duet_rng rng;
    duet_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) idx[i] = i;
    for (size_t i = 0; i < k; i++) {
        size_t j = i + (size_t)duet_rng_below(&rng, n - i), t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
    sample_job g = {qt, x, m, d, idx};
    duet_parallel_for(k, 16, sample_rows, &g);
    free(idx);
    return k < l ? gaussian_start(qt + k * d, l - k, d, seed + 1, err) : DUET_OK;
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

/* The output: columns ord[0..dout) of the subspace (rows of qt [l x d]),
 * each signed so that its largest entry is positive (out_signs, by
 * columns), then written as basis [d x dout] (out_rows, by rows of
 * basis, in tiles). */
typedef struct out_job { float *qt; size_t d, dout; const size_t *ord; float *basis; } out_job;
static void out_signs(void *ctx, size_t c0, size_t c1) {
    const out_job *o = ctx;
    for (size_t c = c0; c < c1; c++) {
        float *q = o->qt + o->ord[c] * o->d, big = 0;
        for (size_t j = 0; j < o->d; j++) if (fabsf(q[j]) > fabsf(big)) big = q[j];
        if (big < 0) for (size_t j = 0; j < o->d; j++) q[j] = -q[j];
    }
}
static void out_rows(void *ctx, size_t j0, size_t j1) {
    const out_job *o = ctx;
    for (size_t jt = j0; jt < j1; jt += TB)
        for (size_t k0 = 0; k0 < o->dout; k0 += TB)
            for (size_t j = jt; j < jt + TB && j < j1; j++)
                for (size_t c = k0; c < k0 + TB && c < o->dout; c++) o->basis[j * o->dout + c] = o->qt[o->ord[c] * o->d + j];
}

/* The fit; xw: x itself, writable (the in-place entry), or NULL. */
static duet_status fit(const float *x, float *xw, size_t n, size_t din, size_t dout, const duet_pca_opts *o,
                       float *mean, float *basis, float *var, duet_error *err) {
    if (n < 2) return duet_fail(err, DUET_ERR_EMPTY, "pca: %zu samples (need 2 or more)", n);
    if (dout < 1 || dout > din) return duet_fail(err, DUET_ERR_INVALID_ARG, "pca: %zu components of a %zu-D input", dout, din);
    if (din > 65535) return duet_fail(err, DUET_ERR_INVALID_ARG, "pca: input dimension %zu too large", din);
    if (o->power_iters < 0 || o->power_iters > 100) return duet_fail(err, DUET_ERR_INVALID_ARG, "pca: %d power iterations (0..100)", o->power_iters);
    if (o->orth != DUET_PCA_ORTH_CHOLQR && o->orth != DUET_PCA_ORTH_HOUSEHOLDER)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "pca: unknown orthonormalization %d", o->orth);
    if (o->start != DUET_PCA_START_GAUSSIAN && o->start != DUET_PCA_START_SAMPLES)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "pca: unknown start %d", o->start);
    size_t p = o->oversample ? o->oversample : (dout / 50 > 10 ? dout / 50 : 10);
    size_t d = din, l = dout + p < din ? dout + p : din;
    rpca r;
    memset(&r, 0, sizeof r);
    r.n = n; r.d = d; r.l = l;
    duet_status st = duet_pca_la_init(&r.la, o->prec, err);
    if (st) return st;
    r.dt = duet_dnn_dt(r.la.dnn.prec);
    double *m = calloc(d, sizeof(double));
    float *rq = duet_alloc_array(l, sizeof(float));
    size_t *ord = duet_alloc_array(l, sizeof(size_t));
    int *ipiv = duet_alloc_array(l, sizeof(int)), passes = 0;
    if (!m || !rq || !ord || !ipiv) { st = duet_fail(err, DUET_ERR_NOMEM, "pca: out of memory"); goto done; }
    double tm[DUET_PCA_PHASES] = {0}, cm[DUET_PCA_PHASES] = {0}, t0 = duet_now(), t1, c0 = cpu_seconds(), c1;
#define PHASE(i) (t1 = duet_now(), tm[i] += t1 - t0, t0 = t1, c1 = cpu_seconds(), cm[i] += c1 - c0, c0 = c1)
    int in_place = xw && in_place_fits(&r, o->start);
    if (in_place) in_place_views(&r, xw);
    else if ((st = slab_make(&r, o->block_bytes, err))) goto done;
    float *qt = r.qt, *yt = r.yt;
    duet_pca_mean(x, n, d, m, mean);
    for (size_t j = 0; j < d; j++)   /* a NaN or Inf anywhere makes its column's mean one */
        if (!isfinite(m[j])) { st = duet_fail(err, DUET_ERR_NONFINITE, "pca: column %zu of the input holds NaN or Inf", j); goto done; }
    if ((st = in_place ? covariance_in_place(&r, xw, m, err) : covariance(&r, x, m, err))) goto done;
    PHASE(0);
    /* Q = orth(C (LU C)^q Omega), Omega Gaussian [d x l] (seeded) */
    /* the start Omega [d x l]: Gaussian, or samples */
    st = o->start == DUET_PCA_START_SAMPLES ? sample_start(qt, l, d, x, n, m, o->seed, err)
                                            : gaussian_start(qt, l, d, o->seed, err);
    if (st) goto done;
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
    if (var) for (size_t c = 0; c < dout; c++) var[c] = rq[ord[c]];
    out_job oj = {qt, d, dout, ord, basis};
    duet_parallel_for(dout, 16, out_signs, &oj);
    duet_parallel_for(d, TB, out_rows, &oj);
    PHASE(4);
    if (o->times) memcpy(o->times, tm, sizeof tm);
    if (o->cpu_times) memcpy(o->cpu_times, cm, sizeof cm);
    if (o->passes) *o->passes = passes;
#undef PHASE
done:
    free(m); free(r.slab); free(rq); free(ord); free(ipiv);
    duet_pca_la_fini(&r.la);
    return st;
}

duet_status duet_pca_fit_randomized(const float *x, size_t n, size_t din, size_t dout, const duet_pca_opts *o,
                                    float *mean, float *basis, float *var, duet_error *err) {
    return fit(x, NULL, n, din, dout, o, mean, basis, var, err);
}

duet_status duet_pca_fit_randomized_in_place(float *x, size_t n, size_t din, size_t dout, const duet_pca_opts *o,
                                             float *mean, float *basis, float *var, duet_error *err) {
    return fit(x, x, n, din, dout, o, mean, basis, var, err);
}
