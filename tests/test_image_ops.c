/* test_image_ops.c -- every CNN layer as the oneDNN executor runs it (a
 * graph of one or a few layers, src/image/dnn_plan.c), against a naive loop
 * in double on awkward shapes: stride 2, asymmetric padding, channel counts
 * not a multiple of 8, batches of several images; the residual sum fused
 * into a convolution (in place and copied), padding folded and
 * materialized, re-quantization, plans cached per batch size, and a layer
 * oneDNN refuses named in the error. f32 within 1e-5 of the largest output;
 * bf16 (where the CPU has it) within 3e-2. Prints the ISA it ran on. */
#include "check.h"
#include "image/image.h"

static float frand(duet_rng *r) { return 2.0f * duet_rng_uniform(r) - 1.0f; }
static float *rnd(duet_rng *r, size_t n) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = frand(r);
    return x;
}

/* ------------------------------------------------------------ graphs */

static duet_cnn *graph(int h, int w, int c) {
    duet_cnn *net = calloc(1, sizeof *net);
    net->feature = net->output = -1;
    net->pre = CNN_PRE_NONE;
    net->input = cnn_add_node(net, CNN_INPUT, "in");
    net->nodes[0].h = h; net->nodes[0].w = w; net->nodes[0].c = c;
    return net;
}

/* Appends a layer reading in0 (and in1 >= 0); its shape is set by the
 * caller through the returned index. */
static int layer(duet_cnn *net, cnn_op op, const char *name, int in0, int in1) {
    int id = cnn_add_node(net, op, name);
    cnn_node *n = &net->nodes[id];
    n->in[0] = in0; n->in[1] = in1; n->n_in = in1 >= 0 ? 2 : 1;
    const cnn_node *p = &net->nodes[in0];
    n->h = p->h; n->w = p->w; n->c = p->c;
    return id;
}

static int pad_layer(duet_cnn *net, int in, int pt, int pb, int pl, int pr) {
    int id = layer(net, CNN_PAD, "pad", in, -1);
    cnn_node *n = &net->nodes[id];
    n->pt = pt; n->pb = pb; n->pl = pl; n->pr = pr;
    n->h += pt + pb; n->w += pl + pr;
    return id;
}

static int conv_layer(duet_cnn *net, const char *name, int in, int dw, int cout, int k, int s, int pt, int pb,
                      int pl, int pr, duet_rng *r) {
    int id = layer(net, dw ? CNN_DWCONV : CNN_CONV, name, in, -1);
    cnn_node *n = &net->nodes[id];
    const cnn_node *p = &net->nodes[in];
    n->kh = n->kw = k; n->sh = n->sw = s; n->pt = pt; n->pb = pb; n->pl = pl; n->pr = pr;
    n->c = dw ? p->c : cout;
    n->h = (p->h + pt + pb - k) / s + 1;
    n->w = (p->w + pl + pr - k) / s + 1;
    n->wt = rnd(r, (size_t)k * k * (dw ? 1 : p->c) * n->c);
    n->bias = rnd(r, (size_t)n->c);
    return id;
}

/* Runs net (output: node out) on n inputs; prec f32 or bf16. */
static int run(duet_cnn *net, int out, duet_precision prec, const float *in, size_t n, float *y) {
    duet_error e = {0};
    net->feature = net->output = out;
    CHECK_MSG(cnn_link(net, "test", &e) == DUET_OK, "%s", e.msg);
    CHECK_MSG(duet_cnn_set_precision(net, prec, &e) == DUET_OK, "%s", e.msg);
    duet_status st = duet_cnn_run(net, in, n, y, NULL, &e);
    CHECK_MSG(st == DUET_OK, "%s", e.msg);
    return st == DUET_OK;
}

static double max_rel(const float *a, const double *b, size_t n) {
    double m = 0, s = 1e-6;
    for (size_t i = 0; i < n; i++) if (fabs(b[i]) > s) s = fabs(b[i]);
    for (size_t i = 0; i < n; i++) { double d = fabs((double)a[i] - b[i]) / s; if (d > m) m = d; }
    return m;
}

static double tol(duet_precision p) { return p == DUET_PRECISION_BF16 ? 3e-2 : 1e-5; }

