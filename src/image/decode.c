/* decode.c -- image files to RGB pixels (libjpeg-turbo, libpng, stb_image
 * for BMP), the crops fed to the networks, and label files.
 * Every decoder reads the header first and refuses images over
 * DUET_IMAGE_MAX_PIXELS before allocating pixel memory. */
#define _POSIX_C_SOURCE 200809L
#include "image/image.h"
#include <jansson.h>
#include <jpeglib.h>
#include <jerror.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#define STBI_NO_STDIO
#include <stb/stb_image.h>

void duet_image_free(duet_image *im) {
    if (!im) return;
    free(im->rgb);
    memset(im, 0, sizeof *im);
}

static duet_status check_dims(size_t w, size_t h, const char *name, duet_error *err) {
    if (w == 0 || h == 0)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: image header gives %zux%zu pixels", name, w, h);
    if (w > DUET_IMAGE_MAX_PIXELS / h)
        return duet_fail(err, DUET_ERR_NOMEM,
                         "%s: image header claims %zux%zu pixels, over the limit of %zu; refused",
                         name, w, h, (size_t)DUET_IMAGE_MAX_PIXELS);
    return DUET_OK;
}

/* ---------------------------------------------------------------- JPEG */

typedef struct jerr {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} jerr;

static void j_error_exit(j_common_ptr cinfo) {
    jerr *e = (jerr *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jb, 1);
}

/* Warnings (truncated data, corrupt entropy) are errors: duet refuses
 * images that libjpeg would pad with grey. */
static void j_emit(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code != JWRN_EXTRANEOUS_DATA) j_error_exit(cinfo);
}

static duet_status decode_jpeg(const unsigned char *buf, size_t len, const char *name,
                               duet_image *out, duet_error *err) {
    struct jpeg_decompress_struct ci;
    jerr je;
    uint8_t *volatile px = NULL;
    memset(&ci, 0, sizeof ci);
    ci.err = jpeg_std_error(&je.pub);
    je.pub.error_exit = j_error_exit;
    je.pub.emit_message = j_emit;
    if (setjmp(je.jb)) {
        jpeg_destroy_decompress(&ci);
        free(px);
        return duet_fail(err, DUET_ERR_FORMAT, "%s: JPEG: %s", name, je.msg);
    }
    jpeg_create_decompress(&ci);
    jpeg_mem_src(&ci, buf, (unsigned long)len);
    jpeg_read_header(&ci, TRUE);
    duet_status st = check_dims(ci.image_width, ci.image_height, name, err);
    if (st) { jpeg_destroy_decompress(&ci); return st; }
    if (ci.jpeg_color_space == JCS_CMYK || ci.jpeg_color_space == JCS_YCCK) {
        jpeg_destroy_decompress(&ci);
        return duet_fail(err, DUET_ERR_UNSUPPORTED, "%s: CMYK JPEG is not supported", name);
    }
    ci.out_color_space = JCS_RGB;
    jpeg_start_decompress(&ci);
    size_t w = ci.output_width, h = ci.output_height;
    if (ci.output_components != 3 || check_dims(w, h, name, err)) {
        jpeg_destroy_decompress(&ci);
        return duet_fail(err, DUET_ERR_FORMAT, "%s: JPEG: unexpected output layout", name);
    }
    px = malloc(w * h * 3);
    if (!px) { jpeg_destroy_decompress(&ci); return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", name); }
    while (ci.output_scanline < ci.output_height) {
        JSAMPROW row = px + (size_t)ci.output_scanline * w * 3;
        jpeg_read_scanlines(&ci, &row, 1);
    }
    jpeg_finish_decompress(&ci);
    jpeg_destroy_decompress(&ci);
    out->rgb = px; out->width = w; out->height = h;
    return DUET_OK;
}

/* ---------------------------------------------------------------- PNG */

static duet_status decode_png(const unsigned char *buf, size_t len, const char *name,
                              duet_image *out, duet_error *err) {
    png_image pi;
    memset(&pi, 0, sizeof pi);
    pi.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&pi, buf, len))
        return duet_fail(err, DUET_ERR_FORMAT, "%s: PNG: %s", name, pi.message);
    duet_status st = check_dims(pi.width, pi.height, name, err);
    if (st) { png_image_free(&pi); return st; }
    pi.format = PNG_FORMAT_RGB;
    size_t w = pi.width, h = pi.height;
    uint8_t *px = malloc(w * h * 3);
    if (!px) { png_image_free(&pi); return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", name); }
    if (!png_image_finish_read(&pi, NULL, px, (png_int_32)(w * 3), NULL)) {
        free(px);
        duet_fail(err, DUET_ERR_FORMAT, "%s: PNG: %s", name, pi.message);
        png_image_free(&pi);
        return DUET_ERR_FORMAT;
    }
    png_image_free(&pi);
    out->rgb = px; out->width = w; out->height = h;
    return DUET_OK;
}

