#!/bin/sh
# t-fn-lengths.sh: no function in lib/ or cli/ is longer than 120 lines
# (scripts/fn-lengths.sh, signature to closing brace), the kernels in
# lib/int8/ and lib/ops/conv*.c included. The checker can fail: a 121-line
# function is reported, a 120-line one is not.
. scripts/testlib.sh
expect_ok "no function over 120 lines in lib/ and cli/" sh scripts/fn-lengths.sh 120
fn() { # fn N: a C function of N lines in total
    printf 'static int f(int x,\n        int y) {\n'
    i=3
    while [ $i -lt "$1" ]; do
        echo "    x += y;"
        i=$((i + 1))
    done
    printf '}\n'
}
fn 121 >"$TMP/long.c"
fn 120 >"$TMP/ok.c"
expect_fail 1 "a 121-line function is reported" sh scripts/fn-lengths.sh 120 "$TMP/long.c"
check "  with its length, place and name" grep -q "^121 $TMP/long.c:1 f\$" "$_out"
expect_ok "a 120-line function is not" sh scripts/fn-lengths.sh 120 "$TMP/ok.c"
done_testing
