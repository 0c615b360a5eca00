/* Setup of the score modifiers (score.h). */
#include "kernels/score.h"

#include <math.h>
#include <string.h>

void attn_score_setup(const attn_params *p, const attn_seq *s,
                      const attn_pos *pos, int64_t h, attn_score *sc) {
  sc->softcap = p->softcap;
  sc->alibi = p->alibi_slopes ? p->alibi_slopes[h] : 0.0f;
  sc->qk = pos->q0 - pos->k0;
  sc->sk = s->sk;
  sc->bias = NULL;
  sc->bias_si = sc->bias_sj = 0;
  if (p->bias.data) {
    const attn_tensor *b = &p->bias;
    const int64_t off = (b->shape[0] == 1 ? 0 : s->b * b->stride[0]) +
                        (b->shape[1] == 1 ? 0 : h * b->stride[1]);
    sc->bias = (const float *)b->data + off;
    sc->bias_si = b->shape[2] == 1 ? 0 : b->stride[2];
    sc->bias_sj = b->shape[3] == 1 ? 0 : b->stride[3];
  }
}

int attn_row_poison(float *x, int64_t n) {
  /* Non-finite means an all-ones exponent; adding one to the exponent
   * field then carries into the sign bit. Plain integer AND, ADD and OR,
   * which the compiler vectorises even for baseline SSE2 (isfinite it
   * does not). */
  uint32_t e = 0;
  for (int64_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, &x[i], sizeof u);
    e |= (u & 0x7f800000u) + 0x00800000u;
  }
  if (!(e & 0x80000000u))
    return 0;
  for (int64_t i = 0; i < n; i++)
    x[i] = NAN;
  return 1;
}
