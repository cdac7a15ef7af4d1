#!/bin/sh
# bench.sh (make bench): qtool against ONNX Runtime (onnxruntime-node) on the
# same ONNX file and the same preprocessed images, interleaved in one run, on
# four models: the ImageNet MobileNetV1-0.75 and MobileNetV2 of ../shared/models
# and, from the zoo (scripts/gen-zoo.py, random weights, cached in
# build/bench-zoo), ResNet18 and the vision transformer ViT-B/32 (MatMul-heavy).
# Each model float (the file as is) and int8 (qtool calib's QDQ file of it, or
# of its BatchNormalization form, run by `qtool eval` on integer kernels; ONNX
# Runtime fuses the same file's QDQ pairs into its int8 kernels), batch 1
# latency and batch 32 time per batch (each the median of timed runs after
# three warm-up runs; qtool's by eval --latency-batch), at 1 and 2 threads.
# Prints per row the times, the ratio qtool/ORT (lower is better) and the
# achieved GFLOP/s (float) or GOP/s (int8) of each: 2 x the multiply-
# accumulates of the Conv/Gemm/MatMul nodes (scripts/bench-macs.py) x batch /
# time. BENCH_MODELS limits the models (names as in the table); BENCH_EXTRA=0
# stops after the table.
# Then calibration and one QAT training step against PyTorch 1.13 eager mode.
set -eu
Q=${QTOOL:-./qtool}
S=${QT_SHARED:-../shared}
D=$S/data/imagenet-dev
RUNS=${BENCH_RUNS:-30}
ROUNDS=${BENCH_ROUNDS:-3}
MODELS=${BENCH_MODELS:-mobilenet_v1_075 mobilenet_v2 resnet18 vit_b_32}
Z=${BENCH_ZOO:-build/bench-zoo}
if [ ! -f "$S/models/mobilenet_v1_075.onnx" ]; then echo "bench: $S/models is absent; nothing to measure"; exit 0; fi
sh scripts/setup-node.sh >/dev/null
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
PP="--data $D --classes $S/data/imagenet_classes.txt --crop 224 --mean 0.5 --std 0.5"
lat() { python3 -c 'import json,sys; print(json.load(sys.stdin)["latency_ms_median"])'; }
med() { python3 -c "import sys,statistics; print('%.3f' % statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
ort1() { python3 -c 'import json,sys; print([json.loads(l) for l in sys.stdin if "median_ms" in l][0]["median_ms"])'; }
# gops MACS BATCH MS: achieved G(FL)OP/s
gops() { python3 -c "import sys; m,b,t=map(float,sys.argv[1:]); print('%.1f' % (2*m*b/t/1e6))" "$@"; }
# This CPU's peak per core, measured (scripts/bench-peak.c: independent
# chains of 512-bit FMAs and vpdpbusd on one core, at the clock the core
# runs at): q_pk / ort_pk are the achieved rates' share of it
cc -O2 -o $T/peak scripts/bench-peak.c
set -- $($T/peak)
PEAK_F=$1 PEAK_I=$2 PEAK_ISA=$3
# pct GOPS KIND THREADS: share of the peak of THREADS cores
pct() { python3 -c "import sys; g=float(sys.argv[1]); p=($PEAK_F if sys.argv[2]=='float' else $PEAK_I)*int(sys.argv[3]); print('%.0f%%' % (100*g/p) if p > 0 else '-')" "$@"; }

# bench_model NAME FLOAT.onnx INT8SRC.onnx PREPROC...: the rows of one model
bench_model() {
    name=$1 mf=$2 mi=$3
    shift 3
    pp="--data $D $*"
    macs=$(/usr/bin/python3 scripts/bench-macs.py "$mf")
    $Q eval "$mf" $pp --limit 32 --latency-runs 0 -q --save-inputs $T/in32.bin >/dev/null
    head -c $((3 * 224 * 224 * 4)) $T/in32.bin >$T/in1.bin
    kinds="float int8"
    if ! $Q calib "$mi" $pp --limit 64 --threads 2 -q -o $T/mq.onnx >/dev/null; then
        echo "bench: $name: qtool calib failed: no int8 rows"
        kinds=float
    fi
    # heavy models: fewer timed runs (ResNet18 is 1.8 GMAC an image, ViT-B/32 4.4)
    r1=$RUNS r32=5
    if [ "$macs" -gt 1000000000 ]; then r1=$((RUNS / 3 + 1)) r32=3; fi
    for kind in $kinds; do
        if [ $kind = float ]; then m=$mf; else m=$T/mq.onnx; fi
        for th in 1 2; do
            qa=""; qb=""; oa=""; ob=""
            for r in $(seq "$ROUNDS"); do
                # results go to files and are parsed after the run: a parser
                # started at the same time (python's start-up, ~40 ms of CPU)
                # takes the second core from a 2-thread batch-1 run
                $Q eval "$m" $pp --limit 1 --threads $th --latency-runs $r1 -q --json $T/l.json >/dev/null 2>&1
                qa="$qa $(lat <$T/l.json)"
                node scripts/ort-run.mjs "$m" --input $T/in1.bin --shape 1,3,224,224 --threads $th --opt all \
                    --time $r1 >$T/o.json
                oa="$oa $(ort1 <$T/o.json)"
                $Q eval "$m" $pp --limit 1 --threads $th --latency-runs $r32 --latency-batch 32 -q --json $T/l.json \
                    >/dev/null 2>&1
                qb="$qb $(lat <$T/l.json)"
                node scripts/ort-run.mjs "$m" --input $T/in32.bin --shape 32,3,224,224 --threads $th --opt all \
                    --time $r32 >$T/o.json
                ob="$ob $(ort1 <$T/o.json)"
            done
            for b in 1 32; do
                if [ $b = 1 ]; then qm=$(med $qa); om=$(med $oa); else qm=$(med $qb); om=$(med $ob); fi
                qg=$(gops $macs $b $qm) og=$(gops $macs $b $om)
                printf '%-17s %-5s %7s %5s %10s %10s %6s %8s %8s %6s %6s\n' $name $kind $th $b "$qm" "$om" \
                    "$(python3 -c "print('%.2f' % ($qm/$om))")" "$qg" "$og" "$(pct $qg $kind $th)" "$(pct $og $kind $th)"
            done
        done
    done
}

printf '%-17s %-5s %7s %5s %10s %10s %6s %8s %8s %6s %6s\n' model kind threads batch qtool_ms ort_ms ratio q_GOP/s \
    ort_GOP/s q_pk ort_pk
for name in $MODELS; do
    case $name in
    mobilenet_v1_075)
        bench_model $name $S/models/mobilenet_v1_075.onnx $S/models/mobilenet_v1_075_bn.onnx \
            --classes $S/data/imagenet_classes.txt --crop 224 --mean 0.5 --std 0.5 ;;
    mobilenet_v2)
        bench_model $name $S/models/mobilenet_v2.onnx $S/models/mobilenet_v2.onnx \
            --classes $S/data/imagenet_classes.txt --preset imagenet ;;
    resnet18 | vit_b_32)
        if ! /usr/bin/python3 scripts/gen-zoo.py "$Z" --only $name >$T/zoo.log 2>&1; then
            echo "bench: $name: scripts/gen-zoo.py failed (needs Debian's python3-torch/torchvision): skipped"
            continue
        fi
        bench_model $name $Z/$name.onnx $Z/$name.onnx --preset imagenet ;;
    *) echo "bench: unknown model $name" >&2; exit 2 ;;
    esac
