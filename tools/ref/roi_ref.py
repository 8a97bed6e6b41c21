#!/usr/bin/python3
"""Reference region features for tests/test_region.c: torchvision's
roi_align (output 1x1, aligned=True, spatial_scale = map side / image side)
on a random [7 x 7 x 8] map, for boxes whose sample count per axis
(ceil(2 * width in cells)) is the same on both axes, so that torchvision's
fixed sampling_ratio equals duet's. Writes tests/fixtures/region/roi_ref.txt:
  line 1: mh mw c W H n
  line 2: the map, [mh x mw x c] row-major
  then per box: x0 y0 x1 y1 ratio f_0 ... f_{c-1}
Run: /usr/bin/python3 tools/ref/roi_ref.py"""
import math, numpy as np, torch, torchvision

rng = np.random.default_rng(7)
mh, mw, c, W, H = 7, 7, 8, 224, 160
fmap = rng.standard_normal((mh, mw, c)).astype(np.float32)
boxes = [(0, 0, 224, 160), (32, 0, 96, 44), (10.5, 20, 74.5, 64), (100, 60, 196, 126),
         (150, 100, 224, 155), (0, 95, 70, 150), (64, 40, 128, 80), (5, 5, 20, 15)]
x = torch.from_numpy(fmap).permute(2, 0, 1).unsqueeze(0)          # [1 x c x mh x mw]
out = []
for (x0, y0, x1, y1) in boxes:
    nx = max(2, math.ceil(2 * (x1 - x0) * mw / W))
    ny = max(2, math.ceil(2 * (y1 - y0) * mh / H))
    assert nx == ny, (x0, y0, x1, y1, nx, ny)
    # torchvision scales x and y by one spatial_scale: feed coordinates in a
    # space where both axes have the map's cells per pixel (sx for x, sy for y)
    sx, sy = mw / W, mh / H
    roi = torch.tensor([[0, x0 * sx, y0 * sy, x1 * sx, y1 * sy]], dtype=torch.float32)
    f = torchvision.ops.roi_align(x, roi, output_size=(1, 1), spatial_scale=1.0, sampling_ratio=nx, aligned=True)
    out.append(((x0, y0, x1, y1), nx, f.reshape(-1).numpy()))
with open("tests/fixtures/region/roi_ref.txt", "w") as fo:
    fo.write("%d %d %d %d %d %d\n" % (mh, mw, c, W, H, len(boxes)))
    fo.write(" ".join("%.9g" % v for v in fmap.reshape(-1)) + "\n")
    for b, r, f in out:
        fo.write(" ".join("%.9g" % v for v in b) + " %d " % r + " ".join("%.9g" % v for v in f) + "\n")
print("wrote tests/fixtures/region/roi_ref.txt (%d boxes)" % len(boxes))
