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

import os
from typing import Optional, Tuple

import torch

from . import _api, _loader

# the autograd node in C++ (_attn_torch.cpp) where it was built, else None
# (the Python Function below); ATTN_TORCH_CXX=0 declines it
_cxx = (None if os.environ.get("ATTN_TORCH_CXX", "1") == "0" else
        _loader.load_torch_module(_api._ext_dir))
if _cxx is not None:  # the extension's torch outputs, allocated in C++
    _api._ext.set_torch_empty(_cxx.empty_capsule)

__all__ = ["scaled_dot_product_attention", "flash_attn_func",
           "flash_attn_varlen_func"]


def _args(layout, causal=0, window=(-1, -1), scale=None, softcap=0.0,
          alibi=None, mask=None, cu_q=None, cu_k=None, dropout_p=0.0):
    """The options of one call as the tuple _call passes on: (layout,
    causal, window_left, window_right, scale, softcap, alibi, mask, cu_q,
    cu_k, dropout_p, dropout_seed). Checks scale and dropout_p."""
    if (scale is None and not softcap and alibi is None and mask is None
            and cu_q is None and cu_k is None and not dropout_p
            and (window is None or window == (-1, -1))):
        return _PLAIN[layout][causal]  # the common call: no tuple to build
    if window is None or window == (-1, -1):
        wl = wr = -1
    else:
        wl, wr = int(window[0]), int(window[1])
    if scale is None:
        s = 0.0
    else:
        s = float(scale)
        if s == 0.0:
            raise ValueError("attn: scale must not be 0 (None means "
                             "1/sqrt(head_dim))")
    p = float(dropout_p)
    seed = 0
    if p:  # NaN and negatives too: the range check refuses them
        if not 0.0 <= p < 1.0:
            raise ValueError("attn: dropout_p must be in [0, 1), got %r" %
                             (dropout_p,))
        # one seed per call from torch's generator (torch.manual_seed
        # reproduces it); the backward regenerates the same mask
        seed = int(torch.randint(0, 2**62, (1,)).item())
    return (layout, causal, wl, wr, s, float(softcap), alibi, mask, cu_q,
            cu_k, p, seed)


# _args of the calls with no option but layout and causal
_PLAIN = tuple(tuple((lay, c, -1, -1, 0.0, 0.0, None, None, None, None, 0.0,
                      0) for c in range(3)) for lay in range(3))


class _Opts:
    """Options of one call (not tensors that need gradients); ``args`` is
    the tuple of :func:`_args`."""

    __slots__ = ("args", "lse_shape")

    def __init__(self, layout, causal=0, window=(-1, -1), scale=None,
                 softcap=0.0, alibi=None, mask=None, cu_q=None, cu_k=None,
                 dropout_p=0.0):
        self.args = _args(layout, causal, window, scale, softcap, alibi,
                          mask, cu_q, cu_k, dropout_p)
        self.lse_shape = None  # the extension sizes the lse itself


def _call(mode, a, q, k, v, out, lse, bias, dout=None, dq=None, dk=None,
          dv=None, dbias=None):
    """One extension call with the options a (_args); out None or lse True:
    allocated by the extension. Returns (out, lse) or (dq, dk, dv)."""
    return _api._ext.run(mode, a[0], q, k, v, out, lse, bias, a[7], a[6],
                         None, a[8], a[9], None, a[1], a[2], a[3], a[4],
                         a[5], 0, a[10], a[11], dout, dq, dk, dv, dbias,
                         None, None, 0)


def _attend(q, k, v, bias, a, need_lse=False):
    """(out, lse): through autograd when a gradient is wanted, else the
    bare call; lse is None unless need_lse."""
    if torch.is_grad_enabled() and (
            q.requires_grad or k.requires_grad or v.requires_grad or
            (bias is not None and bias.requires_grad)):
        if need_lse:
            return _Attention.apply(q, k, v, bias, a, True)
        if (_cxx is not None and bias is None and a[0] != 2
                and a[6] is None and a[7] is None and a[8] is None
                and a[9] is None
                and not a[10]):  # plain options: the C++ node
            return _cxx.attention(q, k, v, a[0], a[1], a[2], a[3], a[4],
                                  a[5]), None
        return _Attention.apply(q, k, v, bias, a, False), None
    # the bare call; out passed as Ellipsis for layout bhsd: the extension
    # makes it [b, h, s, dv] over [b, s, h, dv] memory, as PyTorch's own
    # CPU kernels do (the usual .transpose(1, 2) is then contiguous)
    return _api._ext.run(0, a[0], q, k, v, ... if a[0] == 1 else None,
                         True if need_lse else None, bias, a[7], a[6], None,
                         a[8], a[9], None, a[1], a[2], a[3], a[4], a[5], 0,
                         a[10], a[11], None, None, None, None, None, None,
                         None, 0)


