#!/usr/bin/env python3
"""Side-by-side benchmark of libattn's backward pass (issue 3).

Peers, same process, same machine, same thread count (default 2):
  libattn  attn_backward through ctypes on build/libattn.so, given Q, K, V,
           O, LSE (from attn_forward, outside the timing) and dO
  torch    autograd through torch.nn.functional.scaled_dot_product_attention
           on CPU: the forward runs once outside the timing with
           requires_grad inputs; the timed call is
           torch.autograd.grad(out, (q, k, v), dO, retain_graph=True)

Shapes: batch 1, 8 heads, seq 4096, head_dim 64, non-causal and causal
(--quick: seq 1024). FLOPs credited to a backward = 2.5 x the forward's
(4 * seq^2 * d per head, half for causal), whatever an implementation
actually computes. Fairness as in bench/compare.py: thread pools pinned
before numpy/torch are imported, the FMA peak measured in the same run
(attn_fma_peak_gflops), gradients checked against torch before timing, one
warm-up, R alternating rounds, medians. OPENBLAS_CORETYPE /
OPENBLAS_L2_SIZE are unset for this command.

Memory: each implementation also runs once in a child process that records
the resident-set peak during one backward minus the resident set just before
it (inputs, forward outputs and gradient buffers already allocated; torch's
gradients are allocated inside the call and are subtracted).

    python3 bench/compare_bwd.py [--quick] [--threads 2] [--rounds 3]
                                 [--markdown bench/out/bwd.md]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# prepare_env, _status_kib and reset_peak_rss are compare.py's, which imports
# only the standard library at load time, so this is safe before numpy/torch.
sys.path.insert(0, HERE)
from compare import _status_kib, prepare_env, reset_peak_rss  # noqa: E402


class Problem:
    """Inputs in torch's [b, h, s, d] memory; libattn sees strided views."""

    def __init__(self, np, shape, seed=0):
        b, h, s, d, causal = shape
        rng = np.random.default_rng(seed)
        self.shape, self.causal = shape, causal
        self.q, self.k, self.v, self.do = (
            rng.standard_normal((b, h, s, d), dtype=np.float32) for _ in range(4))
        self.o = np.full((b, h, s, d), np.nan, dtype=np.float32)
        self.lse = np.full((b, h, s), np.nan, dtype=np.float32)
        self.dq, self.dk, self.dv = (
            np.full((b, h, s, d), np.nan, dtype=np.float32) for _ in range(3))

    def flops(self):
        b, h, s, d, causal = self.shape
        f = 4.0 * s * s * d * b * h * 2.5
        return f / 2 if causal else f


def make_libattn(np, la, lib, prob, threads):
    import ctypes

    t = lambda a: la.LibAttn.tensor_f32(a.transpose(0, 2, 1, 3))  # noqa: E731
    p = lib.make_params(prob.q.transpose(0, 2, 1, 3), prob.k.transpose(0, 2, 1, 3),
                        prob.v.transpose(0, 2, 1, 3), prob.o.transpose(0, 2, 1, 3),
                        causal=la.ATTN_CAUSAL_TOP_LEFT if prob.causal else la.ATTN_CAUSAL_NONE,
                        num_threads=threads)
    p.lse = prob.lse.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
    lib.forward(p)  # O and LSE, outside the timing
    p.dout, p.dq, p.dk, p.dv = t(prob.do), t(prob.dq), t(prob.dk), t(prob.dv)

    def run():
        lib.backward(p)
        return prob.dq, prob.dk, prob.dv

    return run


def make_torch(torch, prob):
    import torch.nn.functional as F

    tq, tk, tv = (torch.from_numpy(a.copy()).requires_grad_(True)
                  for a in (prob.q, prob.k, prob.v))
    tdo = torch.from_numpy(prob.do)
    out = F.scaled_dot_product_attention(tq, tk, tv, is_causal=prob.causal)

    def run():
        g = torch.autograd.grad(out, (tq, tk, tv), tdo, retain_graph=True)
        return tuple(x.numpy() for x in g)

    return run


def build_impl(impl, np, prob, threads, build):
    if impl == "libattn":
        import libattn_ctypes as la

        return make_libattn(np, la, la.LibAttn(la.find_library(build)), prob, threads)
    import torch

    torch.set_num_threads(threads)
    return make_torch(torch, prob)


