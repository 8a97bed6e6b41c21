/* run.h -- private interface of the main job (src/run/, not installed).
 *
 *   config.c        settings: defaults, validation, description, --limit
 *   stage.c         the engine: keys, manifests, temp files, the lock
 *   stage_image.c   stage_text.c   stage_train.c   stage_index.c
 *   run.c           duet_run: the stages in order, then the results
 *   report.c        run.json and report.html
 *   ablation.c      the grid of the paper's tables
 *
 * Files here use this header and the parts below them (core, data, embed,
 * text, image, search); nothing outside src/run uses it. */
#ifndef DUET_RUN_H
#define DUET_RUN_H

#include "core/core.h"
#include "data/data.h"
#include "embed/embed.h"
#include <jansson.h>
#include <limits.h>

/* ------------------------------------------------------------ config.c */

/* Checks a configuration before anything runs: required fields, CNN name,
 * crops, vectors for the encoder, training parameters. */
duet_status duet_run_check_config(const duet_run_config *c, duet_error *err);

/* The run's dataset: c->dataset, cut to the first c->limit images of each
 * split when limit > 0. *out: caller frees with duet_dataset_free. */
duet_status duet_run_load_dataset(const duet_run_config *c, duet_dataset **out,
                                  duet_error *err);

/* Short description of a configuration: "fv-gmm, MLP, two-way + structure". */
void duet_run_describe(const duet_run_config *c, char *buf, size_t n);

/* ------------------------------------------------------------- stage.c */

/* What the stages of one run share. Owned by duet_run. */
typedef struct duet_run_state {
    const duet_run_config *c;
    const duet_run_hooks *h;
    duet_run_result *res;
    duet_dataset *d;               /* (subset of) the dataset, owned          */
    uint64_t names_hash, data_hash; /* image names; names, splits, captions  */
    json_t *man[DUET_STAGE_COUNT]; /* manifests of done stages, owned         */
    double t_stage;                /* when the current stage started          */
    duet_precision prec;           /* c->train.precision resolved: f32, bf16  */
} duet_run_state;

/* One log line through the caller's hook (nothing when there is none). */
void duet_run_say(const duet_run_state *rs, const char *fmt, ...) DUET_PRINTF(2, 3);
/* 1 when the caller raised its cancel flag. */
int duet_run_cancelled(const duet_run_state *rs);
/* DUET_ERR_INTERRUPTED with "interrupted in stage S; run again to resume". */
duet_status duet_run_interrupted(int s, duet_error *err);

/* Under MPI without --threads: the threads of this rank, its machine's
 * cores shared by the ranks on it (shared = 1, for work every rank does)
 * or all of them (shared = 0, for work rank 0 does alone while the others
 * wait). Nothing in a job of one or with --threads. */
void duet_run_share_threads(const duet_run_state *rs, int shared);
/* Appends "what=ABSPATH size=N mtime=T" for a key (files are not re-read). */
duet_status duet_stage_file_ident(duet_sbuf *b, const char *what, const char *path,
                                  duet_error *err);
/* Computes stage s's key from its inputs text (to which it appends the run
 * version), sets res->stage[s].key and .dir, and looks for its manifest:
 * *done = 1 when the stage is complete (its manifest kept in rs->man[s]);
 * otherwise creates the directory and removes stale temp files. Under MPI
 * rank 0 decides and, for the image stage (which every rank runs),
 * broadcasts the decision. */
duet_status duet_stage_open(duet_run_state *rs, int s, duet_sbuf *inputs, int *done,
                            duet_error *err);
/* Writes stage s's manifest m (taken over, also on failure) last, marking
 * the stage done; adds stage, key, seconds, peak memory and inputs, and the
 * CRC-32C of each .npy output: the one duet_stage_set_crc recorded, else
 * read back from the file (outputs written by other means). */
duet_status duet_stage_close(duet_run_state *rs, int s, json_t *m, const duet_sbuf *inputs,
                             duet_error *err);
/* Records in manifest m (borrowed; NULL: nothing) the CRC-32C of its output
 * file (a name in the stage directory), as duet_npy_write_crc gave it. */
void duet_stage_set_crc(json_t *m, const char *file, uint32_t crc);
/* Appends "precision=P" to a computing stage's key when P is not f32, so
 * the keys of f32 stages (and the work directories made before precisions
 * existed) stay as they were. */
void duet_stage_key_precision(const duet_run_state *rs, duet_sbuf *inputs);
/* Path of a file in stage s's directory, into the caller's out[n]. */
void duet_stage_path(const duet_run_state *rs, int s, const char *file, char *out, size_t n);
/* Removes temp files ("*.tmp.*") an interrupted writer left in dir. */
void duet_stage_clean_temps(const char *dir);
/* One run per work directory: locks WORK/.lock (released by the kernel
 * when the process ends). Returns the descriptor to close, or -1 with err. */
int duet_run_lock(const char *work, duet_error *err);

/* The files later stages read from the stages before them. */
typedef struct duet_upstream {
    char img[PATH_MAX], txt[PATH_MAX], textmodel[PATH_MAX], model[PATH_MAX];
} duet_upstream;
void duet_upstream_paths(const duet_run_state *rs, duet_upstream *u);
/* Opens the image and caption features (rows read as needed: features
 * larger than memory work; caller closes both with duet_features_close,
 * also on failure) and checks them against the dataset (the scan for
 * NaN/Inf, which reads every row, only when finite). */
duet_status duet_run_load_features(const duet_run_state *rs, const duet_upstream *u,
                                   duet_features **img, duet_features **txt,
                                   int finite, duet_error *err);
/* Embeds rows[0..n) of x with one branch into *out (allocated here; caller
 * frees with duet_mat_free, also on failure), in chunks. */
duet_status duet_run_embed_rows(const duet_model *m, int side, const duet_features *x,
                                const size_t *rows, size_t n, duet_mat *out,
                                duet_error *err);

/* ------------------------------------------------------------ stage_*.c */

/* Each runs one stage: cached (nothing to do), skipped, or built. */
duet_status duet_stage_image(duet_run_state *rs, duet_error *err);
/* *out = duet_fnv over h and every image's (size, CRC-32C) of
 * dir/names[0..n), in order; work/image-ident.tsv remembers each file's
 * size, mtime, inode and CRC so that unchanged files are not read again
 * (image_ident.c); *reread (optional): the files read this time. */
duet_status duet_run_image_ident(const char *work, const char *dir, char *const *names, size_t n, uint64_t h,
                                 uint64_t *out, size_t *reread, duet_error *err);
duet_status duet_stage_vectors(duet_run_state *rs, duet_error *err);
duet_status duet_stage_text(duet_run_state *rs, duet_error *err);
duet_status duet_stage_train(duet_run_state *rs, duet_error *err);
duet_status duet_stage_eval(duet_run_state *rs, duet_error *err);
duet_status duet_stage_index(duet_run_state *rs, duet_error *err);

#endif
