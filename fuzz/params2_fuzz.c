/*
 * params2_fuzz.c - libFuzzer target for attn_forward and attn_backward on the
 * inputs params_fuzz.c does not draw (issue 15): long sequences, huge and
 * denormal magnitudes, non-finite values, and aliasing between buffers.
 *
 * The first input byte picks one of four modes:
 *   0 accuracy  sequences up to 300 rows and keys (tile edges 47/48/49,
 *               63/64/65, ... drawn often), head_dim <= 8, values of
 *               magnitude 1, 16 or denormal (1e-40): O and LSE against the
 *               double-precision oracle of tests/oracle_fwd.h with its rule
 *               (2 x the naive f32 error + a floor), and the gradients
 *               against tests/oracle_bwd.h the same way;
 *   1 huge      Q and K up to 1e30 (logits up to ~1e36, never past f32's
 *               range), V and the bias up to 1e30: the same oracle rule
 *               (its row condition covers near ties of huge logits), so O
 *               and LSE finite and right; the backward must run;
 *   2 nonfinite a clean run, then one NaN, +inf or -inf in Q, K, V or the
 *               bias: the rule of include/attn.h (docs/decisions.md,
 *               "Non-finite inputs"): rows that see it get NaN in O and LSE
 *               (V: that column of O non-finite), every other row is
 *               bitwise untouched, except (V only) column c of the rows of
 *               an ATTN_TILE_Q x ATTN_TILE_K block that has a visible
 *               element; the backward must run;
 *   3 alias     f32 buffers in one arena, one pair of them (forward: q, k,
 *               v, o, lse; backward: q, k, v, o, lse, dout, dq, dk, dv)
 *               placed to overlap fully, partly, or to touch: an output in
 *               an overlapping pair (in the backward dq, dk, dv, and o or
 *               lse against q, k, v or each other, the forward's rule) is
 *               ATTN_ERR_OVERLAP from the check and the call, which writes
 *               nothing; other inputs may alias and give the bits of the
 *               same call on separate copies.
 * Modes 0 and 1 also draw Child et al.'s strided or fixed pattern (after
 * the other fields, when a byte 0xC5 follows them), which mostly runs as
 * two calls merged by LSE (src/kernels/sparse_split.c), with every other
 * option drawn.
 * Every valid forward and backward runs on 1, 2 and 3 threads, which must
 * give the same bits (NaN payloads included).
 */
#include "attn.h"
#include "carve.h"
#include "oracle_bwd.h"
#include "oracle_fwd.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what, int64_t id, const char *msg) {
  fprintf(stderr, "params2_fuzz: %s (%lld): %s\n", what, (long long)id,
          msg ? msg : "");
  abort();
}

static void *xcalloc(int64_t n, size_t es) {
  void *p = calloc((size_t)(n > 0 ? n : 1), es);
  if (p == NULL)
    abort();
  return p;
}

/* Stores f at element i of a dt array. */
static void put(void *p, attn_dtype dt, int64_t i, float f) {
  if (dt == ATTN_DTYPE_F32)
    ((float *)p)[i] = f;
  else if (dt == ATTN_DTYPE_BF16)
    ((uint16_t *)p)[i] = attn_f32_to_bf16(f);
  else
    ((uint16_t *)p)[i] = attn_f32_to_f16(f);
}

/* n values of magnitude mag, stored as dt (allocated). */
static void *make(int64_t n, attn_dtype dt, float mag, uint64_t *s) {
  size_t es = attn_dtype_size(dt);
  void *p = xcalloc(n, es ? es : 4);
  for (int64_t i = 0; i < n; i++)
    put(p, dt, i, mag * frand(s));
  return p;
}

/* Sequence lengths: half the draws are tile edges (ATTN_TILE_Q 48,
 * ATTN_TILE_K 64, their multiples, +-1), the rest 1..max. */
static int64_t pick_len(bytes *in, int64_t max) {
  static const int64_t edges[] = {1,   2,   3,   5,   7,   13,  31,  47,
                                  48,  49,  63,  64,  65,  95,  96,  97,
                                  127, 128, 129, 143, 144, 145, 191, 192,
                                  193, 255, 256, 257, 287, 288, 289, 300};
  const int64_t a = take(in, 256), b = take(in, 256);
  int64_t n = a < 128 ? edges[a % (int64_t)(sizeof edges / sizeof *edges)]
                      : 1 + (a * 256 + b) % max;
  return n > max ? 1 + n % max : n;
}

