/* bench_image.c -- images/s of duet's CNN inference (part "image" of make
 * bench). Prints one JSON line:
 *   {"impl":"duet","model":M,"precision":P,"isa":I,"threads":T,"batch":B,
 *    "images_per_s":X,"gflops":G,"gflop_per_image":F}
 * (isa: the instruction set oneDNN used, duet_cpu_isa())
 * usage: bench_image --model resnet50|mobilenetv2 --weights PATH
 *                    [--precision f32|bf16|auto|int8] [--threads T] [--batch B]
 *                    [--seconds S]
 * For the uint8 MobileNetV2, f32 and bf16 are its float emulation (the
 * int8 rule is switched off: src/image/image.h) and int8 its integer path
 * (refused where the CPU has no VNNI or the model is not quantized). */
#define _POSIX_C_SOURCE 200809L
#include "duet.h"
#include "image/image.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    const char *model = "resnet50", *weights = NULL, *prec = "f32";
    int threads = 1, batch = 8;
    double seconds = 20;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--weights")) weights = argv[i + 1];
        else if (!strcmp(argv[i], "--precision")) prec = argv[i + 1];
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
        else { fprintf(stderr, "bench_image: unknown flag %s\n", argv[i]); return 2; }
    }
    if (!weights || threads < 1 || batch < 1) { fprintf(stderr, "bench_image: --weights is required\n"); return 2; }
    duet_set_threads(threads);
    duet_error e = {0};
    duet_cnn *net = NULL;
    duet_status st = strcmp(model, "mobilenetv2") == 0 ? duet_cnn_load_tflite(weights, &net, &e)
                                                       : duet_cnn_load_tfjs(weights, &net, &e);
    int int8 = strcmp(prec, "int8") == 0;
    if (!st) {
        int p = int8 ? DUET_PRECISION_F32 : duet_precision_parse(prec);
        if (p < 0) { fprintf(stderr, "bench_image: precision '%s' (f32, bf16, auto, int8)\n", prec); return 2; }
        st = duet_cnn_set_precision(net, (duet_precision)p, &e);
    }
    if (st) { fprintf(stderr, "bench_image: %s\n", e.msg); return 1; }
    const char *isa = duet_cpu_isa();
    int vnni = strstr(isa, "VNNI") || strstr(isa, "AMX") || strstr(isa, "BF16");
    cnn_set_int8(net, int8 && vnni ? CNN_INT8_ON : CNN_INT8_OFF);
    if (int8 && !cnn_int8(net)) {
        fprintf(stderr, "bench_image: no int8 here (%s, %s)\n", isa, net->quant ? "quantized model" : "float model");
        return 1;
    }
    size_t P = (size_t)DUET_IMAGE_SIDE * DUET_IMAGE_SIDE * 3;
    float *in = malloc((size_t)batch * P * sizeof(float));
    float *f = malloc((size_t)batch * duet_cnn_feature_dim(net) * sizeof(float));
    duet_rng r;
    duet_rng_seed(&r, 1);
    for (size_t i = 0; i < (size_t)batch * P; i++) in[i] = 255.0f * duet_rng_uniform(&r);
    if (duet_cnn_run(net, in, (size_t)batch, f, NULL, &e)) { fprintf(stderr, "bench_image: %s\n", e.msg); return 1; } /* warm-up */
    size_t imgs = 0;
    double t0 = now(), el = 0;
    do {
        if (duet_cnn_run(net, in, (size_t)batch, f, NULL, &e)) { fprintf(stderr, "bench_image: %s\n", e.msg); return 1; }
        imgs += (size_t)batch;
        el = now() - t0;
    } while (el < seconds);
    double ips = (double)imgs / el, gf = duet_cnn_flops(net) / 1e9;
    printf("{\"impl\":\"duet\",\"model\":\"%s\",\"precision\":\"%s\",\"isa\":\"%s\",\"threads\":%d,"
           "\"batch\":%d,\"images_per_s\":%.3f,\"gflops\":%.2f,\"gflop_per_image\":%.3f}\n", model,
           int8 ? "int8" : duet_precision_name(duet_cnn_precision(net)), duet_cpu_isa(), threads, batch, ips, ips * gf, gf);
    free(in); free(f);
    duet_cnn_free(net);
    return 0;
}
