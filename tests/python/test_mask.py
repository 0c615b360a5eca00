"""attn.compile_mask / attn.Mask (attn_mask_compile_sized): a mask
compiled once gives, in attn.forward and attn.backward, bitwise the
results of the same call with the options passed directly, and those
match the float64 oracle; tile_counts against a brute-force count of the
tiles' visible elements; shapes and options checked; freeing and
closing."""

import gc

import numpy as np
import pytest

import attn
import oracle
from helpers import close

TQ, TK = 48, 64  # ATTN_TILE_Q, ATTN_TILE_K


def _qkv(rng, b=2, sq=100, sk=130, hq=4, hk=2, d=32):
    q = rng.standard_normal((b, sq, hq, d)).astype(np.float32)
    k = rng.standard_normal((b, sk, hk, d)).astype(np.float32)
    v = rng.standard_normal((b, sk, hk, d)).astype(np.float32)
    return q, k, v


def _options(rng, name, b, sq, sk):
    if name == "causal":
        return dict(causal=True)
    if name == "causal_top_left":
        return dict(causal=True, causal_align="top_left")
    if name == "window_kv_lens":
        return dict(window=(20, 3), kv_lens=np.array([sk, sk // 3],
                                                      np.int32))
    if name == "mask_tensor":
        return dict(mask=rng.random((b, 1, sq, sk)) < 0.7)
    if name == "global_window":
        return dict(global_idx=np.array([0, 50, 99], np.int32),
                    window=(8, 8))
    if name == "strided":
        return dict(sparse="strided:16")
    if name == "block":
        return dict(block_mask=rng.random((1, 1, -(-sq // 7), -(-sk // 13)))
                    < 0.5, block_size=(7, 13))
    if name == "positions":
        return dict(causal=True, q_pos_offset=5,
                    k_pos_offsets=np.array([0, 30], np.int64))
    raise KeyError(name)


NAMES = ["causal", "causal_top_left", "window_kv_lens", "mask_tensor",
         "global_window", "strided", "block", "positions"]


@pytest.mark.parametrize("name", NAMES)
def test_compiled_equals_direct(rng, name):
    b, sq, sk = 2, 100, 130
    opts = _options(rng, name, b, sq, sk)
    q, k, v = _qkv(rng, b, sq, sk)
    with attn.compile_mask(q, k, **opts) as m:
        for layer in range(2):  # one Mask, several calls with other data
            q, k, v = _qkv(rng, b, sq, sk)
            o, lse = attn.forward(q, k, v, return_lse=True, **opts)
            om, lm = attn.forward(q, k, v, return_lse=True, compiled_mask=m)
            do = rng.standard_normal(o.shape).astype(np.float32)
            g = attn.backward(do, q, k, v, o, lse, **opts)
            gm = attn.backward(do, q, k, v, o, lse, compiled_mask=m)
            if name != "strided":
                np.testing.assert_array_equal(om, o)
                np.testing.assert_array_equal(lm, lse)
                for x, y in zip(gm, g):
                    np.testing.assert_array_equal(x, y)
                continue
            # Child's strided pattern without a compiled mask takes the
            # split path (a near and a far call merged by LSE): other
            # rounding, so both against the oracle
            from test_sparse import dense_mask
            dm = dense_mask(sq, sk, sparse=("strided", 16))
            ref = oracle.forward(q, k, v, mask=dm)
            r32 = oracle.forward(q, k, v, dtype=np.float32, mask=dm)
            for got in ((om, lm), (o, lse)):
                close(got[0], ref[0], r32[0])
                close(got[1], ref[1], r32[1])
            for x, y in zip(gm, oracle.backward(do, q, k, v, mask=dm)):
                tol = 64 * 2.0 ** -24 * (sq + sk + 32) * max(
                    1.0, np.abs(y).max())
                np.testing.assert_allclose(x, y, rtol=0, atol=tol)
        f, p, e = m.tile_counts()
        assert f + p + e == b * -(-sq // TQ) * -(-sk // TK)
    assert m.closed


@pytest.mark.parametrize("name", ["causal", "causal_top_left",
                                  "window_kv_lens", "mask_tensor",
                                  "positions"])
def test_compiled_oracle(rng, name):
    b, sq, sk, hq = 2, 100, 130, 4
    opts = _options(rng, name, b, sq, sk)
    q, k, v = _qkv(rng, b, sq, sk, hq)
    m = attn.compile_mask(q, k, **opts)
    o, lse = attn.forward(q, k, v, return_lse=True, compiled_mask=m)
    c = {"bottom_right": 1, "top_left": 2}[opts.get("causal_align",
                                                     "bottom_right")]
    bias, mask, _ = oracle.position_terms(
        b, sq, sk, hq, kv_lens=opts.get("kv_lens"),
        q_off=opts.get("q_pos_offset", 0),
        k_offs=opts.get("k_pos_offsets"),
        causal=c if opts.get("causal") else 0,
        window=opts.get("window", (-1, -1)))
    if "mask" in opts:
        mask = mask & opts["mask"]
    op = dict(mask=mask)
    if "kv_lens" in opts:
        op["kv_lens"] = opts["kv_lens"]
    o64, l64 = oracle.forward(q, k, v, **op)
    o32, l32 = oracle.forward(q, k, v, dtype=np.float32, **op)
    close(o, o64, o32)
    close(lse, l64, l32)


def _brute_counts(vis, b):
    """(full, partial, empty) over [sq, sk] visibility per sequence. The
    key axis is padded with invisible slots to whole tiles: the library
    calls a tile FULL only when all 64 of its keys exist and every row
    sees them (a truncated last key tile is PARTIAL at best)."""
    f = p = e = 0
    for bb in range(b):
        m = vis[bb]
        sq, sk = m.shape
        m = np.concatenate([m, np.zeros((sq, -sk % TK), bool)], axis=1)
        for i0 in range(0, sq, TQ):
            for j0 in range(0, sk, TK):
                t = m[i0:i0 + TQ, j0:j0 + TK]
                if t.all():
                    f += 1
                elif t.any():
                    p += 1
                else:
                    e += 1
    return f, p, e


@pytest.mark.parametrize("sq,sk,opts", [
    (256, 256, dict(causal=True)),
    (97, 300, dict(causal=True)),
    (300, 97, dict(causal=True, causal_align="top_left")),
    (200, 200, dict(window=(64, 0))),
    (130, 190, dict(kv_lens=[190, 65])),
])
def test_tile_counts(rng, sq, sk, opts):
    """Causal, window and kv_lens are classified exactly per row, so the
    counts equal a brute-force count over the tiles' elements (keys past
    kv_lens count as not visible, see _brute_counts for FULL)."""
    b = 2
    opts = dict(opts)
    if "kv_lens" in opts:
        opts["kv_lens"] = np.array(opts["kv_lens"], np.int32)
    m = attn.compile_mask((b, sq, 2, 16), (b, sk, 1, 16), **opts)
    _, mask, _ = oracle.position_terms(
        b, sq, sk, 1, kv_lens=opts.get("kv_lens"),
        causal=(2 if opts.get("causal_align") == "top_left" else 1)
        if opts.get("causal") else 0, window=opts.get("window", (-1, -1)))
    vis = mask[:, 0]
    if "kv_lens" in opts:
        for bb in range(b):
            vis[bb, :, opts["kv_lens"][bb]:] = False
    assert m.tile_counts() == _brute_counts(vis, b)


def test_tile_counts_block_sparse(rng):
    """A block layout on the tile grid: exactly the live tiles are FULL."""
    live = rng.random((4, 5)) < 0.3
    m = attn.compile_mask((1, 4 * TQ, 2, 32), (1, 5 * TK, 2, 32),
                          block_mask=live, block_size=(TQ, TK))
    assert m.tile_counts() == (int(live.sum()), 0, int((~live).sum()))


def test_shapes_layouts_torch(rng):
    torch = pytest.importorskip("torch")
    q, k, v = (torch.from_numpy(a) for a in _qkv(rng))
    # compiled from shape tuples, used with torch tensors
    m = attn.compile_mask(tuple(q.shape), tuple(k.shape), causal=True)
    assert m.q_shape == tuple(q.shape) and m.k_shape == tuple(k.shape)
    assert torch.equal(attn.forward(q, k, v, compiled_mask=m),
                       attn.forward(q, k, v, causal=True))
    # bhsd: the Mask records the logical [b, s, h, d] shapes
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
    mb = attn.compile_mask(qt, kt, layout="bhsd", causal=True)
    assert mb.q_shape == tuple(q.shape)
    assert torch.equal(
        attn.forward(qt, kt, vt, layout="bhsd", compiled_mask=mb),
        attn.forward(qt, kt, vt, layout="bhsd", causal=True))
    # packed sequences (thd, chosen by a 3-D q with cu_seqlens)
    cu_q = np.array([0, 30, 100], np.int32)
    cu_k = np.array([0, 60, 130], np.int32)
    qp, kp, vp = q[0], k[0], v[0]
    mp = attn.compile_mask(qp, kp, causal=True, cu_seqlens_q=cu_q,
                           cu_seqlens_k=cu_k)
    assert torch.equal(
        attn.forward(qp, kp, vp, compiled_mask=mp),
        attn.forward(qp, kp, vp, causal=True, cu_seqlens_q=cu_q,
                     cu_seqlens_k=cu_k))
    # with quantised K/V
    kq, vq = attn.quantize(k, "q8_0"), attn.quantize(v, "q8_0")
    mq = attn.compile_mask(q, kq, kv_dtype="q8_0", causal=True)
    assert mq.k_shape == tuple(k.shape)
    assert torch.equal(
        attn.forward(q, kq, vq, kv_dtype="q8_0", compiled_mask=mq),
        attn.forward(q, kq, vq, kv_dtype="q8_0", causal=True))


def test_errors_and_lifetime(rng):
    q, k, v = _qkv(rng)
    m = attn.compile_mask(q, k, causal=True, window=(10, 0))
    assert "causal=True" in repr(m)
    with pytest.raises(ValueError, match="compiled for q"):
        attn.forward(q[:, :50], k, v, compiled_mask=m)
    with pytest.raises(ValueError, match="compiled for q"):
        attn.forward(q, k[:, :50], v[:, :50], compiled_mask=m)
    with pytest.raises(ValueError, match="do not pass causal"):
        attn.forward(q, k, v, causal=True, compiled_mask=m)
    with pytest.raises(ValueError, match="kv_lens"):
        attn.forward(q, k, v, kv_lens=np.array([3, 4], np.int32),
                     compiled_mask=m)
    with pytest.raises(TypeError, match="attn.Mask"):
        attn.forward(q, k, v, compiled_mask="causal")
    with pytest.raises(TypeError, match="compile_mask"):
        attn.Mask()
    with pytest.raises(TypeError, match="mask_mod"):
        attn.compile_mask(q, k, mask_mod=lambda b, h, i, j: i >= j)
    with pytest.raises(ValueError, match="4-D"):
        attn.compile_mask(q[0], k, causal=True)
    # the library's own checks come back with its message
    with pytest.raises(attn.AttnError, match="window"):
        attn.compile_mask(q, k, window=(-5, 0))
    m.close()
    m.close()  # twice is fine
    assert m.closed
    with pytest.raises(ValueError, match="closed"):
        attn.forward(q, k, v, compiled_mask=m)
    with pytest.raises(ValueError, match="closed"):
        m.tile_counts()
    # freed with the object: many compiled and dropped
    for _ in range(200):
        attn.compile_mask(q, k, causal=True)
    gc.collect()


def test_threads_share_a_mask(rng):
    """Python threads calling with one Mask at once (the GIL is released
    in the call): results equal the serial ones; close() meanwhile is
    refused or waits for nothing."""
    import threading
    q, k, v = _qkv(rng, b=1, sq=300, sk=300)
    m = attn.compile_mask(q, k, causal=True)
    want = attn.forward(q, k, v, causal=True)
    errs = []

    def work():
        try:
            for _ in range(20):
                np.testing.assert_array_equal(
                    attn.forward(q, k, v, compiled_mask=m), want)
        except Exception as e:  # noqa: BLE001 (reported below)
            errs.append(e)

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    refused = 0
    for _ in range(50):
        try:
            m.close()
            break
        except RuntimeError as e:  # in use: the lists stay valid
            assert "in use" in str(e)
            refused += 1
    for t in ts:
        t.join()
    # the threads either finished before the close or raised "closed"
    assert all("closed" in str(e) for e in errs), errs
