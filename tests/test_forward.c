/*
 * test_forward: randomized, table-driven check of attn_forward against the
 * double-precision oracle (oracle.c), on every ISA this CPU supports.
 *
 * Each case draws shapes, layouts, dtypes and options from a seeded RNG; the
 * inputs are stored in the case's dtype, and the oracle and the naive f32
 * reference read those same stored values. A run passes when
 *
 *     max|o_kernel - o_oracle| <= 2 * max|o_naive_f32 - o_oracle| + floor
 *
 * (and the same for LSE), rows without keys are exactly o = 0, lse = -inf,
 * nothing is NaN, and attn_forward wrote nothing outside o's view or the LSE
 * array. Padding inside input views and keys beyond kv_lens hold NaN, so
 * reading them shows up as NaN in the output.
 *
 * Usage: test_forward [cases]
 * Environment: ATTN_TEST_CASES (default 2500), ATTN_TEST_SEED, ATTN_TEST_ONLY
 * (run one case index), ATTN_TEST_VERBOSE=1 (describe every case).
 * Last line: "N passed, N failed" (one per case and ISA run).
 */
#include "attn.h"
#include "oracle.h"
#include "test_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CASES 2500
#define DEFAULT_SEED 0x1A77E57ull
#define MAX_SEQS 5

/* ---------------------------------------------------------------------- */
/* Categories for the error table                                         */
/* ---------------------------------------------------------------------- */
enum {
  CAT_ALL,
  CAT_MHA,
  CAT_GQA,
  CAT_MQA,
  CAT_IN_F32,
  CAT_IN_BF16,
  CAT_IN_F16,
  CAT_OUT_F32,
  CAT_OUT_F32_PLAIN,
  CAT_OUT_BF16,
  CAT_OUT_F16,
  CAT_DV,
  CAT_CAUSAL_BR,
  CAT_CAUSAL_TL,
  CAT_WINDOW,
  CAT_SOFTCAP,
  CAT_ALIBI,
  CAT_BIAS,
  CAT_BIAS_NEGINF,
  CAT_MASK,
  CAT_KV_LENS,
  CAT_VARLEN,
  CAT_VARLEN_EMPTY,
  CAT_EMPTY_ROWS,
  CAT_HUGE,
  CAT_STRIDED,
  CAT_BHSD,
  CAT_PACKED_QKV,
  CAT_KV_BCAST,
  CAT_DECODE,
  CAT_SCALE,
  CAT_WORKSPACE,
  CAT_CONTEXT,
  CAT_T1,
  CAT_T2,
  CAT_T3,
  CAT_T7,
  CAT_ISA_GENERIC,
  CAT_ISA_AVX2,
  CAT_ISA_AVX512,
  CAT_COUNT
};

static const char *const cat_names[CAT_COUNT] = {"all",
                                                 "mha",
                                                 "gqa",
                                                 "mqa",
                                                 "in f32",
                                                 "in bf16",
                                                 "in f16",
                                                 "out f32",
                                                 "out f32 ~N(0,1)",
                                                 "out bf16",
                                                 "out f16",
                                                 "dv != d",
                                                 "causal br",
                                                 "causal tl",
                                                 "window",
                                                 "softcap",
                                                 "alibi",
                                                 "bias",
                                                 "bias -inf",
                                                 "mask",
                                                 "kv_lens",
                                                 "varlen",
                                                 "varlen empty",
                                                 "empty rows",
                                                 "huge logits",
                                                 "strided",
                                                 "bhsd",
                                                 "packed qkv",
                                                 "kv batch bcast",
                                                 "decode",
                                                 "explicit scale",
                                                 "workspace",
                                                 "context",
                                                 "threads 1",
                                                 "threads 2",
                                                 "threads 3",
                                                 "threads 7",
                                                 "isa generic",
                                                 "isa avx2",
                                                 "isa avx512"};

typedef struct cat_stat {
  long runs, fails;
  double worst_err_o, worst_naive_o; /* at the worst budget */
  double worst_budget_o, worst_budget_lse;
  double worst_err_lse;
  double max_cond_o; /* largest conditioning allowance used */
  int worst_case;
} cat_stat;

static cat_stat stats[CAT_COUNT];

/* ---------------------------------------------------------------------- */
/* One case                                                               */
/* ---------------------------------------------------------------------- */
enum { AX_FULL, AX_ONE, AX_ZERO }; /* broadcast mode of a bias/mask axis */

typedef struct fcase {
  int index;
  uint64_t seed;
  int64_t batch;  /* tensor batch (1 with varlen)                  */
  int64_t hq, hk; /* heads                                         */
  int64_t sq, sk; /* tensor seq lengths (totals with varlen)       */
  int64_t d, dv;  /* head dims                                     */
  int varlen;     /* cu_seqlens used                               */
  int64_t nseq;   /* sequences (varlen_batch, or batch)            */
  int32_t cu_q[MAX_SEQS + 1], cu_k[MAX_SEQS + 1];
  int kvlens; /* kv_lens given                                 */
  int32_t kv_lens[MAX_SEQS];
  attn_dtype in_dt, out_dt;
  int order[4];   /* q, k, v, o: 0 = bshd, 1 = bhsd                */
  int padded[4];  /* padding between rows / heads / batches        */
  int dstride[4]; /* stride of the head_dim axis (1 or 2)          */
  int packed;     /* q, k, v interleaved in one buffer             */
  int kv_bcast;   /* k and v batch stride 0                        */
  int huge;       /* inputs ~ +-100                                */
  float scale, softcap;
  int alibi; /* 1 = standard slopes, 2 = random slopes        */
  int bias, bias_mode[4], bias_neginf;
  int mask, mask_mode[4], mask_false_rows;
  double mask_p;
  attn_causal causal;
  int64_t wl, wr;
  int threads, use_ctx, with_lse, workspace;
  int decode;
} fcase;

static const int64_t edge_lens[] = {1,  2,  5,   6,   7,   15,  16,  17,  31,
                                    32, 33, 47,  48,  49,  63,  64,  65,  95,
                                    96, 97, 127, 128, 129, 37,  101, 257, 3,
                                    8,  9,  13,  24,  191, 255, 256, 300};
