"""Position schemes and quantised rows (``attn/positions.h``, ``attn.h``):
RoPE over arrays, its frequencies, the sinusoidal table, ALiBi slopes, T5
buckets, q8_0/q4_0 blocks, and the extras tuple that attn.forward and
attn.backward pass to the extension for position offsets, the T5 relative
bias, compiled masks and quantised K/V.

Every function reads its arrays in place (numpy or PyTorch CPU tensors)
and releases the GIL while the library works.
"""

from __future__ import annotations

import sys
from typing import Any, Optional, Tuple, Union

import numpy as np

from . import _api
from ._cache import _rope_tuple

ArrayLike = Any

# ops of attn._attn.pos (python/attn/_attn_pos.c)
_OP_ROPE_APPLY, _OP_ROPE_FREQ, _OP_SINUSOIDAL, _OP_T5, _OP_ALIBI = 0, 1, 2, 3, 4
_OP_QUANTIZE, _OP_DEQUANTIZE = 5, 6

#: quantised dtypes: name -> (attn_dtype, bytes per block of 32 values)
QUANT_DTYPES = {"q8_0": (4, 34), "q4_0": (5, 18)}


def _ext():
    return _api._ext


def _torch():
    return sys.modules.get("torch")


def _is_torch(x) -> bool:
    torch = _torch()
    return torch is not None and isinstance(x, torch.Tensor)


