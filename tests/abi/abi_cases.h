/*
 * The problems of test "abi", shared by the programs built against the
 * released headers (consumer.c with tests/abi/attn_0_1.h, attn_0_2.h,
 * attn_0_3.h) and the one built against today's (test_abi.c,
 * include/attn.h). Include it after any of them: the first ABI_NUM_CASES
 * cases use only what attn.h 0.1 declared (fields, functions, enums), the
 * ABI_NUM_CASES_0_3 after them only what 0.3 declared (built when the
 * header is 0.3 or later), so every program builds bitwise the same
 * attn_params contents and inputs.
 *
 * Every case is run once per ISA the CPU supports. A run records two
 * statuses and up to ABI_NUM_OUT result arrays (abi_bufs.out), written as
 * raw floats in that order: forward + backward cases o, lse, dq, dk, dv and
 * dbias (drel_bias for the T5 case) when the case has one; the KV cache
 * case o, lse and the cache's k and v pages after its appends.
 */
#ifndef ATTN_TEST_ABI_CASES_H
#define ATTN_TEST_ABI_CASES_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ABI_NUM_CASES 5
/* "AB02": the consumer's file starts with it, sizeof(attn_params) and
 * the number of cases */
#define ABI_MAGIC 0x32304241u

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

#define ABI_NUM_OUT 6

/* Every buffer of one case; counts in elements. out[t] (n_out[t] floats,
 * 0 = none) are the results a run records, named out_name[t]. */
