#!/usr/bin/env bash
# Python dependencies of bench/compare.py (numpy, torch) from PyPI.
# Not needed to build or test the library. Note: torch from PyPI is the large
# default wheel (CUDA libraries included); the benchmark only uses its CPU path.
#
#   scripts/setup-bench.sh            # into the current python3 environment
#   PIP="python3 -m pip" scripts/setup-bench.sh
set -euo pipefail

cd "$(dirname "$0")/.."
PIP=${PIP:-"python3 -m pip"}

if python3 -c 'import numpy, torch' >/dev/null 2>&1; then
  echo "setup-bench: numpy and torch already importable:"
  python3 -c 'import numpy, torch; print("  numpy", numpy.__version__, "torch", torch.__version__)'
  exit 0
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1
$PIP install --no-input -r bench/requirements.txt
python3 -c 'import numpy, torch; print("setup-bench: numpy", numpy.__version__, "torch", torch.__version__)'
