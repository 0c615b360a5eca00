"""Float64 numpy oracle of libattn's contract (include/attn.h), forward and
backward, written from the formulas in the header, one (sequence, head) at
a time: nothing shared with the library.

Tensors are in the logical bshd layout: q [B, Sq, Hq, D], k [B, Sk, Hk, D],
v [B, Sk, Hk, Dv]; bias/mask [B|1, Hq|1, Sq|1, Sk|1]. With cu_seqlens the
batch axis is 1 and the sequences are rows cu[b]:cu[b+1].
"""

import numpy as np


def _seqs(q, k, cu_q, cu_k):
    if cu_q is None:
        return [(b, b, slice(None), slice(None)) for b in range(q.shape[0])]
    return [(i, 0, slice(int(cu_q[i]), int(cu_q[i + 1])),
             slice(int(cu_k[i]), int(cu_k[i + 1])))
            for i in range(len(cu_q) - 1)]


def _bm(x, b, h, sq, sk):
    """bias/mask [b|1, h|1, sq|1, sk|1] for one sequence and head."""
    if x is None:
        return None
    x4 = x.reshape((1,) * (4 - x.ndim) + x.shape)
    bb = 0 if x4.shape[0] == 1 else b
    hh = 0 if x4.shape[1] == 1 else h
    m = x4[bb, hh]
    m = m[:sq] if m.shape[0] != 1 else np.repeat(m, sq, 0)
    m = m[:, :sk] if m.shape[1] != 1 else np.repeat(m, sk, 1)
    return m


def scores(q, k, b, h, sq, sk_eff, opts):
    """(s, visible, t) for one sequence/head: s [sq, sk_eff] after softcap,
    alibi, bias; visible bool; t = tanh(s0/softcap) (softcap) or None."""
    scale = opts.get("scale") or 1.0 / np.sqrt(q.shape[-1])
    s0 = scale * (q @ k.T)
    t = None
    cap = opts.get("softcap", 0.0)
    if cap > 0:
        t = np.tanh(s0 / cap)
        s = cap * t
    else:
        s = s0.copy()
    i = np.arange(sq)[:, None]
    j = np.arange(sk_eff)[None, :]
    if opts.get("alibi") is not None:
        s = s - opts["alibi"][h] * np.abs(i + sk_eff - sq - j)
    bias = _bm(opts.get("bias"), b, h, sq, sk_eff)
    if bias is not None:
        s = s + bias
    vis = np.ones((sq, sk_eff), bool)
    causal = opts.get("causal", 0)
    diag = i if causal == 2 else i + sk_eff - sq
    if causal:
        vis &= j <= diag
    wl, wr = opts.get("window", (-1, -1))
    if wl >= 0:
        vis &= j >= diag - wl
    if wr >= 0:
        vis &= j <= diag + wr
    mask = _bm(opts.get("mask"), b, h, sq, sk_eff)
    if mask is not None:
        vis &= mask.astype(bool)
    vis &= ~np.isneginf(s)
    return s, vis, t


def forward(q, k, v, dtype=np.float64, **opts):
    """o [like q, Dv], lse [B, Hq, Sq] (or [Hq, total] packed)."""
    q, k, v = (np.asarray(x, dtype) for x in (q, k, v))
    B, Sq, Hq, D = q.shape
    Hk = k.shape[2]
    cu_q, cu_k = opts.get("cu_q"), opts.get("cu_k")
    o = np.zeros(q.shape[:3] + (v.shape[3],), dtype)
    lse = np.zeros((Hq, Sq) if cu_q is not None else (B, Hq, Sq), dtype)
    sinks = opts.get("sinks")
    for bi, bq, rq, rk in _seqs(q, k, cu_q, cu_k):
        qs, ks, vs = q[bq, rq], k[bq, rk], v[bq, rk]
        sq, sk = qs.shape[0], ks.shape[0]
        if opts.get("kv_lens") is not None:
            sk = int(opts["kv_lens"][bi])
        for h in range(Hq):
            g = h // (Hq // Hk)
            s, vis, _ = scores(qs[:, h], ks[:sk, g], bi, h, sq, sk, opts)
            s = np.where(vis, s, -np.inf).astype(dtype)
            m = s.max(axis=1, initial=-np.inf, keepdims=True)
            if sinks is not None:
                m = np.maximum(m, sinks[h])
            m = np.where(np.isfinite(m), m, 0)
            e = np.where(vis, np.exp(s - m), 0).astype(dtype)
            den = e.sum(axis=1, keepdims=True)
            if sinks is not None:
                den = den + np.exp(dtype(sinks[h]) - m)
            with np.errstate(divide="ignore", invalid="ignore"):
                p = np.where(den > 0, e / den, 0)
                l_ = np.where(den > 0, np.log(den) + m, -np.inf)[:, 0]
            out = p.astype(dtype) @ vs[:sk, g]
            if cu_q is not None:
                o[0, rq, h] = out
                lse[h, rq] = l_
            else:
                o[bq, :, h] = out
                lse[bq, h] = l_
    return o, lse


