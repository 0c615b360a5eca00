/*
 * params_fuzz.c - libFuzzer target for attn_forward (and attn_backward).
 *
 * Carves a small problem (batch <= 2, heads <= 8, seq <= 16, dims <= 16) and
 * its options (the T5 table of issue 7, sinks and dropout of issue 9
 * included) out of the input bytes,
 * then either
 *   - valid mode: runs the generic kernels and the default ISA (1 thread and
 *     several threads with a caller workspace) and checks that all succeed,
 *     give no NaN, agree within a loose tolerance (generic vs default ISA),
 *     are bitwise identical across thread counts, and that rows with
 *     lse = -inf have o = 0; or
 *   - invalid mode: breaks one argument in a way the header says is an error
 *     and checks that attn_forward_check and attn_forward both return the
 *     same error status (and a message), never crash, never succeed; the
 *     forward's workspace size query (and the backward's, where
 *     attn_backward_check refuses too) returns that status and writes
 *     nothing.
 * The backward (valid mode) runs on 1 thread and on several in a caller
 * workspace of attn_backward_workspace_size's bytes: the same bits.
 */
#include "attn.h"
#include "carve.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what, int64_t id, const char *msg) {
  fprintf(stderr, "params_fuzz: %s (case %lld): %s\n", what, (long long)id,
          msg ? msg : "");
  abort();
}

/* n values of magnitude mag, stored as dt (allocated). */
static void *make(int64_t n, attn_dtype dt, float mag, uint64_t *s) {
  size_t es = attn_dtype_size(dt);
  void *p = calloc((size_t)(n > 0 ? n : 1), es ? es : 4);
  if (p == NULL)
    abort();
  for (int64_t i = 0; i < n; i++) {
    float f = mag * frand(s);
    if (dt == ATTN_DTYPE_F32)
      ((float *)p)[i] = f;
    else if (dt == ATTN_DTYPE_BF16)
      ((uint16_t *)p)[i] = attn_f32_to_bf16(f);
    else
      ((uint16_t *)p)[i] = attn_f32_to_f16(f);
  }
  return p;
}

static attn_tensor view(void *d, attn_dtype dt, int bhsd, int64_t b, int64_t s,
                        int64_t h, int64_t dim) {
  return bhsd ? attn_tensor_bhsd(d, dt, b, s, h, dim)
              : attn_tensor_bshd(d, dt, b, s, h, dim);
}

/* Everything one case allocates, freed at the end. */
typedef struct bufs {
  void *q, *k, *v, *bias, *mask, *ws;
  float *o[3], *lse[3], *alibi;
  float *rel;       /* T5 table [rel_buckets, hq], or NULL */
  float *sinks;     /* sinks [hq], or NULL                 */
  attn_mask *cmask; /* a compiled mask (valid mode), or NULL */
  int32_t kv_lens[2], cu_q[5], cu_k[5];
} bufs;

static void free_bufs(bufs *m) {
  attn_mask_free(m->cmask);
  free(m->q);
  free(m->k);
  free(m->v);
  free(m->bias);
  free(m->mask);
  free(m->ws);
  free(m->alibi);
  free(m->rel);
  free(m->sinks);
  for (int i = 0; i < 3; i++) {
    free(m->o[i]);
    free(m->lse[i]);
  }
}

/* cases 0..29 of corrupt(), plus its default */
#define NUM_INVALID_CASES 30

/* corrupt() cases 0..18: the tensors' shapes, strides, data and dtypes and
 * the scalar options. */