#define N_EDGE ((int)(sizeof edge_lens / sizeof edge_lens[0]))

static const int64_t head_dims[] = {1,  2,  3,  7,  8,   16,  31, 32,
                                    59, 64, 80, 96, 111, 128, 256};
#define N_HD ((int)(sizeof head_dims / sizeof head_dims[0]))

static int64_t pick_len(tc_rng *r) {
  if (tc_chance(r, 0.6))
    return edge_lens[tc_below(r, N_EDGE)];
  return tc_range(r, 1, 300);
}

/* A random value below cur from the edge list (or cur / 2). */
static int64_t smaller_len(tc_rng *r, int64_t cur) {
  int64_t c[N_EDGE];
  int n = 0;
  for (int i = 0; i < N_EDGE; i++)
    if (edge_lens[i] < cur)
      c[n++] = edge_lens[i];
  if (n == 0)
    return cur / 2 > 0 ? cur / 2 : 1;
  return c[tc_below(r, n)];
}

static int64_t smaller_hd(tc_rng *r, int64_t cur) {
  int n = 0;
  while (n < N_HD && head_dims[n] < cur)
    n++;
  return n ? head_dims[tc_below(r, n)] : cur;
}

static double case_work(const fcase *c) {
  double w = 0.0;
  if (c->varlen) {
    for (int64_t b = 0; b < c->nseq; b++)
      w += (double)(c->cu_q[b + 1] - c->cu_q[b]) *
           (double)(c->cu_k[b + 1] - c->cu_k[b]);
  } else {
    w = (double)c->batch * (double)c->sq * (double)c->sk;
  }
  return w * (double)c->hq * (double)(c->d + c->dv);
}

static void pick_heads(tc_rng *r, fcase *c) {
  int kind = (int)tc_below(r, 3); /* MHA, GQA, MQA */
  c->hq = tc_range(r, 1, 8);
  if (kind == 0) {
    c->hk = c->hq;
  } else if (kind == 2) {
    c->hk = 1;
  } else {
    int64_t divs[8], n = 0;
    for (int64_t x = 1; x <= c->hq; x++)
      if (c->hq % x == 0)
        divs[n++] = x;
    c->hk = divs[tc_below(r, n)];
  }
}

/* Fewer heads, keeping the kind: MHA stays MHA, MQA stays MQA (down to 2
 * query heads), GQA keeps a group of 2. */
static void shrink_heads(fcase *c) {
  if (c->hk == c->hq) {
    c->hq = c->hk = c->hq / 2 > 0 ? c->hq / 2 : 1;
  } else if (c->hk == 1) {
    c->hq = c->hq / 2 > 1 ? c->hq / 2 : 2;
  } else {
    c->hk = c->hk / 2 > 0 ? c->hk / 2 : 1;
    c->hq = c->hk * 2;
  }
}

static void set_varlen_lengths(tc_rng *r, fcase *c, const int64_t *lq,
                               const int64_t *lk) {
  c->cu_q[0] = c->cu_k[0] = 0;
  for (int64_t b = 0; b < c->nseq; b++) {
    c->cu_q[b + 1] = c->cu_q[b] + (int32_t)lq[b];
    c->cu_k[b + 1] = c->cu_k[b] + (int32_t)lk[b];
  }
  c->sq = c->cu_q[c->nseq];
  c->sk = c->cu_k[c->nseq];
  (void)r;
}

