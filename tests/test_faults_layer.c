/*
 * test_faults_layer: the multi-head layer (attn/layer.h) with each heap
 * allocation of each call failing in turn, and each thread creation
 * (fault_sweep.h says what every try must satisfy): create (every
 * position scheme, cross, fused), the first forward (its own activation
 * buffer), forward and backward with the layer's buffers and with the
 * caller's, decode through contiguous and paged caches (and a batch past
 * the 64 lengths kept on the stack), the size queries, init_weights and
 * the parameter lookups. A failed backward must leave the gradients as
 * they were, a failed decode the cache. Linked with the static libraries
 * and --wrap (fault_inject.h); OpenBLAS's own allocations are not seen.
 * Last line: "N passed, N failed".
 */
#include "fault_inject.h"
#include "test_common.h"

static long n_pass, n_fail;

#include "fault_sweep.h"

#include <attn/layer.h>

enum { E = 32, HQ = 4, HK = 2, D = 8, B = 2, SQ = 11, SKC = 13 };

static attn_context *ctx1, *ctx3;

static float *randn(tc_rng *r, size_t n, double scale) {
  float *x = (float *)tc_alloc(n * sizeof *x);
  for (size_t i = 0; i < n; i++)
    x[i] = (float)(scale * tc_normal(r));
  return x;
}

static uint64_t hash_floats(uint64_t h, const float *x, size_t n) {
  return x ? fs_hash(h, x, n * sizeof *x) : h;
}

static void config(attn_layer_config *c, int scheme, int cross, int fused) {
  attn_layer_config_init(c);
  c->d_model = E;
  c->heads_q = HQ;
  c->heads_kv = fused ? HQ : HK;
  c->head_dim = D;
  c->cross = cross;
  c->fused_qkv = fused;
  c->position = (attn_layer_position)scheme;
  c->max_positions = 64;
  c->t5_buckets = 8;
  c->t5_max_distance = 20;
}

/* ---- create ------------------------------------------------------------ */
typedef struct ccase {
  attn_layer_config cfg;
  attn_rope rope;
  attn_layer *made;
  char msg[256];
  /* the first forward (first != 0) */
  int first;
  attn_context *ctx;
  attn_layer_call call;
  float *x, *y, *out;
} ccase;

static attn_status cr_call(void *st) {
  ccase *c = (ccase *)st;
  attn_status s = attn_layer_create(&c->cfg, &c->made, c->msg, sizeof c->msg);
  if (s != ATTN_OK || !c->first)
    return s;
  s = attn_layer_forward(c->made, c->ctx, &c->call);
  if (s != ATTN_OK) { /* the layer is freed here; nothing else may stay */
    attn_layer_free(c->made);
    c->made = NULL;
  }
  return s;
}
static uint64_t cr_digest(void *st) {
  ccase *c = (ccase *)st;
  int64_t n = 0;
  const float *prm = attn_layer_params(c->made, &n);
  uint64_t h = hash_floats(0, prm, (size_t)n);
  const int np = attn_layer_num_params(c->made);
  h = fs_hash(h, &np, sizeof np);
  if (c->first)
    h = hash_floats(h, c->out, (size_t)(B * SQ * E));
  return h;
}
static void cr_release(void *st) {
  ccase *c = (ccase *)st;
  attn_layer_free(c->made);
  c->made = NULL;
}

static const char *scheme_name[6] = {"none", "sinusoidal", "learned",
                                     "rope", "alibi",      "t5"};

