/* fuzz_vectors.h -- the contract every word-vector parser's fuzz target
 * checks after ASan/UBSan: a success gives a table whose every word is found
 * again at its own row and whose values are finite; a failure leaves *out
 * NULL with a message naming the input. Aborts when the contract breaks. */
#ifndef DUET_FUZZ_VECTORS_H
#define DUET_FUZZ_VECTORS_H
#include "text/text.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_NAME "fuzz-input"

/* Checks the result of one parse and frees v. */
static void fuzz_check_vectors(duet_status st, duet_vectors *v, const duet_error *err) {
    if (st == DUET_OK) {
        if (!v || !v->n || !v->dim) abort();
        for (size_t i = 0; i < v->n; i++) {
            const char *w = duet_vectors_word(v, i);
            if (!w || !*w || duet_vectors_get(v, w) != v->vec + i * v->dim) abort();
        }
        for (size_t i = 0; i < v->n * v->dim; i++)
            if (!isfinite(v->vec[i])) abort();
    } else {
        if (v) abort();
        if (err->status != st || !memchr(err->msg, '\0', sizeof err->msg)) abort();
        if (!strstr(err->msg, FUZZ_NAME)) abort();
    }
    duet_vectors_free(v);
}
#endif
