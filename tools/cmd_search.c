/* cmd_search.c -- search subcommands (docs/SEARCH.md):
 *   duet index build --model M --textmodel T (--images DIR | --image-features
 *                    I.npy --names N [--image-root DIR]) [--captions FILE]
 *                    [--shards S] -o X
 *   duet search --index X [-k 10] [--json] [--to images|captions] QUERY...
 *   mpirun -np S duet search --index X ...   (a sharded index: a shard a rank)
 *   duet search --index X --image photo.jpg ...     (nearest captions)
 * Queries are encoded with the model and text model the index records (the
 * text model's hash must match the one the model was trained with). */
#define _XOPEN_SOURCE 700
#include "cli.h"
#include "core/core.h"
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- shared */

/* Lines of a UTF-8 file (blank lines and a trailing \r dropped): *lines
 * point into *buf (caller frees both with free()). 0 or 1 after a message. */
static int read_lines(const char *cmd, const char *path, char **buf, char ***lines, size_t *n) {
    duet_error e = {0};
    size_t len;
    *lines = NULL; *n = 0;
    if (duet_read_file(path, (size_t)1 << 32, buf, &len, &e)) return fail(cmd, &e);
    size_t cap = 1;
    for (size_t i = 0; i < len; i++) cap += (*buf)[i] == '\n';
    *lines = calloc(cap, sizeof **lines);
    if (!*lines) { free(*buf); *buf = NULL; fprintf(stderr, "duet %s: out of memory\n", cmd); return 1; }
    for (char *s = *buf, *end = *buf + len; s < end;) {
        char *nl = memchr(s, '\n', (size_t)(end - s));
        char *stop = nl ? nl : end;
        *stop = '\0';
        if (stop > s && stop[-1] == '\r') stop[-1] = '\0';
        if (*s) {
            if (!duet_utf8_valid(s, strlen(s)) || strlen(s) > DUET_INDEX_MAX_TEXT) {
                fprintf(stderr, "duet %s: %s: line %zu is not valid UTF-8 or longer than %d bytes\n", cmd, path,
                        (size_t)(stop - *buf) ? *n + 1 : 1, DUET_INDEX_MAX_TEXT);
                free(*lines); free(*buf); *lines = NULL; *buf = NULL;
                return 1;
            }
            (*lines)[(*n)++] = s;
        }
        s = stop + 1;
    }
    return 0;
}

static char *hash_of(const char *path, char out[32], duet_error *e) {
    char hex[17];
    if (duet_file_hash(path, hex, e)) return NULL;
    snprintf(out, 32, "fnv1a64:%s", hex);
    return out;
}

/* "resnet50 crops=10" -> name and crops; NULL -> resnet50, 1. */
static void parse_image_model(const char *s, char name[64], int *crops) {
    snprintf(name, 64, "resnet50");
    *crops = 1;
    if (!s || !*s) return;
    size_t l = strcspn(s, " ");
    if (l && l < 64) { memcpy(name, s, l); name[l] = '\0'; }
    const char *c = strstr(s, "crops=");
    if (c && atoi(c + 6) == 10) *crops = 10;
}

void ctx_free(search_ctx *c) {
    duet_index_free(c->ix);
    duet_model_free(c->model);
    duet_textmodel_free(c->tm);
    duet_cnn_free(c->cnn);
    memset(c, 0, sizeof *c);
}

/* Loads the CNN the index (or model) records into c->cnn and c->enc;
 * required: a missing or mismatched CNN is an error, else a warning. */
/* Declared in cli.h. */
int load_cnn(const char *cmd, search_ctx *c, const char *weights, int required, int regions) {
    duet_error e = {0};
    char name[64];
    const char *rec = c->ix && duet_index_meta_of(c->ix).image_model ? duet_index_meta_of(c->ix).image_model
                                                                     : duet_model_info_of(c->model)->image_model;
    parse_image_model(rec, name, &c->enc.crops);
    model_paths mp;
    int rc = resolve_model(cmd, name, weights, NULL, &mp);
    mp.prec = c->prec;
    if (!rc && load_net(&mp, &c->cnn, &e)) rc = fail(cmd, &e);
    if (rc) {
        if (required) return rc;
        fprintf(stderr, "duet %s: image queries are off (no CNN '%s')\n", cmd, name);
        return 0;
    }
    size_t fd = duet_cnn_feature_dim(c->cnn), md = duet_model_dim(c->model, DUET_SIDE_IMAGE);
    if (fd != md && !(regions && fd + DUET_BOX_GEOMETRY == md)) {
        fprintf(stderr, "duet %s: the CNN '%s' gives %zu-D features, the model's image branch takes %zu\n",
                cmd, name, duet_cnn_feature_dim(c->cnn), duet_model_dim(c->model, DUET_SIDE_IMAGE));
        duet_cnn_free(c->cnn);
        c->cnn = NULL;
        if (required) return 1;
    }
    c->enc.cnn = c->cnn;
    return 0;
}

