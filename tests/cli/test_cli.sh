#!/bin/sh
# test_cli.sh - tests of the `attn` command line, no Python needed.
#
#   test_cli.sh ATTN SCRATCH_DIR GEN_NPY
#
# ATTN is the attn binary, GEN_NPY the helper built from tests/cli/gen_npy.c
# (default: $GEN_NPY, else gen_npy next to ATTN). Every bad input must give a
# non-zero exit below 128 (no crash) and exactly one stderr line "attn: ...";
# every good run must exit 0 with an empty stderr and outputs of the right
# shape. Exit status 2 is a usage error (flags, their values, one file named
# twice), 1 a runtime error (files, their contents, the library's checks). The last line is "N passed, N failed"; the exit status is non-zero
# on any failure. The option strings below ($QKV, $O, ...) are split on
# purpose, so the scratch path must not contain blanks.
# shellcheck disable=SC2086

ATTN=$1
S=$2
G=${3:-${GEN_NPY:-$(dirname "$ATTN")/gen_npy}}
if [ -z "$ATTN" ] || [ -z "$S" ] || [ ! -x "$ATTN" ] || [ ! -x "$G" ]; then
  echo "usage: test_cli.sh ATTN SCRATCH_DIR [GEN_NPY]" >&2
  exit 2
fi
. "$(dirname "$0")/lib.sh" # tally, LIMIT, expect_*, gen
S=$(scratch_dir test_cli.sh "$S") || exit 2
D=$S/in
mkdir -p "$D" || exit 2

# --- inputs: batch 2, seq_q 5, seq_k 7, heads 4 (kv 2), dim 8, dim_v 6 ----
gen rand f32 1 "$D/q.npy" 2 5 4 8
gen rand f32 2 "$D/k.npy" 2 7 2 8
gen rand f32 3 "$D/v.npy" 2 7 2 6
gen rand f16 1 "$D/q16.npy" 2 5 4 8
gen transpose12 "$D/q.npy" "$D/qt.npy"
gen transpose12 "$D/k.npy" "$D/kt.npy"
gen transpose12 "$D/v.npy" "$D/vt.npy"
gen rand f32 4 "$D/k_dim9.npy" 2 7 2 9
gen rand f32 5 "$D/v_seq6.npy" 2 6 2 6
gen rand f32 6 "$D/k_b3.npy" 3 7 2 8
gen rand f32 6 "$D/v_b3.npy" 3 7 2 6
gen rand f32 7 "$D/k_h3.npy" 2 7 3 8
gen rand f32 7 "$D/v_h3.npy" 2 7 3 6
gen rand f32 8 "$D/q3d.npy" 5 4 8
gen fill bool 1 "$D/mask_true.npy" 1 1 5 7
gen fill bool 0 "$D/mask_false.npy" 2 4 5 7
gen fill f32 1 "$D/mask_f32.npy" 1 1 5 7
gen fill bool 1 "$D/mask_badshape.npy" 1 1 5 6
gen fill f32 0 "$D/bias_zero.npy" 1 4 1 7
gen rand f32 9 "$D/bias_full.npy" 2 4 5 7
gen rand f32 10 "$D/bias_2d.npy" 5 7
gen rand f32 11 "$D/bias_bad.npy" 1 4 5 6
gen rand f32 12 "$D/bias_5k.npy" 3 4 5 7
gen f32v "$D/alibi.npy" 0.5 0.25 0.125 0.0625
gen f32v "$D/alibi3.npy" 0.5 0.25 0.125
gen i32 "$D/lens_full.npy" 7 7
gen i32 "$D/lens.npy" 7 3
gen i32 "$D/lens3.npy" 7 3 1
gen i32 "$D/lens_big.npy" 7 8
gen i32 "$D/lens_neg.npy" 7 -1
gen f32v "$D/lens_f32.npy" 7 3
gen fill f32 0 "$D/zeros_o.npy" 2 5 4 6
gen fill f32 -inf "$D/ninf_lse.npy" 2 4 5
# packed: 2 sequences, q lengths 2 and 4, k lengths 4 and 5
gen rand f32 13 "$D/pq.npy" 6 4 8
gen rand f32 14 "$D/pk.npy" 9 2 8
gen rand f32 15 "$D/pv.npy" 9 2 6
gen i32 "$D/cuq.npy" 0 2 6
gen i32 "$D/cuk.npy" 0 4 9
gen i32 "$D/cuk_dec.npy" 0 5 4
gen i32 "$D/cuk_big.npy" 0 4 99
gen i32 "$D/cuk_neg.npy" 0 -4 9
gen i32 "$D/cuk_len4.npy" 0 4 6 9
# per-sequence extras: [sequences 2, heads 4, longest q 4, longest k 5]
gen fill f32 0 "$D/pbias_zero.npy" 1 4 4 5
gen fill bool 1 "$D/pmask_true.npy" 2 1 1 5
gen i32 "$D/plens_full.npy" 4 5
gen i32 "$D/plens_short.npy" 4 2
BAD_KINDS="magic truncated header-len dtype big-endian fortran 5d trailing
  syntax empty version dup-key missing-key huge-dim negative-dim object
  structured truncated-header huge-shape 9d"
for k in $BAD_KINDS; do
  gen bad "$k" "$D/bad_$k.npy"
done

Q="--q $D/q.npy"
K="--k $D/k.npy"
V="--v $D/v.npy"
O="--out $S/o.npy"
QKV="$Q $K $V"