def backward(dout, q, k, v, **opts):
    """dq, dk, dv (f64) and dbias (bias's shape) from dL/dO, as attn.h."""
    q, k, v, dout = (np.asarray(x, np.float64) for x in (q, k, v, dout))
    o, lse = forward(q, k, v, **opts)
    B, Sq, Hq, D = q.shape
    Hk = k.shape[2]
    cu_q, cu_k = opts.get("cu_q"), opts.get("cu_k")
    dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    bias = opts.get("bias")
    dbias4 = None
    if bias is not None:
        b4 = bias.reshape((1,) * (4 - bias.ndim) + bias.shape)
        dbias4 = np.zeros(b4.shape)
    scale = opts.get("scale") or 1.0 / np.sqrt(D)
    cap = opts.get("softcap", 0.0)
    for bi, bq, rq, rk in _seqs(q, k, cu_q, cu_k):
        qs, ks, vs, dos = q[bq, rq], k[bq, rk], v[bq, rk], dout[bq, rq]
        os_ = o[bq, rq]
        sq, sk = qs.shape[0], ks.shape[0]
        if opts.get("kv_lens") is not None:
            sk = int(opts["kv_lens"][bi])
        for h in range(Hq):
            g = h // (Hq // Hk)
            s, vis, t = scores(qs[:, h], ks[:sk, g], bi, h, sq, sk, opts)
            l_ = lse[h, rq] if cu_q is not None else lse[bq, h]
            with np.errstate(invalid="ignore", over="ignore"):
                p = np.where(vis & np.isfinite(l_)[:, None],
                             np.exp(s - l_[:, None]), 0)
            do_h = dos[:, h]
            dvv = p.T @ do_h
            dp = do_h @ vs[:sk, g].T
            dd = (do_h * os_[:, h]).sum(axis=1, keepdims=True)
            ds = p * (dp - dd)
            if dbias4 is not None:
                bb = 0 if dbias4.shape[0] == 1 else bi
                hh = 0 if dbias4.shape[1] == 1 else h
                x = ds
                if dbias4.shape[2] == 1:
                    x = x.sum(0, keepdims=True)
                if dbias4.shape[3] == 1:
                    x = x.sum(1, keepdims=True)
                dbias4[bb, hh, :x.shape[0], :x.shape[1]] += x
            if cap > 0:
                ds = ds * (1 - t * t)
            dqh = scale * ds @ ks[:sk, g]
            dkh = scale * ds.T @ qs[:, h]
            if cu_q is not None:
                dq[0, rq, h] += dqh
                dk[0, rk.start:rk.start + sk, g] += dkh
                dv[0, rk.start:rk.start + sk, g] += dvv
            else:
                dq[bq, :, h] += dqh
                dk[bq, :sk, g] += dkh
                dv[bq, :sk, g] += dvv
    dbias = None if dbias4 is None else dbias4.reshape(bias.shape)
    return dq, dk, dv, dbias


# --------------------------------------------------------------------------
# Positions (include/attn/positions.h), float64, from the formulas: RoPE's
# frequencies and rotation, the sinusoidal table, ALiBi slopes, T5 buckets,
# and the position terms of a call as a dense bias and mask.
# --------------------------------------------------------------------------

