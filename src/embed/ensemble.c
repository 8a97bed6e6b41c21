/* ensemble.c -- an ensemble as one model (docs/MODEL.md, "Ensembles"):
 * N members that take the same input features; an embedding is the
 * members' L2-normalized embeddings concatenated and scaled by 1/sqrt(N),
 * so the inner product of two is the mean of the members' cosines and an
 * index, a search, the server and localization serve an ensemble exactly
 * as one model. duet_evaluate_ensemble (members with their own features)
 * embeds through the same duet_ensemble_embed. */
#include "embed/embed.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ROWS 8192   /* rows embedded per member at a time */

static int same_str(const char *a, const char *b) { return !a || !b || strcmp(a, b) == 0; }

duet_status duet_model_ensemble(duet_model *const *members, size_t n, duet_model **out, duet_error *err) {
    *out = NULL;
    if (n < 1 || n > DUET_ENSEMBLE_MAX)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "ensemble: %zu members (1..%d)", n, DUET_ENSEMBLE_MAX);
    const duet_model *a = members[0];
    size_t total = 0;
    for (size_t k = 0; k < n; k++) {
        const duet_model *m = members[k];
        if (m->n_members)
            return duet_fail(err, DUET_ERR_UNSUPPORTED, "ensemble: member %zu is itself an ensemble of %zu models: "
                             "give its members' files instead", k + 1, m->n_members);
        if (m->br[0].d_in != a->br[0].d_in || m->br[1].d_in != a->br[1].d_in)
            return duet_fail(err, DUET_ERR_SHAPE, "ensemble: member %zu takes %zu-D image and %zu-D text features, "
                             "member 1 %zu-D and %zu-D: the members of an ensemble share their input features",
                             k + 1, m->br[0].d_in, m->br[1].d_in, a->br[0].d_in, a->br[1].d_in);
        if (!same_str(m->info.text_model_hash, a->info.text_model_hash))
            return duet_fail(err, DUET_ERR_INVALID_ARG, "ensemble: member %zu was trained on captions encoded by "
                             "text model %s, member 1 by %s: the members of an ensemble share one text model", k + 1,
                             m->info.text_model_hash, a->info.text_model_hash);
        if (!same_str(m->info.image_model, a->info.image_model))
            return duet_fail(err, DUET_ERR_INVALID_ARG, "ensemble: member %zu's image features come from '%s', "
                             "member 1's from '%s'", k + 1, m->info.image_model, a->info.image_model);
        total += m->p.embed_dim;
    }
    duet_model *e = calloc(1, sizeof *e);
    duet_model **mm = calloc(n, sizeof *mm);
    if (!e || !mm) { free(e); free(mm); return duet_fail(err, DUET_ERR_NOMEM, "ensemble: out of memory"); }
    e->p = a->p;
    e->p.embed_dim = total;
    for (int s = 0; s < 2; s++) e->br[s] = (duet_branch){a->br[s].d_in, a->p.hidden, total, a->p.linear};
    e->embed_prec = a->embed_prec;
    memcpy(e->isa, a->isa, sizeof e->isa);
    int oom = 0;
    const duet_model_info *ai = &a->info;
    e->info.dataset = duet_strdup_or_flag(ai->dataset, &oom);
    e->info.image_features = duet_strdup_or_flag(ai->image_features, &oom);
    e->info.text_features = duet_strdup_or_flag(ai->text_features, &oom);
    e->info.text_model = duet_strdup_or_flag(ai->text_model, &oom);
    e->info.text_model_hash = duet_strdup_or_flag(ai->text_model_hash, &oom);
    e->info.image_model = duet_strdup_or_flag(ai->image_model, &oom);
    for (size_t k = 0; k < n; k++) e->info.epochs_run += members[k]->info.epochs_run;
    e->members = mm;
    e->n_members = n;
    if (oom) { e->n_members = 0; duet_model_free(e); return duet_fail(err, DUET_ERR_NOMEM, "ensemble: out of memory"); }
    memcpy(mm, members, n * sizeof *mm);   /* taken over */
    *out = e;
    return DUET_OK;
}

size_t duet_model_members(const duet_model *m) { return m->n_members ? m->n_members : 1; }

const duet_model *duet_model_member(const duet_model *m, size_t k) {
    if (!m->n_members) return k == 0 ? m : NULL;
    return k < m->n_members ? m->members[k] : NULL;
}

