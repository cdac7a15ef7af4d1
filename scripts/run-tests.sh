#!/bin/sh
# run-tests.sh BUILD: runs every test of `make check` and prints one closing
# "N passed, N failed" line (adding up the "# N passed, N failed" line each
# driver prints). Unit drivers: BUILD/test/t_*. End-to-end: scripts/t-*.sh.
# QT_UNIT_ONLY=1 runs the unit drivers only (sanitizer builds).
# QT_TESTS="t_ops t-eval" runs only those; QT_SKIP="t-zoo" all but those.
set -u
build=${1:-build}
pass=0
fail=0
failed=""
log=$build/test-logs
mkdir -p "$log"

want() {
    for w in ${QT_SKIP:-}; do [ "$w" = "$1" ] && return 1; done
    [ -z "${QT_TESTS:-}" ] && return 0
    for w in $QT_TESTS; do [ "$w" = "$1" ] && return 0; done
    return 1
}

run_one() { # name, command...
    name=$1
    shift
    start=$(date +%s)
    "$@" >"$log/$name.log" 2>&1
    rc=$?
    line=$(grep -E '^# [0-9]+ passed, [0-9]+ failed' "$log/$name.log" | tail -n 1)
    p=$(echo "$line" | sed -E 's/^# ([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/^# [0-9]+ passed, ([0-9]+) failed.*/\1/')
    [ -z "$line" ] && { p=0; f=1; }
    [ $rc -ne 0 ] && [ "$f" = 0 ] && f=1
    pass=$((pass + p))
    fail=$((fail + f))
    secs=$(( $(date +%s) - start ))
    if [ "$f" != 0 ]; then
        failed="$failed $name"
        echo "FAIL $name: $p passed, $f failed (${secs}s, exit $rc); log: $log/$name.log"
        grep -E '^not ok|^# skip' "$log/$name.log" | head -n 20 | sed 's/^/    /'
        [ -z "$line" ] && tail -n 15 "$log/$name.log" | sed 's/^/    /'
    else
        echo "ok   $name: $p passed (${secs}s)"
        grep -E '^# skip' "$log/$name.log" | head -n 5 | sed 's/^/    /'
    fi
}

for t in "$build"/test/t_*; do
    [ -x "$t" ] || continue
    n=$(basename "$t")
    want "$n" && run_one "$n" "$t"
done
if [ -z "${QT_UNIT_ONLY:-}" ]; then
    for t in scripts/t-*.sh; do
        [ -f "$t" ] || continue
        n=$(basename "$t" .sh)
        want "$n" && run_one "$n" env QTOOL="$build/qtool" sh "$t"
    done
fi
[ -n "$failed" ] && echo "failed:$failed"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
