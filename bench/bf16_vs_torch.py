#!/usr/bin/env python3
"""bf16 attention: libattn's bf16 dot-product kernels against its f32 path,
its widened bf16 path and PyTorch's SDPA in f32 and bf16, in one run.

Implementations (same threads, alternating burst by burst, medians; see
versus.median_times):

  f32          libattn, f32 q, k, v, o
  bf16         libattn, bf16 q, k, v, o on the widest ISA (avx512bf16 where
               the CPU has AVX512-BF16: vdpbf16ps for Q Kᵀ and P V)
  bf16-widened libattn, the same bf16 call on ISA avx512 (bf16 widened to
               f32 while packing: the path before issue 14)
  torch-f32    torch.nn.functional.scaled_dot_product_attention, f32
  torch-bf16   the same on bf16 tensors

With --backward the backward alone is timed (libattn: attn_backward with
the LSE of one attn_forward before, gradients in the inputs' dtype; torch:
autograd.grad through one SDPA call, graph retained). FLOPs: 4·sq·sk·d per
head forward, 2.5× that backward, halved for causal. Peaks: attn_fma_peak_gflops and attn_bf16_peak_gflops, measured at
the start and the end of the run (the larger is used); bf16 shares are of
the bf16 peak. Accuracy: max |o − reference| for libattn's bf16 and torch's
bf16 outputs against float64 attention of the same bf16 inputs (seq ≤ 1024).

    python3 bench/bf16_vs_torch.py --threads 2 --markdown bench/out/bf16.md
"""

import argparse
import ctypes
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from compare import machine_info, prepare_env  # noqa: E402
from versus import (SHAPES, median_times, report, shape_arg,  # noqa: E402
                    shapes_from_args, side_by_side_args)

ISA_AVX512 = 3


def tensor(la, t):
    """attn_tensor over a torch tensor in [b, h, s, d] memory, seen as the
    logical [b, s, h, d] libattn expects (strides in elements)."""
    a = la.AttnTensor()
    a.data = t.data_ptr()
    a.dtype = {"torch.bfloat16": la.ATTN_DTYPE_BF16,
               "torch.float16": la.ATTN_DTYPE_F16}.get(str(t.dtype),
                                                      la.ATTN_DTYPE_F32)
    perm = (0, 2, 1, 3)
    for i, ax in enumerate(perm):
        a.shape[i] = t.shape[ax]
        a.stride[i] = t.stride(ax)
    return a


def make_libattn(la, lib, torch, tensors, causal, threads, isa=0,
                 backward=False, both=False, out_dtype=None):
    """A function timing one call: attn_forward, or (backward) attn_backward
    after one untimed forward, or (both) forward then backward. The output
    has the inputs' dtype unless out_dtype says otherwise; gradients always
    have it."""
    q, k, v = tensors
    o = torch.empty_like(q, dtype=out_dtype or q.dtype)
    p = la.AttnParams()
    lib._call(lib._init, p)
    p.q, p.k, p.v, p.o = (tensor(la, x) for x in (q, k, v, o))
    p.causal = la.ATTN_CAUSAL_TOP_LEFT if causal else la.ATTN_CAUSAL_NONE
    # 0: the default context's count, which compare.prepare_env sets to
    # --threads (ATTN_NUM_THREADS); the library then sizes small calls'
    # teams itself, as for any caller who does not pin a count
    pinned = os.environ.get("ATTN_NUM_THREADS") != str(threads)
    p.num_threads = threads if pinned else 0
    p.isa = isa
    p._errbuf = ctypes.create_string_buffer(512)
    p.error_message = ctypes.cast(p._errbuf, ctypes.c_char_p)
    p.error_message_size = 512
    if not backward:
        def run():
            lib.forward(p)
            return o
        return run
    b, h, s = q.shape[:3]
    lse = torch.empty(b, h, s, dtype=torch.float32)
    p.lse = ctypes.cast(lse.data_ptr(), ctypes.POINTER(ctypes.c_float))
    do = torch.randn(q.shape, generator=torch.Generator().manual_seed(1)).to(q.dtype)
    grads = [torch.empty_like(x) for x in (q, k, v)]
    p.dout = tensor(la, do)
    p.dq, p.dk, p.dv = (tensor(la, x) for x in grads)
    p._keep = (o, lse, do, grads)  # alive as long as p

    lib.forward(p)

    def run_bwd():  # p (and so p._keep) lives in this closure
        if both:
            lib.forward(p)
        lib.backward(p)
        return grads

    return run_bwd


