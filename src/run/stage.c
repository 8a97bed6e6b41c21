/* stage.c -- the engine of the main job's cached stages (docs/RUN.md).
 *
 * Every stage has a key: the FNV-1a of a text listing its inputs (upstream
 * keys, file identities, dataset content hashes, every setting). Its outputs
 * go to WORK/<stage>-<key>/ and its manifest stage.json is written last
 * (temp + rename), so "stage.json exists with this key" means "done". A
 * stage reads: duet_stage_open (cached? then done), build its outputs into
 * its directory, duet_stage_close (manifest last). */
#define _XOPEN_SOURCE 700
#include "run/run.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MANIFEST "stage.json"
#define RUN_VERSION 1

/* A file's identity for a key: absolute path, size and modification time
 * (large inputs such as CNN weights and word vectors are not re-read). */
duet_status duet_stage_file_ident(duet_sbuf *b, const char *what, const char *path, duet_error *err) {
    struct stat sb;
    char abs[PATH_MAX];
    if (!path) return duet_fail(err, DUET_ERR_INVALID_ARG, "run: no %s file given", what);
    if (stat(path, &sb) != 0 || !realpath(path, abs))
        return duet_fail(err, DUET_ERR_IO, "%s: %s not found: %s", path, what, strerror(errno));
    duet_sb_printf(b, "%s=%s size=%lld mtime=%lld.%09ld\n", what, abs, (long long)sb.st_size,
                   (long long)sb.st_mtim.tv_sec, (long)sb.st_mtim.tv_nsec);
    return DUET_OK;
}

void duet_run_say(const duet_run_state *rs, const char *fmt, ...) {
    if (!rs->h || !rs->h->log) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    rs->h->log(rs->h->user, line);
}

int duet_run_cancelled(const duet_run_state *rs) { return rs->h && rs->h->cancel && *rs->h->cancel; }

duet_status duet_run_interrupted(int s, duet_error *err) {
    return duet_fail(err, DUET_ERR_INTERRUPTED, "interrupted in stage %s; run the same "
                     "command again to resume", duet_stage_name(s));
}

void duet_stage_key_precision(const duet_run_state *rs, duet_sbuf *inputs) {
    if (rs->prec != DUET_PRECISION_F32) duet_sb_printf(inputs, "precision=%s\n", duet_precision_name(rs->prec));
}

void duet_run_share_threads(const duet_run_state *rs, int shared) {
    if (duet_comm_size(rs->c->comm) == 1 || rs->c->train.threads > 0) return;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    long share = shared ? cores / duet_comm_local_size(rs->c->comm) : cores;
    duet_set_threads(share > 0 ? (int)share : 1);
}

/* Path of a file in stage s's directory (a static-size buffer of the caller). */
void duet_stage_path(const duet_run_state *rs, int s, const char *file, char *out, size_t n) {
    snprintf(out, n, "%s/%s", rs->res->stage[s].dir, file);
}

/* Removes temp files ("*.tmp.*") an interrupted writer left in dir. */
void duet_stage_clean_temps(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char p[PATH_MAX];
    while ((de = readdir(d)))
        if (strstr(de->d_name, ".tmp.")) {
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            remove(p);
        }
    closedir(d);
}

static const char *const OUTPUT_FIELDS[] = {"features", "vectors", "text_model", "model", "index"};
#define N_OUTPUT_FIELDS (sizeof OUTPUT_FIELDS / sizeof OUTPUT_FIELDS[0])

static int is_npy(const char *f) {
    size_t l = strlen(f);
    return l > 4 && strcmp(f + l - 4, ".npy") == 0;
}

/* 1 when an output file a manifest names is gone (deleted by hand) or, for
 * the .npy outputs (tensor files carry their own CRC), when its CRC-32C
 * differs from the one the manifest recorded (manifests written before
 * checksums record none: their files are used unverified, as before). */
static int outputs_bad(const duet_run_state *rs, int s, const json_t *m) {
    char p[PATH_MAX];
    struct stat sb;
    json_t *sums = json_object_get(m, "checksums");
    for (size_t i = 0; i < N_OUTPUT_FIELDS; i++) {
        const char *f = json_string_value(json_object_get(m, OUTPUT_FIELDS[i]));
        if (!f) continue;
        duet_stage_path(rs, s, f, p, sizeof p);
        if (stat(p, &sb) != 0) {
            duet_run_say(rs, "%-7s %s is missing: building the stage again", duet_stage_name(s), p);
            return 1;
        }
        const char *want = json_string_value(json_object_get(sums, f));
        if (!is_npy(f) || !json_is_object(sums)) continue;
        uint32_t crc = 0;
        duet_error e = {0};
        char got[32] = "unreadable";
        if (!duet_file_crc32c(p, &crc, &e)) snprintf(got, sizeof got, "crc32c:%08x", crc);
        if (!want || strcmp(want, got) != 0) {
            duet_run_say(rs, "%-7s %s: checksum mismatch (%s, the manifest records %s): the file is corrupt; "
                         "building the stage again", duet_stage_name(s), p, got, want ? want : "none");
            return 1;
        }
    }
    return 0;
}

