#!/bin/sh
# accuracy.sh (make accuracy): the README's MobileNet accuracy table, measured
# again. The ImageNet MobileNetV1-0.75 of ../shared (BatchNormalization kept,
# _bn.onnx) is quantized by calib, finetune and qat, each tuned or trained on
# the first 512 images of imagenet-dev (sorted order, as --limit takes them)
# and judged on the 154 held-out images and on all 666, against the float
# model (top-1, agreement). Prints one Markdown row per run. About 45 minutes
# on 2 cores; ACC_QUICK=1 runs every command on a few images (a smoke test
# of this script, not a measurement). Not part of make check.
set -eu
Q=${QTOOL:-./qtool}
S=${QT_SHARED:-../shared}
M=$S/models/mobilenet_v1_075_bn.onnx
REF=$S/models/mobilenet_v1_075.onnx
D=$S/data/imagenet-dev
if [ ! -f "$M" ] || [ ! -d "$D" ]; then echo "accuracy: $M or $D is absent; nothing to measure"; exit 0; fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
PP="--classes $S/data/imagenet_classes.txt --crop 224 --mean 0.5 --std 0.5"
# the split: symbolic links, first 512 images to train/, the rest to hold/
python3 scripts/split-imagenet.py "$D" "$T"
if [ "${ACC_QUICK:-0}" = 1 ]; then
    N=64; FT="--limit 32 --iters 2"; EP="--epochs 1 --iters-per-epoch 2"; EP4="--epochs 2 --iters-per-epoch 2 --freeze-bn-after 1"
else
    N=512; FT="--limit 512"; EP="--epochs 3"; EP4="--epochs 5 --freeze-bn-after 4"
