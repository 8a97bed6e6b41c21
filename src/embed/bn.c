/* bn.c -- the MLP's hidden layer between its two products: batch-norm,
 * ReLU and dropout, forward and backward (docs/MODEL.md, "Branches").
 *
 * Columns are processed in tiles of BT: a tile's loops have a constant trip
 * count and restrict-qualified arrays, which the compiler vectorizes at -O2
 * (the last, narrower tile of a width that is no multiple of BT runs the
 * same code unvectorized). Vectorizing changes no result: every column
 * still sums its rows in order, every entry gets the same operations. Work
 * is split by columns (statistics, backward) or rows (forward) over the
 * threads, one contiguous chunk each, so nothing depends on the thread
 * count. */
#include "embed/embed.h"
#include <math.h>
#include <string.h>

#define BT 16
#define TILE static inline __attribute__((always_inline)) void

typedef struct bn_job {
    const duet_bparams *w;
    duet_bparams *g;
    duet_bnstats *bn;
    const duet_params *p;
    duet_branch_ws *ws;
    size_t n, h;
    int train, drop;
    uint64_t mask_seed;
    const float *mask_override;
    size_t n_all;      /* rows over every rank (n alone)                    */
    int synced;        /* the batch statistics are in ws (summed over ranks) */
    int phase;         /* sums_tiles: 0 sums, 1 squared deviations;
                          backward_tiles: 0 both halves, 1 the gradient sums,
                          2 dZ1 from them                                    */
} bn_job;

static size_t tiles(size_t h) { return (h + BT - 1) / BT; }

/* The mean and biased variance of w columns of z (rows n, leading h). */
TILE stat_tile(const float *restrict z, size_t n, size_t h, size_t w, float *restrict mean,
               float *restrict var) {
    float s[BT] = {0}, v[BT] = {0};
    for (size_t r = 0; r < n; r++)
        for (size_t k = 0; k < w; k++) s[k] += z[r * h + k];
    for (size_t k = 0; k < w; k++) s[k] /= (float)n;
    for (size_t r = 0; r < n; r++)
        for (size_t k = 0; k < w; k++) {
            float dv = z[r * h + k] - s[k];
            v[k] += dv * dv;
        }
    for (size_t k = 0; k < w; k++) {
        mean[k] = s[k];
        var[k] = v[k] / (float)n;
    }
}

/* Column tiles [t0, t1): batch mean and biased variance (training) or the
 * running statistics (evaluation), the running-statistic update,
 * 1/sqrt(var+eps). With synced, the batch statistics of every rank's rows
 * are already in ws->mean/var. */
static void stats_tiles(void *ctx, size_t t0, size_t t1) {
    bn_job *j = ctx;
    duet_branch_ws *ws = j->ws;
    size_t n = j->n_all, h = j->h, c0 = t0 * BT, c1 = t1 * BT < h ? t1 * BT : h;
    if (j->train) {
        for (size_t c = c0; c < c1 && !j->synced; c += BT) {
            if (c + BT <= c1) stat_tile(ws->xh + c, n, h, BT, ws->mean + c, ws->var + c);
            else stat_tile(ws->xh + c, n, h, c1 - c, ws->mean + c, ws->var + c);
        }
        float mom = j->p->bn_momentum, unb = (float)n / (float)(n - 1);
        for (size_t c = c0; c < c1; c++) {
            j->bn->mean[c] = (1.0f - mom) * j->bn->mean[c] + mom * ws->mean[c];
            j->bn->var[c] = (1.0f - mom) * j->bn->var[c] + mom * ws->var[c] * unb;
        }
    } else {
        for (size_t c = c0; c < c1; c++) { ws->mean[c] = j->bn->mean[c]; ws->var[c] = j->bn->var[c]; }
    }
    for (size_t c = c0; c < c1; c++) ws->inv_std[c] = 1.0f / sqrtf(ws->var[c] + j->p->bn_eps);
}

