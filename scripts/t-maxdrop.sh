#!/bin/sh
# t-maxdrop.sh: --max-drop, --eval-data, --metric and --sensitivity on the
# bundled Fashion-MNIST model at W4A4: the search meets its target on its own
# images and raises named layers, the model it writes is better than plain
# W4A4 on images neither calibration nor the search saw (testdata/fmnist/test),
# ONNX Runtime loads it and agrees, export rebuilds it byte for byte from
# quant_info.json ("fallback" recorded), the result is the same at 1 and 2
# threads, the corrections left unset (bias correction, BN re-estimation, the
# observer, CLE) are measured first and reported, a kept one is what the option
# given by hand makes (same bytes) and is in quant_info.json, explicit options
# are not tried, an unreachable target writes the best model and exits 6 naming the
# layers, bad values are usage errors that say why, and --sensitivity prints
# one row per quantized weight and activation, worst first.
# needs: ort python3
. scripts/testlib.sh
D=testdata/fmnist
PP="--preset mnist -q"
ORT="node scripts/ort-run.mjs"

expect_ok "W4A4 calib, no search (baseline)" $QTOOL calib $D/model.onnx --data $D/calib $PP -o $TMP/base.onnx \
    --wbits 4 --abits 4
expect_ok "  eval on the test images" $QTOOL eval $TMP/base.onnx --data $D/test $PP --latency-runs 0 \
    --ref $D/model.onnx --json $TMP/base_e.json

expect_ok "W4A4 --max-drop 1 --metric agreement --try-corrections" $QTOOL calib $D/model.onnx --data $D/calib $PP \
    -o $TMP/md.onnx --wbits 4 --abits 4 --max-drop 1 --metric agreement --try-corrections --json $TMP/md_c.json \
    --threads 2
check "  JSON: fallback.met, metric agreement, a quarter of the images held back" python3 -c "
import json; f=json.load(open('$TMP/md_c.json'))['fallback']
assert f['met'] is True and f['metric'] == 'agreement' and f['max_drop'] == 1, f
assert 70 <= f['eval_images'] <= 90, f['eval_images']"
check "  drop on the search's images: $(json $TMP/md_c.json fallback.drop_before) before, $(json $TMP/md_c.json fallback.drop_after) after (<= 1)" \
    python3 -c "
import json; f=json.load(open('$TMP/md_c.json'))['fallback']
assert f['drop_before'] > 1 and f['drop_after'] <= 1, f"
check "  raised layers named, fewer than all candidates" python3 -c "
import json; f=json.load(open('$TMP/md_c.json'))['fallback']
r=[l['node'] for l in f['raised']]
assert 1 <= len(r) < f['candidates'] and all(n.startswith('/') for n in r), f"
check "  calibrated on the other three quarters ($(json $TMP/md_c.json images) images)" \
    test "$(json $TMP/md_c.json images)" -lt 260
check "  quant_info.json records it" python3 -c "
import json; j=json.load(open('$TMP/md_c.json'))['fallback']
qi=json.load(open('$TMP/md.json'))['fallback']
assert [l['node'] for l in qi['raised']] == [l['node'] for l in j['raised']] and qi['met'] is True, qi
t=json.load(open('$TMP/md.json'))
ex=set(t['prepare']['excluded'])
for l in qi['raised']:
    if l['to'] == 'float':
        assert l['node'] in ex, l
    else:
        w=[x for x in t['tensors'] if x.get('node') == l['node'] and x['role'] == 'weight']
        assert w and all(x['bits'] == 8 for x in w), (l, w)"
check "  the corrections left unset measured first, each with its figure; the kept ones lowered the drop" python3 -c "
import json; f=json.load(open('$TMP/md_c.json'))['fallback']; c=f['corrections']
assert [x['option'] for x in c] == ['bias-correction', 'no-bn-reestimate', 'observer=mse', 'cle'], c
best=f['drop_before']
for x in c:
    assert abs(x['drop'] - (100 - x['figures']['agreement'])) < 1e-9 and x['figures']['images'] == f['eval_images'], x
    p=x['drop'] / 100; n=x['figures']['images']
    assert abs(x['figures']['drop_se'] - 100 * (p * (1 - p) / n) ** 0.5) < 1e-9, x
    if x['kept']:
        assert x['drop'] < best, (x, best); best = x['drop']
