/* cmd_embed.c -- the embedding subcommands: train, eval, embed, dataset,
 * synth. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------- shared loading */

/* The dataset and its feature files: read row by row as needed (any
 * size), or with in_memory read whole into memory (duet_npy_read). */
typedef struct inputs {
    const char *dataset, *img_path, *txt_path;
    int in_memory;
    duet_dataset *d;
    duet_mat mem[2];
    duet_features *img, *txt;
} inputs;

static void inputs_free(inputs *in) {
    duet_dataset_free(in->d);
    duet_features_close(in->img);
    duet_features_close(in->txt);
    duet_mat_free(&in->mem[0]);
    duet_mat_free(&in->mem[1]);
}

static duet_status inputs_load(inputs *in, duet_error *e) {
    duet_status st = duet_dataset_load(in->dataset, &in->d, e);
    const char *path[2] = {in->img_path, in->txt_path};
    duet_features **f[2] = {&in->img, &in->txt};
    for (int s = 0; s < 2 && !st; s++) {
        if (!in->in_memory) st = duet_features_open(path[s], f[s], e);
        else if (!(st = duet_npy_read(path[s], &in->mem[s], e))) st = duet_features_wrap(&in->mem[s], f[s], e);
    }
    if (!st) st = duet_check_feature_sources(in->d, in->img, in->img_path, in->txt, in->txt_path, 0, e);
    return st;
}

/* ---------------------------------------------------------------- JSON out */

static void print_recall_json(FILE *out, const duet_eval_result *r) {
    const duet_recall *q[2] = {&r->i2t, &r->t2i};
    const char *nm[2] = {"i2t", "t2i"};
    fputc('{', out);
    for (int s = 0; s < 2; s++)
        fprintf(out, "\"%s\":{\"r1\":%.2f,\"r5\":%.2f,\"r10\":%.2f,\"medr\":%.1f,\"meanr\":%.2f},",
                nm[s], q[s]->r1, q[s]->r5, q[s]->r10, q[s]->medr, q[s]->meanr);
    fprintf(out, "\"rsum\":%.2f}", r->rsum);
}

static void print_recall_table(FILE *out, const duet_eval_result *r) {
    fprintf(out, "              R@1    R@5   R@10   medr   meanr\n");
    fprintf(out, "image->text %6.1f %6.1f %6.1f %6.1f %7.1f\n", r->i2t.r1, r->i2t.r5,
            r->i2t.r10, r->i2t.medr, r->i2t.meanr);
    fprintf(out, "text->image %6.1f %6.1f %6.1f %6.1f %7.1f\n", r->t2i.r1, r->t2i.r5,
            r->t2i.r10, r->t2i.medr, r->t2i.meanr);
    fprintf(out, "R-sum %.1f  (%zu images, %zu captions, %zu fold%s)\n", r->rsum,
            r->n_images, r->n_captions, r->n_folds, r->n_folds == 1 ? "" : "s");
}

/* ---------------------------------------------------------------- train */


static volatile int g_interrupted; /* set by SIGINT/SIGTERM in the CLI only */
static void on_signal(int sig) { (void)sig; g_interrupted = 1; }

typedef struct progress {
    int tty;
    int epochs;
    double t0, epoch_t0;
    size_t steps_run;
} progress;

static int on_step(void *user, int epoch, size_t step, size_t steps, double loss) {
    progress *pr = user;
    pr->steps_run++;
    if (!pr->tty) return 0;
    if (step == 1) pr->epoch_t0 = now_seconds();
    double el = now_seconds() - pr->epoch_t0;
    double rate = el > 0 ? (double)step / el : 0.0;
    /* this epoch's remaining steps and the later epochs' (validation not counted) */
    double left = rate > 0 ? ((double)(steps - step) +
                              (double)(pr->epochs - epoch) * (double)steps) / rate : 0.0;
    fprintf(stderr, "\repoch %d/%d  step %zu/%zu  %.2f steps/s  loss %.4f  ETA %dm%02ds   ",
            epoch, pr->epochs, step, steps, rate, loss, (int)(left / 60), (int)left % 60);
    return 0;
}

