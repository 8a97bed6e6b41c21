/* fuzz_tsv.c -- libFuzzer target for the TSV caption parser.
 * The input is the whole TSV file. On success the dataset must pass
 * duet_dataset_check; on failure *out must be NULL and a message set. */
#include "data/data.h"
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    duet_dataset *d = (duet_dataset *)1;
    duet_error e = {0};
    duet_status st = duet_dataset_parse_tsv((const char *)data, size, "fuzz.tsv",
                                            &d, &e);
    if (st == DUET_OK) {
        if (!d || duet_dataset_check(d, &e) != DUET_OK) abort();
    } else if (d != NULL || e.status != st || e.msg[0] == '\0' ||
               !memchr(e.msg, '\0', sizeof e.msg)) {
        abort();
    }
    duet_dataset_free(d);
    return 0;
}
