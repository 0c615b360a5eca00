#!/usr/bin/env bash
# The main job on a fresh machine: install the build tools, build libattn
# (Release), and run `attn bench` on its default shape (batch 1, 8 heads,
# seq 4096, head_dim 64, f32, all cores), which prints its correctness check
# against a double-precision reference beside the speed and share of the
# measured FMA peak. Extra arguments go to `attn bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
exec build/tools/attn bench "$@"