# --- usage errors: exit 2 ------------------------------------------------
expect_fail 2 "no command"
expect_fail 2 "unknown command" frobnicate
expect_fail 2 "unknown flag" run $QKV $O --frobnicate
expect_fail 2 "unknown flag (single dash)" run $QKV $O -x
expect_fail 2 "stray argument" run $QKV $O extra
expect_fail 2 "missing value at end" run $QKV --out
expect_fail 2 "missing value before a flag" run --q --k "$D/k.npy" $V $O
expect_fail 2 "empty value" run $QKV $O --scale=
expect_fail 2 "missing --out" run $QKV
expect_fail 2 "missing --q" run $K $V $O
expect_fail 2 "duplicate --q" run $QKV $O --q "$D/q.npy"
expect_fail 2 "--scale nan" run $QKV $O --scale nan
expect_fail 2 "--scale inf" run $QKV $O --scale inf
expect_fail 2 "--scale -inf" run $QKV $O --scale=-inf
expect_fail 2 "--scale 1e99 (float overflow)" run $QKV $O --scale 1e99
expect_fail 2 "--scale not a number" run $QKV $O --scale abc
expect_fail 2 "--scale trailing junk" run $QKV $O --scale 0.5x
expect_fail 2 "--scale 0" run $QKV $O --scale 0
expect_fail 2 "--softcap nan" run $QKV $O --softcap nan
expect_fail 2 "--layout bad" run $QKV $O --layout sbhd
expect_fail 2 "--dtype bad" run $QKV $O --dtype f64
expect_fail 2 "--isa bad" run $QKV $O --isa sse9
expect_fail 2 "--threads negative" run $QKV $O --threads -1
expect_fail 2 "--threads not a number" run $QKV $O --threads many
expect_fail 2 "--window without comma" run $QKV $O --window 3
expect_fail 2 "--window not integers" run $QKV $O --window a,b
expect_fail 2 "--window missing right" run $QKV $O --window 3,
expect_fail 2 "--window three values" run $QKV $O --window 1,2,3
expect_fail 2 "both causal flags" run $QKV $O --causal --causal-top-left
expect_fail 2 "--window -2,0 (out of range)" run $QKV $O --window -2,0
expect_fail 2 "--window 1,-5 (out of range)" run $QKV $O --window 1,-5
expect_fail 2 "--softcap negative" run $QKV $O --softcap -1
expect_fail 2 "--threads 257" run $QKV $O --threads 257
expect_msg "--threads 257" "1 to 256"
expect_fail 2 "flag with a value" run $QKV $O --causal=1
expect_fail 2 "--cu-seqlens-q alone" run $QKV $O --cu-seqlens-q "$D/cuq.npy"
expect_fail 1 "cu_seqlens with a bias of the wrong seq axes" run \
  --q "$D/pq.npy" --k "$D/pk.npy" --v "$D/pv.npy" $O \
  --cu-seqlens-q "$D/cuq.npy" --cu-seqlens-k "$D/cuk.npy" --bias "$D/bias_2d.npy"
expect_fail 2 "bench unknown flag" bench --frobnicate
expect_fail 2 "bench --seq 0" bench --seq 0
expect_fail 2 "bench heads not divisible" bench --heads 6 --kv-heads 4
expect_fail 2 "peak --seconds -1" peak --seconds -1
expect_fail 2 "bench --threads 100000" bench --threads 100000 --seq 16
expect_msg "bench --threads 100000" "--threads: 100000 is out of range"
expect_fail 2 "peak --threads 100000" peak --threads 100000
expect_fail 2 "bench --threads -3" bench --threads -3

# --- file errors: exit 1 -------------------------------------------------
expect_fail 1 "missing file" run --q "$D/nope.npy" $K $V $O
expect_fail 1 "directory as input" run --q "$D" $K $V $O
for k in $BAD_KINDS; do
  expect_fail 1 "malformed npy: $k" run --q "$D/bad_$k.npy" $K $V $O
done
expect_fail 1 "malformed mask" run $QKV $O --mask "$D/bad_truncated.npy"
expect_fail 1 "unwritable output" run $QKV --out "$S/no/such/dir/o.npy"
expect_fail 1 "unwritable lse" run $QKV $O --lse "$S/no/such/dir/lse.npy"

# --- shape and value errors: exit 1 --------------------------------------
expect_fail 1 "Q is 3-D without cu_seqlens" run --q "$D/q3d.npy" $K $V $O
expect_fail 1 "Q int32" run --q "$D/lens.npy" $K $V $O
expect_fail 1 "head dim mismatch" run $Q --k "$D/k_dim9.npy" $V $O
expect_fail 1 "K/V seq mismatch" run $Q $K --v "$D/v_seq6.npy" $O
expect_fail 1 "batch mismatch" run $Q --k "$D/k_b3.npy" --v "$D/v_b3.npy" $O
expect_fail 1 "heads not dividing" run $Q --k "$D/k_h3.npy" --v "$D/v_h3.npy" $O
expect_fail 1 "bhsd layout of bshd data" run $QKV $O --layout bhsd
expect_fail 1 "mask dtype float" run $QKV $O --mask "$D/mask_f32.npy"
expect_fail 1 "mask shape" run $QKV $O --mask "$D/mask_badshape.npy"
expect_fail 1 "bias shape" run $QKV $O --bias "$D/bias_bad.npy"
expect_fail 1 "bias batch 3 vs 2" run $QKV $O --bias "$D/bias_5k.npy"
expect_fail 1 "alibi length" run $QKV $O --alibi "$D/alibi3.npy"
expect_fail 1 "kv-lens length" run $QKV $O --kv-lens "$D/lens3.npy"
expect_fail 1 "kv-lens dtype" run $QKV $O --kv-lens "$D/lens_f32.npy"
expect_fail 1 "kv-lens of length 3" run $QKV $O --kv-lens "$D/cuk_big.npy"
expect_fail 1 "kv-lens beyond seq_k" run $QKV $O --kv-lens "$D/lens_big.npy"
expect_fail 1 "kv-lens negative" run $QKV $O --kv-lens "$D/lens_neg.npy"
PK="--q $D/pq.npy --k $D/pk.npy --v $D/pv.npy --cu-seqlens-q $D/cuq.npy"
expect_fail 1 "cu_seqlens non-monotonic" run $PK $O --cu-seqlens-k "$D/cuk_dec.npy"
expect_fail 1 "cu_seqlens out of range" run $PK $O --cu-seqlens-k "$D/cuk_big.npy"
expect_fail 1 "cu_seqlens negative" run $PK $O --cu-seqlens-k "$D/cuk_neg.npy"
expect_fail 1 "cu_seqlens lengths differ" run $PK $O --cu-seqlens-k "$D/cuk_len4.npy"
expect_fail 1 "cu_seqlens 4-D inputs" run $QKV $O --cu-seqlens-q "$D/cuq.npy" \
  --cu-seqlens-k "$D/cuk.npy"

# --- good paths -----------------------------------------------------------
if expect_ok "--help" --help; then
  if grep -q "attn run" "$S/stdout"; then pass "--help text"; else failed "--help text"; fi
fi
if expect_ok "--version" --version; then
  if grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+$' "$S/stdout"; then
    pass "--version text $(cat "$S/stdout")"
  else
    failed "--version text: $(cat "$S/stdout")"
  fi
fi
expect_ok "run --help" run --help

if expect_ok "basic run" run $QKV --out "$S/base.npy"; then
  expect_shape "basic run" "$S/base.npy" "<f4 2x5x4x6"
  expect_finite "basic run" "$S/base.npy"
