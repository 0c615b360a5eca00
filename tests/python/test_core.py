"""attn.forward / attn.backward against the float64 numpy oracle, over
random options, layouts and dtypes (numpy and torch inputs)."""

import numpy as np
import pytest

import attn
import oracle
from helpers import close, random_problem, reference

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("seed", range(60))
def test_forward_random(seed):
    rng = np.random.default_rng(1000 + seed)
    q, k, v, kw, op = random_problem(rng, varlen=seed % 4 == 3)
    o, lse = attn.forward(q, k, v, return_lse=True, **kw)
    o64, l64, o32, l32 = reference(q, k, v, op)
    close(o, o64, o32)
    close(lse, l64, l32)


@pytest.mark.parametrize("seed", range(30))
def test_backward_random(seed):
    rng = np.random.default_rng(2000 + seed)
    q, k, v, kw, op = random_problem(rng, varlen=seed % 4 == 3)
    kw.pop("sinks", None)
    op.pop("sinks", None)
    o, lse = attn.forward(q, k, v, return_lse=True, **kw)
    do = rng.standard_normal(o.shape, dtype=np.float32)
    dbias = None
    if "bias" in kw:
        dbias = np.empty(kw["bias"].shape, np.float32)
    dq, dk, dv = attn.backward(do, q, k, v, o, lse, dbias=dbias, **kw)
    ref = oracle.backward(do, q, k, v, **op)
    # the naive f32 error of a backward is not computed by the oracle:
    # bound by f32 accumulation over the reduced axis instead
    # (2^-24 * terms * magnitude), with a generous factor 64
    for got, want in zip((dq, dk, dv, dbias), ref):
        if want is None:
            continue
        terms = q.shape[1] + k.shape[1] + q.shape[3]
        tol = 64 * 2.0**-24 * terms * max(1.0, np.abs(want).max())
        np.testing.assert_allclose(got, want, rtol=0, atol=tol)


