/*
 * The problems of test "abi", shared by the program built against the 0.1
 * header (consumer_0_1.c, tests/abi/attn_0_1.h) and the one built against
 * today's (test_abi.c, include/attn.h). Include it after either header: it
 * uses only what attn.h 0.1 declared (fields, functions, enums), so both
 * programs build bitwise the same attn_params contents and inputs.
 *
 * Every case is run once per ISA the CPU supports, forward then backward.
 * The results are written, in this order, as raw floats: o, lse, dq, dk, dv
 * and dbias (when the case has a bias).
 */
#ifndef ATTN_TEST_ABI_CASES_H
#define ATTN_TEST_ABI_CASES_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ABI_NUM_CASES 5
#define ABI_MAGIC 0x31304241u /* "AB01" */

typedef struct abi_case {
  const char *name;
  int64_t b, sq, sk, hq, hk, d, dv;
  attn_causal causal;
  int64_t window_left, window_right;
  int bias;      /* 1: full [b, hq, sq, sk] bias and its dbias; 2: [1, hq,
                    sq, 1] broadcast bias and its dbias */
  int kv_lens;   /* per-batch key lengths below seq_k                  */
  int alibi;     /* attn_alibi_slopes(hq)                              */
  float softcap; /* 0 = off                                            */
  attn_dtype in_dtype;
  int use_context;   /* attn_context_create with 2 threads             */
  int use_workspace; /* caller workspace from *_workspace_size         */
  int num_threads;   /* p.num_threads                                  */
} abi_case;

static const abi_case abi_cases[ABI_NUM_CASES] = {
    {"mha", 2, 33, 47, 2, 2, 16, 16, ATTN_CAUSAL_NONE, -1, -1, 0, 0, 0, 0.0f,
     ATTN_DTYPE_F32, 0, 0, 1},
    {"gqa_causal_br", 2, 70, 130, 4, 2, 32, 32, ATTN_CAUSAL_BOTTOM_RIGHT, -1,
     -1, 0, 0, 0, 0.0f, ATTN_DTYPE_F32, 1, 0, 0},
    {"bias_kvlens_tl", 2, 61, 130, 4, 1, 24, 40, ATTN_CAUSAL_TOP_LEFT, -1, -1,
     1, 1, 0, 0.0f, ATTN_DTYPE_F32, 0, 1, 2},
    {"alibi_window_softcap", 2, 50, 90, 2, 2, 64, 64, ATTN_CAUSAL_NONE, 16, 3,
     2, 1, 1, 5.0f, ATTN_DTYPE_F32, 0, 0, 2},
    {"bf16_gqa_causal", 1, 96, 96, 6, 3, 48, 48, ATTN_CAUSAL_BOTTOM_RIGHT, -1,
     -1, 0, 1, 0, 0.0f, ATTN_DTYPE_BF16, 1, 1, 0},
};