/* Column tiles [t0, t1) of this rank's rows, for statistics summed over
 * the ranks: phase 0 the column sums into ws->mean, phase 1 the sums of
 * squared deviations from ws->mean (by then the mean of every rank's rows)
 * into ws->var; the same operations as stat_tile, in row order. */
static void sums_tiles(void *ctx, size_t t0, size_t t1) {
    bn_job *j = ctx;
    duet_branch_ws *ws = j->ws;
    size_t n = j->n, h = j->h, c0 = t0 * BT, c1 = t1 * BT < h ? t1 * BT : h;
    for (size_t c = c0; c < c1; c += BT) {
        size_t w = c1 - c < BT ? c1 - c : BT;
        float s[BT] = {0};
        for (size_t r = 0; r < n; r++)
            for (size_t k = 0; k < w; k++) {
                float z = ws->xh[r * h + c + k], dv = z - ws->mean[c + k];
                s[k] += j->phase ? dv * dv : z;
            }
        memcpy((j->phase ? ws->var : ws->mean) + c, s, w * sizeof(float));
    }
}

/* The batch mean and biased variance of every rank's rows into ws->mean
 * and ws->var: the sums of this rank's rows, summed over the ranks. */
static duet_status synced_stats(bn_job *j) {
    duet_branch_ws *ws = j->ws;
    float fn = (float)j->n_all;
    duet_status st = DUET_OK;
    for (int ph = 0; ph < 2 && !st; ph++) {
        j->phase = ph;
        float *a = ph ? ws->var : ws->mean;
        duet_embed_parallel_for(tiles(j->h), BT * j->n, sums_tiles, j);
        st = duet_comm_allreduce_sum(ws->comm, a, j->h, &ws->err);
        for (size_t c = 0; c < j->h; c++) a[c] /= fn;
    }
    j->synced = 1;
    return st;
}

/* w entries of a row: xh = (z - mean) * inv_std in place, d = relu(gamma xh
 * + beta) * m. */
TILE row_tile(float *restrict z, float *restrict d, const float *restrict mean,
              const float *restrict inv_std, const float *restrict gamma,
              const float *restrict beta, const float *restrict m, size_t w) {
    for (size_t k = 0; k < w; k++) {
        float xh = (z[k] - mean[k]) * inv_std[k];
        z[k] = xh;
        float y = gamma[k] * xh + beta[k];
        d[k] = keep_or_zero(y, all_if(y > 0.0f)) * m[k];
    }
}

/* The masks' random numbers: the xoshiro256** step of duet_rng_u64
 * (core/rng.c), the same stream, here so that the state stays in registers
 * over a row (a call per unit cost as much as the rest of the pass). */
static inline uint64_t xo_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static inline uint64_t xo_next(uint64_t *s) {
    uint64_t out = xo_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t;
    s[3] = xo_rotl(s[3], 45);
    return out;
}

/* Rows [r0, r1): xh in place, d = dropout(relu(gamma xh + beta)) into ws->d
 * (f32) or ws->hb (bf16, where only its bf16 copy is used). Row r's dropout
 * mask comes from its own RNG stream seeded from (mask_seed, r), one draw
 * per column in order, so the masks do not depend on the thread count; a
 * unit is dropped when duet_rng_uniform() < p, here read as the integer
 * comparison it is (the uniform is the draw's top 24 bits / 2^24). The mask
 * itself is not stored: where D > 0 it is 1/(1-p) (or mask_override's
 * entry). */
