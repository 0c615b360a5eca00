/*
 * test_status: every status code of attn.h, the helpers, the defaults and the
 * storage conversions.
 *
 * Each bad-input check calls both attn_forward_check and attn_forward and
 * expects the same status from both, a non-empty p.error_message, and o left
 * untouched. Last line: "N passed, N failed" (one per check).
 */
#include "attn.h"
#include "oracle.h"
#include "test_common.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long n_pass, n_fail;

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (cond) {                                                                \
      n_pass++;                                                                \
    } else {                                                                   \
      n_fail++;                                                                \
      printf("FAIL %s:%d: ", __FILE__, __LINE__);                              \
      printf(__VA_ARGS__);                                                     \
      printf("\n");                                                            \
    }                                                                          \
  } while (0)

/* ---------------------------------------------------------------------- */
/* A small valid problem: batch 2, seq_q 5, seq_k 7, heads 4/2, dims 8/8.  */
/* ---------------------------------------------------------------------- */
enum { B = 2, SQ = 5, SK = 7, HQ = 4, HK = 2, D = 8, DV = 8 };

#define BIG_D 257

static float qbuf[B * SQ * HQ * BIG_D], kbuf[B * SK * HQ * BIG_D],
    vbuf[B * SK * HQ * BIG_D], obuf[B * SQ * HQ * BIG_D + 64];
static float lsebuf[B * HQ * SQ * 2];
static float biasbuf[B * HQ * SQ * (SK + 1)];
static uint8_t maskbuf[B * HQ * SQ * (SK + 1)];
static char msg[512];

static void fill_inputs(void) {
  tc_rng r = {42};
  for (size_t i = 0; i < sizeof qbuf / sizeof qbuf[0]; i++)
    qbuf[i] = (float)tc_normal(&r);
  for (size_t i = 0; i < sizeof kbuf / sizeof kbuf[0]; i++)
    kbuf[i] = (float)tc_normal(&r), vbuf[i] = (float)tc_normal(&r);
  for (size_t i = 0; i < sizeof biasbuf / sizeof biasbuf[0]; i++)
    biasbuf[i] = (float)tc_normal(&r), maskbuf[i] = 1;
}

static void base(attn_params *p) {
  attn_params_init(p);
  p->q = attn_tensor_bshd(qbuf, ATTN_DTYPE_F32, B, SQ, HQ, D);
  p->k = attn_tensor_bshd(kbuf, ATTN_DTYPE_F32, B, SK, HK, D);
  p->v = attn_tensor_bshd(vbuf, ATTN_DTYPE_F32, B, SK, HK, DV);
  p->o = attn_tensor_bshd(obuf, ATTN_DTYPE_F32, B, SQ, HQ, DV);
  p->lse = lsebuf;
  msg[0] = '\0';
  p->error_message = msg;
  p->error_message_size = sizeof msg;
}

static const char *sname(attn_status s) {
  static const char *const n[] = {"OK",
                                  "NULL_POINTER",
                                  "INVALID_SHAPE",
                                  "HEAD_RATIO",
                                  "HEAD_DIM",
                                  "OVERLAP",
                                  "OVERFLOW",
                                  "INVALID_SCALE",
                                  "INVALID_SOFTCAP",
                                  "INVALID_WINDOW",
                                  "INVALID_SEQLENS",
                                  "INVALID_DTYPE",
                                  "UNSUPPORTED_ISA",
                                  "OUT_OF_MEMORY",
                                  "WORKSPACE_TOO_SMALL",
                                  "INVALID_ARGUMENT",
                                  "INVALID_STRIDE",
                                  "THREAD"};
  return (s <= 0 && s >= -17) ? n[-s] : "?";
}

/*
 * Runs attn_forward_check and attn_forward on p; attn_forward must return
 * want (or alt, when alt != want: an accepted alternative where attn.h reads
 * both ways), attn_forward_check the same status. On error the message must
 * be filled and o untouched.
 */
static attn_status expect_mode(const char *what, attn_params *p,
                               attn_status want, attn_status alt,
                               int check_must_agree) {
  static float osave[sizeof obuf / sizeof obuf[0]];
  attn_status c, f;
  for (size_t i = 0; i < sizeof obuf / sizeof obuf[0]; i++)
    obuf[i] = 12345.0f;
  memcpy(osave, obuf, sizeof obuf);
  msg[0] = '\0';
  c = attn_forward_check(p);
  if (c != ATTN_OK)
    CHECK(p->error_message == NULL || msg[0] != '\0',
          "%s: attn_forward_check left error_message empty", what);
  msg[0] = '\0';
  f = attn_forward(NULL, p);
  CHECK(f == want || f == alt, "%s: attn_forward returned %s, want %s (%s)",
        what, sname(f), sname(want), msg);
  if (f != ATTN_OK) {
    CHECK(p->error_message == NULL || msg[0] != '\0',
          "%s: attn_forward left error_message empty", what);
    CHECK(memcmp(osave, obuf, sizeof obuf) == 0,
          "%s: a failing attn_forward wrote to o", what);
  }
  if (check_must_agree)
    CHECK(c == f, "%s: attn_forward_check returned %s, attn_forward %s", what,
          sname(c), sname(f));
  else if (c != f)
    printf("note: %s: attn_forward_check returned %s, attn_forward %s\n", what,
           sname(c), sname(f));
  if (want != alt && f == alt)
    printf("note: %s returned %s (%s also accepted): %s\n", what, sname(f),
           sname(want), msg);
  return f;
}

/* attn_forward must return want or alt; attn_forward_check the same. */
static attn_status expect2(const char *what, attn_params *p, attn_status want,
                           attn_status alt) {
  return expect_mode(what, p, want, alt, 1);
}

static attn_status expect(const char *what, attn_params *p, attn_status want) {
  return expect2(what, p, want, want);
}

/* ---------------------------------------------------------------------- */
static void test_null(void) {
  attn_params p;
  size_t bytes = 0;
  CHECK(attn_forward(NULL, NULL) == ATTN_ERR_NULL_POINTER,
        "attn_forward(NULL, NULL)");
  CHECK(attn_forward_check(NULL) == ATTN_ERR_NULL_POINTER,
        "attn_forward_check(NULL)");
  base(&p);
  CHECK(attn_forward_workspace_size(NULL, NULL, &bytes) ==
            ATTN_ERR_NULL_POINTER,
        "attn_forward_workspace_size(p = NULL)");
  CHECK(attn_forward_workspace_size(NULL, &p, NULL) == ATTN_ERR_NULL_POINTER,
        "attn_forward_workspace_size(bytes = NULL)");
  base(&p), p.q.data = NULL, expect("q.data NULL", &p, ATTN_ERR_NULL_POINTER);
  base(&p), p.k.data = NULL, expect("k.data NULL", &p, ATTN_ERR_NULL_POINTER);
  base(&p), p.v.data = NULL, expect("v.data NULL", &p, ATTN_ERR_NULL_POINTER);
  base(&p), p.o.data = NULL, expect("o.data NULL", &p, ATTN_ERR_NULL_POINTER);
  base(&p), p.lse = NULL, expect("lse NULL is fine", &p, ATTN_OK);
  base(&p), p.error_message = NULL, p.error_message_size = 0;
  p.q.data = NULL;
  CHECK(attn_forward(NULL, &p) == ATTN_ERR_NULL_POINTER,
        "q.data NULL without error_message");
}

