/* builder.h -- internal to src/data: what dataset.c shares with the format
 * parsers (tsv.c, karpathy.c, flickr8k.c). Not for tests or other folders;
 * they use data.h.
 *
 * Every parser feeds a duet_data_builder (growable arrays of images and
 * captions plus a name -> image index hash map) and
 * duet_data_builder_finish() turns it into a duet_dataset with the CSR
 * grouping of captions by image. Every string stored in a dataset is checked
 * to be valid UTF-8 without NUL bytes. All are defined in dataset.c. */
#ifndef DUET_DATA_BUILDER_H
#define DUET_DATA_BUILDER_H

#include "data/data.h"

/* ------------------------------------------------------------- text */

/* At most this many bytes of an offending value are quoted in messages. */
#define DUET_DATA_QUOTE_MAX 80

/* The precision for "%.*s" quoting an n-byte value in a message. */
static inline int duet_data_quote_len(size_t n) {
    return (int)(n > DUET_DATA_QUOTE_MAX ? DUET_DATA_QUOTE_MAX : n);
}

/* DUET_ERR_NOMEM "FILE: out of memory"; file is borrowed. */
duet_status duet_data_nomem(duet_error *err, const char *file);

/* NULL if s[0..n) is valid UTF-8 with no NUL byte, else the reason (a
 * static string). */
const char *duet_data_text_problem(const char *s, size_t n);

/* Copies n bytes into a new NUL-terminated string; caller frees with
 * free(). NULL on allocation failure. */
char *duet_data_dup_bytes(const char *s, size_t n);

/* Checks a text field of FILE:LINE: non-empty, valid UTF-8, no NUL.
 * `what` names the field ("caption", "image name"). */
duet_status duet_data_check_line_text(const char *s, size_t n,
                                      const char *what, const char *file,
                                      size_t line, duet_error *err);

/* ------------------------------------------------------------- lines */

/* Iterates over the lines of a buffer (borrowed; must outlive it); `line`
 * is the 1-based number of the line last returned. */
typedef struct duet_data_lines {
    const char *p, *end;
    size_t line;
} duet_data_lines;

/* An iterator over buf[0..len). */
duet_data_lines duet_data_lines_of(const char *buf, size_t len);

/* Next line without its "\n" or "\r\n" (a missing final newline is fine);
 * *s points into the buffer. false at the end. */
bool duet_data_next_line(duet_data_lines *it, const char **s, size_t *n);

/* A line of only spaces and tabs (or nothing) is blank and skipped. */
bool duet_data_is_blank(const char *s, size_t n);

/* ------------------------------------------------------ arrays and maps */


/* One slot of a duet_data_map. */
typedef struct duet_data_slot {
    const char *key; /* NULL: empty slot */
    size_t len;
    size_t val;
} duet_data_slot;

/* Name -> index hash map (open addressing, linear probing). Owns its slots;
 * keys are borrowed (ptr, len) byte strings that must outlive the map.
 * Zero-initialize; free with duet_data_map_free. */
typedef struct duet_data_map {
    duet_data_slot *slots;
    size_t cap; /* 0 or a power of two */
    size_t n;
} duet_data_map;

/* true and *val if key is present. */
bool duet_data_map_find(const duet_data_map *m, const char *key, size_t len,
                        size_t *val);

/* Inserts key (which must not be present) -> val; false if out of memory.
 * The key bytes are borrowed. */
bool duet_data_map_put(duet_data_map *m, const char *key, size_t len,
                       size_t val);

/* Frees the slots (not the borrowed keys) and zeroes m. */
void duet_data_map_free(duet_data_map *m);

/* ------------------------------------------------------------- builder */

/* A dataset under construction; zero-initialize. Owns every array and
 * string until duet_data_builder_finish() hands them to a duet_dataset;
 * free with duet_data_builder_free (also after finish). */
typedef struct duet_data_builder {
    char **names;      /* [n_images] owned strings                 */
    uint8_t *splits;   /* [n_images]                               */
    size_t *where;     /* [n_images] line (or JSON index) first seen */
    size_t n_images, cap_names, cap_splits, cap_where;
    char **caps;       /* [n_caps] owned strings                   */
    size_t *cap_img;   /* [n_caps]                                 */
    size_t n_caps, cap_caps, cap_cap_img;
    size_t n_skipped;
    duet_data_map map; /* image name -> index; keys are names[i]   */
} duet_data_builder;

/* Frees everything b still owns and empties it. */
void duet_data_builder_free(duet_data_builder *b);

/* true and *idx if an image of that name exists. */
bool duet_data_builder_find(const duet_data_builder *b, const char *name,
                            size_t len, size_t *idx);

/* Appends a new image (name copied; split a duet_split; `where` its line
 * or JSON index); *idx receives its index. `file` names it in messages. */
duet_status duet_data_builder_add_image(duet_data_builder *b,
                                        const char *name, size_t len,
                                        int split, size_t where, size_t *idx,
                                        const char *file, duet_error *err);

/* Appends a caption (copied) of image img. */
duet_status duet_data_builder_add_caption(duet_data_builder *b,
                                          const char *text, size_t len,
                                          size_t img, const char *file,
                                          duet_error *err);

/* Moves b's contents into a new dataset *out (b is left empty; caller
 * frees *out with duet_dataset_free). An empty result is DUET_ERR_EMPTY.
 * source is copied. */
duet_status duet_data_builder_finish(duet_data_builder *b,
                                     const char *source, duet_dataset **out,
                                     duet_error *err);

/* ------------------------------------------------------------- loading */

/* Reads DIR's four Flickr8K files and parses them (flickr8k.c). dir is
 * borrowed; *out: caller frees with duet_dataset_free. */
duet_status duet_data_load_flickr8k(const char *dir, duet_dataset **out,
                                    duet_error *err);

#endif
