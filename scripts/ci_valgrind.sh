#!/usr/bin/env bash
# Valgrind memcheck over a subset of the tests (issue 15, "CI and figures"):
# gcc, RelWithDebInfo (-O2 -g, the optimised code with its line numbers),
# each program under
#   valgrind --error-exitcode=1 --leak-check=full
#            --suppressions=scripts/valgrind.supp   (two entries, explained there)
# with small case counts, two programs at a time:
#   faults                  every allocation and thread creation failing in
#                           turn (tests/test_faults.c, when present)
#   corpus replays          fuzz/corpus/: npy, params, params2 (every 8th
#                           seed), cache, merge, linear, positions, layer
#                           (its seeds only), and with the model library
#                           safetensors, wordpiece, gguf, bpe; a few hundred
#                           mutations each
#   unit tests              status, forward (15 cases), backward (6),
#                           merge, cache (quick mode)
#   hammer                  8 threads for 2 s (valgrind runs one thread at a
#                           time: this checks the concurrent paths for
#                           uninitialised reads and leaks, not for speed)
# The library is built with ATTN_SPIN_NS=0 and ATTN_BARRIER_SPIN_NS=0: its
# waiting threads sleep at once instead of spinning (a few microseconds
# idle, up to 200 inside a call), which under valgrind's one thread at a
# time would burn whole time slices (results are the same).
# About 3 minutes on 2 cores (build included; test_faults alone is the
# longest program).
#
#   scripts/ci_valgrind.sh
# Environment: JOBS (default 2), ATTN_VALGRIND_BUILD (build directory,
# default build-valgrind), ATTN_VALGRIND_FAULTS=0 leaves test_faults out.
# Last line: "valgrind: N passed, N failed"; exit status 1 on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
export CI=${CI:-true}
export DEBIAN_FRONTEND=noninteractive
JOBS=${JOBS:-2}
BUILD=${ATTN_VALGRIND_BUILD:-build-valgrind}
ROOT=$(pwd)
CORPUS=$ROOT/fuzz/corpus

die() {
  echo "ci_valgrind: $*" >&2
  echo "valgrind: 0 passed, 1 failed"
  exit 1
}

if ! command -v valgrind >/dev/null 2>&1; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo -n"
  { $sudo_cmd apt-get update && $sudo_cmd apt-get install -y \
    --no-install-recommends valgrind; } </dev/null >/dev/null 2>&1 || true
  command -v valgrind >/dev/null 2>&1 || die "valgrind is not installed"
fi

CC=gcc cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  "-DCMAKE_C_FLAGS=-DATTN_SPIN_NS=0 -DATTN_BARRIER_SPIN_NS=0" \
  -DATTN_BUILD_PYTHON=OFF \
  -DATTN_BUILD_TOOLS=OFF -DATTN_BUILD_RING=OFF </dev/null ||
  die "configure failed"

# A target this configuration defines (CMake makes BUILD/.../NAME.dir for
# each, with Makefiles and Ninja alike).
have_target() {
  find "$BUILD" -maxdepth 4 -type d -name "$1.dir" | grep -q .
}

# name | target | command line (relative to BUILD/tests) | environment
jobs_list=()
add() { jobs_list+=("$1|$2|$3|${4:-}"); }
if [ "${ATTN_VALGRIND_FAULTS:-1}" != 0 ] && [ -f tests/test_faults.c ]; then
  add faults test_faults "./test_faults"
fi
add status test_status "./test_status"
add forward test_forward "./test_forward" "ATTN_TEST_CASES=15"
add backward test_backward "./test_backward" "ATTN_TEST_CASES=6"
add merge test_merge "./test_merge" "ATTN_TEST_QUICK=1"
add cache test_cache "./test_cache" "ATTN_TEST_QUICK=1"
# not test_positions: its RoPE oracle computes in long double, which
# valgrind runs in double precision (a documented valgrind limitation), so
# at positions near 2^40 the oracle, not the library, is off under memcheck
add replay_npy npy_replay "./npy_replay --mutate 300 $CORPUS/npy"
add replay_params params_replay "./params_replay --mutate 50 $CORPUS/params"
params2=$(find "$CORPUS/params2" -type f | LC_ALL=C sort | awk 'NR % 8 == 1' |
  tr '\n' ' ')
add replay_params2 params2_replay "./params2_replay --mutate 0 $params2"
add replay_cache cache_replay "./cache_replay --mutate 300 $CORPUS/cache"
add replay_merge merge_replay "./merge_replay --mutate 100 $CORPUS/merge"
add replay_linear linear_replay "./linear_replay --mutate 50 $CORPUS/linear"
add replay_positions positions_replay \
  "./positions_replay --mutate 300 $CORPUS/positions"
add replay_layer layer_replay "./layer_replay --mutate 0 $CORPUS/layer"
for p in safetensors wordpiece gguf bpe; do
  add "replay_$p" "${p}_replay" "./${p}_replay --mutate 300 $CORPUS/$p"
done
add hammer attn_hammer "stress/attn_hammer --threads 8 --seconds 2 --cases 2"

# Only what this configuration builds (the model replays need OpenBLAS
# and stb).
targets=()
selected=()
for j in "${jobs_list[@]}"; do
  IFS='|' read -r name target _ _ <<<"$j"
  if have_target "$target"; then
    targets+=("$target")
    selected+=("$j")
  else
    echo "ci_valgrind: $name skipped (no target $target in this build)"
  fi
done
cmake --build "$BUILD" -j"$JOBS" --target "${targets[@]}" </dev/null ||
  die "build failed"

logs="$BUILD/valgrind-logs"
rm -rf "$logs"
mkdir -p "$logs"
VG=(valgrind --error-exitcode=1 --leak-check=full
  "--suppressions=$ROOT/scripts/valgrind.supp" --fair-sched=yes -q)

run_one() { # name env command...
  local name=$1 env=$2 t0
  shift 2
  t0=$(date +%s)
  (
    cd "$BUILD/tests" || exit 1
    # shellcheck disable=SC2086
    env OPENBLAS_NUM_THREADS=1 $env "${VG[@]}" "$@" </dev/null
  ) >"$logs/$name.log" 2>&1
  echo $? >"$logs/$name.rc"
  echo "  $name: exit $(cat "$logs/$name.rc"), $(($(date +%s) - t0)) s"
}

echo "valgrind: ${#selected[@]} programs, $JOBS at a time"
for j in "${selected[@]}"; do
  IFS='|' read -r name _ cmd env <<<"$j"
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do
    wait -n
  done
  # shellcheck disable=SC2086
  run_one "$name" "$env" $cmd &
done
wait

pass=0 fail=0
for j in "${selected[@]}"; do
  IFS='|' read -r name _ _ _ <<<"$j"
  if [ "$(cat "$logs/$name.rc" 2>/dev/null)" = 0 ]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "=== $name FAILED: $logs/$name.log (last 40 lines) ==="
    tail -40 "$logs/$name.log"
  fi
done
echo "valgrind: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
