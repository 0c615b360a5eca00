/*
 * The bf16 dot product the bf16 kernels are built on (simd.h, docs/bf16.md):
 *   - the generic emulation of vf_dot2 against exact arithmetic (two
 *     fused steps, odd pair first; subnormal inputs read as 0, subnormal
 *     results flushed) on random and edge-case lanes;
 *   - the emulation against vdpbf16ps and vcvtne2ps2bf16 bit for bit,
 *     where the CPU has AVX512-BF16 (NaN payloads aside: NaN must meet
 *     NaN);
 *   - the f32 -> bf16 conversion against attn_f32_to_bf16 (nearest even)
 *     on normal numbers;
 *   - the f16 row widening every kernel packs with (attn_load_row_f32:
 *     vcvtph2ps where the CPU has F16C) against the portable
 *     attn_f16_to_f32, all 65,536 values, contiguous and strided, at
 *     several offsets, lengths and multipliers, bit for bit.
 * The kernels built on it are checked against the oracle by test_forward,
 * test_numerics and the others, on every ISA including avx512bf16.
 */
#if defined(__x86_64__) && !defined(ATTN_HAVE_X86)
#define ATTN_HAVE_X86 1 /* as the library is built (CMakeLists.txt) */
#endif
#include "attn.h"
#include "bf16_vec.h"
#include "core/internal.h"
#include "kernels/bwd_kernels.h"
#include "test_common.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static long n_pass, n_fail;
static uint64_t g_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
  g_state ^= g_state << 13;
  g_state ^= g_state >> 7;
  g_state ^= g_state << 17;
  return (uint32_t)(g_state >> 16);
}

/* mode 0: exponents near 1 (cancellation likely), 1: any exponent
 * (subnormals, inf, NaN included), 2: tiny (around the subnormal edge). */