/* m.checksums (made when absent), or NULL when out of memory. */
static json_t *checksums_of(json_t *m) {
    json_t *sums = json_object_get(m, "checksums");
    if (json_is_object(sums)) return sums;
    sums = json_object();
    if (sums && json_object_set_new(m, "checksums", sums) != 0) sums = NULL;
    return sums;
}

void duet_stage_set_crc(json_t *m, const char *file, uint32_t crc) {
    json_t *sums = m ? checksums_of(m) : NULL;
    char hex[32];
    snprintf(hex, sizeof hex, "crc32c:%08x", crc);
    if (sums) json_object_set_new(sums, file, json_string(hex));
}

/* Records the CRC-32C of each .npy output of manifest m as
 * m.checksums[file] = "crc32c:<8 hex>": kept when the stage recorded it
 * while writing (duet_stage_set_crc), else read back from the file. */
static duet_status add_checksums(const duet_run_state *rs, int s, json_t *m, duet_error *err) {
    json_t *sums = checksums_of(m);
    if (!sums) return duet_fail(err, DUET_ERR_NOMEM, "run: out of memory");
    for (size_t i = 0; i < N_OUTPUT_FIELDS; i++) {
        const char *f = json_string_value(json_object_get(m, OUTPUT_FIELDS[i]));
        if (!f || !is_npy(f) || json_is_string(json_object_get(sums, f))) continue;
        char p[PATH_MAX];
        uint32_t crc;
        duet_stage_path(rs, s, f, p, sizeof p);
        duet_status st = duet_file_crc32c(p, &crc, err);
        if (st) return st;
        duet_stage_set_crc(m, f, crc);
    }
    return DUET_OK;
}

/* Computes stage s's key from its inputs text and looks for its manifest.
 * Returns DUET_OK; *done = 1 when the stage is complete. */
duet_status duet_stage_open(duet_run_state *rs, int s, duet_sbuf *inputs, int *done, duet_error *err) {
    duet_run_stage *st = &rs->res->stage[s];
    *done = 0;
    duet_sb_printf(inputs, "run-version=%d\n", RUN_VERSION);
    if (inputs->oom) return duet_fail(err, DUET_ERR_NOMEM, "run: out of memory");
    snprintf(st->key, sizeof st->key, "%016llx",
             (unsigned long long)duet_fnv(DUET_FNV_INIT, inputs->s, inputs->n));
    duet_sbuf dir = {0};
    duet_sb_printf(&dir, "%s/%s-%s", rs->c->work, duet_stage_name(s), st->key);
    if (dir.oom) return duet_fail(err, DUET_ERR_NOMEM, "run: out of memory");
    st->dir = dir.s;
    rs->t_stage = duet_now();
    char mp[PATH_MAX];
    duet_stage_path(rs, s, MANIFEST, mp, sizeof mp);
    json_error_t je;
    /* under MPI only rank 0 decides whether a stage is done; the others
     * (whose file systems may not hold rank 0's files) learn it from it */
    json_t *m = duet_comm_rank(rs->c->comm) == 0 ? json_load_file(mp, 0, &je) : NULL;
    const char *k = m ? json_string_value(json_object_get(m, "key")) : NULL;
    int cached = k && strcmp(k, st->key) == 0 && !outputs_bad(rs, s, m);
    if (s == DUET_STAGE_IMAGE) { /* the one stage every rank takes part in */
        duet_status b = duet_comm_bcast(rs->c->comm, &cached, sizeof cached, err);
        if (b) { json_decref(m); return b; }
    }
    if (cached && !m) { /* a rank other than 0: nothing of its own to do */
        st->state = DUET_STAGE_CACHED;
        *done = 1;
        return DUET_OK;
    }
    if (cached) {
        rs->man[s] = m;
        st->state = DUET_STAGE_CACHED;
        st->build_seconds = json_number_value(json_object_get(m, "seconds"));
        long pk = (long)json_integer_value(json_object_get(m, "peak_rss_kb"));
        if (pk > rs->res->build_peak_rss_kb) rs->res->build_peak_rss_kb = pk;
        st->seconds = duet_now() - rs->t_stage;
        duet_run_say(rs, "%-7s cached  %s (built in %.1f s)", duet_stage_name(s), st->dir, st->build_seconds);
        *done = 1;
        return DUET_OK;
    }
    json_decref(m);
    duet_status e = duet_make_dirs(st->dir, err);
    if (e) return e;
    duet_stage_clean_temps(st->dir);
    duet_run_say(rs, "%-7s running %s", duet_stage_name(s), st->dir);
    return DUET_OK;
}

