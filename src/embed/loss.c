/* loss.c -- the bidirectional ranking loss with structure-preserving terms
 * (docs/MODEL.md, "Loss").
 *
 * All distances come from Gram matrices (products on oneDNN, mm.c):
 *   d(a, b) = sqrt(max(2 - 2 a.b, 0) + 1e-4)
 * Each term walks its anchors; for every anchor it selects the K smallest
 * negative distances (the K largest hinge terms, since the hinge falls with the
 * negative's distance), adds their hinges, and scatters the gradient of the
 * term into a distance-gradient matrix. The chain rule back to the embeddings
 * is again a product: dG = -dD / D.
 *
 * The anchors run on the threads. Every gradient entry is written by the
 * anchors of one row only, in the serial order (the image-anchored term
 * walks each image's sentences in order), and each anchor's value is summed
 * in anchor order afterwards, so the results do not depend on the threads.
 *
 * The Gram products are f32, or (a bf16 workspace: mixed-precision training)
 * bf16 inputs with f32 accumulation; distances, hinges and their gradients
 * stay f32 either way. */
#include "embed/embed.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DIST_EPS 1e-4f

void duet_loss_ws_free(duet_loss_ws *ws) {
    if (!ws) return;
    free(ws->d_ti); free(ws->g_ti); free(ws->d_it); free(ws->g_it);
    free(ws->d_tt); free(ws->g_tt); free(ws->d_ii); free(ws->g_ii);
    free(ws->sel); free(ws->selv); free(ws->val); free(ws->idx);
    free(ws->hb);
    duet_mm_cache_free(&ws->mm);
    memset(ws, 0, sizeof *ws);
}

duet_status duet_loss_ws_init(duet_loss_ws *ws, size_t cap_b, size_t cap_s,
                              size_t top_k, duet_error *err) {
    return duet_loss_ws_init_dnn(ws, cap_b, cap_s, top_k, NULL, err);
}

duet_status duet_loss_ws_init_dnn(duet_loss_ws *ws, size_t cap_b, size_t cap_s,
                                  size_t top_k, duet_dnn *dnn, duet_error *err) {
    memset(ws, 0, sizeof *ws);
    size_t sb, ss, bb, ni;
    if (!duet_mul_size(cap_s, cap_b, &sb) || !duet_mul_size(cap_s, cap_s, &ss) ||
        !duet_mul_size(cap_b, cap_b, &bb) || !duet_mul_size(cap_s + cap_b + 1, 4, &ni))
        return duet_fail(err, DUET_ERR_NOMEM, "loss workspace: size overflow");
    ws->cap_b = cap_b;
    ws->cap_s = cap_s;
    ws->top_k = top_k;
    ws->bf16 = dnn && dnn->prec == DUET_PRECISION_BF16;
    ws->d_ti = duet_embed_alloc(sb, sizeof(float), 0);
    ws->g_ti = duet_embed_alloc(sb, sizeof(float), 0);
    ws->d_it = duet_embed_alloc(sb, sizeof(float), 0);
    ws->g_it = duet_embed_alloc(sb, sizeof(float), 0);
    ws->d_tt = duet_embed_alloc(ss, sizeof(float), 0);
    ws->g_tt = duet_embed_alloc(ss, sizeof(float), 0);
    ws->d_ii = duet_embed_alloc(bb, sizeof(float), 0);
    ws->g_ii = duet_embed_alloc(bb, sizeof(float), 0);
    ws->val = duet_alloc_array(cap_s > cap_b ? cap_s : cap_b, sizeof(double));
    ws->idx = duet_alloc_array(ni, sizeof(size_t));
    if (!ws->d_ti || !ws->g_ti || !ws->d_it || !ws->g_it || !ws->d_tt || !ws->g_tt ||
        !ws->d_ii || !ws->g_ii || !ws->val || !ws->idx) {
        duet_loss_ws_free(ws);
        return duet_fail(err, DUET_ERR_NOMEM, "loss workspace: out of memory");
    }
    duet_status st = duet_mm_cache_init(&ws->mm, dnn, err);
    if (st) duet_loss_ws_free(ws);
    return st;
}

/* Per-thread selection scratch for the threads duet_embed_parallel_for may
 * use now, and (bf16) room for n bf16 values. */
