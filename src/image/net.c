/* net.c -- the CNN graph executor: nodes run in order over a batch, each
 * output in a pooled buffer released after its last consumer. */
#include "image/image.h"
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
    }
    free(net->nodes);
    for (size_t i = 0; i < net->n_buf; i++) free(net->buf[i]);
    free(net->buf);
    free(net->buf_cap);
    free(net->col);
    free(net);
}

duet_status cnn_finish(duet_cnn *net, const char *what, duet_error *err) {
    if (net->input < 0 || net->feature < 0 || net->output < 0)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: graph has no %s", what,
                         net->input < 0 ? "input" : net->feature < 0 ? "global average pool (feature)" : "output");
    const cnn_node *in = &net->nodes[net->input];
    if (in->h != DUET_IMAGE_SIDE || in->w != DUET_IMAGE_SIDE || in->c != 3)
        return duet_fail(err, DUET_ERR_SHAPE, "%s: input is %dx%dx%d, duet feeds 224x224x3", what, in->h, in->w, in->c);
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

static size_t node_floats(const cnn_node *n) { return (size_t)n->h * n->w * n->c; }

/* A pooled buffer of at least count floats, not in use. */
static int get_buf(duet_cnn *net, int *busy, size_t count) {
    int best = -1;
    for (size_t i = 0; i < net->n_buf; i++)
        if (!busy[i] && net->buf_cap[i] >= count && (best < 0 || net->buf_cap[i] < net->buf_cap[best])) best = (int)i;
    if (best >= 0) return best;
    for (size_t i = 0; i < net->n_buf; i++)
        if (!busy[i]) {
            float *b = realloc(net->buf[i], count * sizeof(float));
            if (!b) return -1;
            net->buf[i] = b;
            net->buf_cap[i] = count;
            return (int)i;
        }
    return -1; /* n_buf is sized so that this cannot happen */
}

/* The node whose output the feature pools: the last feature map. */
static int map_node(const duet_cnn *net) { return net->nodes[net->feature].in[0]; }

void duet_cnn_map_shape(const duet_cnn *net, int *h, int *w, int *c) {
    const cnn_node *m = &net->nodes[map_node(net)];
    *h = m->h;
    *w = m->w;
    *c = m->c;
}

static duet_status cnn_run(duet_cnn *net, const float *input, size_t n, float *feats, float *probs, float *map,
                           duet_error *err);

duet_status duet_cnn_run(duet_cnn *net, const float *input, size_t n, float *feats, float *probs,
                         duet_error *err) {
    return cnn_run(net, input, n, feats, probs, NULL, err);
}

duet_status duet_cnn_run_map(duet_cnn *net, const float *input, size_t n, float *map, float *feats,
                             duet_error *err) {
    return cnn_run(net, input, n, feats, NULL, map, err);
}

