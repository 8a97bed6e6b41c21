/* eval.c -- Recall@K both ways (docs/MODEL.md, "Evaluation").
 *
 * Scores S = T . I^T [nc x ni] come from one f32 product on oneDNN per
 * block of captions (f32 whatever the model's precision: ranks count strict
 * inequalities, which bf16 rounding would turn into ties); the
 * ranks are counted from S without sorting: a caption's rank is 1 + the
 * number of images scoring strictly higher than its own image; an image's
 * rank is 1 + the number of captions scoring strictly higher than its best
 * own caption. */
#include "embed/embed.h"
#include <stdlib.h>
#include <string.h>

#define SCORE_BLOCK 2048

static int cmp_size(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

static void recall_of_ranks(size_t *rank, size_t n, duet_recall *r) {
    size_t h1 = 0, h5 = 0, h10 = 0;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        h1 += rank[i] <= 1; h5 += rank[i] <= 5; h10 += rank[i] <= 10;
        sum += (double)rank[i];
    }
    qsort(rank, n, sizeof *rank, cmp_size);
    r->r1 = 100.0 * (double)h1 / (double)n;
    r->r5 = 100.0 * (double)h5 / (double)n;
    r->r10 = 100.0 * (double)h10 / (double)n;
    r->medr = n % 2 ? (double)rank[n / 2]
                    : 0.5 * (double)(rank[n / 2 - 1] + rank[n / 2]);
    r->meanr = sum / (double)n;
}

/* S [nb x ni] = captions j0..j0+nb of T times I^T. */
static duet_status scores(duet_mm_cache *mm, const duet_mat *txt, const duet_mat *img,
                          size_t j0, size_t nb, float *S, duet_error *err) {
    size_t k = img->cols, ni = img->rows;
    duet_mm op = {nb, ni, k, dnnl_f32, txt->data + j0 * k, k, 0, img->data, k, 1,
                  NULL, S, ni, 0};
    return duet_mm_run(mm, &op, err);
}

duet_status duet_recall_from_embeddings(const duet_mat *img_emb,
                                        const duet_mat *txt_emb,
                                        const size_t *cap_img,
                                        duet_eval_result *res,
                                        duet_error *err) {
    memset(res, 0, sizeof *res);
    size_t ni = img_emb->rows, nc = txt_emb->rows, k = img_emb->cols;
    if (ni == 0 || nc == 0)
        return duet_fail(err, DUET_ERR_EMPTY, "recall: %zu images and %zu captions: nothing to rank", ni, nc);
    if (txt_emb->cols != k)
        return duet_fail(err, DUET_ERR_SHAPE, "recall: image embeddings are %zu-D, text %zu-D", k, txt_emb->cols);
    for (size_t j = 0; j < nc; j++)
        if (cap_img[j] >= ni)
            return duet_fail(err, DUET_ERR_INVALID_ARG, "recall: caption %zu names image %zu of %zu", j, cap_img[j], ni);
    size_t blk = nc < SCORE_BLOCK ? nc : SCORE_BLOCK;
    float *S = duet_alloc_array(blk * ni, sizeof(float));
    float *best = duet_alloc_array(ni, sizeof(float));     /* best own-caption score */
    size_t *t_rank = duet_alloc_array(nc, sizeof(size_t));
    size_t *i_rank = duet_calloc_array(ni, sizeof(size_t));
    int *has = duet_calloc_array(ni, sizeof(int));
    duet_mm_cache mm;
    duet_status st = duet_mm_cache_init(&mm, NULL, err);
    if (st) goto out;
    if (!S || !best || !t_rank || !i_rank || !has) {
        st = duet_fail(err, DUET_ERR_NOMEM, "recall: out of memory (%zu x %zu)", nc, ni);
        goto out;
    }
    /* pass 1: caption ranks and each image's best own-caption score */
    for (size_t j0 = 0; j0 < nc; j0 += blk) {
        size_t nb = nc - j0 < blk ? nc - j0 : blk;
        if ((st = scores(&mm, txt_emb, img_emb, j0, nb, S, err))) goto out;
        for (size_t b = 0; b < nb; b++) {
            const float *row = S + b * ni;
            size_t own = cap_img[j0 + b], cnt = 0;
            float s = row[own];
            for (size_t i = 0; i < ni; i++) cnt += row[i] > s;
            t_rank[j0 + b] = cnt + 1;
            if (!has[own] || s > best[own]) { best[own] = s; has[own] = 1; }
        }
    }
    /* pass 2: image ranks (captions scoring above the best own caption) */
    for (size_t j0 = 0; j0 < nc; j0 += blk) {
        size_t nb = nc - j0 < blk ? nc - j0 : blk;
        if ((st = scores(&mm, txt_emb, img_emb, j0, nb, S, err))) goto out;
        for (size_t b = 0; b < nb; b++) {
            const float *row = S + b * ni;
            for (size_t i = 0; i < ni; i++) i_rank[i] += has[i] && row[i] > best[i];
        }
    }
    size_t nq = 0;
    for (size_t i = 0; i < ni; i++)
        if (has[i]) i_rank[nq++] = i_rank[i] + 1;
    recall_of_ranks(i_rank, nq, &res->i2t);
    recall_of_ranks(t_rank, nc, &res->t2i);
    res->rsum = res->i2t.r1 + res->i2t.r5 + res->i2t.r10 + res->t2i.r1 +
                res->t2i.r5 + res->t2i.r10;
    res->n_images = nq;
    res->n_captions = nc;
    res->n_folds = 1;
out:
    free(S); free(best); free(t_rank); free(i_rank); free(has);
    duet_mm_cache_free(&mm);
    return st;
}

