/* cmd_region.c -- the region subcommands (issue 7, phrase localization):
 *   duet proposals [--max N] [--json] [--draw OUT.png] IMAGE...
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "core/core.h"
#include <errno.h>
#include <jansson.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- proposals */

int cmd_proposals(int argc, char **argv) {
    duet_proposal_params p = duet_proposal_default_params();
    size_t max_boxes = p.max_boxes, draw_top = 20;
    int max_side = p.max_side, json = 0;
    uint64_t seed = p.seed;
    const char *draw = NULL;
    flag flags[] = {
        {"max", F_SIZE, &max_boxes, "at most this many boxes per image, best first"},
        {"max-side", F_INT, &max_side, "segment the image downscaled to this longer side (pixels)"},
        {"seed", F_U64, &seed, "seed of the ranking's random factors"},
        {"json", F_BOOL, &json, "one JSON object per image: {\"image\", \"width\", \"height\", \"boxes\": [[x0,y0,x1,y1], ...]}"},
        {"draw", F_STR, &draw, "write the (single) image with its first --draw-top boxes drawn, as PNG"},
        {"draw-top", F_SIZE, &draw_top, "boxes drawn by --draw"},
        {0, 0, 0, 0}};
    const char *pos[1024];
    int n_pos = 0;
    int r = parse_flags("proposals", "duet proposals [flags] IMAGE...\n"
                        "Candidate boxes (selective search over graph segmentations), one line per box:\n"
                        "x0 y0 x1 y1 in pixels, half-open, best first.",
                        argc, argv, flags, pos, 1024, &n_pos);
    if (r) return r < 0 ? 0 : r;
    if (n_pos == 0) return usage_error("proposals", "give at least one image");
    if (draw && n_pos != 1) return usage_error("proposals", "--draw takes exactly one image");
    p.max_boxes = max_boxes;
    p.max_side = max_side;
    p.seed = seed;
    int rc = 0;
    for (int i = 0; i < n_pos && !rc; i++) {
        duet_error e = {0};
        duet_image im = {0};
        duet_box *b = NULL;
        size_t n = 0;
        double t0 = now_seconds();
        duet_status st = duet_image_read(pos[i], &im, &e);
        if (!st) st = duet_proposals(&im, &p, &b, &n, &e);
        if (st) { rc = fail("proposals", &e); duet_image_free(&im); break; }
        double ms = 1000 * (now_seconds() - t0);
        if (json) {
            json_t *arr = json_array();
            for (size_t k = 0; k < n; k++)
                json_array_append_new(arr, json_pack("[f,f,f,f]", b[k].x0, b[k].y0, b[k].x1, b[k].y1));
            json_t *o = json_pack("{s:s, s:I, s:I, s:f, s:o}", "image", pos[i], "width", (json_int_t)im.width,
                                  "height", (json_int_t)im.height, "ms", ms, "boxes", arr);
            char *txt = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
            if (txt) printf("%s\n", txt);
            free(txt);
            json_decref(o);
        } else {
            if (n_pos > 1) printf("# %s\n", pos[i]);
            for (size_t k = 0; k < n; k++) printf("%.1f %.1f %.1f %.1f\n", b[k].x0, b[k].y0, b[k].x1, b[k].y1);
        }
        fprintf(stderr, "proposals: %s: %zux%zu, %zu boxes in %.1f ms\n", pos[i], im.width, im.height, n, ms);
        if (draw) {
            static const uint8_t colour[3] = {255, 40, 40};
            for (size_t k = n < draw_top ? n : draw_top; k-- > 0;) duet_image_draw_box(&im, &b[k], colour, 2);
            st = duet_image_write_png(&im, draw, &e);
            if (st) rc = fail("proposals", &e);
        }
        free(b);
        duet_image_free(&im);
    }
    return rc;
}

/* ---------------------------------------------------- model of a work dir */

static int parse_score(const char *cmd, const char *s, duet_region_score *out) {
    if (strcmp(s, "contrast") == 0) *out = DUET_SCORE_CONTRAST;
    else if (strcmp(s, "cosine") == 0) *out = DUET_SCORE_COSINE;
    else return usage_error(cmd, "--score: '%s' is not contrast or cosine", s);
    return 0;
}

/* --model, else the "model" that WORK/run.json (duet run) records, into
 * buf. 0, or an exit status after a message. */
