/* npy.c -- NumPy .npy arrays: parse (memory), read (streaming), write (atomic).
 *
 * A .npy file is
 *     "\x93NUMPY" MAJOR MINOR HLEN HEADER DATA
 * HLEN is a little-endian u16 (version 1.0) or u32 (2.0, 3.0); HEADER is a
 * Python dict literal such as
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
 * padded with spaces and ended by '\n'. One parser (npy_preamble then
 * npy_header) serves duet_npy_parse and duet_npy_read; the data that follows
 * must be exactly as long as the header implies. No eval: the dict is read by
 * a small recursive-descent parser that knows only the three keys. */
#define _POSIX_C_SOURCE 200809L
#define _FILE_OFFSET_BITS 64
#include "core.h"
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NPY_MAX_HEADER ((size_t)1 << 20) /* header bytes we accept          */
#define NPY_CHUNK ((size_t)1 << 16)      /* bytes per chunk when converting */
#define NPY_ALIGN 64                     /* data offset of written files    */
#define NPY_PRE_MAX 12                   /* longest preamble (v2, v3)       */

static const unsigned char npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

/* What a header says about the data that follows it. */
typedef struct npy_info {
    size_t rows, cols;   /* a 1-D (n,) array is n x 1                  */
    size_t itemsize;     /* bytes per element in the file: 2, 4 or 8   */
    bool big;            /* the file's elements are big-endian         */
    size_t count;        /* rows * cols                                */
    size_t data_bytes;   /* count * itemsize                           */
} npy_info;

/* ------------------------------------------------------------ byte order */

static bool host_big(void) {
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 0;
}

static uint16_t ld16(const unsigned char *p, bool big) {
    return big ? (uint16_t)(p[0] << 8 | p[1]) : (uint16_t)(p[1] << 8 | p[0]);
}

static uint32_t ld32(const unsigned char *p, bool big) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v = v << 8 | p[big ? i : 3 - i];
    return v;
}

static uint64_t ld64(const unsigned char *p, bool big) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[big ? i : 7 - i];
    return v;
}

/* IEEE half -> float, exact for every input (NaN payloads kept). */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0) { /* zero or subnormal: man * 2^-24, exact in float */
        float f = (float)man * 0x1p-24f;
        return sign ? -f : f;
    }
    uint32_t bits = exp == 31 ? sign | 0x7f800000u | man << 13        /* Inf/NaN */
                              : sign | (exp + 112u) << 23 | man << 13; /* normal  */
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Converts n file elements at src (layout per in) into dst[0..n). */
static void npy_convert(const unsigned char *src, size_t n, const npy_info *in,
                        float *dst) {
    size_t i;
    if (in->itemsize == 4 && in->big == host_big()) {
        if (n) memcpy(dst, src, n * sizeof *dst);
    } else if (in->itemsize == 2) {
        for (i = 0; i < n; i++) dst[i] = half_to_float(ld16(src + 2 * i, in->big));
    } else if (in->itemsize == 4) {
        for (i = 0; i < n; i++) {
            uint32_t u = ld32(src + 4 * i, in->big);
            memcpy(dst + i, &u, sizeof u);
        }
    } else {
        for (i = 0; i < n; i++) {
            uint64_t u = ld64(src + 8 * i, in->big);
            double d;
            memcpy(&d, &u, sizeof d);
            dst[i] = (float)d; /* round to nearest; out of range -> Inf */
        }
    }
}

/* -------------------------------------------------------------- preamble */

/* Checks the magic and version in the first avail bytes of p and decodes
 * the header length. *pre_len: 10 (v1.0) or 12 (v2.0, v3.0). Borrows p. */
