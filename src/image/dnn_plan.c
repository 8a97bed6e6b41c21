/* dnn_plan.c -- compiles the CNN graph for one batch size into oneDNN
 * primitives (dnn_net.h): the bookkeeping (buffers, memory objects, steps,
 * liveness, post-ops) and the build; dnn_layers.c plans each layer. One
 * primitive per layer:
 *   CONV, DWCONV  convolution (depthwise: grouped, one channel a group),
 *                 src/weights/dst dnnl_format_tag_any, f32 bias, post-ops:
 *                 the clamp (relu or clip) and the uint8 re-quantization;
 *                 a following ADD whose other input is ready is fused as a
 *                 sum post-op (the residual: conv -> add -> relu), in place
 *                 in the other input's buffer when nothing else reads it.
 *   MAXPOOL, AVGPOOL, GAP  pooling (GAP: the whole map; TF's average pool
 *                 excludes padded cells, oneDNN's max pool ignores them)
 *   ADD           binary add (when not fused); DENSE inner product
 *   PAD           folded into the padding of the convolutions (and max
 *                 pools of non-negative input) that read it, else a zeroed
 *                 copy; IDENTITY: the input itself, or a copy when it clamps
 * Activations are bf16 between layers when the precision is bf16 (the
 * feature and the logits f32), f32 otherwise; an int8 run of a quantized
 * net plans its layers in dnn_int8.c instead. A post-op a primitive does
 * not implement runs as eltwise primitives after it. */
#include "image/dnn_plan.h"
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pl_ok(pctx *c, dnnl_status_t s, const char *op) {
    if (s == dnnl_success) return 1;
    if (!c->st) c->st = duet_dnn_fail(s, c->err, "%s: %s", c->what, op);
    return 0;
}

static int pl_nomem(pctx *c) {
    if (!c->st) c->st = duet_fail(c->err, DUET_ERR_NOMEM, "cnn plan: %s: out of memory", c->what);
    return -1;
}

static int grow(void *pp, size_t *cap, size_t n, size_t el) {
    if (n < *cap) return 0;
    size_t nc = *cap ? *cap * 2 : 64;
    void *q = realloc(*(void **)pp, nc * el);
    if (!q) return -1;
    *(void **)pp = q;
    *cap = nc;
    return 0;
}

/* ---------------------------------------------------------- buffers, mems */

/* A free buffer of at least size bytes (the smallest that fits, else the
 * largest free one grown, else a new one); fixed: a new one never reused. */
static int pl_buf_get(pctx *c, size_t size, int fixed) {
    cnn_plan *p = c->p;
    int best = -1;
    for (size_t i = 0; !fixed && i < p->n_bufs; i++) {
        const cnn_buf *b = &p->bufs[i];
        if (b->busy || b->fixed) continue;
        if (best < 0) { best = (int)i; continue; }
        size_t bs = p->bufs[best].size;
        if (b->size >= size ? (bs < size || b->size < bs) : (bs < size && b->size > bs)) best = (int)i;
    }
    if (best < 0) {
        if (grow(&p->bufs, &p->cap_bufs, p->n_bufs, sizeof *p->bufs)) return pl_nomem(c);
        best = (int)p->n_bufs++;
        p->bufs[best] = (cnn_buf){NULL, 0, 0, fixed};
    }
    if (p->bufs[best].size < size) p->bufs[best].size = size;
    p->bufs[best].busy = 1;
    return best;
}

void pl_buf_put(pctx *c, int b) {
    if (b >= 0 && !c->p->bufs[b].fixed) c->p->bufs[b].busy = 0;
}

/* A memory object of md on buffer buf (or at handle, or unset). */
int pl_mem_new(pctx *c, const dnnl_memory_desc_t *md, int buf, void *handle) {
    cnn_plan *p = c->p;
    if (c->st) return -1;
    if (grow(&p->mems, &p->cap_mems, p->n_mems, sizeof *p->mems)) return pl_nomem(c);
    dnnl_memory_t m = NULL;
    if (!pl_ok(c, dnnl_memory_create(&m, md, c->ex->dnn.eng, handle ? handle : DNNL_MEMORY_NONE), "memory"))
        return -1;
    p->mems[p->n_mems] = (cnn_mem){m, *md, buf};
    return (int)p->n_mems++;
}

