#!/bin/sh
# t-bad.sh: the broken-input corpus (testdata/bad/, written by
# scripts/gen-bad.py) and the fault cases: every case gets its exact exit
# code (man qtool(1): 1 runtime/I/O, 2 usage, 3 unsupported model, 4 bad
# data, 5 malformed model), a one-line message naming the file, node or
# tensor, and leaves no output file and no temporary file behind. Inputs
# that are odd but valid (16-bit grey, 1x1 with --resize, all-zero weights,
# constant activations, an empty class folder) must succeed with usable
# output. Cases covered elsewhere (not repeated here):
#   t-cli.sh   missing model (1), text / empty / half-truncated model (5),
#              protobuf with a 2^62 declared length (5), nesting 600 deep (5)
#   t-calib.sh NaN weights (5), --config naming an unknown node (2),
#              output in a missing directory (1), in a read-only one (1, not as root)
#   t-eval.sh  empty or missing data folder (4, 1), corrupt PNG (4),
#              image of the wrong size (4), 3 channels for a grey model (2)
#   t-qat.sh   checkpoint of other settings (4), unlabeled data with --labels (4)
# Fuzzer regressions (testdata/bad/fuzz-*) are replayed: models through inspect, quant_info.json files through export.
. scripts/testlib.sh
B=testdata/bad
D=testdata/fmnist
PP="--preset mnist -q"
ORT="node scripts/ort-run.mjs"
O=$TMP/out/o.onnx
mkdir -p $TMP/out

# clean: no output and no temporary file left in the output folder
clean() { check "  no output, no temporary file" sh -c "test -z \"\$(ls -A $TMP/out)\""; }

# bad CODE MESSAGE WHAT CMD...: exit CODE, MESSAGE in the one-line error, nothing written
bad() {
    code=$1 msg=$2 what=$3
    shift 3
    expect_fail "$code" "$what" "$@"
    check "  says \"$msg\"" grep -qF -- "$msg" "$_out"
    check "  one line" test "$(wc -l <"$_out")" -eq 1
    clean
}

expect_ok "gen-bad.py reproduces testdata/bad byte for byte" python3 scripts/gen-bad.py $TMP/gen
check "  same files" sh -c "for f in $TMP/gen/*; do cmp -s \$f $B/\$(basename \$f) || exit 1; done"
expect_ok "the unbroken model loads" $QTOOL inspect $B/ok.onnx

# ---- models: load and graph checks (calib, so nothing may be written) ----
calib() { $QTOOL calib "$1" --data $D/calib $PP -o $O --limit 8; }
bad 5 "is not a valid ONNX file (length-delimited field runs past the end" "truncated model" calib $B/truncated.onnx
bad 5 "runs past the end of the file" "bit flip: graph length" calib $B/bitflip-length.onnx
bad 5 "initializer 'W' holds 72 bytes of data but its dims [2,1,3,3] need 18" "bit flip: weight type" \
    calib $B/bitflip-dtype.onnx
bad 3 "unsupported operator 'Rel}' (node 'relu')" "bit flip: op type" calib $B/bitflip-optype.onnx
bad 5 "initializer 'W' has dims [2147483648,2147483648,2147483648,8] whose size overflows" "dims product overflows" \
    calib $B/dims-overflow.onnx
bad 5 "initializer 'W' holds 68 bytes of data but its dims [2,1,3,3] need 72" "initializer shorter than its dims" \
    calib $B/short-init.onnx
bad 5 "initializer 'W' has a negative dim" "negative dim" calib $B/negative-dim.onnx
bad 5 "initializer 'W' has 9 dims (at most 8)" "nine dims" calib $B/nine-dims.onnx
bad 5 "graph has a cycle through node 'relu' (Relu)" "graph with a cycle" calib $B/cycle.onnx
bad 5 "node 'relu' (Relu) reads 'nowhere', which is not defined" "dangling input" calib $B/dangling.onnx
bad 5 "tensor 'r' is defined twice" "tensor with two producers" calib $B/two-producers.onnx
bad 5 "graph output 'z' is not defined" "undefined graph output" calib $B/missing-output.onnx
bad 5 "node 'concat' (Concat): attribute 'axis' is missing" "missing required attribute" calib $B/missing-attr.onnx
bad 5 "node 'add' (Add): has no output 0" "node without its output 0" calib $B/empty-node-output.onnx
bad 3 "uses ai.onnx opset 99; qtool supports opsets 7 to 21" "opset 99" calib $B/opset99.onnx
bad 3 "initializer 'B' keeps its data in an external file (not supported)" "external data" calib $B/external-data.onnx
bad 1 "node 'conv' (Conv): output shape [1,2,65536,65536] needs 34359738368 bytes, more than the memory limit" \
    "activations larger than memory" env QT_MEM_LIMIT_MB=4096 $QTOOL calib $B/huge-activation.onnx --data $D/calib \
    $PP -o $O --limit 8
