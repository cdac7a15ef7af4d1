#!/usr/bin/python3
"""gen-zoo.py: exports torchvision 0.14 classification families with random
weights, for qtool's zoo test (scripts/t-zoo.sh, lib/test/t_zoo.c).

    /usr/bin/python3 scripts/gen-zoo.py [OUTDIR (default build/zoo)] [--only NAME,...] [--force]

For each model: torch.manual_seed(0), random weights, BatchNorm running statistics set by one train-mode pass
on a seeded random batch (see build(); --raw-init skips that), eval mode,
torch.onnx.export at 224x224 (opset 13, input 'input', output 'logits',
dynamic batch axis 'N', constant folding) to OUTDIR/<name>.onnx, a seeded
random input of batch 2 (float32 N(0, 1), raw little-endian) to
OUTDIR/<name>.input.bin, and ONNX Runtime's output on it (scripts/ort-run.mjs,
optimizations disabled; needs scripts/setup-node.sh) to OUTDIR/<name>.ort.bin.
--only may also name vit_b_32 (not in the default list; exported with grad
enabled, as its attention has no exportable no_grad path). A model whose three files are already there is skipped (files are written
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
# Not in the default list (make bench's MatMul-heavy model, scripts/bench.sh): only by --only.
EXTRA = ["vit_b_32"]
HERE = os.path.dirname(os.path.abspath(__file__))


def build(name, bn_stats=True):
    torch.manual_seed(0)
    kw = {"weights": None}
    if name == "googlenet":
        kw.update(aux_logits=False, init_weights=False)
    m = getattr(torchvision.models, name)(**kw)
    if name == "vit_b_32":  # torchvision zero-initialises the head: the logits would all be 0
        torch.nn.init.normal_(m.heads.head.weight, std=0.02)
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


def gen(name, out, bn_stats):
    onnx_path, in_path, ort_path = files(out, name)
    t0 = time.time()
    model = build(name, bn_stats)
    nparams = sum(p.numel() for p in model.parameters())
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x = rng.standard_normal((2, 3, 224, 224)).astype(np.float32)
    tmp = onnx_path + ".tmp"
    # nn.MultiheadAttention takes its fused fast path (not exportable) under no_grad in eval
    # mode, so the vision transformer is exported with grad enabled (same outputs).
    with torch.set_grad_enabled(name in EXTRA):
        torch.onnx.export(model, torch.from_numpy(x), tmp, opset_version=13, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                          do_constant_folding=True)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    os.replace(tmp, onnx_path)
    x.astype("<f4").tofile(in_path + ".tmp")
    os.replace(in_path + ".tmp", in_path)
    t_export = time.time() - t0
    t1 = time.time()
    r = subprocess.run(["node", os.path.join(HERE, "ort-run.mjs"), onnx_path, "--input", in_path,
                        "--shape", "2,3,224,224", "--output", ort_path + ".tmp", "--opt", "disabled"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"ort-run.mjs failed: {(r.stderr or r.stdout).strip()}")
    got = np.fromfile(ort_path + ".tmp", dtype="<f4")
    if got.size != ref.size:
        raise RuntimeError(f"ONNX Runtime gave {got.size} values, PyTorch {ref.size}")
    os.replace(ort_path + ".tmp", ort_path)
    diff = float(np.abs(got.reshape(ref.shape) - ref).max())
    scale = float(np.abs(ref).max())
    return (f"{name}: {nparams / 1e6:.2f} M params, {os.path.getsize(onnx_path) / 1e6:.1f} MB onnx, "
            f"logits {list(ref.shape)}, max|logit| {scale:.3g}, ORT vs PyTorch max diff {diff:.2g} "
            f"(rel {diff / scale if scale else diff:.2g}); export {t_export:.1f} s, ORT {time.time() - t1:.1f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", default="build/zoo")
    ap.add_argument("--only", help="comma-separated model names: " + ",".join(MODELS + EXTRA))
    ap.add_argument("--force", action="store_true", help="export again even when the files are there")
    ap.add_argument("--raw-init", action="store_true",
                    help="keep BatchNorm's initial running stats (logits of most models collapse to ~0)")
    a = ap.parse_args()
    names = MODELS
    if a.only:
        names = [n for n in a.only.split(",") if n]
        unknown = [n for n in names if n not in MODELS + EXTRA]
        if unknown:
            print(f"gen-zoo.py: unknown model {', '.join(unknown)}; known: {', '.join(MODELS + EXTRA)}", file=sys.stderr)
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
            print(gen(name, a.out, not a.raw_init), flush=True)
        except Exception as e:  # keep going: report every model
            bad += 1
            print(f"{name}: FAILED: {e}", flush=True)
    print(f"gen-zoo.py: {len(names) - bad} of {len(names)} models in {a.out} ({time.time() - t0:.0f} s)", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
