"""attn.linear_forward / attn.linear_backward against a float64 numpy
implementation of the same maths in its quadratic form (issue 8)."""

import numpy as np
import pytest

import attn


def phi(x):
    return np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0)))


def linear_ref(q, k, v, causal):
    """float64 [b, sq, hq, dv], quadratic form: o_i = sum_j a_ij v_j /
    sum_j a_ij with a_ij = phi(q_i) . phi(k_j) over the visible keys."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    b, sq, hq, _ = q.shape
    sk, hk = k.shape[1], k.shape[2]
    g = hq // hk
    o = np.zeros((b, sq, hq, v.shape[3]))
    for bi in range(b):
        for h in range(hq):
            a = phi(q[bi, :, h]) @ phi(k[bi, :, h // g]).T
            if causal:
                i = np.arange(sq)[:, None]
                j = np.arange(sk)[None, :]
                a = np.where(j <= i + sk - sq, a, 0.0)
            den = a.sum(1, keepdims=True)
            o[bi, :, h] = np.where(den > 0, (a @ v[bi, :, h // g]) /
                                   np.where(den > 0, den, 1), 0)
    return o


@pytest.mark.parametrize("sq, sk, hq, hk, causal", [
    (1, 1, 1, 1, False), (63, 63, 2, 2, True), (65, 65, 4, 2, True),
    (130, 130, 3, 1, False), (40, 97, 2, 1, True), (97, 40, 2, 2, True)])
def test_linear_forward(sq, sk, hq, hk, causal):
    rng = np.random.default_rng(sq * 7 + sk)
    q = rng.standard_normal((2, sq, hq, 16), dtype=np.float32)
    k = rng.standard_normal((2, sk, hk, 16), dtype=np.float32)
    v = rng.standard_normal((2, sk, hk, 8), dtype=np.float32)
    o = attn.linear_forward(q, k, v, causal=causal)
    np.testing.assert_allclose(o, linear_ref(q, k, v, causal), rtol=0,
                               atol=2e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_linear_backward_against_torch_autograd(causal):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    q = rng.standard_normal((1, 70, 2, 8), dtype=np.float32)
    k = rng.standard_normal((1, 70, 1, 8), dtype=np.float32)
    v = rng.standard_normal((1, 70, 1, 4), dtype=np.float32)
    do = rng.standard_normal((1, 70, 2, 4), dtype=np.float32)
    dq, dk, dv = attn.linear_backward(do, q, k, v, causal=causal)
    t = [torch.tensor(x, dtype=torch.float64, requires_grad=True)
         for x in (q, k, v)]

    def f(qq, kk, vv):
        fq = torch.nn.functional.elu(qq) + 1
        fk = torch.nn.functional.elu(kk).repeat_interleave(2, 2) + 1
        vv = vv.repeat_interleave(2, 2)
        a = torch.einsum("bihd,bjhd->bhij", fq, fk)
        if causal:
            a = torch.tril(a)
        o = torch.einsum("bhij,bjhd->bihd", a, vv)
        return o / a.sum(-1).transpose(1, 2)[..., None]

    f(*t).mul(torch.tensor(do, dtype=torch.float64)).sum().backward()
    for got, ref in zip((dq, dk, dv), t):
        np.testing.assert_allclose(got, ref.grad.numpy(), rtol=0, atol=1e-4)


def test_linear_torch_tensors_and_errors():
    torch = pytest.importorskip("torch")
    q = torch.randn(1, 10, 2, 8)
    o = attn.linear_forward(q, q[:, :, :1], q[:, :, :1], causal=True)
    assert isinstance(o, torch.Tensor) and o.shape == (1, 10, 2, 8)
    with pytest.raises(ValueError):
        attn.linear_forward(q, q, q, causal=True, causal_align="middle")
    with pytest.raises(attn.AttnError):  # 2 query heads over 3 kv heads
        attn.linear_forward(q, torch.randn(1, 10, 3, 8),
                            torch.randn(1, 10, 3, 8))