bad 1 "more than the memory limit (1 MiB)" "real model over QT_MEM_LIMIT_MB=1" \
    env QT_MEM_LIMIT_MB=1 $QTOOL calib $D/model_bn.onnx --data $D/calib $PP -o $O --batch 256
for f in $B/fuzz-onnx-*; do
    [ -f "$f" ] || continue
    $QTOOL inspect "$f" >"$_out" 2>&1
    rc=$?
    check "fuzzer regression $(basename "$f"): exit $rc is 0 or a model error (3, 5), no crash" \
        sh -c "case $rc in 0|3|5) exit 0;; *) exit 1;; esac"
done
for f in $B/fuzz-qinfo-*; do # quant_info.json regressions, through export
    [ -f "$f" ] || continue
    expect_fail 4 "fuzzer regression $(basename "$f"): export refuses it" $QTOOL export $D/model_bn.onnx \
        --quant-info "$f" -o $O
    check "  no output" test ! -e $O
done

# scales_ok Q.json: every tensor's scale in quant_info.json is positive and finite
scales_ok() {
    python3 -c "
import json, math, sys
for t in json.load(open(sys.argv[1]))['tensors']:
    for s in t['scale']:
        assert s > 0 and math.isfinite(s), (t['name'], s)" "$1"
}

# ---- weights ----------------------------------------------------------------
python3 - $D/model_bn.onnx $TMP <<'PY'
import struct, sys
sys.path.insert(0, "scripts")
from onnxedit import map_float_initializers
src, tmp = sys.argv[1], sys.argv[2]
ZERO = ("stem.0.weight", "down.0.weight", "res_conv1.weight", "res_conv2.weight", "dw.0.weight", "pw.0.weight", "fc.weight")
map_float_initializers(src, tmp + "/inf.onnx", lambda name, i, v: float("inf") if i == 3 else v, first_only=True)
map_float_initializers(src, tmp + "/zero.onnx", lambda name, i, v: 0.0 if name in ZERO else v)
PY
bad 5 "weight 'stem.0.weight' has NaN or infinite values" "Inf weights" $QTOOL calib $TMP/inf.onnx --data $D/calib $PP -o $O --limit 8
expect_ok "all-zero weights are quantized" $QTOOL calib $TMP/zero.onnx --data $D/calib $PP -o $TMP/z.onnx --limit 16
check "  every scale is positive and finite" scales_ok $TMP/z.json
expect_ok "  ONNX Runtime loads it" $ORT $TMP/z.onnx --check-load

# ---- images -------------------------------------------------------------------
# folders of the model's size (28x28 grey) with one odd file each
mkdir -p $TMP/img
dir() { # name file...: a flat folder: 4 good images + the files
    mkdir -p $TMP/img/$1
    for i in 1 2 3 4; do cp $B/grey28.png $TMP/img/$1/good$i.png; done
    n=$1
    shift
    for f in "$@"; do cp "$f" $TMP/img/$n/; done
    echo $TMP/img/$n
}
bad 4 "bad-crc.png' is not a valid PNG (IDAT: CRC error)" "PNG with a bad CRC" \
    $QTOOL calib $D/model.onnx --data "$(dir crc $B/bad-crc.png)" $PP -o $O
bad 4 "truncated-idat.png' is not a valid PNG" "PNG with a truncated IDAT" \
    $QTOOL calib $D/model.onnx --data "$(dir idat $B/truncated-idat.png)" $PP -o $O
bad 4 "huge-header.png' is too large (100000x100000)" "PNG declaring 100000x100000" \
    $QTOOL calib $D/model.onnx --data "$(dir huge $B/huge-header.png)" $PP -o $O
bad 4 "one-pixel.png' is 1x1" "1x1 image without resizing" \
    $QTOOL calib $D/model.onnx --data "$(dir one $B/one-pixel.png)" $PP -o $O
