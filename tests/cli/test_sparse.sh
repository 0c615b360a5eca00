#!/bin/sh
# test_sparse.sh - `attn run|grad` with --global IDX.npy, --sparse
# strided:L | fixed:L,C, --block-mask MAP.npy --block-size BQ,BK (issue 8).
#
#   test_sparse.sh ATTN SCRATCH_DIR GEN_NPY
#
# Values against the oracle are tests/test_sparse.c's; here: every flag is
# accepted by run and grad, patterns that allow everything (or exactly
# causal) give bitwise the plain call, patterns that mask change O and
# keep it finite, a layout with no live block gives O = 0, and bad values
# are usage errors (exit 2) or the library's errors (exit 1), each with one
# "attn: " line. The last line is "N passed, N failed".
# shellcheck disable=SC2086

ATTN=$1
S=$2
G=$3
if [ -z "$ATTN" ] || [ -z "$S" ] || [ ! -x "$ATTN" ] || [ ! -x "$G" ]; then
  echo "usage: test_sparse.sh ATTN SCRATCH_DIR GEN_NPY" >&2
  exit 2
fi
. "$(dirname "$0")/lib.sh" # tally, LIMIT, expect_*, gen
S=$(scratch_dir test_sparse.sh "$S") || exit 2

# batch 2, seq 130 (queries and keys), heads 4 (kv 2), dim 16: 3 key tiles
gen rand f32 1 "$S/q.npy" 2 130 4 16
gen rand f32 2 "$S/k.npy" 2 130 2 16
gen rand f32 3 "$S/v.npy" 2 130 2 16
gen rand f32 4 "$S/do.npy" 2 130 4 16
QKV="--q $S/q.npy --k $S/k.npy --v $S/v.npy"
GRAD="--dout $S/do.npy --dq $S/dq.npy --dk $S/dk.npy --dv $S/dv.npy"
gen i32 "$S/g.npy" 129 0 64 5 64
gen i32 "$S/g_all.npy" $(seq 0 129)
gen i32 "$S/g_bad.npy" 3 130
gen fill bool 1 "$S/bm_true.npy" 3 5     # 48x30 blocks: ceil(130/48) = 3
gen fill bool 0 "$S/bm_false.npy" 3 5
gen fill bool 1 "$S/bm_wrong.npy" 3 4
gen fill f32 1 "$S/bm_f32.npy" 3 5

# --- usage errors: exit 2 ----------------------------------------------------
expect_fail 2 "--sparse bogus" run $QKV --out "$S/o.npy" --sparse bogus:3
expect_msg "--sparse bogus" "--sparse"
expect_fail 2 "--sparse strided:0" run $QKV --out "$S/o.npy" --sparse strided:0
expect_fail 2 "--sparse strided:4,2" run $QKV --out "$S/o.npy" \
  --sparse strided:4,2
expect_fail 2 "--sparse fixed:4" run $QKV --out "$S/o.npy" --sparse fixed:4
expect_fail 2 "--sparse fixed:4,5 (C > L)" run $QKV --out "$S/o.npy" \
  --sparse fixed:4,5
expect_fail 2 "--block-mask without --block-size" run $QKV --out "$S/o.npy" \
  --block-mask "$S/bm_true.npy"
expect_msg "--block-mask without --block-size" "--block-size"
expect_fail 2 "--block-size 0,3" run $QKV --out "$S/o.npy" \
  --block-mask "$S/bm_true.npy" --block-size 0,3
expect_fail 2 "--block-size 48" run $QKV --out "$S/o.npy" \
  --block-mask "$S/bm_true.npy" --block-size 48
expect_fail 2 "--global twice" run $QKV --out "$S/o.npy" --global "$S/g.npy" \
  --global "$S/g.npy"

# --- the library's errors: exit 1 --------------------------------------------
expect_fail 1 "global index 130 of 130 keys" run $QKV --out "$S/o.npy" \
  --global "$S/g_bad.npy" --window 8,8
expect_msg "global index out of range" "out of range"
expect_fail 1 "block mask [3, 4] for 5 key blocks" run $QKV --out "$S/o.npy" \
  --block-mask "$S/bm_wrong.npy" --block-size 48,30
expect_msg "block mask shape" "block_mask.shape[3] = 4"
expect_fail 1 "block mask float32" run $QKV --out "$S/o.npy" \
  --block-mask "$S/bm_f32.npy" --block-size 48,30
expect_fail 1 "missing --global file" run $QKV --out "$S/o.npy" \
  --global "$S/none.npy"

