/* Decode Q K and P V with bf16 dot products (vdpbf16ps, AVX512-BF16) for
 * bf16 q and k (v): decode_bf16dot.h; the rest of the chunk is
 * decode_avx512.c's. */
#define ATTN_SIMD_AVX512 1
#define ATTN_SIMD_BF16 1
#include "kernels/simd.h"

#include "kernels/decode_kernels.h"

#define KSUFFIX avx512bf16
#include "kernels/decode_bf16dot.h"
