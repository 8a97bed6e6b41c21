/* karpathy.c -- caption datasets as Karpathy split JSON
 * (dataset_flickr30k.json, dataset_coco.json), parsed with jansson.
 *
 * {"images": [{"filename": F, "filepath": P (optional), "split": S,
 *              "sentences": [{"raw": TEXT}, ...]}, ...]}
 * An image is named "P/F" (F when P is absent or empty); restval is train;
 * images without sentences are skipped and counted in n_skipped. */
#include "data/builder.h"
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "a string", "an integer", ... for messages; static. */
static const char *json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "an unknown value";
}

/* The string member `key` of obj (named `path` in messages) as *s, *n
 * (borrowed from obj). A missing optional member gives *s = NULL. */
static duet_status json_str(const json_t *obj, const char *key, bool required,
                            const char *file, const char *path,
                            const char **s, size_t *n, duet_error *err) {
    const json_t *v = json_object_get(obj, key);
    *s = NULL;
    *n = 0;
    if (!v && !required) return DUET_OK;
    if (!v)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: %s.%s: missing", file,
                         path, key);
    if (!json_is_string(v))
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s: %s.%s: expected a string, got %s", file, path,
                         key, json_type_name(v));
    *s = json_string_value(v);
    *n = json_string_length(v);
    const char *why = duet_data_text_problem(*s, *n);
    if (why)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: %s.%s: %s", file, path,
                         key, why);
    return DUET_OK;
}

/* Karpathy's split names: train, val, test, restval (-> train). */
static int karpathy_split(const char *s) {
    if (strcmp(s, "train") == 0 || strcmp(s, "restval") == 0)
        return DUET_SPLIT_TRAIN;
    if (strcmp(s, "val") == 0) return DUET_SPLIT_VAL;
    if (strcmp(s, "test") == 0) return DUET_SPLIT_TEST;
    return -1;
}

/* The fields of one images[i] entry, borrowed from the JSON tree. */
typedef struct kimage {
    const char *filename, *filepath;
    size_t filename_len, filepath_len;
    int split;
    const json_t *sentences;
} kimage;

/* Reads sentences[k].raw of image i into *raw, *n (trailing '\r' cut). */
static duet_status karpathy_raw(const json_t *sents, size_t i, size_t k,
                                const char *file, const char **raw, size_t *n,
                                duet_error *err) {
    char path[96];
    snprintf(path, sizeof path, "images[%zu].sentences[%zu]", i, k);
    const json_t *sent = json_array_get(sents, k);
    if (!json_is_object(sent))
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s: %s: expected an object, got %s", file, path,
                         json_type_name(sent));
    duet_status st = json_str(sent, "raw", true, file, path, raw, n, err);
    if (st) return st;
    if (*n > 0 && (*raw)[*n - 1] == '\r') (*n)--;
    if (*n == 0)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: %s.raw: empty caption",
                         file, path);
    return DUET_OK;
}

/* The "sentences" array of img (named `path` in messages). */
static duet_status karpathy_sentences(const json_t *img, const char *file,
                                      const char *path, const json_t **sents,
                                      duet_error *err) {
    *sents = json_object_get(img, "sentences");
    if (!*sents)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: %s.sentences: missing",
                         file, path);
    if (!json_is_array(*sents))
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s: %s.sentences: expected an array, got %s", file,
                         path, json_type_name(*sents));
    return DUET_OK;
}

/* Validates images[i] (an object) and fills *k. */
static duet_status karpathy_fields(const json_t *img, size_t i,
                                   const char *file, kimage *k,
                                   duet_error *err) {
    char path[64];
    snprintf(path, sizeof path, "images[%zu]", i);
    if (!json_is_object(img))
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s: %s: expected an object, got %s", file, path,
                         json_type_name(img));
    const char *split;
    size_t split_len;
    duet_status st;
    if ((st = json_str(img, "filename", true, file, path, &k->filename,
                       &k->filename_len, err)) ||
        (st = json_str(img, "filepath", false, file, path, &k->filepath,
                       &k->filepath_len, err)) ||
        (st = json_str(img, "split", true, file, path, &split, &split_len,
                       err)))
        return st;
    if (k->filename_len == 0)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: %s.filename: empty", file,
                         path);
    if ((k->split = karpathy_split(split)) < 0)
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s: %s.split: unknown split '%.*s' (expected train, "
                         "val, test or restval)", file, path,
                         duet_data_quote_len(split_len), split);
    return karpathy_sentences(img, file, path, &k->sentences, err);
}

