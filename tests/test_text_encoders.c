/* test_text_encoders.c -- the text encoders against independent references
 * (tools/ref/ref_text.py: scikit-learn and numpy; fixtures in
 * tests/fixtures/text/): GMM EM = scikit-learn's GaussianMixture(diag),
 * HGLMM EM raises the likelihood every iteration, Fisher vectors = numpy,
 * PCA = numpy's SVD up to sign, tf-idf = TfidfVectorizer, mean exact. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "scratch.h"
#include "text/text.h"
#include <unistd.h>

#define FIX "tests/fixtures/text/"

static duet_mat fx(const char *name) {
    char p[256];
    snprintf(p, sizeof p, FIX "%s.npy", name);
    duet_mat m = {0};
    duet_error e = {0};
    if (duet_npy_read(p, &m, &e)) fprintf(stderr, "fixture %s: %s\n", p, e.msg);
    return m;
}

TEST(gmm_equals_sklearn) {
    duet_mat x = fx("gmm_x"), w0 = fx("gmm_w0"), mu0 = fx("gmm_mu0"), v0 = fx("gmm_var0");
    duet_mat w = fx("gmm_w"), mu = fx("gmm_mu"), var = fx("gmm_var"), sc = fx("gmm_score");
    CHECK(x.data && w.data && sc.data);
    if (!x.data || !w.data || !sc.data) return;
    size_t k = mu0.rows, d = mu0.cols;
    duet_gmm g;
    CHECK(duet_gmm_alloc(&g, k, d) == DUET_OK);
    for (size_t i = 0; i < k; i++) g.w[i] = w0.data[i];
    for (size_t i = 0; i < k * d; i++) { g.mu[i] = mu0.data[i]; g.var[i] = v0.data[i]; }
    duet_error e = {0};
    double trace[25];
    int it = 0;
    CHECK(duet_gmm_em(&g, x.data, NULL, x.rows, 25, 0.0, 1e-6, trace, &it, &e) == DUET_OK);
    CHECK(it == 25);
    /* tolerance: the fixtures are float32 (relative 6e-8) and EM runs in
     * double: parameters agree to 1e-4 relative + 1e-5 absolute */
    for (size_t i = 0; i < k; i++) CHECK_CLOSE(g.w[i], w.data[i], 1e-4, 1e-5);
    for (size_t i = 0; i < k * d; i++) {
        CHECK_CLOSE(g.mu[i], mu.data[i], 1e-4, 1e-5);
        CHECK_CLOSE(g.var[i], var.data[i], 1e-4, 1e-5);
    }
    CHECK_NEAR(duet_gmm_score(&g, x.data, NULL, x.rows), sc.data[0], 1e-4);
    for (int i = 1; i < 25; i++) CHECK(trace[i] >= trace[i - 1] - 1e-9);
    /* weights 2 on every point = the same fit */
    float *wt = malloc(x.rows * sizeof(float));
    for (size_t i = 0; i < x.rows; i++) wt[i] = 2.0f;
    duet_gmm g2;
    duet_gmm_alloc(&g2, k, d);
    for (size_t i = 0; i < k; i++) g2.w[i] = w0.data[i];
    for (size_t i = 0; i < k * d; i++) { g2.mu[i] = mu0.data[i]; g2.var[i] = v0.data[i]; }
    CHECK(duet_gmm_em(&g2, x.data, wt, x.rows, 25, 0.0, 1e-6, NULL, NULL, &e) == DUET_OK);
    for (size_t i = 0; i < k * d; i++) CHECK_NEAR(g2.mu[i], g.mu[i], 1e-9);
    free(wt);
    duet_gmm_free(&g); duet_gmm_free(&g2);
    duet_mat_free(&x); duet_mat_free(&w0); duet_mat_free(&mu0); duet_mat_free(&v0);
    duet_mat_free(&w); duet_mat_free(&mu); duet_mat_free(&var); duet_mat_free(&sc);
}

