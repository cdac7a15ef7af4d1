#!/usr/bin/python3
"""gen-testdata.py: makes the bundled demo data testdata/fmnist/ (committed).

Run from the repository root with Debian's python (torch 1.13, onnx, PIL):
    /usr/bin/python3 scripts/gen-testdata.py [--epochs N] [--skip-ort]

From the Fashion-MNIST IDX files of the Debian package dataset-fashion-mnist
(/usr/share/datasets/fashion-mnist/*.gz) it writes
  testdata/fmnist/calib/<class>/<idx>.png  the first 30 training images of each class
  testdata/fmnist/test/<class>/<idx>.png   the first 50 test images of each class
(8-bit grey PNG, <idx> = the image's index in its IDX file, 5 digits), trains a
small CNN on all 60,000 training images (seeded, CPU, 2 threads), exports
  testdata/fmnist/model.onnx     opset 13, eval, BatchNormalization folded into Conv
  testdata/fmnist/model_bn.onnx  BatchNormalization kept (TrainingMode.PRESERVE)
and measures PyTorch's float top-1/top-5 on the PNGs it wrote (read back),
writing testdata/fmnist/expected.json, then ONNX Runtime's on the same inputs
(scripts/ort-run.mjs; needs scripts/setup-node.sh) and testdata/fmnist/README.md.
The model takes [N, 1, 28, 28], x = (p/255 - 0.5) / 0.5, and returns logits [N, 10].
"""
import argparse
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

SRC = "/usr/share/datasets/fashion-mnist"
CLASSES = ["0_tshirt_top", "1_trouser", "2_pullover", "3_dress", "4_coat",
           "5_sandal", "6_shirt", "7_sneaker", "8_bag", "9_ankle_boot"]
N_CALIB, N_TEST = 30, 50
SEED = 0


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    assert zero == 0 and dtype == 0x08, path  # unsigned byte
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(split):
    p = "train" if split == "train" else "t10k"
    x = read_idx(f"{SRC}/{p}-images-idx3-ubyte.gz")
    y = read_idx(f"{SRC}/{p}-labels-idx1-ubyte.gz").astype(np.int64)
    assert x.shape[0] == y.shape[0] and x.shape[1:] == (28, 28)
    return x, y


def write_pngs(x, y, per_class, root):
    """First `per_class` images of each class, in file order; returns [(path, label)]."""
    out = []
    for c, name in enumerate(CLASSES):
        d = os.path.join(root, name)
        os.makedirs(d, exist_ok=True)
        for old in os.listdir(d):
            if old.endswith(".png"):
                os.remove(os.path.join(d, old))
        idx = np.nonzero(y == c)[0][:per_class]
        assert len(idx) == per_class
        for i in idx:
            path = os.path.join(d, f"{i:05d}.png")
            Image.fromarray(x[i], mode="L").save(path)  # no metadata: byte-identical reruns
            out.append((path, c))
    return out


def read_folder(root):
    """ImageFolder order: sorted class folders, sorted files; pixels as PIL reads them back."""
    xs, ys, names = [], [], []
    for c, name in enumerate(sorted(os.listdir(root))):
        assert name == CLASSES[c], name
        for f in sorted(os.listdir(os.path.join(root, name))):
            im = Image.open(os.path.join(root, name, f))
            assert im.mode == "L" and im.size == (28, 28)
            xs.append(np.asarray(im, dtype=np.uint8))
            ys.append(c)
            names.append(f"{name}/{f}")
    return np.stack(xs), np.array(ys, dtype=np.int64), names


def preprocess(x_u8):
    x = torch.from_numpy(np.array(x_u8, copy=True)).float().unsqueeze(1) / 255.0
    return (x - 0.5) / 0.5


