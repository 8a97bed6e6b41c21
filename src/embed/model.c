/* model.c -- parameters, the model object and evaluation-mode embedding
 * (in the model's precision: f32, or bf16 products on its bf16 mirror). */
#include "embed/embed.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

duet_params duet_default_params(void) {
    duet_params p;
    memset(&p, 0, sizeof p);
    p.linear = 0;
    p.hidden = 2048;
    p.embed_dim = 512;
    p.dropout = 0.5f;
    p.bn_eps = 1e-5f;
    p.bn_momentum = 0.1f;
    p.margin = 0.05f;
    p.top_k = 10;
    p.w_i2t = 1.0f;
    p.w_t2i = 1.5f;
    p.w_img_struct = 0.0f;
    p.w_txt_struct = 0.05f;
    p.one_way = 0;
    p.batch_images = 500;
    p.sents_per_image = 2;
    p.optimizer = DUET_OPT_ADAM;
    p.lr = 1e-4f;
    p.lr_decay = 0.794f;
    p.momentum = 0.9f;
    p.weight_decay = 0.0f;
    p.adam_beta1 = 0.9f;
    p.adam_beta2 = 0.999f;
    p.adam_eps = 1e-8f;
    p.epochs = 20;
    p.patience = 0;
    p.seed = 1;
    p.threads = 0;
    p.precision = DUET_PRECISION_F32;
    return p;
}

#define DIM_MAX ((size_t)1 << 20)

static int finite_in(float v, float lo, float hi) {
    return v - v == 0.0f && v >= lo && v <= hi;
}

size_t duet_top_k_at(const duet_params *p, int e) {
    if (!p->top_k_final || p->top_k_final >= p->top_k || p->epochs <= 1 || e <= 0) return p->top_k;
    if (e >= p->epochs - 1) return p->top_k_final;
    double k = (double)p->top_k * pow((double)p->top_k_final / (double)p->top_k, (double)e / (double)(p->epochs - 1));
    size_t r = (size_t)lround(k);
    return r < p->top_k_final ? p->top_k_final : r > p->top_k ? p->top_k : r;
}

