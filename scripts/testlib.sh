# testlib.sh: sourced by scripts/t-*.sh (git t/ style).
#   expect_ok  "what" cmd...          passes when cmd exits 0
#   expect_fail CODE "what" cmd...    passes when cmd exits CODE
#   check "what" test-expression...   passes when the expression is true
#   skip "why"                        prints a skip line
#   done_testing                      prints "# N passed, N failed", exits accordingly
# $QTOOL is the binary under test; $TMP a scratch folder removed at exit.
set -u
QTOOL=${QTOOL:-./qtool}
case "$QTOOL" in /*) ;; *) QTOOL="$(pwd)/$QTOOL" ;; esac
TOP=$(pwd)
SHARED=${QT_SHARED:-$TOP/../shared}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/qtool-test.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
_n=0
_pass=0
_fail=0
_out=$TMP/.out

_report() { # status, what
    _n=$((_n + 1))
    if [ "$1" = 0 ]; then
        _pass=$((_pass + 1))
        echo "ok $_n - $2"
    else
        _fail=$((_fail + 1))
        echo "not ok $_n - $2"
        [ -s "$_out" ] && sed -n '1,12p' "$_out" | sed 's/^/#   /'
    fi
}

expect_ok() {
    what=$1
    shift
    "$@" >"$_out" 2>&1
    rc=$?
    [ $rc = 0 ] || echo "exit $rc" >>"$_out"
    _report $rc "$what"
}

expect_fail() {
    code=$1
    what=$2
    shift 2
    "$@" >"$_out" 2>&1
    rc=$?
    if [ "$rc" = "$code" ]; then _report 0 "$what (exit $rc)"; else echo "exit $rc, expected $code" >>"$_out"; _report 1 "$what"; fi
}

check() {
    what=$1
    shift
    if "$@"; then _report 0 "$what"; else _report 1 "$what"; fi
}

skip() { echo "# skip: $1"; }

# json FILE KEY: a top-level number or string from a JSON file
json() { python3 -c "import json,sys; v=json.load(open(sys.argv[1]))
for k in sys.argv[2].split('.'): v=v[int(k)] if isinstance(v,list) else v[k]
print(v)" "$1" "$2"; }

# fcmp A OP B: float comparison (OP one of < <= > >= ==)
fcmp() { python3 -c "import sys; a=float(sys.argv[1]); b=float(sys.argv[3]); sys.exit(0 if eval('a'+sys.argv[2]+'b') else 1)" "$1" "$2" "$3"; }

done_testing() {
    echo "# $_pass passed, $_fail failed"
    [ "$_fail" = 0 ]
    exit $?
}
