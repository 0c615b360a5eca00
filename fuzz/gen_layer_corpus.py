#!/usr/bin/env python3
"""Writes the seed inputs of layer_fuzz (fuzz/layer_fuzz.c) to
fuzz/corpus/layer/: the input's fields named, one seed per feature (self
and cross attention, GQA, fused projections, every position scheme,
packed and padded batches, masks, caller buffers, decoding through f32,
bf16 and f16 caches, hostile configs and calls; the template's softcap,
sinks with dsinks, bias with dbias, boolean mask, dropout and non-finite
x, and their broken rules)."""
import os
import sys

FWD, DECODE, CREATE = 0, 1, 3
CHECK_INIT = 4
# indices into the tables of layer_fuzz.c
DMODEL = {4: 0, 8: 1, 6: 2, 12: 3, 16: 4, 3: 5, 5: 6, 1: 7, 2: 8, 0: 9,
          -1: 10, "huge": 11, 10: 12}
HEADS = {1: 0, 2: 1, 3: 2, 4: 3, 0: 6, -1: 7, 65537: 8}
HEADSKV = {0: 0, 1: 2, 2: 3, 3: 4, -1: 5, 99: 7}
HDIM = {0: 0, 2: 2, 4: 3, 3: 4, 8: 5, 1: 6, 257: 7, -1: 8, 6: 9}
HDIMV = {0: 0, 2: 2, 3: 3, 5: 4, 300: 5, -3: 6}
DOUT = {0: 0, 3: 2, 5: 3, 8: 4, -2: 5, "huge": 6}
KDIM = {0: 0, 3: 1, 6: 2, -1: 3, 5: 5}
VDIM = {0: 0, 2: 1, 5: 2, -4: 4}
MAXPOS = {2048: 0, 64: 1, 8: 2, 1: 3, 0: 4, "huge": 5}
SBASE = {0: 0, 10000: 1, 100: 2, 1.0: 3, -1: 4, "nan": 5, 0.5: 6, 2: 7}
NONE, SIN, LEARNED, ROPE, ALIBI, T5 = range(6)
R = {"null": 0, "default": 1, "dims2": 2, "interleaved": 3, "linear": 4,
     "yarn": 5, "llama3": 6, "base1": 7, "dims3": 8, "ntk2": 9}
BUCKETS = {32: 0, 8: 1, 1: 2, 2: 3, 3: 4, 0: 5, 65537: 6, 16: 7}
MAXDIST = {128: 0, 4: 1, 1: 2, 0: 3, 16: 4}
CROSS, FUSED, BIDIR, KEEPKV, BADSIZE, FLAG20, CROSS2 = (1, 2, 4, 0x40, 0x18,
                                                        0x20, 0x80)
H = {n: i for i, n in enumerate(
    "none x_null out_null y batch0 seqneg overflow opt_q opt_lse opt_pos "
    "opt_size call_size act_small act_align ws_small ws_align kvl cu "
    "dvalue dout seqk".split())}
NH = len(H)


def config(E=8, hq=2, hkv=0, d=0, dv=0, dout=0, flags=0, kdim=0, vdim=0,
           nobias=0, pos=NONE, maxpos=2048, sbase=0, rope="null", buckets=32,
           maxdist=128):
    return [DMODEL[E], HEADS[hq], HEADSKV[hkv], HDIM[d], HDIMV[dv],
            DOUT[dout], flags, KDIM[kdim], VDIM[vdim], nobias, pos,
            MAXPOS[maxpos], SBASE[sbase], R[rope], BUCKETS[buckets],
            MAXDIST[maxdist]]


def call(cross=False, flags=0, b=1, sq=3, sk=4, seqs=(), extra=(1, 1),
         kvl=(), mask=0, qoff=0, koff=0, os_=0, hostile="none", bufs=0):
    """flags: 1 value input, 2 packed (seqs: (q, k) per sequence), 4
    kv_lens, 8 q_pos_offsets, 16 k_pos_offsets, 0x80 no options. mask:
    causal = mask % 3, window_left = (mask / 3) % 4 - 1, 0x40 window_right
    1, 0x80 scale 0.5. qoff/koff: indices (3: 3, 4: -2, 6: 2^48 - 2)."""
    out = [flags, b - 1, sq - 1]
    if cross:
        out.append(sk - 1)
    n = 1
    if flags & 2:
        n = len(seqs)
        out.append(n - 1)
        for q, k in seqs:
            out.append(q)
            if cross:
                out.append(k)
        out.append(extra[0])
        if cross:
            out.append(extra[1])
    else:
        n = b
    kv = list(kvl) + [255] * (n - len(kvl))
    out += kv[:n] + [mask, qoff, koff, os_]
    h = H[hostile]
    out += [0, h]  # a selector below NH, then which rule
    out.append(bufs)
    return out


