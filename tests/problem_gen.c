/*
 * The random generator of tp_problem (problem.h) and the description of a
 * problem. Every case draws shapes, layouts, dtypes and options from its own
 * seed; a tp_profile bounds the sizes so that the oracles stay fast.
 */
#include "problem.h"

#include <math.h>
#include <string.h>

const tp_profile tp_profile_forward = {"forward", 300,  300,  0.0, 4e6, 2e7,
                                       8,         0.06, 0.05, 0.5, 0};
const tp_profile tp_profile_backward = {"backward", 70,  150,  0.15, 6e5, 3e6,
                                        6,          0.0, 0.03, 0.0,  1};

int tp_new_options(void) { return tc_env_ll("ATTN_TEST_NEW_OPTIONS", 1) != 0; }

int tp_compiled_masks(void) { return tp_mask_linked && tp_new_options(); }

/* Tile edges (multiples of ATTN_TILE_Q = 48 and ATTN_TILE_K = 64, +-1),
 * primes, 1 and a few powers of two. */
#define TQ ATTN_TILE_Q
#define TK ATTN_TILE_K
/* clang-format off */
static const int64_t edge_lens[] = {
    1, 2, 3, 5, 7, 11, 13, 17, 23, 31, 37, 53, 61, 67, 101, 131, 257,
    6, 8, 9, 15, 16, 24, 32, 33, 255, 256, 300,
    TQ - 1, TQ, TQ + 1, 2 * TQ - 1, 2 * TQ, 2 * TQ + 1, 3 * TQ - 1, 3 * TQ,
    3 * TQ + 1,
    TK - 1, TK, TK + 1, 2 * TK - 1, 2 * TK, 2 * TK + 1, 3 * TK - 1, 3 * TK,
    3 * TK + 1};
/* clang-format on */
#define N_EDGE ((int)(sizeof edge_lens / sizeof edge_lens[0]))

static const int64_t head_dims[] = {1,  2,  3,  7,  8,   16,  31, 32,
                                    59, 64, 80, 96, 111, 128, 256};
#define N_HD ((int)(sizeof head_dims / sizeof head_dims[0]))

