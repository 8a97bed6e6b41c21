#!/usr/bin/env bash
# CLI tests: usage errors, the synthetic train -> eval -> embed path, and bad
# inputs that must stop with a message naming the file, a non-zero exit and
# no output file left behind or overwritten.
# Prints "cli: N passed, N failed, N skipped" last.
set -u
SUITE=cli
. tests/lib/harness.sh
FIX=$(pwd)/tests/fixtures


cd "$T" || exit 1

# --- usage --------------------------------------------------------------
expect 0 "" "$DUET" help
grep -q "train" "$T/out" && ok || bad "help lists no commands"
expect 2 "unknown command" "$DUET" frobnicate
expect 2 "" "$DUET"
for c in train eval embed dataset synth; do
  expect 0 "" "$DUET" "$c" --help
  grep -q "default:" "$T/out" && ok || bad "$c --help shows no defaults"
done
"$DUET" train --help >"$T/help"
for f in margin top-k w-t2i w-txt-struct w-img-struct one-way linear hidden embed-dim dropout \
         batch-images sents-per-image optimizer lr lr-decay weight-decay epochs patience seed \
         threads resume; do
  grep -q -- "--$f" "$T/help" && ok || bad "train --help lacks --$f"
done
grep -q -- "--margin V .*(default: 0.05)" "$T/help" && ok || bad "margin default not shown as 0.05"
grep -q -- "--w-t2i V .*(default: 1.5)" "$T/help" && ok || bad "w-t2i default not shown as 1.5"
expect 2 "unknown flag '--bogus'" "$DUET" train --bogus 1
expect 2 "--lr needs a value" "$DUET" train --lr
expect 2 "not a valid number" "$DUET" train --lr abc
expect 2 "--dataset is required" "$DUET" train
expect 2 "top_k" "$DUET" train --dataset tsv:x --image-features a --text-features b -o m --top-k 0

# --- the synthetic path -------------------------------------------------
"$DUET" synth -o syn --train 200 --val 50 --test 50 >/dev/null 2>&1 && ok || bad "synth failed"
D="--dataset tsv:syn/captions.tsv --image-features syn/images.npy --text-features syn/texts.npy"
SMALL="--hidden 64 --embed-dim 16 --batch-images 25 --epochs 3 --lr 3e-3"
expect 0 "epoch 3/3" "$DUET" train $D $SMALL -o m.duet
[ -f m.duet ] && ok || bad "train wrote no model"
expect 1 "gives its images no neighbours" "$DUET" train $D $SMALL --w-img-struct 0.5 -o img_struct.duet
[ -f m.duet.ckpt ] && bad "checkpoint left after a finished run" || ok
expect 0 "" "$DUET" eval --model m.duet $D --json
if grep -qE '^\{"i2t":\{"r1":[0-9.]+,"r5":[0-9.]+,"r10":[0-9.]+,"medr":[0-9.]+,"meanr":[0-9.]+\},"t2i":\{"r1":[0-9.]+,"r5":[0-9.]+,"r10":[0-9.]+,"medr":[0-9.]+,"meanr":[0-9.]+\},"rsum":[0-9.]+\}$' "$T/out"; then ok; else bad "eval --json shape: $(cat "$T/out")"; fi
expect 0 "" "$DUET" eval --model m.duet $D --protocol folds --fold-size 25
grep -q "2 folds" "$T/out" && ok || bad "folds protocol: $(cat "$T/out")"
# an ensemble: a model twice is the model alone; two seeds beat neither by
# construction only on average, so only the shape and the shared-file forms
expect 0 "" "$DUET" eval --model m.duet $D --json
cp "$T/out" single.json
expect 0 "" "$DUET" eval --model m.duet,m.duet $D --json
cmp -s "$T/out" single.json && ok || bad "ensemble of one model twice differs: $(cat "$T/out") vs $(cat single.json)"
expect 0 "epoch 3/3" "$DUET" train $D $SMALL --seed 7 -o m7.duet
expect 0 "" "$DUET" eval --model m.duet,m7.duet --dataset tsv:syn/captions.tsv \
  --image-features syn/images.npy,syn/images.npy --text-features syn/texts.npy --json
