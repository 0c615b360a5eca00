/*
 * Test "layer_decode" (attn/layer.h, attn_layer_decode): a self-attention
 * layer decoding through a KV cache gives the rows attn_layer_forward gives
 * on the whole sequence with a bottom-right causal mask, for every position
 * scheme, GQA, contiguous and paged caches (bitwise equal to each other),
 * a prompt, single tokens and chunks; with a caller workspace the same
 * bits; bad calls leave the cache as it was.
 *
 * Tolerance: the whole-sequence forward runs the tiled kernel, the decode
 * the split-KV kernel (the attention sums run in other orders), and the
 * projections see other matrix shapes in OpenBLAS. Both are f32 with every
 * sum shorter than 2^8 terms of inputs of magnitude <= 1; rounding in
 * either order stays within sqrt(2^8) * a few units of 2^-24 on
 * average, so we allow |decode - forward| <= 2^-18 * (1 + max |forward|)
 * (64 units of 2^-24; the worst seen is printed).
 */
#include <attn/layer.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long n_pass, n_fail;
#include "test_common.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double urand(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (double)(rng_state >> 11) / 9007199254740992.0;
}

enum { B = 2, E = 32, HQ = 4, HK = 2, D = 8 };

typedef struct cache_buf {
  attn_kv_cache c;
  float *k, *v;
  int32_t lens[B];
  int32_t *table;
} cache_buf;

/* A cache for `cap` tokens per sequence: contiguous (page 0) or paged with
 * a shuffled block table. */
static void cache_make(cache_buf *cb, int64_t cap, int64_t page) {
  memset(cb, 0, sizeof *cb);
  attn_kv_cache_init(&cb->c);
  cb->c.dtype = ATTN_DTYPE_F32;
  cb->c.num_seqs = B;
  cb->c.heads_kv = HK;
  cb->c.head_dim = D;
  cb->c.seq_lens = cb->lens;
  int64_t rows;
  if (page == 0) {
    cb->c.capacity = cap;
    rows = B * cap;
  } else {
    const int64_t bps = (cap + page - 1) / page;
    const int64_t pages = B * bps + 3; /* a few spare pages */
    cb->table = malloc(sizeof(int32_t) * (size_t)(B * bps));
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)pages);
    for (int64_t i = 0; i < pages; i++)
      perm[i] = (int32_t)i;
    for (int64_t i = pages - 1; i > 0; i--) {
      const int64_t j = (int64_t)(urand() * (double)(i + 1)) % (i + 1);
      const int32_t t = perm[i];
      perm[i] = perm[j];
      perm[j] = t;
    }
    for (int64_t i = 0; i < B * bps; i++)
      cb->table[i] = perm[i];
    free(perm);
    cb->c.page_size = page;
    cb->c.num_pages = pages;
    cb->c.blocks_per_seq = bps;
    cb->c.block_table = cb->table;
    rows = pages * page;
  }
  cb->k = calloc((size_t)(rows * HK * D), sizeof(float));
  cb->v = calloc((size_t)(rows * HK * D), sizeof(float));
  cb->c.k = cb->k;
  cb->c.v = cb->v;
}

static void cache_free(cache_buf *cb) {
  free(cb->k);
  free(cb->v);
  free(cb->table);
}

static attn_layer *make_layer(attn_layer_position pos, int cross) {
  attn_layer_config cfg;
  attn_layer_config_init(&cfg);
  cfg.d_model = E;
  cfg.heads_q = HQ;
  cfg.heads_kv = HK;
  cfg.head_dim = D;
  cfg.position = pos;
  cfg.max_positions = 128;
  cfg.t5_bidirectional = 0;
  cfg.t5_buckets = 16;
  cfg.t5_max_distance = 40;
  cfg.cross = cross;
  attn_rope rope;
  attn_rope_init(&rope);
  rope.base = 500.0;
  cfg.rope = &rope;
  attn_layer *L = NULL;
  char err[256] = "";
  const attn_status st = attn_layer_create(&cfg, &L, err, sizeof err);
  CHECK(st == ATTN_OK, "create (position %d): %s", (int)pos, err);
  if (L)
    attn_layer_init_weights(L, 1234 + (uint64_t)pos);
  return L;
}

/* Rows [t0, t0+n) of x [B, len, E] into a contiguous [B, n, E]. */
static void slice(const float *x, int64_t len, int64_t t0, int64_t n,
                  float *out) {
  for (int64_t b = 0; b < B; b++)
    memcpy(out + b * n * E, x + (b * len + t0) * E,
           sizeof(float) * (size_t)(n * E));
}

