#!/usr/bin/env python3
"""Fair side-by-side benchmark of libattn's forward pass (DESIGN.md section 4).

Peers, run in the same process, same machine, same thread count:
  libattn  attn_forward through ctypes on build/libattn.so
  torch    torch.nn.functional.scaled_dot_product_attention on CPU
  naive    numpy: per head S = QK^T (BLAS), softmax, S V (BLAS); materialises
           the seq x seq score matrix

Rules followed: the same thread count for everyone (OMP_NUM_THREADS,
OPENBLAS_NUM_THREADS, MKL_NUM_THREADS set before numpy/torch are imported,
torch.set_num_threads, libattn num_threads); the machine load printed first;
the FMA peak measured in the same run (attn_fma_peak_gflops, at the start and
at the end); outputs checked against torch before any timing; one warm-up
call each, then R rounds in which the three run alternately (rotating order),
the median reported. FLOPs = 4 * seq_q * seq_k * head_dim per (batch, head),
credited at half for causal (FlashAttention/ggml convention), whatever the
implementation actually computes. OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are
unset for this command (they exist for old OpenBLAS builds; current numpy and
torch wheels bring their own) and the output says so.

Memory: each implementation also runs once in a fresh child process that
records its resident-set peak during one call minus the resident set just
before the call (inputs and output already allocated and touched), i.e. the
memory beyond inputs and output.

    python3 bench/compare.py                       # full table, 2 threads
    python3 bench/compare.py --quick               # smaller shapes, ~1 minute
    python3 bench/compare.py --markdown bench/out/results.md
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

FULL_SHAPES = [  # (batch, heads, seq, head_dim, causal)
    (1, 8, 4096, 64, False),
    (1, 8, 4096, 64, True),
    (1, 8, 4096, 128, False),
    (1, 8, 4096, 128, True),
    (1, 8, 512, 64, False),
    (1, 8, 512, 64, True),
]
QUICK_SHAPES = [
    (1, 8, 1024, 64, False),
    (1, 8, 1024, 64, True),
    (1, 8, 1024, 128, False),
    (1, 8, 1024, 128, True),
    (1, 8, 512, 64, False),
    (1, 8, 512, 64, True),
]
LONG_SHAPE = (1, 1, 131072, 64, True)
IMPLS = ("libattn", "torch", "naive")
MAX_ABS_ERR = 1e-4  # f32 vs f32: anything above this is a wrong answer


# ---------------------------------------------------------------------------
# Environment: must happen before numpy / torch are imported
# ---------------------------------------------------------------------------
def prepare_env(threads):
    """Pins every BLAS/OpenMP pool to `threads`, drops the old-OpenBLAS
    tuning variables for this process; returns the notes to print."""
    notes = []
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            notes.append("%s=%s was unset for this command (current numpy/torch "
                         "bundle their own OpenBLAS)" % (var, os.environ.pop(var)))
    if not notes:
        notes.append("OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE: not set in this "
                     "environment (would be unset for this command)")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ["ATTN_NUM_THREADS"] = str(threads)
    return notes


# ---------------------------------------------------------------------------
# Memory of the current process (Linux /proc)
# ---------------------------------------------------------------------------
def _status_kib(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def reset_peak_rss():
    """Resets VmHWM to the current RSS (Linux >= 4.0). False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------