duet_status duet_check_features(const duet_dataset *d, const duet_mat *img,
                                const char *img_name, const duet_mat *txt,
                                const char *txt_name, duet_error *err) {
    if (img && img->rows != d->n_images)
        return duet_fail(err, DUET_ERR_SHAPE,
                         "%s: %zu rows, but dataset %s has %zu images (rows follow "
                         "the dataset's image order; see `duet dataset --images`)",
                         img_name, img->rows, d->source, d->n_images);
    if (txt && txt->rows != d->n_captions)
        return duet_fail(err, DUET_ERR_SHAPE,
                         "%s: %zu rows, but dataset %s has %zu captions (rows follow "
                         "the dataset's caption order; see `duet dataset --captions`)",
                         txt_name, txt->rows, d->source, d->n_captions);
    duet_status st = DUET_OK;
    if (img) st = duet_mat_check_finite(img, img_name, err);
    if (!st && txt) st = duet_mat_check_finite(txt, txt_name, err);
    return st;
}

duet_status duet_check_feature_sources(const duet_dataset *d, const duet_features *img,
                                       const char *img_name, const duet_features *txt,
                                       const char *txt_name, int finite, duet_error *err) {
    duet_mat shape_i = {NULL, img ? duet_features_rows(img) : 0, 0};
    duet_mat shape_t = {NULL, txt ? duet_features_rows(txt) : 0, 0};
    duet_status st = DUET_OK;
    if (img && shape_i.rows != d->n_images) st = duet_check_features(d, &shape_i, img_name, NULL, NULL, err);
    if (!st && txt && shape_t.rows != d->n_captions) st = duet_check_features(d, NULL, NULL, &shape_t, txt_name, err);
    /* a file's rows are checked as they are read (duet_features_row) */
    if (!st && finite && img && !duet_features_is_file(img)) st = duet_features_check_finite(img, img_name, err);
    if (!st && finite && txt && !duet_features_is_file(txt)) st = duet_features_check_finite(txt, txt_name, err);
    return st;
}

/* Rows embedded per chunk by duet_model_embed_rows (a chunk's features are
 * read and embedded before the next). */
#define EMBED_CHUNK 2048

