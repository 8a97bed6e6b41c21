/* proposals.c -- candidate boxes of an image.
 *
 *   1. downscale so the longer side is at most p->max_side, smooth (sigma);
 *   2. for each threshold k: Felzenszwalb-Huttenlocher graph segmentation
 *      (8-connected pixel graph, RGB distance, Int(C) + k/|C| merging,
 *      segments under min_size joined to a neighbour);
 *   3. selective search grouping of each segmentation, twice: similarity
 *      colour + size + fill, and size + fill; each step merges the most
 *      similar adjacent pair; every segment and every merge gives a box;
 *   4. a box's rank is its level (1 for the whole image, 2 for the last
 *      merge, ...) times a uniform factor from a seeded RNG; boxes are taken
 *      best first, dropping near duplicates and slivers, up to max_boxes.
 */
#include "region/region.h"
#include "image/image.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define HIST_BINS 25
#define HIST_LEN (3 * HIST_BINS)

duet_proposal_params duet_proposal_default_params(void) {
    duet_proposal_params p;
    memset(&p, 0, sizeof p);
    p.max_side = 256;
    p.sigma = 0.8f;
    p.n_k = 4;
    p.k[0] = 50; p.k[1] = 100; p.k[2] = 200; p.k[3] = 400;
    p.min_size = 20;
    p.dedup_iou = 0.9f;
    p.min_side = 0.04f;
    p.max_boxes = 300;
    p.seed = 1;
    return p;
}

float duet_box_iou(const duet_box *a, const duet_box *b) {
    float aw = a->x1 - a->x0, ah = a->y1 - a->y0, bw = b->x1 - b->x0, bh = b->y1 - b->y0;
    if (!(aw > 0 && ah > 0 && bw > 0 && bh > 0)) return 0;
    float iw = fminf(a->x1, b->x1) - fmaxf(a->x0, b->x0);
    float ih = fminf(a->y1, b->y1) - fmaxf(a->y0, b->y0);
    if (iw <= 0 || ih <= 0) return 0;
    float inter = iw * ih;
    return inter / (aw * ah + bw * bh - inter);
}

size_t duet_boxes_covered(const duet_box *gt, size_t n_gt, const duet_box *boxes, size_t n, float iou) {
    size_t c = 0;
    for (size_t g = 0; g < n_gt; g++)
        for (size_t i = 0; i < n; i++)
            if (duet_box_iou(&gt[g], &boxes[i]) >= iou) { c++; break; }
    return c;
}

/* ------------------------------------------------------- Gaussian smoothing */

/* One pass of the separable blur: along x (dx = 1) or y (dx = 0), edges
 * clamped. kernel k[0..r] (symmetric). in, out [h x w x 3]. */
static void blur_pass(const float *in, float *out, int w, int h, const float *k, int r, int dx) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                float a = 0;
                for (int i = -r; i <= r; i++) {
                    int xx = dx ? x + i : x, yy = dx ? y : y + i;
                    xx = xx < 0 ? 0 : (xx >= w ? w - 1 : xx);
                    yy = yy < 0 ? 0 : (yy >= h ? h - 1 : yy);
                    a += k[i < 0 ? -i : i] * in[((size_t)yy * w + xx) * 3 + c];
                }
                out[((size_t)y * w + x) * 3 + c] = a;
            }
}

/* Separable Gaussian blur of a [h x w x 3] float image in place. */
static int blur(float *img, int w, int h, float sigma) {
    if (sigma <= 0) return 0;
    int r = (int)ceilf(4 * sigma);
    float *k = malloc(sizeof(float) * (size_t)(r + 1));
    float *tmp = duet_alloc_array((size_t)w * h * 3, sizeof(float));
    if (!k || !tmp) { free(k); free(tmp); return -1; }
    float s = 0;
    for (int i = 0; i <= r; i++) { k[i] = expf(-0.5f * (float)(i * i) / (sigma * sigma)); s += i ? 2 * k[i] : k[i]; }
    for (int i = 0; i <= r; i++) k[i] /= s;
    blur_pass(img, tmp, w, h, k, r, 1);
    blur_pass(tmp, img, w, h, k, r, 0);
    free(k); free(tmp);
    return 0;
}

/* --------------------------------------------- Felzenszwalb-Huttenlocher */

typedef struct edge { float w; uint32_t a, b; } edge;

