#!/bin/sh
# t-cli.sh: command line behaviour and bad model files: each a one-line
# error naming the file, the documented exit code, no output file.
# needs: python3
. scripts/testlib.sh

expect_ok "qtool --help" $QTOOL --help
expect_ok "qtool --version" $QTOOL --version
expect_fail 2 "no command" $QTOOL
expect_fail 2 "unknown command" $QTOOL frobnicate
expect_fail 2 "eval without --data" $QTOOL eval x.onnx
expect_fail 2 "eval with a bad --batch" $QTOOL eval x.onnx --data . --batch zero
expect_ok "eval --help" $QTOOL eval --help
expect_ok "inspect --help" $QTOOL inspect --help

# qtool help CMD: the checkout's page beside the binary, else --help
if command -v man >/dev/null 2>&1 && [ -f "$(dirname "$QTOOL")/../man/qtool-calib.1" -o -f "$(dirname "$QTOOL")/../../man/qtool-calib.1" ]; then
    expect_ok "qtool help calib from the source tree" env MANPAGER=cat MANWIDTH=80 $QTOOL help calib
    check "it shows the checkout's manual page" grep -q "QTOOL-CALIB(1)" "$_out"
    check "without a warning" sh -c "! grep -qi 'warning\|no manual entry' '$_out'"
else
    skip "man(1) absent or binary outside the tree: the page is not opened"
fi
cp "$QTOOL" "$TMP/qtool-alone"
expect_ok "qtool help calib with no page anywhere falls back to --help" env MANPATH="$TMP" "$TMP/qtool-alone" help calib
check "it prints calib's options" grep -q -- "--data DIR" "$_out"
check "and no 'No manual entry'" sh -c "! grep -q 'No manual entry' '$_out'"
expect_ok "qtool help calib without man(1) prints --help" env PATH=/nonexistent $QTOOL help calib
check "it prints calib's options" grep -q -- "--data DIR" "$_out"
expect_fail 2 "qtool help of an unknown command" $QTOOL help frobnicate

# missing file
expect_fail 1 "inspect of a missing file" $QTOOL inspect "$TMP/missing.onnx"
check "the message names the file" grep -q "missing.onnx" "$_out"

# not a protobuf
printf 'hello, this is not an onnx file\n' >"$TMP/text.onnx"
expect_fail 5 "inspect of a text file" $QTOOL inspect "$TMP/text.onnx"
check "the message names the file" grep -q "text.onnx" "$_out"

# empty file
: >"$TMP/empty.onnx"
expect_fail 5 "inspect of an empty file" $QTOOL inspect "$TMP/empty.onnx"

# truncated and huge-length protobufs, made from a real model of ours
M=testdata/ops/Conv/conv_basic/model.onnx
[ -f "$M" ] || M=$(ls testdata/ops/*/*/model.onnx 2>/dev/null | head -n 1)
if [ -n "$M" ] && [ -f "$M" ]; then
    size=$(wc -c <"$M")
    head -c $((size / 2)) "$M" >"$TMP/trunc.onnx"
    expect_fail 5 "inspect of a truncated model" $QTOOL inspect "$TMP/trunc.onnx"
    check "one line of error" test "$(wc -l <"$_out")" -eq 1
    # field 7 (graph) with a declared length of 2^62
    printf '\x08\x07\x3a\xff\xff\xff\xff\xff\xff\xff\xff\x3f' >"$TMP/huge.onnx"
    expect_fail 5 "inspect of a protobuf with a huge declared length" $QTOOL inspect "$TMP/huge.onnx"
    # deep nesting: graph -> node -> attribute -> graph ... 
    python3 - "$TMP/deep.onnx" <<'PY'
import sys
def ld(field, payload):
    n = len(payload); v = bytearray()
    while True:
        b = n & 0x7f; n >>= 7
        v.append(b | (0x80 if n else 0))
        if not n: break
    return bytes([field << 3 | 2]) + bytes(v) + payload
g = b""
for i in range(200):          # GraphProto.node(1) -> NodeProto.attribute(5) -> AttributeProto.g(6)
    g = ld(1, ld(5, ld(6, g)))
open(sys.argv[1], "wb").write(b"\x08\x07" + ld(7, g))
PY
    expect_fail 5 "inspect of a protobuf nested 600 deep" $QTOOL inspect "$TMP/deep.onnx"
else
    skip "no model under testdata/ops for the truncation tests"
fi
done_testing
