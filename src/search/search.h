/* search.h -- private to src/search (and the folders above it, tests): the
 * index object, shared between the index file (index.c) and sharded
 * galleries (shard.c, dist.c), and the searcher's padded results. */
#ifndef DUET_SEARCH_H
#define DUET_SEARCH_H

#include "core/core.h"

#define DUET_INDEX_META 8

struct duet_index {
    duet_tf_file tf;       /* the file (empty for rows of several shards)  */
    void *map;             /* mmap'd file or NULL                         */
    size_t map_len;
    size_t dim, n[2];
    const float *emb[2];   /* views into the file, or own_emb             */
    const char **text[2];  /* [n] views into the byte arrays or own_text  */
    size_t *hash;          /* [hcap] image row + 1, 0 = empty             */
    size_t hcap;
    char *meta[DUET_INDEX_META];  /* model, model_hash, text_model,
                              text_model_hash, image_model, image_root,
                              precision, isa (owned; NULL when absent)    */
    /* a gallery's rows [offset, offset + n) of total, in n_shards shards */
    size_t offset[2], total[2], n_shards;
    size_t first_shard, my_shards;   /* shards [first, first + my) held      */
    char *shard_file;      /* the first one's file name (owned; NULL: an
                              index file)                                 */
    float *own_emb[2];     /* rows copied from several shard files        */
    char *own_text;        /* their names and texts                       */
    int verified;          /* every file's CRC checked                     */
};

/* Builds the name hash of ix (path NULL: checking rows before a write);
 * refuses duplicate names. */
duet_status duet_index_build_hash(duet_index *ix, const char *path, duet_error *err);
/* Refuses empty or repeated image names (DUET_ERR_INVALID_ARG). */
duet_status duet_index_check_names(const duet_index_rows *rows, const char *path, duet_error *err);
/* duet_index_write with the fields of the JSON object extra (a json_t *,
 * borrowed; may be NULL) added to the header; *crc (optional): the file's
 * CRC-32C. */
duet_status duet_index_write_ex(const char *path, const duet_index_meta *meta, const duet_index_rows *rows,
                                const void *extra, uint32_t *crc, duet_error *err);
/* One index file (not a manifest). */
duet_status duet_index_open_file(const char *path, int use_mmap, duet_index **out, duet_error *err);
/* An index file image of len bytes in buf, which it takes over (freed with
 * the index, or at once on failure); name is used in messages. */
duet_status duet_index_parse(char *buf, size_t len, const char *name, duet_index **out, duet_error *err);
/* 1 when path starts with a shard manifest's magic. */
int duet_index_is_manifest(const char *path);

/* Every rank of c passes its part of a sharded gallery (its run of
 * shards, duet_index_open_part); rank 0 gets *names (caller frees with
 * duet_index_free; other ranks get NULL): every gallery image's name in
 * gallery order, for duet_index_find_image and duet_index_text (no
 * embeddings, no captions; totals and metadata as ix). Refuses ranks
 * whose shards do not tile one gallery (DUET_ERR_SHAPE naming each rank's
 * shards and files), as duet_search_sharded does. Every rank must call it. */
duet_status duet_index_gather_names(duet_comm *c, const duet_index *ix, duet_index **names, duet_error *err);

/* duet_searcher_topk that also says, per query, how many of its kk hits
 * are scored (real[q]); the rest are padding (the lowest unused rows at
 * -inf). real: [queries->rows], caller-owned. */
duet_status duet_searcher_topk_real(duet_searcher *s, const duet_mat *queries, size_t k, duet_hit *out,
                                    size_t *k_out, size_t *real, duet_error *err);

#endif
