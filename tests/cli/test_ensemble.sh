#!/usr/bin/env bash
# CLI tests of ensembles (issue 17): `duet ensemble` writes one model file
# from models trained on the same features; `duet eval` of it equals `duet
# eval --model A,B` (the same code path) and N copies of a model rank as the
# model; `duet embed` of it gives unit rows; an ensemble given where one
# model is needed (as a member of another ensemble) is refused with a clear
# message. Then, with ../shared/data/flickr8k, MobileNetV2 and GloVe,
# `duet run --ensemble 2` on a subset: members beside the ensemble in
# run.json and the report, member 1 shared with the plain run's stage, the
# text stage's key free of the PCA method when no PCA runs,
# `duet search` answers from the ensemble index (its scores are checked
# against the mean cosine in tests/test_model.c). Prints "cli_ensemble: N passed,
# N failed, N skipped" last.
set -u
SUITE=cli_ensemble
. tests/lib/harness.sh
cd "$T" || exit 1

# --- synthetic: files, evaluation, refusals -------------------------------
"$DUET" synth -o syn --train 300 --val 60 --test 60 >/dev/null 2>&1 && ok || bad "synth"
TR=("$DUET" train --dataset tsv:syn/captions.tsv --image-features syn/images.npy --text-features syn/texts.npy
    --hidden 64 --embed-dim 16 --batch-images 25 --epochs 2 --lr 3e-3 --threads 1)
for s in 1 2 3; do
  expect 0 "" "${TR[@]}" --seed $s -o m$s.duet
done
EVAL=("$DUET" eval --dataset tsv:syn/captions.tsv --image-features syn/images.npy --text-features syn/texts.npy --json)
EXPECT_STDOUT=1 expect 0 "ensemble of 3 models (MLP 48-64-16, seeds 1, 2, 3), 48-D" "$DUET" ensemble m1.duet m2.duet m3.duet -o e.duet
"${EVAL[@]}" --model e.duet > file.json 2>"$T/err" && ok || bad "eval of the ensemble file: $(cat "$T/err")"
"${EVAL[@]}" --model m1.duet,m2.duet,m3.duet > list.json && ok || bad "eval of the list"
cmp -s file.json list.json && ok || bad "ensemble file $(cat file.json) != list $(cat list.json)"
"${EVAL[@]}" --model m1.duet > one.json
"${EVAL[@]}" --model m1.duet,m1.duet,m1.duet > three.json
cmp -s one.json three.json && ok || bad "3 copies $(cat three.json) != the model $(cat one.json)"
cmp -s one.json file.json && bad "the ensemble evaluates as member 1" || ok
"$DUET" ensemble m1.duet m1.duet -o twice.duet >/dev/null && "${EVAL[@]}" --model twice.duet > twice.json
cmp -s one.json twice.json && ok || bad "an ensemble file of 2 copies $(cat twice.json) != the model"
# embed: unit rows of 48 dims
expect 0 "" "$DUET" embed --model e.duet --side text syn/texts.npy -o emb.npy
npcheck "ensemble embeddings are unit rows of 48" "x = n.load('emb.npy'); assert x.shape[1] == 48, x.shape; \
assert abs(n.linalg.norm(x, axis=1) - 1).max() < 1e-5"
# refusals: an ensemble as a member, members of other widths, no member
expect 1 "member 2 is itself an ensemble of 3 models: give its members' files instead" \
  "$DUET" ensemble m1.duet e.duet -o bad.duet
[ -e bad.duet ] && bad "a refused ensemble left bad.duet" || ok
"$DUET" synth -o syn2 --train 300 --text-dim 40 >/dev/null 2>&1
"$DUET" train --dataset tsv:syn2/captions.tsv --image-features syn2/images.npy --text-features syn2/texts.npy \
  --hidden 64 --embed-dim 16 --batch-images 25 --epochs 1 --threads 1 -o w.duet >/dev/null 2>&1
expect 1 "share their input features" "$DUET" ensemble m1.duet w.duet -o bad.duet
expect 2 "give the member model files" "$DUET" ensemble -o bad.duet
expect 1 "not a duet model file" "$DUET" ensemble syn/images.npy -o bad.duet

# --- duet run --ensemble on a Flickr8K subset ------------------------------
missing=""
[ -f "$DATA/Flickr8k.token.txt" ] || missing="$missing ../shared/data/flickr8k"
[ -f "$MOB" ] || missing="$missing MobileNetV2"
[ -f "$WINK" ] || missing="$missing GloVe (scripts/vectors.sh)"
if [ -n "$missing" ]; then
  echo "SKIP: the run tests need$missing" >&2
  skip=$((skip + 1)); summary; exit 0
