#!/bin/sh
# bench.sh (make bench): qtool against ONNX Runtime (onnxruntime-node) on the
# same ONNX file and the same preprocessed images, interleaved in one run:
# the ImageNet MobileNetV1-0.75 of ../shared/models, float, batch 1 latency
# and batch 32 time per batch (each the median of timed runs after warm-up,
# qtool's by eval --latency-batch), at 1 and 2 threads. Prints a table of
# times and qtool/ORT ratios (lower is better).
# Then calibration and one QAT training step against PyTorch 1.13 eager mode.
set -eu
Q=${QTOOL:-./qtool}
S=${QT_SHARED:-../shared}
M=${BENCH_MODEL:-$S/models/mobilenet_v1_075.onnx}
D=$S/data/imagenet-dev
RUNS=${BENCH_RUNS:-30}
ROUNDS=${BENCH_ROUNDS:-3}
if [ ! -f "$M" ]; then echo "bench: $M is absent; nothing to measure"; exit 0; fi
sh scripts/setup-node.sh >/dev/null
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
PP="--data $D --classes $S/data/imagenet_classes.txt --crop 224 --mean 0.5 --std 0.5"
$Q eval "$M" $PP --limit 32 --latency-runs 0 -q --save-inputs $T/in32.bin >/dev/null
head -c $((3 * 224 * 224 * 4)) $T/in32.bin >$T/in1.bin
# qtool's time of one run at batch 1 or 32: median of timed runs after three
# warm-up runs, as ort-run.mjs --time measures ONNX Runtime's
lat() { python3 -c 'import json,sys; print(json.load(sys.stdin)["latency_ms_median"])'; }
med() { python3 -c "import sys,statistics; print('%.3f' % statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
printf '%-8s %-6s %12s %12s %8s\n' threads batch qtool_ms ort_ms ratio
for th in 1 2; do
    q1=""; o1=""; q32=""; o32=""
    for r in $(seq "$ROUNDS"); do
        q1="$q1 $($Q eval "$M" $PP --limit 1 --threads $th --latency-runs $RUNS -q --json - 2>/dev/null | lat)"
        q32="$q32 $($Q eval "$M" $PP --limit 1 --threads $th --latency-runs 5 --latency-batch 32 -q --json - 2>/dev/null | lat)"
        o=$(node scripts/ort-run.mjs "$M" --input $T/in1.bin --shape 1,3,224,224 --threads $th --opt all --time $RUNS)
        o1="$o1 $(echo "$o" | python3 -c 'import json,sys; print([json.loads(l) for l in sys.stdin if "median_ms" in l][0]["median_ms"])')"
        o=$(node scripts/ort-run.mjs "$M" --input $T/in32.bin --shape 32,3,224,224 --threads $th --opt all --time 5)
        o32="$o32 $(echo "$o" | python3 -c 'import json,sys; print([json.loads(l) for l in sys.stdin if "median_ms" in l][0]["median_ms"])')"
    done
    for b in 1 32; do
        if [ $b = 1 ]; then qm=$(med $q1); om=$(med $o1); else qm=$(med $q32); om=$(med $o32); fi
        printf '%-8s %-6s %12s %12s %8s\n' $th $b "$qm" "$om" "$(python3 -c "print('%.2f' % ($qm/$om))")"
    done
done

# Int8: qtool's QDQ MobileNet (qtool calib on the BatchNormalization model)
# run by `qtool eval` on integer kernels against ONNX Runtime on the same
# file (it fuses the QDQ pairs into QLinearConv/QGemm), batch 1 latency and
# batch 32 time per batch, 1 and 2 threads, runs interleaved; then qtool int8
# against qtool float (the float model) and the --simulate path.
MQ=$S/models/mobilenet_v1_075_bn.onnx
if [ -f "$MQ" ]; then
    $Q calib "$MQ" $PP --limit 64 --threads 2 -q -o $T/mq.onnx >/dev/null
    # qlat MODEL THREADS [flags]: qtool's batch-1 and batch-32 run times
    qlat() {
        m=$1 t=$2
        shift 2
        echo "$($Q eval "$m" $PP --limit 1 --threads $t --latency-runs $RUNS -q "$@" --json - 2>/dev/null | lat)" \
            "$($Q eval "$m" $PP --limit 1 --threads $t --latency-runs 5 --latency-batch 32 -q "$@" --json - 2>/dev/null | lat)"
    }
    ort1() { python3 -c 'import json,sys; print([json.loads(l) for l in sys.stdin if "median_ms" in l][0]["median_ms"])'; }
    printf '\n%-26s %-6s %10s %10s %7s %10s %8s %10s\n' "int8 (QDQ MobileNet)" batch qtool_ms ort_ms ratio float_ms speedup sim_ms
    for th in 1 2; do
        qa=""; qb=""; oa=""; ob=""; fa=""; fb=""; sa=""; sb=""
        for r in $(seq "$ROUNDS"); do
            set -- $(qlat $T/mq.onnx $th)
            qa="$qa $1"; qb="$qb $2"
            oa="$oa $(node scripts/ort-run.mjs $T/mq.onnx --input $T/in1.bin --shape 1,3,224,224 --threads $th --opt all --time $RUNS | ort1)"
            ob="$ob $(node scripts/ort-run.mjs $T/mq.onnx --input $T/in32.bin --shape 32,3,224,224 --threads $th --opt all --time 5 | ort1)"
            set -- $(qlat "$M" $th)
            fa="$fa $1"; fb="$fb $2"
            set -- $(qlat $T/mq.onnx $th --simulate)
            sa="$sa $1"; sb="$sb $2"
        done
        for b in 1 32; do
            if [ $b = 1 ]; then qm=$(med $qa); om=$(med $oa); fm=$(med $fa); sm=$(med $sa)
            else qm=$(med $qb); om=$(med $ob); fm=$(med $fb); sm=$(med $sb); fi
            printf '%-26s %-6s %10s %10s %7s %10s %8s %10s\n' "$th thread(s)" $b "$qm" "$om" \
                "$(python3 -c "print('%.2f' % ($qm/$om))")" "$fm" "$(python3 -c "print('%.2f' % ($fm/$qm))")" "$sm"
        done
    done
    echo "ratio = qtool int8 / ONNX Runtime int8 (target <= 1.5, goal <= 1.0); speedup = qtool float / qtool int8"
else
    echo "bench: $MQ is absent: int8 comparison skipped"
fi

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
