/* The throughput probes of attn_fma_peak_gflops (f32 FMA) and
 * attn_bf16_peak_gflops (the bf16 dot product, with ATTN_SIMD_BF16),
 * written once against simd.h and compiled per ISA (<isa>/peak_<isa>.c):
 * 12 independent chains (enough to hide the latency on every x86 core we
 * know) of one instruction. Returns the FLOPs done. */
#if !defined(ATTN_SIMD_BF16)
typedef vf peak_op_t; /* the second operand */
#define PEAK_STEP(a, x, y) vf_fma((a), (x), (y))
#define PEAK_FLOPS 2.0 /* a lane: one multiply, one add */
#define PEAK_NAME peak_loop
#else
typedef vbf peak_op_t;
#define PEAK_STEP(a, x, y) vf_dot2((a), (x), (y))
#define PEAK_FLOPS 4.0 /* a lane: two multiplies, two adds */
#define PEAK_NAME peak_loop_bf16
#endif

static double KFN(PEAK_NAME)(int64_t iters) {
  vf a[12];
#if !defined(ATTN_SIMD_BF16)
  const vf x = vf_set1(0.999999f), y = vf_set1(1e-7f);
#else
  uint16_t xs[2 * VL], ys[2 * VL];
  for (int i = 0; i < 2 * VL; i++)
    xs[i] = 0x3f80, ys[i] = 0x3380; /* 1.0 and 2^-24 */
  const peak_op_t x = vbf_load(xs), y = vbf_load(ys);
#endif
  UNROLL for (int i = 0; i < 12; i++) a[i] = vf_set1((float)i);
  for (int64_t it = 0; it < iters; it++) {
    UNROLL for (int i = 0; i < 12; i++) a[i] = PEAK_STEP(a[i], x, y);
  }
  vf s = a[0];
  UNROLL for (int i = 1; i < 12; i++) s = vf_add(s, a[i]);
  volatile float sink = vf_hsum(s);
  (void)sink;
  return (double)iters * 12.0 * PEAK_FLOPS * VL;
}
