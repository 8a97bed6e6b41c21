/* cmd_text.c -- the text subcommands: `duet vectors import`, `duet textmodel
 * fit` and `duet features text` (called by the `features` dispatcher). */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- vectors */

int cmd_vectors(int argc, char **argv) {
    const char *cmd = "vectors", *out = NULL, *format = "auto", *vocab_from = NULL;
    flag flags[] = {
        {"out", F_STR, &out, "duet vectors file to write (-o)"},
        {"format", F_STR, &format, "auto, glove, word2vec-bin, word2vec-text, fasttext, wink or duet"},
        {"vocab-from", F_STR, &vocab_from, "keep only words that occur in this dataset's captions (SPEC)"},
        {0}};
    const char *pos[2];
    int npos, rc = parse_flags(cmd, "import FILE -o vectors.duet [--format F] [--vocab-from SPEC]",
                               argc, argv, flags, pos, 2, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    if (npos < 1 || strcmp(pos[0], "import") != 0) return usage_error(cmd, "expected `import FILE`");
    if (npos < 2) return usage_error(cmd, "import needs a FILE");
    if ((rc = need(cmd, out, "out"))) return rc;
    int fmt = duet_vec_format_parse(format);
    if (fmt < 0) return usage_error(cmd, "--format: unknown format '%s'", format);
    duet_error e = {0};
    double t0 = now_seconds();
    duet_vectors *v = NULL;
    duet_dataset *d = NULL;
    if (vocab_from && duet_dataset_load(vocab_from, &d, &e)) return fail(cmd, &e);
    if (duet_vectors_import(pos[1], (duet_vec_format)fmt, &v, &e)) { duet_dataset_free(d); return fail(cmd, &e); }
    size_t n0 = duet_vectors_count(v);
    double t1 = now_seconds();
    if (d && duet_vectors_restrict(v, d, &e)) { duet_vectors_free(v); duet_dataset_free(d); return fail(cmd, &e); }
    if (duet_vectors_save(v, out, &e)) { duet_vectors_free(v); duet_dataset_free(d); return fail(cmd, &e); }
    printf("%s: %zu words x %zu dims", out, duet_vectors_count(v), duet_vectors_dim(v));
    if (d) printf(" (of %zu, restricted to the words of %s)", n0, vocab_from);
    printf("; read in %.2f s, total %.2f s\n", t1 - t0, now_seconds() - t0);
    duet_vectors_free(v);
    duet_dataset_free(d);
    return 0;
}

/* ---------------------------------------------------------------- textmodel */

typedef struct tprog { int tty; double t0; } tprog;
static void text_progress(void *u, const char *stage, size_t done, size_t total) {
    tprog *p = u;
    if (p->tty) fprintf(stderr, "[%7.1f s] %s (%zu)\n", now_seconds() - p->t0, stage, total);
    (void)done;
}

static void print_stats(FILE *f, const char *what, const duet_text_stats *s) {
    fprintf(f, "%s: %zu captions, %zu tokens, %zu known (%.2f%%), %zu with no known word, "
               "%zu invalid UTF-8 bytes, %.2f s (%.0f captions/s)\n", what,
            s->n_captions, s->n_tokens, s->n_known,
            s->n_tokens ? 100.0 * (double)s->n_known / (double)s->n_tokens : 0.0,
            s->n_empty, s->n_invalid_utf8, s->seconds,
            s->seconds > 0 ? (double)s->n_captions / s->seconds : 0.0);
}

int cmd_textmodel(int argc, char **argv) {
    const char *cmd = "textmodel", *out = NULL, *spec = NULL, *vec = NULL, *encs = "fv-gmm";
    duet_textmodel_params p = duet_textmodel_default_params();
    int threads = 0;
    const char *pca_method = duet_pca_method_name(p.pca_method), *prec = NULL;
    const char *pca_start = duet_pca_start_name(p.pca_start);
    flag flags[] = {
        {"dataset", F_STR, &spec, "dataset SPEC (fitted on its train split only)"},
        {"vectors", F_STR, &vec, "word vectors (duet vectors file or any importable format)"},
        {"encoder", F_STR, &encs, "mean, tfidf, fv-gmm, fv-hglmm or fv-both"},
        {"components", F_SIZE, &p.components, "mixture components K"},
        {"pca", F_SIZE, &p.pca_dim, "PCA output dimension (0: none; none when >= the encoder's)"},
        {"pca-samples", F_SIZE, &p.pca_samples, "training captions PCA is fitted on (0: all)"},
        {"pca-method", F_STR, &pca_method, "randomized (subspace iteration) or exact (every eigenvector, slow for thousands of dimensions)"},
        {"pca-iters", F_INT, &p.pca_iters, "power iterations of the randomized PCA"},
        {"pca-start", F_STR, &pca_start, "first block of the randomized PCA: gaussian or samples (centred training captions)"},
        {"precision", F_STR, &prec, "products of the randomized PCA: auto, f32 or bf16 (unset: $DUET_PRECISION, else auto)"},
        {"em-iters", F_INT, &p.em_iters, "EM iterations at most"},
        {"ica", F_BOOL, &p.ica, "FastICA of the word vectors before the mixtures (fv-* encoders)"},
        {"seed", F_U64, &p.seed, "seed of k-means++ and of the PCA subset"},
        {"threads", F_INT, &threads, "OpenBLAS threads (0: leave as is)"},
        {"out", F_STR, &out, "text model file to write (-o)"},
        {0}};
    const char *pos[1];
    int npos, rc = parse_flags(cmd, "fit --dataset SPEC --vectors V --encoder E [--components K] [--pca D] -o text.model",
                               argc, argv, flags, pos, 1, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    if (npos < 1 || strcmp(pos[0], "fit") != 0) return usage_error(cmd, "expected `fit`");
    if ((rc = need(cmd, spec, "dataset")) || (rc = need(cmd, out, "out"))) return rc;
    int enc = duet_encoder_parse(encs);
    if (enc < 0) return usage_error(cmd, "--encoder: unknown encoder '%s'", encs);
    p.encoder = (duet_encoder)enc;
    if (enc != DUET_ENC_TFIDF && (rc = need(cmd, vec, "vectors"))) return rc;
    if (p.ica && enc < DUET_ENC_FV_GMM) return usage_error(cmd, "--ica applies to the fv-* encoders only");
    if ((p.pca_method = duet_pca_method_parse(pca_method)) < 0)
        return usage_error(cmd, "--pca-method: '%s' is not randomized or exact", pca_method);
    if ((p.pca_start = duet_pca_start_parse(pca_start)) < 0)
        return usage_error(cmd, "--pca-start: '%s' is not gaussian or samples", pca_start);
    if (p.pca_method == DUET_PCA_RANDOMIZED && p.pca_dim && (rc = get_precision(cmd, prec, &p.precision))) return rc;
    if (threads > 0) duet_set_threads(threads);
    duet_error e = {0};
    duet_dataset *d = NULL;
    duet_vectors *v = NULL;
    duet_textmodel *m = NULL;
    if (duet_dataset_load(spec, &d, &e)) return fail(cmd, &e);
    double t0 = now_seconds();
    if (vec && duet_vectors_import(vec, DUET_VEC_AUTO, &v, &e)) { duet_dataset_free(d); return fail(cmd, &e); }
    double tv = now_seconds() - t0;
    tprog pr = {isatty(2), now_seconds()};
    duet_text_stats st;
    if (duet_textmodel_fit(d, v, &p, text_progress, &pr, &m, &st, &e)) { duet_vectors_free(v); duet_dataset_free(d); return fail(cmd, &e); }
    duet_vectors_free(v);
    if (duet_textmodel_save(m, out, &e)) { duet_textmodel_free(m); duet_dataset_free(d); return fail(cmd, &e); }
    char hex[17] = "?";
    duet_file_hash(out, hex, &e);
    printf("%s: encoder %s, dim %zu, content hash fnv1a64:%s, vectors loaded in %.2f s\n", out,
           duet_encoder_name(duet_textmodel_encoder(m)), duet_textmodel_dim(m), hex, tv);
    print_stats(stdout, "fit (train split)", &st);
    if (st.em_iters_gmm) printf("gmm: %d EM iterations, mean log-likelihood %.6f\n", st.em_iters_gmm, st.ll_gmm);
    if (st.em_iters_hglmm) printf("hglmm: %d EM iterations, mean log-likelihood %.6f\n", st.em_iters_hglmm, st.ll_hglmm);
    if (st.pca_seconds > 0) printf("pca: %s, %.2f s of the fit\n", duet_pca_method_name(p.pca_method), st.pca_seconds);
    duet_textmodel_free(m);
    duet_dataset_free(d);
    return 0;
}

/* ---------------------------------------------------------------- features */

/* Reads a whole file (NUL-terminated); NULL with a message on failure. */
static char *slurp(const char *cmd, const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) { fprintf(stderr, "duet %s: %s: cannot open\n", cmd, path); return NULL; }
    size_t cap = 1 << 16, n = 0, r;
    char *b = malloc(cap + 1);
    while (b && (r = fread(b + n, 1, cap - n, fp)) > 0) {
        n += r;
        if (n == cap) { char *nb = realloc(b, 2 * cap + 1); if (!nb) { free(b); b = NULL; break; } b = nb; cap *= 2; }
    }
    int bad = ferror(fp);
    fclose(fp);
    if (!b || bad) { free(b); fprintf(stderr, "duet %s: %s: read error\n", cmd, path); return NULL; }
    b[n] = '\0';
    *len = n;
    return b;
}

int cmd_features_text(int argc, char **argv) {
    const char *cmd = "features text", *out = NULL, *tm = NULL, *spec = NULL, *capf = NULL;
    int threads = 0;
    if (argc > 0 && strcmp(argv[0], "text") == 0) { argc--; argv++; }
    flag flags[] = {
        {"textmodel", F_STR, &tm, "text model file (duet textmodel fit)"},
        {"dataset", F_STR, &spec, "encode every caption of this dataset, in caption order"},
        {"captions", F_STR, &capf, "or: a UTF-8 file, one caption a line"},
        {"threads", F_INT, &threads, "OpenBLAS threads (0: leave as is)"},
        {"out", F_STR, &out, ".npy file to write [captions x dim] (-o)"},
        {0}};
    const char *pos[1];
    int npos, rc = parse_flags(cmd, "--textmodel T (--dataset SPEC | --captions FILE) -o feats.npy",
                               argc, argv, flags, pos, 0, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    if ((rc = need(cmd, tm, "textmodel")) || (rc = need(cmd, out, "out"))) return rc;
    if (!spec == !capf) return usage_error(cmd, "give exactly one of --dataset and --captions");
    threads = cli_threads(threads);
    if (threads > 0) duet_set_threads(threads);
    duet_error e = {0};
    duet_textmodel *m = NULL;
    duet_dataset *d = NULL;
    char *buf = NULL;
    const char **texts = NULL;
    size_t n = 0;
    if (duet_textmodel_load(tm, &m, &e)) return fail(cmd, &e);
    if (spec) {
        if (duet_dataset_load(spec, &d, &e)) { duet_textmodel_free(m); return fail(cmd, &e); }
        texts = (const char **)d->captions;
        n = d->n_captions;
    } else {
        size_t len;
        if (!(buf = slurp(cmd, capf, &len))) { duet_textmodel_free(m); return 1; }
        for (size_t i = 0; i < len; i++) if (buf[i] == '\n') n++;
        if (len && buf[len - 1] != '\n') n++;
        texts = calloc(n ? n : 1, sizeof *texts);
        if (!texts) { free(buf); duet_textmodel_free(m); fprintf(stderr, "duet %s: out of memory\n", cmd); return 1; }
        size_t k = 0;
        char *p = buf;
        for (size_t i = 0; i < n; i++) {
            char *nl = memchr(p, '\n', len - (size_t)(p - buf));
            if (nl) { *nl = '\0'; if (nl > p && nl[-1] == '\r') nl[-1] = '\0'; }
            /* an embedded NUL byte ends that caption early (documented) */
            texts[k++] = p;
            p = nl ? nl + 1 : buf + len;
        }
        if (n == 0) {
            free(texts); free(buf); duet_textmodel_free(m);
            fprintf(stderr, "duet %s: %s: no captions\n", cmd, capf);
            return 1;
        }
    }
    /* under MPI each rank encodes whole batches of its share; rank 0
     * gathers them in order and writes the file */
    duet_comm *comm = cli_comm();
    size_t lo = 0, hi = n, dim = duet_textmodel_dim(m);
    duet_comm_range(comm, n, DUET_TEXT_BATCH, &lo, &hi);
    duet_mat f = {dim && n ? calloc(hi - lo ? hi - lo : 1, dim * sizeof(float)) : NULL, hi - lo, dim};
    duet_text_stats st = {0};
    int ret = 0;
    float *all = NULL;
    size_t got = 0;
    int rank0 = duet_comm_rank(comm) == 0;
    if (!f.data) { fprintf(stderr, "duet %s: out of memory (%zu x %zu)\n", cmd, n, dim); ret = 1; }
    else if (hi > lo && duet_textmodel_encode(m, texts + lo, hi - lo, &f, NULL, &st, &e)) ret = fail(cmd, &e);
    else if (duet_comm_size(comm) > 1 &&
             duet_comm_gather_rows(comm, f.data, f.rows, dim * sizeof(float), (void **)&all, &got, &e))
        ret = fail(cmd, &e);
    if (!ret && rank0) {
        duet_mat whole = {all ? all : f.data, all ? got : f.rows, dim};
        if (duet_npy_write(out, &whole, &e)) ret = fail(cmd, &e);
    }
    if (!ret && rank0) {
        printf("%s: [%zu x %zu] (%s)\n", out, n, dim, duet_encoder_name(duet_textmodel_encoder(m)));
        if (duet_comm_size(comm) > 1) printf("(encode statistics of rank 0's %zu captions)\n", hi - lo);
        print_stats(stdout, "encode", &st);
    }
    free(all);
    duet_mat_free(&f);
    if (!spec) { free(texts); free(buf); }
    duet_dataset_free(d);
    duet_textmodel_free(m);
    return ret;
}