static duet_status npy_preamble(const unsigned char *p, size_t avail,
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

/* The message for a header that runs past the end of the input. */
static duet_status npy_header_past_end(const char *name, size_t hlen,
                                       size_t avail, duet_error *err) {
    return duet_fail(err, DUET_ERR_FORMAT,
                     "%s: truncated: header length %zu runs past the end of "
                     "the file (only %zu header bytes follow the preamble)",
                     name, hlen, avail);
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
static duet_status npy_header(const char *h, size_t hlen, const char *name,
                              npy_info *in, duet_error *err) {
    if (hlen == 0)
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s: malformed .npy header: header length is 0", name);
    hcur c = {h, h, h + hlen, name};
    npy_fields f = {0};
    duet_status st = parse_dict(&c, &f, err);
    return st != DUET_OK ? st : npy_interpret(&f, name, in, err);
}

static const char *npy_type_name(size_t itemsize) {
    return itemsize == 2 ? "float16" : itemsize == 4 ? "float32" : "float64";
}

/* DUET_OK if exactly in->data_bytes follow the header (have). */
static duet_status npy_check_length(const char *name, const npy_info *in,
                                    uintmax_t have, duet_error *err) {
    if (have == in->data_bytes) return DUET_OK;
    return duet_fail(err, DUET_ERR_FORMAT,
                     have < in->data_bytes
                         ? "%s: truncated: header says %zu x %zu %s (%zu bytes) "
                           "but only %" PRIuMAX " bytes follow"
                         : "%s: trailing garbage: header says %zu x %zu %s "
                           "(%zu bytes) but %" PRIuMAX " bytes follow",
                     name, in->rows, in->cols, npy_type_name(in->itemsize),
                     in->data_bytes, have);
}

/* ------------------------------------------------------------ public API */

/* Parses len bytes at buf (borrowed). On success out->data is allocated
 * (caller frees with duet_mat_free); on failure *out is zeroed. */
duet_status duet_npy_parse(const void *buf, size_t len, const char *name,
                           duet_mat *out, duet_error *err) {
    if (!name) name = "(memory)";
    if (!out || (!buf && len))
        return duet_fail(err, DUET_ERR_INVALID_ARG,
                         "%s: duet_npy_parse: NULL buffer or output", name);
    *out = (duet_mat){0};
    const unsigned char *p = buf;
    size_t pre, hlen;
    npy_info in;
    duet_status st = npy_preamble(p, len, name, &pre, &hlen, err);
    if (st != DUET_OK) return st;
    if (len - pre < hlen) return npy_header_past_end(name, hlen, len - pre, err);
    st = npy_header((const char *)p + pre, hlen, name, &in, err);
    if (st == DUET_OK) st = npy_check_length(name, &in, len - pre - hlen, err);
    if (st != DUET_OK) return st;
    float *d = duet_alloc_array(in.count, sizeof(float));
    if (!d)
        return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory for %zu x %zu "
                         "floats", name, in.rows, in.cols);
    npy_convert(p + pre + hlen, in.count, &in, d);
    *out = (duet_mat){d, in.rows, in.cols};
    return DUET_OK;
}

/* The error for a data read that stopped after got bytes. */
static duet_status npy_short_read(FILE *fp, const char *path,
                                  const npy_info *in, size_t got,
                                  duet_error *err) {
    if (ferror(fp))
        return duet_fail(err, DUET_ERR_IO, "%s: read error: %s", path,
                         strerror(errno));
    return npy_check_length(path, in, got, err);
}

/* Reads the data (positioned at its start) into dst[0..in->count): straight
 * into dst when the file holds native float32, else through a chunk. */
static duet_status npy_read_data(FILE *fp, const char *path,
                                 const npy_info *in, float *dst,
                                 duet_error *err) {
    if (in->itemsize == 4 && in->big == host_big()) {
        size_t got = in->data_bytes ? fread(dst, 1, in->data_bytes, fp) : 0;
        return got == in->data_bytes ? DUET_OK
                                     : npy_short_read(fp, path, in, got, err);
    }
    unsigned char *chunk = malloc(NPY_CHUNK);
    if (!chunk) return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    size_t per = NPY_CHUNK / in->itemsize, done = 0;
    duet_status st = DUET_OK;
    while (done < in->count && st == DUET_OK) {
        size_t k = in->count - done < per ? in->count - done : per;
        size_t got = fread(chunk, 1, k * in->itemsize, fp);
        if (got != k * in->itemsize)
            st = npy_short_read(fp, path, in, done * in->itemsize + got, err);
        else
            npy_convert(chunk, k, in, dst + done);
        done += k;
    }
    free(chunk);
    return st;
}

/* Reads preamble, header and data from fp (borrowed) into out. */
static duet_status npy_read_stream(FILE *fp, const char *path, duet_mat *out,
                                   duet_error *err) {
    struct stat sb;
    bool sized = fstat(fileno(fp), &sb) == 0 && S_ISREG(sb.st_mode);
    unsigned char pre[NPY_PRE_MAX];
    size_t got = fread(pre, 1, 10, fp), pre_len, hlen;
    if (got == 10 && pre[6] >= 2) got += fread(pre + 10, 1, 2, fp);
    if (ferror(fp))
        return duet_fail(err, DUET_ERR_IO, "%s: read error: %s", path,
                         strerror(errno));
    duet_status st = npy_preamble(pre, got, path, &pre_len, &hlen, err);
    if (st != DUET_OK) return st;
    char *h = duet_alloc_array(hlen, 1);
    if (!h) return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    got = hlen ? fread(h, 1, hlen, fp) : 0;
    npy_info in;
    if (got != hlen)
        st = ferror(fp) ? duet_fail(err, DUET_ERR_IO, "%s: read error: %s",
                                    path, strerror(errno))
                        : npy_header_past_end(path, hlen, got, err);
    else
        st = npy_header(h, hlen, path, &in, err);
    free(h);
    if (st != DUET_OK) return st;
    if (sized) { /* refuse a wrong size before allocating */
        uintmax_t size = (uintmax_t)sb.st_size, start = pre_len + hlen;
        st = npy_check_length(path, &in, size > start ? size - start : 0, err);
        if (st != DUET_OK) return st;
    }
    out->data = duet_alloc_array(in.count, sizeof(float));
    if (!out->data)
        return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory for %zu x %zu "
                         "floats", path, in.rows, in.cols);
    st = npy_read_data(fp, path, &in, out->data, err);
    if (st != DUET_OK) return st;
    if (getc(fp) != EOF) /* the file grew, or a pipe */
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s: trailing garbage after the %zu x %zu %s data",
                         path, in.rows, in.cols, npy_type_name(in.itemsize));
    out->rows = in.rows;
    out->cols = in.cols;
    return DUET_OK;
}

