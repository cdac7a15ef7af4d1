#!/usr/bin/python3
"""bench-macs.py MODEL.onnx: multiply-accumulates of one image (batch 1) through
the model's Conv, ConvInteger/QLinearConv, Gemm, MatMul (and their integer
forms), counted from ONNX shape inference with the batch axis set to 1; where
that leaves a shape unknown (a transformer's Reshape of computed shapes), from
the shapes ONNX Runtime gives those tensors on a zero input (the model with
them as extra outputs, run by onnxruntime-node from scripts/node_modules);
prints the count as one integer. make bench (scripts/bench.sh) turns it into GFLOP/s
(2 operations per MAC) for a float run and GOP/s for an int8 run."""
import json
import os
import subprocess
import sys
import tempfile

import onnx
from onnx import shape_inference


OPS = ("Conv", "ConvInteger", "QLinearConv", "Gemm", "MatMul", "MatMulInteger", "QLinearMatMul", "QGemm")


def known(m, v):
    for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        if vi.name == v:
            d = vi.type.tensor_type.shape.dim
            return len(d) > 0 and all(x.HasField("dim_value") for x in d)
    return any(t.name == v for t in m.graph.initializer)


def dims(vi):
    return [d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim]


NODE_SHAPES = """
import { createRequire } from 'node:module';
const require = createRequire(process.argv[2]);
const ort = require('onnxruntime-node');
const s = await ort.InferenceSession.create(process.argv[1], {graphOptimizationLevel: 'disabled'});
const feeds = {};
for (const name of s.inputNames) feeds[name] = new ort.Tensor('float32', new Float32Array(3 * 224 * 224), [1, 3, 224, 224]);
const r = await s.run(feeds);
const out = {};
for (const k of s.outputNames) out[k] = r[k].dims.map(Number);
console.log(JSON.stringify(out));
"""


def ort_shapes(m, names):
    """Shapes of the tensors `names` at batch 1, from ONNX Runtime."""
    have = {o.name for o in m.graph.output}
    for nm in names:
        if nm not in have:
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(nm))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.onnx")
        onnx.save(m, path)
        here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ort-run.mjs")
        r = subprocess.run(["node", "--input-type=module", "-e", NODE_SHAPES, path, here],
                           capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


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
    missing = [v for n in m.graph.node if n.op_type in OPS for v in (n.input[0], n.output[0])
               if not known(m, v)]
    if missing:
        shp.update(ort_shapes(m, sorted(set(missing))))
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
