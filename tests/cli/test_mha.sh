#!/bin/sh
# test_mha.sh - tests of `attn mha` (the multi-head attention layer on .npy
# files), no Python needed.
#
#   test_mha.sh ATTN SCRATCH_DIR GEN_NPY
#
# Good runs: exit 0, empty stderr, outputs and gradients of the right
# shapes, options that must change the result change it. Bad inputs: the
# right exit status (2 usage, 1 runtime) and one stderr line "attn: ...".
# The numbers themselves are checked by test_layer (double oracle, finite
# differences) and bench/layer_vs_torch.py (PyTorch). Last line: "N passed,
# N failed".
# shellcheck disable=SC2086

ATTN=$1
S=$2
G=$3
if [ -z "$ATTN" ] || [ -z "$S" ] || [ ! -x "$ATTN" ] || [ ! -x "$G" ]; then
  echo "usage: test_mha.sh ATTN SCRATCH_DIR GEN_NPY" >&2
  exit 2
fi
mkdir -p "$S" || exit 2
S=$(cd "$S" && pwd)
. "$(dirname "$0")/lib.sh" # tally, LIMIT, expect_fail, expect_msg
# expect_ok DESCRIPTION ARGS...
expect_ok() {
  desc=$1
  shift
  $LIMIT "$ATTN" "$@" >"$S/stdout" 2>"$S/stderr"
  rc=$?
  if [ "$rc" -ne 0 ] || [ -s "$S/stderr" ]; then
    failed "$desc: exit $rc: $(head -n 1 "$S/stderr")"
    return 1
  fi
  pass "$desc"
}
expect_shape() {
  got=$("$G" shape "$2" 2>&1)
  if [ "$got" = "$3" ]; then pass "$1 shape $3"; else failed "$1: shape '$got', expected '$3'"; fi
}
expect_differ() {
  if out=$("$G" compare "$2" "$3" 0 2>&1); then failed "$1: identical ($out)"; else pass "$1"; fi
}
expect_same() {
  if out=$("$G" compare "$2" "$3" "$4" 2>&1); then pass "$1 ($out)"; else failed "$1: $out"; fi
}
gen() {
  "$G" "$@" || {
    echo "test_mha.sh: gen_npy $* failed" >&2
    exit 2
  }
}

# --- inputs: E = 16, 4 heads of 4; y has 8 features, value 6 -------------
D=$S/in
F=$S/fused       # nn.MultiheadAttention's own names, fused
P=$S/sep         # separate q/k/v, PyTorch's single in_proj_bias
C=$S/cross       # cross-attention, kdim 8, vdim 6
Q=$S/gqa         # 4 query heads, 2 kv heads, per-projection biases
mkdir -p "$D" "$F" "$P" "$C" "$Q" "$S/g1" "$S/g2" || exit 2
gen rand f32 1 "$D/x.npy" 2 5 16
gen rand f32 2 "$D/x2.npy" 5 16
gen rand f32 3 "$D/y.npy" 2 7 8
gen rand f32 4 "$D/val.npy" 2 7 6
gen rand f32 5 "$D/dout.npy" 2 5 16
gen rand f32 6 "$D/x16.npy" 2 5 16
gen rand f16 7 "$D/xh.npy" 2 5 16
gen i32 "$D/lens.npy" 3 7
gen rand f32 11 "$F/in_proj_weight.npy" 48 16
gen rand f32 12 "$F/in_proj_bias.npy" 48
gen rand f32 13 "$F/out_proj_weight.npy" 16 16
gen rand f32 14 "$F/out_proj_bias.npy" 16
for d in "$P" "$C" "$Q"; do
  cp "$F/out_proj_weight.npy" "$F/out_proj_bias.npy" "$d/"
done
gen rand f32 21 "$P/q_proj_weight.npy" 16 16
gen rand f32 22 "$P/k_proj_weight.npy" 16 16
gen rand f32 23 "$P/v_proj_weight.npy" 16 16
cp "$F/in_proj_bias.npy" "$P/"
gen rand f32 31 "$C/q_proj_weight.npy" 16 16
gen rand f32 32 "$C/k_proj_weight.npy" 16 8
gen rand f32 33 "$C/v_proj_weight.npy" 16 6
cp "$F/in_proj_bias.npy" "$C/"
gen rand f32 41 "$Q/q_proj_weight.npy" 16 16
gen rand f32 42 "$Q/k_proj_weight.npy" 8 16
gen rand f32 43 "$Q/v_proj_weight.npy" 8 16
gen rand f32 44 "$Q/q_proj_bias.npy" 16
gen rand f32 45 "$Q/v_proj_bias.npy" 8
gen rand f32 46 "$Q/pos_table.npy" 32 16
gen rand f32 47 "$Q/rel_bias.npy" 8 4
M="--x $D/x.npy --heads 4"

# --- good runs --------------------------------------------------------------
expect_ok "mha --help" mha --help
if expect_ok "fused (nn.MultiheadAttention)" mha $M --weights "$F" --out "$S/o_f.npy"; then
  expect_shape "fused" "$S/o_f.npy" "<f4 2x5x16"
fi
expect_ok "2-D x" mha --x "$D/x2.npy" --heads 4 --weights "$F" --out "$S/o_2d.npy" &&
  expect_shape "2-D x" "$S/o_2d.npy" "<f4 5x16"
expect_ok "fused causal" mha $M --weights "$F" --causal --out "$S/o_fc.npy" &&
  expect_differ "--causal changes the output" "$S/o_f.npy" "$S/o_fc.npy"
expect_ok "separate weights, one in_proj_bias" mha $M --weights "$P" --out "$S/o_p.npy" &&
  expect_shape "separate" "$S/o_p.npy" "<f4 2x5x16"
