#!/usr/bin/env bash
# ThreadSanitizer over the threaded parts of libattn (issue 15, "CI and
# figures"): clang, RelWithDebInfo, -DATTN_SANITIZE_THREAD=ON (library and
# tests instrumented), then with ctest:
#   hammer, hammer_layer   64 threads for a few seconds, every result
#                          bitwise against a single-threaded run
#                          (tests/stress/); hammer_layer when OpenBLAS is
#                          found
#   spare                  the context's spare workspace, 4 callers racing
#   pool                   the thread pool: concurrent callers, lifecycles,
#                          fork (TSan needs die_after_fork=0 for the child's
#                          threads)
#   determinism            every thread count gives the same bits
#   forward, backward      150 / 60 random cases on 1..7 threads
#   decode, cache, merge,  quick mode (ATTN_TEST_QUICK=1), 20 random cases
#   sparse, dropout        (ATTN_TEST_CASES=20)
#   fuzz_params2_replay,   the corpora (their threads 1, 2, 3 bitwise)
#   fuzz_cache_replay
# About 3-4 minutes on 2 cores (build included). No suppressions: the
# library and its pool are clean without any.
#
#   scripts/ci_tsan.sh                  # from the repository root or not
# Environment: JOBS (default 2), ATTN_TSAN_BUILD (build directory, default
# build-tsan), ATTN_HAMMER_SECONDS (default 5), TSAN_OPTIONS (appended).
# Last line: "tsan: N passed, N failed"; exit status 1 on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
export CI=${CI:-true}
export DEBIAN_FRONTEND=noninteractive
JOBS=${JOBS:-2}
BUILD=${ATTN_TSAN_BUILD:-build-tsan}
HAMMER_SECONDS=${ATTN_HAMMER_SECONDS:-5}

die() {
  echo "ci_tsan: $*" >&2
  echo "tsan: 0 passed, 1 failed"
  exit 1
}

# clang's TSan runtime (Debian: libclang-rt-<major>-dev, which
# scripts/setup.sh installs for ASan already).
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf 'int main(void){return 0;}\n' >"$probe/t.c"
if ! clang -fsanitize=thread -o "$probe/t" "$probe/t.c" >/dev/null 2>&1; then
  major=$(clang -dumpversion 2>/dev/null | cut -d. -f1)
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo -n"
  $sudo_cmd apt-get install -y --no-install-recommends \
    "libclang-rt-${major:-14}-dev" </dev/null >/dev/null 2>&1 || true
  clang -fsanitize=thread -o "$probe/t" "$probe/t.c" >/dev/null 2>&1 ||
    die "clang cannot link -fsanitize=thread (libclang-rt-${major:-14}-dev?)"
fi

# Python, the command line and MPI are not part of this job.
CC=clang cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DATTN_SANITIZE_THREAD=ON -DATTN_BUILD_PYTHON=OFF -DATTN_BUILD_TOOLS=OFF \
  -DATTN_BUILD_RING=OFF -DATTN_TEST_CASES=150 -DATTN_TEST_BWD_CASES=60 \
  </dev/null || die "configure failed"

tests=(pool spare determinism forward backward decode cache merge sparse dropout
  fuzz_params2_replay fuzz_cache_replay hammer)
targets=(test_pool test_spare test_determinism test_forward test_backward test_decode
  test_cache test_merge test_sparse test_dropout params2_replay cache_replay
  attn_hammer)
# (CMake makes BUILD/.../NAME.dir for each target it defines.)
if find "$BUILD" -maxdepth 4 -type d -name attn_hammer_layer.dir | grep -q .; then
  tests+=(hammer_layer)
  targets+=(attn_hammer_layer)
fi
cmake --build "$BUILD" -j"$JOBS" --target "${targets[@]}" </dev/null ||
  die "build failed"

export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 die_after_fork=0 ${TSAN_OPTIONS:-}"
export ATTN_TEST_QUICK=1 ATTN_TEST_CASES=20 OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-2}
regex="^($(IFS='|'; echo "${tests[*]}"))\$"
log="$BUILD/ci_tsan.log"
export ATTN_HAMMER_SECONDS=$HAMMER_SECONDS # the hammer's duration
ctest --test-dir "$BUILD" -R "$regex" -j"$JOBS" --output-on-failure \
  --timeout 900 </dev/null 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
# "NN% tests passed, F tests failed out of T"
line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -1)
failed=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
total=$(sed -E 's/.* failed out of ([0-9]+).*/\1/' <<<"$line")
if [ -z "$line" ] || [ -z "$total" ]; then
  failed=1 total=1
fi
if [ "$total" -lt "${#tests[@]}" ]; then # a test missing counts as failed
  failed=$((failed + ${#tests[@]} - total))
  total=${#tests[@]}
fi
if grep -q 'WARNING: ThreadSanitizer' "$log"; then
  echo "ci_tsan: ThreadSanitizer reported (see above)"
  [ "$failed" -eq 0 ] && failed=1
fi
[ "$rc" -ne 0 ] && [ "$failed" -eq 0 ] && failed=1
echo "tsan: $((total - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
