/* train.h -- the trainer's state, shared by the training loop (train.c)
 * and its checkpoints (checkpoint.c). Private to src/embed. */
#ifndef DUET_EMBED_TRAIN_H
#define DUET_EMBED_TRAIN_H

#include "embed/embed.h"

typedef struct trainer {
    const duet_dataset *d;
    const duet_features *img, *txt;
    duet_params p;
    duet_model *m;
    duet_dnn dnn;                   /* engine, stream and resolved precision   */
    float *grad, *m1, *m2;          /* [n_params] each (m2 unused for SGD)     */
    float *best_params, *best_buf;  /* copies of the best epoch                */
    duet_bparams g[2];              /* views into grad                         */
    duet_rng rng;
    size_t *train0;                 /* training images (with captions), sorted */
    size_t *train;                  /* this epoch's order                      */
    size_t n_train;
    /* batch buffers */
    float *xi, *xt;                 /* [B x d_img], [B*S x d_txt] (f32 only;
                                       bf16 gathers into ws[s].xb)             */
    size_t *img_rows, *cap_rows;    /* [B], [B*S]: the batch's feature rows    */
    float *de_i, *de_t;             /* [B x o], [B*S x o]                      */
    size_t *sent_img;               /* [B*S]                                   */
    size_t *pick;                   /* caption sampling scratch                */
    size_t pick_cap;
    duet_branch_ws ws[2];
    duet_loss_ws lws;
    /* data-parallel training (docs/SCALE.md): every rank draws the same
     * batches; this rank embeds images [lo, hi) of each and their
     * sentences, the embeddings of all are gathered for the loss */
    duet_comm *comm;                /* NULL: this process alone                */
    int ranks;
    size_t lo, hi;                  /* this rank's images of a batch           */
    size_t *counts;                 /* [2 ranks]: images, sentences per rank   */
    float *e_all[2];                /* [B x o], [B*S x o] gathered embeddings  */
    int stop_req;                   /* the progress callback asked to stop     */
    float *scratch;                 /* [threads x widest input]: rows read on
                                       their way to bf16                       */
    duet_error *errs;               /* [threads]: a failed read's message      */
    /* progress */
    int epoch;                      /* epochs completed                        */
    long long adam_t;               /* optimizer steps taken                   */
    float lr;
    int best_epoch, bad_epochs;
    double best_rsum;
    duet_epoch_log *log;
    size_t n_log;
} trainer;

/* Writes the checkpoint (model, optimizer state, best model, progress and
 * the RNG) to path (atomically). */
duet_status duet_train_save_checkpoint(const trainer *t, const char *path, duet_error *err);
/* Restores t from the checkpoint at path, which must come from a run with
 * the same settings and feature widths. */
duet_status duet_train_load_checkpoint(trainer *t, const char *path, duet_error *err);
/* Several ranks: rank 0's resumed state (parameters, optimizer, best
 * model, progress, RNG, history) to every rank. Every rank calls it. */
duet_status duet_train_share_state(trainer *t, duet_error *err);

#endif
