/* textmodel_file.c -- the text model file: a tensor file (magic
 * "DUETTXTM") whose header names the encoder, tokenizer and sizes and whose
 * arrays hold the vocabularies, word vectors, mixtures, ICA and PCA. Save,
 * load (every array checked finite, mixture constants recomputed), and
 * duet_file_hash. */
#define _POSIX_C_SOURCE 200809L
#include "text.h"
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char TM_MAGIC[8] = {'D', 'U', 'E', 'T', 'T', 'X', 'T', 'M'};
#define TOKENIZER "letters-v1"

/* ------------------------------------------------------------ file */

static size_t slots(size_t bytes) { return (bytes + 3) / 4; }

static float *blob_slots(const duet_vocab *v, size_t *bl) {
    size_t len;
    char *b = duet_textmodel_pack_words(v->word, v->n, &len);
    if (!b) return NULL;
    float *f = calloc(slots(len) ? slots(len) : 1, 4);
    if (f) memcpy(f, b, len);
    free(b);
    *bl = len;
    return f;
}

duet_status duet_textmodel_save(const duet_textmodel *m, const char *path, duet_error *err) {
    size_t wbl = 0, tbl = 0;
    float *wb = m->wv.n ? blob_slots(&m->wv, &wbl) : NULL;
    float *tb = m->tv.n ? blob_slots(&m->tv, &tbl) : NULL;
    size_t K = m->p.components, D = m->wd;
    float *lapf = NULL;
    duet_status s = DUET_OK;
    if ((m->wv.n && !wb) || (m->tv.n && !tb)) s = duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    if (!s && m->has_hglmm) {
        lapf = duet_alloc_array(K, D * sizeof(float));
        if (!lapf) s = duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
        else for (size_t i = 0; i < K * D; i++) lapf[i] = m->fh.lap[i];
    }
    json_t *hj = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:b}",
                           "kind", "duet text model", "encoder", duet_encoder_name(m->enc),
                           "tokenizer", TOKENIZER, "components", (json_int_t)K,
                           "word_dim", (json_int_t)D, "n_words", (json_int_t)m->wv.n,
                           "vocab_bytes", (json_int_t)wbl, "n_tfidf", (json_int_t)m->tv.n,
                           "tfidf_vocab_bytes", (json_int_t)tbl, "raw_dim", (json_int_t)m->dim_raw,
                           "pca_dim", (json_int_t)m->pca_out, "dim", (json_int_t)m->dim,
                           "gmm", m->has_gmm, "hglmm", m->has_hglmm);
    if (hj) json_object_set_new(hj, "ica", json_boolean(m->has_ica));
    /* written only when not the exact f32 PCA, so such files stay as they were */
    if (hj && m->pca_out && m->p.pca_method == DUET_PCA_RANDOMIZED)
        json_object_set_new(hj, "pca_method", json_string(duet_pca_method_name(m->p.pca_method)));
    if (hj && m->pca_out && m->pca_bf16) json_object_set_new(hj, "pca_precision", json_string("bf16"));
    char *hs = hj ? json_dumps(hj, JSON_PRESERVE_ORDER) : NULL;
    json_decref(hj);
    if (!s && !hs) s = duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    if (!s) {
        duet_tf_array a[16];
        size_t na = 0;
        if (m->wv.n) { a[na++] = (duet_tf_array){"vocab_utf8", wb, slots(wbl)}; a[na++] = (duet_tf_array){"word_vectors", m->wvec, m->wv.n * D}; }
        if (m->tv.n) { a[na++] = (duet_tf_array){"tfidf_vocab_utf8", tb, slots(tbl)}; a[na++] = (duet_tf_array){"idf", m->idf, m->tv.n}; }
        if (m->has_gmm) {
            a[na++] = (duet_tf_array){"gmm_weights", m->fg.w, K};
            a[na++] = (duet_tf_array){"gmm_means", m->fg.mu, K * D};
            a[na++] = (duet_tf_array){"gmm_sigmas", m->fg.scale, K * D};
        }
        if (m->has_hglmm) {
            a[na++] = (duet_tf_array){"hglmm_weights", m->fh.w, K};
            a[na++] = (duet_tf_array){"hglmm_means", m->fh.mu, K * D};
            a[na++] = (duet_tf_array){"hglmm_scales", m->fh.scale, K * D};
            a[na++] = (duet_tf_array){"hglmm_laplace", lapf, K * D};
        }
        if (m->has_ica) {
            a[na++] = (duet_tf_array){"ica_mean", m->ica_mean, D};
            a[na++] = (duet_tf_array){"ica_unmixing", m->ica_unmix, D * D};
        }
        if (m->pca_out) {
            a[na++] = (duet_tf_array){"pca_mean", m->pca_mean, m->dim_raw};
            a[na++] = (duet_tf_array){"pca_basis", m->pca_basis, m->dim_raw * m->pca_out};
        }
        s = duet_tf_write(path, TM_MAGIC, DUET_TEXTMODEL_FORMAT_VERSION, hs, a, na, err);
    }
    free(hs); free(wb); free(tb); free(lapf);
    return s;
}

