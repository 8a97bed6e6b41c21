/* text.h -- private interface of the text part (issue 4): tokenizer, word
 * vectors, diagonal GMM, HGLMM, Fisher vectors, PCA (not installed).
 *
 * Word vectors and mixtures use float32 storage; EM runs in double. Every
 * buffer parser takes (pointer, length) and a name used in messages. */
#ifndef DUET_TEXT_H
#define DUET_TEXT_H

#include "core/core.h"

/* ------------------------------------------------------------ tokenizer */

/* Tokens of one text: NUL-terminated strings back to back in buf; tok[i]
 * points into buf. Reusable: duet_tokenize resets it (keeps capacity). */
typedef struct duet_tokens {
    char *buf; size_t buf_cap;
    const char **tok; size_t n, tok_cap;
    size_t n_invalid;   /* invalid UTF-8 bytes seen (each a separator) */
} duet_tokens;

/* Splits text[0..len) by the documented rule (docs/TEXT.md):
 * tokens are maximal runs of letters, lowercased. */
duet_status duet_tokenize(const char *text, size_t len, duet_tokens *t,
                          duet_error *err);
void duet_tokens_free(duet_tokens *t); /* NULL-safe */

/* ------------------------------------------------------------ word table */

/* A string -> row hash table over a packed vocabulary. */
typedef struct duet_vocab {
    size_t n;            /* words                                  */
    const char **word;   /* [n] NUL-terminated, point into blob    */
    char *blob;          /* owned copy (or NULL when borrowed)     */
    size_t blob_len;     /* bytes incl. the NULs                   */
    uint32_t *slot;      /* open addressing: row + 1, 0 = empty    */
    size_t n_slots;      /* power of two, >= 2 n                   */
} duet_vocab;

/* Builds from a packed blob of n NUL-terminated words (takes a copy when
 * copy is set, else borrows blob). Refuses empty words, invalid UTF-8 and
 * duplicates (DUET_ERR_FORMAT naming `name`). */
duet_status duet_vocab_build(duet_vocab *v, const char *blob, size_t blob_len,
                             size_t n, int copy, const char *name,
                             duet_error *err);
/* Row of word (NUL-terminated), or -1. */
long duet_vocab_find(const duet_vocab *v, const char *word);
void duet_vocab_free(duet_vocab *v);

/* ------------------------------------------------------------ vectors */

struct duet_vectors {
    size_t n, dim;
    duet_vocab vocab;
    float *vec;          /* [n x dim], owned or a view into tf        */
    float *own;          /* owned storage, or NULL                    */
    duet_tf_file tf;     /* when parsed from a buffer                  */
    void *map; size_t map_len; /* when memory-mapped (duet_vectors_load) */
    char *source_format; /* "glove", "word2vec-bin", ... (owned)        */
};

/* Buffer parsers (fuzz targets). fmt: one of the duet_vec_format values
 * except AUTO and WINK; wink has its own streaming parser. */
duet_status duet_vectors_parse_text(const char *buf, size_t len, int has_header,
                                    const char *fmt_name, const char *name,
                                    duet_vectors **out, duet_error *err);
duet_status duet_vectors_parse_w2v_bin(const char *buf, size_t len,
                                       const char *name, duet_vectors **out,
                                       duet_error *err);
duet_status duet_vectors_parse_wink(const char *buf, size_t len,
                                    const char *name, duet_vectors **out,
                                    duet_error *err);
/* Parses a duet vectors file image (takes over buf, like duet_tf_parse). */
duet_status duet_vectors_parse_file(char *buf, size_t len, const char *name,
                                    duet_vectors **out, duet_error *err);

/* ------------------------------------------------------------ mixtures */

/* Diagonal GMM: w [K], mu [K x D], var [K x D] (double). The fitting
 * functions take optional point weights wt [n] (NULL: all 1): EM on distinct
 * words weighted by their counts equals EM on every token occurrence. */
typedef struct duet_gmm {
    size_t k, d;
    double *w, *mu, *var;
} duet_gmm;

duet_status duet_gmm_alloc(duet_gmm *g, size_t k, size_t d);
void duet_gmm_free(duet_gmm *g);
/* k-means++ seeding of the means on x [n x d] (rng), variances = the
 * global per-dimension variance, uniform weights. */