expect_ok "1x1 image with --resize 28" $QTOOL calib $D/model.onnx --data $TMP/img/one $PP --resize 28 -o $TMP/one.onnx
bad 4 "small.png' is 20x20" "folder of mixed sizes" \
    $QTOOL calib $D/model.onnx --data "$(dir mixed $B/small.png)" $PP -o $O
printf 'not an image' >$TMP/txt.png
bad 4 "txt.png' is neither PNG nor JPEG" "text file named .png" \
    $QTOOL calib $D/model.onnx --data "$(dir txt $TMP/txt.png)" $PP -o $O
expect_ok "16-bit grey PNG" $QTOOL calib $D/model.onnx --data "$(dir g16 $B/grey16.png)" $PP -o $TMP/g16.onnx
cp $B/grey28.png $TMP/g8.png
expect_ok "  the same calibration as its 8-bit twin" $QTOOL calib $D/model.onnx --data "$(dir g8 $TMP/g8.png)" $PP \
    -o $TMP/g8.onnx
check "  byte-identical models" cmp -s $TMP/g16.onnx $TMP/g8.onnx
mkdir -p $TMP/img/cls/a $TMP/img/cls/b $TMP/img/cls/c
cp $B/grey28.png $TMP/img/cls/a/ && cp $B/grey28.png $TMP/img/cls/c/
expect_ok "empty class folder: accepted, keeps its label index" $QTOOL eval $D/model.onnx --data $TMP/img/cls $PP \
    --latency-runs 0 --predictions $TMP/cls.csv
check "  the image of c has label 2" grep -q "c/grey28.png,2," $TMP/cls.csv
mkdir -p $TMP/img/only/a $TMP/img/only/b
bad 4 "no images (.png, .jpg, .jpeg) in" "only empty class folders" \
    $QTOOL calib $D/model.onnx --data $TMP/img/only $PP -o $O
if [ "$(id -u)" != 0 ]; then
    dir unread >/dev/null && cp $B/grey28.png $TMP/img/unread/locked.png && chmod 000 $TMP/img/unread/locked.png
    bad 1 "cannot open '$TMP/img/unread/locked.png': Permission denied" "unreadable image" \
        $QTOOL calib $D/model.onnx --data $TMP/img/unread $PP -o $O
    chmod 644 $TMP/img/unread/locked.png
else
    skip "running as root: unreadable files are readable"
fi

# constant activations: all-black images give every activation a zero range
mkdir -p $TMP/img/black
for i in 1 2 3 4 5 6 7 8; do cp $B/all-black.png $TMP/img/black/$i.png; done
expect_ok "constant activations (all-black images)" $QTOOL calib $D/model_bn.onnx --data $TMP/img/black $PP \
    -o $TMP/black.onnx
check "  every scale is positive and finite" scales_ok $TMP/black.json
expect_ok "  ONNX Runtime loads it" $ORT $TMP/black.onnx --check-load

# ---- --config JSON ----------------------------------------------------------------
printf '{"layers": ' >$TMP/trunc.json
bad 4 "trunc.json' is not valid JSON" "truncated --config" \
    $QTOOL calib $D/model.onnx --data $D/calib $PP -o $O --config $TMP/trunc.json
echo '{"layers": [1, 2]}' >$TMP/arr.json
bad 4 "\"layers\" must be an object of node names" "--config layers as an array" \
    $QTOOL calib $D/model.onnx --data $D/calib $PP -o $O --config $TMP/arr.json
echo '{"layers": {"/fc/Gemm": {"wbits": 9}}}' >$TMP/w9.json
bad 4 "layer '/fc/Gemm': wbits must be 2..8" "--config wbits 9" \
    $QTOOL calib $D/model.onnx --data $D/calib $PP -o $O --config $TMP/w9.json

# ---- outputs --------------------------------------------------------------------
bad 1 "cannot write '$TMP/out': Is a directory" "output path is a directory" \
    $QTOOL calib $D/model.onnx --data $D/calib $PP -o $TMP/out --limit 8
if [ "$(id -u)" = 0 ] && mkdir -p $TMP/full && mount -t tmpfs -o size=64k tmpfs $TMP/full 2>/dev/null; then
    bad 1 ": No space left on device" "full disk (64 KiB tmpfs)" \
        $QTOOL calib $D/model.onnx --data $D/calib $PP -o $TMP/full/q.onnx --limit 8
    check "  the full file system holds nothing" test -z "$(ls -A $TMP/full)"
    umount $TMP/full
else
    skip "full disk: needs root and a tmpfs mount (not available here)"
fi
done_testing
