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

int file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}
