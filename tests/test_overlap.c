/*
 * test_overlap (test "overlap", issue 6): outputs that overlap the small
 * input arrays, and head_dim 0.
 *
 * An output -- o or lse for attn_forward; dq, dk or dv for attn_backward --
 * overlapping one of the arrays the call reads (alibi_slopes, kv_lens,
 * cu_seqlens_q, cu_seqlens_k, q_pos_offsets, k_pos_offsets) must be
 * ATTN_ERR_OVERLAP with a NUL-terminated reason in error_message, from the
 * check functions and from the calls themselves, and the call must write
 * nothing. Three placements each: the array inside the output, straddling
 * its first byte, straddling its last byte; the array holds valid values
 * (so that nothing but the overlap is wrong). Control: the same array right
 * next to the output, touching but not overlapping, is ATTN_OK.
 *
 * q.shape[3] = 0 (with k's 0 too, or k's 8) is ATTN_ERR_HEAD_DIM with a
 * reason, forward and backward.
 *
 * The calls proper run only when the check function already answered
 * ATTN_ERR_OVERLAP: a library that misses the overlap would otherwise
 * compute while overwriting its own kv_lens or cu_seqlens (undefined).
 * Last line: "N passed, N failed".
 */
#include <attn.h>

#include "test_common.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long n_pass, n_fail;

/* batch 2, seq_q 6, seq_k 7, 2 query heads, 1 kv head, head_dim 8 */
#define B 2
#define SQ 6
#define SK 7
#define HQ 2
#define HK 1
#define D 8
#define NQ (B * SQ * HQ * D)
#define NK (B * SK * HK * D)
#define NO NQ
#define NL (B * HQ * SQ)

enum { A_ALIBI, A_KVLENS, A_CUQ, A_CUK, A_QPOS, A_KPOS, A_COUNT };
static const char *const aname[A_COUNT] = {"alibi_slopes",  "kv_lens",
                                           "cu_seqlens_q",  "cu_seqlens_k",
                                           "q_pos_offsets", "k_pos_offsets"};
static const size_t aelem[A_COUNT] = {4, 4, 4, 4, 8, 8};
static const size_t alen[A_COUNT] = {HQ, B, B + 1, B + 1, B, B};

enum { X_O, X_LSE, X_DQ, X_DK, X_DV, X_COUNT };
static const char *const xname[X_COUNT] = {"o", "lse", "dq", "dk", "dv"};

/* Everything a call reads, outside the arena. */
typedef struct inputs {
  float q[NQ], k[NK], v[NK], dout[NO];
  float o[NO], lse[NL]; /* forward results (backward inputs) */
  float slopes[HQ];     /* used when alibi is not the array tested */
  int32_t kvl[B], cuq[B + 1], cuk[B + 1];
  int64_t qpos[B], kpos[B];
} inputs;

/* The outputs under test live in one arena, at ARENA_OFF, so that arrays can
 * be placed on either side of them. */
#define ARENA_BYTES 16384
#define ARENA_OFF 4096
static _Alignas(64) unsigned char arena[ARENA_BYTES];
static inputs in;
static char why[256];

static void fill_inputs(void) {
  tc_rng r = {0x0E7A9};
  for (int i = 0; i < NQ; i++)
    in.q[i] = (float)tc_uniform(&r, -1, 1), in.dout[i] = (float)tc_normal(&r);
  for (int i = 0; i < NK; i++)
    in.k[i] = (float)tc_uniform(&r, -1, 1), in.v[i] = (float)tc_normal(&r);
  attn_alibi_slopes(HQ, in.slopes);
  for (int b = 0; b < B; b++)
    in.kvl[b] = SK - b, in.qpos[b] = 0, in.kpos[b] = 0;
  for (int b = 0; b <= B; b++)
    in.cuq[b] = b * SQ, in.cuk[b] = b * SK;
}

