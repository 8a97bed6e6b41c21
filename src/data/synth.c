/* synth.c -- the synthetic caption dataset (see duet.h). Deterministic for a
 * seed: the same files on every machine with IEEE float and glibc's libm. */
#include "core/core.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

duet_synth_params duet_synth_default_params(void) {
    duet_synth_params p = {1000, 200, 200, 5, 32, 64, 48, 0.5f, 0.8f, 1};
    return p;
}

static duet_status synth_check(const duet_synth_params *p, duet_error *err) {
    size_t n = p->n_train + p->n_val + p->n_test;
    if (n < 2 || n > 10000000 || p->caps_per_image < 1 || p->caps_per_image > 100 ||
        p->d_latent < 1 || p->d_latent > 4096 || p->d_image < 1 || p->d_image > 65536 ||
        p->d_text < 1 || p->d_text > 65536 || !(p->image_noise >= 0.0f) ||
        !(p->caption_noise >= 0.0f))
        return duet_fail(err, DUET_ERR_INVALID_ARG,
                         "synth: sizes out of range (images 2..1e7, captions per "
                         "image 1..100, widths 1..65536, noise >= 0)");
    return DUET_OK;
}

/* out [n x d] = act(in [n x L] . W [L x d]) */
static void project(const float *in, size_t n, size_t L, const float *W, size_t d,
                    int tanh_act, float *out) {
    for (size_t r = 0; r < n; r++)
        for (size_t c = 0; c < d; c++) {
            float s = 0.0f;
            for (size_t k = 0; k < L; k++) s += in[r * L + k] * W[k * d + c];
            out[r * d + c] = tanh_act ? tanhf(s) : (s > 0.0f ? s : 0.0f);
        }
}

static duet_status write_tsv(const duet_synth_params *p, const char *path,
                             duet_error *err) {
    duet_atomic_file af;
    duet_status st = duet_atomic_open(&af, path, err);
    if (st) return st;
    size_t n = p->n_train + p->n_val + p->n_test;
    for (size_t i = 0; i < n && !st; i++) {
        const char *split = i < p->n_train ? "train" : i < p->n_train + p->n_val ? "val" : "test";
        for (size_t k = 0; k < p->caps_per_image && !st; k++) {
            char line[128];
            int len = snprintf(line, sizeof line,
                               "img_%05zu.jpg\tsynthetic caption %zu of image %zu\t%s\n",
                               i, k, i, split);
            st = duet_atomic_write(&af, line, (size_t)len, err);
        }
    }
    if (st) { duet_atomic_abort(&af); return st; }
    return duet_atomic_commit(&af, err);
}

duet_status duet_synth_write(const duet_synth_params *p, const char *dir,
                             duet_error *err) {
    duet_status st = synth_check(p, err);
    if (st) return st;
    size_t n = p->n_train + p->n_val + p->n_test, K = p->caps_per_image,
           L = p->d_latent, nc = n * K;
    duet_rng rng;
    duet_rng_seed(&rng, p->seed);
    float *A = duet_alloc_array(L, p->d_image * sizeof(float));
    float *T = duet_alloc_array(L, p->d_text * sizeof(float));
    float *z = duet_alloc_array(n, L * sizeof(float));
    float *u = duet_alloc_array(nc, L * sizeof(float));
    float *xi = duet_alloc_array(n, p->d_image * sizeof(float));
    float *xt = duet_alloc_array(nc, p->d_text * sizeof(float));
    size_t plen = strlen(dir) + 32;
    char *path = malloc(plen);
    if (!A || !T || !z || !u || !xi || !xt || !path) {
        st = duet_fail(err, DUET_ERR_NOMEM, "synth: out of memory");
        goto out;
    }
    float s = 1.0f / sqrtf((float)L);
    for (size_t i = 0; i < L * p->d_image; i++) A[i] = duet_rng_normal(&rng) * s;
    for (size_t i = 0; i < L * p->d_text; i++) T[i] = duet_rng_normal(&rng) * s;
    for (size_t i = 0; i < n * L; i++) z[i] = duet_rng_normal(&rng);
    for (size_t j = 0; j < nc; j++)
        for (size_t k = 0; k < L; k++)
            u[j * L + k] = z[(j / K) * L + k] + p->caption_noise * duet_rng_normal(&rng);
    project(z, n, L, A, p->d_image, 0, xi);
    project(u, nc, L, T, p->d_text, 1, xt);
    for (size_t i = 0; i < n * p->d_image; i++) xi[i] += p->image_noise * duet_rng_normal(&rng);
    for (size_t i = 0; i < nc * p->d_text; i++) xt[i] += 0.1f * duet_rng_normal(&rng);
    duet_mat mi = {xi, n, p->d_image}, mt = {xt, nc, p->d_text};
    snprintf(path, plen, "%s/images.npy", dir);
    if ((st = duet_npy_write(path, &mi, err))) goto out;
    snprintf(path, plen, "%s/texts.npy", dir);
    if ((st = duet_npy_write(path, &mt, err))) goto out;
    snprintf(path, plen, "%s/captions.tsv", dir);
    st = write_tsv(p, path, err);
out:
    free(A); free(T); free(z); free(u); free(xi); free(xt); free(path);
    return st;
}
