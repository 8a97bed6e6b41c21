/* pca.c -- PCA of the raw text encodings, two methods (docs/TEXT.md):
 *
 *   exact       the eigen-decomposition of the covariance: one SSYRK over
 *               mean-centred blocks, every eigenvector by LAPACK's ssyevr
 *               (MRRR), the top ones kept (this file);
 *   randomized  subspace iteration on the same covariance (Halko,
 *               Martinsson, Tropp 2011), all of it matrix products
 *               (pca_rand.c, pca_la.c).
 *
 * The exact method is dominated by the tridiagonal reduction inside
 * ssyevr, which is bound by memory bandwidth; the randomized one is
 * matrix products, which are not. Also here: the projection. */
#include "text.h"
#include "core/dnn.h"
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 2048

/* Columns j0..j1 of the mean, each summed in row order (so the result
 * does not depend on the number of threads). */
typedef struct mean_job { const float *x; size_t n, din; double *m; float *mean; } mean_job;
static void mean_cols(void *ctx, size_t j0, size_t j1) {
    const mean_job *a = ctx;
    for (size_t i = 0; i < a->n; i++) {
        const float *row = a->x + i * a->din;
        for (size_t j = j0; j < j1; j++) a->m[j] += row[j];
    }
    for (size_t j = j0; j < j1; j++) { a->m[j] /= (double)a->n; a->mean[j] = (float)a->m[j]; }
}

void duet_pca_mean(const float *x, size_t n, size_t din, double *m, float *mean) {
    mean_job a = {x, n, din, m, mean};
    duet_parallel_for(din, 256, mean_cols, &a);
}

/* The upper triangle of cov [din x din] += the centred rows b0.. of x
 * (nb of them) times themselves / (n - 1), in f32 (OpenBLAS SSYRK). */
static void cov_block_f32(const float *x, const double *m, size_t b0, size_t nb, size_t n, size_t din, float *blk,
                          float *cov) {
    for (size_t i = 0; i < nb; i++) for (size_t j = 0; j < din; j++) blk[i * din + j] = (float)(x[(b0 + i) * din + j] - m[j]);
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)din, (int)nb, 1.0f / (float)(n - 1), blk, (int)din, 1.0f,
                cov, (int)din);
}

duet_status duet_pca_fit(const float *x, size_t n, size_t din, size_t dout,
                         float *mean, float *basis, float *var, duet_error *err) {
    if (n < 2) return duet_fail(err, DUET_ERR_EMPTY, "pca: %zu samples (need 2 or more)", n);
    if (dout < 1 || dout > din) return duet_fail(err, DUET_ERR_INVALID_ARG, "pca: %zu components of a %zu-D input", dout, din);
    if (din > 65535) return duet_fail(err, DUET_ERR_INVALID_ARG, "pca: input dimension %zu too large", din);
    double *m = calloc(din, sizeof(double));
    float *cov = duet_calloc_array(din, din * sizeof(float));
    float *blk = duet_alloc_array(BLOCK, din * sizeof(float));
    float *ev = duet_alloc_array(din, sizeof(float));
    float *z = duet_alloc_array(din, din * sizeof(float));
    lapack_int *isuppz = duet_alloc_array(2 * din, sizeof(lapack_int));
    duet_status st = DUET_OK;
    if (!m || !cov || !blk || !ev || !z || !isuppz) { st = duet_fail(err, DUET_ERR_NOMEM, "pca: out of memory (%zu x %zu covariance)", din, din); goto done; }
    duet_pca_mean(x, n, din, m, mean);
    for (size_t b0 = 0; b0 < n; b0 += BLOCK) cov_block_f32(x, m, b0, n - b0 < BLOCK ? n - b0 : BLOCK, n, din, blk, cov);
    /* All eigenpairs by MRRR (range 'A'): asking ssyevr for a subset makes
     * it fall back to bisection + inverse iteration (sstein), which takes
     * tens of minutes for thousands of eigenvectors. */
    lapack_int found = 0;
    lapack_int info = LAPACKE_ssyevr(LAPACK_ROW_MAJOR, 'V', 'A', 'U', (lapack_int)din, cov, (lapack_int)din, 0, 0,
                                     0, 0, 0.0f, &found, ev, z, (lapack_int)din, isuppz);
    if (info != 0 || (size_t)found != din) { st = duet_fail(err, DUET_ERR_NONFINITE, "pca: LAPACK ssyevr failed (info %d, %d of %zu eigenpairs)", (int)info, (int)found, din); goto done; }
    /* ascending -> descending; fix signs */
    for (size_t c = 0; c < dout; c++) {
        size_t src = din - 1 - c;
        float big = 0;
        for (size_t j = 0; j < din; j++) { float v = z[j * din + src]; if (fabsf(v) > fabsf(big)) big = v; }
        float sg = big < 0 ? -1.0f : 1.0f;
        for (size_t j = 0; j < din; j++) basis[j * dout + c] = sg * z[j * din + src];
        if (var) var[c] = ev[src];
    }
done:
    free(m); free(cov); free(blk); free(ev); free(z); free(isuppz);
    return st;
}