duet_status duet_params_validate(const duet_params *p, duet_error *err) {
#define BAD(field, ...) return duet_fail(err, DUET_ERR_INVALID_ARG, field ": " __VA_ARGS__)
    if (p->hidden < 1 || p->hidden > DIM_MAX) BAD("hidden", "%zu is outside 1..%zu", p->hidden, DIM_MAX);
    if (p->embed_dim < 1 || p->embed_dim > DIM_MAX) BAD("embed_dim", "%zu is outside 1..%zu", p->embed_dim, DIM_MAX);
    if (!finite_in(p->dropout, 0.0f, 0.999f)) BAD("dropout", "%g is outside [0, 1)", (double)p->dropout);
    if (!finite_in(p->bn_eps, 1e-12f, 1.0f)) BAD("bn_eps", "%g is outside [1e-12, 1]", (double)p->bn_eps);
    if (!finite_in(p->bn_momentum, 0.0f, 1.0f)) BAD("bn_momentum", "%g is outside [0, 1]", (double)p->bn_momentum);
    if (!finite_in(p->margin, 0.0f, 4.0f)) BAD("margin", "%g is outside [0, 4]", (double)p->margin);
    if (p->top_k < 1 || p->top_k > 100000) BAD("top_k", "%zu is outside 1..100000", p->top_k);
    if (p->top_k_final > p->top_k) BAD("top_k_final", "%zu is above top_k (%zu): K only falls", p->top_k_final, p->top_k);
    if (!finite_in(p->w_i2t, 0.0f, 1e6f)) BAD("w_i2t", "%g must be finite and >= 0", (double)p->w_i2t);
    if (!finite_in(p->w_t2i, 0.0f, 1e6f)) BAD("w_t2i", "%g must be finite and >= 0", (double)p->w_t2i);
    if (!finite_in(p->w_img_struct, 0.0f, 1e6f)) BAD("w_img_struct", "%g must be finite and >= 0", (double)p->w_img_struct);
    if (!finite_in(p->w_txt_struct, 0.0f, 1e6f)) BAD("w_txt_struct", "%g must be finite and >= 0", (double)p->w_txt_struct);
    if (p->batch_images < 2 || p->batch_images > 1000000) BAD("batch_images", "%zu is outside 2..1000000", p->batch_images);
    if (p->sents_per_image < 1 || p->sents_per_image > 1000) BAD("sents_per_image", "%zu is outside 1..1000", p->sents_per_image);
    if (p->optimizer != DUET_OPT_ADAM && p->optimizer != DUET_OPT_SGD) BAD("optimizer", "unknown optimizer %d", (int)p->optimizer);
    if (!finite_in(p->lr, 0.0f, 100.0f) || p->lr <= 0.0f) BAD("lr", "%g is outside (0, 100]", (double)p->lr);
    if (!finite_in(p->lr_decay, 0.0f, 1.0f) || p->lr_decay <= 0.0f) BAD("lr_decay", "%g is outside (0, 1]", (double)p->lr_decay);
    if (!finite_in(p->momentum, 0.0f, 0.9999f)) BAD("momentum", "%g is outside [0, 1)", (double)p->momentum);
    if (!finite_in(p->weight_decay, 0.0f, 1.0f)) BAD("weight_decay", "%g is outside [0, 1]", (double)p->weight_decay);
    if (!finite_in(p->adam_beta1, 0.0f, 0.99999f)) BAD("adam_beta1", "%g is outside [0, 1)", (double)p->adam_beta1);
    if (!finite_in(p->adam_beta2, 0.0f, 0.99999999f)) BAD("adam_beta2", "%g is outside [0, 1)", (double)p->adam_beta2);
    if (!finite_in(p->adam_eps, 1e-30f, 1.0f)) BAD("adam_eps", "%g is outside (0, 1]", (double)p->adam_eps);
    if (p->epochs < 0 || p->epochs > 100000) BAD("epochs", "%d is outside 0..100000", p->epochs);
    if (p->patience < 0) BAD("patience", "%d must be >= 0", p->patience);
    if (p->threads < 0 || p->threads > 1024) BAD("threads", "%d is outside 0..1024", p->threads);
    if (p->precision != DUET_PRECISION_AUTO && p->precision != DUET_PRECISION_F32 &&
        p->precision != DUET_PRECISION_BF16)
        BAD("precision", "%d is not auto, f32 or bf16", (int)p->precision);
    if (p->one_way && p->w_i2t == 0.0f && p->w_txt_struct == 0.0f && p->w_img_struct == 0.0f)
        BAD("one_way", "with w_i2t = 0 and no structure term there is no loss left");
#undef BAD
    return DUET_OK;
}

void duet_model_views(const duet_model *m, float *slab, duet_bparams v[2]) {
    size_t n0 = duet_branch_layout(&m->br[0], slab, &v[0]);
    duet_branch_layout(&m->br[1], slab + n0, &v[1]);
}

static void info_free(duet_model_info *i) {
    free(i->dataset); free(i->image_features); free(i->text_features);
    free(i->text_model); free(i->text_model_hash); free(i->image_model);
    memset(i, 0, sizeof *i);
}

void duet_model_free(duet_model *m) {
    if (!m) return;
    for (size_t k = 0; k < m->n_members; k++) duet_model_free(m->members[k]);
    free(m->members);
    free(m->params);
    free(m->buffers);
    free(m->params_h);
    info_free(&m->info);
    free(m);
}