/* Draws every parameter of case index from its seed. */
static void case_generate(fcase *c, uint64_t run_seed, int index) {
  tc_rng rr, *r = &rr;
  memset(c, 0, sizeof *c);
  c->index = index;
  c->seed = tc_case_seed(run_seed, (uint64_t)index);
  rr.s = c->seed;

  c->varlen = tc_chance(r, 0.12);
  c->decode = !c->varlen && tc_chance(r, 0.05);
  c->huge = tc_chance(r, 0.06);
  pick_heads(r, c);
  c->d = head_dims[tc_below(r, N_HD)];
  c->dv = tc_chance(r, 0.25) ? head_dims[tc_below(r, N_HD)] : c->d;

  if (c->varlen) {
    int64_t lq[MAX_SEQS], lk[MAX_SEQS], tq = 0, tk = 0;
    c->batch = 1;
    c->nseq = tc_range(r, 1, MAX_SEQS);
    for (int64_t b = 0; b < c->nseq; b++) {
      lq[b] = tc_chance(r, 0.12) ? 0 : pick_len(r);
      lk[b] = tc_chance(r, 0.12) ? 0 : pick_len(r);
      tq += lq[b];
      tk += lk[b];
    }
    if (tq == 0)
      lq[tc_below(r, c->nseq)] = pick_len(r);
    if (tk == 0)
      lk[tc_below(r, c->nseq)] = pick_len(r);
    set_varlen_lengths(r, c, lq, lk);
    /* keep the work bounded: shorten the longest sequences */
    double cap = tc_chance(r, 0.1) ? 2e7 : 4e6;
    while (case_work(c) > cap) {
      if (c->hq > 1 && tc_chance(r, 0.3)) {
        shrink_heads(c);
        continue;
      }
      int64_t big = 0;
      for (int64_t b = 1; b < c->nseq; b++)
        if (lq[b] * lk[b] > lq[big] * lk[big])
          big = b;
      if (lq[big] >= lk[big])
        lq[big] = smaller_len(r, lq[big]);
      else
        lk[big] = smaller_len(r, lk[big]);
      set_varlen_lengths(r, c, lq, lk);
    }
    if (c->sq == 0 || c->sk == 0) { /* shrinking never empties all */
      lq[0] = lq[0] ? lq[0] : 1;
      lk[0] = lk[0] ? lk[0] : 1;
      set_varlen_lengths(r, c, lq, lk);
    }
  } else {
    c->batch = tc_range(r, 1, 3);
    c->nseq = c->batch;
    if (c->decode) {
      c->sq = tc_range(r, 1, 8);
      c->sk = tc_range(r, 300, 3000);
    } else {
      c->sq = pick_len(r);
      c->sk = pick_len(r);
    }
    double cap = tc_chance(r, 0.1) ? 2e7 : 4e6;
    while (case_work(c) > cap) {
      int64_t x = tc_below(r, 10);
      if (c->batch > 1 && x < 3) {
        c->batch--;
      } else if (c->hq > 1 && x < 5) {
        shrink_heads(c);
      } else if (x < 7 && (c->d > 16 || c->dv > 16)) {
        if (c->d >= c->dv)
          c->d = smaller_hd(r, c->d);
        else
          c->dv = smaller_hd(r, c->dv);
      } else if (c->sq >= c->sk && c->sq > 1) {
        c->sq = smaller_len(r, c->sq);
      } else if (c->sk > 1) {
        c->sk = smaller_len(r, c->sk);
      } else if (c->batch > 1) {
        c->batch--;
      } else {
        break;
      }
    }
    c->nseq = c->batch;
  }

  /* dtypes */
  {
    int64_t x = tc_below(r, 4);
    c->in_dt = x < 2    ? ATTN_DTYPE_F32
               : x == 2 ? ATTN_DTYPE_BF16
                        : ATTN_DTYPE_F16;
    x = tc_below(r, 10);
    c->out_dt = x < 7   ? ATTN_DTYPE_F32
                : x < 9 ? (tc_chance(r, 0.5) ? ATTN_DTYPE_BF16 : ATTN_DTYPE_F16)
                        : c->in_dt;
  }

  /* layouts */
  for (int t = 0; t < 4; t++) {
    c->order[t] = tc_chance(r, 0.4);
    c->padded[t] = tc_chance(r, 0.3);
    c->dstride[t] = tc_chance(r, 0.05) ? 2 : 1;
  }
  c->packed = !c->varlen && c->hq == c->hk && tc_chance(r, 0.05);
  if (c->packed) {
    c->sk = c->sq;
    c->dv = c->d;
  }
  c->kv_bcast = !c->varlen && !c->packed && c->batch > 1 && tc_chance(r, 0.06);

  /* scores */
  if (c->huge) {
    int64_t x = tc_below(r, 3);
    c->scale = x == 0 ? 0.0f : x == 1 ? 1.0f : 0.01f;
  } else if (tc_chance(r, 0.25)) {
    c->scale = (float)(tc_uniform(r, 0.05, 2.0) / sqrt((double)c->d));
    if (tc_chance(r, 0.15))
      c->scale = -c->scale;
  }
  if (tc_chance(r, 0.15))
    c->softcap = c->huge ? 50.0f : (float)tc_uniform(r, 0.5, 30.0);
  if (tc_chance(r, 0.15))
    c->alibi = 1 + (int)tc_below(r, 2);
  if (tc_chance(r, 0.2)) {
    c->bias = 1;
    for (int a = 0; a < 4; a++) {
      int64_t x = tc_below(r, 10);
      c->bias_mode[a] = x < 5 ? AX_FULL : x < 8 ? AX_ONE : AX_ZERO;
    }
    c->bias_neginf = tc_chance(r, 0.25);
  }

  /* masks */
  {
    int64_t x = tc_below(r, 20);
    c->causal = x < 9    ? ATTN_CAUSAL_NONE
                : x < 15 ? ATTN_CAUSAL_BOTTOM_RIGHT
                         : ATTN_CAUSAL_TOP_LEFT;
  }
  c->wl = c->wr = -1;
  if (tc_chance(r, 0.25)) {
    int64_t span = (c->varlen ? 300 : c->sk) + 2;
    int64_t x = tc_below(r, 5);
    c->wl = x == 0 ? -1 : x == 1 ? 0 : x == 2 ? 1 : tc_range(r, 0, span);
    x = tc_below(r, 5);
    c->wr = x == 0 ? -1 : x == 1 ? 0 : x == 2 ? 1 : tc_range(r, 0, span);
  }
  if (tc_chance(r, 0.15)) {
    c->mask = 1;
    for (int a = 0; a < 4; a++) {
      int64_t x = tc_below(r, 10);
      c->mask_mode[a] = x < 5 ? AX_FULL : x < 8 ? AX_ONE : AX_ZERO;
    }
    static const double ps[] = {0.05, 0.5, 0.9, 1.0};
    c->mask_p = ps[tc_below(r, 4)];
    c->mask_false_rows = tc_chance(r, 0.3);
  }
  if (tc_chance(r, 0.15)) {
    c->kvlens = 1;
    for (int64_t b = 0; b < c->nseq; b++) {
      int64_t n = c->varlen ? c->cu_k[b + 1] - c->cu_k[b] : c->sk;
      int64_t x = tc_below(r, 10);
      c->kv_lens[b] = (int32_t)(x < 2 ? 0 : x < 4 ? n : tc_range(r, 0, n));
    }
  }

  /* execution */
  {
    static const int th[] = {1, 2, 3, 7};
    c->threads = th[tc_below(r, 4)];
  }
  c->use_ctx = tc_chance(r, 0.2);
  c->with_lse = tc_chance(r, 0.85);
  c->workspace = tc_chance(r, 0.1);
}

static const char *dt_name(attn_dtype d) {
  switch (d) {
  case ATTN_DTYPE_F32:
    return "f32";
  case ATTN_DTYPE_BF16:
    return "bf16";
  case ATTN_DTYPE_F16:
    return "f16";
  case ATTN_DTYPE_BOOL:
    return "bool";
  }
  return "?";
}

static const char *mode_name(int m) {
  return m == AX_FULL ? "full" : m == AX_ONE ? "1" : "stride0";
}

