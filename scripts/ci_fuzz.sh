#!/usr/bin/env bash
# ci_fuzz.sh - the CI's fuzzing minute (issue 15): builds the libFuzzer
# targets of fuzz/ (clang, ASan + UBSan, the library instrumented too) and
# runs each from its seed corpus in fuzz/corpus/, two targets at a time,
# for a fixed number of executions (about a minute each on the 2-core CI
# machine) from a fixed seed, so that its length does not depend on the
# machine's speed and two runs explore much the same inputs (not bit for
# bit: libFuzzer's use of comparison operands and its corpus pruning vary
# from run to run). The long, exploring runs are local (fuzz/RESULTS.md). Fails when any target finds anything (a crash, a
# sanitizer report, a leak, a timeout of a unit, a failed check); prints a
# closing "N passed, N failed" line (targets).
#
#   scripts/ci_fuzz.sh                 # every target, ~60 s each
#   FUZZ_SEED=7 FUZZ_SCALE=10 scripts/ci_fuzz.sh npy cli
#
# Environment: FUZZ_SEED (libFuzzer -seed, default 1), FUZZ_SCALE (the
# executions per target in tenths of the default, default 10),
# FUZZ_SECONDS (a ceiling per target, default 180), FUZZ_JOBS (targets at once,
# default 2), FUZZ_BUILD_DIR (default: a new directory under $TMPDIR,
# removed at the end; give one to reuse a build), FUZZ_WORK_DIR (where new
# inputs, logs and crash artifacts go; default a new directory under
# $TMPDIR, kept on failure and named in the output), CC (default clang).
# Nothing is written into the repository: the seed corpora are only read.
#
# params2_fuzz (the compute harness against the double oracles) is slow:
# tens of executions a second under the sanitizers (its oracles are built
# without libFuzzer's tracing, fuzz/CMakeLists.txt), single units up to
# ~15 s (sequences near 300 with the oracles), so its minute mostly replays
# its seeds and makes a thousand or so new executions; its per-unit limit
# is 120 s (-timeout) so that such a unit is not reported as a hang. The
# other targets run thousands of executions a second.
set -u
set -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECONDS_EACH=${FUZZ_SECONDS:-180}
SEED=${FUZZ_SEED:-1}
SCALE=${FUZZ_SCALE:-10}
JOBS=${FUZZ_JOBS:-2}
CC=${CC:-clang}
case $SECONDS_EACH in '' | *[!0-9]*)
  echo "ci_fuzz.sh: FUZZ_SECONDS must be a whole number of seconds" >&2
  exit 2
  ;;
esac
case $SEED$SCALE in '' | *[!0-9]*)
  echo "ci_fuzz.sh: FUZZ_SEED and FUZZ_SCALE must be whole numbers" >&2
  exit 2
  ;;
esac
case $JOBS in '' | *[!0-9]* | 0)
  echo "ci_fuzz.sh: FUZZ_JOBS must be a positive integer" >&2
  exit 2
  ;;
esac

# target, its corpus directory under fuzz/corpus, its per-unit limit (s),
# its executions (about 60 s each at the rates of a 2-core Zen 3 CI run)
ALL_TARGETS="npy_fuzz:npy:25:6000000 safetensors_fuzz:safetensors:25:2000000
gguf_fuzz:gguf:25:1000000 bpe_fuzz:bpe:25:80000 wordpiece_fuzz:wordpiece:25:60000
cli_fuzz:cli:25:1500000 params_fuzz:params:60:15000 cache_fuzz:cache:60:250000
params2_fuzz:params2:120:1500 plot_fuzz:plot:25:2000000
merge_fuzz:merge:60:3000 positions_fuzz:positions:60:140000
layer_fuzz:layer:60:18000 linear_fuzz:linear:60:1700
ring_fuzz:ring:60:650"

tmp_root=${TMPDIR:-/tmp}
own_build=0
BUILD=${FUZZ_BUILD_DIR:-}
if [ -z "$BUILD" ]; then
  BUILD=$(mktemp -d "$tmp_root/attn-ci-fuzz-build.XXXXXX") || exit 2
  own_build=1
fi
WORK=${FUZZ_WORK_DIR:-}
if [ -z "$WORK" ]; then
  WORK=$(mktemp -d "$tmp_root/attn-ci-fuzz-work.XXXXXX") || exit 2
fi
mkdir -p "$WORK/logs" "$WORK/artifacts" || exit 2

# the targets asked for (names without _fuzz), or all
selected=""
if [ "$#" -gt 0 ]; then
  for want in "$@"; do
    found=""
    for t in $ALL_TARGETS; do
      name=${t%%:*}
      if [ "$name" = "$want" ] || [ "$name" = "${want}_fuzz" ]; then
        found=$t
      fi
    done
    if [ -z "$found" ]; then
      echo "ci_fuzz.sh: unknown target '$want'" >&2
      exit 2
    fi
    selected="$selected $found"
  done
else
  selected=$ALL_TARGETS
fi

echo "ci_fuzz.sh: building in $BUILD ($CC, ASan + UBSan, libFuzzer)"
if ! "$CC" --version 2>/dev/null | grep -qi clang; then
  echo "ci_fuzz.sh: CC=$CC is not clang (libFuzzer needs clang)" >&2
  exit 2
