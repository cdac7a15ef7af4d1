#!/usr/bin/env node
// ort-run.mjs: runs an ONNX model in ONNX Runtime (onnxruntime-node, CPU) as
// the reference for qtool's tests. Install it with scripts/setup-node.sh.
//
//   node scripts/ort-run.mjs MODEL.onnx --input FILE.bin --shape N,C,H,W
//        [--output OUT.bin] [--opt disabled|basic|extended|all] [--threads N]
//        [--optimized-model PATH] [--time ITERS] [--check-load] [--count-ops]
//
// --input    raw little-endian float32 for the model's first input, shaped by
//            --shape (its size must be the product of the shape times 4 bytes)
// --output   writes the first output as raw little-endian float32
// stdout     one JSON line {"output": name, "shape": [...], "dtype": ...}
// --opt      graph optimization level (default: all, ORT's default)
// --threads  intra-op threads (default: ORT's choice); inter-op is 1
// --time N   runs 3 warm-ups then N timed runs, prints {"median_ms", "p90_ms"}
// --check-load  creates sessions with optimization 'disabled' and 'all';
//            exits 0, or 1 printing ORT's error (no --input needed)
// --count-ops   with --optimized-model PATH: has ORT write the optimized
//            graph there and prints {"ops": {OpType: count, ...}, "nodes": n}.
//            The model is then run only when --input holds data.
// Exit codes: 0 ok, 1 ONNX Runtime or file error, 2 bad usage.
import { createRequire } from 'node:module';
import fs from 'node:fs';

const require = createRequire(import.meta.url); // resolves from scripts/node_modules
let ort;
try {
    ort = require('onnxruntime-node');
} catch (e) {
    console.error(`ort-run: cannot load onnxruntime-node (run scripts/setup-node.sh): ${e.message}`);
    process.exit(1);
}

function usage(msg) {
    if (msg) console.error(`ort-run: ${msg}`);
    console.error('usage: node scripts/ort-run.mjs MODEL.onnx --input FILE.bin --shape N,C,H,W [--output OUT.bin]\n' +
        '       [--opt disabled|basic|extended|all] [--threads N] [--optimized-model PATH] [--time ITERS]\n' +
        '       [--check-load] [--count-ops]');
    process.exit(2);
}

const a = { opt: 'all' };
const argv = process.argv.slice(2);
const withValue = new Set(['--input', '--shape', '--output', '--opt', '--threads', '--optimized-model', '--time']);
for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (k === '-h' || k === '--help') usage();
    else if (k === '--check-load') a.checkLoad = true;
    else if (k === '--count-ops') a.countOps = true;
    else if (withValue.has(k)) {
        if (i + 1 >= argv.length) usage(`${k} needs a value`);
        a[k.slice(2).replace(/-(.)/g, (_, c) => c.toUpperCase())] = argv[++i];
    } else if (k.startsWith('-')) usage(`unknown option ${k}`);
    else if (a.model === undefined) a.model = k;
    else usage(`unexpected argument ${k}`);
}
if (!a.model) usage('no model given');
if (!['disabled', 'basic', 'extended', 'all'].includes(a.opt)) usage(`--opt ${a.opt}: use disabled, basic, extended or all`);
let threads;
if (a.threads !== undefined) {
    threads = Number(a.threads);
    if (!Number.isInteger(threads) || threads < 0) usage(`--threads ${a.threads}: not a count`);
}
let iters;
if (a.time !== undefined) {
    iters = Number(a.time);
    if (!Number.isInteger(iters) || iters < 1) usage(`--time ${a.time}: not a positive count`);
}
if (a.countOps && !a.optimizedModel) usage('--count-ops needs --optimized-model PATH');
if (!fs.existsSync(a.model)) {
    console.error(`ort-run: ${a.model}: no such file`);
    process.exit(1);
}

function options(level) {
    const o = { graphOptimizationLevel: level, executionProviders: ['cpu'], interOpNumThreads: 1, logSeverityLevel: 3 };
    if (threads !== undefined) o.intraOpNumThreads = threads;
    return o;
}

