#!/usr/bin/python3
"""Independent reference for duet's int8 MobileNetV2 (issue 14): TFLite's
uint8 reference kernels written out in numpy integer arithmetic, on a
flatbuffer read here (no TensorFlow in Debian).

Kernels as tensorflow/lite/kernels/internal/reference (uint8, per-tensor):
  CONV_2D, DEPTHWISE_CONV_2D  acc = sum (x - zx)(w - zw) + bias (int32),
      out = zo + MultiplyByQuantizedMultiplier(acc, M), M = sx sw / so
      (double, QuantizeMultiplier: 31-bit mantissa, round half away), then
      clamp to the activation range (zo + round(bound / so), in [0, 255])
  ADD   left shift 20, multipliers s1 / 2max(s1, s2), s2 / 2max(s1, s2),
        2max(s1, s2) / (2^20 so), each rounding as gemmlowp does
  AVERAGE_POOL_2D  (sum + count / 2) / count (VALID padding, same grid)
  RESHAPE, SQUEEZE  identity; SOFTMAX not computed (the logits are output)
Input: the image as Keras load_img(target_size=224) gives it (PIL nearest),
uint8 pixels = the model's input grid.

--rounding even: the same integer arithmetic, but each requantization
rounded as duet's int8 path does on oneDNN: rint(f32(M) * f32(acc)) (round
half to even) for convolutions, rint(f32(s1/so) x1 + f32(s2/so) x2 + beta)
for ADD. (TFLite's fixed-point "double rounding" rounds M acc to 1/2^k
first, k the multiplier's exponent, and then half up: values within
1/2^(k+1) of a half are rounded the other way, e.g. 105.494 -> 106.)

usage: tflite_ref.py [--rounding tflite|even] MODEL.tflite IMAGE_DIR OUT_PREFIX NAME...
writes OUT_PREFIX.npy: uint8 [len(NAME) x (1280 + 1001)] (the feature, the
last AVERAGE_POOL_2D, then the logits, on their uint8 grids) and
OUT_PREFIX.txt (the names, one a row).

The committed fixtures were made with (M = the .tflite file)
  tflite_ref.py M ../shared/data/flickr8k/images \\
      tests/fixtures/image/ref_mobilenet_tflite NAMES
  tflite_ref.py --rounding even M ../shared/data/flickr8k/images \\
      tests/fixtures/image/ref_mobilenet_even NAMES
NAMES = 1000268201_693b08cb0e.jpg 1001773457_577c3a7d70.jpg
        1002674143_1b742ab4b8.jpg
"""
import struct, sys
import numpy as np
from PIL import Image


class FB:
    def __init__(self, b):
        self.b = b

    def u32(self, o): return struct.unpack_from("<I", self.b, o)[0]
    def i32(self, o): return struct.unpack_from("<i", self.b, o)[0]
    def u16(self, o): return struct.unpack_from("<H", self.b, o)[0]

    def field(self, t, i):
        vt = t - self.i32(t)
        if 4 + 2 * i + 2 > self.u16(vt):
            return None
        fo = self.u16(vt + 4 + 2 * i)
        return t + fo if fo else None

    def table(self, t, i):
        p = self.field(t, i)
        return None if p is None else p + self.u32(p)

    def vec(self, t, i):
        p = self.field(t, i)
        if p is None:
            return None
        v = p + self.u32(p)
        return v + 4, self.u32(v)

    def scalar(self, t, i, fmt, default):
        p = self.field(t, i)
        return default if p is None else struct.unpack_from("<" + fmt, self.b, p)[0]

    def elem_table(self, first, k):
        o = first + 4 * k
        return o + self.u32(o)


