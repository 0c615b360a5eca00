#!/usr/bin/env python3
"""Writes the seed corpus of fuzz/params2_fuzz.c into fuzz/corpus/params2/.

Deterministic: the same files every run (no randomness, no clock). Each seed
is the byte sequence carve() in params2_fuzz.c reads, field by field:

  mode, batch-1, hk-1, hq/hk-1, sq (2 bytes), sk (2 bytes), d-1, dv-1,
  dtype, bhsd, causal, window (3: then wl+1, wr+1), kv_lens (2 = on),
  bias (2 = on), softcap (3: then cap-1), alibi (3 = on), scale (3: then
  scale*10-1), magnitudes (modes 0/2: q, k, v of {1, 16, 1e-40}; mode 1:
  q, k exponents of {0,4,8,15,18,30}, v, bias of {0,10,20,30}), then
  mode 2: target (q k v bias), value (NaN +inf -inf), batch, row (2 bytes),
  head, column [, bias key (2 bytes)]; mode 3: backward?, x, y, kind
  (0 same start, 1 touching after, 2 touching before, 3 overlapping),
  delta (2 bytes), threads-1; modes 0/1 then optionally 0xC5, pattern
  (0 strided, 1 fixed), L-2, C-1 (Child et al.'s patterns); then
  optionally 0xD3, d = dv = 32 << (byte % 2), bf16 (byte % 2) with at most
  48 query rows; the last byte feeds the data seed.

Usage: python3 fuzz/gen_params2_corpus.py [OUTDIR]
"""
import os
import sys

EDGES = [1, 2, 3, 5, 7, 13, 31, 47, 48, 49, 63, 64, 65, 95, 96, 97, 127, 128,
         129, 143, 144, 145, 191, 192, 193, 255, 256, 257, 287, 288, 289, 300]
MAXLEN = {0: 300, 1: 160, 2: 200, 3: 40}


def length(n, mode):
    """Two bytes that pick_len() decodes to n (1 <= n <= MAXLEN[mode])."""
    mx = MAXLEN[mode]
    assert 1 <= n <= mx
    if n in EDGES:
        return [EDGES.index(n), 0]
    for a in range(128, 256):
        for b in range(256):
            if 1 + (a * 256 + b) % mx == n:
                return [a, b]
    raise ValueError(n)


def head(mode, batch, hk, g, sq, sk, d, dv, dt=0, bhsd=0, causal=0,
         window=None, kv=False, bias=False, softcap=0, alibi=False, scale=0):
    b = [mode, batch - 1, hk - 1, g - 1] + length(sq, mode) + length(sk, mode)
    b += [d - 1, dv - 1, dt, bhsd, causal]
    b += [3, window[0] + 1, window[1] + 1] if window else [0]
    b += [2 if kv else 0, 2 if bias else 0]
    b += [3, softcap - 1] if softcap else [0]
    b += [3 if alibi else 0]
    b += [3, scale - 1] if scale else [0]
    return b