enum { M_ACC, M_HUGE, M_NONFINITE, M_ALIAS };

/* The problem carved out of one input. */
typedef struct fcase {
  int mode;
  int64_t batch, hk, hq, sq, sk, d, dv;
  attn_dtype dt;
  int bhsd, use_kv, use_bias, use_alibi;
  int sparse; /* Child et al.: 0 none, ATTN_SPARSE_STRIDED or _FIXED */
  int64_t sl, sc;
  attn_causal causal;
  int64_t wl, wr;
  float softcap, scale;
  float mq, mk, mv, mb; /* magnitudes of q, k, v, bias */
  /* nonfinite: target (0 q, 1 k, 2 v, 3 bias), value, position */
  int nf_t;
  float nf_val;
  int64_t nf_b, nf_x, nf_y, nf_c;
  /* alias: backward?, the pair, how it overlaps, threads */
  int al_bwd, al_x, al_y, al_kind, al_threads;
  int64_t al_delta;
  uint64_t seed;
} fcase;

static float pow10f_(int e) { return (float)pow(10.0, (double)e); }

/* magnitudes of mode 0 (denormal included) and mode 1 (huge) */
static void carve_mags(bytes *in, fcase *c) {
  c->mq = c->mk = c->mv = c->mb = 1.0f;
  if (c->mode == M_ACC || c->mode == M_NONFINITE) {
    static const float m[4] = {1.0f, 16.0f, 1e-40f, 1.0f};
    c->mq = m[take(in, 4)];
    c->mk = m[take(in, 4)];
    c->mv = m[take(in, 4)];
    return;
  }
  if (c->mode != M_HUGE)
    return;
  static const int eq[6] = {0, 4, 8, 15, 18, 30};
  static const int ev[4] = {0, 10, 20, 30};
  int a = eq[take(in, 6)], b = eq[take(in, 6)];
  int dig = c->d >= 10 ? 2 : 1;
  if (a + b > 36 - dig) /* logits stay finite: |q.k| < 1e36 */
    b = 36 - dig - a;
  int v = ev[take(in, 4)], bb = ev[take(in, 4)];
  if (c->dt == ATTN_DTYPE_F16) { /* f16 ends at 65504 */
    a = a > 4 ? 4 : a;
    b = b > 4 ? 4 : b;
    v = v > 4 ? 4 : v;
  }
  c->mq = pow10f_(a);
  c->mk = pow10f_(b);
  c->mv = pow10f_(v);
  c->mb = pow10f_(bb);
}

static void carve_nonfinite(bytes *in, fcase *c) {
  static const float vals[3] = {NAN, INFINITY, -INFINITY};
  c->nf_t = (int)take(in, 4);
  if (c->nf_t == 3)
    c->use_bias = 1;
  c->nf_val = vals[take(in, 3)];
  c->nf_b = take(in, c->batch);
  const int64_t a = take(in, 256), b = take(in, 256);
  const int64_t rows = c->nf_t == 0 ? c->sq : c->sk;
  c->nf_x = (a * 256 + b) % rows;
  c->nf_y = take(in, c->nf_t == 0 || c->nf_t == 3 ? c->hq : c->hk);
  c->nf_c = take(in, c->nf_t == 2 ? c->dv : c->d);
  if (c->nf_t == 3) { /* bias (b, h, i, j): x = i, c = j; +inf or NaN */
    c->nf_x = (a * 256 + b) % c->sq;
    c->nf_c = take(in, 256) * 256 + take(in, 256);
    c->nf_c %= c->sk;
    if (c->nf_val < 0)
      c->nf_val = NAN;
  }
}

static void carve_alias(bytes *in, fcase *c) {
  c->al_bwd = (int)take(in, 2);
  const int nbuf = c->al_bwd ? 9 : 5;
  c->al_x = (int)take(in, nbuf);
  c->al_y = (int)take(in, nbuf - 1);
  if (c->al_y >= c->al_x)
    c->al_y++;
  c->al_kind = (int)take(in, 4);
  c->al_delta = take(in, 256) * 256 + take(in, 256);
  c->al_threads = 1 + (int)take(in, 3);
}

