#!/usr/bin/python3
"""gen-ops-shape.py: extra test cases for the shape and pooling ops of lib/ops/ops-shape.def.

    /usr/bin/python3 scripts/gen-ops-shape.py [--out testdata/ops]
    node scripts/golden.mjs testdata/ops Slice/slice_neg_step_end_int64max ...   # the cases printed

scripts/gen-ops.py holds the main cases; these are regression cases for ONNX Runtime behaviour that
differs from the letter of the spec, found by differential fuzzing against onnxruntime-node. Same
layout and conventions as gen-ops.py (ir_version 7, checked with onnx.checker, seeded data, outputs
from scripts/golden.mjs); it writes only the cases listed here.
"""
import argparse
import os
import sys
import zlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = "testdata/ops"
INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1
CASES = []


def rng_for(op, name):
    return np.random.default_rng(zlib.crc32(f"{op}/{name}".encode()))


def case(op, name, attrs, x, inits, opset=13):
    """One node of type op on graph input x (float32) with initializers inits [(name, array)]."""
    names = ["x"] + [n for n, _ in inits]
    node = helper.make_node(op, names, ["y"], **attrs)
    g = helper.make_graph([node], f"{op}_{name}",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          initializer=[numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=7,
                          producer_name="qtool gen-ops-shape.py")
    m.graph.output[0].ClearField("type")  # typed by shape inference
    inf = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    m.graph.output[0].CopyFrom(inf.graph.output[0])
    onnx.checker.check_model(m)
    d = os.path.join(OUT, op, name)
    ds = os.path.join(d, "test_data_set_0")
    os.makedirs(ds, exist_ok=True)
    for f in os.listdir(ds):
        if f.endswith(".pb"):
            os.remove(os.path.join(ds, f))
    with open(os.path.join(d, "model.onnx"), "wb") as f:
        f.write(m.SerializeToString())
    with open(os.path.join(ds, "input_0.pb"), "wb") as f:
        f.write(numpy_helper.from_array(x, "x").SerializeToString())
    CASES.append(f"{op}/{name}")


def i64(v):
    return np.array(v, dtype=np.int64)


def gen_slice():
    # ONNX Runtime reads an end of INT64_MAX or INT32_MAX as "to the end in the step's direction"
    # (the spec clamps it to dim - 1, an empty slice for a negative step).
    for name, end in (("slice_neg_step_end_int64max", INT64_MAX), ("slice_neg_step_end_int32max", INT32_MAX)):
        x = rng_for("Slice", name).standard_normal((3, 5)).astype(np.float32)
        case("Slice", name, {}, x, [("s", i64([-2])), ("e", i64([end])), ("a", i64([1])), ("t", i64([-1]))])
    x = rng_for("Slice", "slice_neg_step2_both_max").standard_normal((2, 7, 3)).astype(np.float32)
    case("Slice", "slice_neg_step2_both_max", {}, x,
         [("s", i64([INT64_MAX, 0])), ("e", i64([INT64_MAX, INT64_MAX])), ("a", i64([1, 0])),
          ("t", i64([-2, 1]))])


def main():
    global OUT
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=OUT)
    OUT = ap.parse_args().out
    gen_slice()
    print(f"gen-ops-shape.py: wrote {len(CASES)} cases under {OUT}; now run:")
    print(f"node scripts/golden.mjs {OUT} " + " ".join(CASES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
