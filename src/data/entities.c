/* entities.c -- Flickr30K Entities (Plummer et al. 2015): phrases marked up
 * in Sentences/ID.txt, their boxes in Annotations/ID.xml (expat).
 *
 *   Sentences/ID.txt  one sentence a line; a phrase is
 *                     [/EN#<entity id>/<type>[/<type>...] <words>]
 *   Annotations/ID.xml  <annotation><filename/><size><width/><height/></size>
 *                     <object><name>ENTITY</name>... (<bndbox><xmin/><ymin/>
 *                     <xmax/><ymax/></bndbox> | <nobndbox>1</nobndbox>)
 *                     </object>...</annotation>
 *
 * A phrase's box is the union of its entity's boxes (as the dataset's own
 * evaluation does); XML bounds are inclusive pixels and become half-open
 * boxes [xmin, xmax + 1). */
#define _POSIX_C_SOURCE 200809L
#include "data/data.h"
#include <ctype.h>
#include <dirent.h>
#include <expat.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OBJECTS 100000
#define MAX_NAMES 64

void duet_entities_image_clear(duet_entities_image *im) {
    if (!im) return;
    free(im->name);
    for (size_t s = 0; s < im->n_sentences; s++) free(im->sentences[s]);
    free(im->sentences);
    for (size_t p = 0; p < im->n_phrases; p++) { free(im->phrases[p].text); free(im->phrases[p].type); }
    free(im->phrases);
    for (size_t b = 0; b < im->n_boxes; b++) free(im->boxes[b].entities);
    free(im->boxes);
    memset(im, 0, sizeof *im);
}

void duet_entities_free(duet_entities *e) {
    if (!e) return;
    for (size_t i = 0; i < e->n_images; i++) duet_entities_image_clear(&e->images[i]);
    free(e->images);
    free(e);
}

/* ------------------------------------------------------------- sentences */

static int push(void **arr, size_t *n, size_t *cap, size_t elem) {
    if (*n < *cap) return 0;
    size_t c = *cap ? 2 * *cap : 8;
    void *a = duet_alloc_array(c, elem);
    if (!a) return -1;
    if (*n) memcpy(a, *arr, *n * elem);
    free(*arr);
    *arr = a;
    *cap = c;
    return 0;
}

static char *dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

duet_status duet_entities_parse_sentences(const char *buf, size_t len, const char *name, duet_entities_image *im,
                                          duet_error *err) {
    size_t cap_s = 0, cap_p = 0, line = 1;
    size_t i = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && buf[end] != '\n') end++;
        size_t e2 = end;
        if (e2 > i && buf[e2 - 1] == '\r') e2--;
        /* one sentence: copy the text without markup, collect phrases */
        char *plain = malloc(e2 - i + 1);
        if (!plain) return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", name);
        size_t np = 0;
        for (size_t k = i; k < e2;) {
            if (buf[k] == ']') {
                free(plain);
                return duet_fail(err, DUET_ERR_FORMAT, "%s:%zu:%zu: ']' outside a phrase", name, line, k - i + 1);
            }
            if (buf[k] != '[') { plain[np++] = buf[k++]; continue; }
            size_t col = k - i + 1;
            if (e2 - k < 5 || memcmp(buf + k, "[/EN#", 5) != 0) {
                free(plain);
                return duet_fail(err, DUET_ERR_FORMAT, "%s:%zu:%zu: a phrase must start with \"[/EN#\"", name, line, col);
            }
            k += 5;
            unsigned long id = 0;
            size_t d0 = k;
            while (k < e2 && isdigit((unsigned char)buf[k]) && k - d0 < 9) id = id * 10 + (unsigned long)(buf[k++] - '0');
            if (k == d0 || k >= e2 || buf[k] != '/') {
                free(plain);
                return duet_fail(err, DUET_ERR_FORMAT, "%s:%zu:%zu: entity id: digits then '/' expected", name, line, col);
            }
            size_t t0 = ++k;
            while (k < e2 && buf[k] != ' ' && buf[k] != ']' && buf[k] != '[') k++;
            if (k >= e2 || buf[k] != ' ' || k == t0) {
                free(plain);
                return duet_fail(err, DUET_ERR_FORMAT, "%s:%zu:%zu: entity type then a space expected", name, line, col);
            }
            size_t w0 = ++k;
            while (k < e2 && buf[k] != ']' && buf[k] != '[') k++;
            if (k >= e2 || buf[k] != ']') {
                free(plain);
                return duet_fail(err, DUET_ERR_FORMAT, "%s:%zu:%zu: unterminated phrase", name, line, col);
            }
            if (push((void **)&im->phrases, &im->n_phrases, &cap_p, sizeof(duet_phrase))) {
                free(plain);
                return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", name);
            }
            duet_phrase *ph = &im->phrases[im->n_phrases];
            memset(ph, 0, sizeof *ph);
            ph->entity = (uint32_t)id;
            ph->sentence = im->n_sentences;
            ph->text = dup_n(buf + w0, k - w0);
            ph->type = dup_n(buf + t0, w0 - 1 - t0);
            im->n_phrases++;
            if (!ph->text || !ph->type) { free(plain); return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", name); }
            memcpy(plain + np, buf + w0, k - w0);
            np += k - w0;
            k++;
        }
        plain[np] = '\0';
        if (np == 0) free(plain);      /* empty lines are skipped */
        else {
            if (push((void **)&im->sentences, &im->n_sentences, &cap_s, sizeof(char *))) {
                free(plain);
                return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", name);
            }
            im->sentences[im->n_sentences++] = plain;
        }
        i = end + 1;
        line++;
    }
    return DUET_OK;
}

