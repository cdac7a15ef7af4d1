#!/bin/sh
# t-mixed.sh: mixed precision within a memory budget (--weight-budget,
# --act-budget, --mixed, --pack). On the bundled Fashion-MNIST model: the
# chosen widths fit the budget (ROM recomputed here from quant_info.json's
# per-tensor bits and the model's weight counts, not taken from qtool), the
# choice differs from uniform widths and is measured better than uniform
# 4 bits at the same size; per-channel widths stay within each channel's
# levels in the written integers; --pack writes INT4 weights (file size
# down by the expected bytes) that ONNX Runtime loads and runs with the
# outputs of the int8-container file; qtool's integer outputs match ONNX
# Runtime's on every mixed file; 1 and 2 threads write the same bytes;
# inspect/export report the same ROM/RAM; the budget parser's edge cases are
# usage errors that say why. finetune (per-channel, tuned weights still
# within each channel's width) and qat (per-layer) within the budget, run by
# ONNX Runtime with qtool's integer outputs.
# needs: ort python3
. scripts/testlib.sh
D=testdata/fmnist
M=$D/model.onnx
PP="--preset mnist"
ORT="node scripts/ort-run.mjs"
CAL="--data $D/calib $PP -q --limit 64"

# ---- the budget parser: usage errors (exit 2) that say why ----
bad() { # what, expected words, args
    what=$1 words=$2
    shift 2
    expect_fail 2 "$what" $QTOOL calib $M $CAL -o $TMP/bad.onnx "$@"
    check "  says '$words'" grep -q "$words" $_out
    check "  wrote nothing" test ! -e $TMP/bad.onnx
}
bad "negative budget" "cannot be negative" --weight-budget -5
bad "budget with no number" "takes a size" --weight-budget KiB
bad "unknown suffix" "unknown suffix 'kb'" --weight-budget 12kb
bad "zero bytes" "at least one byte" --weight-budget 0
bad "average width above 8" "from 2 to 8 bits" --weight-budget 9bits
bad "average width below 2" "from 2 to 8 bits" --weight-budget 1.5bits
bad "bytes below 2-bit weights" "below what the weights need at 2 bits" --weight-budget 5000
bad "act budget below 2-bit activations" "below what the activations need at 2 bits" --act-budget 100
bad "--mixed value" "per-layer or per-channel" --weight-budget 4bits --mixed per-block
expect_fail 2 "qat --mixed per-channel refused" $QTOOL qat $M --train $D/calib $PP -q --epochs 1 \
    --weight-budget 4bits --mixed per-channel -o $TMP/bad.onnx
check "  says why" grep -q "qat trains one width per weight tensor" $_out
expect_fail 2 "export --pack with --format float" $QTOOL export $M --quant-info /dev/null -o $TMP/bad.onnx \
    --format float --pack

# ---- per-layer choice at 4 bits average ----
expect_ok "calib --weight-budget 4bits" $QTOOL calib $M $CAL --weight-budget 4bits -o $TMP/m4.onnx \
    --threads 1 --json $TMP/m4.sum.json
expect_ok "uniform --wbits 4" $QTOOL calib $M $CAL --wbits 4 -o $TMP/u4.onnx --threads 1 --json $TMP/u4.sum.json
# ROM from quant_info.json's bits and the element counts of the QDQ file's
# own integer initializers (scripts/onnxedit.py reads them; no onnx package)
rom() { python3 - "$1" "${1%.json}.onnx" <<'EOF'
import json, sys, math
sys.path.insert(0, 'scripts')
import onnxedit
q = json.load(open(sys.argv[1]))
raw = onnxedit.raw_initializers(sys.argv[2], (3, 6))
rom = 0
for t in q["tensors"]:
    if t["role"] == "weight":
        n = len(raw[t["name"] + "_quantized"])
        if "channel_bits" in t:
            per = n // len(t["channel_bits"])
            rom += (sum(per * b for b in t["channel_bits"]) + 7) // 8
        else:
            rom += math.ceil(n * t["bits"] / 8)
    elif t["role"] == "bias":
        rom += len(raw[t["name"] + "_quantized"])
print(rom)
EOF
}
R4=$(rom $TMP/m4.json)
U4=$(rom $TMP/u4.json)
check "ROM recomputed from the bits ($R4) is what qtool reports ($(json $TMP/m4.sum.json memory.rom_bytes))" \
    test "$R4" = "$(json $TMP/m4.sum.json memory.rom_bytes)"
check "within the 4-bit budget: $R4 <= uniform 4-bit ROM $U4 = budget $(json $TMP/m4.sum.json memory.rom_budget)" \
    sh -c "test $R4 -le $U4 && test $U4 = $(json $TMP/m4.sum.json memory.rom_budget)"
