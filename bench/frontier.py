#!/usr/bin/env python3
"""Issue 14's f32 and f16 targets in one run: libattn f32 and f16 against
PyTorch's SDPA in f32, forward and forward+backward, on the shapes of
bench/RESULTS.md and on short and odd ones.

Implementations (same threads, alternating burst by burst, medians; see
versus.median_times):

  f32        libattn, f32 q, k, v, o (and gradients)
  f16        libattn, f16 q, k, v, o (and gradients): widened once per key
             panel and query tile with F16C where the CPU has it
  torch-f32  torch.nn.functional.scaled_dot_product_attention, f32

"fwd" times attn_forward / SDPA under inference_mode; "fwd+bwd" times a
forward then the backward (libattn: attn_forward, attn_backward; torch: SDPA
with grad, autograd.grad). FLOPs: 4·sq·sk·d per head forward, 3.5× that
for forward+backward (forward 1, backward 2.5), halved for causal, whatever
an implementation computes. The FMA peak (attn_fma_peak_gflops) is measured
at the start and the end of the run; the larger is used. After the table:
causal time over full time at each length and head_dim (ideal 0.5).

    python3 bench/frontier.py --threads 2 --markdown bench/out/frontier.md
    python3 bench/frontier.py --shape 1,1,512,64 --modes fwd   # chosen shapes
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bf16_vs_torch import make_libattn, make_torch  # noqa: E402
from compare import machine_info, prepare_env  # noqa: E402
from versus import (SHAPES, median_times, report, shape_arg,  # noqa: E402
                    shapes_from_args, side_by_side_args)

# short and odd shapes of issue 14: head_dim 80/96/112, batch x heads
# below the thread count
ODD = [
    (1, 8, 512, 80, False),
    (1, 8, 512, 96, False),
    (1, 8, 512, 112, False),
    (1, 8, 128, 96, False),
    (1, 8, 512, 112, True),
    (1, 1, 128, 64, False),
    (1, 1, 512, 64, False),
    (1, 1, 4096, 64, False),
    (1, 1, 4096, 64, True),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    side_by_side_args(ap, markdown="also write the report here")
    ap.add_argument("--modes", default="fwd,fwd+bwd",
                    help="comma-separated: fwd, fwd+bwd")
    ap.add_argument("--pause", type=float, default=0.2,
                    help="idle seconds before each burst (versus.median_times;"
                    " short calls after a long pause time the VM's wake-up "
                    "too: bench/burst_pin.py)")
    shape_arg(ap)
    args = ap.parse_args()
    notes = prepare_env(args.threads)
    import torch
    import libattn_ctypes as la

    torch.set_num_threads(args.threads)
    lib = la.LibAttn(la.find_library(args.build))
    time.sleep(1.0)
    peak0 = lib.fma_peak_gflops(args.threads, 1.0)
    lines = ["# f32 and f16 frontier: libattn %s vs PyTorch %s" % (
        lib.version(), torch.__version__), ""]
    lines += ["- CPU: %s, %d CPUs; libattn ISA %s" % (
        machine_info(), os.cpu_count(), lib.isa_best())]
    lines += ["- " + x for x in notes]
    head = len(lines)
    lines += ["",
              "| shape | pass | f32 ms | f16 ms | torch-f32 ms | f32 GFLOP/s "
              "| % FMA peak | f16 / f32 speed | f32 / torch speed |",
              "|---|---|---|---|---|---|---|---|---|"]
    rows, times = [], {}
    shapes = shapes_from_args(ap, args, SHAPES + ODD)
    for mode in args.modes.split(","):
        both = mode == "fwd+bwd"
        for shape in shapes:
            b, h, s, d, causal = shape
            g = torch.Generator().manual_seed(0)
            f32 = [torch.randn(b, h, s, d, generator=g) for _ in range(3)]
            f16 = [x.to(torch.float16) for x in f32]
            fns = {
                "f32": make_libattn(la, lib, torch, f32, causal, args.threads,
                                    backward=both, both=both),
                "f16": make_libattn(la, lib, torch, f16, causal, args.threads,
                                    backward=both, both=both),
                "torch-f32": make_torch(torch, f32, causal, both, both),
            }
            t = median_times(fns, args.rounds, args.pause)
            times[(mode, shape)] = t
            flops = 4.0 * b * h * s * s * d * (0.5 if causal else 1.0)
            flops *= 3.5 if both else 1.0
            gf = flops / t["f32"] / 1e9
            rows.append((gf, len(lines)))
            lines.append("| b%d h%d s%d d%d%s | %s | %.3f | %.3f | %.3f | "
                         "%.1f | {peak} | %.2f | %.2f |" % (
                             b, h, s, d, " causal" if causal else "", mode,
                             t["f32"] * 1e3, t["f16"] * 1e3,
                             t["torch-f32"] * 1e3, gf, t["f32"] / t["f16"],
                             t["torch-f32"] / t["f32"]))
            print(lines[-1], flush=True)
    time.sleep(1.0)
    peak = max(peak0, lib.fma_peak_gflops(args.threads, 1.0))
    for gf, i in rows:
        lines[i] = lines[i].replace("{peak}", "%.0f%%" % (100 * gf / peak))
    lines.insert(head, "- threads: %d for everyone; f32 FMA peak %.0f GFLOP/s "
                 "(measured at the start and the end of this run, the larger);"
                 " %.2f s idle before each burst"
                 % (args.threads, peak, args.pause))
    lines += ["", "Causal over full (libattn f32; ideal 0.5):", ""]
    for (mode, (b, h, s, d, causal)), t in times.items():
        full = times.get((mode, (b, h, s, d, False)))
        if causal and full:
            lines.append("- b%d h%d s%d d%d %s: %.3f (torch %.3f)" % (
                b, h, s, d, mode, t["f32"] / full["f32"],
                t["torch-f32"] / full["torch-f32"]))
    report(lines, args.markdown)


if __name__ == "__main__":
    main()
