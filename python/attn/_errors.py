"""Exceptions for the library's statuses (attn_status in include/attn.h)."""

STATUS_NAMES = {
    -1: "ATTN_ERR_NULL_POINTER", -2: "ATTN_ERR_INVALID_SHAPE",
    -3: "ATTN_ERR_HEAD_RATIO", -4: "ATTN_ERR_HEAD_DIM",
    -5: "ATTN_ERR_OVERLAP", -6: "ATTN_ERR_OVERFLOW",
    -7: "ATTN_ERR_INVALID_SCALE", -8: "ATTN_ERR_INVALID_SOFTCAP",
    -9: "ATTN_ERR_INVALID_WINDOW", -10: "ATTN_ERR_INVALID_SEQLENS",
    -11: "ATTN_ERR_INVALID_DTYPE", -12: "ATTN_ERR_UNSUPPORTED_ISA",
    -13: "ATTN_ERR_OUT_OF_MEMORY", -14: "ATTN_ERR_WORKSPACE_TOO_SMALL",
    -15: "ATTN_ERR_INVALID_ARGUMENT", -16: "ATTN_ERR_INVALID_STRIDE",
    -17: "ATTN_ERR_THREAD", -18: "ATTN_ERR_ABI",
}


class AttnError(Exception):
    """A status from libattn. ``status`` is the attn_status number,
    ``status_name`` its enum name, ``reason`` the library's precise message
    (attn_params.error_message)."""

    def __init__(self, status: int, reason: str):
        self.status = status
        self.status_name = STATUS_NAMES.get(status, "ATTN_ERR_%d" % -status)
        self.reason = reason
        super().__init__("%s: %s" % (self.status_name, reason))


class AttnValueError(AttnError, ValueError):
    """A bad shape, stride, length or option value."""


class AttnTypeError(AttnError, TypeError):
    """A dtype the call does not accept (ATTN_ERR_INVALID_DTYPE)."""


class AttnMemoryError(AttnError, MemoryError):
    """ATTN_ERR_OUT_OF_MEMORY."""


class AttnRuntimeError(AttnError, RuntimeError):
    """ATTN_ERR_UNSUPPORTED_ISA, ATTN_ERR_ABI, ATTN_ERR_THREAD."""


def make(status: int, reason: str) -> AttnError:
    if status == -11:
        cls = AttnTypeError
    elif status == -13:
        cls = AttnMemoryError
    elif status in (-12, -17, -18):
        cls = AttnRuntimeError
    else:
        cls = AttnValueError
    return cls(status, reason)