static void case_describe(FILE *f, const fcase *c) {
  static const char *const causal[] = {"none", "bottom-right", "top-left"};
  fprintf(f, "  case %d (seed 0x%016llx)\n", c->index,
          (unsigned long long)c->seed);
  fprintf(f,
          "    batch %lld, heads_q %lld, heads_kv %lld, seq_q %lld, seq_k "
          "%lld, head_dim %lld, head_dim_v %lld\n",
          (long long)c->batch, (long long)c->hq, (long long)c->hk,
          (long long)c->sq, (long long)c->sk, (long long)c->d,
          (long long)c->dv);
  if (c->varlen) {
    fprintf(f, "    varlen %lld seqs: cu_q", (long long)c->nseq);
    for (int64_t b = 0; b <= c->nseq; b++)
      fprintf(f, " %d", c->cu_q[b]);
    fprintf(f, "; cu_k");
    for (int64_t b = 0; b <= c->nseq; b++)
      fprintf(f, " %d", c->cu_k[b]);
    fprintf(f, "\n");
  }
  if (c->kvlens) {
    fprintf(f, "    kv_lens");
    for (int64_t b = 0; b < c->nseq; b++)
      fprintf(f, " %d", c->kv_lens[b]);
    fprintf(f, "\n");
  }
  fprintf(f,
          "    dtype in %s out %s; layouts q/k/v/o %s%s%s %s%s%s %s%s%s "
          "%s%s%s%s%s%s\n",
          dt_name(c->in_dt), dt_name(c->out_dt), c->order[0] ? "bhsd" : "bshd",
          c->padded[0] ? "+pad" : "", c->dstride[0] > 1 ? "+dstride2" : "",
          c->order[1] ? "bhsd" : "bshd", c->padded[1] ? "+pad" : "",
          c->dstride[1] > 1 ? "+dstride2" : "", c->order[2] ? "bhsd" : "bshd",
          c->padded[2] ? "+pad" : "", c->dstride[2] > 1 ? "+dstride2" : "",
          c->order[3] ? "bhsd" : "bshd", c->padded[3] ? "+pad" : "",
          c->dstride[3] > 1 ? "+dstride2" : "", c->packed ? " packed-qkv" : "",
          c->kv_bcast ? " kv-batch-stride0" : "",
          c->huge ? " huge-inputs" : "");
  fprintf(f,
          "    scale %g, softcap %g, alibi %s, causal %s, window (%lld, "
          "%lld)\n",
          (double)c->scale, (double)c->softcap,
          c->alibi == 0   ? "no"
          : c->alibi == 1 ? "standard"
                          : "random",
          causal[c->causal], (long long)c->wl, (long long)c->wr);
  if (c->bias)
    fprintf(f, "    bias axes %s/%s/%s/%s%s\n", mode_name(c->bias_mode[0]),
            mode_name(c->bias_mode[1]), mode_name(c->bias_mode[2]),
            mode_name(c->bias_mode[3]), c->bias_neginf ? " with -inf" : "");
  if (c->mask)
    fprintf(f, "    mask axes %s/%s/%s/%s p(true) %.2f%s\n",
            mode_name(c->mask_mode[0]), mode_name(c->mask_mode[1]),
            mode_name(c->mask_mode[2]), mode_name(c->mask_mode[3]), c->mask_p,
            c->mask_false_rows ? " with all-false rows" : "");
  fprintf(f, "    threads %d%s%s%s\n", c->threads,
          c->use_ctx ? ", context" : "", c->with_lse ? ", lse" : ", no lse",
          c->workspace ? ", caller workspace" : "");
}

/* ---------------------------------------------------------------------- */
/* Buffers                                                                */
/* ---------------------------------------------------------------------- */

/* Strides for shape with the axes stored outer to inner in perm[], each
 * level padded by pad[k] elements; returns the elements spanned. */
static int64_t layout(attn_tensor *t, const int64_t shape[4], const int perm[4],
                      const int64_t pad[4], int64_t inner) {
  int64_t span = 1;
  t->stride[perm[3]] = inner;
  for (int k = 2; k >= 0; k--)
    t->stride[perm[k]] = t->stride[perm[k + 1]] * shape[perm[k + 1]] + pad[k];
  for (int a = 0; a < 4; a++) {
    t->shape[a] = shape[a];
    span += (shape[a] - 1) * t->stride[a];
  }
  return span;
}

static void random_pads(tc_rng *r, int padded, int64_t pad[4]) {
  for (int k = 0; k < 4; k++)
    pad[k] = padded && tc_chance(r, 0.7) ? tc_range(r, 1, 9) : 0;
}

static void store(attn_dtype dt, void *base, int64_t off, float x) {
  switch (dt) {
  case ATTN_DTYPE_F32:
    ((float *)base)[off] = x;
    break;
  case ATTN_DTYPE_BF16:
    ((uint16_t *)base)[off] = tc_f32_to_bf16(x);
    break;
  case ATTN_DTYPE_F16:
    ((uint16_t *)base)[off] = tc_f32_to_f16(x);
    break;
  case ATTN_DTYPE_BOOL:
    ((uint8_t *)base)[off] = (uint8_t)x;
    break;
  }
}

static void fill_nan(attn_dtype dt, void *base, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    store(dt, base, i, NAN);
}

static int64_t offset_of(const attn_tensor *t, int64_t i0, int64_t i1,
                         int64_t i2, int64_t i3) {
  const int64_t idx[4] = {i0, i1, i2, i3};
  int64_t off = 0;
  for (int a = 0; a < 4; a++)
    if (t->shape[a] != 1)
      off += idx[a] * t->stride[a];
  return off;
}

/* Size-1 axes may carry any stride: give some a wild one. */
static void wild_unit_strides(tc_rng *r, attn_tensor *t) {
  for (int a = 0; a < 4; a++)
    if (t->shape[a] == 1 && tc_chance(r, 0.2))
      t->stride[a] = tc_range(r, 0, 1 << 20);
}

typedef struct case_bufs {
  void *qkv; /* packed q/k/v, or q                                  */
  void *kmem, *vmem;
  void *omem;        /* o, with its gaps                                    */
  uint8_t *o_init;   /* o's bytes before the call                         */
  uint8_t *o_inview; /* 1 = byte belongs to an element of o's view       */
  size_t o_bytes;
  float *lse_mem; /* 8 guards + lse + 8 guards                           */
  int64_t n_lse;
  float *bias_mem;
  uint8_t *mask_mem;
  float *slopes;
  void *ws;
  int32_t cu_q[MAX_SEQS + 1], cu_k[MAX_SEQS + 1], kv_lens[MAX_SEQS];
} case_bufs;