# Problem setup and the three implementations
# ---------------------------------------------------------------------------
class Problem:
    """Inputs in torch's [batch, heads, seq, dim] memory order, shared by all
    implementations; libattn sees them through strided [b, s, h, d] views
    (or its own contiguous copies with --layout bshd)."""

    def __init__(self, np, shape, layout, seed=0):
        b, h, s, d, causal = shape
        self.np = np
        self.shape = shape
        self.causal = causal
        rng = np.random.default_rng(seed)
        self.q = rng.standard_normal((b, h, s, d), dtype=np.float32)
        self.k = rng.standard_normal((b, h, s, d), dtype=np.float32)
        self.v = rng.standard_normal((b, h, s, d), dtype=np.float32)
        self.scale = 1.0 / float(d) ** 0.5
        if layout == "bshd":
            self.lq = np.ascontiguousarray(self.q.transpose(0, 2, 1, 3))
            self.lk = np.ascontiguousarray(self.k.transpose(0, 2, 1, 3))
            self.lv = np.ascontiguousarray(self.v.transpose(0, 2, 1, 3))
            # NaN-filled: pages touched now (np.zeros would defer them into
            # the timed call) and an unwritten element cannot pass the check
            self.lo_mem = np.full((b, s, h, d), np.nan, dtype=np.float32)
            self.lo = self.lo_mem
        else:  # bhsd memory, logical [b, s, h, d] views
            self.lq = self.q.transpose(0, 2, 1, 3)
            self.lk = self.k.transpose(0, 2, 1, 3)
            self.lv = self.v.transpose(0, 2, 1, 3)
            self.lo_mem = np.full((b, h, s, d), np.nan, dtype=np.float32)
            self.lo = self.lo_mem.transpose(0, 2, 1, 3)

    def flops(self):
        b, h, s, d, causal = self.shape
        f = 4.0 * s * s * d * b * h
        return f / 2 if causal else f

    def libattn_output_bhsd(self):
        return self.lo.transpose(0, 2, 1, 3)


def make_libattn(lib, prob, threads):
    import libattn_ctypes as la

    causal = la.ATTN_CAUSAL_TOP_LEFT if prob.causal else la.ATTN_CAUSAL_NONE
    p = lib.make_params(prob.lq, prob.lk, prob.lv, prob.lo, causal=causal,
                        num_threads=threads)

    def run():
        lib.forward(p)
        return prob.libattn_output_bhsd()

    return run


def make_torch(torch, prob):
    import torch.nn.functional as F

    tq, tk, tv = (torch.from_numpy(a) for a in (prob.q, prob.k, prob.v))

    def run():
        with torch.inference_mode():
            # is_causal is top-left aligned; seq_q == seq_k here, so it is the
            # same mask as libattn's (bottom-right or top-left).
            return F.scaled_dot_product_attention(tq, tk, tv, is_causal=prob.causal)

    return run


def make_naive(np, prob):
    b, h, s, d, causal = prob.shape
    neg = None
    if causal:  # additive -inf above the diagonal, built once outside timing
        neg = np.triu(np.full((s, s), -np.inf, dtype=np.float32), k=1)
    out = np.full((b, h, s, d), np.nan, dtype=np.float32)  # touched up front
    scale = np.float32(prob.scale)

    def run():
        for bi in range(b):
            for hi in range(h):
                sc = prob.q[bi, hi] @ prob.k[bi, hi].T  # [s, s], BLAS
                sc *= scale
                if neg is not None:
                    sc += neg
                sc -= sc.max(axis=1, keepdims=True)
                np.exp(sc, out=sc)
                den = sc.sum(axis=1, keepdims=True)
                o = sc @ prob.v[bi, hi]  # [s, d], BLAS
                o /= den
                out[bi, hi] = o
        return out

    return run


def to_numpy(x):
    return x.numpy() if hasattr(x, "numpy") else x


