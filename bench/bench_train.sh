#!/usr/bin/env bash
# make bench, part "train": duet beside PyTorch, same run, same threads.
#   train: seconds per training epoch, Flickr30K-sized random features, the
#          paper's configuration; duet (bench/bench_train.c) in f32 and in
#          bf16 (mixed precision, where the CPU has native bf16) vs PyTorch
#          (bench/bench_train.py) in f32 and under bf16 autocast, 2 threads.
# OPENBLAS_CORETYPE stays as the machine sets it (see the README); with
# BENCH_UNSET_CORETYPE=1 a second pass runs both sides with it and
# OPENBLAS_L2_SIZE unset.
# BENCH_THREADS (default "2") lists the thread counts; BENCH_REPEAT (default
# 1) repeats each group of runs, interleaved, and the table shows the best of
# them (a shared machine's load only ever slows a run down; each run's 1-minute
# load average is in its JSON line).
# Results: a table on stdout and bench/out/*.json. BENCH_IMAGES (default
# 29000) shrinks the problem for a quick look.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
IMAGES=${BENCH_IMAGES:-29000}
THREADS=${BENCH_THREADS:-2}
REPEAT=${BENCH_REPEAT:-1}
mkdir -p bench/out
out=bench/out/train.jsonl
: > "$out"

# one JSON line from a run, tagged with the pass and the load average
tag() { sed "s/^{/{\"env\":\"$1\",\"load1\":$(cut -d' ' -f1 /proc/loadavg),/" >> "$out"; }

run_pass() {
  local label=$1 t r p
  for t in $THREADS; do
    for r in $(seq "$REPEAT"); do
      for p in f32 bf16; do
        echo "train, $label, $t thread(s), $p, run $r: duet ..." >&2
        if ! "$BUILD/bench/bench_train" --threads "$t" --images "$IMAGES" --precision "$p" | tag "$label"; then
          echo "train: duet $p skipped (see above)" >&2
        fi
        echo "train, $label, $t thread(s), $p, run $r: pytorch ..." >&2
        /usr/bin/python3 bench/bench_train.py --threads "$t" --images "$IMAGES" --precision "$p" | tag "$label"
      done
    done
  done
}

run_pass "coretype=${OPENBLAS_CORETYPE:-unset}"
if [ "${BENCH_UNSET_CORETYPE:-0}" = 1 ]; then
  (unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE; run_pass "coretype=unset")
fi

/usr/bin/python3 - "$out" "$IMAGES" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
isa = next((r["isa"] for r in rows if "isa" in r), "?")
print("\nTraining epoch, %s images x 5 captions, 4096-D image / 6000-D text, hidden 2048, embed 512, "
      "B=500 x 2; oneDNN ISA %s" % (sys.argv[2], isa))
print("%-18s %7s %10s %10s %10s %10s %12s %12s %18s" % (
    "env", "threads", "duet f32", "duet bf16", "torch f32", "torch bf16", "duet/torch", "bf16/f32",
    "duet GEMM eff."))

def best(env, t, who, prec):
    rs = [r for r in rows if r["env"] == env and r["threads"] == t and r.get("precision", "f32") == prec
          and (r.get("impl") == "duet" if who == "duet" else r.get("peer") == "pytorch")]
    return min(rs, key=lambda r: r["seconds_per_epoch"]) if rs else None

fmt = lambda r: "%10.2f" % r["seconds_per_epoch"] if r else "%10s" % "-"
for env in dict.fromkeys(r["env"] for r in rows):
    for t in sorted({r["threads"] for r in rows if r["env"] == env}):
        d32, d16 = best(env, t, "duet", "f32"), best(env, t, "duet", "bf16")
        p32, p16 = best(env, t, "torch", "f32"), best(env, t, "torch", "bf16")
        dbest = min((r for r in (d32, d16) if r), key=lambda r: r["seconds_per_epoch"], default=None)
        pbest = min((r for r in (p32, p16) if r), key=lambda r: r["seconds_per_epoch"], default=None)
        ratio = "%11.2fx" % (dbest["seconds_per_epoch"] / pbest["seconds_per_epoch"]) if dbest and pbest else "%12s" % "-"
        speed = "%11.2fx" % (d32["seconds_per_epoch"] / d16["seconds_per_epoch"]) if d32 and d16 else "%12s" % "-"
        eff = "; ".join("%s %.0f/%.0f GF/s" % (r["precision"], r["effective_gflops"], r["gemm_peak_gflops"])
                        for r in (d32, d16) if r)
        print("%-18s %7d %s %s %s %s %s %s  %s" % (env, t, fmt(d32), fmt(d16), fmt(p32), fmt(p16), ratio,
                                                   speed, eff))
print("seconds per epoch, best of %d run(s) each; duet/torch = duet's best / PyTorch's best "
      "(< 1: duet faster); bf16/f32 = duet's speed-up from bf16" % max(1, max(
          sum(1 for r in rows if r.get("impl") == "duet" and r["threads"] == t and r.get("precision") == "f32")
          for t in {r["threads"] for r in rows})))
PY
