/* embed.h -- private interface of the two-branch network, its loss and the
 * trainer (src/embed/). Tests include it to check every kernel on its own.
 *
 * Shapes in comments read [rows x cols]; n is the number of rows in a batch,
 * h the hidden width, o the embedding width. docs/MODEL.md is the contract. */
#ifndef DUET_EMBED_H
#define DUET_EMBED_H

#include "core/core.h"
#include "core/dnn.h"
#include <jansson.h>
#include <string.h>

/* ------------------------------------------------------ matrix products
 * mm.c: every product of the branches, the loss and evaluation runs on
 * oneDNN through a duet_mm_cache: one matmul primitive per shape, made on
 * first use and reused (DUET_MM_PLANS shapes at most, the oldest evicted),
 * with the cache's own scratchpad. A cache is used by one thread at a time;
 * caches on different threads share nothing but the (thread-safe) engine.
 *
 *   C [m x n] (ldc) = op(A) op(B) (+ bias in every row) (+ C when acc)
 *   op(A) = A [m x k] (lda), or with ta the transpose of A [k x m] (lda)
 *   op(B) = B [k x n] (ldb), or with tb the transpose of B [n x k] (ldb)
 * A and B hold elements of type dt (dnnl_f32, or dnnl_bf16 as uint16_t);
 * products accumulate in f32; bias and C are f32. */
typedef struct duet_mm {
    size_t m, n, k;
    dnnl_data_type_t dt;
    const void *a; size_t lda; int ta;
    const void *b; size_t ldb; int tb;
    const float *bias;
    float *c; size_t ldc; int acc;
} duet_mm;

typedef struct duet_mm_plan {
    duet_mm key;              /* the shape (pointers are not part of it)   */
    dnnl_primitive_t prim;
    dnnl_memory_desc_t md[5]; /* A, B, C, bias, scratchpad                 */
    size_t scratch;           /* scratchpad bytes (rounded to 64)          */
} duet_mm_plan;

#define DUET_MM_PLANS 12
typedef struct duet_mm_cache {
    duet_dnn *dnn;            /* engine and stream: borrowed, or &own      */
    duet_dnn own;
    duet_mm_plan plans[DUET_MM_PLANS];
    size_t next;              /* the slot the next new shape takes         */
    void *scratch;            /* the largest scratchpad of the plans       */
    size_t scratch_cap;
} duet_mm_cache;

/* dnn NULL: the cache makes its own f32 engine. Free with
 * duet_mm_cache_free (NULL-safe, safe after a failed init). */
duet_status duet_mm_cache_init(duet_mm_cache *c, duet_dnn *dnn, duet_error *err);
void duet_mm_cache_free(duet_mm_cache *c);
duet_status duet_mm_run(duet_mm_cache *c, const duet_mm *op, duet_error *err);

/* duet_parallel_for (core.h) on oneDNN's OpenMP threads (mm.c says why):
 * fn(ctx, begin, end) over [0, n) in one contiguous chunk per thread, as
 * many threads as oneDNN uses but each with at least DUET_PAR_WORK of work,
 * item_cost being the work of one item (about one per element touched). */
#define DUET_PAR_WORK (1 << 20)
void duet_embed_parallel_for(size_t n, size_t item_cost, duet_range_fn fn, void *ctx);
/* The calling thread's index in the team of duet_embed_parallel_for (0
 * outside one), and the most threads it uses. */
size_t duet_embed_thread(void);
size_t duet_embed_max_threads(void);
/* Products of fewer multiply-adds than this run on one thread. */
#define DUET_MM_SERIAL (double)(1 << 24)

/* n elements of size bytes (zeroed if zero), for arrays that training
 * streams through: 4 MB and more on huge pages where the kernel allows
 * (mm.c); NULL on overflow or out of memory. Free with free(). */
void *duet_embed_alloc(size_t n, size_t size, int zero);

/* y = bf16(x) for rows x cols floats (duet_f32_to_bf16, core/dnn.h), on
 * the threads (duet_embed_parallel_for). */
void duet_embed_bf16_rows(const float *x, size_t rows, size_t cols, uint16_t *y);

/* x where keep is all ones (all_if(cond)), else +0, without a branch: for
 * choices that depend on the data (a branch would be mispredicted every
 * other element), and which the compiler vectorizes where a ?: stays a
 * branch. */
