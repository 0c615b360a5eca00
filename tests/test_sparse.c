/*
 * Sparse patterns (attn/sparse.h, 0.5): Longformer's global tokens, Child
 * et al.'s strided and fixed patterns, block-sparse layouts, mask_mod (with
 * and without a tile classifier) and score_mod, forward and backward.
 *
 *   1. Random cases: a random tp_problem of the backward profile (every
 *      option of problem.h: GQA, cross lengths, causal both ways, windows,
 *      prefix-LM, position offsets, kv_lens, packed sequences, softcap,
 *      ALiBi, T5, bias + dbias, mask tensor, sinks, dropout, every dtype
 *      and layout, edge lengths), with random sparse patterns laid over it
 *      (global indices at the ends included, block sizes that do not divide
 *      the lengths, patterns that leave rows empty). attn_forward and
 *      attn_backward on every ISA against the double-precision oracles
 *      (oracle_mask.c knows the patterns), with their pass rules
 *      (oracle_fwd.h, oracle_bwd.h: FlashAttention's, never widened here);
 *      some cases also: bitwise identical results for 1, 2, 3 and 7
 *      threads, and through attn_mask_compile bitwise the uncompiled call,
 *      and a compiled mask refused for another pattern.
 *   2. score_mod against equivalent calls of the oracle: s + B[i][j]
 *      against a bias tensor B, c tanh(s / c) against softcap c, -inf
 *      against mask_mod; forward and backward.
 *   3. Skipped work: attn_mask_tile_counts for a block layout with 10% of
 *      its blocks live has ~10% of the tiles non-empty; Longformer's tiles
 *      grow linearly in the length; a strided pattern with L = 1 and a
 *      mask_mod of all ones are FULL everywhere causal allows.
 *   4. Bad input: every check of attn_validate_sparse with its message.
 *
 * Environment: ATTN_TEST_CASES (default 400), ATTN_TEST_SEED,
 * ATTN_TEST_ONLY=<case>. The last line is exactly "N passed, N failed".
 */
#include "attn.h"
#include "oracle_bwd.h"
#include "oracle_fwd.h"
#include "problem.h"
#include "test_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long n_pass, n_fail;

#define ATTN_MAX_(a, b) ((a) > (b) ? (a) : (b))
#define ATTN_MIN_(a, b) ((a) < (b) ? (a) : (b))

/* ---------------------------------------------------------------------- */
/* mask_mod and its tile classifier                                       */
/* ---------------------------------------------------------------------- */
typedef struct modfn {
  uint64_t seed;
  int mode;    /* 0 hashed noise, 1 band |i - j - s| <= w, 2 documents i/w */
  int by_head; /* s = h in mode 1, h enters the hash in mode 0            */
  int64_t w;
  int dens; /* mode 0: per mille                                         */
} modfn;

static uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

static int mask_fn(int64_t b, int64_t h, int64_t i, int64_t j, void *user) {
  const modfn *m = (const modfn *)user;
  const int64_t hh = m->by_head ? h : 0;
  switch (m->mode) {
  case 0: {
    uint64_t x = mix(m->seed ^ (uint64_t)b * 0x9E37u);
    x = mix(x ^ (uint64_t)hh * 0x51ull ^ (uint64_t)i * 0x10001ull);
    x = mix(x ^ (uint64_t)j);
    return (int)(x % 1000) < m->dens;
  }
  case 1: {
    const int64_t d = i - j - hh;
    return d >= -m->w && d <= m->w;
  }
  default:
    return i / m->w == j / m->w;
  }
}

static int tile_fn(int64_t b, int64_t h, int64_t i0, int64_t i1, int64_t j0,
                   int64_t j1, void *user) {
  const modfn *m = (const modfn *)user;
  (void)b;
  const int64_t hh = m->by_head ? h : 0;
  if (m->mode == 1) {
    const int64_t dmin = i0 - (j1 - 1) - hh, dmax = (i1 - 1) - j0 - hh;
    if (dmax < -m->w || dmin > m->w)
      return ATTN_MOD_TILE_EMPTY;
    if (dmin >= -m->w && dmax <= m->w)
      return ATTN_MOD_TILE_FULL;
    return ATTN_MOD_TILE_PARTIAL;
  }
  if (m->mode == 2) {
    const int64_t a0 = i0 / m->w, a1 = (i1 - 1) / m->w;
    const int64_t c0 = j0 / m->w, c1 = (j1 - 1) / m->w;
    if (a1 < c0 || c1 < a0)
      return ATTN_MOD_TILE_EMPTY;
    if (a0 == a1 && c0 == c1 && a0 == c0)
      return ATTN_MOD_TILE_FULL;
  }
  return ATTN_MOD_TILE_PARTIAL;
}

