/* tflite.c -- a uint8-quantized TFLite flatbuffer (MobileNetV2) read by a
 * small flatbuffer reader that checks every offset against the buffer.
 * Weights are dequantized to float at load; each activation is
 * re-quantized to its tensor's uint8 grid when computed, so the float
 * graph follows the quantized model closely. The integer weights, biases
 * and grids are kept too, for int8 runs (dnn_int8.c). */
#include "image/image.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct fb { const uint8_t *b; size_t n; } fb;

static int u32_at(const fb *f, size_t off, uint32_t *v) {
    if (off > f->n || f->n - off < 4) return -1;
    memcpy(v, f->b + off, 4);
    return 0;
}
static int u16_at(const fb *f, size_t off, uint16_t *v) {
    if (off > f->n || f->n - off < 2) return -1;
    memcpy(v, f->b + off, 2);
    return 0;
}
/* Follows the uoffset at pos; -1 when out of bounds. */
static int follow(const fb *f, size_t pos, size_t *to) {
    uint32_t v;
    if (u32_at(f, pos, &v) || (size_t)v > f->n - pos) return -1;
    *to = pos + v;
    return 0;
}
/* Position of field i of the table at t, size bytes: 1 found, 0 absent,
 * -1 malformed. */
static int field(const fb *f, size_t t, int i, size_t size, size_t *pos) {
    uint32_t so;
    if (u32_at(f, t, &so)) return -1;
    int32_t s = (int32_t)so;
    long long vt = (long long)t - (long long)s;
    if (vt < 0 || (unsigned long long)vt > f->n) return -1;
    uint16_t vsz, tsz, fo;
    if (u16_at(f, (size_t)vt, &vsz) || u16_at(f, (size_t)vt + 2, &tsz) || vsz < 4 || (vsz & 1)) return -1;
    if (vsz > f->n - (size_t)vt) return -1;
    if ((size_t)(4 + 2 * i) + 2 > vsz) return 0;
    if (u16_at(f, (size_t)vt + 4 + 2 * (size_t)i, &fo)) return -1;
    if (fo == 0) return 0;
    if ((size_t)fo + size > tsz || t > f->n || f->n - t < (size_t)fo + size) return -1;
    *pos = t + fo;
    return 1;
}
static int get_int(const fb *f, size_t t, int i, size_t size, long long def, long long *v) {
    size_t p;
    int r = field(f, t, i, size, &p);
    if (r < 0) return -1;
    if (r == 0) { *v = def; return 0; }
    if (size == 1) *v = (int8_t)f->b[p];
    else if (size == 2) { int16_t x; memcpy(&x, f->b + p, 2); *v = x; }
    else { int32_t x; memcpy(&x, f->b + p, 4); *v = x; }
    return 0;
}
/* A vector field: *vec its first element, *len its length, elem bytes each.
 * 1 found, 0 absent, -1 malformed. */
static int vec(const fb *f, size_t t, int i, size_t elem, size_t *first, size_t *len) {
    size_t p, v;
    int r = field(f, t, i, 4, &p);
    if (r <= 0) return r;
    uint32_t n;
    if (follow(f, p, &v) || u32_at(f, v, &n)) return -1;
    if ((size_t)n > (f->n - v - 4) / (elem ? elem : 1)) return -1;
    *first = v + 4;
    *len = n;
    return 1;
}
static int table_field(const fb *f, size_t t, int i, size_t *tab) {
    size_t p;
    int r = field(f, t, i, 4, &p);
    if (r <= 0) return r;
    return follow(f, p, tab) ? -1 : 1;
}
static int vec_table(const fb *f, size_t first, size_t k, size_t *tab) {
    return follow(f, first + 4 * k, tab);
}
static int32_t i32_elem(const fb *f, size_t first, size_t k) {
    int32_t x; memcpy(&x, f->b + first + 4 * k, 4); return x;
}

typedef struct tensor {
    int shape[4], rank, type;
    uint32_t buffer;
    float scale; long long zp;
    size_t nscale, scale_pos, zp_pos, nzp;  /* per-channel quantization */
    char name[96];
} tensor;