static duet_status ws_ready(duet_loss_ws *ws, size_t n_bf16, duet_error *err) {
    size_t threads = duet_embed_max_threads();
    if (threads > ws->sel_threads) {
        free(ws->sel); free(ws->selv);
        ws->sel = duet_alloc_array(threads, ws->top_k * sizeof(size_t));
        ws->selv = duet_alloc_array(threads, ws->top_k * sizeof(float));
        ws->sel_threads = ws->sel && ws->selv ? threads : 0;
        if (!ws->sel_threads) return duet_fail(err, DUET_ERR_NOMEM, "loss: out of memory");
    }
    if (ws->bf16 && n_bf16 > ws->hb_cap) {
        free(ws->hb);
        ws->hb = duet_embed_alloc(n_bf16, sizeof(uint16_t), 0);
        ws->hb_cap = ws->hb ? n_bf16 : 0;
        if (!ws->hb) return duet_fail(err, DUET_ERR_NOMEM, "loss: out of memory");
    }
    return DUET_OK;
}

/* ---------------------------------------------------------- row passes */

typedef struct rows_job {
    float *x;                /* [n x m] the matrix a pass rewrites           */
    const float *y;          /* [m x n] the other (transposes) / distances   */
    uint16_t *xb;            /* bf16 copy of the result, or NULL             */
    size_t n, m;
} rows_job;

/* The two element-wise passes below run in blocks of EB: a block's loop
 * has a constant trip count and restrict-qualified arrays, which the
 * compiler vectorizes at -O2 (the last, shorter block runs the same code
 * unvectorized); the results are those of the plain loop. */
#define EB 64
#define BLOCK static inline __attribute__((always_inline)) void

/* x = sqrt(max(2 - 2 x, 0) + eps): Gram entries to distances. */
BLOCK dist_block(float *restrict x, size_t w) {
    for (size_t k = 0; k < w; k++) {
        float u = 2.0f - 2.0f * x[k];
        x[k] = sqrtf(keep_or_zero(u, all_if(u > 0.0f)) + DIST_EPS);
    }
}

static void dist_rows(void *ctx, size_t r0, size_t r1) {
    rows_job *j = ctx;
    for (size_t i = r0 * j->m, e = r1 * j->m; i < e; i += EB) {
        if (e - i >= EB) dist_block(j->x + i, EB);
        else dist_block(j->x + i, e - i);
    }
}

/* x = y^T (add: x += y^T), in tiles of 32 x 32 so that the strided reads
 * stay in cache. */
#define TILE 32
static void transpose_tiles(rows_job *j, size_t r0, size_t r1, int add) {
    for (size_t rt = r0; rt < r1; rt += TILE)
        for (size_t ct = 0; ct < j->m; ct += TILE)
            for (size_t r = rt; r < r1 && r < rt + TILE; r++)
                for (size_t c = ct; c < j->m && c < ct + TILE; c++)
                    j->x[r * j->m + c] = (add ? j->x[r * j->m + c] : 0.0f) + j->y[c * j->n + r];
}

static void transpose_rows(void *ctx, size_t r0, size_t r1) { transpose_tiles(ctx, r0, r1, 0); }
static void add_transposed_rows(void *ctx, size_t r0, size_t r1) { transpose_tiles(ctx, r0, r1, 1); }

/* x <- -x / y (distance gradients to Gram gradients) where the clamp
 * 2 - 2g > 0 was active; else 0 (y, a distance, is >= sqrt(eps) > 0). */
BLOCK gram_grad_block(float *restrict x, const float *restrict y, size_t w) {
    const float floor_d = sqrtf(DIST_EPS) * 1.0000001f;
    for (size_t k = 0; k < w; k++) {
        float q = -x[k] / y[k];
        x[k] = keep_or_zero(q, all_if(y[k] > floor_d));
    }
}

static void gram_grad_rows(void *ctx, size_t r0, size_t r1) {
    rows_job *j = ctx;
    for (size_t i = r0 * j->m, e = r1 * j->m; i < e; i += EB) {
        if (e - i >= EB) gram_grad_block(j->x + i, j->y + i, EB);
        else gram_grad_block(j->x + i, j->y + i, e - i);
    }
    if (j->xb) duet_f32_to_bf16(j->x + r0 * j->m, j->xb + r0 * j->m, (r1 - r0) * j->m);
}

/* x <- x + x^T for a square x: row r writes the entries (r, c) and (c, r)
 * for c >= r, which no other row writes. */
