#!/bin/sh
# t-determinism.sh: calib, finetune and qat give byte-identical outputs
# (model and quant_info.json) run twice and at --threads 1 and 2, with
# augmentation on for qat (its random crops and flips come from --seed).
# The 1-vs-2-thread checks of t-calib, t-finetune and t-qat use other
# settings (batch sizes, bias correction, checkpoints); this one runs each
# command three times with the same settings.
. scripts/testlib.sh
D=testdata/fmnist
PP="--preset mnist -q"

# same NAME CMD...: runs CMD -o DIR/m.onnx for threads 1, 2, 2 and compares
same() {
    name=$1
    shift
    for run in t1:1 t2:2 t2b:2; do
        mkdir -p $TMP/$name/${run%%:*}
        expect_ok "$name --threads ${run#*:} (${run%%:*})" "$@" --threads ${run#*:} -o $TMP/$name/${run%%:*}/m.onnx
    done
    for f in m.onnx m.json; do
        check "  $name $f: threads 1 = threads 2" cmp -s $TMP/$name/t1/$f $TMP/$name/t2/$f
        check "  $name $f: threads 2 twice" cmp -s $TMP/$name/t2/$f $TMP/$name/t2b/$f
    done
}

same calib $QTOOL calib $D/model_bn.onnx --data $D/calib $PP --wbits 4 --observer mse --batch 5
same finetune $QTOOL finetune $D/model_bn.onnx --data $D/calib $PP --wbits 4 --limit 32 --iters 20 --seed 3
# --hold-back 0: the last epoch is written (the held-back validation, which
# may keep the starting model whatever the seed, is t-qat-defaults' to check)
same qat $QTOOL qat $D/model.onnx --train $D/calib $PP --wbits 4 --abits 4 --epochs 2 --iters-per-epoch 3 --batch 16 \
    --calib-images 64 --seed 5 --augment --hold-back 0
check "qat: another seed gives other bytes" sh -c "
    $QTOOL qat $D/model.onnx --train $D/calib $PP --wbits 4 --abits 4 --epochs 2 --iters-per-epoch 3 --batch 16 \
        --calib-images 64 --seed 6 --augment --hold-back 0 -o $TMP/qs.onnx >/dev/null 2>&1 &&
    ! cmp -s $TMP/qs.onnx $TMP/qat/t1/m.onnx"
done_testing
