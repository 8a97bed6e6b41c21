/* cmd_serve.c -- `duet serve --index X [--host 127.0.0.1] [--port 8080]
 * [--threads N]` (docs/SEARCH.md), and under `mpirun -np S` on a sharded
 * index: rank 0 serves HTTP, every rank searches its shards (docs/SCALE.md). */
#define _XOPEN_SOURCE 700
#include "cli.h"
#include "core/core.h"
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- serve */

/* --access-log: one JSON line per request, appended to the file. */
static void access_line(void *ctx, const char *line) {
    FILE *f = ctx;
    fprintf(f, "%s\n", line);
    fflush(f);
}

/* The stop signal a thread other than the main one took (serve). */
static volatile sig_atomic_t stop_signal;
static void note_stop(int sig) { stop_signal = sig; }

/* A rank other than 0 of `mpirun duet serve`: searches its shards for rank
 * 0's batches until rank 0 stops (SIGUSR1, which mpirun forwards to every
 * rank, is rank 0's to act on). */
static int serve_rank(const char *cmd, search_ctx *c, duet_serve_params *p) {
    signal(SIGUSR1, SIG_IGN);
    p->log = access_line;
    p->log_ctx = stderr;
    duet_error e = {0};
    int rc = duet_serve_rank(p, c->ix, &e) ? fail(cmd, &e) : 0;
    ctx_free(c);
    return rc;
}

