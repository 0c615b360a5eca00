#!/usr/bin/env python3
"""check_rope_hf.py - libattn's RoPE frequencies against Hugging Face's.

    python3 bench/check_rope_hf.py [--lib path/to/libattn.so]

Compares attn_rope_frequencies (through ctypes) with transformers'
ROPE_INIT_FUNCTIONS (modeling_rope_utils.py) for the linear, yarn and
llama3 scalings, for NTK with HF's "dynamic" NTK (base * (F seq_len /
max_position - (F - 1))^(d/(d-2))) at the length where it equals the
static base * F^(d/(d-2)) libattn implements (seq_len = max_position
(2F - 1) / F), for partial rotary dims (linear with
partial_rotary_factor), and for plain RoPE with Llama's
compute_default_rope_parameters. HF computes the frequencies in float32, libattn in double (then
rounds to f32), so they agree to a few f32 ulps, not bitwise: the check
uses a relative tolerance of 1e-5.

Needs torch and transformers; without them it prints "skipped" and exits
0. Exit 1 on a mismatch.
"""
import argparse
import ctypes
import math
import os
import sys


class AttnRope(ctypes.Structure):
    _fields_ = [
        ("base", ctypes.c_double),
        ("style", ctypes.c_int),
        ("dims", ctypes.c_int64),
        ("scaling", ctypes.c_int),
        ("factor", ctypes.c_double),
        ("original_max_position", ctypes.c_double),
        ("low_freq_factor", ctypes.c_double),
        ("high_freq_factor", ctypes.c_double),
        ("beta_fast", ctypes.c_double),
        ("beta_slow", ctypes.c_double),
        ("mscale", ctypes.c_double),
    ]


SCALING = {"default": 0, "linear": 1, "ntk": 2, "yarn": 3, "llama3": 4}


def libattn_freqs(lib, base, head_dim, partial, kind, scaling):
    r = AttnRope()
    lib.attn_rope_init_sized(ctypes.byref(r), ctypes.sizeof(r))
    r.base = base
    r.dims = int(head_dim * partial) if partial != 1.0 else 0
    r.scaling = SCALING[kind]
    if "factor" in scaling:
        r.factor = scaling["factor"]
    if "original_max_position_embeddings" in scaling:
        r.original_max_position = scaling["original_max_position_embeddings"]
    for hf, ours in (("low_freq_factor", "low_freq_factor"),
                     ("high_freq_factor", "high_freq_factor"),
                     ("beta_fast", "beta_fast"), ("beta_slow", "beta_slow")):
        if hf in scaling:
            setattr(r, ours, scaling[hf])
    d = r.dims or head_dim
    out = (ctypes.c_float * (d // 2))()
    ms = ctypes.c_float()
    st = lib.attn_rope_frequencies_sized(ctypes.byref(r), ctypes.sizeof(r),
                                         ctypes.c_int64(head_dim), out,
                                         ctypes.byref(ms))
    if st != 0:
        raise RuntimeError(f"attn_rope_frequencies: status {st}")
    return list(out), ms.value


def hf_freqs(base, head_dim, partial, kind, scaling):
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    rs = dict(scaling)
    hf_kind = {"ntk": "dynamic"}.get(kind, kind)
    rs["rope_type"] = hf_kind
    rs["type"] = hf_kind
    omp = scaling.get("original_max_position_embeddings")
    max_pos = int(omp * scaling["factor"]) if omp else 131072
    kwargs = dict(hidden_size=head_dim * 4, num_attention_heads=4,
                  head_dim=head_dim, max_position_embeddings=max_pos,
                  rope_theta=base, partial_rotary_factor=partial)
    try:
        cfg = LlamaConfig(rope_scaling=None if kind == "default" else rs,
                          **kwargs)
    except TypeError:
        kwargs.pop("partial_rotary_factor")
        cfg = LlamaConfig(rope_scaling=None if kind == "default" else rs,
                          **kwargs)
        cfg.partial_rotary_factor = partial
    if hasattr(cfg, "rope_parameters"):  # transformers >= 5
        params = dict(rs)
        params["rope_theta"] = base
        params["partial_rotary_factor"] = partial
        cfg.rope_parameters = params
    if kind == "default":
        from transformers.models.llama.modeling_llama import \
            LlamaRotaryEmbedding
        fn = LlamaRotaryEmbedding.compute_default_rope_parameters
        try:
            inv, af = fn(cfg, device="cpu")
        except TypeError:
            inv, af = fn(cfg, "cpu")
    elif kind == "ntk":
        f = scaling["factor"]
        seq_len = max_pos * (2 * f - 1) / f
        inv, af = ROPE_INIT_FUNCTIONS[hf_kind](cfg, "cpu", seq_len=seq_len)
    else:
        inv, af = ROPE_INIT_FUNCTIONS[hf_kind](cfg, "cpu")
    return [float(x) for x in inv], float(af)


def ntk_static(base, head_dim, partial, factor):
    d = int(head_dim * partial)
    b = base * factor ** (d / (d - 2))
    return [b ** (-(2 * i) / d) for i in range(d // 2)], 1.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default=os.path.join("build", "libattn.so"))
    a = ap.parse_args()
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        print(f"check_rope_hf: skipped ({e.name} is not installed)")
        return 0
    lib = ctypes.CDLL(a.lib)
    cases = [
        ("default", 10000.0, 128, 1.0, {}),
        ("linear", 10000.0, 80, 0.5, {"factor": 2.0}),
        ("linear", 10000.0, 64, 1.0, {"factor": 4.0}),
        ("yarn", 10000.0, 128, 1.0,
         {"factor": 4.0, "original_max_position_embeddings": 4096}),
        ("yarn", 1e6, 64, 1.0,
         {"factor": 16.0, "original_max_position_embeddings": 2048,
          "beta_fast": 16.0, "beta_slow": 2.0}),
        ("llama3", 500000.0, 128, 1.0,
         {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 8192}),
        ("ntk", 10000.0, 128, 1.0, {"factor": 8.0}),
    ]
    bad = 0
    for kind, base, hd, partial, sc in cases:
        ours, oms = libattn_freqs(lib, base, hd, partial, kind, sc)
        try:
            ref, rms = hf_freqs(base, hd, partial, kind, sc)
            if kind == "ntk":  # HF's dynamic there == the static form
                st, _ = ntk_static(base, hd, partial, sc["factor"])
                if max(abs(x - y) / y for x, y in zip(st, ref)) > 1e-5:
                    raise RuntimeError("HF dynamic NTK != static formula")
        except Exception as e:  # an API this script does not know
            print(f"{kind:8s} base {base:g} d {hd}: HF call failed ({e})")
            bad += 1
            continue
        worst = max(abs(x - y) / abs(y) for x, y in zip(ours, ref))
        ok = len(ours) == len(ref) and worst <= 1e-5 and \
            math.isclose(oms, rms, rel_tol=1e-6)
        bad += not ok
        print(f"{kind:8s} base {base:g} d {hd} partial {partial}: "
              f"max rel diff {worst:.2e}, mscale {oms:.7f} vs {rms:.7f} "
              f"{'ok' if ok else 'MISMATCH'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
