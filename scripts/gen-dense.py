#!/usr/bin/python3
"""gen-dense.py: the dense-prediction fixture of scripts/t-dense.sh, in
testdata/dense/ (committed; rebuilding gives the same files).

    /usr/bin/python3 scripts/gen-dense.py [OUTDIR (default testdata/dense)]

- model.onnx: a tiny FCN-like segmentation net with seeded random weights
  (torch.manual_seed(0)): Conv 3x3 stride 2 (3->8) + BatchNorm + ReLU,
  Conv 3x3 (8->8) + ReLU, Conv 1x1 (8->5) = output 'aux' [N, 5, 16, 24],
  bilinear Upsample x2 (Resize, align_corners False) = output 'out'
  [N, 5, 32, 48]. Input 'input' [N, 3, 32, 48] (non-square, fixed size,
  dynamic batch), opset 13; BatchNorm statistics set by one train-mode pass
  on the images themselves, so the classes are balanced enough for IoU to
  mean something.
- images/: 7 PNG images (RGB) of different sizes, none 48x32 except one,
  smooth random colour fields (seeded).
- masks/: one class-index PNG per image, the same name and size as it: the
  float model's class per pixel on the image resized to 48x32, brought back
  to the image's size (nearest), with 15% of 4x4 blocks set to another
  class and a 2-pixel border of 255 (ignore). Odd images are palette PNGs
  (VOC style), even ones 8-bit grey.
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

SIZES = [(48, 32), (60, 40), (64, 64), (30, 50), (96, 64), (45, 45), (100, 37)]  # (w, h)
H, W, C = 32, 48, 5


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, 2, 1)
        self.bn = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, 1, 1)
        self.c3 = nn.Conv2d(8, C, 1)

    def forward(self, x):
        a = self.c3(torch.relu(self.c2(torch.relu(self.bn(self.c1(x))))))
        return nn.functional.interpolate(a, scale_factor=2, mode="bilinear", align_corners=False), a


def image(rng, w, h):
    small = rng.integers(0, 256, size=(max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
    return Image.fromarray(small).resize((w, h), Image.BILINEAR)


def tensor(img):
    x = np.asarray(img.resize((W, H), Image.BILINEAR), dtype=np.float32) / 255.0
    x = (x - 0.5) / 0.25
    return torch.from_numpy(x.transpose(2, 0, 1).copy())


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "testdata/dense"
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    os.makedirs(os.path.join(out, "masks"), exist_ok=True)
    rng = np.random.default_rng(19)
    imgs = [image(rng, w, h) for w, h in SIZES]
    torch.manual_seed(0)
    m = Net()
    batch = torch.stack([tensor(i) for i in imgs])
    m.bn.momentum = None
    m.train()
    with torch.no_grad():
        m(batch)
    m.eval()
    with torch.no_grad():
        y = m(batch)[0].argmax(1).numpy().astype(np.uint8)
    for k, (img, (w, h)) in enumerate(zip(imgs, SIZES)):
        name = "img%d" % k
        img.save(os.path.join(out, "images", name + ".png"))
        mk = np.asarray(Image.fromarray(y[k]).resize((w, h), Image.NEAREST)).copy()
        for by in range(0, h, 4):
            for bx in range(0, w, 4):
                if rng.random() < 0.15:
                    mk[by:by + 4, bx:bx + 4] = (mk[by:by + 4, bx:bx + 4] + rng.integers(1, C)) % C
        mk[:2, :] = mk[-2:, :] = 255
        mk[:, :2] = mk[:, -2:] = 255
        im = Image.fromarray(mk, "L")
        if k % 2:
            im = im.convert("P")
            pal = [0] * 768
            for c in range(C):
                pal[3 * c:3 * c + 3] = [40 * c, 255 - 40 * c, 100]
            im.putpalette(pal)
        im.save(os.path.join(out, "masks", name + ".png"))
    torch.onnx.export(m, batch[:1], os.path.join(out, "model.onnx"), opset_version=13, input_names=["input"],
                      output_names=["out", "aux"],
                      dynamic_axes={"input": {0: "N"}, "out": {0: "N"}, "aux": {0: "N"}})
    print("gen-dense.py: %d images, masks and model.onnx in %s" % (len(imgs), out))


if __name__ == "__main__":
    main()
