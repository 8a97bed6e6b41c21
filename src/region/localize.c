/* localize.c -- phrase localization with an embedding model: an image's
 * proposals, their region features from one CNN pass (RoI-align over the
 * last feature map), the model's image branch on each region; a phrase
 * through the text model and the text branch; boxes ranked by cosine.
 *
 * With the image-sentence model this is the weakly supervised default: no
 * box was seen in training, but a region's feature is what the image
 * feature would be if the image were that region (the whole-image box gives
 * the image feature exactly), so the model scores it like an image.
 *
 * Scores: cosine alone favours small discriminative parts (a dog's head for
 * "a dog"). The default, contrast, is cos(box, phrase) - cos(rest, phrase):
 * "rest" is the image around the box, feature (g - a f) / (1 - a) with g the
 * whole image's feature, f the box's and a its area fraction (capped at
 * 0.9). A box scores high when it matches the phrase and what is left once
 * it is taken away does not, which favours the whole object over its
 * parts. */
#include "region/region.h"
#include <stdlib.h>
#include <string.h>

void duet_regions_free(duet_regions *r) {
    if (!r) return;
    free(r->boxes);
    free(r->emb);   /* emb_rest points into it */
    memset(r, 0, sizeof *r);
}

/* feat [n x (c + 5 geo)]: each box's RoI feature, then its geometry. */
static duet_status roi_rows(const float *map, int mh, int mw, int c, const duet_image *im, const duet_box *b,
                            size_t n, int geo, float *feat, duet_error *err) {
    if (!geo) return duet_roi_features(map, mh, mw, c, im->width, im->height, b, n, feat, err);
    size_t w = (size_t)c + DUET_BOX_GEOMETRY;
    float *tmp = duet_alloc_array(n ? n : 1, (size_t)c * sizeof(float));
    if (!tmp) return duet_fail(err, DUET_ERR_NOMEM, "regions: out of memory");
    duet_status st = duet_roi_features(map, mh, mw, c, im->width, im->height, b, n, tmp, err);
    for (size_t i = 0; i < n && !st; i++) {
        memcpy(feat + i * w, tmp + i * (size_t)c, (size_t)c * sizeof(float));
        duet_box_geometry(&b[i], im->width, im->height, feat + i * w + c);
    }
    free(tmp);
    return st;
}