static void symmetrize_rows(void *ctx, size_t r0, size_t r1) {
    rows_job *j = ctx;
    size_t n = j->n;
    for (size_t r = r0; r < r1; r++)
        for (size_t c = r; c < n; c++) {
            float v = j->x[r * n + c] + j->x[c * n + r];
            j->x[r * n + c] = j->x[c * n + r] = v;
        }
}

/* xb = bf16(x). */
static void bf16_rows(void *ctx, size_t r0, size_t r1) {
    rows_job *j = ctx;
    duet_f32_to_bf16(j->x + r0 * j->m, j->xb + r0 * j->m, (r1 - r0) * j->m);
}

static void rows_pass(duet_range_fn fn, float *x, const float *y, uint16_t *xb, size_t n,
                      size_t m) {
    rows_job j = {x, y, xb, n, m};
    duet_embed_parallel_for(n, m, fn, &j);
}

/* C [m x n] = op(A) op(B) (+ C), packed rows (op: see duet_mm); A and B are
 * f32, or bf16 (uint16_t) in a bf16 workspace. */
static duet_status product(duet_loss_ws *ws, size_t m, size_t n, size_t k, const void *a,
                           int ta, const void *b, int tb, int acc, float *c, duet_error *err) {
    duet_mm op = {m, n, k, ws->bf16 ? dnnl_bf16 : dnnl_f32, a, ta ? m : k, ta,
                  b, tb ? k : n, tb, NULL, c, n, acc};
    return duet_mm_run(&ws->mm, &op, err);
}

/* D [n x m] = dist(A [n x o], B [m x o]) via the Gram matrix (A, B in the
 * products' type). */
static duet_status distances(duet_loss_ws *ws, const void *a, size_t n, const void *b,
                             size_t m, size_t o, float *D, duet_error *err) {
    duet_status st = product(ws, n, m, o, a, 0, b, 1, 0, D, err);
    if (!st) rows_pass(dist_rows, D, NULL, NULL, n, m);
    return st;
}

/* ------------------------------------------------------------ anchors */

/* One anchor's row of a distance matrix and of its gradient: entry k is
 * dist[row * ld + k]. */
typedef struct anchor {
    const float *dist;
    float *grad;
    size_t row, ld;
} anchor;

static inline size_t at(const anchor *a, size_t k) { return a->row * a->ld + k; }

/* Selects the indices of the kk smallest distances among candidates k in
 * [0, nk) with label[k] != own. Ties keep the lower index. Returns the number selected (<= kk). */
static size_t select_smallest(const anchor *a, size_t nk, const size_t *label,
                              size_t own, size_t kk, size_t *sel, float *selv) {
    size_t cnt = 0;
    for (size_t k = 0; k < nk; k++) {
        if (label[k] == own) continue;
        float v = a->dist[at(a, k)];
        if (cnt == kk && !(v < selv[cnt - 1])) continue;
        size_t pos = cnt < kk ? cnt++ : kk - 1;
        while (pos > 0 && v < selv[pos - 1]) {
            selv[pos] = selv[pos - 1];
            sel[pos] = sel[pos - 1];
            pos--;
        }
        selv[pos] = v;
        sel[pos] = k;
    }
    return cnt;
}

/* The hinges of an anchor's selected negatives sel[0..nsel) against the
 * positive at pos_idx, all in row `row` of D and G (leading dimension ld).
 * Scatters the weight-scaled gradients into G, the positive's last; returns
 * the mean selected hinge (0 without negatives). */
static double hinges(const duet_params *p, const float *D, float *G, size_t row, size_t ld,
                     size_t pos_idx, const size_t *sel, size_t nsel, float weight) {
    if (!nsel) return 0.0;
    anchor a = {D, G, row, ld};
    float pos = D[at(&a, pos_idx)], coef = weight / (float)nsel, gpos = 0.0f;
    double s = 0.0;
    for (size_t i = 0; i < nsel; i++) {
        float h = p->margin + pos - D[at(&a, sel[i])];
        if (h <= 0.0f) continue;
        s += h;
        gpos += coef;
        G[at(&a, sel[i])] -= coef;
    }
    G[at(&a, pos_idx)] += gpos;
    return s / (double)nsel;
}

/* The K nearest negatives of row `row` of D (candidates [0, nk) whose label
 * is not own) into the calling thread's scratch *sel; returns their count. */
