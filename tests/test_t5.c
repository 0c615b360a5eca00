/*
 * attn_t5_bucket (src/pos/t5.c) against three independent references:
 *
 *   1. buckets computed by PyTorch with the Hugging Face reference formula
 *      (T5Attention._relative_position_bucket), pasted below as numbers
 *      (made once with torch 2.x by a throw-away script; no torch needed
 *      here);
 *   2. values derived by hand from the definition (T5 paper, section 2.1:
 *      half the buckets exact, the rest logarithmic up to max_distance);
 *   3. a float64 rendition of the formula, on every distance whose
 *      logarithmic position is not within 1e-4 of a bucket edge (there f32
 *      and f64 may round differently, and the reference is f32), plus the
 *      test oracle's own f32 rendition (tests/oracle_pos.c) on every
 *      distance, edges included;
 *
 * and the undefined corners: bad arguments give -1, one bucket gives 0,
 * INT64_MIN / INT64_MAX distances, max_distance at or below the exact range.
 * Prints "N passed, N failed".
 */
#include "attn.h"
#include "oracle_pos.h"
#include "test_common.h"

#include <math.h>
#include <stdio.h>

static long n_pass, n_fail;

/* clang-format off */
static const int64_t t5_rels[44] = {-100000, -3000, -1000, -257, -256, -255, -200, -129, -128, -127, -100, -64, -63, -33, -32, -31, -17, -16, -15, -12, -11, -9, -8, -7, -3, -1, 0, 1, 2, 5, 8, 9, 12, 16, 31, 32, 64, 100, 127, 128, 129, 500, 4096, 1000000};
static const struct {
  int64_t buckets, max_distance;
  int bidirectional;
  int64_t want[44];
} t5_torch[7] = {
  {32, 128, 1, {15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 14, 13, 12, 12, 11, 10, 10, 9, 9, 8, 8, 8, 7, 3, 1, 0, 17, 18, 21, 24, 24, 25, 26, 27, 28, 30, 31, 31, 31, 31, 31, 31, 31}},
  {32, 128, 0, {31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 30, 26, 26, 21, 21, 21, 16, 16, 15, 12, 11, 9, 8, 7, 3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
  {16, 50, 1, {7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 5, 5, 5, 5, 4, 3, 1, 0, 9, 10, 12, 13, 13, 13, 14, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15}},
  {7, 20, 0, {6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 5, 5, 5, 5, 4, 3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
  {64, 1000, 1, {31, 31, 31, 26, 26, 26, 25, 24, 24, 24, 23, 21, 21, 18, 18, 18, 16, 16, 15, 12, 11, 9, 8, 7, 3, 1, 0, 33, 34, 37, 40, 41, 44, 48, 50, 50, 53, 55, 56, 56, 56, 61, 63, 63}},
  {33, 17, 0, {32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 16, 15, 12, 11, 9, 8, 7, 3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
  {9, 300, 1, {3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 0, 5, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7}},
};
/* clang-format on */

static void test_torch_table(void) {
  const int nr = (int)(sizeof t5_rels / sizeof t5_rels[0]);
  const int nc = (int)(sizeof t5_torch / sizeof t5_torch[0]);
  for (int c = 0; c < nc; c++)
    for (int i = 0; i < nr; i++) {
      const int64_t got =
          attn_t5_bucket(t5_rels[i], t5_torch[c].buckets,
                         t5_torch[c].max_distance, t5_torch[c].bidirectional);
      CHECK(got == t5_torch[c].want[i],
            "torch table: rel %lld, buckets %lld, max %lld, bidir %d: got "
            "%lld want %lld",
            (long long)t5_rels[i], (long long)t5_torch[c].buckets,
            (long long)t5_torch[c].max_distance, t5_torch[c].bidirectional,
            (long long)got, (long long)t5_torch[c].want[i]);
    }
}

/* T5's defaults by hand: 32 buckets, max distance 128. Bidirectional: 16
 * per direction, 8 exact, then 8 + floor(8 log(n/8) / log 16), that is
 * edges at n = 8 * 16^(k/8): 8, 11.3, 16, 22.6, 32, 45.3, 64, 90.5, 128.
 * Unidirectional (decoder): 32 buckets for rel <= 0, 16 exact, then
 * 16 + floor(16 log(n/16) / log 8). */
static void test_by_hand(void) {
  static const int64_t bi[][2] = {
      {0, 0},          {-1, 1},        {-7, 7},     {-8, 8},   {-11, 8},
      {-12, 9},        {-16, 10},      {-22, 10},   {-23, 11}, {-32, 12},
      {-45, 12},       {-46, 13},      {-64, 14},   {-90, 14}, {-91, 15},
      {-127, 15},      {-128, 15},     {-5000, 15}, {1, 17},   {7, 23},
      {8, 24},         {16, 26},       {64, 30},    {128, 31}, {9999, 31},
      {INT64_MAX, 31}, {INT64_MIN, 15}};
  for (size_t i = 0; i < sizeof bi / sizeof bi[0]; i++) {
    const int64_t got = attn_t5_bucket(bi[i][0], 32, 128, 1);
    CHECK(got == bi[i][1], "bidirectional 32/128: rel %lld got %lld want %lld",
          (long long)bi[i][0], (long long)got, (long long)bi[i][1]);
  }
  static const int64_t uni[][2] = {
      {5, 0},     {1, 0},      {0, 0},          {-15, 15},
      {-16, 16},  {-32, 21},   {-64, 26},       {-127, 31},
      {-128, 31}, {-1000, 31}, {INT64_MIN, 31}, {INT64_MAX, 0}};
  for (size_t i = 0; i < sizeof uni / sizeof uni[0]; i++) {
    const int64_t got = attn_t5_bucket(uni[i][0], 32, 128, 0);
    CHECK(got == uni[i][1],
          "unidirectional 32/128: rel %lld got %lld want "
          "%lld",
          (long long)uni[i][0], (long long)got, (long long)uni[i][1]);
  }
}

/* Arguments and degenerate tables. */
static void test_corners(void) {
  CHECK(attn_t5_bucket(3, 0, 128, 0) == -1, "buckets 0 -> -1");
  CHECK(attn_t5_bucket(3, -4, 128, 1) == -1, "buckets -4 -> -1");
  CHECK(attn_t5_bucket(3, 32, 0, 0) == -1, "max_distance 0 -> -1");
  CHECK(attn_t5_bucket(3, 1, 128, 1) == -1, "bidirectional 1 bucket -> -1");
  static const int64_t rels[] = {INT64_MIN, -100, -1, 0, 1, 100, INT64_MAX};
  for (int i = 0; i < 7; i++) {
    const int64_t r = rels[i];
    CHECK(attn_t5_bucket(r, 1, 1, 0) == 0, "one bucket: rel %lld",
          (long long)r);
    /* 2 or 3 bidirectional buckets: one per direction (no exact range) */
    CHECK(attn_t5_bucket(r, 2, 5, 1) == (r > 0),
          "2 bidirectional buckets: rel %lld", (long long)r);
    CHECK(attn_t5_bucket(r, 3, 5, 1) == (r > 0),
          "3 bidirectional buckets: rel %lld", (long long)r);
    /* max_distance == exact range (8): log(D / E) = 0, past it the last */
    const int64_t n = r < 0 ? (r == INT64_MIN ? INT64_MAX : -r) : 0;
    CHECK(attn_t5_bucket(r, 16, 8, 0) == (n < 8 ? n : 15),
          "max_distance = exact: rel %lld", (long long)r);
  }
  /* max_distance below the exact range: always inside 0 .. buckets - 1 */
  for (int64_t r = -5000; r <= 5000; r += 7)
    for (int64_t md = 1; md < 16; md += 3) {
      const int64_t b = attn_t5_bucket(r, 32, md, 1);
      CHECK(b >= 0 && b < 32, "max_distance %lld: rel %lld bucket %lld",
            (long long)md, (long long)r, (long long)b);
    }
}

/* Bucket of one direction in float64, and how far x is from an edge. */
static int64_t bucket_f64(int64_t n, int64_t nb, int64_t md, double *gap) {
  const int64_t e = nb / 2;
  *gap = 1.0;
  if (n < e)
    return n;
  const double x = log((double)n / e) / log((double)md / e) * (double)(nb - e);
  *gap = fabs(x - floor(x + 0.5));
  const int64_t b = e + (int64_t)x;
  return b < nb - 1 ? b : nb - 1;
}

static void test_f64_and_oracle(void) {
  static const int64_t nbs[] = {4, 5, 8, 9, 16, 31, 32, 33, 64, 100, 256};
  static const int64_t mds[] = {3, 9, 17, 40, 64, 128, 129, 500, 1000, 65536};
  long compared = 0, skipped = 0, bad = 0, bad_oracle = 0;
  for (size_t a = 0; a < sizeof nbs / sizeof nbs[0]; a++)
    for (size_t m = 0; m < sizeof mds / sizeof mds[0]; m++)
      for (int bi = 0; bi < 2; bi++) {
        const int64_t nb = nbs[a], md = mds[m];
        const int64_t dir = bi ? nb / 2 : nb, e = dir / 2;
        for (int64_t r = -4000; r <= 4000; r++) {
          const int64_t got = attn_t5_bucket(r, nb, md, bi);
          bad_oracle += got != oracle_t5_bucket(r, nb, md, bi);
          if (e < 1 || md <= e)
            continue;
          const int64_t n = bi ? llabs(r) : (r < 0 ? -r : 0);
          double gap;
          const int64_t want =
              (bi && r > 0 ? dir : 0) + bucket_f64(n, dir, md, &gap);
          if (gap < 1e-4) {
            skipped++;
            continue;
          }
          compared++;
          if (got != want && bad++ < 5)
            printf("  f64: rel %lld, %lld buckets, max %lld, bidir %d: got "
                   "%lld want %lld\n",
                   (long long)r, (long long)nb, (long long)md, bi,
                   (long long)got, (long long)want);
        }
      }
  CHECK(bad == 0, "float64 rendition: %ld of %ld differ", bad, compared);
  CHECK(bad_oracle == 0, "oracle's f32 rendition: %ld differ", bad_oracle);
  printf("float64 rendition: %ld distances compared, %ld within 1e-4 of an "
         "edge skipped\n",
         compared, skipped);
}

int main(void) {
  test_torch_table();
  test_by_hand();
  test_corners();
  test_f64_and_oracle();
  printf("%ld passed, %ld failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