def make_torch(torch, tensors, causal, backward=False, both=False):
    """SDPA: the forward under inference_mode, or (backward) autograd.grad
    through one untimed forward, or (both) a forward with grad then
    autograd.grad."""
    import torch.nn.functional as F
    q, k, v = tensors
    if backward:
        qq, kk, vv = (x.clone().requires_grad_(True) for x in (q, k, v))
        do = torch.randn(q.shape, generator=torch.Generator().manual_seed(1)).to(q.dtype)

        out = F.scaled_dot_product_attention(qq, kk, vv, is_causal=causal)

        def run_bwd():
            if both:
                o2 = F.scaled_dot_product_attention(qq, kk, vv, is_causal=causal)
                return torch.autograd.grad(o2, (qq, kk, vv), do)
            return torch.autograd.grad(out, (qq, kk, vv), do, retain_graph=True)

        return run_bwd

    def run():
        with torch.inference_mode():
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    return run


def reference(np, q, k, v, causal):
    """float64 attention of the (bf16-exact) inputs, [b, h, s, d]."""
    q, k, v = (x.double().numpy() for x in (q, k, v))
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1])
    if causal:
        n = s.shape[-1]
        s = np.where(np.tril(np.ones((n, n), bool)), s, -np.inf)
    s = np.exp(s - s.max(-1, keepdims=True))
    return (s / s.sum(-1, keepdims=True)) @ v


