/* bench_search.c -- make bench, part "search" (duet side; bench/bench_search.py
 * is FAISS IndexFlatIP, bench/bench_search.sh runs both).
 *
 *   bench_search --n N [--nq 1000] [--d 512] [--k 10] --threads T [--reps 3]
 *                [--precision f32|bf16]
 *
 * Random unit vectors (N gallery rows, nq queries, seeded), exact top-k by
 * inner product with a duet_searcher (prepared once: for bf16 the gallery's
 * bf16 copy, timed apart as prepare_s); the best of reps runs. One JSON line
 * on stdout, with the sum of the top-1 indices and a checksum of all top-k
 * indices (sum of index x rank) so the sides can be compared on the same
 * data: --prepare DIR also writes DIR/gallery.npy and DIR/queries.npy for
 * bench_search.py.
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
    const char *prep = NULL, *prec = "f32";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--n")) n = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--nq")) nq = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--d")) d = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--k")) k = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--prepare")) prep = argv[i + 1];
        else if (!strcmp(argv[i], "--precision")) prec = argv[i + 1];
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
    int pv = duet_precision_parse(prec);
    if (pv < 0) { fprintf(stderr, "bench_search: --precision %s\n", prec); return 2; }
    duet_searcher *srch = NULL;
    double t0 = duet_now();
    if (duet_searcher_new(&gm, (duet_precision)pv, &srch, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    double t_prep = duet_now() - t0, best = 1e30;
    for (int i = 0; i < reps; i++) {
        t0 = duet_now();
        if (duet_searcher_topk(srch, &qm, k, h, NULL, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
        double t = duet_now() - t0;
        if (t < best) best = t;
    }
    unsigned long long sum = 0, topk = 0;
    for (size_t i = 0; i < nq; i++) {
        sum += h[i * k].index;
        for (size_t j = 0; j < k; j++) topk += h[i * k + j].index * (j + 1);
    }
    printf("{\"part\": \"search\", \"impl\": \"duet\", \"precision\": \"%s\", \"isa\": \"%s\", \"n\": %zu, "
           "\"nq\": %zu, \"d\": %zu, \"k\": %zu, \"threads\": %d, \"seconds\": %.6f, \"prepare_s\": %.3f, "
           "\"qps\": %.1f, \"top1_sum\": %llu, \"topk_sum\": %llu}\n",
           duet_precision_name(duet_searcher_precision(srch)), duet_cpu_isa(), n, nq, d, k, threads, best, t_prep,
           (double)nq / best, sum, topk);
    duet_searcher_free(srch);
    free(g); free(q); free(h);
    return 0;
}