/* The precisions to test: f32, and bf16 where the CPU computes it. */
static int n_precs(void) { return duet_cpu_has_bf16() ? 2 : 1; }
static duet_precision prec_at(int i) { return i ? DUET_PRECISION_BF16 : DUET_PRECISION_F32; }

/* naive NHWC conv of node nd on x [n x p->h x p->w x p->c]; out double */
static void naive_conv(const cnn_node *nd, const cnn_node *p, size_t n, const float *x, double *out) {
    int dw = nd->op == CNN_DWCONV;
    for (size_t b = 0; b < n; b++)
        for (int oy = 0; oy < nd->h; oy++) for (int ox = 0; ox < nd->w; ox++) for (int co = 0; co < nd->c; co++) {
            double s = nd->bias ? nd->bias[co] : 0;
            for (int ky = 0; ky < nd->kh; ky++) for (int kx = 0; kx < nd->kw; kx++) {
                int iy = oy * nd->sh + ky - nd->pt, ix = ox * nd->sw + kx - nd->pl;
                if (iy < 0 || iy >= p->h || ix < 0 || ix >= p->w) continue;
                const float *q = x + ((b * p->h + iy) * p->w + ix) * p->c;
                if (dw) s += (double)nd->wt[(ky * nd->kw + kx) * nd->c + co] * q[co];
                else
                    for (int ci = 0; ci < p->c; ci++)
                        s += (double)nd->wt[((ky * nd->kw + kx) * p->c + ci) * nd->c + co] * q[ci];
            }
            s = s < nd->act_lo ? nd->act_lo : s > nd->act_hi ? nd->act_hi : s;
            out[((b * nd->h + oy) * nd->w + ox) * nd->c + co] = s;
        }
}

static size_t count(const cnn_node *nd, size_t n) { return n * (size_t)nd->h * nd->w * nd->c; }

/* ------------------------------------------------------------ layers */

typedef struct conv_case { int n, h, w, cin, cout, k, s, pt, pb, pl, pr; float lo, hi; } conv_case;

static void run_conv_case(const conv_case *cc, int dw) {
    for (int pi = 0; pi < n_precs(); pi++) {
        duet_rng r;
        duet_rng_seed(&r, 7);
        duet_cnn *net = graph(cc->h, cc->w, cc->cin);
        int id = conv_layer(net, "conv", 0, dw, cc->cout, cc->k, cc->s, cc->pt, cc->pb, cc->pl, cc->pr, &r);
        net->nodes[id].act_lo = cc->lo;
        net->nodes[id].act_hi = cc->hi;
        float *x = rnd(&r, (size_t)cc->n * cc->h * cc->w * cc->cin);
        size_t on = count(&net->nodes[id], (size_t)cc->n);
        float *y = malloc(on * sizeof(float));
        double *ref = malloc(on * sizeof(double));
        if (run(net, id, prec_at(pi), x, (size_t)cc->n, y)) {
            naive_conv(&net->nodes[id], &net->nodes[0], (size_t)cc->n, x, ref);
            double e = max_rel(y, ref, on);
            CHECK_MSG(e < tol(prec_at(pi)), "%s %s %dx%dx%d -> %d k%d s%d pad %d,%d,%d,%d: max rel err %g",
                      duet_precision_name(prec_at(pi)), dw ? "dwconv" : "conv", cc->h, cc->w, cc->cin,
                      net->nodes[id].c, cc->k, cc->s, cc->pt, cc->pb, cc->pl, cc->pr, e);
        }
        free(x); free(y); free(ref);
        duet_cnn_free(net);
    }
}

static const conv_case cases[] = {
    {2, 9, 11, 5, 7, 3, 2, 0, 1, 1, 0, -INFINITY, INFINITY},  /* stride 2, asymmetric pad */
    {3, 8, 8, 13, 6, 1, 1, 0, 0, 0, 0, 0.0f, INFINITY},       /* 1x1, relu */
    {1, 10, 7, 3, 9, 7, 2, 3, 3, 3, 3, 0.0f, 6.0f},           /* conv1-like, relu6 */
    {2, 6, 5, 11, 3, 1, 2, 0, 0, 0, 0, -INFINITY, INFINITY},  /* 1x1 stride 2 */
    {1, 5, 9, 17, 5, 3, 1, 2, 0, 0, 1, -INFINITY, 0.5f},      /* clip above only */
    {2, 40, 40, 300, 5, 3, 1, 1, 1, 1, 1, -INFINITY, INFINITY}, /* K = 2700 */
};

