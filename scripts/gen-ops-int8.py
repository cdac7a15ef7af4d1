#!/usr/bin/python3
"""gen-ops-int8.py: test cases for the quantized operators on integer kernels (lib/int8).

    /usr/bin/python3 scripts/gen-ops-int8.py [--out testdata/ops]
    node scripts/golden.mjs testdata/ops QLinearConv ConvInteger ...   # the ops printed

QLinearConv, ConvInteger, QLinearMatMul, MatMulInteger (ai.onnx) and ONNX Runtime's com.microsoft
QGemm, QLinearAdd, QLinearGlobalAveragePool, QLinearConcat. Same layout and conventions as gen-ops.py (ir_version 7, seeded data, outputs from
scripts/golden.mjs: ONNX Runtime with optimizations disabled, i.e. its own integer kernels and
rounding). The shapes exercise the kernels' edges: k not a multiple of 4, rows not a multiple of 8,
more columns than one panel (48) and one task (192), depthwise, groups, strides, dilations,
asymmetric pads, uint8 and int8 activations, int8 and uint8 (zero point != 0) weights, per-tensor
and per-channel scales. Quantized outputs must equal ONNX Runtime's exactly (tol 0); float QGemm
outputs within float rounding. com.microsoft models are checked by ONNX Runtime alone (onnx does
not know the domain).
"""
import argparse
import os
import sys
import zlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = "testdata/ops"
IR = 7
CASES = []
OPS = set()


def rng_for(op, name):
    return np.random.default_rng(zlib.crc32(f"{op}/{name}".encode()))


def etype(a):
    return onnx.mapping.NP_TYPE_TO_TENSOR_TYPE[np.dtype(a.dtype)]


