"""attn.forward, attn.backward, attn.merge: the C calls, over any array.

Arrays are read in place (numpy through the buffer protocol, PyTorch CPU
tensors through data_ptr/stride, anything else through __dlpack__): the C
library sees the caller's pointers and strides, and writes outputs into
the caller's arrays when out= (or dq=, dk=, ...) are given. The GIL is
released while the library computes.
"""

from __future__ import annotations

import sys
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from . import _errors, _mask

_ext: Any = None  # attn._attn, set by attn/__init__.py
_ext_dir = ""  # the directory it was loaded from, set there too

ArrayLike = Any  # numpy.ndarray, torch.Tensor (CPU) or a __dlpack__ object

_CAUSAL = {"bottom_right": 1, "top_left": 2}
_LAYOUT = {"bshd": 0, "bhsd": 1, "thd": 2}
_NP_F32 = np.dtype(np.float32)
_NP_I32 = np.dtype(np.int32)


def _torch():
    return sys.modules.get("torch")


def _empty(like: ArrayLike, shape: Tuple[int, ...], f32: bool = False):
    """An uninitialised array of the same kind (numpy or torch) as like."""
    if type(like) is np.ndarray or isinstance(like, np.ndarray):
        return np.empty(shape, _NP_F32 if f32 else like.dtype)
    torch = _torch()
    if torch is not None and isinstance(like, torch.Tensor):
        if not f32 and shape == tuple(like.shape):  # the cheaper call
            try:
                return torch.empty_like(like,
                                        memory_format=torch.contiguous_format)
            except RuntimeError:  # not strided: the C side says why
                pass
        return torch.empty(shape, dtype=torch.float32 if f32 else like.dtype)
    if f32:
        return np.empty(shape, _NP_F32)
    dtype = _ext.info(like)[1]
    if dtype == "bfloat16":
        raise TypeError("attn: numpy has no bfloat16: pass out=")
    return np.empty(shape, np.dtype(dtype))


def _shape(x) -> Tuple[int, ...]:
    """x.shape, or the binding's TypeError for something that is not an
    array."""
    try:
        return tuple(x.shape)
    except AttributeError:
        _ext.info(x)  # raises TypeError naming what it got
        raise


def _vec(x, f32: bool, name: str):
    """Small metadata (slopes, lengths, sinks): used in place when it is
    already a contiguous array of the right dtype, else converted."""
    if x is None:
        return None
    torch = _torch()
    if torch is not None and isinstance(x, torch.Tensor):
        want = torch.float32 if f32 else torch.int32
        if x.dtype != want:
            x = x.to(want)
        return x.contiguous()
    want = _NP_F32 if f32 else _NP_I32
    if isinstance(x, np.ndarray) and x.dtype == want and x.flags.c_contiguous:
        return x
    try:
        arr = np.ascontiguousarray(x, dtype=want)
    except OverflowError:
        raise ValueError("attn: %s does not fit in int32" % name) from None
    except (TypeError, ValueError) as e:
        raise TypeError("attn: %s: cannot read as %s: %s" %
                        (name, want.name, e)) from None
    if not f32 and not np.array_equal(arr, np.asarray(x)):
        raise ValueError("attn: %s does not fit in int32" % name)
    return arr


def _options(q, causal, causal_align, window, scale, layout, cu_q, cu_k):
    try:
        lay = _LAYOUT[layout]
    except (KeyError, TypeError):
        raise ValueError("attn: layout must be 'bshd', 'bhsd' or 'thd', not %r"
                         % (layout,)) from None
    if cu_q is not None and lay == 0 and getattr(q, "ndim", 4) == 3:
        lay = 2
    if causal:
        try:
            c = _CAUSAL[causal_align]
        except (KeyError, TypeError):
            raise ValueError("attn: causal_align must be 'bottom_right' or "
                             "'top_left', not %r" % (causal_align,)) from None
    else:
        c = 0
    if window is None:
        wl = wr = -1
    else:
        try:
            wl, wr = window
            wl, wr = int(wl), int(wr)
        except (TypeError, ValueError):
            raise TypeError("attn: window must be a pair of ints (left, "
                            "right), -1 = unlimited, not %r" % (window,)) from None
    if scale is None:
        s = 0.0
    else:
        s = float(scale)
        if s == 0.0:
            raise ValueError("attn: scale must not be 0 (None means "
                             "1/sqrt(head_dim))")
    return lay, c, wl, wr, s