TEST(conv_vs_naive) {
    fprintf(stderr, "  oneDNN ISA %s; precisions f32%s\n", duet_cpu_isa(), duet_cpu_has_bf16() ? ", bf16" : " (no native bf16)");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_conv_case(&cases[i], 0);
}

TEST(dwconv_vs_naive) {
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_conv_case(&cases[i], 1);
}

/* Re-quantization as convolution post-ops (after relu6, and alone with a
 * zero point of 128): every output on the uint8 grid of the naive result,
 * at most one step away where f32 rounding lands on the other side of a
 * half step (at most 1% of them). */
TEST(conv_requant_vs_naive) {
    for (int k = 0; k < 2; k++) {
        duet_rng r;
        duet_rng_seed(&r, 31 + k);
        int n = 2, h = 9, w = 7, c = 24;
        float sc = k ? 0.1f : 0.05f;
        int zp = k ? 128 : 0;
        duet_cnn *net = graph(h, w, c);
        int id = conv_layer(net, "q", 0, k, 32, 3, 1, 1, 1, 1, 1, &r);
        cnn_node *nd = &net->nodes[id];
        if (!k) { nd->act_lo = 0; nd->act_hi = 6; }
        nd->fq = 1; nd->q_scale = sc; nd->q_zp = zp;
        float *x = rnd(&r, (size_t)n * h * w * c);
        for (size_t i = 0; i < (size_t)n * h * w * c; i++) x[i] *= 4;
        size_t on = count(nd, (size_t)n);
        float *y = malloc(on * sizeof(float));
        double *ref = malloc(on * sizeof(double));
        if (run(net, id, DUET_PRECISION_F32, x, (size_t)n, y)) {
            naive_conv(&net->nodes[id], &net->nodes[0], (size_t)n, x, ref);
            size_t off = 0, bad = 0;
            for (size_t i = 0; i < on; i++) {
                double q = nearbyint(ref[i] / sc) + zp;
                q = (q < 0 ? 0 : q > 255 ? 255 : q) - zp;
                double steps = y[i] / sc, d = fabs(steps - q);
                if (fabs(steps - nearbyint(steps)) > 1e-3) bad++;
                if (d > 1e-3) off++;
                if (d > 1.001) bad++;
            }
            CHECK_MSG(bad == 0 && off * 100 <= on, "%s requant: %zu of %zu off the grid or > 1 step, %zu one step off",
                      k ? "dwconv" : "conv", bad, on, off);
        }
        free(x); free(y); free(ref);
        duet_cnn_free(net);
    }
}

/* max pooling (-inf padding, and zero padding of signed values, which
 * needs a padded copy), average pooling excluding padded cells, GAP */
