/* fuzz_image.c -- libFuzzer target for duet_image_decode (JPEG, PNG, BMP
 * headers and data). A success must give width*height RGB pixels within
 * DUET_IMAGE_MAX_PIXELS; a failure leaves no pixels and names the input.
 *   make fuzz   (corpus: tests/fixtures/fuzz/image) */
#include "duet.h"
#include <stdlib.h>
#include <string.h>

#define NAME "fuzz-input.img"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    duet_image im;
    duet_error err = {0};
    duet_status st = duet_image_decode(data, size, NAME, &im, &err);
    if (st == DUET_OK) {
        if (!im.rgb || im.width == 0 || im.height == 0 || im.width * im.height > DUET_IMAGE_MAX_PIXELS) abort();
        volatile uint8_t s = 0;
        for (size_t i = 0; i < im.width * im.height * 3; i += 61) s ^= im.rgb[i];
        if (im.width * im.height <= 4096) { /* exercise the crops on small images */
            float *o = malloc(sizeof(float) * 10 * 224 * 224 * 3);
            if (o) {
                duet_image_crops(&im, 1, o, &err);
                duet_image_crops(&im, 10, o, &err);
            }
            free(o);
        }
    } else {
        if (im.rgb || !strstr(err.msg, NAME)) abort();
    }
    duet_image_free(&im);
    return 0;
}
