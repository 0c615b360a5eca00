/*
 * test_cache: KV caches (attn.h, "KV caches and decoding").
 *
 *   scenarios   random caches (sequences of different lengths, empty ones
 *               included, f32/bf16/f16 storage, GQA/MQA, head dims, page
 *               sizes 1, 7, 16, 64 and contiguous, random block tables),
 *               filled by appends of random sizes (k_new in any dtype and
 *               layout, RoPE on or off), then attend with 1 .. 50 query
 *               rows (f32, or bf16 without RoPE; also bf16 caches in
 *               pages of 1 and 7 keys with bf16 q) and random options.
 *               Checked:
 *                 - the stored rows equal the keys rotated by attn_rope_apply
 *                   and rounded to the cache dtype (bitwise);
 *                 - paged == contiguous, bitwise (o and lse);
 *                 - attend == attn_forward from scratch on the same keys with
 *                   the queries rotated by attn_rope_apply, bitwise (both
 *                   take the decode kernel when seq_q <= 48);
 *                 - attend against the double oracle (oracle_fwd.h's rule);
 *                 - 1, 2, 3 and 5 threads give the same bits;
 *                 - the tiled fallback (bias tensor): paged == contiguous.
 *   decode      tokens appended one by one, each attended with seq_q = 1,
 *               equal within the oracle's rule to the prefill of the same
 *               tokens (causal) and close to attn_forward's prefill.
 *   edges       page boundaries, a full cache (error, nothing written), an
 *               empty sequence (o = 0, lse = -inf).
 *   bad input   block table outside the pool, a page written twice, a
 *               position past the cache, mismatched heads and head dims,
 *               p.k set, NULL pointers, unknown struct size.
 *
 * Last line: "N passed, N failed".
 */
#include "attn.h"
#include "oracle_fwd.h"
#include "test_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long n_pass, n_fail;

#define MAXS 4
#define ATTN_MIN(a, b) ((a) < (b) ? (a) : (b))
#define ATTN_MAX(a, b) ((a) > (b) ? (a) : (b))

/* ---------------------------------------------------------------------- */
/* A scenario: one history of keys and values, two caches holding it.     */
/* ---------------------------------------------------------------------- */
typedef struct scen {
  int64_t S, hk, G, d, dv, cap, ps;
  attn_dtype dt;
  int rope;
  attn_rope r;
  int q16;            /* 1: every call's q is bf16 (bf16_q_scenarios) */
  int32_t lens[MAXS]; /* target lengths                                */
  float *kh, *vh;     /* history [S][cap][hk][d | dv] f32               */
  /* contiguous cache */
  attn_kv_cache cc;
  int32_t cc_lens[MAXS];
  /* paged cache */
  attn_kv_cache pc;
  int32_t pc_lens[MAXS];
  int32_t *table;
} scen;

static size_t esize(attn_dtype dt) { return attn_dtype_size(dt); }

static float round_to(float x, attn_dtype dt) {
  if (dt == ATTN_DTYPE_BF16)
    return tc_bf16_to_f32(tc_f32_to_bf16(x));
  if (dt == ATTN_DTYPE_F16)
    return tc_f16_to_f32(tc_f32_to_f16(x));
  return x;
}

/* Element i of a buffer of dtype dt, as f32. */
static float get(const void *buf, attn_dtype dt, size_t i) {
  if (dt == ATTN_DTYPE_F32)
    return ((const float *)buf)[i];
  const uint16_t h = ((const uint16_t *)buf)[i];
  return dt == ATTN_DTYPE_BF16 ? tc_bf16_to_f32(h) : tc_f16_to_f32(h);
}

static void put(void *buf, attn_dtype dt, size_t i, float x) {
  if (dt == ATTN_DTYPE_F32)
    ((float *)buf)[i] = x;
  else if (dt == ATTN_DTYPE_BF16)
    ((uint16_t *)buf)[i] = tc_f32_to_bf16(x);
  else
    ((uint16_t *)buf)[i] = tc_f32_to_f16(x);
}

/* forced: a bf16 cache of head dim forced_d in pages of forced_ps, no
 * RoPE, bf16 queries (forced_d 0: everything drawn) */
