# lib.sh - what the command-line test scripts share (sourced, not run):
# the tally (pass, failed; the caller prints "$npass passed, $nfail
# failed" last), the time limit of every attn run, and expect_fail /
# expect_msg, expect_ok, expect_shape, expect_same, expect_differ,
# expect_finite, gen and scratch_dir. Needs ATTN (the binary), S (a scratch directory)
# and, for the .npy helpers, G (gen_npy) set;
# CLI_TIME_LIMIT (seconds, default 60) may be set before sourcing.

# scratch_dir SCRIPT DIR: makes DIR (a path without blanks: the scripts
# split argument strings on blanks) and prints it absolute; on failure a
# message naming SCRIPT and status 2.
scratch_dir() {
  case $2 in
  *[[:space:]]*)
    echo "$1: the scratch path must not contain blanks" >&2
    return 2
    ;;
  esac
  mkdir -p "$2" || return 2
  (cd "$2" && pwd)
}

npass=0
nfail=0
pass() {
  npass=$((npass + 1))
  echo "PASS: $1"
}
failed() {
  nfail=$((nfail + 1))
  echo "FAIL: $1"
}

# Every attn run is limited where timeout(1) exists, so that a reader stuck
# on an endless input fails the test instead of hanging it.
LIMIT=""
if command -v timeout >/dev/null 2>&1; then
  LIMIT="timeout ${CLI_TIME_LIMIT:-60}"
fi

# expect_fail CODE DESCRIPTION ARGS... : attn must fail with exit CODE ("" =
# any code 1..127) and exactly one stderr line starting with "attn: ".
expect_fail() {
  code=$1
  desc=$2
  shift 2
  $LIMIT "$ATTN" "$@" >"$S/stdout" 2>"$S/stderr"
  rc=$?
  lines=$(grep -c '' "$S/stderr")
  first=$(head -n 1 "$S/stderr")
  if [ "$rc" -ge 128 ]; then
    failed "$desc: crashed (exit $rc)"
  elif [ "$rc" -eq 0 ]; then
    failed "$desc: exit 0, expected failure"
  elif [ -n "$code" ] && [ "$rc" -ne "$code" ]; then
    failed "$desc: exit $rc, expected $code ($first)"
  elif [ "$lines" -ne 1 ]; then
    failed "$desc: $lines lines on stderr, expected 1"
    sed 's/^/    /' "$S/stderr" | head -n 20
  else
    case $first in
    "attn: "?*) pass "$desc [$first]" ;;
    *) failed "$desc: stderr does not start with 'attn: ': $first" ;;
    esac
  fi
}

# expect_msg DESCRIPTION TEXT : the last expect_fail's stderr contains TEXT.
expect_msg() {
  if grep -qF -- "$2" "$S/stderr"; then
    pass "$1 message"
  else
    failed "$1: message '$(head -n 1 "$S/stderr")' lacks '$2'"
  fi
}

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
  return 0
}

# expect_shape DESCRIPTION FILE "DESCR SHAPE"
expect_shape() {
  got=$("$G" shape "$2" 2>&1)
  if [ "$got" = "$3" ]; then
    pass "$1 shape $3"
  else
    failed "$1: shape '$got', expected '$3'"
  fi
}

# expect_same DESCRIPTION A B [TOL (0)]: same shape, max |a - b| <= TOL
expect_same() {
  if out=$("$G" compare "$2" "$3" "${4:-0}" 2>&1); then
    pass "$1 ($out)"
  else
    failed "$1: $out (tolerance ${4:-0})"
  fi
}

# expect_differ DESCRIPTION A B : the arrays differ somewhere.
expect_differ() {
  if out=$("$G" compare "$2" "$3" 0 2>&1); then
    failed "$1: identical ($out)"
  else
    pass "$1 ($out)"
  fi
}

# expect_finite DESCRIPTION FILE : every element finite.
expect_finite() {
  if "$G" finite "$2"; then
    pass "$1 finite"
  else
    failed "$1: output has non-finite values"
  fi
}

# gen ARGS... : gen_npy ARGS, or stop the script (exit 2).
gen() {
  "$G" "$@" || {
    echo "$(basename "$0"): gen_npy $* failed" >&2
    exit 2
  }
}
