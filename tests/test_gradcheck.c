/* test_gradcheck.c -- finite-difference checks of every parameter gradient,
 * for each loss term alone and all together, MLP and linear; and proof that
 * the check catches a wrong sign or a missing term. */
#include "check.h"
#include "embed/embed.h"
#include <stdlib.h>
#include <string.h>

enum { B = 5, S = 2, NS = B * S, DI = 6, DT = 5, H = 7, O = 4 };

typedef struct fixture {
    duet_model *m;
    float xi[B * DI], xt[NS * DT];
    float mask_i[B * H], mask_t[NS * H];
    size_t sent_img[NS];
    int group[B];
    duet_branch_ws ws[2];
    duet_loss_ws lws;
} fixture;

static void fixture_init(fixture *f, const duet_params *p, uint64_t seed) {
    duet_rng r;
    duet_rng_seed(&r, seed);
    duet_error e = {0};
    CHECK(duet_model_create(DI, DT, p, &r, &f->m, &e) == DUET_OK);
    /* non-trivial BN affine parameters so their gradients matter */
    for (int s = 0; s < 2 && !p->linear; s++)
        for (int c = 0; c < H; c++) {
            f->m->w[s].gamma[c] = 0.5f + duet_rng_uniform(&r);
            f->m->w[s].beta[c] = 0.3f * duet_rng_normal(&r);
        }
    for (int i = 0; i < B * DI; i++) f->xi[i] = duet_rng_normal(&r);
    for (int i = 0; i < NS * DT; i++) f->xt[i] = duet_rng_normal(&r);
    float keep = 1.0f / (1.0f - p->dropout);
    for (int i = 0; i < B * H; i++) f->mask_i[i] = duet_rng_uniform(&r) < p->dropout ? 0.0f : keep;
    for (int i = 0; i < NS * H; i++) f->mask_t[i] = duet_rng_uniform(&r) < p->dropout ? 0.0f : keep;
    for (int j = 0; j < NS; j++) f->sent_img[j] = (size_t)(j / S);
    for (int i = 0; i < B; i++) f->group[i] = i % 2; /* images 0,2,4 and 1,3 */
    CHECK(duet_branch_ws_init(&f->ws[0], &f->m->br[0], B, &e) == DUET_OK);
    CHECK(duet_branch_ws_init(&f->ws[1], &f->m->br[1], NS, &e) == DUET_OK);
    CHECK(duet_loss_ws_init(&f->lws, B, NS, p->top_k, &e) == DUET_OK);
}

static void fixture_free(fixture *f) {
    duet_model_free(f->m);
    duet_branch_ws_free(&f->ws[0]);
    duet_branch_ws_free(&f->ws[1]);
    duet_loss_ws_free(&f->lws);
}

/* Loss (and, if grad is not NULL, its analytic gradient [n_params]) under
 * params lp. */
static double loss_and_grad(fixture *f, const duet_params *lp, float *grad) {
    duet_model *m = f->m;
    duet_branch_forward(&m->br[0], &m->w[0], &m->bn[0], lp, f->xi, B, 1, NULL,
                        f->mask_i, &f->ws[0]);
    duet_branch_forward(&m->br[1], &m->w[1], &m->bn[1], lp, f->xt, NS, 1, NULL,
                        f->mask_t, &f->ws[1]);
    float de_i[B * O], de_t[NS * O];
    duet_loss_terms t;
    duet_error e = {0};
    duet_status st = duet_loss(lp, f->ws[0].e, B, f->ws[1].e, NS, O, f->sent_img,
                               f->group, &t, grad ? de_i : NULL,
                               grad ? de_t : NULL, &f->lws, &e);
    CHECK_MSG(st == DUET_OK, "%s", e.msg);
    if (grad) {
        duet_bparams g[2];
        duet_model_views(m, grad, g);
        duet_branch_backward(&m->br[0], &m->w[0], f->xi, B, de_i, &g[0], &f->ws[0]);
        duet_branch_backward(&m->br[1], &m->w[1], f->xt, NS, de_t, &g[1], &f->ws[1]);
    }
    return t.total;
}

/* Central differences of the loss under params lp, step h, into num [n]. */
static void numeric_grad(fixture *f, const duet_params *lp, float h, float *num) {
    for (size_t i = 0; i < f->m->n_params; i++) {
        float w0 = f->m->params[i];
        f->m->params[i] = w0 + h;
        double lplus = loss_and_grad(f, lp, NULL);
        f->m->params[i] = w0 - h;
        double lminus = loss_and_grad(f, lp, NULL);
        f->m->params[i] = w0;
        num[i] = (float)((lplus - lminus) / (2.0 * (double)h));
    }
}

