/* encode.c -- writing images: PNG (libpng's simplified API), atomically;
 * drawing box outlines. */
#include "image/image.h"
#include <png.h>
#include <stdlib.h>
#include <string.h>

duet_status duet_image_write_png(const duet_image *im, const char *path, duet_error *err) {
    if (!im || !im->rgb || !im->width || !im->height || im->width > 0x7fffffff / 3 || im->height > 0x7fffffff)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "%s: no image to write", path);
    png_image pi;
    memset(&pi, 0, sizeof pi);
    pi.version = PNG_IMAGE_VERSION;
    pi.width = (png_uint_32)im->width;
    pi.height = (png_uint_32)im->height;
    pi.format = PNG_FORMAT_RGB;
    png_alloc_size_t len = 0;
    png_int_32 stride = (png_int_32)(im->width * 3);
    if (!png_image_write_to_memory(&pi, NULL, &len, 0, im->rgb, stride, NULL))
        return duet_fail(err, DUET_ERR_FORMAT, "%s: PNG encoding failed: %s", path, pi.message);
    void *buf = malloc(len);
    if (!buf) return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    if (!png_image_write_to_memory(&pi, buf, &len, 0, im->rgb, stride, NULL)) {
        free(buf);
        return duet_fail(err, DUET_ERR_FORMAT, "%s: PNG encoding failed: %s", path, pi.message);
    }
    duet_atomic_file af;
    duet_status st = duet_atomic_open(&af, path, err);
    if (!st) st = duet_atomic_write(&af, buf, len, err);
    if (!st) st = duet_atomic_commit(&af, err);
    else duet_atomic_abort(&af);
    free(buf);
    return st;
}

void duet_image_draw_box(duet_image *im, const duet_box *b, const uint8_t rgb[3], int thickness) {
    if (!im || !im->rgb || !b || thickness < 1) return;
    long W = (long)im->width, H = (long)im->height;
    long x0 = (long)b->x0, y0 = (long)b->y0, x1 = (long)b->x1 - 1, y1 = (long)b->y1 - 1;
    for (long y = y0; y <= y1; y++)
        for (long x = x0; x <= x1; x++) {
            int edge = x - x0 < thickness || x1 - x < thickness || y - y0 < thickness || y1 - y < thickness;
            if (!edge || x < 0 || y < 0 || x >= W || y >= H) continue;
            memcpy(im->rgb + ((size_t)y * (size_t)W + (size_t)x) * 3, rgb, 3);
        }
}
