/* topk.c -- exact top-k by inner product: blocks of queries times blocks of
 * gallery rows in one sgemm each, then a k-sized min-heap per query over the
 * block's scores (no full sort). Ties go to the lower gallery index: rows are
 * scanned in increasing order, so a later row enters only with a strictly
 * higher score than the heap's worst. Fewer than GEMV_MAX queries (a server
 * answering one query) use sgemv instead, which does not pack the gallery. */
#include "core/core.h"
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define QBLOCK 1024    /* queries per sgemm                    */
#define GBLOCK 2048    /* gallery rows per sgemm               */
#define GEMV_MAX 4      /* fewer queries than this: one sgemv each */

/* a is worse than b: lower score, or equal score and higher index. */
static inline int worse(const duet_hit *a, const duet_hit *b) {
    return a->score < b->score || (a->score == b->score && a->index > b->index);
}

static void sift_down(duet_hit *h, size_t n, size_t i) {
    duet_hit x = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && worse(&h[c + 1], &h[c])) c++;
        if (!worse(&h[c], &x)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

static void sift_up(duet_hit *h, size_t i) {
    duet_hit x = h[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!worse(&x, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static int cmp_best_first(const void *pa, const void *pb) {
    const duet_hit *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

typedef struct sel_ctx {
    const float *scores;   /* [nq x nb] of this block            */
    size_t nb, g0, k;
    duet_hit *heaps;       /* [nq x k] of this query block       */
    size_t *fill;          /* [nq] entries used in each heap     */
} sel_ctx;

static void select_range(void *vc, size_t begin, size_t end) {
    sel_ctx *c = vc;
    for (size_t q = begin; q < end; q++) {
        const float *s = c->scores + q * c->nb;
        duet_hit *h = c->heaps + q * c->k;
        size_t n = c->fill[q], j = 0;
        for (; n < c->k && j < c->nb; j++) {
            if (s[j] != s[j]) continue;          /* NaN never enters */
            h[n] = (duet_hit){c->g0 + j, s[j]};
            sift_up(h, n++);
        }
        float thr = n ? h[0].score : 0.0f;
        for (; j < c->nb; j++) {
            if (s[j] > thr) {
                h[0] = (duet_hit){c->g0 + j, s[j]};
                sift_down(h, n, 0);
                thr = h[0].score;
            }
        }
        c->fill[q] = n;
    }
}

/* queries, gallery: borrowed; out: caller-owned [q x min(k, n)]. */
duet_status duet_topk(const duet_mat *queries, const duet_mat *gallery,
                      size_t k, duet_hit *out, size_t *k_out,
                      duet_error *err) {
    if (k_out) *k_out = 0;
    if (!queries || !gallery || !out)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "top-k: queries, gallery and out are required");
    if (queries->cols != gallery->cols)
        return duet_fail(err, DUET_ERR_SHAPE, "top-k: queries have %zu columns, the gallery %zu",
                         queries->cols, gallery->cols);
    if (k == 0) return duet_fail(err, DUET_ERR_INVALID_ARG, "top-k: k must be >= 1");
    size_t nq = queries->rows, ng = gallery->rows, d = gallery->cols;
    size_t kk = k < ng ? k : ng;
    if (k_out) *k_out = kk;
    if (nq == 0 || kk == 0) return DUET_OK;
    if (d > INT32_MAX || ng > INT32_MAX)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "top-k: a gallery of %zu x %zu is too large for one sgemm", ng, d);
    size_t qb = nq < QBLOCK ? nq : QBLOCK, gb = ng < GBLOCK ? ng : GBLOCK, ns;
    if (!duet_mul_size(qb, gb, &ns))
        return duet_fail(err, DUET_ERR_NOMEM, "top-k: block size overflows");
    float *scores = duet_alloc_array(ns, sizeof(float));
    size_t *fill = duet_alloc_array(qb, sizeof(size_t));
    if (!scores || !fill) {
        free(scores); free(fill);
        return duet_fail(err, DUET_ERR_NOMEM, "top-k: out of memory for a %zu x %zu score block", qb, gb);
    }
    for (size_t q0 = 0; q0 < nq; q0 += qb) {
        size_t mq = nq - q0 < qb ? nq - q0 : qb;
        memset(fill, 0, mq * sizeof *fill);
        duet_hit *heaps = out + q0 * kk;
        for (size_t g0 = 0; g0 < ng; g0 += gb) {
            size_t mg = ng - g0 < gb ? ng - g0 : gb;
            if (d == 0) memset(scores, 0, mq * mg * sizeof(float));
            else if (mq < GEMV_MAX)  /* a few queries: sgemv reads the rows once, without packing them */
                for (size_t q = 0; q < mq; q++)
                    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)mg, (int)d, 1.0f, gallery->data + g0 * d,
                                (int)d, queries->data + (q0 + q) * d, 1, 0.0f, scores + q * mg, 1);
            else
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)mq, (int)mg, (int)d, 1.0f,
                            queries->data + q0 * d, (int)d, gallery->data + g0 * d, (int)d, 0.0f,
                            scores, (int)mg);
            sel_ctx c = {scores, mg, g0, kk, heaps, fill};
            duet_parallel_for(mq, 8, select_range, &c);
        }
        for (size_t q = 0; q < mq; q++) {
            duet_hit *h = heaps + q * kk;
            /* an all-NaN row leaves the heap short: pad with the first
             * unused indices at -inf so out is always fully defined */
            for (size_t i = fill[q], next = 0; i < kk; i++) {
                for (;; next++) {
                    int used = 0;
                    for (size_t t = 0; t < i; t++) used |= h[t].index == next;
                    if (!used) break;
                }
                h[i] = (duet_hit){next++, -INFINITY};
            }
            qsort(h, kk, sizeof *h, cmp_best_first);
        }
    }
    free(scores);
    free(fill);
    return DUET_OK;
}
