/*
 * test_faults: every public call of libattn (attn.h and the headers it
 * includes) with each of its heap allocations failing in turn, and each of
 * its thread creations (fault_sweep.h says what every try must satisfy).
 * Linked with the static library and --wrap (fault_inject.h); the layer is
 * in test_faults_layer.c, the parsers and tokenizers in test_faults_io.c.
 *
 * Covered: contexts (the default one in child processes, since it is made
 * once and never freed; a call on a busy pool, whose temporary team starts
 * threads per call); forward and backward (one and three threads, caller
 * workspace, causal, packed sequences, bias and mask tensors, positions,
 * ALiBi, T5, sinks, softcap, dropout, bf16/f16, q8_0/q4_0 K and V, global
 * tokens, Child's strided and fixed patterns (the split path), block
 * masks, score_mod/mask_mod), compiled masks (compile, counts, use), the
 * decode path, RoPE, KV caches (append contiguous, paged, quantised, with
 * RoPE, to 70 sequences; attend, through the decode kernel and the
 * gathered tiled path), merge and its backward, linear attention (forward,
 * backward, the recurrent state), the checks, size queries and helpers.
 * Shapes are small: one call is cheap, and N per call is small. Not here:
 * ring attention (MPI). Last line: "N passed, N failed".
 */
#define _POSIX_C_SOURCE 200809L /* fork, pipe */
#include "fault_inject.h"
#include "test_common.h"

static long n_pass, n_fail;

#include "fault_sweep.h"

#include <math.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

enum { HQ = 4, HK = 2, D = 32 };

static attn_context *ctx1, *ctx3; /* one and three threads, pools warm */

static float *randn(tc_rng *r, size_t n, double scale) {
  float *x = (float *)tc_alloc(n * sizeof *x);
  for (size_t i = 0; i < n; i++)
    x[i] = (float)(scale * tc_normal(r));
  return x;
}

static uint64_t hash_floats(uint64_t h, const float *x, size_t n) {
  return x ? fs_hash(h, x, n * sizeof *x) : h;
}

/* ------------------------------------------------------------------------ */
/* Forward and backward                                                      */
/* ------------------------------------------------------------------------ */
typedef struct acase {
  attn_context *ctx;
  attn_params p;
  int backward;
  int64_t b, sq, sk;
  float *q, *k, *v, *o, *lse, *dout, *dq, *dk, *dv;
  float *bias, *dbias, *rel, *drel, *sinks, *dsinks, *slopes;
  size_t nbias, nrel;
  void *kq, *vq; /* quantised K and V */
  unsigned char *mask, *bmask;
  int32_t *cu_q, *cu_k, *kv_lens, *global;
  int64_t *qoffs;
  attn_mask *compiled;
  void *ws;
  char msg[256];
} acase;

static size_t nq(const acase *a) { return (size_t)(a->b * a->sq * HQ * D); }
static size_t nk(const acase *a) { return (size_t)(a->b * a->sk * HK * D); }

static void acase_init(acase *a, attn_context *ctx, int64_t b, int64_t sq,
                       int64_t sk, uint64_t seed) {
  memset(a, 0, sizeof *a);
  tc_rng r = {seed};
  a->ctx = ctx;
  a->b = b;
  a->sq = sq;
  a->sk = sk;
  a->q = randn(&r, nq(a), 1.0);
  a->k = randn(&r, nk(a), 1.0);
  a->v = randn(&r, nk(a), 1.0);
  a->o = randn(&r, nq(a), 0.0);
  a->lse = randn(&r, (size_t)(b * HQ * sq), 0.0);
  a->dout = randn(&r, nq(a), 1.0);
  a->dq = randn(&r, nq(a), 0.0);
  a->dk = randn(&r, nk(a), 0.0);
  a->dv = randn(&r, nk(a), 0.0);
  attn_params_init(&a->p);
  attn_params *p = &a->p;
  p->q = attn_tensor_bshd(a->q, ATTN_DTYPE_F32, b, sq, HQ, D);
  p->k = attn_tensor_bshd(a->k, ATTN_DTYPE_F32, b, sk, HK, D);
  p->v = attn_tensor_bshd(a->v, ATTN_DTYPE_F32, b, sk, HK, D);
  p->o = attn_tensor_bshd(a->o, ATTN_DTYPE_F32, b, sq, HQ, D);
  p->lse = a->lse;
  p->error_message = a->msg;
  p->error_message_size = sizeof a->msg;
}

static void acase_free(acase *a) {
  attn_mask_free(a->compiled);
  void *bufs[] = {
      a->q,      a->k,       a->v,      a->o,     a->lse,  a->dout,  a->dq,
      a->dk,     a->dv,      a->bias,   a->dbias, a->rel,  a->drel,  a->sinks,
      a->dsinks, a->slopes,  a->kq,     a->vq,    a->mask, a->bmask, a->cu_q,
      a->cu_k,   a->kv_lens, a->global, a->qoffs, a->ws};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    free(bufs[i]);
}

/* Turns a into a backward case: the forward's o and lse (unarmed), then
 * dout in, gradients out. */
static void acase_backward(acase *a) {
  const attn_status s = attn_forward(a->ctx, &a->p);
  CHECK(s == ATTN_OK, "backward setup: forward status %d (%s)", (int)s, a->msg);
  attn_params *p = &a->p;
  p->dout = attn_tensor_bshd(a->dout, ATTN_DTYPE_F32, a->b, a->sq, HQ, D);
  p->dq = attn_tensor_bshd(a->dq, ATTN_DTYPE_F32, a->b, a->sq, HQ, D);
  p->dk = attn_tensor_bshd(a->dk, ATTN_DTYPE_F32, a->b, a->sk, HK, D);
  p->dv = attn_tensor_bshd(a->dv, ATTN_DTYPE_F32, a->b, a->sk, HK, D);
  if (a->bias) {
    a->dbias = randn(&(tc_rng){1}, a->nbias, 0.0);
    p->dbias = p->bias;
    p->dbias.data = a->dbias;
  }
  if (a->rel)
    p->drel_bias = a->drel = randn(&(tc_rng){2}, a->nrel, 0.0);
  if (a->sinks)
    p->dsinks = a->dsinks = randn(&(tc_rng){3}, HQ, 0.0);
  a->backward = 1;
}

static void acase_use_workspace(acase *a) {
  size_t bytes = 0;
  const attn_status s =
      a->backward ? attn_backward_workspace_size(a->ctx, &a->p, &bytes)
                  : attn_forward_workspace_size(a->ctx, &a->p, &bytes);
  CHECK(s == ATTN_OK, "workspace size: status %d (%s)", (int)s, a->msg);
  a->ws = tc_alloc(bytes);
  a->p.workspace = a->ws;
  a->p.workspace_size = bytes;
}

