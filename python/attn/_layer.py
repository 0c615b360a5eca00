"""attn.Layer: the multi-head attention layer of ``attn/layer.h``
(libattn_layer) from Python.

The layer owns its parameters and their gradients in two flat float32
buffers; :meth:`Layer.parameters` and :meth:`Layer.gradients` return numpy
views of them (no copy), so weights load by assignment::

    layer = attn.Layer(512, 8, kv_heads=2, positions="rope")
    p = layer.parameters()
    p["q_proj_weight"][:] = wq           # written into the C layer
    y = layer.forward(x, causal=True)    # x [batch, seq, 512] float32
    dx = layer.backward(dy)              # adds into layer.gradients()

libattn_layer links OpenBLAS, so it is loaded on the first ``attn.Layer``
(``$ATTN_LAYER_LIBRARY``, else ``libattn_layer.so.0`` beside the loaded
libattn, else the system's): ``import attn`` works without it and
``attn.Layer`` then raises ``RuntimeError`` saying why.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from . import _api
from ._cache import KVCache, _rope_tuple

ArrayLike = Any

_libattn_path: Optional[str] = None  # set by attn/__init__.py

_POSITIONS = {"none": 0, None: 0, "sinusoidal": 1, "learned": 2, "rope": 3,
              "alibi": 4, "t5": 5}

# _attn_layer.c's op numbers
(_OP_LOAD, _OP_CREATE, _OP_PARAMS, _OP_BUFFER, _OP_INIT, _OP_ZERO_GRAD,
 _OP_FORWARD, _OP_BACKWARD, _OP_SIZES, _OP_DECODE, _OP_DECODE_WS,
 _OP_PARAM_FIND, _OP_DIMS, _OP_LOADED) = range(14)


def layer_library_path() -> str:
    """The libattn_layer that attn.Layer loads (see the module docstring)."""
    env = os.environ.get("ATTN_LAYER_LIBRARY")
    if env:
        return os.path.abspath(env)
    if _libattn_path and os.path.isabs(_libattn_path):
        cand = os.path.join(os.path.dirname(_libattn_path),
                            "libattn_layer.so.0")
        if os.path.isfile(cand):
            return cand
    return "libattn_layer.so.0"


def _load() -> None:
    ext = _api._ext
    if ext.layer(_OP_LOADED):
        return
    path = layer_library_path()
    try:
        ext.layer(_OP_LOAD, path)
    except ImportError as e:
        raise RuntimeError(
            "attn.Layer needs libattn_layer (the layer library, built when "
            "CMake finds OpenBLAS; set ATTN_LAYER_LIBRARY to its path): %s"
            % e) from None


def available() -> bool:
    """True when libattn_layer can be loaded (attn.Layer works)."""
    try:
        _load()
        return True
    except RuntimeError:
        return False


def _contig(x):
    """x as a C-contiguous array of the same kind (no copy when it is)."""
    if x is None:
        return None
    if isinstance(x, np.ndarray):
        return x if x.flags.c_contiguous else np.ascontiguousarray(x)
    torch = _api._torch()
    if torch is not None and isinstance(x, torch.Tensor):
        return x if x.is_contiguous() else x.contiguous()
    return x


def _flag(v, default):
    return int(bool(default if v is None else v))


class Layer:
    """Multi-head attention with learned projections (``attn/layer.h``).

    ``Layer(d_model, heads, *, kv_heads=None, head_dim=None,
    head_dim_v=None, d_out=None, cross=False, kdim=None, vdim=None,
    bias=True, bias_q=None, bias_k=None, bias_v=None, bias_out=None,
    fused_qkv=False, positions="none", max_positions=2048,
    sinusoidal_base=10000.0, rope=None, t5_buckets=32, t5_max_distance=128,
    t5_bidirectional=True, seed=0, threads=None)``

    * ``kv_heads``: GQA (a divisor of ``heads``; 1 = MQA); ``head_dim``
      defaults to ``d_model // heads``, ``head_dim_v`` to ``head_dim``,
      ``d_out`` to ``d_model``.
    * ``cross`` (implied by ``kdim``/``vdim``): queries from x, keys from
      ``kv`` [batch, seq_k, kdim], values from ``value`` [batch, seq_k,
      vdim] (or from ``kv``).
    * ``bias`` sets the four bias flags; ``bias_q`` ... override one each.
      ``fused_qkv``: one ``in_proj_weight`` (self-attention only; then
      PyTorch's nn.MultiheadAttention names and layout exactly).
    * ``positions``: "none", "sinusoidal" (``sinusoidal_base``), "learned"
      (``max_positions`` rows, trained), "rope" (``rope``: a dict as for
      :class:`attn.KVCache`: ``base``, ``style`` "half"/"interleaved",
      ``dims``, ``scaling`` linear/ntk/yarn/llama3, ``factor``, ...),
      "alibi" (the paper's slopes), "t5" (``t5_buckets``,
      ``t5_max_distance``, ``t5_bidirectional``; the table is trained).
    * ``seed``: the weights are PyTorch's initialisation of
      nn.MultiheadAttention drawn from this seed (attn_layer_init_weights).
    * ``threads``: the attention kernels' threads for every call (None =
      all); the projections use OpenBLAS's (``OPENBLAS_NUM_THREADS``).

    One Layer may be run by one thread at a time (a second thread gets
    ``RuntimeError``); the GIL is released while it computes.
    """

    def __init__(self, d_model: int, heads: int, *,
                 kv_heads: Optional[int] = None,
                 head_dim: Optional[int] = None,
                 head_dim_v: Optional[int] = None,
                 d_out: Optional[int] = None, cross: bool = False,
                 kdim: Optional[int] = None, vdim: Optional[int] = None,
                 bias: bool = True, bias_q: Optional[bool] = None,
                 bias_k: Optional[bool] = None,
                 bias_v: Optional[bool] = None,
                 bias_out: Optional[bool] = None, fused_qkv: bool = False,
                 positions: Optional[str] = "none",
                 max_positions: int = 2048,
                 sinusoidal_base: float = 10000.0,
                 rope: Optional[dict] = None, t5_buckets: int = 32,
                 t5_max_distance: int = 128, t5_bidirectional: bool = True,
                 seed: int = 0, threads: Optional[int] = None):
        _load()
        if positions not in _POSITIONS:
            raise ValueError("attn: positions must be one of 'none', "
                             "'sinusoidal', 'learned', 'rope', 'alibi', "
                             "'t5', not %r" % (positions,))
        pos = _POSITIONS[positions]
        if rope is not None and pos != 3:
            raise ValueError("attn: rope= needs positions='rope'")
        cross = bool(cross or kdim is not None or vdim is not None)
        cfg = (int(d_model), int(heads), int(kv_heads or 0),
               int(head_dim or 0), int(head_dim_v or 0), int(d_out or 0),
               int(cross), int(kdim or 0), int(vdim or 0), int(bool(fused_qkv)),
               _flag(bias_q, bias), _flag(bias_k, bias), _flag(bias_v, bias),
               _flag(bias_out, bias), pos, int(max_positions),
               0.0 if sinusoidal_base is None else float(sinusoidal_base),
               int(t5_buckets), int(t5_max_distance),
               int(bool(t5_bidirectional)))
        rt = _rope_tuple(rope if rope is not None else {}) if pos == 3 else None
        if threads is not None and int(threads) < 0:
            raise ValueError("attn: threads must be >= 0")
        self.threads = 0 if threads is None else int(threads)
        self._h = _api._ext.layer(_OP_CREATE, cfg, rt, int(seed) & (2**64 - 1))
        (self.d_model, self.kdim, self.vdim, self.d_out, self.heads,
         self.kv_heads, self.head_dim, self.head_dim_v,
         cross_i) = _api._ext.layer(_OP_DIMS, self._h)
        self.cross = bool(cross_i)
        self.positions = positions or "none"
        self.fused_qkv = bool(fused_qkv)
        total, infos = _api._ext.layer(_OP_PARAMS, self._h)
        self._infos = infos  # (name, ndim, rows, cols, offset, count)
        self._flat = np.frombuffer(_api._ext.layer(_OP_BUFFER, self._h, 0),
                                   np.float32)
        self._flat_grad = np.frombuffer(
            _api._ext.layer(_OP_BUFFER, self._h, 1), np.float32)
        assert self._flat.size == total
        self._params = self._views(self._flat)
        self._grads = self._views(self._flat_grad)
        self._saved = None

    def _views(self, flat) -> Dict[str, np.ndarray]:
        out = {}
        for name, ndim, rows, cols, off, n in self._infos:
            v = flat[off:off + n]
            out[name] = v.reshape((rows, cols) if ndim == 2 else (rows,))
        return out

    def __repr__(self):
        return ("attn.Layer(d_model=%d, heads=%d, kv_heads=%d, head_dim=%d, "
                "cross=%s, positions=%r, parameters=%d)" %
                (self.d_model, self.heads, self.kv_heads, self.head_dim,
                 self.cross, self.positions, self._flat.size))

    # --- parameters ------------------------------------------------------
    def parameters(self) -> Dict[str, np.ndarray]:
        """name -> writable numpy view of the layer's parameter (PyTorch's
        names: in_proj_weight / q_proj_weight, ..., out_proj.weight,
        out_proj.bias, pos_table, rel_bias), in the library's order."""
        return dict(self._params)

    def gradients(self) -> Dict[str, np.ndarray]:
        """name -> numpy view of the gradient buffer (backward adds into
        it; :meth:`zero_grad` clears it)."""
        return dict(self._grads)

    def flat_parameters(self) -> np.ndarray:
        """Every parameter in one float32 view (for an optimiser)."""
        return self._flat

    def flat_gradients(self) -> np.ndarray:
        """Every gradient in one float32 view, parameters' layout."""
        return self._flat_grad

    def param_info(self, name: str) -> Dict[str, Any]:
        """attn_layer_param_find: shape, offset and count of one tensor
        (KeyError when the layer has none of that name)."""
        n, nd, rows, cols, off, cnt = _api._ext.layer(_OP_PARAM_FIND,
                                                      self._h, name)
        return {"name": n, "shape": (rows, cols) if nd == 2 else (rows,),
                "offset": off, "count": cnt}

    def zero_grad(self) -> None:
        """Sets every gradient to 0."""
        _api._ext.layer(_OP_ZERO_GRAD, self._h)

    def init_weights(self, seed: int = 0) -> None:
        """PyTorch's initialisation drawn from seed (gradients untouched)."""
        _api._ext.layer(_OP_INIT, self._h, int(seed) & (2**64 - 1))

    # --- calls -------------------------------------------------------------
    def _opts(self, causal=False, causal_align="bottom_right",
              window=(-1, -1), scale=None, softcap=0.0, bias=None,
              mask=None, kv_lens=None, sinks=None, dropout_p=0.0,
              dropout_seed=None, prefix_len=-1, q_pos_offset=0,
              k_pos_offset=0, cu_seqlens_q=None, cu_seqlens_k=None,
              threads=None) -> tuple:
        _, c, wl, wr, s = _api._options(None, causal, causal_align, window,
                                        scale, "bshd", None, None)
        dropout_p = float(dropout_p)
        if not 0.0 <= dropout_p < 1.0:
            raise ValueError("attn: dropout_p must be in [0, 1), got %r" %
                             (dropout_p,))
        if dropout_seed is None:
            dropout_seed = (int(np.random.default_rng().integers(0, 2**62))
                            if dropout_p > 0 else 0)
        t = self.threads if threads is None else int(threads)
        return (c, wl, wr, s, float(softcap), bias, mask,
                _api._vec(kv_lens, False, "kv_lens"),
                _api._vec(sinks, True, "sinks"), dropout_p,
                int(dropout_seed) & (2**64 - 1),
                -1 if prefix_len is None else int(prefix_len),
                int(q_pos_offset), int(k_pos_offset),
                _api._vec(cu_seqlens_q, False, "cu_seqlens_q"),
                _api._vec(cu_seqlens_k, False, "cu_seqlens_k"), t)

    def _out_shape(self, x, width):
        sh = _api._shape(x)
        return sh[:-1] + (width,)

    def _fwd(self, x, kv, value, opts, out, activations):
        _api._ext.layer(_OP_FORWARD, self._h, x, kv, value, out, opts,
                        activations)

    def _bwd(self, x, kv, value, dout, dx, dkv, dvalue, opts, activations,
             dsinks=None):
        _api._ext.layer(_OP_BACKWARD, self._h, x, kv, value, dout, dx, dkv,
                        dvalue, opts, activations, dsinks)

    def _sizes(self, x, kv, value, opts) -> Tuple[int, int]:
        return _api._ext.layer(_OP_SIZES, self._h, x, kv, value, opts)

    def forward(self, x: ArrayLike, kv: Optional[ArrayLike] = None,
                value: Optional[ArrayLike] = None, *, causal: bool = False,
                causal_align: str = "bottom_right",
                window: Optional[Tuple[int, int]] = (-1, -1),
                scale: Optional[float] = None, softcap: float = 0.0,
                bias: Optional[ArrayLike] = None,
                mask: Optional[ArrayLike] = None,
                kv_lens: Optional[ArrayLike] = None,
                sinks: Optional[ArrayLike] = None, dropout_p: float = 0.0,
                dropout_seed: Optional[int] = None, prefix_len: int = -1,
                q_pos_offset: int = 0, k_pos_offset: int = 0,
                cu_seqlens_q: Optional[ArrayLike] = None,
                cu_seqlens_k: Optional[ArrayLike] = None,
                out: Optional[ArrayLike] = None,
                threads: Optional[int] = None) -> ArrayLike:
        """``out = attention(x Wqᵀ, kv Wkᵀ, value Wvᵀ) Woᵀ`` (+ biases and
        positions): x [batch, seq_q, d_model] (or [seq_q, d_model]) float32,
        numpy or a torch CPU tensor; cross layers take kv [batch, seq_k,
        kdim] and optionally value [batch, seq_k, vdim]. Every option of
        :func:`attn.forward` applies to the attention (bias/mask
        [b|1, heads|1, seq_q|1, seq_k|1]; kv_lens [batch] for padded keys;
        cu_seqlens for packed sequences with batch 1). Returns out
        [..., d_out] (the kind of x), and keeps what :meth:`backward`
        needs (the inputs, by reference: do not modify them in between)."""
        x, kv, value = _contig(x), _contig(kv), _contig(value)
        opts = self._opts(causal, causal_align, window, scale, softcap, bias,
                          mask, kv_lens, sinks, dropout_p, dropout_seed,
                          prefix_len, q_pos_offset, k_pos_offset,
                          cu_seqlens_q, cu_seqlens_k, threads)
        if out is None:
            out = _api._empty(x, self._out_shape(x, self.d_out), True)
        self._saved = None
        self._fwd(x, kv, value, opts, out, None)
        self._saved = (x, kv, value, opts)
        return out

    __call__ = forward

    def backward(self, dout: ArrayLike, *, dx: Optional[ArrayLike] = None,
                 dkv: Optional[ArrayLike] = None,
                 dvalue: Optional[ArrayLike] = None,
                 dsinks: Optional[ArrayLike] = None):
        """Gradients of the last :meth:`forward`: ADDS dL/dparam into
        :meth:`gradients` (PyTorch's .grad) and returns the input gradients
        (overwritten, or written into dx=, dkv=, dvalue=): dx for
        self-attention, (dx, dkv) for cross, (dx, dkv, dvalue) with a value
        input. dsinks= (with sinks): dL/dsinks written there."""
        if self._saved is None:
            raise RuntimeError("attn: Layer.backward needs a forward first "
                               "(the last forward failed or there was none)")
        x, kv, value, opts = self._saved
        dout = _contig(dout)
        if dx is None:
            dx = _api._empty(x, _api._shape(x), True)
        if self.cross and dkv is None:
            dkv = _api._empty(kv, _api._shape(kv), True)
        if value is not None and dvalue is None:
            dvalue = _api._empty(value, _api._shape(value), True)
        self._bwd(x, kv, value, dout, dx, dkv, dvalue, opts, None, dsinks)
        if not self.cross:
            return dx
        return (dx, dkv) if value is None else (dx, dkv, dvalue)

    def buffer_sizes(self, x: ArrayLike, kv: Optional[ArrayLike] = None,
                     value: Optional[ArrayLike] = None,
                     **options) -> Tuple[int, int]:
        """(activation bytes, workspace bytes) of a forward + backward with
        these inputs and options (attn_layer_buffer_sizes)."""
        return self._sizes(_contig(x), _contig(kv), _contig(value),
                           self._opts(**options))

    # --- decoding ----------------------------------------------------------
    def make_cache(self, num_seqs: int, capacity: int, *,
                   dtype: str = "float32", page_size: int = 0) -> KVCache:
        """An attn.KVCache shaped for this layer's decode (heads_kv,
        head_dim, head_dim_v; no rope of its own: the layer rotates)."""
        return KVCache(num_seqs, self.kv_heads, self.head_dim, capacity,
                       dtype=dtype, page_size=page_size,
                       head_dim_v=self.head_dim_v)

    def _check_cache(self, cache: KVCache):
        if self.cross:
            raise ValueError(
                "attn: Layer.decode needs a self-attention layer (the keys "
                "of cross-attention do not grow token by token: run forward "
                "on the encoder's output)")
        if not isinstance(cache, KVCache):
            raise TypeError("attn: cache must be an attn.KVCache")
        if cache._rope is not None:
            raise ValueError(
                "attn: Layer.decode rotates keys with the layer's own RoPE "
                "(positions='rope'): make the KVCache without rope= "
                "(Layer.make_cache does)")
        return cache._desc()

    def decode(self, x: ArrayLike, cache: KVCache, *, causal: bool = True,
               window: Optional[Tuple[int, int]] = (-1, -1),
               scale: Optional[float] = None, softcap: float = 0.0,
               sinks: Optional[ArrayLike] = None,
               out: Optional[ArrayLike] = None,
               threads: Optional[int] = None) -> ArrayLike:
        """attn_layer_decode: x [num_seqs, t, d_model] are the next t
        tokens of each of the cache's sequences; their keys and values are
        projected (rotated) and appended to cache (seq_lens advances), and
        their queries attend to everything cached (bottom-right causal
        within the chunk). Token i of sequence s sits at position
        seq_lens[s] + i. Self-attention layers; forward only."""
        desc = self._check_cache(cache)
        x = _contig(x)
        opts = self._opts(causal, "bottom_right", window, scale, softcap,
                          sinks=sinks, threads=threads)
        if out is None:
            out = _api._empty(x, self._out_shape(x, self.d_out), True)
        _api._ext.layer(_OP_DECODE, self._h, desc, x, out, opts)
        return out

    def decode_workspace_size(self, x: ArrayLike, cache: KVCache,
                              **options) -> int:
        """Bytes the decode of x into cache needs at most (every sequence
        at capacity): attn_layer_decode_workspace_size."""
        return _api._ext.layer(_OP_DECODE_WS, self._h,
                               self._check_cache(cache), _contig(x),
                               self._opts(**options))