if expect_ok "cross with value, kv-lens, grad" mha $M --y "$D/y.npy" \
  --value "$D/val.npy" --weights "$C" --kv-lens "$D/lens.npy" \
  --out "$S/o_c.npy" --grad "$D/dout.npy" --grad-dir "$S/g1"; then
  expect_shape "cross out" "$S/o_c.npy" "<f4 2x5x16"
  expect_shape "cross dx" "$S/g1/dx.npy" "<f4 2x5x16"
  expect_shape "cross dy" "$S/g1/dy.npy" "<f4 2x7x8"
  expect_shape "cross dvalue" "$S/g1/dvalue.npy" "<f4 2x7x6"
  expect_shape "cross dWk" "$S/g1/k_proj_weight.npy" "<f4 16x8"
  expect_shape "cross dWv" "$S/g1/v_proj_weight.npy" "<f4 16x6"
  expect_shape "cross dbq" "$S/g1/q_proj_bias.npy" "<f4 16"
  expect_shape "cross dWo" "$S/g1/out_proj_weight.npy" "<f4 16x16"
  expect_shape "cross dbo" "$S/g1/out_proj_bias.npy" "<f4 16"
fi
expect_ok "gqa" mha $M --kv-heads 2 --weights "$Q" --out "$S/o_q.npy"
if expect_ok "gqa rope causal grad" mha $M --kv-heads 2 --weights "$Q" \
  --rope 10000 --rope-style interleaved --rope-scaling linear:2 --causal \
  --out "$S/o_qr.npy" --grad "$D/dout.npy" --grad-dir "$S/g2"; then
  expect_differ "--rope changes the output" "$S/o_q.npy" "$S/o_qr.npy"
  expect_shape "gqa dWk" "$S/g2/k_proj_weight.npy" "<f4 8x16"
  expect_shape "gqa dbv" "$S/g2/v_proj_bias.npy" "<f4 8"
  if [ -e "$S/g2/k_proj_bias.npy" ]; then
    failed "no k_proj_bias.npy: no such gradient"
  else
    pass "no k_proj_bias.npy: no such gradient"
  fi
fi
for pos in sinusoidal learned alibi t5; do
  expect_ok "--positions $pos" mha $M --kv-heads 2 --weights "$Q" \
    --positions $pos --out "$S/o_$pos.npy" &&
    expect_differ "--positions $pos changes the output" "$S/o_q.npy" "$S/o_$pos.npy"
done
expect_ok "--positions t5 unidirectional, window, softcap, scale" mha $M \
  --kv-heads 2 --weights "$Q" --positions t5 --t5-unidirectional \
  --t5-max-distance 16 --window 2,0 --softcap 5 --scale 0.3 \
  --out "$S/o_t5u.npy"
expect_ok "learned positions with offsets" mha $M --kv-heads 2 --weights "$Q" \
  --positions learned --q-pos-offset 3 --out "$S/o_lo.npy" &&
  expect_differ "--q-pos-offset moves the learned positions" "$S/o_learned.npy" "$S/o_lo.npy"
expect_ok "same run twice" mha $M --weights "$F" --out "$S/o_f2.npy" &&
  expect_same "deterministic" "$S/o_f.npy" "$S/o_f2.npy" 0

# --- bad inputs -------------------------------------------------------------
expect_fail 2 "missing --heads" mha --x "$D/x.npy" --weights "$F" --out "$S/b.npy"
expect_fail 2 "unknown option" mha $M --weights "$F" --out "$S/b.npy" --frobnicate
expect_fail 2 "--value without --y" mha $M --weights "$C" --value "$D/val.npy" --out "$S/b.npy"
expect_fail 2 "--grad without --grad-dir" mha $M --weights "$F" --grad "$D/dout.npy" --out "$S/b.npy"
expect_fail 2 "unknown --positions" mha $M --weights "$F" --positions nope --out "$S/b.npy"
expect_fail 2 "--rope with --positions t5" mha $M --weights "$Q" --kv-heads 2 --rope 10000 --positions t5 --out "$S/b.npy"
expect_fail 2 "--rope-style without --rope" mha $M --weights "$F" --rope-style half --out "$S/b.npy"
expect_fail 2 "--out is --x" mha $M --weights "$F" --out "$D/x.npy"
expect_fail 2 "fused weights with --y" mha $M --weights "$F" --y "$D/y.npy" --out "$S/b.npy"
expect_fail 1 "heads do not split the rows" mha --x "$D/x.npy" --heads 5 --weights "$F" --out "$S/b.npy"
expect_fail 1 "kv heads 3 of 4" mha $M --kv-heads 3 --weights "$P" --out "$S/b.npy"
expect_fail 1 "missing weight directory" mha $M --weights "$S/none" --out "$S/b.npy"
expect_fail 1 "float16 x" mha --x "$D/xh.npy" --heads 4 --weights "$F" --out "$S/b.npy"
expect_fail 1 "x width is not the weights'" mha --x "$D/y.npy" --heads 4 --weights "$F" --out "$S/b.npy"
expect_fail 1 "learned table too short" mha $M --kv-heads 2 --weights "$Q" --positions learned --q-pos-offset 40 --out "$S/b.npy"
expect_fail 1 "kv-lens of the wrong length" mha $M --y "$D/y.npy" --value "$D/val.npy" --weights "$C" --kv-lens "$D/x.npy" --out "$S/b.npy"
expect_fail 1 "dout of the wrong shape" mha $M --weights "$F" --grad "$D/y.npy" --grad-dir "$S/g1" --out "$S/b.npy"

echo "$npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
