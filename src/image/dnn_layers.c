/* dnn_layers.c -- one planner per layer kind (see dnn_plan.c for what
 * each becomes in oneDNN), and the copies of the run outputs. */
#include "image/dnn_plan.h"
#include <math.h>
#include <string.h>

void plan_input(pctx *c, int i) {
    const cnn_node *nd = NODE(i);
    dnnl_dims_t d = {(dnnl_dim_t)c->n, nd->c, nd->h, nd->w};
    dnnl_memory_desc_t md;
    pl_md(c, &md, 4, d, dnnl_f32, dnnl_nhwc);
    c->p->in_mem = pl_mem_new(c, &md, -1, NULL);
    pl_set_val(c, i, c->p->in_mem, -1);
}

/* The user layout of a convolution's weights: HWIO ([kh*kw*cin x cout]),
 * depthwise [kh*kw x c] as groups of one. */
void pl_conv_user_md(pctx *c, const cnn_node *nd, int cin, dnnl_data_type_t dt, dnnl_memory_desc_t *u) {
    if (nd->op == CNN_DWCONV) {
        dnnl_dims_t d = {nd->c, 1, 1, nd->kh, nd->kw};
        dnnl_dims_t s = {1, (dnnl_dim_t)nd->c * nd->kh * nd->kw, (dnnl_dim_t)nd->c * nd->kh * nd->kw,
                         (dnnl_dim_t)nd->kw * nd->c, nd->c};
        pl_ok(c, dnnl_memory_desc_init_by_strides(u, 5, d, dt, s), "weights");
    } else {
        dnnl_dims_t d = {nd->c, cin, nd->kh, nd->kw};
        pl_md(c, u, 4, d, dt, dnnl_hwio);
    }
}

void plan_conv(pctx *c, int i) {
    const cnn_node *nd = NODE(i);
    int pad[4] = {nd->pt, nd->pb, nd->pl, nd->pr};
    int j = pl_resolve(c, nd->in[0], pad), a = c->fused[i];
    const cnn_node *src = NODE(j), *tgt = a >= 0 ? NODE(a) : nd;
    int dw = nd->op == CNN_DWCONV, cin = src->c;
    dnnl_dims_t sd = {(dnnl_dim_t)c->n, cin, src->h, src->w}, dd = {(dnnl_dim_t)c->n, nd->c, nd->h, nd->w};
    dnnl_dims_t wd = {nd->c, cin, nd->kh, nd->kw}, gd = {nd->c, 1, 1, nd->kh, nd->kw}, bd = {nd->c};
    dnnl_dims_t st = {nd->sh, nd->sw}, pl = {pad[0], pad[2]}, pr = {pad[1], pad[3]};
    dnnl_memory_desc_t smd, wmd, bmd, dmd, umd;
    pl_md(c, &smd, 4, sd, c->adt, dnnl_format_tag_any);
    pl_md(c, &wmd, dw ? 5 : 4, dw ? gd : wd, c->adt, dnnl_format_tag_any);
    pl_md(c, &bmd, 1, bd, dnnl_f32, dnnl_a);
    pl_md(c, &dmd, 4, dd, c->adt, dnnl_format_tag_any);
    pl_conv_user_md(c, nd, cin, dnnl_f32, &umd);
    dnnl_convolution_desc_t cd;
    if (c->st || !pl_ok(c, dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct,
                                                              &smd, &wmd, nd->bias ? &bmd : NULL, &dmd, st, pl, pr),
                        "convolution"))
        return;
    elt e[4];
    int ne = pl_elts(tgt, e), nf = 0;
    dnnl_primitive_desc_t pd = pl_make_pd(c, &cd, a >= 0, e, ne, &nf, "convolution");
    if (!pd) return;
    smd = *pl_pd_md(pd, dnnl_query_src_md);
    wmd = *pl_pd_md(pd, dnnl_query_weights_md);
    dmd = *pl_pd_md(pd, dnnl_query_dst_md);
    int tmp, sm = pl_src_as(c, c->val[j], &smd, i, &tmp), bm = -1, dm = -1, dbuf = -1, o = -1;
    dnnl_memory_t wm = NULL;
    if (!c->st) c->st = cnn_weights(c->ex, c->net, i, &umd, nd->wt, &wmd, &wm, c->err);
    if (nd->bias) bm = pl_mem_new(c, &bmd, -1, nd->bias);
    if (a >= 0) { /* the ADD's other input, summed into dst */
        o = NODE(a)->in[0] == i ? NODE(a)->in[1] : NODE(a)->in[0];
        int ro = pl_resolve(c, o, NULL), om = c->val[ro];
        if (c->left[ro] == 1 && c->own[ro] >= 0 && dnnl_memory_desc_equal(MD(om), &dmd)) {
            dm = om; dbuf = c->own[ro]; c->own[ro] = -1;
        } else if ((dm = pl_mem_fresh(c, &dmd, &dbuf)) >= 0) {
            pl_reorder(c, om, dm, a, STEP_ALWAYS);
            c->p->reorders++;
        }
    } else dm = pl_mem_fresh(c, &dmd, &dbuf);
    if (c->st) { dnnl_primitive_desc_destroy(pd); return; }
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, M(sm)}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, M(dm)},
                               {DNNL_ARG_BIAS, bm >= 0 ? M(bm) : NULL}};
    pl_step(c, pd, i, "convolution", STEP_ALWAYS, bm >= 0 ? 4 : 3, args);
    pl_elt_chain(c, dm, e + nf, ne - nf, i);
    pl_buf_put(c, tmp);
    pl_release(c, nd->in[0]);
    if (a >= 0) {
        pl_release(c, o);
        c->done[a] = 1;
        pl_set_val(c, a, dm, dbuf);
    } else pl_set_val(c, i, dm, dbuf);
}

