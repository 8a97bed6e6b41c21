/* stage_image.c -- the image stage: CNN features of every image of the
 * dataset, computed in resumable parts of DUET_RUN_PART images. */
#define _XOPEN_SOURCE 700
#include "run/run.h"
#include <errno.h>
#include <sys/stat.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static int is_tflite(const char *w) {
    size_t l = strlen(w);
    return l > 7 && strcmp(w + l - 7, ".tflite") == 0;
}

static duet_status image_key(duet_run_state *rs, duet_sbuf *in, duet_error *err) {
    const duet_run_config *c = rs->c;
    char abs[PATH_MAX];
    if (!c->images || !realpath(c->images, abs))
        return duet_fail(err, DUET_ERR_IO, "%s: image directory not found", c->images ? c->images : "(none)");
    duet_sb_printf(in, "stage=image\ncnn=%s\ncrops=%d\nimages=%s\n", c->cnn, c->crops, abs);
    duet_stage_key_precision(rs, in);
    duet_status st = duet_stage_file_ident(in, "weights", c->cnn_weights, err);
    if (st) return st;
    /* a quantized model at bf16 runs in int8 where the CPU has VNNI
     * (duet_cnn_int8): other features than its float emulation, so the key
     * says so (only then: other keys stay as they were). Decided from the
     * precision and the CPU, without loading the model: a .tflite duet
     * loads is the uint8 kind (MobileNetV2); should one not be wholly
     * quantized, its key still names int8 but is as stable (same file,
     * precision and CPU, same key), and the stage says so when it runs. */
    if (is_tflite(c->cnn_weights) && duet_cnn_int8_at(rs->prec)) duet_sb_printf(in, "int8=1\n");
    /* every image file's size and content (CRC-32C), in dataset order: the
     * work directory remembers what it read (image_ident.c), so only new or
     * touched files are read again */
    uint64_t h = 0;
    size_t reread = 0;
    st = duet_run_image_ident(c->work, abs, rs->d->image_names, rs->d->n_images, rs->names_hash, &h, &reread, err);
    if (st) return st;
    if (reread) duet_run_say(rs, "image   read %zu image file%s for the stage's key", reread, reread == 1 ? "" : "s");
    duet_sb_printf(in, "n_images=%zu content=%016llx\n", rs->d->n_images, (unsigned long long)h);
    return DUET_OK;
}

static duet_status image_part(duet_run_state *rs, duet_cnn *net, size_t b0, size_t b1, float *feats,
                              duet_error *err) {
    enum { BATCH = 8 };
    size_t dim = duet_cnn_feature_dim(net);
    duet_image ims[BATCH];
    const duet_image *ip[BATCH];
    char path[PATH_MAX];
    duet_status st = DUET_OK;
    for (size_t i = b0; i < b1 && !st; i += BATCH) {
        if (duet_run_cancelled(rs)) return duet_run_interrupted(DUET_STAGE_IMAGE, err);
        size_t m = b1 - i < BATCH ? b1 - i : BATCH, got = 0;
        for (; got < m; got++) {
            snprintf(path, sizeof path, "%s/%s", rs->c->images, rs->d->image_names[i + got]);
            if ((st = duet_image_read(path, &ims[got], err))) break;
            ip[got] = &ims[got];
        }
        if (!st) st = duet_cnn_images(net, ip, m, rs->c->crops, rs->c->crops == 10 ? 20 : BATCH,
                                      feats + (i - b0) * dim, NULL, err);
        for (size_t k = 0; k < got; k++) duet_image_free(&ims[k]);
        if (rs->h && rs->h->progress) rs->h->progress(rs->h->user, "image", i + m, rs->d->n_images);
    }
    return st;
}

