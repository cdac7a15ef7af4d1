#!/usr/bin/env node
// golden.mjs: writes the expected outputs of the per-operator test cases
// with ONNX Runtime (onnxruntime-node, CPU, graphOptimizationLevel 'disabled',
// 1 thread), the backend-test layout made by scripts/gen-ops*.py:
//   ROOT/<OpType>/<case>/model.onnx
//   ROOT/<OpType>/<case>/test_data_set_0/input_<i>.pb   (read: graph inputs in order)
//   ROOT/<OpType>/<case>/test_data_set_0/output_<i>.pb  (written: graph outputs in order)
//
//   node scripts/golden.mjs [ROOT (default testdata/ops)] [OpType | OpType/case ...]
//
// Runs every case (or the named ones), prints one line per failure and a
// summary; exits 1 when any case fails to load or run. Needs
// scripts/setup-node.sh. The TensorProto reader/writer here is minimal:
// dims (1), data_type (2), typed data fields (4, 5, 7, 10, 11), name (8),
// raw_data (9); outputs are written with raw_data (little-endian).
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const require = createRequire(import.meta.url);
let ort;
try {
    ort = require('onnxruntime-node');
} catch (e) {
    console.error(`golden: cannot load onnxruntime-node (run scripts/setup-node.sh): ${e.message}`);
    process.exit(1);
}

// ONNX TensorProto.DataType <-> onnxruntime-node tensor type
const TYPES = {
    1: { ort: 'float32', size: 4, arr: Float32Array },
    2: { ort: 'uint8', size: 1, arr: Uint8Array },
    3: { ort: 'int8', size: 1, arr: Int8Array },
    4: { ort: 'uint16', size: 2, arr: Uint16Array },
    5: { ort: 'int16', size: 2, arr: Int16Array },
    6: { ort: 'int32', size: 4, arr: Int32Array },
    7: { ort: 'int64', size: 8, arr: BigInt64Array },
    9: { ort: 'bool', size: 1, arr: Uint8Array },
    10: { ort: 'float16', size: 2, arr: Uint16Array },
    11: { ort: 'float64', size: 8, arr: Float64Array },
    12: { ort: 'uint32', size: 4, arr: Uint32Array },
    13: { ort: 'uint64', size: 8, arr: BigUint64Array },
};
const ORT_TO_ONNX = Object.fromEntries(Object.entries(TYPES).map(([k, v]) => [v.ort, Number(k)]));

// ---- protobuf
function readVarint(buf, pos) {
    let v = 0n, shift = 0n;
    for (;;) {
        if (pos >= buf.length) throw new Error('truncated varint');
        const b = buf[pos++];
        v |= BigInt(b & 0x7f) << shift;
        if (!(b & 0x80)) return [v, pos];
        shift += 7n;
    }
}
function toSigned64(v) { return BigInt.asIntN(64, v); }

function decodeTensor(buf) {
    const t = { dims: [], dataType: 0, name: '', raw: null, f32: [], i32: [], i64: [], f64: [], u64: [] };
    let pos = 0;
    const packedOrOne = (wt, s, e, readOne, p0) => {
        // repeated scalar: either one value (wt 0/1/5) or packed (wt 2)
        if (wt !== 2) return readOne(p0);
        const out = [];
        let p = s;
        while (p < e) { const [v, np] = readOne(p); out.push(v); p = np; }
        return [out, e];
    };
    while (pos < buf.length) {
        let key;
        [key, pos] = readVarint(buf, pos);
        const f = Number(key >> 3n), wt = Number(key & 7n);
        let s = pos, e = pos;
        if (wt === 2) {
            let len; [len, pos] = readVarint(buf, pos);
            s = pos; e = pos + Number(len); pos = e;
            if (e > buf.length) throw new Error('truncated field');
        }
        const varint = (p) => { const [v, np] = readVarint(buf, p); return [toSigned64(v), np]; };
        const fixed32f = (p) => [buf.readFloatLE(p), p + 4];
        const fixed64d = (p) => [buf.readDoubleLE(p), p + 8];
        let vals, np;
        switch (f) {
        case 1: [vals, np] = packedOrOne(wt, s, e, varint, pos); t.dims.push(...[].concat(vals).map(Number)); break;
        case 2: [vals, np] = varint(pos); t.dataType = Number(vals); break;
        case 4: [vals, np] = packedOrOne(wt, s, e, fixed32f, pos); t.f32.push(...[].concat(vals)); break;
        case 5: [vals, np] = packedOrOne(wt, s, e, varint, pos); t.i32.push(...[].concat(vals).map(Number)); break;
        case 7: [vals, np] = packedOrOne(wt, s, e, varint, pos); t.i64.push(...[].concat(vals)); break;
        case 8: t.name = buf.toString('utf8', s, e); break;
        case 9: t.raw = buf.subarray(s, e); break;
        case 10: [vals, np] = packedOrOne(wt, s, e, fixed64d, pos); t.f64.push(...[].concat(vals)); break;
        case 11: [vals, np] = packedOrOne(wt, s, e, (p) => readVarint(buf, p), pos); t.u64.push(...[].concat(vals)); break;
        default:
            if (wt === 0) [, np] = readVarint(buf, pos);
            else if (wt === 1) np = pos + 8;
            else if (wt === 5) np = pos + 4;
            else if (wt !== 2) throw new Error(`wire type ${wt}`);
        }
        if (wt !== 2 && np !== undefined) pos = np;
    }
    return t;
}

