/* loss.c -- the bidirectional ranking loss with structure-preserving terms
 * (docs/MODEL.md, "Loss").
 *
 * All distances come from Gram matrices computed by sgemm:
 *   d(a, b) = sqrt(max(2 - 2 a.b, 0) + 1e-4)
 * Each term walks its anchors; for every anchor it selects the K smallest
 * negative distances (the K largest hinge terms, since the hinge falls with the
 * negative's distance), adds their hinges, and scatters the gradient of the
 * term into a distance-gradient matrix. The chain rule back to the embeddings
 * is again sgemm: dG = -dD / D. */
#include "embed/embed.h"
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DIST_EPS 1e-4f

void duet_loss_ws_free(duet_loss_ws *ws) {
    if (!ws) return;
    free(ws->d_ti); free(ws->g_ti); free(ws->d_it); free(ws->g_it);
    free(ws->d_tt); free(ws->g_tt);
    free(ws->d_ii); free(ws->g_ii); free(ws->sel); free(ws->selv);
    memset(ws, 0, sizeof *ws);
}

duet_status duet_loss_ws_init(duet_loss_ws *ws, size_t cap_b, size_t cap_s,
                              size_t top_k, duet_error *err) {
    memset(ws, 0, sizeof *ws);
    size_t sb, ss, bb;
    if (!duet_mul_size(cap_s, cap_b, &sb) || !duet_mul_size(cap_s, cap_s, &ss) ||
        !duet_mul_size(cap_b, cap_b, &bb))
        return duet_fail(err, DUET_ERR_NOMEM, "loss workspace: size overflow");
    ws->cap_b = cap_b;
    ws->cap_s = cap_s;
    ws->d_ti = duet_alloc_array(sb, sizeof(float));
    ws->g_ti = duet_alloc_array(sb, sizeof(float));
    ws->d_it = duet_alloc_array(sb, sizeof(float));
    ws->g_it = duet_alloc_array(sb, sizeof(float));
    ws->d_tt = duet_alloc_array(ss, sizeof(float));
    ws->g_tt = duet_alloc_array(ss, sizeof(float));
    ws->d_ii = duet_alloc_array(bb, sizeof(float));
    ws->g_ii = duet_alloc_array(bb, sizeof(float));
    ws->sel = duet_alloc_array(top_k, sizeof(size_t));
    ws->selv = duet_alloc_array(top_k, sizeof(float));
    if (!ws->d_ti || !ws->g_ti || !ws->d_it || !ws->g_it || !ws->d_tt || !ws->g_tt || !ws->d_ii ||
        !ws->g_ii || !ws->sel || !ws->selv) {
        duet_loss_ws_free(ws);
        return duet_fail(err, DUET_ERR_NOMEM, "loss workspace: out of memory");
    }
    return DUET_OK;
}

/* D [n x m] = dist(A [n x o], B [m x o]) via the Gram matrix. */
static void distances(const float *a, size_t n, const float *b, size_t m,
                      size_t o, float *D) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)m, (int)o,
                1.0f, a, (int)o, b, (int)o, 0.0f, D, (int)m);
    for (size_t i = 0; i < n * m; i++) {
        float u = 2.0f - 2.0f * D[i];
        D[i] = sqrtf((u > 0.0f ? u : 0.0f) + DIST_EPS);
    }
}

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

/* One anchor's contribution: the hinges of its selected negatives against the
 * positive at index pos_idx. Adds to the term sum and scatters scale-weighted
 * gradients. Returns the sum of selected hinges divided by the count. */
static double anchor_term(const anchor *a, size_t pos_idx, const anchor *na,
                          size_t nsel, const size_t *sel, float margin,
                          float weight, float *gpos_out) {
    float pos = a->dist[at(a, pos_idx)];
    double s = 0.0;
    float coef = weight / (float)nsel;
    float gpos = 0.0f;
    for (size_t i = 0; i < nsel; i++) {
        float h = margin + pos - na->dist[at(na, sel[i])];
        if (h <= 0.0f) continue;
        s += h;
        gpos += coef;
        na->grad[at(na, sel[i])] -= coef;
    }
    *gpos_out = gpos;
    return s / (double)nsel;
}

/* i2t: anchors are sentences j; positive d(I_c(j), T_j) = d_it[c(j), j];
 * negatives d_it[c(j), j'] over the sentences j' of other images (row c(j) of
 * the image-major copy, read contiguously). */
