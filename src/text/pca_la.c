/* pca_la.c -- the dense linear algebra of the randomized PCA (pca_rand.c):
 * oneDNN matrix products through a cache of plans (one plan per shape, made
 * once), run by tiles where that saves work or runs faster (the upper
 * triangle of A A^T; a long reduction in chunks), the LU normalization between power iterations and
 * the final orthonormalization (CholeskyQR2 on the LU factor, Householder QR
 * when the Cholesky factorization breaks down).
 *
 * Tiles and chunks: on the AMX machine the product [6,120 x 1,024] x
 * [1,024 x 12,000] ran at 1.4 times the rate of one with a 12,000-long
 * reduction, so the products with the covariance cut the reduction into
 * chunks of KC; the covariance's tiles of 4,096 (blocks of 2,048 rows)
 * took 15 CPU seconds at full size where tiles of 2,048 (blocks of 1,024)
 * took 23. */
#include "pca_la.h"
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TILE 4096 /* rows and columns of one tile of the covariance      */
#define KC 1024   /* length of one chunk of a reduction                   */

static size_t esz(dnnl_data_type_t dt) { return dt == dnnl_bf16 ? 2 : 4; }
static const char *at(const void *p, size_t i, dnnl_data_type_t dt) { return (const char *)p + i * esz(dt); }
static size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

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

duet_status duet_pca_gemm(duet_pca_la *la, dnnl_data_type_t dt, size_t m, size_t n, size_t k, const void *A,
                          size_t lda, const void *B, size_t ldb, int trans_b, int acc, float *C, size_t ldc,
                          duet_error *err) {
    duet_pca_plan *p = NULL;
    for (size_t i = 0; i < la->nplans && !p; i++) {
        duet_pca_plan *q = &la->plans[i];
        if (q->dt == dt && q->m == m && q->n == n && q->k == k && q->lda == lda && q->ldb == ldb && q->ldc == ldc &&
            q->trans_b == trans_b && q->acc == acc) p = q;
    }
    if (!p) {
        if (la->nplans == DUET_PCA_PLANS) {   /* full: drop the oldest */
            duet_gemm_free(&la->plans[0].g);
            memmove(la->plans, la->plans + 1, (DUET_PCA_PLANS - 1) * sizeof *p);
            la->nplans--;
        }
        p = &la->plans[la->nplans];
        *p = (duet_pca_plan){dt, m, n, k, lda, ldb, ldc, trans_b, acc, {0}};
        duet_status st = duet_gemm_plan(&la->dnn, &p->g, dt, m, n, k, lda, ldb, ldc, trans_b, acc, err);
        if (st) return st;
        la->nplans++;
        la->made++;
    }
    return duet_gemm_run(&la->dnn, &p->g, A, B, C, err);
}

duet_status duet_pca_mul(duet_pca_la *la, dnnl_data_type_t dt, size_t m, size_t n, size_t k, const void *A,
                         size_t lda, const void *B, size_t ldb, float *C, size_t ldc, duet_error *err) {
    duet_status st = DUET_OK;
    for (size_t k0 = 0; !st && k0 < k; k0 += KC)
        st = duet_pca_gemm(la, dt, m, n, min_sz(KC, k - k0), at(A, k0, dt), lda, at(B, k0 * ldb, dt), ldb, 0,
                           k0 > 0, C, ldc, err);
    return st;
}

duet_status duet_pca_syrk_upper(duet_pca_la *la, dnnl_data_type_t dt, size_t rows, size_t k, const void *A,
                                size_t lda, float *C, size_t ldc, duet_error *err) {
    duet_status st = DUET_OK;
    for (size_t i0 = 0; i0 < rows; i0 += TILE)
        for (size_t j0 = i0; j0 < rows; j0 += TILE)
            for (size_t k0 = 0; !st && k0 < k; k0 += KC)
                st = duet_pca_gemm(la, dt, min_sz(TILE, rows - i0), min_sz(TILE, rows - j0), min_sz(KC, k - k0),
                                   at(A, i0 * lda + k0, dt), lda, at(A, j0 * lda + k0, dt), lda, 1, 1,
                                   C + i0 * ldc + j0, ldc, err);
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
 * Y = Y R^-1 (STRSM). *kappa: the 1-norm condition number of R (STRCON's
 * estimate), i.e. about that of Y. 1 when G is not positive definite
 * (Y untouched). */
static int cholqr_pass(float *Yt, size_t d, size_t l, float *G, double *kappa) {
    cblas_ssyrk(CblasColMajor, CblasUpper, CblasTrans, (int)l, (int)d, 1.0f, Yt, (int)d, 0.0f, G, (int)l);
    if (LAPACKE_spotrf(LAPACK_COL_MAJOR, 'U', (lapack_int)l, G, (lapack_int)l)) return 1;
    float rcond = 0;
    if (LAPACKE_strcon(LAPACK_COL_MAJOR, '1', 'U', 'N', (lapack_int)l, G, (lapack_int)l, &rcond) || !(rcond > 0)) return 1;
    *kappa = 1.0 / rcond;
    cblas_strsm(CblasColMajor, CblasRight, CblasUpper, CblasNoTrans, CblasNonUnit, (int)d, (int)l, 1.0f, G, (int)l,
                Yt, (int)d);
    return 0;
}

duet_status duet_pca_orthonormalize(float *Yt, size_t d, size_t l, int method, int *ipiv, int *passes,
                                    duet_error *err) {
    *passes = 0;
    if (method == DUET_PCA_ORTH_HOUSEHOLDER) return duet_pca_householder(Yt, d, l, err);
    /* LU first: the factor L spans the same columns and is well conditioned
     * (|entries| <= 1), where Y itself (products with the covariance) has
     * the condition number of the covariance's spectrum */
    duet_status st = duet_pca_lu(Yt, d, l, ipiv, err);
    if (st) return st;
    float *G = duet_alloc_array(l, l * sizeof(float));
    if (!G) return duet_fail(err, DUET_ERR_NOMEM, "pca: out of memory (%zu x %zu Gram matrix)", l, l);
    /* CholeskyQR2: the second pass restores orthogonality lost to rounding
     * in the first (error ~ u kappa^2); a third while the pass before found
     * a condition number above DUET_PCA_KAPPA_OK */
    double kappa = INFINITY;
    int bad = 0;
    while (!bad && *passes < 2 + (kappa > DUET_PCA_KAPPA_OK) && *passes < 4) {
        bad = cholqr_pass(Yt, d, l, G, &kappa);
        if (!bad) ++*passes;
    }
    free(G);
    /* rank-deficient columns (fewer samples than columns, constant data):
     * Householder QR completes the basis */
    if (bad || kappa > DUET_PCA_KAPPA_OK) { *passes = -*passes - 1; return duet_pca_householder(Yt, d, l, err); }
    return DUET_OK;
}
