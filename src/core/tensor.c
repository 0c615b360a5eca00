/* Tensor views and parameter defaults. */
#include "core/internal.h"

#include <string.h>

size_t attn_dtype_size(attn_dtype dtype) {
  switch (dtype) {
  case ATTN_DTYPE_F32:
    return 4;
  case ATTN_DTYPE_BF16:
  case ATTN_DTYPE_F16:
    return 2;
  case ATTN_DTYPE_BOOL:
    return 1;
  case ATTN_DTYPE_Q8_0:
    return ATTN_Q8_0_BYTES;
  case ATTN_DTYPE_Q4_0:
    return ATTN_Q4_0_BYTES;
  }
  return 0;
}

int64_t attn_dtype_block(attn_dtype dtype) {
  switch (dtype) {
  case ATTN_DTYPE_F32:
  case ATTN_DTYPE_BF16:
  case ATTN_DTYPE_F16:
  case ATTN_DTYPE_BOOL:
    return 1;
  case ATTN_DTYPE_Q8_0:
  case ATTN_DTYPE_Q4_0:
    return ATTN_QBLOCK;
  }
  return 0;
}

static attn_tensor make(void *data, attn_dtype dt, const int64_t shape[4],
                        const int64_t stride[4]) {
  attn_tensor t;
  t.data = data;
  t.dtype = dt;
  for (int i = 0; i < 4; i++) {
    t.shape[i] = shape[i];
    t.stride[i] = stride[i];
  }
  return t;
}

/* Elements of the last axis in memory: n values, or their blocks for the
 * quantised dtypes (whose strides count blocks). */
static int64_t last_axis(attn_dtype dtype, int64_t n) {
  const int64_t blk = attn_dtype_block(dtype);
  return blk > 1 ? n / blk : n;
}

attn_tensor attn_tensor_bshd(void *data, attn_dtype dtype, int64_t batch,
                             int64_t seq, int64_t heads, int64_t dim) {
  const int64_t shape[4] = {batch, seq, heads, dim};
  const int64_t e = last_axis(dtype, dim);
  const int64_t stride[4] = {seq * heads * e, heads * e, e, 1};
  return make(data, dtype, shape, stride);
}

attn_tensor attn_tensor_bhsd(void *data, attn_dtype dtype, int64_t batch,
                             int64_t seq, int64_t heads, int64_t dim) {
  const int64_t shape[4] = {batch, seq, heads, dim};
  const int64_t e = last_axis(dtype, dim);
  const int64_t stride[4] = {heads * seq * e, e, seq * e, 1};
  return make(data, dtype, shape, stride);
}

attn_tensor attn_tensor_contiguous(void *data, attn_dtype dtype, int64_t d0,
                                   int64_t d1, int64_t d2, int64_t d3) {
  const int64_t shape[4] = {d0, d1, d2, d3};
  const int64_t e = last_axis(dtype, d3);
  const int64_t stride[4] = {d1 * d2 * e, d2 * e, e, 1};
  return make(data, dtype, shape, stride);
}