TEST(pools_vs_naive) {
    duet_rng r;
    duet_rng_seed(&r, 3);
    int n = 2, h = 9, w = 8, c = 5, k = 3, s = 2, pt = 1, pl = 0, pb = 1, pr = 1;
    int oh = (h + pt + pb - k) / s + 1, ow = (w + pl + pr - k) / s + 1;
    float *x = rnd(&r, (size_t)n * h * w * c);
    float *y = malloc(sizeof(float) * n * oh * ow * c);
    for (int kind = 0; kind < 3; kind++) {
        int is_max = kind < 2;
        float pv = kind == 1 ? 0.0f : -INFINITY;
        duet_cnn *net = graph(h, w, c);
        int id = layer(net, is_max ? CNN_MAXPOOL : CNN_AVGPOOL, "pool", 0, -1);
        cnn_node *nd = &net->nodes[id];
        nd->kh = nd->kw = k; nd->sh = nd->sw = s; nd->pt = pt; nd->pb = pb; nd->pl = pl; nd->pr = pr;
        nd->h = oh; nd->w = ow; nd->pad_value = pv;
        if (run(net, id, DUET_PRECISION_F32, x, (size_t)n, y))
            for (int b = 0; b < n; b++) for (int oy = 0; oy < oh; oy++) for (int ox = 0; ox < ow; ox++)
                for (int ch = 0; ch < c; ch++) {
                    double m = is_max ? -INFINITY : 0;
                    int cnt = 0, padded = 0;
                    for (int ky = 0; ky < k; ky++) for (int kx = 0; kx < k; kx++) {
                        int iy = oy * s + ky - pt, ix = ox * s + kx - pl;
                        if (iy < 0 || iy >= h || ix < 0 || ix >= w) { padded = 1; continue; }
                        float v = x[((b * h + iy) * w + ix) * c + ch];
                        cnt++;
                        if (is_max) m = v > m ? v : m; else m += v;
                    }
                    if (is_max && padded && pv > m) m = pv;
                    if (!is_max) m /= cnt;
                    CHECK_NEAR(y[((b * oh + oy) * ow + ox) * c + ch], m, 1e-6);
                }
        duet_cnn_free(net);
    }
    duet_cnn *net = graph(h, w, c);
    int g = layer(net, CNN_GAP, "gap", 0, -1);
    net->nodes[g].h = net->nodes[g].w = 1;
    if (run(net, g, DUET_PRECISION_F32, x, (size_t)n, y))
        for (int b = 0; b < n; b++) for (int ch = 0; ch < c; ch++) {
            double sum = 0;
            for (int p = 0; p < h * w; p++) sum += x[(b * h * w + p) * c + ch];
            CHECK_NEAR(y[b * c + ch], sum / (h * w), 1e-6);
        }
    duet_cnn_free(net);
    free(x); free(y);
}

/* The residual: out = relu(conv(X) + other) with the sum fused into the
 * convolution: in place (other read by nothing else) and copied (other
 * still read by the convolution itself). */
TEST(residual_fused_vs_naive) {
    for (int pi = 0; pi < n_precs(); pi++)
        for (int inplace = 0; inplace < 2; inplace++) {
            duet_rng r;
            duet_rng_seed(&r, 21);
            int n = 2, h = 7, w = 6, c = 12;
            duet_cnn *net = graph(h, w, c);
            int a = conv_layer(net, "a", 0, 0, 16, 1, 1, 0, 0, 0, 0, &r);
            net->nodes[a].act_lo = 0;
            int b = conv_layer(net, "b", a, 0, 16, 3, 1, 1, 1, 1, 1, &r);
            int z = inplace ? conv_layer(net, "z", a, 0, 16, 1, 1, 0, 0, 0, 0, &r) : b;
            int add = layer(net, CNN_ADD, "add", inplace ? b : a, z);
            net->nodes[add].act_lo = 0;
            float *x = rnd(&r, (size_t)n * h * w * c);
            size_t an = count(&net->nodes[a], (size_t)n);
            float *y = malloc(an * sizeof(float));
            double *ra = malloc(an * sizeof(double)), *rb = malloc(an * sizeof(double)), *rz = malloc(an * sizeof(double));
            float *fa = malloc(an * sizeof(float));
            if (run(net, add, prec_at(pi), x, (size_t)n, y)) {
                naive_conv(&net->nodes[a], &net->nodes[0], (size_t)n, x, ra);
                for (size_t i = 0; i < an; i++) fa[i] = (float)ra[i];
                naive_conv(&net->nodes[b], &net->nodes[a], (size_t)n, fa, rb);
                naive_conv(&net->nodes[z], &net->nodes[a], (size_t)n, fa, rz);
                for (size_t i = 0; i < an; i++) {
                    double v = (inplace ? rb[i] : ra[i]) + rz[i];
                    rb[i] = v > 0 ? v : 0;
                }
                double e = max_rel(y, rb, an);
                CHECK_MSG(e < tol(prec_at(pi)), "%s residual (%s): max rel err %g", duet_precision_name(prec_at(pi)),
                          inplace ? "in place" : "copied", e);
            }
            free(x); free(y); free(ra); free(rb); free(rz); free(fa);
            duet_cnn_free(net);
        }
}

/* PAD folded into the convolution after it; PAD materialized (its reader
 * is an IDENTITY that clamps and re-quantizes); an unfused ADD. */