/* Reads path without loading it whole. On success out->data is allocated
 * (caller frees with duet_mat_free); on failure *out is zeroed. */
duet_status duet_npy_read(const char *path, duet_mat *out, duet_error *err) {
    if (!path || !out)
        return duet_fail(err, DUET_ERR_INVALID_ARG,
                         "duet_npy_read: NULL path or output");
    *out = (duet_mat){0};
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return duet_fail(err, DUET_ERR_IO, "%s: cannot open: %s", path,
                         strerror(errno));
    duet_status st = npy_read_stream(fp, path, out, err);
    fclose(fp); /* read-only: nothing to lose on close */
    if (st != DUET_OK) duet_mat_free(out);
    return st;
}

/* Fills buf (cap >= 256) with a v1.0 preamble and '<f4' header padded so
 * that the data starts at a multiple of NPY_ALIGN; returns its length. */
static size_t npy_make_header(unsigned char *buf, size_t rows, size_t cols) {
    memcpy(buf, npy_magic, sizeof npy_magic);
    buf[6] = 1;
    buf[7] = 0;
    int n = snprintf((char *)buf + 10, 246,
                     "{'descr': '<f4', 'fortran_order': False, "
                     "'shape': (%zu, %zu), }", rows, cols);
    size_t used = 10 + (size_t)n + 1; /* + '\n' */
    size_t total = (used + NPY_ALIGN - 1) / NPY_ALIGN * NPY_ALIGN;
    memset(buf + 10 + n, ' ', total - used);
    buf[total - 1] = '\n';
    buf[8] = (unsigned char)((total - 10) & 0xff);
    buf[9] = (unsigned char)((total - 10) >> 8);
    return total;
}

/* Writes count floats as little-endian float32 (data borrowed). */
static duet_status npy_write_data(duet_atomic_file *af, const float *data,
                                  size_t count, duet_error *err) {
    if (!host_big()) return duet_atomic_write(af, data, count * sizeof *data, err);
    unsigned char chunk[4096];
    duet_status st = DUET_OK;
    for (size_t i = 0; i < count && st == DUET_OK; i += sizeof chunk / 4) {
        size_t k = count - i < sizeof chunk / 4 ? count - i : sizeof chunk / 4;
        for (size_t j = 0; j < k; j++) {
            uint32_t u;
            memcpy(&u, data + i + j, sizeof u);
            for (int b = 0; b < 4; b++) chunk[4 * j + b] = (unsigned char)(u >> 8 * b);
        }
        st = duet_atomic_write(af, chunk, 4 * k, err);
    }
    return st;
}

/* Writes m (borrowed) to path through "path.tmp.PID" and rename; on any
 * failure the temporary is removed and path is left untouched. */
duet_status duet_npy_write(const char *path, const duet_mat *m,
                           duet_error *err) {
    if (!path || !m)
        return duet_fail(err, DUET_ERR_INVALID_ARG,
                         "duet_npy_write: NULL path or matrix");
    size_t count, bytes;
    if (!duet_mul_size(m->rows, m->cols, &count) ||
        !duet_mul_size(count, sizeof(float), &bytes))
        return duet_fail(err, DUET_ERR_INVALID_ARG,
                         "%s: matrix %zu x %zu is too large", path, m->rows,
                         m->cols);
    if (count && !m->data)
        return duet_fail(err, DUET_ERR_INVALID_ARG,
                         "%s: matrix %zu x %zu has no data", path, m->rows,
                         m->cols);
    unsigned char hdr[256];
    size_t hl = npy_make_header(hdr, m->rows, m->cols);
    duet_atomic_file af;
    duet_status st = duet_atomic_open(&af, path, err);
    if (st != DUET_OK) return st;
    st = duet_atomic_write(&af, hdr, hl, err);
    if (st == DUET_OK) st = npy_write_data(&af, m->data, count, err);
    if (st != DUET_OK) {
        duet_atomic_abort(&af);
        return st;
    }
    return duet_atomic_commit(&af, err);
}
