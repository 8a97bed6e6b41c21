"""make bench, part "search", FAISS side: IndexFlatIP (exact inner product)
on the gallery and queries bench_search --prepare wrote, same threads, best
of REPS runs. One JSON line on stdout (top1_sum must equal duet's)."""
import argparse, json, time
import numpy as np
import faiss

ap = argparse.ArgumentParser()
ap.add_argument("dir")
ap.add_argument("--k", type=int, default=10)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--reps", type=int, default=3)
a = ap.parse_args()
faiss.omp_set_num_threads(a.threads)
xb = np.ascontiguousarray(np.load(a.dir + "/gallery.npy", mmap_mode="r"), dtype=np.float32)
xq = np.ascontiguousarray(np.load(a.dir + "/queries.npy"), dtype=np.float32)
index = faiss.IndexFlatIP(xb.shape[1])
index.add(xb)
best = 1e30
for _ in range(a.reps):
    t0 = time.perf_counter()
    D, I = index.search(xq, a.k)
    best = min(best, time.perf_counter() - t0)
print(json.dumps({"part": "search", "peer": "faiss", "faiss_version": faiss.__version__, "n": int(xb.shape[0]),
                  "nq": int(xq.shape[0]), "d": int(xb.shape[1]), "k": a.k, "threads": a.threads,
                  "seconds": round(best, 6), "qps": round(xq.shape[0] / best, 1),
                  "top1_sum": int(I[:, 0].sum()),
                  "topk_sum": int((I.astype(np.int64) * np.arange(1, a.k + 1)).sum())}))