def rope_inv_freq(head_dim, base=10000.0, dims=0, scaling=None, factor=1.0,
                  original_max_position=8192.0, low_freq_factor=1.0,
                  high_freq_factor=4.0, beta_fast=32.0, beta_slow=1.0,
                  mscale=0.0, **_):
    """(inv_freq [d/2] after scaling, with linear's 1/factor folded in,
    mscale): the scalings as transformers' modeling_rope_utils defines
    them (ntk: the static NTK-aware base, yarn with truncate)."""
    d = dims or head_dim
    b = base * factor ** (d / (d - 2)) if scaling == "ntk" else base
    f = b ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    ms = 1.0
    if scaling == "linear":
        f = f / factor
    elif scaling == "yarn":
        def cdim(rot):
            return d * np.log(original_max_position / (rot * 2 * np.pi)) / (
                2 * np.log(base))
        lo = max(np.floor(cdim(beta_fast)), 0)
        hi = min(np.ceil(cdim(beta_slow)), d - 1)
        if lo == hi:
            hi += 0.001
        ramp = np.clip((np.arange(d // 2) - lo) / (hi - lo), 0, 1)
        f = f / factor * ramp + f * (1 - ramp)
        ms = mscale if mscale > 0 else (
            1.0 if factor <= 1 else 0.1 * np.log(factor) + 1)
    elif scaling == "llama3":
        lw = original_max_position / low_freq_factor
        hw = original_max_position / high_freq_factor
        wl = 2 * np.pi / f
        smooth = (original_max_position / wl - low_freq_factor) / (
            high_freq_factor - low_freq_factor)
        f = np.where(wl > lw, f / factor,
                     np.where(wl < hw, f,
                              (1 - smooth) * f / factor + smooth * f))
    return f, ms


def rope(x, pos, style="half", inverse=False, **kw):
    """x [B, S, H, D] (any float) rotated at positions pos [B, S], float64."""
    x = np.asarray(x, np.float64)
    D = x.shape[-1]
    f, ms = rope_inv_freq(D, **kw)
    d = 2 * len(f)
    ang = np.asarray(pos, np.float64)[..., None] * f  # [B, S, d/2]
    c = np.cos(ang)[:, :, None, :] * ms
    s = np.sin(ang)[:, :, None, :] * ms * (-1 if inverse else 1)
    y = x.copy()
    if style == "half":
        a, b = x[..., :d // 2], x[..., d // 2:d]
        y[..., :d // 2] = a * c - b * s
        y[..., d // 2:d] = b * c + a * s
    else:
        a, b = x[..., 0:d:2], x[..., 1:d:2]
        y[..., 0:d:2] = a * c - b * s
        y[..., 1:d:2] = b * c + a * s
    return y


def sinusoidal(n, d_model, pos0=0, base=10000.0):
    p = np.arange(pos0, pos0 + n, dtype=np.float64)[:, None]
    i = np.arange(0, d_model, 2, dtype=np.float64)
    ang = p / base ** (i / d_model)
    out = np.empty((n, d_model))
    out[:, 0::2] = np.sin(ang)
    out[:, 1::2] = np.cos(ang)[:, :d_model // 2]
    return out


def alibi_slopes(n):
    """Press et al.'s reference get_slopes."""
    def pow2(n):
        start = 2 ** (-2 ** -(np.log2(n) - 3))
        return [start * start ** i for i in range(n)]
    if np.log2(n).is_integer():
        return np.array(pow2(n))
    c = 2 ** int(np.floor(np.log2(n)))
    return np.array(pow2(c) + pow2(2 * c)[0::2][:n - c])


def t5_bucket(rel, buckets=32, max_distance=128, bidirectional=True):
    """T5's _relative_position_bucket (mesh-tensorflow's), rel = key - query
    position, with its float32 logarithm."""
    rel = np.asarray(rel, np.int64)
    ret = np.zeros_like(rel)
    n = buckets
    if bidirectional:
        n //= 2
        ret += (rel > 0).astype(np.int64) * n
        rel = np.abs(rel)
    else:
        rel = -np.minimum(rel, 0)
    exact = n // 2
    small = rel < exact
    with np.errstate(divide="ignore", invalid="ignore"):  # rel 0: unused
        lg = (np.log(rel.astype(np.float32) / np.float32(exact)) /
              np.float32(np.log(max_distance / exact)) *
              np.float32(n - exact)).astype(np.float32)
        large = exact + lg.astype(np.int64)
    large = np.minimum(large, n - 1)
    return ret + np.where(small, rel, large)


def position_terms(B, Sq, Sk, Hq, kv_lens=None, q_off=0, k_off=0,
                   q_offs=None, k_offs=None, causal=0, window=(-1, -1),
                   alibi=None, rel_bias=None, buckets=32, max_distance=128,
                   bidirectional=False):
    """(bias [B, Hq, Sq, Sk] f64, mask [B, 1, Sq, Sk] bool, buckets
    [B, Sq, Sk]) of causal, window, ALiBi and T5 at attn.h's positions:
    qpos = i + seq_k - seq_q + offsets, kpos = j + offsets (seq_k the
    effective key count)."""
    bias = np.zeros((B, Hq, Sq, Sk))
    mask = np.ones((B, 1, Sq, Sk), bool)
    bk = np.zeros((B, Sq, Sk), np.int64)
    i = np.arange(Sq)[:, None]
    j = np.arange(Sk)[None, :]
    for b in range(B):
        sk = Sk if kv_lens is None else int(kv_lens[b])
        qp = i + sk - Sq + q_off + (0 if q_offs is None else q_offs[b])
        kp = j + k_off + (0 if k_offs is None else k_offs[b])
        m = np.ones((Sq, Sk), bool)
        diag = qp - (sk - Sq) if causal == 2 else qp
        if causal:
            m &= kp <= diag
        if window[0] >= 0:
            m &= kp >= diag - window[0]
        if window[1] >= 0:
            m &= kp <= diag + window[1]
        mask[b, 0] = m
        if alibi is not None:
            bias[b] -= np.asarray(alibi, np.float64)[:, None, None] * \
                np.abs(qp - kp)[None]
        if rel_bias is not None:
            bk[b] = t5_bucket(kp - qp, buckets, max_distance, bidirectional)
            bias[b] += np.asarray(rel_bias, np.float64)[bk[b]].transpose(
                2, 0, 1)
    return bias, mask, bk
