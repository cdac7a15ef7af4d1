#!/bin/sh
# same-output.sh [BASE]: a refactor changes no output. Builds commit BASE
# (default 7348605, where the issue-17 refactor started) from `git archive`
# into build/same-output/BASE (kept, so later runs reuse it), builds the
# working tree, runs the same fixed set of calib, finetune, qat, export and
# eval commands with both binaries on testdata/fmnist and on
# ../shared/models/mobilenet_v1_075.onnx (small --limit), and compares every
# file they write byte for byte (cmp), and their exit codes. Only JSON
# fields that hold wall times (seconds, latency, images/s, started_at) are
# removed before comparing; everything else must be identical.
# Prints one line per command and "same-output: N files identical" or the
# differences; exits 1 on any difference. Not part of `make check` (a few
# minutes on the shared 2-core machine). SKIP_MOBILENET=1 skips ../shared.
set -eu
BASE=${1:-7348605}
ROOT=$(git rev-parse --show-toplevel)
cd "$ROOT"
SHA=$(git rev-parse --short=12 "$BASE^{commit}")
BDIR=$ROOT/build/same-output/$SHA
J=${JOBS:-2}

if [ ! -x "$BDIR/qtool" ]; then
    echo "same-output: building $BASE ($SHA) in $BDIR" >&2
    rm -rf "$BDIR" && mkdir -p "$BDIR"
    git archive "$SHA" | tar -x -C "$BDIR"
    make -C "$BDIR" -j"$J" qtool >"$BDIR/build.log" 2>&1 || { tail -20 "$BDIR/build.log"; exit 1; }
fi
echo "same-output: building the working tree" >&2
make -j"$J" qtool >/dev/null
OLD=$BDIR/qtool
NEW=$ROOT/qtool
T=$(mktemp -d /tmp/same-output.XXXXXX)
trap 'rm -rf "$T"' EXIT INT TERM
mkdir -p "$T/a" "$T/b"

D=$ROOT/testdata/fmnist
PP="--preset mnist -q --threads 2"
S=$ROOT/../shared
M=$S/models/mobilenet_v1_075.onnx
MP="--data $S/data/imagenet-dev --classes $S/data/imagenet_classes.txt --crop 224 --mean 0.5 --std 0.5 -q --threads 2"

