#!/usr/bin/env python3
"""Python call overhead of the attn package over the bare C call.

For small shapes (where the call cost matters), one thread:
  C        attn_forward_sized in a loop inside the extension (no Python
           between calls): the baseline;
  np out=  attn.forward(q, k, v, out=o) on numpy arrays;
  np       attn.forward(q, k, v) (allocates o with numpy);
  torch out= / torch   the same on torch CPU tensors;
  sdpa     attn.torch.scaled_dot_product_attention under no_grad ([b,h,s,d]);
           only with ATTN_NUM_THREADS=1 (it runs on the library's threads).
Rounds alternate between the variants; the medians are printed with the
overhead (variant - C) in microseconds. Target (issue 10): under 10 us.

    PYTHONPATH=python ATTN_LIBRARY=BUILD/libattn.so.0 \
        python3 bench/py_overhead.py [--rounds 15] [--calls 2000] [--cpu]
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "python"))

import numpy as np  # noqa: E402

import attn  # noqa: E402

SHAPES = [  # (batch, seq_q, seq_k, heads, dim)
    (1, 1, 16, 1, 64),
    (1, 16, 16, 4, 64),
    (1, 1, 128, 8, 64),
]


CLOCK = time.perf_counter


def per_call(fn, calls):
    t = CLOCK()
    for _ in range(calls):
        fn()
    return (CLOCK() - t) / calls


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--cpu", action="store_true",
                    help="time this thread's CPU time (time.thread_time and "
                    "CLOCK_THREAD_CPUTIME_ID) instead of wall time: robust "
                    "on a loaded machine, all variants run on one thread")
    a = ap.parse_args()
    global CLOCK
    if a.cpu:
        CLOCK = time.thread_time
    try:
        import torch
        import attn.torch as at
        torch.set_num_threads(1)
    except ImportError:
        torch = None
    print("attn %s, libattn %s (%s); 1 thread; medians of %d rounds x %d "
          "calls" % (attn.__version__, attn.library_version(),
                     attn.library_path, a.rounds, a.calls))
    print("%-20s %8s %8s %8s %8s %8s %8s   %s" %
          ("b sq sk h d", "C us", "np out=", "np", "th out=", "torch",
           "sdpa", "max overhead us"))
    worst = 0.0
    for b, sq, sk, h, d in SHAPES:
        rng = np.random.default_rng(0)
        q = rng.standard_normal((b, sq, h, d), dtype=np.float32)
        k = rng.standard_normal((b, sk, h, d), dtype=np.float32)
        v = rng.standard_normal((b, sk, h, d), dtype=np.float32)
        o = np.empty_like(q)
        variants = {
            "np out=": lambda: attn.forward(q, k, v, out=o, threads=1),
            "np": lambda: attn.forward(q, k, v, threads=1),
        }
        if torch is not None:
            tq, tk, tv, to = (torch.from_numpy(x) for x in (q, k, v, o))
            bq, bk, bv = (x.transpose(1, 2) for x in (tq, tk, tv))
            variants["th out="] = lambda: attn.forward(tq, tk, tv, out=to,
                                                       threads=1)
            variants["torch"] = lambda: attn.forward(tq, tk, tv, threads=1)

            def sdpa():
                with torch.no_grad():
                    at.scaled_dot_product_attention(bq, bk, bv)
            if os.environ.get("ATTN_NUM_THREADS") == "1":
                variants["sdpa"] = sdpa  # it uses the library's threads
        res = {n: [] for n in ["C"] + list(variants)}
        for fn in variants.values():
            per_call(fn, 200)  # warm up
        for _ in range(a.rounds):
            res["C"].append(attn._api._time_c(0, a.calls, q, k, v, o,
                                              threads=1, cpu=a.cpu))
            for n, fn in variants.items():
                res[n].append(per_call(fn, a.calls))
        med = {n: statistics.median(x) * 1e6 for n, x in res.items()}
        over = max(med[n] - med["C"] for n in variants if n != "sdpa")
        worst = max(worst, over)
        print("%-20s %8.2f %8.2f %8.2f %8s %8s %8s   %.2f" % (
            "%d %d %d %d %d" % (b, sq, sk, h, d), med["C"], med["np out="],
            med["np"], "%.2f" % med["th out="] if "th out=" in med else "-",
            "%.2f" % med["torch"] if "torch" in med else "-",
            "%.2f" % med["sdpa"] if "sdpa" in med else "-", over))
    print("largest overhead of attn.forward over the C call: %.2f us "
          "(target < 10 us)" % worst)


if __name__ == "__main__":
    main()