static int model_of(const char *cmd, const char *work, const char *model, char *buf, size_t cap) {
    if (model) { snprintf(buf, cap, "%s", model); return 0; }
    if (!work) return usage_error(cmd, "give --work DIR (a `duet run` work directory) or --model FILE");
    char p[4096];
    snprintf(p, sizeof p, "%s/run.json", work);
    json_error_t je;
    json_t *o = json_load_file(p, 0, &je);
    const char *m = o ? json_string_value(json_object_get(o, "model")) : NULL;
    if (!m) {
        fprintf(stderr, "duet %s: %s: %s\n", cmd, p, o ? "no \"model\" recorded (did the run finish?)" : je.text);
        json_decref(o);
        return 1;
    }
    snprintf(buf, cap, "%s", m);
    json_decref(o);
    return 0;
}

static int load_regions(const char *cmd, search_ctx *c, const char *path, const duet_proposal_params *pp,
                        duet_image *im, duet_regions *r) {
    duet_error e = {0};
    if (duet_image_read(path, im, &e) || duet_regions_embed(&c->enc, im, pp, r, &e)) return fail(cmd, &e);
    return 0;
}

/* --work / --model / --textmodel / --weights / --precision, shared by the commands that
 * load a model with its text model and CNN. */
typedef struct model_args { const char *work, *model, *textmodel, *weights, *precision; } model_args;

/* Writes the five flags bound to a at out[0..5); returns 5. */
static size_t model_arg_flags(flag *out, model_args *a) {
    out[0] = (flag){"work", F_STR, &a->work, "a `duet run` work directory: its model (WORK/run.json)"};
    out[1] = (flag){"model", F_STR, &a->model, "a model file instead of --work"};
    out[2] = (flag){"textmodel", F_STR, &a->textmodel, "the text model; unset: the one the model records"};
    out[3] = (flag){"weights", F_STR, &a->weights, "CNN weights; unset: the default place of the CNN the model records"};
    out[4] = (flag){"precision", F_STR, &a->precision, PRECISION_HELP};
    return 5;
}

/* -------------------------------------------------------------- localize */