static void rows_forward(void *ctx, size_t r0, size_t r1) {
    bn_job *j = ctx;
    duet_branch_ws *ws = j->ws;
    size_t h = j->h;
    const float *mean = ws->mean, *inv_std = ws->inv_std, *gamma = j->w->gamma, *beta = j->w->beta;
    float scale = ws->drop_scale;
    uint64_t thr = (uint64_t)ceil((double)j->p->dropout * 16777216.0);
    for (size_t r = r0; r < r1; r++) {
        float *zr = ws->xh + r * h;
        float *dr = ws->bf16 ? ws->dd + r0 * h : ws->d + r * h; /* bf16: a row of scratch */
        duet_rng rr = {{0, 0, 0, 0}};
        if (j->drop && !j->mask_override) /* the row's place in the whole batch */
            duet_rng_seed(&rr, j->mask_seed ^ (0x9e3779b97f4a7c15ULL * (ws->row0 + r + 1)));
        uint64_t st[4] = {rr.s[0], rr.s[1], rr.s[2], rr.s[3]};
        for (size_t c = 0; c < h; c += BT) {
            size_t w = h - c < BT ? h - c : BT;
            float m[BT];
            for (size_t k = 0; k < w; k++)
                m[k] = j->mask_override ? j->mask_override[r * h + c + k]
                     : j->drop ? keep_or_zero(scale, all_if((xo_next(st) >> 40) >= thr)) : 1.0f;
            if (w == BT) row_tile(zr + c, dr + c, mean + c, inv_std + c, gamma + c, beta + c, m, BT);
            else row_tile(zr + c, dr + c, mean + c, inv_std + c, gamma + c, beta + c, m, w);
        }
        if (ws->bf16) duet_f32_to_bf16(dr, ws->hb + r * h, h);
    }
}

/* Several ranks: the training statistics are those of every rank's rows. */
static int sharded(const duet_branch_ws *ws, int train) {
    return train && duet_comm_size(ws->comm) > 1;
}

duet_status duet_bn_forward(const duet_bparams *w, duet_bnstats *bn, const duet_params *p, size_t n,
                            size_t h, int train, duet_rng *rng, const float *mask_override,
                            duet_branch_ws *ws) {
    bn_job j = {w, NULL, bn, p, ws, n, h, train, train && p->dropout > 0.0f, 0, mask_override,
                sharded(ws, train) ? ws->n_all : n, 0, 0};
    if (j.drop && !mask_override) j.mask_seed = duet_rng_u64(rng);
    /* what the backward pass needs of the masks */
    ws->mask_src = mask_override;
    ws->drop_scale = j.drop ? 1.0f / (1.0f - p->dropout) : 1.0f;
    if (sharded(ws, train)) {
        duet_status st = synced_stats(&j);
        if (st) return st;
    }
    duet_embed_parallel_for(tiles(h), BT * 2 * n, stats_tiles, &j);
    duet_embed_parallel_for(n, 4 * h, rows_forward, &j);
    return DUET_OK;
}

/* w columns of a row: dY = dD * M where D > 0 (keep), into dd; dgamma +=
 * dY xh, dbeta += dY. */
TILE grad_tile(float *restrict dd, const float *restrict xh, const uint32_t *restrict keep,
               const float *restrict m, float *restrict dg, float *restrict db, size_t w) {
    for (size_t k = 0; k < w; k++) {
        float dy = keep_or_zero(dd[k] * m[k], keep[k]);
        dd[k] = dy;
        dg[k] += dy * xh[k];
        db[k] += dy;
    }
}

/* w columns of a row: dZ1 = inv_std/n * (n dY gamma - dbeta gamma - xh
 * dgamma gamma). */
TILE dz_tile(float *restrict dd, const float *restrict xh, const float *restrict gamma,
             const float *restrict inv_std, const float *restrict dg, const float *restrict dbeta,
             float fn, size_t w) {
    for (size_t k = 0; k < w; k++) {
        float gm = gamma[k];
        dd[k] = inv_std[k] / fn * (fn * dd[k] * gm - dbeta[k] * gm - xh[k] * dg[k] * gm);
    }
}