fi
if expect_ok "run with --lse" run $QKV --out "$S/o_lse.npy" --lse "$S/lse.npy"; then
  expect_shape "lse" "$S/lse.npy" "<f4 2x4x5"
  expect_finite "lse" "$S/lse.npy"
  expect_same "O with and without --lse" "$S/base.npy" "$S/o_lse.npy" 0
fi
if expect_ok "bhsd layout" run --q "$D/qt.npy" --k "$D/kt.npy" --v "$D/vt.npy" \
  --out "$S/ot.npy" --layout bhsd --lse "$S/lset.npy"; then
  expect_shape "bhsd" "$S/ot.npy" "<f4 2x4x5x6"
  "$G" transpose12 "$S/ot.npy" "$S/ott.npy"
  expect_same "bhsd == bshd" "$S/base.npy" "$S/ott.npy" 1e-5
  expect_same "bhsd lse == bshd lse" "$S/lse.npy" "$S/lset.npy" 1e-5
fi
if expect_ok "explicit bshd layout" run $QKV $O --layout=bshd; then
  expect_same "--layout=bshd" "$S/base.npy" "$S/o.npy" 0
fi
if expect_ok "mask all true, broadcast" run $QKV $O --mask "$D/mask_true.npy"; then
  expect_same "all-true mask == no mask" "$S/base.npy" "$S/o.npy" 1e-6
fi
if expect_ok "bias zero, broadcast" run $QKV $O --bias "$D/bias_zero.npy"; then
  expect_same "zero bias == no bias" "$S/base.npy" "$S/o.npy" 1e-6
fi
if expect_ok "mask all false" run $QKV $O --mask "$D/mask_false.npy" --lse "$S/l.npy"; then
  expect_same "fully masked O is 0" "$D/zeros_o.npy" "$S/o.npy" 0
  expect_same "fully masked LSE is -inf" "$D/ninf_lse.npy" "$S/l.npy" 0
fi
if expect_ok "bias full" run $QKV $O --bias "$D/bias_full.npy"; then
  expect_finite "bias full" "$S/o.npy"
fi
if expect_ok "bias 2-D" run $QKV $O --bias "$D/bias_2d.npy"; then
  expect_shape "bias 2-D" "$S/o.npy" "<f4 2x5x4x6"
fi
if expect_ok "kv-lens full" run $QKV $O --kv-lens "$D/lens_full.npy"; then
  expect_same "full kv-lens == none" "$S/base.npy" "$S/o.npy" 1e-6
fi
expect_ok "kv-lens" run $QKV $O --kv-lens "$D/lens.npy" --lse "$S/l.npy"
expect_ok "--causal" run $QKV $O --causal
expect_ok "--causal-top-left" run $QKV $O --causal-top-left --lse "$S/l.npy"
expect_ok "--window 2,1" run $QKV $O --window 2,1
expect_ok "--window=-1,-1" run $QKV $O --window=-1,-1
expect_ok "--causal --window 3,0" run $QKV $O --causal --window 3,0
expect_ok "--softcap 5" run $QKV $O --softcap 5
expect_ok "--scale 0.3" run $QKV $O --scale 0.3
expect_ok "--scale -1e-3" run $QKV $O --scale -1e-3
expect_ok "--alibi" run $QKV $O --alibi "$D/alibi.npy"
if expect_ok "--threads 1" run $QKV $O --threads 1; then
  expect_same "threads 1 == default, bitwise" "$S/base.npy" "$S/o.npy" 0
fi
if expect_ok "--isa generic" run $QKV $O --isa generic; then
  expect_same "generic ~ default" "$S/base.npy" "$S/o.npy" 1e-4
fi
if expect_ok "--dtype bf16" run $QKV $O --dtype bf16; then
  expect_same "bf16 ~ f32" "$S/base.npy" "$S/o.npy" 5e-2
fi
if expect_ok "--dtype f16" run $QKV $O --dtype f16; then
  expect_same "f16 ~ f32" "$S/base.npy" "$S/o.npy" 1e-2
fi
if expect_ok "float16 Q input" run --q "$D/q16.npy" $K $V $O; then
  expect_same "f16 input ~ f32" "$S/base.npy" "$S/o.npy" 1e-2
fi
if expect_ok "cu_seqlens" run $PK --cu-seqlens-k "$D/cuk.npy" $O --lse "$S/l.npy" \
  --causal; then
  expect_shape "cu_seqlens O" "$S/o.npy" "<f4 6x4x6"
  expect_shape "cu_seqlens LSE" "$S/l.npy" "<f4 1x4x6"
  expect_finite "cu_seqlens O" "$S/o.npy"
fi
if expect_ok "cu_seqlens base" run $PK --cu-seqlens-k "$D/cuk.npy" \
  --out "$S/pbase.npy" --causal; then
  for extra in "--bias $D/pbias_zero.npy" "--mask $D/pmask_true.npy" \
    "--kv-lens $D/plens_full.npy"; do
    if expect_ok "cu_seqlens $extra" run $PK --cu-seqlens-k "$D/cuk.npy" \
      $O --causal $extra; then
      expect_same "cu_seqlens $extra changes nothing" "$S/pbase.npy" \
        "$S/o.npy" 0
    fi
  done
  if expect_ok "cu_seqlens --kv-lens shorter" run $PK \
    --cu-seqlens-k "$D/cuk.npy" $O --causal --kv-lens "$D/plens_short.npy"; then
    expect_finite "cu_seqlens --kv-lens shorter" "$S/o.npy"
  fi
fi
if expect_ok "bench" bench --batch 1 --heads 4 --kv-heads 2 --seq-q 33 \
  --seq-k 65 --dim 16 --dim-v 8 --repeat 2 --warmup 0 --peak 100 --causal; then
  if grep -q "^check: ok" "$S/stdout"; then pass "bench check ok"; else
    failed "bench check: $(cat "$S/stdout")"; fi
fi
if expect_ok "bench --json bf16" bench --seq 32 --heads 2 --dim 8 --repeat 1 \
  --warmup 0 --peak 50 --dtype bf16 --json; then
  case $(cat "$S/stdout") in
  "{"*'"check":"ok"'*"}") pass "bench json" ;;
  *) failed "bench json: $(cat "$S/stdout")" ;;
  esac
fi
expect_ok "bench --no-check" bench --seq 16 --dim 4 --repeat 1 --peak 10 --no-check
expect_ok "peak" peak --seconds 0.05 --threads 1

