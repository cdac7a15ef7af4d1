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
# Issue 21 (second hostile round), at the end: zero-sized tensors (3, naming the node), FIFOs, sockets and
# devices named like images (4, under `timeout 30`), outputs onto a FIFO, a symbolic link or a copy of
# /dev/full (1, the node still there), NaN/Inf weights through export, eval, qat and the tuned-weights
# file (5), and a bad --json/--report/--predictions/--save-*/--quant-info/weights path of every
# subcommand (1) leaving no other output.
# needs: ort python3
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
bad 3 "uses ai.onnx opset 99; qtool supports opsets 7 to 28" "opset 99" calib $B/opset99.onnx
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
expect_ok "interlaced (Adam7) PNG" $QTOOL calib $D/model.onnx --data "$(dir adam7 $B/interlaced.png)" $PP \
    -o $TMP/adam7.onnx
check "  the same calibration as its plain twin" cmp -s $TMP/adam7.onnx $TMP/g8.onnx
mkdir -p $TMP/img/latin1
for i in 1 2 3 4; do cp $B/grey28.png $TMP/img/latin1/good$i.png; done
cp $B/grey28.png "$TMP/img/latin1/$(printf 'caf\351 \377.png')" # Latin-1 bytes: not UTF-8
expect_ok "a file name that is not UTF-8" $QTOOL eval $D/model.onnx --data $TMP/img/latin1 $PP --latency-runs 0 \
    --predictions $TMP/latin1.csv
check "  it is read (5 rows)" test "$(tail -n +2 $TMP/latin1.csv | wc -l)" -eq 5
if /usr/bin/python3 -c "import PIL" 2>/dev/null; then # Debian's python3-pil writes the JPEG pair
    mkdir -p $TMP/img/jpeg/base $TMP/img/jpeg/prog
    /usr/bin/python3 - $B/grey28.png $TMP/img/jpeg <<'PY'
import sys
from PIL import Image
im = Image.open(sys.argv[1])
for i in range(4):
    im.save("%s/base/%d.jpg" % (sys.argv[2], i), quality=90)
    im.save("%s/prog/%d.jpg" % (sys.argv[2], i), quality=90, progressive=True)
PY
    expect_ok "progressive JPEG" $QTOOL calib $D/model.onnx --data $TMP/img/jpeg/prog $PP -o $TMP/prog.onnx
    expect_ok "  its baseline twin" $QTOOL calib $D/model.onnx --data $TMP/img/jpeg/base $PP -o $TMP/base.onnx
    check "  the same calibration" cmp -s $TMP/prog.onnx $TMP/base.onnx
else
    skip "progressive JPEG: needs Debian's python3-pil to write one"
fi
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

# ---- zero-sized shapes (issue 21): refused at plan time naming the node, never a signal ----
ZMSG="node 'conv' (Conv): output 'c' has the zero-sized shape"
dir z28 >/dev/null
bad 3 "$ZMSG [1,0,28,28] (qtool does not run Conv on empty tensors)" "Conv with zero output channels: calib" \
    $QTOOL calib $B/zero-out-channels.onnx --data $TMP/img/z28 $PP -o $O
bad 3 "$ZMSG [4,0,28,28]" "  eval" $QTOOL eval $B/zero-out-channels.onnx --data $TMP/img/z28 $PP --latency-runs 0 \
    --predictions $TMP/out/p.csv
bad 3 "$ZMSG [1,0,28,28]" "  calib --dry-run" $QTOOL calib $B/zero-out-channels.onnx $PP --dry-run
# inspect prints the summary it read, then the planning error
expect_fail 3 "  inspect" $QTOOL inspect $B/zero-out-channels.onnx
check "  says so" grep -qF "qtool inspect: error: $ZMSG [1,0,28,28]" "$_out"
expect_fail 3 "zero-channel Conv on constants (folded at plan time): inspect" $QTOOL inspect $B/zero-folded-conv.onnx
check "  says so" grep -qF "qtool inspect: error: $ZMSG [1,0,1,1]" "$_out"
bad 3 "node 'fc' (Gemm): output 'y' has the zero-sized shape [1,0]" "Gemm with zero output features: calib" \
    $QTOOL calib $B/zero-gemm.onnx --data $TMP/img/z28 $PP -o $O