static void acase_prepare(void *st) {
  acase *a = (acase *)st;
  if (a->backward) {
    memset(a->dq, 0xff, nq(a) * sizeof(float));
    memset(a->dk, 0xff, nk(a) * sizeof(float));
    memset(a->dv, 0xff, nk(a) * sizeof(float));
    if (a->dbias)
      memset(a->dbias, 0xff, a->nbias * sizeof(float));
    if (a->drel)
      memset(a->drel, 0xff, a->nrel * sizeof(float));
    if (a->dsinks)
      memset(a->dsinks, 0xff, HQ * sizeof(float));
  } else {
    memset(a->o, 0xff, nq(a) * sizeof(float));
    memset(a->lse, 0xff, (size_t)(a->b * HQ * a->sq) * sizeof(float));
  }
}

static attn_status acase_call(void *st) {
  acase *a = (acase *)st;
  return a->backward ? attn_backward(a->ctx, &a->p)
                     : attn_forward(a->ctx, &a->p);
}

static uint64_t acase_digest(void *st) {
  acase *a = (acase *)st;
  uint64_t h = 0;
  if (a->backward) {
    h = hash_floats(h, a->dq, nq(a));
    h = hash_floats(h, a->dk, nk(a));
    h = hash_floats(h, a->dv, nk(a));
    h = hash_floats(h, a->dbias, a->dbias ? a->nbias : 0);
    h = hash_floats(h, a->drel, a->drel ? a->nrel : 0);
    h = hash_floats(h, a->dsinks, a->dsinks ? HQ : 0);
  } else {
    h = hash_floats(h, a->o, nq(a));
    h = hash_floats(h, a->lse, (size_t)(a->b * HQ * a->sq));
  }
  return h;
}

static void acase_run(acase *a, const char *name) {
  fault_case c = {0};
  c.name = name;
  c.st = a;
  c.prepare = acase_prepare;
  c.call = acase_call;
  c.digest = acase_digest;
  c.msg = a->msg;
  c.msg_size = sizeof a->msg;
  c.ctx = &a->ctx;
  c.ctx_threads = a->ctx == ctx3 ? 3 : 1;
  /* a caller workspace promises no allocation */
  if (a->p.workspace) {
    long n_alloc = 0;
    acase_prepare(a);
    fi_arm_count();
    const attn_status s = acase_call(a);
    fi_disarm(&n_alloc, NULL);
    CHECK(s == ATTN_OK && n_alloc == 0,
          "%s: with a caller workspace: status %d, %ld allocations", name,
          (int)s, n_alloc);
  }
  fault_run(&c);
}

/* The options of one variant (a is initialised, not yet backward). */
typedef void (*variant_fn)(acase *a);

static void v_plain(acase *a) { (void)a; }
static void v_causal(acase *a) { a->p.causal = ATTN_CAUSAL_BOTTOM_RIGHT; }

static void v_varlen(acase *a) { /* b = 1: three packed sequences */
  a->cu_q = (int32_t *)tc_alloc(4 * sizeof(int32_t));
  a->cu_k = (int32_t *)tc_alloc(4 * sizeof(int32_t));
  const int32_t cq[4] = {0, 10, 11, (int32_t)a->sq};
  const int32_t ck[4] = {0, 30, 31, (int32_t)a->sk};
  memcpy(a->cu_q, cq, sizeof cq);
  memcpy(a->cu_k, ck, sizeof ck);
  a->p.cu_seqlens_q = a->cu_q;
  a->p.cu_seqlens_k = a->cu_k;
  a->p.varlen_batch = 3;
  a->p.causal = ATTN_CAUSAL_TOP_LEFT;
}

static void v_bias_mask(acase *a) {
  tc_rng r = {11};
  a->nbias = (size_t)(HQ * a->sq * a->sk);
  a->bias = randn(&r, a->nbias, 0.5);
  a->p.bias =
      attn_tensor_contiguous(a->bias, ATTN_DTYPE_F32, 1, HQ, a->sq, a->sk);
  const size_t nm = (size_t)(a->b * a->sq * a->sk);
  a->mask = (unsigned char *)tc_alloc(nm);
  for (size_t i = 0; i < nm; i++)
    a->mask[i] = tc_chance(&r, 0.7);
  a->p.mask =
      attn_tensor_contiguous(a->mask, ATTN_DTYPE_BOOL, a->b, 1, a->sq, a->sk);
}

static void v_positions(acase *a) { /* window, prefix, offsets, kv_lens */
  a->kv_lens = (int32_t *)tc_alloc((size_t)a->b * sizeof(int32_t));
  a->qoffs = (int64_t *)tc_alloc((size_t)a->b * sizeof(int64_t));
  for (int64_t i = 0; i < a->b; i++) {
    a->kv_lens[i] = (int32_t)(a->sk - 5 * i);
    a->qoffs[i] = 3 * i - 2;
  }
  a->p.kv_lens = a->kv_lens;
  a->p.q_pos_offsets = a->qoffs;
  a->p.k_pos_offset = 2;
  a->p.prefix_len = 9;
  a->p.window_left = 40;
  a->p.window_right = 3;
}

static void v_alibi_t5(acase *a) {
  tc_rng r = {12};
  a->slopes = (float *)tc_alloc(HQ * sizeof(float));
  attn_alibi_slopes(HQ, a->slopes);
  a->p.alibi_slopes = a->slopes;
  a->nrel = (size_t)(8 * HQ);
  a->rel = randn(&r, a->nrel, 0.3);
  a->p.rel_bias = a->rel;
  a->p.rel_buckets = 8;
  a->p.rel_max_distance = 40;
  a->p.rel_bidirectional = 1;
  a->p.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
}

static void v_sinks_softcap_dropout(acase *a) {
  tc_rng r = {13};
  a->sinks = randn(&r, HQ, 1.0);
  a->p.sinks = a->sinks;
  a->p.softcap = 5.0f;
  a->p.dropout_p = 0.2f;
  a->p.dropout_seed = 77;
  a->p.scale = 0.3f;
}

static void v_half(acase *a) { /* q bf16, k f16, v f32 (in place) */
  uint16_t *q = (uint16_t *)a->q, *k = (uint16_t *)a->k;
  for (size_t i = 0; i < nq(a); i++)
    q[i] = tc_f32_to_bf16(a->q[i]);
  for (size_t i = 0; i < nk(a); i++)
    k[i] = tc_f32_to_f16(a->k[i]);
  a->p.q.dtype = ATTN_DTYPE_BF16;
  a->p.k.dtype = ATTN_DTYPE_F16;
}

static void quantise(acase *a, attn_dtype dt) {
  const size_t rows = nk(a) / D, rb = attn_dtype_size(dt) * (D / 32);
  a->kq = tc_alloc(rows * rb);
  a->vq = tc_alloc(rows * rb);
  for (size_t i = 0; i < rows; i++) {
    attn_quantize_row(dt, a->k + i * D, D, (char *)a->kq + i * rb);
    attn_quantize_row(dt, a->v + i * D, D, (char *)a->vq + i * rb);
  }
  a->p.k = attn_tensor_bshd(a->kq, dt, a->b, a->sk, HK, D);
  a->p.v = attn_tensor_bshd(a->vq, dt, a->b, a->sk, HK, D);
}
static void v_q8(acase *a) { quantise(a, ATTN_DTYPE_Q8_0); }
static void v_q4(acase *a) {
  quantise(a, ATTN_DTYPE_Q4_0);
  a->p.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
}