static void carve(bytes *in, fcase *c) {
  memset(c, 0, sizeof *c);
  c->mode = (int)take(in, 4);
  static const int64_t maxlen[4] = {300, 160, 200, 40};
  c->batch = 1 + take(in, 2);
  c->hk = 1 + take(in, 2);
  c->hq = c->hk * (1 + take(in, 2));
  c->sq = pick_len(in, maxlen[c->mode]);
  c->sk = pick_len(in, maxlen[c->mode]);
  const int64_t dmax = c->mode == M_ACC ? 8 : 16;
  c->d = 1 + take(in, dmax);
  c->dv = 1 + take(in, dmax);
  c->dt = (attn_dtype)take(in, 3);
  if (c->mode == M_ALIAS)
    c->dt = ATTN_DTYPE_F32;
  c->bhsd = (int)take(in, 2);
  c->causal = (attn_causal)take(in, 3);
  c->wl = c->wr = -1;
  if (take(in, 4) == 3) {
    c->wl = take(in, 140) - 1;
    c->wr = take(in, 140) - 1;
  }
  c->use_kv = take(in, 3) == 2;
  c->use_bias = take(in, 3) == 2;
  c->softcap = take(in, 4) == 3 ? 1.0f + (float)take(in, 30) : 0.0f;
  c->use_alibi = take(in, 4) == 3;
  c->scale = take(in, 4) == 3 ? 0.1f * (float)(1 + take(in, 20)) : 0.0f;
  carve_mags(in, c);
  if (c->mode == M_NONFINITE) {
    c->softcap = 0; /* tanh(+inf) is finite: a rule of its own */
    carve_nonfinite(in, c);
  }
  if (c->mode == M_ALIAS) {
    c->use_kv = c->use_bias = 0; /* the arena holds q, k, v and outputs */
    carve_alias(in, c);
  }
  uint64_t seed = 0x243F6A8885A308D3ULL; /* the data: the bytes left */
  for (size_t i = 0; i < in->n; i++)
    seed = (seed ^ in->p[i]) * 0x100000001B3ULL;
  c->seed = seed ? seed : 1;
  /* last, behind a marker byte, and after the data seed, so that the seeds
   * written before it keep their meaning */
  if ((c->mode == M_ACC || c->mode == M_HUGE) && take(in, 256) == 0xC5) {
    c->sparse = take(in, 2) ? ATTN_SPARSE_FIXED : ATTN_SPARSE_STRIDED;
    c->sl = 2 + take(in, 64);
    c->sc = 1 + take(in, c->sl);
  }
  /* last again, behind its own marker: head dims of whole bf16 vector
   * pairs (32, 64), which the bf16 dot-product paths of the decode kernel
   * need on AVX-512 and the other draws never reach; at most 48 query rows
   * (the decode kernel's), bf16 inputs half the time */
  if ((c->mode == M_ACC || c->mode == M_HUGE) && take(in, 256) == 0xD3) {
    c->d = c->dv = 32 << take(in, 2);
    if (c->sq > 48)
      c->sq = 1 + c->sq % 48;
    if (take(in, 2))
      c->dt = ATTN_DTYPE_BF16;
  }
}

static attn_tensor view(void *d, attn_dtype dt, int bhsd, int64_t b, int64_t s,
                        int64_t h, int64_t dim) {
  return bhsd ? attn_tensor_bhsd(d, dt, b, s, h, dim)
              : attn_tensor_bshd(d, dt, b, s, h, dim);
}

/* Index of element (b, s, h, x) of a [batch, seq, heads, dim] tensor. */
static int64_t at(const fcase *c, int64_t b, int64_t s, int64_t h, int64_t x,
                  int64_t seq, int64_t heads, int64_t dim) {
  return c->bhsd ? ((b * heads + h) * seq + s) * dim + x
                 : ((b * seq + s) * heads + h) * dim + x;
}

/* The inputs of modes 0-2 and their params. */
typedef struct bufs {
  void *q, *k, *v;
  float *bias, *alibi;
  int32_t kv[2];
} bufs;

static void free_bufs(bufs *m) {
  free(m->q);
  free(m->k);
  free(m->v);
  free(m->bias);
  free(m->alibi);
}

