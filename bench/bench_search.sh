#!/usr/bin/env bash
# make bench, part "search": exact top-k (k=10) of 1,000 random 512-D unit
# queries against 100k and 1M random unit gallery vectors, duet
# (bench/bench_search.c: duet_topk, sgemm blocks + k-heaps) beside FAISS
# IndexFlatIP (bench/bench_search.py, Debian python3-faiss) on the same
# vectors, same threads (1 and 2), best of BENCH_SEARCH_REPS (3) runs each.
# BENCH_SEARCH_N (default "100000 1000000") and BENCH_SEARCH_NQ (1000) shrink
# the problem. Results: a table on stdout and bench/out/search.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
NQ=${BENCH_SEARCH_NQ:-1000}
REPS=${BENCH_SEARCH_REPS:-3}
mkdir -p bench/out
out=bench/out/search.jsonl
: > "$out"
tmp=$(mktemp -d /tmp/duet-bench-search.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
for n in ${BENCH_SEARCH_N:-100000 1000000}; do
  for t in 1 2; do
    echo "search, n=$n, $t thread(s): duet f32 ..." >&2
    prep=(); [ "$t" = 1 ] && prep=(--prepare "$tmp")
    "$BUILD/bench/bench_search" --n "$n" --nq "$NQ" --threads "$t" --reps "$REPS" --precision f32 "${prep[@]}" >> "$out"
    if "$BUILD/duet" info | grep -q "native bf16: yes"; then
      echo "search, n=$n, $t thread(s): duet bf16 ..." >&2
      "$BUILD/bench/bench_search" --n "$n" --nq "$NQ" --threads "$t" --reps "$REPS" --precision bf16 >> "$out"
    fi
    echo "search, n=$n, $t thread(s): faiss ..." >&2
    # FAISS threads are OpenMP, its sgemm OpenBLAS's own: pin both to t
    OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t /usr/bin/python3 bench/bench_search.py "$tmp" --threads "$t" --reps "$REPS" >> "$out"
  done
  rm -f "$tmp"/*.npy
done
/usr/bin/python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("\nexact top-10 search, %s queries x 512-D unit vectors, seconds (best run) and queries/s"
      % (rows[0]["nq"] if rows else "?"))
print("%-9s %7s %-5s %10s %10s %11s %11s %8s %6s" % ("gallery", "threads", "duet", "duet s", "faiss s", "duet q/s",
                                                     "faiss q/s", "ratio", "same"))
isa = "?"
for n in sorted({r["n"] for r in rows}):
    for t in (1, 2):
        f = [r for r in rows if r.get("peer") == "faiss" and r["n"] == n and r["threads"] == t]
        for d in [r for r in rows if r.get("impl") == "duet" and r["n"] == n and r["threads"] == t]:
            if not f:
                continue
            isa = d.get("isa", isa)
            print("%-9d %7d %-5s %10.3f %10.3f %11.0f %11.0f %7.2fx %6s" % (n, t, d.get("precision", "f32"),
                  d["seconds"], f[0]["seconds"], d["qps"], f[0]["qps"], f[0]["seconds"] / d["seconds"],
                  "yes" if d.get("topk_sum") == f[0].get("topk_sum") else "NO"))
print("ratio = FAISS seconds / duet seconds (> 1: duet faster); same = the top-10 lists agree (checksum of\n"
      "index x rank). FAISS %s IndexFlatIP; duet_searcher on oneDNN (%s)." % (
      rows[-1].get("faiss_version", "?") if rows else "?", isa))
PY
