#!/bin/sh
# t-json.sh: every subcommand's --json document has the envelope and the
# fields of man/qtool-json.5 with their types (and values that agree with the
# text summary); a failed run still writes the envelope with the error;
# --config carries long options (the command line wins); progress lines on a
# non-terminal stderr, none with --quiet.
# needs: python3
. scripts/testlib.sh
D=testdata/fmnist
PP="--preset mnist"

# jtypes FILE CMD key:type ...: the envelope and the given fields exist with
# these types (num, str, bool, arr, obj, null, num|null)
jtypes() {
    python3 - "$@" <<'PY'
import json, sys
f, cmd = sys.argv[1], sys.argv[2]
d = json.load(open(f))
T = {"num": (int, float), "str": str, "bool": bool, "arr": list, "obj": dict, "null": type(None)}
want = ["schema:str", "command:str", "version:str", "started_at:str", "ok:bool", "exit_code:num",
        "error:str|null", "wall_s:num"] + sys.argv[3:]
bad = []
for w in want:
    k, t = w.split(":")
    if k not in d:
        bad.append("missing " + k)
        continue
    v = d[k]
    ok = any(isinstance(v, T[x]) and not (x == "num" and isinstance(v, bool)) for x in t.split("|"))
    if not ok:
        bad.append("%s is %r, not %s" % (k, v, t))
if d.get("schema") != "qtool-%s/1" % cmd or d.get("command") != cmd:
    bad.append("schema/command %r %r" % (d.get("schema"), d.get("command")))
import re
if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", str(d.get("started_at"))):
    bad.append("started_at %r" % d.get("started_at"))
if bad:
    print("\n".join(bad))
    sys.exit(1)
PY
}

expect_ok "inspect --json" $QTOOL inspect $D/model.onnx --json $TMP/i.json
check "inspect: envelope and fields" jtypes $TMP/i.json inspect model:str producer:str ir_version:num opset:num \
    inputs:arr outputs:arr nodes:num operators:obj parameters:num parameter_bytes:num unsupported:arr \
    activation_bytes:num
check "inspect: ok, exit 0, no error" test "$(json $TMP/i.json ok)/$(json $TMP/i.json exit_code)/$(json $TMP/i.json error)" = "True/0/None"
check "inspect: node count equals the text's" test "$(json $TMP/i.json nodes)" = \
    "$($QTOOL inspect $D/model.onnx | sed -n 's/^nodes: *//p')"
check "inspect: input shape [-1, 1, 28, 28]" test "$(json $TMP/i.json inputs.0.shape)" = "[-1, 1, 28, 28]"
check "inspect: 6 Conv" test "$(json $TMP/i.json operators.Conv)" = 6

expect_ok "calib --json" $QTOOL calib $D/model_bn.onnx --data $D/calib $PP -o $TMP/q.onnx --limit 64 -q \
    --json $TMP/c.json
check "calib: envelope and fields" jtypes $TMP/c.json calib model:str output:str quant_info:str dry_run:bool \
    images:num observer:str wbits:num abits:num per_channel:bool folded_batchnorm:num fused_activations:num \
    excluded_nodes:num quantized_activations:num quantized_weights:num bias_corrected_layers:num run_s:num
check "calib: 64 images, 6 BatchNormalization folded" test "$(json $TMP/c.json images)/$(json $TMP/c.json folded_batchnorm)" = 64/6

expect_ok "finetune --json" $QTOOL finetune $D/model_bn.onnx --data $D/calib $PP -o $TMP/f.onnx --limit 32 \
    --iters 4 -q --json $TMP/f.json
check "finetune: envelope and fields" jtypes $TMP/f.json finetune layers:arr iters:num lr:num batch:num mode:str \
    seed:num threads:num images:num run_s:num
check "finetune: 7 layers with losses" python3 -c "
import json; d = json.load(open('$TMP/f.json'))
assert len(d['layers']) == 7 and all(isinstance(l['loss_before'], float) and l['loss_after'] <= l['loss_before'] for l in d['layers'])"

