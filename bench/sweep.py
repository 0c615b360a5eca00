#!/usr/bin/env python3
"""The figures of bench/RESULTS.md (issue 14): GFLOP/s and share of the peak
against sequence length, and decoding's bandwidth against cache length.

Speed (batch 1, 8 heads, head_dim 64; forward and backward, full and
causal; seq 128 ... --max-seq in powers of two): libattn f32, libattn bf16
(the widest ISA: bf16 dot products where the CPU has AVX512-BF16), PyTorch's
SDPA in f32 and bf16, and a naive numpy f32 implementation that materialises
the seq x seq scores (forward and backward, up to --naive-max-seq). Same
threads for everyone, alternating bursts, medians (versus.median_times);
fewer rounds for long sequences (--rounds up to 2K, 3 up to 16K; above
--once-above, 16K by default, one timed call each, no warm-up).
FLOPs: 4·s²·d per head forward, 2.5× backward, halved for causal.

Decode (`attn decode`: 1 query, 32 query heads, 8 KV heads, head_dim 128):
GB/s moved against cache length 4K ... 64K, f32 and bf16 caches, with the
read bandwidth measured by the same runs.

Writes bench/out/sweep.csv and draws bench/figures/speed.png and
bench/figures/decode.png with `attn plot` (plot.h's format).

    python3 bench/sweep.py --threads 2 --max-seq 65536
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from compare import machine_info, prepare_env  # noqa: E402
from versus import median_times  # noqa: E402


def naive(np, q, k, v, causal, backward):
    """numpy f32, one head at a time, the s x s scores materialised."""
    b, h, s, d = q.shape
    scale = np.float32(1.0 / np.sqrt(d))
    neg = np.triu(np.full((s, s), -np.inf, np.float32), 1) if causal else None
    do = np.ones_like(q)

    def run():
        for hi in range(h):
            sc = (q[0, hi] @ k[0, hi].T) * scale
            if neg is not None:
                sc += neg
            sc -= sc.max(1, keepdims=True)
            p = np.exp(sc)
            p /= p.sum(1, keepdims=True)
            if not backward:
                p @ v[0, hi]
                continue
            dv = p.T @ do[0, hi]
            dp = do[0, hi] @ v[0, hi].T
            ds = p * (dp - (dp * p).sum(1, keepdims=True))
            dq, dk = (ds @ k[0, hi]) * scale, (ds.T @ q[0, hi]) * scale
            del dv, dq, dk

    return run


def once_times(fns):
    """One timed call each, no warm-up: above --once-above a call takes
    seconds to minutes, against microseconds of pool start-up."""
    t = {}
    for name, fn in fns.items():
        time.sleep(0.5)
        t0 = time.perf_counter()
        fn()
        t[name] = time.perf_counter() - t0
    return t


def speed(args, lib, la, np, torch, rows):
    from bf16_vs_torch import make_libattn, make_torch
    s = 128
    while s <= args.max_seq:
        rounds = args.rounds if s <= 2048 else 3 if s <= 16384 else 1
        for bw in (False, True):
            for causal in (False, True):
                g = torch.Generator().manual_seed(0)
                f32 = [torch.randn(1, 8, s, 64, generator=g) for _ in range(3)]
                b16 = [x.to(torch.bfloat16) for x in f32]
                fns = {
                    "libattn f32": make_libattn(la, lib, torch, f32, causal,
                                                args.threads, backward=bw),
                    "libattn bf16": make_libattn(la, lib, torch, b16, causal,
                                                 args.threads, backward=bw),
                    "torch f32": make_torch(torch, f32, causal, bw),
                    "torch bf16": make_torch(torch, b16, causal, bw),
                }
                if s <= args.naive_max_seq:
                    fns["naive f32"] = naive(np, *(x.numpy() for x in f32),
                                             causal, bw)
                t = median_times(fns, rounds) if s <= args.once_above \
                    else once_times(fns)
                flops = 4.0 * 8 * s * s * 64 * (0.5 if causal else 1.0)
                flops *= 2.5 if bw else 1.0
                panel = ("backward" if bw else "forward") + (
                    " causal" if causal else "")
                for name, sec in t.items():
                    rows.append(("point", panel, name, s, flops / sec / 1e9))
                print(panel, s, {n: round(flops / x / 1e9, 1)
                                 for n, x in t.items()}, flush=True)
        s *= 2


def decode(args, rows):
    attn = os.path.join(args.build, "tools", "attn")
    bws = []
    n = 4096
    while n <= 65536:
        for dt in ("f32", "bf16"):
            out = subprocess.run([attn, "decode", "--dtype", dt, "--threads",
                                  str(args.threads), "--cache-len", str(n),
                                  "--json"], capture_output=True, text=True,
                                 check=True).stdout
            j = json.loads(out.strip().splitlines()[-1])
            gbs = j.get("gbps", j.get("gb_per_s"))
            bws.append(j.get("read_gbps", j.get("bandwidth_gbps", 0.0)))
            rows.append(("point", "decode", "libattn " + dt, n, gbs))
            print("decode", dt, n, gbs, flush=True)
        n *= 2
    return max(bws) if bws else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--max-seq", type=int, default=65536)
    ap.add_argument("--naive-max-seq", type=int, default=8192)
    ap.add_argument("--once-above", type=int, default=16384,
                    help="longer sequences: one timed call per "
                    "implementation, no warm-up")
    ap.add_argument("--no-decode", action="store_true")
    ap.add_argument("--out", default=os.path.join(HERE, "out", "sweep.csv"))
    ap.add_argument("--figures", default=os.path.join(HERE, "figures"))
    args = ap.parse_args()
    notes = prepare_env(args.threads)
    import numpy as np
    import torch
    import libattn_ctypes as la
    from bf16_vs_torch import bf16_peak

    torch.set_num_threads(args.threads)
    lib = la.LibAttn(la.find_library(args.build))
    time.sleep(1.0)
    p32, p16 = lib.fma_peak_gflops(args.threads, 1.0), bf16_peak(lib, args.threads)
    rows = []
    speed(args, lib, la, np, torch, rows)
    p32 = max(p32, lib.fma_peak_gflops(args.threads, 1.0))
    p16 = max(p16, bf16_peak(lib, args.threads))
    head = ["# " + machine_info() + ", ISA " + lib.isa_best() + ", threads %d"
            % args.threads] + ["# " + n for n in notes]
    panels = []
    for name in ("forward", "forward causal", "backward", "backward causal"):
        panels.append(("panel", name, "GFLOP/s", "%.1f" % p32))
        if p16:
            panels.append(("hline", name, "bf16 peak", "%.1f" % p16))
    rd = 0.0 if args.no_decode else decode(args, rows)
    if rd:  # percent of the largest read bandwidth the runs measured
        panels.append(("panel", "decode", "GB/s", "%.2f" % rd, "cache length"))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        fh.write("\n".join(head) + "\n")
        for r in panels + rows:
            fh.write(",".join(str(x) if not isinstance(x, float) else "%.3f" % x
                              for x in r) + "\n")
    os.makedirs(args.figures, exist_ok=True)
    bf16 = (", bf16 peak %.0f GFLOP/s" % p16 if p16 else
            " GFLOP/s, no bf16 dot products (bf16 widened)")
    title = "libattn vs PyTorch %s: %s, ISA %s, %d threads; f32 FMA peak " \
            "%.0f%s; b1 h8 d64" % (
                torch.__version__.split("+")[0], machine_info(),
                lib.isa_best(), args.threads, p32, bf16)
    speed_csv = args.out + ".speed"
    with open(speed_csv, "w") as fh:
        for r in panels + rows:
            if r[1] != "decode":
                fh.write(",".join(str(x) if not isinstance(x, float)
                                  else "%.3f" % x for x in r) + "\n")
    attn = os.path.join(args.build, "tools", "attn")
    subprocess.run([attn, "plot", "--csv", speed_csv, "--out",
                    os.path.join(args.figures, "speed.png"), "--title", title],
                   check=True)
    if rd:
        dec_csv = args.out + ".decode"
        with open(dec_csv, "w") as fh:
            fh.write("x,cache length\n")
            for r in panels + rows:
                if r[1] == "decode":
                    fh.write(",".join(str(x) if not isinstance(x, float)
                                      else "%.3f" % x for x in r) + "\n")
        subprocess.run([attn, "plot", "--csv", dec_csv, "--out",
                        os.path.join(args.figures, "decode.png"), "--title",
                        "attn decode: 1 query, 32 q heads, 8 kv heads, d 128; "
                        "%s, ISA %s, %d threads; read bandwidth %.1f GB/s" % (
                            machine_info(), lib.isa_best(), args.threads, rd)],
                       check=True)


if __name__ == "__main__":
    main()
