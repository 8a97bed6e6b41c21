/* test_image_decode.c -- decoding (JPEG against PIL's pixels, PNG and BMP
 * exactly), crops, and bad input: truncated JPEG, text named .jpg, empty
 * file, headers claiming 30000x30000 pixels (refused before allocating). */
#include "check.h"
#include "duet.h"

#define FIX "tests/fixtures/image/"

static int grad(int x, int y, int c) { return c == 0 ? (x * 7) % 256 : c == 1 ? (y * 11) % 256 : (x * y) % 256; }

static unsigned char *slurp(const char *p, size_t *n) {
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long l = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)l + 1);
    *n = fread(b, 1, (size_t)l, f);
    fclose(f);
    return b;
}

TEST(png_bmp_exact) {
    const char *files[2] = {FIX "grad.png", FIX "grad.bmp"};
    for (int k = 0; k < 2; k++) {
        duet_image im;
        duet_error e = {0};
        CHECK_MSG(duet_image_read(files[k], &im, &e) == DUET_OK, "%s", e.msg);
        CHECK(im.width == 37 && im.height == 23);
        int bad = 0;
        for (int y = 0; y < 23 && im.rgb; y++) for (int x = 0; x < 37; x++) for (int c = 0; c < 3; c++)
            bad += im.rgb[(y * 37 + x) * 3 + c] != grad(x, y, c);
        CHECK_MSG(bad == 0, "%s: %d pixels differ", files[k], bad);
        duet_image_free(&im);
    }
}

TEST(jpeg_vs_pil) {
    duet_image im;
    duet_error e = {0};
    duet_mat ref = {0};
    CHECK(duet_npy_read(FIX "grad_jpg.npy", &ref, &e) == DUET_OK);
    CHECK_MSG(duet_image_read(FIX "grad.jpg", &im, &e) == DUET_OK, "%s", e.msg);
    CHECK(im.width == 37 && im.height == 23 && ref.rows == 37 * 23);
    int maxd = 0;
    for (size_t i = 0; im.rgb && ref.data && i < 37 * 23 * 3; i++) {
        int d = abs((int)im.rgb[i] - (int)ref.data[i]);
        if (d > maxd) maxd = d;
    }
    CHECK_MSG(maxd == 0, "max pixel difference from PIL %d", maxd);
    duet_image_free(&im);
    duet_mat_free(&ref);
}

static void expect_fail(const void *buf, size_t len, const char *name, duet_status want, const char *needle) {
    duet_image im;
    duet_error e = {0};
    duet_status st = duet_image_decode(buf, len, name, &im, &e);
    CHECK_MSG(st == want, "%s: status %s, want %s (%s)", name, duet_status_str(st), duet_status_str(want), e.msg);
    CHECK_MSG(strstr(e.msg, name) && strstr(e.msg, needle), "%s: message '%s' lacks '%s'", name, e.msg, needle);
    CHECK(im.rgb == NULL);
    duet_image_free(&im);
}

TEST(bad_inputs) {
    size_t n;
    unsigned char *j = slurp(FIX "grad.jpg", &n);
    CHECK(j != NULL);
    if (!j) return;
    expect_fail(j, n / 2, "trunc.jpg", DUET_ERR_FORMAT, "JPEG");
    expect_fail(j, 200, "trunc2.jpg", DUET_ERR_FORMAT, "JPEG");
    free(j);
    unsigned char *p = slurp(FIX "grad.png", &n);
    expect_fail(p, n - 20, "trunc.png", DUET_ERR_FORMAT, "PNG");
    free(p);
    unsigned char *b = slurp(FIX "grad.bmp", &n);
    expect_fail(b, 100, "trunc.bmp", DUET_ERR_FORMAT, "BMP");
    free(b);
    expect_fail("hello, I am text\n", 17, "text.jpg", DUET_ERR_FORMAT, "not a JPEG, PNG or BMP");
    expect_fail("", 0, "empty.jpg", DUET_ERR_FORMAT, "empty");
    const char *huge[3] = {FIX "huge.png", FIX "huge.bmp", FIX "huge.jpg"};
    for (int k = 0; k < 3; k++) {
        unsigned char *h = slurp(huge[k], &n);
        CHECK(h != NULL);
        if (h) expect_fail(h, n, huge[k], DUET_ERR_NOMEM, "30000x30000");
        free(h);
    }
    duet_image im;
    duet_error e = {0};
    CHECK(duet_image_read(FIX "no-such.jpg", &im, &e) == DUET_ERR_IO);
    CHECK(strstr(e.msg, "no-such.jpg") != NULL);
}

TEST(crops) {
    duet_image im;
    duet_error e = {0};
    CHECK(duet_image_read(FIX "grad.png", &im, &e) == DUET_OK);
    if (!im.rgb) return;
    const size_t P = 224 * 224 * 3;
    float *o = malloc(10 * P * sizeof(float));
    /* 1 crop: nearest, source column about floor((x + 0.5) * 37 / 224) */
    CHECK(duet_image_crops(&im, 1, o, &e) == DUET_OK);
    int bad = 0;
    for (int y = 1; y < 224; y += 13) for (int x = 1; x < 224; x += 7) {
        int sx = (int)((x + 0.5) * 37 / 224), sy = (int)((y + 0.5) * 23 / 224);
        for (int c = 0; c < 3; c++) bad += o[(y * 224 + x) * 3 + c] != grad(sx, sy, c);
    }
    CHECK(bad == 0);
    /* 10 crops: the mirrored top-left crop is the top-right crop flipped */
    CHECK(duet_image_crops(&im, 10, o, &e) == DUET_OK);
    bad = 0;
    for (int y = 0; y < 224; y += 5) for (int x = 0; x < 224; x++) for (int c = 0; c < 3; c++)
        bad += o[5 * P + (y * 224 + x) * 3 + c] != o[1 * P + (y * 224 + 223 - x) * 3 + c];
    CHECK(bad == 0);
    for (size_t i = 0; i < 10 * P; i++) if (!(o[i] >= 0.0f && o[i] <= 255.0f)) { bad++; break; }
    CHECK(bad == 0);
    CHECK(duet_image_crops(&im, 3, o, &e) == DUET_ERR_INVALID_ARG);
    /* a 224x224 image passes the 1-crop mode unchanged */
    duet_image sq = {malloc(P), 224, 224};
    for (size_t i = 0; i < P; i++) sq.rgb[i] = (unsigned char)(i * 31 % 251);
    CHECK(duet_image_crops(&sq, 1, o, &e) == DUET_OK);
    bad = 0;
    for (size_t i = 0; i < P; i++) bad += o[i] != sq.rgb[i];
    CHECK(bad == 0);
    /* a constant image stays constant through the antialiased resize */
    memset(sq.rgb, 77, P);
    CHECK(duet_image_crops(&sq, 10, o, &e) == DUET_OK);
    bad = 0;
    for (size_t i = 0; i < 10 * P; i++) bad += fabsf(o[i] - 77.0f) > 1e-3f;
    CHECK(bad == 0);
    duet_image_free(&sq);
    duet_image_free(&im);
    duet_image_free(NULL);
    free(o);
}

int main(void) {
    RUN(png_bmp_exact);
    RUN(jpeg_vs_pil);
    RUN(bad_inputs);
    RUN(crops);
    return check_summary("image_decode");
}