def load(path):
    f = FB(open(path, "rb").read())
    root = f.u32(0)
    bufs, sg = f.vec(root, 4), f.elem_table(f.vec(root, 2)[0], 0)
    codes = f.vec(root, 1)
    tens = f.vec(sg, 0)

    def tensor(k):
        t = f.elem_table(tens[0], k)
        sh = f.vec(t, 0)
        shape = [f.i32(sh[0] + 4 * j) for j in range(sh[1])]
        typ, buf = f.scalar(t, 1, "b", 0), f.scalar(t, 2, "I", 0)
        q = f.table(t, 4)
        sc = zp = None
        if q is not None:
            s, z = f.vec(q, 2), f.vec(q, 3)
            sc = float(np.frombuffer(f.b, np.float32, 1, s[0])[0]) if s and s[1] else None
            zp = int(np.frombuffer(f.b, np.int64, 1, z[0])[0]) if z and z[1] else 0
        d = f.vec(f.elem_table(bufs[0], buf), 0)
        raw = f.b[d[0]:d[0] + d[1]] if d else b""
        data = None
        if raw:
            data = np.frombuffer(raw, np.int32 if typ == 2 else np.uint8).reshape(shape).astype(np.int64)
        return dict(shape=shape, type=typ, s=sc, z=zp, data=data)

    ops = []
    ov = f.vec(sg, 3)
    for k in range(ov[1]):
        o = f.elem_table(ov[0], k)
        ct = f.elem_table(codes[0], f.scalar(o, 0, "I", 0))
        code = max(f.scalar(ct, 0, "b", 0), f.scalar(ct, 3, "i", 0))
        ins = [f.i32(f.vec(o, 1)[0] + 4 * j) for j in range(f.vec(o, 1)[1])]
        out = f.i32(f.vec(o, 2)[0])
        opt = f.table(o, 4)
        ops.append((code, ins, out, opt))
    inp = f.i32(f.vec(sg, 1)[0])
    return f, tensor, ops, inp


def quantize_multiplier(m):
    if m == 0:
        return 0, 0
    q, shift = np.frexp(m)
    qf = int(np.sign(q) * np.floor(abs(q) * (1 << 31) + 0.5))  # std::round
    if qf == (1 << 31):
        qf //= 2
        shift += 1
    return qf, int(shift)


def srdhm(a, b):  # SaturatingRoundingDoublingHighMul, int64 arrays
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    x = ab + nudge
    return np.where(x >= 0, x >> 31, -((-x) >> 31))  # C division truncates


def rdpot(x, e):  # RoundingDivideByPOT
    mask = (1 << e) - 1
    rem = x & mask
    thr = (mask >> 1) + (x < 0)
    return (x >> e) + (rem > thr)


def mbqm(x, qm, shift):  # MultiplyByQuantizedMultiplier
    left, right = max(shift, 0), max(-shift, 0)
    return rdpot(srdhm(x * (1 << left), qm), right)


def act_range(act, s, z):
    lo, hi = 0, 255
    if act in (1, 3):
        lo = max(lo, z + int(np.round(0.0 / s)))
    if act == 3:
        hi = min(hi, z + int(np.sign(6.0 / s) * np.floor(abs(6.0 / s) + 0.5)))
    return lo, hi


def same_pad(n, k, s):
    o = (n + s - 1) // s
    tot = max((o - 1) * s + k - n, 0)
    return o, tot // 2


def conv(x, xt, w, wt, b, ot, stride, pad_same, act, depthwise):
    n, h, wd, c = x.shape
    _, kh, kw, _ = w.shape
    if pad_same:
        oh, pt = same_pad(h, kh, stride[0])
        ow, pl = same_pad(wd, kw, stride[1])
    else:
        oh, ow, pt, pl = (h - kh) // stride[0] + 1, (wd - kw) // stride[1] + 1, 0, 0
    xp = np.zeros((n, h + kh + stride[0] * oh, wd + kw + stride[1] * ow, c), np.int64)  # zeros = zx - zx
    xp[:, pt:pt + h, pl:pl + wd, :] = x - xt["z"]
    wq = w - wt["z"]
    cout = wq.shape[3] if depthwise else wq.shape[0]
    acc = np.zeros((n, oh, ow, cout), np.int64)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i:i + stride[0] * oh:stride[0], j:j + stride[1] * ow:stride[1], :]
            acc += patch * wq[0, i, j, :] if depthwise else patch @ wq[:, i, j, :].T
    acc += b
    m = float(np.float64(xt["s"]) * np.float64(wt["s"]) / np.float64(ot["s"]))
    if EVEN:
        out = np.rint(np.float32(m) * acc.astype(np.float32)).astype(np.int64) + ot["z"]
    else:
        qm, sh = quantize_multiplier(m)
        out = mbqm(acc, qm, sh) + ot["z"]
    lo, hi = act_range(act, ot["s"], ot["z"])
    return np.clip(out, lo, hi)


