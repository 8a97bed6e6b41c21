/* test_npy.c -- .npy parse/read/write: fixture values, round trips, and every
 * way a file can be wrong. Runs from the repo root; fixtures come from
 * tools/ref/make_npy_fixtures.py, whose formulas are repeated here. Scratch
 * files go to a private mkdtemp directory removed at the end. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "scratch.h"
#include "core/core.h"
#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define FIX "tests/fixtures/npy/"

#define tmp_path scratch_path

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *fp = fopen(path, "wb");
    CHECK(fp != NULL);
    if (!fp) return;
    CHECK(fwrite(p, 1, n, fp) == n);
    CHECK(fclose(fp) == 0);
}

/* The bytes of path (caller frees with free()), or NULL. */
static unsigned char *slurp(const char *path, size_t *len) {
    char *buf = NULL;
    duet_error e = {0};
    if (duet_read_file(path, 1 << 20, &buf, len, &e) != DUET_OK) return NULL;
    return (unsigned char *)buf;
}

static bool same_mat(const duet_mat *a, const duet_mat *b) {
    return a->rows == b->rows && a->cols == b->cols &&
           memcmp(a->data, b->data, a->rows * a->cols * sizeof(float)) == 0;
}

/* Reads fixture leaf with duet_npy_read and, over its bytes, duet_npy_parse;
 * CHECKs that both give the same status, message and matrix. *m: the read
 * result (caller frees with duet_mat_free). */
static duet_status fixture(const char *leaf, duet_mat *m, duet_error *err) {
    char path[256];
    snprintf(path, sizeof path, FIX "%s", leaf);
    duet_status st = duet_npy_read(path, m, err);
    size_t len = 0;
    unsigned char *buf = slurp(path, &len);
    CHECK_MSG(buf != NULL, "cannot read %s", path);
    if (!buf) return DUET_ERR_IO;
    duet_mat p = {0};
    duet_error e2 = {0};
    duet_status st2 = duet_npy_parse(buf, len, path, &p, &e2);
    CHECK(st2 == st);
    if (st == DUET_OK && st2 == DUET_OK) CHECK(same_mat(m, &p));
    else CHECK_MSG(strcmp(err->msg, e2.msg) == 0, "'%s' vs '%s'", err->msg, e2.msg);
    duet_mat_free(&p);
    free(buf);
    return st;
}

/* A .npy image: preamble of version major.0, the header text verbatim
 * (hlen bytes), then dlen data bytes. Caller frees with free(). */
static unsigned char *image(int major, const char *hdr, size_t hlen,
                            const void *data, size_t dlen, size_t *len) {
    size_t pre = major == 1 ? 10 : 12;
    unsigned char *b = malloc(pre + hlen + dlen + 1);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (unsigned char)major;
    b[7] = 0;
    for (size_t i = 0; i < pre - 8; i++) b[8 + i] = (unsigned char)(hlen >> 8 * i);
    memcpy(b + pre, hdr, hlen);
    if (dlen) memcpy(b + pre + hlen, data, dlen);
    *len = pre + hlen + dlen;
    return b;
}

/* A v1 image of a header "{DICT}\n" with dlen bytes of data. */
static unsigned char *dict_image(const char *dict, const void *data,
                                 size_t dlen, size_t *len) {
    char hdr[512];
    snprintf(hdr, sizeof hdr, "%s\n", dict);
    return image(1, hdr, strlen(hdr), data, dlen, len);
}

/* CHECKs that bytes fail in duet_npy_parse and (written to a file) in
 * duet_npy_read with status want and a message naming the file and
 * containing keyword. */
static void expect_fail_at(int line, const void *bytes, size_t len,
                           duet_status want, const char *keyword) {
    char path[128];
    tmp_path(path, sizeof path, "bad.npy");
    write_bytes(path, bytes, len);
    for (int via_read = 0; via_read < 2; via_read++) {
        duet_mat m = {(float *)1, 9, 9};
        duet_error e = {0};
        duet_status st = via_read ? duet_npy_read(path, &m, &e)
                                  : duet_npy_parse(bytes, len, path, &m, &e);
        CHECK_MSG(st == want && strstr(e.msg, path) && strstr(e.msg, keyword),
                  "line %d (%s): status '%s', want '%s' with \"%s\"; msg: %s",
                  line, via_read ? "read" : "parse", duet_status_str(st),
                  duet_status_str(want), keyword, e.msg);
        CHECK(m.data == NULL && m.rows == 0 && m.cols == 0);
    }
    remove(path);
}
#define EXPECT_FAIL(b, n, st, kw) expect_fail_at(__LINE__, b, n, st, kw)

static void expect_dict_fail_at(int line, const char *dict, duet_status want,
                                const char *keyword) {
    static const float four[4] = {1, 2, 3, 4};
    size_t len;
    unsigned char *b = dict_image(dict, four, sizeof four, &len);
    expect_fail_at(line, b, len, want, keyword);
    free(b);
}
#define EXPECT_DICT_FAIL(d, st, kw) expect_dict_fail_at(__LINE__, d, st, kw)

