#!/bin/sh
# t-calib-models.sh: `qtool calib` on the real ImageNet MobileNetV1-0.75 of
# ../shared/models (depthwise convolutions and ReLU6: the hard case),
# calibrated and evaluated on ../shared/data/imagenet-dev, against the float
# model (PyTorch 77.027 top-1 on these images):
# - qtool's defaults (per-channel weights, percentile): top-1 drop <= 1.0 pt and
#   top-1 agreement with float at least PyTorch 1.13's best eager PTQ on the
#   same images (75.68, 93.8%); with the 8-bit percentile at 99.99 it was
#   94.59%, at 99.999 (the default since, better on the other models:
#   qtool-calib(1) DEFAULTS) 93.99%;
# - ONNX Runtime (optimized: its int8 kernels) and qtool agree on >= 99.5% of
#   the quantized file's top-1 predictions;
# - per-tensor minmax without CLE collapses as in the PyTorch tutorial (regression
#   signal); with cross-layer equalization (the per-tensor default) it does not.
# needs: ort python3
. scripts/testlib.sh
M=$SHARED/models
D=$SHARED/data
if [ ! -d "$M" ] || [ ! -d "$D" ]; then
    skip "../shared is absent: real-model calibration tests not run"
    done_testing
fi
ORT="node scripts/ort-run.mjs"
F=$M/mobilenet_v1_075.onnx
IMG="--data $D/imagenet-dev --classes $D/imagenet_classes.txt --crop 224 --mean 0.5 --std 0.5"

expect_ok "calib with the defaults (BatchNorm model)" $QTOOL calib $M/mobilenet_v1_075_bn.onnx $IMG -o $TMP/q.onnx \
    -q --json $TMP/c.json
check "27 BatchNormalization folded ($(json $TMP/c.json folded_batchnorm))" test "$(json $TMP/c.json folded_batchnorm)" = 27
check "27 ReLU6 fused ($(json $TMP/c.json fused_activations))" test "$(json $TMP/c.json fused_activations)" = 27
expect_ok "eval against float" $QTOOL eval $TMP/q.onnx $IMG --ref $F --latency-runs 0 -q --json $TMP/e.json
t1=$(json $TMP/e.json top1); ag=$(json $TMP/e.json agreement)
check "top-1 $t1 within 1.0 pt of float 77.027" fcmp "$t1" '>=' 76.027
check "agreement with float $ag >= 93.8% (PyTorch's best)" fcmp "$ag" '>=' 93.8
echo "# defaults: top-1 $t1 (float 77.027), agreement $ag%, SQNR $(json $TMP/e.json sqnr_db) dB"

# every image of the folder, ORT in chunks of 128 (the inputs file is 400 MB)
expect_ok "qtool on the whole folder, inputs and outputs saved" $QTOOL eval $TMP/q.onnx $IMG \
    --latency-runs 0 -q --save-inputs $TMP/in.bin --save-outputs $TMP/qo.bin
CH=$((128 * 3 * 224 * 224 * 4))
split -b $CH -d -a 2 $TMP/in.bin $TMP/in.part.
rm -f $TMP/in.bin $TMP/ort.bin
ort_ok=0
for part in $TMP/in.part.*; do
    nimg=$(($(wc -c <"$part") / (3 * 224 * 224 * 4)))
    $ORT $TMP/q.onnx --input "$part" --shape $nimg,3,224,224 --opt all --output $part.out >/dev/null 2>&1 || ort_ok=1
    cat $part.out >>$TMP/ort.bin
    rm -f "$part" $part.out
done
check "ONNX Runtime (optimized, int8 kernels) ran every chunk" test $ort_ok = 0
expect_ok "ORT and qtool top-1 on the quantized file" python3 scripts/cmpraw.py $TMP/qo.bin $TMP/ort.bin 1 --top1 1000
cat "$_out"
check "ORT and qtool agree on >= 99.5% of top-1" python3 -c "
import re,sys; m=re.search(r'top1_agree=(\d+)/(\d+)', open('$_out').read()); sys.exit(0 if int(m[1]) >= 0.995*int(m[2]) else 1)"

expect_ok "calib per-tensor minmax without CLE" $QTOOL calib $F $IMG --limit 128 --per-tensor --no-cle \
    --observer minmax -o $TMP/pt.onnx -q
expect_ok "eval it" $QTOOL eval $TMP/pt.onnx $IMG --latency-runs 0 -q --json $TMP/pt.json
check "per-tensor minmax collapses (top-1 $(json $TMP/pt.json top1) < 20)" fcmp "$(json $TMP/pt.json top1)" '<' 20
expect_ok "calib per-tensor minmax, CLE by default" $QTOOL calib $F $IMG --limit 128 --per-tensor \
    --observer minmax -o $TMP/ptc.onnx -q
check "  CLE ran" test "$(json $TMP/ptc.json settings.cle)" = True
expect_ok "eval it" $QTOOL eval $TMP/ptc.onnx $IMG --latency-runs 0 -q --json $TMP/ptc.json.e
check "  no collapse (top-1 $(json $TMP/ptc.json.e top1) > 40)" fcmp "$(json $TMP/ptc.json.e top1)" '>' 40
done_testing
