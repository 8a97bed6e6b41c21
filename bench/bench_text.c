/* bench_text.c -- make bench, part "text" (duet side; bench/bench_text.py is
 * the numpy / scikit-learn side, bench/bench_text.sh runs both).
 *
 *   bench_text --prepare DIR [--sentences N] [--points N]
 *       writes the shared inputs: a 30-component diagonal GMM in 100 dims
 *       fitted on mixture data (gmm_x.npy, gmm_init_*.npy) and sentences of
 *       6-18 tokens (fv_tokens.npy, fv_starts.npy, fv_model_*.npy)
 *   bench_text DIR --threads T [--iters I]
 *       times Fisher-vector encoding (sentences/s) and GMM EM (s, fixed
 *       iterations, tol 0) on them; one JSON line each on stdout; writes
 *       fv_duet.npy (the first 200 Fisher vectors) for the cross-check. */
#define _POSIX_C_SOURCE 200809L
#include "text/text.h"
#include <stdlib.h>
#include <string.h>

#define K 30
#define D 100

static void save(const char *dir, const char *name, const float *p, size_t r, size_t c) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    duet_mat m = {(float *)p, r, c};
    duet_error e = {0};
    if (duet_npy_write(path, &m, &e)) { fprintf(stderr, "%s\n", e.msg); exit(1); }
}
static duet_mat load(const char *dir, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    duet_mat m = {0};
    duet_error e = {0};
    if (duet_npy_read(path, &m, &e)) { fprintf(stderr, "%s (run --prepare first)\n", e.msg); exit(1); }
    return m;
}

static void prepare(const char *dir, size_t nsent, size_t npts) {
    duet_rng r;
    duet_rng_seed(&r, 2015);
    /* mixture data for the GMM fit */
    float *cent = malloc(K * D * sizeof(float)), *sc = malloc(K * D * sizeof(float));
    for (size_t i = 0; i < K * D; i++) { cent[i] = 0.3f * duet_rng_normal(&r); sc[i] = 0.05f + 0.1f * duet_rng_uniform(&r); }
    float *x = malloc(npts * D * sizeof(float));
    for (size_t i = 0; i < npts; i++) {
        size_t c = (size_t)duet_rng_below(&r, K);
        for (size_t j = 0; j < D; j++) x[i * D + j] = cent[c * D + j] + sc[c * D + j] * duet_rng_normal(&r);
    }
    duet_gmm g;
    duet_gmm_alloc(&g, K, D);
    duet_error e = {0};
    duet_gmm_init_kmeanspp(&g, x, NULL, npts, &r, &e);
    float w0[K], mu0[K * D], v0[K * D];
    for (size_t i = 0; i < K; i++) w0[i] = (float)g.w[i];
    for (size_t i = 0; i < K * D; i++) { mu0[i] = (float)g.mu[i]; v0[i] = (float)g.var[i]; }
    save(dir, "gmm_x", x, npts, D);
    save(dir, "gmm_init_w", w0, K, 1); save(dir, "gmm_init_mu", mu0, K, D); save(dir, "gmm_init_var", v0, K, D);
    /* the Fisher-vector model: 20 EM iterations on the data */
    duet_gmm_em(&g, x, NULL, npts, 20, 0, 1e-6, NULL, NULL, &e);
    for (size_t i = 0; i < K; i++) w0[i] = (float)g.w[i];
    for (size_t i = 0; i < K * D; i++) { mu0[i] = (float)g.mu[i]; v0[i] = (float)g.var[i]; }
    save(dir, "fv_model_w", w0, K, 1); save(dir, "fv_model_mu", mu0, K, D); save(dir, "fv_model_var", v0, K, D);
    /* sentences: tokens drawn from the data points (word vectors) */
    float *st = malloc((nsent + 1) * sizeof(float));
    size_t ntok = 0;
    st[0] = 0;
    for (size_t s = 0; s < nsent; s++) { ntok += 6 + (size_t)duet_rng_below(&r, 13); st[s + 1] = (float)ntok; }
    float *tok = malloc(ntok * D * sizeof(float));
    for (size_t t = 0; t < ntok; t++) memcpy(tok + t * D, x + (size_t)duet_rng_below(&r, npts) * D, D * sizeof(float));
    save(dir, "fv_tokens", tok, ntok, D);
    save(dir, "fv_starts", st, nsent + 1, 1);
    fprintf(stderr, "bench_text: prepared %zu GMM points, %zu sentences (%zu tokens) in %s\n", npts, nsent, ntok, dir);
    free(cent); free(sc); free(x); free(st); free(tok);
    duet_gmm_free(&g);
}

