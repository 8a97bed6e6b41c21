/* test_dataset.c -- the dataset loaders (Flickr8K, Karpathy JSON, TSV). */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "data/data.h"
#include <sys/stat.h>

#define FIX "tests/fixtures/data/"
#define REAL_F8K "../shared/data/flickr8k"

/* Checks that a call failed with status `want` and a message holding the
 * substrings a and b (b may be NULL). */
#define CHECK_FAIL(st, want, e, a, b)                                         \
    do {                                                                      \
        duet_status st_ = (st);                                               \
        CHECK_MSG(st_ == (want), "status '%s', message '%s'",                 \
                  duet_status_str(st_), (e).msg);                             \
        CHECK_MSG(strstr((e).msg, (a)) != NULL, "'%s' lacks '%s'", (e).msg,   \
                  (a));                                                       \
        CHECK_MSG((b) == NULL || strstr((e).msg, (b) ? (b) : "") != NULL,     \
                  "'%s' lacks '%s'", (e).msg, (b) ? (b) : "");                \
    } while (0)

/* Loads spec; NULL (with the message printed) on failure. */
static duet_dataset *load(const char *spec) {
    duet_dataset *d = NULL;
    duet_error e = {0};
    duet_status st = duet_dataset_load(spec, &d, &e);
    if (st != DUET_OK) fprintf(stderr, "load %s: %s\n", spec, e.msg);
    return d;
}

/* The expected CSR group of image i is caps[0..n). */
static int group_is(const duet_dataset *d, size_t i, const size_t *caps,
                    size_t n) {
    size_t a = d->image_cap_start[i], z = d->image_cap_start[i + 1];
    if (z - a != n) return 0;
    for (size_t k = 0; k < n; k++)
        if (d->image_caps[a + k] != caps[k]) return 0;
    return 1;
}

static int consistent(const duet_dataset *d) {
    duet_error e = {0};
    duet_status st = duet_dataset_check(d, &e);
    if (st != DUET_OK) fprintf(stderr, "inconsistent: %s\n", e.msg);
    return st == DUET_OK;
}

/* ----------------------------------------------------------- splits */

TEST(split_names) {
    CHECK(strcmp(duet_split_name(DUET_SPLIT_TRAIN), "train") == 0);
    CHECK(strcmp(duet_split_name(DUET_SPLIT_VAL), "val") == 0);
    CHECK(strcmp(duet_split_name(DUET_SPLIT_TEST), "test") == 0);
    CHECK(strcmp(duet_split_name(DUET_SPLIT_NONE), "none") == 0);
    CHECK(strcmp(duet_split_name(DUET_SPLIT_ALL), "all") == 0);
    CHECK(duet_split_name((duet_split)99) != NULL);
    CHECK(duet_split_parse("train") == DUET_SPLIT_TRAIN);
    CHECK(duet_split_parse("restval") == DUET_SPLIT_TRAIN);
    CHECK(duet_split_parse("val") == DUET_SPLIT_VAL);
    CHECK(duet_split_parse("dev") == DUET_SPLIT_VAL);
    CHECK(duet_split_parse("test") == DUET_SPLIT_TEST);
    CHECK(duet_split_parse("all") == DUET_SPLIT_ALL);
    CHECK(duet_split_parse("none") == -1);
    CHECK(duet_split_parse("Train") == -1);
    CHECK(duet_split_parse("") == -1);
    CHECK(duet_split_parse(NULL) == -1);
}

/* ----------------------------------------------------------- Flickr8K */

