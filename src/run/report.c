/* report.c -- what a run leaves behind for people: the JSON summary
 * (WORK/run.json, `duet run --json`) and WORK/report.html (self-contained:
 * inline CSS and SVG; example images referenced by absolute path). */
#define _XOPEN_SOURCE 700
#include "run/run.h"
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *state_name(duet_stage_state s) {
    switch (s) {
    case DUET_STAGE_CACHED: return "cached";
    case DUET_STAGE_BUILT: return "built";
    case DUET_STAGE_SKIPPED: return "skipped";
    default: return "pending";
    }
}

/* Adds the fields of x to o and releases x. */
static void merge(json_t *o, json_t *x) {
    json_object_update(o, x);
    json_decref(x);
}

static json_t *settings_json(const duet_run_config *c) {
    const duet_params *p = &c->train;
    const duet_textmodel_params *t = &c->text;
    json_t *o = json_pack("{s:s, s:i, s:s, s:I, s:I, s:b}", "cnn", c->cnn, "crops", c->crops, "encoder",
                          duet_encoder_name(t->encoder), "components", (json_int_t)t->components, "pca",
                          (json_int_t)t->pca_dim, "ica", t->ica);
    merge(o, json_pack("{s:b, s:I, s:I, s:f, s:f, s:I, s:f, s:f, s:f, s:b}", "linear", p->linear,
                                     "hidden", (json_int_t)p->hidden, "embed_dim", (json_int_t)p->embed_dim,
                                     "dropout", (double)p->dropout, "margin", (double)p->margin, "top_k",
                                     (json_int_t)p->top_k, "w_i2t", (double)p->w_i2t, "w_t2i", (double)p->w_t2i,
                                     "w_txt_struct", (double)p->w_txt_struct, "one_way", p->one_way));
    merge(o, json_pack("{s:I, s:I, s:s, s:f, s:f, s:f, s:i, s:i, s:I, s:i}", "batch_images",
                                    (json_int_t)p->batch_images, "sents_per_image", (json_int_t)p->sents_per_image,
                                    "optimizer", p->optimizer == DUET_OPT_SGD ? "sgd" : "adam", "lr", (double)p->lr,
                                    "lr_decay", (double)p->lr_decay, "weight_decay", (double)p->weight_decay,
                                    "epochs", p->epochs, "patience", p->patience, "seed", (json_int_t)p->seed,
                                    "threads", p->threads));
    duet_precision pr = DUET_PRECISION_F32;
    duet_precision_resolve(p->precision, &pr, NULL);
    merge(o, json_pack("{s:s, s:s}", "precision", duet_precision_name(pr), "isa", duet_cpu_isa()));
    merge(o, json_pack("{s:s, s:i, s:s, s:I}", "pca_method", duet_pca_method_name(t->pca_method), "pca_iters",
                       t->pca_iters, "pca_start", duet_pca_start_name(t->pca_start), "ensemble",
                       (json_int_t)(c->ensemble > 1 ? c->ensemble : 1)));
    return o;
}

