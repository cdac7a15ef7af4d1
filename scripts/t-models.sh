#!/bin/sh
# t-models.sh: the real pretrained models of ../shared/models on their
# images: qtool's float top-1/top-5 equal the PyTorch figures of
# ../shared/models/README.md, and qtool's outputs are within 1e-4 (relative
# to the output scale) of ONNX Runtime's on the same preprocessed inputs.
# needs: ort python3
. scripts/testlib.sh
M=$SHARED/models
D=$SHARED/data
if [ ! -d "$M" ] || [ ! -d "$D" ]; then
    skip "../shared is absent: real-model tests not run"
    done_testing
fi
ORT="node scripts/ort-run.mjs"

# Fashion-MNIST ResNet: 5000 test images, PyTorch 91.34 / 99.92
for m in fashion_resnet fashion_resnet_bn; do
    expect_ok "$m: eval on fashion-mnist-test" $QTOOL eval $M/$m.onnx --data $D/fashion-mnist-test --preset mnist \
        --latency-runs 0 --json $TMP/$m.json -q
    check "$m: top-1 91.34 as PyTorch ($(json $TMP/$m.json top1))" fcmp "$(json $TMP/$m.json top1)" == 91.34
    check "$m: top-5 99.92 as PyTorch ($(json $TMP/$m.json top5))" fcmp "$(json $TMP/$m.json top5)" == 99.92
    expect_ok "$m: 64 images with inputs and outputs saved" $QTOOL eval $M/$m.onnx --data $D/fashion-mnist-test \
        --preset mnist --limit 64 --latency-runs 0 -q --save-inputs $TMP/in.bin --save-outputs $TMP/q.bin
    expect_ok "$m: ONNX Runtime on the same inputs" $ORT $M/$m.onnx --input $TMP/in.bin --shape 64,1,28,28 \
        --output $TMP/ort.bin
    expect_ok "$m: outputs within 1e-4 of ONNX Runtime" python3 scripts/cmpraw.py $TMP/q.bin $TMP/ort.bin 1e-4
    cat "$_out"
done

# imagenet_case MODEL PREPROCESSING TOP1_LO TOP1_HI TOP5_LO TOP5_HI: float
# top-1/top-5 on the 666 images of imagenet-dev within the bounds around
# PyTorch's figures, and outputs within 1e-4 of ONNX Runtime on 16 images
imagenet_case() {
    m=$1 pp=$2
    expect_ok "$m: eval on imagenet-dev" $QTOOL eval $M/$m.onnx $pp --latency-runs 0 --json $TMP/$m.json -q
    t1=$(json $TMP/$m.json top1)
    t5=$(json $TMP/$m.json top5)
    check "$m: top-1 $t1 above $3 as PyTorch" fcmp "$t1" '>' $3
    check "$m: top-1 below $4" fcmp "$t1" '<' $4
    check "$m: top-5 $t5 above $5 as PyTorch" fcmp "$t5" '>' $5
    check "$m: top-5 below $6" fcmp "$t5" '<' $6
    expect_ok "$m: 16 images with inputs and outputs saved" $QTOOL eval $M/$m.onnx $pp --limit 16 \
        --latency-runs 0 -q --save-inputs $TMP/in.bin --save-outputs $TMP/q.bin
    expect_ok "$m: ONNX Runtime on the same inputs" $ORT $M/$m.onnx --input $TMP/in.bin --shape 16,3,224,224 \
        --output $TMP/ort.bin
    expect_ok "$m: outputs within 1e-4 of ONNX Runtime" python3 scripts/cmpraw.py $TMP/q.bin $TMP/ort.bin 1e-4 --top1 1000
    cat "$_out"
}

# ImageNet MobileNetV1-0.75: 666 images, PyTorch 77.027 / 95.045
IMG="--data $D/imagenet-dev --classes $D/imagenet_classes.txt --crop 224 --mean 0.5 --std 0.5"
for m in mobilenet_v1_075 mobilenet_v1_075_bn; do
    imagenet_case $m "$IMG" 77.02 77.03 95.04 95.05
done

# ImageNet MobileNetV2 (BN pre-folded, ReLU6 as Clip) and SqueezeNet 1.1
# (MaxPool ceil_mode=1): 666 images, ImageNet mean/std; PyTorch 79.429 / 95.345
# and 69.369 / 89.640 (../shared/models/README.md)
IMG2="--data $D/imagenet-dev --classes $D/imagenet_classes.txt --crop 224 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225"
for spec in mobilenet_v2:79.42:79.43:95.34:95.35 squeezenet1_1:69.36:69.37:89.63:89.64; do
    set -- $(echo "$spec" | tr : ' ')
    if [ ! -f $M/$1.onnx ]; then
        skip "$M/$1.onnx is absent"
        continue
    fi
    imagenet_case $1 "$IMG2" $2 $3 $4 $5
done
done_testing
