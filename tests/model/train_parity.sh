#!/bin/sh
# train_parity.sh ATTN MODEL REF.py - the ctest of issue 12's parity: a
# 30-step run of `attn train MODEL --parity`, replayed by the PyTorch
# reference REF.py from the same initial weights and batches; every loss
# must match within 1e-4 relative (docs/decisions.md, "Issue 12").
# Exit 77 (skipped) when python3, torch or (vit) scikit-learn is missing.
attn=$1 model=$2 ref=$3
py=${ATTN_PYTHON:-python3}
command -v "$py" >/dev/null 2>&1 || { echo "$py not found: skipped"; exit 77; }
"$py" -c "import torch, numpy" 2>/dev/null ||
  { echo "torch is not installed: parity check skipped"; exit 77; }
if [ "$model" = vit ]; then
  "$py" -c "import sklearn" 2>/dev/null ||
    { echo "scikit-learn is not installed: vit parity skipped"; exit 77; }
fi
d=$(mktemp -d) || exit 1
trap 'rm -rf "$d"' EXIT
# 30 steps of 16 examples on one thread keep it short on a loaded machine
# (the 50-step runs of docs/decisions.md are the same commands with
# --steps 50 --batch 64)
"$attn" train "$model" --steps 30 --batch 16 --threads 1 --eval 16 \
  --out "$d/out" --parity "$d" --quiet || exit 1
OPENBLAS_NUM_THREADS=1 "$py" "$ref" "$d" --threads 1 --tol 1e-4