/* A new value of md in a pooled buffer: the mem; *buf its buffer. */
int pl_mem_fresh(pctx *c, const dnnl_memory_desc_t *md, int *buf) {
    *buf = c->st ? -1 : pl_buf_get(c, dnnl_memory_desc_get_size(md), 0);
    return *buf < 0 ? -1 : pl_mem_new(c, md, *buf, NULL);
}

/* Appends the primitive of pd (destroyed here) with its arguments. */
void pl_step(pctx *c, dnnl_primitive_desc_t pd, int node, const char *what, int out, int nargs,
             const dnnl_exec_arg_t *args) {
    cnn_plan *p = c->p;
    dnnl_primitive_t prim = NULL;
    int ok = !c->st && pl_ok(c, dnnl_primitive_create(&prim, pd), what);
    dnnl_primitive_desc_destroy(pd);
    if (!ok) return;
    if (grow(&p->steps, &p->cap_steps, p->n_steps, sizeof *p->steps)) { dnnl_primitive_destroy(prim); pl_nomem(c); return; }
    cnn_step *s = &p->steps[p->n_steps++];
    memset(s, 0, sizeof *s);
    s->prim = prim; s->node = node; s->what = what; s->out = out; s->nargs = nargs;
    memcpy(s->args, args, (size_t)nargs * sizeof *args);
}

/* Appends a C step: fix (an index into p->fixes). */
void pl_step_fix(pctx *c, int node, int fix) {
    cnn_plan *p = c->p;
    if (c->st) return;
    if (grow(&p->steps, &p->cap_steps, p->n_steps, sizeof *p->steps)) { pl_nomem(c); return; }
    cnn_step *s = &p->steps[p->n_steps++];
    memset(s, 0, sizeof *s);
    s->node = node; s->what = "exact channels"; s->out = STEP_ALWAYS; s->fix = fix;
}

void pl_reorder(pctx *c, int from, int to, int node, int out) {
    dnnl_primitive_desc_t pd = NULL;
    if (c->st || !pl_ok(c, dnnl_reorder_primitive_desc_create(&pd, MD(from), c->ex->dnn.eng, MD(to),
                                                               c->ex->dnn.eng, NULL), "reorder"))
        return;
    dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, M(from)}, {DNNL_ARG_TO, M(to)}};
    pl_step(c, pd, node, "reorder", out, 2, a);
}

/* Mem m as layout want: m itself, or a reordered copy in a temporary
 * buffer (*tmp, released by the caller after its step). */
int pl_src_as(pctx *c, int m, const dnnl_memory_desc_t *want, int node, int *tmp) {
    *tmp = -1;
    if (c->st || dnnl_memory_desc_equal(MD(m), want)) return m;
    int k = pl_mem_fresh(c, want, tmp);
    if (k >= 0) pl_reorder(c, m, k, node, STEP_ALWAYS);
    c->p->reorders++;
    return k;
}

/* ------------------------------------------------------ values, liveness */

int pl_resolve(pctx *c, int j, int pad[4]) {
    while (c->alias[j] >= 0) {
        for (int k = 0; pad && k < 4; k++) pad[k] += c->apad[j][k];
        j = c->alias[j];
    }
    return j;
}

void pl_release(pctx *c, int j) {
    int r = pl_resolve(c, j, NULL);
    if (--c->left[r] == 0) pl_buf_put(c, c->own[r]);
}

void pl_set_val(pctx *c, int i, int m, int buf) {
    c->val[i] = m;
    c->own[i] = buf;
    if (c->left[i] == 0) pl_buf_put(c, buf);
}

/* Node i stands for src (plus zero padding pad): src's readers grow. */
void pl_alias(pctx *c, int i, int src, const int pad[4]) {
    int r = pl_resolve(c, src, NULL);
    c->alias[i] = src;
    for (int k = 0; k < 4; k++) c->apad[i][k] = pad ? pad[k] : 0;
    c->left[r] += c->left[i] - 1;
    if (c->left[r] == 0) pl_buf_put(c, c->own[r]);
}

int pl_nonneg(pctx *c, int j) { return NODE(j)->act_lo >= 0; }

