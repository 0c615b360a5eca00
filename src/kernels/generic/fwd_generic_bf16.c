/* The generic forward kernel for bf16 Q and K: fwd_body.h with the bf16
 * dot product emulated exactly (simd.h), the reference for every machine's
 * bf16 numerics (docs/bf16.md). */
#define ATTN_SIMD_BF16 1
#define ATTN_FWD_BF16 1
#include "fwd_generic.c"