def _apply(q, k, v, bias, opts: _Opts):
    """(out, None) under the options of a _Opts (attn.hf, which needs no
    lse: without one, plain options take the C++ node)."""
    return _attend(q, k, v, bias, opts.args)


class _Attention(torch.autograd.Function):
    """out (and lse when need_lse) = attention(q, k, v, bias) under the
    options a of _args. One output is cheaper to wrap: the lse autograd
    needs is kept on ctx (it never leaves the Function)."""

    @staticmethod
    def forward(ctx, q, k, v, bias, a, need_lse):
        # the lse autograd keeps (Ellipsis) is a numpy array, cheaper to
        # make than a tensor, unless the caller wants it
        out, lse = _api._ext.run(
            0, a[0], q, k, v, ... if a[0] == 1 else None,
            True if need_lse else ..., bias, a[7], a[6], None, a[8], a[9],
            None, a[1], a[2], a[3], a[4], a[5], 0, a[10], a[11], None, None,
            None, None, None, None, None, 0)
        ctx.save_for_backward(q, k, v, out, bias)
        ctx.a = a
        ctx.lse = lse
        if need_lse:
            ctx.mark_non_differentiable(lse)
            return out, lse
        return out

    @staticmethod
    def backward(ctx, dout, *_dlse):
        q, k, v, out, bias = ctx.saved_tensors
        dq = torch.empty_like(q)
        dk = torch.empty_like(k)
        dv = torch.empty_like(v)
        dbias = None
        if bias is not None and ctx.needs_input_grad[3]:
            dbias = torch.empty(bias.shape, dtype=torch.float32)
        if dout.dtype != q.dtype:
            dout = dout.to(q.dtype)
        _call(1, ctx.a, q, k, v, out, ctx.lse, bias, dout, dq, dk, dv, dbias)
        return dq, dk, dv, dbias, None, None


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
    if (attn_mask is None and scale is None and not dropout_p
            and query.dim() == 4 and key.dim() == 4 and value.dim() == 4
            and (enable_gqa or query.size(1) == key.size(1))):
        # the common call, with no Python frame between here and the
        # extension (or the autograd Function)
        a = _PLAIN[1][2 if is_causal else 0]
        if torch.is_grad_enabled() and (query.requires_grad or
                                        key.requires_grad or
                                        value.requires_grad):
            if _cxx is not None:
                return _cxx.attention(query, key, value, 1, a[1], -1, -1,
                                      0.0, 0.0)
            return _Attention.apply(query, key, value, None, a, False)
        return _api._ext.run(0, 1, query, key, value, ..., None, None, None,
                             None, None, None, None, None, a[1], -1, -1, 0.0,
                             0.0, 0, 0.0, 0, None, None, None, None, None,
                             None, None, 0)[0]
    nd = query.dim()
    if nd < 3 or key.dim() != nd or value.dim() != nd:
        raise ValueError(
            "attn: query, key and value must have the same number of axes, "
            "at least 3 ((N, ..., H, L, E)); got %d, %d, %d" %
            (nd, key.dim(), value.dim()))
    if attn_mask is not None and is_causal:
        raise ValueError("attn: explicit attn_mask should not be set when "
                         "is_causal=True (as in PyTorch)")
    if nd == 4:
        q4, k4, v4 = query, key, value
    elif nd == 3:
        q4, k4, v4 = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
    else:
        lead = tuple(query.shape[:-3])
        q4, k4, v4 = (t.flatten(0, nd - 4) for t in (query, key, value))
    if not enable_gqa:
        hq, hk = q4.shape[1], k4.shape[1]
        if hq != hk:
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
    a = _args(1, 2 if is_causal else 0, None, scale, 0.0, None, mask,
              None, None, dropout_p)
    out = _attend(q4, k4, v4, bias, a)[0]
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
    a = _args(0, 1 if causal else 0, window_size, softmax_scale, softcap,
              _alibi(alibi_slopes), None, None, None, dropout_p)
    out, lse = _attend(q, k, v, None, a, return_attn_probs)
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
    a = _args(2, 1 if causal else 0, window_size, softmax_scale, softcap,
              _alibi(alibi_slopes), None, cq, ck, dropout_p)
    out, lse = _attend(q, k, v, None, a, return_attn_probs)
    return (out, lse, None) if return_attn_probs else out