/* The clamp and the re-quantization of a node as eltwise operations:
 *   q = clamp(round(v / s) + zp, 0, 255); v = (q - zp) s
 * is clamp(v, -zp s, (255 - zp) s) (merged with the node's own clamp), then
 * s round(v / s). (oneDNN 2.6's post-op chains give a second eltwise of the
 * same kind the parameters of the first: each kind appears once here.) */
int pl_elts(const cnn_node *nd, elt *e) {
    int k = 0;
    float lo = nd->act_lo, hi = nd->act_hi;
    if (nd->fq) {
        lo = fmaxf(lo, (float)-nd->q_zp * nd->q_scale);
        hi = fminf(hi, (float)(255 - nd->q_zp) * nd->q_scale);
    }
    if (lo == 0.0f && isinf(hi) && hi > 0) e[k++] = (elt){dnnl_eltwise_relu, 0, 0, 1};
    else if (!isinf(lo) || !isinf(hi))
        e[k++] = (elt){dnnl_eltwise_clip, isinf(lo) ? -FLT_MAX : lo, isinf(hi) ? FLT_MAX : hi, 1};
    if (nd->fq) {
        e[k++] = (elt){dnnl_eltwise_linear, 1.0f / nd->q_scale, 0, 1};
        e[k++] = (elt){dnnl_eltwise_round, 0, 0, nd->q_scale};
    }
    return k;
}

/* The primitive descriptor of desc with post-ops (sum, then e[]); when
 * oneDNN does not implement those eltwise post-ops, without them (*fused
 * says how many of e[] it took). NULL on error. */
dnnl_primitive_desc_t pl_make_pd(pctx *c, const void *desc, int sum, const elt *e, int ne, int *fused,
                                 const char *op) {
    for (int k = ne;; k = 0) {
        dnnl_primitive_attr_t attr = NULL;
        dnnl_post_ops_t po = NULL;
        dnnl_primitive_desc_t pd = NULL;
        int ok = pl_ok(c, dnnl_primitive_attr_create(&attr), "attributes") &&
                 pl_ok(c, dnnl_post_ops_create(&po), "post-ops") &&
                 (!sum || pl_ok(c, dnnl_post_ops_append_sum(po, 1.0f), "sum post-op"));
        for (int i = 0; ok && i < k; i++)
            ok = pl_ok(c, dnnl_post_ops_append_eltwise(po, e[i].scale, e[i].alg, e[i].a, e[i].b), "eltwise post-op");
        ok = ok && pl_ok(c, dnnl_primitive_attr_set_post_ops(attr, po), "post-ops");
        dnnl_status_t s = ok ? dnnl_primitive_desc_create(&pd, desc, attr, c->ex->dnn.eng, NULL) : dnnl_success;
        if (po) dnnl_post_ops_destroy(po);
        if (attr) dnnl_primitive_attr_destroy(attr);
        if (!ok) return NULL;
        if (s == dnnl_success) { *fused = k; return pd; }
        if (s != dnnl_unimplemented || k == 0) { pl_ok(c, s, op); return NULL; }
    }
}

/* The eltwise operations e[] in place on mem m, one primitive each (a
 * scale: one more, linear). */
void pl_elt_chain(pctx *c, int m, const elt *e, int ne, int node) {
    for (int i = 0; i < ne && !c->st; i++)
        for (int sc = 0; sc < 2; sc++) {
            if (sc && e[i].scale == 1.0f) break;
            dnnl_eltwise_desc_t d;
            dnnl_primitive_desc_t pd = NULL;
            if (!pl_ok(c, dnnl_eltwise_forward_desc_init(&d, dnnl_forward_inference, sc ? dnnl_eltwise_linear : e[i].alg,
                                                          MD(m), sc ? e[i].scale : e[i].a, sc ? 0 : e[i].b), "eltwise") ||
                !pl_ok(c, dnnl_primitive_desc_create(&pd, &d, NULL, c->ex->dnn.eng, NULL), "eltwise"))
                return;
            dnnl_exec_arg_t a[2] = {{DNNL_ARG_SRC, M(m)}, {DNNL_ARG_DST, M(m)}};
            pl_step(c, pd, node, "eltwise", STEP_ALWAYS, 2, a);
        }
}

void pl_md(pctx *c, dnnl_memory_desc_t *md, int nd, const dnnl_dims_t dims, dnnl_data_type_t dt,
           dnnl_format_tag_t tag) {
    pl_ok(c, dnnl_memory_desc_init_by_tag(md, nd, dims, dt, tag), "memory descriptor");
}