grep -qE '^\{"i2t":\{"r1":[0-9.]+' "$T/out" && ok || bad "ensemble eval output: $(cat "$T/out")"
expect 2 "one file or one per model (2)" "$DUET" eval --model m.duet,m7.duet --dataset tsv:syn/captions.tsv \
  --image-features syn/images.npy,syn/images.npy,syn/images.npy --text-features syn/texts.npy
expect 2 "an empty name" "$DUET" eval --model m.duet,,m7.duet $D
expect 0 "" "$DUET" embed --model m.duet --side text syn/texts.npy -o emb.npy
# 1500 rows x 16 floats after a 128-byte header
size=$(stat -c %s emb.npy)
[ "$size" -eq $((128 + 1500 * 16 * 4)) ] && ok || bad "embed output size $size"
expect 0 "" "$DUET" dataset --dataset tsv:syn/captions.tsv --json
grep -q '"images":300,"captions":1500,"train":200,"val":50,"test":50' "$T/out" && ok || bad "dataset --json: $(cat "$T/out")"
"$DUET" dataset --dataset tsv:syn/captions.tsv --images | head -n 1 | grep -qx "img_00000.jpg" && ok || bad "dataset --images order"

# --- bad input: message names the file, non-zero exit, no output ---------
# rows that disagree with the dataset
"$DUET" synth -o other --train 100 --val 10 --test 10 >/dev/null 2>&1
expect 1 "other/images.npy: 120 rows, but dataset" "$DUET" train --dataset tsv:syn/captions.tsv \
  --image-features other/images.npy --text-features syn/texts.npy -o fail1.duet $SMALL
[ -e fail1.duet ] && bad "output left after a failure" || ok
# an existing output is not overwritten by a failing run
echo KEEP > keep.duet
expect 1 "other/texts.npy" "$DUET" train --dataset tsv:syn/captions.tsv \
  --image-features syn/images.npy --text-features other/texts.npy -o keep.duet $SMALL
[ "$(cat keep.duet)" = KEEP ] && ok || bad "a failing run overwrote its output"
# NaN in a feature file
cp syn/texts.npy nan.npy
printf '\x00\x00\xc0\x7f' | dd of=nan.npy bs=1 seek=$((128 + (7 * 48 + 3) * 4)) conv=notrunc 2>/dev/null
expect 1 "nan.npy: non-finite value (NaN) at row 7, column 3" "$DUET" train --dataset tsv:syn/captions.tsv \
  --image-features syn/images.npy --text-features nan.npy -o fail2.duet $SMALL
[ -e fail2.duet ] && bad "output left after NaN input" || ok
# truncated .npy
head -c 5000 syn/images.npy > trunc.npy
expect 1 "trunc.npy" "$DUET" train --dataset tsv:syn/captions.tsv --image-features trunc.npy \
  --text-features syn/texts.npy -o fail3.duet $SMALL
grep -q "truncated" "$T/err" && ok || bad "truncated npy message: $(cat "$T/err")"
# a non-float .npy
expect 1 "is not a float type" "$DUET" embed --model m.duet --side image "$FIX/npy/i4_2x3.npy" -o e.npy
[ -e e.npy ] && bad "output left after non-float input" || ok
# a text file that is not .npy at all
echo "hello" > notnpy.npy
expect 1 "notnpy.npy" "$DUET" embed --model m.duet --side text notnpy.npy -o e.npy
# a feature width the model does not take
expect 1 "64 columns" "$DUET" embed --model m.duet --side text syn/images.npy -o e.npy
[ -e e.npy ] && bad "output left after a width mismatch" || ok
"$DUET" synth -o wide --train 200 --val 50 --test 50 --text-dim 30 >/dev/null 2>&1
expect 1 "features are 64-D (image) and 30-D (text), the model takes 64-D and 48-D" "$DUET" eval \
  --model m.duet --dataset tsv:syn/captions.tsv --image-features syn/images.npy --text-features wide/texts.npy
# a model file that is not one
expect 1 "bad magic" "$DUET" eval --model syn/images.npy $D
# a dataset that does not exist
expect 1 "nope.tsv" "$DUET" dataset --dataset tsv:nope.tsv
expect 1 "unknown dataset" "$DUET" dataset --dataset csv:x

summary
