#!/bin/sh
# t-qtool-zoo.sh: scripts/qtool-zoo on a folder of three models (the two
# bundled Fashion-MNIST models, one with a per-model --config, and a broken
# file): one JSON per model with the eval figures, a failure recorded with
# its error, Markdown and CSV summaries that agree with the JSON, and a
# second run that redoes only what is missing.
# needs: python3
. scripts/testlib.sh
D=testdata/fmnist
Z="sh scripts/qtool-zoo --qtool $QTOOL --calib $D/calib --val $D/test --eval-args --latency-runs=0"
M=$TMP/models
O=$TMP/out
mkdir -p $M
cp $D/model.onnx $M/plain.onnx
cp $D/model_bn.onnx $M/bn.onnx
echo '{"wbits": 4, "observer": "mse"}' >$M/bn.json
echo 'not a model' >$M/broken.onnx

expect_fail 1 "zoo of three models, one broken, 2 at a time" $Z -j 2 $M $O -- --preset mnist --limit 100
check "a JSON per good model" test -f $O/plain.json -a -f $O/bn.json
check "the broken one recorded as failed" test -f $O/broken.failed.json -a ! -f $O/broken.json
check "the failure names the file" grep -q '"error": ".*broken.onnx.*not a valid ONNX' $O/broken.failed.json
check "zoo JSON: schema, ok, 100 evaluated images" python3 -c "
import json; d = json.load(open('$O/plain.json'))
assert d['schema'] == 'qtool-zoo/1' and d['ok'] is True and d['eval']['images'] == 100, d"
check "bn took its config: wbits 4 and the mse observer" test \
    "$(json $O/bn.json calib.wbits)/$(json $O/bn.json calib.observer)" = "4/mse"
check "plain at 8 bits" test "$(json $O/plain.json calib.wbits)" = 8
check "CSV: header and one row per model" test "$(wc -l <$O/summary.csv)" = 4
row=$(grep '^plain,' $O/summary.csv)
check "CSV row of plain holds its eval top-1 and agreement" test \
    "$(echo "$row" | cut -d, -f2,4,6)" = "yes,$(json $O/plain/eval.json top1),$(json $O/plain/eval.json agreement)"
check "CSV: broken is 'no' with its error" grep -q '^broken,no,.*not a valid ONNX' $O/summary.csv
check "Markdown table: a row per model" test "$(grep -c '^| \(plain\|bn\|broken\) |' $O/summary.md)" = 3
check "the QDQ model is there" test -s $O/plain/plain_qdq.onnx

# resume: bn's result removed (as if interrupted); plain must not be redone
cp -p $O/plain.json $TMP/plain.before
rm -f $O/bn.json
sleep 1
expect_fail 1 "second run" $Z -j 2 $M $O -- --preset mnist --limit 100
check "bn redone" test -f $O/bn.json
check "plain not redone (same file, same time)" sh -c "cmp -s $O/plain.json $TMP/plain.before && [ ! $O/plain.json -nt $TMP/plain.before ]"
check "broken retried and still failed" test -f $O/broken.failed.json
rm -f $M/broken.onnx
touch $M/bn.json
expect_ok "third run without the broken model, bn's config changed" $Z $M $O -- --preset mnist --limit 100
check "bn redone after its config changed" test $O/bn.json -nt $TMP/plain.before
check "summary without failures" sh -c "! grep -q ',no,' $O/summary.csv"
expect_ok "--only one model" $Z --only plain $M $TMP/one -- --preset mnist --limit 20
check "--only wrote that model only" sh -c "test -f $TMP/one/plain.json && ! test -e $TMP/one/bn.json"
expect_ok "--summary-only" sh scripts/qtool-zoo --summary-only $M $TMP/one
check "pending models listed" grep -q '^bn,pending' $TMP/one/summary.csv
expect_fail 2 "output folder = models folder" $Z $M $M
expect_ok "--help" sh scripts/qtool-zoo --help
check "--help lists the options" grep -q -- "--summary-only" "$_out"
done_testing
