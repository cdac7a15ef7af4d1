#!/bin/sh
# run-tests.sh BUILD: runs every test of `make check` and prints one closing
# "N passed, N failed, N skipped" line (adding up the "# N passed, N failed"
# line each driver prints). Unit drivers: BUILD/test/t_*. End-to-end:
# scripts/t-*.sh. A script's "# needs: WHAT..." line names what it runs
# besides qtool (ort: node + onnxruntime-node in scripts/node_modules;
# python3; torch: Debian's python3-torch + torchvision; chromium; groff;
# man); a script whose needs are missing is skipped with a visible line and
# counted as skipped (`make check` installs them first, see the Makefile).
# QT_UNIT_ONLY=1 runs the unit drivers only (sanitizer builds).
# QT_TESTS="t_ops t-eval" runs only those; QT_SKIP="t-zoo" all but those.
# QT_NO_SKIP=1 (CI): a missing need fails the script instead.
set -u
build=${1:-build}
pass=0
fail=0
skipped=0
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

# have WHAT: is this need met? (each answer computed once)
have_cache=" "
have() {
    case "$have_cache" in *" $1=1 "*) return 0 ;; *" $1=0 "*) return 1 ;; esac
    case $1 in
    ort) [ -f scripts/node_modules/onnxruntime-node/package.json ] &&
        node -e "require('./scripts/node_modules/onnxruntime-node')" >/dev/null 2>&1 ;;
    python3) command -v python3 >/dev/null 2>&1 ;;
    torch) /usr/bin/python3 -c "import torch, torchvision" >/dev/null 2>&1 ;;
    chromium) command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 ;;
    groff) command -v groff >/dev/null 2>&1 ;;
    man) command -v man >/dev/null 2>&1 ;;
    *) false ;;
    esac
    r=$?
    [ $r = 0 ] && have_cache="$have_cache$1=1 " || have_cache="$have_cache$1=0 "
    return $r
}
# missing SCRIPT: the needs of SCRIPT that are not met
missing() {
    m=""
    for n in $(sed -n 's/^# needs: *//p' "$1"); do have "$n" || m="$m $n"; done
    echo "$m"
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
        want "$n" || continue
        m=$(missing "$t")
        if [ -n "$m" ] && [ -z "${QT_NO_SKIP:-}" ]; then
            skipped=$((skipped + 1))
            echo "skip $n: needs$m (make check installs it as root: scripts/install-deps.sh --test, scripts/setup-node.sh)"
            continue
        fi
        run_one "$n" env QTOOL="$build/qtool" sh "$t"
    done
fi
[ -n "$failed" ] && echo "failed:$failed"
echo "$pass passed, $fail failed, $skipped skipped"
[ "$fail" = 0 ]