TEST(gmm_kmeanspp_fit_is_seeded) {
    duet_mat x = fx("gmm_x");
    if (!x.data) { CHECK(0); return; }
    duet_gmm a, b;
    duet_gmm_alloc(&a, 3, x.cols); duet_gmm_alloc(&b, 3, x.cols);
    duet_rng r1, r2;
    duet_rng_seed(&r1, 7); duet_rng_seed(&r2, 7);
    duet_error e = {0};
    CHECK(duet_gmm_init_kmeanspp(&a, x.data, NULL, x.rows, &r1, &e) == DUET_OK);
    CHECK(duet_gmm_init_kmeanspp(&b, x.data, NULL, x.rows, &r2, &e) == DUET_OK);
    CHECK(memcmp(a.mu, b.mu, 3 * x.cols * sizeof(double)) == 0);
    CHECK(duet_gmm_em(&a, x.data, NULL, x.rows, 100, 1e-8, 1e-6, NULL, NULL, &e) == DUET_OK);
    /* the blobs are well separated: the fit reaches sklearn's optimum */
    duet_mat sc = fx("gmm_score");
    CHECK(duet_gmm_score(&a, x.data, NULL, x.rows) >= sc.data[0] - 1e-3);
    duet_gmm_free(&a); duet_gmm_free(&b);
    duet_mat_free(&x); duet_mat_free(&sc);
}

TEST(hglmm_em_raises_likelihood) {
    duet_mat x = fx("gmm_x");
    if (!x.data) { CHECK(0); return; }
    /* heavy-tailed data: Laplacian dims should appear */
    size_t n = x.rows, d = x.cols;
    float *y = malloc(n * d * sizeof(float));
    duet_rng r;
    duet_rng_seed(&r, 3);
    for (size_t i = 0; i < n * d; i++) {
        float u = duet_rng_uniform(&r) - 0.5f;
        y[i] = x.data[i] + ((i % d) < 2 ? -logf(1 - 2 * fabsf(u) + 1e-7f) * (u < 0 ? -1.0f : 1.0f) : 0);
    }
    duet_gmm g;
    duet_gmm_alloc(&g, 3, d);
    duet_error e = {0};
    duet_rng_seed(&r, 1);
    duet_gmm_init_kmeanspp(&g, y, NULL, n, &r, &e);
    duet_gmm_em(&g, y, NULL, n, 5, 0, 1e-6, NULL, NULL, &e);
    duet_hglmm h;
    CHECK(duet_hglmm_from_gmm(&h, &g) == DUET_OK);
    double trace[40];
    int it = 0;
    CHECK(duet_hglmm_em(&h, y, NULL, n, 40, 0.0, 1e-3, trace, &it, &e) == DUET_OK);
    CHECK(it == 40);
    for (int i = 1; i < it; i++) CHECK_MSG(trace[i] >= trace[i - 1] - 1e-9, "iteration %d: %.9f < %.9f", i, trace[i], trace[i - 1]);
    size_t nlap = 0;
    for (size_t i = 0; i < 3 * d; i++) nlap += h.lap[i];
    CHECK(nlap > 0 && nlap < 3 * d);
    CHECK(duet_hglmm_score(&h, y, NULL, n) > trace[0]);
    duet_hglmm_free(&h); duet_gmm_free(&g); free(y); duet_mat_free(&x);
}

