/* image.h -- private pieces of the image part: the CNN graph (nodes in
 * topological order, shapes NHWC, weights float) and its executor. Loaders
 * (tfjs.c, tflite.c) build the graph; net.c runs it on oneDNN through a
 * plan per batch size (dnn_plan.c builds it, dnn_exec.c keeps and runs it). */
#ifndef DUET_IMAGE_H
#define DUET_IMAGE_H

#include "core/core.h"

typedef enum cnn_op {
    CNN_INPUT = 0,
    CNN_CONV,      /* weights [kh*kw*cin x cout] (HWIO)                   */
    CNN_DWCONV,    /* depthwise, multiplier 1; weights [kh*kw x c]        */
    CNN_MAXPOOL,
    CNN_AVGPOOL,   /* TF semantics: padded cells not counted              */
    CNN_GAP,       /* global average pool -> [1 x 1 x c]                  */
    CNN_ADD,
    CNN_PAD,       /* zero padding                                         */
    CNN_DENSE,     /* weights [cin x cout], input flattened               */
    CNN_IDENTITY,  /* reshape / softmax placeholder: copies its input     */
} cnn_op;

/* Input preprocessing: Keras "caffe" (RGB->BGR, mean pixel subtracted),
 * uint8 quantization (TFLite), or none (the input as given: tests). */
typedef enum cnn_pre { CNN_PRE_CAFFE = 0, CNN_PRE_UINT8 = 1, CNN_PRE_NONE = 2 } cnn_pre;

typedef struct cnn_node {
    cnn_op op;
    char *name;
    int in[2], n_in;
    int h, w, c;                 /* output shape of one image           */
    int kh, kw, sh, sw;          /* conv / pool                          */
    int pt, pb, pl, pr;          /* padding top, bottom, left, right     */
    float pad_value;             /* max pool: value of padded cells      */
    float *wt, *bias;            /* owned                                */
    float act_lo, act_hi;        /* output clamp (relu: 0, inf)          */
    int fq;                      /* re-quantize output to uint8 grid     */
    float q_scale; int q_zp;
    /* int8 runs (a quantized file): the weights as int8 q, layout of wt,
     * with w - zp_w = q - qw_zp (uint8 weights: q = w - 128); the int32
     * bias as stored; the weight scale of each output channel [c].   */
    int8_t *qw; int qw_zp;
    int32_t *qbias;
    float *qw_scale;
    int consumers;
} cnn_node;

struct duet_cnn {
    cnn_node *nodes;
    size_t n_nodes, cap_nodes;
    int input, feature, output;  /* node indices                        */
    int output_softmax;          /* apply softmax to the output          */
    cnn_pre pre;
    float in_scale; int in_zp;   /* CNN_PRE_UINT8                        */
    duet_precision prec;         /* resolved; 0 (auto) reads as f32      */
    int quant;                   /* every layer integer: int8 runs possible */
    int int8_mode;               /* CNN_INT8_AUTO, _OFF, _ON              */
    struct cnn_exec *exec;       /* oneDNN engine, plans, weights (lazy) */
};

/* When a quantized net (net->quant) computes in int8: AUTO (the default)
 * at precision bf16 on a CPU with int8 dot products (VNNI: AVX512-VNNI,
 * AVX-VNNI, AMX), else its float emulation; OFF never; ON on any CPU
 * (oneDNN also runs int8 on AVX2 / AVX-512 without VNNI: tests). */
enum { CNN_INT8_AUTO = 0, CNN_INT8_OFF = 1, CNN_INT8_ON = 2 };
void cnn_set_int8(duet_cnn *net, int mode);
/* 1 when net runs in int8 (net->quant and the mode's rule). */
int cnn_int8(const duet_cnn *net);
/* The uint8 grid of node j's output: the input's quantization, or its own. */
void cnn_qparams(const duet_cnn *net, int j, float *scale, int *zp);

/* Appends a zeroed node (act_lo -inf, act_hi inf); returns its index or -1
 * (out of memory). name is copied. */
int cnn_add_node(duet_cnn *net, cnn_op op, const char *name);
/* Finishes a graph: counts consumers, checks feature/output. */
duet_status cnn_finish(duet_cnn *net, const char *what, duet_error *err);
/* TF "same" padding of one axis. */
void cnn_same_pad(int in, int k, int s, int *out, int *lo, int *hi);

/* Counts consumers and checks the topological order (any input shape):
 * what cnn_finish does after its checks of the input. */
duet_status cnn_link(duet_cnn *net, const char *what, duet_error *err);

/* The oneDNN executor (dnn_exec.c). Runs n inputs (the input node's shape,
 * NHWC float, preprocessed as net->pre) through the plan for n and copies
 * the feature, the output (logits, f32) and the last feature map (NHWC f32)
 * into the arrays that are not NULL. */
duet_status cnn_exec_run(duet_cnn *net, const float *input, size_t n, float *feats,
                         float *logits, float *map, duet_error *err);
/* Frees the executor: engine, plans, reordered weights (a new precision
 * builds them again on the next run). */
void cnn_exec_free(duet_cnn *net);
/* The node whose output the feature pools: the last feature map. */
int cnn_map_node(const duet_cnn *net);

/* Resizes im to ow x oh float RGB in [0, 255] with antialiased bilinear
 * filtering (as PIL / torch antialias=True). out: caller-owned [oh*ow*3]. */
duet_status img_resize_aa(const duet_image *im, int ow, int oh, float *out,
                          duet_error *err);

#endif