/* Sorts e[0..n) by weight, ties by position in e: a total order, so the
 * result is deterministic. LSD radix sort of 64-bit keys (the weight's
 * bits -- non-negative floats order as their bit patterns -- then the
 * index), 16 bits a pass. 0, or -1 when out of memory. */
static int sort_edges(edge *e, size_t n) {
    uint64_t *k = duet_alloc_array(n ? n : 1, sizeof(uint64_t)), *t = duet_alloc_array(n ? n : 1, sizeof(uint64_t));
    edge *tmp = duet_alloc_array(n ? n : 1, sizeof(edge));
    size_t *cnt = malloc(sizeof(size_t) * 65536);
    if (!k || !t || !tmp || !cnt) { free(k); free(t); free(tmp); free(cnt); return -1; }
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &e[i].w, sizeof bits);
        k[i] = (uint64_t)bits << 32 | (uint64_t)i;
    }
    for (int shift = 0; shift < 64; shift += 16) {
        memset(cnt, 0, sizeof(size_t) * 65536);
        for (size_t i = 0; i < n; i++) cnt[(k[i] >> shift) & 0xffff]++;
        size_t sum = 0;
        for (size_t b = 0; b < 65536; b++) { size_t c = cnt[b]; cnt[b] = sum; sum += c; }
        for (size_t i = 0; i < n; i++) t[cnt[(k[i] >> shift) & 0xffff]++] = k[i];
        uint64_t *x = k; k = t; t = x;
    }
    for (size_t i = 0; i < n; i++) tmp[i] = e[k[i] & 0xffffffffu];
    memcpy(e, tmp, n * sizeof *e);
    free(k); free(t); free(tmp); free(cnt);
    return 0;
}

static uint32_t uf_find(uint32_t *parent, uint32_t x) {
    while (parent[x] != x) { parent[x] = parent[parent[x]]; x = parent[x]; }
    return x;
}

static uint32_t uf_join(uint32_t *parent, uint32_t *size, uint32_t a, uint32_t b) {
    if (size[a] < size[b]) { uint32_t t = a; a = b; b = t; }
    parent[b] = a;
    size[a] += size[b];
    return a;
}

/* The 8-connected graph of a smoothed [h x w x 3] image: each pixel's right,
 * down, down-right and up-right neighbours. *n edges, sorted. */
static edge *build_edges(const float *img, int w, int h, size_t *n) {
    edge *e = duet_alloc_array((size_t)w * h * 4, sizeof(edge));
    if (!e) return NULL;
    size_t m = 0;
    static const int dx[4] = {1, 0, 1, 1}, dy[4] = {0, 1, 1, -1};
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int d = 0; d < 4; d++) {
                int xx = x + dx[d], yy = y + dy[d];
                if (xx >= w || yy < 0 || yy >= h) continue;
                const float *p = img + ((size_t)y * w + x) * 3, *q = img + ((size_t)yy * w + xx) * 3;
                float r = p[0] - q[0], g = p[1] - q[1], b = p[2] - q[2];
                e[m].w = sqrtf(r * r + g * g + b * b);
                e[m].a = (uint32_t)(y * w + x);
                e[m].b = (uint32_t)(yy * w + xx);
                m++;
            }
    if (sort_edges(e, m)) { free(e); return NULL; }
    *n = m;
    return e;
}

/* Segments the graph with threshold k; label[px] in 0 .. *n_seg-1 (caller's
 * array of w*h). parent/size/thr: caller's scratch of w*h each. */
static void fh_segment(const edge *e, size_t n_edges, size_t npx, float k, int min_size, uint32_t *label,
                       uint32_t *parent, uint32_t *size, float *thr, size_t *n_seg) {
    for (size_t i = 0; i < npx; i++) { parent[i] = (uint32_t)i; size[i] = 1; thr[i] = k; }
    for (size_t i = 0; i < n_edges; i++) {
        uint32_t a = uf_find(parent, e[i].a), b = uf_find(parent, e[i].b);
        if (a != b && e[i].w <= thr[a] && e[i].w <= thr[b]) {
            uint32_t c = uf_join(parent, size, a, b);
            thr[c] = e[i].w + k / (float)size[c];
        }
    }
    for (size_t i = 0; i < n_edges; i++) {
        uint32_t a = uf_find(parent, e[i].a), b = uf_find(parent, e[i].b);
        if (a != b && ((int)size[a] < min_size || (int)size[b] < min_size)) uf_join(parent, size, a, b);
    }
    size_t n = 0;
    for (size_t i = 0; i < npx; i++) label[i] = UINT32_MAX;
    for (size_t i = 0; i < npx; i++) {      /* root -> dense label (size: scratch) */
        uint32_t r = uf_find(parent, (uint32_t)i);
        if (label[r] == UINT32_MAX) label[r] = (uint32_t)n++;
    }
    for (size_t i = 0; i < npx; i++) size[i] = label[uf_find(parent, (uint32_t)i)];
    memcpy(label, size, npx * sizeof *label);
    *n_seg = n;
}