/* score_mod examples */
typedef struct tabmod {
  const float *t; /* [sq][sk] */
  int64_t sk;
  float cap;
  modfn mm;
} tabmod;

static float add_table(float s, int64_t b, int64_t h, int64_t i, int64_t j,
                       void *u) {
  const tabmod *t = (const tabmod *)u;
  (void)b, (void)h;
  return s + t->t[i * t->sk + j];
}
static float one_grad(float s, int64_t b, int64_t h, int64_t i, int64_t j,
                      void *u) {
  (void)s, (void)b, (void)h, (void)i, (void)j, (void)u;
  return 1.0f;
}
static float tanh_mod(float s, int64_t b, int64_t h, int64_t i, int64_t j,
                      void *u) {
  const tabmod *t = (const tabmod *)u;
  (void)b, (void)h, (void)i, (void)j;
  return t->cap * tanhf(s / t->cap);
}
static float tanh_grad(float s, int64_t b, int64_t h, int64_t i, int64_t j,
                       void *u) {
  const tabmod *t = (const tabmod *)u;
  (void)b, (void)h, (void)i, (void)j;
  const float th = tanhf(s / t->cap);
  return 1.0f - th * th;
}
static float neginf_mod(float s, int64_t b, int64_t h, int64_t i, int64_t j,
                        void *u) {
  const tabmod *t = (const tabmod *)u;
  return mask_fn(b, h, i, j, (void *)&t->mm) ? s : -INFINITY;
}
static float neginf_grad1(float s, int64_t b, int64_t h, int64_t i, int64_t j,
                          void *u) {
  const tabmod *t = (const tabmod *)u;
  (void)s;
  return mask_fn(b, h, i, j, (void *)&t->mm) ? 1.0f : NAN;
}

/* ---------------------------------------------------------------------- */
/* Random patterns over a built problem                                   */
/* ---------------------------------------------------------------------- */
typedef struct pattern {
  int32_t global[16];
  uint8_t *bmask;
  modfn mm;
  char desc[200];
} pattern;

static void seq_max(const attn_params *p, int64_t *sq, int64_t *sk) {
  if (!p->cu_seqlens_q) {
    *sq = p->q.shape[1];
    *sk = p->k.shape[1];
    return;
  }
  *sq = *sk = 0;
  for (int64_t b = 0; b < p->varlen_batch; b++) {
    *sq = ATTN_MAX_(*sq, p->cu_seqlens_q[b + 1] - p->cu_seqlens_q[b]);
    *sk = ATTN_MAX_(*sk, p->cu_seqlens_k[b + 1] - p->cu_seqlens_k[b]);
  }
}

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

