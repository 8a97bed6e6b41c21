/* tfjs.c -- TensorFlow.js layers-model loader: model.json (Keras topology
 * + weightsManifest) and its shards, concatenated in manifest order. The
 * graph follows the topology; BatchNormalization is folded into the
 * Conv2D before it, ReLU activations into the layer before them, and
 * ZeroPadding2D into the padding of the Conv2D / pooling after it. */
#define _POSIX_C_SOURCE 200809L
#include "image/image.h"
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct wentry { const char *name; size_t off, count; int shape[4], rank; } wentry;

typedef struct layer {
    const char *name, *cls;
    json_t *cfg, *inbound;
    int node;            /* node holding this layer's output, -1: none yet */
    int is_pad;          /* ZeroPadding2D not yet materialized            */
    int src;             /* is_pad: node it pads                          */
    int pt, pb, pl, pr;
    int pad_node;        /* materialized PAD node, -1                     */
    int consumers;
    int h, w, c;
} layer;

typedef struct ctx {
    duet_cnn *net;
    const char *dir;
    wentry *w; size_t nw;
    const unsigned char *wbuf; size_t wlen;
    layer *L; size_t nl;
    duet_error *err;
} ctx;

static int find_layer(const ctx *c, const char *name) {
    for (size_t i = 0; i < c->nl; i++) if (strcmp(c->L[i].name, name) == 0) return (int)i;
    return -1;
}

/* The weight "LAYER/SUFFIX" with exactly the given shape. */
static const float *weight(ctx *c, const layer *l, const char *suffix, int rank, const int *shape,
                           duet_status *st) {
    char key[512];
    snprintf(key, sizeof key, "%s/%s", l->name, suffix);
    for (size_t i = 0; i < c->nw; i++) {
        if (strcmp(c->w[i].name, key) != 0) continue;
        const wentry *e = &c->w[i];
        int ok = e->rank == rank;
        for (int k = 0; ok && k < rank; k++) ok = e->shape[k] == shape[k];
        if (!ok) {
            char want[96] = "", got[96] = "";
            for (int k = 0; k < rank; k++) snprintf(want + strlen(want), sizeof want - strlen(want), "%s%d", k ? "," : "", shape[k]);
            for (int k = 0; k < e->rank; k++) snprintf(got + strlen(got), sizeof got - strlen(got), "%s%d", k ? "," : "", e->shape[k]);
            *st = duet_fail(c->err, DUET_ERR_SHAPE, "%s: layer '%s': weight '%s' has shape [%s], the layer needs [%s]",
                            c->dir, l->name, key, got, want);
            return NULL;
        }
        return (const float *)(const void *)(c->wbuf + e->off);
    }
    *st = duet_fail(c->err, DUET_ERR_FORMAT, "%s: layer '%s': weight '%s' is not in weightsManifest", c->dir, l->name, key);
    return NULL;
}

static int get_int(json_t *o, const char *k, int def) {
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (int)json_integer_value(v) : def;
}

/* A pair field (kernel_size, strides, pool_size): [a, b] or a. */
static int get_pair(json_t *cfg, const char *k, int *a, int *b) {
    json_t *v = json_object_get(cfg, k);
    if (json_is_integer(v)) { *a = *b = (int)json_integer_value(v); }
    else if (json_is_array(v) && json_array_size(v) == 2 && json_is_integer(json_array_get(v, 0)) &&
             json_is_integer(json_array_get(v, 1))) {
        *a = (int)json_integer_value(json_array_get(v, 0));
        *b = (int)json_integer_value(json_array_get(v, 1));
    } else return -1;
    return (*a >= 1 && *a <= 4096 && *b >= 1 && *b <= 4096) ? 0 : -1;
}

/* The node index of layer input k (materializing a pending pad). */
static duet_status input_of(ctx *c, layer *l, size_t k, int *li, duet_error *err) {
    json_t *nodes = l->inbound;
    json_t *n0 = json_array_get(nodes, 0);
    json_t *ref = json_array_get(n0, k);
    const char *nm = json_string_value(json_array_get(ref, 0));
    if (!nm) return duet_fail(err, DUET_ERR_FORMAT, "%s: layer '%s': inbound_nodes[0][%zu] malformed", c->dir, l->name, k);
    int j = find_layer(c, nm);
    if (j < 0 || (c->L[j].node < 0 && !c->L[j].is_pad))
        return duet_fail(err, DUET_ERR_FORMAT, "%s: layer '%s': input '%s' is unknown or comes later", c->dir, l->name, nm);
    *li = j;
    return DUET_OK;
}