duet_status duet_gmm_init_kmeanspp(duet_gmm *g, const float *x,
                                   const float *wt, size_t n, duet_rng *rng,
                                   duet_error *err);
/* EM from the current parameters (scikit-learn's GaussianMixture with
 * covariance_type='diag' and reg_covar added to every variance). Stops after
 * max_iter iterations or when the mean log-likelihood gains less than tol
 * (tol <= 0: run max_iter). ll_trace (optional, [max_iter]) gets the mean
 * log-likelihood computed in the E-step of each iteration; *iters the number
 * run. */
duet_status duet_gmm_em(duet_gmm *g, const float *x, const float *wt, size_t n,
                        int max_iter,
                        double tol, double reg_covar, double *ll_trace,
                        int *iters, duet_error *err);
/* Mean log-likelihood of x under g. */
double duet_gmm_score(const duet_gmm *g, const float *x, const float *wt,
                      size_t n);

/* HGLMM: per (component, dimension) a Gaussian (lap = 0, scale = sigma) or a
 * Laplacian (lap = 1, scale = b). */
typedef struct duet_hglmm {
    size_t k, d;
    double *w, *mu, *scale;
    unsigned char *lap;
} duet_hglmm;

duet_status duet_hglmm_alloc(duet_hglmm *h, size_t k, size_t d);
void duet_hglmm_free(duet_hglmm *h);
/* Starts from a GMM (all Gaussian). */
duet_status duet_hglmm_from_gmm(duet_hglmm *h, const duet_gmm *g);
/* EM: E-step posteriors; M-step per (k, d) the better of the weighted
 * Gaussian MLE and the weighted Laplacian MLE (weighted median, mean
 * absolute deviation). min_scale floors every scale. */
duet_status duet_hglmm_em(duet_hglmm *h, const float *x, const float *wt,
                          size_t n, int max_iter,
                          double tol, double min_scale, double *ll_trace,
                          int *iters, duet_error *err);
double duet_hglmm_score(const duet_hglmm *h, const float *x, const float *wt,
                        size_t n);

/* ------------------------------------------------------------ Fisher */

/* Float copies of a mixture prepared for encoding. kind 0: GMM, 1: HGLMM. */
typedef struct duet_fv_model {
    int kind;
    size_t k, d;
    float *w, *mu, *scale;   /* scale = sigma (Gaussian) or b (Laplace) */
    unsigned char *lap;      /* [k x d] or NULL (all Gaussian)         */
    float *logc;             /* [k] log w_k - sum_d log normalizer      */
    float *inv_var;          /* [k x d] 1/sigma^2 (0 on Laplace dims)   */
    float *mu_iv;            /* [k x d] mu/sigma^2 (0 on Laplace dims)  */
} duet_fv_model;

duet_status duet_fv_from_gmm(duet_fv_model *m, const duet_gmm *g);
duet_status duet_fv_from_hglmm(duet_fv_model *m, const duet_hglmm *h);
void duet_fv_free(duet_fv_model *m);
size_t duet_fv_dim(const duet_fv_model *m); /* 2 k d */

/* Fisher vectors of n sentences: sentence s has the word vectors
 * x[start[s] .. start[s+1]) (rows of [* x d]). out: [n x 2kd], each row
 * [G_mu (k x d) | G_scale (k x d)], signed square root, L2-normalized; a
 * sentence without words gets zeros. */
duet_status duet_fv_encode(const duet_fv_model *m, const float *x,
                           const size_t *start, size_t n, float *out,
                           size_t ldo, duet_error *err);

/* ------------------------------------------------------------ ICA */

/* FastICA of x [n x d] (weights wt [n] or NULL): parallel fixed-point
 * iterations with the logcosh contrast on the whitened data, from a random
 * orthogonal start (rng), until max | |<w_new, w_old>| - 1 | < tol. The
 * independent components of a point are (x - mean) unmix^T (unit variance,
 * uncorrelated). mean [d], unmix [d x d]. */
duet_status duet_ica_fit(const float *x, const float *wt, size_t n, size_t d,
                         int max_iter, double tol, duet_rng *rng,
                         float *mean, float *unmix, int *iters,
                         duet_error *err);