void plan_pool(pctx *c, int i) {
    const cnn_node *nd = NODE(i);
    int gap = nd->op == CNN_GAP, max = nd->op == CNN_MAXPOOL;
    int pad[4] = {0, 0, 0, 0};
    if (!gap) { pad[0] = nd->pt; pad[1] = nd->pb; pad[2] = nd->pl; pad[3] = nd->pr; }
    int j = pl_resolve(c, nd->in[0], pad), m = c->val[j];
    int padded = pad[0] || pad[1] || pad[2] || pad[3];
    if (max && padded && nd->pad_value == 0.0f && !pl_nonneg(c, j)) { /* zero cells count: materialize them */
        m = pl_pad_copy(c, m, pad, i);
        memset(pad, 0, sizeof pad);
    }
    if (m < 0 || c->st) return;
    const dnnl_memory_desc_t *s = MD(m);
    dnnl_dim_t ih = s->dims[2], iw = s->dims[3];
    dnnl_dims_t dd = {(dnnl_dim_t)c->n, nd->c, nd->h, nd->w};
    dnnl_dims_t st = {gap ? 1 : nd->sh, gap ? 1 : nd->sw}, k = {gap ? ih : nd->kh, gap ? iw : nd->kw};
    dnnl_dims_t pl = {pad[0], pad[2]}, pr = {pad[1], pad[3]};
    elt e[4];
    int ne = pl_elts(nd, e), nf = 0;
    dnnl_primitive_desc_t pd = NULL;
    /* the input's type; the feature (GAP) in f32 where oneDNN can */
    dnnl_data_type_t fall = MD(m)->data_type, ddt = gap ? dnnl_f32 : fall;
    for (;;) {
        dnnl_memory_desc_t dmd;
        dnnl_pooling_desc_t d;
        pl_md(c, &dmd, 4, dd, ddt, dnnl_format_tag_any);
        if (c->st || !pl_ok(c, dnnl_pooling_forward_desc_init(&d, dnnl_forward_inference,
                                                              max ? dnnl_pooling_max : dnnl_pooling_avg_exclude_padding,
                                                              MD(m), &dmd, st, k, pl, pr), "pooling"))
            return;
        pd = pl_make_pd(c, &d, 0, e, ne, &nf, "pooling");
        if (pd || ddt == fall || c->st != DUET_ERR_UNSUPPORTED) break;
        c->st = DUET_OK;
        ddt = fall;
    }
    if (!pd) return;
    int dbuf, dm = pl_mem_fresh(c, pl_pd_md(pd, dnnl_query_dst_md), &dbuf);
    if (dm < 0) { dnnl_primitive_desc_destroy(pd); return; }
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, M(m)}, {DNNL_ARG_DST, M(dm)}};
    pl_step(c, pd, i, gap ? "global average pooling" : "pooling", STEP_ALWAYS, 2, args);
    pl_elt_chain(c, dm, e + nf, ne - nf, i);
    pl_release(c, nd->in[0]);
    pl_set_val(c, i, dm, dbuf);
}

