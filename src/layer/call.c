/*
 * call.c - a layer call resolved: the caller's struct and attn_params
 * template copied over defaults and checked, the layouts of the activation
 * buffer and of the workspace, and the attention params of the call.
 *
 * Activations (each piece 64-byte aligned):
 *   header                     which forward wrote them (layer_act_header)
 *   Q   [B*Sq, hq*d]           after RoPE
 *   K   [B*Sk, hkv*d]          after RoPE
 *   V   [B*Sk, hkv*dv]
 *   O   [B*Sq, hq*dv]          the attention's output
 *   LSE [B, hq, Sq]            ([hq, total_q] packed)
 * Workspace (forward | backward):
 *   x' [B*Sq, E], y' [B*Sk, kdim]   inputs plus absolute positions
 *   table [max(Sq,Sk), max(E,kdim)] SINUSOIDAL rows of one sequence
 *   forward:  attn_forward's workspace
 *   backward: dO [B*Sq, hq*dv], dQ, dK, dV (like Q, K, V), dx' and dy'
 *             (LEARNED), dT5 [buckets, hq], attn_backward's workspace
 */
#include "layer_internal.h"

#include <string.h>

#define LAYER_CALL_SIZE_0_3 sizeof(attn_layer_call)

ATTN_API void attn_layer_call_init_sized(attn_layer_call *c, size_t size) {
  if (!c || size != LAYER_CALL_SIZE_0_3)
    return;
  memset(c, 0, size);
  c->options_size = sizeof(attn_params);
}

/* bytes rounded up to LAYER_ALIGN, accumulated into *at; returns the
 * offset of the piece */
static size_t piece(size_t *at, int64_t floats) {
  const size_t off = *at;
  size_t bytes = (size_t)floats * sizeof(float);
  bytes = (bytes + LAYER_ALIGN - 1) & ~(size_t)(LAYER_ALIGN - 1);
  *at += bytes;
  return off;
}

/* Checks the template: known size, none of the fields the layer fills. */
static attn_status resolve_options(const attn_layer *L, layer_call *lc) {
  const attn_layer_call *c = &lc->c;
  attn_params *o = &lc->opt;
  attn_params_init(o);
  if (c->options) {
    const size_t n = c->options_size;
    if (n != ATTN_PARAMS_SIZE_0_1 && n != ATTN_PARAMS_SIZE_0_2 &&
        n != ATTN_PARAMS_SIZE_0_3 && n != sizeof(attn_params))
      return layer_fail(lc->err, lc->err_size, ATTN_ERR_ABI,
                        "options_size %zu is not a size of attn_params this "
                        "library knows (%zu)",
                        n, sizeof(attn_params));
    memcpy(o, c->options, n);
  }
  if (!lc->err && o->error_message) {
    lc->err = o->error_message;
    lc->err_size = o->error_message_size;
  }
  const struct {
    const void *set;
    const char *name;
  } filled[] = {
      {o->q.data, "q"},
      {o->k.data, "k"},
      {o->v.data, "v"},
      {o->o.data, "o"},
      {o->lse, "lse"},
      {o->workspace, "workspace"},
      {o->dout.data, "dout"},
      {o->dq.data, "dq"},
      {o->dk.data, "dk"},
      {o->dv.data, "dv"},
      {L->cfg.position == ATTN_LAYER_POS_ALIBI ? o->alibi_slopes : NULL,
       "alibi_slopes (the layer's ALiBi sets them)"},
      {L->cfg.position == ATTN_LAYER_POS_T5 ? o->rel_bias : NULL,
       "rel_bias (the layer's T5 table)"},
      {L->cfg.position == ATTN_LAYER_POS_T5 ? o->drel_bias : NULL,
       "drel_bias (the layer's T5 gradient)"},
  };
  for (size_t i = 0; i < sizeof filled / sizeof filled[0]; i++)
    if (filled[i].set)
      return layer_fail(lc->err, lc->err_size, ATTN_ERR_INVALID_ARGUMENT,
                        "options.%s must be unset: the layer fills it",
                        filled[i].name);
  return ATTN_OK;
}