expect_ok "qat --json" $QTOOL qat $D/model_bn.onnx --train $D/calib $PP -o $TMP/t.onnx --iters-per-epoch 2 \
    --batch 8 --calib-images 16 -q --json $TMP/t.json
check "qat: envelope and fields" jtypes $TMP/t.json qat model:str output:str quant_info:str quantized:bool \
    interrupted:bool wbits:num abits:num seed:num calib_images:num trained_tensors:num epochs:arr run_s:num
check "qat: one epoch logged" test "$(json $TMP/t.json epochs.0.epoch)" = 1

expect_ok "eval --json" $QTOOL eval $TMP/q.onnx --data $D/test $PP --ref $D/model_bn.onnx --limit 50 \
    --latency-runs 0 -q --json $TMP/e.json
check "eval: envelope and fields" jtypes $TMP/e.json eval model:str data:str images:num labeled:num classes:num \
    top1:num top5:num loss:num ref:str ref_top1:num agreement:num sqnr_db:num model_bytes:num \
    throughput_ips:num batch:num threads:num activation_bytes:num int8_nodes:num int8_isa:str simulate:bool \
    run_s:num
check "eval: 50 images, 10 classes" test "$(json $TMP/e.json images)/$(json $TMP/e.json classes)" = 50/10

expect_ok "export --json" $QTOOL export $D/model_bn.onnx --quant-info $TMP/q.json -o $TMP/x1.onnx \
    --format qoperator --json $TMP/x.json
check "export: envelope and fields" jtypes $TMP/x.json export model:str quant_info:str output:str format:str \
    contrib:bool profile:null quantized_tensors:num tuned_tensors:num integer_nodes:num
check "export: the counts equal the text summary's" test \
    "wrote $TMP/x1.onnx (qoperator): $(json $TMP/x.json quantized_tensors) quantized tensors restored, $(json $TMP/x.json integer_nodes) integer operators" = \
    "$($QTOOL export $D/model_bn.onnx --quant-info $TMP/q.json -o $TMP/x1.onnx --format qoperator)"
check "export: some integer operators" test "$(json $TMP/x.json integer_nodes)" -gt 0
expect_ok "export --json - writes the document on stdout" sh -c \
    "$QTOOL export $D/model_bn.onnx --quant-info $TMP/q.json -o $TMP/x3.onnx --json - >$TMP/x3.json 2>$TMP/x3.err"
check "export --json -: stdout is the document, the summary on stderr" sh -c \
    "test \"\$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"format\"])' $TMP/x3.json)\" = qdq && grep -q '^wrote' $TMP/x3.err"
printf '{"not": "quant info"}' >$TMP/notq.json
expect_fail 4 "export with a bad quant_info.json" $QTOOL export $D/model_bn.onnx --quant-info $TMP/notq.json \
    -o $TMP/x4.onnx --json $TMP/x4.json
check "export failure: ok false, the exit code, no model" test \
    "$(json $TMP/x4.json ok)/$(json $TMP/x4.json exit_code)/$(test -e $TMP/x4.onnx && echo model)" = "False/4/"

# a failure writes the envelope with the error and the exit code
mkdir -p $TMP/empty
expect_fail 4 "eval of an empty folder" $QTOOL eval $D/model.onnx --data $TMP/empty $PP --json $TMP/x.json
check "failure: ok false, exit_code 4, the error message" test \
    "$(json $TMP/x.json ok)/$(json $TMP/x.json exit_code)" = "False/4"
check "failure: the error names the folder" sh -c "python3 -c \"import json; print(json.load(open('$TMP/x.json'))['error'])\" | grep -q empty"
expect_fail 1 "inspect of a missing file" $QTOOL inspect $TMP/nope.onnx --json $TMP/y.json
check "failure document for inspect" test "$(json $TMP/y.json exit_code)/$(json $TMP/y.json schema)" = "1/qtool-inspect/1"