duet_status duet_model_embed_rows(const duet_model *m, int side, const duet_features *x,
                                  const size_t *rows, size_t n, duet_mat *out, duet_error *err) {
    size_t c = duet_features_cols(x), nr = duet_features_rows(x), o = duet_model_embed_dim(m);
    if (out->rows != n || out->cols != o)
        return duet_fail(err, DUET_ERR_SHAPE, "embed: the output is %zu x %zu, not %zu x %zu", out->rows, out->cols,
                         n, o);
    for (size_t i = 0; rows && i < n; i++)
        if (rows[i] >= nr)
            return duet_fail(err, DUET_ERR_INVALID_ARG, "embed: row %zu of %zu features", rows[i], nr);
    if (!rows && n > nr) return duet_fail(err, DUET_ERR_INVALID_ARG, "embed: %zu rows of %zu features", n, nr);
    size_t cap = n < EMBED_CHUNK ? n : EMBED_CHUNK;
    duet_mat xb = {duet_alloc_array(cap ? cap : 1, c * sizeof(float)), 0, c};
    size_t *seq = rows ? NULL : duet_alloc_array(cap ? cap : 1, sizeof(size_t));
    if (!xb.data || (!rows && !seq)) {
        free(xb.data); free(seq);
        return duet_fail(err, DUET_ERR_NOMEM, "embed: out of memory for %zu rows of %zu", cap, c);
    }
    duet_status st = DUET_OK;
    for (size_t r0 = 0; r0 < n && !st; r0 += cap) {
        size_t k = n - r0 < cap ? n - r0 : cap;
        for (size_t i = 0; seq && i < k; i++) seq[i] = r0 + i;
        st = duet_features_gather(x, rows ? rows + r0 : seq, k, xb.data, err);
        xb.rows = k;
        duet_mat ob = {out->data + r0 * o, k, o};
        if (!st) st = duet_model_embed(m, side, &xb, &ob, err);
    }
    free(xb.data);
    free(seq);
    return st;
}

/* Gathers rows idx[0..n) of src into a new matrix (caller frees data). */
static duet_status gather_rows(const duet_features *src, const size_t *idx, size_t n,
                               duet_mat *out, duet_error *err) {
    out->rows = n;
    out->cols = duet_features_cols(src);
    out->data = duet_alloc_array(n, out->cols * sizeof(float));
    if (!out->data) return duet_fail(err, DUET_ERR_NOMEM, "evaluate: out of memory");
    return duet_features_gather(src, idx, n, out->data, err);
}

/* Evaluates the images imgs[0..ni) of d (with all their captions) with the
 * ensemble ms[0..n) (duet_ensemble_embed: a score is the mean of the
 * models' cosine similarities; one model: its own embeddings). Members
 * given the same feature matrix share its gathered rows. */