TEST(flickr8k_fixture) {
    duet_dataset *d = load("flickr8k:" FIX "flickr8k");
    CHECK(d != NULL);
    if (!d) return;
    CHECK(strcmp(d->source, "flickr8k:" FIX "flickr8k") == 0);
    CHECK(d->n_images == 3);
    CHECK(d->n_captions == 15);
    CHECK(d->n_skipped == 10); /* 2000_b x5, bogus .jpg.1 x1, 2258..jpg x4 */
    CHECK(consistent(d));
    CHECK(strcmp(d->image_names[0], "1000_a.jpg") == 0);
    CHECK(strcmp(d->image_names[1], "3000_c.jpg") == 0);
    CHECK(strcmp(d->image_names[2], "4000_d.jpg") == 0);
    CHECK(d->image_split[0] == DUET_SPLIT_TRAIN);
    CHECK(d->image_split[1] == DUET_SPLIT_TEST);
    CHECK(d->image_split[2] == DUET_SPLIT_VAL);
    CHECK(strcmp(d->captions[0], "A dog runs on the grass .") == 0); /* no \r */
    CHECK(strcmp(d->captions[3], "A Dog in a field .") == 0);
    CHECK(strcmp(d->captions[5], "Two children play in the snow .") == 0);
    CHECK(strcmp(d->captions[8], "A café on a street corner ☕ .") == 0);
    CHECK(strcmp(d->captions[13], "Snow play .") == 0);
    CHECK(strcmp(d->captions[14], "Two kids , one in red , in the snow .") == 0);
    static const size_t img_of[15] = {0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 1, 1};
    for (size_t j = 0; j < 15; j++) CHECK(d->caption_image[j] == img_of[j]);
    static const size_t g0[] = {0, 1, 2, 3, 4}, g1[] = {5, 6, 7, 13, 14},
                        g2[] = {8, 9, 10, 11, 12};
    CHECK(group_is(d, 0, g0, 5));
    CHECK(group_is(d, 1, g1, 5));
    CHECK(group_is(d, 2, g2, 5));
    duet_dataset_free(d);
}

/* Buffers of a Flickr8K set for the parser: token text and three lists. */
static duet_status f8(const char *tok, const char *train, const char *dev,
                      const char *test, duet_error *e) {
    duet_text_buf t = {tok, strlen(tok), "tok.txt"};
    duet_text_buf s[3] = {{train, strlen(train), "train.txt"},
                          {dev, strlen(dev), "dev.txt"},
                          {test, strlen(test), "test.txt"}};
    duet_dataset *d = (duet_dataset *)1;
    duet_status st = duet_dataset_parse_flickr8k(&t, s, "f8", &d, e);
    CHECK(st == DUET_OK ? d != NULL && consistent(d) : d == NULL);
    duet_dataset_free(d);
    return st;
}

TEST(flickr8k_bad) {
    const char *tok = "a.jpg#0\tcap a\nb.jpg#0\tcap b\nc.jpg#0\tcap c\n";
    duet_error e = {0};
    CHECK(f8(tok, "a.jpg\n", "b.jpg\n", "c.jpg\n", &e) == DUET_OK);
    CHECK_FAIL(f8(tok, "a.jpg\n", "b.jpg\n", "c.jpg\na.jpg\n", &e),
               DUET_ERR_FORMAT, e, "test.txt:2", "train.txt:1");
    CHECK_FAIL(f8(tok, "a.jpg\na.jpg\n", "b.jpg\n", "c.jpg\n", &e),
               DUET_ERR_FORMAT, e, "train.txt:2", "a.jpg");
    CHECK_FAIL(f8(tok, "a.jpg\n", "b.jpg\n\nd.jpg\n", "c.jpg\n", &e),
               DUET_ERR_FORMAT, e, "dev.txt:3", "'d.jpg' has no captions");
    CHECK_FAIL(f8("a.jpg#0\tcap a\nb.jpg#0 cap b\n", "a.jpg", "", "", &e),
               DUET_ERR_FORMAT, e, "tok.txt:2", "no TAB");
    CHECK_FAIL(f8("a.jpg#0\tcap \xff\n", "a.jpg", "", "", &e),
               DUET_ERR_FORMAT, e, "tok.txt:1", "invalid UTF-8");
    CHECK_FAIL(f8("a.jpg#0\t\n", "a.jpg", "", "", &e),
               DUET_ERR_FORMAT, e, "tok.txt:1", "empty caption");
    CHECK_FAIL(f8("#0\tx\n", "a.jpg", "", "", &e),
               DUET_ERR_FORMAT, e, "tok.txt:1", "empty image name");
    CHECK_FAIL(f8("z.jpg#0\tx\n", "", "", "", &e), DUET_ERR_EMPTY, e, "f8",
               NULL);
    /* Captions of images in no split are skipped even if not UTF-8. */
    CHECK(f8("z.jpg#0\t\xff\na.jpg#0\tok\n", "a.jpg", "", "", &e) == DUET_OK);
}

