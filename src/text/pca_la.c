/* pca_la.c -- the dense linear algebra of the randomized PCA (pca_rand.c):
 * oneDNN matrix products through a cache of plans (one plan per shape, made
 * once), run by tiles where that saves work or runs faster (the upper
 * triangle of A A^T; column panels), the LU normalization between power iterations and
 * the final orthonormalization (CholeskyQR2 on the LU factor, Householder QR
 * when the Cholesky factorization breaks down).
 *
 * Tiles: on the AMX machine oneDNN 2.6 ran its bf16 jit gemm on the
 * products with 2,000 to 9,000 output columns we tried and its brgemm
 * kernel, at about half the rate, on 12,000 (1.15 s for [6,120 x 12,000] x [12,000 x 12,000]
 * split into three column panels of 4,000, 1.95 s in one piece, 1.47 s in
 * twelve chunks of the reduction accumulated in place); the covariance of
 * 30,000 samples took 2.7 s in upper tiles of 2,000 x 2,000, each over the
 * whole reduction, 3.5 s in tiles of 4,000 (bench/bench_pca). */
#include "pca_la.h"
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TILE 2048 /* at most this many rows and columns per covariance tile */
#define PANEL 4096 /* at most this many output columns per product        */

static size_t esz(dnnl_data_type_t dt) { return dt == dnnl_bf16 ? 2 : 4; }
static const char *at(const void *p, size_t i, dnnl_data_type_t dt) { return (const char *)p + i * esz(dt); }
static size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }
/* The width of n cut into the fewest parts of at most `most`, nearly equal,
 * rounded up to a multiple of 16 (the last part takes the rest). */
static size_t part_width(size_t n, size_t most) {
    size_t parts = (n + most - 1) / most, w = (n + parts - 1) / parts;
    return (w + 15) / 16 * 16;
}

duet_status duet_pca_la_init(duet_pca_la *la, duet_precision prec, duet_error *err) {
    memset(la, 0, sizeof *la);
    return duet_dnn_init(&la->dnn, prec, err);
}

void duet_pca_la_fini(duet_pca_la *la) {
    if (!la) return;
    for (size_t i = 0; i < la->nplans; i++) duet_gemm_free(&la->plans[i].g);
    la->nplans = 0;
    duet_dnn_fini(&la->dnn);
}

duet_status duet_pca_gemm(duet_pca_la *la, dnnl_data_type_t dt, dnnl_data_type_t cdt, size_t m, size_t n, size_t k,
                          const void *A, size_t lda, const void *B, size_t ldb, int trans, int acc, void *C,
                          size_t ldc, duet_error *err) {
    duet_pca_plan *p = NULL;
    for (size_t i = 0; i < la->nplans && !p; i++) {
        duet_pca_plan *q = &la->plans[i];
        if (q->dt == dt && q->cdt == cdt && q->m == m && q->n == n && q->k == k && q->lda == lda && q->ldb == ldb && q->ldc == ldc &&
            q->trans == trans && q->acc == acc) p = q;
    }
    if (!p) {
        if (la->nplans == DUET_PCA_PLANS) {   /* full: drop the oldest */
            duet_gemm_free(&la->plans[0].g);
            memmove(la->plans, la->plans + 1, (DUET_PCA_PLANS - 1) * sizeof *p);
            la->nplans--;
        }
        p = &la->plans[la->nplans];
        *p = (duet_pca_plan){dt, cdt, m, n, k, lda, ldb, ldc, trans, acc, {0}};
        duet_status st = duet_gemm_plan_to(&la->dnn, &p->g, dt, cdt, m, n, k, lda, ldb, ldc, trans, acc, err);
        if (st) return st;
        la->nplans++;
        la->made++;
    }
    return duet_gemm_run(&la->dnn, &p->g, A, B, C, err);
}