int cmd_localize(int argc, char **argv) {
    model_args ma = {0};
    const char *draw = NULL, *score = "contrast";
    size_t top = 5, max_boxes = duet_proposal_default_params().max_boxes;
    int json = 0;
    flag flags[16] = {{0}};
    size_t nf = model_arg_flags(flags, &ma);
    const flag rest[] = {
        {"k", F_SIZE, &top, "boxes listed per phrase"},
        {"max", F_SIZE, &max_boxes, "proposals per image"},
        {"score", F_STR, &score, "contrast (box minus the rest of the image) or cosine (the box alone)"},
        {"json", F_BOOL, &json, "one JSON object per phrase"},
        {"draw", F_STR, &draw, "write the image as PNG with each phrase's best box (red) and the next k-1 (yellow)"}};
    memcpy(flags + nf, rest, sizeof rest);   /* the rest of flags[] stays zero: the terminator */
    const char *pos[256];
    int n_pos = 0;
    int r = parse_flags("localize", "duet localize (--work DIR | --model M) [flags] IMAGE PHRASE...\n"
                        "The boxes of IMAGE that best match each phrase: rank score x0 y0 x1 y1 (pixels, half-open).",
                        argc, argv, flags, pos, 256, &n_pos);
    if (r) return r < 0 ? 0 : r;
    if (n_pos < 2) return usage_error("localize", "give an image and at least one phrase");
    if (top < 1) return usage_error("localize", "-k must be at least 1");
    duet_region_score sc = DUET_SCORE_CONTRAST;
    if (parse_score("localize", score, &sc)) return EXIT_USAGE;
    char mpath[4096];
    if ((r = model_of("localize", ma.work, ma.model, mpath, sizeof mpath))) return r;
    search_ctx c = {0};
    duet_image im = {0};
    duet_regions reg = {0};
    duet_proposal_params pp = duet_proposal_default_params();
    pp.max_boxes = max_boxes;
    double t0 = now_seconds();
    int rc = get_precision("localize", ma.precision, &c.prec);
    if (!rc) rc = load_encoders("localize", &c, mpath, ma.textmodel, LOAD_CNN_REGIONS, ma.weights);
    if (!rc) rc = load_regions("localize", &c, pos[0], &pp, &im, &reg);
    double t_regions = now_seconds() - t0;
    duet_hit *hits = rc ? NULL : malloc(sizeof(duet_hit) * top);
    static const uint8_t red[3] = {255, 30, 30}, yellow[3] = {255, 220, 0};
    for (int p = 1; p < n_pos && !rc; p++) {
        duet_error e = {0};
        size_t nh = 0;
        double t1 = now_seconds();
        if (duet_regions_localize(&c.enc, &reg, pos[p], sc, top, hits, &nh, &e)) { rc = fail("localize", &e); break; }
        double ms = 1000 * (now_seconds() - t1);
        if (json) {
            json_t *arr = json_array();
            for (size_t k = 0; k < nh; k++) {
                const duet_box *b = &reg.boxes[hits[k].index];
                json_array_append_new(arr, json_pack("{s:I, s:f, s:[f,f,f,f]}", "rank", (json_int_t)(k + 1), "score",
                                                     hits[k].score, "box", b->x0, b->y0, b->x1, b->y1));
            }
            json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:f, s:f, s:o}", "image", pos[0], "phrase", pos[p],
                                  "width", (json_int_t)im.width, "height", (json_int_t)im.height, "proposals",
                                  (json_int_t)reg.n, "regions_ms", 1000 * t_regions, "phrase_ms", ms, "boxes", arr);
            char *txt = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
            if (txt) printf("%s\n", txt);
            free(txt);
            json_decref(o);
        } else {
            printf("# %s\n", pos[p]);
            for (size_t k = 0; k < nh; k++) {
                const duet_box *b = &reg.boxes[hits[k].index];
                printf("%zu %.4f %.1f %.1f %.1f %.1f\n", k + 1, hits[k].score, b->x0, b->y0, b->x1, b->y1);
            }
        }
        if (draw) {
            for (size_t k = nh; k-- > 1;) duet_image_draw_box(&im, &reg.boxes[hits[k].index], yellow, 1);
            if (nh) duet_image_draw_box(&im, &reg.boxes[hits[0].index], red, 3);
        }
    }
    if (!rc) fprintf(stderr, "localize: %s: %zu proposals embedded in %.0f ms\n", pos[0], reg.n, 1000 * t_regions);
    if (!rc && draw) {
        duet_error e = {0};
        if (duet_image_write_png(&im, draw, &e)) rc = fail("localize", &e);
    }
    free(hits);
    duet_regions_free(&reg);
    duet_image_free(&im);
    ctx_free(&c);
    return rc;
}

/* ---------------------------------------------------------- eval-phrases */

/* The baselines' boxes among r's proposals: the largest, and the one whose
 * centre is nearest the image centre (larger first on ties). */
static size_t largest_box(const duet_regions *r) {
    size_t best = 0;
    for (size_t i = 1; i < r->n; i++) {
        const duet_box *a = &r->boxes[i], *b = &r->boxes[best];
        if ((a->x1 - a->x0) * (a->y1 - a->y0) > (b->x1 - b->x0) * (b->y1 - b->y0)) best = i;
    }
    return best;
}

static size_t centre_box(const duet_regions *r) {
    size_t best = 0;
    double bd = 1e30, ba = 0, cx = r->width / 2.0, cy = r->height / 2.0;
    for (size_t i = 0; i < r->n; i++) {
        const duet_box *a = &r->boxes[i];
        double dx = (a->x0 + a->x1) / 2 - cx, dy = (a->y0 + a->y1) / 2 - cy, d = dx * dx + dy * dy;
        double area = (double)(a->x1 - a->x0) * (a->y1 - a->y0);
        if (d < bd - 1e-9 || (d < bd + 1e-9 && area > ba)) { bd = d; ba = area; best = i; }
    }
    return best;
}