/* Column tiles [t0, t1) of the backward pass, row by row (the rows stream
 * through the cache; the tiles' sums stay in it): ws->dd holds dD on entry
 * and dZ1 on exit (bf16: also in ws->hb). D > 0 iff the ReLU passed and the
 * unit was kept, and then M is 1/(1-p), or the override mask's entry; D is
 * read from ws->d, or in bf16 from its bf16 copy, whose sign and zero are
 * D's (D >= 0). */
static void backward_tiles(void *ctx, size_t t0, size_t t1) {
    bn_job *j = ctx;
    duet_branch_ws *ws = j->ws;
    size_t n = j->n, h = j->h, c0 = t0 * BT, c1 = t1 * BT < h ? t1 * BT : h;
    float fn = (float)j->n_all, *dg = j->g->gamma, *db = j->g->beta, *db1 = j->g->b1;
    const float *d = ws->bf16 ? NULL : ws->d;
    const int16_t *hb = (const int16_t *)ws->hb;
    if (j->phase != 2) {
        memset(dg + c0, 0, (c1 - c0) * sizeof(float));
        memset(db + c0, 0, (c1 - c0) * sizeof(float));
    }
    /* db1 = the column sums of dZ1, which are exactly zero (batch-norm
     * subtracts the batch mean): stored as the exact zero, as the PyTorch
     * reference does (tools/ref/ref_loss_fixture.py, snap_b1), so that Adam
     * does not turn their round-off into steps of +-lr (which would also
     * make N ranks differ from one process by more than rounding) */
    if (j->phase != 1) memset(db1 + c0, 0, (c1 - c0) * sizeof(float));
    for (size_t r = 0; r < n && j->phase != 2; r++)
        for (size_t c = c0; c < c1; c += BT) {
            size_t w = c1 - c < BT ? c1 - c : BT, at = r * h + c;
            float m[BT];
            uint32_t keep[BT];
            for (size_t k = 0; k < w; k++) {
                keep[k] = all_if(d ? d[at + k] > 0.0f : hb[at + k] > 0);
                m[k] = ws->mask_src ? ws->mask_src[at + k] : ws->drop_scale;
            }
            if (w == BT) grad_tile(ws->dd + at, ws->xh + at, keep, m, dg + c, db + c, BT);
            else grad_tile(ws->dd + at, ws->xh + at, keep, m, dg + c, db + c, w);
        }
    for (size_t r = 0; r < n && j->phase != 1; r++) {
        for (size_t c = c0; c < c1; c += BT) {
            size_t w = c1 - c < BT ? c1 - c : BT, at = r * h + c;
            if (w == BT)
                dz_tile(ws->dd + at, ws->xh + at, j->w->gamma + c, ws->inv_std + c, dg + c, db + c,
                        fn, BT);
            else
                dz_tile(ws->dd + at, ws->xh + at, j->w->gamma + c, ws->inv_std + c, dg + c, db + c,
                        fn, w);
        }
        if (ws->bf16) duet_f32_to_bf16(ws->dd + r * h + c0, ws->hb + r * h + c0, c1 - c0);
    }
}

duet_status duet_bn_backward(const duet_bparams *w, duet_bparams *g, size_t n, size_t h,
                             duet_branch_ws *ws) {
    bn_job j = {w, g, NULL, NULL, ws, n, h, 1, 0, 0, NULL, sharded(ws, 1) ? ws->n_all : n, 0, 0};
    if (!sharded(ws, 1)) {
        duet_embed_parallel_for(tiles(h), BT * 3 * n, backward_tiles, &j);
        return DUET_OK;
    }
    /* dZ1 needs dgamma and dbeta of every rank's rows (adjacent in g) */
    j.phase = 1;
    duet_embed_parallel_for(tiles(h), BT * 2 * n, backward_tiles, &j);
    duet_status st = duet_comm_allreduce_sum(ws->comm, g->gamma, 2 * h, &ws->err);
    if (st) return st;
    j.phase = 2;
    duet_embed_parallel_for(tiles(h), BT * n, backward_tiles, &j);
    return DUET_OK;
}
