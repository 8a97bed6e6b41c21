/* bench_pca.c -- the text PCA's two methods on one matrix, same run:
 *
 *   bench_pca [--n N] [--din D] [--dout K] [--iters Q] [--precision f32|bf16]
 *             [--orth cholqr|householder] [--start gaussian|samples]
 *             [--in-place] [--exact] [--threads T]
 *
 * --in-place fits with duet_pca_fit_randomized_in_place, as the text model
 * does (X is spent; not with --exact).
 *
 * X [N x D] has independent columns of standard deviation (1 + j)^-0.5, so
 * its exact top-K principal subspace is the first K coordinates and the
 * randomized fit's captured variance can be checked at full size without
 * the exact fit; --exact also times the exact method (LAPACK ssyevr) on the
 * same X. Defaults: fv-both on Flickr8K, N = 30000, D = 12000, K = 6000.
 * One JSON line per method on stdout: seconds (wall and CPU), the phases
 * (wall; "cpu": the same five in CPU seconds of all threads),
 * the fraction of the top-K variance captured and the orthogonality of the
 * basis (max |B^T B - I|, from an f32 SSYRK outside the timing). */
#define _POSIX_C_SOURCE 200809L
#include "text/text.h"
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Variance captured by basis [d x k] (columns), as a fraction of the top-k
 * of the diagonal covariance s2 (descending). */
static double captured(const float *basis, size_t d, size_t k, const double *s2) {
    double got = 0, best = 0;
    for (size_t j = 0; j < d; j++) {
        double w = 0;
        for (size_t c = 0; c < k; c++) w += (double)basis[j * k + c] * basis[j * k + c];
        got += w * s2[j];
    }
    for (size_t j = 0; j < k; j++) best += s2[j];
    return got / best;
}

/* max |B^T B - I| of basis [d x k]. */
static double orthogonality(const float *basis, size_t d, size_t k) {
    float *g = malloc(k * k * sizeof(float));
    if (!g) return -1;
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)k, (int)d, 1.0f, basis, (int)k, 0.0f, g, (int)k);
    double worst = 0;
    for (size_t i = 0; i < k; i++)
        for (size_t j = i; j < k; j++) {
            double e = fabs((double)g[i * k + j] - (i == j));
            if (e > worst) worst = e;
        }
    free(g);
    return worst;
}

int main(int argc, char **argv) {
    size_t n = 30000, din = 12000, dout = 6000;
    int iters = duet_pca_default_opts().power_iters, exact = 0, threads = 0, orth = DUET_PCA_ORTH_CHOLQR;
    int start = duet_pca_default_opts().start, in_place = 0;
    const char *prec = "bf16";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--n")) { n = strtoull(v, NULL, 10); i++; }
        else if (!strcmp(a, "--din")) { din = strtoull(v, NULL, 10); i++; }
        else if (!strcmp(a, "--dout")) { dout = strtoull(v, NULL, 10); i++; }
        else if (!strcmp(a, "--iters")) { iters = atoi(v); i++; }
        else if (!strcmp(a, "--precision")) { prec = v; i++; }
        else if (!strcmp(a, "--threads")) { threads = atoi(v); i++; }
        else if (!strcmp(a, "--orth")) { orth = !strcmp(v, "householder") ? DUET_PCA_ORTH_HOUSEHOLDER : DUET_PCA_ORTH_CHOLQR; i++; }
        else if (!strcmp(a, "--start")) { start = duet_pca_start_parse(v); i++; if (start < 0) { fprintf(stderr, "bench_pca: --start gaussian|samples\n"); return 2; } }
        else if (!strcmp(a, "--exact")) exact = 1;
        else if (!strcmp(a, "--in-place")) in_place = 1;
        else { fprintf(stderr, "bench_pca: unknown argument %s\n", a); return 2; }
    }
    if (in_place && exact) { fprintf(stderr, "bench_pca: --exact needs the input that --in-place spends\n"); return 2; }
    if (threads > 0) duet_set_threads(threads);
    float *x = malloc(n * din * sizeof(float)), *mean = malloc(din * sizeof(float));
    float *basis = malloc(din * dout * sizeof(float));
    double *s2 = malloc(din * sizeof(double));
    if (!x || !mean || !basis || !s2) { fprintf(stderr, "bench_pca: out of memory\n"); return 1; }
    duet_rng r;
    duet_rng_seed(&r, 17);
    for (size_t j = 0; j < din; j++) s2[j] = 1.0 / (1.0 + (double)j);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < din; j++) x[i * din + j] = duet_rng_normal(&r) * (float)sqrt(s2[j]);
    duet_error e = {0};
    duet_pca_opts o = duet_pca_default_opts();
    double ph[DUET_PCA_PHASES], pc[DUET_PCA_PHASES];
    int passes = 0;
    o.power_iters = iters;
    o.times = ph;
    o.cpu_times = pc;
    o.orth = orth;
    o.start = start;
    o.passes = &passes;
    int pp = duet_precision_parse(prec);
    if (pp < 0 || duet_precision_resolve((duet_precision)pp, &o.prec, &e)) { fprintf(stderr, "bench_pca: %s\n", e.msg[0] ? e.msg : prec); return 2; }
    double t0 = duet_now(), c0 = cpu_seconds();
    duet_status fs = in_place ? duet_pca_fit_randomized_in_place(x, n, din, dout, &o, mean, basis, NULL, &e)
                              : duet_pca_fit_randomized(x, n, din, dout, &o, mean, basis, NULL, &e);
    if (fs) { fprintf(stderr, "%s\n", e.msg); return 1; }
    double t = duet_now() - t0, c = cpu_seconds() - c0;
    printf("{\"method\":\"randomized\",\"n\":%zu,\"din\":%zu,\"dout\":%zu,\"iters\":%d,\"precision\":\"%s\",\"isa\":\"%s\","
           "\"orth\":\"%s\",\"start\":\"%s\",\"passes\":%d,\"seconds\":%.2f,\"cpu_seconds\":%.2f,\"covariance\":%.2f,\"products\":%.2f,"
           "\"lu\":%.2f,\"orthonormalize\":%.2f,\"ordering\":%.2f,\"cpu\":[%.2f,%.2f,%.2f,%.2f,%.2f],\"captured\":%.6f,"
           "\"orthogonality\":%.3g}\n", n, din, dout, iters, duet_precision_name(o.prec), duet_cpu_isa(),
           orth ? "householder" : "cholqr", duet_pca_start_name(start), passes, t, c, ph[0], ph[1], ph[2], ph[3], ph[4], pc[0], pc[1], pc[2], pc[3],
           pc[4], captured(basis, din, dout, s2), orthogonality(basis, din, dout));
    fflush(stdout);
    if (exact) {
        t0 = duet_now();
        c0 = cpu_seconds();
        if (duet_pca_fit(x, n, din, dout, mean, basis, NULL, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
        t = duet_now() - t0;
        c = cpu_seconds() - c0;
        printf("{\"method\":\"exact\",\"n\":%zu,\"din\":%zu,\"dout\":%zu,\"seconds\":%.2f,\"cpu_seconds\":%.2f,"
               "\"captured\":%.6f,\"orthogonality\":%.3g}\n", n, din, dout, t, c, captured(basis, din, dout, s2),
               orthogonality(basis, din, dout));
    }
    free(x); free(mean); free(basis); free(s2);
    return 0;
}
