"""attn.KVCache: prefill and token-by-token decode against the float64
oracle over the same keys (RoPE applied here in numpy from its formula),
contiguous and paged, every storage dtype."""

import numpy as np
import pytest

import attn
from helpers import close, reference


def rope_np(x, pos, base=10000.0, style="half"):
    """x [b, s, h, d] rotated at positions pos [b, s] (float64)."""
    x = np.asarray(x, np.float64)
    d = x.shape[-1]
    inv = base ** (-np.arange(0, d, 2) / d)
    ang = pos[..., None, None] * inv  # [b, s, 1, d/2]
    c, s = np.cos(ang), np.sin(ang)
    if style == "half":
        a, b = x[..., :d // 2], x[..., d // 2:]
        return np.concatenate([a * c - b * s, a * s + b * c], -1)
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = a * c - b * s
    out[..., 1::2] = a * s + b * c
    return out


@pytest.mark.parametrize("page_size", [0, 16])
@pytest.mark.parametrize("style", ["half", "interleaved"])
def test_prefill_then_decode_f32(page_size, style):
    rng = np.random.default_rng(11 + page_size)
    ns, hq, hk, d, n0, steps = 2, 4, 2, 32, 37, 5
    cache = attn.KVCache(ns, hk, d, 64, page_size=page_size,
                         rope=dict(base=10000.0, style=style))
    k_all = rng.standard_normal((ns, n0 + steps, hk, d), dtype=np.float32)
    v_all = rng.standard_normal((ns, n0 + steps, hk, d), dtype=np.float32)
    cache.append(k_all[:, :n0], v_all[:, :n0])
    assert list(cache.seq_lens) == [n0, n0]
    for t in range(steps):
        n = n0 + t
        cache.append(k_all[:, n:n + 1], v_all[:, n:n + 1])
        q = rng.standard_normal((ns, 1, hq, d), dtype=np.float32)
        o, lse = cache.attend(q, return_lse=True)
        pos = np.broadcast_to(np.arange(n + 1, dtype=np.float64), (ns, n + 1))
        kr = rope_np(k_all[:, :n + 1], pos, style=style)
        qr = rope_np(q, pos[:, n:n + 1], style=style)
        o64, l64, o32, l32 = reference(qr, kr, v_all[:, :n + 1],
                                       dict(causal=1))
        # RoPE in f32 inside the library: bound its rounding (2^-24 relative
        # on each rotated element, a few ulps through the softmax)
        close(o, o64, o32, extra=1e-5)
        close(lse, l64, l32, extra=1e-5)


@pytest.mark.parametrize("dtype, tol", [("bfloat16", 2e-2), ("float16", 3e-3),
                                        ("q8_0", 3e-2), ("q4_0", 0.3)])
def test_storage_dtypes_against_f32(dtype, tol):
    """Storage rounding only: bf16 keeps 8 bits (2^-8 relative), f16 11,
    q8_0 blocks ~1/127 of the block maximum, q4_0 ~1/7: each bound is a few
    times that on o, whose rows average unit-variance values."""
    rng = np.random.default_rng(3)
    ns, hk, d = 1, 2, 64
    ref = attn.KVCache(ns, hk, d, 100)
    got = attn.KVCache(ns, hk, d, 100, dtype=dtype, page_size=32)
    k = rng.standard_normal((ns, 90, hk, d), dtype=np.float32)
    v = rng.standard_normal((ns, 90, hk, d), dtype=np.float32)
    for c in (ref, got):
        c.append(k, v)
    q = rng.standard_normal((ns, 3, 4, d), dtype=np.float32) * 0.3
    a, b = ref.attend(q), got.attend(q)
    assert np.abs(a - b).max() < tol, np.abs(a - b).max()


def test_errors_and_torch():
    torch = pytest.importorskip("torch")
    c = attn.KVCache(1, 1, 8, 4)
    c.append(torch.randn(1, 4, 1, 8), torch.randn(1, 4, 1, 8))
    with pytest.raises(attn.AttnError, match="room|full|capacity"):
        c.append(np.zeros((1, 1, 1, 8), np.float32),
                 np.zeros((1, 1, 1, 8), np.float32))
    o = c.attend(torch.randn(1, 1, 2, 8))
    assert isinstance(o, torch.Tensor) and o.shape == (1, 1, 2, 8)
    c.reset()
    assert c.seq_lens[0] == 0
    with pytest.raises(ValueError):
        attn.KVCache(1, 1, 8, 4, dtype="q8_0")  # head_dim not 32k
    with pytest.raises(ValueError):
        attn.KVCache(1, 1, 8, 4, rope=dict(style="sideways"))