duet_status duet_stage_image(duet_run_state *rs, duet_error *err) {
    const int S = DUET_STAGE_IMAGE;
    duet_sbuf in = {0};
    int done;
    duet_status st = image_key(rs, &in, err);
    if (!st) st = duet_stage_open(rs, S, &in, &done, err);
    if (st || done) { duet_sb_free(&in); return st; }
    duet_cnn *net = NULL;
    const char *w = rs->c->cnn_weights;
    if (is_tflite(w)) st = duet_cnn_load_tflite(w, &net, err);
    else st = duet_cnn_load_tfjs(w, &net, err);
    if (!st) st = duet_cnn_set_precision(net, rs->prec, err);
    if (!st && is_tflite(w) && duet_cnn_int8_at(rs->prec) && !duet_cnn_int8(net))
        duet_run_say(rs, "image   %s is not wholly quantized: its float emulation runs (the key says int8)", w);
    size_t n = rs->d->n_images, dim = st ? 0 : duet_cnn_feature_dim(net);
    duet_mat f = {st ? NULL : duet_alloc_array(n, dim * sizeof(float)), n, dim};
    if (!st && !f.data) st = duet_fail(err, DUET_ERR_NOMEM, "run: out of memory (%zu x %zu image features)", n, dim);
    size_t nparts = (n + DUET_RUN_PART - 1) / DUET_RUN_PART, reused = 0;
    /* under MPI this rank's parts: a contiguous run, in rank order */
    duet_comm *comm = rs->c->comm;
    size_t p0 = 0, p1 = nparts;
    duet_comm_range(comm, nparts, 1, &p0, &p1);
    char pp[PATH_MAX];
    for (size_t p = p0; !st && p < p1; p++) {
        size_t b0 = p * DUET_RUN_PART, b1 = b0 + DUET_RUN_PART < n ? b0 + DUET_RUN_PART : n;
        snprintf(pp, sizeof pp, "%s/part-%05zu.npy", rs->res->stage[S].dir, p);
        duet_mat part = {0};
        duet_error ignore = {0};
        if (duet_npy_read(pp, &part, &ignore) == DUET_OK && part.rows == b1 - b0 && part.cols == dim) {
            memcpy(f.data + b0 * dim, part.data, (b1 - b0) * dim * sizeof(float));
            duet_mat_free(&part);
            reused++;
            continue;
        }
        duet_mat_free(&part);
        st = image_part(rs, net, b0, b1, f.data + b0 * dim, err);
        duet_mat pm = {f.data + b0 * dim, b1 - b0, dim};
        if (!st) st = duet_npy_write(pp, &pm, err);
    }
    if (reused) duet_run_say(rs, "image   resumed: %zu of %zu parts were done", reused, p1 - p0);
    if (duet_comm_size(comm) > 1) { /* rank 0 gathers every rank's rows into f */
        size_t r0 = p0 * DUET_RUN_PART, r1 = p1 * DUET_RUN_PART < n ? p1 * DUET_RUN_PART : n, got = 0;
        float *all = NULL;
        if (!st) st = duet_comm_gather_rows(comm, f.data + r0 * dim, r1 - r0, dim * sizeof(float), (void **)&all,
                                            &got, err);
        if (!st && all) memcpy(f.data, all, got * dim * sizeof(float));
        free(all);
    }
    char out[PATH_MAX];
    duet_stage_path(rs, S, "features.npy", out, sizeof out);
    int writer = duet_comm_rank(comm) == 0;
    if (!st && writer) st = duet_mat_check_finite(&f, out, err);
    uint32_t crc = 0;
    if (!st && writer) st = duet_npy_write_crc(out, &f, DUET_DTYPE_F32, &crc, err);
    if (!st && writer) {
        char desc[128];
        snprintf(desc, sizeof desc, "%s crops=%d", rs->c->cnn, rs->c->crops);
        json_t *m = json_pack("{s:s, s:I, s:I, s:s}", "features", "features.npy", "rows", (json_int_t)n, "dim",
                              (json_int_t)dim, "image_model", desc);
        duet_stage_set_crc(m, "features.npy", crc);
        st = duet_stage_close(rs, S, m, &in, err);
    }
    /* every rank keeps its parts until rank 0 has written the stage */
    if (duet_comm_size(comm) > 1) st = duet_comm_all_ok(comm, st, err);
    if (!st)
        for (size_t p = p0; p < p1; p++) {
            snprintf(pp, sizeof pp, "%s/part-%05zu.npy", rs->res->stage[S].dir, p);
            remove(pp);
        }
    duet_mat_free(&f);
    duet_cnn_free(net);
    duet_sb_free(&in);
    return st;
}
