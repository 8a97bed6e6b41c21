/* fuzz_tfjs.c -- libFuzzer target for duet_cnn_parse_tfjs (model.json:
 * topology, manifest, graph building, BN folding). Input layout:
 *   byte 0: number of shards (mod 4); bytes 1-2: floats per shard (LE);
 *   the rest: model.json text. Shards hold a fixed ramp of floats.
 * A failure must name the model ("fuzz").
 *   make fuzz   (corpus: tests/fixtures/fuzz/tfjs) */
#include "duet.h"
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    size_t ns = data[0] % 4, nf = (size_t)data[1] | ((size_t)data[2] << 8);
    float *w = malloc((nf ? nf : 1) * sizeof(float));
    if (!w) return 0;
    for (size_t i = 0; i < nf; i++) w[i] = 0.001f * (float)(i % 1000) + 0.5f;
    const void *sh[4] = {w, w, w, w};
    size_t len[4] = {nf * 4, nf * 4, nf * 4, nf * 4};
    duet_cnn *net = NULL;
    duet_error err = {0};
    duet_status st = duet_cnn_parse_tfjs((const char *)data + 3, size - 3, sh, len, ns, "fuzz", &net, &err);
    if (st == DUET_OK) {
        if (!net) abort();
    } else if (net || (!strstr(err.msg, "fuzz") && st != DUET_ERR_NOMEM)) {
        abort();
    }
    duet_cnn_free(net);
    free(w);
    return 0;
}
