"""attn.Mask / attn.compile_mask: every mask option compiled once into the
library's tile lists (attn_mask_compile_sized), reused by many
attn.forward / attn.backward calls (heads, layers, training steps).

A compiled mask is FlexAttention's ``create_block_mask``: for each
(sequence, query tile of 48 rows) the runs of key tiles (64 keys) that are
FULL (no per-element test) or PARTIAL; EMPTY tiles cost nothing.

Python mask_mod callables are not supported: the library calls mask_mod
from its worker threads, once per element of every probed tile (48 x 64
per tile); a Python callable would need the GIL on each call, serialising
the threads, and cost about a microsecond per element. Express the
pattern as a boolean ``mask`` tensor, a ``block_mask``, ``sparse``,
``global_idx`` or ``window`` instead (docs/decisions.md).
"""

from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import numpy as np

from . import _api, _positions

ArrayLike = Any
Shape = Tuple[int, ...]

_OP_MASK_NEW, _OP_MASK_COUNTS, _OP_MASK_CLOSE = 7, 8, 9

# the mask options attn.forward takes, with their defaults
_DEFAULTS = dict(causal=False, causal_align="bottom_right", window=(-1, -1),
                 mask=None, kv_lens=None, cu_seqlens_q=None,
                 cu_seqlens_k=None, global_idx=None, sparse=None,
                 block_mask=None, block_size=None, q_pos_offset=0,
                 k_pos_offset=0, q_pos_offsets=None, k_pos_offsets=None)
NAMES = tuple(_DEFAULTS)


def _is_default(name: str, value) -> bool:
    d = _DEFAULTS[name]
    if d is None:
        return value is None
    if name == "window":
        return value is None or tuple(value) == (-1, -1)
    return value == d


def _logical(shape: Shape, lay: int) -> Shape:
    """[batch, seq, heads, dim] of a q/k shape in layout lay."""
    if lay == 1:
        return (shape[0], shape[2], shape[1], shape[3])
    if lay == 2:
        return (1,) + tuple(shape)
    return tuple(shape)


def _shape_of(x, kv_dtype: Optional[str]) -> Shape:
    """x's shape (an array, or a shape given as a tuple), with a quantised
    k's last axis counted in values."""
    if isinstance(x, (tuple, list)):
        sh = tuple(int(s) for s in x)
    else:
        sh = _api._shape(x)
        if kv_dtype is not None:
            bb = _positions._quant_dtype(kv_dtype)[1]
            sh = sh[:-1] + (sh[-1] // bb * 32,)
    return sh


class Mask:
    """A compiled mask (attn_mask): build it with :func:`compile_mask`.

    Pass it as ``attn.forward(q, k, v, compiled_mask=m)`` (and to
    ``attn.backward``) instead of the mask options it was compiled from
    (causal, causal_align, window, mask, kv_lens, cu_seqlens_q/k,
    global_idx, sparse, block_mask/block_size, q/k_pos_offset(s)): the call
    takes them from the Mask and must not repeat them. q and k must have
    the shapes it was compiled for (ValueError otherwise). The boolean
    ``mask`` and ``block_mask`` arrays are kept by reference: leave them
    unchanged while the Mask is used.

    Freed with the object, or at once by :meth:`close` (or a ``with``
    block); a closed Mask raises ValueError when used."""

    def __init__(self) -> None:
        raise TypeError("attn: build a Mask with attn.compile_mask(...)")

    @classmethod
    def _new(cls, handle, q_shape: Shape, k_shape: Shape, layout: str,
             options: dict) -> "Mask":
        m = object.__new__(cls)
        m._handle = handle
        m.q_shape = q_shape  # logical [batch, seq_q, heads_q, head_dim]
        m.k_shape = k_shape  # logical [batch, seq_k, heads_kv, head_dim]
        m.layout = layout
        m._options = options
        m._closed = False
        return m

    def tile_counts(self) -> Tuple[int, int, int]:
        """``(full, partial, empty)``: (query tile, key tile) pairs summed
        over every sequence (and head, when the mask depends on it) —
        the work a call does: FULL tiles run without a per-element test,
        PARTIAL ones with it, EMPTY ones not at all."""
        return _api._ext.pos(_OP_MASK_COUNTS, self._handle)

    def close(self) -> None:
        """Frees the tile lists now (RuntimeError while a call uses
        them). Closing twice is fine."""
        _api._ext.pos(_OP_MASK_CLOSE, self._handle)
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Mask":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        opts = ", ".join("%s=%r" % (k, v) for k, v in self._options.items()
                         if not _is_default(k, v) and not hasattr(v, "shape"))
        return "attn.Mask(q %s, k %s%s%s)" % (
            list(self.q_shape), list(self.k_shape),
            ", " + opts if opts else "", ", closed" if self._closed else "")

    def _take(self, q, k, layout: str, kv_dtype: Optional[str],
              given: dict) -> dict:
        """The mask options for a call with this Mask: checks that the call
        passed none of its own and that q and k have the compiled
        shapes."""
        if self._closed:
            raise ValueError("attn: compiled_mask is closed")
        extra = [n for n in NAMES if not _is_default(n, given[n])]
        if extra:
            raise ValueError(
                "attn: with compiled_mask, the mask options come from the "
                "Mask: do not pass %s (compile a Mask with them instead)"
                % ", ".join(extra))
        lay = _api._LAYOUT.get(layout)
        if lay is None:
            raise ValueError("attn: layout must be 'bshd', 'bhsd' or 'thd', "
                             "not %r" % (layout,))
        if self._options["cu_seqlens_q"] is not None and lay == 0 and \
                len(_api._shape(q)) == 3:
            lay = 2
        qs = _logical(_shape_of(q, None), lay)
        ks = _logical(_shape_of(k, kv_dtype), lay)
        if qs != self.q_shape or ks != self.k_shape:
            raise ValueError(
                "attn: compiled_mask was compiled for q %s and k %s "
                "([batch, seq, heads, head_dim]); this call has q %s and k %s"
                % (list(self.q_shape), list(self.k_shape), list(qs),
                   list(ks)))
        return self._options