static int corrupt_core(attn_params *p, int64_t id) {
  switch (id) {
  case 0:
    p->q.data = NULL;
    return 1;
  case 1:
    p->q.shape[0] = 0;
    p->o.shape[0] = 0;
    return 1;
  case 2:
    p->k.shape[1] = -1;
    return 1;
  case 3:
    p->q.shape[3] = 0;
    p->k.shape[3] = 0;
    return 1;
  case 4:
    p->q.shape[3] = 257;
    p->k.shape[3] = 257;
    return 1;
  case 5:
    p->k.shape[3] += 1;
    return 1;
  case 6: /* heads_q (<= 8) is not a multiple of heads_q + 1 */
    p->k.shape[2] = p->q.shape[2] + 1;
    p->v.shape[2] = p->q.shape[2] + 1;
    return 1;
  case 7:
    p->scale = NAN;
    return 1;
  case 8:
    p->scale = INFINITY;
    return 1;
  case 9:
    p->softcap = -1.0f;
    return 1;
  case 10:
    p->softcap = NAN;
    return 1;
  case 11:
    p->window_left = -2;
    return 1;
  case 12:
    p->window_right = -5;
    return 1;
  case 13:
    p->o.data = p->q.data;
    return 1;
  case 14:
    p->q.dtype = (attn_dtype)7;
    return 1;
  case 15: /* head_dim_v out of 1..256 */
    p->v.shape[3] = 0;
    p->o.shape[3] = 0;
    return 1;
  case 16:
    p->q.stride[1] = -1;
    return 1;
  case 17:
    p->o.shape[1] += 1;
    return 1;
  default: /* 18 */
    p->v.shape[1] += 1;
    return 1;
  }
}

/* corrupt() cases 19..26: the optional inputs (mask, bias, kv_lens, varlen
 * offsets); 0 when the case has nothing to break. */
static int corrupt_optional(attn_params *p, bufs *m, int64_t id, int varlen,
                            int64_t sk) {
  switch (id) {
  case 19: /* a float mask */
    if (varlen || p->mask.data == NULL)
      return 0;
    p->mask.dtype = ATTN_DTYPE_F32;
    return 1;
  case 20: /* bias key axis neither 1 nor seq_k */
    if (varlen || p->bias.data == NULL)
      return 0;
    p->bias.shape[3] = sk + 1;
    p->bias.stride[3] = 1;
    return 1;
  case 21:
    if (varlen || p->kv_lens == NULL)
      return 0;
    m->kv_lens[0] = -1;
    return 1;
  case 22:
    if (varlen || p->kv_lens == NULL)
      return 0;
    m->kv_lens[0] = (int32_t)sk + 1;
    return 1;
  case 23: /* last offset beyond the packed rows */
    if (!varlen)
      return 0;
    m->cu_q[p->varlen_batch] += 1;
    return 1;
  case 24: /* decreasing offsets */
    if (!varlen || p->varlen_batch < 2)
      return 0;
    m->cu_k[1] = m->cu_k[2] + 1;
    return 1;
  case 25:
    if (!varlen)
      return 0;
    p->cu_seqlens_k = NULL;
    return 1;
  default: /* 26 */
    if (!varlen)
      return 0;
    p->varlen_batch = 0;
    return 1;
  }
}

/* corrupt() cases 27..29 (the enums, the output dtype) and the default (no
 * heads). */
static int corrupt_enums(attn_params *p, int64_t id) {
  switch (id) {
  case 27:
    p->isa = (attn_isa)99;
    return 1;
  case 28:
    p->causal = (attn_causal)7;
    return 1;
  case 29:
    p->o.dtype = ATTN_DTYPE_BOOL;
    return 1;
  default:
    p->q.shape[2] = 0;
    p->o.shape[2] = 0;
    return 1;
  }
}

/* Breaks p according to id; returns 0 when the case does not apply. */
static int corrupt(attn_params *p, bufs *m, int64_t id, int varlen,
                   int64_t sk) {
  if (id >= 0 && id <= 18)
    return corrupt_core(p, id);
  if (id >= 19 && id <= 26)
    return corrupt_optional(p, m, id, varlen, sk);
  return corrupt_enums(p, id);
}

/* The problem and options carved out of one input. */
typedef struct fuzz_case {
  int invalid;
  int64_t inv_id;
  int64_t batch, hk, hq, sq, sk, d, dv;
  attn_dtype dt;
  int bhsd;
  attn_causal causal;
  int64_t wl, wr;
  float softcap, scale;
  int use_alibi, use_bias, use_mask, use_kv_lens, use_lse, varlen;
  int64_t bias_bits, mask_bits;
  float mag;
  int threads;
  int64_t nb; /* varlen: sequences, offsets in bufs cu_q and cu_k */
  int64_t prefix, qoff, koff; /* prefix-LM (-1 off), position offsets   */
  int use_compiled;           /* valid mode: through attn_mask_compile   */
  int use_t5, t5_bidir;       /* T5 table (issue 7)                      */
  int64_t t5_buckets, t5_max;
  int use_sinks; /* sinks [hq] (issue 9), some -inf                 */
  float dropout; /* dropout_p (issue 9), 0 = off                    */
  uint64_t seed;
} fuzz_case;

