#!/bin/sh
# t-zoo.sh: every torchvision classification family (ResNet, MobileNetV2/V3,
# EfficientNet-B0, ShuffleNetV2, SqueezeNet, MNASNet, DenseNet, GoogLeNet,
# RegNet), exported with random weights by Debian's torch 1.13
# (scripts/gen-zoo.py, into build/zoo, not committed), loads in qtool and
# matches ONNX Runtime within 1e-4 relative; then each calibrates to QDQ on
# random images and the QDQ file loads in ONNX Runtime.
. scripts/testlib.sh
Z=${QT_ZOO:-$TOP/build/zoo}
if ! /usr/bin/python3 -c "import torch, torchvision" 2>/dev/null; then
    skip "Debian's python3-torch/torchvision are absent: zoo not tested"
    done_testing
fi
expect_ok "export the zoo (cached in $Z)" /usr/bin/python3 scripts/gen-zoo.py "$Z"
expect_ok "every model matches ONNX Runtime" "$(dirname "$QTOOL")/test/t_zoo" "$Z"
cat "$_out" | grep -E "^(ok|not ok)"
done_testing
