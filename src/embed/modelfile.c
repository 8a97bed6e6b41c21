/* modelfile.c -- the model file: a duet tensor file (core.h) with magic
 * "DUETMODL", the shapes, every hyper-parameter and the provenance in its JSON
 * header, and two arrays: "params" (both branches, docs/MODEL.md order) and
 * "buffers" (batch-norm running statistics). */
#include "embed/embed.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

const char DUET_MODEL_MAGIC[8] = {'D', 'U', 'E', 'T', 'M', 'O', 'D', 'L'};
#define MODEL_MAGIC DUET_MODEL_MAGIC

static json_t *params_json(const duet_params *p) {
    json_t *o = json_pack(
        "{s:b, s:I, s:I, s:f, s:f, s:f, s:f, s:I, s:f, s:f, s:f, s:f, s:b,"
        " s:I, s:I, s:s, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:i, s:i, s:I, s:s}",
        "linear", p->linear, "hidden", (json_int_t)p->hidden,
        "embed_dim", (json_int_t)p->embed_dim, "dropout", (double)p->dropout,
        "bn_eps", (double)p->bn_eps, "bn_momentum", (double)p->bn_momentum,
        "margin", (double)p->margin, "top_k", (json_int_t)p->top_k,
        "w_i2t", (double)p->w_i2t, "w_t2i", (double)p->w_t2i,
        "w_img_struct", (double)p->w_img_struct,
        "w_txt_struct", (double)p->w_txt_struct, "one_way", p->one_way,
        "batch_images", (json_int_t)p->batch_images,
        "sents_per_image", (json_int_t)p->sents_per_image,
        "optimizer", p->optimizer == DUET_OPT_SGD ? "sgd" : "adam",
        "lr", (double)p->lr, "lr_decay", (double)p->lr_decay,
        "momentum", (double)p->momentum, "weight_decay", (double)p->weight_decay,
        "adam_beta1", (double)p->adam_beta1, "adam_beta2", (double)p->adam_beta2,
        "adam_eps", (double)p->adam_eps, "epochs", p->epochs,
        "patience", p->patience, "seed", (json_int_t)p->seed,
        "precision", duet_precision_name(p->precision));
    if (o && p->top_k_final) /* only when set: other files read as before */
        json_object_set_new(o, "top_k_final", json_integer((json_int_t)p->top_k_final));
    return o;
}

static json_t *str_or_null(const char *s) { return s ? json_string(s) : json_null(); }

char *duet_model_header_json(const duet_model *m) {
    const duet_model_info *in = &m->info;
    json_t *h = json_pack("{s:s, s:s, s:I, s:I, s:o, s:{s:o, s:o, s:o, s:o, s:o, s:o, s:i, s:i, s:f, s:o}}",
        "kind", "duet-model", "duet_version", DUET_VERSION_STRING,
        "d_image", (json_int_t)m->br[0].d_in, "d_text", (json_int_t)m->br[1].d_in,
        "params", params_json(&m->p),
        "info", "dataset", str_or_null(in->dataset),
        "image_features", str_or_null(in->image_features),
        "text_features", str_or_null(in->text_features),
        "text_model", str_or_null(in->text_model),
        "text_model_hash", str_or_null(in->text_model_hash),
        "image_model", str_or_null(in->image_model),
        "epochs_run", in->epochs_run, "best_epoch", in->best_epoch,
        "best_val_rsum", (double)in->best_val_rsum,
        "isa", m->isa[0] ? json_string(m->isa) : json_null());
    if (!h) return NULL;
    char *s = json_dumps(h, JSON_PRESERVE_ORDER);
    json_decref(h);
    return s;
}

/* Field readers: each names the file and the field path on failure. */
static duet_status get_int(json_t *o, const char *path, const char *obj,
                           const char *key, long long lo, long long hi,
                           long long *out, duet_error *err) {
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        return duet_fail(err, DUET_ERR_FORMAT, "%s: field %s%s is missing or not an integer",
                         path, obj, key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: field %s%s = %lld is outside %lld..%lld",
                         path, obj, key, x, lo, hi);
    *out = x;
    return DUET_OK;
}

static duet_status get_num(json_t *o, const char *path, const char *key,
                           float *out, duet_error *err) {
    json_t *v = json_object_get(o, key);
    if (!json_is_number(v))
        return duet_fail(err, DUET_ERR_FORMAT, "%s: field params.%s is missing or not a number",
                         path, key);
    *out = (float)json_number_value(v);
    return DUET_OK;
}

