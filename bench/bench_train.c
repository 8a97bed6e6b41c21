#define _POSIX_C_SOURCE 200809L
/* bench_train.c -- seconds per training epoch on Flickr30K-sized random
 * features (29,000 images x 5 captions, image 4096-D, text 6000-D), the
 * paper's configuration (hidden 2048, embed 512, B = 500 x S = 2, Adam,
 * dropout 0.5, K = 10), no validation, in f32 or bf16 (mixed precision).
 * Also measures oneDNN's own matmul rate, in the same precision, on the
 * largest product of a training step, so the report can say how close the
 * GEMM share of an epoch runs to it.
 *
 *   build/bench/bench_train --threads N [--epochs E] [--images N]
 *                           [--precision f32|bf16]
 *
 * Prints one JSON line on stdout. */
#include "duet.h"
#include "core/dnn.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Uniform [0,1) rows: a pool of 4096 random rows copied in shuffled order
 * (the same recipe as bench/bench_train.py), so generation is memcpy-bound. */
static void fill(float *x, size_t rows, size_t cols, duet_rng *r) {
    size_t pool = rows < 4096 ? rows : 4096;
    for (size_t i = 0; i < pool * cols; i++) x[i] = duet_rng_uniform(r);
    for (size_t s = pool; s < rows; s++)
        memcpy(x + s * cols, x + duet_rng_below(r, pool) * cols, cols * sizeof(float));
}

/* GFLOP/s of oneDNN's C[m x n] = A[m x k] B[k x n] in precision prec
 * (bf16: bf16 inputs, f32 output), best of reps; 0 when it cannot run. */
