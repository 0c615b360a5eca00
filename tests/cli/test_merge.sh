#!/bin/sh
# test_merge.sh - `attn merge` against `attn run` on all the keys.
#
#   test_merge.sh ATTN SCRATCH_DIR GEN_NPY NPY_SLICE
#
# `attn run --lse` on key ranges K[:, a:b] (NPY_SLICE cuts them), then
# `attn merge` of the parts, must equal `attn run` on all the keys: plain,
# causal (each range with the whole problem's positions, --q-pos-offset and
# --k-pos-offset, so the mask is the same; the last range leaves the first
# rows with no key: LSE -inf), with --sinks, in the bhsd layout, the same
# bits for --threads 1 and 3. Tolerance 1e-5: O and V are in [-1, 1) and
# LSE below 5, where f32 attention over 40 keys is within about 1e-6 of
# exact (the forward oracle's rule) and the merge adds a few ulps.
# Usage errors exit 2 and bad files exit 1, each with exactly one stderr
# line "attn: ...". The last line is "N passed, N failed".
# shellcheck disable=SC2086

ATTN=$1
S=$2
G=$3
CUT=$4
if [ -z "$ATTN" ] || [ -z "$S" ] || [ ! -x "$ATTN" ] || [ ! -x "$G" ] ||
  [ ! -x "$CUT" ]; then
  echo "usage: test_merge.sh ATTN SCRATCH_DIR GEN_NPY NPY_SLICE" >&2
  exit 2
fi
. "$(dirname "$0")/lib.sh" # tally, LIMIT, expect_fail, expect_msg
S=$(scratch_dir test_merge.sh "$S") || exit 2
D=$S/in
mkdir -p "$D" || exit 2

# expect_ok DESCRIPTION ARGS... : exit 0 and nothing on stderr.
expect_ok() {
  desc=$1
  shift
  $LIMIT "$ATTN" "$@" >"$S/stdout" 2>"$S/stderr"
  rc=$?
  if [ "$rc" -ne 0 ]; then
    failed "$desc: exit $rc: $(head -n 1 "$S/stderr")"
    return 1
  fi
  if [ -s "$S/stderr" ]; then
    failed "$desc: unexpected stderr: $(head -n 1 "$S/stderr")"
    return 1
  fi
  pass "$desc"
}

# expect_same DESCRIPTION A B TOL
expect_same() {
  if out=$("$G" compare "$2" "$3" "$4" 2>&1); then
    pass "$1 ($out)"
  else
    failed "$1: $out (tolerance $4)"
  fi
}

gen() {
  "$G" "$@" || {
    echo "test_merge.sh: gen_npy $* failed" >&2
    exit 2
  }
}

cut_keys() { # IN OUT START STOP: rows START..STOP-1 of axis 1
  "$CUT" "$1" "$2" 1 "$3" "$4" || {
    echo "test_merge.sh: npy_slice $* failed" >&2
    exit 2
  }
}

# --- inputs: batch 2, seq_q 9, seq_k 40, heads 4 (kv 2), dim 16, dim_v 8 --
gen rand f32 1 "$D/q.npy" 2 9 4 16
gen rand f32 2 "$D/k.npy" 2 40 2 16
gen rand f32 3 "$D/v.npy" 2 40 2 8
gen f32v "$D/sinks.npy" 0.5 -1.5 2.0 -inf
gen f32v "$D/sinks3.npy" 0.5 -1.5 2.0
gen f32v "$D/sinks_nan.npy" 0.5 nan 2.0 0
gen rand f32 4 "$D/o_h3.npy" 2 9 3 8
gen rand f32 5 "$D/o_2d.npy" 9 8
gen rand f16 6 "$D/lse_f16.npy" 2 4 9
gen bad magic "$D/bad.npy"
for r in "0 17" "17 40" "17 35" "35 40"; do
  set -- $r
  cut_keys "$D/k.npy" "$D/k_$1_$2.npy" "$1" "$2"
  cut_keys "$D/v.npy" "$D/v_$1_$2.npy" "$1" "$2"
done