TEST(pad_identity_add) {
    duet_rng r;
    duet_rng_seed(&r, 5);
    int n = 3, h = 4, w = 5, c = 7, pt = 1, pb = 2, pl = 0, pr = 3, ph = h + pt + pb, pw = w + pl + pr;
    float *x = rnd(&r, (size_t)n * h * w * c);
    float *y = malloc(sizeof(float) * n * ph * pw * c * 2);
    double *ref = malloc(sizeof(double) * n * ph * pw * c * 2);
    /* folded: conv over PAD == conv with those pads */
    duet_cnn *net = graph(h, w, c);
    int p = pad_layer(net, 0, pt, pb, pl, pr);
    int cv = conv_layer(net, "conv", p, 0, 6, 3, 2, 0, 0, 0, 0, &r);
    if (run(net, cv, DUET_PRECISION_F32, x, (size_t)n, y)) {
        cnn_node padded = net->nodes[cv];
        padded.pt = pt; padded.pb = pb; padded.pl = pl; padded.pr = pr;
        naive_conv(&padded, &net->nodes[0], (size_t)n, x, ref);
        double e = max_rel(y, ref, count(&padded, (size_t)n));
        CHECK_MSG(e < 1e-5, "conv over a folded PAD: max rel err %g", e);
    }
    duet_cnn_free(net);
    /* materialized: clamp [-0.5, 0.5], then the uint8 grid of scale 0.1, zero point 3 */
    net = graph(h, w, c);
    p = pad_layer(net, 0, pt, pb, pl, pr);
    int id = layer(net, CNN_IDENTITY, "clamp", p, -1);
    net->nodes[id].act_lo = -0.5f; net->nodes[id].act_hi = 0.5f;
    net->nodes[id].fq = 1; net->nodes[id].q_scale = 0.1f; net->nodes[id].q_zp = 3;
    if (run(net, id, DUET_PRECISION_F32, x, (size_t)n, y))
        for (int b = 0; b < n; b++) for (int yy = 0; yy < ph; yy++) for (int xx = 0; xx < pw; xx++)
            for (int ch = 0; ch < c; ch++) {
                int iy = yy - pt, ix = xx - pl;
                double v = (iy < 0 || iy >= h || ix < 0 || ix >= w) ? 0.0 : x[((b * h + iy) * w + ix) * c + ch];
                v = v < -0.5 ? -0.5 : v > 0.5 ? 0.5 : v;
                double q = nearbyint(v / 0.1) + 3;
                q = q < 0 ? 0 : q > 255 ? 255 : q;
                CHECK_NEAR(y[((b * ph + yy) * pw + xx) * c + ch], (q - 3) * 0.1, 1e-6);
            }
    duet_cnn_free(net);
    /* ADD of two different maps, relu */
    net = graph(h, w, c);
    int a = conv_layer(net, "a", 0, 0, c, 1, 1, 0, 0, 0, 0, &r);
    net->nodes[a].act_lo = 0; /* not fusable: it clamps */
    int s = layer(net, CNN_ADD, "add", 0, a);
    net->nodes[s].act_lo = 0;
    size_t cnt = (size_t)n * h * w * c;
    if (run(net, s, DUET_PRECISION_F32, x, (size_t)n, y)) {
        naive_conv(&net->nodes[a], &net->nodes[0], (size_t)n, x, ref);
        for (size_t i = 0; i < cnt; i++) { double v = ref[i] + x[i]; ref[i] = v > 0 ? v : 0; }
        double e = max_rel(y, ref, cnt);
        CHECK_MSG(e < 1e-5, "add: max rel err %g", e);
    }
    duet_cnn_free(net);
    free(x); free(y); free(ref);
}

TEST(fake_quant) {
    float x[4] = {0.26f, -1.0f, 100.0f, 0.5f}, y[4];
    duet_cnn *net = graph(1, 1, 4);
    int id = layer(net, CNN_IDENTITY, "q", 0, -1);
    cnn_node *nd = &net->nodes[id];
    nd->act_lo = 0.0f; nd->act_hi = 6.0f; nd->fq = 1; nd->q_scale = 0.1f; nd->q_zp = 3;
    if (run(net, id, DUET_PRECISION_F32, x, 1, y)) {
        CHECK_NEAR(y[0], 0.3, 1e-6);  /* round(2.6)+3 = 6 -> (6-3)*0.1 */
        CHECK_NEAR(y[1], 0.0, 1e-6);  /* clamped by relu6 first         */
        CHECK_NEAR(y[2], 6.0, 1e-5);
        CHECK_NEAR(y[3], 0.5, 1e-6);
    }
    duet_cnn_free(net);
}