const dnnl_memory_desc_t *pl_pd_md(dnnl_primitive_desc_t pd, dnnl_query_t q) {
    return dnnl_primitive_desc_query_md(pd, q, 0);
}

/* A zero-bordered NHWC copy of mem m (a fixed buffer: the border is zeroed
 * once; each run writes the interior). */
int pl_pad_copy(pctx *c, int m, const int pad[4], int node) {
    const dnnl_memory_desc_t *s = MD(m);
    dnnl_dims_t d = {s->dims[0], s->dims[1], s->dims[2] + pad[0] + pad[1], s->dims[3] + pad[2] + pad[3]};
    dnnl_dims_t off = {0, 0, pad[0], pad[2]};
    dnnl_memory_desc_t pmd, sub;
    pl_md(c, &pmd, 4, d, s->data_type, dnnl_nhwc);
    if (c->st || !pl_ok(c, dnnl_memory_desc_init_submemory(&sub, &pmd, s->dims, off), "padding")) return -1;
    int b = pl_buf_get(c, dnnl_memory_desc_get_size(&pmd), 1);
    int pm = b < 0 ? -1 : pl_mem_new(c, &pmd, b, NULL), sm = pm < 0 ? -1 : pl_mem_new(c, &sub, b, NULL);
    if (sm >= 0) pl_reorder(c, m, sm, node, STEP_ALWAYS);
    return pm;
}

/* Which convolution computes each ADD: an input that is a linear
 * convolution read only by the ADD, planned after the other input. */
static void find_fusions(pctx *c) {
    duet_cnn *net = c->net;
    for (size_t a = 0; a < net->n_nodes; a++) {
        const cnn_node *nd = &net->nodes[a];
        if (nd->op != CNN_ADD || nd->n_in != 2) continue;
        int best = -1;
        for (int k = 0; k < 2; k++) {
            int j = nd->in[k], o = nd->in[1 - k];
            const cnn_node *cv = &net->nodes[j];
            if ((cv->op == CNN_CONV || cv->op == CNN_DWCONV) && c->left[j] == 1 && isinf(cv->act_lo) &&
                isinf(cv->act_hi) && !cv->fq && o < j && net->nodes[o].op != CNN_PAD && j > best)
                best = j;
        }
        if (best >= 0) c->fused[best] = (int)a;
    }
}

static void describe(pctx *c, int i) {
    static const char *const ops[] = {"input", "convolution", "depthwise convolution", "max pooling",
                                      "average pooling", "global average pooling", "add", "padding",
                                      "dense", "identity"};
    const cnn_node *nd = NODE(i), *p = nd->n_in ? NODE(nd->in[0]) : nd;
    snprintf(c->what, sizeof c->what, "layer '%s' (%s %dx%dx%d -> %dx%dx%d, batch %zu, %s)", nd->name,
             ops[nd->op], p->h, p->w, p->c, nd->h, nd->w, nd->c, c->n,
             c->q ? "int8" : c->adt == dnnl_bf16 ? "bf16" : "f32");
}