static float grid(size_t r, size_t c, float offset) {
    return (float)r * 10.0f + (float)c * 0.5f + offset;
}

/* CHECKs that m is rows x cols of grid(r, c, offset), exactly. */
static void check_grid(const duet_mat *m, size_t rows, size_t cols, float offset) {
    CHECK(m->rows == rows && m->cols == cols);
    if (m->rows != rows || m->cols != cols) return;
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++)
            CHECK_MSG(m->data[r * cols + c] == grid(r, c, offset),
                      "(%zu, %zu) = %.9g", r, c, (double)m->data[r * cols + c]);
}

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* ------------------------------------------------------------ fixtures */

TEST(fixture_f4) {
    duet_mat m = {0};
    duet_error e = {0};
    CHECK(fixture("f4_3x4.npy", &m, &e) == DUET_OK);
    check_grid(&m, 3, 4, 0.0f);
    duet_mat_free(&m);
}

TEST(fixture_f8) {
    static const double v[6] = {0.1, 1.0 / 3.0, -2.5, 1e-40,
                                3.4028234663852886e38, 123456789.123};
    duet_mat m = {0};
    duet_error e = {0};
    CHECK(fixture("f8_2x3.npy", &m, &e) == DUET_OK);
    CHECK(m.rows == 2 && m.cols == 3);
    for (int i = 0; i < 6 && m.data; i++)
        CHECK_MSG(bits_of(m.data[i]) == bits_of((float)v[i]), "element %d", i);
    duet_mat_free(&m);
}

TEST(fixture_f2) {
    const float v[14] = {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, -65504.0f,
                         0x1p-24f, 1023 * 0x1p-24f, 0x1p-14f, 0.333251953125f,
                         1.0f + 0x1p-10f, INFINITY, -INFINITY, NAN};
    duet_mat m = {0};
    duet_error e = {0};
    CHECK(fixture("f2_2x7.npy", &m, &e) == DUET_OK);
    CHECK(m.rows == 2 && m.cols == 7);
    for (int i = 0; i < 13 && m.data; i++)
        CHECK_MSG(bits_of(m.data[i]) == bits_of(v[i]), "element %d = %.9g", i,
                  (double)m.data[i]);
    if (m.data) CHECK(isnan(m.data[13]));
    if (m.data) CHECK(signbit(m.data[1]) && m.data[1] == 0.0f);
    duet_mat_free(&m);
}

TEST(fixture_big_endian_f4) {
    duet_mat m = {0};
    duet_error e = {0};
    CHECK(fixture("f4be_2x5.npy", &m, &e) == DUET_OK);
    check_grid(&m, 2, 5, -7.25f);
    duet_mat_free(&m);
}

TEST(fixture_1d_is_column) {
    duet_mat m = {0};
    duet_error e = {0};
    CHECK(fixture("f4_1d5.npy", &m, &e) == DUET_OK);
    CHECK(m.rows == 5 && m.cols == 1);
    for (size_t i = 0; i < 5 && m.data; i++) CHECK(m.data[i] == 1.5f * (float)i);
    duet_mat_free(&m);
}

TEST(fixture_versions_2_and_3) {
    duet_mat m = {0};
    duet_error e = {0};
    CHECK(fixture("f4_v2_2x3.npy", &m, &e) == DUET_OK);
    check_grid(&m, 2, 3, 1.0f);
    duet_mat_free(&m);
    CHECK(fixture("f4_v3_3x2.npy", &m, &e) == DUET_OK);
    check_grid(&m, 3, 2, 2.0f);
    duet_mat_free(&m);
}

TEST(fixture_zero_rows) {
    duet_mat m = {0};
    duet_error e = {0};
    CHECK(fixture("f4_0x4.npy", &m, &e) == DUET_OK);
    CHECK(m.rows == 0 && m.cols == 4 && m.data != NULL);
    duet_mat_free(&m);
}