enum { OP_ADD = 0, OP_AVGPOOL = 1, OP_CONV = 3, OP_DWCONV = 4, OP_MAXPOOL = 17, OP_RESHAPE = 22,
       OP_SOFTMAX = 25, OP_SQUEEZE = 43 };
enum { T_FLOAT32 = 0, T_INT32 = 2, T_UINT8 = 3, T_INT8 = 9 };

typedef struct tctx {
    fb f; const char *name; duet_error *err;
    tensor *T; size_t nt;
    int *tnode;
    size_t buffers, nbuf;
    duet_cnn *net;
    int q_ok;          /* every layer so far integer (int8 runs possible) */
} tctx;

#define BAD(...) duet_fail(c->err, DUET_ERR_FORMAT, __VA_ARGS__)

static duet_status read_tensor(tctx *c, size_t tab, tensor *t, size_t idx) {
    const fb *f = &c->f;
    size_t first, len;
    long long v;
    int r = vec(f, tab, 0, 4, &first, &len);
    if (r < 0 || len > 4) return BAD("%s: tensor %zu: bad shape", c->name, idx);
    t->rank = r ? (int)len : 0;
    for (int k = 0; k < t->rank; k++) {
        t->shape[k] = i32_elem(f, first, (size_t)k);
        if (t->shape[k] < 0 || t->shape[k] > (1 << 24)) return BAD("%s: tensor %zu: dimension %d", c->name, idx, t->shape[k]);
    }
    if (get_int(f, tab, 1, 1, 0, &v)) return BAD("%s: tensor %zu: bad type", c->name, idx);
    t->type = (int)v;
    if (get_int(f, tab, 2, 4, 0, &v)) return BAD("%s: tensor %zu: bad buffer", c->name, idx);
    t->buffer = (uint32_t)v;
    t->name[0] = '\0';
    if (vec(f, tab, 3, 1, &first, &len) > 0) {
        size_t l = len < sizeof t->name - 1 ? len : sizeof t->name - 1;
        memcpy(t->name, f->b + first, l);
        t->name[l] = '\0';
        for (size_t k = 0; k < l; k++) if ((unsigned char)t->name[k] < 32) t->name[k] = '?';
    }
    t->scale = 0; t->zp = 0; t->nscale = 0; t->nzp = 0;
    size_t q;
    r = table_field(f, tab, 4, &q);
    if (r < 0) return BAD("%s: tensor '%s': bad quantization", c->name, t->name);
    if (r) {
        if (vec(f, q, 2, 4, &first, &len) < 0) return BAD("%s: tensor '%s': bad scale", c->name, t->name);
        if (vec(f, q, 2, 4, &first, &len) > 0 && len > 0) {
            memcpy(&t->scale, f->b + first, 4);
            t->nscale = len; t->scale_pos = first;
        }
        if (vec(f, q, 3, 8, &first, &len) < 0) return BAD("%s: tensor '%s': bad zero_point", c->name, t->name);
        if (vec(f, q, 3, 8, &first, &len) > 0 && len > 0) {
            int64_t z; memcpy(&z, f->b + first, 8);
            t->zp = z; t->nzp = len; t->zp_pos = first;
        }
        if (!(t->scale > 0) && t->nscale) return BAD("%s: tensor '%s': scale %g", c->name, t->name, (double)t->scale);
    }
    return DUET_OK;
}

static size_t tensor_count(const tensor *t) {
    size_t n = 1;
    for (int k = 0; k < t->rank; k++) n *= (size_t)t->shape[k]; /* each <= 2^24, rank <= 4: checked below */
    return n;
}

