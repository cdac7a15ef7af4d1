#!/bin/sh
# t-report.sh: qtool eval --report DIR on the bundled Fashion-MNIST model
# quantized by calib. Without a browser: one self-contained page (no script,
# no network), one SVG per chart, every mark carrying the figures of
# eval --json; those figures checked against an independent computation
# (the input's SQNR from the saved inputs and the quant_info scale, the
# clipping ranges from quant_info.json, the histogram counts) and against a
# 4-bit model (lower SQNR). With Debian's chromium: the page renders to a
# screenshot that is not blank, with no console error.
# needs: python3
. scripts/testlib.sh
D=testdata/fmnist
PP="--preset mnist --latency-runs 0 -q"
expect_ok "calib W8A8" $QTOOL calib $D/model_bn.onnx --data $D/calib --preset mnist -o $TMP/q8.onnx -q
expect_ok "calib W4A8" $QTOOL calib $D/model_bn.onnx --data $D/calib --preset mnist -o $TMP/q4.onnx -q --wbits 4
expect_fail 2 "--report needs --ref" $QTOOL eval $TMP/q8.onnx --data $D/test $PP --report $TMP/r
expect_ok "eval --report" $QTOOL eval $TMP/q8.onnx --ref $D/model_bn.onnx --data $D/test $PP --report $TMP/r \
    --report-images 40 --json $TMP/e8.json
expect_ok "eval --report of the 4-bit model" $QTOOL eval $TMP/q4.onnx --ref $D/model_bn.onnx --data $D/test $PP \
    --report $TMP/r4 --report-images 40 --json $TMP/e4.json
H=$TMP/r/index.html
check "the page exists" test -s $H
check "its path is in the JSON" test "$(json $TMP/e8.json report)" = "$H"

expect_ok "structure: one SVG per chart, marks equal to the JSON" python3 - $H $TMP/e8.json <<'PY'
import json, sys, re
from html.parser import HTMLParser
html = open(sys.argv[1]).read()
d = json.load(open(sys.argv[2]))
class P(HTMLParser):
    def __init__(s):
        super().__init__(); s.svgs = []; s.cur = None; s.tags = []
    def handle_starttag(s, t, a):
        a = dict(a); s.tags.append(t)
        if t == "svg":
            s.cur = {"cls": a.get("class", "").split(), "a": a, "marks": []}; s.svgs.append(s.cur)
        elif s.cur is not None and t in ("rect", "line"):
            s.cur["marks"].append((t, a))
    def handle_endtag(s, t):
        if t == "svg": s.cur = None
p = P(); p.feed(html)
L = d["layers"]
assert d["report_images"] == 40, d["report_images"]
charts = [s for s in p.svgs if "chart" in s["cls"]]
sq = [s for s in charts if "sqnr" in s["cls"]]
hs = [s for s in charts if "hist" in s["cls"]]
dw = [s for s in charts if "dw" in s["cls"]]
assert len(sq) == 1 and len(hs) == min(6, len(L)) and len(dw) == len(d["depthwise"]), (len(sq), len(hs), len(dw))
assert len(charts) == len(p.svgs)
bars = [a for t, a in sq[0]["marks"] if a.get("class") == "bar"]
assert [b["data-layer"] for b in bars] == [l["name"] for l in L]
for b, l in zip(bars, L):
    assert b["data-value"] == "%.3f" % l["sqnr_db"], (b, l)
# the histograms are the six lowest SQNR, each with its count and clipping lines
worst = sorted(L, key=lambda l: (l["sqnr_db"], l["name"]))[:6]
assert [h["a"]["data-layer"] for h in hs] == [l["name"] for l in worst]
for h, l in zip(hs, worst):
    assert int(h["a"]["data-count"]) == l["count"]
    assert sum(int(a["data-value"]) for t, a in h["marks"] if a.get("class") == "bin") <= l["count"]
    clips = [float(a["data-value"]) for t, a in h["marks"] if a.get("class") == "clip"]
    assert len(clips) == 2 and abs(clips[0] - l["clip_min"]) <= 1e-5 * max(1, abs(l["clip_min"])) \
        and abs(clips[1] - l["clip_max"]) <= 1e-5 * max(1, abs(l["clip_max"])), (clips, l)
for s, w in zip(dw, d["depthwise"]):
    assert s["a"]["data-node"] == w["node"] and int(s["a"]["data-channels"]) == w["channels"]
    r = [a for t, a in s["marks"] if a.get("class") == "wrange"]
    assert len(r) == w["channels"] and all(float(a["data-min"]) <= float(a["data-max"]) for a in r)
# self-contained
assert not {"script", "link", "img", "iframe"} & set(p.tags), set(p.tags)
assert re.findall(r'https?://[^"]*', html) == ["http://www.w3.org/2000/svg"] * len(p.svgs)
summ = re.search(r'top-1 agreement</th><td data-value="([0-9.]+)"', html).group(1)
assert summ == "%.3f" % d["agreement"], summ
PY
check "the depthwise layer has 32 channels" test "$(json $TMP/e8.json depthwise.0.channels)" = 32
check "histogram of the input counts 40 images x 784 pixels" test "$(json $TMP/e8.json layers.0.count)" = 31360

