/*
 * sparse_bench.c - what the sparse patterns of attn/sparse.h cost
 * (issue 8), f32, batch 1, 8 heads, head_dim 64, best of N runs:
 *
 *   1. seq S (default 16384): dense (no mask) against a block-sparse layout
 *      with 10% of the kernel's tiles live (blocks of ATTN_TILE_Q x
 *      ATTN_TILE_K, drawn at random), forward and forward + backward; the
 *      issue asks <= 12% of the dense time;
 *   2. seq S: causal against Child et al.'s strided (L = 128 ~ sqrt(S)) and
 *      fixed (L = 128, C = 8) patterns at their natural densities;
 *   3. Longformer, window 512 (256 keys each side) and 16 global tokens, at
 *      seq S, 2S and 4S: time per token should stay flat (linear in seq).
 * Each line also prints attn_mask_tile_counts' non-empty fraction.
 *
 *   cc -O2 -Iinclude bench/sparse_bench.c build/libattn.a -lm -lpthread \
 *      -o /tmp/sparse_bench && /tmp/sparse_bench [threads (0 = all)]
 *      [repeats (3)] [seq (16384)] [backward (1)] [longformer max seq
 *      multiple (4; 0 = none)] [sections (3): 1 dense and block, 2 Child,
 *      with the options the split path takes]
 *
 * Not part of the build or the tests; timings on a shared machine are
 * noisy (the lead re-measures alone). Memory: about 1.2 GiB at the
 * default sizes (the 4S Longformer case's Q, K, V, O and gradients).
 */
#define _POSIX_C_SOURCE 199309L
#include <attn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { H = 8, D = 64 };

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *rnd(size_t n, unsigned *seed) {
  float *x = malloc(n * sizeof *x);
  if (!x) {
    fprintf(stderr, "sparse_bench: out of memory\n");
    exit(1);
  }
  for (size_t i = 0; i < n; i++) {
    *seed = *seed * 1664525u + 1013904223u;
    x[i] = (float)(*seed >> 8) / 16777216.0f - 0.5f;
  }
  return x;
}

typedef struct bufs {
  int64_t s;
  float *q, *k, *v, *o, *lse, *dq, *dk, *dv, *dout;
} bufs;

static void bufs_init(bufs *b, int64_t s, int grads) {
  unsigned seed = 1;
  const size_t n = (size_t)s * H * D;
  memset(b, 0, sizeof *b);
  b->s = s;
  b->q = rnd(n, &seed), b->k = rnd(n, &seed), b->v = rnd(n, &seed);
  b->o = rnd(n, &seed), b->lse = rnd((size_t)H * (size_t)s, &seed);
  if (grads) {
    b->dq = rnd(n, &seed), b->dk = rnd(n, &seed), b->dv = rnd(n, &seed);
    b->dout = rnd(n, &seed);
  }
}

static void bufs_free(bufs *b) {
  free(b->q), free(b->k), free(b->v), free(b->o), free(b->lse);
  free(b->dq), free(b->dk), free(b->dv), free(b->dout);
}

static attn_params params(const bufs *b, int threads) {
  attn_params p;
  attn_params_init(&p);
  p.q = attn_tensor_bshd(b->q, ATTN_DTYPE_F32, 1, b->s, H, D);
  p.k = attn_tensor_bshd(b->k, ATTN_DTYPE_F32, 1, b->s, H, D);
  p.v = attn_tensor_bshd(b->v, ATTN_DTYPE_F32, 1, b->s, H, D);
  p.o = attn_tensor_bshd(b->o, ATTN_DTYPE_F32, 1, b->s, H, D);
  p.lse = b->lse;
  p.num_threads = threads;
  if (b->dq) {
    p.dout = attn_tensor_bshd(b->dout, ATTN_DTYPE_F32, 1, b->s, H, D);
    p.dq = attn_tensor_bshd(b->dq, ATTN_DTYPE_F32, 1, b->s, H, D);
    p.dk = attn_tensor_bshd(b->dk, ATTN_DTYPE_F32, 1, b->s, H, D);
    p.dv = attn_tensor_bshd(b->dv, ATTN_DTYPE_F32, 1, b->s, H, D);
  }
  return p;
}

/* Non-empty fraction of the tiles of p's mask. */
static double live(const attn_params *p) {
  attn_mask *m = NULL;
  int64_t f = 0, pa = 0, e = 0;
  if (attn_mask_compile(p, &m) != ATTN_OK)
    return -1.0;
  attn_mask_tile_counts(m, &f, &pa, &e);
  attn_mask_free(m);
  return (double)(f + pa) / (double)(f + pa + e);
}

