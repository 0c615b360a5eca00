#!/usr/bin/env python3
"""libattn's multi-head attention layer (include/attn/layer.h) against PyTorch.

The same weights go into the layer (through ctypes, libattn_layer.so) and
into PyTorch:

  mha        torch.nn.MultiheadAttention(batch_first=True, bias=True), fused
             in_proj_weight, self-attention, causal (attn_mask)
  cross      nn.MultiheadAttention with kdim, vdim != embed_dim (separate
             q/k/v_proj_weight and PyTorch's one in_proj_bias), key and
             value inputs, a key padding mask as kv_lens
  gqa_rope   a hand-written PyTorch reference: GQA (8 query heads, 2 kv
             heads), RoPE (half style, base 10000) on Q and K, causal,
             scaled_dot_product_attention, output projection
  t5         hand-written: T5 bucketed bias (Hugging Face's
             _relative_position_bucket) added to the scores, bidirectional

Each case compares the output and every gradient (inputs, every weight and
bias, the T5 table) and prints the max relative error (max |a - b| / max
|b|). Then, unless --test, it times forward and forward+backward of the
layer and of PyTorch side by side (median of --reps runs, alternating).

    python3 bench/layer_vs_torch.py [--lib build/libattn_layer.so]
        [--threads N] [--batch 4 --seq 512 --dmodel 512 --heads 8]
    python3 bench/layer_vs_torch.py --test      # correctness only (ctest)

Threads: --threads sets torch.set_num_threads, ATTN_NUM_THREADS and
OPENBLAS_NUM_THREADS (the layer's projections) alike (default: all CPUs).
Exit status 0 when every error is below --tol (1e-5: both sides are f32,
with different summation orders; each is ~1e-6 from exact here).
"""

import argparse
import ctypes
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

c_enum = ctypes.c_int
F32P = ctypes.POINTER(ctypes.c_float)

POS_NONE, POS_SINUSOIDAL, POS_LEARNED, POS_ROPE, POS_ALIBI, POS_T5 = range(6)


class Rope(ctypes.Structure):
    """typedef struct attn_rope (attn.h)"""

    _fields_ = [
        ("base", ctypes.c_double),
        ("style", c_enum),
        ("dims", ctypes.c_int64),
        ("scaling", c_enum),
        ("factor", ctypes.c_double),
        ("original_max_position", ctypes.c_double),
        ("low_freq_factor", ctypes.c_double),
        ("high_freq_factor", ctypes.c_double),
        ("beta_fast", ctypes.c_double),
        ("beta_slow", ctypes.c_double),
        ("mscale", ctypes.c_double),
    ]


class LayerConfig(ctypes.Structure):
    """typedef struct attn_layer_config (attn/layer.h)"""

    _fields_ = [
        ("d_model", ctypes.c_int64),
        ("heads_q", ctypes.c_int64),
        ("heads_kv", ctypes.c_int64),
        ("head_dim", ctypes.c_int64),
        ("head_dim_v", ctypes.c_int64),
        ("d_out", ctypes.c_int64),
        ("cross", ctypes.c_int),
        ("kdim", ctypes.c_int64),
        ("vdim", ctypes.c_int64),
        ("fused_qkv", ctypes.c_int),
        ("bias_q", ctypes.c_int),
        ("bias_k", ctypes.c_int),
        ("bias_v", ctypes.c_int),
        ("bias_out", ctypes.c_int),
        ("position", c_enum),
        ("max_positions", ctypes.c_int64),
        ("sinusoidal_base", ctypes.c_double),
        ("rope", ctypes.POINTER(Rope)),
        ("t5_buckets", ctypes.c_int64),
        ("t5_max_distance", ctypes.c_int64),
        ("t5_bidirectional", ctypes.c_int),
    ]


class LayerParam(ctypes.Structure):
    """typedef struct attn_layer_param"""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("ndim", ctypes.c_int),
        ("shape", ctypes.c_int64 * 2),
        ("offset", ctypes.c_int64),
        ("count", ctypes.c_int64),
        ("data", F32P),
        ("grad", F32P),
    ]


