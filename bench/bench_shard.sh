#!/usr/bin/env bash
# make bench, part "shard": (1) the cost of verifying an index's CRC-32C at
# open: duet_index_open (memory-mapped) of a 1M x 512 index beside one plain
# read pass over the same mapped bytes, 2 threads, file in the page cache;
# (2) sharded search: 1,000 text queries (k=10) on that gallery with
# `duet search`, one process x 2 threads on the whole index beside
# `mpirun -np 2` x 1 thread on 2 shards (and 1 x 1 for scale), best of
# BENCH_SHARD_REPS (3); the answers must be identical. The model is a
# small one trained here on the search-test gallery with 512-D embeddings
# (only query encoding uses it). BENCH_SHARD_N (1000000) shrinks it. Needs
# the MobileNetV2 weights (../shared/data) and mpirun. Results: a table on
# stdout and bench/out/shard.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
N=${BENCH_SHARD_N:-1000000}
REPS=${BENCH_SHARD_REPS:-3}
DUET=$(pwd)/$BUILD/duet
mkdir -p bench/out
out=bench/out/shard.jsonl
: > "$out"
tmp=$(mktemp -d /tmp/duet-bench-shard.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
DUET=$DUET tests/lib/search_gallery.sh "$tmp/g" 24 || { echo "bench shard: the gallery could not be built" >&2; exit 1; }
( cd "$tmp/g" && "$DUET" train --dataset tsv:caps.tsv --image-features img.npy --text-features txt.npy \
    --text-model tm.model --image-model "mobilenetv2 crops=1" --hidden 64 --embed-dim 512 --epochs 2 \
    -o m512.duet >/dev/null 2>&1 )
echo "shard: writing a $N x 512 index whole and in 2 shards ..." >&2
"$BUILD/bench/bench_shard" write --n "$N" --d 512 --shards 2 --model "$tmp/g/m512.duet" \
  --textmodel "$tmp/g/tm.model" --dir "$tmp" >> "$out"
echo "shard: open (verify) ..." >&2
"$BUILD/bench/bench_shard" open --index "$tmp/whole.index" --reps "$REPS" --threads 2 >> "$out"
"$BUILD/bench/bench_shard" open --index "$tmp/whole.index" --reps "$REPS" --threads 1 >> "$out"
/usr/bin/python3 - "$tmp/q.txt" <<'PY'
import random, sys
r = random.Random(3)
w = "a the red blue green yellow white black square circle stripes cross shape background over on".split()
with open(sys.argv[1], "w") as f:
    for i in range(1000): f.write(" ".join(r.choice(w) for _ in range(4)) + "\n")
PY
# one run: prints {"label", "search_ms", "load_ms"} and keeps the answers
run() {
  local label=$1 ans=$2; shift 2
  "$@" --queries "$tmp/q.txt" -k 10 --json >"$ans" 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
  sed -n 's/.*load \([0-9.]*\) ms, encode \([0-9.]*\) ms, prepare \([0-9.]*\) ms, search \([0-9.]*\) ms.*/{"part":"shard-search","label":"'"$label"'","load_ms":\1,"encode_ms":\2,"prepare_ms":\3,"search_ms":\4}/p' "$tmp/err"
}
for r in $(seq 1 "$REPS"); do
  echo "shard: search rep $r/$REPS ..." >&2
  run "1 process x 2 threads, whole" "$tmp/a1.json" "$DUET" search --index "$tmp/whole.index" --threads 2 >> "$out"
  run "1 process x 1 thread, whole" "$tmp/a0.json" "$DUET" search --index "$tmp/whole.index" --threads 1 >> "$out"
  run "2 ranks x 1 thread, 2 shards" "$tmp/a2.json" mpirun --oversubscribe --bind-to none -np 2 "$DUET" search \
    --index "$tmp/sh.index" --threads 1 >> "$out"
done
same=$(/usr/bin/python3 -c 'import json,sys; a,b=[[json.loads(l)["results"] for l in open(f)] for f in sys.argv[1:]]; print("yes" if a==b else "NO")' "$tmp/a1.json" "$tmp/a2.json")
/usr/bin/python3 - "$out" "$same" "$("$DUET" info | sed -n 's/^instruction set: //p')" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
w = [r for r in rows if r["part"] == "shard-write"][0]
print("\nCRC-32C verified at open, %d x %d index (%.2f GB), page cache warm, best of runs" % (w["n"], w["d"],
      [r for r in rows if r["part"] == "shard-open"][0]["bytes"] / 1e9))
print("%-8s %12s %16s %8s %18s" % ("threads", "open s", "read pass s", "ratio", "CRC in memory GB/s"))
for r in [r for r in rows if r["part"] == "shard-open"]:
    print("%-8d %12.3f %16.3f %7.2fx %18.1f" % (r["threads"], r["open_s"], r["read_pass_s"],
          r["open_s"] / r["read_pass_s"], r["crc_gb_s"]))
print("\nsearch of 1,000 queries (k=10), best of runs, ms (duet's own timers, rank 0's: load = index (with its")
print("checksum) + model, prepare = the searcher (bf16: the gallery's bf16 copy), search = top-k incl. broadcast,")
print("gather and merge)")
print("%-32s %10s %10s %10s %10s" % ("", "load", "encode", "prepare", "search"))
best = {}
for r in [r for r in rows if r["part"] == "shard-search"]:
    b = best.setdefault(r["label"], dict(r))
    for k in ("load_ms", "encode_ms", "prepare_ms", "search_ms"): b[k] = min(b[k], r[k])
for lab, b in best.items():
    print("%-32s %10.1f %10.1f %10.1f %10.1f" % (lab, b["load_ms"], b["encode_ms"], b["prepare_ms"], b["search_ms"]))
a, c = best.get("1 process x 2 threads, whole"), best.get("2 ranks x 1 thread, 2 shards")
if a and c:
    print("2 ranks x 1 thread / 1 process x 2 threads: search %.2fx, prepare + search %.2fx; same answers: %s; ISA %s" % (
          c["search_ms"] / a["search_ms"], (c["search_ms"] + c["prepare_ms"]) / (a["search_ms"] + a["prepare_ms"]),
          sys.argv[2], sys.argv[3]))
PY