// --- a tiny protobuf reader: enough to list NodeProto.op_type of ModelProto.graph
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
// calls fn(field, wireType, value|[start,end]) for each field of buf[start, end)
function fields(buf, start, end, fn) {
    let pos = start;
    while (pos < end) {
        let key;
        [key, pos] = readVarint(buf, pos);
        const field = Number(key >> 3n), wt = Number(key & 7n);
        if (wt === 0) { let v; [v, pos] = readVarint(buf, pos); fn(field, wt, v); }
        else if (wt === 1) { pos += 8; }
        else if (wt === 5) { pos += 4; }
        else if (wt === 2) {
            let len; [len, pos] = readVarint(buf, pos);
            const s = pos, e = pos + Number(len);
            if (e > end) throw new Error('truncated field');
            fn(field, wt, [s, e]);
            pos = e;
        } else throw new Error(`unsupported wire type ${wt}`);
    }
    if (pos !== end) throw new Error('truncated message');
}
function countOps(path) {
    const buf = fs.readFileSync(path);
    const ops = {};
    let nodes = 0;
    fields(buf, 0, buf.length, (f, wt, v) => {           // ModelProto
        if (f !== 7 || wt !== 2) return;                    // graph
        fields(buf, v[0], v[1], (gf, gwt, gv) => {          // GraphProto
            if (gf !== 1 || gwt !== 2) return;              // node
            let op = '';
            fields(buf, gv[0], gv[1], (nf, nwt, nv) => {    // NodeProto
                if (nf === 4 && nwt === 2) op = buf.toString('utf8', nv[0], nv[1]); // op_type
            });
            ops[op] = (ops[op] || 0) + 1;
            nodes++;
        });
    });
    const sorted = {};
    for (const k of Object.keys(ops).sort()) sorted[k] = ops[k];
    return { ops: sorted, nodes };
}

function percentile(sorted, p) {
    // nearest-rank on the sorted list
    const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
    return sorted[i];
}
const round3 = (x) => Math.round(x * 1000) / 1000;

async function main() {
    if (a.checkLoad) {
        for (const level of ['disabled', 'all']) {
            try {
                const s = await ort.InferenceSession.create(a.model, options(level));
                if (s.release) await s.release();
            } catch (e) {
                console.log(`ort-run: ${a.model} does not load with optimization '${level}': ${e.message}`);
                return 1;
            }
        }
        console.log(JSON.stringify({ load: 'ok', levels: ['disabled', 'all'] }));
        if (!a.input && !a.countOps) return 0;
    }

    const o = options(a.opt);
    if (a.optimizedModel) o.optimizedModelFilePath = a.optimizedModel;
    let session;
    try {
        session = await ort.InferenceSession.create(a.model, o);
    } catch (e) {
        console.error(`ort-run: cannot create a session for ${a.model}: ${e.message}`);
        return 1;
    }
    if (a.countOps) {
        try {
            console.log(JSON.stringify(countOps(a.optimizedModel)));
        } catch (e) {
            console.error(`ort-run: cannot read ${a.optimizedModel}: ${e.message}`);
            return 1;
        }
    }

    if (a.input === undefined) {
        if (a.countOps || a.optimizedModel) return 0;
        usage('--input is needed');
    }
    if (a.shape === undefined) usage('--shape is needed with --input');
    const shape = a.shape.split(',').map(Number);
    if (shape.length === 0 || shape.some((d) => !Number.isInteger(d) || d < 0)) usage(`--shape ${a.shape}: not a list of sizes`);
    let data;
    try {
        data = fs.readFileSync(a.input);
    } catch (e) {
        console.error(`ort-run: cannot read ${a.input}: ${e.message}`);
        return 1;
    }
    if (a.countOps && data.length === 0) return 0;     // op count only
    const count = shape.reduce((x, y) => x * y, 1);
    if (data.length !== count * 4) {
        console.error(`ort-run: ${a.input} has ${data.length} bytes, shape [${shape}] needs ${count * 4}`);
        return 1;
    }
    const f32 = new Float32Array(count);
    for (let i = 0; i < count; i++) f32[i] = data.readFloatLE(i * 4);
    const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', f32, shape) };
    const outName = session.outputNames[0];
    let out;
    try {
        out = (await session.run(feeds, [outName]))[outName];
    } catch (e) {
        console.error(`ort-run: run failed: ${e.message}`);
        return 1;
    }
    console.log(JSON.stringify({ output: outName, shape: out.dims, dtype: out.type }));
    if (a.output) {
        const n = out.data.length;
        const buf = Buffer.alloc(n * 4);
        for (let i = 0; i < n; i++) buf.writeFloatLE(Number(out.data[i]), i * 4);
        try {
            fs.writeFileSync(a.output, buf);
        } catch (e) {
            console.error(`ort-run: cannot write ${a.output}: ${e.message}`);
            return 1;
        }
    }
    if (iters !== undefined) {
        for (let i = 0; i < 3; i++) await session.run(feeds, [outName]);
        const t = [];
        for (let i = 0; i < iters; i++) {
            const t0 = process.hrtime.bigint();
            await session.run(feeds, [outName]);
            t.push(Number(process.hrtime.bigint() - t0) / 1e6);
        }
        t.sort((x, y) => x - y);
        console.log(JSON.stringify({ median_ms: round3(t.length % 2 ? t[(t.length - 1) / 2] : (t[t.length / 2 - 1] + t[t.length / 2]) / 2), p90_ms: round3(percentile(t, 0.9)), iters }));
    }
    return 0;
}

main().then((rc) => process.exit(rc), (e) => {
    console.error(`ort-run: ${e && e.message ? e.message : e}`);
    process.exit(1);
});