static size_t nearest(duet_loss_ws *ws, const duet_params *p, const float *D, size_t row,
                      size_t ld, size_t nk, const size_t *label, size_t own, size_t **sel) {
    size_t t = duet_embed_thread();
    *sel = ws->sel + t * ws->top_k;
    anchor a = {D, NULL, row, ld};
    return select_smallest(&a, nk, label, own, p->top_k, *sel, ws->selv + t * ws->top_k);
}

/* One anchor: its K nearest negatives, then their hinges. */
static double one_anchor(duet_loss_ws *ws, const duet_params *p, const float *D, float *G,
                         size_t row, size_t ld, size_t pos_idx, size_t nk,
                         const size_t *label, size_t own, float weight) {
    size_t *sel, nsel = nearest(ws, p, D, row, ld, nk, label, own, &sel);
    return hinges(p, D, G, row, ld, pos_idx, sel, nsel, weight);
}

typedef struct term_job {
    duet_loss_ws *ws;
    const duet_params *p;
    const float *D;
    float *G;
    size_t n;               /* candidates (and the leading dimension)       */
    const size_t *own;      /* [anchors] each anchor's own label            */
    const size_t *label;    /* [n] the candidates' labels                   */
    const size_t *order;    /* i2t: sentences grouped by image; start[B+1]  */
    const size_t *start;
    size_t *far;            /* structure: each anchor's positive or SIZE_MAX */
    float w;
} term_job;

/* i2t, images [i0, i1): anchors are the sentences j of image i, in order;
 * positive d_it[i, j], negatives d_it[i, j'] over the sentences of other
 * images (row i of the image-major copy, read contiguously). */
static void i2t_images(void *ctx, size_t i0, size_t i1) {
    term_job *j = ctx;
    for (size_t i = i0; i < i1; i++) {
        memset(j->G + i * j->n, 0, j->n * sizeof(float)); /* the row this image owns */
        /* the image's sentences share the row and the negatives: one selection */
        size_t *sel, nsel = nearest(j->ws, j->p, j->D, i, j->n, j->n, j->label, i, &sel);
        for (size_t q = j->start[i]; q < j->start[i + 1]; q++) {
            size_t s = j->order[q];
            j->ws->val[s] = hinges(j->p, j->D, j->G, i, j->n, s, sel, nsel, j->w);
        }
    }
}

/* t2i, sentences [s0, s1): positive d_ti[s, c(s)]; negatives d_ti[s, i]
 * over the other batch images. */
static void t2i_sentences(void *ctx, size_t s0, size_t s1) {
    term_job *j = ctx;
    for (size_t s = s0; s < s1; s++) {
        memset(j->G + s * j->n, 0, j->n * sizeof(float));
        j->ws->val[s] = one_anchor(j->ws, j->p, j->D, j->G, s, j->n, j->own[s], j->n, j->label,
                                   j->own[s], j->w);
    }
}

static int cmp_pair(const void *a, const void *b) {
    const size_t *x = a, *y = b; /* (label, index) */
    return x[0] != y[0] ? (x[0] < y[0] ? -1 : 1) : (x[1] < y[1] ? -1 : x[1] > y[1]);
}

/* Structure term: far[r] = the farthest other item of r's label (the lowest
 * index among equals), or SIZE_MAX when r has no such item or no item of
 * another label (then it is no anchor). The items are sorted by (label,
 * index) into pairs [2n], so each looks at its own label's items only. */
static void struct_positives(const float *D, size_t n, const size_t *lab, size_t *far,
                             size_t *pairs) {
    for (size_t r = 0; r < n; r++) { pairs[2 * r] = lab[r]; pairs[2 * r + 1] = r; }
    qsort(pairs, n, 2 * sizeof(size_t), cmp_pair);
    for (size_t a = 0, b; a < n; a = b) {
        for (b = a + 1; b < n && pairs[2 * b] == pairs[2 * a]; b++) {}
        for (size_t q = a; q < b; q++) {
            size_t r = pairs[2 * q + 1], best = SIZE_MAX;
            const float *row = D + r * n;
            for (size_t u = a; u < b && b - a < n; u++) { /* in index order */
                size_t k = pairs[2 * u + 1];
                if (k != r && (best == SIZE_MAX || row[k] > row[best])) best = k;
            }
            far[r] = best;
        }
    }
}