static void build(fcase *c, bufs *m, attn_params *p) {
  attn_params_init(p);
  m->q = make(c->batch * c->sq * c->hq * c->d, c->dt, c->mq, &c->seed);
  m->k = make(c->batch * c->sk * c->hk * c->d, c->dt, c->mk, &c->seed);
  m->v = make(c->batch * c->sk * c->hk * c->dv, c->dt, c->mv, &c->seed);
  p->q = view(m->q, c->dt, c->bhsd, c->batch, c->sq, c->hq, c->d);
  p->k = view(m->k, c->dt, c->bhsd, c->batch, c->sk, c->hk, c->d);
  p->v = view(m->v, c->dt, c->bhsd, c->batch, c->sk, c->hk, c->dv);
  p->causal = c->causal;
  p->window_left = c->wl;
  p->window_right = c->wr;
  p->softcap = c->softcap;
  p->scale = c->scale;
  if (c->use_kv) {
    for (int64_t b = 0; b < c->batch; b++)
      m->kv[b] = 1 + (int32_t)((uint32_t)((frand(&c->seed) + 1.0f) * 4096.f) %
                               (uint32_t)c->sk);
    p->kv_lens = m->kv;
  }
  if (c->use_bias) {
    const int64_t n = c->batch * c->hq * c->sq * c->sk;
    m->bias = make(n, ATTN_DTYPE_F32, c->mb, &c->seed);
    if (c->mode != M_NONFINITE) /* a few masked by -inf */
      for (int64_t i = 0; i < n; i++)
        if (frand(&c->seed) > 0.9f)
          m->bias[i] = -INFINITY;
    p->bias = attn_tensor_contiguous(m->bias, ATTN_DTYPE_F32, c->batch, c->hq,
                                     c->sq, c->sk);
  }
  if (c->sparse) { /* mostly the split path (sparse_split.c) */
    p->sparse_kind = c->sparse;
    p->sparse_l = c->sl;
    p->sparse_c = c->sc;
  }
  if (c->use_alibi) {
    m->alibi = xcalloc(c->hq, sizeof(float));
    if (attn_alibi_slopes(c->hq, m->alibi) != ATTN_OK)
      die("attn_alibi_slopes failed", c->hq, "");
    p->alibi_slopes = m->alibi;
  }
}

/* Results of one forward and backward. */
typedef struct res {
  float *o, *lse, *dq, *dk, *dv;
} res;

static void res_alloc(const fcase *c, res *r) {
  r->o = xcalloc(c->batch * c->sq * c->hq * c->dv, sizeof(float));
  r->lse = xcalloc(c->batch * c->hq * c->sq, sizeof(float));
  r->dq = xcalloc(c->batch * c->sq * c->hq * c->d, sizeof(float));
  r->dk = xcalloc(c->batch * c->sk * c->hk * c->d, sizeof(float));
  r->dv = xcalloc(c->batch * c->sk * c->hk * c->dv, sizeof(float));
}

static void res_free(res *r) {
  free(r->o);
  free(r->lse);
  free(r->dq);
  free(r->dk);
  free(r->dv);
}

static void point_fwd(const fcase *c, attn_params *p, res *r) {
  p->o = view(r->o, ATTN_DTYPE_F32, c->bhsd, c->batch, c->sq, c->hq, c->dv);
  p->lse = r->lse;
}

/* Forward on 1, 2 and 3 threads into r[0..2]: all succeed, same bits. */
static void forward3(const fcase *c, attn_params *p, res r[3], char *msg) {
  const size_t no = (size_t)(c->batch * c->sq * c->hq * c->dv) * 4,
               nl = (size_t)(c->batch * c->hq * c->sq) * 4;
  for (int t = 0; t < 3; t++) {
    point_fwd(c, p, &r[t]);
    p->num_threads = t + 1;
    attn_status s = attn_forward(NULL, p);
    if (s != ATTN_OK)
      die("attn_forward rejected a valid problem", t + 1, msg);
  }
  for (int t = 1; t < 3; t++)
    if (memcmp(r[0].o, r[t].o, no) || memcmp(r[0].lse, r[t].lse, nl))
      die("the forward depends on the thread count", t + 1, "");
  point_fwd(c, p, &r[0]);
  p->num_threads = 1;
}

