/* Decode Q K and P V with bf16 dot products (vdpbf16ps, AVX512-BF16) for bf16 q
 * and k: decode_bf16dot.h; the rest of the chunk is decode_avx512.c's. */
#define ATTN_SIMD_AVX512 1
#define ATTN_SIMD_BF16 1
#include "kernels/simd.h"

#include "kernels/decode_kernels.h"

#define KSUFFIX avx512bf16
#include "kernels/decode_bf16dot.h"

void attn_dec_qk_bf16_avx512bf16(const attn_dec_chunk *c) {
  dec_qk_bf16dot_avx512bf16(c);
}

void attn_dec_pv_bf16_avx512bf16(const attn_dec_chunk *c) {
  dec_pv_bf16dot_avx512bf16(c);
}