duet_status duet_run_json(const duet_run_config *c, const duet_run_result *r, char **out, duet_error *err) {
    *out = NULL;
    json_t *stages = json_array(), *eps = json_array(), *ex = json_array();
    for (int s = 0; s < DUET_STAGE_COUNT; s++) {
        const duet_run_stage *st = &r->stage[s];
        json_array_append_new(stages, json_pack("{s:s, s:s, s:s?, s:s, s:f, s:f}", "name", duet_stage_name(s),
                                                "key", st->key, "dir", st->dir, "state", state_name(st->state),
                                                "seconds", st->seconds, "build_seconds", st->build_seconds));
    }
    for (size_t i = 0; i < r->n_logs; i++)
        json_array_append_new(eps, json_pack("{s:i, s:f, s:f, s:f}", "epoch", r->logs[i].epoch, "loss",
                                             r->logs[i].loss, "val_rsum", r->logs[i].val_rsum, "seconds",
                                             r->logs[i].seconds));
    for (size_t i = 0; i < r->n_examples; i++) {
        json_t *top = json_array();
        for (size_t k = 0; k < r->examples[i].n_top; k++) json_array_append_new(top, json_string(r->examples[i].top[k]));
        json_array_append_new(ex, json_pack("{s:s?, s:s?, s:i, s:o}", "query", r->examples[i].query, "truth",
                                            r->examples[i].truth, "truth_rank", r->examples[i].truth_rank, "top", top));
    }
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:o, s:o}", "dataset", c->dataset, "images", c->images, "work",
                          c->work, "limit", (json_int_t)c->limit, "settings", settings_json(c), "stages", stages);
    json_object_set_new(o, "counts", json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "train", (json_int_t)r->n_split[0],
                                               "val", (json_int_t)r->n_split[1], "test", (json_int_t)r->n_split[2],
                                               "captions", (json_int_t)r->n_captions, "image_dim",
                                               (json_int_t)r->image_dim, "text_dim", (json_int_t)r->text_dim));
    json_object_set_new(o, "test", duet_eval_to_json(&r->test));
    json_object_set_new(o, "val", duet_eval_to_json(&r->val));
    json_object_set_new(o, "best_epoch", json_integer(r->best_epoch));
    json_object_set_new(o, "epochs_run", json_integer(r->epochs_run));
    json_object_set_new(o, "epochs", eps);
    json_object_set_new(o, "examples", ex);
    json_object_set_new(o, "published", json_pack("{s:o}", "klein2015_mean_vec_cca", duet_eval_to_json(&duet_klein2015_flickr8k)));
    json_object_set_new(o, "model", r->model_path ? json_string(r->model_path) : json_null());
    json_object_set_new(o, "model_description", r->model_description ? json_string(r->model_description) : json_null());
    json_t *mem = json_array();
    for (size_t k = 0; k < r->n_members; k++)
        json_array_append_new(mem, json_pack("{s:I, s:i, s:i, s:o, s:o}", "seed", (json_int_t)r->members[k].seed,
                                             "best_epoch", r->members[k].best_epoch, "epochs_run",
                                             r->members[k].epochs_run, "val", duet_eval_to_json(&r->members[k].val),
                                             "test", duet_eval_to_json(&r->members[k].test)));
    json_object_set_new(o, "members", mem);
    json_object_set_new(o, "text_model", r->text_model_path ? json_string(r->text_model_path) : json_null());
    json_object_set_new(o, "index", r->index_path ? json_string(r->index_path) : json_null());
    json_object_set_new(o, "seconds", json_real(r->seconds));
    json_object_set_new(o, "peak_rss_kb", json_integer(r->peak_rss_kb));
    json_object_set_new(o, "build_peak_rss_kb", json_integer(r->build_peak_rss_kb));
    char *txt = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(o);
    if (!txt) return duet_fail(err, DUET_ERR_NOMEM, "run: out of memory (summary JSON)");
    *out = txt;
    return DUET_OK;
}

/* ------------------------------------------------------------ HTML */

/* A line chart of y[0..n) against x = 1..n as inline SVG; mark (1-based,
 * 0: none) gets a dot. */