# ---------------------------------------------------------------------------
# Child process: one call of one implementation, memory measured
# ---------------------------------------------------------------------------
def child_main(spec):
    """spec: JSON [impl, [b, h, s, d, causal], threads, layout, build].
    Prints one JSON line."""
    impl, shape, threads, layout, build = json.loads(spec)
    shape = tuple(shape)
    prepare_env(threads)
    import numpy as np

    prob = Problem(np, shape, layout)
    if impl == "libattn":
        sys.path.insert(0, HERE)
        import libattn_ctypes as la

        run = make_libattn(la.LibAttn(la.find_library(build)), prob, threads)
    elif impl == "torch":
        import torch

        torch.set_num_threads(threads)
        run = make_torch(torch, prob)
    else:
        run = make_naive(np, prob)
    base = _status_kib("VmRSS")
    exact = reset_peak_rss()
    t0 = time.perf_counter()
    out = run()
    dt = time.perf_counter() - t0
    hwm = _status_kib("VmHWM")
    if not exact:  # fall back to the lifetime peak: an over-estimate at worst
        import resource

        hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    o = to_numpy(out)
    # Spot check against a float64 reference on a few rows (first, last and
    # spread out): cheap at any length, catches index overflows at long seq.
    bq, hq, sq = prob.q.shape[:3]
    rows = sorted(set([0, 1, sq // 3, sq // 2, sq - 2, sq - 1] +
                      [int(x) for x in np.random.default_rng(1).integers(0, sq, 6)]))
    check_err = 0.0
    for hh in range(hq):
        for i in rows:
            if i < 0:
                continue
            n = i + 1 if prob.causal else sq
            kk = prob.k[0, hh, :n].astype(np.float64)
            sc = kk @ prob.q[0, hh, i].astype(np.float64) * prob.scale
            w = np.exp(sc - sc.max())
            ref = (w @ prob.v[0, hh, :n].astype(np.float64)) / w.sum()
            check_err = max(check_err, float(np.max(np.abs(o[0, hh, i] - ref))))
    # torch allocates its output inside the call; libattn and naive write into
    # an output allocated (and touched) before it. Count the output for no one.
    out_kib = o.nbytes // 1024 if impl == "torch" else 0
    print(json.dumps({
        "impl": impl, "ms": dt * 1e3, "rss_before_kib": base, "peak_kib": hwm,
        "extra_kib": max(0, hwm - base - out_kib), "output_kib_subtracted": out_kib,
        "exact": exact, "check_rows": len(rows) * hq, "check_max_abs_err": check_err,
        "finite": bool(np.isfinite(o).all()),
    }))
    return 0


def run_child(args, impl, shape, timeout):
    spec = json.dumps([impl, list(shape), args.threads, args.layout, args.build])
    try:
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--_child", spec],
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": "timeout after %ds" % timeout}
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        return {"error": "exit %d: %s" % (r.returncode, " / ".join(tail))}
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": "no result: " + r.stdout[-200:]}


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------
def fmt_shape(shape):
    b, h, s, d, _ = shape
    return "%dx%dx%dx%d" % (b, h, s, d)


def machine_info():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return cpu


def main():
    ap = argparse.ArgumentParser(
        description="libattn vs torch SDPA vs naive numpy, same machine, same run",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="threads for everyone (2)")
    ap.add_argument("--repeats", "-r", type=int, default=None,
                    help="timed rounds per shape (default 7, 5 with --quick)")
    ap.add_argument("--quick", action="store_true", help="seq <= 1024 shapes only")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"),
                    help="build dir holding libattn.so (and tools/attn)")
    ap.add_argument("--layout", choices=("bhsd", "bshd"), default="bhsd",
                    help="libattn reads torch's [b,h,s,d] buffers through strides "
                         "(bhsd, default) or its own contiguous [b,s,h,d] copies")
    ap.add_argument("--impls", default=",".join(IMPLS),
                    help="comma list out of libattn,torch,naive")
    ap.add_argument("--no-memory", action="store_true",
                    help="skip the per-implementation memory children")
    ap.add_argument("--no-long", action="store_true",
                    help="skip the seq 131072 causal memory check")
    ap.add_argument("--long-seq", type=int, default=LONG_SHAPE[2])
    ap.add_argument("--with-torch-long", action="store_true",
                    help="also try torch SDPA on the long sequence (guarded by a timeout)")
    ap.add_argument("--long-timeout", type=int, default=600)
    ap.add_argument("--peak-seconds", type=float, default=1.0)
    ap.add_argument("--wait-idle", type=int, default=0, metavar="SECONDS",
                    help="wait up to this long for the 1-minute load to fall "
                         "below --max-load before starting (0: do not wait)")
    ap.add_argument("--max-load", type=float, default=None,
                    help="load considered idle (default: a quarter of the CPUs)")
    ap.add_argument("--markdown", metavar="PATH", help="also write the report here")
    ap.add_argument("--json", metavar="PATH", help="also write raw results as JSON")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args._child:
        return child_main(args._child)

    env_notes = prepare_env(args.threads)
    args.build = os.path.abspath(args.build)
    repeats = args.repeats or (5 if args.quick else 7)
    impls = [i.strip() for i in args.impls.split(",") if i.strip()]
    for i in impls:
        if i not in IMPLS:
            ap.error("unknown implementation %r" % i)
    if "libattn" not in impls:
        ap.error("libattn is the reference of the ratios; keep it in --impls")
    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES

    out_lines = []

    def emit(line=""):
        print(line, flush=True)
        out_lines.append(line)

    ncpu = os.cpu_count() or 1
    max_load = args.max_load if args.max_load is not None else 0.25 * ncpu
    deadline = time.time() + args.wait_idle
    while os.getloadavg()[0] > max_load and time.time() < deadline:
        print("waiting for an idle machine: load %.2f > %.2f" % (
            os.getloadavg()[0], max_load), file=sys.stderr, flush=True)
        time.sleep(10)
    load = os.getloadavg()
    # Imports after the environment is pinned.
    import numpy as np

    sys.path.insert(0, HERE)
    import libattn_ctypes as la

    torch = None
    if "torch" in impls:
        try:
            import torch as _torch
        except ImportError:
            sys.exit("torch is not installed: run scripts/setup-bench.sh, or pass "
                     "--impls libattn,naive")
        torch = _torch
        torch.set_num_threads(args.threads)
    lib = la.LibAttn(la.find_library(args.build))

    emit("# libattn benchmark")
    emit()
    emit("- date: %s" % time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    emit("- cpu: %s, %d logical CPUs, %s" % (machine_info(), ncpu, platform.machine()))
    emit("- load average before the run: %.2f %.2f %.2f%s" % (
        load[0], load[1], load[2],
        "  **WARNING: machine not idle, timings suspect**" if load[0] > max_load else ""))
    emit("- threads: %d for every implementation (OMP/OPENBLAS/MKL_NUM_THREADS, "
         "torch.set_num_threads, attn num_threads)" % args.threads)
    for n in env_notes:
        emit("- " + n)
    emit("- libattn %s (%s), ISA %s, layout %s" % (lib.version(), lib.path, lib.isa_best(),
                                                  args.layout))
    emit("- numpy %s%s" % (np.__version__,
                           (", torch %s" % torch.__version__) if torch else ""))
    peak0 = lib.fma_peak_gflops(args.threads, args.peak_seconds)
    emit("- FMA peak (attn_fma_peak_gflops, %d threads, start of run): %.1f GFLOP/s"
         % (args.threads, peak0))
    emit("- method: correctness vs torch first; 1 warm-up each; %d rounds, "
         "implementations alternating in rotating order; median" % repeats)
    emit("- FLOPs: 4*seq_q*seq_k*head_dim per (batch, head), half for causal")
    emit()

    results = []
    failures = 0
    for shape in shapes:
        prob = Problem(np, shape, args.layout)
        runs = {"libattn": make_libattn(lib, prob, args.threads)}
        if "torch" in impls:
            runs["torch"] = make_torch(torch, prob)
        if "naive" in impls:
            runs["naive"] = make_naive(np, prob)
        # correctness first (this is also the warm-up call)
        outs = {name: to_numpy(fn()).copy() for name, fn in runs.items()}
        ref_name = "torch" if "torch" in outs else "naive"
        errs = {}
        if ref_name in outs:
            ref = outs[ref_name]
            for name, o in outs.items():
                if name != ref_name:
                    errs[name] = float(np.max(np.abs(o.astype(np.float64) - ref)))
        err = errs.get("libattn", float("nan"))
        if not np.isfinite(outs["libattn"]).all() or err > MAX_ABS_ERR:
            failures += 1
        del outs
        times = {name: [] for name in runs}
        names = list(runs)
        for r in range(repeats):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                t0 = time.perf_counter()
                runs[name]()
                times[name].append(time.perf_counter() - t0)
        med = {n: statistics.median(t) for n, t in times.items()}
        res = {"shape": fmt_shape(shape), "batch": shape[0], "heads": shape[1],
               "seq": shape[2], "head_dim": shape[3], "causal": shape[4],
               "gflop": prob.flops() / 1e9, "median_s": med,
               "min_s": {n: min(t) for n, t in times.items()},
               "ref": ref_name, "max_abs_err": errs}
        results.append(res)
        print("  %s causal=%s: %s  err=%s" % (
            res["shape"], shape[4],
            "  ".join("%s %.2f ms" % (n, med[n] * 1e3) for n in names),
            " ".join("%s %.1e" % kv for kv in errs.items())), file=sys.stderr, flush=True)
        del runs, prob

    peak1 = lib.fma_peak_gflops(args.threads, args.peak_seconds)
    peak = max(peak0, peak1)

    # ---- memory children
    if not args.no_memory:
        for res, shape in zip(results, shapes):
            res["mem"] = {n: run_child(args, n, shape, args.long_timeout) for n in impls}

    # ---- main table
    emit("## Forward pass, batch x heads x seq x head_dim, f32, %d threads" % args.threads)
    emit()
    emit("FMA peak: %.1f GFLOP/s at the start, %.1f at the end; %% of peak uses %.1f."
         % (peak0, peak1, peak))
    emit()
    hdr = ["shape", "causal"]
    hdr += ["%s ms" % n for n in impls]
    hdr += ["%s GFLOP/s (%% peak)" % n for n in impls]
    hdr += ["%s/libattn" % n for n in impls if n != "libattn"]
    emit("| " + " | ".join(hdr) + " |")
    emit("|" + "|".join(["---"] * 2 + ["---:"] * (len(hdr) - 2)) + "|")
    for res in results:
        med = res["median_s"]
        row = [res["shape"], "yes" if res["causal"] else "no"]
        row += ["%.2f" % (med[n] * 1e3) for n in impls]
        for n in impls:
            gf = res["gflop"] / med[n]
            row.append("%.1f (%.0f%%)" % (gf, 100 * gf / peak))
        row += ["%.2fx" % (med[n] / med["libattn"]) for n in impls if n != "libattn"]
        emit("| " + " | ".join(row) + " |")
    emit()
    over = [r["shape"] for r in results for n in impls
            if r["gflop"] / r["median_s"][n] > peak]
    if over:
        emit("**Some rates exceed the measured peak: the peak was measured while "
             "the machine was busy; rerun idle (--wait-idle).**")
        emit()
    emit("Ratios above 1 mean libattn is faster. naive computes the full matrix "
         "also when causal, but is credited with half the FLOPs like everyone.")
    emit()

    # ---- accuracy and memory table
    emit("## Accuracy and memory")
    emit()
    ref_name = "torch" if "torch" in impls else "naive"
    err_impls = [n for n in impls if n != ref_name] if ref_name in impls else []
    hdr = ["shape", "causal"]
    hdr += ["max abs err %s vs %s" % (n, ref_name) for n in err_impls]
    if not args.no_memory:
        hdr += ["%s extra MiB" % n for n in impls]
    emit("| " + " | ".join(hdr) + " |")
    emit("|" + "|".join(["---"] * 2 + ["---:"] * (len(hdr) - 2)) + "|")
    for res in results:
        row = [res["shape"], "yes" if res["causal"] else "no"]
        row += ["%.1e" % res["max_abs_err"][n] for n in err_impls]
        if not args.no_memory:
            for n in impls:
                m = res["mem"][n]
                row.append("%.1f" % (m["extra_kib"] / 1024) if "extra_kib" in m
                           else "error")
        emit("| " + " | ".join(row) + " |")
    emit()
    if not args.no_memory:
        emit("extra MiB: peak resident set during one call in a fresh process minus "
             "the resident set just before it (inputs and output already allocated and "
             "touched; torch allocates its output inside the call, so its size is "
             "subtracted for torch); it includes first-touched code pages and worker-thread stacks "
             "(about 1-2 MiB). One n x n f32 score matrix at seq 4096 is 64 MiB.")
        emit()
        errors = ["%s %s: %s" % (r["shape"], n, m["error"])
                  for r in results for n, m in r.get("mem", {}).items() if "error" in m]
        for e in errors:
            emit("- memory child failed: " + e)
        if errors:
            emit()

    # ---- long sequence
    long_res = {}
    if not args.no_long:
        shape = (1, 1, args.long_seq, 64, True)
        emit("## Long sequence: causal, 1 head, seq %d, head_dim 64, %d threads"
             % (args.long_seq, args.threads))
        emit()
        io_mib = 4 * args.long_seq * 64 * 4 / 2**20
        flops = 4.0 * args.long_seq ** 2 * 64 / 2
        # the peak again right before this long single call: on a shared
        # machine the start/end values can be low, and % of peak above 100
        # would only mean the peak was measured while something else ran
        peak_l = lib.fma_peak_gflops(args.threads, args.peak_seconds)
        lpeak = max(peak, peak_l)
        emit("FMA peak measured again just before: %.1f GFLOP/s; %% of peak uses %.1f."
             % (peak_l, lpeak))
        emit()
        long_impls = ["libattn"] + (["torch"] if args.with_torch_long and torch else [])
        emit("Inputs + output: %.0f MiB; one materialised f32 score matrix would be "
             "%.2f GiB." % (io_mib, args.long_seq ** 2 * 4 / 2**30))
        emit()
        emit("| implementation | time s | GFLOP/s (% peak) | memory beyond inputs+output MiB "
             "| max abs err vs float64 on sampled rows |")
        emit("|---|---:|---:|---:|---:|")
        for n in long_impls:
            m = run_child(args, n, shape, args.long_timeout)
            long_res[n] = m
            if "error" in m:
                emit("| %s | failed: %s | | | |" % (n, m["error"]))
                if n == "libattn":
                    failures += 1
                continue
            gf = flops / (m["ms"] / 1e3) / 1e9
            emit("| %s | %.2f | %.1f (%.0f%%) | %.1f | %.1e (%d rows) |" % (
                n, m["ms"] / 1e3, gf, 100 * gf / lpeak, m["extra_kib"] / 1024,
                m.get("check_max_abs_err", float("nan")), m.get("check_rows", 0)))
            if n == "libattn" and (not m.get("finite", True) or
                                   not m.get("check_max_abs_err", 0.0) <= MAX_ABS_ERR):
                failures += 1
        emit()
        emit("One call in a fresh process (no warm-up); memory measured as above.")
        emit()
        cli = os.path.join(args.build, "tools", "attn")
        if os.access(cli, os.X_OK):
            # One timed call, no warm-up: same as the child above.
            cmd = [cli, "bench", "--batch", "1", "--heads", "1",
                   "--seq", str(args.long_seq), "--dim", "64", "--causal",
                   "--threads", str(args.threads), "--repeat", "1", "--warmup", "0",
                   "--json"]
            shown = " ".join([os.path.relpath(cli, ROOT)] + cmd[1:])
            try:
                # Through a small sh that forks (no exec): Linux carries a
                # process's ru_maxrss across exec, so a CLI started straight from
                # this big Python process would inherit its peak RSS.
                r = subprocess.run(["sh", "-c", '"$@"; rc=$?; exit $rc', "sh"] + cmd,
                                   capture_output=True, text=True,
                                   timeout=args.long_timeout)
                txt = r.stdout.strip()
                long_res["cli"] = {"cmd": shown, "rc": r.returncode, "stdout": txt,
                                   "stderr": r.stderr.strip()[-500:]}
                emit("Cross-check with the command line, `%s` (exit %d):"
                     % (shown, r.returncode))
                emit()
                try:
                    j = json.loads(txt.splitlines()[-1])
                    long_res["cli"]["json"] = j
                    emit("| attn bench | median ms | GFLOP/s | % of its peak | "
                         "peak RSS MiB | MiB beyond inputs and output | check |")
                    emit("|---|---:|---:|---:|---:|---:|---|")
                    emit("| seq %s causal | %.1f | %.1f | %.0f%% | %.1f | %.1f | %s |" % (
                        j.get("seq_q", args.long_seq), j.get("median_ms", float("nan")),
                        j.get("gflops", float("nan")),
                        100 * j.get("peak_share", float("nan")),
                        j.get("maxrss_mib", float("nan")), j.get("extra_mib", float("nan")),
                        j.get("check", "-")))
                except (ValueError, IndexError, TypeError):
                    emit("```")
                    emit(txt if txt else r.stderr.strip()[-500:])
                    emit("```")
                emit()
                if r.returncode != 0:
                    failures += 1
            except subprocess.TimeoutExpired:
                emit("Cross-check `%s` timed out after %ds" % (shown, args.long_timeout))
                emit()

    if failures:
        emit("**%d check(s) failed: libattn output not finite or max abs error above %g**"
             % (failures, MAX_ABS_ERR))

    if args.markdown:
        os.makedirs(os.path.dirname(os.path.abspath(args.markdown)), exist_ok=True)
        with open(args.markdown, "w") as fh:
            fh.write("\n".join(out_lines) + "\n")
        print("wrote " + args.markdown, file=sys.stderr)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump({"threads": args.threads, "peak_gflops": [peak0, peak1],
                       "load": load, "env_notes": env_notes, "results": results,
                       "long": long_res}, fh, indent=1)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
