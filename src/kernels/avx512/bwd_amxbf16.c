/* The backward kernel for bf16 Q and K with AMX: bwd_body.h as in
 * bwd_avx512bf16.c, with S recomputed by the forward's tile dot products
 * (docs/bf16.md). */
#define ATTN_SIMD_BF16 1
#define ATTN_BWD_BF16 1
#define ATTN_BWD_AMX 1
#include "bwd_avx512.c"
