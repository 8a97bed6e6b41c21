#!/usr/bin/python3
"""PyTorch peer of bench/bench_image.c: torchvision's ResNet-50 and
MobileNetV2 (eval, random weights: speed only), same batch and threads.
Modes: f32 (float32, NCHW, no_grad) and bf16 (PyTorch's best on a CPU with
native bf16: torch.autocast("cpu", bfloat16), channels_last model and
input, torch.inference_mode). Prints one JSON line like the C side."""
import argparse, json, time
import torch
import torchvision

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="resnet50")
ap.add_argument("--mode", default="f32", choices=["f32", "bf16"])
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--seconds", type=float, default=20)
a = ap.parse_args()
torch.set_num_threads(a.threads)
net = (torchvision.models.resnet50() if a.model == "resnet50" else torchvision.models.mobilenet_v2()).eval()
x = torch.rand(a.batch, 3, 224, 224) * 255
if a.mode == "bf16":
    net = net.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    ctx = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
else:
    import contextlib
    ctx = contextlib.nullcontext
with torch.inference_mode() if a.mode == "bf16" else torch.no_grad(), ctx():
    for _ in range(2):
        net(x)
    n, t0 = 0, time.perf_counter()
    while True:
        net(x)
        n += a.batch
        el = time.perf_counter() - t0
        if el >= a.seconds:
            break
print(json.dumps({"peer": "pytorch", "model": a.model, "mode": a.mode, "threads": a.threads, "batch": a.batch,
                  "images_per_s": round(n / el, 3), "torch": torch.__version__}))