TEST(ica_unmixes_independent_sources) {
    /* 3 independent non-Gaussian sources, mixed; FastICA must recover them
     * up to scale and permutation, with white outputs */
    size_t n = 4000, d = 3;
    duet_rng r;
    duet_rng_seed(&r, 11);
    float *x = malloc(n * d * sizeof(float)), *x2 = malloc(2 * n * d * sizeof(float)), *wt = malloc(n * sizeof(float));
    double A[9] = {1, 0.6, -0.3, 0.4, 1, 0.5, -0.7, 0.2, 1};
    for (size_t i = 0; i < n; i++) {
        double u = duet_rng_uniform(&r) - 0.5, l1 = duet_rng_uniform(&r) - 0.5, l2 = duet_rng_uniform(&r);
        double s[3] = {-log(1 - 2 * fabs(l1) + 1e-12) * (l1 < 0 ? -1 : 1), u * 3.4, l2 * l2 * l2 * 4};
        for (size_t j = 0; j < d; j++) x[i * d + j] = (float)(A[j * 3] * s[0] + A[j * 3 + 1] * s[1] + A[j * 3 + 2] * s[2] + 1.0);
        wt[i] = 2.0f;
    }
    memcpy(x2, x, n * d * sizeof(float));
    memcpy(x2 + n * d, x, n * d * sizeof(float));
    float mean[3], U[9], mean2[3], U2[9];
    int it = 0;
    duet_error e = {0};
    duet_rng_seed(&r, 1);
    CHECK(duet_ica_fit(x, NULL, n, d, 500, 1e-6, &r, mean, U, &it, &e) == DUET_OK);
    CHECK(it > 0 && it < 500);
    /* P = U A: one dominant entry per row and per column */
    for (size_t i = 0; i < d; i++) {
        double mx = 0, ss = 0;
        for (size_t j = 0; j < d; j++) {
            double p = 0;
            for (size_t q = 0; q < d; q++) p += (double)U[i * d + q] * A[q * 3 + j];
            ss += p * p;
            if (fabs(p) > mx) mx = fabs(p);
        }
        CHECK_MSG(mx * mx / ss > 0.99, "row %zu of U A is not a scaled unit vector (%.3f)", i, mx * mx / ss);
    }
    /* outputs: zero mean, identity covariance */
    double c[9] = {0}, m[3] = {0};
    for (size_t i = 0; i < n; i++) {
        double y[3];
        for (size_t a = 0; a < d; a++) { y[a] = 0; for (size_t q = 0; q < d; q++) y[a] += (double)U[a * d + q] * (x[i * d + q] - mean[q]); m[a] += y[a]; }
        for (size_t a = 0; a < d; a++) for (size_t b = 0; b < d; b++) c[a * d + b] += y[a] * y[b];
    }
    for (size_t a = 0; a < d; a++) {
        CHECK_NEAR(m[a] / (double)n, 0, 1e-4);
        for (size_t b = 0; b < d; b++) CHECK_NEAR(c[a * d + b] / (double)n, a == b ? 1.0 : 0.0, 1e-4);
    }
    /* weights = repeated points */
    duet_rng_seed(&r, 1);
    CHECK(duet_ica_fit(x, wt, n, d, 500, 1e-6, &r, mean2, U2, NULL, &e) == DUET_OK);
    for (size_t i = 0; i < 9; i++) CHECK_NEAR(U2[i], U[i], 1e-4);
    duet_rng_seed(&r, 1);
    CHECK(duet_ica_fit(x2, NULL, 2 * n, d, 500, 1e-6, &r, mean2, U2, NULL, &e) == DUET_OK);
    for (size_t i = 0; i < 9; i++) CHECK_NEAR(U2[i], U[i], 1e-4);
    /* rank-deficient input is refused */
    for (size_t i = 0; i < n; i++) x[i * d + 2] = x[i * d];
    CHECK(duet_ica_fit(x, NULL, n, d, 50, 1e-6, &r, mean, U, NULL, &e) == DUET_ERR_INVALID_ARG);
    free(x); free(x2); free(wt);
}

static void fv_check(int hglmm) {
    duet_mat w = fx("fv_w"), mu = fx("fv_mu"), sc = fx("fv_scale"), lap = fx("fv_lap");
    duet_mat tok = fx("fv_tokens"), st = fx("fv_starts"), ref = fx(hglmm ? "fv_hglmm" : "fv_gmm");
    if (!w.data || !ref.data) { CHECK(0); return; }
    size_t k = mu.rows, d = mu.cols, n = st.rows - 1;
    duet_hglmm h;
    duet_hglmm_alloc(&h, k, d);
    for (size_t i = 0; i < k; i++) h.w[i] = w.data[i];
    for (size_t i = 0; i < k * d; i++) { h.mu[i] = mu.data[i]; h.scale[i] = sc.data[i]; h.lap[i] = hglmm && lap.data[i] > 0; }
    duet_fv_model m;
    CHECK(duet_fv_from_hglmm(&m, &h) == DUET_OK);
    size_t start[16];
    for (size_t i = 0; i <= n; i++) start[i] = (size_t)st.data[i];
    float *out = malloc(n * 2 * k * d * sizeof(float));
    duet_error e = {0};
    CHECK(duet_fv_encode(&m, tok.data, start, n, out, 2 * k * d, &e) == DUET_OK);
    CHECK(ref.cols == 2 * k * d);
    double worst = 0;
    for (size_t i = 0; i < n * 2 * k * d; i++) { double a = fabs(out[i] - ref.data[i]); if (a > worst) worst = a; }
    CHECK_MSG(worst <= 1e-5, "max |duet - numpy| = %.3g", worst);
    if (!hglmm) { /* the GMM path through duet_fv_from_gmm gives the same */
        duet_gmm g;
        duet_gmm_alloc(&g, k, d);
        for (size_t i = 0; i < k; i++) g.w[i] = w.data[i];
        for (size_t i = 0; i < k * d; i++) { g.mu[i] = mu.data[i]; g.var[i] = (double)sc.data[i] * sc.data[i]; }
        duet_fv_model m2;
        duet_fv_from_gmm(&m2, &g);
        float *o2 = malloc(n * 2 * k * d * sizeof(float));
        duet_fv_encode(&m2, tok.data, start, n, o2, 2 * k * d, &e);
        for (size_t i = 0; i < n * 2 * k * d; i++) CHECK_NEAR(o2[i], ref.data[i], 1e-5);
        free(o2); duet_fv_free(&m2); duet_gmm_free(&g);
    }
    /* an empty sentence: zeros */
    size_t s2[3] = {0, 0, 1};
    CHECK(duet_fv_encode(&m, tok.data, s2, 2, out, 2 * k * d, &e) == DUET_OK);
    double z = 0, one = 0;
    for (size_t i = 0; i < 2 * k * d; i++) { z += fabs(out[i]); one += (double)out[2 * k * d + i] * out[2 * k * d + i]; }
    CHECK(z == 0);
    CHECK_NEAR(one, 1.0, 1e-5);
    free(out); duet_fv_free(&m); duet_hglmm_free(&h);
    duet_mat_free(&w); duet_mat_free(&mu); duet_mat_free(&sc); duet_mat_free(&lap);
    duet_mat_free(&tok); duet_mat_free(&st); duet_mat_free(&ref);
}
TEST(fisher_gmm_equals_numpy) { fv_check(0); }
TEST(fisher_hglmm_equals_numpy) { fv_check(1); }

