/*
 * decode.c - a self-attention layer decoding through a KV cache
 * (attn/layer.h, attn_layer_decode):
 *
 *   x' = x + P(seq_lens[s] + i)        absolute positions of the new tokens
 *   Q, K, V = x' W^T + b               [B*n, hq*d], [B*n, hkv*d], [B*n, hkv*dv]
 *   cache += rope(K), V                attn_kv_cache_append (RoPE fused)
 *   O = attend(rope(Q), cache)         attn_kv_cache_attend (decode kernel)
 *   out = O Wo^T + bo
 *
 * Everything that can fail is checked before the append, so an error
 * leaves the cache as it was: the attention of the call is validated and
 * sized on a copy of the cache description whose lengths are the ones the
 * append will give (in the workspace).
 *
 * Workspace (64-byte aligned pieces): lengths [B] int32, x' [B*n, E]
 * (absolute positions), Q [B*n, hq*d], K [B*n, hkv*d], V [B*n, hkv*dv],
 * O [B*n, hq*dv], then attend's workspace.
 */
#include "layer_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct decode_layout {
  size_t lens, xp, q, k, v, o, attend, total;
} decode_layout;

static size_t dpiece(size_t *at, size_t bytes) {
  const size_t off = *at;
  *at += (bytes + LAYER_ALIGN - 1) & ~(size_t)(LAYER_ALIGN - 1);
  return off;
}

static void decode_layout_make(const attn_layer *L, const layer_call *lc,
                               decode_layout *d) {
  const size_t rows = (size_t)lc->rows_q, f = sizeof(float);
  size_t at = 0;
  d->lens = dpiece(&at, (size_t)lc->B * sizeof(int32_t));
  d->xp = dpiece(&at, lc->absolute ? rows * (size_t)L->cfg.d_model * f : 0);
  d->q = dpiece(&at, rows * (size_t)L->nq * f);
  d->k = dpiece(&at, rows * (size_t)L->nk * f);
  d->v = dpiece(&at, rows * (size_t)L->nv * f);
  d->o = dpiece(&at, rows * (size_t)L->no * f);
  d->attend = at;
  d->total = at;
}

/* The attention params of a decode call: the template, the layer's ALiBi
 * slopes or T5 table, Q and O over the workspace. */
static void decode_params(const attn_layer *L, const layer_call *lc, char *ws,
                          const decode_layout *d, attn_params *p) {
  const attn_layer_config *g = &L->cfg;
  *p = lc->opt;
  p->q = attn_tensor_bshd(ws + d->q, ATTN_DTYPE_F32, lc->B, lc->Sq, g->heads_q,
                          g->head_dim);
  p->o = attn_tensor_bshd(ws + d->o, ATTN_DTYPE_F32, lc->B, lc->Sq, g->heads_q,
                          g->head_dim_v);
  p->error_message = lc->err;
  p->error_message_size = lc->err_size;
  layer_position_params(L, p);
}

/* The checks of a decode call that attn_layer_call_resolve does not make:
 * the layer, the cache and the template agree. */
static attn_status decode_check(const attn_layer *L, const layer_call *lc,
                                const attn_kv_cache *cache, size_t cache_size,
                                attn_kv_cache *c) {
  const attn_layer_config *g = &L->cfg;
  if (!cache)
    return layer_fail(lc->err, lc->err_size, ATTN_ERR_NULL_POINTER,
                      "decode: the kv cache is NULL");
  if (cache_size != sizeof(attn_kv_cache))
    return layer_fail(lc->err, lc->err_size, ATTN_ERR_ABI,
                      "decode: attn_kv_cache of %zu bytes: unknown size",
                      cache_size);
  *c = *cache;
  if (c->num_seqs != lc->B)
    return layer_fail(lc->err, lc->err_size, ATTN_ERR_INVALID_SHAPE,
                      "decode: batch (%lld) must be the cache's num_seqs "
                      "(%lld)",
                      (long long)lc->B, (long long)c->num_seqs);
  const int64_t dv = c->head_dim_v ? c->head_dim_v : c->head_dim;
  if (c->heads_kv != g->heads_kv || c->head_dim != g->head_dim ||
      dv != g->head_dim_v)
    return layer_fail(lc->err, lc->err_size, ATTN_ERR_INVALID_SHAPE,
                      "decode: the cache holds %lld kv heads of %lld/%lld "
                      "dims, the layer makes %lld of %lld/%lld",
                      (long long)c->heads_kv, (long long)c->head_dim,
                      (long long)dv, (long long)g->heads_kv,
                      (long long)g->head_dim, (long long)g->head_dim_v);
  const attn_params *o = &lc->opt;
  if (o->kv_lens || o->cu_seqlens_q || o->cu_seqlens_k)
    return layer_fail(lc->err, lc->err_size, ATTN_ERR_INVALID_ARGUMENT,
                      "decode: kv_lens and cu_seqlens must be unset (the "
                      "cache's seq_lens give the lengths)");
  if (o->q_pos_offset || o->k_pos_offset || o->q_pos_offsets ||
      o->k_pos_offsets)
    return layer_fail(lc->err, lc->err_size, ATTN_ERR_INVALID_ARGUMENT,
                      "decode: position offsets must be unset (token i of "
                      "sequence s sits at seq_lens[s] + i)");
  if (!c->seq_lens)
    return layer_fail(lc->err, lc->err_size, ATTN_ERR_NULL_POINTER,
                      "decode: the cache's seq_lens is NULL");
  return ATTN_OK;
}