# --- patterns that allow everything: bitwise the plain call ------------------
expect_ok "run plain" run $QKV --out "$S/o_plain.npy" --lse "$S/l_plain.npy"
expect_ok "run causal" run $QKV --out "$S/o_causal.npy" --causal
expect_ok "run all-true blocks" run $QKV --out "$S/o_bt.npy" \
  --block-mask "$S/bm_true.npy" --block-size 48,30
expect_same "all-true blocks = plain" "$S/o_bt.npy" "$S/o_plain.npy"
expect_ok "run every token global" run $QKV --out "$S/o_gall.npy" \
  --global "$S/g_all.npy" --window 3,3
expect_same "every token global = plain" "$S/o_gall.npy" "$S/o_plain.npy"
expect_ok "run strided:1" run $QKV --out "$S/o_s1.npy" --sparse strided:1
expect_same "strided:1 = causal" "$S/o_s1.npy" "$S/o_causal.npy"
expect_ok "run fixed:7,7" run $QKV --out "$S/o_f77.npy" --sparse fixed:7,7
expect_same "fixed:7,7 = causal" "$S/o_f77.npy" "$S/o_causal.npy"

# --- patterns that mask --------------------------------------------------------
expect_ok "run Longformer" run $QKV --out "$S/o_g.npy" --global "$S/g.npy" \
  --window 8,8
expect_differ "Longformer vs plain" "$S/o_g.npy" "$S/o_plain.npy"
expect_finite "Longformer" "$S/o_g.npy"
expect_ok "run window alone" run $QKV --out "$S/o_w.npy" --window 8,8
expect_differ "Longformer vs its window alone" "$S/o_g.npy" "$S/o_w.npy"
expect_ok "run strided:9 causal" run $QKV --out "$S/o_s9.npy" \
  --sparse strided:9 --causal
expect_differ "strided:9 vs causal" "$S/o_s9.npy" "$S/o_causal.npy"
expect_finite "strided:9" "$S/o_s9.npy"
expect_ok "run fixed:16,4" run $QKV --out "$S/o_f.npy" --sparse fixed:16,4
expect_differ "fixed:16,4 vs causal" "$S/o_f.npy" "$S/o_causal.npy"
expect_ok "run no live block" run $QKV --out "$S/o_bf.npy" \
  --lse "$S/l_bf.npy" --block-mask "$S/bm_false.npy" --block-size 48,30
gen fill f32 0 "$S/zeros.npy" 2 130 4 16
expect_same "no live block: O = 0" "$S/o_bf.npy" "$S/zeros.npy"
expect_ok "run all combined" run $QKV --out "$S/o_all.npy" --causal \
  --global "$S/g.npy" --window 16,0 --sparse strided:5 \
  --block-mask "$S/bm_true.npy" --block-size 48,30
expect_finite "all combined" "$S/o_all.npy"
for t in q k v; do gen transpose12 "$S/$t.npy" "$S/${t}_h.npy"; done
expect_ok "run bhsd Longformer" run --q "$S/q_h.npy" --k "$S/k_h.npy" \
  --v "$S/v_h.npy" --out "$S/o_gh.npy" --global "$S/g.npy" --window 8,8 \
  --layout bhsd
gen transpose12 "$S/o_gh.npy" "$S/o_gh_t.npy"
expect_same "bhsd Longformer = bshd" "$S/o_gh_t.npy" "$S/o_g.npy"

# --- grad accepts all of them --------------------------------------------------
expect_ok "grad plain" grad $QKV $GRAD --out "$S/go_plain.npy"
cp "$S/dq.npy" "$S/dq_plain.npy"
expect_ok "grad all-true blocks" grad $QKV $GRAD --out "$S/go_bt.npy" \
  --block-mask "$S/bm_true.npy" --block-size 48,30
expect_same "grad all-true blocks = plain dq" "$S/dq.npy" "$S/dq_plain.npy"
expect_ok "grad Longformer" grad $QKV $GRAD --out "$S/go_g.npy" \
  --global "$S/g.npy" --window 8,8
expect_same "grad's O = run's O (Longformer)" "$S/go_g.npy" "$S/o_g.npy"
expect_finite "grad Longformer dk" "$S/dk.npy"
expect_ok "grad strided" grad $QKV $GRAD --sparse strided:9 --causal
expect_finite "grad strided dq" "$S/dq.npy"
expect_ok "grad fixed" grad $QKV $GRAD --sparse fixed:16,4
expect_finite "grad fixed dv" "$S/dv.npy"
expect_ok "grad no live block" grad $QKV $GRAD --block-mask "$S/bm_false.npy" \
  --block-size 48,30
gen fill f32 0 "$S/zk.npy" 2 130 2 16
expect_same "no live block: dK = 0" "$S/dk.npy" "$S/zk.npy"
expect_fail 2 "grad --sparse fixed:3,4" grad $QKV $GRAD --sparse fixed:3,4

echo "$npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