TEST(pca_equals_numpy_svd) {
    duet_mat x = fx("pca_x"), vt = fx("pca_vt"), var = fx("pca_var");
    if (!x.data || !vt.data) { CHECK(0); return; }
    size_t din = x.cols, dout = vt.rows;
    float *mean = malloc(din * sizeof(float)), *b = malloc(din * dout * sizeof(float)), *ev = malloc(dout * sizeof(float));
    duet_error e = {0};
    CHECK(duet_pca_fit(x.data, x.rows, din, dout, mean, b, ev, &e) == DUET_OK);
    for (size_t c = 0; c < dout; c++) {
        double dot = 0;
        for (size_t j = 0; j < din; j++) dot += (double)b[j * dout + c] * vt.data[c * din + j];
        double sg = dot < 0 ? -1 : 1;
        for (size_t j = 0; j < din; j++) CHECK_NEAR(b[j * dout + c], sg * vt.data[c * din + j], 1e-4);
        CHECK_CLOSE(ev[c], var.data[c], 1e-4, 1e-5);
        for (size_t c2 = 0; c2 < dout; c2++) { /* orthonormal */
            double s = 0;
            for (size_t j = 0; j < din; j++) s += (double)b[j * dout + c] * b[j * dout + c2];
            CHECK_NEAR(s, c == c2 ? 1.0 : 0.0, 1e-5);
        }
    }
    /* projection of the data: mean zero, variance = eigenvalue */
    float *y = malloc(x.rows * dout * sizeof(float));
    duet_pca_apply(x.data, x.rows, din, dout, mean, b, y);
    for (size_t c = 0; c < dout; c++) {
        double s = 0, s2 = 0;
        for (size_t i = 0; i < x.rows; i++) { s += y[i * dout + c]; s2 += (double)y[i * dout + c] * y[i * dout + c]; }
        CHECK_NEAR(s / (double)x.rows, 0, 1e-4);
        CHECK_CLOSE(s2 / (double)(x.rows - 1), ev[c], 1e-4, 1e-5);
    }
    CHECK(duet_pca_fit(x.data, 1, din, dout, mean, b, ev, &e) == DUET_ERR_EMPTY);
    CHECK(duet_pca_fit(x.data, x.rows, din, din + 1, mean, b, ev, &e) == DUET_ERR_INVALID_ARG);
    free(mean); free(b); free(ev); free(y);
    duet_mat_free(&x); duet_mat_free(&vt); duet_mat_free(&var);
}

/* Randomized PCA against the exact one (itself = numpy's SVD above) on
 * data with a decaying spectrum: the basis is orthonormal, it captures the
 * exact top-k variance to 0.5 %, the leading directions (well separated)
 * are the exact ones and var is the variance along each column (f32 with
 * Rayleigh-Ritz). Both orderings (Rayleigh-Ritz, and Rayleigh quotients
 * when ritz_max is exceeded), f32 and, on a CPU with native bf16, bf16
 * products. */