static duet_status evaluate_images(const duet_model *const *ms, const duet_features *const *img,
                                   const duet_features *const *txt, size_t n_models,
                                   const duet_dataset *d, const size_t *imgs, size_t ni,
                                   duet_eval_result *res, duet_error *err) {
    size_t nc = 0, o = 0;
    for (size_t i = 0; i < ni; i++)
        nc += d->image_cap_start[imgs[i] + 1] - d->image_cap_start[imgs[i]];
    for (size_t k = 0; k < n_models; k++) o += duet_model_embed_dim(ms[k]);
    size_t *caps = duet_alloc_array(nc, sizeof(size_t));
    size_t *cap_img = duet_alloc_array(nc, sizeof(size_t));
    duet_mat *xi = calloc(n_models, sizeof *xi), *xt = calloc(n_models, sizeof *xt);
    const duet_mat **pi = calloc(n_models, sizeof *pi), **pt = calloc(n_models, sizeof *pt);
    duet_mat ei = {0}, et = {0};
    duet_status st = DUET_OK;
    if (!caps || !cap_img || !xi || !xt || !pi || !pt) { st = duet_fail(err, DUET_ERR_NOMEM, "evaluate: out of memory"); goto out; }
    size_t c = 0;
    for (size_t i = 0; i < ni; i++)
        for (size_t q = d->image_cap_start[imgs[i]]; q < d->image_cap_start[imgs[i] + 1]; q++) {
            caps[c] = d->image_caps[q];
            cap_img[c++] = i;
        }
    for (size_t k = 0; k < n_models && !st; k++) {
        pi[k] = pt[k] = NULL;
        for (size_t j = 0; j < k; j++) {
            if (!pi[k] && img[j] == img[k]) pi[k] = pi[j];
            if (!pt[k] && txt[j] == txt[k]) pt[k] = pt[j];
        }
        if (!pi[k] && !(st = gather_rows(img[k], imgs, ni, &xi[k], err))) pi[k] = &xi[k];
        if (!st && !pt[k] && !(st = gather_rows(txt[k], caps, nc, &xt[k], err))) pt[k] = &xt[k];
    }
    if (!st) {
        ei = (duet_mat){duet_alloc_array(ni, o * sizeof(float)), ni, o};
        et = (duet_mat){duet_alloc_array(nc, o * sizeof(float)), nc, o};
        if (!ei.data || !et.data) st = duet_fail(err, DUET_ERR_NOMEM, "evaluate: out of memory");
    }
    if (!st) st = duet_ensemble_embed(ms, n_models, DUET_SIDE_IMAGE, pi, &ei, err);
    if (!st) st = duet_ensemble_embed(ms, n_models, DUET_SIDE_TEXT, pt, &et, err);
    if (!st) st = duet_recall_from_embeddings(&ei, &et, cap_img, res, err);
out:
    for (size_t k = 0; xi && xt && k < n_models; k++) { duet_mat_free(&xi[k]); duet_mat_free(&xt[k]); }
    free(caps); free(cap_img); free(xi); free(xt); free(pi); free(pt);
    duet_mat_free(&ei); duet_mat_free(&et);
    return st;
}

static void accumulate(duet_eval_result *acc, const duet_eval_result *r) {
    const double *src[2][5] = {{&r->i2t.r1, &r->i2t.r5, &r->i2t.r10, &r->i2t.medr, &r->i2t.meanr},
                               {&r->t2i.r1, &r->t2i.r5, &r->t2i.r10, &r->t2i.medr, &r->t2i.meanr}};
    double *dst[2][5] = {{&acc->i2t.r1, &acc->i2t.r5, &acc->i2t.r10, &acc->i2t.medr, &acc->i2t.meanr},
                         {&acc->t2i.r1, &acc->t2i.r5, &acc->t2i.r10, &acc->t2i.medr, &acc->t2i.meanr}};
    for (int s = 0; s < 2; s++)
        for (int k = 0; k < 5; k++) *dst[s][k] += *src[s][k];
    acc->rsum += r->rsum;
    acc->n_images += r->n_images;
    acc->n_captions += r->n_captions;
    acc->n_folds++;
}

duet_status duet_evaluate(const duet_model *m, const duet_dataset *d,
                          const duet_mat *img, const duet_mat *txt,
                          duet_split s, size_t fold_size,
                          duet_eval_result *res, duet_error *err) {
    return duet_evaluate_ensemble(&m, &img, &txt, 1, d, s, fold_size, res, err);
}

duet_status duet_evaluate_features(const duet_model *m, const duet_dataset *d,
                                   const duet_features *img, const duet_features *txt,
                                   duet_split s, size_t fold_size, int check_finite,
                                   duet_eval_result *res, duet_error *err) {
    return duet_evaluate_ensemble_features(&m, &img, &txt, 1, d, s, fold_size, check_finite, res, err);
}

