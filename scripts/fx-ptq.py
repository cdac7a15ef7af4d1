#!/usr/bin/python3
"""fx-ptq.py: PyTorch 1.13 FX post-training static quantization of a real
ImageNet model of ../shared, the reference row `make accuracy` prints next to
qtool's (scripts/accuracy.sh).

    /usr/bin/python3 scripts/fx-ptq.py SHARED MODEL TRAIN_DIR HOLD_DIR [--wbits 8|4] [--limit N]

MODEL: mobilenet_v2 | squeezenet1_1 (the .pth + .py of SHARED/models).
Images: ImageFolder layout (class folders named by synset), labels from
SHARED/data/imagenet_classes.txt; preprocessing resize 256 (PIL bilinear),
center crop 224, ToTensor, ImageNet mean/std, as the models' README says.
Recipe: torch.ao.quantization.quantize_fx.prepare_fx with
get_default_qconfig_mapping("fbgemm") (per-channel symmetric int8 weights,
HistogramObserver uint8 activations with reduce_range), calibration forward
passes on the first N images of TRAIN_DIR (sorted order, as qtool --limit),
convert_fx, run on the onednn engine (fbgemm is not in Debian's build).
--wbits 4: the same mapping with the weight observer limited to [-8, 7]
(per-channel symmetric), converted with convert_to_reference_fx (quantize /
dequantize around float ops: PyTorch has no 4-bit kernels).
Prints one JSON line: float and quantized top-1 on HOLD_DIR, top-1 agreement
with float, output SQNR (dB), calibration seconds.
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torchvision.transforms as T
from PIL import Image


def load(shared, name):
    sys.path.insert(0, os.path.join(shared, "models"))
    if name == "mobilenet_v2":
        from mobilenet_v2_folded import mobilenet_v2_folded as f
    elif name == "squeezenet1_1":
        from squeezenet import squeezenet1_1 as f
    else:
        raise SystemExit(f"fx-ptq.py: unknown model '{name}' (mobilenet_v2, squeezenet1_1)")
    return f(os.path.join(shared, "models", name + ".pth")).eval()


def images(root, classes):
    out = []
    for c in sorted(os.listdir(root)):
        d = os.path.join(root, c)
        if os.path.isdir(d):
            out += [(os.path.join(d, f), classes.index(c)) for f in sorted(os.listdir(d))]
    return out


def batches(files, tf, bs=32):
    for i in range(0, len(files), bs):
        chunk = files[i:i + bs]
        yield torch.stack([tf(Image.open(f).convert("RGB")) for f, _ in chunk]), [l for _, l in chunk]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("shared")
    ap.add_argument("model")
    ap.add_argument("train")
    ap.add_argument("hold")
    ap.add_argument("--wbits", type=int, default=8, choices=(4, 8))
    ap.add_argument("--limit", type=int, default=512)
    a = ap.parse_args()
    torch.set_num_threads(2)
    torch.backends.quantized.engine = "onednn"
    from torch.ao.quantization import QConfig, get_default_qconfig_mapping
    from torch.ao.quantization.observer import PerChannelMinMaxObserver
    from torch.ao.quantization.quantize_fx import convert_fx, convert_to_reference_fx, prepare_fx

    classes = open(os.path.join(a.shared, "data", "imagenet_classes.txt")).read().split()
    tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                    T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    train = images(a.train, classes)[:a.limit]
    hold = images(a.hold, classes)
    fm = load(a.shared, a.model)
    qmap = get_default_qconfig_mapping("fbgemm")
    if a.wbits == 4:
        g = qmap.global_qconfig
        w4 = PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
                                                quant_min=-8, quant_max=7)
        qmap = qmap.set_global(QConfig(activation=g.activation, weight=w4))
        for k, v in list(qmap.object_type_qconfigs.items()):
            if v is not None and v.weight is not None:
                qmap.set_object_type(k, QConfig(activation=v.activation, weight=w4))
    t0 = time.perf_counter()
    ex = torch.randn(1, 3, 224, 224)
    pm = prepare_fx(load(a.shared, a.model), qmap, example_inputs=(ex,))
    with torch.no_grad():
        for x, _ in batches(train, tf):
            pm(x)
    qm = convert_to_reference_fx(pm) if a.wbits == 4 else convert_fx(pm)
    secs = time.perf_counter() - t0
    n = nf = nq = agree = 0
    sig = noise = 0.0
    with torch.no_grad():
        for x, lab in batches(hold, tf):
            yf, yq = fm(x), qm(x)
            pf, pq = yf.argmax(1), yq.argmax(1)
            lab = torch.tensor(lab)
            n += len(lab)
            nf += int((pf == lab).sum())
            nq += int((pq == lab).sum())
            agree += int((pf == pq).sum())
            sig += float((yf.double() ** 2).sum())
            noise += float(((yq.double() - yf.double()) ** 2).sum())
    print(json.dumps({"model": a.model, "wbits": a.wbits, "calib_images": len(train), "images": n,
                      "float_top1": round(100 * nf / n, 2), "top1": round(100 * nq / n, 2),
                      "agreement": round(100 * agree / n, 2),
                      "sqnr_db": round(10 * math.log10(sig / noise), 2) if noise > 0 else None,
                      "calib_s": round(secs, 1)}))


if __name__ == "__main__":
    main()