static void svg_chart(duet_sbuf *b, const char *title, const double *y, size_t n, int mark) {
    const double W = 420, H = 220, L = 50, R = 12, T = 24, B = 32;
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (isfinite(y[i])) { lo = fmin(lo, y[i]); hi = fmax(hi, y[i]); }
    duet_sb_printf(b, "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' viewBox='0 0 %.0f %.0f'>"
                   "<text x='%.0f' y='16' class='t'>", W, H, W, H, L);
    duet_sb_html(b, title);
    duet_sb_printf(b, "</text>");
    if (n == 0 || !isfinite(lo)) { duet_sb_printf(b, "<text x='%.0f' y='%.0f'>no data</text></svg>", L, H / 2); return; }
    if (hi - lo < 1e-9) { hi += 0.5; lo -= 0.5; }
    double pad = (hi - lo) * 0.05;
    lo -= pad;
    hi += pad;
    double xs = n > 1 ? (W - L - R) / (double)(n - 1) : 0, ys = (H - T - B) / (hi - lo);
#define PX(i) (L + xs * (double)(i))
#define PY(v) (H - B - ((v) - lo) * ys)
    duet_sb_printf(b, "<line x1='%.0f' y1='%.0f' x2='%.0f' y2='%.0f' class='ax'/>", L, H - B, W - R, H - B);
    duet_sb_printf(b, "<line x1='%.0f' y1='%.0f' x2='%.0f' y2='%.0f' class='ax'/>", L, T, L, H - B);
    for (int k = 0; k <= 4; k++) {
        double v = lo + (hi - lo) * k / 4.0;
        duet_sb_printf(b, "<text x='%.0f' y='%.1f' class='yl'>%.3g</text>", L - 4, PY(v) + 4, v);
    }
    size_t step = n > 10 ? (n + 9) / 10 : 1;
    for (size_t i = 0; i < n; i += step)
        duet_sb_printf(b, "<text x='%.1f' y='%.0f' class='xl'>%zu</text>", PX(i), H - B + 16, i + 1);
    duet_sb_printf(b, "<text x='%.0f' y='%.0f' class='xl'>epoch</text><polyline class='ln' points='", (W + L) / 2, H - 2);
    for (size_t i = 0; i < n; i++)
        if (isfinite(y[i])) duet_sb_printf(b, "%.1f,%.1f ", PX(i), PY(y[i]));
    duet_sb_printf(b, "'/>");
    for (size_t i = 0; i < n; i++)
        if (isfinite(y[i])) duet_sb_printf(b, "<circle cx='%.1f' cy='%.1f' r='%d' class='%s'/>", PX(i), PY(y[i]),
                                           (int)i + 1 == mark ? 5 : 2, (int)i + 1 == mark ? "best" : "pt");
    duet_sb_printf(b, "</svg>\n");
#undef PX
#undef PY
}

static void recall_row(duet_sbuf *b, const char *name, const duet_eval_result *e, int ranks) {
    duet_sb_printf(b, "<tr><td>");
    duet_sb_html(b, name);
    duet_sb_printf(b, "</td><td>%.1f</td><td>%.1f</td><td>%.1f</td>", e->i2t.r1, e->i2t.r5, e->i2t.r10);
    if (ranks) duet_sb_printf(b, "<td>%.0f</td>", e->i2t.medr); else duet_sb_printf(b, "<td>&ndash;</td>");
    duet_sb_printf(b, "<td>%.1f</td><td>%.1f</td><td>%.1f</td>", e->t2i.r1, e->t2i.r5, e->t2i.r10);
    if (ranks) duet_sb_printf(b, "<td>%.0f</td>", e->t2i.medr); else duet_sb_printf(b, "<td>&ndash;</td>");
    duet_sb_printf(b, "<td><b>%.1f</b></td></tr>\n", e->rsum);
}

/* file:// URL of an image (percent-encoding what a URL path may not hold). */
static void image_url(duet_sbuf *b, const char *root, const char *name) {
    char abs[PATH_MAX], full[2 * PATH_MAX];
    if (!realpath(root, abs)) snprintf(abs, sizeof abs, "%s", root);
    snprintf(full, sizeof full, "%s/%s", abs, name);
    duet_sb_printf(b, "file://");
    for (const unsigned char *p = (const unsigned char *)full; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("/._-~", *p))
            duet_sb_printf(b, "%c", *p);
        else
            duet_sb_printf(b, "%%%02X", *p);
    }
}

