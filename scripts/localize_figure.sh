#!/usr/bin/env bash
# Draws the best box for a phrase on ten Flickr8K test images with
# `duet localize` and joins them into one figure (docs/localize.png, 5 x 2,
# the phrase under each image). Usage: scripts/localize_figure.sh MODEL [OUT]
# (MODEL: a model.duet from `duet run`; needs ResNet-50 weights and PIL).
set -euo pipefail
cd "$(dirname "$0")/.."
M=$1; OUT=${2:-docs/localize.png}
I=${DUET_DATA:-../shared/data/flickr8k}/images
tmp=$(mktemp -d /tmp/duet-loc.XXXXXX); trap 'rm -rf "$tmp"' EXIT
pairs=(
  "2511019188_ca71775f2d|a black dog" "2723477522_d89f5ac62b|a little dog" "241347760_d44c8d3a01|a helmet"
  "2943023421_e297f05e11|a car" "3213992947_3f3f967a9f|a red jacket" "2358898017_24496b80e8|a dog"
  "2207244634_1db1a1890b|a skateboarder" "3222055946_45f7293bb2|a basketball player"
  "3745451546_fc8ec70cbd|a hiker" "2844018783_524b08e5aa|three boys")
k=0
for p in "${pairs[@]}"; do
  id=${p%%|*}; phrase=${p#*|}
  ./duet localize --model "$M" -k 1 --draw "$tmp/$k.png" "$I/$id.jpg" "$phrase" > "$tmp/$k.txt" 2>/dev/null
  echo "$phrase" > "$tmp/$k.phrase"
  k=$((k + 1))
done
/usr/bin/python3 - "$tmp" "$OUT" <<'PY'
import sys
from PIL import Image, ImageDraw
d, out = sys.argv[1], sys.argv[2]
W, H, T = 224, 224, 22
fig = Image.new("RGB", (5 * (W + 6) + 6, 2 * (H + T + 6) + 6), (255, 255, 255))
dr = ImageDraw.Draw(fig)
for k in range(10):
    x, y = 6 + (k % 5) * (W + 6), 6 + (k // 5) * (H + T + 6)
    fig.paste(Image.open("%s/%d.png" % (d, k)).convert("RGB"), (x, y))
    dr.text((x + 2, y + H + 5), open("%s/%d.phrase" % (d, k)).read().strip(), fill=(0, 0, 0))
fig.quantize(colors=256, dither=Image.Dither.NONE).save(out, optimize=True)
print("wrote", out)
PY
