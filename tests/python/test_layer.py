"""attn.Layer and attn.torch.MultiheadAttention: the multi-head attention
layer of attn/layer.h (libattn_layer) from Python.

References:
* torch.nn.MultiheadAttention with the same weights (forward and every
  gradient), run twice: in float64 (the truth) and in float32 (a
  same-precision implementation). libattn's f32 result must be within
  twice PyTorch's own f32 error plus 1e-6 absolute (helpers.close, the
  FlashAttention rule the core tests use): both are f32 computations of
  the same formula with different summation orders, so neither should be
  much further from the truth than the other. Plus 8 ulps of the largest
  value (8 * 2^-24 * max|ref|): a small tensor (a bias gradient of 48
  sums) can make the naive run's error luckily smaller than one rounding
  of its largest entry, and the layer sums in other orders (OpenBLAS's
  blocking, the kernels' tiles).
* Gradients: twice the naive error, or 64 f32 ulps (64 * 2^-24, about
  3.8e-6) of the largest true value of the gradient's group (the q, k, v
  weight gradients are one group, their biases another, every other
  tensor its own), whichever is larger. The core's 2x rule is for one
  attention call; a layer's gradient is a chain of six f32 products and
  the softmax, rounded differently from the naive chain at every step (P
  recomputed from the LSE, dS from rowsum(dO * O), tiles, BLAS blocking),
  and a gradient whose true value is 0 shows pure rounding noise at the
  scale of the terms it sums (dK is exactly 0 with a single key, k's bias
  gradient always: softmax is shift-invariant), which the naive chain
  happens to cancel exactly. The q, k and v gradients come from the same
  dS and dO, so their group's largest value is that scale. Seen: at
  most 23 ulps. A wrong gradient is off by O(max|ref|), 10^5 times more.
"""

import copy
import gc
import threading

import numpy as np
import pytest

import attn


def close(got, ref, ref32, factor=2):
    """|got - ref| <= factor * max|ref32 - ref| + 1e-6 + 8 * 2^-24 *
    max|ref| elementwise: helpers.close's rule (factor 2) plus the ulps
    above; factor 4 for gradients (see the module docstring)."""
    got, ref, ref32 = (np.asarray(t, np.float64) for t in (got, ref, ref32))
    assert got.shape == ref.shape, (got.shape, ref.shape)
    bound = (factor * np.abs(ref32 - ref).max(initial=0) + 1e-6 +
             8 * 2.0 ** -24 * np.abs(ref).max(initial=0))
    err = np.abs(got - ref)
    assert (err <= bound).all(), (
        "max err %g (bound %g) at %s" %
        (err.max(), bound, np.unravel_index(np.argmax(err), err.shape)))


def close_grad(got, ref, ref32, scale=None):
    """Gradients (see above): scale = the group's largest |true value|."""
    got, ref, ref32 = (np.asarray(t, np.float64) for t in (got, ref, ref32))
    assert got.shape == ref.shape, (got.shape, ref.shape)
    if scale is None:
        scale = np.abs(ref).max(initial=0)
    bound = max(2 * np.abs(ref32 - ref).max(initial=0),
                64 * 2.0 ** -24 * scale) + 1e-6
    err = np.abs(got - ref)
    assert (err <= bound).all(), (
        "max err %g (bound %g) at %s" %
        (err.max(), bound, np.unravel_index(np.argmax(err), err.shape)))


def _group_scales(g):
    """name -> the largest |value| of its group (q/k/v weights, q/k/v
    biases, others alone)."""
    def mx(names):
        return max((np.abs(np.asarray(g[n])).max() for n in names if n in g),
                   default=0.0)
    w = mx(["q_proj_weight", "k_proj_weight", "v_proj_weight"])
    b = mx(["q_proj_bias", "k_proj_bias", "v_proj_bias"])
    out = {n: np.abs(np.asarray(v)).max(initial=0) for n, v in g.items()}
    out.update({n: w for n in ("q_proj_weight", "k_proj_weight",
                               "v_proj_weight") if n in g})
    out.update({n: b for n in ("q_proj_bias", "k_proj_bias", "v_proj_bias")
                if n in g})
    # the input gradients share dQ, dK, dV's scale too
    xs = mx(["x", "y", "value"])
    out.update({n: xs for n in ("x", "y", "value") if n in g})
    return out


if not attn._layer.available():
    pytest.skip("libattn_layer (OpenBLAS) is not available",
                allow_module_level=True)

torch = pytest.importorskip("torch")
import attn.torch as at  # noqa: E402

LENGTHS = [1, 2, 5, 13, 47, 48, 49, 65, 97]


