/* dnn_int8.c -- the int8 planners of a quantized net (cnn_int8): every
 * activation is uint8 on its tensor's grid (scale s, zero point z: real
 * value (q - z) s), NHWC, as the TFLite file says. A convolution computes
 *   acc = sum (x - z_x)(w - z_w) + bias            (int32, exact)
 *   q   = clamp(round_even(M acc) + z_o, act)      M = s_x s_w / s_o (f32)
 * on oneDNN with uint8 src (runtime zero point), int8 weights, int32 bias,
 * output scales M (per channel when the weights have a scale per
 * channel), the activation as a clip post-op and a runtime dst zero point.
 * oneDNN's x86 convolutions take no weights zero point, and uint8 weights
 * minus their zero point need 9 bits. So the weights are stored as
 * q = w - 128 (int8) with w - z_w = q - qz, qz = z_w - 128, and:
 *   1x1 stride-1 convolutions are matmuls over the [n h w x c] view, which
 *     take the weights zero point qz themselves (exact);
 *   others (depthwise, the first 3x3) add the correction
 *     -qz sum_window (x - z_x) as a second convolution of the same shape
 *     whose weights are all -qz (|qz| <= 127: exact int32), scaled by M
 *     into f32 and added to the first as a binary post-op.
 * ADD: binary add of two grids with scales s1/s_o, s2/s_o and the offset
 * z_o - z1 s1/s_o - z2 s2/s_o as a linear post-op. Pools keep the grid
 * (the loader checks in and out agree). Outputs are dequantized to f32. */
#include "image/dnn_plan.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A runtime zero point: a memory over the plan's fixed array. */
static int pl_zp(pctx *c, int32_t v) {
    cnn_plan *p = c->p;
    if (c->st) return -1;
    if (p->n_zps == p->cap_zps) {
        c->st = duet_fail(c->err, DUET_ERR_INVALID_ARG, "%s: too many zero points", c->what);
        return -1;
    }
    p->zps[p->n_zps] = v;
    dnnl_memory_desc_t md;
    dnnl_dims_t d = {1};
    pl_md(c, &md, 1, d, dnnl_s32, dnnl_a);
    return pl_mem_new(c, &md, -1, &p->zps[p->n_zps++]);
}

static void q_md(pctx *c, dnnl_memory_desc_t *md, const cnn_node *nd, dnnl_data_type_t dt) {
    dnnl_dims_t d = {(dnnl_dim_t)c->n, nd->c, nd->h, nd->w};
    pl_md(c, md, 4, d, dt, dnnl_nhwc);
}

void plan_q_input(pctx *c, int i) {
    dnnl_memory_desc_t md;
    q_md(c, &md, NODE(i), dnnl_u8);
    c->p->in_mem = pl_mem_new(c, &md, -1, NULL);
    pl_set_val(c, i, c->p->in_mem, -1);
}

/* The activation's bounds on the output grid minus its zero point (TFLite:
 * z_o + round(bound / s_o), within [0, 255]); 0 when the uint8 range
 * already holds them. */
static int q_clip(const cnn_node *nd, int zero, float *lo, float *hi) {
    double l = isinf(nd->act_lo) ? 0 : fmax(0, nd->q_zp + round(nd->act_lo / nd->q_scale));
    double h = isinf(nd->act_hi) ? 255 : fmin(255, nd->q_zp + round(nd->act_hi / nd->q_scale));
    *lo = (float)(l - zero);
    *hi = (float)(h - zero);
    return l > 0 || h < 255;
}

typedef struct qattr {
    const float *scales; int n_scales;      /* output scales (count)     */
    int zp_src, zp_wei, zp_dst;             /* runtime zero points       */
    const dnnl_memory_desc_t *bin;          /* binary add post-op src1   */
    int clip; float lo, hi;
    int lin; float beta;                    /* linear(1, beta) first     */
    float s0, s1;                           /* binary: input scales (>0) */
} qattr;

