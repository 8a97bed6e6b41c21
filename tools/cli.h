/* cli.h -- shared pieces of the `duet` command line (tools/). Each
 * subcommand is `int cmd_NAME(int argc, char **argv)` returning the exit
 * status: 0 success, 1 failure (message on stderr), 2 usage error. */
#ifndef DUET_CLI_H
#define DUET_CLI_H
#include "duet.h"
#include <stdio.h>

#define EXIT_USAGE 2

typedef enum { F_STR, F_INT, F_SIZE, F_FLOAT, F_BOOL, F_U64 } flag_type;

typedef struct flag {
    const char *name;   /* without the leading "--" */
    flag_type type;
    void *dst;
    const char *help;
} flag;

/* Parses argv against flags (terminated by {0}); positionals go to pos (up
 * to max_pos). "-o" is "--out". Returns 0, EXIT_USAGE after a message, or -1
 * after printing --help (the caller then exits 0). */
int parse_flags(const char *cmd, const char *synopsis, int argc, char **argv,
                const flag *flags, const char **pos, int max_pos, int *n_pos);
/* Prints "duet CMD: message" and the --help hint; returns EXIT_USAGE. */
int usage_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Prints "duet CMD: <e->msg>"; returns 1. */
int fail(const char *cmd, const duet_error *e);
/* EXIT_USAGE with "--NAME is required" when v is NULL, else 0. */
int need(const char *cmd, const char *v, const char *flagname);
double now_seconds(void);

/* The job this duet runs in (duet.c joins it at start: MPI under mpirun or
 * srun, else a job of one). */
duet_comm *cli_comm(void);
void cli_set_comm(duet_comm *c);
/* Under MPI with --threads unset: the cores of this machine shared by its
 * ranks (at least 1); otherwise threads unchanged. */
int cli_threads(int threads);
int file_exists(const char *path);

/* The training hyper-parameter flags shared by `duet train` and `duet run`
 * (--linear ... --threads), bound to p and *optimizer. Writes at most cap
 * entries to out; returns how many. */
size_t train_param_flags(flag *out, size_t cap, duet_params *p, const char **optimizer,
                         const char **precision);
/* Applies --optimizer (adam or sgd) and --precision, and validates p;
 * EXIT_USAGE (or 1 for bf16 on a CPU without it) after a message, else 0. */
int finish_train_params(const char *cmd, const char *optimizer, const char *precision, duet_params *p);

/* --precision on every command that computes: value NULL means
 * $DUET_PRECISION, else "auto". Resolved for this CPU into *out (f32 or
 * bf16) and said on stderr ("duet CMD: bf16 on AMX-BF16"). 0, EXIT_USAGE
 * for an unknown name, or 1 after a message (bf16 on a CPU without it). */
int get_precision(const char *cmd, const char *value, duet_precision *out);
#define PRECISION_HELP "auto, f32 or bf16 (default: $DUET_PRECISION, else auto: bf16 where the CPU computes it natively)"

/* Subcommands, one file per part of the pipeline. */
int cmd_train(int argc, char **argv);    /* tools/cmd_embed.c */
int cmd_eval(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_ensemble(int argc, char **argv);
int cmd_dataset(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_vectors(int argc, char **argv);        /* tools/cmd_text.c */
int cmd_textmodel(int argc, char **argv);
int cmd_features_text(int argc, char **argv);  /* `duet features text` */
int cmd_classify(int argc, char **argv);       /* tools/cmd_image.c */
int cmd_features(int argc, char **argv);       /* `duet features image|text` */
int cmd_run(int argc, char **argv);            /* tools/cmd_run.c */

/* CNN weights (tools/cmd_image.c): model "resnet50" or "mobilenetv2",
 * weights/labels NULL for the defaults. resolve_model: 0, or an exit status
 * after a message. */
typedef struct model_paths {
    char weights[4096], labels[4096];
    int tflite;
    duet_precision prec;   /* load_net sets it on the CNN; resolve_model: f32 */
} model_paths;
int resolve_model(const char *cmd, const char *model, const char *weights,
                  const char *labels, model_paths *mp);
duet_status load_net(const model_paths *mp, duet_cnn **net, duet_error *e);
int list_image_dir(const char *cmd, const char *dir, char ***names, size_t *n);

/* Everything a query needs (tools/cmd_search.c): an index (optional), the
 * model, its text model and CNN, and the encoder over them. */
typedef struct search_ctx {
    duet_index *ix;
    duet_model *model;
    duet_textmodel *tm;
    duet_cnn *cnn;
    duet_query_encoder enc;
    duet_precision prec;   /* load_encoders sets it on the model and CNN */
} search_ctx;
void ctx_free(search_ctx *c);
/* Loads the model and text model (given, else as c->ix (or the model)
 * records them) and checks they belong together; with want_cnn also the
 * CNN the model records (required; weights NULL: the default place), whose
 * feature width must be the image branch's input -- or, with
 * LOAD_CNN_REGIONS, that plus the box geometry (a region-phrase model).
 * 0, or an exit status after a message. */
enum { LOAD_CNN_NONE = 0, LOAD_CNN_IMAGES = 1, LOAD_CNN_REGIONS = 2 };
int load_encoders(const char *cmd, search_ctx *c, const char *model, const char *textmodel,
                  int want_cnn, const char *weights);

/* The index at path into c->ix (under mpirun: this rank's shards of a
 * sharded index); warns about files without a checksum. 0, or an exit
 * status after a message. */
int open_index(const char *cmd, const char *path, search_ctx *c);
/* The CNN the index (or model) records into c->cnn and c->enc; required: a
 * missing or mismatched CNN is an error, else a warning. */
int load_cnn(const char *cmd, search_ctx *c, const char *weights, int required, int regions);

int cmd_index(int argc, char **argv);          /* tools/cmd_search.c */
int cmd_search(int argc, char **argv);
int cmd_serve(int argc, char **argv);          /* tools/cmd_serve.c */
int cmd_proposals(int argc, char **argv);      /* tools/cmd_region.c */
int cmd_localize(int argc, char **argv);
int cmd_eval_phrases(int argc, char **argv);
int cmd_phrase_data(int argc, char **argv);

#endif