# one command per line: NAME ARGS... ; output paths are relative to the run
# directory, later commands may read files the earlier ones wrote
CMDS=$(cat <<EOF
c-default       calib $D/model_bn.onnx --data $D/calib $PP --limit 96 -o c1.onnx --json c1r.json
c-folded        calib $D/model.onnx --data $D/calib $PP --limit 64 -o c2.onnx
c-biascorr      calib $D/model_bn.onnx --data $D/calib $PP --limit 64 --bias-correction -o c3.onnx
c-bnre-w4       calib $D/model_bn.onnx --data $D/calib $PP --limit 64 --bn-reestimate --wbits 4 -o c4.onnx
c-pertensor     calib $D/model_bn.onnx --data $D/calib $PP --limit 64 --per-tensor --observer minmax -o c5.onnx
c-entropy-a4    calib $D/model_bn.onnx --data $D/calib $PP --limit 64 --observer entropy --abits 4 --keep-first-last 8 -o c6.onnx
c-mse-narrow    calib $D/model_bn.onnx --data $D/calib $PP --limit 32 --observer mse --narrow-range --reduce-range -o c7.onnx
c-nofuse        calib $D/model_bn.onnx --data $D/calib $PP --limit 32 --no-fuse --exclude-op Add -o c8.onnx
c-nofold        calib $D/model_bn.onnx --data $D/calib $PP --limit 32 --no-fold-bn -o c9.onnx
c-tensorrt      calib $D/model_bn.onnx --data $D/calib $PP --limit 64 --profile tensorrt -o p1.onnx
c-ortarm        calib $D/model_bn.onnx --data $D/calib $PP --limit 64 --profile ort-arm -o p2.onnx
c-pow2          calib $D/model_bn.onnx --data $D/calib $PP --limit 64 --profile pow2 -o p3.onnx
c-intonly       calib $D/model_bn.onnx --data $D/calib $PP --limit 64 --profile int-only -o p4.onnx
c-dry           calib $D/model_bn.onnx --data $D/calib $PP --limit 8 --dry-run --json dry.json
f-adaquant      finetune $D/model_bn.onnx --data $D/calib $PP --limit 32 --iters 12 --wbits 4 -o f1.onnx --json f1r.json
f-adaround      finetune $D/model_bn.onnx --data $D/calib $PP --limit 32 --iters 12 --wbits 4 --method adaround -o f2.onnx --json f2r.json
f-par-a4        finetune $D/model_bn.onnx --data $D/calib $PP --limit 32 --iters 8 --wbits 4 --abits 4 --mode parallel --bias-correction -o f3.onnx
f-bnre          finetune $D/model.onnx --data $D/calib $PP --limit 32 --iters 8 --wbits 4 --bn-reestimate --fixed-act-steps -o f4.onnx
q-w4a4          qat $D/model.onnx --train $D/calib --val $D/test $PP --wbits 4 --abits 4 --epochs 1 --lr 0.001 --no-augment --calib-images 64 --batch 32 -o q1.onnx --json q1r.json
q-bn-adam       qat $D/model_bn.onnx --train $D/calib $PP --wbits 4 --epochs 1 --iters-per-epoch 3 --optimizer adam --relative-lr --freeze-bn-after 1 --calib-images 32 --batch 16 -o q2.onnx
q-distill       qat $D/model_bn.onnx --train $D/calib $PP --distill --epochs 1 --iters-per-epoch 2 --calib-images 32 --batch 16 --weight-scale minmax -o q3.onnx
q-init          qat $D/model_bn.onnx --train $D/calib $PP --init c1.json --epochs 1 --iters-per-epoch 2 --batch 16 -o q4.onnx
x-qdq           export $D/model_bn.onnx --quant-info c1.json -o x1.onnx -q
x-qop           export $D/model_bn.onnx --quant-info c1.json -o x2.onnx --format qoperator -q
x-qop-contrib   export $D/model_bn.onnx --quant-info c1.json -o x3.onnx --format qoperator --contrib -q
x-float         export $D/model_bn.onnx --quant-info f1.json -o x4.onnx --format float -q
x-profile       export $D/model_bn.onnx --quant-info p1.json -o x5.onnx --profile tensorrt -q
x-qat           export $D/model.onnx --quant-info q1.json -o x6.onnx --format qoperator -q
x-intonly       export $D/model_bn.onnx --quant-info p4.json -o x7.onnx -q
e-report        eval c1.onnx --data $D/test $PP --limit 120 --latency-runs 0 --ref $D/model_bn.onnx --json e1.json --save-outputs e1.bin --save-inputs e1in.bin --predictions e1.csv --report rep1 --report-images 24
e-simulate      eval f2.onnx --data $D/test $PP --limit 100 --latency-runs 0 --simulate --ref $D/model_bn.onnx --json e2.json --save-outputs e2.bin
e-qop           eval x3.onnx --data $D/test $PP --limit 100 --latency-runs 0 --json e3.json --save-outputs e3.bin
e-float         eval x4.onnx --data $D/test $PP --limit 100 --latency-runs 0 --json e4.json --report rep4 --ref $D/model.onnx --report-images 16
e-w4-report     eval c4.onnx --data $D/test $PP --limit 64 --latency-runs 0 --ref $D/model_bn.onnx --report rep5 --report-images 16 --json e5.json
e-bad           eval c1.onnx --data $ROOT/testdata/images $PP --latency-runs 0 --json e6.json
EOF
)
if [ -z "${SKIP_MOBILENET:-}" ] && [ -f "$M" ]; then
CMDS="$CMDS
$(cat <<EOF
m-calib         calib $M $MP --limit 24 -o mc1.onnx --json mc1r.json
m-calib-bc      calib $M $MP --limit 16 --bias-correction --per-tensor -o mc2.onnx
m-calib-bnre    calib $M $MP --limit 16 --bn-reestimate --wbits 4 --profile tensorrt -o mc3.onnx
m-adaquant      finetune $M $MP --limit 8 --iters 3 --batch 4 --wbits 4 -o mf1.onnx --json mf1r.json
m-adaround      finetune $M $MP --limit 8 --iters 3 --batch 4 --wbits 4 --method adaround -o mf2.onnx
m-qat           qat $M --train $S/data/imagenet-dev --classes $S/data/imagenet_classes.txt --crop 224 --mean 0.5 --std 0.5 -q --threads 2 --wbits 4 --epochs 1 --iters-per-epoch 2 --batch 4 --calib-images 8 --no-augment -o mq1.onnx
m-x-qop         export $M --quant-info mc1.json -o mx1.onnx --format qoperator --contrib -q
m-x-float       export $M --quant-info mf1.json -o mx2.onnx --format float -q
m-x-profile     export $M --quant-info mc3.json -o mx3.onnx --profile tensorrt -q
m-eval          eval mc1.onnx $MP --limit 32 --latency-runs 0 --ref $M --json me1.json --save-outputs me1.bin --report mrep --report-images 8
m-eval-qop      eval mx1.onnx $MP --limit 16 --latency-runs 0 --json me2.json --save-outputs me2.bin
EOF
)"
fi

