#!/bin/sh
# special_files.sh ATTN SCRATCH_DIR [GEN_NPY] - every file reader of the
# `attn` command, through the path the command line gives it, fed what is
# not a plain file (issue 15): /dev/zero, /dev/null, a FIFO with no writer,
# a FIFO of endless zeros, a directory, an unreadable file (skipped as
# root: root reads it anyway), a symbolic-link loop, a file that grows
# while read and one that another process truncates while read. Each must
# end with exit 1 and one line "attn: ..." on stderr (a file that grows or
# shrinks may also load whole, exit 0, when the reader was faster), never a
# crash, a hang (every run is under timeout) or a memory blow-up (ulimit
# -v where the shell has it).
#
# The readers: .npy (attn run --q: attn_npy_read), vocab.txt (attn
# tokenize --model encoder: wordpiece_load), config.json and
# model.safetensors (attn embed: bert_load, st_open), a GGUF file (attn
# tokenize --model decoder: gguf_open, the BPE), a trainer's checkpoint
# (attn show --model encdec: the minimal safetensors reader). The model
# commands are skipped when the binary was built without attn_model.
ATTN=$1
S=$2
G=${3:-${GEN_NPY:-$(dirname "$ATTN")/gen_npy}}
if [ -z "$ATTN" ] || [ -z "$S" ] || [ ! -x "$ATTN" ] || [ ! -x "$G" ]; then
  echo "usage: special_files.sh ATTN SCRATCH_DIR [GEN_NPY]" >&2
  exit 2
fi
CLI_TIME_LIMIT=${CLI_TIME_LIMIT:-30}
. "$(dirname "$0")/lib.sh" # tally, LIMIT, expect_*, gen
S=$(scratch_dir special_files.sh "$S") || exit 2
D=$S/in
rm -rf "$D" "$S/sp"
mkdir -p "$D" "$S/sp" || exit 2
nskip=0
skip() {
  nskip=$((nskip + 1))
  echo "SKIP: $1"
}
# memory: at most 4 GiB of address space (not under a sanitizer, whose
# shadow memory needs terabytes of it)
if [ "${ATTN_SANITIZED:-0}" != 1 ]; then
  ulimit -v 4194304 2>/dev/null || true
fi

gen rand f32 1 "$D/q.npy" 1 3 2 4
gen rand f32 2 "$D/k.npy" 1 5 2 4
gen rand f32 3 "$D/v.npy" 1 5 2 4
QKV="--k $D/k.npy --v $D/v.npy --out $S/o.npy"
HAVE_MODEL=0
if "$ATTN" --help | grep -q "^attn tokenize"; then
  HAVE_MODEL=1
fi

# --- the special files, in $S/sp ---------------------------------------
ln -s /dev/zero "$S/sp/zero"
ln -s /dev/null "$S/sp/null"
mkdir "$S/sp/dir"
printf 'secret' >"$S/sp/unreadable"
chmod 000 "$S/sp/unreadable"
ln -s "$S/sp/loop2" "$S/sp/loop1"
ln -s "$S/sp/loop1" "$S/sp/loop2"
HAVE_FIFO=0
if command -v mkfifo >/dev/null 2>&1 && mkfifo "$S/sp/fifo"; then
  HAVE_FIFO=1
fi

# target_of KIND : where a loader of KIND gets the special file (prints the
# command's arguments). KIND: npy vocab config st gguf ckpt; the special
# file is $S/sp/cur, a symbolic link the caller points at the case.
args_for() {
  case $1 in
  npy) echo "run --q $S/sp/cur $QKV" ;;
  vocab) echo "tokenize --model encoder --weights $S/m_vocab hello" ;;
  config) echo "embed --weights $S/m_config hello" ;;
  st) echo "embed --weights $S/m_st hello" ;;
  gguf) echo "tokenize --model decoder --weights $S/sp/cur hello" ;;
  ckpt) echo "show 42 --model encdec --format none --weights $S/sp/cur" ;;
  esac
}

# the encoder's directories: each names one of its files $S/sp/cur
CONFIG='{"vocab_size": 8, "hidden_size": 4, "num_hidden_layers": 1,
 "num_attention_heads": 1, "intermediate_size": 4,
 "max_position_embeddings": 16, "type_vocab_size": 1}'
