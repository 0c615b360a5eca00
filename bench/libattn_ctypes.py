"""Minimal ctypes binding of libattn's forward call (include/attn.h).

Only what the scripts in bench/ need: attn_tensor, attn_params,
attn_params_init_sized, attn_forward_sized, attn_backward_sized,
attn_strerror, attn_fma_peak_gflops, attn_version_string, attn_isa_best,
and for bench/decode.py attn_kv_cache, attn_kv_cache_attend_sized,
attn_kv_cache_append_sized and attn_read_bandwidth_gbps. The structures mirror attn.h field for field, in order; ctypes
applies the same natural alignment as the C compiler on x86-64 / AArch64
(enums are 4-byte ints, int64 and pointers 8-byte aligned).

    python3 bench/libattn_ctypes.py --check-layout [--cc cc]

compiles a tiny C program against include/attn.h that prints sizeof and every
offsetof, and compares them with this module's layout.
"""

import ctypes
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# enum attn_dtype
ATTN_DTYPE_F32 = 0
ATTN_DTYPE_BF16 = 1
ATTN_DTYPE_F16 = 2
ATTN_DTYPE_BOOL = 3
# enum attn_causal
ATTN_CAUSAL_NONE = 0
ATTN_CAUSAL_BOTTOM_RIGHT = 1
ATTN_CAUSAL_TOP_LEFT = 2
# enum attn_isa
ATTN_ISA_NAMES = {0: "auto", 1: "generic", 2: "avx2", 3: "avx512", 4: "avx512bf16",
                  5: "amxbf16"}

c_enum = ctypes.c_int  # C enums with small values: int on every ABI we target


class AttnTensor(ctypes.Structure):
    """typedef struct attn_tensor"""

    _fields_ = [
        ("data", ctypes.c_void_p),
        ("dtype", c_enum),
        ("shape", ctypes.c_int64 * 4),
        ("stride", ctypes.c_int64 * 4),
    ]


class AttnParams(ctypes.Structure):
    """typedef struct attn_params"""

    _fields_ = [
        # operands
        ("q", AttnTensor),
        ("k", AttnTensor),
        ("v", AttnTensor),
        ("o", AttnTensor),
        ("lse", ctypes.POINTER(ctypes.c_float)),
        # scores
        ("scale", ctypes.c_float),
        ("softcap", ctypes.c_float),
        ("alibi_slopes", ctypes.POINTER(ctypes.c_float)),
        ("bias", AttnTensor),
        # masks
        ("causal", c_enum),
        ("window_left", ctypes.c_int64),
        ("window_right", ctypes.c_int64),
        ("mask", AttnTensor),
        ("kv_lens", ctypes.POINTER(ctypes.c_int32)),
        # packed variable-length batches
        ("cu_seqlens_q", ctypes.POINTER(ctypes.c_int32)),
        ("cu_seqlens_k", ctypes.POINTER(ctypes.c_int32)),
        ("varlen_batch", ctypes.c_int64),
        # execution
        ("num_threads", ctypes.c_int),
        ("isa", c_enum),
        ("workspace", ctypes.c_void_p),
        ("workspace_size", ctypes.c_size_t),
        # diagnostics
        ("error_message", ctypes.c_char_p),
        ("error_message_size", ctypes.c_size_t),
        # backward (attn_backward)
        ("dout", AttnTensor),
        ("dq", AttnTensor),
        ("dk", AttnTensor),
        ("dv", AttnTensor),
        ("dbias", AttnTensor),
        # appended in 0.2: positions, prefix-LM, compiled mask
        ("q_pos_offset", ctypes.c_int64),
        ("k_pos_offset", ctypes.c_int64),
        ("q_pos_offsets", ctypes.POINTER(ctypes.c_int64)),
        ("k_pos_offsets", ctypes.POINTER(ctypes.c_int64)),
        ("prefix_len", ctypes.c_int64),
        ("compiled_mask", ctypes.c_void_p),
        # appended in 0.3: T5 relative-position bias
        ("rel_bias", ctypes.POINTER(ctypes.c_float)),
        ("rel_buckets", ctypes.c_int64),
        ("rel_max_distance", ctypes.c_int64),
        ("rel_bidirectional", ctypes.c_int),
        ("drel_bias", ctypes.POINTER(ctypes.c_float)),
        # appended in 0.4: sinks and dropout
        ("sinks", ctypes.POINTER(ctypes.c_float)),
        ("dsinks", ctypes.POINTER(ctypes.c_float)),
        ("dropout_p", ctypes.c_float),
        ("dropout_seed", ctypes.c_uint64),
        # appended in 0.5: sparse patterns and user functions
        ("global_idx", ctypes.POINTER(ctypes.c_int32)),
        ("global_count", ctypes.c_int64),
        ("sparse_kind", ctypes.c_int),
        ("sparse_l", ctypes.c_int64),
        ("sparse_c", ctypes.c_int64),
        ("block_mask", AttnTensor),
        ("block_q", ctypes.c_int64),
        ("block_k", ctypes.c_int64),
        ("score_mod", ctypes.c_void_p),
        ("score_mod_grad", ctypes.c_void_p),
        ("mask_mod", ctypes.c_void_p),
        ("mask_tile", ctypes.c_void_p),
        ("mod_by_head", ctypes.c_int),
        ("mod_user", ctypes.c_void_p),
    ]


