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

attn_tensor attn_tensor_bshd(void *data, attn_dtype dtype, int64_t batch,
                             int64_t seq, int64_t heads, int64_t dim) {
  const int64_t shape[4] = {batch, seq, heads, dim};
  const int64_t stride[4] = {seq * heads * dim, heads * dim, dim, 1};
  return make(data, dtype, shape, stride);
}

attn_tensor attn_tensor_bhsd(void *data, attn_dtype dtype, int64_t batch,
                             int64_t seq, int64_t heads, int64_t dim) {
  const int64_t shape[4] = {batch, seq, heads, dim};
  const int64_t stride[4] = {heads * seq * dim, dim, seq * dim, 1};
  return make(data, dtype, shape, stride);
}

attn_tensor attn_tensor_contiguous(void *data, attn_dtype dtype, int64_t d0,
                                   int64_t d1, int64_t d2, int64_t d3) {
  const int64_t shape[4] = {d0, d1, d2, d3};
  const int64_t stride[4] = {d1 * d2 * d3, d2 * d3, d3, 1};
  return make(data, dtype, shape, stride);
}
