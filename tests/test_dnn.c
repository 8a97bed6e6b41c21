/* test_dnn.c -- the oneDNN foundation (src/core/dnn.c): precision names
 * and resolution, bf16 rounding against hand-worked values, matrix
 * products against a double-precision loop (f32: 1e-5 relative; bf16:
 * within the bound its input rounding allows), accumulation, transposed B,
 * leading dimensions, and bad shapes refused with a message. Prints which
 * instruction set and precision it ran with. */
#include "check.h"
#include "core/dnn.h"

TEST(precision_names) {
    CHECK(duet_precision_parse("auto") == DUET_PRECISION_AUTO);
    CHECK(duet_precision_parse("f32") == DUET_PRECISION_F32);
    CHECK(duet_precision_parse("bf16") == DUET_PRECISION_BF16);
    CHECK(duet_precision_parse("fp16") == -1);
    CHECK(duet_precision_parse(NULL) == -1);
    CHECK(strcmp(duet_precision_name(DUET_PRECISION_BF16), "bf16") == 0);
    CHECK(strcmp(duet_precision_name((duet_precision)7), "?") == 0);
}

TEST(precision_resolve) {
    duet_precision p = DUET_PRECISION_AUTO;
    duet_error e = {0};
    CHECK(duet_precision_resolve(DUET_PRECISION_F32, &p, &e) == DUET_OK && p == DUET_PRECISION_F32);
    CHECK(duet_precision_resolve(DUET_PRECISION_AUTO, &p, &e) == DUET_OK);
    CHECK(p == (duet_cpu_has_bf16() ? DUET_PRECISION_BF16 : DUET_PRECISION_F32));
    duet_status st = duet_precision_resolve(DUET_PRECISION_BF16, &p, &e);
    if (duet_cpu_has_bf16()) CHECK(st == DUET_OK && p == DUET_PRECISION_BF16);
    else CHECK(st == DUET_ERR_UNSUPPORTED && strstr(e.msg, "bf16") && strstr(e.msg, duet_cpu_isa()));
    fprintf(stderr, "  oneDNN ISA %s, native bf16 %s, auto -> %s\n", duet_cpu_isa(),
            duet_cpu_has_bf16() ? "yes" : "no", duet_precision_name(p));
}

TEST(bf16_rounding) {
    /* 1 + 2^-8 is halfway between two bf16 values (1 and 1 + 2^-7): ties
     * to even (1). 1 + 3*2^-8 ties up to 1 + 2^-6 (even mantissa). */
    float x[6] = {1.0f, 1.0f + 1.0f / 256, 1.0f + 3.0f / 256, -2.5f, 0.0f, NAN};
    uint16_t y[6];
    float z[6];
    duet_f32_to_bf16(x, y, 6);
    duet_bf16_to_f32(y, z, 6);
    CHECK(y[0] == 0x3f80);
    CHECK(z[1] == 1.0f);
    CHECK(z[2] == 1.0f + 4.0f / 256);
    CHECK(z[3] == -2.5f);
    CHECK(z[4] == 0.0f);
    CHECK(isnan(z[5]));
    /* every float within half a bf16 ulp (2^-8 relative) of its bf16 value */
    duet_rng r;
    duet_rng_seed(&r, 3);
    int ok = 1;
    for (int i = 0; i < 10000; i++) {
        float v = duet_rng_normal(&r) * 100, w;
        uint16_t h;
        duet_f32_to_bf16(&v, &h, 1);
        duet_bf16_to_f32(&h, &w, 1);
        if (fabsf(v - w) > fabsf(v) / 256) ok = 0;
    }
    CHECK(ok);
    /* a whole array (the AVX512-BF16 instruction where the CPU has it)
     * rounds exactly as one float at a time (the portable loop) */
    enum { N = 1000 };
    float v[N];
    uint16_t whole[N], one[N];
    for (int i = 0; i < N; i++) v[i] = duet_rng_normal(&r) * (i % 7 ? 1.0f : 1e-3f);
    v[17] = NAN;
    duet_f32_to_bf16(v, whole, N);
    for (int i = 0; i < N; i++) duet_f32_to_bf16(&v[i], &one[i], 1);
    int same = 1;
    for (int i = 0; i < N; i++) same &= i == 17 ? (whole[i] & 0x7f80) == 0x7f80 && (whole[i] & 0x7f) != 0 : whole[i] == one[i];
    CHECK(same);
}

