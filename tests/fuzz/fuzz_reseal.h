/* fuzz_reseal.h -- for the tensor-file fuzz targets: an input that carries
 * the checksum mark (core.h) gets its CRC-32C trailer made right, so that
 * mutations reach the header and array checks behind the checksum (every
 * other input stops at it; the checksum itself is tested in test_search). */
#ifndef FUZZ_RESEAL_H
#define FUZZ_RESEAL_H
#include "core/core.h"
#include <string.h>

static inline void fuzz_reseal(char *buf, size_t size) {
    uint32_t mark;
    if (size < 28) return;
    memcpy(&mark, buf + 12, 4);
    if (mark != DUET_TF_CRC_MARK) return;
    uint32_t c = duet_crc32c(0, buf, size - 4);
    memcpy(buf + size - 4, &c, 4);
}
#endif