/* ------------------------------------------------------------ annotations */

enum { F_NONE, F_FILENAME, F_WIDTH, F_HEIGHT, F_NAME, F_XMIN, F_YMIN, F_XMAX, F_YMAX, F_NOBOX };

typedef struct xml_state {
    XML_Parser p;
    const char *name;
    duet_entities_image *im;
    duet_error *err;
    duet_status st;
    int depth, in_object, in_size, in_bndbox, field;
    char text[256];
    size_t n_text;
    size_t cap_boxes;
    /* the object being read */
    uint32_t names[MAX_NAMES];
    size_t n_names;
    long v[4];
    int have[4], nobox;
    char *filename;
} xml_state;

static void xml_fail(xml_state *s, duet_status st, const char *what) {
    if (s->st) return;
    s->st = duet_fail(s->err, st, "%s:%lu: %s", s->name, (unsigned long)XML_GetCurrentLineNumber(s->p), what);
    XML_StopParser(s->p, XML_FALSE);
}

static void XMLCALL on_start(void *u, const XML_Char *el, const XML_Char **attr) {
    xml_state *s = u;
    (void)attr;
    s->depth++;
    s->n_text = 0;
    s->field = F_NONE;
    if (s->depth > 16) { xml_fail(s, DUET_ERR_FORMAT, "elements nested too deep"); return; }
    if (strcmp(el, "object") == 0) {
        if (s->in_object) { xml_fail(s, DUET_ERR_FORMAT, "<object> inside <object>"); return; }
        s->in_object = 1;
        s->n_names = 0;
        s->nobox = 0;
        memset(s->have, 0, sizeof s->have);
    } else if (strcmp(el, "size") == 0) s->in_size = 1;
    else if (strcmp(el, "bndbox") == 0) {
        if (!s->in_object) { xml_fail(s, DUET_ERR_FORMAT, "<bndbox> outside <object>"); return; }
        s->in_bndbox = 1;
    } else if (strcmp(el, "filename") == 0) s->field = F_FILENAME;
    else if (s->in_size && strcmp(el, "width") == 0) s->field = F_WIDTH;
    else if (s->in_size && strcmp(el, "height") == 0) s->field = F_HEIGHT;
    else if (s->in_object && strcmp(el, "name") == 0) s->field = F_NAME;
    else if (s->in_bndbox && strcmp(el, "xmin") == 0) s->field = F_XMIN;
    else if (s->in_bndbox && strcmp(el, "ymin") == 0) s->field = F_YMIN;
    else if (s->in_bndbox && strcmp(el, "xmax") == 0) s->field = F_XMAX;
    else if (s->in_bndbox && strcmp(el, "ymax") == 0) s->field = F_YMAX;
    else if (s->in_object && strcmp(el, "nobndbox") == 0) s->field = F_NOBOX;
}

static void XMLCALL on_text(void *u, const XML_Char *t, int n) {
    xml_state *s = u;
    if (s->field == F_NONE || n <= 0) return;
    if (s->n_text + (size_t)n >= sizeof s->text) { xml_fail(s, DUET_ERR_FORMAT, "a field is longer than 255 bytes"); return; }
    memcpy(s->text + s->n_text, t, (size_t)n);
    s->n_text += (size_t)n;
}

/* The field's text as a number in [0, 65535] (Flickr30K bounds are
 * integers; a fractional part is accepted and truncated). */
static int field_num(xml_state *s, long *out) {
    s->text[s->n_text] = '\0';
    char *e;
    double v = strtod(s->text, &e);
    while (*e == ' ' || *e == '\n' || *e == '\r' || *e == '\t') e++;
    if (e == s->text || *e || !(v >= 0 && v <= 65535)) return -1;
    *out = (long)v;
    return 0;
}

