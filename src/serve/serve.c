/* serve.c -- the HTTP server of `duet serve` on libmicrohttpd: a JSON API
 * (search by text, search by an uploaded image, gallery images, health) and
 * the web page (src/serve/www/index.html, embedded by www.c). All state
 * lives in a duet_server passed to MHD as the handler's closure; per-request
 * state lives in the request context MHD keeps for us. docs/SEARCH.md. */
#define _POSIX_C_SOURCE 200809L
#include "core/core.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* www.c: the page, NUL-terminated. */
extern const char duet_www_index_html[];

#define MAX_QUERY_BYTES 2000

struct duet_server {
    struct MHD_Daemon *d;
    duet_serve_params p;
    const duet_index *ix;
    duet_query_encoder enc;     /* a copy; enc.cnn and enc.crops under cnn_lock */
    pthread_mutex_t cnn_lock;   /* the CNN keeps a workspace: one at a time */
    duet_searcher *search[2];   /* the image and caption galleries, owned  */
    int port;
};

duet_serve_params duet_serve_default_params(void) {
    duet_serve_params p = {"127.0.0.1", 8080, 2, (size_t)8 << 20, 1000, 20, 10, 30, 256, DUET_PRECISION_F32};
    return p;
}

/* Per connection: when the current request's first byte may have come. */
typedef struct conn_ctx { double start; } conn_ctx;

/* Per request. */
typedef struct req {
    char *body;
    size_t len, cap;
    int too_big;
} req;

/* ------------------------------------------------------------ responses */

/* Queues text (copied) with status code and content type. */
static enum MHD_Result send_text(struct MHD_Connection *c, unsigned code, const char *type,
                                 const char *text, size_t len) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

/* Queues o as JSON (takes the reference). */
static enum MHD_Result send_json(struct MHD_Connection *c, unsigned code, json_t *o) {
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s) return send_text(c, 500, "application/json", "{\"error\":\"out of memory\"}", 25);
    enum MHD_Result ret = send_text(c, code, "application/json", s, strlen(s));
    free(s);
    return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned code, const char *msg) {
    return send_json(c, code, json_pack("{s:s, s:i}", "error", msg, "status", (int)code));
}

/* ------------------------------------------------------------ arguments */

/* Strict k: digits only, 1..max_k; absent: default_k. 0 or an error. */
static int parse_k(const duet_server *s, struct MHD_Connection *c, size_t *k, const char **why) {
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "k");
    if (!v) { *k = s->p.default_k; return 0; }
    size_t x = 0;
    if (!*v) { *why = "k is empty"; return -1; }
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9' || p - v > 9) { *why = "k must be a whole number from 1 to max_k"; return -1; }
        x = x * 10 + (size_t)(*p - '0');
    }
    if (x < 1 || x > s->p.max_k) { *why = "k must be a whole number from 1 to max_k"; return -1; }
    *k = x;
    return 0;
}

/* "images" or "captions"; dflt when absent; -1 unknown. */
static int parse_side(struct MHD_Connection *c, int dflt) {
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "to");
    if (!v) return dflt;
    if (!strcmp(v, "images")) return DUET_SIDE_IMAGE;
    if (!strcmp(v, "captions")) return DUET_SIDE_TEXT;
    return -1;
}

/* ------------------------------------------------------------ handlers */

/* Searches emb (one query row) on side and answers with the hits. */
static enum MHD_Result answer_hits(duet_server *s, struct MHD_Connection *c, const float *emb, size_t k,
                                   int side, json_t *o, double t0) {
    duet_mat q = {(float *)emb, 1, duet_index_dim(s->ix)};
    duet_hit *h = duet_alloc_array(k, sizeof *h);
    size_t got = 0;
    duet_error e = {0};
    if (!h || duet_searcher_topk(s->search[side], &q, k, h, &got, &e)) {
        free(h); json_decref(o);
        return send_error(c, 500, h ? e.msg : "out of memory");
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < got; i++) {
        const char *t = duet_index_text(s->ix, side, h[i].index);
        json_t *r = json_pack("{s:I, s:I, s:f}", "rank", (json_int_t)(i + 1), "index",
                              (json_int_t)h[i].index, "score", (double)h[i].score);
        json_object_set_new(r, side == DUET_SIDE_IMAGE ? "name" : "text", json_string(t));
        json_array_append_new(arr, r);
    }
    free(h);
    json_object_set_new(o, "to", json_string(side == DUET_SIDE_IMAGE ? "images" : "captions"));
    json_object_set_new(o, "k", json_integer((json_int_t)k));
    json_object_set_new(o, "took_ms", json_real((duet_now() - t0) * 1e3));
    json_object_set_new(o, "results", arr);
    return send_json(c, 200, o);
}