static void overlay(tc_rng *r, attn_params *p, pattern *pt) {
  int64_t sq, sk;
  seq_max(p, &sq, &sk);
  const int64_t nseq = p->cu_seqlens_q ? p->varlen_batch : p->q.shape[0];
  const int64_t hq = p->q.shape[2];
  int g = tc_chance(r, 0.45), ch = tc_chance(r, 0.35);
  int bl = tc_chance(r, 0.4), mm = tc_chance(r, 0.3);
  if (!g && !ch && !bl && !mm)
    g = 1;
  char *d = pt->desc;
  d[0] = '\0';
  if (g) {
    const int64_t n = tc_range(r, 1, ATTN_MIN_(16, sk));
    /* n distinct sorted positions in [0, sk): ends often included */
    int64_t cnt = 0;
    for (int64_t x = 0; x < sk && cnt < n; x++) {
      const int end = x == 0 || x == sk - 1;
      if (tc_chance(r, end ? 0.6 : (double)(n - cnt) / (double)(sk - x)))
        pt->global[cnt++] = (int32_t)x;
    }
    if (cnt == 0)
      pt->global[cnt++] = (int32_t)(sk - 1);
    p->global_idx = pt->global;
    p->global_count = cnt;
    if (p->window_left < 0 && p->window_right < 0) {
      p->window_left = tc_range(r, 0, 70);
      p->window_right = tc_chance(r, 0.5) ? -1 : tc_range(r, 0, 30);
    }
    snprintf(d + strlen(d), 200 - strlen(d), " global[%lld]:%d..%d",
             (long long)cnt, pt->global[0], pt->global[cnt - 1]);
  }
  if (ch) {
    p->sparse_kind =
        tc_chance(r, 0.5) ? ATTN_SPARSE_STRIDED : ATTN_SPARSE_FIXED;
    p->sparse_l = tc_chance(r, 0.2) ? tc_range(r, 1, 3) : tc_range(r, 1, 80);
    p->sparse_c = tc_range(r, 1, p->sparse_l);
    snprintf(d + strlen(d), 200 - strlen(d), " %s:%lld,%lld",
             p->sparse_kind == ATTN_SPARSE_STRIDED ? "strided" : "fixed",
             (long long)p->sparse_l, (long long)p->sparse_c);
  }
  if (bl) {
    p->block_q = tc_chance(r, 0.3) ? tc_range(r, 1, 9) : tc_range(r, 10, 110);
    p->block_k = tc_chance(r, 0.3) ? tc_range(r, 1, 9) : tc_range(r, 10, 130);
    const int64_t sh[4] = {tc_chance(r, 0.5) ? 1 : nseq,
                           tc_chance(r, 0.5) ? 1 : hq, cdiv(sq, p->block_q),
                           cdiv(sk, p->block_k)};
    const size_t n = (size_t)(sh[0] * sh[1] * sh[2] * sh[3]);
    const double dens = tc_chance(r, 0.3) ? 0.1 : tc_chance(r, 0.5) ? 0.5 : 0.9;
    pt->bmask = tc_alloc(n);
    for (size_t e = 0; e < n; e++)
      pt->bmask[e] = (uint8_t)tc_chance(r, dens);
    if (tc_chance(r, 0.3)) /* a block row all false: rows left empty */
      for (int64_t e = 0; e < sh[3]; e++)
        pt->bmask[(sh[2] / 2) * sh[3] + e] = 0;
    p->block_mask = attn_tensor_contiguous(pt->bmask, ATTN_DTYPE_BOOL, sh[0],
                                           sh[1], sh[2], sh[3]);
    snprintf(d + strlen(d), 200 - strlen(d),
             " block %lldx%lld [%lld,%lld,%lld,%lld] dens %.1f",
             (long long)p->block_q, (long long)p->block_k, (long long)sh[0],
             (long long)sh[1], (long long)sh[2], (long long)sh[3], dens);
  }
  if (mm) {
    pt->mm.seed = tc_next(r);
    pt->mm.mode = (int)tc_below(r, 3);
    pt->mm.by_head = tc_chance(r, 0.5);
    pt->mm.w = tc_range(r, 1, 60);
    pt->mm.dens = tc_chance(r, 0.5) ? 900 : 300;
    p->mask_mod = mask_fn;
    p->mask_tile = tc_chance(r, 0.5) ? tile_fn : NULL;
    p->mod_by_head = pt->mm.by_head;
    p->mod_user = &pt->mm;
    snprintf(d + strlen(d), 200 - strlen(d), " mask_mod %d%s%s w %lld",
             pt->mm.mode, pt->mm.by_head ? " by_head" : "",
             p->mask_tile ? " +tile" : "", (long long)pt->mm.w);
  }
}

/* ---------------------------------------------------------------------- */
/* Random cases                                                           */
/* ---------------------------------------------------------------------- */
static attn_isa isas[5];
static int n_isas;

static void snapshot(const tp_bufs *m, void **o, void **lse) {
  *o = tc_alloc(m->bytes[TP_O]);
  memcpy(*o, m->mem[TP_O], m->bytes[TP_O]);
  const size_t nl = (size_t)(m->n_lse + 16) * sizeof(float);
  *lse = tc_alloc(nl);
  memcpy(*lse, m->lse_mem, nl);
}

static int same_fwd(const tp_bufs *m, const void *o, const void *lse) {
  const size_t nl = (size_t)(m->n_lse + 16) * sizeof(float);
  return !memcmp(o, m->mem[TP_O], m->bytes[TP_O]) &&
         !memcmp(lse, m->lse_mem, nl);
}

static void **grads_of(tp_bufs *m, size_t *bytes) {
  static void *data[4];
  data[0] = m->mem[TP_DQ], data[1] = m->mem[TP_DK], data[2] = m->mem[TP_DV];
  data[3] = m->dbias;
  bytes[0] = m->bytes[TP_DQ], bytes[1] = m->bytes[TP_DK];
  bytes[2] = m->bytes[TP_DV], bytes[3] = m->dbias ? m->dbias_bytes : 0;
  return data;
}

static void snap_grads(tp_bufs *m, void *out[4]) {
  size_t bytes[4];
  void **d = grads_of(m, bytes);
  for (int t = 0; t < 4; t++) {
    out[t] = tc_alloc(bytes[t]);
    if (bytes[t])
      memcpy(out[t], d[t], bytes[t]);
  }
}

