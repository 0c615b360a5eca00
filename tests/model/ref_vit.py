#!/usr/bin/env python3
"""PyTorch reference of `attn train vit` (src/model/vit.h): a pre-LN Vision
Transformer on 8x8 digits (patches as tokens, a class token, learned
positions, exact GELU), written from the same equations, replaying a run of
the C program from its initial weights and batches:

    attn train vit --steps 50 --parity DIR
    python3 tests/model/ref_vit.py DIR               # losses within 1e-4
    python3 tests/model/ref_vit.py DIR --bench --threads 2 --steps 100
"""
import sys

from ref_common import attention, lin, ln, main, torch, F


def loss_fn(P, cfg, batches, s, dt):
    Pz, H = cfg["patch"], cfg["heads"]
    G = 8 // Pz
    images = torch.from_numpy(batches["images"][s]).to(dt)   # [B, 64]
    labels = torch.from_numpy(batches["labels"][s]).long()    # [B]
    B = images.shape[0]
    patches = (images.view(B, G, Pz, G, Pz).permute(0, 1, 3, 2, 4)
               .reshape(B, G * G, Pz * Pz))                    # [B, NP, PD]
    t = lin(P, "patch", patches)                               # [B, NP, D]
    cls = P["cls"].view(1, 1, -1).expand(B, 1, -1)
    x = torch.cat([cls, t], dim=1) + P["pos"]                  # [B, Q, D]
    for l in range(cfg["layers"]):
        p = f"blocks.{l}."
        h = ln(P, p + "ln1", x)
        x = x + attention(P, p + "attn.", h, h, H)
        h = ln(P, p + "ln2", x)
        x = x + lin(P, p + "ff2", F.gelu(lin(P, p + "ff1", h)))
    logits = lin(P, "head", ln(P, "ln_f", x[:, 0]))            # [B, C]
    return F.cross_entropy(logits, labels, label_smoothing=0.1)


if __name__ == "__main__":
    sys.exit(main("vit", loss_fn))