static void v_global(acase *a) {
  a->global = (int32_t *)tc_alloc(3 * sizeof(int32_t));
  const int32_t g[3] = {0, 5, 33};
  memcpy(a->global, g, sizeof g);
  a->p.global_idx = a->global;
  a->p.global_count = 3;
  a->p.window_left = 6;
  a->p.window_right = 2;
}

static void v_strided(acase *a) { /* the split path */
  a->p.sparse_kind = ATTN_SPARSE_STRIDED;
  a->p.sparse_l = 7;
}

static void v_fixed(acase *a) { /* the split path */
  a->p.sparse_kind = ATTN_SPARSE_FIXED;
  a->p.sparse_l = 8;
  a->p.sparse_c = 3;
}

static void v_block(acase *a) {
  tc_rng r = {14};
  const int64_t nqb = (a->sq + 15) / 16, nkb = (a->sk + 9) / 10;
  a->bmask = (unsigned char *)tc_alloc((size_t)(HQ * nqb * nkb));
  for (int64_t i = 0; i < HQ * nqb * nkb; i++)
    a->bmask[i] = tc_chance(&r, 0.6);
  a->p.block_mask =
      attn_tensor_contiguous(a->bmask, ATTN_DTYPE_BOOL, 1, HQ, nqb, nkb);
  a->p.block_q = 16;
  a->p.block_k = 10;
}

static float mod_score(float s, int64_t b, int64_t h, int64_t i, int64_t j,
                       void *u) {
  (void)u;
  return s + 0.01f * (float)((b + h + i - j) % 5);
}
static float mod_grad(float s, int64_t b, int64_t h, int64_t i, int64_t j,
                      void *u) {
  (void)s, (void)b, (void)h, (void)i, (void)j, (void)u;
  return 1.0f;
}
static int mod_mask(int64_t b, int64_t h, int64_t i, int64_t j, void *u) {
  (void)b, (void)u;
  return (i + j + h) % 3 != 0;
}
static void v_mods(acase *a) {
  a->p.score_mod = mod_score;
  a->p.score_mod_grad = mod_grad;
  a->p.mask_mod = mod_mask;
  a->p.mod_by_head = 1;
}

static void v_compiled(acase *a) { /* compiled once, used by the call */
  a->p.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  a->p.window_left = 20;
  const attn_status s = attn_mask_compile(&a->p, &a->compiled);
  CHECK(s == ATTN_OK, "compile: status %d (%s)", (int)s, a->msg);
  a->p.compiled_mask = a->compiled;
}

typedef struct variant {
  const char *name;
  variant_fn fn;
  int64_t b, sq, sk;
} variant;

static const variant variants[] = {
    {"plain", v_plain, 2, 37, 70},
    {"causal", v_causal, 2, 37, 70},
    {"decode (seq_q 1)", v_causal, 2, 1, 70},
    {"packed sequences", v_varlen, 1, 37, 70},
    {"bias + mask tensors", v_bias_mask, 2, 37, 70},
    {"positions, window, prefix, kv_lens", v_positions, 2, 37, 70},
    {"ALiBi + T5", v_alibi_t5, 2, 37, 70},
    {"sinks, softcap, dropout", v_sinks_softcap_dropout, 2, 37, 70},
    {"bf16 q, f16 k", v_half, 2, 37, 70},
    {"q8_0 k, v", v_q8, 2, 37, 70},
    {"q4_0 k, v", v_q4, 2, 5, 70},
    {"global tokens", v_global, 2, 37, 70},
    {"strided (split)", v_strided, 2, 70, 70},
    {"fixed (split)", v_fixed, 2, 70, 70},
    {"block mask", v_block, 2, 37, 70},
    {"score_mod, mask_mod", v_mods, 2, 37, 70},
    {"compiled mask", v_compiled, 2, 37, 70},
};

static void attention_calls(void) {
  printf("forward and backward:\n");
  const int nv = (int)(sizeof variants / sizeof variants[0]);
  for (int vi = 0; vi < nv; vi++) {
    const variant *v = &variants[vi];
    for (int bwd = 0; bwd <= 1; bwd++)
      for (int t = 0; t < 3; t++) { /* 1 thread, 3 threads, workspace */
        if (t == 2 && vi > 1 && vi != 6 && vi != 12)
          continue; /* workspace: a few variants */
        acase a;
        acase_init(&a, t == 1 ? ctx3 : ctx1, v->b, v->sq, v->sk,
                   1000 + (uint64_t)vi);
        if (t == 1) /* pinned: left to the library, a call this small
                       would run on one thread and start none */
          a.p.num_threads = 3;
        v->fn(&a);
        if (bwd)
          acase_backward(&a);
        if (t == 2)
          acase_use_workspace(&a);
        char name[128];
        snprintf(name, sizeof name, "%s %s, %s", bwd ? "backward" : "forward",
                 v->name,
                 t == 0   ? "1 thread"
                 : t == 1 ? "3 threads"
                          : "workspace");
        acase_run(&a, name);
        acase_free(&a);
      }
  }
}

/* ---- compiled masks: compile and the counts ------------------------------ */
typedef struct mcase {
  acase a;
  attn_mask *m;
} mcase;

static attn_status m_call(void *st) {
  mcase *m = (mcase *)st;
  return attn_mask_compile(&m->a.p, &m->m);
}
static uint64_t m_digest(void *st) { /* the counts, and a forward with it */
  mcase *m = (mcase *)st;
  int64_t c[3] = {0, 0, 0};
  attn_status s = attn_mask_tile_counts(m->m, &c[0], &c[1], &c[2]);
  attn_params p = m->a.p;
  p.compiled_mask = m->m;
  memset(m->a.o, 0, nq(&m->a) * sizeof(float));
  if (s == ATTN_OK)
    s = attn_forward(m->a.ctx, &p);
  uint64_t h = fs_hash(0, c, sizeof c);
  h = fs_hash(h, &s, sizeof s);
  return hash_floats(h, m->a.o, nq(&m->a));
}
static void m_release(void *st) {
  mcase *m = (mcase *)st;
  attn_mask_free(m->m);
  m->m = NULL;
}

static void compile_calls(void) {
  printf("compiled masks:\n");
  static const variant cv[] = {
      {"causal + window", v_compiled, 2, 37, 70},
      {"bias + mask tensors", v_bias_mask, 2, 37, 70},
      {"global tokens", v_global, 2, 37, 70},
      {"block mask", v_block, 2, 37, 70},
      {"strided", v_strided, 2, 70, 70},
      {"mask_mod (probed)", v_mods, 2, 37, 70},
      {"packed sequences", v_varlen, 1, 37, 70},
  };
  for (size_t i = 0; i < sizeof cv / sizeof cv[0]; i++) {
    mcase m = {0};
    acase_init(&m.a, ctx1, cv[i].b, cv[i].sq, cv[i].sk, 2000 + i);
    cv[i].fn(&m.a);
    m.a.p.compiled_mask = NULL;
    char name[128];
    snprintf(name, sizeof name, "attn_mask_compile %s", cv[i].name);
    fault_case c = {0};
    c.name = name;
    c.st = &m;
    c.call = m_call;
    c.digest = m_digest;
    c.release = m_release;
    c.msg = m.a.msg;
    c.msg_size = sizeof m.a.msg;
    fault_run(&c);
    acase_free(&m.a);
  }
}