static void test_shapes(void) {
  attn_params p;
  char what[128];
  for (int t = 0; t < 4; t++)
    for (int a = 0; a < 4; a++)
      for (int v = 0; v >= -1; v--) {
        attn_tensor *ts[4] = {&p.q, &p.k, &p.v, &p.o};
        static const char *const tn = "qkvo";
        base(&p);
        ts[t]->shape[a] = v;
        snprintf(what, sizeof what, "%c.shape[%d] = %d", tn[t], a, v);
        if (a == 3)
          /* a zero head_dim is both "a size is zero" and "head_dim out of
           * 1..256": attn.h allows either reading */
          expect2(what, &p, ATTN_ERR_INVALID_SHAPE, ATTN_ERR_HEAD_DIM);
        else
          expect(what, &p, ATTN_ERR_INVALID_SHAPE);
      }
  base(&p), p.v.shape[1] = SK - 1;
  expect("k/v seq differ", &p, ATTN_ERR_INVALID_SHAPE);
  base(&p), p.o.shape[1] = SQ - 1;
  expect("o/q seq differ", &p, ATTN_ERR_INVALID_SHAPE);
  base(&p), p.k.shape[0] = 1, p.v.shape[0] = 1;
  expect("k/v batch differs from q", &p, ATTN_ERR_INVALID_SHAPE);
  base(&p), p.o.shape[0] = 1;
  expect("o batch differs from q", &p, ATTN_ERR_INVALID_SHAPE);
  base(&p), p.v.shape[2] = 1;
  expect("v heads differ from k heads", &p, ATTN_ERR_INVALID_SHAPE);
  base(&p), p.o.shape[2] = 2;
  expect("o heads differ from q heads", &p, ATTN_ERR_INVALID_SHAPE);
  base(&p), p.o.shape[3] = DV - 1;
  expect("o head_dim differs from v", &p, ATTN_ERR_INVALID_SHAPE);
}

static void test_heads(void) {
  attn_params p;
  base(&p);
  p.q = attn_tensor_bshd(qbuf, ATTN_DTYPE_F32, B, SQ, 6, D);
  p.o = attn_tensor_bshd(obuf, ATTN_DTYPE_F32, B, SQ, 6, DV);
  p.k = attn_tensor_bshd(kbuf, ATTN_DTYPE_F32, B, SK, 4, D);
  p.v = attn_tensor_bshd(vbuf, ATTN_DTYPE_F32, B, SK, 4, DV);
  p.lse = NULL;
  expect("heads 6 / 4", &p, ATTN_ERR_HEAD_RATIO);
  CHECK(strstr(msg, "6") && strstr(msg, "4"),
        "head ratio message should name 6 and 4: \"%s\"", msg);
  p.q.shape[2] = p.o.shape[2] = 2;
  expect("heads 2 / 4 (kv > q)", &p, ATTN_ERR_HEAD_RATIO);
  p.q = attn_tensor_bshd(qbuf, ATTN_DTYPE_F32, B, SQ, 8, D);
  p.o = attn_tensor_bshd(obuf, ATTN_DTYPE_F32, B, SQ, 8, DV);
  expect("heads 8 / 4 ok", &p, ATTN_OK);

  base(&p), p.k.shape[3] = D - 1;
  p.k.stride[1] = HK * (D - 1), p.k.stride[2] = D - 1;
  expect("q/k head_dim differ", &p, ATTN_ERR_HEAD_DIM);
  base(&p);
  p.q = attn_tensor_bshd(qbuf, ATTN_DTYPE_F32, B, SQ, HQ, 257);
  p.k = attn_tensor_bshd(kbuf, ATTN_DTYPE_F32, B, SK, HK, 257);
  expect("head_dim 257", &p, ATTN_ERR_HEAD_DIM);
  base(&p);
  p.v = attn_tensor_bshd(vbuf, ATTN_DTYPE_F32, B, SK, HK, 257);
  p.o = attn_tensor_bshd(obuf, ATTN_DTYPE_F32, B, SQ, HQ, 257);
  expect("head_dim_v 257", &p, ATTN_ERR_HEAD_DIM);
  base(&p);
  p.q = attn_tensor_bshd(qbuf, ATTN_DTYPE_F32, B, SQ, HQ, 256);
  p.k = attn_tensor_bshd(kbuf, ATTN_DTYPE_F32, B, SK, HK, 256);
  p.v = attn_tensor_bshd(vbuf, ATTN_DTYPE_F32, B, SK, HK, 256);
  p.o = attn_tensor_bshd(obuf, ATTN_DTYPE_F32, B, SQ, HQ, 256);
  expect("head_dim 256 ok", &p, ATTN_OK);
  base(&p);
  p.q = attn_tensor_bshd(qbuf, ATTN_DTYPE_F32, B, SQ, HQ, 1);
  p.k = attn_tensor_bshd(kbuf, ATTN_DTYPE_F32, B, SK, HK, 1);
  p.v = attn_tensor_bshd(vbuf, ATTN_DTYPE_F32, B, SK, HK, 3);
  p.o = attn_tensor_bshd(obuf, ATTN_DTYPE_F32, B, SQ, HQ, 3);
  expect("head_dim 1, head_dim_v 3 ok", &p, ATTN_OK);
}

