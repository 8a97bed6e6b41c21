/* fuzz_npy.c -- libFuzzer target for duet_npy_parse.
 *
 *   make fuzz     (or build it by hand with clang
 *                  -fsanitize=fuzzer,address,undefined, linking src/core)
 *   build-fuzz/fuzz_npy -max_total_time=60 tests/fixtures/fuzz/npy
 *
 * Besides memory errors (ASan/UBSan) it aborts when the contract breaks:
 * a success must give an allocated matrix whose size matches the input, a
 * failure must leave *out zeroed with a message naming the input. */
#include "duet.h"
#include <stdlib.h>
#include <string.h>

#define NAME "fuzz-input.npy"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    duet_mat m = {0};
    duet_error err = {0};
    duet_status st = duet_npy_parse(data, size, NAME, &m, &err);
    if (st == DUET_OK) {
        /* every element came from at least 2 input bytes */
        if (!m.data || (m.cols && m.rows > size / 2 / m.cols)) abort();
        volatile float sink = 0; /* touch every element */
        for (size_t i = 0; i < m.rows * m.cols; i++) sink += m.data[i];
        (void)sink;
    } else {
        if (m.data || m.rows || m.cols) abort();
        if (err.status != st || !memchr(err.msg, '\0', sizeof err.msg)) abort();
        if (!strstr(err.msg, NAME)) abort();
    }
    duet_mat_free(&m);
    return 0;
}
