#!/bin/sh
# test_quant.sh - `attn run|grad ... --kv-quant q8_0|q4_0` (issue 9).
#
#   test_quant.sh ATTN SCRATCH_DIR GEN_NPY
#
# K and V quantised (GGUF blocks of 32 along head_dim) before attending:
# close to the f32 result (q8_0 within 0.02, q4_0 within 0.2 on uniform
# [-1, 1) data; the error against the oracle on the dequantised values is
# tests/test_quant.c's), different from it, reproducible across thread
# counts, the same bits from bshd and bhsd files, with --rope and --dtype
# bf16; grad's O equals run's O bitwise and its dK, dV are finite
# (straight-through); an unknown scheme or a missing value is a usage error
# (exit 2), a head_dim that is not a multiple of 32 a runtime error (exit 1),
# each with one "attn: " line. The last line is "N passed, N failed".
# shellcheck disable=SC2086

ATTN=$1
S=$2
G=$3
if [ -z "$ATTN" ] || [ -z "$S" ] || [ ! -x "$ATTN" ] || [ ! -x "$G" ]; then
  echo "usage: test_quant.sh ATTN SCRATCH_DIR GEN_NPY" >&2
  exit 2
fi
. "$(dirname "$0")/lib.sh" # tally, LIMIT, expect_*, gen
S=$(scratch_dir test_quant.sh "$S") || exit 2

# batch 2, seq_q 5 (decode kernel) and 70 (tiled), seq_k 75, heads 4 (kv 2),
# dim 64, dim_v 32
gen rand f32 1 "$S/q.npy" 2 70 4 64
gen rand f32 5 "$S/q5.npy" 2 5 4 64
gen rand f32 2 "$S/k.npy" 2 75 2 64
gen rand f32 3 "$S/v.npy" 2 75 2 32
gen rand f32 4 "$S/do.npy" 2 70 4 32
gen rand f32 6 "$S/k16.npy" 2 75 2 16
gen rand f32 7 "$S/q16.npy" 2 70 4 16
KV="--k $S/k.npy --v $S/v.npy"
QKV="--q $S/q.npy $KV"

# --- usage and runtime errors --------------------------------------------------
expect_fail 2 "run --kv-quant q5_0" run $QKV --out "$S/o.npy" --kv-quant q5_0
expect_msg "run --kv-quant q5_0" "--kv-quant"
expect_fail 2 "run --kv-quant without a value" run $QKV --out "$S/o.npy" \
  --kv-quant
expect_fail 2 "run --kv-quant twice" run $QKV --out "$S/o.npy" \
  --kv-quant q8_0 --kv-quant q4_0
expect_fail 1 "run --kv-quant, head_dim 16" run --q "$S/q16.npy" \
  --k "$S/k16.npy" --v "$S/v.npy" --out "$S/o.npy" --kv-quant q8_0
expect_msg "run --kv-quant, head_dim 16" "multiple of 32"

# --- run ---------------------------------------------------------------------
for SQ in q q5; do
  Q="--q $S/$SQ.npy $KV"
  expect_ok "run $SQ f32" run $Q --out "$S/o_f32_$SQ.npy"
  expect_ok "run $SQ --kv-quant q8_0" run $Q --out "$S/o_q8_$SQ.npy" \
    --kv-quant q8_0
  expect_ok "run $SQ --kv-quant q4_0" run $Q --out "$S/o_q4_$SQ.npy" \
    --kv-quant q4_0
  expect_same "run $SQ: q8_0 near f32" "$S/o_f32_$SQ.npy" "$S/o_q8_$SQ.npy" 0.02
  expect_same "run $SQ: q4_0 near f32" "$S/o_f32_$SQ.npy" "$S/o_q4_$SQ.npy" 0.2
  expect_differ "run $SQ: q8_0 differs from f32" "$S/o_f32_$SQ.npy" "$S/o_q8_$SQ.npy"
  expect_differ "run $SQ: q4_0 differs from q8_0" "$S/o_q8_$SQ.npy" "$S/o_q4_$SQ.npy"
  expect_ok "run $SQ q8_0, 1 thread" run $Q --out "$S/o_q8_1_$SQ.npy" \
    --kv-quant q8_0 --threads 1 --causal
  expect_ok "run $SQ q8_0, 3 threads" run $Q --out "$S/o_q8_3_$SQ.npy" \
    --kv-quant q8_0 --threads 3 --causal
  expect_same "run $SQ q8_0: 1 and 3 threads bitwise" "$S/o_q8_1_$SQ.npy" \
    "$S/o_q8_3_$SQ.npy" 0
done

# the same values from bhsd files: the same bits
gen transpose12 "$S/q.npy" "$S/qt.npy"
gen transpose12 "$S/k.npy" "$S/kt.npy"
gen transpose12 "$S/v.npy" "$S/vt.npy"
expect_ok "run bhsd --kv-quant q4_0" run --q "$S/qt.npy" --k "$S/kt.npy" \
  --v "$S/vt.npy" --layout bhsd --out "$S/ot.npy" --kv-quant q4_0
gen transpose12 "$S/ot.npy" "$S/ott.npy"
expect_same "run: bhsd files give bshd's bits" "$S/o_q4_q.npy" "$S/ott.npy" 0

expect_ok "run --kv-quant q8_0 --rope 10000" run $QKV --out "$S/o_rope.npy" \
  --kv-quant q8_0 --rope 10000 --causal
expect_finite "run --kv-quant --rope" "$S/o_rope.npy"
expect_ok "run --kv-quant q4_0 --dtype bf16" run $QKV --out "$S/o_bf.npy" \
  --kv-quant q4_0 --dtype bf16 --window 8,0
expect_finite "run --kv-quant --dtype bf16" "$S/o_bf.npy"

# --- grad: straight-through ----------------------------------------------------
expect_ok "run q8_0 causal" run $QKV --out "$S/o_c.npy" --kv-quant q8_0 \
  --causal
expect_ok "grad --kv-quant q8_0" grad $QKV --dout "$S/do.npy" \
  --dq "$S/dq.npy" --dk "$S/dk.npy" --dv "$S/dv.npy" --out "$S/og.npy" \
  --kv-quant q8_0 --causal
expect_same "grad's O = run's O, bitwise" "$S/o_c.npy" "$S/og.npy" 0
expect_finite "grad dQ" "$S/dq.npy"
expect_finite "grad dK" "$S/dk.npy"
expect_finite "grad dV" "$S/dv.npy"
expect_ok "grad f32" grad $QKV --dout "$S/do.npy" --dq "$S/dq32.npy" \
  --dk "$S/dk32.npy" --dv "$S/dv32.npy" --causal
expect_same "grad dV: q8_0 near f32" "$S/dv32.npy" "$S/dv.npy" 0.05
expect_fail 2 "grad --kv-quant q9" grad $QKV --dout "$S/do.npy" \
  --dq "$S/dq.npy" --dk "$S/dk.npy" --dv "$S/dv.npy" --kv-quant q9

echo "$npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