/* ------------------------------------------------------ hierarchical grouping */

typedef struct region {
    float hist[HIST_LEN];    /* L1-normalized colour histogram */
    double size;             /* pixels                          */
    int x0, y0, x1, y1;      /* inclusive pixel bounds          */
} region;

typedef struct pair { uint32_t i, j; float sim; int live; } pair;

typedef struct ranked { duet_box box; float rank; } ranked;

typedef struct grouping {
    region *r;                 /* [2 * n_seg - 1] */
    pair *pr; size_t n_pr, cap_pr;
    double npx;
    int colour;                /* 1: colour + size + fill; 0: size + fill */
} grouping;

static float similarity(const grouping *g, uint32_t i, uint32_t j) {
    const region *a = &g->r[i], *b = &g->r[j];
    double s = 1.0 - (a->size + b->size) / g->npx;
    int x0 = a->x0 < b->x0 ? a->x0 : b->x0, y0 = a->y0 < b->y0 ? a->y0 : b->y0;
    int x1 = a->x1 > b->x1 ? a->x1 : b->x1, y1 = a->y1 > b->y1 ? a->y1 : b->y1;
    double bb = (double)(x1 - x0 + 1) * (y1 - y0 + 1);
    s += 1.0 - (bb - a->size - b->size) / g->npx;
    if (g->colour) {
        double c = 0;
        for (int q = 0; q < HIST_LEN; q++) c += fminf(a->hist[q], b->hist[q]);
        s += c;
    }
    return (float)s;
}

static int add_pair(grouping *g, uint32_t i, uint32_t j) {
    if (g->n_pr == g->cap_pr) {
        size_t cap = g->cap_pr ? 2 * g->cap_pr : 256;
        pair *p = realloc(g->pr, cap * sizeof *p);
        if (!p) return -1;
        g->pr = p;
        g->cap_pr = cap;
    }
    g->pr[g->n_pr++] = (pair){i, j, similarity(g, i, j), 1};
    return 0;
}

static int u64_cmp(const void *x, const void *y) {
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return (a > b) - (a < b);
}

/* Groups one segmentation (label over a [h x w] image whose unsmoothed
 * colours are rgb) and appends its 2 * n_seg - 1 boxes, scaled by (sx, sy)
 * to the original image, with their level, to *out. */
