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

# --curve: the accuracy/size curve of scripts/mixed-curve.sh (uniform W4, W8
# and a 4-bit mixed budget of calib on the bundled model) as a report section
expect_ok "mixed-curve.sh: uniform W4/W8 and --weight-budget 4bits" env QTOOL=$QTOOL MC_BITS="4 8" \
    sh scripts/mixed-curve.sh $D/model_bn.onnx $D/calib $D/test $TMP/curve.json --preset mnist
cp $_out $TMP/curve.md
check "the curve has 3 points in 2 series" test "$(python3 -c "import json,sys; d=json.load(open(sys.argv[1]))
print(len(d['points']), len({p['series'] for p in d['points']}))" $TMP/curve.json)" = "3 2"
check "its uniform W4 point is the 4-bit model's own figures (top-1 $(json $TMP/e4.json top1))" python3 -c "
import json, sys
c = json.load(open(sys.argv[1])); e = json.load(open(sys.argv[2])); q = json.load(open(sys.argv[3]))
p = [p for p in c['points'] if p['label'] == 'calib --wbits 4'][0]
assert p['series'] == 'uniform' and abs(p['top1'] - e['top1']) < 1e-3 and abs(p['agreement'] - e['agreement']) < 1e-3, (p, e['top1'])
assert p['weight_bytes'] == q['memory']['rom_bytes'] and abs(p['avg_bits'] - 4) < 1e-9, (p, q['memory'])
m = [p for p in c['points'] if p['series'] == 'mixed'][0]
assert m['weight_bytes'] <= p['weight_bytes'] and m['avg_bits'] <= 4 + 1e-9, m
" $TMP/curve.json $TMP/e4.json $TMP/q4.json
check "the script's table has its 3 rows" test "$(grep -c '^| uniform\|^| mixed' $TMP/curve.md)" = 3
expect_ok "eval --report --curve" $QTOOL eval $TMP/q8.onnx --ref $D/model_bn.onnx --data $D/test $PP --report $TMP/rc \
    --report-images 20 --curve $TMP/curve.json --json $TMP/ec.json
check "the JSON names the curve" test "$(json $TMP/ec.json curve_points)" = 3
expect_ok "two curve charts whose points, lines and table equal the file" python3 - $TMP/rc/index.html $TMP/curve.json <<'PY'
import json, sys
from html.parser import HTMLParser
c = json.load(open(sys.argv[2]))
class P(HTMLParser):
    def __init__(s):
        super().__init__(); s.svgs = []; s.cur = None; s.rows = []; s.tab = False; s.cell = None
    def handle_starttag(s, t, a):
        a = dict(a)
        if t == "svg": s.cur = {"a": a, "marks": []}; s.svgs.append(s.cur)
        elif s.cur is not None and t in ("circle", "polyline", "line"): s.cur["marks"].append((t, a))
        if t == "table" and a.get("id") == "curve": s.tab = True
        if s.tab and t == "tr": s.rows.append([])
        if s.tab and t in ("td", "th"): s.cell = ""
    def handle_data(s, d):
        if s.cell is not None: s.cell += d
    def handle_endtag(s, t):
        if t == "svg": s.cur = None
        if t == "table": s.tab = False
        if s.tab and t in ("td", "th"): s.rows[-1].append(s.cell); s.cell = None
p = P(); p.feed(open(sys.argv[1]).read())
cv = [s for s in p.svgs if "curve" in s["a"].get("class", "").split()]
assert [s["a"]["data-metric"] for s in cv] == ["top1", "agreement"], [s["a"] for s in cv]
for s in cv:
    key = "top1" if s["a"]["data-metric"] == "top1" else "agreement"
    dots = [a for t, a in s["marks"] if t == "circle"]
    got = sorted((d["data-series"], d["data-label"], int(d["data-bytes"]), float(d["data-bits"]), float(d["data-value"])) for d in dots)
    want = sorted((q["series"], q["label"], q["weight_bytes"], round(q["avg_bits"], 4), round(q[key], 3)) for q in c["points"])
    assert len(got) == len(want) and all(g[:3] == w[:3] and abs(g[3] - w[3]) < 1e-4 and abs(g[4] - w[4]) < 1e-3
                                         for g, w in zip(got, want)), (got, want)
    lines = [a for t, a in s["marks"] if t == "polyline"]
    assert sorted(l["data-series"] for l in lines) == ["mixed", "uniform"], lines
    for l in lines:  # each line passes through its series' dots, left to right
        pts = [tuple(map(float, xy.split(","))) for xy in l["points"].split()]
        mine = sorted((float(d["cx"]), float(d["cy"])) for d in dots if d["data-series"] == l["data-series"])
        assert pts == mine, (pts, mine)
    # larger top-1 is higher on the chart
    ys = sorted((float(d["data-value"]), -float(d["cy"])) for d in dots)
    assert [y for v, y in ys] == sorted(y for v, y in ys), ys
    fl = [a for t, a in s["marks"] if t == "line" and a.get("class") == "float"]
    assert len(fl) == (1 if key == "top1" else 0) and (not fl or float(fl[0]["data-value"]) == round(c["float_top1"], 3)), fl