/* Backward on 1, 2 and 3 threads (from r[0]'s O and LSE): same bits. */
static void backward3(const fcase *c, attn_params *p, res r[3], float *dout,
                      char *msg) {
  const size_t nq = (size_t)(c->batch * c->sq * c->hq * c->d) * 4,
               nk = (size_t)(c->batch * c->sk * c->hk * c->d) * 4,
               nv = (size_t)(c->batch * c->sk * c->hk * c->dv) * 4;
  point_fwd(c, p, &r[0]);
  p->dout = view(dout, ATTN_DTYPE_F32, c->bhsd, c->batch, c->sq, c->hq, c->dv);
  for (int t = 0; t < 3; t++) {
    p->dq =
        view(r[t].dq, ATTN_DTYPE_F32, c->bhsd, c->batch, c->sq, c->hq, c->d);
    p->dk =
        view(r[t].dk, ATTN_DTYPE_F32, c->bhsd, c->batch, c->sk, c->hk, c->d);
    p->dv =
        view(r[t].dv, ATTN_DTYPE_F32, c->bhsd, c->batch, c->sk, c->hk, c->dv);
    p->num_threads = t + 1;
    attn_status s = attn_backward(NULL, p);
    if (s != ATTN_OK)
      die("attn_backward rejected a valid problem", t + 1, msg);
  }
  for (int t = 1; t < 3; t++)
    if (memcmp(r[0].dq, r[t].dq, nq) || memcmp(r[0].dk, r[t].dk, nk) ||
        memcmp(r[0].dv, r[t].dv, nv))
      die("the backward depends on the thread count", t + 1, "");
  p->dq = view(r[0].dq, ATTN_DTYPE_F32, c->bhsd, c->batch, c->sq, c->hq, c->d);
  p->dk = view(r[0].dk, ATTN_DTYPE_F32, c->bhsd, c->batch, c->sk, c->hk, c->d);
  p->dv = view(r[0].dv, ATTN_DTYPE_F32, c->bhsd, c->batch, c->sk, c->hk, c->dv);
  p->num_threads = 1;
}

/* Modes 0 and 1: the forward (and in mode 0 the backward) against the
 * double-precision oracle with the project's rule. */
static void run_accuracy(fcase *c, attn_params *p, char *msg) {
  res r[3];
  for (int t = 0; t < 3; t++)
    res_alloc(c, &r[t]);
  forward3(c, p, r, msg);
  oracle_ref ref;
  oracle_naive nv;
  oracle_cmp cmp;
  if (oracle_forward(p, &ref) != 0 || oracle_naive_f32(p, &nv) != 0)
    abort();
  oracle_compare(p, &ref, &nv, &cmp);
  if (!cmp.ok)
    die("the forward is outside the oracle's tolerance", c->mode, cmp.problem);
  oracle_ref_free(&ref);
  oracle_naive_free(&nv);
  float *dout =
      make(c->batch * c->sq * c->hq * c->dv, ATTN_DTYPE_F32, 1.0f, &c->seed);
  backward3(c, p, r, dout, msg);
  if (c->mode == M_ACC) {
    oracle_grads g, gn;
    oracle_grad_cmp gc;
    if (oracle_backward(p, &g) != 0 || oracle_backward_f32(p, &gn) != 0)
      abort();
    oracle_grads_compare(p, &g, &gn, &gc);
    if (!gc.ok)
      die("the backward is outside the oracle's tolerance", c->mode,
          gc.problem);
    oracle_grads_free(&g);
    oracle_grads_free(&gn);
  }
  free(dout);
  for (int t = 0; t < 3; t++)
    res_free(&r[t]);
}

/* May query i (head h, batch b) see key j? (No varlen in this harness.) */
static int sees(const attn_params *p, int64_t b, int64_t h, int64_t i,
                int64_t j) {
  oracle_seq_geom g;
  oracle_seq_geom_get(p, b, &g);
  if (i >= g.sq || j >= g.sk)
    return 0;
  return oracle_allowed(p, &g, h, i, j);
}

/* Does the block (query tile of row i, key tile of key j) of head h have a
 * visible element? */
static int block_live(const fcase *c, const attn_params *p, int64_t b,
                      int64_t h, int64_t i, int64_t j) {
  const int64_t i0 = i / ATTN_TILE_Q * ATTN_TILE_Q,
                j0 = j / ATTN_TILE_K * ATTN_TILE_K;
  for (int64_t ii = i0; ii < i0 + ATTN_TILE_Q && ii < c->sq; ii++)
    for (int64_t jj = j0; jj < j0 + ATTN_TILE_K && jj < c->sk; jj++)
      if (sees(p, b, h, ii, jj))
        return 1;
  return 0;
}

static int row_has_keys(const fcase *c, const attn_params *p, int64_t b,
                        int64_t h, int64_t i) {
  for (int64_t j = 0; j < c->sk; j++)
    if (sees(p, b, h, i, j))
      return 1;
  return 0;
}

/* Row (b, h, i) against the injected non-finite value: 2 = must be NaN
 * (O and LSE), 1 = V reaches column nf_c (non-finite), 0 = untouched; with
 * *loose = 1 column nf_c may hold anything (the tile exception). */