static float draw(tc_rng *r, const fcase *c) {
  if (c->huge)
    return (float)tc_uniform(r, -100.0, 100.0);
  return (float)tc_normal(r);
}

/* Is key row j (tensor seq index) of tensor batch tb inside kv_lens? */
static int key_live(const fcase *c, int64_t tb, int64_t j) {
  if (!c->kvlens)
    return 1;
  if (!c->varlen)
    return j < c->kv_lens[tb];
  for (int64_t b = 0; b < c->nseq; b++)
    if (j >= c->cu_k[b] && j < c->cu_k[b + 1])
      return j - c->cu_k[b] < c->kv_lens[b];
  return 0;
}

static void fill_view(tc_rng *r, const fcase *c, const attn_tensor *t,
                      int is_kv, int is_v) {
  for (int64_t b = 0; b < t->shape[0]; b++)
    for (int64_t s = 0; s < t->shape[1]; s++) {
      if (is_kv && !key_live(c, b, s))
        continue; /* stays NaN: must never be read */
      for (int64_t h = 0; h < t->shape[2]; h++)
        for (int64_t x = 0; x < t->shape[3]; x++) {
          float val = draw(r, c);
          if (is_v && c->huge && tc_chance(r, 0.5))
            val = (float)tc_normal(r);
          store(t->dtype, t->data, offset_of(t, b, s, h, x), val);
        }
    }
}

static void make_qkvo_view(tc_rng *r, const fcase *c, int which, attn_tensor *t,
                           int64_t batch, int64_t seq, int64_t heads,
                           int64_t dim, int64_t *span) {
  static const int bshd[4] = {0, 1, 2, 3}, bhsd[4] = {0, 2, 1, 3};
  const int64_t shape[4] = {batch, seq, heads, dim};
  int64_t pad[4];
  random_pads(r, c->padded[which], pad);
  *span =
      layout(t, shape, c->order[which] ? bhsd : bshd, pad, c->dstride[which]);
  t->dtype = which == 3 ? c->out_dt : c->in_dt;
}

/* Bias or mask: [nseq, hq, sq_max, sk_max] with per-axis broadcasting. */
static int64_t make_bcast_view(tc_rng *r, const int mode[4],
                               const int64_t full[4], attn_tensor *t) {
  static const int order[4] = {0, 1, 2, 3};
  int64_t store_shape[4], pad[4], span;
  for (int a = 0; a < 4; a++)
    store_shape[a] = mode[a] == AX_FULL ? full[a] : 1;
  random_pads(r, tc_chance(r, 0.3), pad);
  span = layout(t, store_shape, order, pad, 1);
  for (int a = 0; a < 4; a++)
    if (mode[a] == AX_ZERO) {
      t->shape[a] = full[a];
      t->stride[a] = 0;
    }
  wild_unit_strides(r, t);
  return span;
}

static void case_bufs_free(case_bufs *m) {
  free(m->qkv), free(m->kmem), free(m->vmem), free(m->omem);
  free(m->o_init), free(m->o_inview), free(m->lse_mem);
  free(m->bias_mem), free(m->mask_mem), free(m->slopes), free(m->ws);
  memset(m, 0, sizeof *m);
}

