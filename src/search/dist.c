/* dist.c -- one search over a gallery split between the ranks of a job
 * (docs/SCALE.md): rank 0's queries are broadcast, every rank searches its
 * shards' rows, and rank 0 gathers each rank's top-k lists (with the names
 * or texts of their rows) and merges them (duet_hits_merge): the answer of
 * the unsharded index, ids and scores. Before a search, rank 0 checks
 * that the ranks' runs of shards make one gallery (check_parts). */
#include "search/search.h"
#include <stdlib.h>
#include <string.h>

/* What a rank holds of the gallery, as sent to rank 0. */
typedef struct rank_part {
    uint64_t shards, first, count, dim, off[2], n[2], total[2];
    char file[96];       /* its first shard's file ("" for an index file) */
} rank_part;

static rank_part part_of(const duet_index *ix) {
    rank_part p = {ix->n_shards, ix->first_shard, ix->my_shards, ix->dim,
                   {ix->offset[0], ix->offset[1]}, {ix->n[0], ix->n[1]}, {ix->total[0], ix->total[1]}, ""};
    snprintf(p.file, sizeof p.file, "%s", ix->shard_file ? ix->shard_file : "");
    return p;
}

/* Rank 0: 1 when the ranks' parts p[0 .. ranks) are the runs of shards of
 * one gallery, in rank order, from the first shard to the last. */
static int parts_tile(const rank_part *p, size_t ranks) {
    uint64_t next = 0, row[2] = {0, 0};
    for (size_t r = 0; r < ranks; r++) {
        const rank_part *q = &p[r];
        if (q->shards != p[0].shards || q->dim != p[0].dim || q->first != next || q->count < 1) return 0;
        next += q->count;
        for (int s = 0; s < 2; s++) {
            if (q->total[s] != p[0].total[s] || q->off[s] != row[s]) return 0;
            row[s] += q->n[s];
        }
    }
    return next == p[0].shards && row[0] == p[0].total[0] && row[1] == p[0].total[1];
}

/* Every rank: gathers the parts on rank 0, which checks them; the verdict
 * is every rank's (DUET_ERR_SHAPE on rank 0, naming each rank's shards). */
static duet_status check_parts(duet_comm *c, const duet_index *ix, duet_error *err) {
    rank_part mine = part_of(ix), *all = NULL;
    size_t got = 0, ranks = (size_t)duet_comm_size(c);
    duet_status st = duet_comm_gather_rows(c, &mine, 1, sizeof mine, (void **)&all, &got, err);
    if (!st && duet_comm_rank(c) == 0 && (got != ranks || !parts_tile(all, ranks))) {
        duet_sbuf b = {0};
        for (size_t r = 0; r < got; r++) {
            const rank_part *q = &all[r];
            duet_sb_printf(&b, "%srank %zu: shards %llu-%llu of %llu (%s%s), images [%llu, %llu) of %llu, captions "
                           "[%llu, %llu) of %llu, dim %llu", r ? "; " : "", r, (unsigned long long)q->first + 1,
                           (unsigned long long)(q->first + q->count), (unsigned long long)q->shards,
                           q->file[0] ? q->file : "an index file", q->count > 1 ? " and on" : "",
                           (unsigned long long)q->off[0], (unsigned long long)(q->off[0] + q->n[0]),
                           (unsigned long long)q->total[0], (unsigned long long)q->off[1],
                           (unsigned long long)(q->off[1] + q->n[1]), (unsigned long long)q->total[1],
                           (unsigned long long)q->dim);
        }
        st = duet_fail(err, DUET_ERR_SHAPE, "search: the ranks' shards are not the parts of one gallery (every rank "
                       "must open its part of the same manifest: duet_index_open_part): %s",
                       b.s && !b.oom ? b.s : "(out of memory describing them)");
        duet_sb_free(&b);
    }
    free(all);
    return duet_comm_all_ok(c, st, err);
}

duet_status duet_index_gather_names(duet_comm *c, const duet_index *ix, duet_index **names, duet_error *err) {
    *names = NULL;
    duet_status st = check_parts(c, ix, err);
    if (st) return st;
    size_t bytes = 0, got = 0, n = ix->n[0];
    for (size_t i = 0; i < n; i++) bytes += strlen(ix->text[0][i]) + 1;
    char *mine = malloc(bytes ? bytes : 1), *all = NULL;
    if (!mine) st = duet_fail(err, DUET_ERR_NOMEM, "search: out of memory for %zu image names", n);
    for (size_t i = 0, o = 0; !st && i < n; i++) {
        size_t l = strlen(ix->text[0][i]) + 1;
        memcpy(mine + o, ix->text[0][i], l);
        o += l;
    }
    st = duet_comm_all_ok(c, st, err);
    if (!st) st = duet_comm_gather_rows(c, mine, bytes, 1, (void **)&all, &got, err);
    free(mine);
    if (st || duet_comm_rank(c) != 0) { free(all); return st; }
    duet_index *g = calloc(1, sizeof *g);
    size_t tot = ix->total[0];
    int oom = !g || !(g->text[0] = duet_alloc_array(tot, sizeof(char *)));
    for (int i = 0; g && i < DUET_INDEX_META; i++) g->meta[i] = duet_strdup_or_flag(ix->meta[i], &oom);
    if (oom) {
        free(all);
        duet_index_free(g);
        return duet_fail(err, DUET_ERR_NOMEM, "search: out of memory for %zu image names", tot);
    }
    g->own_text = all;
    size_t i = 0;
    for (size_t o = 0; o < got && i < tot; i++) {   /* the ranks' names end to end, each NUL-terminated */
        const char *z = memchr(all + o, '\0', got - o);
        if (!z) break;
        g->text[0][i] = all + o;
        o = (size_t)(z - all) + 1;
    }
    g->dim = ix->dim;
    g->n[0] = i;
    g->n_shards = g->my_shards = ix->n_shards;
    g->total[0] = ix->total[0];
    g->total[1] = ix->total[1];
    g->verified = ix->verified;
    st = i == tot ? duet_index_build_hash(g, "the gallery's names", err)
                  : duet_fail(err, DUET_ERR_IO, "search: the ranks sent %zu image names, the gallery has %zu", i, tot);
    if (st) { duet_index_free(g); return st; }
    *names = g;
    return DUET_OK;
}


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
        /* the parts tile the gallery (check_parts): kk hits are there, and
         * only a failed allocation gives fewer */
        if (duet_hits_merge(lists, n, real, ranks, k, out + q * kk, from) != kk) {
            st = duet_fail(err, DUET_ERR_NOMEM, "search: out of memory merging the ranks' lists");
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
    if (!st && duet_comm_size(c) > 1) st = check_parts(c, ix, err);
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
