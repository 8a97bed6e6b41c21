/* duet -- the command-line tool: one binary, one subcommand per job.
 *
 *   duet help | duet CMD --help
 *   duet train   --dataset SPEC --image-features I.npy --text-features T.npy -o M
 *   duet eval    --model M --dataset SPEC --image-features ... --split test
 *   duet embed   --model M --side image|text IN.npy -o OUT.npy
 *   duet dataset --dataset SPEC [--images | --captions]
 *   duet synth   -o DIR
 *   duet run     flickr8k --data DIR --work DIR   (the main job, docs/RUN.md)
 *
 * Exit status: 0 success, 1 failure (a message on stderr), 2 usage error.
 * Results go to stdout; progress and messages to stderr. */
#include "cli.h"
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- info */

/* What this duet computes with: versions, the instruction set oneDNN uses,
 * and what --precision auto means here. */
static int cmd_info(int argc, char **argv) {
    int json = 0;
    flag flags[] = {{"json", F_BOOL, &json, "one JSON object"}, {0}};
    const char *pos[1];
    int npos, rc = parse_flags("info", "[--json]", argc, argv, flags, pos, 0, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    char dv[32];
    duet_onednn_version(dv, sizeof dv);
    const char *env = getenv("DUET_PRECISION");
    duet_precision a = DUET_PRECISION_F32;
    duet_precision_resolve(DUET_PRECISION_AUTO, &a, NULL);
    const char *isa_cap = getenv("ONEDNN_MAX_CPU_ISA");
    /* the uint8 MobileNetV2 at auto: int8 where auto is bf16 and the CPU
     * has VNNI (duet_cnn_int8, docs/IMAGE.md), else its float emulation */
    const char *isa = duet_cpu_isa();
    int vnni = strstr(isa, "VNNI") || strstr(isa, "AMX") || strstr(isa, "BF16");
    const char *mob = a == DUET_PRECISION_BF16 && vnni ? "int8" : "f32";
    if (json) {
        printf("{\"version\":\"%s\",\"onednn\":\"%s\",\"isa\":\"%s\",\"bf16\":%s,\"auto\":\"%s\","
               "\"mobilenetv2_auto\":\"%s\",\"DUET_PRECISION\":\"%s\",\"ONEDNN_MAX_CPU_ISA\":\"%s\"}\n",
               DUET_VERSION_STRING, dv, isa, duet_cpu_has_bf16() ? "true" : "false",
               duet_precision_name(a), mob, env ? env : "", isa_cap ? isa_cap : "");
        return 0;
    }
    printf("duet %s\noneDNN %s\ninstruction set: %s%s%s%s\nnative bf16: %s\n"
           "--precision auto: %s (the uint8 MobileNetV2: %s)\nDUET_PRECISION: %s\n",
           DUET_VERSION_STRING, dv, isa, isa_cap ? " (ONEDNN_MAX_CPU_ISA=" : "",
           isa_cap ? isa_cap : "", isa_cap ? ")" : "", duet_cpu_has_bf16() ? "yes" : "no",
           duet_precision_name(a), strcmp(mob, "int8") ? "float emulation in f32" : "int8", env && *env ? env : "(unset: auto)");
    return 0;
}

/* ---------------------------------------------------------------- main */

typedef struct command {
    const char *name;
    int (*run)(int, char **);
    const char *what;
} command;

static const command commands[] = {
    {"train", cmd_train, "train the two-branch embedding on feature files"},
    {"eval", cmd_eval, "Recall@1/5/10 both ways on a split"},
    {"embed", cmd_embed, "embed a feature file with one branch of a model"},
    {"ensemble", cmd_ensemble, "one ensemble model file from models trained on the same features"},
    {"dataset", cmd_dataset, "counts, image order and caption order of a dataset"},
    {"synth", cmd_synth, "write a synthetic dataset (features + captions)"},
    {"info", cmd_info, "versions, the instruction set oneDNN uses, what --precision auto means here"},
    {"classify", cmd_classify, "top-5 ImageNet labels of images (ResNet-50, MobileNetV2)"},
    {"features", cmd_features, "feature files: `features image` (CNN) or `features text`"},
    {"vectors", cmd_vectors, "import word vectors (GloVe, word2vec, fastText, wink JSON)"},
    {"textmodel", cmd_textmodel, "fit a sentence encoder (mean, tf-idf, Fisher vectors)"},
    {"run", cmd_run, "the main job: features, text model, training, test, index (cached stages)"},
    {"index", cmd_index, "`index build`: embed a gallery of images (and captions) for search"},
    {"search", cmd_search, "search an index with a sentence or an image"},
    {"serve", cmd_serve, "HTTP search API and web page on an index"},
    {"proposals", cmd_proposals, "candidate boxes of images (selective search)"},
    {"localize", cmd_localize, "the boxes of an image that a phrase describes"},
    {"eval-phrases", cmd_eval_phrases, "phrase localization accuracy on Flickr30K Entities data"},
    {"phrase-data", cmd_phrase_data, "region/phrase training data from Flickr30K Entities (then duet train)"},
    {0, 0, 0}};

static void help(FILE *out) {
    fprintf(out, "duet %s -- image-text retrieval\n\nusage: duet COMMAND [flags]\n\ncommands:\n",
            DUET_VERSION_STRING);
    for (const command *c = commands; c->name; c++) fprintf(out, "  %-12s %s\n", c->name, c->what);
    fprintf(out, "  %-9s %s\n\n`duet COMMAND --help` lists the flags of a command with their defaults.\n",
            "help", "this text");
}

static int dispatch(int argc, char **argv);

int main(int argc, char **argv) {
    duet_comm *comm = NULL;
    duet_error e = {0};
    if (duet_comm_init(&argc, &argv, &comm, &e)) { fprintf(stderr, "duet: %s\n", e.msg); return 1; }
    cli_set_comm(comm);
    int rc = dispatch(argc, argv);
    /* a rank that fails ends the whole job at once, never a hang */
    if (rc != 0 && duet_comm_size(comm) > 1) {
        fprintf(stderr, "duet: rank %d of %d failed (exit %d): ending the job\n", duet_comm_rank(comm),
                duet_comm_size(comm), rc);
        duet_comm_abort(comm, rc);
    }
    duet_comm_finalize(comm);
    return rc;
}

static int dispatch(int argc, char **argv) {
    if (argc < 2) { help(stderr); return EXIT_USAGE; }
    const char *c = argv[1];
    if (strcmp(c, "help") == 0 || strcmp(c, "--help") == 0 || strcmp(c, "-h") == 0) {
        help(stdout);
        return 0;
    }
    if (strcmp(c, "--version") == 0 || strcmp(c, "version") == 0) {
        char dv[32];
        duet_onednn_version(dv, sizeof dv);
        printf("duet %s (oneDNN %s, %s)\n", DUET_VERSION_STRING, dv, duet_cpu_isa());
        return 0;
    }
    for (const command *k = commands; k->name; k++)
        if (strcmp(k->name, c) == 0) return k->run(argc - 2, argv + 2);
    fprintf(stderr, "duet: unknown command '%s' (see `duet help`)\n", c);
    return EXIT_USAGE;
}