static double captured(const float *x, size_t n, size_t din, size_t dout, const float *mean, const float *b) {
    float *y = malloc(n * dout * sizeof(float));
    duet_pca_apply(x, n, din, dout, mean, b, y);
    double s = 0;
    for (size_t i = 0; i < n * dout; i++) s += (double)y[i] * y[i];
    free(y);
    return s / (double)(n - 1);
}
TEST(pca_randomized_matches_exact) {
    size_t n = 800, din = 160, dout = 48, lead = 4;
    float *x = malloc(n * din * sizeof(float)), *mix = malloc(din * din * sizeof(float));
    duet_rng r;
    duet_rng_seed(&r, 7);
    for (size_t i = 0; i < din * din; i++) mix[i] = duet_rng_normal(&r) / sqrtf((float)din);
    /* x = z diag(scale) mix + noise + 0.5, latent q of scale 8 / (q + 1)
     * for q < 4 (wide gaps), then 3 / (1 + q)^0.8 */
    for (size_t i = 0; i < n; i++) {
        float z[160];
        for (size_t q = 0; q < din; q++) z[q] = duet_rng_normal(&r) * (float)(q < 4 ? 8.0 / (double)(q + 1) : 3.0 / pow(1.0 + (double)q, 0.8));
        for (size_t j = 0; j < din; j++) {
            double s = 0.05 * duet_rng_normal(&r);
            for (size_t q = 0; q < din; q++) s += (double)z[q] * mix[q * din + j];
            x[i * din + j] = (float)s + 0.5f;
        }
    }
    float *me = malloc(din * sizeof(float)), *be = malloc(din * dout * sizeof(float)), *ve = malloc(dout * sizeof(float));
    float *mr = malloc(din * sizeof(float)), *br = malloc(din * dout * sizeof(float)), *vr = malloc(dout * sizeof(float));
    duet_error e = {0};
    CHECK(duet_pca_fit(x, n, din, dout, me, be, ve, &e) == DUET_OK);
    double exact = captured(x, n, din, dout, me, be);
    for (int prec = 0; prec < 2; prec++)
        for (int ritz = 0; ritz < 2; ritz++) {
            if (prec && !duet_cpu_has_bf16()) continue;
            duet_pca_opts o = duet_pca_default_opts();
            o.prec = prec ? DUET_PRECISION_BF16 : DUET_PRECISION_F32;
            o.ritz_max = ritz ? 1024 : 0;
            CHECK(duet_pca_fit_randomized(x, n, din, dout, &o, mr, br, vr, &e) == DUET_OK);
            for (size_t j = 0; j < din; j++) CHECK_NEAR(mr[j], me[j], 1e-5);
            for (size_t c = 0; c < dout; c++)
                for (size_t c2 = c; c2 < dout; c2++) {
                    double s = 0;
                    for (size_t j = 0; j < din; j++) s += (double)br[j * dout + c] * br[j * dout + c2];
                    CHECK_NEAR(s, c == c2 ? 1.0 : 0.0, 3e-5);
                }
            for (size_t c = 1; c < dout; c++) CHECK(vr[c] <= vr[c - 1]);
            double got = captured(x, n, din, dout, mr, br);
            CHECK(got <= exact * (1 + 1e-5));
            CHECK(got >= exact * 0.995);
            if (prec || !ritz) continue;
            /* f32 with Rayleigh-Ritz: the leading directions are the exact
             * ones (|cos| near 1), var is the variance along each */
            for (size_t c = 0; c < lead; c++) {
                double dot = 0;
                for (size_t j = 0; j < din; j++) dot += (double)br[j * dout + c] * be[j * dout + c];
                CHECK_NEAR(fabs(dot), 1.0, 1e-4);
                CHECK_CLOSE(vr[c], ve[c], 1e-4, 1e-5);
            }
            float *y = malloc(n * dout * sizeof(float));
            duet_pca_apply(x, n, din, dout, mr, br, y);
            for (size_t c = 0; c < dout; c += 7) {
                double s2 = 0;
                for (size_t i = 0; i < n; i++) s2 += (double)y[i * dout + c] * y[i * dout + c];
                CHECK_CLOSE(s2 / (double)(n - 1), vr[c], 1e-4, 1e-5);
            }
            free(y);
        }
    duet_pca_opts o = duet_pca_default_opts();
    CHECK(duet_pca_fit_randomized(x, 1, din, dout, &o, mr, br, vr, &e) == DUET_ERR_EMPTY);
    CHECK(duet_pca_fit_randomized(x, n, din, din + 1, &o, mr, br, vr, &e) == DUET_ERR_INVALID_ARG);
    o.power_iters = -1;
    CHECK(duet_pca_fit_randomized(x, n, din, dout, &o, mr, br, vr, &e) == DUET_ERR_INVALID_ARG);
    free(x); free(mix); free(me); free(be); free(ve); free(mr); free(br); free(vr);
}