/* One decode step of n tokens from t0 on cache cb; out [B, n, E]. */
static attn_status step(attn_layer *L, cache_buf *cb, const float *x,
                        int64_t len, int64_t t0, int64_t n, float *out,
                        int use_ws, char *err) {
  float *xs = malloc(sizeof(float) * (size_t)(B * n * E));
  slice(x, len, t0, n, xs);
  attn_params opt;
  attn_params_init(&opt);
  opt.causal = n > 1 ? ATTN_CAUSAL_BOTTOM_RIGHT : ATTN_CAUSAL_NONE;
  opt.num_threads = 2;
  attn_layer_call c;
  attn_layer_call_init(&c);
  c.batch = B;
  c.seq_q = n;
  c.x = xs;
  c.out = out;
  c.options = &opt;
  c.error_message = err;
  c.error_message_size = 256;
  void *ws = NULL;
  if (use_ws) {
    size_t bytes = 0;
    attn_status st =
        attn_layer_decode_workspace_size(L, NULL, &c, &cb->c, &bytes);
    CHECK(st == ATTN_OK, "decode workspace size: %s", err);
    ws = aligned_alloc(64, (bytes + 63) / 64 * 64);
    c.workspace = ws;
    c.workspace_size = bytes;
  }
  const attn_status st = attn_layer_decode(L, NULL, &c, &cb->c);
  free(ws);
  free(xs);
  return st;
}

/* The whole sequence through attn_layer_forward, causal bottom-right. */
static void reference(attn_layer *L, const float *x, int64_t len, float *ref) {
  attn_params opt;
  attn_params_init(&opt);
  opt.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  attn_layer_call c;
  attn_layer_call_init(&c);
  c.batch = B;
  c.seq_q = len;
  c.x = x;
  c.out = ref;
  c.options = &opt;
  char err[256] = "";
  c.error_message = err;
  c.error_message_size = sizeof err;
  CHECK(attn_layer_forward(L, NULL, &c) == ATTN_OK, "forward: %s", err);
}

static double worst_ratio;

static void compare_rows(const float *got, const float *ref, int64_t len,
                         int64_t t0, int64_t n, const char *what) {
  double maxref = 0, maxerr = 0;
  for (int64_t b = 0; b < B; b++)
    for (int64_t i = 0; i < n; i++)
      for (int64_t e = 0; e < E; e++) {
        const double r = ref[(b * len + t0 + i) * E + e];
        const double g = got[(b * n + i) * E + e];
        maxref = fmax(maxref, fabs(r));
        maxerr = fmax(maxerr, isfinite(g) ? fabs(g - r) : INFINITY);
      }
  const double allowed = ldexp(1.0, -18) * (1.0 + maxref);
  if (maxerr / allowed > worst_ratio)
    worst_ratio = maxerr / allowed;
  CHECK(maxerr <= allowed,
        "%s: tokens %lld..%lld differ from the forward by "
        "%.3g (allowed %.3g)",
        what, (long long)t0, (long long)(t0 + n - 1), maxerr, allowed);
}

/* Prompt of 5, single tokens, a chunk of 3, single tokens to len. */
static void run_scheme(attn_layer_position pos, int64_t len) {
  attn_layer *L = make_layer(pos, 0);
  if (!L)
    return;
  float *x = malloc(sizeof(float) * (size_t)(B * len * E));
  float *ref = malloc(sizeof(float) * (size_t)(B * len * E));
  float *o1 = malloc(sizeof(float) * (size_t)(B * len * E));
  float *o2 = malloc(sizeof(float) * (size_t)(B * len * E));
  for (int64_t i = 0; i < B * len * E; i++)
    x[i] = (float)(2 * urand() - 1);
  reference(L, x, len, ref);
  cache_buf cc, pc;
  cache_make(&cc, len, 0);
  cache_make(&pc, len, 7);
  char what[64], err[256];
  snprintf(what, sizeof what, "position %d, len %lld", (int)pos,
           (long long)len);
  int64_t t = 0, k = 0;
  while (t < len) {
    int64_t n = t == 0 ? 5 : (k % 9 == 4 ? 3 : 1);
    if (n > len - t)
      n = len - t;
    err[0] = '\0';
    attn_status a = step(L, &cc, x, len, t, n, o1, k % 2, err);
    CHECK(a == ATTN_OK, "%s: contiguous step at %lld: %s", what, (long long)t,
          err);
    attn_status b = step(L, &pc, x, len, t, n, o2, 0, err);
    CHECK(b == ATTN_OK, "%s: paged step at %lld: %s", what, (long long)t, err);
    if (a != ATTN_OK || b != ATTN_OK)
      break;
    CHECK(memcmp(o1, o2, sizeof(float) * (size_t)(B * n * E)) == 0,
          "%s: paged != contiguous at %lld", what, (long long)t);
    compare_rows(o1, ref, len, t, n, what);
    t += n;
    k++;
  }
  CHECK(cc.lens[0] == len && cc.lens[1] == len && pc.lens[0] == len,
        "%s: seq_lens %d %d after %lld tokens", what, cc.lens[0], cc.lens[1],
        (long long)len);
  /* a full cache: an error, the cache as it was */
  const int32_t before = cc.lens[0];
  attn_status st = step(L, &cc, x, len, 0, 1, o1, 0, err);
  CHECK(st == ATTN_ERR_INVALID_SEQLENS && cc.lens[0] == before,
        "%s: decode into a full cache: status %d, seq_lens %d", what, (int)st,
        cc.lens[0]);
  cache_free(&cc);
  cache_free(&pc);
  free(x);
  free(ref);
  free(o1);
  free(o2);
  attn_layer_free(L);
}

