/* test_pca.c -- the randomized PCA (src/text/pca_rand.c, pca_la.c) by its
 * properties, against the exact PCA (itself = numpy's SVD in
 * test_text_encoders.c) and against matrices of known spectrum:
 *
 *   - the basis is orthonormal (max |B^T B - I| in double) with either
 *     final orthonormalization (LU + CholeskyQR2, Householder QR), in f32
 *     and, on a CPU with native bf16, with bf16 products;
 *   - it captures a stated fraction of the true top-k variance of data
 *     with independent columns of variance 1 / (1 + j) (flat at the cut:
 *     the hard case), and nearly what the exact PCA of the same sample does;
 *   - on a well-separated spectrum its subspace is the exact one (largest
 *     principal angle from the singular values of B_exact^T B);
 *   - rank-deficient input (fewer samples than columns, constant data)
 *     still gives an orthonormal basis holding all of the variance;
 *   - bad inputs fail with clear errors. */
#include "check.h"
#include "text/text.h"
#include <math.h>
#include <string.h>

/* max |B^T B - I| of b [d x k], in double. */
static double orth_err(const float *b, size_t d, size_t k) {
    double worst = 0;
    for (size_t c = 0; c < k; c++)
        for (size_t c2 = c; c2 < k; c2++) {
            double s = 0;
            for (size_t j = 0; j < d; j++) s += (double)b[j * k + c] * b[j * k + c2];
            s -= c == c2;
            if (fabs(s) > worst) worst = fabs(s);
        }
    return worst;
}

/* The variance captured by b [d x k] of data with independent columns of
 * variance s2 (descending), as a fraction of the top-k sum. */
static double captured_true(const float *b, size_t d, size_t k, const double *s2) {
    double got = 0, best = 0;
    for (size_t j = 0; j < d; j++) {
        double w = 0;
        for (size_t c = 0; c < k; c++) w += (double)b[j * k + c] * b[j * k + c];
        got += w * s2[j];
    }
    for (size_t j = 0; j < k; j++) best += s2[j];
    return got / best;
}

/* sin of the largest principal angle between span(a) and span(b), both
 * [d x k] orthonormal, bounded above by ||(I - a a^T) b||_F (the root of
 * the sum of the squared sines of all k angles), in double. */
static double max_sin_angle(const float *a, const float *b, size_t d, size_t k) {
    double *m = calloc(k * k, sizeof(double)), f = 0;
    for (size_t i = 0; i < k; i++)
        for (size_t c = 0; c < k; c++)
            for (size_t j = 0; j < d; j++) m[i * k + c] += (double)a[j * k + i] * b[j * k + c];
    for (size_t j = 0; j < d; j++)
        for (size_t c = 0; c < k; c++) {
            double r = b[j * k + c];
            for (size_t i = 0; i < k; i++) r -= (double)a[j * k + i] * m[i * k + c];
            f += r * r;
        }
    free(m);
    return sqrt(f);
}

/* x [n x d]: independent columns of standard deviation (1 + j)^-0.5 (+ 3). */
static float *known_spectrum(size_t n, size_t d, double *s2, uint64_t seed) {
    float *x = malloc(n * d * sizeof(float));
    duet_rng r;
    duet_rng_seed(&r, seed);
    for (size_t j = 0; j < d; j++) s2[j] = 1.0 / (1.0 + (double)j);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < d; j++) x[i * d + j] = 3.0f + duet_rng_normal(&r) * (float)sqrt(s2[j]);
    return x;
}

/* The outputs of a fit to k components of d-D data (caller frees). */
typedef struct fit { float *mean, *basis, *var; } fit;
static fit fit_alloc(size_t d, size_t k) {
    fit f = {malloc(d * sizeof(float)), malloc(d * k * sizeof(float)), malloc(k * sizeof(float))};
    return f;
}
static void fit_free(fit *f) { free(f->mean); free(f->basis); free(f->var); }