# JSON without wall-time fields: keys naming seconds, latency, rates, dates
strip_json() {
    python3 - "$1" <<'PY'
import json, re, sys
bad = re.compile(r'(^|_)(seconds|secs|time|times|latency|ms|elapsed|date|per_s|images_per_s|ips|throughput|wall)($|_)|_s$|_ms$|_at$', re.I)
def walk(v):
    if isinstance(v, dict):
        return {k: walk(x) for k, x in v.items() if not bad.search(k)}
    if isinstance(v, list):
        return [walk(x) for x in v]
    return v
try:
    d = json.load(open(sys.argv[1]))
except Exception:
    sys.stdout.write(open(sys.argv[1], errors='replace').read()); sys.exit(0)
json.dump(walk(d), sys.stdout, sort_keys=True, indent=1)
PY
}


echo "$CMDS" | while read -r name args; do
    [ -n "$name" ] || continue
    ra=0; rb=0
    (cd "$T/a" && eval "$OLD $args" >"$name.stdout" 2>"$name.stderr") || ra=$?
    (cd "$T/b" && eval "$NEW $args" >"$name.stdout" 2>"$name.stderr") || rb=$?
    rm -f "$T/a/$name.stdout" "$T/b/$name.stdout" "$T/a/$name.stderr" "$T/b/$name.stderr"
    if [ "$ra" != "$rb" ]; then
        echo "DIFF  $name: exit $ra (base) vs $rb (new)"
        echo x >>"$T/fails"
    else
        echo "ran   $name (exit $ra)"
    fi
done

n=0
for f in $(cd "$T/a" && find . -type f | sort); do
    n=$((n + 1))
    if [ ! -f "$T/b/$f" ]; then
        echo "DIFF  $f: only written by the base"; echo x >>"$T/fails"; continue
    fi
    case $f in
    *.json)
        strip_json "$T/a/$f" >"$T/sa.json"; strip_json "$T/b/$f" >"$T/sb.json"
        cmp -s "$T/sa.json" "$T/sb.json" || { echo "DIFF  $f"; diff "$T/sa.json" "$T/sb.json" | head -10; echo x >>"$T/fails"; } ;;
    *)
        cmp -s "$T/a/$f" "$T/b/$f" || { echo "DIFF  $f: $(cmp "$T/a/$f" "$T/b/$f" 2>&1 | head -1)"; echo x >>"$T/fails"; } ;;
    esac
done
for f in $(cd "$T/b" && find . -type f | sort); do
    [ -f "$T/a/$f" ] || { echo "DIFF  $f: only written by the new binary"; echo x >>"$T/fails"; }
done
if [ -s "$T/fails" ]; then
    echo "same-output: $(wc -l <"$T/fails") differences against $BASE ($n files written by the base)"
    exit 1
fi
echo "same-output: $n files identical to $BASE's ($(echo "$CMDS" | grep -c .) commands)"