def test_oracle_gradients_finite_differences():
    """The oracle's backward against central differences of its own f64
    forward (h = 1e-6: truncation ~h^2, rounding ~1e-16/h: both < 1e-9),
    so test_backward_random compares against a checked reference."""
    rng = np.random.default_rng(7)
    q = rng.standard_normal((1, 4, 2, 3))
    k = rng.standard_normal((1, 5, 1, 3))
    v = rng.standard_normal((1, 5, 1, 2))
    bias = rng.standard_normal((1, 2, 4, 1))
    op = dict(causal=1, softcap=3.0, alibi=np.array([0.3, 0.1]), bias=bias,
              window=(2, -1))
    do = rng.standard_normal((1, 4, 2, 2))
    grads = oracle.backward(do, q, k, v, **op)

    def loss(q_, k_, v_, b_):
        o, _ = oracle.forward(q_, k_, v_, **dict(op, bias=b_))
        return float((o * do).sum())

    h = 1e-6
    for idx, x in enumerate((q, k, v, bias)):
        num = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            xp, xm = x.copy(), x.copy()
            xp[i] += h
            xm[i] -= h
            args = [q, k, v, bias]
            args[idx] = xp
            fp = loss(*args)
            args[idx] = xm
            num[i] = (fp - loss(*args)) / (2 * h)
        np.testing.assert_allclose(grads[idx], num, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("layout", ["bhsd", "strided"])
def test_layouts_zero_copy_views(layout, rng):
    """bhsd memory and sliced views give the bshd result, no copy."""
    q = rng.standard_normal((2, 33, 4, 16), dtype=np.float32)
    k = rng.standard_normal((2, 40, 2, 16), dtype=np.float32)
    v = rng.standard_normal((2, 40, 2, 16), dtype=np.float32)
    ref = attn.forward(q, k, v, causal=True)
    if layout == "bhsd":
        qs, ks, vs = (np.ascontiguousarray(x.transpose(0, 2, 1, 3))
                      for x in (q, k, v))
        o = attn.forward(qs, ks, vs, causal=True, layout="bhsd")
        np.testing.assert_array_equal(o.transpose(0, 2, 1, 3), ref)
    else:
        big = np.zeros((2, 33, 4, 48), np.float32)
        big[..., 8:24] = q
        qs = big[..., 8:24]
        assert not qs.flags.c_contiguous
        out = np.zeros((2, 33, 4, 40), np.float32)[..., 4:20]
        o = attn.forward(qs, k, v, causal=True, out=out)
        assert o is out
        np.testing.assert_array_equal(out, ref)


def test_thd_layout_equals_batched(rng):
    q = rng.standard_normal((2, 7, 2, 8), dtype=np.float32)
    k = rng.standard_normal((2, 9, 2, 8), dtype=np.float32)
    v = rng.standard_normal((2, 9, 2, 8), dtype=np.float32)
    ref, lref = attn.forward(q, k, v, causal=True, return_lse=True)
    cu_q = np.array([0, 7, 14], np.int32)
    cu_k = np.array([0, 9, 18], np.int32)
    o, lse = attn.forward(q.reshape(14, 2, 8), k.reshape(18, 2, 8),
                          v.reshape(18, 2, 8), causal=True,
                          cu_seqlens_q=cu_q, cu_seqlens_k=cu_k,
                          return_lse=True)
    np.testing.assert_allclose(o.reshape(ref.shape), ref, atol=1e-6)
    np.testing.assert_allclose(lse.reshape(2, 2, 7).transpose(1, 0, 2), lref,
                               atol=1e-6)


def p_abs_v(q, k, v):
    """sum_j p_ij |v_jc| per output element (bottom-right causal, bshd,
    one kv head per query head): the most that rounding each probability
    by a relative e can move o_ic, divided by e."""
    sq, sk, d = q.shape[1], k.shape[1], q.shape[3]
    s = np.einsum("bihd,bjhd->bhij", q, k) / np.sqrt(d)
    i, j = np.arange(sq)[:, None], np.arange(sk)[None, :]
    s = np.where(j <= i + sk - sq, s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("bhij,bjhd->bihd", p, np.abs(v))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_dtypes(dtype, rng):
    """f16 (numpy and torch) and bf16 (torch): inputs read as stored, the
    result rounded once to the output dtype. With bf16 in and out, CPUs
    with AVX512-BF16 (and the generic ISA) also round P to bf16 for P V
    (docs/bf16.md), which moves o_ic by at most 2^-9 sum_j p_ij |v_jc|:
    that bound is added for bf16."""
    q = rng.standard_normal((1, 50, 2, 32), dtype=np.float32)
    k = rng.standard_normal((1, 70, 2, 32), dtype=np.float32)
    v = rng.standard_normal((1, 70, 2, 32), dtype=np.float32)
    tdt = getattr(torch, dtype)
    qt, kt, vt = (torch.from_numpy(x).to(tdt) for x in (q, k, v))
    o = attn.forward(qt, kt, vt, causal=True)
    assert o.dtype == tdt
    q64, k64, v64 = (x.to(torch.float64).numpy() for x in (qt, kt, vt))
    o64, _, o32, _ = reference(q64, k64, v64, {"causal": 1})
    half_ulp = 2.0**-8 if dtype == "bfloat16" else 2.0**-11
    got = o.to(torch.float64).numpy()
    if dtype == "bfloat16":  # the rounding of P: subtract its bound first
        slack = 2.0**-9 * p_abs_v(q64, k64, v64)
        got = o64 + np.sign(got - o64) * np.maximum(np.abs(got - o64) - slack,
                                                     0)
    close(got, o64, o32, extra=half_ulp)
    if dtype == "float16":
        on = attn.forward(q64.astype(np.float16), k64.astype(np.float16),
                          v64.astype(np.float16), causal=True)
        assert on.dtype == np.float16
        np.testing.assert_array_equal(on, o.numpy())
    # mixed: f32 q, half k/v, f32 out
    o2 = attn.forward(torch.from_numpy(q), kt, vt, causal=True)
    assert o2.dtype == torch.float32


def test_sinks_and_dropout(rng):
    q = rng.standard_normal((1, 20, 2, 16), dtype=np.float32)
    k = rng.standard_normal((1, 30, 2, 16), dtype=np.float32)
    v = rng.standard_normal((1, 30, 2, 16), dtype=np.float32)
    sinks = np.array([0.5, -np.inf], np.float32)
    o, lse = attn.forward(q, k, v, sinks=sinks, return_lse=True)
    o64, l64, o32, l32 = reference(q, k, v, {"sinks": sinks})
    close(o, o64, o32)
    close(lse, l64, l32)
    do = rng.standard_normal(o.shape, dtype=np.float32)
    dsinks = np.zeros(2, np.float32)
    attn.backward(do, q, k, v, o, lse, sinks=sinks, dsinks=dsinks)
    # dsinks[h] = -sum_i exp(sink - lse_i) rowsum(dO * O)   (attn.h)
    want = -(np.exp(sinks[:, None] - l64[0]) *
             (do * o64).sum(-1)[0].T).sum(-1)
    np.testing.assert_allclose(dsinks, want, atol=1e-5, rtol=1e-4)
    # dropout: p = 0 is off; p > 0 is deterministic per seed
    base = attn.forward(q, k, v)
    np.testing.assert_array_equal(attn.forward(q, k, v, dropout_p=0.0), base)
    a = attn.forward(q, k, v, dropout_p=0.3, dropout_seed=5)
    b = attn.forward(q, k, v, dropout_p=0.3, dropout_seed=5)
    c = attn.forward(q, k, v, dropout_p=0.3, dropout_seed=6)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, base)


def test_merge(rng):
    """Two halves of the keys merged equal attention over all keys."""
    q = rng.standard_normal((2, 9, 3, 16), dtype=np.float32)
    k = rng.standard_normal((2, 40, 3, 16), dtype=np.float32)
    v = rng.standard_normal((2, 40, 3, 16), dtype=np.float32)
    full, lfull = attn.forward(q, k, v, return_lse=True)
    parts = [attn.forward(q, k[:, a:b], v[:, a:b], return_lse=True)
             for a, b in ((0, 17), (17, 40))]
    o, lse = attn.merge([p[0] for p in parts], [p[1] for p in parts],
                        return_lse=True)
    np.testing.assert_allclose(o, full, atol=2e-6)
    np.testing.assert_allclose(lse, lfull, atol=2e-6)
    do = rng.standard_normal(o.shape, dtype=np.float32)
    dparts, dlse = attn.merge_backward(do, [p[0] for p in parts],
                                       [p[1] for p in parts], o, lse)
    # dO_c = exp(lse_c - lse) dO
    w = np.exp(parts[0][1] - lse).transpose(0, 2, 1)[..., None]
    np.testing.assert_allclose(dparts[0], w * do, atol=1e-6)


def test_threads_option_bitwise(rng):
    q = rng.standard_normal((1, 100, 4, 32), dtype=np.float32)
    k = rng.standard_normal((1, 130, 4, 32), dtype=np.float32)
    v = rng.standard_normal((1, 130, 4, 32), dtype=np.float32)
    a = attn.forward(q, k, v, threads=1, causal=True)
    b = attn.forward(q, k, v, threads=2, causal=True)
    np.testing.assert_array_equal(a, b)
