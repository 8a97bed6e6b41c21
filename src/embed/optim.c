/* optim.c -- the parameter updates of training (docs/MODEL.md,
 * "Optimization"): weight decay, and PyTorch's Adam or SGD with momentum,
 * over the parameter slab on the threads; with a bf16 mirror of the weights
 * (mixed precision), each block's bf16 copy is written while the block is in
 * cache. */
#include "embed/embed.h"
#include <math.h>
#include <string.h>

void duet_weight_decay(const duet_model *m, duet_bparams g[2], float wd) {
    if (wd == 0.0f) return;
    for (int s = 0; s < 2; s++) {
        const duet_branch *b = &m->br[s];
        size_t n1 = b->d_in * (b->linear ? b->out : b->hidden);
        for (size_t i = 0; i < n1; i++) g[s].W1[i] += wd * m->w[s].W1[i];
        if (b->linear) continue;
        size_t n2 = b->hidden * b->out;
        for (size_t i = 0; i < n2; i++) g[s].W2[i] += wd * m->w[s].W2[i];
    }
}

typedef struct opt_job {
    const duet_params *p;
    float *w, *m1, *m2;
    uint16_t *wh;           /* bf16 mirror of w to rewrite, or NULL          */
    const float *g;
    float lr, step, rbc2;
    int adam;
} opt_job;

/* One block of OPT_BLOCK parameters. The arrays never overlap (restrict)
 * and the count is a constant, so the loops vectorize (computing exactly
 * what the scalar loop does). */
#define OPT_BLOCK 4096
static void sgd_block(const opt_job *j, float *restrict w, float *restrict m1,
                      float *restrict m2, const float *restrict g) {
    float mu = j->p->momentum, lr = j->lr;
    (void)m2;
    for (size_t i = 0; i < OPT_BLOCK; i++) {
        float v = mu * m1[i] + g[i];
        m1[i] = v;
        w[i] -= lr * v;
    }
}

static void adam_block(const opt_job *j, float *restrict w, float *restrict m1,
                       float *restrict m2, const float *restrict g) {
    float b1 = j->p->adam_beta1, b2 = j->p->adam_beta2, eps = j->p->adam_eps;
    float step = j->step, rbc2 = j->rbc2;
    for (size_t i = 0; i < OPT_BLOCK; i++) {
        float a = b1 * m1[i] + (1.0f - b1) * g[i];
        float v = b2 * m2[i] + (1.0f - b2) * g[i] * g[i];
        m1[i] = a;
        m2[i] = v;
        w[i] -= step * a / (sqrtf(v) * rbc2 + eps);
    }
}

/* The update in blocks, each block's bf16 copy written while the block is
 * still in cache; a last partial block goes through a zero-padded copy. */
static void opt_range(void *ctx, size_t b, size_t e) {
    const opt_job *j = ctx;
    void (*block)(const opt_job *, float *, float *, float *, const float *) =
        j->adam ? adam_block : sgd_block;
    float *m2 = j->m2 ? j->m2 : j->m1; /* SGD has no second moment */
    for (size_t i = b; i < e; i += OPT_BLOCK) {
        size_t n = e - i < OPT_BLOCK ? e - i : OPT_BLOCK;
        if (n == OPT_BLOCK) {
            block(j, j->w + i, j->m1 + i, m2 + i, j->g + i);
        } else {
            float t[4][OPT_BLOCK]; /* w, m1, m2, g */
            float *src[4] = {j->w + i, j->m1 + i, m2 + i, (float *)j->g + i};
            for (int k = 0; k < 4; k++) {
                memcpy(t[k], src[k], n * sizeof(float));
                memset(t[k] + n, 0, (OPT_BLOCK - n) * sizeof(float));
            }
            block(j, t[0], t[1], t[2], t[3]);
            for (int k = 0; k < (j->adam ? 3 : 2); k++) memcpy(src[k], t[k], n * sizeof(float));
        }
        if (j->wh) duet_f32_to_bf16(j->w + i, j->wh + i, n);
    }
}

void duet_optimizer_step_mirror(const duet_params *p, float *w, uint16_t *wh,
                                const float *g, float *m1, float *m2, size_t n,
                                long long t, float lr) {
    opt_job j = {p, w, m1, m2, wh, g, lr, 0.0f, 0.0f, p->optimizer != DUET_OPT_SGD};
    if (j.adam) {
        double bc1 = 1.0 - pow(p->adam_beta1, (double)t), bc2 = 1.0 - pow(p->adam_beta2, (double)t);
        j.step = (float)(lr / bc1);
        j.rbc2 = (float)(1.0 / sqrt(bc2));
    }
    duet_embed_parallel_for(n, 8, opt_range, &j);
}

void duet_optimizer_step(const duet_params *p, float *w, const float *g,
                         float *m1, float *m2, size_t n, long long t, float lr) {
    duet_optimizer_step_mirror(p, w, NULL, g, m1, m2, n, t, lr);
}

