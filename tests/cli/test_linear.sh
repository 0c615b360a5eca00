#!/bin/sh
# test_linear.sh - `attn run|grad ... --linear [--causal|--causal-top-left]`
# (issue 8): linear attention on .npy files.
#
#   test_linear.sh ATTN SCRATCH_DIR GEN_NPY
#
# One key gives o = v and dv = dout, dq = dk = 0; the bhsd layout gives the
# bshd result transposed; bottom-right and top-left causal agree when
# seq_q = seq_k and differ from non-causal; 1 and 3 threads are bitwise
# equal; grad's --out is run's O; f16 storage is close to f32; every flag
# linear attention cannot honour is a usage error (exit 2) naming it; a
# library error (shapes) is exit 1. The values against the oracle:
# tests/test_linear.c. The last line is "N passed, N failed".
# shellcheck disable=SC2086

ATTN=$1
S=$2
G=$3
if [ -z "$ATTN" ] || [ -z "$S" ] || [ ! -x "$ATTN" ] || [ ! -x "$G" ]; then
  echo "usage: test_linear.sh ATTN SCRATCH_DIR GEN_NPY" >&2
  exit 2
fi
. "$(dirname "$0")/lib.sh" # tally, LIMIT, expect_*, gen
S=$(scratch_dir test_linear.sh "$S") || exit 2

# batch 2, seq 130 (three chunks), heads 4 (kv 2), dim 16, dim_v 8
gen rand f32 1 "$S/q.npy" 2 130 4 16
gen rand f32 2 "$S/k.npy" 2 130 2 16
gen rand f32 3 "$S/v.npy" 2 130 2 8
gen rand f32 4 "$S/do.npy" 2 130 4 8
gen rand f32 5 "$S/k2.npy" 2 97 2 16
gen rand f32 6 "$S/v2.npy" 2 97 2 8
QKV="--q $S/q.npy --k $S/k.npy --v $S/v.npy"
GRAD="--dout $S/do.npy --dq $S/dq.npy --dk $S/dk.npy --dv $S/dv.npy"

# --- flags --linear cannot honour: exit 2, naming the flag ------------------
gen fill f32 0.5 "$S/bias.npy" 1 1 130 130
gen fill bool 1 "$S/mask.npy" 1 1 130 130
gen f32v "$S/slopes.npy" 0.5 0.25 0.125 0.0625
for f in "--window 8,0" "--prefix 4" "--scale 0.5" "--softcap 30" \
  "--dropout 0.1" "--alibi $S/slopes.npy" "--bias $S/bias.npy" \
  "--mask $S/mask.npy" "--sinks $S/slopes.npy" "--rope 10000" \
  "--q-pos-offset 3" "--isa generic" "--lse $S/lse.npy" \
  "--kv-quant q8_0" "--sparse strided:8" "--block-size 16,16" \
  "--global $S/g.npy"; do
  name=${f%% *}
  expect_fail 2 "run --linear $f" run $QKV --out "$S/o.npy" --linear $f
  expect_msg "run --linear $f" "--linear cannot be combined with $name"
done
expect_fail 2 "grad --linear --bias --dbias" grad $QKV $GRAD --linear \
  --bias "$S/bias.npy" --dbias "$S/db.npy"
expect_msg "grad --linear --bias" "--linear cannot be combined with --bias"
expect_fail 2 "run --linear=1" run $QKV --out "$S/o.npy" --linear=1

# --- library errors: exit 1 -------------------------------------------------
gen rand f32 7 "$S/q3.npy" 2 130 3 16
expect_fail 1 "run --linear, 3 q heads over 2 kv heads" \
  run --q "$S/q3.npy" --k "$S/k.npy" --v "$S/v.npy" --out "$S/o.npy" --linear

# --- one key: o = v, dv = dout, dq = dk = 0 ---------------------------------
gen rand f32 8 "$S/q1.npy" 1 1 1 4
gen rand f32 9 "$S/k1.npy" 1 1 1 4
gen rand f32 10 "$S/v1.npy" 1 1 1 3
gen rand f32 11 "$S/do1.npy" 1 1 1 3
gen fill f32 0 "$S/zero4.npy" 1 1 1 4
ONE="--q $S/q1.npy --k $S/k1.npy --v $S/v1.npy"
if expect_ok "run --linear, one key" run $ONE --out "$S/o1.npy" --linear; then
  expect_same "one key: o = v" "$S/o1.npy" "$S/v1.npy" 1e-6