class LayerCall(ctypes.Structure):
    """typedef struct attn_layer_call"""

    _fields_ = [
        ("batch", ctypes.c_int64),
        ("seq_q", ctypes.c_int64),
        ("seq_k", ctypes.c_int64),
        ("x", F32P),
        ("y", F32P),
        ("value", F32P),
        ("out", F32P),
        ("options", ctypes.c_void_p),
        ("options_size", ctypes.c_size_t),
        ("activations", ctypes.c_void_p),
        ("activations_size", ctypes.c_size_t),
        ("workspace", ctypes.c_void_p),
        ("workspace_size", ctypes.c_size_t),
        ("error_message", ctypes.c_char_p),
        ("error_message_size", ctypes.c_size_t),
        ("dout", F32P),
        ("dx", F32P),
        ("dy", F32P),
        ("dvalue", F32P),
    ]


def find_layer_library(path=None):
    if path:
        return path
    for d in ("build", "build-layer"):
        p = os.path.join(ROOT, d, "libattn_layer.so")
        if os.path.exists(p):
            return p
    raise FileNotFoundError("libattn_layer.so not found: pass --lib")


class Layer:
    """One attn_layer through ctypes, with numpy buffers."""

    def __init__(self, lib, cfg, rope=None):
        import numpy as np

        self.np = np
        self.lib = lib
        self.cfg = cfg
        self.rope = rope  # kept alive
        self.ptr = ctypes.c_void_p()
        err = ctypes.create_string_buffer(512)
        st = lib.attn_layer_create_sized(
            ctypes.byref(cfg), ctypes.sizeof(cfg), ctypes.sizeof(Rope),
            ctypes.byref(self.ptr), err, 512)
        if st != 0:
            raise RuntimeError("attn_layer_create: %s" % err.value.decode())
        self.err = ctypes.create_string_buffer(512)

    def __del__(self):
        if getattr(self, "ptr", None):
            self.lib.attn_layer_free(self.ptr)

    def param(self, name):
        p = LayerParam()
        st = self.lib.attn_layer_param_find_sized(
            self.ptr, name.encode(), ctypes.byref(p), ctypes.sizeof(p))
        if st != 0:
            raise KeyError(name)
        n = p.count
        shape = (p.shape[0], p.shape[1]) if p.ndim == 2 else (p.shape[0],)
        data = self.np.ctypeslib.as_array(p.data, shape=(n,)).reshape(shape)
        grad = self.np.ctypeslib.as_array(p.grad, shape=(n,)).reshape(shape)
        return data, grad

    def set(self, name, value):
        data, _ = self.param(name)
        data[...] = value.detach().cpu().numpy().reshape(data.shape)

    def grad(self, name):
        return self.param(name)[1].copy()

    def zero_grad(self):
        self.lib.attn_layer_zero_grad(self.ptr)

    def call(self, x, y=None, value=None, options=None, bufs=None):
        """A prepared attn_layer_call (caller activations and workspace)."""
        np = self.np
        c = LayerCall()
        self.lib.attn_layer_call_init_sized(ctypes.byref(c), ctypes.sizeof(c))
        B, S, _ = x.shape
        c.batch, c.seq_q = B, S
        c.seq_k = y.shape[1] if y is not None else 0
        keep = [x]
        c.x = x.ctypes.data_as(F32P)
        if y is not None:
            c.y = y.ctypes.data_as(F32P)
            keep.append(y)
        if value is not None:
            c.value = value.ctypes.data_as(F32P)
            keep.append(value)
        out = np.zeros((B, S, self.cfg.d_out or self.cfg.d_model), np.float32)
        c.out = out.ctypes.data_as(F32P)
        if options is not None:
            c.options = ctypes.cast(ctypes.pointer(options), ctypes.c_void_p)
            c.options_size = ctypes.sizeof(options)
            keep.append(options)
        c.error_message = ctypes.cast(self.err, ctypes.c_char_p)
        c.error_message_size = 512
        na, nw = ctypes.c_size_t(), ctypes.c_size_t()
        st = self.lib.attn_layer_buffer_sizes_sized(
            self.ptr, None, ctypes.byref(c), ctypes.sizeof(c), ctypes.byref(na),
            ctypes.byref(nw))
        self.check(st, "buffer sizes")
        act = np.zeros(na.value // 4 + 16, np.float32)
        ws = np.zeros(nw.value // 4 + 16, np.float32)
        c.activations = act.ctypes.data
        c.activations_size = na.value
        c.workspace = ws.ctypes.data
        c.workspace_size = nw.value
        keep += [act, ws, out]
        dx = np.zeros_like(x)
        c.dx = dx.ctypes.data_as(F32P)
        dy = dv = None
        if y is not None:
            dy = np.zeros_like(y)
            c.dy = dy.ctypes.data_as(F32P)
        if value is not None:
            dv = np.zeros_like(value)
            c.dvalue = dv.ctypes.data_as(F32P)
        return {"c": c, "out": out, "dx": dx, "dy": dy, "dv": dv, "keep": keep}

    def check(self, st, what):
        if st != 0:
            raise RuntimeError("%s: status %d: %s" % (what, st, self.err.value.decode()))

    def forward(self, call):
        st = self.lib.attn_layer_forward_sized(
            self.ptr, None, ctypes.byref(call["c"]), ctypes.sizeof(call["c"]))
        self.check(st, "forward")
        return call["out"]

    def backward(self, call, dout):
        call["dout_keep"] = dout
        call["c"].dout = dout.ctypes.data_as(F32P)
        st = self.lib.attn_layer_backward_sized(
            self.ptr, None, ctypes.byref(call["c"]), ctypes.sizeof(call["c"]))
        self.check(st, "backward")


def load_lib(path):
    lib = ctypes.CDLL(path)
    lib.attn_layer_create_sized.restype = c_enum
    lib.attn_layer_create_sized.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t,
        ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_size_t]
    lib.attn_layer_free.argtypes = [ctypes.c_void_p]
    lib.attn_layer_free.restype = None
    lib.attn_layer_config_init_sized.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.attn_layer_config_init_sized.restype = None
    lib.attn_layer_call_init_sized.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.attn_layer_call_init_sized.restype = None
    lib.attn_layer_param_find_sized.argtypes = [
        ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
    lib.attn_layer_param_find_sized.restype = c_enum
    lib.attn_layer_zero_grad.argtypes = [ctypes.c_void_p]
    lib.attn_layer_zero_grad.restype = None
    for fn in ("attn_layer_forward_sized", "attn_layer_backward_sized"):
        f = getattr(lib, fn)
        f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                      ctypes.c_size_t]
        f.restype = c_enum
    lib.attn_layer_buffer_sizes_sized.argtypes = [
        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
        ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_size_t)]
    lib.attn_layer_buffer_sizes_sized.restype = c_enum
    lib.attn_rope_init_sized.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.attn_rope_init_sized.restype = None
    lib.attn_params_init_sized.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.attn_params_init_sized.restype = None
    return lib