void plan_add(pctx *c, int i) {
    const cnn_node *nd = NODE(i);
    int j0 = pl_resolve(c, nd->in[0], NULL), j1 = pl_resolve(c, nd->in[1], NULL), m0 = c->val[j0], tmp;
    int m1 = pl_src_as(c, c->val[j1], MD(m0), i, &tmp);
    dnnl_memory_desc_t dmd;
    dnnl_binary_desc_t d;
    pl_md(c, &dmd, 4, MD(m0)->dims, c->adt, dnnl_format_tag_any);
    if (c->st || !pl_ok(c, dnnl_binary_desc_init(&d, dnnl_binary_add, MD(m0), MD(m1), &dmd), "add")) return;
    elt e[4];
    int ne = pl_elts(nd, e), nf = 0, dbuf;
    dnnl_primitive_desc_t pd = pl_make_pd(c, &d, 0, e, ne, &nf, "add");
    if (!pd) return;
    int dm = pl_mem_fresh(c, pl_pd_md(pd, dnnl_query_dst_md), &dbuf);
    if (dm < 0) { dnnl_primitive_desc_destroy(pd); return; }
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC_0, M(m0)}, {DNNL_ARG_SRC_1, M(m1)}, {DNNL_ARG_DST, M(dm)}};
    pl_step(c, pd, i, "add", STEP_ALWAYS, 3, args);
    pl_elt_chain(c, dm, e + nf, ne - nf, i);
    pl_buf_put(c, tmp);
    pl_release(c, nd->in[0]);
    pl_release(c, nd->in[1]);
    pl_set_val(c, i, dm, dbuf);
}

/* DENSE: an inner product over the flattened NHWC input; f32 output. */
void plan_dense(pctx *c, int i) {
    const cnn_node *nd = NODE(i);
    int j = pl_resolve(c, nd->in[0], NULL);
    const cnn_node *s = NODE(j);
    dnnl_data_type_t sdt = MD(c->val[j])->data_type;
    dnnl_dims_t sd = {(dnnl_dim_t)c->n, s->c, s->h, s->w}, wd = {nd->c, s->c, s->h, s->w}, bd = {nd->c};
    dnnl_dims_t dd = {(dnnl_dim_t)c->n, nd->c};
    dnnl_dims_t ws = {1, nd->c, (dnnl_dim_t)s->w * s->c * nd->c, (dnnl_dim_t)s->c * nd->c};
    dnnl_memory_desc_t smd, wmd, bmd, dmd, umd;
    pl_md(c, &smd, 4, sd, sdt, dnnl_format_tag_any);
    pl_md(c, &wmd, 4, wd, sdt, dnnl_format_tag_any);
    pl_md(c, &bmd, 1, bd, dnnl_f32, dnnl_a);
    pl_md(c, &dmd, 2, dd, dnnl_f32, dnnl_format_tag_any);
    dnnl_inner_product_desc_t d;
    if (c->st || !pl_ok(c, dnnl_memory_desc_init_by_strides(&umd, 4, wd, dnnl_f32, ws), "weights") ||
        !pl_ok(c, dnnl_inner_product_forward_desc_init(&d, dnnl_forward_inference, &smd, &wmd, &bmd, &dmd),
               "inner product"))
        return;
    elt e[4];
    int ne = pl_elts(nd, e), nf = 0, tmp, dbuf;
    dnnl_primitive_desc_t pd = pl_make_pd(c, &d, 0, e, ne, &nf, "inner product");
    if (!pd) return;
    wmd = *pl_pd_md(pd, dnnl_query_weights_md);
    int sm = pl_src_as(c, c->val[j], pl_pd_md(pd, dnnl_query_src_md), i, &tmp);
    dnnl_memory_t wm = NULL;
    if (!c->st) c->st = cnn_weights(c->ex, c->net, i, &umd, nd->wt, &wmd, &wm, c->err);
    int bm = pl_mem_new(c, &bmd, -1, nd->bias);
    int dm = c->st ? -1 : pl_mem_fresh(c, pl_pd_md(pd, dnnl_query_dst_md), &dbuf);
    if (dm < 0 || bm < 0) { dnnl_primitive_desc_destroy(pd); return; }
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, M(sm)}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_BIAS, M(bm)},
                               {DNNL_ARG_DST, M(dm)}};
    pl_step(c, pd, i, "inner product", STEP_ALWAYS, 4, args);
    pl_elt_chain(c, dm, e + nf, ne - nf, i);
    pl_buf_put(c, tmp);
    pl_release(c, nd->in[0]);
    pl_set_val(c, i, dm, dbuf);
}