static void test_overlap(void) {
  attn_params p;
  base(&p), p.o.data = qbuf;
  expect("o.data == q.data", &p, ATTN_ERR_OVERLAP);
  base(&p), p.o.data = kbuf + B * SK * HK * D - 3;
  expect("o overlaps the end of k", &p, ATTN_ERR_OVERLAP);
  base(&p), p.o.data = vbuf + 1;
  expect("o overlaps v", &p, ATTN_ERR_OVERLAP);
  base(&p);
  p.bias = attn_tensor_contiguous(obuf + 3, ATTN_DTYPE_F32, B, HQ, SQ, SK);
  expect("o overlaps bias", &p, ATTN_ERR_OVERLAP);
  base(&p);
  p.mask = attn_tensor_contiguous(obuf, ATTN_DTYPE_BOOL, 1, 1, SQ, SK);
  expect("o overlaps mask", &p, ATTN_ERR_OVERLAP);
  base(&p), p.lse = qbuf + 2;
  expect("lse overlaps q", &p, ATTN_ERR_OVERLAP);
  base(&p), p.lse = obuf + 5;
  expect("lse overlaps o", &p, ATTN_ERR_OVERLAP);
  base(&p), p.o.stride[1] = 0;
  /* o's own elements alias: attn.h names no code for it */
  expect2("o seq stride 0 (self-aliasing output)", &p, ATTN_ERR_OVERLAP,
          ATTN_ERR_INVALID_STRIDE);
  /* inputs may alias each other (packed QKV, self-attention on one buffer) */
  base(&p), p.k.data = qbuf, p.v.data = qbuf;
  p.k.shape[1] = p.v.shape[1] = SQ;
  expect("k and v alias q (inputs may overlap)", &p, ATTN_OK);
  base(&p), p.o.data = obuf + 64; /* adjacent, not overlapping */
  expect("o elsewhere in its buffer ok", &p, ATTN_OK);
}

static void test_overflow(void) {
  attn_params p;
  base(&p), p.q.stride[0] = INT64_MAX / 2;
  expect("q batch stride 2^62", &p, ATTN_ERR_OVERFLOW);
  base(&p), p.k.stride[1] = INT64_MAX / 3;
  expect("k seq stride * seq overflows", &p, ATTN_ERR_OVERFLOW);
  base(&p);
  p.q.shape[1] = p.o.shape[1] = (int64_t)1 << 40;
  p.q.shape[2] = p.o.shape[2] = (int64_t)1 << 22;
  expect2("q elements 2^63", &p, ATTN_ERR_OVERFLOW, ATTN_ERR_INVALID_SHAPE);
  base(&p);
  p.o.stride[0] = INT64_MAX;
  expect("o batch stride INT64_MAX", &p, ATTN_ERR_OVERFLOW);
  base(&p);
  p.bias = attn_tensor_contiguous(biasbuf, ATTN_DTYPE_F32, B, HQ, SQ, SK);
  p.bias.stride[0] = INT64_MAX - 5;
  expect("bias stride overflows", &p, ATTN_ERR_OVERFLOW);
}

static void test_scalars(void) {
  attn_params p;
  const float bad[3] = {NAN, INFINITY, -INFINITY};
  for (int i = 0; i < 3; i++) {
    char what[64];
    base(&p), p.scale = bad[i];
    snprintf(what, sizeof what, "scale %g", (double)bad[i]);
    expect(what, &p, ATTN_ERR_INVALID_SCALE);
    base(&p), p.softcap = bad[i];
    snprintf(what, sizeof what, "softcap %g", (double)bad[i]);
    expect(what, &p, ATTN_ERR_INVALID_SOFTCAP);
  }
  base(&p), p.softcap = -1.0f;
  expect("softcap -1", &p, ATTN_ERR_INVALID_SOFTCAP);
  base(&p), p.softcap = -FLT_MIN;
  expect("softcap -FLT_MIN", &p, ATTN_ERR_INVALID_SOFTCAP);
  base(&p), p.scale = -0.5f;
  expect("negative scale ok", &p, ATTN_OK);
  base(&p), p.scale = FLT_MAX;
  expect("scale FLT_MAX ok (finite)", &p, ATTN_OK);
  base(&p), p.softcap = 1e-30f;
  expect("tiny softcap ok", &p, ATTN_OK);

  base(&p), p.window_left = -2;
  expect("window_left -2", &p, ATTN_ERR_INVALID_WINDOW);
  base(&p), p.window_right = -2;
  expect("window_right -2", &p, ATTN_ERR_INVALID_WINDOW);
  base(&p), p.window_left = INT64_MIN;
  expect("window_left INT64_MIN", &p, ATTN_ERR_INVALID_WINDOW);
  base(&p), p.window_left = 0, p.window_right = 0;
  expect("window (0, 0) ok", &p, ATTN_OK);

  base(&p), p.causal = (attn_causal)3;
  expect("causal 3", &p, ATTN_ERR_INVALID_ARGUMENT);
  base(&p), p.causal = (attn_causal)-1;
  expect("causal -1", &p, ATTN_ERR_INVALID_ARGUMENT);
  base(&p), p.isa = (attn_isa)99;
  expect("isa 99", &p, ATTN_ERR_INVALID_ARGUMENT);
  base(&p), p.num_threads = -1;
  expect("num_threads -1", &p, ATTN_ERR_INVALID_ARGUMENT);
}

/* Huge windows must not overflow (UBSan watches) and equal no window. */
static void test_window_extremes(void) {
  attn_params p;
  static float o_ref[B * SQ * HQ * DV], lse_ref[B * HQ * SQ];
  const int64_t big[3] = {INT64_MAX, INT64_MAX - 1, (int64_t)1 << 62};
  for (int c = 0; c < 3; c++) {
    base(&p), p.causal = (attn_causal)c;
    if (attn_forward(NULL, &p) != ATTN_OK) {
      CHECK(0, "reference call failed: %s", msg);
      return;
    }
    memcpy(o_ref, obuf, sizeof o_ref);
    memcpy(lse_ref, lsebuf, sizeof lse_ref);
    for (int i = 0; i < 3; i++) {
      double e = 0.0;
      base(&p), p.causal = (attn_causal)c;
      p.window_left = big[i], p.window_right = big[i];
      CHECK(attn_forward(NULL, &p) == ATTN_OK, "window %lld: %s",
            (long long)big[i], msg);
      for (size_t x = 0; x < sizeof o_ref / sizeof o_ref[0]; x++)
        e = fmax(e, fabs((double)obuf[x] - o_ref[x]));
      for (size_t x = 0; x < sizeof lse_ref / sizeof lse_ref[0]; x++)
        e = fmax(e, fabs((double)lsebuf[x] - lse_ref[x]));
      CHECK(e < 1e-5,
            "causal %d, window (%lld, %lld) differs from no window "
            "by %g",
            c, (long long)big[i], (long long)big[i], e);
    }
  }
}

/* Two packed sequences: q rows {2, 4}, k rows {3, 4}. */
static void varlen_base(attn_params *p, int32_t cq[3], int32_t ck[3]) {
  base(p);
  p->q = attn_tensor_bshd(qbuf, ATTN_DTYPE_F32, 1, 6, HQ, D);
  p->o = attn_tensor_bshd(obuf, ATTN_DTYPE_F32, 1, 6, HQ, DV);
  p->k = attn_tensor_bshd(kbuf, ATTN_DTYPE_F32, 1, 7, HK, D);
  p->v = attn_tensor_bshd(vbuf, ATTN_DTYPE_F32, 1, 7, HK, DV);
  p->cu_seqlens_q = cq, p->cu_seqlens_k = ck, p->varlen_batch = 2;
  cq[0] = 0, cq[1] = 2, cq[2] = 6, ck[0] = 0, ck[1] = 3, ck[2] = 7;
}