/* Worst per-tensor relative error ||a - b|| / max(||a||, ||b||), in slab
 * order (W1 b1 gamma beta W2 b2 per branch). Tensors the loss does not reach
 * (the MLP's b1, cancelled by batch-norm) hold only rounding noise on both
 * sides and are left out. */
static double tensor_error(const duet_model *m, const float *a, const float *b) {
    double worst = 0.0, gnorm = 0.0;
    for (size_t i = 0; i < m->n_params; i++) gnorm += (double)b[i] * b[i];
    gnorm = sqrt(gnorm);
    size_t off = 0;
    for (int s = 0; s < 2; s++) {
        const duet_branch *br = &m->br[s];
        size_t sz[6] = {br->d_in * (br->linear ? br->out : br->hidden),
                        br->linear ? br->out : br->hidden, 0, 0, 0, 0};
        if (!br->linear) { sz[2] = sz[3] = br->hidden; sz[4] = br->hidden * br->out; sz[5] = br->out; }
        for (int k = 0; k < 6; k++) {
            double dn = 0, na = 0, nb = 0;
            for (size_t i = off; i < off + sz[k]; i++) {
                double d = (double)a[i] - b[i];
                dn += d * d; na += (double)a[i] * a[i]; nb += (double)b[i] * b[i];
            }
            off += sz[k];
            double den = sqrt(na > nb ? na : nb);
            if (den < 1e-4 * gnorm) continue;
            if (sqrt(dn) / den > worst) worst = sqrt(dn) / den;
        }
    }
    return worst;
}

/* Compares the analytic gradient under an_p with central differences of the
 * loss under num_p. The loss has kinks (a hinge at 0, a top-K or
 * farthest-positive swap, a ReLU at 0) where differences are meaningless, so
 * the difference is trusted only where steps h and h/2 agree to 1e-3; the
 * fixture is re-drawn (next seed) until they do. Returns the worst per-tensor
 * relative error. */
static double grad_error_seeded(const duet_params *num_p, const duet_params *an_p,
                                uint64_t seed) {
    for (int tries = 0; tries < 30; tries++) {
        fixture f;
        fixture_init(&f, num_p, seed + (uint64_t)tries * 1000);
        size_t n = f.m->n_params;
        float *an = calloc(n, sizeof(float)), *n1 = calloc(n, sizeof(float)),
              *n2 = calloc(n, sizeof(float));
        numeric_grad(&f, num_p, 2e-3f, n1);
        numeric_grad(&f, num_p, 1e-3f, n2);
        double consistency = tensor_error(f.m, n1, n2), err = -1.0;
        if (consistency < 1e-3) {
            loss_and_grad(&f, an_p, an);
            err = tensor_error(f.m, an, n2);
        }
        free(an); free(n1); free(n2);
        fixture_free(&f);
        if (err >= 0.0) return err;
    }
    CHECK_MSG(0, "no kink-free configuration in 30 draws");
    return 1.0;
}

static duet_params small_params(int linear) {
    duet_params p = duet_default_params();
    p.linear = linear;
    p.hidden = H;
    p.embed_dim = O;
    p.dropout = 0.3f;
    p.margin = 0.6f;   /* many active hinges */
    p.top_k = 3;
    p.batch_images = B;
    p.sents_per_image = S;
    return p;
}

/* Only term `which` (0 i2t, 1 t2i, 2 txt_struct, 3 img_struct, -1 all). */
static duet_params only(duet_params p, int which) {
    float w[4] = {1.0f, 1.5f, 0.8f, 0.7f};
    p.w_i2t = (which < 0 || which == 0) ? w[0] : 0.0f;
    p.w_t2i = (which < 0 || which == 1) ? w[1] : 0.0f;
    p.w_txt_struct = (which < 0 || which == 2) ? w[2] : 0.0f;
    p.w_img_struct = (which < 0 || which == 3) ? w[3] : 0.0f;
    return p;
}

#define TOL 2e-3

static void check_variant(int linear) {
    const char *names[5] = {"all", "i2t", "t2i", "txt_struct", "img_struct"};
    for (int which = -1; which < 4; which++) {
        duet_params p = only(small_params(linear), which);
        double err = grad_error_seeded(&p, &p, 42 + (uint64_t)which);
        fprintf(stderr, "  %s %-10s gradient rel. error %.2e\n", linear ? "linear" : "mlp",
                names[which + 1], err);
        CHECK_MSG(err < TOL, "%s term %s: relative error %.3g", linear ? "linear" : "mlp",
                  names[which + 1], err);
    }
}