/* C = A op(B) (+ C0) in double, row-major with leading dimensions. */
static void ref_gemm(int tb, size_t m, size_t n, size_t k, const float *A, size_t lda, const float *B, size_t ldb,
                     const float *C0, double *C) {
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double s = C0 ? C0[i * n + j] : 0;
            for (size_t t = 0; t < k; t++) s += (double)A[i * lda + t] * (tb ? B[j * ldb + t] : B[t * ldb + j]);
            C[i * n + j] = s;
        }
}

static void gemm_case(duet_precision prec, int tb, int acc, size_t m, size_t n, size_t k, size_t pad) {
    duet_dnn d;
    duet_error e = {0};
    if (duet_dnn_init(&d, prec, &e)) { CHECK_MSG(0, "%s", e.msg); return; }
    duet_rng r;
    duet_rng_seed(&r, m * 31 + n * 7 + k);
    size_t lda = k + pad, ldb = (tb ? k : n) + pad, rb = tb ? n : k;
    float *A = malloc(m * lda * sizeof(float)), *B = malloc(rb * ldb * sizeof(float));
    float *C = malloc(m * n * sizeof(float)), *C0 = malloc(m * n * sizeof(float));
    double *R = malloc(m * n * sizeof(double)), *S = malloc(m * n * sizeof(double));
    for (size_t i = 0; i < m * lda; i++) A[i] = duet_rng_normal(&r);
    for (size_t i = 0; i < rb * ldb; i++) B[i] = duet_rng_normal(&r);
    for (size_t i = 0; i < m * n; i++) C[i] = C0[i] = acc ? duet_rng_normal(&r) : 12345.0f;
    CHECK_MSG(duet_dnn_sgemm(&d, tb, m, n, k, A, lda, B, ldb, acc, C, n, &e) == DUET_OK, "%s", e.msg);
    ref_gemm(tb, m, n, k, A, lda, B, ldb, acc ? C0 : NULL, R);
    /* |A||B| bounds the rounding of the inputs (bf16) */
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (size_t t = 0; t < k; t++) s += fabs(A[i * lda + t] * (tb ? B[j * ldb + t] : B[t * ldb + j]));
            S[i * n + j] = s;
        }
    double worst = 0;
    int bad = 0;
    for (size_t i = 0; i < m * n; i++) {
        double tol = d.prec == DUET_PRECISION_BF16 ? S[i] / 128 + 1e-5 : 1e-5 * (fabs(R[i]) + S[i] / k + 1);
        double dev = fabs(C[i] - R[i]);
        if (dev > tol) bad++;
        if (dev / (S[i] + 1e-30) > worst) worst = dev / (S[i] + 1e-30);
    }
    CHECK_MSG(bad == 0, "%s %zux%zux%zu tb=%d acc=%d: %d entries off (worst %.3g of |A||B|)",
              duet_precision_name(d.prec), m, n, k, tb, acc, bad, worst);
    free(A); free(B); free(C); free(C0); free(R); free(S);
    duet_dnn_fini(&d);
}

TEST(gemm_f32) {
    gemm_case(DUET_PRECISION_F32, 0, 0, 37, 53, 61, 0);
    gemm_case(DUET_PRECISION_F32, 1, 0, 64, 96, 128, 3);
    gemm_case(DUET_PRECISION_F32, 0, 1, 5, 7, 300, 2);
    gemm_case(DUET_PRECISION_F32, 1, 1, 1, 1000, 512, 0);
}

TEST(gemm_bf16) {
    if (!duet_cpu_has_bf16()) { SKIP("no native bf16 on this CPU (f32 ran above)"); return; }
    gemm_case(DUET_PRECISION_BF16, 0, 0, 37, 53, 61, 0);
    gemm_case(DUET_PRECISION_BF16, 1, 1, 64, 96, 128, 3);
}

