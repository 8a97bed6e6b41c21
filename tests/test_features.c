/* test_features.c -- feature sources (.npy files read by row, float16/32/64)
 * and float16 writing: numpy's rounding (fixtures from
 * tools/ref/make_npy_fixtures.py), rows equal to duet_npy_read's, the NaN
 * scan's message, the file kept out of the resident set, bad files refused,
 * and training on files read by row giving the model of training in memory. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "scratch.h"
#include "core/core.h"
#include <math.h>
#include <stdint.h>
#include <unistd.h>

#define FIX "tests/fixtures/npy/"

#define tmp_path scratch_path

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* The last n bytes of path (its data, for a file of n data bytes) into buf. */
static int tail_bytes(const char *path, unsigned char *buf, size_t n) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    int ok = fseek(fp, -(long)n, SEEK_END) == 0 && fread(buf, 1, n, fp) == n;
    fclose(fp);
    return ok;
}

TEST(f16_writing_rounds_as_numpy) {
    duet_mat x = {0};
    duet_error e = {0};
    CHECK_MSG(duet_npy_read(FIX "f32_to_f16_in.npy", &x, &e) == DUET_OK, "%s", e.msg);
    if (!x.data) return;
    char p[256];
    tmp_path(p, sizeof p, "h.npy");
    CHECK_MSG(duet_npy_write_as(p, &x, DUET_DTYPE_F16, &e) == DUET_OK, "%s", e.msg);
    unsigned char mine[512], ref[512];
    CHECK(x.rows == 256 && tail_bytes(p, mine, sizeof mine) && tail_bytes(FIX "f32_to_f16_out.npy", ref, sizeof ref));
    int bad = 0;
    for (size_t i = 0; i < 256; i++) {
        unsigned a = mine[2 * i] | mine[2 * i + 1] << 8, b = ref[2 * i] | ref[2 * i + 1] << 8;
        int both_nan = (a & 0x7c00u) == 0x7c00u && (a & 0x3ffu) && (b & 0x7c00u) == 0x7c00u && (b & 0x3ffu);
        if (a != b && !both_nan && bad++ < 5)
            CHECK_MSG(0, "element %zu (%.9g): duet %04x, numpy %04x", i, (double)x.data[i], a, b);
    }
    CHECK_MSG(bad == 0, "%d of 256 differ from numpy", bad);
    /* and it reads back as float16 (the file says '<f2', half the bytes) */
    duet_features *f = NULL;
    CHECK_MSG(duet_features_open(p, &f, &e) == DUET_OK, "%s", e.msg);
    if (f) CHECK(strcmp(duet_features_dtype(f), "f16") == 0 && duet_features_rows(f) == 256);
    duet_features_close(f);
    CHECK(duet_npy_write_as(p, &x, (duet_dtype)7, &e) == DUET_ERR_INVALID_ARG);
    CHECK(duet_dtype_parse("f16") == DUET_DTYPE_F16 && duet_dtype_parse("f32") == DUET_DTYPE_F32 &&
          duet_dtype_parse("f8") == -1 && duet_dtype_parse(NULL) == -1);
    duet_mat_free(&x);
}