#define MSG_SIZE 256

/* varlen: nb sequences of 1..5 query and key rows packed into one batch. */
static void carve_varlen(bytes *in, fuzz_case *c, bufs *m) {
  c->nb = 0;
  if (!c->varlen)
    return;
  c->nb = 1 + take(in, 3);
  m->cu_q[0] = m->cu_k[0] = 0;
  for (int64_t b = 0; b < c->nb; b++) {
    m->cu_q[b + 1] = m->cu_q[b] + 1 + (int32_t)take(in, 5);
    m->cu_k[b + 1] = m->cu_k[b] + 1 + (int32_t)take(in, 5);
  }
  c->batch = 1;
  c->sq = m->cu_q[c->nb];
  c->sk = m->cu_k[c->nb];
}

/* The data seed: a hash of the input bytes left after carving. */
static uint64_t data_seed(const bytes *in) {
  uint64_t seed = 0x243F6A8885A308D3ULL;
  for (size_t i = 0; i < in->n; i++)
    seed = (seed ^ in->p[i]) * 0x100000001B3ULL;
  if (seed == 0)
    seed = 1;
  return seed;
}

/* Carves the problem and its options out of the input, in input order. */
static void carve(bytes *in, fuzz_case *c, bufs *m) {
  c->invalid = take(in, 4) == 3;
  c->inv_id = take(in, NUM_INVALID_CASES + 1);
  c->batch = 1 + take(in, 2);
  c->hk = 1 + take(in, 4);
  c->hq = c->hk * (1 + take(in, 2));
  c->sq = 1 + take(in, 16);
  c->sk = 1 + take(in, 16);
  c->d = 1 + take(in, 16);
  c->dv = 1 + take(in, 16);
  c->dt = (attn_dtype)take(in, 3);
  c->bhsd = (int)take(in, 2);
  c->causal = (attn_causal)take(in, 3);
  c->wl = take(in, 4) == 0 ? take(in, 18) - 1 : -1;
  c->wr = take(in, 4) == 0 ? take(in, 18) - 1 : -1;
  c->softcap = take(in, 4) == 0 ? 0.5f + (float)take(in, 16) : 0;
  c->scale = 0;
  if (take(in, 3) == 0) {
    /* two takes in a defined order (one expression would leave it open) */
    const int64_t mag = take(in, 40);
    const int64_t neg = take(in, 2);
    c->scale = 0.05f * (float)(1 + mag) * (neg ? -1.f : 1.f);
  }
  c->use_alibi = take(in, 4) == 0;
  c->use_bias = take(in, 3) == 0;
  c->bias_bits = take(in, 16);
  c->use_mask = take(in, 3) == 0;
  c->mask_bits = take(in, 16);
  c->use_kv_lens = take(in, 4) == 0;
  c->use_lse = (int)take(in, 2);
  c->varlen = take(in, 5) == 0;
  static const float mags[3] = {1.0f, 4.0f, 16.0f};
  c->mag = mags[take(in, 3)];
  c->threads = 2 + (int)take(in, 3);
  carve_varlen(in, c, m);
  /* options of issue 6, carved last and switched on by nonzero bytes, so
   * that older corpora (whose bytes run out here: take gives 0) decode as
   * before */
  c->prefix = -1;
  if (take(in, 5) == 4 && c->causal == ATTN_CAUSAL_NONE)
    c->prefix = take(in, 18);
  c->qoff = take(in, 4) == 3 ? take(in, 33) - 16 : 0;
  c->koff = take(in, 4) == 3 ? take(in, 33) - 16 : 0;
  c->use_compiled = take(in, 4) == 3;
  /* issue 7, the same way: a T5 table when the byte is 5 (of 0..5) */
  c->use_t5 = take(in, 6) == 5;
  c->t5_buckets = 1 + take(in, 40);
  c->t5_max = 1 + take(in, 130);
  c->t5_bidir = (int)take(in, 2);
  if (c->t5_bidir && c->t5_buckets < 2)
    c->t5_buckets = 2;
  /* issue 9, the same way: sinks, then dropout p in 0.1 .. 0.9 */
  c->use_sinks = take(in, 6) == 5;
  c->dropout = take(in, 6) == 5 ? (float)(1 + take(in, 9)) / 10.0f : 0.0f;
  c->seed = data_seed(in);
}