/* PAD: foldable when every reader is a convolution (its input) or a max
 * pool of non-negative values, and the padded map is no output. */
static int pad_foldable(pctx *c, int i) {
    duet_cnn *net = c->net;
    if (i == net->feature || i == net->output || i == cnn_map_node(net)) return 0;
    for (size_t k = (size_t)i + 1; k < net->n_nodes; k++)
        for (int s = 0; s < net->nodes[k].n_in; s++) {
            if (net->nodes[k].in[s] != i) continue;
            cnn_op op = net->nodes[k].op;
            if (!(s == 0 && (op == CNN_CONV || op == CNN_DWCONV || (op == CNN_MAXPOOL && pl_nonneg(c, NODE(i)->in[0])))))
                return 0;
        }
    return 1;
}

void plan_pad(pctx *c, int i) {
    const cnn_node *nd = NODE(i);
    int pad[4] = {nd->pt, nd->pb, nd->pl, nd->pr};
    if (pad_foldable(c, i)) { pl_alias(c, i, nd->in[0], pad); return; }
    int j = pl_resolve(c, nd->in[0], pad), m = pl_pad_copy(c, c->val[j], pad, i);
    if (m < 0) return;
    pl_release(c, nd->in[0]);
    pl_set_val(c, i, m, -1);
}

/* IDENTITY: its input, or (it clamps or re-quantizes) max(x, x) with the
 * clamp as post-ops, into f32 when it is an output. */
void plan_identity(pctx *c, int i) {
    const cnn_node *nd = NODE(i);
    elt e[4];
    int ne = pl_elts(nd, e);
    if (ne == 0 && NODE(nd->in[0])->op != CNN_PAD) { pl_alias(c, i, nd->in[0], NULL); return; }
    int j = pl_resolve(c, nd->in[0], NULL), m = c->val[j], nf = 0, dbuf;
    dnnl_memory_desc_t dmd;
    dnnl_binary_desc_t d;
    pl_md(c, &dmd, MD(m)->ndims, MD(m)->dims, i == c->net->feature || i == c->net->output ? dnnl_f32 : c->adt,
          dnnl_format_tag_any);
    if (c->st || !pl_ok(c, dnnl_binary_desc_init(&d, dnnl_binary_max, MD(m), MD(m), &dmd), "identity")) return;
    dnnl_primitive_desc_t pd = pl_make_pd(c, &d, 0, e, ne, &nf, "identity");
    int dm = pd ? pl_mem_fresh(c, pl_pd_md(pd, dnnl_query_dst_md), &dbuf) : -1;
    if (dm < 0) { if (pd) dnnl_primitive_desc_destroy(pd); return; }
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC_0, M(m)}, {DNNL_ARG_SRC_1, M(m)}, {DNNL_ARG_DST, M(dm)}};
    pl_step(c, pd, i, "identity", STEP_ALWAYS, 3, args);
    pl_elt_chain(c, dm, e + nf, ne - nf, i);
    pl_release(c, nd->in[0]);
    pl_set_val(c, i, dm, dbuf);
}

/* The copy of a run output (node's value) into the user's array. */
int plan_output(pctx *c, int node, int out) {
    int r = pl_resolve(c, node, NULL), m = c->val[r];
    if (c->st || m < 0) return -1;
    const dnnl_memory_desc_t *s = MD(m);
    dnnl_memory_desc_t u;
    pl_md(c, &u, s->ndims, s->dims, dnnl_f32, s->ndims == 4 ? dnnl_nhwc : dnnl_ab);
    int k = pl_mem_new(c, &u, -1, NULL);
    if (k >= 0) pl_reorder(c, m, k, node, out);
    return k;
}

