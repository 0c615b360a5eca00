"""attn.torch against torch.nn.functional.scaled_dot_product_attention
(forward and gradients), gradcheck, and the FlashAttention front ends
against the oracle."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import attn.torch as at  # noqa: E402
import oracle  # noqa: E402
from helpers import LENGTHS  # noqa: E402

F = torch.nn.functional


def _sdpa_case(rng, seed):
    g = torch.Generator().manual_seed(seed)
    hk = int(rng.choice([1, 2]))
    hq = hk * int(rng.choice([1, 3]))
    L, S = (int(x) for x in rng.choice(LENGTHS, 2))
    E = int(rng.choice([8, 16, 33, 64]))
    Ev = E if rng.random() < 0.7 else 24
    B = int(rng.integers(1, 3))
    q = torch.randn(B, hq, L, E, generator=g)
    k = torch.randn(B, hk, S, E, generator=g)
    v = torch.randn(B, hk, S, Ev, generator=g)
    kw = {"enable_gqa": hq != hk}
    r = rng.random()
    if r < 0.3:
        kw["is_causal"] = True
        if L > S:  # PyTorch's top-left: rows i >= S are complete; i < S ok
            pass
    elif r < 0.55:
        m = torch.rand(B if rng.random() < 0.5 else 1, 1, L, S,
                       generator=g) < 0.8
        m[..., 0] = True  # no fully masked row (PyTorch gives NaN there)
        kw["attn_mask"] = m
    elif r < 0.8:
        kw["attn_mask"] = torch.randn(1 if rng.random() < 0.5 else hq, L, S,
                                      generator=g)
    if rng.random() < 0.3:
        kw["scale"] = float(rng.uniform(0.05, 0.5))
    if rng.random() < 0.3:  # a strided view: bhsd over bshd memory
        q = q.transpose(1, 2).contiguous().transpose(1, 2)
    return q, k, v, kw


@pytest.mark.parametrize("seed", range(40))
def test_sdpa_parity(seed):
    """Forward and q/k/v/mask gradients equal PyTorch's within f32
    rounding: both compute in f32 with different summation orders; the
    bound 2e-5 * (1 + |x|) covers sums of up to ~100 terms of size ~1
    (100 * 2^-24 * a few) with margin."""
    rng = np.random.default_rng(seed)
    q, k, v, kw = _sdpa_case(rng, seed)
    mask = kw.get("attn_mask")
    leaves = [q, k, v] + ([mask] if mask is not None and
                          mask.is_floating_point() else [])
    for t in leaves:
        t.requires_grad_(True)
    o = at.scaled_dot_product_attention(q, k, v, **kw)
    r = F.scaled_dot_product_attention(q, k, v, **kw)
    assert o.shape == r.shape and o.dtype == r.dtype
    torch.testing.assert_close(o, r, atol=2e-5, rtol=2e-5)
    do = torch.randn_like(r)
    ga = torch.autograd.grad(o, leaves, do)
    gr = torch.autograd.grad(r, leaves, do)
    for a, b in zip(ga, gr):
        torch.testing.assert_close(a, b, atol=2e-5 * (1 + b.abs().max()),
                                   rtol=2e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_sdpa_half(dtype):
    """Half inputs: libattn accumulates in f32 and rounds once, so it is
    at least as close to the f64 result as PyTorch's half path; compare
    both to f64 and require libattn's error <= PyTorch's + one ulp."""
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 4, 37, 32, generator=g).to(dtype)
               for _ in range(3))
    o = at.scaled_dot_product_attention(q, k, v, is_causal=True)
    r = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(),
                                         is_causal=True)
    ulp = 2.0**-7 if dtype == torch.bfloat16 else 2.0**-10
    err = (o.double() - ref).abs().max()
    assert err <= (r.double() - ref).abs().max() + ulp * ref.abs().max()


def test_sdpa_shapes_3d_5d():
    g = torch.Generator().manual_seed(4)
    q3, k3, v3 = (torch.randn(3, 11, 16, generator=g) for _ in range(3))
    torch.testing.assert_close(
        at.scaled_dot_product_attention(q3, k3, v3, is_causal=True),
        F.scaled_dot_product_attention(q3, k3, v3, is_causal=True))
    q5, k5, v5 = (torch.randn(2, 3, 2, 9, 8, generator=g) for _ in range(3))
    m = torch.randn(9, 9, generator=g)
    torch.testing.assert_close(
        at.scaled_dot_product_attention(q5, k5, v5, attn_mask=m),
        F.scaled_dot_product_attention(q5, k5, v5, attn_mask=m))


@pytest.mark.filterwarnings("ignore:Input #.*double precision")
def test_gradcheck_f32():
    """torch.autograd.gradcheck on the f32 kernels (they have no f64
    path). Central differences in f32 with eps = 2e-3: the truncation
    error is ~eps^2 * |f'''| ~ 1e-5 and the rounding error of the
    difference is ~2^-24 * |f| / eps ~ 3e-5, so atol = rtol = 5e-3 leaves a
    large margin while catching any wrong gradient term (those are O(0.1)
    here). Covers softcap, a float mask with its gradient, GQA and dropout
    (its mask is a function of the seed, so the loss is deterministic)."""
    g = torch.Generator().manual_seed(5)
    q = torch.randn(1, 4, 5, 3, generator=g, requires_grad=True)
    k = torch.randn(1, 2, 6, 3, generator=g, requires_grad=True)
    v = torch.randn(1, 2, 6, 2, generator=g, requires_grad=True)
    m = torch.randn(1, 1, 5, 6, generator=g, requires_grad=True)

    def f(q_, k_, v_, m_):
        return at.scaled_dot_product_attention(q_, k_, v_, attn_mask=m_,
                                               enable_gqa=True)

    assert torch.autograd.gradcheck(f, (q, k, v, m), eps=2e-3, atol=5e-3,
                                    rtol=5e-3, fast_mode=False)
    qf, kf, vf = (t.detach().transpose(1, 2).requires_grad_(True)
                  for t in (q, k, v))

    def fa(q_, k_, v_):
        return at.flash_attn_func(q_, k_, v_, causal=True, softcap=2.0,
                                  window_size=(3, 0))

    assert torch.autograd.gradcheck(fa, (qf, kf, vf), eps=2e-3, atol=5e-3,
                                    rtol=5e-3)
    torch.manual_seed(0)
    seed_state = torch.get_rng_state()

    def fd(q_, k_, v_):
        torch.set_rng_state(seed_state)  # the same dropout seed every call
        return at.scaled_dot_product_attention(q_, k_, v_, dropout_p=0.3,
                                               enable_gqa=True)

    assert torch.autograd.gradcheck(fd, (q, k, v), eps=2e-3, atol=5e-3,
                                    rtol=5e-3)


def _fa_opts(causal, window, softcap, alibi, scale):
    op = {"causal": 1 if causal else 0, "window": window, "softcap": softcap}
    if alibi is not None:
        op["alibi"] = alibi.numpy()
    if scale is not None:
        op["scale"] = scale
    return op


@pytest.mark.parametrize("seed", range(12))
def test_flash_attn_func(seed):
    rng = np.random.default_rng(300 + seed)
    g = torch.Generator().manual_seed(seed)
    B, hk = int(rng.integers(1, 3)), int(rng.choice([1, 2]))
    hq = hk * 2
    sq, sk = (int(x) for x in rng.choice(LENGTHS, 2))
    q = torch.randn(B, sq, hq, 16, generator=g, requires_grad=True)
    k = torch.randn(B, sk, hk, 16, generator=g, requires_grad=True)
    v = torch.randn(B, sk, hk, 16, generator=g, requires_grad=True)
    causal = bool(rng.random() < 0.5)
    window = ((int(rng.integers(0, 9)), int(rng.integers(-1, 5)))
              if rng.random() < 0.4 else (-1, -1))
    softcap = 5.0 if rng.random() < 0.3 else 0.0
    alibi = torch.rand(hq) * 0.3 if rng.random() < 0.3 else None
    scale = 0.2 if rng.random() < 0.3 else None
    out, lse, _ = at.flash_attn_func(q, k, v, causal=causal,
                                     window_size=window, softcap=softcap,
                                     alibi_slopes=alibi, softmax_scale=scale,
                                     return_attn_probs=True)
    op = _fa_opts(causal, window, softcap, alibi, scale)
    o64, l64 = oracle.forward(q.detach().numpy(), k.detach().numpy(),
                              v.detach().numpy(), **op)
    np.testing.assert_allclose(out.detach().numpy(), o64, atol=2e-5)
    fin = np.isfinite(l64)
    np.testing.assert_allclose(lse.numpy()[fin], l64[fin], atol=2e-5)
    do = torch.randn_like(out)
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), do)
    ref = oracle.backward(do.numpy(), q.detach().numpy(), k.detach().numpy(),
                          v.detach().numpy(), **op)
    for a, b in zip((dq, dk, dv), ref):
        np.testing.assert_allclose(a.numpy(), b,
                                   atol=5e-5 * (1 + np.abs(b).max()))


def test_flash_attn_varlen_func():
    g = torch.Generator().manual_seed(9)
    lq, lk = [3, 48, 1], [5, 64, 2]
    cu_q = torch.tensor(np.concatenate([[0], np.cumsum(lq)]), dtype=torch.int32)
    cu_k = torch.tensor(np.concatenate([[0], np.cumsum(lk)]), dtype=torch.int32)
    q = torch.randn(sum(lq), 4, 16, generator=g, requires_grad=True)
    k = torch.randn(sum(lk), 2, 16, generator=g, requires_grad=True)
    v = torch.randn(sum(lk), 2, 16, generator=g, requires_grad=True)
    out, lse, _ = at.flash_attn_varlen_func(q, k, v, cu_q, cu_k, max(lq),
                                            max(lk), causal=True,
                                            return_attn_probs=True)
    assert lse.shape == (4, sum(lq))
    op = {"causal": 1, "cu_q": cu_q.numpy(), "cu_k": cu_k.numpy()}
    o64, l64 = oracle.forward(q.detach().numpy()[None], k.detach().numpy()[None],
                              v.detach().numpy()[None], **op)
    np.testing.assert_allclose(out.detach().numpy(), o64[0], atol=2e-5)
    do = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), do)
    ref = oracle.backward(do.numpy()[None], q.detach().numpy()[None],
                          k.detach().numpy()[None], v.detach().numpy()[None],
                          **op)
    for a, b in zip(grads, ref):
        np.testing.assert_allclose(a.numpy(), b[0], atol=1e-4)
    with pytest.raises(ValueError, match="max_seqlen"):
        at.flash_attn_varlen_func(q, k, v, cu_q, cu_k, 10, 64)


def test_sdpa_training_step():
    """A few SGD steps through attn.torch lower a loss (autograd wired)."""
    torch.manual_seed(0)
    x = torch.randn(2, 16, 32)
    proj = torch.nn.Linear(32, 96)
    opt = torch.optim.SGD(proj.parameters(), lr=0.1)
    target = torch.randn(2, 4, 16, 8)
    losses = []
    for _ in range(10):
        q, k, v = proj(x).view(2, 16, 3, 4, 8).permute(2, 0, 3, 1, 4)
        o = at.scaled_dot_product_attention(q, k, v, is_causal=True)
        loss = ((o - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