def add(a, at, b, bt, ot, act):
    lo, hi = act_range(act, ot["s"], ot["z"])
    if EVEN:
        s1, s2 = np.float32(at["s"] / ot["s"]), np.float32(bt["s"] / ot["s"])
        beta = np.float32(ot["z"] - at["z"] * at["s"] / ot["s"] - bt["z"] * bt["s"] / ot["s"])
        v = (s1 * a.astype(np.float32) + s2 * b.astype(np.float32)) + beta
        return np.clip(np.rint(v).astype(np.int64), lo, hi)
    twice = 2 * max(at["s"], bt["s"])
    m1, s1 = quantize_multiplier(at["s"] / twice)
    m2, s2 = quantize_multiplier(bt["s"] / twice)
    mo, so = quantize_multiplier(twice / ((1 << 20) * ot["s"]))
    x1 = rdpot(srdhm((a - at["z"]) * (1 << 20), m1), -s1)
    x2 = rdpot(srdhm((b - bt["z"]) * (1 << 20), m2), -s2)
    out = rdpot(srdhm(x1 + x2, mo), -so) + ot["z"]
    return np.clip(out, lo, hi)


def run(path, img):
    f, tensor, ops, inp = load(path)
    T = {inp: img.astype(np.int64)[None]}
    feat = None
    for code, ins, out, opt in ops:
        ot = tensor(out)
        if code in (3, 4):  # CONV_2D, DEPTHWISE_CONV_2D
            xt, wt, bt = tensor(ins[0]), tensor(ins[1]), tensor(ins[2])
            pad = f.scalar(opt, 0, "b", 0)
            stride = (f.scalar(opt, 2, "i", 1), f.scalar(opt, 1, "i", 1))
            act = f.scalar(opt, 3 if code == 3 else 4, "b", 0)
            T[out] = conv(T[ins[0]], xt, wt["data"], wt, bt["data"], ot, stride, pad == 0, act, code == 4)
        elif code == 0:
            T[out] = add(T[ins[0]], tensor(ins[0]), T[ins[1]], tensor(ins[1]), ot, f.scalar(opt, 0, "b", 0))
        elif code == 1:  # AVERAGE_POOL_2D, VALID, the whole map here
            x = T[ins[0]]
            fw, fh = f.scalar(opt, 3, "i", 1), f.scalar(opt, 4, "i", 1)
            assert f.scalar(opt, 0, "b", 0) == 1 and (fh, fw) == x.shape[1:3]
            cnt = fh * fw
            T[out] = ((x.sum(axis=(1, 2), keepdims=True) + cnt // 2) // cnt)
            feat = T[out]
        elif code in (22, 43):  # RESHAPE, SQUEEZE
            T[out] = T[ins[0]].reshape(ot["shape"])
        elif code == 25:  # SOFTMAX: the logits are the output
            logits = T[ins[0]]
        else:
            raise SystemExit("op %d not supported" % code)
    return np.concatenate([feat.reshape(-1), logits.reshape(-1)]).astype(np.uint8)


EVEN = False


def main():
    global EVEN
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "--rounding":
        EVEN = args[1] == "even"
        args = args[2:]
    if len(args) < 4:
        raise SystemExit(__doc__)
    model, imdir, prefix, names = args[0], args[1], args[2], args[3:]
    rows = []
    for n in names:
        im = Image.open(imdir + "/" + n).convert("RGB")
        if im.size != (224, 224):
            im = im.resize((224, 224), Image.NEAREST)
        rows.append(run(model, np.asarray(im, np.uint8)))
    np.save(prefix + ".npy", np.stack(rows))
    open(prefix + ".txt", "w").write("".join(n + "\n" for n in names))


if __name__ == "__main__":
    main()
