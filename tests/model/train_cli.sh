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
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
