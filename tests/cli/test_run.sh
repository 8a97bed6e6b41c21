#!/usr/bin/env bash
# CLI tests of `duet run` (the main job) on a small Flickr8K subset (the
# first 100 images of each split) with MobileNetV2 and GloVe: every stage
# runs; a rerun reuses every stage; a changed setting redoes only the stages
# downstream of it; a run killed (SIGKILL) or interrupted (SIGINT) at several
# moments and rerun gives the same result as an uninterrupted one.
# Skips (with a message) without ../shared/data/flickr8k, MobileNetV2 or the
# GloVe vectors (scripts/vectors.sh). Prints "cli_run: N passed, N failed,
# N skipped" last.
set -u
SUITE=cli_run
. tests/lib/harness.sh
cd "$T" || exit 1

# --- usage --------------------------------------------------------------
expect 0 "" "$DUET" run --help
for f in data images work model crops encoder components pca linear one-way w-txt-struct epochs seed \
         threads limit ablation json; do
  grep -q -- "--$f" "$T/out" && ok || bad "run --help lacks --$f"
done
# the defaults chosen on validation (docs/RUN.md): 10 crops, fv-both, an ensemble of 3
grep -q -- "--crops V .*(default: 10)" "$T/out" && ok || bad "run --help: --crops default"
grep -q -- "--encoder V .*(default: fv-both)" "$T/out" && ok || bad "run --help: --encoder default"
grep -q -- "--ensemble V .*(default: 3)" "$T/out" && ok || bad "run --help: --ensemble default"
grep -q -- "--top-k-final V .*(default: 1)" "$T/out" && ok || bad "run --help: --top-k-final default"
expect 2 "give a dataset" "$DUET" run
expect 2 "unknown dataset 'coco'" "$DUET" run coco
expect 2 "needs --images DIR" "$DUET" run karpathy:x.json
expect 2 "--crops must be 1 or 10" "$DUET" run flickr8k --crops 5
expect 2 "unknown encoder" "$DUET" run flickr8k --encoder bow
expect 1 "word vectors not found" "$DUET" run flickr8k --data "$DATA" --model mobilenetv2 --weights "$MOB" \
  --vectors nothing.json --work w0

missing=""
[ -f "$DATA/Flickr8k.token.txt" ] || missing="$missing ../shared/data/flickr8k"
[ -f "$MOB" ] || missing="$missing MobileNetV2"
[ -f "$WINK" ] || missing="$missing GloVe (scripts/vectors.sh)"
if [ -n "$missing" ]; then
  echo "SKIP: the pipeline tests need$missing" >&2
  skip=$((skip + 1)); summary; exit 0
fi

# GloVe restricted to the Flickr8K words once (the vectors stage then reads a small file)
"$DUET" vectors import "$WINK" -o vec.duet --vocab-from "flickr8k:$DATA" >/dev/null 2>"$T/err" \
  && ok || bad "vectors import: $(cat "$T/err")"
RUN=("$DUET" run flickr8k --data "$DATA" --model mobilenetv2 --weights "$MOB" --vectors vec.duet --limit 100
     --crops 1 --encoder fv-gmm --ensemble 1 --components 4 --hidden 128 --embed-dim 32 --batch-images 50 --lr 1e-3 --epochs 4 --threads 1 --examples 3)
test_json() { grep -o '"test":{"i2t":{[^}]*},"t2i":{[^}]*},"rsum":[0-9.]*' "$1"; }
states() { grep -o '"state":"[a-z]*"' "$1" | sed 's/"state":"//; s/"//' | tr '\n' ' '; }

# --- a whole run, then a rerun that reuses every stage -------------------
expect 0 "index   built" "${RUN[@]}" --work a --json
cp "$T/out" a.json
[ "$(states a.json)" = "built built built built built built " ] && ok || bad "first run states: $(states a.json)"
test_json a.json >/dev/null && ok || bad "first run: no test results: $(head -c 300 a.json)"
grep -q '"train":100,"val":100,"test":100,"captions":1500' a.json && ok || bad "subset counts: $(grep -o '"counts":{[^}]*}' a.json)"
[ -s a/report.html ] && grep -q "<svg" a/report.html && grep -q "Klein et al. 2015" a/report.html && ok \
  || bad "report.html missing or incomplete"
grep -q "file://.*\.jpg" a/report.html && ok || bad "report has no example images"
[ -s a/run.json ] && ok || bad "no run.json"
ls a/index-*/test.index >/dev/null 2>&1 && ok || bad "no index file"
ls a/image-*/part-* >/dev/null 2>&1 && bad "image parts left behind" || ok
t0=$(date +%s.%N)
expect 0 "" "${RUN[@]}" --work a --json
t1=$(date +%s.%N)
cp "$T/out" a2.json
[ "$(states a2.json)" = "cached cached cached cached cached cached " ] && ok || bad "rerun states: $(states a2.json)"
[ "$(test_json a.json)" = "$(test_json a2.json)" ] && ok || bad "rerun results differ"
awk -v a="$t0" -v b="$t1" 'BEGIN { exit !(b - a < 10) }' && ok || bad "rerun took $(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}') s"
expect 0 "" "${RUN[@]}" --work a
grep -q "Klein et al. 2015" "$T/out" && grep -q "R-sum" "$T/out" && grep -q "duet serve --index" "$T/out" && ok \
  || bad "table output: $(cat "$T/out")"

# a training setting redoes train, eval and index only; an encoder setting the text stage on
expect 0 "" "${RUN[@]}" --work a --json --margin 0.25
[ "$(states "$T/out")" = "cached cached cached built built built " ] && ok || bad "--margin states: $(states "$T/out")"
expect 0 "" "${RUN[@]}" --work a --json --components 3 --no-index
[ "$(states "$T/out")" = "cached cached built built built skipped " ] && ok || bad "--components states: $(states "$T/out")"