TEST(fixtures_refused) {
    static const struct { const char *leaf; duet_status st; const char *kw; } t[] = {
        {"i4_2x3.npy", DUET_ERR_UNSUPPORTED, "dtype '<i4' is not a float type"},
        {"b1_2x3.npy", DUET_ERR_UNSUPPORTED, "dtype '|b1' is not a float type"},
        {"f4_fortran_3x4.npy", DUET_ERR_UNSUPPORTED, "Fortran"},
        {"f4_3d.npy", DUET_ERR_UNSUPPORTED, "(2, 2, 2) has 3 dimensions"},
        {"f4_scalar.npy", DUET_ERR_UNSUPPORTED, "() has 0 dimensions"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        duet_mat m = {0};
        duet_error e = {0};
        duet_status st = fixture(t[i].leaf, &m, &e);
        CHECK_MSG(st == t[i].st && strstr(e.msg, t[i].leaf) && strstr(e.msg, t[i].kw),
                  "%s: %s", t[i].leaf, e.msg);
        CHECK(m.data == NULL);
    }
    duet_mat m = {0};
    duet_error e = {0};
    fixture("i4_2x3.npy", &m, &e);
    CHECK_MSG(strcmp(e.msg, FIX "i4_2x3.npy: dtype '<i4' is not a float type "
                            "(duet reads float16/32/64)") == 0, "%s", e.msg);
}

/* ---------------------------------------------------- conversions, dtypes */

/* Reference half -> float by arithmetic (independent of npy.c's bit path). */
static float half_ref(unsigned h) {
    int e = (h >> 10) & 31;
    unsigned mant = h & 1023;
    float s = (h & 0x8000) ? -1.0f : 1.0f;
    if (e == 0) return s * ldexpf((float)mant, -24);
    if (e == 31) return mant ? NAN : s * INFINITY;
    return s * ldexpf((float)(1024 + mant), e - 25);
}

TEST(float16_every_value_both_orders) {
    unsigned char *data = malloc(2 * 65536);
    for (int big = 0; big < 2; big++) {
        for (unsigned h = 0; h < 65536; h++) {
            data[2 * h + big] = (unsigned char)(h & 0xff);
            data[2 * h + !big] = (unsigned char)(h >> 8);
        }
        size_t len;
        unsigned char *b = dict_image(big ? "{'descr': '>f2', 'fortran_order': False, 'shape': (65536,)}"
                                          : "{'descr': '<f2', 'fortran_order': False, 'shape': (65536,)}",
                                      data, 2 * 65536, &len);
        duet_mat m = {0};
        duet_error e = {0};
        CHECK(duet_npy_parse(b, len, "all16.npy", &m, &e) == DUET_OK);
        CHECK(m.rows == 65536 && m.cols == 1);
        int bad = 0;
        for (unsigned h = 0; h < 65536 && m.data; h++) {
            float want = half_ref(h), got = m.data[h];
            bool ok = isnan(want) ? isnan(got) && (bits_of(got) >> 31) == (h >> 15) &&
                                        ((bits_of(got) >> 13) & 1023) == (h & 1023)
                                  : bits_of(got) == bits_of(want);
            if (!ok && bad++ < 5)
                CHECK_MSG(ok, "half 0x%04x -> %.9g, want %.9g", h, (double)got, (double)want);
        }
        CHECK(bad == 0);
        duet_mat_free(&m);
        free(b);
    }
    free(data);
}

TEST(float64_big_endian_and_native_prefixes) {
    static const double v[3] = {0.1, -1e-40, 65536.5};
    unsigned char be[24], le[24];
    for (int i = 0; i < 3; i++) {
        uint64_t u;
        memcpy(&u, &v[i], 8);
        for (int k = 0; k < 8; k++) {
            be[8 * i + k] = (unsigned char)(u >> (56 - 8 * k));
            le[8 * i + k] = (unsigned char)(u >> 8 * k);
        }
    }
    static const char *const dicts[] = {
        "{'descr': '>f8', 'fortran_order': False, 'shape': (1, 3)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 3)}",
        "{'descr': '=f8', 'fortran_order': False, 'shape': (1, 3)}",
        "{'descr': '|f8', 'fortran_order': False, 'shape': (1, 3)}",
    };
    for (int d = 0; d < 4; d++) {
        size_t len;
        unsigned char *b = dict_image(dicts[d], d == 0 ? be : le, 24, &len);
        duet_mat m = {0};
        duet_error e = {0};
        CHECK_MSG(duet_npy_parse(b, len, "f8.npy", &m, &e) == DUET_OK, "%s", e.msg);
        for (int i = 0; i < 3 && m.data; i++)
            CHECK(bits_of(m.data[i]) == bits_of((float)v[i]));
        duet_mat_free(&m);
        free(b);
    }
}

TEST(unsupported_dtypes) {
    EXPECT_DICT_FAIL("{'descr': '<c8', 'fortran_order': False, 'shape': (2,)}",
                     DUET_ERR_UNSUPPORTED, "dtype '<c8' is not a float type");
    EXPECT_DICT_FAIL("{'descr': '|u1', 'fortran_order': False, 'shape': (4,)}",
                     DUET_ERR_UNSUPPORTED, "'|u1'");
    EXPECT_DICT_FAIL("{'descr': '<U1', 'fortran_order': False, 'shape': (4,)}",
                     DUET_ERR_UNSUPPORTED, "'<U1'");
    EXPECT_DICT_FAIL("{'descr': '<f16', 'fortran_order': False, 'shape': (1,)}",
                     DUET_ERR_UNSUPPORTED, "'<f16'");
    EXPECT_DICT_FAIL("{'descr': 'float32', 'fortran_order': False, 'shape': (4,)}",
                     DUET_ERR_UNSUPPORTED, "'float32'");
    EXPECT_DICT_FAIL("{'descr': 'f4', 'fortran_order': False, 'shape': (4,)}",
                     DUET_ERR_UNSUPPORTED, "'f4'");
    EXPECT_DICT_FAIL("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (4,)}",
                     DUET_ERR_UNSUPPORTED, "structured");
    EXPECT_DICT_FAIL("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2)}",
                     DUET_ERR_UNSUPPORTED, "'fortran_order' is True");
    EXPECT_DICT_FAIL("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 4)}",
                     DUET_ERR_UNSUPPORTED, "4 dimensions");
}

/* ------------------------------------------------------------ header text */

TEST(header_variants_accepted) {
    static const float four[4] = {1, 2, 3, 4};
    static const char *const dicts[] = {
        "{'shape': (2, 2), 'fortran_order': False, 'descr': '<f4'}",
        "{\"descr\":\"<f4\",\"fortran_order\":False,\"shape\":(2,2)}",
        "  {  'descr' : '<f4' ,\n 'fortran_order' : False , 'shape' : ( 2 , 2 , ) , }  \t ",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 2L), }",
        "{'descr': '=f4', 'fortran_order': False, 'shape': (2, 2), }",
        "{'descr': '|f4', 'fortran_order': False, 'shape': (2, 2), }",
    };
    for (size_t i = 0; i < sizeof dicts / sizeof dicts[0]; i++) {
        size_t len;
        unsigned char *b = dict_image(dicts[i], four, sizeof four, &len);
        duet_mat m = {0};
        duet_error e = {0};
        CHECK_MSG(duet_npy_parse(b, len, "v.npy", &m, &e) == DUET_OK, "%zu: %s", i, e.msg);
        CHECK(m.rows == 2 && m.cols == 2 && m.data && m.data[3] == 4.0f);
        duet_mat_free(&m);
        free(b);
    }
    /* 1-D with trailing comma, version 2 and 3 preambles, numpy's padding */
    const char hdr[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }      \n";
    for (int major = 1; major <= 3; major++) {
        size_t len;
        unsigned char *b = image(major, hdr, sizeof hdr - 1, four, sizeof four, &len);
        duet_mat m = {0};
        duet_error e = {0};
        CHECK_MSG(duet_npy_parse(b, len, "v.npy", &m, &e) == DUET_OK, "v%d: %s", major, e.msg);
        CHECK(m.rows == 4 && m.cols == 1 && m.data && m.data[2] == 3.0f);
        duet_mat_free(&m);
        free(b);
    }
}

