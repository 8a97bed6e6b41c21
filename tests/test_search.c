#define _POSIX_C_SOURCE 200809L
/* test_search.c -- exact top-k against a brute-force reference (ties, k > n,
 * NaN), the index file round trip (read and mmap), and corrupted or
 * truncated index files refused with clear messages. */
#include "check.h"
#include "scratch.h"
#include "search/search.h"
#include <unistd.h>

/* Brute force: best first, ties to the lower index; O(n k). The score is
 * duet's definition: the inner product accumulated in double, as float. */
static void brute(const float *q, const float *g, size_t n, size_t d, size_t k, duet_hit *out) {
    char *used = calloc(n, 1);
    for (size_t r = 0; r < k && r < n; r++) {
        size_t b = (size_t)-1;
        float bs = 0;
        for (size_t i = 0; i < n; i++) {
            if (used[i]) continue;
            double t = 0;
            for (size_t j = 0; j < d; j++) t += (double)q[j] * g[i * d + j];
            float s = (float)t;
            if (b == (size_t)-1 || s > bs) { b = i; bs = s; }
        }
        used[b] = 1;
        out[r] = (duet_hit){b, bs};
    }
    free(used);
}

static void fill_random(float *x, size_t n, duet_rng *r, int quantize) {
    for (size_t i = 0; i < n; i++) {
        float v = duet_rng_normal(r);
        x[i] = quantize ? (float)(int)(v * 2) : v; /* small integers: many exact ties */
    }
}

static void check_against_brute(size_t nq, size_t n, size_t d, size_t k, int quantize, uint64_t seed) {
    duet_rng r;
    duet_rng_seed(&r, seed);
    float *q = malloc(nq * d * sizeof(float)), *g = malloc(n * d * sizeof(float));
    fill_random(q, nq * d, &r, quantize);
    fill_random(g, n * d, &r, quantize);
    size_t kk = k < n ? k : n, got = 99;
    duet_hit *h = malloc((nq * kk + 1) * sizeof *h), *ref = malloc((kk + 1) * sizeof *ref);
    duet_mat qm = {q, nq, d}, gm = {g, n, d};
    duet_error e = {0};
    CHECK(duet_topk(&qm, &gm, k, h, &got, &e) == DUET_OK);
    CHECK(got == kk);
    int bad = 0;
    for (size_t i = 0; i < nq && !bad; i++) {
        brute(q + i * d, g, n, d, k, ref);
        for (size_t j = 0; j < kk; j++) {
            if (h[i * kk + j].index != ref[j].index || h[i * kk + j].score != ref[j].score) {
                CHECK_MSG(0, "nq %zu n %zu d %zu k %zu: query %zu rank %zu: got %zu (%g), want %zu (%g)",
                          nq, n, d, k, i, j, h[i * kk + j].index, (double)h[i * kk + j].score,
                          ref[j].index, (double)ref[j].score);
                bad = 1;
                break;
            }
        }
    }
    free(q); free(g); free(h); free(ref);
}

TEST(topk_matches_brute_force) {
    check_against_brute(7, 100, 16, 10, 0, 1);
    check_against_brute(300, 9000, 8, 5, 0, 2);   /* several query and gallery blocks */
    check_against_brute(3, 50, 4, 1, 0, 3);
    check_against_brute(1100, 2100, 4, 3, 1, 6);  /* two query blocks, two gallery blocks, ties */
}

TEST(topk_ties_broken_by_index) {
    check_against_brute(40, 500, 3, 20, 1, 4);    /* integer vectors: many equal scores */
    /* all-equal gallery: the first k rows in order */
    float q[2] = {1, 0}, g[20];
    for (int i = 0; i < 10; i++) { g[2 * i] = 1; g[2 * i + 1] = (float)i; }
    duet_mat qm = {q, 1, 2}, gm = {g, 10, 2};
    duet_hit h[4];
    CHECK(duet_topk(&qm, &gm, 4, h, NULL, NULL) == DUET_OK);
    for (size_t i = 0; i < 4; i++) CHECK(h[i].index == i && h[i].score == 1.0f);
}

TEST(topk_k_larger_than_n_and_errors) {
    check_against_brute(5, 3, 4, 10, 0, 5);
    float q[4] = {1, 2, 3, 4}, g[4] = {1, 1, 1, 1};
    duet_mat qm = {q, 1, 4}, gm = {g, 1, 4}, bad = {g, 2, 2};
    duet_hit h[2];
    duet_error e = {0};
    CHECK(duet_topk(&qm, &gm, 0, h, NULL, &e) == DUET_ERR_INVALID_ARG);
    CHECK(strstr(e.msg, "k must be") != NULL);
    CHECK(duet_topk(&qm, &bad, 1, h, NULL, &e) == DUET_ERR_SHAPE);
    /* NaN scores never enter while finite ones exist */
    float g2[8] = {NAN, 0, 0, 0, 1, 0, 0, 0};
    duet_mat gm2 = {g2, 2, 4};
    CHECK(duet_topk(&qm, &gm2, 2, h, NULL, &e) == DUET_OK);
    CHECK(h[0].index == 1 && h[0].score == 1.0f && h[1].index == 0 && isinf(h[1].score));
}