int cmd_eval_phrases(int argc, char **argv) {
    model_args ma = {0};
    const char *entities = NULL, *images = NULL, *score = "contrast";
    size_t max_boxes = duet_proposal_default_params().max_boxes;
    double iou = 0.5;
    int json = 0;
    flag flags[16] = {{0}};
    size_t nf = model_arg_flags(flags, &ma);
    const flag rest[] = {
        {"entities", F_STR, &entities, "Flickr30K Entities directory (Sentences/, Annotations/)"},
        {"images", F_STR, &images, "directory of the images"},
        {"max", F_SIZE, &max_boxes, "proposals per image"},
        {"iou", F_FLOAT, &iou, "a phrase is localized when its best box overlaps the truth by this IoU"},
        {"score", F_STR, &score, "contrast (box minus the rest of the image) or cosine (the box alone)"},
        {"json", F_BOOL, &json, "the result as JSON"}};
    memcpy(flags + nf, rest, sizeof rest);
    const char *pos[1];
    int n_pos = 0;
    int r = parse_flags("eval-phrases", "duet eval-phrases (--work DIR | --model M) --entities DIR --images DIR\n"
                        "Phrase localization accuracy (share of phrases whose best box has IoU >= --iou with the\n"
                        "truth) beside the largest-box and centre-box baselines and the proposals' upper bound.",
                        argc, argv, flags, pos, 0, &n_pos);
    if (r) return r < 0 ? 0 : r;
    if ((r = need("eval-phrases", entities, "entities")) || (r = need("eval-phrases", images, "images"))) return r;
    if (!(iou > 0 && iou <= 1)) return usage_error("eval-phrases", "--iou must be in (0, 1]");
    duet_region_score sc = DUET_SCORE_CONTRAST;
    if (parse_score("eval-phrases", score, &sc)) return EXIT_USAGE;
    char mpath[4096];
    if ((r = model_of("eval-phrases", ma.work, ma.model, mpath, sizeof mpath))) return r;
    duet_error e = {0};
    duet_entities *ent = NULL;
    if (duet_entities_load(entities, &ent, &e)) return fail("eval-phrases", &e);
    search_ctx c = {0};
    int rc = get_precision("eval-phrases", ma.precision, &c.prec);
    if (!rc) rc = load_encoders("eval-phrases", &c, mpath, ma.textmodel, LOAD_CNN_REGIONS, ma.weights);
    duet_proposal_params pp = duet_proposal_default_params();
    pp.max_boxes = max_boxes;
    size_t n_ph = 0, hit_model = 0, hit_large = 0, hit_centre = 0, hit_upper = 0, unknown = 0, n_img = 0;
    /* proposal recall: ground-truth boxes covered by the first N proposals */
    static const size_t at[4] = {10, 30, 100, 300};
    size_t n_gt = 0, cov[5] = {0};
    double t0 = now_seconds(), t_reg = 0;
    for (size_t i = 0; i < ent->n_images && !rc; i++) {
        const duet_entities_image *ei = &ent->images[i];
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", images, ei->name);
        duet_image im = {0};
        duet_regions reg = {0};
        double t1 = now_seconds();
        if ((rc = load_regions("eval-phrases", &c, path, &pp, &im, &reg))) break;
        t_reg += now_seconds() - t1;
        n_img++;
        size_t lb = largest_box(&reg), cb = centre_box(&reg);
        for (size_t b = 0; b < ei->n_boxes; b++) {
            n_gt++;
            for (int q = 0; q < 4; q++) cov[q] += duet_boxes_covered(&ei->boxes[b].box, 1, reg.boxes, at[q] < reg.n ? at[q] : reg.n, (float)iou);
            cov[4] += duet_boxes_covered(&ei->boxes[b].box, 1, reg.boxes, reg.n, (float)iou);
        }
        for (size_t p = 0; p < ei->n_phrases; p++) {
            const duet_phrase *ph = &ei->phrases[p];
            if (!ph->has_box) continue;
            n_ph++;
            hit_large += duet_box_iou(&reg.boxes[lb], &ph->box) >= iou;
            hit_centre += duet_box_iou(&reg.boxes[cb], &ph->box) >= iou;
            hit_upper += duet_boxes_covered(&ph->box, 1, reg.boxes, reg.n, (float)iou);
            duet_hit h;
            size_t nh = 0;
            duet_error pe = {0};
            duet_status st = duet_regions_localize(&c.enc, &reg, ph->text, sc, 1, &h, &nh, &pe);
            if (st == DUET_ERR_INVALID_ARG) { unknown++; continue; }     /* no known word: a miss */
            if (st) { rc = fail("eval-phrases", &pe); break; }
            hit_model += nh && duet_box_iou(&reg.boxes[h.index], &ph->box) >= iou;
        }
        duet_regions_free(&reg);
        duet_image_free(&im);
    }
    if (!rc && n_ph == 0) { fprintf(stderr, "duet eval-phrases: %s: no phrase has a box\n", entities); rc = 1; }
    if (!rc) {
        double s = now_seconds() - t0, d = (double)n_ph / 100.0;
        if (json) {
            json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:f, s:I, s:{s:f, s:f, s:f, s:f}, s:f, s:f}", "entities",
                                  entities, "model", mpath, "images", (json_int_t)n_img, "phrases", (json_int_t)n_ph,
                                  "proposals", (json_int_t)max_boxes, "iou", iou, "unknown_phrases", (json_int_t)unknown,
                                  "accuracy", "model", hit_model / d, "largest_box", hit_large / d, "centre_box",
                                  hit_centre / d, "upper_bound", hit_upper / d, "seconds", s, "ms_per_image",
                                  n_img ? 1000 * t_reg / (double)n_img : 0.0);
            json_t *pr = json_object();
            json_object_set_new(pr, "boxes", json_integer((json_int_t)n_gt));
            for (int q = 0; q < 4; q++) {
                char key[16];
                snprintf(key, sizeof key, "at_%zu", at[q]);
                json_object_set_new(pr, key, json_real(n_gt ? 100.0 * cov[q] / n_gt : 0));
            }
            json_object_set_new(pr, "all", json_real(n_gt ? 100.0 * cov[4] / n_gt : 0));
            json_object_set_new(o, "proposal_recall", pr);
            char *txt = json_dumps(o, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
            if (txt) printf("%s\n", txt);
            free(txt);
            json_decref(o);
        } else {
            printf("proposal recall (ground-truth boxes covered at IoU >= %.2f, of %zu):", iou, n_gt);
            for (int q = 0; q < 4; q++)
                if (at[q] < max_boxes) printf(" %zu: %.1f%%,", at[q], n_gt ? 100.0 * cov[q] / n_gt : 0);
            printf(" all %zu: %.1f%%\n", max_boxes, n_gt ? 100.0 * cov[4] / n_gt : 0);
            printf("%s: %zu images, %zu phrases with a box, %zu proposals, IoU >= %.2f\n", entities, n_img, n_ph,
                   max_boxes, iou);
            printf("%-36s %8s\n", "method", "accuracy");
            printf("%-36s %7.1f%%\n", "duet (the model's best box)", hit_model / d);
            printf("%-36s %7.1f%%\n", "largest proposal", hit_large / d);
            printf("%-36s %7.1f%%\n", "proposal nearest the image centre", hit_centre / d);
            printf("%-36s %7.1f%%\n", "upper bound (any proposal)", hit_upper / d);
            if (unknown) printf("%zu phrases had no known word (counted as misses)\n", unknown);
            fprintf(stderr, "eval-phrases: %.1f s, %.0f ms per image (proposals, CNN, regions)\n", s,
                    n_img ? 1000 * t_reg / (double)n_img : 0.0);
        }
    }
    duet_entities_free(ent);
    ctx_free(&c);
    return rc;
}