TEST(pca_randomized_known_spectrum) {
    size_t n = 3000, d = 400, k = 100;
    double s2[400];
    float *x = known_spectrum(n, d, s2, 11);
    fit f = fit_alloc(d, k);
    float *mean = f.mean, *b = f.basis, *v = f.var;
    duet_error e = {0};
    CHECK(duet_pca_fit(x, n, d, k, mean, b, v, &e) == DUET_OK);
    double exact = captured_true(b, d, k, s2);
    /* the sample's own top-k (the exact PCA) holds 98.7% of the true
     * top-k at n = 3000 */
    CHECK(exact > 0.96);
    CHECK(exact < 1.0);
    /* the captured fraction by power iterations q (measured, f32 and bf16
     * alike: 0.927 / 0.969 / 0.979 at q = 0 / 1 / 2) must be at least: */
    const double floor_q[3] = {0.87, 0.94, 0.955};
    /* a start from samples (measured: 0.957 / 0.975 / 0.980) meets the
     * same floors */
    for (int prec = 0; prec < 2; prec++)
        for (int orth = 0; orth < 3; orth++)
            for (int q = 0; q < 3; q++) {
                if (prec && !duet_cpu_has_bf16()) continue;
                duet_pca_opts o = duet_pca_default_opts();
                int passes = 99;
                o.prec = prec ? DUET_PRECISION_BF16 : DUET_PRECISION_F32;
                o.orth = orth == 1 ? DUET_PCA_ORTH_HOUSEHOLDER : DUET_PCA_ORTH_CHOLQR;
                o.start = orth == 2 ? DUET_PCA_START_SAMPLES : DUET_PCA_START_GAUSSIAN;
                o.power_iters = q;
                o.ritz_max = 0;   /* ordered by quotients, as at full size */
                o.passes = &passes;
                CHECK(duet_pca_fit_randomized(x, n, d, k, &o, mean, b, v, &e) == DUET_OK);
                /* CholeskyQR2, or a third pass; never the fallback here */
                CHECK(orth == 1 ? passes == 0 : passes == 2 || passes == 3);
                CHECK(orth_err(b, d, k) < 1e-5);
                double got = captured_true(b, d, k, s2);
                CHECK_MSG(got >= floor_q[q], "%s q=%d orth/start %d: captured %.4f", prec ? "bf16" : "f32", q, orth, got);
                CHECK(got <= exact + 1e-3);
                for (size_t c = 1; c < k; c++) CHECK(v[c] <= v[c - 1]);
                CHECK(v[0] < 1.1 && v[k - 1] > 0.003);   /* within the spectrum */
            }
    free(x); fit_free(&f);
}

TEST(pca_randomized_subspace_equals_exact) {
    /* latent standard deviations 2 - 0.08 j for the top 12 (variances 4 to
     * 1.3), 0.01 below: a gap of 10^4 at the cut, random mixing */
    size_t n = 1000, d = 200, k = 12;
    float *x = malloc(n * d * sizeof(float)), *mix = malloc(d * d * sizeof(float));
    duet_rng r;
    duet_rng_seed(&r, 5);
    for (size_t i = 0; i < d * d; i++) mix[i] = duet_rng_normal(&r) / sqrtf((float)d);
    for (size_t i = 0; i < n; i++) {
        double z[200];
        for (size_t q = 0; q < d; q++) z[q] = duet_rng_normal(&r) * (q < k ? 2.0 - 0.08 * (double)q : 0.01);
        for (size_t j = 0; j < d; j++) {
            double s = 0;
            for (size_t q = 0; q < d; q++) s += z[q] * mix[q * d + j];
            x[i * d + j] = (float)s - 1.0f;
        }
    }
    fit fe = fit_alloc(d, k), fr = fit_alloc(d, k);
    float *me = fe.mean, *be = fe.basis, *ve = fe.var, *mr = fr.mean, *br = fr.basis, *vr = fr.var;
    duet_error e = {0};
    CHECK(duet_pca_fit(x, n, d, k, me, be, ve, &e) == DUET_OK);
    /* q = 6..8: the covariance over blocks of 256 samples (the f32 sums of
     * four blocks, rounded once for bf16) instead of one; 9..11: a start
     * from samples; 12..14: in place (on a copy of x: bf16 rounds the
     * samples into x's own bytes and keeps every array there, f32 falls
     * back to fresh memory and leaves x as it was) */
    float *xc = malloc(n * d * sizeof(float));
    for (int prec = 0; prec < 2; prec++)
        for (int q = 0; q < 15; q++) {
            if (prec && !duet_cpu_has_bf16()) continue;
            duet_pca_opts o = duet_pca_default_opts();
            o.prec = prec ? DUET_PRECISION_BF16 : DUET_PRECISION_F32;
            o.power_iters = q % 3;
            o.orth = q / 3 == 1;
            o.block_bytes = q / 3 == 2 ? 1 : 0;
            o.start = q / 3 == 3 ? DUET_PCA_START_SAMPLES : DUET_PCA_START_GAUSSIAN;
            o.ritz_max = 1024;
            if (q / 3 == 4) {
                memcpy(xc, x, n * d * sizeof(float));
                CHECK(duet_pca_fit_randomized_in_place(xc, n, d, k, &o, mr, br, vr, &e) == DUET_OK);
                CHECK((memcmp(xc, x, n * d * sizeof(float)) != 0) == (prec && duet_cpu_has_bf16()));
            } else CHECK(duet_pca_fit_randomized(x, n, d, k, &o, mr, br, vr, &e) == DUET_OK);
            double s = max_sin_angle(be, br, d, k);
            /* measured: f32 1.0e-3 at q = 0 (the tail's energy), 4e-6 at q
             * = 1 and 2; bf16 products (8-bit mantissa) 8.8e-3 and 2.7e-3 */
            const double bound[2][2] = {{3e-3, 2e-5}, {2e-2, 6e-3}};
            CHECK_MSG(s < bound[prec][o.power_iters > 0], "%s case %d: sin %.3g", prec ? "bf16" : "f32", q, s);
            CHECK(orth_err(br, d, k) < 1e-5);
            /* Rayleigh-Ritz: the variances are the eigenvalues */
            for (size_t c = 0; c < k; c++) CHECK_CLOSE(vr[c], ve[c], prec ? 1e-3 : 1e-5, 1e-6);
        }
    free(x); free(xc); free(mix); fit_free(&fe); fit_free(&fr);
}

