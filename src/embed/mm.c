/* mm.c -- what the rest of src/embed computes on (embed.h, "Matrix
 * products"): the matrix products on oneDNN, one matmul primitive per shape,
 * made on first use and kept in a small cache owned by a workspace, run
 * with user scratchpads so that workspaces on different threads never share
 * state; the threads of the element-wise work; bf16 rounding; big arrays.
 *
 * What dnn.h's duet_gemm does not cover and the branches need: a transposed
 * A (the weight gradients X^T dZ), a bias row, and f32 and bf16 products in
 * one cache. */
#define _DEFAULT_SOURCE /* madvise */
#include "embed/embed.h"
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* ----------------------------------------------------------- big arrays
 * The slabs and workspaces of training stream through the products and
 * the optimizer every step; on 2 MB pages (where the kernel gives them on
 * request, transparent_hugepage=madvise) the address translation of those
 * streams costs much less: 5% of a Flickr30K-sized training step. */
#define HUGE_MIN ((size_t)4 << 20)
#define HUGE_PAGE ((size_t)2 << 20)

void *duet_embed_alloc(size_t n, size_t size, int zero) {
    size_t bytes;
    if (!duet_mul_size(n, size, &bytes)) return NULL;
#ifdef MADV_HUGEPAGE
    if (bytes >= HUGE_MIN && bytes <= SIZE_MAX - HUGE_PAGE) {
        size_t round = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
        void *p = aligned_alloc(HUGE_PAGE, round);
        if (p) {
            (void)madvise(p, round, MADV_HUGEPAGE); /* advice: failure is harmless */
            if (zero) memset(p, 0, bytes);
            return p;
        }
    }
#endif
    return zero ? duet_calloc_array(n, size) : duet_alloc_array(n, size);
}

/* y = bf16(x) for rows x cols floats, on the threads. */
typedef struct conv_job {
    const float *x;
    uint16_t *y;
    size_t cols;
} conv_job;

static void conv_rows(void *ctx, size_t r0, size_t r1) {
    conv_job *j = ctx;
    duet_f32_to_bf16(j->x + r0 * j->cols, j->y + r0 * j->cols, (r1 - r0) * j->cols);
}

void duet_embed_bf16_rows(const float *x, size_t rows, size_t cols, uint16_t *y) {
    conv_job j = {x, y, cols};
    duet_embed_parallel_for(rows, cols, conv_rows, &j);
}

/* ----------------------------------------------------- element-wise work
 * oneDNN runs on OpenMP (libgomp), whose idle threads spin for a while
 * after each primitive: element-wise work on threads of its own (POSIX
 * threads, core's duet_parallel_for) would share the cores with them and
 * run several times slower between products. So src/embed runs its
 * element-wise work on the same OpenMP team, through libgomp's entry point
 * of `#pragma omp parallel` (GCC's OpenMP ABI; src/ is built without
 * -fopenmp, and libgomp is linked for oneDNN).
 *
 * Small work runs on the calling thread alone, products as well (their
 * primitives are made for one thread: oneDNN fixes a primitive's thread
 * count when it is made): waking a second thread costs little on an idle
 * machine, but a team's barrier can wait a whole scheduler slice for a
 * thread that another process holds the core from, which made a small
 * training run (the synthetic tests) ten times slower on a busy machine. */
extern void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads,
                          unsigned flags);

typedef struct par_job {
    duet_range_fn fn;
    void *ctx;
    size_t n;
} par_job;

static void par_body(void *arg) {
    const par_job *j = arg;
    size_t t = (size_t)omp_get_thread_num(), nt = (size_t)omp_get_num_threads();
    size_t per = j->n / nt, b = t * per, e = t + 1 == nt ? j->n : b + per;
    if (b < e) j->fn(j->ctx, b, e);
}

size_t duet_embed_thread(void) { return (size_t)omp_get_thread_num(); }
size_t duet_embed_max_threads(void) { return (size_t)omp_get_max_threads(); }

