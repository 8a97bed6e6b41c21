/* tokenize.c -- the one tokenizer rule of duet (training and queries alike)
 * and the word -> row hash table.
 *
 * Rule (docs/TEXT.md): the text is decoded as UTF-8; a token is a maximal run
 * of letters; letters are ASCII A-Z a-z and every code point >= U+00C0
 * except U+00D7, U+00F7 and the punctuation/symbol ranges U+2000-U+2BFF,
 * U+3000-U+303F, U+FE30-U+FE4F, U+FF00-U+FF20 (so é, ß, Greek, Cyrillic and
 * CJK letters are letters). Everything else separates tokens: spaces,
 * digits, apostrophes (' and U+2019), hyphens, punctuation. ASCII and
 * Latin-1 capitals (U+00C0-U+00DE except U+00D7) are lowercased; other
 * scripts are kept as they are. An invalid UTF-8 byte (bad lead byte,
 * truncated or overlong sequence, surrogate, > U+10FFFF) is one separator
 * and is counted in n_invalid. */
#include "text.h"
#include <stdlib.h>
#include <string.h>

/* Decodes one code point at s[0..len); returns its length, or 0 when the
 * byte at s is invalid. */
static size_t utf8_decode(const unsigned char *s, size_t len, uint32_t *cp) {
    unsigned c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    size_t n; uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) { n = 2; v = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 3; v = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if (len < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return n;
}

static int is_letter(uint32_t c) {
    if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (c < 0xC0 || c == 0xD7 || c == 0xF7) return 0;
    if (c >= 0x2000 && c <= 0x2BFF) return 0;
    if (c >= 0x3000 && c <= 0x303F) return 0;
    if (c >= 0xFE30 && c <= 0xFE4F) return 0;
    if (c >= 0xFF00 && c <= 0xFF20) return 0;
    return 1;
}

static uint32_t lower(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
    return c;
}

static size_t utf8_encode(uint32_t c, char *o) {
    if (c < 0x80) { o[0] = (char)c; return 1; }
    if (c < 0x800) { o[0] = (char)(0xC0 | (c >> 6)); o[1] = (char)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | (c >> 12)); o[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (char)(0x80 | (c & 0x3F)); return 3;
    }
    o[0] = (char)(0xF0 | (c >> 18)); o[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3F)); o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

void duet_tokens_free(duet_tokens *t) {
    if (!t) return;
    free(t->buf);
    free(t->tok);
    memset(t, 0, sizeof *t);
}

duet_status duet_tokenize(const char *text, size_t len, duet_tokens *t,
                          duet_error *err) {
    /* Lowercasing never lengthens a code point's encoding, and each token
     * adds one NUL after at least one byte: len + 1 bytes suffice. */
    size_t need;
    if (!duet_add_size(len, 1, &need))
        return duet_fail(err, DUET_ERR_NOMEM, "tokenize: text too long");
    if (t->buf_cap < need) {
        char *b = realloc(t->buf, need);
        if (!b) return duet_fail(err, DUET_ERR_NOMEM, "tokenize: out of memory");
        t->buf = b; t->buf_cap = need;
    }
    t->n = 0; t->n_invalid = 0;
    size_t o = 0, tok_begin = 0;
    int in_tok = 0;
    /* token starts are recorded as offsets first (buf may not move now) */
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    size_t *starts = NULL, n_starts = 0, cap_starts = 0;
    while (i <= len) {
        uint32_t cp = 0; size_t k = 1; int letter = 0;
        if (i < len) {
            k = utf8_decode(s + i, len - i, &cp);
            if (!k) { t->n_invalid++; k = 1; }
            else letter = is_letter(cp);
        }
        if (letter) {
            if (!in_tok) { in_tok = 1; tok_begin = o; }
            o += utf8_encode(lower(cp), t->buf + o);
        } else if (in_tok) {
            t->buf[o++] = '\0';
            in_tok = 0;
            if (n_starts == cap_starts) {
                size_t nc = cap_starts ? 2 * cap_starts : 16;
                size_t *ns = realloc(starts, nc * sizeof *ns);
                if (!ns) { free(starts); return duet_fail(err, DUET_ERR_NOMEM, "tokenize: out of memory"); }
                starts = ns; cap_starts = nc;
            }
            starts[n_starts++] = tok_begin;
        }
        i += k;
    }
    if (t->tok_cap < n_starts) {
        const char **nt = realloc((void *)t->tok, n_starts * sizeof *nt);
        if (!nt) { free(starts); return duet_fail(err, DUET_ERR_NOMEM, "tokenize: out of memory"); }
        t->tok = nt; t->tok_cap = n_starts;
    }
    for (size_t j = 0; j < n_starts; j++) t->tok[j] = t->buf + starts[j];
    t->n = n_starts;
    free(starts);
    return DUET_OK;
}

/* ------------------------------------------------------------ vocabulary */

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) { h ^= (unsigned char)*s; h *= 1099511628211ull; }
    return h;
}