duet_status duet_pca_mul(duet_pca_la *la, dnnl_data_type_t dt, size_t m, size_t n, size_t k, const void *A,
                         size_t lda, const void *B, size_t ldb, float *C, size_t ldc, duet_error *err) {
    duet_status st = DUET_OK;
    size_t w = part_width(n, PANEL);
    for (size_t n0 = 0; !st && n0 < n; n0 += w)
        st = duet_pca_gemm(la, dt, dnnl_f32, m, min_sz(w, n - n0), k, A, lda, at(B, n0, dt), ldb, 0, 0, C + n0, ldc,
                           err);
    return st;
}

duet_status duet_pca_syrk_upper(duet_pca_la *la, dnnl_data_type_t dt, dnnl_data_type_t cdt, size_t rows, size_t k,
                                const void *A, size_t lda, int cols, int acc, void *C, size_t ldc, duet_error *err) {
    duet_status st = DUET_OK;
    size_t w = part_width(rows, TILE);
    for (size_t i0 = 0; i0 < rows; i0 += w)
        for (size_t j0 = i0; !st && j0 < rows; j0 += w) {
            size_t a = min_sz(w, rows - i0), b = min_sz(w, rows - j0);
            void *c = (char *)C + (i0 * ldc + j0) * esz(cdt);
            st = cols ? duet_pca_gemm(la, dt, cdt, a, b, k, at(A, i0, dt), lda, at(A, j0, dt), lda, DUET_GEMM_TRANS_A,
                                      acc, c, ldc, err)
                      : duet_pca_gemm(la, dt, cdt, a, b, k, at(A, i0 * lda, dt), lda, at(A, j0 * lda, dt), lda,
                                      DUET_GEMM_TRANS_B, acc, c, ldc, err);
        }
    return st;
}

/* ------------------------------------------------------------ normalizers */

duet_status duet_pca_lu(float *Yt, size_t d, size_t l, int *ipiv, duet_error *err) {
    lapack_int info = LAPACKE_sgetrf(LAPACK_COL_MAJOR, (lapack_int)d, (lapack_int)l, Yt, (lapack_int)d, ipiv);
    if (info < 0) return duet_fail(err, DUET_ERR_NONFINITE, "pca: LAPACK LU of [%zu x %zu] failed (info %d)", d, l, (int)info);
    for (size_t j = 0; j < l; j++) {   /* L: unit diagonal, zeros above */
        float *col = Yt + j * d;
        memset(col, 0, j * sizeof(float));
        col[j] = 1.0f;
    }
    LAPACKE_slaswp(LAPACK_COL_MAJOR, (lapack_int)l, Yt, (lapack_int)d, 1, (lapack_int)l, ipiv, -1);
    return DUET_OK;
}

duet_status duet_pca_householder(float *Yt, size_t d, size_t l, duet_error *err) {
    float *tau = duet_alloc_array(l, sizeof(float));
    if (!tau) return duet_fail(err, DUET_ERR_NOMEM, "pca: out of memory");
    lapack_int info = LAPACKE_sgeqrf(LAPACK_COL_MAJOR, (lapack_int)d, (lapack_int)l, Yt, (lapack_int)d, tau);
    if (!info) info = LAPACKE_sorgqr(LAPACK_COL_MAJOR, (lapack_int)d, (lapack_int)l, (lapack_int)l, Yt, (lapack_int)d, tau);
    free(tau);
    return info ? duet_fail(err, DUET_ERR_NONFINITE, "pca: LAPACK QR of [%zu x %zu] failed (info %d)", d, l, (int)info)
                : DUET_OK;
}

/* One CholeskyQR pass in f32 on the columns of Y (column-major [d x l] =
 * row-major Yt [l x d]), in place: G = Y^T Y (SSYRK), G = R^T R (SPOTRF),
 * Y = Y R^-1 (STRSM). 1 when G is not positive definite (Y untouched). */
