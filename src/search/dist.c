/* dist.c -- one search over a gallery split between the ranks of a job
 * (docs/SCALE.md): rank 0's queries are broadcast, every rank searches its
 * shards' rows, and rank 0 gathers each rank's top-k lists (with the names
 * or texts of their rows) and merges them (duet_hits_merge): the answer of
 * the unsharded index, ids and scores. */
#include "search/search.h"
#include <stdlib.h>
#include <string.h>

/* One hit as sent: the gallery row, its score and what it is. */
typedef struct wire_hit {
    uint64_t index;
    float score;
    uint32_t kind;       /* 0 absent, 1 scored, 2 padding */
} wire_hit;

/* This rank's part: nq x k records (absent past the rank's hits) and the
 * texts of its present hits, in order, NUL-terminated (caller frees both). */
static duet_status search_mine(const duet_index *ix, duet_searcher *s, int side, const float *q, size_t nq,
                               size_t k, wire_hit **recs, char **texts, size_t *tbytes, duet_error *err) {
    size_t d = duet_index_dim(ix), kl = 0, off = duet_index_offset(ix, side), bytes = 0;
    duet_mat qm = {(float *)q, nq, d};
    duet_hit *h = duet_alloc_array(nq, k * sizeof *h);
    size_t *real = duet_alloc_array(nq, sizeof *real);
    *recs = duet_calloc_array(nq, k * sizeof **recs);
    *texts = NULL;
    duet_status st = h && real && *recs ? duet_searcher_topk_real(s, &qm, k, h, &kl, real, err)
                                        : duet_fail(err, DUET_ERR_NOMEM, "search: out of memory for %zu x %zu hits", nq, k);
    for (size_t i = 0; !st && i < nq * kl; i++) bytes += strlen(duet_index_text(ix, side, h[i].index)) + 1;
    char *t = st ? NULL : malloc(bytes ? bytes : 1);
    if (!st && !t) st = duet_fail(err, DUET_ERR_NOMEM, "search: out of memory for the hits' texts");
    for (size_t i = 0, o = 0; !st && i < nq; i++)
        for (size_t j = 0; j < kl; j++) {
            const duet_hit *x = &h[i * kl + j];
            const char *s_ = duet_index_text(ix, side, x->index);
            size_t l = strlen(s_) + 1;
            (*recs)[i * k + j] = (wire_hit){(uint64_t)(x->index + off), x->score, j < real[i] ? 1u : 2u};
            memcpy(t + o, s_, l);
            o += l;
        }
    free(h);
    free(real);
    *texts = t;
    *tbytes = bytes;
    return st;
}

/* Rank 0: merges the gathered records (ranks x nq x k) into out and the
 * texts into one block *texts (pointers, then the bytes). */
