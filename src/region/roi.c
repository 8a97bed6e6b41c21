/* roi.c -- region features without re-running the CNN: each box's average
 * of the last feature map by RoI-align (bilinear samples), as one GEMM over
 * all boxes of an image, plus box geometry.
 *
 * Coordinates: the 1-crop input squashes the whole image to 224 x 224, so a
 * map of mw columns covers the image width W: pixel x lies at feature
 * column x * mw / W, and cell j's centre at j + 0.5. A box is sampled at
 * ns = max(2, ceil(2 * its width in cells)) evenly spaced points per axis
 * (at the centres of ns equal parts), each point bilinear between the two
 * nearest cell centres (clamped at the borders). Bilinear weights are
 * separable, so a box's feature is sum_y sum_x wy[y] wx[x] map[y][x][:]
 * with per-axis weights that sum to 1. For the whole image the samples sit
 * at j +- 0.25 and the weights come out exactly 1 / mw: the box feature is
 * the global average pool, the image feature itself. */
#include "region/region.h"
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Per-cell weights of one axis: box [a, b) in pixels of an axis of L pixels
 * and m cells. w[m] sums to 1. */
static void axis_weights(float a, float b, size_t L, int m, float *w) {
    memset(w, 0, sizeof(float) * (size_t)m);
    double fa = (double)a * m / (double)L, fb = (double)b * m / (double)L;
    double len = fb - fa;
    int ns = (int)ceil(2 * len);
    if (ns < 2) ns = 2;
    for (int i = 0; i < ns; i++) {
        double p = fa + (i + 0.5) * len / ns - 0.5;   /* in cell-centre units */
        if (p <= 0) { w[0] += 1.0f / ns; continue; }
        if (p >= m - 1) { w[m - 1] += 1.0f / ns; continue; }
        int j = (int)floor(p);
        double t = p - j;
        w[j] += (float)((1 - t) / ns);
        w[j + 1] += (float)(t / ns);
    }
}

duet_status duet_roi_features(const float *map, int mh, int mw, int c, size_t img_w, size_t img_h,
                              const duet_box *boxes, size_t n, float *out, duet_error *err) {
    if (!map || mh < 1 || mw < 1 || c < 1 || !img_w || !img_h || (n && (!boxes || !out)))
        return duet_fail(err, DUET_ERR_INVALID_ARG, "roi features: empty map, image or boxes");
    for (size_t i = 0; i < n; i++) {
        const duet_box *b = &boxes[i];
        if (!(b->x0 >= 0 && b->y0 >= 0 && b->x1 <= (float)img_w && b->y1 <= (float)img_h && b->x0 < b->x1 &&
              b->y0 < b->y1))
            return duet_fail(err, DUET_ERR_INVALID_ARG, "roi features: box %zu (%g %g %g %g) is empty or outside the %zux%zu image",
                             i, b->x0, b->y0, b->x1, b->y1, img_w, img_h);
    }
    if (n == 0) return DUET_OK;
    size_t cells = (size_t)mh * (size_t)mw;
    float *wt = duet_alloc_array(n * cells, sizeof(float));   /* [n x cells] */
    float *wx = malloc(sizeof(float) * (size_t)mw), *wy = malloc(sizeof(float) * (size_t)mh);
    if (!wt || !wx || !wy) { free(wt); free(wx); free(wy); return duet_fail(err, DUET_ERR_NOMEM, "roi features: out of memory"); }
    for (size_t i = 0; i < n; i++) {
        axis_weights(boxes[i].x0, boxes[i].x1, img_w, mw, wx);
        axis_weights(boxes[i].y0, boxes[i].y1, img_h, mh, wy);
        for (int y = 0; y < mh; y++)
            for (int x = 0; x < mw; x++) wt[i * cells + (size_t)y * mw + x] = wy[y] * wx[x];
    }
    /* out [n x c] = wt [n x cells] * map [cells x c] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, c, (int)cells, 1.0f, wt, (int)cells, map, c, 0.0f,
                out, c);
    free(wt); free(wx); free(wy);
    return DUET_OK;
}

void duet_box_geometry(const duet_box *b, size_t img_w, size_t img_h, float out[DUET_BOX_GEOMETRY]) {
    float W = (float)img_w, H = (float)img_h;
    out[0] = b->x0 / W;
    out[1] = b->y0 / H;
    out[2] = b->x1 / W;
    out[3] = b->y1 / H;
    out[4] = (b->x1 - b->x0) * (b->y1 - b->y0) / (W * H);
}
