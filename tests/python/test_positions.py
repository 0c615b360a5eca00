"""attn.rope_apply, rope_frequencies, sinusoidal_table, alibi_slopes,
t5_bucket, and the position options of attn.forward / attn.backward
(position offsets, the T5 relative bias) against float64 numpy oracles
(oracle.py) and Hugging Face transformers' own implementations (Llama,
GPT-NeoX and GPT-J rotary embeddings, ROPE_INIT_FUNCTIONS, T5's buckets).

Tolerances. libattn computes RoPE's angles and rotation in double and
rounds each output once, so against the float64 oracle an f32 result is
within half an ulp (rtol 2^-23 here, one ulp), bf16/f16 outputs within
half of theirs (rtol 2^-8 / 2^-11). Hugging Face forms angles in float32
(position x inv_freq): its error grows like |angle| 2^-23, so the
comparisons with its modules allow (max position + 8) 2^-21 |x|.
"""

import numpy as np
import pytest

import attn
import oracle
from helpers import close

torch = pytest.importorskip("torch")

SCALINGS = [
    dict(),
    dict(scaling="linear", factor=4.0),
    dict(scaling="ntk", factor=3.0),
    dict(scaling="yarn", factor=8.0, original_max_position=512.0),
    dict(scaling="yarn", factor=4.0, original_max_position=2048.0,
         beta_fast=16.0, beta_slow=2.0, mscale=1.3),
    dict(scaling="llama3", factor=8.0, original_max_position=256.0,
         low_freq_factor=1.0, high_freq_factor=4.0),
]

def _bwd_close(got, want, sq, sk, d):
    """test_core's backward rule: f32 accumulation over the reduced axes,
    64 * 2^-24 * (seq_q + seq_k + head_dim) * max(1, max|want|)."""
    tol = 64 * 2.0 ** -24 * (sq + sk + d) * max(1.0, np.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)



def _rel_close(got, ref, rtol, scale=None, pos_max=1000, atol=0.0):
    """|got - ref| <= rtol |ref| + atol + the oracle's own angle error:
    pos * freq rounded once in double, (pos_max + 1) 2^-52 max|ref| (a
    result near 0 by cancellation sees it in absolute terms)."""
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    s = np.abs(ref).max(initial=0) if scale is None else scale
    err = np.abs(got - ref)
    bound = rtol * np.abs(ref) + atol + (pos_max + 1) * 2.0 ** -50 * s
    assert (err <= bound).all(), "max err %g, at %s" % (
        err.max(), np.unravel_index(np.argmax(err - bound), err.shape))


# --------------------------------------------------------------------------
# RoPE against the float64 oracle
# --------------------------------------------------------------------------

@pytest.mark.parametrize("style", ["half", "interleaved"])
@pytest.mark.parametrize("sc", SCALINGS, ids=lambda s: s.get("scaling",
                                                               "none"))
def test_rope_oracle(rng, style, sc):
    for d, dims in ((64, 0), (16, 8), (2, 0), (128, 96), (30, 0)):
        if sc.get("scaling") == "ntk" and (dims or d) < 4:
            continue
        b, s, h = 2, int(rng.integers(1, 70)), 3
        x = rng.standard_normal((b, s, h, d)).astype(np.float32)
        off = int(rng.integers(-50, 5000))
        y = attn.rope_apply(x, style=style, dims=dims, pos_offset=off,
                            base=10000.0 if d != 30 else 500000.0, **sc)
        pos = np.broadcast_to(np.arange(s) + off, (b, s))
        ref = oracle.rope(x, pos, style, dims=dims,
                          base=10000.0 if d != 30 else 500000.0, **sc)
        _rel_close(y, ref, 2.0 ** -23, pos_max=abs(off) + s)
        assert y.dtype == np.float32 and y.shape == x.shape