static attn_status resolve_shapes(const attn_layer *L, layer_call *lc) {
  const attn_layer_call *c = &lc->c;
  const attn_layer_config *g = &L->cfg;
  const int64_t lim = ((int64_t)1 << 31) - 1;
  lc->B = c->batch;
  lc->Sq = c->seq_q;
  lc->Sk = g->cross ? c->seq_k : c->seq_q;
  if (lc->B < 1 || lc->Sq < 1 || lc->Sk < 1)
    return layer_fail(lc->err, lc->err_size, ATTN_ERR_INVALID_SHAPE,
                      "batch (%lld), seq_q (%lld) and seq_k (%lld) must be "
                      ">= 1",
                      (long long)lc->B, (long long)lc->Sq, (long long)lc->Sk);
  if (!g->cross && c->seq_k != 0 && c->seq_k != c->seq_q)
    return layer_fail(lc->err, lc->err_size, ATTN_ERR_INVALID_SHAPE,
                      "self-attention: seq_k (%lld) must be 0 or seq_q "
                      "(%lld)",
                      (long long)c->seq_k, (long long)c->seq_q);
  if (lc->B > lim / lc->Sq || lc->B > lim / lc->Sk)
    return layer_fail(lc->err, lc->err_size, ATTN_ERR_OVERFLOW,
                      "batch * seq (%lld * %lld) is above 2^31 - 1",
                      (long long)lc->B,
                      (long long)(lc->Sq > lc->Sk ? lc->Sq : lc->Sk));
  lc->rows_q = lc->B * lc->Sq;
  lc->rows_k = lc->B * lc->Sk;
  /* every buffer is rows * width floats: at most 2^44 each keeps the sums
   * of their byte sizes far from overflowing */
  {
    const int64_t w[] = {g->d_model, g->kdim, g->vdim,  L->nq,     L->nk,
                         L->nv,      L->no,   g->d_out, g->heads_q};
    int64_t m = 1;
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
      m = w[i] > m ? w[i] : m;
    if (lc->rows_q > ((int64_t)1 << 44) / m ||
        lc->rows_k > ((int64_t)1 << 44) / m)
      return layer_fail(
          lc->err, lc->err_size, ATTN_ERR_OVERFLOW,
          "batch * seq (%lld) times a width (%lld) is above "
          "2^44 elements",
          (long long)(lc->rows_q > lc->rows_k ? lc->rows_q : lc->rows_k),
          (long long)m);
  }
  lc->nseq = lc->opt.cu_seqlens_q ? lc->opt.varlen_batch : lc->B;
  if (lc->opt.cu_seqlens_q && lc->B != 1)
    return layer_fail(lc->err, lc->err_size, ATTN_ERR_INVALID_SHAPE,
                      "with cu_seqlens, batch (%lld) must be 1 (seq_q and "
                      "seq_k are the total token counts)",
                      (long long)lc->B);
  if (lc->opt.cu_seqlens_q && lc->nseq < 1)
    return layer_fail(lc->err, lc->err_size, ATTN_ERR_INVALID_SEQLENS,
                      "varlen_batch (%lld) must be >= 1 with cu_seqlens",
                      (long long)lc->nseq);
  return ATTN_OK;
}

static attn_status check_pointers(const attn_layer *L, layer_call *lc,
                                  int backward) {
  const attn_layer_call *c = &lc->c;
  const int cross = L->cfg.cross;
  if (!c->x || (!backward && !c->out) || (backward && !c->dout))
    return layer_fail(lc->err, lc->err_size, ATTN_ERR_NULL_POINTER,
                      "%s must not be NULL",
                      !c->x      ? "x"
                      : backward ? "dout"
                                 : "out");
  if (cross && !c->y)
    return layer_fail(lc->err, lc->err_size, ATTN_ERR_NULL_POINTER,
                      "cross-attention needs y (the key input)");
  return ATTN_OK;
}