function tensorToOrt(t) {
    const ty = TYPES[t.dataType];
    if (!ty) throw new Error(`tensor '${t.name}': data type ${t.dataType} not supported`);
    const n = t.dims.reduce((a, b) => a * b, 1);
    const data = new ty.arr(n);
    if (t.raw) {
        if (t.raw.length !== n * ty.size) throw new Error(`tensor '${t.name}': raw_data has ${t.raw.length} bytes, want ${n * ty.size}`);
        const copy = Buffer.from(t.raw); // aligned copy
        data.set(new ty.arr(copy.buffer, copy.byteOffset, n));
    } else {
        const src = { 1: t.f32, 11: t.f64, 7: t.i64, 13: t.u64 }[t.dataType] || t.i32;
        if (src.length !== n) throw new Error(`tensor '${t.name}': ${src.length} values, want ${n}`);
        for (let i = 0; i < n; i++) data[i] = (ty.arr === BigInt64Array || ty.arr === BigUint64Array) ? BigInt(src[i]) : Number(src[i]);
    }
    return new ort.Tensor(ty.ort, t.dataType === 9 ? Uint8Array.from(data, (v) => (v ? 1 : 0)) : data, t.dims);
}

function varint(v) {
    let x = BigInt.asUintN(64, BigInt(v));
    const out = [];
    do {
        let b = Number(x & 0x7fn);
        x >>= 7n;
        if (x) b |= 0x80;
        out.push(b);
    } while (x);
    return Buffer.from(out);
}
function lenField(field, bytes) {
    return Buffer.concat([varint((field << 3) | 2), varint(bytes.length), bytes]);
}

function encodeTensor(name, tensor) {
    const dt = ORT_TO_ONNX[tensor.type];
    if (!dt) throw new Error(`output '${name}': type ${tensor.type} not supported`);
    const parts = [];
    for (const d of tensor.dims) parts.push(varint(1 << 3), varint(d)); // dims, unpacked (proto2)
    parts.push(varint(2 << 3), varint(dt));                           // data_type
    parts.push(lenField(8, Buffer.from(name, 'utf8')));                // name
    const data = tensor.data;
    let raw;
    if (tensor.type === 'bool') raw = Buffer.from(Uint8Array.from(data, (v) => (v ? 1 : 0)));
    else raw = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    parts.push(lenField(9, Buffer.from(raw)));                         // raw_data (host = little-endian)
    return Buffer.concat(parts);
}

// ---- cases
function listCases(root, filters) {
    const out = [];
    for (const op of fs.readdirSync(root).sort()) {
        const od = path.join(root, op);
        if (!fs.statSync(od).isDirectory()) continue;
        for (const c of fs.readdirSync(od).sort()) {
            const d = path.join(od, c);
            if (!fs.existsSync(path.join(d, 'model.onnx'))) continue;
            if (filters.length && !filters.some((f) => f === op || f === `${op}/${c}`)) continue;
            out.push({ id: `${op}/${c}`, dir: d });
        }
    }
    return out;
}

async function runCase(c) {
    const ds = path.join(c.dir, 'test_data_set_0');
    const session = await ort.InferenceSession.create(path.join(c.dir, 'model.onnx'), {
        graphOptimizationLevel: 'disabled', executionProviders: ['cpu'], intraOpNumThreads: 1, interOpNumThreads: 1,
        logSeverityLevel: 3,
    });
    const feeds = {};
    session.inputNames.forEach((n, i) => {
        const p = path.join(ds, `input_${i}.pb`);
        if (!fs.existsSync(p)) throw new Error(`missing ${p} for input '${n}'`);
        feeds[n] = tensorToOrt(decodeTensor(fs.readFileSync(p)));
    });
    const extra = path.join(ds, `input_${session.inputNames.length}.pb`);
    if (fs.existsSync(extra)) throw new Error(`${extra}: more input files than graph inputs`);
    const res = await session.run(feeds);
    for (const f of fs.readdirSync(ds)) if (/^output_\d+\.pb$/.test(f)) fs.rmSync(path.join(ds, f));
    session.outputNames.forEach((n, i) => {
        fs.writeFileSync(path.join(ds, `output_${i}.pb`), encodeTensor(n, res[n]));
    });
    if (session.release) await session.release();
}

async function main() {
    const args = process.argv.slice(2);
    let root = 'testdata/ops';
    if (args.length && fs.existsSync(args[0]) && fs.statSync(args[0]).isDirectory()) root = args.shift();
    if (!fs.existsSync(root)) {
        console.error(`golden: ${root}: no such folder (run scripts/gen-ops.py first)`);
        return 1;
    }
    const cases = listCases(root, args);
    if (!cases.length) {
        console.error(`golden: no cases under ${root}${args.length ? ' matching ' + args.join(' ') : ''}`);
        return 1;
    }
    let bad = 0;
    for (const c of cases) {
        try {
            await runCase(c);
        } catch (e) {
            bad++;
            console.log(`golden: FAIL ${c.id}: ${String(e.message || e).split('\n')[0]}`);
        }
    }
    console.log(`golden: ${cases.length - bad} of ${cases.length} cases written under ${root}${bad ? `, ${bad} failed` : ''}`);
    return bad ? 1 : 0;
}

main().then((rc) => process.exit(rc), (e) => {
    console.error(`golden: ${e && e.message ? e.message : e}`);
    process.exit(1);
});
