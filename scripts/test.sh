#!/usr/bin/env bash
# The tests on a fresh machine: install the build tools, build libattn
# (Release, -Werror), and run every test with ctest, one per core (the
# tests are independent: each has its own scratch files).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)"
