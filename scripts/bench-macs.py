#!/usr/bin/python3
"""bench-macs.py MODEL.onnx: multiply-accumulates of one image (batch 1) through
the model's Conv, ConvInteger/QLinearConv, Gemm, MatMul (and their integer
forms), counted from ONNX shape inference with the batch axis set to 1; prints
the count as one integer. make bench (scripts/bench.sh) turns it into GFLOP/s
(2 operations per MAC) for a float run and GOP/s for an int8 run."""
import sys

import onnx
from onnx import shape_inference


def dims(vi):
    return [d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim]


def main():
    m = onnx.load(sys.argv[1], load_external_data=False)
    for t in list(m.graph.input) + list(m.graph.output):
        d = t.type.tensor_type.shape.dim
        if d and not d[0].HasField("dim_value"):
            d[0].dim_value = 1
    m = shape_inference.infer_shapes(m)
    shp = {vi.name: dims(vi) for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output)}
    for t in m.graph.initializer:
        shp[t.name] = list(t.dims)
    macs = 0
    for n in m.graph.node:
        if n.op_type in ("Conv", "ConvInteger", "QLinearConv"):
            w = shp.get(n.input[3 if n.op_type == "QLinearConv" else 1])
            y = shp.get(n.output[0])
            if w and y:
                k = 1
                for v in w[1:]:
                    k *= v
                o = 1
                for v in y:
                    o *= v
                macs += o * k
        elif n.op_type in ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul", "QGemm"):
            a = shp.get(n.input[0])
            y = shp.get(n.output[0])
            if a and y:
                kdim = a[-1]
                if n.op_type == "Gemm":
                    ta = [x.i for x in n.attribute if x.name == "transA"]
                    kdim = a[0] if ta and ta[0] else a[-1]
                o = 1
                for v in y:
                    o *= v
                macs += o * kdim
    print(macs)


if __name__ == "__main__":
    main()