static long long jint(json_t *h, const char *k) {
    json_t *x = json_object_get(h, k);
    return json_is_integer(x) ? (long long)json_integer_value(x) : -1;
}

static float *dup_arr(const duet_tf_file *tf, const char *path, const char *name, size_t count, duet_error *err) {
    const float *a = duet_tf_array_get(tf, path, name, count, NULL, err);
    if (!a) return NULL;
    float *c = duet_alloc_array(count ? count : 1, sizeof(float));
    if (!c) { duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path); return NULL; }
    memcpy(c, a, count * sizeof(float));
    for (size_t i = 0; i < count; i++)
        if (!isfinite(c[i])) { free(c); duet_fail(err, DUET_ERR_NONFINITE, "%s: array '%s': element %zu is not finite", path, name, i); return NULL; }
    return c;
}

static duet_status load_vocab(const duet_tf_file *tf, const char *path, const char *arr, size_t n, long long bl,
                              duet_vocab *v, duet_error *err) {
    if (bl < (long long)n || bl > (1ll << 40)) return duet_fail(err, DUET_ERR_FORMAT, "%s: vocabulary byte count out of range for '%s'", path, arr);
    const float *b = duet_tf_array_get(tf, path, arr, slots((size_t)bl), NULL, err);
    if (!b) return err ? err->status : DUET_ERR_FORMAT;
    return duet_vocab_build(v, (const char *)(const void *)b, (size_t)bl, n, 1, path, err);
}

static duet_status mix_load(duet_fv_model *f, int kind, const duet_tf_file *tf, const char *path,
                            size_t K, size_t D, duet_error *err) {
    const char *pre = kind ? "hglmm" : "gmm";
    char nw[32], nm[32], ns[32], nl[32];
    snprintf(nw, sizeof nw, "%s_weights", pre); snprintf(nm, sizeof nm, "%s_means", pre);
    snprintf(ns, sizeof ns, "%s_%s", pre, kind ? "scales" : "sigmas"); snprintf(nl, sizeof nl, "%s_laplace", pre);
    memset(f, 0, sizeof *f);
    f->kind = kind; f->k = K; f->d = D;
    f->w = dup_arr(tf, path, nw, K, err);
    f->mu = f->w ? dup_arr(tf, path, nm, K * D, err) : NULL;
    f->scale = f->mu ? dup_arr(tf, path, ns, K * D, err) : NULL;
    float *lap = f->scale && kind ? dup_arr(tf, path, nl, K * D, err) : NULL;
    f->lap = calloc((K * D) != 0 ? K * D : 1, 1);
    f->logc = duet_alloc_array(K, sizeof(float));
    f->inv_var = duet_alloc_array(K, D * sizeof(float));
    f->mu_iv = duet_alloc_array(K, D * sizeof(float));
    if (!f->scale || (kind && !lap) || !f->lap || !f->logc || !f->inv_var || !f->mu_iv) {
        free(lap);
        return err && err->status ? err->status : duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    }
    for (size_t i = 0; i < K; i++)
        if (!(f->w[i] > 0)) { free(lap); return duet_fail(err, DUET_ERR_FORMAT, "%s: %s: weight %zu is not positive", path, nw, i); }
    for (size_t i = 0; i < K * D; i++) {
        if (!(f->scale[i] > 0)) { free(lap); return duet_fail(err, DUET_ERR_FORMAT, "%s: %s: element %zu is not positive", path, ns, i); }
        if (lap) f->lap[i] = lap[i] != 0;
    }
    free(lap);
    /* the same constants as duet_fv_from_gmm / _hglmm */
    duet_hglmm h;
    if (duet_hglmm_alloc(&h, K, D)) return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    for (size_t a = 0; a < K; a++) h.w[a] = f->w[a];
    for (size_t i = 0; i < K * D; i++) { h.mu[i] = f->mu[i]; h.scale[i] = f->scale[i]; h.lap[i] = f->lap[i]; }
    duet_fv_model tmp;
    duet_status s = duet_fv_from_hglmm(&tmp, &h);
    duet_hglmm_free(&h);
    if (s) return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path);
    memcpy(f->logc, tmp.logc, K * sizeof(float));
    memcpy(f->inv_var, tmp.inv_var, K * D * sizeof(float));
    memcpy(f->mu_iv, tmp.mu_iv, K * D * sizeof(float));
    duet_fv_free(&tmp);
    return DUET_OK;
}