TEST(flickr8k_two_splits_file) {
    duet_dataset *d = (duet_dataset *)1;
    duet_error e = {0};
    CHECK_FAIL(duet_dataset_load("flickr8k:" FIX "flickr8k_dup", &d, &e),
               DUET_ERR_FORMAT, e, "flickr8k_dup/Flickr_8k.testImages.txt:1",
               "flickr8k_dup/Flickr_8k.trainImages.txt:2");
    CHECK(d == NULL);
    CHECK_FAIL(duet_dataset_load("flickr8k:" FIX "nonexistent", &d, &e),
               DUET_ERR_IO, e, "nonexistent/Flickr_8k.trainImages.txt", NULL);
}

/* Appends the lines of path to the "\nname\nname\n..." list *all. */
static int read_names(const char *path, char **all, size_t *n) {
    FILE *fp = fopen(path, "r");
    char line[1024];
    if (!fp) return 0;
    while (fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\r\n")] = '\0';
        size_t k = strlen(line);
        char *p = realloc(*all, *n + k + 2);
        if (!p) { fclose(fp); return 0; }
        *all = p;
        memcpy(p + *n, line, k);
        p[*n + k] = '\n';
        p[*n + k + 1] = '\0';
        *n += k + 1;
    }
    fclose(fp);
    return 1;
}

/* First image of the token file whose name is listed in a split file
 * (computed independently of the loader, the slow obvious way). */
static int real_first_image(const char *dir, char *out, size_t cap) {
    static const char *lists[3] = {"Flickr_8k.trainImages.txt",
                                   "Flickr_8k.devImages.txt",
                                   "Flickr_8k.testImages.txt"};
    char path[512], line[1024], key[1100];
    char *all = malloc(2);
    size_t n = 1;
    int found = 0;
    if (!all) return 0;
    memcpy(all, "\n", 2);
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, lists[i]);
        if (!read_names(path, &all, &n)) { free(all); return 0; }
    }
    snprintf(path, sizeof path, "%s/Flickr8k.token.txt", dir);
    FILE *fp = fopen(path, "r");
    while (fp && !found && fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\t")] = '\0';
        char *hash = strrchr(line, '#');
        if (hash) *hash = '\0';
        snprintf(key, sizeof key, "\n%s\n", line);
        if (strstr(all, key)) { snprintf(out, cap, "%s", line); found = 1; }
    }
    if (fp) fclose(fp);
    free(all);
    return found;
}

TEST(flickr8k_real) {
    struct stat sb;
    if (stat(REAL_F8K, &sb) != 0 || !S_ISDIR(sb.st_mode))
        SKIP("%s not present", REAL_F8K);
    double t0 = duet_now();
    duet_dataset *d = load("flickr8k:" REAL_F8K);
    double dt = duet_now() - t0;
    CHECK(d != NULL);
    if (!d) return;
    fprintf(stderr, "flickr8k real: %zu images, %zu captions, n_skipped %zu, "
            "loaded in %.1f ms\n", d->n_images, d->n_captions, d->n_skipped,
            dt * 1e3);
    CHECK(d->n_images == 8000);
    CHECK(d->n_captions == 40000);
    CHECK(consistent(d));
    size_t per[DUET_SPLIT_ALL] = {0};
    for (size_t i = 0; i < d->n_images; i++) {
        per[d->image_split[i]]++;
        CHECK(d->image_cap_start[i + 1] - d->image_cap_start[i] == 5);
    }
    CHECK(per[DUET_SPLIT_TRAIN] == 6000);
    CHECK(per[DUET_SPLIT_VAL] == 1000);
    CHECK(per[DUET_SPLIT_TEST] == 1000);
    char first[1024] = "";
    CHECK(real_first_image(REAL_F8K, first, sizeof first));
    CHECK_MSG(strcmp(d->image_names[0], first) == 0, "%s vs %s",
              d->image_names[0], first);
    size_t *idx = NULL, n = 0;
    duet_error e = {0};
    CHECK(duet_dataset_split_images(d, DUET_SPLIT_TEST, &idx, &n, &e) == DUET_OK);
    CHECK(n == 1000);
    free(idx);
    duet_dataset_free(d);
}

/* ----------------------------------------------------------- Karpathy */

