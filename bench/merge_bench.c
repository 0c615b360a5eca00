/*
 * merge_bench.c - attn_merge's throughput: n partial results (f32 O [b1,
 * s4096, h32, dv128] and LSE, 64 MiB each) merged into one, for n = 2 and
 * 8, in GB/s (1e9 bytes/s) of bytes moved = the partials read (n O and n
 * LSE) + the output written (O and LSE), against the read bandwidth
 * measured in the same run (attn_read_bandwidth_gbps, as `attn peak`
 * prints it). The merge is memory bound: the target is that bandwidth.
 * Median of R calls after a warm-up call; the backward is timed too (bytes:
 * dO, O, LSE and the n partials read, n dO_c and dLSE_c written).
 *
 *   cc -O2 -Iinclude bench/merge_bench.c build/libattn.a -lm -lpthread \
 *      -o /tmp/merge_bench && /tmp/merge_bench [threads (0 = all)] [reps (10)]
 *
 * Not part of the build or the tests; timings on a shared machine are
 * noisy (the lead re-measures alone).
 */
#define _POSIX_C_SOURCE 199309L
#include <attn.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { B = 1, S = 4096, H = 32, DV = 128, MAXP = 8 };

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *filled(size_t n, unsigned seed, float lo, float hi) {
  float *x = malloc(n * sizeof *x);
  if (!x) {
    fprintf(stderr, "merge_bench: out of memory\n");
    exit(1);
  }
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    x[i] = lo + (hi - lo) * (float)(seed >> 8) / 16777216.0f;
  }
  return x;
}

static int cmp(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median seconds of reps calls (after one warm-up) of the merge or its
 * backward. */
static double median(attn_merge_params *m, int bwd, int reps) {
  double t[64];
  for (int r = -1; r < reps; r++) {
    const double t0 = now();
    const attn_status st =
        bwd ? attn_merge_backward(NULL, m) : attn_merge(NULL, m);
    if (st != ATTN_OK) {
      fprintf(stderr, "merge_bench: %s\n", m->error_message);
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
  int reps = argc > 2 ? atoi(argv[2]) : 10;
  reps = reps < 1 ? 1 : reps > 64 ? 64 : reps;
  const size_t no = (size_t)B * S * H * DV, nl = (size_t)B * H * S;
  attn_tensor o[MAXP], dop[MAXP];
  float *lse[MAXP], *dlse[MAXP];
  for (int c = 0; c < MAXP; c++) {
    o[c] = attn_tensor_bshd(filled(no, 1u + (unsigned)c, -1, 1), ATTN_DTYPE_F32,
                            B, S, H, DV);
    lse[c] = filled(nl, 100u + (unsigned)c, -4, 4);
    dop[c] =
        attn_tensor_bshd(filled(no, 7u, 0, 0), ATTN_DTYPE_F32, B, S, H, DV);
    dlse[c] = filled(nl, 8u, 0, 0);
  }
  float *out = filled(no, 9u, 0, 0), *lout = filled(nl, 10u, 0, 0);
  float *dout = filled(no, 11u, -1, 1);
  double bw = 0.0;
  if (attn_read_bandwidth_gbps(threads, 1.0, &bw) != ATTN_OK)
    bw = NAN;
  printf("merge b%d s%d h%d dv%d f32, threads %d (0 = all), median of %d; "
         "read bandwidth %.1f GB/s\n",
         B, S, H, DV, threads, reps, bw);
  printf("| parts | pass | ms | GB moved | GB/s | %% of read bandwidth |\n");
  printf("|---|---|---|---|---|---|\n");
  const int ns[2] = {2, 8};
  for (int k = 0; k < 2; k++) {
    const int n = ns[k];
    char msg[256] = "";
    attn_merge_params m;
    attn_merge_params_init(&m);
    m.n_parts = n;
    m.o_parts = o;
    m.lse_parts = (const float *const *)lse;
    m.o = attn_tensor_bshd(out, ATTN_DTYPE_F32, B, S, H, DV);
    m.lse = lout;
    m.dout = attn_tensor_bshd(dout, ATTN_DTYPE_F32, B, S, H, DV);
    m.do_parts = dop;
    m.dlse_parts = dlse;
    m.num_threads = threads;
    m.error_message = msg;
    m.error_message_size = sizeof msg;
    const double ob = (double)no * 4, lb = (double)nl * 4;
    /* forward: n (O + LSE) read, O + LSE written */
    const double fwd_bytes = n * (ob + lb) + ob + lb;
    /* backward: dO, O, LSE and n (O_c + LSE_c) read, n (dO_c + dLSE_c)
     * written */
    const double bwd_bytes = 2 * ob + lb + 2.0 * n * (ob + lb);
    for (int bwd = 0; bwd < 2; bwd++) {
      const double t = median(&m, bwd, reps);
      const double gb = (bwd ? bwd_bytes : fwd_bytes) / 1e9;
      printf("| %d | %s | %.2f | %.3f | %.1f | %.0f%% |\n", n,
             bwd ? "backward" : "merge", t * 1e3, gb, gb / t,
             100.0 * gb / t / bw);
    }
  }
  for (int c = 0; c < MAXP; c++)
    free(o[c].data), free(lse[c]), free(dop[c].data), free(dlse[c]);
  free(out), free(lout), free(dout);
  return 0;
}
