#!/usr/bin/env bash
# Builds a small search gallery in directory $1 for the search/serve tests:
# N (default 24) synthetic 96x96 BMP images of coloured shapes, two captions
# each naming colour and shape, MobileNetV2 features, a tf-idf text model, a
# tiny trained model and $1/g.index (images + captions). Prints nothing on
# success; exits 3 when the MobileNetV2 weights are absent (callers skip).
# Usage: search_gallery.sh DIR [N]   (DUET: the binary)
set -eu
D=$1; N=${2:-24}
DUET=${DUET:-./duet}
MOB=${DUET_MOBILENET:-$(cd "$(dirname "$0")/../.." && pwd)/../shared/data/mobilenet/mobilenet_v2_1.0_224_quant.tflite}
[ -f "$MOB" ] || exit 3
mkdir -p "$D/img"
python3 - "$D" "$N" <<'PY'
import struct, sys, random
d, n = sys.argv[1], int(sys.argv[2])
colours = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (240, 220, 30),
           "black": (15, 15, 15), "white": (245, 245, 245)}
shapes = ["square", "circle", "stripes", "cross"]
names = list(colours)
rng = random.Random(7)
caps = []
for i in range(n):
    fg, bg = names[i % 6], names[(i // 6 + 3 + i) % 6]
    if bg == fg: bg = names[(names.index(fg) + 1) % 6]
    shape = shapes[(i // 6) % 4]
    W = H = 96
    px = bytearray()
    for y in range(H - 1, -1, -1):
        for x in range(W):
            cx, cy = x - 48, y - 48
            inside = {"square": abs(cx) < 28 and abs(cy) < 28, "circle": cx * cx + cy * cy < 900,
                      "stripes": (x // 12) % 2 == 0, "cross": abs(cx) < 10 or abs(cy) < 10}[shape]
            r, g, b = colours[fg] if inside else colours[bg]
            j = rng.randint(-12, 12)
            px += bytes((max(0, min(255, b + j)), max(0, min(255, g + j)), max(0, min(255, r + j))))
    hdr = b"BM" + struct.pack("<IHHI", 54 + len(px), 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, W, H, 1, 24, 0, len(px), 2835, 2835, 0, 0)
    name = "img_%03d.bmp" % i
    open("%s/img/%s" % (d, name), "wb").write(hdr + px)
    split = "test" if i % 8 == 7 else ("val" if i % 8 == 6 else "train")
    caps.append((name, "a %s %s on a %s background" % (fg, shape, bg), split))
    caps.append((name, "%s %s shape over %s" % (fg, shape, bg), split))
with open(d + "/caps.tsv", "w") as f:
    for c in caps: f.write("\t".join(c) + "\n")
with open(d + "/captions.txt", "w") as f:
    for c in caps: f.write(c[1] + "\n")
PY
cd "$D"
"$DUET" features image --model mobilenetv2 --weights "$MOB" img -o img.npy >/dev/null 2>log.txt
"$DUET" textmodel fit --dataset tsv:caps.tsv --encoder tfidf -o tm.model >/dev/null 2>>log.txt
"$DUET" features text --textmodel tm.model --dataset tsv:caps.tsv -o txt.npy >/dev/null 2>>log.txt
"$DUET" train --dataset tsv:caps.tsv --image-features img.npy --text-features txt.npy --text-model tm.model \
  --image-model "mobilenetv2 crops=1" --hidden 64 --embed-dim 32 --batch-images 8 --epochs 25 --lr 3e-3 \
  --seed 3 -o m.duet >/dev/null 2>>log.txt
"$DUET" index build --model m.duet --textmodel tm.model --images img --weights "$MOB" --captions captions.txt \
  -o g.index >/dev/null 2>>log.txt