/* ---------------------------------------------------------------- BMP */

static duet_status decode_bmp(const unsigned char *buf, size_t len, const char *name,
                              duet_image *out, duet_error *err) {
    if (len > INT32_MAX) return duet_fail(err, DUET_ERR_FORMAT, "%s: BMP over 2 GB", name);
    int w = 0, h = 0, comp = 0;
    if (!stbi_info_from_memory(buf, (int)len, &w, &h, &comp))
        return duet_fail(err, DUET_ERR_FORMAT, "%s: BMP: %s", name, stbi_failure_reason());
    duet_status st = check_dims(w > 0 ? (size_t)w : 0, h > 0 ? (size_t)h : 0, name, err);
    if (st) return st;
    /* stb_image pads a short uncompressed BMP with zeros: refuse it here */
    if (len >= 34) {
        uint32_t off, compr;
        uint16_t bpp;
        memcpy(&off, buf + 10, 4); memcpy(&bpp, buf + 28, 2); memcpy(&compr, buf + 30, 4);
        if ((compr == 0 || compr == 3) && bpp > 0 && bpp <= 32) {
            uint64_t stride = ((uint64_t)w * bpp + 31) / 32 * 4, need = (uint64_t)off + stride * (uint64_t)h;
            if (need > len)
                return duet_fail(err, DUET_ERR_FORMAT, "%s: BMP: truncated (%zu bytes, the pixels need %llu)", name, len,
                                 (unsigned long long)need);
        }
    }
    uint8_t *px = stbi_load_from_memory(buf, (int)len, &w, &h, &comp, 3);
    if (!px) return duet_fail(err, DUET_ERR_FORMAT, "%s: BMP: %s", name, stbi_failure_reason());
    uint8_t *own = malloc((size_t)w * (size_t)h * 3);
    if (!own) { stbi_image_free(px); return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", name); }
    memcpy(own, px, (size_t)w * (size_t)h * 3);
    stbi_image_free(px);
    out->rgb = own; out->width = (size_t)w; out->height = (size_t)h;
    return DUET_OK;
}

duet_status duet_image_decode(const void *buf, size_t len, const char *name,
                              duet_image *out, duet_error *err) {
    const unsigned char *b = buf;
    memset(out, 0, sizeof *out);
    if (!name) name = "(image)";
    if (len == 0) return duet_fail(err, DUET_ERR_FORMAT, "%s: empty file", name);
    if (len >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return decode_jpeg(b, len, name, out, err);
    if (len >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0) return decode_png(b, len, name, out, err);
    if (len >= 2 && b[0] == 'B' && b[1] == 'M') return decode_bmp(b, len, name, out, err);
    return duet_fail(err, DUET_ERR_FORMAT, "%s: not a JPEG, PNG or BMP image", name);
}

duet_status duet_image_read(const char *path, duet_image *out, duet_error *err) {
    char *buf = NULL;
    size_t len = 0;
    memset(out, 0, sizeof *out);
    duet_status st = duet_read_file(path, (size_t)256 << 20, &buf, &len, err);
    if (st) return st;
    st = duet_image_decode(buf, len, path, out, err);
    free(buf);
    return st;
}

/* ---------------------------------------------------------------- crops */

/* Antialiased bilinear resampling weights along one axis, as torch's
 * interpolate(antialias=True) and PIL compute them: the triangle filter is
 * stretched by the downscale factor. For output i: taps start[i] ..
 * start[i] + ntap[i] - 1 with weights wt[i * maxtap + j]. */
typedef struct axis_w { int *start, *ntap; float *wt; int maxtap; } axis_w;

static void axis_free(axis_w *a) { free(a->start); free(a->ntap); free(a->wt); }

static int axis_init(axis_w *a, int in, int outn) {
    double scale = (double)in / outn;
    double support = scale >= 1.0 ? scale : 1.0;
    double inv = scale >= 1.0 ? 1.0 / scale : 1.0;
    a->maxtap = (int)ceil(support) * 2 + 1;
    a->start = malloc(sizeof(int) * (size_t)outn);
    a->ntap = malloc(sizeof(int) * (size_t)outn);
    a->wt = duet_calloc_array((size_t)outn * (size_t)a->maxtap, sizeof(float));
    if (!a->start || !a->ntap || !a->wt) { axis_free(a); return -1; }
    for (int i = 0; i < outn; i++) {
        double center = scale * (i + 0.5);
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in) xmax = in;
        int n = xmax - xmin;
        if (n > a->maxtap) n = a->maxtap;
        double w[64], tot = 0;
        double *wp = n <= 64 ? w : malloc(sizeof(double) * (size_t)n);
        if (!wp) { axis_free(a); return -1; }
        for (int j = 0; j < n; j++) {
            double x = fabs((j + xmin - center + 0.5) * inv);
            wp[j] = x < 1.0 ? 1.0 - x : 0.0;
            tot += wp[j];
        }
        for (int j = 0; j < n; j++) a->wt[(size_t)i * a->maxtap + j] = (float)(tot > 0 ? wp[j] / tot : 0);
        if (wp != w) free(wp);
        a->start[i] = xmin;
        a->ntap[i] = n;
    }
    return 0;
}

/* Resizes im to ow x oh float RGB (antialiased bilinear). out [oh*ow*3]. */
static duet_status resize_aa(const duet_image *im, int ow, int oh, float *out, duet_error *err) {
    axis_w ax = {0}, ay = {0};
    size_t iw = im->width, ih = im->height;
    float *tmp = duet_alloc_array(ih * (size_t)ow * 3, sizeof(float));
    if (!tmp || axis_init(&ax, (int)iw, ow) || axis_init(&ay, (int)ih, oh)) {
        free(tmp); axis_free(&ax); axis_free(&ay);
        return duet_fail(err, DUET_ERR_NOMEM, "resize: out of memory");
    }
    for (size_t y = 0; y < ih; y++) {
        const uint8_t *row = im->rgb + y * iw * 3;
        for (int x = 0; x < ow; x++) {
            const float *w = ax.wt + (size_t)x * ax.maxtap;
            float s0 = 0, s1 = 0, s2 = 0;
            for (int j = 0; j < ax.ntap[x]; j++) {
                const uint8_t *p = row + (size_t)(ax.start[x] + j) * 3;
                s0 += w[j] * p[0]; s1 += w[j] * p[1]; s2 += w[j] * p[2];
            }
            float *o = tmp + (y * (size_t)ow + (size_t)x) * 3;
            o[0] = s0; o[1] = s1; o[2] = s2;
        }
    }
    size_t rowlen = (size_t)ow * 3;
    for (int y = 0; y < oh; y++) {
        float *o = out + (size_t)y * rowlen;
        memset(o, 0, rowlen * sizeof(float));
        const float *w = ay.wt + (size_t)y * ay.maxtap;
        for (int j = 0; j < ay.ntap[y]; j++) {
            const float *r = tmp + (size_t)(ay.start[y] + j) * rowlen;
            for (size_t k = 0; k < rowlen; k++) o[k] += w[j] * r[k];
        }
    }
    free(tmp); axis_free(&ax); axis_free(&ay);
    return DUET_OK;
}

duet_status img_resize_aa(const duet_image *im, int ow, int oh, float *out, duet_error *err) {
    if (!im || !im->rgb || !im->width || !im->height || ow < 1 || oh < 1)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "resize: empty image or size");
    return resize_aa(im, ow, oh, out, err);
}