expect_fail 3 "graph input with a zero dim: inspect" $QTOOL inspect $B/zero-input-dim.onnx
check "  says so" grep -qF "node 'conv' (Conv): input 'x' has the zero-sized shape [1,0,4,4]" "$_out"
bad 3 "input 'x' has 0 channels; qtool feeds 1 or 3" "  calib" $QTOOL calib $B/zero-input-dim.onnx \
    --data $TMP/img/z28 $PP -o $O

# ---- image folders (issue 21): only regular files are read; a FIFO must not block (timeout 30 s) ----
dir fifo >/dev/null && mkfifo $TMP/img/fifo/pipe.png
bad 4 "image '$TMP/img/fifo/pipe.png' is a FIFO, not a regular file" "FIFO named like an image: calib" \
    timeout 30 $QTOOL calib $D/model.onnx --data $TMP/img/fifo $PP -o $O
bad 4 "image '$TMP/img/fifo/pipe.png' is a FIFO, not a regular file" "  eval" \
    timeout 30 $QTOOL eval $D/model.onnx --data $TMP/img/fifo $PP --latency-runs 0 --predictions $TMP/out/p.csv
mkdir -p $TMP/img/fifocls/a $TMP/img/fifocls/b && cp $B/grey28.png $TMP/img/fifocls/a/ && mkfifo $TMP/img/fifocls/b/x.jpg
bad 4 "image '$TMP/img/fifocls/b/x.jpg' is a FIFO, not a regular file" "  in a class folder: qat" \
    timeout 30 $QTOOL qat $D/model.onnx --train $TMP/img/fifocls $PP -o $O --batch 1
dir sock >/dev/null
python3 -c "import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])" $TMP/img/sock/s.png
bad 4 "image '$TMP/img/sock/s.png' is a socket, not a regular file" "socket named like an image: calib" \
    timeout 30 $QTOOL calib $D/model.onnx --data $TMP/img/sock $PP -o $O
if [ "$(id -u)" = 0 ]; then
    dir cdev >/dev/null && mknod $TMP/img/cdev/zero.png c 1 5
    bad 4 "image '$TMP/img/cdev/zero.png' is a character device, not a regular file" \
        "character device (a copy of /dev/zero) named like an image: eval" \
        timeout 30 $QTOOL eval $D/model.onnx --data $TMP/img/cdev $PP --latency-runs 0
else
    skip "device named like an image: mknod needs root"
fi
ln -s "$(pwd)/$B/grey28.png" $TMP/img/z28/link.png
expect_ok "a symbolic link to an image is read" $QTOOL calib $D/model.onnx --data $TMP/img/z28 $PP -o $TMP/link.onnx

# ---- outputs onto what is not a regular file (issue 21): refused, exit 1, the node untouched ----
mkdir -p $TMP/dev
mkfifo $TMP/dev/fifo
bad 1 "cannot write '$TMP/dev/fifo': it is a FIFO, and qtool replaces only regular files" "calib -o onto a FIFO" \
    timeout 30 $QTOOL calib $D/model.onnx --data $D/calib $PP -o $TMP/dev/fifo --limit 8
check "  still a FIFO, nothing else written" sh -c "test -p $TMP/dev/fifo && test \"\$(ls $TMP/dev)\" = fifo"
ln -s $TMP/out/target.onnx $TMP/dev/link.onnx
bad 1 "cannot write '$TMP/dev/link.onnx': it is a symbolic link" "calib -o onto a symbolic link" \
    $QTOOL calib $D/model.onnx --data $D/calib $PP -o $TMP/dev/link.onnx --limit 8