fi
if expect_ok "grad --linear --causal, one key" grad $ONE --linear --causal \
  --dout "$S/do1.npy" --dq "$S/dq1.npy" --dk "$S/dk1.npy" --dv "$S/dv1.npy"; then
  expect_same "one key: dv = dout" "$S/dv1.npy" "$S/do1.npy" 1e-6
  expect_same "one key: dq = 0" "$S/dq1.npy" "$S/zero4.npy" 1e-6
  expect_same "one key: dk = 0" "$S/dk1.npy" "$S/zero4.npy" 1e-6
fi

# --- run: layouts, causal forms, threads, dtypes ----------------------------
expect_ok "run --linear" run $QKV --out "$S/o_nc.npy" --linear
expect_shape "run --linear" "$S/o_nc.npy" "<f4 2x130x4x8"
expect_finite "run --linear" "$S/o_nc.npy"
expect_ok "run --linear --causal" run $QKV --out "$S/o_c.npy" --linear --causal
expect_differ "causal differs from non-causal" "$S/o_c.npy" "$S/o_nc.npy"
expect_ok "run --linear --causal-top-left" \
  run $QKV --out "$S/o_tl.npy" --linear --causal-top-left
expect_same "top-left = bottom-right when seq_q = seq_k" \
  "$S/o_tl.npy" "$S/o_c.npy" 0
expect_ok "run --linear --causal --threads 1" \
  run $QKV --out "$S/o_t1.npy" --linear --causal --threads 1
expect_ok "run --linear --causal --threads 3" \
  run $QKV --out "$S/o_t3.npy" --linear --causal --threads 3
expect_same "1 and 3 threads: bitwise" "$S/o_t1.npy" "$S/o_t3.npy" 0
for x in q k v; do
  gen transpose12 "$S/$x.npy" "$S/${x}_t.npy"
done
expect_ok "run --linear --causal --layout bhsd" \
  run --q "$S/q_t.npy" --k "$S/k_t.npy" --v "$S/v_t.npy" --out "$S/o_bh.npy" \
  --layout bhsd --linear --causal
gen transpose12 "$S/o_bh.npy" "$S/o_bh_t.npy"
expect_same "bhsd = bshd" "$S/o_bh_t.npy" "$S/o_c.npy" 0
expect_ok "run --linear --causal --dtype f16" \
  run $QKV --out "$S/o_h.npy" --linear --causal --dtype f16
expect_same "f16 storage close to f32" "$S/o_h.npy" "$S/o_c.npy" 5e-3
expect_ok "run --linear --causal --dtype bf16" \
  run $QKV --out "$S/o_b.npy" --linear --causal --dtype bf16
expect_same "bf16 storage close to f32" "$S/o_b.npy" "$S/o_c.npy" 4e-2
expect_ok "run --linear --causal, seq_k 97 < seq_q 130" \
  run --q "$S/q.npy" --k "$S/k2.npy" --v "$S/v2.npy" --out "$S/o_short.npy" \
  --linear --causal
expect_finite "seq_k < seq_q (rows with no key are 0)" "$S/o_short.npy"

# --- grad --------------------------------------------------------------------
for c in "" "--causal" "--causal-top-left"; do
  if expect_ok "grad --linear $c" grad $QKV $GRAD --linear $c \
    --out "$S/o_g.npy" --threads 2; then
    expect_shape "grad --linear $c dq" "$S/dq.npy" "<f4 2x130x4x16"
    expect_shape "grad --linear $c dk" "$S/dk.npy" "<f4 2x130x2x16"
    expect_shape "grad --linear $c dv" "$S/dv.npy" "<f4 2x130x2x8"
    expect_finite "grad --linear $c dq" "$S/dq.npy"
    expect_finite "grad --linear $c dk" "$S/dk.npy"
  fi
done
expect_same "grad's O is run's O (top-left)" "$S/o_g.npy" "$S/o_tl.npy" 0
cp "$S/dk.npy" "$S/dk_a.npy"
expect_ok "grad --linear --causal-top-left --threads 1" \
  grad $QKV $GRAD --linear --causal-top-left --threads 1
expect_same "grad: 1 and 2 threads bitwise" "$S/dk.npy" "$S/dk_a.npy" 0

echo "$npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
