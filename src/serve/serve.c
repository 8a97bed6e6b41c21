/* serve.c -- the HTTP server of `duet serve` on libmicrohttpd: a JSON API
 * (search by text, search by an uploaded image, localize, gallery images,
 * health, metrics) and the web page (src/serve/www/index.html, embedded by
 * www.c). This file holds the daemon: start, dispatch, the per-request
 * state MHD keeps for us, and the graceful stop. The parts: serve.h;
 * docs/SEARCH.md. */
#define _POSIX_C_SOURCE 200809L
#include "serve/serve.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* www.c: the page, NUL-terminated. */
extern const char duet_www_index_html[];

duet_serve_params duet_serve_default_params(void) {
    duet_serve_params p = {
        .host = "127.0.0.1", .port = 8080, .threads = 2, .max_body = (size_t)8 << 20, .max_k = 1000,
        .default_k = 20, .idle_timeout = 10, .request_timeout = 30, .max_connections = 512,
        .precision = DUET_PRECISION_F32, .text_batch = 16, .image_batch = 8, .batch_wait_ms = 2,
        .text_queue = 128, .image_queue = 16, .deadline = 10, .cnn_threads = 1};
    return p;
}

/* Per connection: when the current request's first byte may have come. */
typedef struct conn_ctx { double start; } conn_ctx;

/* ------------------------------------------------------------ responses */

enum MHD_Result send_text(struct MHD_Connection *c, req *rq, unsigned code, const char *type, const char *text,
                          size_t len, int retry) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (retry) MHD_add_response_header(r, "Retry-After", "1");
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    if (ret == MHD_YES) rq->code = code;
    return ret;
}

/* Queues o as JSON (takes the reference). */
static enum MHD_Result send_json_r(struct MHD_Connection *c, req *rq, unsigned code, json_t *o, int retry) {
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(o);
    if (!s) return send_text(c, rq, 500, "application/json", "{\"error\":\"out of memory\"}", 25, 0);
    enum MHD_Result ret = send_text(c, rq, code, "application/json", s, strlen(s), retry);
    free(s);
    return ret;
}

enum MHD_Result send_json(struct MHD_Connection *c, req *rq, unsigned code, json_t *o) {
    return send_json_r(c, rq, code, o, 0);
}

enum MHD_Result send_error(struct MHD_Connection *c, req *rq, unsigned code, const char *msg) {
    return send_json_r(c, rq, code, json_pack("{s:s, s:i}", "error", msg, "status", (int)code), code == 503);
}

enum MHD_Result send_busy(struct MHD_Connection *c, req *rq, const char *msg) {
    return send_error(c, rq, 503, msg);
}

/* ------------------------------------------------------------ dispatch */

static int endpoint_of(const char *url, int post) {
    if (post) return !strcmp(url, "/api/search-image") ? EP_SEARCH_IMAGE : EP_OTHER;
    if (!strcmp(url, "/") || !strcmp(url, "/index.html")) return EP_PAGE;
    if (!strcmp(url, "/api/search")) return EP_SEARCH;
    if (!strcmp(url, "/api/localize")) return EP_LOCALIZE;
    if (!strcmp(url, "/api/health")) return EP_HEALTH;
    if (!strcmp(url, "/metrics")) return EP_METRICS;
    if (!strncmp(url, "/images/", 8)) return EP_IMAGES;
    return EP_OTHER;
}

static double conn_start(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    conn_ctx *cc = ci ? ci->socket_context : NULL;
    return cc ? cc->start : duet_now();
}

