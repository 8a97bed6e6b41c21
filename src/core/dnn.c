/* dnn.c -- oneDNN engine, precision, bf16 conversion and matrix products
 * (dnn.h). */
#include "core/dnn.h"
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

/* ------------------------------------------------------------ precision */

static const char *const prec_names[] = {"auto", "f32", "bf16"};

int duet_precision_parse(const char *s) {
    for (int i = 0; s && i < 3; i++)
        if (strcmp(s, prec_names[i]) == 0) return i;
    return -1;
}

const char *duet_precision_name(duet_precision p) {
    return (unsigned)p < 3 ? prec_names[p] : "?";
}

/* oneDNN's ISA values are nested bit sets: a CPU has isa X when all of
 * X's bits are set in the effective one. */
static int isa_has(unsigned eff, unsigned want) { return (eff & want) == want; }

int duet_cpu_has_bf16(void) {
    return isa_has((unsigned)dnnl_get_effective_cpu_isa(), (unsigned)dnnl_cpu_isa_avx512_core_bf16);
}

const char *duet_cpu_isa(void) {
    unsigned e = (unsigned)dnnl_get_effective_cpu_isa();
    if (isa_has(e, dnnl_cpu_isa_avx512_core_amx)) return "AMX-BF16";
    if (isa_has(e, dnnl_cpu_isa_avx512_core_bf16)) return "AVX512-BF16";
    if (isa_has(e, dnnl_cpu_isa_avx512_core_vnni)) return "AVX512-VNNI";
    if (isa_has(e, dnnl_cpu_isa_avx512_core)) return "AVX-512";
    if (isa_has(e, dnnl_cpu_isa_avx2_vnni)) return "AVX2-VNNI";
    if (isa_has(e, dnnl_cpu_isa_avx2)) return "AVX2";
    if (isa_has(e, dnnl_cpu_isa_avx)) return "AVX";
    if (isa_has(e, dnnl_cpu_isa_sse41)) return "SSE4.1";
    return "none";
}

duet_status duet_precision_resolve(duet_precision p, duet_precision *out, duet_error *err) {
    switch (p) {
    case DUET_PRECISION_AUTO:
        *out = duet_cpu_has_bf16() ? DUET_PRECISION_BF16 : DUET_PRECISION_F32;
        return DUET_OK;
    case DUET_PRECISION_F32: *out = p; return DUET_OK;
    case DUET_PRECISION_BF16:
        if (!duet_cpu_has_bf16())
            return duet_fail(err, DUET_ERR_UNSUPPORTED, "precision bf16: this CPU computes bf16 only "
                             "by emulation (oneDNN sees %s; bf16 needs AVX512-BF16 or AMX); "
                             "use --precision f32 or auto", duet_cpu_isa());
        *out = p;
        return DUET_OK;
    }
    return duet_fail(err, DUET_ERR_INVALID_ARG, "precision %d is not auto, f32 or bf16", (int)p);
}

void duet_onednn_version(char *buf, size_t n) {
    const dnnl_version_t *v = dnnl_version();
    snprintf(buf, n, "%d.%d.%d", v->major, v->minor, v->patch);
}

/* --------------------------------------------------------------- engine */

duet_status duet_dnn_fail(dnnl_status_t s, duet_error *err, const char *fmt, ...) {
    if (s == dnnl_success) return DUET_OK;
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    static const char *const names[] = {"success", "out of memory", "invalid arguments",
                                        "unimplemented", "iterator ends", "runtime error",
                                        "not required", "invalid graph", "invalid graph op",
                                        "invalid shape", "invalid data type"};
    const char *nm = (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "unknown status";
    duet_status st = s == dnnl_out_of_memory ? DUET_ERR_NOMEM
                   : s == dnnl_unimplemented ? DUET_ERR_UNSUPPORTED : DUET_ERR_INVALID_ARG;
    return duet_fail(err, st, "oneDNN: %s: %s (status %d)", what, nm, (int)s);
}

duet_status duet_dnn_init(duet_dnn *d, duet_precision p, duet_error *err) {
    memset(d, 0, sizeof *d);
    duet_status st = duet_precision_resolve(p, &d->prec, err);
    if (st) return st;
    st = duet_dnn_fail(dnnl_engine_create(&d->eng, dnnl_cpu, 0), err, "creating the CPU engine");
    if (!st) st = duet_dnn_fail(dnnl_stream_create(&d->stream, d->eng, dnnl_stream_default_flags), err,
                                "creating a stream");
    if (st) duet_dnn_fini(d);
    return st;
}

void duet_dnn_fini(duet_dnn *d) {
    if (!d) return;
    if (d->stream) dnnl_stream_destroy(d->stream);
    if (d->eng) dnnl_engine_destroy(d->eng);
    d->stream = NULL;
    d->eng = NULL;
}

/* ----------------------------------------------------------------- bf16 */

/* On a CPU with AVX512-BF16 (every CPU that computes bf16 natively) one
 * instruction rounds 16 floats, 4 to 12 times faster than the loop below,
 * which does the tail. Both round to nearest even and keep NaN a NaN; the
 * instruction also takes denormal inputs as zero, which features, weights
 * and activations never are in practice. */
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f,avx512bf16,avx512vl")))
static size_t bf16_avx512(const float *x, uint16_t *y, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(y + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x + i)));
    return i;
}
#endif

