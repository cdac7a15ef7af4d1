#!/bin/sh
# t-faults.sh: faults and signals. A calib or qat killed with SIGKILL at any
# moment leaves the previous model and quant_info.json as they were (or the
# new pair, whole, if it got that far) and no temporary file; a rerun then
# succeeds. SIGINT/SIGTERM stop finetune cleanly (nothing written, 130/143)
# and make qat write its checkpoint (130/143) from which --resume finishes.
# needs: python3
. scripts/testlib.sh
D=testdata/fmnist
PP="--preset mnist -q"
O=$TMP/o
mkdir -p $O $TMP/ref

# listing OUTDIR: the files in it, one line
files() { ls -A "$1" | tr '\n' ' '; }

# ---- calib under SIGKILL ----------------------------------------------------------
# --no-bn-reestimate: the plain pair (model and quant_info.json); with the
# default BN re-estimation at 4 bits a third file (tuned weights) is written
C="$D/model_bn.onnx --data $D/calib $PP --threads 1"
expect_ok "previous calib output (W8)" $QTOOL calib $C -o $O/q.onnx
cp $O/q.onnx $TMP/prev.onnx && cp $O/q.json $TMP/prev.json
expect_ok "the W4 run whole, for reference" $QTOOL calib $C --wbits 4 --no-bn-reestimate -o $TMP/ref/q.onnx
sed "s|$TMP/ref/|$O/|g" $TMP/ref/q.json >$TMP/new.json
sawold=0
sawnew=0
for d in 0.005 0.02 0.04 0.06 0.09 0.12 0.2 0.4 1; do
    $QTOOL calib $C --wbits 4 --no-bn-reestimate -o $O/q.onnx >/dev/null 2>&1 &
    pid=$!
    sleep $d
    kill -KILL $pid 2>/dev/null
    wait $pid 2>/dev/null
    if cmp -s $O/q.onnx $TMP/prev.onnx && cmp -s $O/q.json $TMP/prev.json; then
        sawold=1
        _report 0 "calib killed after ${d}s: previous pair untouched"
    elif cmp -s $O/q.onnx $TMP/ref/q.onnx && cmp -s $O/q.json $TMP/new.json; then
        sawnew=1
        _report 0 "calib killed after ${d}s: had finished, new pair whole"
    else
        _report 1 "calib killed after ${d}s: the pair is neither the previous nor the new one"
    fi
    check "  no temporary file ($(files $O))" test "$(files $O)" = "q.json q.onnx "
    cp $TMP/prev.onnx $O/q.onnx && cp $TMP/prev.json $O/q.json
done
check "some kills landed before the end" test $sawold = 1
expect_ok "a rerun succeeds" $QTOOL calib $C --wbits 4 --no-bn-reestimate -o $O/q.onnx
check "  and writes the reference bytes" cmp -s $O/q.onnx $TMP/ref/q.onnx

# ---- qat under SIGKILL --------------------------------------------------------------
Q="$D/model.onnx --train $D/calib $PP --wbits 4 --abits 4 --lr 0.001 --no-augment --calib-images 64 --batch 32
   --iters-per-epoch 4 --schedule const --threads 1 --hold-back 0"
rm -f $O/*
expect_ok "previous qat output" $QTOOL qat $Q --epochs 1 -o $O/q.onnx
cp $O/q.onnx $TMP/prev.onnx && cp $O/q.json $TMP/prev.json && cp $O/q.weights.bin $TMP/prev.weights.bin
expect_ok "qat with a checkpoint, 1 epoch" $QTOOL qat $Q --epochs 1 -o $TMP/ref/c1.onnx --checkpoint $TMP/ck
$QTOOL qat $Q --epochs 1000 -o $O/q.onnx --checkpoint $TMP/ck --resume >/dev/null 2>&1 &
pid=$!
sleep 1.5
kill -KILL $pid
wait $pid 2>/dev/null
check "qat killed mid-run: previous model, quant_info and tuned weights untouched" sh -c \
    "cmp -s $O/q.onnx $TMP/prev.onnx && cmp -s $O/q.json $TMP/prev.json && cmp -s $O/q.weights.bin $TMP/prev.weights.bin"
check "  no temporary file in the output folder ($(files $O))" test "$(files $O)" = "q.json q.onnx q.weights.bin "
check "  nor in the checkpoint folder ($(files $TMP/ck))" test "$(files $TMP/ck)" = "checkpoint.bin "
expect_ok "  a rerun resumes from the checkpoint and finishes" $QTOOL qat $Q --epochs 3 -o $O/q.onnx --checkpoint $TMP/ck \
    --resume
check "  new model written" sh -c "! cmp -s $O/q.onnx $TMP/prev.onnx"

# ---- SIGINT / SIGTERM ----------------------------------------------------------------
for sig in INT TERM; do
    code=$([ $sig = INT ] && echo 130 || echo 143)
    rm -rf $TMP/ck2 $O/*
    $QTOOL qat $Q --epochs 1000 -o $O/s.onnx --checkpoint $TMP/ck2 >$TMP/sig.log 2>&1 &
    pid=$!
    i=0
    while [ ! -s $TMP/ck2/checkpoint.bin ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
    kill -$sig $pid
    wait $pid 2>/dev/null
    rc=$?
    check "qat SIG$sig exits $code ($rc)" test $rc = $code
    check "  says it was interrupted" grep -q "interrupted" $TMP/sig.log
    check "  checkpoint, no model, nothing else ($(files $O))" sh -c "test -s $TMP/ck2/checkpoint.bin && test -z \"$(files $O)\""
    expect_ok "  --resume finishes" $QTOOL qat $Q --epochs 2 -o $O/s.onnx --checkpoint $TMP/ck2 --resume

    rm -f $O/*
    $QTOOL finetune $D/model_bn.onnx --data $D/calib $PP --iters 100000 --limit 32 -o $O/f.onnx --threads 1 \
        >$TMP/ft.log 2>&1 &
    pid=$!
    i=0
    while ! grep -q "finetune: layer\|tuning" $TMP/ft.log 2>/dev/null && [ $i -lt 30 ]; do sleep 0.1; i=$((i + 1)); done
    sleep 0.5
    t0=$(date +%s)
    kill -$sig $pid
    wait $pid 2>/dev/null
    rc=$?
    check "finetune SIG$sig exits $code ($rc)" test $rc = $code
    check "  within 5 s of the signal" test $(( $(date +%s) - t0 )) -le 5
    check "  says interrupted, nothing written" sh -c "grep -q 'interrupted.*nothing written' $TMP/ft.log && test -z \"$(files $O)\""
done
done_testing