static inline float keep_or_zero(float x, uint32_t keep) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    u &= keep;
    memcpy(&x, &u, sizeof x);
    return x;
}
static inline uint32_t all_if(int cond) { return 0u - (uint32_t)(cond != 0); }

/* Named views of one branch's parameters inside a slab (the model's
 * parameters, or a same-shaped slab of gradients / optimizer moments).
 * MLP:    W1 [d_in x h], b1 [h], gamma [h], beta [h], W2 [h x o], b2 [o]
 * linear: W1 [d_in x o], b1 [o]; the others are NULL. */
typedef struct duet_bparams {
    float *W1, *b1, *gamma, *beta, *W2, *b2;
    /* bf16 copies of W1 and W2 for bf16 products (the model's mirror,
     * duet_model_sync_bf16); NULL: the branch converts W1/W2 per pass */
    const uint16_t *W1h, *W2h;
} duet_bparams;

/* The shape of one branch. */
typedef struct duet_branch {
    size_t d_in, hidden, out;
    int linear;
} duet_branch;

/* Number of floats of a branch's parameters; if base is not NULL, sets the
 * views of *v into base (W1, b1, gamma, beta, W2, b2 in that order; W1h and
 * W2h NULL). */
size_t duet_branch_layout(const duet_branch *b, float *base, duet_bparams *v);

/* Forward/backward scratch for up to cap rows, and the products' cache.
 * The products run in the precision of the workspace's duet_dnn: f32, or
 * bf16 (inputs X, W1, D, W2, dZ2 and dZ1 rounded to bf16, f32 accumulation
 * and f32 results; batch-norm, normalization and gradients stay f32). All
 * arrays owned by the workspace; free with duet_branch_ws_free (NULL-safe). */
typedef struct duet_branch_ws {
    size_t cap;
    int bf16;        /* products in bf16                                      */
    float *xh;       /* [n x h] BN-normalized pre-activation (MLP)            */
    float *d;        /* [n x h] post-dropout activations (f32 only)           */
    float *dd;       /* [n x h] backward scratch                              */
    float *e;        /* [n x o] normalized output embeddings                  */
    float *de;       /* [n x o] backward scratch (dZ2)                        */
    float *inv_norm; /* [n]     1/||Z2||                                      */
    float *mean, *var, *inv_std; /* [h] batch statistics                      */
    /* bf16 only: */
    uint16_t *xb;    /* [n x d_in] the input rows (filled by the caller when
                        it passes x = NULL, else converted from x)           */
    uint16_t *hb;    /* [n x h] D in the forward pass, then dZ1 (the dropout
                        mask is not stored: where D > 0 it is 1/(1-p))       */
    uint16_t *ob;    /* [n x o] dZ2 (the linear variant: dZ)                  */
    uint16_t *wb;    /* W1 and W2 converted per pass when w has no W1h/W2h   */
    const float *mask_src; /* the last forward's mask_override, or NULL      */
    float drop_scale;  /* 1/(1-p) in training with dropout, else 1           */
    duet_mm_cache mm;
    duet_error err;  /* what the last failed forward/backward said          */
    /* data-parallel training (train.c sets them; zero: one process): this
     * rank holds rows [row0, row0 + n) of a batch of n_all rows split over
     * the ranks of comm. Batch-norm statistics and its gamma/beta gradients
     * are summed over the ranks, dropout masks follow the global row, and
     * the backward pass starts summing the fc gradients over the ranks as
     * soon as each is known (the caller finishes with
     * duet_comm_allreduce_wait). */
    duet_comm *comm;
    size_t n_all, row0;
} duet_branch_ws;

/* dnn: the engine and precision the products use (borrowed; it must outlive
 * the workspace); NULL: an own f32 engine. */
duet_status duet_branch_ws_init_dnn(duet_branch_ws *ws, const duet_branch *b,
                                    size_t cap, duet_dnn *dnn, duet_error *err);
/* duet_branch_ws_init_dnn with dnn = NULL (f32). */
duet_status duet_branch_ws_init(duet_branch_ws *ws, const duet_branch *b,
                                size_t cap, duet_error *err);
void duet_branch_ws_free(duet_branch_ws *ws);

/* Running statistics of one branch's batch-norm ([h] each; NULL if linear). */
typedef struct duet_bnstats {
    float *mean, *var;
} duet_bnstats;

