/* fuzz_w2v_bin.c -- libFuzzer target for word2vec binary (duet_vectors_parse_w2v_bin).
 * `make fuzz` runs it on tests/fixtures/fuzz/w2v_bin; the checks are in
 * fuzz_vectors.h. */
#include "fuzz_vectors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    duet_vectors *v = NULL;
    duet_error err = {0};
    duet_status st = duet_vectors_parse_w2v_bin((const char *)data, size, FUZZ_NAME, &v, &err);
    fuzz_check_vectors(st, v, &err);
    return 0;
}
