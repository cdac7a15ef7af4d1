#!/bin/sh
# fn-lengths.sh [-x REGEX] [MAX [FILE...]]: lists the C functions longer than
# MAX lines (default 120; signature to closing brace) in FILEs (default:
# lib/ and cli/ without lib/test/), one "LINES FILE:LINE NAME" per line,
# longest first; exits 1 if there is one. -x skips the files whose path
# matches the extended regex REGEX. No ctags: a definition starts at a line
# in column 0 that opens a parameter list and ends at the first "}" in
# column 0 (the layout .clang-format gives every function here).
skip=
if [ "${1:-}" = -x ]; then
    skip=$2
    shift 2
fi
max=${1:-120}
[ $# -gt 0 ] && shift
if [ $# -eq 0 ]; then
    set -- $(find lib cli -name '*.c' -not -path 'lib/test/*' | sort)
fi
out=$(for f in "$@"; do
    [ -n "$skip" ] && printf '%s\n' "$f" | grep -Eq -- "$skip" && continue
    awk -v max="$max" '
        FNR == 1 { sig = 0; body = 0 }
        body && /^}/ {
            n = FNR - start + 1
            if (n > max)
                printf "%d %s:%d %s\n", n, FILENAME, start, name
            body = 0
            next
        }
        body { next }
        !sig && /^[A-Za-z_][A-Za-z0-9_ \t\*]*\(/ && !/^(typedef|return|else|if|for|while|switch)[ (]/ {
            sig = 1
            start = FNR
            name = $0
            sub(/\(.*/, "", name)
            sub(/.*[ \*]/, "", name)
        }
        sig && /;[ \t]*$/ { sig = 0; next }
        sig && /\{[ \t]*$/ { sig = 0; body = 1; next }
    ' "$f"
done | sort -rn)
[ -z "$out" ] && exit 0
printf '%s\n' "$out"
exit 1