TEST(karpathy_fixture) {
    duet_dataset *d = load("karpathy:" FIX "karpathy.json");
    CHECK(d != NULL);
    if (!d) return;
    CHECK(strcmp(d->source, "karpathy:" FIX "karpathy.json") == 0);
    CHECK(d->n_images == 4);
    CHECK(d->n_captions == 23);
    CHECK(d->n_skipped == 1);
    CHECK(consistent(d));
    CHECK(strcmp(d->image_names[0], "val2014/COCO_val2014_000000000042.jpg") == 0);
    CHECK(strcmp(d->image_names[1], "111.jpg") == 0);
    CHECK(strcmp(d->image_names[2], "train2014/COCO_train2014_000000000009.jpg") == 0);
    CHECK(strcmp(d->image_names[3], "333.jpg") == 0);
    CHECK(d->image_split[0] == DUET_SPLIT_TEST);
    CHECK(d->image_split[1] == DUET_SPLIT_TRAIN); /* restval */
    CHECK(d->image_split[2] == DUET_SPLIT_VAL);
    CHECK(d->image_split[3] == DUET_SPLIT_TRAIN);
    size_t want_start[5] = {0, 5, 11, 18, 23};
    for (size_t i = 0; i < 5; i++) CHECK(d->image_cap_start[i] == want_start[i]);
    for (size_t j = 0; j < 23; j++) {
        size_t want = j < 5 ? 0 : j < 11 ? 1 : j < 18 ? 2 : 3;
        CHECK(d->caption_image[j] == want);
        CHECK(d->image_caps[j] == j);
    }
    CHECK(strcmp(d->captions[0], "A Dog sleeps on a couch.") == 0);
    CHECK(strcmp(d->captions[10], "six") == 0);
    CHECK(strcmp(d->captions[17], "s7 with a trailing CR") == 0);
    CHECK(strcmp(d->captions[18], "A na\xc3\xafve caf\xc3\xa9 sign.") == 0);
    CHECK(strcmp(d->captions[19], "Une enseigne \"na\xc3\xafve\".") == 0);
    size_t *idx = NULL, n = 0;
    duet_error e = {0};
    CHECK(duet_dataset_split_images(d, DUET_SPLIT_TRAIN, &idx, &n, &e) == DUET_OK);
    CHECK(n == 2 && idx[0] == 1 && idx[1] == 3);
    free(idx);
    CHECK(duet_dataset_split_images(d, DUET_SPLIT_ALL, &idx, &n, &e) == DUET_OK);
    CHECK(n == 4 && idx[0] == 0 && idx[3] == 3);
    free(idx);
    CHECK(duet_dataset_split_images(d, DUET_SPLIT_NONE, &idx, &n, &e) == DUET_OK);
    CHECK(n == 0 && idx != NULL);
    free(idx);
    CHECK(duet_dataset_split_images(d, (duet_split)7, &idx, &n, &e) ==
          DUET_ERR_INVALID_ARG);
    duet_dataset_free(d);
}

static duet_status karpathy(const char *json, duet_error *e) {
    duet_dataset *d = (duet_dataset *)1;
    duet_status st = duet_dataset_parse_karpathy(json, strlen(json), "k.json",
                                                 &d, e);
    CHECK(st == DUET_OK ? d != NULL && consistent(d) : d == NULL);
    duet_dataset_free(d);
    return st;
}

#define KIMG(fields) "{\"images\": [{\"filename\": \"a.jpg\", \"split\": " \
    "\"train\", \"sentences\": [{\"raw\": \"x\"}]}, " fields "]}"

