/* metrics.c -- what `duet serve` counts (lock-free atomics, updated from
 * any thread), GET /metrics in the Prometheus text exposition format
 * (version 0.0.4), and the access log: one JSON object per finished
 * request, handed to params.access_log. docs/SEARCH.md lists the metrics. */
#define _POSIX_C_SOURCE 200809L
#include "serve/serve.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *const EP_NAME[N_EP] = {"/", "/api/search", "/api/search-image", "/api/localize",
                                          "/api/health", "/images", "/metrics", "other"};
/* N_CODES - 1 codes, then "other" */
static const unsigned CODES[N_CODES - 1] = {200, 400, 404, 405, 408, 413, 500, 503, 504};
static const char *const KIND_NAME[N_KINDS] = {"text", "image"};

static const double LE_SECONDS[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
static const double LE_BATCH[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
#define NLE(a) (sizeof(a) / sizeof(a[0]))

static void hist_init(hist *h, const double *le, size_t n) {
    h->le = le;
    h->n = n;
    for (size_t i = 0; i <= n; i++) atomic_init(&h->count[i], 0);
    atomic_init(&h->sum, 0.0);
}

void hist_observe(hist *h, double v) {
    size_t i = 0;
    while (i < h->n && v > h->le[i]) i++;
    atomic_fetch_add(&h->count[i], 1);
    double old = atomic_load(&h->sum);
    while (!atomic_compare_exchange_weak(&h->sum, &old, old + v)) {}
}

void metrics_init(metrics *m) {
    for (int e = 0; e < N_EP; e++) {
        for (int c = 0; c < N_CODES; c++) atomic_init(&m->requests[e][c], 0);
        hist_init(&m->latency[e], LE_SECONDS, NLE(LE_SECONDS));
    }
    for (int k = 0; k < N_KINDS; k++) {
        hist_init(&m->batch[k], LE_BATCH, NLE(LE_BATCH));
        hist_init(&m->batch_seconds[k], LE_SECONDS, NLE(LE_SECONDS));
        atomic_init(&m->rejected[k], 0);
        atomic_init(&m->expired[k], 0);
    }
    atomic_init(&m->connections, 0);
    atomic_init(&m->in_flight, 0);
    pthread_mutex_init(&m->log_mu, NULL);
}

void metrics_fini(metrics *m) { pthread_mutex_destroy(&m->log_mu); }

static int code_slot(unsigned code) {
    for (int i = 0; i < N_CODES - 1; i++)
        if (CODES[i] == code) return i;
    return N_CODES - 1;
}

/* JSON string body of s (quotes and controls escaped) into b. */
static void json_escape(const char *s, char *b, size_t cap) {
    size_t o = 0;
    for (; *s && o + 7 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') { b[o++] = '\\'; b[o++] = (char)ch; }
        else if (ch < 0x20 || ch == 0x7f) o += (size_t)snprintf(b + o, cap - o, "\\u%04x", ch);
        else b[o++] = (char)ch;
    }
    b[o] = '\0';
}

void metrics_request_done(duet_server *s, struct MHD_Connection *c, req *rq, int completed_ok) {
    metrics *m = &s->m;
    double sec = duet_now() - rq->t0;
    atomic_fetch_add(&m->requests[rq->ep][code_slot(rq->code)], 1);
    hist_observe(&m->latency[rq->ep], sec);
    if (!s->p.access_log) return;
    char when[40], client[INET6_ADDRSTRLEN] = "?", path[400], extra[96] = "";
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t w = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + w, sizeof when - w, ".%03ldZ", ts.tv_nsec / 1000000);
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ci->client_addr)->sin_addr, client, sizeof client);
    json_escape(rq->path, path, sizeof path);
    if (rq->jb && rq->jb->done)
        snprintf(extra, sizeof extra, ",\"batch\":%zu,\"queue_ms\":%.3f,\"run_ms\":%.3f", rq->jb->batch,
                 rq->jb->wait_ms, rq->jb->run_ms);
    char line[768];
    snprintf(line, sizeof line,
             "{\"time\":\"%s\",\"client\":\"%s\",\"method\":\"%s\",\"path\":\"%s\",\"endpoint\":\"%s\","
             "\"status\":%u,\"ms\":%.3f%s,\"completed\":%s}",
             when, client, rq->method, path, EP_NAME[rq->ep], rq->code, sec * 1e3, extra,
             completed_ok ? "true" : "false");
    pthread_mutex_lock(&m->log_mu);
    s->p.access_log(s->p.access_log_ctx, line);
    pthread_mutex_unlock(&m->log_mu);
}

/* ------------------------------------------------------------ /metrics */

static void head(duet_sbuf *b, const char *name, const char *type, const char *help) {
    duet_sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void hist_write(duet_sbuf *b, const char *name, const char *label, const char *value, const hist *h) {
    unsigned long long cum = 0;
    for (size_t i = 0; i <= h->n; i++) {
        cum += atomic_load(&h->count[i]);
        if (i < h->n) duet_sb_printf(b, "%s_bucket{%s=\"%s\",le=\"%g\"} %llu\n", name, label, value, h->le[i], cum);
        else duet_sb_printf(b, "%s_bucket{%s=\"%s\",le=\"+Inf\"} %llu\n", name, label, value, cum);
    }
    duet_sb_printf(b, "%s_sum{%s=\"%s\"} %.9g\n%s_count{%s=\"%s\"} %llu\n", name, label, value,
                     atomic_load(&h->sum), name, label, value, cum);
}

static long resident_bytes(void) {
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
        fclose(f);
    }
    return rss * sysconf(_SC_PAGESIZE);
}

