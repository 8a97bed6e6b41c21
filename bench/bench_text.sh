#!/usr/bin/env bash
# make bench, part "text": duet beside numpy and scikit-learn, same run, same
# threads (1 and 2).
#   Fisher vectors: sentences/s encoding 20,000 sentences of 6-18 100-D word
#     vectors over a 30-component diagonal GMM (6000-D vectors); duet
#     (bench/bench_text.c) vs a vectorized numpy implementation
#     (bench/bench_text.py), with the max |difference| of the first 200.
#   GMM fit: seconds for 30 EM iterations (tol 0), K=30, 100,000 x 100-D
#     points, from the same initialization; duet vs scikit-learn's
#     GaussianMixture(covariance_type='diag'), with both final scores.
# BENCH_TEXT_SENTENCES / BENCH_TEXT_POINTS shrink the problem.
# Results: a table on stdout and bench/out/text.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
mkdir -p bench/out
out=bench/out/text.jsonl
: > "$out"
tmp=$(mktemp -d /tmp/duet-bench-text.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
"$BUILD/bench/bench_text" --prepare "$tmp" --sentences "${BENCH_TEXT_SENTENCES:-20000}" --points "${BENCH_TEXT_POINTS:-100000}"
for t in 1 2; do
  echo "text, $t thread(s): duet ..." >&2
  "$BUILD/bench/bench_text" "$tmp" --threads "$t" >> "$out"
  echo "text, $t thread(s): numpy / scikit-learn ..." >&2
  /usr/bin/python3 bench/bench_text.py "$tmp" --threads "$t" >> "$out"
done
/usr/bin/python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def get(what, who, t):
    r = [x for x in rows if x["what"] == what and x["threads"] == t and (x.get("impl") == who or x.get("peer") == who)]
    return r[0] if r else None
print("\nFisher vectors (K=30, D=100, 6000-D), sentences/s, and GMM EM fit (K=30, 100-D, 30 iterations), s")
print("%7s %14s %14s %8s %10s | %10s %10s %8s" % ("threads", "duet sent/s", "numpy sent/s", "ratio", "max|diff|",
                                                   "duet fit s", "sklearn s", "ratio"))
for t in (1, 2):
    a, b = get("fisher_vectors", "duet", t), get("fisher_vectors", "numpy", t)
    c, d = get("gmm_fit", "duet", t), get("gmm_fit", "sklearn", t)
    if not (a and b and c and d): continue
    print("%7d %14.0f %14.0f %7.1fx %10.2g | %10.2f %10.2f %7.1fx" % (t, a["sentences_per_s"], b["sentences_per_s"],
          a["sentences_per_s"] / b["sentences_per_s"], b["max_abs_diff_vs_duet"] or 0, c["seconds"], d["seconds"],
          d["seconds"] / c["seconds"]))
    print("        scores after the fit: duet %.6f, scikit-learn %.6f" % (c["score"], d["score"]))
print("ratio > 1: duet faster")
PY