/* Every fixture's rows through a file source equal duet_npy_read's. */
TEST(file_rows_equal_read_rows) {
    const char *leaves[] = {"f4_3x4.npy", "f2_2x7.npy", "f4be_2x5.npy", "f8_2x3.npy", "f4_v2_2x3.npy",
                            "f4_v3_3x2.npy", "f4_1d5.npy"};
    const char *dtype[] = {"f32", "f16", "f32", "f64", "f32", "f32", "f32"};
    for (size_t k = 0; k < sizeof leaves / sizeof leaves[0]; k++) {
        char p[256];
        snprintf(p, sizeof p, FIX "%s", leaves[k]);
        duet_mat m = {0};
        duet_features *f = NULL;
        duet_error e = {0};
        CHECK(duet_npy_read(p, &m, &e) == DUET_OK);
        CHECK_MSG(duet_features_open(p, &f, &e) == DUET_OK, "%s: %s", leaves[k], e.msg);
        if (!f || !m.data) { duet_mat_free(&m); duet_features_close(f); continue; }
        CHECK(duet_features_rows(f) == m.rows && duet_features_cols(f) == m.cols);
        CHECK_MSG(strcmp(duet_features_dtype(f), dtype[k]) == 0, "%s: %s", leaves[k], duet_features_dtype(f));
        float g[64], scratch[16];
        size_t idx[8];
        for (size_t i = 0; i < m.rows; i++) idx[i] = m.rows - 1 - i; /* reversed */
        duet_error fe = {0};
        if (duet_mat_check_finite(&m, leaves[k], &fe) != DUET_OK) { /* f2_2x7: Inf and NaN in row 1 */
            CHECK(duet_features_gather(f, idx, m.rows, g, &e) == DUET_ERR_NONFINITE);
            CHECK_MSG(strstr(e.msg, leaves[k]) && strstr(e.msg, "row 1, column 4"), "%s", e.msg);
            idx[0] = 0;
            CHECK(duet_features_gather(f, idx, 1, g, &e) == DUET_OK);
            for (size_t c = 0; c < m.cols; c++) CHECK(bits_of(g[c]) == bits_of(m.data[c]));
            duet_mat_free(&m);
            duet_features_close(f);
            continue;
        }
        CHECK(duet_features_gather(f, idx, m.rows, g, &e) == DUET_OK);
        for (size_t i = 0; i < m.rows; i++)
            for (size_t c = 0; c < m.cols; c++)
                CHECK_MSG(bits_of(g[i * m.cols + c]) == bits_of(m.data[idx[i] * m.cols + c]), "%s (%zu, %zu)",
                          leaves[k], i, c);
        const float *r0 = duet_features_row(f, 0, scratch, &e);
        CHECK(r0 == scratch && bits_of(r0[m.cols - 1]) == bits_of(m.data[m.cols - 1]));
        duet_mat_free(&m);
        duet_features_close(f);
    }
}

TEST(wrapped_matrix_rows_in_place) {
    float v[6] = {1, 2, 3, 4, 5, 6};
    duet_mat m = {v, 3, 2};
    duet_features *f = NULL;
    duet_error e = {0};
    CHECK(duet_features_wrap(&m, &f, &e) == DUET_OK);
    if (!f) return;
    float s[2];
    CHECK(duet_features_row(f, 2, s, &e) == v + 4);
    CHECK(duet_features_rows(f) == 3 && duet_features_cols(f) == 2 && strcmp(duet_features_dtype(f), "f32") == 0);
    v[3] = NAN;
    CHECK(duet_features_check_finite(f, "view", &e) == DUET_ERR_NONFINITE);
    CHECK_MSG(strstr(e.msg, "row 1, column 1"), "%s", e.msg);
    duet_features_close(f);
    duet_features_close(NULL);
}

TEST(nan_scan_names_file_row_and_column) {
    duet_features *f = NULL;
    duet_error e = {0};
    CHECK(duet_features_open(FIX "f2_2x7.npy", &f, &e) == DUET_OK);
    if (f) CHECK(duet_features_check_finite(f, "f2_2x7.npy", &e) == DUET_ERR_NONFINITE);
    CHECK_MSG(strstr(e.msg, "f2_2x7.npy") && strstr(e.msg, "Inf") && strstr(e.msg, "row 1, column 4"), "%s", e.msg);
    duet_features_close(f);
    /* 300 rows of float16 with one NaN far in; the clean file passes */
    duet_mat m = {duet_alloc_array(300 * 40, sizeof(float)), 300, 40};
    if (!m.data) return;
    for (size_t i = 0; i < 300 * 40; i++) m.data[i] = (float)i * 0.25f;
    char p[256];
    tmp_path(p, sizeof p, "scan.npy");
    for (int dt = 0; dt < 2; dt++) {
        m.data[257 * 40 + 33] = 1.0f;
        CHECK(duet_npy_write_as(p, &m, (duet_dtype)dt, &e) == DUET_OK);
        CHECK(duet_features_open(p, &f, &e) == DUET_OK);
        if (f) CHECK_MSG(duet_features_check_finite(f, "scan.npy", &e) == DUET_OK, "%s", e.msg);
        duet_features_close(f);
        m.data[257 * 40 + 33] = NAN;
        CHECK(duet_npy_write_as(p, &m, (duet_dtype)dt, &e) == DUET_OK);
        CHECK(duet_features_open(p, &f, &e) == DUET_OK);
        if (f) CHECK(duet_features_check_finite(f, "scan.npy", &e) == DUET_ERR_NONFINITE);
        CHECK_MSG(strstr(e.msg, "NaN") && strstr(e.msg, "row 257, column 33"), "%s", e.msg);
        /* rows are checked as they are read: the bad row fails, naming the file */
        float row[40];
        size_t good = 12, bad = 257;
        if (f) CHECK(duet_features_gather(f, &good, 1, row, &e) == DUET_OK && row[1] == (12 * 40 + 1) * 0.25f);
        if (f) CHECK(duet_features_gather(f, &bad, 1, row, &e) == DUET_ERR_NONFINITE);
        CHECK_MSG(strstr(e.msg, "scan.npy") && strstr(e.msg, "row 257, column 33"), "%s", e.msg);
        duet_features_close(f);
    }
    duet_mat_free(&m);
}

