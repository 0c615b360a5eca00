/*
 * naive_decode.c - the plain loop bench/decode.py puts beside libattn and
 * PyTorch: one query row per head against a [seq, heads_kv, dim] cache,
 * written the obvious way (scores, max, exp, sum, weighted sum of V), one
 * thread, no intrinsics. bench/decode.py compiles it with the system cc
 * (-O2 -march=native) and calls it through ctypes.
 *
 *   q [hq][d] f32, k and v [n][hk][d] (f32, or bf16 as uint16), o [hq][d]
 *   s: scratch [n] floats
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

static float bf16(uint16_t x) {
  uint32_t u = (uint32_t)x << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static float at(const void *t, int is_bf16, int64_t i) {
  return is_bf16 ? bf16(((const uint16_t *)t)[i]) : ((const float *)t)[i];
}

void naive_decode(const float *q, const void *k, const void *v, float *o,
                  float *s, int64_t n, int64_t hq, int64_t hk, int64_t d,
                  int is_bf16) {
  const float scale = 1.0f / sqrtf((float)d);
  for (int64_t h = 0; h < hq; h++) {
    const int64_t g = h / (hq / hk);
    float m = -INFINITY, l = 0.0f;
    for (int64_t j = 0; j < n; j++) {
      float dot = 0.0f;
      for (int64_t x = 0; x < d; x++)
        dot += q[h * d + x] * at(k, is_bf16, (j * hk + g) * d + x);
      s[j] = dot * scale;
      m = s[j] > m ? s[j] : m;
    }
    for (int64_t x = 0; x < d; x++)
      o[h * d + x] = 0.0f;
    for (int64_t j = 0; j < n; j++) {
      const float p = expf(s[j] - m);
      l += p;
      for (int64_t x = 0; x < d; x++)
        o[h * d + x] += p * at(v, is_bf16, (j * hk + g) * d + x);
    }
    for (int64_t x = 0; x < d; x++)
      o[h * d + x] /= l;
  }
}