qi=json.load(open('$TMP/md.json'))['fallback']['corrections']
assert qi == c, qi"
check "  calib --json and quant_info name the corrections written" python3 -c "
import json; d=json.load(open('$TMP/md_c.json')); q=json.load(open('$TMP/md.json'))
c={x['option'] for x in d['fallback']['corrections'] if x['kept']}
b='bias-correction' if 'bias-correction' in c else 'none' if 'no-bn-reestimate' in c else 'bn-reestimate'
assert q['settings']['bias_correction'] == b and d['bn_reestimate'] == (b == 'bn-reestimate'), (b, q['settings'])
assert d['bias_correction'] == (b == 'bias-correction'), d
assert q['calibration']['observer'] == d['observer'] == ('mse' if 'observer=mse' in c else 'percentile'), c
assert q['settings']['cle'] == ('cle' in c), (c, q['settings'])"
expect_ok "  eval on the test images" $QTOOL eval $TMP/md.onnx --data $D/test $PP --latency-runs 0 \
    --ref $D/model.onnx --json $TMP/md_e.json
check "  test images: agreement $(json $TMP/md_e.json agreement) > plain W4A4's $(json $TMP/base_e.json agreement)" \
    fcmp "$(json $TMP/md_e.json agreement)" '>' "$(json $TMP/base_e.json agreement)"
check "  test images: SQNR $(json $TMP/md_e.json sqnr_db) dB > plain W4A4's $(json $TMP/base_e.json sqnr_db) + 2" \
    fcmp "$(json $TMP/md_e.json sqnr_db)" '>' "$(python3 -c "print($(json $TMP/base_e.json sqnr_db) + 2)")"
expect_ok "  ORT loads it" $ORT $TMP/md.onnx --check-load
expect_ok "  qtool and ORT agree on it" sh -c "$QTOOL eval $TMP/md.onnx --data $D/test $PP --latency-runs 0 \
    --limit 100 --save-inputs $TMP/i.bin --save-outputs $TMP/q.bin && $ORT $TMP/md.onnx --input $TMP/i.bin \
    --shape 100,1,28,28 --output $TMP/o.bin && python3 scripts/cmpraw.py $TMP/q.bin $TMP/o.bin 1 --top1 10"
expect_ok "  export rebuilds it from quant_info.json" $QTOOL export $D/model.onnx --quant-info $TMP/md.json \
    -o $TMP/md_x.onnx
check "  byte for byte" cmp $TMP/md.onnx $TMP/md_x.onnx
expect_ok "  eval --report on it: the sensitivity from md.json" $QTOOL eval $TMP/md.onnx --data $D/test $PP \
    --latency-runs 0 --limit 40 --ref $D/model.onnx --report $TMP/rep --json $TMP/rep_c.json
check "  JSON sensitivity: a unit per quantized tensor of md.json, the raised layers' weights at 8 bits" python3 -c "
import json; s=json.load(open('$TMP/rep_c.json'))['sensitivity']; q=json.load(open('$TMP/md.json'))
n=sum(1 for t in q['tensors'] if t['role'] in ('weight', 'activation'))
assert len(s['units']) == n and s['images'] == 32, (len(s['units']), n)
r={l['node'] for l in q['fallback']['raised'] if l['to'] == 8}
assert all(u['bits'] == 8 for u in s['units'] if u['node'] in r and u['kind'] == 'weight')"
check "  the page has its chart, one bar per unit" sh -c "test \$(grep -o 'class=\"bar\" data-unit' $TMP/rep/index.html | wc -l) \
    -eq \$(python3 -c \"import json; print(len(json.load(open('$TMP/rep_c.json'))['sensitivity']['units']))\")"
expect_ok "  again at 1 thread" $QTOOL calib $D/model.onnx --data $D/calib $PP -o $TMP/md1.onnx --wbits 4 --abits 4 \
    --max-drop 1 --metric agreement --try-corrections --threads 1
check "  same model at 1 and 2 threads" cmp $TMP/md.onnx $TMP/md1.onnx
check "  same quant_info.json" cmp $TMP/md.json $TMP/md1.json

# the corrections (--try-corrections): kept when they help, as the options would make them; explicit options stay
expect_ok "W8A8 --max-drop 0.1 --metric sqnr: no corrections without --try-corrections" $QTOOL calib $D/model.onnx \
    --data $D/calib $PP -o $TMP/nc.onnx --max-drop 0.1 --metric sqnr --eval-data $D/test --json $TMP/nc_c.json
check "  none tried; the default observer and bias correction written" python3 -c "
import json; d=json.load(open('$TMP/nc_c.json')); q=json.load(open('$TMP/nc.json'))
assert d['fallback']['corrections'] == [] and q['calibration']['observer'] == 'percentile', d['fallback']
assert q['settings']['bias_correction'] == 'none', q['settings']"
expect_fail 2 "--try-corrections without --max-drop" $QTOOL calib $D/model.onnx --data $D/calib $PP -o $TMP/b.onnx \
    --try-corrections
