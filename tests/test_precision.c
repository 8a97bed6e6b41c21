#define _POSIX_C_SOURCE 200809L
/* test_precision.c -- the embedding network in mixed precision (bf16
 * products, f32 everything else) against f32: the gradients of one batch,
 * evaluation-mode embeddings (also from several threads at once), the
 * precision and instruction set the model file records, and the refusals on
 * a CPU without native bf16 (run in a child process with
 * ONEDNN_MAX_CPU_ISA=AVX512_CORE when this CPU has bf16). A synthetic
 * training run in bf16 is in test_training_ref.c (beside f32 and the PyTorch
 * reference); resuming in bf16 in test_model.c. Every test prints the
 * precision and the ISA it ran with; the bf16 ones are skipped, saying so,
 * where the CPU has no native bf16. */
#include "check.h"
#include "embed/embed.h"
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[256];

#define NEED_BF16()                                                                 \
    do {                                                                            \
        if (!duet_cpu_has_bf16())                                                   \
            SKIP("oneDNN sees %s: this CPU has no native bf16", duet_cpu_isa());     \
    } while (0)

/* A fresh model (PyTorch's initialization from r) with hidden h, output o. */
static duet_model *new_model(duet_params p, size_t h, size_t o, size_t di, size_t dt, duet_rng *r) {
    p.hidden = h;
    p.embed_dim = o;
    duet_model *m = NULL;
    duet_error e = {0};
    CHECK_MSG(duet_model_create(di, dt, &p, r, &m, &e) == DUET_OK, "%s", e.msg);
    return m;
}

static void random_fill(float *x, size_t n, float scale, duet_rng *r) {
    for (size_t i = 0; i < n; i++) x[i] = scale * duet_rng_normal(r);
}

/* ------------------------------------------------------- one batch */

enum { B = 32, S = 2, NS = B * S, DI = 200, DT = 300, H = 256, O = 64 };

/* One training batch of the model m in precision prec, with fixed dropout
 * masks (so both precisions see the same network): the forward pass into
 * e[2], the loss of the embeddings ein[2] (e itself when ein is NULL) into
 * t and de[2], and the backward pass of the gradient gin[2] (de itself when
 * NULL) into grad. */
typedef struct batch_out {
    float e[2][NS * O], de[2][NS * O];
    duet_loss_terms t;
    float *grad;
} batch_out;

static void run_batch(duet_model *m, duet_precision prec, const float *const x[2],
                      const float *const mask[2], const size_t *sent, float (*ein)[NS * O],
                      float (*gin)[NS * O], batch_out *out) {
    duet_dnn dnn;
    duet_error e = {0};
    CHECK_MSG(duet_dnn_init(&dnn, prec, &e) == DUET_OK, "%s", e.msg);
    duet_branch_ws ws[2];
    duet_loss_ws lws;
    size_t n[2] = {B, NS};
    for (int s = 0; s < 2; s++) CHECK(duet_branch_ws_init_dnn(&ws[s], &m->br[s], n[s], &dnn, &e) == DUET_OK);
    CHECK(duet_loss_ws_init_dnn(&lws, B, NS, m->p.top_k, &dnn, &e) == DUET_OK);
    /* the running statistics are updated by the pass: work on a copy */
    float *buf = malloc(m->n_buffers * sizeof(float));
    memcpy(buf, m->buffers, m->n_buffers * sizeof(float));
    duet_bnstats bn[2] = {{buf, buf + H}, {buf + 2 * H, buf + 3 * H}};
    for (int s = 0; s < 2; s++) {
        CHECK(duet_branch_forward(&m->br[s], &m->w[s], &bn[s], &m->p, x[s], n[s], 1, NULL, mask[s],
                                  &ws[s]) == DUET_OK);
        memcpy(out->e[s], ws[s].e, sizeof(float) * n[s] * O);
    }
    if (!ein) ein = out->e;
    CHECK_MSG(duet_loss(&m->p, ein[0], B, ein[1], NS, O, sent, NULL, &out->t, out->de[0],
                        out->de[1], &lws, &e) == DUET_OK, "%s", e.msg);
    if (!gin) gin = out->de;
    out->grad = calloc(m->n_params, sizeof(float));
    duet_bparams g[2];
    duet_model_views(m, out->grad, g);
    for (int s = 0; s < 2; s++)
        CHECK(duet_branch_backward(&m->br[s], &m->w[s], x[s], n[s], gin[s], &g[s], &ws[s]) == DUET_OK);
    free(buf);
    for (int s = 0; s < 2; s++) duet_branch_ws_free(&ws[s]);
    duet_loss_ws_free(&lws);
    duet_dnn_fini(&dnn);
}