def test_rope_positions_and_offsets(rng):
    b, s, h, d = 3, 37, 2, 32
    x = rng.standard_normal((b, s, h, d)).astype(np.float32)
    pos = rng.integers(-10 ** 6, 10 ** 6, (b, s))
    y = attn.rope_apply(x, positions=pos, style="interleaved")
    _rel_close(y, oracle.rope(x, pos, "interleaved"), 2.0 ** -23,
               pos_max=10 ** 6)
    # [seq] positions broadcast over the batch
    p1 = rng.integers(0, 1000, s)
    y = attn.rope_apply(x, positions=p1)
    _rel_close(y, oracle.rope(x, np.broadcast_to(p1, (b, s))), 2.0 ** -23,
               pos_max=1000)
    # per-batch offsets plus a common one
    offs = np.array([0, 7, 2 ** 24], np.int64)  # oracle: pos * f in double
    y = attn.rope_apply(x, pos_offset=5, pos_offsets=offs)
    pos = np.arange(s)[None, :] + 5 + offs[:, None]
    _rel_close(y, oracle.rope(x, pos), 2.0 ** -23, pos_max=2 ** 24 + s)
    # a 3-D x is one batch
    y3 = attn.rope_apply(x[1], pos_offset=3)
    _rel_close(y3, oracle.rope(x[1:2], np.arange(s)[None] + 3)[0],
               2.0 ** -23)


