/* ica.c -- FastICA (Hyvarinen 1999; parallel/symmetric, logcosh contrast,
 * as scikit-learn's FastICA(algorithm='parallel', fun='logcosh')) on
 * weighted points, for Klein's option of rotating the word vectors before the
 * mixtures. Whitening by the eigen-decomposition of the covariance (LAPACK
 * dsyevd), all products by DGEMM. */
#include "text.h"
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* w <- (w w^T)^(-1/2) w for a [d x d] matrix; tmp needs 3 d^2 + d. */
static int sym_decorrelate(double *w, size_t d, double *tmp) {
    double *s = tmp, *e = tmp + d * d, *r = e + d * d, *ev = r + d * d;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)d, (int)d, (int)d, 1.0, w, (int)d, w, (int)d, 0.0, s, (int)d);
    if (LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int)d, s, (lapack_int)d, ev) != 0) return 0;
    /* s holds eigenvectors E (columns); r = E diag(ev^-1/2) E^T */
    for (size_t i = 0; i < d; i++) {
        if (!(ev[i] > 1e-300)) return 0;
        double f = 1.0 / sqrt(ev[i]);
        for (size_t j = 0; j < d; j++) e[j * d + i] = s[j * d + i] * f;
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)d, (int)d, (int)d, 1.0, e, (int)d, s, (int)d, 0.0, r, (int)d);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)d, (int)d, (int)d, 1.0, r, (int)d, w, (int)d, 0.0, e, (int)d);
    memcpy(w, e, d * d * sizeof(double));
    return 1;
}

duet_status duet_ica_fit(const float *x, const float *wt, size_t n, size_t d,
                         int max_iter, double tol, duet_rng *rng,
                         float *mean, float *unmix, int *iters, duet_error *err) {
    if (n < 2 || d < 1) return duet_fail(err, DUET_ERR_EMPTY, "ica: %zu points of %zu dims", n, d);
    double W = 0;
    double *m = calloc(d, sizeof(double));
    double *z = duet_alloc_array(n, d * sizeof(double));
    double *y = duet_alloc_array(n, d * sizeof(double));
    double *c = duet_alloc_array(d, d * sizeof(double));
    double *ev = duet_alloc_array(d, sizeof(double));
    double *kw = duet_alloc_array(d, d * sizeof(double));
    double *w = duet_alloc_array(d, d * sizeof(double));
    double *wn = duet_alloc_array(d, d * sizeof(double));
    double *tmp = duet_alloc_array(3 * d * d + d, sizeof(double));
    double *gp = duet_alloc_array(d, sizeof(double));
    duet_status st = DUET_OK;
    if (!m || !z || !y || !c || !ev || !kw || !w || !wn || !tmp || !gp) { st = duet_fail(err, DUET_ERR_NOMEM, "ica: out of memory"); goto done; }
    for (size_t i = 0; i < n; i++) { double a = wt ? wt[i] : 1.0; W += a; for (size_t j = 0; j < d; j++) m[j] += a * x[i * d + j]; }
    for (size_t j = 0; j < d; j++) m[j] /= W;
    /* z = sqrt(wt) (x - m) for the weighted covariance */
    for (size_t i = 0; i < n; i++) {
        double a = sqrt(wt ? wt[i] : 1.0);
        for (size_t j = 0; j < d; j++) z[i * d + j] = a * (x[i * d + j] - m[j]);
    }
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d, (int)d, (int)n, 1.0 / W, z, (int)d, z, (int)d, 0.0, c, (int)d);
    if (LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int)d, c, (lapack_int)d, ev) != 0 || !(ev[d - 1] > 0)) {
        st = duet_fail(err, DUET_ERR_NONFINITE, "ica: eigen-decomposition of the covariance failed"); goto done;
    }
    for (size_t i = 0; i < d; i++)
        if (!(ev[i] > 1e-10 * ev[d - 1])) { st = duet_fail(err, DUET_ERR_INVALID_ARG, "ica: the word vectors span fewer than %zu dimensions (eigenvalue %zu is %.3g)", d, i, ev[i]); goto done; }
    /* whitening K = diag(ev^-1/2) E^T ; z <- (x - m) K^T (unweighted rows) */
    for (size_t i = 0; i < d; i++) for (size_t j = 0; j < d; j++) kw[i * d + j] = c[j * d + i] / sqrt(ev[i]);
    for (size_t i = 0; i < n; i++) for (size_t j = 0; j < d; j++) y[i * d + j] = x[i * d + j] - m[j];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)d, (int)d, 1.0, y, (int)d, kw, (int)d, 0.0, z, (int)d);
    /* random orthogonal start */
    for (size_t i = 0; i < d * d; i++) w[i] = duet_rng_normal(rng);
    if (!sym_decorrelate(w, d, tmp)) { st = duet_fail(err, DUET_ERR_NONFINITE, "ica: decorrelation failed"); goto done; }
    int it;
    for (it = 0; it < max_iter; it++) {
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)d, (int)d, 1.0, z, (int)d, w, (int)d, 0.0, y, (int)d);
        memset(gp, 0, d * sizeof(double));
        for (size_t i = 0; i < n; i++) {
            double a = wt ? wt[i] : 1.0;
            for (size_t j = 0; j < d; j++) {
                double g = tanh(y[i * d + j]);
                gp[j] += a * (1 - g * g);
                y[i * d + j] = a * g;
            }
        }
        /* wn = (g^T z) / W - diag(mean g') w */
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d, (int)d, (int)n, 1.0 / W, y, (int)d, z, (int)d, 0.0, wn, (int)d);
        for (size_t i = 0; i < d; i++) for (size_t j = 0; j < d; j++) wn[i * d + j] -= gp[i] / W * w[i * d + j];
        if (!sym_decorrelate(wn, d, tmp)) { st = duet_fail(err, DUET_ERR_NONFINITE, "ica: decorrelation failed at iteration %d", it + 1); goto done; }
        double lim = 0;
        for (size_t i = 0; i < d; i++) {
            double s = 0;
            for (size_t j = 0; j < d; j++) s += wn[i * d + j] * w[i * d + j];
            if (fabs(fabs(s) - 1) > lim) lim = fabs(fabs(s) - 1);
        }
        memcpy(w, wn, d * d * sizeof(double));
        if (lim < tol) { it++; break; }
    }
    if (iters) *iters = it;
    /* unmixing U = w K; x' = (x - m) U^T */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)d, (int)d, (int)d, 1.0, w, (int)d, kw, (int)d, 0.0, wn, (int)d);
    for (size_t i = 0; i < d * d; i++) unmix[i] = (float)wn[i];
    for (size_t j = 0; j < d; j++) mean[j] = (float)m[j];
done:
    free(m); free(z); free(y); free(c); free(ev); free(kw); free(w); free(wn); free(tmp); free(gp);
    return st;
}
