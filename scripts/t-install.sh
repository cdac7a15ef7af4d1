#!/bin/sh
# t-install.sh: `make install PREFIX=...` puts the binary, qtool-zoo, every
# man page and the bash completion in place; the installed completion offers
# every long option of every subcommand's --help, the values of enumerated
# options, and directories for DIR arguments.
. scripts/testlib.sh
P=$TMP/prefix
B=$(dirname "$QTOOL")
[ -f "$B/libqtool.a" ] || B=build # ./qtool is a copy of build/qtool
B=${B#"$TOP"/}
expect_ok "make install PREFIX=$P" env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -s install PREFIX="$P" BUILD="$B"
check "bin/qtool runs" sh -c "'$P/bin/qtool' --version | grep -q '^qtool '"
check "bin/qtool-zoo installed" test -x "$P/bin/qtool-zoo"
for m in man/*.1 man/*.5; do
    s=${m##*.}
    check "$(basename "$m") installed in man$s" cmp -s "$m" "$P/share/man/man$s/$(basename "$m")"
done
if command -v man >/dev/null 2>&1; then
    check "man finds qtool-calib under PREFIX" sh -c "MANPATH='$P/share/man' man -w qtool-calib | grep -q '$P'"
    expect_ok "installed qtool help calib opens the installed page" \
        env MANPAGER=cat MANWIDTH=80 "$P/bin/qtool" help calib
    check "it is the manual page" grep -q "QTOOL-CALIB(1)" "$_out"
else
    skip "man(1) absent: the installed pages are not looked up"
fi
C=$P/share/bash-completion/completions/qtool
check "bash completion installed" test -s "$C"
if ! command -v bash >/dev/null 2>&1; then
    skip "bash absent: completion not exercised"
    done_testing
fi
# comp FILE WORD...: the completions bash offers for the last word
comp() {
    f=$1
    shift
    bash -c '. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _qtool; printf "%s\n" "${COMPREPLY[@]}"' \
        comp "$f" "$@"
}
check "the commands" test "$(comp "$C" qtool "" | tr '\n' ' ')" = "$($QTOOL --help | sed -n 's/^  \([a-z]*\) .*/\1/p' | tr '\n' ' ')help --help --version "
for cmd in $($QTOOL --help | sed -n 's/^  \([a-z]*\) .*/\1/p'); do
    comp "$C" qtool "$cmd" m.onnx -- >$TMP/offered
    missing=""
    for o in $($QTOOL "$cmd" --help | grep -oE -- '--[a-z0-9-]+' | sort -u); do
        grep -qx -- "$o" $TMP/offered || missing="$missing $o"
    done
    check "qtool $cmd --<TAB> offers every long option of its --help${missing:+ (missing:$missing)}" test -z "$missing"
done
check "--observer values" test "$(comp "$C" qtool calib --observer "" | tr '\n' ' ')" = "minmax ema percentile entropy mse "
check "--act-dtype values" test "$(comp "$C" qtool qat --act-dtype u | tr '\n' ' ')" = "uint8 "
mkdir -p $TMP/cwd/calibdir && : >$TMP/cwd/calibfile
check "--data completes directories only" test "$(cd $TMP/cwd && comp "$C" qtool eval --data cal)" = calibdir
check "prefix of an option" test "$(comp "$C" qtool eval --sav | tr '\n' ' ')" = "--save-inputs --save-outputs "
done_testing