void duet_embed_parallel_for(size_t n, size_t item_cost, duet_range_fn fn, void *ctx) {
    size_t threads = (size_t)omp_get_max_threads();
    double work = (double)n * (double)(item_cost ? item_cost : 1);
    if ((double)threads > work / DUET_PAR_WORK) threads = (size_t)(work / DUET_PAR_WORK);
    if (threads > n) threads = n;
    if (threads <= 1) {
        if (n) fn(ctx, 0, n);
        return;
    }
    par_job j = {fn, ctx, n};
    GOMP_parallel(par_body, &j, (unsigned)threads, 0);
}

/* The shape part of an op: what makes two ops share a primitive. */
static int same_shape(const duet_mm *a, const duet_mm *b) {
    return a->m == b->m && a->n == b->n && a->k == b->k && a->dt == b->dt &&
           a->lda == b->lda && a->ldb == b->ldb && a->ldc == b->ldc &&
           a->ta == b->ta && a->tb == b->tb && a->acc == b->acc &&
           !a->bias == !b->bias;
}

static const char *dt_name(dnnl_data_type_t dt) { return dt == dnnl_bf16 ? "bf16" : "f32"; }

static void plan_free(duet_mm_plan *p) {
    if (p->prim) dnnl_primitive_destroy(p->prim);
    memset(p, 0, sizeof *p);
}

duet_status duet_mm_cache_init(duet_mm_cache *c, duet_dnn *dnn, duet_error *err) {
    memset(c, 0, sizeof *c);
    if (dnn) {
        c->dnn = dnn;
        return DUET_OK;
    }
    duet_status st = duet_dnn_init(&c->own, DUET_PRECISION_F32, err);
    if (!st) c->dnn = &c->own;
    return st;
}

void duet_mm_cache_free(duet_mm_cache *c) {
    if (!c) return;
    for (size_t i = 0; i < DUET_MM_PLANS; i++) plan_free(&c->plans[i]);
    free(c->scratch);
    duet_dnn_fini(&c->own);
    memset(c, 0, sizeof *c);
}

/* A row-major [r x c] matrix with leading dimension ld, or (t) the
 * transpose of a row-major [c x r] one. */
static dnnl_status_t desc(dnnl_memory_desc_t *md, size_t r, size_t c, size_t ld, int t,
                          dnnl_data_type_t dt) {
    dnnl_dims_t dims = {(dnnl_dim_t)r, (dnnl_dim_t)c};
    dnnl_dims_t strides = {t ? 1 : (dnnl_dim_t)ld, t ? (dnnl_dim_t)ld : 1};
    return dnnl_memory_desc_init_by_strides(md, 2, dims, dt, strides);
}

/* Creates the primitive of op's shape (for one thread when it is small). */
static dnnl_status_t plan_make(duet_mm_cache *c, const duet_mm *op, duet_mm_plan *p) {
    dnnl_memory_desc_t *md = p->md;
    dnnl_dims_t bias_dims = {1, (dnnl_dim_t)op->n};
    dnnl_status_t s = desc(&md[0], op->m, op->k, op->lda, op->ta, op->dt);
    if (!s) s = desc(&md[1], op->k, op->n, op->ldb, op->tb, op->dt);
    if (!s) s = desc(&md[2], op->m, op->n, op->ldc, 0, dnnl_f32);
    if (!s && op->bias) s = dnnl_memory_desc_init_by_tag(&md[3], 2, bias_dims, dnnl_f32, dnnl_ab);
    dnnl_matmul_desc_t mmd;
    if (!s) s = dnnl_matmul_desc_init(&mmd, &md[0], &md[1], op->bias ? &md[3] : NULL, &md[2]);
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    int threads = omp_get_max_threads();
    if ((double)op->m * (double)op->n * (double)op->k < DUET_MM_SERIAL) omp_set_num_threads(1);
    if (!s) s = dnnl_primitive_attr_create(&attr);
    if (!s) s = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    /* f32 stays f32 whatever ONEDNN_DEFAULT_FPMATH_MODE says */
    if (!s) s = dnnl_primitive_attr_set_fpmath_mode(attr, dnnl_fpmath_mode_strict);
    if (!s && op->acc) {
        s = dnnl_post_ops_create(&po);
        if (!s) s = dnnl_post_ops_append_sum(po, 1.0f);
        if (!s) s = dnnl_primitive_attr_set_post_ops(attr, po);
    }
    if (!s) s = dnnl_primitive_desc_create(&pd, &mmd, attr, c->dnn->eng, NULL);
    if (!s) {
        md[4] = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        p->scratch = (dnnl_memory_desc_get_size(&md[4]) + 63) / 64 * 64;
        s = dnnl_primitive_create(&p->prim, pd);
    }
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    omp_set_num_threads(threads);
    return s;
}