def _lse_shape(q, lay: int, varlen: bool) -> Tuple[int, ...]:
    sh = tuple(q.shape)
    if lay == 2:
        return (sh[1], sh[0])
    b, s, h = (sh[0], sh[1], sh[2]) if lay == 0 else (sh[0], sh[2], sh[1])
    return (h, s) if varlen else (b, h, s)


_SPARSE_KINDS = {"strided": 1, "fixed": 2}


def _sparse(global_idx, sparse, block_mask, block_size):
    """The extension's sparse tuple, or None when no sparse option is set."""
    if global_idx is None and sparse is None and block_mask is None:
        if block_size is not None:
            raise ValueError("attn: block_size needs block_mask")
        return None
    kind, l, c = 0, 0, 0
    if sparse is not None:
        if isinstance(sparse, str):
            name, _, rest = sparse.partition(":")
            nums = [x for x in rest.split(",")] if rest else []
        else:
            name, nums = sparse[0], list(sparse[1:])
        if name not in _SPARSE_KINDS:
            raise ValueError("attn: sparse must be 'strided:L' or "
                             "'fixed:L,C', got %r" % (sparse,))
        want = 1 if name == "strided" else 2
        try:
            nums = [int(x) for x in nums]
        except (TypeError, ValueError):
            raise ValueError("attn: sparse %r: L (and C) must be integers"
                             % (sparse,)) from None
        if len(nums) != want:
            raise ValueError("attn: sparse %r: %s takes %s" % (
                sparse, name, "L" if want == 1 else "L,C"))
        kind, l = _SPARSE_KINDS[name], nums[0]
        c = nums[1] if want == 2 else 0
    bq = bk = 0
    if block_mask is not None:
        if block_size is None:
            raise ValueError("attn: block_mask needs block_size=(bq, bk)")
        if isinstance(block_size, int):
            bq = bk = block_size
        else:
            bq, bk = (int(x) for x in block_size)
    elif block_size is not None:
        raise ValueError("attn: block_size needs block_mask")
    if global_idx is not None:
        global_idx = _vec(global_idx, False, "global_idx")
    return (global_idx, kind, l, c, block_mask, bq, bk)


