/* tensorfile.c -- the container format of every file duet writes:
 * magic, version, a JSON header (jansson), float32 arrays and a CRC-32C of
 * all of it, verified on every read. See core.h. */
#include "core.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define TF_PREAMBLE 24          /* magic 8 + version 4 + mark 4 + len 8 */
#define TF_TRAILER 4            /* u32 CRC-32C of every byte before it     */
#define TF_ALIGN 64
#define TF_HEADER_MAX (64u << 20)

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "duet's file formats are little-endian; this host is not"
#endif

static void put_u32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get_u32(const char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get_u64(const char *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* Returns the header text with the "arrays" table added; caller frees. */
static char *header_with_arrays(const char *header_json,
                                const duet_tf_array *arrays, size_t n,
                                duet_error *err, const char *path) {
    json_error_t je;
    json_t *h = json_loads(header_json ? header_json : "{}", 0, &je);
    if (!h || !json_is_object(h)) {
        json_decref(h);
        duet_fail(err, DUET_ERR_INVALID_ARG, "%s: header is not a JSON object", path);
        return NULL;
    }
    json_t *tab = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(tab, json_pack("{s:s, s:I}", "name", arrays[i].name,
                                             "count", (json_int_t)arrays[i].count));
    json_object_set_new(h, "arrays", tab);
    char *s = json_dumps(h, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(h);
    if (!s) duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    return s;
}

/* Writes n bytes and folds them into *crc. */
static duet_status write_sum(duet_atomic_file *af, const void *p, size_t n, uint32_t *crc, duet_error *err) {
    *crc = duet_crc32c(*crc, p, n);
    return duet_atomic_write(af, p, n, err);
}

duet_status duet_tf_write(const char *path, const char magic[8],
                          uint32_t version, const char *header_json,
                          const duet_tf_array *arrays, size_t n_arrays,
                          duet_error *err) {
    return duet_tf_write_sum(path, magic, version, header_json, arrays, n_arrays, NULL, err);
}

duet_status duet_tf_write_sum(const char *path, const char magic[8],
                              uint32_t version, const char *header_json,
                              const duet_tf_array *arrays, size_t n_arrays,
                              uint32_t *crc_out, duet_error *err) {
    char *hdr = header_with_arrays(header_json, arrays, n_arrays, err, path);
    if (!hdr) return err ? err->status : DUET_ERR_NOMEM;
    size_t hlen = strlen(hdr);
    size_t pad = (TF_ALIGN - (TF_PREAMBLE + hlen) % TF_ALIGN) % TF_ALIGN;
    unsigned char pre[TF_PREAMBLE];
    memcpy(pre, magic, 8);
    put_u32(pre + 8, version);
    put_u32(pre + 12, DUET_TF_CRC_MARK);
    put_u64(pre + 16, (uint64_t)(hlen + pad));
    char spaces[TF_ALIGN];
    memset(spaces, ' ', sizeof spaces);
    duet_atomic_file af;
    duet_status st = duet_atomic_open(&af, path, err);
    if (st) { free(hdr); return st; }
    uint32_t crc = 0;
    st = write_sum(&af, pre, sizeof pre, &crc, err);
    if (!st) st = write_sum(&af, hdr, hlen, &crc, err);
    if (!st) st = write_sum(&af, spaces, pad, &crc, err);
    for (size_t i = 0; !st && i < n_arrays; i++)
        st = write_sum(&af, arrays[i].data, arrays[i].count * sizeof(float), &crc, err);
    unsigned char tr[TF_TRAILER];
    put_u32(tr, crc);
    if (!st) st = duet_atomic_write(&af, tr, sizeof tr, err);
    free(hdr);
    if (st) { duet_atomic_abort(&af); return st; }
    if (crc_out) *crc_out = crc;
    return duet_atomic_commit(&af, err);
}

void duet_tf_free(duet_tf_file *tf) {
    if (!tf) return;
    if (tf->names)
        for (size_t i = 0; i < tf->n_arrays; i++) free(tf->names[i]);
    free(tf->names);
    free(tf->data);
    free(tf->counts);
    json_decref((json_t *)tf->header);
    if (!tf->borrowed) free(tf->buf);
    memset(tf, 0, sizeof *tf);
}

/* Parses the "arrays" table and checks it against the bytes after the
 * header. */
static duet_status read_array_table(duet_tf_file *tf, const char *path,
                                    size_t data_off, duet_error *err) {
    json_t *tab = json_object_get((json_t *)tf->header, "arrays");
    if (!json_is_array(tab))
        return duet_fail(err, DUET_ERR_FORMAT, "%s: header field 'arrays' missing or not a list", path);
    size_t n = json_array_size(tab);
    if (n > 4096)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: header lists %zu arrays (at most 4096)", path, n);
    tf->names = calloc(n ? n : 1, sizeof *tf->names);
    tf->data = calloc(n ? n : 1, sizeof *tf->data);
    tf->counts = calloc(n ? n : 1, sizeof *tf->counts);
    if (!tf->names || !tf->data || !tf->counts)
        return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    tf->n_arrays = n;
    size_t avail = (tf->len - data_off) / sizeof(float), off = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *a = json_array_get(tab, i);
        json_t *nm = json_object_get(a, "name"), *ct = json_object_get(a, "count");
        if (!json_is_string(nm) || !json_is_integer(ct) || json_integer_value(ct) < 0)
            return duet_fail(err, DUET_ERR_FORMAT,
                             "%s: header field arrays[%zu] needs a string 'name' "
                             "and a non-negative integer 'count'", path, i);
        size_t c = (size_t)json_integer_value(ct);
        if (c > avail - off)
            return duet_fail(err, DUET_ERR_FORMAT,
                             "%s: truncated: array '%s' needs %zu floats, %zu remain",
                             path, json_string_value(nm), c, avail - off);
        tf->names[i] = duet_strdup(json_string_value(nm));
        if (!tf->names[i]) return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
        tf->data[i] = (float *)(void *)(tf->buf + data_off) + off;
        tf->counts[i] = c;
        off += c;
    }
    if (off * sizeof(float) != tf->len - data_off)
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s: %zu bytes after the arrays (file size disagrees with "
                         "its header)", path, tf->len - data_off - off * sizeof(float));
    return DUET_OK;
}

duet_status duet_tf_check(const char *buf, size_t len, const char *path, const char magic[8],
                          uint32_t want_version, const char *kind, size_t *body, int *verified,
                          uint32_t *crc, duet_error *err) {
    *body = len;
    *verified = 0;
    if (crc) *crc = 0;
    if (len < TF_PREAMBLE || memcmp(buf, magic, 8) != 0)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: not a duet %s file (bad magic)", path, kind);
    uint32_t v = get_u32(buf + 8), mark = get_u32(buf + 12);
    /* the version before checksums is read as it was, unverified */
    int legacy = want_version >= 2 && v == want_version - 1;
    if (v != want_version && !legacy)
        return duet_fail(err, DUET_ERR_VERSION, "%s: %s format version %u, this duet reads version %u%s",
                         path, kind, v, want_version, want_version >= 2 ? " (and the one before it)" : "");
    if (mark == 0 && legacy) return DUET_OK;
    if (mark != DUET_TF_CRC_MARK)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: corrupt: the %s file's checksum mark reads %08x "
                         "(want %08x)", path, kind, mark, DUET_TF_CRC_MARK);
    if (len < TF_PREAMBLE + TF_TRAILER)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: truncated: %zu bytes", path, len);
    uint32_t want = get_u32(buf + len - TF_TRAILER), got = duet_crc32c_parallel(buf, len - TF_TRAILER);
    if (want != got)
        return duet_fail(err, DUET_ERR_FORMAT, "%s: truncated or corrupt: checksum mismatch (the crc32c of the "
                         "%s file's %zu bytes is %08x, it records %08x)", path, kind, len - TF_TRAILER, got, want);
    *body = len - TF_TRAILER;
    *verified = 1;
    if (crc) *crc = got;
    return DUET_OK;
}

static duet_status tf_parse(char *buf, size_t len, int borrowed, const char *path,
                            const char magic[8], uint32_t want_version,
                            const char *kind, duet_tf_file *tf, duet_error *err) {
    memset(tf, 0, sizeof *tf);
    tf->buf = buf;
    tf->len = len;
    tf->borrowed = borrowed;
    duet_status cs = duet_tf_check(buf, len, path, magic, want_version, kind, &tf->len, &tf->checksum,
                                   &tf->crc, err);
    if (cs) {
        duet_tf_free(tf);
        return cs;
    }
    tf->version = get_u32(tf->buf + 8);
    uint64_t hlen = get_u64(tf->buf + 16);
    if (hlen > TF_HEADER_MAX || hlen > tf->len - TF_PREAMBLE ||
        (TF_PREAMBLE + hlen) % TF_ALIGN != 0) {
        duet_tf_free(tf);
        return duet_fail(err, DUET_ERR_FORMAT,
                         "%s: truncated or corrupt: a header of %llu bytes does not fit a %zu-byte file",
                         path, (unsigned long long)hlen, tf->len);
    }
    json_error_t je;
    tf->header = json_loadb(tf->buf + TF_PREAMBLE, (size_t)hlen, 0, &je);
    if (!tf->header || !json_is_object((json_t *)tf->header)) {
        duet_tf_free(tf);
        return duet_fail(err, DUET_ERR_FORMAT, "%s: header JSON: %s (line %d, column %d)",
                         path, je.text, je.line, je.column);
    }
    duet_status st = read_array_table(tf, path, TF_PREAMBLE + (size_t)hlen, err);
    if (st) duet_tf_free(tf);
    return st;
}

duet_status duet_tf_parse(char *buf, size_t len, const char *path,
                          const char magic[8], uint32_t want_version,
                          const char *kind, duet_tf_file *tf, duet_error *err) {
    return tf_parse(buf, len, 0, path, magic, want_version, kind, tf, err);
}

duet_status duet_tf_parse_view(const char *buf, size_t len, const char *path,
                               const char magic[8], uint32_t want_version,
                               const char *kind, duet_tf_file *tf, duet_error *err) {
    return tf_parse((char *)buf, len, 1, path, magic, want_version, kind, tf, err);
}

duet_status duet_tf_read(const char *path, const char magic[8],
                         uint32_t want_version, const char *kind,
                         duet_tf_file *tf, duet_error *err) {
    memset(tf, 0, sizeof *tf);
    char *buf;
    size_t len;
    duet_status st = duet_read_file(path, (size_t)1 << 40, &buf, &len, err);
    if (st) return st;
    return duet_tf_parse(buf, len, path, magic, want_version, kind, tf, err);
}

const float *duet_tf_array_get(const duet_tf_file *tf, const char *path,
                               const char *name, size_t count, size_t *got,
                               duet_error *err) {
    for (size_t i = 0; i < tf->n_arrays; i++) {
        if (strcmp(tf->names[i], name) != 0) continue;
        if (count && tf->counts[i] != count) {
            duet_fail(err, DUET_ERR_SHAPE, "%s: array '%s' holds %zu floats, its shapes need %zu",
                      path, name, tf->counts[i], count);
            return NULL;
        }
        if (got) *got = tf->counts[i];
        return tf->data[i];
    }
    duet_fail(err, DUET_ERR_FORMAT, "%s: array '%s' is missing", path, name);
    return NULL;
}

int duet_tf_file_checksummed(const char *path) {
    FILE *f = fopen(path, "rb");
    unsigned char pre[16];
    size_t got = f ? fread(pre, 1, sizeof pre, f) : 0;
    if (f) fclose(f);
    if (got != sizeof pre) return -1;
    uint32_t mark;
    memcpy(&mark, pre + 12, 4);
    return mark == DUET_TF_CRC_MARK;
}
