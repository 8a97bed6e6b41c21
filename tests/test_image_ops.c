/* test_image_ops.c -- every CNN operator against a naive loop on awkward
 * shapes: stride 2, asymmetric padding, channel counts not a multiple of 8,
 * batches of several images; BN folding against conv + BN; TF "same". */
#include "check.h"
#include "image/image.h"
#include <float.h>

static float frand(duet_rng *r) { return 2.0f * duet_rng_uniform(r) - 1.0f; }
static float *rnd(duet_rng *r, size_t n) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = frand(r);
    return x;
}

/* naive NHWC conv; pads as given; depthwise if dw */
static void naive_conv(const cnn_conv_args *a, int dw, const float *in, float *out) {
    for (size_t n = 0; n < a->n; n++)
        for (int oy = 0; oy < a->oh; oy++)
            for (int ox = 0; ox < a->ow; ox++)
                for (int co = 0; co < a->cout; co++) {
                    double s = a->bias ? a->bias[co] : 0;
                    for (int ky = 0; ky < a->kh; ky++)
                        for (int kx = 0; kx < a->kw; kx++) {
                            int iy = oy * a->sh + ky - a->pt, ix = ox * a->sw + kx - a->pl;
                            if (iy < 0 || iy >= a->h || ix < 0 || ix >= a->w) continue;
                            const float *p = in + ((n * a->h + iy) * a->w + ix) * a->cin;
                            if (dw) s += (double)a->wt[(ky * a->kw + kx) * a->cout + co] * p[co];
                            else
                                for (int ci = 0; ci < a->cin; ci++)
                                    s += (double)a->wt[((ky * a->kw + kx) * a->cin + ci) * a->cout + co] * p[ci];
                        }
                    float v = (float)s;
                    v = v < a->act_lo ? a->act_lo : v > a->act_hi ? a->act_hi : v;
                    out[((n * a->oh + oy) * a->ow + ox) * a->cout + co] = v;
                }
}

static double max_rel(const float *a, const float *b, size_t n) {
    double m = 0, s = 1e-6;
    for (size_t i = 0; i < n; i++) if (fabs(b[i]) > s) s = fabs(b[i]);
    for (size_t i = 0; i < n; i++) { double d = fabs((double)a[i] - b[i]) / s; if (d > m) m = d; }
    return m;
}

typedef struct conv_case { int n, h, w, cin, cout, kh, kw, sh, sw, pt, pb, pl, pr; float lo, hi; } conv_case;

static void run_conv_case(const conv_case *c, int dw) {
    duet_rng r;
    duet_rng_seed(&r, 7);
    int oh = (c->h + c->pt + c->pb - c->kh) / c->sh + 1, ow = (c->w + c->pl + c->pr - c->kw) / c->sw + 1;
    int cout = dw ? c->cin : c->cout;
    size_t wn = (size_t)c->kh * c->kw * (dw ? 1 : c->cin) * cout;
    float *in = rnd(&r, (size_t)c->n * c->h * c->w * c->cin), *wt = rnd(&r, wn), *b = rnd(&r, (size_t)cout);
    size_t on = (size_t)c->n * oh * ow * cout;
    float *o1 = malloc(on * sizeof(float)), *o2 = malloc(on * sizeof(float));
    cnn_conv_args a = {(size_t)c->n, c->h, c->w, c->cin, oh, ow, cout, c->kh, c->kw, c->sh, c->sw, c->pt, c->pl,
                       wt, b, c->lo, c->hi};
    size_t cf = cnn_conv_col_floats(&a);
    float *col = cf ? malloc(cf * sizeof(float)) : NULL;
    if (dw) cnn_dwconv2d(&a, in, o1); else cnn_conv2d(&a, in, o1, col);
    naive_conv(&a, dw, in, o2);
    double e = max_rel(o1, o2, on);
    CHECK_MSG(e < 1e-5, "%s %dx%dx%d -> %d k%dx%d s%d,%d pad %d,%d,%d,%d: max rel err %g", dw ? "dwconv" : "conv",
              c->h, c->w, c->cin, cout, c->kh, c->kw, c->sh, c->sw, c->pt, c->pb, c->pl, c->pr, e);
    free(in); free(wt); free(b); free(o1); free(o2); free(col);
}

static const conv_case cases[] = {
    {2, 9, 11, 5, 7, 3, 3, 2, 2, 0, 1, 1, 0, -INFINITY, INFINITY},   /* stride 2, asymmetric pad */
    {3, 8, 8, 13, 6, 1, 1, 1, 1, 0, 0, 0, 0, 0.0f, INFINITY},        /* direct GEMM path, relu */
    {1, 10, 7, 3, 9, 7, 7, 2, 2, 3, 3, 3, 3, 0.0f, 6.0f},            /* conv1-like, relu6 */
    {2, 6, 5, 11, 3, 1, 1, 2, 2, 0, 0, 0, 0, -INFINITY, INFINITY},   /* 1x1 stride 2 */
    {1, 5, 9, 17, 5, 3, 2, 1, 2, 2, 0, 0, 1, -INFINITY, INFINITY},   /* rectangular kernel */
};

TEST(conv_vs_naive) {
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_conv_case(&cases[i], 0);
}

TEST(dwconv_vs_naive) {
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_conv_case(&cases[i], 1);
}

TEST(conv_chunked_im2col) {
    /* K = 3*3*300 = 2700: 8M floats / 2700 = 3106 rows per chunk < 2*40*40 rows */
    conv_case c = {2, 40, 40, 300, 5, 3, 3, 1, 1, 1, 1, 1, 1, -INFINITY, INFINITY};
    run_conv_case(&c, 0);
}