/* q, k, v (random, of magnitude mag), three O and LSE buffers, and the
 * scalar options. */
static void build_core(fuzz_case *c, bufs *m, attn_params *p) {
  const int64_t batch = c->batch, hq = c->hq, hk = c->hk, sq = c->sq,
                sk = c->sk, d = c->d, dv = c->dv;
  m->q = make(batch * sq * hq * d, c->dt, c->mag, &c->seed);
  m->k = make(batch * sk * hk * d, c->dt, c->mag, &c->seed);
  m->v = make(batch * sk * hk * dv, c->dt, c->mag, &c->seed);
  const int64_t no = batch * sq * hq * dv, nl = batch * hq * sq;
  for (int r = 0; r < 3; r++) {
    m->o[r] = calloc((size_t)no, sizeof(float));
    m->lse[r] = calloc((size_t)nl, sizeof(float));
    if (m->o[r] == NULL || m->lse[r] == NULL)
      abort();
  }
  p->q = view(m->q, c->dt, c->bhsd, batch, sq, hq, d);
  p->k = view(m->k, c->dt, c->bhsd, batch, sk, hk, d);
  p->v = view(m->v, c->dt, c->bhsd, batch, sk, hk, dv);
  p->scale = c->scale;
  p->softcap = c->softcap;
  p->causal = c->causal;
  p->window_left = c->wl;
  p->window_right = c->wr;
  if (c->use_alibi) {
    m->alibi = calloc((size_t)hq, sizeof(float));
    if (m->alibi == NULL || attn_alibi_slopes(hq, m->alibi) != ATTN_OK)
      die("attn_alibi_slopes failed", -1, "");
    p->alibi_slopes = m->alibi;
  }
}

/* A random bias; the axes set in bias_bits broadcast. */
static void build_bias(fuzz_case *c, bufs *m, attn_params *p) {
  const int64_t batch = c->batch, hq = c->hq, sq = c->sq, sk = c->sk;
  m->bias = make(batch * hq * sq * sk, ATTN_DTYPE_F32, c->mag, &c->seed);
  p->bias = attn_tensor_contiguous(m->bias, ATTN_DTYPE_F32, batch, hq, sq, sk);
  for (int a = 0; a < 4; a++) {
    if (c->bias_bits >> a & 1) { /* broadcast this axis */
      p->bias.shape[a] = 1;
      p->bias.stride[a] = 0;
    }
  }
}

/* A random boolean mask (about 3/4 set); the axes set in mask_bits
 * broadcast. */
static void build_mask(fuzz_case *c, bufs *m, attn_params *p) {
  const int64_t full[4] = {c->batch, c->hq, c->sq, c->sk};
  int64_t n = c->batch * c->hq * c->sq * c->sk;
  m->mask = calloc((size_t)n, 1);
  if (m->mask == NULL)
    abort();
  for (int64_t i = 0; i < n; i++)
    ((unsigned char *)m->mask)[i] = frand(&c->seed) > -0.5f;
  p->mask = attn_tensor_contiguous(m->mask, ATTN_DTYPE_BOOL, full[0], full[1],
                                   full[2], full[3]);
  for (int a = 0; a < 4; a++) {
    if (c->mask_bits >> a & 1) {
      p->mask.shape[a] = 1;
      p->mask.stride[a] = 0;
    }
  }
}

/* The optional inputs the case asked for: bias, mask and kv_lens (not with
 * varlen), or the varlen offsets. */
