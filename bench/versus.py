#!/usr/bin/env python3
"""Two builds of libattn and PyTorch's SDPA, forward and backward, in one run.

For a change to the core ("no regression beyond noise against the numbers
before this change, measured in the same run"): the library of a baseline
build (--base, e.g. a build of the previous commit) and of the current build
(--build) run side by side with torch.nn.functional.scaled_dot_product_attention
on the same threads, alternating burst by burst (see median_times), medians
of --rounds rounds after one warm-up call each. FLOPs: 4*sq*sk*d per head
forward (2.5x that backward), halved for causal; the FMA peak is measured
in the same run (attn_fma_peak_gflops of the current build).

Both builds are called through ctypes. A build that exports the sized entry
points (0.2 and later) gets this release's struct and its size; an older
one gets the 0.1 prefix of the struct through the unsuffixed symbols.

    python3 bench/versus.py --base /tmp/old/b --build build --threads 2 \
        --markdown bench/out/versus.md
"""

import argparse
import ctypes
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from compare import machine_info, prepare_env  # noqa: E402

SHAPES = [  # (batch, heads, seq, head_dim, causal)
    (1, 8, 128, 64, False),
    (1, 8, 128, 64, True),
    (1, 8, 512, 64, False),
    (1, 8, 512, 64, True),
    (1, 8, 4096, 64, False),
    (1, 8, 4096, 64, True),
    (1, 8, 4096, 128, False),
    (1, 8, 4096, 128, True),
]


def load(la, build):
    """A LibAttn on build's library (libattn_ctypes handles 0.1 builds)."""
    return la.LibAttn(la.find_library(build))


def make_libattn(la, lib, np, prob, threads, backward):
    q, k, v, o, lse, do, dq, dk, dv = prob
    tr = lambda a: a.transpose(0, 2, 1, 3)  # noqa: E731  bhsd -> logical bshd
    causal = la.ATTN_CAUSAL_TOP_LEFT if prob.causal else la.ATTN_CAUSAL_NONE
    p = lib.make_params(tr(q), tr(k), tr(v), tr(o), causal=causal,
                        num_threads=threads)
    p.lse = lse.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
    if not backward:
        return lambda: lib.forward(p)
    lib.forward(p)
    t = la.LibAttn.tensor_f32
    p.dout, p.dq, p.dk, p.dv = t(tr(do)), t(tr(dq)), t(tr(dk)), t(tr(dv))
    return lambda: lib.backward(p)


class Problem(tuple):
    causal = False


def make_problem(np, shape, seed=0):
    b, h, s, d, causal = shape
    rng = np.random.default_rng(seed)
    a = lambda: rng.standard_normal((b, h, s, d), dtype=np.float32)  # noqa: E731
    z = lambda: np.zeros((b, h, s, d), dtype=np.float32)  # noqa: E731
    prob = Problem((a(), a(), a(), z(), np.zeros((b, h, s), np.float32), a(),
                    z(), z(), z()))
    prob.causal = causal
    return prob


def make_torch(torch, prob, backward):
    import torch.nn.functional as F
    q, k, v = (torch.from_numpy(x) for x in prob[:3])
    do = torch.from_numpy(prob[5])
    if not backward:
        return lambda: F.scaled_dot_product_attention(q, k, v,
                                                      is_causal=prob.causal)
    qq, kk, vv = (x.clone().requires_grad_(True) for x in (q, k, v))

    def run():
        out = F.scaled_dot_product_attention(qq, kk, vv, is_causal=prob.causal)
        return torch.autograd.grad(out, (qq, kk, vv), do)

    return run


def median_times(fns, rounds, pause=0.2):
    """Median seconds per call of each function. A sample is a burst of
    back-to-back calls of one implementation (at least ~30 ms, so a layer
    stack's steady state, with its threads warm, is what is timed); the
    implementations alternate burst by burst in a rotating order, with an
    untimed pause (seconds) before each burst so that one implementation's
    spinning idle workers do not take a core from the next: OpenBLAS's
    (numpy, the naive contender) spin for about 0.1 s after a call and
    PyTorch's OpenMP workers for milliseconds. With 20 ms (the value until
    2026-12-03) and the naive contender in the rotation, libattn's h8 s512
    forward read 7.8-7.9 ms against 4.1-4.2 after 0.2 s, PyTorch's 6.5
    against 5.4 (docs/decisions.md). A burst of more than one call starts
    with one untimed call, which wakes that implementation's threads (and
    the core) from the pause: on the Zen 2 EPYC the first calls of a
    20-call burst of 0.3 ms forwards after 0.2 s idle averaged 0.49 ms a
    call, back-to-back 0.30 ms (as in C)."""
    names = list(fns)
    burst = {}
    for n in names:
        fns[n]()  # warm-up
        t0 = time.perf_counter()
        fns[n]()
        burst[n] = max(1, int(0.03 / max(time.perf_counter() - t0, 1e-6)))
    times = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            time.sleep(pause)
            if burst[n] > 1:
                fns[n]()  # untimed: wakes its threads after the pause
            t0 = time.perf_counter()
            for _ in range(burst[n]):
                fns[n]()
            times[n].append((time.perf_counter() - t0) / burst[n])
    return {n: statistics.median(times[n]) for n in names}