duet_status duet_regions_embed(const duet_query_encoder *q, const duet_image *im, const duet_proposal_params *pp,
                               duet_regions *out, duet_error *err) {
    memset(out, 0, sizeof *out);
    if (!q || !q->cnn || !q->model) return duet_fail(err, DUET_ERR_INVALID_ARG, "regions: no CNN or model");
    int mh, mw, c;
    duet_cnn_map_shape(q->cnn, &mh, &mw, &c);
    size_t d_img = duet_model_dim(q->model, DUET_SIDE_IMAGE), dim = duet_model_embed_dim(q->model);
    int geo = d_img == (size_t)c + DUET_BOX_GEOMETRY;   /* a region-phrase model with box geometry */
    if ((size_t)c != d_img && !geo)
        return duet_fail(err, DUET_ERR_SHAPE, "regions: the CNN's feature map has %d channels, the model's image "
                         "branch takes %zu (%d, or %d with box geometry)", c, d_img, c, c + DUET_BOX_GEOMETRY);
    const size_t plane = (size_t)DUET_IMAGE_SIDE * DUET_IMAGE_SIDE * 3;
    const duet_box whole = {0, 0, (float)im->width, (float)im->height};
    float *in = duet_alloc_array(plane, sizeof(float));
    float *map = duet_alloc_array((size_t)mh * mw, (size_t)c * sizeof(float));
    float *g = duet_alloc_array((size_t)c, sizeof(float)), *feat = NULL;
    duet_status st = (!in || !map || !g) ? duet_fail(err, DUET_ERR_NOMEM, "regions: out of memory") : DUET_OK;
    if (!st) st = duet_proposals(im, pp, &out->boxes, &out->n, err);
    if (!st) st = duet_image_crops(im, 1, in, err);
    if (!st) st = duet_cnn_run_map(q->cnn, in, 1, map, NULL, err);
    /* feat [2n x d_img]: the boxes' region features, then the rests' */
    size_t n = out->n;
    if (!st && !(feat = duet_alloc_array(2 * n, d_img * sizeof(float))))
        st = duet_fail(err, DUET_ERR_NOMEM, "regions: out of memory");
    if (!st) st = roi_rows(map, mh, mw, c, im, out->boxes, n, geo, feat, err);
    if (!st) st = duet_roi_features(map, mh, mw, c, im->width, im->height, &whole, 1, g, err);
    /* the rest of the image around each box: (g - a f) / (1 - a), g the
     * whole image's feature, f the box's, a its area fraction (capped) */
    for (size_t i = 0; i < n && !st; i++) {
        const duet_box *b = &out->boxes[i];
        double a = (double)(b->x1 - b->x0) * (b->y1 - b->y0) / ((double)im->width * im->height);
        if (a > 0.9) a = 0.9;
        const float *f = feat + i * d_img;
        float *r = feat + (n + i) * d_img;
        for (size_t k = 0; k < (size_t)c; k++) r[k] = (float)((g[k] - a * f[k]) / (1 - a));
        if (geo) duet_box_geometry(&whole, im->width, im->height, r + c);
    }
    /* one pass of the image branch over both: emb [2n x dim] */
    if (!st && !(out->emb = duet_alloc_array(2 * n, dim * sizeof(float))))
        st = duet_fail(err, DUET_ERR_NOMEM, "regions: out of memory");
    if (!st) {
        duet_mat x = {feat, 2 * n, d_img}, y = {out->emb, 2 * n, dim};
        st = duet_model_embed(q->model, DUET_SIDE_IMAGE, &x, &y, err);
    }
    free(in); free(map); free(g); free(feat);
    out->emb_rest = out->emb ? out->emb + n * dim : NULL;
    out->dim = dim;
    out->width = im->width;
    out->height = im->height;
    if (st) duet_regions_free(out);
    return st;
}

duet_status duet_regions_localize(const duet_query_encoder *q, const duet_regions *r, const char *phrase,
                                  duet_region_score score, size_t k, duet_hit *hits, size_t *n_hits, duet_error *err) {
    *n_hits = 0;
    if (score != DUET_SCORE_CONTRAST && score != DUET_SCORE_COSINE)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "localize: unknown score %d", (int)score);
    if (!r || r->n == 0) return duet_fail(err, DUET_ERR_INVALID_ARG, "localize: no regions");
    float *t = malloc(sizeof(float) * r->dim), *diff = NULL;
    uint8_t flag = 0;
    duet_status st = !t ? duet_fail(err, DUET_ERR_NOMEM, "localize: out of memory") : DUET_OK;
    if (!st) st = duet_query_encode_text(q, &phrase, 1, t, &flag, err);
    if (!st && (flag & DUET_TEXT_FLAG_EMPTY))
        st = duet_fail(err, DUET_ERR_INVALID_ARG, "localize: no word of \"%s\" is in the text model's vocabulary", phrase);
    /* contrast: t . e - t . o = t . (e - o), so both scores are a top-k
     * over one matrix of rows */
    const float *rows = r->emb;
    if (!st && score == DUET_SCORE_CONTRAST) {
        size_t len = r->n * r->dim;
        if (!(diff = duet_alloc_array(len, sizeof(float)))) st = duet_fail(err, DUET_ERR_NOMEM, "localize: out of memory");
        for (size_t j = 0; !st && j < len; j++) diff[j] = r->emb[j] - r->emb_rest[j];
        rows = diff;
    }
    if (!st) {
        duet_mat qm = {t, 1, r->dim}, gm = {(float *)rows, r->n, r->dim};
        st = duet_topk(&qm, &gm, k, hits, n_hits, err);
    }
    free(t); free(diff);
    return st;
}