static enum MHD_Result api_search(duet_server *s, struct MHD_Connection *c) {
    double t0 = duet_now();
    const char *q = NULL, *why = NULL;
    size_t qlen = 0, k;
    if (MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, "q", 1, &q, &qlen) != MHD_YES || !q)
        return send_error(c, 400, "missing parameter q");
    if (qlen == 0 || qlen > MAX_QUERY_BYTES) return send_error(c, 400, "q must hold 1 to 2000 bytes");
    if (memchr(q, '\0', qlen) || !duet_utf8_valid(q, qlen)) return send_error(c, 400, "q is not valid UTF-8 text");
    if (parse_k(s, c, &k, &why)) return send_error(c, 400, why);
    int side = parse_side(c, DUET_SIDE_IMAGE);
    if (side < 0) return send_error(c, 400, "to must be images or captions");
    if (duet_index_count(s->ix, side) == 0) return send_error(c, 400, "the index holds no captions");
    size_t d = duet_index_dim(s->ix);
    float *emb = duet_alloc_array(d, sizeof(float));
    uint8_t flag = 0;
    duet_error e = {0};
    if (!emb) return send_error(c, 500, "out of memory");
    if (duet_query_encode_text(&s->enc, &q, 1, emb, &flag, &e)) { free(emb); return send_error(c, 500, e.msg); }
    json_t *o = json_pack("{s:s, s:b}", "query", q, "no_known_word", flag & DUET_TEXT_FLAG_EMPTY);
    enum MHD_Result r = answer_hits(s, c, emb, k, side, o, t0);
    free(emb);
    return r;
}

static enum MHD_Result api_search_image(duet_server *s, struct MHD_Connection *c, req *rq) {
    double t0 = duet_now();
    const char *why = NULL;
    size_t k;
    if (rq->too_big) return send_error(c, 413, "image body over the size cap");
    if (rq->len == 0) return send_error(c, 400, "empty body: POST the image bytes (JPEG, PNG or BMP)");
    if (parse_k(s, c, &k, &why)) return send_error(c, 400, why);
    int side = parse_side(c, duet_index_count(s->ix, DUET_SIDE_TEXT) ? DUET_SIDE_TEXT : DUET_SIDE_IMAGE);
    if (side < 0) return send_error(c, 400, "to must be images or captions");
    if (duet_index_count(s->ix, side) == 0) return send_error(c, 400, "the index holds no captions");
    duet_error e = {0};
    duet_image im = {0};
    if (duet_image_decode(rq->body, rq->len, "upload", &im, &e)) return send_error(c, 400, e.msg);
    size_t d = duet_index_dim(s->ix);
    float *emb = duet_alloc_array(d, sizeof(float));
    if (!emb) { duet_image_free(&im); return send_error(c, 500, "out of memory"); }
    const duet_image *ip = &im;
    pthread_mutex_lock(&s->cnn_lock);
    int have = s->enc.cnn != NULL;
    duet_status st = have ? duet_query_encode_images(&s->enc, &ip, 1, emb, &e) : DUET_OK;
    pthread_mutex_unlock(&s->cnn_lock);
    if (!have) {
        duet_image_free(&im); free(emb);
        return send_error(c, 503, "image queries are off (no CNN loaded, or still loading)");
    }
    json_t *o = json_pack("{s:I, s:I}", "width", (json_int_t)im.width, "height", (json_int_t)im.height);
    duet_image_free(&im);
    if (st) { free(emb); json_decref(o); return send_error(c, 400, e.msg); }
    enum MHD_Result r = answer_hits(s, c, emb, k, side, o, t0);
    free(emb);
    return r;
}