static void end_object(xml_state *s) {
    s->in_object = 0;
    if (s->n_names == 0) { xml_fail(s, DUET_ERR_FORMAT, "<object> without <name>"); return; }
    int any = s->have[0] | s->have[1] | s->have[2] | s->have[3];
    if (!any) return;                 /* nobndbox / scene: no box */
    if (!(s->have[0] & s->have[1] & s->have[2] & s->have[3])) { xml_fail(s, DUET_ERR_FORMAT, "<bndbox> lacks a bound"); return; }
    if (s->v[2] < s->v[0] || s->v[3] < s->v[1]) { xml_fail(s, DUET_ERR_FORMAT, "<bndbox> has xmax < xmin or ymax < ymin"); return; }
    duet_entities_image *im = s->im;
    if (im->n_boxes >= MAX_OBJECTS) { xml_fail(s, DUET_ERR_FORMAT, "more than 100000 boxes"); return; }
    if (push((void **)&im->boxes, &im->n_boxes, &s->cap_boxes, sizeof(duet_entity_box))) {
        xml_fail(s, DUET_ERR_NOMEM, "out of memory");
        return;
    }
    duet_entity_box *b = &im->boxes[im->n_boxes];
    b->box = (duet_box){(float)s->v[0], (float)s->v[1], (float)(s->v[2] + 1), (float)(s->v[3] + 1)};
    b->entities = malloc(s->n_names * sizeof(uint32_t));
    if (!b->entities) { xml_fail(s, DUET_ERR_NOMEM, "out of memory"); return; }
    memcpy(b->entities, s->names, s->n_names * sizeof(uint32_t));
    b->n_entities = s->n_names;
    im->n_boxes++;
}

static void XMLCALL on_end(void *u, const XML_Char *el) {
    xml_state *s = u;
    s->depth--;
    int f = s->field;
    s->field = F_NONE;
    long v = 0;
    if (f == F_FILENAME) {
        s->text[s->n_text] = '\0';
        free(s->filename);
        s->filename = duet_strdup(s->text);
        if (!s->filename) xml_fail(s, DUET_ERR_NOMEM, "out of memory");
    } else if (f == F_WIDTH || f == F_HEIGHT) {
        if (field_num(s, &v) || v < 1) { xml_fail(s, DUET_ERR_FORMAT, f == F_WIDTH ? "<width> is not a size" : "<height> is not a size"); return; }
        if (f == F_WIDTH) s->im->width = (size_t)v; else s->im->height = (size_t)v;
    } else if (f == F_NAME) {
        if (field_num(s, &v)) { xml_fail(s, DUET_ERR_FORMAT, "<name> is not an entity id"); return; }
        if (s->n_names >= MAX_NAMES) { xml_fail(s, DUET_ERR_FORMAT, "an object names more than 64 entities"); return; }
        s->names[s->n_names++] = (uint32_t)v;
    } else if (f >= F_XMIN && f <= F_YMAX) {
        if (field_num(s, &v)) { xml_fail(s, DUET_ERR_FORMAT, "a <bndbox> bound is not a pixel coordinate"); return; }
        s->v[f - F_XMIN] = v;
        s->have[f - F_XMIN] = 1;
    }
    if (strcmp(el, "object") == 0) end_object(s);
    else if (strcmp(el, "size") == 0) s->in_size = 0;
    else if (strcmp(el, "bndbox") == 0) s->in_bndbox = 0;
}

duet_status duet_entities_parse_xml(const char *buf, size_t len, const char *name, duet_entities_image *im,
                                    duet_error *err) {
    if (len > (size_t)1 << 30) return duet_fail(err, DUET_ERR_FORMAT, "%s: larger than 1 GiB", name);
    xml_state s;
    memset(&s, 0, sizeof s);
    s.p = XML_ParserCreate("UTF-8");
    if (!s.p) return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", name);
    s.name = name;
    s.im = im;
    s.err = err;
    XML_SetUserData(s.p, &s);
    XML_SetElementHandler(s.p, on_start, on_end);
    XML_SetCharacterDataHandler(s.p, on_text);
    if (XML_Parse(s.p, buf, (int)len, XML_TRUE) == XML_STATUS_ERROR && !s.st)
        s.st = duet_fail(err, DUET_ERR_FORMAT, "%s:%lu: %s", name, (unsigned long)XML_GetCurrentLineNumber(s.p),
                         XML_ErrorString(XML_GetErrorCode(s.p)));
    XML_ParserFree(s.p);
    if (!s.st && (!im->width || !im->height)) s.st = duet_fail(err, DUET_ERR_FORMAT, "%s: no <size> with <width> and <height>", name);
    for (size_t b = 0; b < im->n_boxes && !s.st; b++)
        if (im->boxes[b].box.x1 > (float)im->width || im->boxes[b].box.y1 > (float)im->height)
            s.st = duet_fail(err, DUET_ERR_FORMAT, "%s: box %zu lies outside the %zux%zu image", name, b + 1, im->width, im->height);
    if (!s.st && s.filename && !im->name) { im->name = s.filename; s.filename = NULL; }
    free(s.filename);
    return s.st;
}