# ---------------------------------------------------------------------------
# numpy oracle of the layer
# ---------------------------------------------------------------------------
def _rope(x, pos, base, style, dims, inverse=False):
    """x [B, S, H, D] rotated at positions pos [S] (layer.h, positions.h)."""
    d = dims or x.shape[-1]
    half = d // 2
    inv = base ** (-(2.0 * np.arange(half)) / d)
    ang = pos[:, None].astype(np.float64) * inv[None, :]  # [S, half]
    c = np.cos(ang).astype(x.dtype)[None, :, None, :]
    s = np.sin(ang).astype(x.dtype)[None, :, None, :]
    if inverse:
        s = -s
    y = x.copy()
    if style == "half":
        i0, i1 = np.arange(half), np.arange(half) + half
    else:
        i0, i1 = 2 * np.arange(half), 2 * np.arange(half) + 1
    x0, x1 = x[..., i0], x[..., i1]
    y[..., i0] = x0 * c - x1 * s
    y[..., i1] = x1 * c + x0 * s
    return y


def _weights(P, fused, hq, hk, d, dv):
    if fused:
        w, nq, nk = P["in_proj_weight"], hq * d, hk * d
        b = P.get("in_proj_bias")
        ws = [w[:nq], w[nq:nq + nk], w[nq + nk:]]
        bs = [None] * 3 if b is None else [b[:nq], b[nq:nq + nk], b[nq + nk:]]
        return ws, bs
    return ([P["q_proj_weight"], P["k_proj_weight"], P["v_proj_weight"]],
            [P.get("q_proj_bias"), P.get("k_proj_bias"), P.get("v_proj_bias")])


def ref_layer(P, cfg, x, y=None, value=None, causal=0, dout=None,
              dtype=np.float64):
    """out (and with dout the gradients: dict of names, plus "x", "y",
    "value") of layer.h's formulas. cfg: heads, kv_heads, head_dim,
    head_dim_v, fused, rope (None or (base, style, dims))."""
    f = lambda a: None if a is None else np.asarray(a, dtype)  # noqa: E731
    P = {n: f(v) for n, v in P.items()}
    hq, hk = cfg["heads"], cfg["kv_heads"]
    d, dv = cfg["head_dim"], cfg["head_dim_v"]
    (wq, wk, wv), (bq, bk, bv) = _weights(P, cfg["fused"], hq, hk, d, dv)
    x = f(x)
    ys = x if y is None else f(y)
    vs = ys if value is None else f(value)
    B, Sq, Sk = x.shape[0], x.shape[1], ys.shape[1]

    def lin(a, w, b):
        r = a @ w.T
        return r if b is None else r + b

    Q = lin(x, wq, bq).reshape(B, Sq, hq, d)
    K = lin(ys, wk, bk).reshape(B, Sk, hk, d)
    V = lin(vs, wv, bv).reshape(B, Sk, hk, dv)
    rope = cfg.get("rope")
    qpos = np.arange(Sq) + Sk - Sq
    kpos = np.arange(Sk)
    if rope:
        Q = _rope(Q, qpos, *rope)
        K = _rope(K, kpos, *rope)
    scale = dtype(1.0 / np.sqrt(d))
    i, j = np.arange(Sq)[:, None], np.arange(Sk)[None, :]
    vis = np.ones((Sq, Sk), bool)
    if causal == 1:
        vis = j <= i + Sk - Sq
    elif causal == 2:
        vis = j <= i
    O = np.zeros((B, Sq, hq, dv), dtype)
    probs = {}
    for b in range(B):
        for h in range(hq):
            g = h // (hq // hk)
            s = scale * (Q[b, :, h] @ K[b, :, g].T)
            s = np.where(vis, s, -np.inf)
            m = s.max(axis=1, keepdims=True)
            m = np.where(np.isfinite(m), m, 0)
            e = np.where(vis, np.exp(s - m), 0).astype(dtype)
            den = e.sum(axis=1, keepdims=True)
            p = np.where(den > 0, e / np.where(den > 0, den, 1), 0)
            probs[b, h] = p
            O[b, :, h] = p @ V[b, :, g]
    Of = O.reshape(B * Sq, hq * dv)
    out = lin(Of, P["out_proj.weight"], P.get("out_proj.bias"))
    out = out.reshape(B, Sq, -1)
    if dout is None:
        return out
    do = f(dout).reshape(B * Sq, -1)
    G = {"out_proj.weight": do.T @ Of}
    if "out_proj.bias" in P:
        G["out_proj.bias"] = do.sum(0)
    dO = (do @ P["out_proj.weight"]).reshape(B, Sq, hq, dv)
    dQ, dK, dV = np.zeros_like(Q), np.zeros_like(K), np.zeros_like(V)
    for b in range(B):
        for h in range(hq):
            g = h // (hq // hk)
            p = probs[b, h]
            dP = dO[b, :, h] @ V[b, :, g].T
            dS = p * (dP - (dP * p).sum(axis=1, keepdims=True))
            dQ[b, :, h] = scale * (dS @ K[b, :, g])
            dK[b, :, g] += scale * (dS.T @ Q[b, :, h])
            dV[b, :, g] += p.T @ dO[b, :, h]
    if rope:
        dQ = _rope(dQ, qpos, *rope, inverse=True)
        dK = _rope(dK, kpos, *rope, inverse=True)
    dq, dk, dvv = (t.reshape(B * t.shape[1], -1) for t in (dQ, dK, dV))
    xf, yf, vf = (t.reshape(-1, t.shape[-1]) for t in (x, ys, vs))
    gw = [dq.T @ xf, dk.T @ yf, dvv.T @ vf]
    gb = [dq.sum(0), dk.sum(0), dvv.sum(0)]
    if cfg["fused"]:
        G["in_proj_weight"] = np.concatenate(gw)
        if "in_proj_bias" in P:
            G["in_proj_bias"] = np.concatenate(gb)
    else:
        for n, gwi, gbi in zip("qkv", gw, gb):
            G[n + "_proj_weight"] = gwi
            if n + "_proj_bias" in P:
                G[n + "_proj_bias"] = gbi
    dx = (dq @ wq).reshape(x.shape)
    dy = (dk @ wk).reshape(ys.shape)
    dval = (dvv @ wv).reshape(vs.shape)
    if y is None:
        G["x"] = dx + dy + dval
    elif value is None:
        G["x"], G["y"] = dx, dy + dval
    else:
        G["x"], G["y"], G["value"] = dx, dy, dval
    return out, G


