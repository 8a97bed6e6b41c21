/* sbuf.c -- a growable string (keys, JSON, HTML), FNV-1a hashing and
 * whole text files written atomically: small helpers every part may use. */
#include "core.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t duet_fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) { h ^= b[i]; h *= 1099511628211ULL; }
    return h;
}

void duet_sb_printf(duet_sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->n;
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? room : 0, fmt, ap);
        va_end(ap);
        if (k < 0) { b->oom = 1; return; }
        if (b->s && (size_t)k < room) { b->n += (size_t)k; return; }
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + (size_t)k + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) { b->oom = 1; return; }
        b->s = s;
        b->cap = cap;
    }
}

void duet_sb_html(duet_sbuf *b, const char *t) {
    for (; t && *t; t++) {
        switch (*t) {
        case '<': duet_sb_printf(b, "&lt;"); break;
        case '>': duet_sb_printf(b, "&gt;"); break;
        case '&': duet_sb_printf(b, "&amp;"); break;
        case '"': duet_sb_printf(b, "&quot;"); break;
        case '\'': duet_sb_printf(b, "&#39;"); break;
        default: duet_sb_printf(b, "%c", *t);
        }
    }
}

void duet_sb_free(duet_sbuf *b) {
    if (!b) return;
    free(b->s);
    memset(b, 0, sizeof *b);
}

duet_status duet_write_text(const char *path, const char *text, size_t len, duet_error *err) {
    duet_atomic_file af;
    duet_status st = duet_atomic_open(&af, path, err);
    if (!st) st = duet_atomic_write(&af, text, len, err);
    if (!st) return duet_atomic_commit(&af, err);
    duet_atomic_abort(&af);
    return st;
}