/* Valid contents of array a, as bytes. */
static void array_bytes(int a, unsigned char *dst) {
  switch (a) {
  case A_ALIBI:
    memcpy(dst, in.slopes, sizeof in.slopes);
    break;
  case A_KVLENS:
    memcpy(dst, in.kvl, sizeof in.kvl);
    break;
  case A_CUQ:
    memcpy(dst, in.cuq, sizeof in.cuq);
    break;
  case A_CUK:
    memcpy(dst, in.cuk, sizeof in.cuk);
    break;
  default:
    memcpy(dst, in.qpos, sizeof in.qpos);
    break;
  }
}

/* p for the problem; varlen (packed, for the cu_seqlens arrays) or not.
 * Outputs point into `in` (o, lse) and scratch (dq, dk, dv) unless the
 * caller moves one into the arena. */
static float g_dq[NQ], g_dk[NK], g_dv[NK];

static void base_params(attn_params *p, int varlen) {
  attn_params_init(p);
  const int64_t bb = varlen ? 1 : B, sq = varlen ? B * SQ : SQ;
  const int64_t sk = varlen ? B * SK : SK;
  p->q = attn_tensor_bshd(in.q, ATTN_DTYPE_F32, bb, sq, HQ, D);
  p->k = attn_tensor_bshd(in.k, ATTN_DTYPE_F32, bb, sk, HK, D);
  p->v = attn_tensor_bshd(in.v, ATTN_DTYPE_F32, bb, sk, HK, D);
  p->o = attn_tensor_bshd(in.o, ATTN_DTYPE_F32, bb, sq, HQ, D);
  p->lse = in.lse;
  p->dout = attn_tensor_bshd(in.dout, ATTN_DTYPE_F32, bb, sq, HQ, D);
  p->dq = attn_tensor_bshd(g_dq, ATTN_DTYPE_F32, bb, sq, HQ, D);
  p->dk = attn_tensor_bshd(g_dk, ATTN_DTYPE_F32, bb, sk, HK, D);
  p->dv = attn_tensor_bshd(g_dv, ATTN_DTYPE_F32, bb, sk, HK, D);
  p->causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  p->num_threads = 1;
  if (varlen) {
    p->cu_seqlens_q = in.cuq;
    p->cu_seqlens_k = in.cuk;
    p->varlen_batch = B;
  }
  p->error_message = why;
  p->error_message_size = sizeof why;
}

static size_t x_bytes(int x) {
  return x == X_LSE ? NL * 4 : (x == X_DK || x == X_DV) ? NK * 4 : NO * 4;
}

/* Points output x of p at the arena. */
static void move_output(attn_params *p, int x, void *at) {
  switch (x) {
  case X_O:
    p->o.data = at;
    break;
  case X_LSE:
    p->lse = (float *)at;
    break;
  case X_DQ:
    p->dq.data = at;
    break;
  case X_DK:
    p->dk.data = at;
    break;
  default:
    p->dv.data = at;
    break;
  }
}

static void attach_array(attn_params *p, int a, void *at) {
  switch (a) {
  case A_ALIBI:
    p->alibi_slopes = (const float *)at;
    break;
  case A_KVLENS:
    p->kv_lens = (const int32_t *)at;
    break;
  case A_CUQ:
    p->cu_seqlens_q = (const int32_t *)at;
    break;
  case A_CUK:
    p->cu_seqlens_k = (const int32_t *)at;
    break;
  case A_QPOS:
    p->q_pos_offsets = (const int64_t *)at;
    break;
  default:
    p->k_pos_offsets = (const int64_t *)at;
    break;
  }
}

static int message_ok(void) {
  return memchr(why, '\0', sizeof why) != NULL && why[0] != '\0' &&
         why[0] != '#';
}