/* ------------------------------------------------------------------------ */
/* Contexts                                                                   */
/* ------------------------------------------------------------------------ */
typedef struct ccase {
  attn_context *made;
  int threads;
  acase a; /* a call on the new context (the pool starts its workers) */
} ccase;

static attn_status c_call(void *st) {
  ccase *c = (ccase *)st;
  attn_context_options o;
  attn_context_options_init(&o);
  o.num_threads = c->threads;
  return attn_context_create(&c->made, &o);
}
static uint64_t c_digest(void *st) {
  ccase *c = (ccase *)st;
  c->a.ctx = c->made;
  acase_prepare(&c->a);
  const attn_status s = attn_forward(c->made, &c->a.p);
  const uint64_t h = fs_hash(0, &s, sizeof s);
  return fs_hash(h, &(attn_isa){attn_context_isa(c->made)}, sizeof(attn_isa)) ^
         acase_digest(&c->a);
}
static void c_release(void *st) {
  ccase *c = (ccase *)st;
  attn_context_free(c->made);
  c->made = NULL;
}

/* The first call on a context: its pool's workers and their array. When
 * the forward fails, the context is freed here (the sweep then checks
 * that nothing else is left). */
static attn_status cfirst_call(void *st) {
  ccase *c = (ccase *)st;
  attn_status s = c_call(c);
  if (s != ATTN_OK) { /* attn_context_create has no message buffer */
    snprintf(c->a.msg, sizeof c->a.msg, "attn_context_create: %s",
             attn_strerror(s));
    return s;
  }
  c->a.ctx = c->made;
  acase_prepare(&c->a);
  s = attn_forward(c->made, &c->a.p);
  if (s != ATTN_OK)
    c_release(c);
  return s;
}
static uint64_t cfirst_digest(void *st) {
  return acase_digest(&((ccase *)st)->a);
}

static void context_calls(void) {
  for (int t = 1; t <= 4; t += 3) {
    ccase c = {0};
    c.threads = t;
    acase_init(&c.a, NULL, 2, 37, 70, 3000);
    char name[96];
    snprintf(name, sizeof name, "attn_context_create (%d threads)", t);
    fault_case f = {0};
    f.name = name;
    f.st = &c;
    f.call = c_call;
    f.digest = c_digest;
    f.release = c_release;
    fault_run(&f);
    snprintf(name, sizeof name, "create + first forward (%d threads)", t);
    f.name = name;
    f.call = cfirst_call;
    f.digest = cfirst_digest;
    f.msg = c.a.msg;
    f.msg_size = sizeof c.a.msg;
    fault_run(&f);
    acase_free(&c.a);
  }
}

/* A call on a busy pool runs on a temporary team (pthread_create per
 * call): the outer call's score_mod makes one inner call on the same
 * context, once. */
typedef struct nested {
  acase outer, inner;
  atomic_int done;
  attn_status inner_status;
} nested;

static float nested_mod(float s, int64_t b, int64_t h, int64_t i, int64_t j,
                        void *u) {
  nested *n = (nested *)u;
  (void)b, (void)h, (void)i, (void)j;
  if (!atomic_exchange(&n->done, 1)) {
    n->inner.ctx = n->outer.ctx;
    n->inner_status = attn_forward(n->inner.ctx, &n->inner.p);
  }
  return s;
}
static void nested_prepare(void *st) {
  nested *n = (nested *)st;
  atomic_store(&n->done, 0);
  n->inner_status = ATTN_ERR_INVALID_ARGUMENT;
  acase_prepare(&n->outer);
  acase_prepare(&n->inner);
}
static attn_status nested_call(void *st) {
  nested *n = (nested *)st;
  const attn_status s = attn_forward(n->outer.ctx, &n->outer.p);
  if (s != ATTN_OK)
    return s;
  if (n->inner_status != ATTN_OK) /* the inner call's reason */
    snprintf(n->outer.msg, sizeof n->outer.msg, "inner: %.200s", n->inner.msg);
  return n->inner_status;
}
static uint64_t nested_digest(void *st) {
  nested *n = (nested *)st;
  return acase_digest(&n->outer) ^ (acase_digest(&n->inner) * 3);
}

static void nested_calls(void) {
  nested n;
  memset(&n, 0, sizeof n);
  acase_init(&n.outer, ctx3, 2, 37, 70, 3100);
  acase_init(&n.inner, ctx3, 2, 37, 70, 3101);
  n.outer.p.score_mod = nested_mod;
  n.outer.p.mod_user = &n;
  n.inner.p.num_threads = 3;
  fault_case c = {0};
  c.name = "forward inside a forward (temporary team)";
  c.st = &n;
  c.prepare = nested_prepare;
  c.call = nested_call;
  c.digest = nested_digest;
  c.msg = n.outer.msg;
  c.msg_size = sizeof n.outer.msg;
  c.ctx = &n.outer.ctx;
  c.ctx_threads = 3;
  fault_run(&c);
  acase_free(&n.outer);
  acase_free(&n.inner);
}

/* ------------------------------------------------------------------------ */
/* RoPE and the other helpers                                                */
/* ------------------------------------------------------------------------ */
typedef struct hcase {
  acase a;
  attn_rope rope;
  float *out1, *out2;
  size_t n1, n2;
  int which;
  double x;
} hcase;

static attn_status h_call(void *st) {
  hcase *h = (hcase *)st;
  attn_params *p = &h->a.p;
  switch (h->which) {
  case 0:
    return attn_rope_apply_qk(
        &h->rope, p,
        attn_tensor_bshd(h->out1, ATTN_DTYPE_F32, h->a.b, h->a.sq, HQ, D),
        attn_tensor_bshd(h->out2, ATTN_DTYPE_F32, h->a.b, h->a.sk, HK, D), 0);
  case 1:
    return attn_rope_apply(
        &h->rope, p->q,
        attn_tensor_bshd(h->out1, ATTN_DTYPE_F32, h->a.b, h->a.sq, HQ, D), NULL,
        4, NULL, 1);
  case 2:
    return attn_rope_frequencies(&h->rope, D, h->out1, h->out2);
  case 3:
    return attn_sinusoidal_table(9, 16, 3, 0.0, h->out1);
  case 4:
    return attn_alibi_slopes(6, h->out1);
  case 5: {
    attn_status s = attn_quantize_row(ATTN_DTYPE_Q4_0, h->a.q, 64, h->out2);
    return s != ATTN_OK
               ? s
               : attn_dequantize_row(ATTN_DTYPE_Q4_0, h->out2, 64, h->out1);
  }
  case 6: {
    size_t b = 0;
    attn_status s = attn_forward_check(p);
    if (s == ATTN_OK)
      s = attn_forward_workspace_size(ctx3, p, &b);
    h->out1[0] = (float)b;
    return s;
  }
  case 7:
    return attn_fma_peak_gflops(1, 0.002, &h->x);
  default:
    return attn_read_bandwidth_gbps(1, 0.001, &h->x);
  }
}
static void h_prepare(void *st) {
  hcase *h = (hcase *)st;
  memset(h->out1, 0, h->n1 * sizeof(float));
  memset(h->out2, 0, h->n2 * sizeof(float));
}
static uint64_t h_digest(void *st) {
  hcase *h = (hcase *)st;
  if (h->which >= 7)
    return 0; /* a measurement: no fixed result */
  return hash_floats(hash_floats(0, h->out1, h->n1), h->out2, h->n2);
}

