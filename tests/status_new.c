/*
 * test_status, the options appended in 0.2 (see test_status.c): prefix-LM
 * (never with causal: ATTN_ERR_INVALID_ARGUMENT), position offsets per call
 * and per sequence, their defaults, and a few identities that need no
 * oracle (equal shifts of query and key positions change nothing); the T5
 * table of 0.3 (rel_buckets, rel_max_distance, rel_bidirectional, overlaps
 * of rel_bias and drel_bias, forward and backward).
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

/* T5: defaults, ranges, overlaps, and a constant table changing nothing
 * but the LSE (softmax ignores a shift of every score). */
static void test_t5_forward(void) {
  static float tab[65 * HQ];
  static float o_ref[B * SQ * HQ * DV], lse_ref[B * HQ * SQ];
  attn_params p;
  char what[96];
  attn_params_init(&p);
  CHECK(!p.rel_bias && p.rel_buckets == 32 && p.rel_max_distance == 128 &&
            !p.rel_bidirectional && !p.drel_bias,
        "params_init: T5 fields (NULL, 32, 128, 0, NULL)");
  base(&p), p.rel_bias = tab;
  expect("rel_bias with the defaults ok", &p, ATTN_OK);
  static const int64_t nb_bad[5] = {0, -1, 65537, INT64_MAX, INT64_MIN};
  for (int i = 0; i < 5; i++) {
    base(&p), p.rel_bias = tab, p.rel_buckets = nb_bad[i];
    snprintf(what, sizeof what, "rel_buckets %lld", (long long)nb_bad[i]);
    expect(what, &p, ATTN_ERR_INVALID_ARGUMENT);
    CHECK(strstr(msg, "rel_buckets") != NULL, "message names rel_buckets: %s",
          msg);
  }
  base(&p), p.rel_buckets = 0; /* not read without rel_bias */
  expect("rel_buckets 0 without rel_bias ok", &p, ATTN_OK);
  static const int64_t nb_ok[5] = {1, 2, 3, 33, 65};
  for (int i = 0; i < 5; i++)
    for (int bi = 0; bi < 2; bi++) {
      base(&p), p.rel_bias = tab, p.rel_buckets = nb_ok[i];
      p.rel_bidirectional = bi;
      snprintf(what, sizeof what, "rel_buckets %lld bidirectional %d",
               (long long)nb_ok[i], bi);
      expect(what, &p,
             bi && nb_ok[i] < 2 ? ATTN_ERR_INVALID_ARGUMENT : ATTN_OK);
    }
  static const int64_t md[4] = {0, -3, 1, INT64_MAX};
  for (int i = 0; i < 4; i++) {
    base(&p), p.rel_bias = tab, p.rel_max_distance = md[i];
    snprintf(what, sizeof what, "rel_max_distance %lld", (long long)md[i]);
    expect(what, &p, md[i] >= 1 ? ATTN_OK : ATTN_ERR_INVALID_ARGUMENT);
  }
  base(&p), p.rel_bias = obuf + 3;
  expect("rel_bias overlaps o", &p, ATTN_ERR_OVERLAP);
  CHECK(strstr(msg, "rel_bias") != NULL, "message names rel_bias: %s", msg);
  base(&p), p.rel_bias = lsebuf + 1;
  expect("rel_bias overlaps lse", &p, ATTN_ERR_OVERLAP);
  base(&p), p.rel_bias = qbuf;
  expect("rel_bias may share q's memory (both inputs)", &p, ATTN_OK);
  base(&p), p.drel_bias = obuf; /* backward only: the forward ignores it */
  expect("drel_bias ignored by the forward", &p, ATTN_OK);

  for (int c = 0; c < 3; c++) {
    base(&p), p.causal = (attn_causal)c;
    if (attn_forward(NULL, &p) != ATTN_OK) {
      CHECK(0, "reference call failed: %s", msg);
      return;
    }
    memcpy(o_ref, obuf, sizeof o_ref);
    memcpy(lse_ref, lsebuf, sizeof lse_ref);
    for (int x = 0; x < 65 * HQ; x++)
      tab[x] = 0.75f;
    p.rel_bias = tab, p.rel_buckets = 7, p.rel_max_distance = 3;
    p.rel_bidirectional = c == 0;
    double e = 0.0;
    if (attn_forward(NULL, &p) != ATTN_OK)
      e = INFINITY;
    for (size_t x = 0; x < (size_t)B * SQ * HQ * DV; x++)
      e = fmax(e, fabs((double)obuf[x] - o_ref[x]));
    for (size_t x = 0; x < (size_t)B * HQ * SQ; x++)
      if (!(isinf(lsebuf[x]) && isinf(lse_ref[x])))
        e = fmax(e, fabs((double)lsebuf[x] - 0.75 - lse_ref[x]));
    CHECK(e < 1e-5,
          "causal %d: a constant T5 table moves o or lse - 0.75 by %g", c, e);
    memset(tab, 0, sizeof tab);
  }
}

