/*
 * test_sparse_split.c - Child et al.'s strided and fixed patterns through
 * the split path (src/kernels/sparse_split.c: a near and a far dense call
 * merged by LSE), forward and backward, against the double-precision
 * oracles and against the tile path (taken with an identity score_mod),
 * with and without a caller workspace, over random shapes: lengths 1, pattern
 * periods +-1, tile edges, primes, seq_q != seq_k both ways, batch > 1, GQA,
 * every storage dtype, softcap, sinks, every causal alignment, packed
 * sequences, kv_lens, position offsets, windows, ALiBi, prefix, bias (and
 * dbias), mask tensors and compiled masks; and bitwise the same result for
 * every thread count. Environment: ATTN_TEST_CASES (150), ATTN_TEST_SEED,
 * ATTN_TEST_ONLY=<case>.
 */
#include "attn.h"
#include "oracle_bwd.h"
#include "oracle_fwd.h"
#include "problem.h"
#include "test_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

long n_pass, n_fail;

static const int64_t lens[] = {1,  2,   3,   7,   31,  63,  64,  65,
                               97, 127, 128, 129, 191, 211, 256, 300};
static const int64_t periods[] = {2, 3, 5, 8, 16, 31, 64, 80};

static int64_t pick(tc_rng *r, const int64_t *v, size_t n) {
  return v[tc_below(r, (uint64_t)n)];
}

static attn_dtype pick_dt(tc_rng *r) {
  static const attn_dtype dts[3] = {ATTN_DTYPE_F32, ATTN_DTYPE_BF16,
                                    ATTN_DTYPE_F16};
  return dts[tc_below(r, 3)];
}

static void *copy(const void *x, size_t n) {
  void *y = tc_alloc(n);
  memcpy(y, x, n);
  return y;
}

/* A length the fixed pattern keeps aligned (q and k positions of row 0
 * multiples of L) most of the time, so that it takes the split path. */
static int64_t aligned_q(tc_rng *r, int fixed, int64_t L, int64_t sk) {
  if (fixed && tc_chance(r, 0.85)) {
    const int64_t sq = sk - L * tc_range(r, 0, 2);
    return sq >= 1 ? sq : sk;
  }
  return tc_chance(r, 0.5) ? sk : pick(r, lens, sizeof lens / sizeof lens[0]);
}

/* Broadcast modes of a bias's or mask's axes (full, size 1, stride 0). */
static void draw_axes(tc_rng *r, int mode[4]) {
  for (int a = 0; a < 4; a++) {
    const uint64_t x = tc_below(r, 10);
    mode[a] = x < 5 ? TP_AX_FULL : x < 8 ? TP_AX_ONE : TP_AX_ZERO;
  }
}

/* Packed sequences, kv_lens, position offsets, a window, ALiBi, prefix, a
 * bias and a mask tensor: the options the split path takes (the fixed pattern
 * not with a window or ALiBi: those cases check the tile path against the same
 * oracle). */