class FmnistCNN(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32),
                                  nn.ReLU6())
        # residual block 32 -> 32: conv+BN+ReLU, conv+BN, add the identity, ReLU
        self.res_conv1 = nn.Conv2d(32, 32, 3, padding=1, bias=False)
        self.res_bn1 = nn.BatchNorm2d(32)
        self.res_conv2 = nn.Conv2d(32, 32, 3, padding=1, bias=False)
        self.res_bn2 = nn.BatchNorm2d(32)
        self.pool = nn.MaxPool2d(2)
        # depthwise-separable: depthwise 3x3 + BN + ReLU, pointwise 1x1 + BN + ReLU
        self.dw = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.pw = nn.Sequential(nn.Conv2d(32, 64, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.down(self.stem(x))
        r = F.relu(self.res_bn1(self.res_conv1(x)))
        x = F.relu(self.res_bn2(self.res_conv2(r)) + x)
        x = self.pool(x)
        x = self.pw(self.dw(x))
        x = self.gap(x)
        x = x.view(x.size(0), -1)  # Shape/Gather/Unsqueeze/Concat/Reshape in the export
        return self.fc(self.drop(x))


def augment(xb, gen):
    """Random shift of -2..2 pixels (zero fill) and horizontal flip, per image."""
    b = xb.shape[0]
    pad = F.pad(xb, (2, 2, 2, 2), value=-1.0)  # -1 = black after normalization
    dy = torch.randint(0, 5, (b,), generator=gen)
    dx = torch.randint(0, 5, (b,), generator=gen)
    ar = torch.arange(28)
    rows = (dy[:, None] + ar)[:, :, None]
    cols = (dx[:, None] + ar)[:, None, :]
    out = pad[torch.arange(b)[:, None, None], 0, rows, cols].unsqueeze(1)
    flip = torch.rand(b, generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


def train(model, x, y, epochs, log):
    gen = torch.Generator().manual_seed(SEED)
    bs = 128
    steps = (x.shape[0] + bs - 1) // bs
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, epochs=epochs, steps_per_epoch=steps)
    for ep in range(epochs):
        model.train()
        t0 = time.time()
        perm = torch.randperm(x.shape[0], generator=gen)
        tot, correct = 0.0, 0
        for s in range(steps):
            idx = perm[s * bs:(s + 1) * bs]
            xb = augment(x[idx], gen)
            yb = y[idx]
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
            correct += (out.argmax(1) == yb).sum().item()
        log(f"epoch {ep + 1}/{epochs}: loss {tot / x.shape[0]:.4f} train acc {100 * correct / x.shape[0]:.2f}% "
            f"({time.time() - t0:.1f} s)")


def topk_counts(logits, y):
    logits = torch.as_tensor(logits)
    y = torch.as_tensor(y)
    top5 = logits.topk(5, dim=1).indices
    c1 = int((top5[:, 0] == y).sum())
    c5 = int((top5 == y[:, None]).any(1).sum())
    return c1, c5


def pct(c, n):
    return round(100 * c / n, 3)


@torch.no_grad()
def torch_logits(model, x_u8):
    model.eval()
    return torch.cat([model(preprocess(x_u8[i:i + 256])) for i in range(0, len(x_u8), 256)])


def ort_logits(onnx_path, x_u8, tmp):
    """Runs scripts/ort-run.mjs (opt 'all', ORT's default) on the same float inputs."""
    inp = os.path.join(tmp, "in.bin")
    outp = os.path.join(tmp, "out.bin")
    preprocess(x_u8).numpy().astype("<f4").tofile(inp)
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run(["node", os.path.join(here, "ort-run.mjs"), onnx_path, "--input", inp,
                    "--shape", f"{len(x_u8)},1,28,28", "--output", outp, "--threads", "1"],
                   check=True, stdout=subprocess.DEVNULL)
    return np.fromfile(outp, dtype="<f4").reshape(len(x_u8), 10)


def export(model, path, bn):
    model.eval()
    dummy = torch.zeros(1, 1, 28, 28)
    kw = dict(opset_version=13, input_names=["input"], output_names=["logits"],
              dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    if bn:
        torch.onnx.export(model, dummy, path, training=torch.onnx.TrainingMode.PRESERVE,
                          do_constant_folding=False, **kw)
    else:
        torch.onnx.export(model, dummy, path, training=torch.onnx.TrainingMode.EVAL,
                          do_constant_folding=True, **kw)


def op_counts(path):
    import onnx
    m = onnx.load(path)
    onnx.checker.check_model(m)
    c = {}
    for n in m.graph.node:
        c[n.op_type] = c.get(n.op_type, 0) + 1
    return dict(sorted(c.items())), m


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="testdata/fmnist")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--skip-ort", action="store_true", help="do not run ONNX Runtime (README keeps no ORT figures)")
    args = ap.parse_args()
    t_start = time.time()
    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    torch.use_deterministic_algorithms(True)
    log = lambda m: print(m, flush=True)  # noqa: E731
    out = args.out
    os.makedirs(out, exist_ok=True)

    xtr, ytr = load("train")
    xte, yte = load("test")
    write_pngs(xtr, ytr, N_CALIB, os.path.join(out, "calib"))
    write_pngs(xte, yte, N_TEST, os.path.join(out, "test"))
    log(f"wrote {10 * N_CALIB} calib and {10 * N_TEST} test PNGs under {out}")

    model = FmnistCNN()
    nparams = sum(p.numel() for p in model.parameters())
    log(f"training FmnistCNN ({nparams} parameters) for {args.epochs} epochs on {len(xtr)} images")
    t0 = time.time()
    train(model, preprocess(xtr), torch.from_numpy(ytr), args.epochs, log)
    t_train = time.time() - t0
    model.eval()

    m_path = os.path.join(out, "model.onnx")
    bn_path = os.path.join(out, "model_bn.onnx")
    export(model, m_path, bn=False)
    export(model, bn_path, bn=True)
    ops, _ = op_counts(m_path)
    ops_bn, _ = op_counts(bn_path)
    log(f"model.onnx ops: {ops}")
    log(f"model_bn.onnx ops: {ops_bn}")

    # PyTorch on the PNGs written above, read back
    expected = {}
    sets = {}
    for split in ("test", "calib"):
        x, y, _ = read_folder(os.path.join(out, split))
        sets[split] = (x, y)
        c1, c5 = topk_counts(torch_logits(model, x), y)
        expected[split] = {"images": len(y), "top1": pct(c1, len(y)), "top5": pct(c5, len(y))}
        log(f"PyTorch {split}: {expected[split]}")
    c1, c5 = topk_counts(torch_logits(model, xte), yte)
    full = {"images": len(yte), "top1": pct(c1, len(yte)), "top5": pct(c5, len(yte))}
    log(f"PyTorch full test set: {full}")
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=2)
        f.write("\n")

    ort_rows = []
    if not args.skip_ort:
        with tempfile.TemporaryDirectory() as tmp:
            for split in ("test", "calib"):
                x, y = sets[split]
                ref = torch_logits(model, x).numpy()
                for name, p in (("model.onnx", m_path), ("model_bn.onnx", bn_path)):
                    lo = ort_logits(p, x, tmp)
                    c1, c5 = topk_counts(lo, y)
                    agree = int((lo.argmax(1) == ref.argmax(1)).sum())
                    diff = float(np.abs(lo - ref).max())
                    ort_rows.append((split, name, len(y), pct(c1, len(y)), pct(c5, len(y)), agree, diff))
                    log(f"ORT {name} {split}: top1 {pct(c1, len(y))} top5 {pct(c5, len(y))} "
                        f"top-1 agreement with PyTorch {agree}/{len(y)}, max |logit diff| {diff:.2e}")

    sizes = {n: os.path.getsize(os.path.join(out, n)) for n in ("model.onnx", "model_bn.onnx")}
    write_readme(out, args.epochs, nparams, t_train, expected, full, ort_rows, ops, ops_bn, sizes)
    log(f"training took {t_train:.1f} s; done in {time.time() - t_start:.1f} s")


def write_readme(out, epochs, nparams, t_train, expected, full, ort_rows, ops, ops_bn, sizes):
    fmt_ops = lambda o: ", ".join(f"{v} {k}" for k, v in o.items())  # noqa: E731
    L = []
    L.append("# testdata/fmnist — bundled demo model and images\n")
    L.append("Made by `scripts/gen-testdata.py` (run from the repository root with Debian's "
             "`/usr/bin/python3`, torch 1.13); do not edit by hand.\n")
    L.append("## Images\n")
    L.append("From the Debian package `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist/*.gz`, the IDX "
             "files of zalandoresearch/fashion-mnist; MIT, (c) 2017 Zalando SE). 28x28 8-bit grey PNG "
             "(mode `L`), pixels exactly as in the IDX files, named `<class>/<index in the IDX file, 5 digits>.png`. "
             "Class folders `0_tshirt_top 1_trouser 2_pullover 3_dress 4_coat 5_sandal 6_shirt 7_sneaker 8_bag "
             "9_ankle_boot`: sorted folder order = class index = Fashion-MNIST label.\n")
    L.append(f"- `calib/`: the first {N_CALIB} training images of each class (file order), {10 * N_CALIB} images. "
             "They were also part of the training set.")
    L.append(f"- `test/`: the first {N_TEST} test-set images of each class, {10 * N_TEST} images.\n")
    L.append("## Model\n")
    L.append(f"A small CNN, {nparams:,} parameters, trained with torch 1.13 on CPU (2 threads, about 3 min "
             f"on this project's 2-core machine) on all 60,000 training images: {epochs} epochs, batch 128, SGD Nesterov "
             "momentum 0.9, weight decay 5e-4, OneCycle max lr 0.1, augmentation random +-2 px shift and "
             "horizontal flip, seed 0, `torch.use_deterministic_algorithms(True)`.\n")
    L.append("Architecture: stem Conv3x3(1->16)+BN+ReLU; Conv3x3 stride 2 (16->32)+BN+ReLU6; residual block "
             "(Conv3x3+BN+ReLU, Conv3x3+BN, Add identity, ReLU); MaxPool 2x2; depthwise-separable "
             "(depthwise Conv3x3 group=32+BN+ReLU, pointwise Conv1x1 32->64+BN+ReLU); global average pool; "
             "`x.view(x.size(0), -1)`; Dropout(0.2); Linear(64->10).\n")
    L.append("- **Input** `input` `[N, 1, 28, 28]` float32, x = (p/255 - 0.5) / 0.5, no resize or crop "
             "(qtool `--preset mnist`). **Output** `logits` `[N, 10]` (no softmax). `N` is a dynamic axis.")
    L.append(f"- `model.onnx` ({sizes['model.onnx']} bytes): opset 13, IR 7, exported in eval mode with constant "
             f"folding, BatchNormalization folded into Conv. Ops: {fmt_ops(ops)}. ReLU6 is `Clip(0, 6)`; the "
             "flatten is the Shape/Gather/Unsqueeze/Concat/Reshape glue of a dynamic batch; Dropout is gone "
             "(eval).")
    L.append(f"- `model_bn.onnx` ({sizes['model_bn.onnx']} bytes): the same weights exported with "
             f"`TrainingMode.PRESERVE` in eval mode and no constant folding, BatchNormalization kept. Ops: "
             f"{fmt_ops(ops_bn)}.\n")
    L.append("## Float accuracy\n")
    L.append("PyTorch (the trained module in eval mode, float32), on the PNGs above read back with PIL, "
             "x = (p/255 - 0.5)/0.5. `expected.json` holds the same figures: percentages "
             "`round(100 * correct / images, 3)`.\n")
    L.append("| set | images | top-1 | top-5 |")
    L.append("|---|---|---|---|")
    for s in ("test", "calib"):
        e = expected[s]
        L.append(f"| `{s}/` | {e['images']} | {e['top1']} | {e['top5']} |")
    L.append(f"| full Fashion-MNIST test set (IDX, not bundled) | {full['images']} | {full['top1']} | {full['top5']} |")
    L.append("")
    if ort_rows:
        L.append("ONNX Runtime 1.30 (onnxruntime-node, CPU, `scripts/ort-run.mjs`, optimization level 'all', "
                 "1 thread) on the same float inputs:\n")
        L.append("| set | model | top-1 | top-5 | top-1 agreement with PyTorch | max abs logit difference |")
        L.append("|---|---|---|---|---|---|")
        for split, name, n, t1, t5, agree, diff in ort_rows:
            L.append(f"| `{split}/` | `{name}` | {t1} | {t5} | {agree}/{n} | {diff:.1e} |")
        L.append("")
    L.append("## Reproducing\n")
    L.append("`sh scripts/setup-node.sh && /usr/bin/python3 scripts/gen-testdata.py` (a few minutes on 2 cores). "
             "The PNGs, `model.onnx`, `model_bn.onnx`, `expected.json` and this README come out byte-identical "
             "on a rerun on the same machine (torch's CPU kernels are deterministic here).\n")
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("\n".join(L))


if __name__ == "__main__":
    sys.exit(main())
