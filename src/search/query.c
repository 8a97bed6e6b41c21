/* query.c -- new queries encoded exactly as the index rows were: text
 * through the text model the model was trained on, images through the CNN
 * and crops the model records, then the model's branch (L2-normalized). */
#include "core/core.h"
#include <stdlib.h>
#include <string.h>

/* All arguments borrowed. */
duet_status duet_query_check(const duet_index *ix, duet_model *model, const char *model_hash,
                             const duet_textmodel *textmodel, const char *textmodel_hash,
                             duet_error *err) {
    duet_index_meta im = duet_index_meta_of(ix);
    if (duet_model_embed_dim(model) != duet_index_dim(ix))
        return duet_fail(err, DUET_ERR_SHAPE, "the model embeds into %zu dimensions, the index holds %zu",
                         duet_model_embed_dim(model), duet_index_dim(ix));
    if (model_hash && im.model_hash && strcmp(model_hash, im.model_hash) != 0)
        return duet_fail(err, DUET_ERR_INVALID_ARG,
                         "the model file's hash %s differs from %s recorded in the index (built with %s)",
                         model_hash, im.model_hash, im.model ? im.model : "?");
    if (textmodel) {
        size_t want = duet_model_dim(model, DUET_SIDE_TEXT);
        if (duet_textmodel_dim(textmodel) != want)
            return duet_fail(err, DUET_ERR_SHAPE, "the text model encodes %zu dimensions, the model's text "
                             "branch takes %zu", duet_textmodel_dim(textmodel), want);
        const char *rec = duet_model_info_of(model)->text_model_hash;
        if (!rec) rec = im.text_model_hash;
        if (textmodel_hash && rec && strcmp(textmodel_hash, rec) != 0)
            return duet_fail(err, DUET_ERR_INVALID_ARG,
                             "the text model's hash %s differs from %s that the model was trained with "
                             "(%s): queries would not be encoded as the training captions were",
                             textmodel_hash, rec,
                             duet_model_info_of(model)->text_model ? duet_model_info_of(model)->text_model : "?");
    }
    return DUET_OK;
}

/* Embeds feats [n x d_side] (borrowed) into out [n x embed] (caller's). */
static duet_status embed_rows(const duet_model *m, int side, float *feats, size_t n, float *out,
                              duet_error *err) {
    duet_mat x = {feats, n, duet_model_dim(m, side)};
    duet_mat y = {out, n, duet_model_embed_dim(m)};
    return duet_model_embed(m, side, &x, &y, err);
}

duet_status duet_query_encode_text(const duet_query_encoder *q, const char *const *texts, size_t n,
                                   float *out, uint8_t *flags, duet_error *err) {
    if (!q->textmodel) return duet_fail(err, DUET_ERR_INVALID_ARG, "query: no text model loaded");
    size_t d = duet_textmodel_dim(q->textmodel);
    float *f = duet_alloc_array(n, d * sizeof(float));
    if (!f || d > SIZE_MAX / sizeof(float)) { free(f); return duet_fail(err, DUET_ERR_NOMEM, "query: out of memory"); }
    duet_mat fm = {f, n, d};
    duet_status st = duet_textmodel_encode(q->textmodel, texts, n, &fm, flags, NULL, err);
    if (!st) st = embed_rows(q->model, DUET_SIDE_TEXT, f, n, out, err);
    free(f);
    return st;
}

duet_status duet_query_encode_images(const duet_query_encoder *q, const duet_image *const *ims, size_t n,
                                     float *out, duet_error *err) {
    if (!q->cnn) return duet_fail(err, DUET_ERR_UNSUPPORTED, "query: no CNN loaded for image queries");
    size_t d = duet_cnn_feature_dim(q->cnn);
    if (d != duet_model_dim(q->model, DUET_SIDE_IMAGE))
        return duet_fail(err, DUET_ERR_SHAPE, "query: the CNN gives %zu-D features, the model's image branch "
                         "takes %zu", d, duet_model_dim(q->model, DUET_SIDE_IMAGE));
    float *f = duet_alloc_array(n, d * sizeof(float));
    if (!f) return duet_fail(err, DUET_ERR_NOMEM, "query: out of memory");
    duet_status st = duet_cnn_images(q->cnn, ims, n, q->crops == 10 ? 10 : 1, 0, f, NULL, err);
    if (!st) st = embed_rows(q->model, DUET_SIDE_IMAGE, f, n, out, err);
    free(f);
    return st;
}

