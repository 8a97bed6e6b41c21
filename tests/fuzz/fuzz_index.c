/* fuzz_index.c -- libFuzzer target for the gallery index file: the tensor
 * file container, the index header, names and texts (duet_index_parse) on
 * arbitrary bytes. An input with the checksum mark gets its CRC-32C trailer
 * made right first, so mutations reach the checks behind the checksum. */
#include "search/search.h"
#include "fuzz_reseal.h"
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    fuzz_reseal(buf, size);
    duet_index *ix = NULL;
    duet_error e = {0};
    if (duet_index_parse(buf, size, "fuzz.index", &ix, &e) != DUET_OK) {
        if (!strstr(e.msg, "fuzz.index")) abort(); /* every message names the file */
        return 0;
    }
    /* an index that opens must answer: every name found at its own row */
    for (size_t i = 0; i < duet_index_count(ix, DUET_SIDE_IMAGE); i++)
        if (duet_index_find_image(ix, duet_index_text(ix, DUET_SIDE_IMAGE, i)) != i) abort();
    for (size_t i = 0; i < duet_index_count(ix, DUET_SIDE_TEXT); i++)
        if (!duet_index_text(ix, DUET_SIDE_TEXT, i)) abort();
    duet_index_free(ix);
    return 0;
}