# --- attn grad (backward) --------------------------------------------------
gen rand f32 16 "$D/do.npy" 2 5 4 6
gen rand f32 17 "$D/do_bad.npy" 2 5 4 5
gen rand f32 18 "$D/pdo.npy" 6 4 6
gen transpose12 "$D/do.npy" "$D/dot.npy"
GO="--dout $D/do.npy --dq $S/dq.npy --dk $S/dk.npy --dv $S/dv.npy"
expect_fail 2 "grad: missing --dout" grad $QKV --dq "$S/dq.npy" --dk "$S/dk.npy" --dv "$S/dv.npy"
expect_fail 2 "grad: missing --dq" grad $QKV --dout "$D/do.npy" --dk "$S/dk.npy" --dv "$S/dv.npy"
expect_fail 2 "grad: missing --dv" grad $QKV --dout "$D/do.npy" --dq "$S/dq.npy" --dk "$S/dk.npy"
expect_fail 2 "grad: --dbias without --bias" grad $QKV $GO --dbias "$S/db.npy"
expect_fail 2 "grad: duplicate --dout" grad $QKV $GO --dout "$D/do.npy"
expect_fail 2 "run: --dout is a grad option" run $QKV $O --dout "$D/do.npy"
expect_fail 2 "grad: unknown flag" grad $QKV $GO --frobnicate
expect_fail 2 "grad: --scale nan" grad $QKV $GO --scale nan
expect_fail 1 "grad: dO of the wrong shape" grad $QKV --dout "$D/do_bad.npy" \
  --dq "$S/dq.npy" --dk "$S/dk.npy" --dv "$S/dv.npy"
expect_fail 1 "grad: dO missing file" grad $QKV --dout "$D/nope.npy" \
  --dq "$S/dq.npy" --dk "$S/dk.npy" --dv "$S/dv.npy"
expect_fail 1 "grad: dO garbage" grad $QKV --dout "$D/bad_magic.npy" \
  --dq "$S/dq.npy" --dk "$S/dk.npy" --dv "$S/dv.npy"
expect_fail 1 "grad: dO int32" grad $QKV --dout "$D/lens.npy" \
  --dq "$S/dq.npy" --dk "$S/dk.npy" --dv "$S/dv.npy"
expect_fail 1 "grad: head ratio" grad $Q --k "$D/k_h3.npy" --v "$D/v_h3.npy" $GO
expect_fail 1 "grad: dq not writable" grad $QKV --dout "$D/do.npy" \
  --dq "$S/no/such/dir/dq.npy" --dk "$S/dk.npy" --dv "$S/dv.npy"
if expect_ok "grad" grad $QKV $GO --causal --softcap 5; then
  expect_shape "grad dQ" "$S/dq.npy" "<f4 2x5x4x8"
  expect_shape "grad dK" "$S/dk.npy" "<f4 2x7x2x8"
  expect_shape "grad dV" "$S/dv.npy" "<f4 2x7x2x6"
  expect_finite "grad dQ" "$S/dq.npy"
  expect_finite "grad dK" "$S/dk.npy"
  expect_finite "grad dV" "$S/dv.npy"
  cp "$S/dq.npy" "$S/dq_base.npy"
fi
if expect_ok "grad threads 1 = threads 2" grad $QKV $GO --causal --softcap 5 \
  --threads 1; then
  expect_same "grad deterministic" "$S/dq_base.npy" "$S/dq.npy" 0
fi
if expect_ok "grad bhsd" grad --q "$D/qt.npy" --k "$D/kt.npy" --v "$D/vt.npy" \
  --dout "$D/dot.npy" --dq "$S/dq.npy" --dk "$S/dk.npy" --dv "$S/dv.npy" \
  --layout bhsd; then
  expect_shape "grad bhsd dQ" "$S/dq.npy" "<f4 2x4x5x8"
fi
if expect_ok "grad bias + dbias" grad $QKV $GO --bias "$D/bias_2d.npy" \
  --dbias "$S/db.npy" --out "$S/o.npy" --lse "$S/l.npy"; then
  expect_shape "grad dBias" "$S/db.npy" "<f4 5x7"
  expect_finite "grad dBias" "$S/db.npy"
  expect_shape "grad O" "$S/o.npy" "<f4 2x5x4x6"
fi
if expect_ok "grad cu_seqlens" grad $PK --cu-seqlens-k "$D/cuk.npy" --causal \
  --dout "$D/pdo.npy" --dq "$S/dq.npy" --dk "$S/dk.npy" --dv "$S/dv.npy"; then
  expect_shape "grad cu_seqlens dQ" "$S/dq.npy" "<f4 6x4x8"
  expect_shape "grad cu_seqlens dK" "$S/dk.npy" "<f4 9x2x8"
fi

# --- hostile .npy inputs: fail fast, exit 1 -------------------------------
expect_fail 1 "4 TiB declared, none there" run --q "$D/bad_huge-shape.npy" $K $V $O
expect_msg "4 TiB declared, none there" \
  "truncated data: 0 bytes, expected 4398046511104"
expect_fail 1 "--q /dev/zero" run --q /dev/zero $K $V $O
expect_msg "--q /dev/zero" "bad magic"
expect_fail 1 "--mask /dev/zero" run $QKV $O --mask /dev/zero
expect_fail 1 "--q /dev/null" run --q /dev/null $K $V $O
expect_fail 1 "malformed npy: negative dimension" run --q "$D/bad_negative-dim.npy" $K $V $O
expect_msg "negative dimension" "negative dimension"
expect_fail 1 "malformed npy: object dtype" run --q "$D/bad_object.npy" $K $V $O
expect_msg "object dtype" "object dtype"
expect_fail 1 "malformed npy: header past EOF" run --q "$D/bad_truncated-header.npy" $K $V $O
expect_msg "header past EOF" "exceeds the file size"
if command -v mkfifo >/dev/null 2>&1 && mkfifo "$S/fifo" 2>/dev/null; then
  # feed_fifo CMD... : runs CMD with stdout into the FIFO, in the background
  feed_fifo() {
    "$@" >"$S/fifo" 2>/dev/null &
    feeder=$!
  }
  unfeed() {
    kill "$feeder" 2>/dev/null
    wait "$feeder" 2>/dev/null
  }
  feed_fifo cat "$D/q.npy"
  if expect_ok "Q from a FIFO" run --q "$S/fifo" $K $V --out "$S/o_fifo.npy"; then
    expect_same "Q from a FIFO == from a file" "$S/base.npy" "$S/o_fifo.npy" 0
  fi
  unfeed
  feed_fifo "$G" head 40
  expect_fail 1 "FIFO ending inside the header" run --q "$S/fifo" $K $V $O
  unfeed
  feed_fifo cat "$D/bad_huge-shape.npy"
  expect_fail 1 "FIFO declaring 4 TiB, sending none" run --q "$S/fifo" $K $V $O
  expect_msg "FIFO declaring 4 TiB" "truncated data"
  unfeed
  feed_fifo cat "$D/q.npy" "$D/k.npy"
  expect_fail 1 "FIFO with bytes after the data" run --q "$S/fifo" $K $V $O
  expect_msg "FIFO with bytes after the data" "trailing bytes"
  unfeed
  feed_fifo cat /dev/zero
  expect_fail 1 "FIFO of endless zeros" run --q "$S/fifo" $K $V $O
  unfeed
  rm -f "$S/fifo"
