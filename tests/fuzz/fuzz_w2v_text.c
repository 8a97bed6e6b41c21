/* fuzz_w2v_text.c -- libFuzzer target for word2vec / fastText text (duet_vectors_parse_text, "N D" header).
 * `make fuzz` runs it on tests/fixtures/fuzz/w2v_text; the checks are in
 * fuzz_vectors.h. */
#include "fuzz_vectors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    duet_vectors *v = NULL;
    duet_error err = {0};
    duet_status st = duet_vectors_parse_text((const char *)data, size, 1, "word2vec-text", FUZZ_NAME, &v, &err);
    fuzz_check_vectors(st, v, &err);
    return 0;
}