TEST(bad_files_refused) {
    duet_features *f = NULL;
    duet_error e = {0};
    CHECK(duet_features_open(FIX "does-not-exist.npy", &f, &e) == DUET_ERR_IO && !f);
    CHECK_MSG(strstr(e.msg, "does-not-exist.npy"), "%s", e.msg);
    CHECK(duet_features_open(FIX "i4_2x3.npy", &f, &e) == DUET_ERR_UNSUPPORTED && !f);
    CHECK(duet_features_open(FIX "f4_fortran_3x4.npy", &f, &e) == DUET_ERR_UNSUPPORTED && !f);
    CHECK(duet_features_open(tmpdir, &f, &e) != DUET_OK && !f); /* a directory */
    /* truncated and over-long: the size is checked before any row is read */
    char p[256], q[256];
    tmp_path(p, sizeof p, "cut.npy");
    tmp_path(q, sizeof q, "long.npy");
    char *buf = NULL;
    size_t len = 0;
    CHECK(duet_read_file(FIX "f4_3x4.npy", 1 << 16, &buf, &len, &e) == DUET_OK);
    FILE *a = fopen(p, "wb"), *b = fopen(q, "wb");
    if (a && buf) fwrite(buf, 1, len - 4, a);
    if (b && buf) { fwrite(buf, 1, len, b); fputc(0, b); }
    if (a) fclose(a);
    if (b) fclose(b);
    CHECK(duet_features_open(p, &f, &e) == DUET_ERR_FORMAT && strstr(e.msg, "truncated"));
    CHECK(duet_features_open(q, &f, &e) == DUET_ERR_FORMAT && strstr(e.msg, "trailing garbage"));
    free(buf);
}

/* This process's resident memory, in KiB. */
static long rss_kb(void) {
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (fp && fgets(line, sizeof line, fp))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1) break;
    if (fp) fclose(fp);
    return kb;
}

/* Reading every row of a 48 MB file in scattered batches of 100 rows adds
 * no more than the batch to the resident set (the file stays in the page
 * cache; reading it whole into memory would add 48 MB). */
TEST(reading_rows_keeps_the_file_out_of_memory) {
    size_t rows = 3000, cols = 4000;
    duet_mat m = {duet_alloc_array(rows * cols, sizeof(float)), rows, cols};
    if (!m.data) return;
    for (size_t i = 0; i < rows * cols; i++) m.data[i] = (float)(i % 1000);
    char p[256];
    duet_error e = {0};
    CHECK(duet_npy_write(tmp_path(p, sizeof p, "big.npy"), &m, &e) == DUET_OK);
    float *batch = duet_alloc_array(100, cols * sizeof(float));
    size_t idx[100];
    duet_features *f = NULL;
    CHECK(duet_features_open(p, &f, &e) == DUET_OK);
    if (!f || !batch) { free(batch); duet_mat_free(&m); duet_features_close(f); return; }
    long base = rss_kb(), peak = base;
    int same = 1;
    for (size_t r0 = 0; r0 < rows; r0 += 100) {
        for (size_t i = 0; i < 100; i++) idx[i] = (r0 * 7 + i * 31) % rows; /* scattered */
        CHECK(duet_features_gather(f, idx, 100, batch, &e) == DUET_OK);
        for (size_t i = 0; i < 100; i++)
            same &= memcmp(batch + i * cols, m.data + idx[i] * cols, cols * sizeof(float)) == 0;
        long now = rss_kb();
        if (now > peak) peak = now;
    }
    CHECK(same);
    printf("  48 MB file read in scattered batches of 100 rows (1.6 MB): resident set grew %ld KiB\n", peak - base);
    CHECK_MSG(peak - base < 8 * 1024, "the resident set grew %ld KiB", peak - base);
    free(batch);
    duet_mat_free(&m);
    duet_features_close(f);
}