static int same_grads(tp_bufs *m, void *const ref[4]) {
  size_t bytes[4];
  void **d = grads_of(m, bytes);
  for (int t = 0; t < 4; t++)
    if (bytes[t] && memcmp(ref[t], d[t], bytes[t]))
      return 0;
  return 1;
}

static void free4(void *x[4]) {
  for (int t = 0; t < 4; t++)
    free(x[t]);
}

static void run_case(uint64_t seed, int index, int verbose) {
  tp_problem c;
  tp_generate(&c, &tp_profile_backward, seed, index);
  c.compiled = 0; /* compiled below, with the pattern */
  c.workspace = 0;
  c.use_ctx = 0;
  /* lse is needed by the backward; attn_forward leaves the lse of rows
   * past the last packed sequence alone (as test_forward knows), so none */
  c.sq -= c.tail_q;
  c.tail_q = 0;
  attn_params p;
  tp_bufs m;
  tp_build(&c, &p, &m);
  char err[320] = "";
  p.error_message = err;
  p.error_message_size = sizeof err;
  p.lse = m.lse_mem + 8;
  tc_rng r = {tc_case_seed(seed ^ 0x5A5Aull, (uint64_t)index)};
  pattern pt;
  memset(&pt, 0, sizeof pt);
  overlay(&r, &p, &pt);
  if (verbose) {
    tp_describe(stdout, &c);
    printf("  pattern:%s\n", pt.desc);
  }
  attn_status st = attn_forward_check(&p);
  CHECK(st == ATTN_OK, "case %d: check: %s (%s)%s", index, attn_strerror(st),
        err, pt.desc);
  if (st != ATTN_OK)
    goto out;
  oracle_ref ref;
  oracle_naive nv;
  if (oracle_forward(&p, &ref) || oracle_naive_f32(&p, &nv)) {
    fprintf(stderr, "test_sparse: oracle out of memory\n");
    exit(2);
  }
  /* forward on every ISA; the last one's o and lse feed the backward */
  for (int k = 0; k < n_isas; k++) {
    p.isa = isas[k];
    tp_reset_forward(&c, &p, &m);
    p.lse = m.lse_mem + 8;
    st = attn_forward(NULL, &p);
    oracle_cmp cmp;
    if (st == ATTN_OK)
      oracle_compare(&p, &ref, &nv, &cmp);
    CHECK(st == ATTN_OK && cmp.ok, "case %d fwd %s: %s %s |%s", index,
          attn_isa_name(isas[k]), attn_strerror(st),
          st == ATTN_OK ? cmp.problem : err, pt.desc);
    if (n_fail && n_fail < 4 && !(st == ATTN_OK && cmp.ok))
      tp_describe(stdout, &c);
  }
  oracle_ref_free(&ref);
  oracle_naive_free(&nv);
  const int determinism = index % 4 == 0, compiled = index % 3 == 0;
  void *o1 = NULL, *l1 = NULL;
  snapshot(&m, &o1, &l1);
  if (determinism) {
    static const int thr[] = {1, 2, 3, 7};
    int same = 1;
    for (int t = 0; t < 4; t++) {
      p.num_threads = thr[t];
      tp_reset_forward(&c, &p, &m);
      p.lse = m.lse_mem + 8;
      same &= attn_forward(NULL, &p) == ATTN_OK && same_fwd(&m, o1, l1);
    }
    p.num_threads = c.threads;
    CHECK(same, "case %d: forward differs across thread counts |%s", index,
          pt.desc);
  }
  attn_mask *cm = NULL;
  if (compiled) {
    st = attn_mask_compile(&p, &cm);
    CHECK(st == ATTN_OK, "case %d: attn_mask_compile: %s (%s)", index,
          attn_strerror(st), err);
    p.compiled_mask = cm;
    tp_reset_forward(&c, &p, &m);
    p.lse = m.lse_mem + 8;
    st = attn_forward(NULL, &p);
    CHECK(st == ATTN_OK && same_fwd(&m, o1, l1),
          "case %d: the compiled mask's forward differs (%s) |%s", index, err,
          pt.desc);
  }
  /* backward on every ISA from the forward's o and lse */
  oracle_grads gref, gnv;
  if (oracle_backward(&p, &gref) || oracle_backward_f32(&p, &gnv)) {
    fprintf(stderr, "test_sparse: oracle out of memory\n");
    exit(2);
  }
  void *g1[4] = {0};
  for (int k = 0; k < n_isas; k++) {
    p.isa = isas[k];
    tp_reset_backward(&m);
    st = attn_backward(NULL, &p);
    oracle_grad_cmp gc;
    if (st == ATTN_OK)
      oracle_grads_compare(&p, &gref, &gnv, &gc);
    CHECK(st == ATTN_OK && gc.ok, "case %d bwd %s: %s %s |%s", index,
          attn_isa_name(isas[k]), attn_strerror(st),
          st == ATTN_OK ? gc.problem : err, pt.desc);
  }
  oracle_grads_free(&gref);
  oracle_grads_free(&gnv);
  snap_grads(&m, g1);
  if (compiled) { /* the compiled mask against the call's own lists */
    p.compiled_mask = NULL;
    tp_reset_backward(&m);
    st = attn_backward(NULL, &p);
    CHECK(st == ATTN_OK && same_grads(&m, g1),
          "case %d: the compiled mask's backward differs |%s", index, pt.desc);
    p.compiled_mask = cm;
    /* another pattern is refused */
    attn_params q = p;
    q.sparse_l = p.sparse_l + 1;
    if (p.sparse_kind == ATTN_SPARSE_NONE)
      q.mod_user = &q;
    err[0] = '\0';
    st = attn_forward_check(&q);
    CHECK(st == ATTN_ERR_INVALID_ARGUMENT && strstr(err, "sparse"),
          "case %d: a compiled mask with another pattern: %s (%s)", index,
          attn_strerror(st), err);
  }
  if (determinism) {
    static const int thr[] = {1, 2, 3, 7};
    int same = 1;
    for (int t = 0; t < 4; t++) {
      p.num_threads = thr[t];
      tp_reset_backward(&m);
      same &= attn_backward(NULL, &p) == ATTN_OK && same_grads(&m, g1);
    }
    CHECK(same, "case %d: backward differs across thread counts |%s", index,
          pt.desc);
  }
  free4(g1);
  free(o1);
  free(l1);
  attn_mask_free(cm);
out:
  free(pt.bmask);
  tp_bufs_free(&m);
}

