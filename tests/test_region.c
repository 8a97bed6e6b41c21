/* test_region.c -- boxes, proposals, Flickr30K Entities parsing (issue 7). */
#include "check.h"
#include "data/data.h"
#include "duet.h"

#define FIXTURES "tests/fixtures/entities"

TEST(iou_values) {
    duet_box a = {0, 0, 10, 10}, b = {5, 0, 15, 10}, c = {20, 20, 30, 30}, e = {3, 3, 3, 8};
    CHECK_NEAR(duet_box_iou(&a, &a), 1.0, 1e-7);
    CHECK_NEAR(duet_box_iou(&a, &b), 50.0 / 150.0, 1e-7);   /* half overlap: 1/3 */
    CHECK_NEAR(duet_box_iou(&b, &a), duet_box_iou(&a, &b), 0);
    CHECK(duet_box_iou(&a, &c) == 0);
    CHECK(duet_box_iou(&a, &e) == 0);                       /* empty box */
    duet_box in = {2, 2, 7, 7};
    CHECK_NEAR(duet_box_iou(&a, &in), 25.0 / 100.0, 1e-7);
    duet_box gt[2] = {{0, 0, 10, 10}, {20, 20, 30, 30}};
    CHECK(duet_boxes_covered(gt, 2, &b, 1, 0.3f) == 1);
    CHECK(duet_boxes_covered(gt, 2, &b, 1, 0.5f) == 0);
    CHECK(duet_boxes_covered(gt, 2, gt, 2, 1.0f) == 2);
}

/* A grey 160x120 image with a red 40x30 block at (20, 30) and a blue 50x60
 * block at (100, 40): some proposal must fit each block closely. */
static void blocks(duet_image *im) {
    im->width = 160;
    im->height = 120;
    im->rgb = malloc(160 * 120 * 3);
    for (size_t y = 0; y < 120; y++)
        for (size_t x = 0; x < 160; x++) {
            uint8_t *p = im->rgb + (y * 160 + x) * 3;
            p[0] = p[1] = p[2] = (uint8_t)(120 + (x * 7 + y * 13) % 9);   /* faint texture */
            if (x >= 20 && x < 60 && y >= 30 && y < 60) { p[0] = 220; p[1] = 30; p[2] = 30; }
            if (x >= 100 && x < 150 && y >= 40 && y < 100) { p[0] = 20; p[1] = 40; p[2] = 210; }
        }
}

TEST(proposals_find_blocks_deterministically) {
    duet_image im = {0};
    blocks(&im);
    duet_error e = {0};
    duet_box *b = NULL, *b2 = NULL, *b3 = NULL;
    size_t n = 0, n2 = 0, n3 = 0;
    duet_proposal_params p = duet_proposal_default_params();
    CHECK(duet_proposals(&im, &p, &b, &n, &e) == DUET_OK);
    CHECK(n > 5 && n <= p.max_boxes);
    duet_box red = {20, 30, 60, 60}, blue = {100, 40, 150, 100};
    float best_r = 0, best_b = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK(b[i].x0 >= 0 && b[i].y0 >= 0 && b[i].x1 <= 160 && b[i].y1 <= 120 && b[i].x0 < b[i].x1 && b[i].y0 < b[i].y1);
        if (duet_box_iou(&b[i], &red) > best_r) best_r = duet_box_iou(&b[i], &red);
        if (duet_box_iou(&b[i], &blue) > best_b) best_b = duet_box_iou(&b[i], &blue);
    }
    CHECK_MSG(best_r > 0.9f && best_b > 0.9f, "best IoU red %.3f blue %.3f", best_r, best_b);
    /* no two kept boxes closer than dedup_iou */
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) CHECK(duet_box_iou(&b[i], &b[j]) <= p.dedup_iou);
    CHECK(duet_proposals(&im, &p, &b2, &n2, &e) == DUET_OK);
    CHECK(n2 == n && memcmp(b, b2, n * sizeof *b) == 0);
    p.seed = 2;
    CHECK(duet_proposals(&im, &p, &b3, &n3, &e) == DUET_OK);
    CHECK(n3 != n || memcmp(b, b3, n * sizeof *b) != 0);       /* the seed orders the boxes */
    p = duet_proposal_default_params();
    p.max_boxes = 3;
    free(b3);
    CHECK(duet_proposals(&im, &p, &b3, &n3, &e) == DUET_OK && n3 == 3);
    CHECK(memcmp(b, b3, 3 * sizeof *b) == 0);                    /* a prefix of the full list */
    free(b); free(b2); free(b3);
    duet_image_free(&im);
}