def reference_grads(np, q, k, v, do, causal):
    """float64 dQ, dK, dV of the (bf16-exact) inputs and output gradient,
    [b, h, s, d] each: the textbook backward of softmax(q kᵀ / √d) v."""
    q, k, v, do = (x.double().numpy() for x in (q, k, v, do))
    scale = 1.0 / np.sqrt(q.shape[-1])
    s = q @ k.transpose(0, 1, 3, 2) * scale
    if causal:
        n = s.shape[-1]
        s = np.where(np.tril(np.ones((n, n), bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    o = p @ v
    dv = p.transpose(0, 1, 3, 2) @ do
    dp = do @ v.transpose(0, 1, 3, 2)
    ds = p * (dp - (do * o).sum(-1, keepdims=True))
    return ds @ k * scale, ds.transpose(0, 1, 3, 2) @ q * scale, dv


def grad_err(np, got, ref):
    """Largest |got - ref| over the three gradients."""
    return max(float(np.abs(g.double().numpy() - r).max())
               for g, r in zip(got, ref))


def bf16_peak(lib, threads):
    fn = lib.lib.attn_bf16_peak_gflops
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_int, ctypes.c_double, ctypes.POINTER(ctypes.c_double)]
    out = ctypes.c_double(0.0)
    return out.value if fn(threads, 1.0, ctypes.byref(out)) == 0 else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    side_by_side_args(ap)
    ap.add_argument("--backward", action="store_true",
                    help="time the backward instead of the forward")
    shape_arg(ap)
    args = ap.parse_args()
    shapes = shapes_from_args(ap, args, SHAPES)
    notes = prepare_env(args.threads)
    import numpy as np
    import torch
    import libattn_ctypes as la

    torch.set_num_threads(args.threads)
    lib = la.LibAttn(la.find_library(args.build))
    time.sleep(1.0)
    peaks0 = (lib.fma_peak_gflops(args.threads, 1.0), bf16_peak(lib, args.threads))
    widened = lib.isa_best() in ("avx512bf16", "amxbf16")
    lines = ["# bf16 attention%s: libattn %s vs PyTorch %s" % (
        ", backward" if args.backward else "", lib.version(),
        torch.__version__), ""]
    lines += ["- CPU: %s, %d CPUs; libattn ISA %s" % (
        machine_info(), os.cpu_count(), lib.isa_best())]
    lines += ["- " + x for x in notes]
    head = len(lines)
    lines += ["",
              "| shape | f32 ms | bf16 ms | bf16-widened ms | torch-f32 ms | "
              "torch-bf16 ms | bf16 GFLOP/s | % bf16 peak | bf16 / f32 speed | "
              "bf16 / torch-bf16 speed | max err bf16 | max err torch-bf16 |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    rows = []
    for shape in shapes:
        b, h, s, d, causal = shape
        g = torch.Generator().manual_seed(0)
        f32 = [torch.randn(b, h, s, d, generator=g) for _ in range(3)]
        b16 = [x.to(torch.bfloat16) for x in f32]
        bw = args.backward
        fns = {
            "f32": make_libattn(la, lib, torch, f32, causal, args.threads,
                                backward=bw),
            "bf16": make_libattn(la, lib, torch, b16, causal, args.threads,
                                 backward=bw),
            "torch-f32": make_torch(torch, f32, causal, bw),
            "torch-bf16": make_torch(torch, b16, causal, bw),
        }
        if widened:
            fns["bf16-widened"] = make_libattn(la, lib, torch, b16, causal,
                                               args.threads, ISA_AVX512, bw)
        err = ("", "")
        if s <= 1024 and not bw:
            ref = reference(np, *b16, causal)
            err = tuple("%.2e" % np.abs(fns[n]().double().numpy() - ref).max()
                        for n in ("bf16", "torch-bf16"))
        elif s <= 1024:  # the gradients against float64, same dO for both
            do = torch.randn(b16[0].shape, generator=torch.Generator()
                             .manual_seed(1)).to(torch.bfloat16)
            ref = reference_grads(np, *b16, do, causal)
            err = tuple("%.2e" % grad_err(np, fns[n](), ref)
                        for n in ("bf16", "torch-bf16"))
        t = median_times(fns, args.rounds)
        flops = 4.0 * b * h * s * s * d * (0.5 if causal else 1.0)
        flops *= 2.5 if bw else 1.0
        gf = flops / t["bf16"] / 1e9
        rows.append((gf, len(lines)))
        ms = lambda n: "%.3f" % (t[n] * 1e3) if n in t else "–"  # noqa: E731
        lines.append("| b%d h%d s%d d%d%s | %s | %s | %s | %s | %s | %.1f | "
                     "{peak} | %.2f | %.2f | %s | %s |" % (
                         b, h, s, d, " causal" if causal else "", ms("f32"),
                         ms("bf16"), ms("bf16-widened"), ms("torch-f32"),
                         ms("torch-bf16"), gf, t["f32"] / t["bf16"],
                         t["torch-bf16"] / t["bf16"], err[0], err[1]))
        print(lines[-1].replace("{peak}", "(peak at the end)"), flush=True)
    time.sleep(1.0)
    peaks1 = (lib.fma_peak_gflops(args.threads, 1.0), bf16_peak(lib, args.threads))
    peak, peak16 = max(peaks0[0], peaks1[0]), max(peaks0[1], peaks1[1])
    for gf, i in rows:
        lines[i] = lines[i].replace(
            "{peak}", "%.0f%%" % (100 * gf / peak16) if peak16 else "–")
    lines.insert(head, "- threads: %d for everyone; f32 FMA peak %.0f GFLOP/s, "
                 "bf16 dot peak %.0f GFLOP/s (measured in this run, start and "
                 "end: %.0f/%.0f and %.0f/%.0f; the larger is used)" % (
                     args.threads, peak, peak16, peaks0[0], peaks1[0],
                     peaks0[1], peaks1[1]))
    report(lines, args.markdown)


if __name__ == "__main__":
    main()