int cmd_serve(int argc, char **argv) {
    const char *C = "serve", *index = NULL, *model = NULL, *textmodel = NULL, *weights = NULL, *log = NULL;
    duet_serve_params p = duet_serve_default_params();
    const char *prec = NULL;
    int no_image = 0, timeout = (int)p.idle_timeout, req_timeout = (int)p.request_timeout;
    int wait_ms = (int)p.batch_wait_ms;
    float deadline = (float)p.deadline;
    flag flags[] = {
        {"precision", F_STR, &prec, PRECISION_HELP},
        {"index", F_STR, &index, "index file or shard manifest (duet index build; under mpirun -np N: each rank serves its run of the shards, rank 0 HTTP)"},
        {"host", F_STR, &p.host, "IPv4 address to listen on (0.0.0.0: every interface)"},
        {"port", F_INT, &p.port, "TCP port (0: any free port; the URL is printed)"},
        {"threads", F_INT, &p.threads, "HTTP threads (they also compute text features and decode images)"},
        {"max-k", F_SIZE, &p.max_k, "largest k a request may ask for"},
        {"max-body", F_SIZE, &p.max_body, "largest image upload in bytes"},
        {"max-connections", F_SIZE, &p.max_connections, "open connections at most"},
        {"timeout", F_INT, &timeout, "seconds an idle connection is kept"},
        {"request-timeout", F_INT, &req_timeout, "seconds a request (headers + body) may take"},
        {"batch", F_SIZE, &p.text_batch, "text queries encoded together at most (the text branch always runs on this many rows)"},
        {"image-batch", F_SIZE, &p.image_batch, "image queries per CNN batch at most"},
        {"batch-wait", F_INT, &wait_ms, "milliseconds a request may wait for company (only while more are on their way)"},
        {"queue", F_SIZE, &p.text_queue, "text requests waiting at most; beyond, 503 with Retry-After"},
        {"image-queue", F_SIZE, &p.image_queue, "image and localize requests waiting at most; beyond, 503"},
        {"deadline", F_FLOAT, &deadline, "seconds a request may wait in its queue (then 503); also the most a stop waits"},
        {"cnn-threads", F_INT, &p.cnn_threads, "threads of the CNN (image queries)"},
        {"access-log", F_STR, &log, "append one JSON line per request to this file (-: stderr)"},
        {"model", F_STR, &model, "model file; unset: the one the index records"},
        {"textmodel", F_STR, &textmodel, "text model; unset: the one the index records"},
        {"weights", F_STR, &weights, "CNN weights for image queries; unset: the default for the model's CNN"},
        {"no-image-queries", F_BOOL, &no_image, "do not load the CNN (POST /api/search-image answers 503; it also does while the CNN loads after start)"},
        {0}};
    const char *pos[1];
    int npos, rc = parse_flags(C, "--index X [--host 127.0.0.1] [--port 8080] [--threads N]", argc, argv, flags,
                               pos, 0, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    if ((rc = need(C, index, "index"))) return rc;
    p.comm = cli_comm();
    int ranks = duet_comm_size(p.comm);
    if (timeout < 1 || req_timeout < 1) return usage_error(C, "--timeout and --request-timeout must be >= 1");
    if (wait_ms < 0 || wait_ms > 10000) return usage_error(C, "--batch-wait must be from 0 to 10000 ms");
    if (!(deadline > 0)) return usage_error(C, "--deadline must be > 0 seconds");
    p.idle_timeout = (unsigned)timeout;
    p.request_timeout = (unsigned)req_timeout;
    p.batch_wait_ms = (unsigned)wait_ms;
    p.deadline = deadline;
    FILE *logf = NULL;
    if (log) {
        logf = strcmp(log, "-") ? fopen(log, "a") : stderr;
        if (!logf) { fprintf(stderr, "duet %s: cannot open the access log %s\n", C, log); return 1; }
        p.access_log = access_line;
        p.access_log_ctx = logf;
    }
    /* each worker sets its own oneDNN threads; OpenBLAS (text features) runs on the caller's */
    duet_set_threads(1);
    search_ctx c = {0};
    if ((rc = get_precision(C, prec, &c.prec))) { if (logf && logf != stderr) fclose(logf); return rc; }
    p.precision = c.prec;
    double t0 = now_seconds();
    /* under mpirun: every rank opens its shards; rank 0 serves */
    if (!(rc = open_index(C, index, &c)) && duet_comm_rank(p.comm) != 0) {
        if (logf && logf != stderr) fclose(logf);
        return serve_rank(C, &c, &p);
    }
    if (rc || (rc = load_encoders(C, &c, model, textmodel, LOAD_CNN_NONE, NULL))) {
        ctx_free(&c);
        if (logf && logf != stderr) fclose(logf);
        return rc;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (ranks > 1) sigaddset(&set, SIGUSR1); /* `kill -USR1 MPIRUN_PID`: mpirun forwards it */
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* server threads inherit the mask */
    /* threads started before this mask (OpenBLAS's, Open MPI's) do not block
     * them: a stop they receive (e.g. while the CNN loads) is noted here
     * instead of ending the process */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = note_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (ranks > 1) sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    duet_error e = {0};
    duet_server *srv = NULL;
    if (duet_server_start(&p, c.ix, &c.enc, &srv, &e)) {
        ctx_free(&c);
        if (logf && logf != stderr) fclose(logf);
        return fail(C, &e);
    }
    char where[96] = "";
    if (ranks > 1)
        snprintf(where, sizeof where, " in %zu shards on %d ranks; rank 0 is pid %ld", duet_index_shards(c.ix), ranks,
                 (long)getpid());
    printf("duet serve: http://%s:%d/ (%zu images, %zu captions%s; ready in %.0f ms)\n", p.host,
           duet_server_port(srv), duet_index_total(c.ix, 0), duet_index_total(c.ix, 1), where,
           (now_seconds() - t0) * 1e3);
    fflush(stdout);
    /* the CNN loads while text queries are already answered */
    if (!no_image) {
        double t1 = now_seconds();
        if (!load_cnn(C, &c, weights, 0, 0) && c.cnn) {
            duet_server_set_cnn(srv, c.cnn, c.enc.crops);
            fprintf(stderr, "duet serve: image queries on (CNN loaded and its plans made in %.0f ms)\n", (now_seconds() - t1) * 1e3);
        }
    }
    int sig = 0;
    while (!(sig = stop_signal)) { /* a signal another thread took is seen within 0.2 s */
        struct timespec ts = {0, 200 * 1000 * 1000};
        int got = sigtimedwait(&set, NULL, &ts);
        if (got > 0) { sig = got; break; }
    }
    fprintf(stderr, "duet serve: signal %d, stopping: no new connections, answering the requests received\n", sig);
    double t2 = now_seconds();
    duet_server_stop(srv);
    fprintf(stderr, "duet serve: stopped in %.0f ms\n", (now_seconds() - t2) * 1e3);
    ctx_free(&c);
    if (logf && logf != stderr) fclose(logf);
    return 0;
}
