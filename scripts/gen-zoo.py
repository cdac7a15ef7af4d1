#!/usr/bin/python3
"""gen-zoo.py: exports torchvision 0.14 models with random weights, for
qtool's zoo test (scripts/t-zoo.sh, lib/test/t_zoo.c) and for measuring
quantization on the families torchvision has.

    /usr/bin/python3 scripts/gen-zoo.py [OUTDIR (default build/zoo)] [--only NAME,...] [--force]
        [--raw-init] [--images DIR] [--opset N]

Without --only: the classification families of MODELS (what t-zoo runs).
--only also takes the models of MORE: transformers and modern CNNs (vit_b_32,
swin_t, maxvit_t, convnext_tiny, efficientnet_v2_s, regnet_y_400mf,
mobilenet_v3_large; opset 17) and the segmentation models (lraspp_mobilenet_v3_large,
deeplabv3_mobilenet_v3_large, fcn_resnet50: input 240x320, non-square;
outputs 'out' [N, 21, 240, 320] and, for fcn_resnet50, 'aux' too).

For each model: torch.manual_seed(0), random weights, except when
torchvision's pretrained file for it is already in the torch hub cache
(torch.hub.get_dir()/checkpoints; nothing is downloaded). With random
weights, BatchNorm running statistics are re-estimated by train-mode passes
(cumulative average) on image-like inputs: with --images DIR, the first 16
images of DIR (resize 256, centre crop to the model's size, ImageNet mean/std);
else 16 seeded smooth random colour fields normalised the same way
(--raw-init keeps BatchNorm's initial statistics). A classifier head that
torchvision initialises to zero (ViT's) gets N(0, 0.02) weights so the
logits are not the bias alone. Then eval mode, torch.onnx.export (opset 13,
17 for MORE's transformers, or --opset; input 'input', output 'logits' or the
segmentation outputs, dynamic batch axis 'N', constant folding) to
OUTDIR/<name>.onnx, a seeded random input of batch 2 (float32 N(0, 1), raw
little-endian) to OUTDIR/<name>.input.bin, and ONNX Runtime's first output
on it (scripts/ort-run.mjs, optimizations disabled; needs
scripts/setup-node.sh) to OUTDIR/<name>.ort.bin.
A model whose three files are already there is skipped (files are written
under temporary names and renamed, .ort.bin last). OUTDIR is never committed.
Prints a line per model; exits 1 if any model failed.
"""
import argparse
import os
import subprocess
import sys
import time
import zlib

import numpy as np
import torch
import torchvision

MODELS = ["resnet18", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "shufflenet_v2_x0_5",
          "squeezenet1_0", "mnasnet0_5", "densenet121", "googlenet", "regnet_x_400mf"]
TRANSFORMERS = ["vit_b_32", "swin_t", "maxvit_t"]
MORE = TRANSFORMERS + ["convnext_tiny", "efficientnet_v2_s", "regnet_y_400mf", "mobilenet_v3_large"]
SEGMENTATION = ["lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large", "fcn_resnet50"]
SEG_SIZE = (240, 320)  # (H, W)
HERE = os.path.dirname(os.path.abspath(__file__))
MEAN, STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)


def size_of(name):
    return SEG_SIZE if name in SEGMENTATION else (224, 224)


def image_like(n, hw, images=None):
    """n inputs that look like images to BatchNorm: real ones from a folder, or smooth colour fields."""
    from PIL import Image
    h, w = hw
    out = []
    if images:
        files = sorted(os.path.join(d, f) for d, _, fs in os.walk(images) for f in fs
                       if f.lower().endswith((".png", ".jpg", ".jpeg")))[:n]
        for f in files:
            im = Image.open(f).convert("RGB")
            s = 256 / min(im.size)
            im = im.resize((max(w, round(im.size[0] * s)), max(h, round(im.size[1] * s))), Image.BILINEAR)
            left, top = (im.size[0] - w) // 2, (im.size[1] - h) // 2
            out.append(np.asarray(im.crop((left, top, left + w, top + h)), np.float32) / 255)
    rng = np.random.default_rng(7)
    while len(out) < n:
        g = int(rng.integers(3, 24))
        small = rng.integers(0, 256, (g, g, 3)).astype(np.uint8)
        im = np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR), np.float32) / 255
        out.append(np.clip(im + rng.normal(0, 0.03, im.shape).astype(np.float32), 0, 1))
    x = (np.stack(out) - MEAN) / STD
    return torch.from_numpy(x.transpose(0, 3, 1, 2).copy())