expect_ok "W8A8 --max-drop 0.1 --metric sqnr --eval-data DIR: corrections first" $QTOOL calib $D/model.onnx \
    --data $D/calib $PP -o $TMP/co.onnx --max-drop 0.1 --metric sqnr --eval-data $D/test --try-corrections --json $TMP/co_c.json
check "  met; corrections tried ($(python3 -c "import json; print(' '.join(x['option'] + (' kept' if x['kept'] else '') for x in json.load(open('$TMP/co_c.json'))['fallback']['corrections']))"))" python3 -c "
import json; f=json.load(open('$TMP/co_c.json'))['fallback']; c=f['corrections']
assert f['met'] is True and f['drop_after'] <= 0.1 < f['drop_before'], f
assert [x['option'] for x in c] == ['bias-correction', 'bn-reestimate', 'observer=mse', 'cle'], c
assert any(x['kept'] for x in c) and not (c[0]['kept'] and c[1]['kept']), c
best=f['drop_before']
for x in c:
    if x['kept']:
        assert x['drop'] < best, (x, best); best = x['drop']
assert f['raised'] == [] or best > 0.1, f"
KEPT=$(python3 -c "
import json; print(' '.join('--' + x['option'].replace('=', ' ') for x in json.load(open('$TMP/co_c.json'))['fallback']['corrections'] if x['kept']))")
expect_ok "  calib $KEPT (the kept options given, no search)" $QTOOL calib $D/model.onnx --data $D/calib $PP \
    -o $TMP/co_k.onnx $KEPT
check "  the same model, byte for byte" cmp $TMP/co.onnx $TMP/co_k.onnx
check "  quant_info.json: the same tensors and settings" python3 -c "
import json; a=json.load(open('$TMP/co.json')); b=json.load(open('$TMP/co_k.json'))
assert a['tensors'] == b['tensors'] and a['settings'] == b['settings'] and a['calibration'] == b['calibration']"
expect_ok "  again at 1 thread" $QTOOL calib $D/model.onnx --data $D/calib $PP -o $TMP/co1.onnx --max-drop 0.1 \
    --metric sqnr --eval-data $D/test --try-corrections --threads 1
check "  same model and quant_info.json at 1 and 2 threads" sh -c "cmp $TMP/co.onnx $TMP/co1.onnx && cmp $TMP/co.json $TMP/co1.json"
expect_ok "  --observer percentile --no-cle --no-bn-reestimate: nothing left to try" $QTOOL calib $D/model.onnx \
    --data $D/calib $PP -o $TMP/cx.onnx --max-drop 0.1 --metric sqnr --eval-data $D/test --try-corrections --observer percentile \
    --no-cle --no-bn-reestimate --json $TMP/cx_c.json
check "  no corrections, the options as given" python3 -c "
import json; d=json.load(open('$TMP/cx_c.json')); q=json.load(open('$TMP/cx.json'))
assert d['fallback']['corrections'] == [] and d['observer'] == 'percentile' and not d['bn_reestimate'], d['fallback']
assert q['settings']['cle'] is False and q['settings']['bias_correction'] == 'none', q['settings']"
expect_ok "  --cle --percentile 99.9: the bias corrections only" $QTOOL calib $D/model.onnx --data $D/calib $PP \
    -o $TMP/cy.onnx --max-drop 0.1 --metric sqnr --eval-data $D/test --try-corrections --cle --percentile 99.9 --json $TMP/cy_c.json
check "  CLE on, the percentile observer kept" python3 -c "
import json; d=json.load(open('$TMP/cy_c.json')); q=json.load(open('$TMP/cy.json'))
assert [x['option'] for x in d['fallback']['corrections']] == ['bias-correction', 'bn-reestimate'], d['fallback']
assert q['settings']['cle'] is True and q['calibration']['observer'] == 'percentile', q
assert q['calibration']['percentile'] == 99.9, q['calibration']"
mkdir -p $TMP/wb/o.weights.bin
expect_fail 1 "  a kept correction's .weights.bin that cannot be written fails first" $QTOOL calib $D/model.onnx \
    --data $D/calib $PP -o $TMP/wb/o.onnx --max-drop 0.1 --metric sqnr --eval-data $D/test --try-corrections
check "  names it, nothing written" sh -c "grep -q \"cannot write '$TMP/wb/o.weights.bin'\" $_out && ! test -e $TMP/wb/o.onnx"

# top1 (the default on labeled images) with a separate --eval-data folder
mkdir -p $TMP/ev
for c in $D/test/*/; do
    n=$(basename "$c"); mkdir -p "$TMP/ev/$n"
    ls "$c" | head -8 | while read -r f; do ln -s "$TOP/$c$f" "$TMP/ev/$n/$f"; done
done
expect_ok "W4A4 --max-drop 2 --eval-data DIR (top1 by default)" $QTOOL calib $D/model.onnx --data $D/calib $PP \
    -o $TMP/ed.onnx --wbits 4 --abits 4 --max-drop 2 --eval-data $TMP/ev --json $TMP/ed_c.json
check "  top1 drop $(json $TMP/ed_c.json fallback.after.drop) = images lost - gained, standard error $(json $TMP/ed_c.json fallback.after.drop_se) of those" python3 -c "
import json, math; f=json.load(open('$TMP/ed_c.json'))['fallback']
for x in [f['before'], f['after']] + [c['figures'] for c in f['corrections']]:
    n=x['images']; l=x['lost']; g=x['gained']; m=(l - g) / n
    assert abs(x['drop'] - 100 * m) < 1e-9 and abs(x['top1_drop'] - x['drop']) < 1e-9, x
    assert abs(x['drop_se'] - 100 * math.sqrt(((l + g) / n - m * m) / n)) < 1e-9, x
assert f['before']['lost'] > 0, f['before']"
check "  metric top1 on the $(json $TMP/ed_c.json fallback.eval_images) --eval-data images, every calibration image used" \
    python3 -c "
import json; d=json.load(open('$TMP/ed_c.json')); f=d['fallback']
assert f['metric'] == 'top1' and f['eval_images'] == 80 and d['images'] == 300, (f, d['images'])
assert f['met'] is True and f['after']['top1_drop'] <= 2, f"

# a target the allowed layers cannot meet: the best model is written, exit 6
expect_fail 6 "--max-drop 0 --metric sqnr --max-raise 2: exit 6" $QTOOL calib $D/model.onnx --data $D/calib \
    $PP -o $TMP/un.onnx --wbits 4 --abits 4 --max-drop 0 --metric sqnr --max-raise 2 --json $TMP/un_c.json
check "  the best model is written anyway" test -s $TMP/un.onnx -a -s $TMP/un.json
check "  JSON: met false, exit_code 6, at most 2 raised, the layers left named" python3 -c "
import json; d=json.load(open('$TMP/un_c.json')); f=d['fallback']
assert f['met'] is False and d['exit_code'] == 6 and len(f['raised']) <= 2 and f['candidates'] == 2, d
assert len(f['unsaved']) >= 2 and all(n.startswith('/') for n in f['unsaved']), f
assert f['drop_after'] <= f['drop_before'], f"
check "  quant_info.json: met false" python3 -c "
import json; assert json.load(open('$TMP/un.json'))['fallback']['met'] is False"
expect_ok "  ORT loads it" $ORT $TMP/un.onnx --check-load
$QTOOL calib $D/model.onnx --data $D/calib $PP -o $TMP/un2.onnx --wbits 4 --abits 4 --max-drop 0 --metric sqnr \
    --max-raise 2 >$TMP/un.out 2>&1
check "  the text names the layers it could not save" grep -q "could not save: /" $TMP/un.out
check "  and the error says the best model was written" grep -q "calib: the target .* is not met; wrote the best" $TMP/un.out
check "  the error line names the text's layers too" python3 -c "
import re; t=open('$TMP/un.out').read()
names=re.search(r'^  could not save: (/.*) \\(the most', t, re.M).group(1).split()
err=re.search(r'calib: the target .* is not met; .*could not save: (/.*)$', t, re.M).group(1).split()
assert names and err == names, (names, err)"

# bad values
expect_fail 2 "--max-drop -1" $QTOOL calib $D/model.onnx --data $D/calib $PP -o $TMP/b.onnx --max-drop -1
expect_fail 2 "--metric bogus" $QTOOL calib $D/model.onnx --data $D/calib $PP -o $TMP/b.onnx --max-drop 1 --metric bogus
mkdir -p $TMP/empty $TMP/one/0_tshirt_top $TMP/flat
expect_fail 2 "--eval-data with no images" $QTOOL calib $D/model.onnx --data $D/calib $PP -o $TMP/b.onnx \
    --max-drop 1 --eval-data $TMP/empty
check "  says why" grep -q "needs evaluation images" $_out
ln -s "$TOP/$(ls -d $D/calib/0_tshirt_top)/$(ls $D/calib/0_tshirt_top | head -1)" $TMP/one/0_tshirt_top/a.png
expect_fail 2 "--max-drop on a single image, nothing to hold back" $QTOOL calib $D/model.onnx --data $TMP/one $PP \
    -o $TMP/b.onnx --max-drop 1
check "  says why" grep -q "needs evaluation images" $_out
for f in $(ls $D/test/0_tshirt_top | head -4); do ln -s "$TOP/$D/test/0_tshirt_top/$f" $TMP/flat/$f; done
expect_fail 2 "--metric top1 on unlabeled --eval-data" $QTOOL calib $D/model.onnx --data $D/calib $PP -o $TMP/b.onnx \
    --max-drop 1 --metric top1 --eval-data $TMP/flat
expect_fail 2 "--eval-data alone" $QTOOL calib $D/model.onnx --data $D/calib $PP -o $TMP/b.onnx --eval-data $TMP/flat
expect_fail 2 "--metric without --max-drop" $QTOOL calib $D/model.onnx --data $D/calib $PP -o $TMP/b.onnx --metric top1
expect_fail 2 "--max-raise 0" $QTOOL calib $D/model.onnx --data $D/calib $PP -o $TMP/b.onnx --max-drop 1 --max-raise 0
check "  no output left behind" sh -c "! ls $TMP/b.* 2>/dev/null | grep -q ."

# the sensitivity table
expect_ok "W4A4 --sensitivity" sh -c "$QTOOL calib $D/model.onnx --data $D/calib $PP -o $TMP/s.onnx --wbits 4 --abits 4 \
    --sensitivity --json $TMP/s_c.json >$TMP/s.txt"
check "  one row per quantized weight and activation ($(grep -cE '^(/|\(input\)).* (weight|output) ' $TMP/s.txt))" \
    test "$(grep -cE '^(/|\(input\)).* (weight|output) ' $TMP/s.txt)" -eq 18
check "  JSON: 18 units, worst first, figures in range" python3 -c "
import json; s=json.load(open('$TMP/s_c.json'))['sensitivity']; u=s['units']
assert len(u) == 18 and s['images'] == 32, s['images']
q=[x['only_quantized']['sqnr_db'] for x in u]
assert q == sorted(q), q
assert all(0 < x['only_quantized']['sqnr_db'] < 80 and 0 < x['only_float']['sqnr_db'] < 80 for x in u)
assert u[0]['only_quantized']['sqnr_db'] < s['all_quantized']['sqnr_db'] + 20
assert all(0.9 < x['cosine'] <= 1.0000001 for x in u)
assert {x['kind'] for x in u} == {'weight', 'activation'}"

# finetune takes the same options
expect_ok "finetune --max-drop 2 --metric agreement" $QTOOL finetune $D/model.onnx --data $D/calib $PP \
    -o $TMP/ft.onnx --wbits 4 --abits 4 --max-drop 2 --metric agreement --iters 20 --json $TMP/ft_c.json
check "  met, $(python3 -c "import json; print(len(json.load(open('$TMP/ft_c.json'))['fallback']['raised']))") layers raised" \
    python3 -c "import json; f=json.load(open('$TMP/ft_c.json'))['fallback']; assert f['met'] and f['drop_after'] <= 2, f"
check "  finetune tries no corrections (each would tune again)" python3 -c "
import json; assert json.load(open('$TMP/ft_c.json'))['fallback']['corrections'] == []"

# eval --report's sensitivity of a tuned model is against the float model, not the tuned weights run in float
expect_ok "finetune W4A8 (AdaQuant moves weights and biases)" $QTOOL finetune $D/model.onnx --data $D/calib $PP \
    -o $TMP/ftw.onnx --wbits 4 --iters 40
expect_ok "  eval --report --simulate on 32 images" $QTOOL eval $TMP/ftw.onnx --data $D/test $PP --latency-runs 0 \
    --limit 32 --simulate --ref $D/model.onnx --report $TMP/repft --json $TMP/repft.json
check "  the sensitivity's float top-1, and its 'all quantized' agreement and SQNR, are eval's own" python3 -c "
import json; d=json.load(open('$TMP/repft.json')); s=d['sensitivity']; a=s['all_quantized']
assert s['images'] == d['images'] == 32, (s['images'], d['images'])
assert abs(s['float_top1'] - d['ref_top1']) < 1e-9, (s['float_top1'], d['ref_top1'])
assert abs(a['top1'] - d['top1']) < 1e-9 and abs(a['agreement'] - d['agreement']) < 1e-9, (a, d['top1'], d['agreement'])
assert abs(a['sqnr_db'] - d['sqnr_db']) < 0.05, (a['sqnr_db'], d['sqnr_db'])"
done_testing
