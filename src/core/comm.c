/* comm.c -- the processes of a job: MPI (Open MPI) when this process was
 * started by mpirun or srun, else a job of one in which MPI is never
 * initialized (a plain `duet COMMAND` pays nothing for it). */
#define _POSIX_C_SOURCE 200809L
#include "core/core.h"
#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DUET_COMM_PENDING 16 /* sums in flight at once, at most */

struct duet_comm {
    int mpi;              /* 1: MPI_Init was called here */
    int rank, size, local_size;
    MPI_Request pending[DUET_COMM_PENDING]; /* sums in flight (allreduce_start) */
    int n_pending;
    double bytes_sent;    /* by the collectives of training, as counted there */
    int serialized;       /* MPI may be called from any thread, one at a time */
};

/* Launched as one rank of several: Open MPI's mpirun, PMIx (srun with
 * --mpi=pmix) or PMI. */
static int launched_by_mpi(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

duet_status duet_comm_init(int *argc, char ***argv, duet_comm **out, duet_error *err) {
    *out = NULL;
    duet_comm *c = calloc(1, sizeof *c);
    if (!c) return duet_fail(err, DUET_ERR_NOMEM, "comm: out of memory");
    c->size = c->local_size = 1;
    if (launched_by_mpi()) {
        /* serialized: `duet serve`'s rank 0 calls MPI from its batch workers,
         * one at a time (ob1 takes no locks below MPI_THREAD_MULTIPLE) */
        int provided = MPI_THREAD_SINGLE;
        if (MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS) {
            free(c);
            return duet_fail(err, DUET_ERR_IO, "MPI_Init failed (started by mpirun or srun, but MPI could not start)");
        }
        c->serialized = provided >= MPI_THREAD_SERIALIZED;
        c->mpi = 1;
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
        MPI_Comm_size(MPI_COMM_WORLD, &c->size);
        MPI_Comm node;
        if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
            MPI_Comm_size(node, &c->local_size);
            MPI_Comm_free(&node);
        }
    }
    *out = c;
    return DUET_OK;
}

int duet_comm_rank(const duet_comm *c) { return c ? c->rank : 0; }
int duet_comm_size(const duet_comm *c) { return c ? c->size : 1; }
int duet_comm_local_size(const duet_comm *c) { return c ? c->local_size : 1; }

void duet_comm_finalize(duet_comm *c) {
    if (!c) return;
    if (c->mpi) MPI_Finalize();
    free(c);
}

void duet_comm_abort(duet_comm *c, int code) {
    if (c && c->mpi) MPI_Abort(MPI_COMM_WORLD, code);
}

void duet_comm_range(const duet_comm *c, size_t n, size_t unit, size_t *lo, size_t *hi) {
    size_t r = (size_t)duet_comm_rank(c), s = (size_t)duet_comm_size(c);
    if (unit < 1) unit = 1;
    size_t units = (n + unit - 1) / unit;
    size_t a = units * r / s, b = units * (r + 1) / s;
    *lo = a * unit < n ? a * unit : n;
    *hi = b * unit < n ? b * unit : n;
}

static duet_status mpi_fail(int rc, duet_error *err, const char *what) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return duet_fail(err, DUET_ERR_IO, "MPI: %s: %.*s", what, len, msg);
}