/* The first call of a request: its state, the early refusals. */
static enum MHD_Result first_call(duet_server *s, struct MHD_Connection *c, const char *url, const char *method,
                                  int post, req **out) {
    req *rq = calloc(1, sizeof *rq);
    if (!rq) return MHD_NO;
    *out = rq;
    rq->t0 = duet_now();
    rq->kind = -1;
    rq->ep = endpoint_of(url, post);
    rq->counted = 1;
    snprintf(rq->method, sizeof rq->method, "%s", method);
    snprintf(rq->path, sizeof rq->path, "%s", url);
    atomic_fetch_add(&s->m.in_flight, 1);
    /* headers that dribbled in for longer than the request timeout */
    if (rq->t0 - conn_start(c) > s->p.request_timeout) return send_error(c, rq, 408, "request took too long");
    if (atomic_load(&s->draining)) return send_busy(c, rq, "the server is shutting down");
    if (!post) return MHD_YES;
    if (rq->ep != EP_SEARCH_IMAGE) return send_error(c, rq, 404, "not found");
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno || *end || n > s->p.max_body) return send_error(c, rq, 413, "image body over the size cap");
    }
    /* a place in the image queue before the body is kept: a full queue's
     * bodies are read and dropped, so memory does not grow with clients */
    if (queue_reserve(s, KIND_IMAGE)) rq->refused = 1;
    else rq->kind = KIND_IMAGE;
    return MHD_YES;
}

/* A chunk of an image body. */
static enum MHD_Result body_chunk(duet_server *s, struct MHD_Connection *c, req *rq, const char *upload,
                                  size_t *upload_size) {
    if (duet_now() - conn_start(c) > s->p.request_timeout) return MHD_NO; /* close: too slow */
    size_t n = *upload_size;
    *upload_size = 0;
    if (rq->refused || rq->too_big) return MHD_YES;
    if (n > s->p.max_body - rq->len) {
        rq->too_big = 1;
        free(rq->body);
        rq->body = NULL;
        rq->len = rq->cap = 0;
        return MHD_YES;
    }
    if (rq->len + n > rq->cap) {
        size_t cap = rq->cap ? rq->cap : 65536;
        while (cap < rq->len + n) cap *= 2;
        if (cap > s->p.max_body) cap = s->p.max_body;
        char *b = realloc(rq->body, cap);
        if (!b) return MHD_NO;
        rq->body = b;
        rq->cap = cap;
    }
    memcpy(rq->body + rq->len, upload, n);
    rq->len += n;
    return MHD_YES;
}

/* The MHD access handler: cls is the duet_server, *con_cls our req. */
static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    duet_server *s = cls;
    req *rq = *con_cls;
    int post = strcmp(method, "POST") == 0;
    if (!rq) {
        enum MHD_Result r = first_call(s, c, url, method, post, &rq);
        *con_cls = rq;
        return r;
    }
    if (rq->code) { /* answered early; the rest of a body is dropped */
        *upload_size = 0;
        return MHD_YES;
    }
    if (post) {
        if (*upload_size) return body_chunk(s, c, rq, upload, upload_size);
        if (rq->refused) return send_busy(c, rq, "the image queue is full: retry later");
        return api_search_image(s, c, rq);
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return send_error(c, rq, 405, "method not allowed");
    switch (rq->ep) {
    case EP_PAGE:
        return send_text(c, rq, 200, "text/html; charset=utf-8", duet_www_index_html, strlen(duet_www_index_html), 0);
    case EP_HEALTH: return api_health(s, c, rq);
    case EP_SEARCH: return api_search(s, c, rq);
    case EP_LOCALIZE: return api_localize(s, c, rq);
    case EP_METRICS: return api_metrics(s, c, rq);
    case EP_IMAGES: return api_image_file(s, c, rq, url + 8);
    default: return send_error(c, rq, 404, "not found");
    }
}