static duet_status materialize_pad(ctx *c, layer *p) {
    if (p->pad_node >= 0) return DUET_OK;
    int id = cnn_add_node(c->net, CNN_PAD, p->name);
    if (id < 0) return duet_fail(c->err, DUET_ERR_NOMEM, "out of memory");
    cnn_node *nd = &c->net->nodes[id];
    nd->in[0] = p->src; nd->n_in = 1;
    nd->pt = p->pt; nd->pb = p->pb; nd->pl = p->pl; nd->pr = p->pr;
    nd->h = p->h; nd->w = p->w; nd->c = p->c;
    p->pad_node = id;
    return DUET_OK;
}

static duet_status plain_input(ctx *c, layer *l, size_t k, int *node, int *li) {
    duet_status st = input_of(c, l, k, li, c->err);
    if (st) return st;
    layer *p = &c->L[*li];
    if (p->is_pad) { st = materialize_pad(c, p); if (st) return st; *node = p->pad_node; }
    else *node = p->node;
    return DUET_OK;
}

static int parse_act(const char *a, float *lo, float *hi) {
    if (!a || strcmp(a, "linear") == 0) return 0;
    if (strcmp(a, "relu") == 0) { *lo = 0; return 0; }
    return -1;
}

static duet_status build_layer(ctx *c, layer *l) {
    duet_cnn *net = c->net;
    json_t *cfg = l->cfg;
    duet_status st = DUET_OK;
    const char *cls = l->cls;
    if (strcmp(cls, "InputLayer") == 0) {
        json_t *s = json_object_get(cfg, "batch_input_shape");
        if (!json_is_array(s) || json_array_size(s) != 4)
            return duet_fail(c->err, DUET_ERR_FORMAT, "%s: layer '%s': batch_input_shape must be [null, H, W, C]", c->dir, l->name);
        int hw[3];
        for (int k = 0; k < 3; k++) {
            json_t *v = json_array_get(s, (size_t)k + 1);
            hw[k] = json_is_integer(v) ? (int)json_integer_value(v) : (k < 2 ? DUET_IMAGE_SIDE : -1);
        }
        if (hw[0] != DUET_IMAGE_SIDE || hw[1] != DUET_IMAGE_SIDE || hw[2] != 3)
            return duet_fail(c->err, DUET_ERR_SHAPE, "%s: layer '%s': input %dx%dx%d, duet feeds 224x224x3", c->dir, l->name, hw[0], hw[1], hw[2]);
        if (net->input >= 0) return duet_fail(c->err, DUET_ERR_UNSUPPORTED, "%s: more than one InputLayer", c->dir);
        int id = cnn_add_node(net, CNN_INPUT, l->name);
        if (id < 0) return duet_fail(c->err, DUET_ERR_NOMEM, "out of memory");
        net->nodes[id].h = hw[0]; net->nodes[id].w = hw[1]; net->nodes[id].c = 3;
        net->input = id;
        l->node = id; l->h = hw[0]; l->w = hw[1]; l->c = 3;
        return DUET_OK;
    }
    json_t *n0 = json_array_get(l->inbound, 0);
    if (json_array_size(l->inbound) != 1 || !json_is_array(n0) || json_array_size(n0) < 1)
        return duet_fail(c->err, DUET_ERR_UNSUPPORTED, "%s: layer '%s' (%s): needs exactly one inbound node", c->dir, l->name, cls);
    size_t nin = json_array_size(n0);
    if (strcmp(cls, "Add") != 0 && nin != 1)
        return duet_fail(c->err, DUET_ERR_FORMAT, "%s: layer '%s' (%s): %zu inputs, want 1", c->dir, l->name, cls, nin);
    int li;
    if (strcmp(cls, "ZeroPadding2D") == 0) {
        int node;
        if ((st = plain_input(c, l, 0, &node, &li))) return st;
        json_t *p = json_object_get(cfg, "padding");
        int v[4];
        if (json_is_integer(p)) v[0] = v[1] = v[2] = v[3] = (int)json_integer_value(p);
        else if (json_is_array(p) && json_array_size(p) == 2 && json_is_integer(json_array_get(p, 0))) {
            v[0] = v[1] = (int)json_integer_value(json_array_get(p, 0));
            v[2] = v[3] = (int)json_integer_value(json_array_get(p, 1));
        } else if (json_is_array(p) && json_array_size(p) == 2) {
            for (int k = 0; k < 4; k++) {
                json_t *q = json_array_get(json_array_get(p, (size_t)k / 2), (size_t)k % 2);
                if (!json_is_integer(q)) return duet_fail(c->err, DUET_ERR_FORMAT, "%s: layer '%s': bad padding", c->dir, l->name);
                v[k] = (int)json_integer_value(q);
            }
        } else return duet_fail(c->err, DUET_ERR_FORMAT, "%s: layer '%s': field 'padding' missing or malformed", c->dir, l->name);
        for (int k = 0; k < 4; k++)
            if (v[k] < 0 || v[k] > 1024) return duet_fail(c->err, DUET_ERR_FORMAT, "%s: layer '%s': padding %d out of range", c->dir, l->name, v[k]);
        l->is_pad = 1; l->src = node; l->pad_node = -1;
        l->pt = v[0]; l->pb = v[1]; l->pl = v[2]; l->pr = v[3];
        l->h = c->L[li].h + v[0] + v[1]; l->w = c->L[li].w + v[2] + v[3]; l->c = c->L[li].c;
        return DUET_OK;
    }
    if (strcmp(cls, "Conv2D") == 0 || strcmp(cls, "MaxPooling2D") == 0 || strcmp(cls, "AveragePooling2D") == 0) {
        int conv = cls[0] == 'C';
        if ((st = input_of(c, l, 0, &li, c->err))) return st;
        layer *p = &c->L[li];
        int src = p->node, ih = p->h, iw = p->w, cin = p->c, pt = 0, pb = 0, pl = 0, pr = 0, fused = 0;
        if (p->is_pad && p->consumers == 1) {
            src = p->src; pt = p->pt; pb = p->pb; pl = p->pl; pr = p->pr; fused = 1;
            ih = c->net->nodes[src].h; iw = c->net->nodes[src].w;
        } else if (p->is_pad) {
            if ((st = materialize_pad(c, p))) return st;
            src = p->pad_node;
        }
        int kh, kw, sh, sw;
        if (get_pair(cfg, conv ? "kernel_size" : "pool_size", &kh, &kw))
            return duet_fail(c->err, DUET_ERR_FORMAT, "%s: layer '%s': field '%s' missing or malformed", c->dir, l->name, conv ? "kernel_size" : "pool_size");
        if (json_is_null(json_object_get(cfg, "strides")) && !conv) { sh = kh; sw = kw; }
        else if (get_pair(cfg, "strides", &sh, &sw))
            return duet_fail(c->err, DUET_ERR_FORMAT, "%s: layer '%s': field 'strides' missing or malformed", c->dir, l->name);
        const char *pad = json_string_value(json_object_get(cfg, "padding"));
        const char *df = json_string_value(json_object_get(cfg, "data_format"));
        if (df && strcmp(df, "channels_last") != 0)
            return duet_fail(c->err, DUET_ERR_UNSUPPORTED, "%s: layer '%s': data_format %s", c->dir, l->name, df);
        int oh, ow;
        ih += pt + pb; iw += pl + pr;
        if (pad && strcmp(pad, "same") == 0) {
            int a, b, d, e;
            cnn_same_pad(ih, kh, sh, &oh, &a, &b);
            cnn_same_pad(iw, kw, sw, &ow, &d, &e);
            pt += a; pb += b; pl += d; pr += e;
        } else if (pad && strcmp(pad, "valid") == 0) {
            if (ih < kh || iw < kw)
                return duet_fail(c->err, DUET_ERR_SHAPE, "%s: layer '%s': %dx%d input smaller than the %dx%d window", c->dir, l->name, ih, iw, kh, kw);
            oh = (ih - kh) / sh + 1; ow = (iw - kw) / sw + 1;
        } else return duet_fail(c->err, DUET_ERR_FORMAT, "%s: layer '%s': field 'padding' missing or not valid/same", c->dir, l->name);
        int cout = cin;
        if (conv) {
            cout = get_int(cfg, "filters", -1);
            if (cout < 1 || cout > 65536) return duet_fail(c->err, DUET_ERR_FORMAT, "%s: layer '%s': field 'filters' missing or out of range", c->dir, l->name);
            int d1 = 1, d2 = 1;
            if (json_object_get(cfg, "dilation_rate") && (get_pair(cfg, "dilation_rate", &d1, &d2) || d1 != 1 || d2 != 1))
                return duet_fail(c->err, DUET_ERR_UNSUPPORTED, "%s: layer '%s': dilation is not supported", c->dir, l->name);
            if (get_int(cfg, "groups", 1) != 1)
                return duet_fail(c->err, DUET_ERR_UNSUPPORTED, "%s: layer '%s': grouped convolution", c->dir, l->name);
        }
        int id = cnn_add_node(net, conv ? CNN_CONV : cls[0] == 'M' ? CNN_MAXPOOL : CNN_AVGPOOL, l->name);
        if (id < 0) return duet_fail(c->err, DUET_ERR_NOMEM, "out of memory");
        cnn_node *nd = &net->nodes[id];
        nd->in[0] = src; nd->n_in = 1;
        nd->h = oh; nd->w = ow; nd->c = cout;
        nd->kh = kh; nd->kw = kw; nd->sh = sh; nd->sw = sw;
        nd->pt = pt; nd->pb = pb; nd->pl = pl; nd->pr = pr;
        nd->pad_value = fused ? 0.0f : -INFINITY;
        if (fused && !conv && cls[0] == 'A')
            return duet_fail(c->err, DUET_ERR_UNSUPPORTED, "%s: layer '%s': ZeroPadding2D before AveragePooling2D", c->dir, l->name);
        if (conv) {
            if (parse_act(json_string_value(json_object_get(cfg, "activation")), &nd->act_lo, &nd->act_hi))
                return duet_fail(c->err, DUET_ERR_UNSUPPORTED, "%s: layer '%s': activation '%s' not supported", c->dir, l->name,
                                 json_string_value(json_object_get(cfg, "activation")));
            size_t K = (size_t)kh * kw * cin;
            int shape[4] = {kh, kw, cin, cout};
            const float *k = weight(c, l, "kernel", 4, shape, &st);
            if (!k) return st;
            nd->wt = duet_alloc_array(K * (size_t)cout, sizeof(float));
            nd->bias = duet_calloc_array((size_t)cout, sizeof(float));
            if (!nd->wt || !nd->bias) return duet_fail(c->err, DUET_ERR_NOMEM, "out of memory");
            memcpy(nd->wt, k, K * (size_t)cout * sizeof(float));
            if (!json_is_false(json_object_get(cfg, "use_bias"))) {
                const float *b = weight(c, l, "bias", 1, &cout, &st);
                if (!b) return st;
                memcpy(nd->bias, b, (size_t)cout * sizeof(float));
            }
        }
        l->node = id; l->h = oh; l->w = ow; l->c = cout;
        return DUET_OK;
    }
    int node;
    if ((st = plain_input(c, l, 0, &node, &li))) return st;
    layer *p = &c->L[li];
    if (strcmp(cls, "BatchNormalization") == 0) {
        cnn_node *cv = &net->nodes[node];
        if (cv->op != CNN_CONV || p->consumers != 1 || !isinf(cv->act_lo) || p->is_pad)
            return duet_fail(c->err, DUET_ERR_UNSUPPORTED, "%s: layer '%s': BatchNormalization must follow a linear Conv2D used only by it", c->dir, l->name);
        json_t *ax = json_object_get(cfg, "axis");
        int axis = json_is_array(ax) ? (json_array_size(ax) == 1 ? (int)json_integer_value(json_array_get(ax, 0)) : 0) : get_int(cfg, "axis", -1);
        if (axis != 3 && axis != -1) return duet_fail(c->err, DUET_ERR_UNSUPPORTED, "%s: layer '%s': axis must be the channels", c->dir, l->name);
        json_t *epsj = json_object_get(cfg, "epsilon");
        if (!json_is_number(epsj)) return duet_fail(c->err, DUET_ERR_FORMAT, "%s: layer '%s': field 'epsilon' missing", c->dir, l->name);
        double eps = json_number_value(epsj);
        int C = cv->c;
        const float *mean = weight(c, l, "moving_mean", 1, &C, &st);
        if (!mean) return st;
        const float *var = weight(c, l, "moving_variance", 1, &C, &st);
        if (!var) return st;
        const float *gamma = NULL, *beta = NULL;
        if (!json_is_false(json_object_get(cfg, "scale")) && !(gamma = weight(c, l, "gamma", 1, &C, &st))) return st;
        if (!json_is_false(json_object_get(cfg, "center")) && !(beta = weight(c, l, "beta", 1, &C, &st))) return st;
        size_t K = (size_t)cv->kh * cv->kw * p->c;
        (void)K;
        size_t rows = (size_t)cv->kh * cv->kw * (size_t)net->nodes[cv->in[0]].c;
        for (int j = 0; j < C; j++) {
            double s = (gamma ? gamma[j] : 1.0) / sqrt((double)var[j] + eps);
            for (size_t r = 0; r < rows; r++) cv->wt[r * (size_t)C + j] = (float)(cv->wt[r * (size_t)C + j] * s);
            cv->bias[j] = (float)(((double)cv->bias[j] - mean[j]) * s + (beta ? beta[j] : 0.0));
        }
        l->node = node; l->h = p->h; l->w = p->w; l->c = p->c;
        return DUET_OK;
    }
    if (strcmp(cls, "Activation") == 0 || strcmp(cls, "ReLU") == 0) {
        const char *a = cls[0] == 'R' ? "relu" : json_string_value(json_object_get(cfg, "activation"));
        if (cls[0] == 'R' && !json_is_null(json_object_get(cfg, "max_value")) && json_object_get(cfg, "max_value"))
            return duet_fail(c->err, DUET_ERR_UNSUPPORTED, "%s: layer '%s': ReLU max_value", c->dir, l->name);
        l->h = p->h; l->w = p->w; l->c = p->c;
        if (a && strcmp(a, "softmax") == 0) { l->node = node; l->is_pad = 0; net->output_softmax = 1; return DUET_OK; }
        float lo = -INFINITY, hi = INFINITY;
        if (parse_act(a, &lo, &hi))
            return duet_fail(c->err, DUET_ERR_UNSUPPORTED, "%s: layer '%s': activation '%s' not supported", c->dir, l->name, a ? a : "(missing)");
        cnn_node *nd = &net->nodes[node];
        if ((nd->op == CNN_CONV || nd->op == CNN_ADD || nd->op == CNN_DENSE) && p->consumers == 1 && !p->is_pad) {
            if (lo > nd->act_lo) nd->act_lo = lo;
            l->node = node;
            return DUET_OK;
        }
        int id = cnn_add_node(net, CNN_IDENTITY, l->name);
        if (id < 0) return duet_fail(c->err, DUET_ERR_NOMEM, "out of memory");
        cnn_node *q = &net->nodes[id];
        q->in[0] = node; q->n_in = 1; q->h = p->h; q->w = p->w; q->c = p->c; q->act_lo = lo;
        l->node = id;
        return DUET_OK;
    }
    if (strcmp(cls, "Add") == 0) {
        if (nin != 2) return duet_fail(c->err, DUET_ERR_UNSUPPORTED, "%s: layer '%s': Add of %zu inputs (2 supported)", c->dir, l->name, nin);
        int node2, li2;
        if ((st = plain_input(c, l, 1, &node2, &li2))) return st;
        layer *q = &c->L[li2];
        if (p->h != q->h || p->w != q->w || p->c != q->c)
            return duet_fail(c->err, DUET_ERR_SHAPE, "%s: layer '%s': adds %dx%dx%d to %dx%dx%d", c->dir, l->name, p->h, p->w, p->c, q->h, q->w, q->c);
        int id = cnn_add_node(net, CNN_ADD, l->name);
        if (id < 0) return duet_fail(c->err, DUET_ERR_NOMEM, "out of memory");
        cnn_node *nd = &net->nodes[id];
        nd->in[0] = node; nd->in[1] = node2; nd->n_in = 2; nd->h = p->h; nd->w = p->w; nd->c = p->c;
        l->node = id; l->h = p->h; l->w = p->w; l->c = p->c;
        return DUET_OK;
    }
    if (strcmp(cls, "GlobalAveragePooling2D") == 0) {
        int id = cnn_add_node(net, CNN_GAP, l->name);
        if (id < 0) return duet_fail(c->err, DUET_ERR_NOMEM, "out of memory");
        cnn_node *nd = &net->nodes[id];
        nd->in[0] = node; nd->n_in = 1; nd->h = 1; nd->w = 1; nd->c = p->c;
        net->feature = id;
        l->node = id; l->h = 1; l->w = 1; l->c = p->c;
        return DUET_OK;
    }
    if (strcmp(cls, "Dense") == 0) {
        int units = get_int(cfg, "units", -1);
        if (units < 1 || units > 1000000) return duet_fail(c->err, DUET_ERR_FORMAT, "%s: layer '%s': field 'units' missing or out of range", c->dir, l->name);
        if (p->h != 1 || p->w != 1) return duet_fail(c->err, DUET_ERR_SHAPE, "%s: layer '%s': Dense on a %dx%dx%d input (flatten first)", c->dir, l->name, p->h, p->w, p->c);
        int id = cnn_add_node(net, CNN_DENSE, l->name);
        if (id < 0) return duet_fail(c->err, DUET_ERR_NOMEM, "out of memory");
        cnn_node *nd = &net->nodes[id];
        nd->in[0] = node; nd->n_in = 1; nd->h = 1; nd->w = 1; nd->c = units;
        const char *a = json_string_value(json_object_get(cfg, "activation"));
        if (a && strcmp(a, "softmax") == 0) net->output_softmax = 1;
        else if (parse_act(a, &nd->act_lo, &nd->act_hi))
            return duet_fail(c->err, DUET_ERR_UNSUPPORTED, "%s: layer '%s': activation '%s' not supported", c->dir, l->name, a);
        int shape[2] = {p->c, units};
        const float *k = weight(c, l, "kernel", 2, shape, &st);
        if (!k) return st;
        nd->wt = duet_alloc_array((size_t)p->c * (size_t)units, sizeof(float));
        nd->bias = duet_calloc_array((size_t)units, sizeof(float));
        if (!nd->wt || !nd->bias) return duet_fail(c->err, DUET_ERR_NOMEM, "out of memory");
        memcpy(nd->wt, k, (size_t)p->c * (size_t)units * sizeof(float));
        if (!json_is_false(json_object_get(cfg, "use_bias"))) {
            const float *b = weight(c, l, "bias", 1, &units, &st);
            if (!b) return st;
            memcpy(nd->bias, b, (size_t)units * sizeof(float));
        }
        l->node = id; l->h = 1; l->w = 1; l->c = units;
        return DUET_OK;
    }
    return duet_fail(c->err, DUET_ERR_UNSUPPORTED, "%s: layer '%s': unknown layer type '%s'", c->dir, l->name, cls);
}