/* Best of reps: forward, and forward + backward when bwd. */
static void timeit(const attn_params *p, int reps, int bwd, double *tf,
                   double *tb) {
  char msg[256] = "";
  attn_params x = *p;
  x.error_message = msg;
  x.error_message_size = sizeof msg;
  *tf = *tb = 1e30;
  for (int r = 0; r < reps; r++) {
    double t0 = now();
    if (attn_forward(NULL, &x) != ATTN_OK) {
      fprintf(stderr, "sparse_bench: forward: %s\n", msg);
      exit(1);
    }
    double t1 = now();
    if (t1 - t0 < *tf)
      *tf = t1 - t0;
    if (!bwd)
      continue;
    if (attn_backward(NULL, &x) != ATTN_OK) {
      fprintf(stderr, "sparse_bench: backward: %s\n", msg);
      exit(1);
    }
    const double t2 = now();
    if (t2 - t1 < *tb)
      *tb = t2 - t1;
  }
}

static void line(const char *name, int64_t s, double frac, double tf, double tb,
                 int bwd, double ref_f, double ref_b) {
  printf("%-28s s %6lld  tiles %5.1f%%  fwd %8.3f s (%5.1f%%)", name,
         (long long)s, 100.0 * frac, tf, ref_f > 0 ? 100.0 * tf / ref_f : 0);
  if (bwd)
    printf("  bwd %8.3f s (%5.1f%%)", tb, ref_b > 0 ? 100.0 * tb / ref_b : 0);
  printf("  fwd %.2f us/token\n", 1e6 * tf / (double)s);
}

/* A layout with exactly 1/every of the nbq x nbk blocks live (rounded),
 * drawn at random, at least one in every row (so no query is left without
 * keys): the rows' blocks first, then random others until the count. */
static uint8_t *block_layout(int64_t nbq, int64_t nbk, int every) {
  uint8_t *bm = calloc((size_t)(nbq * nbk), 1);
  if (!bm) {
    fprintf(stderr, "sparse_bench: out of memory\n");
    exit(1);
  }
  int64_t want = (nbq * nbk + every / 2) / every, have = 0;
  for (int64_t r = 0; r < nbq; r++, have++)
    bm[r * nbk + (r * nbk) / nbq] = 1;
  unsigned seed = 7;
  while (have < want) {
    seed = seed * 1664525u + 1013904223u;
    const int64_t e = (int64_t)((seed >> 4) % (unsigned)(nbq * nbk));
    have += !bm[e];
    bm[e] = 1;
  }
  return bm;
}

/* Child et al.'s strided pattern (L = 128) combined with the options
 * that narrow or move it, and both patterns on packed sequences; shares
 * of the causal time (df, db) of the whole seq. */
static void child_options(const bufs *b, int threads, int reps, int bwd,
                          double df, double db) {
  const int64_t s = b->s;
  double tf, tb;
  int32_t kvl[1] = {(int32_t)(s - s / 8)};
  float slopes[H];
  for (int h = 0; h < H; h++)
    slopes[h] = 1.0f / (float)(2 << h);
  attn_params p = params(b, threads);
  p.sparse_kind = ATTN_SPARSE_STRIDED, p.sparse_l = 128;
  p.kv_lens = kvl;
  timeit(&p, reps, bwd, &tf, &tb);
  line("strided + kv_lens 7/8", s, live(&p), tf, tb, bwd, df, db);
  p.kv_lens = NULL;
  p.window_left = 4096;
  timeit(&p, reps, bwd, &tf, &tb);
  line("strided + window 4096", s, live(&p), tf, tb, bwd, df, db);
  p.window_left = -1;
  p.alibi_slopes = slopes;
  timeit(&p, reps, bwd, &tf, &tb);
  line("strided + ALiBi", s, live(&p), tf, tb, bwd, df, db);
  p.alibi_slopes = NULL;
  float *kb = malloc((size_t)(H * s) * sizeof(float)); /* a key bias */
  if (!kb) {
    fprintf(stderr, "sparse_bench: out of memory\n");
    exit(1);
  }
  for (int64_t x = 0; x < H * s; x++)
    kb[x] = (float)(x % 7) * -0.25f;
  p.bias = attn_tensor_contiguous(kb, ATTN_DTYPE_F32, 1, H, 1, s);
  timeit(&p, reps, bwd, &tf, &tb);
  line("strided + bias [1,h,1,s]", s, live(&p), tf, tb, bwd, df, db);
  memset(&p.bias, 0, sizeof p.bias);
  free(kb);
  p.q_pos_offset = p.k_pos_offset = 1000;
  timeit(&p, reps, bwd, &tf, &tb);
  line("strided + offsets 1000", s, live(&p), tf, tb, bwd, df, db);
  /* two sequences of s / 2 packed */
  int32_t cu[3] = {0, (int32_t)(s / 2), (int32_t)s};
  p = params(b, threads);
  p.cu_seqlens_q = p.cu_seqlens_k = cu;
  p.varlen_batch = 2;
  p.sparse_kind = ATTN_SPARSE_STRIDED, p.sparse_l = 128;
  timeit(&p, reps, bwd, &tf, &tb);
  line("strided, 2 packed seqs", s, live(&p), tf, tb, bwd, df, db);
  p.sparse_kind = ATTN_SPARSE_FIXED, p.sparse_c = 8;
  timeit(&p, reps, bwd, &tf, &tb);
  line("fixed, 2 packed seqs", s, live(&p), tf, tb, bwd, df, db);
}

