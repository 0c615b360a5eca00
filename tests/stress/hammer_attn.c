/*
 * Hammer cases of attn_forward (tiled and decode paths) and attn_backward:
 * problems drawn by the tests' generator (tests/problem.h: shapes at tile
 * edges, GQA/MQA, f32/bf16/f16 in and out, strides, causal both ways,
 * windows, prefix-LM, mask and bias tensors, kv_lens, packed sequences,
 * positions, compiled masks, ALiBi, T5, sinks, softcap), plus on some of
 * them one of the 0.4/0.5 options the generator does not draw: a Child et
 * al. pattern, Longformer global tokens, a block mask, a mask_mod or
 * score_mod function, or dropout.
 *
 * Reference: the case's own inputs, num_threads 1 under a one-thread
 * context. A run writes into fresh output buffers that start as the
 * builder's sentinel (so padding and guards are compared too).
 */
#include "hammer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Smaller than the unit tests' profiles: a call takes about a millisecond,
 * so that 64 threads on two cores still make thousands of calls. */
static const tp_profile prof_forward = {
    "hammer-forward", 200, 300, 0.1, 5e5, 3e6, 6, 0.04, 0.0, 0.3, 0};
static const tp_profile prof_decode = {
    "hammer-decode", 8, 8, 0.0, 4e6, 1.2e7, 8, 0.04, 1.0, 0.3, 0};
static const tp_profile prof_backward = {
    "hammer-backward", 70, 150, 0.15, 3e5, 1.5e6, 6, 0.0, 0.03, 0.0, 1};

/* ---------------------------------------------------------------------- */
/* Options the generator does not draw                                    */
/* ---------------------------------------------------------------------- */
enum {
  X_NONE,
  X_CHILD,     /* sparse_kind STRIDED / FIXED                       */
  X_GLOBAL,    /* global_idx with a window                          */
  X_BLOCK,     /* block_mask                                        */
  X_MASK_MOD,  /* mask_mod (no tile classifier: probed per element) */
  X_SCORE_MOD, /* score_mod and its derivative                      */
  X_DROPOUT,   /* dropout_p, dropout_seed                           */
  X_N
};

typedef struct extra {
  int kind;
  int sparse_kind;
  int64_t sparse_l, sparse_c;
  int32_t global[4];
  int64_t global_count, wl, wr;
  uint8_t *block; /* [1, 1, nbq, nbk] */
  int64_t block_q, block_k, nbq, nbk;
  float dropout_p;
  uint64_t dropout_seed;
} extra;

/* Pure functions of their arguments, as attn.h asks. */
static int mod_mask(int64_t b, int64_t h, int64_t i, int64_t j, void *u) {
  (void)u;
  return (i * 7 + j * 3 + h + b) % 5 != 0;
}
static float mod_score(float s, int64_t b, int64_t h, int64_t i, int64_t j,
                       void *u) {
  (void)u, (void)b, (void)h;
  return 0.75f * s + 0.125f * (float)((i - j) % 3);
}
static float mod_score_grad(float s, int64_t b, int64_t h, int64_t i, int64_t j,
                            void *u) {
  (void)u, (void)b, (void)h, (void)i, (void)j, (void)s;
  return 0.75f;
}