/* Parses the manifest of root into c->w (offsets into the concatenation of
 * all shards) and returns the bytes needed. */
static duet_status read_manifest(json_t *root, ctx *c, size_t *need, size_t *n_paths) {
    json_t *wm = json_object_get(root, "weightsManifest");
    if (!json_is_array(wm)) return duet_fail(c->err, DUET_ERR_FORMAT, "%s: field 'weightsManifest' missing", c->dir);
    size_t total = 0, np = 0, nw = 0;
    for (size_t g = 0; g < json_array_size(wm); g++) {
        json_t *grp = json_array_get(wm, g), *ws = json_object_get(grp, "weights"), *ps = json_object_get(grp, "paths");
        if (!json_is_array(ws) || !json_is_array(ps))
            return duet_fail(c->err, DUET_ERR_FORMAT, "%s: weightsManifest[%zu]: field 'paths' or 'weights' missing", c->dir, g);
        nw += json_array_size(ws);
        np += json_array_size(ps);
    }
    c->w = duet_calloc_array(nw, sizeof(wentry));
    if (!c->w) return duet_fail(c->err, DUET_ERR_NOMEM, "out of memory");
    for (size_t g = 0; g < json_array_size(wm); g++) {
        json_t *ws = json_object_get(json_array_get(wm, g), "weights");
        for (size_t i = 0; i < json_array_size(ws); i++) {
            json_t *e = json_array_get(ws, i);
            const char *nm = json_string_value(json_object_get(e, "name"));
            const char *dt = json_string_value(json_object_get(e, "dtype"));
            json_t *sh = json_object_get(e, "shape");
            if (!nm || !json_is_array(sh) || json_array_size(sh) > 4)
                return duet_fail(c->err, DUET_ERR_FORMAT, "%s: weightsManifest[%zu].weights[%zu]: field 'name' or 'shape' missing or malformed", c->dir, g, i);
            if (!dt || strcmp(dt, "float32") != 0 || json_object_get(e, "quantization"))
                return duet_fail(c->err, DUET_ERR_UNSUPPORTED, "%s: weight '%s': only unquantized float32 is supported", c->dir, nm);
            wentry *w = &c->w[c->nw++];
            w->name = nm;
            w->rank = (int)json_array_size(sh);
            size_t cnt = 1;
            for (int k = 0; k < w->rank; k++) {
                json_t *d = json_array_get(sh, (size_t)k);
                if (!json_is_integer(d) || json_integer_value(d) < 0 || json_integer_value(d) > (1 << 30) ||
                    !duet_mul_size(cnt, (size_t)json_integer_value(d), &cnt))
                    return duet_fail(c->err, DUET_ERR_FORMAT, "%s: weight '%s': bad shape", c->dir, nm);
                w->shape[k] = (int)json_integer_value(d);
            }
            w->off = total;
            w->count = cnt;
            size_t bytes;
            if (!duet_mul_size(cnt, 4, &bytes) || !duet_add_size(total, bytes, &total))
                return duet_fail(c->err, DUET_ERR_FORMAT, "%s: weight '%s': size overflows", c->dir, nm);
        }
    }
    *need = total;
    *n_paths = np;
    return DUET_OK;
}