/* Percent-decoding of the path and the arguments, in place. %00 becomes the
 * byte 0xFF (never valid UTF-8) instead of a NUL that would silently cut a
 * name or query short: such requests are refused, not truncated. */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s) {
    char *o = s;
    for (const char *i = s; *i; i++) {
        int h = -1, l = -1;
        if (*i == '%' && i[1] && i[2]) {
            char a = i[1], b = i[2];
            h = a >= '0' && a <= '9' ? a - '0' : (a | 32) >= 'a' && (a | 32) <= 'f' ? (a | 32) - 'a' + 10 : -1;
            l = b >= '0' && b <= '9' ? b - '0' : (b | 32) >= 'a' && (b | 32) <= 'f' ? (b | 32) - 'a' + 10 : -1;
        }
        if (h >= 0 && l >= 0) {
            int v = h * 16 + l;
            *o++ = (char)(v ? v : 0xFF);
            i += 2;
        } else {
            *o++ = *i;
        }
    }
    *o = '\0';
    return (size_t)(o - s);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    duet_server *s = cls;
    req *rq = *con_cls;
    if (rq) {
        metrics_request_done(s, c, rq, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
        if (rq->kind >= 0) queue_unreserve(s, rq->kind); /* never submitted */
        if (rq->counted) atomic_fetch_sub(&s->m.in_flight, 1);
        job_free(rq->jb);
        free(rq->body);
        free(rq);
        *con_cls = NULL;
    }
    /* a keep-alive connection's next request starts now */
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    conn_ctx *cc = ci ? ci->socket_context : NULL;
    if (cc) cc->start = duet_now();
}

static void conn_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                        enum MHD_ConnectionNotificationCode toe) {
    duet_server *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        conn_ctx *cc = malloc(sizeof *cc);
        if (cc) cc->start = duet_now();
        *socket_context = cc;
        atomic_fetch_add(&s->m.connections, 1);
    } else {
        free(*socket_context);
        *socket_context = NULL;
        atomic_fetch_sub(&s->m.connections, 1);
    }
}

static void server_free(duet_server *s) {
    if (!s) return;
    duet_searcher_free(s->search[0]);
    duet_searcher_free(s->search[1]);
    ranks_free(s);
    if (s->queues_made) queues_free(s);
    pthread_cond_destroy(&s->cnn_cv);
    pthread_mutex_destroy(&s->cnn_lock);
    metrics_fini(&s->m);
    free(s);
}

