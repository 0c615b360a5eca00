"""The binding itself: zero copy, out=, every error path, threads, the
command line."""

import os
import subprocess
import sys
import threading
import time
import tracemalloc

import numpy as np
import pytest

import attn

torch = pytest.importorskip("torch")


def qkv(rng, b=1, sq=9, sk=11, hq=4, hk=2, d=16, dtype=np.float32):
    return (rng.standard_normal((b, sq, hq, d)).astype(dtype),
            rng.standard_normal((b, sk, hk, d)).astype(dtype),
            rng.standard_normal((b, sk, hk, d)).astype(dtype))


# --------------------------------------------------------------- zero copy
def test_info_sees_callers_pointers(rng):
    """What the C call reads is the caller's memory: same data pointer,
    same strides, for numpy (buffer protocol), torch (data_ptr/stride) and
    DLPack objects; for views too."""
    a = rng.standard_normal((2, 8, 3, 16)).astype(np.float32)
    view = a[:, ::2, :, 4:12]
    ptr, dt, shape, strides = attn._ext.info(view)
    assert ptr == view.__array_interface__["data"][0]
    assert dt == "float32" and shape == view.shape
    assert strides == tuple(s // 4 for s in view.strides)
    t = torch.from_numpy(a).transpose(1, 2)
    ptr, dt, shape, strides = attn._ext.info(t)
    assert ptr == t.data_ptr() and strides == t.stride() and shape == t.shape
    tb = torch.zeros(3, 5, dtype=torch.bfloat16)[:, 1:]
    ptr, dt, shape, strides = attn._ext.info(tb)
    assert (ptr, dt, strides) == (tb.data_ptr(), "bfloat16", (5, 1))

    class DL:  # only __dlpack__: the generic path
        def __init__(self, t):
            self.t = t

        def __dlpack__(self, **kw):
            return self.t.__dlpack__(**kw)

        def __dlpack_device__(self):
            return self.t.__dlpack_device__()

    ptr, dt, shape, strides = attn._ext.info(DL(t))
    assert ptr == t.data_ptr() and strides == t.stride()


def test_out_written_in_place_no_allocation(rng):
    """With out= and lse= given, the call writes the caller's arrays and
    allocates nothing the size of an operand (numpy reports its
    allocations to tracemalloc)."""
    q, k, v = qkv(rng, sq=256, sk=256, d=64)
    out = np.zeros((1, 256, 4, 64), np.float32)
    lse = np.zeros((1, 4, 256), np.float32)
    attn.forward(q, k, v, out=out, lse=lse)  # warm up (pool, context)
    out[:] = 0
    tracemalloc.start()
    r = attn.forward(q, k, v, out=out, lse=lse, causal=True)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert r[0] is out and r[1] is lse
    assert peak < q.nbytes // 8, peak
    assert np.abs(out).sum() > 0
    ref, lref = attn.forward(q, k, v, causal=True, return_lse=True)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(lse, lref)


def test_torch_out_and_grads_in_place(rng):
    q, k, v = (torch.from_numpy(x) for x in qkv(rng))
    out = torch.empty(1, 9, 4, 16)
    o, lse = attn.forward(q, k, v, out=out, return_lse=True)
    assert o is out
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    got = attn.backward(torch.ones_like(o), q, k, v, o, lse, dq=dq, dk=dk,
                        dv=dv)
    assert got[0] is dq and got[1] is dk and got[2] is dv
    assert type(got[0]) is torch.Tensor


def test_sdpa_reads_strided_torch_inputs():
    """attn.torch.sdpa hands q/k/v to C as they are: no contiguous copy
    (the pointers the C side reads are the caller's)."""
    import attn.torch as at
    seen = []
    real = attn._ext.run

    def spy(*args):
        seen.append([a.data_ptr() if isinstance(a, torch.Tensor) else None
                     for a in args[2:5]])
        return real(*args)

    q = torch.randn(2, 9, 4, 16).transpose(1, 2)  # bhsd view of bshd
    k = torch.randn(2, 9, 4, 16).transpose(1, 2)
    v = torch.randn(2, 9, 4, 16).transpose(1, 2)
    attn._ext.run = spy
    try:
        at.scaled_dot_product_attention(q, k, v)
    finally:
        attn._ext.run = real
    assert seen == [[q.data_ptr(), k.data_ptr(), v.data_ptr()]]


# ------------------------------------------------------------- error paths
def err(exc, match, fn, *a, **kw):
    with pytest.raises(exc, match=match) as e:
        fn(*a, **kw)
    return e.value


def test_errors_from_the_library(rng):
    """Library statuses arrive as AttnError subclasses (ValueError or
    TypeError too) with the library's precise message."""
    q, k, v = qkv(rng)
    e = err(ValueError, r"ATTN_ERR_HEAD_RATIO: .*4.*3", attn.forward, q,
            np.concatenate([k, k[:, :, :1]], 2),
            np.concatenate([v, v[:, :, :1]], 2))
    assert isinstance(e, attn.AttnError) and e.status == -3
    err(attn.AttnValueError, "HEAD_DIM", attn.forward, *qkv(rng, d=300))
    err(attn.AttnValueError, "INVALID_SCALE", attn.forward, q, k, v,
        scale=float("nan"))
    err(attn.AttnValueError, "INVALID_SOFTCAP", attn.forward, q, k, v,
        softcap=-1.0)
    err(attn.AttnValueError, "INVALID_WINDOW", attn.forward, q, k, v,
        window=(-3, 0))
    err(attn.AttnValueError, "INVALID_SEQLENS", attn.forward, q, k, v,
        kv_lens=np.array([99], np.int32))
    err(attn.AttnValueError, "INVALID_SHAPE", attn.forward, q, k, v[:, :5])
    err(attn.AttnValueError, "OVERLAP", attn.forward, q, k, v, out=q)
    err(attn.AttnValueError, "INVALID_ARGUMENT", attn.forward, q, k, v,
        dropout_p=1.5)
    err(attn.AttnValueError, "INVALID_SEQLENS", attn.forward,
        q.reshape(9, 4, 16), k.reshape(11, 2, 16), v.reshape(11, 2, 16),
        cu_seqlens_q=np.array([0, 5, 4], np.int32),
        cu_seqlens_k=np.array([0, 5, 11], np.int32))
    err(attn.AttnValueError, "INVALID_ARGUMENT", attn.forward, q, k, v,
        sinks=np.array([np.nan] * 4, np.float32))
    # bias/mask of the wrong size for the problem
    err(attn.AttnValueError, "INVALID_SHAPE", attn.forward, q, k, v,
        bias=np.zeros((1, 1, 9, 7), np.float32))
    o, lse = attn.forward(q, k, v, return_lse=True)
    err(attn.AttnValueError, "INVALID_SHAPE", attn.backward, o[:, :3], q, k,
        v, o, lse)


def test_errors_from_the_binding(rng):
    q, k, v = qkv(rng)
    err(TypeError, "format 'd'", attn.forward, q.astype(np.float64), k, v)
    err(TypeError, "must be float32, float16 or bfloat16, not int32",
        attn.forward, q.astype(np.int32), k, v)
    err(TypeError, "expected a numpy array", attn.forward, [1.0], k, v)
    err(TypeError, "torch.float64", attn.forward,
        torch.zeros(1, 9, 4, 16, dtype=torch.float64), k, v)
    err(ValueError, "4-D", attn.forward, q[0], k, v)
    err(ValueError, "layout must be", attn.forward, q, k, v, layout="sbhd")
    err(ValueError, "causal_align", attn.forward, q, k, v, causal=True,
        causal_align="top")
    err(TypeError, "window must be a pair", attn.forward, q, k, v, window=3)
    err(ValueError, "scale must not be 0", attn.forward, q, k, v, scale=0)
    err(ValueError, "device meta", attn.forward,
        torch.empty(1, 9, 4, 16, device="meta"), k, v)
    if torch.cuda.is_available():  # pragma: no cover - CPU machines
        err(ValueError, "device cuda", attn.forward, torch.from_numpy(q).cuda(),
            k, v)
    err(ValueError, "layout torch.sparse_coo", attn.forward,
        torch.zeros(1, 9, 4, 16).to_sparse(), k, v)
    ro = np.zeros((1, 9, 4, 16), np.float32)
    ro.flags.writeable = False
    err(ValueError, "o is read-only", attn.forward, q, k, v, out=ro)
    err(ValueError, "alibi_slopes has 3 elements, expected 4", attn.forward,
        q, k, v, alibi_slopes=np.ones(3, np.float32))
    err(ValueError, "kv_lens has 2 elements, expected 1", attn.forward, q, k,
        v, kv_lens=[3, 4])
    err(ValueError, "does not fit in int32", attn.forward, q, k, v,
        kv_lens=[2**40])
    err(TypeError, "bias must be float32, not bool", attn.forward, q, k, v,
        bias=np.zeros((9, 11), bool))
    err(TypeError, "mask must be bool, not float32", attn.forward, q, k, v,
        mask=np.zeros((9, 11), np.float32))
    err(ValueError, "must have 1 to 4 axes", attn.forward, q, k, v,
        mask=np.zeros((1, 1, 1, 9, 11), bool))
    err(ValueError, "lse has 10 elements, expected 36", attn.forward, q, k,
        v, lse=np.zeros(10, np.float32))
    err(ValueError, "lse must be contiguous", attn.forward, q, k, v,
        lse=np.zeros((1, 4, 18), np.float32)[..., ::2])
    err(ValueError, "go together", attn.forward, q, k, v,
        cu_seqlens_q=np.array([0, 9], np.int32))
    err(ValueError, "batch axis of q must be 1", attn.forward,
        *qkv(rng, b=2), cu_seqlens_q=[0, 9], cu_seqlens_k=[0, 11])
    neg = q[:, ::-1]
    err(ValueError, "INVALID_STRIDE|negative", attn.forward, neg, k, v)
    o, lse = attn.forward(q, k, v, return_lse=True)
    err(ValueError, "needs dout, dq, dk, dv and lse", attn._ext.run, 1, 0,
        q, k, v, o, None, None, None, None, None, None, None, None, 0, -1, -1,
        0.0, 0.0, 0, 0.0, 0, o, None, None, None, None, None, None, 0)
    err(ValueError, "dbias needs bias", attn.backward, o, q, k, v, o, lse,
        dbias=np.zeros((9, 11), np.float32))
    err(ValueError, "dsinks has 2 elements", attn.backward, o, q, k, v, o,
        lse, dsinks=np.zeros(2, np.float32))
    err(ValueError, "at least one part", attn.merge, [], [])
    err(ValueError, "1 to 64 parts", attn._ext.merge, [o], [lse, lse], o,
        None, None, 0)


def test_torch_front_end_errors():
    import attn.torch as at
    q = torch.randn(1, 4, 5, 8)
    k = torch.randn(1, 2, 5, 8)
    err(ValueError, "enable_gqa", at.scaled_dot_product_attention, q, k, k)
    err(ValueError, "is_causal", at.scaled_dot_product_attention, q, q, q,
        attn_mask=torch.ones(5, 5, dtype=torch.bool), is_causal=True)
    err(ValueError, "same number of axes", at.scaled_dot_product_attention,
        q, q[0], q)
    err(TypeError, "bool or floating", at.scaled_dot_product_attention, q, q,
        q, attn_mask=torch.ones(5, 5, dtype=torch.int64))
    err(ValueError, "dropout_p", at.scaled_dot_product_attention, q, q, q,
        dropout_p=1.0)
    err(ValueError, "block_table", at.flash_attn_varlen_func, q[0], q[0],
        q[0], torch.tensor([0, 4], dtype=torch.int32),
        torch.tensor([0, 4], dtype=torch.int32), 4, 4,
        block_table=torch.zeros(1))


# ----------------------------------------------------------------- threads
def test_gil_released_during_compute(rng):
    """While one Python thread is inside a long libattn call, the main
    thread keeps running Python code (it could not if the GIL were held)."""
    q, k, v = qkv(rng, sq=1024, sk=1024, hq=4, hk=4, d=64)
    done = threading.Event()

    def work():
        # Calls for at least 0.3 s, whatever the CPU's speed: three calls
        # took 15 ms on a fast Xeon, too short a window under a loaded
        # ctest -j2 (86 ticks). With the GIL held the main thread could
        # tick only between calls (a few ms each: under 100 in 0.3 s).
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.3:
            attn.forward(q, k, v, threads=1)
        done.set()

    t = threading.Thread(target=work)
    ticks = 0
    t.start()
    time.sleep(0.01)
    while not done.is_set():
        ticks += 1
        time.sleep(0)
    t.join()
    assert ticks > 100, ticks


def test_threads_concurrent_results(rng):
    """Eight Python threads, each with its own problem and options, get the
    results of the same calls made one at a time."""
    probs = []
    for i in range(8):
        q, k, v = qkv(rng, sq=40 + i, sk=70 + 3 * i)
        probs.append((q, k, v, dict(causal=i % 2 == 0, threads=1 + i % 2)))
    serial = [attn.forward(q, k, v, **kw) for q, k, v, kw in probs]
    got = [None] * 8

    def work(i):
        q, k, v, kw = probs[i]
        for _ in range(5):
            got[i] = attn.forward(q, k, v, **kw)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for a, b in zip(got, serial):
        np.testing.assert_array_equal(a, b)


# -------------------------------------------------------------- the package
def test_python_m_attn_version():
    r = subprocess.run([sys.executable, "-m", "attn", "--version"],
                       capture_output=True, text=True, env=os.environ.copy())
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("attn %s (libattn %s" % (attn.__version__,
                                                        attn.library_version()))


def test_error_status_names():
    e = attn._errors.make(-11, "why")
    assert isinstance(e, TypeError) and str(e) == "ATTN_ERR_INVALID_DTYPE: why"
    assert isinstance(attn._errors.make(-13, "x"), MemoryError)
    assert isinstance(attn._errors.make(-18, "x"), RuntimeError)
