/* error.c -- status names and message formatting. */
#include "core.h"
#include <stdio.h>
#include <string.h>

static const char *const status_names[DUET_STATUS_COUNT] = {
    [DUET_OK] = "ok",
    [DUET_ERR_INVALID_ARG] = "invalid argument",
    [DUET_ERR_IO] = "i/o error",
    [DUET_ERR_FORMAT] = "format error",
    [DUET_ERR_VERSION] = "unsupported version",
    [DUET_ERR_SHAPE] = "shape mismatch",
    [DUET_ERR_NONFINITE] = "non-finite value",
    [DUET_ERR_NOMEM] = "out of memory",
    [DUET_ERR_UNSUPPORTED] = "unsupported",
    [DUET_ERR_EMPTY] = "empty input",
    [DUET_ERR_INTERRUPTED] = "interrupted",
};

const char *duet_status_str(duet_status s) {
    if ((unsigned)s >= DUET_STATUS_COUNT) return "unknown status";
    return status_names[s];
}

duet_status duet_fail(duet_error *err, duet_status st, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->status = st;
    }
    return st;
}

duet_status duet_fail_wrap(duet_error *err, duet_status st, const char *fmt, ...) {
    if (!err) return st;
    char prefix[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    old[sizeof old - 1] = '\0';
    snprintf(err->msg, sizeof err->msg, "%.400s: %.600s", prefix, old);
    err->status = st;
    return st;
}
