/*
 * test_determinism: attn.h promises bitwise identical results for every
 * thread count. For several shapes (causal, varlen, GQA/MQA, masks, a
 * 1000-token sequence, a long decode) and for every supported ISA separately,
 * o and lse from 1 thread are compared with memcmp against 2..8 threads,
 * num_threads = 0, a context, and a caller-provided workspace. The 1-thread
 * result is also checked against the oracle (same rule as test_forward).
 *
 * The portable generic kernels are slow, so they run the long shapes marked
 * big = 1 at a quarter of the length (the 1000-token causal shape runs in
 * full on every ISA). ATTN_TEST_QUICK=1 quarters every long shape
 * (sanitizer builds).
 * Last line: "N passed, N failed".
 */
#include "attn.h"
#include "oracle.h"
#include "test_common.h"

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
      printf("FAIL: ");                                                        \
      printf(__VA_ARGS__);                                                     \
      printf("\n");                                                            \
    }                                                                          \
  } while (0)

typedef struct dshape {
  const char *name;
  int64_t batch, hq, hk, sq, sk, d, dv;
  attn_dtype in_dt, out_dt;
  attn_causal causal;
  int64_t wl, wr;
  float softcap;
  int alibi, bias, mask, kvlens, bhsd;
  int nseq; /* > 0: varlen with these lengths */
  int32_t lq[4], lk[4];
  int big; /* 1: a quarter of the length for the (slow) generic ISA and
              under ATTN_TEST_QUICK; 2: only under ATTN_TEST_QUICK */
} dshape;

static const dshape shapes[] = {
    {"mha 129x129 d64",
     2,
     4,
     4,
     129,
     129,
     64,
     64,
     ATTN_DTYPE_F32,
     ATTN_DTYPE_F32,
     ATTN_CAUSAL_NONE,
     -1,
     -1,
     0,
     0,
     0,
     0,
     0,
     0,
     0,
     {0},
     {0},
     0},
    {"gqa causal-br 200x333 d128 bf16",
     2,
     8,
     2,
     200,
     333,
     128,
     128,
     ATTN_DTYPE_BF16,
     ATTN_DTYPE_F32,
     ATTN_CAUSAL_BOTTOM_RIGHT,
     -1,
     -1,
     0,
     0,
     0,
     0,
     0,
     1,
     0,
     {0},
     {0},
     0},
    {"causal-tl window softcap alibi bias f16->bf16 d80/59",
     1,
     4,
     2,
     150,
     97,
     80,
     59,
     ATTN_DTYPE_F16,
     ATTN_DTYPE_BF16,
     ATTN_CAUSAL_TOP_LEFT,
     32,
     0,
     20.0f,
     1,
     1,
     0,
     0,
     0,
     0,
     {0},
     {0},
     0},
    {"varlen mqa kv_lens d96",
     1,
     6,
     1,
     0,
     0,
     96,
     96,
     ATTN_DTYPE_F32,
     ATTN_DTYPE_F32,
     ATTN_CAUSAL_BOTTOM_RIGHT,
     -1,
     -1,
     0,
     0,
     0,
     0,
     1,
     0,
     3,
     {100, 0, 257},
     {300, 17, 64},
     0},
    {"mask window 70x90 d32",
     3,
     3,
     1,
     70,
     90,
     32,
     32,
     ATTN_DTYPE_F32,
     ATTN_DTYPE_F16,
     ATTN_CAUSAL_NONE,
     20,
     40,
     0,
     0,
     0,
     1,
     0,
     0,
     0,
     {0},
     {0},
     0},
    {"long causal 1000x1000 d64",
     1,
     2,
     2,
     1000,
     1000,
     64,
     64,
     ATTN_DTYPE_F32,
     ATTN_DTYPE_F32,
     ATTN_CAUSAL_BOTTOM_RIGHT,
     -1,
     -1,
     0,
     0,
     0,
     0,
     0,
     0,
     0,
     {0},
     {0},
     2},
    {"long 1000x1000 d128 gqa bf16",
     1,
     4,
     2,
     1000,
     1000,
     128,
     128,
     ATTN_DTYPE_BF16,
     ATTN_DTYPE_F32,
     ATTN_CAUSAL_NONE,
     -1,
     -1,
     0,
     0,
     0,
     0,
     0,
     1,
     0,
     {0},
     {0},
     1},
    {"decode 1x4000 d128 gqa kv_lens",
     2,
     8,
     2,
     1,
     4000,
     128,
     128,
     ATTN_DTYPE_F32,
     ATTN_DTYPE_F32,
     ATTN_CAUSAL_BOTTOM_RIGHT,
     -1,
     -1,
     0,
     0,
     0,
     0,
     1,
     0,
     0,
     {0},
     {0},
     1},
    {"decode 4x2500 d64 mqa",
     1,
     8,
     1,
     4,
     2500,
     64,
     64,
     ATTN_DTYPE_F16,
     ATTN_DTYPE_F32,
     ATTN_CAUSAL_NONE,
     -1,
     -1,
     0,
     1,
     0,
     0,
     0,
     0,
     0,
     {0},
     {0},
     1},
};
#define N_SHAPES ((int)(sizeof shapes / sizeof shapes[0]))