/* The cached plan of op's shape, made (evicting the oldest) if new. */
static duet_status plan_get(duet_mm_cache *c, const duet_mm *op, duet_mm_plan **out,
                            duet_error *err) {
    duet_mm_plan *p = NULL;
    for (size_t i = 0; i < DUET_MM_PLANS && !p; i++)
        if (c->plans[i].prim && same_shape(&c->plans[i].key, op)) p = &c->plans[i];
    dnnl_status_t s = dnnl_success;
    if (!p) {
        p = &c->plans[c->next];
        c->next = (c->next + 1) % DUET_MM_PLANS;
        plan_free(p);
        s = plan_make(c, op, p);
        p->key = *op;
    }
    if (!s && p->scratch > c->scratch_cap) {
        free(c->scratch);
        c->scratch_cap = 0;
        c->scratch = aligned_alloc(64, p->scratch);
        if (!c->scratch) s = dnnl_out_of_memory;
        else c->scratch_cap = p->scratch;
    }
    if (s) {
        plan_free(p);
        return duet_dnn_fail(s, err, "matmul %s%s [%zu x %zu] x %s[%zu x %zu]", dt_name(op->dt),
                             op->ta ? " A^T" : "", op->m, op->k, op->tb ? "B^T " : "", op->k, op->n);
    }
    *out = p;
    return DUET_OK;
}

/* Runs op with plan p on stream st, scratchpad at scratch. */
static dnnl_status_t exec(duet_mm_cache *c, const duet_mm_plan *p, const duet_mm *op,
                          dnnl_stream_t st, void *scratch) {
    void *h[5] = {(void *)op->a, (void *)op->b, op->c, (void *)op->bias, scratch};
    int args[5] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_BIAS, DNNL_ARG_SCRATCHPAD};
    dnnl_memory_t mem[5] = {0};
    dnnl_exec_arg_t ea[5];
    int na = 0;
    dnnl_status_t s = dnnl_success;
    for (int i = 0; i < 5 && !s; i++) {
        if ((i == 3 && !op->bias) || (i == 4 && !p->scratch)) continue;
        s = dnnl_memory_create(&mem[i], &p->md[i], c->dnn->eng, h[i]);
        ea[na++] = (dnnl_exec_arg_t){args[i], mem[i]};
    }
    if (!s) s = dnnl_primitive_execute(p->prim, st, na, ea);
    if (!s) s = dnnl_stream_wait(st);
    for (int i = 0; i < 5; i++)
        if (mem[i]) dnnl_memory_destroy(mem[i]);
    return s;
}

duet_status duet_mm_run(duet_mm_cache *c, const duet_mm *op, duet_error *err) {
    if (!op->m || !op->n) return DUET_OK;
    duet_mm_plan *p = NULL;
    duet_status st = plan_get(c, op, &p, err);
    if (st) return st;
    return duet_dnn_fail(exec(c, p, op, c->dnn->stream, c->scratch), err,
                         "matmul %s [%zu x %zu] x [%zu x %zu]", dt_name(op->dt), op->m, op->k,
                         op->k, op->n);
}
