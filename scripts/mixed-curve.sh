#!/bin/sh
# mixed-curve.sh: the accuracy/size curve of one model, mixed precision
# against uniform weight widths. Not part of make check (minutes to hours).
#
#   sh scripts/mixed-curve.sh MODEL.onnx TRAIN HOLD CURVE.json [PREPROCESSING...]
#
# For each width B of MC_BITS (default "3 4 5 6 7 8") it runs
#   qtool MC_TOOL MODEL --data TRAIN --wbits B            (uniform, A8)
#   qtool MC_TOOL MODEL --data TRAIN --weight-budget Bbits (mixed, A8)
# (MC_TOOL calib by default, or finetune; MC_ARGS adds options to both, e.g.
# "--limit 128"), evaluates each result on HOLD against the float MODEL, and
# writes CURVE.json, the file `qtool eval --report DIR --curve CURVE.json`
# plots, and one Markdown row per run on stdout: held-out top-1, agreement,
# weight ROM bytes and average bits (quant_info.json "memory"), CPU seconds
# (user+sys) of the quantizing command. MC_SERIES=uniform or mixed runs one
# series only. The series are "uniform" and "mixed", with " finetune" after
# them for MC_TOOL=finetune; MC_APPEND=1 adds the points to an existing
# CURVE.json (e.g. finetune's beside calib's in one chart). Mixed at 8 bits is not run: a budget of 8bits is met by all
# 8-bit weights, the uniform W8 point, which both series share. Runs at --threads 1 (MC_THREADS), one command at a time.
set -eu
if [ $# -lt 4 ]; then
    echo "usage: sh scripts/mixed-curve.sh MODEL.onnx TRAIN HOLD CURVE.json [PREPROCESSING...]" >&2
    exit 2
fi
M=$1 TRAIN=$2 HOLD=$3 OUT=$4
shift 4
Q=${QTOOL:-./qtool}
TOOL=${MC_TOOL:-calib}
BITS=${MC_BITS:-3 4 5 6 7 8}
SERIES=${MC_SERIES:-uniform mixed}
TH=${MC_THREADS:-1}
for f in "$M" "$TRAIN" "$HOLD"; do
    [ -e "$f" ] || { echo "mixed-curve: '$f' does not exist" >&2; exit 1; }
done
case $TOOL in calib|finetune) ;; *) echo "mixed-curve: MC_TOOL '$TOOL' is not calib or finetune" >&2; exit 2;; esac
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
: >"$T/rows"
# the float model's own point (top-1 on HOLD; agreement 100 by definition)
ftop=$($Q eval "$M" --data "$HOLD" "$@" --latency-runs 0 --threads "$TH" -q --json - 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["top1"])')
echo "| series | run | held-out top-1 | agreement | weight bytes | avg bits | CPU s |"
echo "|---|---|---|---|---|---|---|"
for b in $BITS; do
    for s in $SERIES; do
        [ "$s" = mixed ] && [ "$b" = 8 ] && continue
        if [ "$s" = uniform ]; then opt="--wbits $b"; else opt="--weight-budget ${b}bits"; fi
        o=$T/$s$b.onnx
        # shellcheck disable=SC2086
        /usr/bin/time -f "%U %S" -o "$T/time" $Q "$TOOL" "$M" --data "$TRAIN" "$@" $opt ${MC_ARGS:-} \
            --threads "$TH" -q -o "$o" >"$T/log" 2>&1 ||
            { echo "mixed-curve: $TOOL $opt failed:" >&2; cat "$T/log" >&2; exit 1; }
        r=$($Q eval "$o" --data "$HOLD" "$@" --ref "$M" --latency-runs 0 --threads "$TH" -q --json - 2>/dev/null |
            python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["top1"], d["agreement"])')
        mem=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["memory"]; print(int(m["rom_bytes"]), m["weight_bits_avg"])' "$T/$s$b.json")
        cpu=$(awk '{printf "%.0f", $1 + $2}' "$T/time")
        echo "$s $b $r $mem $cpu" >>"$T/rows"
        echo "$s $b $r $mem $cpu" | awk -v tool="$TOOL" -v opt="$opt" \
            '{printf "| %s | %s %s | %.2f | %.2f | %d | %.2f | %s |\n", $1, tool, opt, $3, $4, $5, $6, $7}'
    done
done
python3 - "$T/rows" "$OUT" "$M" "$TOOL" "$ftop" "${MC_APPEND:-0}" <<'EOF'
import json, os, sys
rows, out, model, tool, ftop, append = sys.argv[1:7]
doc = {"model": os.path.basename(model), "float_top1": round(float(ftop), 4), "points": []}
if append == "1" and os.path.exists(out):
    doc = json.load(open(out))
for line in open(rows):
    s, b, top1, agr, rom, avg, cpu = line.split()
    opt = "--wbits %s" % b if s == "uniform" else "--weight-budget %sbits" % b
    doc["points"].append({"series": s if tool == "calib" else "%s %s" % (s, tool), "label": "%s %s" % (tool, opt),
                          "weight_bytes": int(rom), "avg_bits": round(float(avg), 4), "top1": round(float(top1), 4),
                          "agreement": round(float(agr), 4), "cpu_s": int(cpu)})
with open(out + ".tmp", "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")
os.replace(out + ".tmp", out)
EOF
