/*
 * The exponentials of simd.h that every softmax runs through (vf_exp2 and
 * the kernels' vf_exp2_nonpos), on each instruction set this CPU has,
 * against exp2 in double:
 *   - relative error at most EXP2_REL over [-126, 127] (vf_exp2) and
 *     [-126, 127] (vf_exp2_nonpos: the fused softmax feeds it up to
 *     FUSED_TAU above 0, the callers keep it below 128), 2^20 points each
 *     plus every integer (exactly 2^n) and the halves between;
 *   - below 2^-126: never above the exact value by more than the
 *     polynomial's error and one subnormal step, never negative; exactly
 *     +0 from -150 down, for -inf and for -1e30 (a masked score must give
 *     P = +0 exactly: the kernels skip keys whose P is 0);
 *   - NaN gives NaN; 0 gives exactly 1.
 * EXP2_REL: the degree-6 polynomial's relative error in exact arithmetic
 * (2e-7, simd.h) plus one rounding of 2^-24 for each of its six Horner
 * steps and the final scaling (7 more).
 */
#if defined(__x86_64__) && !defined(ATTN_HAVE_X86)
#define ATTN_HAVE_X86 1 /* as the library is built (CMakeLists.txt) */
#endif
#include "core/internal.h"
#include "simd_vec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXP2_REL (2e-7 + 7.0 * 0x1p-24)
#define N (1 << 20)

static long n_pass, n_fail;

static void check(int ok, const char *isa, const char *what, double x,
                  double got, double want) {
  if (ok) {
    n_pass++;
    return;
  }
  if (n_fail++ < 20)
    printf("FAIL %s %s: x = %.9g gives %.9g, want %.9g\n", isa, what, x, got,
           want);
}

typedef void (*exp_fn)(const float *, float *, int64_t);

/* One function over [lo, hi]: N evenly spread points, every integer and
 * every half between; returns the largest relative error seen. */
static double sweep(exp_fn f, const char *isa, const char *name, float lo,
                    float hi, float *x, float *y) {
  int64_t n = 0;
  for (int64_t i = 0; i < N; i++)
    x[n++] = lo + (hi - lo) * (float)((double)i / (N - 1));
  for (float k = lo; k <= hi && n + 2 <= 2 * N; k += 1.0f) {
    x[n++] = k;
    x[n++] = k + 0.5f < hi ? k + 0.5f : k;
  }
  while (n % 16)
    x[n++] = lo;
  f(x, y, n);
  double worst = 0.0;
  for (int64_t i = 0; i < n; i++) {
    const double want = exp2((double)x[i]);
    const double rel = fabs((double)y[i] - want) / want;
    if (rel > worst)
      worst = rel;
    char what[96];
    snprintf(what, sizeof what, "%s relative error %.3g > %.3g", name, rel,
             EXP2_REL);
    check(rel <= EXP2_REL, isa, what, x[i], y[i], want);
    if (x[i] == floorf(x[i])) { /* p(0) = 1 and an exact scaling */
      snprintf(what, sizeof what, "%s of an integer is not 2^n", name);
      check((double)y[i] == want, isa, what, x[i], y[i], want);
    }
  }
  return worst;
}

/* vf_exp2_nonpos below 2^-126 and its special values. */
static void tail(exp_fn f, const char *isa, float *x, float *y) {
  int64_t n = 0;
  for (int64_t i = 0; i < 4096; i++) /* [-160, -126) */
    x[n++] = -160.0f + 34.0f * (float)i / 4096.0f;
  const float special[16] = {
      -INFINITY, -1e30f, -150.0f, -150.25f, -151.0f, -1000.0f, 0.0f, -0.0f,
      NAN,       -NAN,   -126.0f, -127.0f,  -149.0f, -149.5f,  1.0f, 16.0f};
  memcpy(x + n, special, sizeof special);
  n += 16;
  f(x, y, n);
  for (int64_t i = 0; i < 4096; i++) {
    const double want = exp2((double)x[i]);
    const double got = y[i];
    check(got >= 0.0 && got <= want * (1.0 + EXP2_REL) + 0x1p-149, isa,
          "below 2^-126: negative or above the exact value", x[i], got, want);
    if (x[i] <= -150.0f)
      check(got == 0.0 && !signbit(got), isa, "not +0 from -150 down", x[i],
            got, 0.0);
  }
  const float *s = y + 4096;
  for (int i = 0; i < 6; i++)
    check(s[i] == 0.0f && !signbit(s[i]), isa, "special: not +0", special[i],
          s[i], 0.0);
  check(s[6] == 1.0f && s[7] == 1.0f, isa, "2^0 is not exactly 1", 0.0, s[6],
        1.0);
  check(isnan(s[8]) && isnan(s[9]), isa, "NaN does not give NaN", NAN, s[8],
        NAN);
  check(s[10] == 0x1p-126f, isa, "2^-126 not exact", -126.0, s[10], 0x1p-126);
}

static void run_isa(const char *isa, exp_fn e2, exp_fn e2n, float *x,
                    float *y) {
  const double a = sweep(e2, isa, "vf_exp2", -126.0f, 127.0f, x, y);
  const double b = sweep(e2n, isa, "vf_exp2_nonpos", -126.0f, 127.0f, x, y);
  tail(e2n, isa, x, y);
  printf("%-8s vf_exp2 max rel error %.3g, vf_exp2_nonpos %.3g (bound %.3g)\n",
         isa, a, b, EXP2_REL);
}

int main(void) {
  float *x = malloc(sizeof(float) * 2 * N), *y = malloc(sizeof(float) * 2 * N);
  if (!x || !y) {
    printf("out of memory\n0 passed, 1 failed\n");
    return 1;
  }
  run_isa("generic", simd_exp2_generic, simd_exp2_nonpos_generic, x, y);
#if defined(ATTN_TEST_X86)
  if (attn_cpu_has_avx2())
    run_isa("avx2", simd_exp2_avx2, simd_exp2_nonpos_avx2, x, y);
  else
    printf("avx2     not on this CPU: not run\n");
  if (attn_cpu_has_avx512())
    run_isa("avx512", simd_exp2_avx512, simd_exp2_nonpos_avx512, x, y);
  else
    printf("avx512   not on this CPU: not run\n");
#endif
  free(x);
  free(y);
  printf("%ld passed, %ld failed\n", n_pass, n_fail);
  return n_fail != 0;
}