fi
"$DUET" vectors import "$WINK" -o vec.duet --vocab-from "flickr8k:$DATA" >/dev/null 2>&1 && ok || bad "vectors import"
RUN=("$DUET" run flickr8k --data "$DATA" --model mobilenetv2 --weights "$MOB" --vectors vec.duet --limit 100
     --crops 1 --encoder fv-gmm --ensemble 1 --components 4 --hidden 128 --embed-dim 32 --batch-images 50 --lr 1e-3 --epochs 3 --threads 1 --examples 3
     --work w --json)
expect 0 "eval    member 2: test R-sum" "${RUN[@]}" --ensemble 2
cp "$T/out" ens.json
grep -q '"model_description":"ensemble of 2 models (MLP 800-128-32, seeds 1, 2), 64-D"' ens.json && ok \
  || bad "run.json model_description: $(grep -o '"model_description":"[^"]*"' ens.json)"
grep -q '"members":\[{"seed":1,.*{"seed":2,' ens.json && ok || bad "run.json has no members"
# the ensemble's train manifest: its own validation R-sum (the one run.json
# reports), each member's epochs in members[]
python3 - <<'PY' && ok || bad "the ensemble's train manifest: best_val_rsum or members' epochs wrong"
import glob, json, sys
m = [json.load(open(p)) for p in glob.glob("w/train-*/stage.json")]
e = [x for x in m if x.get("n_members") == 2][0]
val = json.load(open("ens.json"))["val"]["rsum"]
bad = []
if not (e["best_val_rsum"] > 0 and abs(e["best_val_rsum"] - val) <= 1e-3 * max(1, val)):
    bad.append("best_val_rsum %s, run.json val R-sum %s" % (e["best_val_rsum"], val))
for k, mem in enumerate(e["members"]):
    if mem["seed"] != k + 1 or len(mem["epochs"]) != mem["epochs_run"] or mem["epochs_run"] < 1:
        bad.append("member %d: seed %s, %d epochs, epochs_run %s" % (k, mem["seed"], len(mem["epochs"]), mem["epochs_run"]))
sys.exit("; ".join(bad) if bad else 0)
PY
grep -q "member 2: seed 2" w/report.html && grep -q "duet ensemble of 2" w/report.html && ok \
  || bad "report lacks the members beside the ensemble"
# the summary of an ensemble run: its validation R-sum and every member's
# epochs (all cached here)
EXPECT_STDOUT=1 expect 0 "ensemble of 2: validation R-sum" "${RUN[@]/--json/--no-report}" --ensemble 2
grep -Eq "best epochs [0-9] of 3, [0-9] of 3 \(members 1\.\.2\)" "$T/out" && ok \
  || bad "ensemble summary line: $(grep "ensemble of 2:" "$T/out")"
# the plain run (seed 1) reuses member 1's train stage
expect 0 "train   cached" "${RUN[@]}"
# no PCA runs here (K = 4: 800-D <= --pca 6000), so the PCA method is not
# part of the text stage's key: the exact method's run reuses it
expect 0 "text    cached" "${RUN[@]}" --pca-method exact
# with a PCA (800 -> 100) the methods are two text stages
expect 0 "text    running" "${RUN[@]}" --pca 100 --no-index
expect 0 "text    running" "${RUN[@]}" --pca 100 --no-index --pca-method exact
expect 0 "text    cached" "${RUN[@]}" --pca 100 --no-index
# so are the randomized PCA's starts; the fit reports the PCA's seconds
expect 0 "text    running" "${RUN[@]}" --pca 100 --no-index --pca-start samples
grep -q "(PCA [0-9.]* s)" "$T/err" && ok || bad "the text stage did not report the PCA's time: $(grep "text " "$T/err")"
expect 0 "text    cached" "${RUN[@]}" --pca 100 --no-index --pca-start samples
expect 2 "--pca-start: 'bogus' is not gaussian or samples" "${RUN[@]}" --pca-start bogus
# search of the ensemble index (the model and text model the index records)
index=$(grep -o '"index":"[^"]*"' ens.json | sed 's/"index":"//; s/"$//')
EXPECT_STDOUT=1 expect 0 "a dog runs on the grass" "$DUET" search --index "$index" -k 3 "a dog runs on the grass"
grep -q "^    1 " "$T/out" && ok || bad "search printed no hit: $(cat "$T/out")"
summary