TEST(malformed_dict) {
    const duet_status F = DUET_ERR_FORMAT;
    EXPECT_DICT_FAIL("{'descr': '<f4', 'fortran_order': False}", F, "no 'shape' key");
    EXPECT_DICT_FAIL("{'fortran_order': False, 'shape': (4,)}", F, "no 'descr' key");
    EXPECT_DICT_FAIL("{'descr': '<f4', 'shape': (4,)}", F, "no 'fortran_order' key");
    EXPECT_DICT_FAIL("{}", F, "no 'descr' key");
    EXPECT_DICT_FAIL("{'descr': '<f4', 'fortran_order': False, 'shape': (-2, -2)}", F, "negative");
    EXPECT_DICT_FAIL("{'descr': '<f4', 'fortran_order': False, 'shape': (2, x)}", F, "non-negative integers");
    EXPECT_DICT_FAIL("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2.0)}", F, "expected ',' or ')' in 'shape'");
    EXPECT_DICT_FAIL("{'descr': '<f4', 'fortran_order': False, 'shape': (4)}", F, "not a tuple");
    EXPECT_DICT_FAIL("{'descr': '<f4', 'fortran_order': False, 'shape': [2, 2]}", F, "'shape' is not a tuple");
    EXPECT_DICT_FAIL("{'descr': '<f4', 'fortran_order': False, 'shape': (,)}", F, "non-negative integers");
    EXPECT_DICT_FAIL("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2", F, "'shape'");
    EXPECT_DICT_FAIL("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'extra': 1}", F, "unknown key 'extra'");
    EXPECT_DICT_FAIL("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (4,)}", F, "duplicate key 'descr'");
    EXPECT_DICT_FAIL("{'descr': '<f4', 'fortran_order': false, 'shape': (4,)}", F, "True or False");
    EXPECT_DICT_FAIL("{'descr': '<f4', 'fortran_order': Falsey, 'shape': (4,)}", F, "True or False");
    EXPECT_DICT_FAIL("{'descr': '<f4', 'fortran_order': 0, 'shape': (4,)}", F, "True or False");
    EXPECT_DICT_FAIL("{'descr': <f4, 'fortran_order': False, 'shape': (4,)}", F, "'descr' is not a quoted string");
    EXPECT_DICT_FAIL("{'descr': '<f4, 'fortran_order\": False, \"shape\": (4,)}", F, "expected ',' or '}'");
    EXPECT_DICT_FAIL("{'descr': '<f4, 1: 2}", F, "'descr' is not a quoted string");
    EXPECT_DICT_FAIL("{'descr': 'a\\'b', 'fortran_order': False, 'shape': (4,)}", F, "'descr' is not a quoted string");
    EXPECT_DICT_FAIL("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), ", F, "expected a quoted key or '}'");
    EXPECT_DICT_FAIL("{descr: '<f4', 'fortran_order': False, 'shape': (4,)}", F, "expected a quoted key");
    EXPECT_DICT_FAIL("{'descr' '<f4', 'fortran_order': False, 'shape': (4,)}", F, "expected ':'");
    EXPECT_DICT_FAIL("{'descr': '<f4' 'fortran_order': False, 'shape': (4,)}", F, "expected ',' or '}'");
    EXPECT_DICT_FAIL("{'descr': '<f4', 'fortran_order': False, 'shape': (4,)} x", F, "unexpected text after '}'");
    EXPECT_DICT_FAIL("{'descr': '<f4', 'fortran_order': False, 'shape': (4,)}}", F, "unexpected text after '}'");
    EXPECT_DICT_FAIL("['descr', '<f4']", F, "expected '{'");
    EXPECT_DICT_FAIL("", F, "expected '{'");
    /* verbatim headers: no final newline, empty header, a NUL inside */
    static const float four[4] = {1, 2, 3, 4};
    static const char nonl[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (4,)}   ";
    static const char nul[] = "{'descr': '<f4',\0'fortran_order': False, 'shape': (4,)}\n";
    size_t len;
    unsigned char *b = image(1, nonl, sizeof nonl - 1, four, sizeof four, &len);
    EXPECT_FAIL(b, len, F, "newline");
    free(b);
    b = image(1, "", 0, four, sizeof four, &len);
    EXPECT_FAIL(b, len, F, "header length is 0");
    free(b);
    b = image(1, nul, sizeof nul - 1, four, sizeof four, &len);
    EXPECT_FAIL(b, len, F, "expected a quoted key");
    free(b);
}

