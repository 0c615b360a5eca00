/*
 * forward.c - the layer's forward pass:
 *
 *   x' = x + P_q, y' = y + P_k            absolute positions (positions.c)
 *   Q = x' Wq^T + bq    [B*Sq, hq*d]      (dense.c, CBLAS)
 *   K = s' Wk^T + bk    [B*Sk, hkv*d]     s' = x' (self) or y' (cross)
 *   V = v' Wv^T + bv    [B*Sk, hkv*dv]    v' = x', y' or the value input
 *   Q, K rotated in place                 ROPE (attn_rope_apply_qk)
 *   O = attention(Q, K, V), LSE           attn_forward
 *   out = O Wo^T + bo   [B*Sq, d_out]
 *
 * Q, K, V, O and LSE stay in the activation buffer for the backward.
 */
#include "layer_internal.h"

#include <stdlib.h>
#include <string.h>

/* The activation buffer of a call: the caller's (checked for size) or the
 * layer's own, grown when needed. */
attn_status layer_activations(attn_layer *L, const layer_call *lc, int grow,
                              char **act) {
  if (lc->c.activations) {
    if ((uintptr_t)lc->c.activations % sizeof(float) != 0)
      return layer_fail(lc->err, lc->err_size, ATTN_ERR_INVALID_ARGUMENT,
                        "activations must be aligned to 4 bytes at least");
    if (lc->c.activations_size < lc->a_total)
      return layer_fail(lc->err, lc->err_size, ATTN_ERR_WORKSPACE_TOO_SMALL,
                        "activations_size (%zu) is below the %zu bytes this "
                        "call needs (attn_layer_buffer_sizes)",
                        lc->c.activations_size, lc->a_total);
    *act = lc->c.activations;
    return ATTN_OK;
  }
  if (grow && L->own_act_size < lc->a_total) {
    free(L->own_act);
    L->own_act_size = 0;
    L->own_act = aligned_alloc(LAYER_ALIGN, lc->a_total);
    if (!L->own_act)
      return layer_fail(lc->err, lc->err_size, ATTN_ERR_OUT_OF_MEMORY,
                        "out of memory for %zu bytes of activations",
                        lc->a_total);
    L->own_act_size = lc->a_total;
  }
  if (!L->own_act)
    return layer_fail(lc->err, lc->err_size, ATTN_ERR_INVALID_ARGUMENT,
                      "no activations: run attn_layer_forward first");
  *act = L->own_act;
  return ATTN_OK;
}

/* The workspace of a call: the caller's, or *owned (freed by the caller). */
attn_status layer_workspace(const layer_call *lc, size_t need, char **ws,
                            void **owned) {
  *owned = NULL;
  if (lc->c.workspace) {
    if ((uintptr_t)lc->c.workspace % sizeof(float) != 0)
      return layer_fail(lc->err, lc->err_size, ATTN_ERR_INVALID_ARGUMENT,
                        "workspace must be aligned to 4 bytes at least");
    if (lc->c.workspace_size < need)
      return layer_fail(lc->err, lc->err_size, ATTN_ERR_WORKSPACE_TOO_SMALL,
                        "workspace_size (%zu) is below the %zu bytes this "
                        "call needs (attn_layer_buffer_sizes)",
                        lc->c.workspace_size, need);
    *ws = lc->c.workspace;
    return ATTN_OK;
  }
  *owned = aligned_alloc(LAYER_ALIGN, need > 0 ? need : LAYER_ALIGN);
  if (!*owned)
    return layer_fail(lc->err, lc->err_size, ATTN_ERR_OUT_OF_MEMORY,
                      "out of memory for %zu bytes of workspace", need);
  *ws = *owned;
  return ATTN_OK;
}

/* The inputs of the projections: x' and y' (positions added into the
 * workspace) and the value input. */