typedef struct abi_bufs {
  int64_t n_q, n_k, n_v, n_o, n_lse, n_bias;
  void *q, *k, *v; /* in_dtype */
  float *o, *lse, *dout, *dq, *dk, *dv, *bias, *dbias;
  int32_t kv_lens[4];
  float slopes[16];
  void *workspace;
  float *cache_k, *cache_v; /* the KV cache case's pages */
  int64_t n_cache_k, n_cache_v;
  int32_t seq_lens[4], block_table[16];
  const float *out[ABI_NUM_OUT];
  int64_t n_out[ABI_NUM_OUT];
  const char *out_name[ABI_NUM_OUT];
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

/* The results of a forward + backward run: o, lse, dq, dk, dv and the
 * gradient in dbias (named last: "dbias" or "drel_bias"). */
static inline void abi_set_outputs(abi_bufs *bf, const char *last) {
  const float *out[ABI_NUM_OUT] = {bf->o,  bf->lse, bf->dq,
                                   bf->dk, bf->dv,  bf->dbias};
  const int64_t n[ABI_NUM_OUT] = {bf->n_o, bf->n_lse, bf->n_q,
                                  bf->n_k, bf->n_v,   bf->n_bias};
  static const char *const names[ABI_NUM_OUT - 1] = {"o", "lse", "dq", "dk",
                                                     "dv"};
  for (int t = 0; t < ABI_NUM_OUT; t++) {
    bf->out[t] = out[t];
    bf->n_out[t] = out[t] ? n[t] : 0;
    bf->out_name[t] = t < ABI_NUM_OUT - 1 ? names[t] : last;
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
  abi_set_outputs(bf, "dbias");
}

static inline void abi_bufs_free(abi_bufs *bf) {
  free(bf->q), free(bf->k), free(bf->v), free(bf->o), free(bf->lse);
  free(bf->dout), free(bf->dq), free(bf->dk), free(bf->dv);
  free(bf->bias), free(bf->dbias), free(bf->workspace);
  free(bf->cache_k), free(bf->cache_v);
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

/* The seed of case c (the same in every program). */
static inline uint64_t abi_case_seed(int c) {
  return 0xAB1000ull + 7919ull * (uint64_t)c;
}

/* ---------------------------------------------------------------------- */
/* 0.3 cases: the T5 table, RoPE and the KV cache                         */
/* ---------------------------------------------------------------------- */
#if ATTN_VERSION_NUMBER >= 300
#define ABI_NUM_CASES_0_3 2
#define ABI_NUM_CASES_ALL (ABI_NUM_CASES + ABI_NUM_CASES_0_3)

typedef enum abi_kind_0_3 {
  /* attn_rope_apply_qk rotates q and k in place, then forward + backward
   * with a T5 table (and drel_bias) and position offsets */
  ABI_T5_ROPE = 0,
  /* a paged f32 cache: a prefill append of base.sk - 1 - 13 * (b - 1 - s)
   * tokens of sequence s and one more token each, both with RoPE, then
   * attend of base.sq query rows with RoPE and a T5 table */
  ABI_KV_CACHE = 1
} abi_kind_0_3;

typedef struct abi_case_0_3 {
  abi_case base; /* shapes and 0.1 options (kv_lens and bias unused by the
                    KV cache case: the cache gives the key lengths) */
  abi_kind_0_3 kind;
  int64_t rel_buckets, rel_max_distance;
  int rel_bidirectional;
  int64_t pos_offset; /* q_pos_offset = k_pos_offset */
  attn_rope_style rope_style;
  attn_rope_scaling rope_scaling;
  double rope_factor, rope_original_max;
  int64_t page_size; /* KV cache: rows per page */
} abi_case_0_3;

static const abi_case_0_3 abi_cases_0_3[ABI_NUM_CASES_0_3] = {
    {.base = {"t5_rope_llama3", 2, 37, 67, 4, 2, 32, 32, ATTN_CAUSAL_NONE, -1,
              -1, 0, 1, 0, 0.0f, ATTN_DTYPE_F32, 0, 1, 2},
     .kind = ABI_T5_ROPE,
     .rel_buckets = 16,
     .rel_max_distance = 40,
     .rel_bidirectional = 1,
     .pos_offset = 3,
     .rope_style = ATTN_ROPE_HALF,
     .rope_scaling = ATTN_ROPE_SCALING_LLAMA3,
     .rope_factor = 8.0,
     .rope_original_max = 32.0},
    {.base = {"kv_cache_paged_rope_t5", 2, 2, 51, 4, 2, 64, 64,
              ATTN_CAUSAL_BOTTOM_RIGHT, -1, -1, 0, 0, 0, 0.0f, ATTN_DTYPE_F32,
              1, 1, 2},
     .kind = ABI_KV_CACHE,
     .rel_buckets = 24,
     .rel_max_distance = 48,
     .rope_style = ATTN_ROPE_INTERLEAVED,
     .rope_scaling = ATTN_ROPE_SCALING_YARN,
     .rope_factor = 4.0,
     .rope_original_max = 32.0,
     .page_size = 16},
};

/* The cache's geometry: blocks per sequence and pages in the pool (one
 * more than the sequences use, so that page numbers skip one). */
static inline int64_t abi_cache_bps(const abi_case_0_3 *c) {
  return (c->base.sk + c->page_size - 1) / c->page_size;
}
static inline int64_t abi_cache_pages(const abi_case_0_3 *c) {
  return c->base.b * abi_cache_bps(c) + 1;
}

static inline void abi_rope_0_3(const abi_case_0_3 *c, attn_rope *r) {
  attn_rope_init(r);
  r->style = c->rope_style;
  r->scaling = c->rope_scaling;
  r->factor = c->rope_factor;
  r->original_max_position = c->rope_original_max;
}

/* The T5 table (in bf->bias, n_bias floats) of case c on p. */
static inline void abi_t5_table(const abi_case_0_3 *c, abi_bufs *bf,
                                attn_params *p, uint64_t *seed) {
  bf->n_bias = c->rel_buckets * c->base.hq;
  bf->bias = abi_alloc((size_t)bf->n_bias * 4);
  abi_fill(bf->bias, ATTN_DTYPE_F32, bf->n_bias, 1.0, seed);
  p->rel_bias = bf->bias;
  p->rel_buckets = c->rel_buckets;
  p->rel_max_distance = c->rel_max_distance;
  p->rel_bidirectional = c->rel_bidirectional;
  p->q_pos_offset = p->k_pos_offset = c->pos_offset;
}

/* The KV cache case's buffers: q, the new keys and values k, v [b, sk,
 * heads_kv, d], o, lse, the T5 table and the zeroed pages. */
static inline void abi_kv_build(const abi_case_0_3 *c, abi_bufs *bf,
                                attn_params *p, uint64_t seed) {
  const abi_case *b = &c->base;
  memset(bf, 0, sizeof *bf);
  bf->n_q = b->b * b->sq * b->hq * b->d;
  bf->n_k = b->b * b->sk * b->hk * b->d;
  bf->n_v = b->b * b->sk * b->hk * b->dv;
  bf->n_o = b->b * b->sq * b->hq * b->dv;
  bf->n_lse = b->b * b->hq * b->sq;
  bf->q = abi_alloc((size_t)bf->n_q * 4);
  bf->k = abi_alloc((size_t)bf->n_k * 4);
  bf->v = abi_alloc((size_t)bf->n_v * 4);
  bf->o = abi_alloc((size_t)bf->n_o * 4);
  bf->lse = abi_alloc((size_t)bf->n_lse * 4);
  abi_fill(bf->q, ATTN_DTYPE_F32, bf->n_q, 1.5, &seed);
  abi_fill(bf->k, ATTN_DTYPE_F32, bf->n_k, 1.5, &seed);
  abi_fill(bf->v, ATTN_DTYPE_F32, bf->n_v, 1.0, &seed);
  for (int64_t i = 0; i < bf->n_o; i++)
    bf->o[i] = 12345.0f;
  for (int64_t i = 0; i < bf->n_lse; i++)
    bf->lse[i] = 12345.0f;
  const int64_t rows = abi_cache_pages(c) * c->page_size * b->hk;
  bf->n_cache_k = rows * b->d;
  bf->n_cache_v = rows * b->dv;
  bf->cache_k = abi_alloc((size_t)bf->n_cache_k * 4);
  bf->cache_v = abi_alloc((size_t)bf->n_cache_v * 4);
  /* (5 + 2 i) mod pages: distinct for i < pages (pages is odd) */
  const int64_t used = b->b * abi_cache_bps(c);
  for (int64_t i = 0; i < used; i++)
    bf->block_table[i] = (int32_t)((5 + 2 * i) % abi_cache_pages(c));

  p->q = attn_tensor_bshd(bf->q, ATTN_DTYPE_F32, b->b, b->sq, b->hq, b->d);
  p->o = attn_tensor_bshd(bf->o, ATTN_DTYPE_F32, b->b, b->sq, b->hq, b->dv);
  p->lse = bf->lse;
  p->causal = b->causal;
  p->window_left = b->window_left;
  p->window_right = b->window_right;
  p->softcap = b->softcap;
  p->num_threads = b->num_threads;
  p->error_message = bf->why;
  p->error_message_size = sizeof bf->why;
  abi_t5_table(c, bf, p, &seed);

  const float *out[ABI_NUM_OUT] = {bf->o, bf->lse, bf->cache_k, bf->cache_v};
  const int64_t n[ABI_NUM_OUT] = {bf->n_o, bf->n_lse, bf->n_cache_k,
                                  bf->n_cache_v};
  static const char *const names[ABI_NUM_OUT] = {"o",       "lse", "cache k",
                                                 "cache v", "-",   "-"};
  for (int t = 0; t < ABI_NUM_OUT; t++) {
    bf->out[t] = out[t];
    bf->n_out[t] = n[t];
    bf->out_name[t] = names[t];
  }
}

/* The cache of the KV case over bf's pages (seq_lens starting at 0). */
static inline void abi_kv_describe(const abi_case_0_3 *c, abi_bufs *bf,
                                   attn_kv_cache *kc) {
  attn_kv_cache_init(kc);
  kc->dtype = ATTN_DTYPE_F32;
  kc->num_seqs = c->base.b;
  kc->heads_kv = c->base.hk;
  kc->head_dim = c->base.d;
  kc->head_dim_v = c->base.dv;
  kc->k = bf->cache_k;
  kc->v = bf->cache_v;
  kc->seq_lens = bf->seq_lens;
  kc->page_size = c->page_size;
  kc->num_pages = abi_cache_pages(c);
  kc->blocks_per_seq = abi_cache_bps(c);
  kc->block_table = bf->block_table;
  kc->error_message = bf->why;
  kc->error_message_size = sizeof bf->why;
}

/* The KV case: the two appends (status in *st_append), then attend (with
 * a caller workspace when the case says so; status in *st_attend). */
static inline void abi_kv_run(const abi_case_0_3 *c, abi_bufs *bf,
                              attn_params *p, attn_isa isa,
                              attn_status *st_append, attn_status *st_attend) {
  const abi_case *b = &c->base;
  attn_rope r;
  attn_kv_cache kc;
  attn_context *ctx = NULL;
  abi_rope_0_3(c, &r);
  abi_kv_describe(c, bf, &kc);
  p->isa = isa;
  if (b->use_context) {
    attn_context_options opt;
    attn_context_options_init(&opt);
    opt.num_threads = 2;
    opt.isa = isa;
    attn_status s = attn_context_create(&ctx, &opt);
    if (s != ATTN_OK) {
      *st_append = *st_attend = s;
      return;
    }
  }
  attn_tensor k_new =
      attn_tensor_bshd(bf->k, ATTN_DTYPE_F32, b->b, b->sk, b->hk, b->d);
  attn_tensor v_new =
      attn_tensor_bshd(bf->v, ATTN_DTYPE_F32, b->b, b->sk, b->hk, b->dv);
  int32_t n_new[4];
  for (int64_t s = 0; s < b->b; s++)
    n_new[s] = (int32_t)(b->sk - 1 - 13 * (b->b - 1 - s));
  *st_append = attn_kv_cache_append(ctx, &kc, k_new, v_new, n_new, &r);
  if (*st_append == ATTN_OK) { /* token sk - 1 of every sequence */
    k_new.data = (float *)bf->k + (b->sk - 1) * b->hk * b->d;
    v_new.data = (float *)bf->v + (b->sk - 1) * b->hk * b->dv;
    k_new.shape[1] = v_new.shape[1] = 1;
    *st_append = attn_kv_cache_append(ctx, &kc, k_new, v_new, NULL, &r);
  }
  *st_attend = *st_append;
  if (*st_attend == ATTN_OK && b->use_workspace) {
    size_t bytes = 0;
    *st_attend = attn_kv_cache_attend_workspace_size(ctx, &kc, p, &r, &bytes);
    if (*st_attend == ATTN_OK) {
      free(bf->workspace);
      bf->workspace = abi_alloc(bytes);
      p->workspace = bf->workspace;
      p->workspace_size = bytes;
    }
  }
  if (*st_attend == ATTN_OK)
    *st_attend = attn_kv_cache_attend(ctx, &kc, p, &r);
  attn_context_free(ctx);
}
#else
#define ABI_NUM_CASES_ALL ABI_NUM_CASES
#endif

/* Case c of every case this header knows (0.1's, then 0.3's). */
static inline const char *abi_case_name(int c) {
#if ATTN_VERSION_NUMBER >= 300
  if (c >= ABI_NUM_CASES)
    return abi_cases_0_3[c - ABI_NUM_CASES].base.name;
#endif
  return abi_cases[c].name;
}

/* Builds case c into bf and p (p must have been through attn_params_init). */
static inline void abi_build(int c, abi_bufs *bf, attn_params *p) {
  const uint64_t seed = abi_case_seed(c);
#if ATTN_VERSION_NUMBER >= 300
  if (c >= ABI_NUM_CASES) {
    const abi_case_0_3 *c3 = &abi_cases_0_3[c - ABI_NUM_CASES];
    if (c3->kind == ABI_KV_CACHE) {
      abi_kv_build(c3, bf, p, seed);
      return;
    }
    uint64_t s = seed ^ 0x7135ull;
    abi_case_build(&c3->base, bf, p, seed);
    abi_t5_table(c3, bf, p, &s);
    bf->dbias = abi_alloc((size_t)bf->n_bias * 4);
    for (int64_t i = 0; i < bf->n_bias; i++)
      bf->dbias[i] = 12345.0f;
    p->drel_bias = bf->dbias;
    abi_set_outputs(bf, "drel_bias");
    return;
  }
#endif
  abi_case_build(&abi_cases[c], bf, p, seed);
}

/* Runs case c on isa; the two statuses (forward and backward; for the KV
 * cache case append and attend). */
static inline void abi_run(int c, abi_bufs *bf, attn_params *p, attn_isa isa,
                           attn_status *st1, attn_status *st2) {
#if ATTN_VERSION_NUMBER >= 300
  if (c >= ABI_NUM_CASES) {
    const abi_case_0_3 *c3 = &abi_cases_0_3[c - ABI_NUM_CASES];
    if (c3->kind == ABI_KV_CACHE) {
      abi_kv_run(c3, bf, p, isa, st1, st2);
      return;
    }
    attn_rope r;
    abi_rope_0_3(c3, &r);
    const attn_status s = attn_rope_apply_qk(&r, p, p->q, p->k, 0);
    if (s != ATTN_OK) {
      *st1 = *st2 = s;
      return;
    }
    abi_case_run(&c3->base, bf, p, isa, st1, st2);
    return;
  }
#endif
  abi_case_run(&abi_cases[c], bf, p, isa, st1, st2);
}

#endif /* ATTN_TEST_ABI_CASES_H */
