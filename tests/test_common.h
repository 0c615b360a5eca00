/*
 * Small helpers shared by the test programs: a seeded RNG, independent
 * bf16/f16 conversions (the tests do not trust the library's own), timing and
 * environment parsing. Header-only on purpose: any test program may include
 * it, with or without the oracles (oracle.h) and the problem generator
 * (problem.h).
 */
#ifndef ATTN_TEST_COMMON_H
#define ATTN_TEST_COMMON_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The tally of a test program: it defines `long n_pass, n_fail` at file
 * scope; CHECK(cond, fmt, ...) counts, and prints the first 50 failures
 * with their place. */
#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (cond) {                                                                \
      n_pass++;                                                                \
    } else if (n_fail++ < 50) {                                                \
      printf("FAIL %s:%d: ", __FILE__, __LINE__);                              \
      printf(__VA_ARGS__);                                                     \
      printf("\n");                                                            \
    }                                                                          \
  } while (0)

/* ---------------------------------------------------------------------- */
/* RNG: splitmix64, deterministic on every platform.                      */
/* ---------------------------------------------------------------------- */
typedef struct tc_rng {
  uint64_t s;
} tc_rng;

static inline uint64_t tc_next(tc_rng *r) {
  uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Mixes a run seed and a case index into the seed of one case. */
static inline uint64_t tc_case_seed(uint64_t seed, uint64_t index) {
  tc_rng r = {seed ^ (index * 0xD1B54A32D192ED03ull)};
  tc_next(&r);
  return tc_next(&r);
}

/* Uniform integer in [0, n). */
static inline int64_t tc_below(tc_rng *r, int64_t n) {
  return n <= 1 ? 0 : (int64_t)(tc_next(r) % (uint64_t)n);
}

/* Uniform integer in [lo, hi]. */
static inline int64_t tc_range(tc_rng *r, int64_t lo, int64_t hi) {
  return lo + tc_below(r, hi - lo + 1);
}

/* Uniform double in [0, 1). */
static inline double tc_unit(tc_rng *r) {
  return (double)(tc_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

static inline int tc_chance(tc_rng *r, double p) { return tc_unit(r) < p; }

static inline double tc_uniform(tc_rng *r, double lo, double hi) {
  return lo + (hi - lo) * tc_unit(r);
}

/* Standard normal (Box-Muller, one value per call). */
static inline double tc_normal(tc_rng *r) {
  double u1 = tc_unit(r), u2 = tc_unit(r);
  if (u1 < 1e-300)
    u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* ---------------------------------------------------------------------- */
/* Conversions, written independently of the library (round to nearest    */
/* even, NaN stays a quiet NaN, overflow to inf, subnormals kept).        */
/* ---------------------------------------------------------------------- */
static inline uint32_t tc_f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static inline float tc_bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static inline float tc_bf16_to_f32(uint16_t h) {
  return tc_bits_f32((uint32_t)h << 16);
}

static inline uint16_t tc_f32_to_bf16(float f) {
  uint32_t x = tc_f32_bits(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u)
    return (uint16_t)((x >> 16) | 0x0040u);
  return (uint16_t)((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

static inline float tc_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
  if (e == 0) {
    float v = ldexpf((float)m, -24);
    return sign ? -v : v;
  }
  if (e == 31)
    return tc_bits_f32(sign | 0x7F800000u | (m << 13));
  return tc_bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

static inline uint16_t tc_f32_to_f16(float f) {
  uint32_t x = tc_f32_bits(f);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  uint32_t ax = x & 0x7FFFFFFFu;
  if (ax > 0x7F800000u) /* NaN: quiet, keep the top payload bits */
    return (uint16_t)(sign | 0x7E00u | ((ax >> 13) & 0x3FFu));
  if (ax >= 0x477FF000u) /* >= 65520 rounds to inf */
    return (uint16_t)(sign | 0x7C00u);
  if (ax >= 0x38800000u) { /* normal half: >= 2^-14 */
    uint32_t r = ax - 0x38000000u;
    r = (r + 0x0FFFu + ((r >> 13) & 1u)) >> 13;
    return (uint16_t)(sign | r);
  }
  if (ax < 0x33000000u) /* below 2^-25: rounds to zero */
    return sign;
  {
    uint32_t e = ax >> 23, m = (ax & 0x7FFFFFu) | 0x800000u;
    uint32_t shift = 126u - e; /* 14..24 */
    uint32_t r = m >> shift, rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (r & 1u)))
      r++;
    return (uint16_t)(sign | r);
  }
}

/* ---------------------------------------------------------------------- */
/* Misc                                                                   */
/* ---------------------------------------------------------------------- */
static inline double tc_now(void) {
  struct timespec ts;
  timespec_get(&ts, TIME_UTC);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Integer from the environment, or def when unset or unparsable. */
static inline long long tc_env_ll(const char *name, long long def) {
  const char *s = getenv(name);
  char *end = NULL;
  long long v;
  if (!s || !*s)
    return def;
  v = strtoll(s, &end, 0);
  return (end && *end == '\0') ? v : def;
}

static inline unsigned long long tc_env_ull(const char *name,
                                            unsigned long long def) {
  const char *s = getenv(name);
  char *end = NULL;
  unsigned long long v;
  if (!s || !*s)
    return def;
  v = strtoull(s, &end, 0);
  return (end && *end == '\0') ? v : def;
}

/* malloc that never returns NULL for a test (exits on failure). */
static inline void *tc_alloc(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) {
    fprintf(stderr, "test: out of memory (%zu bytes)\n", bytes);
    exit(2);
  }
  return p;
}

#endif /* ATTN_TEST_COMMON_H */
