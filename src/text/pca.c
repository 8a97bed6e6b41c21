/* pca.c -- PCA of the raw text encodings, two methods (docs/TEXT.md):
 *
 *   exact       the eigen-decomposition of the covariance: one SSYRK over
 *               mean-centred blocks, every eigenvector by LAPACK's ssyevr
 *               (MRRR), the top ones kept;
 *   randomized  subspace iteration on the same covariance (Halko,
 *               Martinsson, Tropp 2011, algorithm 4.4): products with the
 *               covariance on oneDNN (f32, or bf16 inputs with f32
 *               accumulation), normalized by LU between them and by a
 *               Householder QR (LAPACK sgeqrf / sorgqr) after the last,
 *               then the directions ordered by their variance
 *               (Rayleigh-Ritz when small).
 *
 * The exact method is dominated by the tridiagonal reduction inside
 * ssyevr, which is bound by memory bandwidth; the randomized one is
 * matrix products and QR, which are not. */
#include "text.h"
#include "core/dnn.h"
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 2048

/* mean [din] (accumulated in double) of x [n x din]. */
static void mean_of(const float *x, size_t n, size_t din, double *m, float *mean) {
    for (size_t i = 0; i < n; i++) for (size_t j = 0; j < din; j++) m[j] += x[i * din + j];
    for (size_t j = 0; j < din; j++) { m[j] /= (double)n; mean[j] = (float)m[j]; }
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
    mean_of(x, n, din, m, mean);
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

/* ------------------------------------------------------------ randomized */

duet_pca_opts duet_pca_default_opts(void) {
    duet_pca_opts o = {2, 0, 1024, DUET_PRECISION_F32, 1, NULL};
    return o;
}

/* What the randomized fit works on: the covariance C [d x d] (symmetric,
 * both triangles) and, in bf16, its bf16 copy; products run on dnn. */
typedef struct rpca {
    size_t d, l;
    float *cov;
    uint16_t *cov_h, *qh;   /* bf16 only: C and the left factor          */
    duet_dnn dnn;
} rpca;

/* Yt [l x d] = Qt [l x d] C: the transposes of Y = C Q (C symmetric), so
 * that Q and Y are column-major [d x l] as LAPACK wants them. */
static duet_status cmul(rpca *r, const float *Qt, float *Yt, duet_error *err) {
    size_t d = r->d, l = r->l;
    if (r->dnn.prec != DUET_PRECISION_BF16) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)l, (int)d, (int)d, 1.0f, Qt, (int)d, r->cov, (int)d,
                    0.0f, Yt, (int)d);
        return DUET_OK;
    }
    duet_status st = duet_dnn_to_bf16(&r->dnn, Qt, r->qh, l * d, err);
    duet_gemm g;
    memset(&g, 0, sizeof g);
    if (!st) st = duet_gemm_plan(&r->dnn, &g, dnnl_bf16, l, d, d, d, d, d, 0, 0, err);
    if (!st) st = duet_gemm_run(&r->dnn, &g, r->qh, r->cov_h, Yt, err);
    duet_gemm_free(&g);
    return st;
}

/* The columns of Y (column-major [d x l], ld d) replaced by P L of its LU
 * factorization with partial pivoting (LAPACK sgetrf): the same span,
 * entries of L at most 1 in magnitude, a quarter of QR's work -- the
 * normalization between power iterations (as in Halko et al.'s section 4.5
 * and fbpca); the last step is a QR. */
