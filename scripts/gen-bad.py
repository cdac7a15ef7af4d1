#!/usr/bin/env python3
"""gen-bad.py: the broken-input corpus of scripts/t-bad.sh, written to testdata/bad/.

Standard library only (any python3):  python3 scripts/gen-bad.py [OUTDIR]
Small ONNX models encoded by hand (protobuf wire format) around one valid
model, ok.onnx (x[1,1,4,4] -> Conv -> Relu -> GlobalAveragePool -> Flatten),
each broken in one way (and a few with zero-sized tensors), PNG files broken
in one way, and odd but valid files that must stay accepted (interlaced.png,
grey16.png). Deterministic: the
same bytes every run. Files named fuzz-* in testdata/bad are crashes found by
the fuzzers (scripts/fuzz.sh), not written here."""
import os, struct, sys, zlib

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testdata", "bad")
os.makedirs(out, exist_ok=True)


# ---- protobuf wire format ------------------------------------------------
def varint(n):
    n &= (1 << 64) - 1
    b = bytearray()
    while True:
        c = n & 0x7f; n >>= 7
        b.append(c | (0x80 if n else 0))
        if not n:
            return bytes(b)

def vfield(f, n): return varint(f << 3) + varint(n)
def lfield(f, payload):
    if isinstance(payload, str): payload = payload.encode()
    return varint(f << 3 | 2) + varint(len(payload)) + payload

FLOAT, UINT8, INT64 = 1, 2, 7

def tensor(name, dims, dtype=FLOAT, raw=None, values=None):
    b = b"".join(vfield(1, d) for d in dims) + vfield(2, dtype) + lfield(8, name)
    if values is not None:
        raw = struct.pack("<%df" % len(values), *values)
    if raw is not None:
        b += lfield(9, raw)
    return b

def attr_int(name, v): return lfield(1, name) + vfield(3, v) + vfield(20, 2)
def attr_ints(name, vs): return lfield(1, name) + b"".join(vfield(8, v) for v in vs) + vfield(20, 7)

def node(op, ins, outs, name, attrs=(), domain=None):
    b = b"".join(lfield(1, i) for i in ins) + b"".join(lfield(2, o) for o in outs) + lfield(3, name) + lfield(4, op)
    b += b"".join(lfield(5, a) for a in attrs)
    if domain is not None:
        b += lfield(7, domain)
    return b

def value_info(name, dims, dtype=FLOAT):
    shape = b"".join(lfield(1, vfield(1, d) if d >= 0 else lfield(2, "N")) for d in dims)
    return lfield(1, name) + lfield(2, lfield(1, vfield(1, dtype) + lfield(2, shape)))

def model(nodes, inits, inputs, outputs, opset=13):
    g = b"".join(lfield(1, n) for n in nodes) + lfield(2, "bad")
    g += b"".join(lfield(5, t) for t in inits)
    g += b"".join(lfield(11, v) for v in inputs) + b"".join(lfield(12, v) for v in outputs)
    return vfield(1, 7) + lfield(2, "gen-bad.py") + lfield(7, g) + lfield(8, lfield(1, "") + vfield(2, opset))

def write(name, data):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)

W = [0.1 * (i % 7) - 0.3 for i in range(18)]
B = [0.05, -0.05]
conv = node("Conv", ["x", "W", "B"], ["c"], "conv", [attr_ints("kernel_shape", [3, 3]), attr_ints("pads", [1, 1, 1, 1])])
relu = node("Relu", ["c"], ["r"], "relu")
gap = node("GlobalAveragePool", ["r"], ["p"], "gap")
flat = node("Flatten", ["p"], ["y"], "flatten", [attr_int("axis", 1)])
X = value_info("x", [1, 1, 4, 4])
Y = value_info("y", [1, 2])
inits = [tensor("W", [2, 1, 3, 3], values=W), tensor("B", [2], values=B)]
ok = model([conv, relu, gap, flat], inits, [X], [Y])
write("ok.onnx", ok)