duet_status duet_run_report(const duet_run_config *c, const duet_run_result *r, const char *path, duet_error *err) {
    duet_sbuf b = {0};
    char desc[160];
    duet_run_describe(c, desc, sizeof desc);
    duet_sb_printf(&b, "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>duet run: ");
    duet_sb_html(&b, c->dataset);
    duet_sb_printf(&b, "</title>\n<style>\n"
                   "body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}\n"
                   "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;"
                   "text-align:right}td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}\n"
                   "h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}code{background:#f3f3f3;padding:1px 4px}\n"
                   ".t{font-weight:bold}.ax{stroke:#555}.ln{fill:none;stroke:#1f77b4;stroke-width:2}"
                   ".pt{fill:#1f77b4}.best{fill:#d62728}.yl{text-anchor:end;font-size:11px}"
                   ".xl{text-anchor:middle;font-size:11px}svg{margin-right:1em;border:1px solid #eee}\n"
                   ".ex td{vertical-align:top;text-align:left}.ex td:first-child{width:30%%}.ex td:last-child{white-space:nowrap}.ex img{width:112px;height:112px;object-fit:cover;"
                   "border:3px solid transparent}.ex img.hit{border-color:#2ca02c}.small{color:#666;font-size:12px}\n"
                   "</style></head><body>\n<h1>duet: ");
    duet_sb_html(&b, c->dataset);
    duet_precision pr = DUET_PRECISION_F32;
    duet_precision_resolve(c->train.precision, &pr, NULL);
    duet_sb_printf(&b, "</h1>\n<p>%s features (%d crop%s), text encoder %s; %s. Train / val / test: %zu / %zu / %zu "
                   "images, %zu captions%s. Computed in %s on %s (oneDNN).</p>\n", c->cnn, c->crops,
                   c->crops == 1 ? "" : "s", duet_encoder_name(c->text.encoder), desc, r->n_split[0], r->n_split[1],
                   r->n_split[2], r->n_captions, c->limit ? " (a subset: --limit)" : "", duet_precision_name(pr),
                   duet_cpu_isa());

    duet_sb_printf(&b, "<h2>Test results</h2>\n<table><tr><th rowspan=2>method</th><th colspan=4>image &rarr; text"
                   "</th><th colspan=4>text &rarr; image</th><th rowspan=2>R-sum</th></tr>\n<tr><th>R@1</th><th>R@5"
                   "</th><th>R@10</th><th>medr</th><th>R@1</th><th>R@5</th><th>R@10</th><th>medr</th></tr>\n");
    char name[256];
    /* an ensemble: its members side by side with it */
    for (size_t k = 0; k < r->n_members; k++) {
        snprintf(name, sizeof name, "member %zu: seed %llu (best epoch %d of %d)", k + 1,
                 (unsigned long long)r->members[k].seed, r->members[k].best_epoch, r->members[k].epochs_run);
        recall_row(&b, name, &r->members[k].test, 1);
    }
    if (r->n_members) snprintf(name, sizeof name, "duet ensemble of %zu (%s, %s)", r->n_members, c->cnn, desc);
    else snprintf(name, sizeof name, "duet (%s, %s)", c->cnn, desc);
    recall_row(&b, name, &r->test, 1);
    recall_row(&b, "Klein et al. 2015, mean vector + CCA (VGG), Flickr8K", &duet_klein2015_flickr8k, 0);
    duet_sb_printf(&b, "</table>\n<p class='small'>%zu test images, %zu test captions, %zu fold%s. Validation R-sum of "
                   "the %s: %.1f.", r->test.n_images, r->test.n_captions, r->test.n_folds,
                   r->test.n_folds == 1 ? "" : "s", r->n_members ? "ensemble" : "selected model", r->val.rsum);
    if (r->n_members) {
        duet_sb_printf(&b, " An ensemble's embedding is its members' unit embeddings concatenated and scaled by "
                       "1/&radic;%zu: one inner product is the mean of the members' cosine similarities, and the "
                       "index and search page serve it as one model. Members' validation R-sum:", r->n_members);
        for (size_t k = 0; k < r->n_members; k++)
            duet_sb_printf(&b, "%s %.1f", k ? "," : "", r->members[k].val.rsum);
        duet_sb_printf(&b, ". Training curves below: member 1.");
    } else {
        duet_sb_printf(&b, " Selected epoch %d of %d.", r->best_epoch, r->epochs_run);
    }
    duet_sb_printf(&b, "</p>\n");
    if (r->model_description) {
        duet_sb_printf(&b, "<p>Model: ");
        duet_sb_html(&b, r->model_description);
        duet_sb_printf(&b, "</p>\n");
    }

    duet_sb_printf(&b, "<h2>Training</h2>\n");
    double *y = calloc(r->n_logs ? r->n_logs : 1, sizeof(double));
    if (y) {
        for (size_t i = 0; i < r->n_logs; i++) y[i] = r->logs[i].loss;
        svg_chart(&b, "training loss", y, r->n_logs, 0);
        for (size_t i = 0; i < r->n_logs; i++) y[i] = r->logs[i].val_rsum >= 0 ? r->logs[i].val_rsum : NAN;
        svg_chart(&b, "validation R-sum (red: selected epoch)", y, r->n_logs, r->best_epoch);
        free(y);
    } else {
        b.oom = 1;
    }

    duet_sb_printf(&b, "<h2>Stages</h2>\n<table><tr><th>stage</th><th>state</th><th>this run (s)</th><th>when built "
                   "(s)</th><th>directory</th></tr>\n");
    double build_total = 0;
    for (int s = 0; s < DUET_STAGE_COUNT; s++) {
        const duet_run_stage *st = &r->stage[s];
        build_total += st->build_seconds;
        duet_sb_printf(&b, "<tr><td>%s</td><td>%s</td><td>%.1f</td><td>%.1f</td><td><code>", duet_stage_name(s),
                       state_name(st->state), st->seconds, st->build_seconds);
        duet_sb_html(&b, st->dir ? st->dir : "");
        duet_sb_printf(&b, "</code></td></tr>\n");
    }
    duet_sb_printf(&b, "<tr><td>total</td><td></td><td>%.1f</td><td>%.1f</td><td></td></tr></table>\n"
                   "<p>Peak memory (resident set): %.0f MB in this run; %.0f MB in the run that built the "
                   "stages.</p>\n", r->seconds, build_total, (double)r->peak_rss_kb / 1024.0,
                   (double)r->build_peak_rss_kb / 1024.0);

    duet_sb_printf(&b, "<h2>Example test queries</h2>\n<p class='small'>Each caption ranks the %zu test images; its "
                   "own image is framed in green. Images are linked from <code>", r->test.n_images);
    duet_sb_html(&b, c->images);
    duet_sb_printf(&b, "</code> (file:// paths: the report opens from this disk).</p>\n<table class='ex'>\n");
    for (size_t i = 0; i < r->n_examples; i++) {
        const duet_run_example *x = &r->examples[i];
        duet_sb_printf(&b, "<tr><td>&ldquo;");
        duet_sb_html(&b, x->query);
        duet_sb_printf(&b, "&rdquo;<br><span class='small'>own image ranked %d</span></td><td>", x->truth_rank);
        for (size_t k = 0; k < x->n_top; k++) {
            duet_sb_printf(&b, "<img src='");
            image_url(&b, c->images, x->top[k]);
            duet_sb_printf(&b, "' title='");
            duet_sb_html(&b, x->top[k]);
            duet_sb_printf(&b, " (%.3f)'%s alt='", (double)x->score[k],
                           x->truth && strcmp(x->truth, x->top[k]) == 0 ? " class='hit'" : "");
            duet_sb_html(&b, x->top[k]);
            duet_sb_printf(&b, "'> ");
        }
        duet_sb_printf(&b, "</td></tr>\n");
    }
    duet_sb_printf(&b, "</table>\n<h2>Settings</h2>\n<table>");
    json_t *set = settings_json(c);
    const char *k;
    json_t *v;
    json_object_foreach(set, k, v) {
        char *vs = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(6));
        duet_sb_printf(&b, "<tr><td>%s</td><td>", k);
        duet_sb_html(&b, vs ? vs : "?");
        duet_sb_printf(&b, "</td></tr>");
        free(vs);
    }
    json_decref(set);
    duet_sb_printf(&b, "<tr><td>dataset</td><td>");
    duet_sb_html(&b, c->dataset);
    duet_sb_printf(&b, "</td></tr><tr><td>model</td><td>");
    duet_sb_html(&b, r->model_path ? r->model_path : "");
    duet_sb_printf(&b, "</td></tr><tr><td>index</td><td>");
    duet_sb_html(&b, r->index_path ? r->index_path : "(none)");
    duet_sb_printf(&b, "</td></tr></table>\n<p class='small'>duet %s</p></body></html>\n", DUET_VERSION_STRING);
    duet_status st = b.oom ? duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path)
                           : duet_write_text(path, b.s, b.n, err);
    duet_sb_free(&b);
    return st;
}