check "  still a link" test -L $TMP/dev/link.onnx
rm $TMP/dev/link.onnx
if [ "$(id -u)" = 0 ]; then
    mknod $TMP/dev/full c 1 7 # a copy of /dev/full
    isdev() { check "  still a character device, nothing else written" \
        sh -c "test -c $TMP/dev/full && test \"\$(ls $TMP/dev | tr '\n' ' ')\" = 'fifo full '"; }
    bad 1 "cannot write '$TMP/dev/full': it is a character device, and qtool replaces only regular files" \
        "calib -o onto a character device" $QTOOL calib $D/model.onnx --data $D/calib $PP -o $TMP/dev/full --limit 8
    isdev
    bad 1 "cannot write '$TMP/dev/full': it is a character device" "calib --quant-info onto it" \
        $QTOOL calib $D/model.onnx --data $D/calib $PP -o $O --quant-info $TMP/dev/full --limit 8
    isdev
    bad 1 "cannot write '$TMP/dev/full': it is a character device" "calib --json onto it" \
        $QTOOL calib $D/model.onnx --data $D/calib $PP -o $O --json $TMP/dev/full --limit 8
    isdev
    bad 1 "cannot write '$TMP/dev/full': it is a character device" "eval --save-outputs onto it" \
        $QTOOL eval $D/model.onnx --data $D/calib $PP --limit 8 --latency-runs 0 --save-outputs $TMP/dev/full
    isdev
    bad 1 "cannot write '$TMP/dev/full': it is a character device" "eval --predictions onto it" \
        $QTOOL eval $D/model.onnx --data $D/calib $PP --limit 8 --latency-runs 0 --predictions $TMP/dev/full
    isdev
    bad 1 "cannot write '$TMP/dev/full': it is a character device" "export -o onto it" \
        $QTOOL export $D/model_bn.onnx --quant-info $TMP/z.json -o $TMP/dev/full
    isdev
else
    skip "outputs onto a character device: mknod needs root"
fi

# ---- NaN and Inf weights on every path that reads weights (issue 21) ----
python3 - $D/model_bn.onnx $TMP <<'PY'
import sys
sys.path.insert(0, "scripts")
from onnxedit import map_float_initializers
map_float_initializers(sys.argv[1], sys.argv[2] + "/nan.onnx", lambda name, i, v: float("nan") if name == "fc.weight" and i == 5 else v)
PY
FCNAN="node '/fc/Gemm' (Gemm): weight 'fc.weight' has NaN or infinite values"
expect_ok "quant_info.json of the good model" $QTOOL calib $D/model_bn.onnx --data $D/calib $PP -o $TMP/good.onnx --limit 8
# the same JSON, its checksum made to match the broken models (what a stale or edited file looks like)
python3 - $TMP/good.json $TMP <<'PY'
import hashlib, json, sys
d = json.load(open(sys.argv[1]))
for m in ("inf", "nan"):
    d["source_model"]["sha256"] = hashlib.sha256(open("%s/%s.onnx" % (sys.argv[2], m), "rb").read()).hexdigest()
    json.dump(d, open("%s/q_%s.json" % (sys.argv[2], m), "w"))
PY
bad 5 "node '/stem/stem.0/Conv' (Conv): weight 'stem.0.weight' has NaN or infinite values" \
    "export: quant_info.json matching a model with Inf weights" $QTOOL export $TMP/inf.onnx --quant-info $TMP/q_inf.json -o $O
bad 5 "$FCNAN" "export: a model with a NaN weight" $QTOOL export $TMP/nan.onnx --quant-info $TMP/q_nan.json -o $O
bad 5 "$FCNAN" "  --format float" $QTOOL export $TMP/nan.onnx --quant-info $TMP/q_nan.json -o $O --format float
bad 5 "$FCNAN" "  calib" $QTOOL calib $TMP/nan.onnx --data $D/calib $PP -o $O --limit 8
bad 5 "$FCNAN" "  finetune" $QTOOL finetune $TMP/nan.onnx --data $D/calib $PP -o $O --limit 8 --iters 1
bad 5 "$FCNAN" "  qat" $QTOOL qat $TMP/nan.onnx --train $D/calib $PP -o $O --iters-per-epoch 1
bad 5 "$FCNAN" "  eval of the float model" $QTOOL eval $TMP/nan.onnx --data $D/calib $PP --limit 8 --latency-runs 0 \
    --predictions $TMP/out/p.csv
bad 5 "$FCNAN" "  eval with it as --ref" $QTOOL eval $TMP/good.onnx --ref $TMP/nan.onnx --data $D/calib $PP --limit 8 \
    --latency-runs 0
# the tuned-weights file: a NaN in q.weights.bin whose checksum the JSON records
expect_ok "finetune writes tuned weights" $QTOOL finetune $D/model_bn.onnx --data $D/calib $PP -o $TMP/ft.onnx --limit 8 \
    --iters 1