static void on_epoch(void *user, const duet_epoch_log *l) {
    progress *pr = user;
    char val[32] = "-";
    if (l->val_rsum >= 0) snprintf(val, sizeof val, "%.1f", l->val_rsum);
    if (pr->tty) fputs("\r\033[K", stderr);
    fprintf(stderr, "epoch %d/%d  loss %.4f  val R-sum %s  lr %.3g  %.1fs\n", l->epoch,
            pr->epochs, l->loss, val, (double)l->lr, l->seconds);
}


int cmd_train(int argc, char **argv) {
    const char *cmd = "train";
    duet_params p = duet_default_params();
    inputs in = {0};
    const char *out = NULL, *ckpt = NULL, *opt = "adam", *prec = NULL, *text_model = NULL, *image_model = NULL;
    int resume = 0, json = 0;
    flag flags[48] = {
        {"dataset", F_STR, &in.dataset, "flickr8k:DIR, karpathy:FILE.json or tsv:FILE"},
        {"image-features", F_STR, &in.img_path, ".npy, one row per dataset image"},
        {"text-features", F_STR, &in.txt_path, ".npy, one row per dataset caption"},
        {"out", F_STR, &out, "model file to write (-o)"},
        {"in-memory", F_BOOL, &in.in_memory, "read the feature files into memory (default: read rows as needed, any size)"}};
    size_t nf = 5;
    nf += train_param_flags(flags + nf, 40, &p, &opt, &prec);
    const flag tail[] = {
        {"checkpoint", F_STR, &ckpt, "checkpoint file written after every epoch (default: OUT.ckpt)"},
        {"resume", F_BOOL, &resume, "continue from the checkpoint if it exists"},
        {"text-model", F_STR, &text_model, "text model the captions were encoded with (recorded with its hash)"},
        {"image-model", F_STR, &image_model, "CNN the image features came from, e.g. 'resnet50 crops=1' (recorded)"},
        {"json", F_BOOL, &json, "print the training summary as JSON on stdout"}};
    memcpy(flags + nf, tail, sizeof tail); /* the rest of flags[] stays zero: the terminator */
    const char *pos[1];
    int npos, rc = parse_flags(cmd, "--dataset SPEC --image-features I.npy --text-features T.npy -o MODEL [flags]",
                               argc, argv, flags, pos, 0, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    if ((rc = need(cmd, in.dataset, "dataset")) || (rc = need(cmd, in.img_path, "image-features")) ||
        (rc = need(cmd, in.txt_path, "text-features")) || (rc = need(cmd, out, "out")))
        return rc;
    if ((rc = finish_train_params(cmd, opt, prec, &p))) return rc;
    duet_error e = {0};
    /* under mpirun: data-parallel, each rank on its share of the cores;
     * rank 0 reports and writes the model and the checkpoint */
    duet_comm *comm = cli_comm();
    int rank0 = duet_comm_rank(comm) == 0;
    p.threads = cli_threads(p.threads);

    char ckbuf[4096];
    if (!ckpt) {
        snprintf(ckbuf, sizeof ckbuf, "%s.ckpt", out);
        ckpt = ckbuf;
    }
    if (resume && rank0 && !file_exists(ckpt))
        fprintf(stderr, "duet train: no checkpoint at %s; starting from scratch\n", ckpt);
    char text_hash[32] = "";
    if (text_model) {
        char hex[17];
        if (duet_file_hash(text_model, hex, &e)) return fail(cmd, &e);
        snprintf(text_hash, sizeof text_hash, "fnv1a64:%s", hex);
    }
    if (inputs_load(&in, &e)) { inputs_free(&in); return fail(cmd, &e); }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    progress pr = {isatty(2), p.epochs, now_seconds(), 0, 0};
    duet_train_opts o = {ckpt, resume, rank0 ? on_step : NULL, &pr, rank0 ? on_epoch : NULL, &pr,
                         &g_interrupted, comm};
    duet_model *m = NULL;
    duet_epoch_log *logs = NULL;
    size_t nlogs = 0;
    duet_status st = duet_train_features(in.d, in.img, in.txt, &p, &o, &m, &logs, &nlogs, &e);
    if (st) {
        if (pr.tty) fputs("\r\033[K", stderr);
        inputs_free(&in);
        if (st == DUET_ERR_INTERRUPTED && rank0 && file_exists(ckpt))
            fprintf(stderr, "duet train: interrupted; `--resume` continues from %s\n", ckpt);
        return fail(cmd, &e);
    }
    if (duet_comm_size(comm) > 1 && rank0 && pr.steps_run)
        fprintf(stderr, "duet train: %d ranks; rank 0 sent %.2f MB per step in the collectives (%zu steps)\n",
                duet_comm_size(comm), duet_comm_bytes_sent(comm) / (double)pr.steps_run / 1e6, pr.steps_run);
    if (!rank0) { /* rank 0 writes and reports */
        free(logs);
        duet_model_free(m);
        inputs_free(&in);
        return 0;
    }
    duet_model_info *info = duet_model_info_of(m);
    info->image_features = strdup(in.img_path);
    info->text_features = strdup(in.txt_path);
    info->text_model = text_model ? strdup(text_model) : NULL;
    info->text_model_hash = text_model ? strdup(text_hash) : NULL;
    info->image_model = image_model ? strdup(image_model) : NULL;
    st = duet_model_save(m, out, &e);
    if (!st) remove(ckpt);
    double secs = now_seconds() - pr.t0;
    if (!st && json) {
        json_t *eps = json_array();
        for (size_t i = 0; i < nlogs; i++)
            json_array_append_new(eps, json_pack("{s:i, s:f, s:f, s:f, s:f}", "epoch", logs[i].epoch,
                                                 "loss", logs[i].loss, "val_rsum", logs[i].val_rsum,
                                                 "seconds", logs[i].seconds, "lr", (double)logs[i].lr));
        json_t *summary = json_pack("{s:s, s:i, s:i, s:f, s:f, s:o}", "model", out,
                              "epochs_run", info->epochs_run, "best_epoch", info->best_epoch,
                              "best_val_rsum", (double)info->best_val_rsum, "seconds", secs,
                              "epochs", eps);
        char *txt = summary ? json_dumps(summary, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6)) : NULL;
        if (txt) printf("%s\n", txt);
        free(txt);
        json_decref(summary);
    } else if (!st) {
        printf("wrote %s: best epoch %d of %d, validation R-sum %.1f, %.1f s\n", out,
               info->best_epoch, info->epochs_run, (double)info->best_val_rsum, secs);
    }
    free(logs);
    duet_model_free(m);
    inputs_free(&in);
    return st ? fail(cmd, &e) : 0;
}

