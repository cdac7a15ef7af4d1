#!/usr/bin/python3
"""gen-imagetests.py: fixtures for lib/test/t_image.c, written to testdata/images/.

Run with Debian's python3 (PIL, numpy, torch, torchvision):  /usr/bin/python3 scripts/gen-imagetests.py
Writes small PNGs in every colour type and bit depth, JPEGs, broken files, and
for each decodable image the expected result of torchvision's transforms
(<name>.<case>.bin, little-endian float32 CHW) plus expected.txt listing them:
    <file> <channels> <resize> <crop> <out_h> <out_w> <expected .bin>
Broken files are listed in broken.txt. Deterministic: same bytes every run."""
import os, struct, zlib
import numpy as np
from PIL import Image
import torchvision.transforms as T

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testdata", "images")
os.makedirs(out, exist_ok=True)
rng = np.random.RandomState(7)
W, H = 23, 17
rgb = rng.randint(0, 256, (H, W, 3), dtype=np.uint8)
grey = rng.randint(0, 256, (H, W), dtype=np.uint8)
files = {}

def save(name, im, **kw):
    p = os.path.join(out, name); im.save(p, **kw); files[name] = p

save("rgb8.png", Image.fromarray(rgb))
save("grey8.png", Image.fromarray(grey))
save("rgba.png", Image.fromarray(np.dstack([rgb, grey])))
save("greya.png", Image.fromarray(np.dstack([grey, 255 - grey]), "LA"))
pal = Image.fromarray(rgb).quantize(16)
save("palette.png", pal)
palt = pal.copy(); palt.info["transparency"] = 3
save("palette_trns.png", palt, transparency=3)
save("grey1.png", Image.fromarray(grey > 127).convert("1"))

def raw_png(name, w, h, bitdepth, colortype, rows):
    def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    data = b"".join(b"\x00" + r for r in rows)
    blob = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bitdepth, colortype, 0, 0, 0)) \
        + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b"")
    open(os.path.join(out, name), "wb").write(blob); files[name] = os.path.join(out, name)
    return blob

# 2- and 4-bit grey, 16-bit grey and RGB written by hand (PIL cannot write them)
g2 = (grey >> 6).astype(np.uint8)
raw_png("grey2.png", W, H, 2, 0, [bytes(np.packbits(np.unpackbits(r[:, None], axis=1)[:, 6:].reshape(-1))) for r in g2])
g4 = (grey >> 4).astype(np.uint8)
raw_png("grey4.png", W, H, 4, 0, [bytes(np.packbits(np.unpackbits(r[:, None], axis=1)[:, 4:].reshape(-1))) for r in g4])
g16 = (grey.astype(np.uint32) * 256 + rng.randint(0, 256, grey.shape)).astype(">u2")
raw_png("grey16.png", W, H, 16, 0, [r.tobytes() for r in g16])
c16 = (rgb.astype(np.uint32) * 256 + rng.randint(0, 256, rgb.shape)).astype(">u2")
good = raw_png("rgb16.png", W, H, 16, 2, [r.tobytes() for r in c16])
save("rgb.jpg", Image.fromarray(rgb), quality=90)
save("grey.jpg", Image.fromarray(grey), quality=90)

# expected pixels: what PIL gives (16-bit: the high byte, our documented choice)
def pil_rgb(name):
    if name == "rgb16.png": return Image.fromarray((c16 >> 8).astype(np.uint8))
    if name == "grey16.png": return Image.fromarray((g16 >> 8).astype(np.uint8)).convert("RGB")
    if name == "grey2.png": return Image.fromarray((g2 * 85).astype(np.uint8)).convert("RGB")
    if name == "grey4.png": return Image.fromarray((g4 * 17).astype(np.uint8)).convert("RGB")
    return Image.open(files[name]).convert("RGB")

cases = [(0, 0), (30, 26), (9, 8), (14, 16)]  # (resize, crop): upscale, downscale, pad-crop
lines = []
for name in sorted(files):
    base = pil_rgb(name)
    for ch in (3, 1):
        im = base if ch == 3 else base.convert("L")
        for rs, cr in cases:
            tf = []
            if rs: tf.append(T.Resize(rs))
            if cr: tf.append(T.CenterCrop(cr))
            tf += [T.ToTensor(), T.Normalize([0.5] * ch, [0.25] * ch)]
            x = T.Compose(tf)(im).numpy().astype("<f4")
            bn = f"{name}.c{ch}_r{rs}_c{cr}.bin"
            x.tofile(os.path.join(out, bn))
            lines.append(f"{name} {ch} {rs} {cr} {x.shape[1]} {x.shape[2]} {bn}")
open(os.path.join(out, "expected.txt"), "w").write("\n".join(lines) + "\n")

# broken files
bad = bytearray(good); bad[40] ^= 0xff  # inside IHDR/IDAT: CRC mismatch
open(os.path.join(out, "bad_crc.png"), "wb").write(bytes(bad))
open(os.path.join(out, "truncated.png"), "wb").write(good[: len(good) // 2])
open(os.path.join(out, "empty.png"), "wb").write(b"")
open(os.path.join(out, "text.png"), "w").write("this is not an image\n")
jp = open(files["rgb.jpg"], "rb").read()
open(os.path.join(out, "truncated.jpg"), "wb").write(jp[: len(jp) // 3])
open(os.path.join(out, "broken.txt"), "w").write("bad_crc.png\ntruncated.png\nempty.png\ntext.png\ntruncated.jpg\n")

# a small ImageFolder tree: labels by sorted folder name, recursion, non-images ignored
tree = os.path.join(out, "folder")
for cls, n in (("b_cls", 2), ("a_cls", 1), ("c_cls", 0)):
    os.makedirs(os.path.join(tree, cls), exist_ok=True)
    for i in range(n):
        Image.fromarray(grey).save(os.path.join(tree, cls, f"{i}.png"))
os.makedirs(os.path.join(tree, "b_cls", "sub"), exist_ok=True)
Image.fromarray(grey).save(os.path.join(tree, "b_cls", "sub", "z.PNG"))
open(os.path.join(tree, "b_cls", "notes.txt"), "w").write("ignored\n")
open(os.path.join(tree, "c_cls", ".keep"), "w").write("")
print("wrote", len(lines), "cases to", out)
