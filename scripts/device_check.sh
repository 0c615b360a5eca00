#!/bin/bash
# device_check.sh - one unattended pass on another machine (a lent device
# host, a CPU with ISAs this one lacks): which CPU, a Release build with
# -Werror (the layer off: such hosts may lack OpenBLAS), the kernel suites
# (each runs every ISA the CPU has), then the 2-thread figures of issues 7
# and 14 (bf16 against f32 and PyTorch, forward and backward; decode).
# Writes everything to $OUT/log.txt (default: ./device-check) as it goes,
# so a run cut short still says how far it got. Needs cmake, a C compiler,
# python3 with numpy and torch for the figures. bench/RESULTS.md, "Session
# of 2026-12-04, second", is its first run (an Intel Xeon with AMX).
#
#   bash scripts/device_check.sh            # about 4 minutes on 16 cores
#   FIGURES=0 bash scripts/device_check.sh  # build and suites only
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-device-check}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
T0=$(date +%s)
el() { echo "=== [t=$(($(date +%s) - T0))s] $*"; }
el cpu
lscpu | grep -v -i vulnerab
grep -m1 flags /proc/cpuinfo | tr ' ' '\n' | grep -E 'avx512|amx|avx2|fma|f16c' |
  sort -u | tr '\n' ' '
echo
command -v gcc clang cmake python3
gcc --version | head -1
python3 -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__)"
B=${BUILD:-/tmp/attn-device-check}
el build
if ! cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release -DATTN_BUILD_LAYER=OFF \
  >"$OUT/configure.log" 2>&1; then
  tail -n 20 "$OUT/configure.log"
  exit 1
fi
if ! timeout 300 cmake --build "$B" -j"$(nproc)" >"$OUT/build.log" 2>&1; then
  grep -m5 -B2 -A8 -E "error|Error" "$OUT/build.log"
  exit 1
fi
grep "warning:" "$OUT/build.log" | sort -u | head -20
"$B/tools/attn" peak --threads 2
"$B/tools/attn" peak --threads 1
el tests
K='^(forward|status|determinism|backward|mask_compiled|noalloc|spare|pool|abi|numerics|overlap|positions|t5|decode|cache|sinks|dropout|bf16|simd|merge|quant|linear|sparse|sparse_split|faults|hammer)$'
ATTN_NUM_THREADS=2 timeout 300 ctest --test-dir "$B" -j"$(($(nproc) / 2 > 0 ? $(nproc) / 2 : 1))" \
  -R "$K" --timeout 280 --output-on-failure >"$OUT/ctest.txt" 2>&1
echo "ctest rc=$?"
grep -E "tests passed|Failed|\*\*\*|Timeout" "$OUT/ctest.txt" | head -40
if [ "${FIGURES:-1}" = 0 ]; then
  el finished
  exit 0
fi
export PYTHONUNBUFFERED=1
el bf16-forward
timeout 120 python3 bench/bf16_vs_torch.py --build "$B" --threads 2 --rounds 5 \
  --shape 1,8,4096,64 --shape 1,8,4096,64,causal --shape 1,8,4096,128
el bf16-backward
timeout 120 python3 bench/bf16_vs_torch.py --build "$B" --threads 2 --rounds 3 \
  --backward --shape 1,8,4096,64 --shape 1,8,4096,64,causal
el decode
timeout 150 python3 bench/decode.py --build "$B" --threads 2 --reps 10
el finished