/* ------------------------------------------------ batch-independent forms */

duet_status duet_query_text_features(const duet_query_encoder *q, const char *text, float *feat, uint8_t *flag,
                                     duet_error *err) {
    if (!q->textmodel) return duet_fail(err, DUET_ERR_INVALID_ARG, "query: no text model loaded");
    duet_mat fm = {feat, 1, duet_textmodel_dim(q->textmodel)};
    return duet_textmodel_encode(q->textmodel, &text, 1, &fm, flag, NULL, err);
}

size_t duet_query_image_input_floats(const duet_query_encoder *q) {
    return (size_t)(q->crops == 10 ? 10 : 1) * DUET_IMAGE_SIDE * DUET_IMAGE_SIDE * 3;
}

duet_status duet_query_image_input(const duet_query_encoder *q, const duet_image *im, float *input,
                                   duet_error *err) {
    return duet_image_crops(im, q->crops == 10 ? 10 : 1, input, err);
}

duet_status duet_query_image_features(const duet_query_encoder *q, const float *input, size_t n, size_t run,
                                      float *feats, duet_error *err) {
    if (!q->cnn) return duet_fail(err, DUET_ERR_UNSUPPORTED, "query: no CNN loaded for image queries");
    if (!n || run < n) return duet_fail(err, DUET_ERR_INVALID_ARG, "query: a CNN run of %zu for %zu images", run, n);
    size_t per = q->crops == 10 ? 10 : 1, plane = duet_query_image_input_floats(q) / per;
    size_t fd = duet_cnn_feature_dim(q->cnn);
    float *in = run > n ? duet_calloc_array(run * per, plane * sizeof(float)) : NULL;
    float *f = duet_alloc_array(run * per, fd * sizeof(float));
    duet_status st = DUET_OK;
    if (!f || (run > n && !in)) st = duet_fail(err, DUET_ERR_NOMEM, "query: out of memory for a CNN run of %zu", run);
    if (!st && in) memcpy(in, input, n * per * plane * sizeof(float));
    if (!st) st = duet_cnn_run(q->cnn, in ? in : input, run * per, f, NULL, err);
    /* the crops' mean exactly as duet_cnn_images takes it */
    for (size_t i = 0; !st && i < n; i++)
        for (size_t j = 0; j < fd; j++) {
            double s = 0;
            for (size_t c = 0; c < per; c++) s += f[(i * per + c) * fd + j];
            feats[i * fd + j] = (float)(s / (double)per);
        }
    free(in);
    free(f);
    return st;
}

duet_status duet_query_embed_rows(const duet_query_encoder *q, int side, const float *feats, size_t n,
                                  size_t rows, float *out, duet_error *err) {
    if (side != DUET_SIDE_IMAGE && side != DUET_SIDE_TEXT)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "query: side %d is not image (0) or text (1)", side);
    if (!rows) return duet_fail(err, DUET_ERR_INVALID_ARG, "query: the branch needs rows >= 1");
    size_t d = duet_model_dim(q->model, side), de = duet_model_embed_dim(q->model);
    float *x = duet_alloc_array(rows, d * sizeof(float)), *y = duet_alloc_array(rows, de * sizeof(float));
    duet_status st = x && y ? DUET_OK : duet_fail(err, DUET_ERR_NOMEM, "query: out of memory for %zu rows", rows);
    for (size_t r = 0; !st && r < n; r += rows) {
        size_t m = n - r < rows ? n - r : rows;
        memcpy(x, feats + r * d, m * d * sizeof(float));
        memset(x + m * d, 0, (rows - m) * d * sizeof(float));
        duet_mat xm = {x, rows, d}, ym = {y, rows, de};
        st = duet_model_embed(q->model, side, &xm, &ym, err);
        if (!st) memcpy(out + r * de, y, m * de * sizeof(float));
    }
    free(x);
    free(y);
    return st;
}
