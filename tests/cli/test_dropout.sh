#!/bin/sh
# test_dropout.sh - `attn run|grad ... --dropout P --seed S` (issue 9).
#
#   test_dropout.sh ATTN SCRATCH_DIR GEN_NPY
#
# The same seed gives the same mask in run and grad (grad's O is run's O,
# bitwise), a run is reproducible, another seed changes O, --dropout 0 is
# bitwise no dropout for run and grad, dropout changes the gradients and
# keeps them finite (their values against the oracle: tests/test_dropout.c);
# a bad P or S is a usage error (exit 2) with one "attn: " line. The last
# line is "N passed, N failed".
# shellcheck disable=SC2086

ATTN=$1
S=$2
G=$3
if [ -z "$ATTN" ] || [ -z "$S" ] || [ ! -x "$ATTN" ] || [ ! -x "$G" ]; then
  echo "usage: test_dropout.sh ATTN SCRATCH_DIR GEN_NPY" >&2
  exit 2
fi
. "$(dirname "$0")/lib.sh" # tally, LIMIT, expect_*, gen
S=$(scratch_dir test_dropout.sh "$S") || exit 2

# batch 2, seq_q 70, seq_k 75, heads 4 (kv 2), dim 16, dim_v 8: two tiles
gen rand f32 1 "$S/q.npy" 2 70 4 16
gen rand f32 2 "$S/k.npy" 2 75 2 16
gen rand f32 3 "$S/v.npy" 2 75 2 8
gen rand f32 4 "$S/do.npy" 2 70 4 8
QKV="--q $S/q.npy --k $S/k.npy --v $S/v.npy"
GRAD="--dout $S/do.npy --dk $S/dk.npy --dv $S/dv.npy"

# --- usage errors: exit 2 ----------------------------------------------------
expect_fail 2 "run --dropout 1" run $QKV --out "$S/o.npy" --dropout 1
expect_msg "run --dropout 1" "--dropout"
expect_fail 2 "run --dropout -0.1" run $QKV --out "$S/o.npy" --dropout -0.1
expect_fail 2 "run --dropout nan" run $QKV --out "$S/o.npy" --dropout nan
expect_fail 2 "run --dropout abc" run $QKV --out "$S/o.npy" --dropout abc
expect_fail 2 "run --dropout 0.999999999 (1 in float32)" \
  run $QKV --out "$S/o.npy" --dropout 0.999999999
expect_fail 2 "run --dropout without a value" run $QKV --out "$S/o.npy" --dropout
expect_fail 2 "run --seed without --dropout" run $QKV --out "$S/o.npy" --seed 3
expect_msg "run --seed without --dropout" "--seed needs --dropout"
expect_fail 2 "run --seed -1" run $QKV --out "$S/o.npy" --dropout 0.1 --seed -1
expect_fail 2 "run --seed 2^64" \
  run $QKV --out "$S/o.npy" --dropout 0.1 --seed 18446744073709551616
expect_fail 2 "run --seed 12x" run $QKV --out "$S/o.npy" --dropout 0.1 --seed 12x
expect_fail 2 "run --seed twice" \
  run $QKV --out "$S/o.npy" --dropout 0.1 --seed 1 --seed 2
expect_fail 2 "grad --dropout 2" grad $QKV $GRAD --dq "$S/dq.npy" --dropout 2

# --- run ---------------------------------------------------------------------
expect_ok "run" run $QKV --out "$S/o_plain.npy"
expect_ok "run --dropout 0 --seed 9" run $QKV --out "$S/o_p0.npy" \
  --dropout 0 --seed 9
expect_same "run --dropout 0 is no dropout, bitwise" "$S/o_plain.npy" "$S/o_p0.npy"
expect_ok "run --dropout 0.3 --seed 42" run $QKV --out "$S/o_a.npy" \
  --dropout 0.3 --seed 42
expect_finite "run --dropout 0.3" "$S/o_a.npy"
expect_ok "run again, 1 thread" run $QKV --out "$S/o_b.npy" \
  --dropout 0.3 --seed 42 --threads 1
expect_same "run --seed 42 reproducible (all threads vs 1)" "$S/o_a.npy" "$S/o_b.npy"
expect_ok "run --seed 0x2a" run $QKV --out "$S/o_hex.npy" \
  --dropout 0.3 --seed 0x2a
expect_same "run --seed 0x2a = --seed 42" "$S/o_a.npy" "$S/o_hex.npy"
expect_ok "run --seed 43" run $QKV --out "$S/o_c.npy" --dropout 0.3 --seed 43
expect_differ "run: seed 43 differs from seed 42" "$S/o_a.npy" "$S/o_c.npy"
expect_differ "run: dropout differs from no dropout" "$S/o_a.npy" "$S/o_plain.npy"
expect_ok "run --seed 2^64-1" run $QKV --out "$S/o_max.npy" \
  --dropout 0.5 --seed 18446744073709551615
expect_finite "run --seed 2^64-1" "$S/o_max.npy"

# --- grad: the same seed, the same mask ---------------------------------------
expect_ok "grad --dropout 0.3 --seed 42" grad $QKV $GRAD --dq "$S/dq_a.npy" \
  --out "$S/og_a.npy" --dropout 0.3 --seed 42
expect_same "grad's O = run's O for the same seed, bitwise" "$S/o_a.npy" \
  "$S/og_a.npy"
expect_finite "grad dQ with dropout" "$S/dq_a.npy"
expect_finite "grad dV with dropout" "$S/dv.npy"
cp "$S/dv.npy" "$S/dv_a.npy"
expect_ok "grad again, 2 threads" grad $QKV $GRAD --dq "$S/dq_b.npy" \
  --dropout 0.3 --seed 42 --threads 2
expect_same "grad --seed 42 reproducible" "$S/dq_a.npy" "$S/dq_b.npy"
expect_ok "grad no dropout" grad $QKV $GRAD --dq "$S/dq_plain.npy"
cp "$S/dv.npy" "$S/dv_plain.npy"
expect_differ "grad: dropout changes dQ" "$S/dq_a.npy" "$S/dq_plain.npy"
expect_differ "grad: dropout changes dV" "$S/dv_a.npy" "$S/dv_plain.npy"
expect_ok "grad --dropout 0" grad $QKV $GRAD --dq "$S/dq_p0.npy" \
  --dropout 0 --seed 42
expect_same "grad --dropout 0 is no dropout, bitwise (dQ)" "$S/dq_plain.npy" \
  "$S/dq_p0.npy"
expect_same "grad --dropout 0 is no dropout, bitwise (dV)" "$S/dv_plain.npy" \
  "$S/dv.npy"
expect_ok "grad --causal --dropout 0.5" grad $QKV $GRAD --dq "$S/dq_c.npy" \
  --causal --dropout 0.5 --seed 7 --dtype bf16
expect_finite "grad --causal --dropout 0.5" "$S/dq_c.npy"

echo "$npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
