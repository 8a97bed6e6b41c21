/* fuzz_glove.c -- libFuzzer target for GloVe text (duet_vectors_parse_text, no header).
 * `make fuzz` runs it on tests/fixtures/fuzz/glove; the checks are in
 * fuzz_vectors.h. */
#include "fuzz_vectors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    duet_vectors *v = NULL;
    duet_error err = {0};
    duet_status st = duet_vectors_parse_text((const char *)data, size, 0, "glove", FUZZ_NAME, &v, &err);
    fuzz_check_vectors(st, v, &err);
    return 0;
}