static double term_i2t(const float *D, float *G, size_t ns,
                       const size_t *sent_img, const duet_params *p, float w,
                       duet_loss_ws *ws) {
    int two_images = 0;
    for (size_t j = 1; j < ns && !two_images; j++) two_images = sent_img[j] != sent_img[0];
    if (!two_images) return 0.0;
    double total = 0.0;
    float wa = w / (float)ns;
    for (size_t j = 0; j < ns; j++) {
        anchor row = {D, G, sent_img[j], ns};
        size_t nsel = select_smallest(&row, ns, sent_img, sent_img[j], p->top_k,
                                      ws->sel, ws->selv);
        float gpos;
        total += anchor_term(&row, j, &row, nsel, ws->sel, p->margin, wa, &gpos);
        G[sent_img[j] * ns + j] += gpos;
    }
    return total / (double)ns;
}

/* t2i: anchors are sentences j; positive d_ti[j, c(j)]; negatives d_ti[j, i]
 * over the other batch images. */
static double term_t2i(const float *D, float *G, size_t B, size_t ns,
                       const size_t *sent_img, const size_t *img_id,
                       const duet_params *p, float w, duet_loss_ws *ws) {
    if (B < 2) return 0.0;
    double total = 0.0;
    float wa = w / (float)ns;
    for (size_t j = 0; j < ns; j++) {
        anchor row = {D, G, j, B};
        size_t nsel = select_smallest(&row, B, img_id, sent_img[j], p->top_k,
                                      ws->sel, ws->selv);
        float gpos;
        total += anchor_term(&row, sent_img[j], &row, nsel, ws->sel, p->margin,
                             wa, &gpos);
        G[j * B + sent_img[j]] += gpos;
    }
    return total / (double)ns;
}

/* Structure term over n items with labels lab (same label = neighbours):
 * positive = the farthest neighbour, negatives = items of other labels. */
static double term_struct(const float *D, float *G, size_t n,
                          const size_t *lab, const duet_params *p, float w,
                          duet_loss_ws *ws) {
    size_t anchors = 0;
    for (size_t j = 0; j < n; j++) {
        int has_pos = 0, has_neg = 0;
        for (size_t k = 0; k < n; k++) {
            if (k == j) continue;
            if (lab[k] == lab[j]) has_pos = 1; else has_neg = 1;
        }
        anchors += has_pos && has_neg;
    }
    if (!anchors) return 0.0;
    float wa = w / (float)anchors;
    double total = 0.0;
    for (size_t j = 0; j < n; j++) {
        size_t far = SIZE_MAX;
        for (size_t k = 0; k < n; k++)
            if (k != j && lab[k] == lab[j] &&
                (far == SIZE_MAX || D[j * n + k] > D[j * n + far]))
                far = k;
        if (far == SIZE_MAX) continue;
        anchor row = {D, G, j, n};
        size_t nsel = select_smallest(&row, n, lab, lab[j], p->top_k, ws->sel,
                                      ws->selv);
        if (!nsel) continue;
        float gpos;
        total += anchor_term(&row, far, &row, nsel, ws->sel, p->margin, wa, &gpos);
        G[j * n + far] += gpos;
    }
    return total / (double)anchors;
}

/* G <- -G / D (where the clamp 2 - 2g > 0 was active; else 0): the gradient
 * with respect to the Gram matrix. */
static void dist_to_gram_grad(const float *D, float *G, size_t n) {
    const float floor_d = sqrtf(DIST_EPS) * 1.0000001f;
    for (size_t i = 0; i < n; i++)
        G[i] = D[i] > floor_d ? -G[i] / D[i] : 0.0f;
}

/* For a self-distance matrix D [n x n] of X [n x o] (G = X X^T) with
 * distance gradients Gd: dX += (dG + dG^T) X, one sgemm on the symmetrized
 * gradient. */
static void self_gram_backward(const float *D, float *Gd, const float *x,
                               size_t n, size_t o, float *dx) {
    dist_to_gram_grad(D, Gd, n * n);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i; j < n; j++) {
            float v = Gd[i * n + j] + Gd[j * n + i];
            Gd[i * n + j] = Gd[j * n + i] = v;
        }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)o, (int)n,
                1.0f, Gd, (int)n, x, (int)o, 1.0f, dx, (int)o);
}

