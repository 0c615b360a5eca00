"""attn.KVCache: a KV cache for decoding (``attn/kv_cache.h``), contiguous
or paged, whose storage is owned here as numpy arrays; append rotates the
new keys by RoPE on the way in, attend runs the split-KV decode kernel."""

from typing import Optional, Tuple, Union

import numpy as np

from . import _api

# storage dtype -> (attn_dtype, bytes per 32 values)
_DTYPES = {"float32": (0, 128), "bfloat16": (1, 64), "float16": (2, 64),
           "q8_0": (4, 34), "q4_0": (5, 18)}
_STYLES = {"half": 0, "interleaved": 1}
_SCALINGS = {None: 0, "none": 0, "linear": 1, "ntk": 2, "yarn": 3,
             "llama3": 4}


def _rope_tuple(rope: Optional[dict]):
    if rope is None:
        return None
    r = dict(base=10000.0, style="half", dims=0, scaling=None, factor=1.0,
             original_max_position=8192.0, low_freq_factor=1.0,
             high_freq_factor=4.0, beta_fast=32.0, beta_slow=1.0, mscale=0.0)
    unknown = set(rope) - set(r)
    if unknown:
        raise ValueError("attn: rope: unknown keys %s" % sorted(unknown))
    r.update(rope)
    if r["style"] not in _STYLES:
        raise ValueError("attn: rope style must be 'half' or 'interleaved'")
    if r["scaling"] not in _SCALINGS:
        raise ValueError("attn: rope scaling must be one of linear, ntk, "
                         "yarn, llama3")
    return (float(r["base"]), _STYLES[r["style"]], int(r["dims"]),
            _SCALINGS[r["scaling"]], float(r["factor"]),
            float(r["original_max_position"]), float(r["low_freq_factor"]),
            float(r["high_freq_factor"]), float(r["beta_fast"]),
            float(r["beta_slow"]), float(r["mscale"]))


class KVCache:
    """Keys and values of ``num_seqs`` sequences for decoding.

    ``KVCache(num_seqs, heads_kv, head_dim, capacity, dtype="float32",
    page_size=0, head_dim_v=None, rope=None)``: storage ``dtype`` float32,
    bfloat16, float16, q8_0 or q4_0 (the last two: head dims multiples of
    32); ``page_size > 0`` stores it in pages of that many tokens with a
    block table (vLLM's layout; here each sequence gets its own pages);
    ``rope`` a dict (``base``, ``style`` "half"/"interleaved", ``dims``,
    ``scaling`` linear/ntk/yarn/llama3, ``factor``, ...) rotates keys on
    append and queries on attend at their positions.

    ``append(k_new, v_new, n_new=None)``: k_new ``[num_seqs, t, heads_kv,
    head_dim]`` (float32/16, bf16 torch) added after each sequence's tokens
    (``n_new[s]`` of them when given). ``attend(q, ...)``: q ``[num_seqs,
    seq_q, heads_q, head_dim]`` against everything stored; the query rows
    are the last ``seq_q`` positions (causal bottom-right by default).
    ``seq_lens`` is the tokens stored per sequence (int32, may be edited
    to roll back)."""

    def __init__(self, num_seqs: int, heads_kv: int, head_dim: int,
                 capacity: int, *, dtype: str = "float32", page_size: int = 0,
                 head_dim_v: Optional[int] = None,
                 rope: Optional[dict] = None):
        if dtype not in _DTYPES:
            raise ValueError("attn: KVCache dtype must be one of %s" %
                             ", ".join(_DTYPES))
        self.dtype = dtype
        self._dt, per32 = _DTYPES[dtype]
        self.num_seqs, self.heads_kv = int(num_seqs), int(heads_kv)
        self.head_dim = int(head_dim)
        self.head_dim_v = int(head_dim_v or head_dim)
        self.capacity, self.page_size = int(capacity), int(page_size)
        if min(self.num_seqs, self.heads_kv, self.head_dim, self.capacity,
               self.head_dim_v) < 1 or self.page_size < 0:
            raise ValueError("attn: KVCache sizes must be positive")
        quant = self._dt >= 4
        for d in (self.head_dim, self.head_dim_v):
            if quant and d % 32:
                raise ValueError("attn: %s needs head dims that are "
                                 "multiples of 32" % dtype)

        def row_bytes(d):
            return d // 32 * per32 if quant else d * per32 // 32

        if self.page_size:
            self.blocks_per_seq = -(-self.capacity // self.page_size)
            self.num_pages = self.num_seqs * self.blocks_per_seq
            slots = self.num_pages * self.page_size
            self.block_table = np.arange(self.num_pages, dtype=np.int32
                                         ).reshape(self.num_seqs, -1)
        else:
            self.blocks_per_seq = self.num_pages = 0
            slots = self.num_seqs * self.capacity
            self.block_table = None
        self.k = np.zeros(slots * self.heads_kv * row_bytes(self.head_dim),
                          np.uint8)
        self.v = np.zeros(slots * self.heads_kv * row_bytes(self.head_dim_v),
                          np.uint8)
        self.seq_lens = np.zeros(self.num_seqs, np.int32)
        self._rope = _rope_tuple(rope)

    def _desc(self):
        return (self._dt, self.num_seqs, self.heads_kv, self.head_dim,
                self.head_dim_v, self.capacity if not self.page_size else 0,
                self.k, self.v, self.seq_lens, self.page_size,
                self.num_pages, self.blocks_per_seq, self.block_table)

    def reset(self) -> None:
        """Forget every token (the storage is kept)."""
        self.seq_lens[:] = 0

    def append(self, k_new, v_new, n_new=None) -> None:
        """Stores k_new, v_new ``[num_seqs, t, heads_kv, d]`` after each
        sequence's tokens (rotating the keys by the cache's RoPE)."""
        if n_new is not None:
            n_new = _api._vec(n_new, False, "n_new")
        _api._ext.cache(0, self._desc(), self._rope, k_new, v_new, n_new)

    def attend(self, q, *, causal: bool = True,
               causal_align: str = "bottom_right",
               window: Tuple[int, int] = (-1, -1),
               scale: Optional[float] = None, softcap: float = 0.0,
               sinks=None, out=None, return_lse: bool = False,
               threads: Optional[int] = None):
        """Attention of q ``[num_seqs, seq_q, heads_q, d]`` over the stored
        keys (query i of sequence s sits at ``seq_lens[s] - seq_q + i``).
        Returns out (like q), or ``(out, lse)`` with return_lse."""
        lay, c, wl, wr, s = _api._options(q, causal, causal_align, window,
                                          scale, "bshd", None, None)
        sh = _api._shape(q)
        if out is None:
            out = _api._empty(q, sh[:-1] + (self.head_dim_v,))
        lse = (_api._empty(q, (sh[0], sh[2], sh[1]), True) if return_lse
               else None)
        if sinks is not None:
            sinks = _api._vec(sinks, True, "sinks")
        _api._ext.cache(1, self._desc(), self._rope, q, out, lse, c, wl, wr,
                        s, float(softcap), sinks,
                        0 if threads is None else int(threads))
        return (out, lse) if return_lse else out
