#!/bin/sh
# train_cli.sh ATTN - `attn train`: exit status 2 for usage errors, 1 for
# runtime errors, one "attn: ..." line; a tiny run writes its files.
attn=$1
pass=0 fail=0
expect() { # expect CODE WHAT ARGS...
  code=$1 what=$2
  shift 2
  err=$("$attn" "$@" 2>&1 >/dev/null)
  rc=$?
  if [ "$rc" -eq "$code" ]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAILED: $what: exit $rc, expected $code ($err)"; fi
}
d=$(mktemp -d) || exit 1
trap 'rm -rf "$d"' EXIT
expect 2 "no model" train
expect 2 "unknown model" train gpt
expect 2 "unknown flag" train encdec --bogus 1
expect 2 "zero steps" train encdec --steps 0
expect 2 "bad number" train encdec --steps ten
expect 2 "heads not dividing" train vit --d-model 30 --heads 4
expect 2 "odd d-model for sinusoids" train encdec --d-model 9 --heads 1
expect 2 "dropout 1" train vit --dropout 1
expect 2 "data for encdec" train encdec --data x.csv.gz
expect 1 "missing data file" train vit --data "$d/none.csv.gz" --out "$d/v"
: > "$d/file"
expect 1 "out is a file" train encdec --steps 1 --out "$d/file"
expect 0 "tiny encdec run" train encdec --steps 3 --batch 4 --eval 8 \
  --d-model 16 --heads 2 --d-ff 16 --layers 1 --out "$d/e" --quiet
for f in model.safetensors loss.png summary.json cross_attention.png; do
  if [ -s "$d/e/$f" ]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAILED: $d/e/$f missing"; fi
done
if grep -q '"held_out_accuracy"' "$d/e/summary.json"; then
  pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAILED: summary"; fi
# attn show on the trained models: the encoder-decoder's three kinds of
# attention (cross-attention rectangular: words x digits), the ViT's
expect 0 "show encdec" show 4721 --model encdec --weights "$d/e/model.safetensors" \
  --out "$d/se" --token 0
for f in encoder/attention.html decoder/attention.html cross/attention.html \
  cross/layer0_heads.png cross/layer0_head1.svg encoder/layer0_head0.png; do
  if [ -s "$d/se/$f" ]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAILED: $d/se/$f missing"; fi
done
out=$("$attn" show 905 --model encdec --weights "$d/e/model.safetensors" \
  --format none)
case $out in
"905 -> "*"encdec cross, layer 0"*"attends to:"*) pass=$((pass + 1)) ;;
*) fail=$((fail + 1)); echo "FAILED: show encdec output: $out" ;;
esac
expect 1 "show encdec: not a number" show 12a --model encdec \
  --weights "$d/e/model.safetensors" --format none
expect 1 "show encdec: seven digits" show 1234567 --model encdec \
  --weights "$d/e/model.safetensors" --format none
expect 1 "show encdec: no checkpoint" show 12 --model encdec \
  --weights "$d/none.safetensors" --format none
expect 1 "show vit: wrong checkpoint kind" show 3 --model vit \
  --weights "$d/e/model.safetensors" --format none
expect 2 "show: unknown model" show 12 --model gpt
if [ -z "$ATTN_DIGITS_ABSENT" ]; then
  expect 0 "tiny vit run" train vit --steps 2 --batch 4 --d-model 16 \
    --heads 2 --d-ff 16 --layers 1 --out "$d/v" --quiet
  expect 0 "show vit" show 17 --model vit --weights "$d/v/model.safetensors" \
    --out "$d/sv"
  for f in attention.html layer0_patches.png layer0_heads.png; do
    if [ -s "$d/sv/$f" ]; then pass=$((pass + 1)); else
      fail=$((fail + 1)); echo "FAILED: $d/sv/$f missing"; fi
  done
  out=$("$attn" show 17 --model vit --weights "$d/v/model.safetensors" \
    --format none)
  case $out in
  "image 17: predicted "*", label "*"cls attends to:"*"r3c3"*) pass=$((pass + 1)) ;;
  *) fail=$((fail + 1)); echo "FAILED: show vit output: $out" ;;
  esac
  expect 1 "show vit: index past the data" show 1797 --model vit \
    --weights "$d/v/model.safetensors" --format none
  expect 1 "show vit: not an image" show "$d/e/summary.json" --model vit \
    --weights "$d/v/model.safetensors" --format none
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
