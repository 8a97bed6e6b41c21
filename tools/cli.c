/* cli.c -- what every `duet` subcommand shares: the flag parser (a table of
 * flags, each with its default shown by --help), usage errors (exit 2) and
 * failures (exit 1) on stderr. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void flag_value(const flag *f, char *buf, size_t n) {
    switch (f->type) {
    case F_STR: snprintf(buf, n, "%s", *(const char **)f->dst ? *(const char **)f->dst : "(none)"); break;
    case F_INT: snprintf(buf, n, "%d", *(int *)f->dst); break;
    case F_SIZE: snprintf(buf, n, "%zu", *(size_t *)f->dst); break;
    case F_FLOAT: snprintf(buf, n, "%g", (double)*(float *)f->dst); break;
    case F_BOOL: snprintf(buf, n, "%s", *(int *)f->dst ? "on" : "off"); break;
    case F_U64: snprintf(buf, n, "%" PRIu64, *(uint64_t *)f->dst); break;
    }
}

static void print_flags(FILE *out, const flag *flags) {
    for (const flag *f = flags; f->name; f++) {
        char def[256], lhs[64];
        flag_value(f, def, sizeof def);
        snprintf(lhs, sizeof lhs, "--%s%s", f->name, f->type == F_BOOL ? "" : " V");
        fprintf(out, "  %-24s %s (default: %s)\n", lhs, f->help, def);
    }
}

int usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "duet %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see `duet %s --help`)\n", cmd);
    va_end(ap);
    return EXIT_USAGE;
}

static int set_flag(const char *cmd, const flag *f, const char *v) {
    char *end = NULL;
    errno = 0;
    switch (f->type) {
    case F_STR: *(const char **)f->dst = v; return 0;
    case F_BOOL: *(int *)f->dst = 1; return 0;
    case F_INT: {
        long x = strtol(v, &end, 10);
        if (errno || *end || end == v || x < INT_MIN || x > INT_MAX) break;
        *(int *)f->dst = (int)x;
        return 0;
    }
    case F_SIZE: case F_U64: {
        if (*v == '-') break;
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || *end || end == v) break;
        if (f->type == F_SIZE) *(size_t *)f->dst = (size_t)x;
        else *(uint64_t *)f->dst = (uint64_t)x;
        return 0;
    }
    case F_FLOAT: {
        float x = strtof(v, &end);
        if (errno || *end || end == v || !isfinite(x)) break;
        *(float *)f->dst = x;
        return 0;
    }
    }
    return usage_error(cmd, "--%s: '%s' is not a valid %s", f->name, v,
                       f->type == F_FLOAT ? "number" : "whole number");
}

/* Parses argv against flags; positionals are collected into pos (up to
 * max_pos). Returns 0, EXIT_USAGE, or -1 after printing --help. */
int parse_flags(const char *cmd, const char *synopsis, int argc,
                       char **argv, const flag *flags, const char **pos,
                       int max_pos, int *n_pos) {
    *n_pos = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf("usage: duet %s %s\n\nflags:\n", cmd, synopsis);
            print_flags(stdout, flags);
            return -1;
        }
        if (a[0] != '-' || a[1] == '\0') {
            if (*n_pos >= max_pos) return usage_error(cmd, "unexpected argument '%s'", a);
            pos[(*n_pos)++] = a;
            continue;
        }
        const char *name = a + (a[1] == '-' ? 2 : 1);
        if (strcmp(a, "-o") == 0) name = "out";
        size_t len = strcspn(name, "=");
        const flag *f = NULL;
        for (const flag *g = flags; g->name; g++)
            if (strlen(g->name) == len && strncmp(g->name, name, len) == 0) f = g;
        if (!f) return usage_error(cmd, "unknown flag '%s'", a);
        const char *v = NULL;
        if (name[len] == '=') v = name + len + 1;
        else if (f->type != F_BOOL) {
            if (i + 1 >= argc) return usage_error(cmd, "--%s needs a value", f->name);
            v = argv[++i];
        }
        if (f->type == F_BOOL && v) return usage_error(cmd, "--%s takes no value", f->name);
        int rc = set_flag(cmd, f, v);
        if (rc) return rc;
    }
    return 0;
}

int fail(const char *cmd, const duet_error *e) {
    fprintf(stderr, "duet %s: %s\n", cmd, e->msg[0] ? e->msg : duet_status_str(e->status));
    return 1;
}

int need(const char *cmd, const char *v, const char *flagname) {
    if (v) return 0;
    return usage_error(cmd, "--%s is required", flagname);
}


