#!/bin/sh
# t-qat-maxdrop.sh: --sensitivity and --max-drop on qtool qat (the bundled
# Fashion-MNIST model, W3A3, 2 epochs, every 4th of the 300 training images
# held back: plain qat misses a 2-point top-1 target on them by far).
# --sensitivity prints the trained plan's table, worst first, measured on the
# held-back images; --max-drop starts from exactly plain qat's model, raises
# named layers, meets the target, and the model written is better on images
# neither training nor the search saw (testdata/fmnist/test); ONNX Runtime
# runs it and agrees; quant_info.json records "fallback" and export rebuilds
# the file byte for byte; same bytes at 1 and 2 threads; each rebuilt plan
# is retuned (a short QAT pass), kept only where the drop did not rise, none
# with --retune-steps 0; --eval-data; an unreachable target writes the best
# model and exits 6 naming the layers; usage errors.
# needs: ort python3
. scripts/testlib.sh
D=testdata/fmnist
PP="--preset mnist -q"
ORT="node scripts/ort-run.mjs"
QAT="$D/model.onnx --train $D/calib $PP --wbits 3 --abits 3 --epochs 2 --calib-images 300 --hold-back 4"
# the held-back images: every 4th training image in sorted order (class folders, then names)
python3 -c "
import os; d='$D/calib'; f=[(c, n) for c in sorted(os.listdir(d)) for n in sorted(os.listdir(os.path.join(d, c)))]
for i, (c, n) in enumerate(f):
    if i % 4 == 3:
        os.makedirs('$TMP/hb/' + c, exist_ok=True); os.symlink(os.path.abspath(os.path.join(d, c, n)), '$TMP/hb/' + c + '/' + n)"

expect_ok "plain qat W3A3 --sensitivity" sh -c "$QTOOL qat $QAT -o $TMP/p.onnx --sensitivity --json $TMP/p_c.json \
    --threads 2 >$TMP/p.txt"
check "  one text row per quantized weight and activation ($(grep -cE '^(/|\(input\)).* (weight|output) ' $TMP/p.txt))" \
    test "$(grep -cE '^(/|\(input\)).* (weight|output) ' $TMP/p.txt)" -eq 18
check "  JSON: 18 units worst first, on 32 of the $(json $TMP/p_c.json held_back) held-back images, no fallback" python3 -c "
import json; d=json.load(open('$TMP/p_c.json')); s=d['sensitivity']; u=s['units']
assert len(u) == 18 and s['images'] == 32 and d['held_back'] == 75, (len(u), s['images'], d['held_back'])
q=[x['only_quantized']['sqnr_db'] for x in u]
assert q == sorted(q), q
assert all(0.5 < x['cosine'] <= 1.0000001 for x in u)
assert 'fallback' not in d and 'fallback' not in json.load(open('$TMP/p.json'))"
expect_ok "  eval it on the held-back images" $QTOOL eval $TMP/p.onnx --data $TMP/hb $PP --latency-runs 0 \
    --ref $D/model.onnx --json $TMP/p_hb.json
check "  plain qat misses the target there: top-1 $(json $TMP/p_hb.json top1), float $(json $TMP/p_hb.json ref_top1)" \
    python3 -c "
import json; e=json.load(open('$TMP/p_hb.json')); assert e['images'] == 75 and e['ref_top1'] - e['top1'] > 2, e"
expect_ok "  eval it on the test images" $QTOOL eval $TMP/p.onnx --data $D/test $PP --latency-runs 0 \
    --ref $D/model.onnx --json $TMP/p_e.json

expect_ok "qat W3A3 --max-drop 2" $QTOOL qat $QAT -o $TMP/m.onnx --max-drop 2 --json $TMP/m_c.json --threads 2
check "  JSON: met, metric top1, on the 75 held-back images" python3 -c "
import json; f=json.load(open('$TMP/m_c.json'))['fallback']
assert f['met'] is True and f['metric'] == 'top1' and f['max_drop'] == 2 and f['eval_images'] == 75, f"
check "  started from plain qat's model (its figures there), drop $(json $TMP/m_c.json fallback.drop_before) -> \
$(json $TMP/m_c.json fallback.drop_after) <= 2" python3 -c "
import json; f=json.load(open('$TMP/m_c.json'))['fallback']; e=json.load(open('$TMP/p_hb.json'))
b=f['before']
assert abs(b['top1'] - e['top1']) < 1e-6 and abs(b['agreement'] - e['agreement']) < 1e-6, (b, e)
assert abs(b['sqnr_db'] - e['sqnr_db']) < 0.05, (b, e)
assert f['drop_before'] > 2 and f['drop_after'] <= 2 and f['rebuilds'] >= 1, f"
check "  raised layers named, fewer than all candidates" python3 -c "
import json; f=json.load(open('$TMP/m_c.json'))['fallback']
r=[l['node'] for l in f['raised']]
assert 1 <= len(r) < f['candidates'] and all(n.startswith('/') for n in r), f"
check "  quant_info.json records it; the raised layers' weights at their new width" python3 -c "
import json; j=json.load(open('$TMP/m_c.json'))['fallback']; t=json.load(open('$TMP/m.json')); qi=t['fallback']
assert [l['node'] for l in qi['raised']] == [l['node'] for l in j['raised']] and qi['met'] is True, qi
ex=set(t['prepare']['excluded']); nw=0
for l in qi['raised']:
    if l['to'] == 'float':
        assert l['node'] in ex, l
    else:
        w=[x for x in t['tensors'] if x.get('node') == l['node'] and x['role'] == 'weight']
        assert all(x['bits'] == l['to'] for x in w), (l, w)
        nw += len(w)
