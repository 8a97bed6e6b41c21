/* npy_header.c -- the .npy preamble and header dict: reading them (magic,
 * version, header length; the dict's three keys; the dtype and shape
 * interpreted into an npy_info) and writing the header duet's files carry.
 *
 * The header is a Python dict literal such as
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
 * padded with spaces and ended by '\n'. No eval: the dict is read by a
 * small recursive-descent parser that knows only the three keys. */
#include "npy.h"
#include <string.h>

#define NPY_MAX_HEADER ((size_t)1 << 20) /* header bytes we accept          */
#define NPY_ALIGN 64                     /* data offset of written files    */

static const unsigned char npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

/* -------------------------------------------------------------- preamble */

/* Checks the magic and version in the first avail bytes of p and decodes
 * the header length. *pre_len: 10 (v1.0) or 12 (v2.0, v3.0). Borrows p. */
duet_status duet_npy_preamble(const unsigned char *p, size_t avail,
                              const char *name, size_t *pre_len,
                              size_t *hlen, duet_error *err) {
    if (avail == 0)
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s: empty file (0 bytes), not a .npy array", name);
    if (memcmp(p, npy_magic, avail < 6 ? avail : 6) != 0)
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s: not a .npy file (bad magic: it does not start "
                         "with \"\\x93NUMPY\")", name);
    if (avail < 8)
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s: truncated: the file ends inside the .npy magic "
                         "and version (%zu bytes)", name, avail);
    unsigned major = p[6], minor = p[7];
    if (major < 1 || major > 3 || minor != 0)
        return duet_fail(err, DUET_ERR_VERSION,
                         "%s: .npy format version %u.%u is not supported "
                         "(duet reads 1.0, 2.0 and 3.0)", name, major, minor);
    *pre_len = major == 1 ? 10 : 12;
    if (avail < *pre_len)
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s: truncated: the file ends inside the header "
                         "length field (%zu bytes)", name, avail);
    *hlen = major == 1 ? ld16(p + 8, false) : (size_t)ld32(p + 8, false);
    if (*hlen > NPY_MAX_HEADER)
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s: header length %zu exceeds the %zu-byte limit",
                         name, *hlen, NPY_MAX_HEADER);
    return DUET_OK;
}

/* ------------------------------------------------------------ header dict */

typedef struct span {
    const char *s;
    size_t n;
} span;

/* A cursor over the header text [start, end); name is for messages. */
typedef struct hcur {
    const char *p, *start, *end, *name;
} hcur;

/* The fields of the header dict as written. */
typedef struct npy_fields {
    bool has_descr, has_order, has_shape;
    span descr, shape;  /* shape: the tuple's text, for messages   */
    bool fortran;
    size_t ndim, dims[2];
} npy_fields;

/* Copies s into buf (cap 48) for a message: at most 40 characters,
 * non-printable bytes shown as '?'. Returns buf. */
static const char *show(span s, char buf[48]) {
    size_t n = s.n < 40 ? s.n : 40, i;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s.s[i];
        buf[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    strcpy(buf + i, s.n > n ? "..." : "");
    return buf;
}

static bool span_is(span s, const char *lit) {
    return s.n == strlen(lit) && memcmp(s.s, lit, s.n) == 0;
}

static duet_status bad(const hcur *c, duet_error *err, const char *what) {
    return duet_fail(err, DUET_ERR_FORMAT,
                     "%s: malformed .npy header: %s (at header byte %zu)",
                     c->name, what, (size_t)(c->p - c->start));
}

static void skip_ws(hcur *c) {
    while (c->p < c->end &&
           (*c->p == ' ' || *c->p == '\t' || *c->p == '\r' || *c->p == '\n'))
        c->p++;
}

/* Skips spaces and consumes ch if it comes next. */
static bool eat(hcur *c, char ch) {
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }

/* Consumes a bare word (True, False) not followed by an identifier char. */
static bool eat_word(hcur *c, const char *w) {
    size_t n = strlen(w);
    skip_ws(c);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, w, n) != 0) return false;
    const char *after = c->p + n;
    if (after < c->end && (is_digit(*after) || *after == '_' ||
                           ((*after | 0x20) >= 'a' && (*after | 0x20) <= 'z')))
        return false;
    c->p = after;
    return true;
}