def _randomise(layer, rng):
    """Random weights and biases (biases are 0 after init: make them
    matter)."""
    for name, v in layer.parameters().items():
        v[:] = rng.uniform(-0.5, 0.5, v.shape).astype(np.float32)


def _cfg(layer, fused=False, rope=None):
    return dict(heads=layer.heads, kv_heads=layer.kv_heads,
                head_dim=layer.head_dim, head_dim_v=layer.head_dim_v,
                fused=fused, rope=rope)


def _check_layer(layer, cfg, rng, B, Sq, Sk=None, causal=0, value=False):
    """Forward and every gradient of layer against the oracle."""
    cross = layer.cross
    x = rng.standard_normal((B, Sq, layer.d_model), dtype=np.float32)
    y = (rng.standard_normal((B, Sk, layer.kdim), dtype=np.float32)
         if cross else None)
    v = (rng.standard_normal((B, Sk, layer.vdim), dtype=np.float32)
         if value else None)
    kw = {}
    if causal:
        kw = dict(causal=True,
                  causal_align="bottom_right" if causal == 1 else "top_left")
    out = layer.forward(x, y, v, **kw)
    dout = rng.standard_normal(out.shape, dtype=np.float32)
    P = {n: t.copy() for n, t in layer.parameters().items()}
    r64, g64 = ref_layer(P, cfg, x, y, v, causal, dout)
    r32, g32 = ref_layer(P, cfg, x, y, v, causal, dout, np.float32)
    close(out, r64, r32)
    layer.zero_grad()
    got = layer.backward(dout)
    got = got if isinstance(got, tuple) else (got,)
    sc = _group_scales(g64)
    for name, gi in zip(("x", "y", "value"), got):
        close_grad(gi, g64[name], g32[name], sc[name])
    for name, g in layer.gradients().items():
        close_grad(g, g64[name], g32[name], sc[name])


# ---------------------------------------------------------------------------
# against torch.nn.MultiheadAttention
# ---------------------------------------------------------------------------
def _torch_pair(E, H, kdim=None, vdim=None, bias=True, seed=0):
    torch.manual_seed(seed)
    m32 = torch.nn.MultiheadAttention(E, H, bias=bias, kdim=kdim, vdim=vdim,
                                      batch_first=True)
    with torch.no_grad():
        for p in m32.parameters():  # biases non-zero, so they are tested
            p.uniform_(-0.5, 0.5)
    m64 = torch.nn.MultiheadAttention(E, H, bias=bias, kdim=kdim, vdim=vdim,
                                      batch_first=True).double()
    m64.load_state_dict({k: v.double() for k, v in m32.state_dict().items()})
    return m32, m64


def _torch_run(m, q, k, v, dout, self_attn, **kw):
    """out and gradients (inputs, then every named parameter)."""
    q = q.clone().requires_grad_()
    if self_attn:
        k = v = q
    else:
        k = k.clone().requires_grad_()
        v = v.clone().requires_grad_()
    m.zero_grad()
    out, _ = m(q, k, v, need_weights=False, **kw)
    out.backward(dout)
    g = {"x": q.grad}
    if not self_attn:
        g["y"], g["value"] = k.grad, v.grad
    g.update({n: p.grad for n, p in m.named_parameters()})
    return out.detach(), g


