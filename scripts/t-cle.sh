#!/bin/sh
# t-cle.sh: cross-layer equalization (--cle). On the bundled Fashion-MNIST
# model: the equalized float model (export --format float) gives ONNX
# Runtime the original's outputs within 1e-4 relative; every equalized pair's
# per-channel weight ranges are equal (r1_i / s_i = r2_i s_i = sqrt(r1_i r2_i)),
# which they were not before; per-tensor W8A8 output SQNR improves; export
# rebuilds the QDQ file byte for byte; 1 and 2 threads write the same bytes;
# ONNX Runtime loads and runs the output; --cle composes with
# --bias-correction, --bn-reestimate and finetune; qat refuses it where it
# cannot apply. With ../shared: MobileNetV1 (ReLU6) float outputs unchanged
# on the calibration images.
. scripts/testlib.sh
D=testdata/fmnist
M=$D/model_bn.onnx
PP="--preset mnist -q"
ORT="node scripts/ort-run.mjs"

expect_ok "calib --per-tensor --cle" $QTOOL calib $M --data $D/calib $PP --per-tensor --cle -o $TMP/c.onnx \
    --threads 1 --json $TMP/c.sum.json
check "summary counts the pairs ($(json $TMP/c.sum.json cle_pairs))" test "$(json $TMP/c.sum.json cle_pairs)" -ge 3
check "quant_info.json records cle and its pairs" python3 -c "
import json; d = json.load(open('$TMP/c.json'))
assert d['settings']['cle'] is True and len(d['cle']['pairs']) >= 3 and d['cle']['rounds'] >= 1, d.get('cle')"
check "equalized weights in the tuned-weights file" test -s $TMP/c.weights.bin
expect_ok "export rebuilds it" $QTOOL export $M --quant-info $TMP/c.json -o $TMP/ce.onnx
check "  byte-identical" cmp -s $TMP/c.onnx $TMP/ce.onnx
expect_ok "same run at 2 threads" $QTOOL calib $M --data $D/calib $PP --per-tensor --cle -o $TMP/c2.onnx --threads 2
check "  byte-identical model, quant_info.json and weights" sh -c \
    "cmp -s $TMP/c.onnx $TMP/c2.onnx && cmp -s $TMP/c.json $TMP/c2.json && cmp -s $TMP/c.weights.bin $TMP/c2.weights.bin"

# the float model after CLE: same outputs in ONNX Runtime
expect_ok "export --format float (equalized weights)" $QTOOL export $M --quant-info $TMP/c.json -o $TMP/cf.onnx \
    --format float
# (the percentile pinned: without CLE the 8-bit default is 99.999, with it 99.99)
expect_ok "calib without CLE, for comparison" $QTOOL calib $M --data $D/calib $PP --per-tensor --no-cle -o $TMP/n.onnx \
    --percentile 99.99
expect_ok "  its float model" $QTOOL export $M --quant-info $TMP/n.json -o $TMP/nf.onnx --format float
expect_ok "500 test images" $QTOOL eval $M --data $D/test $PP --latency-runs 0 --save-inputs $TMP/in.bin
for m in cf nf; do
    expect_ok "ONNX Runtime runs $m.onnx" $ORT $TMP/$m.onnx --input $TMP/in.bin --shape 500,1,28,28 --output $TMP/$m.out
done
expect_ok "float outputs unchanged by CLE (1e-4 relative)" python3 scripts/cmpraw.py $TMP/cf.out $TMP/nf.out 1e-4
cat "$_out"

# every pair through a Relu (or none): r1_i == r2_i after, not before
cat >$TMP/ranges.py <<'EOF'
import json, struct, sys
def weights(q):
    d = json.load(open(q)); tw = d['tuned_weights']; raw = open(q[:-5] + '.weights.bin', 'rb').read()
    return d, {t['name']: struct.unpack_from('<%df' % t['count'], raw, t['offset']) for t in tw['tensors']}
