#!/usr/bin/env python3
"""Why short calls from Python are bimodal on a small VM: bursts of one
libattn call shape after an idle pause (as versus.median_times runs them),
with the library's pool workers left to the scheduler or pinned.

Each round sleeps --pause seconds, makes one untimed call, then times
--calls back-to-back calls one by one and prints their mean, median and
90th percentile and the first ten. With --pin, once the first call has
started the pool's workers, each worker thread is pinned to one CPU of the
process's set, the last ones first (the caller keeps the scheduler's
choice; --pin-caller pins it to the first CPU too). PyTorch's SDPA on the
same shape runs between the bursts when --torch is given (as in
bench/frontier.py's rotation).

    python3 bench/burst_pin.py --heads 1 --seq 128
    python3 bench/burst_pin.py --heads 1 --seq 128 --pin
"""

import argparse
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from compare import prepare_env  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(os.path.dirname(HERE), "build"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--heads", type=int, default=1)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--calls", type=int, default=190)
    ap.add_argument("--pause", type=float, default=0.2)
    ap.add_argument("--pin", action="store_true")
    ap.add_argument("--pin-caller", action="store_true")
    ap.add_argument("--torch", action="store_true")
    args = ap.parse_args()
    prepare_env(args.threads)
    import torch
    import libattn_ctypes as la
    from bf16_vs_torch import make_libattn, make_torch

    torch.set_num_threads(args.threads)
    lib = la.LibAttn(la.find_library(args.build))
    g = torch.Generator().manual_seed(0)
    x = [torch.randn(1, args.heads, args.seq, args.dim, generator=g)
         for _ in range(3)]
    fn = make_libattn(la, lib, torch, x, False, args.threads)
    other = make_torch(torch, x, False, False, False) if args.torch else None
    before = set(os.listdir("/proc/self/task"))
    fn()  # starts the pool's workers
    workers = sorted(int(t) for t in set(os.listdir("/proc/self/task")) - before)
    cpus = sorted(os.sched_getaffinity(0))
    if args.pin:
        for i, tid in enumerate(workers):
            os.sched_setaffinity(tid, {cpus[-1 - i % len(cpus)]})
        if args.pin_caller:
            os.sched_setaffinity(threading.get_native_id(), {cpus[0]})
    print("libattn %s, heads %d, seq %d, dim %d, %d threads; workers %s%s" % (
        lib.version(), args.heads, args.seq, args.dim, args.threads, workers,
        " pinned" if args.pin else " unpinned"))
    for _ in range(args.rounds):
        if other:
            time.sleep(args.pause)
            for _ in range(args.calls):
                other()
        time.sleep(args.pause)
        fn()
        ts = []
        for _ in range(args.calls):
            t0 = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t0) * 1e3)
        s = sorted(ts)
        print("ms: mean %.3f median %.3f p90 %.3f | first ten %s" % (
            sum(ts) / len(ts), s[len(s) // 2], s[int(0.9 * len(s))],
            " ".join("%.2f" % t for t in ts[:10])), flush=True)


if __name__ == "__main__":
    main()