/* ------------------------------------------------------------ PCA */

/* PCA of x [n x din] to dout components: mean [din], basis [din x dout]
 * (columns = principal directions, by decreasing variance, sign fixed so
 * that the largest-magnitude entry of each column is positive), var [dout]
 * (eigenvalues, optional). Covariance by SSYRK, all eigenvectors by LAPACK
 * ssyevr (MRRR), the top dout kept. */
duet_status duet_pca_fit(const float *x, size_t n, size_t din, size_t dout,
                         float *mean, float *basis, float *var,
                         duet_error *err);
/* y [n x dout] = (x - mean) basis. */
void duet_pca_apply(const float *x, size_t n, size_t din, size_t dout,
                    const float *mean, const float *basis, float *y);
/* The same with bf16 inputs to the product (oneDNN, f32 accumulation):
 * basis_h is the bf16 copy of the basis. Only where the CPU computes bf16
 * natively. */
duet_status duet_pca_apply_bf16(const float *x, size_t n, size_t din,
                                size_t dout, const float *mean,
                                const uint16_t *basis_h, float *y,
                                duet_error *err);

/* The randomized method's settings. */
#define DUET_PCA_ORTH_CHOLQR 0      /* LU, then CholeskyQR2 (f32 products)  */
#define DUET_PCA_ORTH_HOUSEHOLDER 1 /* LAPACK sgeqrf + sorgqr               */
typedef struct duet_pca_opts {
    int power_iters;      /* q: products with the covariance after the
                             first, each LU-normalized (default 2)         */
    size_t oversample;    /* extra columns p (0: max(10, dout / 50))       */
    size_t ritz_max;      /* Rayleigh-Ritz when dout + p <= this (1024);
                             above, the subspace's orthonormal basis is
                             ordered by the variance along each column     */
    duet_precision prec;  /* of the products with the covariance (and of
                             the covariance itself): f32 or bf16           */
    uint64_t seed;        /* of the random start                          */
    int start;            /* DUET_PCA_START_* (duet.h): the first block   */
    size_t block_bytes;   /* the centred, transposed copy of the samples
                             the covariance is formed from, at most (0: 1
                             GiB; 256 samples at least): the whole input
                             in one block where it fits, else blocks whose
                             f32 sums are added up                        */
    int orth;             /* the final orthonormalization: DUET_PCA_ORTH_* */
    double *times;        /* optional [DUET_PCA_PHASES]: seconds spent in
                             the covariance, the products with it, the LU
                             normalizations, the final orthonormalization
                             and the ordering (Rayleigh-Ritz or quotients) */
    double *cpu_times;    /* optional [DUET_PCA_PHASES]: the process's CPU
                             seconds in the same phases (all threads)      */
    int *passes;          /* optional: the final step's CholeskyQR passes
                             (negative: -(passes + 1) when it fell back to
                             Householder QR on rank-deficient columns)     */
} duet_pca_opts;
#define DUET_PCA_PHASES 5
duet_pca_opts duet_pca_default_opts(void);
/* Randomized PCA (subspace iteration, Halko et al. 2011, on the covariance
 * formed by oneDNN products in o->prec): mean, basis and var as
 * duet_pca_fit; basis is an orthonormal basis of the estimated top dout
 * principal subspace, columns by decreasing variance (the principal
 * directions themselves when Rayleigh-Ritz ran), var the variance along
 * each column. Errors: fewer than 2 samples (DUET_ERR_EMPTY), dout outside
 * 1..din or a setting out of range (DUET_ERR_INVALID_ARG), non-finite
 * input (DUET_ERR_NONFINITE naming the column). */
duet_status duet_pca_fit_randomized(const float *x, size_t n, size_t din,
                                    size_t dout, const duet_pca_opts *o,
                                    float *mean, float *basis, float *var,
                                    duet_error *err);
/* The same, free to use x's memory as scratch: x's contents are undefined
 * afterwards. With bf16 products, n >= din and a start other than samples
 * the fit then needs no fresh memory for its large arrays (the samples are
 * rounded to bf16 in place; a first touch of fresh memory costs up to
 * 2.5 s per GB on the Firecracker machine); otherwise as above. */
