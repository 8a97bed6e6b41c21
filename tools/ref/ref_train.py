#!/usr/bin/python3
"""Trains the independent PyTorch reference (duet_ref) on a duet dataset
directory and prints the test metrics of the best-validation model as one
JSON object on stdout.

    /usr/bin/python3 tools/ref/ref_train.py DIR [flags]

DIR holds images.npy [n_images x d_img] float32, texts.npy [n_captions x d_txt]
float32 and captions.tsv (NAME<TAB>caption<TAB>split per line, split in
train/val/test; the captions of an image on consecutive lines; images in order
of first appearance = rows of images.npy; caption line j = row j of texts.npy).

Output: {"i2t":{"r1","r5","r10","medr","meanr"},"t2i":{...},"rsum",
"best_epoch","seconds"} (seconds = training + evaluation wall time, without
loading).  Progress goes to stderr with -v.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import duet_ref as R  # noqa: E402


def set_threads(n):
    """torch intra-op threads and, since torch here calls the pthread OpenBLAS,
    OpenBLAS's own thread count."""
    torch.set_num_threads(n)
    try:
        import ctypes
        ctypes.CDLL("libopenblas.so.0").openblas_set_num_threads(n)
    except (OSError, AttributeError):
        pass


def load_dataset(d):
    """Returns dict img_x, txt_x (float32 torch), img_caps (caption rows per
    image), train/val/test (image index arrays), names."""
    img = np.load(os.path.join(d, "images.npy"))
    txt = np.load(os.path.join(d, "texts.npy"))
    names, index, caps, split = [], {}, [], []
    with open(os.path.join(d, "captions.tsv"), encoding="utf-8") as fp:
        j = 0
        for ln, line in enumerate(fp, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            parts = line.split("\t")
            if len(parts) < 3:
                raise SystemExit("%s/captions.tsv:%d: expected NAME<TAB>caption<TAB>split"
                                 % (d, ln))
            name, sp = parts[0], parts[-1]
            if sp not in ("train", "val", "test"):
                raise SystemExit("%s/captions.tsv:%d: bad split %r" % (d, ln, sp))
            if name not in index:
                index[name] = len(names)
                names.append(name)
                caps.append([])
                split.append(sp)
            i = index[name]
            if caps[i] and caps[i][-1] != j - 1:
                raise SystemExit("%s/captions.tsv:%d: captions of %s not consecutive"
                                 % (d, ln, name))
            if split[i] != sp:
                raise SystemExit("%s/captions.tsv:%d: %s in two splits" % (d, ln, name))
            caps[i].append(j)
            j += 1
    if img.shape[0] != len(names):
        raise SystemExit("images.npy has %d rows, captions.tsv names %d images"
                         % (img.shape[0], len(names)))
    if txt.shape[0] != j:
        raise SystemExit("texts.npy has %d rows, captions.tsv %d captions" % (txt.shape[0], j))
    split = np.asarray(split)
    return {"img_x": torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)),
            "txt_x": torch.from_numpy(np.ascontiguousarray(txt, dtype=np.float32)),
            "img_caps": caps, "names": names,
            "train": np.nonzero(split == "train")[0],
            "val": np.nonzero(split == "val")[0],
            "test": np.nonzero(split == "test")[0]}


def split_eval(model, data, which, fold_images):
    imgs = data[which]
    rows, owner = [], []
    for k, i in enumerate(imgs):
        rows.extend(data["img_caps"][i])
        owner.extend([k] * len(data["img_caps"][i]))
    return R.evaluate(model, data["img_x"][torch.as_tensor(imgs)],
                      data["txt_x"][torch.as_tensor(np.asarray(rows, dtype=np.int64))],
                      owner, fold_images)


def main():
    ap = argparse.ArgumentParser(description="duet PyTorch reference trainer")
    ap.add_argument("dir")
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--embed", type=int, default=512)
    ap.add_argument("--dropout", type=float, default=0.5)
    ap.add_argument("--margin", type=float, default=0.05)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--w-i2t", type=float, default=1.0)
    ap.add_argument("--w-t2i", type=float, default=1.5)
    ap.add_argument("--w-txt-struct", type=float, default=0.05)
    ap.add_argument("--one-way", action="store_true", help="drop the t2i term")
    ap.add_argument("--batch-images", type=int, default=500)
    ap.add_argument("--sents-per-image", type=int, default=2)
    ap.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    ap.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    ap.add_argument("--weight-decay", type=float, default=0.0, help="on W1/W2 only")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--lr-decay", type=float, default=0.794)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--patience", type=int, default=0, help="0: never stop early")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--linear", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="0: torch's default")
    ap.add_argument("--fold-images", type=int, default=0,
                    help="test folds of N images (0: the whole split)")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    if a.threads > 0:
        set_threads(a.threads)
    torch.manual_seed(a.seed)
    data = load_dataset(a.dir)
    if len(data["train"]) == 0 or len(data["val"]) == 0 or len(data["test"]) == 0:
        raise SystemExit("need train, val and test images")
    cfg = {"batch_images": a.batch_images, "sents_per_image": a.sents_per_image,
           "margin": a.margin, "top_k": a.top_k, "w_i2t": a.w_i2t,
           "w_t2i": 0.0 if a.one_way else a.w_t2i, "w_img_struct": 0.0,
           "w_txt_struct": a.w_txt_struct, "lr": a.lr, "lr_decay": a.lr_decay,
           "epochs": a.epochs, "patience": a.patience, "seed": a.seed,
           "optimizer": a.optimizer, "momentum": a.momentum,
           "weight_decay": a.weight_decay, "fold_images": 0}
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if a.verbose else None
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(a.seed)
    model = R.Model(data["img_x"].shape[1], data["txt_x"].shape[1], a.hidden, a.embed,
                    a.linear, a.dropout, gen)
    best_epoch, _, _ = R.train(model, data, cfg, log)
    m = split_eval(model, data, "test", a.fold_images)
    for d in ("i2t", "t2i"):
        m[d] = {k: round(v, 6) for k, v in m[d].items()}
    m["rsum"] = round(m["rsum"], 6)
    m["best_epoch"] = best_epoch
    m["seconds"] = round(time.perf_counter() - t0, 3)
    print(json.dumps(m))
    return 0


if __name__ == "__main__":
    sys.exit(main())
