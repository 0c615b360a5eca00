#!/usr/bin/env python3
"""Training throughput of `attn train` against its PyTorch reference
(tests/model/ref_encdec.py, ref_vit.py), on the same batches and threads.

Each round runs `attn train MODEL --steps N --threads T --parity DIR` (its
summary.json gives examples/s over the training steps, evaluation and file
writing excluded), then the reference replaying DIR with --bench (the same
model, initial weights, batches, optimiser, on torch.set_num_threads(T)).
Rounds alternate the two; the medians are printed. OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE are removed from the environment of both.

    python3 bench/train_speed.py --build build --model encdec --threads 2
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
ref_dir = os.path.join(here, "..", "tests", "model")

ap = argparse.ArgumentParser()
ap.add_argument("--build", default="build", help="the CMake build directory")
ap.add_argument("--model", default="encdec", choices=["encdec", "vit"])
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--steps", type=int, default=200)
ap.add_argument("--rounds", type=int, default=3)
a = ap.parse_args()

env = dict(os.environ)
env.pop("OPENBLAS_CORETYPE", None)
env.pop("OPENBLAS_L2_SIZE", None)
env["OPENBLAS_NUM_THREADS"] = str(a.threads)
attn = os.path.join(a.build, "tools", "attn")
c_rates, t_rates = [], []
with tempfile.TemporaryDirectory() as d:
    for r in range(a.rounds):
        subprocess.run([attn, "train", a.model, "--steps", str(a.steps),
                        "--threads", str(a.threads), "--out", d + "/out",
                        "--parity", d, "--quiet", "--eval", "64"],
                       check=True, env=env, stdout=subprocess.DEVNULL)
        with open(d + "/out/summary.json") as f:
            c_rates.append(json.load(f)["examples_per_second"])
        out = subprocess.run([sys.executable,
                              os.path.join(ref_dir, f"ref_{a.model}.py"), d,
                              "--bench", "--threads", str(a.threads)],
                             check=True, env=env, capture_output=True,
                             text=True).stdout
        t_rates.append(float(re.search(r"([0-9.]+) examples/s", out).group(1)))
        print(f"round {r + 1}: libattn {c_rates[-1]:.0f}, torch "
              f"{t_rates[-1]:.0f} examples/s")
c, t = statistics.median(c_rates), statistics.median(t_rates)
print(f"{a.model}, {a.threads} threads, {a.steps} steps: libattn {c:.0f} "
      f"examples/s, PyTorch {t:.0f} examples/s, ratio {c / t:.2f}")
