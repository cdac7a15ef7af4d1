#!/usr/bin/python3
"""bench-ptq.py: PyTorch 1.13 eager post-training quantization of the shared
MobileNetV1-0.75, timed, as the reference `make bench` compares `qtool calib`
against (scripts/bench.sh).

    /usr/bin/python3 scripts/bench-ptq.py SHARED_DIR N THREADS

What is timed (wall clock, the same work qtool calib does): reading and
preprocessing the first N images of imagenet-dev in sorted order (PIL, center
crop 224, ToTensor, normalize 0.5/0.5), prepare() with a per-channel weight
observer and HistogramObserver activations (the PyTorch tutorial's
per-channel PTQ recipe), the calibration forward passes in batches of 32, and
convert(). Engine: onednn when present, else qnnpack (fbgemm is absent from
Debian's build). Prints one JSON line: {"seconds": ..., "images": N,
"engine": ...}.
"""
import json
import os
import sys
import time

import torch
import torchvision.transforms as T
from PIL import Image


def main():
    shared, n, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    sys.path.insert(0, os.path.join(shared, "models"))
    from mobilenet_v1 import mobilenet_v1
    engines = torch.backends.quantized.supported_engines
    engine = "onednn" if "onednn" in engines else "qnnpack"
    torch.backends.quantized.engine = engine
    root = os.path.join(shared, "data", "imagenet-dev")
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".png"))[:n]
    tf = T.Compose([T.CenterCrop(224), T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])

    t0 = time.perf_counter()
    m = mobilenet_v1(0.75, os.path.join(shared, "models", "mobilenet_v1_075.pth"), quant_stubs=True).eval()
    m.fuse_model()
    m.qconfig = torch.ao.quantization.QConfig(
        activation=torch.ao.quantization.HistogramObserver.with_args(reduce_range=False),
        weight=torch.ao.quantization.default_per_channel_weight_observer)
    torch.ao.quantization.prepare(m, inplace=True)
    with torch.no_grad():
        for i in range(0, len(files), 32):
            batch = torch.stack([tf(Image.open(f).convert("RGB")) for f in files[i:i + 32]])
            m(batch)
    torch.ao.quantization.convert(m, inplace=True)
    secs = time.perf_counter() - t0
    print(json.dumps({"seconds": round(secs, 3), "images": len(files), "engine": engine, "threads": threads}))


if __name__ == "__main__":
    main()
