/* image.h -- private pieces of the image part: the CNN graph (nodes in
 * topological order, NHWC float activations), the operators, and the
 * executor. Loaders (tfjs.c, tflite.c) build a cnn_graph; net.c runs it. */
#ifndef DUET_IMAGE_H
#define DUET_IMAGE_H

#include "core/core.h"

typedef enum cnn_op {
    CNN_INPUT = 0,
    CNN_CONV,      /* im2col + sgemm; weights [kh*kw*cin x cout]          */
    CNN_DWCONV,    /* depthwise, multiplier 1; weights [kh*kw x c]        */
    CNN_MAXPOOL,
    CNN_AVGPOOL,   /* TF semantics: padded cells not counted              */
    CNN_GAP,       /* global average pool -> [1 x 1 x c]                  */
    CNN_ADD,
    CNN_PAD,       /* zero padding                                         */
    CNN_DENSE,     /* weights [cin x cout], input flattened               */
    CNN_IDENTITY,  /* reshape / softmax placeholder: copies its input     */
} cnn_op;

typedef enum cnn_pre { CNN_PRE_CAFFE = 0, CNN_PRE_UINT8 = 1 } cnn_pre;

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
    int consumers;
} cnn_node;

struct duet_cnn {
    cnn_node *nodes;
    size_t n_nodes, cap_nodes;
    int input, feature, output;  /* node indices                        */
    int output_softmax;          /* apply softmax to the output          */
    cnn_pre pre;
    float in_scale; int in_zp;   /* CNN_PRE_UINT8                        */
    /* workspace, grown on demand */
    float **buf; size_t *buf_cap; size_t n_buf;
    float *col; size_t col_cap;
    duet_precision prec;
};

/* Appends a zeroed node (act_lo -inf, act_hi inf); returns its index or -1
 * (out of memory). name is copied. */
int cnn_add_node(duet_cnn *net, cnn_op op, const char *name);
/* Finishes a graph: counts consumers, checks feature/output. */
duet_status cnn_finish(duet_cnn *net, const char *what, duet_error *err);
/* TF "same" padding of one axis. */
void cnn_same_pad(int in, int k, int s, int *out, int *lo, int *hi);

/* Operators on a batch of n images, NHWC. Each is a plain function so that
 * tests can compare it with a naive loop. */
typedef struct cnn_conv_args {
    size_t n; int h, w, cin;             /* input                        */
    int oh, ow, cout;                    /* output                       */
    int kh, kw, sh, sw, pt, pl;          /* pads bottom/right implied    */
    const float *wt, *bias;              /* bias may be NULL             */
    float act_lo, act_hi;
} cnn_conv_args;
/* col: workspace of at least cnn_conv_col_floats(a) floats (may be NULL
 * when that is 0). */
size_t cnn_conv_col_floats(const cnn_conv_args *a);
void cnn_conv2d(const cnn_conv_args *a, const float *in, float *out, float *col);
void cnn_dwconv2d(const cnn_conv_args *a, const float *in, float *out);
void cnn_pool2d(int is_max, size_t n, int h, int w, int c, int oh, int ow,
                int kh, int kw, int sh, int sw, int pt, int pl,
                float pad_value, const float *in, float *out);
void cnn_gap(size_t n, int h, int w, int c, const float *in, float *out);
void cnn_add(size_t count, const float *a, const float *b, float *out,
             float lo, float hi);
void cnn_pad(size_t n, int h, int w, int c, int pt, int pb, int pl, int pr,
             const float *in, float *out);
void cnn_dense(size_t n, int cin, int cout, const float *wt,
               const float *bias, const float *in, float *out);
/* out[i] = clamp(out[i] + bias[i % c], lo, hi), then (fq) re-quantized. */
void cnn_bias_act(size_t rows, int c, float *x, const float *bias, float lo,
                  float hi, int fq, float scale, int zp);

/* Resizes im to ow x oh float RGB in [0, 255] with antialiased bilinear
 * filtering (as PIL / torch antialias=True). out: caller-owned [oh*ow*3]. */
duet_status img_resize_aa(const duet_image *im, int ow, int oh, float *out,
                          duet_error *err);

#endif
