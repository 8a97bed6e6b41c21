/* fuzz_model.c -- libFuzzer target for duet's tensor-file container and the
 * model header: duet_tf_parse + duet_model_from_tf on arbitrary bytes. An
 * input with the checksum mark gets its CRC-32C trailer made right first
 * (every other input would stop at the checksum), so mutations reach the
 * header and array checks; the checksum itself is tested in test_search. */
#include "embed/embed.h"
#include "fuzz_reseal.h"
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    fuzz_reseal(buf, size);
    duet_tf_file tf;
    duet_error e = {0};
    if (duet_tf_parse(buf, size, "fuzz.duet", DUET_MODEL_MAGIC, DUET_MODEL_FORMAT_VERSION,
                      "model", &tf, &e) != DUET_OK) {
        if (!strstr(e.msg, "fuzz.duet")) abort(); /* every message names the file */
        return 0;
    }
    duet_model *m = NULL;
    if (duet_model_from_tf(&tf, "fuzz.duet", &m, &e) == DUET_OK) {
        /* a model that loads must embed: exercise it on one zero row */
        size_t d = duet_model_dim(m, DUET_SIDE_TEXT), o = duet_model_embed_dim(m);
        if (d <= 4096 && o <= 4096 && m->n_params < (1u << 24)) {
            float *x = calloc(d, sizeof(float)), *y = calloc(o, sizeof(float));
            duet_mat mx = {x, 1, d}, my = {y, 1, o};
            if (x && y) duet_model_embed(m, DUET_SIDE_TEXT, &mx, &my, &e);
            free(x);
            free(y);
        }
    } else if (!strstr(e.msg, "fuzz.duet")) {
        abort();
    }
    duet_model_free(m);
    duet_tf_free(&tf);
    return 0;
}
