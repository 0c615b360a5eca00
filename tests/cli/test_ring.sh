#!/bin/sh
# test_ring.sh - `mpirun -np R attn ring` against `attn run` / `attn grad`
# on the same files.
#
#   test_ring.sh ATTN SCRATCH_DIR GEN_NPY MPIEXEC
#
# O and LSE (and dQ, dK, dV with --dout) of the ring on 2 and 3 ranks
# (oversubscribed: the environment sets OMPI_MCA_rmaps_base_oversubscribe)
# must equal the single-process command's: plain with GQA, causal with
# ALiBi (zig-zag, the default with --causal), a window in the bhsd layout
# with contiguous slices, packed sequences, RoPE, sinks, bf16. Tolerance
# 1e-5 for O and LSE (inputs uniform in [-1, 1), 37 keys: f32 attention is
# within about 1e-6 of exact, the ring merges a few partials in f32), 3e-5
# for the gradients (sums over 37 keys of terms up to about 1, in another
# order). Errors: usage errors exit 2, an unreadable file 1, a library
# error (agreed by every rank) 1, each with the reason from rank 0 (mpirun
# adds its own lines, so only the exit code and the message are checked).
# The last line is "N passed, N failed".
# shellcheck disable=SC2086

ATTN=$1
S=$2
G=$3
MPI=$4
if [ -z "$ATTN" ] || [ -z "$S" ] || [ ! -x "$ATTN" ] || [ ! -x "$G" ] ||
  [ -z "$MPI" ]; then
  echo "usage: test_ring.sh ATTN SCRATCH_DIR GEN_NPY MPIEXEC" >&2
  exit 2
fi
mkdir -p "$S" || exit 2
S=$(cd "$S" && pwd)
D=$S/in
mkdir -p "$D" || exit 2

CLI_TIME_LIMIT=${CLI_TIME_LIMIT:-120}
. "$(dirname "$0")/lib.sh" # tally, LIMIT

expect_ok() {
  desc=$1
  shift
  $LIMIT "$@" >"$S/stdout" 2>"$S/stderr"
  rc=$?
  if [ "$rc" -ne 0 ]; then
    failed "$desc: exit $rc: $(head -n 3 "$S/stderr")"
    return 1
  fi
  pass "$desc"
}

# expect_rc CODE DESCRIPTION TEXT ARGS... : exit CODE, stderr has TEXT
expect_rc() {
  code=$1
  desc=$2
  text=$3
  shift 3
  $LIMIT "$@" >"$S/stdout" 2>"$S/stderr"
  rc=$?
  if [ "$rc" -ne "$code" ]; then
    failed "$desc: exit $rc, expected $code: $(head -n 3 "$S/stderr")"
  elif ! grep -qF -- "attn: " "$S/stderr" ||
    ! grep -qF -- "$text" "$S/stderr"; then
    failed "$desc: stderr lacks 'attn: ...$text': $(head -n 3 "$S/stderr")"
  else
    pass "$desc [$(grep -F 'attn: ' "$S/stderr" | head -n 1)]"
  fi
}

expect_same() {
  if out=$("$G" compare "$2" "$3" "$4" 2>&1); then
    pass "$1 ($out)"
  else
    failed "$1: $out (tolerance $4)"
  fi
}

gen() {
  "$G" "$@" || {
    echo "test_ring.sh: gen_npy $* failed" >&2
    exit 2
  }
}

# --- inputs: batch 2, seq 37, heads 4 (kv 2), dim 16, dim_v 8 --------------
gen rand f32 1 "$D/q.npy" 2 37 4 16
gen rand f32 2 "$D/k.npy" 2 37 2 16
gen rand f32 3 "$D/v.npy" 2 37 2 8
gen rand f32 4 "$D/do.npy" 2 37 4 8
gen f32v "$D/alibi.npy" 0.5 0.25 0.125 0.0625
gen f32v "$D/sinks.npy" 0.5 -1.5 2.0 -inf
gen rand f32 5 "$D/qh.npy" 2 4 37 16 # bhsd
gen rand f32 6 "$D/kh.npy" 2 2 37 16
gen rand f32 7 "$D/vh.npy" 2 2 37 8
gen rand f32 8 "$D/qp.npy" 37 4 16 # packed
gen rand f32 9 "$D/kp.npy" 37 2 16
gen rand f32 10 "$D/vp.npy" 37 2 8
gen i32 "$D/cu.npy" 0 10 25 37
gen i32 "$D/kvl_big.npy" 100 37

