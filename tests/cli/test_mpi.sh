#!/usr/bin/env bash
# The same commands under MPI (issue 15): `mpirun --oversubscribe -np 2` and
# `-np 3` on this machine. Image and text features must be byte-identical to
# one process, and the main job (`duet run`: image and text stages split, the
# text features byte-identical to one process's) must give the
# same test figures; a rank killed in the middle ends the job within 30 s
# with a message naming it, and the rerun resumes and gives the same file; a
# plain `duet` (no mpirun) never starts MPI.
# Prints "mpi: N passed, N failed, N skipped" last.
set -u
SUITE=mpi
. tests/lib/harness.sh
# mpirun refuses root unless told; CI runs the tests as root
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Open MPI leaks its own allocations (and its plug-ins', unloaded at exit) by
# design; under `make asan` LeakSanitizer would fail every rank for them.
# duet's paths here are leak-checked by the one-process runs of this file.
MPIRUN=(mpirun --oversubscribe --bind-to none -x "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0")
FLK=$ROOT/../shared/data/flickr8k/images

if ! command -v mpirun >/dev/null; then
  echo "SKIP: mpi: mpirun absent (scripts/deps.sh build installs openmpi-bin)" >&2
  skip=$((skip + 1)); summary
fi

# --- a plain run does not join MPI ---------------------------------------------
env | grep -q '^OMPI_COMM_WORLD' && unset "${!OMPI_COMM_WORLD@}"
"$DUET" info >/dev/null 2>"$T/plain.err" && ! grep -qi "mpi\|orte\|pmix" "$T/plain.err" && ok ||
  bad "a plain duet printed MPI output: $(cat "$T/plain.err")"

# --- text features -----------------------------------------------------------------
# 2,500 captions: three batches of DUET_TEXT_BATCH, so every rank has work
PYTHON=$(command -v /usr/bin/python3 || command -v python3)
"$PYTHON" - "$T/caps.tsv" <<'PY'
import random, sys
r = random.Random(5)
w = "a the dog cat man woman red blue runs jumps on in grass water ball street".split()
with open(sys.argv[1], "w") as f:
    for i in range(2500):
        f.write("img%d.jpg\t%s\t%s\n" % (i // 5, " ".join(r.choice(w) for _ in range(7)), "train" if (i // 5) % 10 else "test"))
PY
"$DUET" textmodel fit --dataset "tsv:$T/caps.tsv" --encoder tfidf --pca 8 -o "$T/tm.model" >/dev/null 2>&1 && ok ||
  bad "textmodel fit failed"
"$DUET" features text --textmodel "$T/tm.model" --dataset "tsv:$T/caps.tsv" -o "$T/t1.npy" >/dev/null 2>&1 && ok ||
  bad "features text (one process) failed"
for np in 2 3; do
  "${MPIRUN[@]}" -np $np "$DUET" features text --textmodel "$T/tm.model" --dataset "tsv:$T/caps.tsv" \
    -o "$T/t$np.npy" >"$T/t$np.out" 2>"$T/t$np.err" && ok || bad "features text -np $np: $(tail -3 "$T/t$np.err")"
  cmp -s "$T/t1.npy" "$T/t$np.npy" && ok || bad "features text -np $np differs from one process"
done

# --- data-parallel training ---------------------------------------------------------
# 20 steps (1,000 synthetic training images, batches of 50, one epoch), f32:
# -np 2 and -np 3 against one process: every parameter within 1e-5 relative
# (of the larger of its value and its tensor's RMS).
"$DUET" synth -o "$T/syn" >/dev/null 2>&1 && ok || bad "synth failed"
TRAIN=(train --dataset "tsv:$T/syn/captions.tsv" --image-features "$T/syn/images.npy"
       --text-features "$T/syn/texts.npy" --hidden 256 --embed-dim 64 --batch-images 50 --precision f32 --threads 1)
"$DUET" "${TRAIN[@]}" --epochs 1 -o "$T/m1.duet" >/dev/null 2>"$T/m1.err" && ok || bad "train (one process): $(tail -2 "$T/m1.err")"
same_params() { # A B: every parameter of model B within 1e-5 relative of model A's
  "$PYTHON" - "$1" "$2" <<'PY'
import json, struct, sys
import numpy as np
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[16:24])[0]
    h = json.loads(b[24:24 + n])
    off, arr = 24 + n, {}
    for a in h["arrays"]:
        arr[a["name"]] = np.frombuffer(b, "<f4", a["count"], off)
        off += 4 * a["count"]
    return h, arr["params"].astype(np.float64)
(h, a), (_, b) = load(sys.argv[1]), load(sys.argv[2])
hid, o, off, worst, names = h["params"]["hidden"], h["params"]["embed_dim"], 0, 0.0, []
for side, d in (("image", h["d_image"]), ("text", h["d_text"])):
    for name, n in (("W1", d * hid), ("b1", hid), ("gamma", hid), ("beta", hid), ("W2", hid * o), ("b2", o)):
        x, y = a[off:off + n], b[off:off + n]
        off += n
        rel = (np.abs(x - y) / np.maximum(np.abs(x), max(np.sqrt((x * x).mean()), 1e-30))).max()
        worst = max(worst, rel)
        if rel > 1e-5: names.append("%s %s %.1e" % (side, name, rel))
assert off == a.size, (off, a.size)
print("worst %.2e" % worst, file=sys.stderr)
if names:
    print(", ".join(names), file=sys.stderr)
    sys.exit(1)
PY
}
for np in 2 3; do
  "${MPIRUN[@]}" -np $np "$DUET" "${TRAIN[@]}" --epochs 1 -o "$T/m$np.duet" >"$T/m$np.out" 2>"$T/m$np.err" && ok ||
    bad "train -np $np: $(tail -3 "$T/m$np.err")"
  same_params "$T/m1.duet" "$T/m$np.duet" 2>>"$T/m$np.err" && ok || bad "train -np $np: parameters differ from one process: $(tail -4 "$T/m$np.err")"
  [ "$(grep -c '^wrote' "$T/m$np.out")" = 1 ] && ok || bad "train -np $np: not exactly one summary (rank 0's)"
done
# a batch with fewer images than ranks is refused with a message
"${MPIRUN[@]}" -np 3 "$DUET" "${TRAIN[@]}" --batch-images 2 --epochs 1 -o "$T/mx.duet" >/dev/null 2>"$T/mx.err" &&
  bad "-np 3 with 2-image batches succeeded" || { grep -q "cannot be split over 3 ranks" "$T/mx.err" && ok || bad "no message: $(tail -3 "$T/mx.err")"; }
# resume under -np 2 from a one-process checkpoint of epoch 1 (kept because
# writing the model fails), against two epochs in one process
"$DUET" "${TRAIN[@]}" --epochs 1 --checkpoint "$T/c.ckpt" -o "$T/no/such/dir/m.duet" >/dev/null 2>&1
[ -f "$T/c.ckpt" ] && ok || bad "no checkpoint kept"
"$DUET" "${TRAIN[@]}" --epochs 2 -o "$T/s1.duet" >/dev/null 2>&1 && ok || bad "train 2 epochs (one process)"
"${MPIRUN[@]}" -np 2 "$DUET" "${TRAIN[@]}" --epochs 2 --resume --checkpoint "$T/c.ckpt" -o "$T/s2.duet" >/dev/null 2>"$T/s2.err" &&
  ok || bad "resume -np 2: $(tail -3 "$T/s2.err")"
same_params "$T/s1.duet" "$T/s2.duet" 2>>"$T/s2.err" && ok || bad "resumed -np 2 differs: $(tail -4 "$T/s2.err")"
[ ! -f "$T/c.ckpt" ] && ok || bad "the checkpoint was not removed after the resumed run"

# --- image features ------------------------------------------------------------------
if [ ! -f "$MOB" ] || [ ! -d "$FLK" ]; then
  echo "SKIP: mpi image features: needs ../shared/data (MobileNetV2 and Flickr8K images)" >&2
  skip=$((skip + 1)); summary
fi
ls "$FLK" | sort | head -48 | sed "s#^#$FLK/#" >"$T/list.txt"
IMG=(features image --model mobilenetv2 --weights "$MOB" --list "$T/list.txt" --batch 4)
"$DUET" "${IMG[@]}" -o "$T/i1.npy" >/dev/null 2>"$T/i1.err" && ok || bad "features image (one process): $(cat "$T/i1.err")"
for np in 2 3; do
  "${MPIRUN[@]}" -np $np "$DUET" "${IMG[@]}" -o "$T/i$np.npy" >/dev/null 2>"$T/i$np.err" && ok ||
    bad "features image -np $np: $(tail -3 "$T/i$np.err")"
  cmp -s "$T/i1.npy" "$T/i$np.npy" && ok || bad "features image -np $np differs from one process"
  cmp -s "$T/i1.names.txt" "$T/i$np.names.txt" && ok || bad "names -np $np differ"
  ls "$T"/i$np.npy.ckpt* >/dev/null 2>&1 && bad "checkpoints left behind by -np $np" || ok
done

# --- the main job --------------------------------------------------------------------
if [ -f "$WINK" ] && [ -f "$FLK/../Flickr8k.token.txt" ]; then
  "$DUET" vectors import "$WINK" -o "$T/vec.duet" --vocab-from "flickr8k:$FLK/.." >/dev/null 2>&1 && ok || bad "vectors import"
  # 210 images of each split: 3,150 captions, four DUET_TEXT_BATCH batches, so
  # every rank encodes some in the text stage; a small PCA (4 x 2 x 100 -> 32)
  RUN=(run flickr8k --data "$FLK/.." --model mobilenetv2 --weights "$MOB" --vectors "$T/vec.duet" --limit 210
       --crops 1 --encoder fv-gmm --ensemble 1 --components 4 --pca 32 --hidden 64 --embed-dim 16 --batch-images 30 --lr 1e-3 --epochs 2 --threads 1
       --examples 2 --no-report)
  figures() { grep -o '"test":{"i2t":{[^}]*},"t2i":{[^}]*},"rsum":[0-9.]*' "$1"; }
  "$DUET" "${RUN[@]}" --work "$T/w1" --json >"$T/w1.json" 2>"$T/w1.err" && ok || bad "run (one process): $(tail -2 "$T/w1.err")"
  for np in 2 3; do
    "${MPIRUN[@]}" -np $np "$DUET" "${RUN[@]}" --work "$T/w$np" --json >"$T/w$np.json" 2>"$T/w$np.err" && ok ||
      bad "run -np $np: $(tail -3 "$T/w$np.err")"
    [ -n "$(figures "$T/w1.json")" ] && [ "$(figures "$T/w1.json")" = "$(figures "$T/w$np.json")" ] && ok ||
      bad "run -np $np test figures differ: $(figures "$T/w$np.json") vs $(figures "$T/w1.json")"
    cmp -s "$T"/w1/image-*/features.npy "$T"/w$np/image-*/features.npy && ok || bad "run -np $np image features differ"
    # the text stage: rank 0 fits and sends the model, every rank encodes its share
    cmp -s "$T"/w1/text-*/features.npy "$T"/w$np/text-*/features.npy && ok || bad "run -np $np text features differ"
    cmp -s "$T"/w1/text-*/text.model "$T"/w$np/text-*/text.model && ok || bad "run -np $np text models differ"
    [ "$(grep -c '"test"' "$T/w$np.json")" = 1 ] && ok || bad "run -np $np: not exactly one summary (rank 0's)"
  done
else
  echo "SKIP: mpi main job: needs the GloVe vectors (scripts/vectors.sh) and Flickr8K" >&2; skip=$((skip + 1))
fi

# --- the main job with float16 text features ------------------------------------------
# --feature-dtype f16: the text stage writes '<f2' (half the bytes), the train stage
# reads it row by row on every rank; -np 2 gives one process's figures
if [ -f "$WINK" ] && [ -f "$FLK/../Flickr8k.token.txt" ]; then
  "$DUET" "${RUN[@]}" --feature-dtype f16 --work "$T/h1" --json >"$T/h1.json" 2>"$T/h1.err" && ok ||
    bad "run --feature-dtype f16: $(tail -2 "$T/h1.err")"
  head -c 128 "$T"/h1/text-*/features.npy | grep -q "'descr': '<f2'" && ok || bad "f16 text features are not '<f2'"
  s32=$(stat -c %s "$T"/w1/text-*/features.npy) s16=$(stat -c %s "$T"/h1/text-*/features.npy)
  [ $(( (s32 - 128) / 2 )) -eq $(( s16 - 128 )) ] && ok || bad "f16 features are $s16 bytes, f32 $s32"
  "${MPIRUN[@]}" -np 2 "$DUET" "${RUN[@]}" --feature-dtype f16 --work "$T/h2" --json >"$T/h2.json" 2>"$T/h2.err" && ok ||
    bad "run -np 2 --feature-dtype f16: $(tail -3 "$T/h2.err")"
  [ -n "$(figures "$T/h1.json")" ] && [ "$(figures "$T/h1.json")" = "$(figures "$T/h2.json")" ] && ok ||
    bad "run -np 2 f16 test figures differ: $(figures "$T/h2.json") vs $(figures "$T/h1.json")"
  "$DUET" "${RUN[@]}" --feature-dtype f8 --work "$T/h3" >/dev/null 2>"$T/h3.err" &&
    bad "--feature-dtype f8 accepted" || { grep -q "not f32 or f16" "$T/h3.err" && ok || bad "no message: $(cat "$T/h3.err")"; }
fi

# --- the main job's text stage with another encoder; a failed fit -------------------
if [ -f "$WINK" ] && [ -f "$FLK/../Flickr8k.token.txt" ]; then
  # the mean encoder, on the same work directories (image stage cached); the
  # train stage then runs on every rank after a text stage all ranks took part in
  for np in 1 3; do
    if [ $np = 1 ]; then "$DUET" "${RUN[@]}" --encoder mean --work "$T/w1" >/dev/null 2>"$T/m$np.err"
    else "${MPIRUN[@]}" -np $np "$DUET" "${RUN[@]}" --encoder mean --work "$T/w$np" >/dev/null 2>"$T/m$np.err"; fi &&
      ok || bad "run --encoder mean -np $np: $(tail -3 "$T/m$np.err")"
  done
  grep -q "image   cached" "$T/m3.err" && ok || bad "run --encoder mean -np 3 did not reuse the image stage"
  mt() { ls -t "$1"/text-*/features.npy | head -1; }
  cmp -s "$(mt "$T/w1")" "$(mt "$T/w3")" && ok || bad "run --encoder mean -np 3 text features differ"
  # a text model that cannot be fitted ends every rank with rank 0's message
  "${MPIRUN[@]}" -np 2 "$DUET" "${RUN[@]}" --components 4000 --work "$T/w2" >/dev/null 2>"$T/f2.err" &&
    bad "run -np 2 with an unfittable text model succeeded" || ok
  grep -q "distinct training words for 4000 components" "$T/f2.err" && ok || bad "run -np 2, failed fit: $(tail -5 "$T/f2.err")"
fi

# --- a rank killed in the middle -------------------------------------------------------
# rank 1 is killed (SIGKILL) once it has written a checkpoint; the job must
# end (not hang) within 30 s, saying which rank died; the rerun resumes
IMG2=("${IMG[@]}" --checkpoint-every 4 --threads 1)
( "${MPIRUN[@]}" -np 2 "$DUET" "${IMG2[@]}" -o "$T/k.npy" >/dev/null 2>"$T/k.err" ) &
job=$!
killed=0
for _ in $(seq 1 300); do
  if [ -f "$T/k.npy.ckpt.1-of-2" ]; then
    pid=$(pgrep -f -- "-o $T/k.npy" | while read -r p; do
      [ "$(tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')" = 1 ] && echo "$p"
    done | head -1)
    [ -n "$pid" ] && kill -9 "$pid" && killed=1
    break
  fi
  sleep 0.1
done
t0=$(date +%s)
for _ in $(seq 1 300); do kill -0 $job 2>/dev/null || break; sleep 0.1; done
if kill -0 $job 2>/dev/null; then
  bad "the job still runs 30 s after rank 1 was killed"; kill -9 $job 2>/dev/null; pkill -9 -f -- "-o $T/k.npy"
else
  [ $(( $(date +%s) - t0 )) -le 30 ] && ok || bad "the job took over 30 s to end"
fi
wait $job 2>/dev/null
if [ $killed = 1 ]; then
  grep -qiE "rank 1|process rank 1" "$T/k.err" && ok || bad "no message names rank 1: $(tail -5 "$T/k.err")"
  [ ! -f "$T/k.npy" ] && ok || bad "a killed job left its output"
  "${MPIRUN[@]}" -np 2 "$DUET" "${IMG2[@]}" -o "$T/k.npy" >/dev/null 2>"$T/k2.err" && ok || bad "rerun failed: $(tail -3 "$T/k2.err")"
  grep -q "resuming from" "$T/k2.err" && ok || bad "the rerun did not resume: $(head -5 "$T/k2.err")"
  cmp -s "$T/i1.npy" "$T/k.npy" && ok || bad "the resumed run's features differ from one process"
else
  echo "SKIP: kill test: rank 1 finished before it could be killed" >&2; skip=$((skip + 1))
fi

# --- sharded search (issue 15) --------------------------------------------------------
# 700 gallery rows (repeating: tied scores across shards) in 3 shards; `mpirun -np 2`
# (shards 1 | 2-3) and `-np 3` (a shard a rank) answer as the unsharded index in one
# process: rows, names and scores; more ranks than shards are refused (`serve`: test_mpi_serve.sh).
if DUET=$DUET DUET_MOBILENET=$MOB tests/lib/search_gallery.sh "$T/sg" 24 && (cd "$T/sg" && python3 "$ROOT/tests/lib/shard_gallery.py"); then
  SB=(index build --model "$T/sg/m.duet" --textmodel "$T/sg/tm.model" --image-features "$T/sg/big.npy"
      --names "$T/sg/big.names" --captions "$T/sg/big.caps")
  "$DUET" "${SB[@]}" -o "$T/sg/whole.index" >/dev/null 2>&1 && "$DUET" "${SB[@]}" --shards 3 -o "$T/sg/sh.index" \
    >/dev/null 2>&1 && ok || bad "index build (whole and --shards 3) failed"
  res() { python3 -c 'import json,sys; print(json.dumps([json.loads(l)["results"] for l in open(sys.argv[1])]))' "$1"; }
  for to in images captions; do
    Q=(search --queries "$T/sg/queries.txt" -k 40 --to $to --json)
    "$DUET" "${Q[@]}" --index "$T/sg/whole.index" >"$T/sw.json" 2>/dev/null || bad "search (one process) failed"
    for np in 2 3; do
      "${MPIRUN[@]}" -np $np "$DUET" "${Q[@]}" --index "$T/sg/sh.index" >"$T/s$np.json" 2>"$T/s$np.err" && ok ||
        bad "search -np $np --to $to: $(tail -3 "$T/s$np.err")"
      [ -n "$(res "$T/sw.json")" ] && [ "$(res "$T/sw.json")" = "$(res "$T/s$np.json")" ] && ok ||
        bad "search -np $np --to $to: the answers differ from the unsharded index's"
    done
  done
  "${MPIRUN[@]}" -np 4 "$DUET" search --index "$T/sg/sh.index" red >/dev/null 2>"$T/s4.err" &&
    bad "search -np 4 on 3 shards succeeded" || ok
  grep -q "at most 3 processes" "$T/s4.err" && ok || bad "search -np 4: $(tail -3 "$T/s4.err")"
else
  echo "SKIP: mpi sharded search: the search gallery could not be built" >&2; skip=$((skip + 1))
fi

summary