/* Writes stage s's manifest m (taken over) last, marking the stage done. */
duet_status duet_stage_close(duet_run_state *rs, int s, json_t *m, const duet_sbuf *inputs, duet_error *err) {
    duet_run_stage *st = &rs->res->stage[s];
    if (!m) return duet_fail(err, DUET_ERR_NOMEM, "run: out of memory");
    st->build_seconds = st->seconds = duet_now() - rs->t_stage;
    if (duet_peak_rss_kb() > rs->res->build_peak_rss_kb) rs->res->build_peak_rss_kb = duet_peak_rss_kb();
    json_object_set_new(m, "stage", json_string(duet_stage_name(s)));
    json_object_set_new(m, "key", json_string(st->key));
    json_object_set_new(m, "seconds", json_real(st->seconds));
    json_object_set_new(m, "peak_rss_kb", json_integer(duet_peak_rss_kb()));
    json_object_set_new(m, "inputs", json_string(inputs->s));
    json_object_set_new(m, "precision", json_string(duet_precision_name(rs->prec)));
    json_object_set_new(m, "isa", json_string(duet_cpu_isa()));
    duet_status cs = add_checksums(rs, s, m, err);
    if (cs) { json_decref(m); return cs; }
    char *txt = json_dumps(m, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(8));
    char mp[PATH_MAX];
    duet_stage_path(rs, s, MANIFEST, mp, sizeof mp);
    duet_status e = txt ? duet_write_text(mp, txt, strlen(txt), err)
                        : duet_fail(err, DUET_ERR_NOMEM, "run: out of memory");
    free(txt);
    if (e) { json_decref(m); return e; }
    rs->man[s] = m;
    st->state = DUET_STAGE_BUILT;
    duet_run_say(rs, "%-7s built   in %.1f s", duet_stage_name(s), st->seconds);
    return DUET_OK;
}

void duet_upstream_paths(const duet_run_state *rs, duet_upstream *u) {
    duet_stage_path(rs, DUET_STAGE_IMAGE, "features.npy", u->img, sizeof u->img);
    duet_stage_path(rs, DUET_STAGE_TEXT, "features.npy", u->txt, sizeof u->txt);
    duet_stage_path(rs, DUET_STAGE_TEXT, "text.model", u->textmodel, sizeof u->textmodel);
    duet_stage_path(rs, DUET_STAGE_TRAIN, "model.duet", u->model, sizeof u->model);
}

/* Opens the image and caption features (caller closes both with
 * duet_features_close, also on failure) and checks them against the
 * dataset (the scan for NaN/Inf only when finite). */
duet_status duet_run_load_features(const duet_run_state *rs, const duet_upstream *u, duet_features **img,
                                   duet_features **txt, int finite, duet_error *err) {
    duet_status st = duet_features_open(u->img, img, err);
    if (!st) st = duet_features_open(u->txt, txt, err);
    if (!st) st = duet_check_feature_sources(rs->d, *img, u->img, *txt, u->txt, finite, err);
    return st;
}

/* One run per work directory at a time: a POSIX record lock on WORK/.lock,
 * released by the kernel when the process ends, however it ends. Returns
 * the descriptor to close when done, or -1 after setting err. */
int duet_run_lock(const char *work, duet_error *err) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/.lock", work);
    int fd = open(p, O_RDWR | O_CREAT, 0666);
    if (fd < 0) {
        duet_fail(err, DUET_ERR_IO, "%s: cannot open: %s", p, strerror(errno));
        return -1;
    }
    struct flock fl = {0};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (fcntl(fd, F_SETLK, &fl) != 0) {
        duet_fail(err, DUET_ERR_IO, "%s is in use by another duet run (lock %s); wait for it to finish", work, p);
        close(fd);
        return -1;
    }
    duet_stage_clean_temps(work);
    return fd;
}

/* Embeds the rows `rows` of x (its first n when rows is NULL) with one
 * branch, in chunks (duet_model_embed_rows). */
duet_status duet_run_embed_rows(const duet_model *m, int side, const duet_features *x, const size_t *rows, size_t n,
                                duet_mat *out, duet_error *err) {
    *out = (duet_mat){duet_alloc_array(n ? n : 1, duet_model_embed_dim(m) * sizeof(float)), n, duet_model_embed_dim(m)};
    if (!out->data) return duet_fail(err, DUET_ERR_NOMEM, "run: out of memory");
    return duet_model_embed_rows(m, side, x, rows, n, out, err);
}

