/* dnn_exec.c -- the CNN executor on oneDNN: the engine and stream the net
 * owns (made on its first run, in its precision), the plans of the last
 * CNN_PLANS batch sizes, the weights reordered once per layout, and a run:
 * preprocessing, the plan's primitives in order, the outputs copied out. */
#include "image/dnn_net.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

void cnn_exec_free(duet_cnn *net) {
    struct cnn_exec *ex = net ? net->exec : NULL;
    if (!ex) return;
    for (int i = 0; i < CNN_PLANS; i++) cnn_plan_free(ex->plans[i]);
    for (size_t i = 0; i < ex->n_w; i++) {
        dnnl_memory_destroy(ex->w[i].mem);
        free(ex->w[i].data);
    }
    free(ex->w);
    duet_dnn_fini(&ex->dnn);
    free(ex);
    net->exec = NULL;
}

duet_status cnn_weights(struct cnn_exec *ex, const duet_cnn *net, int node, const dnnl_memory_desc_t *umd,
                        const void *src, const dnnl_memory_desc_t *want, dnnl_memory_t *mem, duet_error *err) {
    for (size_t i = 0; i < ex->n_w; i++)
        if (ex->w[i].node == node && dnnl_memory_desc_equal(&ex->w[i].md, want)) {
            *mem = ex->w[i].mem;
            return DUET_OK;
        }
    const char *name = net->nodes[(size_t)node % net->n_nodes].name;
    if (ex->n_w == ex->cap_w) {
        size_t cap = ex->cap_w ? ex->cap_w * 2 : 64;
        cnn_wt *w = realloc(ex->w, cap * sizeof *w);
        if (!w) return duet_fail(err, DUET_ERR_NOMEM, "cnn: layer '%s': out of memory for its weights", name);
        ex->w = w;
        ex->cap_w = cap;
    }
    size_t size = (dnnl_memory_desc_get_size(want) + 63) / 64 * 64;
    void *data = aligned_alloc(64, size ? size : 64);
    if (!data) return duet_fail(err, DUET_ERR_NOMEM, "cnn: layer '%s': out of memory for its weights", name);
    dnnl_memory_t um = NULL, wm = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t r = NULL;
    duet_status st = duet_dnn_fail(dnnl_memory_create(&um, umd, ex->dnn.eng, (void *)src), err,
                                   "layer '%s': weights", name);
    if (!st) st = duet_dnn_fail(dnnl_memory_create(&wm, want, ex->dnn.eng, data), err, "layer '%s': weights", name);
    if (!st) st = duet_dnn_fail(dnnl_reorder_primitive_desc_create(&pd, umd, ex->dnn.eng, want, ex->dnn.eng, NULL),
                                err, "layer '%s': reordering the weights", name);
    if (!st) st = duet_dnn_fail(dnnl_primitive_create(&r, pd), err, "layer '%s': reordering the weights", name);
    if (!st) {
        dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, um}, {DNNL_ARG_TO, wm}};
        st = duet_dnn_fail(dnnl_primitive_execute(r, ex->dnn.stream, 2, a), err, "layer '%s': reordering the weights",
                           name);
    }
    if (!st) st = duet_dnn_fail(dnnl_stream_wait(ex->dnn.stream), err, "layer '%s': reordering the weights", name);
    if (r) dnnl_primitive_destroy(r);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (um) dnnl_memory_destroy(um);
    if (st) {
        if (wm) dnnl_memory_destroy(wm);
        free(data);
        return st;
    }
    ex->w[ex->n_w++] = (cnn_wt){node, *want, data, wm};
    *mem = wm;
    return DUET_OK;
}

/* The plan for n inputs: cached, else built in place of the least recently
 * used one. */
