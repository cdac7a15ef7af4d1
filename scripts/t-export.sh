#!/bin/sh
# t-export.sh: qtool export on the bundled Fashion-MNIST model. The QDQ file
# rebuilt from quant_info.json alone is byte-identical to what calib,
# calib --bias-correction, finetune and qat wrote; the QOperator file (ai.onnx
# only and with --contrib) runs in ONNX Runtime with the QDQ file's outputs
# and in qtool; the float file is the BatchNorm-folded model; profiles:
# pow2 scales are exact powers of two, int-only records requantization
# multipliers and shifts; bad inputs fail with a clear message and no output.
# needs: ort python3
. scripts/testlib.sh
D=testdata/fmnist
M=$D/model_bn.onnx
PP="--preset mnist -q"
ORT="node scripts/ort-run.mjs"

expect_ok "calib" $QTOOL calib $M --data $D/calib $PP -o $TMP/c.onnx --limit 64
expect_ok "export from its quant_info.json" $QTOOL export $M --quant-info $TMP/c.json -o $TMP/ce.onnx
check "  byte-identical to calib's file" cmp -s $TMP/c.onnx $TMP/ce.onnx
expect_ok "calib --bias-correction --keep-first-last float --no-fuse W6A7" $QTOOL calib $M --data $D/calib $PP \
    -o $TMP/b.onnx --limit 64 --bias-correction --keep-first-last float --no-fuse --wbits 6 --abits 7
expect_ok "  export" $QTOOL export $M --quant-info $TMP/b.json -o $TMP/be.onnx
check "  byte-identical" cmp -s $TMP/b.onnx $TMP/be.onnx
expect_ok "calib --bn-reestimate W4A4 (rescales float weights)" $QTOOL calib $M --data $D/calib $PP \
    -o $TMP/r.onnx --limit 64 --bn-reestimate --wbits 4 --abits 4
check "  rescaled weights written beside the JSON" test -s $TMP/r.weights.bin
expect_ok "  export" $QTOOL export $M --quant-info $TMP/r.json -o $TMP/re.onnx
check "  byte-identical" cmp -s $TMP/r.onnx $TMP/re.onnx
expect_ok "finetune W4A8" $QTOOL finetune $M --data $D/calib $PP -o $TMP/f.onnx --limit 32 --iters 10 --wbits 4
check "  tuned weights written beside the JSON" test -s $TMP/f.weights.bin
expect_ok "  export" $QTOOL export $M --quant-info $TMP/f.json -o $TMP/fe.onnx
check "  byte-identical" cmp -s $TMP/f.onnx $TMP/fe.onnx
expect_ok "qat" $QTOOL qat $M --train $D/calib $PP -o $TMP/q.onnx --iters-per-epoch 3 --batch 16 --calib-images 32
expect_ok "  export" $QTOOL export $M --quant-info $TMP/q.json -o $TMP/qe.onnx
check "  byte-identical" cmp -s $TMP/q.onnx $TMP/qe.onnx

# QOperator against QDQ in ONNX Runtime, on the 500 test images
expect_ok "qtool eval of the finetuned QDQ file" $QTOOL eval $TMP/f.onnx --data $D/test $PP --latency-runs 0 \
    --save-inputs $TMP/in.bin --json $TMP/fq.json
expect_ok "ONNX Runtime runs the QDQ file" $ORT $TMP/f.onnx --input $TMP/in.bin --shape 500,1,28,28 --opt all \
    --output $TMP/o-qdq.bin
for fl in "" "--contrib"; do
    expect_ok "export --format qoperator $fl" $QTOOL export $M --quant-info $TMP/f.json -o $TMP/op.onnx \
        --format qoperator $fl
    check "  QLinearConv and no QDQ around the convolutions" sh -c "$QTOOL inspect $TMP/op.onnx | grep -q QLinearConv"
    if [ -n "$fl" ]; then
        check "  com.microsoft QGemm" sh -c "$QTOOL inspect $TMP/op.onnx | grep -q QGemm"
    else
        check "  ai.onnx only (no QGemm)" sh -c "! $QTOOL inspect $TMP/op.onnx | grep -q QGemm"
    fi
    expect_ok "  ONNX Runtime loads it" $ORT $TMP/op.onnx --check-load
    expect_ok "  ONNX Runtime runs it" $ORT $TMP/op.onnx --input $TMP/in.bin --shape 500,1,28,28 --opt all \
        --output $TMP/o-op.bin
    expect_ok "  agrees with the QDQ file in ONNX Runtime" python3 scripts/cmpraw.py $TMP/o-qdq.bin $TMP/o-op.bin 1 --top1 10
    check "  500/500 top-1, max abs diff <= 1e-4" python3 -c "
import re,sys; t=open('$_out').read(); m=re.search(r'top1_agree=(\d+)/(\d+)', t); d=float(re.search(r'max_abs_diff=(\S+)', t)[1])
sys.exit(0 if m[1] == m[2] == '500' and d <= 1e-4 else 1)"
    expect_ok "  qtool eval runs it" $QTOOL eval $TMP/op.onnx --data $D/test $PP --latency-runs 0 --json $TMP/op.json
    check "  same top-1 as the QDQ file ($(json $TMP/op.json top1))" test "$(json $TMP/op.json top1)" = "$(json $TMP/fq.json top1)"
