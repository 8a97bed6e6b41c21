/* topk.c -- exact top-k by inner product, on oneDNN, the same answer in
 * every precision.
 *
 * A score is defined once: the inner product of the float32 query and
 * gallery row accumulated in double and rounded to float ("exact score").
 * Search runs in two passes:
 *   1. candidates: blocks of queries times blocks of gallery rows in one
 *      oneDNN matmul each (f32, or bf16 inputs with f32 accumulation), then
 *      per query a k-sized min-heap over the approximate scores plus a list
 *      of every row whose approximate score comes within a margin of the
 *      heap's worst;
 *   2. re-rank: the candidates' exact scores, best first, ties to the lower
 *      gallery index.
 * The margin is twice a bound on |approximate - exact| for that query:
 * |q| * max|g| * (input rounding 2^-7 for bf16 + accumulation (d+4) 2^-23),
 * so the true top-k is always among the candidates (if s_k is the k-th best
 * approximate score, the true k-th best exact score is >= s_k - e, and a
 * true top-k row scores >= s_k - 2e approximately). Hence the result and its
 * scores are identical for f32 and bf16, and independent of blocking and
 * threads. */
#include "core/dnn.h"
#include "search/search.h"
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define QBLOCK 1024    /* queries per matmul                                */
#define GBLOCK 4096    /* gallery rows per matmul                           */
#define GEMV_MAX 4     /* fewer queries: f32 sgemv, which reads the rows once
                          without packing them (a server's single query)     */

struct duet_searcher {
    duet_dnn dnn;
    const float *g;      /* [n x d] borrowed                          */
    uint16_t *gb;        /* [n x d] bf16 copy (bf16 only), owned       */
    size_t n, d;
    double gmax;         /* largest row norm of the gallery            */
};

/* ------------------------------------------------------------- ordering */

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

/* ------------------------------------------------------------ searcher */

duet_status duet_searcher_new(const duet_mat *gallery, duet_precision p, duet_searcher **out, duet_error *err) {
    *out = NULL;
    if (!gallery || (!gallery->data && gallery->rows))
        return duet_fail(err, DUET_ERR_INVALID_ARG, "search: no gallery");
    duet_searcher *s = calloc(1, sizeof *s);
    if (!s) return duet_fail(err, DUET_ERR_NOMEM, "search: out of memory");
    s->g = gallery->data;
    s->n = gallery->rows;
    s->d = gallery->cols;
    duet_status st = duet_dnn_init(&s->dnn, p, err);
    for (size_t i = 0; !st && i < s->n; i++) {
        double t = 0;
        for (size_t j = 0; j < s->d; j++) t += (double)s->g[i * s->d + j] * s->g[i * s->d + j];
        if (isfinite(t) && sqrt(t) > s->gmax) s->gmax = sqrt(t);
    }
    if (!st && s->dnn.prec == DUET_PRECISION_BF16 && s->n && s->d) {
        s->gb = duet_alloc_array(s->n, s->d * sizeof(uint16_t));
        if (!s->gb) st = duet_fail(err, DUET_ERR_NOMEM, "search: out of memory for a bf16 copy of a %zu x %zu "
                                   "gallery", s->n, s->d);
        else st = duet_dnn_to_bf16(&s->dnn, s->g, s->gb, s->n * s->d, err);
    }
    if (st) { duet_searcher_free(s); return st; }
    *out = s;
    return DUET_OK;
}

void duet_searcher_free(duet_searcher *s) {
    if (!s) return;
    duet_dnn_fini(&s->dnn);
    free(s->gb);
    free(s);
}

duet_precision duet_searcher_precision(const duet_searcher *s) { return s->dnn.prec; }

/* ------------------------------------------------------------- pass 1 */

/* Per query: the heap of the k best approximate scores and the rows that
 * came within margin of the heap's worst when they were scanned. */
typedef struct cand {
    duet_hit *h;          /* row and approximate score */
    size_t n, cap;
    float margin;
} cand;

typedef struct sel_ctx {
    const float *scores;   /* [nq x nb] of this block                */
    size_t nb, g0, k;
    duet_hit *heaps;       /* [nq x k] of this query block           */
    size_t *fill;          /* [nq] entries used in each heap         */
    cand *cands;           /* [nq]                                   */
    int oom;
} sel_ctx;

static int cand_add(cand *c, size_t i, float v) {
    duet_hit *p = duet_grow(c->h, &c->cap, c->n, sizeof *p);
    if (!p) return -1;
    c->h = p;
    c->h[c->n++] = (duet_hit){i, v};
    return 0;
}

static void select_range(void *vc, size_t begin, size_t end) {
    sel_ctx *c = vc;
    for (size_t q = begin; q < end; q++) {
        const float *s = c->scores + q * c->nb;
        duet_hit *h = c->heaps + q * c->k;
        cand *cd = &c->cands[q];
        size_t n = c->fill[q];
        float thr = n == c->k ? h[0].score : -INFINITY;
        int oom = 0;
        for (size_t j = 0; j < c->nb; j++) {
            float v = s[j];
            if (!(v >= thr - cd->margin)) continue;   /* also drops NaN */
            oom |= cand_add(cd, c->g0 + j, v);
            if (n < c->k) {
                h[n] = (duet_hit){c->g0 + j, v};
                sift_up(h, n++);
                if (n == c->k) thr = h[0].score;
            } else if (v > thr) {
                h[0] = (duet_hit){c->g0 + j, v};
                sift_down(h, n, 0);
                thr = h[0].score;
            }
        }
        c->fill[q] = n;
        if (oom) c->oom = 1;
    }
}

/* ------------------------------------------------------------- pass 2 */

static float exact_score(const float *q, const float *g, size_t d) {
    double s = 0;
    for (size_t j = 0; j < d; j++) s += (double)q[j] * g[j];
    return (float)s;
}

/* The k best exact scores among query q's candidates into out[k], padded
 * (when fewer are finite) with the lowest unused indices at -inf; *real =
 * the scored ones. */
static int rerank(const duet_searcher *s, const float *q, const duet_hit *heap, size_t fill, cand *cd,
                  size_t k, duet_hit *out, size_t *real) {
    float thr = fill == k ? heap[0].score : -INFINITY;   /* the heap's worst */
    duet_hit *all = duet_alloc_array(cd->n, sizeof *all);
    if (!all) return -1;
    size_t m = 0;
    for (size_t i = 0; i < cd->n; i++) {
        if (cd->h[i].score < thr - cd->margin) continue;
        size_t r = cd->h[i].index;
        all[m] = (duet_hit){r, exact_score(q, s->g + r * s->d, s->d)};
        if (all[m].score == all[m].score) m++;
    }
    qsort(all, m, sizeof *all, cmp_best_first);
    size_t got = m < k ? m : k;
    memcpy(out, all, got * sizeof *out);
    free(all);
    *real = got;
    for (size_t i = got, next = 0; i < k; i++) {
        for (;; next++) {
            int used = 0;
            for (size_t t = 0; t < i; t++) used |= out[t].index == next;
            if (!used) break;
        }
        out[i] = (duet_hit){next++, -INFINITY};
    }
    return 0;
}

/* ------------------------------------------------------------ blocks */

/* The matmul plans of one call: full blocks share one, the last gallery
 * block (always the same size, n mod GBLOCK) its own; a query block of
 * another size (the last) starts them afresh. */
typedef struct plans {
    duet_gemm full, tail;
    size_t mq;
} plans;

/* scores [mq x mg] = Q G[g0..]^T in the searcher's precision (qb: the bf16
 * queries of this block, bf16 only), or one f32 sgemv per query when there
 * are fewer than GEMV_MAX. */
static duet_status score_block(duet_searcher *s, plans *pl, const float *Q, const uint16_t *qb, size_t mq,
                               size_t g0, size_t mg, size_t gbn, float *scores, duet_error *err) {
    if (mq < GEMV_MAX) {
        for (size_t q = 0; q < mq; q++)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)mg, (int)s->d, 1.0f, s->g + g0 * s->d, (int)s->d,
                        Q + q * s->d, 1, 0.0f, scores + q * mg, 1);
        return DUET_OK;
    }
    int bf = s->gb != NULL;
    if (pl->mq != mq) { duet_gemm_free(&pl->full); duet_gemm_free(&pl->tail); pl->mq = mq; }
    duet_gemm *g = mg == gbn ? &pl->full : &pl->tail;
    duet_status st = DUET_OK;
    if (!g->prim) st = duet_gemm_plan(&s->dnn, g, bf ? dnnl_bf16 : dnnl_f32, mq, mg, s->d, s->d, s->d, mg, 1, 0, err);
    if (!st) st = bf ? duet_gemm_run(&s->dnn, g, qb, s->gb + g0 * s->d, scores, err)
                     : duet_gemm_run(&s->dnn, g, Q, s->g + g0 * s->d, scores, err);
    return st;
}