fi
names=""
for t in $selected; do
  names="$names ${t%%:*}"
done
# shellcheck disable=SC2086 # names: one target per word
if ! CC=$CC cmake -S "$ROOT" -B "$BUILD" -DATTN_BUILD_FUZZ=ON \
  -DATTN_SANITIZE=ON -DATTN_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS=-fsanitize=fuzzer-no-link >"$WORK/logs/configure.log" 2>&1; then
  tail -n 30 "$WORK/logs/configure.log"
  echo "ci_fuzz.sh: configure failed (log: $WORK/logs/configure.log)" >&2
  exit 2
fi
# the model targets exist only when attn_model is built (OpenBLAS, stb)
have_model=0
if grep -q "attn_model: ON" "$WORK/logs/configure.log"; then
  have_model=1
fi
# layer_fuzz only when libattn_layer is built (OpenBLAS)
have_layer=0
if grep -q "libattn_layer: ON" "$WORK/logs/configure.log"; then
  have_layer=1
fi
# ring_fuzz only when libattn_ring is built (MPI; the harness sets Open
# MPI's environment itself)
have_ring=0
if grep -q "libattn_ring: ON" "$WORK/logs/configure.log"; then
  have_ring=1
fi
built=""
for t in $selected; do
  name=${t%%:*}
  case $name in
  safetensors_fuzz | gguf_fuzz | bpe_fuzz | wordpiece_fuzz | plot_fuzz)
    if [ "$have_model" = 0 ]; then
      echo "ci_fuzz.sh: $name needs attn_model (OpenBLAS, stb): skipped"
      continue
    fi
    ;;
  layer_fuzz)
    if [ "$have_layer" = 0 ]; then
      echo "ci_fuzz.sh: $name needs libattn_layer (OpenBLAS): skipped"
      continue
    fi
    ;;
  ring_fuzz)
    if [ "$have_ring" = 0 ]; then
      echo "ci_fuzz.sh: $name needs libattn_ring (MPI): skipped"
      continue
    fi
    ;;
  esac
  built="$built $t"
done
bnames=""
for t in $built; do
  bnames="$bnames ${t%%:*}"
done
if [ -z "$bnames" ]; then
  echo "ci_fuzz.sh: no target to run" >&2
  exit 2
fi
# shellcheck disable=SC2086
if ! cmake --build "$BUILD" -j "$JOBS" --target $bnames \
  >"$WORK/logs/build.log" 2>&1; then
  tail -n 30 "$WORK/logs/build.log"
  echo "ci_fuzz.sh: build failed (log: $WORK/logs/build.log)" >&2
  exit 2
fi

# run_one TARGET:CORPUS:TIMEOUT:RUNS : the target for RUNS x SCALE / 10
# executions from SEED (at most SECONDS_EACH) over its seeds (new inputs
# go to $WORK/corpus, not the repository).
run_one() {
  IFS=: read -r name corpus unit runs <<EOF
$1
EOF
  mkdir -p "$WORK/corpus/$name"
  "$BUILD/fuzz/$name" -seed="$SEED" -runs=$((runs * SCALE / 10)) \
    -max_total_time="$SECONDS_EACH" -timeout="$unit" \
    -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$WORK/artifacts/$name-" \
    "$WORK/corpus/$name" "$ROOT/fuzz/corpus/$corpus" \
    </dev/null >"$WORK/logs/$name.log" 2>&1
}

npass=0
nfail=0
failed_names=""
# shellcheck disable=SC2086 # one target a word
set -- $built
while [ "$#" -gt 0 ]; do
  pids=""
  batch=""
  k=0
  while [ "$#" -gt 0 ] && [ "$k" -lt "$JOBS" ]; do
    run_one "$1" &
    pids="$pids $!"
    batch="$batch ${1%%:*}"
    shift
    k=$((k + 1))
  done
  set -- "$@" # keep the rest
  i=0
  for pid in $pids; do
    i=$((i + 1))
    name=$(echo "$batch" | awk -v i="$i" '{ print $i }')
    if wait "$pid"; then
      execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' \
        "$WORK/logs/$name.log" | awk '{ print $2 }')
      cov=$(grep -oE '(INITED|DONE|pulse|NEW|REDUCE) +cov: [0-9]+ ft: [0-9]+' \
        "$WORK/logs/$name.log" | tail -n 1 | awk '{ print $3 "/" $5 }')
      echo "PASS: $name (${execs:-?} executions, cov/ft ${cov:-?})"
      npass=$((npass + 1))
    else
      echo "FAIL: $name (log: $WORK/logs/$name.log)"
      grep -E 'ERROR|SUMMARY|Test unit written|==[0-9]+==' \
        "$WORK/logs/$name.log" | head -n 20 | sed 's/^/    /'
      nfail=$((nfail + 1))
      failed_names="$failed_names $name"
    fi
  done
done

if [ "$nfail" -eq 0 ]; then
  if [ -z "${FUZZ_WORK_DIR:-}" ]; then
    rm -rf "$WORK"
  fi
else
  echo "ci_fuzz.sh: findings in$failed_names; inputs in $WORK/artifacts"
fi
if [ "$own_build" = 1 ]; then
  rm -rf "$BUILD"
fi
echo "$npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
