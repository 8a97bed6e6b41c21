#!/usr/bin/env bash
# make bench, part "scale": data-parallel training (docs/SCALE.md) on one
# machine: one epoch of `duet train` as 2 ranks x 1 thread (mpirun -np 2)
# against 1 rank x 2 threads, same data, same batches; and the bytes a rank
# sends per step. Flickr8K-shaped synthetic features (6,000 training images,
# 5 captions each, 2048-D images, 6000-D text), the default model and batch
# (B = 500, S = 2), the machine's default precision (DUET_PRECISION).
# BENCH_REPEAT (default 2) repeats the pair, interleaved; the table shows
# the best epoch of each (a shared machine's load only slows a run down).
# Results: a table on stdout and bench/out/scale.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
REPEAT=${BENCH_REPEAT:-2}
D=$(mktemp -d /tmp/duet-bench-scale.XXXXXX)
trap 'rm -rf "$D"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p bench/out
out=bench/out/scale.jsonl
: > "$out"
"$BUILD/duet" synth -o "$D" --train 6000 --val 1000 --test 1000 --captions 5 --image-dim 2048 \
  --text-dim 6000 >/dev/null
TR=(train --dataset "tsv:$D/captions.tsv" --image-features "$D/images.npy" --text-features "$D/texts.npy"
    --epochs 1 --json -o "$D/m.duet")
epoch() { grep -o '"epochs":\[{"epoch":1,"loss":[0-9.]*,"val_rsum":[0-9.-]*,"seconds":[0-9.]*' | sed 's/.*"seconds"://'; }
best1=; best2=; bytes=
for i in $(seq 1 "$REPEAT"); do
  s1=$("$BUILD/duet" "${TR[@]}" --threads 2 2>/dev/null | epoch)
  s2=$(mpirun --oversubscribe --bind-to none -np 2 "$BUILD/duet" "${TR[@]}" --threads 1 2>"$D/mpi.err" | epoch)
  b=$(sed -n 's/.*rank 0 sent \([0-9.]*\) MB per step.*/\1/p' "$D/mpi.err")
  load=$(cut -d' ' -f1 /proc/loadavg)
  echo "{\"run\":$i,\"one_rank_2_threads_s\":$s1,\"two_ranks_1_thread_s\":$s2,\"mb_per_step\":$b,\"load1\":$load}" >> "$out"
  best1=$(printf '%s\n%s\n' "${best1:-$s1}" "$s1" | sort -g | head -1)
  best2=$(printf '%s\n%s\n' "${best2:-$s2}" "$s2" | sort -g | head -1)
  bytes=$b
done
printf 'training epoch (6,000 images, B=500, %s)   best of %s\n' "$("$BUILD/duet" info | sed -n 's/^instruction set: //p')" "$REPEAT"
printf '  1 rank  x 2 threads   %8.1f s\n' "$best1"
printf '  2 ranks x 1 thread    %8.1f s   (efficiency %.2f)\n' "$best2" "$(echo "$best1 / $best2" | bc -l)"
printf '  sent by a rank per step: %s MB\n' "$bytes"