static duet_status build(json_t *root, ctx *c) {
    json_t *topo = json_object_get(root, "modelTopology");
    json_t *mc = json_object_get(topo, "model_config");
    if (!mc) mc = topo;
    json_t *cfg = json_object_get(mc, "config");
    json_t *layers = json_object_get(cfg, "layers");
    if (!json_is_array(layers))
        return duet_fail(c->err, DUET_ERR_FORMAT, "%s: field 'modelTopology.model_config.config.layers' missing", c->dir);
    c->nl = json_array_size(layers);
    c->L = duet_calloc_array(c->nl, sizeof(layer));
    if (!c->L) return duet_fail(c->err, DUET_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < c->nl; i++) {
        json_t *l = json_array_get(layers, i);
        layer *L = &c->L[i];
        L->name = json_string_value(json_object_get(l, "name"));
        L->cls = json_string_value(json_object_get(l, "class_name"));
        L->cfg = json_object_get(l, "config");
        L->inbound = json_object_get(l, "inbound_nodes");
        L->node = -1; L->pad_node = -1;
        if (!L->name || !L->cls || !json_is_object(L->cfg) || !json_is_array(L->inbound))
            return duet_fail(c->err, DUET_ERR_FORMAT, "%s: layers[%zu]: field 'name', 'class_name', 'config' or 'inbound_nodes' missing", c->dir, i);
    }
    /* consumer counts, for the fusions */
    for (size_t i = 0; i < c->nl; i++) {
        json_t *n0 = json_array_get(c->L[i].inbound, 0);
        for (size_t k = 0; k < json_array_size(n0); k++) {
            int j = find_layer(c, json_string_value(json_array_get(json_array_get(n0, k), 0)) ?
                                  json_string_value(json_array_get(json_array_get(n0, k), 0)) : "");
            if (j >= 0) c->L[j].consumers++;
        }
    }
    json_t *outs = json_object_get(cfg, "output_layers");
    const char *oname = json_string_value(json_array_get(json_array_get(outs, 0), 0));
    if (!oname) return duet_fail(c->err, DUET_ERR_FORMAT, "%s: field 'output_layers' missing", c->dir);
    int oi = find_layer(c, oname);
    if (oi < 0) return duet_fail(c->err, DUET_ERR_FORMAT, "%s: output layer '%s' not among the layers", c->dir, oname);
    c->L[oi].consumers++;
    for (size_t i = 0; i < c->nl; i++) {
        duet_status st = build_layer(c, &c->L[i]);
        if (st) return st;
    }
    c->net->output = c->L[oi].node;
    return cnn_finish(c->net, c->dir, c->err);
}

