/*
 * test_status, the options appended in 0.2 (see test_status.c): prefix-LM
 * (never with causal: ATTN_ERR_INVALID_ARGUMENT), position offsets per call
 * and per sequence, their defaults, and a few identities that need no
 * oracle (equal shifts of query and key positions change nothing).
 * Skipped with ATTN_TEST_NEW_OPTIONS=0. Compiled masks: test_mask_compiled.
 */
#include "problem.h"
#include "status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void test_new_defaults(void) {
  attn_params p;
  memset(&p, 0x5A, sizeof p);
  attn_params_init(&p);
  CHECK(p.q_pos_offset == 0 && p.k_pos_offset == 0 && !p.q_pos_offsets &&
            !p.k_pos_offsets,
        "params_init: positions");
  CHECK(p.prefix_len == -1, "params_init: prefix_len %lld, want -1",
        (long long)p.prefix_len);
  CHECK(p.compiled_mask == NULL, "params_init: compiled_mask");
}

static void test_prefix(void) {
  attn_params p;
  const int64_t ok[6] = {0, 1, 3, SK, SK + 5, INT64_MAX};
  char what[96];
  for (int i = 0; i < 6; i++) {
    base(&p), p.prefix_len = ok[i];
    snprintf(what, sizeof what, "prefix_len %lld ok", (long long)ok[i]);
    expect(what, &p, ATTN_OK);
  }
  for (int c = 1; c <= 2; c++)
    for (int i = 0; i < 3; i++) {
      base(&p), p.prefix_len = ok[i], p.causal = (attn_causal)c;
      snprintf(what, sizeof what, "prefix_len %lld with causal %d",
               (long long)ok[i], c);
      expect(what, &p, ATTN_ERR_INVALID_ARGUMENT);
    }
  base(&p), p.prefix_len = -2;
  expect("prefix_len -2", &p, ATTN_ERR_INVALID_ARGUMENT);
  base(&p), p.prefix_len = INT64_MIN;
  expect("prefix_len INT64_MIN", &p, ATTN_ERR_INVALID_ARGUMENT);
  base(&p), p.prefix_len = 2, p.window_left = 1, p.window_right = 0;
  expect("prefix_len with a window ok", &p, ATTN_OK);
}

/* o and lse of p with one change, against a reference run: max |diff|. */
static double diff_after(attn_params *p, const float *o_ref,
                         const float *lse_ref) {
  double e = 0.0;
  if (attn_forward(NULL, p) != ATTN_OK)
    return INFINITY;
  for (size_t x = 0; x < (size_t)B * SQ * HQ * DV; x++)
    e = fmax(e, fabs((double)obuf[x] - o_ref[x]));
  for (size_t x = 0; x < (size_t)B * HQ * SQ; x++)
    if (!(isinf(lsebuf[x]) && isinf(lse_ref[x])))
      e = fmax(e, fabs((double)lsebuf[x] - lse_ref[x]));
  return e;
}

/* Equal shifts of every query and key position change nothing: causal,
 * window and ALiBi read only differences. */
static void test_position_shifts(void) {
  static float o_ref[B * SQ * HQ * DV], lse_ref[B * HQ * SQ];
  static float slopes[HQ];
  static int64_t qo[B] = {4, -9}, ko[B] = {4, -9};
  attn_params p;
  attn_alibi_slopes(HQ, slopes);
  for (int c = 0; c < 3; c++) {
    base(&p), p.causal = (attn_causal)c, p.window_left = 2;
    p.alibi_slopes = slopes;
    if (attn_forward(NULL, &p) != ATTN_OK) {
      CHECK(0, "reference call failed: %s", msg);
      return;
    }
    memcpy(o_ref, obuf, sizeof o_ref);
    memcpy(lse_ref, lsebuf, sizeof lse_ref);
    p.q_pos_offset = p.k_pos_offset = 37;
    double e = diff_after(&p, o_ref, lse_ref);
    CHECK(e < 1e-5, "causal %d: q/k offsets +37 differ by %g (%s)", c, e, msg);
    p.q_pos_offset = p.k_pos_offset = 0;
    p.q_pos_offsets = qo, p.k_pos_offsets = ko;
    e = diff_after(&p, o_ref, lse_ref);
    CHECK(e < 1e-5, "causal %d: per-sequence offsets (4, -9) differ by %g (%s)",
          c, e, msg);
  }
  /* bottom-right with queries moved back by seq_k - seq_q is top-left */
  base(&p), p.causal = ATTN_CAUSAL_TOP_LEFT;
  if (attn_forward(NULL, &p) == ATTN_OK) {
    memcpy(o_ref, obuf, sizeof o_ref);
    memcpy(lse_ref, lsebuf, sizeof lse_ref);
    p.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    p.q_pos_offset = -(SK - SQ);
    const double e = diff_after(&p, o_ref, lse_ref);
    CHECK(e < 1e-5,
          "bottom-right with q_pos_offset %d differs from top-left "
          "by %g",
          -(SK - SQ), e);
  }
}

static void test_positions(void) {
  attn_params p;
  static int64_t offs[B] = {-3, 1000000};
  static const int64_t ok[4] = {-1000000, -1, 1, (int64_t)1 << 40};
  char what[96];
  for (int i = 0; i < 4; i++) {
    base(&p), p.q_pos_offset = ok[i], p.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    snprintf(what, sizeof what, "q_pos_offset %lld ok", (long long)ok[i]);
    expect(what, &p, ATTN_OK);
    base(&p), p.k_pos_offset = ok[i], p.window_left = 3;
    snprintf(what, sizeof what, "k_pos_offset %lld ok", (long long)ok[i]);
    expect(what, &p, ATTN_OK);
  }
  base(&p), p.q_pos_offsets = offs, p.k_pos_offsets = offs;
  expect("per-sequence offsets ok", &p, ATTN_OK);
  /* an offset so big that positions or their differences overflow int64
   * must be refused, never computed with */
  static const int64_t huge[2] = {INT64_MAX, INT64_MIN};
  for (int i = 0; i < 2; i++) {
    base(&p), p.q_pos_offset = huge[i], p.causal = ATTN_CAUSAL_TOP_LEFT;
    p.window_left = p.window_right = 2;
    snprintf(what, sizeof what, "q_pos_offset %lld", (long long)huge[i]);
    expect2(what, &p, ATTN_ERR_INVALID_ARGUMENT, ATTN_ERR_OVERFLOW);
    base(&p), p.k_pos_offset = huge[i], p.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    snprintf(what, sizeof what, "k_pos_offset %lld", (long long)huge[i]);
    expect2(what, &p, ATTN_ERR_INVALID_ARGUMENT, ATTN_ERR_OVERFLOW);
  }
}

void status_new_tests(void) {
  if (!tp_new_options()) {
    printf("note: ATTN_TEST_NEW_OPTIONS=0: prefix-LM and positions skipped\n");
    return;
  }
  test_new_defaults();
  test_prefix();
  test_positions();
  test_position_shifts();
}
