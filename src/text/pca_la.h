/* pca_la.h -- the linear algebra of the randomized PCA (pca_la.c), shared
 * by pca_la.c and pca_rand.c only. Matrices are row-major unless a comment
 * says column-major; "Yt [l x d]" is the column-major [d x l] matrix Y that
 * LAPACK sees. Products accumulate in f32; their inputs are f32 or bf16
 * (uint16_t) as dt says. */
#ifndef DUET_TEXT_PCA_LA_H
#define DUET_TEXT_PCA_LA_H

#include "text.h"
#include "core/dnn.h"

/* One oneDNN matmul plan and the shape it was made for. */
typedef struct duet_pca_plan {
    dnnl_data_type_t dt, cdt;
    size_t m, n, k, lda, ldb, ldc;
    int trans, acc;   /* DUET_GEMM_TRANS_* */
    duet_gemm g;
} duet_pca_plan;

#define DUET_PCA_PLANS 48
/* The engine and the plans made so far (the oldest dropped when full). */
typedef struct duet_pca_la {
    duet_dnn dnn;
    duet_pca_plan plans[DUET_PCA_PLANS];
    size_t nplans, made;   /* made: plans created in all (a statistic) */
} duet_pca_la;

duet_status duet_pca_la_init(duet_pca_la *la, duet_precision prec, duet_error *err);
/* Frees the plans and the engine (safe on a zeroed or failed la). */
void duet_pca_la_fini(duet_pca_la *la);

/* C [m x n] (+= when acc) A [m x k] B ([k x n], or [n x k] with
 * DUET_GEMM_TRANS_B in trans; DUET_GEMM_TRANS_A: A given as [k x m]),
 * C of type cdt (f32 or bf16), through the plan of that shape (made on
 * first use). */
duet_status duet_pca_gemm(duet_pca_la *la, dnnl_data_type_t dt, dnnl_data_type_t cdt, size_t m, size_t n, size_t k,
                          const void *A, size_t lda, const void *B, size_t ldb, int trans, int acc, void *C,
                          size_t ldc, duet_error *err);
/* C [m x n] = A [m x k] B [k x n], by column panels. */
duet_status duet_pca_mul(duet_pca_la *la, dnnl_data_type_t dt, size_t m, size_t n, size_t k, const void *A,
                         size_t lda, const void *B, size_t ldb, float *C, size_t ldc, duet_error *err);
/* C [rows x rows] (type cdt) = A A^T (A [rows x k]), or with cols A^T A
 * (A [k x rows]), or += with acc, on the tiles on and above the diagonal
 * only: the upper triangle of C is right, the tiles below are untouched. */
duet_status duet_pca_syrk_upper(duet_pca_la *la, dnnl_data_type_t dt, dnnl_data_type_t cdt, size_t rows, size_t k,
                                const void *A, size_t lda, int cols, int acc, void *C, size_t ldc, duet_error *err);
/* Yt [l x d] replaced by P L of its LU factorization with partial pivoting
 * (LAPACK sgetrf): the same span, entries of L at most 1 in magnitude. ipiv
 * [l] is scratch. */
duet_status duet_pca_lu(float *Yt, size_t d, size_t l, int *ipiv, duet_error *err);
/* Yt [l x d] replaced by an orthonormal basis of its span: Householder QR
 * (LAPACK sgeqrf, sorgqr). */
duet_status duet_pca_householder(float *Yt, size_t d, size_t l, duet_error *err);
/* The same by method (DUET_PCA_ORTH_*). CholeskyQR: LU, then CholeskyQR
 * passes in f32 (SSYRK, SPOTRF, STRSM): two, and a third or fourth while
 * a probe of the columns' inner products finds an orthogonality error
 * above max(DUET_PCA_ORTH_TOL, 8 u sqrt(d)); Householder QR when a
 * Cholesky factorization breaks down (rank-deficient columns) or four
 * passes do not reach it. *passes: the CholeskyQR passes, or
 * -(passes + 1) when Householder QR finished the job. */
#define DUET_PCA_ORTH_TOL 4e-6
duet_status duet_pca_orthonormalize(float *Yt, size_t d, size_t l, int method, int *ipiv, int *passes,
                                    duet_error *err);

#endif