/* Dequantized data of tensor t (count floats, caller frees). */
static float *dequant(tctx *c, const tensor *t, size_t count, int channel_axis_len, duet_status *st) {
    const fb *f = &c->f;
    size_t tab, first = 0, len = 0;
    if (t->buffer >= c->nbuf || vec_table(f, c->buffers, t->buffer, &tab) || vec(f, tab, 0, 1, &first, &len) < 0) {
        *st = BAD("%s: tensor '%s': buffer %u missing", c->name, t->name, t->buffer);
        return NULL;
    }
    size_t esz = t->type == T_INT32 || t->type == T_FLOAT32 ? 4 : 1;
    if (len != count * esz) {
        *st = BAD("%s: tensor '%s': buffer holds %zu bytes, shape needs %zu", c->name, t->name, len, count * esz);
        return NULL;
    }
    if (t->nscale > 1 && (int)t->nscale != channel_axis_len) {
        *st = BAD("%s: tensor '%s': %zu scales for %d channels", c->name, t->name, t->nscale, channel_axis_len);
        return NULL;
    }
    float *out = duet_alloc_array(count, sizeof(float));
    if (!out) { *st = duet_fail(c->err, DUET_ERR_NOMEM, "out of memory"); return NULL; }
    const uint8_t *d = f->b + first;
    for (size_t i = 0; i < count; i++) {
        /* per-channel quantization runs over the first axis (TFLite OHWI) */
        size_t ch = t->nscale > 1 ? i / (count / t->nscale) : 0;
        float s = t->scale;
        long long z = t->zp;
        if (t->nscale > 1) memcpy(&s, f->b + t->scale_pos + 4 * ch, 4);
        if (t->nzp > 1 && ch < t->nzp) { int64_t zz; memcpy(&zz, f->b + t->zp_pos + 8 * ch, 8); z = zz; }
        if (t->type == T_FLOAT32) { memcpy(&out[i], d + 4 * i, 4); continue; }
        long long q = t->type == T_UINT8 ? d[i] : t->type == T_INT8 ? (int8_t)d[i] : (long long)i32_elem(f, first, i);
        out[i] = t->nscale ? (float)((double)(q - z) * s) : (float)q;
    }
    return out;
}

static int64_t zp_at(const fb *f, const tensor *t, size_t ch) {
    if (t->nzp <= 1 || ch >= t->nzp) return t->zp;
    int64_t z;
    memcpy(&z, f->b + t->zp_pos + 8 * ch, 8);
    return z;
}

/* The integer form of a conv's weights wt (OHWI, count values, already
 * checked by dequant) and bias bt (or NULL) for int8 runs: nd->qw in the
 * layout of nd->wt, qw_zp, qbias, qw_scale. Weights that have no such form
 * (not uint8/int8, a zero point per channel, a bias not int32) clear
 * c->q_ok: the net then runs its float emulation only. */
static duet_status quant_weights(tctx *c, const tensor *wt, const tensor *bt, size_t count, int cout, int conv,
                                 cnn_node *nd) {
    const fb *f = &c->f;
    size_t tab, first = 0, len = 0;
    int64_t z = zp_at(f, wt, 0);
    int ok = (wt->type == T_UINT8 || wt->type == T_INT8) && wt->nscale && (!bt || (bt->type == T_INT32 && bt->nscale));
    for (size_t k = 1; ok && k < wt->nzp; k++) ok = zp_at(f, wt, k) == z;
    if (wt->type == T_UINT8) z -= 128;
    if (!ok || z < -127 || z > 127) { c->q_ok = 0; return DUET_OK; }
    if (vec_table(f, c->buffers, wt->buffer, &tab) || vec(f, tab, 0, 1, &first, &len) <= 0 || len != count)
        return BAD("%s: tensor '%s': weights buffer", c->name, wt->name);
    const uint8_t *d = f->b + first;
    nd->qw = duet_alloc_array(count, 1);
    nd->qw_scale = duet_alloc_array((size_t)cout, sizeof(float));
    if (!nd->qw || !nd->qw_scale) return duet_fail(c->err, DUET_ERR_NOMEM, "out of memory");
    nd->qw_zp = (int)z;
    size_t K = count / (size_t)cout;
    for (size_t i = 0; i < count; i++) { /* OHWI -> [K x cout] for CONV */
        int q = wt->type == T_UINT8 ? (int)d[i] - 128 : (int8_t)d[i];
        size_t to = conv ? (i % K) * (size_t)cout + i / K : i;
        nd->qw[to] = (int8_t)q;
    }
    for (int o = 0; o < cout; o++)
        memcpy(&nd->qw_scale[o], f->b + wt->scale_pos + 4 * (wt->nscale > 1 ? (size_t)o : 0), 4);
    if (bt) {
        if (vec_table(f, c->buffers, bt->buffer, &tab) || vec(f, tab, 0, 1, &first, &len) <= 0 ||
            len != 4 * (size_t)cout)
            return BAD("%s: tensor '%s': bias buffer", c->name, bt->name);
        if (!(nd->qbias = duet_alloc_array((size_t)cout, sizeof(int32_t))))
            return duet_fail(c->err, DUET_ERR_NOMEM, "out of memory");
        for (int o = 0; o < cout; o++) nd->qbias[o] = i32_elem(f, first, (size_t)o);
    }
    return DUET_OK;
}