attn_status layer_inputs(const attn_layer *L, const layer_call *lc, char *ws,
                         const float **xin, const float **yin,
                         const float **vin) {
  const attn_layer_call *c = &lc->c;
  float *tab = (float *)(ws + lc->w_tab);
  attn_status st;
  *xin = c->x;
  *yin = L->cfg.cross ? c->y : c->x;
  if (lc->absolute) {
    float *xp = (float *)(ws + lc->w_xp);
    if ((st = layer_pos_add(L, lc, 0, c->x, xp, tab)) != ATTN_OK)
      return st;
    *xin = xp;
    *yin = xp;
    if (L->cfg.cross) {
      float *yp = (float *)(ws + lc->w_yp);
      if ((st = layer_pos_add(L, lc, 1, c->y, yp, tab)) != ATTN_OK)
        return st;
      *yin = yp;
    }
  }
  *vin = L->cfg.cross && c->value ? c->value : *yin;
  return ATTN_OK;
}

static attn_status forward(attn_layer *L, attn_context *ctx,
                           const layer_call *lc, char *act, char *ws) {
  const attn_layer_config *g = &L->cfg;
  const float *xin, *yin, *vin;
  layer_weights w;
  attn_params p;
  attn_status st;
  layer_act_header h;
  st = layer_inputs(L, lc, ws, &xin, &yin, &vin);
  if (st != ATTN_OK)
    return st;
  layer_weights_get(L, &w);
  layer_linear(lc->rows_q, L->nq, g->d_model, xin, w.w[0], w.b[0],
               (float *)(act + lc->a_q));
  layer_linear(lc->rows_k, L->nk, g->kdim, yin, w.w[1], w.b[1],
               (float *)(act + lc->a_k));
  layer_linear(lc->rows_k, L->nv, g->vdim, vin, w.w[2], w.b[2],
               (float *)(act + lc->a_v));
  layer_attn_params(L, lc, act, &p);
  p.workspace = ws + lc->w_attn_f;
  p.workspace_size = lc->attn_fwd_bytes;
  if (g->position == ATTN_LAYER_POS_ROPE) {
    st = attn_rope_apply_qk(&L->rope, &p, p.q, p.k, 0);
    if (st != ATTN_OK)
      return st;
  }
  st = attn_forward(ctx, &p);
  if (st != ATTN_OK)
    return st;
  if (lc->opt.cu_seqlens_q) {
    /* packed rows past the last sequence attend to nothing: o = 0, as for
     * any row without a key (attn_forward leaves them as they were, which
     * made out = garbage Wo^T + bo there) */
    const int64_t r0 = lc->opt.cu_seqlens_q[lc->nseq];
    if (r0 < lc->rows_q)
      memset(act + lc->a_o + (size_t)(r0 * L->no) * sizeof(float), 0,
             (size_t)((lc->rows_q - r0) * L->no) * sizeof(float));
  }
  layer_linear(lc->rows_q, g->d_out, L->no, (const float *)(act + lc->a_o),
               w.w[3], w.b[3], lc->c.out);
  memset(&h, 0, sizeof h);
  h.magic = LAYER_ACT_MAGIC;
  h.layer_id = (uint64_t)(uintptr_t)L;
  h.B = lc->B;
  h.Sq = lc->Sq;
  h.Sk = lc->Sk;
  h.bytes = lc->a_total;
  memcpy(act, &h, sizeof h);
  return ATTN_OK;
}

ATTN_API attn_status attn_layer_forward_sized(attn_layer *L, attn_context *ctx,
                                              const attn_layer_call *c,
                                              size_t size) {
  layer_call lc;
  char *act = NULL, *ws = NULL;
  void *owned;
  attn_status st = layer_call_resolve(L, ctx, c, size, 1, 0, &lc);
  if (st != ATTN_OK)
    return st;
  if ((st = layer_activations(L, &lc, 1, &act)) != ATTN_OK)
    return st;
  if ((st = layer_workspace(&lc, lc.ws_fwd, &ws, &owned)) != ATTN_OK)
    return st;
  memset(act, 0, sizeof(uint64_t)); /* no valid header until done */
  st = forward(L, ctx, &lc, act, ws);
  free(owned);
  return st;
}