/* Forward pass of n rows of x ([n x d_in]); result in ws->e [n x o].
 * train != 0: batch statistics, dropout with probability p (masks drawn from
 * rng, or copied from mask_override [n x h] when it is not NULL), and the
 * running statistics updated with momentum mom. train == 0: running
 * statistics, no dropout (rng may be NULL). n <= ws->cap; in training n >= 2
 * for the MLP (batch variance needs two rows); mask_override must stay valid
 * until the backward pass. In bf16, x may be NULL when ws->xb already holds
 * the rows. Fails only in oneDNN (out of memory). */
duet_status duet_branch_forward(const duet_branch *b, const duet_bparams *w,
                         duet_bnstats *bn, const duet_params *p,
                         const float *x, size_t n, int train, duet_rng *rng,
                         const float *mask_override, duet_branch_ws *ws);

/* bn.c: the MLP's hidden layer between its products, on ws (n rows, h
 * columns). Forward: z in ws->xh -> xh (in place), the batch (train) or
 * running statistics into ws->mean/var/inv_std (train also updates bn),
 * D = dropout(relu(gamma xh + beta)) into ws->d (f32) or its bf16 copy into
 * ws->hb. Backward: dD in ws->dd -> dZ1 (and bf16 into ws->hb), with the
 * gradients of gamma and beta into g, and b1's, which is exactly zero. */
duet_status duet_bn_forward(const duet_bparams *w, duet_bnstats *bn, const duet_params *p,
                            size_t n, size_t h, int train, duet_rng *rng,
                            const float *mask_override, duet_branch_ws *ws);
duet_status duet_bn_backward(const duet_bparams *w, duet_bparams *g, size_t n, size_t h,
                             duet_branch_ws *ws);

/* Backward pass of the last training forward (same x, or NULL as there):
 * dE [n x o] is the gradient of the loss with respect to ws->e; writes
 * (overwrites) the parameter gradients into g. ws->de / ws->dd are
 * clobbered. */
duet_status duet_branch_backward(const duet_branch *b, const duet_bparams *w,
                          const float *x, size_t n, const float *dE,
                          duet_bparams *g, duet_branch_ws *ws);

/* Scratch of the loss for up to B images and ns sentences. */
typedef struct duet_loss_ws {
    size_t cap_b, cap_s, top_k;
    int bf16;            /* Gram products with bf16 inputs                  */
    float *d_ti, *g_ti;  /* [ns x B] distances; their gradients            */
    float *d_it, *g_it;  /* [B x ns] the same, image-major (for i2t)       */
    float *d_tt, *g_tt;  /* [ns x ns]                                       */
    float *d_ii, *g_ii;  /* [B x B]                                         */
    double *val;         /* [max(ns, B)] each anchor's term value           */
    size_t *idx;         /* [4 (ns + B + 1)] grouping, labels, positives    */
    size_t *sel;         /* [threads x K] selection scratch per thread      */
    float  *selv;        /* [threads x K]                                   */
    size_t sel_threads;
    uint16_t *hb;        /* bf16: embeddings and a Gram gradient            */
    size_t hb_cap;
    duet_mm_cache mm;
} duet_loss_ws;

/* dnn: the engine and the precision of the Gram products (borrowed; it must
 * outlive the workspace); NULL: an own f32 one. Distances, hinges and
 * gradients are f32 in either precision. */
duet_status duet_loss_ws_init_dnn(duet_loss_ws *ws, size_t cap_b, size_t cap_s,
                                  size_t top_k, duet_dnn *dnn, duet_error *err);
duet_status duet_loss_ws_init(duet_loss_ws *ws, size_t cap_b, size_t cap_s,
                              size_t top_k, duet_error *err);
void duet_loss_ws_free(duet_loss_ws *ws);

/* The loss of docs/MODEL.md on one batch.
 *   img [B x o], txt [ns x o]: unit rows; sent_img[j] in [0, B): the batch
 *   image of sentence j; img_group [B] or NULL (image neighbour groups).
 * Returns the raw terms and the weighted total in *t. If d_img / d_txt are not
 * NULL they receive the gradient of the total ([B x o], [ns x o]). */
duet_status duet_loss(const duet_params *p, const float *img, size_t B,
                      const float *txt, size_t ns, size_t o,
                      const size_t *sent_img, const int *img_group,
                      duet_loss_terms *t, float *d_img, float *d_txt,
                      duet_loss_ws *ws, duet_error *err);

/* The model: parameters of both branches in one slab, running statistics
 * in another. */
