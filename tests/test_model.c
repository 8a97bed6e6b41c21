#define _POSIX_C_SOURCE 200809L
/* test_model.c -- the model object, its file, Recall@K, and training:
 * properties (unit norms, eval-mode determinism), the model file round trip
 * and its refusals, Recall@K against a brute-force ranking, bit-for-bit
 * repeatable training and resume, ensembles (the model file of N members:
 * = duet eval of the list, N copies = the model, an index = the mean
 * cosine, refusals). */
#include "check.h"
#include "scratch.h"
#include "embed/embed.h"
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


static const char *tmp(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static duet_params small(int linear) {
    duet_params p = duet_default_params();
    p.linear = linear;
    p.hidden = 32;
    p.embed_dim = 8;
    p.batch_images = 50;
    p.epochs = 3;
    p.lr = 1e-3f;
    return p;
}

static duet_model *make_model(int linear, uint64_t seed) {
    duet_params p = small(linear);
    duet_rng r;
    duet_rng_seed(&r, seed);
    duet_model *m = NULL;
    duet_error e = {0};
    CHECK(duet_model_create(10, 6, &p, &r, &m, &e) == DUET_OK);
    return m;
}

static void random_mat(duet_mat *x, size_t rows, size_t cols, uint64_t seed) {
    duet_rng r;
    duet_rng_seed(&r, seed);
    x->rows = rows;
    x->cols = cols;
    x->data = malloc(rows * cols * sizeof(float));
    for (size_t i = 0; i < rows * cols; i++) x->data[i] = duet_rng_normal(&r);
}

TEST(embeddings_are_unit_vectors) {
    for (int linear = 0; linear < 2; linear++) {
        duet_model *m = make_model(linear, 1);
        duet_mat x, y = {malloc(37 * 8 * sizeof(float)), 37, 8};
        random_mat(&x, 37, 6, 2);
        duet_error e = {0};
        CHECK(duet_model_embed(m, DUET_SIDE_TEXT, &x, &y, &e) == DUET_OK);
        for (size_t r = 0; r < 37; r++) {
            double s = 0;
            for (size_t c = 0; c < 8; c++) s += (double)y.data[r * 8 + c] * y.data[r * 8 + c];
            CHECK_NEAR(s, 1.0, 1e-5);
        }
        /* evaluation mode is row-independent: one row alone gives the same */
        duet_mat x1 = {x.data + 5 * 6, 1, 6}, y1 = {malloc(8 * sizeof(float)), 1, 8};
        CHECK(duet_model_embed(m, DUET_SIDE_TEXT, &x1, &y1, &e) == DUET_OK);
        for (size_t c = 0; c < 8; c++) CHECK_NEAR(y1.data[c], y.data[5 * 8 + c], 1e-6);
        /* wrong width is refused with both widths in the message */
        duet_mat bad = {x.data, 6, 7};
        CHECK(duet_model_embed(m, DUET_SIDE_TEXT, &bad, &y, &e) == DUET_ERR_SHAPE);
        CHECK(strstr(e.msg, "7 columns") && strstr(e.msg, "takes 6"));
        free(y1.data);
        duet_mat_free(&x);
        duet_mat_free(&y);
        duet_model_free(m);
    }
}

TEST(model_file_round_trip) {
    duet_model *m = make_model(0, 3);
    duet_model_info_of(m)->dataset = strdup("tsv:x.tsv");
    duet_model_info_of(m)->best_epoch = 2;
    for (size_t i = 0; i < m->n_buffers; i++) m->buffers[i] = 0.5f + (float)i * 1e-3f;
    duet_error e = {0};
    CHECK_MSG(duet_model_save(m, tmp("m.duet"), &e) == DUET_OK, "%s", e.msg);
    duet_model *l = NULL;
    CHECK_MSG(duet_model_load(tmp("m.duet"), &l, &e) == DUET_OK, "%s", e.msg);
    if (!l) { duet_model_free(m); return; }
    CHECK(l->n_params == m->n_params && l->n_buffers == m->n_buffers);
    CHECK(memcmp(l->params, m->params, m->n_params * sizeof(float)) == 0);
    CHECK(memcmp(l->buffers, m->buffers, m->n_buffers * sizeof(float)) == 0);
    CHECK(l->p.hidden == 32 && l->p.embed_dim == 8 && l->p.top_k == 10);
    CHECK(l->p.w_t2i == 1.5f && l->p.w_txt_struct == 0.05f && l->p.margin == 0.05f);
    CHECK(strcmp(l->info.dataset, "tsv:x.tsv") == 0 && l->info.best_epoch == 2);
    /* no temporary file left beside it */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls %s | grep -c tmp > /dev/null", tmpdir);
    CHECK(system(cmd) != 0);
    duet_model_free(l);
    duet_model_free(m);
}

/* Writes the bytes of src with a modification into dst. */
static void corrupt(const char *src, const char *dst, long at, const char *bytes,
                    size_t n, long truncate_to) {
    FILE *f = fopen(src, "rb");
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len);
    CHECK(fread(buf, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    if (at >= 0) memcpy(buf + at, bytes, n);
    f = fopen(dst, "wb");
    fwrite(buf, 1, truncate_to >= 0 ? (size_t)truncate_to : (size_t)len, f);
    fclose(f);
    free(buf);
}

static void expect_load_error(const char *path, duet_status want, const char *needle) {
    duet_model *l = NULL;
    duet_error e = {0};
    duet_status st = duet_model_load(path, &l, &e);
    CHECK_MSG(st == want, "%s: status %s, want %s (%s)", path, duet_status_str(st),
              duet_status_str(want), e.msg);
    CHECK_MSG(strstr(e.msg, needle) != NULL, "message '%s' lacks '%s'", e.msg, needle);
    CHECK_MSG(strstr(e.msg, path) != NULL, "message '%s' lacks the path", e.msg);
    CHECK(l == NULL);
}

TEST(model_file_refusals) {
    duet_model *m = make_model(0, 4);
    duet_error e = {0};
    CHECK(duet_model_save(m, tmp("good.duet"), &e) == DUET_OK);
    uint32_t v2 = 3; /* a version after this one (2: the current) */
    corrupt(tmp("good.duet"), tmp("v2.duet"), 8, (const char *)&v2, 4, -1);
    expect_load_error(tmp("v2.duet"), DUET_ERR_VERSION, "version 3");
    corrupt(tmp("good.duet"), tmp("magic.duet"), 0, "NOTDUET!", 8, -1);
    expect_load_error(tmp("magic.duet"), DUET_ERR_FORMAT, "bad magic");
    corrupt(tmp("good.duet"), tmp("short.duet"), -1, NULL, 0, 1000);
    expect_load_error(tmp("short.duet"), DUET_ERR_FORMAT, "truncated");
    corrupt(tmp("good.duet"), tmp("tiny.duet"), -1, NULL, 0, 10);
    expect_load_error(tmp("tiny.duet"), DUET_ERR_FORMAT, "bad magic");
    /* a header with a field missing or out of range */
    char *h = duet_model_header_json(m);
    char *p = strstr(h, "\"hidden\"");
    CHECK(p != NULL);
    memcpy(p, "\"hidxen\"", 8);
    duet_tf_array a[2] = {{"params", m->params, m->n_params}, {"buffers", m->buffers, m->n_buffers}};
    CHECK(duet_tf_write(tmp("nofield.duet"), "DUETMODL", 1, h, a, 2, &e) == DUET_OK);
    expect_load_error(tmp("nofield.duet"), DUET_ERR_FORMAT, "params.hidden");
    free(h);
    h = duet_model_header_json(m);
    p = strstr(h, "\"dropout\":");
    CHECK(p != NULL);
    memcpy(p + 10, "7", 1); /* dropout 7.x */
    CHECK(duet_tf_write(tmp("range.duet"), "DUETMODL", 1, h, a, 2, &e) == DUET_OK);
    expect_load_error(tmp("range.duet"), DUET_ERR_FORMAT, "dropout");
    free(h);
    /* arrays that disagree with the shapes */
    h = duet_model_header_json(m);
    duet_tf_array short_a[2] = {{"params", m->params, m->n_params - 1}, {"buffers", m->buffers, m->n_buffers}};
    CHECK(duet_tf_write(tmp("shape.duet"), "DUETMODL", 1, h, short_a, 2, &e) == DUET_OK);
    expect_load_error(tmp("shape.duet"), DUET_ERR_SHAPE, "params");
    free(h);
    /* a non-finite weight */
    m->params[3] = NAN;
    CHECK(duet_model_save(m, tmp("nan.duet"), &e) == DUET_OK);
    expect_load_error(tmp("nan.duet"), DUET_ERR_NONFINITE, "NaN");
    /* saving into a missing directory fails and leaves nothing */
    CHECK(duet_model_save(m, "/nonexistent-dir/x.duet", &e) == DUET_ERR_IO);
    duet_model_free(m);
}

/* Recall@K against a brute-force ranking on random embeddings. */
TEST(recall_matches_brute_force) {
    enum { NI = 40, NC = 130, K = 6 };
    duet_mat I, T;
    random_mat(&I, NI, K, 11);
    random_mat(&T, NC, K, 12);
    size_t cap[NC];
    for (size_t j = 0; j < NC; j++) cap[j] = (j * 7) % NI; /* 3-4 captions per image */
    duet_eval_result r;
    duet_error e = {0};
    CHECK(duet_recall_from_embeddings(&I, &T, cap, &r, &e) == DUET_OK);
    /* brute force */
    double t_hits[3] = {0}, i_hits[3] = {0}, tsum = 0, isum = 0;
    int ks[3] = {1, 5, 10};
    double score[NC][NI];
    for (size_t j = 0; j < NC; j++)
        for (size_t i = 0; i < NI; i++) {
            double s = 0;
            for (int c = 0; c < K; c++) s += (double)T.data[j * K + c] * I.data[i * K + c];
            score[j][i] = (float)s;
        }
    for (size_t j = 0; j < NC; j++) {
        int rank = 1;
        for (size_t i = 0; i < NI; i++) rank += score[j][i] > score[j][cap[j]];
        for (int k = 0; k < 3; k++) t_hits[k] += rank <= ks[k];
        tsum += rank;
    }
    for (size_t i = 0; i < NI; i++) {
        int best = NC + 1;
        for (size_t j = 0; j < NC; j++) {
            if (cap[j] != i) continue;
            int rank = 1;
            for (size_t q = 0; q < NC; q++) rank += score[q][i] > score[j][i];
            if (rank < best) best = rank;
        }
        for (int k = 0; k < 3; k++) i_hits[k] += best <= ks[k];
        isum += best;
    }
    CHECK_NEAR(r.t2i.r1, 100.0 * t_hits[0] / NC, 1e-9);
    CHECK_NEAR(r.t2i.r5, 100.0 * t_hits[1] / NC, 1e-9);
    CHECK_NEAR(r.t2i.r10, 100.0 * t_hits[2] / NC, 1e-9);
    CHECK_NEAR(r.t2i.meanr, tsum / NC, 1e-9);
    CHECK_NEAR(r.i2t.r1, 100.0 * i_hits[0] / NI, 1e-9);
    CHECK_NEAR(r.i2t.r5, 100.0 * i_hits[1] / NI, 1e-9);
    CHECK_NEAR(r.i2t.r10, 100.0 * i_hits[2] / NI, 1e-9);
    CHECK_NEAR(r.i2t.meanr, isum / NI, 1e-9);
    CHECK_NEAR(r.rsum, r.i2t.r1 + r.i2t.r5 + r.i2t.r10 + r.t2i.r1 + r.t2i.r5 + r.t2i.r10, 1e-9);
    CHECK(r.n_images == NI && r.n_captions == NC);
    duet_mat_free(&I);
    duet_mat_free(&T);
}

/* Perfect embeddings: every caption equals its image -> all recalls 100. */
TEST(recall_perfect_and_median) {
    enum { NI = 4, K = 4 };
    float I[NI * K] = {0}, T[2 * NI * K];
    for (int i = 0; i < NI; i++) I[i * K + i] = 1.0f;
    size_t cap[2 * NI];
    for (int j = 0; j < 2 * NI; j++) {
        memcpy(T + j * K, I + (j / 2) * K, K * sizeof(float));
        cap[j] = (size_t)(j / 2);
    }
    duet_mat mi = {I, NI, K}, mt = {T, 2 * NI, K};
    duet_eval_result r;
    duet_error e = {0};
    CHECK(duet_recall_from_embeddings(&mi, &mt, cap, &r, &e) == DUET_OK);
    CHECK_NEAR(r.rsum, 600.0, 1e-9);
    CHECK_NEAR(r.i2t.medr, 1.0, 1e-12);
    /* reverse the captions of image 0 and 1: their ranks become 2 */
    cap[0] = cap[1] = 1; cap[2] = cap[3] = 0;
    CHECK(duet_recall_from_embeddings(&mi, &mt, cap, &r, &e) == DUET_OK);
    CHECK_NEAR(r.t2i.r1, 50.0, 1e-9);        /* 4 of 8 captions at rank 1 */
    CHECK_NEAR(r.t2i.medr, 1.5, 1e-12);       /* ranks 1,1,1,1,2,2,2,2   */
    CHECK_NEAR(r.i2t.r1, 50.0, 1e-9);
    cap[0] = 9;
    CHECK(duet_recall_from_embeddings(&mi, &mt, cap, &r, &e) == DUET_ERR_INVALID_ARG);
}

/* A synthetic dataset written by duet_synth_write, loaded back. */
typedef struct synth {
    duet_dataset *d;
    duet_mat img, txt;
} synth;

static void synth_load(synth *s, const char *dir, size_t train) {
    duet_synth_params sp = duet_synth_default_params();
    sp.n_train = train;
    sp.n_val = 60;
    sp.n_test = 60;
    mkdir(dir, 0777);
    duet_error e = {0};
    CHECK_MSG(duet_synth_write(&sp, dir, &e) == DUET_OK, "%s", e.msg);
    char spec[600], path[600];
    snprintf(spec, sizeof spec, "tsv:%s/captions.tsv", dir);
    CHECK_MSG(duet_dataset_load(spec, &s->d, &e) == DUET_OK, "%s", e.msg);
    snprintf(path, sizeof path, "%s/images.npy", dir);
    CHECK(duet_npy_read(path, &s->img, &e) == DUET_OK);
    snprintf(path, sizeof path, "%s/texts.npy", dir);
    CHECK(duet_npy_read(path, &s->txt, &e) == DUET_OK);
}

static void synth_free(synth *s) {
    duet_dataset_free(s->d);
    duet_mat_free(&s->img);
    duet_mat_free(&s->txt);
}

/* Brute-force recall of the ensemble {a, c} on the test split: scores are
 * the sum of each model's cosine similarities (ranked as their mean),
 * ranks counted naively. */
static void check_ensemble(const synth *s, const duet_model *a, const duet_model *c) {
    duet_error e = {0};
    size_t *im = NULL, ni = 0;
    CHECK(duet_dataset_split_images(s->d, DUET_SPLIT_TEST, &im, &ni, &e) == DUET_OK);
    if (!im) return;
    const duet_model *ms[2] = {a, c};
    const duet_mat *img[2] = {&s->img, &s->img}, *txt[2] = {&s->txt, &s->txt};
    /* per-model embeddings of every image and caption */
    duet_mat E[2][2];
    for (int k = 0; k < 2; k++) {
        size_t o = duet_model_embed_dim(ms[k]);
        E[k][0] = (duet_mat){calloc(s->img.rows * o, sizeof(float)), s->img.rows, o};
        E[k][1] = (duet_mat){calloc(s->txt.rows * o, sizeof(float)), s->txt.rows, o};
        CHECK(duet_model_embed(ms[k], DUET_SIDE_IMAGE, &s->img, &E[k][0], &e) == DUET_OK);
        CHECK(duet_model_embed(ms[k], DUET_SIDE_TEXT, &s->txt, &E[k][1], &e) == DUET_OK);
    }
    size_t nc = 0, caps[4096], owner[4096];
    for (size_t i = 0; i < ni; i++)
        for (size_t q = s->d->image_cap_start[im[i]]; q < s->d->image_cap_start[im[i] + 1] && nc < 4096; q++) {
            caps[nc] = s->d->image_caps[q];
            owner[nc++] = i;
        }
    double *S = calloc(nc * ni, sizeof(double));
    for (size_t j = 0; j < nc; j++)
        for (size_t i = 0; i < ni; i++)
            for (int k = 0; k < 2; k++) {
                size_t o = duet_model_embed_dim(ms[k]);
                double d = 0;
                for (size_t q = 0; q < o; q++)
                    d += (double)E[k][1].data[caps[j] * o + q] * E[k][0].data[im[i] * o + q];
                S[j * ni + i] += d;
            }
    double t1 = 0, t10 = 0, i1 = 0, i10 = 0;
    for (size_t j = 0; j < nc; j++) { /* text -> image */
        size_t rank = 1;
        for (size_t i = 0; i < ni; i++) rank += S[j * ni + i] > S[j * ni + owner[j]];
        t1 += rank <= 1; t10 += rank <= 10;
    }
    for (size_t i = 0; i < ni; i++) { /* image -> text: its best own caption */
        double best = -1e30;
        for (size_t j = 0; j < nc; j++) if (owner[j] == i && S[j * ni + i] > best) best = S[j * ni + i];
        size_t rank = 1;
        for (size_t j = 0; j < nc; j++) rank += S[j * ni + i] > best;
        i1 += rank <= 1; i10 += rank <= 10;
    }
    duet_eval_result r, ra, raa;
    CHECK_MSG(duet_evaluate_ensemble(ms, img, txt, 2, s->d, DUET_SPLIT_TEST, 0, &r, &e) == DUET_OK, "%s", e.msg);
    CHECK_NEAR(r.t2i.r1, 100.0 * t1 / (double)nc, 1e-9);
    CHECK_NEAR(r.t2i.r10, 100.0 * t10 / (double)nc, 1e-9);
    CHECK_NEAR(r.i2t.r1, 100.0 * i1 / (double)ni, 1e-9);
    CHECK_NEAR(r.i2t.r10, 100.0 * i10 / (double)ni, 1e-9);
    /* a model twice is the model alone */
    const duet_model *aa[2] = {a, a};
    CHECK(duet_evaluate(a, s->d, &s->img, &s->txt, DUET_SPLIT_TEST, 0, &ra, &e) == DUET_OK);
    CHECK(duet_evaluate_ensemble(aa, img, txt, 2, s->d, DUET_SPLIT_TEST, 0, &raa, &e) == DUET_OK);
    CHECK(ra.rsum == raa.rsum && ra.i2t.r1 == raa.i2t.r1 && ra.t2i.medr == raa.t2i.medr);
    /* no model; a member given features of the wrong width */
    CHECK(duet_evaluate_ensemble(ms, img, txt, 0, s->d, DUET_SPLIT_TEST, 0, &r, &e) == DUET_ERR_INVALID_ARG);
    duet_mat narrow = {s->txt.data, s->txt.rows, s->txt.cols - 1};
    const duet_mat *bad[2] = {&s->txt, &narrow};
    CHECK(duet_evaluate_ensemble(ms, img, bad, 2, s->d, DUET_SPLIT_TEST, 0, &r, &e) == DUET_ERR_SHAPE);
    CHECK_MSG(strstr(e.msg, "ensemble member") != NULL, "%s", e.msg);
    for (int k = 0; k < 2; k++) { duet_mat_free(&E[k][0]); duet_mat_free(&E[k][1]); }
    free(S);
    free(im);
}

/* Copies of models through their files (an ensemble takes its members). */
static duet_model *copy_of(const duet_model *m, const char *name) {
    duet_error e = {0};
    duet_model *c = NULL;
    CHECK_MSG(duet_model_save(m, tmp(name), &e) == DUET_OK, "%s", e.msg);
    CHECK_MSG(duet_model_load(tmp(name), &c, &e) == DUET_OK, "%s", e.msg);
    return c;
}

static int same_eval(const duet_eval_result *x, const duet_eval_result *y) {
    return x->i2t.r1 == y->i2t.r1 && x->i2t.r5 == y->i2t.r5 && x->i2t.r10 == y->i2t.r10 &&
           x->i2t.medr == y->i2t.medr && x->i2t.meanr == y->i2t.meanr && x->t2i.r1 == y->t2i.r1 &&
           x->t2i.r5 == y->t2i.r5 && x->t2i.r10 == y->t2i.r10 && x->t2i.medr == y->t2i.medr &&
           x->t2i.meanr == y->t2i.meanr && x->rsum == y->rsum && x->n_images == y->n_images;
}

/* The ensemble model file of {a, c}: it evaluates exactly as duet eval's
 * ensemble of a and c; n copies of a rank exactly as a; its embeddings are
 * unit vectors whose inner products are the mean of the members' cosines;
 * an index of it answers a query with the order and scores of that mean;
 * nested ensembles, mismatched members and use as one model are refused. */
static void check_ensemble_model(const synth *s, const duet_model *a, const duet_model *c) {
    duet_error e = {0};
    duet_model *two[2] = {copy_of(a, "ea.duet"), copy_of(c, "ec.duet")}, *E = NULL, *E2 = NULL;
    if (!two[0] || !two[1]) return;
    CHECK_MSG(duet_model_ensemble(two, 2, &E, &e) == DUET_OK, "%s", e.msg);
    if (!E) return;
    CHECK(duet_model_members(E) == 2 && duet_model_member(E, 1) == two[1] && duet_model_member(E, 2) == NULL);
    CHECK(duet_model_members(a) == 1 && duet_model_member(a, 0) == a);
    CHECK(duet_model_params(E) == NULL && duet_model_params(a) != NULL);
    CHECK(duet_model_embed_dim(E) == duet_model_embed_dim(a) + duet_model_embed_dim(c));
    char desc[256];
    duet_model_describe(E, desc, sizeof desc);
    CHECK_MSG(strstr(desc, "ensemble of 2 models") && strstr(desc, "seeds 1, 2"), "%s", desc);
    CHECK_MSG(duet_model_save(E, tmp("e.duet"), &e) == DUET_OK, "%s", e.msg);
    CHECK_MSG(duet_model_load(tmp("e.duet"), &E2, &e) == DUET_OK, "%s", e.msg);
    if (!E2) { duet_model_free(E); return; }
    CHECK(duet_model_members(E2) == 2 && duet_model_embed_dim(E2) == duet_model_embed_dim(E));
    /* evaluation: the file = the list, field for field */
    const duet_model *ms[2] = {a, c};
    const duet_mat *img[2] = {&s->img, &s->img}, *txt[2] = {&s->txt, &s->txt};
    duet_eval_result rl, rf, r1, rn;
    CHECK(duet_evaluate_ensemble(ms, img, txt, 2, s->d, DUET_SPLIT_TEST, 0, &rl, &e) == DUET_OK);
    CHECK(duet_evaluate(E2, s->d, &s->img, &s->txt, DUET_SPLIT_TEST, 0, &rf, &e) == DUET_OK);
    CHECK(same_eval(&rl, &rf));
    CHECK(duet_evaluate(E2, s->d, &s->img, &s->txt, DUET_SPLIT_VAL, 20, &rf, &e) == DUET_OK);
    CHECK(duet_evaluate_ensemble(ms, img, txt, 2, s->d, DUET_SPLIT_VAL, 20, &rl, &e) == DUET_OK);
    CHECK(same_eval(&rl, &rf));
    /* n copies of a rank exactly as a */
    CHECK(duet_evaluate(a, s->d, &s->img, &s->txt, DUET_SPLIT_TEST, 0, &r1, &e) == DUET_OK);
    for (size_t n = 2; n <= 4; n++) {
        duet_model *cp[4], *En = NULL;
        for (size_t k = 0; k < n; k++) cp[k] = copy_of(a, "copy.duet");
        CHECK(duet_model_ensemble(cp, n, &En, &e) == DUET_OK);
        CHECK(En && duet_evaluate(En, s->d, &s->img, &s->txt, DUET_SPLIT_TEST, 0, &rn, &e) == DUET_OK);
        CHECK_MSG(same_eval(&r1, &rn), "%zu copies: R-sum %.2f vs %.2f", n, rn.rsum, r1.rsum);
        duet_model_free(En);
    }
    /* embeddings: unit rows; inner products = mean of the members' cosines */
    size_t ni = 40, nt = 60, o = duet_model_embed_dim(E2), oa = duet_model_embed_dim(a), oc = duet_model_embed_dim(c);
    duet_mat xi = {s->img.data, ni, s->img.cols}, xt = {s->txt.data, nt, s->txt.cols};
    duet_mat ei = {calloc(ni * o, 4), ni, o}, et = {calloc(nt * o, 4), nt, o};
    duet_mat ai = {calloc(ni * oa, 4), ni, oa}, at = {calloc(nt * oa, 4), nt, oa};
    duet_mat ci = {calloc(ni * oc, 4), ni, oc}, ct = {calloc(nt * oc, 4), nt, oc};
    CHECK(duet_model_embed(E2, DUET_SIDE_IMAGE, &xi, &ei, &e) == DUET_OK);
    CHECK(duet_model_embed(E2, DUET_SIDE_TEXT, &xt, &et, &e) == DUET_OK);
    CHECK(duet_model_embed(a, DUET_SIDE_IMAGE, &xi, &ai, &e) == DUET_OK && duet_model_embed(a, DUET_SIDE_TEXT, &xt, &at, &e) == DUET_OK);
    CHECK(duet_model_embed(c, DUET_SIDE_IMAGE, &xi, &ci, &e) == DUET_OK && duet_model_embed(c, DUET_SIDE_TEXT, &xt, &ct, &e) == DUET_OK);
    for (size_t r = 0; r < ni; r++) {
        double n2 = 0;
        for (size_t q = 0; q < o; q++) n2 += (double)ei.data[r * o + q] * ei.data[r * o + q];
        CHECK_NEAR(n2, 1.0, 1e-5);
    }
    /* the index: rows of E2's image embeddings; queries E2's text
     * embeddings; the searcher's order and scores = the mean cosine */
    const char *names[40];
    char nb[40][16];
    for (size_t i = 0; i < ni; i++) { snprintf(nb[i], sizeof nb[i], "im%02zu.jpg", i); names[i] = nb[i]; }
    duet_index_meta meta = {0};
    duet_index_rows rows = {o, ni, ei.data, names, 0, NULL, NULL};
    duet_index *ix = NULL;
    duet_searcher *sr = NULL;
    CHECK_MSG(duet_index_write(tmp("e.index"), &meta, &rows, &e) == DUET_OK, "%s", e.msg);
    CHECK(duet_index_open(tmp("e.index"), 1, &ix, &e) == DUET_OK);
    duet_mat gal = ix ? duet_index_embeddings(ix, DUET_SIDE_IMAGE) : (duet_mat){0};
    CHECK(ix && duet_searcher_new(&gal, DUET_PRECISION_F32, &sr, &e) == DUET_OK);
    duet_hit *hits = calloc(nt * ni, sizeof *hits);
    size_t kk = 0;
    CHECK(sr && duet_searcher_topk(sr, &et, ni, hits, &kk, &e) == DUET_OK && kk == ni);
    for (size_t j = 0; sr && j < nt; j++) {
        double mean[40];
        for (size_t i = 0; i < ni; i++) {
            double sa = 0, sc = 0;
            for (size_t q = 0; q < oa; q++) sa += (double)at.data[j * oa + q] * ai.data[i * oa + q];
            for (size_t q = 0; q < oc; q++) sc += (double)ct.data[j * oc + q] * ci.data[i * oc + q];
            mean[i] = (sa + sc) / 2;
        }
        for (size_t h = 0; h < ni; h++) {
            CHECK_NEAR(hits[j * ni + h].score, mean[hits[j * ni + h].index], 2e-6);
            if (h) CHECK(mean[hits[j * ni + h].index] <= mean[hits[j * ni + h - 1].index] + 1e-6);
        }
    }
    free(hits);
    duet_searcher_free(sr);
    duet_index_free(ix);
    duet_mat_free(&ei); duet_mat_free(&et); duet_mat_free(&ai); duet_mat_free(&at); duet_mat_free(&ci); duet_mat_free(&ct);
    /* refusals: an ensemble as a member; members of other input widths;
     * an ensemble file where one model is needed (a checkpoint) */
    duet_model *nest[2] = {E2, copy_of(a, "n.duet")}, *bad = NULL;
    CHECK(duet_model_ensemble(nest, 2, &bad, &e) == DUET_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(e.msg, "member 1 is itself an ensemble of 2"), "%s", e.msg);
    duet_model *wide = make_model(0, 3), *mix[2] = {nest[1], wide};
    CHECK(duet_model_ensemble(mix, 2, &bad, &e) == DUET_ERR_SHAPE);
    CHECK_MSG(strstr(e.msg, "share their input features"), "%s", e.msg);
    duet_tf_file tf;
    CHECK(duet_tf_read(tmp("e.duet"), DUET_MODEL_MAGIC, DUET_MODEL_FORMAT_VERSION, "model", &tf, &e) == DUET_OK);
    CHECK(duet_model_from_tf(&tf, tmp("e.duet"), &bad, &e) == DUET_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(e.msg, "is an ensemble model file (2 members)"), "%s", e.msg);
    duet_tf_free(&tf);
    duet_model_free(nest[1]);
    duet_model_free(wide);
    duet_model_free(E);
    duet_model_free(E2);
}

TEST(training_is_repeatable_and_learns) {
    synth s = {0};
    synth_load(&s, tmp("syn"), 300);
    if (!s.d) return;
    duet_params p = small(0);
    p.epochs = 4;
    p.batch_images = 25;
    p.hidden = 64;
    p.embed_dim = 32;
    p.lr = 3e-3f;
    duet_model *a = NULL, *b = NULL;
    duet_epoch_log *log = NULL;
    size_t nlog = 0;
    duet_error e = {0};
    CHECK_MSG(duet_train(s.d, &s.img, &s.txt, &p, NULL, &a, &log, &nlog, &e) == DUET_OK, "%s", e.msg);
    CHECK(duet_train(s.d, &s.img, &s.txt, &p, NULL, &b, NULL, NULL, &e) == DUET_OK);
    if (!a || !b) { free(log); synth_free(&s); return; }
    CHECK(memcmp(a->params, b->params, a->n_params * sizeof(float)) == 0);
    CHECK(memcmp(a->buffers, b->buffers, a->n_buffers * sizeof(float)) == 0);
    CHECK(nlog == 4);
    /* it learns: loss falls, validation R-sum beats chance (R-sum ~ 40 for
     * 60 images / 300 captions at random) by a wide margin */
    CHECK(log[3].loss < log[0].loss);
    CHECK_MSG(a->info.best_val_rsum > 150.0f, "val R-sum %.1f", (double)a->info.best_val_rsum);
    CHECK(a->info.best_epoch >= 1 && a->info.best_epoch <= 4);
    duet_eval_result r;
    CHECK(duet_evaluate(a, s.d, &s.img, &s.txt, DUET_SPLIT_VAL, 0, &r, &e) == DUET_OK);
    CHECK_NEAR(r.rsum, a->info.best_val_rsum, 1e-3);
    /* folds of 20 images: 3 folds */
    CHECK(duet_evaluate(a, s.d, &s.img, &s.txt, DUET_SPLIT_TEST, 20, &r, &e) == DUET_OK);
    CHECK(r.n_folds == 3 && r.n_images == 60);
    /* another seed gives another model */
    p.seed = 2;
    duet_model *c = NULL;
    CHECK(duet_train(s.d, &s.img, &s.txt, &p, NULL, &c, NULL, NULL, &e) == DUET_OK);
    if (c) CHECK(memcmp(a->params, c->params, a->n_params * sizeof(float)) != 0);
    if (c) check_ensemble(&s, a, c);
    if (c) check_ensemble_model(&s, a, c);
    duet_model_free(a);
    duet_model_free(b);
    duet_model_free(c);
    free(log);
    synth_free(&s);
}

/* Stops a run at step *user (progress callback). */
static int cancel_at_step(void *user, int epoch, size_t step, size_t steps, double loss) {
    (void)epoch; (void)steps; (void)loss;
    return step >= *(size_t *)user;
}

/* Stops a run in its third epoch. */
static int cancel_in_epoch3(void *user, int epoch, size_t step, size_t steps, double loss) {
    (void)user; (void)step; (void)steps; (void)loss;
    return epoch >= 3;
}

/* --top-k-final: the schedule's values, its checks, the model file, and
 * that training follows it (another model than constant K; repeatable). */
TEST(top_k_schedule) {
    duet_params p = duet_default_params();
    p.top_k = 10;
    p.epochs = 25;
    CHECK(duet_top_k_at(&p, 0) == 10 && duet_top_k_at(&p, 24) == 10);   /* off */
    p.top_k_final = 2;
    /* 10 * 0.2^(e/24): e=0 10, e=6 6.69, e=12 4.47, e=18 2.99, e=24 2 */
    CHECK(duet_top_k_at(&p, 0) == 10 && duet_top_k_at(&p, 6) == 7 && duet_top_k_at(&p, 12) == 4);
    CHECK(duet_top_k_at(&p, 18) == 3 && duet_top_k_at(&p, 24) == 2 && duet_top_k_at(&p, 99) == 2);
    for (int e = 1; e < 25; e++) CHECK(duet_top_k_at(&p, e) <= duet_top_k_at(&p, e - 1));
    duet_error e = {0};
    CHECK(duet_params_validate(&p, &e) == DUET_OK);
    p.top_k_final = 11;
    CHECK(duet_params_validate(&p, &e) == DUET_ERR_INVALID_ARG && strstr(e.msg, "top_k_final"));

    duet_model *m = make_model(0, 3);
    m->p.top_k_final = 3;
    CHECK_MSG(duet_model_save(m, tmp("k.duet"), &e) == DUET_OK, "%s", e.msg);
    duet_model *l = NULL;
    CHECK_MSG(duet_model_load(tmp("k.duet"), &l, &e) == DUET_OK, "%s", e.msg);
    if (l) CHECK(l->p.top_k_final == 3 && l->p.top_k == 10);
    duet_model_free(l);
    duet_model_free(m);

    synth s = {0};
    synth_load(&s, tmp("synk"), 200);
    if (!s.d) return;
    duet_params q = small(0);
    q.epochs = 3;
    q.batch_images = 25;
    q.hidden = 32;
    q.embed_dim = 16;
    duet_model *a = NULL, *b = NULL, *c = NULL;
    CHECK(duet_train(s.d, &s.img, &s.txt, &q, NULL, &a, NULL, NULL, &e) == DUET_OK);
    q.top_k_final = 1;
    CHECK(duet_train(s.d, &s.img, &s.txt, &q, NULL, &b, NULL, NULL, &e) == DUET_OK);
    CHECK(duet_train(s.d, &s.img, &s.txt, &q, NULL, &c, NULL, NULL, &e) == DUET_OK);
    if (a && b && c) {
        CHECK(memcmp(a->params, b->params, a->n_params * sizeof(float)) != 0);
        CHECK(memcmp(b->params, c->params, b->n_params * sizeof(float)) == 0);
        CHECK(b->p.top_k == q.top_k && b->p.top_k_final == 1);   /* the schedule, not its last K */
    }
    /* interrupted in epoch 3 (its checkpoint made after epoch 2, where K
     * had already fallen), then resumed: the uninterrupted annealed model */
    q.epochs = 4;
    duet_model *straight = NULL, *res = NULL, *none = NULL;
    CHECK(duet_train(s.d, &s.img, &s.txt, &q, NULL, &straight, NULL, NULL, &e) == DUET_OK);
    duet_train_opts o = {0};
    o.checkpoint_path = tmp("k.ckpt");
    o.progress = cancel_in_epoch3;
    CHECK(duet_train(s.d, &s.img, &s.txt, &q, &o, &none, NULL, NULL, &e) == DUET_ERR_INTERRUPTED);
    o.progress = NULL;
    o.resume = 1;
    CHECK_MSG(duet_train(s.d, &s.img, &s.txt, &q, &o, &res, NULL, NULL, &e) == DUET_OK, "%s", e.msg);
    if (straight && res) CHECK(memcmp(straight->params, res->params, straight->n_params * sizeof(float)) == 0);
    /* a checkpoint of another schedule is refused */
    q.top_k_final = 2;
    CHECK(duet_train(s.d, &s.img, &s.txt, &q, &o, &none, NULL, NULL, &e) == DUET_ERR_INVALID_ARG);
    duet_model_free(straight);
    duet_model_free(res);
    duet_model_free(a);
    duet_model_free(b);
    duet_model_free(c);
    synth_free(&s);
}

/* 2 epochs + resume to 4 equals 4 epochs straight, bit for bit, in f32 and
 * (on a CPU with native bf16) in bf16. */
TEST(resume_equals_uninterrupted) {
    synth s = {0};
    synth_load(&s, tmp("syn2"), 200);
    if (!s.d) return;
    duet_precision precs[2] = {DUET_PRECISION_F32, DUET_PRECISION_BF16};
    for (int k = 0; k < 2; k++) {
        if (precs[k] == DUET_PRECISION_BF16 && !duet_cpu_has_bf16()) {
            fprintf(stderr, "  resume in bf16: skipped, oneDNN sees %s (no native bf16)\n",
                    duet_cpu_isa());
            continue;
        }
        duet_params p = small(0);
        p.epochs = 4;
        p.precision = precs[k];
        duet_error e = {0};
        duet_model *straight = NULL, *half = NULL, *resumed = NULL;
        CHECK(duet_train(s.d, &s.img, &s.txt, &p, NULL, &straight, NULL, NULL, &e) == DUET_OK);
        duet_train_opts o = {0};
        o.checkpoint_path = tmp(k ? "run16.ckpt" : "run.ckpt");
        p.epochs = 2;
        CHECK_MSG(duet_train(s.d, &s.img, &s.txt, &p, &o, &half, NULL, NULL, &e) == DUET_OK, "%s", e.msg);
        p.epochs = 4;
        o.resume = 1;
        CHECK_MSG(duet_train(s.d, &s.img, &s.txt, &p, &o, &resumed, NULL, NULL, &e) == DUET_OK, "%s", e.msg);
        if (straight && resumed) {
            CHECK(memcmp(straight->params, resumed->params, straight->n_params * sizeof(float)) == 0);
            CHECK(resumed->info.epochs_run == 4);
            CHECK(resumed->p.precision == precs[k] && straight->p.precision == precs[k]);
        }
        fprintf(stderr, "  resume equals uninterrupted, bit for bit: precision %s, ISA %s\n",
                duet_precision_name(precs[k]), duet_cpu_isa());
        /* a checkpoint of other settings, or of the other precision, is refused */
        duet_model *other = NULL;
        p.hidden = 16;
        CHECK(duet_train(s.d, &s.img, &s.txt, &p, &o, &other, NULL, NULL, &e) == DUET_ERR_INVALID_ARG);
        CHECK_MSG(strstr(e.msg, "other settings: --hidden 16 (the checkpoint: ") != NULL, "%s", e.msg);
        p.hidden = small(0).hidden;
        p.precision = k ? DUET_PRECISION_F32 : DUET_PRECISION_BF16;
        if (duet_cpu_has_bf16()) {
            CHECK(duet_train(s.d, &s.img, &s.txt, &p, &o, &other, NULL, NULL, &e) == DUET_ERR_INVALID_ARG);
            CHECK_MSG(strstr(e.msg, "--precision") != NULL, "%s", e.msg);
        }
        duet_model_free(straight);
        duet_model_free(half);
        duet_model_free(resumed);
    }
    synth_free(&s);
}

TEST(training_refuses_bad_input_and_cancels) {
    synth s = {0};
    synth_load(&s, tmp("syn3"), 100);
    if (!s.d) return;
    duet_params p = small(0);
    duet_error e = {0};
    duet_model *m = NULL;
    duet_mat short_img = {s.img.data, s.img.rows - 1, s.img.cols};
    CHECK(duet_train(s.d, &short_img, &s.txt, &p, NULL, &m, NULL, NULL, &e) == DUET_ERR_SHAPE);
    CHECK(strstr(e.msg, "image features") && strstr(e.msg, "rows"));
    s.txt.data[5 * s.txt.cols + 2] = INFINITY;
    CHECK(duet_train(s.d, &s.img, &s.txt, &p, NULL, &m, NULL, NULL, &e) == DUET_ERR_NONFINITE);
    CHECK(strstr(e.msg, "row 5, column 2") != NULL);
    s.txt.data[5 * s.txt.cols + 2] = 0.0f;
    p.top_k = 0;
    CHECK(duet_train(s.d, &s.img, &s.txt, &p, NULL, &m, NULL, NULL, &e) == DUET_ERR_INVALID_ARG);
    CHECK(strstr(e.msg, "top_k") != NULL);
    p.top_k = 10;
    size_t stop = 1;
    duet_train_opts o = {0};
    o.progress = cancel_at_step;
    o.progress_user = &stop;
    CHECK(duet_train(s.d, &s.img, &s.txt, &p, &o, &m, NULL, NULL, &e) == DUET_ERR_INTERRUPTED);
    CHECK(m == NULL);
    synth_free(&s);
}

int main(void) {
    if (scratch_make("model")) return 1;
    RUN(embeddings_are_unit_vectors);
    RUN(model_file_round_trip);
    RUN(model_file_refusals);
    RUN(recall_matches_brute_force);
    RUN(recall_perfect_and_median);
    RUN(training_is_repeatable_and_learns);
    RUN(top_k_schedule);
    RUN(resume_equals_uninterrupted);
    RUN(training_refuses_bad_input_and_cancels);
    scratch_remove();
    return check_summary("model");
}