/* ---------------------------------------------------------------------- */
/* score_mod against equivalent oracle calls                              */
/* ---------------------------------------------------------------------- */
static void mod_case(int which, int64_t sq, int64_t sk, attn_causal causal,
                     int global) {
  tp_problem c;
  tp_problem_init(&c, 1, 4, 2, sq, sk, 32, 32);
  c.grads = 1;
  c.causal = causal;
  c.seed = 77 + (uint64_t)which;
  attn_params p;
  tp_bufs m;
  tp_build(&c, &p, &m);
  char err[320] = "";
  p.error_message = err;
  p.error_message_size = sizeof err;
  p.lse = m.lse_mem + 8;
  int32_t gl[2] = {0, (int32_t)(sk - 1)};
  if (global) {
    p.global_idx = gl, p.global_count = 2;
    p.window_left = 5, p.window_right = 3;
  }
  tabmod tm;
  memset(&tm, 0, sizeof tm);
  tm.sk = sk;
  tm.cap = 2.5f;
  tm.mm.mode = 0, tm.mm.dens = 400, tm.mm.seed = 5;
  float *tab = tc_alloc((size_t)(sq * sk) * sizeof(float));
  tc_rng r = {99};
  for (int64_t e = 0; e < sq * sk; e++)
    tab[e] = (float)tc_normal(&r);
  tm.t = tab;
  attn_params po = p; /* what the oracle sees */
  p.mod_user = &tm;
  const char *name = "";
  if (which == 0) {
    name = "s + B";
    p.score_mod = add_table, p.score_mod_grad = one_grad;
    po.bias = attn_tensor_contiguous(tab, ATTN_DTYPE_F32, 1, 1, sq, sk);
  } else if (which == 1) {
    name = "c tanh(s / c)";
    p.score_mod = tanh_mod, p.score_mod_grad = tanh_grad;
    po.softcap = tm.cap;
  } else {
    name = "-inf";
    p.score_mod = neginf_mod;
    p.score_mod_grad = neginf_grad1; /* NaN where masked: never used */
    po.mask_mod = mask_fn;
    po.mod_user = &tm.mm;
  }
  oracle_ref ref;
  oracle_naive nv;
  if (oracle_forward(&po, &ref) || oracle_naive_f32(&po, &nv))
    exit(2);
  for (int k = 0; k < n_isas; k++) {
    p.isa = isas[k];
    attn_status st = attn_forward(NULL, &p);
    oracle_cmp cmp;
    if (st == ATTN_OK)
      oracle_compare(&po, &ref, &nv, &cmp);
    CHECK(st == ATTN_OK && cmp.ok, "score_mod %s %lldx%lld fwd %s: %s %s", name,
          (long long)sq, (long long)sk, attn_isa_name(isas[k]),
          attn_strerror(st), st == ATTN_OK ? cmp.problem : err);
  }
  oracle_ref_free(&ref);
  oracle_naive_free(&nv);
  oracle_grads gref, gnv;
  if (oracle_backward(&po, &gref) || oracle_backward_f32(&po, &gnv))
    exit(2);
  for (int k = 0; k < n_isas; k++) {
    p.isa = isas[k];
    tp_reset_backward(&m);
    attn_status st = attn_backward(NULL, &p);
    oracle_grad_cmp gc;
    if (st == ATTN_OK)
      oracle_grads_compare(&po, &gref, &gnv, &gc);
    CHECK(st == ATTN_OK && gc.ok, "score_mod %s %lldx%lld bwd %s: %s %s", name,
          (long long)sq, (long long)sk, attn_isa_name(isas[k]),
          attn_strerror(st), st == ATTN_OK ? gc.problem : err);
  }
  oracle_grads_free(&gref);
  oracle_grads_free(&gnv);
  /* the backward without the derivative is refused */
  p.score_mod_grad = NULL;
  err[0] = '\0';
  attn_status st = attn_backward_check(&p);
  CHECK(st == ATTN_ERR_INVALID_ARGUMENT && strstr(err, "score_mod_grad"),
        "score_mod without score_mod_grad: %s (%s)", attn_strerror(st), err);
  free(tab);
  tp_bufs_free(&m);
}

