#!/bin/sh
# test_plot.sh - `attn plot --csv FILE --out FILE.png` (issue 14's figures):
# a chart of every record kind is a PNG of the expected size (two panels
# a row, 540 x 340 each, title and legend rows); bad input (a missing
# field, a point of an undeclared panel, x <= 0, NaN, a NUL byte, too many
# series, an unknown record, a special file, no panel) is exit 1 with one
# "attn: " line naming the line; missing flags are exit 2.
#
#   test_plot.sh ATTN SCRATCH_DIR
#
# The last line is "N passed, N failed".

ATTN=$1
S=$2
if [ -z "$ATTN" ] || [ -z "$S" ] || [ ! -x "$ATTN" ]; then
  echo "usage: test_plot.sh ATTN SCRATCH_DIR" >&2
  exit 2
fi
. "$(dirname "$0")/lib.sh" # tally, LIMIT, expect_*
S=$(scratch_dir test_plot.sh "$S") || exit 2

cat >"$S/ok.csv" <<'CSV'
# a comment, then every record kind
x,seq
panel,forward,GFLOP/s,200
panel,decode,GB/s,30,cache length
hline,forward,bf16 peak,400
point,forward,libattn f32,128,100
point,forward,libattn f32,4096,180
point,forward,torch f32,4096,150
point,forward,libattn f32,1024,170
point,decode,f32,32768,17.5
CSV
if expect_ok "plot of every record kind" plot --csv "$S/ok.csv" \
  --out "$S/ok.png" --title "a title"; then
  # PNG signature, then IHDR's width and height (big-endian at bytes 16-23)
  sig=$(od -An -tx1 -N8 "$S/ok.png" | tr -d ' \n')
  wh=$(od -An -tu1 -j16 -N8 "$S/ok.png" | tr -s ' ' | sed 's/^ //')
  if [ "$sig" = "89504e470d0a1a0a" ]; then pass "PNG signature"; else
    failed "PNG signature $sig"; fi
  # width 2 x 540 = 1080 (0 0 4 56), height 30 + 340 + legend 30 = 400
  if [ "$wh" = "0 0 4 56 0 0 1 144" ]; then pass "PNG 1080 x 400"; else
    failed "PNG size bytes $wh"; fi
  if grep -q "2 panels, 3 series, 5 points" "$S/stdout"; then
    pass "summary line"; else failed "summary: $(cat "$S/stdout")"; fi
fi

bad() { # bad DESCRIPTION LINE-TEXT WANT
  printf 'panel,p,y,1\n%s\n' "$2" >"$S/bad.csv"
  expect_fail 1 "$1" plot --csv "$S/bad.csv" --out "$S/bad.png"
  expect_msg "$1" "$3"
}
bad "missing field" "point,p,s,1" "line 2: expected"
bad "undeclared panel" "point,q,s,1,1" "not declared"
bad "x zero" "point,p,s,0,1" "x must be"
bad "y NaN" "point,p,s,1,nan" "x must be"
bad "y negative" "point,p,s,1,-1" "x must be"
bad "unknown record" "line,p,s,1,1" "line 2: expected"
bad "too long a name" "point,p,$(printf '%070d' 0),1,1" "too long"
bad "hline of no panel" "hline,q,peak,1" "hline"
printf 'panel,p,y,1\npoint,p,s\0,1,1\n' >"$S/nul.csv"
expect_fail 1 "NUL byte" plot --csv "$S/nul.csv" --out "$S/bad.png"
expect_msg "NUL byte" "NUL"
{
  echo "panel,p,y,1"
  for i in 1 2 3 4 5 6 7 8 9; do echo "point,p,s$i,1,1"; done
} >"$S/many.csv"
expect_fail 1 "nine series" plot --csv "$S/many.csv" --out "$S/bad.png"
expect_msg "nine series" "more than 8 series"
printf '# nothing\n' >"$S/empty.csv"
expect_fail 1 "no panel" plot --csv "$S/empty.csv" --out "$S/bad.png"
expect_fail 1 "special file" plot --csv /dev/zero --out "$S/bad.png"
expect_fail 1 "missing file" plot --csv "$S/nope.csv" --out "$S/bad.png"
expect_fail 1 "unwritable output" plot --csv "$S/ok.csv" --out "$S/no/dir.png"
expect_fail 2 "no --out" plot --csv "$S/ok.csv"
expect_fail 2 "unknown flag" plot --csv "$S/ok.csv" --out "$S/x.png" --bogus

echo "$npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