static attn_status check_inputs(const attn_layer *L, layer_call *lc) {
  const attn_layer_call *c = &lc->c;
  const attn_layer_config *g = &L->cfg;
  if (!g->cross && (c->y || c->value || c->dy || c->dvalue))
    return layer_fail(lc->err, lc->err_size, ATTN_ERR_INVALID_ARGUMENT,
                      "self-attention reads K and V from x: y, value, dy "
                      "and dvalue must be NULL");
  if (g->cross && !c->value && g->vdim != g->kdim)
    return layer_fail(lc->err, lc->err_size, ATTN_ERR_INVALID_SHAPE,
                      "no value input: V comes from y, so vdim (%lld) must "
                      "equal kdim (%lld)",
                      (long long)g->vdim, (long long)g->kdim);
  if (c->dvalue && !c->value)
    return layer_fail(lc->err, lc->err_size, ATTN_ERR_INVALID_ARGUMENT,
                      "dvalue is set but there is no value input (its "
                      "gradient is in dy)");
  return ATTN_OK;
}

/* The workspaces of the attention calls, with views over stand-in
 * addresses (only their sizes matter; nothing is read through them). */
static attn_status attn_sizes(const attn_layer *L, attn_context *ctx,
                              layer_call *lc) {
  attn_params p;
  attn_status st;
  char *act = (char *)(uintptr_t)((uintptr_t)1 << 40);
  char *ws = (char *)(uintptr_t)((uintptr_t)3 << 40);
  layer_attn_params(L, lc, act, &p);
  st = attn_forward_workspace_size(ctx, &p, &lc->attn_fwd_bytes);
  if (st != ATTN_OK)
    return st;
  p.dout = attn_tensor_bshd(ws + lc->w_do, ATTN_DTYPE_F32, lc->B, lc->Sq,
                            L->cfg.heads_q, L->cfg.head_dim_v);
  p.dq = p.q;
  p.dq.data = ws + lc->w_dq;
  p.dk = p.k;
  p.dk.data = ws + lc->w_dk;
  p.dv = p.v;
  p.dv.data = ws + lc->w_dv;
  if (L->cfg.position == ATTN_LAYER_POS_T5)
    p.drel_bias = (float *)(ws + lc->w_rel);
  return attn_backward_workspace_size(ctx, &p, &lc->attn_bwd_bytes);
}

static void layouts(const attn_layer *L, layer_call *lc) {
  const attn_layer_config *g = &L->cfg;
  const int learned = g->position == ATTN_LAYER_POS_LEARNED;
  const int64_t tabw = g->d_model > g->kdim ? g->d_model : g->kdim;
  const int64_t tabs = lc->Sq > lc->Sk ? lc->Sq : lc->Sk;
  size_t at = 0, common;
  /* activations */
  piece(&at, LAYER_ALIGN / (int64_t)sizeof(float));
  lc->a_q = piece(&at, lc->rows_q * L->nq);
  lc->a_k = piece(&at, lc->rows_k * L->nk);
  lc->a_v = piece(&at, lc->rows_k * L->nv);
  lc->a_o = piece(&at, lc->rows_q * L->no);
  lc->a_lse = piece(&at, lc->rows_q * g->heads_q);
  lc->a_total = at;
  /* workspace: common part */
  at = 0;
  lc->w_xp = piece(&at, lc->absolute ? lc->rows_q * g->d_model : 0);
  lc->w_yp = piece(&at, lc->absolute && g->cross ? lc->rows_k * g->kdim : 0);
  lc->w_tab =
      piece(&at, g->position == ATTN_LAYER_POS_SINUSOIDAL ? tabs * tabw : 0);
  common = at;
  lc->w_attn_f = common;
  lc->w_do = piece(&at, lc->rows_q * L->no);
  lc->w_dq = piece(&at, lc->rows_q * L->nq);
  lc->w_dk = piece(&at, lc->rows_k * L->nk);
  lc->w_dv = piece(&at, lc->rows_k * L->nv);
  lc->w_dxp = piece(&at, learned ? lc->rows_q * g->d_model : 0);
  lc->w_dyp = piece(&at, learned && g->cross ? lc->rows_k * g->kdim : 0);
  lc->w_rel = piece(
      &at, g->position == ATTN_LAYER_POS_T5 ? g->t5_buckets * g->heads_q : 0);
  lc->w_attn_b = at;
}