typedef struct dbufs {
  void *q, *k, *v, *o;
  float *lse, *bias, *slopes;
  uint8_t *mask;
  int32_t cu_q[5], cu_k[5], kv_lens[4];
  size_t o_bytes, lse_bytes;
} dbufs;

static void put(attn_dtype dt, void *base, int64_t i, float x) {
  if (dt == ATTN_DTYPE_F32)
    ((float *)base)[i] = x;
  else if (dt == ATTN_DTYPE_BF16)
    ((uint16_t *)base)[i] = tc_f32_to_bf16(x);
  else
    ((uint16_t *)base)[i] = tc_f32_to_f16(x);
}

static void build(const dshape *s, int shrink, attn_params *p, dbufs *m) {
  tc_rng r = {0xDE7E12ull};
  int64_t batch = s->batch, sq = s->sq, sk = s->sk, nq, nk;
  const size_t ies = attn_dtype_size(s->in_dt);
  memset(m, 0, sizeof *m);
  attn_params_init(p);
  if (shrink) {
    sq = sq > 1 ? sq / 4 : sq;
    sk = sk / 4;
  }
  if (s->nseq) {
    m->cu_q[0] = m->cu_k[0] = 0;
    for (int b = 0; b < s->nseq; b++) {
      m->cu_q[b + 1] = m->cu_q[b] + s->lq[b];
      m->cu_k[b + 1] = m->cu_k[b] + s->lk[b];
    }
    batch = 1;
    sq = m->cu_q[s->nseq];
    sk = m->cu_k[s->nseq];
    p->cu_seqlens_q = m->cu_q;
    p->cu_seqlens_k = m->cu_k;
    p->varlen_batch = s->nseq;
  }
  nq = batch * sq * s->hq;
  nk = batch * sk * s->hk;
  m->q = tc_alloc((size_t)(nq * s->d) * ies);
  m->k = tc_alloc((size_t)(nk * s->d) * ies);
  m->v = tc_alloc((size_t)(nk * s->dv) * ies);
  m->o_bytes = (size_t)(nq * s->dv) * attn_dtype_size(s->out_dt);
  m->o = tc_alloc(m->o_bytes);
  m->lse_bytes = (size_t)nq * sizeof(float);
  m->lse = tc_alloc(m->lse_bytes);
  for (int64_t i = 0; i < nq * s->d; i++)
    put(s->in_dt, m->q, i, (float)tc_normal(&r));
  for (int64_t i = 0; i < nk * s->d; i++)
    put(s->in_dt, m->k, i, (float)tc_normal(&r));
  for (int64_t i = 0; i < nk * s->dv; i++)
    put(s->in_dt, m->v, i, (float)tc_normal(&r));
  if (s->bhsd) {
    p->q = attn_tensor_bhsd(m->q, s->in_dt, batch, sq, s->hq, s->d);
    p->k = attn_tensor_bhsd(m->k, s->in_dt, batch, sk, s->hk, s->d);
    p->v = attn_tensor_bhsd(m->v, s->in_dt, batch, sk, s->hk, s->dv);
  } else {
    p->q = attn_tensor_bshd(m->q, s->in_dt, batch, sq, s->hq, s->d);
    p->k = attn_tensor_bshd(m->k, s->in_dt, batch, sk, s->hk, s->d);
    p->v = attn_tensor_bshd(m->v, s->in_dt, batch, sk, s->hk, s->dv);
  }
  p->o = attn_tensor_bshd(m->o, s->out_dt, batch, sq, s->hq, s->dv);
  p->lse = m->lse;
  p->causal = s->causal;
  p->window_left = s->wl;
  p->window_right = s->wr;
  p->softcap = s->softcap;
  if (s->alibi) {
    m->slopes = tc_alloc((size_t)s->hq * sizeof(float));
    for (int64_t h = 0; h < s->hq; h++)
      m->slopes[h] = (float)tc_uniform(&r, 0.0, 0.3);
    p->alibi_slopes = m->slopes;
  }
  if (s->bias) { /* [1, hq, sq, sk] broadcast over batch */
    const int64_t n = s->hq * sq * sk;
    m->bias = tc_alloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
      m->bias[i] = (float)tc_normal(&r);
    p->bias = attn_tensor_contiguous(m->bias, ATTN_DTYPE_F32, 1, s->hq, sq, sk);
  }
  if (s->mask) { /* [b, 1, sq, sk] */
    const int64_t n = batch * sq * sk;
    m->mask = tc_alloc((size_t)n);
    for (int64_t i = 0; i < n; i++)
      m->mask[i] = (uint8_t)tc_chance(&r, 0.6);
    p->mask =
        attn_tensor_contiguous(m->mask, ATTN_DTYPE_BOOL, batch, 1, sq, sk);
  }
  if (s->kvlens) {
    const int64_t nb = s->nseq ? s->nseq : batch;
    for (int64_t b = 0; b < nb; b++) {
      const int64_t n = s->nseq ? s->lk[b] : sk;
      m->kv_lens[b] = (int32_t)(b == 0 ? n : tc_range(&r, 0, n));
    }
    p->kv_lens = m->kv_lens;
  }
}

