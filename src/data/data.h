/* data.h -- private interface of the dataset loaders (not installed).
 *
 * The public duet_dataset_load() reads files and hands their bytes to the
 * buffer parsers below, which fuzzers and tests call directly. A buffer is
 * (pointer, length): it need not be NUL-terminated and may hold any bytes.
 * `name` is the file name used in messages ("NAME:LINE: ..."); the parsers
 * store it as d->source (duet_dataset_load replaces it with the spec).
 *
 * On success *out is allocated; caller frees with duet_dataset_free.
 * On failure *out is NULL and err (if not NULL) says what and where.
 * (What the parsers share among themselves is in builder.h.) */
#ifndef DUET_DATA_H
#define DUET_DATA_H

#include "core/core.h"

/* Largest input file the loaders read (4 GiB on 64-bit hosts). */
#define DUET_DATA_MAX_BYTES \
    ((size_t)1 << (sizeof(size_t) > 4 ? 32 : 30))

/* One input file: bytes and the name used in messages. Borrowed. */
typedef struct duet_text_buf {
    const char *data;
    size_t len;
    const char *name;
} duet_text_buf;

/* "image<TAB>caption[<TAB>split]" lines. */
duet_status duet_dataset_parse_tsv(const char *buf, size_t len,
                                   const char *name, duet_dataset **out,
                                   duet_error *err);

/* Karpathy split JSON ({"images": [...]}), parsed with jansson. */
duet_status duet_dataset_parse_karpathy(const char *buf, size_t len,
                                        const char *name, duet_dataset **out,
                                        duet_error *err);

/* Flickr8K: tokens is Flickr8k.token.txt; splits[DUET_SPLIT_TRAIN],
 * splits[DUET_SPLIT_VAL], splits[DUET_SPLIT_TEST] are the train, dev and
 * test image lists. `name` becomes d->source. */
duet_status duet_dataset_parse_flickr8k(const duet_text_buf *tokens,
                                        const duet_text_buf splits[3],
                                        const char *name, duet_dataset **out,
                                        duet_error *err);

/* The images of d with keep[i] set, in d's order, each with its captions
 * in d's order (captions grouped by image). *out: caller frees with
 * duet_dataset_free. */
duet_status duet_dataset_subset(const duet_dataset *d, const uint8_t *keep,
                                duet_dataset **out, duet_error *err);

/* Checks the internal consistency of d (counts, caption->image map, CSR
 * arrays, split values, non-NULL strings). DUET_OK or DUET_ERR_FORMAT with
 * the first inconsistency. For tests and fuzzers. */
duet_status duet_dataset_check(const duet_dataset *d, duet_error *err);

/* Flickr30K Entities, one image: its Sentences/ID.txt and Annotations/ID.xml
 * (expat) bytes, appended to *im (zeroed by the caller); the phrases' boxes
 * attached. On failure *im holds what was read: free it with the whole
 * duet_entities, or field by field (tests use duet_entities_image_clear). */
duet_status duet_entities_parse(const char *sentences, size_t s_len,
                                const char *s_name, const char *xml,
                                size_t x_len, const char *x_name,
                                duet_entities_image *im, duet_error *err);
duet_status duet_entities_parse_sentences(const char *buf, size_t len,
                                          const char *name,
                                          duet_entities_image *im,
                                          duet_error *err);
duet_status duet_entities_parse_xml(const char *buf, size_t len,
                                    const char *name, duet_entities_image *im,
                                    duet_error *err);
/* Frees what *im holds and zeroes it. */
void duet_entities_image_clear(duet_entities_image *im);

#endif