/* Margin for query q: twice the bound on |approximate - exact| (bf16: the
 * scores of a block of at least GEMV_MAX queries). */
static float margin_of(const duet_searcher *s, const float *q, int bf16) {
    double t = 0;
    for (size_t j = 0; j < s->d; j++) t += (double)q[j] * q[j];
    double rel = (double)(s->d + 4) / 8388608.0;   /* (d+4) 2^-23 */
    if (bf16) rel += 1.0 / 128 + 1.0 / 32768;
    double m = 2 * sqrt(t) * s->gmax * rel;
    return isfinite(m) ? (float)m : INFINITY;
}

duet_status duet_searcher_topk(duet_searcher *s, const duet_mat *queries, size_t k, duet_hit *out, size_t *k_out,
                               duet_error *err) {
    return duet_searcher_topk_real(s, queries, k, out, k_out, NULL, err);
}

/* Declared in search.h. */
duet_status duet_searcher_topk_real(duet_searcher *s, const duet_mat *queries, size_t k, duet_hit *out,
                                    size_t *k_out, size_t *real, duet_error *err) {
    if (k_out) *k_out = 0;
    if (!s || !queries || !out)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "top-k: searcher, queries and out are required");
    if (queries->cols != s->d)
        return duet_fail(err, DUET_ERR_SHAPE, "top-k: queries have %zu columns, the gallery %zu", queries->cols, s->d);
    if (k == 0) return duet_fail(err, DUET_ERR_INVALID_ARG, "top-k: k must be >= 1");
    size_t nq = queries->rows, ng = s->n, d = s->d, kk = k < ng ? k : ng;
    if (k_out) *k_out = kk;
    if (nq == 0 || kk == 0) return DUET_OK;
    size_t qbn = nq < QBLOCK ? nq : QBLOCK, gbn = ng < GBLOCK ? ng : GBLOCK, ns;
    if (!duet_mul_size(qbn, gbn, &ns)) return duet_fail(err, DUET_ERR_NOMEM, "top-k: block size overflows");
    plans pl = {{0}, {0}, 0};
    /* a stream of this call's own: several threads may search at once */
    duet_searcher me = *s;
    duet_status st = duet_dnn_fail(dnnl_stream_create(&me.dnn.stream, s->dnn.eng, dnnl_stream_default_flags), err,
                                   "top-k: creating a stream");
    if (st) return st;
    float *scores = duet_alloc_array(ns, sizeof(float));
    duet_hit *heaps = duet_alloc_array(qbn, kk * sizeof(duet_hit));
    size_t *fill = duet_alloc_array(qbn, sizeof(size_t));
    cand *cands = duet_calloc_array(qbn, sizeof(cand));
    uint16_t *qb = s->gb ? duet_alloc_array(qbn, d * sizeof(uint16_t)) : NULL;
    if (!scores || !heaps || !fill || !cands || (s->gb && !qb))
        st = duet_fail(err, DUET_ERR_NOMEM, "top-k: out of memory for a %zu x %zu score block", qbn, gbn);
    for (size_t q0 = 0; !st && q0 < nq; q0 += qbn) {
        size_t mq = nq - q0 < qbn ? nq - q0 : qbn;
        const float *Q = queries->data + q0 * d;
        memset(fill, 0, mq * sizeof *fill);
        int bf = qb && mq >= GEMV_MAX;
        for (size_t q = 0; q < mq; q++) { cands[q].n = 0; cands[q].margin = margin_of(s, Q + q * d, bf); }
        if (bf) st = duet_dnn_to_bf16(&me.dnn, Q, qb, mq * d, err);
        for (size_t g0 = 0; !st && g0 < ng; g0 += gbn) {
            size_t mg = ng - g0 < gbn ? ng - g0 : gbn;
            if (d == 0) memset(scores, 0, mq * mg * sizeof(float));
            else st = score_block(&me, &pl, Q, qb, mq, g0, mg, gbn, scores, err);
            sel_ctx c = {scores, mg, g0, kk, heaps, fill, cands, 0};
            if (!st) duet_parallel_for(mq, 8, select_range, &c);
            if (!st && c.oom) st = duet_fail(err, DUET_ERR_NOMEM, "top-k: out of memory for candidates");
        }
        for (size_t q = 0; !st && q < mq; q++) {
            size_t got = 0;
            if (rerank(s, Q + q * d, heaps + q * kk, fill[q], &cands[q], kk, out + (q0 + q) * kk, &got))
                st = duet_fail(err, DUET_ERR_NOMEM, "top-k: out of memory re-ranking %zu candidates", cands[q].n);
            if (real) real[q0 + q] = got;
        }
    }
    for (size_t q = 0; cands && q < qbn; q++) free(cands[q].h);
    free(scores); free(heaps); free(fill); free(cands); free(qb);
    duet_gemm_free(&pl.full);
    duet_gemm_free(&pl.tail);
    dnnl_stream_destroy(me.dnn.stream);
    return st;
}