assert nw >= 1 and 'tuned_weights' in t"
expect_ok "  eval on the test images" $QTOOL eval $TMP/m.onnx --data $D/test $PP --latency-runs 0 \
    --ref $D/model.onnx --json $TMP/m_e.json
check "  test images: top-1 $(json $TMP/m_e.json top1) > plain qat's $(json $TMP/p_e.json top1) + 10" \
    fcmp "$(json $TMP/m_e.json top1)" '>' "$(python3 -c "print($(json $TMP/p_e.json top1) + 10)")"
check "  test images: SQNR $(json $TMP/m_e.json sqnr_db) dB > plain qat's $(json $TMP/p_e.json sqnr_db) + 3" \
    fcmp "$(json $TMP/m_e.json sqnr_db)" '>' "$(python3 -c "print($(json $TMP/p_e.json sqnr_db) + 3)")"
expect_ok "  eval the file on the held-back images" $QTOOL eval $TMP/m.onnx --data $TMP/hb $PP --latency-runs 0 \
    --ref $D/model.onnx --json $TMP/m_hb.json
check "  the search's 'as written' figures are the file's: top-1 $(json $TMP/m_hb.json top1), SQNR $(json $TMP/m_hb.json sqnr_db)" \
    python3 -c "
import json; a=json.load(open('$TMP/m_c.json'))['fallback']['after']; e=json.load(open('$TMP/m_hb.json'))
assert e['images'] == 75 and abs(a['top1'] - e['top1']) < 1e-6 and abs(a['agreement'] - e['agreement']) < 1e-6, (a, e)
assert abs(a['sqnr_db'] - e['sqnr_db']) < 0.05, (a, e)"
expect_ok "  ORT loads it" $ORT $TMP/m.onnx --check-load
expect_ok "  qtool and ORT agree on it" sh -c "$QTOOL eval $TMP/m.onnx --data $D/test $PP --latency-runs 0 \
    --limit 100 --save-inputs $TMP/i.bin --save-outputs $TMP/q.bin && $ORT $TMP/m.onnx --input $TMP/i.bin \
    --shape 100,1,28,28 --output $TMP/o.bin && python3 scripts/cmpraw.py $TMP/q.bin $TMP/o.bin 1 --top1 10"
expect_ok "  export rebuilds it from quant_info.json" $QTOOL export $D/model.onnx --quant-info $TMP/m.json \
    -o $TMP/m_x.onnx
check "  byte for byte" cmp $TMP/m.onnx $TMP/m_x.onnx
expect_ok "  again at 1 thread (its log kept)" sh -c "$QTOOL qat $(echo "$QAT" | sed 's/ -q / /') -o $TMP/m1.onnx \
    --max-drop 2 --threads 1 2>$TMP/m1.log" 
check "  same model at 1 and 2 threads" cmp $TMP/m.onnx $TMP/m1.onnx
check "  same quant_info.json" cmp $TMP/m.json $TMP/m1.json
check "  same tuned weights" cmp $TMP/m.weights.bin $TMP/m1.weights.bin

check "  each rebuilt plan retuned for an epoch's 7 steps, kept only where the drop did not rise" python3 -c "
import json, re; f=json.load(open('$TMP/m_c.json'))['fallback']
assert f['retune_steps'] == 225 // 32 and f['retune_tries'] == f['rebuilds'] >= 1, f
log=re.findall(r'retuned for (\d+) steps: drop (\S+) -> (\S+), (kept|undone)', open('$TMP/m1.log').read())
assert len(log) == f['retune_tries'] and sum(k == 'kept' for *_, k in log) == f['retuned'], (log, f)
assert all((float(b) <= float(a)) == (k == 'kept') and int(n) == 7 for n, a, b, k in log), log"
expect_ok "  --retune-steps 0: no retune" $QTOOL qat $QAT -o $TMP/m0.onnx --max-drop 2 --retune-steps 0 \
    --json $TMP/m0_c.json --threads 2