done
echo "ratio = qtool / ONNX Runtime on the same file and inputs (goal <= 1.0); GOP/s = 2 x MACs x batch / time"
echo "(GFLOP/s for float rows, GOP/s for int8 rows; MACs of the Conv/Gemm/MatMul nodes, scripts/bench-macs.py)"
echo "q_pk, ort_pk = share of the measured peak of the cores used: $PEAK_F GFLOP/s float, $PEAK_I GOP/s int8 ($PEAK_ISA) a core"
cat <<'EOF2'
(scripts/bench-peak.c: FMA and vpdpbusd chains on one core, multiply-accumulate units alone; a CPU
with AMX has a faster int8 unit than this peak counts.) What bounds
the rest, from per-node timings and perf profiles (README, "Measured"): float 1x1 convolutions run
at 100-160 GFLOP/s of the ~200 peak (6 x 64 register tiles over NCHW planes; 14x14 and 7x7 maps
fill 196 of 208 and 49 of 64 lanes); ResNet18's 3x3 layers go through im2col (~17% of its float
time) and its 7x7 layers (512 channels, 9.4 MB of weights each) stream their weights at batch 1;
ViT-B/32's float MatMuls run at ~90 GFLOP/s and its out-projection Gemms at ~45 (the dot-product
form); int8 ViT-B/32 runs 25 MatMuls and 12 Gemms whose output is not quantized in float (ONNX
Runtime fuses them to MatMulIntegerToFloat and QGemm), 80 of its 139 ms; int8 ResNet18 reaches
~30% of the vpdpbusd peak against ONNX Runtime's 50-63% (input packing and im2col, not profiled
further).
EOF2
[ "${BENCH_EXTRA:-1}" = 0 ] && exit 0 # the table only