static void bad_calls(void) {
  attn_layer *L = make_layer(ATTN_LAYER_POS_LEARNED, 0);
  attn_layer *X = make_layer(ATTN_LAYER_POS_NONE, 1);
  if (!L || !X)
    return;
  float x[B * 2 * E], out[B * 2 * E];
  for (int i = 0; i < B * 2 * E; i++)
    x[i] = 0.25f;
  char err[256];
  cache_buf cb;
  cache_make(&cb, 200, 0);
  attn_layer_call c;
  attn_layer_call_init(&c);
  c.batch = B;
  c.seq_q = 2;
  c.x = x;
  c.out = out;
  c.error_message = err;
  c.error_message_size = sizeof err;
  /* cross-attention layers do not decode */
  attn_status st = attn_layer_decode(X, NULL, &c, &cb.c);
  CHECK(st == ATTN_ERR_INVALID_ARGUMENT && strstr(err, "self-attention"),
        "cross layer: %d (%s)", (int)st, err);
  /* mismatched heads */
  cb.c.heads_kv = 1;
  st = attn_layer_decode(L, NULL, &c, &cb.c);
  CHECK(st == ATTN_ERR_INVALID_SHAPE, "heads mismatch: %d (%s)", (int)st, err);
  cb.c.heads_kv = HK;
  /* batch not the cache's */
  c.batch = 1;
  st = attn_layer_decode(L, NULL, &c, &cb.c);
  CHECK(st == ATTN_ERR_INVALID_SHAPE, "batch mismatch: %d (%s)", (int)st, err);
  c.batch = B;
  /* kv_lens and offsets belong to the cache */
  attn_params opt;
  attn_params_init(&opt);
  int32_t kvl[B] = {1, 1};
  opt.kv_lens = kvl;
  c.options = &opt;
  st = attn_layer_decode(L, NULL, &c, &cb.c);
  CHECK(st == ATTN_ERR_INVALID_ARGUMENT, "kv_lens set: %d (%s)", (int)st, err);
  attn_params_init(&opt);
  opt.q_pos_offset = 3;
  st = attn_layer_decode(L, NULL, &c, &cb.c);
  CHECK(st == ATTN_ERR_INVALID_ARGUMENT, "offset set: %d (%s)", (int)st, err);
  c.options = NULL;
  /* a learned table of 128 rows: position 127 fits, 128 does not; the
   * failing call leaves seq_lens and the stored rows as they were */
  cb.lens[0] = cb.lens[1] = 126;
  st = attn_layer_decode(L, NULL, &c, &cb.c);
  CHECK(st == ATTN_OK && cb.lens[0] == 128, "positions 126, 127: %d (%s)",
        (int)st, err);
  cb.lens[0] = cb.lens[1] = 127;
  const float k127 = cb.k[(0 * 200 + 127) * HK * D];
  st = attn_layer_decode(L, NULL, &c, &cb.c);
  CHECK(st == ATTN_ERR_INVALID_ARGUMENT && cb.lens[0] == 127 &&
            cb.k[(0 * 200 + 127) * HK * D] == k127,
        "position 128 of a 128-row table: %d (%s), seq_lens %d", (int)st, err,
        cb.lens[0]);
  /* unknown struct sizes */
  st = attn_layer_decode_sized(L, NULL, &c, sizeof c, &cb.c, 8);
  CHECK(st == ATTN_ERR_ABI, "cache size 8: %d", (int)st);
  st = attn_layer_decode_sized(L, NULL, &c, sizeof c, NULL, sizeof cb.c);
  CHECK(st == ATTN_ERR_NULL_POINTER, "NULL cache: %d", (int)st);
  cache_free(&cb);
  attn_layer_free(L);
  attn_layer_free(X);
}

int main(void) {
  static const attn_layer_position schemes[] = {
      ATTN_LAYER_POS_NONE, ATTN_LAYER_POS_SINUSOIDAL, ATTN_LAYER_POS_LEARNED,
      ATTN_LAYER_POS_ROPE, ATTN_LAYER_POS_ALIBI,      ATTN_LAYER_POS_T5};
  for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
    run_scheme(schemes[i], 70);
  run_scheme(ATTN_LAYER_POS_ROPE, 120); /* past the 48-row tile, many steps */
  bad_calls();
  printf("worst |decode - forward| / allowed: %.3f\n", worst_ratio);
  printf("%ld passed, %ld failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
