#!/usr/bin/env python3
"""attn.torch.scaled_dot_product_attention against PyTorch's own
torch.nn.functional.scaled_dot_product_attention, forward and
forward+backward, on the shapes of bench/RESULTS.md (b1 h8 d64, s 2048 and
4096, causal and not), f32, same threads (torch.set_num_threads(T) and
ATTN_NUM_THREADS=T), alternating the two in each round; medians.

    PYTHONPATH=python ATTN_LIBRARY=BUILD/libattn.so.0 \
        python3 bench/py_sdpa.py [--threads 2] [--rounds 5] [--seqs 2048 4096]
        [--no-backward] [--check]

--check compares the two outputs first (max |diff|).
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "python"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seqs", type=int, nargs="+", default=[2048, 4096])
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--no-backward", action="store_true")
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    os.environ["ATTN_NUM_THREADS"] = str(a.threads)  # before attn loads
    import torch
    import attn
    import attn.torch as at
    torch.set_num_threads(a.threads)
    F = torch.nn.functional
    print("torch %s, libattn %s, %d threads, medians of %d rounds (ms)" %
          (torch.__version__, attn.library_version(), a.threads, a.rounds))
    print("%-6s %-7s %-8s %10s %10s %8s" % ("seq", "causal", "pass",
                                            "torch", "libattn", "ratio"))
    for s in a.seqs:
        for causal in (False, True):
            g = torch.Generator().manual_seed(0)
            q, k, v = (torch.randn(1, a.heads, s, a.dim, generator=g)
                       for _ in range(3))
            do = torch.randn(1, a.heads, s, a.dim, generator=g)
            impls = {"torch": F.scaled_dot_product_attention,
                     "libattn": at.scaled_dot_product_attention}
            if a.check:
                with torch.no_grad():
                    d = (impls["torch"](q, k, v, is_causal=causal) -
                         impls["libattn"](q, k, v, is_causal=causal))
                print("  check s=%d causal=%s max|diff| %.2e" %
                      (s, causal, d.abs().max().item()))
            passes = ["fwd"] + ([] if a.no_backward else ["fwd+bwd"])
            for p in passes:
                times = {n: [] for n in impls}
                for r in range(a.rounds + 1):  # round 0 warms up
                    for n, fn in impls.items():
                        if p == "fwd":
                            with torch.no_grad():
                                t = time.perf_counter()
                                fn(q, k, v, is_causal=causal)
                                dt = time.perf_counter() - t
                        else:
                            qq, kk, vv = (x.detach().requires_grad_(True)
                                          for x in (q, k, v))
                            t = time.perf_counter()
                            o = fn(qq, kk, vv, is_causal=causal)
                            o.backward(do)
                            dt = time.perf_counter() - t
                        if r:
                            times[n].append(dt)
                mt = statistics.median(times["torch"]) * 1e3
                ma = statistics.median(times["libattn"]) * 1e3
                print("%-6d %-7s %-8s %10.1f %10.1f %7.2fx" %
                      (s, causal, p, mt, ma, mt / ma))


if __name__ == "__main__":
    main()
