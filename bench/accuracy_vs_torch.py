"""accuracy_vs_torch.py - libattn's forward and backward against PyTorch's
CPU flash kernel and a naive float32 implementation, all measured against a
float64 reference, on random cases with large logits (fuzz/RESULTS.md,
params2 finding).

    PYTHONPATH=python ATTN_LIBRARY=build/libattn.so.0 \
        python3 bench/accuracy_vs_torch.py [seed (0)] [cases (40)]

Each case: batch 1, 2 heads, head_dim 2/8/16/64, seq_q 1-80, seq_k 16-300,
Q, K, V uniform in [-m, m] with m = 4 or 16. Prints, per gradient, the
median and the largest over the cases of max|error| / max|gradient|, and
the forward's LSE error in ulps and O's relative error.
"""
import math
import sys

import numpy as np
import torch

import attn


def ref64(q, k, v, do, scale):
    Q, K, V = [torch.tensor(x, dtype=torch.float64).transpose(1, 2)
               .requires_grad_() for x in (q, k, v)]
    O = torch.softmax(Q @ K.transpose(-1, -2) * scale, -1) @ V
    O.backward(torch.tensor(do, dtype=torch.float64).transpose(1, 2))
    return [x.grad.transpose(1, 2).numpy() for x in (Q, K, V)]


def torch_flash(q, k, v, do, scale):
    Q, K, V, dO = [torch.tensor(x).transpose(1, 2).contiguous()
                   for x in (q, k, v, do)]
    ops = torch.ops.aten
    out, lse = ops._scaled_dot_product_flash_attention_for_cpu(
        Q, K, V, 0.0, False, scale=scale)
    g = ops._scaled_dot_product_flash_attention_for_cpu_backward(
        dO, Q, K, V, out, lse, 0.0, False, scale=scale)
    return [x.transpose(1, 2).double().numpy() for x in g], \
        out.transpose(1, 2).double().numpy(), lse.double().numpy()


def naive32(q, k, v, do, scale):
    Q, K, V = [torch.tensor(x).transpose(1, 2).requires_grad_()
               for x in (q, k, v)]
    O = torch.softmax(Q @ K.transpose(-1, -2) * scale, -1) @ V
    O.backward(torch.tensor(do).transpose(1, 2))
    return [x.grad.transpose(1, 2).double().numpy() for x in (Q, K, V)]


def libattn(q, k, v, do, scale):
    o, lse = attn.forward(q, k, v, scale=scale, return_lse=True, threads=1)
    g = attn.backward(do, q, k, v, o, lse, scale=scale, threads=1)
    return [x.astype(np.float64) for x in g], o.astype(np.float64), \
        lse.astype(np.float64)


def main():
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    cases = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    grads = {"naive f32": [], "torch flash": [], "libattn": []}
    fwd = {"torch flash": [], "libattn": []}
    for _ in range(cases):
        d = int(rng.choice([2, 8, 16, 64]))
        mag = float(rng.choice([4, 16]))
        sq, sk, h = int(rng.integers(1, 80)), int(rng.integers(16, 300)), 2
        q, k, v = [(rng.uniform(-1, 1, (1, s, h, d)) * mag).astype(np.float32)
                   for s in (sq, sk, sk)]
        do = rng.uniform(-1, 1, (1, sq, h, d)).astype(np.float32)
        scale = 1 / math.sqrt(d)
        r = ref64(q, k, v, do, scale)
        s64 = np.einsum("bshd,bthd->bhst", q.astype(np.float64),
                        k.astype(np.float64)) * scale
        m = s64.max(-1, keepdims=True)
        lse = (m + np.log(np.exp(s64 - m).sum(-1, keepdims=True)))[..., 0]
        o64 = np.einsum("bhst,bthd->bshd", np.exp(s64 - lse[..., None]),
                        v.astype(np.float64))
        ulp = np.spacing(np.abs(lse).astype(np.float32)).astype(np.float64)
        outs = {"naive f32": (naive32(q, k, v, do, scale), None, None),
                "torch flash": torch_flash(q, k, v, do, scale),
                "libattn": libattn(q, k, v, do, scale)}
        for name, (g, o, ls) in outs.items():
            grads[name].append([np.abs(a - b).max() / max(np.abs(b).max(),
                                                           1e-30)
                                for a, b in zip(g, r)])
            if o is not None:
                fwd[name].append([np.abs(ls - lse).max() / ulp.min(),
                                  np.abs(o - o64).max() / np.abs(o64).max()])
    print(f"accuracy_vs_torch: seed {seed}, {cases} cases, torch "
          f"{torch.__version__}; median / max over cases of "
          "max|err| / max|grad|")
    for name, a in grads.items():
        a = np.array(a)
        print(f"  {name:12s} " + "  ".join(
            f"{g} {np.median(a[:, i]):.2e} / {a[:, i].max():.2e}"
            for i, g in enumerate(("dq", "dk", "dv"))))
    for name, a in fwd.items():
        a = np.array(a)
        print(f"  {name:12s} forward: LSE {np.median(a[:, 0]):.2f} / "
              f"{a[:, 0].max():.2f} ulp, O {np.median(a[:, 1]):.2e} / "
              f"{a[:, 1].max():.2e}")


if __name__ == "__main__":
    main()
