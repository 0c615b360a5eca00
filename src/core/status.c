/* Status codes, their messages, and the version. */
#include "core/internal.h"

int attn_version_number(void) { return ATTN_VERSION_NUMBER; }

/* "MAJOR.MINOR.PATCH" from attn.h's numbers, so the two never drift. */
#define ATTN_STR_(x) #x
#define ATTN_STR(x) ATTN_STR_(x)
const char *attn_version_string(void) {
  return ATTN_STR(ATTN_VERSION_MAJOR) "." ATTN_STR(
      ATTN_VERSION_MINOR) "." ATTN_STR(ATTN_VERSION_PATCH);
}

const char *attn_strerror(attn_status status) {
  switch (status) {
  case ATTN_OK:
    return "success";
  case ATTN_ERR_NULL_POINTER:
    return "a required pointer is NULL";
  case ATTN_ERR_INVALID_SHAPE:
    return "invalid shape: a size is zero, negative or inconsistent";
  case ATTN_ERR_HEAD_RATIO:
    return "query heads must be a multiple of key/value heads";
  case ATTN_ERR_HEAD_DIM:
    return "head dimension must be in 1..256 and equal for Q and K";
  case ATTN_ERR_OVERLAP:
    return "the output memory overlaps an input or itself";
  case ATTN_ERR_OVERFLOW:
    return "a size or offset overflows 64 bits";
  case ATTN_ERR_INVALID_SCALE:
    return "scale must be finite";
  case ATTN_ERR_INVALID_SOFTCAP:
    return "softcap must be finite and >= 0 (0 = off)";
  case ATTN_ERR_INVALID_WINDOW:
    return "window bounds must be >= -1 (-1 = unbounded)";
  case ATTN_ERR_INVALID_SEQLENS:
    return "invalid sequence lengths (cu_seqlens or kv_lens)";
  case ATTN_ERR_INVALID_DTYPE:
    return "unsupported dtype or dtype combination";
  case ATTN_ERR_UNSUPPORTED_ISA:
    return "the requested instruction set is not available on this CPU";
  case ATTN_ERR_OUT_OF_MEMORY:
    return "out of memory";
  case ATTN_ERR_WORKSPACE_TOO_SMALL:
    return "the caller's workspace is smaller than required";
  case ATTN_ERR_INVALID_ARGUMENT:
    return "invalid argument";
  case ATTN_ERR_INVALID_STRIDE:
    return "invalid stride: negative, or output elements alias";
  case ATTN_ERR_THREAD:
    return "could not start a worker thread";
  case ATTN_ERR_ABI:
    return "a struct size this library does not know (built against a newer "
           "attn.h?)";
  }
  return "unknown status code";
}

static void vfail_to(char *buf, size_t size, const char *fmt, va_list ap) {
  if (buf && size > 0)
    vsnprintf(buf, size, fmt, ap);
}

attn_status attn_fail(const attn_params *p, attn_status st, const char *fmt,
                      ...) {
  va_list ap;
  va_start(ap, fmt);
  vfail_to(p ? p->error_message : NULL, p ? p->error_message_size : 0, fmt, ap);
  va_end(ap);
  return st;
}

attn_status attn_fail_to(char *buf, size_t size, attn_status st,
                         const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfail_to(buf, size, fmt, ap);
  va_end(ap);
  return st;
}
