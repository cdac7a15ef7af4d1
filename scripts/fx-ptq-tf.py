#!/usr/bin/python3
"""fx-ptq-tf.py: the PyTorch reference for qtool's transformer quantization
(issue 19): torchvision 0.14 vit_b_32 / swin_t with random weights, exported
to ONNX, and the same model through PyTorch 1.13 FX post-training
quantization, judged against its float self on the same images qtool is
judged on.

    /usr/bin/python3 scripts/fx-ptq-tf.py export NAME OUT.onnx [--opset N]
    /usr/bin/python3 scripts/fx-ptq-tf.py ptq NAME --calib CALIB.bin --eval EVAL.bin [--json FILE]

export: torch.manual_seed(0), torchvision's random initialisation, the
classification head (torchvision starts ViT's at zero) re-drawn from
N(0, 0.02) with a zero bias, eval mode, torch.onnx.export at 224x224 with
grad enabled (ViT's fused inference path does not export), input 'input',
output 'logits', dynamic batch. vit_b_32 defaults to opset 13 (LayerNorm
exported as ReduceMean/Sub/Pow/Sqrt/Div/Mul/Add, GELU as Div/Erf/Add/Mul/Mul),
swin_t to opset 17 (native LayerNormalization).

ptq: CALIB.bin and EVAL.bin are raw float32 [N,3,224,224] preprocessed
images as `qtool eval --save-inputs` writes them (so both tools see the very
same tensors). prepare_fx with get_default_qconfig_mapping(ENGINE), one
calibration pass over CALIB.bin, convert_fx; then float and quantized models
on EVAL.bin: top-1 agreement and output SQNR (10 log10(sum f^2 / sum (q-f)^2)
over all outputs). The engine is onednn (Debian's torch has no fbgemm;
onednn takes fbgemm's qconfig). Modules FX cannot trace (ViT's
nn.MultiheadAttention: its forward branches on tensor shapes) are left as
float leaves; swin_t's attention is an fx.wrap'ed function and stays float
likewise. Prints one JSON line.
"""
import argparse
import json
import sys

import numpy as np
import torch
import torchvision

DEFAULT_OPSET = {"vit_b_32": 13, "swin_t": 17}


def build(name):
    torch.manual_seed(0)
    m = getattr(torchvision.models, name)(weights=None)
    head = m.heads.head if name.startswith("vit") else m.head
    with torch.no_grad():
        head.weight.normal_(0, 0.02, generator=torch.Generator().manual_seed(1))
        head.bias.zero_()
    return m.eval()


def export(a):
    m = build(a.name)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    # grad enabled: with no_grad torch 1.13 takes ViT's fused encoder path, which does not export
    torch.onnx.export(m, x, a.out, opset_version=a.opset or DEFAULT_OPSET[a.name], input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                      do_constant_folding=True)
    print(json.dumps({"model": a.name, "onnx": a.out, "opset": a.opset or DEFAULT_OPSET[a.name]}))


def _encoder_block_forward(self, input):
    # torchvision's EncoderBlock.forward with `x, _ = attention(...)` written as `[0]`: the same
    # computation, but FX under Python 3.11 cannot unpack a leaf module's output proxy
    x = self.ln_1(input)
    x = self.self_attention(query=x, key=x, value=x, need_weights=False)[0]
    x = self.dropout(x)
    x = x + input
    return x + self.mlp(self.ln_2(x))


def load(path):
    return torch.from_numpy(np.fromfile(path, dtype="<f4").reshape(-1, 3, 224, 224).copy())


def run(m, x, bs=16):
    with torch.no_grad():
        return torch.cat([m(x[i:i + bs]) for i in range(0, len(x), bs)])


def ptq(a):
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    torch.set_num_threads(a.threads)
    torch.backends.quantized.engine = a.engine
    m = build(a.name)
    calib, ev = load(a.calib), load(a.eval)
    ref = run(m, ev)
    qmap = get_default_qconfig_mapping(a.engine if a.engine != "onednn" else "fbgemm")
    q = build(a.name)
    with torch.no_grad():
        if a.name.startswith("vit"):
            # ViT.forward unpacks x.shape (untraceable): its parts are prepared one by one, the class
            # token concatenation between them stays float glue
            cfg = {"non_traceable_module_classes": [torch.nn.MultiheadAttention]}
            from torchvision.models.vision_transformer import EncoderBlock
            EncoderBlock.forward = _encoder_block_forward
            x0 = calib[:1]
            t0 = q.conv_proj(x0)
            q.conv_proj = prepare_fx(q.conv_proj, qmap, (x0,))
            e0 = q._process_input(x0)
            e0 = torch.cat([q.class_token.expand(1, -1, -1), e0], dim=1)
            h0 = q.encoder(e0)[:, 0]
            q.encoder = prepare_fx(q.encoder, qmap, (e0,), prepare_custom_config=cfg)
            q.heads = prepare_fx(q.heads, qmap, (h0,))
            del t0
            run(q, calib)
            q.conv_proj, q.encoder, q.heads = convert_fx(q.conv_proj), convert_fx(q.encoder), convert_fx(q.heads)
        else:
            p = prepare_fx(q, qmap, (calib[:1],))
            run(p, calib)
            q = convert_fx(p)
    out = run(q, ev)
    f, d = ref.double(), (out.double() - ref.double())
    sqnr = 10 * np.log10(float((f * f).sum()) / max(float((d * d).sum()), 1e-300))
    agree = float((out.argmax(1) == ref.argmax(1)).double().mean()) * 100
    gms = [q.conv_proj, q.encoder, q.heads] if a.name.startswith("vit") else [q]
    nq = sum(1 for gm in gms for n in gm.graph.nodes
             if n.op == "call_function" and "quantize_per_tensor" in str(n.target))
    r = {"model": a.name, "tool": "pytorch-fx-ptq", "engine": a.engine, "calib_images": len(calib),
         "eval_images": len(ev), "agreement": round(agree, 2), "sqnr_db": round(sqnr, 2),
         "quantize_nodes": nq, "float_classes_predicted": int(len(set(ref.argmax(1).tolist())))}
    s = json.dumps(r)
    print(s)
    if a.json:
        with open(a.json, "w") as fh:
            fh.write(s + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("name", choices=sorted(DEFAULT_OPSET))
    e.add_argument("out")
    e.add_argument("--opset", type=int)
    p = sub.add_parser("ptq")
    p.add_argument("name", choices=sorted(DEFAULT_OPSET))
    p.add_argument("--calib", required=True)
    p.add_argument("--eval", required=True)
    p.add_argument("--engine", default="onednn")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json")
    a = ap.parse_args()
    return export(a) if a.cmd == "export" else ptq(a)


if __name__ == "__main__":
    sys.exit(main())
