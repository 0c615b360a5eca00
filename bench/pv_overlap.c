/* Does one thread overlap the decode's arithmetic with its memory reads?
 *
 * The P·V step of the bf16 decode alone (AVX2 + FMA): 4 query rows per kv
 * head, 8 kv heads side by side in bshd order, head_dim 128, keys four at
 * a time per head with the output rows loaded and stored once per four
 * keys, V widened from bf16 by a shift and a mask (the kernel's order and
 * instruction mix, decode_pv_body.h). Software prefetch (prefetcht1) of
 * the four keys DIST keys ahead, head by head, or none (DIST 0).
 *
 *   cc -O3 -mavx2 -mfma bench/pv_overlap.c -o /tmp/pv_overlap
 *   /tmp/pv_overlap KEYS DIST        e.g. 16 0 (in L1), 32768 4 (memory)
 *
 * Prints the best pass's GB/s of V and nanoseconds per (key, kv head).
 * With KEYS 16 the time is the arithmetic alone; with 32768 (64 MiB of V)
 * it can be set against `attn peak --threads 1`'s read bandwidth: if the
 * time per key is the sum of the arithmetic and of the bytes at the
 * probe's rate, the thread does not overlap them (bench/RESULTS.md,
 * session of 2026-12-01, third). */
#define _POSIX_C_SOURCE 200809L
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define D 128
#define H 8

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s KEYS DIST\n", argv[0]);
    return 2;
  }
  const long nkeys = atol(argv[1]) / 4 * 4, dist = atol(argv[2]);
  if (nkeys < 4 || dist < 0) {
    fprintf(stderr, "KEYS >= 4 and DIST >= 0, please\n");
    return 2;
  }
  const size_t vbytes = (size_t)nkeys * H * D * sizeof(uint16_t);
  uint16_t *v = aligned_alloc(64, (vbytes + 63) / 64 * 64);
  float *o = aligned_alloc(64, sizeof(float) * H * 4 * D);
  float p[4 * 4];
  if (!v || !o)
    return 1;
  for (size_t i = 0; i < vbytes / 2; i++)
    v[i] = 0x3f80; /* 1.0 */
  for (int i = 0; i < 16; i++)
    p[i] = 1e-3f;
  for (int i = 0; i < H * 4 * D; i++)
    o[i] = 0.0f;
  const __m256i mask = _mm256_set1_epi32((int)0xffff0000u);
  long passes = (1L << 28) / (long)vbytes;
  passes = passes < 5 ? 5 : passes;
  double best = 1e30;
  for (long it = 0; it < passes; it++) {
    const double t0 = now();
    for (long j = 0; j < nkeys; j += 4) {
      for (int h = 0; h < H; h++) {
        if (dist > 0 && j + dist + 3 < nkeys)
          for (int k = 0; k < 4; k++) {
            const char *row = (const char *)(v + ((j + dist + k) * H + h) * D);
            for (int l = 0; l < D * 2; l += 64)
              _mm_prefetch(row + l, _MM_HINT_T1);
          }
        float *oh = o + h * 4 * D;
        for (int x = 0; x < D; x += 16) {
          __m256 t[4], t2[4];
          for (int r = 0; r < 4; r++) {
            t[r] = _mm256_load_ps(oh + r * D + x);
            t2[r] = _mm256_load_ps(oh + r * D + x + 8);
          }
          for (int k = 0; k < 4; k++) {
            const __m256i w = _mm256_loadu_si256(
                (const __m256i *)(v + ((j + k) * H + h) * D + x));
            const __m256 ev = _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
            const __m256 od = _mm256_castsi256_ps(_mm256_and_si256(w, mask));
            for (int r = 0; r < 4; r++) {
              const __m256 a = _mm256_broadcast_ss(p + r * 4 + k);
              t[r] = _mm256_fmadd_ps(a, ev, t[r]);
              t2[r] = _mm256_fmadd_ps(a, od, t2[r]);
            }
          }
          for (int r = 0; r < 4; r++) {
            _mm256_store_ps(oh + r * D + x, t[r]);
            _mm256_store_ps(oh + r * D + x + 8, t2[r]);
          }
        }
      }
    }
    const double dt = now() - t0;
    best = dt < best ? dt : best;
  }
  printf("keys %ld dist %ld: %.2f GB/s of V, %.1f ns per (key, kv head)\n",
         nkeys, dist, (double)vbytes / best * 1e-9,
         best / (double)nkeys / H * 1e9);
  int bad = o[0] != o[0]; /* keep the sums alive */
  free(v);
  free(o);
  return bad;
}