# --- attn.torch.MultiheadAttention (issue 10 over issue 7's layer) ---------

import numpy as _np  # noqa: E402  (the activation buffers)

class _LayerFunction(torch.autograd.Function):
    """out = layer(query, key, value) through libattn_layer; the weights
    are the module's Parameters (views of the layer's own buffer), passed
    in so autograd hands their gradients back."""

    @staticmethod
    def forward(ctx, mod, opts, q, k, v, *params):
        layer = mod._layer
        act_bytes, _ = layer._sizes(q, k, v, opts)
        act = _np.empty(act_bytes, _np.uint8)
        out = torch.empty(tuple(q.shape[:-1]) + (layer.d_out,),
                          dtype=torch.float32)
        layer._fwd(q, k, v, opts, out, act)
        ctx.save_for_backward(q, k, v)
        ctx.mod, ctx.opts, ctx.act = mod, opts, act
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v = ctx.saved_tensors
        mod, layer = ctx.mod, ctx.mod._layer
        need = ctx.needs_input_grad
        dq = torch.empty_like(q) if need[2] else None
        dk = torch.empty_like(k) if need[3] else None
        dv = torch.empty_like(v) if need[4] else None
        dout = dout.to(torch.float32).contiguous()
        # the layer ADDS into its gradient buffer: clear it, run, copy out
        # once (the Parameters' .grad must not alias the buffer the next
        # backward clears)
        layer.zero_grad()
        layer._bwd(q, k, v, dout, dq, dk, dv, ctx.opts, ctx.act)
        ctx.act = None
        grads = torch.from_numpy(layer.flat_gradients().copy())
        pg = [grads[off:off + n].view(shape) if need[5 + i] else None
              for i, (_, _, off, n, shape) in enumerate(mod._slots)]
        return (None, None, dq, dk, dv, *pg)


