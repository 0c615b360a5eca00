#!/usr/bin/env python3
"""Linear attention (include/attn/linear.h) against PyTorch, same maths, same
threads, same run.

PyTorch runs the same maths as libattn: phi(x) = elu(x) + 1, weights
phi(q) . phi(k), no scale, the denominator clamped at FLT_MIN; causal in
the same chunked form (chunks of 64 query rows: exact lower-triangular
weights inside the chunk, the running state S = sum phi(k) v^T, z = sum
phi(k) of the keys before it), non-causal as phi(Q) (phi(K)^T V) /
phi(Q) (phi(K)^T 1). Forward, and forward + backward (torch: autograd
through the same code; libattn: attn_linear_forward then
attn_linear_backward). Batch 1, 8 heads, head_dim 64, f32, inputs in
torch's [batch, heads, seq, dim] buffers, read by libattn through strided
views. Outputs are checked against each other first (max abs difference,
must be <= 1e-4 relative to max |o|), then R rounds alternate the two
implementations; medians, in ms and in tokens/s.

    python3 bench/linear_vs_torch.py [--threads 2] [--seqs 1024,4096,16384]
        [--build build] [-r 5] [--no-backward]

Timings on a shared machine are noisy; the lead re-measures alone.
"""

import argparse
import ctypes
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seqs", default="1024,4096,16384")
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--build", default=None, help="dir of libattn.so (build)")
    ap.add_argument("-r", "--repeats", type=int, default=5)
    ap.add_argument("--no-backward", action="store_true")
    return ap.parse_args()


args = parse()
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = str(args.threads)

import torch  # noqa: E402  (after the thread variables)
import torch.nn.functional as F  # noqa: E402

from libattn_ctypes import AttnTensor, c_enum, find_library  # noqa: E402

torch.set_num_threads(args.threads)
FLT_MIN = 1.1754943508222875e-38
CHUNK = 64


class AttnLinearParams(ctypes.Structure):
    """typedef struct attn_linear_params (attn/linear.h)"""

    _fields_ = [
        ("q", AttnTensor),
        ("k", AttnTensor),
        ("v", AttnTensor),
        ("o", AttnTensor),
        ("causal", c_enum),
        ("dout", AttnTensor),
        ("dq", AttnTensor),
        ("dk", AttnTensor),
        ("dv", AttnTensor),
        ("num_threads", ctypes.c_int),
        ("workspace", ctypes.c_void_p),
        ("workspace_size", ctypes.c_size_t),
        ("error_message", ctypes.c_char_p),
        ("error_message_size", ctypes.c_size_t),
    ]


def view(t):
    """attn_tensor of a torch [b, h, s, d] f32 tensor, logical bshd."""
    x = AttnTensor()
    x.data = t.data_ptr()
    x.dtype = 0
    b, h, s, d = t.shape
    sb, sh, ss, sd = t.stride()
    x.shape[:] = [b, s, h, d]
    x.stride[:] = [sb, ss, sh, sd]
    return x


class Lin:
    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        for n in ("attn_linear_forward_sized", "attn_linear_backward_sized"):
            getattr(self.lib, n).restype = c_enum
        self.lib.attn_linear_params_init_sized.restype = None
        self.msg = ctypes.create_string_buffer(512)

    def params(self, q, k, v, o, causal, dout=None, dq=None, dk=None, dv=None):
        p = AttnLinearParams()
        self.lib.attn_linear_params_init_sized(ctypes.byref(p),
                                               ctypes.c_size_t(ctypes.sizeof(p)))
        p.q, p.k, p.v, p.o = view(q), view(k), view(v), view(o)
        if dout is not None:
            p.dout, p.dq, p.dk, p.dv = view(dout), view(dq), view(dk), view(dv)
        p.causal = 1 if causal else 0
        p.num_threads = args.threads
        p.error_message = ctypes.cast(self.msg, ctypes.c_char_p)
        p.error_message_size = 512
        return p

    def call(self, name, p):
        st = getattr(self.lib, name)(None, ctypes.byref(p),
                                     ctypes.c_size_t(ctypes.sizeof(p)))
        if st != 0:
            raise RuntimeError("%s: %d %s" % (name, st, self.msg.value.decode()))


def phi(x):
    return F.elu(x) + 1.0


