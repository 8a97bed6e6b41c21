/* batch.c -- micro-batching: one bounded queue and one worker thread per
 * kind of work (text queries; image queries and localization). A worker
 * takes what is queued (at most the kind's batch size), waiting for company
 * only while more is on its way -- requests admitted and still being read
 * or prepared, or fewer queued than its last batch had -- and never longer
 * than batch_wait_ms or the oldest request's deadline. Then it encodes the
 * batch together (the text branch as one matrix product per layer, the
 * images as one CNN batch), searches it as one scoring product per
 * gallery, and resumes each request's connection.
 *
 * Answers never depend on the company: the query functions
 * (duet_query_embed_rows, duet_query_image_features) run the branches on a
 * fixed number of rows and the CNN on runs of 1 or image_batch images, and
 * the search scores are exact (duet_topk). The CNN keeps plans for two
 * batch sizes; a run of another size would rebuild one (hundreds of ms), so
 * a batch is cut into runs of image_batch and the rest either padded to
 * image_batch or run one by one, whichever the measured times say is
 * faster. */
#define _POSIX_C_SOURCE 200809L
#include "serve/serve.h"
#include <errno.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void job_free(job *j) {
    if (!j) return;
    free(j->input);
    free(j->hits);
    free(j->texts);
    free(j->boxes);
    duet_image_free(&j->im);
    free(j);
}

/* ------------------------------------------------------------ queues */

int queue_reserve(duet_server *s, int kind) {
    queue *q = &s->q[kind];
    pthread_mutex_lock(&q->mu);
    int ok = !q->closed && q->queued + q->reserved < q->cap;
    if (ok) q->reserved++;
    pthread_mutex_unlock(&q->mu);
    if (!ok) atomic_fetch_add(&s->m.rejected[kind], 1);
    return ok ? 0 : -1;
}

void queue_unreserve(duet_server *s, int kind) {
    queue *q = &s->q[kind];
    pthread_mutex_lock(&q->mu);
    q->reserved--;
    pthread_cond_signal(&q->cv); /* a worker waiting for this one stops */
    pthread_mutex_unlock(&q->mu);
}