fi

# --- one file named twice: usage error, nothing overwritten ---------------
mkdir -p "$S/sub"
rm -f "$S/same.npy" "$S/dangle.npy" "$S/dangle_target.npy" "$S/hard.npy"
cp "$D/q.npy" "$S/q_copy.npy"
cp "$D/do.npy" "$S/do_copy.npy"
expect_fail 2 "--out X --lse X (new file)" run $QKV --out "$S/same.npy" --lse "$S/same.npy"
expect_msg "--out X --lse X" "--out and --lse name the same file"
expect_fail 2 "--out X --lse X spelt differently" run $QKV \
  --out "$S/same.npy" --lse "$S/sub/../same.npy"
cp "$D/q.npy" "$S/same.npy"
expect_fail 2 "--out X --lse X (existing file)" run $QKV --out "$S/same.npy" \
  --lse "$S/./same.npy"
if ln "$S/same.npy" "$S/hard.npy" 2>/dev/null; then
  expect_fail 2 "--out and --lse hard links of one file" run $QKV \
    --out "$S/same.npy" --lse "$S/hard.npy"
fi
if ln -s "$S/dangle_target.npy" "$S/dangle.npy" 2>/dev/null; then
  expect_fail 2 "--out via a dangling symlink, --lse its target" run $QKV \
    --out "$S/dangle.npy" --lse "$S/dangle_target.npy"
fi
expect_fail 2 "--out is --q" run --q "$S/q_copy.npy" $K $V --out "$S/q_copy.npy"
expect_msg "--out is --q" "is the same file as input --q"
expect_same "--out is --q: Q untouched" "$D/q.npy" "$S/q_copy.npy" 0
expect_fail 2 "--lse is --mask" run $QKV $O --mask "$D/mask_true.npy" \
  --lse "$D/../in/mask_true.npy"
expect_fail 2 "grad: --dq X --dk X" grad $QKV --dout "$D/do.npy" \
  --dq "$S/dsame.npy" --dk "$S/dsame.npy" --dv "$S/dv.npy"
expect_fail 2 "grad: --dv is --v" grad $QKV --dout "$D/do.npy" \
  --dq "$S/dq.npy" --dk "$S/dk.npy" --dv "$D/v.npy"
expect_fail 2 "grad: --out is --dout" grad $QKV --dout "$S/do_copy.npy" \
  --dq "$S/dq.npy" --dk "$S/dk.npy" --dv "$S/dv.npy" --out "$S/do_copy.npy"
expect_fail 2 "missing input named as output too" run --q "$S/none.npy" $K $V \
  --out "$S/none.npy"
gen rand f32 21 "$D/x.npy" 2 5 4 8
if expect_ok "one file as --q, --k and --v" run --q "$D/x.npy" --k "$D/x.npy" \
  --v "$D/x.npy" --out "$S/o_self.npy"; then
  expect_shape "self-attention" "$S/o_self.npy" "<f4 2x5x4x8"
fi
expect_ok "/dev/null as --out and --lse (special files are exempt)" run $QKV \
  --out /dev/null --lse /dev/null
expect_ok "--threads 256" run $QKV $O --threads 256

# --- --prefix, --q-pos-offset, --k-pos-offset ------------------------------
expect_fail 2 "--prefix with --causal" run $QKV $O --prefix 2 --causal
expect_msg "--prefix with --causal" "mutually exclusive"
expect_fail 2 "--prefix with --causal-top-left" run $QKV $O --causal-top-left --prefix 2
expect_fail 2 "--prefix -1" run $QKV $O --prefix -1
expect_fail 2 "--prefix not an integer" run $QKV $O --prefix two
expect_fail 2 "--prefix without a value" run $QKV $O --prefix
expect_fail 2 "--prefix twice" run $QKV $O --prefix 1 --prefix 2
expect_fail 2 "--q-pos-offset 1.5" run $QKV $O --q-pos-offset 1.5
expect_fail 2 "--k-pos-offset overflow" run $QKV $O --k-pos-offset 99999999999999999999
expect_fail 2 "grad: --prefix with --causal" grad $QKV $GO --prefix 1 --causal
# seq_q 5, seq_k 7: one query tile. Query i sits at position i + 2.
gen prefixmask "$D/pm_5.npy" 5 7 5 0 0
gen prefixmask "$D/pm_5_qm1_k1.npy" 5 7 5 -1 1
gen prefixmask "$D/pm_0_qm4.npy" 5 7 0 -4 0
expect_ok "--causal" run $QKV --out "$S/o_causal.npy" --causal
if expect_ok "--prefix 5" run $QKV --out "$S/o_prefix.npy" --prefix 5 \
  --lse "$S/l_prefix.npy"; then
  expect_ok "--mask of the same prefix-LM pattern" run $QKV \
    --out "$S/o_pmask.npy" --mask "$D/pm_5.npy" --lse "$S/l_pmask.npy"
  expect_same "--prefix 5 == its --mask" "$S/o_pmask.npy" "$S/o_prefix.npy" 1e-6
  expect_same "--prefix 5 LSE == its --mask's" "$S/l_pmask.npy" "$S/l_prefix.npy" 1e-6
  expect_differ "--prefix 5 != no mask" "$S/base.npy" "$S/o_prefix.npy"
  expect_differ "--prefix 5 != --causal" "$S/o_causal.npy" "$S/o_prefix.npy"
fi
if expect_ok "--prefix 5 --q-pos-offset -1 --k-pos-offset 1" run $QKV \
  --out "$S/o_prefix.npy" --prefix 5 --q-pos-offset -1 --k-pos-offset 1; then
  expect_ok "--mask of that pattern" run $QKV --out "$S/o_pmask.npy" \
    --mask "$D/pm_5_qm1_k1.npy"
  expect_same "prefix with offsets == its --mask" "$S/o_pmask.npy" \
    "$S/o_prefix.npy" 1e-6
