#!/usr/bin/env bash
# CLI tests of the text part: `duet vectors import`, `duet textmodel fit`,
# `duet features text` (when the features dispatcher is present), usage
# errors (exit 2) and bad inputs (exit 1, a message naming the file and line,
# no output left behind). Prints "text_cli: N passed, N failed, N skipped".
set -u
SUITE=text_cli
EXPECT_STDOUT=1
. tests/lib/harness.sh
cd "$T" || exit 1

# a small vocabulary in 6 dims and a caption set
python_free_vectors() {
  local i=0
  for w in a dog cat runs on the grass red ball man woman child water jumps blue street bike sits; do
    printf '%s' "$w"
    for j in 0 1 2 3 4 5; do printf ' %d.%d' $(( (i * 7 + j * 3) % 5 - 2 )) $(( (i + j) % 10 )); done
    printf '\n'; i=$((i + 1))
  done
}
python_free_vectors > v.txt
{
  n=0
  for s in "A dog runs on the grass." "The cat sits on a red ball" "A man and a woman ride a bike" \
           "A child jumps in the water" "Blue street, red bike!" "Dogs and cats"; do
    for k in 0 1 2 3 4; do
      split=train; [ $n -ge 20 ] && split=test
      printf 'img%d.jpg\t%s %s\t%s\n' "$n" "$s" "$k" "$split"
    done
    n=$((n + 1))
  done
} > d.tsv

# --- usage
for c in vectors textmodel; do
  expect 0 "" "$DUET" "$c" --help
  grep -q "default:" out && ok || bad "$c --help shows no defaults"
done
"$DUET" textmodel --help > help
grep -q -- "--components V .*(default: 30)" help && ok || bad "components default not 30"
grep -q -- "--pca V .*(default: 6000)" help && ok || bad "pca default not 6000"
expect 2 "expected \`import FILE\`" "$DUET" vectors v.txt -o x.duet
expect 2 "--out is required" "$DUET" vectors import v.txt
expect 2 "unknown format 'bogus'" "$DUET" vectors import v.txt --format bogus -o x.duet
expect 2 "unknown encoder 'bogus'" "$DUET" textmodel fit --dataset tsv:d.tsv --vectors v.duet --encoder bogus -o m
expect 2 "--vectors is required" "$DUET" textmodel fit --dataset tsv:d.tsv --encoder mean -o m
expect 2 "--pca-start: 'bogus' is not gaussian or samples" "$DUET" textmodel fit --dataset tsv:d.tsv --vectors v.duet --encoder mean --pca-start bogus -o m

# --- import, fit
expect 0 "18 words x 6 dims" "$DUET" vectors import v.txt -o v.duet
expect 0 "of 18, restricted" "$DUET" vectors import v.txt -o vr.duet --vocab-from tsv:d.tsv
for e in mean tfidf fv-gmm fv-hglmm fv-both; do
  expect 0 "encoder $e" "$DUET" textmodel fit --dataset tsv:d.tsv --vectors v.duet --encoder $e --components 2 --pca 8 -o $e.model
  [ -s $e.model ] && ok || bad "no $e.model"
done
grep -q "dim 8" out && ok || bad "fv-both not PCA-reduced to 8: $(cat out)"
expect 0 "encoder fv-hglmm" "$DUET" textmodel fit --dataset tsv:d.tsv --vectors v.duet --encoder fv-hglmm --components 2 --ica -o ica.model
expect 2 "--ica applies to the fv-* encoders only" "$DUET" textmodel fit --dataset tsv:d.tsv --vectors v.duet --encoder mean --ica -o m3

# --- bad inputs: message names file and line, nothing written
printf 'a 1 2 3\nb 4 5\n' > bad.txt
expect 1 "bad.txt:2: word 'b' has 2 values, the first row has 3" "$DUET" vectors import bad.txt -o bad.duet
[ ! -e bad.duet ] && ok || bad "bad.duet written"
printf '3 2\nx 1 2\n' > short.vec
expect 1 "short.vec" "$DUET" vectors import short.vec -o bad.duet
printf '2 2\nab ' > trunc.bin
expect 1 "trunc.bin" "$DUET" vectors import trunc.bin --format word2vec-bin -o bad.duet
[ ! -e bad.duet ] && ok || bad "bad.duet written"
expect 1 "no training captions" "$DUET" textmodel fit --dataset tsv:<(sed 's/train$/test/' d.tsv) --vectors v.duet --encoder mean -o m2
[ ! -e m2 ] && ok || bad "m2 written"

# --- features text (needs the `features` dispatcher of tools/cmd_image.c)
if "$DUET" features text --help >/dev/null 2>&1; then
  expect 0 "[30 x 6] (mean)" "$DUET" features text --textmodel mean.model --dataset tsv:d.tsv -o f.npy
  [ -s f.npy ] && ok || bad "no f.npy"
  printf 'A dog.\n\nzzz qqq\n\xff\xfe cat\n' > caps.txt
  expect 0 "2 with no known word" "$DUET" features text --textmodel fv-gmm.model --captions caps.txt -o g.npy
  grep -q "2 invalid UTF-8 bytes" out && ok || bad "invalid bytes not counted: $(cat out)"
  cp mean.model old.model
  printf '\x03' | dd of=old.model bs=1 seek=8 conv=notrunc 2>/dev/null
  expect 1 "old.model: text model format version 3" "$DUET" features text --textmodel old.model --captions caps.txt -o h.npy
  [ ! -e h.npy ] && ok || bad "h.npy written"
  expect 2 "exactly one of --dataset and --captions" "$DUET" features text --textmodel mean.model -o h.npy
  # a trained model records the text model by path and content hash
  "$DUET" synth --train 4 --val 0 --test 2 --image-dim 4 -o s >/dev/null 2>&1 || true
  if [ -f s/images.npy ]; then
    want=$("$DUET" textmodel fit --dataset tsv:d.tsv --vectors v.duet --encoder mean --components 2 --pca 8 -o mean2.model | sed -n 's/.*content hash \(fnv1a64:[0-9a-f]*\).*/\1/p')
    expect 0 "" "$DUET" train --dataset tsv:d.tsv --image-features s/images.npy --text-features f.npy \
      --text-model mean2.model --image-model "test-cnn crops=1" --hidden 8 --embed-dim 4 --epochs 1 \
      --batch-images 4 --sents-per-image 3 -o t.model
    grep -aq "\"text_model_hash\": *\"$want\"" t.model && ok || bad "t.model does not record text_model_hash $want"
    grep -aq '"image_model": *"test-cnn crops=1"' t.model && ok || bad "t.model does not record image_model"
  else
    bad "duet synth did not write s/images.npy"
  fi
else
  skip=$((skip + 1)); echo "SKIP features text: no \`duet features\` command yet" >&2
fi

summary