/* queries, gallery: borrowed; out: caller-owned [q x min(k, n)]. */
duet_status duet_topk(const duet_mat *queries, const duet_mat *gallery, size_t k, duet_hit *out, size_t *k_out,
                      duet_error *err) {
    if (k_out) *k_out = 0;
    if (!queries || !gallery || !out)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "top-k: queries, gallery and out are required");
    if (queries->cols != gallery->cols)
        return duet_fail(err, DUET_ERR_SHAPE, "top-k: queries have %zu columns, the gallery %zu",
                         queries->cols, gallery->cols);
    duet_searcher *s = NULL;
    duet_status st = duet_searcher_new(gallery, DUET_PRECISION_F32, &s, err);
    if (!st) st = duet_searcher_topk(s, queries, k, out, k_out, err);
    duet_searcher_free(s);
    return st;
}

/* ---------------------------------------------------------------- merge */

typedef struct merge_ent {
    duet_hit h;
    size_t pos;      /* in the lists laid end to end */
    int pad;         /* 1: padding (-inf, the lowest unused rows) */
} merge_ent;

/* scored hits best first (ties to the lower row), then padding by row */
static int cmp_merge(const void *pa, const void *pb) {
    const merge_ent *a = pa, *b = pb;
    if (a->pad != b->pad) return a->pad - b->pad;
    if (a->pad) return a->h.index < b->h.index ? -1 : a->h.index > b->h.index;
    return cmp_best_first(&a->h, &b->h);
}

/* Why this equals one searcher over the whole gallery: the shards hold
 * disjoint rows and a hit's score does not depend on the shard, so the
 * whole gallery's k best scored rows are among the shards' k best. When
 * fewer than k rows score, every scored row of every shard is kept, and
 * each shard padded with at least as many of its lowest unused rows as the
 * whole gallery needs from it. */
size_t duet_hits_merge(const duet_hit *const *lists, const size_t *n, const size_t *real, size_t n_lists, size_t k,
                       duet_hit *out, size_t *from) {
    size_t total = 0;
    for (size_t i = 0; i < n_lists; i++) total += n[i];
    merge_ent *e = duet_alloc_array(total, sizeof *e);
    size_t kk = k < total ? k : total;
    if (!e) return 0;
    for (size_t i = 0, p = 0; i < n_lists; i++)
        for (size_t j = 0; j < n[i]; j++, p++) e[p] = (merge_ent){lists[i][j], p, j >= real[i]};
    qsort(e, total, sizeof *e, cmp_merge);
    for (size_t j = 0; j < kk; j++) {
        out[j] = e[j].h;
        if (from) from[j] = e[j].pos;
    }
    free(e);
    return kk;
}