static duet_status get_bool(json_t *o, const char *path, const char *key,
                            int *out, duet_error *err) {
    json_t *v = json_object_get(o, key);
    if (!json_is_boolean(v))
        return duet_fail(err, DUET_ERR_FORMAT, "%s: field params.%s is missing or not a boolean",
                         path, key);
    *out = json_is_true(v);
    return DUET_OK;
}

static duet_status parse_params(json_t *o, const char *path, duet_params *p,
                                duet_error *err) {
    if (!json_is_object(o))
        return duet_fail(err, DUET_ERR_FORMAT, "%s: field 'params' is missing", path);
    *p = duet_default_params();
    long long v;
    duet_status st;
#define INT(key, lo, hi, dst)                                              \
    do {                                                                   \
        if ((st = get_int(o, path, "params.", key, lo, hi, &v, err))) return st; \
        dst = v;                                                           \
    } while (0)
#define NUM(key, dst) if ((st = get_num(o, path, key, &dst, err))) return st;
#define BOOL(key, dst) if ((st = get_bool(o, path, key, &dst, err))) return st;
    BOOL("linear", p->linear);
    INT("hidden", 1, 1 << 20, p->hidden);
    INT("embed_dim", 1, 1 << 20, p->embed_dim);
    NUM("dropout", p->dropout); NUM("bn_eps", p->bn_eps);
    NUM("bn_momentum", p->bn_momentum); NUM("margin", p->margin);
    INT("top_k", 1, 100000, p->top_k);
    if (json_object_get(o, "top_k_final")) INT("top_k_final", 0, 100000, p->top_k_final);
    NUM("w_i2t", p->w_i2t); NUM("w_t2i", p->w_t2i);
    NUM("w_img_struct", p->w_img_struct); NUM("w_txt_struct", p->w_txt_struct);
    BOOL("one_way", p->one_way);
    INT("batch_images", 2, 1000000, p->batch_images);
    INT("sents_per_image", 1, 1000, p->sents_per_image);
    NUM("lr", p->lr); NUM("lr_decay", p->lr_decay); NUM("momentum", p->momentum);
    NUM("weight_decay", p->weight_decay); NUM("adam_beta1", p->adam_beta1);
    NUM("adam_beta2", p->adam_beta2); NUM("adam_eps", p->adam_eps);
    INT("epochs", 0, 100000, p->epochs);
    INT("patience", 0, 100000, p->patience);
    INT("seed", 0, (long long)(((unsigned long long)1 << 63) - 1), p->seed);
#undef INT
#undef NUM
#undef BOOL
    const char *opt = json_string_value(json_object_get(o, "optimizer"));
    if (!opt || (strcmp(opt, "adam") && strcmp(opt, "sgd")))
        return duet_fail(err, DUET_ERR_FORMAT, "%s: field params.optimizer must be \"adam\" or \"sgd\"", path);
    p->optimizer = strcmp(opt, "sgd") == 0 ? DUET_OPT_SGD : DUET_OPT_ADAM;
    /* the training precision; files from before it was recorded are f32 */
    json_t *prec = json_object_get(o, "precision");
    if (prec && (!json_is_string(prec) || duet_precision_parse(json_string_value(prec)) < 0))
        return duet_fail(err, DUET_ERR_FORMAT, "%s: field params.precision must be \"f32\", "
                         "\"bf16\" or \"auto\"", path);
    p->precision = prec ? (duet_precision)duet_precision_parse(json_string_value(prec))
                        : DUET_PRECISION_F32;
    st = duet_params_validate(p, err);
    if (st) return duet_fail_wrap(err, DUET_ERR_FORMAT, "%s: params", path);
    return DUET_OK;
}

static duet_status parse_info(json_t *o, const char *path, duet_model_info *in,
                              duet_error *err) {
    if (!json_is_object(o))
        return duet_fail(err, DUET_ERR_FORMAT, "%s: field 'info' is missing", path);
    const char *keys[6] = {"dataset", "image_features", "text_features", "text_model",
                           "text_model_hash", "image_model"};
    char **dst[6] = {&in->dataset, &in->image_features, &in->text_features, &in->text_model,
                     &in->text_model_hash, &in->image_model};
    for (int i = 0; i < 6; i++) {
        json_t *v = json_object_get(o, keys[i]);
        if (v && !json_is_null(v) && !json_is_string(v))
            return duet_fail(err, DUET_ERR_FORMAT, "%s: field info.%s is not a string", path, keys[i]);
        *dst[i] = json_is_string(v) ? duet_strdup(json_string_value(v)) : NULL;
    }
    long long x;
    duet_status st;
    if ((st = get_int(o, path, "info.", "epochs_run", 0, 1000000, &x, err))) return st;
    in->epochs_run = (int)x;
    if ((st = get_int(o, path, "info.", "best_epoch", 0, 1000000, &x, err))) return st;
    in->best_epoch = (int)x;
    json_t *r = json_object_get(o, "best_val_rsum");
    if (!json_is_number(r))
        return duet_fail(err, DUET_ERR_FORMAT, "%s: field info.best_val_rsum is missing", path);
    in->best_val_rsum = (float)json_number_value(r);
    return DUET_OK;
}