static void extra_draw(extra *x, const tp_problem *c, tc_rng *r) {
  memset(x, 0, sizeof *x);
  if (c->varlen || !tc_chance(r, 0.45))
    return;
  x->kind = 1 + (int)tc_below(r, X_N - 1);
  if (c->compiled && x->kind <= X_MASK_MOD)
    x->kind = tc_chance(r, 0.5) ? X_SCORE_MOD : X_DROPOUT;
  switch (x->kind) {
  case X_CHILD:
    x->sparse_kind =
        tc_chance(r, 0.5) ? ATTN_SPARSE_STRIDED : ATTN_SPARSE_FIXED;
    x->sparse_l = tc_range(r, 1, 80);
    x->sparse_c = tc_range(r, 1, x->sparse_l);
    break;
  case X_GLOBAL: {
    x->global_count = tc_range(r, 1, 4);
    int64_t at = 0;
    for (int64_t g = 0; g < x->global_count; g++) {
      at += tc_range(r, g ? 1 : 0, c->sk / 4 + 1);
      x->global[g] = (int32_t)at;
    }
    while (x->global_count > 0 && x->global[x->global_count - 1] >= c->sk)
      x->global_count--;
    if (x->global_count == 0)
      x->kind = X_NONE;
    x->wl = tc_range(r, 0, 70);
    x->wr = tc_range(r, 0, 5);
    break;
  }
  case X_BLOCK:
    x->block_q = tc_range(r, 1, 70);
    x->block_k = tc_range(r, 1, 90);
    x->nbq = (c->sq + x->block_q - 1) / x->block_q;
    x->nbk = (c->sk + x->block_k - 1) / x->block_k;
    x->block = tc_alloc((size_t)(x->nbq * x->nbk));
    for (int64_t i = 0; i < x->nbq * x->nbk; i++)
      x->block[i] = (uint8_t)tc_chance(r, 0.6);
    break;
  case X_DROPOUT:
    x->dropout_p = (float)tc_uniform(r, 0.05, 0.5);
    x->dropout_seed = tc_next(r);
    break;
  default:
    break;
  }
}

/* Sets x's fields in p (block points to block, the caller's copy). */
static void extra_apply(const extra *x, const uint8_t *block, attn_params *p) {
  switch (x->kind) {
  case X_CHILD:
    p->sparse_kind = x->sparse_kind;
    p->sparse_l = x->sparse_l;
    p->sparse_c = x->sparse_c;
    break;
  case X_GLOBAL:
    p->global_idx = x->global;
    p->global_count = x->global_count;
    p->window_left = x->wl;
    p->window_right = x->wr;
    break;
  case X_BLOCK:
    p->block_mask = attn_tensor_contiguous((void *)block, ATTN_DTYPE_BOOL, 1, 1,
                                           x->nbq, x->nbk);
    p->block_q = x->block_q;
    p->block_k = x->block_k;
    break;
  case X_MASK_MOD:
    p->mask_mod = mod_mask;
    break;
  case X_SCORE_MOD:
    p->score_mod = mod_score;
    p->score_mod_grad = mod_score_grad;
    break;
  case X_DROPOUT:
    p->dropout_p = x->dropout_p;
    p->dropout_seed = x->dropout_seed;
    break;
  default:
    break;
  }
}

static const char *extra_name(int kind) {
  static const char *const n[X_N] = {
      "none",     "child pattern", "global tokens", "block mask",
      "mask_mod", "score_mod",     "dropout"};
  return n[kind];
}

/* ---------------------------------------------------------------------- */
/* A case and its copies                                                   */
/* ---------------------------------------------------------------------- */
enum { K_FORWARD, K_DECODE, K_BACKWARD };

typedef struct inst {
  attn_params p;
  tp_bufs m;
  uint8_t *block; /* this copy's block mask */
} inst;

typedef struct acase {
  int kind; /* K_* */
  tp_problem c;
  extra x;
  attn_isa isa;
  inst shared;
  attn_status ref_status;
  char ref_msg[256];
  uint8_t *ref_o;
  float *ref_lse; /* n_lse + 16, guards included */
  uint8_t *ref_g[3];
  float *ref_dbias, *ref_drel, *ref_dsinks;
} acase;

static const hm_kind *kind_of(const acase *a) {
  return a->kind == K_FORWARD  ? &hm_kind_forward
         : a->kind == K_DECODE ? &hm_kind_decode
                               : &hm_kind_backward;
}

static void inst_build(const acase *a, inst *in) {
  tp_build(&a->c, &in->p, &in->m);
  in->block = hm_dup(a->x.block, (size_t)(a->x.nbq * a->x.nbk));
  extra_apply(&a->x, in->block, &in->p);
  in->p.isa = a->isa;
  in->p.num_threads = 1;
}

