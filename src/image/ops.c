/* ops.c -- CNN operators on NHWC float batches. Convolution is im2col +
 * cblas_sgemm over all images of the batch at once (a 1x1 stride-1
 * convolution is a plain GEMM on the input); the element-wise and
 * gather work is split over threads with duet_parallel_for. */
#include "image/image.h"
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif
#include <cblas.h>
#include <math.h>
#include <string.h>

/* Rows of im2col per GEMM: bounds the workspace to about 8 M floats. */
#define COL_FLOATS ((size_t)8 << 20)

static int conv_is_direct(const cnn_conv_args *a) {
    return a->kh == 1 && a->kw == 1 && a->sh == 1 && a->sw == 1 && a->pt == 0 && a->pl == 0 &&
           a->oh == a->h && a->ow == a->w;
}

static size_t conv_chunk_rows(const cnn_conv_args *a) {
    size_t k = (size_t)a->kh * a->kw * a->cin;
    size_t rows = a->n * (size_t)a->oh * a->ow;
    size_t per = COL_FLOATS / (k ? k : 1);
    if (per < 1) per = 1;
    return per < rows ? per : rows;
}

size_t cnn_conv_col_floats(const cnn_conv_args *a) {
    if (conv_is_direct(a)) return 0;
    return conv_chunk_rows(a) * (size_t)a->kh * a->kw * a->cin;
}

typedef struct col_ctx {
    const cnn_conv_args *a;
    const float *in;
    float *col;
    size_t row0;
} col_ctx;

static void im2col_rows(void *vc, size_t b, size_t e) {
    col_ctx *c = vc;
    const cnn_conv_args *a = c->a;
    size_t K = (size_t)a->kh * a->kw * a->cin, seg = (size_t)a->cin;
    for (size_t r = b; r < e; r++) {
        size_t g = c->row0 + r;
        size_t ox = g % (size_t)a->ow, t = g / (size_t)a->ow;
        size_t oy = t % (size_t)a->oh, n = t / (size_t)a->oh;
        float *dst = c->col + r * K;
        const float *img = c->in + n * (size_t)a->h * a->w * a->cin;
        for (int ky = 0; ky < a->kh; ky++) {
            long iy = (long)oy * a->sh + ky - a->pt;
            for (int kx = 0; kx < a->kw; kx++, dst += seg) {
                long ix = (long)ox * a->sw + kx - a->pl;
                if (iy < 0 || iy >= a->h || ix < 0 || ix >= a->w) memset(dst, 0, seg * sizeof(float));
                else memcpy(dst, img + ((size_t)iy * a->w + (size_t)ix) * seg, seg * sizeof(float));
            }
        }
    }
}

typedef struct ba_ctx {
    float *x; const float *bias; int c; float lo, hi; int fq; float scale; int zp;
} ba_ctx;

static void bias_act_rows(void *vc, size_t b, size_t e) {
    const ba_ctx *c = vc;
    const int C = c->c, fq = c->fq, zp = c->zp;
    const float lo = c->lo, hi = c->hi, scale = c->scale, inv = fq ? 1.0f / c->scale : 0.0f;
    const float *restrict bias = c->bias;
    const float big = 12582912.0f; /* 1.5 * 2^23: (t + big) - big rounds half to even
                                      (kept: duet builds without -ffast-math) */
    for (size_t r = b; r < e; r++) {
        float *restrict x = c->x + r * (size_t)C;
        if (bias)
            for (int j = 0; j < C; j++) x[j] += bias[j];
        for (int j = 0; j < C; j++) {
            float v = x[j];
            v = v < lo ? lo : v;
            x[j] = v > hi ? hi : v;
        }
        if (fq) {
            /* q = clamp(round(v / scale) + zp, 0, 255); v = (q - zp) * scale.
             * Clamping v / scale to [-zp, 255 - zp] first is the same (the
             * bounds are integers) and keeps the loop branch-free. */
            const float tlo = (float)-zp, thi = (float)(255 - zp);
            for (int j = 0; j < C; j++) {
                float t = x[j] * inv;
                t = t < tlo ? tlo : t;
                t = t > thi ? thi : t;
                x[j] = ((t + big) - big) * scale;
            }
        }
    }
}

