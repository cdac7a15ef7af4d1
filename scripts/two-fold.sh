#!/bin/sh
# two-fold.sh CMD MODEL "PREPROCESSING" [FLAGS...]: two-fold cross-validation
# on ../shared/data/imagenet-dev (or $DATA): `qtool CMD MODEL` tuned on the
# even images and judged on the odd ones, then the other way round
# (scripts/split-imagenet.py --fold a|b), so every image is judged once by a
# model not tuned on it. Prints each fold's eval line and the figures over
# all judged images: top-1, float top-1, drop, agreement, mean loss.
# Example (issue 16's finetune row):
#   sh scripts/two-fold.sh finetune ../shared/models/mobilenet_v1_075.onnx \
#     "--classes ../shared/data/imagenet_classes.txt --crop 224 --mean 0.5 --std 0.5" --wbits 4
# QTOOL (default build/qtool), OUT (default build/two-fold) as the caller sets them.
set -eu
[ $# -ge 3 ] || { echo "usage: two-fold.sh CMD MODEL \"PREPROCESSING\" [FLAGS...]" >&2; exit 2; }
cd "$(dirname "$0")/.."
CMD=$1 M=$2 PP=$3
shift 3
QTOOL=${QTOOL:-build/qtool} DATA=${DATA:-../shared/data/imagenet-dev} OUT=${OUT:-build/two-fold}
rm -rf "$OUT" && mkdir -p "$OUT"
for f in a b; do
    python3 scripts/split-imagenet.py "$DATA" "$OUT/split-$f" --fold $f
    # shellcheck disable=SC2086
    $QTOOL "$CMD" "$M" --data "$OUT/split-$f/train" $PP "$@" -o "$OUT/$f.onnx" -q >"$OUT/$f.log" 2>&1 ||
        { echo "fold $f: qtool $CMD failed (exit $?):" >&2; tail -3 "$OUT/$f.log" >&2; exit 1; }
    # shellcheck disable=SC2086
    $QTOOL eval "$OUT/$f.onnx" --ref "$M" --data "$OUT/split-$f/hold" $PP --latency-runs 0 -q \
        --json "$OUT/$f.eval.json" >/dev/null
done
python3 - "$OUT" <<'PY'
import json, sys
n = c = r = a = l = 0
for f in "ab":
    d = json.load(open(f"{sys.argv[1]}/{f}.eval.json")); k = d["images"]
    print(f"fold {f}: {k} images, top-1 {d['top1']:.2f} (float {d['ref_top1']:.2f}), agreement {d['agreement']:.2f}%")
    n += k; c += d["top1"] * k; r += d["ref_top1"] * k; a += d["agreement"] * k; l += d["loss"] * k
print(f"both: {n} images, top-1 {c / n:.2f} (float {r / n:.2f}, drop {(r - c) / n:.2f}), "
      f"agreement {a / n:.2f}%, loss {l / n:.3f}")
PY