class MultiheadAttention(torch.nn.Module):
    """``torch.nn.MultiheadAttention`` on libattn's layer (attn/layer.h).

    Constructor and forward as PyTorch's (``embed_dim, num_heads,
    dropout=0.0, bias=True, add_bias_kv=False, add_zero_attn=False,
    kdim=None, vdim=None, batch_first=False``; ``forward(query, key, value,
    key_padding_mask=None, need_weights=False, attn_mask=None,
    average_attn_weights=True, is_causal=False)`` returning ``(attn_output,
    None)``), with the same parameter names (``in_proj_weight`` or
    ``q/k/v_proj_weight``, ``in_proj_bias``, ``out_proj.weight``,
    ``out_proj.bias``), layout and initialisation, so ``load_state_dict``
    of an nn.MultiheadAttention works both ways. The Parameters are views of
    the C layer's own buffer (no copy per call); an optimiser updates them
    in place. Float32 CPU tensors only.

    Differences from PyTorch:

    * ``need_weights`` defaults to False and True raises ``ValueError``:
      libattn never forms the seq_q x seq_k attention weights (that is
      the point of it). The second element returned is always None.
    * ``add_bias_kv`` and ``add_zero_attn`` raise ``ValueError``.
    * ``is_causal=True`` applies the causal mask itself (top-left, as
      PyTorch's SDPA path) and ignores ``attn_mask`` (PyTorch treats the
      flag as a hint that attn_mask is that mask); it needs no attn_mask.
    * a query row whose keys are all masked gives 0 (PyTorch: NaN).
    * attention dropout (``dropout`` > 0 in training mode) uses libattn's
      counter-based mask seeded from torch's generator, not PyTorch's.
    * no gradient flows to a float ``attn_mask``/``key_padding_mask``.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0,
                 bias: bool = True, add_bias_kv: bool = False,
                 add_zero_attn: bool = False, kdim: Optional[int] = None,
                 vdim: Optional[int] = None, batch_first: bool = False,
                 device=None, dtype=None, *, threads: Optional[int] = None):
        super().__init__()
        if add_bias_kv or add_zero_attn:
            raise ValueError("attn.torch.MultiheadAttention: add_bias_kv "
                             "and add_zero_attn are not supported by "
                             "libattn's layer")
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError("attn.torch.MultiheadAttention runs on the CPU, "
                             "not %s" % (device,))
        if dtype is not None and dtype != torch.float32:
            raise TypeError("attn.torch.MultiheadAttention is float32 only, "
                            "not %s" % (dtype,))
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError("embed_dim and num_heads must be greater than "
                             "0, got embed_dim=%s and num_heads=%s" %
                             (embed_dim, num_heads))
        if embed_dim % num_heads != 0:
            raise ValueError("embed_dim must be divisible by num_heads")
        from ._layer import Layer
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = (self.kdim == embed_dim and
                                    self.vdim == embed_dim)
        self.num_heads = num_heads
        self.dropout = float(dropout)
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        self.bias_k = self.bias_v = None
        self.add_zero_attn = False
        # cross-attention with separate weights serves every call (self-
        # attention is query = key = value); its q, k, v weights (and
        # biases) lie one after the other in the flat buffer, so the fused
        # in_proj_weight / in_proj_bias are views of them
        self._layer = Layer(embed_dim, num_heads, cross=True, kdim=self.kdim,
                            vdim=self.vdim, bias=bias, threads=threads)
        p = self._layer.parameters()
        flat = torch.from_numpy(self._layer.flat_parameters())
        info = {n: self._layer.param_info(n) for n in p}

        def view(first, rows, cols=None):
            off = info[first]["offset"]
            n = rows * (cols or 1)
            return flat[off:off + n].view((rows, cols) if cols else (rows,))

        e = embed_dim
        # (in out_proj, name, offset, count, shape) per Parameter
        self._slots = []

        def reg(owner, name, first, rows, cols=None):
            t = view(first, rows, cols)
            owner.register_parameter(name, torch.nn.Parameter(t))
            self._slots.append((owner is not self, name,
                                info[first]["offset"], t.numel(),
                                tuple(t.shape)))

        if self._qkv_same_embed_dim:
            reg(self, "in_proj_weight", "q_proj_weight", 3 * e, e)
            for n in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(n, None)
        else:
            self.register_parameter("in_proj_weight", None)
            reg(self, "q_proj_weight", "q_proj_weight", e, e)
            reg(self, "k_proj_weight", "k_proj_weight", e, self.kdim)
            reg(self, "v_proj_weight", "v_proj_weight", e, self.vdim)
        if bias:
            reg(self, "in_proj_bias", "q_proj_bias", 3 * e)
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = torch.nn.Module()
        reg(self.out_proj, "weight", "out_proj.weight", e, e)
        if bias:
            reg(self.out_proj, "bias", "out_proj.bias", e)
        else:
            self.out_proj.register_parameter("bias", None)
        self._reset_parameters()

    def _params(self):
        return [getattr(self.out_proj if out else self, name)
                for out, name, _, _, _ in self._slots]

    def _reset_parameters(self):
        """PyTorch's nn.MultiheadAttention._reset_parameters, with torch's
        generator (so torch.manual_seed gives PyTorch's weights)."""
        init = torch.nn.init
        with torch.no_grad():
            if self._qkv_same_embed_dim:
                init.xavier_uniform_(self.in_proj_weight)
            else:
                init.xavier_uniform_(self.q_proj_weight)
                init.xavier_uniform_(self.k_proj_weight)
                init.xavier_uniform_(self.v_proj_weight)
            # nn.Linear's own initialisation of out_proj.weight
            init.kaiming_uniform_(self.out_proj.weight, a=5 ** 0.5)
            if self.in_proj_bias is not None:
                init.constant_(self.in_proj_bias, 0.0)
                init.constant_(self.out_proj.bias, 0.0)

    def _sync(self, params):
        """Parameters replaced since (load_state_dict(assign=True), .to()):
        their values go back into the layer's buffer and they view it
        again."""
        flat = torch.from_numpy(self._layer.flat_parameters())
        base = flat.data_ptr()
        for p, (_, _, off, n, shape) in zip(params, self._slots):
            if p.data_ptr() != base + 4 * off or p.dtype != torch.float32:
                if p.device.type != "cpu":
                    raise ValueError("attn.torch.MultiheadAttention runs on "
                                     "the CPU: its parameters were moved to "
                                     "%s" % (p.device,))
                v = flat[off:off + n].view(shape)
                with torch.no_grad():
                    v.copy_(p.detach())
                p.data = v

    def extra_repr(self):
        return "embed_dim=%d, num_heads=%d, kdim=%d, vdim=%d, batch_first=%s" % (
            self.embed_dim, self.num_heads, self.kdim, self.vdim,
            self.batch_first)

    @staticmethod
    def _mask_parts(m, name):
        if m is None:
            return None, None
        if m.dtype == torch.bool:
            return ~m, None  # PyTorch: True = masked out; libattn: attend
        if m.is_floating_point():
            return None, m.to(torch.float32)
        raise TypeError("attn: %s must be bool or floating point, not %s"
                        % (name, m.dtype))

    def forward(self, query: torch.Tensor, key: torch.Tensor,
                value: torch.Tensor,
                key_padding_mask: Optional[torch.Tensor] = None,
                need_weights: bool = False,
                attn_mask: Optional[torch.Tensor] = None,
                average_attn_weights: bool = True,
                is_causal: bool = False):
        """``(attn_output, None)``: attn_output ``(L, N, E)``, ``(N, L, E)``
        with batch_first, or ``(L, E)`` unbatched. Masks as PyTorch:
        key_padding_mask ``(N, S)`` (bool True = ignore that key, or
        float added), attn_mask ``(L, S)`` or ``(N * num_heads, L, S)``
        (bool True = not allowed, or float added)."""
        del average_attn_weights
        if need_weights:
            raise ValueError(
                "attn.torch.MultiheadAttention: need_weights=True is not "
                "supported: libattn never forms the seq_q x seq_k attention "
                "weights. Pass need_weights=False (the default here); the "
                "second value returned is None")
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = (t.unsqueeze(0) for t in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key,
                                                             value))
        q, k, v = (t.contiguous() for t in (query, key, value))
        n, lq, lk = q.shape[0], q.shape[1], k.shape[1]
        h = self.num_heads
        mask = bias = None
        if not is_causal and attn_mask is not None:
            m = attn_mask
            if m.dim() == 3:
                m = m.reshape(n, h, m.shape[-2], m.shape[-1])
            mask, bias = self._mask_parts(m, "attn_mask")
        if key_padding_mask is not None:
            km, kb = self._mask_parts(key_padding_mask.reshape(n, 1, 1, lk),
                                      "key_padding_mask")
            if km is not None and bias is None:
                mask = km if mask is None else mask & km
            else:  # one additive bias holds both
                if kb is None:
                    kb = torch.zeros(km.shape).masked_fill_(~km, float("-inf"))
                if mask is not None:
                    bias = torch.zeros(mask.shape).masked_fill_(
                        ~mask, float("-inf"))
                    mask = None
                bias = kb if bias is None else bias + kb
        if bias is not None:
            bias = bias.contiguous() if bias.dim() == 4 else bias
        drop = self.dropout if self.training else 0.0
        seed = int(torch.randint(0, 2**62, (1,)).item()) if drop > 0 else 0
        opts = self._layer._opts(causal=bool(is_causal),
                                 causal_align="top_left", bias=bias,
                                 mask=mask, dropout_p=drop,
                                 dropout_seed=seed)
        params = self._params()
        self._sync(params)
        if torch.is_grad_enabled() and (
                q.requires_grad or k.requires_grad or v.requires_grad or
                any(p.requires_grad for p in params)):
            out = _LayerFunction.apply(self, opts, q, k, v, *params)
        else:
            qd, kd, vd = q.detach(), k.detach(), v.detach()
            out = torch.empty((n, lq, self.embed_dim), dtype=torch.float32)
            act = _np.empty(self._layer._sizes(qd, kd, vd, opts)[0],
                            _np.uint8)
            self._layer._fwd(qd, kd, vd, opts, out, act)
        if unbatched:
            return out.squeeze(0), None
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, None


__all__.append("MultiheadAttention")