TEST(tfidf_equals_sklearn) {
    duet_dataset *d = NULL;
    duet_error e = {0};
    CHECK(duet_dataset_load("tsv:" FIX "tfidf.tsv", &d, &e) == DUET_OK);
    duet_mat ref = fx("tfidf_all");
    if (!d || !ref.data) { CHECK(0); return; }
    duet_textmodel_params p = duet_textmodel_default_params();
    p.encoder = DUET_ENC_TFIDF;
    p.pca_dim = 0;
    duet_textmodel *m = NULL;
    CHECK(duet_textmodel_fit(d, NULL, &p, NULL, NULL, &m, NULL, &e) == DUET_OK);
    if (!m) { duet_dataset_free(d); return; }
    CHECK(duet_textmodel_dim(m) == ref.cols);
    duet_mat o = {calloc(d->n_captions * ref.cols, sizeof(float)), d->n_captions, ref.cols};
    CHECK(duet_textmodel_encode(m, (const char *const *)d->captions, d->n_captions, &o, NULL, NULL, &e) == DUET_OK);
    for (size_t i = 0; i < o.rows * o.cols; i++) CHECK_NEAR(o.data[i], ref.data[i], 1e-6);
    /* with PCA to 4 */
    duet_textmodel *m2 = NULL;
    p.pca_dim = 4;
    CHECK(duet_textmodel_fit(d, NULL, &p, NULL, NULL, &m2, NULL, &e) == DUET_OK);
    CHECK(m2 && duet_textmodel_dim(m2) == 4);
    duet_textmodel_free(m2);
    duet_mat_free(&o); duet_mat_free(&ref);
    duet_textmodel_free(m);
    duet_dataset_free(d);
}

/* A tiny GloVe file and caption set for the mean encoder and the model file. */
static void write_file(const char *path, const char *s) {
    FILE *f = fopen(path, "wb");
    fputs(s, f);
    fclose(f);
}
static const char *GLOVE =
    "the 1 0 0 0\n"
    "dog 0 3 0 4\n"
    "cat 1 1 1 1\n"
    "runs 0 0 2 0\n"
    "zero 0 0 0 0\n"
    "caf\xc3\xa9 2 0 0 0\n";

