/* dnn.h -- oneDNN, duet's backend for dense compute (private, not installed).
 *
 * A duet_dnn is one oneDNN CPU engine and stream plus the precision the
 * owner computes in (f32, or bf16 where the CPU computes bf16 natively:
 * AVX512-BF16 or AMX). Objects that compute (a CNN, a model, an index
 * searcher) each own one: there is no global engine. oneDNN chooses the
 * instruction set at run time (ONEDNN_MAX_CPU_ISA caps it) and keeps its
 * own cache of primitives, so creating a primitive for a shape already seen
 * is cheap; callers that run one shape many times keep the primitive.
 *
 * Every dnnl_status_t is checked: duet_dnn_fail() turns it into a duet
 * error that names the operation and its shape. */
#ifndef DUET_DNN_H
#define DUET_DNN_H

#include "core/core.h"
#include <oneapi/dnnl/dnnl.h>

typedef struct duet_dnn {
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    duet_precision prec;     /* resolved: DUET_PRECISION_F32 or _BF16 */
} duet_dnn;

/* Creates the engine and stream and resolves p (duet_precision_resolve).
 * Free with duet_dnn_fini (safe on a zeroed or failed duet_dnn). */
duet_status duet_dnn_init(duet_dnn *d, duet_precision p, duet_error *err);
void duet_dnn_fini(duet_dnn *d);

/* DUET_OK for dnnl_success; otherwise a DUET_ERR_* (NOMEM for
 * out_of_memory, UNSUPPORTED for unimplemented, INVALID_ARG otherwise)
 * with "oneDNN: <what>: <oneDNN's status name>". */
duet_status duet_dnn_fail(dnnl_status_t s, duet_error *err, const char *fmt, ...)
    DUET_PRINTF(3, 4);

/* The oneDNN data type of a resolved precision. */
static inline dnnl_data_type_t duet_dnn_dt(duet_precision p) {
    return p == DUET_PRECISION_BF16 ? dnnl_bf16 : dnnl_f32;
}

/* bfloat16: the top 16 bits of a float32, rounded to nearest even (NaN
 * stays NaN; with AVX512-BF16, 16 floats an instruction, denormal inputs
 * taken as zero). n may be 0. Runs on the caller's thread. */
void duet_f32_to_bf16(const float *x, uint16_t *y, size_t n);
void duet_bf16_to_f32(const uint16_t *x, float *y, size_t n);
/* The same conversion as a oneDNN reorder on the dnn's engine: vectorized
 * and on every thread, for large arrays (a gallery, a weight matrix). */
duet_status duet_dnn_to_bf16(duet_dnn *d, const float *x, uint16_t *y, size_t n, duet_error *err);

/* A matrix product C = A B (+ C when accumulate), row-major, f32 output:
 *   A [m x k] (lda), B [k x n] (ldb) or, with trans_b, B [n x k] (ldb),
 *   C [m x n] (ldc).
 * A and B hold elements of type dt (f32, or bf16 as uint16_t); products are
 * accumulated in f32. m, n and k are fixed when the plan is made; the
 * pointers are given per run. Free with duet_gemm_free (NULL-safe, and safe
 * on a zeroed plan). duet_gemm_plan_to: C of type cdt (f32, or bf16: the
 * f32 sums rounded once, at the end); trans: DUET_GEMM_TRANS_B as trans_b,
 * and/or DUET_GEMM_TRANS_A: A given as [k x m] (lda >= m), i.e. A^T. */
#define DUET_GEMM_TRANS_B 1
#define DUET_GEMM_TRANS_A 2
typedef struct duet_gemm {
    dnnl_primitive_t prim;
    dnnl_memory_desc_t a, b, c;
    size_t m, n, k;
    dnnl_data_type_t dt, cdt;
} duet_gemm;
duet_status duet_gemm_plan(duet_dnn *d, duet_gemm *g, dnnl_data_type_t dt,
                           size_t m, size_t n, size_t k, size_t lda, size_t ldb,
                           size_t ldc, int trans_b, int accumulate, duet_error *err);
duet_status duet_gemm_plan_to(duet_dnn *d, duet_gemm *g, dnnl_data_type_t dt, dnnl_data_type_t cdt,
                              size_t m, size_t n, size_t k, size_t lda, size_t ldb,
                              size_t ldc, int trans, int accumulate, duet_error *err);
duet_status duet_gemm_run(duet_dnn *d, const duet_gemm *g, const void *A,
                          const void *B, void *C, duet_error *err);
void duet_gemm_free(duet_gemm *g);

/* One-shot: plans, runs and frees (oneDNN's primitive cache makes a repeat
 * of a shape cheap). For f32 inputs in the dnn's precision: with bf16, A
 * and B are converted to bf16 first (scratch allocated here). */
duet_status duet_dnn_sgemm(duet_dnn *d, int trans_b, size_t m, size_t n, size_t k,
                           const float *A, size_t lda, const float *B, size_t ldb,
                           int accumulate, float *C, size_t ldc, duet_error *err);

#endif