def test_rope_large_position_exact(rng):
    """Angles are reduced modulo 2 pi exactly: at positions up to 2^47 the
    f32 result is still within an ulp of the exact rotation. base 4 with
    head_dim 4 gives the exact frequencies 1 and 1/2, so pos * freq is
    exact and mpmath (50 digits) gives the reference."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50
    x = rng.standard_normal((1, 5, 1, 4)).astype(np.float32)
    pos = np.array([[2 ** 40, 2 ** 40 + 1, 123456789, -(2 ** 47), 3]])
    y = attn.rope_apply(x, positions=pos, base=4.0)
    for t in range(5):
        for i, f in enumerate((1, 0.5)):
            a = mp.mpf(int(pos[0, t])) * mp.mpf(f)
            c, s_ = float(mp.cos(a)), float(mp.sin(a))
            x0, x1 = float(x[0, t, 0, i]), float(x[0, t, 0, i + 2])
            r0, r1 = x0 * c - x1 * s_, x1 * c + x0 * s_
            assert abs(y[0, t, 0, i] - r0) <= 2.0 ** -23 * abs(r0) + 1e-12
            assert abs(y[0, t, 0, i + 2] - r1) <= 2.0 ** -23 * abs(r1) + 1e-12
    # the inverse at huge positions undoes the rotation (two roundings)
    z = attn.rope_apply(y, positions=pos, base=4.0, inverse=True)
    np.testing.assert_allclose(z, x, rtol=0, atol=4e-7 * np.abs(x).max())


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_rope_half_precision_torch(rng, dtype):
    dt = getattr(torch, dtype)
    x = torch.from_numpy(rng.standard_normal((2, 50, 3, 64)).astype(
        np.float32)).to(dt)
    y = attn.rope_apply(x, pos_offset=11, scaling="yarn", factor=4.0,
                        original_max_position=64.0)
    assert isinstance(y, torch.Tensor) and y.dtype == dt
    ref = oracle.rope(x.float().numpy(), np.arange(50)[None].repeat(2, 0) + 11,
                      scaling="yarn", factor=4.0, original_max_position=64.0)
    # half an ulp of the storage type (f16: and half its subnormal step)
    _rel_close(y.float().numpy(), ref, 2.0 ** -8 if dtype == "bfloat16"
               else 2.0 ** -11, pos_max=61,
               atol=0 if dtype == "bfloat16" else 2.0 ** -25)
    # f16 in, f32 out (mixed storage)
    out = torch.empty(x.shape, dtype=torch.float32)
    attn.rope_apply(x, pos_offset=11, scaling="yarn", factor=4.0,
                    original_max_position=64.0, out=out)
    _rel_close(out.numpy(), ref, 2.0 ** -23)


def test_rope_in_place_zero_copy_strided(rng):
    base = rng.standard_normal((2, 40, 4, 64)).astype(np.float32)
    ref = oracle.rope(base, np.broadcast_to(np.arange(40), (2, 40)))
    x = base.copy()
    ptr = x.ctypes.data
    r = attn.rope_apply(x, out=x)
    assert r is x and x.ctypes.data == ptr
    _rel_close(x, ref, 2.0 ** -23)
    # a bhsd buffer seen as bshd (strided, not contiguous): no copy
    t = torch.from_numpy(np.ascontiguousarray(base.transpose(0, 2, 1, 3)))
    view = t.permute(0, 2, 1, 3)  # [b, s, h, d] with heads outer
    p0 = view.data_ptr()
    attn.rope_apply(view, out=view)
    assert view.data_ptr() == p0
    _rel_close(view.numpy(), ref, 2.0 ** -23)
    # a torch out= of another array
    xt = torch.from_numpy(base.copy())
    out = torch.empty_like(xt)
    po = out.data_ptr()
    assert attn.rope_apply(xt, out=out) is out and out.data_ptr() == po
    _rel_close(out.numpy(), ref, 2.0 ** -23)


@pytest.mark.parametrize("style", ["half", "interleaved"])
@pytest.mark.parametrize("sc", SCALINGS, ids=lambda s: s.get("scaling",
                                                               "none"))
def test_rope_inverse_is_gradient(rng, style, sc):
    """y = R x is linear, so dL/dx = R^T dL/dy; the transpose identity
    <R x, g> = <x, R^T g> in float64 over random x, g checks that inverse
    computes R^T (also with YaRN's mscale, where R is not orthogonal).
    Tolerance: both sides are sums of n products of f32-rounded values,
    each within 2^-24 relative: n 2^-23 max|x| max|g|."""
    b, s, h, d = 2, 33, 2, 48
    x = rng.standard_normal((b, s, h, d)).astype(np.float32)
    g = rng.standard_normal((b, s, h, d)).astype(np.float32)
    kw = dict(style=style, dims=32, pos_offset=1000, **sc)
    rx = attn.rope_apply(x, **kw).astype(np.float64)
    rtg = attn.rope_apply(g, inverse=True, **kw).astype(np.float64)
    lhs = (rx * g).sum()
    rhs = (x.astype(np.float64) * rtg).sum()
    n = x.size
    assert abs(lhs - rhs) <= n * 2.0 ** -23 * 4 * 4, (lhs, rhs)
    # and against the oracle's transpose
    pos = np.broadcast_to(np.arange(s) + 1000, (b, s))
    _rel_close(rtg, oracle.rope(g, pos, style, inverse=True, dims=32, **sc),
               2.0 ** -23)
    # finite differences of L = <rope(x), g> in float64 (the oracle) agree
    # with the inverse: the map is linear, so the difference quotient is
    # exact up to rounding
    e = np.zeros_like(x, np.float64)
    idx = (1, 7, 1, 3)
    e[idx] = 1.0
    fd = (oracle.rope(x + 1e-3 * e, pos, style, dims=32, **sc) -
          oracle.rope(x - 1e-3 * e, pos, style, dims=32, **sc))
    fd = (fd * g).sum() / 2e-3
    assert abs(fd - rtg[idx]) <= 1e-5 * (1 + abs(fd))


# --------------------------------------------------------------------------
# RoPE against Hugging Face transformers
# --------------------------------------------------------------------------

def _hf_tol(x, maxpos):
    return (maxpos + 8) * 2.0 ** -21 * float(np.abs(x).max())


HF_LLAMA = [
    (None, {}),
    ("linear", dict(factor=4.0)),
    ("dynamic", dict(factor=2.0)),
    ("yarn", dict(factor=4.0, original_max_position_embeddings=1024)),
    ("yarn", dict(factor=16.0, original_max_position_embeddings=512,
                  beta_fast=24.0, beta_slow=2.0)),
    ("llama3", dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                    original_max_position_embeddings=512)),
]


def _ours(rope_type, p):
    kw = {}
    if rope_type is None:
        return kw
    kw["scaling"] = {"dynamic": "ntk"}.get(rope_type, rope_type)
    kw["factor"] = p["factor"]
    for a, b in (("original_max_position_embeddings",
                  "original_max_position"),
                 ("low_freq_factor", "low_freq_factor"),
                 ("high_freq_factor", "high_freq_factor"),
                 ("beta_fast", "beta_fast"), ("beta_slow", "beta_slow")):
        if a in p:
            kw[b] = float(p[a])
    return kw


@pytest.mark.parametrize("rope_type,params", HF_LLAMA,
                         ids=[str(t) for t, _ in HF_LLAMA])
def test_rope_vs_hf_llama(rng, rope_type, params):
    tr = pytest.importorskip("transformers")
    from transformers.models.llama.modeling_llama import (
        LlamaRotaryEmbedding, apply_rotary_pos_emb)
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    d, theta = 64, 50000.0
    rp = dict(rope_type=rope_type or "default", rope_theta=theta, **params)
    cfg = tr.LlamaConfig(hidden_size=4 * d, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=d,
                         max_position_embeddings=4096, rope_parameters=rp)
    emb = LlamaRotaryEmbedding(cfg)
    kw = dict(base=theta, **_ours(rope_type, params))
    # frequencies: ROPE_INIT_FUNCTIONS computes them in f32
    inv, ms = attn.rope_frequencies(d, **kw)
    if rope_type is not None:
        # HF's dynamic NTK multiplies the base by (factor seq_len / max -
        # factor + 1)^(d / (d - 2)): ours (the static form) is it at the
        # seq_len where that multiplier reaches factor
        f = params["factor"]
        sl = 4096 * (2 * f - 1) / f if rope_type == "dynamic" else None
        hf_inv, hf_af = ROPE_INIT_FUNCTIONS[rope_type](cfg, "cpu",
                                                       seq_len=sl)
        np.testing.assert_allclose(inv, hf_inv.numpy(), rtol=2e-6)
        assert abs(ms - hf_af) <= 1e-6 * hf_af
    if rope_type == "dynamic":
        return  # the module rescales only past max_position_embeddings
    np.testing.assert_allclose(inv, emb.inv_freq.numpy(), rtol=2e-6)
    # the rotation: q, k [b, s, h, d] at positions pos, HF's module + apply
    b, s = 2, 45
    pos = torch.from_numpy(rng.integers(0, 700, (b, s)))
    q = torch.from_numpy(rng.standard_normal((b, s, 4, d)).astype(
        np.float32))
    k = torch.from_numpy(rng.standard_normal((b, s, 2, d)).astype(
        np.float32))
    cos, sin = emb(q, pos)
    hq, hk = apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=2)
    oq = attn.rope_apply(q, positions=pos, **kw)
    ok = attn.rope_apply(k, positions=pos, **kw)
    tol = _hf_tol(q.numpy(), 700) * (ms if ms > 1 else 1)
    np.testing.assert_allclose(oq.numpy(), hq.numpy(), rtol=0, atol=tol)
    np.testing.assert_allclose(ok.numpy(), hk.numpy(), rtol=0, atol=tol)


def test_rope_vs_hf_gpt_neox_partial(rng):
    """GPT-NeoX: half-split RoPE on the first 25% of head_dim."""
    tr = pytest.importorskip("transformers")
    from transformers.models.gpt_neox.modeling_gpt_neox import (
        GPTNeoXRotaryEmbedding, apply_rotary_pos_emb)
    d = 64
    cfg = tr.GPTNeoXConfig(hidden_size=4 * d, num_attention_heads=4,
                           partial_rotary_factor=0.25)
    emb = GPTNeoXRotaryEmbedding(cfg)
    b, s = 2, 31
    pos = torch.arange(s)[None].repeat(b, 1) + 17
    q = torch.from_numpy(rng.standard_normal((b, s, 4, d)).astype(
        np.float32))
    cos, sin = emb(q, pos)
    hq, _ = apply_rotary_pos_emb(q, q, cos, sin, unsqueeze_dim=2)
    ours = attn.rope_apply(q, dims=16, pos_offset=17)
    np.testing.assert_allclose(ours.numpy(), hq.numpy(), rtol=0,
                               atol=_hf_tol(q.numpy(), s + 17))
    assert torch.equal(ours[..., 16:], q[..., 16:])  # the rest copied


def test_rope_vs_hf_gptj_interleaved(rng):
    """GPT-J: interleaved pairs (rotate_every_two) on rotary_dim dims."""
    pytest.importorskip("transformers")
    from transformers.models.gptj.modeling_gptj import (
        apply_rotary_pos_emb, create_sinusoidal_positions)
    d, rot = 64, 32
    b, s = 2, 29
    table = create_sinusoidal_positions(512, rot)
    pos = torch.from_numpy(rng.integers(0, 512, (b, s)))
    sincos = table[pos]
    sin, cos = torch.split(sincos, rot // 2, dim=-1)
    x = torch.from_numpy(rng.standard_normal((b, s, 3, d)).astype(
        np.float32))
    hf = torch.cat([apply_rotary_pos_emb(x[..., :rot], sin, cos),
                    x[..., rot:]], dim=-1)
    ours = attn.rope_apply(x, style="interleaved", dims=rot, positions=pos)
    np.testing.assert_allclose(ours.numpy(), hf.numpy(), rtol=0,
                               atol=_hf_tol(x.numpy(), 512))


# --------------------------------------------------------------------------
# Sinusoidal, ALiBi, T5
# --------------------------------------------------------------------------

@pytest.mark.parametrize("n,d,pos0,base", [(1, 1, 0, 10000.0),
                                           (50, 64, 0, 10000.0),
                                           (17, 33, 1000, 10000.0),
                                           (9, 8, -4, 500.0)])
def test_sinusoidal(n, d, pos0, base):
    t = attn.sinusoidal_table(n, d, pos0=pos0, base=base)
    assert t.shape == (n, d) and t.dtype == np.float32
    _rel_close(t, oracle.sinusoidal(n, d, pos0, base), 2.0 ** -23,
               scale=1.0)


def test_sinusoidal_vs_hf_gptj_table():
    """GPT-J's create_sinusoidal_positions is the same table with its sin
    and cos halves apart (computed in f32 by HF)."""
    pytest.importorskip("transformers")
    from transformers.models.gptj.modeling_gptj import \
        create_sinusoidal_positions
    hf = create_sinusoidal_positions(64, 16).numpy()
    t = attn.sinusoidal_table(64, 16)
    np.testing.assert_allclose(t[:, 0::2], hf[:, :8], atol=80 * 2.0 ** -22)
    np.testing.assert_allclose(t[:, 1::2], hf[:, 8:], atol=80 * 2.0 ** -22)


@pytest.mark.parametrize("heads", [1, 2, 3, 5, 6, 8, 12, 16, 20, 64])
def test_alibi_slopes(heads):
    s = attn.alibi_slopes(heads)
    assert s.shape == (heads,) and s.dtype == np.float32
    _rel_close(s, oracle.alibi_slopes(heads), 2.0 ** -23)


def test_t5_bucket_vs_hf():
    pytest.importorskip("transformers")
    from transformers.models.t5.modeling_t5 import T5Attention
    rel = np.arange(-700, 701)
    for bidir in (True, False):
        for nb, md in ((32, 128), (8, 20), (4, 3), (31, 1000), (64, 64)):
            hf = T5Attention._relative_position_bucket(
                torch.from_numpy(rel), bidirectional=bidir, num_buckets=nb,
                max_distance=md).numpy()
            got = attn.t5_bucket(rel, nb, md, bidir)
            assert got.dtype == np.int64
            np.testing.assert_array_equal(got, hf)
            np.testing.assert_array_equal(
                oracle.t5_bucket(rel, nb, md, bidir), hf)
    assert attn.t5_bucket(-5) == 5 and attn.t5_bucket(3) == 19
    assert isinstance(attn.t5_bucket(0), int)
    assert attn.t5_bucket(rel[:1400].reshape(7, -1)).shape == (7, 200)


# --------------------------------------------------------------------------
# attn.forward / attn.backward: position offsets, ALiBi, T5 bias
# --------------------------------------------------------------------------

def _pos_case(rng, b=2, sq=37, sk=70, hq=4, hk=2, d=32):
    q = rng.standard_normal((b, sq, hq, d)).astype(np.float32)
    k = rng.standard_normal((b, sk, hk, d)).astype(np.float32)
    v = rng.standard_normal((b, sk, hk, d)).astype(np.float32)
    return q, k, v


CASES = [
    dict(q_off=5, k_off=0, causal=1),
    dict(q_off=0, k_off=3, causal=1, window=(9, 0)),
    dict(q_offs=[0, 40], k_offs=[2, 0], causal=1, alibi=True),
    dict(q_off=-20, causal=2, window=(4, 4), alibi=True),
    dict(rel=(32, 128, True)),
    dict(rel=(16, 40, False), causal=1, q_offs=[3, 60]),
    dict(rel=(8, 16, True), alibi=True, kv_lens=[50, 9], k_off=7),
]


def _run_case(rng, case, backward):
    b, sq, sk, hq = 2, 37, 70, 4
    q, k, v = _pos_case(rng, b, sq, sk, hq)
    kw, pt = {}, dict(B=b, Sq=sq, Sk=sk, Hq=hq)
    if case.get("causal"):
        kw["causal"] = True
        kw["causal_align"] = "bottom_right" if case["causal"] == 1 \
            else "top_left"
        pt["causal"] = case["causal"]
    if "window" in case:
        kw["window"] = pt["window"] = case["window"]
    for a, o in (("q_off", "q_pos_offset"), ("k_off", "k_pos_offset")):
        if a in case:
            kw[o] = pt[a] = case[a]
    for a, o in (("q_offs", "q_pos_offsets"), ("k_offs", "k_pos_offsets")):
        if a in case:
            kw[o] = pt[a] = np.array(case[a], np.int64)
    if case.get("alibi"):
        kw["alibi_slopes"] = pt["alibi"] = attn.alibi_slopes(hq)
    if "kv_lens" in case:
        kw["kv_lens"] = pt["kv_lens"] = np.array(case["kv_lens"], np.int32)
    if "rel" in case:
        nb, md, bi = case["rel"]
        table = rng.standard_normal((nb, hq)).astype(np.float32)
        kw.update(rel_bias=table, rel_max_distance=md, rel_bidirectional=bi)
        pt.update(rel_bias=table, buckets=nb, max_distance=md,
                  bidirectional=bi)
    bias, mask, bk = oracle.position_terms(**pt)
    op = dict(bias=bias, mask=mask)
    if "kv_lens" in case:
        op["kv_lens"] = kw["kv_lens"]
    o, lse = attn.forward(q, k, v, return_lse=True, **kw)
    o64, l64 = oracle.forward(q, k, v, **op)
    o32, l32 = oracle.forward(q, k, v, dtype=np.float32, **op)
    close(o, o64, o32)
    close(lse, l64, l32)
    if not backward:
        return
    dout = rng.standard_normal(o.shape).astype(np.float32)
    drel = None
    if "rel" in case:
        drel = np.empty_like(kw["rel_bias"])
        kw["drel_bias"] = drel
    dq, dk, dv = attn.backward(dout, q, k, v, o, lse, **kw)
    rq, rk, rv, rb = oracle.backward(dout, q, k, v, **op)
    for got, ref in ((dq, rq), (dk, rk), (dv, rv)):
        _bwd_close(got, ref, sq, sk, q.shape[3])
    if drel is not None:
        nb = case["rel"][0]
        want = np.zeros((nb, hq))
        for h in range(hq):
            np.add.at(want[:, h], bk, rb[:, h])
        n = bk.size
        # a sum of up to b*sq*sk f32 terms: n 2^-23 of the magnitudes
        bound = n * 2.0 ** -23 * np.abs(rb).sum(axis=(0, 2, 3)).max() + 1e-5
        assert np.abs(drel - want).max() <= bound


@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(
    CASES))])
def test_forward_positions(rng, case):
    _run_case(rng, case, backward=False)


@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(
    CASES))])
def test_backward_positions(rng, case):
    _run_case(rng, case, backward=True)


def test_positions_torch_and_offsets_shift_equivalence(rng):
    """Offsets that shift q and k together change nothing (ALiBi, T5 and
    causal read only kpos - qpos); torch tensors work the same."""
    q, k, v = (torch.from_numpy(a) for a in _pos_case(rng))
    table = torch.from_numpy(rng.standard_normal((32, 4)).astype(np.float32))
    kw = dict(causal=True, alibi_slopes=attn.alibi_slopes(4),
              rel_bias=table)
    a = attn.forward(q, k, v, **kw)
    b = attn.forward(q, k, v, q_pos_offset=1000, k_pos_offset=1000,
                     q_pos_offsets=torch.tensor([5, 6]),
                     k_pos_offsets=torch.tensor([5, 6]), **kw)
    assert isinstance(b, torch.Tensor)
    assert torch.equal(a, b)


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

def test_errors(rng):
    x = rng.standard_normal((1, 4, 2, 16)).astype(np.float32)
    with pytest.raises(ValueError, match="style"):
        attn.rope_apply(x, style="gptj")
    with pytest.raises(ValueError, match="scaling"):
        attn.rope_apply(x, scaling="dyn")
    with pytest.raises(ValueError, match="even"):
        attn.rope_apply(x, dims=3)
    with pytest.raises(ValueError, match="at most head_dim"):
        attn.rope_apply(x, dims=18)
    with pytest.raises(ValueError, match="odd"):
        attn.rope_apply(x[..., :15])
    with pytest.raises(ValueError, match="base"):
        attn.rope_apply(x, base=1.0)
    with pytest.raises(ValueError, match="factor"):
        attn.rope_apply(x, scaling="linear", factor=0.0)
    with pytest.raises(ValueError, match="positions has shape"):
        attn.rope_apply(x, positions=np.arange(5))
    with pytest.raises(ValueError, match="pos_offsets"):
        attn.rope_apply(x, pos_offsets=[1, 2])
    with pytest.raises(ValueError, match="one or the other"):
        attn.rope_apply(x, positions=np.arange(4), pos_offset=1)
    with pytest.raises(ValueError, match="2\\^48"):
        attn.rope_apply(x, positions=np.array([0, 1, 2, 2 ** 50]))
    with pytest.raises(attn.AttnValueError, match="attn.rope_apply"):
        attn.rope_apply(x, pos_offset=2 ** 50)
    with pytest.raises(attn.AttnError, match="OVERLAP"):
        attn.rope_apply(x[:, :3], out=x[:, 1:])
    with pytest.raises(ValueError, match="read-only"):
        attn.rope_apply(x, out=np.broadcast_to(x, x.shape))
    with pytest.raises(TypeError):
        attn.rope_apply(x.astype(np.float64))
    with pytest.raises(ValueError, match="got 2-D"):
        attn.rope_apply(x[0, 0])
    with pytest.raises(ValueError, match="NTK"):
        attn.rope_frequencies(2, scaling="ntk", factor=2.0)
    with pytest.raises(ValueError):
        attn.sinusoidal_table(0, 4)
    with pytest.raises(ValueError):
        attn.alibi_slopes(0)
    with pytest.raises(ValueError, match="buckets"):
        attn.t5_bucket(3, 1, 8, True)
    q, k, v = _pos_case(rng)
    with pytest.raises(ValueError, match="rel_bias"):
        attn.forward(q, k, v, rel_bias=np.zeros((8, 3), np.float32))
    with pytest.raises(ValueError, match="rel_buckets"):
        attn.forward(q, k, v, rel_bias=np.zeros((8, 4), np.float32),
                     rel_buckets=16)
    with pytest.raises(ValueError, match="q_pos_offsets"):
        attn.forward(q, k, v, q_pos_offsets=[1, 2, 3])
    with pytest.raises(attn.AttnValueError):
        attn.forward(q, k, v, rel_bias=np.zeros((8, 4), np.float32),
                     rel_max_distance=0)
    o, lse = attn.forward(q, k, v, return_lse=True)
    with pytest.raises(ValueError, match="drel_bias needs rel_bias"):
        attn.backward(o, q, k, v, o, lse,
                      drel_bias=np.zeros((8, 4), np.float32))
