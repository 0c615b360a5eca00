/*
 * t5_cost.c - what the T5 table costs the forward (and the backward):
 * attn_forward on b1 h8 s1024 d64 f32 (non-causal and causal), with and
 * without a rel_bias table (32 buckets, max distance 128), and with ALiBi
 * instead (another modifier: both leave the fused no-modifier path of full
 * tiles), best of N runs.
 *
 *   cc -O2 -Iinclude bench/t5_cost.c build/libattn.a -lm -lpthread \
 *      -o /tmp/t5_cost && /tmp/t5_cost [threads (1)] [repeats (20)]
 *
 * Not part of the build or the tests; timings on a shared machine are
 * noisy (the lead re-measures alone).
 */
#define _POSIX_C_SOURCE 199309L
#include <attn.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { B = 1, H = 8, S = 1024, D = 64, NB = 32 };

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *rnd(size_t n, unsigned *seed) {
  float *x = malloc(n * sizeof *x);
  for (size_t i = 0; x && i < n; i++) {
    *seed = *seed * 1664525u + 1013904223u;
    x[i] = (float)(*seed >> 8) / 16777216.0f - 0.5f;
  }
  return x;
}

int main(int argc, char **argv) {
  const int threads = argc > 1 ? atoi(argv[1]) : 1;
  const int reps = argc > 2 ? atoi(argv[2]) : 20;
  unsigned seed = 1;
  const size_t n = (size_t)B * S * H * D;
  float *q = rnd(n, &seed), *k = rnd(n, &seed), *v = rnd(n, &seed);
  float *o = rnd(n, &seed), *tab = rnd((size_t)NB * H, &seed);
  float *lse = rnd((size_t)B * H * S, &seed);
  float *dq = rnd(n, &seed), *dk = rnd(n, &seed), *dv = rnd(n, &seed);
  float *dout = rnd(n, &seed), *drel = rnd((size_t)NB * H, &seed);
  if (!q || !k || !v || !o || !tab || !lse || !dq || !dk || !dv || !dout ||
      !drel)
    return 1;
  printf("b%d h%d s%d d%d f32, %d thread(s), best of %d\n", B, H, S, D, threads,
         reps);
  for (int causal = 0; causal < 2; causal++)
    for (int t5 = 0; t5 < 3; t5++) {
      attn_params p;
      attn_params_init(&p);
      p.q = attn_tensor_bshd(q, ATTN_DTYPE_F32, B, S, H, D);
      p.k = attn_tensor_bshd(k, ATTN_DTYPE_F32, B, S, H, D);
      p.v = attn_tensor_bshd(v, ATTN_DTYPE_F32, B, S, H, D);
      p.o = attn_tensor_bshd(o, ATTN_DTYPE_F32, B, S, H, D);
      p.lse = lse;
      p.num_threads = threads;
      p.causal = causal ? ATTN_CAUSAL_BOTTOM_RIGHT : ATTN_CAUSAL_NONE;
      if (t5 == 2) /* another score modifier, for reference */
        p.alibi_slopes = tab;
      if (t5 == 1) {
        p.rel_bias = tab;
        p.rel_buckets = NB;
        p.rel_bidirectional = !causal;
        p.drel_bias = drel;
      }
      p.dout = attn_tensor_bshd(dout, ATTN_DTYPE_F32, B, S, H, D);
      p.dq = attn_tensor_bshd(dq, ATTN_DTYPE_F32, B, S, H, D);
      p.dk = attn_tensor_bshd(dk, ATTN_DTYPE_F32, B, S, H, D);
      p.dv = attn_tensor_bshd(dv, ATTN_DTYPE_F32, B, S, H, D);
      double best_f = 1e9, best_b = 1e9;
      for (int r = 0; r < reps; r++) {
        double t0 = now();
        if (attn_forward(NULL, &p) != ATTN_OK)
          return 1;
        double t1 = now();
        if (attn_backward(NULL, &p) != ATTN_OK)
          return 1;
        double t2 = now();
        best_f = t1 - t0 < best_f ? t1 - t0 : best_f;
        best_b = t2 - t1 < best_b ? t2 - t1 : best_b;
      }
      printf("  %-8s %-9s forward %7.2f ms   backward %7.2f ms\n",
             causal ? "causal" : "full",
             t5 == 1 ? "T5 table"
             : t5    ? "ALiBi"
                     : "no table",
             1e3 * best_f, 1e3 * best_b);
    }
  free(q), free(k), free(v), free(o), free(tab), free(lse);
  free(dq), free(dk), free(dv), free(dout), free(drel);
  return 0;
}