TEST(shape_overflow_fails_before_allocating) {
    const duet_status F = DUET_ERR_FORMAT;
    EXPECT_DICT_FAIL("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296)}", F, "too large");
    EXPECT_DICT_FAIL("{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551615, 2)}", F, "too large");
    EXPECT_DICT_FAIL("{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904,)}", F, "too large");
    EXPECT_DICT_FAIL("{'descr': '<f2', 'fortran_order': False, 'shape': (4611686018427387904,)}", F, "too large");
    EXPECT_DICT_FAIL("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999, 1)}", F, "does not fit in size_t");
    /* huge but representable: refused by the length check, no allocation */
    EXPECT_DICT_FAIL("{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1024)}", F,
                     "truncated: header says 1099511627776 x 1024 float32 (4503599627370496 bytes) but only 16 bytes follow");
    EXPECT_DICT_FAIL("{'descr': '<f8', 'fortran_order': False, 'shape': (0, 18446744073709551615)}", F,
                     "trailing garbage");
}

/* ------------------------------------------------------- broken files */

TEST(truncated_at_every_length) {
    static const char *const leaves[] = {"f4_3x4.npy", "f4_v2_2x3.npy", "f2_2x7.npy", "f8_2x3.npy"};
    for (size_t f = 0; f < 4; f++) {
        char path[256];
        snprintf(path, sizeof path, FIX "%s", leaves[f]);
        size_t len = 0;
        unsigned char *b = slurp(path, &len);
        CHECK(b != NULL);
        if (!b) continue;
        for (size_t cut = 1; cut < len; cut++) EXPECT_FAIL(b, cut, DUET_ERR_FORMAT, "truncated");
        EXPECT_FAIL(b, 0, DUET_ERR_FORMAT, "empty");
        free(b);
    }
    /* the exact message of a cut inside the data */
    char path[256];
    size_t len = 0;
    unsigned char *b = slurp(FIX "f4_3x4.npy", &len);
    if (!b) return;
    duet_mat m = {0};
    duet_error e = {0};
    tmp_path(path, sizeof path, "cut.npy");
    write_bytes(path, b, 150);
    CHECK(duet_npy_read(path, &m, &e) == DUET_ERR_FORMAT);
    char want[512];
    snprintf(want, sizeof want, "%s: truncated: header says 3 x 4 float32 (48 bytes) "
             "but only 22 bytes follow", path);
    CHECK_MSG(strcmp(e.msg, want) == 0, "%s", e.msg);
    remove(path);
    free(b);
}

TEST(trailing_garbage) {
    size_t len = 0;
    unsigned char *b = slurp(FIX "f4_3x4.npy", &len);
    CHECK(b != NULL);
    if (!b) return;
    unsigned char *big = calloc(len + 100, 1);
    memcpy(big, b, len);
    EXPECT_FAIL(big, len + 1, DUET_ERR_FORMAT, "trailing garbage: header says 3 x 4 float32 (48 bytes) but 49 bytes follow");
    EXPECT_FAIL(big, len + 4, DUET_ERR_FORMAT, "trailing garbage");
    EXPECT_FAIL(big, len + 100, DUET_ERR_FORMAT, "trailing garbage");
    free(b);
    b = slurp(FIX "f4_0x4.npy", &len);
    CHECK(b != NULL);
    if (b) {
        memcpy(big, b, len);
        EXPECT_FAIL(big, len + 1, DUET_ERR_FORMAT, "trailing garbage");
    }
    free(b);
    free(big);
}