TEST(proposals_bad_input) {
    duet_error e = {0};
    duet_box *b = NULL;
    size_t n = 7;
    uint8_t px[4 * 4 * 3] = {0};
    duet_image tiny = {px, 4, 4};
    CHECK(duet_proposals(&tiny, NULL, &b, &n, &e) == DUET_ERR_INVALID_ARG && !b && n == 0);
    CHECK(strstr(e.msg, "4x4") != NULL);
    duet_image im = {0};
    blocks(&im);
    duet_proposal_params p = duet_proposal_default_params();
    p.k[1] = -3;
    CHECK(duet_proposals(&im, &p, &b, &n, &e) == DUET_ERR_INVALID_ARG);
    CHECK(strstr(e.msg, "k[1]") != NULL);
    p = duet_proposal_default_params();
    p.max_boxes = 0;
    CHECK(duet_proposals(&im, &p, &b, &n, &e) == DUET_ERR_INVALID_ARG);
    duet_image_free(&im);
}

TEST(entities_fixture) {
    duet_entities *d = NULL;
    duet_error e = {0};
    if (duet_entities_load(FIXTURES, &d, &e) != DUET_OK) { CHECK_MSG(0, "%s", e.msg); return; }
    CHECK(d->n_images == 16);
    const duet_entities_image *im = NULL;
    for (size_t i = 0; i < d->n_images; i++)
        if (strcmp(d->images[i].name, "2511019188_ca71775f2d.jpg") == 0) im = &d->images[i];
    CHECK(im != NULL);
    if (!im) { duet_entities_free(d); return; }
    CHECK(im->width == 224 && im->height == 224);
    CHECK(im->n_sentences == 2 && im->n_phrases == 5 && im->n_boxes == 3);
    CHECK(strcmp(im->sentences[0], "A black dog with a Frisbee in front of a brown dog .") == 0);
    CHECK(strcmp(im->phrases[0].text, "A black dog") == 0 && strcmp(im->phrases[0].type, "animals") == 0);
    CHECK(im->phrases[0].entity == 1 && im->phrases[0].sentence == 0 && im->phrases[0].has_box);
    /* inclusive XML bounds 30..130 x 25..185 become [30, 131) x [25, 186) */
    CHECK(im->phrases[0].box.x0 == 30 && im->phrases[0].box.y0 == 25 && im->phrases[0].box.x1 == 131 &&
          im->phrases[0].box.y1 == 186);
    CHECK(strcmp(im->phrases[4].text, "a blue frisbee") == 0 && im->phrases[4].sentence == 1 && im->phrases[4].entity == 2);
    /* a scene entity has no box */
    for (size_t i = 0; i < d->n_images; i++)
        if (strcmp(d->images[i].name, "2723477522_d89f5ac62b.jpg") == 0) {
            const duet_phrase *ph = &d->images[i].phrases[2];
            CHECK(strcmp(ph->text, "the grass") == 0 && strcmp(ph->type, "scene") == 0 && !ph->has_box);
        }
    duet_entities_free(d);
}

/* Parses one image from strings; returns the status, *msg the message. */
static duet_status parse(const char *sent, const char *xml, duet_entities_image *im, char *msg) {
    duet_error e = {0};
    memset(im, 0, sizeof *im);
    duet_status st = duet_entities_parse(sent, strlen(sent), "s.txt", xml, strlen(xml), "a.xml", im, &e);
    strcpy(msg, e.msg);
    return st;
}

#define XML_HEAD "<annotation><size><width>100</width><height>80</height></size>"