static const char *content_type(const char *name) {
    const char *d = strrchr(name, '.');
    if (!d) return "application/octet-stream";
    if (!strcasecmp(d, ".jpg") || !strcasecmp(d, ".jpeg")) return "image/jpeg";
    if (!strcasecmp(d, ".png")) return "image/png";
    if (!strcasecmp(d, ".bmp")) return "image/bmp";
    return "application/octet-stream";
}

/* The file of gallery image name: only names in the index, below
 * image_root. 0 with path set, or the HTTP status to answer with *why. */
static unsigned gallery_path(const duet_server *s, const char *name, char *path, size_t cap, const char **why) {
    const char *root = duet_index_meta_of(s->ix).image_root;
    if (!*name || strstr(name, "..") || name[0] == '/' || strchr(name, '\\')) { *why = "bad image name"; return 400; }
    if (duet_index_find_image(s->ix, name) == (size_t)-1) { *why = "no such gallery image"; return 404; }
    if (!root) { *why = "the index records no image directory"; return 404; }
    if ((size_t)snprintf(path, cap, "%s/%s", root, name) >= cap) { *why = "no such gallery image"; return 404; }
    return 0;
}

/* /images/NAME */
static enum MHD_Result get_image(duet_server *s, struct MHD_Connection *c, const char *name) {
    char path[8192];
    const char *why = NULL;
    unsigned code = gallery_path(s, name, path, sizeof path, &why);
    if (code) return send_error(c, code, why);
    int fd = open(path, O_RDONLY);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        if (fd >= 0) close(fd);
        return send_error(c, 404, "gallery image file is missing");
    }
    struct MHD_Response *r = MHD_create_response_from_fd((size_t)sb.st_size, fd);
    if (!r) { close(fd); return MHD_NO; }
    MHD_add_response_header(r, "Content-Type", content_type(name));
    MHD_add_response_header(r, "Cache-Control", "max-age=3600");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

/* /api/localize?name=NAME&q=PHRASE[&k=]: the boxes of a gallery image that
 * best match the phrase (duet_regions_localize, contrast score): proposals,
 * one CNN pass, the image branch on every region. */
static enum MHD_Result api_localize(duet_server *s, struct MHD_Connection *c) {
    double t0 = duet_now();
    const char *q = NULL, *name = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "name"), *why = NULL;
    size_t qlen = 0, k;
    if (MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, "q", 1, &q, &qlen) != MHD_YES || !q || !name)
        return send_error(c, 400, "missing parameter q or name");
    if (qlen == 0 || qlen > MAX_QUERY_BYTES) return send_error(c, 400, "q must hold 1 to 2000 bytes");
    if (memchr(q, '\0', qlen) || !duet_utf8_valid(q, qlen)) return send_error(c, 400, "q is not valid UTF-8 text");
    if (!MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "k")) k = 3;
    else if (parse_k(s, c, &k, &why)) return send_error(c, 400, why);
    char path[8192];
    unsigned code = gallery_path(s, name, path, sizeof path, &why);
    if (code) return send_error(c, code, why);
    duet_error e = {0};
    duet_image im = {0};
    if (duet_image_read(path, &im, &e)) return send_error(c, 404, "gallery image file is missing or unreadable");
    duet_regions reg = {0};
    pthread_mutex_lock(&s->cnn_lock);
    int have = s->enc.cnn != NULL;
    duet_status st = have ? duet_regions_embed(&s->enc, &im, NULL, &reg, &e) : DUET_OK;
    pthread_mutex_unlock(&s->cnn_lock);
    size_t w = im.width, h = im.height;
    duet_image_free(&im);
    if (!have) return send_error(c, 503, "localization is off (no CNN loaded, or still loading)");
    if (st) return send_error(c, 500, e.msg);
    duet_hit *hits = duet_alloc_array(k, sizeof *hits);
    size_t nh = 0;
    if (!hits) { duet_regions_free(&reg); return send_error(c, 500, "out of memory"); }
    st = duet_regions_localize(&s->enc, &reg, q, DUET_SCORE_CONTRAST, k, hits, &nh, &e);
    if (st) {
        free(hits); duet_regions_free(&reg);
        return send_error(c, st == DUET_ERR_INVALID_ARG ? 400 : 500, e.msg);
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < nh; i++) {
        const duet_box *b = &reg.boxes[hits[i].index];
        json_array_append_new(arr, json_pack("{s:I, s:f, s:[f,f,f,f]}", "rank", (json_int_t)(i + 1), "score",
                                             (double)hits[i].score, "box", b->x0, b->y0, b->x1, b->y1));
    }
    json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:o, s:f}", "name", name, "query", q, "width", (json_int_t)w,
                          "height", (json_int_t)h, "proposals", (json_int_t)reg.n, "boxes", arr, "took_ms",
                          (duet_now() - t0) * 1e3);
    free(hits);
    duet_regions_free(&reg);
    return send_json(c, 200, o);
}

