/* The decode kernel for the avx512 instruction set: the shared body in
 * decode_body.h compiled with this ISA's vocabulary and register block. */
#define ATTN_SIMD_AVX512 1
#include "kernels/simd.h"

#include "kernels/decode_kernels.h"

#define KSUFFIX avx512
/* P V register block: DMR rows x DNV vectors. */
#define DMR 4
#define DNV 4
#include "kernels/decode_body.h"

const attn_decode_kernel *attn_decode_kernel_avx512(void) {
  static const attn_decode_kernel k = {ATTN_ISA_AVX512, VL, dec_chunk_avx512};
  return &k;
}