def forward(q: ArrayLike, k: ArrayLike, v: ArrayLike, *,
            causal: bool = False, causal_align: str = "bottom_right",
            window: Optional[Tuple[int, int]] = (-1, -1),
            scale: Optional[float] = None, softcap: float = 0.0,
            alibi_slopes: Optional[ArrayLike] = None,
            bias: Optional[ArrayLike] = None,
            mask: Optional[ArrayLike] = None,
            kv_lens: Optional[ArrayLike] = None,
            cu_seqlens_q: Optional[ArrayLike] = None,
            cu_seqlens_k: Optional[ArrayLike] = None,
            layout: str = "bshd", return_lse: bool = False,
            out: Optional[ArrayLike] = None, lse: Optional[ArrayLike] = None,
            threads: Optional[int] = None,
            sinks: Optional[ArrayLike] = None, dropout_p: float = 0.0,
            dropout_seed: int = 0,
            global_idx: Optional[ArrayLike] = None,
            sparse: Optional[Union[str, Tuple]] = None,
            block_mask: Optional[ArrayLike] = None,
            block_size: Optional[Union[int, Tuple[int, int]]] = None,
            q_pos_offset: int = 0, k_pos_offset: int = 0,
            q_pos_offsets: Optional[ArrayLike] = None,
            k_pos_offsets: Optional[ArrayLike] = None,
            rel_bias: Optional[ArrayLike] = None,
            rel_buckets: Optional[int] = None, rel_max_distance: int = 128,
            rel_bidirectional: bool = False,
            compiled_mask: Optional[Any] = None,
            kv_dtype: Optional[str] = None
            ) -> Union[ArrayLike, Tuple[ArrayLike, ArrayLike]]:
    """Attention forward: ``o = softmax(scale q kᵀ + options) v``.

    Shapes (``layout``; the last axis is always head_dim):

    * ``"bshd"`` (default): q ``[batch, seq_q, heads_q, d]``, k ``[batch,
      seq_k, heads_kv, d]``, v ``[batch, seq_k, heads_kv, d_v]``;
    * ``"bhsd"``: the same with heads before seq (PyTorch's SDPA layout);
    * ``"thd"``: packed variable-length batches ``[total, heads, d]`` with
      ``cu_seqlens_q``/``cu_seqlens_k`` (int32 ``[batch + 1]``; a 3-D q with
      cu_seqlens selects it by itself).

    heads_q must be a multiple of heads_kv (grouped-query attention: query
    head h reads kv head ``h // (heads_q // heads_kv)``). q, k, v, out may be
    float32, float16 or bfloat16 (each its own), with any non-negative
    strides; nothing is copied.

    Causal masks (``causal=True``), drawn for seq_q = 3, seq_k = 5
    (x = may attend)::

        causal_align="bottom_right"     causal_align="top_left"
        (FlashAttention, KV cache)      (PyTorch is_causal=True)
             k0 k1 k2 k3 k4                  k0 k1 k2 k3 k4
        q0    x  x  x  .  .             q0    x  .  .  .  .
        q1    x  x  x  x  .             q1    x  x  .  .  .
        q2    x  x  x  x  x             q2    x  x  x  .  .

    Bottom-right: query i sees key j when j <= i + seq_k - seq_q; top-left:
    when j <= i. With seq_q > seq_k, bottom-right leaves the first rows with
    no key: they get o = 0 and lse = -inf (never NaN).

    Options: ``window=(left, right)`` keys seen on each side of the causal
    diagonal (-1 = all); ``scale`` (None: 1/sqrt(d)); ``softcap`` (> 0:
    ``s = softcap tanh(s / softcap)``); ``alibi_slopes`` f32 ``[heads_q]``
    (``s -= slope |i + seq_k - seq_q - j|``); ``bias`` f32 and ``mask`` bool
    (True = attend) ``[batch|1, heads_q|1, seq_q|1, seq_k|1]``, fewer axes
    broadcast from the left; ``kv_lens`` int32 ``[batch]`` (keys past it are
    padding, never read); ``sinks`` f32 ``[heads_q]`` (a logit per head that
    joins every softmax denominator); ``dropout_p`` with ``dropout_seed``
    (counter-based, the backward regenerates it); ``threads`` (None: the
    library's default, ``ATTN_NUM_THREADS`` or all CPUs).

    Sparse patterns (``attn/sparse.h``; work only on the tiles they keep):
    ``global_idx`` int32 strictly increasing token positions whose queries
    see every key and whose keys every query sees (Longformer: widens
    ``window``); ``sparse="strided:L"`` or ``"fixed:L,C"`` (or the tuples
    ``("strided", L)``, ``("fixed", L, C)``): Child et al.'s patterns, causal
    by construction, with p = i + seq_k - seq_q and j <= p, strided keeps
    ``p - L <= j`` or ``(p - j) % L == 0``, fixed keeps ``j // L == p // L``
    or ``j % L >= L - C``; ``block_mask`` bool ``[batch|1, heads_q|1,
    ceil(seq_q / bq), ceil(seq_k / bk)]`` with ``block_size=(bq, bk)`` (or
    one int for both): only blocks marked True may attend.

    Positions (``attn/positions.h``): query i of a sequence sits at
    ``i + seq_k - seq_q + q_pos_offset (+ q_pos_offsets[b])``, key j at
    ``j + k_pos_offset (+ k_pos_offsets[b])`` (offsets int64 ``[batch]``);
    causal, window, ALiBi and T5 read these. ``rel_bias`` f32 ``[buckets,
    heads_q]``: T5's relative bias ``s += rel_bias[bucket(kpos - qpos), h]``
    added inside the kernel (``rel_buckets`` = its first axis,
    ``rel_max_distance``, ``rel_bidirectional``; see
    :func:`attn.t5_bucket`). ``compiled_mask``: an :class:`attn.Mask` from
    :func:`attn.compile_mask` replacing every mask option (pass none of
    them). ``kv_dtype="q8_0"|"q4_0"``: k and v are uint8 blocks from
    :func:`attn.quantize`, ``[..., head_dim / 32 * block_bytes]``, read
    directly by the kernels.

    Returns ``out`` (allocated like q, numpy or torch, unless given), or
    ``(out, lse)`` with ``return_lse`` (or ``lse=`` given): lse f32 ``[batch,
    heads_q, seq_q]`` (``[heads_q, total_q]`` when packed).

    Raises ``TypeError`` (dtype), ``ValueError`` (shape, stride, option,
    device) or :class:`attn.AttnError` subclasses carrying the library's
    message.
    """
    ex = None  # positions, T5 bias, compiled mask, quantised K/V (_mask.py)
    if (compiled_mask is not None or kv_dtype is not None or q_pos_offset
            or k_pos_offset or q_pos_offsets is not None
            or k_pos_offsets is not None or rel_bias is not None):
        k, v, ex, (causal, causal_align, window, mask, kv_lens, cu_seqlens_q,
                   cu_seqlens_k, global_idx, sparse, block_mask,
                   block_size) = _mask.prepare(locals())
    lay, c, wl, wr, s = _options(q, causal, causal_align, window, scale,
                                 layout, cu_seqlens_q, cu_seqlens_k)
    if lse is None and return_lse:
        lse = True  # the extension allocates it (and out when None)
    if alibi_slopes is not None:
        alibi_slopes = _vec(alibi_slopes, True, "alibi_slopes")
    if kv_lens is not None:
        kv_lens = _vec(kv_lens, False, "kv_lens")
    if cu_seqlens_q is not None or cu_seqlens_k is not None:
        cu_seqlens_q = _vec(cu_seqlens_q, False, "cu_seqlens_q")
        cu_seqlens_k = _vec(cu_seqlens_k, False, "cu_seqlens_k")
    if sinks is not None:
        sinks = _vec(sinks, True, "sinks")
    out, lse = _ext.run(
        0, lay, q, k, v, out, lse, bias, mask, alibi_slopes, kv_lens,
        cu_seqlens_q, cu_seqlens_k, sinks, c, wl, wr, s, float(softcap),
        0 if threads is None else int(threads), float(dropout_p),
        int(dropout_seed), None, None, None, None, None, None,
        _sparse(global_idx, sparse, block_mask, block_size), 0, ex)
    if lse is not None:
        return out, lse
    return out


