"""onnxedit.py: tiny ONNX byte editing for tests, without the onnx package
(CI may lack it): walks ModelProto -> GraphProto -> TensorProto fields."""
import struct


def _varint(b, i):
    r = s = 0
    while True:
        c = b[i]; i += 1
        r |= (c & 0x7f) << s; s += 7
        if not c & 0x80:
            return r, i


def _fields(b):
    i = 0
    while i < len(b):
        key, j = _varint(b, i)
        wt = key & 7
        if wt == 0:
            _, k = _varint(b, j)
        elif wt == 1:
            k = j + 8
        elif wt == 5:
            k = j + 4
        elif wt == 2:
            n, j = _varint(b, j); k = j + n
        else:
            raise ValueError("wire type")
        yield key >> 3, wt, i, j, k
        i = k


def set_first_float_initializer_nan(src, dst):
    """Writes dst = src with the first float32 raw_data initializer's first value NaN."""
    b = bytearray(open(src, "rb").read())
    for f, wt, _, gs, ge in _fields(bytes(b)):
        if f == 7 and wt == 2:
            for f2, wt2, _, ts, te in _fields(bytes(b[gs:ge])):
                if f2 == 5 and wt2 == 2:
                    t = bytes(b[gs + ts:gs + te])
                    dtype = next((_varint(t, vs)[0] for f3, w3, _, vs, _ in _fields(t) if f3 == 2), None)
                    for f3, w3, _, rs, re_ in _fields(t):
                        if f3 == 9 and dtype == 1 and re_ - rs >= 4:
                            o = gs + ts + rs
                            b[o:o + 4] = struct.pack("<f", float("nan"))
                            open(dst, "wb").write(bytes(b))
                            return
    raise ValueError("no float initializer with raw_data")


def scale_initializer(src, dst, name, start, count, factor, add=0.0):
    """Writes dst = src with values [start, start+count) of the float32 raw_data
    initializer `name` multiplied by factor and then `add` added."""
    b = bytearray(open(src, "rb").read())
    for f, wt, _, gs, ge in _fields(bytes(b)):
        if f == 7 and wt == 2:
            for f2, wt2, _, ts, te in _fields(bytes(b[gs:ge])):
                if f2 != 5 or wt2 != 2:
                    continue
                t = bytes(b[gs + ts:gs + te])
                tname = next((t[vs:ve].decode() for f3, w3, _, vs, ve in _fields(t) if f3 == 8), None)
                if tname != name:
                    continue
                for f3, w3, _, rs, re_ in _fields(t):
                    if f3 == 9 and re_ - rs >= 4 * (start + count):
                        for k in range(start, start + count):
                            o = gs + ts + rs + 4 * k
                            v = struct.unpack("<f", b[o:o + 4])[0]
                            b[o:o + 4] = struct.pack("<f", v * factor + add)
                        open(dst, "wb").write(bytes(b))
                        return
    raise ValueError("no float raw_data initializer " + name)


def map_float_initializers(src, dst, fn, first_only=False):
    """Writes dst = src with every float32 raw_data initializer's values v[i]
    replaced by fn(name, i, v) (with first_only, only the first initializer)."""
    b = bytearray(open(src, "rb").read())
    done = False
    for f, wt, _, gs, ge in _fields(bytes(b)):
        if f != 7 or wt != 2:
            continue
        for f2, wt2, _, ts, te in _fields(bytes(b[gs:ge])):
            if f2 != 5 or wt2 != 2 or (first_only and done):
                continue
            t = bytes(b[gs + ts:gs + te])
            dtype = next((_varint(t, vs)[0] for f3, w3, _, vs, _ in _fields(t) if f3 == 2), None)
            name = next((t[vs:ve].decode() for f3, w3, _, vs, ve in _fields(t) if f3 == 8), "")
            for f3, w3, _, rs, re_ in _fields(t):
                if f3 == 9 and dtype == 1:
                    o = gs + ts + rs
                    n = (re_ - rs) // 4
                    vals = struct.unpack("<%df" % n, bytes(b[o:o + 4 * n]))
                    b[o:o + 4 * n] = struct.pack("<%df" % n, *(fn(name, i, v) for i, v in enumerate(vals)))
                    done = True
    if not done:
        raise ValueError("no float initializer with raw_data")
    open(dst, "wb").write(bytes(b))


def raw_initializers(path, dtypes=(2, 3)):
    """{name: raw_data bytes} of the initializers whose data_type is in dtypes
    (default UINT8 2 and INT8 3: a QDQ file's quantized weights)."""
    b = open(path, "rb").read()
    out = {}
    for f, wt, _, gs, ge in _fields(b):
        if f != 7 or wt != 2:
            continue
        for f2, wt2, _, ts, te in _fields(b[gs:ge]):
            if f2 != 5 or wt2 != 2:
                continue
            t = b[gs + ts:gs + te]
            dtype = next((_varint(t, vs)[0] for f3, w3, _, vs, _ in _fields(t) if f3 == 2), None)
            name = next((t[vs:ve].decode() for f3, w3, _, vs, ve in _fields(t) if f3 == 8), "")
            raw = next((t[rs:re_] for f3, w3, _, rs, re_ in _fields(t) if f3 == 9), None)
            if dtype in dtypes and raw is not None:
                out[name] = raw
    return out


def _enc_varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        c = n & 0x7f; n >>= 7
        out.append(c | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _rewrite(b, path, fn):
    """b with the length-delimited fields along path (field numbers, outermost
    first) re-encoded; at the end of the path, fn(payload) -> new payload."""
    out = bytearray()
    for f, wt, i, j, k in _fields(b):
        if f == path[0] and wt == 2:
            sub = fn(b[j:k]) if len(path) == 1 else _rewrite(b[j:k], path[1:], fn)
            out += _enc_varint(f << 3 | 2) + _enc_varint(len(sub)) + sub
        else:
            out += b[i:k]
    return bytes(out)


def set_input_dims(src, dst, fn):
    """Writes dst = src with the declared dims of every graph input replaced:
    fn(input_index, dims) -> new dims (a dim_param counts as -1 and is kept
    symbolic when fn returns -1 for it)."""
    b = open(src, "rb").read()
    count = [0]

    def shape(s):  # TensorShapeProto: dim = 1 (Dimension: dim_value 1, dim_param 2)
        dims = []
        for f, wt, i, j, k in _fields(s):
            if f == 1 and wt == 2:
                d = s[j:k]
                v = next((_varint(d, vs)[0] for f2, w2, _, vs, _ in _fields(d) if f2 == 1 and w2 == 0), None)
                dims.append((v if v is not None else -1, d))
        new = fn(count[0] - 1, [v for v, _ in dims])
        out = b""
        for n, (v, d) in zip(new, dims + [(None, None)] * (len(new) - len(dims))):
            body = d if n == -1 and v == -1 else _enc_varint(1 << 3) + _enc_varint(max(n, 0))
            out += _enc_varint(1 << 3 | 2) + _enc_varint(len(body)) + body
        return out

    def value_info(v):
        count[0] += 1
        return _rewrite(v, [2, 1, 2], shape)  # type -> tensor_type -> shape

    open(dst, "wb").write(_rewrite(b, [7, 11], value_info))