done

expect_ok "export --format float (from calib's JSON)" $QTOOL export $M --quant-info $TMP/c.json -o $TMP/fl.onnx --format float
check "  no BatchNormalization left" sh -c "! $QTOOL inspect $TMP/fl.onnx | grep -q BatchNormalization"
expect_ok "  same outputs as the float model" $QTOOL eval $TMP/fl.onnx --data $D/test $PP --latency-runs 0 --ref $M \
    --json $TMP/fl.json
check "  SQNR against it > 80 dB ($(json $TMP/fl.json sqnr_db))" fcmp "$(json $TMP/fl.json sqnr_db)" '>' 80
expect_ok "export --format float (finetuned weights)" $QTOOL export $M --quant-info $TMP/f.json -o $TMP/ff.onnx --format float
check "  the tuned weights differ from the float model's" sh -c "! cmp -s $TMP/fl.onnx $TMP/ff.onnx"
expect_ok "  ONNX Runtime loads it" $ORT $TMP/ff.onnx --check-load

# profiles
expect_ok "calib --profile pow2" $QTOOL calib $M --data $D/calib $PP -o $TMP/p2.onnx --limit 64 --profile pow2
check "  every activation and weight scale is an exact power of two, fraction_bits match" python3 -c "
import json, math
d = json.load(open('$TMP/p2.json'))
assert d['settings']['profile'] == 'pow2' and d['settings']['scales'] == 'pow2'
n = 0
for t in d['tensors']:
    if t['role'] == 'bias': continue
    assert t['dtype'] == 'int8' and t['symmetric'] and t['axis'] is None, t['name']
    for s, f, z in zip(t['scale'], t['fraction_bits'], t['zero_point']):
        m, e = math.frexp(s); assert m == 0.5 and s == 2.0 ** -f and z == 0, (t['name'], s, f); n += 1
    if t['role'] == 'weight' and 'requant' in t:
        assert all(m == 1 << 30 for m in t['requant']['multiplier']), t['name']
assert n > 10"
expect_ok "  ONNX Runtime loads it" $ORT $TMP/p2.onnx --check-load
expect_ok "  export round trip" $QTOOL export $M --quant-info $TMP/p2.json -o $TMP/p2e.onnx --profile pow2
check "  byte-identical" cmp -s $TMP/p2.onnx $TMP/p2e.onnx
expect_fail 2 "  export --profile ort-x86 of pow2 parameters" $QTOOL export $M --quant-info $TMP/p2.json \
    -o $TMP/bad.onnx --profile ort-x86
check "  says to quantize again" grep -q "quantize again with --profile ort-x86" "$_out"
for pr in ort-arm tensorrt; do
    expect_ok "calib --profile $pr" $QTOOL calib $M --data $D/calib $PP -o $TMP/$pr.onnx --limit 64 --profile $pr
    check "  int8 symmetric activations" python3 -c "
import json
for t in json.load(open('$TMP/$pr.json'))['tensors']:
    if t['role'] == 'activation': assert t['dtype'] == 'int8' and t['zero_point'] == [0], t['name']"
    expect_ok "  ONNX Runtime loads it" $ORT $TMP/$pr.onnx --check-load
done
check "tensorrt weights in [-127, 127]" python3 -c "
import json
for t in json.load(open('$TMP/tensorrt.json'))['tensors']:
    if t['role'] == 'weight': assert t['quant_min'] == -127, t['name']"
expect_ok "calib --profile int-only" $QTOOL calib $M --data $D/calib $PP -o $TMP/io.onnx --limit 64 --profile int-only
check "  multipliers in [2^30, 2^31) that give the float multiplier to 2^-30" python3 -c "
import json
d = json.load(open('$TMP/io.json')); ts = {t['name']: t for t in d['tensors']}; n = 0
for t in d['tensors']:
    r = t.get('requant')
    if not r: continue
    si, so = ts[r['input']]['scale'][0], ts[r['output']]['scale'][0]
    for sw, m, s in zip(t['scale'], r['multiplier'], r['shift']):
        want = si * sw / so; got = m / 2.0 ** s
        assert 1 << 30 <= m < 1 << 31 and abs(got - want) <= want * 2.0 ** -30, (t['name'], want, got); n += 1
assert n > 50, n"
check "  no requantization recorded without the profile" sh -c "! grep -q '\"requant\":' $TMP/c.json"
printf '{"schema": "qtool-profile", "name": "mine", "activations": {"dtype": "int8"}, "weights": {"granularity": "per_tensor"}}' >$TMP/mine.json
expect_ok "calib --profile FILE.json" $QTOOL calib $M --data $D/calib $PP -o $TMP/mine.onnx --limit 64 --profile $TMP/mine.json
check "  per-tensor weights, profile name recorded" python3 -c "
import json; d = json.load(open('$TMP/mine.onnx'[:-5] + '.json'))
assert d['settings']['profile'] == 'mine' and d['settings']['weight_granularity'] == 'per_tensor'"

