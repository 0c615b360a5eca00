/* Tensor access and rounding shared by the oracles: see oracle_base.h. */
#include "oracle_base.h"

#include "test_common.h"

#include <math.h>

double oracle_tensor_get(const attn_tensor *t, int64_t i0, int64_t i1,
                         int64_t i2, int64_t i3) {
  const int64_t idx[4] = {i0, i1, i2, i3};
  int64_t off = 0;
  for (int a = 0; a < 4; a++)
    if (t->shape[a] != 1)
      off += idx[a] * t->stride[a];
  switch (t->dtype) {
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
