/* The FMA peak probe (peak_body.h) compiled for the avx512 instruction set. */
#define ATTN_SIMD_AVX512 1
#include "kernels/simd.h"

#include "core/internal.h"

#define KSUFFIX avx512
#include "kernels/peak_body.h"

double attn_peak_loop_avx512(int64_t iters) { return peak_loop_avx512(iters); }