# the template's score options (carve_extras in layer_fuzz.c), drawn after
# the call's bytes; indices into its tables
CAP = {1.0: 0, 0.5: 1, 5.0: 2, 30.0: 3, 0.05: 4, 2.0: 5}
SINK = {"-inf": 0, 0.0: 1, 1.5: 2, -2.0: 3, 4.0: 4, 20.0: 5, -30.0: 6,
        0.75: 7}
DROP = {0.1: 0, 0.5: 1, 0.9: 2, 0.25: 3}
XB = {n: i for i, n in enumerate(
    "cap_neg cap_nonfinite sink_nan sink_inf bias_shape bias_dtype "
    "mask_shape mask_dtype drop dsinks dbias".split())}
NONFIN = {"nan": 0, "inf": 1, "-inf": 2}


def tsel(bcast=0, level=0, flag40=False, longer=False):
    """A bias or mask selector: bcast bits 1 batch, 2 heads, 4 seq_q,
    8 seq_k broadcast (size 1); level: the bias scale (1, 4, 0.25, 30) or
    the mask density (thresholds -0.6, 0, 0.5, -2); flag40: -inf bias
    elements / mask value 65; longer: packed seq axes one longer."""
    return bcast | (level << 4) | (0x40 if flag40 else 0) | \
        (0x80 if longer else 0)


def extras(cap=None, sinks=None, bias=None, mask=None, drop=None,
           seed=7, grads=False, bad=None, nonfinite=None):
    """The bytes of carve_extras: nonfinite = (row, col, "nan"|"inf"|
    "-inf"); sinks: one SINK key per query head; bias, mask: tsel();
    grads: dsinks / dbias asked of the backward; bad: an XB name."""
    xo, out = 0, []
    if nonfinite is not None:
        xo |= 0x80
        out += [0, nonfinite[0], nonfinite[1], NONFIN[nonfinite[2]]]
    if cap is not None:
        xo |= 1
        out.append(CAP[cap])
    if sinks is not None:
        xo |= 2
        out += [SINK[v] for v in sinks]
    if bias is not None:
        xo |= 4
        out.append(bias)
    if mask is not None:
        xo |= 8
        out.append(mask)
    if drop is not None:
        xo |= 16
        out += [DROP[drop], seed]
    if grads:
        xo |= 32
    if bad is not None:
        xo |= 64
        out.append(XB[bad])
    return [xo] + out


def decode(flags=0, b=1, prompt=3, singles=2, dt=0, hostile=0, cap=None,
           sinks=None, bad=0):
    """flags: 1 paged, 2 a spare row, 4 caller workspace; dt 0 f32, 1 bf16,
    2 f16; hostile: 1 batch, 2 kv_lens, 3 offsets, 4 heads, 5 no room,
    6 a huge batch; then the template's softcap and sinks (one SINK key per
    query head), bad: 1 a NaN sink, 2 dropout, 3 a negative softcap at the
    first step."""
    out = [flags, b - 1, prompt - 1, singles - 1, dt, hostile]
    if cap is None and sinks is None and not bad:
        return out
    xo = (1 if cap is not None else 0) | (2 if sinks is not None else 0) | \
        (4 if bad else 0)
    out.append(xo)
    if cap is not None:
        out.append(CAP[cap])
    if sinks is not None:
        out += [SINK[v] for v in sinks]
    if bad:
        out.append(bad - 1)
    return out


def seed(op, cfg, rest=(), rnd=(1, 2, 3)):
    return bytes([op, *rnd, *cfg, *rest])


