#!/usr/bin/env python3
"""Writes fuzz/corpus/cli/: the seeds of the argument fuzzer (cli_fuzz.c).

One file per command line: the words after "attn", each ended by a NUL
byte. The lines are the README's, the commands' --help texts' and the
tests' (tests/cli/*.sh), plus the usage errors those tests check.
Run from anywhere: python3 fuzz/gen_cli_corpus.py
"""
import hashlib
import os
import shlex

RUN = "run --q Q.npy --k K.npy --v V.npy --out O.npy"
LINES = [
    # README
    'tokenize --model encoder "Héllo, wörld!"',
    'tokenize --model decoder -- "--not an option"',
    'embed "A cat sits on the mat." "A dog lies on the rug." --npy emb.npy',
    'generate "The capital of France is" -n 32',
    'generate "Hi" -n 4 --temp 0.7 --seed 3 --chat --threads 1',
    'show "The quick brown fox jumps over the lazy dog" --out maps',
    'show "The cat sat on the mat" --model decoder --layer 12 --head 3 --token sat',
    "show 4721 --model encdec --out maps-encdec",
    "show 1700 --model vit --out maps-vit --format png,svg",
    "show x --format none --weights W --threads 2",
    "train encdec --out train-encdec",
    "train vit --out train-vit --steps 10 --batch 8 --lr 1e-3 --warmup 2 --quiet",
    "train encdec --out t --d-model 32 --heads 2 --layers 1 --d-ff 64 "
    "--dropout 0.1 --weight-decay 0.01 --clip 1 --seed 5 --eval 2",
    RUN,
    RUN + " --lse L.npy --layout bhsd --scale 0.125 --causal",
    RUN + " --causal-top-left --window 4,-1 --q-pos-offset 3 --k-pos-offset 1",
    RUN + " --prefix 2 --softcap 30 --dtype bf16 --threads 2 --isa generic",
    RUN + " --rope 10000 --rope-style interleaved --rope-dims 4 "
    "--rope-scaling yarn:4 --rope-original-max 2048",
    RUN + " --rope 10000 --rope-scaling llama3:8",
    RUN + " --relative-bias T.npy --buckets 32 --max-distance 128 --bidirectional",
    RUN + " --sinks S.npy --dropout 0.1 --seed 0x1234",
    RUN + " --alibi A.npy --bias B.npy --mask M.npy --kv-lens L.npy",
    RUN + " --cu-seqlens-q CQ.npy --cu-seqlens-k CK.npy",
    RUN + " --kv-quant q8_0 --dtype f16",
    RUN + " --global G.npy --window 2,2",
    RUN + " --sparse strided:4 --causal",
    RUN + " --sparse fixed:4,1",
    RUN + " --block-mask BM.npy --block-size 16,16",
    RUN + " --linear --causal",
    RUN + " --out=O2.npy",
    "grad --q Q.npy --k K.npy --v V.npy --dout DO.npy --dq DQ.npy --dk DK.npy "
    "--dv DV.npy",
    "grad --q Q.npy --k K.npy --v V.npy --dout DO.npy --dq DQ.npy --dk DK.npy "
    "--dv DV.npy --bias B.npy --dbias DB.npy --sinks S.npy --dsinks DS.npy "
    "--relative-bias T.npy --drel DR.npy",
    "grad --q Q.npy --k K.npy --v V.npy --dout DO.npy --dq DQ.npy --dk DK.npy "
    "--dv DV.npy --linear --out O.npy --lse L.npy",
    "mha --x X.npy --weights DIR --heads 4 --out OUT.npy",
    "mha --x X.npy --y Y.npy --value V.npy --weights DIR --heads 4 "
    "--kv-heads 2 --head-dim-v 8 --out OUT.npy --positions rope --rope 10000 "
    "--causal --scale 0.5 --kv-lens L.npy --grad G.npy --grad-dir GD",
    "mha --x X.npy --weights DIR --heads 2 --out O.npy --positions sinusoidal "
    "--sinusoidal-base 10000",
    "mha --x X.npy --weights DIR --heads 2 --out O.npy --positions t5 "
    "--t5-max-distance 64 --t5-unidirectional",
    "merge --part O1.npy,LSE1.npy --part O2.npy,LSE2.npy --out O.npy "
    "--lse LSE.npy",
    "merge --part O1.npy,L1.npy --part O2.npy,L2.npy --out O.npy --sinks S.npy "
    "--layout bhsd --threads 2",
    "decode --heads-q 32 --heads-kv 8 --head-dim 128 --cache-len 32768",
    "decode --batch 2 --queries 4 --dtype q4_0 --page-size 16 --threads 2 "
    "--reps 3 --check --json",
    "decode --dtype bf16 --bandwidth 20 --isa avx2",
    "bench --batch 1 --heads 8 --kv-heads 2 --seq 128 --dim 64",
    "bench --seq-q 16 --seq-k 64 --dim 32 --dim-v 16 --causal --dtype f16 "
    "--threads 1 --isa auto --repeat 1 --warmup 0 --no-check --peak 100 --json",
    "peak --threads 1 --seconds 0.1 --json",
    "peak",
    # usage errors the tests check
    "run --q Q.npy --k K.npy --v V.npy",
    RUN + " --q Q2.npy",
    RUN + " --scale 0",
    RUN + " --scale nan",
    RUN + " --window 3",
    RUN + " --window -2,1",
    RUN + " --threads 257",
    RUN + " --isa sse",
    RUN + " --dtype f64",
    RUN + " --dropout 1",
    RUN + " --seed 5",
    RUN + " --causal --causal-top-left",
    RUN + " --prefix 1 --causal",
    RUN + " --rope-dims 4",
    RUN + " --rope 1",
    RUN + " --cu-seqlens-q CQ.npy",
    RUN + " --causal=1",
    RUN + " --lse O.npy",
    "run --q Q.npy --k K.npy --v V.npy --out Q.npy",
    "run extra",
    "run -x",
    "run --",
    "frobnicate",
    "",
    "tokenize --model encoder",
    "tokenize --model neither text",
    "train",
    "train cnn --out x",
]


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus",
                       "cli")
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(out):
        if name.startswith("seed_"):
            os.remove(os.path.join(out, name))
    for line in LINES:
        words = shlex.split(line)
        data = b"".join(w.encode("utf-8") + b"\0" for w in words)
        if not data:
            data = b"\0"
        digest = hashlib.sha1(data).hexdigest()[:12]
        cmd = words[0] if words else "empty"
        with open(os.path.join(out, "seed_%s_%s" % (cmd, digest)), "wb") as f:
            f.write(data)
    print("%d seeds in %s" % (len(LINES), out))


if __name__ == "__main__":
    main()