/* Unit rows; with near > 0, every row after the first 50 is a copy of an
 * earlier one moved by about `near` (near-ties bf16 cannot tell apart). */
static void unit_rows(float *x, size_t n, size_t d, duet_rng *r, float near) {
    for (size_t i = 0; i < n; i++) {
        double t = 0;
        for (size_t j = 0; j < d; j++) {
            float v = near > 0 && i >= 50 ? x[(i % 50) * d + j] + near * duet_rng_normal(r) : duet_rng_normal(r);
            x[i * d + j] = v;
            t += (double)v * v;
        }
        for (size_t j = 0; j < d; j++) x[i * d + j] /= (float)sqrt(t);
    }
}

/* The same answer (indices and scores, bit for bit) in f32 and bf16, and
 * equal to the brute-force reference. */
static void f32_equals_bf16(size_t nq, size_t n, size_t d, size_t k, float near, uint64_t seed) {
    duet_rng r;
    duet_rng_seed(&r, seed);
    float *q = malloc(nq * d * sizeof(float)), *g = malloc(n * d * sizeof(float));
    unit_rows(g, n, d, &r, near);
    unit_rows(q, nq, d, &r, 0);
    for (size_t i = 0; i < nq && near > 0; i++) /* queries close to gallery rows */
        for (size_t j = 0; j < d; j++) q[i * d + j] = g[(i * 7 % n) * d + j] + 1e-3f * q[i * d + j];
    duet_mat qm = {q, nq, d}, gm = {g, n, d};
    duet_searcher *a = NULL, *b = NULL;
    duet_error e = {0};
    duet_hit *ha = malloc(nq * k * sizeof *ha), *hb = malloc(nq * k * sizeof *hb), *ref = malloc(k * sizeof *ref);
    CHECK_MSG(duet_searcher_new(&gm, DUET_PRECISION_F32, &a, &e) == DUET_OK, "%s", e.msg);
    CHECK_MSG(duet_searcher_new(&gm, DUET_PRECISION_BF16, &b, &e) == DUET_OK, "%s", e.msg);
    CHECK(a && b && duet_searcher_precision(b) == DUET_PRECISION_BF16);
    if (a && b) {
        CHECK(duet_searcher_topk(a, &qm, k, ha, NULL, &e) == DUET_OK);
        CHECK(duet_searcher_topk(b, &qm, k, hb, NULL, &e) == DUET_OK);
        size_t diff = 0, off = 0;
        for (size_t i = 0; i < nq * k; i++) diff += ha[i].index != hb[i].index || ha[i].score != hb[i].score;
        for (size_t i = 0; i < nq; i += 13) {
            brute(q + i * d, g, n, d, k, ref);
            for (size_t j = 0; j < k; j++) off += ha[i * k + j].index != ref[j].index || ha[i * k + j].score != ref[j].score;
        }
        CHECK_MSG(diff == 0, "n %zu d %zu near %g: %zu of %zu hits differ between f32 and bf16", n, d, near, diff, nq * k);
        CHECK_MSG(off == 0, "n %zu d %zu: %zu hits differ from brute force", n, d, off);
    }
    duet_searcher_free(a);
    duet_searcher_free(b);
    free(q); free(g); free(ha); free(hb); free(ref);
}

TEST(searcher_bf16_equals_f32) {
    if (!duet_cpu_has_bf16()) { SKIP("no native bf16 on this CPU (oneDNN sees %s)", duet_cpu_isa()); return; }
    fprintf(stderr, "  searcher: bf16 on %s\n", duet_cpu_isa());
    f32_equals_bf16(40, 5000, 64, 10, 0, 11);
    f32_equals_bf16(30, 9000, 512, 10, 1e-3f, 12);  /* near ties below bf16's resolution */
    f32_equals_bf16(1, 300, 32, 50, 1e-4f, 13);
}

/* A small index in dir; returns 0 on success. */
static duet_status write_small(const char *path, duet_error *e) {
    float img[3 * 4] = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0};
    float cap[2 * 4] = {0, 0, 0, 1, 0.6f, 0.8f, 0, 0};
    const char *names[3] = {"a.jpg", "dir/b.png", "\xc3\xa9t\xc3\xa9.jpg"};
    const char *texts[2] = {"a dog runs", "two cats \xe2\x9c\x93"};
    duet_index_meta m = {"m.duet", "fnv1a64:0123456789abcdef", "t.model", "fnv1a64:fedcba9876543210",
                         "resnet50 crops=1", "/tmp/imgs", NULL, NULL};
    duet_index_rows r = {4, 3, img, names, 2, cap, texts};
    return duet_index_write(path, &m, &r, e);
}