/* ---------------------------------------------------------------------- */
/* Skipped work                                                           */
/* ---------------------------------------------------------------------- */
/* Shapes for attn_mask_compile (which reads no data): q, k, v share one
 * buffer, o has its own. */
static float *shape_buf[2];
static attn_params shape_only(int64_t s, int64_t h, int64_t d) {
  attn_params p;
  attn_params_init(&p);
  const size_t n = (size_t)(s * h * d) * sizeof(float);
  for (int i = 0; i < 2; i++) {
    free(shape_buf[i]);
    shape_buf[i] = tc_alloc(n);
  }
  p.q = attn_tensor_bshd(shape_buf[0], ATTN_DTYPE_F32, 1, s, h, d);
  p.k = p.q, p.v = p.q;
  p.o = attn_tensor_bshd(shape_buf[1], ATTN_DTYPE_F32, 1, s, h, d);
  return p;
}

static int counts(const attn_params *p, int64_t *f, int64_t *pa, int64_t *e) {
  attn_mask *m = NULL;
  attn_status st = attn_mask_compile(p, &m);
  if (st != ATTN_OK)
    return 0;
  attn_mask_tile_counts(m, f, pa, e);
  attn_mask_free(m);
  return 1;
}

static void skipped_work(void) {
  /* 10% of 64x64 blocks live, block size = the key tile: live tiles */
  {
    const int64_t s = 4096, nb = s / 64;
    attn_params p = shape_only(s, 1, 64);
    uint8_t *bm = tc_alloc((size_t)(nb * nb));
    tc_rng r = {3};
    int64_t live = 0;
    for (int64_t e = 0; e < nb * nb; e++)
      live += bm[e] = (uint8_t)tc_chance(&r, 0.1);
    p.block_mask = attn_tensor_contiguous(bm, ATTN_DTYPE_BOOL, 1, 1, nb, nb);
    p.block_q = p.block_k = 64;
    int64_t f = 0, pa = 0, e = 0;
    const int ok = counts(&p, &f, &pa, &e);
    const double frac = (double)(f + pa) / (double)(f + pa + e);
    const double lf = (double)live / (double)(nb * nb);
    /* a 48-row tile overlaps 1 or 2 block rows: live tiles are at most
     * about 1.5 x the live blocks (1 - 0.9^2 = 0.19 of the two-row ones) */
    CHECK(ok && frac >= lf * 0.9 && frac <= lf * 1.6,
          "block 10%%: %.3f of the tiles non-empty for %.3f of the blocks",
          frac, lf);
    printf("block layout, %.1f%% of the blocks live: %.1f%% of the tiles "
           "non-empty (%lld FULL, %lld PARTIAL)\n",
           100 * lf, 100 * frac, (long long)f, (long long)pa);
    free(bm);
  }
  /* Longformer: non-empty tiles grow linearly with the length */
  {
    int64_t prev = 0;
    for (int64_t s = 4096; s <= 16384; s *= 2) {
      attn_params p = shape_only(s, 1, 64);
      int32_t g[16];
      for (int i = 0; i < 16; i++)
        g[i] = (int32_t)(i * (s / 16));
      p.global_idx = g, p.global_count = 16;
      p.window_left = p.window_right = 256;
      int64_t f = 0, pa = 0, e = 0;
      CHECK(counts(&p, &f, &pa, &e), "longformer %lld: compile", (long long)s);
      printf("longformer s %lld: %lld non-empty tiles of %lld\n", (long long)s,
             (long long)(f + pa), (long long)(f + pa + e));
      if (prev)
        CHECK((double)(f + pa) <= 2.3 * (double)prev,
              "longformer: tiles %lld at %lld vs %lld at half: not linear",
              (long long)(f + pa), (long long)s, (long long)prev);
      prev = f + pa;
    }
  }
  /* strided L = 1 and a mask_mod of all ones (classified FULL): the
   * tiles of plain causal */
  {
    attn_params p = shape_only(1000, 1, 64);
    p.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    int64_t f0, p0, e0, f, pa, e;
    counts(&p, &f0, &p0, &e0);
    p.sparse_kind = ATTN_SPARSE_STRIDED, p.sparse_l = 1;
    counts(&p, &f, &pa, &e);
    CHECK(f == f0 && pa == p0 && e == e0,
          "strided L=1: %lld/%lld/%lld tiles, causal %lld/%lld/%lld",
          (long long)f, (long long)pa, (long long)e, (long long)f0,
          (long long)p0, (long long)e0);
    p.sparse_kind = ATTN_SPARSE_NONE;
    modfn mm = {0, 0, 0, 1, 1000};
    p.mask_mod = mask_fn, p.mod_user = &mm;
    counts(&p, &f, &pa, &e);
    CHECK(f == f0 && pa == p0 && e == e0,
          "mask_mod of ones: %lld/%lld/%lld tiles, causal %lld/%lld/%lld",
          (long long)f, (long long)pa, (long long)e, (long long)f0,
          (long long)p0, (long long)e0);
    mm.dens = 0; /* all zeros: every tile EMPTY, every row o = 0 */
    counts(&p, &f, &pa, &e);
    CHECK(f == 0 && pa == 0, "mask_mod of zeros: %lld FULL, %lld PARTIAL",
          (long long)f, (long long)pa);
  }
  /* a band mask_mod with its classifier: only the band's tiles */
  {
    attn_params p = shape_only(4096, 1, 64);
    modfn mm = {0, 1, 0, 100, 0};
    p.mask_mod = mask_fn, p.mask_tile = tile_fn, p.mod_user = &mm;
    int64_t f, pa, e, f2, pa2, e2;
    counts(&p, &f, &pa, &e);
    p.mask_tile = NULL; /* probing gives the same lists */
    counts(&p, &f2, &pa2, &e2);
    CHECK(f == f2 && pa == pa2 && e == e2 && f + pa < (f + pa + e) / 8,
          "band mask_mod: classifier %lld/%lld/%lld, probing %lld/%lld/%lld",
          (long long)f, (long long)pa, (long long)e, (long long)f2,
          (long long)pa2, (long long)e2);
  }
  free(shape_buf[0]);
  free(shape_buf[1]);
}