d, w = weights(sys.argv[1])
sys.path.insert(0, 'scripts')
import onnxedit
w0 = {k: struct.unpack('<%df' % (len(v) // 4), v)  # the folded float model without CLE
      for k, v in onnxedit.raw_initializers(sys.argv[2], (1,)).items()}
checked = 0
for p in d['cle']['pairs']:
    if p['activation'] not in ('Relu', '') or p['to_layout'] == 'io':
        continue
    a, b, n = w[p['from_weight']], w[p['to_weight']], p['channels']
    per = len(a) // n
    r1 = [max(abs(x) for x in a[i * per:(i + 1) * per]) for i in range(n)]
    K = int(p['kernel'])
    O = len(b) // (n * K) if p['to_layout'] == 'oik' else n
    if p['to_layout'] == 'depthwise':
        r2 = [max(abs(x) for x in b[i * K:(i + 1) * K]) for i in range(n)]
    else:
        r2 = [max(abs(b[(o * n + i) * K + k]) for o in range(O) for k in range(K)) for i in range(n)]
    for i in range(n):
        if r1[i] > 0 and r2[i] > 0:
            assert abs(r1[i] / r2[i] - 1) < 1e-4, (p['from'], p['to'], i, r1[i], r2[i])
            checked += 1
    if True:  # before CLE the ranges differed
        a0, b0 = w0[p['from_weight']], w0[p['to_weight']]
        r10 = [max(abs(x) for x in a0[i * per:(i + 1) * per]) for i in range(n)]
        if p['to_layout'] == 'depthwise':
            r20 = [max(abs(x) for x in b0[i * K:(i + 1) * K]) for i in range(n)]
        else:
            r20 = [max(abs(b0[(o * n + i) * K + k]) for o in range(O) for k in range(K)) for i in range(n)]
        assert max(abs(x / y - 1) for x, y in zip(r10, r20) if x > 0 and y > 0) > 0.1, 'already equal before'
print('channels checked', checked)
assert checked >= 16
EOF
check "per-channel ranges equalized: r1_i = r2_i for every Relu pair (and not so before)" python3 $TMP/ranges.py \
    $TMP/c.json $TMP/nf.onnx
expect_ok "W8A8 per-tensor output SQNR with CLE" $QTOOL eval $TMP/c.onnx --data $D/test $PP --ref $M \
    --latency-runs 0 --json $TMP/ce.json
expect_ok "  without" $QTOOL eval $TMP/n.onnx --data $D/test $PP --ref $M --latency-runs 0 --json $TMP/ne.json
check "CLE raises the output SQNR ($(json $TMP/ne.json sqnr_db) -> $(json $TMP/ce.json sqnr_db) dB) by 3 dB or more" \
    fcmp "$(json $TMP/ce.json sqnr_db)" '>=' "$(python3 -c "print($(json $TMP/ne.json sqnr_db) + 3)")"
expect_ok "ONNX Runtime loads the QDQ file" $ORT $TMP/c.onnx --check-load
expect_ok "ONNX Runtime runs it" $ORT $TMP/c.onnx --input $TMP/in.bin --shape 500,1,28,28 --opt all --output $TMP/co.out

# composes with the corrections and finetune
expect_ok "--cle --bias-correction" $QTOOL calib $M --data $D/calib $PP --per-tensor --cle --bias-correction \
    -o $TMP/b.onnx --limit 64
expect_ok "  export" $QTOOL export $M --quant-info $TMP/b.json -o $TMP/be.onnx
check "  byte-identical" cmp -s $TMP/b.onnx $TMP/be.onnx
expect_ok "--cle --bn-reestimate W4A8" $QTOOL calib $M --data $D/calib $PP --cle --bn-reestimate --wbits 4 \
    -o $TMP/r.onnx --limit 64
expect_ok "  export" $QTOOL export $M --quant-info $TMP/r.json -o $TMP/re.onnx
check "  byte-identical" cmp -s $TMP/r.onnx $TMP/re.onnx
expect_ok "finetune --cle" $QTOOL finetune $M --data $D/calib $PP --cle -o $TMP/f.onnx --limit 32 --iters 5
check "  quant_info.json records cle" test "$(json $TMP/f.json settings.cle)" = True
expect_ok "  export" $QTOOL export $M --quant-info $TMP/f.json -o $TMP/fe.onnx
check "  byte-identical" cmp -s $TMP/f.onnx $TMP/fe.onnx
expect_ok "qat --cle" $QTOOL qat $M --train $D/calib $PP --cle -o $TMP/q.onnx --iters-per-epoch 2 --batch 16 \
    --calib-images 32
check "  quant_info.json records cle" test "$(json $TMP/q.json settings.cle)" = True
expect_fail 2 "qat --cle --freeze-bn-after 1 (BatchNormalization unfolded)" $QTOOL qat $M --train $D/calib $PP --cle \
    --freeze-bn-after 1 -o $TMP/x.onnx
check "  the message says why" grep -q -- "--freeze-bn-after" $_out
check "  no output left" test ! -e $TMP/x.onnx

# MobileNetV1 (ReLU6 everywhere): float outputs on the calibration images unchanged
V1=$SHARED/models/mobilenet_v1_075.onnx
if [ -f "$V1" ] && [ -d "$SHARED/data/imagenet-dev" ]; then
    IP="--classes $SHARED/data/imagenet_classes.txt --crop 224 --mean 0.5 --std 0.5 -q"
    expect_ok "MobileNetV1 calib --per-tensor --cle on 32 images" $QTOOL calib $V1 --data $SHARED/data/imagenet-dev \
        $IP --limit 32 --per-tensor --cle -o $TMP/m.onnx
    check "  pairs through ReLU6 equalized ($(python3 -c "import json; print(json.load(open('$TMP/m.json'))['cle']['clip_pairs'])"))" \
        python3 -c "import json; c = json.load(open('$TMP/m.json'))['cle']; assert c['clip_pairs'] >= 20, c"
    expect_ok "  its float model" $QTOOL export $V1 --quant-info $TMP/m.json -o $TMP/mf.onnx --format float
    expect_ok "  the 32 images" $QTOOL eval $V1 --data $SHARED/data/imagenet-dev $IP --limit 32 --latency-runs 0 \
        --save-inputs $TMP/min.bin --save-outputs $TMP/m0.out
    expect_ok "  ONNX Runtime runs the equalized float model" $ORT $TMP/mf.onnx --input $TMP/min.bin \
        --shape 32,3,224,224 --output $TMP/m1.out
    expect_ok "  outputs unchanged (1e-4 relative)" python3 scripts/cmpraw.py $TMP/m1.out $TMP/m0.out 1e-4
    cat "$_out"
    expect_ok "  export rebuilds the QDQ file" $QTOOL export $V1 --quant-info $TMP/m.json -o $TMP/me.onnx
    check "  byte-identical" cmp -s $TMP/m.onnx $TMP/me.onnx
else
    skip "MobileNetV1 of ../shared absent"
fi
done_testing
