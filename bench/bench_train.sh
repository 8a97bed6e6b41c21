#!/usr/bin/env bash
# make bench, part "train": duet beside PyTorch, same run, same threads.
#   train: seconds per training epoch, Flickr30K-sized random features, the
#          paper's configuration; duet (bench/bench_train.c) vs PyTorch
#          (bench/bench_train.py), 1 and 2 threads.
# OPENBLAS_CORETYPE stays as the machine sets it (see the README); with
# BENCH_UNSET_CORETYPE=1 a second pass runs both sides with it and
# OPENBLAS_L2_SIZE unset.
# Results: a table on stdout and bench/out/*.json. BENCH_IMAGES (default
# 29000) shrinks the problem for a quick look.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
IMAGES=${BENCH_IMAGES:-29000}
mkdir -p bench/out
out=bench/out/train.jsonl
: > "$out"

run_pass() {
  local label=$1
  for t in 1 2; do
    echo "train, $label, $t thread(s): duet ..." >&2
    "$BUILD/bench/bench_train" --threads "$t" --images "$IMAGES" | sed "s/^{/{\"env\":\"$label\",/" >> "$out"
    echo "train, $label, $t thread(s): pytorch ..." >&2
    /usr/bin/python3 bench/bench_train.py --threads "$t" --images "$IMAGES" | sed "s/^{/{\"env\":\"$label\",/" >> "$out"
  done
}

run_pass "coretype=${OPENBLAS_CORETYPE:-unset}"
if [ "${BENCH_UNSET_CORETYPE:-0}" = 1 ]; then
  (unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE; run_pass "coretype=unset")
fi

/usr/bin/python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("\nTraining epoch, %s images x 5 captions, 4096-D image / 6000-D text, hidden 2048, embed 512, B=500 x 2"
      % rows[0].get("images", "29000") if rows else "")
print("%-18s %7s %12s %12s %8s %18s" % ("env", "threads", "duet s/ep", "torch s/ep", "ratio", "duet GEMM eff."))
for env in dict.fromkeys(r["env"] for r in rows):
    for t in (1, 2):
        d = [r for r in rows if r["env"] == env and r["threads"] == t and r.get("impl") == "duet"]
        p = [r for r in rows if r["env"] == env and r["threads"] == t and r.get("peer") == "pytorch"]
        if not d or not p:
            continue
        d, p = d[0], p[0]
        print("%-18s %7d %12.2f %12.2f %7.2fx %9.1f / %.1f GF/s" % (
            env, t, d["seconds_per_epoch"], p["seconds_per_epoch"],
            p["seconds_per_epoch"] / d["seconds_per_epoch"], d["effective_gflops"], d["sgemm_peak_gflops"]))
print("ratio = PyTorch time / duet time (> 1: duet faster)")
PY