# truncated: the first 60 %
write("truncated.onnx", ok[:len(ok) * 6 // 10])

# bit flips of ok.onnx at known places:
# 1. the top bit of the graph field's length (field 7): a length that runs past the end
i = ok.index(varint(7 << 3 | 2)) + 1
b = bytearray(ok); b[i] |= 0x80; b.insert(i + 1, 0x7f)  # a longer varint: 127 * 128 + ...
write("bitflip-length.onnx", bytes(b))
# 2. W's data_type 1 (float) -> 3 (int8): 72 bytes of data for 18 one-byte elements
t = tensor("W", [2, 1, 3, 3], values=W)
j = ok.index(t) + t.index(vfield(2, FLOAT)) + 1
b = bytearray(ok); b[j] ^= 0x02
write("bitflip-dtype.onnx", bytes(b))
# 3. one bit of the op_type "Relu" -> "Rel}" (an operator qtool does not know)
k = ok.index(b"Relu") + 3
b = bytearray(ok); b[k] ^= 0x08
write("bitflip-optype.onnx", bytes(b))

# dims whose product overflows int64 (no data: the check comes first)
write("dims-overflow.onnx", model([conv, relu, gap, flat],
      [tensor("W", [1 << 31, 1 << 31, 1 << 31, 8], raw=b""), inits[1]], [X], [Y]))
# an initializer shorter than its dims: 17 floats for [2,1,3,3]
write("short-init.onnx", model([conv, relu, gap, flat], [tensor("W", [2, 1, 3, 3], values=W[:17]), inits[1]], [X], [Y]))
# a negative dim, nine dims
write("negative-dim.onnx", model([conv, relu, gap, flat], [tensor("W", [2, -1, 3, 3], raw=b""), inits[1]], [X], [Y]))
write("nine-dims.onnx", model([conv, relu, gap, flat], [tensor("W", [1] * 9, values=[1.0]), inits[1]], [X], [Y]))
# a cycle: relu reads the output of a later Add that reads relu's output
cyc = [conv, node("Relu", ["s"], ["r"], "relu"), node("Add", ["r", "c"], ["s"], "add"), gap, flat]
write("cycle.onnx", model(cyc, inits, [X], [Y]))
# a dangling input: relu reads a tensor nothing defines
write("dangling.onnx", model([conv, node("Relu", ["nowhere"], ["r"], "relu"), gap, flat], inits, [X], [Y]))
# one tensor written by two nodes
write("two-producers.onnx", model([conv, relu, node("Relu", ["c"], ["r"], "relu2"), gap, flat], inits, [X], [Y]))
# graph output nothing produces
write("missing-output.onnx", model([conv, relu, gap, flat], inits, [X], [value_info("z", [1, 2])]))
# a node whose output 0 is the empty name (found by the fuzzer: the Add ran with no output)
write("empty-node-output.onnx", model([conv, relu, node("Add", ["r", "r"], [""], "add"), gap, flat], inits, [X], [Y]))
# an op with a missing required attribute: Concat without axis
gapk = node("GlobalAveragePool", ["k"], ["p"], "gap")
write("missing-attr.onnx", model([conv, relu, node("Concat", ["r", "r"], ["k"], "concat"), gapk, flat], inits, [X],
                                 [value_info("y", [1, 4])]))
# unsupported: opset 99, a tensor in an external file, an op of a foreign domain
write("opset99.onnx", model([conv, relu, gap, flat], inits, [X], [Y], opset=99))
ext = vfield(1, 2) + vfield(2, FLOAT) + lfield(8, "B") + lfield(13, lfield(1, "location") + lfield(2, "b.bin")) + vfield(14, 1)
write("external-data.onnx", model([conv, relu, gap, flat], [inits[0], ext], [X], [Y]))
# activations larger than any memory: x is [1,1,65536,65536] (a 16 GiB float tensor)
write("huge-activation.onnx", model([conv, relu, gap, flat], inits, [value_info("x", [1, 1, 65536, 65536])], [Y]))
# not ONNX at all
write("text.onnx", b"this is not a model\n")

# ---- PNG ------------------------------------------------------------------
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)

def png(w, h, depth, ctype, rows):
    data = b"".join(b"\x00" + r for r in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(data, 9)) + chunk(b"IEND", b""))

