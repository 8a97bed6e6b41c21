/* bench_shard.c -- make bench, part "shard" (bench/bench_shard.sh runs it).
 *
 *   bench_shard write --n N [--d 512] --shards S --model M --textmodel T --dir DIR
 *       random unit rows (seeded) named r0000000.jpg ... as DIR/whole.index
 *       and DIR/sh.index (S shards), recording model M and text model T
 *       (their hashes) so that `duet search` encodes queries for them.
 *   bench_shard open --index P [--reps 3] [--threads 2]
 *       times duet_index_open (memory-mapped: the CRC-32C of the whole file
 *       is verified at open) beside its peer, one pass that reads every
 *       byte of the same mapping on the same threads (summing 64-bit
 *       words), and the CRC of the bytes already in memory; best of reps,
 *       the file in the page cache (a first open warms it). One JSON line.
 */
#define _POSIX_C_SOURCE 200809L
#include "core/core.h"
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *arg(int argc, char **argv, const char *name, const char *dflt) {
    for (int i = 2; i + 1 < argc; i += 2)
        if (!strcmp(argv[i], name)) return argv[i + 1];
    return dflt;
}

static int bench_write(int argc, char **argv) {
    size_t n = strtoull(arg(argc, argv, "--n", "1000000"), NULL, 10), d = strtoull(arg(argc, argv, "--d", "512"), NULL, 10);
    size_t shards = strtoull(arg(argc, argv, "--shards", "2"), NULL, 10);
    const char *model = arg(argc, argv, "--model", NULL), *tm = arg(argc, argv, "--textmodel", NULL),
               *dir = arg(argc, argv, "--dir", NULL);
    if (!model || !tm || !dir) { fprintf(stderr, "bench_shard write: --model, --textmodel and --dir are required\n"); return 2; }
    float *g = malloc(n * d * sizeof(float));
    char **names = calloc(n, sizeof *names), *nb = malloc(n * 24);
    if (!g || !names || !nb) { fprintf(stderr, "bench_shard: out of memory\n"); return 1; }
    duet_rng r;
    duet_rng_seed(&r, 2016);
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (size_t j = 0; j < d; j++) { g[i * d + j] = duet_rng_normal(&r); s += (double)g[i * d + j] * g[i * d + j]; }
        for (size_t j = 0; j < d; j++) g[i * d + j] *= (float)(1.0 / sqrt(s));
        names[i] = nb + i * 24;
        snprintf(names[i], 24, "r%07zu.jpg", i);
    }
    duet_error e = {0};
    char mh[17], th[17], mhs[32], ths[32], p[4096];
    if (duet_file_hash(model, mh, &e) || duet_file_hash(tm, th, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    snprintf(mhs, sizeof mhs, "fnv1a64:%s", mh);
    snprintf(ths, sizeof ths, "fnv1a64:%s", th);
    duet_index_meta m = {model, mhs, tm, ths, "mobilenetv2 crops=1", NULL, "f32", NULL};
    duet_index_rows rows = {d, n, g, (const char *const *)names, 0, NULL, NULL};
    double t0 = duet_now();
    snprintf(p, sizeof p, "%s/whole.index", dir);
    if (duet_index_write(p, &m, &rows, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    double t1 = duet_now();
    snprintf(p, sizeof p, "%s/sh.index", dir);
    if (duet_index_write_sharded(p, &m, &rows, shards, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    printf("{\"part\":\"shard-write\",\"n\":%zu,\"d\":%zu,\"shards\":%zu,\"write_s\":%.3f,\"write_sharded_s\":%.3f}\n",
           n, d, shards, t1 - t0, duet_now() - t1);
    free(g); free(names); free(nb);
    return 0;
}

typedef struct sum_ctx {
    const uint64_t *w;
    size_t n;                  /* words */
    uint64_t part[DUET_MAX_THREADS * 8];
} sum_ctx;

static void sum_blocks(void *vc, size_t b0, size_t b1) {
    sum_ctx *c = vc;
    size_t per = (c->n + 63) / 64;
    uint64_t s = 0;
    for (size_t b = b0; b < b1; b++)
        for (size_t i = b * per; i < (b + 1) * per && i < c->n; i++) s += c->w[i];
    c->part[b0 % (DUET_MAX_THREADS * 8)] += s;
}

static int bench_open(int argc, char **argv) {
    const char *path = arg(argc, argv, "--index", NULL);
    int reps = atoi(arg(argc, argv, "--reps", "3")), threads = atoi(arg(argc, argv, "--threads", "2"));
    if (!path) { fprintf(stderr, "bench_shard open: --index is required\n"); return 2; }
    duet_set_threads(threads);
    duet_error e = {0};
    duet_index *ix = NULL;
    if (duet_index_open(path, 1, &ix, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; } /* warms the cache */
    duet_index_free(ix);
    int fd = open(path, O_RDONLY);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb)) { fprintf(stderr, "bench_shard: %s: cannot open\n", path); return 1; }
    size_t len = (size_t)sb.st_size;
    double best_open = 1e30, best_read = 1e30, best_mem = 1e30;
    char *copy = malloc(len);
    uint64_t sink = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = duet_now();
        if (duet_index_open(path, 1, &ix, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
        double t1 = duet_now();
        duet_index_free(ix);
        if (t1 - t0 < best_open) best_open = t1 - t0;
        void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) { fprintf(stderr, "bench_shard: mmap failed\n"); return 1; }
        sum_ctx c = {m, len / 8, {0}};
        t0 = duet_now();
        duet_parallel_for(64, 1, sum_blocks, &c);
        t1 = duet_now();
        for (size_t i = 0; i < sizeof c.part / sizeof c.part[0]; i++) sink += c.part[i];
        if (t1 - t0 < best_read) best_read = t1 - t0;
        if (copy) {
            memcpy(copy, m, len);
            t0 = duet_now();
            sink += duet_crc32c_parallel(copy, len);
            t1 = duet_now();
            if (t1 - t0 < best_mem) best_mem = t1 - t0;
        }
        munmap(m, len);
    }
    close(fd);
    free(copy);
    printf("{\"part\":\"shard-open\",\"bytes\":%zu,\"threads\":%d,\"open_s\":%.4f,\"read_pass_s\":%.4f,"
           "\"crc_in_memory_s\":%.4f,\"crc_gb_s\":%.2f,\"isa\":\"%s\",\"sink\":%llu}\n", len, threads, best_open,
           best_read, best_mem, (double)len / best_mem / 1e9, duet_cpu_isa(), (unsigned long long)(sink & 1));
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "write")) return bench_write(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "open")) return bench_open(argc, argv);
    fprintf(stderr, "usage: bench_shard write|open ... (see bench/bench_shard.c)\n");
    return 2;
}
