/* scratch.h -- a private scratch directory for one test binary: made with
 * mkdtemp under /tmp, removed with what the tests left in it at the end.
 * Include after defining _POSIX_C_SOURCE 200809L (mkdtemp).
 *
 *   int main(void) {
 *       if (scratch_make("npy")) return 1;      // /tmp/duet-test-npy.XXXXXX
 *       ... scratch_path(buf, sizeof buf, "a.npy") ...
 *       scratch_remove();
 *   }
 */
#ifndef DUET_TEST_SCRATCH_H
#define DUET_TEST_SCRATCH_H

#include <stdio.h>
#include <stdlib.h>

static char tmpdir[256];

/* Makes the directory; 0 on success, else prints why and returns -1. */
static int scratch_make(const char *suite) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/duet-test-%s.XXXXXX", suite);
    if (mkdtemp(tmpdir)) return 0;
    perror("mkdtemp");
    return -1;
}

/* tmpdir/leaf into buf (caller's storage); returns buf. */
static inline const char *scratch_path(char *buf, size_t n, const char *leaf) {
    snprintf(buf, n, "%s/%s", tmpdir, leaf);
    return buf;
}

/* Removes the directory and everything in it. */
static void scratch_remove(void) {
    if (!tmpdir[0]) return;
    char cmd[sizeof tmpdir + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "scratch: could not remove %s\n", tmpdir);
}

#endif
