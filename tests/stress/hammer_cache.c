/*
 * Hammer cases of the KV cache: a history of appends (attn_kv_cache_append,
 * RoPE on or off, k_new/v_new in f32/bf16/f16, bshd or bhsd) with an
 * attend after each (attn_kv_cache_attend: 1..4 query rows, sometimes more
 * than ATTN_DECODE_MAX_ROWS, causal, windows), into a contiguous or a paged
 * cache (shuffled pages, spare ones) of f32, bf16, f16 or q8_0 storage.
 *
 * Reference: the history replayed on one thread; its outputs and the final
 * cache bytes are kept. A private run replays the whole history into the
 * worker's own cache (every attend and the final pages compared bitwise);
 * a shared run attends, read-only, to the reference's final cache, which
 * every worker reads at once.
 */
#include "hammer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAXS 3
#define MAXSTEPS 6

typedef struct step {
  int32_t nn[MAXS];
  void *kb, *vb;
  attn_tensor kn, vn; /* [S, mx, hk, d | dv] */
  /* attend after the append */
  int64_t sq;
  float *q; /* [S, sq, hq, d] */
  attn_causal causal;
  int64_t wl, wr;
  int with_lse;
  attn_status ref_st;
  float *ref_o, *ref_lse; /* [S, sq, hq, dv], [S, hq, sq] */
} step;

typedef struct ccase {
  int64_t S, hk, G, d, dv, cap, ps, np, bps;
  attn_dtype dt;
  int rope;
  attn_rope rp;
  int32_t *table;
  size_t kbytes, vbytes;
  int nsteps;
  step st[MAXSTEPS];
  step ro; /* the shared read-only attend on the final cache */
  /* the reference's final cache: read by every shared run */
  void *k, *v;
  int32_t lens[MAXS];
  attn_kv_cache cache;
  int ok; /* the reference ran without error */
} ccase;

static attn_tensor kv_view(void *buf, attn_dtype dt, int bhsd, int64_t S,
                           int64_t n, int64_t h, int64_t d) {
  return bhsd ? attn_tensor_bhsd(buf, dt, S, n, h, d)
              : attn_tensor_bshd(buf, dt, S, n, h, d);
}

static void put(attn_dtype dt, void *buf, size_t i, float x) {
  if (dt == ATTN_DTYPE_F32)
    ((float *)buf)[i] = x;
  else if (dt == ATTN_DTYPE_BF16)
    ((uint16_t *)buf)[i] = tc_f32_to_bf16(x);
  else
    ((uint16_t *)buf)[i] = tc_f32_to_f16(x);
}

static void attend_draw(step *s, const ccase *c, tc_rng *r) {
  s->sq = tc_chance(r, 0.1) ? tc_range(r, 45, 60) : tc_range(r, 1, 4);
  const size_t n = (size_t)(c->S * s->sq * c->hk * c->G * c->d);
  s->q = tc_alloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++)
    s->q[i] = (float)tc_normal(r);
  const int64_t x = tc_below(r, 3);
  s->causal = x == 0   ? ATTN_CAUSAL_NONE
              : x == 1 ? ATTN_CAUSAL_BOTTOM_RIGHT
                       : ATTN_CAUSAL_TOP_LEFT;
  s->wl = tc_chance(r, 0.3) ? tc_range(r, 0, 700) : -1;
  s->wr = s->wl >= 0 && tc_chance(r, 0.5) ? tc_range(r, 0, 3) : -1;
  s->with_lse = tc_chance(r, 0.8);
}

static void geometry_draw(ccase *c, tc_rng *r) {
  static const int64_t ds[][2] = {{64, 64}, {32, 48}, {8, 8},
                                  {5, 5},   {96, 96}, {128, 128}};
  static const int64_t pss[4] = {1, 7, 16, 64};
  c->S = tc_range(r, 1, MAXS);
  c->hk = tc_range(r, 1, 3);
  c->G = tc_range(r, 1, 3);
  const int64_t *dd = ds[tc_below(r, 6)];
  c->d = dd[0];
  c->dv = dd[1];
  const int64_t x = tc_below(r, 10);
  c->dt = x < 4 ? ATTN_DTYPE_F32 : x < 6 ? ATTN_DTYPE_BF16 : ATTN_DTYPE_F16;
  if (x >= 8 && c->d % 32 == 0 && c->dv % 32 == 0)
    c->dt = ATTN_DTYPE_Q8_0;
  c->ps = tc_chance(r, 0.5) ? 0 : pss[tc_below(r, 4)];
  c->cap = tc_range(r, 64, 1500);
  if (c->ps)
    c->cap = (c->cap + c->ps - 1) / c->ps * c->ps;
  c->rope = tc_chance(r, 0.5);
  attn_rope_init(&c->rp);
  if (tc_chance(r, 0.5))
    c->rp.style = ATTN_ROPE_INTERLEAVED;
  if (c->d % 2)
    c->rp.dims = c->d - 1;
}