static void overlap_case(int x, int a, int place) {
  static const char *const pname[4] = {"inside", "straddling the start of",
                                       "straddling the end of",
                                       "touching (control)"};
  const int bwd = x >= X_DQ;
  const int varlen = a == A_CUQ || a == A_CUK;
  attn_params p;
  base_params(&p, varlen);
  unsigned char *xat = arena + ARENA_OFF;
  const size_t xb = x_bytes(x), ab = aelem[a] * alen[a];
  unsigned char *aat;
  switch (place) {
  case 0:
    aat = xat + 16; /* inside (xb > ab + 16 for every output) */
    break;
  case 1:
    aat = xat - aelem[a];
    break;
  case 2:
    aat = xat + xb - aelem[a];
    break;
  default:
    aat = xat + xb; /* right after the output: no overlap */
    break;
  }
  memset(arena, 0, sizeof arena);
  move_output(&p, x, xat);
  unsigned char vals[64];
  array_bytes(a, vals);
  memcpy(aat, vals, ab);
  attach_array(&p, a, aat);
  memset(why, '#', sizeof why);
  const attn_status st = bwd ? attn_backward_check(&p) : attn_forward_check(&p);
  char what[160];
  snprintf(what, sizeof what, "%s: %s %s %s", bwd ? "backward" : "forward",
           aname[a], pname[place], xname[x]);
  if (place == 3) {
    CHECK(st == ATTN_OK, "%s: check status %d (%s), want ATTN_OK", what,
          (int)st, message_ok() ? why : "");
    return;
  }
  CHECK(st == ATTN_ERR_OVERLAP, "%s: check status %d (%s), want %d", what,
        (int)st, st == ATTN_OK ? "ok" : (message_ok() ? why : "no message"),
        (int)ATTN_ERR_OVERLAP);
  if (st != ATTN_ERR_OVERLAP)
    return;
  CHECK(message_ok(), "%s: no reason in error_message", what);
  /* the call proper: same status, nothing written */
  static unsigned char before[ARENA_BYTES];
  memcpy(before, arena, sizeof arena);
  memset(why, '#', sizeof why);
  const attn_status st2 =
      bwd ? attn_backward(NULL, &p) : attn_forward(NULL, &p);
  CHECK(st2 == ATTN_ERR_OVERLAP && message_ok(),
        "%s: call status %d, want %d with a reason", what, (int)st2,
        (int)ATTN_ERR_OVERLAP);
  CHECK(memcmp(before, arena, sizeof arena) == 0, "%s: the call wrote", what);
}

static void head_dim_zero(void) {
  for (int kzero = 0; kzero <= 1; kzero++) {
    for (int bwd = 0; bwd <= 1; bwd++) {
      attn_params p;
      base_params(&p, 0);
      p.q.shape[3] = p.dq.shape[3] = 0;
      if (kzero)
        p.k.shape[3] = p.dk.shape[3] = 0;
      char what[96];
      snprintf(what, sizeof what, "%s: q.shape[3] = 0, k.shape[3] = %d",
               bwd ? "backward" : "forward", kzero ? 0 : D);
      memset(why, '#', sizeof why);
      attn_status st = bwd ? attn_backward_check(&p) : attn_forward_check(&p);
      CHECK(st == ATTN_ERR_HEAD_DIM && message_ok(),
            "%s: check status %d (%s), want %d with a reason", what, (int)st,
            message_ok() ? why : "no message", (int)ATTN_ERR_HEAD_DIM);
      memset(why, '#', sizeof why);
      st = bwd ? attn_backward(NULL, &p) : attn_forward(NULL, &p);
      CHECK(st == ATTN_ERR_HEAD_DIM && message_ok(),
            "%s: call status %d (%s), want %d with a reason", what, (int)st,
            message_ok() ? why : "no message", (int)ATTN_ERR_HEAD_DIM);
    }
  }
}

int main(void) {
  fill_inputs();
  /* a clean forward: the backward cases read its o and lse */
  attn_params p;
  base_params(&p, 0);
  p.alibi_slopes = in.slopes;
  CHECK(attn_forward(NULL, &p) == ATTN_OK, "clean forward: %s", why);

  for (int x = 0; x < X_COUNT; x++)
    for (int a = 0; a < A_COUNT; a++)
      for (int place = 0; place < 4; place++)
        overlap_case(x, a, place);
  head_dim_zero();
  printf("%ld passed, %ld failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