static void create_calls(void) {
  printf("create:\n");
  tc_rng r = {100};
  float *x = randn(&r, B * SQ * E, 1.0), *y = randn(&r, B * SKC * E, 1.0);
  float *out = randn(&r, B * SQ * E, 0.0);
  for (int scheme = 0; scheme < 6; scheme++)
    for (int kind = 0; kind < 3; kind++) { /* self, cross, fused */
      if (kind == 2 && scheme != 0 && scheme != 3)
        continue;
      for (int first = 0; first <= 1; first++) {
        ccase c;
        memset(&c, 0, sizeof c);
        config(&c.cfg, scheme, kind == 1, kind == 2);
        if (scheme == ATTN_LAYER_POS_ROPE) {
          attn_rope_init(&c.rope);
          c.rope.scaling = ATTN_ROPE_SCALING_LLAMA3;
          c.cfg.rope = &c.rope;
        }
        c.first = first;
        c.ctx = first && scheme == 3 ? ctx3 : ctx1;
        c.x = x;
        c.y = y;
        c.out = out;
        attn_layer_call_init(&c.call);
        c.call.batch = B;
        c.call.seq_q = SQ;
        c.call.seq_k = kind == 1 ? SKC : SQ;
        c.call.x = x;
        c.call.y = kind == 1 ? y : NULL;
        c.call.out = out;
        c.call.error_message = c.msg;
        c.call.error_message_size = sizeof c.msg;
        char name[128];
        snprintf(name, sizeof name, "attn_layer_create %s %s%s",
                 scheme_name[scheme],
                 kind == 0   ? "self"
                 : kind == 1 ? "cross"
                             : "fused",
                 first ? " + first forward" : "");
        fault_case f = {0};
        f.name = name;
        f.st = &c;
        f.call = cr_call;
        f.digest = cr_digest;
        f.release = cr_release;
        f.msg = c.msg;
        f.msg_size = sizeof c.msg;
        fault_run(&f);
      }
    }
  free(x);
  free(y);
  free(out);
}

/* ---- forward and backward -------------------------------------------------
 */
typedef struct fcase {
  attn_context *ctx;
  attn_layer *L;
  attn_layer_call c;
  attn_params opt;
  int backward;
  float *x, *y, *out, *dout, *dx, *dy;
  void *act, *ws;
  int64_t nx, ny, nout;
  char msg[256];
} fcase;

static void f_init(fcase *f, attn_context *ctx, int scheme, int cross,
                   int caller_buffers, int backward, uint64_t seed) {
  memset(f, 0, sizeof *f);
  tc_rng r = {seed};
  attn_layer_config cfg;
  config(&cfg, scheme, cross, 0);
  char err[256];
  attn_status s = attn_layer_create(&cfg, &f->L, err, sizeof err);
  CHECK(s == ATTN_OK, "layer: %s", err);
  attn_layer_init_weights(f->L, seed);
  f->ctx = ctx;
  f->nx = B * SQ * E;
  f->ny = B * SKC * E;
  f->nout = B * SQ * E;
  f->x = randn(&r, (size_t)f->nx, 1.0);
  f->y = randn(&r, (size_t)f->ny, 1.0);
  f->out = randn(&r, (size_t)f->nout, 0.0);
  f->dout = randn(&r, (size_t)f->nout, 1.0);
  f->dx = randn(&r, (size_t)f->nx, 0.0);
  f->dy = randn(&r, (size_t)f->ny, 0.0);
  attn_params_init(&f->opt);
  f->opt.causal = cross ? ATTN_CAUSAL_NONE : ATTN_CAUSAL_BOTTOM_RIGHT;
  attn_layer_call_init(&f->c);
  attn_layer_call *c = &f->c;
  c->batch = B;
  c->seq_q = SQ;
  c->seq_k = cross ? SKC : SQ;
  c->x = f->x;
  c->y = cross ? f->y : NULL;
  c->out = f->out;
  c->options = &f->opt;
  c->error_message = f->msg;
  c->error_message_size = sizeof f->msg;
  if (caller_buffers) {
    size_t a = 0, w = 0;
    s = attn_layer_buffer_sizes(f->L, ctx, c, &a, &w);
    CHECK(s == ATTN_OK, "buffer sizes: %s", f->msg);
    f->act = tc_alloc(a);
    f->ws = tc_alloc(w);
    c->activations = f->act;
    c->activations_size = a;
    c->workspace = f->ws;
    c->workspace_size = w;
  }
  s = attn_layer_forward(f->L, ctx, c); /* the layer's buffer is made */
  CHECK(s == ATTN_OK, "forward: %s", f->msg);
  if (backward) {
    c->dout = f->dout;
    c->dx = f->dx;
    c->dy = cross ? f->dy : NULL;
    f->backward = 1;
  }
}

static void f_free(fcase *f) {
  attn_layer_free(f->L);
  free(f->x);
  free(f->y);
  free(f->out);
  free(f->dout);
  free(f->dx);
  free(f->dy);
  free(f->act);
  free(f->ws);
}