/* A length in 1..max, an edge length more often than not. */
static int64_t pick_len(tc_rng *r, int64_t max) {
  if (tc_chance(r, 0.6)) {
    int64_t c[N_EDGE], n = 0;
    for (int i = 0; i < N_EDGE; i++)
      if (edge_lens[i] <= max)
        c[n++] = edge_lens[i];
    return c[tc_below(r, n)];
  }
  return tc_range(r, 1, max);
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

double tp_work(const tp_problem *c) {
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

static void pick_heads(tc_rng *r, tp_problem *c, int64_t max_heads) {
  int kind = (int)tc_below(r, 3); /* MHA, GQA, MQA */
  c->hq = tc_range(r, 1, max_heads);
  if (kind == 0) {
    c->hk = c->hq;
  } else if (kind == 2) {
    c->hk = 1;
  } else {
    int64_t divs[16], n = 0;
    for (int64_t x = 1; x <= c->hq; x++)
      if (c->hq % x == 0)
        divs[n++] = x;
    c->hk = divs[tc_below(r, n)];
  }
}

/* Fewer heads, keeping the kind: MHA stays MHA, MQA stays MQA (down to 2
 * query heads), GQA keeps a group of 2. */
static void shrink_heads(tp_problem *c) {
  if (c->hk == c->hq) {
    c->hq = c->hk = c->hq / 2 > 0 ? c->hq / 2 : 1;
  } else if (c->hk == 1) {
    c->hq = c->hq / 2 > 1 ? c->hq / 2 : 2;
  } else {
    c->hk = c->hk / 2 > 0 ? c->hk / 2 : 1;
    c->hq = c->hk * 2;
  }
}

static void set_varlen_lengths(tp_problem *c, const int64_t *lq,
                               const int64_t *lk) {
  c->cu_q[0] = c->cu_k[0] = 0;
  for (int64_t b = 0; b < c->nseq; b++) {
    c->cu_q[b + 1] = c->cu_q[b] + (int32_t)lq[b];
    c->cu_k[b + 1] = c->cu_k[b] + (int32_t)lk[b];
  }
  c->sq = c->cu_q[c->nseq];
  c->sk = c->cu_k[c->nseq];
}

static void gen_varlen(tc_rng *r, const tp_profile *prof, int64_t maxlen,
                       tp_problem *c) {
  int64_t lq[TP_MAX_SEQS], lk[TP_MAX_SEQS], tq = 0, tk = 0;
  c->batch = 1;
  c->nseq = tc_range(r, 1, TP_MAX_SEQS);
  for (int64_t b = 0; b < c->nseq; b++) {
    lq[b] = tc_chance(r, 0.12) ? 0 : pick_len(r, maxlen);
    lk[b] = tc_chance(r, 0.12) ? 0 : pick_len(r, maxlen);
    tq += lq[b];
    tk += lk[b];
  }
  if (tq == 0)
    lq[tc_below(r, c->nseq)] = pick_len(r, maxlen);
  if (tk == 0)
    lk[tc_below(r, c->nseq)] = pick_len(r, maxlen);
  set_varlen_lengths(c, lq, lk);
  /* keep the work bounded: shorten the longest sequences */
  const double cap = tc_chance(r, 0.1) ? prof->work_big : prof->work;
  while (tp_work(c) > cap) {
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
    set_varlen_lengths(c, lq, lk);
  }
  if (c->sq == 0 || c->sk == 0) { /* shrinking never empties all */
    lq[0] = lq[0] ? lq[0] : 1;
    lk[0] = lk[0] ? lk[0] : 1;
    set_varlen_lengths(c, lq, lk);
  }
}

static void gen_dense(tc_rng *r, const tp_profile *prof, int64_t maxlen,
                      tp_problem *c) {
  c->batch = tc_range(r, 1, 3);
  if (c->decode) {
    c->sq = tc_range(r, 1, 8);
    c->sk = tc_range(r, 300, 3000);
  } else {
    c->sq = pick_len(r, maxlen);
    c->sk = pick_len(r, maxlen);
  }
  const double cap = tc_chance(r, 0.1) ? prof->work_big : prof->work;
  while (tp_work(c) > cap) {
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

static attn_dtype pick_dt(tc_rng *r, double p_f32) {
  if (tc_chance(r, p_f32))
    return ATTN_DTYPE_F32;
  return tc_chance(r, 0.5) ? ATTN_DTYPE_BF16 : ATTN_DTYPE_F16;
}

static void gen_storage(tc_rng *r, tp_problem *c) {
  int64_t x = tc_below(r, 4);
  c->in_dt = x < 2 ? ATTN_DTYPE_F32 : x == 2 ? ATTN_DTYPE_BF16 : ATTN_DTYPE_F16;
  x = tc_below(r, 10);
  c->out_dt = x < 7   ? ATTN_DTYPE_F32
              : x < 9 ? (tc_chance(r, 0.5) ? ATTN_DTYPE_BF16 : ATTN_DTYPE_F16)
                      : c->in_dt;
  for (int t = 0; t < 3; t++)
    c->g_dt[t] = pick_dt(r, 0.7);
  for (int t = 0; t < TP_NT; t++) {
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
  c->wild_strides = 1;
  /* Mixed storage: V and dO in another dtype than Q and K (bf16 Q and K
   * with f32 V and dO made the backward recompute S unlike the forward:
   * fuzz/RESULTS.md, finding 1). From a stream of its own, so that the
   * cases drawn before it was added keep their other fields. */
  tc_rng rm = {c->seed ^ 0x6d69786564ull};
  if (!c->packed && tc_chance(&rm, 0.2)) {
    static const attn_dtype dts[3] = {ATTN_DTYPE_F32, ATTN_DTYPE_BF16,
                                      ATTN_DTYPE_F16};
    const int in = c->in_dt == ATTN_DTYPE_F32    ? 0
                   : c->in_dt == ATTN_DTYPE_BF16 ? 1
                                                 : 2;
    c->mixed = 1;
    c->vd_dt = dts[(in + 1 + (int)tc_below(&rm, 2)) % 3];
  }
}

static void gen_axes(tc_rng *r, int mode[4]) {
  for (int a = 0; a < 4; a++) {
    int64_t x = tc_below(r, 10);
    mode[a] = x < 5 ? TP_AX_FULL : x < 8 ? TP_AX_ONE : TP_AX_ZERO;
  }
}

static void gen_scores(tc_rng *r, const tp_profile *prof, tp_problem *c) {
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
  c->bias_mag = 1.0;
  if (tc_chance(r, 0.2)) {
    c->bias = 1;
    gen_axes(r, c->bias_mode);
    c->bias_neginf = tc_chance(r, 0.25);
    c->bias_padded = tc_chance(r, 0.3);
    c->bias_mag = tc_chance(r, prof->p_bias_mag5) ? 5.0 : 1.0;
  }
}

static void gen_masks(tc_rng *r, tp_problem *c) {
  int64_t x = tc_below(r, 20);
  c->causal = x < 9    ? ATTN_CAUSAL_NONE
              : x < 15 ? ATTN_CAUSAL_BOTTOM_RIGHT
                       : ATTN_CAUSAL_TOP_LEFT;
  c->wl = c->wr = -1;
  if (tc_chance(r, 0.25)) {
    int64_t span = (c->varlen ? 300 : c->sk) + 2;
    x = tc_below(r, 5);
    c->wl = x == 0 ? -1 : x == 1 ? 0 : x == 2 ? 1 : tc_range(r, 0, span);
    x = tc_below(r, 5);
    c->wr = x == 0 ? -1 : x == 1 ? 0 : x == 2 ? 1 : tc_range(r, 0, span);
  }
  if (tc_chance(r, 0.15)) {
    static const double ps[] = {0.05, 0.5, 0.9, 1.0};
    c->mask = 1;
    gen_axes(r, c->mask_mode);
    c->mask_p = ps[tc_below(r, 4)];
    c->mask_false_rows = tc_chance(r, 0.3);
    c->mask_padded = tc_chance(r, 0.3);
  }
  if (tc_chance(r, 0.15)) {
    c->kvlens = 1;
    for (int64_t b = 0; b < c->nseq; b++) {
      int64_t n = c->varlen ? c->cu_k[b + 1] - c->cu_k[b] : c->sk;
      x = tc_below(r, 10);
      c->kv_lens[b] = (int32_t)(x < 2 ? 0 : x < 4 ? n : tc_range(r, 0, n));
    }
  }
}

/* A small position offset: 0, +-1, +-a tile, or up to +-70. */
static int64_t small_offset(tc_rng *r) {
  const int64_t sign = tc_chance(r, 0.5) ? -1 : 1;
  switch (tc_below(r, 8)) {
  case 0:
    return 0;
  case 1:
    return sign;
  case 2:
    return sign * ATTN_TILE_K;
  case 3:
    return sign * ATTN_TILE_Q;
  default:
    return tc_range(r, -70, 70);
  }
}

/* The 0.2 options: prefix-LM, positions, compiled masks. Always drawn (so
 * that ATTN_TEST_NEW_OPTIONS=0 leaves every other draw as it was), then
 * dropped when switched off. */
static void gen_new_options(tc_rng *r, tp_problem *c) {
  int64_t prefix = -1, span = c->sk;
  if (c->varlen) {
    span = 0;
    for (int64_t b = 0; b < c->nseq; b++)
      if (c->cu_k[b + 1] - c->cu_k[b] > span)
        span = c->cu_k[b + 1] - c->cu_k[b];
  }
  if (tc_chance(r, 0.15)) {
    int64_t x = tc_below(r, 6);
    prefix = x == 0   ? 0
             : x == 1 ? 1
             : x == 2 ? span
             : x == 3 ? span + tc_range(r, 1, 5)
             : x == 4 ? ATTN_TILE_K + tc_range(r, -1, 1)
                      : tc_range(r, 0, span);
  }
  int64_t qo = 0, ko = 0, qs[TP_MAX_SEQS] = {0}, ks[TP_MAX_SEQS] = {0};
  if (tc_chance(r, 0.2))
    qo = small_offset(r), ko = small_offset(r);
  const int per_seq = tc_chance(r, 0.12);
  for (int64_t b = 0; b < TP_MAX_SEQS; b++)
    qs[b] = small_offset(r), ks[b] = small_offset(r);
  const int compiled = tc_chance(r, 0.25);
  if (!tp_new_options())
    return;
  c->prefix_len = prefix;
  if (prefix >= 0) /* prefix with causal is an error: status tests */
    c->causal = ATTN_CAUSAL_NONE;
  c->q_pos_offset = qo;
  c->k_pos_offset = ko;
  c->pos_per_seq = per_seq;
  if (per_seq) {
    memcpy(c->q_pos_offsets, qs, sizeof qs);
    memcpy(c->k_pos_offsets, ks, sizeof ks);
  }
  c->compiled = compiled && tp_compiled_masks();
}

/* The T5 table (0.3): drawn last, so every earlier draw of a case is as
 * it was before; dropped with ATTN_TEST_NEW_OPTIONS=0. Bucket counts from
 * 1 (one bucket) through odd ones to the usual 32 and beyond; maximum
 * distances below, at and above the exact range, and past the lengths. */
static void gen_t5(tc_rng *r, const tp_profile *prof, tp_problem *c) {
  static const int64_t nbs[] = {1, 2, 3, 4, 5, 7, 8, 16, 31, 32, 33, 64, 129};
  static const int64_t mds[] = {1, 2, 3, 8, 16, 20, 64, 100, 128, 1000};
  const int on = tc_chance(r, 0.15);
  const int bidir = tc_chance(r, 0.5);
  int64_t nb = nbs[tc_below(r, (int64_t)(sizeof nbs / sizeof nbs[0]))];
  const int64_t md =
      tc_chance(r, 0.2) ? tc_range(r, 1, 400) : mds[tc_below(r, 10)];
  const int neginf = tc_chance(r, 0.15);
  const double mag = tc_chance(r, 0.2) ? 4.0 : 1.0;
  const int drel = tc_chance(r, 0.8);
  if (!on || !tp_new_options())
    return;
  if (bidir && nb < 2)
    nb = 2;
  c->t5 = 1;
  c->t5_buckets = nb;
  c->t5_max_distance = md;
  c->t5_bidirectional = bidir;
  c->t5_neginf = neginf;
  c->t5_mag = mag;
  c->drel = prof->grads && drel;
}

/* Attention sinks (0.4): drawn after T5, so earlier draws are as they
 * were; dropped with ATTN_TEST_NEW_OPTIONS=0. Logits around the scores'
 * scale, sometimes large (the sink dominates), sometimes -inf per head. */
static void gen_sinks(tc_rng *r, const tp_profile *prof, tp_problem *c) {
  const int on = tc_chance(r, 0.2);
  const int neginf = tc_chance(r, 0.2);
  const double mag = tc_chance(r, 0.2) ? 8.0 : 1.0;
  const int dsinks = tc_chance(r, 0.8);
  if (!on || !tp_new_options())
    return;
  c->sinks = 1;
  c->sinks_neginf = neginf;
  c->sinks_mag = mag;
  c->dsinks = prof->grads && dsinks;
}

static void gen_exec(tc_rng *r, const tp_profile *prof, tp_problem *c) {
  static const int th[] = {1, 2, 3, 7};
  c->threads = th[tc_below(r, 4)];
  c->use_ctx = tc_chance(r, 0.2);
  c->with_lse = tc_chance(r, 0.85);
  c->workspace = tc_chance(r, 0.1);
  if (!prof->grads)
    return;
  c->grads = 1;
  c->with_lse = 1; /* the backward's input */
  c->dbias = c->bias && tc_chance(r, 0.7);
  c->determinism = tc_chance(r, 0.1);
  if (c->varlen) { /* rows past the last sequence */
    c->tail_q = tc_chance(r, 0.3) ? tc_range(r, 1, 5) : 0;
    c->tail_k = tc_chance(r, 0.3) ? tc_range(r, 1, 5) : 0;
    c->sq += c->tail_q;
    c->sk += c->tail_k;
  }
}

void tp_generate(tp_problem *c, const tp_profile *prof, uint64_t run_seed,
                 int index) {
  tc_rng rr, *r = &rr;
  memset(c, 0, sizeof *c);
  c->index = index;
  c->seed = tc_case_seed(run_seed, (uint64_t)index);
  rr.s = c->seed;
  c->prefix_len = -1;
  const int64_t maxlen =
      tc_chance(r, prof->p_big) ? prof->max_len_big : prof->max_len;
  c->varlen = tc_chance(r, 0.12);
  c->decode = !c->varlen && tc_chance(r, prof->p_decode);
  c->huge = tc_chance(r, prof->p_huge);
  pick_heads(r, c, prof->max_heads);
  c->d = head_dims[tc_below(r, N_HD)];
  c->dv = tc_chance(r, 0.25) ? head_dims[tc_below(r, N_HD)] : c->d;
  if (c->varlen)
    gen_varlen(r, prof, maxlen, c);
  else
    gen_dense(r, prof, maxlen, c);
  gen_storage(r, c);
  gen_scores(r, prof, c);
  gen_masks(r, c);
  gen_new_options(r, c);
  gen_exec(r, prof, c);
  gen_t5(r, prof, c);
  gen_sinks(r, prof, c);
}

/* ---------------------------------------------------------------------- */
/* Hand-picked problems                                                   */
/* ---------------------------------------------------------------------- */
void tp_problem_init(tp_problem *c, int64_t batch, int64_t hq, int64_t hk,
                     int64_t sq, int64_t sk, int64_t d, int64_t dv) {
  memset(c, 0, sizeof *c);
  c->index = -1;
  c->seed = 0x5EEDull;
  c->batch = c->nseq = batch;
  c->hq = hq, c->hk = hk, c->sq = sq, c->sk = sk, c->d = d, c->dv = dv;
  c->in_dt = c->out_dt = ATTN_DTYPE_F32;
  for (int t = 0; t < 3; t++)
    c->g_dt[t] = ATTN_DTYPE_F32;
  for (int t = 0; t < TP_NT; t++)
    c->dstride[t] = 1;
  c->bias_mag = 1.0;
  c->mask_p = 1.0;
  c->wl = c->wr = -1;
  c->prefix_len = -1;
  c->threads = 1;
  c->with_lse = 1;
}

void tp_problem_varlen(tp_problem *c, int64_t nseq, const int64_t *lq,
                       const int64_t *lk) {
  c->varlen = 1;
  c->batch = 1;
  c->nseq = nseq;
  set_varlen_lengths(c, lq, lk);
  c->sq += c->tail_q;
  c->sk += c->tail_k;
}

/* ---------------------------------------------------------------------- */
/* Description                                                            */
/* ---------------------------------------------------------------------- */
const char *tp_dtype_name(attn_dtype d) {
  switch (d) {
  case ATTN_DTYPE_F32:
    return "f32";
  case ATTN_DTYPE_BF16:
    return "bf16";
  case ATTN_DTYPE_F16:
    return "f16";
  case ATTN_DTYPE_BOOL:
    return "bool";
  case ATTN_DTYPE_Q8_0:
    return "q8_0";
  case ATTN_DTYPE_Q4_0:
    return "q4_0";
  }
  return "?";
}

static const char *mode_name(int m) {
  return m == TP_AX_FULL ? "full" : m == TP_AX_ONE ? "1" : "stride0";
}

static void describe_lists(FILE *f, const tp_problem *c) {
  if (c->varlen) {
    fprintf(f, "    varlen %lld seqs: cu_q", (long long)c->nseq);
    for (int64_t b = 0; b <= c->nseq; b++)
      fprintf(f, " %d", c->cu_q[b]);
    fprintf(f, "; cu_k");
    for (int64_t b = 0; b <= c->nseq; b++)
      fprintf(f, " %d", c->cu_k[b]);
    fprintf(f, "; tail rows q %lld k %lld\n", (long long)c->tail_q,
            (long long)c->tail_k);
  }
  if (c->kvlens) {
    fprintf(f, "    kv_lens");
    for (int64_t b = 0; b < c->nseq; b++)
      fprintf(f, " %d", c->kv_lens[b]);
    fprintf(f, "\n");
  }
  if (c->prefix_len >= 0 || c->q_pos_offset || c->k_pos_offset ||
      c->pos_per_seq || c->compiled) {
    fprintf(f, "    prefix_len %lld, q_pos_offset %lld, k_pos_offset %lld%s",
            (long long)c->prefix_len, (long long)c->q_pos_offset,
            (long long)c->k_pos_offset, c->compiled ? ", compiled mask" : "");
    if (c->pos_per_seq)
      for (int64_t b = 0; b < c->nseq; b++)
        fprintf(f, "%s(%lld, %lld)", b ? " " : "; per sequence (q, k) ",
                (long long)c->q_pos_offsets[b], (long long)c->k_pos_offsets[b]);
    fprintf(f, "\n");
  }
}

static void describe_layouts(FILE *f, const tp_problem *c) {
  static const char *const tn[TP_NT] = {"q",    "k",  "v",  "o",
                                        "dout", "dq", "dk", "dv"};
  fprintf(f, "    dtype in %s out %s", tp_dtype_name(c->in_dt),
          tp_dtype_name(c->out_dt));
  if (c->mixed)
    fprintf(f, " (v, dout %s)", tp_dtype_name(c->vd_dt));
  if (c->grads)
    fprintf(f, " dq/dk/dv %s/%s/%s", tp_dtype_name(c->g_dt[0]),
            tp_dtype_name(c->g_dt[1]), tp_dtype_name(c->g_dt[2]));
  fprintf(f, "; layouts");
  for (int t = 0; t < (c->grads ? TP_NT : 4); t++)
    fprintf(f, " %s:%s%s%s", tn[t], c->order[t] ? "bhsd" : "bshd",
            c->padded[t] ? "+pad" : "", c->dstride[t] > 1 ? "+dstride2" : "");
  fprintf(f, "%s%s%s\n", c->packed ? " packed-qkv" : "",
          c->kv_bcast ? " kv-batch-stride0" : "",
          c->huge ? " huge-inputs" : "");
}

void tp_describe(FILE *f, const tp_problem *c) {
  static const char *const causal[] = {"none", "bottom-right", "top-left"};
  fprintf(f, "  case %d (seed 0x%016llx)\n", c->index,
          (unsigned long long)c->seed);
  fprintf(f,
          "    batch %lld, heads_q %lld, heads_kv %lld, seq_q %lld, seq_k "
          "%lld, head_dim %lld, head_dim_v %lld\n",
          (long long)c->batch, (long long)c->hq, (long long)c->hk,
          (long long)c->sq, (long long)c->sk, (long long)c->d,
          (long long)c->dv);
  describe_lists(f, c);
  describe_layouts(f, c);
  fprintf(f,
          "    scale %g, softcap %g, alibi %s, causal %s, window (%lld, "
          "%lld)\n",
          (double)c->scale, (double)c->softcap,
          c->alibi == 0   ? "no"
          : c->alibi == 1 ? "standard"
                          : "random",
          causal[c->causal], (long long)c->wl, (long long)c->wr);
  if (c->bias)
    fprintf(f, "    bias axes %s/%s/%s/%s%s%s%s\n", mode_name(c->bias_mode[0]),
            mode_name(c->bias_mode[1]), mode_name(c->bias_mode[2]),
            mode_name(c->bias_mode[3]), c->bias_neginf ? " with -inf" : "",
            c->bias_mag > 1.0 ? " x5" : "", c->dbias ? ", dbias" : "");
  if (c->t5)
    fprintf(f, "    T5 table: %lld buckets, max distance %lld, %s%s%s%s\n",
            (long long)c->t5_buckets, (long long)c->t5_max_distance,
            c->t5_bidirectional ? "bidirectional" : "unidirectional",
            c->t5_neginf ? ", some -inf" : "", c->t5_mag > 1.0 ? ", x4" : "",
            c->drel ? ", drel_bias" : "");
  if (c->sinks)
    fprintf(f, "  sinks (x%g%s%s)\n", c->sinks_mag,
            c->sinks_neginf ? ", some -inf" : "", c->dsinks ? ", dsinks" : "");
  if (c->mask)
    fprintf(f, "    mask axes %s/%s/%s/%s p(true) %.2f%s\n",
            mode_name(c->mask_mode[0]), mode_name(c->mask_mode[1]),
            mode_name(c->mask_mode[2]), mode_name(c->mask_mode[3]), c->mask_p,
            c->mask_false_rows ? " with all-false rows" : "");
  fprintf(f, "    threads %d%s%s%s%s\n", c->threads,
          c->use_ctx ? ", context" : "", c->with_lse ? ", lse" : ", no lse",
          c->workspace ? ", caller workspace" : "",
          c->determinism ? ", determinism" : "");
}
