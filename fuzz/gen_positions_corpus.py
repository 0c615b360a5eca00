#!/usr/bin/env python3
"""Writes the seed inputs of positions_fuzz (fuzz/positions_fuzz.c) to
fuzz/corpus/positions/: the input's fields named, one seed per feature
(apply with every scaling and style, partial and odd dims, explicit and
huge positions, in place and aliased outputs, wild values; apply_qk
padded, packed and aliased; the sinusoidal table; T5 buckets)."""
import os
import sys

APPLY, QK, SIN, T5 = 0, 1, 2, 3
# indices into the tables of positions_fuzz.c
HD = {2: 0, 4: 1, 6: 2, 8: 3, 10: 4, 16: 5, 32: 6, 64: 7, 66: 8, 7: 9, 3: 10,
      1: 11, 5: 12, 128: 13, 256: 14, 257: 15, 0: 16, -2: 17, 12: 18, 24: 19,
      48: 20, 80: 21, 96: 22, 18: 23}
NONE, LINEAR, NTK, YARN, LLAMA3 = 0, 1, 2, 3, 4


def rope(base=0, style=0, dims=0, scaling=NONE, factor=0, omp=0, lo=0, hi=0,
         bf=0, bs=0, ms=0):
    """Table indices (base 0 = 10000, factor 0 = 1, dims 0 = all; dims
    8 = 3/4 of head_dim, 11 odd, 12 past head_dim, 13 negative)."""
    return [base, style, dims, scaling, factor, omp, lo, hi, bf, bs, ms]


def apply(hd, rp, flags=0, b=1, s=4, h=2, shape_bad=0, lx=0, ly=0, pmode=0,
          off=0, osel=0, target=0, shift=0, rnd=(1, 2, 3)):
    """flags: 1 inverse, 2 in place, 4 y over another array (target: 0 x,
    1 positions, 2 offsets), 8 wild values. pmode: 0 offset, 1 array, 2
    per-batch offsets."""
    return bytes([APPLY, *rnd, HD[hd], *rp, flags, b - 1, s - 1, h - 1,
                  shape_bad, lx, ly, pmode, off, osel, target, shift >> 8,
                  shift & 255])


def qk(hd, rp, flags=0, flags2=0, nb=1, hk=1, grp=1, dv=1, sq=3, sk=4,
       lens=(), kvl=(0, 0, 0), qoff=0, koff=0, osel=0, broken=0,
       lay=(0, 0, 0, 0), tsel=0, shift=0, rnd=(4, 5, 6)):
    """flags: 1 packed (lens: (q, k) per sequence, then the extra rows),
    2 kv_lens, 4 q_pos_offsets, 8 k_pos_offsets, 16 inverse, 32 wild,
    64/128 causal. flags2 % 3: q_out apart/in place/over another array,
    flags2 / 3 % 3 the same for k_out."""
    out = [QK, *rnd, HD[hd], *rp, flags, flags2, nb - 1, hk - 1, grp - 1,
           dv - 1]
    if flags & 1:
        out += [0, 0]  # sq, sk (unused when packed)
        for q, k in lens[:nb]:
            out += [q, k]
        out += [1, 2]  # rows past the last sequence
    else:
        out += [sq - 1, sk - 1]
    out += list(kvl[:nb]) + [qoff, koff, osel, broken, *lay, tsel,
                             shift >> 8, shift & 255]
    return bytes(out)


def sin(n, d, psel=0, bsel=0, null=1, rnd=(7, 8, 9)):
    """indices into sin_ns, sin_ds, offsets, sin_bases."""
    return bytes([SIN, *rnd, n, d, psel, bsel, null])


def t5(b, d, bidir, c=128, mult=0, rest=b""):
    return bytes([T5, 0, 0, 0, b, d, bidir, c, mult]) + rest


SEEDS = {
    "apply_plain": apply(8, rope()),
    "apply_interleaved_inverse": apply(16, rope(style=1), flags=1, b=2, s=5),
    "apply_partial_linear": apply(64, rope(dims=8, scaling=LINEAR, factor=2),
                                  lx=1, ly=2, s=3),
    "apply_ntk": apply(32, rope(base=1, scaling=NTK, factor=3), pmode=2,
                       osel=5),
    "apply_yarn": apply(64, rope(scaling=YARN, factor=2, omp=1, ms=3),
                        pmode=1, off=4),
    "apply_llama3": apply(128, rope(base=1, scaling=LLAMA3, factor=3), s=3,
                          h=1, pmode=1, off=6, osel=50),
    "apply_bf16_f16": apply(10, rope(style=1), lx=16, ly=32, flags=1),
    "apply_huge_pos": apply(8, rope(), pmode=1, off=6, osel=60),
    "apply_odd_dims": apply(7, rope(dims=8)),
    "apply_odd_invalid": apply(7, rope()),
    "apply_in_place": apply(18, rope(scaling=YARN, factor=3), flags=2, lx=3),
    "apply_y_over_x": apply(8, rope(), flags=4, target=0, shift=8),
    "apply_y_over_pos": apply(8, rope(), flags=4, pmode=1, target=1),
    "apply_wild": apply(16, rope(scaling=LLAMA3, factor=2), flags=8, b=3,
                        s=9, h=4),
    "apply_extreme": apply(66, rope(base=7), pmode=1,
                           off=6),
    "qk_plain": qk(8, rope(), kvl=(2,)),
    "qk_gqa_padded": qk(16, rope(style=1), flags=2 | 4 | 8, nb=2, hk=2, grp=2,
                        kvl=(1, 3), osel=9),
    "qk_packed": qk(8, rope(scaling=YARN, factor=2), flags=1 | 2, nb=3,
                    lens=((2, 3), (0, 2), (3, 1)), kvl=(1, 2, 0)),
    "qk_in_place": qk(32, rope(dims=8, scaling=LINEAR, factor=2),
                      flags2=1 + 3, hk=2, grp=1, sq=3, sk=3),
    "qk_alias": qk(8, rope(), flags2=2, tsel=0),
    "qk_broken": qk(8, rope(), broken=1, hk=2),
    "sin_small": sin(3, 5, 2, 1),
    "sin_huge_pos": sin(4, 6, 7, 0),
    "sin_invalid": sin(8, 11, 0, 7),
    "t5_bidir": t5(0, 0, 1),
    "t5_causal": t5(2, 1, 0, c=60, mult=3),
    "t5_huge_buckets": t5(13, 0, 0, c=250, mult=15,
                          rest=bytes([13, 0, 200, 4, 14, 1, 250, 30])),
}

# Inputs that found library defects (kept under their own names).
REGRESS = {
    # NTK's base * factor^(d/(d-2)) overflowed to inf: every frequency but
    # the first silently 0; now refused
    "ntk_base_overflow": apply(66, rope(base=7, scaling=NTK, factor=8),
                               pmode=1, off=6),
    # a frequency of 1e300 (linear, factor 1e-300) accepted: at position
    # 2^48 the angle overflowed and the rotation was NaN; now refused
    "freq_pos_overflow": apply(8, rope(scaling=LINEAR, factor=7), off=6),
    # T5 buckets past 2^25: the clamps compared x with (float)exact and
    # (float)(nb - exact), rounded, and misplaced the edge buckets
    "t5_float_edges": t5(13, 0, 0, c=250, mult=15),
}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus",
                       "positions")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, "seed_" + name), "wb") as f:
            f.write(data)
    for name, data in REGRESS.items():
        with open(os.path.join(out, "regress_" + name), "wb") as f:
            f.write(data)
    print(f"{len(SEEDS)} seeds, {len(REGRESS)} regressions in {out}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