grey = [bytes((x * 9 + y * 5) & 0xff for x in range(28)) for y in range(28)]
good = png(28, 28, 8, 0, grey)
write("grey28.png", good)
i = good.index(b"IEND") - 8                                 # the last byte of IDAT's CRC
b = bytearray(good); b[i + 3] ^= 0x01
write("bad-crc.png", bytes(b))
idat = good.index(b"IDAT") - 4
n = struct.unpack(">I", good[idat:idat + 4])[0]
write("truncated-idat.png", good[:idat + 8 + n // 2])           # cut in the middle of the IDAT data
write("one-pixel.png", png(1, 1, 8, 0, [b"\x80"]))
write("grey16.png", png(28, 28, 16, 0, [b"".join(struct.pack(">H", v * 257) for v in r) for r in grey]))
write("small.png", png(20, 20, 8, 0, [r[:20] for r in grey[:20]]))
write("huge-header.png", png(100000, 100000, 8, 0, [b"\x00"]))  # header only: the size check must come first
write("all-black.png", png(28, 28, 8, 0, [bytes(28)] * 28))

# ---- zero-sized and degenerate shapes (issue 21) -------------------------------
# a Conv with zero output channels: weight [0,1,3,3], bias [0] (valid ONNX; an empty tensor all the way down),
# on 28x28 grey images (as grey28.png) so calib and eval reach the kernels
X28 = value_info("x", [-1, 1, 28, 28])
write("zero-out-channels.onnx", model([conv, relu, gap, flat], [tensor("W", [0, 1, 3, 3], raw=b""),
      tensor("B", [0], raw=b"")], [X28], [value_info("y", [-1, 0])]))
# a graph input with a zero dimension: x [N,0,4,4] into a Conv of zero input channels
write("zero-input-dim.onnx", model([conv, relu, gap, flat], [tensor("W", [2, 0, 3, 3], raw=b""), inits[1]],
      [value_info("x", [-1, 0, 4, 4])], [Y]))
# the zero-channel Conv on constants only: folded at plan time
write("zero-folded-conv.onnx", model([node("Conv", ["k", "W", "B"], ["c"], "conv", [attr_ints("kernel_shape", [3, 3])]),
      node("Add", ["x", "c"], ["y"], "add")], [tensor("k", [1, 1, 3, 3], values=W[:9]),
      tensor("W", [0, 1, 3, 3], raw=b""), tensor("B", [0], raw=b"")], [value_info("x", [1, 1, 1, 1])],
      [value_info("y", [1, 0, 1, 1])]))
# a Gemm with zero output features after a valid Conv
gemm = node("Gemm", ["f", "G"], ["y"], "fc", [attr_int("transB", 1)])
write("zero-gemm.onnx", model([conv, relu, gap, node("Flatten", ["p"], ["f"], "flatten", [attr_int("axis", 1)]), gemm],
      inits + [tensor("G", [0, 2], raw=b"")], [X28], [value_info("y", [-1, 0])]))

# ---- valid inputs that must stay accepted -----------------------------------------
# grey28.png again, Adam7-interlaced (t-bad.sh: the same calibration as the plain file)
def png_adam7(w, h, rows):
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
    data = b""
    for x0, y0, dx, dy in passes:
        for y in range(y0, h, dy):
            px = bytes(rows[y][x] for x in range(x0, w, dx))
            if px:
                data += b"\x00" + px
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 1))
            + chunk(b"IDAT", zlib.compress(data, 9)) + chunk(b"IEND", b""))
write("interlaced.png", png_adam7(28, 28, grey))