static void draw_options(tc_rng *r, tp_problem *c, int fixed, int64_t L) {
  const int64_t step = fixed ? L : 1; /* offsets that keep alignment */
  if (tc_chance(r, 0.25)) {
    int64_t lq[3], lk[3];
    const int64_t ns = tc_range(r, 1, 3);
    for (int64_t b = 0; b < ns; b++) {
      lk[b] = tc_chance(r, 0.5) ? L * tc_range(r, 1, 3) + tc_range(r, -1, 1)
                                : pick(r, lens, sizeof lens / sizeof lens[0]);
      if (lk[b] < 1)
        lk[b] = 1;
      lq[b] = aligned_q(r, fixed, L, lk[b]);
    }
    tp_problem_varlen(c, ns, lq, lk);
  }
  if (tc_chance(r, 0.3)) {
    c->kvlens = 1;
    for (int64_t b = 0; b < c->nseq; b++) {
      const int64_t nq = c->varlen ? c->cu_q[b + 1] - c->cu_q[b] : c->sq;
      const int64_t nk = c->varlen ? c->cu_k[b + 1] - c->cu_k[b] : c->sk;
      int64_t kl = tc_range(r, 0, nk);
      if (fixed && nk >= nq && tc_chance(r, 0.8))
        kl = nq + L * tc_range(r, 0, (nk - nq) / L);
      c->kv_lens[b] = (int32_t)kl;
    }
  }
  if (tc_chance(r, 0.3)) {
    c->q_pos_offset = step * tc_range(r, -3, 3);
    c->k_pos_offset = step * tc_range(r, -3, 3);
    if (tc_chance(r, 0.5)) {
      c->pos_per_seq = 1;
      for (int64_t b = 0; b < c->nseq; b++) {
        c->q_pos_offsets[b] = step * tc_range(r, -2, 2);
        c->k_pos_offsets[b] = step * tc_range(r, -2, 2);
      }
    }
  }
  if (tc_chance(r, fixed ? 0.1 : 0.35)) {
    c->wl = tc_range(r, 0, 4 * L);
    c->wr = tc_range(r, -1, 2);
  }
  if (tc_chance(r, fixed ? 0.1 : 0.35))
    c->alibi = (int)tc_range(r, 1, 2);
  if (tc_chance(r, 0.25)) { /* gathered onto the far rows; dbias back */
    c->bias = 1;
    draw_axes(r, c->bias_mode);
    c->bias_neginf = tc_chance(r, 0.25);
    c->bias_padded = tc_chance(r, 0.3);
    c->dbias = tc_chance(r, 0.7);
  }
  if (tc_chance(r, 0.2)) {
    static const double ps[] = {0.5, 0.9, 1.0};
    c->mask = 1;
    draw_axes(r, c->mask_mode);
    c->mask_p = ps[tc_below(r, 3)];
    c->mask_false_rows = tc_chance(r, 0.3);
    c->mask_padded = tc_chance(r, 0.3);
  }
}

static float identity(float s, int64_t b, int64_t h, int64_t i, int64_t j,
                      void *user) {
  (void)b, (void)h, (void)i, (void)j, (void)user;
  return s;
}

static float one(float s, int64_t b, int64_t h, int64_t i, int64_t j,
                 void *user) {
  (void)s, (void)b, (void)h, (void)i, (void)j, (void)user;
  return 1.0f;
}

/* The call again with a caller workspace of exactly the size asked: the
 * same bits as without (o1 and l1, or the gradients g1); with half of it,
 * ATTN_ERR_WORKSPACE_TOO_SMALL. */
static void with_workspace(const tp_problem *c, attn_params *p, tp_bufs *m,
                           int bwd, const void *o1, const float *l1,
                           void *const g1[3], int index, const char *desc) {
  size_t ws = 0;
  attn_status st = bwd ? attn_backward_workspace_size(NULL, p, &ws)
                       : attn_forward_workspace_size(NULL, p, &ws);
  CHECK(st == ATTN_OK, "case %d %s: workspace size: %s | %s", index,
        bwd ? "bwd" : "fwd", attn_strerror(st), desc);
  if (st != ATTN_OK)
    return;
  void *w = tc_alloc(ws ? ws : 1);
  for (int half = 0; half < 2; half++) {
    p->workspace = w;
    p->workspace_size = half ? ws / 2 : ws;
    if (bwd) {
      tp_reset_backward(m);
      st = attn_backward(NULL, p);
    } else {
      tp_reset_forward(c, p, m);
      p->lse = m->lse_mem + 8;
      st = attn_forward(NULL, p);
    }
    if (half) {
      CHECK(ws < 256 || st == ATTN_ERR_WORKSPACE_TOO_SMALL,
            "case %d %s: half the workspace (%zu of %zu bytes): %s | %s", index,
            bwd ? "bwd" : "fwd", ws / 2, ws, attn_strerror(st), desc);
      continue;
    }
    int same = st == ATTN_OK;
    if (same && bwd)
      for (int t = 0; t < 3; t++)
        same &= !memcmp(g1[t], m->mem[TP_DQ + t], m->bytes[TP_DQ + t]);
    if (same && !bwd)
      same = !memcmp(o1, m->mem[TP_O], m->bytes[TP_O]) &&
             !memcmp(l1, m->lse_mem, (size_t)(m->n_lse + 16) * sizeof(float));
    CHECK(same, "case %d %s with a workspace of %zu bytes: %s, %s | %s", index,
          bwd ? "bwd" : "fwd", ws, attn_strerror(st),
          st == ATTN_OK ? "other bits" : "failed", desc);
  }
  p->workspace = NULL;
  p->workspace_size = 0;
  free(w);
  if (!bwd) { /* the forward's outputs again, for the backward */
    memcpy(m->mem[TP_O], o1, m->bytes[TP_O]);
    memcpy(m->lse_mem, l1, (size_t)(m->n_lse + 16) * sizeof(float));
  }
}

