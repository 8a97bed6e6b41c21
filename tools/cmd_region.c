/* cmd_region.c -- the region subcommands (issue 7, phrase localization):
 *   duet proposals [--max N] [--json] [--draw OUT.png] IMAGE...
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include <jansson.h>
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