TEST(karpathy_bad) {
    duet_error e = {0};
    CHECK(karpathy(KIMG("{\"filename\": \"b.jpg\", \"split\": \"val\", "
                        "\"sentences\": [{\"raw\": \"y\"}]}"), &e) == DUET_OK);
    CHECK_FAIL(karpathy("{\"images\": [\n  {\"filename\": \"a.jpg\",,}]}", &e),
               DUET_ERR_FORMAT, e, "k.json:2:", "JSON");
    CHECK_FAIL(karpathy("{\"images\": [", &e), DUET_ERR_FORMAT, e, "k.json:1:",
               NULL);
    CHECK_FAIL(karpathy("", &e), DUET_ERR_FORMAT, e, "k.json", NULL);
    CHECK_FAIL(karpathy(KIMG("{\"filename\": \"b.jpg\", \"split\": \"val\", "
                             "\"sentences\": [{\"raw\": \"y\"}, {\"raw\": \"y\"}, "
                             "{\"tokens\": []}]}"), &e),
               DUET_ERR_FORMAT, e, "k.json", "images[1].sentences[2].raw: missing");
    CHECK_FAIL(karpathy(KIMG("{\"filename\": \"b.jpg\", \"split\": 3, "
                             "\"sentences\": []}"), &e),
               DUET_ERR_FORMAT, e, "k.json", "images[1].split: expected a string, got an integer");
    CHECK_FAIL(karpathy(KIMG("{\"filename\": \"b.jpg\", \"split\": \"val\", "
                             "\"sentences\": [{\"raw\": 1.5}]}"), &e),
               DUET_ERR_FORMAT, e, "k.json", "images[1].sentences[0].raw: expected a string");
    CHECK_FAIL(karpathy(KIMG("{\"filename\": \"b.jpg\", \"split\": \"val\", "
                             "\"sentences\": [\"raw\"]}"), &e),
               DUET_ERR_FORMAT, e, "k.json", "images[1].sentences[0]: expected an object");
    CHECK_FAIL(karpathy(KIMG("{\"filename\": \"b.jpg\", \"split\": \"val\", "
                             "\"sentences\": {}}"), &e),
               DUET_ERR_FORMAT, e, "k.json", "images[1].sentences: expected an array");
    CHECK_FAIL(karpathy(KIMG("{\"split\": \"val\", \"sentences\": []}"), &e),
               DUET_ERR_FORMAT, e, "k.json", "images[1].filename: missing");
    CHECK_FAIL(karpathy(KIMG("{\"filename\": \"b.jpg\", \"filepath\": null, "
                             "\"split\": \"val\", \"sentences\": []}"), &e),
               DUET_ERR_FORMAT, e, "k.json", "images[1].filepath: expected a string, got null");
    CHECK_FAIL(karpathy(KIMG("{\"filename\": \"b.jpg\", \"split\": \"bogus\", "
                             "\"sentences\": []}"), &e),
               DUET_ERR_FORMAT, e, "k.json", "images[1].split: unknown split 'bogus'");
    CHECK_FAIL(karpathy(KIMG("{\"filename\": \"b.jpg\", \"split\": \"dev\", "
                             "\"sentences\": []}"), &e),
               DUET_ERR_FORMAT, e, "k.json", "images[1].split: unknown split 'dev'");
    CHECK_FAIL(karpathy(KIMG("{\"filename\": \"a.jpg\", \"split\": \"val\", "
                             "\"sentences\": [{\"raw\": \"y\"}]}"), &e),
               DUET_ERR_FORMAT, e, "k.json", "images[1]: duplicate image 'a.jpg' (also images[0])");
    CHECK_FAIL(karpathy(KIMG("{\"filename\": \"b.jpg\", \"split\": \"val\", "
                             "\"sentences\": [{\"raw\": \"bad \xc3\x28\"}]}"), &e),
               DUET_ERR_FORMAT, e, "k.json:1:", "invalid UTF-8");
    CHECK_FAIL(karpathy(KIMG("{\"filename\": \"b.jpg\", \"split\": \"val\", "
                             "\"sentences\": [{\"raw\": \"\"}]}"), &e),
               DUET_ERR_FORMAT, e, "k.json", "images[1].sentences[0].raw: empty");
    CHECK_FAIL(karpathy(KIMG("7"), &e), DUET_ERR_FORMAT, e, "k.json",
               "images[1]: expected an object, got an integer");
    CHECK_FAIL(karpathy("[]", &e), DUET_ERR_FORMAT, e, "k.json",
               "top level: expected an object");
    CHECK_FAIL(karpathy("{\"images\": {}}", &e), DUET_ERR_FORMAT, e, "k.json",
               "images: expected an array");
    CHECK_FAIL(karpathy("{\"imgs\": []}", &e), DUET_ERR_FORMAT, e, "k.json",
               "images: missing");
    CHECK_FAIL(karpathy("{\"images\": []}", &e), DUET_ERR_EMPTY, e, "k.json",
               NULL);
    CHECK_FAIL(karpathy("{\"images\": [], \"images\": []}", &e),
               DUET_ERR_FORMAT, e, "k.json:1:", "duplicate");
}

TEST(karpathy_bad_file) {
    duet_dataset *d = (duet_dataset *)1;
    duet_error e = {0};
    CHECK_FAIL(duet_dataset_load("karpathy:" FIX "with_split.tsv", &d, &e),
               DUET_ERR_FORMAT, e, FIX "with_split.tsv:1:", NULL);
    CHECK(d == NULL);
}

/* ----------------------------------------------------------------- TSV */