static int row_rule(const fcase *c, const attn_params *p, int64_t b, int64_t h,
                    int64_t i, int *loose) {
  *loose = 0;
  if (b != c->nf_b)
    return 0;
  const int64_t g = h / (c->hq / c->hk);
  switch (c->nf_t) {
  case 0: /* q (b, x, y, c) */
    return h == c->nf_y && i == c->nf_x && row_has_keys(c, p, b, h, i) ? 2 : 0;
  case 1: /* k (b, x, y, c) */
    return g == c->nf_y && sees(p, b, h, i, c->nf_x) ? 2 : 0;
  case 2: /* v (b, x, y, c) */
    if (g != c->nf_y)
      return 0;
    if (sees(p, b, h, i, c->nf_x))
      return 1;
    *loose = block_live(c, p, b, h, i, c->nf_x);
    return 0;
  default: /* bias (b, y, x, c) */
    return h == c->nf_y && i == c->nf_x && sees(p, b, h, i, c->nf_c) ? 2 : 0;
  }
}

static void inject(const fcase *c, bufs *m) {
  switch (c->nf_t) {
  case 0:
    put(m->q, c->dt,
        at(c, c->nf_b, c->nf_x, c->nf_y, c->nf_c, c->sq, c->hq, c->d),
        c->nf_val);
    break;
  case 1:
    put(m->k, c->dt,
        at(c, c->nf_b, c->nf_x, c->nf_y, c->nf_c, c->sk, c->hk, c->d),
        c->nf_val);
    break;
  case 2:
    put(m->v, c->dt,
        at(c, c->nf_b, c->nf_x, c->nf_y, c->nf_c, c->sk, c->hk, c->dv),
        c->nf_val);
    break;
  default:
    m->bias[((c->nf_b * c->hq + c->nf_y) * c->sq + c->nf_x) * c->sk + c->nf_c] =
        c->nf_val;
    break;
  }
}

static int same_bits(float a, float b) { return memcmp(&a, &b, 4) == 0; }

/* Mode 2: a clean run, the injection, the rule of attn.h row by row. */
static void run_nonfinite(fcase *c, bufs *m, attn_params *p, char *msg) {
  res clean[3], dirty[3];
  for (int t = 0; t < 3; t++) {
    res_alloc(c, &clean[t]);
    res_alloc(c, &dirty[t]);
  }
  forward3(c, p, clean, msg);
  inject(c, m);
  forward3(c, p, dirty, msg);
  for (int64_t b = 0; b < c->batch; b++)
    for (int64_t h = 0; h < c->hq; h++)
      for (int64_t i = 0; i < c->sq; i++) {
        int loose;
        const int rule = row_rule(c, p, b, h, i, &loose);
        const int64_t l = (b * c->hq + h) * c->sq + i;
        const float lc = clean[0].lse[l], ld = dirty[0].lse[l];
        if (rule == 2 ? !isnan(ld) : !same_bits(lc, ld))
          die(rule == 2 ? "a row that sees a non-finite value has a non-NaN "
                          "LSE"
                        : "a non-finite value changed the LSE of another row",
              l, "");
        for (int64_t x = 0; x < c->dv; x++) {
          const int64_t e = at(c, b, i, h, x, c->sq, c->hq, c->dv);
          const float oc = clean[0].o[e], od = dirty[0].o[e];
          if (rule == 2 && !isnan(od))
            die("a row that sees a non-finite value has a non-NaN O", e, "");
          if (rule == 1 && x == c->nf_c && isfinite(od))
            die("a non-finite V did not reach a row that sees it", e, "");
          if (rule == 0 && !(loose && x == c->nf_c) && !same_bits(oc, od))
            die("a non-finite value changed the O of a row that cannot see it",
                e, "");
          if (rule == 1 && x != c->nf_c && !same_bits(oc, od))
            die("a non-finite V changed another column", e, "");
        }
      }
  float *dout =
      make(c->batch * c->sq * c->hq * c->dv, ATTN_DTYPE_F32, 1.0f, &c->seed);
  backward3(c, p, dirty, dout, msg);
  free(dout);
  for (int t = 0; t < 3; t++) {
    res_free(&clean[t]);
    res_free(&dirty[t]);
  }
}

/* ---- mode 3: aliasing ---------------------------------------------------- */