int queue_submit(duet_server *s, int kind, job *j, struct MHD_Connection *c) {
    queue *q = &s->q[kind];
    pthread_mutex_lock(&q->mu);
    q->reserved--;
    if (q->closed) {
        pthread_mutex_unlock(&q->mu);
        return -1;
    }
    /* suspended before the worker can see it: it may resume at once */
    MHD_suspend_connection(c);
    j->c = c;
    j->t_queued = duet_now();
    j->next = NULL;
    if (q->tail) q->tail->next = j;
    else q->head = j;
    q->tail = j;
    q->queued++;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

size_t queue_depth(duet_server *s, int kind) {
    queue *q = &s->q[kind];
    pthread_mutex_lock(&q->mu);
    size_t n = q->queued + q->reserved;
    pthread_mutex_unlock(&q->mu);
    return n;
}

/* ------------------------------------------------------------ the work */

/* Ends a job: its connection resumes and the job is the request's again. */
static void finish(job *j, double t0) {
    j->run_ms = (duet_now() - t0) * 1e3;
    j->done = 1;
    MHD_resume_connection(j->c);
}

static void fail_all(job **b, size_t n, unsigned code, const char *msg) {
    for (size_t i = 0; i < n; i++) {
        b[i]->code = code;
        snprintf(b[i]->msg, sizeof b[i]->msg, "%s", msg);
    }
}

/* The embeddings emb [n x dim] of the jobs b searched, one scoring product
 * per gallery (under mpirun: one collective search, ranks.c); each job
 * keeps the first k of the largest k asked. */
static void search_batch(duet_server *s, job **b, size_t n, const float *emb) {
    size_t de = duet_index_dim(s->ix);
    for (int side = 0; side < 2; side++) {
        size_t g = 0, kmax = 0;
        for (size_t i = 0; i < n; i++)
            if (b[i]->side == side) { g++; if (b[i]->k > kmax) kmax = b[i]->k; }
        if (!g) continue;
        float *qm = duet_alloc_array(g, de * sizeof(float));
        duet_hit *h = duet_alloc_array(g, kmax * sizeof(duet_hit));
        job **gj = duet_alloc_array(g, sizeof *gj);
        duet_error e = {0};
        size_t got = 0, r = 0;
        duet_status st = qm && h && gj ? DUET_OK : duet_fail(&e, DUET_ERR_NOMEM, "out of memory");
        for (size_t i = 0; !st && i < n; i++)
            if (b[i]->side == side) { memcpy(qm + r * de, emb + i * de, de * sizeof(float)); gj[r++] = b[i]; }
        duet_mat qv = {qm, g, de};
        char **tx = NULL;
        if (!st) st = ranks_search(s, side, &qv, kmax, h, &got, &tx, &e);
        for (size_t i = 0; i < g && !st; i++) {
            job *j = gj[i];
            j->got = j->k < got ? j->k : got;
            memcpy(j->hits, h + i * got, j->got * sizeof *h);
            if (tx && !(j->texts = texts_copy(tx + i * got, j->got)))
                st = duet_fail(&e, DUET_ERR_NOMEM, "out of memory");
        }
        for (size_t i = 0; i < n && st; i++)   /* this side's jobs fail; the other's stand */
            if (b[i]->side == side) fail_all(&b[i], 1, 500, e.msg);
        free(qm); free(h); free(gj); free(tx);
    }
}

static void run_text(duet_server *s, job **b, size_t n) {
    size_t dt = duet_textmodel_dim(s->enc.textmodel), de = duet_index_dim(s->ix);
    float *f = duet_alloc_array(n, dt * sizeof(float)), *emb = duet_alloc_array(n, de * sizeof(float));
    duet_error e = {0};
    duet_status st = f && emb ? DUET_OK : duet_fail(&e, DUET_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !st && i < n; i++) memcpy(f + i * dt, b[i]->input, dt * sizeof(float));
    if (!st) st = duet_query_embed_rows(&s->enc, DUET_SIDE_TEXT, f, n, s->p.text_batch, emb, &e);
    if (st) fail_all(b, n, 500, e.msg);
    else search_batch(s, b, n, emb);
    free(f); free(emb);
}

/* Seconds of a CNN run of 1 and of image_batch images (measured). */
typedef struct cnn_times { const duet_cnn *cnn; double t1, tb; } cnn_times;

/* CNN features of n inputs in runs of image_batch or 1 (see the top). */
static duet_status cnn_runs(duet_server *s, const duet_query_encoder *enc, cnn_times *ct, const float *in,
                            size_t n, float *feats, duet_error *e) {
    size_t B = s->p.image_batch, per = duet_query_image_input_floats(enc), fd = duet_cnn_feature_dim(enc->cnn);
    duet_status st = DUET_OK;
    for (size_t i = 0; !st && i < n;) {
        size_t left = n - i, m = 1, run = 1;
        if (left >= B) m = run = B;
        else if ((double)left * ct->t1 > ct->tb) { m = left; run = B; } /* padding beats one by one */
        double t0 = duet_now();
        st = duet_query_image_features(enc, in + i * per, m, run, feats + i * fd, e);
        double t = duet_now() - t0;
        if (run == 1) ct->t1 = 0.8 * ct->t1 + 0.2 * t;
        else ct->tb = 0.8 * ct->tb + 0.2 * t;
        i += m;
    }
    return st;
}

/* Plans for 1 and image_batch images made on this thread, and their times. */
static void cnn_warm(duet_server *s, const duet_query_encoder *enc, cnn_times *ct) {
    size_t B = s->p.image_batch, per = duet_query_image_input_floats(enc), fd = duet_cnn_feature_dim(enc->cnn);
    float *in = duet_calloc_array(B, per * sizeof(float)), *f = duet_alloc_array(B, fd * sizeof(float));
    duet_error e = {0};
    ct->cnn = enc->cnn;
    ct->t1 = ct->tb = 0;
    for (int rep = 0; in && f && rep < 2; rep++) {
        double t0 = duet_now();
        if (duet_query_image_features(enc, in, 1, 1, f, &e)) break;
        double t1 = duet_now();
        if (duet_query_image_features(enc, in, 1, B, f, &e)) break;
        ct->t1 = t1 - t0;
        ct->tb = duet_now() - t1;
    }
    if (!(ct->tb > 0)) ct->t1 = ct->tb = 1; /* unmeasured: full runs, the rest one by one */
    free(in); free(f);
}

static void run_images(duet_server *s, job **b, size_t n, const duet_query_encoder *enc, cnn_times *ct) {
    size_t per = duet_query_image_input_floats(enc), fd = duet_cnn_feature_dim(enc->cnn), de = duet_index_dim(s->ix);
    float *in = duet_alloc_array(n, per * sizeof(float)), *f = duet_alloc_array(n, fd * sizeof(float));
    float *emb = duet_alloc_array(n, de * sizeof(float));
    duet_error e = {0};
    duet_status st = in && f && emb ? DUET_OK : duet_fail(&e, DUET_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !st && i < n; i++) memcpy(in + i * per, b[i]->input, per * sizeof(float));
    if (!st) st = cnn_runs(s, enc, ct, in, n, f, &e);
    if (!st) st = duet_query_embed_rows(enc, DUET_SIDE_IMAGE, f, n, s->p.image_batch, emb, &e);
    if (st) fail_all(b, n, 500, e.msg);
    else search_batch(s, b, n, emb);
    free(in); free(f); free(emb);
}

static void run_localize(job *j, const duet_query_encoder *enc) {
    duet_regions reg = {0};
    duet_error e = {0};
    duet_status st = duet_regions_embed(enc, &j->im, NULL, &reg, &e);
    if (!st) st = duet_regions_localize(enc, &reg, j->q, DUET_SCORE_CONTRAST, j->k, j->hits, &j->got, &e);
    if (!st && !(j->boxes = duet_alloc_array(j->got ? j->got : 1, sizeof *j->boxes)))
        st = duet_fail(&e, DUET_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !st && i < j->got; i++) j->boxes[i] = reg.boxes[j->hits[i].index];
    j->proposals = reg.n;
    if (st) {
        j->code = st == DUET_ERR_INVALID_ARG ? 400 : 500;
        snprintf(j->msg, sizeof j->msg, "%s", e.msg);
    }
    duet_regions_free(&reg);
}

/* ------------------------------------------------------------ workers */

/* The absolute time t of duet_now (CLOCK_MONOTONIC, the clock the queues'
 * condition variables wait on) as a timespec for pthread_cond_timedwait. */
static void deadline_ts(double t, struct timespec *ts) {
    double at = t + 1e-6; /* never before t */
    ts->tv_sec = (time_t)at;
    ts->tv_nsec = (long)((at - (double)ts->tv_sec) * 1e9);
}

/* Takes a batch from q (locked): image jobs up to the batch size, or one
 * localize job. */
static size_t take(queue *q, job **b) {
    size_t n = 0;
    int loc = q->head->type == JOB_LOCALIZE;
    while (q->head && n < q->max_batch && (q->head->type == JOB_LOCALIZE) == loc && (!loc || n == 0)) {
        job *j = q->head;
        q->head = j->next;
        if (!q->head) q->tail = NULL;
        q->queued--;
        b[n++] = j;
    }
    if (!loc) q->last_batch = n;
    return n;
}

static void process(duet_server *s, queue *q, job **b, size_t n, cnn_times *ct) {
    double t0 = duet_now();
    size_t live = 0;
    for (size_t i = 0; i < n; i++) {
        b[i]->wait_ms = (t0 - b[i]->t_queued) * 1e3;
        b[i]->batch = n;
        if (t0 >= b[i]->deadline) {
            b[i]->code = 503;
            snprintf(b[i]->msg, sizeof b[i]->msg, "the request waited past its deadline (%g s): retry later",
                     s->p.deadline);
            atomic_fetch_add(&s->m.expired[q->kind], 1);
            finish(b[i], t0);
        } else {
            b[live++] = b[i];
        }
    }
    if (!live) return;
    pthread_mutex_lock(&s->cnn_lock);
    duet_query_encoder enc = s->enc;
    pthread_mutex_unlock(&s->cnn_lock);
    if (q->kind == KIND_TEXT) {
        run_text(s, b, live);
    } else if (!enc.cnn) {
        fail_all(b, live, 503, "image queries are off (no CNN loaded)");
    } else {
        if (ct->cnn != enc.cnn) cnn_warm(s, &enc, ct);
        size_t ok = 0; /* inputs cut for another CNN's crops (replaced since) */
        for (size_t i = 0; i < live; i++) {
            if (b[i]->type == JOB_IMAGE && b[i]->crops != enc.crops) {
                fail_all(&b[i], 1, 503, "the CNN was replaced while the request waited: retry");
                finish(b[i], t0);
            } else {
                b[ok++] = b[i];
            }
        }
        live = ok;
        if (live && b[0]->type == JOB_LOCALIZE) run_localize(b[0], &enc);
        else if (live) run_images(s, b, live, &enc, ct);
    }
    hist_observe(&s->m.batch[q->kind], (double)live);
    hist_observe(&s->m.batch_seconds[q->kind], duet_now() - t0);
    for (size_t i = 0; i < live; i++) finish(b[i], t0);
}

/* A CNN given to duet_server_set_cnn: its plans made here, then published
 * to the endpoints. mu (held) is released meanwhile. 1 when one was. */
static int cnn_adopt(duet_server *s, cnn_times *ct, pthread_mutex_t *mu) {
    pthread_mutex_lock(&s->cnn_lock);
    duet_query_encoder enc = s->enc;
    enc.cnn = s->cnn_pending;
    enc.crops = s->crops_pending;
    pthread_mutex_unlock(&s->cnn_lock);
    if (!enc.cnn) return 0;
    pthread_mutex_unlock(mu);
    cnn_warm(s, &enc, ct);
    pthread_mutex_lock(&s->cnn_lock);
    if (s->cnn_pending == enc.cnn) {
        s->enc.cnn = enc.cnn;
        s->enc.crops = enc.crops;
        s->cnn_pending = NULL;
    }
    pthread_cond_broadcast(&s->cnn_cv);
    pthread_mutex_unlock(&s->cnn_lock);
    pthread_mutex_lock(mu);
    return 1;
}

static void *worker(void *arg) {
    queue *q = arg;
    duet_server *s = q->s;
    /* oneDNN's threads for this thread's primitives (made here, on first use) */
    omp_set_num_threads(q->kind == KIND_IMAGE ? s->p.cnn_threads : 1);
    cnn_times ct = {0};
    job **b = calloc(q->max_batch, sizeof *b);
    double wait = s->p.batch_wait_ms * 1e-3;
    if (q->kind == KIND_TEXT) { /* the text branch's primitives, once */
        size_t dt = duet_textmodel_dim(s->enc.textmodel), de = duet_index_dim(s->ix);
        float *f = duet_calloc_array(1, dt * sizeof(float)), *y = duet_alloc_array(1, de * sizeof(float));
        duet_error e = {0};
        if (f && y) (void)duet_query_embed_rows(&s->enc, DUET_SIDE_TEXT, f, 1, s->p.text_batch, y, &e);
        free(f); free(y);
    }
    pthread_mutex_lock(&q->mu);
    for (;;) {
        if (q->kind == KIND_IMAGE && !q->stopping && cnn_adopt(s, &ct, &q->mu)) continue;
        if (!q->queued && !q->stopping) { pthread_cond_wait(&q->cv, &q->mu); continue; }
        if (!q->queued || !b) break; /* stopping, and nothing is left */
        double limit = q->head->t_queued + wait;
        if (limit > q->head->deadline) limit = q->head->deadline;
        while (!q->stopping && !atomic_load(&s->draining) && q->queued < q->max_batch &&
               (q->reserved > 0 || q->queued < q->last_batch) && duet_now() < limit) {
            struct timespec ts;
            deadline_ts(limit, &ts);
            if (pthread_cond_timedwait(&q->cv, &q->mu, &ts) == ETIMEDOUT) break;
        }
        size_t n = take(q, b);
        pthread_mutex_unlock(&q->mu);
        process(s, q, b, n, &ct);
        pthread_mutex_lock(&q->mu);
    }
    q->closed = 1;
    pthread_mutex_unlock(&q->mu);
    free(b);
    if (q->kind == KIND_IMAGE) { /* a set_cnn still waiting gives up */
        pthread_mutex_lock(&s->cnn_lock);
        s->cnn_pending = NULL;
        pthread_cond_broadcast(&s->cnn_cv);
        pthread_mutex_unlock(&s->cnn_lock);
    }
    return NULL;
}

duet_status queues_start(duet_server *s, duet_error *err) {
    for (int k = 0; k < N_KINDS; k++) {
        queue *q = &s->q[k];
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_mutex_init(&q->mu, NULL);
        pthread_cond_init(&q->cv, &ca);
        pthread_condattr_destroy(&ca);
        q->s = s;
        q->kind = k;
        q->cap = k == KIND_TEXT ? s->p.text_queue : s->p.image_queue;
        q->max_batch = k == KIND_TEXT ? s->p.text_batch : s->p.image_batch;
    }
    s->queues_made = 1;
    for (int k = 0; k < N_KINDS; k++) {
        queue *q = &s->q[k];
        if (pthread_create(&q->th, NULL, worker, q) != 0) {
            queues_stop(s);
            return duet_fail(err, DUET_ERR_NOMEM, "serve: cannot start a worker thread");
        }
        q->started = 1;
    }
    return DUET_OK;
}

void queues_stop(duet_server *s) {
    for (int k = 0; k < N_KINDS; k++) {
        queue *q = &s->q[k];
        pthread_mutex_lock(&q->mu);
        q->stopping = 1;
        pthread_cond_broadcast(&q->cv);
        pthread_mutex_unlock(&q->mu);
    }
    for (int k = 0; k < N_KINDS; k++) {
        queue *q = &s->q[k];
        if (q->started) pthread_join(q->th, NULL);
        q->started = 0;
        pthread_mutex_lock(&q->mu);
        q->closed = 1; /* also when its worker never started */
        pthread_mutex_unlock(&q->mu);
    }
}

void queues_free(duet_server *s) {
    for (int k = 0; k < N_KINDS; k++) {
        pthread_cond_destroy(&s->q[k].cv);
        pthread_mutex_destroy(&s->q[k].mu);
    }
}
