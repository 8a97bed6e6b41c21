# Writes, in the current directory, what the sharded-search tests index
# beside a search_gallery.sh gallery (its model takes 1280-D MobileNetV2
# features): big.npy, 700 feature rows repeating 97 distinct ones (so scores
# tie within and across shards), big.names (g0000.jpg ...), big.caps (301
# captions) and queries.txt (7 text queries, one of unknown words).
import random, struct

r = random.Random(11)
base = [[max(0.0, r.gauss(0, 1)) for _ in range(1280)] for _ in range(97)]
n = 700
hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, 1280), }" % n
hdr += " " * (63 - (10 + len(hdr)) % 64) + "\n"
with open("big.npy", "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode())
    for i in range(n):
        f.write(struct.pack("<1280f", *base[(i * 7) % 97]))
with open("big.names", "w") as f:
    for i in range(n):
        f.write("g%04d.jpg\n" % i)
w = "a red blue green yellow square circle stripes cross background shape over".split()
with open("big.caps", "w") as f:
    for i in range(301):
        f.write(" ".join(w[(i * j + 3) % len(w)] for j in range(1, 6)) + "\n")
with open("queries.txt", "w") as f:
    for q in ["a red square", "blue circle", "green stripes on yellow", "white cross", "black shape",
              "yellow", "zzz unknown"]:
        f.write(q + "\n")