static duet_status cnn_run(duet_cnn *net, const float *input, size_t n, float *feats, float *probs, float *map,
                           duet_error *err) {
    if (!net || !input || n == 0) return duet_fail(err, DUET_ERR_INVALID_ARG, "cnn run: no input");
    size_t N = net->n_nodes;
    if (net->n_buf < N) {
        float **b = realloc(net->buf, N * sizeof *b);
        if (!b) return duet_fail(err, DUET_ERR_NOMEM, "cnn run: out of memory");
        net->buf = b;
        size_t *c = realloc(net->buf_cap, N * sizeof *c);
        if (!c) return duet_fail(err, DUET_ERR_NOMEM, "cnn run: out of memory");
        net->buf_cap = c;
        for (size_t i = net->n_buf; i < N; i++) { net->buf[i] = NULL; net->buf_cap[i] = 0; }
        net->n_buf = N;
    }
    int *slot = malloc(N * sizeof(int)), *left = malloc(N * sizeof(int)), *busy = calloc(N, sizeof(int));
    duet_status st = DUET_OK;
    if (!slot || !left || !busy) { st = duet_fail(err, DUET_ERR_NOMEM, "cnn run: out of memory"); goto done; }
    for (size_t i = 0; i < N; i++) { left[i] = net->nodes[i].consumers; slot[i] = -1; }
    for (size_t i = 0; i < N; i++) {
        cnn_node *nd = &net->nodes[i];
        size_t cnt;
        if (!duet_mul_size(node_floats(nd), n, &cnt)) { st = duet_fail(err, DUET_ERR_NOMEM, "cnn run: batch too large"); goto done; }
        int s = get_buf(net, busy, cnt);
        if (s < 0) { st = duet_fail(err, DUET_ERR_NOMEM, "cnn run: out of memory (layer %s)", nd->name); goto done; }
        busy[s] = 1;
        slot[i] = s;
        float *out = net->buf[s];
        const cnn_node *p = nd->n_in ? &net->nodes[nd->in[0]] : NULL;
        const float *x = p ? net->buf[slot[nd->in[0]]] : NULL;
        switch (nd->op) {
        case CNN_INPUT: {
            size_t px = (size_t)nd->h * nd->w * n;
            if (net->pre == CNN_PRE_CAFFE) {
                for (size_t k = 0; k < px; k++) {
                    const float *q = input + 3 * k;
                    out[3 * k] = q[2] - 103.939f;
                    out[3 * k + 1] = q[1] - 116.779f;
                    out[3 * k + 2] = q[0] - 123.68f;
                }
            } else {
                for (size_t k = 0; k < 3 * px; k++) {
                    float q = nearbyintf(input[k]);
                    q = q < 0 ? 0 : (q > 255 ? 255 : q);
                    out[k] = (q - (float)net->in_zp) * net->in_scale;
                }
            }
            break;
        }
        case CNN_CONV: case CNN_DWCONV: {
            cnn_conv_args a = {n, p->h, p->w, p->c, nd->h, nd->w, nd->c, nd->kh, nd->kw, nd->sh, nd->sw,
                               nd->pt, nd->pl, nd->wt, nd->bias, nd->act_lo, nd->act_hi};
            if (nd->op == CNN_DWCONV) { cnn_dwconv2d(&a, x, out); break; }
            size_t need = cnn_conv_col_floats(&a);
            if (need > net->col_cap) {
                float *c = realloc(net->col, need * sizeof(float));
                if (!c) { st = duet_fail(err, DUET_ERR_NOMEM, "cnn run: out of memory (layer %s)", nd->name); goto done; }
                net->col = c;
                net->col_cap = need;
            }
            cnn_conv2d(&a, x, out, net->col);
            break;
        }
        case CNN_MAXPOOL: case CNN_AVGPOOL:
            cnn_pool2d(nd->op == CNN_MAXPOOL, n, p->h, p->w, p->c, nd->h, nd->w, nd->kh, nd->kw, nd->sh,
                       nd->sw, nd->pt, nd->pl, nd->pad_value, x, out);
            break;
        case CNN_GAP: cnn_gap(n, p->h, p->w, p->c, x, out); break;
        case CNN_ADD:
            cnn_add(cnt, x, net->buf[slot[nd->in[1]]], out, nd->act_lo, nd->act_hi);
            break;
        case CNN_PAD: cnn_pad(n, p->h, p->w, p->c, nd->pt, nd->pb, nd->pl, nd->pr, x, out); break;
        case CNN_DENSE:
            cnn_dense(n, p->h * p->w * p->c, nd->c, nd->wt, nd->bias, x, out);
            cnn_bias_act(n, nd->c, out, NULL, nd->act_lo, nd->act_hi, 0, 1.0f, 0);
            break;
        case CNN_IDENTITY: memcpy(out, x, cnt * sizeof(float)); break;
        }
        if (nd->fq) cnn_bias_act(cnt / (size_t)nd->c, nd->c, out, NULL, -INFINITY, INFINITY, 1, nd->q_scale, nd->q_zp);
        if (map && (int)i == map_node(net)) memcpy(map, out, cnt * sizeof(float));
        for (int k = 0; k < nd->n_in; k++) {
            int j = nd->in[k];
            if (--left[j] == 0) busy[slot[j]] = 0;
        }
        if (left[i] == 0) busy[s] = 0;
    }
    {
        size_t fd = duet_cnn_feature_dim(net), nc = duet_cnn_classes(net);
        if (feats) memcpy(feats, net->buf[slot[net->feature]], n * fd * sizeof(float));
        if (probs) {
            const float *lo = net->buf[slot[net->output]];
            for (size_t i = 0; i < n; i++) {
                const float *l = lo + i * nc;
                float *pr = probs + i * nc;
                if (!net->output_softmax) { memcpy(pr, l, nc * sizeof(float)); continue; }
                float mx = l[0];
                for (size_t k = 1; k < nc; k++) if (l[k] > mx) mx = l[k];
                double s = 0;
                for (size_t k = 0; k < nc; k++) { pr[k] = expf(l[k] - mx); s += pr[k]; }
                for (size_t k = 0; k < nc; k++) pr[k] = (float)(pr[k] / s);
            }
        }
    }
done:
    free(slot); free(left); free(busy);
    return st;
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

duet_status duet_cnn_set_precision(duet_cnn *net, duet_precision p, duet_error *err) {
    duet_precision r; duet_status st = duet_precision_resolve(p, &r, err); if (!st) net->prec = r; return st; }
duet_precision duet_cnn_precision(const duet_cnn *net) { return net->prec ? net->prec : DUET_PRECISION_F32; }