static dnnl_primitive_desc_t q_pd(pctx *c, const void *desc, const qattr *q, const char *op) {
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    int32_t rt = DNNL_RUNTIME_S32_VAL;
    int ok = pl_ok(c, dnnl_primitive_attr_create(&attr), "attributes") && pl_ok(c, dnnl_post_ops_create(&po), "post-ops");
    if (ok && q->n_scales)
        ok = pl_ok(c, dnnl_primitive_attr_set_output_scales(attr, q->n_scales, q->n_scales > 1 ? 2 : 0, q->scales),
                   "output scales");
    if (ok && q->s0 > 0)
        ok = pl_ok(c, dnnl_primitive_attr_set_scales(attr, DNNL_ARG_SRC_0, 1, 0, &q->s0), "scales") &&
             pl_ok(c, dnnl_primitive_attr_set_scales(attr, DNNL_ARG_SRC_1, 1, 0, &q->s1), "scales");
    if (ok && q->zp_src) ok = pl_ok(c, dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_SRC, 1, 0, &rt), "zero points");
    if (ok && q->zp_wei) ok = pl_ok(c, dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_WEIGHTS, 1, 0, &rt), "zero points");
    if (ok && q->zp_dst) ok = pl_ok(c, dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_DST, 1, 0, &rt), "zero points");
    if (ok && q->bin) ok = pl_ok(c, dnnl_post_ops_append_binary(po, dnnl_binary_add, q->bin), "binary post-op");
    if (ok && q->lin) ok = pl_ok(c, dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_linear, 1.0f, q->beta), "eltwise post-op");
    if (ok && q->clip) ok = pl_ok(c, dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_clip, q->lo, q->hi), "eltwise post-op");
    ok = ok && pl_ok(c, dnnl_primitive_attr_set_post_ops(attr, po), "post-ops");
    ok = ok && pl_ok(c, dnnl_primitive_desc_create(&pd, desc, attr, c->ex->dnn.eng, NULL), op);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return ok ? pd : NULL;
}

/* Arguments: a[] gets the runtime zero points of q after *n entries. */
static void q_zp_args(pctx *c, const qattr *q, int zx, int zw, int zo, dnnl_exec_arg_t *a, int *n) {
    int m;
    if (q->zp_src && (m = pl_zp(c, zx)) >= 0) a[(*n)++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, M(m)};
    if (q->zp_wei && (m = pl_zp(c, zw)) >= 0) a[(*n)++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_WEIGHTS, M(m)};
    if (q->zp_dst && (m = pl_zp(c, zo)) >= 0) a[(*n)++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_DST, M(m)};
}

/* A 1x1 stride-1 convolution as a matmul [n h w x cin] x [cin x cout]
 * with the weights zero point. 0: not possible (planned otherwise). */
static int q_matmul(pctx *c, int i, int j, const qattr *q0, int zx) {
    const cnn_node *nd = NODE(i), *src = NODE(j);
    int sm = c->val[j];
    if (nd->op != CNN_CONV || nd->kh != 1 || nd->kw != 1 || nd->sh != 1 || nd->sw != 1 || nd->pt || nd->pb ||
        nd->pl || nd->pr || c->p->mems[sm].buf < 0)
        return 0;
    dnnl_dim_t rows = (dnnl_dim_t)c->n * nd->h * nd->w;
    dnnl_dims_t sd = {rows, src->c}, wd = {src->c, nd->c}, bd = {1, nd->c}, dd = {rows, nd->c};
    dnnl_memory_desc_t smd, wmd, umd, bmd, dmd, d4;
    pl_md(c, &smd, 2, sd, dnnl_u8, dnnl_ab);
    pl_md(c, &wmd, 2, wd, dnnl_s8, dnnl_format_tag_any);
    pl_md(c, &umd, 2, wd, dnnl_s8, dnnl_ab);
    pl_md(c, &bmd, 2, bd, dnnl_s32, dnnl_ab);
    pl_md(c, &dmd, 2, dd, dnnl_u8, dnnl_ab);
    q_md(c, &d4, nd, dnnl_u8);
    dnnl_matmul_desc_t md;
    if (c->st || !pl_ok(c, dnnl_matmul_desc_init(&md, &smd, &wmd, nd->qbias ? &bmd : NULL, &dmd), "matmul")) return 1;
    qattr q = *q0;
    q.zp_wei = nd->qw_zp != 0;
    dnnl_primitive_desc_t pd = q_pd(c, &md, &q, "matmul");
    if (!pd) return 1;
    wmd = *pl_pd_md(pd, dnnl_query_weights_md);
    int dbuf, s2 = pl_mem_new(c, &smd, c->p->mems[sm].buf, NULL), bm = -1;
    int d2 = pl_mem_fresh(c, &dmd, &dbuf), dm = d2 < 0 ? -1 : pl_mem_new(c, &d4, dbuf, NULL);
    dnnl_memory_t wm = NULL;
    if (!c->st) c->st = cnn_weights(c->ex, c->net, i, &umd, nd->qw, &wmd, &wm, c->err);
    if (nd->qbias) bm = pl_mem_new(c, &bmd, -1, nd->qbias);
    if (c->st || dm < 0) { dnnl_primitive_desc_destroy(pd); return 1; }
    dnnl_exec_arg_t a[8] = {{DNNL_ARG_SRC, M(s2)}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, M(d2)}};
    int na = 3;
    if (bm >= 0) a[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, M(bm)};
    q_zp_args(c, &q, zx, nd->qw_zp, nd->q_zp, a, &na);
    pl_step(c, pd, i, "matmul", STEP_ALWAYS, na, a);
    pl_release(c, nd->in[0]);
    pl_set_val(c, i, dm, dbuf);
    return 1;
}