struct duet_model {
    duet_params p;
    duet_model_info info;
    duet_branch br[2];          /* DUET_SIDE_IMAGE, DUET_SIDE_TEXT          */
    float *params;              /* slab: image branch, then text branch     */
    size_t n_params;
    duet_bparams w[2];          /* views into params                        */
    float *buffers;             /* slab: running mean/var per branch        */
    size_t n_buffers;
    duet_bnstats bn[2];         /* views into buffers                       */
    duet_precision embed_prec;  /* duet_model_embed's precision (0: f32)    */
    uint16_t *params_h;         /* bf16: the bf16 mirror of params (same
                                   layout; w[s].W1h/W2h point into it)      */
    char isa[24];               /* the instruction set training ran on ("":
                                   unknown, e.g. a file from before 0.x)    */
    /* An ensemble (ensemble.c): n_members > 0 models sharing the input
     * features, owned; params is NULL, br[s].d_in the shared input widths,
     * br[s].out and p.embed_dim the sum of the members' widths, the rest of
     * p member 1's. Nothing but ensemble.c and modelfile.c looks at the
     * parameters of an ensemble. */
    size_t n_members;
    duet_model **members;
};

/* Rewrites the bf16 mirror from params (after params changed outside the
 * optimizer, which keeps it current); no-op unless the model embeds in bf16. */
void duet_model_sync_bf16(duet_model *m);

/* Sets the views of a same-layout slab (gradients, moments). */
void duet_model_views(const duet_model *m, float *slab, duet_bparams v[2]);

/* Allocates a model with the given shapes, zeroed parameters and BN buffers
 * set to mean 0 / var 1 (no random init). Caller frees with duet_model_free. */
duet_status duet_model_alloc(size_t d_image, size_t d_text,
                             const duet_params *p, duet_model **out,
                             duet_error *err);

/* Adds wd * W to the gradients of the fc weights W1, W2 of both branches
 * (not biases, not batch-norm). */
void duet_weight_decay(const duet_model *m, duet_bparams g[2], float wd);

/* One optimizer update of n parameters w with gradients g (PyTorch's Adam,
 * or SGD with momentum: m1 is the velocity). t is the 1-based step count
 * (Adam's bias correction). m1, m2: state slabs, zero before the first step. */
void duet_optimizer_step(const duet_params *p, float *w, const float *g,
                         float *m1, float *m2, size_t n, long long t, float lr);
/* The same, also rewriting wh [n] = bf16(w) (the model's bf16 mirror) block
 * by block while the block is in cache; wh NULL: duet_optimizer_step. */
void duet_optimizer_step_mirror(const duet_params *p, float *w, uint16_t *wh,
                                const float *g, float *m1, float *m2, size_t n,
                                long long t, float lr);

/* Model-file helpers shared with the trainer's checkpoint. */
extern const char DUET_MODEL_MAGIC[8];
char *duet_model_header_json(const duet_model *m); /* caller frees with free() */
/* Builds a model from a tensor file's header ("kind", "d_image", "d_text",
 * "params", "info") and its "params"/"buffers" arrays. *out: caller frees
 * with duet_model_free. */
duet_status duet_model_from_tf(const duet_tf_file *tf, const char *path,
                               duet_model **out, duet_error *err);

/* A model from the header object h (fields "d_image", "d_text", "params",
 * "info") and the arrays params_name / buffers_name of tf (a member of an
 * ensemble file, or a model file's own). */
duet_status duet_model_from_header(const void *h, const duet_tf_file *tf,
                                   const char *params_name,
                                   const char *buffers_name, const char *path,
                                   duet_model **out, duet_error *err);
/* ensemble.c: the ensemble model file (kind "duet-ensemble", docs/MODEL.md). */
duet_status duet_ensemble_save(const duet_model *m, const char *path,
                               duet_error *err);
duet_status duet_ensemble_from_tf(const duet_tf_file *tf, const char *path,
                                  duet_model **out, duet_error *err);

/* Recall@K results <-> JSON: {"i2t":{"r1","r5","r10","medr","meanr"},
 * "t2i":{...},"rsum","n_images","n_captions","n_folds"}. to_json returns a
 * new reference (NULL when out of memory); from_json zeroes *r first and
 * reads what is there (missing fields stay 0). eval_json.c. */
json_t *duet_eval_to_json(const duet_eval_result *r);
void duet_eval_from_json(const json_t *o, duet_eval_result *r);

#endif