def write(op, name, node, inputs, inits, out_type, out_shape, domain="", tol=None):
    """inputs: [(name, array)] graph inputs; inits: [(name, array)]."""
    CASES.append(f"{op}/{name}")
    OPS.add(op)
    g = helper.make_graph([node], f"{op}_{name}",
                          [helper.make_tensor_value_info(n, etype(a), list(a.shape)) for n, a in inputs],
                          [helper.make_tensor_value_info("y", out_type, list(out_shape))],
                          initializer=[numpy_helper.from_array(np.asarray(a), n) for n, a in inits])
    ops = [helper.make_opsetid("", 13)]
    if domain:
        ops.append(helper.make_opsetid(domain, 1))
    m = helper.make_model(g, opset_imports=ops, ir_version=IR, producer_name="qtool gen-ops-int8.py")
    if not domain:
        onnx.checker.check_model(m)
        onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    d = os.path.join(OUT, op, name)
    ds = os.path.join(d, "test_data_set_0")
    os.makedirs(ds, exist_ok=True)
    for f in os.listdir(ds):
        if f.endswith(".pb"):
            os.remove(os.path.join(ds, f))
    with open(os.path.join(d, "model.onnx"), "wb") as f:
        f.write(m.SerializeToString())
    for i, (n, a) in enumerate(inputs):
        with open(os.path.join(ds, f"input_{i}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(np.asarray(a), n).SerializeToString())
    tp = os.path.join(d, "tol.txt")
    with open(tp, "w") as f:
        f.write(f"{tol[0]:g} {tol[1]:g}\n" if tol else "0 0\n")


def qrand(r, dt, shape):
    if dt == np.uint8:
        return r.integers(0, 256, shape).astype(np.uint8)
    return r.integers(-128, 128, shape).astype(np.int8)


def conv_out(x, w, group, strides, pads, dil):
    n, c, h, wd = x
    kh, kw = w[2], w[3]
    oh = (h + pads[0] + pads[2] - dil[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (wd + pads[1] + pads[3] - dil[1] * (kw - 1) - 1) // strides[1] + 1
    return [n, w[0], oh, ow]


def gen_qlinearconv():
    op = "QLinearConv"

    def qconv(name, x, w, bias=True, xdt=np.uint8, wdt=np.int8, per_channel=True, group=1, strides=(1, 1),
              pads=(0, 0, 0, 0), dil=(1, 1), wzp=0):
        r = rng_for(op, name)
        xq = qrand(r, xdt, x)
        wq = qrand(r, wdt, w)
        xs = np.float32(0.02)
        xz = np.array(r.integers(0, 256) if xdt == np.uint8 else r.integers(-20, 20), dtype=xdt)
        m = w[0]
        ws = (r.uniform(0.002, 0.01, m) if per_channel else np.array(r.uniform(0.002, 0.01))).astype(np.float32)
        wz = (np.full(m, wzp) if per_channel else np.array(wzp)).astype(wdt)
        k = w[1] * w[2] * w[3]
        ys = np.float32(0.02 * 0.006 * 255 * np.sqrt(k) / 8)  # about the output's spread
        yz = np.array(128 if xdt == np.uint8 else 0, dtype=xdt)
        ins = [("x", xq)]
        inits = [("x_scale", xs), ("x_zero_point", xz), ("w", wq), ("w_scale", ws), ("w_zero_point", wz),
                 ("y_scale", ys), ("y_zero_point", yz)]
        names = [n for n, _ in ins + inits]
        if bias:
            inits.append(("B", r.integers(-5000, 5000, m).astype(np.int32)))
            names.append("B")
        node = helper.make_node(op, names, ["y"], group=group, strides=list(strides), pads=list(pads),
                                dilations=list(dil))
        write(op, name, node, ins, inits, etype(yz), conv_out(x, w, group, strides, pads, dil))

    qconv("u8s8_3x3_pad1", (2, 8, 9, 9), (16, 8, 3, 3), pads=(1, 1, 1, 1))
    qconv("u8s8_stride2_asym_pads", (1, 3, 15, 15), (13, 3, 3, 3), bias=False, strides=(2, 2), pads=(0, 0, 1, 1))
    qconv("u8s8_depthwise_s2", (2, 16, 10, 10), (16, 1, 3, 3), group=16, strides=(2, 2), pads=(1, 1, 1, 1))
    qconv("u8s8_depthwise_s1", (1, 24, 13, 13), (24, 1, 3, 3), group=24, pads=(1, 1, 1, 1))
    qconv("u8s8_depthwise_9x9_gemm_path", (1, 4, 12, 12), (4, 1, 9, 9), group=4, pads=(4, 4, 4, 4))
    qconv("u8s8_pointwise_k20_m13", (2, 20, 7, 7), (13, 20, 1, 1))
    qconv("u8s8_pointwise_400_columns", (1, 8, 20, 20), (40, 8, 1, 1))
    qconv("u8s8_3x3_400_columns", (1, 8, 20, 20), (40, 8, 3, 3), pads=(1, 1, 1, 1))
    qconv("u8s8_grouped", (1, 8, 7, 7), (12, 4, 3, 3), group=2, pads=(1, 1, 1, 1))
    qconv("u8s8_dilation", (1, 4, 11, 11), (8, 4, 3, 3), dil=(2, 2), pads=(2, 2, 2, 2))
    qconv("u8s8_per_tensor", (1, 6, 8, 8), (10, 6, 3, 3), per_channel=False, pads=(1, 1, 1, 1))
    qconv("s8s8_3x3", (2, 5, 8, 8), (9, 5, 3, 3), xdt=np.int8, pads=(1, 1, 1, 1))
    qconv("s8s8_depthwise", (1, 8, 9, 9), (8, 1, 3, 3), xdt=np.int8, group=8, pads=(1, 1, 1, 1))
    qconv("u8u8_wzp", (1, 6, 7, 7), (10, 6, 3, 3), wdt=np.uint8, per_channel=False, wzp=131, pads=(1, 1, 1, 1))
    # pointwise on a batch of small images: column blocks that span images
    qconv("u8u8_wzp_pointwise_batch", (5, 6, 5, 5), (10, 6, 1, 1), wdt=np.uint8, per_channel=False, wzp=120)
    qconv("s8s8_pointwise_batch", (9, 12, 7, 7), (20, 12, 1, 1), xdt=np.int8)


def gen_convinteger():
    op = "ConvInteger"
    for name, x, w, kw in [("u8u8_zp", (1, 4, 7, 7), (6, 4, 3, 3), dict(pads=[1, 1, 1, 1])),
                           ("u8u8_depthwise", (1, 6, 8, 8), (6, 1, 3, 3), dict(pads=[1, 1, 1, 1], group=6)),
                           ("u8u8_pointwise_stride2", (2, 9, 9, 9), (11, 9, 1, 1), dict(strides=[2, 2]))]:
        r = rng_for(op, name)
        xq = qrand(r, np.uint8, x)
        wq = qrand(r, np.uint8, w)
        xz = np.array(r.integers(0, 256), dtype=np.uint8)
        wz = np.array(r.integers(0, 256), dtype=np.uint8)
        node = helper.make_node(op, ["x", "w", "x_zero_point", "w_zero_point"], ["y"], **kw)
        s = conv_out(x, w, kw.get("group", 1), kw.get("strides", [1, 1]), kw.get("pads", [0, 0, 0, 0]), [1, 1])
        write(op, name, node, [("x", xq)], [("w", wq), ("x_zero_point", xz), ("w_zero_point", wz)],
              TensorProto.INT32, s)


def gen_matmul():
    op = "QLinearMatMul"
    for name, a, k, m, adt, bdt, per_col in [("u8s8_per_column", (3, 5), 17, 11, np.uint8, np.int8, True),
                                             ("u8s8_3d_many_rows", (2, 100), 36, 70, np.uint8, np.int8, False),
                                             ("s8s8", (7,), 9, 5, np.int8, np.int8, False),
                                             ("u8u8_zp", (6,), 10, 9, np.uint8, np.uint8, False)]:
        r = rng_for(op, name)
        aq = qrand(r, adt, a + (k,))
        bq = qrand(r, bdt, (k, m))
        az = np.array(r.integers(0, 256) if adt == np.uint8 else r.integers(-10, 10), dtype=adt)
        bz = np.array(137 if bdt == np.uint8 else 0, dtype=bdt)
        bs = (r.uniform(0.002, 0.01, m) if per_col else np.array(0.005)).astype(np.float32)
        if per_col:
            bz = np.full(m, bz, dtype=bdt)
        ys = np.float32(0.02 * 0.006 * 255 * np.sqrt(k) / 8)
        yz = np.array(100 if adt == np.uint8 else -3, dtype=adt)
        inits = [("a_scale", np.float32(0.02)), ("a_zero_point", az), ("b", bq), ("b_scale", bs),
                 ("b_zero_point", bz), ("y_scale", ys), ("y_zero_point", yz)]
        node = helper.make_node(op, ["a"] + [n for n, _ in inits], ["y"])
        write(op, name, node, [("a", aq)], inits, etype(yz), list(a) + [m])
    # b computed at run time (attention's Q K^T, probabilities x V): batched,
    # broadcast batch dimensions, per-tensor b
    for name, a, b, adt, bdt in [("act_b_u8u8_batched", (2, 3, 7, 16), (2, 3, 16, 9), np.uint8, np.uint8),
                                 ("act_b_u8s8_broadcast", (2, 1, 5, 8), (3, 8, 6), np.uint8, np.int8),
                                 ("act_b_s8s8_2d", (4, 12), (12, 70), np.int8, np.int8)]:
        r = rng_for(op, name)
        aq, bq = qrand(r, adt, a), qrand(r, bdt, b)
        az = np.array(r.integers(0, 256) if adt == np.uint8 else r.integers(-10, 10), dtype=adt)
        bz = np.array(r.integers(0, 256) if bdt == np.uint8 else r.integers(-10, 10), dtype=bdt)
        k = a[-1]
        ys = np.float32(0.02 * 0.005 * 255 * np.sqrt(k) / 8)
        yz = np.array(120 if adt == np.uint8 else 2, dtype=adt)
        inits = [("a_scale", np.float32(0.02)), ("a_zero_point", az), ("b_scale", np.float32(0.005)),
                 ("b_zero_point", bz), ("y_scale", ys), ("y_zero_point", yz)]
        node = helper.make_node(op, ["a", "a_scale", "a_zero_point", "b", "b_scale", "b_zero_point", "y_scale",
                                     "y_zero_point"], ["y"])
        out = list(np.broadcast_shapes(a[:-2], b[:-2])) + [a[-2], b[-1]]
        write(op, name, node, [("a", aq), ("b", bq)], inits, etype(yz), out)
    op = "MatMulInteger"
    for name, a, k, m, adt, bdt in [("u8u8_zp", (4,), 10, 6, np.uint8, np.uint8),
                                    ("u8s8_3d", (2, 3), 13, 9, np.uint8, np.int8),
                                    ("s8s8", (5,), 8, 50, np.int8, np.int8)]:
        r = rng_for(op, name)
        aq = qrand(r, adt, a + (k,))
        bq = qrand(r, bdt, (k, m))
        az = np.array(r.integers(0, 256) if adt == np.uint8 else r.integers(-10, 10), dtype=adt)
        bz = np.array(r.integers(0, 256) if bdt == np.uint8 else 0, dtype=bdt)
        node = helper.make_node(op, ["a", "b", "a_zero_point", "b_zero_point"], ["y"])
        write(op, name, node, [("a", aq)], [("b", bq), ("a_zero_point", az), ("b_zero_point", bz)],
              TensorProto.INT32, list(a) + [m])


def gen_qgemm():
    op = "QGemm"
    for name, n, k, m, transb, out_q, alpha in [("u8s8_transb_q", 5, 30, 20, 1, True, 1.0),
                                                ("u8s8_float_out", 4, 21, 13, 1, False, 1.0),
                                                ("u8s8_notransb_alpha", 3, 12, 10, 0, True, 0.5)]:
        r = rng_for(op, name)
        aq = qrand(r, np.uint8, (n, k))
        bq = qrand(r, np.int8, (m, k) if transb else (k, m))
        bs = r.uniform(0.002, 0.01, m).astype(np.float32)
        inits = [("a_scale", np.float32(0.02)), ("a_zero_point", np.array(r.integers(0, 256), dtype=np.uint8)),
                 ("b", bq), ("b_scale", bs), ("b_zero_point", np.zeros(m, np.int8)),
                 ("C", r.integers(-3000, 3000, m).astype(np.int32))]
        if out_q:
            inits += [("y_scale", np.float32(0.02 * 0.006 * 255 * np.sqrt(k) / 8 * alpha)),
                      ("y_zero_point", np.array(128, dtype=np.uint8))]
        node = helper.make_node(op, ["a"] + [nm for nm, _ in inits], ["y"], domain="com.microsoft", transB=transb,
                                alpha=alpha)
        write(op, name, node, [("a", aq)], inits, TensorProto.UINT8 if out_q else TensorProto.FLOAT, [n, m],
              domain="com.microsoft", tol=None if out_q else (1e-5, 1e-5))


def gen_contrib():
    ms = "com.microsoft"
    op = "QLinearAdd"
    for name, sa, sb, dt in [("u8_same_shape", (2, 8, 9, 9), (2, 8, 9, 9), np.uint8),
                             ("s8_same_shape", (1, 5, 7, 7), (1, 5, 7, 7), np.int8),
                             ("u8_broadcast_channel", (2, 4, 5, 5), (1, 4, 1, 1), np.uint8),
                             ("u8_scalar_b", (3, 70), (1,), np.uint8),
                             ("u8_scalar_a", (1,), (2, 33), np.uint8)]:
        r = rng_for(op, name)
        a, b = qrand(r, dt, sa), qrand(r, dt, sb)
        lo, hi = (0, 256) if dt == np.uint8 else (-128, 128)
        inits = [("A_scale", np.float32(r.uniform(0.01, 0.05))), ("A_zero_point", np.array(r.integers(lo, hi), dt)),
                 ("B_scale", np.float32(r.uniform(0.01, 0.05))), ("B_zero_point", np.array(r.integers(lo, hi), dt)),
                 ("C_scale", np.float32(r.uniform(0.03, 0.08))), ("C_zero_point", np.array(r.integers(lo, hi), dt))]
        names = ["a", "A_scale", "A_zero_point", "b", "B_scale", "B_zero_point", "C_scale", "C_zero_point"]
        node = helper.make_node(op, names, ["y"], domain=ms)
        out = np.broadcast_shapes(sa, sb)
        write(op, name, node, [("a", a), ("b", b)], inits, etype(a), list(out), domain=ms)
    op = "QLinearGlobalAveragePool"
    for name, shape, dt, cl in [("u8_nchw", (2, 12, 7, 7), np.uint8, 0), ("s8_nchw", (1, 9, 5, 6), np.int8, 0),
                                ("u8_channels_last", (2, 6, 6, 10), np.uint8, 1)]:
        r = rng_for(op, name)
        xq = qrand(r, dt, shape)
        lo, hi = (0, 256) if dt == np.uint8 else (-128, 128)
        inits = [("x_scale", np.float32(0.03)), ("x_zero_point", np.array(r.integers(lo, hi), dt)),
                 ("y_scale", np.float32(0.011)), ("y_zero_point", np.array(r.integers(lo, hi), dt))]
        node = helper.make_node(op, ["x"] + [nm for nm, _ in inits], ["y"], domain=ms, channels_last=cl)
        out = [shape[0], 1, 1, shape[3]] if cl else [shape[0], shape[1], 1, 1]
        write(op, name, node, [("x", xq)], inits, etype(xq), out, domain=ms)
    op = "QLinearConcat"
    for name, shapes, axis, dt in [("u8_axis1", [(2, 3, 4, 4), (2, 5, 4, 4)], 1, np.uint8),
                                   ("s8_axis_last", [(3, 2), (3, 4), (3, 1)], -1, np.int8)]:
        r = rng_for(op, name)
        lo, hi = (0, 256) if dt == np.uint8 else (-128, 128)
        inputs, inits, names = [], [("y_scale", np.float32(0.05)), ("y_zero_point", np.array(r.integers(lo, hi), dt))], \
            ["y_scale", "y_zero_point"]
        for i, sh in enumerate(shapes):
            inputs.append((f"x{i}", qrand(r, dt, sh)))
            inits += [(f"x{i}_scale", np.float32(r.uniform(0.02, 0.1))), (f"x{i}_zp", np.array(r.integers(lo, hi), dt))]
            names += [f"x{i}", f"x{i}_scale", f"x{i}_zp"]
        out = list(shapes[0])
        out[axis] = sum(sh[axis] for sh in shapes)
        node = helper.make_node(op, names, ["y"], domain=ms, axis=axis)
        write(op, name, node, inputs, inits, etype(inputs[0][1]), out, domain=ms)


def main():
    global OUT
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=OUT)
    OUT = ap.parse_args().out
    gen_qlinearconv()
    gen_convinteger()
    gen_matmul()
    gen_qgemm()
    gen_contrib()
    print(f"gen-ops-int8.py: wrote {len(CASES)} cases under {OUT}; now run:")
    print(f"node scripts/golden.mjs {OUT} " + " ".join(sorted(OPS)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