/* Builds p and fills every buffer of case c. */
static void case_build(const fcase *c, attn_params *p, case_bufs *m) {
  tc_rng rr, *r = &rr;
  int64_t span_q, span_k, span_v, span_o;
  rr.s = c->seed ^ 0xB0F5ull;
  memset(m, 0, sizeof *m);
  attn_params_init(p);

  const size_t esz = attn_dtype_size(c->in_dt);
  if (c->packed) {
    /* [batch, seq, 3, heads, d] */
    const int64_t h = c->hq, d = c->d, s = c->sq, b = c->batch;
    const int64_t n = b * s * 3 * h * d;
    m->qkv = tc_alloc((size_t)n * esz);
    fill_nan(c->in_dt, m->qkv, n);
    p->q = attn_tensor_bshd(m->qkv, c->in_dt, b, s, h, d);
    p->q.stride[0] = s * 3 * h * d;
    p->q.stride[1] = 3 * h * d;
    p->k = p->q;
    p->v = p->q;
    p->k.data = (char *)m->qkv + (size_t)(h * d) * esz;
    p->v.data = (char *)m->qkv + (size_t)(2 * h * d) * esz;
  } else {
    make_qkvo_view(r, c, 0, &p->q, c->batch, c->sq, c->hq, c->d, &span_q);
    make_qkvo_view(r, c, 1, &p->k, c->batch, c->sk, c->hk, c->d, &span_k);
    make_qkvo_view(r, c, 2, &p->v, c->batch, c->sk, c->hk, c->dv, &span_v);
    if (c->kv_bcast) {
      span_k -= (c->batch - 1) * p->k.stride[0];
      span_v -= (c->batch - 1) * p->v.stride[0];
      p->k.stride[0] = p->v.stride[0] = 0;
    }
    wild_unit_strides(r, &p->q);
    wild_unit_strides(r, &p->k);
    wild_unit_strides(r, &p->v);
    m->qkv = tc_alloc((size_t)span_q * esz);
    m->kmem = tc_alloc((size_t)span_k * esz);
    m->vmem = tc_alloc((size_t)span_v * esz);
    fill_nan(c->in_dt, m->qkv, span_q);
    fill_nan(c->in_dt, m->kmem, span_k);
    fill_nan(c->in_dt, m->vmem, span_v);
    p->q.data = m->qkv;
    p->k.data = m->kmem;
    p->v.data = m->vmem;
  }
  fill_view(r, c, &p->q, 0, 0);
  fill_view(r, c, &p->k, 1, 0);
  fill_view(r, c, &p->v, 1, 1);

  /* o: gaps hold a sentinel that must survive the call */
  make_qkvo_view(r, c, 3, &p->o, c->batch, c->sq, c->hq, c->dv, &span_o);
  wild_unit_strides(r, &p->o);
  {
    const size_t osz = attn_dtype_size(c->out_dt);
    m->o_bytes = (size_t)span_o * osz;
    m->omem = tc_alloc(m->o_bytes);
    m->o_init = tc_alloc(m->o_bytes);
    m->o_inview = calloc(m->o_bytes, 1);
    for (size_t i = 0; i < m->o_bytes; i++) /* 0x7FA5: NaN in every dtype */
      ((uint8_t *)m->omem)[i] = (i & 1) ? 0x7F : 0xA5;
    memcpy(m->o_init, m->omem, m->o_bytes);
    p->o.data = m->omem;
    for (int64_t b = 0; b < c->batch; b++)
      for (int64_t s = 0; s < c->sq; s++)
        for (int64_t h = 0; h < c->hq; h++)
          for (int64_t x = 0; x < c->dv; x++)
            memset(m->o_inview + (size_t)offset_of(&p->o, b, s, h, x) * osz, 1,
                   osz);
  }
  m->n_lse = c->batch * c->hq * c->sq;
  m->lse_mem = tc_alloc((size_t)(m->n_lse + 16) * sizeof(float));
  for (int64_t i = 0; i < m->n_lse + 16; i++)
    m->lse_mem[i] = NAN;
  if (c->with_lse)
    p->lse = m->lse_mem + 8;

  /* sequences */
  if (c->varlen) {
    memcpy(m->cu_q, c->cu_q, sizeof m->cu_q);
    memcpy(m->cu_k, c->cu_k, sizeof m->cu_k);
    p->cu_seqlens_q = m->cu_q;
    p->cu_seqlens_k = m->cu_k;
    p->varlen_batch = c->nseq;
  }
  if (c->kvlens) {
    memcpy(m->kv_lens, c->kv_lens, sizeof m->kv_lens);
    p->kv_lens = m->kv_lens;
  }

  /* scores */
  p->scale = c->scale;
  p->softcap = c->softcap;
  if (c->alibi) {
    m->slopes = tc_alloc((size_t)c->hq * sizeof(float));
    for (int64_t h = 0; h < c->hq; h++)
      m->slopes[h] =
          c->alibi == 1
              ? (float)pow(2.0, -8.0 * (double)(h + 1) / (double)c->hq)
              : (float)tc_uniform(r, 0.0, 0.5);
    p->alibi_slopes = m->slopes;
  }
  int64_t sq_max = c->sq, sk_max = c->sk;
  if (c->varlen) {
    sq_max = sk_max = 0;
    for (int64_t b = 0; b < c->nseq; b++) {
      if (c->cu_q[b + 1] - c->cu_q[b] > sq_max)
        sq_max = c->cu_q[b + 1] - c->cu_q[b];
      if (c->cu_k[b + 1] - c->cu_k[b] > sk_max)
        sk_max = c->cu_k[b + 1] - c->cu_k[b];
    }
  }
  const int64_t full[4] = {c->nseq, c->hq, sq_max > 0 ? sq_max : 1,
                           sk_max > 0 ? sk_max : 1};
  if (c->bias) {
    int64_t span = make_bcast_view(r, c->bias_mode, full, &p->bias);
    double mag = tc_chance(r, 0.5) ? 1.0 : 5.0;
    p->bias.dtype = ATTN_DTYPE_F32;
    m->bias_mem = tc_alloc((size_t)span * sizeof(float));
    for (int64_t i = 0; i < span; i++)
      m->bias_mem[i] = NAN;
    p->bias.data = m->bias_mem;
    for (int64_t i0 = 0; i0 < p->bias.shape[0]; i0++)
      for (int64_t i1 = 0; i1 < p->bias.shape[1]; i1++)
        for (int64_t i2 = 0; i2 < p->bias.shape[2]; i2++) {
          int row_inf = c->bias_neginf && tc_chance(r, 0.1);
          for (int64_t i3 = 0; i3 < p->bias.shape[3]; i3++) {
            float x = (float)(mag * tc_normal(r));
            if (row_inf || (c->bias_neginf && tc_chance(r, 0.3)))
              x = -INFINITY;
            m->bias_mem[offset_of(&p->bias, i0, i1, i2, i3)] = x;
          }
        }
  }
  if (c->mask) {
    int64_t span = make_bcast_view(r, c->mask_mode, full, &p->mask);
    p->mask.dtype = ATTN_DTYPE_BOOL;
    m->mask_mem = tc_alloc((size_t)span);
    memset(m->mask_mem, 0, (size_t)span);
    p->mask.data = m->mask_mem;
    for (int64_t i0 = 0; i0 < p->mask.shape[0]; i0++)
      for (int64_t i1 = 0; i1 < p->mask.shape[1]; i1++)
        for (int64_t i2 = 0; i2 < p->mask.shape[2]; i2++) {
          int row_false = c->mask_false_rows && tc_chance(r, 0.2);
          for (int64_t i3 = 0; i3 < p->mask.shape[3]; i3++) {
            /* any nonzero byte means "may attend" */
            uint8_t x =
                tc_chance(r, c->mask_p)
                    ? (uint8_t)(tc_chance(r, 0.7) ? 1 : tc_range(r, 2, 255))
                    : 0;
            m->mask_mem[offset_of(&p->mask, i0, i1, i2, i3)] =
                row_false ? 0 : x;
          }
        }
  }
  p->causal = c->causal;
  p->window_left = c->wl;
  p->window_right = c->wr;
  p->num_threads = c->threads;
}

/* ---------------------------------------------------------------------- */
/* Running                                                                */
/* ---------------------------------------------------------------------- */
static void stat_add(int cat, const fcase *c, const oracle_cmp *cmp, int ok) {
  cat_stat *s = &stats[cat];
  s->runs++;
  s->fails += !ok;
  if (cmp->budget_o > s->worst_budget_o) {
    s->worst_budget_o = cmp->budget_o;
    s->worst_err_o = cmp->err_o;
    s->worst_naive_o = cmp->err_o_naive;
    s->worst_case = c->index;
  }
  if (cmp->budget_lse > s->worst_budget_lse)
    s->worst_budget_lse = cmp->budget_lse;
  if (cmp->err_lse > s->worst_err_lse)
    s->worst_err_lse = cmp->err_lse;
  if (cmp->cond_o > s->max_cond_o)
    s->max_cond_o = cmp->cond_o;
}

