#!/usr/bin/python3
"""gen-ops.py: per-operator test cases in the ONNX backend-test layout.

    /usr/bin/python3 scripts/gen-ops.py [--out testdata/ops] [--only Op,Op...]
    node scripts/golden.mjs [testdata/ops]     # writes output_<i>.pb with ONNX Runtime

For each case it writes testdata/ops/<OpType>/<case>/model.onnx (ir_version 7,
checked with onnx.checker and strict shape inference where onnx 1.12 knows the
opset) and test_data_set_0/input_<i>.pb (TensorProto, raw_data) for the graph's
inputs in order, and tol.txt "atol rtol" when the case needs other than the
default 1e-5 1e-4. Inputs that qtool needs at plan time (weights, shapes,
axes, pads, scales...) are initializers. Each case's random data come from
its own seed (crc32 of "<op>/<case>"), so adding a case changes no other.
Outputs come from scripts/golden.mjs (ONNX Runtime, optimizations disabled).

Only the cases listed here are written; other folders under testdata/ops
(scripts/gen-ops-shape.py, gen-ops-int8.py, gen-imagetests.py) are left alone. onnx 1.12
knows opsets up to 17: the opset-18 cases (ReduceMean axes input, Split
num_outputs) are written with explicit output types and checked by ONNX
Runtime alone (golden.mjs fails on a model it cannot load).
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
ONNX_MAX_OPSET = onnx.defs.onnx_opset_version()
CASES = []          # (op, name) in order, to catch duplicates
ONLY = None


class I:  # a graph input (fed from input_<i>.pb)
    def __init__(self, a):
        self.a = np.asarray(a)


class C:  # an initializer
    def __init__(self, a):
        self.a = np.asarray(a)


def rng_for(op, name):
    return np.random.default_rng(zlib.crc32(f"{op}/{name}".encode()))


def elem_type(a):
    return helper.np_dtype_to_tensor_dtype(a.dtype) if hasattr(helper, "np_dtype_to_tensor_dtype") \
        else onnx.mapping.NP_TYPE_TO_TENSOR_TYPE[a.dtype]


def case(op, name, nodes, inputs, inits=(), outputs=("y",), opset=13, tol=None, out_types=None):
    """nodes: NodeProtos; inputs: [(name, array)] graph inputs; inits: [(name, array)];
    outputs: names; out_types: {name: (elem_type, shape)} required when onnx cannot infer (opset > 17)."""
    key = (op, name)
    assert key not in CASES, key
    CASES.append(key)
    if ONLY is not None and op not in ONLY:
        return
    vi_in = [helper.make_tensor_value_info(n, elem_type(a), list(a.shape)) for n, a in inputs]
    vi_out = []
    for n in outputs:
        if out_types and n in out_types:
            t, s = out_types[n]
            vi_out.append(helper.make_tensor_value_info(n, t, s))
        else:
            vi_out.append(helper.make_tensor_value_info(n, TensorProto.UNDEFINED, None))
    g = helper.make_graph(nodes, f"{op}_{name}", vi_in, vi_out,
                          initializer=[numpy_helper.from_array(np.asarray(a), n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=IR,
                          producer_name="qtool gen-ops.py")
    if opset <= ONNX_MAX_OPSET:
        if not out_types or len(out_types) < len(outputs):
            for o in m.graph.output:  # let shape inference type the outputs
                o.ClearField("type")
            inf = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
            for o, io in zip(m.graph.output, inf.graph.output):
                assert io.type.tensor_type.elem_type, f"{op}/{name}: cannot infer {io.name}"
                o.CopyFrom(io)
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
    if tol:
        with open(tp, "w") as f:
            f.write(f"{tol[0]:g} {tol[1]:g}\n")
    elif os.path.exists(tp):
        os.remove(tp)


def one(op, name, ins, attrs=None, nout=1, opset=13, tol=None, out_types=None, outs=None):
    """A single-node case. ins: I(array) graph input, C(array) initializer, None empty optional input."""
    inputs, inits, names = [], [], []
    for k, v in enumerate(ins):
        if v is None:
            names.append("")
            continue
        n = f"x{k}" if isinstance(v, I) else f"c{k}"
        (inputs if isinstance(v, I) else inits).append((n, v.a))
        names.append(n)
    outs = outs or (["y"] if nout == 1 else [f"y{i}" for i in range(nout)])
    node = helper.make_node(op, names, outs, **(attrs or {}))
    case(op, name, [node], inputs, inits, outs, opset, tol, out_types)


def f32(r, *shape, lo=None, hi=None):
    if lo is not None:
        return r.uniform(lo, hi, size=shape).astype(np.float32)
    return r.standard_normal(shape).astype(np.float32)


def i64(v):
    return np.array(v, dtype=np.int64)


def fl(v):
    return np.array(v, dtype=np.float32)


# ---------------------------------------------------------------------------------------------- cases
def gen_conv():
    op = "Conv"

    def conv(name, x, w, b=None, **attrs):
        r = rng_for(op, name)
        ins = [I(f32(r, *x)), C(f32(r, *w) * 0.5)]
        if b:
            ins.append(C(f32(r, b)))
        one(op, name, ins, attrs)
    conv("conv_basic", (1, 3, 8, 8), (4, 3, 3, 3), 4, pads=[1, 1, 1, 1])
    conv("conv_nobias_nopad", (2, 3, 7, 7), (5, 3, 3, 3))
    conv("conv_grouped", (1, 4, 6, 6), (6, 2, 3, 3), 6, group=2, pads=[1, 1, 1, 1])
    conv("conv_depthwise", (1, 4, 7, 7), (4, 1, 3, 3), 4, group=4, pads=[1, 1, 1, 1])
    conv("conv_depthwise_mult2", (1, 3, 6, 6), (6, 1, 3, 3), None, group=3, pads=[1, 1, 1, 1], strides=[2, 2])
    conv("conv_strides", (1, 2, 9, 8), (3, 2, 3, 3), 3, strides=[2, 3], pads=[1, 1, 1, 1])
    conv("conv_dilations", (1, 2, 9, 9), (3, 2, 3, 3), 3, dilations=[2, 2], pads=[2, 2, 2, 2])
    conv("conv_dilation_stride", (1, 2, 11, 10), (2, 2, 3, 2), None, dilations=[2, 3], strides=[2, 1])
    conv("conv_asym_pads", (1, 2, 7, 7), (3, 2, 3, 3), 3, strides=[2, 2], pads=[0, 0, 1, 1])
    conv("conv_asym_pads2", (1, 2, 5, 6), (2, 2, 3, 3), 2, pads=[2, 0, 1, 3])
    conv("conv_same_upper", (1, 2, 7, 8), (3, 2, 3, 3), 3, auto_pad="SAME_UPPER", strides=[2, 2])
    conv("conv_same_lower", (1, 2, 7, 8), (3, 2, 4, 4), 3, auto_pad="SAME_LOWER", strides=[2, 2])
    conv("conv_same_upper_even_k", (1, 2, 6, 6), (2, 2, 2, 2), None, auto_pad="SAME_UPPER")
    conv("conv_valid", (1, 2, 7, 6), (3, 2, 3, 2), 3, auto_pad="VALID", strides=[2, 2])
    conv("conv_1x1", (2, 8, 5, 5), (4, 8, 1, 1), 4)
    conv("conv_1x1_stride2", (1, 4, 6, 6), (4, 4, 1, 1), None, strides=[2, 2])
    conv("conv_kernel_shape_attr", (1, 2, 6, 6), (2, 2, 3, 3), 2, kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    conv("conv_1d", (2, 3, 10), (4, 3, 3), 4, pads=[1, 1])
    conv("conv_1d_stride_dilation", (1, 2, 12), (3, 2, 3), None, strides=[2], dilations=[2], pads=[0, 1])
    conv("conv_1d_grouped", (1, 4, 9), (4, 2, 2), 4, group=2, auto_pad="SAME_UPPER")
    conv("conv_big_kernel", (1, 1, 9, 9), (2, 1, 5, 5), 2, pads=[2, 2, 2, 2])


def gen_gemm():
    op = "Gemm"
    r = rng_for(op, "all")
    A, B = f32(r, 3, 4), f32(r, 4, 5)
    one(op, "gemm_ab_c1d", [I(A), C(B), C(f32(r, 5))])
    one(op, "gemm_transB", [I(A), C(np.ascontiguousarray(B.T)), C(f32(r, 5))], dict(transB=1))
    one(op, "gemm_transA", [I(np.ascontiguousarray(A.T)), C(B), C(f32(r, 5))], dict(transA=1))
    one(op, "gemm_transA_transB", [I(np.ascontiguousarray(A.T)), C(np.ascontiguousarray(B.T))],
        dict(transA=1, transB=1))
    one(op, "gemm_alpha_beta", [I(A), C(B), C(f32(r, 3, 5))], dict(alpha=0.5, beta=2.0))
    one(op, "gemm_c_scalar", [I(A), C(B), C(fl(0.75))], dict(beta=-1.5))
    one(op, "gemm_c_1x1", [I(A), C(B), C(fl([[0.25]]))])
    one(op, "gemm_c_row", [I(A), C(B), C(f32(r, 1, 5))])
    one(op, "gemm_c_col", [I(A), C(B), C(f32(r, 3, 1))])
    one(op, "gemm_no_c", [I(A), C(B)], dict(alpha=2.0))
    one(op, "gemm_both_inputs", [I(A), I(B), I(f32(r, 3, 5))])
    one(op, "gemm_fc_like", [I(f32(r, 2, 16)), C(f32(r, 10, 16)), C(f32(r, 10))], dict(transB=1))


def gen_matmul():
    op = "MatMul"
    r = rng_for(op, "all")
    one(op, "matmul_2d", [I(f32(r, 3, 4)), C(f32(r, 4, 5))])
    one(op, "matmul_2d_inputs", [I(f32(r, 2, 7)), I(f32(r, 7, 3))])
    one(op, "matmul_3d_batched", [I(f32(r, 2, 3, 4)), I(f32(r, 2, 4, 5))])
    one(op, "matmul_3d_by_2d", [I(f32(r, 2, 3, 4)), C(f32(r, 4, 5))])
    one(op, "matmul_broadcast_batch", [I(f32(r, 2, 1, 3, 4)), I(f32(r, 3, 4, 2))])
    one(op, "matmul_broadcast_1", [I(f32(r, 1, 3, 4)), I(f32(r, 2, 4, 5))])
    one(op, "matmul_1d_lhs", [I(f32(r, 4)), C(f32(r, 4, 3))])
    one(op, "matmul_1d_rhs", [I(f32(r, 2, 3, 4)), C(f32(r, 4))])


def gen_unary():
    r = rng_for("unary", "x")
    x = f32(r, 2, 3, 4, 5) * 3
    x[0, 0, 0, :3] = [0.0, -0.0, 6.0]
    one("Relu", "relu_4d", [I(x)])
    one("Relu", "relu_2d", [I(f32(r, 3, 7))])
    one("Relu", "relu_opset7", [I(f32(r, 2, 5))], opset=7)
    one("LeakyRelu", "leakyrelu_default", [I(x)])
    one("LeakyRelu", "leakyrelu_alpha", [I(x)], dict(alpha=0.1))
    one("Sigmoid", "sigmoid", [I(x)])
    one("HardSigmoid", "hardsigmoid_default", [I(x)])
    one("HardSigmoid", "hardsigmoid_alpha_beta", [I(x)], dict(alpha=1 / 6, beta=0.5))
    one("HardSwish", "hardswish", [I(x)], opset=14)
    one("Tanh", "tanh", [I(x)])
    one("Sqrt", "sqrt", [I(np.abs(x) + 0.01)])
    one("Exp", "exp", [I(x)])
    one("Neg", "neg", [I(x)])
    one("Neg", "neg_int64", [I(i64([[3, -2, 0], [7, -9, 1]]))])
    one("Abs", "abs", [I(x)])
    one("Abs", "abs_int64", [I(i64([-5, 0, 4, -1]))])
    one("Identity", "identity", [I(x)])
    one("Identity", "identity_int64", [I(i64([1, 2, 3]))])


def gen_clip():
    op = "Clip"
    r = rng_for(op, "x")
    x = f32(r, 2, 3, 4, 4) * 4
    x[0, 0, 0, :4] = [0.0, 6.0, -1.0, 1.0]
    one(op, "clip_min_max", [I(x), C(fl(-1.0)), C(fl(1.0))])
    one(op, "clip_relu6", [I(x), C(fl(0.0)), C(fl(6.0))])
    one(op, "clip_only_min", [I(x), C(fl(-0.5))])
    one(op, "clip_only_max", [I(x), None, C(fl(0.5))])
    one(op, "clip_no_bounds", [I(x)])
    one(op, "clip_opset10_attrs", [I(x)], dict(min=0.0, max=6.0), opset=10)
    one(op, "clip_opset10_only_min", [I(x)], dict(min=-0.25), opset=10)
    one(op, "clip_opset11_inputs", [I(x), C(fl(-2.0)), C(fl(2.0))], opset=11)


def gen_batchnorm():
    op = "BatchNormalization"
    r = rng_for(op, "x")
    for name, shape, opset in (("bn_4d", (2, 3, 4, 5), 13), ("bn_2d", (4, 6), 13), ("bn_3d", (2, 4, 7), 13),
                               ("bn_opset15", (1, 3, 4, 4), 15), ("bn_opset9", (1, 3, 3, 3), 9)):
        c = shape[1]
        one(op, name, [I(f32(r, *shape)), C(f32(r, c)), C(f32(r, c)), C(f32(r, c)), C(f32(r, c, lo=0.2, hi=2.0))],
            dict(epsilon=1e-3) if name == "bn_2d" else None, opset=opset)


def gen_binary():
    r = rng_for("binary", "x")
    a = f32(r, 2, 3, 4, 5)
    bpos = f32(r, 2, 3, 4, 5, lo=0.5, hi=2.0) * np.where(r.random((2, 3, 4, 5)) < 0.5, -1, 1).astype(np.float32)
    for op in ("Add", "Sub", "Mul", "Div"):
        lo = op.lower()
        rb = rng_for(op, "b")

        def other(*shape):
            v = f32(rb, *shape, lo=0.5, hi=2.0)
            return v * np.where(rb.random(shape) < 0.5, -1, 1).astype(np.float32) if op == "Div" else f32(rb, *shape)
        one(op, f"{lo}_same_shape", [I(a), I(bpos if op == "Div" else f32(rb, 2, 3, 4, 5))])
        one(op, f"{lo}_bcast_channel", [I(a), C(other(1, 3, 1, 1))])
        one(op, f"{lo}_bcast_c11", [I(a), C(other(3, 1, 1))])
        one(op, f"{lo}_bcast_last", [I(a), C(other(5))])
        one(op, f"{lo}_scalar", [I(a), C(fl(1.5))])
        one(op, f"{lo}_scalar_lhs", [C(fl(1.5)), I(bpos if op == "Div" else a)])
        one(op, f"{lo}_bcast_both", [I(other(2, 1, 4)), I(other(3, 1))])
        one(op, f"{lo}_bcast_rank", [I(other(4, 1)), I(other(2, 3, 1, 5))])
        ia = i64([[7, -3, 12, 0], [5, 9, -8, 100]])
        ib = i64([[2, 5, -4, 3], [1, 3, 2, 7]]) if op != "Div" else i64([[2, 5, 4, 3], [1, 3, 2, 7]])
        if op == "Div":
            ia = np.abs(ia)
        one(op, f"{lo}_int64", [I(ia), I(ib)])
        one(op, f"{lo}_int64_scalar", [I(ia), C(i64(2))])
    one("Add", "add_opset7", [I(a), C(f32(rb, 3, 1, 1))], opset=7)


def gen_pool():
    r = rng_for("pool", "x")
    x = f32(r, 1, 2, 7, 7)
    x6 = f32(r, 1, 2, 6, 6)
    mp = "MaxPool"
    one(mp, "maxpool_2x2", [I(x6)], dict(kernel_shape=[2, 2], strides=[2, 2]))
    one(mp, "maxpool_3x3_s2_ceil0", [I(x)], dict(kernel_shape=[3, 3], strides=[2, 2]))
    one(mp, "maxpool_2x2_s2_ceil1", [I(x)], dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1))
    one(mp, "maxpool_3x3_s2_ceil1_pads", [I(x6)], dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                                       ceil_mode=1))
    one(mp, "maxpool_pads", [I(x)], dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
    one(mp, "maxpool_asym_pads", [I(x6)], dict(kernel_shape=[3, 2], strides=[2, 1], pads=[0, 1, 1, 0]))
    one(mp, "maxpool_dilations", [I(x)], dict(kernel_shape=[2, 2], dilations=[2, 2]))
    one(mp, "maxpool_dilations_ceil1", [I(x)], dict(kernel_shape=[2, 2], dilations=[2, 2], strides=[2, 2],
                                                     ceil_mode=1))
    one(mp, "maxpool_same_upper", [I(x)], dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"))
    one(mp, "maxpool_1d", [I(f32(r, 1, 3, 9))], dict(kernel_shape=[3], strides=[2]))
    one(mp, "maxpool_negative_input", [I(-np.abs(x) - 1)], dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
    one(mp, "maxpool_opset12_int8", [I(r.integers(-128, 128, (1, 1, 4, 4)).astype(np.int8))],
        dict(kernel_shape=[2, 2], strides=[2, 2]), opset=12)
    ap = "AveragePool"
    one(ap, "avgpool_2x2", [I(x6)], dict(kernel_shape=[2, 2], strides=[2, 2]))
    one(ap, "avgpool_3x3_s1", [I(x)], dict(kernel_shape=[3, 3]))
    one(ap, "avgpool_pads_exclude", [I(x)], dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=0))
    one(ap, "avgpool_pads_include", [I(x)], dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1))
    one(ap, "avgpool_ceil1", [I(x)], dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1))
    one(ap, "avgpool_ceil1_pads_exclude", [I(x6)], dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                                        ceil_mode=1))
    one(ap, "avgpool_ceil1_pads_include", [I(x6)], dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                                        ceil_mode=1, count_include_pad=1))
    one(ap, "avgpool_asym_pads_include", [I(x6)], dict(kernel_shape=[2, 3], pads=[1, 0, 0, 2], count_include_pad=1))
    one(ap, "avgpool_same_upper", [I(x)], dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"))
    one(ap, "avgpool_1d", [I(f32(r, 2, 2, 10))], dict(kernel_shape=[4], strides=[3], pads=[1, 1]))
    one("GlobalAveragePool", "gap_4d", [I(f32(r, 2, 3, 5, 4))])
    one("GlobalAveragePool", "gap_1x1", [I(f32(r, 1, 4, 1, 1))])
    one("GlobalAveragePool", "gap_3d", [I(f32(r, 2, 3, 7))])
    one("GlobalMaxPool", "gmp_4d", [I(f32(r, 2, 3, 5, 4))])
    one("GlobalMaxPool", "gmp_3d", [I(f32(r, 1, 2, 6))])


def gen_reduce():
    op = "ReduceMean"
    r = rng_for(op, "x")
    x = f32(r, 2, 3, 4, 5)
    one(op, "reducemean_hw_keep", [I(x)], dict(axes=[2, 3], keepdims=1))
    one(op, "reducemean_hw_nokeep", [I(x)], dict(axes=[2, 3], keepdims=0))
    one(op, "reducemean_neg_axis", [I(x)], dict(axes=[-1]))
    one(op, "reducemean_channel", [I(x)], dict(axes=[1], keepdims=0))
    one(op, "reducemean_all_keep", [I(x)])
    one(op, "reducemean_all_nokeep", [I(x)], dict(keepdims=0))
    FL = TensorProto.FLOAT
    one(op, "reducemean18_axes_input_keep", [I(x), C(i64([2, 3]))], dict(keepdims=1), opset=18,
        out_types={"y": (FL, [2, 3, 1, 1])})
    one(op, "reducemean18_axes_input_nokeep", [I(x), C(i64([1]))], dict(keepdims=0), opset=18,
        out_types={"y": (FL, [2, 4, 5])})
    one(op, "reducemean18_neg_axes", [I(x), C(i64([-1, 0]))], dict(keepdims=1), opset=18,
        out_types={"y": (FL, [1, 3, 4, 1])})
    one(op, "reducemean18_no_axes", [I(x)], dict(keepdims=0), opset=18, out_types={"y": (FL, [])})


def gen_shape_ops():
    r = rng_for("shape", "x")
    x = f32(r, 2, 3, 4, 5)
    for ax in (0, 1, 2, -1):
        one("Flatten", f"flatten_axis{ax}".replace("-", "m"), [I(x)], dict(axis=ax))
    one("Flatten", "flatten_default", [I(f32(r, 2, 3, 2))])
    one("Reshape", "reshape_zero_minus1", [I(x), C(i64([0, -1]))])
    one("Reshape", "reshape_zero_middle", [I(x), C(i64([2, 0, -1, 2]))])
    one("Reshape", "reshape_plain", [I(x), C(i64([6, 20]))])
    one("Reshape", "reshape_minus1_first", [I(x), C(i64([-1, 5]))])
    one("Reshape", "reshape_int64", [I(i64([[1, 2, 3], [4, 5, 6]])), C(i64([3, 2]))])
    one("Transpose", "transpose_default", [I(f32(r, 2, 3, 4))])
    one("Transpose", "transpose_nhwc", [I(x)], dict(perm=[0, 2, 3, 1]))
    one("Transpose", "transpose_2d", [I(f32(r, 3, 7))], dict(perm=[1, 0]))
    one("Transpose", "transpose_5d", [I(f32(r, 2, 1, 3, 2, 2))], dict(perm=[4, 2, 0, 3, 1]))
    one("Concat", "concat_axis1", [I(x), I(f32(r, 2, 2, 4, 5))], dict(axis=1))
    one("Concat", "concat_axis_neg1_3in", [I(f32(r, 2, 3, 1)), I(f32(r, 2, 3, 2)), C(f32(r, 2, 3, 3))], dict(axis=-1))
    one("Concat", "concat_axis0_int64", [I(i64([1, 2])), C(i64([-1])), I(i64([5, 6, 7]))], dict(axis=0))
    one("Concat", "concat_single", [I(x)], dict(axis=2))
    FL = TensorProto.FLOAT
    one("Split", "split13_input", [I(f32(r, 2, 6, 3)), C(i64([2, 4]))], dict(axis=1), nout=2)
    one("Split", "split13_equal", [I(f32(r, 2, 6, 3))], dict(axis=1), nout=3)
    one("Split", "split13_neg_axis", [I(f32(r, 2, 3, 5)), C(i64([1, 1, 3]))], dict(axis=-1), nout=3)
    one("Split", "split11_attr", [I(f32(r, 4, 3))], dict(axis=0, split=[1, 3]), nout=2, opset=11)
    one("Split", "split18_num_outputs", [I(f32(r, 2, 6, 3))], dict(axis=1, num_outputs=3), nout=3, opset=18,
        out_types={f"y{i}": (FL, [2, 2, 3]) for i in range(3)})
    one("Split", "split18_num_outputs_uneven", [I(f32(r, 7, 2))], dict(axis=0, num_outputs=3), nout=3, opset=18,
        out_types={"y0": (FL, [3, 2]), "y1": (FL, [3, 2]), "y2": (FL, [1, 2])})
    one("Split", "split18_input", [I(f32(r, 2, 5)), C(i64([2, 3]))], dict(axis=1), nout=2, opset=18,
        out_types={"y0": (FL, [2, 2]), "y1": (FL, [2, 3])})
    big = np.iinfo(np.int64).max
    sl = "Slice"
    one(sl, "slice_basic", [I(x), C(i64([0, 1])), C(i64([2, 3])), C(i64([1, 2]))])
    one(sl, "slice_no_axes", [I(f32(r, 6, 5)), C(i64([1, 0])), C(i64([5, 3]))])
    one(sl, "slice_steps", [I(x), C(i64([0, 1])), C(i64([4, 5])), C(i64([2, 3])), C(i64([2, 2]))])
    one(sl, "slice_negative_steps", [I(x), C(i64([-1, 3])), C(i64([-big, 0])), C(i64([3, 2])), C(i64([-1, -2]))])
    one(sl, "slice_negative_starts_ends", [I(x), C(i64([-3])), C(i64([-1])), C(i64([-1]))])
    one(sl, "slice_end_max", [I(x), C(i64([1])), C(i64([big])), C(i64([1]))])
    one(sl, "slice_clamp", [I(f32(r, 4, 4)), C(i64([-10, 2])), C(i64([10, 100])), C(i64([0, 1]))])
    one(sl, "slice_int64_shape_glue", [I(i64([2, 3, 4, 5])), C(i64([0])), C(i64([1])), C(i64([0]))])
    one(sl, "slice_empty", [I(f32(r, 4, 3)), C(i64([3])), C(i64([1])), C(i64([0]))])
    pd = "Pad"
    x4 = f32(r, 1, 2, 4, 5)
    one(pd, "pad_constant_zero", [I(x4), C(i64([0, 0, 1, 2, 0, 0, 2, 1]))])
    one(pd, "pad_constant_value", [I(x4), C(i64([0, 0, 1, 1, 0, 0, 1, 1])), C(fl(-2.5))], dict(mode="constant"))
    one(pd, "pad_reflect", [I(x4), C(i64([0, 0, 2, 1, 0, 0, 1, 3]))], dict(mode="reflect"))
    one(pd, "pad_edge", [I(x4), C(i64([0, 0, 3, 0, 0, 0, 1, 2]))], dict(mode="edge"))
    one(pd, "pad_negative", [I(x4), C(i64([0, 0, -1, 1, 0, 0, 1, -2]))])
    one(pd, "pad_2d_reflect", [I(f32(r, 3, 4)), C(i64([2, 1, 1, 2]))], dict(mode="reflect"))
    one(pd, "pad_opset11", [I(x4), C(i64([0, 0, 1, 1, 0, 0, 1, 1])), C(fl(1.0))], opset=11)
    one(pd, "pad_opset7_attr", [I(x4)], dict(pads=[0, 0, 1, 1, 0, 0, 1, 1], value=0.5), opset=7)
    sm = "Softmax"
    one(sm, "softmax13_last", [I(x * 3)], dict(axis=-1))
    one(sm, "softmax13_axis1", [I(x * 3)], dict(axis=1))
    one(sm, "softmax13_default_2d", [I(f32(r, 3, 10) * 5)])
    one(sm, "softmax13_large", [I(fl([[1000.0, 1001.0, 999.0], [-1000.0, 0.0, 5.0]]))])
    one(sm, "softmax11_axis1", [I(x * 3)], dict(axis=1), opset=11)   # flattens from axis 1 on: not per channel
    one(sm, "softmax11_default", [I(x * 3)], opset=11)
    one(sm, "softmax11_axis_last", [I(x * 3)], dict(axis=3), opset=11)
    one("Dropout", "dropout13", [I(x)])
    one("Dropout", "dropout13_ratio", [I(x), C(fl(0.5))])
    one("Dropout", "dropout13_mask", [I(x)], outs=["y", "mask"])
    one("Dropout", "dropout10_attr", [I(x)], dict(ratio=0.3), opset=10)
    sq, un = "Squeeze", "Unsqueeze"
    xs = f32(r, 1, 3, 1, 4)
    one(sq, "squeeze13_axes", [I(xs), C(i64([0, 2]))])
    one(sq, "squeeze13_neg_axis", [I(xs), C(i64([-2]))])
    one(sq, "squeeze13_no_axes", [I(xs)], out_types={"y": (FL, [3, 4])})
    one(sq, "squeeze11_attr", [I(xs)], dict(axes=[0]), opset=11)
    one(sq, "squeeze11_no_axes", [I(xs)], opset=11, out_types={"y": (FL, [3, 4])})
    one(un, "unsqueeze13_axes", [I(f32(r, 3, 4)), C(i64([0, 3]))])
    one(un, "unsqueeze13_neg", [I(f32(r, 3, 4)), C(i64([-1]))])
    one(un, "unsqueeze13_scalar_int64", [I(i64(7)), C(i64([0]))])
    one(un, "unsqueeze11_attr", [I(f32(r, 3, 4))], dict(axes=[1, -1]), opset=11)
    one(un, "unsqueeze11_gap_flatten", [I(f32(r, 2, 8))], dict(axes=[2, 3]), opset=11)
    one("Shape", "shape_4d", [I(x)])
    one("Shape", "shape_scalar", [I(fl(1.0))])
    one("Shape", "shape15_start_end", [I(x)], dict(start=1, end=-1), opset=15)
    g = "Gather"
    one(g, "gather_axis0", [I(f32(r, 5, 3)), C(i64([0, 4, 2]))])
    one(g, "gather_axis1_2d_idx", [I(x), C(i64([[0, 2], [1, 1]]))], dict(axis=1))
    one(g, "gather_negative_idx", [I(f32(r, 4, 6)), C(i64([-1, 0, -3]))], dict(axis=1))
    one(g, "gather_scalar_idx_shape_glue", [I(i64([8, 3, 28, 28])), C(i64(0))], dict(axis=0))
    one(g, "gather_scalar_idx_axis1", [I(x), C(i64(2))], dict(axis=1))
    one(g, "gather_int32_indices", [I(f32(r, 5, 2)), C(np.array([4, 1], dtype=np.int32))])
    one(g, "gather_indices_input", [I(f32(r, 6, 2)), I(i64([5, 0, 3]))])
    one("Tile", "tile_4d", [I(f32(r, 1, 2, 2, 3)), C(i64([2, 1, 2, 3]))])
    one("Tile", "tile_1d_int64", [I(i64([1, 2, 3])), C(i64([3]))])
    one("Tile", "tile_ones", [I(f32(r, 2, 3)), C(i64([1, 1]))])
    one("Expand", "expand_bcast", [I(f32(r, 3, 1)), C(i64([2, 3, 4]))])
    one("Expand", "expand_shape_smaller", [I(f32(r, 2, 1, 4)), C(i64([3, 1]))])
    one("Expand", "expand_ones_in_shape", [I(f32(r, 1, 3)), C(i64([1, 1, 1]))])
    one("Expand", "expand_int64", [I(i64([[5], [6]])), C(i64([2, 3]))])


def gen_resize():
    op = "Resize"
    r = rng_for(op, "x")
    x = f32(r, 1, 2, 3, 4)
    e = np.array([], dtype=np.float32)
    one(op, "resize_nearest_asym_floor_x2", [I(x), C(e), C(fl([1, 1, 2, 2]))],
        dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"))
    one(op, "resize_nearest_asym_floor_x3_x2", [I(x), C(e), C(fl([1, 1, 3, 2]))],
        dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"))
    one(op, "resize_nearest_asym_floor_roi_empty", [I(x), None, C(fl([1, 1, 2, 2]))],
        dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"))
    one(op, "resize_nearest_default_sizes", [I(x), None, None, C(i64([1, 2, 5, 7]))], dict(mode="nearest"))
    one(op, "resize_nearest_down", [I(f32(r, 1, 1, 6, 6)), None, C(fl([1, 1, 0.5, 0.5]))], dict(mode="nearest"))
    one(op, "resize_linear_half_pixel_x2", [I(x), C(e), C(fl([1, 1, 2, 2]))],
        dict(mode="linear", coordinate_transformation_mode="half_pixel"))
    one(op, "resize_linear_half_pixel_sizes", [I(x), None, None, C(i64([1, 2, 5, 9]))],
        dict(mode="linear", coordinate_transformation_mode="half_pixel"))
    one(op, "resize_linear_half_pixel_down", [I(f32(r, 1, 1, 8, 6)), None, C(fl([1, 1, 0.5, 0.5]))],
        dict(mode="linear"))
    one(op, "resize_linear_align_corners_sizes", [I(x), None, None, C(i64([1, 2, 6, 7]))],
        dict(mode="linear", coordinate_transformation_mode="align_corners"))
    one(op, "resize_linear_align_corners_scales", [I(x), C(e), C(fl([1, 1, 2, 2]))],
        dict(mode="linear", coordinate_transformation_mode="align_corners"))
    one(op, "resize_linear_pytorch_half_pixel", [I(x), None, C(fl([1, 1, 2, 1.5]))],
        dict(mode="linear", coordinate_transformation_mode="pytorch_half_pixel"))
    one(op, "resize_linear_asymmetric", [I(x), None, C(fl([1, 1, 2, 2]))],
        dict(mode="linear", coordinate_transformation_mode="asymmetric"))
    one(op, "resize_opset11_nearest", [I(x), C(e), C(fl([1, 1, 2, 2]))],
        dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"), opset=11)


def gen_misc():
    r = rng_for("misc", "x")
    x = f32(r, 2, 3, 4)
    cv = "Cast"
    one(cv, "cast_float_to_int64", [I(fl([[-2.7, -0.5, 0.0, 0.5, 2.7, 100.9]]))], dict(to=TensorProto.INT64))
    one(cv, "cast_int64_to_float", [I(i64([-3, 0, 7, 1 << 20]))], dict(to=TensorProto.FLOAT))
    one(cv, "cast_float_to_int32", [I(fl([-3.9, 3.9, 0.1]))], dict(to=TensorProto.INT32))
    one(cv, "cast_int32_to_int64", [I(np.array([-5, 6], dtype=np.int32))], dict(to=TensorProto.INT64))
    one(cv, "cast_float_to_float", [I(x)], dict(to=TensorProto.FLOAT))
    one(cv, "cast_bool_to_float", [I(np.array([True, False, True]))], dict(to=TensorProto.FLOAT))
    one(cv, "cast_float_to_bool", [I(fl([0.0, -0.0, 1.0, -2.5, 0.001]))], dict(to=TensorProto.BOOL))
    one(cv, "cast_uint8_to_float", [I(np.array([0, 1, 128, 255], dtype=np.uint8))], dict(to=TensorProto.FLOAT))
    ct = "Constant"
    cval = f32(r, 2, 3)
    case(ct, "constant_tensor", [helper.make_node(ct, [], ["y"], value=numpy_helper.from_array(cval, "v"))], [])
    case(ct, "constant_add_input", [helper.make_node(ct, [], ["k"], value=numpy_helper.from_array(cval, "v")),
                                    helper.make_node("Add", ["x", "k"], ["y"])], [("x", f32(r, 2, 3))])
    case(ct, "constant_value_float", [helper.make_node(ct, [], ["y"], value_float=2.5)], [])
    case(ct, "constant_value_floats", [helper.make_node(ct, [], ["y"], value_floats=[1.0, -2.0, 0.5])], [])
    case(ct, "constant_value_int", [helper.make_node(ct, [], ["y"], value_int=-7)], [])
    case(ct, "constant_value_ints", [helper.make_node(ct, [], ["y"], value_ints=[0, -1])], [])
    case(ct, "constant_int64_tensor_reshape",
         [helper.make_node(ct, [], ["s"], value=numpy_helper.from_array(i64([0, -1]), "v")),
          helper.make_node("Reshape", ["x", "s"], ["y"])], [("x", x)])
    cs = "ConstantOfShape"
    one(cs, "cos_default", [C(i64([2, 3]))])
    one(cs, "cos_float_value", [C(i64([1, 4, 2]))], dict(value=numpy_helper.from_array(fl([1.5]), "v")))
    one(cs, "cos_int64_value", [C(i64([3]))], dict(value=numpy_helper.from_array(i64([-1]), "v")))
    rg = "Range"
    one(rg, "range_float", [C(fl(0.5)), C(fl(3.0)), C(fl(0.75))])
    one(rg, "range_int64", [C(i64(0)), C(i64(10)), C(i64(3))])
    one(rg, "range_negative_delta", [C(i64(5)), C(i64(-3)), C(i64(-2))])
    one(rg, "range_empty", [C(fl(3.0)), C(fl(1.0)), C(fl(1.0))])
    eq = "Equal"
    a = r.integers(0, 3, (2, 3, 4)).astype(np.float32)
    one(eq, "equal_float", [I(a), I(r.integers(0, 3, (2, 3, 4)).astype(np.float32))])
    one(eq, "equal_bcast_scalar", [I(a), C(fl(1.0))])
    one(eq, "equal_int64", [I(i64([[1, 2, 3], [4, -1, 6]])), I(i64([1, -1, 3]))])
    one(eq, "equal_int64_shape_glue", [I(i64([1, 3, 224, 224])), C(i64(-1))])
    wh = "Where"
    one(wh, "where_same", [I(r.random((2, 3, 4)) < 0.5), I(f32(r, 2, 3, 4)), I(f32(r, 2, 3, 4))])
    one(wh, "where_bcast", [I(r.random((3, 1)) < 0.5), I(f32(r, 2, 1, 4)), C(fl(0.0))])
    one(wh, "where_int64", [I(np.array([True, False, False, True])), I(i64([1, 2, 3, 4])), C(i64([-1]))])
    one(wh, "where_from_equal_glue", [C(np.array([False, True, False])), I(i64([1, -1, 5])), C(i64([7, 8, 9]))])
    pw = "Pow"
    base = f32(r, 2, 3, 4, lo=0.1, hi=3.0)
    one(pw, "pow_square", [I(x), C(fl(2.0))])
    one(pw, "pow_cube_negative_base", [I(x), C(fl(3.0))])
    one(pw, "pow_frac", [I(base), C(fl(0.5))])
    one(pw, "pow_elementwise", [I(base), I(f32(r, 2, 3, 4, lo=-2.0, hi=2.0))])
    one(pw, "pow_bcast", [I(base), C(fl([1.0, 2.0, -1.0, 0.0]))])
    one(pw, "pow_int64_exponent", [I(x), C(i64(2))])
    for op in ("Min", "Max", "Sum"):
        lo = op.lower()
        rr = rng_for(op, "x")
        one(op, f"{lo}_one_input", [I(f32(rr, 2, 3))])
        one(op, f"{lo}_two_same", [I(f32(rr, 2, 3, 4)), I(f32(rr, 2, 3, 4))])
        one(op, f"{lo}_three_bcast", [I(f32(rr, 2, 3, 4)), C(f32(rr, 4)), I(f32(rr, 3, 1))])
        one(op, f"{lo}_scalar", [I(f32(rr, 2, 5)), C(fl(0.25))])
    one("Min", "min_int64", [I(i64([1, -5, 9])), I(i64([0, 3, 9]))])
    one("Max", "max_int64", [I(i64([1, -5, 9])), C(i64(2))])


def gen_qdq():
    r = rng_for("qdq", "x")
    q, dq = "QuantizeLinear", "DequantizeLinear"
    x = f32(r, 2, 3, 4, 4) * 3
    # ties: x/scale = k + 0.5 exactly (scale 0.5: x = 0.25, 0.75, -1.25 ...), and saturation
    ties = fl([0.25, 0.75, 1.25, -0.25, -0.75, -1.25, 2.25, 100.0, -100.0, 0.0, 63.75, -64.25])
    one(q, "q_uint8_per_tensor", [I(x), C(fl(0.05)), C(np.uint8(128))])
    one(q, "q_int8_per_tensor", [I(x), C(fl(0.03)), C(np.int8(-3))])
    one(q, "q_default_zp_uint8", [I(x), C(fl(0.02))])
    one(q, "q_uint8_ties_saturate", [I(ties), C(fl(0.5)), C(np.uint8(10))])
    one(q, "q_int8_ties_saturate", [I(ties), C(fl(0.5)), C(np.int8(0))])
    one(q, "q_int8_ties_zp_odd", [I(ties), C(fl(0.5)), C(np.int8(1))])
    one(q, "q_uint8_per_channel_axis1", [I(x), C(fl([0.02, 0.05, 0.1])), C(np.array([0, 128, 255], dtype=np.uint8))],
        dict(axis=1))
    one(q, "q_int8_per_channel_axis1", [I(x), C(fl([0.02, 0.05, 0.1])), C(np.array([0, -5, 7], dtype=np.int8))],
        dict(axis=1))
    w = f32(r, 4, 3, 3, 3)
    one(q, "q_int8_per_channel_axis0", [I(w), C(fl([0.01, 0.02, 0.005, 0.03])), C(np.zeros(4, np.int8))],
        dict(axis=0))
    one(q, "q_uint8_per_channel_axis0", [I(w), C(fl([0.01, 0.02, 0.005, 0.03])),
                                         C(np.array([128, 100, 0, 255], dtype=np.uint8))], dict(axis=0))
    one(q, "q_int8_per_channel_neg_axis", [I(f32(r, 2, 5) * 2), C(fl([0.1] * 5)), C(np.zeros(5, np.int8))],
        dict(axis=-1))
    one(q, "q_opset10_uint8", [I(x), C(fl(0.05)), C(np.uint8(128))], opset=10)
    qu8 = r.integers(0, 256, (2, 3, 4, 4)).astype(np.uint8)
    qi8 = r.integers(-128, 128, (2, 3, 4, 4)).astype(np.int8)
    one(dq, "dq_uint8_per_tensor", [I(qu8), C(fl(0.05)), C(np.uint8(128))])
    one(dq, "dq_int8_per_tensor", [I(qi8), C(fl(0.03)), C(np.int8(-3))])
    one(dq, "dq_int8_no_zp", [I(qi8), C(fl(0.5))])
    one(dq, "dq_uint8_per_channel_axis1", [I(qu8), C(fl([0.02, 0.05, 0.1])),
                                           C(np.array([0, 128, 255], dtype=np.uint8))], dict(axis=1))
    one(dq, "dq_int8_per_channel_axis1", [I(qi8), C(fl([0.02, 0.05, 0.1])), C(np.array([0, -5, 7], dtype=np.int8))],
        dict(axis=1))
    wq = r.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8)
    one(dq, "dq_int8_per_channel_axis0", [C(wq), C(fl([0.01, 0.02, 0.005, 0.03])), C(np.zeros(4, np.int8))],
        dict(axis=0))
    one(dq, "dq_int8_per_channel_axis0_input", [I(wq), C(fl([0.01, 0.02, 0.005, 0.03])), C(np.zeros(4, np.int8))],
        dict(axis=0))
    bias = r.integers(-100000, 100000, (6,)).astype(np.int32)
    one(dq, "dq_int32_per_tensor", [I(bias), C(fl(0.0004)), C(np.int32(0))])
    one(dq, "dq_int32_no_zp", [C(bias), C(fl(0.001))])
    one(dq, "dq_int32_per_channel", [I(bias), C(fl([1e-4, 2e-4, 3e-4, 4e-4, 5e-4, 6e-4])), C(np.zeros(6, np.int32))],
        dict(axis=0))
    one(dq, "dq_opset10_int8", [I(qi8), C(fl(0.03)), C(np.int8(-3))], opset=10)
    # round trip Q -> DQ as a QDQ pair
    case(q, "qdq_pair_uint8", [helper.make_node(q, ["x", "s", "z"], ["q"]), helper.make_node(dq, ["q", "s", "z"], ["y"])],
         [("x", x)], [("s", fl(0.04)), ("z", np.uint8(120))])


GENERATORS = [gen_conv, gen_gemm, gen_matmul, gen_unary, gen_clip, gen_batchnorm, gen_binary, gen_pool, gen_reduce,
              gen_shape_ops, gen_resize, gen_misc, gen_qdq]


# ---------------------------------------------------------------------------------------------- shape-ops extras
# Cases for the pooling, reduction and layout ops of lib/ops/ops-shape.def that the generators
# above do not cover (ReduceSum/Max/Min, ArgMax, Size, DepthToSpace, SpaceToDepth, Upsample) and
# a few semantics they do not reach (ceil_mode's dropped last window, nearest_mode variants...).
def gen_shape_extra():
    FL = TensorProto.FLOAT
    r = rng_for("shape_extra", "x")
    x = f32(r, 2, 3, 4, 5)
    xi = r.integers(-50, 50, (2, 3, 4, 5)).astype(np.int64)
    for op in ("ReduceSum", "ReduceMax", "ReduceMin"):
        lo = op.lower()
        one(op, f"{lo}_axes_attr_keep", [I(x)], dict(axes=[1, 3], keepdims=1), opset=11)
        one(op, f"{lo}_axes_attr_nokeep", [I(x)], dict(axes=[-1, 0], keepdims=0), opset=11)
        one(op, f"{lo}_all", [I(x)], dict(keepdims=0), opset=11)
        one(op, f"{lo}_int64", [I(xi)], dict(axes=[2], keepdims=0), opset=11)
    one("ReduceSum", "reducesum13_axes_input", [I(x), C(i64([2, 3]))], dict(keepdims=1))
    one("ReduceSum", "reducesum13_no_axes", [I(x)], dict(keepdims=0))
    one("ReduceSum", "reducesum13_noop_empty_axes", [I(x)], dict(noop_with_empty_axes=1))
    one("ReduceSum", "reducesum13_int64_glue", [I(i64([2, 3, 4])), C(i64([0]))], dict(keepdims=0))
    for op in ("ReduceMax", "ReduceMin"):
        lo = op.lower()
        one(op, f"{lo}18_axes_input", [I(x), C(i64([1]))], dict(keepdims=0), opset=18,
            out_types={"y": (FL, [2, 4, 5])})
    am = "ArgMax"
    ties = np.round(f32(r, 2, 3, 4, 5) * 2) / 2
    one(am, "argmax_default", [I(x)])
    one(am, "argmax_axis1_nokeep", [I(x)], dict(axis=1, keepdims=0))
    one(am, "argmax_neg_axis_ties_first", [I(ties)], dict(axis=-1), opset=12)
    one(am, "argmax_ties_last", [I(ties)], dict(axis=2, select_last_index=1), opset=12)
    one(am, "argmax_int64", [I(xi)], dict(axis=3, keepdims=0))
    one("Size", "size_4d", [I(x)])
    one("Size", "size_int64", [I(i64([[1, 2, 3]]))])
    for mode in ("DCR", "CRD"):
        one("DepthToSpace", f"depthtospace_{mode.lower()}", [I(f32(r, 2, 8, 3, 4))], dict(blocksize=2, mode=mode))
    one("DepthToSpace", "depthtospace_b3_opset11", [I(f32(r, 1, 18, 2, 3))], dict(blocksize=3), opset=11)
    one("SpaceToDepth", "spacetodepth_b2", [I(f32(r, 2, 3, 4, 6))], dict(blocksize=2))
    one("SpaceToDepth", "spacetodepth_b3", [I(f32(r, 1, 2, 6, 3))], dict(blocksize=3))
    up = "Upsample"
    xr = f32(r, 1, 2, 3, 4)
    one(up, "upsample7_nearest", [I(xr)], dict(mode="nearest", scales=[1.0, 1.0, 2.0, 3.0]), opset=7)
    one(up, "upsample7_linear", [I(xr)], dict(mode="linear", scales=[1.0, 1.0, 2.0, 2.0]), opset=7)
    one(up, "upsample9_nearest_frac", [I(xr), C(fl([1, 1, 1.5, 2.5]))], dict(mode="nearest"), opset=9)
    one(up, "upsample9_linear_frac", [I(xr), C(fl([1, 1, 1.5, 2.5]))], dict(mode="linear"), opset=9)
    # ceil_mode: a last window that would start in the end padding is dropped (6 -> 3, not 4)
    x6 = f32(r, 1, 2, 1, 6)
    one("MaxPool", "maxpool_ceil1_drop_last", [I(x6)], dict(kernel_shape=[1, 2], strides=[1, 2],
                                                              pads=[0, 0, 0, 1], ceil_mode=1), opset=12)
    one("AveragePool", "avgpool_ceil1_drop_last_include", [I(x6)],
        dict(kernel_shape=[1, 3], strides=[1, 3], pads=[0, 2, 0, 2], ceil_mode=1, count_include_pad=1))
    one("AveragePool", "avgpool_ceil1_past_pad_include", [I(f32(r, 1, 2, 6, 6))],
        dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1, count_include_pad=1))
    one("MaxPool", "maxpool_same_lower_ceil1", [I(f32(r, 1, 2, 6, 7))],
        dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_LOWER", ceil_mode=1), opset=12)
    one("AveragePool", "avgpool_valid", [I(f32(r, 1, 2, 7, 8))], dict(kernel_shape=[3, 2], strides=[2, 3],
                                                                        auto_pad="VALID"))
    rz = "Resize"
    for nm in ("round_prefer_ceil", "ceil", "round_prefer_floor"):
        one(rz, f"resize_nearest_half_pixel_{nm}", [I(xr), None, C(fl([1, 1, 1.5, 0.6]))],
            dict(mode="nearest", nearest_mode=nm))
    one(rz, "resize_nearest_tf_half_pixel_for_nn", [I(xr), None, C(fl([1, 1, 2.5, 1.5]))],
        dict(mode="nearest", coordinate_transformation_mode="tf_half_pixel_for_nn"))
    one(rz, "resize_nearest_align_corners_sizes", [I(xr), None, None, C(i64([1, 2, 7, 3]))],
        dict(mode="nearest", coordinate_transformation_mode="align_corners"))
    one(rz, "resize10_nearest", [I(xr), C(fl([1, 1, 2, 1.5]))], dict(mode="nearest"), opset=10)
    one(rz, "resize18_axes_linear", [I(xr), None, C(fl([2, 1.5]))], dict(mode="linear", axes=[3, 2]), opset=18,
        out_types={"y": (FL, [1, 2, 4, 8])})
    one("Pad", "pad_edge_negative", [I(f32(r, 1, 2, 4, 5)), C(i64([0, 0, -1, 2, 0, 0, 2, -2]))], dict(mode="edge"))
    one("Pad", "pad_reflect_int64", [I(xi), C(i64([0, 1, 1, 0, 0, 1, 2, 3]))], dict(mode="reflect"))
    one("Pad", "pad_opset10_attr", [I(f32(r, 1, 2, 3, 3))], dict(pads=[0, 0, 1, 2, 0, 0, 2, 1], value=0.5), opset=10)
    one("Pad", "pad18_axes", [I(f32(r, 1, 2, 3, 3)), C(i64([1, 2, 2, 1])), None, C(i64([-1, 2]))], opset=18,
        out_types={"y": (FL, [1, 2, 6, 6])})
    big = np.iinfo(np.int64).max
    one("Slice", "slice9_attrs", [I(x)], dict(starts=[1, -3], ends=[big, 4], axes=[1, 3]), opset=9)
    one("Slice", "slice_step_past_end", [I(x), C(i64([-2])), C(i64([big])), C(i64([-1])), C(i64([big]))])
    one("Concat", "concat_empty_int64_glue", [I(i64([1, 2])), C(np.zeros(0, np.int64)), I(i64([3]))], dict(axis=0))
    one("Split", "split7_attr", [I(x)], dict(axis=2, split=[1, 2, 1]), nout=3, opset=7)
    one("Gather", "gather_int64_data_axis1", [I(xi), C(i64([2, -1]))], dict(axis=1))
    one("Transpose", "transpose_int64", [I(xi)], dict(perm=[1, 0, 3, 2]))
    # PyTorch's shape glue: Shape -> Gather -> Unsqueeze -> Concat -> Reshape (folded at plan time)
    case("Reshape", "reshape_shape_glue",
         [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "zero"], ["b"], axis=0),
          helper.make_node("Unsqueeze", ["b", "ax0"], ["b1"]),
          helper.make_node("Concat", ["b1", "m1"], ["sh"], axis=0), helper.make_node("Reshape", ["x", "sh"], ["y"])],
         [("x", x)], [("zero", i64(0)), ("ax0", i64([0])), ("m1", i64([-1]))], out_types={"y": (FL, [2, 60])})


GENERATORS.append(gen_shape_extra)


# Cases for the element-wise ops of lib/ops/unary.c, binary.c, variadic.c and softmax.c
# that the generators above do not cover.
def gen_math_extra():
    r = rng_for("math_extra", "x")
    x = f32(r, 2, 3, 4, 5) * 3
    x[0, 0, 0, :5] = [0.0, -0.0, 2.5, -2.5, 0.5]
    one("Log", "log", [I(np.abs(x) + 0.01)])
    one("Reciprocal", "reciprocal", [I(np.where(np.abs(x) < 0.1, 0.5, x).astype(np.float32))])
    one("Floor", "floor", [I(x)])
    one("Ceil", "ceil", [I(x)])
    one("Round", "round_half_even", [I(fl([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49, 2.51, -3.7]))], opset=11)
    one("Erf", "erf", [I(x)])
    one("Elu", "elu_default", [I(x)])
    one("Elu", "elu_alpha", [I(x)], dict(alpha=0.5))
    one("Softplus", "softplus", [I(np.concatenate([x.ravel(), fl([30.0, -30.0, 88.0])]))])
    one("Not", "not", [I(r.random((3, 4)) < 0.5)])
    for op, lo in (("Less", "less"), ("Greater", "greater")):
        a = r.integers(0, 3, (2, 3, 4)).astype(np.float32)
        one(op, f"{lo}_float", [I(a), I(r.integers(0, 3, (2, 3, 4)).astype(np.float32))])
        one(op, f"{lo}_bcast_scalar", [I(a), C(fl(1.0))])
        one(op, f"{lo}_int64", [I(i64([[1, 2, 3], [4, -1, 6]])), I(i64([1, -1, 5]))])
    b1, b2 = r.random((2, 3)) < 0.5, r.random((2, 3)) < 0.5
    for op in ("And", "Or", "Xor"):
        one(op, f"{op.lower()}_same", [I(b1), I(b2)])
        one(op, f"{op.lower()}_bcast", [I(b1), C(np.array([True, False, True]))])
    one("PRelu", "prelu_channel", [I(x), C(f32(r, 3, 1, 1, lo=0.0, hi=0.5))])
    one("PRelu", "prelu_scalar", [I(x), C(fl([0.25]))])
    one("PRelu", "prelu_same", [I(x), I(f32(r, 2, 3, 4, 5))])
    rr = rng_for("Mean", "x")
    one("Mean", "mean_one_input", [I(f32(rr, 2, 3))])
    one("Mean", "mean_two_same", [I(f32(rr, 2, 3, 4)), I(f32(rr, 2, 3, 4))])
    one("Mean", "mean_three_bcast", [I(f32(rr, 2, 3, 4)), C(f32(rr, 4)), I(f32(rr, 3, 1))])
    ls = "LogSoftmax"
    y = f32(r, 2, 3, 4) * 4
    one(ls, "logsoftmax13_default", [I(y)])
    one(ls, "logsoftmax13_axis1", [I(y)], dict(axis=1))
    one(ls, "logsoftmax11_default", [I(y)], opset=11)
    one(ls, "logsoftmax11_axis0", [I(y)], dict(axis=0), opset=11)
    one(ls, "logsoftmax13_large", [I(fl([[1000.0, 0.0, -1000.0], [50.0, 50.0, 49.0]]))])


GENERATORS.append(gen_math_extra)


# The operators of transformer and ConvNeXt exports (issue 19): Mod (Swin's
# window glue), LayerNormalization (opset 17), Gelu (opset 20), ScatterND.
def gen_transformer():
    FL = TensorProto.FLOAT
    r = rng_for("transformer", "x")
    one("Mod", "mod_int64", [I(i64([7, -7, 7, -7, 0, 5, 6])), I(i64([3, 3, -3, -3, 2, 7, 6]))], opset=13)
    one("Mod", "mod_int64_bcast", [I(i64([[13, -4, 56], [0, 9, -9]])), C(i64(7))], opset=13)
    one("Mod", "mod_int32_fmod", [I(np.array([7, -7, 7, -7], np.int32)), I(np.array([3, 3, -3, -3], np.int32))],
        dict(fmod=1), opset=13)
    one("Mod", "mod_float_fmod", [I(f32(r, 2, 3, 4) * 5), C(fl([1.5, -2.0, 0.7, 3.0]))], dict(fmod=1), opset=13)
    ln = "LayerNormalization"
    x = f32(r, 2, 5, 16) * 2 + 0.5
    one(ln, "layernorm_last", [I(x), C(f32(r, 16)), C(f32(r, 16))], opset=17)
    one(ln, "layernorm_axis1_noB", [I(x), C(f32(r, 5, 16))], dict(axis=1, epsilon=1e-3), opset=17)
    one(ln, "layernorm_stats", [I(f32(r, 3, 4, 8)), C(f32(r, 8)), C(f32(r, 8))], dict(axis=-1), nout=3, opset=17)
    one(ln, "layernorm_4d_axis2", [I(f32(r, 2, 3, 4, 5)), C(f32(r, 4, 5)), C(f32(r, 4, 5))], dict(axis=2),
        opset=17)
    g = np.concatenate([f32(r, 2, 3, 8).ravel() * 3, fl([0.0, -0.0, 6.0, -6.0, 12.0, -12.0])])
    one("Gelu", "gelu_none", [I(g)], opset=20, out_types={"y": (FL, list(g.shape))})
    one("Gelu", "gelu_tanh", [I(g)], dict(approximate="tanh"), opset=20, out_types={"y": (FL, list(g.shape))})
    # Swin's attention dropout exports as Dropout(ratio 0, training_mode true): y = x
    one("Dropout", "dropout_training_ratio0", [I(f32(r, 2, 3, 4)), C(fl(0.0)), C(np.array(True))], opset=13)
    sn = "ScatterND"
    d = f32(r, 4, 5, 6)
    one(sn, "scatternd_rows", [I(d), C(i64([[1], [3]])), I(f32(r, 2, 5, 6))], opset=13)
    one(sn, "scatternd_elems", [I(d), C(i64([[0, 1, 2], [3, 4, 5], [2, 2, 2]])), I(f32(r, 3))], opset=13)
    one(sn, "scatternd_add", [I(d), C(i64([[1, 1], [1, 1], [0, 4]])), I(f32(r, 3, 6))], dict(reduction="add"),
        opset=16)
    one(sn, "scatternd_int64", [I(i64([[0, 0, 0], [0, 0, 0]])), C(i64([[0, 1], [1, 2]])), I(i64([4, 5]))],
        opset=13)

    # float16 casts (mixed-precision exports): rounding to nearest even, subnormals, overflow
    h = fl([0.0, -0.0, 1.0, 1.0 + 2 ** -11, 1.0 + 3 * 2 ** -11, 65504.0, 65519.0, 65520.0, 1e6, -1e6, 6e-8, 3e-8,
            2.98e-8, 1e-5, -1e-5, 0.1, 3.14159, np.inf, -np.inf])
    one("Cast", "cast_float_to_float16", [I(h)], dict(to=TensorProto.FLOAT16), opset=13)
    one("Cast", "cast_float16_to_float", [I(h.astype(np.float16))], dict(to=TensorProto.FLOAT), opset=13)
    one("Cast", "cast_int64_to_float16", [I(i64([-70000, -2049, 2049, 3, 0]))], dict(to=TensorProto.FLOAT16),
        opset=13)
    one("Cast", "cast_float16_to_int64", [I(fl([-3.7, 0.5, 2049.0, 60000.0]).astype(np.float16))],
        dict(to=TensorProto.INT64), opset=13)
    # bicubic Resize (F.interpolate(mode="bicubic") exports: pytorch_half_pixel / align_corners, a = -0.75)
    rc = rng_for("Resize", "cubic")
    xc = f32(rc, 2, 3, 5, 6)
    one("Resize", "resize_cubic_pytorch_half_pixel_x2", [I(xc), None, C(fl([1, 1, 2, 2]))],
        dict(mode="cubic", coordinate_transformation_mode="pytorch_half_pixel"), opset=13)
    one("Resize", "resize_cubic_align_corners_sizes", [I(xc), None, None, C(i64([2, 3, 9, 4]))],
        dict(mode="cubic", coordinate_transformation_mode="align_corners"), opset=13)
    one("Resize", "resize_cubic_half_pixel_down", [I(f32(rc, 1, 2, 9, 8)), None, C(fl([1, 1, 0.5, 0.75]))],
        dict(mode="cubic"), opset=13)
    one("Resize", "resize_cubic_a05_exclude_outside", [I(xc), None, C(fl([1, 1, 1.5, 2.5]))],
        dict(mode="cubic", cubic_coeff_a=-0.5, exclude_outside=1), opset=13)
    one("Resize", "resize_cubic_2d_asymmetric", [I(f32(rc, 4, 5)), None, C(fl([2.0, 1.6]))],
        dict(mode="cubic", coordinate_transformation_mode="asymmetric"), opset=13)
    # Einsum (maxvit's attention; the forms of the ONNX node tests)
    re_ = rng_for("Einsum", "x")
    es = "Einsum"
    one(es, "einsum_maxvit_qk", [I(f32(re_, 2, 3, 2, 5, 4)), I(f32(re_, 2, 3, 2, 6, 4))],
        dict(equation="B G H I D, B G H J D -> B G H I J"), opset=13)
    one(es, "einsum_maxvit_av", [I(f32(re_, 2, 3, 2, 5, 6)), I(f32(re_, 2, 3, 2, 6, 4))],
        dict(equation="B G H I J, B G H J D -> B G H I D"), opset=13)
    one(es, "einsum_matmul", [I(f32(re_, 3, 4)), C(f32(re_, 4, 5))], dict(equation="ij,jk->ik"), opset=12)
    one(es, "einsum_implicit_transpose", [I(f32(re_, 3, 4))], dict(equation="ji"), opset=12)
    one(es, "einsum_sum", [I(f32(re_, 3, 4))], dict(equation="ij->i"), opset=12)
    one(es, "einsum_inner", [I(f32(re_, 7)), I(f32(re_, 7))], dict(equation="i,i"), opset=12)
    one(es, "einsum_batch_diagonal", [I(f32(re_, 3, 5, 5))], dict(equation="...ii->...i"), opset=12)
    one(es, "einsum_ellipsis_bcast", [I(f32(re_, 2, 1, 3, 4)), I(f32(re_, 1, 5, 4, 2))], dict(equation="...ij,...jk->...ik"),
        opset=12)
    one(es, "einsum_three", [I(f32(re_, 2, 3)), I(f32(re_, 3, 4)), I(f32(re_, 4))], dict(equation="ab,bc,c->a"),
        opset=12)
    one(es, "einsum_double", [I(re_.standard_normal((2, 3))), I(re_.standard_normal((3, 2)))],
        dict(equation="ij,jk->ik"), opset=12)


GENERATORS.append(gen_transformer)


def main():
    global OUT, ONLY
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--only", help="comma-separated op types")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    a = ap.parse_args()
    OUT = a.out
    if a.only:
        ONLY = set(a.only.split(","))
    if a.list:
        ONLY = set()
    for g in GENERATORS:
        g()
    if a.list:
        for op, name in CASES:
            print(f"{op}/{name}")
        return 0
    n = sum(1 for op, _ in CASES if ONLY is None or op in ONLY)
    ops = sorted({op for op, _ in CASES if ONLY is None or op in ONLY})
    print(f"gen-ops.py: wrote {n} cases of {len(ops)} ops under {OUT}; now run: node scripts/golden.mjs {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