def config(lib, **kw):
    c = LayerConfig()
    lib.attn_layer_config_init_sized(ctypes.byref(c), ctypes.sizeof(c))
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def options(lib, causal=0, kv_lens=None):
    from libattn_ctypes import AttnParams

    p = AttnParams()
    lib.attn_params_init_sized(ctypes.byref(p), ctypes.sizeof(p))
    p.causal = causal
    if kv_lens is not None:
        p.kv_lens = kv_lens.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
    return p


def rel_err(a, b):
    import numpy as np

    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    m = np.abs(b).max()
    return float(np.abs(a - b).max() / (m if m > 0 else 1.0))


# ---------------------------------------------------------------------------
# The cases: each returns (torch module or closure, layer, inputs, names)
# ---------------------------------------------------------------------------


class Case:
    """A torch side (fn(x, y, v) -> out, params dict name -> tensor) and the
    layer holding the same weights."""

    def __init__(self, name, layer, params, fn, x, y=None, v=None,
                 opts=None):
        self.name, self.layer, self.params, self.fn = name, layer, params, fn
        self.x, self.y, self.v, self.opts = x, y, v, opts


def case_mha(lib, torch, B, S, E, H, causal=True):
    m = torch.nn.MultiheadAttention(E, H, bias=True, batch_first=True)
    with torch.no_grad():
        m.in_proj_bias.uniform_(-0.2, 0.2)
        m.out_proj.bias.uniform_(-0.2, 0.2)
    layer = Layer(lib, config(lib, d_model=E, heads_q=H, fused_qkv=1))
    params = {"in_proj_weight": m.in_proj_weight, "in_proj_bias": m.in_proj_bias,
              "out_proj.weight": m.out_proj.weight,
              "out_proj.bias": m.out_proj.bias}
    for k, t in params.items():
        layer.set(k, t)
    mask = torch.ones(S, S, dtype=torch.bool).triu(1) if causal else None

    def fn(x, y, v):
        return m(x, x, x, attn_mask=mask, need_weights=False)[0]

    x = torch.randn(B, S, E)
    return Case("mha", layer, params, fn, x,
                opts=options(lib, causal=2 if causal else 0))


