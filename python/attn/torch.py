"""PyTorch front ends over libattn, with autograd.

* :func:`scaled_dot_product_attention`: ``torch.nn.functional``'s signature
  and semantics (layout ``[..., heads, seq, dim]``, top-left ``is_causal``,
  boolean masks True = attend, float masks added to the scores, GQA with
  ``enable_gqa``);
* :func:`flash_attn_func` / :func:`flash_attn_varlen_func`: FlashAttention's
  names, layouts (``[batch, seq, heads, dim]``, packed ``[total, heads,
  dim]``) and bottom-right causal.

The tensors are handed to the library as they are (strides included): no
copy of Q, K, V, dO; outputs are allocated once. Two conversions remain: a
float mask that is not float32 is converted to float32 (libattn's bias is
f32), and more than one leading batch axis is flattened (a view when the
strides allow it). Gradients flow to q, k, v and to a float ``attn_mask``
(libattn's dbias), through a ``torch.autograd.Function``.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from . import _api

__all__ = ["scaled_dot_product_attention", "flash_attn_func",
           "flash_attn_varlen_func"]


class _Opts:
    """Options of one call (not tensors that need gradients)."""

    __slots__ = ("layout", "causal", "wl", "wr", "scale", "softcap", "alibi",
                 "mask", "cu_q", "cu_k", "dropout_p", "seed", "lse_shape")

    def __init__(self, layout, causal=0, window=(-1, -1), scale=None,
                 softcap=0.0, alibi=None, mask=None, cu_q=None, cu_k=None,
                 dropout_p=0.0):
        self.layout = layout
        self.causal = causal
        self.wl, self.wr = (-1, -1) if window is None else (int(window[0]),
                                                            int(window[1]))
        if scale is not None and float(scale) == 0.0:
            raise ValueError("attn: scale must not be 0 (None means "
                             "1/sqrt(head_dim))")
        self.scale = 0.0 if scale is None else float(scale)
        self.softcap = float(softcap)
        self.alibi = alibi
        self.mask = mask
        self.cu_q = cu_q
        self.cu_k = cu_k
        self.dropout_p = float(dropout_p)
        if not 0.0 <= self.dropout_p < 1.0:
            raise ValueError("attn: dropout_p must be in [0, 1), got %r" %
                             (dropout_p,))
        # one seed per call from torch's generator (torch.manual_seed
        # reproduces it); the backward regenerates the same mask
        self.seed = (int(torch.randint(0, 2**62, (1,)).item())
                     if self.dropout_p > 0 else 0)


def _run(mode, o: _Opts, q, k, v, out, lse, bias, dout=None, dq=None,
         dk=None, dv=None, dbias=None):
    _api._ext.run(mode, o.layout, q, k, v, out, lse, bias, o.mask, o.alibi,
                  None, o.cu_q, o.cu_k, None, o.causal, o.wl, o.wr, o.scale,
                  o.softcap, 0, o.dropout_p, o.seed, dout, dq, dk, dv, dbias,
                  None, None, 0)


def _forward(q, k, v, bias, opts: _Opts):
    """out, lse: the forward call (inputs on the CPU: checked by the C
    side, which names the device of a tensor that is not)."""
    if opts.layout == 1:
        # [b, h, s, dv] seen over [b, s, h, dv] memory, as PyTorch's own
        # CPU kernels do: the usual .transpose(1, 2) after attention
        # is then contiguous for free
        b, h, s = q.shape[0], q.shape[1], q.shape[2]
        out = torch.empty((b, s, h, v.shape[-1]),
                          dtype=q.dtype).transpose(1, 2)
    else:
        out = torch.empty(tuple(q.shape[:-1]) + (v.shape[-1],),
                          dtype=q.dtype)
    lse = torch.empty(opts.lse_shape, dtype=torch.float32)
    _run(0, opts, q, k, v, out, lse, bias)
    return out, lse


def _apply(q, k, v, bias, opts: _Opts):
    """Through autograd when a gradient is wanted, else the bare call."""
    if torch.is_grad_enabled() and (
            q.requires_grad or k.requires_grad or v.requires_grad or
            (bias is not None and bias.requires_grad)):
        return _Attention.apply(q, k, v, bias, opts)
    return _forward(q, k, v, bias, opts)


class _Attention(torch.autograd.Function):
    """out, lse = attention(q, k, v, bias) under the options of a _Opts."""

    @staticmethod
    def forward(ctx, q, k, v, bias, opts: _Opts):
        out, lse = _forward(q, k, v, bias, opts)
        ctx.save_for_backward(q, k, v, out, lse, bias)
        ctx.opts = opts
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, dout, _dlse):
        q, k, v, out, lse, bias = ctx.saved_tensors
        opts = ctx.opts
        dq = torch.empty_like(q)
        dk = torch.empty_like(k)
        dv = torch.empty_like(v)
        dbias = None
        if bias is not None and ctx.needs_input_grad[3]:
            dbias = torch.empty(bias.shape, dtype=torch.float32)
        if dout.dtype != q.dtype:
            dout = dout.to(q.dtype)
        _run(1, opts, q, k, v, out, lse, bias, dout, dq, dk, dv, dbias)
        return dq, dk, dv, dbias, None


def scaled_dot_product_attention(query: torch.Tensor, key: torch.Tensor,
                                 value: torch.Tensor,
                                 attn_mask: Optional[torch.Tensor] = None,
                                 dropout_p: float = 0.0,
                                 is_causal: bool = False,
                                 scale: Optional[float] = None,
                                 enable_gqa: bool = False) -> torch.Tensor:
    """``torch.nn.functional.scaled_dot_product_attention`` on libattn.

    query ``(N, ..., Hq, L, E)``, key ``(N, ..., H, S, E)``, value ``(N,
    ..., H, S, Ev)`` -> ``(N, ..., Hq, L, Ev)``; float32, float16 or
    bfloat16 CPU tensors with any strides (no copy).

    ``is_causal=True`` is PyTorch's TOP-LEFT alignment (query i sees keys
    j <= i, whatever L and S), drawn for L = 3, S = 5::

             k0 k1 k2 k3 k4
        q0    x  .  .  .  .
        q1    x  x  .  .  .
        q2    x  x  x  .  .

    (FlashAttention's :func:`flash_attn_func` aligns it bottom-right.)
    ``attn_mask`` broadcastable to ``(N, ..., Hq, L, S)``: bool (True =
    take part in attention) or float (added to the scores; it receives a
    gradient when it requires one). ``attn_mask`` with ``is_causal`` is an
    error, as in PyTorch. ``enable_gqa``: Hq a multiple of H, query head h
    reads kv head ``h // (Hq // H)``. ``dropout_p`` drops probabilities
    with libattn's counter-based generator, seeded from torch's (so
    ``torch.manual_seed`` reproduces it; the masks are not PyTorch's).

    One difference: a query row whose keys are all masked gives 0 here
    (libattn's rule), where PyTorch's math kernel gives NaN.
    """
    nd = query.dim()
    if nd < 3 or key.dim() != nd or value.dim() != nd:
        raise ValueError(
            "attn: query, key and value must have the same number of axes, "
            "at least 3 ((N, ..., H, L, E)); got %d, %d, %d" %
            (nd, key.dim(), value.dim()))
    if attn_mask is not None and is_causal:
        raise ValueError("attn: explicit attn_mask should not be set when "
                         "is_causal=True (as in PyTorch)")
    lead = tuple(query.shape[:-3]) if nd >= 4 else None
    if nd == 3:
        q4, k4, v4 = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
    elif nd == 4:
        q4, k4, v4 = query, key, value
    else:
        q4, k4, v4 = (t.flatten(0, nd - 4) for t in (query, key, value))
    hq, hk = q4.shape[1], k4.shape[1]
    if hq != hk and not enable_gqa:
        raise ValueError("attn: query has %d heads and key %d: pass "
                         "enable_gqa=True for grouped-query attention" %
                         (hq, hk))
    bias = mask = None
    if attn_mask is not None:
        m = attn_mask
        if nd == 3:  # masks broadcast to (N, L, S): add the head axis
            m = m.unsqueeze(-3) if m.dim() == 3 else m
        elif nd > 4:
            full = tuple(query.shape[:-1]) + (key.shape[-2],)
            m = m.expand(full).flatten(0, nd - 4)
        if m.dtype == torch.bool:
            mask = m
        elif m.is_floating_point():
            bias = m if m.dtype == torch.float32 else m.float()
        else:
            raise TypeError("attn: attn_mask must be bool or floating point, "
                            "not %s" % (m.dtype,))
    opts = _Opts(1, 2 if is_causal else 0, scale=scale, mask=mask,
                 dropout_p=dropout_p)
    opts.lse_shape = (q4.shape[0], hq, q4.shape[2])
    out, _ = _apply(q4, k4, v4, bias, opts)
    if nd == 3:
        return out.squeeze(1)
    if nd > 4:
        return out.unflatten(0, lead)
    return out


def _alibi(alibi_slopes):
    if alibi_slopes is None:
        return None
    a = alibi_slopes
    if a.dim() == 2:
        if not bool((a == a[:1]).all()):
            raise ValueError("attn: alibi_slopes per batch [B, H] must be the "
                             "same for every sequence (libattn takes [H])")
        a = a[0]
    return a.to(torch.float32).contiguous()


def flash_attn_func(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    dropout_p: float = 0.0,
                    softmax_scale: Optional[float] = None,
                    causal: bool = False,
                    window_size: Tuple[int, int] = (-1, -1),
                    softcap: float = 0.0,
                    alibi_slopes: Optional[torch.Tensor] = None,
                    deterministic: bool = False,
                    return_attn_probs: bool = False):
    """FlashAttention's ``flash_attn_func`` on libattn.

    q ``(batch, seqlen_q, nheads, d)``, k, v ``(batch, seqlen_k,
    nheads_k, d)`` (nheads a multiple of nheads_k) -> out ``(batch,
    seqlen_q, nheads, d)``. ``causal`` is BOTTOM-RIGHT aligned, as in
    FlashAttention >= 2.1, drawn for seqlen_q = 3, seqlen_k = 5::

             k0 k1 k2 k3 k4
        q0    x  x  x  .  .
        q1    x  x  x  x  .
        q2    x  x  x  x  x

    ``window_size=(left, right)``: query i sees keys j in ``[i + seqlen_k -
    seqlen_q - left, i + seqlen_k - seqlen_q + right]`` (-1 = unlimited).
    ``softcap``, ``alibi_slopes`` ``(nheads,)`` (or ``(batch, nheads)``
    equal for every sequence): as FlashAttention. ``deterministic`` is
    accepted and ignored (libattn is always deterministic).
    ``return_attn_probs=True`` returns ``(out, softmax_lse, None)``: lse
    ``(batch, nheads, seqlen_q)`` f32; the probabilities are never
    materialised (FlashAttention's are only meaningful for testing).
    """
    del deterministic
    opts = _Opts(0, 1 if causal else 0, window_size, softmax_scale, softcap,
                 _alibi(alibi_slopes), dropout_p=dropout_p)
    opts.lse_shape = (q.shape[0], q.shape[2], q.shape[1])
    out, lse = _apply(q, k, v, None, opts)
    return (out, lse, None) if return_attn_probs else out


def flash_attn_varlen_func(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           cu_seqlens_q: torch.Tensor,
                           cu_seqlens_k: torch.Tensor, max_seqlen_q: int,
                           max_seqlen_k: int, dropout_p: float = 0.0,
                           softmax_scale: Optional[float] = None,
                           causal: bool = False,
                           window_size: Tuple[int, int] = (-1, -1),
                           softcap: float = 0.0,
                           alibi_slopes: Optional[torch.Tensor] = None,
                           deterministic: bool = False,
                           return_attn_probs: bool = False,
                           block_table: Optional[torch.Tensor] = None):
    """FlashAttention's ``flash_attn_varlen_func`` on libattn.

    Packed sequences: q ``(total_q, nheads, d)``, k, v ``(total_k,
    nheads_k, d)``, ``cu_seqlens_q``/``cu_seqlens_k`` int32 ``(batch + 1,)``
    (sequence b is rows ``cu[b]:cu[b+1]``). Causal is bottom-right within
    each sequence (see :func:`flash_attn_func`). ``max_seqlen_q/k`` are
    checked against the longest sequence. ``return_attn_probs`` gives
    ``(out, softmax_lse, None)``, lse ``(nheads, total_q)``. ``block_table``
    (paged KV) is not supported: use libattn's KV cache.
    """
    del deterministic
    if block_table is not None:
        raise ValueError("attn: block_table (paged KV) is not supported by "
                         "flash_attn_varlen_func here")
    cq = _api._vec(cu_seqlens_q, False, "cu_seqlens_q")
    ck = _api._vec(cu_seqlens_k, False, "cu_seqlens_k")
    if cq.numel() >= 2:
        lq = int((cq[1:] - cq[:-1]).max())
        lk = int((ck[1:] - ck[:-1]).max()) if ck.numel() >= 2 else 0
        if lq > max_seqlen_q or lk > max_seqlen_k:
            raise ValueError("attn: a sequence is longer than max_seqlen_q "
                             "(%d > %d) or max_seqlen_k (%d > %d)" %
                             (lq, max_seqlen_q, lk, max_seqlen_k))
    opts = _Opts(2, 1 if causal else 0, window_size, softmax_scale, softcap,
                 _alibi(alibi_slopes), cu_q=cq, cu_k=ck, dropout_p=dropout_p)
    opts.lse_shape = (q.shape[1], q.shape[0])
    out, lse = _apply(q, k, v, None, opts)
    return (out, lse, None) if return_attn_probs else out