static int valid_utf8(const char *w, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = utf8_decode((const unsigned char *)w + i, n - i, &cp);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

/* Public (include/duet.h): s is borrowed. */
int duet_utf8_valid(const char *s, size_t len) { return valid_utf8(s, len); }

void duet_vocab_free(duet_vocab *v) {
    if (!v) return;
    free(v->blob);
    free((void *)v->word);
    free(v->slot);
    memset(v, 0, sizeof *v);
}

long duet_vocab_find(const duet_vocab *v, const char *word) {
    if (!v->n_slots) return -1;
    size_t mask = v->n_slots - 1, h = (size_t)fnv1a(word) & mask;
    for (;;) {
        uint32_t r = v->slot[h];
        if (!r) return -1;
        if (strcmp(v->word[r - 1], word) == 0) return (long)(r - 1);
        h = (h + 1) & mask;
    }
}

duet_status duet_vocab_build(duet_vocab *v, const char *blob, size_t blob_len,
                             size_t n, int copy, const char *name,
                             duet_error *err) {
    memset(v, 0, sizeof *v);
    if (n >= UINT32_MAX / 2 || n > blob_len)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: %zu words cannot fit %zu vocabulary bytes", name, n, blob_len);
    if (copy) {
        v->blob = malloc(blob_len ? blob_len : 1);
        if (!v->blob) return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", name);
        memcpy(v->blob, blob, blob_len);
        blob = v->blob;
    }
    v->blob_len = blob_len;
    v->n = n;
    size_t ns = 16;
    while (ns < 2 * n) ns <<= 1;
    v->word = duet_alloc_array(n, sizeof *v->word);
    v->slot = duet_calloc_array(ns, sizeof *v->slot);
    v->n_slots = ns;
    if (!v->word || !v->slot) { duet_vocab_free(v); return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", name); }
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const char *w = blob + off;
        const char *z = memchr(w, '\0', blob_len - off);
        if (!z) { duet_vocab_free(v); return duet_fail(err, DUET_ERR_FORMAT, "%s: vocabulary: word %zu is not NUL-terminated (only %zu words present)", name, i, i); }
        size_t wl = (size_t)(z - w);
        if (wl == 0) { duet_vocab_free(v); return duet_fail(err, DUET_ERR_FORMAT, "%s: vocabulary: word %zu is empty", name, i); }
        if (!valid_utf8(w, wl)) { duet_vocab_free(v); return duet_fail(err, DUET_ERR_FORMAT, "%s: vocabulary: word %zu is not valid UTF-8", name, i); }
        v->word[i] = w;
        size_t h = (size_t)fnv1a(w) & (ns - 1);
        while (v->slot[h]) {
            if (strcmp(v->word[v->slot[h] - 1], w) == 0) {
                size_t first = v->slot[h] - 1;
                duet_status st = duet_fail(err, DUET_ERR_FORMAT, "%s: duplicate word '%.64s' (entries %zu and %zu)", name, w, first + 1, i + 1);
                duet_vocab_free(v);
                return st;
            }
            h = (h + 1) & (ns - 1);
        }
        v->slot[h] = (uint32_t)(i + 1);
        off += wl + 1;
    }
    return DUET_OK;
}