/* Declared in cli.h. */
int load_encoders(const char *cmd, search_ctx *c, const char *model, const char *textmodel,
                  int want_cnn, const char *weights) {
    duet_error e = {0};
    duet_index_meta im = c->ix ? duet_index_meta_of(c->ix) : (duet_index_meta){0};
    if (!model) model = im.model;
    if (!model) { fprintf(stderr, "duet %s: the index records no model: pass --model\n", cmd); return 1; }
    char mh[32], th[32];
    if (duet_model_load(model, &c->model, &e) || !hash_of(model, mh, &e) ||
        duet_model_set_precision(c->model, c->prec, &e))
        return fail(cmd, &e);
    duet_model_info *info = duet_model_info_of(c->model);
    if (!textmodel) textmodel = im.text_model ? im.text_model : info->text_model;
    if (!textmodel) {
        fprintf(stderr, "duet %s: neither the index nor the model records a text model: pass --textmodel\n", cmd);
        return 1;
    }
    if (duet_textmodel_load(textmodel, &c->tm, &e) || !hash_of(textmodel, th, &e)) return fail(cmd, &e);
    if (c->ix) {
        if (duet_query_check(c->ix, c->model, mh, c->tm, th, &e)) return fail(cmd, &e);
    } else {
        const char *rec = info->text_model_hash;
        if (rec && strcmp(rec, th) != 0) {
            fprintf(stderr, "duet %s: %s has hash %s, but %s was trained on captions encoded by %s (%s): "
                    "pass that text model\n", cmd, textmodel, th, model, info->text_model ? info->text_model : "?", rec);
            return 1;
        }
        if (duet_textmodel_dim(c->tm) != duet_model_dim(c->model, DUET_SIDE_TEXT)) {
            fprintf(stderr, "duet %s: %s encodes %zu dimensions, the model's text branch takes %zu\n", cmd,
                    textmodel, duet_textmodel_dim(c->tm), duet_model_dim(c->model, DUET_SIDE_TEXT));
            return 1;
        }
    }
    c->enc = (duet_query_encoder){c->model, c->tm, NULL, 1};
    return want_cnn ? load_cnn(cmd, c, weights, 1, want_cnn == LOAD_CNN_REGIONS) : 0;
}

/* ---------------------------------------------------------------- index */

/* CNN features of the images in dir (names sorted), embedded: *emb
 * [*n x embed_dim] (caller frees); names kept in *names. */
static int embed_image_dir(const char *cmd, search_ctx *c, const char *dir, char **names, size_t n,
                           float *emb, size_t *kept_out) {
    duet_error e = {0};
    enum { BATCH = 8 };
    duet_image ims[BATCH];
    const duet_image *ip[BATCH];
    size_t idx[BATCH], kept = 0, de = duet_model_embed_dim(c->model);
    int tty = isatty(2);
    double t0 = now_seconds();
    for (size_t i = 0; i < n;) {
        size_t m = 0;
        for (; i < n && m < BATCH; i++) {
            char p[8192];
            snprintf(p, sizeof p, "%s/%s", dir, names[i]);
            if (duet_image_read(p, &ims[m], &e)) { fprintf(stderr, "%sduet %s: skipping %s\n", tty ? "\n" : "", cmd, e.msg); continue; }
            ip[m] = &ims[m];
            idx[m++] = i;
        }
        duet_status st = m ? duet_query_encode_images(&c->enc, ip, m, emb + kept * de, &e) : DUET_OK;
        for (size_t k = 0; k < m; k++) duet_image_free(&ims[k]);
        if (st) return fail(cmd, &e);
        for (size_t k = 0; k < m; k++) {
            if (kept != idx[k]) { char *t = names[kept]; names[kept] = names[idx[k]]; names[idx[k]] = t; }
            kept++;
        }
        if (tty) {
            double el = now_seconds() - t0;
            fprintf(stderr, "\rindex: %zu/%zu images  %.1f images/s   ", i, n, el > 0 ? (double)i / el : 0.0);
        }
    }
    if (tty) fputc('\n', stderr);
    *kept_out = kept;
    return 0;
}