static void inst_free(inst *in) {
  tp_bufs_free(&in->m);
  free(in->block);
}

/* Output buffers of one run: fresh copies of the builder's sentinels. */
typedef struct outs {
  void *o;
  float *lse;
  void *g[3];
  float *dbias, *drel, *dsinks;
} outs;

static float *lse_new(const tp_bufs *m) {
  float *l = tc_alloc((size_t)(m->n_lse + 16) * sizeof(float));
  for (int64_t i = 0; i < m->n_lse + 16; i++)
    l[i] = NAN;
  return l;
}

static float *fill7f(size_t bytes) {
  if (!bytes)
    return NULL;
  float *x = tc_alloc(bytes);
  memset(x, 0x7F, bytes);
  return x;
}

/* Points p's forward outputs at fresh buffers. */
static void outs_forward(const acase *a, const inst *in, attn_params *p,
                         outs *o) {
  o->o = hm_dup(in->m.init[TP_O], in->m.bytes[TP_O]);
  p->o.data = o->o;
  o->lse = lse_new(&in->m);
  p->lse = a->c.with_lse ? o->lse + 8 : NULL;
}

/* Points p's backward outputs at fresh buffers. */
static void outs_backward(const inst *in, attn_params *p, outs *o) {
  attn_tensor *g[3] = {&p->dq, &p->dk, &p->dv};
  for (int t = 0; t < 3; t++) {
    o->g[t] = hm_dup(in->m.init[TP_DQ + t], in->m.bytes[TP_DQ + t]);
    g[t]->data = o->g[t];
  }
  o->dbias = fill7f(in->m.dbias_bytes);
  if (o->dbias)
    p->dbias.data = o->dbias;
  o->drel = fill7f(in->m.drel_bytes);
  if (o->drel)
    p->drel_bias = o->drel;
  o->dsinks =
      in->m.dsinks ? fill7f((size_t)in->m.n_sinks * sizeof(float)) : NULL;
  if (o->dsinks)
    p->dsinks = o->dsinks;
}

static void outs_free(outs *o) {
  free(o->o), free(o->lse), free(o->dbias), free(o->drel), free(o->dsinks);
  for (int t = 0; t < 3; t++)
    free(o->g[t]);
  memset(o, 0, sizeof *o);
}

/* ---------------------------------------------------------------------- */
/* Making a case                                                           */
/* ---------------------------------------------------------------------- */
static attn_status call(int backward, attn_context *ctx, attn_params *p) {
  return backward ? attn_backward(ctx, p) : attn_forward(ctx, p);
}

static void *acase_make(int kind, uint64_t seed, int index, attn_context *ctx) {
  acase *a = calloc(1, sizeof *a);
  if (!a)
    abort();
  a->kind = kind;
  const tp_profile *prof = kind == K_FORWARD  ? &prof_forward
                           : kind == K_DECODE ? &prof_decode
                                              : &prof_backward;
  tp_generate(&a->c, prof, seed ^ (0x100000001ull * (uint64_t)(kind + 1)),
              index);
  a->c.workspace = 0;     /* the runs choose */
  if (kind == K_DECODE) { /* no tensor that sends it to the tiled kernel */
    a->c.bias = a->c.dbias = 0;
    a->c.mask = 0;
  }
  tc_rng r = {a->c.seed ^ 0xE7A5ull};
  extra_draw(&a->x, &a->c, &r);
  a->isa = tc_chance(&r, 0.25) ? ATTN_ISA_GENERIC : ATTN_ISA_AUTO;
  inst_build(a, &a->shared);
  /* An option the library refuses on this problem is dropped. */
  if (a->x.kind != X_NONE &&
      (kind == K_BACKWARD ? attn_backward_check(&a->shared.p)
                          : attn_forward_check(&a->shared.p)) != ATTN_OK) {
    inst_free(&a->shared);
    free(a->x.block);
    memset(&a->x, 0, sizeof a->x);
    inst_build(a, &a->shared);
  }
  inst *in = &a->shared;
  attn_params p = in->p;
  p.error_message = a->ref_msg;
  p.error_message_size = sizeof a->ref_msg;
  if (kind != K_BACKWARD) {
    outs o;
    memset(&o, 0, sizeof o);
    outs_forward(a, in, &p, &o);
    a->ref_status = attn_forward(ctx, &p);
    a->ref_o = o.o;
    a->ref_lse = o.lse;
    return a;
  }
  /* The backward's inputs o and lse: the forward on one thread, written
   * into the shared copy's own buffers (read by every run after). */
  p.lse = in->m.lse_mem + 8;
  a->ref_status = attn_forward(ctx, &p);
  a->ref_o = hm_dup(in->m.mem[TP_O], in->m.bytes[TP_O]);
  a->ref_lse = hm_dup(in->m.lse_mem, (size_t)(in->m.n_lse + 16) * 4);
  if (a->ref_status != ATTN_OK)
    return a;
  outs o;
  memset(&o, 0, sizeof o);
  outs_backward(in, &p, &o);
  a->ref_status = attn_backward(ctx, &p);
  for (int t = 0; t < 3; t++)
    a->ref_g[t] = o.g[t];
  a->ref_dbias = o.dbias;
  a->ref_drel = o.drel;
  a->ref_dsinks = o.dsinks;
  return a;
}