static void f_prepare(void *st) {
  fcase *f = (fcase *)st;
  if (f->backward) {
    attn_layer_zero_grad(f->L);
    memset(f->dx, 0xff, (size_t)f->nx * sizeof(float));
    memset(f->dy, 0xff, (size_t)f->ny * sizeof(float));
  } else {
    memset(f->out, 0xff, (size_t)f->nout * sizeof(float));
  }
}
static attn_status f_call(void *st) {
  fcase *f = (fcase *)st;
  return f->backward ? attn_layer_backward(f->L, f->ctx, &f->c)
                     : attn_layer_forward(f->L, f->ctx, &f->c);
}
static uint64_t f_grads(void *st) {
  fcase *f = (fcase *)st;
  int64_t n = 0;
  const float *g = attn_layer_grads(f->L, &n);
  return hash_floats(0, g, (size_t)n);
}
static uint64_t f_digest(void *st) {
  fcase *f = (fcase *)st;
  if (!f->backward)
    return hash_floats(0, f->out, (size_t)f->nout);
  uint64_t h = hash_floats(f_grads(st), f->dx, (size_t)f->nx);
  return f->c.dy ? hash_floats(h, f->dy, (size_t)f->ny) : h;
}

static void call_calls(void) {
  printf("forward and backward:\n");
  for (int scheme = 0; scheme < 6; scheme++)
    for (int cross = 0; cross <= 1; cross++)
      for (int bwd = 0; bwd <= 1; bwd++)
        for (int t = 0; t < 3; t++) { /* 1 thread, 3 threads, buffers */
          if (t == 2 && (scheme % 3 != 0 || cross))
            continue;
          fcase f;
          f_init(&f, t == 1 ? ctx3 : ctx1, scheme, cross, t == 2, bwd,
                 200 + (uint64_t)(scheme * 8 + cross * 4 + bwd));
          char name[128];
          snprintf(name, sizeof name, "attn_layer_%s %s %s, %s",
                   bwd ? "backward" : "forward", scheme_name[scheme],
                   cross ? "cross" : "self",
                   t == 0   ? "1 thread"
                   : t == 1 ? "3 threads"
                            : "caller buffers");
          fault_case c = {0};
          c.name = name;
          c.st = &f;
          c.prepare = f_prepare;
          c.call = f_call;
          c.digest = f_digest;
          c.msg = f.msg;
          c.msg_size = sizeof f.msg;
          if (bwd)
            c.state = f_grads; /* zero, and zero after a failure */
          if (t == 1) {
            c.ctx = &f.ctx;
            c.ctx_threads = 3;
          }
          if (t == 2) {
            long n = 0;
            f_prepare(&f);
            fi_arm_count();
            const attn_status s = f_call(&f);
            fi_disarm(&n, NULL);
            CHECK(s == ATTN_OK && n == 0,
                  "%s: status %d, %ld allocations with caller buffers", name,
                  (int)s, n);
          }
          fault_run(&c);
          f_free(&f);
        }
}

/* ---- decode -------------------------------------------------------------- */
typedef struct dcase {
  fcase f;
  attn_kv_cache kc;
  float *k, *v, *k0, *v0;
  size_t rows;
  int32_t *lens, *lens0, *table;
  int64_t nseq;
  float *x1, *out1;
  int sizes; /* call the size queries instead */
  size_t got[3];
} dcase;