static void struct_anchors(void *ctx, size_t r0, size_t r1) {
    term_job *j = ctx;
    for (size_t r = r0; r < r1; r++) {
        memset(j->G + r * j->n, 0, j->n * sizeof(float));
        j->ws->val[r] = j->far[r] == SIZE_MAX ? 0.0
                      : one_anchor(j->ws, j->p, j->D, j->G, r, j->n, j->far[r], j->n, j->label,
                                   j->label[r], j->w);
    }
}

static double sum(const double *v, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += v[i];
    return s;
}

static double term_i2t(duet_loss_ws *ws, const duet_params *p, size_t B, size_t ns,
                       const size_t *sent_img, float w) {
    int two_images = 0;
    for (size_t j = 1; j < ns && !two_images; j++) two_images = sent_img[j] != sent_img[0];
    if (!two_images) {
        memset(ws->g_it, 0, ns * B * sizeof(float));
        return 0.0;
    }
    /* the sentences of each image, in order (a counting sort) */
    size_t *start = ws->idx, *order = ws->idx + B + 1;
    memset(start, 0, (B + 1) * sizeof(size_t));
    for (size_t s = 0; s < ns; s++) start[sent_img[s] + 1]++;
    for (size_t i = 0; i < B; i++) start[i + 1] += start[i];
    size_t *fill = order + ns;
    memcpy(fill, start, B * sizeof(size_t));
    for (size_t s = 0; s < ns; s++) order[fill[sent_img[s]]++] = s;
    term_job j = {ws, p, ws->d_it, ws->g_it, ns, NULL, sent_img, order, start, NULL, w / (float)ns};
    duet_embed_parallel_for(B, ns * (ns / B + 1), i2t_images, &j);
    return sum(ws->val, ns) / (double)ns;
}

static double term_t2i(duet_loss_ws *ws, const duet_params *p, size_t B, size_t ns,
                       const size_t *sent_img, float w) {
    if (B < 2 || p->one_way) {
        memset(ws->g_ti, 0, ns * B * sizeof(float));
        return 0.0;
    }
    size_t *ids = ws->idx;
    for (size_t i = 0; i < B; i++) ids[i] = i;
    term_job j = {ws, p, ws->d_ti, ws->g_ti, B, sent_img, ids, NULL, NULL, NULL, w / (float)ns};
    duet_embed_parallel_for(ns, B, t2i_sentences, &j);
    return sum(ws->val, ns) / (double)ns;
}

/* Structure term over n items with labels lab (same label = neighbours):
 * positive = the farthest neighbour, negatives = items of other labels. */
static double term_struct(duet_loss_ws *ws, const duet_params *p, const float *D, float *G,
                          size_t n, const size_t *lab, float w) {
    term_job j = {ws, p, D, G, n, NULL, lab, NULL, NULL, ws->idx, 0.0f};
    struct_positives(D, n, lab, ws->idx, ws->idx + n);
    size_t anchors = 0;
    for (size_t r = 0; r < n; r++) anchors += ws->idx[r] != SIZE_MAX;
    if (!anchors) {
        memset(G, 0, n * n * sizeof(float));
        return 0.0;
    }
    j.w = w / (float)anchors;
    duet_embed_parallel_for(n, n, struct_anchors, &j);
    return sum(ws->val, n) / (double)anchors;
}

/* For a self-distance matrix D [n x n] of X [n x o] (G = X X^T, X in the
 * products' type) with distance gradients Gd: dX += (dG + dG^T) X, one
 * product on the symmetrized gradient (in bf16 through gb [n x n]). */
static duet_status self_gram_backward(duet_loss_ws *ws, const float *D, float *Gd,
                                      uint16_t *gb, const void *x, size_t n, size_t o,
                                      float *dx, duet_error *err) {
    rows_pass(gram_grad_rows, Gd, D, NULL, n, n);
    rows_pass(symmetrize_rows, Gd, NULL, NULL, n, n);
    if (gb) rows_pass(bf16_rows, Gd, NULL, gb, n, n);
    return product(ws, n, o, n, gb ? (const void *)gb : Gd, 0, x, 0, 1, dx, err);
}