fi
if expect_ok "--prefix 0 --q-pos-offset -4" run $QKV --out "$S/o_prefix.npy" \
  --prefix 0 --q-pos-offset=-4; then
  expect_ok "--mask of that pattern" run $QKV --out "$S/o_pmask.npy" \
    --mask "$D/pm_0_qm4.npy"
  expect_same "prefix 0, query offset -4 == its --mask" "$S/o_pmask.npy" \
    "$S/o_prefix.npy" 1e-6
fi
if expect_ok "--prefix 0" run $QKV --out "$S/o_prefix.npy" --prefix 0; then
  expect_same "--prefix 0 == --causal" "$S/o_causal.npy" "$S/o_prefix.npy" 1e-6
fi
if expect_ok "--prefix 7 (every key)" run $QKV --out "$S/o_prefix.npy" --prefix 7; then
  expect_same "--prefix seq_k == no mask" "$S/base.npy" "$S/o_prefix.npy" 1e-6
fi
expect_ok "--causal-top-left" run $QKV --out "$S/o_tl.npy" --causal-top-left
if expect_ok "--causal --q-pos-offset -2" run $QKV --out "$S/o_off.npy" \
  --causal --q-pos-offset -2; then
  expect_same "--causal, queries 2 back == --causal-top-left" "$S/o_tl.npy" \
    "$S/o_off.npy" 1e-6
fi
if expect_ok "--causal --k-pos-offset 2" run $QKV --out "$S/o_off.npy" \
  --causal --k-pos-offset 2; then
  expect_same "--causal, keys 2 on == --causal-top-left" "$S/o_tl.npy" \
    "$S/o_off.npy" 1e-6
fi
if expect_ok "--alibi --q-pos-offset 3" run $QKV --out "$S/o_off.npy" \
  --alibi "$D/alibi.npy" --q-pos-offset 3; then
  expect_ok "--alibi" run $QKV --out "$S/o_alibi.npy" --alibi "$D/alibi.npy"
  expect_differ "ALiBi reads the query offset" "$S/o_alibi.npy" "$S/o_off.npy"
fi
if expect_ok "grad --prefix 5" grad $QKV --dout "$D/do.npy" --dq "$S/dq_p.npy" \
  --dk "$S/dk_p.npy" --dv "$S/dv_p.npy" --prefix 5; then
  expect_ok "grad --mask of that pattern" grad $QKV --dout "$D/do.npy" \
    --dq "$S/dq_m.npy" --dk "$S/dk_m.npy" --dv "$S/dv_m.npy" --mask "$D/pm_5.npy"
  expect_same "grad --prefix 5 dQ == its --mask's" "$S/dq_m.npy" "$S/dq_p.npy" 1e-5
  expect_same "grad --prefix 5 dK == its --mask's" "$S/dk_m.npy" "$S/dk_p.npy" 1e-5
  expect_same "grad --prefix 5 dV == its --mask's" "$S/dv_m.npy" "$S/dv_p.npy" 1e-5
fi

# --- --rope (RoPE of Q and K before attention) -----------------------------
# Reference: Q and K rotated by the C API (gen_npy rope: row s of batch b at
# s + OFFS[b]), then a plain run. seq_q 5, seq_k 7: query i at i + 2.
expect_fail 2 "--rope-style diagonal" run $QKV $O --rope 10000 --rope-style diagonal
expect_msg "--rope-style diagonal" "half or interleaved"
expect_fail 2 "--rope-dims odd" run $QKV $O --rope 10000 --rope-dims 3
expect_msg "--rope-dims odd" "odd"
expect_fail 2 "--rope-dims negative" run $QKV $O --rope 10000 --rope-dims -2
expect_fail 2 "--rope-scaling without factor" run $QKV $O --rope 10000 --rope-scaling linear
expect_msg "--rope-scaling without factor" "expected linear:F"
expect_fail 2 "--rope-scaling linear:" run $QKV $O --rope 10000 --rope-scaling linear:
expect_fail 2 "--rope-scaling cubic:2" run $QKV $O --rope 10000 --rope-scaling cubic:2
expect_fail 2 "--rope-scaling linear:x" run $QKV $O --rope 10000 --rope-scaling linear:x
expect_fail 2 "--rope-scaling ntk:0" run $QKV $O --rope 10000 --rope-scaling ntk:0
expect_fail 2 "--rope-scaling linear:-2" run $QKV $O --rope 10000 --rope-scaling=linear:-2
expect_fail 2 "--rope 1" run $QKV $O --rope 1
expect_fail 2 "--rope nan" run $QKV $O --rope nan
expect_fail 2 "--rope without a value" run $QKV $O --rope
expect_fail 2 "--rope-style without --rope" run $QKV $O --rope-style half
expect_msg "--rope-style without --rope" "needs --rope"
expect_fail 2 "--rope-original-max with linear" run $QKV $O --rope 10000 \
  --rope-scaling linear:2 --rope-original-max 16
expect_fail 2 "--rope twice" run $QKV $O --rope 10000 --rope 500
expect_fail 2 "grad: --rope-dims odd" grad $QKV $GO --rope 10000 --rope-dims 5
expect_fail 1 "--rope-dims beyond head_dim" run $QKV $O --rope 10000 --rope-dims 10
expect_msg "--rope-dims beyond head_dim" "rope dims (10)"
# run --rope ARGS == run on Q, K pre-rotated by the C API (gen rope SPEC...)
rope_case() { # DESC "RUN ARGS" BASE STYLE DIMS SCALING QOFFS KOFFS "EXTRA"
  if expect_ok "run --rope: $1" run $QKV --out "$S/o_rope.npy" $2 $9; then
    gen rope "$3" "$4" "$5" "$6" "$7" 0 "$D/q.npy" "$S/q_rot.npy"
    gen rope "$3" "$4" "$5" "$6" "$8" 0 "$D/k.npy" "$S/k_rot.npy"
    expect_ok "run on pre-rotated: $1" run --q "$S/q_rot.npy" \
      --k "$S/k_rot.npy" $V --out "$S/o_pre.npy" $9
    expect_same "--rope == pre-rotated: $1" "$S/o_pre.npy" "$S/o_rope.npy" 1e-6
  fi
}
rope_case "half" "--rope 10000" 10000 half 0 none 2 0 ""
rope_case "interleaved, dims 4, linear:4" "--rope 500 --rope-style interleaved \
  --rope-dims 4 --rope-scaling linear:4" 500 interleaved 4 linear:4 2 0 ""
