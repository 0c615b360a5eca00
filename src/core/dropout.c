/* attn_dropout_keep (attn.h): the public form of the mask the kernels
 * apply (kernels/philox.h), so callers and tests can read it back. */
#include "core/internal.h"
#include "kernels/philox.h"

int attn_dropout_keep(uint64_t seed, float p, int64_t b, int64_t h, int64_t i,
                      int64_t j) {
  if (!(p < 1.0f)) /* p >= 1 or NaN: nothing kept */
    return 0;
  if (p <= 0.0f)
    return 1;
  attn_dropout dr;
  attn_dropout_init(&dr, seed, p, b, h);
  return attn_dropout_kept(&dr, i, j);
}
