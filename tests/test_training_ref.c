/* test_training_ref.c -- duet and the PyTorch reference, trained on the same
 * synthetic data with the same settings, reach the same test R-sum: the mean
 * over seeds 1..3 within 3 points of the reference's mean, recorded by
 * tools/ref/make_synth_fixture.sh in tests/fixtures/ref_train/synth.json.
 * (One seed alone varies by about +-2 R-sum points on the 5,000 test images,
 * hence the mean of three.) */
#include "check.h"
#include "embed/embed.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

TEST(synthetic_rsum_matches_pytorch) {
    json_error_t je;
    json_t *fx = json_load_file("tests/fixtures/ref_train/synth.json", 0, &je);
    CHECK_MSG(fx != NULL, "fixture: %s", je.text);
    if (!fx) return;
    double ref = json_number_value(json_object_get(fx, "mean_rsum"));
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/duet-test-synref-%ld", (long)getpid());
    mkdir(dir, 0777);
    /* keep in step with tools/ref/make_synth_fixture.sh */
    duet_synth_params sp = duet_synth_default_params();
    sp.n_train = 2000; sp.n_val = 200; sp.n_test = 5000; sp.seed = 1;
    duet_error e = {0};
    CHECK_MSG(duet_synth_write(&sp, dir, &e) == DUET_OK, "%s", e.msg);
    char spec[128], pi[128], pt[128];
    snprintf(spec, sizeof spec, "tsv:%s/captions.tsv", dir);
    snprintf(pi, sizeof pi, "%s/images.npy", dir);
    snprintf(pt, sizeof pt, "%s/texts.npy", dir);
    duet_dataset *d = NULL;
    duet_mat img = {0}, txt = {0};
    CHECK(duet_dataset_load(spec, &d, &e) == DUET_OK);
    CHECK(duet_npy_read(pi, &img, &e) == DUET_OK);
    CHECK(duet_npy_read(pt, &txt, &e) == DUET_OK);
    duet_params p = duet_default_params();
    p.hidden = 512; p.embed_dim = 128; p.batch_images = 100;
    p.lr = 2e-3f; p.lr_decay = 0.9f; p.epochs = 30;
    double sum = 0.0;
    for (uint64_t seed = 1; seed <= 3 && d; seed++) {
        p.seed = seed;
        duet_model *m = NULL;
        duet_eval_result r = {0};
        CHECK_MSG(duet_train(d, &img, &txt, &p, NULL, &m, NULL, NULL, &e) == DUET_OK, "%s", e.msg);
        if (m) CHECK(duet_evaluate(m, d, &img, &txt, DUET_SPLIT_TEST, 0, &r, &e) == DUET_OK);
        fprintf(stderr, "  seed %d: test R-sum %.2f (reference run %.2f)\n", (int)seed, r.rsum,
                json_number_value(json_object_get(json_object_get(
                    json_array_get(json_object_get(fx, "runs"), seed - 1), "result"), "rsum")));
        sum += r.rsum;
        duet_model_free(m);
    }
    double mean = sum / 3.0;
    fprintf(stderr, "  mean test R-sum: duet %.2f, PyTorch reference %.2f\n", mean, ref);
    CHECK_MSG(fabs(mean - ref) <= 3.0, "duet %.2f vs reference %.2f", mean, ref);
    duet_dataset_free(d);
    duet_mat_free(&img);
    duet_mat_free(&txt);
    json_decref(fx);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

int main(void) {
    RUN(synthetic_rsum_matches_pytorch);
    return check_summary("training_ref");
}