/* Storage: rows of d (dv) values, in blocks for q8_0. */
static size_t row_bytes(const ccase *c, int64_t d) {
  return (size_t)(d / attn_dtype_block(c->dt)) * attn_dtype_size(c->dt);
}

static void storage_new(const ccase *c, attn_kv_cache *kc, void **k, void **v,
                        int32_t *lens) {
  *k = tc_alloc(c->kbytes);
  *v = tc_alloc(c->vbytes);
  memset(*k, 0xFF, c->kbytes);
  memset(*v, 0xFF, c->vbytes);
  memset(lens, 0, sizeof(int32_t) * MAXS);
  *kc = c->cache;
  kc->k = *k;
  kc->v = *v;
  kc->seq_lens = lens;
}

static void cache_describe_into(ccase *c, tc_rng *r) {
  attn_kv_cache_init(&c->cache);
  c->cache.dtype = c->dt;
  c->cache.num_seqs = c->S;
  c->cache.heads_kv = c->hk;
  c->cache.head_dim = c->d;
  c->cache.head_dim_v = c->dv;
  int64_t rows = c->S * c->cap;
  if (c->ps) {
    c->bps = c->cap / c->ps;
    c->np = c->S * c->bps + tc_range(r, 0, 4);
    int32_t *perm = tc_alloc(sizeof(int32_t) * (size_t)c->np);
    for (int64_t i = 0; i < c->np; i++)
      perm[i] = (int32_t)i;
    for (int64_t i = c->np - 1; i > 0; i--) {
      const int64_t j = tc_below(r, i + 1);
      const int32_t t = perm[i];
      perm[i] = perm[j], perm[j] = t;
    }
    c->table = perm; /* the first S * bps entries */
    c->cache.page_size = c->ps;
    c->cache.num_pages = c->np;
    c->cache.blocks_per_seq = c->bps;
    c->cache.block_table = c->table;
    rows = c->np * c->ps;
  } else {
    c->cache.capacity = c->cap;
  }
  c->kbytes = (size_t)(rows * c->hk) * row_bytes(c, c->d);
  c->vbytes = (size_t)(rows * c->hk) * row_bytes(c, c->dv);
}

static void history_draw(ccase *c, tc_rng *r) {
  static const attn_dtype in[3] = {ATTN_DTYPE_F32, ATTN_DTYPE_BF16,
                                   ATTN_DTYPE_F16};
  int32_t len[MAXS] = {0};
  c->nsteps = (int)tc_range(r, 2, MAXSTEPS);
  for (int k = 0; k < c->nsteps; k++) {
    step *s = &c->st[k];
    int64_t mx = 0;
    for (int64_t q = 0; q < c->S; q++) {
      const int64_t room = c->cap - len[q];
      s->nn[q] = (int32_t)(tc_chance(r, 0.2)
                               ? 0
                               : tc_range(r, 0, room < 400 ? room : 400));
      len[q] += s->nn[q];
      if (s->nn[q] > mx)
        mx = s->nn[q];
    }
    mx = mx > 0 ? mx : 1;
    const attn_dtype dt = in[tc_below(r, 3)];
    const int bhsd = tc_chance(r, 0.3);
    const size_t nk = (size_t)(c->S * mx * c->hk);
    s->kb = tc_alloc(nk * (size_t)c->d * attn_dtype_size(dt));
    s->vb = tc_alloc(nk * (size_t)c->dv * attn_dtype_size(dt));
    for (size_t i = 0; i < nk * (size_t)c->d; i++)
      put(dt, s->kb, i, (float)tc_normal(r));
    for (size_t i = 0; i < nk * (size_t)c->dv; i++)
      put(dt, s->vb, i, (float)tc_normal(r));
    s->kn = kv_view(s->kb, dt, bhsd, c->S, mx, c->hk, c->d);
    s->vn = kv_view(s->vb, dt, bhsd, c->S, mx, c->hk, c->dv);
    attend_draw(s, c, r);
  }
  attend_draw(&c->ro, c, r);
}

