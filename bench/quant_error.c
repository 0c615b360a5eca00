/*
 * quant_error.c - the error of attention with K and V quantised (q8_0,
 * q4_0: GGUF's blocks of 32) against attention on the unquantised f32 K
 * and V, on random data: decode (1 query row, 32/8 heads, head_dim 128,
 * 4096 keys) and prefill (512 x 512, 8/8 heads, head_dim 64, causal), for
 * K and V drawn normal N(0, 1), and with a few outlier channels (K's
 * channel 5 x 10, as in trained models), which widen a block's scale.
 * Prints max |o_q - o_f32|, the RMS error and both relative to the RMS of
 * o_f32. Errors, not timings: the test suite checks correctness
 * (tests/test_quant.c: quantised attention against the oracle on the
 * dequantised values); this shows what quantising costs in accuracy.
 *
 *   cc -O2 -Iinclude bench/quant_error.c build/libattn.a -lm -lpthread \
 *      -o /tmp/quant_error && /tmp/quant_error
 */
#include <attn.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t rng = 0x5EEDF00Dull;
static double unit(void) {
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(rng >> 11) / 9007199254740992.0;
}
static float normal(void) {
  const double u = unit() + 1e-300, v = unit();
  return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

/* [1, s, h, d] f32 rows quantised into dense blocks. */
static void *quantise(const float *x, int64_t rows, int64_t d, attn_dtype dt) {
  const size_t rb = (size_t)(d / 32) * attn_dtype_size(dt);
  char *q = malloc((size_t)rows * rb);
  for (int64_t r = 0; r < rows; r++)
    attn_quantize_row(dt, x + r * d, d, q + (size_t)r * rb);
  return q;
}

static void run(const char *name, int64_t sq, int64_t sk, int64_t hq,
                int64_t hk, int64_t d, int causal, int outliers) {
  const int64_t nq = sq * hq * d, nk = sk * hk * d;
  float *q = malloc(sizeof(float) * (size_t)nq);
  float *k = malloc(sizeof(float) * (size_t)nk);
  float *v = malloc(sizeof(float) * (size_t)nk);
  float *o32 = malloc(sizeof(float) * (size_t)nq);
  float *oq = malloc(sizeof(float) * (size_t)nq);
  for (int64_t i = 0; i < nq; i++)
    q[i] = normal();
  for (int64_t i = 0; i < nk; i++) {
    k[i] = normal();
    v[i] = normal();
    if (outliers && i % d == 5)
      k[i] *= 10.0f;
  }
  attn_params p;
  attn_params_init(&p);
  p.q = attn_tensor_bshd(q, ATTN_DTYPE_F32, 1, sq, hq, d);
  p.k = attn_tensor_bshd(k, ATTN_DTYPE_F32, 1, sk, hk, d);
  p.v = attn_tensor_bshd(v, ATTN_DTYPE_F32, 1, sk, hk, d);
  p.o = attn_tensor_bshd(o32, ATTN_DTYPE_F32, 1, sq, hq, d);
  p.causal = causal ? ATTN_CAUSAL_BOTTOM_RIGHT : ATTN_CAUSAL_NONE;
  if (attn_forward(NULL, &p) != ATTN_OK) {
    printf("%s: f32 forward failed\n", name);
    exit(1);
  }
  double ref2 = 0;
  for (int64_t i = 0; i < nq; i++)
    ref2 += (double)o32[i] * o32[i];
  const double rms_ref = sqrt(ref2 / (double)nq);
  static const attn_dtype dts[2] = {ATTN_DTYPE_Q8_0, ATTN_DTYPE_Q4_0};
  for (int t = 0; t < 2; t++) {
    void *kq = quantise(k, sk * hk, d, dts[t]);
    void *vq = quantise(v, sk * hk, d, dts[t]);
    attn_params pq = p;
    pq.k = attn_tensor_bshd(kq, dts[t], 1, sk, hk, d);
    pq.v = attn_tensor_bshd(vq, dts[t], 1, sk, hk, d);
    pq.o.data = oq;
    if (attn_forward(NULL, &pq) != ATTN_OK) {
      printf("%s: quantised forward failed\n", name);
      exit(1);
    }
    double mx = 0, e2 = 0;
    for (int64_t i = 0; i < nq; i++) {
      const double e = fabs((double)oq[i] - o32[i]);
      mx = e > mx ? e : mx;
      e2 += e * e;
    }
    const double rms = sqrt(e2 / (double)nq);
    printf("%-34s %-5s max %.3e  rms %.3e  (rms(o) %.3f: max %.2f%%, rms "
           "%.2f%%)\n",
           name, dts[t] == ATTN_DTYPE_Q8_0 ? "q8_0" : "q4_0", mx, rms, rms_ref,
           100 * mx / rms_ref, 100 * rms / rms_ref);
    free(kq);
    free(vq);
  }
  free(q), free(k), free(v), free(o32), free(oq);
}

int main(void) {
  printf("attention with quantised K and V against f32 K and V\n");
  run("decode 1x4096 h32/8 d128", 1, 4096, 32, 8, 128, 1, 0);
  run("decode 1x4096 h32/8 d128 outliers", 1, 4096, 32, 8, 128, 1, 1);
  run("prefill 512x512 h8 d64 causal", 512, 512, 8, 8, 64, 1, 0);
  run("prefill 512x512 h8 d64 outliers", 512, 512, 8, 8, 64, 1, 1);
  return 0;
}
