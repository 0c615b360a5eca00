/* Tensor access and rounding shared by the oracles: see oracle_base.h. */
#include "oracle_base.h"

#include "test_common.h"

#include <math.h>

double oracle_tensor_get_any(const attn_tensor *t, int64_t i0, int64_t i1,
                             int64_t i2, int64_t i3) {
  const int64_t idx[4] = {i0, i1, i2, i3};
  int64_t off = 0;
  const int quant = t->dtype == ATTN_DTYPE_Q8_0 || t->dtype == ATTN_DTYPE_Q4_0;
  for (int a = 0; a < 4; a++)
    if (t->shape[a] != 1)
      off += (quant && a == 3 ? idx[a] / 32 : idx[a]) * t->stride[a];
  switch (t->dtype) {
  case ATTN_DTYPE_Q8_0:
  case ATTN_DTYPE_Q4_0: {
    /* GGUF blocks of 32 (strides count blocks): f16 scale, then int8
     * quants (q8_0) or nibbles, low ones first (q4_0) */
    const uint8_t *blk = (const uint8_t *)t->data +
                         off * (t->dtype == ATTN_DTYPE_Q8_0 ? 34 : 18);
    const double d = tc_f16_to_f32((uint16_t)(blk[0] | blk[1] << 8));
    const int e = (int)(i3 % 32);
    if (t->dtype == ATTN_DTYPE_Q8_0)
      return d * (int8_t)blk[2 + e];
    const int nib = e < 16 ? blk[2 + e] & 15 : blk[2 + e - 16] >> 4;
    return d * (nib - 8);
  }
  case ATTN_DTYPE_F32:
    return ((const float *)t->data)[off];
  case ATTN_DTYPE_BF16:
    return tc_bf16_to_f32(((const uint16_t *)t->data)[off]);
  case ATTN_DTYPE_F16:
    return tc_f16_to_f32(((const uint16_t *)t->data)[off]);
  case ATTN_DTYPE_BOOL:
    return ((const uint8_t *)t->data)[off] != 0;
  }
  return NAN;
}

float oracle_round_to(attn_dtype dtype, float x) {
  switch (dtype) {
  case ATTN_DTYPE_BF16:
    return tc_bf16_to_f32(tc_f32_to_bf16(x));
  case ATTN_DTYPE_F16:
    return tc_f16_to_f32(tc_f32_to_f16(x));
  default:
    return x;
  }
}