/* Python's int(round(d / 2.0)): halves round to even. */
static int half_round_even(int d) {
    int k = d / 2;
    if (d % 2 == 0) return k;
    return (k % 2 == 0) ? k : k + 1;
}

duet_status duet_image_crops(const duet_image *im, int crops, float *out, duet_error *err) {
    const int S = DUET_IMAGE_SIDE;
    if (!im || !im->rgb || im->width == 0 || im->height == 0)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "image crops: empty image");
    if (crops == 1) {
        /* Keras load_img(target_size=(224, 224)): PIL's nearest resize, an
         * affine transform whose source coordinate is accumulated in double
         * (start at step / 2, add step per pixel) and truncated; the
         * accumulation is kept because it decides ties at integer
         * boundaries (e.g. every 7th column of a 512-wide image). */
        double stx = (double)im->width / S, sty = (double)im->height / S, yy = sty * 0.5;
        for (int y = 0; y < S; y++, yy += sty) {
            size_t sy = (size_t)yy;
            if (sy >= im->height) sy = im->height - 1;
            double xx = stx * 0.5;
            for (int x = 0; x < S; x++, xx += stx) {
                size_t sx = (size_t)xx;
                if (sx >= im->width) sx = im->width - 1;
                const uint8_t *p = im->rgb + (sy * im->width + sx) * 3;
                float *o = out + ((size_t)y * S + (size_t)x) * 3;
                o[0] = p[0]; o[1] = p[1]; o[2] = p[2];
            }
        }
        return DUET_OK;
    }
    if (crops != 10)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "image crops: %d crops (use 1 or 10)", crops);
    /* torchvision Resize(256): shorter side 256, longer int(256 * L / S). */
    size_t w = im->width, h = im->height, nw, nh;
    if (w <= h) { nw = 256; nh = (size_t)(256.0 * (double)h / (double)w); }
    else { nh = 256; nw = (size_t)(256.0 * (double)w / (double)h); }
    if (nw < (size_t)S || nh < (size_t)S || nw > 65536 || nh > 65536)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "image crops: %zux%zu image has an aspect ratio too extreme", w, h);
    float *big = duet_alloc_array(nw * nh * 3, sizeof(float));
    if (!big) return duet_fail(err, DUET_ERR_NOMEM, "image crops: out of memory");
    duet_status st = resize_aa(im, (int)nw, (int)nh, big, err);
    if (st) { free(big); return st; }
    int dy = (int)nh - S, dx = (int)nw - S;
    /* five_crop of the image, then of its mirror (torchvision TenCrop). */
    int tops[5] = {0, 0, dy, dy, half_round_even(dy)};
    int lefts[5] = {0, dx, 0, dx, half_round_even(dx)};
    size_t plane = (size_t)S * S * 3;
    for (int flip = 0; flip < 2; flip++)
        for (int k = 0; k < 5; k++) {
            float *o = out + (size_t)(flip * 5 + k) * plane;
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S; x++) {
                    /* the mirror's column c is the image's column nw-1-c */
                    size_t col = flip ? nw - 1 - (size_t)(lefts[k] + x) : (size_t)(lefts[k] + x);
                    const float *p = big + (((size_t)(tops[k] + y)) * nw + col) * 3;
                    float *q = o + ((size_t)y * S + (size_t)x) * 3;
                    q[0] = p[0]; q[1] = p[1]; q[2] = p[2];
                }
        }
    free(big);
    return DUET_OK;
}