void cnn_bias_act(size_t rows, int c, float *x, const float *bias, float lo, float hi,
                  int fq, float scale, int zp) {
    if (!bias && !fq && isinf(lo) && isinf(hi)) return;
    ba_ctx ctx = {x, bias, c, lo, hi, fq, scale, zp};
    duet_parallel_for(rows, 256, bias_act_rows, &ctx);
}

void cnn_conv2d(const cnn_conv_args *a, const float *in, float *out, float *col) {
    size_t rows = a->n * (size_t)a->oh * a->ow;
    int K = a->kh * a->kw * a->cin;
    if (conv_is_direct(a)) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, a->cout, K, 1.0f, in, K,
                    a->wt, a->cout, 0.0f, out, a->cout);
    } else {
        size_t chunk = conv_chunk_rows(a);
        for (size_t r0 = 0; r0 < rows; r0 += chunk) {
            size_t m = rows - r0 < chunk ? rows - r0 : chunk;
            col_ctx cc = {a, in, col, r0};
            duet_parallel_for(m, 64, im2col_rows, &cc);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, a->cout, K, 1.0f, col, K,
                        a->wt, a->cout, 0.0f, out + r0 * (size_t)a->cout, a->cout);
        }
    }
    cnn_bias_act(rows, a->cout, out, a->bias, a->act_lo, a->act_hi, 0, 1.0f, 0);
}

typedef struct dw_ctx { const cnn_conv_args *a; const float *in; float *out; } dw_ctx;

static void dw_rows(void *vc, size_t b, size_t e) {
    dw_ctx *c = vc;
    const cnn_conv_args *a = c->a;
    int C = a->cin;
    for (size_t r = b; r < e; r++) { /* r = n * oh + oy */
        size_t oy = r % (size_t)a->oh, n = r / (size_t)a->oh;
        const float *img = c->in + n * (size_t)a->h * a->w * C;
        for (int ox = 0; ox < a->ow; ox++) {
            float *restrict o = c->out + (r * (size_t)a->ow + (size_t)ox) * C;
            if (a->bias) memcpy(o, a->bias, (size_t)C * sizeof(float));
            else memset(o, 0, (size_t)C * sizeof(float));
            for (int ky = 0; ky < a->kh; ky++) {
                long iy = (long)oy * a->sh + ky - a->pt;
                if (iy < 0 || iy >= a->h) continue;
                for (int kx = 0; kx < a->kw; kx++) {
                    long ix = (long)ox * a->sw + kx - a->pl;
                    if (ix < 0 || ix >= a->w) continue;
                    const float *restrict p = img + ((size_t)iy * a->w + (size_t)ix) * C;
                    const float *restrict w = a->wt + (size_t)(ky * a->kw + kx) * C;
                    for (int ch = 0; ch < C; ch++) o[ch] += w[ch] * p[ch];
                }
            }
            const float lo = a->act_lo, hi = a->act_hi;
            for (int ch = 0; ch < C; ch++) {
                float v = o[ch];
                v = v < lo ? lo : v;
                o[ch] = v > hi ? hi : v;
            }
        }
    }
}

void cnn_dwconv2d(const cnn_conv_args *a, const float *in, float *out) {
    dw_ctx c = {a, in, out};
    duet_parallel_for(a->n * (size_t)a->oh, 4, dw_rows, &c);
}

typedef struct pool_ctx {
    int is_max; int h, w, c, oh, ow, kh, kw, sh, sw, pt, pl; float pad_value;
    const float *in; float *out;
} pool_ctx;

