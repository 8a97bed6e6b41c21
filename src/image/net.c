/* net.c -- the CNN graph: nodes, shapes, consumers; the public run calls
 * (on the oneDNN executor, dnn_exec.c), softmax, crop averaging, precision. */
#include "image/image.h"
#include "core/dnn.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

int cnn_add_node(duet_cnn *net, cnn_op op, const char *name) {
    if (net->n_nodes == net->cap_nodes) {
        size_t cap = net->cap_nodes ? net->cap_nodes * 2 : 64;
        cnn_node *nn = realloc(net->nodes, cap * sizeof *nn);
        if (!nn) return -1;
        net->nodes = nn;
        net->cap_nodes = cap;
    }
    cnn_node *n = &net->nodes[net->n_nodes];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->in[0] = n->in[1] = -1;
    n->act_lo = -INFINITY;
    n->act_hi = INFINITY;
    n->pad_value = -INFINITY;
    n->name = duet_strdup(name ? name : "");
    if (!n->name) return -1;
    return (int)net->n_nodes++;
}

void cnn_same_pad(int in, int k, int s, int *out, int *lo, int *hi) {
    int o = (in + s - 1) / s;
    int tot = (o - 1) * s + k - in;
    if (tot < 0) tot = 0;
    *out = o;
    *lo = tot / 2;
    *hi = tot - tot / 2;
}

void duet_cnn_free(duet_cnn *net) {
    if (!net) return;
    for (size_t i = 0; i < net->n_nodes; i++) {
        free(net->nodes[i].name);
        free(net->nodes[i].wt);
        free(net->nodes[i].bias);
        free(net->nodes[i].qw);
        free(net->nodes[i].qbias);
        free(net->nodes[i].qw_scale);
    }
    free(net->nodes);
    cnn_exec_free(net);
    free(net);
}

duet_status cnn_finish(duet_cnn *net, const char *what, duet_error *err) {
    if (net->input < 0 || net->feature < 0 || net->output < 0)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: graph has no %s", what,
                         net->input < 0 ? "input" : net->feature < 0 ? "global average pool (feature)" : "output");
    const cnn_node *in = &net->nodes[net->input];
    if (in->h != DUET_IMAGE_SIDE || in->w != DUET_IMAGE_SIDE || in->c != 3)
        return duet_fail(err, DUET_ERR_SHAPE, "%s: input is %dx%dx%d, duet feeds 224x224x3", what, in->h, in->w, in->c);
    return cnn_link(net, what, err);
}

duet_status cnn_link(duet_cnn *net, const char *what, duet_error *err) {
    if (net->input < 0 || net->feature < 0 || net->output < 0)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: graph has no input, feature or output", what);
    for (size_t i = 0; i < net->n_nodes; i++) net->nodes[i].consumers = 0;
    for (size_t i = 0; i < net->n_nodes; i++)
        for (int k = 0; k < net->nodes[i].n_in; k++) {
            int j = net->nodes[i].in[k];
            if (j < 0 || (size_t)j >= i)
                return duet_fail(err, DUET_ERR_FORMAT, "%s: layer '%s' is not in topological order", what, net->nodes[i].name);
            net->nodes[j].consumers++;
        }
    net->nodes[net->feature].consumers++;
    net->nodes[net->output].consumers++;
    return DUET_OK;
}

size_t duet_cnn_feature_dim(const duet_cnn *net) {
    const cnn_node *f = &net->nodes[net->feature];
    return (size_t)f->h * f->w * f->c;
}
size_t duet_cnn_classes(const duet_cnn *net) {
    const cnn_node *f = &net->nodes[net->output];
    return (size_t)f->h * f->w * f->c;
}

double duet_cnn_flops(const duet_cnn *net) {
    double f = 0;
    for (size_t i = 0; i < net->n_nodes; i++) {
        const cnn_node *n = &net->nodes[i];
        const cnn_node *p = n->n_in ? &net->nodes[n->in[0]] : NULL;
        double out = (double)n->h * n->w * n->c;
        if (n->op == CNN_CONV) f += 2.0 * out * n->kh * n->kw * p->c;
        else if (n->op == CNN_DWCONV) f += 2.0 * out * n->kh * n->kw;
        else if (n->op == CNN_DENSE) f += 2.0 * out * (double)p->h * p->w * p->c;
    }
    return f;
}

int cnn_map_node(const duet_cnn *net) { return net->nodes[net->feature].in[0]; }

void duet_cnn_map_shape(const duet_cnn *net, int *h, int *w, int *c) {
    const cnn_node *m = &net->nodes[cnn_map_node(net)];
    *h = m->h;
    *w = m->w;
    *c = m->c;
}