/* ||a - b|| / ||b|| over n floats. */
static double rel_err(const float *a, const float *b, size_t n) {
    double d = 0.0, nb = 0.0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        nb += (double)b[i] * b[i];
    }
    return nb > 0.0 ? sqrt(d / nb) : sqrt(d);
}

static double max_diff(const float *a, const float *b, size_t n) {
    double w = 0.0;
    for (size_t i = 0; i < n; i++) w = fmax(w, fabs((double)a[i] - b[i]));
    return w;
}

/* In bf16 every product input is rounded to 8 significant bits (relative
 * error <= u = 2^-9), products accumulate in f32. Two checks:
 *
 * 1. The implementation. Given inputs and weights that are bf16 values
 *    already (rounded beforehand), the bf16 path differs from f32 only by
 *    rounding the activations it feeds to products (D, dZ2, dZ1; the loss's
 *    Gram gradient): each once, a few u along the chain, so 1% (5u) per
 *    gradient tensor; embeddings (unit vectors) within 2e-3. A wrong
 *    transpose, a missed or stale conversion is off by O(1).
 * 2. The effect. On raw inputs the bf16 gradients also carry the rounding
 *    of X and the weights, which moves some of them by several percent:
 *    batch-norm's backward pass subtracts the batch means and cancels most
 *    of dY, so a small absolute change is a large relative one (beta, and
 *    W1 behind it). Rounding X and the weights in f32 shows how much; bf16
 *    must stay within twice that plus 1%.
 * The loss is compared on the same embeddings (its top-K selections and
 * hinges have kinks, where a rounding difference in the embeddings would
 * move a whole term), the backward pass on the same dE. */
#define IMPL_TOL 1e-2
#define EMB_TOL 2e-3

/* The model m with W1, W2 (and x) rounded to bf16 values. */
static duet_model *rounded_copy(const duet_model *m) {
    duet_model *r = NULL;
    duet_error e = {0};
    CHECK(duet_model_alloc(m->br[0].d_in, m->br[1].d_in, &m->p, &r, &e) == DUET_OK);
    if (!r) return NULL;
    memcpy(r->params, m->params, m->n_params * sizeof(float));
    memcpy(r->buffers, m->buffers, m->n_buffers * sizeof(float));
    for (int s = 0; s < 2; s++) {
        float *w[2] = {r->w[s].W1, r->w[s].W2};
        size_t n[2] = {r->br[s].d_in * H, (size_t)H * O};
        for (int k = 0; k < 2; k++) {
            uint16_t *t = malloc(n[k] * sizeof(uint16_t));
            duet_f32_to_bf16(w[k], t, n[k]);
            duet_bf16_to_f32(t, w[k], n[k]);
            free(t);
        }
    }
    return r;
}

static void round_floats(float *x, size_t n) {
    uint16_t *t = malloc(n * sizeof(uint16_t));
    duet_f32_to_bf16(x, t, n);
    duet_bf16_to_f32(t, x, n);
    free(t);
}

/* Compares gradient slab a with b tensor by tensor (relative error; the
 * MLP's b1 aside: batch-norm cancels it, its gradient is rounding noise in
 * both), printing each. A tensor's limit is tol, or with a reference pair
 * ra/rb twice their error plus tol. Returns the number over the limit. */
static int compare_grads(const duet_model *m, const float *a, const float *b, const char *label,
                         const float *ra, const float *rb, double tol) {
    const char *names[6] = {"W1", "b1", "gamma", "beta", "W2", "b2"};
    duet_bparams ga[2], gb[2], qa[2], qb[2];
    duet_model_views(m, (float *)a, ga);
    duet_model_views(m, (float *)b, gb);
    if (ra) { duet_model_views(m, (float *)ra, qa); duet_model_views(m, (float *)rb, qb); }
    int bad = 0;
    for (int s = 0; s < 2; s++) {
        float *pa[6] = {ga[s].W1, ga[s].b1, ga[s].gamma, ga[s].beta, ga[s].W2, ga[s].b2};
        float *pb[6] = {gb[s].W1, gb[s].b1, gb[s].gamma, gb[s].beta, gb[s].W2, gb[s].b2};
        float *xa[6] = {qa[s].W1, qa[s].b1, qa[s].gamma, qa[s].beta, qa[s].W2, qa[s].b2};
        float *xb[6] = {qb[s].W1, qb[s].b1, qb[s].gamma, qb[s].beta, qb[s].W2, qb[s].b2};
        size_t n[6] = {m->br[s].d_in * H, H, H, H, (size_t)H * O, O};
        for (int k = 0; k < 6; k++) {
            if (k == 1) continue;
            double err = rel_err(pa[k], pb[k], n[k]);
            double lim = ra ? 2.0 * rel_err(xa[k], xb[k], n[k]) + tol : tol;
            fprintf(stderr, "    %s %s %-5s: %.2e (limit %.2e)\n", label, s ? "text " : "image",
                    names[k], err, lim);
            if (!(err < lim)) bad++;
        }
    }
    return bad;
}