static void test_seqlens(void) {
  attn_params p;
  int32_t cq[3] = {0, 2, 6}, ck[3] = {0, 3, 7};
  int32_t kvl[B] = {SK, 0};
  varlen_base(&p, cq, ck);
  expect("varlen ok", &p, ATTN_OK);
  varlen_base(&p, cq, ck), cq[1] = 0;
  expect("varlen with an empty query sequence ok", &p, ATTN_OK);
  varlen_base(&p, cq, ck), ck[1] = 0;
  expect("varlen with an empty key sequence ok", &p, ATTN_OK);
  varlen_base(&p, cq, ck), cq[1] = 5, cq[2] = 3;
  expect("cu_seqlens_q decreasing", &p, ATTN_ERR_INVALID_SEQLENS);
  varlen_base(&p, cq, ck), ck[1] = 8;
  expect("cu_seqlens_k decreasing", &p, ATTN_ERR_INVALID_SEQLENS);
  varlen_base(&p, cq, ck), cq[2] = 7;
  expect("cu_seqlens_q beyond q rows", &p, ATTN_ERR_INVALID_SEQLENS);
  varlen_base(&p, cq, ck), ck[2] = 8;
  expect("cu_seqlens_k beyond k rows", &p, ATTN_ERR_INVALID_SEQLENS);
  varlen_base(&p, cq, ck), cq[0] = -1;
  expect("cu_seqlens_q[0] = -1", &p, ATTN_ERR_INVALID_SEQLENS);
  varlen_base(&p, cq, ck), cq[1] = INT32_MIN;
  expect("cu_seqlens_q[1] = INT32_MIN", &p, ATTN_ERR_INVALID_SEQLENS);
  varlen_base(&p, cq, ck), p.cu_seqlens_k = NULL;
  expect("only cu_seqlens_q", &p, ATTN_ERR_INVALID_SEQLENS);
  varlen_base(&p, cq, ck), p.cu_seqlens_q = NULL;
  expect("only cu_seqlens_k", &p, ATTN_ERR_INVALID_SEQLENS);
  varlen_base(&p, cq, ck), p.varlen_batch = 0;
  expect("varlen_batch 0", &p, ATTN_ERR_INVALID_SEQLENS);
  varlen_base(&p, cq, ck), p.varlen_batch = -3;
  expect("varlen_batch -3", &p, ATTN_ERR_INVALID_SEQLENS);
  varlen_base(&p, cq, ck);
  p.q.shape[0] = p.o.shape[0] = p.k.shape[0] = p.v.shape[0] = 2;
  expect2("varlen with batch 2", &p, ATTN_ERR_INVALID_SHAPE,
          ATTN_ERR_INVALID_SEQLENS);
  varlen_base(&p, cq, ck), p.lse = lsebuf; /* [heads_q, total_q] fits */
  expect("varlen lse ok", &p, ATTN_OK);
  varlen_base(&p, cq, ck), p.lse = qbuf + 1;
  expect("varlen lse overlaps q", &p, ATTN_ERR_OVERLAP);

  base(&p), p.kv_lens = kvl;
  expect("kv_lens {seq_k, 0} ok", &p, ATTN_OK);
  kvl[1] = -1;
  expect("kv_lens -1", &p, ATTN_ERR_INVALID_SEQLENS);
  kvl[1] = SK + 1;
  expect("kv_lens seq_k + 1", &p, ATTN_ERR_INVALID_SEQLENS);
  kvl[1] = INT32_MAX;
  expect("kv_lens INT32_MAX", &p, ATTN_ERR_INVALID_SEQLENS);
  kvl[1] = 3;
}

static void test_dtypes(void) {
  attn_params p;
  base(&p), p.q.dtype = (attn_dtype)7;
  expect("q dtype 7", &p, ATTN_ERR_INVALID_DTYPE);
  base(&p), p.q.dtype = (attn_dtype)-1;
  expect("q dtype -1", &p, ATTN_ERR_INVALID_DTYPE);
  base(&p), p.q.dtype = ATTN_DTYPE_BOOL;
  expect("q dtype bool", &p, ATTN_ERR_INVALID_DTYPE);
  base(&p), p.v.dtype = ATTN_DTYPE_BOOL;
  expect("v dtype bool", &p, ATTN_ERR_INVALID_DTYPE);
  base(&p), p.o.dtype = ATTN_DTYPE_BOOL;
  expect("o dtype bool", &p, ATTN_ERR_INVALID_DTYPE);
  base(&p), p.o.dtype = (attn_dtype)42;
  expect("o dtype 42", &p, ATTN_ERR_INVALID_DTYPE);
  /* attn.h: Q, K, V and O may each have any storage dtype */
  base(&p), p.k.dtype = ATTN_DTYPE_BF16;
  expect("k bf16 with q f32 ok", &p, ATTN_OK);
  base(&p), p.v.dtype = ATTN_DTYPE_F16;
  expect("v f16 with q f32 ok", &p, ATTN_OK);
  base(&p);
  p.q.dtype = p.k.dtype = p.v.dtype = ATTN_DTYPE_BF16;
  p.o.dtype = ATTN_DTYPE_F16;
  expect("bf16 in, f16 out ok", &p, ATTN_OK);

  /* bias */
  base(&p);
  p.bias = attn_tensor_contiguous(biasbuf, ATTN_DTYPE_BF16, B, HQ, SQ, SK);
  expect("bias bf16", &p, ATTN_ERR_INVALID_DTYPE);
  p.bias.dtype = ATTN_DTYPE_BOOL;
  expect("bias bool", &p, ATTN_ERR_INVALID_DTYPE);
  p.bias.dtype = (attn_dtype)9;
  expect("bias dtype 9", &p, ATTN_ERR_INVALID_DTYPE);
  p.bias = attn_tensor_contiguous(biasbuf, ATTN_DTYPE_F32, B, HQ, SQ, SK + 1);
  expect("bias seq_k + 1", &p, ATTN_ERR_INVALID_SHAPE);
  p.bias = attn_tensor_contiguous(biasbuf, ATTN_DTYPE_F32, B, HQ, 2, SK);
  expect("bias seq_q 2 (neither 1 nor 5)", &p, ATTN_ERR_INVALID_SHAPE);
  p.bias = attn_tensor_contiguous(biasbuf, ATTN_DTYPE_F32, B + 1, 1, SQ, SK);
  expect("bias batch 3", &p, ATTN_ERR_INVALID_SHAPE);
  p.bias = attn_tensor_contiguous(biasbuf, ATTN_DTYPE_F32, B, HK, SQ, SK);
  expect("bias heads = kv heads", &p, ATTN_ERR_INVALID_SHAPE);
  p.bias = attn_tensor_contiguous(biasbuf, ATTN_DTYPE_F32, B, HQ, 0, SK);
  expect("bias seq_q 0", &p, ATTN_ERR_INVALID_SHAPE);
  p.bias = attn_tensor_contiguous(biasbuf, ATTN_DTYPE_F32, B, HQ, SQ, SK);
  p.bias.stride[3] = -1;
  expect("bias stride -1", &p, ATTN_ERR_INVALID_STRIDE);
  p.bias = attn_tensor_contiguous(biasbuf, ATTN_DTYPE_F32, 1, 1, 1, SK);
  expect("bias [1,1,1,sk] ok", &p, ATTN_OK);
  p.bias = attn_tensor_contiguous(biasbuf, ATTN_DTYPE_F32, B, 1, SQ, 1);
  expect("bias [b,1,sq,1] ok", &p, ATTN_OK);
  p.bias = attn_tensor_contiguous(biasbuf, ATTN_DTYPE_F32, B, HQ, SQ, SK);
  p.bias.stride[0] = 0, p.bias.stride[1] = 0;
  expect("bias stride-0 axes ok", &p, ATTN_OK);

  /* mask */
  base(&p);
  p.mask = attn_tensor_contiguous(maskbuf, ATTN_DTYPE_F32, B, HQ, SQ, SK);
  expect("mask f32", &p, ATTN_ERR_INVALID_DTYPE);
  p.mask.dtype = ATTN_DTYPE_F16;
  expect("mask f16", &p, ATTN_ERR_INVALID_DTYPE);
  p.mask = attn_tensor_contiguous(maskbuf, ATTN_DTYPE_BOOL, B, HQ, SQ, SK - 1);
  expect("mask seq_k - 1", &p, ATTN_ERR_INVALID_SHAPE);
  p.mask = attn_tensor_contiguous(maskbuf, ATTN_DTYPE_BOOL, 1, 3, SQ, SK);
  expect("mask heads 3", &p, ATTN_ERR_INVALID_SHAPE);
  p.mask = attn_tensor_contiguous(maskbuf, ATTN_DTYPE_BOOL, 1, 1, SQ, SK);
  p.mask.stride[2] = -SK;
  expect("mask stride negative", &p, ATTN_ERR_INVALID_STRIDE);
  p.mask = attn_tensor_contiguous(maskbuf, ATTN_DTYPE_BOOL, 1, HQ, 1, SK);
  expect("mask [1,hq,1,sk] ok", &p, ATTN_OK);
}

