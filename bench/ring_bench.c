/*
 * ring_bench.c - ring attention (libattn_ring) timing, communication hidden,
 * memory per rank, and a float64 spot check of sampled rows.
 *
 *   mpirun -np R ring_bench [--seq S] [--heads H] [--kv-heads HKV]
 *       [--dim D] [--causal] [--layout zigzag|contiguous] [--threads T]
 *       [--reps N] [--check ROWS] [--backward] [--bf16]
 *
 * Every rank makes its own slice: element (token, head, c) of Q, K, V is a
 * hash of its global coordinates (uniform in [-1, 1)), so no rank ever holds
 * the whole sequence and any rank can recompute any row. Prints, from rank
 * 0, one line per run: ranks, tokens, seconds (the slowest rank's, best of
 * --reps), TFLOP/s of the visible pairs, compute and wait seconds (max over
 * ranks), the share of communication hidden (1 - wait / (wait + the time
 * the ring's transfers would take alone, measured as bytes / a ping-pong
 * bandwidth)) and the ring's buffers per rank, plus the largest absolute
 * error of --check sampled rows of O and LSE against float64.
 */
#include "attn/ring.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float val(uint64_t tensor, uint64_t tok, uint64_t h, uint64_t c) {
  uint64_t z = tensor * 0x9E3779B97F4A7C15ull ^ (tok << 20) ^ (h << 10) ^ c;
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (float)((double)(z >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

static int64_t arg_int(int argc, char **argv, const char *name, int64_t def) {
  for (int i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], name) == 0)
      return strtoll(argv[i + 1], NULL, 10);
  return def;
}
static int arg_flag(int argc, char **argv, const char *name) {
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], name) == 0)
      return 1;
  return 0;
}
static const char *arg_str(int argc, char **argv, const char *name,
                           const char *def) {
  for (int i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], name) == 0)
      return argv[i + 1];
  return def;
}

/* Element of local token i of tensor t, stored as dtype. */
static void fill(void *dst, attn_dtype dt, int t, const int64_t st[2],
                 const int64_t ln[2], int nr, int64_t H, int64_t D) {
  int64_t x = 0;
  for (int g = 0; g < nr; g++)
    for (int64_t i = 0; i < ln[g]; i++)
      for (int64_t h = 0; h < H; h++)
        for (int64_t c = 0; c < D; c++, x++) {
          const float v =
              val((uint64_t)t, (uint64_t)(st[g] + i), (uint64_t)h, (uint64_t)c);
          if (dt == ATTN_DTYPE_BF16)
            ((uint16_t *)dst)[x] = attn_f32_to_bf16(v);
          else
            ((float *)dst)[x] = v;
        }
}