duet_status duet_comm_gather_rows(duet_comm *c, const void *mine, size_t rows, size_t row_bytes, void **all,
                                  size_t *total, duet_error *err) {
    if (all) *all = NULL;
    if (total) *total = rows;
    if (!c || !c->mpi || c->size == 1) { /* a job of one: a copy */
        size_t bytes;
        if (!duet_mul_size(rows, row_bytes, &bytes)) return duet_fail(err, DUET_ERR_NOMEM, "gather: size overflows");
        void *p = malloc(bytes ? bytes : 1);
        if (!p) return duet_fail(err, DUET_ERR_NOMEM, "gather: out of memory (%zu bytes)", bytes);
        if (bytes) memcpy(p, mine, bytes);
        *all = p;
        return DUET_OK;
    }
    if (rows > INT_MAX || row_bytes > INT_MAX)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "gather: %zu rows of %zu bytes are too many for one message",
                         rows, row_bytes);
    MPI_Datatype row;
    int rc = MPI_Type_contiguous((int)row_bytes, MPI_BYTE, &row);
    if (rc == MPI_SUCCESS) rc = MPI_Type_commit(&row);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, err, "row type");
    int mine_n = (int)rows, *counts = NULL, *displs = NULL;
    void *buf = NULL;
    duet_status st = DUET_OK;
    if (c->rank == 0) {
        counts = calloc((size_t)c->size, sizeof(int));
        displs = calloc((size_t)c->size, sizeof(int));
        if (!counts || !displs) st = duet_fail(err, DUET_ERR_NOMEM, "gather: out of memory");
    }
    rc = MPI_Gather(&mine_n, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (!st && rc != MPI_SUCCESS) st = mpi_fail(rc, err, "gathering row counts");
    size_t sum = 0;
    if (!st && c->rank == 0) {
        for (int i = 0; i < c->size; i++) {
            if (sum > INT_MAX) { st = duet_fail(err, DUET_ERR_INVALID_ARG, "gather: over %d rows", INT_MAX); break; }
            displs[i] = (int)sum;
            sum += (size_t)counts[i];
        }
        if (!st && !(buf = duet_alloc_array(sum, row_bytes)))
            st = duet_fail(err, DUET_ERR_NOMEM, "gather: out of memory for %zu rows of %zu bytes", sum, row_bytes);
    }
    /* every rank takes part, also after a local failure on rank 0 (a rank
     * that returned early would leave the others waiting) */
    rc = MPI_Gatherv(mine, mine_n, row, buf, counts, displs, row, 0, MPI_COMM_WORLD);
    if (!st && rc != MPI_SUCCESS) st = mpi_fail(rc, err, "gathering rows");
    MPI_Type_free(&row);
    free(counts);
    free(displs);
    if (st || c->rank != 0) { free(buf); return st; }
    *all = buf;
    if (total) *total = sum;
    return DUET_OK;
}

duet_status duet_comm_all_ok(duet_comm *c, duet_status mine, duet_error *err) {
    if (!c || !c->mpi || c->size == 1) return mine;
    int in = mine != DUET_OK, worst = 0;
    int rc = MPI_Allreduce(&in, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, err, "agreeing on success");
    if (worst && mine == DUET_OK)
        return duet_fail(err, DUET_ERR_IO, "another rank failed (its message is above)");
    return mine;
}

duet_status duet_comm_bcast(duet_comm *c, void *buf, size_t bytes, duet_error *err) {
    if (!c || !c->mpi || c->size == 1) return DUET_OK;
    for (size_t at = 0; at < bytes; at += (size_t)1 << 30) { /* MPI counts are ints: pieces of 1 GiB */
        size_t k = bytes - at < ((size_t)1 << 30) ? bytes - at : (size_t)1 << 30;
        int rc = MPI_Bcast((char *)buf + at, (int)k, MPI_BYTE, 0, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, err, "broadcast");
    }
    return DUET_OK;
}

int duet_comm_threads_ok(const duet_comm *c) { return !c || !c->mpi || c->size == 1 || c->serialized; }

/* Completes req, polling gently: a rank that waits here sleeps in steps
 * from 20 us doubling to 1 ms instead of spinning (a wait that ends soon
 * costs at most twice its length; a long one, 1 ms of latency). */
static int wait_gently(MPI_Request *req) {
    int done = 0, rc = MPI_SUCCESS;
    long ns = 20 * 1000;
    while (rc == MPI_SUCCESS && !done) {
        rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (!done) {
            struct timespec ts = {0, ns};
            nanosleep(&ts, NULL);
            if (ns < 1000 * 1000) ns *= 2;
        }
    }
    return rc;
}

duet_status duet_comm_bcast_idle(duet_comm *c, void *buf, size_t bytes, duet_error *err) {
    if (!c || !c->mpi || c->size == 1) return DUET_OK;
    if (bytes > INT_MAX) return duet_fail(err, DUET_ERR_INVALID_ARG, "broadcast: %zu bytes is too many", bytes);
    MPI_Request req;
    int rc = MPI_Ibcast(buf, (int)bytes, MPI_BYTE, 0, MPI_COMM_WORLD, &req);
    if (rc == MPI_SUCCESS) rc = wait_gently(&req);
    return rc == MPI_SUCCESS ? DUET_OK : mpi_fail(rc, err, "broadcast");
}