/* The correction -qz sum_window (x - z_x) (mem *cm in buffer *cbuf), by a
 * convolution of all -qz weights: times M in f32, or (dt s32) as it is. */
static void q_correction(pctx *c, int i, const dnnl_convolution_desc_t *cd0, int sm, const qattr *q0, int zx,
                         dnnl_data_type_t dt, int *cm, int *cbuf) {
    const cnn_node *nd = NODE(i);
    dnnl_convolution_desc_t cd = *cd0;
    dnnl_memory_desc_t fmd, umd;
    q_md(c, &fmd, nd, dt);
    pl_conv_user_md(c, nd, NODE(pl_resolve(c, nd->in[0], NULL))->c, dnnl_s8, &umd);
    cd.dst_desc = fmd;
    memset(&cd.bias_desc, 0, sizeof cd.bias_desc);
    qattr q = {q0->scales, dt == dnnl_s32 ? 0 : q0->n_scales, q0->zp_src, 0, 0, NULL, 0, 0, 0, 0, 0, 0, 0};
    dnnl_primitive_desc_t pd = c->st ? NULL : q_pd(c, &cd, &q, "convolution (zero-point correction)");
    if (!pd) return;
    size_t cnt = dnnl_memory_desc_get_size(&umd);
    int8_t *ones = malloc(cnt ? cnt : 1);
    dnnl_memory_t wm = NULL;
    if (!ones) c->st = duet_fail(c->err, DUET_ERR_NOMEM, "%s: out of memory", c->what);
    else {
        memset(ones, -nd->qw_zp, cnt);
        c->st = cnn_weights(c->ex, c->net, i + (int)c->net->n_nodes, &umd, ones,
                            pl_pd_md(pd, dnnl_query_weights_md), &wm, c->err);
        free(ones);
    }
    *cm = c->st ? -1 : pl_mem_fresh(c, pl_pd_md(pd, dnnl_query_dst_md), cbuf);
    if (*cm < 0) { dnnl_primitive_desc_destroy(pd); return; }
    dnnl_exec_arg_t a[8] = {{DNNL_ARG_SRC, M(sm)}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, M(*cm)}};
    int na = 3;
    q_zp_args(c, &q, zx, 0, 0, a, &na);
    pl_step(c, pd, i, "convolution (zero-point correction)", STEP_ALWAYS, na, a);
}

/* acc + correction in int32 (the correction convolution, then the
 * convolution with a sum post-op on the same buffer), then a reorder to
 * uint8 with the output scales: round to nearest even, saturated. */