def cached_weights(name):
    """torchvision's pretrained weights for `name` when the file is already in the hub cache, else None."""
    try:
        w = torchvision.models.get_model_weights(name).DEFAULT
        if w is None:
            return None
    except Exception:
        return None
    f = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(w.url))
    return w if os.path.exists(f) else None


class SegOutputs(torch.nn.Module):
    """torchvision's segmentation models return a dict; ONNX wants a tuple."""
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        d = self.m(x)
        return (d["out"], d["aux"]) if "aux" in d else d["out"]


def build(name, bn_stats=True, images=None):
    torch.manual_seed(0)
    w = cached_weights(name)
    kw = {"weights": w}
    if name == "googlenet":
        kw.update(aux_logits=False, init_weights=False)
    if name in SEGMENTATION:
        kw["weights_backbone"] = None
        if name == "fcn_resnet50":
            kw["aux_loss"] = True  # two outputs: each gets its own SQNR in qtool eval
    m = getattr(torchvision.models.segmentation if name in SEGMENTATION else torchvision.models, name)(**kw)
    if name in SEGMENTATION:
        m = SegOutputs(m)
    if w is not None:
        return m.eval()
    lin = [l for l in m.modules() if isinstance(l, torch.nn.Linear)]
    if lin and not lin[-1].weight.detach().abs().max() > 0:  # ViT's zero head
        torch.nn.init.trunc_normal_(lin[-1].weight, std=0.02)
    if bn_stats and (name in MORE or name in SEGMENTATION):
        # Image-like inputs (see image_like), two train-mode passes of 8.
        bns = [b for b in m.modules() if isinstance(b, torch.nn.modules.batchnorm._BatchNorm)]
        if bns:
            for b in bns:
                b.reset_running_stats()
                b.momentum = None
            x = image_like(16, size_of(name), images)
            m.train()
            with torch.no_grad():
                for i in range(0, 16, 8):
                    m(x[i:i + 8])
        return m.eval()
    if bn_stats:
        # With torchvision's random init and BatchNorm's initial running stats (mean 0, var 1) the
        # activations of most of these nets shrink layer after layer: the logits come out as the
        # Linear bias alone (shufflenet, googlenet) or near 1e-9..1e-14 (mobilenet_v2,
        # efficientnet_b0, mnasnet), which hides errors in the convolutions from a test that
        # compares relative to the output scale. One train-mode pass on a seeded random batch sets
        # every BatchNorm's running mean/var to the statistics it sees (cumulative average), so
        # each layer's output is about unit scale in eval mode. Weights stay random.
        bns = [b for b in m.modules() if isinstance(b, torch.nn.modules.batchnorm._BatchNorm)]
        if bns:
            for b in bns:
                b.reset_running_stats()
                b.momentum = None
            g = torch.Generator().manual_seed(1)
            m.train()
            with torch.no_grad():
                m(torch.randn(4, 3, 224, 224, generator=g))
    return m.eval()


def files(out, name):
    return tuple(os.path.join(out, name + ext) for ext in (".onnx", ".input.bin", ".ort.bin"))