static void test_strides(void) {
  attn_params p;
  attn_tensor *ts[4] = {&p.q, &p.k, &p.v, &p.o};
  static const char *const tn = "qkvo";
  char what[64];
  for (int t = 0; t < 4; t++)
    for (int a = 0; a < 4; a++) {
      base(&p);
      ts[t]->stride[a] = -ts[t]->stride[a] - 1;
      snprintf(what, sizeof what, "%c.stride[%d] negative", tn[t], a);
      expect(what, &p, ATTN_ERR_INVALID_STRIDE);
    }
  base(&p), p.k.stride[0] = 0, p.v.stride[0] = 0;
  expect("k/v batch stride 0 (shared across batch) ok", &p, ATTN_OK);
  base(&p), p.q.stride[3] = 2;
  p.q.stride[2] = 2 * D, p.q.stride[1] = 2 * D * HQ, p.q.stride[0] = 0;
  expect("q head_dim stride 2, batch stride 0 ok", &p, ATTN_OK);
}

static void test_isa_forced(void) {
  static const attn_isa all[3] = {ATTN_ISA_GENERIC, ATTN_ISA_AVX2,
                                  ATTN_ISA_AVX512};
  int tested = 0;
  for (int i = 0; i < 3; i++) {
    attn_params p;
    attn_context *ctx = NULL;
    attn_context_options opt;
    char what[64];
    base(&p), p.isa = all[i];
    snprintf(what, sizeof what, "forced isa %s", attn_isa_name(all[i]));
    if (attn_isa_supported(all[i])) {
      expect(what, &p, ATTN_OK);
      continue;
    }
    tested++;
    expect(what, &p, ATTN_ERR_UNSUPPORTED_ISA);
    attn_context_options_init(&opt);
    opt.isa = all[i];
    CHECK(attn_context_create(&ctx, &opt) == ATTN_ERR_UNSUPPORTED_ISA,
          "attn_context_create with unsupported isa %s", attn_isa_name(all[i]));
    attn_context_free(ctx);
  }
  if (!tested)
    printf("note: every ISA is supported here; UNSUPPORTED_ISA not "
           "exercised\n");
}

static void test_workspace(void) {
  attn_params p;
  size_t bytes = 0;
  static unsigned char ws[1 << 22];
  static float o_ref[B * SQ * HQ * DV];
  base(&p);
  p.num_threads = 2;
  CHECK(attn_forward(NULL, &p) == ATTN_OK, "plain call: %s", msg);
  memcpy(o_ref, obuf, sizeof o_ref);
  CHECK(attn_forward_workspace_size(NULL, &p, &bytes) == ATTN_OK,
        "attn_forward_workspace_size: %s", msg);
  if (bytes > sizeof ws) {
    CHECK(0, "workspace of %zu bytes for a tiny problem", bytes);
    return;
  }
  p.workspace = ws;
  p.workspace_size = bytes;
  CHECK(attn_forward(NULL, &p) == ATTN_OK, "exact workspace: %s", msg);
  CHECK(memcmp(o_ref, obuf, sizeof o_ref) == 0, "workspace changes the result");
  if (bytes > 0) {
    /* attn_forward_check has no context, so it may not know the size */
    p.workspace_size = bytes - 1;
    expect_mode("workspace one byte short", &p, ATTN_ERR_WORKSPACE_TOO_SMALL,
                ATTN_ERR_WORKSPACE_TOO_SMALL, 0);
    p.workspace_size = 0;
    expect_mode("workspace size 0", &p, ATTN_ERR_WORKSPACE_TOO_SMALL,
                ATTN_ERR_WORKSPACE_TOO_SMALL, 0);
  } else {
    printf("note: workspace size is 0 here; WORKSPACE_TOO_SMALL untested\n");
  }
  base(&p);
  p.num_threads = 2;
  p.workspace = NULL, p.workspace_size = 12345;
  expect("workspace NULL with a size: ignored", &p, ATTN_OK);
}