rope_case "ntk:8" "--rope 10000 --rope-scaling ntk:8" 10000 half 0 ntk:8 2 0 ""
rope_case "yarn:4" "--rope 10000 --rope-scaling yarn:4" 10000 half 0 yarn:4 2 0 ""
rope_case "llama3:8" "--rope 500000 --rope-scaling llama3:8" 500000 half 0 \
  llama3:8 2 0 "--causal"
rope_case "offsets" "--rope 10000" 10000 half 0 none 5 -1 \
  "--causal --q-pos-offset 3 --k-pos-offset -1"
# kv_lens (7, 3): query i of batch 1 sits at i + 3 - 5
rope_case "kv-lens" "--rope 10000" 10000 half 0 none 2,-2 0 \
  "--kv-lens $D/lens.npy"
expect_differ "--rope changes the result" "$S/base.npy" "$S/o_rope.npy"
if expect_ok "--rope yarn:4 --rope-original-max 16" run $QKV \
  --out "$S/o_rope2.npy" --rope 10000 --rope-scaling yarn:4 \
  --rope-original-max 16; then
  expect_ok "--rope yarn:4" run $QKV --out "$S/o_rope.npy" --rope 10000 \
    --rope-scaling yarn:4
  expect_differ "--rope-original-max is read" "$S/o_rope.npy" "$S/o_rope2.npy"
fi
if expect_ok "--rope bhsd" run --q "$D/qt.npy" --k "$D/kt.npy" --v "$D/vt.npy" \
  --layout bhsd --out "$S/o_rope_t.npy" --rope 10000; then
  expect_ok "--rope bshd" run $QKV --out "$S/o_rope.npy" --rope 10000
  gen transpose12 "$S/o_rope.npy" "$S/o_rope_tt.npy"
  expect_same "--rope bhsd == bshd" "$S/o_rope_tt.npy" "$S/o_rope_t.npy" 1e-6
fi
if expect_ok "--rope cu_seqlens" run $PK --cu-seqlens-k "$D/cuk.npy" \
  --out "$S/o_rope_p.npy" --rope 10000; then
  expect_ok "cu_seqlens, no rope" run $PK --cu-seqlens-k "$D/cuk.npy" \
    --out "$S/o_p.npy"
  expect_differ "--rope cu_seqlens rotates" "$S/o_p.npy" "$S/o_rope_p.npy"
fi
# grad --rope: dQ, dK w.r.t. the unrotated inputs = the inverse rotation of
# the gradients w.r.t. the pre-rotated ones (the finite-difference check of
# that identity is in test_positions); dV unchanged.
rope_grad_case() { # DESC "ARGS" BASE STYLE DIMS SCALING
  if expect_ok "grad --rope: $1" grad $QKV --dout "$D/do.npy" --causal \
    --dq "$S/dq_r.npy" --dk "$S/dk_r.npy" --dv "$S/dv_r.npy" $2; then
    gen rope "$3" "$4" "$5" "$6" 2 0 "$D/q.npy" "$S/q_rot.npy"
    gen rope "$3" "$4" "$5" "$6" 0 0 "$D/k.npy" "$S/k_rot.npy"
    expect_ok "grad on pre-rotated: $1" grad --q "$S/q_rot.npy" \
      --k "$S/k_rot.npy" $V --dout "$D/do.npy" --causal --dq "$S/dq_p.npy" \
      --dk "$S/dk_p.npy" --dv "$S/dv_p.npy"
    gen rope "$3" "$4" "$5" "$6" 2 1 "$S/dq_p.npy" "$S/dq_pi.npy"
    gen rope "$3" "$4" "$5" "$6" 0 1 "$S/dk_p.npy" "$S/dk_pi.npy"
    expect_same "grad --rope dQ: $1" "$S/dq_pi.npy" "$S/dq_r.npy" 1e-6
    expect_same "grad --rope dK: $1" "$S/dk_pi.npy" "$S/dk_r.npy" 1e-6
    expect_same "grad --rope dV: $1" "$S/dv_p.npy" "$S/dv_r.npy" 1e-6
    expect_differ "grad --rope dQ is not the rotated one: $1" \
      "$S/dq_p.npy" "$S/dq_r.npy"
  fi
}
rope_grad_case "half" "--rope 10000" 10000 half 0 none
rope_grad_case "interleaved yarn:4 dims 6" "--rope 10000 --rope-style \
  interleaved --rope-dims 6 --rope-scaling yarn:4" 10000 interleaved 6 yarn:4

# --- --relative-bias (T5 bucketed relative positions) ----------------------
# Reference: the same table expanded into a dense --bias by gen_npy t5 (which
# calls attn_t5_bucket; the buckets themselves are tested in test_t5).
# seq_q 5, seq_k 7: query i at i + 2 (+ --q-pos-offset), key j at j.
gen rand f32 41 "$D/t5.npy" 6 4
gen rand f32 42 "$D/t5_h3.npy" 6 3
gen rand f32 43 "$D/t5_3d.npy" 6 4 1
gen rand f16 44 "$D/t5_f16.npy" 6 4
gen rand f32 45 "$D/t5_1.npy" 1 4
T5="--relative-bias $D/t5.npy"
expect_fail 2 "--buckets without --relative-bias" run $QKV $O --buckets 6
expect_msg "--buckets without --relative-bias" "needs --relative-bias"
expect_fail 2 "--bidirectional without --relative-bias" run $QKV $O --bidirectional
expect_fail 2 "--bidirectional with a value" run $QKV $O $T5 --bidirectional=1
expect_fail 2 "--max-distance 0" run $QKV $O $T5 --max-distance 0
expect_fail 2 "--max-distance abc" run $QKV $O $T5 --max-distance abc
expect_fail 2 "--buckets 0" run $QKV $O $T5 --buckets 0
expect_fail 2 "--relative-bias twice" run $QKV $O $T5 $T5
expect_fail 2 "grad --drelative-bias without --relative-bias" grad $QKV \
  --dout "$D/do.npy" --dq "$S/dq.npy" --dk "$S/dk.npy" --dv "$S/dv.npy" \
  --drelative-bias "$S/dr.npy"
expect_fail 2 "grad --drelative-bias is the table" grad $QKV $T5 \
  --dout "$D/do.npy" --dq "$S/dq.npy" --dk "$S/dk.npy" --dv "$S/dv.npy" \
  --drelative-bias "$D/t5.npy"