static void pool_rows(void *vc, size_t b, size_t e) {
    pool_ctx *p = vc;
    int C = p->c;
    for (size_t r = b; r < e; r++) {
        size_t oy = r % (size_t)p->oh, n = r / (size_t)p->oh;
        const float *img = p->in + n * (size_t)p->h * p->w * C;
        for (int ox = 0; ox < p->ow; ox++) {
            float *restrict o = p->out + (r * (size_t)p->ow + (size_t)ox) * C;
            int cnt = 0, padded = 0;
            for (int ch = 0; ch < C; ch++) o[ch] = p->is_max ? -INFINITY : 0.0f;
            for (int ky = 0; ky < p->kh; ky++) {
                long iy = (long)oy * p->sh + ky - p->pt;
                for (int kx = 0; kx < p->kw; kx++) {
                    long ix = (long)ox * p->sw + kx - p->pl;
                    if (iy < 0 || iy >= p->h || ix < 0 || ix >= p->w) { padded = 1; continue; }
                    const float *restrict q = img + ((size_t)iy * p->w + (size_t)ix) * C;
                    cnt++;
                    if (p->is_max) { for (int ch = 0; ch < C; ch++) o[ch] = q[ch] > o[ch] ? q[ch] : o[ch]; }
                    else for (int ch = 0; ch < C; ch++) o[ch] += q[ch];
                }
            }
            if (p->is_max) {
                const float pv = p->pad_value;
                if (padded) for (int ch = 0; ch < C; ch++) o[ch] = pv > o[ch] ? pv : o[ch];
            } else {
                float inv = cnt ? 1.0f / (float)cnt : 0.0f;
                for (int ch = 0; ch < C; ch++) o[ch] *= inv;
            }
        }
    }
}

void cnn_pool2d(int is_max, size_t n, int h, int w, int c, int oh, int ow, int kh, int kw,
                int sh, int sw, int pt, int pl, float pad_value, const float *in, float *out) {
    pool_ctx p = {is_max, h, w, c, oh, ow, kh, kw, sh, sw, pt, pl, pad_value, in, out};
    duet_parallel_for(n * (size_t)oh, 4, pool_rows, &p);
}

void cnn_gap(size_t n, int h, int w, int c, const float *in, float *out) {
    size_t hw = (size_t)h * w;
    for (size_t i = 0; i < n; i++) {
        float *o = out + i * (size_t)c;
        const float *img = in + i * hw * c;
        double acc[4096];
        double *ac = c <= 4096 ? acc : NULL;
        for (int ch = 0; ch < c; ch++) o[ch] = 0;
        if (ac) {
            for (int ch = 0; ch < c; ch++) ac[ch] = 0;
            for (size_t p = 0; p < hw; p++) for (int ch = 0; ch < c; ch++) ac[ch] += img[p * c + ch];
            for (int ch = 0; ch < c; ch++) o[ch] = (float)(ac[ch] / (double)hw);
        } else {
            for (size_t p = 0; p < hw; p++) for (int ch = 0; ch < c; ch++) o[ch] += img[p * c + ch];
            for (int ch = 0; ch < c; ch++) o[ch] /= (float)hw;
        }
    }
}

typedef struct add_ctx { const float *a, *b; float *out; float lo, hi; } add_ctx;
static void add_range(void *vc, size_t b, size_t e) {
    add_ctx *c = vc;
    for (size_t i = b; i < e; i++) {
        float v = c->a[i] + c->b[i];
        c->out[i] = v < c->lo ? c->lo : (v > c->hi ? c->hi : v);
    }
}
void cnn_add(size_t count, const float *a, const float *b, float *out, float lo, float hi) {
    add_ctx c = {a, b, out, lo, hi};
    duet_parallel_for(count, 1 << 14, add_range, &c);
}

void cnn_pad(size_t n, int h, int w, int c, int pt, int pb, int pl, int pr, const float *in,
             float *out) {
    int oh = h + pt + pb, ow = w + pl + pr;
    size_t orow = (size_t)ow * c;
    for (size_t i = 0; i < n; i++) {
        float *o = out + i * (size_t)oh * orow;
        memset(o, 0, (size_t)oh * orow * sizeof(float));
        for (int y = 0; y < h; y++)
            memcpy(o + (size_t)(y + pt) * orow + (size_t)pl * c, in + (i * (size_t)h + y) * (size_t)w * c,
                   (size_t)w * c * sizeof(float));
    }
}

void cnn_dense(size_t n, int cin, int cout, const float *wt, const float *bias, const float *in,
               float *out) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, cout, cin, 1.0f, in, cin, wt,
                cout, 0.0f, out, cout);
    if (bias)
        for (size_t i = 0; i < n; i++)
            for (int j = 0; j < cout; j++) out[i * (size_t)cout + j] += bias[j];
}