TEST(bad_magic) {
    static const char npz[] = "PK\x03\x04\x14\x00\x00\x00\x08\x00 rest of a zip";
    static const char txt[] = "hello, this is not an array\n";
    static const char near[] = "\x93NUMPX\x01\x00\x10\x00{}";
    EXPECT_FAIL(npz, sizeof npz - 1, DUET_ERR_FORMAT, "bad magic");
    EXPECT_FAIL(txt, sizeof txt - 1, DUET_ERR_FORMAT, "bad magic");
    EXPECT_FAIL(near, sizeof near - 1, DUET_ERR_FORMAT, "bad magic");
    EXPECT_FAIL("abc", 3, DUET_ERR_FORMAT, "bad magic");
    EXPECT_FAIL("\x93NUM", 4, DUET_ERR_FORMAT, "truncated");
}

TEST(unsupported_version) {
    static const float four[4] = {1, 2, 3, 4};
    const char hdr[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }\n";
    size_t len;
    unsigned char *b = image(2, hdr, sizeof hdr - 1, four, sizeof four, &len);
    static const unsigned char v[][2] = {{4, 0}, {0, 0}, {1, 1}, {2, 5}, {255, 255}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char kw[64];
        b[6] = v[i][0];
        b[7] = v[i][1];
        snprintf(kw, sizeof kw, "version %u.%u is not supported", v[i][0], v[i][1]);
        EXPECT_FAIL(b, len, DUET_ERR_VERSION, kw);
    }
    free(b);
}

TEST(header_length_beyond_buffer) {
    static const float four[4] = {1, 2, 3, 4};
    const char hdr[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }\n";
    size_t len;
    unsigned char *b = image(1, hdr, sizeof hdr - 1, four, sizeof four, &len);
    b[8] = 0xff;
    b[9] = 0xff; /* 65535 */
    EXPECT_FAIL(b, len, DUET_ERR_FORMAT, "truncated: header length 65535 runs past the end");
    free(b);
    b = image(2, hdr, sizeof hdr - 1, four, sizeof four, &len);
    b[8] = 1; b[9] = 0; b[10] = 0x10; b[11] = 0; /* 1 MiB + 1 */
    EXPECT_FAIL(b, len, DUET_ERR_FORMAT, "header length 1048577 exceeds");
    memset(b + 8, 0xff, 4);
    EXPECT_FAIL(b, len, DUET_ERR_FORMAT, "header length 4294967295 exceeds");
    b[8] = 0; b[9] = 0; b[10] = 0x10; b[11] = 0; /* exactly 1 MiB: allowed, too long */
    EXPECT_FAIL(b, len, DUET_ERR_FORMAT, "runs past the end");
    free(b);
}

TEST(empty_and_missing) {
    EXPECT_FAIL("", 0, DUET_ERR_FORMAT, "empty file");
    duet_mat m = {0};
    duet_error e = {0};
    CHECK(duet_npy_parse(NULL, 0, "none.npy", &m, &e) == DUET_ERR_FORMAT);
    CHECK(strstr(e.msg, "none.npy: empty file") != NULL);
    CHECK(duet_npy_parse(NULL, 5, "none.npy", &m, &e) == DUET_ERR_INVALID_ARG);
    char path[128];
    tmp_path(path, sizeof path, "does-not-exist.npy");
    CHECK(duet_npy_read(path, &m, &e) == DUET_ERR_IO);
    CHECK(strstr(e.msg, path) && strstr(e.msg, "cannot open"));
    CHECK(m.data == NULL);
    CHECK(duet_npy_read(tmpdir, &m, &e) != DUET_OK); /* a directory */
}

/* Reading through a FIFO: no size from fstat, so the stream checks alone
 * must catch short and long data. */
static duet_status read_via_fifo(const void *bytes, size_t len, duet_mat *m,
                                 duet_error *e, char *path, size_t n) {
    tmp_path(path, n, "fifo.npy");
    remove(path);
    if (mkfifo(path, 0600) != 0) return DUET_ERR_IO;
    pid_t pid = fork();
    if (pid == 0) {
        FILE *fp = fopen(path, "wb");
        if (fp) { fwrite(bytes, 1, len, fp); fclose(fp); }
        _exit(0);
    }
    duet_status st = duet_npy_read(path, m, e);
    int ws;
    waitpid(pid, &ws, 0);
    remove(path);
    return st;
}

TEST(read_from_fifo) {
    size_t len = 0;
    unsigned char *b = slurp(FIX "f2_2x7.npy", &len);
    CHECK(b != NULL);
    if (!b) return;
    unsigned char *big = calloc(len + 8, 1);
    memcpy(big, b, len);
    char path[128];
    duet_mat m = {0}, ref = {0};
    duet_error e = {0};
    CHECK(duet_npy_parse(b, len, "f2", &ref, &e) == DUET_OK);
    if (read_via_fifo(b, len, &m, &e, path, sizeof path) == DUET_ERR_IO && !m.data)
        SKIP("no FIFO: %s", e.msg);
    CHECK(same_mat(&m, &ref));
    duet_mat_free(&m);
    CHECK(read_via_fifo(b, len - 3, &m, &e, path, sizeof path) == DUET_ERR_FORMAT);
    CHECK(strstr(e.msg, path) && strstr(e.msg, "truncated"));
    CHECK(read_via_fifo(big, len + 8, &m, &e, path, sizeof path) == DUET_ERR_FORMAT);
    CHECK(strstr(e.msg, path) && strstr(e.msg, "trailing garbage"));
    CHECK(m.data == NULL);
    duet_mat_free(&ref);
    free(big);
    free(b);
}