static void helper_calls(void) {
  printf("helpers:\n");
  static const char *names[] = {"attn_rope_apply_qk (YaRN)",
                                "attn_rope_apply (inverse)",
                                "attn_rope_frequencies",
                                "attn_sinusoidal_table",
                                "attn_alibi_slopes",
                                "attn_quantize_row + dequantize_row",
                                "forward check, workspace size",
                                "attn_fma_peak_gflops",
                                "attn_read_bandwidth_gbps"};
  for (int w = 0; w < 9; w++) {
    hcase h;
    memset(&h, 0, sizeof h);
    acase_init(&h.a, ctx1, 2, 37, 70, 4000);
    attn_rope_init(&h.rope);
    h.rope.scaling = ATTN_ROPE_SCALING_YARN;
    h.rope.factor = 4;
    h.which = w;
    h.n1 = nq(&h.a);
    h.n2 = nk(&h.a);
    h.out1 = (float *)tc_alloc(h.n1 * sizeof(float));
    h.out2 = (float *)tc_alloc(h.n2 * sizeof(float));
    fault_case c = {0};
    c.name = names[w];
    c.st = &h;
    c.prepare = h_prepare;
    c.call = h_call;
    c.digest = h_digest;
    fault_run(&c);
    free(h.out1);
    free(h.out2);
    acase_free(&h.a);
  }
}

/* ------------------------------------------------------------------------ */
/* KV caches                                                                  */
/* ------------------------------------------------------------------------ */
enum { NSEQ = 3, CAP = 96, PAGE = 16 };

typedef struct kcase {
  attn_context *ctx;
  attn_kv_cache c;
  void *k, *v, *k0, *v0; /* storage and its snapshot */
  size_t bytes;
  int32_t lens[NSEQ], lens0[NSEQ];
  int32_t *table;
  float *knew, *vnew;
  int64_t seq_new;
  int32_t n_new[NSEQ];
  attn_rope rope;
  int use_rope;
  int attend;
  acase a; /* queries, o, lse, options of attend */
  char msg[256];
} kcase;

static void k_init(kcase *k, attn_context *ctx, attn_dtype dt, int paged,
                   int attend, uint64_t seed) {
  memset(k, 0, sizeof *k);
  tc_rng r = {seed};
  k->ctx = ctx;
  attn_kv_cache_init(&k->c);
  attn_kv_cache *c = &k->c;
  c->dtype = dt;
  c->num_seqs = NSEQ;
  c->heads_kv = HK;
  c->head_dim = D;
  const size_t row = attn_dtype_size(dt) * (size_t)(D / attn_dtype_block(dt));
  const size_t rows = (size_t)(NSEQ * CAP * HK);
  k->bytes = rows * row;
  if (paged) {
    c->page_size = PAGE;
    c->blocks_per_seq = CAP / PAGE;
    c->num_pages = NSEQ * CAP / PAGE;
    k->table = (int32_t *)tc_alloc((size_t)c->num_pages * sizeof(int32_t));
    for (int64_t i = 0; i < c->num_pages; i++) /* a permutation */
      k->table[i] = (int32_t)((i * 7 + 3) % c->num_pages);
    c->block_table = k->table;
  } else {
    c->capacity = CAP;
  }
  k->k = tc_alloc(k->bytes);
  k->v = tc_alloc(k->bytes);
  k->k0 = tc_alloc(k->bytes);
  k->v0 = tc_alloc(k->bytes);
  c->k = k->k;
  c->v = k->v;
  c->seq_lens = k->lens;
  c->error_message = k->msg;
  c->error_message_size = sizeof k->msg;
  /* fill: 40, 17 and 60 tokens through append (unarmed) */
  memset(k->k, 0, k->bytes);
  memset(k->v, 0, k->bytes);
  k->seq_new = 60;
  k->knew = randn(&r, (size_t)(NSEQ * k->seq_new * HK * D), 1.0);
  k->vnew = randn(&r, (size_t)(NSEQ * k->seq_new * HK * D), 1.0);
  attn_rope_init(&k->rope);
  const int32_t fill[NSEQ] = {40, 17, 60};
  const attn_status s = attn_kv_cache_append(
      ctx, c,
      attn_tensor_bshd(k->knew, ATTN_DTYPE_F32, NSEQ, k->seq_new, HK, D),
      attn_tensor_bshd(k->vnew, ATTN_DTYPE_F32, NSEQ, k->seq_new, HK, D), fill,
      &k->rope);
  CHECK(s == ATTN_OK, "cache fill: status %d (%s)", (int)s, k->msg);
  memcpy(k->k0, k->k, k->bytes);
  memcpy(k->v0, k->v, k->bytes);
  memcpy(k->lens0, k->lens, sizeof k->lens);
  const int32_t add[NSEQ] = {5, 0, 9};
  memcpy(k->n_new, add, sizeof add);
  k->use_rope = 1;
  k->attend = attend;
  /* attend: 4 queries per sequence */
  acase_init(&k->a, ctx, NSEQ, 4, 1, seed + 1);
  k->a.p.k = k->a.p.v = (attn_tensor){0};
  k->a.p.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
}

static void k_free(kcase *k) {
  free(k->k);
  free(k->v);
  free(k->k0);
  free(k->v0);
  free(k->table);
  free(k->knew);
  free(k->vnew);
  acase_free(&k->a);
}

static void k_prepare(void *st) {
  kcase *k = (kcase *)st;
  memcpy(k->k, k->k0, k->bytes);
  memcpy(k->v, k->v0, k->bytes);
  memcpy(k->lens, k->lens0, sizeof k->lens);
  acase_prepare(&k->a);
}
static attn_status k_call(void *st) {
  kcase *k = (kcase *)st;
  if (k->attend)
    return attn_kv_cache_attend(k->ctx, &k->c, &k->a.p,
                                k->use_rope ? &k->rope : NULL);
  return attn_kv_cache_append(
      k->ctx, &k->c, attn_tensor_bshd(k->knew, ATTN_DTYPE_F32, NSEQ, 9, HK, D),
      attn_tensor_bshd(k->vnew, ATTN_DTYPE_F32, NSEQ, 9, HK, D), k->n_new,
      k->use_rope ? &k->rope : NULL);
}
static uint64_t k_state(void *st) {
  kcase *k = (kcase *)st;
  uint64_t h = fs_hash(0, k->k, k->bytes);
  h = fs_hash(h, k->v, k->bytes);
  return fs_hash(h, k->lens, sizeof k->lens);
}
static uint64_t k_digest(void *st) {
  kcase *k = (kcase *)st;
  return k->attend ? acase_digest(&k->a) ^ k_state(st) : k_state(st);
}