# --config: long options by name; the command line wins
cat >$TMP/cfg.json <<'J'
{"observer": "mse", "wbits": 4, "limit": 48, "preset": "mnist", "mean": [0], "no-fuse": false,
 "per-tensor": true, "layers": {}}
J
expect_ok "calib --config" $QTOOL calib $D/model_bn.onnx --data $D/calib -o $TMP/k.onnx -q --config $TMP/cfg.json \
    --json $TMP/k.json
check "config: observer mse, wbits 4, 48 images, per tensor" test \
    "$(json $TMP/k.json observer)/$(json $TMP/k.json wbits)/$(json $TMP/k.json images)/$(json $TMP/k.json per_channel)" = "mse/4/48/False"
expect_ok "calib --config with --wbits 6 --limit 16 on the command line" $QTOOL calib $D/model_bn.onnx \
    --data $D/calib -o $TMP/k.onnx -q --wbits 6 --config $TMP/cfg.json --limit 16 --json $TMP/k2.json
check "the command line wins: wbits 6, 16 images, observer still mse" test \
    "$(json $TMP/k2.json wbits)/$(json $TMP/k2.json images)/$(json $TMP/k2.json observer)" = "6/16/mse"
expect_ok "eval --config" $QTOOL eval $D/model.onnx --data $D/test --config $TMP/cfg.json -q --latency-runs 0 \
    --json $TMP/k3.json
check "eval took limit and preset from the file" test "$(json $TMP/k3.json images)" = 48
echo '{"wbits": 4, "frobnicate": 1}' >$TMP/bad.json
expect_fail 2 "unknown key in --config" $QTOOL calib $D/model_bn.onnx --data $D/calib -o $TMP/b.onnx \
    --config $TMP/bad.json
check "the message names the key and the file" grep -q "bad.json.*frobnicate" "$_out"
echo '{"wbits": 9}' >$TMP/bad2.json
expect_fail 2 "bad value in --config" $QTOOL calib $D/model_bn.onnx --data $D/calib -o $TMP/b.onnx \
    --config $TMP/bad2.json
echo '{"per-tensor": 1}' >$TMP/bad3.json
expect_fail 2 "a flag with a number in --config" $QTOOL calib $D/model_bn.onnx --data $D/calib -o $TMP/b.onnx \
    --config $TMP/bad3.json
echo '[1, 2' >$TMP/bad4.json
expect_fail 4 "--config that is not JSON" $QTOOL eval $D/model.onnx --data $D/test --config $TMP/bad4.json
check "no output file after a bad config" test ! -e $TMP/b.onnx

# progress: plain lines on a file, the closing one with a rate; none with -q
expect_ok "eval with stderr to a file" sh -c "$QTOOL eval $D/model.onnx --data $D/test $PP --latency-runs 0 \
    >/dev/null 2>$TMP/p.txt"
check "a closing progress line with images/s" grep -qE '^eval: 500/500 images \(100%\), [0-9.]+ images/s' $TMP/p.txt
check "no carriage returns off a terminal" sh -c "! grep -q \"$(printf '\r')\" $TMP/p.txt"
expect_ok "eval -q" sh -c "$QTOOL eval $D/model.onnx --data $D/test $PP --latency-runs 0 -q >/dev/null 2>$TMP/p2.txt"
check "nothing on stderr with --quiet" test ! -s $TMP/p2.txt
if command -v script >/dev/null 2>&1; then
    expect_ok "eval on a terminal (script)" script -qec "$QTOOL eval $D/model.onnx --data $D/test $PP \
        --latency-runs 0 --limit 200" $TMP/tty.txt
    check "a bar with ETA on a terminal" grep -qE 'eval: \[#+\] 200/200 images 100% .*images/s .*ETA' $TMP/tty.txt
else
    skip "script(1) absent: the terminal bar is not tested"
fi
done_testing