attn_status layer_call_resolve(attn_layer *L, attn_context *ctx,
                               const attn_layer_call *c, size_t size,
                               int need_ptrs, int backward, layer_call *lc) {
  attn_status st;
  memset(lc, 0, sizeof *lc);
  if (!c)
    return ATTN_ERR_NULL_POINTER;
  if (size != LAYER_CALL_SIZE_0_3)
    return ATTN_ERR_ABI;
  lc->c = *c;
  lc->err = c->error_message;
  lc->err_size = c->error_message_size;
  if (!L)
    return layer_fail(lc->err, lc->err_size, ATTN_ERR_NULL_POINTER,
                      "layer must not be NULL");
  if ((st = resolve_options(L, lc)) != ATTN_OK)
    return st;
  if ((st = resolve_shapes(L, lc)) != ATTN_OK)
    return st;
  if (need_ptrs && (st = check_pointers(L, lc, backward)) != ATTN_OK)
    return st;
  if ((st = check_inputs(L, lc)) != ATTN_OK)
    return st;
  lc->absolute = L->cfg.position == ATTN_LAYER_POS_SINUSOIDAL ||
                 L->cfg.position == ATTN_LAYER_POS_LEARNED;
  layouts(L, lc);
  st = attn_sizes(L, ctx, lc);
  if (st != ATTN_OK)
    return st; /* the message is the core's, in lc->err */
  lc->ws_fwd = lc->w_attn_f + lc->attn_fwd_bytes;
  lc->ws_bwd = lc->w_attn_b + lc->attn_bwd_bytes;
  return ATTN_OK;
}

void layer_attn_params(const attn_layer *L, const layer_call *lc, char *act,
                       attn_params *p) {
  const attn_layer_config *g = &L->cfg;
  *p = lc->opt;
  p->q = attn_tensor_bshd(act + lc->a_q, ATTN_DTYPE_F32, lc->B, lc->Sq,
                          g->heads_q, g->head_dim);
  p->k = attn_tensor_bshd(act + lc->a_k, ATTN_DTYPE_F32, lc->B, lc->Sk,
                          g->heads_kv, g->head_dim);
  p->v = attn_tensor_bshd(act + lc->a_v, ATTN_DTYPE_F32, lc->B, lc->Sk,
                          g->heads_kv, g->head_dim_v);
  p->o = attn_tensor_bshd(act + lc->a_o, ATTN_DTYPE_F32, lc->B, lc->Sq,
                          g->heads_q, g->head_dim_v);
  p->lse = (float *)(act + lc->a_lse);
  p->error_message = lc->err;
  p->error_message_size = lc->err_size;
  layer_position_params(L, p);
}

void layer_position_params(const attn_layer *L, attn_params *p) {
  const attn_layer_config *g = &L->cfg;
  if (g->position == ATTN_LAYER_POS_ALIBI)
    p->alibi_slopes = L->alibi;
  if (g->position == ATTN_LAYER_POS_T5) {
    p->rel_bias = L->params + L->t[LP_REL].offset;
    p->rel_buckets = g->t5_buckets;
    p->rel_max_distance = g->t5_max_distance;
    p->rel_bidirectional = g->t5_bidirectional;
  }
}

ATTN_API attn_status attn_layer_buffer_sizes_sized(
    attn_layer *L, attn_context *ctx, const attn_layer_call *c, size_t size,
    size_t *activations, size_t *workspace) {
  layer_call lc;
  attn_status st;
  if (!activations || !workspace)
    return ATTN_ERR_NULL_POINTER;
  st = layer_call_resolve(L, ctx, c, size, 0, 0, &lc);
  if (st != ATTN_OK)
    return st;
  *activations = lc.a_total;
  *workspace = lc.ws_fwd > lc.ws_bwd ? lc.ws_fwd : lc.ws_bwd;
  return ATTN_OK;
}
