/* The sinusoidal position table of Vaswani et al. 2017 ("Attention Is All
 * You Need", section 3.5):
 *   PE(pos, 2i)     = sin(pos / base^(2i / d_model))
 *   PE(pos, 2i + 1) = cos(pos / base^(2i / d_model))
 * Frequencies and angles in double (the angle is reduced modulo 2 pi
 * exactly, attn_pos_sincos), each entry rounded once to f32. An odd
 * d_model ends with the sine column of its last pair. */
#include "pos/pos.h"
#include "pos/rope.h"

#include <math.h>

attn_status attn_sinusoidal_table(int64_t n, int64_t d_model, int64_t pos0,
                                  double base, float *out) {
  if (!out)
    return ATTN_ERR_NULL_POINTER;
  if (n <= 0 || d_model <= 0)
    return ATTN_ERR_INVALID_SHAPE;
  int64_t count, last;
  if (__builtin_mul_overflow(n, d_model, &count) ||
      count > (int64_t)(SIZE_MAX / sizeof(float)))
    return ATTN_ERR_OVERFLOW;
  if (base == 0.0)
    base = 10000.0;
  if (!isfinite(base) || !(base > 1.0))
    return ATTN_ERR_INVALID_ARGUMENT;
  if (pos0 < -ATTN_POS_OFFSET_MAX || pos0 > ATTN_POS_OFFSET_MAX ||
      __builtin_add_overflow(pos0, n - 1, &last) || last > ATTN_POS_OFFSET_MAX)
    return ATTN_ERR_INVALID_ARGUMENT;
  for (int64_t i = 0; 2 * i < d_model; i++) {
    const double freq = pow(base, -(double)(2 * i) / (double)d_model);
    for (int64_t p = 0; p < n; p++) {
      double c, s;
      attn_pos_sincos(pos0 + p, freq, &c, &s);
      float *row = out + p * d_model;
      row[2 * i] = (float)s;
      if (2 * i + 1 < d_model)
        row[2 * i + 1] = (float)c;
    }
  }
  return ATTN_OK;
}
