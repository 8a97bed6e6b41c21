/* dnn_plan.h -- the plan builder's context and helpers (private to
 * dnn_plan.c, which holds the bookkeeping: buffers, memory objects, steps,
 * liveness, post-ops; and dnn_layers.c, one planner per layer kind). A
 * helper that fails records the first error in c->st and returns -1 (or
 * NULL); callers check c->st. */
#ifndef DUET_IMAGE_DNN_PLAN_H
#define DUET_IMAGE_DNN_PLAN_H

#include "image/dnn_net.h"

/* An eltwise operation: scale * alg(x; a, b). */
typedef struct elt { dnnl_alg_kind_t alg; float a, b, scale; } elt;

typedef struct pctx {
    duet_cnn *net;
    struct cnn_exec *ex;
    cnn_plan *p;
    duet_error *err;
    duet_status st;         /* first error                               */
    size_t n;
    dnnl_data_type_t adt;   /* activations                               */
    int q;                  /* int8 run (cnn_int8): uint8 activations      */
    int *val;               /* node -> plan mem holding its output        */
    int *own;               /* node -> buffer its output owns (-1)        */
    int *left;              /* readers not yet planned                    */
    int *alias;             /* node -> node whose output it is (-1)       */
    int (*apad)[4];         /* the zero padding an alias adds: t, b, l, r */
    int *fused;             /* conv -> the ADD it computes (-1)           */
    int *done;
    char what[320];         /* the layer being planned, for messages      */
} pctx;

#define NODE(i) (&c->net->nodes[i])
#define MD(m) (&c->p->mems[m].md)
#define M(m) (c->p->mems[m].mem)

/* bookkeeping (dnn_plan.c) */
int pl_ok(pctx *c, dnnl_status_t s, const char *op);      /* 1 on success */
void pl_buf_put(pctx *c, int b);                            /* buffer free  */
int pl_mem_new(pctx *c, const dnnl_memory_desc_t *md, int buf, void *handle);
int pl_mem_fresh(pctx *c, const dnnl_memory_desc_t *md, int *buf);
void pl_step(pctx *c, dnnl_primitive_desc_t pd, int node, const char *what, int out, int nargs,
             const dnnl_exec_arg_t *args);
void pl_reorder(pctx *c, int from, int to, int node, int out);
void pl_step_fix(pctx *c, int node, int fix);
int pl_src_as(pctx *c, int m, const dnnl_memory_desc_t *want, int node, int *tmp);
int pl_pad_copy(pctx *c, int m, const int pad[4], int node);
void pl_md(pctx *c, dnnl_memory_desc_t *md, int nd, const dnnl_dims_t dims, dnnl_data_type_t dt,
           dnnl_format_tag_t tag);
const dnnl_memory_desc_t *pl_pd_md(dnnl_primitive_desc_t pd, dnnl_query_t q);
/* values and liveness */
int pl_resolve(pctx *c, int j, int pad[4]);
void pl_release(pctx *c, int j);
void pl_set_val(pctx *c, int i, int m, int buf);
void pl_alias(pctx *c, int i, int src, const int pad[4]);
int pl_nonneg(pctx *c, int j);
/* post-ops */
int pl_elts(const cnn_node *nd, elt *e);
dnnl_primitive_desc_t pl_make_pd(pctx *c, const void *desc, int sum, const elt *e, int ne, int *fused,
                                 const char *op);
void pl_elt_chain(pctx *c, int m, const elt *e, int ne, int node);

/* layers (dnn_layers.c): plan node i */
void plan_input(pctx *c, int i);
void plan_conv(pctx *c, int i);      /* CONV, DWCONV (+ a fused ADD)   */
void plan_pool(pctx *c, int i);      /* MAXPOOL, AVGPOOL, GAP          */
void plan_add(pctx *c, int i);
void plan_dense(pctx *c, int i);
void plan_pad(pctx *c, int i);
void plan_identity(pctx *c, int i);
/* the copy of node's value into a user array (STEP_FEATS, ...): its mem */
int plan_output(pctx *c, int node, int out);
/* the user layout of a convolution's weights (wt or qw), type dt */
void pl_conv_user_md(pctx *c, const cnn_node *nd, int cin, dnnl_data_type_t dt, dnnl_memory_desc_t *u);

/* int8 layers (dnn_int8.c): uint8 activations on their tensors' grids */
void plan_q_input(pctx *c, int i);
void plan_q_conv(pctx *c, int i);    /* CONV, DWCONV                   */
void plan_q_pool(pctx *c, int i);    /* AVGPOOL, MAXPOOL (same grid)   */
void plan_q_add(pctx *c, int i);
int plan_q_output(pctx *c, int node, int out);   /* dequantized to f32 */

#endif