static void *make_forward(uint64_t seed, int index, attn_context *ctx) {
  return acase_make(K_FORWARD, seed, index, ctx);
}
static void *make_decode(uint64_t seed, int index, attn_context *ctx) {
  return acase_make(K_DECODE, seed, index, ctx);
}
static void *make_backward(uint64_t seed, int index, attn_context *ctx) {
  return acase_make(K_BACKWARD, seed, index, ctx);
}

static void acase_free(void *cv) {
  acase *a = cv;
  inst_free(&a->shared);
  free(a->x.block);
  free(a->ref_o), free(a->ref_lse);
  for (int t = 0; t < 3; t++)
    free(a->ref_g[t]);
  free(a->ref_dbias), free(a->ref_drel), free(a->ref_dsinks);
  free(a);
}

static void priv_free(void *pv) {
  if (pv) {
    inst_free(pv);
    free(pv);
  }
}

static void acase_describe(const void *cv, FILE *f) {
  const acase *a = cv;
  tp_describe(f, &a->c);
  fprintf(f, "    isa %s, extra option: %s, reference status %s\n",
          attn_isa_name(a->isa), extra_name(a->x.kind),
          attn_strerror(a->ref_status));
}

/* ---------------------------------------------------------------------- */
/* A run                                                                   */
/* ---------------------------------------------------------------------- */
/* Status and message as the reference's: 0, else 1 and a report. */
static int same_status(const hm_worker *w, const acase *a, const hm_run *r,
                       attn_status st, const char *msg) {
  if (st == a->ref_status && (st == ATTN_OK || strcmp(msg, a->ref_msg) == 0))
    return 0;
  hm_report(w, kind_of(a), a, r, "status %s (%s), reference %s (%s)",
            attn_strerror(st), msg, attn_strerror(a->ref_status), a->ref_msg);
  return 1;
}

static int check_forward(const hm_worker *w, const acase *a, const hm_run *r,
                         const inst *in, const void *o, const float *lse) {
  const hm_kind *k = kind_of(a);
  int bad = hm_same(w, k, a, r, "o", o, a->ref_o, in->m.bytes[TP_O]);
  bad += hm_same(w, k, a, r, "lse", lse, a->ref_lse,
                 (size_t)(in->m.n_lse + 16) * sizeof(float));
  return bad;
}