duet_status duet_loss(const duet_params *p, const float *img, size_t B,
                      const float *txt, size_t ns, size_t o,
                      const size_t *sent_img, const int *img_group,
                      duet_loss_terms *t, float *d_img, float *d_txt,
                      duet_loss_ws *ws, duet_error *err) {
    memset(t, 0, sizeof *t);
    if (B > ws->cap_b || ns > ws->cap_s || p->top_k > ws->top_k)
        return duet_fail(err, DUET_ERR_INVALID_ARG,
                         "loss: batch %zu x %zu (K %zu) exceeds workspace %zu x %zu (K %zu)", B,
                         ns, p->top_k, ws->cap_b, ws->cap_s, ws->top_k);
    for (size_t j = 0; j < ns; j++)
        if (sent_img[j] >= B)
            return duet_fail(err, DUET_ERR_INVALID_ARG,
                             "loss: sentence %zu names image %zu of %zu", j,
                             sent_img[j], B);
    if (p->w_img_struct != 0.0f && !img_group)
        return duet_fail(err, DUET_ERR_INVALID_ARG,
                         "loss: w_img_struct is %g but the images have no "
                         "neighbour groups", (double)p->w_img_struct);
    int use_tt = p->w_txt_struct != 0.0f, use_ii = p->w_img_struct != 0.0f;
    /* bf16: ws->hb holds the embeddings [ns + B x o] as product inputs, then
     * room for a Gram gradient (the largest of [ns x B], [ns x ns], [B x B]) */
    size_t ng = ns * (ns > B ? ns : B);
    duet_status st = ws_ready(ws, (ns + B) * o + ng, err);
    if (st) return st;
    const void *ti = txt, *ii = img;
    uint16_t *gb = NULL;
    if (ws->bf16) {
        duet_f32_to_bf16(txt, ws->hb, ns * o);
        duet_f32_to_bf16(img, ws->hb + ns * o, B * o);
        ti = ws->hb;
        ii = ws->hb + ns * o;
        gb = ws->hb + (ns + B) * o;
    }
    /* each term zeroes the gradient rows its anchors own as it goes */
    if ((st = distances(ws, ti, ns, ii, B, o, ws->d_ti, err))) return st; /* [ns x B] */
    if (use_tt && (st = distances(ws, ti, ns, ti, ns, o, ws->d_tt, err))) return st;
    if (use_ii && (st = distances(ws, ii, B, ii, B, o, ws->d_ii, err))) return st;
    rows_pass(transpose_rows, ws->d_it, ws->d_ti, NULL, B, ns);          /* [B x ns] */
    t->i2t = (float)term_i2t(ws, p, B, ns, sent_img, p->w_i2t);
    t->t2i = (float)term_t2i(ws, p, B, ns, sent_img, p->w_t2i);
    if (use_tt) {
        t->txt_struct = (float)term_struct(ws, p, ws->d_tt, ws->g_tt, ns, sent_img,
                                           p->w_txt_struct);
    }
    if (use_ii) {
        size_t *glab = ws->idx + 3 * (ws->cap_s + ws->cap_b + 1); /* past term_struct's */
        for (size_t i = 0; i < B; i++) glab[i] = (size_t)(unsigned)img_group[i];
        t->img_struct = (float)term_struct(ws, p, ws->d_ii, ws->g_ii, B, glab, p->w_img_struct);
    }
    t->total = p->w_i2t * t->i2t + (p->one_way ? 0.0f : p->w_t2i * t->t2i) +
               p->w_img_struct * t->img_struct + p->w_txt_struct * t->txt_struct;
    if (!d_img && !d_txt) return DUET_OK;

    /* Back to the embeddings: D = f(G) with G = T I^T (and T T^T, I I^T). */
    rows_pass(add_transposed_rows, ws->g_ti, ws->g_it, NULL, ns, B);
    rows_pass(gram_grad_rows, ws->g_ti, ws->d_ti, gb, ns, B);
    const void *g = gb ? (const void *)gb : ws->g_ti;
    /* dT [ns x o] = dG_ti [ns x B] . I [B x o];  dI [B x o] = dG_ti^T . T */
    st = product(ws, ns, o, B, g, 0, ii, 0, 0, d_txt, err);
    if (!st) st = product(ws, B, o, ns, g, 1, ti, 0, 0, d_img, err);
    if (!st && use_tt) st = self_gram_backward(ws, ws->d_tt, ws->g_tt, gb, ti, ns, o, d_txt, err);
    if (!st && use_ii) st = self_gram_backward(ws, ws->d_ii, ws->g_ii, gb, ii, B, o, d_img, err);
    return st;
}