duet_status duet_cnn_run(duet_cnn *net, const float *input, size_t n, float *feats, float *probs,
                         duet_error *err) {
    if (!net || !input || n == 0) return duet_fail(err, DUET_ERR_INVALID_ARG, "cnn run: no input");
    duet_status st = cnn_exec_run(net, input, n, feats, probs, NULL, err);
    if (st || !probs || !net->output_softmax) return st;
    size_t nc = duet_cnn_classes(net);
    for (size_t i = 0; i < n; i++) { /* softmax of the logits, in place */
        float *pr = probs + i * nc, mx = pr[0];
        for (size_t k = 1; k < nc; k++) if (pr[k] > mx) mx = pr[k];
        double s = 0;
        for (size_t k = 0; k < nc; k++) { pr[k] = expf(pr[k] - mx); s += pr[k]; }
        for (size_t k = 0; k < nc; k++) pr[k] = (float)(pr[k] / s);
    }
    return DUET_OK;
}

duet_status duet_cnn_run_map(duet_cnn *net, const float *input, size_t n, float *map, float *feats,
                             duet_error *err) {
    if (!net || !input || n == 0 || !map) return duet_fail(err, DUET_ERR_INVALID_ARG, "cnn run: no input");
    return cnn_exec_run(net, input, n, feats, NULL, map, err);
}

duet_status duet_cnn_images(duet_cnn *net, const duet_image *const *ims, size_t n, int crops,
                            size_t max_batch, float *feats, float *probs, duet_error *err) {
    if (crops != 1 && crops != 10)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "cnn images: %d crops (use 1 or 10)", crops);
    if (max_batch == 0) max_batch = 16;
    size_t per_img = (size_t)crops;
    size_t imgs_per = max_batch / per_img ? max_batch / per_img : 1;
    size_t plane = (size_t)DUET_IMAGE_SIDE * DUET_IMAGE_SIDE * 3;
    size_t fd = duet_cnn_feature_dim(net), nc = duet_cnn_classes(net);
    size_t rows = imgs_per * per_img;
    float *in = duet_alloc_array(rows * plane, sizeof(float));
    float *f = duet_alloc_array(rows * fd, sizeof(float));
    float *p = probs ? duet_alloc_array(rows * nc, sizeof(float)) : NULL;
    duet_status st = DUET_OK;
    if (!in || !f || (probs && !p)) { st = duet_fail(err, DUET_ERR_NOMEM, "cnn images: out of memory"); goto done; }
    for (size_t i0 = 0; i0 < n; i0 += imgs_per) {
        size_t m = n - i0 < imgs_per ? n - i0 : imgs_per;
        for (size_t k = 0; k < m; k++) {
            st = duet_image_crops(ims[i0 + k], crops, in + k * per_img * plane, err);
            if (st) goto done;
        }
        st = duet_cnn_run(net, in, m * per_img, f, p, err);
        if (st) goto done;
        for (size_t k = 0; k < m; k++) {
            float *fo = feats ? feats + (i0 + k) * fd : NULL;
            float *po = probs ? probs + (i0 + k) * nc : NULL;
            for (size_t j = 0; j < fd && fo; j++) {
                double s = 0;
                for (size_t c = 0; c < per_img; c++) s += f[(k * per_img + c) * fd + j];
                fo[j] = (float)(s / (double)per_img);
            }
            for (size_t j = 0; j < nc && po; j++) {
                double s = 0;
                for (size_t c = 0; c < per_img; c++) s += p[(k * per_img + c) * nc + j];
                po[j] = (float)(s / (double)per_img);
            }
        }
    }
done:
    free(in); free(f); free(p);
    return st;
}

/* A new precision drops the plans and the reordered weights; the next run
 * prepares them again. */
duet_status duet_cnn_set_precision(duet_cnn *net, duet_precision p, duet_error *err) {
    duet_precision r;
    duet_status st = duet_precision_resolve(p, &r, err);
    if (st) return st;
    if (r != duet_cnn_precision(net)) cnn_exec_free(net); /* also when int8 comes or goes */
    net->prec = r;
    return DUET_OK;
}

duet_precision duet_cnn_precision(const duet_cnn *net) {
    return net->prec ? net->prec : DUET_PRECISION_F32;
}

/* int8 dot-product instructions (VNNI) in the instruction set oneDNN uses. */
static int cpu_has_vnni(void) {
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return isa == dnnl_cpu_isa_avx512_core_vnni || isa == dnnl_cpu_isa_avx512_core_bf16 ||
           isa == dnnl_cpu_isa_avx512_core_amx || isa == dnnl_cpu_isa_avx2_vnni;
}

void cnn_set_int8(duet_cnn *net, int mode) {
    int was = cnn_int8(net);
    net->int8_mode = mode;
    if (cnn_int8(net) != was) cnn_exec_free(net);
}

int cnn_int8(const duet_cnn *net) {
    if (!net->quant || net->pre != CNN_PRE_UINT8 || net->int8_mode == CNN_INT8_OFF) return 0;
    return net->int8_mode == CNN_INT8_ON || duet_cnn_int8_at(duet_cnn_precision(net));
}

int duet_cnn_int8_at(duet_precision p) { return p == DUET_PRECISION_BF16 && cpu_has_vnni(); }

int duet_cnn_int8(const duet_cnn *net) { return net && cnn_int8(net); }

void cnn_qparams(const duet_cnn *net, int j, float *scale, int *zp) {
    if (j == net->input) { *scale = net->in_scale; *zp = net->in_zp; }
    else { *scale = net->nodes[j].q_scale; *zp = net->nodes[j].q_zp; }
}