/* x' = x + the absolute position rows of the new tokens. */
static attn_status decode_positions(const attn_layer *L, const layer_call *lc,
                                    const int32_t *lens, float *xp) {
  const attn_layer_config *g = &L->cfg;
  const int64_t E = g->d_model;
  for (int64_t s = 0; s < lc->B; s++)
    for (int64_t i = 0; i < lc->Sq; i++) {
      const int64_t r = s * lc->Sq + i, pos = (int64_t)lens[s] + i;
      const float *x = lc->c.x + r * E;
      float *y = xp + r * E;
      if (g->position == ATTN_LAYER_POS_LEARNED) {
        if (pos >= g->max_positions)
          return layer_fail(lc->err, lc->err_size, ATTN_ERR_INVALID_ARGUMENT,
                            "decode: position %lld is past the learned "
                            "table (0..%lld)",
                            (long long)pos, (long long)g->max_positions - 1);
        const float *t = L->params + L->t[LP_POS].offset + pos * E;
        for (int64_t j = 0; j < E; j++)
          y[j] = x[j] + t[j];
      } else {
        attn_status st =
            attn_sinusoidal_table(1, E, pos, g->sinusoidal_base, y);
        if (st != ATTN_OK)
          return layer_fail(lc->err, lc->err_size, st,
                            "decode: sinusoidal row at position %lld: %s",
                            (long long)pos, attn_strerror(st));
        for (int64_t j = 0; j < E; j++)
          y[j] += x[j];
      }
    }
  return ATTN_OK;
}

/* Resolves and checks a decode call; sizes its workspace with the cache's
 * lengths after the append (lens: B int32 to hold them, or NULL to use the
 * capacity of every sequence, the largest a decode of this cache needs). */
static attn_status decode_prepare(attn_layer *L, attn_context *ctx,
                                  const attn_layer_call *c, size_t size,
                                  const attn_kv_cache *cache, size_t cache_size,
                                  int32_t *lens, layer_call *lc,
                                  attn_kv_cache *cc, decode_layout *d) {
  if (L && L->cfg.cross && c && size == sizeof(attn_layer_call))
    return layer_fail(c->error_message, c->error_message_size,
                      ATTN_ERR_INVALID_ARGUMENT,
                      "decode is for self-attention layers (this one is "
                      "cross-attention: run attn_layer_forward)");
  attn_status st = layer_call_resolve(L, ctx, c, size, lens != NULL, 0, lc);
  if (st != ATTN_OK)
    return st;
  if ((st = decode_check(L, lc, cache, cache_size, cc)) != ATTN_OK)
    return st;
  decode_layout_make(L, lc, d);
  int32_t *own = NULL;
  if (!lens) {
    own = malloc((size_t)lc->B * sizeof(int32_t));
    if (!own)
      return layer_fail(lc->err, lc->err_size, ATTN_ERR_OUT_OF_MEMORY,
                        "decode: out of memory");
  }
  const int64_t cap =
      cc->page_size > 0 ? cc->blocks_per_seq * cc->page_size : cc->capacity;
  for (int64_t s = 0; s < lc->B; s++) {
    const int64_t now = own ? 0 : cc->seq_lens[s];
    const int64_t after = own ? cap : now + lc->Sq;
    if (now < 0 || after > cap || after > INT32_MAX) {
      free(own);
      return layer_fail(lc->err, lc->err_size, ATTN_ERR_INVALID_SEQLENS,
                        "decode: sequence %lld holds %lld of %lld tokens: "
                        "no room for %lld more",
                        (long long)s, (long long)now, (long long)cap,
                        (long long)lc->Sq);
    }
    (own ? own : lens)[s] = (int32_t)after;
  }
  attn_kv_cache after = *cc;
  after.seq_lens = own ? own : lens;
  /* views over a stand-in address (as call.c's attn_sizes): only sizes
   * matter, nothing is read through them */
  attn_params p;
  decode_params(L, lc, (char *)(uintptr_t)((uintptr_t)5 << 40), d, &p);
  size_t bytes = 0;
  const attn_rope *rope =
      L->cfg.position == ATTN_LAYER_POS_ROPE ? &L->rope : NULL;
  st = attn_kv_cache_attend_workspace_size(ctx, &after, &p, rope, &bytes);
  free(own);
  if (st != ATTN_OK)
    return st; /* the core's message is in lc->err */
  if (__builtin_add_overflow(d->total, bytes, &d->total))
    return layer_fail(lc->err, lc->err_size, ATTN_ERR_OVERFLOW,
                      "decode: workspace size overflows");
  return ATTN_OK;
}

