/* fuzz_wink.c -- libFuzzer target for the wink-embeddings JSON (duet_vectors_parse_wink, yajl streaming).
 * `make fuzz` runs it on tests/fixtures/fuzz/wink; the checks are in
 * fuzz_vectors.h. */
#include "fuzz_vectors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    duet_vectors *v = NULL;
    duet_error err = {0};
    duet_status st = duet_vectors_parse_wink((const char *)data, size, FUZZ_NAME, &v, &err);
    fuzz_check_vectors(st, v, &err);
    return 0;
}