def case_cross(lib, torch, B, S, E, H, Sk, kdim, vdim, np):
    m = torch.nn.MultiheadAttention(E, H, bias=True, batch_first=True,
                                    kdim=kdim, vdim=vdim)
    with torch.no_grad():
        m.in_proj_bias.uniform_(-0.2, 0.2)
        m.out_proj.bias.uniform_(-0.2, 0.2)
    layer = Layer(lib, config(lib, d_model=E, heads_q=H, cross=1, kdim=kdim,
                              vdim=vdim))
    params = {"q_proj_weight": m.q_proj_weight, "k_proj_weight": m.k_proj_weight,
              "v_proj_weight": m.v_proj_weight,
              "out_proj.weight": m.out_proj.weight,
              "out_proj.bias": m.out_proj.bias}
    for k, t in params.items():
        layer.set(k, t)
    layer.set("q_proj_bias", m.in_proj_bias[:E])
    layer.set("k_proj_bias", m.in_proj_bias[E:2 * E])
    layer.set("v_proj_bias", m.in_proj_bias[2 * E:])
    lens = np.array([Sk - (b % 3) for b in range(B)], np.int32)
    pad = torch.arange(Sk)[None, :] >= torch.from_numpy(lens).long()[:, None]

    def fn(x, y, v):
        return m(x, y, v, key_padding_mask=pad, need_weights=False)[0]

    x = torch.randn(B, S, E)
    y = torch.randn(B, Sk, kdim)
    v = torch.randn(B, Sk, vdim)
    c = Case("cross", layer, params, fn, x, y, v, opts=options(lib, kv_lens=lens))
    c.lens = lens  # kept alive
    c.extra = {"in_proj_bias": (m.in_proj_bias, ("q_proj_bias", "k_proj_bias",
                                                 "v_proj_bias"))}
    return c


def rope_half(t, base, pos):
    """t [B, S, H, d]; GPT-NeoX / Llama half style."""
    import torch

    d = t.shape[-1]
    inv = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    ang = pos[:, None].double() * inv[None, :]
    cos = torch.cos(ang).float()[None, :, None, :]
    sin = torch.sin(ang).float()[None, :, None, :]
    a, b = t[..., : d // 2], t[..., d // 2:]
    return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)