static void dbufs_free(dbufs *m) {
  free(m->q), free(m->k), free(m->v), free(m->o), free(m->lse);
  free(m->bias), free(m->slopes), free(m->mask);
}

static int same_as(const dbufs *m, const void *o_ref, const float *lse_ref) {
  return memcmp(m->o, o_ref, m->o_bytes) == 0 &&
         memcmp(m->lse, lse_ref, m->lse_bytes) == 0;
}

/* Reference: 1 thread. Then every other way of running must match it. */
static void run_isa(const dshape *s, attn_params *p, dbufs *m, attn_isa isa,
                    const oracle_ref *ref, const oracle_naive *nv, int shrink) {
  char err[256] = "";
  void *o_ref;
  float *lse_ref;
  attn_status st;
  oracle_cmp cmp;

  p->isa = isa;
  p->error_message = err;
  p->error_message_size = sizeof err;
  p->num_threads = 1;
  p->workspace = NULL;
  p->workspace_size = 0;
  st = attn_forward(NULL, p);
  CHECK(st == ATTN_OK, "[%s] %s, 1 thread: %s (%s)", s->name,
        attn_isa_name(isa), attn_strerror(st), err);
  if (st != ATTN_OK)
    return;
  o_ref = tc_alloc(m->o_bytes);
  lse_ref = tc_alloc(m->lse_bytes);
  memcpy(o_ref, m->o, m->o_bytes);
  memcpy(lse_ref, m->lse, m->lse_bytes);

  oracle_compare(p, ref, nv, &cmp); /* the reference run is also right */
  CHECK(cmp.ok, "[%s] %s: wrong result: %s", s->name, attn_isa_name(isa),
        cmp.problem);
  printf("  %-52s %-7s o err %.2e (naive %.2e)  lse err %.2e%s\n", s->name,
         attn_isa_name(isa), cmp.err_o, cmp.err_o_naive, cmp.err_lse,
         shrink ? "  (1/4 length)" : "");

  for (int t = 0; t <= 8; t++) {
    if (t == 1)
      continue;
    memset(m->o, 0xEE, m->o_bytes);
    memset(m->lse, 0xEE, m->lse_bytes);
    p->num_threads = t;
    st = attn_forward(NULL, p);
    CHECK(st == ATTN_OK && same_as(m, o_ref, lse_ref),
          "[%s] %s: %d threads differ from 1 thread (status %d)", s->name,
          attn_isa_name(isa), t, (int)st);
  }
  { /* through a context with 5 threads */
    attn_context *ctx = NULL;
    attn_context_options opt;
    attn_context_options_init(&opt);
    opt.num_threads = 5;
    opt.isa = isa;
    st = attn_context_create(&ctx, &opt);
    CHECK(st == ATTN_OK, "attn_context_create");
    if (st == ATTN_OK) {
      memset(m->o, 0xEE, m->o_bytes);
      p->num_threads = 0;
      p->isa = ATTN_ISA_AUTO;
      st = attn_forward(ctx, p);
      CHECK(st == ATTN_OK && same_as(m, o_ref, lse_ref),
            "[%s] %s: context (5 threads) differs", s->name,
            attn_isa_name(isa));
      p->isa = isa;
    }
    attn_context_free(ctx);
  }
  { /* caller workspace, 1 and 4 threads */
    const int ths[2] = {1, 4};
    for (int i = 0; i < 2; i++) {
      size_t bytes = 0;
      void *ws;
      p->num_threads = ths[i];
      st = attn_forward_workspace_size(NULL, p, &bytes);
      CHECK(st == ATTN_OK, "[%s] workspace size: %s", s->name, err);
      if (st != ATTN_OK)
        continue;
      ws = tc_alloc(bytes + 64);
      memset(ws, 0xC3, bytes + 64);
      p->workspace = (void *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
      p->workspace_size = bytes;
      memset(m->o, 0xEE, m->o_bytes);
      st = attn_forward(NULL, p);
      CHECK(st == ATTN_OK && same_as(m, o_ref, lse_ref),
            "[%s] %s: caller workspace (%zu bytes, %d threads) differs "
            "(status %d: %s)",
            s->name, attn_isa_name(isa), bytes, ths[i], (int)st, err);
      p->workspace = NULL;
      p->workspace_size = 0;
      free(ws);
    }
  }
  free(o_ref);
  free(lse_ref);
}

/* One shape at a given size on the ISAs listed. */
static void run_shape(const dshape *s, int shrink, const attn_isa *isas,
                      int n_isas) {
  attn_params p;
  dbufs m;
  oracle_ref ref;
  oracle_naive nv;
  if (n_isas == 0)
    return;
  build(s, shrink, &p, &m);
  if (oracle_forward(&p, &ref) != 0 || oracle_naive_f32(&p, &nv) != 0) {
    printf("oracle: out of memory\n");
    exit(2);
  }
  for (int i = 0; i < n_isas; i++)
    run_isa(s, &p, &m, isas[i], &ref, &nv, shrink);
  oracle_ref_free(&ref);
  oracle_naive_free(&nv);
  dbufs_free(&m);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* keep output if a sanitizer aborts */
  static const attn_isa all[3] = {ATTN_ISA_GENERIC, ATTN_ISA_AVX2,
                                  ATTN_ISA_AVX512};
  const int quick = (int)tc_env_ll("ATTN_TEST_QUICK", 0) != 0;
  attn_isa fast[2];
  int n_fast = 0;
  double t0 = tc_now();
  for (int i = 0; i < 3; i++) {
    if (!attn_isa_supported(all[i]))
      printf("isa %s: not supported on this CPU, skipped\n",
             attn_isa_name(all[i]));
    else if (all[i] != ATTN_ISA_GENERIC)
      fast[n_fast++] = all[i];
  }
  for (int s = 0; s < N_SHAPES; s++) {
    const dshape *sh = &shapes[s];
    if (quick && sh->big) {
      run_shape(sh, 1, all, 1);
      run_shape(sh, 1, fast, n_fast);
    } else if (sh->big == 1) { /* generic at a quarter of the length */
      run_shape(sh, 1, all, 1);
      run_shape(sh, 0, fast, n_fast);
    } else {
      run_shape(sh, 0, all, 1);
      run_shape(sh, 0, fast, n_fast);
    }
  }
  printf("time: %.1f s%s\n", tc_now() - t0, quick ? " (quick)" : "");
  printf("%ld passed, %ld failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
