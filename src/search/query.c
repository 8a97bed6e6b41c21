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