def side_by_side_args(ap, rounds=7, markdown="also write the table here"):
    """The options every side-by-side script shares: --build, --threads,
    --rounds, --max-seq, --markdown."""
    ap.add_argument("--build", default=os.path.join(os.path.dirname(HERE), "build"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=rounds)
    ap.add_argument("--max-seq", type=int, default=1 << 30)
    ap.add_argument("--markdown", help=markdown)


def shape_arg(ap):
    """--shape B,H,S,D[,causal] (repeatable): shapes_from_args reads it."""
    ap.add_argument("--shape", action="append", default=[],
                    metavar="B,H,S,D[,causal]",
                    help="time this shape instead of the default list "
                    "(repeatable), e.g. 1,8,512,80 or 1,8,512,112,causal")


def shapes_from_args(ap, args, default):
    """The (batch, heads, seq, head_dim, causal) shapes to time: those of
    --shape, else the default list cut at --max-seq."""
    if not args.shape:
        return [x for x in default if x[2] <= args.max_seq]
    shapes = []
    for text in args.shape:
        f = text.split(",")
        if len(f) not in (4, 5) or (len(f) == 5 and f[4] != "causal"):
            ap.error("--shape wants B,H,S,D or B,H,S,D,causal: %r" % text)
        try:
            b, h, s, d = (int(x) for x in f[:4])
        except ValueError:
            ap.error("--shape wants integers: %r" % text)
        if min(b, h, s, d) < 1:
            ap.error("--shape wants positive sizes: %r" % text)
        shapes.append((b, h, s, d, len(f) == 5))
    return shapes


def report(lines, markdown):
    """Prints the report's lines and writes them to markdown (a path, or
    None)."""
    text = "\n".join(lines) + "\n"
    print(text)
    if markdown:
        os.makedirs(os.path.dirname(os.path.abspath(markdown)), exist_ok=True)
        with open(markdown, "w") as fh:
            fh.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True, help="baseline build directory")
    ap.add_argument("--build", default=os.path.join(os.path.dirname(HERE), "build"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--max-seq", type=int, default=1 << 30,
                    help="only shapes with seq <= this")
    ap.add_argument("--fwd-only", action="store_true")
    ap.add_argument("--markdown", help="also write the table here")
    args = ap.parse_args()
    notes = prepare_env(args.threads)
    import numpy as np
    import torch
    import libattn_ctypes as la

    torch.set_num_threads(args.threads)
    new, base = load(la, args.build), load(la, args.base)
    time.sleep(1.0)  # let numpy's and torch's freshly started pools go idle
    peak0 = new.fma_peak_gflops(args.threads, 1.0)
    lines = ["# libattn %s vs %s vs PyTorch %s" % (new.version(), base.version(),
                                                  torch.__version__), ""]
    flags = open("/proc/cpuinfo").read()
    isa = "AVX-512" if " avx512f" in flags else "AVX2" if " avx2" in flags else "?"
    lines += ["- CPU: %s (%s), %d CPUs; libattn ISA %s" % (
        machine_info(), isa, os.cpu_count(), new.isa_best())]
    lines += ["- " + x for x in notes]
    head = len(lines)
    lines += ["",
              "| pass | shape | new ms | base ms | torch ms | new GFLOP/s | "
              "% peak | new/base time | torch/new time |",
              "|---|---|---|---|---|---|---|---|---|"]
    rows = []
    for backward in (False,) if args.fwd_only else (False, True):
        for shape in [x for x in SHAPES if x[2] <= args.max_seq]:
            prob = make_problem(np, shape)
            fns = {
                "new": make_libattn(la, new, np, prob, args.threads, backward),
                "base": make_libattn(la, base, np, prob, args.threads, backward),
                "torch": make_torch(torch, prob, backward),
            }
            rounds = args.rounds
            t = median_times(fns, rounds)
            b, h, s, d, causal = shape
            flops = 4.0 * b * h * s * s * d * (0.5 if causal else 1.0)
            flops *= 2.5 if backward else 1.0
            gf = flops / t["new"] / 1e9
            rows.append((gf, len(lines)))
            lines.append("| %s | b%d h%d s%d d%d%s | %.3f | %.3f | %.3f | %.1f | "
                         "%s | %.2f | %.2f |" % (
                             "bwd" if backward else "fwd", b, h, s, d,
                             " causal" if causal else "", t["new"] * 1e3,
                             t["base"] * 1e3, t["torch"] * 1e3, gf,
                             "{peak}", t["new"] / t["base"],
                             t["torch"] / t["new"]))
            print(lines[-1], flush=True)
    time.sleep(1.0)
    peak1 = new.fma_peak_gflops(args.threads, 1.0)
    peak = max(peak0, peak1)
    for gf, i in rows:
        lines[i] = lines[i].replace("{peak}", "%.0f%%" % (100 * gf / peak))
    lines.insert(head, "- threads: %d for everyone; FMA peak %.0f GFLOP/s "
                 "(measured in this run: %.0f at the start, %.0f at the end; "
                 "the larger is used)" % (args.threads, peak, peak0, peak1))
    report(lines, args.markdown)


if __name__ == "__main__":
    main()