static void expect_bwd_t5(const char *what, const attn_params *p,
                          attn_status want, const char *needle) {
  attn_params q = *p;
  char bmsg[160] = "";
  q.error_message = bmsg;
  q.error_message_size = sizeof bmsg;
  const attn_status a = attn_backward_check(&q), b = attn_backward(NULL, &q);
  CHECK(a == want && b == want, "status: %s: got %d / %d, want %d (%s)", what,
        (int)a, (int)b, (int)want, bmsg);
  if (needle)
    CHECK(strstr(bmsg, needle) != NULL, "status: %s: message \"%s\" names %s",
          what, bmsg, needle);
}

static void test_t5_backward(void) {
  tp_problem c;
  tp_problem_init(&c, 2, 4, 2, 9, 11, 8, 8);
  c.index = 200001;
  c.grads = 1;
  c.t5 = c.drel = 1;
  c.t5_buckets = 5;
  c.t5_max_distance = 4;
  c.t5_bidirectional = 1;
  c.t5_mag = 1.0;
  c.threads = 2;
  attn_params p, q;
  tp_bufs m;
  tp_build(&c, &p, &m);
  CHECK(attn_forward(NULL, &p) == ATTN_OK, "T5 forward");
  expect_bwd_t5("T5 backward", &p, ATTN_OK, NULL);
  q = p, q.rel_bias = NULL;
  expect_bwd_t5("drel_bias without rel_bias", &q, ATTN_ERR_INVALID_ARGUMENT,
                "drel_bias");
  q = p, q.drel_bias = (float *)p.dq.data;
  expect_bwd_t5("drel_bias overlaps dq", &q, ATTN_ERR_OVERLAP, "drel_bias");
  q = p, q.drel_bias = (float *)(uintptr_t)p.rel_bias + 1;
  expect_bwd_t5("drel_bias overlaps rel_bias", &q, ATTN_ERR_OVERLAP,
                "rel_bias");
  q = p, q.drel_bias = (float *)p.q.data;
  expect_bwd_t5("drel_bias overlaps q", &q, ATTN_ERR_OVERLAP, "drel_bias");
  q = p, q.drel_bias = p.lse;
  expect_bwd_t5("drel_bias overlaps lse", &q, ATTN_ERR_OVERLAP, "drel_bias");
  q = p, q.drel_bias = (float *)p.dout.data;
  expect_bwd_t5("drel_bias overlaps dout", &q, ATTN_ERR_OVERLAP, "dout");
  q = p, q.rel_bias = (const float *)p.dk.data;
  expect_bwd_t5("rel_bias overlaps dk", &q, ATTN_ERR_OVERLAP, "rel_bias");
  q = p, q.rel_buckets = 1; /* bidirectional needs 2 */
  expect_bwd_t5("rel_buckets 1 bidirectional", &q, ATTN_ERR_INVALID_ARGUMENT,
                "rel_buckets");
  q = p, q.drel_bias = NULL;
  expect_bwd_t5("T5 without drel_bias", &q, ATTN_OK, NULL);
  tp_bufs_free(&m);
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
  test_t5_forward();
  test_t5_backward();
}