static int cholqr_pass(float *Yt, size_t d, size_t l, float *G) {
    cblas_ssyrk(CblasColMajor, CblasUpper, CblasTrans, (int)l, (int)d, 1.0f, Yt, (int)d, 0.0f, G, (int)l);
    if (LAPACKE_spotrf(LAPACK_COL_MAJOR, 'U', (lapack_int)l, G, (lapack_int)l)) return 1;
    for (size_t j = 0; j < l; j++) if (!(G[j * l + j] > 0) || !isfinite(G[j * l + j])) return 1;
    cblas_strsm(CblasColMajor, CblasRight, CblasUpper, CblasNoTrans, CblasNonUnit, (int)d, (int)l, 1.0f, G, (int)l,
                Yt, (int)d);
    return 0;
}

/* max |q_i . q_j - [i = j]| over every column i of Y (rows of Yt [l x d])
 * and PROBE columns j spread evenly: an estimate of the orthogonality
 * error at a cost of 2 l d PROBE flops (0.1% of a pass at full size).
 * S [PROBE x d] and P [l x PROBE] are scratch. */
#define PROBE 64
static double orth_probe(const float *Yt, size_t d, size_t l, float *S, float *P) {
    size_t np = l < PROBE ? l : PROBE;
    for (size_t k = 0; k < np; k++) memcpy(S + k * d, Yt + (k * l / np) * d, d * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)l, (int)np, (int)d, 1.0f, Yt, (int)d, S, (int)d, 0.0f,
                P, (int)np);
    double worst = 0;
    for (size_t i = 0; i < l; i++)
        for (size_t k = 0; k < np; k++) {
            double e = fabs((double)P[i * np + k] - (i == k * l / np));
            if (!(e <= worst)) worst = e;   /* NaN counts as the worst */
        }
    return worst;
}

duet_status duet_pca_orthonormalize(float *Yt, size_t d, size_t l, int method, int *ipiv, int *passes,
                                    duet_error *err) {
    *passes = 0;
    if (method == DUET_PCA_ORTH_HOUSEHOLDER) return duet_pca_householder(Yt, d, l, err);
    /* LU first: the factor L spans the same columns and is far better
     * conditioned (|entries| <= 1) than Y itself, whose condition number
     * is that of the covariance's spectrum */
    duet_status st = duet_pca_lu(Yt, d, l, ipiv, err);
    if (st) return st;
    float *G = duet_alloc_array(l, l * sizeof(float));
    float *S = duet_alloc_array(PROBE, d * sizeof(float)), *P = duet_alloc_array(l, PROBE * sizeof(float));
    if (!G || !S || !P) {
        free(G); free(S); free(P);
        return duet_fail(err, DUET_ERR_NOMEM, "pca: out of memory (%zu x %zu Gram matrix)", l, l);
    }
    /* CholeskyQR2: the second pass restores the orthogonality lost to
     * rounding in the first (error ~ u kappa^2); on the fv-both captions
     * the first left errors of 0.73, the second 1.6e-6 (a third: 6e-7).
     * Another pass only while the probe finds the error above the
     * tolerance: rounding in the products alone is ~ u sqrt(d). */
    double tol = 8 * 5.96e-8 * sqrt((double)d), probe = INFINITY;
    if (tol < DUET_PCA_ORTH_TOL) tol = DUET_PCA_ORTH_TOL;
    int bad = 0;
    while (!bad && *passes < 4 && (*passes < 2 || probe > tol)) {
        bad = cholqr_pass(Yt, d, l, G);
        if (!bad && ++*passes >= 2) probe = orth_probe(Yt, d, l, S, P);
    }
    free(G); free(S); free(P);
    /* rank-deficient columns (fewer samples than columns, constant data),
     * or no convergence: Householder QR completes the basis */
    if (bad || probe > tol) { *passes = -*passes - 1; return duet_pca_householder(Yt, d, l, err); }
    return DUET_OK;
}
