"""libattn from Python: self-attention on the CPU, zero copies.

    import numpy as np, attn
    q = np.random.randn(2, 128, 8, 64).astype(np.float32)   # [b, s, h, d]
    k = v = np.random.randn(2, 128, 2, 64).astype(np.float32)
    o, lse = attn.forward(q, k, v, causal=True, return_lse=True)
    dq, dk, dv = attn.backward(np.ones_like(o), q, k, v, o, lse, causal=True)
    o = attn.forward(q, k, v, sparse="strided:16")   # Child et al.
    o = attn.linear_forward(q, k, v, causal=True)     # Katharopoulos et al.

``attn.torch`` has ``scaled_dot_product_attention`` (PyTorch's semantics,
autograd) and FlashAttention's ``flash_attn_func``/``flash_attn_varlen_func``;
``attn.hf.register()`` adds ``attn_implementation="libattn"`` to Hugging
Face transformers. Where the library and the extension are found:
``attn._loader``.
"""

from . import _api, _errors, _layer, _loader
from ._api import (backward, forward, linear_backward, linear_forward, merge,
                   merge_backward)
from ._cache import KVCache
from ._mask import Mask, compile_mask
from ._positions import (alibi_slopes, dequantize, quantize, rope_apply,
                         rope_frequencies, sinusoidal_table, t5_bucket)
from ._layer import Layer
from ._errors import (AttnError, AttnMemoryError, AttnRuntimeError,
                      AttnTypeError, AttnValueError)

_ext, _ext_dir = _loader.load_extension()
library_path = _loader.library_path(_ext_dir)
_ext.load(library_path)
_ext.set_error_factory(_errors.make)
_api._ext = _ext
_api._ext_dir = _ext_dir
_layer._libattn_path = library_path  # attn.Layer looks beside it

try:  # installed (pip install .): the distribution's version
    from importlib.metadata import PackageNotFoundError, version as _dist_v
    __version__ = _dist_v("libattn")
except (ImportError, PackageNotFoundError):  # the source tree
    __version__ = _ext.version()


def library_version() -> str:
    """Version string of the loaded libattn (attn_version_string())."""
    return _ext.version()


__all__ = ["forward", "backward", "merge", "merge_backward", "linear_forward",
           "linear_backward", "KVCache", "Layer", "AttnError",
           "rope_apply", "rope_frequencies", "sinusoidal_table",
           "alibi_slopes", "t5_bucket", "quantize", "dequantize", "Mask",
           "compile_mask",
           "AttnValueError", "AttnTypeError", "AttnMemoryError",
           "AttnRuntimeError", "library_version", "library_path",
           "__version__"]
