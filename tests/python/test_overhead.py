"""The fast paths of the binding (bench/py_overhead.py): torch tensors read
through PyTorch's DLPack C exchange API when it has one, outputs allocated
by the extension, attn.torch's calls without autograd when no input needs
a gradient. Each must behave exactly as the slow path it replaces."""

import numpy as np
import pytest
import torch

import attn
import attn.torch as at


def info_ref(t):
    return (t.data_ptr(), str(t.dtype).replace("torch.", ""),
            tuple(t.shape), t.stride())


@pytest.mark.parametrize("make", [
    lambda: torch.randn(2, 3, 4, 5),
    lambda: torch.randn(2, 3, 4, 5).transpose(1, 2),
    lambda: torch.randn(2, 3, 4, 5)[:, 1:, ::2],
    lambda: torch.randn(3, 1).expand(3, 4),
    lambda: torch.randn(4, 6, dtype=torch.float16)[1:],
    lambda: torch.randn(4, 6).to(torch.bfloat16)[:, 2:],
    lambda: torch.zeros(3, 5, dtype=torch.bool),
    lambda: torch.zeros(7, dtype=torch.int32)[2:],
    lambda: torch.nn.Parameter(torch.randn(2, 3)),
    lambda: torch.randn(2, 3, requires_grad=True),
    lambda: torch.tensor(1.5),
])
def test_torch_read_equals_attributes(make):
    """What run() sees of a tensor (pointer, dtype, shape, strides) is
    what the tensor's attributes say, whichever path read it."""
    t = make()
    assert attn._ext.info(t) == info_ref(t)


def test_torch_subclass_and_empty():
    class Sub(torch.Tensor):
        pass
    s = torch.randn(2, 3).as_subclass(Sub)
    assert attn._ext.info(s) == info_ref(s)
    e = torch.empty(0, 4)
    ptr, dt, shape, strides = attn._ext.info(e)
    assert (ptr, shape, strides) == (e.data_ptr(), (0, 4), e.stride())


def test_torch_fallback_messages():
    """Tensors the fast path does not take keep their precise errors."""
    q = torch.randn(1, 3, 2, 8)
    with pytest.raises(ValueError, match="device meta"):
        attn.forward(torch.empty(1, 3, 2, 8, device="meta"), q, q)
    with pytest.raises(ValueError, match="layout torch.sparse_coo"):
        attn.forward(q, q, q, bias=torch.randn(3, 3).to_sparse())
    with pytest.raises(TypeError, match="torch.float64"):
        attn.forward(q.double(), q, q)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_allocated_outputs(kind, dtype, rng):
    """out, lse, dq, dk, dv the caller leaves out: new, C-contiguous, of
    the inputs' kind and dtype (out: q's shape with v's head_dim)."""
    q = rng.standard_normal((2, 5, 4, 8)).astype(dtype)
    k = rng.standard_normal((2, 7, 2, 8)).astype(dtype)
    v = rng.standard_normal((2, 7, 2, 6)).astype(dtype)
    if kind == "torch":
        q, k, v = (torch.from_numpy(x) for x in (q, k, v))
    typ = type(q)
    o, lse = attn.forward(q, k, v, return_lse=True)
    assert type(o) is typ and type(lse) is typ
    assert tuple(o.shape) == (2, 5, 4, 6) and str(o.dtype).endswith(dtype)
    assert tuple(lse.shape) == (2, 4, 5) and str(lse.dtype).endswith(
        "float32")
    ref = attn.forward(q, k, v, out=np.empty_like(np.asarray(o)) if
                       kind == "numpy" else torch.empty_like(o))
    np.testing.assert_array_equal(np.asarray(o), np.asarray(ref))
    dq, dk, dv = attn.backward(o, q, k, v, o, lse)
    for g, x in ((dq, q), (dk, k), (dv, v)):
        assert type(g) is typ and tuple(g.shape) == tuple(x.shape)
        assert g.dtype == x.dtype
        assert (g.flags.c_contiguous if kind == "numpy"
                else g.is_contiguous())
    # bhsd and packed (thd) lse shapes
    qb = q.transpose(0, 2, 1, 3) if kind == "numpy" else q.transpose(1, 2)
    kb = k.transpose(0, 2, 1, 3) if kind == "numpy" else k.transpose(1, 2)
    vb = v.transpose(0, 2, 1, 3) if kind == "numpy" else v.transpose(1, 2)
    o2, lse2 = attn.forward(qb, kb, vb, layout="bhsd", return_lse=True)
    assert tuple(o2.shape) == (2, 4, 5, 6) and tuple(lse2.shape) == (2, 4, 5)
    cu = np.array([0, 2, 5], np.int32)
    cuk = np.array([0, 3, 7], np.int32)
    o3, lse3 = attn.forward(q[0], k[0], v[0], cu_seqlens_q=cu,
                            cu_seqlens_k=cuk, return_lse=True)
    assert tuple(o3.shape) == (5, 4, 6) and tuple(lse3.shape) == (4, 5)