static uint16_t rand_bf16(int mode) {
  uint16_t h = (uint16_t)rnd();
  const uint32_t e = mode == 0   ? 120 + rnd() % 16
                     : mode == 1 ? rnd() % 256
                                 : rnd() % 4;
  return (uint16_t)((h & 0x807f) | (e << 7));
}
static float rand_f32(int mode) {
  uint32_t u = rnd() | (rnd() << 16);
  const uint32_t e = mode == 0   ? 120 + rnd() % 16
                     : mode == 1 ? rnd() % 256
                                 : rnd() % 4;
  u = (u & 0x807fffffu) | (e << 23);
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static float bits_f(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
static float bf(uint16_t h) { /* subnormal -> signed 0 */
  return (h & 0x7f80) ? bits_f((uint32_t)h << 16)
                      : bits_f((uint32_t)(h & 0x8000) << 16);
}
static float ftz(float x) {
  return fabsf(x) < FLT_MIN ? copysignf(0.0f, x) : x;
}
static int same(float a, float b) {
  return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0;
}

/* The rule in exact arithmetic: a product of two bf16 is exact in double
 * (16 significant bits); c + product, rounded once to f32 (fmaf is exact
 * then rounded), twice. */
static float dot_rule(float c, uint16_t a0, uint16_t a1, uint16_t b0,
                      uint16_t b1) {
  float t = fmaf(bf(a1), bf(b1), ftz(c));
  return ftz(fmaf(bf(a0), bf(b0), ftz(t)));
}

/* attn_load_row_f32 on f16 rows against attn_f16_to_f32(h) * mul. */
static long check_f16_rows(void) {
  static uint16_t all[65536 + 64];
  static float got[65536 + 64];
  long values = 0;
  for (int i = 0; i < 65536 + 64; i++)
    all[i] = (uint16_t)(i * 40503u); /* odd multiplier: a permutation */
  const float muls[] = {1.0f, 0.125f, 0.3f, -1.7f};
  const int64_t lens[] = {1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 65536};
  for (int mi = 0; mi < 4; mi++)
    for (int li = 0; li < 11; li++)
      for (int64_t st = 1; st <= 3; st += 2)
        for (int off = 0; off < 3; off++) {
          const int64_t n = lens[li] / st;
          if (n < 1)
            continue;
          attn_load_row_f32(all + off, ATTN_DTYPE_F16, st, n, muls[mi], got);
          int bad = 0;
          for (int64_t i = 0; i < n && !bad; i++, values++) {
            const uint16_t h = all[off + i * st];
            const float want = attn_f16_to_f32(h) * muls[mi];
            bad =
                !(isnan(want) ? isnan(got[i]) : memcmp(&want, &got[i], 4) == 0);
            CHECK(!bad, "f16 %04x * %a (n %lld stride %lld): %a, want %a", h,
                  (double)muls[mi], (long long)n, (long long)st, (double)got[i],
                  (double)want);
          }
        }
  return values;
}

/* attn_store_row to f16 (F16C where the CPU has it) or bf16 (AVX-512 or
 * AVX2, and each of those directly where the CPU has it) against
 * attn_f32_to_f16 / attn_f32_to_bf16, on random bit patterns (NaN,
 * infinities, subnormals included) and, for f16, on every f32 around its
 * subnormal, normal and overflow edges; ties and near-ties of the
 * rounding for both. */
static long check_stores(attn_dtype dt) {
  enum { N = 4099 };
  static float src[N];
  static uint16_t got[3 * N];
  const int f16 = dt == ATTN_DTYPE_F16;
  long values = 0;
  for (int it = 0; it < 600; it++) {
    for (int i = 0; i < N; i++) {
      uint32_t u = rnd() << 16 ^ rnd();
      if (it % 3 == 1 && f16) /* exponents 100..145: subnormals to overflow */
        u = (u & 0x807fffffu) | ((100u + rnd() % 46) << 23);
      else if (it % 3 == 2 && f16) /* ties and near-ties */
        u = (u & 0xffffe000u) | (rnd() % 2 ? 0x1000u : 0x0fffu);
      else if (it % 3 == 2) /* bf16: ties and near-ties */
        u = (u & 0xffff0000u) | (rnd() % 3 == 0   ? 0x8000u
                                 : rnd() % 2 == 0 ? 0x7fffu
                                                  : 0x8001u);
      memcpy(&src[i], &u, 4);
    }
    const int64_t st = it % 4 == 3 ? 3 : 1, n = N - it % 17;
    attn_store_row(src, n, got, dt, st);
#if defined(ATTN_HAVE_X86)
    /* both vector paths where the CPU has them, whichever the row took */
    if (!f16 && st == 1 && it % 4 == 1 && attn_cpu_has_avx2())
      attn_bf16_store_avx2(src, n, got);
    if (!f16 && st == 1 && it % 4 == 2 && attn_cpu_has_avx512())
      attn_bf16_store_avx512(src, n, got);
#endif
    int bad = 0;
    for (int64_t i = 0; i < n && !bad; i++, values++) {
      const uint16_t want =
          f16 ? attn_f32_to_f16(src[i]) : attn_f32_to_bf16(src[i]);
      bad = got[i * st] != want;
      CHECK(!bad, "f32 %a to %s (stride %lld): %04x, want %04x", (double)src[i],
            f16 ? "f16" : "bf16", (long long)st, got[i * st], want);
    }
  }
  return values;
}

/* attn_forward on one head of s rows of d (bshd), q, k and v of type in,
 * o of type out, on one thread of the given ISA. */
static attn_status fwd_one_head(void *q, void *k, void *v, attn_dtype in,
                                void *o, attn_dtype out, int64_t s, int64_t d,
                                attn_isa isa) {
  attn_params p;
  attn_params_init(&p);
  p.q = attn_tensor_bshd(q, in, 1, s, 1, d);
  p.k = attn_tensor_bshd(k, in, 1, s, 1, d);
  p.v = attn_tensor_bshd(v, in, 1, s, 1, d);
  p.o = attn_tensor_bshd(o, out, 1, s, 1, d);
  p.isa = isa;
  p.num_threads = 1;
  return attn_forward(NULL, &p);
}

/* A key with an infinite element poisons its row (attn_load_row_poison): every
 * query that sees it gets NaN, even where IEEE arithmetic would give that
 * key a score of -inf (all queries negative against +inf), on every ISA,
 * for bf16 and f32 keys, through the packing's four-key blocks and its
 * row path (key 37 lies in a four-key block of every panel width; d 6 and
 * 80 leave tails). Returns the cases run. */
static long check_nonfinite_keys(void) {
  enum { S = 70, BAD = 37, DMAX = 80 };
  static const int64_t dims[] = {64, 6, 80, 32};
  static uint16_t q16[S * DMAX], k16[S * DMAX], v16[S * DMAX], o16[S * DMAX];
  static float q32[S * DMAX], k32[S * DMAX], v32[S * DMAX], o32[S * DMAX];
  long cases = 0;
  for (int ii = ATTN_ISA_GENERIC; ii <= ATTN_ISA_AMX_BF16; ii++) {
    if (!attn_isa_supported((attn_isa)ii))
      continue;
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
      const int64_t d = dims[di];
      for (int i = 0; i < S * d; i++) {
        q32[i] = -0.25f - (float)(rnd() % 64) / 64.0f;
        k32[i] = (float)((int)(rnd() % 64) - 32) / 32.0f;
        v32[i] = (float)((int)(rnd() % 64) - 32) / 32.0f;
        q16[i] = attn_f32_to_bf16(q32[i]);
        k16[i] = attn_f32_to_bf16(k32[i]);
        v16[i] = attn_f32_to_bf16(v32[i]);
      }
      for (int bad = 0; bad < 2; bad++) {
        k32[BAD * d + 5] = bad ? INFINITY : k32[BAD * d + 4];
        k16[BAD * d + 5] = bad ? 0x7f80 : k16[BAD * d + 4];
        for (int dt = 0; dt < 3; dt++) { /* bf16 out, bf16 in f32 out, f32 */
          const int in16 = dt < 2;
          const attn_status st = fwd_one_head(
              in16 ? (void *)q16 : q32, in16 ? (void *)k16 : k32,
              in16 ? (void *)v16 : v32, in16 ? ATTN_DTYPE_BF16 : ATTN_DTYPE_F32,
              dt == 0 ? (void *)o16 : o32,
              dt == 0 ? ATTN_DTYPE_BF16 : ATTN_DTYPE_F32, S, d, (attn_isa)ii);
          long nan = 0;
          for (int i = 0; i < S * d; i++)
            nan += dt == 0 ? (o16[i] & 0x7fff) > 0x7f80 : isnan(o32[i]);
          CHECK(st == ATTN_OK && nan == (bad ? S * d : 0),
                "isa %s d %lld %s, key %d %s: status %d, %ld of %lld "
                "outputs NaN",
                attn_isa_name((attn_isa)ii), (long long)d,
                dt == 0   ? "bf16"
                : dt == 1 ? "bf16 in, f32 out"
                          : "f32",
                BAD, bad ? "+inf" : "finite", (int)st, nan, (long long)(S * d));
          cases++;
        }
      }
    }
  }
  return cases;
}

/* f16 and bf16 inputs give the bits of f32 inputs holding the same values
 * (their widening is exact), through the forward's packing of such keys
 * four at a time (F16C for f16 where the CPU has it; bf16 where the ISA
 * has no bf16 kernels) and its row path, on every ISA: finite
 * inputs, an infinity or a NaN in key 37 (every row sees it: all NaN) and
 * an infinity in its value row; d 64, 7 and 80 leave tails, seq 70 a
 * short panel. Returns the cases run. */
static long check_f16_forward(void) {
  enum { S = 70, BAD = 37, DMAX = 80 };
  static const int64_t dims[] = {64, 7, 80, 32};
  static uint16_t q16[S * DMAX], k16[S * DMAX], v16[S * DMAX];
  static float q32[S * DMAX], k32[S * DMAX], v32[S * DMAX];
  static float o32[S * DMAX], o16[S * DMAX];
  long cases = 0;
  for (int ii = ATTN_ISA_GENERIC; ii <= ATTN_ISA_AMX_BF16; ii++) {
    if (!attn_isa_supported((attn_isa)ii))
      continue;
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
      const int64_t d = dims[di];
      for (int bad = 0; bad < 8; bad++) {
        const int bf = bad >= 4; /* bf16 inputs, else f16 */
        /* bf16 q and k on amxbf16 take AMX tiles where d is a multiple
         * of 16, with a softmax of their own (docs/bf16.md: "amxbf16's
         * bits are its own"; the oracle tests check them): no packing of
         * bf16 keys to compare there. */
        if (bf && ii == ATTN_ISA_AMX_BF16 && d % 16 == 0)
          continue;
        for (int i = 0; i < S * d; i++) { /* multiples of 1/32: exact */
          q32[i] = (float)((int)(rnd() % 64) - 32) / 32.0f;
          k32[i] = (float)((int)(rnd() % 64) - 32) / 32.0f;
          v32[i] = (float)((int)(rnd() % 64) - 32) / 32.0f;
        }
        const int64_t at = BAD * d + d - 1; /* the last (tail) element */
        if (bad % 4 == 1 || bad % 4 == 2)
          k32[at] = bad % 4 == 1 ? INFINITY : NAN;
        if (bad % 4 == 3)
          v32[BAD * d] = INFINITY;
        for (int i = 0; i < S * d; i++) {
          q16[i] = bf ? attn_f32_to_bf16(q32[i]) : attn_f32_to_f16(q32[i]);
          k16[i] = bf ? attn_f32_to_bf16(k32[i]) : attn_f32_to_f16(k32[i]);
          v16[i] = bf ? attn_f32_to_bf16(v32[i]) : attn_f32_to_f16(v32[i]);
        }
        attn_status st[2];
        for (int f16 = 0; f16 < 2; f16++) {
          const attn_dtype in = !f16 ? ATTN_DTYPE_F32
                                : bf ? ATTN_DTYPE_BF16
                                     : ATTN_DTYPE_F16;
          st[f16] =
              fwd_one_head(f16 ? (void *)q16 : q32, f16 ? (void *)k16 : k32,
                           f16 ? (void *)v16 : v32, in, f16 ? o16 : o32,
                           ATTN_DTYPE_F32, S, d, (attn_isa)ii);
        }
        long diff = 0, nan = 0;
        for (int i = 0; i < S * d; i++) {
          nan += isnan(o16[i]);
          diff += !(same(o16[i], o32[i]) || (isnan(o16[i]) && isnan(o32[i])));
        }
        CHECK(st[0] == ATTN_OK && st[1] == ATTN_OK && diff == 0 &&
                  (bad == 1 || bad == 2 ? nan == S * d
                   : bad == 0           ? !nan
                                        : 1),
              "isa %s d %lld, case %d: status %d/%d, %ld outputs differ "
              "from f32 inputs', %ld NaN",
              attn_isa_name((attn_isa)ii), (long long)d, bad, (int)st[0],
              (int)st[1], diff, nan);
        cases++;
      }
    }
  }
  return cases;
}