VOCAB='[PAD]
[UNK]
[CLS]
[SEP]
[MASK]
hello
'
for d in m_vocab m_config m_st; do
  mkdir -p "$S/$d"
  printf '%s\n' "$CONFIG" >"$S/$d/config.json"
  printf '%s' "$VOCAB" >"$S/$d/vocab.txt"
  printf '\010\000\000\000\000\000\000\000{}      ' >"$S/$d/model.safetensors"
done
rm -f "$S/m_vocab/vocab.txt" "$S/m_config/config.json" \
  "$S/m_st/model.safetensors"
ln -s "$S/sp/cur" "$S/m_vocab/vocab.txt"
ln -s "$S/sp/cur" "$S/m_config/config.json"
ln -s "$S/sp/cur" "$S/m_st/model.safetensors"

KINDS="npy"
if [ "$HAVE_MODEL" = 1 ]; then
  KINDS="npy vocab config st gguf ckpt"
fi

# one_case KIND NAME TARGET : $S/sp/cur -> TARGET, then the command fails
# with exit 1 and one line (expect_fail: a crash or timeout fails too).
one_case() {
  rm -f "$S/sp/cur"
  ln -s "$3" "$S/sp/cur"
  # shellcheck disable=SC2046 # the arguments split on blanks on purpose
  expect_fail 1 "$1: $2" $(args_for "$1")
}

for kind in $KINDS; do
  one_case "$kind" /dev/zero "$S/sp/zero"
  one_case "$kind" /dev/null "$S/sp/null"
  one_case "$kind" "a directory" "$S/sp/dir"
  one_case "$kind" "a symbolic-link loop" "$S/sp/loop1"
  one_case "$kind" "a missing file" "$S/sp/missing"
  if [ "$(id -u)" = 0 ]; then
    skip "$kind: an unreadable file (root reads it anyway)"
  else
    one_case "$kind" "an unreadable file" "$S/sp/unreadable"
  fi
  if [ "$HAVE_FIFO" = 1 ]; then
    # no writer: refused (non-regular), or read as empty after a second
    one_case "$kind" "a FIFO with no writer" "$S/sp/fifo"
    # endless zeros from a writer
    cat /dev/zero >"$S/sp/fifo" 2>/dev/null &
    feeder=$!
    one_case "$kind" "a FIFO of endless zeros" "$S/sp/fifo"
    kill "$feeder" 2>/dev/null
    wait "$feeder" 2>/dev/null
  fi
done

# --- a .npy stream that declares 1 TiB and sends zeros forever: the
# buffer grows with what arrives, so the memory limit (or the declared
# size) ends it with a message, not the machine.
if [ "$HAVE_FIFO" = 1 ]; then
  printf "\223NUMPY\001\000v\000{'descr': '<f4', 'fortran_order': False, 'shape': (274877906944,), }" >"$D/head_1t"
  # pad the header to 118 bytes + newline (10 + 118 = 128)
  n=$(wc -c <"$D/head_1t")
  pad=$((128 - n - 1))
  awk -v n="$pad" 'BEGIN { for (i = 0; i < n; i++) printf " "; print "" }' \
    >>"$D/head_1t"
  (cat "$D/head_1t" /dev/zero >"$S/sp/fifo") 2>/dev/null &
  feeder=$!
  rm -f "$S/sp/cur"
  ln -s "$S/sp/fifo" "$S/sp/cur"
  if [ "${ATTN_SANITIZED:-0}" = 1 ]; then
    skip "npy: 1 TiB declared, endless zeros (no memory limit under ASan)"
  else
    # under 1 GiB of address space: the buffer stops growing near 512 MiB
    # shellcheck disable=SC2046
    (ulimit -v 1048576 2>/dev/null || true
    expect_fail 1 "npy: a stream declaring 1 TiB of endless zeros" \
      $(args_for npy)
    echo "$npass $nfail" >"$S/tally")
    read -r npass nfail <"$S/tally"
  fi
  kill "$feeder" 2>/dev/null
  wait "$feeder" 2>/dev/null
