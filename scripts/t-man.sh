#!/bin/sh
# t-man.sh: every man page renders without warnings, and every long option a
# subcommand's --help lists is documented in its page.
. scripts/testlib.sh
for p in man/*.1 man/*.5; do
    [ -f "$p" ] || continue
    expect_ok "$p renders without warnings" sh -c "groff -man -ww -z '$p' 2>&1 | (! grep .)"
done
for cmd in $($QTOOL --help | sed -n 's/^  \([a-z]*\) .*/\1/p'); do
    page=man/qtool-$cmd.1
    check "man page for $cmd exists" test -f "$page"
    [ -f "$page" ] || continue
    for o in $($QTOOL "$cmd" --help | grep -oE -- '--[a-z0-9-]+' | sort -u); do
        check "qtool-$cmd.1 documents $o" grep -q -- "$(echo "$o" | sed 's/-/\\\\-/g')" "$page"
    done
done
done_testing
