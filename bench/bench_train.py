#!/usr/bin/python3
"""Times PyTorch training epochs of the duet reference model (tools/ref/duet_ref.py)
on Flickr30K-sized random features on the CPU, float32 or bf16 autocast.

    /usr/bin/python3 bench/bench_train.py [--threads N] [--epochs E] [--warmup W]
                                          [--precision f32|bf16]

Data: 29,000 train images x 5 captions, image features 4096-D, text 6000-D,
generated once in memory, not timed: a pool of 4096 uniform [0,1) rows copied
in shuffled order (so the features fill the full-size arrays at memcpy speed).
Model/loss: the paper's configuration -- hidden 2048, embed 512, B=500 images x
S=2 sentences, Adam lr 1e-4, dropout 0.5, margin 0.05, K=10, w_t2i 1.5,
w_txt_struct 0.05.  An epoch is ceil(29000/500) = 58 steps (last one smaller):
the image order shuffle, caption sampling, row gathering, forward, loss, backward
and Adam step are all timed; validation is not.  W warm-up steps run first and
are not counted.

By default the script re-executes itself with glibc MALLOC_* settings that keep
freed memory (--malloc tuned; --malloc default runs glibc as is): on these VMs a
page fault is expensive and PyTorch's per-step allocations otherwise cost several
times the arithmetic.

Prints one JSON line on stdout:
  {"peer":"pytorch","threads":N,"precision":"f32"|"bf16","seconds_per_epoch":..,
   "steps":..,"torch":version}
plus a few extra fields (data generation time, each epoch's time).
"""

import argparse
import ctypes
import json
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# glibc malloc settings for --malloc tuned: keep freed memory instead of
# returning it to the kernel, so the per-step tensors (tens of MB each) do not
# page-fault afresh every step (that cost dominates in sandboxed VMs where a page
# fault is expensive).  glibc reads them at start-up, hence the re-exec.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "4294967296",
              "MALLOC_TRIM_THRESHOLD_": "68719476736",
              "MALLOC_TOP_PAD_": "1073741824"}


def set_threads(n):
    import torch
    torch.set_num_threads(n)
    try:  # torch calls the pthread OpenBLAS here: give it the same count
        ctypes.CDLL("libopenblas.so.0").openblas_set_num_threads(n)
    except (OSError, AttributeError):
        pass


def autocast_forward_and_loss(model):
    """Runs the model's forward passes and the reference loss (which
    R.train_epoch calls) under CPU bf16 autocast; backward and Adam stay
    outside it."""
    import torch

    def under_autocast(fn):
        def wrapped(*args, **kw):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return fn(*args, **kw)
        return wrapped
    model.forward = under_autocast(model.forward)
    R.loss_terms = under_autocast(R.loss_terms)


def main():
    ap = argparse.ArgumentParser(description="PyTorch training-epoch benchmark")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--images", type=int, default=29000)
    ap.add_argument("--captions", type=int, default=5)
    ap.add_argument("--d-img", type=int, default=4096)
    ap.add_argument("--d-txt", type=int, default=6000)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--embed", type=int, default=512)
    ap.add_argument("--batch-images", type=int, default=500)
    ap.add_argument("--sents-per-image", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--precision", choices=("f32", "bf16"), default="f32",
                    help="bf16: forward and loss under torch.autocast (bfloat16)")
    ap.add_argument("--malloc", choices=("tuned", "default"), default="tuned",
                    help="tuned: re-exec with MALLOC_* settings that keep freed "
                         "memory (see MALLOC_ENV); default: glibc as is")
    a = ap.parse_args()
    if a.malloc == "tuned" and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        env = dict(os.environ)
        env.update(MALLOC_ENV)
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:],
                  env)
    global np, torch, R
    import numpy as np
    import torch
    sys.path.insert(0, os.path.join(HERE, "..", "tools", "ref"))
    import duet_ref as R
    set_threads(a.threads)
    torch.manual_seed(a.seed)

    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(a.seed)
    img_x = torch.empty(a.images, a.d_img, dtype=torch.float32)
    txt_x = torch.empty(a.images * a.captions, a.d_txt, dtype=torch.float32)
    for t in (img_x, txt_x):  # a random pool of 4096 rows, copied in shuffled order
        pool = torch.rand(min(4096, t.shape[0]), t.shape[1], generator=gen)
        for s in range(0, t.shape[0], pool.shape[0]):
            n = min(pool.shape[0], t.shape[0] - s)
            t[s:s + n] = pool[torch.randperm(pool.shape[0], generator=gen)[:n]]
    img_caps = [list(range(i * a.captions, (i + 1) * a.captions)) for i in range(a.images)]
    train_imgs = np.arange(a.images)
    gen_seconds = time.perf_counter() - t0

    cfg = {"batch_images": a.batch_images, "sents_per_image": a.sents_per_image,
           "margin": 0.05, "top_k": 10, "w_i2t": 1.0, "w_t2i": 1.5, "w_img_struct": 0.0,
           "w_txt_struct": 0.05}
    model = R.Model(a.d_img, a.d_txt, a.hidden, a.embed, False, 0.5, gen)
    opt = R.make_optimizer(model, "adam", 1e-4, 0.0)
    if a.precision == "bf16":
        autocast_forward_and_loss(model)
    rng = np.random.default_rng(a.seed)
    if a.warmup > 0:
        R.train_epoch(model, opt, img_x, txt_x, train_imgs, img_caps, cfg, rng, gen,
                      max_steps=a.warmup)
    steps = (a.images + a.batch_images - 1) // a.batch_images
    per_epoch = []
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(a.epochs):
        t1 = time.perf_counter()
        R.train_epoch(model, opt, img_x, txt_x, train_imgs, img_caps, cfg, rng, gen)
        per_epoch.append(time.perf_counter() - t1)
        for g in opt.param_groups:
            g["lr"] *= 0.794
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    print(json.dumps({"peer": "pytorch", "threads": a.threads, "precision": a.precision,
                      "seconds_per_epoch": round(sum(per_epoch) / len(per_epoch), 3),
                      "steps": steps, "torch": torch.__version__,
                      "epoch_seconds": [round(x, 3) for x in per_epoch],
                      "malloc": a.malloc, "warmup_steps": a.warmup,
                      "cpu_seconds_per_epoch": round(cpu / len(per_epoch), 3),
                      "data_gen_seconds": round(gen_seconds, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