static void case_cats(const fcase *c, const attn_params *p,
                      const oracle_ref *ref, attn_isa isa,
                      int cats[CAT_COUNT]) {
  memset(cats, 0, sizeof(int) * CAT_COUNT);
  cats[CAT_ALL] = 1;
  cats[c->hk == c->hq ? CAT_MHA : c->hk == 1 ? CAT_MQA : CAT_GQA] = 1;
  cats[c->in_dt == ATTN_DTYPE_F32    ? CAT_IN_F32
       : c->in_dt == ATTN_DTYPE_BF16 ? CAT_IN_BF16
                                     : CAT_IN_F16] = 1;
  cats[c->out_dt == ATTN_DTYPE_F32    ? CAT_OUT_F32
       : c->out_dt == ATTN_DTYPE_BF16 ? CAT_OUT_BF16
                                      : CAT_OUT_F16] = 1;
  cats[CAT_OUT_F32_PLAIN] = c->out_dt == ATTN_DTYPE_F32 && !c->huge;
  cats[CAT_DV] = c->dv != c->d;
  cats[CAT_CAUSAL_BR] = c->causal == ATTN_CAUSAL_BOTTOM_RIGHT;
  cats[CAT_CAUSAL_TL] = c->causal == ATTN_CAUSAL_TOP_LEFT;
  cats[CAT_WINDOW] = c->wl >= 0 || c->wr >= 0;
  cats[CAT_SOFTCAP] = c->softcap > 0;
  cats[CAT_ALIBI] = c->alibi != 0;
  cats[CAT_BIAS] = c->bias;
  cats[CAT_BIAS_NEGINF] = c->bias && c->bias_neginf;
  cats[CAT_MASK] = c->mask;
  cats[CAT_KV_LENS] = c->kvlens;
  cats[CAT_VARLEN] = c->varlen;
  if (c->varlen)
    for (int64_t b = 0; b < c->nseq; b++)
      if (c->cu_q[b + 1] == c->cu_q[b] || c->cu_k[b + 1] == c->cu_k[b])
        cats[CAT_VARLEN_EMPTY] = 1;
  cats[CAT_EMPTY_ROWS] = ref->n_empty > 0;
  cats[CAT_HUGE] = c->huge;
  for (int t = 0; t < 4; t++) {
    if (c->padded[t] || c->dstride[t] > 1)
      cats[CAT_STRIDED] = 1;
    if (c->order[t])
      cats[CAT_BHSD] = 1;
  }
  cats[CAT_PACKED_QKV] = c->packed;
  cats[CAT_KV_BCAST] = c->kv_bcast;
  cats[CAT_DECODE] = c->decode;
  cats[CAT_SCALE] = p->scale != 0.0f;
  cats[CAT_WORKSPACE] = c->workspace;
  cats[CAT_CONTEXT] = c->use_ctx;
  cats[c->threads == 1   ? CAT_T1
       : c->threads == 2 ? CAT_T2
       : c->threads == 3 ? CAT_T3
                         : CAT_T7] = 1;
  cats[isa == ATTN_ISA_GENERIC ? CAT_ISA_GENERIC
       : isa == ATTN_ISA_AVX2  ? CAT_ISA_AVX2
                               : CAT_ISA_AVX512] = 1;
}

/* Bytes outside o's view and the LSE guards must be untouched. */
static int check_untouched(const case_bufs *m, char *why, size_t why_size) {
  for (size_t i = 0; i < m->o_bytes; i++)
    if (!m->o_inview[i] && ((const uint8_t *)m->omem)[i] != m->o_init[i]) {
      snprintf(why, why_size,
               "byte %zu of o's buffer, outside the view, "
               "was written",
               i);
      return 0;
    }
  for (int64_t i = 0; i < 8; i++)
    if (!isnan(m->lse_mem[i]) || !isnan(m->lse_mem[8 + m->n_lse + i])) {
      snprintf(why, why_size, "a guard element around lse was written");
      return 0;
    }
  return 1;
}

typedef struct run_totals {
  long passed, failed, printed;
  double worst_fail_budget;
  int worst_fail_case;
  attn_isa worst_fail_isa;
  double t_oracle, t_kernel;
} run_totals;

static attn_context *shared_ctx;

