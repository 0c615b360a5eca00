#!/usr/bin/env python3
"""Decode benchmark: one query row against a long KV cache, side by side.

The shape of issue 7: batch 1, 32 query heads, 8 kv heads, head_dim 128,
cache length 32768, f32 and bf16 caches. In one run, alternating in
bursts of --burst calls after a pause of --pause seconds (the pause and
the first call of each burst untimed, so that one contender's leftover
threads do not bill the next) so that drift hits everyone alike, medians
of the timed calls:

  libattn   attn_kv_cache_attend on a contiguous cache (--page-size P: a
            paged one, pages of the sequence scattered), through ctypes
            (bench/libattn_ctypes.py), its persistent thread pool (default
            context, ATTN_NUM_THREADS = --threads); with a bf16 cache its q
            and output are bf16 as torch's are (--lib-q f32: f32 q and
            output, the bf16 cache widened)
  torch     torch.nn.functional.scaled_dot_product_attention, q [1, 32, 1,
            128], k and v [1, 8, L, 128] (enable_gqa=True), same dtype,
            torch.set_num_threads(--threads)
  naive     bench/naive_decode.c compiled here (cc -O2 -march=native): the
            obvious loop, one thread

and the machine's read bandwidth measured in the same run
(attn_read_bandwidth_gbps, the probe of `attn peak`): at the start, at the
end, and (--probe-each S seconds, default 0.25) once more in every round
just before libattn's burst. Reported per dtype: median ms, GB/s moved (K
and V once), share of the start's bandwidth, and the time ratio to
libattn; then the per-round probes and libattn's share of the probe of
its own round (median over rounds). The issue's target is libattn >= 80%
of the bandwidth. Outputs are checked against each other (max |diff|)
first.

    python3 bench/decode.py [--build build] [--threads N] [--reps 20]
        [--cache-len 32768] [--dtypes f32,bf16] [--page-size 0] [--json F]
        [--lib-q bf16|f32] [--probe-each 0.25]

Needs numpy and torch (bench/requirements.txt) and a built libattn.so. On a
shared machine the figures are noisy: run it alone.
"""

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import libattn_ctypes as la  # noqa: E402


