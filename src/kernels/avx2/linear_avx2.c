/* Linear attention's work items compiled with AVX2 + FMA (linear_body.h):
 * its register blocks on the AVX2 vocabulary of src/kernels/simd.h, the
 * scalar remainders with fused multiply-adds (and used on AVX-512
 * machines too). */
#define ATTN_SIMD_AVX2 1
#define LIN_NAME(x) x##_avx2
#define LIN_MADD(a, x, y) __builtin_fmaf((a), (x), (y))
#include "linear/linear_body.h"
