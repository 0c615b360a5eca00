/* The forward kernel for bf16 Q and K with AMX (AMX-TILE, AMX-BF16):
 * fwd_body.h as in fwd_avx512bf16.c, with Q Kᵀ and a bf16 output's P V as
 * tile dot products (tdpbf16ps; docs/bf16.md). */
#define ATTN_SIMD_BF16 1
#define ATTN_FWD_BF16 1
#define ATTN_FWD_AMX 1
#include "fwd_avx512.c"
