#!/bin/sh
# t-eval.sh: qtool eval on the bundled Fashion-MNIST model and images:
# accuracy equal to PyTorch's (testdata/fmnist/expected.json), outputs equal
# to ONNX Runtime's, identical at any thread count, CSV/JSON/raw outputs,
# and bad image folders.
# needs: ort python3
. scripts/testlib.sh
D=testdata/fmnist
E=$D/expected.json
PP="--preset mnist --latency-runs 0 -q"

expect_ok "eval the float model" $QTOOL eval $D/model.onnx --data $D/test $PP --json $TMP/e.json \
    --predictions $TMP/p.csv --save-outputs $TMP/o1.bin --threads 1
want=$(json $E test.top1)
check "top-1 $(json $TMP/e.json top1) equals PyTorch's $want" fcmp "$(json $TMP/e.json top1)" == "$want"
check "top-5 $(json $TMP/e.json top5) equals PyTorch's $(json $E test.top5)" fcmp "$(json $TMP/e.json top5)" == "$(json $E test.top5)"
check "images counted" test "$(json $TMP/e.json images)" = "$(json $E test.images)"
check "one CSV row per image plus a header" test "$(wc -l <$TMP/p.csv)" = "$(( $(json $E test.images) + 1 ))"
check "raw outputs: images x 10 floats" test "$(wc -c <$TMP/o1.bin)" = "$(( $(json $E test.images) * 40 ))"
expect_ok "eval with 2 threads and batch 7" $QTOOL eval $D/model.onnx --data $D/test $PP --threads 2 --batch 7 \
    --save-outputs $TMP/o2.bin
check "outputs byte-identical at 1 and 2 threads, batch 32 and 7" cmp -s $TMP/o1.bin $TMP/o2.bin
expect_ok "eval the BatchNormalization model against the folded one" $QTOOL eval $D/model_bn.onnx --data $D/test \
    $PP --ref $D/model.onnx --json $TMP/r.json
check "agreement with the folded model is 100% ($(json $TMP/r.json agreement))" fcmp "$(json $TMP/r.json agreement)" == 100
check "SQNR against the folded model above 60 dB ($(json $TMP/r.json sqnr_db))" fcmp "$(json $TMP/r.json sqnr_db)" '>' 60
expect_ok "json to stdout" sh -c "$QTOOL eval $D/model.onnx --data $D/test $PP --limit 10 --json - >$TMP/s.json"
check "stdout holds only the JSON" python3 -c "import json; json.load(open('$TMP/s.json'))"
expect_ok "latency measured" $QTOOL eval $D/model.onnx --data $D/test --preset mnist -q --limit 8 --latency-runs 5 \
    --json $TMP/l.json
check "latency is positive" fcmp "$(json $TMP/l.json latency_ms_median)" '>' 0
check "latency batch 1 by default" test "$(json $TMP/l.json latency_batch)" = 1
expect_ok "latency of a batch of 32" $QTOOL eval $D/model.onnx --data $D/test --preset mnist -q --limit 8 \
    --latency-runs 3 --latency-batch 32 --json $TMP/l32.json
check "latency_batch 32 reported" test "$(json $TMP/l32.json latency_batch)" = 32
check "batch-32 latency is positive" fcmp "$(json $TMP/l32.json latency_ms_median)" '>' 0
expect_ok "the text report names the latency batch" sh -c "$QTOOL eval $D/model.onnx --data $D/test --preset mnist \
    -q --limit 8 --latency-runs 3 --latency-batch 4 | grep -q 'p90 (batch 4,'"
expect_fail 2 "--latency-batch 0 is a usage error" $QTOOL eval $D/model.onnx --data $D/test --latency-batch 0

# ONNX Runtime on the same inputs
expect_ok "save inputs" $QTOOL eval $D/model.onnx --data $D/test $PP --limit 50 --save-inputs $TMP/in.bin \
    --save-outputs $TMP/q.bin
expect_ok "ONNX Runtime run" node scripts/ort-run.mjs $D/model.onnx --input $TMP/in.bin --shape 50,1,28,28 \
    --output $TMP/ort.bin
expect_ok "outputs within 1e-4 of ONNX Runtime" python3 scripts/cmpraw.py $TMP/q.bin $TMP/ort.bin 1e-4