def torch_linear(q, k, v, causal):
    """The same maths in torch: q [b, h, s, d], k, v [b, h, s, d|dv]."""
    qf, kf = phi(q), phi(k)
    if not causal:
        S = kf.transpose(-1, -2) @ v
        z = kf.sum(-2).unsqueeze(-1)
        return (qf @ S) / (qf @ z).clamp_min(FLT_MIN)
    b, h, s, d = q.shape
    S = q.new_zeros(b, h, d, v.shape[-1])
    z = q.new_zeros(b, h, d, 1)
    tri = torch.ones(CHUNK, CHUNK, dtype=q.dtype).tril()
    outs = []
    for i0 in range(0, s, CHUNK):
        i1 = min(i0 + CHUNK, s)
        n = i1 - i0
        qc, kc, vc = qf[..., i0:i1, :], kf[..., i0:i1, :], v[..., i0:i1, :]
        w = (qc @ kc.transpose(-1, -2)) * tri[:n, :n]
        num = qc @ S + w @ vc
        den = qc @ z + w.sum(-1, keepdim=True)
        outs.append(num / den.clamp_min(FLT_MIN))
        S = S + kc.transpose(-1, -2) @ vc
        z = z + kc.sum(-2).unsqueeze(-1)
    return torch.cat(outs, dim=-2)


def median_ms(fn, reps):
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(t)


def main():
    lin = Lin(find_library(args.build))
    H, D = args.heads, args.dim
    print("linear attention: b1 h%d d%d f32, threads %d, median of %d (ms); "
          "torch %s; %s" % (H, D, args.threads, args.repeats, torch.__version__,
                            lin.lib._name))
    print("%7s %-7s %-8s %10s %10s %8s %14s" %
          ("seq", "causal", "pass", "libattn", "torch", "torch/x", "libattn tok/s"))
    ok = True
    for s in [int(x) for x in args.seqs.split(",")]:
        g = torch.Generator().manual_seed(s)
        q = torch.randn(1, H, s, D, generator=g) * 0.5
        k = torch.randn(1, H, s, D, generator=g) * 0.5
        v = torch.randn(1, H, s, D, generator=g)
        do = torch.randn(1, H, s, D, generator=g)
        o = torch.empty(1, H, s, D)
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        for causal in (True, False):
            p = lin.params(q, k, v, o, causal, do, dq, dk, dv)
            lin.call("attn_linear_forward_sized", p)
            with torch.no_grad():
                ref = torch_linear(q, k, v, causal)
            err = (o - ref).abs().max().item() / max(1e-30, ref.abs().max().item())
            if not err <= 1e-4:
                print("  seq %d causal %d: libattn vs torch: %.3g (> 1e-4)" %
                      (s, causal, err))
                ok = False

            def lib_fwd():
                lin.call("attn_linear_forward_sized", p)

            def torch_fwd():
                with torch.no_grad():
                    torch_linear(q, k, v, causal)

            def lib_bwd():
                lin.call("attn_linear_forward_sized", p)
                lin.call("attn_linear_backward_sized", p)

            qg, kg, vg = (x.clone().requires_grad_(True) for x in (q, k, v))

            def torch_bwd():
                out = torch_linear(qg, kg, vg, causal)
                out.backward(do)

            passes = [("fwd", lib_fwd, torch_fwd)]
            if not args.no_backward:
                lib_bwd()
                torch_bwd()
                gerr = max((a - b.grad).abs().max().item() /
                           max(1e-30, b.grad.abs().max().item())
                           for a, b in ((dq, qg), (dk, kg), (dv, vg)))
                if not gerr <= 1e-3:
                    print("  seq %d causal %d: gradients differ: %.3g" %
                          (s, causal, gerr))
                    ok = False
                passes.append(("fwd+bwd", lib_bwd, torch_bwd))
            for name, fl, ft in passes:
                tl, tt = [], []
                fl(), ft()  # warm-up
                for _ in range(args.repeats):  # alternate
                    tl.append(median_ms(fl, 1))
                    tt.append(median_ms(ft, 1))
                ml, mt = statistics.median(tl), statistics.median(tt)
                print("%7d %-7s %-8s %10.2f %10.2f %8.2f %14.0f" %
                      (s, "yes" if causal else "no", name, ml, mt, mt / ml,
                       s / (ml * 1e-3)))
                sys.stdout.flush()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
