#!/bin/sh
# demo.sh: the main job on the bundled testdata (make demo).
# testdata/fmnist is made by scripts/gen-testdata.py (a small CNN trained on
# Fashion-MNIST and some of its images).
set -eu
Q=${QTOOL:-./qtool}
D=testdata/fmnist
echo "== qtool inspect $D/model.onnx"
$Q inspect $D/model.onnx
echo
echo "== qtool eval (float) on $D/test"
$Q eval $D/model.onnx --data $D/test --preset mnist --json build/demo-eval.json