int main(int argc, char **argv) {
    const char *dir = NULL;
    int threads = 1, iters = 30, prep = 0;
    size_t nsent = 20000, npts = 100000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--prepare")) prep = 1;
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--sentences") && i + 1 < argc) nsent = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--points") && i + 1 < argc) npts = (size_t)atol(argv[++i]);
        else dir = argv[i];
    }
    if (!dir) { fprintf(stderr, "usage: bench_text [--prepare] DIR [--threads T]\n"); return 2; }
    if (prep) { prepare(dir, nsent, npts); return 0; }
    duet_set_threads(threads);
    duet_error e = {0};
    /* Fisher vectors */
    duet_mat w = load(dir, "fv_model_w"), mu = load(dir, "fv_model_mu"), var = load(dir, "fv_model_var");
    duet_mat tok = load(dir, "fv_tokens"), stf = load(dir, "fv_starts");
    size_t n = stf.rows - 1;
    size_t *start = malloc((n + 1) * sizeof(size_t));
    for (size_t i = 0; i <= n; i++) start[i] = (size_t)stf.data[i];
    duet_gmm g;
    duet_gmm_alloc(&g, K, D);
    for (size_t i = 0; i < K; i++) g.w[i] = w.data[i];
    for (size_t i = 0; i < K * D; i++) { g.mu[i] = mu.data[i]; g.var[i] = var.data[i]; }
    duet_fv_model m;
    duet_fv_from_gmm(&m, &g);
    size_t fd = duet_fv_dim(&m), chunk = 1024;
    float *out = malloc(chunk * fd * sizeof(float));
    float *first = malloc(200 * fd * sizeof(float));
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = duet_now();
        for (size_t b = 0; b < n; b += chunk) {
            size_t nb = n - b < chunk ? n - b : chunk;
            size_t sh[1025];
            for (size_t i = 0; i <= nb; i++) sh[i] = start[b + i] - start[b];
            duet_fv_encode(&m, tok.data + start[b] * D, sh, nb, out, fd, &e);
            if (b == 0) memcpy(first, out, 200 * fd * sizeof(float));
        }
        double t = duet_now() - t0;
        if (t < best) best = t;
    }
    save(dir, "fv_duet", first, 200, fd);
    printf("{\"impl\":\"duet\",\"what\":\"fisher_vectors\",\"threads\":%d,\"sentences\":%zu,\"tokens\":%zu,\"k\":%d,\"d\":%d,\"seconds\":%.4f,\"sentences_per_s\":%.1f}\n",
           threads, n, start[n], K, D, best, (double)n / best);
    /* GMM EM */
    duet_mat x = load(dir, "gmm_x"), iw = load(dir, "gmm_init_w"), imu = load(dir, "gmm_init_mu"), iv = load(dir, "gmm_init_var");
    for (size_t i = 0; i < K; i++) g.w[i] = iw.data[i];
    for (size_t i = 0; i < K * D; i++) { g.mu[i] = imu.data[i]; g.var[i] = iv.data[i]; }
    double t0 = duet_now();
    int it = 0;
    duet_gmm_em(&g, x.data, NULL, x.rows, iters, 0, 1e-6, NULL, &it, &e);
    double t = duet_now() - t0;
    printf("{\"impl\":\"duet\",\"what\":\"gmm_fit\",\"threads\":%d,\"points\":%zu,\"k\":%d,\"d\":%d,\"iters\":%d,\"seconds\":%.4f,\"score\":%.6f}\n",
           threads, x.rows, K, D, it, t, duet_gmm_score(&g, x.data, NULL, x.rows));
    duet_fv_free(&m); duet_gmm_free(&g);
    free(start); free(out); free(first);
    duet_mat_free(&w); duet_mat_free(&mu); duet_mat_free(&var); duet_mat_free(&tok); duet_mat_free(&stf);
    duet_mat_free(&x); duet_mat_free(&iw); duet_mat_free(&imu); duet_mat_free(&iv);
    return 0;
}
