/* embed.h -- private interface of the two-branch network, its loss and the
 * trainer (src/embed/). Tests include it to check every kernel on its own.
 *
 * Shapes in comments read [rows x cols]; n is the number of rows in a batch,
 * h the hidden width, o the embedding width. docs/MODEL.md is the contract. */
#ifndef DUET_EMBED_H
#define DUET_EMBED_H

#include "core/core.h"
#include <jansson.h>

/* Named views of one branch's parameters inside a slab (the model's
 * parameters, or a same-shaped slab of gradients / optimizer moments).
 * MLP:    W1 [d_in x h], b1 [h], gamma [h], beta [h], W2 [h x o], b2 [o]
 * linear: W1 [d_in x o], b1 [o]; the others are NULL. */
typedef struct duet_bparams {
    float *W1, *b1, *gamma, *beta, *W2, *b2;
} duet_bparams;

/* The shape of one branch. */
typedef struct duet_branch {
    size_t d_in, hidden, out;
    int linear;
} duet_branch;

/* Number of floats of a branch's parameters; if base is not NULL, sets the
 * views of *v into base (W1, b1, gamma, beta, W2, b2 in that order). */
size_t duet_branch_layout(const duet_branch *b, float *base, duet_bparams *v);

/* Forward/backward scratch for up to cap rows. All arrays owned by the
 * workspace; free with duet_branch_ws_free (NULL-safe). */
typedef struct duet_branch_ws {
    size_t cap;
    float *xh;       /* [n x h] BN-normalized pre-activation (MLP)            */
    float *mask;     /* [n x h] dropout multipliers (0 or 1/(1-p))            */
    float *d;        /* [n x h] post-dropout activations                      */
    float *dd;       /* [n x h] backward scratch                              */
    float *e;        /* [n x o] normalized output embeddings                  */
    float *de;       /* [n x o] backward scratch (dZ2)                        */
    float *inv_norm; /* [n]     1/||Z2||                                      */
    float *mean, *var, *inv_std; /* [h] batch statistics                      */
    float *ones;     /* [n]     all ones (for column sums through BLAS)       */
} duet_branch_ws;

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
 * for the MLP (batch variance needs two rows). */
void duet_branch_forward(const duet_branch *b, const duet_bparams *w,
                         duet_bnstats *bn, const duet_params *p,
                         const float *x, size_t n, int train, duet_rng *rng,
                         const float *mask_override, duet_branch_ws *ws);

/* Backward pass of the last training forward: dE [n x o] is the gradient of
 * the loss with respect to ws->e; writes (overwrites) the parameter gradients
 * into g. ws->de / ws->dd are clobbered. */
void duet_branch_backward(const duet_branch *b, const duet_bparams *w,
                          const float *x, size_t n, const float *dE,
                          duet_bparams *g, duet_branch_ws *ws);

/* Scratch of the loss for up to B images and ns sentences. */
typedef struct duet_loss_ws {
    size_t cap_b, cap_s;
    float *d_ti, *g_ti;  /* [ns x B] distances; their gradients            */
    float *d_it, *g_it;  /* [B x ns] the same, image-major (for i2t)       */
    float *d_tt, *g_tt;  /* [ns x ns]                                       */
    float *d_ii, *g_ii;  /* [B x B]                                         */
    size_t *sel;         /* [K] selection scratch                           */
    float  *selv;        /* [K]                                             */
} duet_loss_ws;

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
    duet_precision embed_prec;
};

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

/* Model-file helpers shared with the trainer's checkpoint. */
extern const char DUET_MODEL_MAGIC[8];
char *duet_model_header_json(const duet_model *m); /* caller frees with free() */
/* Builds a model from a tensor file's header ("kind", "d_image", "d_text",
 * "params", "info") and its "params"/"buffers" arrays. *out: caller frees
 * with duet_model_free. */
duet_status duet_model_from_tf(const duet_tf_file *tf, const char *path,
                               duet_model **out, duet_error *err);

/* Recall@K results <-> JSON: {"i2t":{"r1","r5","r10","medr","meanr"},
 * "t2i":{...},"rsum","n_images","n_captions","n_folds"}. to_json returns a
 * new reference (NULL when out of memory); from_json zeroes *r first and
 * reads what is there (missing fields stay 0). eval_json.c. */
json_t *duet_eval_to_json(const duet_eval_result *r);
void duet_eval_from_json(const json_t *o, duet_eval_result *r);

#endif
