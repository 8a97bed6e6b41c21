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
#include <string.h>

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
    {"dataset", cmd_dataset, "counts, image order and caption order of a dataset"},
    {"synth", cmd_synth, "write a synthetic dataset (features + captions)"},
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

int main(int argc, char **argv) {
    if (argc < 2) { help(stderr); return EXIT_USAGE; }
    const char *c = argv[1];
    if (strcmp(c, "help") == 0 || strcmp(c, "--help") == 0 || strcmp(c, "-h") == 0) {
        help(stdout);
        return 0;
    }
    if (strcmp(c, "--version") == 0 || strcmp(c, "version") == 0) {
        printf("duet %s\n", DUET_VERSION_STRING);
        return 0;
    }
    for (const command *k = commands; k->name; k++)
        if (strcmp(k->name, c) == 0) return k->run(argc - 2, argv + 2);
    fprintf(stderr, "duet: unknown command '%s' (see `duet help`)\n", c);
    return EXIT_USAGE;
}
