/*
 * test_sparse_split.c - Child et al.'s strided and fixed patterns through
 * the split path (src/kernels/sparse_split.c: a near and a far dense call
 * merged by LSE), forward and backward, against the double-precision
 * oracles and against the tile path (taken when the caller gives a
 * workspace), over random shapes: lengths 1, pattern periods +-1, tile
 * edges, primes, seq_q != seq_k both ways, batch > 1, GQA, every storage
 * dtype, softcap, sinks, every causal alignment; and bitwise the same
 * result for every thread count.
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
  c.seed = tc_next(&r);
  c.grads = 1;
  c.in_dt = pick_dt(&r);
  c.out_dt = pick_dt(&r);
  for (int t = 0; t < 3; t++)
    c.g_dt[t] = tc_chance(&r, 0.7) ? ATTN_DTYPE_F32 : pick_dt(&r);
  c.threads = (int)tc_range(&r, 1, 3);
  c.causal = tc_chance(&r, 0.5) ? ATTN_CAUSAL_NONE : ATTN_CAUSAL_BOTTOM_RIGHT;
  if (sq == sk && tc_chance(&r, 0.3))
    c.causal = ATTN_CAUSAL_TOP_LEFT;
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
  char desc[200];
  snprintf(desc, sizeof desc,
           "%s L=%lld C=%lld b%lld h%lld/%lld sq %lld sk %lld d %lld/%lld "
           "%s->%s causal %d softcap %g sinks %d threads %d",
           fixed ? "fixed" : "strided", (long long)L, (long long)p.sparse_c,
           (long long)c.batch, (long long)c.hq, (long long)c.hk, (long long)sq,
           (long long)sk, (long long)d, (long long)dv, tp_dtype_name(c.in_dt),
           tp_dtype_name(c.out_dt), (int)c.causal, (double)c.softcap, c.sinks,
           c.threads);

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
  /* the tile path (taken when the caller gives a workspace) on the same
   * problem, against the same oracle */
  if (st == ATTN_OK) {
    void *o0 = copy(m.mem[TP_O], m.bytes[TP_O]);
    float *l0 = copy(m.lse_mem, (size_t)(m.n_lse + 16) * sizeof(float));
    size_t ws = 0;
    attn_status s2 = attn_forward_workspace_size(NULL, &p, &ws);
    void *wmem = s2 == ATTN_OK ? malloc(ws ? ws : 1) : NULL;
    if (wmem) {
      p.workspace = wmem;
      p.workspace_size = ws;
      tp_reset_forward(&c, &p, &m);
      p.lse = m.lse_mem + 8;
      s2 = attn_forward(NULL, &p);
      oracle_cmp c2;
      if (s2 == ATTN_OK)
        oracle_compare(&p, &ref, &nv, &c2);
      CHECK(s2 == ATTN_OK && c2.ok, "case %d fwd, tile path: %s %s | %s", index,
            attn_strerror(s2), s2 == ATTN_OK ? c2.problem : err, desc);
      p.workspace = NULL;
      p.workspace_size = 0;
      free(wmem);
    }
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

  for (int t = 0; t < 3; t++)
    free(g1[t]);
  free(o1);
  free(l1);
out:
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
  for (long long i = 0; i < n_cases; i++)
    one_case(seed, (int)i);
  huge_period();
  printf("time %.1f s\n", tc_now() - t0);
  printf("%ld passed, %ld failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
