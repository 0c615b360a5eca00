#!/usr/bin/env python3
"""PyTorch reference of `attn train encdec` (src/model/encdec.h): the
encoder-decoder Transformer of "Attention Is All You Need" (post-LN, ReLU,
sinusoidal positions), written from the same equations, replaying a run of
the C program from its initial weights and batches:

    attn train encdec --steps 50 --parity DIR
    python3 tests/model/ref_encdec.py DIR            # losses within 1e-4
    python3 tests/model/ref_encdec.py DIR --bench --threads 2 --steps 100
"""
import math
import sys

import numpy as np

from ref_common import attention, lin, ln, main, torch, F


def sinusoidal(n, d):
    """attn_sinusoidal_table: [2i] sin, [2i + 1] cos, in double."""
    pos = np.arange(n)[:, None]
    inv = 10000.0 ** (-np.arange(0, d, 2) / d)
    pe = np.zeros((n, d))
    pe[:, 0::2] = np.sin(pos * inv)
    pe[:, 1::2] = np.cos(pos * inv)
    return torch.from_numpy(pe.astype(np.float32))


def loss_fn(P, cfg, batches, s, dt):
    D, H = cfg["d_model"], cfg["heads"]
    src = torch.from_numpy(batches["src"][s]).long()          # [B, S]
    src_len = torch.from_numpy(batches["src_len"][s]).long()  # [B]
    tgt_in = torch.from_numpy(batches["tgt_in"][s]).long()    # [B, T]
    tgt_out = torch.from_numpy(batches["tgt_out"][s]).long()  # [B, T]
    S, T = src.shape[1], tgt_in.shape[1]
    pe = sinusoidal(max(S, T), D).to(dt)
    scale = float(np.float32(math.sqrt(D)))
    x = P["src_emb.weight"][src] * scale + pe[:S]              # [B, S, D]
    for l in range(cfg["n_enc"]):
        p = f"enc.{l}."
        h = ln(P, p + "ln1", x + attention(P, p + "self_attn.", x, x, H,
                                           kv_len=src_len))
        f = lin(P, p + "ff2", torch.relu(lin(P, p + "ff1", h)))
        x = ln(P, p + "ln2", h + f)
    mem = x
    y = P["tgt_emb.weight"][tgt_in] * scale + pe[:T]           # [B, T, D]
    for l in range(cfg["n_dec"]):
        p = f"dec.{l}."
        h1 = ln(P, p + "ln1", y + attention(P, p + "self_attn.", y, y, H,
                                            causal=True))
        h2 = ln(P, p + "ln2", h1 + attention(P, p + "cross_attn.", h1, mem,
                                             H, kv_len=src_len))
        f = lin(P, p + "ff2", torch.relu(lin(P, p + "ff1", h2)))
        y = ln(P, p + "ln3", h2 + f)
    logits = lin(P, "out", y)                                  # [B, T, V]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                           tgt_out.reshape(-1), ignore_index=-1,
                           label_smoothing=0.1)


if __name__ == "__main__":
    sys.exit(main("encdec", loss_fn))