static duet_status lu_normalize(float *Yt, size_t d, size_t l, lapack_int *ipiv, duet_error *err) {
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

/* The columns of Y (column-major [d x l], ld d) replaced by an orthonormal
 * basis of their span: Householder QR, Q formed explicitly. */
static duet_status orthonormalize(float *Yt, size_t d, size_t l, float *tau, duet_error *err) {
    lapack_int info = LAPACKE_sgeqrf(LAPACK_COL_MAJOR, (lapack_int)d, (lapack_int)l, Yt, (lapack_int)d, tau);
    if (!info) info = LAPACKE_sorgqr(LAPACK_COL_MAJOR, (lapack_int)d, (lapack_int)l, (lapack_int)l, Yt, (lapack_int)d, tau);
    return info ? duet_fail(err, DUET_ERR_NONFINITE, "pca: LAPACK QR of [%zu x %zu] failed (info %d)", d, l, (int)info)
                : DUET_OK;
}

/* The covariance of x [n x d] about m into r->cov (both triangles). f32:
 * SSYRK; bf16: each centred block transposed to bf16, the tiles on and
 * above the diagonal as oneDNN products, the lower ones mirrored. */
#define TILE 4096
static duet_status covariance(rpca *r, const float *x, size_t n, const double *m, duet_error *err) {
    size_t d = r->d;
    float *blk = duet_alloc_array(BLOCK, d * sizeof(float));
    uint16_t *bt = r->dnn.prec == DUET_PRECISION_BF16 ? duet_alloc_array(BLOCK, d * sizeof(uint16_t)) : NULL;
    duet_status st = !blk || (r->dnn.prec == DUET_PRECISION_BF16 && !bt)
                         ? duet_fail(err, DUET_ERR_NOMEM, "pca: out of memory") : DUET_OK;
    for (size_t b0 = 0; !st && b0 < n; b0 += BLOCK) {
        size_t nb = n - b0 < BLOCK ? n - b0 : BLOCK;
        if (!bt) { cov_block_f32(x, m, b0, nb, n, d, blk, r->cov); continue; }
        float s = 1.0f / sqrtf((float)(n - 1));
        for (size_t i = 0; i < nb; i++) for (size_t j = 0; j < d; j++) blk[j * nb + i] = (float)(x[(b0 + i) * d + j] - m[j]) * s;
        duet_f32_to_bf16(blk, bt, nb * d);   /* bt [d x nb]: the block transposed */
        for (size_t i0 = 0; !st && i0 < d; i0 += TILE)
            for (size_t j0 = i0; !st && j0 < d; j0 += TILE) {
                size_t ti = d - i0 < TILE ? d - i0 : TILE, tj = d - j0 < TILE ? d - j0 : TILE;
                duet_gemm g;
                memset(&g, 0, sizeof g);
                st = duet_gemm_plan(&r->dnn, &g, dnnl_bf16, ti, tj, nb, nb, nb, d, 1, 1, err);
                if (!st) st = duet_gemm_run(&r->dnn, &g, bt + i0 * nb, bt + j0 * nb, r->cov + i0 * d + j0, err);
                duet_gemm_free(&g);
            }
    }
    /* mirror the upper triangle (f32: SSYRK's; bf16: the upper tiles) */
    for (size_t i = 0; !st && i < d; i++)
        for (size_t j = 0; j < i; j++) r->cov[i * d + j] = r->cov[j * d + i];
    free(blk);
    free(bt);
    return st;
}

duet_status duet_pca_fit_randomized(const float *x, size_t n, size_t din, size_t dout, const duet_pca_opts *o,
                                    float *mean, float *basis, float *var, duet_error *err) {
    if (n < 2) return duet_fail(err, DUET_ERR_EMPTY, "pca: %zu samples (need 2 or more)", n);
    if (dout < 1 || dout > din) return duet_fail(err, DUET_ERR_INVALID_ARG, "pca: %zu components of a %zu-D input", dout, din);
    if (din > 65535) return duet_fail(err, DUET_ERR_INVALID_ARG, "pca: input dimension %zu too large", din);
    if (o->power_iters < 0 || o->power_iters > 100) return duet_fail(err, DUET_ERR_INVALID_ARG, "pca: %d power iterations (0..100)", o->power_iters);
    size_t p = o->oversample ? o->oversample : (dout / 50 > 10 ? dout / 50 : 10);
    size_t d = din, l = dout + p < din ? dout + p : din;
    rpca r;
    memset(&r, 0, sizeof r);
    r.d = d;
    r.l = l;
    duet_status st = duet_dnn_init(&r.dnn, o->prec, err);
    if (st) return st;
    int bf = r.dnn.prec == DUET_PRECISION_BF16;
    double *m = calloc(d, sizeof(double));
    r.cov = duet_calloc_array(d, d * sizeof(float));
    float *qt = duet_alloc_array(l, d * sizeof(float)), *yt = duet_alloc_array(l, d * sizeof(float));
    float *tau = duet_alloc_array(l, sizeof(float)), *rq = duet_alloc_array(l, sizeof(float));
    size_t *ord = duet_alloc_array(l, sizeof(size_t));
    lapack_int *ipiv = duet_alloc_array(l, sizeof(lapack_int));
    if (bf) {
        r.cov_h = duet_alloc_array(d, d * sizeof(uint16_t));
        r.qh = duet_alloc_array(l, d * sizeof(uint16_t));
    }
    if (!m || !r.cov || !qt || !yt || !tau || !rq || !ord || !ipiv || (bf && (!r.cov_h || !r.qh))) {
        st = duet_fail(err, DUET_ERR_NOMEM, "pca: out of memory (%zu x %zu covariance, %zu x %zu subspace)", d, d, d, l);
        goto done;
    }
    double tm[DUET_PCA_PHASES] = {0}, t0 = duet_now(), t1;
#define PHASE(i) (t1 = duet_now(), tm[i] += t1 - t0, t0 = t1)
    mean_of(x, n, d, m, mean);
    if ((st = covariance(&r, x, n, m, err))) goto done;
    if (bf && (st = duet_dnn_to_bf16(&r.dnn, r.cov, r.cov_h, d * d, err))) goto done;
    PHASE(0);
    /* Q = orth(C^(q+1) Omega), Omega Gaussian [d x l] (seeded) */
    duet_rng rng;
    duet_rng_seed(&rng, o->seed);
    for (size_t i = 0; i < l * d; i++) qt[i] = duet_rng_normal(&rng);
    for (int it = 0; it <= o->power_iters; it++) {
        int last = it == o->power_iters;
        if ((st = cmul(&r, qt, yt, err))) goto done;
        PHASE(1);
        if ((st = last ? orthonormalize(yt, d, l, tau, err) : lu_normalize(yt, d, l, ipiv, err))) goto done;
        PHASE(last ? 3 : 2);
        float *t = qt; qt = yt; yt = t;
    }
    /* Z = C Q; the variance along q_j is q_j . z_j */
    if ((st = cmul(&r, qt, yt, err))) goto done;
    PHASE(1);
    if (l <= o->ritz_max) {
        /* Rayleigh-Ritz: B = Q^T C Q [l x l], its eigenvectors V, basis Q V */
        float *B = duet_alloc_array(l, l * sizeof(float)), *V = duet_alloc_array(l, l * sizeof(float));
        lapack_int *isuppz = duet_alloc_array(2 * l, sizeof(lapack_int)), found = 0;
        if (!B || !V || !isuppz) st = duet_fail(err, DUET_ERR_NOMEM, "pca: out of memory");
        if (!st) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)l, (int)l, (int)d, 1.0f, qt, (int)d, yt, (int)d,
                        0.0f, B, (int)l);
            lapack_int info = LAPACKE_ssyevr(LAPACK_ROW_MAJOR, 'V', 'A', 'U', (lapack_int)l, B, (lapack_int)l, 0, 0, 0,
                                             0, 0.0f, &found, rq, V, (lapack_int)l, isuppz);
            if (info || (size_t)found != l) st = duet_fail(err, DUET_ERR_NONFINITE, "pca: LAPACK ssyevr of the %zu x %zu "
                                                           "Ritz matrix failed (info %d)", l, l, (int)info);
        }
        if (!st) {
            /* yt [l x d] = V^T Qt: row c = the c-th Ritz vector (ascending) */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)l, (int)d, (int)l, 1.0f, V, (int)l, qt, (int)d,
                        0.0f, yt, (int)d);
            float *t = qt; qt = yt; yt = t;
            for (size_t c = 0; c < l; c++) ord[c] = l - 1 - c;
        }
        free(B); free(V); free(isuppz);
        if (st) goto done;
    } else {
        for (size_t c = 0; c < l; c++) {
            double s = 0;
            for (size_t j = 0; j < d; j++) s += (double)qt[c * d + j] * yt[c * d + j];
            rq[c] = (float)s;
            ord[c] = c;
        }
        /* by decreasing variance (insertion sort: nearly sorted already) */
        for (size_t a = 1; a < l; a++) {
            size_t v = ord[a], b = a;
            for (; b > 0 && rq[ord[b - 1]] < rq[v]; b--) ord[b] = ord[b - 1];
            ord[b] = v;
        }
    }
    for (size_t c = 0; c < dout; c++) {
        const float *q = qt + ord[c] * d;
        float big = 0;
        for (size_t j = 0; j < d; j++) if (fabsf(q[j]) > fabsf(big)) big = q[j];
        float sg = big < 0 ? -1.0f : 1.0f;
        for (size_t j = 0; j < d; j++) basis[j * dout + c] = sg * q[j];
        if (var) var[c] = rq[ord[c]];
    }
    PHASE(4);
    if (o->times) memcpy(o->times, tm, sizeof tm);
#undef PHASE
done:
    free(m); free(r.cov); free(r.cov_h); free(r.qh); free(qt); free(yt); free(tau); free(rq); free(ord); free(ipiv);
    duet_dnn_fini(&r.dnn);
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