/* p, ix, enc: borrowed, must outlive the server. */
duet_status duet_server_start(const duet_serve_params *p, const duet_index *ix, const duet_query_encoder *enc,
                              duet_server **out, duet_error *err) {
    *out = NULL;
    if (!p || !ix || !enc) return duet_fail(err, DUET_ERR_INVALID_ARG, "serve: params, index and encoder are required");
    if (p->port < 0 || p->port > 65535) return duet_fail(err, DUET_ERR_INVALID_ARG, "serve: port %d is outside 0..65535", p->port);
    if (p->threads < 1 || p->threads > 256) return duet_fail(err, DUET_ERR_INVALID_ARG, "serve: threads %d is outside 1..256", p->threads);
    if (p->cnn_threads < 1 || p->cnn_threads > 256)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "serve: cnn_threads %d is outside 1..256", p->cnn_threads);
    if (!p->max_k || !p->default_k || p->default_k > p->max_k || !p->max_body || !p->idle_timeout ||
        !p->request_timeout || !p->max_connections)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "serve: max_k, default_k (<= max_k), max_body, timeouts and "
                         "max_connections must be positive");
    if (!p->text_batch || p->text_batch > 1024 || !p->image_batch || p->image_batch > 256 || !p->text_queue ||
        !p->image_queue || !(p->deadline > 0) || p->batch_wait_ms > 10000)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "serve: text_batch (1..1024), image_batch (1..256), queues and "
                         "deadline must be positive, batch_wait_ms at most 10000");
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)p->port);
    const char *host = p->host && *p->host ? p->host : "127.0.0.1";
    if (!strcmp(host, "localhost")) host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "serve: host '%s' is not an IPv4 address", host);
    duet_server *s = calloc(1, sizeof *s);
    if (!s) return duet_fail(err, DUET_ERR_NOMEM, "serve: out of memory");
    s->p = *p;
    s->ix = ix;
    s->enc = *enc;
    pthread_mutex_init(&s->cnn_lock, NULL);
    pthread_cond_init(&s->cnn_cv, NULL);
    metrics_init(&s->m);
    for (int side = 0; side < 2; side++) {
        duet_mat g = duet_index_embeddings(ix, side);
        duet_status st = duet_searcher_new(&g, p->precision, &s->search[side], err);
        if (st) { server_free(s); return st; }
    }
    duet_status st = ranks_start(s, err);
    if (!st) st = queues_start(s, err);
    if (st) { ranks_stop(s); server_free(s); return st; }
    s->d = MHD_start_daemon(MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_SUSPEND_RESUME, 0, NULL,
                            NULL, handle, s,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_THREAD_POOL_SIZE, (unsigned)p->threads,
                            MHD_OPTION_CONNECTION_TIMEOUT, p->idle_timeout,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)p->max_connections,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)128 * 1024,
                            MHD_OPTION_NOTIFY_COMPLETED, completed, s,
                            MHD_OPTION_NOTIFY_CONNECTION, conn_notify, s,
                            MHD_OPTION_UNESCAPE_CALLBACK, unescape, s,
                            MHD_OPTION_END);
    if (!s->d) {
        queues_stop(s);
        ranks_stop(s);
        server_free(s);
        return duet_fail(err, DUET_ERR_IO, "serve: cannot listen on %s:%d (in use, or not allowed)", host, p->port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? (int)di->port : p->port;
    *out = s;
    return DUET_OK;
}

int duet_server_port(const duet_server *s) { return s->port; }

/* cnn: borrowed, must outlive the server (or a later call replacing it).
 * The image worker makes the CNN's plans (on its own thread, with its
 * thread count) before publishing it, so the first image queries do not
 * wait behind that; this call returns once it has. */
void duet_server_set_cnn(duet_server *s, duet_cnn *cnn, int crops) {
    pthread_mutex_lock(&s->cnn_lock);
    if (!cnn) {
        s->enc.cnn = NULL;
        s->cnn_pending = NULL;
        pthread_mutex_unlock(&s->cnn_lock);
        return;
    }
    s->cnn_pending = cnn;
    s->crops_pending = crops;
    pthread_mutex_unlock(&s->cnn_lock);
    queue *q = &s->q[KIND_IMAGE];
    pthread_mutex_lock(&q->mu);
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    pthread_mutex_lock(&s->cnn_lock);
    while (s->cnn_pending == cnn && s->enc.cnn != cnn) pthread_cond_wait(&s->cnn_cv, &s->cnn_lock);
    pthread_mutex_unlock(&s->cnn_lock);
}

/* Stop accepting; answer what was received (at most deadline seconds);
 * drain the queues; then stop MHD, which must hold no suspended
 * connection by then: every queued job has been answered and resumed. */
void duet_server_stop(duet_server *s) {
    if (!s) return;
    MHD_socket ls = MHD_quiesce_daemon(s->d);
    /* stop listening: new connections are refused, not left in the backlog
     * (the descriptor stays open until MHD has stopped) */
    if (ls != MHD_INVALID_SOCKET) shutdown(ls, SHUT_RDWR);
    atomic_store(&s->draining, 1);
    for (int k = 0; k < N_KINDS; k++) { /* no more waiting for company */
        pthread_mutex_lock(&s->q[k].mu);
        pthread_cond_broadcast(&s->q[k].cv);
        pthread_mutex_unlock(&s->q[k].mu);
    }
    double until = duet_now() + s->p.deadline;
    while (atomic_load(&s->m.in_flight) > 0 && duet_now() < until) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    queues_stop(s);
    ranks_stop(s); /* no search is left: the other ranks return */
    MHD_stop_daemon(s->d);
    if (ls != MHD_INVALID_SOCKET) close(ls);
    server_free(s);
}