# the ablation grid on the cached features: 18 rows (the crops row runs the
# other crop protocol's image stage), the seeds' mean and spread
expect 0 "ablation 18/18" "${RUN[@]}" --work a --ablation --no-index
[ "$(grep -c '^| \(text encoder\|network and loss\|crops\|seeds\|seeds, other encoder\) |' a/ablation.md)" -eq 18 ] && ok \
  || bad "ablation.md rows: $(cat a/ablation.md)"
grep -q '^| crops | fv-gmm | 10 |' a/ablation.md && ok || bad "ablation.md: no 10-crop row: $(grep crops a/ablation.md)"
grep -q '^| duet | [0-9.]* ± [0-9.]* |' a/ablation.md && ok || bad "ablation.md: no mean ± std row"
grep -q '"std"' a/ablation.json && grep -q '"rows"' a/ablation.json && ok || bad "ablation.json incomplete"
# ensembles of the rows' models, sizes 1 to 5 among them, with validation figures
[ "$(grep -c '^| ensemble ' a/ablation.md)" -eq 8 ] && ok || bad "ablation.md: ensemble rows: $(grep ensemble a/ablation.md)"
npcheck "ablation.json: ensembles" "import json; j=json.load(open('a/ablation.json')); e=j['ensembles']; r=j['rows']; \
sys.exit(0 if len(e)==8 and [x['grid_rows'] for x in e[:5]]==[list(range(11,11+k)) for k in range(1,6)] \
and e[6]['grid_rows']==[3,16,17] and e[7]['grid_rows']==[11,12,13,2,3,16,17] and 0<e[7]['test']['rsum']<=600 and 0<e[4]['val']['rsum']<=600 \
and abs(e[0]['val']['rsum']-r[11]['val_rsum'])<1e-3 and abs(e[0]['test']['rsum']-r[11]['test']['rsum'])<1e-3 else 1)"
grep -q '^- ensemble size: 1: [0-9.]*, 2: [0-9.]*, 3: [0-9.]*, 4: [0-9.]*, 5: [0-9.]* ' a/ablation.md && \
  grep -q '^- crops: 1 crop [0-9.]*, 10 crops [0-9.]*: ' a/ablation.md && ok || bad "ablation.md: no choices: $(tail -5 a/ablation.md)"

# Karpathy's JSON layout (Flickr30K, COCO): 60 Flickr8K images, 2 captions each
{
  printf '{"images": ['
  i=0
  for split in train val test; do
    for name in $(grep -v '^$' "$DATA/Flickr_8k.$( [ $split = val ] && echo dev || echo $split )Images.txt" | head -n 20); do
      [ $i -gt 0 ] && printf ','
      printf '{"filename": "%s", "split": "%s", "sentences": [' "$name" "$split"
      grep -F "$name#" "$DATA/Flickr8k.token.txt" | head -n 2 | cut -f2 | tr -d '"\\\r' \
        | awk 'NR > 1 { printf "," } { printf "{\"raw\": \"%s\"}", $0 }'
      printf ']}'
      i=$((i + 1))
    done
  done
  printf ']}\n'
} > karpathy.json
expect 0 "" "$DUET" run karpathy:karpathy.json --images "$DATA/images" --model mobilenetv2 --weights "$MOB" \
  --vectors vec.duet --crops 1 --encoder fv-gmm --ensemble 1 --components 2 --hidden 32 --embed-dim 16 --batch-images 10 --epochs 2 --threads 1 --work k --json
grep -q '"train":20,"val":20,"test":20,"captions":120' "$T/out" && ok || bad "karpathy run: $(head -c 300 "$T/out") $(tail -c 300 "$T/err")"

# --- killed at several moments, then rerun: the same result --------------
for s in 1 2 4 7; do
  { timeout --foreground -s KILL "$s" "${RUN[@]}" --work b >/dev/null 2>&1; } 2>/dev/null
done
expect 0 "" "${RUN[@]}" --work b --json
cp "$T/out" b.json
[ "$(test_json a.json)" = "$(test_json b.json)" ] && ok || bad "killed + rerun: $(test_json b.json) vs $(test_json a.json)"
# (a holds the ablation's 10-crop image stage too: compare the one b has)
cmp -s "a/$(basename b/image-*)/features.npy" b/image-*/features.npy && ok || bad "killed + rerun: image features differ"
find b -name '*.tmp.*' | grep -q . && bad "temp files left: $(find b -name '*.tmp.*')" || ok
# SIGINT stops cleanly with a message; the rerun resumes. --foreground:
# without it timeout signals the child and then its whole process group,
# so the run would get SIGINT twice (the second, by design, ends it at once)
timeout --foreground --preserve-status -s INT 3 "${RUN[@]}" --work c >/dev/null 2>"$T/err"
rc=$?
if [ "$rc" -eq 1 ] && grep -q "interrupted" "$T/err"; then ok
elif [ "$rc" -eq 0 ]; then ok; echo "note: the run finished before SIGINT" >&2
else bad "SIGINT: exit $rc: $(tail -c 300 "$T/err")"; fi
expect 0 "" "${RUN[@]}" --work c --json
[ "$(test_json a.json)" = "$(test_json "$T/out")" ] && ok || bad "SIGINT + rerun: results differ"

# one run per work directory at a time
"${RUN[@]}" --work d >/dev/null 2>&1 &
bg=$!
for _ in $(seq 100); do ls -d d/image-* >/dev/null 2>&1 && break; sleep 0.2; done
expect 1 "is in use by another duet run" "${RUN[@]}" --work d
kill -INT "$bg" 2>/dev/null
wait "$bg" 2>/dev/null

summary
