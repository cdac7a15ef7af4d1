#!/usr/bin/env python3
"""cmpraw.py A.bin B.bin [TOL]: compares two raw little-endian float32 files.
Prints the max abs difference, max |B| and their ratio; exits 1 when the ratio
(difference relative to the output's scale) exceeds TOL (default 1e-4) or the
sizes differ. With --top1 K it also prints the top-1 agreement over rows of K,
and the largest top-1/top-2 margin of B among the rows that disagree (a
disagreement on a near-tie, margin under max_abs_diff, is rounding, not a bug)."""
import struct, sys

args = [a for a in sys.argv[1:]]
k = None
if "--top1" in args:
    i = args.index("--top1"); k = int(args[i + 1]); del args[i:i + 2]
a_path, b_path = args[0], args[1]
tol = float(args[2]) if len(args) > 2 else 1e-4
a = open(a_path, "rb").read(); b = open(b_path, "rb").read()
if len(a) != len(b) or len(a) % 4:
    print(f"sizes differ: {len(a)} and {len(b)} bytes"); sys.exit(1)
n = len(a) // 4
fa = struct.unpack(f"<{n}f", a); fb = struct.unpack(f"<{n}f", b)
md = max(abs(x - y) for x, y in zip(fa, fb)) if n else 0.0
mb = max(abs(y) for y in fb) if n else 0.0
rel = md / mb if mb else md
msg = f"max_abs_diff={md:.3g} max_abs_ref={mb:.3g} rel={rel:.3g}"
if k:
    rows = n // k; agree = 0; worst = 0.0
    for r in range(rows):
        ra = fa[r * k:(r + 1) * k]; rb = fb[r * k:(r + 1) * k]
        if ra.index(max(ra)) == rb.index(max(rb)):
            agree += 1
        else:
            top = sorted(rb)[-2:]
            worst = max(worst, top[1] - top[0])
    msg += f" top1_agree={agree}/{rows} disagree_margin={worst:.3g}"
print(msg)
sys.exit(0 if rel <= tol else 1)
