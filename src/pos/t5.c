/* T5's bucketed relative positions (Raffel et al. 2020, "Exploring the
 * Limits of Transfer Learning with a Unified Text-to-Text Transformer",
 * section 2.1), as Hugging Face transformers computes them
 * (T5Attention._relative_position_bucket, after Mesh TensorFlow).
 *
 * The reference works on int64 tensors and one float32 tensor. With
 * rel = key position - query position and B = buckets, D = max_distance:
 *
 *   ret = 0
 *   bidirectional:  B = B / 2 (integer);  ret = (rel > 0) ? B : 0;
 *                   n = |rel|
 *   otherwise:      n = max(-rel, 0)
 *   E = B / 2 (integer)                   "max_exact"
 *   n < E:          bucket = ret + n
 *   n >= E:         x = logf((float)n / (float)E)          f32 ops
 *                       / (float)log((double)D / (double)E) f32 divide
 *                       * (float)(B - E)                    f32 multiply
 *                   bucket = ret + min(E + trunc(x), B - 1)
 *
 * The float32 steps are torch's: .float() rounds n to f32, dividing an f32
 * tensor by the Python int E is an f32 division, torch.log is f32, and
 * dividing by the Python float math.log(D / E) (a double) casts that double
 * to f32 first (TensorIterator's common dtype is float32; the CPU kernel
 * computes a / b in scalar_t), then the multiply by the int B - E is f32
 * and .to(torch.long) truncates toward zero. Every step here is the same
 * IEEE f32 operation in the same order, so bucket edges land where the
 * reference puts them (up to torch's own log, whose vector form is within
 * 1 ulp like glibc's logf; no edge of the usual tables is that close).
 *
 * Where the reference itself is undefined we choose:
 *   E == 0 (B = 1, or bidirectional with B < 4): Python raises
 *     ZeroDivisionError; here every distance of a direction gets that
 *     direction's last bucket, B - 1 (which is then its only one).
 *   x NaN or +inf (D == E): the reference's cast is undefined; here B - 1
 *     (every distance >= D shares the last bucket, as T5 intends).
 *   E + trunc(x) < 0 (D < E, far distances): the reference yields a
 *     negative index (an error in its embedding lookup); here 0, so the
 *     result stays in 0 .. buckets - 1.
 */
#include "core/internal.h"

#include <math.h>

/* Bucket of a non-negative distance n among nb buckets of one direction. */
static int64_t t5_bucket_dir(uint64_t n, int64_t nb, int64_t max_distance) {
  int64_t exact = nb / 2;
  if (exact == 0)
    return nb - 1;
  if (n < (uint64_t)exact)
    return (int64_t)n;
  float ratio = (float)n / (float)exact;
  float denom = (float)log((double)max_distance / (double)exact);
  float x = logf(ratio) / denom * (float)(nb - exact);
  /* trunc(x) toward zero, clamped before the cast so it is defined; the
   * clamps to the range come after it, in integers: (float)(nb - exact)
   * and (float)exact are rounded once above 2^24 and would misplace the
   * edge buckets. */
  if (!(x < 0x1p62f)) /* also NaN and +inf: past the last bucket */
    return nb - 1;
  if (x <= -0x1p62f)
    return 0;
  int64_t b = exact + (int64_t)x; /* |x| < 2^62, exact <= 2^62 */
  if (b > nb - 1)
    b = nb - 1;
  return b < 0 ? 0 : b;
}

int64_t attn_t5_bucket(int64_t rel, int64_t buckets, int64_t max_distance,
                       int bidirectional) {
  if (buckets < 1 || max_distance < 1 || (bidirectional && buckets < 2))
    return -1;
  /* |rel| without overflow at INT64_MIN. */
  uint64_t mag = rel < 0 ? (uint64_t)0 - (uint64_t)rel : (uint64_t)rel;
  if (bidirectional) {
    int64_t half = buckets / 2;
    int64_t ret = rel > 0 ? half : 0;
    return ret + t5_bucket_dir(mag, half, max_distance);
  }
  return t5_bucket_dir(rel < 0 ? mag : 0, buckets, max_distance);
}