TEST(tsv_with_split) {
    duet_dataset *d = load("tsv:" FIX "with_split.tsv");
    CHECK(d != NULL);
    if (!d) return;
    CHECK(d->n_images == 4);
    CHECK(d->n_captions == 7);
    CHECK(d->n_skipped == 0);
    CHECK(consistent(d));
    static const char *names[4] = {"img1.jpg", "img2.jpg", "img3.jpg", "img4.jpg"};
    static const int splits[4] = {DUET_SPLIT_TRAIN, DUET_SPLIT_VAL,
                                  DUET_SPLIT_TEST, DUET_SPLIT_TRAIN};
    for (size_t i = 0; i < 4; i++) {
        CHECK(strcmp(d->image_names[i], names[i]) == 0);
        CHECK(d->image_split[i] == splits[i]);
    }
    static const size_t img_of[7] = {0, 1, 0, 2, 3, 1, 2};
    for (size_t j = 0; j < 7; j++) CHECK(d->caption_image[j] == img_of[j]);
    static const size_t g0[] = {0, 2}, g1[] = {1, 5}, g2[] = {3, 6}, g3[] = {4};
    CHECK(group_is(d, 0, g0, 2));
    CHECK(group_is(d, 1, g1, 2));
    CHECK(group_is(d, 2, g2, 2));
    CHECK(group_is(d, 3, g3, 1));
    CHECK(strcmp(d->captions[1], "A blue boat .") == 0);
    CHECK(strcmp(d->captions[6], "Tree in a park .") == 0);
    duet_dataset_free(d);
}

TEST(tsv_no_split) {
    duet_dataset *d = load("tsv:" FIX "no_split.tsv");
    CHECK(d != NULL);
    if (!d) return;
    CHECK(strcmp(d->source, "tsv:" FIX "no_split.tsv") == 0);
    CHECK(d->n_images == 3);
    CHECK(d->n_captions == 5);
    CHECK(consistent(d));
    CHECK(strcmp(d->image_names[0], "x.jpg") == 0);
    CHECK(strcmp(d->image_names[1], "y.jpg") == 0);
    CHECK(strcmp(d->image_names[2], "z.jpg") == 0);
    for (size_t i = 0; i < 3; i++) CHECK(d->image_split[i] == DUET_SPLIT_TRAIN);
    static const size_t g0[] = {0, 2}, g1[] = {1, 4}, g2[] = {3};
    CHECK(group_is(d, 0, g0, 2));
    CHECK(group_is(d, 1, g1, 2));
    CHECK(group_is(d, 2, g2, 1));
    CHECK(strcmp(d->captions[3], "Only z") == 0);
    CHECK(strcmp(d->captions[4], "Second of y") == 0);
    duet_dataset_free(d);
}

static duet_status tsv(const char *text, duet_error *e) {
    duet_dataset *d = (duet_dataset *)1;
    duet_status st = duet_dataset_parse_tsv(text, strlen(text), "t.tsv", &d, e);
    CHECK(st == DUET_OK ? d != NULL && consistent(d) : d == NULL);
    duet_dataset_free(d);
    return st;
}

