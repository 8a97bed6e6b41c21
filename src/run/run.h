/* run.h -- private pieces of the main job (src/run/, not installed):
 * a growable string (keys, JSON, HTML), result <-> JSON, paths. */
#ifndef DUET_RUN_H
#define DUET_RUN_H

#include "core/core.h"
#include <jansson.h>

/* A growable NUL-terminated string. oom is set (and later appends ignored)
 * when an allocation fails; callers check it once at the end. */
typedef struct duet_sbuf {
    char *s;
    size_t n, cap;
    int oom;
} duet_sbuf;
void duet_sb_printf(duet_sbuf *b, const char *fmt, ...) DUET_PRINTF(2, 3);
void duet_sb_html(duet_sbuf *b, const char *text); /* HTML-escaped */
void duet_sb_free(duet_sbuf *b);                   /* NULL-safe */

/* The images of d with keep[i] set, in d's order, each with its captions
 * in d's order (captions grouped by image). *out: caller frees with
 * duet_dataset_free. */
duet_status duet_run_subset(const duet_dataset *d, const uint8_t *keep,
                            duet_dataset **out, duet_error *err);

/* 64-bit FNV-1a of n bytes, continuing from h (start: DUET_FNV_INIT). */
#define DUET_FNV_INIT 1469598103934665603ULL
uint64_t duet_fnv(uint64_t h, const void *p, size_t n);

/* Eval results <-> JSON ({"i2t":{...},"t2i":{...},"rsum",...}). */
json_t *duet_eval_to_json(const duet_eval_result *r);
void duet_eval_from_json(const json_t *o, duet_eval_result *r);

/* Writes text atomically to path. */
duet_status duet_write_text(const char *path, const char *text, size_t len,
                            duet_error *err);

/* The published Flickr8K row (Klein et al. 2015, mean vector + CCA). */
extern const duet_eval_result duet_klein2015_flickr8k;

/* The run's dataset: c->dataset, cut to the first c->limit images of each
 * split when limit > 0. *out: caller frees with duet_dataset_free. */
duet_status duet_run_load_dataset(const duet_run_config *c, duet_dataset **out,
                                  duet_error *err);

/* Short description of a configuration: "fv-gmm, MLP, two-way + structure". */
void duet_run_describe(const duet_run_config *c, char *buf, size_t n);

#endif