static void q_s32_conv(pctx *c, int i, const dnnl_convolution_desc_t *cd0, int sm, const qattr *q0, int zx,
                       const dnnl_memory_desc_t *umd, const dnnl_memory_desc_t *bmd) {
    const cnn_node *nd = NODE(i);
    int cm = -1, cbuf = -1, bm = -1, dbuf, dm;
    q_correction(c, i, cd0, sm, q0, zx, dnnl_s32, &cm, &cbuf);
    if (c->st || cm < 0) return;
    dnnl_convolution_desc_t cd = *cd0;
    cd.dst_desc = *MD(cm);
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL, rpd = NULL;
    int32_t rt = DNNL_RUNTIME_S32_VAL;
    int ok = pl_ok(c, dnnl_primitive_attr_create(&attr), "attributes") && pl_ok(c, dnnl_post_ops_create(&po), "post-ops") &&
             pl_ok(c, dnnl_post_ops_append_sum(po, 1.0f), "sum post-op") &&
             pl_ok(c, dnnl_primitive_attr_set_post_ops(attr, po), "post-ops") &&
             (!q0->zp_src || pl_ok(c, dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_SRC, 1, 0, &rt), "zero points")) &&
             pl_ok(c, dnnl_primitive_desc_create(&pd, &cd, attr, c->ex->dnn.eng, NULL), "convolution");
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    attr = NULL;
    dnnl_memory_desc_t dmd;
    q_md(c, &dmd, nd, dnnl_u8);
    ok = ok && pl_ok(c, dnnl_primitive_attr_create(&attr), "attributes") &&
         pl_ok(c, dnnl_primitive_attr_set_output_scales(attr, q0->n_scales, q0->n_scales > 1 ? 2 : 0, q0->scales),
               "output scales") &&
         pl_ok(c, dnnl_reorder_primitive_desc_create(&rpd, MD(cm), c->ex->dnn.eng, &dmd, c->ex->dnn.eng, attr),
               "requantizing reorder");
    if (attr) dnnl_primitive_attr_destroy(attr);
    dnnl_memory_t wm = NULL;
    if (ok) c->st = cnn_weights(c->ex, c->net, i, umd, nd->qw, pl_pd_md(pd, dnnl_query_weights_md), &wm, c->err);
    if (ok && nd->qbias) bm = pl_mem_new(c, bmd, -1, nd->qbias);
    dm = c->st ? -1 : pl_mem_fresh(c, &dmd, &dbuf);
    if (!ok || dm < 0) {
        if (pd) dnnl_primitive_desc_destroy(pd);
        if (rpd) dnnl_primitive_desc_destroy(rpd);
        return;
    }
    dnnl_exec_arg_t a[8] = {{DNNL_ARG_SRC, M(sm)}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, M(cm)}};
    int na = 3;
    if (bm >= 0) a[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, M(bm)};
    q_zp_args(c, q0, zx, 0, 0, a, &na);
    pl_step(c, pd, i, "depthwise convolution", STEP_ALWAYS, na, a);
    dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, M(cm)}, {DNNL_ARG_TO, M(dm)}};
    pl_step(c, rpd, i, "requantizing reorder", STEP_ALWAYS, 2, r);
    pl_buf_put(c, cbuf);
    pl_release(c, nd->in[0]);
    pl_set_val(c, i, dm, dbuf);
}

/* The output channels of nd whose weights minus their zero point need 9
 * bits: their count (*fail lists them, caller frees), and in *wq (caller
 * frees) the weights minus the zero point, clamped to int8 (wrong only in
 * those channels). -1: out of memory. */
static int q_split(const cnn_node *nd, int cin, int8_t **wq, int **fail) {
    size_t cnt = (size_t)nd->kh * nd->kw * (nd->op == CNN_DWCONV ? 1 : (size_t)cin) * (size_t)nd->c;
    int n = 0;
    *wq = malloc(cnt);
    *fail = duet_calloc_array((size_t)nd->c, sizeof(int));
    if (!*wq || !*fail) { free(*wq); free(*fail); *wq = NULL; *fail = NULL; return -1; }
    for (size_t k = 0; k < cnt; k++) { /* the output channel is the fastest axis */
        int v = nd->qw[k] - nd->qw_zp, o = (int)(k % (size_t)nd->c);
        if (v < -128 || v > 127) (*fail)[o] = 1;
        (*wq)[k] = (int8_t)(v < -128 ? -128 : v > 127 ? 127 : v);
    }
    for (int o = 0; o < nd->c; o++)
        if ((*fail)[o]) (*fail)[n++] = o;
    return n;
}

/* Appends the C step that recomputes the channels fail[0..n) of node i
 * (takes fail), with its weights minus their zero point and its planes
 * (cnn_fix) made here, once: a run only reads and writes them. */