/* DENSE over a flattened [2 x 3 x 5] map (NHWC order), batch 3 */
TEST(dense_vs_naive) {
    duet_rng r;
    duet_rng_seed(&r, 8);
    int n = 3, h = 2, w = 3, c = 5, cin = h * w * c, cout = 6;
    duet_cnn *net = graph(h, w, c);
    int id = layer(net, CNN_DENSE, "fc", 0, -1);
    cnn_node *nd = &net->nodes[id];
    nd->h = nd->w = 1; nd->c = cout;
    nd->wt = rnd(&r, (size_t)cin * cout);
    nd->bias = rnd(&r, (size_t)cout);
    float *x = rnd(&r, (size_t)n * cin), y[18];
    if (run(net, id, DUET_PRECISION_F32, x, (size_t)n, y))
        for (int b = 0; b < n; b++) for (int j = 0; j < cout; j++) {
            double s = net->nodes[id].bias[j];
            for (int i = 0; i < cin; i++) s += (double)x[b * cin + i] * net->nodes[id].wt[i * cout + j];
            CHECK_NEAR(y[b * cout + j], s, 1e-5);
        }
    free(x);
    duet_cnn_free(net);
}

/* Plans are kept per batch size: 2, 3, 2, 1 give the same rows. */
TEST(plans_per_batch) {
    duet_rng r;
    duet_rng_seed(&r, 12);
    duet_cnn *net = graph(6, 6, 4);
    int a = conv_layer(net, "a", 0, 0, 8, 3, 1, 1, 1, 1, 1, &r);
    int g = layer(net, CNN_GAP, "gap", a, -1);
    net->nodes[g].h = net->nodes[g].w = 1;
    float *x = rnd(&r, 3 * 6 * 6 * 4), y3[24], y[24];
    if (run(net, g, DUET_PRECISION_F32, x, 3, y3)) {
        size_t sizes[4] = {2, 3, 2, 1};
        duet_error e = {0};
        for (int k = 0; k < 4; k++) {
            CHECK_MSG(duet_cnn_run(net, x, sizes[k], y, NULL, &e) == DUET_OK, "%s", e.msg);
            for (size_t i = 0; i < sizes[k] * 8; i++) CHECK_NEAR(y[i], y3[i], 1e-6);
        }
    }
    free(x);
    duet_cnn_free(net);
}

/* A layer oneDNN refuses (its output shape disagrees with its input):
 * the error names the layer and its shape. */
TEST(bad_layer_named) {
    duet_error e = {0};
    duet_rng r;
    duet_rng_seed(&r, 1);
    duet_cnn *net = graph(8, 8, 3);
    int a = conv_layer(net, "broken_conv", 0, 0, 4, 3, 1, 1, 1, 1, 1, &r);
    net->nodes[a].h = 5; /* 8 rows with this padding */
    net->feature = net->output = a;
    CHECK(cnn_link(net, "test", &e) == DUET_OK);
    float x[2 * 8 * 8 * 3] = {0}, y[2 * 5 * 8 * 4];
    CHECK(duet_cnn_run(net, x, 2, y, NULL, &e) != DUET_OK);
    CHECK_MSG(strstr(e.msg, "broken_conv") && strstr(e.msg, "8x8x3 -> 5x8x4") && strstr(e.msg, "batch 2"),
              "message: %s", e.msg);
    duet_cnn_free(net);
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
    RUN(conv_requant_vs_naive);
    RUN(pools_vs_naive);
    RUN(residual_fused_vs_naive);
    RUN(pad_identity_add);
    RUN(fake_quant);
    RUN(dense_vs_naive);
    RUN(plans_per_batch);
    RUN(bad_layer_named);
    RUN(same_padding);
    return check_summary("image_ops");
}