void duet_f32_to_bf16(const float *x, uint16_t *y, size_t n) {
    size_t i = 0;
#if defined(__x86_64__) && defined(__GNUC__)
    /* a fact about the CPU, not state: every thread that looks first
     * stores the same value */
    static atomic_int has = -1;
    int h = atomic_load_explicit(&has, memory_order_relaxed);
    if (h < 0) {
        h = __builtin_cpu_supports("avx512bf16") != 0;
        atomic_store_explicit(&has, h, memory_order_relaxed);
    }
    if (h) i = bf16_avx512(x, y, n);
#endif
    for (; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) { y[i] = (uint16_t)((u >> 16) | 0x40); continue; }
        u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
        y[i] = (uint16_t)(u >> 16);
    }
}

void duet_bf16_to_f32(const uint16_t *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)x[i] << 16;
        memcpy(&y[i], &u, 4);
    }
}

duet_status duet_dnn_to_bf16(duet_dnn *d, const float *x, uint16_t *y, size_t n, duet_error *err) {
    if (n == 0) return DUET_OK;
    dnnl_memory_desc_t a, b;
    dnnl_dims_t dims = {(dnnl_dim_t)n};
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t p = NULL;
    dnnl_memory_t ma = NULL, mb = NULL;
    duet_status st = duet_dnn_fail(dnnl_memory_desc_init_by_tag(&a, 1, dims, dnnl_f32, dnnl_a), err, "bf16 copy of %zu", n);
    if (!st) st = duet_dnn_fail(dnnl_memory_desc_init_by_tag(&b, 1, dims, dnnl_bf16, dnnl_a), err, "bf16 copy of %zu", n);
    if (!st) st = duet_dnn_fail(dnnl_reorder_primitive_desc_create(&pd, &a, d->eng, &b, d->eng, NULL), err,
                                "reorder f32 -> bf16 of %zu", n);
    if (!st) st = duet_dnn_fail(dnnl_primitive_create(&p, pd), err, "reorder f32 -> bf16");
    if (!st) st = duet_dnn_fail(dnnl_memory_create(&ma, &a, d->eng, (void *)x), err, "reorder source");
    if (!st) st = duet_dnn_fail(dnnl_memory_create(&mb, &b, d->eng, y), err, "reorder destination");
    if (!st) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, ma}, {DNNL_ARG_TO, mb}};
        st = duet_dnn_fail(dnnl_primitive_execute(p, d->stream, 2, args), err, "reorder f32 -> bf16 of %zu", n);
    }
    if (!st) st = duet_dnn_fail(dnnl_stream_wait(d->stream), err, "reorder wait");
    if (ma) dnnl_memory_destroy(ma);
    if (mb) dnnl_memory_destroy(mb);
    if (p) dnnl_primitive_destroy(p);
    if (pd) dnnl_primitive_desc_destroy(pd);
    return st;
}

/* ---------------------------------------------------------------- GEMM */

static duet_status desc2(dnnl_memory_desc_t *md, size_t r, size_t c, dnnl_dim_t s0, dnnl_dim_t s1,
                         dnnl_data_type_t dt, const char *what, duet_error *err) {
    dnnl_dims_t dims = {(dnnl_dim_t)r, (dnnl_dim_t)c}, strides = {s0, s1};
    return duet_dnn_fail(dnnl_memory_desc_init_by_strides(md, 2, dims, dt, strides), err,
                         "matmul %s [%zu x %zu]", what, r, c);
}

duet_status duet_gemm_plan(duet_dnn *d, duet_gemm *g, dnnl_data_type_t dt, size_t m, size_t n, size_t k,
                           size_t lda, size_t ldb, size_t ldc, int trans_b, int accumulate, duet_error *err) {
    return duet_gemm_plan_to(d, g, dt, dnnl_f32, m, n, k, lda, ldb, ldc, trans_b ? DUET_GEMM_TRANS_B : 0, accumulate,
                             err);
}