TEST(bf16_gradients_match_f32) {
    NEED_BF16();
    duet_params p = duet_default_params();
    p.batch_images = B;
    p.sents_per_image = S;
    p.margin = 0.2f; /* plenty of active hinges */
    duet_rng r;
    duet_rng_seed(&r, 5);
    duet_error e = {0};
    duet_model *m = new_model(p, H, O, DI, DT, &r);
    duet_model *mr = m ? rounded_copy(m) : NULL;
    if (!m || !mr) return;
    float *xi = malloc(sizeof(float) * B * DI), *xt = malloc(sizeof(float) * NS * DT);
    float *xir = malloc(sizeof(float) * B * DI), *xtr = malloc(sizeof(float) * NS * DT);
    float *mi = malloc(sizeof(float) * B * H), *mt = malloc(sizeof(float) * NS * H);
    random_fill(xi, B * DI, 1.0f, &r);
    random_fill(xt, NS * DT, 1.0f, &r);
    memcpy(xir, xi, sizeof(float) * B * DI);
    memcpy(xtr, xt, sizeof(float) * NS * DT);
    round_floats(xir, B * DI);
    round_floats(xtr, NS * DT);
    for (int i = 0; i < B * H; i++) mi[i] = duet_rng_uniform(&r) < 0.5f ? 0.0f : 2.0f;
    for (int i = 0; i < NS * H; i++) mt[i] = duet_rng_uniform(&r) < 0.5f ? 0.0f : 2.0f;
    const float *x[2] = {xi, xt}, *xr[2] = {xir, xtr}, *mask[2] = {mi, mt};
    size_t sent[NS];
    for (int j = 0; j < NS; j++) sent[j] = (size_t)(j / S);
    static batch_out f, fr, fr2, hr, h, hm, lr[2];
    fprintf(stderr, "  precision bf16 vs f32, ISA %s:\n", duet_cpu_isa());
    /* 1. bf16-valued inputs and weights: the branches, then the loss on
     *    bf16-valued embeddings */
    run_batch(mr, DUET_PRECISION_F32, xr, mask, sent, NULL, NULL, &fr);
    run_batch(mr, DUET_PRECISION_BF16, xr, mask, sent, fr.e, fr.de, &hr);
    double emb = fmax(max_diff(hr.e[0], fr.e[0], B * O), max_diff(hr.e[1], fr.e[1], NS * O));
    fprintf(stderr, "    branches on bf16 values: embeddings max |diff| %.2e (limit %.0e)\n", emb, EMB_TOL);
    CHECK(emb < EMB_TOL);
    CHECK(compare_grads(m, hr.grad, fr.grad, "branches on bf16 values:", NULL, NULL, IMPL_TOL) == 0);
    round_floats(fr.e[0], B * O);
    round_floats(fr.e[1], NS * O);
    for (int k = 0; k < 2; k++)
        run_batch(mr, k ? DUET_PRECISION_BF16 : DUET_PRECISION_F32, xr, mask, sent, fr.e, NULL, &lr[k]);
    double dle = fmax(rel_err(lr[1].de[0], lr[0].de[0], B * O), rel_err(lr[1].de[1], lr[0].de[1], NS * O));
    fprintf(stderr, "    loss on bf16 values: %.7f vs %.7f, its gradient %.2e (limit %.0e)\n",
            (double)lr[1].t.total, (double)lr[0].t.total, dle, IMPL_TOL);
    CHECK_CLOSE(lr[1].t.total, lr[0].t.total, 1e-5, 1e-7);
    CHECK(dle < IMPL_TOL);
    /* 2. raw inputs: within twice what rounding the inputs does in f32 */
    run_batch(m, DUET_PRECISION_F32, x, mask, sent, NULL, NULL, &f);
    run_batch(m, DUET_PRECISION_BF16, x, mask, sent, f.e, f.de, &h);
    run_batch(mr, DUET_PRECISION_F32, xr, mask, sent, f.e, f.de, &fr2);
    CHECK(compare_grads(m, h.grad, f.grad, "raw inputs, bf16 vs f32:", fr2.grad, f.grad, IMPL_TOL) == 0);
    /* the model's bf16 mirror holds the values a pass would convert: the
     * same results bit for bit */
    CHECK(duet_model_set_precision(m, DUET_PRECISION_BF16, &e) == DUET_OK);
    run_batch(m, DUET_PRECISION_BF16, x, mask, sent, f.e, f.de, &hm);
    CHECK(memcmp(h.grad, hm.grad, m->n_params * sizeof(float)) == 0);
    CHECK(memcmp(h.e, hm.e, sizeof h.e) == 0);
    batch_out *all[8] = {&f, &fr, &fr2, &hr, &h, &hm, &lr[0], &lr[1]};
    for (int k = 0; k < 8; k++) { free(all[k]->grad); all[k]->grad = NULL; }
    free(xi); free(xt); free(xir); free(xtr); free(mi); free(mt);
    duet_model_free(m);
    duet_model_free(mr);
}