/* A plan that writes bf16: its output is the f32 plan's output rounded to
 * bf16 (to one bf16 step: the two plans may add in another order). */
TEST(gemm_bf16_output) {
    if (!duet_cpu_has_bf16()) { SKIP("no native bf16 on this CPU"); return; }
    duet_dnn d;
    duet_error e = {0};
    if (duet_dnn_init(&d, DUET_PRECISION_BF16, &e)) { CHECK_MSG(0, "%s", e.msg); return; }
    size_t m = 40, n = 72, k = 300;
    float *a = malloc(m * k * sizeof(float)), *b = malloc(n * k * sizeof(float)), *c = malloc(m * n * sizeof(float));
    uint16_t *ah = malloc(m * k * 2), *bh = malloc(n * k * 2), *ch = malloc(m * n * 2), *cr = malloc(m * n * 2);
    duet_rng r;
    duet_rng_seed(&r, 9);
    for (size_t i = 0; i < m * k; i++) a[i] = duet_rng_normal(&r);
    for (size_t i = 0; i < n * k; i++) b[i] = duet_rng_normal(&r);
    duet_f32_to_bf16(a, ah, m * k);
    duet_f32_to_bf16(b, bh, n * k);
    duet_gemm g32, g16;
    CHECK(duet_gemm_plan(&d, &g32, dnnl_bf16, m, n, k, k, k, n, 1, 0, &e) == DUET_OK);
    CHECK(duet_gemm_plan_to(&d, &g16, dnnl_bf16, dnnl_bf16, m, n, k, k, k, n, 1, 0, &e) == DUET_OK);
    CHECK(duet_gemm_run(&d, &g32, ah, bh, c, &e) == DUET_OK);
    CHECK(duet_gemm_run(&d, &g16, ah, bh, ch, &e) == DUET_OK);
    duet_f32_to_bf16(c, cr, m * n);
    int off = 0;
    for (size_t i = 0; i < m * n; i++) off += abs((int)(int16_t)ch[i] - (int)(int16_t)cr[i]) > 1;
    CHECK_MSG(off == 0, "%d of %zu bf16 outputs more than one step from the rounded f32 output", off, m * n);
    duet_gemm_free(&g32);
    duet_gemm_free(&g16);
    free(a); free(b); free(c); free(ah); free(bh); free(ch); free(cr);
    duet_dnn_fini(&d);
}

TEST(gemm_bad_shapes) {
    duet_dnn d;
    duet_error e = {0};
    duet_gemm g;
    CHECK(duet_dnn_init(&d, DUET_PRECISION_F32, &e) == DUET_OK);
    CHECK(duet_gemm_plan(&d, &g, dnnl_f32, 4, 4, 0, 4, 4, 4, 0, 0, &e) == DUET_ERR_INVALID_ARG);
    CHECK(strstr(e.msg, "matmul") != NULL);
    CHECK(duet_gemm_plan(&d, &g, dnnl_f32, 4, 4, 8, 7, 4, 4, 0, 0, &e) == DUET_ERR_INVALID_ARG);
    duet_gemm_free(&g);
    duet_gemm_free(NULL);
    duet_dnn_fini(&d);
    duet_dnn_fini(&d); /* twice: safe */
    duet_dnn_fini(NULL);
    /* a oneDNN status becomes a duet error naming the operation */
    CHECK(duet_dnn_fail(dnnl_out_of_memory, &e, "conv %s", "res2a") == DUET_ERR_NOMEM);
    CHECK(strstr(e.msg, "conv res2a") && strstr(e.msg, "out of memory"));
    CHECK(duet_dnn_fail(dnnl_success, &e, "x") == DUET_OK);
}

int main(void) {
    RUN(precision_names);
    RUN(precision_resolve);
    RUN(bf16_rounding);
    RUN(gemm_f32);
    RUN(gemm_bf16);
    RUN(gemm_bf16_output);
    RUN(gemm_bad_shapes);
    return check_summary("dnn");
}