static void q_fix(pctx *c, int i, int sm, int dm, int *fail, int n, const float *ms, int per_ch, const qattr *q,
                  int zx, const int pad[4]) {
    cnn_plan *p = c->p;
    const cnn_node *nd = NODE(i);
    const dnnl_dim_t *sd = MD(sm)->dims; /* n c h w */
    int dw = nd->op == CNN_DWCONV;
    size_t ce = dw ? 1 : (size_t)sd[1], K = (size_t)nd->kh * (size_t)nd->kw * ce, per = 0;
    float *m = duet_alloc_array((size_t)n, sizeof(float));
    int32_t *w = duet_alloc_array((size_t)n, K * sizeof(int32_t)), *planes = NULL;
    if (duet_mul_size(p->n * (dw ? (size_t)n : 1), (size_t)sd[2] * (size_t)sd[3], &per))
        planes = duet_alloc_array(per, ce * sizeof(int32_t));
    cnn_fix *nf = p->n_fixes < p->cap_fixes ? p->fixes : realloc(p->fixes, (p->cap_fixes * 2 + 4) * sizeof *nf);
    if (!m || !w || !planes || !nf) {
        free(m); free(w); free(planes); free(fail);
        c->st = duet_fail(c->err, DUET_ERR_NOMEM, "%s: out of memory", c->what);
        return;
    }
    if (nf != p->fixes) { p->fixes = nf; p->cap_fixes = p->cap_fixes * 2 + 4; }
    for (int k = 0; k < n; k++) {
        m[k] = ms[per_ch ? fail[k] : 0];
        for (size_t t = 0; t < K; t++) /* qw: [taps (x cin) x c] */
            w[(size_t)k * K + t] = nd->qw[t * (size_t)nd->c + (size_t)fail[k]] - nd->qw_zp;
    }
    p->fixes[p->n_fixes] = (cnn_fix){i, sm, dm, fail, n, m, zx, q->clip, pad[0], pad[2], q->lo, q->hi, w, planes};
    pl_step_fix(c, i, (int)p->n_fixes++);
}

typedef struct fixctx {
    const cnn_fix *f;
    const cnn_node *nd;
    const uint8_t *x;
    uint8_t *y;
    int cin, ih, iw;
} fixctx;

/* as oneDNN: f32 (acc + bias) x scale, post-op clip, + z_o, round to
 * nearest even, saturated */