duet_status duet_model_load(const char *path, duet_model **out, duet_error *err) {
    *out = NULL;
    duet_tf_file tf;
    duet_status st = duet_tf_read(path, MODEL_MAGIC, DUET_MODEL_FORMAT_VERSION,
                                  "model", &tf, err);
    if (st) return st;
    const char *kind = json_string_value(json_object_get(tf.header, "kind"));
    if (kind && strcmp(kind, "duet-ensemble") == 0) st = duet_ensemble_from_tf(&tf, path, out, err);
    else st = duet_model_from_tf(&tf, path, out, err);
    duet_tf_free(&tf);
    return st;
}

duet_status duet_model_save(const duet_model *m, const char *path,
                            duet_error *err) {
    if (m->n_members) return duet_ensemble_save(m, path, err);
    char *hdr = duet_model_header_json(m);
    if (!hdr) return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    duet_tf_array arrays[2] = {{"params", m->params, m->n_params},
                               {"buffers", m->buffers, m->n_buffers}};
    duet_status st = duet_tf_write(path, MODEL_MAGIC, DUET_MODEL_FORMAT_VERSION,
                                   hdr, arrays, 2, err);
    free(hdr);
    return st;
}

duet_status duet_model_from_tf(const duet_tf_file *tfp, const char *path,
                               duet_model **out, duet_error *err) {
    *out = NULL;
    const char *kind = json_string_value(json_object_get(tfp->header, "kind"));
    if (kind && strcmp(kind, "duet-ensemble") == 0)
        return duet_fail(err, DUET_ERR_UNSUPPORTED, "%s is an ensemble model file (%lld members): this needs one "
                         "model (a training checkpoint or a member file), not an ensemble", path,
                         (long long)json_integer_value(json_object_get(tfp->header, "n_members")));
    if (!kind || strcmp(kind, "duet-model") != 0)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: field 'kind' is not \"duet-model\"", path);
    return duet_model_from_header(tfp->header, tfp, "params", "buffers", path, out, err);
}

duet_status duet_model_from_header(const void *hv, const duet_tf_file *tfp, const char *params_name,
                                   const char *buffers_name, const char *path, duet_model **out,
                                   duet_error *err) {
    *out = NULL;
    const duet_tf_file tf = *tfp;
    json_t *h = (json_t *)hv;
    duet_status st;
    duet_params p;
    long long di = 0, dt = 0;
    duet_model *m = NULL;
    if ((st = get_int(h, path, "", "d_image", 1, 1 << 20, &di, err)) ||
        (st = get_int(h, path, "", "d_text", 1, 1 << 20, &dt, err)) ||
        (st = parse_params(json_object_get(h, "params"), path, &p, err)))
        goto done;
    if ((st = duet_model_alloc((size_t)di, (size_t)dt, &p, &m, err))) goto done;
    if ((st = parse_info(json_object_get(h, "info"), path, &m->info, err))) goto done;
    /* where it was trained: info.isa, absent from older files */
    const char *isa = json_string_value(json_object_get(json_object_get(h, "info"), "isa"));
    snprintf(m->isa, sizeof m->isa, "%s", isa ? isa : "");
    const float *pa = duet_tf_array_get(&tf, path, params_name, m->n_params, NULL, err);
    const float *bu = pa ? duet_tf_array_get(&tf, path, buffers_name, m->n_buffers, NULL, err) : NULL;
    if (!pa || !bu) { st = err ? err->status : DUET_ERR_FORMAT; goto done; }
    memcpy(m->params, pa, m->n_params * sizeof(float));
    memcpy(m->buffers, bu, m->n_buffers * sizeof(float));
    duet_mat pm = {m->params, m->n_params, 1}, bm = {m->buffers, m->n_buffers, 1};
    if ((st = duet_mat_check_finite(&pm, path, err)) ||
        (st = duet_mat_check_finite(&bm, path, err)))
        goto done;
done:
    if (st) { duet_model_free(m); return st; }
    *out = m;
    return DUET_OK;
}