def backward(dout: ArrayLike, q: ArrayLike, k: ArrayLike, v: ArrayLike,
             o: ArrayLike, lse: ArrayLike, *, causal: bool = False,
             causal_align: str = "bottom_right",
             window: Optional[Tuple[int, int]] = (-1, -1),
             scale: Optional[float] = None, softcap: float = 0.0,
             alibi_slopes: Optional[ArrayLike] = None,
             bias: Optional[ArrayLike] = None,
             mask: Optional[ArrayLike] = None,
             kv_lens: Optional[ArrayLike] = None,
             cu_seqlens_q: Optional[ArrayLike] = None,
             cu_seqlens_k: Optional[ArrayLike] = None,
             layout: str = "bshd", dq: Optional[ArrayLike] = None,
             dk: Optional[ArrayLike] = None, dv: Optional[ArrayLike] = None,
             dbias: Optional[ArrayLike] = None,
             dsinks: Optional[ArrayLike] = None,
             threads: Optional[int] = None,
             sinks: Optional[ArrayLike] = None, dropout_p: float = 0.0,
             dropout_seed: int = 0,
             global_idx: Optional[ArrayLike] = None,
             sparse: Optional[Union[str, Tuple]] = None,
             block_mask: Optional[ArrayLike] = None,
             block_size: Optional[Union[int, Tuple[int, int]]] = None,
             q_pos_offset: int = 0, k_pos_offset: int = 0,
             q_pos_offsets: Optional[ArrayLike] = None,
             k_pos_offsets: Optional[ArrayLike] = None,
             rel_bias: Optional[ArrayLike] = None,
             rel_buckets: Optional[int] = None, rel_max_distance: int = 128,
             rel_bidirectional: bool = False,
             drel_bias: Optional[ArrayLike] = None,
             compiled_mask: Optional[Any] = None,
             kv_dtype: Optional[str] = None
             ) -> Tuple[ArrayLike, ArrayLike, ArrayLike]:
    """Attention backward: ``(dq, dk, dv)`` from dL/dO = ``dout``.

    q, k, v and every option must be the forward's; o and lse are what the
    forward returned (``forward(..., return_lse=True)``). dk and dv are
    summed over the query heads of each kv head. FlashAttention-2's
    recomputation: nothing of size seq_q x seq_k is allocated.

    ``dq``, ``dk``, ``dv`` (any float dtype and strides) are written in
    place when given, else allocated like q, k, v. ``dbias`` (f32, bias's
    exact shape: dL/dbias summed over the axes bias broadcasts) and
    ``dsinks`` (f32 ``[heads_q]``) are filled only when given, as is
    ``drel_bias`` (f32, rel_bias's shape: dL/d(rel_bias)). With
    ``kv_dtype`` the dequantised K, V are the inputs (straight-through):
    dk, dv come back in float32 with head_dim in values.
    Layouts, options and errors as :func:`forward`.
    """
    ex = None  # positions, T5 bias, compiled mask, quantised K/V (_mask.py)
    if (compiled_mask is not None or kv_dtype is not None or q_pos_offset
            or k_pos_offset or q_pos_offsets is not None
            or k_pos_offsets is not None or rel_bias is not None
            or drel_bias is not None):
        k, v, ex, (causal, causal_align, window, mask, kv_lens, cu_seqlens_q,
                   cu_seqlens_k, global_idx, sparse, block_mask,
                   block_size) = _mask.prepare(locals())
    lay, c, wl, wr, s = _options(q, causal, causal_align, window, scale,
                                 layout, cu_seqlens_q, cu_seqlens_k)
    # dq, dk, dv left None: the extension allocates them like q, k, v
    if alibi_slopes is not None:
        alibi_slopes = _vec(alibi_slopes, True, "alibi_slopes")
    if kv_lens is not None:
        kv_lens = _vec(kv_lens, False, "kv_lens")
    if cu_seqlens_q is not None or cu_seqlens_k is not None:
        cu_seqlens_q = _vec(cu_seqlens_q, False, "cu_seqlens_q")
        cu_seqlens_k = _vec(cu_seqlens_k, False, "cu_seqlens_k")
    if sinks is not None:
        sinks = _vec(sinks, True, "sinks")
    return _ext.run(
        1, lay, q, k, v, o, lse, bias, mask, alibi_slopes, kv_lens,
        cu_seqlens_q, cu_seqlens_k, sinks, c, wl, wr, s, float(softcap),
        0 if threads is None else int(threads), float(dropout_p),
        int(dropout_seed), dout, dq, dk, dv, dbias, dsinks,
        _sparse(global_idx, sparse, block_mask, block_size), 0, ex)


