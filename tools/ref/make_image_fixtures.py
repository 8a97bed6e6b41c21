#!/usr/bin/python3
"""Writes the small synthetic images of tests/fixtures/image/ (no photo is
copied): a 37x23 gradient as PNG, BMP and JPEG (quality 90), PIL's decoded
pixels of the JPEG (grad_jpg.npy, uint8 -> float32 [23*37 x 3]), and files
whose headers claim 30000x30000 pixels (huge.png, huge.bmp, huge.jpg)."""
import struct, zlib, sys, os
import numpy as np
from PIL import Image

d = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/image"
w, h = 37, 23
y, x = np.mgrid[0:h, 0:w]
a = np.stack([(x * 7) % 256, (y * 11) % 256, (x * y) % 256], -1).astype(np.uint8)
im = Image.fromarray(a, "RGB")
im.save(os.path.join(d, "grad.png"))
im.save(os.path.join(d, "grad.bmp"))
im.save(os.path.join(d, "grad.jpg"), quality=90)
dec = np.asarray(Image.open(os.path.join(d, "grad.jpg")).convert("RGB"), dtype=np.float32)
np.save(os.path.join(d, "grad_jpg.npy"), dec.reshape(h * w, 3))

def chunk(t, b):
    return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b) & 0xffffffff)
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)) + \
      chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
open(os.path.join(d, "huge.png"), "wb").write(png)
bmp = bytearray(open(os.path.join(d, "grad.bmp"), "rb").read())
struct.pack_into("<ii", bmp, 18, 30000, 30000)
open(os.path.join(d, "huge.bmp"), "wb").write(bytes(bmp))
jpg = bytearray(open(os.path.join(d, "grad.jpg"), "rb").read())
i = jpg.find(b"\xff\xc0")
struct.pack_into(">HH", jpg, i + 5, 30000, 30000)
open(os.path.join(d, "huge.jpg"), "wb").write(bytes(jpg))