python3 - $TMP/ft.json <<'PY'
import hashlib, json, struct, sys
j = sys.argv[1]
w = j[:-5] + ".weights.bin"
b = bytearray(open(w, "rb").read())
b[8:12] = struct.pack("<f", float("nan"))  # stem.0.weight[2]
open(w, "wb").write(b)
d = json.load(open(j))
d["tuned_weights"]["sha256"] = hashlib.sha256(b).hexdigest()
json.dump(d, open(j, "w"))
PY
bad 5 "ft.weights.bin': tuned tensor 'stem.0.weight' has NaN or infinite values" "export: NaN in the tuned weights" \
    $QTOOL export $D/model_bn.onnx --quant-info $TMP/ft.json -o $O
bad 5 "ft.weights.bin': tuned tensor 'stem.0.weight' has NaN or infinite values" "  qat --init" \
    $QTOOL qat $D/model_bn.onnx --train $D/calib $PP -o $O --iters-per-epoch 1 --init $TMP/ft.json

# ---- every output path checked before anything is written (issue 21): a bad one leaves nothing ----
M=$TMP/missing
bad 1 "cannot write '$M/x.json': No such file or directory" "calib --json in a missing folder" \
    $QTOOL calib $D/model.onnx --data $D/calib $PP -o $O --json $M/x.json --limit 8
bad 1 "cannot write '$M/q.json': No such file or directory" "calib --quant-info in a missing folder" \
    $QTOOL calib $D/model.onnx --data $D/calib $PP -o $O --quant-info $M/q.json --limit 8
mkdir -p $TMP/wdir/q.weights.bin
bad 1 "cannot write '$TMP/wdir/q.weights.bin': Is a directory" "finetune: the tuned-weights file is a directory" \
    $QTOOL finetune $D/model_bn.onnx --data $D/calib $PP -o $O --quant-info $TMP/wdir/q.json --limit 8 --iters 1
check "  no quant_info.json either" test ! -e $TMP/wdir/q.json
bad 1 "cannot write '$M/x.json': No such file or directory" "finetune --json in a missing folder" \
    $QTOOL finetune $D/model_bn.onnx --data $D/calib $PP -o $O --json $M/x.json --limit 8 --iters 1
bad 1 "cannot write '$M/x.json': No such file or directory" "qat --json in a missing folder" \
    $QTOOL qat $D/model.onnx --train $D/calib $PP -o $O --iters-per-epoch 1 --json $M/x.json
bad 1 "cannot write '$M/q.json': No such file or directory" "qat --quant-info in a missing folder" \
    $QTOOL qat $D/model.onnx --train $D/calib $PP -o $O --iters-per-epoch 1 --quant-info $M/q.json
bad 1 "cannot write '$M/e.onnx': No such file or directory" "export -o in a missing folder" \
    $QTOOL export $D/model_bn.onnx --quant-info $TMP/good.json -o $M/e.onnx
bad 1 "cannot write '$M/x.json': No such file or directory" "export --json in a missing folder" \
    $QTOOL export $D/model_bn.onnx --quant-info $TMP/good.json -o $TMP/out/e.onnx --json $M/x.json
check "  no model written" test ! -e $TMP/out/e.onnx
EV="$QTOOL eval $D/model.onnx --data $D/calib $PP --limit 8 --latency-runs 0"
bad 1 "cannot write '$M/x.json': No such file or directory" "eval --json in a missing folder (with --predictions, --save-*)" \
    $EV --json $M/x.json --predictions $TMP/out/p.csv --save-outputs $TMP/out/o.bin --save-inputs $TMP/out/i.bin
bad 1 "cannot write '$M/rep': No such file or directory" "eval --report in a missing folder" \
    $EV --ref $D/model.onnx --report $M/rep --predictions $TMP/out/p.csv
bad 1 "cannot write '$M/i.bin': No such file or directory" "eval --save-inputs in a missing folder" \
    $EV --predictions $TMP/out/p.csv --save-outputs $TMP/out/o.bin --save-inputs $M/i.bin
bad 1 "cannot write '$M/p.csv': No such file or directory" "eval --predictions in a missing folder" \
    $EV --predictions $M/p.csv --save-outputs $TMP/out/o.bin
done_testing