/* attn_load_row_poison (one AVX2 pass for contiguous f32 and bf16 rows,
 * attn_load_row_f32 and a separate test otherwise) against a scalar
 * model: each element widened and multiplied once, and the whole row NaN
 * when one product is not finite (an infinity, a NaN, or an overflow of
 * the multiplier), with the return value saying so. Random finite rows,
 * rows with one bad element at every position of the vector loop and its
 * tail, lengths 0..70, strides 1 and 3, f32, bf16 and f16. */
static long check_load_poison(void) {
  enum { N = 70, ST = 3 };
  static float src32[N * ST], got[N], want[N];
  static uint16_t src16[N * ST];
  static const float muls[] = {1.0f, 0.125f, 0x1p100f};
  static const attn_dtype dts[] = {ATTN_DTYPE_F32, ATTN_DTYPE_BF16,
                                   ATTN_DTYPE_F16};
  long rows = 0, finite[3] = {0, 0, 0}; /* finite rows of 8 or more */
  for (int it = 0; it < 4000; it++) {
    const attn_dtype dt = dts[it % 3];
    const int64_t n = (it / 3) % (N + 1), st = it % 2 ? ST : 1;
    const float mul = muls[(it / 7) % 3];
    for (int64_t i = 0; i < n * st; i++) {
      /* exponents around 1 (and, now and then, near the top) */
      const uint32_t e =
          rnd() % 16 == 0 ? 200u + rnd() % 54 : 120u + rnd() % 16;
      uint32_t u = (rnd() & 0x807fffu) << 8 ^ (rnd() & 0xffu);
      u = (u & 0x807fffffu) | e << 23;
      memcpy(&src32[i], &u, 4);
      src16[i] =
          dt == ATTN_DTYPE_F16
              /* f16: the near-top exponents to 2^-39 .. 2^14 */
              ? attn_f32_to_f16(e >= 200u ? src32[i] * 0x1p-112f : src32[i])
              : attn_f32_to_bf16(src32[i]);
    }
    if (n > 0 && it % 4 == 0) { /* one non-finite element */
      const int64_t at = (int64_t)(rnd() % (uint32_t)n) * st;
      const int kind = (int)(rnd() % 3);
      src32[at] = kind == 0 ? INFINITY : kind == 1 ? -INFINITY : NAN;
      src16[at] = dt == ATTN_DTYPE_F16 ? (kind == 2 ? 0x7e00 : 0x7c00)
                                       : attn_f32_to_bf16(src32[at]);
    }
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
      const float x = dt == ATTN_DTYPE_F32   ? src32[i * st]
                      : dt == ATTN_DTYPE_F16 ? attn_f16_to_f32(src16[i * st])
                                             : attn_bf16_to_f32(src16[i * st]);
      want[i] = x * mul;
      bad |= !isfinite(want[i]);
    }
    const void *src = dt == ATTN_DTYPE_F32 ? (const void *)src32 : src16;
    const int ret = attn_load_row_poison(src, dt, st, n, mul, got);
    int ok = ret == bad;
    for (int64_t i = 0; i < n && ok; i++)
      ok = bad ? isnan(got[i]) : memcmp(&got[i], &want[i], 4) == 0;
    CHECK(ok,
          "load_row_poison %s n %lld stride %lld mul %a: returned %d, "
          "want %d",
          dt == ATTN_DTYPE_F32   ? "f32"
          : dt == ATTN_DTYPE_F16 ? "f16"
                                 : "bf16",
          (long long)n, (long long)st, (double)mul, ret, bad);
    finite[it % 3] += !bad && n >= 8;
    rows++;
  }
  for (int i = 0; i < 3; i++) /* the vector loops saw finite rows too */
    CHECK(finite[i] >= 100, "load_row_poison: %ld finite rows of dtype %d",
          finite[i], i);
  return rows;
}