enum MHD_Result api_metrics(duet_server *s, struct MHD_Connection *c, req *rq) {
    metrics *m = &s->m;
    duet_sbuf b = {0};
    head(&b, "duet_http_requests_total", "counter", "HTTP requests answered, by endpoint and status code.");
    for (int e = 0; e < N_EP; e++)
        for (int k = 0; k < N_CODES; k++) {
            unsigned long long v = atomic_load(&m->requests[e][k]);
            if (!v) continue;
            char code[16];
            if (k < N_CODES - 1) snprintf(code, sizeof code, "%u", CODES[k]);
            else snprintf(code, sizeof code, "other");
            duet_sb_printf(&b, "duet_http_requests_total{endpoint=\"%s\",code=\"%s\"} %llu\n", EP_NAME[e], code, v);
        }
    head(&b, "duet_http_errors_total", "counter", "HTTP requests answered with a 4xx or 5xx status, by endpoint.");
    for (int e = 0; e < N_EP; e++) {
        unsigned long long v = 0;
        for (int k = 1; k < N_CODES; k++) v += atomic_load(&m->requests[e][k]);
        duet_sb_printf(&b, "duet_http_errors_total{endpoint=\"%s\"} %llu\n", EP_NAME[e], v);
    }
    head(&b, "duet_http_request_duration_seconds", "histogram",
         "Seconds from a request's first call to its answer sent, by endpoint.");
    for (int e = 0; e < N_EP; e++) hist_write(&b, "duet_http_request_duration_seconds", "endpoint", EP_NAME[e], &m->latency[e]);
    head(&b, "duet_batch_size", "histogram", "Requests encoded and searched together, by kind of work.");
    for (int k = 0; k < N_KINDS; k++) hist_write(&b, "duet_batch_size", "kind", KIND_NAME[k], &m->batch[k]);
    head(&b, "duet_batch_duration_seconds", "histogram", "Seconds a worker spent on one batch, by kind of work.");
    for (int k = 0; k < N_KINDS; k++) hist_write(&b, "duet_batch_duration_seconds", "kind", KIND_NAME[k], &m->batch_seconds[k]);
    head(&b, "duet_queue_depth", "gauge", "Requests admitted to a queue and not yet taken by its worker.");
    for (int k = 0; k < N_KINDS; k++) duet_sb_printf(&b, "duet_queue_depth{kind=\"%s\"} %zu\n", KIND_NAME[k], queue_depth(s, k));
    head(&b, "duet_queue_capacity", "gauge", "Places in a queue; a request finding none is answered 503.");
    for (int k = 0; k < N_KINDS; k++) duet_sb_printf(&b, "duet_queue_capacity{kind=\"%s\"} %zu\n", KIND_NAME[k], s->q[k].cap);
    head(&b, "duet_queue_rejected_total", "counter", "Requests answered 503 because their queue was full.");
    for (int k = 0; k < N_KINDS; k++)
        duet_sb_printf(&b, "duet_queue_rejected_total{kind=\"%s\"} %llu\n", KIND_NAME[k], atomic_load(&m->rejected[k]));
    head(&b, "duet_deadline_expired_total", "counter", "Requests answered 503 because they waited past the deadline.");
    for (int k = 0; k < N_KINDS; k++)
        duet_sb_printf(&b, "duet_deadline_expired_total{kind=\"%s\"} %llu\n", KIND_NAME[k], atomic_load(&m->expired[k]));
    head(&b, "duet_index_rows", "gauge", "Rows of the index (every shard), by side.");
    duet_sb_printf(&b, "duet_index_rows{side=\"images\"} %zu\nduet_index_rows{side=\"captions\"} %zu\n",
                     duet_index_total(s->ix, DUET_SIDE_IMAGE), duet_index_total(s->ix, DUET_SIDE_TEXT));
    head(&b, "duet_index_shards", "gauge", "Shard files of the index (1: an index file).");
    duet_sb_printf(&b, "duet_index_shards %zu\n", duet_index_shards(s->ix));
    head(&b, "duet_ranks", "gauge", "Processes searching the index (MPI ranks; 1: this process alone).");
    duet_sb_printf(&b, "duet_ranks %d\n", s->ranks > 1 ? s->ranks : 1);
    head(&b, "duet_index_dim", "gauge", "Embedding dimension of the index.");
    duet_sb_printf(&b, "duet_index_dim %zu\n", duet_index_dim(s->ix));
    head(&b, "duet_open_connections", "gauge", "Open HTTP connections.");
    duet_sb_printf(&b, "duet_open_connections %lld\n", (long long)atomic_load(&m->connections));
    head(&b, "duet_requests_in_flight", "gauge", "Requests received and not yet answered (this one included).");
    duet_sb_printf(&b, "duet_requests_in_flight %lld\n", (long long)atomic_load(&m->in_flight));
    head(&b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    duet_sb_printf(&b, "process_resident_memory_bytes %ld\n", resident_bytes());
    if (b.oom || !b.s) { duet_sb_free(&b); return send_error(c, rq, 500, "out of memory"); }
    enum MHD_Result r = send_text(c, rq, 200, "text/plain; version=0.0.4; charset=utf-8", b.s, b.n, 0);
    duet_sb_free(&b);
    return r;
}