def merge(o_parts: Sequence[ArrayLike], lse_parts: Sequence[ArrayLike], *,
          out: Optional[ArrayLike] = None, lse: Optional[ArrayLike] = None,
          return_lse: bool = False, sinks: Optional[ArrayLike] = None,
          threads: Optional[int] = None):
    """Merges partial results over disjoint key sets (attn_merge)::

        lse = log sum_c exp(lse_c),   o = sum_c exp(lse_c - lse) o_c

    o_parts: ``[batch, seq_q, heads, d_v]`` each (layout bshd, any float
    dtype and strides); lse_parts: contiguous f32 ``[batch, heads, seq_q]``
    as :func:`forward` returns them. Returns out, or (out, lse)."""
    o_parts = list(o_parts)
    if not o_parts:
        raise ValueError("attn: merge needs at least one part")
    if out is None:
        out = _empty(o_parts[0], tuple(o_parts[0].shape))
    if lse is None and return_lse:
        lse = _empty(o_parts[0], tuple(lse_parts[0].shape), True)
    if sinks is not None:
        sinks = _vec(sinks, True, "sinks")
    _ext.merge(o_parts, list(lse_parts), out, lse, sinks,
               0 if threads is None else int(threads))
    return (out, lse) if lse is not None else out


def merge_backward(dout: ArrayLike, o_parts: Sequence[ArrayLike],
                   lse_parts: Sequence[ArrayLike], o: ArrayLike,
                   lse: ArrayLike, *, dlse: Optional[ArrayLike] = None,
                   sinks: Optional[ArrayLike] = None,
                   dsinks: Optional[ArrayLike] = None,
                   threads: Optional[int] = None):
    """Backward of :func:`merge`: returns ``(do_parts, dlse_parts)`` (lists)
    from dL/dO ``dout`` (and dL/dLSE ``dlse``); o and lse as merge returned
    them. ``dsinks`` (f32 ``[heads]``) is filled when given."""
    o_parts = list(o_parts)
    lse_parts = list(lse_parts)
    do_parts = [_empty(p, tuple(p.shape)) for p in o_parts]
    dlse_parts = [_empty(p, tuple(p.shape), True) for p in lse_parts]
    if sinks is not None:
        sinks = _vec(sinks, True, "sinks")
    _ext.merge_backward(o_parts, lse_parts, o, lse, sinks,
                        0 if threads is None else int(threads), dout, dlse,
                        do_parts, dlse_parts, dsinks)
    return do_parts, dlse_parts


