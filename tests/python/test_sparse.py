"""attn.forward / attn.backward with the sparse patterns (global_idx,
sparse=, block_mask=) against the float64 oracle given the same pattern as
a dense boolean mask, built here from the patterns' definitions (issue 8),
so nothing is shared with the library's tile logic."""

import numpy as np
import pytest

import attn
import oracle
from helpers import close, reference


def dense_mask(sq, sk, *, window=(-1, -1), global_idx=None, sparse=None,
               block=None, causal=False):
    """bool [sq, sk]: what each query may see, from the definitions."""
    i = np.arange(sq)[:, None]
    j = np.arange(sk)[None, :]
    p = i + sk - sq  # bottom-right position of the query
    m = np.ones((sq, sk), bool)
    if causal:
        m &= j <= p
    wl, wr = window
    win = np.ones((sq, sk), bool)
    if wl >= 0:
        win &= j >= p - wl
    if wr >= 0:
        win &= j <= p + wr
    if global_idx is not None:
        g = np.zeros(max(sq, sk) + 1, bool)
        g[np.asarray(global_idx)] = True
        win |= g[p.clip(0)] & (p >= 0) | g[j]
    m &= win
    if sparse is not None:
        kind, L = sparse[0], sparse[1]
        m &= j <= p
        if kind == "strided":
            m &= (p - L <= j) | ((p - j) % L == 0)
        else:
            C = sparse[2]
            m &= (j // L == p // L) | (j % L >= L - C)
    if block is not None:
        bm, bq, bk = block
        m &= bm[i // bq, j // bk]
    return m


CASES = [
    # (sq, sk, options)
    (97, 97, dict(sparse=("strided", 8))),
    (65, 130, dict(sparse=("strided", 16))),
    (128, 128, dict(sparse=("fixed", 16, 4))),
    (48, 112, dict(sparse=("fixed", 16, 3))),
    (63, 63, dict(sparse=("fixed", 7, 2))),  # fixed: not a multiple
    (100, 100, dict(global_idx=[0, 37, 99], window=(5, 5))),
    (49, 80, dict(global_idx=[3], window=(8, 0), causal=True)),
    (90, 110, dict(block=(7, 13))),
    (64, 64, dict(block=(16, 16), causal=True)),
]


def _problem(rng, sq, sk, hq=4, hk=2, d=32):
    q = rng.standard_normal((2, sq, hq, d), dtype=np.float32)
    k = rng.standard_normal((2, sk, hk, d), dtype=np.float32)
    v = rng.standard_normal((2, sk, hk, d), dtype=np.float32)
    return q, k, v


def _kwargs(rng, sq, sk, opts):
    """attn kwargs and the dense mask for one case."""
    kw, mk = {}, {}
    if "sparse" in opts:
        s = opts["sparse"]
        kw["sparse"] = ("%s:%d" % s if s[0] == "strided" else "%s:%d,%d" % s)
        mk["sparse"] = s
    if "global_idx" in opts:
        kw["global_idx"] = np.array(opts["global_idx"], np.int32)
        mk["global_idx"] = opts["global_idx"]
    if "window" in opts:
        kw["window"] = mk["window"] = opts["window"]
    if opts.get("causal"):
        kw["causal"] = mk["causal"] = True
    if "block" in opts:
        bq, bk = opts["block"]
        bm = rng.random((-(-sq // bq), -(-sk // bk))) < 0.4
        bm[0, 0] = True
        kw["block_mask"] = bm
        kw["block_size"] = (bq, bk)
        mk["block"] = (bm, bq, bk)
    return kw, dense_mask(sq, sk, **mk)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_sparse_forward_backward(case):
    sq, sk, opts = CASES[case]
    rng = np.random.default_rng(300 + case)
    q, k, v = _problem(rng, sq, sk)
    kw, m = _kwargs(rng, sq, sk, opts)
    o, lse = attn.forward(q, k, v, return_lse=True, **kw)
    op = dict(mask=m[None, None])
    o64, l64, o32, l32 = reference(q, k, v, op)
    close(o, o64, o32)
    close(lse, l64, l32)
    do = rng.standard_normal(o.shape, dtype=np.float32)
    dq, dk, dv = attn.backward(do, q, k, v, o, lse, **kw)
    ref = oracle.backward(do, q, k, v, **op)
    for got, want in zip((dq, dk, dv), ref):
        terms = q.shape[1] + k.shape[1] + q.shape[3]
        tol = 64 * 2.0**-24 * terms * max(1.0, np.abs(want).max())
        np.testing.assert_allclose(got, want, rtol=0, atol=tol)


def test_sparse_torch_inputs():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    q, k, v = _problem(rng, 70, 70)
    o_np = attn.forward(q, k, v, sparse="strided:9")
    o_t = attn.forward(torch.from_numpy(q), torch.from_numpy(k),
                       torch.from_numpy(v), sparse=("strided", 9))
    np.testing.assert_array_equal(o_t.numpy(), o_np)


@pytest.mark.parametrize("bad, err", [
    (dict(sparse="dense:4"), ValueError),
    (dict(sparse="fixed:4"), ValueError),
    (dict(sparse="strided:x"), ValueError),
    (dict(block_mask=np.ones((2, 2), bool)), ValueError),  # no block_size
    (dict(block_size=4), ValueError),                     # no block_mask
    (dict(sparse="fixed:4,9"), attn.AttnError),           # C > L: the library
    (dict(global_idx=np.array([5, 3], np.int32)), attn.AttnError),  # order
    (dict(global_idx=np.array([1.5], np.float32)), ValueError),  # not int
])
def test_sparse_bad_options(bad, err):
    rng = np.random.default_rng(1)
    q, k, v = _problem(rng, 16, 16)
    with pytest.raises(err):
        attn.forward(q, k, v, **bad)