static double gemm_rate(duet_precision prec, size_t m, size_t n, size_t k, int reps) {
    duet_dnn d;
    duet_gemm g = {0};
    duet_error e = {0};
    size_t es = prec == DUET_PRECISION_BF16 ? 2 : 4;
    char *a = calloc(m * k, es), *b = calloc(k * n, es);
    float *c = calloc(m * n, 4);
    double best = 1e30;
    if (a && b && c && !duet_dnn_init(&d, prec, &e)) {
        for (size_t i = 0; i < m * k; i++) {
            float v = (float)(i % 7) * 0.1f;
            if (es == 4) memcpy(a + 4 * i, &v, 4); else duet_f32_to_bf16(&v, (uint16_t *)a + i, 1);
        }
        if (!duet_gemm_plan(&d, &g, duet_dnn_dt(prec), m, n, k, k, n, n, 0, 0, &e))
            for (int r = 0; r < reps; r++) {
                double t0 = now();
                if (duet_gemm_run(&d, &g, a, b, c, &e)) break;
                double t = now() - t0;
                if (t < best) best = t;
            }
        duet_gemm_free(&g);
        duet_dnn_fini(&d);
    }
    free(a); free(b); free(c);
    return best < 1e30 ? 2.0 * (double)m * (double)n * (double)k / best / 1e9 : 0.0;
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

typedef struct { double t0, last; int steps; } timing;
static int on_step(void *u, int epoch, size_t step, size_t steps, double loss) {
    (void)epoch; (void)steps; (void)loss;
    timing *t = u;
    if (step == 1) t->t0 = now();
    t->last = now();
    t->steps = (int)step;
    return 0;
}

int main(int argc, char **argv) {
    int threads = 1, epochs = 1;
    size_t n_img = 29000, caps = 5, di = 4096, dt = 6000;
    duet_precision prec = DUET_PRECISION_F32;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--epochs")) epochs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--images")) n_img = (size_t)atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--precision") && duet_precision_parse(argv[i + 1]) >= 0)
            prec = (duet_precision)duet_precision_parse(argv[i + 1]);
        else { fprintf(stderr, "unknown flag or value %s %s\n", argv[i], argv[i + 1]); return 2; }
    }
    duet_error pe = {0};
    if (duet_precision_resolve(prec, &prec, &pe)) { fprintf(stderr, "bench_train: %s\n", pe.msg); return 1; }
    duet_set_threads(threads);
    size_t nc = n_img * caps;
    double t0 = now();
    duet_rng r;
    duet_rng_seed(&r, 1);
    duet_mat img = {malloc(n_img * di * sizeof(float)), n_img, di};
    duet_mat txt = {malloc(nc * dt * sizeof(float)), nc, dt};
    if (!img.data || !txt.data) { fprintf(stderr, "out of memory\n"); return 1; }
    fill(img.data, n_img, di, &r);
    fill(txt.data, nc, dt, &r);
    /* a dataset of n_img train images with caps captions each */
    duet_dataset d = {0};
    d.source = "bench:random";
    d.n_images = n_img;
    d.n_captions = nc;
    d.image_split = calloc(n_img, 1);
    d.caption_image = malloc(nc * sizeof(size_t));
    d.image_cap_start = malloc((n_img + 1) * sizeof(size_t));
    d.image_caps = malloc(nc * sizeof(size_t));
    for (size_t j = 0; j < nc; j++) { d.caption_image[j] = j / caps; d.image_caps[j] = j; }
    for (size_t i = 0; i <= n_img; i++) d.image_cap_start[i] = i * caps;
    double gen = now() - t0;

    duet_params p = duet_default_params();
    p.epochs = epochs;
    p.threads = threads;
    p.precision = prec;
    timing tm = {0};
    duet_train_opts o = {0};
    o.progress = on_step;
    o.progress_user = &tm;
    duet_model *m = NULL;
    duet_epoch_log *log = NULL;
    size_t nlog = 0;
    duet_error e = {0};
    if (duet_train(&d, &img, &txt, &p, &o, &m, &log, &nlog, &e)) {
        fprintf(stderr, "bench_train: %s\n", e.msg);
        return 1;
    }
    /* steady state: steps 2..n (step 1 pays the first touch of the gradient
     * and optimizer slabs, as the PyTorch side's untimed warm-up does) */
    double first_epoch = log[nlog - 1].seconds;
    double epoch_s = tm.steps > 1 ? (tm.last - tm.t0) * tm.steps / (tm.steps - 1) : first_epoch;
    /* GEMM work of one step (B = 500 images, 1000 sentences), forward and
     * backward, in FLOPs: per branch fc1 fwd + dW1, fc2 fwd + dW2 + dD. */
    double B = 500, S = 1000, H = 2048, O = 512;
    double step_flops = 2 * (2 * B * di * H + 3 * B * H * O) + 2 * (2 * S * dt * H + 3 * S * H * O);
    int steps = (int)(n_img / 500);
    double gemm_gflop = step_flops * steps / 1e9;
    double peak = gemm_rate(prec, 1000, 2048, 6000, 3);
    printf("{\"impl\":\"duet\",\"threads\":%d,\"precision\":\"%s\",\"isa\":\"%s\","
           "\"seconds_per_epoch\":%.3f,\"first_epoch_seconds\":%.3f,\"steps\":%d,"
           "\"gen_seconds\":%.2f,\"gemm_gflop_per_epoch\":%.1f,\"effective_gflops\":%.1f,"
           "\"gemm_peak_gflops\":%.1f,\"gemm_efficiency\":%.3f,\"peak_rss_mb\":%.0f,"
           "\"data_mb\":%.0f}\n",
           threads, duet_precision_name(prec), duet_cpu_isa(), epoch_s, first_epoch, steps, gen,
           gemm_gflop, gemm_gflop / epoch_s, peak, peak > 0 ? gemm_gflop / epoch_s / peak : 0.0,
           peak_rss_mb(),
           (double)(n_img * di + nc * dt) * 4.0 / 1048576.0);
    free(log);
    duet_model_free(m);
    free(d.image_split); free(d.caption_image); free(d.image_cap_start); free(d.image_caps);
    duet_mat_free(&img);
    duet_mat_free(&txt);
    return 0;
}