def _time_c(mode: int, repeat: int, q, k, v, o, lse=None, *, causal=0,
            threads=1, dout=None, dq=None, dk=None, dv=None,
            cpu: bool = False) -> float:
    """Seconds per C call, the loop running inside the extension (no Python
    between calls): the baseline bench/py_overhead.py compares against.
    cpu: count the calling thread's CPU time (threads=1) instead of wall
    time, which a loaded machine's preemptions do not inflate."""
    return _ext.run(mode, 0, q, k, v, o, lse, None, None, None, None, None,
                    None, None, causal, -1, -1, 0.0, 0.0, threads, 0.0, 0,
                    dout, dq, dk, dv, None, None, None,
                    -repeat if cpu else repeat)


def _linear_causal(causal, causal_align):
    if not causal:
        return 0
    try:
        return _CAUSAL[causal_align]
    except (KeyError, TypeError):
        raise ValueError("attn: causal_align must be 'bottom_right' or "
                         "'top_left', not %r" % (causal_align,)) from None


def linear_forward(q: ArrayLike, k: ArrayLike, v: ArrayLike, *,
                   causal: bool = False, causal_align: str = "bottom_right",
                   out: Optional[ArrayLike] = None,
                   threads: Optional[int] = None) -> ArrayLike:
    """Linear attention (Katharopoulos et al. 2020, ``attn/linear.h``):
    ``o_i = phi(q_i) S / (phi(q_i) . z)`` with ``phi(x) = elu(x) + 1``,
    ``S = sum_j phi(k_j)^T v_j`` and ``z = sum_j phi(k_j)`` over every key
    (non-causal, O(n d^2)) or the keys ``j <= i + seq_k - seq_q``
    (``causal=True``, bottom-right; ``causal_align="top_left"``: ``j <= i``),
    computed in chunks of 64 (exact inside a chunk, a running state across
    chunks). q ``[batch, seq_q, heads_q, d]``, k ``[batch, seq_k, heads_kv,
    d]``, v ``[batch, seq_k, heads_kv, d_v]`` (bshd, any strides, f32, f16
    or bf16); heads_q a multiple of heads_kv. A row with no key gets 0.
    Returns ``out`` (allocated like q unless given)."""
    c = _linear_causal(causal, causal_align)
    if out is None:
        out = _empty(q, _shape(q)[:-1] + _shape(v)[-1:])
    _ext.linear(0, q, k, v, out, c, 0 if threads is None else int(threads),
                None, None, None, None)
    return out


def linear_backward(dout: ArrayLike, q: ArrayLike, k: ArrayLike,
                    v: ArrayLike, *, causal: bool = False,
                    causal_align: str = "bottom_right",
                    dq: Optional[ArrayLike] = None,
                    dk: Optional[ArrayLike] = None,
                    dv: Optional[ArrayLike] = None,
                    threads: Optional[int] = None
                    ) -> Tuple[ArrayLike, ArrayLike, ArrayLike]:
    """Gradients ``(dq, dk, dv)`` of ``sum(dout * linear_forward(q, k, v))``
    (the forward is recomputed; dk and dv are summed over the query heads
    of each kv head). Same options as :func:`linear_forward`."""
    c = _linear_causal(causal, causal_align)
    if dq is None:
        dq = _empty(q, _shape(q))
    if dk is None:
        dk = _empty(k, _shape(k))
    if dv is None:
        dv = _empty(v, _shape(v))
    _ext.linear(1, q, k, v, None, c, 0 if threads is None else int(threads),
                dout, dq, dk, dv)
    return dq, dk, dv