/* ---------------------------------------------------------------------- */
/* Bad input                                                              */
/* ---------------------------------------------------------------------- */
static void bad(attn_params p, attn_status want, const char *needle,
                const char *what) {
  char err[320] = "";
  p.error_message = err;
  p.error_message_size = sizeof err;
  const attn_status st = attn_forward_check(&p);
  CHECK(st == want && strstr(err, needle), "%s: status %s, message \"%s\"",
        what, attn_strerror(st), err);
}

static void bad_input(void) {
  float buf[4 * 100 * 2 * 8];
  attn_params p;
  attn_params_init(&p);
  p.q = attn_tensor_bshd(buf, ATTN_DTYPE_F32, 1, 100, 2, 8);
  p.k = p.q, p.v = p.q;
  static float o[4 * 100 * 2 * 8];
  p.o = attn_tensor_bshd(o, ATTN_DTYPE_F32, 1, 100, 2, 8);
  attn_params x = p;
  int32_t g[3] = {0, 5, 100};
  x.global_idx = g, x.global_count = 3;
  bad(x, ATTN_ERR_INVALID_ARGUMENT, "global_idx[2] = 100 is out of range",
      "global index past seq_k");
  g[2] = 5;
  bad(x, ATTN_ERR_INVALID_ARGUMENT, "strictly increasing", "repeated global");
  g[0] = -1;
  bad(x, ATTN_ERR_INVALID_ARGUMENT, "global_idx[0] = -1 is negative",
      "negative global");
  x.global_idx = NULL;
  bad(x, ATTN_ERR_NULL_POINTER, "global_idx is NULL", "NULL global_idx");
  x = p;
  x.global_count = -2;
  bad(x, ATTN_ERR_INVALID_ARGUMENT, "global_count", "negative global_count");
  x = p;
  x.sparse_kind = ATTN_SPARSE_STRIDED;
  bad(x, ATTN_ERR_INVALID_ARGUMENT, "strided pattern: sparse_l (0)",
      "strided L < 1");
  x.sparse_kind = ATTN_SPARSE_FIXED, x.sparse_l = 4, x.sparse_c = 5;
  bad(x, ATTN_ERR_INVALID_ARGUMENT, "sparse_c (5) must be in 1..sparse_l (4)",
      "fixed C > L");
  x.sparse_c = 0;
  bad(x, ATTN_ERR_INVALID_ARGUMENT, "sparse_c (0)", "fixed C < 1");
  x.sparse_kind = 7;
  bad(x, ATTN_ERR_INVALID_ARGUMENT, "sparse_kind (7)", "unknown sparse_kind");
  x = p;
  uint8_t bm[64];
  x.block_mask = attn_tensor_contiguous(bm, ATTN_DTYPE_BOOL, 1, 1, 4, 4);
  x.block_q = 32, x.block_k = 32;
  x.block_k = 25; /* 100 / 25 = 4 rows: shape fine, this passes */
  {
    char err[320] = "";
    x.error_message = err, x.error_message_size = sizeof err;
    CHECK(attn_forward_check(&x) == ATTN_OK, "block 32x25: %s", err);
  }
  x.block_k = 20;
  bad(x, ATTN_ERR_INVALID_SHAPE,
      "block_mask.shape[3] = 4, but ceil(seq_k / block_k) = 5",
      "block_mask shape mismatch");
  x.block_k = 0;
  bad(x, ATTN_ERR_INVALID_ARGUMENT, "block_q (32) and block_k (0)",
      "block_k 0");
  x.block_k = 25;
  x.block_mask.shape[1] = 3;
  bad(x, ATTN_ERR_INVALID_SHAPE, "block_mask.shape[1] = 3", "block heads");
  x.block_mask.shape[1] = 1;
  x.block_mask.dtype = ATTN_DTYPE_F32;
  bad(x, ATTN_ERR_INVALID_DTYPE, "block_mask must be bool", "block dtype");
  x.block_mask.dtype = ATTN_DTYPE_BOOL;
  x.block_mask.stride[2] = -1;
  bad(x, ATTN_ERR_INVALID_STRIDE, "block_mask.stride[2] = -1", "block stride");
  x = p;
  x.mask_tile = tile_fn;
  bad(x, ATTN_ERR_INVALID_ARGUMENT, "mask_tile is set without mask_mod",
      "mask_tile alone");
  x = p;
  x.score_mod_grad = one_grad;
  bad(x, ATTN_ERR_INVALID_ARGUMENT, "score_mod_grad is set without score_mod",
      "score_mod_grad alone");
}

