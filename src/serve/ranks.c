/* ranks.c -- `mpirun -np N duet serve` on a sharded index (docs/SCALE.md).
 * Rank 0 runs the HTTP server on its part of the gallery (its run of
 * shards); every other rank runs duet_serve_rank on its part and opens no
 * socket. The search step of rank 0's batch workers is a collective: rank
 * 0 broadcasts a header (op, side, k, rows, dim), then duet_search_sharded
 * broadcasts the query embeddings, every rank searches its shards and rank
 * 0 merges the top-k lists (the answer of the unsharded index, with the
 * hits' names and texts). The two workers take turns (ranks_mu); the other
 * ranks wait for the next header asleep (duet_comm_bcast_idle), not
 * spinning. duet_server_stop ends with an OP_STOP header: every rank
 * returns. A rank that dies is Open MPI's to handle: mpirun ends the whole
 * job (docs/SCALE.md). */
#include "serve/serve.h"
#include "search/search.h"
#include <stdlib.h>
#include <string.h>

enum { OP_STOP = 0, OP_SEARCH = 1 };

/* What rank 0 broadcasts before each collective. */
typedef struct ranks_hdr { uint64_t op, side, k, rows, dim; } ranks_hdr;

/* Every rank at start: waits for the others asleep (rank 0 loads its
 * models meanwhile), agrees on everyone's readiness (mine), checks that the
 * shards are the parts of one gallery and gathers its names on rank 0. */
static duet_status handshake(duet_comm *c, const duet_index *ix, duet_status mine, duet_index **names,
                             duet_error *err) {
    duet_status st = duet_comm_wait_all(c, err);
    if (!st) st = duet_comm_all_ok(c, mine, err);
    if (!st) st = duet_index_gather_names(c, ix, names, err);
    return st;
}

duet_status ranks_start(duet_server *s, duet_error *err) {
    s->comm = s->p.comm;
    s->ranks = duet_comm_size(s->comm);
    if (s->ranks <= 1) return DUET_OK;
    if (duet_comm_rank(s->comm) != 0)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "serve: rank %d of %d runs duet_serve_rank, not the server",
                         duet_comm_rank(s->comm), s->ranks);
    duet_status mine = duet_comm_threads_ok(s->comm) ? DUET_OK
        : duet_fail(err, DUET_ERR_UNSUPPORTED, "serve: this MPI library does not allow MPI calls from several "
                    "threads one at a time (MPI_THREAD_SERIALIZED), which rank 0's server needs");
    pthread_mutex_init(&s->ranks_mu, NULL);
    s->ranks_made = 1;
    duet_status st = handshake(s->comm, s->ix, mine, &s->names, err);
    s->ranks_ready = !st; /* else the others have returned too */
    return st;
}

void ranks_stop(duet_server *s) {
    if (s->ranks <= 1 || !s->ranks_ready || s->ranks_stopped) return;
    ranks_hdr h = {OP_STOP, 0, 0, 0, 0};
    duet_error e = {0};
    pthread_mutex_lock(&s->ranks_mu);
    s->ranks_stopped = 1;
    (void)duet_comm_bcast_idle(s->comm, &h, sizeof h, &e); /* a failure: mpirun ends the job */
    pthread_mutex_unlock(&s->ranks_mu);
}

void ranks_free(duet_server *s) {
    duet_index_free(s->names);
    s->names = NULL;
    if (s->ranks_made) pthread_mutex_destroy(&s->ranks_mu);
    s->ranks_made = 0;
}

const duet_index *gallery_names(const duet_server *s) { return s->names ? s->names : s->ix; }

char **texts_copy(char *const *t, size_t n) {
    size_t bytes = 0, ptrs;
    for (size_t i = 0; i < n; i++) bytes += strlen(t[i]) + 1;
    if (!duet_mul_size(n, sizeof(char *), &ptrs) || ptrs + bytes < ptrs) return NULL;
    char **blk = malloc(ptrs + bytes + 1);
    if (!blk) return NULL;
    char *o = (char *)(blk + n);
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(t[i]) + 1;
        memcpy(o, t[i], l);
        blk[i] = o;
        o += l;
    }
    return blk;
}

duet_status ranks_search(duet_server *s, int side, const duet_mat *q, size_t k, duet_hit *hits, size_t *got,
                         char ***texts, duet_error *err) {
    *texts = NULL;
    if (s->ranks <= 1) return duet_searcher_topk(s->search[side], q, k, hits, got, err);
    ranks_hdr h = {OP_SEARCH, (uint64_t)side, k, q->rows, q->cols};
    pthread_mutex_lock(&s->ranks_mu);
    duet_status st = s->ranks_stopped ? duet_fail(err, DUET_ERR_INTERRUPTED, "serve: the ranks have stopped")
                                      : duet_comm_bcast_idle(s->comm, &h, sizeof h, err);
    if (!st) st = duet_search_sharded(s->comm, s->ix, s->search[side], side, q->data, q->rows, k, hits, texts, err);
    pthread_mutex_unlock(&s->ranks_mu);
    size_t tot = duet_index_total(s->ix, side);
    *got = k < tot ? k : tot;
    return st;
}

/* ------------------------------------------------------------ other ranks */

duet_status duet_serve_rank(const duet_serve_params *p, const duet_index *ix, duet_error *err) {
    if (!p || !ix) return duet_fail(err, DUET_ERR_INVALID_ARG, "serve: params and index are required");
    duet_comm *c = p->comm;
    int rank = duet_comm_rank(c);
    if (duet_comm_size(c) <= 1 || rank == 0)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "serve: duet_serve_rank is for the ranks other than 0 of a job");
    duet_searcher *srch[2] = {NULL, NULL};
    duet_status mine = DUET_OK;
    for (int side = 0; side < 2 && !mine; side++) {
        duet_mat g = duet_index_embeddings(ix, side);
        mine = duet_searcher_new(&g, p->precision, &srch[side], err);
    }
    duet_index *none = NULL;
    duet_status st = handshake(c, ix, mine, &none, err);
    while (!st) {
        ranks_hdr h = {0, 0, 0, 0, 0};
        if ((st = duet_comm_bcast_idle(c, &h, sizeof h, err))) break;
        if (h.op == OP_STOP) break;
        if (h.op != OP_SEARCH || h.side > 1 || h.dim != duet_index_dim(ix)) {
            st = duet_fail(err, DUET_ERR_FORMAT, "serve: rank %d cannot read rank 0's message (op %llu, side %llu, "
                           "dim %llu; its shards have dim %zu): a duet of another version?", rank,
                           (unsigned long long)h.op, (unsigned long long)h.side, (unsigned long long)h.dim,
                           duet_index_dim(ix));
            break;
        }
        duet_error e = {0};
        int side = (int)h.side;
        if (duet_search_sharded(c, ix, srch[side], side, NULL, 0, 0, NULL, NULL, &e) && p->log) {
            char line[1200]; /* rank 0 answers that batch's requests with an error */
            snprintf(line, sizeof line, "duet serve: rank %d: a search failed (here or on another rank): %s", rank,
                     e.msg);
            p->log(p->log_ctx, line);
        }
    }
    duet_searcher_free(srch[0]);
    duet_searcher_free(srch[1]);
    return st;
}
