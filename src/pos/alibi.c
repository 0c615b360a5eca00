/* ALiBi slopes (Press, Smith & Lewis 2022, "Train Short, Test Long").
 * For n a power of two, head i (1-based) gets 2^(-8 i / n). Otherwise the
 * paper's code takes the slopes of the largest power of two m < n, then
 * every other slope of 2m for the remaining n - m heads. */
#include "core/internal.h"

#include <math.h>

static double slope(int64_t i, int64_t n) { /* i is 1-based */
  return pow(2.0, -8.0 * (double)i / (double)n);
}

attn_status attn_alibi_slopes(int64_t heads, float *slopes) {
  if (!slopes)
    return ATTN_ERR_NULL_POINTER;
  if (heads <= 0 || heads > (1 << 20))
    return ATTN_ERR_INVALID_SHAPE;
  int64_t m = 1;
  while (m * 2 <= heads)
    m *= 2;
  for (int64_t i = 0; i < m; i++)
    slopes[i] = (float)slope(i + 1, m);
  for (int64_t i = m; i < heads; i++) /* odd-numbered slopes of 2m */
    slopes[i] = (float)slope(2 * (i - m) + 1, 2 * m);
  return ATTN_OK;
}
