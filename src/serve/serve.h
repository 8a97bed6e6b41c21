/* serve.h -- the parts of `duet serve` (private to src/serve):
 *   serve.c    the daemon: start, dispatch, per-request state, graceful stop
 *   api.c      the endpoints: arguments, admission, answers
 *   batch.c    the queues and worker threads (micro-batching)
 *   metrics.c  counters and histograms, GET /metrics, the access log line
 *   ranks.c    a sharded index served by the ranks of an MPI job: the
 *              search step as a collective, the other ranks' loop
 *
 * A request's life: MHD calls handle() (serve.c) for it; the endpoint
 * (api.c) checks its arguments, reserves a place in its kind's queue (none:
 * 503 + Retry-After at once), prepares the job on the MHD thread (text
 * features of the one text; the decoded image's CNN input), suspends the
 * connection and queues the job. The kind's worker (batch.c) takes what is
 * queued, encodes and searches it together, fills each job's answer and
 * resumes its connection; MHD calls handle() again and the endpoint sends
 * the answer. Jobs belong to their request (freed when MHD says it is
 * complete); a worker never touches a job after resuming its connection. */
#ifndef DUET_SERVE_H
#define DUET_SERVE_H

#include "core/core.h"
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>

#define MAX_QUERY_BYTES 2000

enum { KIND_TEXT, KIND_IMAGE, N_KINDS };
enum { JOB_TEXT, JOB_IMAGE, JOB_LOCALIZE };

/* Endpoints, as metrics label them. */
enum { EP_PAGE, EP_SEARCH, EP_SEARCH_IMAGE, EP_LOCALIZE, EP_HEALTH, EP_IMAGES, EP_METRICS, EP_OTHER, N_EP };
/* Status codes counted one by one (metrics.c); others go to the last slot. */
enum { N_CODES = 10 };

typedef struct job {
    struct job *next;
    int type;                  /* JOB_*                                      */
    struct MHD_Connection *c;  /* suspended while queued                      */
    double t_queued, deadline;
    size_t k;
    int side;
    float *input;              /* text features or CNN input (owned)          */
    uint8_t flag;              /* text: DUET_TEXT_FLAG_EMPTY                  */
    duet_image im;             /* localize: the gallery image (owned)         */
    size_t width, height;      /* of the query image                          */
    int crops;                 /* the CNN input's crops                       */
    const char *q;             /* localize: the phrase (the connection's)      */
    /* the answer, filled by the worker */
    int done;
    unsigned code;             /* 0: hits; else an error status with msg      */
    char msg[1024];
    int retry;                 /* 503s: send Retry-After                      */
    duet_hit *hits;            /* [k] (owned)                                 */
    char **texts;              /* [got] the hits' names or texts, one block
                                  (owned), when the gallery is split between
                                  ranks; NULL: read from the index            */
    size_t got;
    duet_box *boxes;           /* localize: [got] (owned)                     */
    size_t proposals;
    size_t batch;              /* requests in the batch it ran in             */
    double wait_ms, run_ms;
} job;

/* Per request (MHD's con_cls). */
typedef struct req {
    double t0;
    int ep;
    unsigned code;             /* queued status                               */
    int kind;                  /* queue reserved in (-1: none)                */
    int counted;               /* in the in-flight count                      */
    char *body;
    size_t len, cap;
    int too_big, refused;      /* refused: body read and dropped, then 503    */
    char method[8], path[120];
    job *jb;
} req;

typedef struct queue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *head, *tail;
    size_t queued, reserved, cap, max_batch, last_batch;
    int stopping, closed;      /* stopping: drain and exit; closed: exited    */
    pthread_t th;
    int started;
    struct duet_server *s;
    int kind;
} queue;

/* A Prometheus histogram with fixed upper bounds. */
#define HIST_MAX 16
typedef struct hist {
    size_t n;
    const double *le;
    atomic_ullong count[HIST_MAX + 1];
    _Atomic double sum;
} hist;

typedef struct metrics {
    atomic_ullong requests[N_EP][N_CODES];
    hist latency[N_EP];
    hist batch[N_KINDS], batch_seconds[N_KINDS];
    atomic_ullong rejected[N_KINDS], expired[N_KINDS];
    atomic_llong connections, in_flight;
    pthread_mutex_t log_mu;
} metrics;