TEST(tsv_bad) {
    duet_error e = {0};
    CHECK(tsv("a\tx\tval\nb\ty\ttest\n", &e) == DUET_OK);
    CHECK_FAIL(tsv("a\tx\ttrain\nb\ty\n", &e), DUET_ERR_FORMAT, e, "t.tsv:2",
               "split column");
    CHECK_FAIL(tsv("a\tx\n\nb\ty\ttrain\n", &e), DUET_ERR_FORMAT, e, "t.tsv:3",
               "split column");
    CHECK_FAIL(tsv("a\tx\ttrain\nb\ty\tval\na\tz\ttest\n", &e),
               DUET_ERR_FORMAT, e, "t.tsv:3", "on line 1");
    CHECK_FAIL(tsv("a\tx\ttrain\na\tz\tdev\n", &e), DUET_ERR_FORMAT, e,
               "t.tsv:2", "'a'");
    CHECK_FAIL(tsv("a\tx\tbogus\n", &e), DUET_ERR_FORMAT, e, "t.tsv:1",
               "unknown split 'bogus'");
    CHECK_FAIL(tsv("a\tx\tall\n", &e), DUET_ERR_FORMAT, e, "t.tsv:1",
               "unknown split 'all'");
    CHECK_FAIL(tsv("a\tx\n\tb\n", &e), DUET_ERR_FORMAT, e, "t.tsv:2",
               "empty image name");
    CHECK_FAIL(tsv("a\tx\nb\t\r\n", &e), DUET_ERR_FORMAT, e, "t.tsv:2",
               "empty caption");
    CHECK_FAIL(tsv("a\tx\nb only\n", &e), DUET_ERR_FORMAT, e, "t.tsv:2",
               "no TAB");
    CHECK_FAIL(tsv("a\tx\tval\textra\n", &e), DUET_ERR_FORMAT, e, "t.tsv:1",
               "more than 3");
    CHECK_FAIL(tsv("a\tx\nb\tcaf\xe9\n", &e), DUET_ERR_FORMAT, e, "t.tsv:2",
               "invalid UTF-8");
    CHECK_FAIL(tsv("a\tx\nb\t\xed\xa0\x80 surrogate\n", &e), DUET_ERR_FORMAT,
               e, "t.tsv:2", "invalid UTF-8");
    CHECK_FAIL(tsv("a\tx\nb\t\xc0\xaf overlong\n", &e), DUET_ERR_FORMAT, e,
               "t.tsv:2", "invalid UTF-8");
    CHECK_FAIL(tsv("a\tx\nb\ttruncated \xe2\x82", &e), DUET_ERR_FORMAT, e,
               "t.tsv:2", "invalid UTF-8");
    CHECK_FAIL(tsv("", &e), DUET_ERR_EMPTY, e, "t.tsv", NULL);
    CHECK_FAIL(tsv("\n \n\t\n", &e), DUET_ERR_EMPTY, e, "t.tsv", NULL);
    /* An embedded NUL byte is refused, not silently truncated. */
    duet_dataset *d = NULL;
    CHECK_FAIL(duet_dataset_parse_tsv("a\tx\0y\n", 6, "t.tsv", &d, &e),
               DUET_ERR_FORMAT, e, "t.tsv:1", "NUL");
    /* Valid multi-byte text, kept as given (no lowercasing). */
    const char *utf8 = "A\tÜber 🚲 Straße\n";
    CHECK(duet_dataset_parse_tsv(utf8, strlen(utf8), "t.tsv", &d, &e) == DUET_OK);
    if (d) CHECK(strcmp(d->captions[0], "Über 🚲 Straße") == 0);
    duet_dataset_free(d);
}

/* ------------------------------------------------------------- loading */

TEST(load_specs) {
    duet_dataset *d = (duet_dataset *)1;
    duet_error e = {0};
    CHECK_FAIL(duet_dataset_load("coco:x.json", &d, &e), DUET_ERR_INVALID_ARG,
               e, "unknown dataset 'coco:x.json'",
               "use flickr8k:DIR, karpathy:FILE or tsv:FILE");
    CHECK(d == NULL);
    CHECK_FAIL(duet_dataset_load("tsv", &d, &e), DUET_ERR_INVALID_ARG, e,
               "unknown dataset 'tsv'", NULL);
    CHECK_FAIL(duet_dataset_load("tsv:", &d, &e), DUET_ERR_INVALID_ARG, e,
               "unknown dataset", NULL);
    CHECK_FAIL(duet_dataset_load(NULL, &d, &e), DUET_ERR_INVALID_ARG, e,
               "spec", NULL);
    CHECK_FAIL(duet_dataset_load("tsv:" FIX "missing.tsv", &d, &e), DUET_ERR_IO,
               e, "missing.tsv", NULL);
    CHECK_FAIL(duet_dataset_load("karpathy:" FIX "missing.json", &d, &e),
               DUET_ERR_IO, e, "missing.json", NULL);
    CHECK(duet_dataset_load("tsv:" FIX "no_split.tsv", NULL, &e) ==
          DUET_ERR_INVALID_ARG);
    /* Errors are optional. */
    CHECK(duet_dataset_load("tsv:" FIX "missing.tsv", &d, NULL) == DUET_ERR_IO);
    duet_dataset_free(NULL);
}

int main(void) {
    RUN(split_names);
    RUN(flickr8k_fixture);
    RUN(flickr8k_bad);
    RUN(flickr8k_two_splits_file);
    RUN(flickr8k_real);
    RUN(karpathy_fixture);
    RUN(karpathy_bad);
    RUN(karpathy_bad_file);
    RUN(tsv_with_split);
    RUN(tsv_no_split);
    RUN(tsv_bad);
    RUN(load_specs);
    return check_summary("dataset");
}