def case_gqa_rope(lib, torch, B, S, E, H, KV):
    d = E // H
    F = torch.nn.functional
    rope = Rope()
    lib.attn_rope_init_sized(ctypes.byref(rope), ctypes.sizeof(rope))
    layer = Layer(lib, config(lib, d_model=E, heads_q=H, heads_kv=KV,
                              position=POS_ROPE, rope=ctypes.pointer(rope)),
                  rope)
    g = torch.Generator().manual_seed(3)
    params = {
        "q_proj_weight": torch.randn(H * d, E, generator=g) / math.sqrt(E),
        "k_proj_weight": torch.randn(KV * d, E, generator=g) / math.sqrt(E),
        "v_proj_weight": torch.randn(KV * d, E, generator=g) / math.sqrt(E),
        "q_proj_bias": torch.randn(H * d, generator=g) * 0.1,
        "k_proj_bias": torch.randn(KV * d, generator=g) * 0.1,
        "v_proj_bias": torch.randn(KV * d, generator=g) * 0.1,
        "out_proj.weight": torch.randn(E, H * d, generator=g) / math.sqrt(H * d),
        "out_proj.bias": torch.randn(E, generator=g) * 0.1,
    }
    for k, t in params.items():
        t.requires_grad_(True)
        layer.set(k, t)
    P = params

    def fn(x, y, v):
        Bn, Sn, _ = x.shape
        q = F.linear(x, P["q_proj_weight"], P["q_proj_bias"]).view(Bn, Sn, H, d)
        k = F.linear(x, P["k_proj_weight"], P["k_proj_bias"]).view(Bn, Sn, KV, d)
        vv = F.linear(x, P["v_proj_weight"], P["v_proj_bias"]).view(Bn, Sn, KV, d)
        pos = torch.arange(Sn)
        q, k = rope_half(q, 10000.0, pos), rope_half(k, 10000.0, pos)
        k = k.repeat_interleave(H // KV, dim=2)
        vv = vv.repeat_interleave(H // KV, dim=2)
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                           vv.transpose(1, 2), is_causal=True)
        o = o.transpose(1, 2).reshape(Bn, Sn, H * d)
        return F.linear(o, P["out_proj.weight"], P["out_proj.bias"])

    x = torch.randn(B, S, E)
    return Case("gqa_rope", layer, params, fn, x, opts=options(lib, causal=1))


def t5_bucket(rel, bidirectional, num_buckets, max_distance):
    """Hugging Face transformers' T5Attention._relative_position_bucket."""
    import torch

    ret = 0
    if bidirectional:
        num_buckets //= 2
        ret += (rel > 0).long() * num_buckets
        n = torch.abs(rel)
    else:
        n = -torch.min(rel, torch.zeros_like(rel))
    max_exact = num_buckets // 2
    is_small = n < max_exact
    large = max_exact + (torch.log(n.float() / max_exact)
                         / math.log(max_distance / max_exact)
                         * (num_buckets - max_exact)).long()
    large = torch.min(large, torch.full_like(large, num_buckets - 1))
    return ret + torch.where(is_small, n, large)


def case_t5(lib, torch, B, S, E, H, buckets=32, maxd=128):
    d = E // H
    F = torch.nn.functional
    layer = Layer(lib, config(lib, d_model=E, heads_q=H, position=POS_T5,
                              t5_buckets=buckets, t5_max_distance=maxd,
                              t5_bidirectional=1, bias_q=0, bias_k=0, bias_v=0,
                              bias_out=0))
    g = torch.Generator().manual_seed(5)
    params = {
        "q_proj_weight": torch.randn(E, E, generator=g) / math.sqrt(E),
        "k_proj_weight": torch.randn(E, E, generator=g) / math.sqrt(E),
        "v_proj_weight": torch.randn(E, E, generator=g) / math.sqrt(E),
        "out_proj.weight": torch.randn(E, E, generator=g) / math.sqrt(E),
        "rel_bias": torch.randn(buckets, H, generator=g),
    }
    for k, t in params.items():
        t.requires_grad_(True)
        layer.set(k, t)
    P = params

    def fn(x, y, v):
        Bn, Sn, _ = x.shape
        q = F.linear(x, P["q_proj_weight"]).view(Bn, Sn, H, d).transpose(1, 2)
        k = F.linear(x, P["k_proj_weight"]).view(Bn, Sn, H, d).transpose(1, 2)
        vv = F.linear(x, P["v_proj_weight"]).view(Bn, Sn, H, d).transpose(1, 2)
        pos = torch.arange(Sn)
        bk = t5_bucket(pos[None, :] - pos[:, None], True, buckets, maxd)
        bias = P["rel_bias"][bk].permute(2, 0, 1)[None]  # [1, H, S, S]
        s = q @ k.transpose(-1, -2) / math.sqrt(d) + bias
        o = (s.softmax(-1) @ vv).transpose(1, 2).reshape(Bn, Sn, E)
        return F.linear(o, P["out_proj.weight"])

    x = torch.randn(B, S, E)
    return Case("t5", layer, params, fn, x, opts=options(lib))


# ---------------------------------------------------------------------------


def compare(case, torch, np):
    """Output and every gradient; returns {what: rel err}."""
    xs = [t.clone().requires_grad_(True) if t is not None else None
          for t in (case.x, case.y, case.v)]
    for t in case.params.values():
        if t.grad is not None:
            t.grad = None
    extra = getattr(case, "extra", {})
    for t, _ in extra.values():
        t.grad = None
    out_t = case.fn(*xs)
    dout = torch.randn_like(out_t)
    out_t.backward(dout)
    np_in = [t.detach().numpy().copy() if t is not None else None
             for t in (case.x, case.y, case.v)]
    layer = case.layer
    layer.zero_grad()
    call = layer.call(np_in[0], np_in[1], np_in[2], case.opts)
    out = layer.forward(call)
    layer.backward(call, dout.numpy().copy())
    errs = {"out": rel_err(out, out_t.detach().numpy())}
    errs["dx"] = rel_err(call["dx"], xs[0].grad.numpy())
    if xs[1] is not None:
        errs["dy"] = rel_err(call["dy"], xs[1].grad.numpy())
    if xs[2] is not None:
        errs["dvalue"] = rel_err(call["dv"], xs[2].grad.numpy())
    for k, t in case.params.items():
        errs[k] = rel_err(layer.grad(k), t.grad.numpy())
    for k, (t, parts) in extra.items():
        mine = np.concatenate([layer.grad(p).reshape(-1) for p in parts])
        errs[k] = rel_err(mine, t.grad.numpy())
    return errs


def median_time(fn, reps):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2]


