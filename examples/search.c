/* search.c -- duet as a library: embed a text query and search an index.
 *
 * Loads a trained model (duet train), the text model its captions were
 * encoded with (duet textmodel fit) and a gallery index (duet index build),
 * then prints the k images nearest the query, best first, with their scores:
 * the same answer as `duet search --index INDEX -k K QUERY`. Public API only.
 *
 * Build against an installed duet (make install PREFIX=DIR):
 *   export PKG_CONFIG_PATH=DIR/lib/pkgconfig
 *   cc -std=c11 search.c $(pkg-config --cflags --libs duet) -Wl,-rpath,DIR/lib -o search
 *   ./search model.duet text.model gallery.index "a dog on the beach"
 * or statically: pkg-config --static --libs duet gives the dependencies.
 * In the tree, `make examples` builds build/examples/search.
 */
#include <duet.h>
#include <stdio.h>
#include <stdlib.h>

/* Prints the error of a failed call; returns the exit code 1. */
static int fail(const duet_error *e) {
    fprintf(stderr, "search: %s: %s\n", duet_status_str(e->status), e->msg);
    return 1;
}

/* "fnv1a64:<16 hex>" of a file, as duet_query_check expects. */
static int hash_file(const char *path, char out[32], duet_error *e) {
    char hex[17];
    if (duet_file_hash(path, hex, e)) return 1;
    snprintf(out, 32, "fnv1a64:%s", hex);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 5 || argc > 6) {
        fprintf(stderr, "usage: search MODEL TEXTMODEL INDEX QUERY [K]\n"
                        "prints the K (default 10) images of INDEX nearest the text QUERY\n");
        return 2;
    }
    const char *query = argv[4];
    char *end;
    long k = argc == 6 ? strtol(argv[5], &end, 10) : 10;
    if (argc == 6 && (*end || k < 1 || k > 100000)) {
        fprintf(stderr, "search: K must be a number from 1 to 100000, not '%s'\n", argv[5]);
        return 2;
    }
    duet_error e = {0};
    duet_model *model = NULL;
    duet_textmodel *tm = NULL;
    duet_index *ix = NULL;
    float *emb = NULL;
    duet_hit *hits = NULL;
    char mh[32], th[32];
    int rc = 1;
    if (duet_model_load(argv[1], &model, &e) || hash_file(argv[1], mh, &e) ||
        duet_textmodel_load(argv[2], &tm, &e) || hash_file(argv[2], th, &e) ||
        duet_index_open(argv[3], 1, &ix, &e) || duet_query_check(ix, model, mh, tm, th, &e)) {
        rc = fail(&e);
        goto done;
    }
    size_t dim = duet_index_dim(ix), got = 0;
    emb = malloc(dim * sizeof *emb);
    hits = malloc((size_t)k * sizeof *hits);
    if (!emb || !hits) { fprintf(stderr, "search: out of memory\n"); goto done; }
    /* the query through the text model and the model's text branch */
    duet_query_encoder enc = {.model = model, .textmodel = tm, .cnn = NULL, .crops = 1};
    uint8_t flags = 0;
    if (duet_query_encode_text(&enc, &query, 1, emb, &flags, &e)) { rc = fail(&e); goto done; }
    if (flags & DUET_TEXT_FLAG_EMPTY)
        fprintf(stderr, "search: the text model knows no word of '%s': the results are arbitrary\n", query);
    /* exact top-k by inner product over the index's image embeddings */
    duet_mat q = {emb, 1, dim}, gallery = duet_index_embeddings(ix, DUET_SIDE_IMAGE);
    if (duet_topk(&q, &gallery, (size_t)k, hits, &got, &e)) { rc = fail(&e); goto done; }
    for (size_t i = 0; i < got; i++)
        printf("%3zu  %7.4f  %s\n", i + 1, (double)hits[i].score,
               duet_index_text(ix, DUET_SIDE_IMAGE, hits[i].index));
    rc = 0;
done:
    free(hits);
    free(emb);
    duet_index_free(ix);
    duet_textmodel_free(tm);
    duet_model_free(model);
    return rc;
}
