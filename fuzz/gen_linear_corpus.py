#!/usr/bin/env python3
"""Writes the seed inputs of linear_fuzz (fuzz/linear_fuzz.c) to
fuzz/corpus/linear/: the header's fields named, one seed per feature
(forward, backward with GQA, the causal kinds, lengths across the chunk
edges, head dims up to 256, every layout and dtype, the recurrent state,
non-finite and underflowing values, a caller workspace, the generic ISA,
an output over each kind of array, mutated calls and states)."""
import os
import sys

BWD, STATE, WILD, ALIAS, GENERIC, WS, O_UNSET = 1, 2, 4, 8, 16, 32, 64
NORMAL, LONG, WIDE = 0, 1, 2
NONE, BOTTOM_RIGHT, TOP_LEFT = 0, 1, 2
# roles of the layout bytes and of the aliasing choice
Q, K, V, O, DOUT, DQ, DK, DV, OS = range(9)


def lens_index(n):
    """The byte of a length of the long mode (linear_fuzz.c's lens)."""
    lens = [1, 2, 63, 64, 65, 100, 127, 128, 129, 130, 191, 192, 193, 200,
            255, 257]
    return lens.index(n)


def seed(flags=0, mode=NORMAL, causal=NONE, batch=1, ratio=0, sq=8, sk=8,
         d=8, dv=8, rnd=(1, 2, 3, 4), qm=0, km=0, vm=0, gm=0, kind=0, sel=0,
         alias=None, steps=0, wrate=0, layouts=()):
    """sq, sk, d, dv: the bytes the mode reads (normal: value - 1).
    alias: (victim among the present outputs, target among the other
    present arrays, byte shift)."""
    if alias is not None:
        flags |= ALIAS
    av, at, sh = alias if alias is not None else (0, 0, 0)
    head = [flags, mode + 3 * causal, batch - 1, ratio, sq, sk, d, dv, *rnd,
            qm, km, vm, gm, kind, sel, av, at, sh >> 8, sh & 255, steps,
            wrate]
    lay = list(layouts) + [0] * (9 - len(layouts))
    return bytes(head + lay)


def n(x):
    """A size of the normal mode."""
    return x - 1


SEEDS = {
    "fwd_small": seed(sq=n(5), sk=n(7), d=n(4), dv=n(3)),
    "bwd_gqa": seed(BWD, causal=BOTTOM_RIGHT, batch=2, ratio=3, sq=n(17),
                    sk=n(23), d=n(12), dv=n(9)),
    "bwd_topleft": seed(BWD, causal=TOP_LEFT, ratio=6, sq=n(9), sk=n(31),
                        d=n(5), dv=n(7)),
    "bwd_sq_gt_sk": seed(BWD, causal=BOTTOM_RIGHT, ratio=2, sq=n(40),
                         sk=n(11), d=n(6), dv=n(6), qm=3),
    "long_chunks": seed(BWD, mode=LONG, causal=BOTTOM_RIGHT, ratio=2,
                        sq=lens_index(129), sk=lens_index(193), d=7, dv=5),
    "long_noncausal": seed(BWD, mode=LONG, sq=lens_index(64),
                           sk=lens_index(257), d=3, dv=7),
    # wide: batch 1; ratio byte % 4: 1/1, 2/2, 2/1, 3/1; dims 256, 128
    "wide_dims": seed(BWD, mode=WIDE, causal=TOP_LEFT, ratio=3, sq=n(5),
                      sk=n(9), d=7, dv=5),
    # enough work for 3 threads (lin_threads: a million multiply-adds)
    "wide_threads": seed(BWD | WS, mode=WIDE, ratio=1, sq=n(10), sk=n(10),
                         d=5, dv=5),
    "layouts": seed(BWD, causal=BOTTOM_RIGHT, ratio=3, sq=n(13), sk=n(13),
                    d=n(10), dv=n(11),
                    layouts=[1, 2, 3, 4, 21, 42, 63, 84, 105]),
    "bf16_f16": seed(BWD, causal=TOP_LEFT, ratio=2, sq=n(9), sk=n(6),
                     d=n(16), dv=n(8), layouts=[20, 40, 41, 22, 43, 21, 42,
                                                23, 44]),
    "state_steps": seed(STATE, mode=LONG, causal=BOTTOM_RIGHT, ratio=2,
                        sq=lens_index(130), d=5, dv=6, steps=4),
    "state_tokens": seed(STATE | BWD, causal=TOP_LEFT, batch=2, ratio=3,
                         sq=n(20), d=n(7), dv=n(5), steps=0),
    "wild_values": seed(BWD | WILD, causal=BOTTOM_RIGHT, ratio=3, sq=n(30),
                        sk=n(30), d=n(6), dv=n(6), rnd=(9, 8, 7, 6),
                        wrate=3),
    "guard_underflow": seed(BWD, causal=BOTTOM_RIGHT, sq=n(33), sk=n(20),
                            d=n(4), dv=n(4), qm=6 * 6, km=6 * 7),
    "huge_values": seed(BWD, sq=n(6), sk=n(6), d=n(3), dv=n(3), qm=5 + 6 * 11,
                        vm=7, gm=4),
    "generic_ws": seed(BWD | GENERIC | WS | O_UNSET, causal=BOTTOM_RIGHT,
                       ratio=2, sq=n(30), sk=n(35), d=n(16), dv=n(16)),
    "out_selfalias": seed(BWD, sq=n(4), sk=n(4), d=n(3), dv=n(2),
                          layouts=[0, 0, 0, 64, 0, 64, 0, 0, 0]),
    "alias_o_on_q": seed(0, sq=n(5), sk=n(5), d=n(4), dv=n(4),
                         alias=(0, 0, 0)),
    "alias_dk_on_dout": seed(BWD, sq=n(5), sk=n(6), d=n(4), dv=n(4),
                             alias=(2, 4, 8)),
    "alias_o_on_dq": seed(BWD, sq=n(5), sk=n(6), d=n(4), dv=n(4),
                          alias=(0, 5, 0)),
    "alias_os_on_v": seed(STATE, causal=BOTTOM_RIGHT, sq=n(9), d=n(4),
                          dv=n(4), alias=(1, 2, 12), steps=1),
    # one-token steps into an output of stride 0 on its rows
    "state_out_rows_stride0": seed(STATE, causal=BOTTOM_RIGHT, sq=n(7),
                                   d=n(3), dv=n(4), steps=0,
                                   layouts=[0, 0, 0, 0, 0, 0, 0, 0, 64]),
    # one key: dq is 0 up to cancellation of terms ~1e20, stored in f16
    "f16_cancelling_dq": seed(BWD, sq=n(3), sk=n(1), d=n(10), dv=n(11),
                              gm=7, layouts=[0, 0, 0, 0, 0, 40]),
    "mutated_calls": seed(BWD, sq=n(6), sk=n(7), d=n(5), dv=n(4), kind=3,
                          sel=0x45),
    "mutated_ws": seed(BWD, sq=n(6), sk=n(7), d=n(5), dv=n(4), kind=10,
                       sel=0x81),
    "mutated_state": seed(STATE, sq=n(6), d=n(5), dv=n(4), kind=16, sel=1),
}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus",
                       "linear")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, "seed_" + name), "wb") as f:
            f.write(data)
    print(f"{len(SEEDS)} seeds in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