def bf16_bits(x):
    """float32 array -> uint16 bf16 bits (round to nearest even)."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def bf16_value(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def huge_array(shape, dtype):
    """An uninitialised array 2 MiB aligned and advised to use transparent
    huge pages (madvise, before the first touch), as `attn decode` does
    for its cache and the bandwidth probe for its buffer: every contender
    then streams without a TLB miss per 4 KiB page. Plain np.empty where
    madvise is unavailable."""
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dt.itemsize
    align = 2 << 20
    raw = np.empty(nbytes + align, dtype=np.uint8)
    off = (-raw.ctypes.data) % align
    buf = raw[off:off + nbytes]
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        size = (nbytes + align - 1) // align * align
        libc.madvise(ctypes.c_void_p(buf.ctypes.data), size, 14)  # MADV_HUGEPAGE
    except (OSError, AttributeError):
        pass
    return buf.view(dt).reshape(shape)


def huge_copy(x):
    """A contiguous copy of x in a huge_array."""
    y = huge_array(x.shape, x.dtype)
    y[...] = x
    return y


def build_naive(cc):
    d = tempfile.mkdtemp(prefix="attn-naive-")
    so = os.path.join(d, "naive_decode.so")
    subprocess.check_call([cc, "-O2", "-march=native", "-shared", "-fPIC",
                           os.path.join(HERE, "naive_decode.c"), "-o", so, "-lm"])
    lib = ctypes.CDLL(so)
    lib.naive_decode.restype = None
    lib.naive_decode.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_int64] * 4 + [ctypes.c_int]
    return lib


class Case:
    """One dtype: the cache in numpy (for libattn and naive) and torch."""

    def __init__(self, args, dtype, rng, lib, torch):
        self.dtype = dtype
        L, hq, hk, d = args.cache_len, args.heads_q, args.heads_kv, args.head_dim
        self.L, self.hq, self.hk, self.d = L, hq, hk, d
        k = rng.standard_normal((1, L, hk, d), dtype=np.float32)
        v = rng.standard_normal((1, L, hk, d), dtype=np.float32)
        self.q = rng.standard_normal((1, 1, hq, d), dtype=np.float32)
        if dtype == "bf16":
            self.kc, self.vc = huge_copy(bf16_bits(k)), huge_copy(bf16_bits(v))
            kf, vf = bf16_value(self.kc), bf16_value(self.vc)
            adt = la.ATTN_DTYPE_BF16
        else:
            self.kc, self.vc = huge_copy(k), huge_copy(v)
            kf, vf = k, v
            adt = la.ATTN_DTYPE_F32
        self.esize = 2 if dtype == "bf16" else 4
        self.bytes = 2 * L * hk * d * self.esize
        # libattn: the cache over the numpy buffers
        self.lens = np.array([L], dtype=np.int32)
        if args.page_size:
            ps = args.page_size
            bps = (L + ps - 1) // ps
            pool_k = huge_array((bps, ps, hk, d), self.kc.dtype)
            pool_v = huge_array((bps, ps, hk, d), self.kc.dtype)
            pool_k[...] = 0
            pool_v[...] = 0
            order = rng.permutation(bps).astype(np.int32)
            for b in range(bps):
                n = min(ps, L - b * ps)
                pool_k[order[b], :n] = self.kc[0, b * ps:b * ps + n]
                pool_v[order[b], :n] = self.vc[0, b * ps:b * ps + n]
            table = order.reshape(1, bps).copy()
            self.cache = lib.make_cache(pool_k, pool_v, self.lens, adt, table, ps)
        else:
            self.cache = lib.make_cache(self.kc, self.vc, self.lens, adt)
        self.o = np.zeros((1, 1, hq, d), dtype=np.float32)
        self.p = lib.make_params(self.q, None, None, self.o, num_threads=args.threads)
        if dtype == "bf16" and args.lib_q == "bf16":
            # q and o in bf16 as torch has them: libattn then multiplies
            # with bf16 dot products (vdpbf16ps) and rounds P for P V, as
            # PyTorch's bf16 SDPA does (docs/bf16.md)
            self.q = bf16_value(bf16_bits(self.q))
            self.q16 = bf16_bits(self.q)
            self.o16 = np.zeros((1, 1, hq, d), dtype=np.uint16)
            self.p.q = lib.tensor_of(self.q16, la.ATTN_DTYPE_BF16)
            self.p.o = lib.tensor_of(self.o16, la.ATTN_DTYPE_BF16)
        # torch: [1, heads, seq, dim]
        tdt = torch.bfloat16 if dtype == "bf16" else torch.float32
        self.tq = torch.from_numpy(self.q).permute(0, 2, 1, 3).contiguous().to(tdt)
        self.tk = self.torch_huge(torch, kf, tdt)
        self.tv = self.torch_huge(torch, vf, tdt)
        # naive: f32 or bf16 bits, [L, hk, d]
        self.naive_o = np.zeros((hq, d), dtype=np.float32)
        self.naive_s = np.zeros(L, dtype=np.float32)


    @staticmethod
    def torch_huge(torch, x, tdt):
        """x [1, L, heads, d] as a torch tensor [1, heads, L, d] of dtype tdt
        in huge pages (huge_array), like libattn's cache."""
        t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1, 3))).to(tdt)
        if tdt == torch.bfloat16:
            out = huge_array(tuple(t.shape), np.uint16)
            torch.from_numpy(out).view(torch.bfloat16).copy_(t)
            return torch.from_numpy(out).view(torch.bfloat16)
        out = huge_array(tuple(t.shape), np.float32)
        torch.from_numpy(out).copy_(t)
        return torch.from_numpy(out)