class AttnKvCache(ctypes.Structure):
    """typedef struct attn_kv_cache (0.3)"""

    _fields_ = [
        ("dtype", c_enum),
        ("num_seqs", ctypes.c_int64),
        ("heads_kv", ctypes.c_int64),
        ("head_dim", ctypes.c_int64),
        ("head_dim_v", ctypes.c_int64),
        ("capacity", ctypes.c_int64),
        ("k", ctypes.c_void_p),
        ("v", ctypes.c_void_p),
        ("seq_lens", ctypes.POINTER(ctypes.c_int32)),
        ("page_size", ctypes.c_int64),
        ("num_pages", ctypes.c_int64),
        ("blocks_per_seq", ctypes.c_int64),
        ("block_table", ctypes.POINTER(ctypes.c_int32)),
        ("error_message", ctypes.c_char_p),
        ("error_message_size", ctypes.c_size_t),
    ]


def find_library(build_dir=None):
    """Path of libattn.so in build_dir (default <repo>/build)."""
    build_dir = build_dir or os.path.join(ROOT, "build")
    for name in ("libattn.so", "libattn.so.0", "libattn.dylib"):
        p = os.path.join(build_dir, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(
        "libattn.so not found in %s: build first "
        "(cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j2)"
        % build_dir
    )


class LibAttn:
    """The loaded shared library with typed entry points."""

    def __init__(self, path=None):
        self.path = path or find_library()
        lib = ctypes.CDLL(self.path)
        self.lib = lib
        lib.attn_version_string.restype = ctypes.c_char_p
        lib.attn_version_string.argtypes = []
        lib.attn_strerror.restype = ctypes.c_char_p
        lib.attn_strerror.argtypes = [c_enum]
        # The sized entry points (attn.h, "ABI"): this module's struct is
        # this release's, so it passes its own size like the header does. A
        # 0.1 library has only the unsuffixed symbols, which read the 0.1
        # prefix of the struct: used, with the size dropped, for baselines.
        self.sized = hasattr(lib, "attn_forward_sized")
        self._init = getattr(lib, "attn_params_init" + ("_sized" if self.sized else ""))
        self._init.restype = None
        self._fwd = getattr(lib, "attn_forward" + ("_sized" if self.sized else ""))
        self._bwd = getattr(lib, "attn_backward" + ("_sized" if self.sized else ""))
        for fn in (self._fwd, self._bwd):
            fn.restype = c_enum
        lib.attn_fma_peak_gflops.restype = c_enum
        lib.attn_fma_peak_gflops.argtypes = [
            ctypes.c_int,
            ctypes.c_double,
            ctypes.POINTER(ctypes.c_double),
        ]
        lib.attn_isa_best.restype = c_enum
        lib.attn_isa_best.argtypes = []
        self.has_cache = hasattr(lib, "attn_kv_cache_attend_sized")
        # A 0.2 library knows attn_params up to rel_bias (ATTN_PARAMS_SIZE_0_2)
        # and answers ATTN_ERR_ABI to a larger size: pass what it knows.
        self.params_size = (ctypes.sizeof(AttnParams) if self.has_cache
                            else AttnParams.rel_bias.offset)
        if self.has_cache:
            lib.attn_kv_cache_attend_sized.restype = c_enum
            lib.attn_kv_cache_append_sized.restype = c_enum
            lib.attn_read_bandwidth_gbps.restype = c_enum
            lib.attn_read_bandwidth_gbps.argtypes = [
                ctypes.c_int,
                ctypes.c_double,
                ctypes.POINTER(ctypes.c_double),
            ]

    def version(self):
        return self.lib.attn_version_string().decode()

    def isa_best(self):
        return ATTN_ISA_NAMES.get(self.lib.attn_isa_best(), "?")

    def fma_peak_gflops(self, threads, seconds=0.5):
        out = ctypes.c_double(0.0)
        st = self.lib.attn_fma_peak_gflops(threads, seconds, ctypes.byref(out))
        if st != 0:
            raise RuntimeError("attn_fma_peak_gflops: " + self.strerror(st))
        return out.value

    def read_bandwidth_gbps(self, threads, seconds=1.0):
        """attn_read_bandwidth_gbps: median memory read bandwidth, GB/s."""
        out = ctypes.c_double(0.0)
        st = self.lib.attn_read_bandwidth_gbps(threads, seconds, ctypes.byref(out))
        if st != 0:
            raise RuntimeError("attn_read_bandwidth_gbps: " + self.strerror(st))
        return out.value

    @staticmethod
    def make_cache(k, v, seq_lens, dtype=ATTN_DTYPE_F32, block_table=None,
                   page_size=0):
        """attn_kv_cache over numpy arrays (kept alive by the struct):
        contiguous k, v [num_seqs, capacity, heads_kv, dim] or paged
        [num_pages, page_size, heads_kv, dim] with block_table int32
        [num_seqs, blocks_per_seq]; f32 arrays, or uint16 holding bf16/f16
        (dtype says which); seq_lens int32 [num_seqs]."""
        c = AttnKvCache()
        c.dtype = dtype
        c.num_seqs = seq_lens.shape[0]
        c.heads_kv = k.shape[2]
        c.head_dim = k.shape[3]
        c.head_dim_v = v.shape[3]
        c.k = k.ctypes.data
        c.v = v.ctypes.data
        c.seq_lens = seq_lens.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        if page_size:
            c.page_size = page_size
            c.num_pages = k.shape[0]
            c.blocks_per_seq = block_table.shape[1]
            c.block_table = block_table.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        else:
            c.capacity = k.shape[1]
        c._keep = (k, v, seq_lens, block_table)
        return c

    def kv_cache_attend(self, cache, p, ctx=None):
        """attn_kv_cache_attend: p has q, o (and options); k, v unset."""
        st = self.lib.attn_kv_cache_attend_sized(
            ctx, ctypes.byref(cache), ctypes.c_size_t(ctypes.sizeof(cache)),
            ctypes.byref(p), ctypes.c_size_t(self.params_size), None,
            ctypes.c_size_t(0))
        if st != 0:
            msg = p._errbuf.value.decode(errors="replace") if hasattr(p, "_errbuf") else ""
            raise RuntimeError("attn_kv_cache_attend: %s (%s)" % (self.strerror(st), msg))

    def strerror(self, status):
        s = self.lib.attn_strerror(status)
        return s.decode() if s else "status %d" % status

    @staticmethod
    def tensor_f32(arr):
        """attn_tensor view of a float32 numpy array [batch, seq, heads, dim]
        (any strides, in elements; the array must stay alive)."""
        if arr.dtype.itemsize != 4 or arr.dtype.kind != "f" or arr.ndim != 4:
            raise ValueError("need a 4-D float32 array")
        return LibAttn.tensor_of(arr, ATTN_DTYPE_F32)

    @staticmethod
    def tensor_of(arr, dtype):
        """attn_tensor view of a 4-D numpy array of the element size of
        dtype: float32 for ATTN_DTYPE_F32, uint16 holding bf16 or f16 bits."""
        es = 4 if dtype == ATTN_DTYPE_F32 else 2
        if arr.dtype.itemsize != es or arr.ndim != 4:
            raise ValueError("need a 4-D array of %d-byte elements" % es)
        t = AttnTensor()
        t.data = arr.ctypes.data
        t.dtype = dtype
        for i in range(4):
            t.shape[i] = arr.shape[i]
            if arr.strides[i] % es:
                raise ValueError("stride not a multiple of the element size")
            t.stride[i] = arr.strides[i] // es
        return t

    def make_params(self, q, k, v, o, causal=ATTN_CAUSAL_NONE, num_threads=0,
                    scale=0.0):
        """attn_params for f32 arrays q, k, v, o in [batch, seq, heads, dim]
        (torch's [batch, heads, seq, dim] works too: pass a transposed view);
        k and v may be None (unset: a KV cache supplies them)."""
        p = AttnParams()
        self._call(self._init, p)
        p.q = self.tensor_f32(q)
        if k is not None:
            p.k = self.tensor_f32(k)
            p.v = self.tensor_f32(v)
        p.o = self.tensor_f32(o)
        p.causal = causal
        p.num_threads = num_threads
        p.scale = scale
        # keep a message buffer alive with the params
        p._errbuf = ctypes.create_string_buffer(512)
        p.error_message = ctypes.cast(p._errbuf, ctypes.c_char_p)
        p.error_message_size = 512
        return p

    def _call(self, fn, *args):
        """fn(args..., &p[, sizeof p]): the last arg is the params struct."""
        *rest, p = args
        if self.sized:
            return fn(*rest, ctypes.byref(p), ctypes.c_size_t(self.params_size))
        return fn(*rest, ctypes.byref(p))

    def backward(self, p):
        st = self._call(self._bwd, None, p)
        if st != 0:
            raise RuntimeError("attn_backward: " + self.strerror(st))

    def forward(self, p):
        st = self._call(self._fwd, None, p)
        if st != 0:
            msg = p._errbuf.value.decode(errors="replace") if hasattr(p, "_errbuf") else ""
            raise RuntimeError("attn_forward: %s%s" % (self.strerror(st),
                                                        (" (" + msg + ")") if msg else ""))


# ---------------------------------------------------------------------------
# Layout check against the real header
# ---------------------------------------------------------------------------
def _c_layout(cc="cc"):
    fields_t = [f for f, _ in AttnTensor._fields_]
    fields_p = [f for f, _ in AttnParams._fields_]
    fields_c = [f for f, _ in AttnKvCache._fields_]
    lines = ['#include <attn.h>', '#include <stddef.h>', '#include <stdio.h>',
             'int main(void) {',
             '  printf("attn_tensor sizeof %zu\\n", sizeof(attn_tensor));',
             '  printf("attn_params sizeof %zu\\n", sizeof(attn_params));',
             '  printf("attn_kv_cache sizeof %zu\\n", sizeof(attn_kv_cache));']
    for f in fields_t:
        lines.append('  printf("attn_tensor %s %%zu\\n", offsetof(attn_tensor, %s));' % (f, f))
    for f in fields_p:
        lines.append('  printf("attn_params %s %%zu\\n", offsetof(attn_params, %s));' % (f, f))
    for f in fields_c:
        lines.append('  printf("attn_kv_cache %s %%zu\\n", offsetof(attn_kv_cache, %s));' % (f, f))
    lines += ['  return 0;', '}']
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "layout.c")
        exe = os.path.join(d, "layout")
        with open(src, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        subprocess.check_call([cc, "-std=c11", "-I", os.path.join(ROOT, "include"),
                               src, "-o", exe])
        out = subprocess.check_output([exe]).decode()
    return {tuple(l.split()[:2]): int(l.split()[2]) for l in out.splitlines()}


def _py_layout():
    r = {("attn_tensor", "sizeof"): ctypes.sizeof(AttnTensor),
         ("attn_params", "sizeof"): ctypes.sizeof(AttnParams),
         ("attn_kv_cache", "sizeof"): ctypes.sizeof(AttnKvCache)}
    for name, cls in (("attn_tensor", AttnTensor), ("attn_params", AttnParams),
                      ("attn_kv_cache", AttnKvCache)):
        for f, _ in cls._fields_:
            r[(name, f)] = getattr(cls, f).offset
    return r


def check_layout(cc="cc", verbose=True):
    """True when every sizeof/offsetof matches the C compiler's."""
    c = _c_layout(cc)
    py = _py_layout()
    ok = True
    for key in sorted(c):
        if c[key] != py.get(key):
            ok = False
            print("MISMATCH %s.%s: C %d, ctypes %s" % (key[0], key[1], c[key], py.get(key)))
        elif verbose:
            print("ok %-12s %-20s %4d" % (key[0], key[1], c[key]))
    if set(c) != set(py):
        ok = False
        print("field sets differ:", set(c) ^ set(py))
    print("layout", "matches" if ok else "DOES NOT match", "include/attn.h (%d checks)" % len(c))
    return ok


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check-layout", action="store_true")
    ap.add_argument("--cc", default=os.environ.get("CC", "cc"))
    a = ap.parse_args()
    if a.check_layout:
        sys.exit(0 if check_layout(a.cc) else 1)
    ap.print_help()
