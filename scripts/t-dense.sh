#!/bin/sh
# t-dense.sh: qtool eval on a dense-prediction (segmentation) model, the
# fixture of scripts/gen-dense.py (testdata/dense: a tiny FCN with outputs
# 'out' [N,5,32,48] and 'aux' [N,5,16,24], images of 7 sizes, class-index
# masks, 255 = ignore). Float outputs against ONNX Runtime; the per-pixel
# agreement, mean IoU, mask pixel accuracy and mask mean IoU of a W8A8 file
# from qtool calib, recomputed here with numpy and PIL from the saved outputs
# and the mask PNGs (the same geometry: Resize((32, 48)) or Resize(40) then
# CenterCrop, nearest for masks); the same at 1 and 2 threads; every bad mask
# ends with its exit code naming the file.
# needs: ort python3
. scripts/testlib.sh
D=testdata/dense
PY=/usr/bin/python3
PP="--mean 0.5 --std 0.25 --latency-runs 0 -q"

expect_ok "eval the float model, images resized to 32x48" $QTOOL eval $D/model.onnx --data $D/images \
    --resize 32x48 $PP --save-inputs $TMP/in.bin --save-outputs $TMP/f.bin --json $TMP/f.json
check "dense output found: 5 classes on 32x48" test "$(json $TMP/f.json dense.classes) $(json $TMP/f.json dense.height) $(json $TMP/f.json dense.width)" = "5 32 48"
expect_ok "ONNX Runtime on the same inputs" node scripts/ort-run.mjs $D/model.onnx --input $TMP/in.bin \
    --shape 7,3,32,48 --output $TMP/ort.bin
expect_ok "float outputs within 1e-5 of ONNX Runtime" python3 scripts/cmpraw.py $TMP/f.bin $TMP/ort.bin 1e-5
expect_ok "inputs: PIL's bilinear resize to 48x32, normalized" $PY -c "
import numpy as np, os
from PIL import Image
d = '$D/images'
x = np.stack([(np.asarray(Image.open(os.path.join(d, f)).convert('RGB').resize((48, 32), Image.BILINEAR),
               np.float32) / 255 - 0.5) / 0.25 for f in sorted(os.listdir(d))]).transpose(0, 3, 1, 2)
got = np.fromfile('$TMP/in.bin', '<f4').reshape(x.shape)
assert np.abs(got - x).max() < 1e-5, np.abs(got - x).max()"

expect_ok "calibrate W8A8" $QTOOL calib $D/model.onnx --data $D/images --resize 32x48 --mean 0.5 --std 0.25 -q \
    -o $TMP/q.onnx
for t in 1 2; do
    expect_ok "eval the W8A8 file with --masks, $t thread(s)" $QTOOL eval $TMP/q.onnx --data $D/images \
        --resize 32x48 $PP --ref $D/model.onnx --masks $D/masks --threads $t --batch 3 \
        --save-outputs $TMP/q$t.bin --json $TMP/q$t.json
done
check "outputs byte-identical at 1 and 2 threads" cmp -s $TMP/q1.bin $TMP/q2.bin
check "figures identical at 1 and 2 threads" $PY -c "
import json; a, b = (json.load(open('$TMP/q%d.json' % t)) for t in (1, 2))
assert a['dense'] == b['dense'] and a['outputs'] == b['outputs'] and a['sqnr_db'] == b['sqnr_db']"

# numpy's figures from the saved outputs and the masks
cat >$TMP/dense.py <<'EOF'
import json, os, sys
import numpy as np
from PIL import Image

q_bin, f_bin, js, masks, images, mode = sys.argv[1:7]
d = json.load(open(js))
q = np.fromfile(q_bin, "<f4").reshape(-1, 5, 32, 48)
f = np.fromfile(f_bin, "<f4").reshape(q.shape)
aq, af = q.argmax(1), f.argmax(1)