duet_status duet_evaluate_ensemble(const duet_model *const *ms, const duet_mat *const *img,
                                   const duet_mat *const *txt, size_t n_models,
                                   const duet_dataset *d, duet_split s, size_t fold_size,
                                   duet_eval_result *res, duet_error *err) {
    memset(res, 0, sizeof *res);
    duet_features **fs = duet_calloc_array(2 * n_models + 1, sizeof *fs);
    if (!fs) return duet_fail(err, DUET_ERR_NOMEM, "evaluate: out of memory");
    duet_status st = DUET_OK;
    for (size_t k = 0; k < n_models && !st; k++)
        if (!(st = duet_features_wrap(img[k], &fs[k], err))) st = duet_features_wrap(txt[k], &fs[n_models + k], err);
    if (!st)
        st = duet_evaluate_ensemble_features(ms, (const duet_features *const *)fs,
                                             (const duet_features *const *)fs + n_models, n_models, d, s,
                                             fold_size, 1, res, err);
    for (size_t k = 0; k < 2 * n_models; k++) duet_features_close(fs[k]);
    free(fs);
    return st;
}

duet_status duet_evaluate_ensemble_features(const duet_model *const *ms, const duet_features *const *img,
                                            const duet_features *const *txt, size_t n_models,
                                            const duet_dataset *d, duet_split s, size_t fold_size,
                                            int check_finite, duet_eval_result *res, duet_error *err) {
    memset(res, 0, sizeof *res);
    if (n_models == 0) return duet_fail(err, DUET_ERR_INVALID_ARG, "evaluate: no model");
    duet_status st = DUET_OK;
    for (size_t k = 0; k < n_models; k++) {
        char in[64], tn[64];
        snprintf(in, sizeof in, n_models > 1 ? "image features of model %zu" : "image features", k + 1);
        snprintf(tn, sizeof tn, n_models > 1 ? "text features of model %zu" : "text features", k + 1);
        if ((st = duet_check_feature_sources(d, img[k], in, txt[k], tn, check_finite, err))) return st;
        size_t ci = duet_features_cols(img[k]), ct = duet_features_cols(txt[k]);
        if (ci != duet_model_dim(ms[k], DUET_SIDE_IMAGE) || ct != duet_model_dim(ms[k], DUET_SIDE_TEXT))
            return duet_fail(err, DUET_ERR_SHAPE,
                             "evaluate: %s are %zu-D (image) and %zu-D (text), the "
                             "model takes %zu-D and %zu-D", n_models > 1 ? "an ensemble member's features" : "features",
                             ci, ct, duet_model_dim(ms[k], DUET_SIDE_IMAGE), duet_model_dim(ms[k], DUET_SIDE_TEXT));
    }
    size_t *all = NULL, n_all = 0;
    if ((st = duet_dataset_split_images(d, s, &all, &n_all, err))) return st;
    /* only images with captions take part */
    size_t n = 0;
    for (size_t i = 0; i < n_all; i++)
        if (d->image_cap_start[all[i] + 1] > d->image_cap_start[all[i]]) all[n++] = all[i];
    if (n == 0) {
        free(all);
        return duet_fail(err, DUET_ERR_EMPTY, "evaluate: split '%s' of %s has no images with captions",
                         duet_split_name(s), d->source);
    }
    size_t fs = fold_size ? fold_size : n;
    size_t folds = n / fs ? n / fs : 1;
    if (fold_size && n < fold_size) fs = n;
    for (size_t f = 0; f < folds && !st; f++) {
        duet_eval_result r;
        st = evaluate_images(ms, img, txt, n_models, d, all + f * fs, fs, &r, err);
        if (!st) accumulate(res, &r);
    }
    free(all);
    if (st) return st;
    double k = (double)res->n_folds;
    duet_recall *rr[2] = {&res->i2t, &res->t2i};
    for (int q = 0; q < 2; q++) {
        rr[q]->r1 /= k; rr[q]->r5 /= k; rr[q]->r10 /= k;
        rr[q]->medr /= k; rr[q]->meanr /= k;
    }
    res->rsum /= k;
    return DUET_OK;
}