static void d_init(dcase *d, attn_context *ctx, int scheme, int64_t nseq,
                   int paged, int caller_ws, uint64_t seed) {
  memset(d, 0, sizeof *d);
  f_init(&d->f, ctx, scheme, 0, 0, 0, seed);
  tc_rng r = {seed + 1};
  const int64_t cap = 32, page = 8;
  d->nseq = nseq;
  attn_kv_cache_init(&d->kc);
  attn_kv_cache *kc = &d->kc;
  kc->num_seqs = nseq;
  kc->heads_kv = HK;
  kc->head_dim = D;
  if (paged) {
    kc->page_size = page;
    kc->blocks_per_seq = cap / page;
    kc->num_pages = nseq * cap / page;
    d->table = (int32_t *)tc_alloc((size_t)kc->num_pages * sizeof(int32_t));
    for (int64_t i = 0; i < kc->num_pages; i++)
      d->table[i] = (int32_t)((i * 5 + 1) % kc->num_pages);
    kc->block_table = d->table;
  } else {
    kc->capacity = cap;
  }
  d->rows = (size_t)(nseq * cap * HK * D);
  d->k = randn(&r, d->rows, 0.0);
  d->v = randn(&r, d->rows, 0.0);
  d->k0 = randn(&r, d->rows, 0.0);
  d->v0 = randn(&r, d->rows, 0.0);
  d->lens = (int32_t *)tc_alloc((size_t)nseq * sizeof(int32_t));
  d->lens0 = (int32_t *)tc_alloc((size_t)nseq * sizeof(int32_t));
  memset(d->lens, 0, (size_t)nseq * sizeof(int32_t));
  kc->k = d->k;
  kc->v = d->v;
  kc->seq_lens = d->lens;
  /* a prompt of 5 tokens per sequence, then 2 new tokens in the call */
  d->x1 = randn(&r, (size_t)(nseq * 5 * E), 1.0);
  d->out1 = randn(&r, (size_t)(nseq * 5 * E), 0.0);
  attn_layer_call *c = &d->f.c;
  c->batch = nseq;
  c->seq_q = 5;
  c->seq_k = 0;
  c->x = d->x1;
  c->out = d->out1;
  const attn_status s = attn_layer_decode(d->f.L, ctx, c, kc);
  CHECK(s == ATTN_OK, "decode prompt: %s", d->f.msg);
  memcpy(d->k0, d->k, d->rows * sizeof(float));
  memcpy(d->v0, d->v, d->rows * sizeof(float));
  memcpy(d->lens0, d->lens, (size_t)nseq * sizeof(int32_t));
  c->seq_q = 2;
  if (caller_ws) {
    size_t w = 0;
    const attn_status s2 =
        attn_layer_decode_workspace_size(d->f.L, ctx, c, kc, &w);
    CHECK(s2 == ATTN_OK, "decode workspace size: %s", d->f.msg);
    d->f.ws = tc_alloc(w);
    c->workspace = d->f.ws;
    c->workspace_size = w;
  }
}
static void d_free(dcase *d) {
  free(d->k);
  free(d->v);
  free(d->k0);
  free(d->v0);
  free(d->lens);
  free(d->lens0);
  free(d->table);
  free(d->x1);
  free(d->out1);
  f_free(&d->f);
}
static void d_prepare(void *st) {
  dcase *d = (dcase *)st;
  memcpy(d->k, d->k0, d->rows * sizeof(float));
  memcpy(d->v, d->v0, d->rows * sizeof(float));
  memcpy(d->lens, d->lens0, (size_t)d->nseq * sizeof(int32_t));
  memset(d->out1, 0xff, (size_t)(d->nseq * 5 * E) * sizeof(float));
  memset(d->got, 0, sizeof d->got);
}
static attn_status d_call(void *st) {
  dcase *d = (dcase *)st;
  if (!d->sizes)
    return attn_layer_decode(d->f.L, d->f.ctx, &d->f.c, &d->kc);
  attn_status s = attn_layer_decode_workspace_size(d->f.L, d->f.ctx, &d->f.c,
                                                   &d->kc, &d->got[0]);
  if (s == ATTN_OK)
    s = attn_layer_buffer_sizes(d->f.L, d->f.ctx, &d->f.c, &d->got[1],
                                &d->got[2]);
  return s;
}
static uint64_t d_state(void *st) {
  dcase *d = (dcase *)st;
  uint64_t h = hash_floats(0, d->k, d->rows);
  h = hash_floats(h, d->v, d->rows);
  return fs_hash(h, d->lens, (size_t)d->nseq * sizeof(int32_t));
}
static uint64_t d_digest(void *st) {
  dcase *d = (dcase *)st;
  if (d->sizes)
    return fs_hash(0, d->got, sizeof d->got);
  return hash_floats(d_state(st), d->out1, (size_t)(d->nseq * 2 * E));
}