double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The one piece of state of the command line: the job, set once by main. */
static duet_comm *g_comm;
duet_comm *cli_comm(void) { return g_comm; }
void cli_set_comm(duet_comm *c) { g_comm = c; }

int cli_threads(int threads) {
    if (threads > 0 || duet_comm_size(g_comm) == 1) return threads;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int t = (int)(cores / duet_comm_local_size(g_comm));
    return t > 0 ? t : 1;
}

int file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

size_t train_param_flags(flag *out, size_t cap, duet_params *p, const char **optimizer,
                         const char **precision) {
    const flag f[] = {
        {"linear", F_BOOL, &p->linear, "one fc layer per branch instead of the MLP"},
        {"hidden", F_SIZE, &p->hidden, "hidden width of the MLP"},
        {"embed-dim", F_SIZE, &p->embed_dim, "embedding width"},
        {"dropout", F_FLOAT, &p->dropout, "dropout probability"},
        {"margin", F_FLOAT, &p->margin, "ranking margin m"},
        {"top-k", F_SIZE, &p->top_k, "violating negatives averaged per anchor (1 = hardest, VSE++)"},
        {"top-k-final", F_SIZE, &p->top_k_final, "0: --top-k in every epoch; else K falls geometrically to this in the last epoch"},
        {"w-i2t", F_FLOAT, &p->w_i2t, "weight of the image-anchored ranking term"},
        {"w-t2i", F_FLOAT, &p->w_t2i, "lambda1: weight of the sentence-anchored ranking term"},
        {"w-img-struct", F_FLOAT, &p->w_img_struct, "lambda2: image structure term (needs image neighbours)"},
        {"w-txt-struct", F_FLOAT, &p->w_txt_struct, "lambda3: sentence structure term"},
        {"one-way", F_BOOL, &p->one_way, "drop the sentence-anchored ranking term"},
        {"batch-images", F_SIZE, &p->batch_images, "images per batch (B)"},
        {"sents-per-image", F_SIZE, &p->sents_per_image, "sentences per image in a batch (S)"},
        {"optimizer", F_STR, optimizer, "adam or sgd"},
        {"lr", F_FLOAT, &p->lr, "learning rate"},
        {"lr-decay", F_FLOAT, &p->lr_decay, "learning-rate factor per epoch"},
        {"momentum", F_FLOAT, &p->momentum, "SGD momentum"},
        {"weight-decay", F_FLOAT, &p->weight_decay, "L2 weight decay on the fc weights"},
        {"epochs", F_INT, &p->epochs, "epochs"},
        {"patience", F_INT, &p->patience, "stop after N epochs without validation gain (0: never)"},
        {"seed", F_U64, &p->seed, "random seed (same seed + threads = same model)"},
        {"threads", F_INT, &p->threads, "OpenBLAS and oneDNN threads (0: their default)"},
        {"precision", F_STR, precision, PRECISION_HELP},
    };
    size_t n = sizeof f / sizeof f[0];
    if (n > cap) n = cap;
    memcpy(out, f, n * sizeof *f);
    return n;
}

int finish_train_params(const char *cmd, const char *optimizer, const char *precision, duet_params *p) {
    if (strcmp(optimizer, "adam") == 0) p->optimizer = DUET_OPT_ADAM;
    else if (strcmp(optimizer, "sgd") == 0) p->optimizer = DUET_OPT_SGD;
    else return usage_error(cmd, "--optimizer: '%s' is not adam or sgd", optimizer);
    int rc = get_precision(cmd, precision, &p->precision);
    if (rc) return rc;
    duet_error e = {0};
    if (duet_params_validate(p, &e)) return usage_error(cmd, "%s", e.msg);
    return 0;
}

int get_precision(const char *cmd, const char *value, duet_precision *out) {
    const char *env = getenv("DUET_PRECISION");
    const char *v = value ? value : env && *env ? env : "auto";
    int p = duet_precision_parse(v);
    if (p < 0)
        return usage_error(cmd, "%s '%s' is not auto, f32 or bf16", value ? "--precision" : "DUET_PRECISION", v);
    duet_error e = {0};
    if (duet_precision_resolve((duet_precision)p, out, &e)) return fail(cmd, &e);
    if (duet_comm_rank(g_comm) == 0) /* once per job */
        fprintf(stderr, "duet %s: %s on %s\n", cmd, duet_precision_name(*out), duet_cpu_isa());
    return 0;
}