TEST(index_round_trip_read_and_mmap) {
    char path[128];
    snprintf(path, sizeof path, "%s/g.index", tmpdir);
    duet_error e = {0};
    CHECK(write_small(path, &e) == DUET_OK);
    for (int mm = 0; mm < 2; mm++) {
        duet_index *ix = NULL;
        CHECK_MSG(duet_index_open(path, mm, &ix, &e) == DUET_OK, "%s", e.msg);
        if (!ix) continue;
        CHECK(duet_index_dim(ix) == 4);
        CHECK(duet_index_count(ix, DUET_SIDE_IMAGE) == 3 && duet_index_count(ix, DUET_SIDE_TEXT) == 2);
        CHECK(strcmp(duet_index_text(ix, 0, 1), "dir/b.png") == 0);
        CHECK(strcmp(duet_index_text(ix, 1, 1), "two cats \xe2\x9c\x93") == 0);
        CHECK(duet_index_text(ix, 1, 2) == NULL);
        CHECK(duet_index_find_image(ix, "\xc3\xa9t\xc3\xa9.jpg") == 2);
        CHECK(duet_index_find_image(ix, "nope.jpg") == (size_t)-1);
        duet_mat em = duet_index_embeddings(ix, DUET_SIDE_TEXT);
        CHECK(em.rows == 2 && em.cols == 4 && em.data[4] == 0.6f);
        CHECK(((uintptr_t)em.data & 3) == 0);
        duet_index_meta m = duet_index_meta_of(ix);
        CHECK(strcmp(m.image_model, "resnet50 crops=1") == 0 && strcmp(m.image_root, "/tmp/imgs") == 0);
        CHECK(strcmp(m.text_model_hash, "fnv1a64:fedcba9876543210") == 0);
        CHECK(m.precision == NULL && m.isa && strcmp(m.isa, duet_cpu_isa()) == 0); /* isa: where written */
        /* a search on the mapped rows */
        float q[4] = {0, 1, 0, 0};
        duet_mat qm = {q, 1, 4}, gm = duet_index_embeddings(ix, DUET_SIDE_IMAGE);
        duet_hit h[3];
        CHECK(duet_topk(&qm, &gm, 3, h, NULL, &e) == DUET_OK);
        CHECK(h[0].index == 1 && h[1].index == 0 && h[2].index == 2);
        duet_index_free(ix);
    }
    duet_index_free(NULL);
}

TEST(index_write_refuses_bad_rows) {
    char path[128];
    snprintf(path, sizeof path, "%s/bad.index", tmpdir);
    float img[2 * 2] = {1, 0, 0, 1};
    const char *dup[2] = {"x.jpg", "x.jpg"}, *inv[2] = {"x.jpg", "\xff.jpg"};
    duet_index_rows r = {2, 2, img, dup, 0, NULL, NULL};
    duet_error e = {0};
    CHECK(duet_index_write(path, NULL, &r, &e) == DUET_ERR_INVALID_ARG);
    CHECK(strstr(e.msg, "appears twice") != NULL);
    r.image_names = inv;
    CHECK(duet_index_write(path, NULL, &r, &e) == DUET_ERR_INVALID_ARG);
    CHECK(strstr(e.msg, "UTF-8") != NULL);
    img[1] = NAN;
    r.image_names = (const char *const[]){"a", "b"};
    CHECK(duet_index_write(path, NULL, &r, &e) == DUET_ERR_NONFINITE);
    CHECK(access(path, F_OK) != 0);
}

