#!/bin/sh
# t-qat-defaults.sh: qtool qat with nothing but the model, the images and
# the bit widths on the bundled Fashion-MNIST model (W4A4): it measures its
# start on a held-back slice of the training images (every 10th, never
# trained on), does not end below that start, ends above calibration alone
# on the unseen test images, and keeps every learnt scale positive and within
# a few percent of its start after one step (the old default, SGD at lr 0.01
# with LSQ's gradient, took a scale to the 1e-6 floor in one step); with
# --val, the epoch written is the best one, and a run that ends below its
# start says so on stderr (also with -q) and writes its starting model.
. scripts/testlib.sh
D=testdata/fmnist
PP="--preset mnist -q"

# the learnt scales (names *_scale) of a checkpoint: {name: [values]}
cat >$TMP/scales.py <<'EOF'
import struct, sys
def scales(path):
    b = open(path, 'rb').read()
    nvalues = struct.unpack_from('<i', b, 12)[0]
    off, out = 24, {}
    for _ in range(nvalues):
        nl = struct.unpack_from('<I', b, off)[0]
        name = b[off + 4:off + 4 + nl].decode()
        n = struct.unpack_from('<q', b, off + 4 + nl)[0]
        v = struct.unpack_from('<%df' % n, b, off + 12 + nl)
        off += 12 + nl + 4 * n
        if name.endswith('_scale'):
            out[name] = v
    return out
a, b = scales(sys.argv[1]), scales(sys.argv[2])
assert a and a.keys() == b.keys(), 'no learnt scales'
lo = min(x / y for k in a for x, y in zip(a[k], b[k]))
hi = max(x / y for k in a for x, y in zip(a[k], b[k]))
print('learnt scales: %d tensors, after one step / start: %.4g .. %.4g' % (len(a), lo, hi))
assert all(x > 0 for k in a for x in a[k]) and lo >= 0.95 and hi <= 1.05, (lo, hi)
EOF

expect_ok "calib W4A4 without BN re-estimation (the old default)" $QTOOL calib $D/model.onnx --data $D/calib $PP \
    --wbits 4 --abits 4 --no-bn-reestimate -o $TMP/ptq.onnx
expect_ok "  eval" $QTOOL eval $TMP/ptq.onnx --data $D/test $PP --latency-runs 0 --json $TMP/ptq.json
expect_ok "calib W4A4, defaults (BN re-estimation)" $QTOOL calib $D/model.onnx --data $D/calib $PP --wbits 4 --abits 4 \
    -o $TMP/ptr.onnx
expect_ok "  eval" $QTOOL eval $TMP/ptr.onnx --data $D/test $PP --latency-runs 0 --json $TMP/ptr.json
expect_ok "qat W4A4, defaults, 3 epochs, 1 thread" $QTOOL qat $D/model.onnx --train $D/calib $PP --wbits 4 --abits 4 \
    --epochs 3 -o $TMP/d1.onnx --json $TMP/d1.log.json --threads 1
check "  30 of 300 training images held back, the start and 3 epochs validated on them" python3 -c "
import json; d = json.load(open('$TMP/d1.log.json'))
assert d['held_back'] == 30 and d['val_images'] == 30 and 0 < d['start_val_top1'] <= 100, d
assert len(d['epochs']) == 3 and all(0 < e['val_top1'] <= 100 for e in d['epochs']), d['epochs']"
check "  the defaults recorded: adam, lr 0.003 relative, distillation at temperature 2 (10 classes), no augmentation" \
    python3 -c "
import json; d = json.load(open('$TMP/d1.log.json'))
assert (d['optimizer'], d['lr'], d['relative_lr'], d['distill'], d['temperature'], d['augment']) == \
    ('adam', 0.003, True, True, 2, False), d"
check "  last epoch $(json $TMP/d1.log.json epochs.2.val_top1) >= start $(json $TMP/d1.log.json start_val_top1), not flagged" \
    python3 -c "
import json; d = json.load(open('$TMP/d1.log.json'))
assert d['epochs'][-1]['val_top1'] >= d['start_val_top1'] and not d['ended_below_start'], d"
check "  learnt scales within 5% of their start after every epoch" python3 -c "
import json; e = json.load(open('$TMP/d1.log.json'))['epochs']
assert all(0.95 <= x['scale_ratio_min'] and x['scale_ratio_max'] <= 1.05 for x in e), e"
expect_ok "  eval on the unseen test images" $QTOOL eval $TMP/d1.onnx --data $D/test $PP --latency-runs 0 \
    --json $TMP/d1e.json
check "  qat top-1 $(json $TMP/d1e.json top1) >= calib without BN re-estimation $(json $TMP/ptq.json top1) + 5" \
    fcmp "$(json $TMP/d1e.json top1)" '>=' "$(python3 -c "print($(json $TMP/ptq.json top1) + 5)")"
check "  and >= calib's default $(json $TMP/ptr.json top1)" fcmp "$(json $TMP/d1e.json top1)" '>=' "$(json $TMP/ptr.json top1)"
expect_ok "  same run at 2 threads" $QTOOL qat $D/model.onnx --train $D/calib $PP --wbits 4 --abits 4 --epochs 3 \
    -o $TMP/d2.onnx --threads 2
check "  byte-identical model and quant_info.json" sh -c "cmp $TMP/d1.onnx $TMP/d2.onnx && cmp $TMP/d1.json $TMP/d2.json"