# run NAME START STOP [attn run options]: the keys START..STOP-1 alone
run() {
  name=$1
  a=$2
  b=$3
  shift 3
  expect_ok "run $name" run --q "$D/q.npy" --k "$D/k_${a}_$b.npy" \
    --v "$D/v_${a}_$b.npy" --out "$S/o_$name.npy" --lse "$S/l_$name.npy" "$@"
}

# --- two halves, no mask ---------------------------------------------------
expect_ok "run all keys" run --q "$D/q.npy" --k "$D/k.npy" --v "$D/v.npy" \
  --out "$S/o_all.npy" --lse "$S/l_all.npy"
run a 0 17
run b 17 40
expect_ok "merge two halves" merge --part "$S/o_a.npy,$S/l_a.npy" \
  --part "$S/o_b.npy,$S/l_b.npy" --out "$S/o_m.npy" --lse "$S/l_m.npy"
expect_same "merged O = O over all keys" "$S/o_m.npy" "$S/o_all.npy" 1e-5
expect_same "merged LSE = LSE over all keys" "$S/l_m.npy" "$S/l_all.npy" 1e-5
expect_ok "merge, parts swapped, --threads 3" merge \
  --part="$S/o_b.npy,$S/l_b.npy" --part "$S/o_a.npy,$S/l_a.npy" \
  --out "$S/o_m2.npy" --threads 3
expect_same "the order of the parts" "$S/o_m2.npy" "$S/o_m.npy" 1e-6
expect_ok "merge --threads 1" merge --part "$S/o_a.npy,$S/l_a.npy" \
  --part "$S/o_b.npy,$S/l_b.npy" --out "$S/o_t1.npy" --threads 1
expect_ok "merge --threads 3" merge --part "$S/o_a.npy,$S/l_a.npy" \
  --part "$S/o_b.npy,$S/l_b.npy" --out "$S/o_t3.npy" --threads 3
expect_same "--threads 1 and 3: the same bits" "$S/o_t1.npy" "$S/o_t3.npy" 0
expect_ok "merge one part" merge --part "$S/o_a.npy,$S/l_a.npy" \
  --out "$S/o_one.npy" --lse "$S/l_one.npy"
expect_same "one part comes back as it is" "$S/o_one.npy" "$S/o_a.npy" 0
expect_same "one part's LSE" "$S/l_one.npy" "$S/l_a.npy" 0

# --- causal: three ranges at the whole problem's positions ---------------
# query i of the whole sits at i + 40 - 9; a range [a, b) has seq_k b - a,
# so its queries need --q-pos-offset 40 - (b - a) and its keys
# --k-pos-offset a. Keys 35..39 are after every position of rows 0..3.
expect_ok "run all keys, causal" run --q "$D/q.npy" --k "$D/k.npy" \
  --v "$D/v.npy" --out "$S/o_call.npy" --lse "$S/l_call.npy" --causal
run c1 0 17 --causal --q-pos-offset 23 --k-pos-offset 0
run c2 17 35 --causal --q-pos-offset 22 --k-pos-offset 17
run c3 35 40 --causal --q-pos-offset 35 --k-pos-offset 35
expect_ok "merge three causal ranges" merge \
  --part "$S/o_c1.npy,$S/l_c1.npy" --part "$S/o_c2.npy,$S/l_c2.npy" \
  --part "$S/o_c3.npy,$S/l_c3.npy" --out "$S/o_cm.npy" --lse "$S/l_cm.npy"
expect_same "causal: merged O" "$S/o_cm.npy" "$S/o_call.npy" 1e-5
expect_same "causal: merged LSE" "$S/l_cm.npy" "$S/l_call.npy" 1e-5

# --- sinks: in the merge only, equal to attn run with them --------------
if "$ATTN" run --help 2>/dev/null | grep -q -- "--sinks"; then
  expect_ok "run all keys, sinks" run --q "$D/q.npy" --k "$D/k.npy" \
    --v "$D/v.npy" --out "$S/o_sall.npy" --lse "$S/l_sall.npy" \
    --sinks "$D/sinks.npy"
  expect_ok "merge with --sinks" merge --part "$S/o_a.npy,$S/l_a.npy" \
    --part "$S/o_b.npy,$S/l_b.npy" --out "$S/o_sm.npy" --lse "$S/l_sm.npy" \
    --sinks "$D/sinks.npy"
  expect_same "sinks: merged O" "$S/o_sm.npy" "$S/o_sall.npy" 1e-5
  expect_same "sinks: merged LSE" "$S/l_sm.npy" "$S/l_sall.npy" 1e-5