static void test_messages(void) {
  attn_params p;
  char small[8];
  base(&p), p.q.data = NULL;
  memset(small, 'Z', sizeof small);
  p.error_message = small, p.error_message_size = 4;
  attn_forward(NULL, &p);
  CHECK(memchr(small, '\0', 4) != NULL, "error_message not NUL-terminated "
                                        "within its size");
  CHECK(small[4] == 'Z' && small[7] == 'Z',
        "error_message written beyond error_message_size");
  memset(small, 'Z', sizeof small);
  p.error_message_size = 0;
  attn_forward(NULL, &p);
  CHECK(small[0] == 'Z', "error_message written with size 0");
  base(&p), p.q.data = NULL, p.error_message_size = 1;
  memset(msg, 'Z', 4);
  attn_forward(NULL, &p);
  CHECK(msg[0] == '\0' && msg[1] == 'Z', "error_message size 1");
}

static void test_strerror(void) {
  for (int s = 0; s >= -17; s--) {
    const char *t = attn_strerror((attn_status)s);
    CHECK(t && t[0], "attn_strerror(%d) empty", s);
  }
  const int unknown[4] = {1, -18, -1000, INT_MIN};
  for (int i = 0; i < 4; i++) {
    const char *t = attn_strerror((attn_status)unknown[i]);
    CHECK(t && t[0], "attn_strerror(%d) (unknown) empty", unknown[i]);
  }
  for (int a = 0; a >= -17; a--)
    for (int b = a - 1; b >= -17; b--)
      CHECK(strcmp(attn_strerror((attn_status)a),
                   attn_strerror((attn_status)b)) != 0,
            "attn_strerror(%d) == attn_strerror(%d)", a, b);
}

static void test_defaults(void) {
  attn_params p;
  attn_context_options opt;
  attn_context *ctx = NULL;
  memset(&p, 0x5A, sizeof p);
  attn_params_init(&p);
  CHECK(!p.q.data && !p.k.data && !p.v.data && !p.o.data && !p.lse,
        "params_init: operands attached");
  CHECK(p.scale == 0.0f && p.softcap == 0.0f && !p.alibi_slopes,
        "params_init: scale/softcap/alibi");
  CHECK(!p.bias.data && !p.mask.data, "params_init: bias/mask attached");
  CHECK(p.causal == ATTN_CAUSAL_NONE, "params_init: causal");
  CHECK(p.window_left == -1 && p.window_right == -1,
        "params_init: window (%lld, %lld), want (-1, -1)",
        (long long)p.window_left, (long long)p.window_right);
  CHECK(!p.kv_lens && !p.cu_seqlens_q && !p.cu_seqlens_k && p.varlen_batch == 0,
        "params_init: seqlens");
  CHECK(p.num_threads == 0 && p.isa == ATTN_ISA_AUTO, "params_init: exec");
  CHECK(!p.workspace && p.workspace_size == 0, "params_init: workspace");
  CHECK(!p.error_message && p.error_message_size == 0,
        "params_init: error_message");

  memset(&opt, 0x5A, sizeof opt);
  attn_context_options_init(&opt);
  CHECK(opt.num_threads == 0 && opt.isa == ATTN_ISA_AUTO,
        "context_options_init defaults");
  CHECK(attn_context_create(NULL, NULL) == ATTN_ERR_NULL_POINTER,
        "attn_context_create(NULL, ...)");
  CHECK(attn_context_create(&ctx, NULL) == ATTN_OK && ctx,
        "attn_context_create(&ctx, NULL)");
  CHECK(attn_context_isa(ctx) == attn_isa_best(),
        "default context isa %d, best %d", (int)attn_context_isa(ctx),
        (int)attn_isa_best());
  attn_context_free(ctx);
  attn_context_free(NULL);
  CHECK(attn_context_isa(NULL) == attn_isa_best(), "attn_context_isa(NULL)");
  opt.isa = ATTN_ISA_GENERIC;
  opt.num_threads = 2;
  ctx = NULL;
  CHECK(attn_context_create(&ctx, &opt) == ATTN_OK, "context generic");
  CHECK(attn_context_isa(ctx) == ATTN_ISA_GENERIC, "context isa generic");
  {
    attn_params q;
    base(&q);
    CHECK(attn_forward(ctx, &q) == ATTN_OK, "forward with context: %s", msg);
  }
  attn_context_free(ctx);
  opt.isa = (attn_isa)77;
  ctx = NULL;
  CHECK(attn_context_create(&ctx, &opt) == ATTN_ERR_INVALID_ARGUMENT,
        "context isa 77");
  attn_context_free(ctx);
  attn_context_options_init(&opt);
  opt.num_threads = -2;
  ctx = NULL;
  CHECK(attn_context_create(&ctx, &opt) == ATTN_ERR_INVALID_ARGUMENT,
        "context num_threads -2");
  attn_context_free(ctx);

  {
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", ATTN_VERSION_MAJOR,
             ATTN_VERSION_MINOR, ATTN_VERSION_PATCH);
    CHECK(attn_version_number() == ATTN_VERSION_NUMBER, "version number %d",
          attn_version_number());
    CHECK(attn_version_string() && strcmp(attn_version_string(), want) == 0,
          "version string \"%s\", want \"%s\"",
          attn_version_string() ? attn_version_string() : "(null)", want);
  }

  CHECK(attn_dtype_size(ATTN_DTYPE_F32) == 4 &&
            attn_dtype_size(ATTN_DTYPE_BF16) == 2 &&
            attn_dtype_size(ATTN_DTYPE_F16) == 2 &&
            attn_dtype_size(ATTN_DTYPE_BOOL) == 1 &&
            attn_dtype_size((attn_dtype)4) == 0 &&
            attn_dtype_size((attn_dtype)-1) == 0,
        "attn_dtype_size");
  {
    attn_tensor t = attn_tensor_bshd(qbuf, ATTN_DTYPE_F16, 2, 3, 4, 5);
    CHECK(t.data == qbuf && t.dtype == ATTN_DTYPE_F16 && t.shape[0] == 2 &&
              t.shape[1] == 3 && t.shape[2] == 4 && t.shape[3] == 5 &&
              t.stride[0] == 60 && t.stride[1] == 20 && t.stride[2] == 5 &&
              t.stride[3] == 1,
          "attn_tensor_bshd");
    t = attn_tensor_bhsd(qbuf, ATTN_DTYPE_F32, 2, 3, 4, 5);
    CHECK(t.shape[0] == 2 && t.shape[1] == 3 && t.shape[2] == 4 &&
              t.shape[3] == 5 && t.stride[0] == 60 && t.stride[1] == 5 &&
              t.stride[2] == 15 && t.stride[3] == 1,
          "attn_tensor_bhsd");
    t = attn_tensor_contiguous(maskbuf, ATTN_DTYPE_BOOL, 2, 3, 4, 5);
    CHECK(t.stride[0] == 60 && t.stride[1] == 20 && t.stride[2] == 5 &&
              t.stride[3] == 1 && t.shape[3] == 5 && t.dtype == ATTN_DTYPE_BOOL,
          "attn_tensor_contiguous");
  }
}