static void cache_calls(void) {
  printf("KV caches:\n");
  static const attn_dtype dts[3] = {ATTN_DTYPE_F32, ATTN_DTYPE_BF16,
                                    ATTN_DTYPE_Q8_0};
  for (int di = 0; di < 3; di++)
    for (int paged = 0; paged <= 1; paged++)
      for (int op = 0; op < 4; op++) {
        /* op 0 append, 1 attend, 2 attend with a mask tensor (the tiled
         * path, gathered when paged), 3 attend on 3 threads */
        kcase k;
        k_init(&k, op == 3 ? ctx3 : ctx1, dts[di], paged, op > 0,
               5000 + (uint64_t)(di * 8 + paged * 4 + op));
        if (op == 2) {
          k.a.mask = (unsigned char *)tc_alloc(4 * CAP);
          for (int i = 0; i < 4 * CAP; i++)
            k.a.mask[i] = (i % 7) != 3;
          k.a.p.mask =
              attn_tensor_contiguous(k.a.mask, ATTN_DTYPE_BOOL, 1, 1, 4, CAP);
        }
        char name[128];
        snprintf(name, sizeof name, "kv cache %s %s %s%s",
                 op == 0 ? "append" : "attend",
                 attn_dtype_size(dts[di]) == 4 ? "f32"
                 : di == 1                     ? "bf16"
                                               : "q8_0",
                 paged ? "paged" : "contiguous",
                 op == 2   ? ", mask tensor"
                 : op == 3 ? ", 3 threads"
                           : "");
        fault_case c = {0};
        c.name = name;
        c.st = &k;
        c.prepare = k_prepare;
        c.call = k_call;
        c.digest = k_digest;
        c.state = k_state;
        c.msg = op == 0 ? k.msg : k.a.msg;
        c.msg_size = sizeof k.msg;
        if (op == 3) {
          c.ctx = &k.ctx;
          c.ctx_threads = 3;
        }
        fault_run(&c);
        k_free(&k);
      }
}

/* Append to 70 sequences (past the 64 counts kept on the stack). */
enum { NSEQ_MANY = 70 };
typedef struct kmany {
  attn_kv_cache c;
  float *k, *v, *kn;
  int32_t lens[NSEQ_MANY];
  char msg[256];
} kmany;
static void km_prepare(void *st) {
  kmany *m = (kmany *)st;
  for (int s = 0; s < NSEQ_MANY; s++)
    m->lens[s] = s % 5;
  memset(m->k, 0, NSEQ_MANY * 8 * HK * D * sizeof(float));
  memset(m->v, 0, NSEQ_MANY * 8 * HK * D * sizeof(float));
}
static attn_status km_call(void *st) {
  kmany *m = (kmany *)st;
  const attn_tensor t =
      attn_tensor_bshd(m->kn, ATTN_DTYPE_F32, NSEQ_MANY, 2, HK, D);
  return attn_kv_cache_append(ctx1, &m->c, t, t, NULL, NULL);
}
static uint64_t km_state(void *st) {
  kmany *m = (kmany *)st;
  const size_t n = NSEQ_MANY * 8 * HK * D;
  uint64_t h = hash_floats(hash_floats(0, m->k, n), m->v, n);
  return fs_hash(h, m->lens, sizeof m->lens);
}
static void cache_many(void) {
  kmany m;
  memset(&m, 0, sizeof m);
  tc_rng r = {5100};
  m.k = randn(&r, NSEQ_MANY * 8 * HK * D, 0.0);
  m.v = randn(&r, NSEQ_MANY * 8 * HK * D, 0.0);
  m.kn = randn(&r, NSEQ_MANY * 2 * HK * D, 1.0);
  attn_kv_cache_init(&m.c);
  m.c.num_seqs = NSEQ_MANY;
  m.c.heads_kv = HK;
  m.c.head_dim = D;
  m.c.capacity = 8;
  m.c.k = m.k;
  m.c.v = m.v;
  m.c.seq_lens = m.lens;
  m.c.error_message = m.msg;
  m.c.error_message_size = sizeof m.msg;
  fault_case c = {0};
  c.name = "kv cache append, 70 sequences";
  c.st = &m;
  c.prepare = km_prepare;
  c.call = km_call;
  c.digest = km_state;
  c.state = km_state;
  c.msg = m.msg;
  c.msg_size = sizeof m.msg;
  fault_run(&c);
  free(m.k);
  free(m.v);
  free(m.kn);
}

/* ------------------------------------------------------------------------ */
/* Merge                                                                      */
/* ------------------------------------------------------------------------ */
enum { NPART = 3 };

typedef struct gcase {
  attn_context *ctx;
  attn_merge_params m;
  int backward;
  float *op[NPART], *lp[NPART], *dop[NPART], *dlp[NPART];
  attn_tensor ot[NPART], dot[NPART];
  const float *lpc[NPART];
  float *o, *lse, *dout, *dlse, *sinks, *dsinks;
  size_t no, nl;
  char msg[256];
} gcase;

static void g_init(gcase *g, attn_context *ctx, int backward, uint64_t seed) {
  memset(g, 0, sizeof *g);
  tc_rng r = {seed};
  const int64_t B = 2, S = 29;
  g->ctx = ctx;
  g->no = (size_t)(B * S * HQ * D);
  g->nl = (size_t)(B * HQ * S);
  for (int c = 0; c < NPART; c++) {
    g->op[c] = randn(&r, g->no, 1.0);
    g->lp[c] = randn(&r, g->nl, 2.0);
    g->dop[c] = randn(&r, g->no, 0.0);
    g->dlp[c] = randn(&r, g->nl, 0.0);
    g->ot[c] = attn_tensor_bshd(g->op[c], ATTN_DTYPE_F32, B, S, HQ, D);
    g->dot[c] = attn_tensor_bshd(g->dop[c], ATTN_DTYPE_F32, B, S, HQ, D);
    g->lpc[c] = g->lp[c];
  }
  g->o = randn(&r, g->no, 0.0);
  g->lse = randn(&r, g->nl, 0.0);
  g->dout = randn(&r, g->no, 1.0);
  g->dlse = randn(&r, g->nl, 1.0);
  g->sinks = randn(&r, HQ, 1.0);
  g->dsinks = randn(&r, HQ, 0.0);
  attn_merge_params_init(&g->m);
  attn_merge_params *m = &g->m;
  m->n_parts = NPART;
  m->o_parts = g->ot;
  m->lse_parts = g->lpc;
  m->o = attn_tensor_bshd(g->o, ATTN_DTYPE_F32, B, S, HQ, D);
  m->lse = g->lse;
  m->sinks = g->sinks;
  m->error_message = g->msg;
  m->error_message_size = sizeof g->msg;
  if (backward) {
    const attn_status s = attn_merge(ctx, m);
    CHECK(s == ATTN_OK, "merge setup: status %d (%s)", (int)s, g->msg);
    m->dout = attn_tensor_bshd(g->dout, ATTN_DTYPE_F32, B, S, HQ, D);
    m->dlse = g->dlse;
    m->do_parts = g->dot;
    m->dlse_parts = g->dlp;
    m->dsinks = g->dsinks;
    g->backward = 1;
  }
}
static void g_free(gcase *g) {
  for (int c = 0; c < NPART; c++) {
    free(g->op[c]);
    free(g->lp[c]);
    free(g->dop[c]);
    free(g->dlp[c]);
  }
  free(g->o);
  free(g->lse);
  free(g->dout);
  free(g->dlse);
  free(g->sinks);
  free(g->dsinks);
}
static void g_prepare(void *st) {
  gcase *g = (gcase *)st;
  if (g->backward) {
    for (int c = 0; c < NPART; c++) {
      memset(g->dop[c], 0xff, g->no * sizeof(float));
      memset(g->dlp[c], 0xff, g->nl * sizeof(float));
    }
    memset(g->dsinks, 0xff, HQ * sizeof(float));
  } else {
    memset(g->o, 0xff, g->no * sizeof(float));
    memset(g->lse, 0xff, g->nl * sizeof(float));
  }
}
static attn_status g_call(void *st) {
  gcase *g = (gcase *)st;
  return g->backward ? attn_merge_backward(g->ctx, &g->m)
                     : attn_merge(g->ctx, &g->m);
}
static uint64_t g_digest(void *st) {
  gcase *g = (gcase *)st;
  uint64_t h = 0;
  if (!g->backward)
    return hash_floats(hash_floats(0, g->o, g->no), g->lse, g->nl);
  for (int c = 0; c < NPART; c++)
    h = hash_floats(hash_floats(h, g->dop[c], g->no), g->dlp[c], g->nl);
  return hash_floats(h, g->dsinks, HQ);
}