def run(args):
    import torch

    torch.set_num_threads(args.threads)
    lib = la.LibAttn(la.find_library(args.build))
    if not lib.has_cache:
        sys.exit("%s has no KV cache entry points (0.3 needed)" % lib.path)
    naive = build_naive(args.cc)
    import torch.nn.functional as F

    rng = np.random.default_rng(7)
    gbps = lib.read_bandwidth_gbps(args.threads, 1.0)
    print("libattn %s (%s), torch %s, threads %d, read bandwidth %.2f GB/s "
          "(attn_read_bandwidth_gbps, same run)" %
          (lib.version(), lib.isa_best(), torch.__version__, args.threads, gbps))
    print("shape: batch 1, q heads %d, kv heads %d, head_dim %d, cache %d "
          "tokens, %s cache, 1 query row; %d reps, alternating, medians\n" %
          (args.heads_q, args.heads_kv, args.head_dim, args.cache_len,
           "paged (page %d)" % args.page_size if args.page_size else "contiguous",
           args.reps))
    results = []
    for dtype in args.dtypes.split(","):
        c = Case(args, dtype, rng, lib, torch)

        def f_lib():
            lib.kv_cache_attend(c.cache, c.p)

        def f_torch():
            return F.scaled_dot_product_attention(c.tq, c.tk, c.tv, enable_gqa=True)

        def f_naive():
            naive.naive_decode(c.q.ctypes.data, c.kc.ctypes.data, c.vc.ctypes.data,
                               c.naive_o.ctypes.data, c.naive_s.ctypes.data,
                               c.L, c.hq, c.hk, c.d, 1 if dtype == "bf16" else 0)

        # agreement first
        f_lib()
        t_out = f_torch().float().permute(0, 2, 1, 3).numpy().reshape(c.hq, c.d)
        f_naive()
        if hasattr(c, "o16"):
            lo = bf16_value(c.o16).reshape(c.hq, c.d)
        else:
            lo = c.o.reshape(c.hq, c.d)
        d_torch = float(np.max(np.abs(lo - t_out)))
        d_naive = float(np.max(np.abs(lo - c.naive_o)))
        contenders = [("libattn", f_lib), ("torch", f_torch)]
        if not args.no_naive:
            contenders.append(("naive", f_naive))
        times = {n: [] for n, _ in contenders}
        # the probe again in every round, just before libattn's burst:
        # on a shared VM the read bandwidth moves with the neighbours
        # (35 <-> 60 GB/s within seconds on the Zen 4 EPYC of
        # bench/RESULTS.md), so a share against a probe taken minutes
        # away says more about them than about the kernel
        probes, shares = [], []
        for _ in range(args.warmup):
            for _, f in contenders:
                f()
        for _ in range(args.reps):
            if args.probe_each > 0:
                time.sleep(args.pause)
                probes.append(lib.read_bandwidth_gbps(args.threads,
                                                      args.probe_each))
            for n, f in contenders:
                # a pause, then a burst: torch's OpenMP workers spin for
                # a while after each call and hold the cores (on a 2-core
                # Zen 2 they took 20-30% off libattn's next calls, a
                # whole untimed call later: docs/decisions.md); the pause
                # lets them sleep, the first call absorbs what is left,
                # only the calls after it are timed
                time.sleep(args.pause)
                f()
                for _ in range(args.burst - 1):
                    t0 = time.perf_counter()
                    f()
                    times[n].append(time.perf_counter() - t0)
                if n == "libattn" and probes:
                    burst = times[n][-(args.burst - 1):]
                    shares.append(c.bytes / statistics.median(burst) / 1e9 /
                                  probes[-1])
        med = {n: statistics.median(t) for n, t in times.items()}
        print("%s cache (%.1f MB of K and V): max |libattn - torch| %.2g, "
              "|libattn - naive| %.2g" % (dtype, c.bytes / 1e6, d_torch, d_naive))
        print("  %-8s %10s %9s %10s %8s" % ("", "ms", "GB/s", "% of BW", "ratio"))
        for n, _ in contenders:
            g = c.bytes / med[n] / 1e9
            r = {"dtype": dtype, "who": n, "ms": med[n] * 1e3, "gbps": g,
                 "share": g / gbps, "ratio_to_libattn": med[n] / med["libattn"],
                 "min_ms": min(times[n]) * 1e3}
            results.append(r)
            print("  %-8s %10.3f %9.2f %9.1f%% %8.2f" %
                  (n, r["ms"], g, 100 * r["share"], r["ratio_to_libattn"]))
        if probes:
            r = {"dtype": dtype, "who": "libattn-per-round",
                 "probe_gbps": probes, "share_per_round": shares,
                 "probe_median": statistics.median(probes),
                 "share_median": statistics.median(shares)}
            results.append(r)
            print("  probe before each libattn burst: median %.2f GB/s "
                  "(%.2f .. %.2f over %d rounds); libattn's share of the "
                  "probe of its own round: median %.1f%% (%.1f .. %.1f%%)" %
                  (r["probe_median"], min(probes), max(probes), len(probes),
                   100 * r["share_median"], 100 * min(shares),
                   100 * max(shares)))
        print()
    gbps_end = lib.read_bandwidth_gbps(args.threads, 1.0)
    print("read bandwidth at the end: %.2f GB/s (the shares above use the "
          "start's %.2f; with the larger of the two they would be x%.2f)" %
          (gbps_end, gbps, gbps / max(gbps, gbps_end)))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"read_gbps": gbps, "read_gbps_end": gbps_end,
                       "threads": args.threads, "burst": args.burst,
                       "cache_len": args.cache_len, "results": results}, fh, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(os.path.dirname(HERE), "build"),
                    help="build directory holding libattn.so")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--burst", type=int, default=3,
                    help="calls per contender in a row; the first is not timed")
    ap.add_argument("--pause", type=float, default=0.2,
                    help="seconds of idle before each burst (default 0.2)")
    ap.add_argument("--probe-each", type=float, default=0.25,
                    help="seconds of read-bandwidth probe before each "
                         "libattn burst (0: only at the start and the end)")
    ap.add_argument("--cache-len", type=int, default=32768)
    ap.add_argument("--heads-q", type=int, default=32)
    ap.add_argument("--heads-kv", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--dtypes", default="f32,bf16")
    ap.add_argument("--lib-q", choices=["bf16", "f32"], default="bf16",
                    help="libattn's q and output with a bf16 cache: bf16 "
                         "(as torch's, the default) or f32 (the only choice before)")
    ap.add_argument("--page-size", type=int, default=0)
    ap.add_argument("--no-naive", action="store_true")
    ap.add_argument("--cc", default=os.environ.get("CC", "cc"))
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    if args.burst < 2:
        ap.error("--burst must be >= 2 (the first call of a burst is untimed)")
    os.environ.setdefault("ATTN_NUM_THREADS", str(args.threads))
    run(args)


if __name__ == "__main__":
    main()