duet_status duet_model_alloc(size_t d_image, size_t d_text,
                             const duet_params *p, duet_model **out,
                             duet_error *err) {
    *out = NULL;
    duet_status st = duet_params_validate(p, err);
    if (st) return st;
    if (d_image < 1 || d_image > DIM_MAX || d_text < 1 || d_text > DIM_MAX)
        return duet_fail(err, DUET_ERR_INVALID_ARG,
                         "model: input widths %zu (image) and %zu (text) must be "
                         "in 1..%zu", d_image, d_text, DIM_MAX);
    duet_model *m = calloc(1, sizeof *m);
    if (!m) return duet_fail(err, DUET_ERR_NOMEM, "model: out of memory");
    m->p = *p;
    size_t dims[2] = {d_image, d_text};
    size_t total = 0;
    for (int s = 0; s < 2; s++) {
        m->br[s] = (duet_branch){dims[s], p->hidden, p->embed_dim, p->linear};
        /* overflow guard: d_in*h and h*o are < 2^40 with DIM_MAX = 2^20 */
        total += duet_branch_layout(&m->br[s], NULL, NULL);
    }
    m->n_params = total;
    m->n_buffers = p->linear ? 0 : 4 * p->hidden;
    m->params = duet_embed_alloc(m->n_params, sizeof(float), 1);
    m->buffers = duet_calloc_array(m->n_buffers, sizeof(float));
    if (!m->params || !m->buffers) {
        duet_model_free(m);
        return duet_fail(err, DUET_ERR_NOMEM,
                         "model: out of memory for %zu parameters", total);
    }
    duet_model_views(m, m->params, m->w);
    for (int s = 0; s < 2; s++) {
        if (p->linear) {
            m->bn[s].mean = m->bn[s].var = NULL;
            continue;
        }
        m->bn[s].mean = m->buffers + (size_t)(2 * s) * p->hidden;
        m->bn[s].var = m->buffers + (size_t)(2 * s + 1) * p->hidden;
        for (size_t c = 0; c < p->hidden; c++) m->bn[s].var[c] = 1.0f;
    }
    *out = m;
    return DUET_OK;
}

static void uniform_fill(float *x, size_t n, float bound, duet_rng *rng) {
    for (size_t i = 0; i < n; i++)
        x[i] = (2.0f * duet_rng_uniform(rng) - 1.0f) * bound;
}

duet_status duet_model_create(size_t d_image, size_t d_text,
                              const duet_params *p, duet_rng *rng,
                              duet_model **out, duet_error *err) {
    duet_status st = duet_model_alloc(d_image, d_text, p, out, err);
    if (st) return st;
    duet_model *m = *out;
    for (int s = 0; s < 2; s++) {
        const duet_branch *b = &m->br[s];
        duet_bparams *w = &m->w[s];
        size_t first = b->linear ? b->out : b->hidden;
        float bd = 1.0f / sqrtf((float)b->d_in);
        uniform_fill(w->W1, b->d_in * first, bd, rng);
        uniform_fill(w->b1, first, bd, rng);
        if (b->linear) continue;
        for (size_t c = 0; c < b->hidden; c++) { w->gamma[c] = 1.0f; w->beta[c] = 0.0f; }
        float bd2 = 1.0f / sqrtf((float)b->hidden);
        uniform_fill(w->W2, b->hidden * b->out, bd2, rng);
        uniform_fill(w->b2, b->out, bd2, rng);
    }
    return DUET_OK;
}

const duet_params *duet_model_params(const duet_model *m) { return m->n_members ? NULL : &m->p; }
duet_model_info *duet_model_info_of(duet_model *m) { return &m->info; }
size_t duet_model_dim(const duet_model *m, int side) {
    return m->br[side == DUET_SIDE_TEXT].d_in;
}
size_t duet_model_embed_dim(const duet_model *m) { return m->p.embed_dim; }

#define EMBED_CHUNK 1024

