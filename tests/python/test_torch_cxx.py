"""attn.torch's autograd node in C++ (attn._attn_torch, _attn_torch.cpp)
against the Python torch.autograd.Function it replaces for plain options:
the same bits forward and backward, the same exceptions, the Python path
kept for every option the C++ node does not take."""

import pytest
import torch

import attn
import attn.torch as at
from attn import _api

cxx = pytest.mark.skipif(at._cxx is None,
                         reason="attn._attn_torch not built (no PyTorch "
                         "headers at build time)")


def both(monkeypatch, fn):
    """fn() through the C++ node, then through the Python Function."""
    got = fn()
    with monkeypatch.context() as m:
        m.setattr(at, "_cxx", None)
        want = fn()
    return got, want


def grads(make_out, inputs, seed):
    out = make_out()
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float32).to(out.dtype)
    return (out.detach(),) + torch.autograd.grad(out, inputs, g), out.grad_fn


CASES = [  # (api, dtype, kwargs)
    ("sdpa", torch.float32, {}),
    ("sdpa", torch.float32, {"is_causal": True}),
    ("sdpa", torch.float16, {"is_causal": True}),
    ("sdpa", torch.bfloat16, {}),
    ("sdpa_gqa", torch.float32, {"is_causal": True}),
    ("flash", torch.float32, {"causal": True}),
    ("flash", torch.float32, {"window_size": (3, 1)}),
    ("flash", torch.float32, {"softmax_scale": 0.3, "softcap": 5.0}),
    ("flash", torch.bfloat16, {"causal": True, "window_size": (4, 0)}),
    ("flash_gqa", torch.float32, {"causal": True}),
]


@cxx
@pytest.mark.parametrize("api,dtype,kw", CASES)
def test_cxx_node_bitwise_equal_to_python(monkeypatch, api, dtype, kw):
    torch.manual_seed(hash(api) % 1000)
    hk = 2 if api.endswith("gqa") else 4
    if api.startswith("sdpa"):  # [b, h, s, d] views of [b, s, h, d]
        q = torch.randn(2, 7, 4, 16).transpose(1, 2)
        k = torch.randn(2, 11, hk, 16).transpose(1, 2)
        v = torch.randn(2, 11, hk, 8).transpose(1, 2)
    else:
        q = torch.randn(2, 7, 4, 16)
        k = torch.randn(2, 11, hk, 16)
        v = torch.randn(2, 11, hk, 8)
    q, k, v = (x.to(dtype).requires_grad_() for x in (q, k, v))

    def run():
        if api.startswith("sdpa"):
            f = lambda: at.scaled_dot_product_attention(  # noqa: E731
                q, k, v, enable_gqa=hk != 4, **kw)
        else:
            f = lambda: at.flash_attn_func(q, k, v, **kw)  # noqa: E731
        return grads(f, (q, k, v), 5)

    (got, gfn), (want, wfn) = both(monkeypatch, run)
    assert type(gfn).__name__ != type(wfn).__name__  # two paths ran
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.stride() == b.stride()
        assert torch.equal(a, b)


@cxx
def test_cxx_node_errors_are_the_extensions(monkeypatch):
    q = torch.randn(1, 3, 2, 8, requires_grad=True)
    k = torch.randn(1, 5, 2, 4)
    v = torch.randn(1, 5, 2, 8)
    errs = []
    for use in (True, False):
        with monkeypatch.context() as m:
            if not use:
                m.setattr(at, "_cxx", None)
            with pytest.raises(Exception) as e:
                at.flash_attn_func(q, k, v)
            errs.append((type(e.value), str(e.value)))
    assert errs[0] == errs[1] and "head_dim" in errs[0][1]
    # a dtype the library lacks is refused by name, not crashed on
    with pytest.raises((ValueError, TypeError)):
        at.flash_attn_func(q, k.to(torch.float64), v)