static void run_case(const fcase *c, const attn_isa *isas, int n_isas,
                     run_totals *tot, int verbose) {
  attn_params p;
  case_bufs m;
  oracle_ref ref;
  oracle_naive nv;
  char errmsg[256];
  double t0 = tc_now();

  case_build(c, &p, &m);
  p.error_message = errmsg;
  p.error_message_size = sizeof errmsg;
  if (verbose)
    case_describe(stdout, c);
  if (oracle_forward(&p, &ref) != 0 || oracle_naive_f32(&p, &nv) != 0) {
    fprintf(stderr, "test_forward: oracle out of memory\n");
    exit(2);
  }
  tot->t_oracle += tc_now() - t0;

  for (int k = 0; k < n_isas; k++) {
    oracle_cmp cmp;
    int cats[CAT_COUNT];
    char why[320] = "";
    attn_status st;
    int ok;

    memcpy(m.omem, m.o_init, m.o_bytes);
    for (int64_t i = 0; i < m.n_lse + 16; i++)
      m.lse_mem[i] = NAN;
    p.isa = isas[k];
    p.workspace = NULL;
    p.workspace_size = 0;
    errmsg[0] = '\0';
    if (c->workspace) {
      size_t bytes = 0;
      st = attn_forward_workspace_size(c->use_ctx ? shared_ctx : NULL, &p,
                                       &bytes);
      if (st != ATTN_OK) {
        snprintf(why, sizeof why, "attn_forward_workspace_size: %s (%s)",
                 attn_strerror(st), errmsg);
      } else {
        free(m.ws);
        m.ws = tc_alloc(bytes + 64);
        p.workspace = (void *)(((uintptr_t)m.ws + 63) & ~(uintptr_t)63);
        p.workspace_size = bytes;
      }
    }
    t0 = tc_now();
    st = why[0] ? ATTN_OK : attn_forward(c->use_ctx ? shared_ctx : NULL, &p);
    tot->t_kernel += tc_now() - t0;
    memset(&cmp, 0, sizeof cmp);
    if (!why[0] && st != ATTN_OK)
      snprintf(why, sizeof why, "attn_forward returned %d (%s): %s", (int)st,
               attn_strerror(st), errmsg);
    if (!why[0]) {
      oracle_compare(&p, &ref, &nv, &cmp);
      if (!cmp.ok)
        snprintf(why, sizeof why, "%s", cmp.problem);
      else
        check_untouched(&m, why, sizeof why);
    }
    ok = why[0] == '\0';
    case_cats(c, &p, &ref, isas[k], cats);
    for (int cat = 0; cat < CAT_COUNT; cat++)
      if (cats[cat])
        stat_add(cat, c, &cmp, ok);
    if (ok) {
      tot->passed++;
    } else {
      double b = cmp.budget_o > cmp.budget_lse ? cmp.budget_o : cmp.budget_lse;
      if (!(b > 1.0))
        b = 1e30; /* status, NaN, masking or overwrite: worst of all */
      tot->failed++;
      if (tot->worst_fail_budget < b) {
        tot->worst_fail_budget = b;
        tot->worst_fail_case = c->index;
        tot->worst_fail_isa = isas[k];
      }
      if (tot->printed++ < 12) {
        printf("FAIL case %d isa %s: %s\n", c->index, attn_isa_name(isas[k]),
               why);
        printf("    o err %.3g (naive %.3g, floor %.3g, cond %.3g); lse err "
               "%.3g (naive %.3g, floor %.3g); empty rows %lld of %lld\n",
               cmp.err_o, cmp.err_o_naive, cmp.floor_o, cmp.cond_o, cmp.err_lse,
               cmp.err_lse_naive, cmp.floor_lse, (long long)ref.n_empty,
               (long long)ref.n_rows);
        case_describe(stdout, c);
      }
    }
    if (verbose)
      printf("    %s %s: o err %.3g naive %.3g floor %.3g cond %.3g | lse "
             "err %.3g naive %.3g\n",
             ok ? "ok  " : "FAIL", attn_isa_name(isas[k]), cmp.err_o,
             cmp.err_o_naive, cmp.floor_o, cmp.cond_o, cmp.err_lse,
             cmp.err_lse_naive);
  }
  oracle_ref_free(&ref);
  oracle_naive_free(&nv);
  case_bufs_free(&m);
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* keep output if a sanitizer aborts */
  const unsigned long long seed = tc_env_ull("ATTN_TEST_SEED", DEFAULT_SEED);
  long long n_cases = tc_env_ll("ATTN_TEST_CASES", DEFAULT_CASES);
  const long long only = tc_env_ll("ATTN_TEST_ONLY", -1);
  const int verbose = (int)tc_env_ll("ATTN_TEST_VERBOSE", 0);
  static const attn_isa all_isas[3] = {ATTN_ISA_GENERIC, ATTN_ISA_AVX2,
                                       ATTN_ISA_AVX512};
  attn_isa isas[3];
  int n_isas = 0;
  run_totals tot;
  double t_start = tc_now();

  if (argc > 1)
    n_cases = strtoll(argv[1], NULL, 0);
  if (n_cases < 1)
    n_cases = 1;
  memset(&tot, 0, sizeof tot);
  printf("test_forward: seed 0x%llx (ATTN_TEST_SEED), %lld cases "
         "(ATTN_TEST_CASES)\n",
         seed, n_cases);
  for (int k = 0; k < 3; k++) {
    if (attn_isa_supported(all_isas[k]))
      isas[n_isas++] = all_isas[k];
    else
      printf("isa %s: not supported on this CPU, skipped\n",
             attn_isa_name(all_isas[k]));
  }
  printf("isas tested:");
  for (int k = 0; k < n_isas; k++)
    printf(" %s", attn_isa_name(isas[k]));
  printf("\n");
  {
    attn_context_options opt;
    attn_context_options_init(&opt);
    opt.num_threads = 3;
    if (attn_context_create(&shared_ctx, &opt) != ATTN_OK) {
      printf("attn_context_create failed\n0 passed, 1 failed\n");
      return 1;
    }
  }

  for (long long i = 0; i < n_cases; i++) {
    fcase c;
    if (only >= 0 && i != only)
      continue;
    case_generate(&c, seed, (int)i);
    run_case(&c, isas, n_isas, &tot, verbose || only >= 0);
  }
  attn_context_free(shared_ctx);

  printf("\n%-16s %6s %5s  %-9s %-9s %-7s %-9s  %-9s %-7s\n", "category",
         "runs", "fail", "err", "naive", "budget", "max cond", "lse err",
         "lse bdgt");
  for (int cat = 0; cat < CAT_COUNT; cat++) {
    const cat_stat *s = &stats[cat];
    if (!s->runs)
      continue;
    printf("%-16s %6ld %5ld  %-9.3g %-9.3g %-7.3f %-9.3g  %-9.3g %-7.3f\n",
           cat_names[cat], s->runs, s->fails, s->worst_err_o, s->worst_naive_o,
           s->worst_budget_o, s->max_cond_o, s->worst_err_lse,
           s->worst_budget_lse);
  }
  printf("err, naive: max |o - oracle| of the kernel and of the naive f32 "
         "reference in the\nrun with the largest budget = err / (2 * naive + "
         "max(floor, cond)); a run\npasses at budget <= 1. max cond: the "
         "largest rounding-sensitivity allowance\n(oracle.h).\n");
  if (tot.failed) {
    fcase c;
    case_generate(&c, seed, tot.worst_fail_case);
    printf("\nworst failing run: isa %s\n", attn_isa_name(tot.worst_fail_isa));
    case_describe(stdout, &c);
    printf("  reproduce: ATTN_TEST_SEED=0x%llx ATTN_TEST_ONLY=%d %s\n", seed,
           tot.worst_fail_case, argv[0]);
  }
  printf("time: %.1f s total (oracle %.1f s, attn_forward %.1f s)\n",
         tc_now() - t_start, tot.t_oracle, tot.t_kernel);
  printf("%ld passed, %ld failed\n", tot.passed, tot.failed);
  return tot.failed ? 1 : 0;
}