def test_numpy_bfloat16_needs_out():
    class DL:  # a bf16 array that is neither numpy nor torch
        def __init__(self, t):
            self.t = t

        def __dlpack__(self, **kw):
            return torch.utils.dlpack.to_dlpack(self.t)

    q = torch.randn(1, 3, 2, 8).to(torch.bfloat16)
    with pytest.raises(TypeError, match="numpy has no bfloat16: pass out="):
        attn.forward(DL(q), DL(q), DL(q))


def test_sdpa_paths_agree():
    """No gradient wanted: the bare call; wanted: the autograd Function.
    Same output, the output [b, h, s, d] over [b, s, h, d] memory."""
    torch.manual_seed(0)
    q = torch.randn(2, 4, 9, 16)
    k = torch.randn(2, 2, 11, 16)
    v = torch.randn(2, 2, 11, 8)
    o = at.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    assert o.transpose(1, 2).is_contiguous()
    qg, kg, vg = (x.clone().requires_grad_() for x in (q, k, v))
    og = at.scaled_dot_product_attention(qg, kg, vg, enable_gqa=True)
    assert og.grad_fn is not None and o.grad_fn is None
    assert og.transpose(1, 2).is_contiguous()
    torch.testing.assert_close(og.detach(), o, rtol=0, atol=0)
    ref = torch.nn.functional.scaled_dot_product_attention(
        qg, kg, vg, enable_gqa=True)
    g = torch.randn_like(o)
    got = torch.autograd.grad(og, (qg, kg, vg), g)
    want = torch.autograd.grad(ref, (qg, kg, vg), g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        assert at.scaled_dot_product_attention(qg, kg, vg,
                                               enable_gqa=True).grad_fn is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16,
                                   torch.bfloat16])
def test_sdpa_output_layout_and_heads(dtype):
    """The output the extension allocates for attn.torch (Ellipsis): its
    dtype, shape [b, h, s, dv] and [b, s, h, dv] memory, with and without
    autograd; unequal heads without enable_gqa still refused."""
    torch.manual_seed(2)
    q = torch.randn(3, 2, 5, 8, dtype=dtype)
    k = torch.randn(3, 2, 7, 8, dtype=dtype)
    v = torch.randn(3, 2, 7, 4, dtype=dtype)
    for grad in (False, True):
        qq = q.clone().requires_grad_(grad)
        o = at.scaled_dot_product_attention(qq, k, v)
        assert o.dtype == dtype and tuple(o.shape) == (3, 2, 5, 4)
        assert o.stride() == (40, 4, 8, 1)
        ref = torch.nn.functional.scaled_dot_product_attention(
            q.float(), k.float(), v.float())
        tol = 1e-5 if dtype == torch.float32 else 2e-2
        torch.testing.assert_close(o.detach().float(), ref, rtol=tol,
                                   atol=tol)
    with pytest.raises(ValueError, match="enable_gqa"):
        at.scaled_dot_product_attention(q, k[:, :1], v[:, :1])


def test_flash_lse_with_and_without_grad():
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 5, 4, 8) for _ in range(3))
    o, lse, p = at.flash_attn_func(q, k, v, causal=True,
                                   return_attn_probs=True)
    assert p is None and tuple(lse.shape) == (2, 4, 5)
    qg = q.clone().requires_grad_()
    og, lseg, _ = at.flash_attn_func(qg, k, v, causal=True,
                                     return_attn_probs=True)
    assert not lseg.requires_grad
    torch.testing.assert_close(lseg, lse, rtol=0, atol=0)
    og.sum().backward()
    assert qg.grad is not None and qg.grad.shape == q.shape