TEST(mean_encoder_exact_and_flags) {
    char gp[128], dp[128], mp[128];
    snprintf(gp, sizeof gp, "%s/v.txt", tmpdir);
    snprintf(dp, sizeof dp, "%s/d.tsv", tmpdir);
    snprintf(mp, sizeof mp, "%s/m.model", tmpdir);
    write_file(gp, GLOVE);
    write_file(dp, "a.jpg\tThe dog runs.\ttrain\na.jpg\tA cat!\ttrain\nb.jpg\tthe cat\tval\n");
    duet_error e = {0};
    duet_vectors *v = NULL;
    duet_dataset *d = NULL;
    char spec[160];
    snprintf(spec, sizeof spec, "tsv:%s", dp);
    CHECK(duet_vectors_import(gp, DUET_VEC_AUTO, &v, &e) == DUET_OK);
    CHECK(duet_dataset_load(spec, &d, &e) == DUET_OK);
    if (!v || !d) return;
    duet_textmodel_params p = duet_textmodel_default_params();
    p.encoder = DUET_ENC_MEAN;
    duet_textmodel *m = NULL;
    duet_text_stats st;
    CHECK(duet_textmodel_fit(d, v, &p, NULL, NULL, &m, &st, &e) == DUET_OK);
    if (!m) return;
    CHECK(st.n_captions == 2 && st.n_tokens == 5 && st.n_known == 4);
    const char *texts[] = {"THE DOG... runs?", "", "a b c 123", "The CAT\xff dog", "Caf\xc3\x89 zero"};
    duet_mat o = {calloc(5 * 4, sizeof(float)), 5, 4};
    uint8_t fl[5];
    CHECK(duet_textmodel_encode(m, texts, 5, &o, fl, &st, &e) == DUET_OK);
    /* (the + dog/5 + runs/2) / 3 of unit vectors */
    float want0[4] = {1.0f / 3, 0.6f / 3, 1.0f / 3, 0.8f / 3};
    for (int c = 0; c < 4; c++) CHECK_NEAR(o.data[c], want0[c], 1e-7);
    CHECK(fl[0] == 0 && fl[1] == DUET_TEXT_FLAG_EMPTY && fl[2] == DUET_TEXT_FLAG_EMPTY && fl[3] == 0 && fl[4] == 0);
    for (int c = 0; c < 4; c++) { CHECK(o.data[4 + c] == 0); CHECK(o.data[8 + c] == 0); }
    /* invalid byte 0xFF is a separator: the, cat, dog */
    float want3[4] = {(1 + 0.5f) / 3, (0.5f + 0.6f) / 3, 0.5f / 3, (0.5f + 0.8f) / 3};
    for (int c = 0; c < 4; c++) CHECK_NEAR(o.data[12 + c], want3[c], 1e-7);
    /* Latin-1 capital lowercased; the zero vector is dropped (OOV) */
    CHECK_NEAR(o.data[16], 1.0, 1e-7);
    CHECK(st.n_empty == 2 && st.n_invalid_utf8 == 1);
    for (size_t i = 0; i < 20; i++) CHECK(isfinite(o.data[i]));
    /* the model file round trip gives the same encodings */
    CHECK(duet_textmodel_save(m, mp, &e) == DUET_OK);
    duet_textmodel *m2 = NULL;
    CHECK(duet_textmodel_load(mp, &m2, &e) == DUET_OK);
    if (m2) {
        duet_mat o2 = {calloc(5 * 4, sizeof(float)), 5, 4};
        CHECK(duet_textmodel_encode(m2, texts, 5, &o2, NULL, NULL, &e) == DUET_OK);
        CHECK(memcmp(o.data, o2.data, 20 * sizeof(float)) == 0);
        duet_mat_free(&o2);
    }
    duet_textmodel_free(m2);
    /* another format version is refused */
    FILE *f = fopen(mp, "r+b");
    uint32_t ver = 3;
    fseek(f, 8, SEEK_SET); fwrite(&ver, 4, 1, f); fclose(f);
    m2 = NULL;
    CHECK(duet_textmodel_load(mp, &m2, &e) == DUET_ERR_VERSION && !m2);
    CHECK(strstr(e.msg, "version 3") != NULL);
    /* shape mismatch of the output */
    duet_mat bad = {o.data, 5, 3};
    CHECK(duet_textmodel_encode(m, texts, 5, &bad, NULL, NULL, &e) == DUET_ERR_SHAPE);
    duet_mat_free(&o);
    duet_textmodel_free(m);
    duet_vectors_free(v);
    duet_dataset_free(d);
    unlink(gp); unlink(dp); unlink(mp);
}