enum { B_Q, B_K, B_V, B_O, B_LSE, B_DOUT, B_DQ, B_DK, B_DV, B_N };
static const char *const bname[B_N] = {"q",    "k",  "v",  "o", "lse",
                                       "dout", "dq", "dk", "dv"};

static int is_output(int bwd, int id) {
  return bwd ? id >= B_DQ : (id == B_O || id == B_LSE);
}

/* Elements of each buffer (f32, contiguous). */
static void alias_sizes(const fcase *c, int64_t n[B_N]) {
  n[B_Q] = n[B_DQ] = c->batch * c->sq * c->hq * c->d;
  n[B_K] = n[B_DK] = c->batch * c->sk * c->hk * c->d;
  n[B_V] = n[B_DV] = c->batch * c->sk * c->hk * c->dv;
  n[B_O] = n[B_DOUT] = c->batch * c->sq * c->hq * c->dv;
  n[B_LSE] = c->batch * c->hq * c->sq;
}

/* Points p's tensors at ptr[]. */
static void alias_point(const fcase *c, attn_params *p, float *ptr[B_N],
                        int bwd) {
  const attn_dtype f = ATTN_DTYPE_F32;
  p->q = view(ptr[B_Q], f, c->bhsd, c->batch, c->sq, c->hq, c->d);
  p->k = view(ptr[B_K], f, c->bhsd, c->batch, c->sk, c->hk, c->d);
  p->v = view(ptr[B_V], f, c->bhsd, c->batch, c->sk, c->hk, c->dv);
  p->o = view(ptr[B_O], f, c->bhsd, c->batch, c->sq, c->hq, c->dv);
  p->lse = ptr[B_LSE];
  if (!bwd)
    return;
  p->dout = view(ptr[B_DOUT], f, c->bhsd, c->batch, c->sq, c->hq, c->dv);
  p->dq = view(ptr[B_DQ], f, c->bhsd, c->batch, c->sq, c->hq, c->d);
  p->dk = view(ptr[B_DK], f, c->bhsd, c->batch, c->sk, c->hk, c->d);
  p->dv = view(ptr[B_DV], f, c->bhsd, c->batch, c->sk, c->hk, c->dv);
}

static attn_status alias_call(attn_params *p, int bwd, int check) {
  if (check)
    return bwd ? attn_backward_check(p) : attn_forward_check(p);
  return bwd ? attn_backward(NULL, p) : attn_forward(NULL, p);
}

/* Mode 3: buffers X and Y of one arena overlap (or touch); the rest are
 * apart. Layout: [others, 3 floats apart][n[Y] free][X][n[X] + n[Y] free]. */