/* ------------------------------------------------- embedding, threads */

typedef struct embed_job {
    const duet_model *m;
    const duet_mat *x;
    duet_mat out;
    int rounds;
    duet_status st;
} embed_job;

static void *embed_thread(void *arg) {
    embed_job *j = arg;
    duet_error e = {0};
    for (int k = 0; k < j->rounds && !j->st; k++)
        j->st = duet_model_embed(j->m, DUET_SIDE_TEXT, j->x, &j->out, &e);
    return NULL;
}

TEST(bf16_embedding_and_concurrent_calls) {
    NEED_BF16();
    duet_rng r;
    duet_rng_seed(&r, 9);
    duet_error e = {0};
    duet_model *m = new_model(duet_default_params(), 512, 128, 64, 600, &r);
    if (!m) return;
    size_t n = 1500; /* two chunks */
    duet_mat x = {malloc(n * 600 * sizeof(float)), n, 600};
    random_fill(x.data, n * 600, 1.0f, &r);
    duet_mat f = {calloc(n * 128, 4), n, 128}, h = {calloc(n * 128, 4), n, 128};
    duet_mat one = {x.data, 1, 600}, q = {calloc(128, 4), 1, 128};
    CHECK(duet_model_precision(m) == DUET_PRECISION_F32);
    CHECK(duet_model_embed(m, DUET_SIDE_TEXT, &x, &f, &e) == DUET_OK);
    CHECK(duet_model_set_precision(m, DUET_PRECISION_BF16, &e) == DUET_OK);
    CHECK(duet_model_precision(m) == DUET_PRECISION_BF16);
    CHECK(duet_model_embed(m, DUET_SIDE_TEXT, &x, &h, &e) == DUET_OK);
    double worst = 0.0, min_cos = 1.0;
    for (size_t i = 0; i < n; i++) {
        double c = 0.0;
        for (size_t k = 0; k < 128; k++) {
            worst = fmax(worst, fabs(h.data[i * 128 + k] - f.data[i * 128 + k]));
            c += (double)h.data[i * 128 + k] * f.data[i * 128 + k];
        }
        min_cos = fmin(min_cos, c);
    }
    fprintf(stderr, "  embed in bf16 vs f32, ISA %s: max |diff| %.2e, lowest cosine %.5f\n",
            duet_cpu_isa(), worst, min_cos);
    CHECK(worst < EMB_TOL && min_cos > 0.999);
    /* one row (a query) equals its row of the batch */
    CHECK(duet_model_embed(m, DUET_SIDE_TEXT, &one, &q, &e) == DUET_OK);
    double qd = 0.0;
    for (size_t k = 0; k < 128; k++) qd = fmax(qd, fabs(q.data[k] - h.data[k]));
    CHECK_MSG(qd < 1e-5, "one row vs its batch row: %.3g", qd);
    /* four threads embedding at once give the single-thread answer, bit for bit */
    embed_job jobs[4];
    pthread_t th[4];
    for (int t = 0; t < 4; t++) {
        jobs[t] = (embed_job){m, &x, {calloc(n * 128, 4), n, 128}, 3, DUET_OK};
        CHECK(pthread_create(&th[t], NULL, embed_thread, &jobs[t]) == 0);
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
        CHECK(jobs[t].st == DUET_OK);
        CHECK(memcmp(jobs[t].out.data, h.data, n * 128 * sizeof(float)) == 0);
        duet_mat_free(&jobs[t].out);
    }
    fprintf(stderr, "  4 threads x 3 concurrent bf16 embeddings: identical to one thread\n");
    /* back to f32: the f32 answer again, exactly */
    CHECK(duet_model_set_precision(m, DUET_PRECISION_F32, &e) == DUET_OK);
    CHECK(duet_model_embed(m, DUET_SIDE_TEXT, &x, &h, &e) == DUET_OK);
    CHECK(memcmp(h.data, f.data, n * 128 * sizeof(float)) == 0);
    duet_mat_free(&x); duet_mat_free(&f); duet_mat_free(&h); duet_mat_free(&q);
    duet_model_free(m);
}

