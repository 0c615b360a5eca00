/*
 * backward.c - the layer's backward pass, the forward's steps in reverse:
 *
 *   dO  = dout Wo                  dWo += dout^T O,  dbo += sum dout
 *   dQ, dK, dV, dT5 = attention backward (attn_backward, from the saved
 *                     Q, K, V, O, LSE)
 *   dQ, dK rotated back            ROPE (inverse rotation = its gradient)
 *   dWq += dQ^T x',  dbq += sum dQ   (and K with s', V with v')
 *   dx' = dQ Wq (+ dK Wk + dV Wv for self-attention)
 *   dy' = dK Wk (+ dV Wv when V comes from y);  dvalue = dV Wv
 *   dpos_table[pos] += dx' rows    LEARNED (dx = dx' either way)
 *
 * Parameter gradients are added into the layer's gradient buffer; dx, dy
 * and dvalue are overwritten.
 */
#include "layer_internal.h"

#include <stdlib.h>
#include <string.h>

static attn_status check_header(const attn_layer *L, const layer_call *lc,
                                const char *act) {
  layer_act_header h;
  memcpy(&h, act, sizeof h);
  if (h.magic != LAYER_ACT_MAGIC || h.layer_id != (uint64_t)(uintptr_t)L ||
      h.B != lc->B || h.Sq != lc->Sq || h.Sk != lc->Sk ||
      h.bytes != lc->a_total)
    return layer_fail(lc->err, lc->err_size, ATTN_ERR_INVALID_ARGUMENT,
                      "the activations do not hold a forward of this layer "
                      "with these shapes (batch %lld, seq_q %lld, seq_k "
                      "%lld): run attn_layer_forward with the same call "
                      "first",
                      (long long)lc->B, (long long)lc->Sq, (long long)lc->Sk);
  return ATTN_OK;
}

/* dO, the output projection's gradients, and the attention backward into
 * dQ, dK, dV (rotated back for RoPE). */
static attn_status attention_grads(attn_layer *L, attn_context *ctx,
                                   const layer_call *lc, char *act, char *ws,
                                   const layer_weights *w) {
  const attn_layer_config *g = &L->cfg;
  float *dO = (float *)(ws + lc->w_do);
  attn_params p;
  attn_status st;
  layer_linear_dx(lc->rows_q, g->d_out, L->no, lc->c.dout, w->w[3], dO, 0);
  layer_linear_dw(lc->rows_q, g->d_out, L->no, lc->c.dout,
                  (const float *)(act + lc->a_o), w->gw[3], w->gb[3]);
  layer_attn_params(L, lc, act, &p);
  p.workspace = ws + lc->w_attn_b;
  p.workspace_size = lc->attn_bwd_bytes;
  p.dout = p.o;
  p.dout.data = dO;
  p.dq = p.q;
  p.dq.data = ws + lc->w_dq;
  p.dk = p.k;
  p.dk.data = ws + lc->w_dk;
  p.dv = p.v;
  p.dv.data = ws + lc->w_dv;
  if (g->position == ATTN_LAYER_POS_T5)
    p.drel_bias = (float *)(ws + lc->w_rel);
  st = attn_backward(ctx, &p);
  if (st != ATTN_OK)
    return st;
  if (g->position == ATTN_LAYER_POS_T5) {
    float *gt = L->grads + L->t[LP_REL].offset;
    const float *d = p.drel_bias;
    for (int64_t i = 0; i < g->t5_buckets * g->heads_q; i++)
      gt[i] += d[i];
  }
  if (g->position == ATTN_LAYER_POS_ROPE) {
    /* the rotation's positions come from p; its operands are dQ, dK */
    attn_params r = p;
    r.q = p.dq;
    r.k = p.dk;
    st = attn_rope_apply_qk(&L->rope, &r, p.dq, p.dk, 1);
    if (st != ATTN_OK)
      return st;
  }
  return ATTN_OK;
}