static int act_of(long long a, float *lo, float *hi) {
    switch (a) {
    case 0: return 0;
    case 1: *lo = 0; return 0;
    case 2: *lo = -1; *hi = 1; return 0;
    case 3: *lo = 0; *hi = 6; return 0;
    default: return -1;
    }
}

static duet_status build_op(tctx *c, size_t oi, size_t op, int code) {
    const fb *f = &c->f;
    duet_cnn *net = c->net;
    size_t ifirst, ilen, ofirst, olen, opt = 0;
    if (vec(f, op, 1, 4, &ifirst, &ilen) <= 0 || vec(f, op, 2, 4, &ofirst, &olen) <= 0 || olen != 1 || ilen < 1)
        return BAD("%s: operator %zu: inputs/outputs missing", c->name, oi);
    int in[3] = {-1, -1, -1};
    for (size_t k = 0; k < ilen && k < 3; k++) {
        int32_t ti = i32_elem(f, ifirst, k);
        if (ti < -1 || (size_t)(ti + 1) > c->nt) return BAD("%s: operator %zu: tensor index %d", c->name, oi, ti);
        in[k] = ti;
    }
    int32_t to = i32_elem(f, ofirst, 0);
    if (to < 0 || (size_t)to >= c->nt) return BAD("%s: operator %zu: output tensor %d", c->name, oi, to);
    const tensor *ot = &c->T[to];
    if (in[0] < 0 || c->tnode[in[0]] < 0) return BAD("%s: operator %zu ('%s'): input is not computed before it", c->name, oi, ot->name);
    int src = c->tnode[in[0]];
    const cnn_node *p = &net->nodes[src];
    if (table_field(f, op, 4, &opt) < 0) return BAD("%s: operator %zu: bad options", c->name, oi);
    long long pad = 1, sw = 1, sh = 1, act = 0, fw = 1, fh = 1, dm = 1, d1 = 1, d2 = 1;
    int err = 0;
    cnn_op kind;
    int cout = p->c;
    switch (code) {
    case OP_CONV: kind = CNN_CONV;
        if (opt) err = get_int(f, opt, 0, 1, 0, &pad) | get_int(f, opt, 1, 4, 1, &sw) | get_int(f, opt, 2, 4, 1, &sh) |
                       get_int(f, opt, 3, 1, 0, &act) | get_int(f, opt, 4, 4, 1, &d1) | get_int(f, opt, 5, 4, 1, &d2);
        break;
    case OP_DWCONV: kind = CNN_DWCONV;
        if (opt) err = get_int(f, opt, 0, 1, 0, &pad) | get_int(f, opt, 1, 4, 1, &sw) | get_int(f, opt, 2, 4, 1, &sh) |
                       get_int(f, opt, 3, 4, 1, &dm) | get_int(f, opt, 4, 1, 0, &act) | get_int(f, opt, 5, 4, 1, &d1) |
                       get_int(f, opt, 6, 4, 1, &d2);
        break;
    case OP_AVGPOOL: case OP_MAXPOOL: kind = code == OP_AVGPOOL ? CNN_AVGPOOL : CNN_MAXPOOL;
        if (opt) err = get_int(f, opt, 0, 1, 0, &pad) | get_int(f, opt, 1, 4, 1, &sw) | get_int(f, opt, 2, 4, 1, &sh) |
                       get_int(f, opt, 3, 4, 1, &fw) | get_int(f, opt, 4, 4, 1, &fh) | get_int(f, opt, 5, 1, 0, &act);
        break;
    case OP_ADD: kind = CNN_ADD;
        if (opt) err = get_int(f, opt, 0, 1, 0, &act);
        break;
    case OP_RESHAPE: case OP_SQUEEZE: case OP_SOFTMAX: kind = CNN_IDENTITY; break;
    default: return duet_fail(c->err, DUET_ERR_UNSUPPORTED, "%s: operator %zu: builtin op %d not supported", c->name, oi, code);
    }
    if (err) return BAD("%s: operator %zu: malformed options", c->name, oi);
    if (sw < 1 || sh < 1 || sw > 64 || sh > 64 || fw < 1 || fh < 1 || fw > 4096 || fh > 4096 || d1 != 1 || d2 != 1 || dm != 1)
        return duet_fail(c->err, DUET_ERR_UNSUPPORTED, "%s: operator %zu ('%s'): stride/filter/dilation/multiplier out of range", c->name, oi, ot->name);
    if (code == OP_SOFTMAX) { /* the output: logits before the softmax */
        c->tnode[to] = src;
        net->output = src;
        net->output_softmax = 1;
        return DUET_OK;
    }
    int id = cnn_add_node(net, kind, ot->name);
    if (id < 0) return duet_fail(c->err, DUET_ERR_NOMEM, "out of memory");
    cnn_node *nd = &net->nodes[id];
    p = &net->nodes[src];
    nd->in[0] = src; nd->n_in = 1;
    if (act_of(act, &nd->act_lo, &nd->act_hi))
        return duet_fail(c->err, DUET_ERR_UNSUPPORTED, "%s: operator %zu: activation %lld", c->name, oi, act);
    int kh = (int)fh, kw = (int)fw;
    duet_status st = DUET_OK;
    if (kind == CNN_CONV || kind == CNN_DWCONV) {
        if (ilen < 2 || in[1] < 0) return BAD("%s: operator %zu ('%s'): no weights", c->name, oi, ot->name);
        const tensor *wt = &c->T[in[1]];
        if (wt->rank != 4) return BAD("%s: operator %zu ('%s'): weights of rank %d", c->name, oi, ot->name, wt->rank);
        kh = wt->shape[1]; kw = wt->shape[2];
        if (kh < 1 || kw < 1) return BAD("%s: operator %zu: empty kernel", c->name, oi);
        if (kind == CNN_CONV) {
            cout = wt->shape[0];
            if (wt->shape[3] != p->c)
                return duet_fail(c->err, DUET_ERR_SHAPE, "%s: operator %zu ('%s'): weights for %d input channels, input has %d", c->name, oi, ot->name, wt->shape[3], p->c);
        } else if (wt->shape[0] != 1 || wt->shape[3] != p->c)
            return duet_fail(c->err, DUET_ERR_SHAPE, "%s: operator %zu ('%s'): depthwise weights [%d,%d,%d,%d] for %d channels", c->name, oi, ot->name,
                             wt->shape[0], wt->shape[1], wt->shape[2], wt->shape[3], p->c);
        size_t cnt = tensor_count(wt);
        float *w = dequant(c, wt, cnt, kind == CNN_CONV ? cout : 1, &st);
        if (!w) return st;
        if (kind == CNN_CONV) { /* OHWI -> [kh*kw*cin x cout] */
            nd->wt = duet_alloc_array(cnt, sizeof(float));
            if (!nd->wt) { free(w); return duet_fail(c->err, DUET_ERR_NOMEM, "out of memory"); }
            size_t K = cnt / (size_t)cout;
            for (int o = 0; o < cout; o++)
                for (size_t k = 0; k < K; k++) nd->wt[k * (size_t)cout + (size_t)o] = w[(size_t)o * K + k];
            free(w);
        } else nd->wt = w;
        if (ilen >= 3 && in[2] >= 0) {
            const tensor *bt = &c->T[in[2]];
            if (bt->rank != 1 || bt->shape[0] != cout)
                return duet_fail(c->err, DUET_ERR_SHAPE, "%s: operator %zu ('%s'): bias of %d for %d channels", c->name, oi, ot->name, bt->rank ? bt->shape[0] : 0, cout);
            if (!(nd->bias = dequant(c, bt, (size_t)cout, cout, &st))) return st;
        }
        st = quant_weights(c, wt, ilen >= 3 && in[2] >= 0 ? &c->T[in[2]] : NULL, cnt, cout, kind == CNN_CONV, nd);
        if (st) return st;
    }
    nd->c = cout;
    if (kind == CNN_ADD) {
        if (ilen != 2 || in[1] < 0 || c->tnode[in[1]] < 0) return BAD("%s: operator %zu ('%s'): ADD needs two computed inputs", c->name, oi, ot->name);
        const cnn_node *q = &net->nodes[c->tnode[in[1]]];
        if (q->h != p->h || q->w != p->w || q->c != p->c)
            return duet_fail(c->err, DUET_ERR_SHAPE, "%s: operator %zu ('%s'): adds %dx%dx%d to %dx%dx%d", c->name, oi, ot->name, p->h, p->w, p->c, q->h, q->w, q->c);
        nd->in[1] = c->tnode[in[1]]; nd->n_in = 2;
    }
    if (kind == CNN_IDENTITY || kind == CNN_ADD) { nd->h = p->h; nd->w = p->w; }
    else {
        nd->kh = kh; nd->kw = kw; nd->sh = (int)sh; nd->sw = (int)sw;
        if (pad == 0) {
            cnn_same_pad(p->h, kh, (int)sh, &nd->h, &nd->pt, &nd->pb);
            cnn_same_pad(p->w, kw, (int)sw, &nd->w, &nd->pl, &nd->pr);
        } else {
            if (p->h < kh || p->w < kw) return duet_fail(c->err, DUET_ERR_SHAPE, "%s: operator %zu ('%s'): input smaller than the window", c->name, oi, ot->name);
            nd->h = (p->h - kh) / (int)sh + 1; nd->w = (p->w - kw) / (int)sw + 1;
        }
    }
    /* the output tensor must agree: [1, h, w, c] or (reshape) h*w*c elements */
    size_t want = (size_t)nd->h * nd->w * nd->c, got = tensor_count(ot);
    int ok = kind == CNN_IDENTITY ? got == want
                                  : ot->rank == 4 && ot->shape[0] == 1 && ot->shape[1] == nd->h && ot->shape[2] == nd->w && ot->shape[3] == nd->c;
    if (!ok) return duet_fail(c->err, DUET_ERR_SHAPE, "%s: operator %zu ('%s'): computes %dx%dx%d, tensor says otherwise", c->name, oi, ot->name, nd->h, nd->w, nd->c);
    if (ot->type == T_UINT8 && ot->nscale) { nd->fq = 1; nd->q_scale = ot->scale; nd->q_zp = (int)ot->zp; }
    else if (ot->type != T_FLOAT32)
        return duet_fail(c->err, DUET_ERR_UNSUPPORTED, "%s: operator %zu ('%s'): activations must be uint8 or float32", c->name, oi, ot->name);
    if (!nd->fq) c->q_ok = 0;
    else if (kind == CNN_AVGPOOL || kind == CNN_MAXPOOL || kind == CNN_IDENTITY) { /* the grid passes through */
        float s; int z;
        cnn_qparams(net, src, &s, &z);
        if (s != nd->q_scale || z != nd->q_zp || (src != net->input && !net->nodes[src].fq)) c->q_ok = 0;
    }
    if (kind == CNN_AVGPOOL) net->feature = id;
    c->tnode[to] = id;
    return DUET_OK;
}