# Calibration: qtool calib against PyTorch 1.13 eager PTQ (per-channel weights,
# HistogramObserver activations; scripts/bench-ptq.py) on the same images,
# both at 2 threads, wall time including image decoding. Then qtool's peak RSS
# calibrating on N and on 4N images (must not grow with the image count).
N=${BENCH_CALIB_N:-128}
MB=$S/models/mobilenet_v1_075.onnx
rss() { # rss SECONDS_FILE CMD...: runs CMD, prints its peak RSS in MiB, writes its wall time
    out=$1; shift
    python3 -c '
import resource, subprocess, sys, time
t = time.perf_counter()
r = subprocess.run(sys.argv[2:], stdout=subprocess.DEVNULL)
open(sys.argv[1], "w").write("%.3f" % (time.perf_counter() - t))
print("%.1f" % (resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024))
sys.exit(r.returncode)' "$out" "$@"
}
if [ -f "$S/models/mobilenet_v1.py" ] && /usr/bin/python3 -c 'import torch, torchvision' 2>/dev/null; then
    printf '\n%-28s %10s %10s %8s\n' "calibration ($N images)" qtool_s torch_s speedup
    qs=""; ts=""
    for r in $(seq "$ROUNDS"); do
        rss $T/qs $Q calib "$MB" $PP --limit $N --observer mse --threads 2 -q -o $T/cq.onnx >/dev/null
        qs="$qs $(cat $T/qs)"
        ts="$ts $(/usr/bin/python3 scripts/bench-ptq.py "$S" $N 2 | python3 -c 'import json,sys; print(json.load(sys.stdin)["seconds"])')"
    done
    qm=$(med $qs); tm=$(med $ts)
    printf '%-28s %10s %10s %8s\n' "mse / Histogram, 2 threads" "$qm" "$tm" "$(python3 -c "print('%.2f' % ($tm/$qm))")"
else
    echo "bench: PyTorch or $S/models/mobilenet_v1.py absent: calibration comparison skipped"
fi
r1=$(rss $T/t1 $Q calib "$MB" $PP --limit $N --observer entropy --threads 2 -q -o $T/c1.onnx)
r4=$(rss $T/t4 $Q calib "$MB" $PP --limit $((4 * N)) --observer entropy --threads 2 -q -o $T/c4.onnx)
printf '\n%-28s %10s %10s %8s\n' "calib peak RSS (MiB)" "$N img" "$((4 * N)) img" ratio
printf '%-28s %10s %10s %8s\n' "entropy, 2 threads" "$r1" "$r4" "$(python3 -c "print('%.3f' % ($r4/$r1))")"

# QAT: one training step (forward, loss, backward, update; batch 32, W8A8
# fake quantization, 2 threads) of the MobileNet, qtool qat against PyTorch
# 1.13 eager QAT (prepare_qat, onednn qconfig; scripts/bench-qat.py) in the
# same run. qtool's figure is the median step_ms of its --json log (image
# loading excluded, as in the PyTorch loop).
if [ -f "$S/models/mobilenet_v1.py" ] && /usr/bin/python3 -c 'import torch, torchvision' 2>/dev/null; then
    printf '\n%-28s %10s %10s %8s\n' "QAT step (batch 32)" qtool_ms torch_ms ratio
    qs=""; ts=""
    for r in $(seq "$ROUNDS"); do
        $Q qat "$MB" --train $D --classes $S/data/imagenet_classes.txt --crop 224 --mean 0.5 --std 0.5 \
            --epochs 1 --iters-per-epoch 4 --batch 32 --lr 1e-4 --no-augment --calib-images 32 --threads 2 -q \
            -o $T/qat.onnx --json $T/qat.json >/dev/null
        qs="$qs $(python3 -c "import json; print(json.load(open('$T/qat.json'))['epochs'][0]['step_ms'])")"
        ts="$ts $(/usr/bin/python3 scripts/bench-qat.py "$S" 32 2 3 | python3 -c 'import json,sys; print(json.load(sys.stdin)["step_ms"])')"
    done
    qm=$(med $qs); tm=$(med $ts)
    printf '%-28s %10s %10s %8s\n' "W8A8, 2 threads" "$qm" "$tm" "$(python3 -c "print('%.2f' % ($qm/$tm))")"
else
    echo "bench: PyTorch or $S/models/mobilenet_v1.py absent: QAT step comparison skipped"
fi