/* A '...' or "..." literal without escapes; *out borrows the header. */
static bool parse_str(hcur *c, span *out) {
    skip_ws(c);
    if (c->p == c->end || (*c->p != '\'' && *c->p != '"')) return false;
    char q = *c->p;
    const char *s = c->p + 1, *e = s;
    while (e < c->end && *e != q) {
        if (*e == '\\' || *e == '\n') return false;
        e++;
    }
    if (e == c->end) return false;
    *out = (span){s, (size_t)(e - s)};
    c->p = e + 1;
    return true;
}

/* A non-negative decimal integer (Python 2's "3L" accepted). */
static duet_status parse_dim(hcur *c, size_t *out, duet_error *err) {
    skip_ws(c);
    if (c->p < c->end && *c->p == '-')
        return bad(c, err, "'shape' has a negative dimension");
    if (c->p == c->end || !is_digit(*c->p))
        return bad(c, err, "'shape' entries must be non-negative integers");
    size_t v = 0;
    while (c->p < c->end && is_digit(*c->p)) {
        size_t d = (size_t)(*c->p - '0');
        if (v > (SIZE_MAX - d) / 10)
            return bad(c, err, "a 'shape' dimension does not fit in size_t");
        v = v * 10 + d;
        c->p++;
    }
    if (c->p < c->end && *c->p == 'L') c->p++;
    *out = v;
    return DUET_OK;
}

/* A tuple of dimensions: (), (n,), (r, c), (a, b, c, ...), trailing comma
 * allowed; the first two dimensions are kept, all are counted. */
static duet_status parse_shape(hcur *c, npy_fields *f, duet_error *err) {
    skip_ws(c);
    const char *open = c->p;
    if (!eat(c, '(')) return bad(c, err, "'shape' is not a tuple");
    f->ndim = 0;
    while (!eat(c, ')')) {
        size_t d = 0;
        duet_status st = parse_dim(c, &d, err);
        if (st != DUET_OK) return st;
        if (f->ndim < 2) f->dims[f->ndim] = d;
        f->ndim++;
        if (eat(c, ',')) continue;
        if (!eat(c, ')')) return bad(c, err, "expected ',' or ')' in 'shape'");
        if (f->ndim == 1)
            return bad(c, err, "'shape' (n) is not a tuple; write (n,)");
        break;
    }
    f->shape = (span){open, (size_t)(c->p - open)};
    return DUET_OK;
}

/* The value of one key; unknown or repeated keys are errors. */
static duet_status parse_value(hcur *c, span key, npy_fields *f,
                               duet_error *err) {
    char kb[48];
    bool *seen = span_is(key, "descr")           ? &f->has_descr
                 : span_is(key, "fortran_order") ? &f->has_order
                 : span_is(key, "shape")         ? &f->has_shape
                                                 : NULL;
    if (!seen)
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s: malformed .npy header: unknown key '%s' (a .npy "
                         "header has 'descr', 'fortran_order' and 'shape')",
                         c->name, show(key, kb));
    if (*seen)
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s: malformed .npy header: duplicate key '%s'",
                         c->name, show(key, kb));
    *seen = true;
    if (seen == &f->has_shape) return parse_shape(c, f, err);
    if (seen == &f->has_order) {
        if (eat_word(c, "True")) f->fortran = true;
        else if (eat_word(c, "False")) f->fortran = false;
        else return bad(c, err, "'fortran_order' must be True or False");
        return DUET_OK;
    }
    skip_ws(c);
    if (c->p < c->end && *c->p == '[')
        return duet_fail(err, DUET_ERR_UNSUPPORTED,
                         "%s: 'descr' is a structured (record) dtype; duet "
                         "reads float16/32/64 arrays", c->name);
    if (!parse_str(c, &f->descr))
        return bad(c, err, "'descr' is not a quoted string");
    return DUET_OK;
}

/* { key: value, ... } then only whitespace, the last byte being '\n'. */
static duet_status parse_dict(hcur *c, npy_fields *f, duet_error *err) {
    if (!eat(c, '{')) return bad(c, err, "expected '{'");
    while (!eat(c, '}')) {
        span key;
        if (!parse_str(c, &key)) return bad(c, err, "expected a quoted key or '}'");
        if (!eat(c, ':')) return bad(c, err, "expected ':' after a key");
        duet_status st = parse_value(c, key, f, err);
        if (st != DUET_OK) return st;
        if (eat(c, ',')) continue;
        if (!eat(c, '}')) return bad(c, err, "expected ',' or '}' after a value");
        break;
    }
    skip_ws(c);
    if (c->p != c->end) return bad(c, err, "unexpected text after '}'");
    if (c->end[-1] != '\n')
        return bad(c, err, "the header does not end with a newline");
    return DUET_OK;
}