duet_status duet_ensemble_embed(const duet_model *const *ms, size_t n, int side, const duet_mat *const *x,
                                duet_mat *out, duet_error *err) {
    if (n < 1) return duet_fail(err, DUET_ERR_INVALID_ARG, "ensemble: no member");
    if (side != DUET_SIDE_IMAGE && side != DUET_SIDE_TEXT)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "embed: side %d is not image (0) or text (1)", side);
    size_t rows = x[0]->rows, total = 0;
    for (size_t k = 0; k < n; k++) {
        total += duet_model_embed_dim(ms[k]);
        if (x[k]->rows != rows)
            return duet_fail(err, DUET_ERR_SHAPE, "ensemble: member %zu's features have %zu rows, member 1's %zu",
                             k + 1, x[k]->rows, rows);
    }
    if (out->rows != rows || out->cols != total)
        return duet_fail(err, DUET_ERR_SHAPE, "embed: output is %zu x %zu, expected %zu x %zu", out->rows, out->cols,
                         rows, total);
    const float s = (float)(1.0 / sqrt((double)n));
    size_t cap = rows < ROWS ? rows : ROWS, omax = 0;
    for (size_t k = 0; k < n; k++) if (duet_model_embed_dim(ms[k]) > omax) omax = duet_model_embed_dim(ms[k]);
    float *tmp = duet_alloc_array(cap ? cap : 1, omax * sizeof(float));
    if (!tmp) return duet_fail(err, DUET_ERR_NOMEM, "ensemble: out of memory");
    duet_status st = DUET_OK;
    for (size_t r0 = 0; !st && r0 < rows; r0 += cap) {
        size_t nr = rows - r0 < cap ? rows - r0 : cap;
        for (size_t k = 0, col = 0; !st && k < n; k++) {
            size_t ok = duet_model_embed_dim(ms[k]);
            duet_mat xv = {x[k]->data + r0 * x[k]->cols, nr, x[k]->cols}, y = {tmp, nr, ok};
            st = duet_model_embed(ms[k], side, &xv, &y, err);
            for (size_t r = 0; !st && r < nr; r++) {
                float *dst = out->data + (r0 + r) * total + col;
                for (size_t c = 0; c < ok; c++) dst[c] = tmp[r * ok + c] * s;
            }
            col += ok;
        }
    }
    free(tmp);
    return st;
}

int duet_model_describe(const duet_model *m, char *buf, size_t n) {
    const duet_params *p = m->n_members ? &m->members[0]->p : &m->p;
    char arch[96];
    if (p->linear) snprintf(arch, sizeof arch, "linear %zu-%zu", m->br[1].d_in, p->embed_dim);
    else snprintf(arch, sizeof arch, "MLP %zu-%zu-%zu", m->br[1].d_in, p->hidden, p->embed_dim);
    if (!m->n_members)
        return snprintf(buf, n, "one model (%s, seed %llu), %zu-D", arch, (unsigned long long)p->seed, p->embed_dim);
    int same = 1;
    for (size_t k = 1; k < m->n_members; k++) {
        const duet_params *q = &m->members[k]->p;
        same &= q->linear == p->linear && q->hidden == p->hidden && q->embed_dim == p->embed_dim;
    }
    char seeds[256] = "";
    size_t o = 0;
    for (size_t k = 0; k < m->n_members && o + 24 < sizeof seeds; k++)
        o += (size_t)snprintf(seeds + o, sizeof seeds - o, "%s%llu", k ? ", " : "",
                              (unsigned long long)m->members[k]->p.seed);
    return snprintf(buf, n, "ensemble of %zu models (%s, seeds %s), %zu-D", m->n_members,
                    same ? arch : "various architectures", seeds, m->p.embed_dim);
}

/* ------------------------------------------------------------ the file */

static json_t *str_or_null(const char *s) { return s ? json_string(s) : json_null(); }

