/*
 * dropout_cost.c - what dropout (p = 0.1) and sinks (one logit per head,
 * with dsinks) cost the forward and the forward + backward:
 * attn_forward / attn_backward on b1 h8 s2048 d64 f32 (non-causal and
 * causal), plain, with sinks and with dropout, the three alternated run by
 * run so all see the same machine state; best of N runs.
 *
 *   cc -O2 -Iinclude bench/dropout_cost.c build/libattn.a -lm -lpthread \
 *      -o /tmp/dropout_cost && /tmp/dropout_cost [threads (1)] [repeats (5)]
 *      [isa (auto|generic|avx2|avx512)]
 *
 * Not part of the build or the tests; timings on a shared machine are
 * noisy (the lead re-measures alone).
 */
#define _POSIX_C_SOURCE 199309L
#include <attn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { B = 1, H = 8, S = 2048, D = 64 };

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

static attn_isa isa_of(const char *s) {
  if (strcmp(s, "generic") == 0)
    return ATTN_ISA_GENERIC;
  if (strcmp(s, "avx2") == 0)
    return ATTN_ISA_AVX2;
  if (strcmp(s, "avx512") == 0)
    return ATTN_ISA_AVX512;
  return ATTN_ISA_AUTO;
}

int main(int argc, char **argv) {
  const int threads = argc > 1 ? atoi(argv[1]) : 1;
  const int reps = argc > 2 ? atoi(argv[2]) : 5;
  const attn_isa isa = argc > 3 ? isa_of(argv[3]) : ATTN_ISA_AUTO;
  unsigned seed = 1;
  const size_t n = (size_t)B * S * H * D;
  float *q = rnd(n, &seed), *k = rnd(n, &seed), *v = rnd(n, &seed);
  float *o = rnd(n, &seed), *lse = rnd((size_t)B * H * S, &seed);
  float *dq = rnd(n, &seed), *dk = rnd(n, &seed), *dv = rnd(n, &seed);
  float *dout = rnd(n, &seed);
  float sinks[H], dsinks[H];
  for (int h = 0; h < H; h++)
    sinks[h] = 0.25f * (float)(h - H / 2);
  if (!q || !k || !v || !o || !lse || !dq || !dk || !dv || !dout)
    return 1;
  printf("b%d h%d s%d d%d f32, %d thread(s), isa %s, best of %d\n", B, H, S, D,
         threads, argc > 3 ? argv[3] : "auto", reps);
  for (int causal = 0; causal < 2; causal++) {
    attn_params p;
    attn_params_init(&p);
    p.q = attn_tensor_bshd(q, ATTN_DTYPE_F32, B, S, H, D);
    p.k = attn_tensor_bshd(k, ATTN_DTYPE_F32, B, S, H, D);
    p.v = attn_tensor_bshd(v, ATTN_DTYPE_F32, B, S, H, D);
    p.o = attn_tensor_bshd(o, ATTN_DTYPE_F32, B, S, H, D);
    p.lse = lse;
    p.num_threads = threads;
    p.isa = isa;
    p.causal = causal ? ATTN_CAUSAL_BOTTOM_RIGHT : ATTN_CAUSAL_NONE;
    p.dout = attn_tensor_bshd(dout, ATTN_DTYPE_F32, B, S, H, D);
    p.dq = attn_tensor_bshd(dq, ATTN_DTYPE_F32, B, S, H, D);
    p.dk = attn_tensor_bshd(dk, ATTN_DTYPE_F32, B, S, H, D);
    p.dv = attn_tensor_bshd(dv, ATTN_DTYPE_F32, B, S, H, D);
    p.dropout_seed = 0x5EEDull;
    static const char *const name[3] = {"plain", "sinks", "dropout 0.1"};
    double best_f[3] = {1e9, 1e9, 1e9}, best_fb[3] = {1e9, 1e9, 1e9};
    for (int r = 0; r < reps; r++)
      for (int drop = 0; drop < 3; drop++) {
        p.dropout_p = drop == 2 ? 0.1f : 0.0f;
        p.sinks = drop == 1 ? sinks : NULL;
        p.dsinks = drop == 1 ? dsinks : NULL;
        const double t0 = now();
        if (attn_forward(NULL, &p) != ATTN_OK)
          return 1;
        const double t1 = now();
        if (attn_backward(NULL, &p) != ATTN_OK)
          return 1;
        const double t2 = now();
        best_f[drop] = t1 - t0 < best_f[drop] ? t1 - t0 : best_f[drop];
        best_fb[drop] = t2 - t0 < best_fb[drop] ? t2 - t0 : best_fb[drop];
      }
    for (int drop = 0; drop < 3; drop++)
      printf("  %-7s %-12s forward %8.2f ms   forward+backward %8.2f ms\n",
             causal ? "causal" : "full", name[drop], 1e3 * best_f[drop],
             1e3 * best_fb[drop]);
    for (int drop = 1; drop < 3; drop++)
      printf("  %-7s %-12s costs forward %+6.1f%%   forward+backward "
             "%+6.1f%%\n",
             causal ? "causal" : "full", name[drop],
             100.0 * (best_f[drop] / best_f[0] - 1),
             100.0 * (best_fb[drop] / best_fb[0] - 1));
  }
  free(q), free(k), free(v), free(o), free(lse);
  free(dq), free(dk), free(dv), free(dout);
  return 0;
}
