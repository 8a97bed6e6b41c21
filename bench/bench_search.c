/* bench_search.c -- make bench, part "search" (duet side; bench/bench_search.py
 * is FAISS IndexFlatIP, bench/bench_search.sh runs both).
 *
 *   bench_search --n N [--nq 1000] [--d 512] [--k 10] --threads T [--reps 3]
 *
 * Random unit vectors (N gallery rows, nq queries, seeded), exact top-k by
 * inner product with duet_topk; the best of reps runs. One JSON line on
 * stdout, with the sum of the top-1 indices so the two sides can be compared
 * on the same data: --prepare DIR also writes DIR/gallery.npy and
 * DIR/queries.npy for bench_search.py.
 */
#define _POSIX_C_SOURCE 200809L
#include "core/core.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void unit_rows(float *x, size_t n, size_t d, duet_rng *r) {
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (size_t j = 0; j < d; j++) { x[i * d + j] = duet_rng_normal(r); s += (double)x[i * d + j] * x[i * d + j]; }
        float inv = (float)(1.0 / sqrt(s));
        for (size_t j = 0; j < d; j++) x[i * d + j] *= inv;
    }
}

int main(int argc, char **argv) {
    size_t n = 100000, nq = 1000, d = 512, k = 10;
    int threads = 1, reps = 3;
    const char *prep = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--n")) n = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--nq")) nq = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--d")) d = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--k")) k = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--prepare")) prep = argv[i + 1];
        else { fprintf(stderr, "bench_search: unknown flag %s\n", argv[i]); return 2; }
    }
    duet_rng r;
    duet_rng_seed(&r, 2016);
    float *g = malloc(n * d * sizeof(float)), *q = malloc(nq * d * sizeof(float));
    duet_hit *h = malloc(nq * k * sizeof *h);
    if (!g || !q || !h) { fprintf(stderr, "bench_search: out of memory\n"); return 1; }
    unit_rows(g, n, d, &r);
    unit_rows(q, nq, d, &r);
    duet_mat gm = {g, n, d}, qm = {q, nq, d};
    duet_error e = {0};
    if (prep) { /* the same rows for the FAISS side */
        char p[4096];
        snprintf(p, sizeof p, "%s/gallery.npy", prep);
        if (duet_npy_write(p, &gm, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
        snprintf(p, sizeof p, "%s/queries.npy", prep);
        if (duet_npy_write(p, &qm, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    }
    duet_set_threads(threads);
    double best = 1e30;
    for (int i = 0; i < reps; i++) {
        double t0 = duet_now();
        if (duet_topk(&qm, &gm, k, h, NULL, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
        double t = duet_now() - t0;
        if (t < best) best = t;
    }
    unsigned long long sum = 0;
    for (size_t i = 0; i < nq; i++) sum += h[i * k].index;
    printf("{\"part\": \"search\", \"impl\": \"duet\", \"n\": %zu, \"nq\": %zu, \"d\": %zu, \"k\": %zu, "
           "\"threads\": %d, \"seconds\": %.6f, \"qps\": %.1f, \"top1_sum\": %llu}\n",
           n, nq, d, k, threads, best, (double)nq / best, sum);
    free(g); free(q); free(h);
    return 0;
}