static void run_alias(fcase *c, attn_params *p, char *msg) {
  const int bwd = c->al_bwd, nb = bwd ? B_N : B_DOUT, X = c->al_x, Y = c->al_y;
  int64_t n[B_N], off[B_N], pos = 0;
  alias_sizes(c, n);
  for (int i = 0; i < nb; i++)
    if (i != X && i != Y) {
      off[i] = pos;
      pos += n[i] + 3;
    }
  pos += n[Y];
  off[X] = pos;
  pos += n[X];
  const int64_t total = pos + n[X] + n[Y] + 3;
  int64_t delta; /* Y's start relative to X's */
  switch (c->al_kind) {
  case 0: /* the same start */
    delta = 0;
    break;
  case 1: /* touching after X */
    delta = n[X];
    break;
  case 2: /* touching before X */
    delta = -n[Y];
    break;
  default: /* overlapping: -n[Y] < delta < n[X] */
    delta = -n[Y] + 1 + c->al_delta % (n[X] + n[Y] - 1);
    break;
  }
  off[Y] = off[X] + delta;
  const int overlap = delta > -n[Y] && delta < n[X];
  float *arena = make(total, ATTN_DTYPE_F32, 1.0f, &c->seed);
  float *ptr[B_N];
  for (int i = 0; i < nb; i++)
    ptr[i] = arena + off[i];
  if (bwd) { /* a real forward's O and LSE (from copies), then into place */
    float *cp[B_N];
    for (int i = 0; i < B_N; i++) {
      cp[i] = xcalloc(n[i], sizeof(float));
      if (i < B_O)
        memcpy(cp[i], ptr[i], (size_t)n[i] * 4);
    }
    alias_point(c, p, cp, 0);
    if (attn_forward(NULL, p) != ATTN_OK)
      die("attn_forward rejected a valid problem", -1, msg);
    memcpy(ptr[B_O], cp[B_O], (size_t)n[B_O] * 4);
    memcpy(ptr[B_LSE], cp[B_LSE], (size_t)n[B_LSE] * 4);
    for (int i = 0; i < B_N; i++)
      free(cp[i]);
  }
  p->num_threads = c->al_threads;
  /* the reference: every buffer separate, inputs copied from the arena */
  float *sep[B_N];
  for (int i = 0; i < nb; i++) {
    sep[i] = xcalloc(n[i], sizeof(float));
    if (!is_output(bwd, i))
      memcpy(sep[i], ptr[i], (size_t)n[i] * 4);
  }
  alias_point(c, p, sep, bwd);
  if (alias_call(p, bwd, 0) != ATTN_OK)
    die("the call on separate buffers failed", X * 16 + Y, msg);
  float *before = xcalloc(total, sizeof(float));
  memcpy(before, arena, (size_t)total * 4);
  alias_point(c, p, ptr, bwd);
  /* the backward keeps the forward's rule: o and lse may not overlap q, k,
   * v or each other (attn_backward validates the forward's arguments) */
  const int fwd_pair =
      X < B_DOUT && Y < B_DOUT && (is_output(0, X) || is_output(0, Y));
  const int out = is_output(bwd, X) || is_output(bwd, Y) || fwd_pair;
  const attn_status want = overlap && out ? ATTN_ERR_OVERLAP : ATTN_OK;
  char what[96];
  snprintf(what, sizeof what, "%s and %s overlapping (delta %lld, %s)",
           bname[X], bname[Y], (long long)delta, bwd ? "backward" : "forward");
  for (int chk = 1; chk >= 0; chk--) {
    msg[0] = '\0';
    attn_status s = alias_call(p, bwd, chk);
    if (s != want) {
      fprintf(stderr, "params2_fuzz: %s: status %d (%s), want %d\n", what,
              (int)s, msg, (int)want);
      die(chk ? "the check function got aliasing wrong"
              : "the call got aliasing wrong",
          (int)s, what);
    }
    if (s != ATTN_OK && (msg[0] == '\0' || !memchr(msg, '\0', 256)))
      die("no error message for an overlap", (int)s, what);
  }
  if (want != ATTN_OK) {
    if (memcmp(before, arena, (size_t)total * 4) != 0)
      die("a call refused for overlap wrote to memory", 0, what);
  } else {
    for (int i = 0; i < nb; i++)
      if (is_output(bwd, i) && memcmp(sep[i], ptr[i], (size_t)n[i] * 4) != 0)
        die("aliased inputs gave different bits than separate copies", i, what);
  }
  free(before);
  for (int i = 0; i < nb; i++)
    free(sep[i]);
  free(arena);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  bytes in = {data, size};
  fcase c;
  carve(&in, &c);
  if (getenv("ATTN_FUZZ_VERBOSE")) /* what an input means, for a finding */
    fprintf(stderr,
            "params2_fuzz: mode %d batch %lld hq %lld hk %lld sq %lld sk %lld "
            "d %lld dv %lld dtype %d bhsd %d causal %d window %lld,%lld "
            "kv_lens %d bias %d softcap %g alibi %d scale %g mags q %g k %g "
            "v %g bias %g sparse %d (%lld, %lld)\n",
            c.mode, (long long)c.batch, (long long)c.hq, (long long)c.hk,
            (long long)c.sq, (long long)c.sk, (long long)c.d, (long long)c.dv,
            (int)c.dt, c.bhsd, (int)c.causal, (long long)c.wl, (long long)c.wr,
            c.use_kv, c.use_bias, (double)c.softcap, c.use_alibi,
            (double)c.scale, (double)c.mq, (double)c.mk, (double)c.mv,
            (double)c.mb, c.sparse, (long long)c.sl, (long long)c.sc);
  char msg[256];
  msg[0] = '\0';
  attn_params p;
  bufs m;
  memset(&m, 0, sizeof m);
  build(&c, &m, &p);
  p.error_message = msg;
  p.error_message_size = sizeof msg;
  p.isa = ATTN_ISA_AUTO;
  if (c.mode == M_ALIAS) {
    run_alias(&c, &p, msg);
  } else if (c.mode == M_NONFINITE) {
    run_nonfinite(&c, &m, &p, msg);
  } else {
    run_accuracy(&c, &p, msg);
  }
  free_bufs(&m);
  return 0;
}