def seeds():
    out = {}
    # mode 0: long sequences at tile edges, every option, the oracles
    shapes = [(1, 1), (47, 65), (48, 64), (49, 63), (97, 129), (193, 257),
              (300, 289), (13, 300), (300, 7), (145, 192)]
    for n, (sq, sk) in enumerate(shapes):
        opts = dict(dt=n % 3, bhsd=n % 2, causal=n % 3,
                    kv=n % 4 == 1, bias=n % 3 == 2, softcap=5 if n % 5 == 3
                    else 0, alibi=n % 4 == 2,
                    window=(20, 3) if n % 6 == 4 else None)
        b = head(0, 1 + n % 2, 1 + n % 2, 1 + (n // 2) % 2, sq, sk,
                 1 + n % 8, 1 + (n * 3) % 8, **opts)
        out["acc_%02d_%dx%d" % (n, sq, sk)] = b + [0, 0, 0, n]
    for n, mags in enumerate([(2, 0, 0), (0, 2, 0), (0, 0, 2), (2, 2, 2),
                              (1, 1, 1)]):
        b = head(0, 1, 1, 2, 65, 129, 4, 4, dt=0)
        out["acc_denormal_%d" % n] = b + list(mags) + [n]
    # mode 1: huge logits, huge V and bias
    huge = [(5, 0, 3, 0), (3, 3, 0, 0), (4, 4, 3, 3), (0, 5, 3, 3),
            (2, 2, 2, 1), (5, 1, 3, 0)]
    for n, mags in enumerate(huge):
        for dt in range(3):
            b = head(1, 1 + n % 2, 1, 2, [64, 129, 49, 160, 7, 96][n],
                     [65, 63, 160, 1, 128, 47][n], 1 + (n * 5) % 16,
                     1 + n % 16, dt=dt, causal=n % 3, bias=n % 2 == 1,
                     softcap=10 if n == 2 else 0)
            out["huge_%d_dt%d" % (n, dt)] = b + list(mags) + [n, dt]
    # mode 2: one NaN / +inf / -inf in q, k, v or the bias
    for t in range(4):
        for v in range(3):
            for n, (sq, sk, causal, kv, win) in enumerate(
                    [(65, 129, 1, False, None), (97, 65, 0, True, None),
                     (49, 200, 2, False, (30, 0))]):
                b = head(2, 2, 2, 2, sq, sk, 4, 3, dt=(t + n) % 3,
                         bhsd=n % 2, causal=causal, kv=kv, window=win,
                         bias=t == 3)
                b += [0, 0, 0]  # magnitudes 1
                row = [sq, sk, sk, sq][t] // 2 + n
                b += [t, v, 1, row >> 8, row & 255, 1, 2]
                if t == 3:
                    key = sk // 2 + 5 * n
                    b += [key >> 8, key & 255]
                out["nonfinite_%s_%s_%d" % ("qkvb"[t], "npm"[v], n)] = \
                    b + [n]
    # mode 2, V under a causal mask: rows of a live tile that cannot see
    # the key (the documented 0 * x exception of attn.h)
    for causal in (1, 2):
        b = head(2, 1, 1, 1, 130, 130, 4, 3, causal=causal)
        out["nonfinite_v_tile_causal%d" % causal] = \
            b + [0, 0, 0, 2, 0, 0, 0, 70, 0, 1, causal]
    # mode 3: every pair of buffers, every kind of overlap
    for bwd, nbuf in ((0, 5), (1, 9)):
        for x in range(nbuf):
            for y in range(x + 1, nbuf):
                for kind in range(4):
                    n = len(out)
                    b = head(3, 1 + n % 2, 1 + (n // 2) % 2, 1 + (n // 4) % 2,
                             5 + n % 31, 3 + (n * 7) % 37, 1 + n % 8,
                             1 + (n * 3) % 8, bhsd=n % 2, causal=n % 3)
                    b += [bwd, x, y - 1, kind, (n * 37) % 256, n % 256,
                          n % 3, n % 256]
                    out["alias_%s_%d_%d_%d" % ("fb"[bwd], x, y, kind)] = b
    # modes 0 and 1 with Child et al.'s patterns (the split path): every
    # option of head() the split takes, seq_q != seq_k both ways
    pats = [(0, 16, 1), (1, 8, 3), (0, 5, 1), (1, 31, 31), (0, 64, 1),
            (1, 4, 2), (0, 2, 1), (1, 48, 5)]
    for n, (kind, L, C) in enumerate(pats):
        sq, sk = [(300, 300), (97, 129), (129, 97), (65, 300), (300, 64),
                  (48, 96), (13, 31), (192, 240)][n]
        opts = dict(dt=n % 3, bhsd=n % 2, causal=n % 2, kv=n % 4 == 1,
                    bias=n % 3 == 0, alibi=n % 4 == 2,
                    window=(40, 0) if n % 4 == 3 else None)
        b = head(0, 1 + n % 2, 1 + (n // 2) % 2, 1 + n % 2, sq, sk,
                 1 + n % 8, 1 + (n * 5) % 8, **opts)
        out["acc_sparse_%d_%s%d" % (n, "sf"[kind], L)] = \
            b + [n % 2, 0, 0] + [0xC5, kind, L - 2, C - 1, n]
    for n, (kind, L, C) in enumerate(pats[:3]):
        b = head(1, 1, 1, 2, [129, 64, 160][n], [160, 96, 129][n], 8, 8,
                 dt=n, causal=1, bias=n == 1)
        out["huge_sparse_%d_%s%d" % (n, "sf"[kind], L)] = \
            b + [4, 3, 2, 1] + [0xC5, kind, L - 2, C - 1, n]
    # modes 0 and 1 with head dims 32 and 64 (marker 0xD3 after the sparse
    # slot): the bf16 dot-product decode (up to 48 query rows) and tiles
    for n in range(6):
        mode = n % 2
        sq, sk = [(1, 1), (4, 160), (48, 300), (13, 64), (2, 160), (47, 97)][n]
        b = head(mode, 1 + n % 2, 1 + (n // 2) % 2, [4, 2, 1][n % 3], sq, sk,
                 8, 8, dt=1, bhsd=n % 2, causal=n % 3, kv=n == 3,
                 bias=n == 4, softcap=7 if n == 5 else 0, alibi=n == 2)
        mags = [0, 1, 0] if mode == 0 else [3, 3, 2, 1]
        out["wide_%d_d%d_%dx%d" % (n, 32 << (n % 2), sq, sk)] = \
            b + mags + [0, 0xD3, n % 2, 1, n]
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        here, "corpus", "params2")
    os.makedirs(outdir, exist_ok=True)
    for name, b in sorted(seeds().items()):
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(bytes(b))
    print("%d seeds in %s" % (len(seeds()), outdir))


if __name__ == "__main__":
    main()
