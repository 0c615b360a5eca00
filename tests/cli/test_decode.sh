#!/bin/sh
# test_decode.sh - `attn decode` and the bandwidth line of `attn peak`.
#
#   test_decode.sh ATTN SCRATCH_DIR
#
# Usage errors exit 2 with exactly one stderr line "attn: ..."; small good
# runs exit 0 with an empty stderr, and --check (attn_forward on the same
# keys) must report agreement. The last line is "N passed, N failed".

ATTN=$1
S=$2
if [ -z "$ATTN" ] || [ -z "$S" ] || [ ! -x "$ATTN" ]; then
  echo "usage: test_decode.sh ATTN SCRATCH_DIR" >&2
  exit 2
fi
mkdir -p "$S" || exit 2

CLI_TIME_LIMIT=120
. "$(dirname "$0")/lib.sh" # tally, LIMIT, expect_fail, expect_msg

# expect_ok DESCRIPTION PATTERN ARGS... : exit 0, empty stderr, stdout
# matching the grep pattern.
expect_ok() {
  desc=$1
  pat=$2
  shift 2
  $LIMIT "$ATTN" "$@" >"$S/stdout" 2>"$S/stderr"
  rc=$?
  if [ "$rc" -ne 0 ]; then
    failed "$desc: exit $rc: $(head -n 1 "$S/stderr")"
  elif [ -s "$S/stderr" ]; then
    failed "$desc: unexpected stderr: $(head -n 1 "$S/stderr")"
  elif ! grep -q -- "$pat" "$S/stdout"; then
    failed "$desc: output lacks '$pat': $(cat "$S/stdout")"
  else
    pass "$desc"
  fi
}

# --- usage errors: exit 2 ----------------------------------------------------
expect_fail 2 "decode --heads-q 12 --heads-kv 5" decode --heads-q 12 --heads-kv 5
expect_fail 2 "decode --head-dim 300" decode --head-dim 300
expect_fail 2 "decode --head-dim 0" decode --head-dim 0
expect_fail 2 "decode --cache-len 0" decode --cache-len 0
expect_fail 2 "decode --page-size -1" decode --page-size -1
expect_fail 2 "decode --dtype f64" decode --dtype f64
expect_fail 2 "decode --threads 100000" decode --threads 100000
expect_fail 2 "decode --bandwidth 0" decode --bandwidth 0
expect_fail 2 "decode --reps x" decode --reps x
expect_fail 2 "decode --check=1" decode --check=1
expect_fail 2 "decode --bogus" decode --bogus
expect_fail 2 "decode stray word" decode extra

# --- small runs ---------------------------------------------------------------
SMALL="--heads-q 8 --heads-kv 2 --head-dim 64 --cache-len 1500 --reps 2 --warmup 1 --bandwidth 10"
expect_ok "decode --help" "attn decode" decode --help
expect_ok "decode contiguous f32 --check" "^check: ok, bitwise equal" \
  decode $SMALL --check
expect_ok "decode paged bf16 --check" "^check: ok, bitwise equal" \
  decode $SMALL --page-size 16 --dtype bf16 --check --threads 2
expect_ok "decode paged f16, 3 rows, batch 2" "^check: ok, bitwise equal" \
  decode $SMALL --page-size 7 --dtype f16 --queries 3 --batch 2 --check
expect_ok "decode 50 rows (tiled check)" "^check: within 1e-4" \
  decode $SMALL --queries 50 --check --page-size 64
expect_ok "decode --json" '"gbps":' decode $SMALL --json --check
expect_ok "decode GB/s line" "% of the read bandwidth 10.00 GB/s (given)" \
  decode $SMALL
expect_ok "decode measured bandwidth" "(measured)" \
  decode --heads-q 4 --heads-kv 4 --head-dim 8 --cache-len 100 --reps 1 \
  --threads 1
expect_ok "peak shows the read bandwidth" "^read bandwidth: " \
  peak --seconds 0.05 --threads 1
expect_ok "peak keeps its FMA line" "^peak: .* GFLOP/s (f32 FMA" \
  peak --seconds 0.05 --threads 1
expect_ok "peak --json" '"read_gbps":' peak --seconds 0.05 --json

echo "$npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