/* ------------------------------------------------------------ projection */

void duet_pca_apply(const float *x, size_t n, size_t din, size_t dout,
                    const float *mean, const float *basis, float *y) {
    float *blk = duet_alloc_array(BLOCK, din * sizeof(float));
    if (blk) {
        for (size_t b0 = 0; b0 < n; b0 += BLOCK) {
            size_t nb = n - b0 < BLOCK ? n - b0 : BLOCK;
            for (size_t i = 0; i < nb; i++) for (size_t j = 0; j < din; j++) blk[i * din + j] = x[(b0 + i) * din + j] - mean[j];
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nb, (int)dout, (int)din, 1.0f, blk, (int)din, basis, (int)dout, 0.0f, y + b0 * dout, (int)dout);
        }
        free(blk);
        return;
    }
    /* no memory for a block: y = x basis - mean basis, row by row */
    for (size_t i = 0; i < n; i++)
        for (size_t c = 0; c < dout; c++) {
            double s = 0;
            for (size_t j = 0; j < din; j++) s += (double)(x[i * din + j] - mean[j]) * basis[j * dout + c];
            y[i * dout + c] = (float)s;
        }
}

duet_status duet_pca_apply_bf16(const float *x, size_t n, size_t din, size_t dout, const float *mean,
                                const uint16_t *basis_h, float *y, duet_error *err) {
    duet_dnn dnn;
    duet_status st = duet_dnn_init(&dnn, DUET_PRECISION_BF16, err);
    if (st) return st;
    size_t nb0 = n < BLOCK ? n : BLOCK;
    float *blk = duet_alloc_array(nb0 ? nb0 : 1, din * sizeof(float));
    uint16_t *bh = duet_alloc_array(nb0 ? nb0 : 1, din * sizeof(uint16_t));
    if (!blk || !bh) st = duet_fail(err, DUET_ERR_NOMEM, "pca: out of memory");
    for (size_t b0 = 0; !st && b0 < n; b0 += BLOCK) {
        size_t nb = n - b0 < BLOCK ? n - b0 : BLOCK;
        for (size_t i = 0; i < nb; i++) for (size_t j = 0; j < din; j++) blk[i * din + j] = x[(b0 + i) * din + j] - mean[j];
        duet_f32_to_bf16(blk, bh, nb * din);
        duet_gemm g;
        memset(&g, 0, sizeof g);
        st = duet_gemm_plan(&dnn, &g, dnnl_bf16, nb, dout, din, din, dout, dout, 0, 0, err);
        if (!st) st = duet_gemm_run(&dnn, &g, bh, basis_h, y + b0 * dout, err);
        duet_gemm_free(&g);
    }
    free(blk);
    free(bh);
    duet_dnn_fini(&dnn);
    return st;
}