static double rd(attn_dtype dt, float v) {
  return dt == ATTN_DTYPE_BF16 ? attn_bf16_to_f32(attn_f32_to_bf16(v)) : v;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, R;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &R);
  const int64_t S = arg_int(argc, argv, "--seq", 65536);
  const int64_t H = arg_int(argc, argv, "--heads", 1);
  const int64_t HKV = arg_int(argc, argv, "--kv-heads", H);
  const int64_t D = arg_int(argc, argv, "--dim", 64);
  const int threads = (int)arg_int(argc, argv, "--threads", 1);
  const int reps = (int)arg_int(argc, argv, "--reps", 1);
  const int64_t check = arg_int(argc, argv, "--check", 8);
  const int causal = arg_flag(argc, argv, "--causal");
  const int backward = arg_flag(argc, argv, "--backward");
  const attn_dtype dt =
      arg_flag(argc, argv, "--bf16") ? ATTN_DTYPE_BF16 : ATTN_DTYPE_F32;
  const char *lay =
      arg_str(argc, argv, "--layout", causal ? "zigzag" : "contiguous");
  attn_ring_opts ro;
  attn_ring_opts_init(&ro);
  ro.layout =
      strcmp(lay, "zigzag") == 0 ? ATTN_RING_ZIGZAG : ATTN_RING_CONTIGUOUS;
  attn_ring_stats stats;
  ro.stats = &stats;

  int64_t st[2], ln[2];
  int nr;
  attn_ring_partition(ro.layout, S, R, rank, st, ln, &nr);
  const int64_t n = ln[0] + (nr > 1 ? ln[1] : 0);
  const size_t es = attn_dtype_size(dt);
  void *q = malloc((size_t)(n * H * D) * es + 1);
  void *k = malloc((size_t)(n * HKV * D) * es + 1);
  void *v = malloc((size_t)(n * HKV * D) * es + 1);
  float *o = malloc((size_t)(n * H * D) * 4 + 4);
  float *lse = malloc((size_t)(n * H) * 4 + 4);
  fill(q, dt, 0, st, ln, nr, H, D);
  fill(k, dt, 1, st, ln, nr, HKV, D);
  fill(v, dt, 2, st, ln, nr, HKV, D);
  attn_params p;
  attn_params_init(&p);
  p.q = attn_tensor_bshd(q, dt, 1, n, H, D);
  p.k = attn_tensor_bshd(k, dt, 1, n, HKV, D);
  p.v = attn_tensor_bshd(v, dt, 1, n, HKV, D);
  p.o = attn_tensor_bshd(o, ATTN_DTYPE_F32, 1, n, H, D);
  p.lse = lse;
  p.causal = causal ? ATTN_CAUSAL_BOTTOM_RIGHT : ATTN_CAUSAL_NONE;
  p.num_threads = threads;
  char msg[300] = {0};
  p.error_message = msg;
  p.error_message_size = sizeof msg;

  /* point-to-point bandwidth of this ring (one slice, rank 0 <-> 1) */
  double bw = 0;
  if (R > 1) {
    const int nb = 1 << 24;
    char *buf = calloc(nb, 1);
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = MPI_Wtime();
    for (int i = 0; i < 4; i++) {
      if (rank == 0) {
        MPI_Send(buf, nb, MPI_BYTE, 1, 9, MPI_COMM_WORLD);
        MPI_Recv(buf, nb, MPI_BYTE, 1, 9, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      } else if (rank == 1) {
        MPI_Recv(buf, nb, MPI_BYTE, 0, 9, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MPI_Send(buf, nb, MPI_BYTE, 0, 9, MPI_COMM_WORLD);
      }
    }
    double dtm = MPI_Wtime() - t0;
    MPI_Bcast(&dtm, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    bw = 8.0 * nb / dtm;
    free(buf);
  }

  double best = 1e30, comp = 0, wait = 0, sent = 0, bytes = 0, flops = 0;
  for (int r = 0; r < reps; r++) {
    MPI_Barrier(MPI_COMM_WORLD);
    const attn_status s = attn_ring_forward(NULL, MPI_COMM_WORLD, &ro, &p);
    if (s != ATTN_OK) {
      if (rank == 0)
        fprintf(stderr, "ring_bench: %s\n", msg);
      MPI_Finalize();
      return 1;
    }
    double v4[4] = {stats.seconds, stats.compute_seconds, stats.wait_seconds,
                    stats.bytes_sent};
    double mx[4];
    MPI_Allreduce(v4, mx, 4, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (mx[0] < best) {
      best = mx[0];
      comp = mx[1];
      wait = mx[2];
      sent = mx[3];
    }
    bytes = (double)stats.buffer_bytes;
  }
  double bmax = 0;
  MPI_Allreduce(&bytes, &bmax, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  /* visible score elements: causal S(S+1)/2 */
  const double elems = causal ? (double)S * (S + 1) / 2 : (double)S * S;
  flops = 4.0 * elems * D * H;
  const double alone = bw > 0 ? sent / bw : 0;
  const double hidden =
      alone > 0 ? 1.0 - (wait < alone ? wait : alone) / alone : 1.0;

  /* float64 spot check of sampled rows (each checked by its owner) */
  double err_o = 0, err_l = 0;
  for (int64_t sidx = 0; sidx < check; sidx++) {
    const int64_t tok = (int64_t)((sidx * 2654435761u + 7) % (uint64_t)S);
    int64_t li = -1, off = 0;
    for (int g = 0; g < nr; g++) {
      if (tok >= st[g] && tok < st[g] + ln[g])
        li = off + tok - st[g];
      off += ln[g];
    }
    if (li < 0)
      continue;
    const double scale = 1.0 / sqrt((double)D);
    for (int64_t h = 0; h < H; h++) {
      const int64_t g = h / (H / HKV), nk = causal ? tok + 1 : S;
      double m = -INFINITY, l = 0;
      double *acc = calloc((size_t)D, sizeof(double));
      for (int64_t j = 0; j < nk; j++) {
        double s = 0;
        for (int64_t c = 0; c < D; c++)
          s += rd(dt, val(0, (uint64_t)tok, (uint64_t)h, (uint64_t)c)) *
               rd(dt, val(1, (uint64_t)j, (uint64_t)g, (uint64_t)c));
        s *= scale;
        const double nm = s > m ? s : m, f = exp(m - nm), e = exp(s - nm);
        l = l * f + e;
        for (int64_t c = 0; c < D; c++)
          acc[c] = acc[c] * f +
                   e * rd(dt, val(2, (uint64_t)j, (uint64_t)g, (uint64_t)c));
        m = nm;
      }
      for (int64_t c = 0; c < D; c++) {
        const double e = fabs(acc[c] / l - o[(li * H + h) * D + c]);
        if (e > err_o)
          err_o = e;
      }
      const double e = fabs(m + log(l) - lse[h * n + li]);
      if (e > err_l)
        err_l = e;
      free(acc);
    }
  }
  double errs[2] = {err_o, err_l}, emax[2];
  MPI_Reduce(errs, emax, 2, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);

  double bwd_s = 0;
  if (backward) {
    void *dout = malloc((size_t)(n * H * D) * es + 1);
    float *dq = malloc((size_t)(n * H * D) * 4 + 4);
    float *dk = malloc((size_t)(n * HKV * D) * 4 + 4);
    float *dv = malloc((size_t)(n * HKV * D) * 4 + 4);
    fill(dout, dt, 3, st, ln, nr, H, D);
    p.dout = attn_tensor_bshd(dout, dt, 1, n, H, D);
    p.dq = attn_tensor_bshd(dq, ATTN_DTYPE_F32, 1, n, H, D);
    p.dk = attn_tensor_bshd(dk, ATTN_DTYPE_F32, 1, n, HKV, D);
    p.dv = attn_tensor_bshd(dv, ATTN_DTYPE_F32, 1, n, HKV, D);
    MPI_Barrier(MPI_COMM_WORLD);
    if (attn_ring_backward(NULL, MPI_COMM_WORLD, &ro, &p) != ATTN_OK &&
        rank == 0)
      fprintf(stderr, "ring_bench: backward: %s\n", msg);
    MPI_Allreduce(&stats.seconds, &bwd_s, 1, MPI_DOUBLE, MPI_MAX,
                  MPI_COMM_WORLD);
    free(dout);
    free(dq);
    free(dk);
    free(dv);
  }
  if (rank == 0)
    printf("ranks %d seq %lld heads %lld/%lld dim %lld %s %s %s threads/rank "
           "%d: %.3f s (%.1f GFLOP/s) compute %.3f wait %.3f s, sent %.1f "
           "MB, p2p %.2f GB/s, hidden %.0f%%, exposed %.0f%% of the time, "
           "buffers %.1f MiB/rank, backward %.3f s; "
           "check %lld rows: max|dO| %.2e max|dLSE| %.2e\n",
           R, (long long)S, (long long)H, (long long)HKV, (long long)D,
           causal ? "causal" : "full", lay,
           dt == ATTN_DTYPE_BF16 ? "bf16" : "f32", threads, best,
           flops / best * 1e-9, comp, wait, sent * 1e-6, bw * 1e-9,
           100 * hidden, 100 * wait / best, bmax / 1048576.0, bwd_s,
           (long long)check, emax[0], emax[1]);
  free(q);
  free(k);
  free(v);
  free(o);
  free(lse);
  MPI_Finalize();
  return 0;
}