@pytest.mark.parametrize("B,S", [(1, 1), (2, 5), (1, 47), (2, 48), (1, 49),
                                 (1, 97)])
@pytest.mark.parametrize("causal", [False, True])
def test_self_attention_vs_torch(B, S, causal, rng):
    E, H = 48, 4
    m32, m64 = _torch_pair(E, H, seed=S)
    layer = attn.Layer(E, H, fused_qkv=True)
    for n, p in m32.state_dict().items():
        layer.parameters()[n][:] = p.numpy()
    x = rng.standard_normal((B, S, E), dtype=np.float32)
    dout = rng.standard_normal((B, S, E), dtype=np.float32)
    kw = {}
    if causal:  # PyTorch: a boolean mask, True = masked out
        kw["attn_mask"] = torch.ones(S, S, dtype=torch.bool).triu(1)
    t = torch.from_numpy
    o32, g32 = _torch_run(m32, t(x), None, None, t(dout), True, **kw)
    o64, g64 = _torch_run(m64, t(x).double(), None, None,
                          t(dout).double(), True, **kw)
    out = layer.forward(x, causal=causal)
    close(out, o64.numpy(), o32.numpy())
    layer.zero_grad()
    dx = layer.backward(dout)
    close_grad(dx, g64["x"].numpy(), g32["x"].numpy())
    grads = layer.gradients()
    assert set(grads) == {"in_proj_weight", "in_proj_bias",
                          "out_proj.weight", "out_proj.bias"}
    for n, g in grads.items():
        close_grad(g, g64[n].numpy(), g32[n].numpy())