def child_main(spec):
    impl, shape, threads, build = json.loads(spec)
    prepare_env(threads)
    import numpy as np

    prob = Problem(np, tuple(shape))
    run = build_impl(impl, np, prob, threads, build)
    base = _status_kib("VmRSS")
    exact = reset_peak_rss()
    t0 = time.perf_counter()
    g = run()
    dt = time.perf_counter() - t0
    hwm = _status_kib("VmHWM")
    out_kib = sum(x.nbytes for x in g) // 1024 if impl == "torch" else 0
    print(json.dumps({"impl": impl, "ms": dt * 1e3, "extra_kib": max(0, hwm - base - out_kib),
                      "exact": exact}))
    return 0


def run_child(impl, shape, threads, build, timeout=900):
    spec = json.dumps([impl, list(shape), threads, build])
    try:
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--_child", spec],
                           capture_output=True, text=True, timeout=timeout)
        return json.loads(r.stdout.strip().splitlines()[-1])
    except Exception as e:  # noqa: BLE001 - reported in the table
        return {"error": str(e)[:200]}


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--_child":
        return child_main(sys.argv[2])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--markdown", default=os.path.join(HERE, "out", "bwd.md"))
    ap.add_argument("--no-memory", action="store_true")
    args = ap.parse_args()
    notes = prepare_env(args.threads)
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    import libattn_ctypes as la

    lib = la.LibAttn(la.find_library(args.build))
    seq = 1024 if args.quick else 4096
    shapes = [(1, 8, seq, 64, False), (1, 8, seq, 64, True)]
    lines = []

    def emit(s=""):
        print(s, flush=True)
        lines.append(s)

    peak0 = lib.fma_peak_gflops(args.threads, 0.5)
    emit("# libattn backward vs torch autograd (SDPA), %d threads" % args.threads)
    emit()
    emit("libattn %s (isa %s, build %s); torch %s; load %s" % (
        lib.version(), lib.isa_best(), args.build, torch.__version__,
        " ".join("%.2f" % x for x in os.getloadavg())))
    for n in notes:
        emit(n)
    emit("FMA peak (attn_fma_peak_gflops, %d threads): %.1f GFLOP/s at start" % (
        args.threads, peak0))
    emit("FLOPs per backward = 2.5 x forward (4 s^2 d per head; causal: half). "
         "Median of %d alternating rounds after one warm-up." % args.rounds)
    emit()
    emit("| shape (b, h, s, d) | causal | impl | ms | GFLOP/s | % of peak | "
         "extra memory MiB | max abs err vs torch (dq, dk, dv) |")
    emit("|---|---|---|---|---|---|---|---|")
    rows = []
    for shape in shapes:
        prob = Problem(np, shape)
        runs = {i: build_impl(i, np, prob, args.threads, args.build)
                for i in ("libattn", "torch")}
        ga = [x.copy() for x in runs["libattn"]()]  # warm-up + check
        gt = runs["torch"]()
        err = [float(np.max(np.abs(a - b))) for a, b in zip(ga, gt)]
        times = {i: [] for i in runs}
        for r in range(args.rounds):
            order = list(runs) if r % 2 == 0 else list(runs)[::-1]
            for i in order:
                t0 = time.perf_counter()
                runs[i]()
                times[i].append(time.perf_counter() - t0)
        for i in runs:
            ms = statistics.median(times[i]) * 1e3
            gf = prob.flops() / (ms * 1e-3) / 1e9
            mem = float("nan")
            if not args.no_memory:
                c = run_child(i, shape, args.threads, args.build)
                mem = c.get("extra_kib", float("nan") * 1024) / 1024.0
            rows.append((shape, i, ms, gf))
            emit("| %d, %d, %d, %d | %s | %s | %.1f | %.1f | %.1f%% | %.1f | %s |" % (
                shape[0], shape[1], shape[2], shape[3], "yes" if shape[4] else "no", i,
                ms, gf, 100.0 * gf / peak0, mem,
                ", ".join("%.1e" % e for e in err) if i == "libattn" else "-"))
        del runs, prob
    peak1 = lib.fma_peak_gflops(args.threads, 0.5)
    emit()
    emit("FMA peak at the end: %.1f GFLOP/s" % peak1)
    for shape in shapes:
        t = {i: ms for s, i, ms, _ in rows if s == shape}
        emit("%s causal=%s: libattn / torch time = %.2f" % (
            "x".join(map(str, shape[:4])), shape[4], t["libattn"] / t["torch"]))
    if args.markdown:
        os.makedirs(os.path.dirname(os.path.abspath(args.markdown)), exist_ok=True)
        with open(args.markdown, "w") as fh:
            fh.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