@cxx
def test_options_the_cxx_node_does_not_take_keep_python():
    q = torch.randn(1, 4, 2, 8, requires_grad=True)
    k = torch.randn(1, 6, 2, 8)
    v = torch.randn(1, 6, 2, 8)
    cpp = type(at.flash_attn_func(q, k, v).grad_fn).__name__
    for out in (at.flash_attn_func(q, k, v, alibi_slopes=torch.ones(2)),
                at.flash_attn_func(q, k, v, dropout_p=0.1),
                at.flash_attn_func(q, k, v, return_attn_probs=True)[0],
                at.scaled_dot_product_attention(
                    q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                    attn_mask=torch.zeros(4, 6))):
        assert type(out.grad_fn).__name__ != cpp


@cxx
def test_cxx_node_gradcheck():
    """float64 finite differences need float64 kernels, which libattn does
    not have: check the f32 node against PyTorch's float64 SDPA instead,
    at f32 rounding."""
    torch.manual_seed(3)
    q, k, v = (torch.randn(1, 2, n, 8, requires_grad=True)
               for n in (5, 9, 9))
    out = at.scaled_dot_product_attention(q, k, v, is_causal=True)
    q64, k64, v64 = (x.detach().double().requires_grad_() for x in (q, k, v))
    ref = torch.nn.functional.scaled_dot_product_attention(
        q64, k64, v64, is_causal=True)
    g = torch.randn_like(ref)
    got = torch.autograd.grad(out, (q, k, v), g.float())
    want = torch.autograd.grad(ref, (q64, k64, v64), g)
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=2e-6)
    for a, b in zip(got, want):
        torch.testing.assert_close(a.double(), b, rtol=0, atol=2e-5)


@cxx
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16,
                                   torch.bfloat16])
def test_outputs_from_the_cxx_allocator(dtype):
    """attn.forward / attn.backward on torch tensors: outputs made by
    attn._attn_torch's allocator, then by torch.empty (set_torch_empty
    None): the same shapes, dtypes, strides and values."""
    torch.manual_seed(4)
    q, k, v = (torch.randn(2, n, 2, 8).to(dtype) for n in (3, 5, 5))
    res = []
    for cap in (at._cxx.empty_capsule, None):
        _api._ext.set_torch_empty(cap)
        try:
            o, lse = attn.forward(q, k, v, return_lse=True)
            d = attn.backward(torch.ones_like(o), q, k, v, o, lse)
        finally:
            _api._ext.set_torch_empty(at._cxx.empty_capsule)
        res.append((o, lse) + tuple(d))
    for a, b in zip(*res):
        assert (a.dtype, a.shape, a.stride()) == (b.dtype, b.shape, b.stride())
        assert not a.requires_grad and torch.equal(a, b)


@cxx
def test_allocator_capsule_checked_and_huge_outputs_refused():
    with pytest.raises((ValueError, TypeError)):
        _api._ext.set_torch_empty(object())
    # an output of 2^40 floats: refused with an exception, not a crash
    q = torch.zeros(1, 1, 1, 1).expand(1, 2 ** 20, 2 ** 14, 64)
    k = torch.zeros(1, 1, 1, 1).expand(1, 4, 2 ** 14, 64)
    with pytest.raises((MemoryError, RuntimeError)):
        attn.forward(q, k, k)


@cxx
def test_cxx_node_from_python_threads():
    """8 Python threads, each forward + backward through the C++ node on
    its own tensors (the backward takes the GIL from the autograd engine's
    side): every result bitwise the single-threaded one."""
    import threading
    torch.manual_seed(6)
    inputs = [tuple(torch.randn(1, 3, n, 16) for n in (33, 47, 47))
              for _ in range(8)]

    def run(i):
        q, k, v = (x.clone().requires_grad_() for x in inputs[i])
        out = at.scaled_dot_product_attention(q, k, v, is_causal=True)
        return (out.detach(),) + torch.autograd.grad(out.sum(), (q, k, v))

    want = [run(i) for i in range(8)]
    got = [None] * 8

    def work(i):
        for _ in range(20):
            got[i] = run(i)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for g, w in zip(got, want):
        assert all(torch.equal(a, b) for a, b in zip(g, w))