static void merge_calls(void) {
  printf("merge:\n");
  for (int bwd = 0; bwd <= 1; bwd++)
    for (int t = 0; t <= 1; t++) {
      gcase g;
      g_init(&g, t ? ctx3 : ctx1, bwd, 6000 + (uint64_t)(bwd * 2 + t));
      char name[96];
      snprintf(name, sizeof name, "%s (%d threads)",
               bwd ? "attn_merge_backward" : "attn_merge", t ? 3 : 1);
      fault_case c = {0};
      c.name = name;
      c.st = &g;
      c.prepare = g_prepare;
      c.call = g_call;
      c.digest = g_digest;
      c.msg = g.msg;
      c.msg_size = sizeof g.msg;
      if (t) {
        c.ctx = &g.ctx;
        c.ctx_threads = 3;
      }
      fault_run(&c);
      g_free(&g);
    }
}

/* ------------------------------------------------------------------------ */
/* Linear attention                                                           */
/* ------------------------------------------------------------------------ */
typedef struct lcase {
  attn_context *ctx;
  attn_linear_params p;
  acase a;
  int op; /* 0 forward, 1 backward, 2 state create, 3 state step */
  attn_linear_state *s, *made;
  char msg[256];
} lcase;

static void l_prepare(void *st) {
  lcase *l = (lcase *)st;
  l->a.backward = l->op == 1; /* poisons dq, dk, dv */
  acase_prepare(&l->a);
  l->a.backward = 0;
  if (l->op == 3) { /* a state holding 37 tokens of a's problem */
    attn_linear_state_reset(l->s);
    attn_linear_params q = l->p;
    q.causal = ATTN_CAUSAL_NONE;
    const attn_status s = attn_linear_state_step(l->ctx, l->s, &q);
    CHECK(s == ATTN_OK, "linear state fill: status %d (%s)", (int)s, l->msg);
    memset(l->a.o, 0xff, nq(&l->a) * sizeof(float));
  }
}
static attn_status l_call(void *st) {
  lcase *l = (lcase *)st;
  switch (l->op) {
  case 0:
    return attn_linear_forward(l->ctx, &l->p);
  case 1:
    return attn_linear_backward(l->ctx, &l->p);
  case 2:
    return attn_linear_state_create(&l->made, 2, HK, D, D);
  default:
    return attn_linear_state_step(l->ctx, l->s, &l->p);
  }
}
static uint64_t l_state(void *st) {
  lcase *l = (lcase *)st;
  if (!l->s)
    return 0;
  uint64_t h = hash_floats(0, attn_linear_state_s(l->s), 2 * HK * D * D);
  h = hash_floats(h, attn_linear_state_z(l->s), 2 * HK * D);
  const int64_t n = attn_linear_state_length(l->s);
  return fs_hash(h, &n, sizeof n);
}
static uint64_t l_digest(void *st) {
  lcase *l = (lcase *)st;
  switch (l->op) {
  case 0:
    return hash_floats(0, l->a.o, nq(&l->a));
  case 1:
    l->a.backward = 1;
    {
      const uint64_t h = acase_digest(&l->a);
      l->a.backward = 0;
      return h;
    }
  case 2: {
    const int64_t n = attn_linear_state_length(l->made);
    uint64_t h = hash_floats(0, attn_linear_state_s(l->made), 2 * HK * D * D);
    return fs_hash(h, &n, sizeof n);
  }
  default:
    return hash_floats(l_state(st), l->a.o, nq(&l->a));
  }
}
static void l_release(void *st) {
  lcase *l = (lcase *)st;
  attn_linear_state_free(l->made);
  l->made = NULL;
}

static void linear_calls(void) {
  printf("linear attention:\n");
  static const char *ops[4] = {"attn_linear_forward", "attn_linear_backward",
                               "attn_linear_state_create",
                               "attn_linear_state_step"};
  for (int op = 0; op < 4; op++)
    for (int t = 0; t <= 1; t++)
      for (int causal = 0; causal <= 1; causal++) {
        if (op >= 2 && (t || causal))
          continue;
        lcase l;
        memset(&l, 0, sizeof l);
        l.ctx = t ? ctx3 : ctx1;
        l.op = op;
        acase_init(&l.a, l.ctx, 2, op == 3 ? 3 : 37, op == 3 ? 3 : 70,
                   7000 + (uint64_t)op);
        attn_linear_params_init(&l.p);
        l.p.q = l.a.p.q;
        l.p.k = l.a.p.k;
        l.p.v = l.a.p.v;
        l.p.o = l.a.p.o;
        l.p.causal = causal ? ATTN_CAUSAL_BOTTOM_RIGHT : ATTN_CAUSAL_NONE;
        l.p.error_message = l.msg;
        l.p.error_message_size = sizeof l.msg;
        if (op == 1) {
          acase_backward(&l.a); /* the buffers; the forward is not used */
          l.a.backward = 0;
          l.p.dout = l.a.p.dout;
          l.p.dq = l.a.p.dq;
          l.p.dk = l.a.p.dk;
          l.p.dv = l.a.p.dv;
        }
        if (op == 3) {
          const attn_status s = attn_linear_state_create(&l.s, 2, HK, D, D);
          CHECK(s == ATTN_OK, "linear state: status %d", (int)s);
        }
        char name[128];
        snprintf(name, sizeof name, "%s%s%s", ops[op],
                 op < 2 ? (causal ? " causal" : " non-causal") : "",
                 op < 2 ? (t ? ", 3 threads" : ", 1 thread") : "");
        fault_case c = {0};
        c.name = name;
        c.st = &l;
        c.prepare = l_prepare;
        c.call = l_call;
        c.digest = l_digest;
        c.release = l_release;
        c.msg = op == 2 ? NULL : l.msg;
        c.msg_size = sizeof l.msg;
        if (op == 3)
          c.state = l_state;
        if (t) {
          c.ctx = &l.ctx;
          c.ctx_threads = 3;
        }
        fault_run(&c);
        attn_linear_state_free(l.s);
        acase_free(&l.a);
      }
}

