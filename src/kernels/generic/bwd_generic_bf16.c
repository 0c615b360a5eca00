/* The generic backward kernel for bf16 Q, K, V and dO: bwd_body.h with the
 * bf16 dot product emulated exactly (simd.h; docs/bf16.md). */
#define ATTN_SIMD_BF16 1
#define ATTN_BWD_BF16 1
#include "bwd_generic.c"