int main(int argc, char **argv) {
  const int threads = argc > 1 ? atoi(argv[1]) : 0;
  const int reps = argc > 2 ? atoi(argv[2]) : 3;
  const int64_t s = argc > 3 ? atoll(argv[3]) : 16384;
  const int bwd = argc > 4 ? atoi(argv[4]) : 1;
  const int lmax = argc > 5 ? atoi(argv[5]) : 4;
  const int which = argc > 6 ? atoi(argv[6]) : 3; /* 1 block, 2 Child */
  printf("sparse_bench: b1 h%d d%d f32, threads %d, best of %d (noisy on a "
         "shared machine)\n",
         H, D, threads, reps);
  bufs b;
  bufs_init(&b, s, bwd);
  double df, db, tf, tb;

  /* 1. dense vs 10% live tiles */
  attn_params p = params(&b, threads);
  if (!(which & 1))
    goto child;
  timeit(&p, reps, bwd, &df, &db);
  line("dense", s, live(&p), df, db, bwd, df, db);
  const int64_t nbq = (s + ATTN_TILE_Q - 1) / ATTN_TILE_Q;
  const int64_t nbk = (s + ATTN_TILE_K - 1) / ATTN_TILE_K;
  uint8_t *bm = block_layout(nbq, nbk, 10);
  p.block_mask = attn_tensor_contiguous(bm, ATTN_DTYPE_BOOL, 1, 1, nbq, nbk);
  p.block_q = ATTN_TILE_Q, p.block_k = ATTN_TILE_K;
  timeit(&p, reps, bwd, &tf, &tb);
  line("block 10% of tiles", s, live(&p), tf, tb, bwd, df, db);
  free(bm);

child: /* 2. Child et al. against causal */
  p = params(&b, threads);
  if (!(which & 2))
    goto longformer;
  p.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  timeit(&p, reps, bwd, &df, &db);
  line("causal", s, live(&p), df, db, bwd, df, db);
  p.causal = ATTN_CAUSAL_NONE;
  p.sparse_kind = ATTN_SPARSE_STRIDED, p.sparse_l = 128;
  timeit(&p, reps, bwd, &tf, &tb);
  line("strided L=128", s, live(&p), tf, tb, bwd, df, db);
  p.sparse_kind = ATTN_SPARSE_FIXED, p.sparse_l = 128, p.sparse_c = 8;
  timeit(&p, reps, bwd, &tf, &tb);
  line("fixed L=128 C=8", s, live(&p), tf, tb, bwd, df, db);
  child_options(&b, threads, reps, bwd, df, db);
longformer:
  bufs_free(&b);

  /* 3. Longformer at s, 2s, 4s */
  for (int m = 1; m <= lmax; m *= 2) {
    bufs_init(&b, s * m, bwd);
    p = params(&b, threads);
    int32_t g[16];
    for (int i = 0; i < 16; i++)
      g[i] = (int32_t)(i * (s * m / 16));
    p.global_idx = g, p.global_count = 16;
    p.window_left = p.window_right = 256;
    timeit(&p, reps, bwd, &tf, &tb);
    line("longformer w512 g16", s * m, live(&p), tf, tb, bwd, 0, 0);
    bufs_free(&b);
  }
  return 0;
}