static void test_isa_names(void) {
  static const char *const names[4] = {"auto", "generic", "avx2", "avx512"};
  for (int i = 0; i < 4; i++) {
    attn_isa out = (attn_isa)-1;
    const char *n = attn_isa_name((attn_isa)i);
    CHECK(n && strcmp(n, names[i]) == 0, "attn_isa_name(%d) = %s", i,
          n ? n : "(null)");
    CHECK(attn_isa_parse(names[i], &out) == ATTN_OK && out == (attn_isa)i,
          "attn_isa_parse(\"%s\")", names[i]);
  }
  {
    attn_isa out = ATTN_ISA_AVX2;
    attn_status s;
    CHECK(attn_isa_name((attn_isa)4) == NULL &&
              attn_isa_name((attn_isa)-1) == NULL,
          "attn_isa_name of unknown values");
    CHECK(attn_isa_parse("sse9", &out) == ATTN_ERR_INVALID_ARGUMENT,
          "attn_isa_parse(\"sse9\")");
    CHECK(attn_isa_parse("", &out) == ATTN_ERR_INVALID_ARGUMENT,
          "attn_isa_parse(\"\")");
    s = attn_isa_parse(NULL, &out);
    CHECK(s == ATTN_ERR_NULL_POINTER || s == ATTN_ERR_INVALID_ARGUMENT,
          "attn_isa_parse(NULL) = %d", (int)s);
    s = attn_isa_parse("generic", NULL);
    CHECK(s == ATTN_ERR_NULL_POINTER, "attn_isa_parse(name, NULL) = %d",
          (int)s);
  }
  CHECK(attn_isa_supported(ATTN_ISA_AUTO) == 1, "AUTO supported");
  CHECK(attn_isa_supported(ATTN_ISA_GENERIC) == 1, "GENERIC supported");
  CHECK(attn_isa_supported((attn_isa)9) == 0, "isa 9 unsupported");
  {
    attn_isa best = attn_isa_best();
    CHECK(best != ATTN_ISA_AUTO && attn_isa_supported(best),
          "attn_isa_best = %d", (int)best);
    if (!getenv("ATTN_ISA"))
      CHECK(best == (attn_isa_supported(ATTN_ISA_AVX512) ? ATTN_ISA_AVX512
                     : attn_isa_supported(ATTN_ISA_AVX2) ? ATTN_ISA_AVX2
                                                         : ATTN_ISA_GENERIC),
            "attn_isa_best is not the widest supported");
    printf("isas: generic %d, avx2 %d, avx512 %d; best %s\n",
           attn_isa_supported(ATTN_ISA_GENERIC),
           attn_isa_supported(ATTN_ISA_AVX2),
           attn_isa_supported(ATTN_ISA_AVX512), attn_isa_name(best));
  }
}

/* Press et al. (2022), reference code get_slopes(n). */
static double alibi_ref(int64_t n, int64_t i) {
  int64_t cp = 1;
  while (cp * 2 <= n)
    cp *= 2;
  if (i < cp)
    return pow(2.0, -8.0 * (double)(i + 1) / (double)cp);
  return pow(2.0, -8.0 * (double)(2 * (i - cp) + 1) / (double)(2 * cp));
}

static void test_alibi(void) {
  float s[300];
  for (int64_t n = 1; n <= 260; n++) {
    double worst = 0.0;
    CHECK(attn_alibi_slopes(n, s) == ATTN_OK, "attn_alibi_slopes(%lld)",
          (long long)n);
    for (int64_t i = 0; i < n; i++) {
      double want = alibi_ref(n, i);
      double e = fabs((double)s[i] - want) / want;
      if (e > worst)
        worst = e;
    }
    CHECK(worst < 1e-6, "alibi slopes n = %lld: relative error %g",
          (long long)n, worst);
  }
  {
    attn_status st = attn_alibi_slopes(0, s);
    CHECK(st == ATTN_ERR_INVALID_SHAPE || st == ATTN_ERR_INVALID_ARGUMENT,
          "attn_alibi_slopes(0) = %d", (int)st);
    st = attn_alibi_slopes(-4, s);
    CHECK(st == ATTN_ERR_INVALID_SHAPE || st == ATTN_ERR_INVALID_ARGUMENT,
          "attn_alibi_slopes(-4) = %d", (int)st);
    CHECK(attn_alibi_slopes(8, NULL) == ATTN_ERR_NULL_POINTER,
          "attn_alibi_slopes(8, NULL)");
  }
}

static void test_peak(void) {
  double g = 0.0;
  CHECK(attn_fma_peak_gflops(1, 0.01, NULL) == ATTN_ERR_NULL_POINTER,
        "attn_fma_peak_gflops(NULL)");
  CHECK(attn_fma_peak_gflops(1, 0.02, &g) == ATTN_OK && g > 0.0 && isfinite(g),
        "attn_fma_peak_gflops: %g", g);
}

/* ---------------------------------------------------------------------- */
/* Conversions                                                            */
/* ---------------------------------------------------------------------- */
static int same_f32(float a, float b) {
  if (isnan(a) || isnan(b))
    return isnan(a) && isnan(b);
  return tc_f32_bits(a) == tc_f32_bits(b);
}

static int is_nan16(uint16_t h, int bf16) {
  return bf16 ? ((h & 0x7F80u) == 0x7F80u && (h & 0x7Fu))
              : ((h & 0x7C00u) == 0x7C00u && (h & 0x3FFu));
}

