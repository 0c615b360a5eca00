/* short_calls.c: times one short attention call in a loop (the calls where
 * per-call costs show: workspace, packing, threads), median and minimum of
 * the repetitions, f32 or bf16, [batch 1, heads, seq, dim] buffers (bhsd).
 *
 *   cc -O2 -Iinclude bench/short_calls.c -Lbuild -lattn -Wl,-rpath,build \
 *      -o /tmp/short_calls
 *   /tmp/short_calls HEADS SEQ DIM REPS MODE [causal] [threads] [dtype]
 *
 * MODE: fwd (attn_forward), bwd (attn_backward after one forward), both
 * (attn_forward then attn_backward). threads 0 (default): the library's
 * choice. dtype f32 (default), bf16 (every tensor, gradients included),
 * bf16-f32grad (bf16 inputs and output, f32 gradients) or f16 (every
 * tensor).
 * Linked against the shared library, so that two builds can be
 * compared on the same binary by LD_LIBRARY_PATH (bench/RESULTS.md, the
 * spare workspace's before and after). */
#define _POSIX_C_SOURCE 199309L
#include "attn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int by_value(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static float *buffer(size_t n, unsigned *seed) {
  float *x = malloc(n * sizeof *x);
  for (size_t i = 0; x && i < n; i++) {
    *seed = *seed * 1664525u + 1013904223u;
    x[i] = (float)(*seed >> 8) / 16777216.0f - 0.5f;
  }
  return x;
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr,
            "usage: %s HEADS SEQ DIM REPS fwd|bwd|both [causal] "
            "[threads] [f32|bf16|bf16-f32grad|f16]\n",
            argv[0]);
    return 2;
  }
  const int64_t h = atoll(argv[1]), s = atoll(argv[2]), d = atoll(argv[3]);
  const int reps = atoi(argv[4]);
  const char *mode = argv[5];
  const int causal = argc > 6 && atoi(argv[6]) != 0;
  const int threads = argc > 7 ? atoi(argv[7]) : 0;
  const char *dtype = argc > 8 ? argv[8] : "f32";
  const int g32 = strcmp(dtype, "bf16-f32grad") == 0;
  const int bf = g32 || strcmp(dtype, "bf16") == 0;
  const int f16 = strcmp(dtype, "f16") == 0;
  const int fwd = strcmp(mode, "bwd") != 0, bwd = strcmp(mode, "fwd") != 0;
  if (h < 1 || s < 1 || d < 1 || reps < 1 ||
      (strcmp(mode, "fwd") && strcmp(mode, "bwd") && strcmp(mode, "both")) ||
      (!bf && !f16 && strcmp(dtype, "f32"))) {
    fprintf(stderr, "bad arguments\n");
    return 2;
  }
  const size_t n = (size_t)(h * s * d);
  unsigned seed = 1;
  float *q = buffer(n, &seed), *k = buffer(n, &seed), *v = buffer(n, &seed);
  float *dout = buffer(n, &seed), *o = buffer(n, &seed);
  float *dq = buffer(n, &seed), *dk = buffer(n, &seed), *dv = buffer(n, &seed);
  float *lse = malloc((size_t)(h * s) * sizeof *lse);
  double *t = malloc((size_t)reps * sizeof *t);
  if (!q || !k || !v || !dout || !o || !dq || !dk || !dv || !lse || !t) {
    fprintf(stderr, "out of memory\n");
    return 1;
  }
  float *all[8] = {q, k, v, dout, o, dq, dk, dv};
  for (int b = 0; b < (g32 ? 5 : 8) && (bf || f16); b++) { /* in place */
    uint16_t *x = (uint16_t *)all[b];
    for (size_t i = 0; i < n; i++)
      x[i] = f16 ? attn_f32_to_f16(all[b][i]) : attn_f32_to_bf16(all[b][i]);
  }
  const attn_dtype dt = bf    ? ATTN_DTYPE_BF16
                        : f16 ? ATTN_DTYPE_F16
                              : ATTN_DTYPE_F32;
  attn_params p;
  attn_params_init(&p);
  p.q = attn_tensor_bhsd(q, dt, 1, s, h, d);
  p.k = attn_tensor_bhsd(k, dt, 1, s, h, d);
  p.v = attn_tensor_bhsd(v, dt, 1, s, h, d);
  p.o = attn_tensor_bhsd(o, dt, 1, s, h, d);
  p.lse = lse;
  p.dout = attn_tensor_bhsd(dout, dt, 1, s, h, d);
  const attn_dtype gt = g32 ? ATTN_DTYPE_F32 : dt;
  p.dq = attn_tensor_bhsd(dq, gt, 1, s, h, d);
  p.dk = attn_tensor_bhsd(dk, gt, 1, s, h, d);
  p.dv = attn_tensor_bhsd(dv, gt, 1, s, h, d);
  p.causal = causal ? ATTN_CAUSAL_TOP_LEFT : ATTN_CAUSAL_NONE;
  p.num_threads = threads;
  attn_status st = attn_forward(NULL, &p); /* warm-up; o, lse for bwd */
  for (int r = 0; r < reps && st == ATTN_OK; r++) {
    const double t0 = now();
    if (fwd)
      st = attn_forward(NULL, &p);
    if (bwd && st == ATTN_OK)
      st = attn_backward(NULL, &p);
    t[r] = now() - t0;
  }
  if (st != ATTN_OK) {
    fprintf(stderr, "attention call failed: %s\n", attn_strerror(st));
    return 1;
  }
  qsort(t, (size_t)reps, sizeof *t, by_value);
  printf("heads %lld seq %lld dim %lld %s %s%s threads %d: median %.3f ms, "
         "min %.3f ms (%d calls)\n",
         (long long)h, (long long)s, (long long)d, dtype, mode,
         causal ? " causal" : "", threads, 1e3 * t[reps / 2], 1e3 * t[0], reps);
  free(q), free(k), free(v), free(dout), free(o), free(dq), free(dk);
  free(dv), free(lse), free(t);
  return 0;
}