TEST(gradcheck_mlp) { check_variant(0); }
TEST(gradcheck_linear) { check_variant(1); }

/* The check must fail when the analytic gradient is wrong: a term with the
 * wrong sign, or a term missing. */
TEST(gradcheck_catches_broken_gradients) {
    duet_params p = only(small_params(0), -1);
    for (int which = 0; which < 4; which++) {
        duet_params flipped = p, missing = p;
        float *wf[4] = {&flipped.w_i2t, &flipped.w_t2i, &flipped.w_txt_struct, &flipped.w_img_struct};
        float *wm[4] = {&missing.w_i2t, &missing.w_t2i, &missing.w_txt_struct, &missing.w_img_struct};
        *wf[which] = -*wf[which];
        *wm[which] = 0.0f;
        double e_flip = grad_error_seeded(&p, &flipped, 7);
        double e_miss = grad_error_seeded(&p, &missing, 7);
        CHECK_MSG(e_flip > 10 * TOL, "flipped term %d: error %.3g not caught", which, e_flip);
        CHECK_MSG(e_miss > 10 * TOL, "missing term %d: error %.3g not caught", which, e_miss);
    }
    /* and the structure term at its documented default weight, 0.05 */
    duet_params d = small_params(0), miss = d;
    miss.w_txt_struct = 0.0f;
    double e = grad_error_seeded(&d, &miss, 9);
    fprintf(stderr, "  missing default-weight structure term: error %.2e\n", e);
    CHECK_MSG(e > 3 * TOL, "missing default-weight structure term: error %.3g not caught", e);
}

/* K = 1 is the hardest negative (VSE++): the term equals the largest hinge. */
TEST(top1_is_hardest_negative) {
    duet_params p = only(small_params(0), 1);
    p.top_k = 1;
    fixture f;
    fixture_init(&f, &p, 3);
    loss_and_grad(&f, &p, NULL);
    const float *I = f.ws[0].e, *T = f.ws[1].e;
    double want = 0.0;
    for (int j = 0; j < NS; j++) {
        double best = 0.0, pos = 0.0;
        double dist[B];
        for (int i = 0; i < B; i++) {
            double dot = 0;
            for (int c = 0; c < O; c++) dot += (double)T[j * O + c] * I[i * O + c];
            double u = 2 - 2 * dot;
            dist[i] = sqrt((u > 0 ? u : 0) + 1e-4);
        }
        pos = dist[j / S];
        for (int i = 0; i < B; i++) {
            if (i == j / S) continue;
            double hng = p.margin + pos - dist[i];
            if (hng > best) best = hng;
        }
        want += best / NS;
    }
    duet_loss_terms t;
    duet_error e = {0};
    CHECK(duet_loss(&p, I, B, T, NS, O, f.sent_img, NULL, &t, NULL, NULL, &f.lws, &e) == DUET_OK);
    CHECK_CLOSE(t.t2i, want, 1e-5, 1e-6);
    fixture_free(&f);
}

/* Bad loss inputs are refused with a message. */
TEST(loss_rejects_bad_input) {
    duet_params p = small_params(0);
    fixture f;
    fixture_init(&f, &p, 5);
    loss_and_grad(&f, &p, NULL);
    duet_loss_terms t;
    duet_error e = {0};
    size_t bad[NS];
    memcpy(bad, f.sent_img, sizeof bad);
    bad[3] = B; /* out of range */
    CHECK(duet_loss(&p, f.ws[0].e, B, f.ws[1].e, NS, O, bad, NULL, &t, NULL, NULL, &f.lws, &e) ==
          DUET_ERR_INVALID_ARG);
    CHECK(strstr(e.msg, "sentence 3") != NULL);
    p.w_img_struct = 0.5f;
    CHECK(duet_loss(&p, f.ws[0].e, B, f.ws[1].e, NS, O, f.sent_img, NULL, &t, NULL, NULL, &f.lws, &e) ==
          DUET_ERR_INVALID_ARG);
    CHECK(strstr(e.msg, "neighbour") != NULL);
    fixture_free(&f);
}

int main(void) {
    RUN(gradcheck_mlp);
    RUN(gradcheck_linear);
    RUN(gradcheck_catches_broken_gradients);
    RUN(top1_is_hardest_negative);
    RUN(loss_rejects_bad_input);
    return check_summary("gradcheck");
}
