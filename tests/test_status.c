/*
 * test_status: every status code of attn.h, the helpers, the defaults and the
 * storage conversions, for the forward and the backward.
 *
 * Each bad-input check of the forward calls both attn_forward_check and
 * attn_forward and expects the same status from both, a non-empty
 * p.error_message, and o left untouched; the backward's checks do the same
 * with attn_backward_check and attn_backward. Last line: "N passed, N
 * failed" (one per check).
 *
 * Parts: this file (the harness, NULL pointers), status_fwd.c (the
 * forward's validation), status_new.c (prefix-LM and positions; off with
 * ATTN_TEST_NEW_OPTIONS=0), status_bwd.c (the backward's validation, on
 * problems from problem.h), status_helpers.c (strerror, defaults, ISA
 * names, ALiBi slopes, conversions).
 */
#include "status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

long n_pass, n_fail;

float qbuf[B * SQ * HQ * BIG_D], kbuf[B * SK * HQ * BIG_D],
    vbuf[B * SK * HQ * BIG_D], obuf[B * SQ * HQ * BIG_D + 64];
float lsebuf[B * HQ * SQ * 2];
float biasbuf[B * HQ * SQ * (SK + 1)];
uint8_t maskbuf[B * HQ * SQ * (SK + 1)];
char msg[512];

static void fill_inputs(void) {
  tc_rng r = {42};
  for (size_t i = 0; i < sizeof qbuf / sizeof qbuf[0]; i++)
    qbuf[i] = (float)tc_normal(&r);
  for (size_t i = 0; i < sizeof kbuf / sizeof kbuf[0]; i++)
    kbuf[i] = (float)tc_normal(&r), vbuf[i] = (float)tc_normal(&r);
  for (size_t i = 0; i < sizeof biasbuf / sizeof biasbuf[0]; i++)
    biasbuf[i] = (float)tc_normal(&r), maskbuf[i] = 1;
}

void base(attn_params *p) {
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

const char *sname(attn_status s) {
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
                                  "THREAD",
                                  "ABI"};
  return (s <= 0 && s >= -18) ? n[-s] : "?";
}

attn_status expect_mode(const char *what, attn_params *p, attn_status want,
                        attn_status alt, int check_must_agree) {
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

attn_status expect2(const char *what, attn_params *p, attn_status want,
                    attn_status alt) {
  return expect_mode(what, p, want, alt, 1);
}

attn_status expect(const char *what, attn_params *p, attn_status want) {
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
  status_fwd_tests();
  status_new_tests();
  status_bwd_tests();
  status_helper_tests();
  status_window_extremes(); /* last: UBSan stops here if windows overflow */
  printf("time: %.2f s\n", tc_now() - t0);
  printf("%ld passed, %ld failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