duet_status cnn_plan_build(duet_cnn *net, struct cnn_exec *ex, size_t n, cnn_plan **out, duet_error *err) {
    size_t N = net->n_nodes;
    int q = cnn_int8(net);
    pctx c = {net, ex, calloc(1, sizeof(cnn_plan)), err, DUET_OK, n,
              q ? dnnl_u8 : duet_cnn_precision(net) == DUET_PRECISION_BF16 ? dnnl_bf16 : dnnl_f32, q,
              duet_alloc_array(N, sizeof(int)), duet_alloc_array(N, sizeof(int)), duet_alloc_array(N, sizeof(int)),
              duet_alloc_array(N, sizeof(int)), duet_calloc_array(N, sizeof(int[4])),
              duet_alloc_array(N, sizeof(int)), duet_calloc_array(N, sizeof(int)), "cnn plan"};
    *out = NULL;
    if (!c.p || !c.val || !c.own || !c.left || !c.alias || !c.apad || !c.fused || !c.done) pl_nomem(&c);
    else {
        c.p->n = n;
        c.p->in_mem = c.p->feat_mem = c.p->logit_mem = c.p->map_mem = -1;
        for (size_t i = 0; i < N; i++) {
            c.val[i] = c.own[i] = c.alias[i] = c.fused[i] = -1;
            c.left[i] = net->nodes[i].consumers;
        }
        c.left[cnn_map_node(net)]++; /* read at the end (run_map) */
        if (!q) find_fusions(&c);
        else if (!(c.p->zps = duet_alloc_array(c.p->cap_zps = 3 * N + 3, sizeof(int32_t)))) pl_nomem(&c);
    }
    for (size_t i = 0; i < N && !c.st; i++) {
        if (c.done[i]) continue;
        describe(&c, (int)i);
        if (q) {
            switch (net->nodes[i].op) {
            case CNN_INPUT: plan_q_input(&c, (int)i); break;
            case CNN_CONV: case CNN_DWCONV: plan_q_conv(&c, (int)i); break;
            case CNN_MAXPOOL: case CNN_AVGPOOL: plan_q_pool(&c, (int)i); break;
            case CNN_ADD: plan_q_add(&c, (int)i); break;
            case CNN_IDENTITY: pl_alias(&c, (int)i, net->nodes[i].in[0], NULL); break;
            default: c.st = duet_fail(err, DUET_ERR_UNSUPPORTED, "%s: no int8 form", c.what);
            }
            continue;
        }
        switch (net->nodes[i].op) {
        case CNN_INPUT: plan_input(&c, (int)i); break;
        case CNN_CONV: case CNN_DWCONV: plan_conv(&c, (int)i); break;
        case CNN_MAXPOOL: case CNN_AVGPOOL: case CNN_GAP: plan_pool(&c, (int)i); break;
        case CNN_ADD: plan_add(&c, (int)i); break;
        case CNN_PAD: plan_pad(&c, (int)i); break;
        case CNN_DENSE: plan_dense(&c, (int)i); break;
        case CNN_IDENTITY: plan_identity(&c, (int)i); break;
        }
    }
    snprintf(c.what, sizeof c.what, "cnn outputs (batch %zu)", n);
    if (!c.st) {
        int (*po)(pctx *, int, int) = q ? plan_q_output : plan_output;
        c.p->feat_mem = po(&c, net->feature, STEP_FEATS);
        c.p->logit_mem = po(&c, net->output, STEP_LOGITS);
        c.p->map_mem = po(&c, cnn_map_node(net), STEP_MAP);
    }
    if (!c.st && net->pre != CNN_PRE_NONE) {
        const cnn_node *in = &net->nodes[net->input];
        c.p->in_pre = duet_alloc_array(n * (size_t)in->h * in->w, (size_t)in->c * (q ? 1 : sizeof(float)));
        if (!c.p->in_pre) pl_nomem(&c);
    }
    for (size_t b = 0; !c.st && b < c.p->n_bufs; b++) {
        cnn_buf *bf = &c.p->bufs[b];
        size_t sz = (bf->size + 63) / 64 * 64;
        if (!(bf->data = aligned_alloc(64, sz ? sz : 64))) { pl_nomem(&c); break; }
        if (bf->fixed) memset(bf->data, 0, sz);
    }
    for (size_t k = 0; !c.st && k < c.p->n_mems; k++)
        if (c.p->mems[k].buf >= 0)
            pl_ok(&c, dnnl_memory_set_data_handle(c.p->mems[k].mem, c.p->bufs[c.p->mems[k].buf].data), "buffers");
    duet_status st = c.st;
    if (st) cnn_plan_free(c.p);
    else *out = c.p;
    free(c.val); free(c.own); free(c.left); free(c.alias); free(c.apad); free(c.fused); free(c.done);
    return st;
}

void cnn_plan_free(cnn_plan *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n_steps; i++)
        if (p->steps[i].prim) dnnl_primitive_destroy(p->steps[i].prim);
    for (size_t i = 0; i < p->n_fixes; i++) {
        free(p->fixes[i].ch); free(p->fixes[i].m); free(p->fixes[i].w); free(p->fixes[i].planes);
    }
    free(p->fixes);
    for (size_t i = 0; i < p->n_mems; i++) dnnl_memory_destroy(p->mems[i].mem);
    for (size_t i = 0; i < p->n_bufs; i++) free(p->bufs[i].data);
    free(p->steps); free(p->mems); free(p->bufs); free(p->in_pre); free(p->zps);
    free(p);
}