def resize_crop(m):  # the images' geometry with nearest sampling
    w, h = m.size
    if mode == "hw":
        return np.asarray(m.resize((48, 32), Image.NEAREST))
    s = 40  # Resize(40), CenterCrop((32, 48)) with 255 padding
    nw, nh = (s, int(s * h / w)) if w <= h else (int(s * w / h), s)
    a = np.asarray(m.resize((nw, nh), Image.NEAREST))
    ph, pw = max(32, nh), max(48, nw)
    pad = np.full((ph, pw), 255, np.uint8)
    pt, pl = (ph - nh) // 2, (pw - nw) // 2
    pad[pt:pt + nh, pl:pl + nw] = a
    top, left = int(round((ph - 32) / 2)), int(round((pw - 48) / 2))
    return pad[top:top + 32, left:left + 48]

gt = np.stack([resize_crop(Image.open(os.path.join(masks, os.path.splitext(n)[0] + ".png")))
               for n in sorted(os.listdir(images))])

def miou(pred, truth):
    keep = truth != 255
    p, t = pred[keep], truth[keep].astype(np.int64)
    ious = []
    for c in range(5):
        u = np.sum((p == c) | (t == c))
        if u:
            ious.append(np.sum((p == c) & (t == c)) / u)
    return 100 * np.mean(ious)

want = {"pixel_agreement": 100 * np.mean(aq == af), "miou_ref": miou(aq, af),
        "mask_pixels": int(np.sum(gt != 255)),
        "pixel_accuracy": 100 * np.sum((aq == gt) & (gt != 255)) / np.sum(gt != 255), "miou": miou(aq, gt),
        "ref_pixel_accuracy": 100 * np.sum((af == gt) & (gt != 255)) / np.sum(gt != 255), "ref_miou": miou(af, gt)}
sq = 10 * np.log10(np.sum(f.astype(np.float64) ** 2) / np.sum((q.astype(np.float64) - f) ** 2))
bad = [k for k, v in want.items() if abs(d["dense"][k] - v) > 1e-6 * max(1, abs(v))]
if abs(d["sqnr_db"] - sq) > 1e-3 or abs(d["outputs"][0]["sqnr_db"] - sq) > 1e-3:
    bad.append("sqnr %r %r vs %r" % (d["sqnr_db"], d["outputs"][0]["sqnr_db"], sq))
for k in want:
    print("%s: qtool %s numpy %s" % (k, d["dense"][k], want[k]))
assert not bad, bad
assert d["dense"]["pixel_agreement"] == d["agreement"]
if mode == "crop":  # the 45x45 image is 40x40 after Resize(40): the crop pads 4 columns each side
    assert (gt[5][:, :4] == 255).all() and (gt[5][:, 8] != 255).any(), gt[5][10]
assert 0 < d["dense"]["miou"] < 100 and d["dense"]["pixel_agreement"] < 100  # not a degenerate fixture
EOF
expect_ok "save the float outputs" $QTOOL eval $D/model.onnx --data $D/images --resize 32x48 $PP \
    --save-outputs $TMP/f.bin
expect_ok "pixel agreement, mIoU, mask accuracy and mIoU, SQNR equal numpy's" $PY $TMP/dense.py $TMP/q1.bin \
    $TMP/f.bin $TMP/q1.json $D/masks $D/images hw
cat "$_out" | sed 's/^/# /'
check "per-pixel agreement with float above 95% ($(json $TMP/q1.json dense.pixel_agreement))" \
    fcmp "$(json $TMP/q1.json dense.pixel_agreement)" '>' 95
check "two outputs, each with its SQNR (aux $(json $TMP/q1.json outputs.1.sqnr_db) dB)" \
    test "$(json $TMP/q1.json outputs.1.name)" = aux
check "aux SQNR above 25 dB" fcmp "$(json $TMP/q1.json outputs.1.sqnr_db)" '>' 25

# the crop geometry: Resize(40) then CenterCrop 32x48 (masks padded with 255 where the crop is wider)
expect_ok "eval with --resize 40 --crop 32x48" $QTOOL eval $TMP/q.onnx --data $D/images --resize 40 --crop 32x48 \
    $PP --ref $D/model.onnx --masks $D/masks --save-outputs $TMP/qc.bin --json $TMP/qc.json