static enum MHD_Result health(duet_server *s, struct MHD_Connection *c) {
    duet_index_meta m = duet_index_meta_of(s->ix);
    pthread_mutex_lock(&s->cnn_lock);
    int have = s->enc.cnn != NULL;
    pthread_mutex_unlock(&s->cnn_lock);
    json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:b, s:I, s:I}", "status", "ok", "duet_version",
                          DUET_VERSION_STRING, "images", (json_int_t)duet_index_count(s->ix, 0), "captions",
                          (json_int_t)duet_index_count(s->ix, 1), "dim", (json_int_t)duet_index_dim(s->ix),
                          "image_queries", have, "max_k", (json_int_t)s->p.max_k,
                          "max_body", (json_int_t)s->p.max_body);
    json_object_set_new(o, "model", m.model ? json_string(m.model) : json_null());
    json_object_set_new(o, "image_model", m.image_model ? json_string(m.image_model) : json_null());
    json_object_set_new(o, "index_precision", m.precision ? json_string(m.precision) : json_null());
    json_object_set_new(o, "index_isa", m.isa ? json_string(m.isa) : json_null());
    json_object_set_new(o, "precision", json_string(duet_precision_name(duet_searcher_precision(s->search[0]))));
    json_object_set_new(o, "isa", json_string(duet_cpu_isa()));
    return send_json(c, 200, o);
}

/* The MHD access handler: cls is the duet_server, *con_cls our req. */
static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    duet_server *s = cls;
    req *rq = *con_cls;
    int post = strcmp(method, "POST") == 0;
    if (!rq) {
        rq = calloc(1, sizeof *rq);
        if (!rq) return MHD_NO;
        *con_cls = rq;
        /* headers that dribbled in for longer than the request timeout */
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        conn_ctx *cc = ci ? ci->socket_context : NULL;
        if (cc && duet_now() - cc->start > s->p.request_timeout)
            return send_error(c, 408, "request took too long");
        if (post) {
            if (strcmp(url, "/api/search-image") != 0) return send_error(c, 404, "not found");
            const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
            if (cl) {
                char *end;
                errno = 0;
                unsigned long long n = strtoull(cl, &end, 10);
                if (errno || *end || n > s->p.max_body)
                    return send_error(c, 413, "image body over the size cap");
            }
            return MHD_YES;
        }
    }
    if (post) {
        if (*upload_size) {
            const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
            conn_ctx *cc = ci ? ci->socket_context : NULL;
            if (cc && duet_now() - cc->start > s->p.request_timeout) return MHD_NO; /* close: too slow */
            size_t n = *upload_size;
            *upload_size = 0;
            if (rq->too_big || n > s->p.max_body - rq->len) { rq->too_big = 1; return MHD_YES; }
            if (rq->len + n > rq->cap) {
                size_t cap = rq->cap ? rq->cap : 65536;
                while (cap < rq->len + n) cap *= 2;
                if (cap > s->p.max_body) cap = s->p.max_body;
                char *b = realloc(rq->body, cap);
                if (!b) return MHD_NO;
                rq->body = b; rq->cap = cap;
            }
            memcpy(rq->body + rq->len, upload, n);
            rq->len += n;
            return MHD_YES;
        }
        return api_search_image(s, c, rq);
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) return send_error(c, 405, "method not allowed");
    if (!strcmp(url, "/") || !strcmp(url, "/index.html"))
        return send_text(c, 200, "text/html; charset=utf-8", duet_www_index_html, strlen(duet_www_index_html));
    if (!strcmp(url, "/api/health")) return health(s, c);
    if (!strcmp(url, "/api/search")) return api_search(s, c);
    if (!strcmp(url, "/api/localize")) return api_localize(s, c);
    if (!strncmp(url, "/images/", 8)) return get_image(s, c, url + 8);
    return send_error(c, 404, "not found");
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
    req *rq = *con_cls;
    if (rq) { free(rq->body); free(rq); *con_cls = NULL; }
    /* a keep-alive connection's next request starts now */
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    conn_ctx *cc = ci ? ci->socket_context : NULL;
    if (cc) cc->start = duet_now();
}