duet_status duet_cnn_parse_tflite(const void *buf, size_t len, const char *name, duet_cnn **out,
                                  duet_error *err) {
    *out = NULL;
    tctx ctx = {{buf, len}, name ? name : "(tflite)", err, NULL, 0, NULL, 0, 0, NULL, 1};
    tctx *c = &ctx;
    const fb *f = &c->f;
    duet_status st = DUET_OK;
    size_t root, codes_first, ncodes, sg_first, nsg, sg, t_first, nt, ops_first, nops, in_first, nin;
    if (len < 8 || follow(f, 0, &root)) return BAD("%s: not a TFLite flatbuffer (too short)", c->name);
    if (memcmp(f->b + 4, "TFL3", 4) != 0) return BAD("%s: not a TFLite flatbuffer (no TFL3 identifier)", c->name);
    if (vec(f, root, 1, 4, &codes_first, &ncodes) <= 0 || vec(f, root, 2, 4, &sg_first, &nsg) <= 0 || nsg < 1 ||
        vec(f, root, 4, 4, &c->buffers, &c->nbuf) <= 0)
        return BAD("%s: model lacks operator_codes, subgraphs or buffers", c->name);
    if (vec_table(f, sg_first, 0, &sg) || vec(f, sg, 0, 4, &t_first, &nt) <= 0 || vec(f, sg, 3, 4, &ops_first, &nops) <= 0 ||
        vec(f, sg, 1, 4, &in_first, &nin) <= 0 || nin != 1)
        return BAD("%s: subgraph 0 lacks tensors, operators or its one input", c->name);
    c->nt = nt;
    c->T = duet_calloc_array(nt, sizeof(tensor));
    c->tnode = duet_alloc_array(nt, sizeof(int));
    c->net = calloc(1, sizeof *c->net);
    if (!c->T || !c->tnode || !c->net) { st = duet_fail(err, DUET_ERR_NOMEM, "out of memory"); goto done; }
    c->net->input = c->net->feature = c->net->output = -1;
    for (size_t i = 0; i < nt; i++) {
        size_t tab;
        c->tnode[i] = -1;
        if (vec_table(f, t_first, i, &tab)) { st = BAD("%s: tensor %zu: bad offset", c->name, i); goto done; }
        if ((st = read_tensor(c, tab, &c->T[i], i))) goto done;
    }
    {
        int32_t ti = i32_elem(f, in_first, 0);
        if (ti < 0 || (size_t)ti >= nt) { st = BAD("%s: input tensor %d", c->name, ti); goto done; }
        const tensor *it = &c->T[ti];
        if (it->rank != 4 || it->shape[1] != DUET_IMAGE_SIDE || it->shape[2] != DUET_IMAGE_SIDE || it->shape[3] != 3 ||
            it->type != T_UINT8 || !(it->scale > 0)) {
            st = duet_fail(err, DUET_ERR_UNSUPPORTED, "%s: input '%s' must be uint8 [1,224,224,3] with a scale", c->name, it->name);
            goto done;
        }
        int id = cnn_add_node(c->net, CNN_INPUT, it->name);
        if (id < 0) { st = duet_fail(err, DUET_ERR_NOMEM, "out of memory"); goto done; }
        c->net->nodes[id].h = DUET_IMAGE_SIDE; c->net->nodes[id].w = DUET_IMAGE_SIDE; c->net->nodes[id].c = 3;
        c->net->input = id;
        c->net->pre = CNN_PRE_UINT8;
        c->net->in_scale = it->scale;
        c->net->in_zp = (int)it->zp;
        c->tnode[ti] = id;
    }
    for (size_t i = 0; i < nops; i++) {
        size_t op, ct;
        long long opc, dep, bc;
        if (vec_table(f, ops_first, i, &op) || get_int(f, op, 0, 4, 0, &opc) || opc < 0 || (size_t)opc >= ncodes ||
            vec_table(f, codes_first, (size_t)opc, &ct) || get_int(f, ct, 0, 1, 0, &dep) || get_int(f, ct, 3, 4, 0, &bc)) {
            st = BAD("%s: operator %zu: bad opcode", c->name, i);
            goto done;
        }
        if ((st = build_op(c, i, op, (int)(bc > dep ? bc : dep)))) goto done;
    }
    if (c->net->output < 0 && c->net->n_nodes) c->net->output = (int)c->net->n_nodes - 1;
    c->net->quant = c->q_ok;
    st = cnn_finish(c->net, c->name, err);
done:
    free(c->T); free(c->tnode);
    if (st) duet_cnn_free(c->net);
    else *out = c->net;
    return st;
}

duet_status duet_cnn_load_tflite(const char *path, duet_cnn **out, duet_error *err) {
    char *buf = NULL;
    size_t len = 0;
    *out = NULL;
    duet_status st = duet_read_file(path, (size_t)1 << 30, &buf, &len, err);
    if (st) return st;
    st = duet_cnn_parse_tflite(buf, len, path, out, err);
    free(buf);
    return st;
}
