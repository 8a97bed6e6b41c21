/* fuzz_vecfile.c -- libFuzzer target for duet's vectors file (duet_vectors_parse_file).
 *
 *   make fuzz   (build-fuzz/fuzz_vecfile -max_total_time=60 tests/fuzz/corpus/vecfile)
 *
 * Besides memory errors (ASan/UBSan) it aborts when the contract breaks: a
 * success gives a table whose every word is found again at its own row and
 * whose values are finite; a failure leaves *out NULL with a message naming
 * the input. */
#include "text/text.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NAME "fuzz-input"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    duet_vectors *v = NULL;
    duet_error err = {0};
    char *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    duet_status st = duet_vectors_parse_file(copy, size, NAME, &v, &err);
    if (st == DUET_OK) {
        if (!v || !v->n || !v->dim) abort();
        for (size_t i = 0; i < v->n; i++) {
            const char *w = duet_vectors_word(v, i);
            if (!w || !*w || duet_vectors_get(v, w) != v->vec + i * v->dim) abort();
        }
        for (size_t i = 0; i < v->n * v->dim; i++) if (!isfinite(v->vec[i])) abort();
    } else {
        if (v) abort();
        if (err.status != st || !memchr(err.msg, '\0', sizeof err.msg)) abort();
        if (!strstr(err.msg, NAME)) abort();
    }
    duet_vectors_free(v);
    /* copy was taken over by the parser (freed with v or on failure) */
    return 0;
}
