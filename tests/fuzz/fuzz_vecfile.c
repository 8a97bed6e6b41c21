/* fuzz_vecfile.c -- libFuzzer target for duet's vectors file
 * (duet_vectors_parse_file, which takes over its buffer). `make fuzz` runs it
 * on tests/fixtures/fuzz/vecfile; the checks are in fuzz_vectors.h. */
#include "fuzz_vectors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    duet_vectors *v = NULL;
    duet_error err = {0};
    char *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    duet_status st = duet_vectors_parse_file(copy, size, FUZZ_NAME, &v, &err);
    fuzz_check_vectors(st, v, &err); /* copy is freed with v or on failure */
    return 0;
}