static void one_case(uint64_t seed, int index) {
  tc_rng r = {tc_case_seed(seed, (uint64_t)index)};
  static const int64_t ratios[4][2] = {{1, 1}, {4, 2}, {6, 3}, {3, 1}};
  const int hr = (int)tc_below(&r, 4);
  const int fixed = tc_chance(&r, 0.5);
  const int64_t L = pick(&r, periods, sizeof periods / sizeof periods[0]);
  int64_t sq = pick(&r, lens, sizeof lens / sizeof lens[0]);
  int64_t sk = tc_chance(&r, 0.5) ? sq : pick(&r, lens, sizeof lens / 8);
  if (tc_chance(&r, 0.3)) /* lengths at the period's edges */
    sk = L * tc_range(&r, 1, 4) + tc_range(&r, -1, 1);
  if (fixed && tc_chance(&r, 0.85)) { /* aligned: the split path */
    sq = sk - L * tc_range(&r, 0, 2);
    if (sq < 1)
      sq = sk;
  }
  const int64_t d = tc_chance(&r, 0.5) ? 32 : 17,
                dv = tc_chance(&r, 0.7) ? d : 24;
  tp_problem c;
  tp_problem_init(&c, tc_range(&r, 1, 3), ratios[hr][0], ratios[hr][1], sq, sk,
                  d, dv);
  draw_options(&r, &c, fixed, L);
  c.seed = tc_next(&r);
  c.grads = 1;
  c.in_dt = pick_dt(&r);
  c.out_dt = pick_dt(&r);
  for (int t = 0; t < 3; t++)
    c.g_dt[t] = tc_chance(&r, 0.7) ? ATTN_DTYPE_F32 : pick_dt(&r);
  c.threads = (int)tc_range(&r, 1, 3);
  c.causal = tc_chance(&r, 0.5) ? ATTN_CAUSAL_NONE : ATTN_CAUSAL_BOTTOM_RIGHT;
  if (c.sq == c.sk && !c.varlen && !c.kvlens && tc_chance(&r, 0.3))
    c.causal = ATTN_CAUSAL_TOP_LEFT;
  if (c.causal == ATTN_CAUSAL_NONE && tc_chance(&r, 0.15))
    c.prefix_len = tc_range(&r, 0, c.sk);
  if (tc_chance(&r, 0.3))
    c.softcap = 5.0f;
  if (tc_chance(&r, 0.3)) {
    c.sinks = 1;
    c.dsinks = 1;
    c.sinks_mag = 2.0;
  }
  attn_params p;
  tp_bufs m;
  tp_build(&c, &p, &m);
  char err[320] = "";
  p.error_message = err;
  p.error_message_size = sizeof err;
  p.lse = m.lse_mem + 8;
  p.sparse_kind = fixed ? ATTN_SPARSE_FIXED : ATTN_SPARSE_STRIDED;
  p.sparse_l = L;
  p.sparse_c = tc_range(&r, 1, L);
  attn_mask *cm = NULL; /* reused across layers: the split path too */
  const int compiled = tc_chance(&r, 0.2);
  if (compiled) {
    attn_status sc = attn_mask_compile(&p, &cm);
    CHECK(sc == ATTN_OK, "case %d: attn_mask_compile: %s %s", index,
          attn_strerror(sc), err);
    p.compiled_mask = cm;
  }
  char desc[400];
  snprintf(desc, sizeof desc,
           "%s L=%lld C=%lld b%lld h%lld/%lld sq %lld sk %lld d %lld/%lld "
           "%s->%s causal %d softcap %g sinks %d threads %d varlen %d(%lld) "
           "kv_lens %d offsets %lld/%lld per-seq %d window %lld,%lld alibi %d "
           "prefix %lld compiled %d bias %d (dbias %d) mask %d",
           fixed ? "fixed" : "strided", (long long)L, (long long)p.sparse_c,
           (long long)c.batch, (long long)c.hq, (long long)c.hk,
           (long long)c.sq, (long long)c.sk, (long long)d, (long long)dv,
           tp_dtype_name(c.in_dt), tp_dtype_name(c.out_dt), (int)c.causal,
           (double)c.softcap, c.sinks, c.threads, c.varlen, (long long)c.nseq,
           c.kvlens, (long long)c.q_pos_offset, (long long)c.k_pos_offset,
           c.pos_per_seq, (long long)c.wl, (long long)c.wr, c.alibi,
           (long long)c.prefix_len, compiled, c.bias, c.dbias, c.mask);

  /* forward: oracle */
  oracle_ref ref;
  oracle_naive nv;
  if (oracle_forward(&p, &ref) || oracle_naive_f32(&p, &nv)) {
    fprintf(stderr, "test_sparse_split: oracle out of memory\n");
    exit(2);
  }
  attn_status st = attn_forward(NULL, &p);
  oracle_cmp cmp;
  if (st == ATTN_OK)
    oracle_compare(&p, &ref, &nv, &cmp);
  CHECK(st == ATTN_OK && cmp.ok, "case %d fwd: %s %s | %s", index,
        attn_strerror(st), st == ATTN_OK ? cmp.problem : err, desc);
  /* the tile path (a score_mod keeps any call off the split path) on the
   * same problem, against the same oracle */
  if (st == ATTN_OK) {
    void *o0 = copy(m.mem[TP_O], m.bytes[TP_O]);
    float *l0 = copy(m.lse_mem, (size_t)(m.n_lse + 16) * sizeof(float));
    p.score_mod = identity;
    p.score_mod_grad = one;
    tp_reset_forward(&c, &p, &m);
    p.lse = m.lse_mem + 8;
    attn_status s2 = attn_forward(NULL, &p);
    oracle_cmp c2;
    if (s2 == ATTN_OK)
      oracle_compare(&p, &ref, &nv, &c2);
    CHECK(s2 == ATTN_OK && c2.ok, "case %d fwd, tile path: %s %s | %s", index,
          attn_strerror(s2), s2 == ATTN_OK ? c2.problem : err, desc);
    p.score_mod = p.score_mod_grad = NULL;
    memcpy(m.mem[TP_O], o0, m.bytes[TP_O]); /* the split path's, for the */
    memcpy(m.lse_mem, l0, (size_t)(m.n_lse + 16) * sizeof(float)); /* bwd */
    free(o0);
    free(l0);
  }
  oracle_ref_free(&ref);
  oracle_naive_free(&nv);
  if (st != ATTN_OK)
    goto out;
  void *o1 = copy(m.mem[TP_O], m.bytes[TP_O]);
  float *l1 = copy(m.lse_mem, (size_t)(m.n_lse + 16) * sizeof(float));

  /* the same bits for other thread counts */
  for (int t = 1; t <= 3; t++) {
    p.num_threads = t;
    tp_reset_forward(&c, &p, &m);
    p.lse = m.lse_mem + 8;
    st = attn_forward(NULL, &p);
    CHECK(st == ATTN_OK && !memcmp(o1, m.mem[TP_O], m.bytes[TP_O]) &&
              !memcmp(l1, m.lse_mem, (size_t)(m.n_lse + 16) * sizeof(float)),
          "case %d: forward with %d threads differs | %s", index, t, desc);
  }
  p.num_threads = c.threads;
  with_workspace(&c, &p, &m, 0, o1, l1, NULL, index, desc);

  /* backward: oracle, then thread counts */
  oracle_grads gref, gnv;
  if (oracle_backward(&p, &gref) || oracle_backward_f32(&p, &gnv)) {
    fprintf(stderr, "test_sparse_split: oracle out of memory\n");
    exit(2);
  }
  tp_reset_backward(&m);
  st = attn_backward(NULL, &p);
  oracle_grad_cmp gc;
  if (st == ATTN_OK)
    oracle_grads_compare(&p, &gref, &gnv, &gc);
  CHECK(st == ATTN_OK && gc.ok, "case %d bwd: %s %s | %s", index,
        attn_strerror(st), st == ATTN_OK ? gc.problem : err, desc);
  oracle_grads_free(&gref);
  oracle_grads_free(&gnv);
  void *g1[3];
  for (int t = 0; t < 3; t++)
    g1[t] = copy(m.mem[TP_DQ + t], m.bytes[TP_DQ + t]);
  p.num_threads = c.threads == 1 ? 2 : 1;
  tp_reset_backward(&m);
  st = attn_backward(NULL, &p);
  int same = st == ATTN_OK;
  for (int t = 0; t < 3; t++)
    same &= !memcmp(g1[t], m.mem[TP_DQ + t], m.bytes[TP_DQ + t]);
  CHECK(same, "case %d: backward with %d threads differs | %s", index,
        p.num_threads, desc);
  p.num_threads = c.threads;
  with_workspace(&c, &p, &m, 1, NULL, NULL, g1, index, desc);

  for (int t = 0; t < 3; t++)
    free(g1[t]);
  free(o1);
  free(l1);
out:
  attn_mask_free(cm);
  tp_bufs_free(&m);
}

