/* The FMA peak probe (peak_body.h) compiled for the generic instruction set. */
#define ATTN_SIMD_GENERIC 1
#include "kernels/simd.h"

#include "core/internal.h"

#define KSUFFIX generic
#include "kernels/peak_body.h"

double attn_peak_loop_generic(int64_t iters) {
  return peak_loop_generic(iters);
}
