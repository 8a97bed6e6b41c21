#!/usr/bin/python3
"""make bench, part "text": the numpy / scikit-learn side of bench_text.c.
Fisher vectors of the same sentences with a vectorized numpy implementation
(float32; posteriors by matmul, per-sentence sums by np.add.reduceat in
batches), and scikit-learn's GaussianMixture(covariance_type='diag') from the
same initialization for the same number of EM iterations. Threads are set
before numpy loads (OPENBLAS_NUM_THREADS / OMP_NUM_THREADS)."""
import os, sys, json, time, warnings
args = sys.argv[1:]
threads = int(args[args.index("--threads") + 1]) if "--threads" in args else 1
iters = int(args[args.index("--iters") + 1]) if "--iters" in args else 30
d = [a for i, a in enumerate(args) if not a.startswith("--") and (i == 0 or not args[i - 1].startswith("--"))][0]
for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[v] = str(threads)
import numpy as np
from sklearn.mixture import GaussianMixture

L = lambda n: np.load(os.path.join(d, n + ".npy"))
w, mu, var = L("fv_model_w").ravel(), L("fv_model_mu"), L("fv_model_var")
tok, st = L("fv_tokens"), L("fv_starts").ravel().astype(np.int64)
K, D = mu.shape
sig = np.sqrt(var).astype(np.float32)
iv = (1 / var).astype(np.float32); miv = (mu / var).astype(np.float32)
c = (np.log(w) - 0.5 * (np.log(2 * np.pi * var) + mu * mu / var).sum(1)).astype(np.float32)
f1 = (1 / np.sqrt(w)).astype(np.float32); f2 = (1 / np.sqrt(2 * w)).astype(np.float32)

def fisher(X, starts):
    lp = c + (X * X) @ (-0.5 * iv.T) + X @ miv.T
    lp -= lp.max(1, keepdims=True)
    g = np.exp(lp); g /= g.sum(1, keepdims=True)
    z = (X[:, None, :] - mu[None]) / sig[None]                 # T K D
    T = np.diff(np.append(starts, X.shape[0])).astype(np.float32)[:, None, None]
    s1 = np.add.reduceat(g[:, :, None] * z, starts, axis=0) / T * f1[None, :, None]
    s2 = np.add.reduceat(g[:, :, None] * (z * z - 1), starts, axis=0) / T * f2[None, :, None]
    f = np.concatenate([s1.reshape(len(starts), -1), s2.reshape(len(starts), -1)], 1)
    f = np.sign(f) * np.sqrt(np.abs(f))
    return f / np.linalg.norm(f, axis=1, keepdims=True)

n = len(st) - 1
best = 1e30
for rep in range(2):
    t0 = time.perf_counter()
    for b in range(0, n, 256):
        e = min(n, b + 256)
        out = fisher(tok[st[b]:st[e]], st[b:e] - st[b])
        if b == 0: first = out[:200]
    best = min(best, time.perf_counter() - t0)
ref = L("fv_duet") if os.path.exists(os.path.join(d, "fv_duet.npy")) else None
diff = float(np.abs(ref - first).max()) if ref is not None else None
print(json.dumps({"peer": "numpy", "what": "fisher_vectors", "threads": threads, "sentences": n,
                  "seconds": round(best, 4), "sentences_per_s": round(n / best, 1), "max_abs_diff_vs_duet": diff}))

X = L("gmm_x").astype(np.float64)
w0, m0, v0 = L("gmm_init_w").ravel().astype(np.float64), L("gmm_init_mu").astype(np.float64), L("gmm_init_var").astype(np.float64)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    g = GaussianMixture(K, covariance_type="diag", tol=0.0, max_iter=iters, reg_covar=1e-6,
                        weights_init=w0 / w0.sum(), means_init=m0, precisions_init=1 / v0).fit(X)
    t = time.perf_counter() - t0
print(json.dumps({"peer": "sklearn", "what": "gmm_fit", "threads": threads, "points": X.shape[0],
                  "iters": int(g.n_iter_), "seconds": round(t, 4), "score": round(float(g.score(X)), 6)}))