expect_ok "float outputs, same preprocessing" $QTOOL eval $D/model.onnx --data $D/images --resize 40 --crop 32x48 \
    $PP --save-outputs $TMP/fc.bin
expect_ok "resize+crop figures equal numpy's" $PY $TMP/dense.py $TMP/qc.bin $TMP/fc.bin $TMP/qc.json $D/masks \
    $D/images crop

expect_ok "the report shows the pixel agreement" $QTOOL eval $TMP/q.onnx --data $D/images --resize 32x48 $PP \
    --ref $D/model.onnx --masks $D/masks --report $TMP/rep --report-images 4 --json $TMP/r.json
check "report pixel agreement equals the JSON's" grep -q "pixel agreement</th><td data-value=\"$($PY -c \
    "import json; print('%.3f' % json.load(open('$TMP/r.json'))['dense']['pixel_agreement'])")\"" $TMP/rep/index.html

# bad masks: exit 4 naming the file, nothing written
mkdir -p $TMP/bm $TMP/bi
cp $D/images/img0.png $D/images/img1.png $TMP/bi/
cp $D/masks/img0.png $TMP/bm/
expect_fail 4 "a mask missing" $QTOOL eval $TMP/q.onnx --data $TMP/bi --resize 32x48 $PP --masks $TMP/bm \
    --ref $D/model.onnx --json $TMP/bad.json
check "message names the image and the missing mask" grep -q "img1.png.*bm/img1.png.*does not exist" "$_out"
check "the JSON says why" grep -q "does not exist" $TMP/bad.json
cp $D/masks/img2.png $TMP/bm/img1.png
expect_fail 4 "a mask of the wrong size" $QTOOL eval $TMP/q.onnx --data $TMP/bi --resize 32x48 $PP --masks $TMP/bm
check "message names the mask and both sizes" grep -q "bm/img1.png' is 64x64, its image.*60x40" "$_out"
$PY -c "
from PIL import Image; import numpy as np
a = np.asarray(Image.open('$D/masks/img1.png')).copy(); a[5, 7] = 9
Image.fromarray(a, 'L').save('$TMP/bm/img1.png')"
expect_fail 4 "a class the model does not have" $QTOOL eval $TMP/q.onnx --data $TMP/bi --resize 32x48 $PP --masks $TMP/bm
check "message names the mask, the class and the pixel" grep -q "img1.png' has class 9 at (7, 5)" "$_out"
$PY -c "
from PIL import Image; Image.open('$D/masks/img1.png').convert('RGB').save('$TMP/bm/img1.png')"
expect_fail 4 "an RGB mask" $QTOOL eval $TMP/q.onnx --data $TMP/bi --resize 32x48 $PP --masks $TMP/bm
check "message says what a mask is" grep -q "img1.png' is a 8-bit RGB PNG; a mask holds one class index" "$_out"
printf 'not a png' >$TMP/bm/img1.png
expect_fail 4 "a mask that is not a PNG" $QTOOL eval $TMP/q.onnx --data $TMP/bi --resize 32x48 $PP --masks $TMP/bm
expect_fail 2 "--masks with a classification model" $QTOOL eval testdata/fmnist/model.onnx \
    --data testdata/fmnist/test --preset mnist -q --limit 4 --masks $TMP/bm
check "message says the output is not dense" grep -q "not \[N, C, H, W\]" "$_out"
expect_fail 2 "--predictions with a dense model" $QTOOL eval $D/model.onnx --data $D/images --resize 32x48 $PP \
    --predictions $TMP/p.csv
check "no CSV left" test ! -e $TMP/p.csv
expect_fail 4 "images of other sizes without --resize HxW" $QTOOL eval $D/model.onnx --data $D/images $PP
check "message names the size the model expects" grep -q "model expects 48x32" "$_out"
expect_fail 2 "--resize 0x5 is a usage error" $QTOOL eval $D/model.onnx --data $D/images --resize 0x5 $PP
done_testing