int main(void) {
  const uint64_t seed = tc_env_ull("ATTN_TEST_SEED", 0x5EA55EEDull);
  const long long n_cases = tc_env_ll("ATTN_TEST_CASES", 400);
  const long long only = tc_env_ll("ATTN_TEST_ONLY", -1);
  const attn_isa all[5] = {ATTN_ISA_GENERIC, ATTN_ISA_AVX2, ATTN_ISA_AVX512,
                           ATTN_ISA_AVX512_BF16, ATTN_ISA_AMX_BF16};
  for (int k = 0; k < 5; k++)
    if (attn_isa_supported(all[k]))
      isas[n_isas++] = all[k];
  const double t0 = tc_now();
  printf("test_sparse: seed 0x%llx, %lld cases\n", (unsigned long long)seed,
         n_cases);
  for (long long i = 0; i < n_cases; i++)
    if (only < 0 || i == only)
      run_case(seed, (int)i, only >= 0);
  if (only < 0) {
    for (int w = 0; w < 3; w++) {
      mod_case(w, 100, 130, ATTN_CAUSAL_NONE, 0);
      mod_case(w, 49, 65, ATTN_CAUSAL_BOTTOM_RIGHT, 1);
      mod_case(w, 1, 47, ATTN_CAUSAL_TOP_LEFT, w & 1);
    }
    skipped_work();
    bad_input();
  }
  printf("time %.1f s\n", tc_now() - t0);
  printf("%ld passed, %ld failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