duet_status duet_pca_fit_randomized_in_place(float *x, size_t n, size_t din,
                                             size_t dout, const duet_pca_opts *o,
                                             float *mean, float *basis, float *var,
                                             duet_error *err);
/* mean [din] of x [n x din], accumulated in double (m [din], zeroed by the
 * caller, gets it in double). Shared by both methods. */
void duet_pca_mean(const float *x, size_t n, size_t din, double *m, float *mean);

/* ------------------------------------------------------------ internal */

/* What the files of one component share with each other and nothing else
 * uses: the word-vector files (vectors.c, vectors_text.c, vectors_wink.c,
 * vectors_file.c) and the text-model files (textmodel.c, textmodel_fit.c,
 * textmodel_file.c). */

#define DUET_VEC_MAX_DIM 100000 /* largest dimension an importer accepts */
#define DUET_VEC_MAX_WORD 4096  /* longest word, in bytes                 */
/* The magic of duet's vectors file (vectors_file.c), "DUETVECS". */
extern const char duet_vec_magic[8];
/* Streams the wink JSON file at path (vectors_wink.c); progress on stderr
 * when it is a terminal. */
duet_status duet_vectors_read_wink(const char *path, duet_vectors **out,
                                   duet_error *err);

/* The text model (opaque in duet.h): every buffer is owned and released
 * by duet_textmodel_free. */
struct duet_textmodel {
    duet_encoder enc;
    duet_textmodel_params p;
    size_t dim_raw, dim;
    /* word vectors (mean, fv-*): L2-normalized rows */
    duet_vocab wv; size_t wd; float *wvec;
    /* tf-idf */
    duet_vocab tv; float *idf;
    /* mixtures */
    int has_gmm, has_hglmm;
    duet_fv_model fg, fh;
    /* ICA applied to the word table (fv-*): mean [wd], unmix [wd x wd] */
    int has_ica; float *ica_mean, *ica_unmix;
    /* PCA (pca_out == 0: none); pca_bf16: encoding projects with bf16
     * products (pca_basis_h, the basis in bf16; NULL on a CPU without
     * native bf16, which projects in f32) */
    size_t pca_out; float *pca_mean, *pca_basis;
    int pca_bf16; uint16_t *pca_basis_h;
};

#define DUET_TEXT_CHUNK DUET_TEXT_BATCH /* texts encoded per batch */
/* The width of an encoder's raw features (before PCA): word_dim for mean,
 * 2 K word_dim for one Fisher vector, twice that for fv-both, vocab for
 * tf-idf (0 while the vocabulary is not known). */
size_t duet_textmodel_raw_dim(duet_encoder enc, size_t components, size_t word_dim, size_t vocab);
/* Sets dim_raw (from the encoder, components, wd, the tf-idf vocabulary)
 * and dim (pca_out, or dim_raw without PCA). */
void duet_textmodel_set_dims(duet_textmodel *m);
/* Raw encodings (before PCA) of n texts into raw [n x dim_raw]; flags
 * (optional) get DUET_TEXT_FLAG_EMPTY for a text without a known word; st
 * accumulates the counts; tk is a reusable token buffer. */
duet_status duet_textmodel_encode_raw(const duet_textmodel *m,
                                      const char *const *texts, size_t n,
                                      float *raw, uint8_t *flags,
                                      duet_text_stats *st, duet_tokens *tk,
                                      duet_error *err);
/* The text model in len bytes of buf, a text model file's content (as
 * duet_textmodel_load; buf is taken over: freed here, also on failure).
 * name stands for the file in messages. For a model sent between the
 * processes of a job. */
duet_status duet_textmodel_load_mem(char *buf, size_t len, const char *name,
                                    duet_textmodel **out, duet_error *err);
/* Makes pca_basis_h when pca_bf16 is set and the CPU computes bf16. */
duet_status duet_textmodel_prepare_pca(duet_textmodel *m, duet_error *err);
/* Packs n words into one blob of NUL-terminated strings (*len bytes, for
 * duet_vocab_build); caller frees. NULL when out of memory. */
char *duet_textmodel_pack_words(const char *const *w, size_t n, size_t *len);

#endif
