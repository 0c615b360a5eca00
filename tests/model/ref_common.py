"""What ref_encdec.py and ref_vit.py share: reading the files `attn train
--parity DIR` writes, the attention of libattn's layer in PyTorch, and the
training loop (AdamW, clipping, warm-up + cosine) that replays the C run.

DIR holds init.safetensors (the C program's initial weights),
batches.safetensors (every batch of the run) and parity.json (the
hyper-parameters, the parameter list in the C program's order with each
one's weight-decay flag, and the C losses). Exit status: 0 when every loss
matches within the tolerance, 1 when one does not, 77 when torch is absent
(ctest's skip code), 2 for usage errors.
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the ctest is skipped, with this reason
    print("torch is not installed: parity check skipped")
    sys.exit(77)

DTYPES = {"F32": np.float32, "I32": np.int32, "I64": np.int64, "U8": np.uint8}


def load_safetensors(path):
    """{name: numpy array} and the metadata of a safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, t in header.items():
        a, b = t["data_offsets"]
        arr = np.frombuffer(data[8 + n + a:8 + n + b], dtype=DTYPES[t["dtype"]])
        out[name] = arr.reshape(t["shape"]).copy()
    return out, meta


def attention(P, pre, x, y, heads, causal=False, kv_len=None):
    """libattn's layer (attn/layer.h) without positions: PyTorch's
    nn.MultiheadAttention with fused in_proj for self-attention, separate
    q/k/v projections for cross-attention; kv_len [B] masks padded keys."""
    D = x.shape[-1]
    if pre + "in_proj_weight" in P:
        W, b = P[pre + "in_proj_weight"], P[pre + "in_proj_bias"]
        q = F.linear(x, W[:D], b[:D])
        k = F.linear(y, W[D:2 * D], b[D:2 * D])
        v = F.linear(y, W[2 * D:], b[2 * D:])
    else:
        q = F.linear(x, P[pre + "q_proj_weight"], P[pre + "q_proj_bias"])
        k = F.linear(y, P[pre + "k_proj_weight"], P[pre + "k_proj_bias"])
        v = F.linear(y, P[pre + "v_proj_weight"], P[pre + "v_proj_bias"])
    B, Sq, Sk, dh = x.shape[0], x.shape[1], y.shape[1], D // heads
    q = q.view(B, Sq, heads, dh).transpose(1, 2)
    k = k.view(B, Sk, heads, dh).transpose(1, 2)
    v = v.view(B, Sk, heads, dh).transpose(1, 2)
    s = q @ k.transpose(-1, -2) / math.sqrt(dh)
    mask = torch.ones(B, 1, Sq, Sk, dtype=torch.bool)
    if kv_len is not None:
        keys = torch.arange(Sk)[None, :] < kv_len[:, None]
        mask = mask & keys[:, None, None, :]
    if causal:
        mask = mask & torch.ones(Sq, Sk, dtype=torch.bool).tril()
    p = torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1)
    o = (p @ v).transpose(1, 2).reshape(B, Sq, heads * dh)
    return F.linear(o, P[pre + "out_proj.weight"], P[pre + "out_proj.bias"])


def ln(P, name, x):
    return F.layer_norm(x, (x.shape[-1],), P[name + ".weight"],
                        P[name + ".bias"], 1e-5)


def lin(P, name, x):
    return F.linear(x, P[name + ".weight"], P[name + ".bias"])


def lr_at(t, warmup, total, peak, min_ratio):
    """train_lr_at of src/model/train_ops.c."""
    if warmup > 0 and t <= warmup:
        return peak * t / warmup
    if total <= warmup:
        return peak
    f = min(1.0, (t - warmup) / (total - warmup))
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * f)))


def main(name, loss_fn):
    """loss_fn(P, cfg, batches, step) -> the loss tensor of that step."""
    ap = argparse.ArgumentParser(description=f"PyTorch reference of attn "
                                 f"train {name}: replays a --parity run")
    ap.add_argument("dir", help="the directory attn train --parity wrote")
    ap.add_argument("--steps", type=int, default=0,
                    help="steps to replay (default: all the run's)")
    ap.add_argument("--tol", type=float, default=1e-4,
                    help="largest relative loss difference accepted")
    ap.add_argument("--double", action="store_true",
                    help="train in float64 (an oracle for the C f32 run)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads (default: torch's)")
    ap.add_argument("--bench", action="store_true",
                    help="time the steps instead (examples per second)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    with open(os.path.join(a.dir, "parity.json")) as f:
        run = json.load(f)
    init, _ = load_safetensors(os.path.join(a.dir, "init.safetensors"))
    batches, _ = load_safetensors(os.path.join(a.dir, "batches.safetensors"))
    dt = torch.float64 if a.double else torch.float32
    cfg = {k: (int(v) if v.isdigit() else v) for k, v in run["config"].items()}
    P, decay, plain = {}, [], []
    for p in run["params"]:
        t = torch.nn.Parameter(torch.from_numpy(init[p["name"]]).to(dt))
        P[p["name"]] = t
        (decay if p["decay"] else plain).append(t)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": run["weight_decay"]},
         {"params": plain, "weight_decay": 0.0}],
        lr=run["lr"], betas=(run["beta1"], run["beta2"]), eps=run["eps"],
        foreach=False)
    steps = a.steps or run["steps"]
    steps = min(steps, run["steps"]) if not a.bench else steps
    t0, worst, worst_at = time.perf_counter(), 0.0, -1
    for s in range(steps):
        lr = lr_at(s + 1, run["warmup"], run["steps"], run["lr"],
                   run["min_lr_ratio"])
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=False)
        loss = loss_fn(P, cfg, batches, s % run["steps"], dt)
        loss.backward()
        if run["clip"] > 0:
            torch.nn.utils.clip_grad_norm_(list(P.values()), run["clip"])
        opt.step()
        if a.bench:
            continue
        c = run["losses"][s]
        rel = abs(loss.item() - c) / abs(c)
        if rel > worst:
            worst, worst_at = rel, s + 1
        if s < 3 or s + 1 == steps or rel > a.tol:
            print(f"step {s + 1:4d}  C {c:.8f}  torch {loss.item():.8f}  "
                  f"rel {rel:.2e}")
    secs = time.perf_counter() - t0
    if a.bench:
        ex = steps * run["batch"] / secs
        print(f"torch {name}: {steps} steps in {secs:.2f} s, {ex:.0f} "
              f"examples/s, {torch.get_num_threads()} threads")
        return 0
    ok = worst <= a.tol
    print(f"{name}: {steps} steps, largest relative loss difference "
          f"{worst:.2e} (step {worst_at}), tolerance {a.tol:.0e}: "
          f"{'ok' if ok else 'FAILED'} ({'float64' if a.double else 'float32'}"
          f" torch)")
    print(f"1 passed, 0 failed" if ok else "0 passed, 1 failed")
    return 0 if ok else 1
