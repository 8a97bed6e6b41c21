/* api.c -- the endpoints of `duet serve` (docs/SEARCH.md): arguments,
 * admission to a queue, the job prepared on the MHD thread, and the answer
 * once the worker has done it (serve.h: a request's life). */
#define _POSIX_C_SOURCE 200809L
#include "serve/serve.h"
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------ arguments */

/* Strict k: digits only, 1..max_k; absent: dflt. 0 or -1 with *why. */
static int parse_k(const duet_server *s, struct MHD_Connection *c, size_t dflt, size_t *k, const char **why) {
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "k");
    if (!v) { *k = dflt; return 0; }
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

/* q: 1..2000 bytes of valid UTF-8 without NUL. NULL with *why. */
static const char *parse_q(struct MHD_Connection *c, const char **why) {
    const char *q = NULL;
    size_t qlen = 0;
    if (MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, "q", 1, &q, &qlen) != MHD_YES || !q) {
        *why = "missing parameter q";
        return NULL;
    }
    if (qlen == 0 || qlen > MAX_QUERY_BYTES) { *why = "q must hold 1 to 2000 bytes"; return NULL; }
    if (memchr(q, '\0', qlen) || !duet_utf8_valid(q, qlen)) { *why = "q is not valid UTF-8 text"; return NULL; }
    return q;
}

/* ------------------------------------------------------------ jobs */

/* A job for rq with k hits; NULL when out of memory. */
static job *job_new(duet_server *s, req *rq, int type, size_t k, int side, size_t input_floats) {
    job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->type = type;
    j->k = k;
    j->side = side;
    j->deadline = rq->t0 + s->p.deadline;
    j->hits = duet_alloc_array(k, sizeof *j->hits);
    j->input = input_floats ? duet_alloc_array(input_floats, sizeof(float)) : NULL;
    if (!j->hits || (input_floats && !j->input)) { job_free(j); return NULL; }
    return j;
}

/* Hands the prepared job to its queue and suspends the connection. */
static enum MHD_Result submit(duet_server *s, struct MHD_Connection *c, req *rq, int kind, job *j) {
    rq->jb = j;
    rq->kind = -1; /* the place is the job's now (or released on refusal) */
    if (queue_submit(s, kind, j, c)) return send_busy(c, rq, "the server is shutting down");
    return MHD_YES;
}

/* The answer of a done job: its error, or fields set by the caller in o. */
static int job_failed(struct MHD_Connection *c, req *rq, enum MHD_Result *r) {
    job *j = rq->jb;
    if (!j->code) return 0;
    *r = j->code == 503 ? send_busy(c, rq, j->msg) : send_error(c, rq, j->code, j->msg);
    return 1;
}

static void add_timing(json_t *o, const req *rq, const job *j) {
    json_object_set_new(o, "took_ms", json_real((duet_now() - rq->t0) * 1e3));
    json_object_set_new(o, "queue_ms", json_real(j->wait_ms));
    json_object_set_new(o, "batch", json_integer((json_int_t)j->batch));
}

/* Hits of a search job as JSON into o (which it takes). */
static enum MHD_Result answer_hits(duet_server *s, struct MHD_Connection *c, req *rq, json_t *o) {
    job *j = rq->jb;
    json_t *arr = json_array();
    for (size_t i = 0; i < j->got; i++) {
        const char *t = j->texts ? j->texts[i] : duet_index_text(s->ix, j->side, j->hits[i].index);
        /* unit vectors: a cosine, whose float rounding may pass 1 by an ulp */
        double sc = j->hits[i].score > 1 ? 1 : j->hits[i].score < -1 ? -1 : j->hits[i].score;
        json_t *r = json_pack("{s:I, s:I, s:f}", "rank", (json_int_t)(i + 1), "index",
                              (json_int_t)j->hits[i].index, "score", sc);
        json_object_set_new(r, j->side == DUET_SIDE_IMAGE ? "name" : "text", json_string(t));
        json_array_append_new(arr, r);
    }
    json_object_set_new(o, "to", json_string(j->side == DUET_SIDE_IMAGE ? "images" : "captions"));
    json_object_set_new(o, "k", json_integer((json_int_t)j->k));
    json_object_set_new(o, "score", json_string("cosine"));
    add_timing(o, rq, j);
    json_object_set_new(o, "results", arr);
    return send_json(c, rq, 200, o);
}

/* ------------------------------------------------------------ endpoints */

