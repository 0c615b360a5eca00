"""Shared helpers: random problems and the tolerance rule."""

import numpy as np

import oracle

# Lengths that hit the kernels' edges: 1, tile edges +-1 (ATTN_TILE_Q 48,
# ATTN_TILE_K 64) and primes.
LENGTHS = [1, 2, 5, 13, 47, 48, 49, 63, 64, 65, 97]
DIMS = [1, 8, 16, 31, 64, 80]


def close(got, ref, ref32, extra=0.0):
    """libattn's f32 result against the f64 oracle: at most twice the error
    of the same oracle run in float32 (a naive same-precision
    implementation, FlashAttention's test rule), plus 1e-6 absolute for
    values so small that the naive error is 0, plus extra (the rounding of
    a half-precision output: extra * |ref|)."""
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    fin = np.isfinite(ref)
    r = np.where(fin, ref, 0)
    naive = np.abs(np.where(fin, np.asarray(ref32, np.float64), 0) - r)
    naive = np.where(np.isfinite(naive), naive, 0)
    bound = 2 * naive.max(initial=0) + 1e-6 + extra * np.abs(r)
    # an infinite reference (lse of a row without keys) must be matched
    err = np.where(fin, np.abs(got - r), np.where(got == ref, 0, np.inf))
    bad = ~(err <= bound)
    assert not bad.any(), (
        "max err %g (bound %g) at %s: got %r, ref %r" %
        (np.nanmax(err), np.max(bound), np.argwhere(bad)[0],
         got[tuple(np.argwhere(bad)[0])], ref[tuple(np.argwhere(bad)[0])]))


def random_problem(rng, varlen=False):
    """(q, k, v, kwargs for attn.forward, opts for the oracle)."""
    hk = int(rng.choice([1, 2, 3]))
    hq = hk * int(rng.choice([1, 2, 4]))
    d = int(rng.choice(DIMS))
    dv = d if rng.random() < 0.7 else int(rng.choice(DIMS))
    kw, op = {}, {}
    if varlen:
        nb = int(rng.integers(1, 4))
        lq = rng.choice(LENGTHS, nb)
        lk = rng.choice(LENGTHS, nb)
        cu_q = np.concatenate([[0], np.cumsum(lq)]).astype(np.int32)
        cu_k = np.concatenate([[0], np.cumsum(lk)]).astype(np.int32)
        b, sq, sk = 1, int(cu_q[-1]), int(cu_k[-1])
        kw.update(cu_seqlens_q=cu_q, cu_seqlens_k=cu_k)
        op.update(cu_q=cu_q, cu_k=cu_k)
        nseq, msq, msk = nb, int(lq.max()), int(lk.max())
    else:
        b = int(rng.integers(1, 3))
        sq, sk = (int(x) for x in rng.choice(LENGTHS, 2))
        nseq, msq, msk = b, sq, sk
    q = rng.standard_normal((b, sq, hq, d), dtype=np.float32)
    k = rng.standard_normal((b, sk, hk, d), dtype=np.float32)
    v = rng.standard_normal((b, sk, hk, dv), dtype=np.float32)
    if rng.random() < 0.5:
        c = int(rng.integers(1, 3))
        kw.update(causal=True,
                  causal_align="bottom_right" if c == 1 else "top_left")
        op["causal"] = c
    if rng.random() < 0.3:
        w = (int(rng.integers(-1, 20)), int(rng.integers(-1, 20)))
        kw["window"] = w
        op["window"] = w
    if rng.random() < 0.3:
        kw["scale"] = op["scale"] = float(rng.uniform(0.05, 0.5))
    if rng.random() < 0.3:
        kw["softcap"] = op["softcap"] = float(rng.uniform(2, 30))
    if rng.random() < 0.3:
        a = rng.uniform(0, 0.5, hq).astype(np.float32)
        kw["alibi_slopes"] = op["alibi"] = a
    if rng.random() < 0.3:
        shape = [nseq if rng.random() < 0.5 else 1,
                 hq if rng.random() < 0.5 else 1,
                 msq if rng.random() < 0.7 else 1,
                 msk if rng.random() < 0.8 else 1]
        bias = rng.standard_normal(shape).astype(np.float32)
        kw["bias"] = op["bias"] = bias
    if rng.random() < 0.3:
        shape = [nseq if rng.random() < 0.5 else 1, 1, msq, msk]
        mask = rng.random(shape) < 0.8
        kw["mask"] = op["mask"] = mask
    if not varlen and rng.random() < 0.3:
        kl = rng.integers(0, sk + 1, b).astype(np.int32)
        kw["kv_lens"] = op["kv_lens"] = kl
    if rng.random() < 0.2:
        s = rng.uniform(-2, 2, hq).astype(np.float32)
        s[0] = -np.inf
        kw["sinks"] = op["sinks"] = s
    return q, k, v, kw, op


def reference(q, k, v, op):
    o64, l64 = oracle.forward(q, k, v, **op)
    o32, l32 = oracle.forward(q, k, v, dtype=np.float32, **op)
    return o64, l64, o32, l32