rows = p.rows[1:]
assert len(rows) == len(c["points"]), rows
for r, q in zip(rows, c["points"]):
    assert r[0] == q["series"] and r[1] == q["label"] and int(r[2]) == q["weight_bytes"], (r, q)
    assert r[4] == "%.2f%%" % q["top1"] and r[5] == "%.2f%%" % q["agreement"], (r, q)
PY
check "without --curve the report has no curve" sh -c "! grep -q 'class=\"chart curve\"' $H"
bad_curve() { # bad_curve WHAT MESSAGE JSON
    printf '%s' "$3" >$TMP/bad.json
    expect_fail 4 "--curve: $1" $QTOOL eval $TMP/q8.onnx --ref $D/model_bn.onnx --data $D/test $PP --report $TMP/rb \
        --curve $TMP/bad.json
    check "  says '$2', names the file, writes no report" sh -c "grep -q \"$2\" $_out && grep -q bad.json $_out && test ! -e $TMP/rb"
}
P1='{"series": "u", "weight_bytes": 1000, "avg_bits": 4, "top1": 50'
bad_curve "not JSON" "not valid JSON" '{"points": ['
bad_curve "no points" '\"points\" must be an array' '{"points": []}'
bad_curve "top-1 above 100" 'points\[1\]: \"top1\" must be' "{\"points\": [$P1}, {\"series\": \"m\", \"weight_bytes\": 9, \"avg_bits\": 3, \"top1\": 101}]}"
bad_curve "no weight size" '\"weight_bytes\" must be' '{"points": [{"series": "u", "avg_bits": 4, "top1": 50}]}'
bad_curve "zero bits" '\"avg_bits\" must be' '{"points": [{"series": "u", "weight_bytes": 10, "avg_bits": 0, "top1": 50}]}'
bad_curve "no series name" '\"series\" must be' '{"points": [{"series": "", "weight_bytes": 10, "avg_bits": 2, "top1": 50}]}'
bad_curve "agreement a string" '\"agreement\" must be' "{\"points\": [$P1, \"agreement\": \"99\"}]}"
bad_curve "nine series" "series 'i' is one more than the 8" "{\"points\": [$(for s in a b c d e f g h i; do
    printf '{"series": "%s", "weight_bytes": 10, "avg_bits": 2, "top1": 5},' $s; done | sed 's/,$//')]}"
expect_fail 1 "--curve: a missing file" $QTOOL eval $TMP/q8.onnx --ref $D/model_bn.onnx --data $D/test $PP \
    --report $TMP/rb --curve $TMP/none.json
check "  names it, writes no report" sh -c "grep -q 'none.json' $_out && test ! -e $TMP/rb"
cp $TMP/curve.json $TMP/curve2.json
expect_ok "mixed-curve.sh MC_TOOL=finetune MC_APPEND=1 (W4, 5 iterations)" env QTOOL=$QTOOL MC_BITS=4 MC_TOOL=finetune \
    MC_ARGS="--iters 5" MC_APPEND=1 sh scripts/mixed-curve.sh $D/model_bn.onnx $D/calib $D/test $TMP/curve2.json --preset mnist
check "appended: 5 points, the finetune ones in their own series" test "$(python3 -c "import json,sys
d=json.load(open(sys.argv[1])); p=d['points']
print(len(p), ','.join(sorted({x['series'] for x in p})), p[3]['label'], p[0] == json.load(open(sys.argv[2]))['points'][0])" \
    $TMP/curve2.json $TMP/curve.json)" = "5 mixed,mixed finetune,uniform,uniform finetune finetune --wbits 4 True"
expect_fail 2 "--curve without --report" $QTOOL eval $TMP/q8.onnx --ref $D/model_bn.onnx --data $D/test $PP \
    --curve $TMP/curve.json

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
