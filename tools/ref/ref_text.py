#!/usr/bin/python3
"""Reference fixtures for the text part (issue 4), from scikit-learn and numpy.

Writes tests/fixtures/text/:
  gmm_*.npy     data, initialization and the result of scikit-learn's
                GaussianMixture(covariance_type='diag') after 25 EM iterations
  fv_*.npy      a fixed GMM and HGLMM, tokens of sentences and their Fisher
                vectors (numpy, float64, the definition of docs/TEXT.md)
  pca_*.npy     data and numpy's SVD of the centred data
  tfidf_*.npy / tfidf.tsv   captions and scikit-learn's TfidfVectorizer
Run: /usr/bin/python3 tools/ref/ref_text.py
"""
import os, re, sys, warnings
import numpy as np
from sklearn.mixture import GaussianMixture
from sklearn.feature_extraction.text import TfidfVectorizer

out = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "text")
os.makedirs(out, exist_ok=True)
def save(name, a):
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 0: a = a.reshape(1, 1)
    np.save(os.path.join(out, name + ".npy"), a)

rng = np.random.default_rng(4)

# ---- GMM vs scikit-learn
K, D, N = 3, 5, 600
centres = rng.normal(0, 3, (K, D))
lab = rng.integers(0, K, N)
X = (centres[lab] + rng.normal(0, 1, (N, D)) * rng.uniform(0.5, 1.5, (K, D))[lab]).astype(np.float32)
Xd = X.astype(np.float64)
w0 = np.full(K, 1.0 / K)
mu0 = Xd[[0, 1, 2]] + 0.1
var0 = np.tile(Xd.var(0), (K, 1))
mu0 = mu0.astype(np.float32).astype(np.float64); var0 = var0.astype(np.float32).astype(np.float64)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    g = GaussianMixture(K, covariance_type="diag", tol=0.0, max_iter=25, reg_covar=1e-6,
                        weights_init=w0, means_init=mu0, precisions_init=1.0 / var0).fit(Xd)
save("gmm_x", X); save("gmm_w0", w0); save("gmm_mu0", mu0); save("gmm_var0", var0)
save("gmm_w", g.weights_); save("gmm_mu", g.means_); save("gmm_var", g.covariances_)
save("gmm_score", g.score(Xd))
print("gmm: score %.6f, iters %d" % (g.score(Xd), g.n_iter_))

# ---- Fisher vectors (numpy reference of the definition)
K, D = 4, 6
w = rng.uniform(0.5, 1.5, K); w /= w.sum()
mu = rng.normal(0, 1, (K, D)); sc = rng.uniform(0.5, 1.5, (K, D))
lap = (rng.uniform(0, 1, (K, D)) < 0.5).astype(np.float64)
w, mu, sc = (a.astype(np.float32).astype(np.float64) for a in (w, mu, sc))
lens = [1, 3, 7, 12, 2]
toks = rng.normal(0, 1, (sum(lens), D)).astype(np.float32).astype(np.float64)
starts = np.concatenate([[0], np.cumsum(lens)])

def fisher(x, lapm):
    z = (x[:, None, :] - mu[None]) / sc[None]                      # T K D
    logn = np.where(lapm[None] > 0, -np.log(2 * sc)[None] - np.abs(z),
                    -0.5 * np.log(2 * np.pi) - np.log(sc)[None] - 0.5 * z * z)
    lp = np.log(w)[None] + logn.sum(2)
    lp -= lp.max(1, keepdims=True)
    g = np.exp(lp); g /= g.sum(1, keepdims=True)                   # T K
    T = x.shape[0]
    s1 = np.where(lapm[None] > 0, np.sign(z), z)
    s2 = np.where(lapm[None] > 0, np.abs(z) - 1, z * z - 1)
    G1 = (g[:, :, None] * s1).sum(0) / (T * np.sqrt(w)[:, None])
    G2 = (g[:, :, None] * s2).sum(0) / (T * np.where(lapm > 0, np.sqrt(w)[:, None], np.sqrt(2 * w)[:, None]))
    f = np.concatenate([G1.ravel(), G2.ravel()])
    f = np.sign(f) * np.sqrt(np.abs(f))
    return f / np.linalg.norm(f)

fv_g = np.stack([fisher(toks[a:b], np.zeros((K, D))) for a, b in zip(starts[:-1], starts[1:])])
fv_h = np.stack([fisher(toks[a:b], lap) for a, b in zip(starts[:-1], starts[1:])])
save("fv_w", w); save("fv_mu", mu); save("fv_scale", sc); save("fv_lap", lap)
save("fv_tokens", toks); save("fv_starts", starts); save("fv_gmm", fv_g); save("fv_hglmm", fv_h)

# ---- PCA vs numpy SVD
N, Din, Dout = 300, 12, 5
A = rng.normal(0, 1, (N, Din)) * np.linspace(3, 0.3, Din)
Q, _ = np.linalg.qr(rng.normal(0, 1, (Din, Din)))
P = (A @ Q + rng.normal(0, 1, Din)).astype(np.float32)
Pc = P.astype(np.float64) - P.astype(np.float64).mean(0)
U, S, Vt = np.linalg.svd(Pc, full_matrices=False)
save("pca_x", P); save("pca_vt", Vt[:Dout]); save("pca_var", S[:Dout] ** 2 / (N - 1))

# ---- tf-idf vs scikit-learn (ASCII captions: the duet rule is [a-z]+ after lowercasing)
words = "dog cat runs jumps red ball grass child water man woman blue bike street".split()
caps = []
for i in range(40):
    n = int(rng.integers(3, 9))
    caps.append(" ".join(rng.choice(words, n)).capitalize() + ("." if i % 3 else " 2 dogs' ball!"))
split = ["train"] * 30 + ["test"] * 10
with open(os.path.join(out, "tfidf.tsv"), "w") as f:
    for i, (c, s) in enumerate(zip(caps, split)):
        f.write("img%02d.jpg\t%s\t%s\n" % (i, c, s))
tok = lambda s: re.findall(r"[a-z]+", s.lower())
tv = TfidfVectorizer(analyzer=tok)           # smooth idf, l2 norm, raw tf
tv.fit(caps[:30])
M = tv.transform(caps).toarray()
assert list(tv.get_feature_names_out()) == sorted(tv.get_feature_names_out())
save("tfidf_all", M)
print("tfidf: vocab %d" % len(tv.vocabulary_))
