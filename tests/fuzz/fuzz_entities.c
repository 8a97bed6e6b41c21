/* fuzz_entities.c -- libFuzzer target for the Flickr30K Entities parsers.
 * The input is a Sentences file, a NUL byte, then an Annotations XML file
 * (no NUL: all of it is the sentences file, the XML is empty). On success
 * every phrase's box must lie in the image and have a positive area; on
 * failure a message must be set. */
#include "data/data.h"
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *s = (const char *)data;
    const char *nul = memchr(s, '\0', size);
    size_t s_len = nul ? (size_t)(nul - s) : size;
    const char *x = nul ? nul + 1 : s + size;
    size_t x_len = nul ? size - s_len - 1 : 0;
    duet_entities_image im;
    memset(&im, 0, sizeof im);
    duet_error e = {0};
    duet_status st = duet_entities_parse(s, s_len, "fuzz.txt", x, x_len, "fuzz.xml", &im, &e);
    if (st == DUET_OK) {
        for (size_t p = 0; p < im.n_phrases; p++) {
            const duet_phrase *ph = &im.phrases[p];
            if (!ph->text || !ph->type || ph->sentence >= im.n_sentences) abort();
            if (ph->has_box && !(ph->box.x0 >= 0 && ph->box.x0 < ph->box.x1 && ph->box.x1 <= (float)im.width &&
                                 ph->box.y0 >= 0 && ph->box.y0 < ph->box.y1 && ph->box.y1 <= (float)im.height))
                abort();
        }
    } else if (e.status != st || e.msg[0] == '\0' || !memchr(e.msg, '\0', sizeof e.msg)) {
        abort();
    }
    duet_entities_image_clear(&im);
    return 0;
}