/* ---------------------------------------------------------------- labels */

void duet_labels_free(char **labels, size_t n) {
    if (!labels) return;
    for (size_t i = 0; i < n; i++) free(labels[i]);
    free(labels);
}

duet_status duet_labels_read(const char *path, char ***labels, size_t *n, duet_error *err) {
    char *buf = NULL;
    size_t len = 0;
    *labels = NULL; *n = 0;
    duet_status st = duet_read_file(path, (size_t)16 << 20, &buf, &len, err);
    if (st) return st;
    size_t p = 0;
    while (p < len && (buf[p] == ' ' || buf[p] == '\n' || buf[p] == '\r' || buf[p] == '\t')) p++;
    char **L = NULL;
    size_t cnt = 0;
    if (p < len && buf[p] == '{') {
        json_error_t je;
        json_t *root = json_loadb(buf, len, 0, &je);
        if (!root || !json_is_object(root)) {
            json_decref(root); free(buf);
            return duet_fail(err, DUET_ERR_FORMAT, "%s: line %d: %s", path, je.line, je.text);
        }
        cnt = json_object_size(root);
        L = duet_calloc_array(cnt, sizeof(char *));
        if (!L) { json_decref(root); free(buf); return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path); }
        for (size_t i = 0; i < cnt; i++) {
            char key[32];
            snprintf(key, sizeof key, "%zu", i);
            const char *v = json_string_value(json_object_get(root, key));
            if (!v || !(L[i] = duet_strdup(v))) {
                duet_labels_free(L, cnt); json_decref(root); free(buf);
                return duet_fail(err, DUET_ERR_FORMAT, "%s: label \"%s\" missing or not a string", path, key);
            }
        }
        json_decref(root);
    } else {
        for (size_t i = 0; i < len; i++) if (buf[i] == '\n') cnt++;
        if (len && buf[len - 1] != '\n') cnt++;
        L = duet_calloc_array(cnt, sizeof(char *));
        if (!L) { free(buf); return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path); }
        char *s = buf;
        for (size_t i = 0; i < cnt; i++) {
            char *e = strchr(s, '\n');
            if (e) *e = '\0';
            size_t l = strlen(s);
            if (l && s[l - 1] == '\r') s[l - 1] = '\0';
            if (!(L[i] = duet_strdup(s))) { duet_labels_free(L, cnt); free(buf); return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path); }
            s = e ? e + 1 : s + l;
        }
    }
    free(buf);
    if (cnt == 0) { free(L); return duet_fail(err, DUET_ERR_EMPTY, "%s: no labels", path); }
    *labels = L; *n = cnt;
    return DUET_OK;
}
