/* fuzz_tflite.c -- libFuzzer target for duet_cnn_parse_tflite (the
 * flatbuffer reader and graph builder). A failure must name the input.
 *   make fuzz   (corpus: tests/fixtures/fuzz/tflite) */
#include "duet.h"
#include <stdlib.h>
#include <string.h>

#define NAME "fuzz-input.tflite"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    duet_cnn *net = NULL;
    duet_error err = {0};
    duet_status st = duet_cnn_parse_tflite(data, size, NAME, &net, &err);
    if (st == DUET_OK) {
        if (!net || duet_cnn_feature_dim(net) == 0) abort();
    } else if (net || (!strstr(err.msg, NAME) && st != DUET_ERR_NOMEM)) {
        abort();
    }
    duet_cnn_free(net);
    return 0;
}