/* ------------------------------------------------------------- writing */

TEST(write_read_bit_exact) {
    duet_rng rng;
    duet_rng_seed(&rng, 42);
    enum { R = 7, C = 13 };
    float v[R * C];
    for (int i = 0; i < R * C; i++) { /* every bit pattern: NaN payloads too */
        uint32_t u = (uint32_t)duet_rng_u64(&rng);
        memcpy(&v[i], &u, sizeof u);
    }
    v[0] = -0.0f; v[1] = INFINITY; v[2] = 0x1p-149f; v[3] = NAN;
    duet_mat m = {v, R, C}, back = {0};
    duet_error e = {0};
    char path[128];
    tmp_path(path, sizeof path, "rt.npy");
    CHECK_MSG(duet_npy_write(path, &m, &e) == DUET_OK, "%s", e.msg);
    CHECK_MSG(duet_npy_read(path, &back, &e) == DUET_OK, "%s", e.msg);
    CHECK(same_mat(&m, &back));
    duet_mat_free(&back);
    size_t len = 0;
    unsigned char *b = slurp(path, &len);
    CHECK(b && len == 128 + sizeof v);
    if (b) {
        CHECK(memcmp(b, "\x93NUMPY\x01\x00", 8) == 0);
        CHECK(b[8] + 256 * b[9] == 118); /* data at 128 = 2 * 64 */
        CHECK(memcmp(b + 10, "{'descr': '<f4', 'fortran_order': False, "
                             "'shape': (7, 13), }", 59) == 0);
        CHECK(b[127] == '\n' && b[126] == ' ');
        CHECK(memcmp(b + 128, v, sizeof v) == 0); /* little-endian host */
    }
    free(b);
    remove(path);
}

TEST(write_shapes_and_alignment) {
    static const float one[1] = {3.5f};
    static const duet_mat ms[] = {
        {(float *)one, 1, 1}, {NULL, 0, 3}, {NULL, 5, 0},
        {NULL, 0, SIZE_MAX}, {(float *)one, 1, 1},
    };
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
        char path[128];
        tmp_path(path, sizeof path, "shape.npy");
        duet_mat back = {0};
        duet_error e = {0};
        CHECK_MSG(duet_npy_write(path, &ms[i], &e) == DUET_OK, "%s", e.msg);
        CHECK_MSG(duet_npy_read(path, &back, &e) == DUET_OK, "%s", e.msg);
        CHECK(back.rows == ms[i].rows && back.cols == ms[i].cols && back.data);
        if (ms[i].rows && ms[i].cols) CHECK(back.data[0] == 3.5f);
        duet_mat_free(&back);
        size_t len = 0;
        unsigned char *b = slurp(path, &len);
        size_t hdr_end = b ? 10u + b[8] + 256u * b[9] : 0;
        CHECK(b && hdr_end % 64 == 0 && b[hdr_end - 1] == '\n');
        CHECK(len == hdr_end + 4 * ms[i].rows * ms[i].cols);
        free(b);
        remove(path);
    }
}