duet_status duet_ensemble_save(const duet_model *m, const char *path, duet_error *err) {
    size_t n = m->n_members;
    const duet_model_info *in = &m->info;
    json_t *h = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:{s:o, s:o, s:o, s:o, s:o, s:o, s:i, s:i, s:f}}",
                          "kind", "duet-ensemble", "duet_version", DUET_VERSION_STRING, "inputs", "shared",
                          "n_members", (json_int_t)n, "d_image", (json_int_t)m->br[0].d_in, "d_text",
                          (json_int_t)m->br[1].d_in, "embed_dim", (json_int_t)m->p.embed_dim, "info", "dataset",
                          str_or_null(in->dataset), "image_features", str_or_null(in->image_features),
                          "text_features", str_or_null(in->text_features), "text_model", str_or_null(in->text_model),
                          "text_model_hash", str_or_null(in->text_model_hash), "image_model",
                          str_or_null(in->image_model), "epochs_run", in->epochs_run, "best_epoch", in->best_epoch,
                          "best_val_rsum", (double)in->best_val_rsum);
    json_t *arr = json_array();
    duet_tf_array *a = calloc(2 * n, sizeof *a);
    char (*names)[32] = calloc(2 * n, sizeof *names);
    int oom = !h || !arr || !a || !names;
    for (size_t k = 0; !oom && k < n; k++) {
        char *mh = duet_model_header_json(m->members[k]);
        json_t *mj = mh ? json_loads(mh, 0, NULL) : NULL;
        free(mh);
        if (!mj) { oom = 1; break; }
        json_object_del(mj, "kind");
        json_object_del(mj, "duet_version");
        json_array_append_new(arr, mj);
        snprintf(names[2 * k], sizeof names[0], "params.%zu", k);
        snprintf(names[2 * k + 1], sizeof names[0], "buffers.%zu", k);
        a[2 * k] = (duet_tf_array){names[2 * k], m->members[k]->params, m->members[k]->n_params};
        a[2 * k + 1] = (duet_tf_array){names[2 * k + 1], m->members[k]->buffers, m->members[k]->n_buffers};
    }
    char *txt = NULL;
    if (!oom) {
        json_object_set(h, "members", arr);
        txt = json_dumps(h, JSON_PRESERVE_ORDER);
    }
    duet_status st = txt ? duet_tf_write(path, DUET_MODEL_MAGIC, DUET_MODEL_FORMAT_VERSION, txt, a, 2 * n, err)
                         : duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    free(txt); free(a); free(names);
    json_decref(arr);
    json_decref(h);
    return st;
}

duet_status duet_ensemble_from_tf(const duet_tf_file *tf, const char *path, duet_model **out, duet_error *err) {
    *out = NULL;
    json_t *h = tf->header, *mem = json_object_get(h, "members");
    const char *inputs = json_string_value(json_object_get(h, "inputs"));
    if (!inputs || strcmp(inputs, "shared") != 0)
        return duet_fail(err, DUET_ERR_UNSUPPORTED, "%s: field 'inputs' is '%s': this duet reads ensembles whose "
                         "members share their input features (\"shared\")", path, inputs ? inputs : "missing");
    json_t *jn = json_object_get(h, "n_members");
    size_t n = json_is_integer(jn) && json_integer_value(jn) > 0 ? (size_t)json_integer_value(jn) : 0;
    if (!n || n > DUET_ENSEMBLE_MAX || !json_is_array(mem) || json_array_size(mem) != n)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: fields n_members (1..%d) and members[] disagree or are missing",
                         path, DUET_ENSEMBLE_MAX);
    duet_model *ms[DUET_ENSEMBLE_MAX] = {0};
    duet_status st = DUET_OK;
    for (size_t k = 0; !st && k < n; k++) {
        char pn[32], bn[32];
        snprintf(pn, sizeof pn, "params.%zu", k);
        snprintf(bn, sizeof bn, "buffers.%zu", k);
        json_t *mk = json_array_get(mem, k);
        if (!json_is_object(mk)) st = duet_fail(err, DUET_ERR_FORMAT, "%s: field members[%zu] is not an object", path, k);
        else st = duet_model_from_header(mk, tf, pn, bn, path, &ms[k], err);
        if (st) duet_fail_wrap(err, st, "%s: member %zu", path, k + 1);
    }
    duet_model *e = NULL;
    if (!st) st = duet_model_ensemble(ms, n, &e, err);
    if (st) {
        for (size_t k = 0; k < n; k++) duet_model_free(ms[k]);
        return st;
    }
    json_t *in = json_object_get(h, "info"), *v;
    if ((v = json_object_get(in, "best_epoch")) && json_is_integer(v)) e->info.best_epoch = (int)json_integer_value(v);
    if ((v = json_object_get(in, "best_val_rsum")) && json_is_number(v)) e->info.best_val_rsum = (float)json_number_value(v);
    long long d[3] = {0, 0, 0};
    const char *keys[3] = {"d_image", "d_text", "embed_dim"};
    for (int i = 0; i < 3; i++) d[i] = json_integer_value(json_object_get(h, keys[i]));
    if ((size_t)d[0] != e->br[0].d_in || (size_t)d[1] != e->br[1].d_in || (size_t)d[2] != e->p.embed_dim) {
        duet_model_free(e);
        return duet_fail(err, DUET_ERR_FORMAT, "%s: header d_image, d_text, embed_dim (%lld, %lld, %lld) disagree with "
                         "the members", path, d[0], d[1], d[2]);
    }
    *out = e;
    return DUET_OK;
}
