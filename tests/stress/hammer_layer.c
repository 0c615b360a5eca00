/*
 * Hammer cases of the multi-head layer's forward (attn/layer.h, libattn_layer:
 * OpenBLAS projections around attn_forward): self- or cross-attention,
 * GQA/MQA, position schemes (none, sinusoidal, learned, RoPE, ALiBi, T5),
 * causal or not. Built into attn_hammer_layer only.
 *
 * Reference: one thread. Shared runs use the case's layer object, read by
 * every worker at once with caller activations (layer.h: "with caller
 * activations, concurrent forwards on one layer are safe"); private runs
 * use the worker's own layer, made from the same configuration and seed.
 */
#include "attn/layer.h"
#include "hammer.h"

#include <stdlib.h>
#include <string.h>

typedef struct lcase {
  attn_layer_config cfg;
  uint64_t wseed;
  attn_layer *layer;
  int64_t batch, sq, sk;
  float *x, *y; /* [batch, sq, d_model], [batch, sk, kdim] */
  attn_causal causal;
  size_t out_n;
  float *ref_out;
  attn_status ref_st;
} lcase;

static attn_layer *layer_new(const lcase *c) {
  attn_layer *l = NULL;
  char err[256];
  if (attn_layer_create(&c->cfg, &l, err, sizeof err) != ATTN_OK)
    return NULL;
  if (attn_layer_init_weights(l, c->wseed) != ATTN_OK) {
    attn_layer_free(l);
    return NULL;
  }
  return l;
}

static attn_status forward(const lcase *c, attn_layer *l, attn_context *ctx,
                           int threads, int workspace, float **out, char *msg,
                           size_t msg_size) {
  attn_params opt;
  attn_params_init(&opt);
  opt.causal = c->causal;
  opt.num_threads = threads;
  attn_layer_call call;
  attn_layer_call_init(&call);
  call.batch = c->batch;
  call.seq_q = c->sq;
  call.seq_k = c->cfg.cross ? c->sk : c->sq;
  call.x = c->x;
  call.y = c->cfg.cross ? c->y : NULL;
  call.options = &opt;
  call.error_message = msg;
  call.error_message_size = msg_size;
  *out = tc_alloc(c->out_n * sizeof(float));
  memset(*out, 0xFF, c->out_n * sizeof(float));
  call.out = *out;
  size_t act = 0, wsb = 0;
  attn_status st = attn_layer_buffer_sizes(l, ctx, &call, &act, &wsb);
  if (st != ATTN_OK)
    return st;
  void *actb = tc_alloc(act ? act : 1), *wsraw = NULL;
  call.activations = actb;
  call.activations_size = act;
  if (workspace) {
    wsraw = hm_workspace(wsb, &call.workspace);
    call.workspace_size = wsb;
  }
  st = attn_layer_forward(l, ctx, &call);
  free(actb);
  free(wsraw);
  return st;
}

static void *layer_make(uint64_t seed, int index, attn_context *ctx) {
  static const int64_t dm[] = {16, 48, 64, 96};
  lcase *c = calloc(1, sizeof *c);
  if (!c)
    abort();
  tc_rng r = {tc_case_seed(seed ^ 0x1A7E2ull, (uint64_t)index)};
  attn_layer_config_init(&c->cfg);
  c->cfg.d_model = dm[tc_below(&r, 4)];
  c->cfg.heads_q = tc_chance(&r, 0.5) ? 4 : 2;
  c->cfg.heads_kv = tc_chance(&r, 0.5) ? c->cfg.heads_q : 1;
  c->cfg.cross = tc_chance(&r, 0.25);
  if (c->cfg.cross)
    c->cfg.kdim = c->cfg.d_model / 2;
  c->cfg.position = (attn_layer_position)tc_below(&r, 6);
  if (c->cfg.cross && c->cfg.position == ATTN_LAYER_POS_LEARNED)
    c->cfg.position = ATTN_LAYER_POS_NONE;
  c->wseed = tc_next(&r);
  c->batch = tc_range(&r, 1, 2);
  c->sq = tc_range(&r, 1, 100);
  c->sk = c->cfg.cross ? tc_range(&r, 1, 120) : c->sq;
  c->causal = tc_chance(&r, 0.5) ? ATTN_CAUSAL_BOTTOM_RIGHT : ATTN_CAUSAL_NONE;
  const size_t nx = (size_t)(c->batch * c->sq * c->cfg.d_model);
  c->x = tc_alloc(nx * sizeof(float));
  for (size_t i = 0; i < nx; i++)
    c->x[i] = (float)tc_normal(&r);
  if (c->cfg.cross) {
    const size_t ny = (size_t)(c->batch * c->sk * c->cfg.kdim);
    c->y = tc_alloc(ny * sizeof(float));
    for (size_t i = 0; i < ny; i++)
      c->y[i] = (float)tc_normal(&r);
  }
  c->out_n = nx; /* d_out = d_model */
  c->layer = layer_new(c);
  char msg[256] = "";
  c->ref_st =
      c->layer ? forward(c, c->layer, ctx, 1, 0, &c->ref_out, msg, sizeof msg)
               : ATTN_ERR_INVALID_ARGUMENT;
  if (c->ref_st != ATTN_OK)
    fprintf(stderr, "hammer: layer case %d: reference failed: %s (%s)\n", index,
            attn_strerror(c->ref_st), msg);
  return c;
}

static void layer_free(void *cv) {
  lcase *c = cv;
  attn_layer_free(c->layer);
  free(c->x), free(c->y), free(c->ref_out);
  free(c);
}

static void layer_priv_free(void *p) { attn_layer_free(p); }

static void layer_describe(const void *cv, FILE *f) {
  const lcase *c = cv;
  fprintf(f,
          "  layer: d_model %lld, heads %lld/%lld, %s, position %d, batch "
          "%lld, seq %lld/%lld, causal %d\n",
          (long long)c->cfg.d_model, (long long)c->cfg.heads_q,
          (long long)c->cfg.heads_kv, c->cfg.cross ? "cross" : "self",
          (int)c->cfg.position, (long long)c->batch, (long long)c->sq,
          (long long)c->sk, (int)c->causal);
}

static int layer_run(void *cv, void **privp, hm_worker *w, const hm_run *r) {
  const lcase *c = cv;
  if (c->ref_st != ATTN_OK)
    return 0;
  attn_layer *l = c->layer;
  if (r->private_data) {
    if (!*privp)
      *privp = layer_new(c);
    if (!*privp) {
      hm_report(w, &hm_kind_layer, c, r, "attn_layer_create failed");
      return 1;
    }
    l = *privp;
  }
  float *out = NULL;
  char msg[256] = "";
  const attn_status st =
      forward(c, l, r->ctx, r->threads, r->workspace, &out, msg, sizeof msg);
  w->counts[HM_LAYER_FORWARD]++;
  int bad = 0;
  if (st != ATTN_OK) {
    hm_report(w, &hm_kind_layer, c, r, "attn_layer_forward: %s (%s)",
              attn_strerror(st), msg);
    bad = 1;
  } else {
    bad = hm_same(w, &hm_kind_layer, c, r, "out", out, c->ref_out,
                  c->out_n * sizeof(float));
  }
  free(out);
  return bad;
}

const hm_kind hm_kind_layer = {"layer",         layer_make, layer_run,
                               layer_priv_free, layer_free, layer_describe};