/* One attend of step s on cache kc into fresh buffers (returned). */
static attn_status attend(const ccase *c, const step *s, attn_context *ctx,
                          const attn_kv_cache *kc, int threads, int workspace,
                          float **o, float **lse, char *msg, size_t msg_size) {
  const int64_t hq = c->hk * c->G;
  const size_t no = (size_t)(c->S * s->sq * hq);
  *o = tc_alloc(no * (size_t)c->dv * sizeof(float));
  *lse = tc_alloc(no * sizeof(float));
  memset(*o, 0xFF, no * (size_t)c->dv * sizeof(float));
  memset(*lse, 0xFF, no * sizeof(float));
  attn_params p;
  attn_params_init(&p);
  p.q = attn_tensor_bshd(s->q, ATTN_DTYPE_F32, c->S, s->sq, hq, c->d);
  p.o = attn_tensor_bshd(*o, ATTN_DTYPE_F32, c->S, s->sq, hq, c->dv);
  p.lse = s->with_lse ? *lse : NULL;
  p.causal = s->causal;
  p.window_left = s->wl;
  p.window_right = s->wr;
  p.num_threads = threads;
  p.error_message = msg;
  p.error_message_size = msg_size;
  const attn_rope *rope = c->rope ? &c->rp : NULL;
  void *ws = NULL;
  if (workspace) {
    size_t bytes = 0;
    if (attn_kv_cache_attend_workspace_size(ctx, kc, &p, rope, &bytes) ==
        ATTN_OK) {
      ws = hm_workspace(bytes, &p.workspace);
      p.workspace_size = bytes;
    }
  }
  const attn_status st = attn_kv_cache_attend(ctx, kc, &p, rope);
  free(ws);
  return st;
}

static size_t o_bytes(const ccase *c, const step *s) {
  return (size_t)(c->S * s->sq * c->hk * c->G * c->dv) * sizeof(float);
}
static size_t lse_bytes(const ccase *c, const step *s) {
  return (size_t)(c->S * s->sq * c->hk * c->G) * sizeof(float);
}

static void *cache_make(uint64_t seed, int index, attn_context *ctx) {
  ccase *c = calloc(1, sizeof *c);
  if (!c)
    abort();
  tc_rng r = {tc_case_seed(seed ^ 0xCAC4Eull, (uint64_t)index)};
  geometry_draw(c, &r);
  cache_describe_into(c, &r);
  history_draw(c, &r);
  attn_kv_cache kc;
  storage_new(c, &kc, &c->k, &c->v, c->lens);
  const attn_rope *rope = c->rope ? &c->rp : NULL;
  char msg[256];
  c->ok = 1;
  for (int k = 0; k < c->nsteps && c->ok; k++) {
    step *s = &c->st[k];
    if (attn_kv_cache_append(ctx, &kc, s->kn, s->vn, s->nn, rope) != ATTN_OK)
      c->ok = 0;
    s->ref_st =
        attend(c, s, ctx, &kc, 1, 0, &s->ref_o, &s->ref_lse, msg, sizeof msg);
    c->ok &= s->ref_st == ATTN_OK;
  }
  c->ro.ref_st = attend(c, &c->ro, ctx, &kc, 1, 0, &c->ro.ref_o, &c->ro.ref_lse,
                        msg, sizeof msg);
  c->ok &= c->ro.ref_st == ATTN_OK;
  if (!c->ok)
    fprintf(stderr, "hammer: cache case %d: reference failed (%s)\n", index,
            msg);
  return c;
}

static void step_free(step *s) {
  free(s->kb), free(s->vb), free(s->q), free(s->ref_o), free(s->ref_lse);
}

static void cache_free(void *cv) {
  ccase *c = cv;
  for (int k = 0; k < c->nsteps; k++)
    step_free(&c->st[k]);
  step_free(&c->ro);
  free(c->k), free(c->v), free(c->table);
  free(c);
}

