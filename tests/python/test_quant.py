"""attn.quantize / attn.dequantize (q8_0, q4_0 blocks) against the gguf
package's numpy quantizer (bit-exact bytes: both follow ggml's
quantize_row_*_ref), and attn.forward / attn.backward with quantised K/V
(kv_dtype=) against the float64 oracle run on the dequantised values.

Tolerances: the kernels read the blocks and compute in f32 exactly as on
f32 K/V, so the rule of helpers.close (twice the naive f32 error) holds
against the oracle on the dequantised values; the straight-through
backward likewise.
"""

import numpy as np
import pytest

import attn
import oracle
from helpers import close, reference

BLOCK = {"q8_0": 34, "q4_0": 18}

def _bwd_close(got, want, sq, sk, d):
    """test_core's backward rule: f32 accumulation over the reduced axes,
    64 * 2^-24 * (seq_q + seq_k + head_dim) * max(1, max|want|)."""
    tol = 64 * 2.0 ** -24 * (sq + sk + d) * max(1.0, np.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)



def _gguf(dtype):
    gguf = pytest.importorskip("gguf")
    from gguf import quants
    qt = getattr(gguf.GGMLQuantizationType, dtype.upper())
    return quants, qt


@pytest.mark.parametrize("dtype", ["q8_0", "q4_0"])
def test_quantize_matches_gguf(rng, dtype):
    quants, qt = _gguf(dtype)
    for shape in ((32,), (3, 64), (2, 5, 4, 128), (7, 256)):
        x = (rng.standard_normal(shape) *
             rng.choice([1e-3, 1.0, 300.0])).astype(np.float32)
        x.reshape(-1)[::97] = 0.0
        if x.size >= 64:
            x.reshape(-1, 32)[1] = 0.0  # an all-zero block: scale 0
        got = attn.quantize(x, dtype)
        assert got.dtype == np.uint8
        assert got.shape == shape[:-1] + (shape[-1] // 32 * BLOCK[dtype],)
        want = quants.quantize(x, qt)
        np.testing.assert_array_equal(got, want)
        back = attn.dequantize(got, dtype)
        assert back.shape == x.shape and back.dtype == np.float32
        np.testing.assert_array_equal(back, quants.dequantize(want, qt))


def test_quantize_torch_and_errors(rng):
    torch = pytest.importorskip("torch")
    x = torch.randn(4, 64)
    q = attn.quantize(x, "q8_0")
    assert isinstance(q, torch.Tensor) and q.dtype == torch.uint8
    np.testing.assert_array_equal(q.numpy(), attn.quantize(x.numpy()))
    d = attn.dequantize(q, "q8_0")
    assert isinstance(d, torch.Tensor) and d.dtype == torch.float32
    # bf16 input is read as float32 first
    np.testing.assert_array_equal(
        attn.quantize(x.bfloat16(), "q4_0").numpy(),
        attn.quantize(x.bfloat16().float().numpy(), "q4_0"))
    with pytest.raises(ValueError, match="multiple of 32"):
        attn.quantize(np.zeros((2, 33), np.float32))
    with pytest.raises(ValueError, match="q8_0"):
        attn.quantize(np.zeros(32, np.float32), "q5_0")
    with pytest.raises(TypeError, match="uint8"):
        attn.dequantize(np.zeros(34, np.int8), "q8_0")
    with pytest.raises(ValueError, match="whole 18-byte"):
        attn.dequantize(np.zeros(34, np.uint8), "q4_0")


@pytest.mark.parametrize("dtype", ["q8_0", "q4_0"])
@pytest.mark.parametrize("layout", ["bshd", "bhsd"])
def test_forward_backward_quantised_kv(rng, dtype, layout):
    for sq, sk, d, dv, hq, hk, opts in (
            (1, 97, 64, 64, 8, 2, {}),
            (48, 65, 32, 96, 4, 4, dict(causal=True)),
            (13, 200, 128, 32, 6, 3, dict(window=(20, 5), softcap=10.0)),
            (64, 64, 64, 64, 2, 1, dict(causal=True, sinks=True))):
        b = 2
        q = rng.standard_normal((b, sq, hq, d)).astype(np.float32)
        k = rng.standard_normal((b, sk, hk, d)).astype(np.float32)
        v = rng.standard_normal((b, sk, hk, dv)).astype(np.float32)
        kq, vq = attn.quantize(k, dtype), attn.quantize(v, dtype)
        kd, vd = attn.dequantize(kq, dtype), attn.dequantize(vq, dtype)
        kw, op = {}, {}
        if opts.get("causal"):
            kw["causal"] = True
            op["causal"] = 1
        if "window" in opts:
            kw["window"] = op["window"] = opts["window"]
        if "softcap" in opts:
            kw["softcap"] = op["softcap"] = opts["softcap"]
        if opts.get("sinks"):
            kw["sinks"] = op["sinks"] = rng.uniform(-1, 1, hq).astype(
                np.float32)
        o64, l64, o32, l32 = reference(q, kd, vd, op)
        if layout == "bhsd":
            tq, tk, tv = (np.swapaxes(a, 1, 2) for a in (q, kq, vq))
            o, lse = attn.forward(tq, tk, tv, kv_dtype=dtype, layout="bhsd",
                                  return_lse=True, **kw)
            o = np.swapaxes(o, 1, 2)
        else:
            o, lse = attn.forward(q, kq, vq, kv_dtype=dtype,
                                  return_lse=True, **kw)
        close(o, o64, o32)
        close(lse, l64, l32)
        if layout == "bhsd":
            continue
        dout = rng.standard_normal(o.shape).astype(np.float32)
        dq, dk, dv_ = attn.backward(dout, q, kq, vq, o, lse, kv_dtype=dtype,
                                    **kw)
        assert dk.shape == k.shape and dv_.shape == v.shape
        assert dk.dtype == np.float32
        rq, rk, rv, _ = oracle.backward(dout, q, kd, vd, **op)
        for got, ref in ((dq, rq), (dk, rk), (dv_, rv)):
            _bwd_close(got, ref, sq, sk, max(d, dv))


def test_quantised_kv_torch_zero_copy(rng):
    torch = pytest.importorskip("torch")
    q = torch.randn(1, 30, 4, 64)
    k = torch.randn(1, 50, 2, 64)
    v = torch.randn(1, 50, 2, 64)
    kq, vq = attn.quantize(k, "q4_0"), attn.quantize(v, "q4_0")
    out = torch.empty(1, 30, 4, 64)
    p = out.data_ptr()
    r = attn.forward(q, kq, vq, kv_dtype="q4_0", causal=True, out=out)
    assert r is out and out.data_ptr() == p
    o64, _, o32, _ = reference(q.numpy(), attn.dequantize(kq, "q4_0").numpy(),
                               attn.dequantize(vq, "q4_0").numpy(),
                               dict(causal=1))
    close(out.numpy(), o64, o32)


def test_quantised_kv_errors(rng):
    q = rng.standard_normal((1, 4, 2, 64)).astype(np.float32)
    k = rng.standard_normal((1, 8, 2, 64)).astype(np.float32)
    kq = attn.quantize(k)
    with pytest.raises(TypeError, match="uint8"):
        attn.forward(q, k, k, kv_dtype="q8_0")
    with pytest.raises(ValueError, match="q8_0"):
        attn.forward(q, kq, kq, kv_dtype="q8")
    with pytest.raises(ValueError, match="34-byte"):
        attn.forward(q, kq[..., :40], kq[..., :40], kv_dtype="q8_0")
    # blocks of q4_0 read as q8_0: 2 blocks of 34 = 68 bytes for 64 values
    with pytest.raises(ValueError, match="whole 34-byte"):
        attn.forward(q, attn.quantize(k, "q4_0"), attn.quantize(k, "q4_0"),
                     kv_dtype="q8_0")
    # a head_dim that differs from q's: the library's message
    with pytest.raises(attn.AttnError, match="head_dim|HEAD_DIM"):
        attn.forward(q, kq[..., :34], kq[..., :34], kv_dtype="q8_0")
    # a row's blocks must be adjacent (the last axis contiguous)
    wide = np.zeros((1, 8, 2, 136), np.uint8)
    with pytest.raises(ValueError, match="contiguously"):
        attn.forward(q, wide[..., ::2], wide[..., ::2], kv_dtype="q8_0")