/* A period far above the sequence is causal attention (and must not size
 * anything by L). */
static void huge_period(void) {
  tp_problem c;
  tp_problem_init(&c, 1, 2, 1, 70, 70, 16, 16);
  c.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  attn_params p;
  tp_bufs m;
  tp_build(&c, &p, &m);
  p.lse = m.lse_mem + 8;
  attn_status st = attn_forward(NULL, &p);
  void *o1 = copy(m.mem[TP_O], m.bytes[TP_O]);
  for (int kind = ATTN_SPARSE_STRIDED; kind <= ATTN_SPARSE_FIXED; kind++) {
    p.sparse_kind = kind;
    p.sparse_l = (int64_t)1 << 40;
    p.sparse_c = kind == ATTN_SPARSE_FIXED ? 3 : 0;
    tp_reset_forward(&c, &p, &m);
    p.lse = m.lse_mem + 8;
    attn_status s2 = attn_forward(NULL, &p);
    CHECK(st == ATTN_OK && s2 == ATTN_OK &&
              !memcmp(o1, m.mem[TP_O], m.bytes[TP_O]),
          "%s with L = 2^40: %s, not causal attention",
          kind == ATTN_SPARSE_STRIDED ? "strided" : "fixed", attn_strerror(s2));
  }
  free(o1);
  tp_bufs_free(&m);
}

int main(void) {
  const uint64_t seed = tc_env_ull("ATTN_TEST_SEED", 0xC41D5EEDull);
  const long long n_cases = tc_env_ll("ATTN_TEST_CASES", 150);
  const double t0 = tc_now();
  printf("test_sparse_split: seed 0x%llx, %lld cases\n",
         (unsigned long long)seed, n_cases);
  const long long only = tc_env_ll("ATTN_TEST_ONLY", -1);
  for (long long i = 0; i < n_cases; i++)
    if (only < 0 || i == only)
      one_case(seed, (int)i);
  huge_period();
  printf("time %.1f s\n", tc_now() - t0);
  printf("%ld passed, %ld failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