TEST(pca_randomized_rank_deficient) {
    /* 20 samples in 100-D, 40 components (50 columns with oversampling):
     * the covariance has rank 19; the LU factor of its products stays of
     * full rank (unit diagonal), so CholeskyQR completes the basis */
    size_t n = 20, d = 100, k = 40;
    double s2[100];
    float *x = known_spectrum(n, d, s2, 3);
    fit f = fit_alloc(d, k);
    float *mean = f.mean, *b = f.basis, *v = f.var;
    duet_error e = {0};
    duet_pca_opts o = duet_pca_default_opts();
    int passes = 0;
    o.passes = &passes;
    o.ritz_max = 0;
    CHECK(duet_pca_fit_randomized(x, n, d, k, &o, mean, b, v, &e) == DUET_OK);
    CHECK(passes >= 2);
    CHECK(orth_err(b, d, k) < 1e-5);
    /* all of the sample's variance lies in the first 19 columns */
    double total = 0, kept = 0;
    for (size_t j = 0; j < d; j++) {
        double s = 0, sq = 0;
        for (size_t i = 0; i < n; i++) s += x[i * d + j];
        for (size_t i = 0; i < n; i++) sq += (x[i * d + j] - s / n) * (x[i * d + j] - s / n);
        total += sq / (double)(n - 1);
    }
    for (size_t c = 0; c < 19; c++) kept += v[c];
    CHECK_CLOSE(kept, total, 1e-4, 1e-6);
    for (size_t c = 19; c < k; c++) CHECK(fabs(v[c]) < 1e-5 * v[0]);
    /* a start from samples: the 20 there are, Gaussian columns for the
     * other 30 */
    o.start = DUET_PCA_START_SAMPLES;
    CHECK(duet_pca_fit_randomized(x, n, d, k, &o, mean, b, v, &e) == DUET_OK);
    CHECK(orth_err(b, d, k) < 1e-5);
    kept = 0;
    for (size_t c = 0; c < 19; c++) kept += v[c];
    CHECK_CLOSE(kept, total, 1e-4, 1e-6);
    o.start = DUET_PCA_START_GAUSSIAN;
    /* constant data: no variance, still an orthonormal basis */
    for (size_t i = 0; i < n * d; i++) x[i] = 2.5f;
    CHECK(duet_pca_fit_randomized(x, n, d, k, &o, mean, b, v, &e) == DUET_OK);
    CHECK(orth_err(b, d, k) < 1e-5);
    for (size_t c = 0; c < k; c++) CHECK(v[c] == 0);
    CHECK(mean[0] == 2.5f && mean[d - 1] == 2.5f);
    free(x); fit_free(&f);
}