static void test_conversions(void) {
  long bad_dec_bf = 0, bad_dec_h = 0, bad_rt_bf = 0, bad_rt_h = 0;
  long bad_enc_bf = 0, bad_enc_h = 0;
  uint32_t first_bf = 0, first_h = 0;
  for (uint32_t u = 0; u < 65536; u++) {
    const uint16_t h = (uint16_t)u;
    float fb = attn_bf16_to_f32(h), fh = attn_f16_to_f32(h);
    bad_dec_bf += !same_f32(fb, tc_bf16_to_f32(h));
    bad_dec_h += !same_f32(fh, tc_f16_to_f32(h));
    if (is_nan16(h, 1))
      bad_rt_bf += !is_nan16(attn_f32_to_bf16(fb), 1);
    else
      bad_rt_bf += attn_f32_to_bf16(fb) != h;
    if (is_nan16(h, 0))
      bad_rt_h += !is_nan16(attn_f32_to_f16(fh), 0);
    else
      bad_rt_h += attn_f32_to_f16(fh) != h;
  }
  CHECK(bad_dec_bf == 0, "attn_bf16_to_f32 wrong for %ld values", bad_dec_bf);
  CHECK(bad_dec_h == 0, "attn_f16_to_f32 wrong for %ld values", bad_dec_h);
  CHECK(bad_rt_bf == 0, "bf16 round trip wrong for %ld values", bad_rt_bf);
  CHECK(bad_rt_h == 0, "f16 round trip wrong for %ld values", bad_rt_h);

  /* f32 -> 16 bits over a dense sample of all f32 bit patterns */
  for (uint64_t u = 0; u <= 0xFFFFFFFFull; u += 4093) {
    for (uint32_t k = 0; k < 3; k++) {
      const uint32_t x = (uint32_t)u + k; /* neighbours hit ties too */
      const float f = tc_bits_f32(x);
      const uint16_t gb = attn_f32_to_bf16(f), wb = tc_f32_to_bf16(f);
      const uint16_t gh = attn_f32_to_f16(f), wh = tc_f32_to_f16(f);
      if (isnan(f) ? !is_nan16(gb, 1) : gb != wb)
        first_bf = bad_enc_bf++ ? first_bf : x;
      if (isnan(f) ? !is_nan16(gh, 0) : gh != wh)
        first_h = bad_enc_h++ ? first_h : x;
    }
  }
  /* every tie and its neighbours in the f16 normal and subnormal range */
  for (uint32_t h = 0; h < 0x7C00u; h++) {
    const float lo = tc_f16_to_f32((uint16_t)h);
    const float hi = tc_f16_to_f32((uint16_t)(h + 1));
    const float mid = (float)(((double)lo + (double)hi) / 2.0);
    const float vals[3] = {mid, nextafterf(mid, 0.0f),
                           nextafterf(mid, INFINITY)};
    for (int k = 0; k < 3; k++)
      for (int sgn = 0; sgn < 2; sgn++) {
        const float f = sgn ? -vals[k] : vals[k];
        if (attn_f32_to_f16(f) != tc_f32_to_f16(f))
          first_h = bad_enc_h++ ? first_h : tc_f32_bits(f);
      }
  }
  CHECK(bad_enc_bf == 0, "attn_f32_to_bf16 wrong for %ld values (first 0x%08x)",
        bad_enc_bf, (unsigned)first_bf);
  CHECK(bad_enc_h == 0, "attn_f32_to_f16 wrong for %ld values (first 0x%08x)",
        bad_enc_h, (unsigned)first_h);

  /* named cases */
  CHECK(attn_f32_to_bf16(tc_bits_f32(0x3F808000u)) == 0x3F80, "bf16 tie even");
  CHECK(attn_f32_to_bf16(tc_bits_f32(0x3F818000u)) == 0x3F82, "bf16 tie odd");
  CHECK(attn_f32_to_bf16(tc_bits_f32(0x3F808001u)) == 0x3F81, "bf16 above tie");
  CHECK(attn_f32_to_bf16(FLT_MAX) == 0x7F80, "bf16 FLT_MAX -> inf");
  CHECK(attn_f32_to_bf16(-INFINITY) == 0xFF80, "bf16 -inf");
  CHECK(is_nan16(attn_f32_to_bf16(tc_bits_f32(0x7F800001u)), 1),
        "bf16 signalling NaN with low payload stays NaN");
  CHECK(attn_f32_to_bf16(tc_bits_f32(0x00018000u)) == 0x0002,
        "bf16 subnormal tie");
  CHECK(attn_f32_to_bf16(tc_bits_f32(0x80000001u)) == 0x8000, "bf16 -tiny");
  CHECK(attn_f32_to_f16(65504.0f) == 0x7BFF, "f16 max");
  CHECK(attn_f32_to_f16(65519.996f) == 0x7BFF, "f16 just below 65520");
  CHECK(attn_f32_to_f16(65520.0f) == 0x7C00, "f16 65520 -> inf");
  CHECK(attn_f32_to_f16(-1e10f) == 0xFC00, "f16 -overflow");
  CHECK(attn_f32_to_f16(ldexpf(1.0f, -24)) == 0x0001, "f16 min subnormal");
  CHECK(attn_f32_to_f16(ldexpf(1.0f, -25)) == 0x0000, "f16 2^-25 ties to 0");
  CHECK(attn_f32_to_f16(ldexpf(1.5f, -25)) == 0x0001, "f16 above 2^-25");
  CHECK(attn_f32_to_f16(ldexpf(3.0f, -25)) == 0x0002, "f16 1.5 ulp tie");
  CHECK(attn_f32_to_f16(ldexpf(1023.0f, -24)) == 0x03FF, "f16 max subnormal");
  CHECK(attn_f32_to_f16(ldexpf(2047.0f, -25)) == 0x0400,
        "f16 subnormal rounds up to min normal");
  CHECK(attn_f32_to_f16(1.0f + ldexpf(1.0f, -11)) == 0x3C00, "f16 tie even");
  CHECK(attn_f32_to_f16(-0.0f) == 0x8000, "f16 -0");
  CHECK(is_nan16(attn_f32_to_f16(NAN), 0), "f16 NaN");
  CHECK(is_nan16(attn_f32_to_f16(tc_bits_f32(0x7F800001u)), 0),
        "f16 NaN with low payload stays NaN");
  CHECK(attn_f16_to_f32(0x0001) == ldexpf(1.0f, -24), "f16 decode subnormal");
  CHECK(attn_f16_to_f32(0x7C00) == INFINITY, "f16 decode inf");
  CHECK(attn_bf16_to_f32(0x0001) == tc_bits_f32(0x00010000u),
        "bf16 decode subnormal");
}

/* A forward call that reads only bf16/f16 data produces finite output. */
static void test_valid_runs(void) {
  attn_params p;
  base(&p);
  CHECK(attn_forward(NULL, &p) == ATTN_OK, "base call: %s", msg);
  for (size_t i = 0; i < (size_t)B * SQ * HQ * DV; i++)
    if (!isfinite(obuf[i])) {
      CHECK(0, "base call output not finite at %zu", i);
      break;
    }
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* keep output if a sanitizer aborts */
  double t0 = tc_now();
  fill_inputs();
  test_valid_runs();
  test_null();
  test_shapes();
  test_heads();
  test_overlap();
  test_overflow();
  test_scalars();
  test_seqlens();
  test_dtypes();
  test_strides();
  test_isa_forced();
  test_workspace();
  test_messages();
  test_strerror();
  test_defaults();
  test_isa_names();
  test_alibi();
  test_peak();
  test_conversions();
  test_window_extremes(); /* last: UBSan stops here if windows overflow */
  printf("time: %.2f s\n", tc_now() - t0);
  printf("%ld passed, %ld failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