enum MHD_Result api_search(duet_server *s, struct MHD_Connection *c, req *rq) {
    const char *why = NULL, *q = parse_q(c, &why);
    enum MHD_Result r;
    if (rq->jb) {
        if (job_failed(c, rq, &r)) return r;
        return answer_hits(s, c, rq, json_pack("{s:s, s:b}", "query", q ? q : "", "no_known_word",
                                               rq->jb->flag & DUET_TEXT_FLAG_EMPTY));
    }
    size_t k;
    if (!q) return send_error(c, rq, 400, why);
    if (parse_k(s, c, s->p.default_k, &k, &why)) return send_error(c, rq, 400, why);
    int side = parse_side(c, DUET_SIDE_IMAGE);
    if (side < 0) return send_error(c, rq, 400, "to must be images or captions");
    if (duet_index_total(s->ix, side) == 0)
        return send_error(c, rq, 400, side == DUET_SIDE_TEXT ? "the index holds no captions" : "the index holds no images");
    if (queue_reserve(s, KIND_TEXT)) return send_busy(c, rq, "the text queue is full: retry later");
    rq->kind = KIND_TEXT;
    job *j = job_new(s, rq, JOB_TEXT, k, side, duet_textmodel_dim(s->enc.textmodel));
    if (!j) return send_error(c, rq, 500, "out of memory");
    duet_error e = {0};
    if (duet_query_text_features(&s->enc, q, j->input, &j->flag, &e)) {
        job_free(j);
        return send_error(c, rq, 500, e.msg);
    }
    return submit(s, c, rq, KIND_TEXT, j);
}

/* The encoder's CNN and crops as they are now (set while serving). */
static duet_query_encoder current_enc(duet_server *s) {
    pthread_mutex_lock(&s->cnn_lock);
    duet_query_encoder e = s->enc;
    pthread_mutex_unlock(&s->cnn_lock);
    return e;
}

enum MHD_Result api_search_image(duet_server *s, struct MHD_Connection *c, req *rq) {
    enum MHD_Result r;
    if (rq->jb) {
        if (job_failed(c, rq, &r)) return r;
        return answer_hits(s, c, rq, json_pack("{s:I, s:I}", "width", (json_int_t)rq->jb->width, "height",
                                               (json_int_t)rq->jb->height));
    }
    const char *why = NULL;
    size_t k;
    if (rq->too_big) return send_error(c, rq, 413, "image body over the size cap");
    if (rq->len == 0) return send_error(c, rq, 400, "empty body: POST the image bytes (JPEG, PNG or BMP)");
    if (parse_k(s, c, s->p.default_k, &k, &why)) return send_error(c, rq, 400, why);
    int side = parse_side(c, duet_index_total(s->ix, DUET_SIDE_TEXT) ? DUET_SIDE_TEXT : DUET_SIDE_IMAGE);
    if (side < 0) return send_error(c, rq, 400, "to must be images or captions");
    if (duet_index_total(s->ix, side) == 0)
        return send_error(c, rq, 400, side == DUET_SIDE_TEXT ? "the index holds no captions" : "the index holds no images");
    duet_query_encoder enc = current_enc(s);
    if (!enc.cnn) return send_busy(c, rq, "image queries are off (no CNN loaded, or still loading)");
    duet_error e = {0};
    duet_image im = {0};
    duet_status st = duet_image_decode(rq->body, rq->len, "upload", &im, &e);
    free(rq->body);
    rq->body = NULL;
    rq->len = rq->cap = 0;
    if (st) return send_error(c, rq, 400, e.msg);
    job *j = job_new(s, rq, JOB_IMAGE, k, side, duet_query_image_input_floats(&enc));
    if (!j) { duet_image_free(&im); return send_error(c, rq, 500, "out of memory"); }
    j->width = im.width;
    j->height = im.height;
    j->crops = enc.crops;
    st = duet_query_image_input(&enc, &im, j->input, &e);
    duet_image_free(&im);
    if (st) { job_free(j); return send_error(c, rq, 400, e.msg); }
    return submit(s, c, rq, KIND_IMAGE, j);
}

/* The file of gallery image name: only names in the index, below
 * image_root. 0 with path set, or the HTTP status to answer with *why. */
static unsigned gallery_path(const duet_server *s, const char *name, char *path, size_t cap, const char **why) {
    const char *root = duet_index_meta_of(s->ix).image_root;
    if (!*name || strstr(name, "..") || name[0] == '/' || strchr(name, '\\')) { *why = "bad image name"; return 400; }
    if (duet_index_find_image(gallery_names(s), name) == (size_t)-1) { *why = "no such gallery image"; return 404; }
    if (!root) { *why = "the index records no image directory"; return 404; }
    if ((size_t)snprintf(path, cap, "%s/%s", root, name) >= cap) { *why = "no such gallery image"; return 404; }
    return 0;
}

/* /api/localize?name=NAME&q=PHRASE[&k=]: the boxes of a gallery image that
 * best match the phrase (duet_regions_localize, contrast score), computed
 * by the image worker: proposals, one CNN pass, the image branch on every
 * region. */
