/* How fast does one thread stream from memory when every loaded vector
 * feeds a few FMAs? The ceiling of the f32 decode's Q K on this core.
 *
 * One thread reads a buffer of MIB MiB (2 MiB aligned, huge pages
 * advised, as `attn decode`'s cache) once per pass, a vector at a time,
 * in one of two orders:
 *   linear  the buffer front to back (the read probe's order);
 *   decode  the f32 decode's Q K order over a bshd cache of 8 kv heads,
 *           head_dim 128: four keys (4 KiB apart) at a time, head by
 *           head, a vector of each of the four keys per step.
 * Each loaded vector is consumed by ROWS FMAs (one per query row of a kv
 * head; 0: one add, as the probe's XOR), into 4 x ROWS accumulators, and
 * in decode order the accumulators are reduced by shuffles once per head
 * (as dec_hsum16). PF: 0 no software prefetch, 1 prefetcht1 16 KiB ahead
 * in memory order (the kernel's), 2 prefetcht0 4 KiB ahead (the probe's).
 *
 *   cc -O2 -march=native bench/stream_fma.c -o /tmp/stream_fma
 *   /tmp/stream_fma MIB ROWS ORDER PF     e.g. 512 4 decode 1
 *
 * Prints the median of 7 passes in GB/s, to be set against
 * `attn peak --threads 1`'s read bandwidth (bench/RESULTS.md, session of
 * 2026-12-06, second). AVX-512 where the compiler targets it, else AVX2. */
#define _DEFAULT_SOURCE
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#if defined(__AVX512F__)
typedef __m512 vec;
#define VB 64
#define vload _mm512_load_ps
#define vzero _mm512_setzero_ps
#define vset1 _mm512_set1_ps
#define vadd _mm512_add_ps
#define vfma _mm512_fmadd_ps
#define vswap(a) _mm512_permute_ps(a, 0xb1)
#elif defined(__AVX2__) && defined(__FMA__)
typedef __m256 vec;
#define VB 32
#define vload _mm256_load_ps
#define vzero _mm256_setzero_ps
#define vset1 _mm256_set1_ps
#define vadd _mm256_add_ps
#define vfma _mm256_fmadd_ps
#define vswap(a) _mm256_permute_ps(a, 0xb1)
#else
#error "needs AVX2 and FMA or AVX-512 (-march=native on such a CPU)"
#endif

#define MAXR 4
#define KEY 4096 /* bytes of one token's keys: 8 heads x 128 f32 */
#define ROW 512  /* one head's row                                */
#define BLK (4 * KEY)

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static inline void pf(const char *p, int mode) {
  if (mode == 1)
    __builtin_prefetch(p + BLK, 0, 2);
  else if (mode == 2)
    __builtin_prefetch(p + 4096, 0, 3);
}

/* One pass; returns a value that depends on every load. */
static float pass(const char *p, size_t bytes, int rows, int decode, int mode) {
  vec acc[4 * MAXR], q[MAXR];
  for (int i = 0; i < 4 * MAXR; i++)
    acc[i] = vzero();
  for (int r = 0; r < MAXR; r++)
    q[r] = vset1(1.0f + 0.001f * (float)r);
  for (size_t b = 0; b + BLK <= bytes; b += BLK) {
    for (int h = 0; h < 8; h++) {
      for (int v = 0; v < ROW / VB; v++) {
        /* the lines of this step in memory order, for the prefetch */
        const char *m = p + b + ((size_t)h * (ROW / VB) + (size_t)v) * 4 * VB;
        for (int l = 0; l < 4 * VB; l += 64)
          pf(m + l, mode);
        const char *r0 = decode ? p + b + h * ROW + v * VB : m;
        const size_t ks = decode ? KEY : VB;
        const vec k[4] = {vload((const float *)r0),
                          vload((const float *)(r0 + ks)),
                          vload((const float *)(r0 + 2 * ks)),
                          vload((const float *)(r0 + 3 * ks))};
        if (rows == 0) {
          for (int j = 0; j < 4; j++)
            acc[j] = vadd(acc[j], k[j]);
        } else {
          for (int r = 0; r < rows; r++)
            for (int j = 0; j < 4; j++)
              acc[4 * r + j] = vfma(k[j], q[r], acc[4 * r + j]);
        }
      }
      if (decode && rows > 0) /* a reduction's worth of shuffles a head */
        for (int i = 0; i + 1 < 4 * rows; i += 2) {
          acc[i] = vadd(acc[i], vswap(acc[i + 1]));
          acc[i + 1] = vswap(acc[i + 1]);
        }
    }
  }
  vec s = acc[0];
  for (int i = 1; i < 4 * MAXR; i++)
    s = vadd(s, acc[i]);
  float out[VB / 4];
  memcpy(out, &s, sizeof out);
  return out[0];
}

static int cmp(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s MIB ROWS(0-4) linear|decode PF(0-2)\n", argv[0]);
    return 2;
  }
  const long mib = atol(argv[1]);
  const int rows = atoi(argv[2]), mode = atoi(argv[4]);
  const int decode = strcmp(argv[3], "decode") == 0;
  if (mib < 2 || mib > 16384 || rows < 0 || rows > MAXR || mode < 0 ||
      mode > 2 || (!decode && strcmp(argv[3], "linear") != 0)) {
    fprintf(stderr, "bad arguments\n");
    return 2;
  }
  const size_t bytes = (size_t)mib << 20;
  char *p = NULL;
  if (posix_memalign((void **)&p, (size_t)2 << 20, bytes + 2 * BLK) != 0) {
    fprintf(stderr, "out of memory\n");
    return 1;
  }
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  (void)madvise(p, bytes + 2 * BLK, MADV_HUGEPAGE);
#endif
  for (size_t i = 0; i < (bytes + 2 * BLK) / sizeof(float); i++)
    ((float *)p)[i] = (float)(i % 7) * 0.25f;
  double t[7];
  float sink = 0;
  for (int i = 0; i < 7; i++) {
    const double t0 = now();
    sink += pass(p, bytes, rows, decode, mode);
    t[i] = now() - t0;
  }
  qsort(t, 7, sizeof t[0], cmp);
  printf("%s order, %d FMAs a vector, prefetch %d: %.2f GB/s (%s)\n",
         decode ? "decode" : "linear", rows, mode, (double)bytes / t[3] / 1e9,
         sink == 0.5f ? "." : "ok");
  free(p);
  return 0;
}