/* ---------------------------------------------------------------- eval */

#define MAX_ENSEMBLE 16

/* Splits the comma-separated list in buf (modified) into at most max parts;
 * returns how many, or 0 when there are more than max or one is empty. */
static size_t split_list(char *buf, char **part, size_t max) {
    size_t n = 0;
    for (char *p = buf;; ) {
        char *c = strchr(p, ',');
        if (c) *c = '\0';
        if (!*p || n == max) return 0;
        part[n++] = p;
        if (!c) return n;
        p = c + 1;
    }
}

/* eval: one model (or ensemble file), or an ensemble (--model A,B,... with
 * one features file per model or one shared by all; a score is the mean of
 * the members' cosine similarities, duet_ensemble_embed). */
int cmd_eval(int argc, char **argv) {
    const char *cmd = "eval";
    const char *model = NULL, *dataset = NULL, *img_path = NULL, *txt_path = NULL;
    const char *split = "test", *protocol = "all";
    size_t fold = 1000;
    int json = 0, threads = 0;
    flag flags[] = {
        {"model", F_STR, &model, "model file (one model or an ensemble file); A,B,... evaluates the ensemble of those (mean similarities)"},
        {"dataset", F_STR, &dataset, "flickr8k:DIR, karpathy:FILE.json or tsv:FILE"},
        {"image-features", F_STR, &img_path, ".npy, one row per dataset image (one per model, comma-separated, or one for all)"},
        {"text-features", F_STR, &txt_path, ".npy, one row per dataset caption (one per model, or one for all)"},
        {"split", F_STR, &split, "train, val, test or all"},
        {"protocol", F_STR, &protocol, "all (the whole split as one gallery) or folds"},
        {"fold-size", F_SIZE, &fold, "images per fold with --protocol folds (COCO 5 x 1K)"},
        {"threads", F_INT, &threads, "OpenBLAS threads (0: OpenBLAS's default)"},
        {"json", F_BOOL, &json, "print one JSON object"},
        {0}};
    const char *pos[1];
    int npos, rc = parse_flags(cmd, "--model M[,M2...] --dataset SPEC --image-features I.npy --text-features T.npy [flags]",
                               argc, argv, flags, pos, 0, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    if ((rc = need(cmd, model, "model")) || (rc = need(cmd, dataset, "dataset")) ||
        (rc = need(cmd, img_path, "image-features")) || (rc = need(cmd, txt_path, "text-features")))
        return rc;
    int s = duet_split_parse(split);
    if (s < 0) return usage_error(cmd, "--split: '%s' is not train, val, test or all", split);
    if (strcmp(protocol, "all") && strcmp(protocol, "folds"))
        return usage_error(cmd, "--protocol: '%s' is not all or folds", protocol);
    if (strcmp(protocol, "folds") == 0 && fold == 0) return usage_error(cmd, "--fold-size must be >= 1");
    if (threads < 0) return usage_error(cmd, "--threads must be >= 0");
    char mb[4096], ib[4096], tb[4096];
    char *mp[MAX_ENSEMBLE], *ip[MAX_ENSEMBLE], *tp[MAX_ENSEMBLE];
    if (strlen(model) >= sizeof mb || strlen(img_path) >= sizeof ib || strlen(txt_path) >= sizeof tb)
        return usage_error(cmd, "a path list is too long");
    strcpy(mb, model); strcpy(ib, img_path); strcpy(tb, txt_path);
    size_t nm = split_list(mb, mp, MAX_ENSEMBLE), ni = split_list(ib, ip, MAX_ENSEMBLE),
           nt = split_list(tb, tp, MAX_ENSEMBLE);
    if (!nm) return usage_error(cmd, "--model: an empty name or more than %d models", MAX_ENSEMBLE);
    if (!ni || (ni != 1 && ni != nm))
        return usage_error(cmd, "--image-features: give one file or one per model (%zu)", nm);
    if (!nt || (nt != 1 && nt != nm))
        return usage_error(cmd, "--text-features: give one file or one per model (%zu)", nm);
    if (threads) duet_set_threads(threads);
    duet_error e = {0};
    duet_dataset *d = NULL;
    duet_model *m[MAX_ENSEMBLE] = {0};
    duet_features *img[MAX_ENSEMBLE] = {0}, *txt[MAX_ENSEMBLE] = {0}; /* read by row */
    const duet_features *ia[MAX_ENSEMBLE], *ta[MAX_ENSEMBLE];
    duet_eval_result r;
    duet_status st = duet_dataset_load(dataset, &d, &e);
    for (size_t k = 0; k < nm && !st; k++) {
        st = duet_model_load(mp[k], &m[k], &e);
        if (!st && k < ni) st = duet_features_open(ip[k], &img[k], &e);
        if (!st && k < nt) st = duet_features_open(tp[k], &txt[k], &e);
        if (!st && (k < ni || k < nt))
            st = duet_check_feature_sources(d, k < ni ? img[k] : NULL, ip[k < ni ? k : 0],
                                            k < nt ? txt[k] : NULL, tp[k < nt ? k : 0], 1, &e);
        ia[k] = img[k < ni ? k : 0];
        ta[k] = txt[k < nt ? k : 0];
    }
    if (!st) st = duet_evaluate_ensemble_features((const duet_model *const *)m, ia, ta, nm, d, (duet_split)s,
                                                  strcmp(protocol, "folds") == 0 ? fold : 0, 0, &r, &e);
    if (!st) {
        if (json) { print_recall_json(stdout, &r); putchar('\n'); }
        else print_recall_table(stdout, &r);
    }
    for (size_t k = 0; k < nm; k++) { duet_model_free(m[k]); duet_features_close(img[k]); duet_features_close(txt[k]); }
    duet_dataset_free(d);
    return st ? fail(cmd, &e) : 0;
}

/* ---------------------------------------------------------------- embed */

int cmd_embed(int argc, char **argv) {
    const char *cmd = "embed";
    const char *model = NULL, *side = NULL, *out = NULL;
    int threads = 0;
    flag flags[] = {
        {"model", F_STR, &model, "model file"},
        {"side", F_STR, &side, "image or text: which branch embeds IN.npy"},
        {"out", F_STR, &out, "output .npy, [rows x embed_dim] (-o)"},
        {"threads", F_INT, &threads, "OpenBLAS threads (0: OpenBLAS's default)"},
        {0}};
    const char *pos[1];
    int npos, rc = parse_flags(cmd, "--model M --side image|text IN.npy -o OUT.npy", argc, argv,
                               flags, pos, 1, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    if ((rc = need(cmd, model, "model")) || (rc = need(cmd, side, "side")) || (rc = need(cmd, out, "out")))
        return rc;
    if (npos != 1) return usage_error(cmd, "give one input .npy file");
    int sd = strcmp(side, "image") == 0 ? DUET_SIDE_IMAGE : strcmp(side, "text") == 0 ? DUET_SIDE_TEXT : -1;
    if (sd < 0) return usage_error(cmd, "--side: '%s' is not image or text", side);
    if (threads) duet_set_threads(threads);
    duet_error e = {0};
    duet_model *m = NULL;
    duet_mat x = {0}, y = {0};
    duet_status st = duet_model_load(model, &m, &e);
    if (!st) st = duet_npy_read(pos[0], &x, &e);
    if (!st) st = duet_mat_check_finite(&x, pos[0], &e);
    if (!st) {
        y.rows = x.rows;
        y.cols = duet_model_embed_dim(m);
        y.data = malloc((y.rows ? y.rows : 1) * y.cols * sizeof(float));
        if (!y.data) { e.status = st = DUET_ERR_NOMEM; snprintf(e.msg, sizeof e.msg, "out of memory"); }
    }
    if (!st) {
        st = duet_model_embed(m, sd, &x, &y, &e);
        if (st) snprintf(e.msg + strlen(e.msg), sizeof e.msg - strlen(e.msg), " (input %s)", pos[0]);
    }
    if (!st) st = duet_npy_write(out, &y, &e);
    duet_model_free(m);
    duet_mat_free(&x);
    duet_mat_free(&y);
    return st ? fail(cmd, &e) : 0;
}

/* ---------------------------------------------------------------- ensemble */

/* ensemble: MODEL... -o OUT: the members (trained on the same features, e.g.
 * seeds) as one model file; prints what it wrote. */
int cmd_ensemble(int argc, char **argv) {
    const char *cmd = "ensemble", *out = NULL;
    int json = 0;
    flag flags[] = {
        {"out", F_STR, &out, "ensemble model file to write (-o)"},
        {"json", F_BOOL, &json, "print {\"model\", \"members\", \"embed_dim\", \"description\"}"},
        {0}};
    const char *pos[MAX_ENSEMBLE + 1];
    int npos, rc = parse_flags(cmd, "MODEL MODEL... -o OUT   (models trained on the same image and text features)",
                               argc, argv, flags, pos, MAX_ENSEMBLE, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    if ((rc = need(cmd, out, "out"))) return rc;
    if (npos < 1) return usage_error(cmd, "give the member model files");
    duet_error e = {0};
    duet_model *m[MAX_ENSEMBLE] = {0}, *ens = NULL;
    duet_status st = DUET_OK;
    for (int k = 0; k < npos && !st; k++) st = duet_model_load(pos[k], &m[k], &e);
    if (!st) st = duet_model_ensemble(m, (size_t)npos, &ens, &e);   /* "member K": the K-th file given */
    if (!st) st = duet_model_save(ens, out, &e);
    if (!st) {
        char desc[256];
        duet_model_describe(ens, desc, sizeof desc);
        if (json) printf("{\"model\":\"%s\",\"members\":%d,\"embed_dim\":%zu,\"description\":\"%s\"}\n", out, npos,
                         duet_model_embed_dim(ens), desc);
        else printf("wrote %s: %s\n", out, desc);
    }
    if (ens) duet_model_free(ens);
    else for (int k = 0; k < npos; k++) duet_model_free(m[k]);
    return st ? fail(cmd, &e) : 0;
}

/* ---------------------------------------------------------------- dataset */

int cmd_dataset(int argc, char **argv) {
    const char *cmd = "dataset", *spec = NULL;
    int images = 0, captions = 0, json = 0;
    flag flags[] = {
        {"dataset", F_STR, &spec, "flickr8k:DIR, karpathy:FILE.json or tsv:FILE"},
        {"images", F_BOOL, &images, "print the image names in feature-row order"},
        {"captions", F_BOOL, &captions, "print image<TAB>caption in feature-row order"},
        {"json", F_BOOL, &json, "print the counts as JSON"},
        {0}};
    const char *pos[1];
    int npos, rc = parse_flags(cmd, "--dataset SPEC [--images | --captions | --json]", argc, argv,
                               flags, pos, 0, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    if ((rc = need(cmd, spec, "dataset"))) return rc;
    duet_error e = {0};
    duet_dataset *d = NULL;
    if (duet_dataset_load(spec, &d, &e)) return fail(cmd, &e);
    if (images) {
        for (size_t i = 0; i < d->n_images; i++) printf("%s\n", d->image_names[i]);
    } else if (captions) {
        for (size_t j = 0; j < d->n_captions; j++)
            printf("%s\t%s\n", d->image_names[d->caption_image[j]], d->captions[j]);
    } else {
        size_t cnt[4] = {0}, caps[4] = {0};
        for (size_t i = 0; i < d->n_images; i++) {
            cnt[d->image_split[i]]++;
            caps[d->image_split[i]] += d->image_cap_start[i + 1] - d->image_cap_start[i];
        }
        if (json)
            printf("{\"images\":%zu,\"captions\":%zu,\"train\":%zu,\"val\":%zu,\"test\":%zu,\"skipped_lines\":%zu}\n",
                   d->n_images, d->n_captions, cnt[0], cnt[1], cnt[2], d->n_skipped);
        else {
            printf("%s: %zu images, %zu captions (%zu source lines skipped)\n", spec,
                   d->n_images, d->n_captions, d->n_skipped);
            for (int s = 0; s < 4; s++)
                if (cnt[s]) printf("  %-5s %6zu images %7zu captions\n", duet_split_name((duet_split)s), cnt[s], caps[s]);
        }
    }
    duet_dataset_free(d);
    return 0;
}

/* ---------------------------------------------------------------- synth */

int cmd_synth(int argc, char **argv) {
    const char *cmd = "synth", *out = NULL;
    duet_synth_params p = duet_synth_default_params();
    flag flags[] = {
        {"out", F_STR, &out, "directory to write (created if missing) (-o)"},
        {"train", F_SIZE, &p.n_train, "training images"},
        {"val", F_SIZE, &p.n_val, "validation images"},
        {"test", F_SIZE, &p.n_test, "test images"},
        {"captions", F_SIZE, &p.caps_per_image, "captions per image"},
        {"latent", F_SIZE, &p.d_latent, "latent width"},
        {"image-dim", F_SIZE, &p.d_image, "image feature width"},
        {"text-dim", F_SIZE, &p.d_text, "text feature width"},
        {"image-noise", F_FLOAT, &p.image_noise, "image noise level"},
        {"caption-noise", F_FLOAT, &p.caption_noise, "caption noise level (in latent space)"},
        {"seed", F_U64, &p.seed, "random seed"},
        {0}};
    const char *pos[1];
    int npos, rc = parse_flags(cmd, "-o DIR [flags]", argc, argv, flags, pos, 0, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    if ((rc = need(cmd, out, "out"))) return rc;
    if (mkdir(out, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "duet synth: %s: cannot create: %s\n", out, strerror(errno));
        return 1;
    }
    duet_error e = {0};
    if (duet_synth_write(&p, out, &e)) return fail(cmd, &e);
    size_t n = p.n_train + p.n_val + p.n_test;
    printf("wrote %s/images.npy [%zu x %zu], %s/texts.npy [%zu x %zu], %s/captions.tsv\n", out, n,
           p.d_image, out, n * p.caps_per_image, p.d_text, out);
    return 0;
}