ATTN_API attn_status attn_layer_decode_workspace_size_sized(
    attn_layer *L, attn_context *ctx, const attn_layer_call *c, size_t size,
    const attn_kv_cache *cache, size_t cache_size, size_t *bytes) {
  layer_call lc;
  attn_kv_cache cc;
  decode_layout d;
  if (!bytes)
    return ATTN_ERR_NULL_POINTER;
  attn_status st =
      decode_prepare(L, ctx, c, size, cache, cache_size, NULL, &lc, &cc, &d);
  if (st == ATTN_OK)
    *bytes = d.total;
  return st;
}

static attn_status decode_run(attn_layer *L, attn_context *ctx,
                              const layer_call *lc, const attn_kv_cache *cc,
                              const decode_layout *d, char *ws) {
  const attn_layer_config *g = &L->cfg;
  const attn_rope *rope = g->position == ATTN_LAYER_POS_ROPE ? &L->rope : NULL;
  const float *xin = lc->c.x;
  layer_weights w;
  attn_status st;
  if (lc->absolute) {
    st = decode_positions(L, lc, cc->seq_lens, (float *)(ws + d->xp));
    if (st != ATTN_OK)
      return st;
    xin = (const float *)(ws + d->xp);
  }
  layer_weights_get(L, &w);
  layer_linear(lc->rows_q, L->nq, g->d_model, xin, w.w[0], w.b[0],
               (float *)(ws + d->q));
  layer_linear(lc->rows_q, L->nk, g->d_model, xin, w.w[1], w.b[1],
               (float *)(ws + d->k));
  layer_linear(lc->rows_q, L->nv, g->d_model, xin, w.w[2], w.b[2],
               (float *)(ws + d->v));
  const attn_tensor kn = attn_tensor_bshd(ws + d->k, ATTN_DTYPE_F32, lc->B,
                                          lc->Sq, g->heads_kv, g->head_dim);
  const attn_tensor vn = attn_tensor_bshd(ws + d->v, ATTN_DTYPE_F32, lc->B,
                                          lc->Sq, g->heads_kv, g->head_dim_v);
  st = attn_kv_cache_append(ctx, cc, kn, vn, NULL, rope);
  if (st != ATTN_OK)
    return layer_fail(lc->err, lc->err_size, st, "decode: append: %s",
                      attn_strerror(st));
  attn_params p;
  decode_params(L, lc, ws, d, &p);
  p.workspace = ws + d->attend;
  p.workspace_size = d->total - d->attend;
  st = attn_kv_cache_attend(ctx, cc, &p, rope);
  if (st != ATTN_OK)
    return st;
  layer_linear(lc->rows_q, g->d_out, L->no, (const float *)(ws + d->o), w.w[3],
               w.b[3], lc->c.out);
  return ATTN_OK;
}

ATTN_API attn_status attn_layer_decode_sized(attn_layer *L, attn_context *ctx,
                                             const attn_layer_call *c,
                                             size_t size,
                                             const attn_kv_cache *cache,
                                             size_t cache_size) {
  layer_call lc;
  attn_kv_cache cc;
  decode_layout d;
  int32_t small[64];
  int32_t *lens = small;
  void *owned_lens = NULL, *owned = NULL;
  char *ws;
  attn_status st;
  /* the lengths after the append: at the start of the caller's workspace
   * when there is one (the layout reserves them), else here */
  if (c && size == sizeof(attn_layer_call) && c->batch > 0 && c->workspace &&
      (uintptr_t)c->workspace % sizeof(int32_t) == 0 &&
      c->workspace_size / sizeof(int32_t) >= (size_t)c->batch) {
    lens = c->workspace;
  } else if (c && size == sizeof(attn_layer_call) && c->batch > 64 &&
             c->batch <= INT32_MAX && cache &&
             cache_size == sizeof(attn_kv_cache) &&
             c->batch == cache->num_seqs) {
    /* only for a batch the cache has (else decode_prepare refuses the call
     * before it writes any length): a hostile batch is not allocated */
    if (c->batch > (int64_t)(SIZE_MAX / sizeof(int32_t)) ||
        !(owned_lens = malloc((size_t)c->batch * sizeof(int32_t))))
      return layer_fail(c->error_message, c->error_message_size,
                        ATTN_ERR_OUT_OF_MEMORY, "decode: out of memory");
    lens = owned_lens;
  }
  st = decode_prepare(L, ctx, c, size, cache, cache_size, lens, &lc, &cc, &d);
  if (st == ATTN_OK)
    st = layer_workspace(&lc, d.total, &ws, &owned);
  if (st == ATTN_OK)
    st = decode_run(L, ctx, &lc, &cc, &d, ws);
  free(owned);
  free(owned_lens);
  return st;
}