static void conn_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                        enum MHD_ConnectionNotificationCode toe) {
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        conn_ctx *cc = malloc(sizeof *cc);
        if (cc) cc->start = duet_now();
        *socket_context = cc;
    } else {
        free(*socket_context);
        *socket_context = NULL;
    }
}

/* p, ix, enc: borrowed, must outlive the server. */
duet_status duet_server_start(const duet_serve_params *p, const duet_index *ix, const duet_query_encoder *enc,
                              duet_server **out, duet_error *err) {
    *out = NULL;
    if (!p || !ix || !enc) return duet_fail(err, DUET_ERR_INVALID_ARG, "serve: params, index and encoder are required");
    if (p->port < 0 || p->port > 65535) return duet_fail(err, DUET_ERR_INVALID_ARG, "serve: port %d is outside 0..65535", p->port);
    if (p->threads < 1 || p->threads > 256) return duet_fail(err, DUET_ERR_INVALID_ARG, "serve: threads %d is outside 1..256", p->threads);
    if (!p->max_k || !p->default_k || p->default_k > p->max_k || !p->max_body || !p->idle_timeout ||
        !p->request_timeout || !p->max_connections)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "serve: max_k, default_k (<= max_k), max_body, timeouts and "
                         "max_connections must be positive");
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
    for (int side = 0; side < 2; side++) {
        duet_mat g = duet_index_embeddings(ix, side);
        duet_status st = duet_searcher_new(&g, p->precision, &s->search[side], err);
        if (st) {
            duet_searcher_free(s->search[0]);
            free(s);
            return st;
        }
    }
    pthread_mutex_init(&s->cnn_lock, NULL);
    s->d = MHD_start_daemon(MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, handle, s,
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
        pthread_mutex_destroy(&s->cnn_lock);
        duet_searcher_free(s->search[0]);
        duet_searcher_free(s->search[1]);
        free(s);
        return duet_fail(err, DUET_ERR_IO, "serve: cannot listen on %s:%d (in use, or not allowed)", host, p->port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? (int)di->port : p->port;
    *out = s;
    return DUET_OK;
}

int duet_server_port(const duet_server *s) { return s->port; }

/* cnn: borrowed, must outlive the server (or a later call replacing it). */
void duet_server_set_cnn(duet_server *s, duet_cnn *cnn, int crops) {
    pthread_mutex_lock(&s->cnn_lock);
    s->enc.cnn = cnn;
    s->enc.crops = crops;
    pthread_mutex_unlock(&s->cnn_lock);
}

void duet_server_stop(duet_server *s) {
    if (!s) return;
    MHD_stop_daemon(s->d);
    pthread_mutex_destroy(&s->cnn_lock);
    duet_searcher_free(s->search[0]);
    duet_searcher_free(s->search[1]);
    free(s);
}