/* duet_train_features on float32 and float16 files gives, bit for
 * bit, the model of duet_train on the same values in memory. */
TEST(training_on_files_equals_memory) {
    duet_synth_params sp = duet_synth_default_params();
    sp.n_train = 120; sp.n_val = 20; sp.n_test = 20;
    duet_error e = {0};
    CHECK_MSG(duet_synth_write(&sp, tmpdir, &e) == DUET_OK, "%s", e.msg);
    char ds[256], ip[256], tp[256], hp[256];
    snprintf(ds, sizeof ds, "tsv:%s/captions.tsv", tmpdir);
    tmp_path(ip, sizeof ip, "images.npy");
    tmp_path(tp, sizeof tp, "texts.npy");
    tmp_path(hp, sizeof hp, "texts16.npy");
    duet_dataset *d = NULL;
    duet_mat img = {0}, txt = {0}, txt16 = {0};
    CHECK(duet_dataset_load(ds, &d, &e) == DUET_OK);
    CHECK(duet_npy_read(ip, &img, &e) == DUET_OK && duet_npy_read(tp, &txt, &e) == DUET_OK);
    CHECK(duet_npy_write_as(hp, &txt, DUET_DTYPE_F16, &e) == DUET_OK);
    CHECK(duet_npy_read(hp, &txt16, &e) == DUET_OK); /* the float16 values, as float32 */
    if (!d || !img.data || !txt16.data) goto out;
    duet_params p = duet_default_params();
    p.hidden = 64; p.embed_dim = 16; p.batch_images = 40; p.epochs = 2; p.threads = 1;
    p.precision = DUET_PRECISION_F32;
    const char *tpath[2] = {tp, hp};
    const duet_mat *tmem[2] = {&txt, &txt16};
    for (int k = 0; k < 2; k++) {
        duet_model *a = NULL, *b = NULL;
        duet_features *fi = NULL, *ft = NULL;
        CHECK(duet_train(d, &img, tmem[k], &p, NULL, &a, NULL, NULL, &e) == DUET_OK);
        CHECK(duet_features_open(ip, &fi, &e) == DUET_OK && duet_features_open(tpath[k], &ft, &e) == DUET_OK);
        if (fi && ft) CHECK_MSG(duet_train_features(d, fi, ft, &p, NULL, &b, NULL, NULL, &e) == DUET_OK, "%s", e.msg);
        if (a && b) {
            duet_eval_result ra, rb;
            CHECK(duet_evaluate(a, d, &img, tmem[k], DUET_SPLIT_TEST, 0, &ra, &e) == DUET_OK);
            CHECK(duet_evaluate_features(b, d, fi, ft, DUET_SPLIT_TEST, 0, 1, &rb, &e) == DUET_OK);
            CHECK_MSG(ra.rsum == rb.rsum && ra.i2t.meanr == rb.i2t.meanr, "%s: %g vs %g", tpath[k], ra.rsum, rb.rsum);
            duet_mat ea = {duet_alloc_array(5, 16 * sizeof(float)), 5, 16};
            duet_mat eb = {duet_alloc_array(5, 16 * sizeof(float)), 5, 16};
            duet_mat x5 = {img.data, 5, img.cols};
            CHECK(duet_model_embed(a, DUET_SIDE_IMAGE, &x5, &ea, &e) == DUET_OK);
            CHECK(duet_model_embed_rows(b, DUET_SIDE_IMAGE, fi, NULL, 5, &eb, &e) == DUET_OK);
            CHECK_MSG(ea.data && eb.data && memcmp(ea.data, eb.data, 5 * 16 * sizeof(float)) == 0,
                      "%s: embeddings differ", tpath[k]);
            duet_mat_free(&ea);
            duet_mat_free(&eb);
        }
        duet_model_free(a);
        duet_model_free(b);
        duet_features_close(fi);
        duet_features_close(ft);
    }
out:
    duet_dataset_free(d);
    duet_mat_free(&img);
    duet_mat_free(&txt);
    duet_mat_free(&txt16);
}

int main(void) {
    if (scratch_make("features")) return 1;
    RUN(f16_writing_rounds_as_numpy);
    RUN(file_rows_equal_read_rows);
    RUN(wrapped_matrix_rows_in_place);
    RUN(nan_scan_names_file_row_and_column);
    RUN(bad_files_refused);
    RUN(reading_rows_keeps_the_file_out_of_memory);
    RUN(training_on_files_equals_memory);
    scratch_remove();
    return check_summary("features");
}
