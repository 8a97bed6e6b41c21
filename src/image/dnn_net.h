/* dnn_net.h -- the CNN on oneDNN (private to src/image): a plan is the
 * graph compiled for one batch size and precision, a list of primitives
 * with their arguments. Activations live in plan buffers in the layouts
 * oneDNN chose (dnnl_format_tag_any); reorders happen at the input, at the
 * outputs, and only where two layers disagree. Weights are reordered once
 * per layout and kept in the executor (shared by its plans).
 *
 *   dnn_plan.c   cnn_plan_build: the graph -> steps (fusion, padding,
 *                buffers reused after their last reader); dnn_layers.c
 *                plans each layer (dnn_plan.h: the builder's context)
 *   dnn_int8.c   the int8 planners of a quantized net (cnn_int8)
 *   dnn_exec.c   the executor: engine, plan cache, weights, run */
#ifndef DUET_IMAGE_DNN_NET_H
#define DUET_IMAGE_DNN_NET_H

#include "image/image.h"
#include "core/dnn.h"

/* Which run output a step writes; such steps run only when it is asked. */
enum { STEP_ALWAYS = 0, STEP_FEATS, STEP_LOGITS, STEP_MAP };

typedef struct cnn_step {
    dnnl_primitive_t prim;     /* NULL: the C step fixes[fix]          */
    int fix;
    int node;                  /* graph node, for messages (-1: none)   */
    const char *what;          /* "convolution", "reorder", ...         */
    int out;                   /* STEP_*                                */
    int nargs;
    dnnl_exec_arg_t args[8];
} cnn_step;

/* A memory object of the plan: its data lives in buffer buf (>= 0), or
 * its handle is set elsewhere (-1: user arrays, biases). */
typedef struct cnn_mem {
    dnnl_memory_t mem;
    dnnl_memory_desc_t md;
    int buf;
} cnn_mem;

/* An activation buffer: reused once its value has no reader left, except
 * a fixed one (a zero border around a padded copy). */
typedef struct cnn_buf {
    void *data;
    size_t size;
    int busy, fixed;
} cnn_buf;

/* An int8 run's C step after a depthwise convolution: the channels whose
 * weights minus their zero point need 9 bits (1 or 2 of a MobileNetV2
 * depthwise layer's hundreds) computed exactly (dnn_int8.c), as oneDNN
 * would: acc in int32, f32 (acc + bias) M, clip, + z_o, round to even. */
typedef struct cnn_fix {
    int node, src, dst;        /* plan mems: uint8 NHWC in and out       */
    int *ch, n_ch;             /* the channels                           */
    float *m;                  /* their output scales                    */
    int zx, clip, pt, pl;      /* src zero point; clip; padding          */
    float lo, hi;
    int32_t *w;                /* [n_ch][kh kw (cin)] weights minus their
                                  zero point, built when planned         */
    int32_t *planes;           /* gathered input minus z_x: [n][n_ch][ih
                                  iw] (depthwise), else [n][ih iw cin]   */
} cnn_fix;

typedef struct cnn_plan {
    size_t n;                              /* batch size                */
    cnn_step *steps; size_t n_steps, cap_steps;
    cnn_mem *mems; size_t n_mems, cap_mems;
    cnn_buf *bufs; size_t n_bufs, cap_bufs;
    int in_mem, feat_mem, logit_mem, map_mem;   /* user arrays (mems)  */
    void *in_pre;                          /* preprocessed input (f32, or
                                              uint8 in int8 runs)        */
    cnn_fix *fixes; size_t n_fixes, cap_fixes;  /* int8: C steps      */
    int32_t *zps; size_t n_zps, cap_zps;   /* int8: zero points (runtime
                                              arguments), fixed array    */
    size_t used;                           /* LRU tick                   */
    size_t reorders;                       /* inside the net (not I/O)   */
} cnn_plan;

/* A layer's weights in the layout a primitive asked for. */
typedef struct cnn_wt {
    int node;
    dnnl_memory_desc_t md;
    void *data;
    dnnl_memory_t mem;
} cnn_wt;

#define CNN_PLANS 2
struct cnn_exec {
    duet_dnn dnn;
    cnn_plan *plans[CNN_PLANS];
    size_t tick;
    cnn_wt *w; size_t n_w, cap_w;
};

/* Builds the plan of net for n inputs (ex->dnn's precision). *out: free
 * with cnn_plan_free. */
duet_status cnn_plan_build(duet_cnn *net, struct cnn_exec *ex, size_t n, cnn_plan **out,
                           duet_error *err);
void cnn_plan_free(cnn_plan *p);   /* NULL-safe */
/* Runs the C step f of plan p (batch p->n) on its mems' data. */
dnnl_status_t cnn_fix_run(const duet_cnn *net, const cnn_plan *p, const cnn_fix *f);
/* The weights of node in layout want, reordered from the user layout umd
 * (data at src) on first use. node may be i + n_nodes: a second set of
 * node i's (an int8 run's zero-point correction). */
duet_status cnn_weights(struct cnn_exec *ex, const duet_cnn *net, int node,
                        const dnnl_memory_desc_t *umd, const void *src,
                        const dnnl_memory_desc_t *want, dnnl_memory_t *mem, duet_error *err);

#endif