static size_t file_bytes(const char *p, char **buf) {
    FILE *f = fopen(p, "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    *buf = malloc((size_t)n);
    size_t got = fread(*buf, 1, (size_t)n, f);
    fclose(f);
    return got;
}

static void put_bytes(const char *p, const char *b, size_t n) {
    FILE *f = fopen(p, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
}

/* Rewrites the CRC-32C trailer of a tensor file image after an edit, so the
 * structural checks behind the checksum are tested too. */
static void reseal(char *b, size_t n) {
    uint32_t c = duet_crc32c(0, b, n - 4);
    memcpy(b + n - 4, &c, 4);
}

/* Opens path both ways and expects status st and needle in the message. */
static void expect_refused(const char *path, duet_status st, const char *needle) {
    for (int mm = 0; mm < 2; mm++) {
        duet_index *ix = NULL;
        duet_error e = {0};
        duet_status got = duet_index_open(path, mm, &ix, &e);
        CHECK_MSG(got == st && ix == NULL && strstr(e.msg, needle) && strstr(e.msg, path),
                  "mmap %d: status %d, want %d, msg '%s', want '%s'", mm, got, st, e.msg, needle);
        duet_index_free(ix);
    }
}

/* Writes the small index to tmpdir/name and reads its bytes into *b (caller
 * frees); bad = tmpdir/badname, a place for damaged copies. */
static size_t small_bytes(const char *name, const char *badname, char path[128], char bad[128], char **b) {
    snprintf(path, 128, "%s/%s", tmpdir, name);
    snprintf(bad, 128, "%s/%s", tmpdir, badname);
    duet_error e = {0};
    CHECK(write_small(path, &e) == DUET_OK);
    return file_bytes(path, b);
}

TEST(index_corrupt_and_truncated_refused) {
    char path[128], bad[128], *b;
    size_t n = small_bytes("c.index", "c-bad.index", path, bad, &b);
    put_bytes(bad, b, n - 5);
    expect_refused(bad, DUET_ERR_FORMAT, "truncated");
    /* behind the checksum: the same edits with the CRC made right again */
    put_bytes(bad, b, 10);
    expect_refused(bad, DUET_ERR_FORMAT, "bad magic");
    char *c = malloc(n);
    memcpy(c, b, n); c[0] = 'X';
    put_bytes(bad, c, n);
    expect_refused(bad, DUET_ERR_FORMAT, "bad magic");
    memcpy(c, b, n); c[8] = 9;
    put_bytes(bad, c, n);
    expect_refused(bad, DUET_ERR_VERSION, "version 9");
    /* a header count that disagrees with the arrays */
    memcpy(c, b, n);
    char *p = strstr(c + 24, "\"n_images\": 3");
    if (p) { p[12] = '4'; reseal(c, n); put_bytes(bad, c, n); expect_refused(bad, DUET_ERR_SHAPE, "image_emb"); }
    else CHECK(0);
    memcpy(c, b, n);
    p = strstr(c + 24, "\"kind\": \"duet-index\"");
    if (p) { p[9] = 'X'; reseal(c, n); put_bytes(bad, c, n); expect_refused(bad, DUET_ERR_FORMAT, "kind"); }
    else CHECK(0);
    /* invalid UTF-8 in a stored name: find "a.jpg" in the data */
    memcpy(c, b, n);
    for (size_t i = n - 1; i > 24; i--)
        if (memcmp(c + i - 4, "a.jpg", 5) == 0) { c[i - 4] = (char)0xff; break; }
    reseal(c, n);
    put_bytes(bad, c, n);
    expect_refused(bad, DUET_ERR_FORMAT, "not valid UTF-8");
    /* names bytes disagreeing with the header */
    memcpy(c, b, n);
    p = strstr(c + 24, "\"image_names_bytes\": ");
    if (p) { p[21] = '9'; reseal(c, n); put_bytes(bad, c, n); expect_refused(bad, DUET_ERR_FORMAT, "image_names_utf8"); }
    else CHECK(0);
    expect_refused("/nonexistent/x.index", DUET_ERR_IO, "cannot open");
    free(b); free(c);
}

TEST(crc32c_reference_values) {
    /* RFC 3720 (iSCSI) B.4 test vectors and the catalogue's check value */
    unsigned char z[32] = {0}, f[32], up[32];
    memset(f, 0xff, sizeof f);
    for (int i = 0; i < 32; i++) up[i] = (unsigned char)i;
    CHECK(duet_crc32c(0, "123456789", 9) == 0xe3069283u);
    CHECK(duet_crc32c(0, z, 32) == 0x8a9136aau);
    CHECK(duet_crc32c(0, f, 32) == 0x62a8ab43u);
    CHECK(duet_crc32c(0, up, 32) == 0x46dd794eu);
    /* continuing, combining and the threaded form agree with one pass */
    size_t n = (size_t)9 << 20;   /* 2 blocks and a bit, odd alignment below */
    unsigned char *b = malloc(n + 1);
    duet_rng r;
    duet_rng_seed(&r, 3);
    for (size_t i = 0; i < n + 1; i++) b[i] = (unsigned char)duet_rng_u64(&r);
    uint32_t one = duet_crc32c(0, b + 1, n);
    CHECK(duet_crc32c_parallel(b + 1, n) == one);
    for (size_t cut = 0; cut < n; cut += n / 7 + 13)
        CHECK(duet_crc32c(duet_crc32c(0, b + 1, cut), b + 1 + cut, n - cut) == one &&
              duet_crc32c_combine(duet_crc32c(0, b + 1, cut), duet_crc32c(0, b + 1 + cut, n - cut), n - cut) == one);
    free(b);
}

enum { OPEN_INDEX, OPEN_MODEL, OPEN_TEXTMODEL };
/* Opens p as `which` (index: mmap or read); an error must name p
 * (else DUET_STATUS_COUNT). */
static duet_status open_any(const char *p, int which, int mm) {
    duet_index *ix = NULL;
    duet_model *m = NULL;
    duet_textmodel *tm = NULL;
    duet_error e = {0};
    duet_status st = which == OPEN_INDEX ? duet_index_open(p, mm, &ix, &e)
                   : which == OPEN_MODEL ? duet_model_load(p, &m, &e) : duet_textmodel_load(p, &tm, &e);
    if (st && !strstr(e.msg, p)) { fprintf(stderr, "message does not name %s: %s\n", p, e.msg); st = DUET_STATUS_COUNT; }
    duet_index_free(ix);
    duet_model_free(m);
    duet_textmodel_free(tm);
    return st;
}

/* Every single-bit flip (bit i mod 8 of byte i: the preamble, the JSON,
 * the padding, every array and the trailer), every truncation and appended
 * bytes: each refused (an error that names the file), never opened. */
static void flips_refused(const char *what, const char *path, int which, int modes) {
    char *b, bad[160];
    snprintf(bad, sizeof bad, "%s.bad", path);
    size_t n = file_bytes(path, &b);
    CHECK_MSG(n > 64 && open_any(path, which, 0) == DUET_OK, "%s: the intact file must open", what);
    size_t opened = 0, tried = 0;
    char *c = malloc(n + 64);
    for (size_t i = 0; i < n; i++) {
        memcpy(c, b, n);
        c[i] ^= (char)(1u << (i % 8));
        put_bytes(bad, c, n);
        for (int mm = 0; mm < modes; mm++, tried++) {
            duet_status st = open_any(bad, which, mm);
            if (st == DUET_OK || st == DUET_STATUS_COUNT) {
                if (opened++ < 5) fprintf(stderr, "%s: flip of byte %zu bit %zu: %s\n", what, i, i % 8,
                                          st ? "message without the path" : "opened");
            }
        }
    }
    for (size_t len = 0; len < n; len += len < 64 ? 1 : 7) {
        put_bytes(bad, b, len);
        tried++;
        if (open_any(bad, which, 0) == DUET_OK && opened++ < 5) fprintf(stderr, "%s: truncated to %zu opened\n", what, len);
    }
    for (size_t extra = 1; extra <= 64; extra *= 4) {
        memcpy(c, b, n);
        memset(c + n, 0, extra);
        put_bytes(bad, c, n + extra);
        tried++;
        if (open_any(bad, which, 0) == DUET_OK && opened++ < 5) fprintf(stderr, "%s: %zu bytes appended opened\n", what, extra);
    }
    CHECK_MSG(opened == 0, "%s: %zu of %zu corrupted copies opened", what, opened, tried);
    printf("%s: %zu corrupted copies of a %zu-byte file refused\n", what, tried, n);
    free(b); free(c);
    remove(bad);
}

TEST(bit_flips_refused_index_model_textmodel) {
    duet_error e = {0};
    char ip[128], mp[128], tp[128], ds[128];
    snprintf(ip, sizeof ip, "%s/flip.index", tmpdir);
    snprintf(mp, sizeof mp, "%s/flip.duet", tmpdir);
    snprintf(tp, sizeof tp, "%s/flip.model", tmpdir);
    snprintf(ds, sizeof ds, "%s/flip.tsv", tmpdir);
    CHECK(write_small(ip, &e) == DUET_OK);
    flips_refused("index", ip, OPEN_INDEX, 2);
    duet_params p = duet_default_params();
    p.hidden = 4; p.embed_dim = 3;
    duet_rng r;
    duet_rng_seed(&r, 1);
    duet_model *m = NULL;
    CHECK(duet_model_create(5, 6, &p, &r, &m, &e) == DUET_OK);
    CHECK(m && duet_model_save(m, mp, &e) == DUET_OK);
    duet_model_free(m);
    flips_refused("model", mp, OPEN_MODEL, 1);
    const char *tsv = "a.jpg\ta dog runs on grass\ttrain\nb.jpg\ttwo cats sleep\ttrain\n"
                      "c.jpg\ta red ball\ttest\n";
    put_bytes(ds, tsv, strlen(tsv));
    char spec[160];
    snprintf(spec, sizeof spec, "tsv:%s", ds);
    duet_dataset *d = NULL;
    duet_textmodel *tm = NULL;
    duet_textmodel_params tpar = duet_textmodel_default_params();
    tpar.encoder = DUET_ENC_TFIDF;
    tpar.pca_dim = 0;
    CHECK_MSG(duet_dataset_load(spec, &d, &e) == DUET_OK, "%s", e.msg);
    CHECK_MSG(d && duet_textmodel_fit(d, NULL, &tpar, NULL, NULL, &tm, NULL, &e) == DUET_OK, "%s", e.msg);
    CHECK(tm && duet_textmodel_save(tm, tp, &e) == DUET_OK);
    duet_textmodel_free(tm);
    duet_dataset_free(d);
    flips_refused("text model", tp, OPEN_TEXTMODEL, 1);
}

/* A file of the version before checksums (mark 0, no trailer) still opens,
 * unverified, and says so. */
TEST(index_previous_version_opens_unverified) {
    char path[128], old[128], *b;
    duet_error e = {0};
    size_t n = small_bytes("v2.index", "v1.index", path, old, &b);
    CHECK(duet_tf_file_checksummed(path) == 1);
    uint32_t v1 = 1, zero = 0;
    memcpy(b + 8, &v1, 4);
    memcpy(b + 12, &zero, 4);
    put_bytes(old, b, n - 4);
    CHECK(duet_tf_file_checksummed(old) == 0);
    for (int mm = 0; mm < 2; mm++) {
        duet_index *ix = NULL;
        CHECK_MSG(duet_index_open(old, mm, &ix, &e) == DUET_OK, "%s", e.msg);
        CHECK(ix && duet_index_verified(ix) == 0 && duet_index_count(ix, 0) == 3);
        duet_index_free(ix);
        CHECK(duet_index_open(path, mm, &ix, &e) == DUET_OK && ix && duet_index_verified(ix) == 1);
        duet_index_free(ix);
    }
    /* a version-1 file with a stray mark, or version 2 without one, is corrupt */
    uint32_t mark = DUET_TF_CRC_MARK ^ 4, v2 = 2;
    memcpy(b + 12, &mark, 4);
    put_bytes(old, b, n - 4);
    expect_refused(old, DUET_ERR_FORMAT, "checksum mark");
    memcpy(b + 8, &v2, 4);
    memcpy(b + 12, &zero, 4);
    put_bytes(old, b, n - 4);
    expect_refused(old, DUET_ERR_FORMAT, "checksum mark");
    free(b);
}

/* A gallery of n images and nc captions (small integers: many tied
 * scores) written whole at path and in `shards` shards at spath. */
typedef struct gal {
    size_t n, nc, d;
    float *img, *cap;
    char **names, **texts;
} gal;

static void gal_make(gal *g, size_t n, size_t nc, size_t d, uint64_t seed) {
    duet_rng r;
    duet_rng_seed(&r, seed);
    *g = (gal){n, nc, d, malloc(n * d * sizeof(float)), malloc(nc * d * sizeof(float)), calloc(n, sizeof(char *)),
               calloc(nc, sizeof(char *))};
    fill_random(g->img, n * d, &r, 1);
    fill_random(g->cap, nc * d, &r, 1);
    for (size_t i = 0; i < n; i++) { g->names[i] = malloc(32); snprintf(g->names[i], 32, "img%05zu.jpg", i); }
    for (size_t i = 0; i < nc; i++) { g->texts[i] = malloc(48); snprintf(g->texts[i], 48, "caption number %zu", i); }
}

static void gal_free(gal *g) {
    for (size_t i = 0; i < g->n; i++) free(g->names[i]);
    for (size_t i = 0; i < g->nc; i++) free(g->texts[i]);
    free(g->names); free(g->texts); free(g->img); free(g->cap);
}

static duet_status gal_write(const gal *g, const char *path, size_t shards, duet_error *e) {
    duet_index_meta m = {"m.duet", "fnv1a64:0123456789abcdef", "t.model", NULL, "resnet50 crops=1", "/tmp", "f32", NULL};
    duet_index_rows r = {g->d, g->n, g->img, (const char *const *)g->names, g->nc, g->cap,
                         (const char *const *)g->texts};
    return shards ? duet_index_write_sharded(path, &m, &r, shards, e) : duet_index_write(path, &m, &r, e);
}

/* 1 when a[0..n) and b[0..n) hold the same rows and scores (duet_hit has
 * padding bytes: no memcmp). */
static int hits_equal(const duet_hit *a, const duet_hit *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (a[i].index != b[i].index || !(a[i].score == b[i].score || (isinf(a[i].score) && isinf(b[i].score))))
            return 0;
    return 1;
}

/* Searches ix's side for the queries; hits [nq x k] (caller frees). */
static duet_hit *search_all(const duet_index *ix, int side, const float *q, size_t nq, size_t k, size_t *kk) {
    duet_mat qm = {(float *)q, nq, duet_index_dim(ix)}, gm = duet_index_embeddings(ix, side);
    duet_hit *h = malloc((nq * k + 1) * sizeof *h);
    duet_searcher *s = NULL;
    duet_error e = {0};
    CHECK_MSG(duet_searcher_new(&gm, DUET_PRECISION_F32, &s, &e) == DUET_OK &&
              duet_searcher_topk(s, &qm, k, h, kk, &e) == DUET_OK, "%s", e.msg);
    duet_searcher_free(s);
    return h;
}

TEST(sharded_index_answers_equal_unsharded) {
    gal g;
    gal_make(&g, 1000, 301, 6, 21);
    char whole[128], man[128];
    snprintf(whole, sizeof whole, "%s/whole.index", tmpdir);
    duet_error e = {0};
    CHECK(gal_write(&g, whole, 0, &e) == DUET_OK);
    duet_index *w = NULL;
    CHECK(duet_index_open(whole, 1, &w, &e) == DUET_OK && w);
    CHECK(duet_index_shards(w) == 1 && duet_index_total(w, 1) == 301 && duet_index_offset(w, 0) == 0);
    size_t nq = 40, k = 25;
    float *q = malloc(nq * g.d * sizeof(float));
    duet_rng r;
    duet_rng_seed(&r, 5);
    fill_random(q, nq * g.d, &r, 1);
    q[3 * g.d] = NAN;   /* query 3 scores nothing: all padding */
    for (int side = 0; side < 2; side++) {
        size_t kw = 0;
        duet_hit *ref = search_all(w, side, q, nq, k, &kw);
        const size_t counts[] = {1, 2, 3, 7};
        for (size_t c = 0; c < 4; c++) {
            size_t S = counts[c];
            snprintf(man, sizeof man, "%s/sh%zu.index", tmpdir, S);
            if (side == 0) CHECK_MSG(gal_write(&g, man, S, &e) == DUET_OK, "%s", e.msg);
            /* every shard in one process: the same rows, names, answers */
            duet_index *all = NULL;
            CHECK_MSG(duet_index_open(man, 1, &all, &e) == DUET_OK, "%s", e.msg);
            if (!all) continue;
            CHECK(duet_index_shards(all) == S && duet_index_count(all, side) == duet_index_count(w, side));
            CHECK(duet_index_verified(all) == 1);
            duet_mat a = duet_index_embeddings(all, side), b = duet_index_embeddings(w, side);
            CHECK(memcmp(a.data, b.data, a.rows * a.cols * sizeof(float)) == 0);
            CHECK(strcmp(duet_index_text(all, side, a.rows - 1), duet_index_text(w, side, a.rows - 1)) == 0);
            CHECK(duet_index_find_image(all, "img00999.jpg") == 999);
            CHECK(strcmp(duet_index_meta_of(all).model_hash, "fnv1a64:0123456789abcdef") == 0);
            size_t ka = 0;
            duet_hit *h = search_all(all, side, q, nq, k, &ka);
            CHECK(ka == kw && hits_equal(h, ref, nq * kw));
            free(h);
            /* a job of one through the distributed path: the same, with texts */
            duet_mat gm = duet_index_embeddings(all, side);
            duet_searcher *srch = NULL;
            char **tx = NULL;
            h = malloc(nq * kw * sizeof *h);
            CHECK(duet_searcher_new(&gm, DUET_PRECISION_F32, &srch, &e) == DUET_OK);
            CHECK_MSG(duet_search_sharded(NULL, all, srch, side, q, nq, k, h, &tx, &e) == DUET_OK, "%s", e.msg);
            CHECK(tx && hits_equal(h, ref, nq * kw));
            for (size_t i = 0; tx && i < nq * kw; i++)
                if (strcmp(tx[i], duet_index_text(w, side, ref[i].index)) != 0) { CHECK_MSG(0, "text %zu", i); break; }
            free(tx); free(h);
            duet_searcher_free(srch);
            duet_index_free(all);
            /* shard by shard, merged: ids and scores of the unsharded index */
            duet_hit **lists = calloc(S, sizeof *lists), *m = malloc(nq * kw * sizeof *m);
            size_t *n = calloc(S * nq, sizeof *n), *real = calloc(S * nq, sizeof *real);
            for (size_t i = 0; i < S; i++) {
                duet_index *sh = NULL;
                CHECK_MSG(duet_index_open_shards(man, i, 1, 1, &sh, &e) == DUET_OK, "%s", e.msg);
                if (!sh) continue;
                CHECK(duet_index_offset(sh, 0) == 1000 * i / S && duet_index_offset(sh, 1) == 301 * i / S);
                gm = duet_index_embeddings(sh, side);
                lists[i] = malloc((nq * k + 1) * sizeof **lists);
                size_t kl = 0, *rl = malloc(nq * sizeof *rl);
                duet_mat qm = {q, nq, g.d};
                CHECK(duet_searcher_new(&gm, DUET_PRECISION_F32, &srch, &e) == DUET_OK &&
                      duet_searcher_topk_real(srch, &qm, k, lists[i], &kl, rl, &e) == DUET_OK);
                duet_searcher_free(srch);
                for (size_t j = 0; j < nq * kl; j++) lists[i][j].index += duet_index_offset(sh, side);
                /* query j's list is lists[i] + j * kl */
                for (size_t j = 0; j < nq; j++) { n[j * S + i] = kl; real[j * S + i] = rl[j]; }
                free(rl);
                duet_index_free(sh);
            }
            for (size_t j = 0; j < nq; j++) {
                const duet_hit *lj[8];
                for (size_t i = 0; i < S; i++) lj[i] = lists[i] ? lists[i] + j * n[j * S + i] : NULL;
                CHECK(duet_hits_merge(lj, n + j * S, real + j * S, S, k, m + j * kw, NULL) == kw);
            }
            CHECK_MSG(hits_equal(m, ref, nq * kw), "S %zu side %d: merged answers differ from the unsharded", S, side);
            for (size_t i = 0; i < S; i++) free(lists[i]);
            free(lists); free(m); free(n); free(real);
        }
        free(ref);
    }
    free(q);
    duet_index_free(w);
    gal_free(&g);
}

TEST(sharded_index_damage_refused) {
    gal g, g2;
    gal_make(&g, 30, 9, 4, 1);
    gal_make(&g2, 30, 9, 4, 2);
    char man[128], other[128], shard[160], oshard[160];
    snprintf(man, sizeof man, "%s/d.index", tmpdir);
    snprintf(other, sizeof other, "%s/o.index", tmpdir);
    snprintf(shard, sizeof shard, "%s.2-of-3", man);
    snprintf(oshard, sizeof oshard, "%s.2-of-3", other);
    duet_error e = {0};
    CHECK(gal_write(&g, man, 3, &e) == DUET_OK && gal_write(&g2, other, 3, &e) == DUET_OK);
    duet_index *ix = NULL;
    /* a shard of another build in its place */
    char *b, *ob;
    size_t n = file_bytes(shard, &b), on = file_bytes(oshard, &ob);
    put_bytes(shard, ob, on);
    CHECK(duet_index_open(man, 1, &ix, &e) == DUET_ERR_FORMAT && !ix && strstr(e.msg, shard) &&
          strstr(e.msg, "another build"));
    /* a flipped bit in a shard, a missing shard, a flipped manifest */
    b[n / 2] ^= 8;
    put_bytes(shard, b, n);
    CHECK(duet_index_open(man, 1, &ix, &e) == DUET_ERR_FORMAT && strstr(e.msg, shard) && strstr(e.msg, "checksum"));
    remove(shard);
    CHECK(duet_index_open(man, 1, &ix, &e) == DUET_ERR_IO && strstr(e.msg, shard));
    CHECK(duet_index_open_shards(man, 0, 1, 1, &ix, &e) == DUET_OK && ix);  /* the others are fine */
    duet_index_free(ix);
    ix = NULL;
    CHECK(duet_index_open_shards(man, 3, 1, 1, &ix, &e) == DUET_ERR_INVALID_ARG && !ix);
    free(b);
    n = file_bytes(man, &b);
    b[40] ^= 1;
    put_bytes(man, b, n);
    CHECK(duet_index_open(man, 1, &ix, &e) == DUET_ERR_FORMAT && strstr(e.msg, man) && strstr(e.msg, "checksum"));
    /* more shards than images, duplicate names across shards */
    duet_index_rows r = {4, 30, g.img, (const char *const *)g.names, 0, NULL, NULL};
    CHECK(duet_index_write_sharded(man, NULL, &r, 31, &e) == DUET_ERR_INVALID_ARG);
    free(g.names[29]);
    g.names[29] = duet_strdup("img00000.jpg");
    CHECK(duet_index_write_sharded(man, NULL, &r, 3, &e) == DUET_ERR_INVALID_ARG && strstr(e.msg, "twice"));
    free(b); free(ob);
    gal_free(&g); gal_free(&g2);
}

/* The ranks' parts of a gallery, checked (in a job of one: the one rank
 * must hold every shard), and every image name gathered for rank 0. */
TEST(sharded_parts_checked_and_names_gathered) {
    gal g;
    gal_make(&g, 30, 9, 4, 3);
    char man[300];
    snprintf(man, sizeof man, "%s/p.index", tmpdir);
    duet_error e = {0};
    CHECK(gal_write(&g, man, 3, &e) == DUET_OK);
    duet_index *all = NULL, *part = NULL, *names = NULL;
    CHECK_MSG(duet_index_open(man, 1, &all, &e) == DUET_OK, "%s", e.msg);
    CHECK_MSG(all && duet_index_gather_names(NULL, all, &names, &e) == DUET_OK && names, "%s", e.msg);
    if (names) {
        CHECK(duet_index_count(names, 0) == 30 && duet_index_total(names, 1) == 9 && duet_index_shards(names) == 3);
        CHECK(duet_index_find_image(names, "img00029.jpg") == 29 && duet_index_find_image(names, "nope") == (size_t)-1);
        CHECK(strcmp(duet_index_text(names, 0, 17), duet_index_text(all, 0, 17)) == 0);
        CHECK(strcmp(duet_index_meta_of(names).image_root, "/tmp") == 0);
    }
    duet_index_free(names);
    names = NULL;
    /* part 2 of 2: shards 2-3 (rows 10..29); alone it is not the gallery */
    CHECK_MSG(duet_index_open_part(man, 1, 2, 1, &part, &e) == DUET_OK && part, "%s", e.msg);
    if (part) {
        CHECK(duet_index_offset(part, 0) == 10 && duet_index_count(part, 0) == 20 && duet_index_offset(part, 1) == 3);
        CHECK(strcmp(duet_index_text(part, 0, 0), "img00010.jpg") == 0);
        CHECK(duet_index_gather_names(NULL, part, &names, &e) == DUET_ERR_SHAPE && !names);
        CHECK_MSG(strstr(e.msg, "rank 0: shards 2-3 of 3 (p.index.2-of-3 and on), images [10, 30) of 30"), "%s", e.msg);
    }
    duet_index_free(part);
    part = NULL;
    CHECK(duet_index_open_part(man, 3, 3, 1, &part, &e) == DUET_ERR_INVALID_ARG && !part);
    CHECK(duet_index_open_part(man, 0, 4, 1, &part, &e) == DUET_ERR_INVALID_ARG && strstr(e.msg, "at most 3"));
    CHECK(duet_index_open_part(man, 0, 0, 1, &part, &e) == DUET_ERR_INVALID_ARG && !part);
    duet_index_free(all);
    gal_free(&g);
}

int main(void) {
    if (scratch_make("search")) return 1;
    RUN(topk_matches_brute_force);
    RUN(topk_ties_broken_by_index);
    RUN(topk_k_larger_than_n_and_errors);
    RUN(searcher_bf16_equals_f32);
    RUN(index_round_trip_read_and_mmap);
    RUN(index_write_refuses_bad_rows);
    RUN(index_corrupt_and_truncated_refused);
    RUN(crc32c_reference_values);
    RUN(bit_flips_refused_index_model_textmodel);
    RUN(index_previous_version_opens_unverified);
    RUN(sharded_index_answers_equal_unsharded);
    RUN(sharded_index_damage_refused);
    RUN(sharded_parts_checked_and_names_gathered);
    scratch_remove();
    return check_summary("search");
}
