#!/usr/bin/env python3
"""Writes the seed inputs of merge_fuzz (fuzz/merge_fuzz.c) to
fuzz/corpus/merge/: the header's fields named, one seed per feature
(backward with every optional array, sinks, non-finite values, a head
dim past the merge's chunk, every layout, an output over each kind of
array, no parts)."""
import os
import sys

FWD_ONLY, BWD, LSE, SINKS, DLSE, DLSEP, DSINKS, WILD, WIDE = (
    0, 1, 2, 4, 8, 16, 32, 64, 128)


def seed(flags, parts, b, s, h, d, rnd=(1, 2, 3, 4), alias=None,
         spread=1, layouts=()):
    """parts: 1..5, or 0 (refused). alias: (victim, target, shift)."""
    np_ = 15 if parts == 0 else parts - 1
    if alias is not None:
        np_ |= 0x80
    av, at, sh = alias if alias is not None else (0, 0, 0)
    head = [flags, np_, b - 1, s - 1, h - 1, d - 1, 0, *rnd, av, at,
            sh >> 8, sh & 255, spread]
    n = max(parts, 1)
    lay = list(layouts) + [0] * (2 * n + 2 - len(layouts))
    return bytes(head + lay)


SEEDS = {
    "fwd_small": seed(FWD_ONLY, 2, 1, 3, 2, 8),
    "fwd_lse_sinks": seed(LSE | SINKS, 3, 2, 17, 9, 20, spread=2),
    "bwd_all": seed(BWD | SINKS | DLSE | DLSEP | DSINKS, 3, 2, 9, 3, 33),
    "bwd_plain": seed(BWD, 1, 1, 16, 8, 16),
    "wild_fwd": seed(LSE | SINKS | WILD, 4, 3, 20, 5, 12, rnd=(9, 8, 7, 6)),
    "wild_bwd": seed(BWD | SINKS | DLSE | DLSEP | DSINKS | WILD, 3, 2, 12, 4,
                     24, rnd=(5, 5, 5, 5)),
    "wide_dv": seed(WIDE | BWD | DLSEP, 2, 1, 5, 2, 40),
    "layouts": seed(BWD | DLSEP, 5, 2, 7, 3, 9,
                    layouts=[1, 2, 3, 4, 21, 42, 63, 84, 105, 1, 2, 23]),
    "bf16_f16": seed(BWD | LSE, 2, 1, 6, 4, 30, layouts=[20, 40, 41, 22, 43, 21]),
    "out_selfalias": seed(LSE, 2, 1, 4, 3, 5, layouts=[0, 0, 64]),
    "no_parts": seed(LSE, 0, 1, 2, 2, 4),
    "dsinks_no_sinks": seed(BWD | DSINKS, 2, 1, 2, 2, 4),
    "alias_o_on_part": seed(LSE, 2, 1, 4, 2, 8, alias=(0, 0, 0)),
    "alias_o_shifted": seed(LSE, 3, 2, 4, 2, 8, alias=(0, 1, 200)),
    "alias_lse_on_lsepart": seed(LSE, 2, 1, 4, 2, 8, alias=(1, 2, 4)),
    "alias_dop_on_dout": seed(BWD | DLSEP, 2, 1, 4, 2, 8, alias=(2, 5, 8)),
    "alias_dlsep_on_o": seed(BWD | DLSEP | SINKS | DSINKS, 2, 1, 4, 2, 8,
                             alias=(5, 5, 0)),
}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus",
                       "merge")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, "seed_" + name), "wb") as f:
            f.write(data)
    print(f"{len(SEEDS)} seeds in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