check "  none tried; the model differs exactly when a retune was kept ($(json $TMP/m_c.json fallback.retuned))" \
    sh -c "python3 -c \"
import json; f=json.load(open('$TMP/m0_c.json'))['fallback']; assert f['retune_tries'] == 0 and f['retune_steps'] == 0, f
\" && if [ $(json $TMP/m_c.json fallback.retuned) -gt 0 ]; then ! cmp -s $TMP/m.onnx $TMP/m0.onnx; \
    else cmp -s $TMP/m.onnx $TMP/m0.onnx; fi"

# --eval-data: unlabeled images, so agreement by default
mkdir -p $TMP/flat
for c in $D/test/*/; do
    ls "$c" | head -4 | while read -r f; do ln -s "$TOP/$c$f" "$TMP/flat/$(basename "$c")_$f"; done
done
expect_ok "--max-drop 5 --eval-data DIR (unlabeled)" $QTOOL qat $QAT -o $TMP/e.onnx --max-drop 5 \
    --eval-data $TMP/flat --json $TMP/e_c.json
check "  metric agreement on the 40 --eval-data images, met" python3 -c "
import json; f=json.load(open('$TMP/e_c.json'))['fallback']
assert f['metric'] == 'agreement' and f['eval_images'] == 40 and f['met'] is True, f
assert f['drop_before'] > 5 and f['drop_after'] <= 5, f"

# a target the allowed layers cannot meet: the best model is written, exit 6
expect_fail 6 "--max-drop 0 --metric sqnr --max-raise 2: exit 6" $QTOOL qat $QAT -o $TMP/un.onnx --max-drop 0 \
    --metric sqnr --max-raise 2 --json $TMP/un_c.json
check "  the best model is written anyway" test -s $TMP/un.onnx -a -s $TMP/un.json
check "  JSON: met false, exit_code 6, at most 2 raised (to float), the layers left named, better than before" python3 -c "
import json; d=json.load(open('$TMP/un_c.json')); f=d['fallback']
assert f['met'] is False and d['exit_code'] == 6 and len(f['raised']) <= 2 and f['candidates'] == 2, d
assert len(f['unsaved']) >= 2 and all(n.startswith('/') for n in f['unsaved']), f
assert f['drop_after'] < f['drop_before'], f
assert any(l['to'] == 'float' for l in f['raised']), f['raised']
assert json.load(open('$TMP/un.json'))['fallback']['met'] is False"
expect_ok "  ORT loads it" $ORT $TMP/un.onnx --check-load
expect_ok "  export rebuilds it" $QTOOL export $D/model.onnx --quant-info $TMP/un.json -o $TMP/un_x.onnx
check "  byte for byte" cmp $TMP/un.onnx $TMP/un_x.onnx
$QTOOL qat $QAT -o $TMP/un2.onnx --max-drop 0 --metric sqnr --max-raise 2 >$TMP/un.out 2>&1
check "  the text names the layers it could not save" grep -q "could not save: /" $TMP/un.out
check "  and the error says the best model was written" grep -q "qat: the target .* is not met; wrote the best" \
    $TMP/un.out

# usage errors, before any training, no output
mkdir -p $TMP/empty
expect_fail 2 "--eval-data alone" $QTOOL qat $QAT -o $TMP/b.onnx --eval-data $TMP/flat
expect_fail 2 "--metric without --max-drop" $QTOOL qat $QAT -o $TMP/b.onnx --metric top1 --sensitivity
expect_fail 2 "--max-raise without --max-drop" $QTOOL qat $QAT -o $TMP/b.onnx --max-raise 2
expect_fail 2 "--retune-steps without --max-drop" $QTOOL qat $QAT -o $TMP/b.onnx --retune-steps 3 --sensitivity
expect_fail 2 "--max-drop with --no-quant" $QTOOL qat $QAT -o $TMP/b.onnx --no-quant --max-drop 1
expect_fail 2 "--sensitivity with --init" $QTOOL qat $QAT -o $TMP/b.onnx --init $TMP/m.json --sensitivity
expect_fail 2 "--max-drop with nothing held back and no --val" $QTOOL qat $QAT -o $TMP/b.onnx --max-drop 1 \
    --hold-back 0
check "  says why" grep -q "needs evaluation images: qat held no training images back" $_out
expect_fail 2 "--eval-data with no images" $QTOOL qat $QAT -o $TMP/b.onnx --max-drop 1 --eval-data $TMP/empty
check "  says why" grep -q "needs evaluation images" $_out
expect_fail 2 "--metric top1 on unlabeled --eval-data" $QTOOL qat $QAT -o $TMP/b.onnx --max-drop 1 --metric top1 \
    --eval-data $TMP/flat
check "  no output left behind" sh -c "! ls $TMP/b.* 2>/dev/null | grep -q ."
done_testing