enum MHD_Result api_localize(duet_server *s, struct MHD_Connection *c, req *rq) {
    const char *why = NULL, *q = parse_q(c, &why), *name = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "name");
    enum MHD_Result r;
    job *j = rq->jb;
    if (j) {
        if (job_failed(c, rq, &r)) return r;
        json_t *arr = json_array();
        for (size_t i = 0; i < j->got; i++) {
            const duet_box *b = &j->boxes[i];
            json_array_append_new(arr, json_pack("{s:I, s:f, s:[f,f,f,f]}", "rank", (json_int_t)(i + 1), "score",
                                                 (double)j->hits[i].score, "box", b->x0, b->y0, b->x1, b->y1));
        }
        json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:s, s:o}", "name", name, "query", q, "width",
                              (json_int_t)j->width, "height", (json_int_t)j->height, "proposals",
                              (json_int_t)j->proposals, "score", "contrast", "boxes", arr);
        add_timing(o, rq, j);
        return send_json(c, rq, 200, o);
    }
    size_t k;
    if (!name || (!q && !strncmp(why, "missing", 7))) return send_error(c, rq, 400, "missing parameter q or name");
    if (!q) return send_error(c, rq, 400, why);
    if (parse_k(s, c, 3, &k, &why)) return send_error(c, rq, 400, why);
    char path[8192];
    unsigned code = gallery_path(s, name, path, sizeof path, &why);
    if (code) return send_error(c, rq, code, why);
    if (!current_enc(s).cnn) return send_busy(c, rq, "localization is off (no CNN loaded, or still loading)");
    if (queue_reserve(s, KIND_IMAGE)) return send_busy(c, rq, "the image queue is full: retry later");
    rq->kind = KIND_IMAGE;
    if (!(j = job_new(s, rq, JOB_LOCALIZE, k, 0, 0))) return send_error(c, rq, 500, "out of memory");
    duet_error e = {0};
    if (duet_image_read(path, &j->im, &e)) {
        job_free(j);
        return send_error(c, rq, 404, "gallery image file is missing or unreadable");
    }
    j->width = j->im.width;
    j->height = j->im.height;
    j->q = q;
    return submit(s, c, rq, KIND_IMAGE, j);
}

enum MHD_Result api_health(duet_server *s, struct MHD_Connection *c, req *rq) {
    duet_index_meta m = duet_index_meta_of(s->ix);
    int have = current_enc(s).cnn != NULL;
    json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:b, s:I, s:I}", "status", "ok", "duet_version",
                          DUET_VERSION_STRING, "images", (json_int_t)duet_index_total(s->ix, 0), "captions",
                          (json_int_t)duet_index_total(s->ix, 1), "dim", (json_int_t)duet_index_dim(s->ix),
                          "image_queries", have, "max_k", (json_int_t)s->p.max_k,
                          "max_body", (json_int_t)s->p.max_body);
    json_object_set_new(o, "model", m.model ? json_string(m.model) : json_null());
    json_object_set_new(o, "image_model", m.image_model ? json_string(m.image_model) : json_null());
    json_object_set_new(o, "index_precision", m.precision ? json_string(m.precision) : json_null());
    json_object_set_new(o, "index_isa", m.isa ? json_string(m.isa) : json_null());
    json_object_set_new(o, "precision", json_string(duet_precision_name(duet_searcher_precision(s->search[0]))));
    json_object_set_new(o, "isa", json_string(duet_cpu_isa()));
    json_object_set_new(o, "score", json_string("cosine"));
    /* who searches: the index's shard files and the processes (MPI ranks)
     * they are split between (1: this process holds every row) */
    json_object_set_new(o, "shards", json_integer((json_int_t)duet_index_shards(s->ix)));
    json_object_set_new(o, "ranks", json_integer((json_int_t)(s->ranks > 1 ? s->ranks : 1)));
    duet_query_encoder enc = current_enc(s);
    if (enc.model) {   /* what the page says it serves: one model or an ensemble */
        char desc[256];
        duet_model_describe(enc.model, desc, sizeof desc);
        json_object_set_new(o, "model_description", json_string(desc));
        json_object_set_new(o, "model_members", json_integer((json_int_t)duet_model_members(enc.model)));
    }
    return send_json(c, rq, 200, o);
}

static const char *content_type(const char *name) {
    const char *d = strrchr(name, '.');
    if (!d) return "application/octet-stream";
    if (!strcasecmp(d, ".jpg") || !strcasecmp(d, ".jpeg")) return "image/jpeg";
    if (!strcasecmp(d, ".png")) return "image/png";
    if (!strcasecmp(d, ".bmp")) return "image/bmp";
    return "application/octet-stream";
}

/* /images/NAME */
enum MHD_Result api_image_file(duet_server *s, struct MHD_Connection *c, req *rq, const char *name) {
    char path[8192];
    const char *why = NULL;
    unsigned code = gallery_path(s, name, path, sizeof path, &why);
    if (code) return send_error(c, rq, code, why);
    int fd = open(path, O_RDONLY);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        if (fd >= 0) close(fd);
        return send_error(c, rq, 404, "gallery image file is missing");
    }
    struct MHD_Response *r = MHD_create_response_from_fd((size_t)sb.st_size, fd);
    if (!r) { close(fd); return MHD_NO; }
    MHD_add_response_header(r, "Content-Type", content_type(name));
    MHD_add_response_header(r, "Cache-Control", "max-age=3600");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    if (ret == MHD_YES) rq->code = 200;
    return ret;
}