duet_status duet_comm_wait_all(duet_comm *c, duet_error *err) {
    if (!c || !c->mpi || c->size == 1) return DUET_OK;
    MPI_Request req;
    int rc = MPI_Ibarrier(MPI_COMM_WORLD, &req), done = 0;
    /* poll gently: a rank that waits here leaves its cores to the ranks
     * still working (a blocking barrier would spin) */
    while (rc == MPI_SUCCESS && !done) {
        rc = MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (!done) {
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    return rc == MPI_SUCCESS ? DUET_OK : mpi_fail(rc, err, "waiting for the other ranks");
}

/* ------------------------------------------------------ training's collectives */

/* MPI counts are ints: a large array goes in pieces of CHUNK elements. */
#define CHUNK ((size_t)1 << 28)

/* What a rank sends for a sum over all ranks of `bytes` bytes, counted as the
 * ring algorithm sends it: 2 (N-1)/N of the array. */
static void count_allreduce(duet_comm *c, size_t bytes) {
    c->bytes_sent += 2.0 * (double)(c->size - 1) / (double)c->size * (double)bytes;
}

duet_status duet_comm_allreduce_sum(duet_comm *c, float *buf, size_t n, duet_error *err) {
    if (!c || !c->mpi || c->size == 1) return DUET_OK;
    for (size_t at = 0; at < n; at += CHUNK) {
        size_t k = n - at < CHUNK ? n - at : CHUNK;
        int rc = MPI_Allreduce(MPI_IN_PLACE, buf + at, (int)k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, err, "summing over the ranks");
    }
    count_allreduce(c, n * sizeof(float));
    return DUET_OK;
}

duet_status duet_comm_allreduce_start(duet_comm *c, float *buf, size_t n, duet_error *err) {
    if (!c || !c->mpi || c->size == 1) return DUET_OK;
    for (size_t at = 0; at < n; at += CHUNK) {
        if (c->n_pending == DUET_COMM_PENDING)
            return duet_fail(err, DUET_ERR_INVALID_ARG, "comm: over %d sums in flight", DUET_COMM_PENDING);
        size_t k = n - at < CHUNK ? n - at : CHUNK;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, buf + at, (int)k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                                &c->pending[c->n_pending]);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, err, "starting a sum over the ranks");
        c->n_pending++;
    }
    count_allreduce(c, n * sizeof(float));
    return DUET_OK;
}

duet_status duet_comm_allreduce_wait(duet_comm *c, duet_error *err) {
    if (!c || !c->n_pending) return DUET_OK;
    int rc = MPI_Waitall(c->n_pending, c->pending, MPI_STATUSES_IGNORE);
    c->n_pending = 0;
    return rc == MPI_SUCCESS ? DUET_OK : mpi_fail(rc, err, "finishing the sums over the ranks");
}

duet_status duet_comm_any(duet_comm *c, int *flag, duet_error *err) {
    if (!c || !c->mpi || c->size == 1) return DUET_OK;
    int in = *flag != 0, out = 0;
    int rc = MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, err, "agreeing on a flag");
    *flag = out;
    return DUET_OK;
}

duet_status duet_comm_allgather_rows(duet_comm *c, const void *mine, const size_t *counts,
                                     size_t row_bytes, void *all, duet_error *err) {
    int me = duet_comm_rank(c), n = duet_comm_size(c);
    if (!c || !c->mpi || n == 1) {
        if (counts[0] > 0 && row_bytes > 0 && mine != all) memmove(all, mine, counts[0] * row_bytes);
        return DUET_OK;
    }
    int *cnt = calloc((size_t)n, sizeof(int)), *displs = calloc((size_t)n, sizeof(int));
    if (!cnt || !displs) { free(cnt); free(displs); return duet_fail(err, DUET_ERR_NOMEM, "allgather: out of memory"); }
    size_t sum = 0;
    duet_status st = DUET_OK;
    for (int r = 0; r < n && !st; r++) {
        size_t b = counts[r] * row_bytes;
        if (b > INT_MAX || sum > INT_MAX)
            st = duet_fail(err, DUET_ERR_INVALID_ARG, "allgather: over %d bytes in one message", INT_MAX);
        cnt[r] = (int)b;
        displs[r] = (int)sum;
        sum += b;
    }
    if (!st) {
        int rc = MPI_Allgatherv(mine == (const char *)all + displs[me] ? MPI_IN_PLACE : mine, cnt[me], MPI_BYTE,
                                all, cnt, displs, MPI_BYTE, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) st = mpi_fail(rc, err, "gathering rows on every rank");
        else c->bytes_sent += (double)(n - 1) * (double)cnt[me];
    }
    free(cnt);
    free(displs);
    return st;
}

double duet_comm_bytes_sent(const duet_comm *c) { return c ? c->bytes_sent : 0.0; }
