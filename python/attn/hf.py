"""Hugging Face transformers integration.

    import attn.hf
    attn.hf.register()                 # once per process
    model = AutoModel.from_pretrained(path, attn_implementation="libattn")

``register()`` adds "libattn" to transformers' ``AttentionInterface`` (the
attention call of every model written against it: Llama, Mistral, Qwen,
BERT, ... in transformers >= 4.48) and to ``AttentionMaskInterface``
(transformers >= 4.53: the masks are built as for "sdpa", boolean
``[batch, 1, q, k]`` with True = attend, or None when a causal flag says it
all). The attention itself is :func:`attention_forward`.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from . import torch as attn_torch

NAME = "libattn"


def attention_forward(module: torch.nn.Module, query: torch.Tensor,
                      key: torch.Tensor, value: torch.Tensor,
                      attention_mask: Optional[torch.Tensor],
                      dropout: float = 0.0, scaling: Optional[float] = None,
                      is_causal: Optional[bool] = None,
                      **kwargs) -> Tuple[torch.Tensor, None]:
    """transformers' attention signature: query ``[batch, heads, q, d]``,
    key/value ``[batch, kv_heads, k, d]`` -> (``[batch, q, heads, d]``,
    None). The same decisions as transformers' "sdpa" (causal only when
    there is no mask and more than one query; top-left, so a prefill into
    a longer empty cache stays right), with GQA read in place (no
    repeat_kv copy). ``softcap`` (Gemma 2) and ``position_bias`` (T5-style,
    added to the mask) are supported; ``output_attentions`` is not (no
    probabilities are materialised)."""
    softcap = kwargs.get("softcap")
    position_bias = kwargs.get("position_bias")
    q_len = query.shape[2]
    if is_causal is None:
        is_causal = getattr(module, "is_causal", True)
    is_causal = bool(q_len > 1 and attention_mask is None and is_causal)
    if position_bias is not None:
        # a float mask: the bias where the boolean mask allows, -inf elsewhere
        bias = position_bias.to(torch.float32)
        if attention_mask is not None:
            if attention_mask.dtype == torch.bool:
                bias = bias.masked_fill(~attention_mask, float("-inf"))
            else:
                bias = bias + attention_mask
        elif is_causal:
            tri = torch.ones(q_len, key.shape[2], dtype=torch.bool).tril()
            bias = bias.masked_fill(~tri, float("-inf"))
        attention_mask, is_causal = bias, False
    if softcap:
        out = _softcapped(query, key, value, attention_mask, dropout, scaling,
                          is_causal, float(softcap))
    else:
        out = attn_torch.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=dropout,
            scale=scaling, is_causal=is_causal,
            enable_gqa=query.shape[1] != key.shape[1])
    # out is [b, h, q, d] over [b, q, h, d] memory: this is a view, and
    # .contiguous() copies nothing
    return out.transpose(1, 2).contiguous(), None


def _softcapped(query, key, value, mask, dropout, scaling, is_causal,
                softcap):
    bias = boolmask = None
    if mask is not None:
        if mask.dtype == torch.bool:
            boolmask = mask
        else:
            bias = mask.float()
    opts = attn_torch._Opts(1, 2 if is_causal else 0, scale=scaling,
                            softcap=softcap, mask=boolmask, dropout_p=dropout)
    opts.lse_shape = (query.shape[0], query.shape[1], query.shape[2])
    out, _ = attn_torch._apply(query, key, value, bias, opts)
    return out


def register(name: str = NAME) -> str:
    """Registers libattn under ``name`` with transformers; returns the name
    to pass as ``attn_implementation``. Idempotent."""
    try:
        from transformers import AttentionInterface
    except ImportError as e:
        raise RuntimeError("attn.hf: transformers >= 4.48 (AttentionInterface)"
                           " is needed: %s" % e) from None
    AttentionInterface.register(name, attention_forward)
    try:
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    except ImportError:
        pass  # older transformers build the mask inside each model
    else:
        AttentionMaskInterface.register(name, sdpa_mask)
    return name