SEEDS = {
    "fwd_self_plain": seed(FWD | CHECK_INIT, config(), call()),
    "fwd_gqa_rope": seed(FWD, config(E=8, hq=4, hkv=2, pos=ROPE,
                                     rope="default"),
                         call(b=2, sq=4, mask=1)),
    "fwd_cross_value": seed(FWD, config(E=6, hq=3, d=2, dv=3, dout=5,
                                        flags=CROSS, kdim=3, vdim=5),
                            call(cross=True, flags=1, b=2, sq=3, sk=5,
                                 mask=2)),
    "fwd_fused_alibi": seed(FWD, config(E=8, hq=2, flags=FUSED, pos=ALIBI),
                            call(sq=5, mask=1 + 3 * 2)),
    "fwd_t5_bidir": seed(FWD, config(E=4, hq=2, flags=BIDIR, pos=T5,
                                     buckets=8, maxdist=4),
                         call(sq=5, mask=0x80)),
    "fwd_t5_causal": seed(FWD, config(E=4, hq=1, pos=T5, buckets=16),
                          call(b=2, sq=4, mask=1)),
    "fwd_sinusoidal_packed": seed(FWD, config(E=6, hq=2, pos=SIN, sbase=100),
                                  call(flags=2 | 4, seqs=((2, 0), (3, 0)),
                                       extra=(1, 0), kvl=(1, 3))),
    "fwd_learned_cross": seed(FWD, config(E=4, hq=2, flags=CROSS, kdim=6,
                                          pos=LEARNED, maxpos=8),
                              call(cross=True, flags=8 | 16, b=2, sq=3, sk=4,
                                   os_=7)),
    "fwd_rope_yarn_offsets": seed(FWD, config(E=8, hq=2, d=4, pos=ROPE,
                                              rope="yarn"),
                                  call(sq=4, qoff=3, koff=3, mask=1)),
    "fwd_rope_llama3_bufs": seed(FWD, config(E=12, hq=3, hkv=1, d=4,
                                             pos=ROPE, rope="llama3"),
                                 call(b=2, sq=3, bufs=1)),
    "fwd_window": seed(FWD, config(E=8, hq=2, dv=3, nobias=5),
                       call(sq=5, mask=2 + 3 * 2 + 0x40)),
    "fwd_no_options": seed(FWD, config(E=4, hq=1, dout=3),
                           call(flags=0x80, b=2, sq=2)),
    "decode_f32": seed(DECODE, config(E=8, hq=2, pos=ROPE, rope="default"),
                       decode(prompt=3, singles=3)),
    "decode_bf16_paged": seed(DECODE, config(E=8, hq=4, hkv=2, pos=ALIBI),
                              decode(flags=1 | 4, b=2, prompt=2, singles=2,
                                     dt=1)),
    "decode_f16_learned": seed(DECODE, config(E=6, hq=2, pos=LEARNED,
                                              maxpos=8),
                               decode(flags=2, dt=2, prompt=4, singles=3)),
    "decode_t5_hostile": seed(DECODE, config(E=4, hq=2, flags=BIDIR, pos=T5,
                                             buckets=8),
                              decode(hostile=5, prompt=2, singles=1)),
    "bad_heads_ratio": seed(CREATE, config(E=6, hq=3, hkv=2)),
    "bad_head_dim": seed(CREATE, config(E=8, hq=2, d=257)),
    "bad_fused_cross": seed(CREATE, config(flags=FUSED | CROSS)),
    "bad_rope_odd": seed(CREATE, config(E=6, hq=2, pos=ROPE,
                                        rope="default")),
    "bad_t5_one_bucket": seed(CREATE, config(flags=BIDIR, pos=T5,
                                             buckets=1)),
    "bad_call_learned_range": seed(FWD, config(pos=LEARNED, maxpos=8),
                                   call(sq=6, qoff=3)),
    "bad_call_opt_lse": seed(FWD, config(), call(hostile="opt_lse")),
    "bad_call_dout": seed(FWD, config(), call(hostile="dout")),
    "bad_call_overflow": seed(FWD, config(), call(hostile="overflow")),
    # the template's score options (softcap, sinks, bias, mask, dropout)
    "fwd_softcap": seed(FWD, config(E=8, hq=2),
                        call(sq=4, mask=1) + extras(cap=0.5)),
    "fwd_softcap_rope_scale": seed(FWD, config(E=8, hq=2, d=4, pos=ROPE,
                                               rope="default"),
                                   call(b=2, sq=5, mask=0x80) +
                                   extras(cap=2.0)),
    "fwd_sinks_dsinks": seed(FWD, config(E=8, hq=4, hkv=2),
                             call(b=2, sq=3, mask=1) +
                             extras(sinks=("-inf", 1.5, 20.0, 0.75),
                                    grads=True)),
    "fwd_bias_dbias_bcast": seed(FWD, config(E=6, hq=3, d=2),
                                 call(b=2, sq=4) +
                                 extras(bias=tsel(bcast=1 | 4, level=1,
                                                  flag40=True),
                                        grads=True)),
    "fwd_bias_full_alibi": seed(FWD, config(E=8, hq=2, pos=ALIBI),
                                call(sq=5, mask=1) +
                                extras(bias=tsel(level=3), grads=True)),
    "fwd_mask_packed": seed(FWD, config(E=6, hq=2, pos=SIN, sbase=100),
                            call(flags=2 | 4, seqs=((2, 0), (3, 0)),
                                 extra=(1, 0), kvl=(1, 3)) +
                            extras(bias=tsel(bcast=2, longer=True),
                                   mask=tsel(level=1, flag40=True,
                                             longer=True),
                                   grads=True)),
    "fwd_dropout_cross": seed(FWD, config(E=6, hq=3, d=2, dv=3, dout=5,
                                          flags=CROSS, kdim=3, vdim=5),
                              call(cross=True, flags=1, b=2, sq=3, sk=5) +
                              extras(drop=0.5, seed=11)),
    "fwd_all_options_t5": seed(FWD, config(E=4, hq=2, flags=BIDIR, pos=T5,
                                           buckets=8, maxdist=4),
                               call(b=2, sq=4, mask=2 + 3 * 2) +
                               extras(cap=5.0, sinks=(0.0, -2.0),
                                      bias=tsel(bcast=8, level=0),
                                      mask=tsel(bcast=1, level=0),
                                      drop=0.25, grads=True)),
    "fwd_nonfinite_nan": seed(FWD, config(E=8, hq=2),
                              call(b=2, sq=4, mask=1) +
                              extras(nonfinite=(5, 3, "nan"),
                                     sinks=(1.5, "-inf"))),
    "fwd_nonfinite_inf_cross": seed(FWD, config(E=4, hq=2, flags=CROSS,
                                                kdim=6),
                                    call(cross=True, sq=3, sk=4) +
                                    extras(nonfinite=(1, 0, "-inf"))),
    "bad_call_sink_nan": seed(FWD, config(), call() +
                              extras(sinks=(0.0, 1.5), bad="sink_nan")),
    "bad_call_bias_shape": seed(FWD, config(), call() +
                                extras(bad="bias_shape")),
    "bad_call_mask_dtype": seed(FWD, config(), call() +
                                extras(bad="mask_dtype")),
    "bad_call_dropout_p": seed(FWD, config(), call() + extras(bad="drop")),
    "bad_call_cap_neg": seed(FWD, config(), call() + extras(bad="cap_neg")),
    "bad_call_dsinks_no_sinks": seed(FWD, config(), call() +
                                     extras(bad="dsinks")),
    "bad_call_dbias_shape": seed(FWD, config(), call() +
                                 extras(bias=tsel(), grads=True,
                                        bad="dbias")),
    "decode_softcap_sinks": seed(DECODE, config(E=8, hq=4, hkv=2,
                                                pos=ROPE, rope="default"),
                                 decode(prompt=3, singles=2, cap=1.0,
                                        sinks=(0.0, "-inf", 4.0, -2.0))),
    "decode_bad_sink_nan": seed(DECODE, config(E=8, hq=2),
                                decode(prompt=2, singles=2, dt=1,
                                       sinks=(1.5, 0.0), bad=1)),
    "decode_bad_dropout": seed(DECODE, config(E=8, hq=2, pos=ALIBI),
                               decode(flags=1, prompt=2, singles=1, bad=2)),
}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus",
                       "layer")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, "seed_" + name), "wb") as f:
            f.write(data)
    print(f"{len(SEEDS)} seeds in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