# zoo models (scripts/t-zoo.sh exports them into build/zoo): MobileNetV3 (HardSwish, Sigmoid, Mul, Add)
# and ShuffleNetV2 (Concat, Transpose, Reshape) round trip and run as QOperator in ONNX Runtime
Z=${QT_ZOO:-$TOP/build/zoo}
ZP="-q --rgb --resize 224 --crop 224 --preset imagenet"
for m in mobilenet_v3_small shufflenet_v2_x0_5; do
    if [ ! -f "$Z/$m.onnx" ]; then
        skip "$Z/$m.onnx absent (made by scripts/t-zoo.sh): zoo round trip not tested"
        continue
    fi
    expect_ok "$m: calib (8 images)" $QTOOL calib "$Z/$m.onnx" --data $D/calib $ZP -o $TMP/$m.onnx --limit 8 --batch 4
    expect_ok "$m: export" $QTOOL export "$Z/$m.onnx" --quant-info $TMP/$m.json -o $TMP/${m}_e.onnx
    check "$m: byte-identical" cmp -s $TMP/$m.onnx $TMP/${m}_e.onnx
    expect_ok "$m: export --format qoperator --contrib" $QTOOL export "$Z/$m.onnx" --quant-info $TMP/$m.json \
        -o $TMP/${m}_op.onnx --format qoperator --contrib
    expect_ok "$m: qtool runs it" $QTOOL eval $TMP/${m}_op.onnx --data $D/test $ZP --latency-runs 0 --limit 4 \
        --save-inputs $TMP/zin.bin
    expect_ok "$m: ONNX Runtime runs the QDQ file" $ORT $TMP/$m.onnx --input $TMP/zin.bin --shape 4,3,224,224 \
        --opt all --output $TMP/zq.bin
    expect_ok "$m: ONNX Runtime runs the QOperator file" $ORT $TMP/${m}_op.onnx --input $TMP/zin.bin \
        --shape 4,3,224,224 --opt all --output $TMP/zo.bin
    expect_ok "$m: they agree" python3 scripts/cmpraw.py $TMP/zq.bin $TMP/zo.bin 1 --top1 1000
    check "$m: 4/4 top-1" grep -q "top1_agree=4/4" "$_out"
    rm -f $TMP/$m*.onnx
done

# bad inputs: clear message, non-zero exit, no output file
expect_fail 2 "unknown profile" $QTOOL calib $M --data $D/calib $PP -o $TMP/bad.onnx --profile nope
check "  names the built-in ones" grep -q "ort-x86" "$_out"
printf '{"schema": "qtool-profile", "name": "x", "scales": "pow2"}' >$TMP/badprof.json
expect_fail 4 "profile file with pow2 on uint8 activations" $QTOOL calib $M --data $D/calib $PP -o $TMP/bad.onnx \
    --profile $TMP/badprof.json
check "  names the file" grep -q "badprof.json" "$_out"
expect_fail 2 "export without --quant-info" $QTOOL export $M -o $TMP/bad.onnx
expect_fail 1 "missing quant_info.json" $QTOOL export $M --quant-info $TMP/none.json -o $TMP/bad.onnx
check "  names it" grep -q "none.json" "$_out"
head -c 300 $TMP/c.json >$TMP/garbled.json
expect_fail 4 "garbled quant_info.json" $QTOOL export $M --quant-info $TMP/garbled.json -o $TMP/bad.onnx
check "  names it" grep -q "garbled.json.*not valid JSON" "$_out"
expect_fail 4 "quant_info.json of another model (sha256)" $QTOOL export $D/model.onnx --quant-info $TMP/c.json \
    -o $TMP/bad.onnx
check "  says so" grep -q "written for another model" "$_out"
sed 's/"scale":\t\[/"scale": [1, /' $TMP/c.json >$TMP/badscale.json
expect_fail 4 "tensor with a wrong number of scales" $QTOOL export $M --quant-info $TMP/badscale.json -o $TMP/bad.onnx
check "  names the tensor" grep -q "scales, the model needs" "$_out"
printf 'x' | dd of=$TMP/f.weights.bin bs=1 seek=100 conv=notrunc 2>/dev/null
expect_fail 4 "altered tuned-weights file" $QTOOL export $M --quant-info $TMP/f.json -o $TMP/bad.onnx
check "  names it" grep -q "f.weights.bin" "$_out"
expect_fail 2 "--format magic" $QTOOL export $M --quant-info $TMP/c.json -o $TMP/bad.onnx --format magic
expect_fail 2 "--contrib without qoperator" $QTOOL export $M --quant-info $TMP/c.json -o $TMP/bad.onnx --contrib
check "no output file from any failure" test ! -e $TMP/bad.onnx -a ! -e $TMP/bad.json
check "no temporary files left" sh -c "! ls $TMP | grep -q tmp"
done_testing