expect_fail 1 "--buckets disagrees with the table" run $QKV $O $T5 --buckets 7
expect_msg "--buckets disagrees with the table" "6 rows"
expect_fail 1 "--relative-bias heads 3 (heads_q 4)" run $QKV $O \
  --relative-bias "$D/t5_h3.npy"
expect_msg "--relative-bias heads 3 (heads_q 4)" "heads_q = 4"
expect_fail 1 "--relative-bias 3-D" run $QKV $O --relative-bias "$D/t5_3d.npy"
expect_fail 1 "--relative-bias float16" run $QKV $O --relative-bias "$D/t5_f16.npy"
expect_msg "--relative-bias float16" "float32"
expect_fail 1 "--relative-bias missing file" run $QKV $O \
  --relative-bias "$D/nope.npy"
expect_fail 1 "--bidirectional with one bucket" run $QKV $O \
  --relative-bias "$D/t5_1.npy" --bidirectional
t5_case() { # DESC BUCKETS MAXD BIDIR QOFF "ARGS"
  if expect_ok "run --relative-bias: $1" run $QKV --out "$S/o_t5.npy" $T5 $6; then
    gen t5 dense "$D/t5.npy" "$2" "$3" "$4" 5 7 "$5" - "$S/t5_dense.npy"
    expect_ok "run --bias of the dense table: $1" run $QKV \
      --out "$S/o_t5b.npy" --bias "$S/t5_dense.npy" $7
    expect_same "--relative-bias == dense --bias: $1" "$S/o_t5b.npy" \
      "$S/o_t5.npy" 1e-6
  fi
  if expect_ok "grad --relative-bias: $1" grad $QKV $T5 $6 --dout "$D/do.npy" \
    --dq "$S/dq_t5.npy" --dk "$S/dk_t5.npy" --dv "$S/dv_t5.npy" \
    --drelative-bias "$S/dr_t5.npy"; then
    expect_shape "grad --drelative-bias: $1" "$S/dr_t5.npy" "<f4 6x4"
    expect_ok "grad --bias of the dense table: $1" grad $QKV \
      --bias "$S/t5_dense.npy" $7 --dout "$D/do.npy" --dq "$S/dq_t5b.npy" \
      --dk "$S/dk_t5b.npy" --dv "$S/dv_t5b.npy" --dbias "$S/db_t5b.npy"
    gen t5 sum "$D/t5.npy" "$2" "$3" "$4" 5 7 "$5" "$S/db_t5b.npy" \
      "$S/dr_t5b.npy"
    expect_same "grad dQ == dense --bias's: $1" "$S/dq_t5b.npy" "$S/dq_t5.npy" 1e-6
    expect_same "grad dRelBias == dBias summed per bucket: $1" \
      "$S/dr_t5b.npy" "$S/dr_t5.npy" 1e-5
  fi
}
t5_case "decoder 6/128" 6 128 0 0 "" ""
t5_case "encoder 6/3 causal" 6 3 1 0 "--bidirectional --max-distance 3 --causal" \
  "--causal"
t5_case "--buckets 6 --max-distance 4 --q-pos-offset 3" 6 4 0 3 \
  "--buckets 6 --max-distance 4 --q-pos-offset 3" "--q-pos-offset 3"
expect_ok "--relative-bias one bucket" run $QKV --out "$S/o_t5one.npy" \
  --relative-bias "$D/t5_1.npy"
expect_differ "--relative-bias changes the result" "$S/base.npy" "$S/o_t5.npy"

# --- --sinks / --dsinks (attention sinks) -------------------------------------
gen f32v "$D/sinks.npy" 0.5 -1 2 -inf
gen f32v "$D/sinks_none.npy" -inf -inf -inf -inf
gen f32v "$D/sinks_h3.npy" 0.5 -1 2
gen f32v "$D/sinks_nan.npy" 0.5 nan 2 1
gen fill f32 0 "$D/sinks_2d.npy" 2 2
if expect_ok "run --sinks" run $QKV --out "$S/o_sk.npy" --lse "$S/l_sk.npy" \
  --sinks "$D/sinks.npy"; then
  expect_shape "run --sinks" "$S/o_sk.npy" "<f4 2x5x4x6"
  expect_differ "--sinks changes the result" "$S/base.npy" "$S/o_sk.npy"
fi
if expect_ok "run --sinks all -inf" run $QKV --out "$S/o_sk0.npy" \
  --sinks "$D/sinks_none.npy"; then
  expect_same "--sinks all -inf == no sinks" "$S/base.npy" "$S/o_sk0.npy" 0
fi
if expect_ok "grad --sinks --dsinks" grad $QKV --sinks "$D/sinks.npy" \
  --dout "$D/do.npy" --dq "$S/dq_sk.npy" --dk "$S/dk_sk.npy" \
  --dv "$S/dv_sk.npy" --dsinks "$S/ds_sk.npy"; then
  expect_shape "grad --dsinks" "$S/ds_sk.npy" "<f4 4"
  if "$G" finite "$S/ds_sk.npy" >/dev/null 2>&1; then
    pass "grad --dsinks finite"
  else
    failed "grad --dsinks: non-finite values"
  fi
fi
expect_fail 2 "grad --dsinks without --sinks" grad $QKV --dout "$D/do.npy" \
  --dq "$S/dq_sk.npy" --dk "$S/dk_sk.npy" --dv "$S/dv_sk.npy" \
  --dsinks "$S/ds_sk.npy"
expect_msg "grad --dsinks without --sinks" "needs --sinks"
expect_fail 2 "grad --dsinks is the sinks file" grad $QKV \
  --sinks "$D/sinks.npy" --dout "$D/do.npy" --dq "$S/dq_sk.npy" \
  --dk "$S/dk_sk.npy" --dv "$S/dv_sk.npy" --dsinks "$D/sinks.npy"
expect_fail 1 "--sinks heads 3 (heads_q 4)" run $QKV $O --sinks "$D/sinks_h3.npy"
expect_msg "--sinks heads 3 (heads_q 4)" "heads_q = 4"
expect_fail 1 "--sinks 2-D" run $QKV $O --sinks "$D/sinks_2d.npy"
expect_fail 1 "--sinks with a NaN" run $QKV $O --sinks "$D/sinks_nan.npy"
expect_msg "--sinks with a NaN" "sinks[1]"
expect_fail 2 "--sinks twice" run $QKV $O --sinks "$D/sinks.npy" \
  --sinks "$D/sinks.npy"

echo "$npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