/* The checks and size queries that the sweeps above do not call armed. */
typedef struct qcase {
  acase bwd;
  kcase kv;
  lcase lin;
  size_t got[5];
} qcase;
static attn_status q_call(void *st) {
  qcase *q = (qcase *)st;
  attn_status s = attn_backward_check(&q->bwd.p);
  if (s == ATTN_OK)
    s = attn_backward_workspace_size(ctx3, &q->bwd.p, &q->got[0]);
  if (s == ATTN_OK)
    s = attn_kv_cache_attend_workspace_size(ctx3, &q->kv.c, &q->kv.a.p,
                                            &q->kv.rope, &q->got[1]);
  if (s == ATTN_OK)
    s = attn_linear_forward_workspace_size(ctx3, &q->lin.p, &q->got[2]);
  if (s == ATTN_OK)
    s = attn_linear_backward_workspace_size(ctx3, &q->lin.p, &q->got[3]);
  q->got[4] = (size_t)attn_context_isa(ctx3);
  return s;
}
static uint64_t q_digest(void *st) {
  qcase *q = (qcase *)st;
  return fs_hash(0, q->got, sizeof q->got);
}
static void query_calls(void) {
  qcase *q = (qcase *)tc_alloc(sizeof *q);
  memset(q, 0, sizeof *q);
  acase_init(&q->bwd, ctx3, 2, 37, 70, 8000);
  v_bias_mask(&q->bwd);
  acase_backward(&q->bwd);
  k_init(&q->kv, ctx3, ATTN_DTYPE_F32, 1, 1, 8001);
  acase_init(&q->lin.a, ctx3, 2, 37, 70, 8002);
  attn_linear_params_init(&q->lin.p);
  q->lin.p.q = q->lin.a.p.q;
  q->lin.p.k = q->lin.a.p.k;
  q->lin.p.v = q->lin.a.p.v;
  q->lin.p.o = q->lin.a.p.o;
  acase_backward(&q->lin.a); /* separate gradient buffers */
  q->lin.p.dout = q->lin.a.p.dout;
  q->lin.p.dq = q->lin.a.p.dq;
  q->lin.p.dk = q->lin.a.p.dk;
  q->lin.p.dv = q->lin.a.p.dv;
  fault_case c = {0};
  c.name = "backward check, size queries (kv, linear)";
  c.st = q;
  c.call = q_call;
  c.digest = q_digest;
  c.msg = q->bwd.msg;
  c.msg_size = sizeof q->bwd.msg;
  fault_run(&c);
  acase_free(&q->bwd);
  k_free(&q->kv);
  acase_free(&q->lin.a);
  free(q);
}

/* The default context is made by the first call with ctx == NULL and
 * never freed, so its failures are tried in child processes, each with a
 * process of its own in which the default context does not exist yet:
 * exit 0 when the child's checks pass, 1 when one fails. The reference
 * child (k = 0) writes to the pipe its allocation count and how many of
 * them stay (the default context's); a failing call may leave those
 * (made before the failure) and nothing else, and after the next call
 * exactly those are left. */
static long default_keep;
static int default_child(long k, int fd) {
  acase a;
  acase_init(&a, NULL, 2, 37, 70, 3200);
  a.p.num_threads = 2;
  acase_prepare(&a);
  const long live0 = fi_live(NULL);
  long n = 0;
  if (k == 0)
    fi_arm_count();
  else
    fi_arm_fail(FI_ALLOC, k, 0);
  const attn_status s = attn_forward(NULL, &a.p);
  const int fired = fi_disarm(&n, NULL);
  int ok = 1;
  const long kept = fi_live(NULL) - live0;
  if (k == 0) {
    const long out[2] = {n, kept};
    ok = s == ATTN_OK && write(fd, out, sizeof out) == (ssize_t)sizeof out;
  } else {
    if (s == ATTN_OK) /* absorbed: the pool's worker array */
      ok = fired && kept <= default_keep;
    else
      ok = fired && s == ATTN_ERR_OUT_OF_MEMORY && a.msg[0] != '\0' &&
           kept <= default_keep;
    if (!ok)
      printf("FAIL default context, allocation %ld: status %d, %ld "
             "allocations kept, the reference keeps %ld (%s)\n",
             k, (int)s, kept, default_keep, a.msg);
    acase_prepare(&a); /* the next call completes it */
    ok = ok && attn_forward(NULL, &a.p) == ATTN_OK &&
         fi_live(NULL) - live0 == default_keep;
  }
  acase_free(&a);
  return ok ? 0 : 1;
}

static int default_try(long k, long *n) {
  int fds[2];
  if (pipe(fds) != 0)
    return 0;
  fflush(stdout);
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    _exit(default_child(k, fds[1]));
  }
  close(fds[1]);
  long got[2] = {-1, -1};
  if (n && read(fds[0], got, sizeof got) != (ssize_t)sizeof got)
    got[0] = -1;
  if (n) {
    *n = got[0];
    default_keep = got[1];
  }
  close(fds[0]);
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid)
    return 0;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void default_context_calls(void) {
  long n = -1;
  CHECK(default_try(0, &n) && n > 0,
        "default context: reference call (%ld "
        "allocations)",
        n);
  fs_calls++;
  for (long k = 1; k <= n; k++, fs_allocs_failed++)
    CHECK(default_try(k, NULL), "default context: allocation %ld of %ld", k, n);
  printf("  %-44s %3ld allocations (%ld kept: the context)\n",
         "forward on the default context (first)", n, default_keep);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* progress in a log */
  printf("contexts:\n");
  default_context_calls(); /* before anything makes the default context */
  attn_context_options o;
  attn_context_options_init(&o);
  o.num_threads = 1;
  if (attn_context_create(&ctx1, &o) != ATTN_OK)
    return 2;
  o.num_threads = 3;
  if (attn_context_create(&ctx3, &o) != ATTN_OK)
    return 2;
  { /* start the pools' workers and the default context before counting */
    acase a;
    acase_init(&a, ctx3, 2, 37, 70, 1);
    a.p.num_threads = 4;
    CHECK(attn_forward(ctx3, &a.p) == ATTN_OK, "warm-up");
    CHECK(attn_forward(NULL, &a.p) == ATTN_OK, "warm-up");
    a.p.num_threads = 0;
    acase_free(&a);
  }
  const double t0 = tc_now();
  context_calls();
  nested_calls();
  attention_calls();
  compile_calls();
  cache_calls();
  cache_many();
  merge_calls();
  linear_calls();
  helper_calls();
  query_calls();
  attn_context_free(ctx1);
  attn_context_free(ctx3);
  fault_summary();
  printf("(%.1f s)\n", tc_now() - t0);
  printf("%ld passed, %ld failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