TEST(entities_union_and_multi_entity_boxes) {
    duet_entities_image im;
    char msg[512];
    const char *xml = XML_HEAD
        "<object><name>7</name><bndbox><xmin>10</xmin><ymin>20</ymin><xmax>19</xmax><ymax>29</ymax></bndbox></object>\n"
        "<object><name>7</name><name>8</name><bndbox><xmin>50</xmin><ymin>5</ymin><xmax>59</xmax><ymax>14</ymax></bndbox></object>\n"
        "</annotation>";
    CHECK(parse("[/EN#7/people Two men] talk to [/EN#8/people/other a man]\n\n", xml, &im, msg) == DUET_OK);
    CHECK(im.n_sentences == 1 && im.n_phrases == 2 && im.n_boxes == 2);
    CHECK(strcmp(im.sentences[0], "Two men talk to a man") == 0);
    CHECK(strcmp(im.phrases[1].type, "people/other") == 0);
    const duet_box *u = &im.phrases[0].box;
    CHECK(u->x0 == 10 && u->y0 == 5 && u->x1 == 60 && u->y1 == 30);      /* union of both boxes */
    const duet_box *m = &im.phrases[1].box;
    CHECK(m->x0 == 50 && m->y0 == 5 && m->x1 == 60 && m->y1 == 15);
    duet_entities_image_clear(&im);
}

