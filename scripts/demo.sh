#!/bin/sh
# demo.sh: the main job on the bundled testdata (make demo): inspect the
# float model, calibrate it to a QDQ int8 model on 300 images, evaluate float
# and quantized on 500 others, the quantized one against the float one.
# testdata/fmnist is made by scripts/gen-testdata.py (a small CNN trained on
# Fashion-MNIST and some of its images).
set -eu
Q=${QTOOL:-./qtool}
D=testdata/fmnist
O=build/demo
mkdir -p $O
echo "== qtool inspect $D/model_bn.onnx"
$Q inspect $D/model_bn.onnx
echo
echo "== qtool calib: $D/model_bn.onnx on $D/calib -> $O/model_qdq.onnx"
$Q calib $D/model_bn.onnx --data $D/calib --preset mnist -o $O/model_qdq.onnx --json $O/calib.json
echo
echo "== qtool eval (float) on $D/test"
$Q eval $D/model_bn.onnx --data $D/test --preset mnist --json $O/eval-float.json
echo
echo "== qtool eval (int8 QDQ) on $D/test, against the float model"
$Q eval $O/model_qdq.onnx --data $D/test --preset mnist --ref $D/model_bn.onnx --json $O/eval-int8.json
