/*
 * linear_bench.c - where causal linear attention (attn/linear.h) overtakes
 * exact causal attention (attn_forward): batch 1, 8 heads, head_dim 64,
 * f32, bottom-right causal, seq_q = seq_k = S for S = 128 .. max (doubling),
 * forward and forward + backward, both through the library in the same
 * run with the same threads; the median of R calls after a warm-up call.
 * Prints one line per S and the crossover (the first S where linear is
 * faster), for the forward and for forward + backward. Non-causal linear
 * attention is timed too (it is O(S d^2), no chunks).
 *
 *   cc -O2 -Iinclude bench/linear_bench.c build/libattn.a -lm -lpthread \
 *      -o /tmp/linear_bench && /tmp/linear_bench [threads (0 = all)] \
 *      [max S (16384)] [reps (5)]
 *
 * Not part of the build or the tests (like the other programs here);
 * timings on a shared machine are noisy (the lead re-measures alone).
 */
#define _POSIX_C_SOURCE 199309L
#include <attn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { B = 1, H = 8, D = 64 };

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *filled(size_t n, unsigned seed) {
  float *x = malloc(n * sizeof *x);
  if (!x) {
    fprintf(stderr, "linear_bench: out of memory\n");
    exit(1);
  }
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    x[i] = (float)(seed >> 8) / 8388608.0f - 1.0f;
  }
  return x;
}

static int cmp(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

typedef struct job {
  attn_params p;        /* exact attention */
  attn_linear_params l; /* linear attention */
} job;

/* which: 0 exact fwd, 1 exact fwd+bwd, 2 linear fwd, 3 linear fwd+bwd,
 * 4 linear non-causal fwd */
static attn_status call(job *j, int which) {
  attn_status st;
  switch (which) {
  case 0:
    return attn_forward(NULL, &j->p);
  case 1:
    st = attn_forward(NULL, &j->p);
    return st != ATTN_OK ? st : attn_backward(NULL, &j->p);
  case 2:
    return attn_linear_forward(NULL, &j->l);
  case 3:
    st = attn_linear_forward(NULL, &j->l);
    return st != ATTN_OK ? st : attn_linear_backward(NULL, &j->l);
  default: {
    attn_linear_params nc = j->l;
    nc.causal = ATTN_CAUSAL_NONE;
    return attn_linear_forward(NULL, &nc);
  }
  }
}

static double median(job *j, int which, int reps) {
  double t[64];
  for (int r = -1; r < reps; r++) {
    const double t0 = now();
    const attn_status st = call(j, which);
    if (st != ATTN_OK) {
      fprintf(stderr, "linear_bench: %s\n", attn_strerror(st));
      exit(1);
    }
    if (r >= 0)
      t[r] = now() - t0;
  }
  qsort(t, (size_t)reps, sizeof t[0], cmp);
  return t[reps / 2];
}

int main(int argc, char **argv) {
  const int threads = argc > 1 ? atoi(argv[1]) : 0;
  const long max_s = argc > 2 ? atol(argv[2]) : 16384;
  int reps = argc > 3 ? atoi(argv[3]) : 5;
  if (reps < 1 || reps > 64)
    reps = 5;
  printf("linear_bench: b%d h%d d%d f32 causal, threads %d, median of %d "
         "(ms)\n",
         B, H, D, threads, reps);
  printf("%7s %10s %10s %7s %12s %12s %7s %10s\n", "seq", "exact", "linear",
         "x", "exact+bwd", "linear+bwd", "x", "lin-nc");
  long cross_f = -1, cross_b = -1;
  for (long s = 128; s <= max_s; s *= 2) {
    const size_t n = (size_t)B * (size_t)s * H * D;
    float *q = filled(n, 1), *k = filled(n, 2), *v = filled(n, 3);
    float *o = filled(n, 4), *dout = filled(n, 5), *dq = filled(n, 6);
    float *dk = filled(n, 7), *dv = filled(n, 8);
    float *lse = filled((size_t)B * H * (size_t)s, 9);
    job j;
    attn_params_init(&j.p);
    j.p.q = attn_tensor_bshd(q, ATTN_DTYPE_F32, B, s, H, D);
    j.p.k = attn_tensor_bshd(k, ATTN_DTYPE_F32, B, s, H, D);
    j.p.v = attn_tensor_bshd(v, ATTN_DTYPE_F32, B, s, H, D);
    j.p.o = attn_tensor_bshd(o, ATTN_DTYPE_F32, B, s, H, D);
    j.p.dout = attn_tensor_bshd(dout, ATTN_DTYPE_F32, B, s, H, D);
    j.p.dq = attn_tensor_bshd(dq, ATTN_DTYPE_F32, B, s, H, D);
    j.p.dk = attn_tensor_bshd(dk, ATTN_DTYPE_F32, B, s, H, D);
    j.p.dv = attn_tensor_bshd(dv, ATTN_DTYPE_F32, B, s, H, D);
    j.p.lse = lse;
    j.p.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    j.p.num_threads = threads;
    attn_linear_params_init(&j.l);
    j.l.q = j.p.q, j.l.k = j.p.k, j.l.v = j.p.v, j.l.o = j.p.o;
    j.l.dout = j.p.dout, j.l.dq = j.p.dq, j.l.dk = j.p.dk, j.l.dv = j.p.dv;
    j.l.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    j.l.num_threads = threads;
    const double ef = median(&j, 0, reps), lf = median(&j, 2, reps);
    const double eb = median(&j, 1, reps), lb = median(&j, 3, reps);
    const double nc = median(&j, 4, reps);
    printf("%7ld %10.3f %10.3f %7.2f %12.3f %12.3f %7.2f %10.3f\n", s, 1e3 * ef,
           1e3 * lf, ef / lf, 1e3 * eb, 1e3 * lb, eb / lb, 1e3 * nc);
    fflush(stdout);
    if (cross_f < 0 && lf < ef)
      cross_f = s;
    if (cross_b < 0 && lb < eb)
      cross_b = s;
    free(q), free(k), free(v), free(o), free(dout), free(dq), free(dk);
    free(dv), free(lse);
  }
  printf("crossover (first seq where linear is faster): forward %ld, "
         "forward+backward %ld (-1: not up to %ld)\n",
         cross_f, cross_b, max_s);
  return 0;
}