check "uses the budget: more than 99% of it" python3 -c "assert $R4 > 0.99 * $U4"
check "the widths differ between layers" python3 -c "
import json; b = {t['bits'] for t in json.load(open('$TMP/m4.json'))['tensors'] if t['role'] == 'weight'}
assert len(b) >= 3, b"
check "average weight width <= 4 ($(json $TMP/m4.sum.json memory.weight_bits_avg))" \
    fcmp "$(json $TMP/m4.sum.json memory.weight_bits_avg)" '<=' 4
check "quant_info.json records the budget and the memory" python3 -c "
import json; d = json.load(open('$TMP/m4.json'))
assert d['settings']['weight_budget'] == '4bits' and d['settings']['mixed'] == 'per-layer', d['settings']
assert d['memory']['rom_bytes'] == $R4, d['memory']"
expect_ok "eval mixed 4 bits" $QTOOL eval $TMP/m4.onnx --data $D/test $PP --ref $M --latency-runs 0 \
    --json $TMP/m4.ev.json --save-outputs $TMP/m4.out --save-inputs $TMP/in.bin --threads 1
expect_ok "eval uniform 4 bits" $QTOOL eval $TMP/u4.onnx --data $D/test $PP --ref $M --latency-runs 0 \
    --json $TMP/u4.ev.json --threads 1
check "mixed 4 bits closer to float than uniform 4 bits at the same size: SQNR $(json $TMP/m4.ev.json sqnr_db) > $(json $TMP/u4.ev.json sqnr_db) dB" \
    fcmp "$(json $TMP/m4.ev.json sqnr_db)" '>' "$(json $TMP/u4.ev.json sqnr_db)"
n=$(( $(wc -c <$TMP/in.bin) / 3136 ))
expect_ok "ONNX Runtime runs the mixed file" $ORT $TMP/m4.onnx --input $TMP/in.bin --shape $n,1,28,28 \
    --output $TMP/m4.ort
expect_ok "  qtool's integer outputs equal ONNX Runtime's (1e-6 relative)" python3 scripts/cmpraw.py \
    $TMP/m4.out $TMP/m4.ort 1e-6
expect_ok "  and with optimizations disabled" $ORT $TMP/m4.onnx --check-load

# ---- deterministic at any thread count ----
expect_ok "the same at 2 threads" $QTOOL calib $M $CAL --weight-budget 4bits -o $TMP/m4t.onnx --threads 2
check "  byte-identical model and quant_info.json" sh -c \
    "cmp -s $TMP/m4.onnx $TMP/m4t.onnx && cmp -s $TMP/m4.json $TMP/m4t.json"

# ---- byte budgets and suffixes ----
expect_ok "--weight-budget 20KiB" $QTOOL calib $M $CAL --weight-budget 20KiB -o $TMP/k.onnx --json $TMP/k.sum.json
check "  within 20480 bytes ($(rom $TMP/k.json))" test "$(rom $TMP/k.json)" -le 20480
check "  budget recorded as 20480" test "$(json $TMP/k.sum.json memory.rom_budget)" = 20480
expect_ok "--weight-budget 1MiB (more than 8-bit needs)" $QTOOL calib $M $CAL --weight-budget 1MiB -o $TMP/big.onnx
check "  every weight at 8 bits" python3 -c "
import json; assert all(t['bits'] == 8 for t in json.load(open('$TMP/big.json'))['tensors'] if t['role'] == 'weight')"