/* The image name: "filepath/filename", or filename when filepath is absent
 * or empty. Caller frees with free(); NULL if out of memory. */
static char *karpathy_name(const kimage *k) {
    if (!k->filepath || k->filepath_len == 0)
        return duet_data_dup_bytes(k->filename, k->filename_len);
    size_t n;
    if (!duet_add_size(k->filepath_len, k->filename_len, &n) ||
        !duet_add_size(n, 2, &n))
        return NULL;
    char *p = malloc(n);
    if (!p) return NULL;
    memcpy(p, k->filepath, k->filepath_len);
    p[k->filepath_len] = '/';
    memcpy(p + k->filepath_len + 1, k->filename, k->filename_len);
    p[n - 1] = '\0';
    return p;
}

/* Adds images[i] as a new image (refusing duplicate names). */
static duet_status karpathy_add(duet_data_builder *b, const kimage *k,
                                size_t i, const char *file, size_t *idx,
                                duet_error *err) {
    char *name = karpathy_name(k);
    if (!name) return duet_data_nomem(err, file);
    size_t len = strlen(name), prev;
    duet_status st;
    if (duet_data_builder_find(b, name, len, &prev))
        st = duet_fail(err, DUET_ERR_FORMAT,
                       "%s: images[%zu]: duplicate image '%.*s' (also "
                       "images[%zu])", file, i, duet_data_quote_len(len), name,
                       b->where[prev]);
    else
        st = duet_data_builder_add_image(b, name, len, k->split, i, idx,
                                         file, err);
    free(name);
    return st;
}

/* One images[i] entry; an image without sentences is skipped. */
static duet_status karpathy_image(duet_data_builder *b, const json_t *img,
                                  size_t i, const char *file,
                                  duet_error *err) {
    kimage k;
    duet_status st = karpathy_fields(img, i, file, &k, err);
    if (st) return st;
    size_t ns = json_array_size(k.sentences), idx = 0;
    const char *raw;
    size_t n;
    for (size_t j = 0; j < ns; j++)
        if ((st = karpathy_raw(k.sentences, i, j, file, &raw, &n, err)))
            return st;
    if (ns == 0) { b->n_skipped++; return DUET_OK; }
    if ((st = karpathy_add(b, &k, i, file, &idx, err))) return st;
    for (size_t j = 0; j < ns && st == DUET_OK; j++) {
        karpathy_raw(k.sentences, i, j, file, &raw, &n, err); /* checked */
        st = duet_data_builder_add_caption(b, raw, n, idx, file, err);
    }
    return st;
}

/* The top-level "images" array of root. */
static duet_status karpathy_images(const json_t *root, const char *file,
                                   const json_t **images, duet_error *err) {
    if (!json_is_object(root))
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s: top level: expected an object, got %s", file,
                         json_type_name(root));
    *images = json_object_get(root, "images");
    if (!*images)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: images: missing", file);
    if (!json_is_array(*images))
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s: images: expected an array, got %s", file,
                         json_type_name(*images));
    return DUET_OK;
}

/* Parses the JSON text with jansson; syntax errors name line and column. */
static duet_status karpathy_json(const char *buf, size_t len, const char *file,
                                 json_t **root, duet_error *err) {
    json_error_t je;
    *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    if (*root) return DUET_OK;
    if (json_error_code(&je) == json_error_out_of_memory)
        return duet_data_nomem(err, file);
    return duet_fail(err, DUET_ERR_FORMAT, "%s:%d:%d: JSON error: %s%s", file,
                     je.line, je.column, je.text,
                     json_error_code(&je) == json_error_invalid_utf8
                         ? " (invalid UTF-8)" : "");
}

/* buf and name are borrowed; *out: caller frees with duet_dataset_free.
 * The jansson tree is freed before returning. */
duet_status duet_dataset_parse_karpathy(const char *buf, size_t len,
                                        const char *name, duet_dataset **out,
                                        duet_error *err) {
    *out = NULL;
    json_t *root;
    const json_t *images = NULL;
    duet_status st = karpathy_json(buf, len, name, &root, err);
    if (st) return st;
    duet_data_builder b = {0};
    st = karpathy_images(root, name, &images, err);
    size_t n = st ? 0 : json_array_size(images);
    for (size_t i = 0; i < n && st == DUET_OK; i++)
        st = karpathy_image(&b, json_array_get(images, i), i, name, err);
    if (st == DUET_OK) st = duet_data_builder_finish(&b, name, out, err);
    duet_data_builder_free(&b);
    json_decref(root);
    return st;
}