/* ----------------------------------------------------------- the file */

/* A small trained model in bf16 records precision and ISA; the loaded
 * model knows them and embeds in f32 until told otherwise; a file without
 * the field (written before it existed) reads as f32; a bad value is a
 * format error naming the field. */
TEST(model_file_records_precision) {
    duet_rng r;
    duet_rng_seed(&r, 2);
    duet_error e = {0};
    duet_model *m = new_model(duet_default_params(), 16, 8, 10, 6, &r);
    if (!m) return;
    duet_precision want = duet_cpu_has_bf16() ? DUET_PRECISION_BF16 : DUET_PRECISION_F32;
    m->p.precision = want; /* as duet_train leaves it: resolved */
    snprintf(m->isa, sizeof m->isa, "%s", duet_cpu_isa());
    char path[300], old[300], bad[300];
    snprintf(path, sizeof path, "%s/p.duet", tmpdir);
    snprintf(old, sizeof old, "%s/old.duet", tmpdir);
    snprintf(bad, sizeof bad, "%s/bad.duet", tmpdir);
    CHECK(duet_model_save(m, path, &e) == DUET_OK);
    duet_model *l = NULL;
    CHECK_MSG(duet_model_load(path, &l, &e) == DUET_OK, "%s", e.msg);
    if (l) {
        CHECK(l->p.precision == want && strcmp(l->isa, duet_cpu_isa()) == 0);
        CHECK(duet_model_precision(l) == DUET_PRECISION_F32);
    }
    fprintf(stderr, "  model file: trained in %s on %s, loaded as %s\n", duet_precision_name(want),
            duet_cpu_isa(), l ? duet_precision_name(l->p.precision) : "?");
    duet_model_free(l);
    /* the header as older duet wrote it: no precision, no isa */
    char *hdr = duet_model_header_json(m);
    json_t *h = json_loads(hdr, 0, NULL);
    CHECK(strcmp(json_string_value(json_object_get(json_object_get(h, "params"), "precision")),
                 duet_precision_name(want)) == 0);
    CHECK(strcmp(json_string_value(json_object_get(json_object_get(h, "info"), "isa")),
                 duet_cpu_isa()) == 0);
    json_object_del(json_object_get(h, "params"), "precision");
    json_object_del(json_object_get(h, "info"), "isa");
    char *oh = json_dumps(h, 0);
    duet_tf_array a[2] = {{"params", m->params, m->n_params}, {"buffers", m->buffers, m->n_buffers}};
    CHECK(duet_tf_write(old, "DUETMODL", 1, oh, a, 2, &e) == DUET_OK);
    CHECK_MSG(duet_model_load(old, &l, &e) == DUET_OK, "%s", e.msg);
    if (l) CHECK(l->p.precision == DUET_PRECISION_F32 && l->isa[0] == 0);
    duet_model_free(l);
    json_object_set_new(json_object_get(h, "params"), "precision", json_string("fp16"));
    free(oh);
    oh = json_dumps(h, 0);
    CHECK(duet_tf_write(bad, "DUETMODL", 1, oh, a, 2, &e) == DUET_OK);
    CHECK(duet_model_load(bad, &l, &e) == DUET_ERR_FORMAT);
    CHECK_MSG(strstr(e.msg, "params.precision") != NULL, "%s", e.msg);
    free(oh);
    free(hdr);
    json_decref(h);
    duet_model_free(m);
}

