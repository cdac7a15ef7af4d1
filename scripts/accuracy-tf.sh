#!/bin/sh
# accuracy-tf.sh (make accuracy, second table): torchvision vit_b_32 and
# swin_t with random weights (scripts/fx-ptq-tf.py export: torch.manual_seed(0),
# heads N(0, 0.02); no pretrained weights are reachable here), default W8A8
# `qtool calib` on the first 64 images of imagenet-dev (sorted, as --limit
# takes them), judged on the 154 held-out images (images 513..666) against
# the float model: top-1 agreement and output SQNR of the QDQ model run as
# written (--simulate) and on the integer kernels; ONNX Runtime (optimized,
# its integer kernels) on the same QDQ file against qtool's integer outputs;
# and PyTorch 1.13 FX post-training quantization of the same model on the
# very same preprocessed tensors (scripts/fx-ptq-tf.py ptq). Prints one
# Markdown row per model. Over an hour on a shared 2-core machine (each
# model's float forward is 4-9 GFLOPs per image). Not part of make check.
set -eu
Q=${QTOOL:-./qtool}
S=${QT_SHARED:-../shared}
D=$S/data/imagenet-dev
NCAL=${ACC_TF_CALIB:-64}
if [ ! -d "$D" ] || ! /usr/bin/python3 -c "import torch, torchvision" 2>/dev/null; then
    echo "accuracy-tf: $D or torch/torchvision is absent; nothing to measure"
    exit 0
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
python3 scripts/split-imagenet.py "$D" "$T"
PP="--mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --resize 256 --crop 224"
E="--latency-runs 0 -q"
# the preprocessed tensors both tools see (any 224x224 model writes them)
$Q eval $S/models/mobilenet_v2.onnx --data $T/train $PP $E --limit $NCAL --save-inputs $T/train.bin >/dev/null
$Q eval $S/models/mobilenet_v2.onnx --data $T/hold $PP $E --save-inputs $T/hold.bin >/dev/null
n=$(python3 -c "import os; print(os.path.getsize('$T/hold.bin') // (3 * 224 * 224 * 4))")
j() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('%.2f%% / %.1f dB' % (d['agreement'], d['sqnr_db']))" "$1"; }
echo "| model | qtool W8A8 simulated | qtool int8 kernels | PyTorch FX PTQ | qtool int8 vs ORT top-1 |"
echo "|---|---|---|---|---|"
for m in vit_b_32 swin_t; do
    /usr/bin/python3 scripts/fx-ptq-tf.py export $m $T/$m.onnx >/dev/null 2>&1
    $Q calib $T/$m.onnx --data $T/train $PP --limit $NCAL -q -o $T/q.onnx
    $Q eval $T/q.onnx --ref $T/$m.onnx --data $T/hold $PP $E --simulate --json $T/s.json >/dev/null
    $Q eval $T/q.onnx --ref $T/$m.onnx --data $T/hold $PP $E --json $T/i.json --save-outputs $T/q.bin \
        --save-inputs $T/in.bin >/dev/null
    node scripts/ort-run.mjs $T/q.onnx --input $T/in.bin --shape $n,3,224,224 --opt all --output $T/o.bin >/dev/null
    ort=$(python3 scripts/cmpraw.py $T/q.bin $T/o.bin 1 --top1 1000 | sed 's/.*top1_agree=\([0-9/]*\).*/\1/')
    /usr/bin/python3 scripts/fx-ptq-tf.py ptq $m --calib $T/train.bin --eval $T/hold.bin --json $T/fx.json >/dev/null 2>&1
    fx=$(python3 -c "import json; d=json.load(open('$T/fx.json')); print('%.2f%% / %.1f dB' % (d['agreement'], d['sqnr_db']))")
    echo "| $m | $(j $T/s.json) | $(j $T/i.json) | $fx | $ort |"
done