# both NAME NP [options]: attn run and attn ring; compare O and LSE
both() {
  name=$1
  np=$2
  shift 2
  expect_ok "run $name" "$ATTN" run --out "$S/o_$name.npy" \
    --lse "$S/l_$name.npy" "$@" || return
  expect_ok "ring -np $np $name" "$MPI" -np "$np" "$ATTN" ring \
    --out "$S/ro_$name.npy" --lse "$S/rl_$name.npy" "$@" || return
  expect_same "$name: O" "$S/ro_$name.npy" "$S/o_$name.npy" 1e-5
  expect_same "$name: LSE" "$S/rl_$name.npy" "$S/l_$name.npy" 1e-5
}

QKV="--q $D/q.npy --k $D/k.npy --v $D/v.npy"
both plain 2 $QKV
both plain3 3 $QKV
both causal_alibi 2 $QKV --causal --alibi "$D/alibi.npy"
both causal_alibi3 3 $QKV --causal --alibi "$D/alibi.npy"
both window_bhsd 2 --q "$D/qh.npy" --k "$D/kh.npy" --v "$D/vh.npy" \
  --layout bhsd --window 5,2
both window_contig 3 $QKV --window 4,0 --causal-top-left
both packed 2 --q "$D/qp.npy" --k "$D/kp.npy" --v "$D/vp.npy" \
  --cu-seqlens-q "$D/cu.npy" --cu-seqlens-k "$D/cu.npy" --causal
both sinks_softcap 3 $QKV --sinks "$D/sinks.npy" --softcap 3
both rope 2 $QKV --rope 10000 --causal
expect_ok "ring, explicit contiguous slices" "$MPI" -np 2 "$ATTN" ring \
  $QKV --causal --alibi "$D/alibi.npy" --ring-layout contiguous \
  --out "$S/ro_cc.npy"
expect_same "contiguous slices: O" "$S/ro_cc.npy" "$S/o_causal_alibi.npy" 1e-5

# gradients: attn grad vs attn ring --dout
grads() {
  name=$1
  np=$2
  shift 2
  expect_ok "grad $name" "$ATTN" grad --dout "$D/do.npy" --dq "$S/dq_$name.npy" \
    --dk "$S/dk_$name.npy" --dv "$S/dv_$name.npy" "$@" || return
  expect_ok "ring -np $np --dout $name" "$MPI" -np "$np" "$ATTN" ring \
    --dout "$D/do.npy" --dq "$S/rdq_$name.npy" --dk "$S/rdk_$name.npy" \
    --dv "$S/rdv_$name.npy" "$@" || return
  for t in dq dk dv; do
    expect_same "$name: $t" "$S/r${t}_$name.npy" "$S/${t}_$name.npy" 3e-5
  done
}
grads plain 2 $QKV
grads causal 3 $QKV --causal --alibi "$D/alibi.npy"
grads rope_window 2 $QKV --rope 10000 --causal --window 6,0
grads bf16 2 $QKV --dtype bf16 --causal
expect_ok "grad sinks" "$ATTN" grad $QKV --sinks "$D/sinks.npy" \
  --dout "$D/do.npy" --dq "$S/a.npy" --dk "$S/b.npy" --dv "$S/c.npy" \
  --dsinks "$S/ds.npy"
expect_ok "ring --dsinks" "$MPI" -np 2 "$ATTN" ring $QKV --sinks "$D/sinks.npy" \
  --dout "$D/do.npy" --dq "$S/ra.npy" --dk "$S/rb.npy" --dv "$S/rc.npy" \
  --dsinks "$S/rds.npy"
expect_same "dsinks" "$S/rds.npy" "$S/ds.npy" 3e-5

# errors
expect_rc 2 "--bias is refused" "--bias is not supported" \
  "$MPI" -np 2 "$ATTN" ring $QKV --bias "$D/alibi.npy" --out "$S/x.npy"
expect_rc 2 "missing --dq" "missing required option --dq" \
  "$MPI" -np 2 "$ATTN" ring $QKV --dout "$D/do.npy" --dk "$S/x.npy" \
  --dv "$S/y.npy"
expect_rc 2 "bad --ring-layout" "--ring-layout" \
  "$MPI" -np 2 "$ATTN" ring $QKV --ring-layout spiral --out "$S/x.npy"
expect_rc 1 "unreadable Q (rank 0 aborts the job)" "nope.npy" \
  "$MPI" -np 2 "$ATTN" ring --q "$D/nope.npy" --k "$D/k.npy" --v "$D/v.npy" \
  --out "$S/x.npy"
expect_rc 1 "kv_lens beyond the sequence (every rank agrees)" "kv_lens" \
  "$MPI" -np 2 "$ATTN" ring $QKV --kv-lens "$D/kvl_big.npy" --out "$S/x.npy"

echo "$npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