/* The names in tmpdir that contain s (count). */
static int count_entries(const char *s) {
    DIR *d = opendir(tmpdir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (strstr(de->d_name, s)) n++;
    if (d) closedir(d);
    return n;
}

TEST(write_to_missing_directory) {
    float v[2] = {1, 2};
    duet_mat m = {v, 1, 2};
    duet_error e = {0};
    char path[128], dir[128];
    tmp_path(path, sizeof path, "nope/x.npy");
    tmp_path(dir, sizeof dir, "nope");
    int before = count_entries("");
    CHECK(duet_npy_write(path, &m, &e) == DUET_ERR_IO);
    CHECK_MSG(strstr(e.msg, path) != NULL, "%s", e.msg);
    struct stat sb;
    CHECK(stat(path, &sb) != 0 && stat(dir, &sb) != 0);
    CHECK(count_entries("") == before);
}

TEST(write_replaces_atomically) {
    char path[128];
    tmp_path(path, sizeof path, "over.npy");
    write_bytes(path, "old contents", 12);
    float a[6] = {1, 2, 3, 4, 5, 6}, bvals[2] = {-1, -2};
    duet_mat ma = {a, 2, 3}, mb = {bvals, 2, 1}, back = {0};
    duet_error e = {0};
    CHECK(duet_npy_write(path, &ma, &e) == DUET_OK);
    CHECK(duet_npy_read(path, &back, &e) == DUET_OK && same_mat(&back, &ma));
    duet_mat_free(&back);
    CHECK(duet_npy_write(path, &mb, &e) == DUET_OK);
    CHECK(duet_npy_read(path, &back, &e) == DUET_OK && same_mat(&back, &mb));
    duet_mat_free(&back);
    CHECK(count_entries(".tmp.") == 0);
    /* refused writes leave the file as it was */
    size_t len0 = 0, len1 = 0;
    unsigned char *before = slurp(path, &len0);
    duet_mat nodata = {NULL, 2, 2}, huge = {a, SIZE_MAX, 2};
    CHECK(duet_npy_write(path, &nodata, &e) == DUET_ERR_INVALID_ARG && strstr(e.msg, path));
    CHECK(duet_npy_write(path, &huge, &e) == DUET_ERR_INVALID_ARG && strstr(e.msg, "too large"));
    unsigned char *after = slurp(path, &len1);
    CHECK(before && after && len0 == len1 && memcmp(before, after, len0) == 0);
    CHECK(count_entries(".tmp.") == 0);
    free(before);
    free(after);
    remove(path);
}

TEST(check_finite_names_position) {
    float v[12] = {0};
    duet_mat m = {v, 3, 4};
    duet_error e = {0};
    CHECK(duet_mat_check_finite(&m, "img.npy", &e) == DUET_OK);
    v[2 * 4 + 1] = NAN;
    CHECK(duet_mat_check_finite(&m, "img.npy", &e) == DUET_ERR_NONFINITE);
    CHECK_MSG(strstr(e.msg, "img.npy") && strstr(e.msg, "NaN") &&
              strstr(e.msg, "row 2, column 1"), "%s", e.msg);
    v[3] = -INFINITY;
    CHECK(duet_mat_check_finite(&m, "txt.npy", &e) == DUET_ERR_NONFINITE);
    CHECK_MSG(strstr(e.msg, "txt.npy") && strstr(e.msg, "Inf") &&
              strstr(e.msg, "row 0, column 3"), "%s", e.msg);
    /* a NaN that came through a file */
    duet_mat f = {0};
    CHECK(fixture("f2_2x7.npy", &f, &e) == DUET_OK);
    CHECK(duet_mat_check_finite(&f, "f2_2x7.npy", &e) == DUET_ERR_NONFINITE);
    CHECK_MSG(strstr(e.msg, "Inf") && strstr(e.msg, "row 1, column 4"), "%s", e.msg);
    duet_mat_free(&f);
}

/* The CRC duet_npy_write_crc gives while writing is the file's CRC-32C
 * (duet_file_crc32c reads it back), in both dtypes, for an empty matrix and
 * past one 4 KiB conversion chunk; on failure *crc is left alone. */
TEST(write_crc_is_file_crc) {
    char p[512];
    duet_error e = {0};
    static float v[3000];
    for (size_t i = 0; i < 3000; i++) v[i] = (float)i * 0.37f - 400.0f;
    const duet_mat mats[3] = {{v, 1000, 3}, {v, 7, 5}, {v, 0, 4}};
    for (int m = 0; m < 3; m++)
        for (int dt = DUET_DTYPE_F32; dt <= DUET_DTYPE_F16; dt++) {
            uint32_t got = 0, want = 1;
            tmp_path(p, sizeof p, "crc.npy");
            CHECK(duet_npy_write_crc(p, &mats[m], (duet_dtype)dt, &got, &e) == DUET_OK);
            CHECK(duet_file_crc32c(p, &want, &e) == DUET_OK);
            CHECK_MSG(got == want, "matrix %d dtype %d: %08x written, %08x read", m, dt, got, want);
        }
    CHECK(duet_npy_write_crc(p, &mats[1], DUET_DTYPE_F32, NULL, &e) == DUET_OK);
    uint32_t keep = 0x1234u;
    tmp_path(p, sizeof p, "no/such/dir/crc.npy");
    CHECK(duet_npy_write_crc(p, &mats[1], DUET_DTYPE_F32, &keep, &e) == DUET_ERR_IO);
    CHECK(keep == 0x1234u);
}

int main(void) {
    if (scratch_make("npy")) return 1;
    RUN(fixture_f4);
    RUN(fixture_f8);
    RUN(fixture_f2);
    RUN(fixture_big_endian_f4);
    RUN(fixture_1d_is_column);
    RUN(fixture_versions_2_and_3);
    RUN(fixture_zero_rows);
    RUN(fixtures_refused);
    RUN(float16_every_value_both_orders);
    RUN(float64_big_endian_and_native_prefixes);
    RUN(unsupported_dtypes);
    RUN(header_variants_accepted);
    RUN(malformed_dict);
    RUN(shape_overflow_fails_before_allocating);
    RUN(truncated_at_every_length);
    RUN(trailing_garbage);
    RUN(bad_magic);
    RUN(unsupported_version);
    RUN(header_length_beyond_buffer);
    RUN(empty_and_missing);
    RUN(read_from_fifo);
    RUN(write_read_bit_exact);
    RUN(write_shapes_and_alignment);
    RUN(write_to_missing_directory);
    RUN(write_replaces_atomically);
    RUN(check_finite_names_position);
    RUN(write_crc_is_file_crc);
    scratch_remove();
    return check_summary("npy");
}