duet_status duet_model_embed(const duet_model *m, int side, const duet_mat *x,
                             duet_mat *out, duet_error *err) {
    if (side != DUET_SIDE_IMAGE && side != DUET_SIDE_TEXT)
        return duet_fail(err, DUET_ERR_INVALID_ARG, "embed: side %d is not image (0) or text (1)", side);
    if (m->n_members) {   /* the members on the same features */
        const duet_mat *xs[64];
        for (size_t k = 0; k < m->n_members; k++) xs[k] = x;
        if (x->cols != m->br[side].d_in)
            return duet_fail(err, DUET_ERR_SHAPE, "embed: %s features have %zu columns, the ensemble takes %zu",
                             side == DUET_SIDE_IMAGE ? "image" : "text", x->cols, m->br[side].d_in);
        return duet_ensemble_embed((const duet_model *const *)m->members, m->n_members, side, xs, out, err);
    }
    const duet_branch *b = &m->br[side];
    const char *nm = side == DUET_SIDE_IMAGE ? "image" : "text";
    if (x->cols != b->d_in)
        return duet_fail(err, DUET_ERR_SHAPE,
                         "embed: %s features have %zu columns, the model's %s "
                         "branch takes %zu", nm, x->cols, nm, b->d_in);
    if (out->rows != x->rows || out->cols != b->out)
        return duet_fail(err, DUET_ERR_SHAPE,
                         "embed: output is %zu x %zu, expected %zu x %zu",
                         out->rows, out->cols, x->rows, b->out);
    /* Each call has its own engine, stream and workspace: concurrent calls
     * on one model share only its (read-only) weights. */
    duet_dnn dnn;
    duet_branch_ws ws;
    memset(&ws, 0, sizeof ws);
    size_t cap = x->rows < EMBED_CHUNK ? (x->rows ? x->rows : 1) : EMBED_CHUNK;
    duet_status st = duet_dnn_init(&dnn, duet_model_precision(m), err);
    if (!st) st = duet_branch_ws_init_dnn(&ws, b, cap, &dnn, err);
    duet_bnstats bn = m->bn[side];
    for (size_t r = 0; !st && r < x->rows; r += cap) {
        size_t n = x->rows - r < cap ? x->rows - r : cap;
        st = duet_branch_forward(b, &m->w[side], &bn, &m->p, x->data + r * x->cols,
                                 n, 0, NULL, NULL, &ws);
        if (st && err) *err = ws.err;
        else if (!st) memcpy(out->data + r * b->out, ws.e, n * b->out * sizeof(float));
    }
    duet_branch_ws_free(&ws);
    duet_dnn_fini(&dnn);
    return st;
}

/* Points the views' W1h/W2h into the mirror (or NULL without one). */
static void mirror_views(duet_model *m) {
    for (int s = 0; s < 2; s++) {
        duet_bparams *w = &m->w[s];
        w->W1h = m->params_h ? m->params_h + (w->W1 - m->params) : NULL;
        w->W2h = m->params_h && w->W2 ? m->params_h + (w->W2 - m->params) : NULL;
    }
}

void duet_model_sync_bf16(duet_model *m) {
    if (m->params_h) duet_f32_to_bf16(m->params, m->params_h, m->n_params);
}

duet_status duet_model_set_precision(duet_model *m, duet_precision p, duet_error *err) {
    duet_precision r;
    duet_status st = duet_precision_resolve(p, &r, err);
    if (st) return st;
    if (m->n_members) {
        for (size_t k = 0; !st && k < m->n_members; k++) st = duet_model_set_precision(m->members[k], r, err);
        if (!st) m->embed_prec = r;
        return st;
    }
    if (r == DUET_PRECISION_BF16 && !m->params_h) {
        m->params_h = duet_embed_alloc(m->n_params, sizeof(uint16_t), 0);
        if (!m->params_h)
            return duet_fail(err, DUET_ERR_NOMEM, "model: out of memory for the bf16 copy of "
                             "%zu parameters", m->n_params);
    } else if (r == DUET_PRECISION_F32) {
        free(m->params_h);
        m->params_h = NULL;
    }
    m->embed_prec = r;
    duet_model_sync_bf16(m);
    mirror_views(m);
    return DUET_OK;
}

duet_precision duet_model_precision(const duet_model *m) {
    return m->embed_prec ? m->embed_prec : DUET_PRECISION_F32;
}