duet_status duet_loss(const duet_params *p, const float *img, size_t B,
                      const float *txt, size_t ns, size_t o,
                      const size_t *sent_img, const int *img_group,
                      duet_loss_terms *t, float *d_img, float *d_txt,
                      duet_loss_ws *ws, duet_error *err) {
    memset(t, 0, sizeof *t);
    if (B > ws->cap_b || ns > ws->cap_s)
        return duet_fail(err, DUET_ERR_INVALID_ARG,
                         "loss: batch %zu x %zu exceeds workspace %zu x %zu", B,
                         ns, ws->cap_b, ws->cap_s);
    for (size_t j = 0; j < ns; j++)
        if (sent_img[j] >= B)
            return duet_fail(err, DUET_ERR_INVALID_ARG,
                             "loss: sentence %zu names image %zu of %zu", j,
                             sent_img[j], B);
    if (p->w_img_struct != 0.0f && !img_group)
        return duet_fail(err, DUET_ERR_INVALID_ARG,
                         "loss: w_img_struct is %g but the images have no "
                         "neighbour groups", (double)p->w_img_struct);
    /* image ids 0..B-1 as labels for the t2i negatives */
    size_t *ids = duet_alloc_array(B, sizeof(size_t));
    size_t *glab = img_group ? duet_alloc_array(B, sizeof(size_t)) : NULL;
    if (!ids || (img_group && !glab)) {
        free(ids); free(glab);
        return duet_fail(err, DUET_ERR_NOMEM, "loss: out of memory");
    }
    for (size_t i = 0; i < B; i++) ids[i] = i;
    if (img_group)
        for (size_t i = 0; i < B; i++) glab[i] = (size_t)(unsigned)img_group[i];

    memset(ws->g_ti, 0, ns * B * sizeof(float));
    memset(ws->g_it, 0, ns * B * sizeof(float));
    distances(txt, ns, img, B, o, ws->d_ti);                  /* [ns x B] */
    for (size_t j = 0; j < ns; j++)                           /* [B x ns] */
        for (size_t i = 0; i < B; i++) ws->d_it[i * ns + j] = ws->d_ti[j * B + i];
    t->i2t = (float)term_i2t(ws->d_it, ws->g_it, ns, sent_img, p, p->w_i2t, ws);
    if (!p->one_way)
        t->t2i = (float)term_t2i(ws->d_ti, ws->g_ti, B, ns, sent_img, ids, p,
                                 p->w_t2i, ws);
    int use_tt = p->w_txt_struct != 0.0f, use_ii = p->w_img_struct != 0.0f;
    if (use_tt) {
        memset(ws->g_tt, 0, ns * ns * sizeof(float));
        distances(txt, ns, txt, ns, o, ws->d_tt);              /* [ns x ns] */
        t->txt_struct = (float)term_struct(ws->d_tt, ws->g_tt, ns, sent_img, p,
                                           p->w_txt_struct, ws);
    }
    if (use_ii) {
        memset(ws->g_ii, 0, B * B * sizeof(float));
        distances(img, B, img, B, o, ws->d_ii);                /* [B x B] */
        t->img_struct = (float)term_struct(ws->d_ii, ws->g_ii, B, glab, p,
                                           p->w_img_struct, ws);
    }
    t->total = p->w_i2t * t->i2t + (p->one_way ? 0.0f : p->w_t2i * t->t2i) +
               p->w_img_struct * t->img_struct + p->w_txt_struct * t->txt_struct;
    free(ids);
    free(glab);
    if (!d_img && !d_txt) return DUET_OK;

    /* Back to the embeddings: D = f(G) with G = T I^T (and T T^T, I I^T). */
    for (size_t j = 0; j < ns; j++)
        for (size_t i = 0; i < B; i++) ws->g_ti[j * B + i] += ws->g_it[i * ns + j];
    dist_to_gram_grad(ws->d_ti, ws->g_ti, ns * B);
    /* dT [ns x o] = dG_ti [ns x B] . I [B x o];  dI [B x o] = dG_ti^T . T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)ns, (int)o,
                (int)B, 1.0f, ws->g_ti, (int)B, img, (int)o, 0.0f, d_txt, (int)o);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)B, (int)o,
                (int)ns, 1.0f, ws->g_ti, (int)B, txt, (int)o, 0.0f, d_img, (int)o);
    if (use_tt) self_gram_backward(ws->d_tt, ws->g_tt, txt, ns, o, d_txt);
    if (use_ii) self_gram_backward(ws->d_ii, ws->g_ii, img, B, o, d_img);
    return DUET_OK;
}