# ---- --pack: INT4 weights ----
expect_ok "calib --wbits 4 --pack" $QTOOL calib $M $CAL --wbits 4 --pack -o $TMP/p4.onnx --threads 1
check "packed file smaller than the int8 container by the bytes packing saves" python3 -c "
import os, sys
sys.path.insert(0, 'scripts')
import onnxedit
a, b = os.path.getsize('$TMP/p4.onnx'), os.path.getsize('$TMP/u4.onnx')
p = onnxedit.raw_initializers('$TMP/p4.onnx', (22,))
u = onnxedit.raw_initializers('$TMP/u4.onnx', (3,))
assert len(p) == 14, sorted(p)   # 7 weights and their zero points
saved = sum(len(u[k]) - len(p[k]) for k in p)
assert all(len(p[k]) == (len(u[k]) + 1) // 2 for k in p)
print(a, b, saved)
assert abs((b - a) - saved) <= 16, (b - a, saved)
"
expect_ok "ONNX Runtime loads the packed file (disabled and all)" $ORT $TMP/p4.onnx --check-load
expect_ok "ONNX Runtime runs it" $ORT $TMP/p4.onnx --input $TMP/in.bin --shape $n,1,28,28 --output $TMP/p4.ort \
    --opt disabled
expect_ok "ONNX Runtime runs the int8-container twin" $ORT $TMP/u4.onnx --input $TMP/in.bin --shape $n,1,28,28 \
    --output $TMP/u4.ort --opt disabled
check "  the same outputs, packed or not" cmp -s $TMP/p4.ort $TMP/u4.ort
expect_ok "export --pack rebuilds the mixed file packed" $QTOOL export $M --quant-info $TMP/m4.json \
    -o $TMP/m4p.onnx --pack --json $TMP/m4p.sum.json
check "  export reports the same ROM" test "$(json $TMP/m4p.sum.json memory.rom_bytes)" = "$R4"
expect_ok "  ONNX Runtime loads it" $ORT $TMP/m4p.onnx --check-load
expect_ok "  and runs it" $ORT $TMP/m4p.onnx --input $TMP/in.bin --shape $n,1,28,28 --output $TMP/m4p.ort --opt disabled
expect_ok "  ONNX Runtime on the unpacked file" $ORT $TMP/m4.onnx --input $TMP/in.bin --shape $n,1,28,28 \
    --output $TMP/m4d.ort --opt disabled
check "  same outputs as the unpacked file" cmp -s $TMP/m4p.ort $TMP/m4d.ort

# ---- per-channel widths ----
expect_ok "calib --weight-budget 4bits --mixed per-channel" $QTOOL calib $M $CAL --weight-budget 4bits \
    --mixed per-channel -o $TMP/c4.onnx --json $TMP/c4.sum.json --threads 1
RC=$(rom $TMP/c4.json)
check "within the budget ($RC <= $U4)" test "$RC" -le "$U4"
check "ROM recomputed from channel_bits is what qtool reports" test "$RC" = "$(json $TMP/c4.sum.json memory.rom_bytes)"
# every per-channel tensor's integers in the written file within its channel's width
chan_ok() { python3 - "$1" <<'EOF'
import json, sys, struct
sys.path.insert(0, 'scripts')
import onnxedit
q = json.load(open(sys.argv[1]))
raw = onnxedit.raw_initializers(sys.argv[1][:-5] + '.onnx', (3,))
seen = 0
for t in q['tensors']:
    if 'channel_bits' not in t:
        continue
    assert t['axis'] == 0, t['axis']
    w = struct.unpack('%db' % len(raw[t['name'] + '_quantized']), raw[t['name'] + '_quantized'])
    per = len(w) // len(t['channel_bits'])
    for c, b in enumerate(t['channel_bits']):
        lim = 2 ** (b - 1)
        v = w[c * per:(c + 1) * per]
        assert max(v) <= lim - 1 and min(v) >= -lim, (t['name'], c, b, min(v), max(v))
    seen += 1
assert seen >= 5, seen
EOF
}
check "every channel's integers within its own width in the written file" chan_ok $TMP/c4.json
expect_ok "ONNX Runtime runs the per-channel file" $ORT $TMP/c4.onnx --input $TMP/in.bin --shape $n,1,28,28 \
    --output $TMP/c4.ort
expect_ok "  qtool's outputs" $QTOOL eval $TMP/c4.onnx --data $D/test $PP --latency-runs 0 --save-outputs $TMP/c4.out \
    --threads 1
expect_ok "  equal ONNX Runtime's (1e-6 relative)" python3 scripts/cmpraw.py $TMP/c4.out $TMP/c4.ort 1e-6
expect_ok "export rebuilds the per-channel file byte for byte" $QTOOL export $M --quant-info $TMP/c4.json -o $TMP/c4e.onnx
check "  identical" cmp -s $TMP/c4.onnx $TMP/c4e.onnx

# ---- finetune and qat ----
expect_ok "finetune --weight-budget 4bits --mixed per-channel" $QTOOL finetune $M $CAL --iters 20 \
    --weight-budget 4bits --mixed per-channel -o $TMP/f4.onnx --json $TMP/f4.sum.json
check "  within the budget ($(rom $TMP/f4.json) <= $U4)" test "$(rom $TMP/f4.json)" -le "$U4"
check "  tuned weights still within each channel's width" chan_ok $TMP/f4.json
expect_ok "  ONNX Runtime runs it" $ORT $TMP/f4.onnx --input $TMP/in.bin --shape $n,1,28,28 --output $TMP/f4.ort
expect_ok "  qtool's outputs" $QTOOL eval $TMP/f4.onnx --data $D/test $PP --latency-runs 0 --save-outputs $TMP/f4.out \
    --threads 1
expect_ok "  equal ONNX Runtime's (1e-6 relative)" python3 scripts/cmpraw.py $TMP/f4.out $TMP/f4.ort 1e-6
expect_ok "qat --weight-budget 4bits (1 epoch)" $QTOOL qat $M --train $D/calib $PP -q --epochs 1 \
    --weight-budget 4bits -o $TMP/q4.onnx --json $TMP/q4.sum.json
check "  within the budget ($(rom $TMP/q4.json) <= $U4)" test "$(rom $TMP/q4.json)" -le "$U4"
check "  reports it ($(json $TMP/q4.sum.json memory.rom_bytes))" test "$(rom $TMP/q4.json)" = "$(json $TMP/q4.sum.json memory.rom_bytes)"
expect_ok "  ONNX Runtime runs it" $ORT $TMP/q4.onnx --input $TMP/in.bin --shape $n,1,28,28 --output $TMP/q4.ort
expect_ok "  qtool's outputs" $QTOOL eval $TMP/q4.onnx --data $D/test $PP --latency-runs 0 --save-outputs $TMP/q4.out \
    --threads 1
expect_ok "  equal ONNX Runtime's (1e-6 relative)" python3 scripts/cmpraw.py $TMP/q4.out $TMP/q4.ort 1e-6

# ---- activation budget ----
expect_ok "calib --act-budget 4bits" $QTOOL calib $M $CAL --act-budget 4bits -o $TMP/a4.onnx --json $TMP/a4.sum.json
check "RAM within the budget ($(json $TMP/a4.sum.json memory.ram_bytes) <= $(json $TMP/a4.sum.json memory.ram_budget))" \
    test "$(json $TMP/a4.sum.json memory.ram_bytes)" -le "$(json $TMP/a4.sum.json memory.ram_budget)"
check "RAM below the 8-bit peak ($(json $TMP/a4.sum.json memory.ram_bytes_8bit))" \
    test "$(json $TMP/a4.sum.json memory.ram_bytes)" -lt "$(json $TMP/a4.sum.json memory.ram_bytes_8bit)"
check "some activations below 8 bits in quant_info.json" python3 -c "
import json; assert any(t['bits'] < 8 for t in json.load(open('$TMP/a4.json'))['tensors'] if t['role'] == 'activation')"
expect_ok "ONNX Runtime runs it" $ORT $TMP/a4.onnx --input $TMP/in.bin --shape $n,1,28,28 --output $TMP/a4.ort
expect_ok "  qtool's outputs" $QTOOL eval $TMP/a4.onnx --data $D/test $PP --latency-runs 0 --save-outputs $TMP/a4.out \
    --threads 1
expect_ok "  equal ONNX Runtime's (1e-6 relative)" python3 scripts/cmpraw.py $TMP/a4.out $TMP/a4.ort 1e-6

# ---- a model of fixed batch size (1): sensitivity measured one image at a
# time (it aborted with a heap overflow before), the same widths and steps ----
python3 -c "
import sys; sys.path.insert(0, 'scripts'); import onnxedit
onnxedit.set_input_dims('$M', '$TMP/fixed1.onnx', lambda i, d: [1] + list(d[1:]))"
expect_ok "calib --weight-budget 5bits --act-budget 4bits, free batch" $QTOOL calib $M $CAL --weight-budget 5bits \
    --act-budget 4bits -o $TMP/fb0.onnx --threads 1
expect_ok "... the same model at a fixed batch of 1" $QTOOL calib $TMP/fixed1.onnx $CAL --weight-budget 5bits \
    --act-budget 4bits -o $TMP/fb1.onnx --threads 1
check "  the same quantization (quant_info.json but source_model)" python3 -c "
import json; a, b = (json.load(open(f)) for f in ('$TMP/fb0.json', '$TMP/fb1.json'))
a.pop('source_model'); b.pop('source_model'); assert a == b
assert any(t['bits'] < 8 for t in a['tensors'] if t['role'] == 'weight')"

# ---- inspect ----
expect_ok "inspect --quant-info" $QTOOL inspect $M --quant-info $TMP/m4.json --json $TMP/in.json
check "  ROM as calib reported" test "$(json $TMP/in.json memory.rom_bytes)" = "$R4"
check "  RAM as calib reported" test "$(json $TMP/in.json memory.ram_bytes)" = "$(json $TMP/m4.sum.json memory.ram_bytes)"
expect_fail 4 "inspect --quant-info of another model's file" $QTOOL inspect $D/model_bn.onnx --quant-info $TMP/m4.json

done_testing