# bad data
mkdir -p $TMP/empty
expect_fail 4 "empty folder" $QTOOL eval $D/model.onnx --data $TMP/empty $PP
expect_fail 1 "missing folder" $QTOOL eval $D/model.onnx --data $TMP/nope $PP
check "message names the folder" grep -q nope "$_out"
mkdir -p $TMP/bad/a
cp "$(ls $D/test/*/*.png | head -n 1)" $TMP/bad/a/good.png
printf 'not a png' >$TMP/bad/a/zz.png
expect_fail 4 "corrupt PNG" $QTOOL eval $D/model.onnx --data $TMP/bad $PP
check "message names the file" grep -q zz.png "$_out"
check "no partial outputs left" test ! -e $TMP/bad.csv
expect_fail 4 "corrupt PNG with --predictions leaves no CSV" $QTOOL eval $D/model.onnx --data $TMP/bad $PP \
    --predictions $TMP/bad.csv
check "no CSV or temporary file" sh -c "! ls $TMP/bad.csv* 2>/dev/null"
mkdir -p $TMP/big/a
python3 -c "
import zlib,struct,sys
def chunk(t,d): return struct.pack('>I',len(d))+t+d+struct.pack('>I',zlib.crc32(t+d)&0xffffffff)
w=h=32
raw=b''.join(b'\x00'+bytes(w) for _ in range(h))
open('$TMP/big/a/x.png','wb').write(b'\x89PNG\r\n\x1a\n'+chunk(b'IHDR',struct.pack('>IIBBBBB',w,h,8,0,0,0,0))+chunk(b'IDAT',zlib.compress(raw))+chunk(b'IEND',b''))"
expect_fail 4 "image of the wrong size" $QTOOL eval $D/model.onnx --data $TMP/big $PP
check "message names the file and the size" grep -q "x.png.*32x32" "$_out"
expect_fail 2 "three channels for a grey model" $QTOOL eval $D/model.onnx --data $D/test $PP --rgb
# image by image (QT_EXEC_SUBBATCH): eval runs a per-image graph with small
# weights one image at a time on a batch-1 plan, and must not where a node
# works across the batch. Two small graphs: Conv, Flatten, Softmax over the
# classes (per-image) or over the batch (axis 0): both equal ONNX Runtime's
# outputs at batch 5, and the per-image one gives the same bytes at batch 1.
for ax in 1 0; do
    /usr/bin/python3 - "$TMP/sm$ax.onnx" $ax <<'PY'
import sys, numpy as np, onnx
from onnx import helper as h, numpy_helper as nh, TensorProto as T
r = np.random.default_rng(5)
w = nh.from_array(r.standard_normal((2, 1, 3, 3)).astype(np.float32), "w")
g = h.make_graph([h.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), h.make_node("Flatten", ["c"], ["f"]),
                  h.make_node("Softmax", ["f"], ["y"], axis=int(sys.argv[2]))], "sm",
                 [h.make_tensor_value_info("x", T.FLOAT, ["N", 1, 28, 28])],
                 [h.make_tensor_value_info("y", T.FLOAT, ["N", 1568])], [w])
onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 13)]), sys.argv[1])
PY
    expect_ok "softmax axis $ax: eval at batch 5" $QTOOL eval $TMP/sm$ax.onnx --data $D/test $PP --limit 5 --batch 5 \
        --save-outputs $TMP/sm$ax.bin --save-inputs $TMP/smin.bin
    expect_ok "softmax axis $ax: ONNX Runtime at batch 5" node scripts/ort-run.mjs $TMP/sm$ax.onnx \
        --input $TMP/smin.bin --shape 5,1,28,28 --output $TMP/sm${ax}ort.bin
    check "softmax axis $ax: outputs equal ONNX Runtime's" python3 scripts/cmpraw.py $TMP/sm$ax.bin \
        $TMP/sm${ax}ort.bin 1e-5
    expect_ok "softmax axis $ax: eval at batch 1" $QTOOL eval $TMP/sm$ax.onnx --data $D/test $PP --limit 5 --batch 1 \
        --save-outputs $TMP/sm${ax}b1.bin
done
check "per-image graph: batch 5 and batch 1 give the same bytes" cmp -s $TMP/sm1.bin $TMP/sm1b1.bin
check "softmax over the batch: batch 5 differs from batch 1 (not split image by image)" \
    sh -c "! cmp -s $TMP/sm0.bin $TMP/sm0b1.bin"

done_testing
