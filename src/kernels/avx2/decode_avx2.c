/* The decode kernel for the avx2 instruction set: the shared body in
 * decode_body.h compiled with this ISA's vocabulary and register block. */
#define ATTN_SIMD_AVX2 1
#include "kernels/simd.h"

#include "kernels/decode_kernels.h"

#define KSUFFIX avx2
/* P V register block: DMR rows x DNV vectors. */
#define DMR 4
#define DNV 2
#include "kernels/decode_body.h"

const attn_decode_kernel *attn_decode_kernel_avx2(void) {
  static const attn_decode_kernel k = {ATTN_ISA_AVX2, VL, dec_chunk_avx2};
  return &k;
}