def _i64(x, name: str) -> np.ndarray:
    """Small integer metadata (positions, offsets) as contiguous int64."""
    if _is_torch(x):
        x = x.detach().cpu().numpy()
    try:
        a = np.ascontiguousarray(x, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as e:
        raise TypeError("attn: %s: cannot read as int64: %s" % (name, e)) \
            from None
    if a.dtype != np.int64 or (np.asarray(x).dtype.kind == "f" and
                               not np.array_equal(a, np.asarray(x))):
        raise ValueError("attn: %s must hold integers" % name)
    return a


def _rope(base, style, dims, scaling, factor, original_max_position,
          low_freq_factor, high_freq_factor, beta_fast, beta_slow, mscale):
    """The extension's rope tuple, with Python's checks first (the C calls
    return a status without a message)."""
    if scaling == "none":
        scaling = None
    try:
        base, factor = float(base), float(factor)
        dims = int(dims)
    except (TypeError, ValueError):
        raise TypeError("attn: rope base, factor must be numbers and dims an "
                        "int") from None
    if not (np.isfinite(base) and base > 1):
        raise ValueError("attn: rope base (%r) must be finite and > 1" % base)
    if not (np.isfinite(factor) and factor > 0):
        raise ValueError("attn: rope factor (%r) must be finite and > 0"
                         % factor)
    if dims < 0 or dims % 2:
        raise ValueError("attn: rope dims (%d) must be even and >= 0 (0 = "
                         "all of head_dim)" % dims)
    return _rope_tuple(dict(
        base=base, style=style, dims=dims, scaling=scaling, factor=factor,
        original_max_position=original_max_position,
        low_freq_factor=low_freq_factor, high_freq_factor=high_freq_factor,
        beta_fast=beta_fast, beta_slow=beta_slow, mscale=mscale))


def _check_head_dim(r, head_dim: int) -> None:
    dims = r[2] or head_dim
    if not 1 <= head_dim <= 256:
        raise ValueError("attn: head_dim (%d) must be in 1..256" % head_dim)
    if dims > head_dim:
        raise ValueError("attn: rope dims (%d) must be at most head_dim (%d)"
                         % (dims, head_dim))
    if dims % 2:
        raise ValueError("attn: rope rotates pairs: head_dim (%d) is odd, so "
                         "set dims to an even number below it" % head_dim)
    if r[3] == 2 and dims < 4:
        raise ValueError("attn: NTK scaling needs at least 4 rotated dims")


def rope_frequencies(head_dim: int, *, base: float = 10000.0,
                     style: str = "half", dims: int = 0,
                     scaling: Optional[str] = None, factor: float = 1.0,
                     original_max_position: float = 8192.0,
                     low_freq_factor: float = 1.0,
                     high_freq_factor: float = 4.0, beta_fast: float = 32.0,
                     beta_slow: float = 1.0, mscale: float = 0.0
                     ) -> Tuple[np.ndarray, float]:
    """RoPE's inverse frequencies after scaling (attn_rope_frequencies).

    Returns ``(inv_freq, mscale)``: float32 ``[dims / 2]`` (dims = ``dims``
    or head_dim), ``inv_freq[i] = base^(-2i / dims)`` then scaled, and the
    factor cos and sin are multiplied by (1 except YaRN) — the pair Hugging
    Face's ``ROPE_INIT_FUNCTIONS[...]`` returns as (inv_freq,
    attention_factor). ``linear`` divides every frequency by ``factor`` (as
    positions / factor); ``ntk`` multiplies the base by
    ``factor^(dims / (dims - 2))`` (static NTK-aware scaling; HF's
    "dynamic" reaches it at seq_len = max_position (2 factor - 1) / factor);
    ``yarn`` (``beta_fast``, ``beta_slow``, ``original_max_position``,
    ``mscale`` 0 = ``0.1 ln(factor) + 1``) and ``llama3``
    (``low_freq_factor``, ``high_freq_factor``, ``original_max_position``)
    as transformers defines them."""
    r = _rope(base, style, dims, scaling, factor, original_max_position,
              low_freq_factor, high_freq_factor, beta_fast, beta_slow, mscale)
    head_dim = int(head_dim)
    _check_head_dim(r, head_dim)
    out = np.empty((r[2] or head_dim) // 2, np.float32)
    ms = _ext().pos(_OP_ROPE_FREQ, r, head_dim, out)
    return out, ms


def rope_apply(x: ArrayLike, *, base: float = 10000.0, style: str = "half",
               dims: int = 0, scaling: Optional[str] = None,
               factor: float = 1.0, original_max_position: float = 8192.0,
               low_freq_factor: float = 1.0, high_freq_factor: float = 4.0,
               beta_fast: float = 32.0, beta_slow: float = 1.0,
               mscale: float = 0.0, positions: Optional[ArrayLike] = None,
               pos_offset: int = 0, pos_offsets: Optional[ArrayLike] = None,
               inverse: bool = False, out: Optional[ArrayLike] = None
               ) -> ArrayLike:
    """Rotary position embedding (Su et al. 2021; attn_rope_apply).

    x: ``[batch, seq, heads, head_dim]`` (or ``[seq, heads, head_dim]``),
    float32, float16 or bfloat16 (torch), any strides, read in place. Row i
    of batch b sits at ``positions[b, i]`` (int ``[batch, seq]``, or
    ``[seq]`` for every batch) when given, else at ``i + pos_offset +
    pos_offsets[b]`` (``pos_offsets`` int ``[batch]``, optional). Pairs
    rotated by the angle ``pos * inv_freq[i]`` (see
    :func:`rope_frequencies` for the scalings)::

        style="half"         (x[i], x[i + dims/2])   GPT-NeoX, Llama
        style="interleaved"  (x[2i], x[2i + 1])      GPT-J

    ``dims`` rotates only the leading dims (even; 0 = all); the rest are
    copied. Angles and the rotation are computed in double, each output
    rounded once. ``inverse`` rotates by the opposite angle: it undoes the
    rotation (up to ``mscale^2`` with YaRN) and is its gradient (dL/dx from
    dL/dy), since the rotation is orthogonal.

    Returns ``out`` (allocated like x unless given; ``out=x`` rotates in
    place; any other overlap with x is an error)."""
    r = _rope(base, style, dims, scaling, factor, original_max_position,
              low_freq_factor, high_freq_factor, beta_fast, beta_slow, mscale)
    shape = _api._shape(x)
    if out is None:
        out = _api._empty(x, shape)
    if len(shape) == 3:
        xs, os_ = x[None], out[None]
        if tuple(_api._shape(out)) != shape:
            raise ValueError("attn: out has shape %s, x %s" %
                             (tuple(_api._shape(out)), shape))
    elif len(shape) == 4:
        xs, os_ = x, out
    else:
        raise ValueError("attn: rope_apply: x must be [batch, seq, heads, "
                         "head_dim] or [seq, heads, head_dim], got %d-D"
                         % len(shape))
    b, s = _api._shape(xs)[:2]
    _check_head_dim(r, int(shape[-1]))
    if positions is not None:
        if pos_offset or pos_offsets is not None:
            raise ValueError("attn: rope_apply: positions replaces "
                             "pos_offset and pos_offsets: give one or the "
                             "other")
        positions = _i64(positions, "positions")
        if positions.shape == (s,) and b > 1:
            positions = np.ascontiguousarray(np.broadcast_to(positions,
                                                             (b, s)))
        if positions.size != b * s:
            raise ValueError("attn: positions has shape %s, expected "
                             "[batch, seq] = [%d, %d]"
                             % (positions.shape, b, s))
        _check_pos(positions, "positions")
    if pos_offsets is not None:
        pos_offsets = _i64(pos_offsets, "pos_offsets")
        if pos_offsets.shape != (b,):
            raise ValueError("attn: pos_offsets has shape %s, expected "
                             "[batch] = [%d]" % (pos_offsets.shape, b))
    _ext().pos(_OP_ROPE_APPLY, xs, os_, r, positions, int(pos_offset),
               pos_offsets, bool(inverse))
    return out


_POS_MAX = 1 << 48


def _check_pos(p: np.ndarray, name: str) -> None:
    if p.size and (p.min() < -_POS_MAX or p.max() > _POS_MAX):
        raise ValueError("attn: %s must lie within +-2^48" % name)


def sinusoidal_table(n: int, d_model: int, pos0: int = 0,
                     base: float = 10000.0) -> np.ndarray:
    """Vaswani et al.'s position table (attn_sinusoidal_table): float32
    ``[n, d_model]`` for positions ``pos0 .. pos0 + n - 1``::

        out[p, 2i]     = sin(pos / base^(2i / d_model))
        out[p, 2i + 1] = cos(pos / base^(2i / d_model))

    computed in double (an odd d_model ends with a sine column)."""
    n, d_model, pos0 = int(n), int(d_model), int(pos0)
    if n < 1 or d_model < 1:
        raise ValueError("attn: sinusoidal_table: n (%d) and d_model (%d) "
                         "must be >= 1" % (n, d_model))
    base = float(base)
    if not (np.isfinite(base) and base > 1):
        raise ValueError("attn: sinusoidal_table: base (%r) must be finite "
                         "and > 1" % base)
    if not (-_POS_MAX <= pos0 and pos0 + n - 1 <= _POS_MAX):
        raise ValueError("attn: sinusoidal_table: positions must lie within "
                         "+-2^48")
    out = np.empty((n, d_model), np.float32)
    _ext().pos(_OP_SINUSOIDAL, n, d_model, pos0, base, out)
    return out


def alibi_slopes(heads: int) -> np.ndarray:
    """ALiBi's slopes (Press et al. 2022; attn_alibi_slopes): float32
    ``[heads]``, ``2^(-8 i / heads)`` for i = 1..heads, with the reference
    code's interpolation when heads is not a power of two. Pass them as
    ``attn.forward(..., alibi_slopes=...)``."""
    heads = int(heads)
    if heads < 1:
        raise ValueError("attn: alibi_slopes: heads (%d) must be >= 1"
                         % heads)
    out = np.empty(heads, np.float32)
    _ext().pos(_OP_ALIBI, heads, out)
    return out


def t5_bucket(rel: Union[int, ArrayLike], buckets: int = 32,
              max_distance: int = 128, bidirectional: bool = True
              ) -> Union[int, np.ndarray]:
    """T5's bucket of a relative position ``rel = key position - query
    position`` (attn_t5_bucket, the reference implementation's arithmetic):
    half the buckets for each direction when ``bidirectional``, exact below
    half of them, logarithmic up to ``max_distance``. ``rel`` an int (an int
    comes back) or an integer array (an int64 array of its shape comes
    back). The row of ``attn.forward(..., rel_bias=table)`` that a pair
    reads is ``table[t5_bucket(kpos - qpos), h]``."""
    buckets, max_distance = int(buckets), int(max_distance)
    scalar = np.ndim(rel) == 0 and not _is_torch(rel)
    r = _i64(rel, "rel")
    out = np.empty(r.shape, np.int64)
    _ext().pos(_OP_T5, r.reshape(-1), out.reshape(-1), buckets, max_distance,
               bool(bidirectional))
    return int(out.reshape(-1)[0]) if scalar else out


def _quant_dtype(dtype: str):
    try:
        return QUANT_DTYPES[dtype]
    except (KeyError, TypeError):
        raise ValueError("attn: quantised dtype must be 'q8_0' or 'q4_0', "
                         "not %r" % (dtype,)) from None


def quantize(x: ArrayLike, dtype: str = "q8_0") -> ArrayLike:
    """x's last axis (a multiple of 32) in GGUF/ggml blocks of 32 values
    (attn_quantize_row, the bytes of ggml's quantize_row_*_ref)::

        q8_0  34 bytes: f16 scale d, int8 q[32];   x_i = d q_i
        q4_0  18 bytes: f16 scale d, uint8 q[16];  x_i = d (n_i - 8)

    Returns uint8 ``x.shape[:-1] + (x.shape[-1] / 32 * block_bytes,)``
    (numpy, or torch for a torch x): the K/V layout ``attn.forward(...,
    kv_dtype=dtype)`` reads. x is read as float32 (converted first when it
    is another dtype or not contiguous)."""
    dt, bb = _quant_dtype(dtype)
    was_torch = _is_torch(x)
    a = (x.detach().cpu().float().contiguous().numpy() if was_torch
         else np.ascontiguousarray(x, dtype=np.float32))
    if a.ndim < 1 or a.shape[-1] % 32:
        raise ValueError("attn: quantize: the last axis (%s) must be a "
                         "multiple of 32" % (a.shape[-1:] or "none",))
    out = np.empty(a.shape[:-1] + (a.shape[-1] // 32 * bb,), np.uint8)
    _ext().pos(_OP_QUANTIZE, dt, a.reshape(-1), out.reshape(-1))
    if was_torch:
        return _torch().from_numpy(out)
    return out


def dequantize(data: ArrayLike, dtype: str = "q8_0") -> ArrayLike:
    """Back from :func:`quantize`'s blocks (attn_dequantize_row): float32
    ``data.shape[:-1] + (data.shape[-1] / block_bytes * 32,)``."""
    dt, bb = _quant_dtype(dtype)
    was_torch = _is_torch(data)
    a = (data.detach().cpu().contiguous().numpy() if was_torch
         else np.ascontiguousarray(data))
    if a.dtype != np.uint8:
        raise TypeError("attn: dequantize: data must be uint8, not %s"
                        % a.dtype)
    if a.ndim < 1 or a.shape[-1] % bb:
        raise ValueError("attn: dequantize: the last axis (%s bytes) must "
                         "hold whole %d-byte %s blocks"
                         % (a.shape[-1:] or "none", bb, dtype))
    out = np.empty(a.shape[:-1] + (a.shape[-1] // bb * 32,), np.float32)
    _ext().pos(_OP_DEQUANTIZE, dt, a.reshape(-1), out.reshape(-1))
    if was_torch:
        return _torch().from_numpy(out)
    return out


def _placeholder(x, shape):
    """A float32 view of shape with every stride 0 (nothing allocated):
    what run() reads where the extras carry the real quantised operand."""
    if _is_torch(x):
        return _torch().zeros((), dtype=_torch().float32).expand(*shape)
    return np.broadcast_to(np.zeros((), np.float32), shape)


def quant_kv(k, v, kv_dtype: str):
    """(k placeholder, v placeholder, attn_dtype, k bytes, v bytes) for
    quantised K/V: the placeholders have the logical float shapes."""
    dt, bb = _quant_dtype(kv_dtype)
    out = []
    for x, name in ((k, "k"), (v, "v")):
        if _is_torch(x):
            if x.dtype != _torch().uint8:
                raise TypeError("attn: with kv_dtype=%r, %s must be uint8 "
                                "blocks (attn.quantize), not %s"
                                % (kv_dtype, name, x.dtype))
            raw = x.detach().numpy()  # a CPU tensor: a view, no copy
        else:
            raw = x
            if getattr(x, "dtype", None) != np.uint8:
                raise TypeError("attn: with kv_dtype=%r, %s must be uint8 "
                                "blocks (attn.quantize), not %s"
                                % (kv_dtype, name, getattr(x, "dtype",
                                                           type(x))))
        sh = tuple(raw.shape)
        if not sh or sh[-1] % bb:
            raise ValueError("attn: %s: the last axis (%s bytes) must hold "
                             "whole %d-byte %s blocks"
                             % (name, sh[-1:] or "none", bb, kv_dtype))
        out.append((_placeholder(x, sh[:-1] + (sh[-1] // bb * 32,)), raw))
    return out[0][0], out[1][0], dt, out[0][1], out[1][1]


def extras(q_pos_offset=0, k_pos_offset=0, q_pos_offsets=None,
           k_pos_offsets=None, rel_bias=None, rel_buckets=None,
           rel_max_distance=128, rel_bidirectional=False, drel_bias=None,
           mask_handle=None, compile_into=None, kv=None):
    """The extras tuple of attn._attn.run (see _attn_pos.c), or None when
    nothing in it is set."""
    if (not q_pos_offset and not k_pos_offset and q_pos_offsets is None
            and k_pos_offsets is None and rel_bias is None
            and drel_bias is None and mask_handle is None
            and compile_into is None and kv is None):
        return None
    if q_pos_offsets is not None:
        q_pos_offsets = _i64(q_pos_offsets, "q_pos_offsets")
    if k_pos_offsets is not None:
        k_pos_offsets = _i64(k_pos_offsets, "k_pos_offsets")
    nb = 0
    if rel_bias is not None:
        sh = _api._shape(rel_bias)
        if len(sh) != 2:
            raise ValueError("attn: rel_bias must be f32 [rel_buckets, "
                             "heads_q], got shape %s" % (sh,))
        if rel_buckets is not None and int(rel_buckets) != sh[0]:
            raise ValueError("attn: rel_buckets (%d) differs from rel_bias's "
                             "first axis (%d)" % (int(rel_buckets), sh[0]))
        nb = sh[0]
        rel_bias = _api._vec(rel_bias, True, "rel_bias")
    elif drel_bias is not None:
        raise ValueError("attn: drel_bias needs rel_bias")
    kdt, kq, vq = 0, None, None
    if kv is not None:
        kdt, kq, vq = kv
    return (int(q_pos_offset), int(k_pos_offset), q_pos_offsets,
            k_pos_offsets, rel_bias, nb, int(rel_max_distance),
            bool(rel_bidirectional), drel_bias, mask_handle, compile_into,
            kdt, kq, vq)