# the clipping ranges are the quant_info ones: scale * (qmin - zp), scale * (qmax - zp)
expect_ok "clipping ranges equal quant_info.json's" python3 - $TMP/e8.json $TMP/q8.json <<'PY'
import json, sys
e = json.load(open(sys.argv[1])); q = json.load(open(sys.argv[2]))
t = {x["name"]: x for x in q["tensors"] if x.get("role") == "activation"}
n = 0
for l in e["layers"]:
    if l["name"] not in t: continue
    x = t[l["name"]]; s = x["scale"][0]; z = x["zero_point"][0]
    lo, hi = s * (x["quant_min"] - z), s * (x["quant_max"] - z)
    assert abs(lo - l["clip_min"]) < 1e-6 * max(1, abs(lo)) and abs(hi - l["clip_max"]) < 1e-6 * max(1, abs(hi)), (l, lo, hi)
    n += 1
assert n >= 8, n
PY

# the input's SQNR from the saved inputs quantized with quant_info's scale
expect_ok "save the 40 inputs" $QTOOL eval $D/model_bn.onnx --data $D/test $PP --limit 40 --save-inputs $TMP/in.bin
expect_ok "input SQNR equals the one computed from the saved inputs" python3 - $TMP/in.bin $TMP/q8.json $TMP/e8.json <<'PY'
import json, math, struct, sys
raw = open(sys.argv[1], "rb").read()
x = struct.unpack("<%df" % (len(raw) // 4), raw)
q = json.load(open(sys.argv[2])); e = json.load(open(sys.argv[3]))
t = [t for t in q["tensors"] if t["name"] == "input"][0]
s, z = t["scale"][0], t["zero_point"][0]
sig = noise = 0.0
for v in x:
    k = min(255, max(0, round(v / s) + z))
    d = (k - z) * s - v
    sig += v * v; noise += d * d
mine = 10 * math.log10(sig / noise)
rep = [l for l in e["layers"] if l["name"] == "input"][0]["sqnr_db"]
print(mine, rep)
assert abs(mine - rep) < 0.01, (mine, rep)
PY
check "4-bit weights: lower SQNR at the depthwise layer ($(json $TMP/e4.json layers.7.sqnr_db) < $(json $TMP/e8.json layers.7.sqnr_db) dB)" \
    fcmp "$(json $TMP/e4.json layers.7.sqnr_db)" '<' "$(json $TMP/e8.json layers.7.sqnr_db)"
check "same tensor in both reports" test "$(json $TMP/e4.json layers.7.name)" = "$(json $TMP/e8.json layers.7.name)"

# the browser
B=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$B" ]; then
    skip "chromium absent (apt-get install chromium): the page is not rendered"
    done_testing
fi
expect_ok "chromium renders the page to a screenshot" sh -c "cd $TMP && timeout 120 $B --headless --no-sandbox \
    --disable-gpu --hide-scrollbars --enable-logging=stderr --v=0 --window-size=1000,1400 \
    --screenshot=$TMP/shot.png file://$H 2>$TMP/console.txt"
check "no console error or failed load" sh -c "! grep -E 'CONSOLE|Uncaught|Failed to load|net::ERR' $TMP/console.txt"
expect_ok "the screenshot is not blank: charts in several colours" python3 - $TMP/shot.png <<'PY'
import struct, sys, zlib
b = open(sys.argv[1], "rb").read()
assert b[:8] == b"\x89PNG\r\n\x1a\n"
i, idat, w = 8, b"", 0
while i < len(b):
    n, t = struct.unpack(">I4s", b[i:i + 8]); d = b[i + 8:i + 8 + n]
    if t == b"IHDR": w, h, depth, ct = struct.unpack(">IIBB", d[:10])
    if t == b"IDAT": idat += d
    i += 12 + n
assert depth == 8 and ct in (2, 6), (depth, ct)
bpp = 3 if ct == 2 else 4
raw = zlib.decompress(idat); stride = w * bpp
prev = bytearray(stride); rows = []; p = 0
for y in range(h):
    f = raw[p]; line = bytearray(raw[p + 1:p + 1 + stride]); p += 1 + stride
    for x in range(stride):
        a = line[x - bpp] if x >= bpp else 0; up = prev[x]; c = prev[x - bpp] if x >= bpp else 0
        if f == 1: line[x] = (line[x] + a) & 255
        elif f == 2: line[x] = (line[x] + up) & 255
        elif f == 3: line[x] = (line[x] + (a + up) // 2) & 255
        elif f == 4:
            pa, pb, pc = abs(up - c), abs(a - c), abs(a + up - 2 * c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else up if pb <= pc else c)) & 255
    rows.append(line); prev = line
nonwhite = 0; colours = set()
for line in rows[::2]:
    for x in range(0, stride, bpp * 2):
        px = tuple(line[x:x + 3])
        if px != (255, 255, 255): nonwhite += 1
        colours.add((px[0] >> 5, px[1] >> 5, px[2] >> 5))
frac = nonwhite / (len(rows[::2]) * len(range(0, stride, bpp * 2)))
print("non-white %.3f, colours %d" % (frac, len(colours)))
assert frac > 0.03 and len(colours) >= 5
# the SQNR bars' green (#2ca02c) or orange (#ff7f0e) is on screen
assert any(abs(c[0] - (0x2c >> 5)) <= 1 and abs(c[1] - (0xa0 >> 5)) <= 1 for c in colours) or \
       any(c[0] == 0xff >> 5 and abs(c[1] - (0x7f >> 5)) <= 1 for c in colours)
PY
done_testing