TEST(entities_bad_input) {
    duet_entities_image im;
    char msg[512];
    const char *ok_xml = XML_HEAD "</annotation>";
    static const struct { const char *sent, *xml, *needle; } bad[] = {
        {"a [/EN#1/people man\n", NULL, "s.txt:1:3: unterminated phrase"},
        {"ok\n[/EN#x/people man]\n", NULL, "s.txt:2:1: entity id"},
        {"[/EN#1/people]\n", NULL, "entity type then a space"},
        {"a man] walks\n", NULL, "s.txt:1:6: ']' outside a phrase"},
        {"[EN#1/people a man]\n", NULL, "must start with"},
        {"[/EN#1/people a man]\n", XML_HEAD "<object><name>1</name><bndbox><xmin>9</xmin><ymin>0</ymin><xmax>5</xmax><ymax>3</ymax></bndbox></object></annotation>", "xmax < xmin"},
        {"[/EN#1/people a man]\n", XML_HEAD "<object><name>1</name><bndbox><xmin>0</xmin><ymin>0</ymin><xmax>100</xmax><ymax>3</ymax></bndbox></object></annotation>", "outside the 100x80 image"},
        {"[/EN#1/people a man]\n", XML_HEAD "<object><name>1</name><bndbox><xmin>0</xmin><ymin>0</ymin><xmax>5</xmax></bndbox></object></annotation>", "lacks a bound"},
        {"[/EN#1/people a man]\n", XML_HEAD "<object><bndbox><xmin>0</xmin><ymin>0</ymin><xmax>5</xmax><ymax>3</ymax></bndbox></object></annotation>", "without <name>"},
        {"[/EN#1/people a man]\n", XML_HEAD "<object><name>1</name><bndbox><xmin>-4</xmin></bndbox></object></annotation>", "not a pixel coordinate"},
        {"[/EN#1/people a man]\n", "<annotation><size><width>100</width></size></annotation>", "no <size>"},
        {"[/EN#1/people a man]\n", XML_HEAD "\n<object><name>1</name>\n</annotation>", "a.xml:3: mismatched tag"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        duet_status st = parse(bad[i].sent, bad[i].xml ? bad[i].xml : ok_xml, &im, msg);
        CHECK_MSG(st == DUET_ERR_FORMAT && strstr(msg, bad[i].needle), "case %zu: status %d, message '%s'", i, st, msg);
        duet_entities_image_clear(&im);
    }
    duet_entities *d = NULL;
    duet_error e = {0};
    CHECK(duet_entities_load("tests/fixtures/nowhere", &d, &e) == DUET_ERR_IO && !d);
    CHECK(strstr(e.msg, "nowhere/Sentences") != NULL);
}

/* Proposal recall on the hand-annotated sample (16 Flickr8K test images,
 * boxes drawn by eye): a floor that guards against regressions. */
TEST(proposal_recall_on_sample) {
    duet_entities *d = NULL;
    duet_error e = {0};
    if (duet_entities_load(FIXTURES, &d, &e) != DUET_OK) { CHECK_MSG(0, "%s", e.msg); return; }
    FILE *f = fopen("../shared/data/flickr8k/images/2511019188_ca71775f2d.jpg", "rb");
    if (!f) { duet_entities_free(d); SKIP("../shared/data/flickr8k absent"); }
    fclose(f);
    size_t gt = 0, covered = 0;
    for (size_t i = 0; i < d->n_images; i++) {
        char path[512];
        snprintf(path, sizeof path, "../shared/data/flickr8k/images/%s", d->images[i].name);
        duet_image im = {0};
        duet_box *b = NULL;
        size_t n = 0;
        CHECK(duet_image_read(path, &im, &e) == DUET_OK);
        CHECK(duet_proposals(&im, NULL, &b, &n, &e) == DUET_OK);
        for (size_t k = 0; k < d->images[i].n_boxes; k++)
            covered += duet_boxes_covered(&d->images[i].boxes[k].box, 1, b, n, 0.5f);
        gt += d->images[i].n_boxes;
        free(b);
        duet_image_free(&im);
    }
    fprintf(stderr, "proposal recall on the sample: %zu of %zu boxes at IoU >= 0.5\n", covered, gt);
    CHECK(gt == 28);
    CHECK_MSG(covered * 10 >= gt * 8, "%zu of %zu", covered, gt);
    duet_entities_free(d);
}

/* RoI features against torchvision's roi_align (tools/ref/roi_ref.py), and
 * the whole-image box against the plain average of the map. */
TEST(roi_features_match_torchvision) {
    FILE *f = fopen("tests/fixtures/region/roi_ref.txt", "r");
    CHECK(f != NULL);
    if (!f) return;
    int mh, mw, c, W, H, n;
    CHECK(fscanf(f, "%d %d %d %d %d %d", &mh, &mw, &c, &W, &H, &n) == 6);
    float *map = malloc(sizeof(float) * (size_t)(mh * mw * c)), *ref = malloc(sizeof(float) * (size_t)(n * c));
    float *got = malloc(sizeof(float) * (size_t)(n * c));
    duet_box *b = malloc(sizeof(duet_box) * (size_t)n);
    for (int i = 0; i < mh * mw * c; i++) CHECK(fscanf(f, "%f", &map[i]) == 1);
    for (int i = 0; i < n; i++) {
        int ratio;
        CHECK(fscanf(f, "%f %f %f %f %d", &b[i].x0, &b[i].y0, &b[i].x1, &b[i].y1, &ratio) == 5);
        for (int k = 0; k < c; k++) CHECK(fscanf(f, "%f", &ref[i * c + k]) == 1);
    }
    fclose(f);
    duet_error e = {0};
    CHECK(duet_roi_features(map, mh, mw, c, (size_t)W, (size_t)H, b, (size_t)n, got, &e) == DUET_OK);
    double worst = 0;
    for (int i = 0; i < n * c; i++) worst = fmax(worst, fabs(got[i] - ref[i]));
    CHECK_MSG(worst < 1e-5, "worst |duet - torchvision| %.3g", worst);
    /* box 0 is the whole image: the mean over the cells */
    for (int k = 0; k < c; k++) {
        double m = 0;
        for (int q = 0; q < mh * mw; q++) m += map[q * c + k];
        CHECK_NEAR(got[k], m / (mh * mw), 1e-6);
    }
    /* boxes outside the image or empty are refused, naming the box */
    duet_box badb[2] = {{0, 0, 10, 10}, {0, 0, (float)W + 1, 10}};
    CHECK(duet_roi_features(map, mh, mw, c, (size_t)W, (size_t)H, badb, 2, got, &e) == DUET_ERR_INVALID_ARG);
    CHECK(strstr(e.msg, "box 1") != NULL);
    badb[1] = (duet_box){5, 5, 5, 9};
    CHECK(duet_roi_features(map, mh, mw, c, (size_t)W, (size_t)H, badb, 2, got, &e) == DUET_ERR_INVALID_ARG);
    float g[DUET_BOX_GEOMETRY];
    duet_box_geometry(&b[1], (size_t)W, (size_t)H, g);
    CHECK_NEAR(g[0], 32.0 / 224, 1e-7);
    CHECK_NEAR(g[3], 44.0 / 160, 1e-7);
    CHECK_NEAR(g[4], 64.0 * 44 / (224.0 * 160), 1e-7);
    free(map); free(ref); free(got); free(b);
}

int main(void) {
    RUN(iou_values);
    RUN(proposals_find_blocks_deterministically);
    RUN(proposals_bad_input);
    RUN(entities_fixture);
    RUN(entities_union_and_multi_entity_boxes);
    RUN(entities_bad_input);
    RUN(proposal_recall_on_sample);
    RUN(roi_features_match_torchvision);
    return check_summary("region");
}