static void build_optional(fuzz_case *c, bufs *m, attn_params *p) {
  if (c->use_bias && !c->varlen)
    build_bias(c, m, p);
  if (c->use_mask && !c->varlen)
    build_mask(c, m, p);
  if (c->use_kv_lens && !c->varlen) {
    for (int64_t b = 0; b < c->batch; b++)
      m->kv_lens[b] =
          1 + (int32_t)((uint32_t)((frand(&c->seed) + 1.0f) * 8.0f) % c->sk);
    p->kv_lens = m->kv_lens;
  }
  if (c->varlen) {
    p->cu_seqlens_q = m->cu_q;
    p->cu_seqlens_k = m->cu_k;
    p->varlen_batch = c->nb;
  }
  p->prefix_len = c->prefix;
  p->q_pos_offset = c->qoff;
  p->k_pos_offset = c->koff;
  if (c->use_t5) {
    m->rel = make(c->t5_buckets * c->hq, ATTN_DTYPE_F32, c->mag, &c->seed);
    p->rel_bias = m->rel;
    p->rel_buckets = c->t5_buckets;
    p->rel_max_distance = c->t5_max;
    p->rel_bidirectional = c->t5_bidir;
  }
  if (c->use_sinks) { /* logits of magnitude mag; a head in four: -inf */
    m->sinks = make(c->hq, ATTN_DTYPE_F32, c->mag, &c->seed);
    for (int64_t h = 0; h < c->hq; h++)
      if (frand(&c->seed) < -0.5f)
        m->sinks[h] = -INFINITY;
    p->sinks = m->sinks;
  }
  p->dropout_p = c->dropout;
  p->dropout_seed = c->seed;
}

/* Invalid mode: one argument broken; attn_forward_check and attn_forward
 * must both refuse it, with the same status and a message. */
static void run_invalid(const fuzz_case *c, bufs *m, attn_params *p,
                        char *msg) {
  const int64_t inv_id = c->inv_id;
  p->o = view(m->o[0], ATTN_DTYPE_F32, c->bhsd, c->batch, c->sq, c->hq, c->dv);
  p->lse = c->use_lse ? m->lse[0] : NULL;
  p->isa = ATTN_ISA_GENERIC;
  if (!corrupt(p, m, inv_id, c->varlen, c->sk))
    return;
  attn_status chk = attn_forward_check(p);
  if (chk == ATTN_OK)
    die("attn_forward_check accepted an invalid argument", inv_id, "");
  if (msg[0] == '\0' || memchr(msg, '\0', MSG_SIZE) == NULL)
    die("no error message", inv_id, attn_strerror(chk));
  msg[0] = '\0';
  attn_status s = attn_forward(NULL, p);
  if (s == ATTN_OK)
    die("attn_forward accepted an invalid argument", inv_id, "");
  if (s != chk)
    die("attn_forward_check and attn_forward disagree", inv_id, msg);
  /* the size queries validate the same way */
  size_t ws = 12345;
  if (attn_forward_workspace_size(NULL, p, &ws) != chk || ws != 12345)
    die("attn_forward_workspace_size and attn_forward disagree", inv_id, msg);
  attn_status bchk = attn_backward_check(p);
  if (bchk != ATTN_OK &&
      (attn_backward_workspace_size(NULL, p, &ws) != bchk || ws != 12345))
    die("attn_backward_workspace_size and attn_backward_check disagree", inv_id,
        msg);
  if (p->isa == ATTN_ISA_GENERIC) { /* unless the ISA is what broke */
    p->isa = ATTN_ISA_AUTO;
    if (attn_forward(NULL, p) != s)
      die("generic and default ISA disagree on an error", inv_id, msg);
  }
}

/* Valid mode, the forward: generic/1 thread into o[0], default/1 thread
 * into o[1], default/N threads + a caller workspace into o[2]. */
