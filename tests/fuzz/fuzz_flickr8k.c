/* fuzz_flickr8k.c -- libFuzzer target for the Flickr8K parser.
 * The input is cut at each "\n--\n" into up to four parts: the token file,
 * then the train, dev and test image lists (missing parts are empty). Each
 * part is copied into its own exact-size buffer so that ASan sees any read
 * past its end. */
#include "data/data.h"
#include <stdlib.h>
#include <string.h>

#define SEP "\n--\n"
#define SEP_LEN 4

/* Cuts data into 4 parts at SEP; the last part takes the rest. */
static void cut(const char *data, size_t size, const char **p, size_t *n) {
    for (int i = 0; i < 4; i++) { p[i] = data + size; n[i] = 0; }
    for (int i = 0; i < 4; i++) {
        const char *end = data + size, *sep = NULL;
        if (i < 3)
            for (const char *q = data; q + SEP_LEN <= end; q++)
                if (memcmp(q, SEP, SEP_LEN) == 0) { sep = q; break; }
        p[i] = data;
        n[i] = (size_t)((sep ? sep : end) - data);
        if (!sep) return;
        size -= n[i] + SEP_LEN;
        data = sep + SEP_LEN;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *part[4];
    size_t len[4];
    char *copy[4];
    cut((const char *)data, size, part, len);
    for (int i = 0; i < 4; i++) {
        copy[i] = malloc(len[i] ? len[i] : 1);
        if (!copy[i]) abort();
        memcpy(copy[i], part[i], len[i]);
    }
    duet_text_buf tok = {copy[0], len[0], "tok.txt"};
    duet_text_buf splits[3] = {{copy[1], len[1], "train.txt"},
                               {copy[2], len[2], "dev.txt"},
                               {copy[3], len[3], "test.txt"}};
    duet_dataset *d = (duet_dataset *)1;
    duet_error e = {0};
    duet_status st = duet_dataset_parse_flickr8k(&tok, splits, "fuzz", &d, &e);
    if (st == DUET_OK) {
        if (!d || duet_dataset_check(d, &e) != DUET_OK) abort();
    } else if (d != NULL || e.status != st || e.msg[0] == '\0') {
        abort();
    }
    duet_dataset_free(d);
    for (int i = 0; i < 4; i++) free(copy[i]);
    return 0;
}
