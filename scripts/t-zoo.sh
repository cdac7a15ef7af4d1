#!/bin/sh
# t-zoo.sh: every torchvision classification family (ResNet, MobileNetV2/V3,
# EfficientNet-B0, ShuffleNetV2, SqueezeNet, MNASNet, DenseNet, GoogLeNet,
# RegNet), exported with random weights by Debian's torch 1.13
# (scripts/gen-zoo.py, into build/zoo, not committed), loads in qtool and
# matches ONNX Runtime within 1e-4 relative; then each calibrates to QDQ on
# random images and the QDQ file loads in ONNX Runtime.
# needs: ort python3
. scripts/testlib.sh
Z=${QT_ZOO:-$TOP/build/zoo}
if ! /usr/bin/python3 -c "import torch, torchvision" 2>/dev/null; then
    skip "Debian's python3-torch/torchvision are absent: zoo not tested"
    done_testing
fi
expect_ok "export the zoo (cached in $Z)" /usr/bin/python3 scripts/gen-zoo.py "$Z"
expect_ok "every model matches ONNX Runtime" "$(dirname "$QTOOL")/test/t_zoo" "$Z"
cat "$_out" | grep -E "^(ok|not ok)"

# calibrate each model to QDQ on 8 random images; ONNX Runtime must load the
# file with optimizations disabled (it checks every DequantizeLinear axis
# there) and run it optimized (its int8 kernels); qtool must run it too
/usr/bin/python3 - "$TMP/img/x" <<'PY'
import os, sys
import numpy as np
from PIL import Image
os.makedirs(sys.argv[1], exist_ok=True)
r = np.random.default_rng(0)
for i in range(8):
    Image.fromarray(r.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(f"{sys.argv[1]}/{i}.png")
PY
for f in "$Z"/*.onnx; do
    m=$(basename "$f" .onnx)
    case $m in *_qdq) continue ;; esac
    expect_ok "$m: calib" $QTOOL calib "$f" --data $TMP/img --preset imagenet -o $TMP/$m.onnx -q --batch 4
    expect_ok "$m: ONNX Runtime loads the QDQ file" node scripts/ort-run.mjs $TMP/$m.onnx --check-load
    expect_ok "$m: qtool runs it" $QTOOL eval $TMP/$m.onnx --data $TMP/img --preset imagenet --latency-runs 0 \
        -q --limit 2 --save-inputs $TMP/in.bin --save-outputs $TMP/q.bin
    expect_ok "$m: ONNX Runtime runs it optimized" node scripts/ort-run.mjs $TMP/$m.onnx --input $TMP/in.bin \
        --shape 2,3,224,224 --opt all --output $TMP/o.bin
    rm -f $TMP/$m.onnx $TMP/$m.json
done
done_testing