/* D of the bf16 backward (attn_bwd_kernel.row_dot of the generic bf16 and
 * avx512bf16 kernels) against vf_dot2's lane written out here: per row,
 * pairs in order, the second element first, inputs and each fused step
 * flushed to zero below FLT_MIN. The kernels skip the flushes for rows
 * whose nonzero elements are all at least 2^-40 (bwd_body.h's
 * row_plain); rows around that edge, with tiny, subnormal, large and
 * non-finite elements and with cancellation, must give the same bits. */
static float row_rule(const float *a, const float *b, int64_t n) {
  float acc = 0.0f;
  for (int64_t c = 0; c < n; c += 2) {
    if (c + 1 < n)
      acc = ftz(fmaf(ftz(a[c + 1]), ftz(b[c + 1]), acc));
    acc = ftz(fmaf(ftz(a[c]), ftz(b[c]), acc));
  }
  return acc;
}

static float rand_row_elem(int mode) {
  if (mode < 3)
    return rand_f32(mode);
  if (rnd() % 8 == 0) /* some zeros of either sign */
    return (rnd() & 1) ? -0.0f : 0.0f;
  /* mode 3: exponents 2^-40 .. 2^-36 (rows the kernels take unflushed);
   * mode 4: 2^-70 .. 2^-61 (products and their sums around FLT_MIN) */
  const uint32_t e = mode == 3 ? 87u + rnd() % 5 : 57u + rnd() % 10;
  return bits_f((rnd() & 0x807fffu) | (e << 23));
}