static void scen_init(scen *sc, tc_rng *r, int64_t forced_d,
                      int64_t forced_ps) {
  static const attn_dtype dts[3] = {ATTN_DTYPE_F32, ATTN_DTYPE_BF16,
                                    ATTN_DTYPE_F16};
  static const int64_t pss[4] = {1, 7, 16, 64};
  static const int64_t ds[][2] = {{64, 64}, {128, 128}, {32, 48},
                                  {8, 8},   {5, 5},     {96, 96}};
  static const int64_t hs[][2] = {{1, 1}, {4, 1}, {8, 2}, {6, 3}, {8, 8}};
  memset(sc, 0, sizeof *sc);
  sc->S = tc_range(r, 1, MAXS);
  const int64_t *h = hs[tc_below(r, 5)];
  sc->hk = h[1];
  sc->G = h[0] / h[1];
  const int64_t *dd = ds[tc_below(r, 6)];
  sc->d = dd[0];
  sc->dv = dd[1];
  sc->dt = dts[tc_below(r, 3)];
  sc->ps = pss[tc_below(r, 4)];
  sc->cap = tc_range(r, 1, 1400);
  /* Both caches get the same capacity (bias tensors index keys along it). */
  sc->cap = (sc->cap + sc->ps - 1) / sc->ps * sc->ps;
  for (int64_t s = 0; s < sc->S; s++) {
    sc->lens[s] = (int32_t)tc_range(r, 0, sc->cap);
    if (tc_chance(r, 0.15))
      sc->lens[s] = 0;
    else if (tc_chance(r, 0.2))
      sc->lens[s] = (int32_t)sc->cap;
    else if (tc_chance(r, 0.2)) { /* a page boundary +- 1 */
      const int64_t edge = sc->ps * tc_range(r, 0, 9) + tc_range(r, -1, 1);
      sc->lens[s] = (int32_t)ATTN_MIN(sc->cap, ATTN_MAX(0, edge));
    }
  }
  sc->rope = tc_chance(r, 0.5);
  if (forced_d > 0) {
    sc->d = sc->dv = forced_d;
    sc->dt = ATTN_DTYPE_BF16;
    sc->ps = forced_ps;
    sc->cap = (sc->cap + sc->ps - 1) / sc->ps * sc->ps;
    for (int64_t s = 0; s < sc->S; s++)
      sc->lens[s] = (int32_t)ATTN_MIN(sc->lens[s], sc->cap);
    sc->rope = 0;
    sc->q16 = 1;
  }
  attn_rope_init(&sc->r);
  if (sc->rope && tc_chance(r, 0.5))
    sc->r.style = ATTN_ROPE_INTERLEAVED;
  if (sc->d % 2)
    sc->r.dims = sc->d - 1; /* rope rotates pairs */
  const size_t kn = (size_t)(sc->S * sc->cap * sc->hk);
  sc->kh = tc_alloc(kn * (size_t)sc->d * sizeof(float));
  sc->vh = tc_alloc(kn * (size_t)sc->dv * sizeof(float));
  for (size_t i = 0; i < kn * (size_t)sc->d; i++)
    sc->kh[i] = (float)tc_normal(r);
  for (size_t i = 0; i < kn * (size_t)sc->dv; i++)
    sc->vh[i] = (float)tc_normal(r);
  /* contiguous: NaN bytes everywhere (a read of an unwritten row shows) */
  attn_kv_cache_init(&sc->cc);
  sc->cc.dtype = sc->dt;
  sc->cc.num_seqs = sc->S;
  sc->cc.heads_kv = sc->hk;
  sc->cc.head_dim = sc->d;
  sc->cc.head_dim_v = sc->dv;
  sc->cc.capacity = sc->cap;
  sc->cc.k = tc_alloc(kn * (size_t)sc->d * esize(sc->dt));
  sc->cc.v = tc_alloc(kn * (size_t)sc->dv * esize(sc->dt));
  memset(sc->cc.k, 0xFF, kn * (size_t)sc->d * esize(sc->dt));
  memset(sc->cc.v, 0xFF, kn * (size_t)sc->dv * esize(sc->dt));
  sc->cc.seq_lens = sc->cc_lens;
  /* paged: a shuffled pool with spare pages */
  const int64_t bps = (sc->cap + sc->ps - 1) / sc->ps;
  const int64_t np = sc->S * bps + tc_range(r, 0, 5);
  int32_t *perm = tc_alloc(sizeof(int32_t) * (size_t)np);
  for (int64_t i = 0; i < np; i++)
    perm[i] = (int32_t)i;
  for (int64_t i = np - 1; i > 0; i--) {
    const int64_t j = tc_below(r, i + 1);
    const int32_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  sc->table = tc_alloc(sizeof(int32_t) * (size_t)(sc->S * bps));
  memcpy(sc->table, perm, sizeof(int32_t) * (size_t)(sc->S * bps));
  free(perm);
  const size_t prow = (size_t)(np * sc->ps * sc->hk);
  attn_kv_cache_init(&sc->pc);
  sc->pc = sc->cc;
  sc->pc.capacity = 0;
  sc->pc.page_size = sc->ps;
  sc->pc.num_pages = np;
  sc->pc.blocks_per_seq = bps;
  sc->pc.block_table = sc->table;
  sc->pc.k = tc_alloc(prow * (size_t)sc->d * esize(sc->dt));
  sc->pc.v = tc_alloc(prow * (size_t)sc->dv * esize(sc->dt));
  memset(sc->pc.k, 0xFF, prow * (size_t)sc->d * esize(sc->dt));
  memset(sc->pc.v, 0xFF, prow * (size_t)sc->dv * esize(sc->dt));
  sc->pc.seq_lens = sc->pc_lens;
}

static void scen_free(scen *sc) {
  free(sc->kh);
  free(sc->vh);
  free(sc->cc.k);
  free(sc->cc.v);
  free(sc->pc.k);
  free(sc->pc.v);
  free(sc->table);
}

/* Appends the history up to lens in random steps into both caches. */
static void scen_fill(scen *sc, tc_rng *r) {
  static const attn_dtype dts[3] = {ATTN_DTYPE_F32, ATTN_DTYPE_BF16,
                                    ATTN_DTYPE_F16};
  const attn_rope *rope = sc->rope ? &sc->r : NULL;
  for (int step = 0; step < 200; step++) {
    int32_t nn[MAXS];
    int64_t mx = 0, left = 0;
    for (int64_t s = 0; s < sc->S; s++) {
      const int64_t rem = sc->lens[s] - sc->cc_lens[s];
      const int64_t most = ATTN_MIN(rem, 300);
      left += rem;
      nn[s] = (int32_t)(step == 199         ? rem
                        : tc_chance(r, 0.3) ? 0
                                            : tc_range(r, 0, most));
      mx = ATTN_MAX(mx, nn[s]);
    }
    if (left == 0)
      break;
    if (mx == 0)
      continue;
    /* k_new / v_new in a random dtype, bshd or bhsd */
    const attn_dtype in = dts[tc_below(r, 3)];
    const int bhsd = tc_chance(r, 0.3);
    void *kb = tc_alloc((size_t)(sc->S * mx * sc->hk * sc->d) * esize(in));
    void *vb = tc_alloc((size_t)(sc->S * mx * sc->hk * sc->dv) * esize(in));
    attn_tensor kn = bhsd ? attn_tensor_bhsd(kb, in, sc->S, mx, sc->hk, sc->d)
                          : attn_tensor_bshd(kb, in, sc->S, mx, sc->hk, sc->d);
    attn_tensor vn = bhsd ? attn_tensor_bhsd(vb, in, sc->S, mx, sc->hk, sc->dv)
                          : attn_tensor_bshd(vb, in, sc->S, mx, sc->hk, sc->dv);
    for (int64_t s = 0; s < sc->S; s++)
      for (int64_t j = 0; j < mx; j++)
        for (int64_t g = 0; g < sc->hk; g++) {
          /* rows past n_new[s] are not appended: zeros */
          const int64_t t = sc->cc_lens[s] + j;
          const int used = j < nn[s];
          const size_t src = (size_t)((s * sc->cap + t) * sc->hk + g);
          for (int64_t x = 0; x < sc->d; x++) {
            const size_t at = (size_t)(s * kn.stride[0] + j * kn.stride[1] +
                                       g * kn.stride[2] + x);
            /* the history holds what the input dtype can carry */
            if (used)
              sc->kh[src * sc->d + x] = round_to(sc->kh[src * sc->d + x], in);
            put(kb, in, at, used ? sc->kh[src * sc->d + x] : 0.0f);
          }
          for (int64_t x = 0; x < sc->dv; x++) {
            const size_t at = (size_t)(s * vn.stride[0] + j * vn.stride[1] +
                                       g * vn.stride[2] + x);
            if (used)
              sc->vh[src * sc->dv + x] = round_to(sc->vh[src * sc->dv + x], in);
            put(vb, in, at, used ? sc->vh[src * sc->dv + x] : 0.0f);
          }
        }
    attn_status a = attn_kv_cache_append(NULL, &sc->cc, kn, vn, nn, rope);
    attn_status b = attn_kv_cache_append(NULL, &sc->pc, kn, vn, nn, rope);
    CHECK(a == ATTN_OK && b == ATTN_OK, "append: %s / %s", attn_strerror(a),
          attn_strerror(b));
    free(kb);
    free(vb);
    if (a != ATTN_OK || b != ATTN_OK)
      return;
  }
  for (int64_t s = 0; s < sc->S; s++)
    CHECK(sc->cc_lens[s] == sc->lens[s] && sc->pc_lens[s] == sc->lens[s],
          "seq_lens after appends: %d %d, want %d", sc->cc_lens[s],
          sc->pc_lens[s], sc->lens[s]);
}

/* Address (element index) of token t of sequence s, head g in the paged
 * pool. */
static size_t paged_row(const scen *sc, int64_t s, int64_t t, int64_t g) {
  const int32_t pg = sc->table[s * sc->pc.blocks_per_seq + t / sc->ps];
  return (size_t)(((int64_t)pg * sc->ps + t % sc->ps) * sc->hk + g);
}

/* The stored rows: the history rotated by attn_rope_apply, rounded. */
static void check_stored(const scen *sc) {
  int64_t bad = 0;
  float row[256], rot[256];
  for (int64_t s = 0; s < sc->S; s++)
    for (int64_t t = 0; t < sc->lens[s]; t++)
      for (int64_t g = 0; g < sc->hk; g++) {
        const size_t src = (size_t)((s * sc->cap + t) * sc->hk + g);
        memcpy(row, sc->kh + src * sc->d, sizeof(float) * (size_t)sc->d);
        if (sc->rope) {
          attn_tensor x = attn_tensor_bshd(row, ATTN_DTYPE_F32, 1, 1, 1, sc->d);
          attn_tensor y = attn_tensor_bshd(rot, ATTN_DTYPE_F32, 1, 1, 1, sc->d);
          const int64_t pos = t;
          attn_rope_apply(&sc->r, x, y, &pos, 0, NULL, 0);
          memcpy(row, rot, sizeof(float) * (size_t)sc->d);
        }
        const size_t pr = paged_row(sc, s, t, g);
        for (int64_t x = 0; x < sc->d; x++) {
          const float want = round_to(row[x], sc->dt);
          if (get(sc->cc.k, sc->dt, src * sc->d + x) != want ||
              get(sc->pc.k, sc->dt, pr * sc->d + x) != want) {
            if (bad++ < 3)
              printf("  k s %lld t %lld g %lld x %lld: %g %g want %g\n",
                     (long long)s, (long long)t, (long long)g, (long long)x,
                     get(sc->cc.k, sc->dt, src * sc->d + x),
                     get(sc->pc.k, sc->dt, pr * sc->d + x), want);
          }
        }
        for (int64_t x = 0; x < sc->dv; x++) {
          const float want = round_to(sc->vh[src * sc->dv + x], sc->dt);
          if (get(sc->cc.v, sc->dt, src * sc->dv + x) != want ||
              get(sc->pc.v, sc->dt, pr * sc->dv + x) != want)
            bad++;
        }
      }
  CHECK(bad == 0, "%lld stored elements differ from the rotated history",
        (long long)bad);
}

/* ---------------------------------------------------------------------- */
/* Attend                                                                 */
/* ---------------------------------------------------------------------- */
typedef struct call {
  int64_t sq;
  float *q, *qrot, *o[3], *lse[3];
  uint16_t *q16; /* bf16 q, or NULL */
  float *bias;
  int32_t kvl[MAXS];
  int64_t pos[MAXS * 64];
  attn_params p; /* options, q, o[0], lse[0]; k, v unset */
} call;

static void call_init(call *cl, const scen *sc, tc_rng *r, int64_t sq,
                      int with_bias) {
  memset(cl, 0, sizeof *cl);
  cl->sq = sq;
  const int64_t hq = sc->hk * sc->G;
  const size_t nq = (size_t)(sc->S * sq * hq);
  cl->q = tc_alloc(nq * (size_t)sc->d * sizeof(float));
  cl->qrot = tc_alloc(nq * (size_t)sc->d * sizeof(float));
  for (size_t i = 0; i < nq * (size_t)sc->d; i++)
    cl->q[i] = (float)tc_normal(r);
  for (int k = 0; k < 3; k++) {
    cl->o[k] = tc_alloc(nq * (size_t)sc->dv * sizeof(float));
    cl->lse[k] = tc_alloc(nq * sizeof(float));
  }
  attn_params *p = &cl->p;
  attn_params_init(p);
  p->q = attn_tensor_bshd(cl->q, ATTN_DTYPE_F32, sc->S, sq, hq, sc->d);
  /* bf16 q (without RoPE, whose from-scratch twin rotates into f32): on
   * a bf16 cache the decode multiplies with bf16 dot products or AMX
   * tiles, whose keys must give the same bits from pages as from one
   * block */
  if (!sc->rope && (sc->q16 || tc_chance(r, 0.3))) {
    cl->q16 = tc_alloc(nq * (size_t)sc->d * sizeof(uint16_t));
    for (size_t i = 0; i < nq * (size_t)sc->d; i++)
      cl->q16[i] = tc_f32_to_bf16(cl->q[i]);
    p->q = attn_tensor_bshd(cl->q16, ATTN_DTYPE_BF16, sc->S, sq, hq, sc->d);
  }
  p->o = attn_tensor_bshd(cl->o[0], ATTN_DTYPE_F32, sc->S, sq, hq, sc->dv);
  p->lse = cl->lse[0];
  const int64_t mode = tc_below(r, 4);
  if (mode == 1)
    p->causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  else if (mode == 2)
    p->causal = ATTN_CAUSAL_TOP_LEFT;
  if (tc_chance(r, 0.25))
    p->window_left = tc_range(r, 0, 300);
  if (tc_chance(r, 0.2))
    p->softcap = 20.0f;
  if (tc_chance(r, 0.2)) {
    static float slopes[64];
    attn_alibi_slopes(hq, slopes);
    p->alibi_slopes = slopes;
  }
  if (tc_chance(r, 0.25)) { /* sinks (0.4), sometimes -inf for a head */
    static float sinks[64];
    for (int64_t h = 0; h < hq; h++)
      sinks[h] = tc_chance(r, 0.2) ? -INFINITY : (float)(2.0 * tc_normal(r));
    p->sinks = sinks;
  }
  if (with_bias) {
    int64_t mx = 1;
    for (int64_t s = 0; s < sc->S; s++)
      mx = ATTN_MAX(mx, sc->lens[s]);
    const size_t n = (size_t)(hq * sq * sc->cap);
    cl->bias = tc_alloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
      cl->bias[i] = (float)tc_uniform(r, -1, 1);
    p->bias =
        attn_tensor_contiguous(cl->bias, ATTN_DTYPE_F32, 1, hq, sq, sc->cap);
  }
}

static void call_free(call *cl) {
  free(cl->q);
  free(cl->q16);
  free(cl->qrot);
  for (int k = 0; k < 3; k++) {
    free(cl->o[k]);
    free(cl->lse[k]);
  }
  free(cl->bias);
}

static int same(const float *a, const float *b, size_t n) {
  return memcmp(a, b, n * sizeof(float)) == 0;
}

/* attend on cache c into o[k], lse[k] with nthreads. */
static attn_status attend(call *cl, const scen *sc, const attn_kv_cache *c,
                          int k, int nthreads, char *msg) {
  attn_params p = cl->p;
  p.o.data = cl->o[k];
  p.lse = cl->lse[k];
  p.num_threads = nthreads;
  p.error_message = msg;
  p.error_message_size = 256;
  msg[0] = '\0';
  return attn_kv_cache_attend(NULL, c, &p, sc->rope ? &sc->r : NULL);
}

/* The same call from scratch: q rotated by attn_rope_apply, k and v the
 * contiguous cache as tensors, kv_lens = seq_lens; into o[2]. */
static attn_params from_scratch(call *cl, const scen *sc) {
  attn_params p = cl->p;
  const int64_t hq = sc->hk * sc->G;
  if (sc->rope) {
    for (int64_t s = 0; s < sc->S; s++)
      for (int64_t i = 0; i < cl->sq; i++)
        cl->pos[s * cl->sq + i] = sc->lens[s] - cl->sq + i;
    attn_tensor y =
        attn_tensor_bshd(cl->qrot, ATTN_DTYPE_F32, sc->S, cl->sq, hq, sc->d);
    attn_status st = attn_rope_apply(&sc->r, p.q, y, cl->pos, 0, NULL, 0);
    CHECK(st == ATTN_OK, "attn_rope_apply: %s", attn_strerror(st));
    p.q = y;
  }
  p.k = attn_tensor_bshd(sc->cc.k, sc->dt, sc->S, sc->cap, sc->hk, sc->d);
  p.v = attn_tensor_bshd(sc->cc.v, sc->dt, sc->S, sc->cap, sc->hk, sc->dv);
  memcpy(cl->kvl, sc->lens, sizeof cl->kvl);
  p.kv_lens = cl->kvl;
  p.o.data = cl->o[2];
  p.lse = cl->lse[2];
  return p;
}

static void check_call(const scen *sc, tc_rng *r, int64_t sq, int with_bias) {
  call cl;
  call_init(&cl, sc, r, sq, with_bias);
  const size_t no = (size_t)(sc->S * sq * sc->hk * sc->G * sc->dv);
  const size_t nl = (size_t)(sc->S * sq * sc->hk * sc->G);
  char msg[256];
  attn_status a = attend(&cl, sc, &sc->cc, 0, 1, msg);
  CHECK(a == ATTN_OK, "attend contiguous: %s: %s", attn_strerror(a), msg);
  attn_status b = attend(&cl, sc, &sc->pc, 1, 1, msg);
  CHECK(b == ATTN_OK, "attend paged: %s: %s", attn_strerror(b), msg);
  CHECK(same(cl.o[0], cl.o[1], no) && same(cl.lse[0], cl.lse[1], nl),
        "paged != contiguous (sq %lld, page %lld, bias %d)", (long long)sq,
        (long long)sc->ps, with_bias);
  { /* a 0.5 sparse pattern: refused with a reason, never ignored */
    call cs = cl;
    cs.p.sparse_kind = ATTN_SPARSE_STRIDED;
    cs.p.sparse_l = 4;
    attn_status e = attend(&cs, sc, &sc->cc, 2, 1, msg);
    CHECK(e == ATTN_ERR_INVALID_ARGUMENT && strstr(msg, "sparse"),
          "attend with a sparse pattern: %s: %s", attn_strerror(e), msg);
  }
  /* A caller workspace of exactly the reported size: the same bits; one
   * byte less: ATTN_ERR_WORKSPACE_TOO_SMALL. */
  for (int paged = 0; paged < 2; paged++) {
    const attn_kv_cache *cc = paged ? &sc->pc : &sc->cc;
    attn_params wp = cl.p;
    wp.o.data = cl.o[1];
    wp.lse = cl.lse[1];
    wp.num_threads = 2;
    size_t bytes = 0;
    attn_status w = attn_kv_cache_attend_workspace_size(
        NULL, cc, &wp, sc->rope ? &sc->r : NULL, &bytes);
    CHECK(w == ATTN_OK && bytes > 0, "attend workspace size: %s",
          attn_strerror(w));
    void *ws = malloc(bytes);
    wp.workspace = ws;
    wp.workspace_size = bytes - 1;
    w = attn_kv_cache_attend(NULL, cc, &wp, sc->rope ? &sc->r : NULL);
    CHECK(w == ATTN_ERR_WORKSPACE_TOO_SMALL,
          "attend with a workspace one byte short: %s", attn_strerror(w));
    wp.workspace_size = bytes;
    w = attn_kv_cache_attend(NULL, cc, &wp, sc->rope ? &sc->r : NULL);
    CHECK(w == ATTN_OK && same(cl.o[0], cl.o[1], no) &&
              same(cl.lse[0], cl.lse[1], nl),
          "attend with a caller workspace (paged %d): %s", paged,
          attn_strerror(w));
    free(ws);
  }
  static const int team[] = {2, 3, 5};
  for (int t = 0; t < 3 && !with_bias; t++) {
    attend(&cl, sc, t % 2 ? &sc->cc : &sc->pc, 1, team[t], msg);
    CHECK(same(cl.o[0], cl.o[1], no) && same(cl.lse[0], cl.lse[1], nl),
          "%d threads differ from 1", team[t]);
  }
  attn_params p = from_scratch(&cl, sc);
  char fmsg[256];
  p.error_message = fmsg;
  p.error_message_size = sizeof fmsg;
  attn_status f = attn_forward(NULL, &p);
  CHECK(f == ATTN_OK, "attn_forward: %s: %s", attn_strerror(f), fmsg);
  if (sq <= ATTN_DECODE_MAX_ROWS || with_bias)
    CHECK(same(cl.o[0], cl.o[2], no) && same(cl.lse[0], cl.lse[2], nl),
          "attend != attn_forward from scratch (sq %lld)", (long long)sq);
  /* the oracle, on attend's own output */
  oracle_ref ref;
  oracle_naive nv;
  oracle_cmp cmp;
  if (oracle_forward(&p, &ref) != 0 || oracle_naive_f32(&p, &nv) != 0) {
    fprintf(stderr, "test_cache: oracle out of memory\n");
    exit(2);
  }
  p.o.data = cl.o[0];
  p.lse = cl.lse[0];
  oracle_compare(&p, &ref, &nv, &cmp);
  CHECK(cmp.ok, "attend vs oracle (sq %lld): %s; o err %.3g naive %.3g",
        (long long)sq, cmp.problem, cmp.err_o, cmp.err_o_naive);
  oracle_ref_free(&ref);
  oracle_naive_free(&nv);
  call_free(&cl);
}

static void scenarios(uint64_t seed, int n) {
  for (int i = 0; i < n; i++) {
    tc_rng r = {tc_case_seed(seed, (uint64_t)i)};
    scen sc;
    scen_init(&sc, &r, 0, 0);
    scen_fill(&sc, &r);
    check_stored(&sc);
    static const int64_t sqs[] = {1, 2, 3, 5, 16, 47, 48, 50};
    const int64_t sq = sqs[tc_below(&r, 8)];
    check_call(&sc, &r, sq, 0);
    if (i % 4 == 0)
      check_call(&sc, &r, tc_range(&r, 1, 4), 1);
    scen_free(&sc);
  }
}

/* bf16 q on bf16 caches of whole 32-dim steps in pages of 1 and 7 keys:
 * the decode's bf16 dot products (AMX tiles on amxbf16) read keys whose
 * rows are not evenly spaced, and paged must still equal contiguous. */
static void bf16_q_scenarios(uint64_t seed, int n) {
  for (int i = 0; i < n; i++) {
    tc_rng r = {tc_case_seed(seed, (uint64_t)i)};
    scen sc;
    scen_init(&sc, &r, i % 2 ? 128 : 64, i % 4 < 2 ? 1 : 7);
    scen_fill(&sc, &r);
    check_stored(&sc);
    static const int64_t sqs[] = {1, 2, 5, 48};
    check_call(&sc, &r, sqs[tc_below(&r, 4)], 0);
    scen_free(&sc);
  }
}

/* ---------------------------------------------------------------------- */
/* Decode token by token == prefill                                       */
/* ---------------------------------------------------------------------- */
static void decode_vs_prefill(uint64_t seed, int64_t L, int64_t ps,
                              attn_dtype dt) {
  tc_rng r = {seed};
  const int64_t S = 2, hk = 2, G = 4, hq = hk * G, d = 64;
  attn_rope rope;
  attn_rope_init(&rope);
  /* the whole sequence: q, k, v [S][L][h][d] f32 */
  float *q = tc_alloc(sizeof(float) * (size_t)(S * L * hq * d));
  float *k = tc_alloc(sizeof(float) * (size_t)(S * L * hk * d));
  float *v = tc_alloc(sizeof(float) * (size_t)(S * L * hk * d));
  for (int64_t i = 0; i < S * L * hq * d; i++)
    q[i] = (float)tc_normal(&r);
  for (int64_t i = 0; i < S * L * hk * d; i++) {
    k[i] = round_to((float)tc_normal(&r), dt);
    v[i] = round_to((float)tc_normal(&r), dt);
  }
  /* paged cache, pages in reverse order */
  const int64_t bps = (L + ps - 1) / ps, np = S * bps;
  int32_t *table = tc_alloc(sizeof(int32_t) * (size_t)np);
  for (int64_t i = 0; i < np; i++)
    table[i] = (int32_t)(np - 1 - i);
  int32_t lens[2] = {0, 0};
  attn_kv_cache c;
  attn_kv_cache_init(&c);
  c.dtype = dt;
  c.num_seqs = S;
  c.heads_kv = hk;
  c.head_dim = d;
  c.page_size = ps;
  c.num_pages = np;
  c.blocks_per_seq = bps;
  c.block_table = table;
  c.seq_lens = lens;
  c.k = tc_alloc((size_t)(np * ps * hk * d) * attn_dtype_size(dt));
  c.v = tc_alloc((size_t)(np * ps * hk * d) * attn_dtype_size(dt));
  float *od = tc_alloc(sizeof(float) * (size_t)(S * L * hq * d));
  float *ld = tc_alloc(sizeof(float) * (size_t)(S * hq * L));
  float ob[2 * 8 * 64], lb[2 * 8];
  int ok = 1;
  for (int64_t t = 0; t < L && ok; t++) {
    /* token t of both sequences: a [S, 1, h, d] view into the history */
    attn_tensor kn =
        attn_tensor_bshd(k + t * hk * d, ATTN_DTYPE_F32, S, 1, hk, d);
    attn_tensor vn =
        attn_tensor_bshd(v + t * hk * d, ATTN_DTYPE_F32, S, 1, hk, d);
    kn.stride[0] = vn.stride[0] = L * hk * d;
    ok = attn_kv_cache_append(NULL, &c, kn, vn, NULL, &rope) == ATTN_OK;
    attn_params p;
    attn_params_init(&p);
    p.q = attn_tensor_bshd(q + t * hq * d, ATTN_DTYPE_F32, S, 1, hq, d);
    p.q.stride[0] = L * hq * d;
    p.o = attn_tensor_bshd(ob, ATTN_DTYPE_F32, S, 1, hq, d);
    p.lse = lb;
    p.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    ok = ok && attn_kv_cache_attend(NULL, &c, &p, &rope) == ATTN_OK;
    for (int64_t s = 0; s < S; s++)
      for (int64_t h = 0; h < hq; h++) {
        memcpy(od + ((s * L + t) * hq + h) * d, ob + (s * hq + h) * d,
               sizeof(float) * (size_t)d);
        ld[(s * hq + h) * L + t] = lb[s * hq + h];
      }
  }
  CHECK(ok, "decode steps (L %lld)", (long long)L);
  /* prefill: q and k rotated at their positions, causal, all rows */
  attn_params p;
  attn_params_init(&p);
  float *qr = tc_alloc(sizeof(float) * (size_t)(S * L * hq * d));
  float *kr = tc_alloc(sizeof(float) * (size_t)(S * L * hk * d));
  p.q = attn_tensor_bshd(q, ATTN_DTYPE_F32, S, L, hq, d);
  p.k = attn_tensor_bshd(k, ATTN_DTYPE_F32, S, L, hk, d);
  p.v = attn_tensor_bshd(v, ATTN_DTYPE_F32, S, L, hk, d);
  attn_tensor qo = attn_tensor_bshd(qr, ATTN_DTYPE_F32, S, L, hq, d);
  attn_tensor ko = attn_tensor_bshd(kr, ATTN_DTYPE_F32, S, L, hk, d);
  float *op = tc_alloc(sizeof(float) * (size_t)(S * L * hq * d));
  float *lp = tc_alloc(sizeof(float) * (size_t)(S * hq * L));
  p.o = attn_tensor_bshd(op, ATTN_DTYPE_F32, S, L, hq, d);
  p.lse = lp;
  CHECK(attn_rope_apply_qk(&rope, &p, qo, ko, 0) == ATTN_OK, "rope q, k");
  /* the cache stores keys rounded to its dtype after rotation */
  for (int64_t i = 0; i < S * L * hk * d; i++)
    kr[i] = round_to(kr[i], dt);
  p.q = qo;
  p.k = ko;
  p.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  CHECK(attn_forward(NULL, &p) == ATTN_OK, "prefill");
  double diff = 0;
  for (int64_t i = 0; i < S * L * hq * d; i++)
    diff = fmax(diff, fabs((double)op[i] - od[i]));
  oracle_ref ref;
  oracle_naive nv;
  oracle_cmp cmp;
  if (oracle_forward(&p, &ref) != 0 || oracle_naive_f32(&p, &nv) != 0)
    exit(2);
  p.o.data = od; /* the decode's rows, judged as the prefill's */
  p.lse = ld;
  oracle_compare(&p, &ref, &nv, &cmp);
  CHECK(cmp.ok, "decode token by token vs prefill oracle (L %lld): %s",
        (long long)L, cmp.problem);
  CHECK(diff <= 2 * cmp.err_o + 2 * cmp.err_o_naive + 1e-5,
        "decode vs attn_forward prefill: max diff %.3g", diff);
  printf("decode vs prefill: L %lld page %lld %s: max |decode - prefill| "
         "%.3g, oracle err %.3g (naive %.3g)\n",
         (long long)L, (long long)ps, dt == ATTN_DTYPE_F32 ? "f32" : "bf16",
         diff, cmp.err_o, cmp.err_o_naive);
  oracle_ref_free(&ref);
  oracle_naive_free(&nv);
  free(q), free(k), free(v), free(qr), free(kr), free(op), free(lp);
  free(od), free(ld), free(table), free(c.k), free(c.v);
}

/* ---------------------------------------------------------------------- */
/* Edges and bad input                                                    */
/* ---------------------------------------------------------------------- */
typedef struct small {
  attn_kv_cache c;
  int32_t lens[3];
  int32_t table[3 * 4];
  float k[12 * 4 * 2 * 8], v[12 * 4 * 2 * 8];
  float q[3 * 2 * 4 * 8], o[3 * 2 * 4 * 8], lse[3 * 4 * 2];
  float kn[3 * 5 * 2 * 8];
  attn_params p;
  char msg[256];
} small;

/* 3 sequences, 2 kv heads, 4 query heads, head dim 8, paged: 12 pages of
 * 4 tokens, 4 blocks per sequence (capacity 16). */
static void small_init(small *m, int paged) {
  memset(m, 0, sizeof *m);
  attn_kv_cache_init(&m->c);
  m->c.num_seqs = 3;
  m->c.heads_kv = 2;
  m->c.head_dim = 8;
  m->c.k = m->k;
  m->c.v = m->v;
  m->c.seq_lens = m->lens;
  if (paged) {
    m->c.page_size = 4;
    m->c.num_pages = 12;
    m->c.blocks_per_seq = 4;
    for (int i = 0; i < 12; i++)
      m->table[i] = (int32_t)((i * 5) % 12);
    m->c.block_table = m->table;
  } else {
    m->c.capacity = 16;
  }
  for (size_t i = 0; i < sizeof m->kn / sizeof m->kn[0]; i++)
    m->kn[i] = (float)(i % 7) * 0.25f - 0.5f;
  for (size_t i = 0; i < sizeof m->q / sizeof m->q[0]; i++)
    m->q[i] = (float)(i % 5) * 0.3f;
  attn_params_init(&m->p);
  m->p.q = attn_tensor_bshd(m->q, ATTN_DTYPE_F32, 3, 2, 4, 8);
  m->p.o = attn_tensor_bshd(m->o, ATTN_DTYPE_F32, 3, 2, 4, 8);
  m->p.lse = m->lse;
  m->p.error_message = m->msg;
  m->p.error_message_size = sizeof m->msg;
  m->c.error_message = m->msg; /* append's reasons */
  m->c.error_message_size = sizeof m->msg;
}

static attn_status small_append(small *m, int64_t n, const int32_t *nn) {
  attn_tensor t = attn_tensor_bshd(m->kn, ATTN_DTYPE_F32, 3, n, 2, 8);
  return attn_kv_cache_append(NULL, &m->c, t, t, nn, NULL);
}

static void edges(void) {
  for (int paged = 0; paged < 2; paged++) {
    small m;
    small_init(&m, paged);
    /* different lengths, one empty, across page boundaries */
    const int32_t nn[3] = {5, 0, 4};
    CHECK(small_append(&m, 5, nn) == ATTN_OK, "append 5/0/4");
    CHECK(m.lens[0] == 5 && m.lens[1] == 0 && m.lens[2] == 4, "lens");
    CHECK(attn_kv_cache_attend(NULL, &m.c, &m.p, NULL) == ATTN_OK, "attend: %s",
          m.msg);
    int zero = 1;
    for (int i = 0; i < 2 * 4 * 8; i++)
      zero &= m.o[(1 * 2 * 4) * 8 + i] == 0.0f;
    for (int i = 0; i < 4 * 2; i++)
      zero &= m.lse[1 * 8 + i] == -INFINITY;
    CHECK(zero, "empty sequence: o = 0 and lse = -inf");
    CHECK(isfinite(m.lse[0]) && isfinite(m.lse[16]), "stored rows attended");
    /* fill to exactly the capacity, then a full cache */
    const int32_t fill[3] = {5, 5, 5};
    CHECK(small_append(&m, 5, fill) == ATTN_OK, "append to 10/5/9");
    const int32_t fill2[3] = {5, 5, 5};
    CHECK(small_append(&m, 5, fill2) == ATTN_OK, "append to 15/10/14");
    const int32_t last[3] = {1, 0, 2};
    CHECK(small_append(&m, 5, last) == ATTN_OK, "append to 16/10/16");
    CHECK(m.lens[0] == 16 && m.lens[2] == 16, "full lengths");
    float kcopy[sizeof m.k / sizeof m.k[0]];
    memcpy(kcopy, m.k, sizeof kcopy);
    const int32_t over[3] = {0, 1, 1};
    m.msg[0] = '\0';
    CHECK(small_append(&m, 5, over) == ATTN_ERR_INVALID_SEQLENS &&
              strstr(m.msg, "is full"),
          "a full cache is an error with its reason (\"%s\")", m.msg);
    CHECK(memcmp(kcopy, m.k, sizeof kcopy) == 0 && m.lens[1] == 10,
          "a failed append writes nothing");
    CHECK(attn_kv_cache_attend(NULL, &m.c, &m.p, NULL) == ATTN_OK,
          "attend on a full cache: %s", m.msg);
  }
}

static void bad_input(void) {
  small m;
  small_init(&m, 1);
  const int32_t nn[3] = {3, 3, 3};
  CHECK(small_append(&m, 3, nn) == ATTN_OK, "append");
  /* a block table pointing outside the pool */
  m.table[1 * 4 + 0] = 12;
  CHECK(attn_kv_cache_attend(NULL, &m.c, &m.p, NULL) ==
            ATTN_ERR_INVALID_ARGUMENT,
        "page outside the pool (attend)");
  printf("  page outside the pool: %s\n", m.msg);
  CHECK(small_append(&m, 3, nn) == ATTN_ERR_INVALID_ARGUMENT,
        "page outside the pool (append)");
  m.table[1 * 4 + 0] = -1;
  CHECK(small_append(&m, 3, nn) == ATTN_ERR_INVALID_ARGUMENT,
        "negative page (append)");
  m.table[1 * 4 + 0] = 5;
  /* a page written by two sequences */
  m.table[2 * 4 + 0] = m.table[0 * 4 + 0];
  m.msg[0] = '\0';
  CHECK(small_append(&m, 3, nn) == ATTN_ERR_INVALID_ARGUMENT &&
            strstr(m.msg, "written twice"),
        "a page written twice (\"%s\")", m.msg);
  small_init(&m, 1);
  CHECK(small_append(&m, 3, nn) == ATTN_OK, "append");
  /* a position past the cache */
  m.lens[0] = 17;
  CHECK(attn_kv_cache_attend(NULL, &m.c, &m.p, NULL) ==
            ATTN_ERR_INVALID_SEQLENS,
        "seq_lens past the capacity");
  printf("  seq_lens past the capacity: %s\n", m.msg);
  m.lens[0] = -1;
  CHECK(small_append(&m, 3, nn) == ATTN_ERR_INVALID_SEQLENS, "negative len");
  m.lens[0] = 3;
  const int32_t bad_n[3] = {4, 0, 0};
  m.msg[0] = '\0';
  CHECK(small_append(&m, 3, bad_n) == ATTN_ERR_INVALID_SEQLENS &&
            strstr(m.msg, "n_new[0]"),
        "n_new past seq_new (\"%s\")", m.msg);
  /* mismatched head counts and head dims */
  m.p.q = attn_tensor_bshd(m.q, ATTN_DTYPE_F32, 3, 2, 3, 8);
  m.p.o = attn_tensor_bshd(m.o, ATTN_DTYPE_F32, 3, 2, 3, 8);
  CHECK(attn_kv_cache_attend(NULL, &m.c, &m.p, NULL) == ATTN_ERR_HEAD_RATIO,
        "q heads not a multiple of the cache's");
  printf("  mismatched heads: %s\n", m.msg);
  m.p.q = attn_tensor_bshd(m.q, ATTN_DTYPE_F32, 3, 2, 4, 4);
  m.p.o = attn_tensor_bshd(m.o, ATTN_DTYPE_F32, 3, 2, 4, 8);
  CHECK(attn_kv_cache_attend(NULL, &m.c, &m.p, NULL) == ATTN_ERR_HEAD_DIM,
        "q head_dim differs from the cache's");
  m.p.q = attn_tensor_bshd(m.q, ATTN_DTYPE_F32, 2, 2, 4, 8);
  m.p.o = attn_tensor_bshd(m.o, ATTN_DTYPE_F32, 2, 2, 4, 8);
  CHECK(attn_kv_cache_attend(NULL, &m.c, &m.p, NULL) == ATTN_ERR_INVALID_SHAPE,
        "q batch differs from num_seqs");
  small_init(&m, 1);
  attn_tensor t3 = attn_tensor_bshd(m.kn, ATTN_DTYPE_F32, 3, 2, 3, 8);
  attn_tensor t2 = attn_tensor_bshd(m.kn, ATTN_DTYPE_F32, 3, 2, 2, 8);
  attn_tensor d4 = attn_tensor_bshd(m.kn, ATTN_DTYPE_F32, 3, 2, 2, 4);
  m.msg[0] = '\0';
  CHECK(attn_kv_cache_append(NULL, &m.c, t3, t2, NULL, NULL) ==
                ATTN_ERR_INVALID_SHAPE &&
            strstr(m.msg, "k_new has 3 heads"),
        "k_new heads differ from the cache's (\"%s\")", m.msg);
  CHECK(attn_kv_cache_append(NULL, &m.c, t2, d4, NULL, NULL) ==
            ATTN_ERR_HEAD_DIM,
        "v_new head_dim differs from the cache's");
  /* k set in p, NULL pointers, unknown sizes, bad dtype */
  m.p.k = t2;
  CHECK(attn_kv_cache_attend(NULL, &m.c, &m.p, NULL) ==
            ATTN_ERR_INVALID_ARGUMENT,
        "p.k set");
  m.p.k.data = NULL;
  CHECK(attn_kv_cache_attend(NULL, NULL, &m.p, NULL) == ATTN_ERR_NULL_POINTER,
        "NULL cache");
  CHECK(attn_kv_cache_attend_sized(NULL, &m.c, 8, &m.p, sizeof m.p, NULL, 0) ==
            ATTN_ERR_ABI,
        "unknown cache size");
  m.c.block_table = NULL;
  CHECK(attn_kv_cache_append(NULL, &m.c, t2, t2, NULL, NULL) ==
            ATTN_ERR_NULL_POINTER,
        "paged cache without block table");
  small_init(&m, 0);
  m.c.dtype = ATTN_DTYPE_BOOL;
  CHECK(attn_kv_cache_append(NULL, &m.c, t2, t2, NULL, NULL) ==
            ATTN_ERR_INVALID_DTYPE,
        "bool cache");
  small_init(&m, 0);
  m.c.heads_kv = 0;
  CHECK(attn_kv_cache_attend(NULL, &m.c, &m.p, NULL) == ATTN_ERR_INVALID_SHAPE,
        "zero kv heads");
  /* init with an unknown size writes nothing */
  attn_kv_cache c;
  memset(&c, 0x5A, sizeof c);
  attn_kv_cache_init_sized(&c, 3);
  CHECK(((unsigned char *)&c)[0] == 0x5A, "init with an unknown size");
}

int main(void) {
  const uint64_t seed = tc_env_ull("ATTN_TEST_SEED", 0xCAC4Eull);
  const int quick = tc_env_ll("ATTN_TEST_QUICK", 0) != 0;
  const double t0 = tc_now();
  printf("test_cache: seed %#llx\n", (unsigned long long)seed);
  edges();
  bad_input();
  scenarios(seed, quick ? 24 : 80);
  bf16_q_scenarios(seed + 3, quick ? 8 : 24);
  decode_vs_prefill(seed + 1, 70, 16, ATTN_DTYPE_F32);
  decode_vs_prefill(seed + 2, quick ? 40 : 600, 7, ATTN_DTYPE_BF16);
  printf("time: %.1f s\n", tc_now() - t0);
  printf("%ld passed, %ld failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
