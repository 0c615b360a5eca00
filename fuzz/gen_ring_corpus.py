#!/usr/bin/env python3
"""Writes the seed inputs of ring_fuzz (fuzz/ring_fuzz.c) to
fuzz/corpus/ring/: the input's fields named, in the order the harness
reads them (a partition query, then one ring call), one seed per feature
(layouts, causal alignments, windows, GQA, packed documents, kv_lens, sinks,
T5, ALiBi, bf16/f16, bhsd slices, tile-edge lengths) and per kind of
invalid call."""
import os
import sys

# kinds of call (the enum of ring_fuzz.c)
(VALID, NULL_OPERAND, NULL_PARAMS, LAYOUT, COMM_NULL, ABI, O_SHAPE, O_OVERLAP,
 SINK_BAD, UNSUPPORTED, KV_LENS, CU_SEQLENS, SHAPE, DTYPE, B_NULL, B_SHAPE,
 B_OVERLAP, B_DSINKS) = range(18)
# option bits
WL, WR, PREFIX, SOFTCAP, SCALE, ALIBI, OFFS, SINKS, T5, PACKED, KVLENS = (
    1 << i for i in range(11))
NEG_QOFF = 0x8000
DIMS = [1, 2, 3, 4, 5, 8, 16, 7]
EDGES = [47, 48, 49, 63, 64, 65, 129, 300]


def seed(kind=VALID, B=1, hkv=1, group=1, d=8, dv=None, S=16, dt=0, bhsd=0,
         layout=0, threads=1, comm=0, causal=0, opts=0, wl=0, wr=0, prefix=0,
         softcap=5, scale=16, qoff=0, koff=0, rnd=(1, 2, 3, 4), t5=(31, 40, 1),
         docs=None, kvl_cut=None, stats=1, w=0, dsinks=1, drel=1,
         part=(1, 100, 0, 3, 6, 3, 1)):
    """S <= 40 directly, else one of EDGES; docs: lengths of the packed
    documents (B = 1); kvl_cut: keys cut off each sequence's kv_lens."""
    out = list(part)
    out += [kind, B - 1, hkv - 1, group - 1, DIMS.index(d)]
    if dv is None or dv == d:
        out += [1]
    else:
        out += [0, DIMS.index(dv)]
    if S <= 40:
        out += [S - 1]
    else:
        e = EDGES.index(S)
        out += [200 + (e - 200) % 8, 0]
    if dt == 0:
        out += [1]
    else:
        out += [0, 1, dt - 1]
    out += [bhsd, layout, threads - 1, comm, causal, opts & 255, opts >> 8]
    if opts & WL:
        out += [wl]
    if opts & WR:
        out += [wr]
    if opts & PREFIX:
        out += [prefix]
    if opts & SOFTCAP:
        out += [softcap - 1]
    if opts & SCALE:
        out += [scale]
    if opts & OFFS:
        out += [qoff, koff]
    out += list(rnd)
    if opts & T5:
        out += [t5[0] - 1, t5[1] - 1, t5[2]]
    lens = [S] * B
    if opts & PACKED and B == 1:
        out += [len(docs) - 1] + list(docs)
        full = sum(docs) == S
        out += [1 if full else 0]
        lens = list(docs)
        if full:
            lens[-1] = S - sum(docs[:-1])
    if opts & KVLENS:
        cut = kvl_cut or [0] * len(lens)
        out += cut[:len(lens)]
    out += [stats]
    if NULL_OPERAND <= kind <= DTYPE:
        out += [w]
    if opts & SINKS:
        out += [dsinks]
    if opts & T5:
        out += [drel]
    if kind >= B_NULL:
        out += [w]
    return bytes(out)


CAUSAL_BR, CAUSAL_TL = 1, 2
ZZ = 1
SEEDS = {
    "plain_contiguous_gqa": seed(B=2, hkv=2, group=2, S=37),
    "causal_zigzag": seed(causal=CAUSAL_BR, layout=ZZ, d=16, S=40),
    "causal_tl_alibi_tile_edge": seed(causal=CAUSAL_TL, opts=ALIBI, group=3,
                                      S=65),
    "window_zigzag_2threads": seed(causal=CAUSAL_BR, layout=ZZ, opts=WL | WR,
                                   wl=7, wr=2, threads=2, S=49),
    "softcap_scale_offsets": seed(opts=SOFTCAP | SCALE | OFFS | NEG_QOFF,
                                  softcap=5, scale=30, qoff=3, koff=9, S=23,
                                  layout=ZZ, comm=1),
    "packed_kvlens_causal": seed(causal=CAUSAL_BR, opts=PACKED | KVLENS,
                                 docs=[5, 9, 0, 20], kvl_cut=[2, 0, 0, 3],
                                 S=39, comm=2),
    "sinks_t5_bwd": seed(opts=SINKS | T5, group=3, S=29, layout=ZZ),
    "bf16_bhsd_dv": seed(dt=1, bhsd=1, d=8, dv=3, causal=CAUSAL_BR, S=48),
    "f16_prefix": seed(dt=2, opts=PREFIX, prefix=5, S=17, hkv=3),
    "long_300": seed(causal=CAUSAL_BR, layout=ZZ, d=4, S=300, opts=WL, wl=40),
    "one_token": seed(S=1, causal=CAUSAL_TL, layout=ZZ),
    "regress_o_shape": seed(kind=O_SHAPE, S=12, group=2, w=0),
    "regress_o_overlap": seed(kind=O_OVERLAP, S=12, w=1),
    "regress_sink_nan": seed(kind=SINK_BAD, opts=SINKS, S=9, w=1),
    "bad_unsupported": seed(kind=UNSUPPORTED, S=9, w=0),
    "bad_cu_seqlens": seed(kind=CU_SEQLENS, S=9, w=1),
    "regress_bwd_overlap": seed(kind=B_OVERLAP, S=9, w=2),
    "regress_bwd_dsinks": seed(kind=B_DSINKS, opts=SINKS, S=9),
    "bad_layout_comm": seed(kind=LAYOUT, S=5, w=3),
}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus",
                       "ring")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(SEEDS)} seeds to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