TEST(pools_vs_naive) {
    duet_rng r;
    duet_rng_seed(&r, 3);
    int n = 2, h = 9, w = 8, c = 5, k = 3, s = 2, pt = 1, pl = 0, pb = 1, pr = 1;
    int oh = (h + pt + pb - k) / s + 1, ow = (w + pl + pr - k) / s + 1;
    float *in = rnd(&r, (size_t)n * h * w * c);
    float *o = malloc(sizeof(float) * n * oh * ow * c);
    for (int is_max = 0; is_max < 2; is_max++) {
        for (int zero_pad = 0; zero_pad < 2; zero_pad++) {
            float pv = zero_pad ? 0.0f : -INFINITY;
            cnn_pool2d(is_max, n, h, w, c, oh, ow, k, k, s, s, pt, pl, pv, in, o);
            for (int b = 0; b < n; b++) for (int y = 0; y < oh; y++) for (int x = 0; x < ow; x++)
                for (int ch = 0; ch < c; ch++) {
                    double m = is_max ? -INFINITY : 0; int cnt = 0, padded = 0;
                    for (int ky = 0; ky < k; ky++) for (int kx = 0; kx < k; kx++) {
                        int iy = y * s + ky - pt, ix = x * s + kx - pl;
                        if (iy < 0 || iy >= h || ix < 0 || ix >= w) { padded = 1; continue; }
                        float v = in[((b * h + iy) * w + ix) * c + ch];
                        cnt++;
                        if (is_max) m = v > m ? v : m; else m += v;
                    }
                    if (is_max && padded && pv > m) m = pv;
                    if (!is_max) m /= cnt;
                    CHECK_NEAR(o[((b * oh + y) * ow + x) * c + ch], m, 1e-6);
                }
        }
    }
    free(in); free(o);
}

TEST(gap_add_pad_dense) {
    duet_rng r;
    duet_rng_seed(&r, 5);
    int n = 3, h = 4, w = 5, c = 7;
    float *in = rnd(&r, (size_t)n * h * w * c), *in2 = rnd(&r, (size_t)n * h * w * c);
    float g[21];
    cnn_gap(n, h, w, c, in, g);
    for (int b = 0; b < n; b++) for (int ch = 0; ch < c; ch++) {
        double s = 0;
        for (int p = 0; p < h * w; p++) s += in[(b * h * w + p) * c + ch];
        CHECK_NEAR(g[b * c + ch], s / (h * w), 1e-6);
    }
    size_t cnt = (size_t)n * h * w * c;
    float *o = malloc(cnt * sizeof(float));
    cnn_add(cnt, in, in2, o, 0.0f, INFINITY);
    for (size_t i = 0; i < cnt; i++) CHECK_NEAR(o[i], fmaxf(in[i] + in2[i], 0.0f), 1e-7);
    int pt = 1, pb = 2, pl = 0, pr = 3, ph = h + pt + pb, pw = w + pl + pr;
    float *p = malloc(sizeof(float) * n * ph * pw * c);
    cnn_pad(n, h, w, c, pt, pb, pl, pr, in, p);
    for (int b = 0; b < n; b++) for (int y = 0; y < ph; y++) for (int x = 0; x < pw; x++) for (int ch = 0; ch < c; ch++) {
        int iy = y - pt, ix = x - pl;
        float want = (iy < 0 || iy >= h || ix < 0 || ix >= w) ? 0.0f : in[((b * h + iy) * w + ix) * c + ch];
        CHECK(p[((b * ph + y) * pw + x) * c + ch] == want);
    }
    int cin = 13, cout = 6;
    float *wt = rnd(&r, (size_t)cin * cout), *bias = rnd(&r, (size_t)cout), *x = rnd(&r, (size_t)n * cin), y[18];
    cnn_dense(n, cin, cout, wt, bias, x, y);
    for (int b = 0; b < n; b++) for (int j = 0; j < cout; j++) {
        double s = bias[j];
        for (int i = 0; i < cin; i++) s += (double)x[b * cin + i] * wt[i * cout + j];
        CHECK_NEAR(y[b * cout + j], s, 1e-5);
    }
    free(in); free(in2); free(o); free(p); free(wt); free(bias); free(x);
}

TEST(fake_quant) {
    float x[4] = {0.26f, -1.0f, 100.0f, 0.5f};
    cnn_bias_act(1, 4, x, NULL, 0.0f, 6.0f, 1, 0.1f, 3);
    CHECK_NEAR(x[0], 0.3, 1e-6);  /* round(2.6)+3 = 6 -> (6-3)*0.1 */
    CHECK_NEAR(x[1], 0.0, 1e-6);  /* clamped by relu6 first         */
    CHECK_NEAR(x[2], 6.0, 1e-5);
    CHECK_NEAR(x[3], 0.5, 1e-6);
}

TEST(same_padding) {
    int o, lo, hi;
    cnn_same_pad(224, 3, 2, &o, &lo, &hi);  /* TF: total 1, all at the end */
    CHECK(o == 112 && lo == 0 && hi == 1);
    cnn_same_pad(7, 3, 1, &o, &lo, &hi);
    CHECK(o == 7 && lo == 1 && hi == 1);
    cnn_same_pad(8, 4, 1, &o, &lo, &hi);
    CHECK(o == 8 && lo == 1 && hi == 2);
}

int main(void) {
    RUN(conv_vs_naive);
    RUN(dwconv_vs_naive);
    RUN(conv_chunked_im2col);
    RUN(pools_vs_naive);
    RUN(gap_add_pad_dense);
    RUN(fake_quant);
    RUN(same_padding);
    return check_summary("image_ops");
}