fi

# --- files that grow or shrink while read ------------------------------
# A big file of each kind: a valid head, then enough bytes that reading
# takes a while (a .npy of 8 Mi floats; a safetensors header padded with
# 32 MiB of blanks; a GGUF of 3 million strings).
gen fill f32 0 "$D/big.npy" 8388608
perl -e 'my $h = "{\"__metadata__\":{\"a\":\"b\"}}" . (" " x (32 << 20));
  print pack("Q<", length $h), $h' >"$D/big.safetensors"
# the GGUF: an array of 3 million strings (36 MB) that the reader walks
# string by string (the mapping reader that this replaced died of SIGBUS
# here when the file was truncated during that walk)
perl -e 'my $n = 3000000;
  my $b = "GGUF" . pack("L<Q<Q<", 3, 0, 1) . pack("Q<", 4) . "toks"
    . pack("L<L<Q<", 9, 8, $n);
  $b .= pack("Q<", 4) . "abcd" for 1 .. $n;
  print $b' >"$D/big.gguf"
cp "$D/big.safetensors" "$D/big.ckpt"
perl -e 'print "[PAD]\n[UNK]\n[CLS]\n[SEP]\n";
  for my $i (1 .. 2000000) { print "tok$i\n" }' >"$D/big.vocab"

big_of() {
  case $1 in
  npy) echo "$D/big.npy" ;;
  vocab) echo "$D/big.vocab" ;;
  config) echo "" ;; # config.json: read whole up to 1 MiB, nothing to race
  st) echo "$D/big.safetensors" ;;
  gguf) echo "$D/big.gguf" ;;
  ckpt) echo "$D/big.ckpt" ;;
  esac
}

# expect_no_crash DESC ARGS... : exit 0, or exit 1 with one "attn: " line;
# never a signal or a timeout.
expect_no_crash() {
  desc=$1
  shift
  $LIMIT "$ATTN" "$@" >"$S/stdout" 2>"$S/stderr"
  rc=$?
  first=$(head -n 1 "$S/stderr")
  if [ "$rc" -ge 124 ]; then
    failed "$desc: exit $rc (crash or timeout) $first"
  elif [ "$rc" -eq 0 ] || { [ "$rc" -eq 1 ] &&
    [ "$(grep -c '' "$S/stderr")" -eq 1 ] &&
    case $first in "attn: "?*) true ;; *) false ;; esac; }; then
    pass "$desc [exit $rc${first:+: $first}]"
  else
    failed "$desc: exit $rc, stderr '$first'"
  fi
}

ROUNDS=${SPECIAL_ROUNDS:-8}
for kind in $KINDS; do
  big=$(big_of "$kind")
  [ -n "$big" ] || continue
  work="$S/sp/work"
  rm -f "$S/sp/cur"
  ln -s "$work" "$S/sp/cur"
  # shrinking: another process truncates it again and again while read
  cp "$big" "$work"
  (while :; do
    cat "$big" >"$work" 2>/dev/null # emptied, refilled, kept a moment
    sleep 0.02 2>/dev/null || :
    : >"$work"
  done) &
  churn=$!
  r=0
  while [ "$r" -lt "$ROUNDS" ]; do
    # shellcheck disable=SC2046
    expect_no_crash "$kind: truncated while read, round $r" $(args_for "$kind")
    r=$((r + 1))
  done
  kill "$churn" 2>/dev/null
  wait "$churn" 2>/dev/null
  # growing: appended to while read (up to 256 MiB)
  head -c 4096 "$big" >"$work"
  (i=0
  while [ "$i" -lt 64 ]; do
    head -c 4194304 "$big" >>"$work" 2>/dev/null
    i=$((i + 1))
  done) &
  grower=$!
  # shellcheck disable=SC2046
  expect_no_crash "$kind: growing while read" $(args_for "$kind")
  kill "$grower" 2>/dev/null
  wait "$grower" 2>/dev/null
  rm -f "$work"
done

chmod 600 "$S/sp/unreadable" 2>/dev/null
echo "special_files: $nskip skipped"
echo "$npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