struct duet_server {
    struct MHD_Daemon *d;
    duet_serve_params p;
    const duet_index *ix;
    duet_query_encoder enc;    /* a copy; enc.cnn and enc.crops under cnn_lock */
    pthread_mutex_t cnn_lock;
    pthread_cond_t cnn_cv;     /* a pending CNN was published (or dropped)    */
    duet_cnn *cnn_pending;     /* set_cnn's CNN, until the image worker has
                                  made its plans and publishes it in enc     */
    int crops_pending;
    duet_searcher *search[2];  /* the image and caption galleries, owned      */
    int port;
    queue q[N_KINDS];
    int queues_made;
    atomic_int draining;
    metrics m;
    /* ranks.c: the job serving a sharded index (ranks > 1) */
    duet_comm *comm;
    int ranks;
    pthread_mutex_t ranks_mu;  /* one collective at a time (the two workers) */
    int ranks_made, ranks_ready, ranks_stopped;
    duet_index *names;         /* every gallery image's name (ranks > 1)      */
};

/* ---- serve.c: answers. Each records its status in rq. */
enum MHD_Result send_text(struct MHD_Connection *c, req *rq, unsigned code, const char *type, const char *text,
                          size_t len, int retry);
enum MHD_Result send_json(struct MHD_Connection *c, req *rq, unsigned code, json_t *o);
enum MHD_Result send_error(struct MHD_Connection *c, req *rq, unsigned code, const char *msg);
/* 503 with Retry-After. */
enum MHD_Result send_busy(struct MHD_Connection *c, req *rq, const char *msg);

/* ---- api.c: the endpoints. rq->jb set: the job is done, answer it. */
enum MHD_Result api_search(duet_server *s, struct MHD_Connection *c, req *rq);
enum MHD_Result api_search_image(duet_server *s, struct MHD_Connection *c, req *rq);
enum MHD_Result api_localize(duet_server *s, struct MHD_Connection *c, req *rq);
enum MHD_Result api_health(duet_server *s, struct MHD_Connection *c, req *rq);
enum MHD_Result api_image_file(duet_server *s, struct MHD_Connection *c, req *rq, const char *name);

/* ---- batch.c */
duet_status queues_start(duet_server *s, duet_error *err);
/* Drains every queue (the workers answer what is queued) and joins them;
 * queues_free (after MHD has stopped) destroys them. */
void queues_stop(duet_server *s);
void queues_free(duet_server *s);
/* Reserves a place in queue kind: 0, or -1 when it is full (counted). */
int queue_reserve(duet_server *s, int kind);
void queue_unreserve(duet_server *s, int kind);
/* Suspends c and queues j in the place reserved: 0, or -1 when the queue
 * has closed (c not suspended; the place is released). */
int queue_submit(duet_server *s, int kind, job *j, struct MHD_Connection *c);
size_t queue_depth(duet_server *s, int kind);
void job_free(job *j);

/* ---- ranks.c */
/* Rank 0's side of the job (nothing with one rank): the handshake with
 * the other ranks (their shards checked, the gallery's names gathered). */
duet_status ranks_start(duet_server *s, duet_error *err);
/* Tells the other ranks to stop (once; after the workers have stopped). */
void ranks_stop(duet_server *s);
void ranks_free(duet_server *s);
/* The search step of a batch: queries q (rows x dim) against side, top k
 * (hits [rows x *got]); *texts: the hits' names/texts when the gallery is
 * split between ranks (caller frees with free()), else NULL. */
duet_status ranks_search(duet_server *s, int side, const duet_mat *q, size_t k, duet_hit *hits, size_t *got,
                         char ***texts, duet_error *err);
/* n strings of t copied into one block (pointers, then bytes); NULL when
 * out of memory. Caller frees with free(). */
char **texts_copy(char *const *t, size_t n);
/* The gallery's name lookup (all of it on rank 0 of a job) and sizes. */
const duet_index *gallery_names(const duet_server *s);

/* ---- metrics.c */
void metrics_init(metrics *m);
void metrics_fini(metrics *m);
void hist_observe(hist *h, double v);
/* Counts a finished request and writes its access log line. */
void metrics_request_done(duet_server *s, struct MHD_Connection *c, req *rq, int completed_ok);
enum MHD_Result api_metrics(duet_server *s, struct MHD_Connection *c, req *rq);

#endif