@pytest.mark.parametrize("Sq,Sk", [(1, 1), (5, 13), (49, 2), (13, 65)])
def test_cross_attention_vs_torch(Sq, Sk, rng):
    E, H, kdim, vdim = 32, 4, 24, 40
    m32, m64 = _torch_pair(E, H, kdim=kdim, vdim=vdim, seed=Sq + Sk)
    layer = attn.Layer(E, H, kdim=kdim, vdim=vdim)
    assert layer.cross
    lp = layer.parameters()
    sd = m32.state_dict()
    for n in ("q_proj_weight", "k_proj_weight", "v_proj_weight",
              "out_proj.weight", "out_proj.bias"):
        lp[n][:] = sd[n].numpy()
    b = sd["in_proj_bias"].numpy()  # PyTorch's one bias of three blocks
    lp["q_proj_bias"][:], lp["k_proj_bias"][:], lp["v_proj_bias"][:] = (
        b[:E], b[E:2 * E], b[2 * E:])
    B = 2
    x = rng.standard_normal((B, Sq, E), dtype=np.float32)
    y = rng.standard_normal((B, Sk, kdim), dtype=np.float32)
    v = rng.standard_normal((B, Sk, vdim), dtype=np.float32)
    dout = rng.standard_normal((B, Sq, E), dtype=np.float32)
    # a key padding mask: sequence 1 keeps only its first keys (kv_lens)
    lens = np.array([Sk, max(1, Sk // 2)], np.int32)
    kpm = torch.arange(Sk)[None, :] >= torch.from_numpy(lens)[:, None]
    t = torch.from_numpy
    o32, g32 = _torch_run(m32, t(x), t(y), t(v), t(dout), False,
                          key_padding_mask=kpm)
    o64, g64 = _torch_run(m64, t(x).double(), t(y).double(), t(v).double(),
                          t(dout).double(), False, key_padding_mask=kpm)
    out = layer.forward(x, y, v, kv_lens=lens)
    close(out, o64.numpy(), o32.numpy())
    layer.zero_grad()
    dx, dy, dval = layer.backward(dout)
    sc = _group_scales({n: t.numpy() for n, t in g64.items()})
    for n, got in (("x", dx), ("y", dy), ("value", dval)):
        close_grad(got, g64[n].numpy(), g32[n].numpy(), sc[n])
    g = layer.gradients()
    for n in ("q_proj_weight", "k_proj_weight", "v_proj_weight",
              "out_proj.weight", "out_proj.bias"):
        close_grad(g[n], g64[n].numpy(), g32[n].numpy(), sc[n])
    bias_g = np.concatenate([g["q_proj_bias"], g["k_proj_bias"],
                             g["v_proj_bias"]])
    close_grad(bias_g, g64["in_proj_bias"].numpy(), g32["in_proj_bias"].numpy())


# ---------------------------------------------------------------------------
# against the numpy oracle: GQA/MQA, RoPE, cross, causal
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("hq,hk", [(8, 2), (6, 1), (4, 4), (3, 1)])
@pytest.mark.parametrize("causal", [0, 1])
def test_gqa_mqa_vs_oracle(hq, hk, causal, rng):
    for S in (1, 13, 49):
        layer = attn.Layer(40, hq, kv_heads=hk, head_dim=16, head_dim_v=8,
                           d_out=24, seed=S)
        _randomise(layer, rng)
        _check_layer(layer, _cfg(layer), rng, 2, S, causal=causal)


@pytest.mark.parametrize("Sq,Sk,causal", [(5, 13, 1), (13, 5, 1), (1, 65, 0),
                                          (48, 47, 2), (7, 7, 0)])
def test_cross_gqa_vs_oracle(Sq, Sk, causal, rng):
    layer = attn.Layer(32, 4, kv_heads=2, kdim=20, vdim=12, seed=1)
    _randomise(layer, rng)
    _check_layer(layer, _cfg(layer), rng, 2, Sq, Sk, causal, value=True)
    layer2 = attn.Layer(32, 4, kv_heads=1, cross=True, bias_k=False, seed=2)
    _randomise(layer2, rng)
    assert "k_proj_bias" not in layer2.parameters()
    _check_layer(layer2, _cfg(layer2), rng, 1, Sq, Sk, causal)


@pytest.mark.parametrize("style", ["half", "interleaved"])
@pytest.mark.parametrize("dims", [0, 8])
def test_rope_layer_vs_oracle(style, dims, rng):
    for S, causal in ((1, 1), (17, 1), (49, 0), (64, 1)):
        layer = attn.Layer(64, 4, kv_heads=2, positions="rope",
                           rope=dict(base=500.0, style=style, dims=dims),
                           seed=S)
        _randomise(layer, rng)
        cfg = _cfg(layer, rope=(500.0, style, dims))
        _check_layer(layer, cfg, rng, 2, S, causal=causal)


def test_rope_fused_cross_positions(rng):
    """RoPE with cross-attention: queries at i + seq_k - seq_q."""
    layer = attn.Layer(32, 2, cross=True, positions="rope", seed=5)
    _randomise(layer, rng)
    _check_layer(layer, _cfg(layer, rope=(10000.0, "half", 0)), rng, 2, 5,
                 11, causal=1)


# ---------------------------------------------------------------------------
# parameters: zero-copy views
# ---------------------------------------------------------------------------
def test_parameter_views_are_zero_copy(rng):
    layer = attn.Layer(16, 2, seed=3)
    p, flat = layer.parameters(), layer.flat_parameters()
    assert list(p) == ["q_proj_weight", "k_proj_weight", "v_proj_weight",
                       "q_proj_bias", "k_proj_bias", "v_proj_bias",
                       "out_proj.weight", "out_proj.bias"]
    for name, v in p.items():
        assert np.shares_memory(v, flat) and v.flags.writeable
        assert v.dtype == np.float32
        info = layer.param_info(name)
        assert v.shape == info["shape"]
        assert (v.__array_interface__["data"][0] ==
                flat.__array_interface__["data"][0] + 4 * info["offset"])
    # the same memory every time
    assert (layer.parameters()["q_proj_weight"].__array_interface__["data"]
            == p["q_proj_weight"].__array_interface__["data"])
    x = rng.standard_normal((1, 3, 16), dtype=np.float32)
    y0 = layer.forward(x).copy()
    p["out_proj.bias"][:] = 1.0  # loading weights by assignment
    y1 = layer.forward(x)
    np.testing.assert_allclose(y1, y0 + 1.0, rtol=0, atol=1e-6)
    flat[:] = 0.0
    assert not p["q_proj_weight"].any()
    assert not layer.forward(x).any()
    # gradients: views of the other buffer
    g = layer.gradients()
    assert np.shares_memory(g["q_proj_weight"], layer.flat_gradients())
    assert not np.shares_memory(g["q_proj_weight"], flat)
    layer.init_weights(7)
    layer.forward(x)
    layer.backward(np.ones((1, 3, 16), np.float32))
    assert g["q_proj_weight"].any()
    layer.zero_grad()
    assert not layer.flat_gradients().any()
    # out= is written in place
    out = np.empty((1, 3, 16), np.float32)
    assert layer.forward(x, out=out) is out
    # the views keep the layer alive
    del layer
    gc.collect()
    p["q_proj_weight"][:] = 2.0
    assert float(p["q_proj_weight"].sum()) == 2.0 * p["q_proj_weight"].size


def test_init_weights_pytorch_bounds():
    layer = attn.Layer(64, 8, fused_qkv=True, seed=11)
    p = layer.parameters()
    a = np.sqrt(6.0 / (64 + 3 * 64))  # xavier over in_proj_weight as one
    assert np.abs(p["in_proj_weight"]).max() <= a
    assert np.abs(p["in_proj_weight"]).max() > 0.9 * a
    assert np.abs(p["out_proj.weight"]).max() <= 1 / 8.0
    assert not p["in_proj_bias"].any() and not p["out_proj.bias"].any()
    other = attn.Layer(64, 8, fused_qkv=True, seed=11)
    assert np.array_equal(other.flat_parameters(), layer.flat_parameters())
    other.init_weights(12)
    assert not np.array_equal(other.flat_parameters(),
                              layer.flat_parameters())


def test_torch_inputs_and_positions(rng):
    """torch CPU tensors in and out; every position scheme runs and the
    trained tables receive gradients."""
    for pos, extra in (("sinusoidal", "pos_table"), ("learned", "pos_table"),
                       ("alibi", None), ("t5", "rel_bias"), ("rope", None)):
        layer = attn.Layer(32, 4, positions=pos, max_positions=64, seed=1)
        names = set(layer.parameters())
        if pos in ("learned", "t5"):
            assert extra in names
        x = torch.randn(2, 9, 32)
        out = layer.forward(x, causal=True)
        assert isinstance(out, torch.Tensor) and out.shape == (2, 9, 32)
        out_np = layer.forward(x.numpy(), causal=True)
        assert np.array_equal(out.numpy(), out_np)
        layer.forward(x, causal=True)  # backward follows the last forward
        layer.zero_grad()
        dx = layer.backward(torch.ones(2, 9, 32))
        assert isinstance(dx, torch.Tensor) and torch.isfinite(dx).all()
        if pos in ("learned", "t5"):
            assert layer.gradients()[extra].any()


# ---------------------------------------------------------------------------
# decode through attn.KVCache
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("pos", ["none", "rope", "alibi", "t5", "learned",
                                 "sinusoidal"])
@pytest.mark.parametrize("paged", [False, True])
def test_decode_equals_forward(pos, paged, rng):
    layer = attn.Layer(48, 6, kv_heads=2, positions=pos, seed=4)
    _randomise(layer, rng)
    B, S, prompt = 2, 23, 7
    x = rng.standard_normal((B, S, 48), dtype=np.float32)
    full = layer.forward(x, causal=True)
    cache = layer.make_cache(B, 32, page_size=8 if paged else 0)
    outs = [layer.decode(x[:, :prompt], cache)]
    assert list(cache.seq_lens) == [prompt] * B
    t = prompt
    while t < S:
        n = 1 if t < 15 else 3  # single tokens, then chunks of 3
        n = min(n, S - t)
        outs.append(layer.decode(x[:, t:t + n], cache))
        t += n
    got = np.concatenate(outs, axis=1)
    # the same formula through the decode kernel and smaller GEMMs: f32
    # rounding of a different order, relative to the output's size
    np.testing.assert_allclose(got, full, rtol=0,
                               atol=2e-5 * np.abs(full).max())
    assert list(cache.seq_lens) == [S] * B
    # a full cache: the library's error, the cache unchanged
    with pytest.raises(attn.AttnError) as e:
        layer.decode(x[:, :10], cache)
    assert list(cache.seq_lens) == [S] * B
    assert e.value.reason
    assert layer.decode_workspace_size(x[:, :1], cache) > 0


def test_decode_bf16_cache(rng):
    layer = attn.Layer(32, 4, kv_heads=2, positions="rope", seed=9)
    x = rng.standard_normal((1, 12, 32), dtype=np.float32)
    full = layer.forward(x, causal=True)
    cache = layer.make_cache(1, 16, dtype="bfloat16")
    got = np.concatenate([layer.decode(x[:, :4], cache)] +
                         [layer.decode(x[:, i:i + 1], cache)
                          for i in range(4, 12)], axis=1)
    # bf16 keys and values: 8 significant bits (relative 2^-8)
    np.testing.assert_allclose(got, full, rtol=0,
                               atol=2 ** -7 * np.abs(full).max())


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------
def test_errors(rng):
    with pytest.raises(attn.AttnValueError, match="divisible"):
        attn.Layer(30, 4)
    with pytest.raises(attn.AttnValueError, match="multiple of heads_kv"):
        attn.Layer(32, 4, kv_heads=3)
    with pytest.raises(attn.AttnValueError, match="fused_qkv"):
        attn.Layer(32, 4, kdim=16, fused_qkv=True)
    with pytest.raises(attn.AttnValueError, match="head_dim"):
        attn.Layer(32, 1, head_dim=300)
    with pytest.raises(ValueError, match="positions must be"):
        attn.Layer(32, 4, positions="xpos")
    with pytest.raises(ValueError, match="rope= needs"):
        attn.Layer(32, 4, rope=dict(base=100.0))
    with pytest.raises(attn.AttnValueError, match="rope"):
        attn.Layer(32, 4, positions="rope", rope=dict(dims=3))
    layer = attn.Layer(32, 4)
    x = rng.standard_normal((2, 5, 32), dtype=np.float32)
    with pytest.raises(RuntimeError, match="forward first"):
        layer.backward(np.ones((2, 5, 32), np.float32))
    with pytest.raises(ValueError, match=r"x has shape"):
        layer.forward(x[..., :16])
    with pytest.raises(TypeError, match="float32"):
        layer.forward(x.astype(np.float64))
    with pytest.raises(ValueError, match="self-attention"):
        layer.forward(x, x)
    with pytest.raises(ValueError, match="axes"):
        layer.forward(x[0, 0, :1])
    with pytest.raises(ValueError, match="read-only"):
        out = np.empty((2, 5, 32), np.float32)
        out.flags.writeable = False
        layer.forward(x, out=out)
    with pytest.raises(ValueError, match="out has shape"):
        layer.forward(x, out=np.empty((2, 5, 31), np.float32))
    with pytest.raises(ValueError, match="device"):
        layer.forward(torch.from_numpy(x).to("meta"))
    with pytest.raises(ValueError, match="kv_lens"):
        layer.forward(x, kv_lens=np.array([1], np.int32))
    with pytest.raises(KeyError):
        layer.param_info("in_proj_weight")
    layer.forward(x)
    with pytest.raises(ValueError, match="dout has shape"):
        layer.backward(np.ones((2, 4, 32), np.float32))
    cross = attn.Layer(32, 4, kdim=8, vdim=16)
    with pytest.raises(ValueError, match="pass kv"):
        cross.forward(x)
    with pytest.raises(ValueError, match="pass value"):
        cross.forward(x, rng.standard_normal((2, 3, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="kv has shape"):
        cross.forward(x, np.ones((3, 3, 8), np.float32),
                      np.ones((3, 3, 16), np.float32))
    # decode: a cross layer, a mismatched cache, a cache with its own rope
    y = np.ones((2, 3, 8), np.float32)
    c = attn.KVCache(2, 4, 8, 16)
    with pytest.raises(ValueError, match="self-attention layer"):
        cross.decode(x, c)
    with pytest.raises(attn.AttnError, match="head"):
        layer.decode(x, attn.KVCache(2, 2, 8, 16))
    with pytest.raises(ValueError, match="without rope"):
        layer.decode(x, attn.KVCache(2, 4, 8, 16, rope={}))
    with pytest.raises(TypeError, match="KVCache"):
        layer.decode(x, None)
    del y


def test_threads_share_nothing(rng):
    """Two layers in two Python threads (the GIL is released) give what
    they give alone; one layer used from two threads at once is refused
    or serialised, never corrupted."""
    layers = [attn.Layer(64, 4, seed=s) for s in (1, 2)]
    xs = [rng.standard_normal((2, 64, 64), dtype=np.float32) for _ in (1, 2)]
    want = [lay.forward(x) for lay, x in zip(layers, xs)]
    got = [None, None]

    def work(i):
        for _ in range(5):
            got[i] = layers[i].forward(xs[i])

    th = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    for g, w in zip(got, want):
        assert np.array_equal(g, w)


# ---------------------------------------------------------------------------
# attn.torch.MultiheadAttention
# ---------------------------------------------------------------------------
def _mha_pair(E, H, **kw):
    torch.manual_seed(0)
    ref = torch.nn.MultiheadAttention(E, H, **kw)
    with torch.no_grad():
        for p in ref.parameters():
            p.uniform_(-0.5, 0.5)
    ours = at.MultiheadAttention(E, H, **kw)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _err_rule(mine, theirs, exact):
    """The project's error rule against a float64 reference: our max error
    at most twice PyTorch's f32 error plus 1e-6 of the tensor's scale.
    (An elementwise rtol between two f32 results ignores the scale: the
    weight gradients here are ~150 and both err by ~1e-4 of it.)"""
    exact = exact.double()
    e_mine = (mine.double() - exact).abs().max().item()
    e_ref = (theirs.double() - exact).abs().max().item()
    scale = exact.abs().max().item()
    assert e_mine <= 2 * e_ref + 1e-6 * scale + 1e-12, (e_mine, e_ref, scale)


@pytest.mark.filterwarnings("ignore:Support for mismatched")  # torch's own
@pytest.mark.parametrize("batch_first", [False, True])
def test_module_vs_torch(batch_first, rng):
    E, H, L, N = 32, 4, 9, 3
    ref, ours = _mha_pair(E, H, batch_first=batch_first)
    assert [n for n, _ in ours.named_parameters()] == [
        n for n, _ in ref.named_parameters()]
    assert set(ours.state_dict()) == set(ref.state_dict())
    ref64 = copy.deepcopy(ref).double()
    shape = (N, L, E) if batch_first else (L, N, E)
    x = torch.randn(shape)
    kpm = torch.zeros(N, L, dtype=torch.bool)
    kpm[1, 6:] = True
    causal = torch.ones(L, L, dtype=torch.bool).triu(1)
    fmask = torch.randn(L, L)
    for kw in ({}, {"key_padding_mask": kpm}, {"attn_mask": causal},
               {"attn_mask": causal, "key_padding_mask": kpm},
               {"attn_mask": fmask, "key_padding_mask": kpm},
               {"attn_mask": causal, "is_causal": True}):
        res = []
        for m in (ref, ours, ref64):
            dt = torch.float64 if m is ref64 else torch.float32
            kwm = {k: v.to(dt) if v.is_floating_point() else v
                   for k, v in kw.items() if k != "is_causal"}
            if "is_causal" in kw:
                kwm["is_causal"] = kw["is_causal"]
            xi = x.clone().to(dt).requires_grad_()
            m.zero_grad()
            out, w = m(xi, xi, xi, need_weights=False, **kwm)
            assert w is None
            out.backward(torch.ones_like(out) + out.detach())
            res.append((out.detach(), xi.grad,
                        {n: p.grad for n, p in m.named_parameters()}))
        (o1, dx1, g1), (o2, dx2, g2), (o3, dx3, g3) = res
        # both f32, each within ~1e-6 of the tensor's scale of exact (the
        # numpy-oracle tests above bound the layer itself)
        _err_rule(o2, o1, o3)
        _err_rule(dx2, dx1, dx3)
        for n in g1:
            _err_rule(g2[n], g1[n], g3[n])


def test_module_cross_unbatched_and_views(rng):
    E, H = 32, 2
    ref, ours = _mha_pair(E, H, kdim=12, vdim=20, batch_first=True)
    assert ours.in_proj_weight is None and ours.q_proj_weight is not None
    q, k, v = torch.randn(7, E), torch.randn(5, 12), torch.randn(5, 20)
    o1, _ = ref(q, k, v, need_weights=False)
    o2, _ = ours(q, k, v)
    assert o2.shape == (7, E)
    torch.testing.assert_close(o2, o1, rtol=1e-4, atol=1e-5)
    # the Parameters are the C layer's memory
    flat = ours._layer.flat_parameters()
    for p in ours.parameters():
        assert np.shares_memory(p.detach().numpy(), flat)
    # replaced Parameters are copied back into the layer
    ours.load_state_dict(ref.state_dict(), assign=True)
    o3, _ = ours(q, k, v)
    torch.testing.assert_close(o3, o1, rtol=1e-4, atol=1e-5)
    for p in ours.parameters():
        assert np.shares_memory(p.detach().numpy(), flat)


def test_module_errors():
    m = at.MultiheadAttention(16, 2)
    x = torch.randn(3, 2, 16)
    with pytest.raises(ValueError, match="need_weights"):
        m(x, x, x, need_weights=True)
    with pytest.raises(ValueError, match="add_bias_kv"):
        at.MultiheadAttention(16, 2, add_bias_kv=True)
    with pytest.raises(ValueError, match="divisible"):
        at.MultiheadAttention(15, 2)
    with pytest.raises(TypeError, match="float32"):
        m(x.double(), x.double(), x.double())
    with pytest.raises(TypeError, match="float32"):
        at.MultiheadAttention(16, 2, dtype=torch.float64)


def test_module_trains():
    torch.manual_seed(0)
    E, H, L, N = 32, 4, 12, 8
    mha = at.MultiheadAttention(E, H, batch_first=True, dropout=0.1)
    head = torch.nn.Linear(E, 1)
    opt = torch.optim.Adam(list(mha.parameters()) + list(head.parameters()),
                           lr=3e-3)
    x = torch.randn(N, L, E)
    target = x[:, :, :1].cumsum(1) / 4  # needs attention over the past
    causal = torch.ones(L, L, dtype=torch.bool).triu(1)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        y, _ = mha(x, x, x, attn_mask=causal)
        loss = torch.nn.functional.mse_loss(head(y), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    mha.eval()
    with torch.no_grad():
        y1, _ = mha(x, x, x, attn_mask=causal)
        y2, _ = mha(x, x, x, attn_mask=causal)
    assert torch.equal(y1, y2)  # no dropout in eval