static int check_backward(const hm_worker *w, const acase *a, const hm_run *r,
                          const inst *in, const outs *o) {
  static const char *const gn[3] = {"dq", "dk", "dv"};
  const hm_kind *k = kind_of(a);
  int bad = 0;
  for (int t = 0; t < 3; t++)
    bad += hm_same(w, k, a, r, gn[t], o->g[t], a->ref_g[t],
                   in->m.bytes[TP_DQ + t]);
  if (o->dbias)
    bad +=
        hm_same(w, k, a, r, "dbias", o->dbias, a->ref_dbias, in->m.dbias_bytes);
  if (o->drel)
    bad += hm_same(w, k, a, r, "drel_bias", o->drel, a->ref_drel,
                   in->m.drel_bytes);
  if (o->dsinks)
    bad += hm_same(w, k, a, r, "dsinks", o->dsinks, a->ref_dsinks,
                   (size_t)in->m.n_sinks * sizeof(float));
  return bad;
}

/* The worker's own copy: built from the case's seed (the same bytes),
 * its mask compiled again; for the backward, its o and lse written by a
 * forward on this run's threads and context (checked). NULL when that
 * forward does not match (reported). */
static inst *priv_make(const acase *a, hm_worker *w, const hm_run *r,
                       int *bad) {
  inst *in = calloc(1, sizeof *in);
  if (!in)
    abort();
  inst_build(a, in);
  if (a->c.compiled)
    w->counts[HM_MASK_COMPILE]++;
  if (a->kind != K_BACKWARD)
    return in;
  attn_params p = in->p;
  char msg[256] = "";
  p.error_message = msg;
  p.error_message_size = sizeof msg;
  p.num_threads = r->threads;
  p.lse = in->m.lse_mem + 8;
  const attn_status st = attn_forward(r->ctx, &p);
  w->counts[HM_FORWARD]++;
  *bad = st == ATTN_OK
             ? check_forward(w, a, r, in, in->m.mem[TP_O], in->m.lse_mem)
             : 1;
  if (*bad) {
    if (st != ATTN_OK)
      hm_report(w, kind_of(a), a, r, "forward of a private copy: %s (%s)",
                attn_strerror(st), msg);
    priv_free(in);
    return NULL;
  }
  return in;
}

static int acase_run(void *cv, void **privp, hm_worker *w, const hm_run *r) {
  const acase *a = cv;
  const int backward = a->kind == K_BACKWARD;
  if (backward && a->ref_status != ATTN_OK && !r->private_data)
    return 0; /* nothing to run the backward on */
  inst *in = (inst *)&a->shared;
  int bad = 0;
  if (r->private_data) {
    if (!*privp)
      *privp = priv_make(a, w, r, &bad);
    if (!*privp)
      return bad;
    in = *privp;
  }
  attn_params p = in->p;
  char msg[256] = "";
  p.error_message = msg;
  p.error_message_size = sizeof msg;
  p.num_threads = r->threads;
  void *ws = NULL;
  if (r->workspace) {
    size_t bytes = 0;
    const attn_status st =
        backward ? attn_backward_workspace_size(r->ctx, &p, &bytes)
                 : attn_forward_workspace_size(r->ctx, &p, &bytes);
    if (st == ATTN_OK) {
      ws = hm_workspace(bytes, &p.workspace);
      p.workspace_size = bytes;
    }
  }
  outs o;
  memset(&o, 0, sizeof o);
  if (backward)
    outs_backward(in, &p, &o);
  else
    outs_forward(a, in, &p, &o);
  const attn_status st = call(backward, r->ctx, &p);
  w->counts[a->kind == K_FORWARD  ? HM_FORWARD
            : a->kind == K_DECODE ? HM_DECODE
                                  : HM_BACKWARD]++;
  bad += same_status(w, a, r, st, msg);
  if (!bad && st == ATTN_OK)
    bad += backward ? check_backward(w, a, r, in, &o)
                    : check_forward(w, a, r, in, o.o, o.lse);
  outs_free(&o);
  free(ws);
  return bad;
}

const hm_kind hm_kind_forward = {"forward", make_forward, acase_run,
                                 priv_free, acase_free,   acase_describe};
const hm_kind hm_kind_decode = {"decode",  make_decode, acase_run,
                                priv_free, acase_free,  acase_describe};
const hm_kind hm_kind_backward = {"backward", make_backward, acase_run,
                                  priv_free,  acase_free,    acase_describe};