/* shards[i] of shard_len[i] bytes, in manifest order; contiguous: they lie
 * back to back in memory from shards[0] (used in place, not copied). */
static duet_status parse_common(const char *json, size_t json_len, const void *const *shards,
                                const size_t *shard_len, size_t n_shards, int contiguous,
                                const char *dir, const char *const *shard_names, duet_cnn **out,
                                duet_error *err) {
    *out = NULL;
    json_error_t je;
    json_t *root = json_loadb(json, json_len, 0, &je);
    if (!root) return duet_fail(err, DUET_ERR_FORMAT, "%s/model.json: line %d: %s", dir, je.line, je.text);
    ctx c = {0};
    c.dir = dir; c.err = err;
    duet_status st = DUET_OK;
    unsigned char *wb = NULL;
    c.net = calloc(1, sizeof *c.net);
    if (!c.net) { st = duet_fail(err, DUET_ERR_NOMEM, "out of memory"); goto done; }
    c.net->input = c.net->feature = c.net->output = -1;
    c.net->pre = CNN_PRE_CAFFE;
    size_t need = 0, np = 0;
    if ((st = read_manifest(root, &c, &need, &np))) goto done;
    if (np != n_shards) { st = duet_fail(err, DUET_ERR_FORMAT, "%s: weightsManifest lists %zu shards, %zu given", dir, np, n_shards); goto done; }
    size_t have = 0;
    for (size_t i = 0; i < n_shards; i++)
        if (!duet_add_size(have, shard_len[i], &have)) { st = duet_fail(err, DUET_ERR_FORMAT, "%s: shards too large", dir); goto done; }
    if (have != need) {
        /* name the weight that runs past the end and the last shard */
        const char *wn = "";
        for (size_t i = 0; i < c.nw; i++) if (c.w[i].off + c.w[i].count * 4 > have) { wn = c.w[i].name; break; }
        st = duet_fail(err, DUET_ERR_FORMAT, have < need ?
                       "%s/%s: the shards hold %zu bytes but weightsManifest needs %zu (weight '%s' runs past the end): a shard is short or missing" :
                       "%s/%s: the shards hold %zu bytes but weightsManifest describes %zu%s",
                       dir, n_shards ? shard_names[n_shards - 1] : "(no shard)", have, need, wn);
        goto done;
    }
    if (contiguous && n_shards) {
        c.wbuf = shards[0];
    } else {
        wb = malloc(need ? need : 1);
        if (!wb) { st = duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory for %zu bytes of weights", dir, need); goto done; }
        size_t off = 0;
        for (size_t i = 0; i < n_shards; i++) { if (shard_len[i]) memcpy(wb + off, shards[i], shard_len[i]); off += shard_len[i]; }
        c.wbuf = wb;
    }
    c.wlen = need;
    st = build(root, &c);
done:
    free(wb); free(c.w); free(c.L);
    json_decref(root);
    if (st) duet_cnn_free(c.net);
    else *out = c.net;
    return st;
}

duet_status duet_cnn_parse_tfjs(const char *json, size_t json_len, const void *const *shards,
                                const size_t *shard_len, size_t n_shards, const char *dir_name,
                                duet_cnn **out, duet_error *err) {
    const char **names = duet_calloc_array(n_shards, sizeof(char *));
    if (!names) return duet_fail(err, DUET_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n_shards; i++) names[i] = "shard";
    duet_status st = parse_common(json, json_len, shards, shard_len, n_shards, 0, dir_name ? dir_name : "(model)", names, out, err);
    free(names);
    return st;
}

duet_status duet_cnn_load_tfjs(const char *model_json, duet_cnn **out, duet_error *err) {
    *out = NULL;
    char *js = NULL;
    size_t jl = 0;
    duet_status st = duet_read_file(model_json, (size_t)64 << 20, &js, &jl, err);
    if (st) return st;
    char *dir = duet_strdup(model_json);
    if (!dir) { free(js); return duet_fail(err, DUET_ERR_NOMEM, "out of memory"); }
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0'; else strcpy(dir, ".");
    json_error_t je;
    json_t *root = json_loadb(js, jl, 0, &je);
    if (!root) { st = duet_fail(err, DUET_ERR_FORMAT, "%s: line %d: %s", model_json, je.line, je.text); free(js); free(dir); return st; }
    json_t *wm = json_object_get(root, "weightsManifest");
    size_t np = 0;
    for (size_t g = 0; g < json_array_size(wm); g++) np += json_array_size(json_object_get(json_array_get(wm, g), "paths"));
    /* the shards are read back to back into one buffer, used in place */
    const void **ptrs = duet_calloc_array(np, sizeof(void *));
    size_t *lens = duet_calloc_array(np, sizeof(size_t));
    const char **names = duet_calloc_array(np, sizeof(char *));
    char **paths = duet_calloc_array(np, sizeof(char *));
    unsigned char *all = NULL;
    size_t k = 0, total = 0;
    if (!ptrs || !lens || !names || !paths) { st = duet_fail(err, DUET_ERR_NOMEM, "out of memory"); goto done; }
    for (size_t g = 0; g < json_array_size(wm); g++) {
        json_t *ps = json_object_get(json_array_get(wm, g), "paths");
        for (size_t i = 0; i < json_array_size(ps); i++, k++) {
            const char *p = json_string_value(json_array_get(ps, i));
            if (!p || !*p || strchr(p, '/') || strcmp(p, "..") == 0) {
                st = duet_fail(err, DUET_ERR_FORMAT, "%s: weightsManifest[%zu].paths[%zu]: not a file name beside model.json", model_json, g, i);
                goto done;
            }
            names[k] = p;
            size_t pl = strlen(dir) + strlen(p) + 2;
            if (!(paths[k] = malloc(pl))) { st = duet_fail(err, DUET_ERR_NOMEM, "out of memory"); goto done; }
            snprintf(paths[k], pl, "%s/%s", dir, p);
            struct stat sb;
            if (stat(paths[k], &sb) != 0 || !S_ISREG(sb.st_mode)) {
                st = duet_fail(err, DUET_ERR_IO, "%s: cannot open weight shard (listed in %s)", paths[k], model_json);
                goto done;
            }
            lens[k] = (size_t)sb.st_size;
            if (!duet_add_size(total, lens[k], &total) || total > ((size_t)4 << 30)) {
                st = duet_fail(err, DUET_ERR_FORMAT, "%s: shards over 4 GB", model_json);
                goto done;
            }
        }
    }
    all = malloc(total ? total : 1);
    if (!all) { st = duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory for %zu bytes of weights", model_json, total); goto done; }
    for (size_t i = 0, off = 0; i < np; off += lens[i], i++) {
        FILE *f = fopen(paths[i], "rb");
        size_t got = f ? fread(all + off, 1, lens[i], f) : 0;
        int extra = f ? fgetc(f) != EOF : 0;
        if (f) fclose(f);
        if (!f || got != lens[i] || extra) {
            st = duet_fail(err, DUET_ERR_IO, "%s: %s while reading", paths[i], f ? "size changed" : "cannot open");
            goto done;
        }
        ptrs[i] = all + off;
    }
    st = parse_common(js, jl, ptrs, lens, np, 1, dir, names, out, err);
done:
    for (size_t i = 0; paths && i < np; i++) free(paths[i]);
    free(paths); free(ptrs); free(lens); free(names); free(all);
    json_decref(root);
    free(js); free(dir);
    return st;
}
