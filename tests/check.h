/* check.h -- a minimal test harness: one binary per tests/test_*.c.
 *
 *   TEST(name) { CHECK(cond); CHECK_NEAR(a, b, tol); ... }
 *   int main(void) { RUN(name); ...; return check_summary("npy"); }
 *
 * A failed CHECK prints file:line and the expression to stderr, marks the
 * current test failed and continues. SKIP("why") ends a test as skipped with
 * the reason printed. check_summary() prints "<suite>: N passed, N failed,
 * N skipped" and returns nonzero if any test failed. */
#ifndef DUET_CHECK_H
#define DUET_CHECK_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_passed, check_failed, check_skipped;
static int check_cur_failed, check_cur_skipped;
static const char *check_cur_name;

#define TEST(name) static void name(void)
#define RUN(name)                                                             \
    do {                                                                      \
        check_cur_failed = 0; check_cur_skipped = 0;                          \
        check_cur_name = #name;                                               \
        name();                                                               \
        if (check_cur_failed) { check_failed++;                               \
            fprintf(stderr, "FAIL %s\n", #name); }                            \
        else if (check_cur_skipped) check_skipped++;                          \
        else check_passed++;                                                  \
    } while (0)
#define CHECK(cond)                                                           \
    do { if (!(cond)) { check_cur_failed = 1;                                 \
        fprintf(stderr, "%s:%d: %s: CHECK(%s) failed\n", __FILE__, __LINE__,  \
                check_cur_name, #cond); } } while (0)
#define CHECK_MSG(cond, ...)                                                  \
    do { if (!(cond)) { check_cur_failed = 1;                                 \
        fprintf(stderr, "%s:%d: %s: CHECK(%s) failed: ", __FILE__, __LINE__,  \
                check_cur_name, #cond);                                       \
        fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)
#define CHECK_NEAR(a, b, tol)                                                 \
    do { double ca_ = (double)(a), cb_ = (double)(b);                         \
        if (!(fabs(ca_ - cb_) <= (tol))) { check_cur_failed = 1;              \
        fprintf(stderr, "%s:%d: %s: %s = %.9g, %s = %.9g, |diff| %.3g > %g\n",\
                __FILE__, __LINE__, check_cur_name, #a, ca_, #b, cb_,         \
                fabs(ca_ - cb_), (double)(tol)); } } while (0)
/* Relative closeness: |a-b| <= rtol * max(|a|,|b|) + atol. */
#define CHECK_CLOSE(a, b, rtol, atol)                                         \
    do { double ca_ = (double)(a), cb_ = (double)(b);                         \
        double m_ = fabs(ca_) > fabs(cb_) ? fabs(ca_) : fabs(cb_);            \
        if (!(fabs(ca_ - cb_) <= (rtol) * m_ + (atol))) {                     \
        check_cur_failed = 1;                                                 \
        fprintf(stderr, "%s:%d: %s: %s = %.9g vs %s = %.9g\n", __FILE__,      \
                __LINE__, check_cur_name, #a, ca_, #b, cb_); } } while (0)
#define SKIP(...)                                                             \
    do { check_cur_skipped = 1; fprintf(stderr, "SKIP %s: ", check_cur_name); \
        fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); return; } while (0)

static inline int check_summary(const char *suite) {
    printf("%s: %d passed, %d failed, %d skipped\n", suite, check_passed,
           check_failed, check_skipped);
    return check_failed ? 1 : 0;
}
#endif