duet_status duet_gemm_plan_to(duet_dnn *d, duet_gemm *g, dnnl_data_type_t dt, dnnl_data_type_t cdt, size_t m,
                              size_t n, size_t k, size_t lda, size_t ldb, size_t ldc, int trans, int accumulate,
                              duet_error *err) {
    memset(g, 0, sizeof *g);
    int trans_a = (trans & DUET_GEMM_TRANS_A) != 0, trans_b = (trans & DUET_GEMM_TRANS_B) != 0;
    if (!m || !n || !k || lda < (trans_a ? m : k) || ldc < n || ldb < (trans_b ? k : n))
        return duet_fail(err, DUET_ERR_INVALID_ARG, "matmul [%zu x %zu] x [%zu x %zu]: bad shape or leading "
                         "dimension (%zu, %zu, %zu)", m, k, k, n, lda, ldb, ldc);
    g->m = m; g->n = n; g->k = k; g->dt = dt; g->cdt = cdt;
    duet_status st = trans_a ? desc2(&g->a, m, k, 1, (dnnl_dim_t)lda, dt, "A^T", err)
                             : desc2(&g->a, m, k, (dnnl_dim_t)lda, 1, dt, "A", err);
    if (!st) st = trans_b ? desc2(&g->b, k, n, 1, (dnnl_dim_t)ldb, dt, "B^T", err)
                          : desc2(&g->b, k, n, (dnnl_dim_t)ldb, 1, dt, "B", err);
    if (!st) st = desc2(&g->c, m, n, (dnnl_dim_t)ldc, 1, cdt, "C", err);
    if (st) return st;
    dnnl_matmul_desc_t md;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    st = duet_dnn_fail(dnnl_matmul_desc_init(&md, &g->a, &g->b, NULL, &g->c), err,
                       "matmul [%zu x %zu] x [%zu x %zu]", m, k, k, n);
    if (!st && accumulate) {
        st = duet_dnn_fail(dnnl_primitive_attr_create(&attr), err, "matmul attributes");
        if (!st) st = duet_dnn_fail(dnnl_post_ops_create(&po), err, "matmul post-ops");
        if (!st) st = duet_dnn_fail(dnnl_post_ops_append_sum(po, 1.0f), err, "matmul sum post-op");
        if (!st) st = duet_dnn_fail(dnnl_primitive_attr_set_post_ops(attr, po), err, "matmul post-ops");
    }
    if (!st) st = duet_dnn_fail(dnnl_primitive_desc_create(&pd, &md, attr, d->eng, NULL), err,
                                "matmul [%zu x %zu] x [%zu x %zu] %s", m, k, k, n, dt == dnnl_bf16 ? "bf16" : "f32");
    if (!st) st = duet_dnn_fail(dnnl_primitive_create(&g->prim, pd), err, "matmul primitive");
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return st;
}

duet_status duet_gemm_run(duet_dnn *d, const duet_gemm *g, const void *A, const void *B, void *C,
                          duet_error *err) {
    dnnl_memory_t ma = NULL, mb = NULL, mc = NULL;
    duet_status st = duet_dnn_fail(dnnl_memory_create(&ma, &g->a, d->eng, (void *)A), err, "matmul A");
    if (!st) st = duet_dnn_fail(dnnl_memory_create(&mb, &g->b, d->eng, (void *)B), err, "matmul B");
    if (!st) st = duet_dnn_fail(dnnl_memory_create(&mc, &g->c, d->eng, C), err, "matmul C");
    if (!st) {
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}};
        st = duet_dnn_fail(dnnl_primitive_execute(g->prim, d->stream, 3, args), err,
                           "matmul [%zu x %zu] x [%zu x %zu]", g->m, g->k, g->k, g->n);
    }
    if (!st) st = duet_dnn_fail(dnnl_stream_wait(d->stream), err, "matmul wait");
    if (ma) dnnl_memory_destroy(ma);
    if (mb) dnnl_memory_destroy(mb);
    if (mc) dnnl_memory_destroy(mc);
    return st;
}

void duet_gemm_free(duet_gemm *g) {
    if (!g) return;
    if (g->prim) dnnl_primitive_destroy(g->prim);
    g->prim = NULL;
}

/* Copies the [r x c] matrix x (leading dimension ld) into a packed bf16
 * array (caller frees with free()); NULL when out of memory. */
static uint16_t *to_bf16(const float *x, size_t r, size_t c, size_t ld) {
    uint16_t *y = duet_alloc_array(r, c * sizeof(uint16_t));
    if (y)
        for (size_t i = 0; i < r; i++) duet_f32_to_bf16(x + i * ld, y + i * c, c);
    return y;
}

duet_status duet_dnn_sgemm(duet_dnn *d, int trans_b, size_t m, size_t n, size_t k, const float *A, size_t lda,
                           const float *B, size_t ldb, int accumulate, float *C, size_t ldc, duet_error *err) {
    duet_gemm g;
    if (d->prec != DUET_PRECISION_BF16) {
        duet_status st = duet_gemm_plan(d, &g, dnnl_f32, m, n, k, lda, ldb, ldc, trans_b, accumulate, err);
        if (!st) st = duet_gemm_run(d, &g, A, B, C, err);
        duet_gemm_free(&g);
        return st;
    }
    uint16_t *a = to_bf16(A, m, k, lda);
    uint16_t *b = trans_b ? to_bf16(B, n, k, ldb) : to_bf16(B, k, n, ldb);
    duet_status st = !a || !b ? duet_fail(err, DUET_ERR_NOMEM, "matmul [%zu x %zu] x [%zu x %zu]: out of memory "
                                          "for bf16 copies", m, k, k, n)
                              : duet_gemm_plan(d, &g, dnnl_bf16, m, n, k, k, trans_b ? k : n, ldc, trans_b,
                                               accumulate, err);
    if (!st) st = duet_gemm_run(d, &g, a, b, C, err);
    if (a && b) duet_gemm_free(&g);
    free(a);
    free(b);
    return st;
}