fi
QAT="--distill --optimizer adam --relative-lr --lr 0.003 --no-augment"
ev() { # ev MODEL DATA -> "top1 agreement"
    $Q eval "$1" --data "$2" $PP --ref $REF --latency-runs 0 -q --json - 2>/dev/null |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.2f %.1f%%" % (d["top1"], d["agreement"]))'
}
row() { # row NAME SECONDS MODEL
    h=$(ev "$3" $T/hold); a=$(ev "$3" $D)
    printf '| %s | %s | %s | %s | %s | %s s |\n' "$1" ${h% *} ${h#* } ${a% *} ${a#* } "$2"
}
run() { # run NAME OUT COMMAND...: times the command, then prints its row
    name=$1 out=$2; shift 2
    t0=$(date +%s.%N)
    "$@" -q -o "$out" >$T/log 2>&1 || { echo "accuracy: $name failed:"; cat $T/log; exit 1; }
    row "$name" "$(python3 -c "import time; print('%.0f' % (time.time() - $t0))")" "$out"
}
if [ "${ACC_ONLY_REAL:-0}" != 1 ]; then
echo "| run | held-out top-1 | agreement | all 666 top-1 | agreement | time |"
echo "|---|---|---|---|---|---|"
row "float" 0 $REF
run "calib W8A8" $T/c8.onnx $Q calib $M --data $T/train $PP --limit $N
run "calib W8A8 --bn-reestimate" $T/c8r.onnx $Q calib $M --data $T/train $PP --limit $N --bn-reestimate
run "finetune W8A8 --bn-reestimate" $T/f8r.onnx $Q finetune $M --data $T/train $PP $FT --bn-reestimate
run "qat W8A8 --init finetune plan" $T/q8.onnx $Q qat $M --train $T/train $PP --init $T/f8r.json $QAT $EP
run "calib W4A8" $T/c4.onnx $Q calib $M --data $T/train $PP --limit $N --wbits 4
run "calib W4A8 --bn-reestimate" $T/c4r.onnx $Q calib $M --data $T/train $PP --limit $N --wbits 4 --bn-reestimate
run "finetune W4A8 --bn-reestimate" $T/f4r.onnx $Q finetune $M --data $T/train $PP $FT --wbits 4 --bn-reestimate
run "finetune W4A8 --method adaround --bn-reestimate" $T/a4r.onnx $Q finetune $M --data $T/train $PP $FT --wbits 4 \
    --method adaround --bn-reestimate
run "qat W4A8 from calibration, BN unfolded" $T/q4.onnx $Q qat $M --train $T/train $PP --wbits 4 $QAT $EP4
fi

# The real MobileNetV2 and SqueezeNet 1.1 of ../shared (no BatchNormalization
# nodes: BN is folded into V2's convolutions, SqueezeNet has none; ImageNet
# mean/std, resize 256, crop 224): qtool's calib, finetune and qat at W8A8 and
# W4A8 with their defaults, tuned on the first 512 images, judged on the 154
# held out against the float model, next to PyTorch 1.13 FX post-training
# quantization (scripts/fx-ptq.py) calibrated on the same 512 images. One row
# per run: held-out top-1, drop from float, top-1 agreement, output SQNR, CPU
# seconds (user+sys) and peak RSS of the command (the machine may be shared:
# wall time is not a measure). ACC_REAL=0 skips this part; ACC_ONLY_REAL=1
# runs only it.
if [ "${ACC_REAL:-1}" = 1 ]; then
    RPP="--classes $S/data/imagenet_classes.txt --resize 256 --crop 224 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225"
    if [ "${ACC_QUICK:-0}" = 1 ]; then RN=32; RFT="--limit 32 --iters 2"; REP="--epochs 1 --iters-per-epoch 2"
    else RN=512; RFT="--limit 512"; REP="--epochs 3"; fi
    rev() { # rev MODEL REF -> "top1 agreement sqnr"
        $Q eval "$1" --data $T/hold $RPP --ref "$2" --latency-runs 0 -q --json - 2>/dev/null |
            python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.2f %.1f%% %.1f" % (d["top1"], d["agreement"], d["sqnr_db"]))'
    }
    rrun() { # rrun MODEL FLOAT_TOP1 NAME OUT COMMAND...
        model=$1 ft=$2 name=$3 out=$4; shift 4
        /usr/bin/time -f "%U %S %M" -o $T/time "$@" -q -o "$out" >$T/log 2>&1 ||
            { echo "accuracy: $model $name failed:"; cat $T/log; exit 1; }
        set -- $(rev "$out" $S/models/$model.onnx) $(cat $T/time)
        printf '| %s | %s | %s | %s | %s | %s dB | %.0f s, %d MB |\n' "$model" "$name" "$1" \
            "$(python3 -c "print('%.2f' % ($ft - $1))")" "$2" "$3" "$(python3 -c "print($4 + $5)")" $(($6 / 1024))
    }
    rfx() { # rfx MODEL WBITS
        /usr/bin/time -f "%U %S %M" -o $T/time /usr/bin/python3 scripts/fx-ptq.py $S "$1" $T/train $T/hold \
            --wbits "$2" --limit $RN >$T/fx.json 2>$T/log || { echo "accuracy: fx-ptq $1 W$2 failed:"; cat $T/log; exit 1; }
        python3 - "$1" "$2" $(cat $T/time) $T/fx.json <<'PY'
import json, sys
d = json.load(open(sys.argv[6]))
m, w, u, s, rss = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
print("| %s | PyTorch FX PTQ W%sA8 (fbgemm qconfig) | %.2f | %.2f | %.1f%% | %.1f dB | %.0f s, %d MB |"
      % (m, w, d["top1"], d["float_top1"] - d["top1"], d["agreement"], d["sqnr_db"], u + s, rss // 1024))
PY
    }
    echo
    echo "| model | run (tuned on 512, judged on 154 held out) | top-1 | drop | agreement | SQNR | CPU, peak RSS |"
    echo "|---|---|---|---|---|---|---|"
    for RM in ${ACC_REAL_MODELS:-mobilenet_v2 squeezenet1_1}; do
        MF=$S/models/$RM.onnx
        FT1=$($Q eval $MF --data $T/hold $RPP --latency-runs 0 -q --json - 2>/dev/null |
              python3 -c 'import json,sys; print("%.2f" % json.load(sys.stdin)["top1"])')
        echo "| $RM | float | $FT1 | | | | |"
        rrun $RM $FT1 "calib W8A8" $T/$RM-c8.onnx $Q calib $MF --data $T/train $RPP --limit $RN
        rfx $RM 8
        rrun $RM $FT1 "calib W4A8" $T/$RM-c4.onnx $Q calib $MF --data $T/train $RPP --limit $RN --wbits 4
        rrun $RM $FT1 "finetune W4A8" $T/$RM-f4.onnx $Q finetune $MF --data $T/train $RPP $RFT --wbits 4
        rfx $RM 4
        [ "${ACC_REAL_SHORT:-0}" = 1 ] && continue
        rrun $RM $FT1 "finetune W8A8" $T/$RM-f8.onnx $Q finetune $MF --data $T/train $RPP $RFT
        rrun $RM $FT1 "qat W8A8" $T/$RM-q8.onnx $Q qat $MF --train $T/train $RPP $REP
        rrun $RM $FT1 "qat W4A8" $T/$RM-q4.onnx $Q qat $MF --train $T/train $RPP --wbits 4 $REP
    done
fi

# ACC_SEG=1: the segmentation models of scripts/gen-zoo.py (torchvision, random
# weights, BatchNorm re-estimated on the first 16 training images; input
# 240x320, so the 256x256 images go through --resize 240x320), default W8A8
# calib on the first ACC_SEG_N (default 64) training images, judged on the
# 154 held out against the float model: per-pixel agreement, mean IoU
# against the float model's classes, output SQNR. Models are exported to
# ACC_ZOO (default build/zoo) when missing (minutes each).
if [ "${ACC_SEG:-0}" = 1 ]; then
    Z=${ACC_ZOO:-build/zoo}
    SPP="--resize 240x320 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225"
    echo
    echo "| model (random weights) | W8A8 calib images | pixel agreement | mean IoU vs float | SQNR | calib CPU, peak RSS |"
    echo "|---|---|---|---|---|---|"
    for SM in ${ACC_SEG_MODELS:-lraspp_mobilenet_v3_large deeplabv3_mobilenet_v3_large fcn_resnet50}; do
        [ -f $Z/$SM.ort.bin ] || /usr/bin/python3 scripts/gen-zoo.py $Z --only $SM --images $T/train >$T/log 2>&1 ||
            { echo "accuracy: gen-zoo $SM failed:"; cat $T/log; exit 1; }
        /usr/bin/time -f "%U %S %M" -o $T/time $Q calib $Z/$SM.onnx --data $T/train $SPP --limit ${ACC_SEG_N:-64} -q \
            -o $T/$SM-c8.onnx >$T/log 2>&1 || { echo "accuracy: calib $SM failed:"; cat $T/log; exit 1; }
        $Q eval $T/$SM-c8.onnx --data $T/hold $SPP --ref $Z/$SM.onnx --latency-runs 0 -q --json $T/seg.json >$T/log 2>&1 ||
            { echo "accuracy: eval $SM failed:"; cat $T/log; exit 1; }
        python3 - $SM ${ACC_SEG_N:-64} $(cat $T/time) $T/seg.json <<'PY'
import json, sys
m, n, u, s, rss, f = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
d = json.load(open(f))
sq = ", ".join("%s %.1f dB" % (o["name"], o["sqnr_db"]) for o in d["outputs"])
print("| %s | %s | %.2f%% | %.2f%% | %s | %.0f s, %d MB |" % (m, n, d["dense"]["pixel_agreement"],
      d["dense"]["miou_ref"], sq, u + s, rss // 1024))
PY
    done
fi