def bench(case, torch, np, reps):
    """Forward and forward+backward, layer vs torch, alternating."""
    x = case.x.detach().numpy().copy()
    layer = case.layer
    call = layer.call(x, None, None, case.opts)
    dout = np.random.standard_normal(call["out"].shape).astype(np.float32)
    xt = case.x.clone().requires_grad_(True)
    dt = torch.from_numpy(dout)

    def l_fwd():
        layer.forward(call)

    def l_fb():
        layer.forward(call)
        layer.backward(call, dout)

    def t_fwd():
        with torch.no_grad():
            case.fn(xt, None, None)

    def t_fb():
        case.fn(xt, None, None).backward(dt)

    for f in (l_fwd, t_fwd, l_fb, t_fb):  # warm-up
        f()
    res = {"layer_fwd": [], "torch_fwd": [], "layer_fb": [], "torch_fb": []}
    for _ in range(reps):
        res["layer_fwd"].append(median_time(l_fwd, 1))
        res["torch_fwd"].append(median_time(t_fwd, 1))
        res["layer_fb"].append(median_time(l_fb, 1))
        res["torch_fb"].append(median_time(t_fb, 1))
    return {k: sorted(v)[len(v) // 2] for k, v in res.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lib", help="path of libattn_layer.so")
    ap.add_argument("--test", action="store_true",
                    help="correctness only, small shapes (ctest)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--dmodel", type=int, default=512)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--tol", type=float, default=1e-5)
    args = ap.parse_args()
    if args.threads:
        os.environ["ATTN_NUM_THREADS"] = str(args.threads)
        os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    try:
        import numpy as np
        import torch
    except ImportError as e:
        print("SKIP: %s (pip install torch numpy)" % e)
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    np.random.seed(0)
    lib = load_lib(find_layer_library(args.lib))
    if args.test:
        B, S, E, H = 2, 67, 48, 4
    else:
        B, S, E, H = args.batch, args.seq, args.dmodel, args.heads
    cases = [
        case_mha(lib, torch, B, S, E, H),
        case_cross(lib, torch, B, S, E, H, S - 10 if S > 12 else S, E // 2 + 3,
                   E // 3 + 1, np),
        case_gqa_rope(lib, torch, B, S, E, H, max(1, H // 4)),
        case_t5(lib, torch, B, min(S, 200), E, H),
    ]
    worst = 0.0
    for c in cases:
        errs = compare(c, torch, np)
        w = max(errs.values())
        worst = max(worst, w)
        print("%-9s max rel err %.2e  (%s)" % (
            c.name, w, ", ".join("%s %.1e" % kv for kv in errs.items())))
    ok = worst <= args.tol
    print("worst relative error vs torch: %.2e (tolerance %.0e): %s" % (
        worst, args.tol, "ok" if ok else "FAIL"))
    if not args.test:
        print("\ntimes (median of %d, ms; threads %s; noisy when the machine "
              "is shared)" % (args.reps, args.threads or "all"))
        print("%-9s %10s %10s %10s %10s" % ("case", "layer fwd", "torch fwd",
                                            "layer f+b", "torch f+b"))
        for c in (cases[0], cases[2]):
            t = bench(c, torch, np, args.reps)
            print("%-9s %10.2f %10.2f %10.2f %10.2f" % (
                c.name, 1e3 * t["layer_fwd"], 1e3 * t["torch_fwd"],
                1e3 * t["layer_fb"], 1e3 * t["torch_fb"]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