static void run_valid_forward(const fuzz_case *c, bufs *m, attn_params *p,
                              const char *msg) {
  static const attn_isa isas[3] = {ATTN_ISA_GENERIC, ATTN_ISA_AUTO,
                                   ATTN_ISA_AUTO};
  for (int r = 0; r < 3; r++) {
    p->o =
        view(m->o[r], ATTN_DTYPE_F32, c->bhsd, c->batch, c->sq, c->hq, c->dv);
    p->lse = c->use_lse ? m->lse[r] : NULL;
    p->isa = isas[r];
    p->num_threads = r == 2 ? c->threads : 1;
    p->workspace = NULL;
    p->workspace_size = 0;
    if (r == 2) {
      size_t ws = 0;
      if (attn_forward_workspace_size(NULL, p, &ws) != ATTN_OK)
        die("attn_forward_workspace_size failed", r, msg);
      m->ws = malloc(ws ? ws : 1);
      if (m->ws == NULL)
        abort();
      p->workspace = m->ws;
      p->workspace_size = ws;
    }
    attn_status s = attn_forward(NULL, p);
    if (s != ATTN_OK)
      die("attn_forward rejected a valid problem", r, msg);
  }
}

/* O: no NaN, generic vs default ISA within a loose tolerance, bitwise the
 * same on 1 and N threads. */
static void check_forward_o(const fuzz_case *c, const bufs *m) {
  const int64_t no = c->batch * c->sq * c->hq * c->dv;
  const double otol = (c->dt == ATTN_DTYPE_F32 ? 1e-3 : 2e-2) * c->mag;
  for (int64_t i = 0; i < no; i++) {
    if (isnan(m->o[0][i]) || isnan(m->o[1][i]))
      die("NaN in O", i, "");
    if (!(fabs((double)m->o[0][i] - (double)m->o[1][i]) <= otol))
      die("generic and default ISA differ in O", i, "");
  }
  if (memcmp(m->o[1], m->o[2], (size_t)no * sizeof(float)) != 0)
    die("O depends on the thread count", c->threads, "");
}

/* LSE: the same bits on 1 and N threads, no NaN or +inf, generic vs default
 * ISA close and empty (-inf) on the same rows. */
static void check_forward_lse(const fuzz_case *c, const bufs *m) {
  const int64_t nl = c->batch * c->hq * c->sq;
  if (memcmp(m->lse[1], m->lse[2], (size_t)nl * sizeof(float)) != 0)
    die("LSE depends on the thread count", c->threads, "");
  for (int64_t i = 0; i < nl; i++) {
    float a = m->lse[0][i], b = m->lse[1][i];
    if (isnan(a) || isnan(b) || (a > 0 && isinf(a)))
      die("NaN or +inf in LSE", i, "");
    if (isinf(a) != isinf(b))
      die("generic and default ISA differ on an empty row", i, "");
    if (!isinf(a) &&
        !(fabs((double)a - (double)b) <= 1e-3 * (1.0 + fabs((double)a))))
      die("generic and default ISA differ in LSE", i, "");
  }
}

/* A row with lse = -inf has o = 0; lse is [batch, heads_q, seq_q]. */
static void check_masked_rows(const fuzz_case *c, const bufs *m) {
  const int64_t hq = c->hq, sq = c->sq, dv = c->dv;
  for (int64_t b = 0; b < c->batch; b++)
    for (int64_t h = 0; h < hq; h++)
      for (int64_t i = 0; i < sq; i++) {
        if (!isinf(m->lse[0][(b * hq + h) * sq + i]))
          continue;
        for (int64_t col = 0; col < dv; col++) {
          int64_t at = c->bhsd ? ((b * hq + h) * sq + i) * dv + col
                               : ((b * sq + i) * hq + h) * dv + col;
          if (m->o[0][at] != 0.0f)
            die("fully masked row has nonzero output", i, "");
        }
      }
}

/* The backward on the same problem: no NaN, and the same bits on 1 and on N
 * threads (dq, dk, dv are f32 and laid out like q, k, v). */