static long check_row_dot(void) {
  static const int64_t lens[] = {1, 2, 3, 31, 32, 64, 65, 80, 128};
  const attn_bwd_kernel *ks[2] = {attn_bwd_kernel_generic_bf16(), NULL};
#if defined(ATTN_TEST_X86)
  if (attn_isa_supported(ATTN_ISA_AVX512_BF16))
    ks[1] = attn_bwd_kernel_avx512bf16();
#endif
  long rows_checked = 0;
  enum { R = 9, LD = 131 };
  static float a[R * LD], b[R * LD];
  for (int it = 0; it < 600; it++) {
    const int64_t n = lens[it % (int)(sizeof lens / sizeof lens[0])];
    const int64_t rows = 1 + it % R;
    /* kinds: every row near 1; every row at 2^-40 .. 2^-36 (cancelling
     * sums); every row at 2^-70 .. 2^-61; every row near 1 but one
     * element tiny, subnormal or of any exponent; each row its own mode;
     * any exponent (inf, NaN) */
    const int kind = it % 6;
    for (int64_t i = 0; i < rows; i++) {
      const int mode = kind == 0 || kind == 3 ? 0
                       : kind == 1            ? 3
                       : kind == 2            ? 4
                       : kind == 4            ? (int)((it + i) % 5)
                                              : 1;
      for (int64_t c = 0; c < n; c++) {
        a[i * LD + c] = rand_row_elem(mode);
        b[i * LD + c] = rand_row_elem(mode);
      }
      if (kind == 3)
        a[i * LD + rnd() % n] = rand_row_elem(1 + (int)(rnd() % 4));
    }
    for (int k = 0; k < 2; k++) {
      if (!ks[k])
        continue;
      float out[R];
      ks[k]->row_dot(a, LD, b, LD, n, rows, out);
      for (int64_t i = 0; i < rows; i++, rows_checked++) {
        const float want = row_rule(a + i * LD, b + i * LD, n);
        CHECK(same(out[i], want),
              "row_dot (%s) n %lld row %lld of %lld: %a, want %a",
              attn_isa_name(ks[k]->isa), (long long)n, (long long)i,
              (long long)rows, (double)out[i], (double)want);
      }
    }
  }
  return rows_checked;
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("non-finite keys poison their rows: %ld runs\n",
         check_nonfinite_keys());
  printf("f16 and bf16 inputs give f32 inputs' bits: %ld runs\n",
         check_f16_forward());
  printf("rows loaded and poisoned (AVX2 %s): %ld rows\n",
         attn_isa_supported(ATTN_ISA_AVX2) ? "used" : "not on this CPU",
         check_load_poison());
  printf("f16 widening (F16C %s): %ld values bit for bit\n",
         attn_isa_supported(ATTN_ISA_AVX2) ? "used" : "not on this CPU",
         check_f16_rows());
  printf("f16 narrowing: %ld values bit for bit\n",
         check_stores(ATTN_DTYPE_F16));
  printf("bf16 narrowing (AVX2 %s, AVX-512 %s): %ld values bit for bit\n",
         attn_isa_supported(ATTN_ISA_AVX2) ? "used" : "not on this CPU",
         attn_isa_supported(ATTN_ISA_AVX512) ? "used" : "not on this CPU",
         check_stores(ATTN_DTYPE_BF16));
  printf("D of the bf16 backward (row_dot): %ld rows bit for bit\n",
         check_row_dot());
  const int hw = attn_isa_supported(ATTN_ISA_AVX512_BF16);
  long lanes = 0, lanes_hw = 0, cvt = 0;
  for (int it = 0; it < 300000; it++) {
    const int mode = it % 3;
    float c[16], o_gen[16], o_hw[16], x[32];
    uint16_t a[32], b[32], h_gen[32], h_hw[32];
    for (int i = 0; i < 16; i++)
      c[i] = rand_f32(mode);
    for (int i = 0; i < 32; i++) {
      a[i] = rand_bf16(mode);
      b[i] = rand_bf16(it % 7 == 0 ? 2 : mode);
      x[i] = rand_f32(mode);
    }
    bf16_dot_generic(c, a, b, o_gen);
    bf16_cvt_generic(x, h_gen);
    for (int i = 0; i < 16; i++, lanes++) {
      const float want =
          dot_rule(c[i], a[2 * i], a[2 * i + 1], b[2 * i], b[2 * i + 1]);
      CHECK(same(o_gen[i], want),
            "emulated dot: c %a a %04x %04x b %04x %04x: "
            "%a, want %a",
            (double)c[i], a[2 * i], a[2 * i + 1], b[2 * i], b[2 * i + 1],
            (double)o_gen[i], (double)want);
    }
    for (int i = 0; i < 32; i++) {
      if (fabsf(x[i]) >= FLT_MIN && isfinite(x[i]) &&
          fabsf(x[i]) < 3.3e38f) { /* normal, no overflow to inf */
        CHECK(h_gen[i] == attn_f32_to_bf16(x[i]),
              "emulated cvt %a: %04x, "
              "want %04x",
              (double)x[i], h_gen[i], attn_f32_to_bf16(x[i]));
        cvt++;
      }
    }
#if defined(ATTN_TEST_X86)
    if (hw) {
      bf16_dot_avx512bf16(c, a, b, o_hw);
      bf16_cvt_avx512bf16(x, h_hw);
      for (int i = 0; i < 16; i++, lanes_hw++)
        CHECK(same(o_gen[i], o_hw[i]),
              "vdpbf16ps: c %a a %04x %04x b %04x "
              "%04x: hw %a, emulated %a",
              (double)c[i], a[2 * i], a[2 * i + 1], b[2 * i], b[2 * i + 1],
              (double)o_hw[i], (double)o_gen[i]);
      for (int i = 0; i < 32; i++) {
        const int nan = (h_hw[i] & 0x7fff) > 0x7f80;
        CHECK(nan ? (h_gen[i] & 0x7fff) > 0x7f80 : h_gen[i] == h_hw[i],
              "vcvtne2ps2bf16 %a: hw %04x, emulated %04x", (double)x[i],
              h_hw[i], h_gen[i]);
      }
    }
#else
    (void)o_hw, (void)h_hw;
#endif
  }
  printf("emulated dot: %ld lanes against the rule; conversion: %ld values\n",
         lanes, cvt);
  if (hw)
    printf("AVX512-BF16: %ld lanes and conversions bit for bit against the "
           "instructions\n",
           lanes_hw);
  else
    printf("AVX512-BF16: not on this CPU; the instructions were not run\n");
  printf("%ld passed, %ld failed\n", n_pass, n_fail);
  return n_fail != 0;
}