static uint8_t fix_requant(const cnn_fix *f, const cnn_node *nd, int k, int32_t acc, float bias) {
    float v = ((float)acc + bias) * f->m[k];
    if (f->clip) v = fminf(fmaxf(v, f->lo), f->hi);
    v = nearbyintf(v + (float)nd->q_zp);
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Images [b0, b1) of a convolution (not depthwise): the input minus the
 * zero point into each image's int32 plane, all input channels. */
static void fix_gather(void *vctx, size_t b0, size_t b1) {
    const fixctx *q = vctx;
    size_t plane = (size_t)q->ih * (size_t)q->iw * (size_t)q->cin;
    for (size_t b = b0; b < b1; b++)
        for (size_t t = 0; t < plane; t++) q->f->planes[b * plane + t] = q->x[b * plane + t] - q->f->zx;
}

/* Items [i0, i1) of image x failing channel (b = item / n_ch, k = item %
 * n_ch): a depthwise layer's channel gathered minus the zero point into
 * its int32 plane, then the window sums of its output channel. Items
 * write disjoint planes and outputs: any split gives the same bytes. */
static void fix_items(void *vctx, size_t i0, size_t i1) {
    const fixctx *q = vctx;
    const cnn_fix *f = q->f;
    const cnn_node *nd = q->nd;
    int dw = nd->op == CNN_DWCONV;
    size_t cin = (size_t)q->cin, ce = dw ? 1 : cin, plane = (size_t)q->ih * (size_t)q->iw * ce;
    size_t K = (size_t)nd->kh * (size_t)nd->kw * ce;
    for (size_t it = i0; it < i1; it++) {
        size_t b = it / (size_t)f->n_ch;
        int k = (int)(it % (size_t)f->n_ch);
        size_t o = (size_t)f->ch[k];
        int32_t *xp = f->planes + (dw ? it : b) * plane;
        if (dw) {
            const uint8_t *xb = q->x + b * plane * cin;
            for (size_t t = 0; t < plane; t++) xp[t] = xb[t * cin + o] - f->zx;
        }
        const int32_t *w = f->w + (size_t)k * K;
        float bias = (float)(nd->qbias ? nd->qbias[o] : 0);
        for (int oy = 0; oy < nd->h; oy++) {
            uint8_t *yrow = q->y + ((b * (size_t)nd->h + (size_t)oy) * (size_t)nd->w) * (size_t)nd->c + o;
            for (int ox = 0; ox < nd->w; ox++) {
                int32_t acc = 0;
                for (int ky = 0; ky < nd->kh; ky++) {
                    int iy = oy * nd->sh - f->pt + ky;
                    if (iy < 0 || iy >= q->ih) continue;
                    for (int kx = 0; kx < nd->kw; kx++) {
                        int ix = ox * nd->sw - f->pl + kx;
                        if (ix < 0 || ix >= q->iw) continue;
                        const int32_t *px = xp + ((size_t)iy * (size_t)q->iw + (size_t)ix) * ce;
                        const int32_t *wt = w + ((size_t)ky * (size_t)nd->kw + (size_t)kx) * ce;
                        for (size_t ci = 0; ci < ce; ci++) acc += px[ci] * wt[ci];
                    }
                }
                yrow[(size_t)ox * (size_t)nd->c] = fix_requant(f, nd, k, acc, bias);
            }
        }
    }
}

dnnl_status_t cnn_fix_run(const duet_cnn *net, const cnn_plan *p, const cnn_fix *f) {
    const cnn_node *nd = &net->nodes[f->node];
    const dnnl_dim_t *sd = p->mems[f->src].md.dims;
    void *xv = NULL, *yv = NULL;
    dnnl_status_t s = dnnl_memory_get_data_handle(p->mems[f->src].mem, &xv);
    if (s == dnnl_success) s = dnnl_memory_get_data_handle(p->mems[f->dst].mem, &yv);
    if (s != dnnl_success) return s;
    fixctx q = {f, nd, xv, yv, (int)sd[1], (int)sd[2], (int)sd[3]};
    if (nd->op != CNN_DWCONV) fix_gather(&q, 0, p->n);
    /* on the calling thread (a few ms a batch): threads of its own would
     * compete with oneDNN's OpenMP team, whose threads spin after a step */
    fix_items(&q, 0, p->n * (size_t)f->n_ch);
    return dnnl_success;
}

void plan_q_conv(pctx *c, int i) {
    const cnn_node *nd = NODE(i);
    int pad[4] = {nd->pt, nd->pb, nd->pl, nd->pr};
    int j = pl_resolve(c, nd->in[0], pad), dw = nd->op == CNN_DWCONV, zx;
    const cnn_node *src = NODE(j);
    float sx;
    cnn_qparams(c->net, j, &sx, &zx);
    float *ms = duet_alloc_array((size_t)nd->c, sizeof(float));
    if (!ms) { c->st = duet_fail(c->err, DUET_ERR_NOMEM, "%s: out of memory", c->what); return; }
    int per_ch = 0;
    for (int o = 0; o < nd->c; o++) {
        ms[o] = (float)((double)sx * nd->qw_scale[o] / nd->q_scale);
        per_ch |= ms[o] != ms[0];
    }
    qattr q = {ms, per_ch ? nd->c : 1, zx != 0, 0, nd->q_zp != 0, NULL, 0, 0, 0, 0, 0, 0, 0};
    q.clip = q_clip(nd, nd->q_zp, &q.lo, &q.hi);
    if (q_matmul(c, i, j, &q, zx) || c->st) { free(ms); return; }
    dnnl_dims_t sd = {(dnnl_dim_t)c->n, src->c, src->h, src->w}, wd = {nd->c, src->c, nd->kh, nd->kw};
    dnnl_dims_t gd = {nd->c, 1, 1, nd->kh, nd->kw}, bd = {nd->c};
    dnnl_dims_t st = {nd->sh, nd->sw}, pl = {pad[0], pad[2]}, pr = {pad[1], pad[3]};
    dnnl_memory_desc_t smd, wmd, bmd, dmd, umd;
    pl_md(c, &smd, 4, sd, dnnl_u8, dnnl_nhwc);
    pl_md(c, &wmd, dw ? 5 : 4, dw ? gd : wd, dnnl_s8, dnnl_format_tag_any);
    pl_md(c, &bmd, 1, bd, dnnl_s32, dnnl_a);
    q_md(c, &dmd, nd, dnnl_u8);
    pl_conv_user_md(c, nd, src->c, dnnl_s8, &umd);
    dnnl_convolution_desc_t cd;
    int sm = c->val[j], cm = -1, cbuf = -1, dbuf = -1, dm = -1, bm = -1;
    if (c->st || !pl_ok(c, dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct,
                                                              &smd, &wmd, nd->qbias ? &bmd : NULL, &dmd, st, pl, pr),
                        "convolution")) { free(ms); return; }
    if (!dnnl_memory_desc_equal(MD(sm), &smd)) {
        c->st = duet_fail(c->err, DUET_ERR_INVALID_ARG, "%s: input is not uint8 NHWC", c->what);
        free(ms);
        return;
    }
    /* weights that fit int8 but for a few channels (MobileNetV2: 1 or 2
     * per layer): those channels recomputed by a C step */
    int8_t *wq = NULL;
    int *fail = NULL, nfail = nd->qw_zp ? q_split(nd, src->c, &wq, &fail) : -1;
    if (nd->qw_zp && nfail < 0) { free(ms); c->st = duet_fail(c->err, DUET_ERR_NOMEM, "%s: out of memory", c->what); return; }
    if (nfail > 0 && nfail * 8 > nd->c) { free(wq); free(fail); wq = NULL; fail = NULL; nfail = -1; }
    /* else, no dst zero point nor clip: int32 sums, the correction summed
     * in, then requantized by a reorder */
    int in32 = nd->qw_zp && nfail < 0 && !q.zp_dst && !q.clip;
    if (in32) {
        q_s32_conv(c, i, &cd, sm, &q, zx, &umd, &bmd);
        free(ms);
        return;
    }
    if (nd->qw_zp && nfail < 0) q_correction(c, i, &cd, sm, &q, zx, dnnl_f32, &cm, &cbuf);
    if (cm >= 0) q.bin = MD(cm);
    dnnl_primitive_desc_t pd = c->st ? NULL : q_pd(c, &cd, &q, "convolution");
    dnnl_memory_t wm = NULL;
    if (pd) c->st = cnn_weights(c->ex, c->net, i, &umd, wq ? wq : nd->qw, pl_pd_md(pd, dnnl_query_weights_md), &wm, c->err);
    free(wq);
    if (!pd) { free(ms); free(fail); return; }
    if (nd->qbias) bm = pl_mem_new(c, &bmd, -1, nd->qbias);
    if (!c->st) dm = pl_mem_fresh(c, pl_pd_md(pd, dnnl_query_dst_md), &dbuf);
    if (c->st || dm < 0) { dnnl_primitive_desc_destroy(pd); free(ms); free(fail); return; }
    dnnl_exec_arg_t a[8] = {{DNNL_ARG_SRC, M(sm)}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, M(dm)}};
    int na = 3;
    if (bm >= 0) a[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, M(bm)};
    if (cm >= 0) a[na++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, M(cm)};
    q_zp_args(c, &q, zx, 0, nd->q_zp, a, &na);
    pl_step(c, pd, i, dw ? "depthwise convolution" : "convolution", STEP_ALWAYS, na, a);
    if (nfail > 0) q_fix(c, i, sm, dm, fail, nfail, ms, per_ch, &q, zx, pad);
    else free(fail);
    free(ms);
    pl_buf_put(c, cbuf);
    pl_release(c, nd->in[0]);
    pl_set_val(c, i, dm, dbuf);
}