static void run_backward(fuzz_case *c, const bufs *m, attn_params *p,
                         const char *msg) {
  const int64_t batch = c->batch, hq = c->hq, hk = c->hk, sq = c->sq,
                sk = c->sk, d = c->d, dv = c->dv;
  const int64_t no = batch * sq * hq * dv;
  const int64_t nq = batch * sq * hq * d, nk = batch * sk * hk * d,
                nv = batch * sk * hk * dv;
  const int64_t nr = c->use_t5 ? c->t5_buckets * hq : 0;
  const int64_t ns = c->use_sinks ? hq : 0;
  float *dout = make(no, ATTN_DTYPE_F32, 1.0f, &c->seed);
  float *g[2][5];
  for (int r = 0; r < 2; r++) {
    g[r][0] = calloc((size_t)nq, sizeof(float));
    g[r][1] = calloc((size_t)nk, sizeof(float));
    g[r][2] = calloc((size_t)nv, sizeof(float));
    g[r][3] = calloc((size_t)nr + 1, sizeof(float));
    g[r][4] = calloc((size_t)ns + 1, sizeof(float));
    if (!g[r][0] || !g[r][1] || !g[r][2] || !g[r][3] || !g[r][4])
      abort();
  }
  p->o = view(m->o[1], ATTN_DTYPE_F32, c->bhsd, batch, sq, hq, dv);
  p->lse = m->lse[1];
  p->isa = ATTN_ISA_AUTO;
  p->workspace = NULL;
  p->workspace_size = 0;
  p->dout = view(dout, ATTN_DTYPE_F32, c->bhsd, batch, sq, hq, dv);
  for (int r = 0; r < 2; r++) {
    p->dq = view(g[r][0], ATTN_DTYPE_F32, c->bhsd, batch, sq, hq, d);
    p->dk = view(g[r][1], ATTN_DTYPE_F32, c->bhsd, batch, sk, hk, d);
    p->dv = view(g[r][2], ATTN_DTYPE_F32, c->bhsd, batch, sk, hk, dv);
    p->drel_bias = nr ? g[r][3] : NULL;
    p->dsinks = ns ? g[r][4] : NULL;
    p->num_threads = r == 0 ? 1 : c->threads;
    void *ws = NULL;
    if (r == 1) { /* N threads in a caller workspace of the size asked */
      size_t n = 0;
      if (attn_backward_workspace_size(NULL, p, &n) != ATTN_OK)
        die("attn_backward_workspace_size failed", r, msg);
      ws = malloc(n ? n : 1);
      if (ws == NULL)
        abort();
      p->workspace = ws;
      p->workspace_size = n;
    }
    if (attn_backward(NULL, p) != ATTN_OK)
      die("attn_backward rejected a valid problem", r, msg);
    p->workspace = NULL;
    p->workspace_size = 0;
    free(ws);
  }
  const int64_t n[5] = {nq, nk, nv, nr, ns};
  for (int t = 0; t < 5; t++) {
    for (int64_t i = 0; i < n[t]; i++)
      if (isnan(g[0][t][i]))
        die("NaN in a gradient", t, "");
    if (memcmp(g[0][t], g[1][t], (size_t)n[t] * sizeof(float)) != 0)
      die("a gradient depends on the thread count", t, "");
  }
  for (int r = 0; r < 2; r++)
    for (int t = 0; t < 5; t++)
      free(g[r][t]);
  free(dout);
}

/* Valid mode: the forward three ways and its checks, then (with LSE) the
 * backward. */
static void run_valid(fuzz_case *c, bufs *m, attn_params *p, const char *msg) {
  if (c->use_compiled) { /* one compiled mask for every call below */
    p->o =
        view(m->o[0], ATTN_DTYPE_F32, c->bhsd, c->batch, c->sq, c->hq, c->dv);
    if (attn_mask_compile(p, &m->cmask) != ATTN_OK)
      die("attn_mask_compile rejected a valid problem", 0, msg);
    p->compiled_mask = m->cmask;
  }
  run_valid_forward(c, m, p, msg);
  check_forward_o(c, m);
  if (c->use_lse) {
    check_forward_lse(c, m);
    check_masked_rows(c, m);
    run_backward(c, m, p, msg);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  bytes in = {data, size};
  bufs m;
  memset(&m, 0, sizeof m);
  fuzz_case c;
  carve(&in, &c, &m);

  attn_params p;
  attn_params_init(&p);
  build_core(&c, &m, &p);
  build_optional(&c, &m, &p);

  char msg[MSG_SIZE];
  msg[0] = '\0';
  p.error_message = msg;
  p.error_message_size = sizeof msg;

  if (c.invalid)
    run_invalid(&c, &m, &p, msg);
  else
    run_valid(&c, &m, &p, msg);
  free_bufs(&m);
  return 0;
}