def compile_mask(q: Union[ArrayLike, Shape], k: Union[ArrayLike, Shape], *,
                 layout: str = "bshd", kv_dtype: Optional[str] = None,
                 causal: bool = False, causal_align: str = "bottom_right",
                 window: Optional[Tuple[int, int]] = (-1, -1),
                 mask: Optional[ArrayLike] = None,
                 kv_lens: Optional[ArrayLike] = None,
                 cu_seqlens_q: Optional[ArrayLike] = None,
                 cu_seqlens_k: Optional[ArrayLike] = None,
                 global_idx: Optional[ArrayLike] = None,
                 sparse: Optional[Union[str, Tuple]] = None,
                 block_mask: Optional[ArrayLike] = None,
                 block_size: Optional[Union[int, Tuple[int, int]]] = None,
                 q_pos_offset: int = 0, k_pos_offset: int = 0,
                 q_pos_offsets: Optional[ArrayLike] = None,
                 k_pos_offsets: Optional[ArrayLike] = None,
                 mask_mod: Any = None) -> Mask:
    """Compiles the mask options for q and k of these shapes into a
    reusable :class:`Mask` (attn_mask_compile_sized).

    q, k: the arrays of the calls to come, or just their shapes (tuples in
    ``layout``; with ``kv_dtype`` a quantised k's last axis is in bytes, as
    the array has it). Nothing of q or k is read. The options mean what
    they mean in :func:`attn.forward` (causal in either alignment, window,
    the boolean ``mask``, ``kv_lens``, packed ``cu_seqlens_q/k``,
    ``global_idx``, ``sparse``, ``block_mask``/``block_size``, and the
    positions ``q_pos_offset``, ``k_pos_offset``, ``q_pos_offsets``,
    ``k_pos_offsets`` int64 ``[batch]``).

    ``mask_mod`` (a Python predicate) is not supported: see this module's
    docstring; TypeError when given."""
    if mask_mod is not None:
        raise TypeError(
            "attn: a Python mask_mod is not supported (the library calls it "
            "from worker threads per element: it would serialise on the "
            "GIL); pass the pattern as mask=, block_mask=, sparse=, "
            "global_idx= or window= instead")
    lay, c, wl, wr, _ = _api._options(q if not isinstance(q, (tuple, list))
                                      else np.empty(0), causal, causal_align,
                                      window, None, layout, cu_seqlens_q,
                                      cu_seqlens_k)
    qsh = _shape_of(q, None)
    ksh = _shape_of(k, kv_dtype)
    if cu_seqlens_q is not None and lay == 0 and len(qsh) == 3:
        lay = 2
    want = 3 if lay == 2 else 4
    if len(qsh) != want or len(ksh) != want:
        raise ValueError("attn: compile_mask: q and k must be %d-D for "
                         "layout %r, got %s and %s"
                         % (want, layout, qsh, ksh))
    if kv_lens is not None:
        kv_lens = _api._vec(kv_lens, False, "kv_lens")
    if cu_seqlens_q is not None or cu_seqlens_k is not None:
        cu_seqlens_q = _api._vec(cu_seqlens_q, False, "cu_seqlens_q")
        cu_seqlens_k = _api._vec(cu_seqlens_k, False, "cu_seqlens_k")
    if global_idx is not None:
        global_idx = _api._vec(global_idx, False, "global_idx")
    if q_pos_offsets is not None:
        q_pos_offsets = _positions._i64(q_pos_offsets, "q_pos_offsets")
    if k_pos_offsets is not None:
        k_pos_offsets = _positions._i64(k_pos_offsets, "k_pos_offsets")
    # placeholders: every stride 0 (nothing allocated, nothing read), and
    # an output of head_dim_v 1, the one operand that must not alias
    zero = np.zeros((), np.float32)
    qd = np.broadcast_to(zero, qsh)
    kd = np.broadcast_to(zero, ksh)
    vd = np.broadcast_to(zero, ksh[:-1] + (1,))
    od = np.empty(qsh[:-1] + (1,), np.float16)
    handle = _api._ext.pos(_OP_MASK_NEW)
    ex = _positions.extras(q_pos_offset, k_pos_offset, q_pos_offsets,
                           k_pos_offsets, compile_into=handle)
    _api._ext.run(0, lay, qd, kd, vd, od, None, None, mask, None, kv_lens,
                  cu_seqlens_q, cu_seqlens_k, None, c, wl, wr, 0.0, 0.0, 1,
                  0.0, 0, None, None, None, None, None, None,
                  _api._sparse(global_idx, sparse, block_mask, block_size), 0,
                  ex)
    options = dict(causal=causal, causal_align=causal_align, window=window,
                   mask=mask, kv_lens=kv_lens, cu_seqlens_q=cu_seqlens_q,
                   cu_seqlens_k=cu_seqlens_k, global_idx=global_idx,
                   sparse=sparse, block_mask=block_mask,
                   block_size=block_size, q_pos_offset=int(q_pos_offset),
                   k_pos_offset=int(k_pos_offset),
                   q_pos_offsets=q_pos_offsets, k_pos_offsets=k_pos_offsets)
    return Mask._new(handle, _logical(qsh, lay), _logical(ksh, lay), layout,
                     options)


