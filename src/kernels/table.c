/* The kernel tables (table.h). */
#include "kernels/table.h"

static void fill_generic(attn_kernels *t) {
  t->isa = ATTN_ISA_GENERIC;
  t->fwd = attn_kernel_generic();
  t->fwd_bf16 = attn_kernel_generic_bf16();
  t->bwd_bf16 = attn_bwd_kernel_generic_bf16();
  t->bwd = attn_bwd_kernel_generic();
  t->dec = attn_decode_kernel_generic();
  t->dec_qk_bf16 = attn_dec_qk_bf16_generic_bf16;
  t->dec_pv_bf16 = attn_dec_pv_bf16_generic_bf16;
  t->peak_loop = attn_peak_loop_generic;
  t->peak_loop_bf16 = NULL; /* emulated: no peak to measure */
}

#if defined(ATTN_HAVE_X86)
static void fill_avx2(attn_kernels *t) {
  fill_generic(t);
  t->isa = ATTN_ISA_AVX2;
  t->fwd = attn_kernel_avx2();
  t->fwd_bf16 = NULL; /* no bf16 dot product: widening is faster */
  t->bwd_bf16 = NULL;
  t->dec_qk_bf16 = NULL;
  t->dec_pv_bf16 = NULL;
  t->bwd = attn_bwd_kernel_avx2();
  t->dec = attn_decode_kernel_avx2();
  t->peak_loop = attn_peak_loop_avx2;
}

static void fill_avx512(attn_kernels *t) {
  fill_avx2(t);
  t->isa = ATTN_ISA_AVX512;
  t->fwd = attn_kernel_avx512();
  t->bwd = attn_bwd_kernel_avx512();
  t->dec = attn_decode_kernel_avx512();
  t->peak_loop = attn_peak_loop_avx512;
}

static void fill_avx512bf16(attn_kernels *t) {
  fill_avx512(t);
  t->isa = ATTN_ISA_AVX512_BF16;
  t->fwd_bf16 = attn_kernel_avx512bf16();
  t->bwd_bf16 = attn_bwd_kernel_avx512bf16();
  t->dec_qk_bf16 = attn_dec_qk_bf16_avx512bf16;
  t->dec_pv_bf16 = attn_dec_pv_bf16_avx512bf16;
  t->peak_loop_bf16 = attn_peak_loop_avx512bf16;
}

static void fill_amxbf16(attn_kernels *t) {
  fill_avx512bf16(t);
#if defined(ATTN_HAVE_AMX)
  t->isa = ATTN_ISA_AMX_BF16;
  t->fwd_bf16 = attn_kernel_amxbf16();
  /* The backward recomputes S with the forward's tiles (bwd.c's use_bf16:
   * P must be the forward's) and takes f32 products for dV, dK, dQ. */
  t->bwd_bf16 = attn_bwd_kernel_amxbf16();
  /* Decode with a bf16 q on a bf16 cache: Q K with AMX tiles; P V widens
   * V (as on avx512: 99-101% of the read bandwidth there against 84-87%
   * with vdpbf16ps). */
  t->dec_qk_bf16 = attn_dec_qk_amx_amxbf16;
  t->dec_pv_bf16 = NULL;
  t->peak_loop_bf16 = attn_peak_loop_amxbf16; /* the forward's tiles */
#endif
}
#endif

void attn_kernels_for(attn_isa isa, attn_kernels *t) {
  switch (isa) {
#if defined(ATTN_HAVE_X86)
  case ATTN_ISA_AMX_BF16:
    fill_amxbf16(t);
    return;
  case ATTN_ISA_AVX512_BF16:
    fill_avx512bf16(t);
    return;
  case ATTN_ISA_AVX512:
    fill_avx512(t);
    return;
  case ATTN_ISA_AVX2:
    fill_avx2(t);
    return;
#endif
  default:
    fill_generic(t);
    return;
  }
}
