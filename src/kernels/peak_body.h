/* The FMA throughput probe of attn_fma_peak_gflops, written once against
 * simd.h and compiled per ISA (<isa>/peak_<isa>.c). */
/* FMA throughput probe for attn_fma_peak_gflops: 12 independent chains
 * (enough to hide FMA latency on every x86 core we know). Returns FLOPs. */
#if !defined(ATTN_SIMD_BF16)
static double KFN(peak_loop)(int64_t iters) {
  vf a[12];
  const vf x = vf_set1(0.999999f), y = vf_set1(1e-7f);
  UNROLL for (int i = 0; i < 12; i++) a[i] = vf_set1((float)i);
  for (int64_t it = 0; it < iters; it++) {
    UNROLL for (int i = 0; i < 12; i++) a[i] = vf_fma(a[i], x, y);
  }
  vf s = a[0];
  UNROLL for (int i = 1; i < 12; i++) s = vf_add(s, a[i]);
  volatile float sink = vf_hsum(s);
  (void)sink;
  return (double)iters * 12.0 * 2.0 * VL;
}
#else
/* The same with vf_dot2 (two multiplies and two adds a lane). */
static double KFN(peak_loop_bf16)(int64_t iters) {
  vf a[12];
  uint16_t xs[2 * VL], ys[2 * VL];
  for (int i = 0; i < 2 * VL; i++)
    xs[i] = 0x3f80, ys[i] = 0x3380; /* 1.0 and 2^-24 */
  const vbf x = vbf_load(xs), y = vbf_load(ys);
  UNROLL for (int i = 0; i < 12; i++) a[i] = vf_set1((float)i);
  for (int64_t it = 0; it < iters; it++) {
    UNROLL for (int i = 0; i < 12; i++) a[i] = vf_dot2(a[i], x, y);
  }
  vf s = a[0];
  UNROLL for (int i = 1; i < 12; i++) s = vf_add(s, a[i]);
  volatile float sink = vf_hsum(s);
  (void)sink;
  return (double)iters * 12.0 * 4.0 * VL;
}
#endif