/* Each phrase's box: the union of its entity's boxes. */
static void attach_boxes(duet_entities_image *im) {
    for (size_t p = 0; p < im->n_phrases; p++) {
        duet_phrase *ph = &im->phrases[p];
        ph->has_box = 0;
        for (size_t b = 0; b < im->n_boxes; b++)
            for (size_t k = 0; k < im->boxes[b].n_entities; k++) {
                if (im->boxes[b].entities[k] != ph->entity) continue;
                const duet_box *x = &im->boxes[b].box;
                if (!ph->has_box) ph->box = *x;
                else {
                    if (x->x0 < ph->box.x0) ph->box.x0 = x->x0;
                    if (x->y0 < ph->box.y0) ph->box.y0 = x->y0;
                    if (x->x1 > ph->box.x1) ph->box.x1 = x->x1;
                    if (x->y1 > ph->box.y1) ph->box.y1 = x->y1;
                }
                ph->has_box = 1;
            }
    }
}

duet_status duet_entities_parse(const char *sentences, size_t s_len, const char *s_name, const char *xml,
                                size_t x_len, const char *x_name, duet_entities_image *im, duet_error *err) {
    duet_status st = duet_entities_parse_sentences(sentences, s_len, s_name, im, err);
    if (!st) st = duet_entities_parse_xml(xml, x_len, x_name, im, err);
    if (!st) attach_boxes(im);
    return st;
}

/* ----------------------------------------------------------------- loader */

static int str_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

duet_status duet_entities_load(const char *dir, duet_entities **out, duet_error *err) {
    *out = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/Sentences", dir);
    DIR *d = opendir(path);
    if (!d) return duet_fail(err, DUET_ERR_IO, "%s: cannot open (Flickr30K Entities: DIR/Sentences/*.txt and DIR/Annotations/*.xml)", path);
    char **ids = NULL;
    size_t n = 0, cap = 0;
    duet_status st = DUET_OK;
    struct dirent *de;
    while ((de = readdir(d)) && !st) {
        size_t l = strlen(de->d_name);
        if (l < 5 || strcmp(de->d_name + l - 4, ".txt") != 0) continue;
        if (push((void **)&ids, &n, &cap, sizeof(char *)) || !(ids[n] = dup_n(de->d_name, l - 4)))
            st = duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
        else n++;
    }
    closedir(d);
    if (!st && n == 0) st = duet_fail(err, DUET_ERR_FORMAT, "%s: no *.txt files", path);
    duet_entities *e = st ? NULL : calloc(1, sizeof *e);
    if (!st && !e) st = duet_fail(err, DUET_ERR_NOMEM, "out of memory");
    if (!st) {
        qsort(ids, n, sizeof *ids, str_cmp);
        e->images = duet_calloc_array(n, sizeof(duet_entities_image));
        if (!e->images) st = duet_fail(err, DUET_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n && !st; i++) {
        char sp[4096], xp[4096], *sb = NULL, *xb = NULL;
        size_t sl = 0, xl = 0;
        snprintf(sp, sizeof sp, "%s/Sentences/%s.txt", dir, ids[i]);
        snprintf(xp, sizeof xp, "%s/Annotations/%s.xml", dir, ids[i]);
        duet_entities_image *im = &e->images[e->n_images++];
        st = duet_read_file(sp, (size_t)64 << 20, &sb, &sl, err);
        if (!st) st = duet_read_file(xp, (size_t)64 << 20, &xb, &xl, err);
        if (!st) st = duet_entities_parse(sb, sl, sp, xb, xl, xp, im, err);
        if (!st && !im->name) {
            size_t l = strlen(ids[i]) + 5;
            im->name = malloc(l);
            if (!im->name) st = duet_fail(err, DUET_ERR_NOMEM, "out of memory");
            else snprintf(im->name, l, "%s.jpg", ids[i]);
        }
        free(sb);
        free(xb);
    }
    for (size_t i = 0; i < n; i++) free(ids[i]);
    free(ids);
    if (st) { duet_entities_free(e); return st; }
    *out = e;
    return DUET_OK;
}