# a model with BatchNormalization: trained unfolded until the last epoch by default below 8 bits
expect_ok "qat W4A8 on the BatchNormalization model, defaults, 2 epochs" $QTOOL qat $D/model_bn.onnx --train $D/calib \
    $PP --wbits 4 --epochs 2 -o $TMP/b.onnx --json $TMP/b.log.json
check "  6 BatchNormalization unfolded until epoch 2 (freeze_bn_after 1), scales within 5%, not below its start" python3 -c "
import json; d = json.load(open('$TMP/b.log.json'))
assert d['batchnorm_unfolded'] == 6 and d['freeze_bn_after'] == 1 and not d['ended_below_start'], d
assert all(0.95 <= x['scale_ratio_min'] and x['scale_ratio_max'] <= 1.05 for x in d['epochs']), d['epochs']"
expect_ok "  at 8 bits: folded from the start" $QTOOL qat $D/model_bn.onnx --train $D/calib $PP --epochs 2 \
    --iters-per-epoch 1 -o $TMP/b8.onnx --json $TMP/b8.log.json
check "  nothing unfolded" test "$(json $TMP/b8.log.json batchnorm_unfolded)" = 0

# one step at the default rate, and at the old default (SGD, lr 0.01 in the
# weights' units, labels, augmentation), against a step of lr 1e-12 (the start)
expect_ok "one step, lr 1e-12 (the starting scales)" $QTOOL qat $D/model.onnx --train $D/calib $PP --wbits 4 --abits 4 \
    --iters-per-epoch 1 --lr 1e-12 -o $TMP/s0.onnx --checkpoint $TMP/ck0
expect_ok "one step at the default rate" $QTOOL qat $D/model.onnx --train $D/calib $PP --wbits 4 --abits 4 \
    --iters-per-epoch 1 -o $TMP/s1.onnx --checkpoint $TMP/ck1
check "  every learnt scale positive and within 5% of its start" python3 $TMP/scales.py $TMP/ck1/checkpoint.bin \
    $TMP/ck0/checkpoint.bin
expect_ok "one step of the old default: SGD lr 0.01, absolute, labels, augmentation" $QTOOL qat $D/model.onnx \
    --train $D/calib $PP --wbits 4 --abits 4 --iters-per-epoch 1 --optimizer sgd --lr 0.01 --absolute-lr --labels \
    --augment -o $TMP/s2.onnx --checkpoint $TMP/ck2
check "  every learnt scale positive and within 5% of its start" python3 $TMP/scales.py $TMP/ck2/checkpoint.bin \
    $TMP/ck0/checkpoint.bin

# --val: the epoch written is the best validated one
expect_ok "qat --val test/, 3 epochs" $QTOOL qat $D/model.onnx --train $D/calib --val $D/test $PP --wbits 4 --abits 4 \
    --epochs 3 -o $TMP/v.onnx --json $TMP/v.log.json
expect_ok "  eval" $QTOOL eval $TMP/v.onnx --data $D/test $PP --latency-runs 0 --json $TMP/ve.json
# the QDQ file (int32 biases, integer kernels) and the training graph's
# validation (float biases) differ by about a point at W4A4 on these 500
# images either way: the start 78.4 validated, 79.6 as QDQ; after 3 epochs
# at temperature 4 91.8 / 91.4, at 2 (the default for 10 classes) 92.8 / 91.4
check "  QDQ top-1 $(json $TMP/ve.json top1) = best val top-1 $(json $TMP/v.log.json best_val_top1) (epoch $(json $TMP/v.log.json best_epoch)) within 1.5" \
    python3 -c "
import json; d = json.load(open('$TMP/v.log.json')); q = $(json $TMP/ve.json top1)
assert d['held_back'] == 0 and d['val_images'] == 500 and abs(q - d['best_val_top1']) <= 1.5, d
assert d['best_val_top1'] == max([d['start_val_top1']] + [e['val_top1'] for e in d['epochs']]), d"
# a rate that wrecks the model: the start is written, and stderr says so
expect_ok "qat --val, SGD at lr 0.05 with augmentation (ends below its start)" $QTOOL qat $D/model.onnx --train $D/calib \
    --val $D/test $PP --wbits 4 --abits 4 --epochs 2 --optimizer sgd --lr 0.05 --absolute-lr --labels --augment \
    -o $TMP/w.onnx --json $TMP/w.log.json
check "  warning on stderr despite -q" grep -q "warning: training ended below its start" "$_out"
check "  JSON: ended_below_start, best epoch 0 (the start)" python3 -c "
import json; d = json.load(open('$TMP/w.log.json'))
assert d['ended_below_start'] and d['best_epoch'] == 0 and d['epochs'][-1]['val_top1'] < d['start_val_top1'], d"
expect_ok "  the same run at lr 1e-12 (its starting model)" $QTOOL qat $D/model.onnx --train $D/calib --val $D/test \
    $PP --wbits 4 --abits 4 --epochs 2 --optimizer sgd --lr 1e-12 --absolute-lr --labels --augment -o $TMP/z.onnx
check "  the file written is that starting model, byte for byte" cmp $TMP/w.onnx $TMP/z.onnx
expect_fail 2 "--hold-back takes a whole number" $QTOOL qat $D/model.onnx --train $D/calib $PP --hold-back x \
    -o $TMP/x.onnx
check "  no output" test ! -e $TMP/x.onnx
done_testing
