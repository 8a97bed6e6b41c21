#!/usr/bin/python3
"""PyTorch peer of bench/bench_image.c: torchvision's ResNet-50 and
MobileNetV2 (float32, eval, random weights: speed only), same batch and
threads. Prints one JSON line like the C side."""
import argparse, json, time
import torch
import torchvision

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="resnet50")
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--seconds", type=float, default=20)
a = ap.parse_args()
torch.set_num_threads(a.threads)
net = (torchvision.models.resnet50() if a.model == "resnet50" else torchvision.models.mobilenet_v2()).eval()  # mobilenetv2 otherwise
x = torch.rand(a.batch, 3, 224, 224) * 255
with torch.no_grad():
    net(x)
    n, t0 = 0, time.perf_counter()
    while True:
        net(x)
        n += a.batch
        el = time.perf_counter() - t0
        if el >= a.seconds:
            break
print(json.dumps({"peer": "pytorch", "model": a.model, "threads": a.threads, "batch": a.batch,
                  "images_per_s": round(n / el, 3), "torch": torch.__version__}))