/* The text model of a tensor file read (tf, released here). */
static duet_status load_tf(duet_tf_file tf, const char *path, duet_textmodel **out, duet_error *err) {
    duet_status s = DUET_OK;
    json_t *h = (json_t *)tf.header;
    duet_textmodel *m = calloc(1, sizeof *m);
    if (!m) { duet_tf_free(&tf); return duet_fail(err, DUET_ERR_NOMEM, "%s: out of memory", path); }
    json_t *je = json_object_get(h, "encoder"), *jt = json_object_get(h, "tokenizer");
    int enc = json_is_string(je) ? duet_encoder_parse(json_string_value(je)) : -1;
    long long K = jint(h, "components"), D = jint(h, "word_dim"), nw = jint(h, "n_words"),
              nt = jint(h, "n_tfidf"), pca = jint(h, "pca_dim"), dim = jint(h, "dim"), raw = jint(h, "raw_dim");
    if (enc < 0) { s = duet_fail(err, DUET_ERR_FORMAT, "%s: header field 'encoder' missing or unknown", path); goto done; }
    if (!json_is_string(jt) || strcmp(json_string_value(jt), TOKENIZER) != 0) { s = duet_fail(err, DUET_ERR_VERSION, "%s: tokenizer '%s', this duet has '%s'", path, json_is_string(jt) ? json_string_value(jt) : "?", TOKENIZER); goto done; }
    if (K < 0 || K > 4096 || D < 0 || D > 100000 || nw < 0 || nt < 0 || pca < 0 || dim < 1 || raw < 1) { s = duet_fail(err, DUET_ERR_FORMAT, "%s: header fields components, word_dim, n_words, n_tfidf, pca_dim, dim, raw_dim missing or out of range", path); goto done; }
    m->enc = (duet_encoder)enc;
    m->p = duet_textmodel_default_params();
    m->p.encoder = m->enc; m->p.components = (size_t)K; m->p.pca_dim = (size_t)pca;
    m->wd = (size_t)D;
    if (m->enc == DUET_ENC_TFIDF) {
        if (nt < 1) { s = duet_fail(err, DUET_ERR_FORMAT, "%s: a tf-idf model without vocabulary", path); goto done; }
        if ((s = load_vocab(&tf, path, "tfidf_vocab_utf8", (size_t)nt, jint(h, "tfidf_vocab_bytes"), &m->tv, err))) goto done;
        if (!(m->idf = dup_arr(&tf, path, "idf", (size_t)nt, err))) { s = err ? err->status : DUET_ERR_FORMAT; goto done; }
    } else {
        size_t cnt;
        if (nw < 1 || D < 1 || !duet_mul_size((size_t)nw, (size_t)D, &cnt)) { s = duet_fail(err, DUET_ERR_FORMAT, "%s: word vectors missing", path); goto done; }
        if ((s = load_vocab(&tf, path, "vocab_utf8", (size_t)nw, jint(h, "vocab_bytes"), &m->wv, err))) goto done;
        if (!(m->wvec = dup_arr(&tf, path, "word_vectors", cnt, err))) { s = err ? err->status : DUET_ERR_FORMAT; goto done; }
    }
    if (m->enc >= DUET_ENC_FV_GMM) {
        if (K < 1) { s = duet_fail(err, DUET_ERR_FORMAT, "%s: a Fisher-vector model with 0 components", path); goto done; }
        if (m->enc != DUET_ENC_FV_HGLMM) { if ((s = mix_load(&m->fg, 0, &tf, path, (size_t)K, (size_t)D, err))) goto done; m->has_gmm = 1; }
        if (m->enc != DUET_ENC_FV_GMM) { if ((s = mix_load(&m->fh, 1, &tf, path, (size_t)K, (size_t)D, err))) goto done; m->has_hglmm = 1; }
    }
    if (json_is_true(json_object_get(h, "ica"))) {
        if (m->enc < DUET_ENC_FV_GMM || D < 1) { s = duet_fail(err, DUET_ERR_FORMAT, "%s: 'ica' set for an encoder without mixtures", path); goto done; }
        if (!(m->ica_mean = dup_arr(&tf, path, "ica_mean", (size_t)D, err))) { s = err ? err->status : DUET_ERR_FORMAT; goto done; }
        if (!(m->ica_unmix = dup_arr(&tf, path, "ica_unmixing", (size_t)D * (size_t)D, err))) { s = err ? err->status : DUET_ERR_FORMAT; goto done; }
        m->has_ica = 1;
        m->p.ica = 1;
    }
    duet_textmodel_set_dims(m);
    if ((long long)m->dim_raw != raw) { s = duet_fail(err, DUET_ERR_SHAPE, "%s: raw_dim %lld disagrees with the encoder's %zu", path, raw, m->dim_raw); goto done; }
    if (pca) {
        size_t cnt;
        if ((size_t)pca > m->dim_raw || !duet_mul_size(m->dim_raw, (size_t)pca, &cnt)) { s = duet_fail(err, DUET_ERR_SHAPE, "%s: pca_dim %lld out of range", path, pca); goto done; }
        if (!(m->pca_mean = dup_arr(&tf, path, "pca_mean", m->dim_raw, err))) { s = err ? err->status : DUET_ERR_FORMAT; goto done; }
        if (!(m->pca_basis = dup_arr(&tf, path, "pca_basis", cnt, err))) { s = err ? err->status : DUET_ERR_FORMAT; goto done; }
        m->pca_out = (size_t)pca;
        /* absent in files from before the randomized PCA: exact, f32 */
        json_t *pm = json_object_get(h, "pca_method"), *pp = json_object_get(h, "pca_precision");
        int meth = pm ? (json_is_string(pm) ? duet_pca_method_parse(json_string_value(pm)) : -1) : DUET_PCA_EXACT;
        if (meth < 0 || (pp && (!json_is_string(pp) || strcmp(json_string_value(pp), "bf16") != 0))) { s = duet_fail(err, DUET_ERR_FORMAT, "%s: header field pca_method or pca_precision is not one this duet knows", path); goto done; }
        m->p.pca_method = meth;
        m->pca_bf16 = pp != NULL;
        m->p.precision = pp ? DUET_PRECISION_BF16 : DUET_PRECISION_F32;
        if ((s = duet_textmodel_prepare_pca(m, err))) goto done;
    }
    duet_textmodel_set_dims(m);
    if ((long long)m->dim != dim) { s = duet_fail(err, DUET_ERR_SHAPE, "%s: dim %lld disagrees with the encoder's %zu", path, dim, m->dim); goto done; }
done:
    duet_tf_free(&tf);
    if (s) { duet_textmodel_free(m); return s; }
    *out = m;
    return DUET_OK;
}