def prepare(a: dict):
    """For attn.forward / attn.backward (a: their arguments): ``(k, v,
    extras, mask options)`` where k, v are the operands run() reads
    (placeholders when kv_dtype quantises them), extras the tuple of
    _positions.extras, and the mask options (NAMES[:11], in order) either
    the call's own or those of its compiled_mask."""
    k, v, kv_dtype = a["k"], a["v"], a["kv_dtype"]
    m = a["compiled_mask"]
    opts = {n: a[n] for n in NAMES}
    if m is not None:
        if not isinstance(m, Mask):
            raise TypeError("attn: compiled_mask must be an attn.Mask "
                            "(attn.compile_mask), not %s" % type(m).__name__)
        opts = m._take(a["q"], k, a["layout"], kv_dtype, opts)
    kv = None
    if kv_dtype is not None:
        k, v, dt, kq, vq = _positions.quant_kv(k, v, kv_dtype)
        kv = (dt, kq, vq)
    ex = _positions.extras(opts["q_pos_offset"], opts["k_pos_offset"],
                           opts["q_pos_offsets"], opts["k_pos_offsets"],
                           a["rel_bias"], a["rel_buckets"],
                           a["rel_max_distance"], a["rel_bidirectional"],
                           a.get("drel_bias"),
                           None if m is None else m._handle, None, kv)
    return k, v, ex, tuple(opts[n] for n in NAMES[:11])