else
  echo "SKIP: attn run has no --sinks yet"
fi

# --- the bhsd layout ------------------------------------------------------
gen transpose12 "$S/o_a.npy" "$S/o_at.npy"
gen transpose12 "$S/o_b.npy" "$S/o_bt.npy"
expect_ok "merge --layout bhsd" merge --part "$S/o_at.npy,$S/l_a.npy" \
  --part "$S/o_bt.npy,$S/l_b.npy" --out "$S/o_mt.npy" --layout bhsd
gen transpose12 "$S/o_mt.npy" "$S/o_mtt.npy"
expect_same "bhsd: merged O" "$S/o_mtt.npy" "$S/o_m.npy" 0

# --- usage errors: exit 2 -------------------------------------------------
P1="$S/o_a.npy,$S/l_a.npy"
P2="$S/o_b.npy,$S/l_b.npy"
expect_fail 2 "no --part" merge --out "$S/x.npy"
expect_msg "no --part" "missing --part"
expect_fail 2 "no --out" merge --part "$P1"
expect_msg "no --out" "missing --out"
expect_fail 2 "a part without a comma" merge --part "$S/o_a.npy" \
  --out "$S/x.npy"
expect_msg "a part without a comma" "expected O.npy,LSE.npy"
expect_fail 2 "a part with two commas" merge --part "$P1,$S/l_b.npy" \
  --out "$S/x.npy"
expect_fail 2 "a part with an empty file" merge --part "$S/o_a.npy," \
  --out "$S/x.npy"
expect_fail 2 "--part without a value" merge --out "$S/x.npy" --part
expect_fail 2 "unknown option" merge --part "$P1" --out "$S/x.npy" --causal
expect_fail 2 "--threads -1" merge --part "$P1" --out "$S/x.npy" --threads -1
expect_fail 2 "--layout xyz" merge --part "$P1" --out "$S/x.npy" --layout xyz
expect_fail 2 "--out twice" merge --part "$P1" --out "$S/x.npy" \
  --out "$S/y.npy"
expect_fail 2 "--out is a part" merge --part "$P1" --part "$P2" \
  --out "$S/o_b.npy"
expect_msg "--out is a part" "o_b.npy"
expect_fail 2 "--out and --lse one file" merge --part "$P1" \
  --out "$S/x.npy" --lse "$S/x.npy"

# --- runtime errors: exit 1 -----------------------------------------------
expect_fail 1 "a missing file" merge --part "$S/nope.npy,$S/l_a.npy" \
  --out "$S/x.npy"
expect_fail 1 "a bad file" merge --part "$D/bad.npy,$S/l_a.npy" \
  --out "$S/x.npy"
expect_fail 1 "O shapes differ" merge --part "$P1" \
  --part "$D/o_h3.npy,$S/l_b.npy" --out "$S/x.npy"
expect_msg "O shapes differ" "differs from"
expect_fail 1 "LSE of the wrong shape" merge --part "$S/o_a.npy,$S/o_b.npy" \
  --out "$S/x.npy"
expect_msg "LSE of the wrong shape" "LSE must be [batch, heads_q, seq_q]"
expect_fail 1 "LSE float16" merge --part "$S/o_a.npy,$D/lse_f16.npy" \
  --out "$S/x.npy"
expect_fail 1 "O 2-D" merge --part "$D/o_2d.npy,$S/l_a.npy" --out "$S/x.npy"
expect_fail 1 "sinks of the wrong length" merge --part "$P1" \
  --out "$S/x.npy" --sinks "$D/sinks3.npy"
expect_fail 1 "a NaN sink" merge --part "$P1" --out "$S/x.npy" \
  --sinks "$D/sinks_nan.npy"
expect_msg "a NaN sink" "sinks[1]"
expect_fail 1 "an unwritable --out" merge --part "$P1" \
  --out "$S/no/such/dir/x.npy"

echo "$npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