static void cache_describe(const void *cv, FILE *f) {
  const ccase *c = cv;
  fprintf(f,
          "  cache: %lld seqs, heads_kv %lld x %lld, head_dim %lld/%lld, "
          "%s, %s (capacity %lld, page size %lld, %lld pages), rope %s, "
          "%d steps\n",
          (long long)c->S, (long long)c->hk, (long long)c->G, (long long)c->d,
          (long long)c->dv, tp_dtype_name(c->dt),
          c->ps ? "paged" : "contiguous", (long long)c->cap, (long long)c->ps,
          (long long)c->np, c->rope ? "on" : "off", c->nsteps);
}

static int check_attend(const hm_worker *w, const ccase *c, const step *s,
                        const hm_run *r, attn_status st, const char *msg,
                        const float *o, const float *lse, int k) {
  if (st != s->ref_st) {
    hm_report(w, &hm_kind_cache, c, r, "attend %d: %s (%s), reference %s", k,
              attn_strerror(st), msg, attn_strerror(s->ref_st));
    return 1;
  }
  int bad =
      hm_same(w, &hm_kind_cache, c, r, "attend o", o, s->ref_o, o_bytes(c, s));
  bad += hm_same(w, &hm_kind_cache, c, r, "attend lse", lse, s->ref_lse,
                 lse_bytes(c, s));
  return bad;
}

/* The whole history into the worker's own cache. */
static int run_private(const ccase *c, hm_worker *w, const hm_run *r) {
  attn_kv_cache kc;
  void *k, *v;
  int32_t lens[MAXS];
  storage_new(c, &kc, &k, &v, lens);
  const attn_rope *rope = c->rope ? &c->rp : NULL;
  int bad = 0;
  char msg[256] = "";
  for (int i = 0; i < c->nsteps && !bad; i++) {
    const step *s = &c->st[i];
    kc.error_message = msg;
    kc.error_message_size = sizeof msg;
    const attn_status a =
        attn_kv_cache_append(r->ctx, &kc, s->kn, s->vn, s->nn, rope);
    w->counts[HM_CACHE_APPEND]++;
    if (a != ATTN_OK) {
      hm_report(w, &hm_kind_cache, c, r, "append %d: %s (%s)", i,
                attn_strerror(a), msg);
      bad++;
      break;
    }
    float *o, *lse;
    const attn_status st = attend(c, s, r->ctx, &kc, r->threads, r->workspace,
                                  &o, &lse, msg, sizeof msg);
    w->counts[HM_CACHE_ATTEND]++;
    bad += check_attend(w, c, s, r, st, msg, o, lse, i);
    free(o), free(lse);
  }
  if (!bad) {
    bad += hm_same(w, &hm_kind_cache, c, r, "cache k", k, c->k, c->kbytes);
    bad += hm_same(w, &hm_kind_cache, c, r, "cache v", v, c->v, c->vbytes);
    bad += hm_same(w, &hm_kind_cache, c, r, "seq_lens", lens, c->lens,
                   sizeof lens);
  }
  free(k), free(v);
  return bad;
}

static int cache_run(void *cv, void **privp, hm_worker *w, const hm_run *r) {
  (void)privp;
  const ccase *c = cv;
  if (!c->ok)
    return 0;
  if (r->private_data)
    return run_private(c, w, r);
  /* read-only: the shared final cache, its descriptor copied */
  attn_kv_cache kc = c->cache;
  kc.k = c->k;
  kc.v = c->v;
  kc.seq_lens = (int32_t *)c->lens; /* attend only reads it */
  float *o, *lse;
  char msg[256] = "";
  const attn_status st = attend(c, &c->ro, r->ctx, &kc, r->threads,
                                r->workspace, &o, &lse, msg, sizeof msg);
  w->counts[HM_CACHE_ATTEND]++;
  const int bad = check_attend(w, c, &c->ro, r, st, msg, o, lse, -1);
  free(o), free(lse);
  return bad;
}

static void no_priv(void *p) { (void)p; }

const hm_kind hm_kind_cache = {"cache", cache_make, cache_run,
                               no_priv, cache_free, cache_describe};