def gen(name, out, bn_stats, images=None, opset=None):
    onnx_path, in_path, ort_path = files(out, name)
    t0 = time.time()
    model = build(name, bn_stats, images)
    nparams = sum(p.numel() for p in model.parameters())
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    h, w = size_of(name)
    x = rng.standard_normal((2, 3, h, w)).astype(np.float32)
    tmp = onnx_path + ".tmp"
    outs = ["logits"]
    if name in SEGMENTATION:
        outs = ["out", "aux"] if name == "fcn_resnet50" else ["out"]
    if opset is None:
        opset = 17 if name in TRANSFORMERS or name == "convnext_tiny" else 13
    # not under no_grad: there nn.MultiheadAttention takes its fused fast path, which does not export
    torch.onnx.export(model, torch.from_numpy(x), tmp, opset_version=opset, input_names=["input"],
                      output_names=outs, dynamic_axes={k: {0: "N"} for k in ["input"] + outs},
                      do_constant_folding=True)
    with torch.no_grad():
        ref = model(torch.from_numpy(x))
        ref = (ref[0] if isinstance(ref, tuple) else ref).numpy()
    os.replace(tmp, onnx_path)
    x.astype("<f4").tofile(in_path + ".tmp")
    os.replace(in_path + ".tmp", in_path)
    t_export = time.time() - t0
    t1 = time.time()
    r = subprocess.run(["node", os.path.join(HERE, "ort-run.mjs"), onnx_path, "--input", in_path,
                        "--shape", f"2,3,{h},{w}", "--output", ort_path + ".tmp", "--opt", "disabled"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"ort-run.mjs failed: {(r.stderr or r.stdout).strip()}")
    got = np.fromfile(ort_path + ".tmp", dtype="<f4")
    if got.size != ref.size:
        raise RuntimeError(f"ONNX Runtime gave {got.size} values, PyTorch {ref.size}")
    os.replace(ort_path + ".tmp", ort_path)
    diff = float(np.abs(got.reshape(ref.shape) - ref).max())
    scale = float(np.abs(ref).max())
    return (f"{name}: {nparams / 1e6:.2f} M params, {os.path.getsize(onnx_path) / 1e6:.1f} MB onnx, opset {opset}, "
            f"{'pretrained' if cached_weights(name) else 'random'} weights, {outs[0]} {list(ref.shape)}, max|logit| {scale:.3g}, ORT vs PyTorch max diff {diff:.2g} "
            f"(rel {diff / scale if scale else diff:.2g}); export {t_export:.1f} s, ORT {time.time() - t1:.1f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", default="build/zoo")
    ap.add_argument("--only", help="comma-separated model names: " + ",".join(MODELS + MORE + SEGMENTATION))
    ap.add_argument("--images", help="folder of images whose first 16 re-estimate BatchNorm (default: synthetic "
                    "image-like inputs; only the models of MORE and SEGMENTATION)")
    ap.add_argument("--opset", type=int, help="ONNX opset (default 13; 17 for the transformers and ConvNeXt)")
    ap.add_argument("--force", action="store_true", help="export again even when the files are there")
    ap.add_argument("--raw-init", action="store_true",
                    help="keep BatchNorm's initial running stats (logits of most models collapse to ~0)")
    a = ap.parse_args()
    names = MODELS
    if a.only:
        names = [n for n in a.only.split(",") if n]
        unknown = [n for n in names if n not in MODELS + MORE + SEGMENTATION]
        if unknown:
            print(f"gen-zoo.py: unknown model {', '.join(unknown)}; known: {', '.join(MODELS + MORE + SEGMENTATION)}",
                  file=sys.stderr)
            return 2
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(2)
    t0 = time.time()
    bad = 0
    for name in names:
        if not a.force and all(os.path.exists(f) for f in files(a.out, name)):
            print(f"{name}: already in {a.out}, skipped", flush=True)
            continue
        try:
            print(gen(name, a.out, not a.raw_init, a.images, a.opset), flush=True)
        except Exception as e:  # keep going: report every model
            bad += 1
            print(f"{name}: FAILED: {e}", flush=True)
    print(f"gen-zoo.py: {len(names) - bad} of {len(names)} models in {a.out} ({time.time() - t0:.0f} s)", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