/* ----------------------------------------------------------- phrase-data */

static const char *split_name(int s) {
    return s == DUET_SPLIT_TRAIN ? "train" : s == DUET_SPLIT_VAL ? "val" : s == DUET_SPLIT_TEST ? "test" : "none";
}

/* Writes the dataset as "image<TAB>caption<TAB>split" lines, atomically. */
static duet_status write_tsv(const duet_dataset *d, const char *path, duet_error *e) {
    duet_atomic_file af;
    duet_status st = duet_atomic_open(&af, path, e);
    for (size_t i = 0; i < d->n_captions && !st; i++) {
        size_t im = d->caption_image[i];
        char line[8192];
        int n = snprintf(line, sizeof line, "%s\t%s\t%s\n", d->image_names[im], d->captions[i],
                         split_name(d->image_split[im]));
        if (n < 0 || (size_t)n >= sizeof line) st = duet_fail(e, DUET_ERR_INVALID_ARG, "%s: caption %zu too long", path, i);
        else st = duet_atomic_write(&af, line, (size_t)n, e);
    }
    if (!st) return duet_atomic_commit(&af, e);
    duet_atomic_abort(&af);
    return st;
}

int cmd_phrase_data(int argc, char **argv) {
    model_args ma = {0};
    const char *entities = NULL, *images = NULL, *out = NULL;
    int no_geometry = 0;
    flag flags[16] = {{0}};
    size_t nf = model_arg_flags(flags, &ma);
    const flag rest[] = {
        {"entities", F_STR, &entities, "Flickr30K Entities directory (Sentences/, Annotations/, optional train/val/test.txt)"},
        {"images", F_STR, &images, "directory of the images"},
        {"no-geometry", F_BOOL, &no_geometry, "region features without the 5 box-geometry values"},
        {"out", F_STR, &out, "output directory (-o): regions.tsv, img.npy, txt.npy"}};
    memcpy(flags + nf, rest, sizeof rest);
    const char *pos[1];
    int n_pos = 0;
    int r = parse_flags("phrase-data", "duet phrase-data (--work DIR | --model M) --entities DIR --images DIR -o OUT\n"
                        "Region/phrase training data: one row per (image, entity with a box) -- its RoI feature --\n"
                        "and its phrases as captions; then train with the `duet train` line it prints.",
                        argc, argv, flags, pos, 0, &n_pos);
    if (r) return r < 0 ? 0 : r;
    if ((r = need("phrase-data", entities, "entities")) || (r = need("phrase-data", images, "images")) ||
        (r = need("phrase-data", out, "out")))
        return r;
    char mpath[4096];
    if ((r = model_of("phrase-data", ma.work, ma.model, mpath, sizeof mpath))) return r;
    duet_error e = {0};
    duet_entities *ent = NULL;
    if (duet_entities_load(entities, &ent, &e)) return fail("phrase-data", &e);
    search_ctx c = {0};
    duet_dataset *d = NULL;
    duet_mat img = {0}, txt = {0};
    double t0 = now_seconds();
    int rc = get_precision("phrase-data", ma.precision, &c.prec);
    if (!rc) rc = load_encoders("phrase-data", &c, mpath, ma.textmodel, LOAD_CNN_REGIONS, ma.weights);
    if (!rc && duet_phrase_data(c.cnn, ent, entities, images, !no_geometry, &d, &img, &e)) rc = fail("phrase-data", &e);
    if (!rc) {
        size_t dt = duet_textmodel_dim(c.tm);
        txt = (duet_mat){duet_alloc_array(d->n_captions, dt * sizeof(float)), d->n_captions, dt};
        if (!txt.data) { e = (duet_error){0}; duet_fail(&e, DUET_ERR_NOMEM, "out of memory"); rc = fail("phrase-data", &e); }
    }
    if (!rc && duet_textmodel_encode(c.tm, (const char *const *)d->captions, d->n_captions, &txt, NULL, NULL, &e))
        rc = fail("phrase-data", &e);
    char p_tsv[4096], p_img[4096], p_txt[4096];
    snprintf(p_tsv, sizeof p_tsv, "%s/regions.tsv", out);
    snprintf(p_img, sizeof p_img, "%s/img.npy", out);
    snprintf(p_txt, sizeof p_txt, "%s/txt.npy", out);
    if (!rc && mkdir(out, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "duet phrase-data: %s: cannot create: %s\n", out, strerror(errno));
        rc = 1;
    }
    if (!rc && (write_tsv(d, p_tsv, &e) || duet_npy_write(p_img, &img, &e) || duet_npy_write(p_txt, &txt, &e)))
        rc = fail("phrase-data", &e);
    if (!rc) {
        size_t n_split[3] = {0};
        for (size_t i = 0; i < d->n_images; i++)
            if (d->image_split[i] < 3) n_split[d->image_split[i]]++;
        const char *tm_path = ma.textmodel ? ma.textmodel : duet_model_info_of(c.model)->text_model;
        const char *im_name = duet_model_info_of(c.model)->image_model;
        fprintf(stderr, "phrase-data: %zu regions (train %zu, val %zu, test %zu), %zu phrases, %zu-D region "
                "features, in %.1f s\n", d->n_images, n_split[0], n_split[1], n_split[2], d->n_captions, img.cols,
                now_seconds() - t0);
        printf("duet train --dataset tsv:%s --image-features %s --text-features %s --text-model %s "
               "--image-model '%s' -o phrase.duet\n", p_tsv, p_img, p_txt, tm_path ? tm_path : "TEXTMODEL",
               im_name ? im_name : "resnet50 crops=1");
    }
    free(img.data);
    free(txt.data);
    duet_dataset_free(d);
    duet_entities_free(ent);
    ctx_free(&c);
    return rc;
}
