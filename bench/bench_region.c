/* bench_region.c -- part "region" of make bench: per image, the cost of
 * phrase-localization regions beside one full-image CNN pass, same run:
 *   proposals    duet_proposals (selective search, 300 boxes)
 *   cnn          one 224x224 ResNet-50 pass that keeps the last feature map
 *   roi          RoI-align features of every box (one GEMM)
 *   branch       the image branch (paper size, random weights) on every box
 *                and on the rest of the image around it (2 x boxes rows)
 * Prints one JSON line per image set:
 *   {"part":"region","images":N,"threads":T,"boxes_per_image":B,
 *    "proposals_ms":..,"cnn_ms":..,"roi_ms":..,"branch_ms":..}
 * usage: bench_region --weights model.json --list FILE --root DIR
 *                     [--threads T] [--n N] */
#define _POSIX_C_SOURCE 200809L
#include "duet.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define DIE(...) do { fprintf(stderr, "bench_region: " __VA_ARGS__); fputc('\n', stderr); return 1; } while (0)

int main(int argc, char **argv) {
    const char *weights = NULL, *list = NULL, *root = NULL;
    int threads = 1, n = 20;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--weights")) weights = argv[i + 1];
        else if (!strcmp(argv[i], "--list")) list = argv[i + 1];
        else if (!strcmp(argv[i], "--root")) root = argv[i + 1];
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--n")) n = atoi(argv[i + 1]);
        else DIE("unknown flag %s", argv[i]);
    }
    if (!weights || !list || !root || threads < 1 || n < 1) DIE("--weights, --list and --root are required");
    duet_set_threads(threads);
    duet_error e = {0};
    duet_cnn *net = NULL;
    if (duet_cnn_load_tfjs(weights, &net, &e)) DIE("%s", e.msg);
    int mh, mw, c;
    duet_cnn_map_shape(net, &mh, &mw, &c);
    duet_params p = duet_default_params();
    duet_rng rng;
    duet_rng_seed(&rng, 1);
    duet_model *m = NULL;
    if (duet_model_create((size_t)c, 6000, &p, &rng, &m, &e)) DIE("%s", e.msg);
    FILE *f = fopen(list, "r");
    if (!f) DIE("%s: cannot open", list);
    size_t P = (size_t)DUET_IMAGE_SIDE * DUET_IMAGE_SIDE * 3, D = duet_model_embed_dim(m);
    float *in = malloc(P * sizeof(float)), *map = malloc((size_t)mh * mw * c * sizeof(float));
    double t_prop = 0, t_cnn = 0, t_roi = 0, t_branch = 0;
    size_t boxes = 0;
    char line[1024];
    int done = 0;
    while (done < n && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!*line) continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", root, line);
        duet_image im = {0};
        duet_box *b = NULL;
        size_t nb = 0;
        if (duet_image_read(path, &im, &e)) DIE("%s", e.msg);
        double t0 = now();
        if (duet_proposals(&im, NULL, &b, &nb, &e)) DIE("%s", e.msg);
        double t1 = now();
        if (duet_image_crops(&im, 1, in, &e) || duet_cnn_run_map(net, in, 1, map, NULL, &e)) DIE("%s", e.msg);
        double t2 = now();
        float *feat = malloc(2 * nb * (size_t)c * sizeof(float)), *emb = malloc(2 * nb * D * sizeof(float));
        if (duet_roi_features(map, mh, mw, c, im.width, im.height, b, nb, feat, &e)) DIE("%s", e.msg);
        double t3 = now();
        memcpy(feat + nb * (size_t)c, feat, nb * (size_t)c * sizeof(float));   /* stand-in for the rest rows */
        duet_mat x = {feat, 2 * nb, (size_t)c}, y = {emb, 2 * nb, D};
        if (duet_model_embed(m, DUET_SIDE_IMAGE, &x, &y, &e)) DIE("%s", e.msg);
        double t4 = now();
        if (done > 0) {   /* the first image warms up */
            t_prop += t1 - t0; t_cnn += t2 - t1; t_roi += t3 - t2; t_branch += t4 - t3;
            boxes += nb;
        }
        free(feat); free(emb); free(b);
        duet_image_free(&im);
        done++;
    }
    fclose(f);
    if (done < 2) DIE("fewer than 2 images in %s", list);
    double k = 1000.0 / (done - 1);
    printf("{\"part\":\"region\",\"images\":%d,\"threads\":%d,\"boxes_per_image\":%.1f,\"proposals_ms\":%.2f,"
           "\"cnn_ms\":%.2f,\"roi_ms\":%.3f,\"branch_ms\":%.2f}\n", done - 1, threads, (double)boxes / (done - 1),
           t_prop * k, t_cnn * k, t_roi * k, t_branch * k);
    free(in); free(map);
    duet_model_free(m);
    duet_cnn_free(net);
    return 0;
}