static int group(const float *rgb, const uint32_t *label, int w, int h, size_t n_seg, int colour, float sx,
                 float sy, duet_rng *rng, ranked **out, size_t *n_out, size_t *cap_out) {
    size_t npx = (size_t)w * h, n_reg = 2 * n_seg - 1;
    grouping g = {0};
    g.npx = (double)npx;
    g.colour = colour;
    g.r = duet_calloc_array(n_reg, sizeof(region));
    uint64_t *keys = duet_alloc_array(npx * 2, sizeof(uint64_t));
    uint32_t *nb = malloc(sizeof(uint32_t) * n_reg);
    int rc = -1;
    if (!g.r || !keys || !nb) goto done;
    for (size_t s = 0; s < n_seg; s++) { g.r[s].x0 = w; g.r[s].y0 = h; g.r[s].x1 = -1; g.r[s].y1 = -1; }
    size_t nk = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t px = (size_t)y * w + x;
            region *r = &g.r[label[px]];
            r->size += 1;
            if (x < r->x0) r->x0 = x;
            if (x > r->x1) r->x1 = x;
            if (y < r->y0) r->y0 = y;
            if (y > r->y1) r->y1 = y;
            for (int c = 0; c < 3; c++) {
                int bin = (int)(rgb[px * 3 + c] * HIST_BINS / 256.0f);
                bin = bin < 0 ? 0 : (bin >= HIST_BINS ? HIST_BINS - 1 : bin);
                r->hist[c * HIST_BINS + bin] += 1;
            }
            uint32_t a = label[px];                      /* 4-neighbour adjacency */
            if (x + 1 < w && label[px + 1] != a) {
                uint32_t b = label[px + 1];
                keys[nk++] = a < b ? (uint64_t)a << 32 | b : (uint64_t)b << 32 | a;
            }
            if (y + 1 < h && label[px + (size_t)w] != a) {
                uint32_t b = label[px + (size_t)w];
                keys[nk++] = a < b ? (uint64_t)a << 32 | b : (uint64_t)b << 32 | a;
            }
        }
    for (size_t s = 0; s < n_seg; s++)
        for (int q = 0; q < HIST_LEN; q++) g.r[s].hist[q] /= (float)(3 * g.r[s].size);
    qsort(keys, nk, sizeof *keys, u64_cmp);
    for (size_t k = 0; k < nk; k++)
        if ((k == 0 || keys[k] != keys[k - 1]) && add_pair(&g, (uint32_t)(keys[k] >> 32), (uint32_t)keys[k])) goto done;

    /* merge: region t = n_seg + step; level of region t = n_reg - t */
    size_t t = n_seg;
    for (; t < n_reg; t++) {
        size_t best = SIZE_MAX;
        for (size_t k = 0; k < g.n_pr; k++)
            if (g.pr[k].live && (best == SIZE_MAX || g.pr[k].sim > g.pr[best].sim)) best = k;
        if (best == SIZE_MAX) break;           /* disconnected: cannot happen on a grid */
        uint32_t i = g.pr[best].i, j = g.pr[best].j;
        region *a = &g.r[i], *b = &g.r[j], *m = &g.r[t];
        m->size = a->size + b->size;
        for (int q = 0; q < HIST_LEN; q++) m->hist[q] = (float)((a->hist[q] * a->size + b->hist[q] * b->size) / m->size);
        m->x0 = a->x0 < b->x0 ? a->x0 : b->x0;
        m->y0 = a->y0 < b->y0 ? a->y0 : b->y0;
        m->x1 = a->x1 > b->x1 ? a->x1 : b->x1;
        m->y1 = a->y1 > b->y1 ? a->y1 : b->y1;
        size_t n_nb = 0;
        for (size_t k = 0; k < g.n_pr; k++) {
            pair *p = &g.pr[k];
            if (!p->live || (p->i != i && p->j != i && p->i != j && p->j != j)) continue;
            p->live = 0;
            uint32_t o = (p->i == i || p->i == j) ? p->j : p->i;
            if (o == i || o == j) continue;
            int seen = 0;
            for (size_t q = 0; q < n_nb && !seen; q++) seen = nb[q] == o;
            if (!seen) nb[n_nb++] = o;
        }
        for (size_t q = 0; q < n_nb; q++)
            if (add_pair(&g, nb[q], (uint32_t)t)) goto done;
    }
    for (size_t s = 0; s < t; s++) {
        if (*n_out == *cap_out) {
            size_t cap = *cap_out ? 2 * *cap_out : 1024;
            ranked *o = realloc(*out, cap * sizeof *o);
            if (!o) goto done;
            *out = o;
            *cap_out = cap;
        }
        const region *r = &g.r[s];
        ranked *o = &(*out)[(*n_out)++];
        o->box = (duet_box){r->x0 * sx, r->y0 * sy, (r->x1 + 1) * sx, (r->y1 + 1) * sy};
        o->rank = (float)(t - s) * (1.0f - duet_rng_uniform(rng));   /* (0, level] */
    }
    rc = 0;
done:
    free(g.r); free(g.pr); free(keys); free(nb);
    return rc;
}

static int ranked_cmp(const void *x, const void *y) {
    const ranked *a = x, *b = y;
    if (a->rank != b->rank) return a->rank < b->rank ? -1 : 1;
    const float *p = &a->box.x0, *q = &b->box.x0;   /* a total order: no qsort ties */
    for (int k = 0; k < 4; k++)
        if (p[k] != q[k]) return p[k] < q[k] ? -1 : 1;
    return 0;
}

/* ------------------------------------------------------------------ driver */