TEST(pca_randomized_bad_inputs) {
    size_t n = 30, d = 16, k = 4;
    double s2[16];
    float *x = known_spectrum(n, d, s2, 1);
    float mean[16], b[16 * 17], v[17];
    duet_error e = {0};
    duet_pca_opts o = duet_pca_default_opts();
    CHECK(duet_pca_fit_randomized(x, 0, d, k, &o, mean, b, v, &e) == DUET_ERR_EMPTY);
    CHECK(strstr(e.msg, "0 samples") != NULL);
    CHECK(duet_pca_fit_randomized(x, 1, d, k, &o, mean, b, v, &e) == DUET_ERR_EMPTY);
    CHECK(duet_pca_fit_randomized(x, n, d, d + 1, &o, mean, b, v, &e) == DUET_ERR_INVALID_ARG);
    CHECK(strstr(e.msg, "17 components of a 16-D input") != NULL);
    CHECK(duet_pca_fit_randomized(x, n, d, 0, &o, mean, b, v, &e) == DUET_ERR_INVALID_ARG);
    o.power_iters = 101;
    CHECK(duet_pca_fit_randomized(x, n, d, k, &o, mean, b, v, &e) == DUET_ERR_INVALID_ARG);
    CHECK(strstr(e.msg, "power iterations") != NULL);
    o = duet_pca_default_opts();
    o.orth = 7;
    CHECK(duet_pca_fit_randomized(x, n, d, k, &o, mean, b, v, &e) == DUET_ERR_INVALID_ARG);
    o = duet_pca_default_opts();
    o.start = 2;
    CHECK(duet_pca_fit_randomized(x, n, d, k, &o, mean, b, v, &e) == DUET_ERR_INVALID_ARG);
    CHECK(strstr(e.msg, "start") != NULL);
    o = duet_pca_default_opts();
    x[5 * d + 9] = NAN;
    CHECK(duet_pca_fit_randomized(x, n, d, k, &o, mean, b, v, &e) == DUET_ERR_NONFINITE);
    CHECK(strstr(e.msg, "column 9") != NULL);
    /* the same sizes fit once the input is clean; k = d is allowed */
    x[5 * d + 9] = 0;
    CHECK(duet_pca_fit_randomized(x, n, d, d, &o, mean, b, v, &e) == DUET_OK);
    CHECK(orth_err(b, d, d) < 1e-5);
    free(x);
}

TEST(pca_mean_and_populated_memory) {
    /* the mean on threads, column by column in row order: the serial
     * double sum, bit for bit */
    size_t n = 777, d = 1030;
    double s2[1030];
    float *x = known_spectrum(n, d, s2, 2), *mean = malloc(d * sizeof(float));
    double *m = calloc(d, sizeof(double));
    duet_pca_mean(x, n, d, m, mean);
    int same = 1;
    for (size_t j = 0; j < d; j++) {
        double s = 0;
        for (size_t i = 0; i < n; i++) s += x[i * d + j];
        same &= s / (double)n == m[j] && (float)(s / (double)n) == mean[j];
    }
    CHECK(same);
    /* populated allocations: writable end to end; overflow refused */
    size_t big = (size_t)3 << 20;
    unsigned char *p = duet_alloc_populated(big, 1);
    CHECK(p != NULL);
    if (p) { memset(p, 7, big); CHECK(p[0] == 7 && p[big - 1] == 7); }
    free(p);
    CHECK(duet_alloc_populated(SIZE_MAX / 2, 4) == NULL);
    p = duet_alloc_populated(0, 8);   /* small: a plain allocation */
    CHECK(p != NULL);
    free(p);
    free(x); free(mean); free(m);
}

int main(void) {
    RUN(pca_mean_and_populated_memory);
    RUN(pca_randomized_known_spectrum);
    RUN(pca_randomized_subspace_equals_exact);
    RUN(pca_randomized_rank_deficient);
    RUN(pca_randomized_bad_inputs);
    return check_summary("pca");
}