TEST(fisher_model_file_round_trip) {
    /* synthetic word vectors: 60 words in 8 dims, captions of them */
    char gp[128], dp[128], mp[128];
    snprintf(gp, sizeof gp, "%s/v2.txt", tmpdir);
    snprintf(dp, sizeof dp, "%s/d2.tsv", tmpdir);
    snprintf(mp, sizeof mp, "%s/m2.model", tmpdir);
    FILE *f = fopen(gp, "w");
    duet_rng r;
    duet_rng_seed(&r, 5);
    for (int w = 0; w < 60; w++) {
        fprintf(f, "w%c%c", 'a' + w / 26, 'a' + w % 26);
        for (int j = 0; j < 8; j++) fprintf(f, " %.5f", duet_rng_normal(&r) + (w % 3) * (j == w % 8));
        fputc('\n', f);
    }
    fclose(f);
    f = fopen(dp, "w");
    for (int i = 0; i < 200; i++) {
        fprintf(f, "i%d.jpg\t", i / 5);
        for (int t = 0; t < 6; t++) { int w = (int)duet_rng_below(&r, 60); fprintf(f, "W%c%c ", 'a' + w / 26, 'a' + w % 26); }
        fprintf(f, "\t%s\n", i < 150 ? "train" : "test");
    }
    fclose(f);
    duet_error e = {0};
    duet_vectors *v = NULL;
    duet_dataset *d = NULL;
    char spec[160];
    snprintf(spec, sizeof spec, "tsv:%s", dp);
    CHECK(duet_vectors_import(gp, DUET_VEC_GLOVE, &v, &e) == DUET_OK);
    CHECK(duet_dataset_load(spec, &d, &e) == DUET_OK);
    if (!v || !d) return;
    for (int enc = DUET_ENC_FV_GMM; enc <= DUET_ENC_FV_BOTH + 1; enc++) {
        duet_textmodel_params p = duet_textmodel_default_params();
        p.ica = enc > DUET_ENC_FV_BOTH;   /* the last round: fv-gmm with ICA */
        if (p.ica) enc = DUET_ENC_FV_GMM;
        p.encoder = (duet_encoder)enc;
        p.components = 3;
        p.pca_dim = enc == DUET_ENC_FV_BOTH ? 20 : 0;
        duet_textmodel *m = NULL;
        duet_text_stats st;
        CHECK_MSG(duet_textmodel_fit(d, v, &p, NULL, NULL, &m, &st, &e) == DUET_OK, "%s", e.msg);
        if (!m) continue;
        size_t dim = duet_textmodel_dim(m);
        CHECK(dim == (enc == DUET_ENC_FV_BOTH ? 20u : 48u));
        duet_mat o = {calloc(d->n_captions * dim, sizeof(float)), d->n_captions, dim};
        CHECK(duet_textmodel_encode(m, (const char *const *)d->captions, d->n_captions, &o, NULL, NULL, &e) == DUET_OK);
        if (enc != DUET_ENC_FV_BOTH)
            for (size_t i = 0; i < d->n_captions; i++) {
                double s = 0;
                for (size_t c = 0; c < dim; c++) s += (double)o.data[i * dim + c] * o.data[i * dim + c];
                CHECK_NEAR(s, 1.0, 1e-5);
            }
        CHECK(duet_textmodel_save(m, mp, &e) == DUET_OK);
        duet_textmodel *m2 = NULL;
        CHECK(duet_textmodel_load(mp, &m2, &e) == DUET_OK);
        if (m2) {
            duet_mat o2 = {calloc(d->n_captions * dim, sizeof(float)), d->n_captions, dim};
            CHECK(duet_textmodel_encode(m2, (const char *const *)d->captions, d->n_captions, &o2, NULL, NULL, &e) == DUET_OK);
            double worst = 0;
            for (size_t i = 0; i < d->n_captions * dim; i++) { double a = fabs(o.data[i] - o2.data[i]); if (a > worst) worst = a; }
            CHECK_MSG(worst < 1e-6, "%s: reloaded model differs by %.3g", duet_encoder_name((duet_encoder)enc), worst);
            duet_mat_free(&o2);
        }
        duet_textmodel_free(m2);
        /* the file's bytes in memory (as the main job sends the model to the
         * other ranks of an MPI job): the very same floats as the fitted model */
        char *buf = NULL;
        size_t len = 0;
        m2 = NULL;
        CHECK(duet_read_file(mp, (size_t)1 << 30, &buf, &len, &e) == DUET_OK);
        CHECK(duet_textmodel_load_mem(buf, len, "sent model", &m2, &e) == DUET_OK);
        if (m2) {
            duet_mat o2 = {calloc(d->n_captions * dim, sizeof(float)), d->n_captions, dim};
            CHECK(duet_textmodel_encode(m2, (const char *const *)d->captions, d->n_captions, &o2, NULL, NULL, &e) == DUET_OK);
            CHECK_MSG(memcmp(o.data, o2.data, d->n_captions * dim * sizeof(float)) == 0,
                      "%s: the model loaded from memory encodes other floats", duet_encoder_name((duet_encoder)enc));
            duet_mat_free(&o2);
        }
        duet_textmodel_free(m2);
        /* a damaged copy is refused with the name it was given (the buffer is freed) */
        buf = NULL;
        m2 = NULL;
        CHECK(duet_read_file(mp, (size_t)1 << 30, &buf, &len, &e) == DUET_OK);
        if (buf) buf[len / 2] ^= 0x10;
        CHECK(duet_textmodel_load_mem(buf, len, "sent model", &m2, &e) == DUET_ERR_FORMAT && !m2);
        CHECK(strstr(e.msg, "sent model") != NULL);
        duet_mat_free(&o);
        duet_textmodel_free(m);
        if (p.ica) break;
    }
    duet_vectors_free(v);
    duet_dataset_free(d);
    unlink(gp); unlink(dp); unlink(mp);
}

int main(void) {
    if (scratch_make("text")) return 1;
    RUN(gmm_equals_sklearn);
    RUN(gmm_kmeanspp_fit_is_seeded);
    RUN(hglmm_em_raises_likelihood);
    RUN(fisher_gmm_equals_numpy);
    RUN(fisher_hglmm_equals_numpy);
    RUN(ica_unmixes_independent_sources);
    RUN(pca_equals_numpy_svd);
    RUN(pca_randomized_matches_exact);
    RUN(tfidf_equals_sklearn);
    RUN(mean_encoder_exact_and_flags);
    RUN(fisher_model_file_round_trip);
    scratch_remove();
    return check_summary("text_encoders");
}
