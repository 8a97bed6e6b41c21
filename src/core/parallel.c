/* parallel.c -- a minimal parallel for over [0, n) with POSIX threads, for
 * the element-wise work that OpenBLAS does not do (optimizer updates). Each
 * thread gets one contiguous chunk, so results do not depend on timing. */
#include "core.h"
#include <cblas.h>
#include <pthread.h>

typedef struct chunk {
    duet_range_fn fn;
    void *ctx;
    size_t begin, end;
} chunk;

static void *run_chunk(void *arg) {
    chunk *c = arg;
    c->fn(c->ctx, c->begin, c->end);
    return NULL;
}

void duet_parallel_for(size_t n, size_t min_per_thread, duet_range_fn fn, void *ctx) {
    int threads = openblas_get_num_threads();
    if (threads > DUET_MAX_THREADS) threads = DUET_MAX_THREADS;
    if (threads < 1) threads = 1;
    if (min_per_thread < 1) min_per_thread = 1;
    if ((size_t)threads > n / min_per_thread) threads = (int)(n / min_per_thread);
    if (threads <= 1) { fn(ctx, 0, n); return; }
    chunk c[DUET_MAX_THREADS];
    pthread_t th[DUET_MAX_THREADS];
    size_t per = n / (size_t)threads;
    for (int t = 0; t < threads; t++)
        c[t] = (chunk){fn, ctx, (size_t)t * per, t == threads - 1 ? n : (size_t)(t + 1) * per};
    int started[DUET_MAX_THREADS] = {0};
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&th[t], NULL, run_chunk, &c[t]) == 0;
    run_chunk(&c[0]);
    for (int t = 1; t < threads; t++) {
        if (started[t]) pthread_join(th[t], NULL);
        else run_chunk(&c[t]); /* could not start a thread: do its share here */
    }
}
