#!/usr/bin/env bash
# Trains the PyTorch reference (tools/ref/ref_train.py) on duet's synthetic
# dataset and records its test recall for seeds 1..3 in
# tests/fixtures/ref_train/synth.json. tests/test_training_ref.c trains duet on
# the same data with the same settings and compares the mean test R-sum.
# Run from the repo root after `make`: tools/ref/make_synth_fixture.sh
set -euo pipefail
DATA=$(mktemp -d)
trap 'rm -rf "$DATA"' EXIT
# keep in step with tests/test_training_ref.c
SYNTH=(--train 2000 --val 200 --test 5000 --seed 1)
CFG=(--hidden 512 --embed 128 --batch-images 100 --lr 2e-3 --lr-decay 0.9 --epochs 30)
./duet synth -o "$DATA" "${SYNTH[@]}" >&2
mkdir -p tests/fixtures/ref_train
{
  echo "{\"generator\": \"duet synth ${SYNTH[*]}\", \"settings\": \"${CFG[*]}\", \"runs\": ["
  for s in 1 2 3; do
    r=$(/usr/bin/python3 tools/ref/ref_train.py "$DATA" "${CFG[@]}" --seed "$s" --threads 1)
    [ "$s" -gt 1 ] && echo ","
    echo "{\"seed\": $s, \"result\": $r}"
  done
  echo "]}"
} | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); d["mean_rsum"]=sum(r["result"]["rsum"] for r in d["runs"])/len(d["runs"]); print(json.dumps(d, indent=1))' \
  > tests/fixtures/ref_train/synth.json
echo "wrote tests/fixtures/ref_train/synth.json" >&2
