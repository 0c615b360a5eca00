/* Decode Q K and P V with the bf16 dot product emulated exactly (simd.h)
 * for bf16 q and k (v): decode_bf16dot.h, the reference for every
 * machine's numerics of that path; the rest of the chunk is
 * decode_generic.c's. */
#define ATTN_SIMD_GENERIC 1
#define ATTN_SIMD_BF16 1
#include "kernels/simd.h"

#include "kernels/decode_kernels.h"

#define KSUFFIX generic_bf16
#include "kernels/decode_bf16dot.h"