static void decode_calls(void) {
  printf("decode and size queries:\n");
  for (int scheme = 0; scheme < 6; scheme++)
    for (int v = 0; v < 6; v++) {
      /* v: 0 contiguous, 1 paged, 2 contiguous with a workspace,
       * 3 65 sequences, 4 3 threads, 5 the size queries */
      if (v >= 2 && scheme != 3 && scheme != 5)
        continue;
      dcase d;
      d_init(&d, v == 4 ? ctx3 : ctx1, scheme, v == 3 ? 65 : B, v == 1, v == 2,
             300 + (uint64_t)(scheme * 8 + v));
      d.sizes = v == 5;
      static const char *vn[6] = {
          "contiguous",   "paged",     "workspace",
          "65 sequences", "3 threads", "decode_workspace_size + buffer_sizes"};
      char name[128];
      snprintf(name, sizeof name, "attn_layer_decode %s, %s",
               scheme_name[scheme], vn[v]);
      if (v == 5)
        snprintf(name, sizeof name, "attn_layer_%s, %s", vn[v],
                 scheme_name[scheme]);
      fault_case c = {0};
      c.name = name;
      c.st = &d;
      c.prepare = d_prepare;
      c.call = d_call;
      c.digest = d_digest;
      c.state = d_state;
      c.msg = d.f.msg;
      c.msg_size = sizeof d.f.msg;
      if (v == 4) {
        c.ctx = &d.f.ctx;
        c.ctx_threads = 3;
      }
      if (v == 2) {
        long n = 0;
        d_prepare(&d);
        fi_arm_count();
        const attn_status s = d_call(&d);
        fi_disarm(&n, NULL);
        CHECK(s == ATTN_OK && n == 0,
              "%s: status %d, %ld allocations with a workspace", name, (int)s,
              n);
      }
      fault_run(&c);
      d_free(&d);
    }
}

/* ---- parameters ------------------------------------------------------------
 */
typedef struct pcase {
  attn_layer *L;
  attn_layer_param got[3];
} pcase;

static attn_status p_call(void *st) {
  pcase *p = (pcase *)st;
  attn_status s = attn_layer_init_weights(p->L, 9);
  if (s == ATTN_OK)
    s = attn_layer_param_get(p->L, 1, &p->got[0]);
  if (s == ATTN_OK)
    s = attn_layer_param_find(p->L, "out_proj.weight", &p->got[1]);
  if (s == ATTN_OK)
    s = attn_layer_param_find(p->L, "rel_bias", &p->got[2]);
  attn_layer_zero_grad(p->L);
  return s;
}
static uint64_t p_digest(void *st) {
  pcase *p = (pcase *)st;
  int64_t n = 0;
  const float *prm = attn_layer_params(p->L, &n);
  uint64_t h = hash_floats(0, prm, (size_t)n);
  for (int i = 0; i < 3; i++)
    h = fs_hash(h, &p->got[i].count, sizeof p->got[i].count);
  return h;
}

static void param_calls(void) {
  printf("parameters:\n");
  pcase p;
  memset(&p, 0, sizeof p);
  attn_layer_config cfg;
  config(&cfg, ATTN_LAYER_POS_T5, 0, 0);
  CHECK(attn_layer_create(&cfg, &p.L, NULL, 0) == ATTN_OK, "layer");
  fault_case c = {0};
  c.name = "init_weights, param_get, param_find, zero_grad";
  c.st = &p;
  c.call = p_call;
  c.digest = p_digest;
  fault_run(&c);
  attn_layer_free(p.L);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* progress in a log */
  attn_context_options o;
  attn_context_options_init(&o);
  o.num_threads = 1;
  if (attn_context_create(&ctx1, &o) != ATTN_OK)
    return 2;
  o.num_threads = 3;
  if (attn_context_create(&ctx3, &o) != ATTN_OK)
    return 2;
  { /* the pools' workers and the default context, before counting */
    fcase f;
    f_init(&f, ctx3, 0, 0, 0, 0, 1);
    attn_params opt = f.opt;
    opt.num_threads = 4;
    f.c.options = &opt;
    CHECK(attn_layer_forward(f.L, ctx3, &f.c) == ATTN_OK, "warm-up");
    CHECK(attn_layer_forward(f.L, NULL, &f.c) == ATTN_OK, "warm-up");
    f_free(&f);
  }
  const double t0 = tc_now();
  create_calls();
  call_calls();
  decode_calls();
  param_calls();
  attn_context_free(ctx1);
  attn_context_free(ctx3);
  fault_summary();
  printf("(%.1f s)\n", tc_now() - t0);
  printf("%ld passed, %ld failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