/* '<f4' and friends -> itemsize and byte order ('=' and '|': native). */
static duet_status npy_dtype(span d, const char *name, npy_info *in,
                             duet_error *err) {
    char b[48];
    char bo = d.n == 3 ? d.s[0] : 0, sz = d.n == 3 ? d.s[2] : 0;
    bool order_ok = bo == '<' || bo == '>' || bo == '=' || bo == '|';
    if (order_ok && d.s[1] == 'f' && (sz == '2' || sz == '4' || sz == '8')) {
        in->itemsize = (size_t)(sz - '0');
        in->big = bo == '>' || (bo != '<' && host_big());
        return DUET_OK;
    }
    return duet_fail(err, DUET_ERR_UNSUPPORTED,
                     "%s: dtype '%s' is not a float type (duet reads "
                     "float16/32/64)", name, show(d, b));
}

/* Checks the fields against what duet reads and sizes the data. */
static duet_status npy_interpret(const npy_fields *f, const char *name,
                                 npy_info *in, duet_error *err) {
    const char *missing = !f->has_descr ? "descr"
                          : !f->has_order ? "fortran_order"
                          : !f->has_shape ? "shape" : NULL;
    if (missing)
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s: malformed .npy header: no '%s' key", name, missing);
    duet_status st = npy_dtype(f->descr, name, in, err);
    if (st != DUET_OK) return st;
    if (f->fortran)
        return duet_fail(err, DUET_ERR_UNSUPPORTED,
                         "%s: 'fortran_order' is True: the data is in Fortran "
                         "(column-major) order; duet reads C-order arrays "
                         "(save numpy.ascontiguousarray(a))", name);
    char b[48];
    if (f->ndim == 0 || f->ndim > 2)
        return duet_fail(err, DUET_ERR_UNSUPPORTED,
                         "%s: 'shape' %s has %zu dimensions; duet reads 1-D "
                         "or 2-D arrays", name, show(f->shape, b), f->ndim);
    in->rows = f->dims[0];
    in->cols = f->ndim == 2 ? f->dims[1] : 1;
    size_t fbytes;
    if (!duet_mul_size(in->rows, in->cols, &in->count) ||
        !duet_mul_size(in->count, in->itemsize, &in->data_bytes) ||
        !duet_mul_size(in->count, sizeof(float), &fbytes))
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s: 'shape' %s is too large: its size overflows "
                         "size_t", name, show(f->shape, b));
    return DUET_OK;
}

/* The one header parser: hlen bytes at h (borrowed) -> *in. */
duet_status duet_npy_header(const char *h, size_t hlen, const char *name,
                            npy_info *in, duet_error *err) {
    if (hlen == 0)
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s: malformed .npy header: header length is 0", name);
    hcur c = {h, h, h + hlen, name};
    npy_fields f = {0};
    duet_status st = parse_dict(&c, &f, err);
    return st != DUET_OK ? st : npy_interpret(&f, name, in, err);
}

/* ------------------------------------------------------------ writing */

/* Fills buf (cap >= 256) with a v1.0 preamble and '<f4' header padded so
 * that the data starts at a multiple of NPY_ALIGN; returns its length. */
size_t duet_npy_make_header(unsigned char *buf, size_t rows, size_t cols) {
    return duet_npy_make_header_dtype(buf, rows, cols, "<f4");
}

size_t duet_npy_make_header_dtype(unsigned char *buf, size_t rows, size_t cols, const char *descr) {
    memcpy(buf, npy_magic, sizeof npy_magic);
    buf[6] = 1;
    buf[7] = 0;
    int n = snprintf((char *)buf + 10, 246,
                     "{'descr': '%.3s', 'fortran_order': False, "
                     "'shape': (%zu, %zu), }", descr, rows, cols);
    size_t used = 10 + (size_t)n + 1; /* + '\n' */
    size_t total = (used + NPY_ALIGN - 1) / NPY_ALIGN * NPY_ALIGN;
    memset(buf + 10 + n, ' ', total - used);
    buf[total - 1] = '\n';
    buf[8] = (unsigned char)((total - 10) & 0xff);
    buf[9] = (unsigned char)((total - 10) >> 8);
    return total;
}