TEST(params_precision) {
    duet_params p = duet_default_params();
    duet_error e = {0};
    CHECK(p.precision == DUET_PRECISION_F32);
    duet_precision ok[3] = {DUET_PRECISION_AUTO, DUET_PRECISION_F32, DUET_PRECISION_BF16};
    for (int k = 0; k < 3; k++) {
        p.precision = ok[k];
        CHECK(duet_params_validate(&p, &e) == DUET_OK);
    }
    p.precision = (duet_precision)7;
    CHECK(duet_params_validate(&p, &e) == DUET_ERR_INVALID_ARG);
    CHECK(strstr(e.msg, "precision") != NULL);
}

/* Where the CPU has no native bf16, training and embedding in bf16 are
 * refused with DUET_ERR_UNSUPPORTED naming the ISA; auto trains in f32.
 * Returns the number of failed checks (the child process's exit code). */
static int refusals_without_bf16(void) {
    int before = check_failed;
    check_cur_failed = 0;
    CHECK(!duet_cpu_has_bf16());
    duet_synth_params sp = duet_synth_default_params();
    sp.n_train = 100; sp.n_val = 0; sp.n_test = 20;
    char dir[300], spec[400], pi[400], pt[400];
    snprintf(dir, sizeof dir, "%s/nobf16", tmpdir);
    mkdir(dir, 0777);
    duet_error e = {0};
    CHECK(duet_synth_write(&sp, dir, &e) == DUET_OK);
    snprintf(spec, sizeof spec, "tsv:%s/captions.tsv", dir);
    snprintf(pi, sizeof pi, "%s/images.npy", dir);
    snprintf(pt, sizeof pt, "%s/texts.npy", dir);
    duet_dataset *d = NULL;
    duet_mat img = {0}, txt = {0};
    CHECK(duet_dataset_load(spec, &d, &e) == DUET_OK);
    CHECK(duet_npy_read(pi, &img, &e) == DUET_OK && duet_npy_read(pt, &txt, &e) == DUET_OK);
    duet_params p = duet_default_params();
    p.hidden = 16; p.embed_dim = 8; p.batch_images = 20; p.epochs = 1;
    p.precision = DUET_PRECISION_BF16;
    duet_model *m = NULL;
    CHECK(duet_train(d, &img, &txt, &p, NULL, &m, NULL, NULL, &e) == DUET_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(e.msg, "bf16") && strstr(e.msg, duet_cpu_isa()), "%s", e.msg);
    fprintf(stderr, "  ISA %s, bf16 training refused: %s\n", duet_cpu_isa(), e.msg);
    p.precision = DUET_PRECISION_AUTO;
    CHECK_MSG(duet_train(d, &img, &txt, &p, NULL, &m, NULL, NULL, &e) == DUET_OK, "%s", e.msg);
    if (m) {
        CHECK(m->p.precision == DUET_PRECISION_F32);
        CHECK(duet_model_set_precision(m, DUET_PRECISION_BF16, &e) == DUET_ERR_UNSUPPORTED);
        CHECK(duet_model_precision(m) == DUET_PRECISION_F32);
    }
    duet_model_free(m);
    duet_dataset_free(d);
    duet_mat_free(&img);
    duet_mat_free(&txt);
    return check_failed - before + check_cur_failed;
}

TEST(bf16_refused_without_native_bf16) {
    if (!duet_cpu_has_bf16()) {
        if (refusals_without_bf16()) CHECK_MSG(0, "refusals failed");
        return;
    }
    /* this CPU has bf16: a child process with oneDNN capped below it */
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE", 1);
        execl("/proc/self/exe", "test_precision", "--without-bf16", tmpdir, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "the child with ONEDNN_MAX_CPU_ISA=AVX512_CORE failed (status %d)", status);
}

static void remove_tmpdir(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--without-bf16") == 0) {
        snprintf(tmpdir, sizeof tmpdir, "%s", argv[2]);
        return refusals_without_bf16() ? 1 : 0;
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/duet-test-precision-%ld", (long)getpid());
    mkdir(tmpdir, 0777);
    atexit(remove_tmpdir);
    fprintf(stderr, "  oneDNN ISA %s, native bf16 %s\n", duet_cpu_isa(),
            duet_cpu_has_bf16() ? "yes" : "no");
    RUN(params_precision);
    RUN(model_file_records_precision);
    RUN(bf16_gradients_match_f32);
    RUN(bf16_embedding_and_concurrent_calls);
    RUN(bf16_refused_without_native_bf16);
    return check_summary("precision");
}