static duet_status merge_all(const wire_hit *recs, const char *tb, size_t tlen, size_t ranks, size_t nq, size_t k,
                             size_t kk, duet_hit *out, char ***texts, duet_error *err) {
    size_t per = nq * k, cnt;
    if (!duet_mul_size(per, ranks, &cnt)) return duet_fail(err, DUET_ERR_NOMEM, "search: sizes overflow");
    duet_hit *hits = duet_alloc_array(cnt, sizeof *hits);
    const char **tp = duet_alloc_array(cnt, sizeof *tp);
    const duet_hit **lists = duet_alloc_array(ranks, sizeof *lists);
    size_t *n = duet_alloc_array(ranks, sizeof *n), *real = duet_alloc_array(ranks, sizeof *real);
    size_t *from = duet_alloc_array(kk ? kk : 1, sizeof *from), *pos = duet_alloc_array(ranks, sizeof *pos);
    size_t *sel = duet_alloc_array(nq, (kk ? kk : 1) * sizeof *sel);   /* the record of each answer */
    duet_status st = hits && tp && lists && n && real && from && pos && sel ? DUET_OK
                   : duet_fail(err, DUET_ERR_NOMEM, "search: out of memory merging %zu lists", ranks);
    /* the texts come rank by rank, query by query, present hits in order */
    size_t o = 0;
    for (size_t i = 0; !st && i < cnt; i++) {
        hits[i] = (duet_hit){(size_t)recs[i].index, recs[i].score};
        tp[i] = NULL;
        if (!recs[i].kind) continue;
        const char *z = o < tlen ? memchr(tb + o, '\0', tlen - o) : NULL;
        if (!z) st = duet_fail(err, DUET_ERR_IO, "search: a rank sent fewer texts than hits");
        else { tp[i] = tb + o; o = (size_t)(z - tb) + 1; }
    }
    size_t bytes = 0;
    for (size_t q = 0; !st && q < nq; q++) {
        for (size_t r = 0; r < ranks; r++) {
            const wire_hit *w = recs + r * per + q * k;
            lists[r] = hits + r * per + q * k;
            pos[r] = r * per + q * k;
            for (n[r] = real[r] = 0; n[r] < k && w[n[r]].kind; n[r]++) real[r] += w[n[r]].kind == 1;
        }
        if (duet_hits_merge(lists, n, real, ranks, k, out + q * kk, from) != kk) {
            st = duet_fail(err, DUET_ERR_NOMEM, "search: merging the ranks' lists failed");
            break;
        }
        /* from[j]: a position in the lists laid end to end -> a record */
        for (size_t j = 0; j < kk; j++) {
            size_t r = 0, p = from[j];
            while (p >= n[r]) p -= n[r++];
            sel[q * kk + j] = pos[r] + p;
            bytes += strlen(tp[sel[q * kk + j]]) + 1;
        }
    }
    char **blk = NULL;
    if (!st) {
        size_t ptrs;
        if (!duet_mul_size(nq * kk, sizeof(char *), &ptrs) || !(blk = malloc(ptrs + bytes + 1)))
            st = duet_fail(err, DUET_ERR_NOMEM, "search: out of memory for the texts of %zu hits", nq * kk);
    }
    if (!st) {
        char *t = (char *)(blk + nq * kk);
        for (size_t i = 0; i < nq * kk; i++) {
            const char *s = tp[sel[i]];
            size_t l = strlen(s) + 1;
            memcpy(t, s, l);
            blk[i] = t;
            t += l;
        }
        *texts = blk;
    }
    free(hits); free(tp); free(lists); free(n); free(real); free(from); free(pos); free(sel);
    return st;
}

duet_status duet_search_sharded(duet_comm *c, const duet_index *ix, duet_searcher *s, int side,
                                const float *queries, size_t nq, size_t k, duet_hit *out, char ***texts,
                                duet_error *err) {
    if (texts) *texts = NULL;
    int root = duet_comm_rank(c) == 0;
    uint64_t hdr[2] = {nq, k};
    duet_status st = duet_comm_bcast(c, hdr, sizeof hdr, err);
    if (st) return st;
    nq = (size_t)hdr[0];
    k = (size_t)hdr[1];
    size_t d = duet_index_dim(ix), tot = duet_index_total(ix, side), kk = k < tot ? k : tot, qn;
    if (!duet_mul_size(nq, d * sizeof(float), &qn) || k == 0 || k > DUET_INDEX_MAX_ROWS)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "search: %zu queries of %zu, k %zu", nq, d, k);
    float *q = root ? (float *)queries : duet_alloc_array(nq, d * sizeof(float));
    if (!q) st = duet_fail(err, DUET_ERR_NOMEM, "search: out of memory for %zu queries", nq);
    st = duet_comm_all_ok(c, st, err);
    if (!st) st = duet_comm_bcast(c, q, qn, err);
    wire_hit *mine = NULL, *all = NULL;
    char *tmine = NULL, *tall = NULL;
    size_t tb = 0, got = 0, tgot = 0;
    if (!st) st = search_mine(ix, s, side, q, nq, k, &mine, &tmine, &tb, err);
    st = duet_comm_all_ok(c, st, err);
    /* every rank sends nq x k records and its texts */
    if (!st) st = duet_comm_gather_rows(c, mine, nq * k, sizeof *mine, (void **)&all, &got, err);
    if (!st) st = duet_comm_gather_rows(c, tmine, tb, 1, (void **)&tall, &tgot, err);
    size_t ranks = (size_t)duet_comm_size(c);
    if (!st && root && got != ranks * nq * k)
        st = duet_fail(err, DUET_ERR_IO, "search: received %zu hits, %zu ranks x %zu queries x %zu expected", got,
                       ranks, nq, k);
    char **tx = NULL;
    if (!st && root) st = merge_all(all, tall, tgot, ranks, nq, k, kk, out, &tx, err);
    if (texts) *texts = tx;
    else free(tx);
    if (!root) free(q);
    free(mine); free(all); free(tmine); free(tall);
    return st;
}