void plan_q_pool(pctx *c, int i) {
    const cnn_node *nd = NODE(i);
    int j = pl_resolve(c, nd->in[0], NULL), m = c->val[j], dbuf;
    dnnl_dims_t st = {nd->sh, nd->sw}, k = {nd->kh, nd->kw}, pl = {nd->pt, nd->pl}, pr = {nd->pb, nd->pr};
    dnnl_memory_desc_t dmd;
    dnnl_pooling_desc_t d;
    q_md(c, &dmd, nd, dnnl_u8);
    if (c->st || !pl_ok(c, dnnl_pooling_forward_desc_init(&d, dnnl_forward_inference,
                                                          nd->op == CNN_MAXPOOL ? dnnl_pooling_max
                                                                                : dnnl_pooling_avg_exclude_padding,
                                                          MD(m), &dmd, st, k, pl, pr), "pooling"))
        return;
    qattr q = {0};
    q.clip = q_clip(nd, 0, &q.lo, &q.hi);
    dnnl_primitive_desc_t pd = q_pd(c, &d, &q, "pooling");
    int dm = pd ? pl_mem_fresh(c, &dmd, &dbuf) : -1;
    if (dm < 0) { if (pd) dnnl_primitive_desc_destroy(pd); return; }
    dnnl_exec_arg_t a[2] = {{DNNL_ARG_SRC, M(m)}, {DNNL_ARG_DST, M(dm)}};
    pl_step(c, pd, i, "pooling", STEP_ALWAYS, 2, a);
    pl_release(c, nd->in[0]);
    pl_set_val(c, i, dm, dbuf);
}