/* Deterministic inputs: splitmix64 → uniform in [-1, 1). */
static inline double abi_uniform(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (double)(z >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

/* bf16 round to nearest even (finite inputs only). */
static inline uint16_t abi_f32_to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  return (uint16_t)((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

/* Every buffer of one case; counts in elements. */
typedef struct abi_bufs {
  int64_t n_q, n_k, n_v, n_o, n_lse, n_bias;
  void *q, *k, *v; /* in_dtype */
  float *o, *lse, *dout, *dq, *dk, *dv, *bias, *dbias;
  int32_t kv_lens[4];
  float slopes[16];
  void *workspace;
  char why[256];
} abi_bufs;

static inline void *abi_alloc(size_t bytes) {
  void *p = calloc(bytes ? bytes : 1, 1);
  if (!p) {
    fprintf(stderr, "abi: out of memory (%zu bytes)\n", bytes);
    exit(2);
  }
  return p;
}

static inline void abi_fill(void *dst, attn_dtype dt, int64_t n, double amp,
                            uint64_t *seed) {
  for (int64_t i = 0; i < n; i++) {
    const float x = (float)(amp * abi_uniform(seed));
    if (dt == ATTN_DTYPE_BF16)
      ((uint16_t *)dst)[i] = abi_f32_to_bf16(x);
    else
      ((float *)dst)[i] = x;
  }
}

/* Allocates and fills the buffers of case c and points p at them (p must
 * have been through attn_params_init). Outputs start as NaN-free garbage
 * (a fixed pattern) so that an unwritten element shows. */
static inline void abi_case_build(const abi_case *c, abi_bufs *bf,
                                  attn_params *p, uint64_t seed) {
  const size_t es = c->in_dtype == ATTN_DTYPE_BF16 ? 2 : 4;
  memset(bf, 0, sizeof *bf);
  bf->n_q = c->b * c->sq * c->hq * c->d;
  bf->n_k = c->b * c->sk * c->hk * c->d;
  bf->n_v = c->b * c->sk * c->hk * c->dv;
  bf->n_o = c->b * c->sq * c->hq * c->dv;
  bf->n_lse = c->b * c->hq * c->sq;
  bf->q = abi_alloc((size_t)bf->n_q * es);
  bf->k = abi_alloc((size_t)bf->n_k * es);
  bf->v = abi_alloc((size_t)bf->n_v * es);
  bf->o = abi_alloc((size_t)bf->n_o * 4);
  bf->lse = abi_alloc((size_t)bf->n_lse * 4);
  bf->dout = abi_alloc((size_t)bf->n_o * 4);
  bf->dq = abi_alloc((size_t)bf->n_q * 4);
  bf->dk = abi_alloc((size_t)bf->n_k * 4);
  bf->dv = abi_alloc((size_t)bf->n_v * 4);
  abi_fill(bf->q, c->in_dtype, bf->n_q, 1.5, &seed);
  abi_fill(bf->k, c->in_dtype, bf->n_k, 1.5, &seed);
  abi_fill(bf->v, c->in_dtype, bf->n_v, 1.0, &seed);
  abi_fill(bf->dout, ATTN_DTYPE_F32, bf->n_o, 1.0, &seed);
  for (int64_t i = 0; i < bf->n_o; i++)
    bf->o[i] = 12345.0f;
  for (int64_t i = 0; i < bf->n_lse; i++)
    bf->lse[i] = 12345.0f;
  for (int64_t i = 0; i < bf->n_q; i++)
    bf->dq[i] = 12345.0f;
  for (int64_t i = 0; i < bf->n_k; i++)
    bf->dk[i] = 12345.0f;
  for (int64_t i = 0; i < bf->n_v; i++)
    bf->dv[i] = 12345.0f;

  p->q = attn_tensor_bshd(bf->q, c->in_dtype, c->b, c->sq, c->hq, c->d);
  p->k = attn_tensor_bshd(bf->k, c->in_dtype, c->b, c->sk, c->hk, c->d);
  p->v = attn_tensor_bshd(bf->v, c->in_dtype, c->b, c->sk, c->hk, c->dv);
  p->o = attn_tensor_bshd(bf->o, ATTN_DTYPE_F32, c->b, c->sq, c->hq, c->dv);
  p->lse = bf->lse;
  p->causal = c->causal;
  p->window_left = c->window_left;
  p->window_right = c->window_right;
  p->softcap = c->softcap;
  p->num_threads = c->num_threads;
  p->error_message = bf->why;
  p->error_message_size = sizeof bf->why;
  if (c->bias) {
    const int64_t bb = c->bias == 1 ? c->b : 1;
    const int64_t bk = c->bias == 1 ? c->sk : 1;
    bf->n_bias = bb * c->hq * c->sq * bk;
    bf->bias = abi_alloc((size_t)bf->n_bias * 4);
    bf->dbias = abi_alloc((size_t)bf->n_bias * 4);
    abi_fill(bf->bias, ATTN_DTYPE_F32, bf->n_bias, 2.0, &seed);
    for (int64_t i = 0; i < bf->n_bias; i++)
      bf->dbias[i] = 12345.0f;
    p->bias =
        attn_tensor_contiguous(bf->bias, ATTN_DTYPE_F32, bb, c->hq, c->sq, bk);
    p->dbias =
        attn_tensor_contiguous(bf->dbias, ATTN_DTYPE_F32, bb, c->hq, c->sq, bk);
  }
  if (c->kv_lens) {
    for (int64_t b = 0; b < c->b; b++) /* 0.6 sk .. sk */
      bf->kv_lens[b] = (int32_t)(c->sk - (b * 2 + 1) * c->sk / 5);
    bf->kv_lens[c->b - 1] = (int32_t)c->sk; /* the last one full */
    p->kv_lens = bf->kv_lens;
  }
  if (c->alibi) {
    attn_alibi_slopes(c->hq, bf->slopes);
    p->alibi_slopes = bf->slopes;
  }
  p->dout =
      attn_tensor_bshd(bf->dout, ATTN_DTYPE_F32, c->b, c->sq, c->hq, c->dv);
  p->dq = attn_tensor_bshd(bf->dq, ATTN_DTYPE_F32, c->b, c->sq, c->hq, c->d);
  p->dk = attn_tensor_bshd(bf->dk, ATTN_DTYPE_F32, c->b, c->sk, c->hk, c->d);
  p->dv = attn_tensor_bshd(bf->dv, ATTN_DTYPE_F32, c->b, c->sk, c->hk, c->dv);
}

static inline void abi_bufs_free(abi_bufs *bf) {
  free(bf->q), free(bf->k), free(bf->v), free(bf->o), free(bf->lse);
  free(bf->dout), free(bf->dq), free(bf->dk), free(bf->dv);
  free(bf->bias), free(bf->dbias), free(bf->workspace);
  memset(bf, 0, sizeof *bf);
}

/* Runs case c on isa the way a 0.1 program would: forward, then backward
 * (context, caller workspace, thread count as the case says). Returns the
 * two statuses. */
static inline void abi_case_run(const abi_case *c, abi_bufs *bf, attn_params *p,
                                attn_isa isa, attn_status *st_fwd,
                                attn_status *st_bwd) {
  attn_context *ctx = NULL;
  p->isa = isa;
  if (c->use_context) {
    attn_context_options opt;
    attn_context_options_init(&opt);
    opt.num_threads = 2;
    opt.isa = isa;
    attn_status s = attn_context_create(&ctx, &opt);
    if (s != ATTN_OK) {
      *st_fwd = *st_bwd = s;
      return;
    }
  }
  *st_fwd = attn_forward_check(p);
  if (*st_fwd == ATTN_OK && c->use_workspace) {
    size_t bytes = 0;
    *st_fwd = attn_forward_workspace_size(ctx, p, &bytes);
    if (*st_fwd == ATTN_OK) {
      free(bf->workspace);
      bf->workspace = abi_alloc(bytes);
      p->workspace = bf->workspace;
      p->workspace_size = bytes;
    }
  }
  if (*st_fwd == ATTN_OK)
    *st_fwd = attn_forward(ctx, p);
  *st_bwd = *st_fwd == ATTN_OK ? attn_backward_check(p) : *st_fwd;
  if (*st_bwd == ATTN_OK && c->use_workspace) {
    size_t bytes = 0;
    p->workspace = NULL;
    p->workspace_size = 0;
    *st_bwd = attn_backward_workspace_size(ctx, p, &bytes);
    if (*st_bwd == ATTN_OK) {
      free(bf->workspace);
      bf->workspace = abi_alloc(bytes);
      p->workspace = bf->workspace;
      p->workspace_size = bytes;
    }
  }
  if (*st_bwd == ATTN_OK)
    *st_bwd = attn_backward(ctx, p);
  attn_context_free(ctx);
}

/* The seed of case c (the same in both programs). */
static inline uint64_t abi_case_seed(int c) {
  return 0xAB1000ull + 7919ull * (uint64_t)c;
}

#endif /* ATTN_TEST_ABI_CASES_H */