static int index_build(int argc, char **argv) {
    const char *C = "index build";
    const char *model = NULL, *textmodel = NULL, *images = NULL, *feats = NULL, *names_path = NULL,
               *root = NULL, *captions = NULL, *out = NULL, *weights = NULL, *prec = NULL;
    int threads = 0, use_cnn = 0;
    size_t shards = 1;
    flag flags[] = {
        {"precision", F_STR, &prec, PRECISION_HELP},
        {"model", F_STR, &model, "trained model file (duet train)"},
        {"textmodel", F_STR, &textmodel, "text model the model was trained with (hash checked)"},
        {"images", F_STR, &images, "directory of gallery images (the CNN the model records runs on them)"},
        {"image-features", F_STR, &feats, "or: CNN features of the gallery [n x d] (.npy)"},
        {"names", F_STR, &names_path, "with --image-features: image names, one a line, in row order"},
        {"image-root", F_STR, &root, "directory the served images live in; unset: --images"},
        {"captions", F_STR, &captions, "captions to index too, one a line (for image -> caption search)"},
        {"weights", F_STR, &weights, "CNN weights file; unset: the default for the model's CNN"},
        {"threads", F_INT, &threads, "OpenBLAS and oneDNN threads (0: their default)"},
        {"shards", F_SIZE, &shards, "write the gallery as this many shard files OUT.I-of-S and a manifest at OUT "
                                    "(searched by `mpirun -np S duet search`, or whole by one process)"},
        {"out", F_STR, &out, "index file to write (-o)"},
        {0}};
    const char *pos[1];
    int npos, rc = parse_flags(C, "--model M --textmodel T (--images DIR | --image-features I.npy --names N) "
                               "[--captions FILE] -o gallery.index", argc, argv, flags, pos, 0, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    if ((rc = need(C, model, "model")) || (rc = need(C, textmodel, "textmodel")) || (rc = need(C, out, "out")))
        return rc;
    if (!images == !feats) return usage_error(C, "give exactly one of --images and --image-features");
    if (feats && !names_path) return usage_error(C, "--image-features needs --names");
    if (threads < 0) return usage_error(C, "--threads must be >= 0");
    if (shards < 1) return usage_error(C, "--shards must be >= 1");
    if (threads) duet_set_threads(threads);
    use_cnn = images ? LOAD_CNN_IMAGES : LOAD_CNN_NONE;
    search_ctx c = {0};
    if ((rc = get_precision(C, prec, &c.prec))) return rc;
    if ((rc = load_encoders(C, &c, model, textmodel, use_cnn, weights))) { ctx_free(&c); return rc; }
    duet_error e = {0};
    size_t de = duet_model_embed_dim(c.model), n = 0, kept = 0, nc = 0;
    char **names = NULL, *nbuf = NULL, *cbuf = NULL, **caps = NULL;
    float *emb = NULL, *cemb = NULL;
    duet_mat fm = {0};
    int status = 1;
    if (images) {
        if (list_image_dir(C, images, &names, &n)) goto done;
        if (n == 0) { fprintf(stderr, "duet %s: %s holds no .jpg, .jpeg, .png or .bmp files\n", C, images); goto done; }
        if (!(emb = duet_alloc_array(n, de * sizeof(float)))) goto oom;
        if (embed_image_dir(C, &c, images, names, n, emb, &kept)) goto done;
        if (!kept) { fprintf(stderr, "duet %s: no image could be decoded\n", C); goto done; }
    } else {
        if (duet_npy_read(feats, &fm, &e)) { fail(C, &e); goto done; }
        if (read_lines(C, names_path, &nbuf, &names, &n)) goto done;
        if (n != fm.rows) {
            fprintf(stderr, "duet %s: %s has %zu rows, %s %zu names\n", C, feats, fm.rows, names_path, n);
            goto done;
        }
        if (!(emb = duet_alloc_array(n, de * sizeof(float)))) goto oom;
        duet_mat em = {emb, n, de};
        if (duet_mat_check_finite(&fm, feats, &e) || duet_model_embed(c.model, DUET_SIDE_IMAGE, &fm, &em, &e)) {
            fail(C, &e);
            goto done;
        }
        kept = n;
    }
    if (captions) {
        if (read_lines(C, captions, &cbuf, &caps, &nc)) goto done;
        if (!(cemb = duet_alloc_array(nc ? nc : 1, de * sizeof(float)))) goto oom;
        for (size_t i = 0; i < nc; i += 4096) {
            size_t m = nc - i < 4096 ? nc - i : 4096;
            if (duet_query_encode_text(&c.enc, (const char *const *)caps + i, m, cemb + i * de, NULL, &e)) {
                fail(C, &e);
                goto done;
            }
        }
    }
    {
        char mh[32], th[32], rootbuf[PATH_MAX], mbuf[PATH_MAX], tbuf[PATH_MAX];
        const char *r = root ? root : images;
        if (!hash_of(model, mh, &e) || !hash_of(textmodel, th, &e)) { fail(C, &e); goto done; }
        char imodel[128];
        const char *rec = duet_model_info_of(c.model)->image_model;
        if (images) snprintf(imodel, sizeof imodel, "%s", rec ? rec : "resnet50 crops=1");
        duet_index_meta meta = {realpath(model, mbuf) ? mbuf : model, mh,
                                realpath(textmodel, tbuf) ? tbuf : textmodel, th,
                                images ? imodel : rec, r && realpath(r, rootbuf) ? rootbuf : r,
                                duet_precision_name(c.prec), NULL};
        duet_index_rows rows = {de, kept, emb, (const char *const *)names, nc, cemb, (const char *const *)caps};
        if (shards > 1 ? duet_index_write_sharded(out, &meta, &rows, shards, &e)
                       : duet_index_write(out, &meta, &rows, &e)) { fail(C, &e); goto done; }
        printf("%s: %zu images%s%s, %zu captions, %zu-D; model %s (%s)", out, kept,
               kept < n ? " (some skipped)" : "", meta.image_root ? "" : " (no image root: /images/ is off)",
               nc, de, meta.model, mh);
        if (shards > 1) printf("; %zu shards %s.1-of-%zu ..", shards, out, shards);
        printf("\n");
        status = 0;
    }
    goto done;
oom:
    fprintf(stderr, "duet %s: out of memory\n", C);
done:
    if (images && names) for (size_t i = 0; i < n; i++) free(names[i]);
    free(names); free(nbuf); free(cbuf); free(caps); free(emb); free(cemb);
    duet_mat_free(&fm);
    ctx_free(&c);
    return status;
}

int cmd_index(int argc, char **argv) {
    if (argc >= 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
        printf("usage: duet index build [flags]\n\n  build   embed a gallery into an index file "
               "(`duet index build --help`)\n\nflags: see `duet index build --help` (default: shown there)\n");
        return 0;
    }
    if (argc < 1 || strcmp(argv[0], "build") != 0) return usage_error("index", "expected `index build`");
    return index_build(argc - 1, argv + 1);
}

/* ---------------------------------------------------------------- search */

/* The index (under mpirun: this rank's shards of a sharded index); warns
 * about files of the version before checksums. */
int open_index(const char *cmd, const char *path, search_ctx *c) {
    duet_error e = {0};
    duet_comm *comm = cli_comm();
    duet_status st = duet_comm_size(comm) > 1
        ? duet_index_open_part(path, (size_t)duet_comm_rank(comm), (size_t)duet_comm_size(comm), 1, &c->ix, &e)
        : duet_index_open(path, 1, &c->ix, &e);
    if (st) return fail(cmd, &e);
    if (!duet_index_verified(c->ix))
        fprintf(stderr, "duet %s: warning: %s is an index of format version 1, without a checksum: corruption "
                "cannot be detected; build it again to add one\n", cmd, path);
    return 0;
}

/* A rank other than 0 of `mpirun duet search`: searches its shards for the
 * queries rank 0 sends. */
static int search_rank(const char *cmd, search_ctx *c, int side) {
    duet_error e = {0};
    duet_mat gm = duet_index_embeddings(c->ix, side);
    duet_searcher *s = NULL;
    int rc = duet_searcher_new(&gm, c->prec, &s, &e) ||
             duet_search_sharded(cli_comm(), c->ix, s, side, NULL, 0, 0, NULL, NULL, &e);
    if (rc) fail(cmd, &e);
    duet_searcher_free(s);
    ctx_free(c);
    return rc;
}

int cmd_search(int argc, char **argv) {
    const char *C = "search", *index = NULL, *model = NULL, *textmodel = NULL, *to = NULL, *weights = NULL,
               *qfile = NULL;
    const char *image = NULL, *prec = NULL;
    int k = 10, json = 0, threads = 0;
    flag flags[] = {
        {"precision", F_STR, &prec, PRECISION_HELP},
        {"index", F_STR, &index, "index file (duet index build)"},
        {"k", F_INT, &k, "results per query"},
        {"to", F_STR, &to, "images or captions; unset: images for text queries, captions for --image"},
        {"image", F_STR, &image, "query by this image file instead of text (nearest captions)"},
        {"queries", F_STR, &qfile, "a file of text queries, one a line (all searched in one GEMM)"},
        {"json", F_BOOL, &json, "one JSON object per query"},
        {"model", F_STR, &model, "model file; unset: the one the index records"},
        {"textmodel", F_STR, &textmodel, "text model; unset: the one the index records"},
        {"weights", F_STR, &weights, "CNN weights for --image; unset: the default for the model's CNN"},
        {"threads", F_INT, &threads, "OpenBLAS and oneDNN threads (0: their default)"},
        {0}};
    const char *pos[1024];
    int npos, rc = parse_flags(C, "--index X [-k 10] [--json] (QUERY... | --queries FILE | --image FILE)", argc, argv,
                               flags, pos, 1024, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    if ((rc = need(C, index, "index"))) return rc;
    if (k < 1 || k > 100000) return usage_error(C, "-k must be from 1 to 100000");
    if (image && (npos || qfile)) return usage_error(C, "give text queries or --image, not both");
    if (!image && !npos && !qfile) return usage_error(C, "give a QUERY, --queries FILE or --image FILE");
    if (to && strcmp(to, "images") && strcmp(to, "captions")) return usage_error(C, "--to must be images or captions");
    if (threads < 0) return usage_error(C, "--threads must be >= 0");
    if (threads) duet_set_threads(threads);
    int side = to ? (strcmp(to, "images") == 0 ? DUET_SIDE_IMAGE : DUET_SIDE_TEXT)
                  : (image ? DUET_SIDE_TEXT : DUET_SIDE_IMAGE);
    search_ctx c = {0};
    if ((rc = get_precision(C, prec, &c.prec))) return rc;
    double t0 = now_seconds();
    duet_comm *comm = cli_comm();
    int ranks = duet_comm_size(comm);
    if ((rc = open_index(C, index, &c))) { ctx_free(&c); return rc; }
    if (duet_comm_rank(comm) != 0) return search_rank(C, &c, side);
    if ((rc = load_encoders(C, &c, model, textmodel, image ? LOAD_CNN_IMAGES : LOAD_CNN_NONE, weights))) {
        ctx_free(&c);
        return rc;
    }
    if (duet_index_total(c.ix, side) == 0) {
        fprintf(stderr, "duet %s: %s holds no captions (build it with --captions)\n", C, index);
        ctx_free(&c);
        return 1;
    }
    double t_load = now_seconds() - t0;
    duet_error e = {0};
    char *qbuf = NULL, **qlines = NULL;
    const char **queries = pos;
    size_t nq = (size_t)npos, de = duet_index_dim(c.ix);
    int status = 1;
    float *q = NULL;
    duet_hit *hits = NULL;
    uint8_t *flags8 = NULL;
    char **texts = NULL;   /* under mpirun: the hits' names/texts from their ranks */
    if (qfile) {
        if (read_lines(C, qfile, &qbuf, &qlines, &nq)) goto done;
        queries = (const char **)qlines;
        if (!nq) { fprintf(stderr, "duet %s: %s holds no queries\n", C, qfile); goto done; }
    }
    if (image) { nq = 1; queries = &image; }
    q = duet_alloc_array(nq, de * sizeof(float));
    hits = duet_alloc_array(nq, (size_t)k * sizeof(duet_hit));
    flags8 = calloc(nq, 1);
    if (!q || !hits || !flags8) { fprintf(stderr, "duet %s: out of memory\n", C); goto done; }
    double t1 = now_seconds();
    if (image) {
        duet_image im;
        if (duet_image_read(image, &im, &e)) { fail(C, &e); goto done; }
        const duet_image *ip = &im;
        duet_status st = duet_query_encode_images(&c.enc, &ip, 1, q, &e);
        duet_image_free(&im);
        if (st) { fail(C, &e); goto done; }
    } else {
        for (size_t i = 0; i < nq; i++)
            if (!duet_utf8_valid(queries[i], strlen(queries[i]))) {
                fprintf(stderr, "duet %s: query %zu is not valid UTF-8\n", C, i + 1);
                goto done;
            }
        if (duet_query_encode_text(&c.enc, queries, nq, q, flags8, &e)) { fail(C, &e); goto done; }
    }
    double tp = now_seconds();
    duet_mat qm = {q, nq, de}, gm = duet_index_embeddings(c.ix, side);
    size_t got = 0;
    duet_searcher *srch = NULL;
    /* preparing the gallery (its bf16 copy in bf16) is timed apart */
    duet_status sst = duet_searcher_new(&gm, c.prec, &srch, &e);
    double t2 = now_seconds();
    if (sst ||
        (ranks > 1 ? duet_search_sharded(comm, c.ix, srch, side, q, nq, (size_t)k, hits, &texts, &e)
                   : duet_searcher_topk(srch, &qm, (size_t)k, hits, &got, &e))) {
        duet_searcher_free(srch);
        fail(C, &e);
        goto done;
    }
    duet_searcher_free(srch);
    if (ranks > 1) got = (size_t)k < duet_index_total(c.ix, side) ? (size_t)k : duet_index_total(c.ix, side);
    double t3 = now_seconds();
    for (size_t i = 0; i < nq; i++) {
        if (flags8[i] & DUET_TEXT_FLAG_EMPTY)
            fprintf(stderr, "duet %s: query %zu has no word the text model knows; its results are arbitrary\n", C, i + 1);
        if (json) {
            json_t *o = json_pack("{s:s, s:s, s:f, s:f, s:[]}", image ? "image" : "query", queries[i], "to",
                                  side == DUET_SIDE_IMAGE ? "images" : "captions", "encode_ms",
                                  (tp - t1) * 1e3 / (double)nq, "search_ms", (t3 - t2) * 1e3 / (double)nq, "results");
            json_t *arr = json_object_get(o, "results");
            for (size_t j = 0; j < got; j++) {
                const duet_hit *h = &hits[i * got + j];
                json_t *r = json_pack("{s:I, s:I, s:f}", "rank", (json_int_t)(j + 1), "index", (json_int_t)h->index,
                                      "score", (double)h->score);
                json_object_set_new(r, side == DUET_SIDE_IMAGE ? "name" : "text",
                                    json_string(texts ? texts[i * got + j] : duet_index_text(c.ix, side, h->index)));
                json_array_append_new(arr, r);
            }
            char *s = json_dumps(o, JSON_COMPACT);
            printf("%s\n", s ? s : "{}");
            free(s);
            json_decref(o);
        } else {
            printf("%s%s\n", image ? "image: " : "query: ", queries[i]);
            for (size_t j = 0; j < got; j++) {
                const duet_hit *h = &hits[i * got + j];
                printf("  %3zu  %7.4f  %s\n", j + 1, (double)h->score,
                       texts ? texts[i * got + j] : duet_index_text(c.ix, side, h->index));
            }
        }
    }
    fprintf(stderr, "duet %s: %zu quer%s, %zu %s%s; load %.1f ms, encode %.1f ms, prepare %.1f ms, search %.1f ms\n",
            C, nq, nq == 1 ? "y" : "ies", duet_index_total(c.ix, side), side == DUET_SIDE_IMAGE ? "images" : "captions",
            ranks > 1 ? " (sharded between the ranks)" : "", t_load * 1e3, (tp - t1) * 1e3, (t2 - tp) * 1e3,
            (t3 - t2) * 1e3);
    status = 0;
done:
    free(q); free(hits); free(flags8); free(qbuf); free(qlines); free(texts);
    ctx_free(&c);
    return status;
}