/* Input gradients: dx' (and dy', dvalue), the learned tables' gradients. */
static void input_grads(attn_layer *L, const layer_call *lc, char *ws,
                        const layer_weights *w) {
  const attn_layer_config *g = &L->cfg;
  const attn_layer_call *c = &lc->c;
  const int learned = g->position == ATTN_LAYER_POS_LEARNED;
  const float *dQ = (const float *)(ws + lc->w_dq);
  const float *dK = (const float *)(ws + lc->w_dk);
  const float *dV = (const float *)(ws + lc->w_dv);
  float *dxp = learned ? (float *)(ws + lc->w_dxp) : c->dx;
  float *dyp = learned && g->cross ? (float *)(ws + lc->w_dyp) : c->dy;
  if (dxp) {
    layer_linear_dx(lc->rows_q, L->nq, g->d_model, dQ, w->w[0], dxp, 0);
    if (!g->cross) {
      layer_linear_dx(lc->rows_k, L->nk, g->d_model, dK, w->w[1], dxp, 1);
      layer_linear_dx(lc->rows_k, L->nv, g->d_model, dV, w->w[2], dxp, 1);
    }
    if (learned) {
      layer_pos_grad(L, lc, 0, dxp);
      if (c->dx)
        memcpy(c->dx, dxp, (size_t)(lc->rows_q * g->d_model) * sizeof(float));
    }
  }
  if (g->cross && dyp) {
    layer_linear_dx(lc->rows_k, L->nk, g->kdim, dK, w->w[1], dyp, 0);
    if (!c->value)
      layer_linear_dx(lc->rows_k, L->nv, g->kdim, dV, w->w[2], dyp, 1);
    if (learned) {
      layer_pos_grad(L, lc, 1, dyp);
      if (c->dy)
        memcpy(c->dy, dyp, (size_t)(lc->rows_k * g->kdim) * sizeof(float));
    }
  }
  if (g->cross && c->value && c->dvalue)
    layer_linear_dx(lc->rows_k, L->nv, g->vdim, dV, w->w[2], c->dvalue, 0);
}

static attn_status backward(attn_layer *L, attn_context *ctx,
                            const layer_call *lc, char *act, char *ws) {
  const attn_layer_config *g = &L->cfg;
  const float *xin, *yin, *vin;
  layer_weights w;
  attn_status st;
  layer_weights_get(L, &w);
  st = attention_grads(L, ctx, lc, act, ws, &w);
  if (st != ATTN_OK)
    return st;
  st = layer_inputs(L, lc, ws, &xin, &yin, &vin);
  if (st != ATTN_OK)
    return st;
  layer_linear_dw(lc->rows_q, L->nq, g->d_model, (const float *)(ws + lc->w_dq),
                  xin, w.gw[0], w.gb[0]);
  layer_linear_dw(lc->rows_k, L->nk, g->kdim, (const float *)(ws + lc->w_dk),
                  yin, w.gw[1], w.gb[1]);
  layer_linear_dw(lc->rows_k, L->nv, g->vdim, (const float *)(ws + lc->w_dv),
                  vin, w.gw[2], w.gb[2]);
  input_grads(L, lc, ws, &w);
  return ATTN_OK;
}

ATTN_API attn_status attn_layer_backward_sized(attn_layer *L, attn_context *ctx,
                                               const attn_layer_call *c,
                                               size_t size) {
  layer_call lc;
  char *act = NULL, *ws = NULL;
  void *owned;
  attn_status st = layer_call_resolve(L, ctx, c, size, 1, 1, &lc);
  if (st != ATTN_OK)
    return st;
  if ((st = layer_activations(L, &lc, 0, &act)) != ATTN_OK)
    return st;
  if ((st = check_header(L, &lc, act)) != ATTN_OK)
    return st;
  if ((st = layer_workspace(&lc, lc.ws_bwd, &ws, &owned)) != ATTN_OK)
    return st;
  st = backward(L, ctx, &lc, act, ws);
  free(owned);
  return st;
}
