#!/usr/bin/python3
"""bench-qat.py: one PyTorch 1.13 eager QAT training step of the shared
MobileNetV1-0.75, timed, as the reference `make bench` compares `qtool qat`
against (scripts/bench.sh).

    /usr/bin/python3 scripts/bench-qat.py SHARED_DIR BATCH THREADS STEPS

The model (mobilenet_v1.py with its weights) in train mode, Conv+BN(+ReLU)
fused for QAT (fuse_modules_qat), prepare_qat with the onednn default QAT
qconfig (per-channel weight fake-quant, moving-average activation
fake-quant), SGD momentum 0.9. What is timed: forward, cross-entropy,
backward and optimizer step on one fixed batch of preprocessed images (the
first BATCH of imagenet-dev: center crop 224, normalize 0.5/0.5), STEPS
times after one warm-up step. Prints one JSON line with the median step
time in ms.
"""
import json
import os
import statistics
import sys
import time

import torch
import torchvision.transforms as T
from PIL import Image


def main():
    shared, batch, threads, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    sys.path.insert(0, os.path.join(shared, "models"))
    from mobilenet_v1 import mobilenet_v1
    engines = torch.backends.quantized.supported_engines
    engine = "onednn" if "onednn" in engines else "qnnpack"
    torch.backends.quantized.engine = engine
    root = os.path.join(shared, "data", "imagenet-dev")
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".png"))[:batch]
    tf = T.Compose([T.CenterCrop(224), T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])
    x = torch.stack([tf(Image.open(f).convert("RGB")) for f in files])
    y = torch.randint(0, 1000, (batch,))

    m = mobilenet_v1(0.75, os.path.join(shared, "models", "mobilenet_v1_075.pth"), quant_stubs=True).train()
    for blk in m.features:
        names = ["1", "2", "3"] if isinstance(blk[3], torch.nn.ReLU) else ["1", "2"]
        torch.ao.quantization.fuse_modules_qat(blk, names, inplace=True)
    m.qconfig = torch.ao.quantization.get_default_qat_qconfig(engine)
    torch.ao.quantization.prepare_qat(m, inplace=True)
    opt = torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        opt.zero_grad()
        loss = loss_fn(m(x), y)
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t)
    print(json.dumps({"step_ms": round(1000 * statistics.median(times), 1), "batch": batch, "threads": threads,
                      "engine": engine, "steps": steps}))


if __name__ == "__main__":
    main()
