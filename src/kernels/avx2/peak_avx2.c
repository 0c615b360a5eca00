/* The FMA peak probe (peak_body.h) compiled for the avx2 instruction set. */
#define ATTN_SIMD_AVX2 1
#include "kernels/simd.h"

#include "core/internal.h"

#define KSUFFIX avx2
#include "kernels/peak_body.h"

double attn_peak_loop_avx2(int64_t iters) { return peak_loop_avx2(iters); }
