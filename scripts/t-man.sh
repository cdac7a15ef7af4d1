#!/bin/sh
# t-man.sh: every man page renders without warnings, tables included, at 80
# columns (as man(1) lays it out on an 80-column terminal: groff -t, line
# length 78n; and man -l itself when man-db is there), and every long option
# a subcommand's --help lists is documented in its page.
# needs: groff
. scripts/testlib.sh
for p in man/*.1 man/*.5; do
    [ -f "$p" ] || continue
    expect_ok "$p renders without warnings at 80 columns" \
        sh -c "groff -t -man -Tutf8 -ww -rLL=78n -z '$p' 2>&1 | (! grep .)"
    if command -v man >/dev/null 2>&1; then
        expect_ok "man -l $p at 80 columns says nothing on stderr" \
            sh -c "MANWIDTH=80 MANPAGER=cat man -l '$p' 2>&1 >/dev/null | (! grep .)"
    fi
done
# a wide table is caught (the check above can fail)
printf '.TH X 1\n.SH T\n.TS\nl l.\n%s\t%s\n.TE\n' "$(printf 'a%.0s' $(seq 60))" "$(printf 'b%.0s' $(seq 30))" >"$TMP/wide.1"
check "a table wider than 80 columns is reported" \
    sh -c "groff -t -man -Tutf8 -ww -rLL=78n -z '$TMP/wide.1' 2>&1 | grep -q 'table wider'"
for cmd in $($QTOOL --help | sed -n 's/^  \([a-z]*\) .*/\1/p'); do
    page=man/qtool-$cmd.1
    check "man page for $cmd exists" test -f "$page"
    [ -f "$page" ] || continue
    for o in $($QTOOL "$cmd" --help | grep -oE -- '--[a-z0-9-]+' | sort -u); do
        check "qtool-$cmd.1 documents $o" grep -q -- "$(echo "$o" | sed 's/-/\\\\-/g')" "$page"
    done
done
done_testing