void plan_q_add(pctx *c, int i) {
    const cnn_node *nd = NODE(i);
    int j0 = pl_resolve(c, nd->in[0], NULL), j1 = pl_resolve(c, nd->in[1], NULL), z0, z1, dbuf;
    float s0, s1;
    cnn_qparams(c->net, j0, &s0, &z0);
    cnn_qparams(c->net, j1, &s1, &z1);
    dnnl_memory_desc_t dmd;
    dnnl_binary_desc_t d;
    q_md(c, &dmd, nd, dnnl_u8);
    if (c->st || !pl_ok(c, dnnl_binary_desc_init(&d, dnnl_binary_add, MD(c->val[j0]), MD(c->val[j1]), &dmd), "add"))
        return;
    qattr q = {0};
    q.s0 = (float)((double)s0 / nd->q_scale);
    q.s1 = (float)((double)s1 / nd->q_scale);
    q.lin = 1;
    q.beta = (float)(nd->q_zp - (double)z0 * s0 / nd->q_scale - (double)z1 * s1 / nd->q_scale);
    q.clip = q_clip(nd, 0, &q.lo, &q.hi);
    dnnl_primitive_desc_t pd = q_pd(c, &d, &q, "add");
    int dm = pd ? pl_mem_fresh(c, &dmd, &dbuf) : -1;
    if (dm < 0) { if (pd) dnnl_primitive_desc_destroy(pd); return; }
    dnnl_exec_arg_t a[3] = {{DNNL_ARG_SRC_0, M(c->val[j0])}, {DNNL_ARG_SRC_1, M(c->val[j1])}, {DNNL_ARG_DST, M(dm)}};
    pl_step(c, pd, i, "add", STEP_ALWAYS, 3, a);
    pl_release(c, nd->in[0]);
    pl_release(c, nd->in[1]);
    pl_set_val(c, i, dm, dbuf);
}

/* node's uint8 value into the user's f32 array: a reorder, then (q - z) s
 * in place. */
int plan_q_output(pctx *c, int node, int out) {
    int r = pl_resolve(c, node, NULL), m = c->val[r], z;
    if (c->st || m < 0) return -1;
    float s;
    cnn_qparams(c->net, r, &s, &z);
    const dnnl_memory_desc_t *sd = MD(m);
    dnnl_memory_desc_t u;
    pl_md(c, &u, sd->ndims, sd->dims, dnnl_f32, sd->ndims == 4 ? dnnl_nhwc : dnnl_ab);
    int k = pl_mem_new(c, &u, -1, NULL);
    if (k < 0) return -1;
    pl_reorder(c, m, k, node, out);
    dnnl_eltwise_desc_t d;
    dnnl_primitive_desc_t pd = NULL;
    if (c->st || !pl_ok(c, dnnl_eltwise_forward_desc_init(&d, dnnl_forward_inference, dnnl_eltwise_linear, &u, s,
                                                          (float)(-(double)z * s)), "dequantize") ||
        !pl_ok(c, dnnl_primitive_desc_create(&pd, &d, NULL, c->ex->dnn.eng, NULL), "dequantize"))
        return -1;
    dnnl_exec_arg_t a[2] = {{DNNL_ARG_SRC, M(k)}, {DNNL_ARG_DST, M(k)}};
    pl_step(c, pd, node, "dequantize", out, 2, a);
    return k;
}