duet_status duet_proposals(const duet_image *im, const duet_proposal_params *pp, duet_box **boxes, size_t *n,
                           duet_error *err) {
    *boxes = NULL;
    *n = 0;
    duet_proposal_params p = pp ? *pp : duet_proposal_default_params();
    if (!im || !im->rgb) return duet_fail(err, DUET_ERR_INVALID_ARG, "proposals: no image");
    if (im->width < 8 || im->height < 8)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "proposals: the image is %zux%zu; at least 8x8 pixels are needed",
                         im->width, im->height);
    if (p.max_side < 8 || p.max_side > 4096 || p.n_k < 1 || p.n_k > 8 || p.min_size < 1 || p.max_boxes < 1 ||
        !(p.sigma >= 0 && p.sigma <= 10) || !(p.dedup_iou > 0 && p.dedup_iou <= 1) ||
        !(p.min_side >= 0 && p.min_side < 1))
        return duet_fail(err, DUET_ERR_INVALID_ARG, "proposals: a parameter is out of range");
    for (int i = 0; i < p.n_k; i++)
        if (!(p.k[i] > 0 && p.k[i] < 1e6f)) return duet_fail(err, DUET_ERR_INVALID_ARG, "proposals: k[%d] = %g", i, p.k[i]);

    size_t W = im->width, H = im->height, L = W > H ? W : H;
    double f = L > (size_t)p.max_side ? (double)p.max_side / (double)L : 1.0;
    int w = (int)lround((double)W * f), h = (int)lround((double)H * f);
    if (w < 2) w = 2;
    if (h < 2) h = 2;
    size_t npx = (size_t)w * h;
    float *rgb = duet_alloc_array(npx * 3, sizeof(float)), *sm = duet_alloc_array(npx * 3, sizeof(float));
    uint32_t *label = malloc(sizeof(uint32_t) * npx), *parent = malloc(sizeof(uint32_t) * npx);
    uint32_t *size = malloc(sizeof(uint32_t) * npx);
    float *thr = malloc(sizeof(float) * npx);
    edge *e = NULL;
    ranked *rk = NULL;
    size_t n_rk = 0, cap_rk = 0, n_edges = 0;
    duet_box *keep = NULL;
    duet_status st = DUET_OK;
    if (!rgb || !sm || !label || !parent || !size || !thr) { st = duet_fail(err, DUET_ERR_NOMEM, "proposals: out of memory"); goto done; }
    st = img_resize_aa(im, w, h, rgb, err);
    if (st) goto done;
    memcpy(sm, rgb, npx * 3 * sizeof(float));
    if (blur(sm, w, h, p.sigma) || !(e = build_edges(sm, w, h, &n_edges))) {
        st = duet_fail(err, DUET_ERR_NOMEM, "proposals: out of memory");
        goto done;
    }
    duet_rng rng;
    duet_rng_seed(&rng, p.seed);
    float sx = (float)W / (float)w, sy = (float)H / (float)h;
    for (int ki = 0; ki < p.n_k; ki++) {
        size_t n_seg = 0;
        fh_segment(e, n_edges, npx, p.k[ki], p.min_size, label, parent, size, thr, &n_seg);
        for (int colour = 1; colour >= 0; colour--)
            if (group(rgb, label, w, h, n_seg, colour, sx, sy, &rng, &rk, &n_rk, &cap_rk)) {
                st = duet_fail(err, DUET_ERR_NOMEM, "proposals: out of memory");
                goto done;
            }
    }
    qsort(rk, n_rk, sizeof *rk, ranked_cmp);
    keep = malloc(sizeof(duet_box) * p.max_boxes);
    if (!keep) { st = duet_fail(err, DUET_ERR_NOMEM, "proposals: out of memory"); goto done; }
    float min_px = p.min_side * (float)(W < H ? W : H);
    size_t nk = 0;
    for (size_t i = 0; i < n_rk && nk < p.max_boxes; i++) {
        const duet_box *b = &rk[i].box;
        if (b->x1 - b->x0 < min_px || b->y1 - b->y0 < min_px) continue;
        int dup = 0;
        for (size_t j = 0; j < nk && !dup; j++) dup = duet_box_iou(b, &keep[j]) > p.dedup_iou;
        if (!dup) keep[nk++] = *b;
    }
    *boxes = keep;
    *n = nk;
    keep = NULL;
done:
    free(rgb); free(sm); free(label); free(parent); free(size); free(thr); free(e); free(rk); free(keep);
    return st;
}