duet_status duet_textmodel_load(const char *path, duet_textmodel **out, duet_error *err) {
    *out = NULL;
    duet_tf_file tf;
    duet_status s = duet_tf_read(path, TM_MAGIC, DUET_TEXTMODEL_FORMAT_VERSION, "text model", &tf, err);
    return s ? s : load_tf(tf, path, out, err);
}

duet_status duet_textmodel_load_mem(char *buf, size_t len, const char *name, duet_textmodel **out,
                                    duet_error *err) {
    *out = NULL;
    duet_tf_file tf;
    duet_status s = duet_tf_parse(buf, len, name, TM_MAGIC, DUET_TEXTMODEL_FORMAT_VERSION, "text model", &tf, err);
    return s ? s : load_tf(tf, name, out, err);
}

duet_status duet_file_hash(const char *path, char hex[17], duet_error *err) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return duet_fail(err, DUET_ERR_IO, "%s: cannot open", path);
    uint64_t h = 1469598103934665603ull;
    unsigned char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, fp)) > 0)
        for (size_t i = 0; i < n; i++) { h ^= buf[i]; h *= 1099511628211ull; }
    int bad = ferror(fp);
    fclose(fp);
    if (bad) return duet_fail(err, DUET_ERR_IO, "%s: read error", path);
    snprintf(hex, 17, "%016llx", (unsigned long long)h);
    return DUET_OK;
}
