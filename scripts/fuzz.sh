#!/bin/sh
# fuzz.sh: runs the libFuzzer targets of `make fuzz` (lib/test/fuzz_*.c).
#   scripts/fuzz.sh seeds              write the seed corpora build/fuzz/seeds/TARGET from testdata/
#                                      (with every op case again at zero-sized and all-ones input shapes)
#   scripts/fuzz.sh run SECS [TARGET]  fuzz each target (or one) for SECS seconds (default 60)
#   scripts/fuzz.sh replay             run every target once over testdata/bad/fuzz-TARGET-* (regressions)
# Longer runs, e.g. 10 minutes per target in the background at low priority:
#   nice -n 19 scripts/fuzz.sh run 600 >build/fuzz/run.log 2>&1 &
# The growing corpus is kept in build/fuzz/corpus/TARGET (seeds are merged in on each run);
# a crash is written to build/fuzz/crash-TARGET-*: copy it to testdata/bad/fuzz-TARGET-NAME,
# fix the bug, and scripts/t-bad.sh replays it from then on. Each run prints one line
# "fuzz TARGET: N executions in S s, C crashes" (grep '^fuzz ' for the record).
# The mutation sequence is seeded (FUZZ_SEED, default 1) so a CI run over the same commit
# explores the same inputs; FUZZ_SEED=0 lets libFuzzer pick one (exploratory runs).
# Memory: rss limit 2 GiB; the ONNX target plans at most 64 MiB (QT_MEM_LIMIT_MB).
set -u
cd "$(dirname "$0")/.."
F=build/fuzz
TARGETS="onnx quant image config qinfo"

seeds() {
    rm -rf $F/seeds && mkdir -p $F/seeds/onnx $F/seeds/quant $F/seeds/image $F/seeds/config $F/seeds/qinfo
    # ONNX: every small model of testdata (op cases, the bundled models)
    find testdata -name '*.onnx' -size -64k | sort | while read -r f; do
        cp "$f" "$F/seeds/onnx/$(echo "$f" | tr / _)"
    done
    cp testdata/fmnist/model.onnx $F/seeds/onnx/fmnist_model.onnx
    # zero-sized and degenerate shapes for every operator: each op case again with its graph inputs'
    # dim 1 (dim 0 of a vector) at 0, and with every dim after the first at 1
    python3 - $F/seeds/onnx testdata/ops <<'PY'
import os, sys
sys.path.insert(0, "scripts")
from onnxedit import set_input_dims
out, top = sys.argv[1], sys.argv[2]
zero = lambda i, d: [0 if k == min(1, len(d) - 1) else v for k, v in enumerate(d)]
ones = lambda i, d: d[:1] + [1] * (len(d) - 1)
for op in sorted(os.listdir(top)):
    for case in sorted(os.listdir(os.path.join(top, op))):
        m = os.path.join(top, op, case, "model.onnx")
        if os.path.isfile(m):
            for tag, fn in (("zero", zero), ("ones", ones)):
                set_input_dims(m, os.path.join(out, "%s_%s_%s.onnx" % (tag, op, case)), fn)
PY
    cp $F/seeds/onnx/* $F/seeds/quant/ # quant: the same models, through calib's and export's path
    # images: the decoder test images (all PNG colour types and depths, JPEG grey/RGB, broken ones)
    for f in testdata/images/*.png testdata/images/*.jpg; do
        [ -f "$f" ] && cp "$f" $F/seeds/image/
    done
    # --config: the documented keys on the bundled model's node names
    c=$F/seeds/config
    echo '{"layers": {}}' >$c/empty.json
    echo '{"layers": {"/stem/stem.0/Conv": {"wbits": 4, "abits": 8}}}' >$c/bits.json
    echo '{"layers": {"/fc/Gemm": {"quantize": false}, "/Add": {"observer": "minmax"}}}' >$c/skip.json
    echo '{"layers": {"/dw/dw.0/Conv": {"granularity": "per_tensor", "wbits": 2, "observer": "mse"}}}' >$c/gran.json
    echo '{"layers": {"/pw/pw.0/Conv": {"observer": "percentile"}, "/down/down.0/Conv": {"abits": 3}}}' >$c/obs.json
    echo '{"layers": []}' >$c/array.json
    # quant_info.json: what calib writes for the bundled model (needs build/qtool; make check builds it)
    q=$F/seeds/qinfo
    if [ -x build/qtool ]; then
        for s in "w8:" "w4:--wbits 4 --abits 4 --keep-first-last 8" "pt:--per-tensor --act-dtype int8" \
            "pow2:--profile pow2" "int:--profile int-only --exclude-op Add"; do
            build/qtool calib testdata/fmnist/model_bn.onnx --data testdata/fmnist/calib --preset mnist -q --limit 16 \
                ${s#*:} -o $q/${s%%:*}.onnx >/dev/null 2>&1 && rm -f $q/${s%%:*}.onnx
        done
    fi
    ls $F/seeds/* | grep -vc : | sed 's/^/seed files: /'
}

need() {
    for t in $TARGETS; do
        [ -x $F/fuzz_$t ] || { echo "fuzz.sh: $F/fuzz_$t missing: run make fuzz" >&2; exit 1; }
    done
}

run() { # secs [target]
    secs=${1:-60}
    need
    [ -d $F/seeds ] || seeds >/dev/null
    crashes=0
    for t in ${2:-$TARGETS}; do
        mkdir -p $F/corpus/$t
        log=$F/run-$t.log
        t0=$(date +%s)
        ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1 \
            $F/fuzz_$t -seed="${FUZZ_SEED:-1}" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -max_len=262144 \
            -print_final_stats=1 -artifact_prefix=$F/crash-$t- $F/corpus/$t $F/seeds/$t >"$log" 2>&1
        rc=$?
        took=$(( $(date +%s) - t0 ))
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
        n=$(ls $F/crash-$t-* $F/leak-$t-* $F/timeout-$t-* $F/oom-$t-* 2>/dev/null | wc -l)
        echo "fuzz $t: ${execs:-0} executions in ${took} s, exit $rc, $n crash files (log $log)"
        [ "$rc" != 0 ] && { grep -m 3 -E 'ERROR|SUMMARY|==[0-9]+==' "$log"; crashes=$((crashes + 1)); }
    done
    [ "$crashes" = 0 ]
}

replay() {
    need
    fail=0
    for t in $TARGETS; do
        set -- testdata/bad/fuzz-$t-*
        [ -f "$1" ] || continue
        ASAN_OPTIONS=allocator_may_return_null=1 $F/fuzz_$t -runs=1 "$@" >$F/replay-$t.log 2>&1 \
            || { echo "fuzz replay $t: FAILED (see $F/replay-$t.log)"; fail=1; continue; }
        echo "fuzz replay $t: $# regression inputs ok"
    done
    return $fail
}

case "${1:-}" in
seeds) seeds ;;
run) shift; run "$@" ;;
replay) replay ;;
*) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