static duet_status get_plan(duet_cnn *net, size_t n, cnn_plan **out, duet_error *err) {
    if (!net->exec) {
        struct cnn_exec *ex = calloc(1, sizeof *ex);
        if (!ex) return duet_fail(err, DUET_ERR_NOMEM, "cnn: out of memory");
        duet_status st = duet_dnn_init(&ex->dnn, duet_cnn_precision(net), err);
        if (st) { free(ex); return st; }
        net->exec = ex;
    }
    struct cnn_exec *ex = net->exec;
    int slot = 0;
    for (int i = 0; i < CNN_PLANS; i++) {
        cnn_plan *p = ex->plans[i];
        if (p && p->n == n) { p->used = ++ex->tick; *out = p; return DUET_OK; }
        if (!p || (ex->plans[slot] && p->used < ex->plans[slot]->used)) slot = i;
    }
    cnn_plan *p = NULL;
    duet_status st = cnn_plan_build(net, ex, n, &p, err);
    if (st) return st;
    cnn_plan_free(ex->plans[slot]);
    ex->plans[slot] = p;
    p->used = ++ex->tick;
    *out = p;
    return DUET_OK;
}

/* The input as the graph's first layer expects it (NHWC float). */
static void preprocess(const duet_cnn *net, const float *input, size_t n, void *to) {
    const cnn_node *in = &net->nodes[net->input];
    size_t px = n * (size_t)in->h * in->w;
    float *out = to;
    if (cnn_int8(net)) { /* the uint8 pixels themselves (the input's grid) */
        uint8_t *u = to;
        for (size_t k = 0; k < px * (size_t)in->c; k++) {
            float q = nearbyintf(input[k]);
            u[k] = (uint8_t)(q < 0 ? 0 : (q > 255 ? 255 : q));
        }
        return;
    }
    if (net->pre == CNN_PRE_CAFFE) {
        for (size_t k = 0; k < px; k++) {
            const float *q = input + 3 * k;
            out[3 * k] = q[2] - 103.939f;
            out[3 * k + 1] = q[1] - 116.779f;
            out[3 * k + 2] = q[0] - 123.68f;
        }
        return;
    }
    for (size_t k = 0; k < px * (size_t)in->c; k++) {
        float q = nearbyintf(input[k]);
        q = q < 0 ? 0 : (q > 255 ? 255 : q);
        out[k] = (q - (float)net->in_zp) * net->in_scale;
    }
}

static duet_status set_handle(cnn_plan *p, int m, void *h, duet_error *err) {
    if (m < 0 || !h) return DUET_OK;
    return duet_dnn_fail(dnnl_memory_set_data_handle(p->mems[m].mem, h), err, "cnn run: setting a buffer");
}

duet_status cnn_exec_run(duet_cnn *net, const float *input, size_t n, float *feats, float *logits, float *map,
                         duet_error *err) {
    cnn_plan *p = NULL;
    duet_status st = get_plan(net, n, &p, err);
    if (st) return st;
    if (net->pre != CNN_PRE_NONE) preprocess(net, input, n, p->in_pre);
    st = set_handle(p, p->in_mem, net->pre == CNN_PRE_NONE ? (void *)input : p->in_pre, err);
    if (!st) st = set_handle(p, p->feat_mem, feats, err);
    if (!st) st = set_handle(p, p->logit_mem, logits, err);
    if (!st) st = set_handle(p, p->map_mem, map, err);
    dnnl_stream_t stream = net->exec->dnn.stream;
    for (size_t i = 0; i < p->n_steps && !st; i++) {
        const cnn_step *s = &p->steps[i];
        if ((s->out == STEP_FEATS && !feats) || (s->out == STEP_LOGITS && !logits) || (s->out == STEP_MAP && !map))
            continue;
        dnnl_status_t ds = s->prim ? dnnl_primitive_execute(s->prim, stream, s->nargs, s->args)
                                   : dnnl_stream_wait(stream);
        if (!s->prim && ds == dnnl_success) ds = cnn_fix_run(net, p, &p->fixes[s->fix]);
        if (ds != dnnl_success) {
            const cnn_node *nd = &net->nodes[s->node >= 0 ? s->node : net->input];
            st = duet_dnn_fail(ds, err, "layer '%s' (%s -> %dx%dx%d, batch %zu, %s)", nd->name, s->what, nd->h, nd->w,
                               nd->c, n, cnn_int8(net) ? "int8" : duet_precision_name(duet_cnn_precision(net)));
        }
    }
    duet_status ws = duet_dnn_fail(dnnl_stream_wait(stream), err, "cnn run: waiting for the stream");
    return st ? st : ws;
}
