/*
 * encdec.c - the encoder-decoder Transformer of "Attention Is All You
 * Need", forward, backward and greedy decoding (the model in encdec.h).
 *
 * Notation: B sequences in a call (b <= config.batch), S = max_src,
 * T = max_tgt, D = d_model, F = d_ff, V = vocab_tgt, N = b S encoder rows,
 * M = b T decoder rows. Every activation the backward needs is kept from
 * the forward in the buffers below; the attention layers keep their own
 * (Q, K, V, O, LSE) inside libattn's layer objects.
 */
#include "encdec.h"

#include "safetensors_write.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef train_lin lin;   /* w [out, in], b [out] */
typedef train_norm norm; /* w, b [D] */

typedef struct enc_layer {
  attn_layer *attn; /* self-attention, fused in_proj              */
  norm ln1, ln2;
  lin ff1, ff2; /* ff1 [F, D], ff2 [D, F]                        */
  /* activations (N rows) */
  float *att, *r1, *h1, *f1, *a1, *f2, *r2; /* [N, D] or [N, F] (f1, a1) */
  float *m1, *s1, *m2, *s2;                 /* [N] LN mean and rstd     */
  uint8_t *k1, *k2;                         /* [N, D] dropout keep      */
} enc_layer;

typedef struct dec_layer {
  attn_layer *self, *cross;
  norm ln1, ln2, ln3;
  lin ff1, ff2;
  /* activations (M rows) */
  float *sa, *r1, *h1, *ca, *r2, *h2, *f1, *a1, *f2, *r3; /* [M, D|F] */
  float *m1, *s1, *m2, *s2, *m3, *s3;                     /* [M]      */
  uint8_t *k1, *k2, *k3;                                  /* [M, D]   */
  float *cache_k, *cache_v; /* decoding: [B, T, H, D/H] each           */
} dec_layer;

struct encdec {
  encdec_config c;
  train_params ps;
  float *emb_src, *emb_tgt; /* [Vs, D], [V, D] */
  lin out;                  /* [V, D], [V]     */
  enc_layer *enc;           /* [n_enc]         */
  dec_layer *dec;           /* [n_dec]         */
  float *pe;                /* [max(S, T), D] sinusoidal table          */
  float **x;                /* [n_enc + 1] of [N, D]: x[0] embeddings,
                               x[l + 1] encoder layer l's output        */
  float **y;                /* [n_dec + 1] of [M, D]                    */
  uint8_t *kx, *ky;         /* embedding dropout keep [N, D], [M, D]    */
  float *logits;            /* [M, V]                                   */
  float *ga, *gb, *gc;      /* backward scratch [max(N, M), D] each     */
  float *gf;                /* [max(N, M), F]                           */
  float *gmem;              /* dL/dmemory [N, D]                        */
  float *gtmp;              /* one cross layer's part of it [N, D]      */
  int32_t *src_len;         /* [B] copy of the call's lengths           */
  int32_t *seq_lens;        /* [B] decoding cache lengths               */
  int32_t *tok;             /* [B] decoding                             */
  train_rng drop_rng;
  char meta_val[12][24];
  const char *meta[24];
};

void encdec_config_default(encdec_config *c) {
  memset(c, 0, sizeof *c);
  c->vocab_src = TASK_NUM_SRC_VOCAB;
  c->vocab_tgt = TASK_NUM_TGT_VOCAB;
  c->max_src = TASK_NUM_SRC_MAX;
  c->max_tgt = TASK_NUM_TGT_MAX;
  c->d_model = 64;
  c->heads = 4;
  c->d_ff = 256;
  c->n_enc = 2;
  c->n_dec = 2;
  c->batch = 64;
  c->dropout = 0.0f;
  c->label_smoothing = 0.1f;
}

/* ---- creation ------------------------------------------------------------ */

static attn_layer *make_attn(const encdec_config *c, int cross, char *err,
                             size_t err_size) {
  attn_layer_config lc;
  attn_layer_config_init(&lc);
  lc.d_model = c->d_model;
  lc.heads_q = c->heads;
  lc.cross = cross;
  lc.fused_qkv = !cross;
  attn_layer *L = NULL;
  if (attn_layer_create(&lc, &L, err, err_size) != ATTN_OK)
    return NULL;
  return L;
}

/* every activation buffer, NULL-checked at the end */
static int alloc_acts(encdec *m) {
  const encdec_config *c = &m->c;
  const int64_t D = c->d_model, F = c->d_ff, B = c->batch;
  const int64_t N = B * c->max_src, M = B * c->max_tgt;
  const int64_t R = N > M ? N : M;
  int ok = 1;
#define A(p, n) ok &= ((p) = calloc((size_t)(n) + 1, sizeof *(p))) != NULL
  for (int64_t l = 0; l < c->n_enc; l++) {
    enc_layer *e = &m->enc[l];
    A(e->att, N * D), A(e->r1, N * D), A(e->h1, N * D), A(e->f1, N * F);
    A(e->a1, N * F), A(e->f2, N * D), A(e->r2, N * D);
    A(e->m1, N), A(e->s1, N), A(e->m2, N), A(e->s2, N);
    A(e->k1, N * D), A(e->k2, N * D);
  }
  for (int64_t l = 0; l < c->n_dec; l++) {
    dec_layer *d = &m->dec[l];
    A(d->sa, M * D), A(d->r1, M * D), A(d->h1, M * D), A(d->ca, M * D);
    A(d->r2, M * D), A(d->h2, M * D), A(d->f1, M * F), A(d->a1, M * F);
    A(d->f2, M * D), A(d->r3, M * D);
    A(d->m1, M), A(d->s1, M), A(d->m2, M), A(d->s2, M), A(d->m3, M);
    A(d->s3, M);
    A(d->k1, M * D), A(d->k2, M * D), A(d->k3, M * D);
    A(d->cache_k, M * D), A(d->cache_v, M * D);
  }
  A(m->x, c->n_enc + 1), A(m->y, c->n_dec + 1);
  if (!ok)
    return -1;
  for (int64_t l = 0; l <= c->n_enc; l++)
    A(m->x[l], N * D);
  for (int64_t l = 0; l <= c->n_dec; l++)
    A(m->y[l], M * D);
  A(m->kx, N * D), A(m->ky, M * D), A(m->logits, M * c->vocab_tgt);
  A(m->ga, R * D), A(m->gb, R * D), A(m->gc, R * D), A(m->gf, R * F);
  A(m->gmem, N * D), A(m->gtmp, N * D), A(m->src_len, B), A(m->seq_lens, B),
      A(m->tok, B);
  const int64_t P = c->max_src > c->max_tgt ? c->max_src : c->max_tgt;
  A(m->pe, P * D);
#undef A
  return ok ? 0 : -1;
}

static void set_meta(encdec *m) {
  const encdec_config *c = &m->c;
  const char *keys[] = {"model",   "vocab_src", "vocab_tgt", "max_src",
                        "max_tgt", "d_model",   "heads",     "d_ff",
                        "n_enc",   "n_dec"};
  const int64_t vals[] = {0,          c->vocab_src, c->vocab_tgt, c->max_src,
                          c->max_tgt, c->d_model,   c->heads,     c->d_ff,
                          c->n_enc,   c->n_dec};
  for (int i = 0; i < 10; i++) {
    if (i == 0)
      snprintf(m->meta_val[i], sizeof m->meta_val[i], "encdec");
    else
      snprintf(m->meta_val[i], sizeof m->meta_val[i], "%lld",
               (long long)vals[i]);
    m->meta[2 * i] = keys[i];
    m->meta[2 * i + 1] = m->meta_val[i];
  }
}

const char *const *encdec_meta(encdec *m, int *n) {
  *n = 10;
  return m->meta;
}

int encdec_create(const encdec_config *c, uint64_t seed, encdec **out,
                  char *err, size_t err_size) {
  *out = NULL;
  if (c->d_model < 2 || c->heads < 1 || c->d_model % c->heads || c->d_ff < 1 ||
      c->n_enc < 1 || c->n_dec < 1 || c->batch < 1 || c->vocab_src < 2 ||
      c->vocab_tgt < 3 || c->max_src < 1 || c->max_tgt < 1 || c->dropout < 0 ||
      c->dropout >= 1 || c->label_smoothing < 0 || c->label_smoothing >= 1 ||
      (c->d_model & 1))
    return train_fail(
        err, err_size,
        "encdec: bad configuration (D %lld even and a multiple of "
        "H %lld, every size >= 1, dropout and smoothing in [0, 1))",
        (long long)c->d_model, (long long)c->heads);
  encdec *m = calloc(1, sizeof *m);
  if (!m)
    return train_fail(err, err_size, "encdec: out of memory");
  m->c = *c;
  m->drop_rng.s = seed ^ 0xd409;
  m->enc = calloc((size_t)c->n_enc, sizeof *m->enc);
  m->dec = calloc((size_t)c->n_dec, sizeof *m->dec);
  if (!m->enc || !m->dec) {
    encdec_free(m);
    return train_fail(err, err_size, "encdec: out of memory");
  }
  const int64_t D = c->d_model, F = c->d_ff;
  train_params *ps = &m->ps;
  int rc =
      train_params_own(ps, "src_emb.weight", c->vocab_src, D, 1, &m->emb_src);
  rc |= train_params_own(ps, "tgt_emb.weight", c->vocab_tgt, D, 1, &m->emb_tgt);
  char pre[64];
  for (int64_t l = 0; l < c->n_enc && !rc; l++) {
    enc_layer *e = &m->enc[l];
    snprintf(pre, sizeof pre, "enc.%lld.", (long long)l);
    e->attn = make_attn(c, 0, err, err_size);
    if (!e->attn) {
      encdec_free(m);
      return -1;
    }
    char ap[80];
    snprintf(ap, sizeof ap, "%sself_attn.", pre);
    rc |= train_params_layer(ps, ap, e->attn);
    rc |= train_reg_norm(ps, pre, "ln1", &e->ln1, D);
    rc |= train_reg_lin(ps, pre, "ff1", &e->ff1, F, D);
    rc |= train_reg_lin(ps, pre, "ff2", &e->ff2, D, F);
    rc |= train_reg_norm(ps, pre, "ln2", &e->ln2, D);
  }
  for (int64_t l = 0; l < c->n_dec && !rc; l++) {
    dec_layer *d = &m->dec[l];
    snprintf(pre, sizeof pre, "dec.%lld.", (long long)l);
    d->self = make_attn(c, 0, err, err_size);
    d->cross = d->self ? make_attn(c, 1, err, err_size) : NULL;
    if (!d->cross) {
      encdec_free(m);
      return -1;
    }
    char ap[80];
    snprintf(ap, sizeof ap, "%sself_attn.", pre);
    rc |= train_params_layer(ps, ap, d->self);
    rc |= train_reg_norm(ps, pre, "ln1", &d->ln1, D);
    snprintf(ap, sizeof ap, "%scross_attn.", pre);
    rc |= train_params_layer(ps, ap, d->cross);
    rc |= train_reg_norm(ps, pre, "ln2", &d->ln2, D);
    rc |= train_reg_lin(ps, pre, "ff1", &d->ff1, F, D);
    rc |= train_reg_lin(ps, pre, "ff2", &d->ff2, D, F);
    rc |= train_reg_norm(ps, pre, "ln3", &d->ln3, D);
  }
  rc |= train_reg_lin(ps, "", "out", &m->out, c->vocab_tgt, D);
  if (rc || train_params_alloc(ps) || alloc_acts(m)) {
    encdec_free(m);
    return train_fail(err, err_size, "encdec: out of memory");
  }
  /* weights */
  train_rng r = {seed};
  const float es = 1.0f / sqrtf((float)D);
  for (int64_t i = 0; i < c->vocab_src * D; i++)
    m->emb_src[i] = es * train_rng_normal(&r);
  for (int64_t i = 0; i < c->vocab_tgt * D; i++)
    m->emb_tgt[i] = es * train_rng_normal(&r);
  for (int64_t l = 0; l < c->n_enc; l++) {
    enc_layer *e = &m->enc[l];
    attn_layer_init_weights(e->attn, train_rng_next(&r));
    train_init_norm(&e->ln1, D);
    train_init_norm(&e->ln2, D);
    train_init_lin(&e->ff1, F, D, &r);
    train_init_lin(&e->ff2, D, F, &r);
  }
  for (int64_t l = 0; l < c->n_dec; l++) {
    dec_layer *d = &m->dec[l];
    attn_layer_init_weights(d->self, train_rng_next(&r));
    attn_layer_init_weights(d->cross, train_rng_next(&r));
    train_init_norm(&d->ln1, D);
    train_init_norm(&d->ln2, D);
    train_init_norm(&d->ln3, D);
    train_init_lin(&d->ff1, F, D, &r);
    train_init_lin(&d->ff2, D, F, &r);
  }
  train_init_lin(&m->out, c->vocab_tgt, D, &r);
  const int64_t P = c->max_src > c->max_tgt ? c->max_src : c->max_tgt;
  attn_sinusoidal_table(P, D, 0, 0.0, m->pe);
  set_meta(m);
  *out = m;
  return 0;
}

void encdec_free(encdec *m) {
  if (!m)
    return;
  for (int64_t l = 0; m->enc && l < m->c.n_enc; l++) {
    enc_layer *e = &m->enc[l];
    attn_layer_free(e->attn);
    void *p[] = {e->att, e->r1, e->h1, e->f1, e->a1, e->f2, e->r2,
                 e->m1,  e->s1, e->m2, e->s2, e->k1, e->k2};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
      free(p[i]);
  }
  for (int64_t l = 0; m->dec && l < m->c.n_dec; l++) {
    dec_layer *d = &m->dec[l];
    attn_layer_free(d->self);
    attn_layer_free(d->cross);
    void *p[] = {d->sa, d->r1, d->h1, d->ca, d->r2, d->h2,      d->f1,
                 d->a1, d->f2, d->r3, d->m1, d->s1, d->m2,      d->s2,
                 d->m3, d->s3, d->k1, d->k2, d->k3, d->cache_k, d->cache_v};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
      free(p[i]);
  }
  for (int64_t l = 0; m->x && l <= m->c.n_enc; l++)
    free(m->x[l]);
  for (int64_t l = 0; m->y && l <= m->c.n_dec; l++)
    free(m->y[l]);
  void *p[] = {m->enc,    m->dec,     m->x,        m->y,   m->kx, m->ky,
               m->logits, m->ga,      m->gb,       m->gc,  m->gf, m->gmem,
               m->gtmp,   m->src_len, m->seq_lens, m->tok, m->pe};
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
    free(p[i]);
  train_params_free(&m->ps);
  free(m);
}

train_param *encdec_params(encdec *m, int *n) {
  *n = m->ps.n;
  return m->ps.p;
}

/* ---- pieces ----------------------------------------------------------- */

#define GRAD(m, p) train_params_grad_of(&(m)->ps, (p))

/* the attention options of a call: threads, causal, key lengths */
static void attn_opts(const encdec *m, attn_params *o, int causal,
                      const int32_t *kv_lens) {
  attn_params_init(o);
  o->num_threads = m->c.threads;
  o->causal = causal ? ATTN_CAUSAL_TOP_LEFT : ATTN_CAUSAL_NONE;
  o->kv_lens = kv_lens;
}

/* out [b, sq, D] = layer(x [b, sq, D], y [b, sk, D] or NULL) */
static int attn_call(attn_layer *L, const attn_params *o, int64_t b, int64_t sq,
                     int64_t sk, const float *x, const float *y, float *out,
                     const float *dout, float *dx, float *dy, char *err,
                     size_t err_size) {
  attn_layer_call c;
  attn_layer_call_init(&c);
  c.batch = b;
  c.seq_q = sq;
  c.seq_k = sk;
  c.x = x;
  c.y = y;
  c.out = out;
  c.options = o;
  c.error_message = err;
  c.error_message_size = err_size;
  if (!dout)
    return attn_layer_forward(L, NULL, &c) == ATTN_OK ? 0 : -1;
  c.dout = dout;
  c.dx = dx;
  c.dy = dy;
  return attn_layer_backward(L, NULL, &c) == ATTN_OK ? 0 : -1;
}

/* y [n, D] = emb(ids) sqrt(D) + PE[position within its sequence of len] */
static void embed(const encdec *m, const float *table, const int32_t *ids,
                  int64_t n, int64_t len, int64_t pos0, float *y) {
  const int64_t D = m->c.d_model;
  train_embedding_forward(ids, table, sqrtf((float)D), y, n, D);
  for (int64_t i = 0; i < n; i++)
    train_add_inplace(y + i * D, m->pe + (pos0 + i % len) * D, D);
}

/* x [n, D] -> h [n, D] = FFN(x) into f1, a1 [n, F] and out [n, D] */
static void ffn_forward(const encdec *m, const lin *f1l, const lin *f2l,
                        const float *x, float *f1, float *a1, float *out,
                        int64_t n) {
  const int64_t D = m->c.d_model, F = m->c.d_ff;
  train_linear_forward(x, f1l->w, f1l->b, f1, n, D, F);
  train_relu_forward(f1, a1, n * F);
  train_linear_forward(a1, f2l->w, f2l->b, out, n, F, D);
}

/* dout [n, D] -> dx [n, D] (overwritten), parameter gradients added */
static void ffn_backward(encdec *m, const lin *f1l, const lin *f2l,
                         const float *x, const float *f1, const float *a1,
                         const float *dout, float *dx, int64_t n) {
  const int64_t D = m->c.d_model, F = m->c.d_ff;
  float *da = m->gf; /* [n, F] */
  train_linear_backward(a1, f2l->w, dout, da, GRAD(m, f2l->w), GRAD(m, f2l->b),
                        n, F, D);
  train_relu_backward(f1, da, da, n * F);
  train_linear_backward(x, f1l->w, da, dx, GRAD(m, f1l->w), GRAD(m, f1l->b), n,
                        D, F);
}

static void ln_fwd(const encdec *m, const norm *p, const float *x, float *y,
                   float *mean, float *rstd, int64_t n) {
  train_layernorm_forward(x, p->w, p->b, y, mean, rstd, n, m->c.d_model, 1e-5f);
}

static void ln_bwd(encdec *m, const norm *p, const float *x, const float *mean,
                   const float *rstd, const float *dy, float *dx, int64_t n) {
  train_layernorm_backward(x, p->w, mean, rstd, dy, dx, GRAD(m, p->w),
                           GRAD(m, p->b), n, m->c.d_model);
}

/* ---- forward ---------------------------------------------------------- */

static int check_batch(const encdec *m, int64_t b, const int32_t *src,
                       const int32_t *src_len, const int32_t *tgt_in, char *err,
                       size_t err_size) {
  const encdec_config *c = &m->c;
  if (b < 1 || b > c->batch)
    return train_fail(err, err_size, "encdec: batch %lld outside 1..%lld",
                      (long long)b, (long long)c->batch);
  for (int64_t i = 0; i < b; i++) {
    if (src_len[i] < 1 || src_len[i] > c->max_src)
      return train_fail(err, err_size,
                        "encdec: source length %d outside 1..%lld", src_len[i],
                        (long long)c->max_src);
    for (int64_t t = 0; t < c->max_src; t++)
      if (src[i * c->max_src + t] < 0 ||
          src[i * c->max_src + t] >= c->vocab_src)
        return train_fail(err, err_size, "encdec: source id %d outside 0..%lld",
                          src[i * c->max_src + t], (long long)c->vocab_src - 1);
    for (int64_t t = 0; tgt_in && t < c->max_tgt; t++)
      if (tgt_in[i * c->max_tgt + t] < 0 ||
          tgt_in[i * c->max_tgt + t] >= c->vocab_tgt)
        return train_fail(err, err_size, "encdec: target id %d outside 0..%lld",
                          tgt_in[i * c->max_tgt + t],
                          (long long)c->vocab_tgt - 1);
  }
  return 0;
}

/* encoder: src -> x[n_enc] [N, D] (the memory) */
static int encode(encdec *m, int64_t b, const int32_t *src, char *err,
                  size_t err_size) {
  const encdec_config *c = &m->c;
  const int64_t D = c->d_model, S = c->max_src, N = b * S;
  const float p = c->dropout;
  attn_params o;
  attn_opts(m, &o, 0, m->src_len);
  embed(m, m->emb_src, src, N, S, 0, m->x[0]);
  train_dropout_forward(m->x[0], m->x[0], m->kx, N * D, p, &m->drop_rng);
  for (int64_t l = 0; l < c->n_enc; l++) {
    enc_layer *e = &m->enc[l];
    if (attn_call(e->attn, &o, b, S, S, m->x[l], NULL, e->att, NULL, NULL, NULL,
                  err, err_size))
      return -1;
    train_dropout_forward(e->att, e->att, e->k1, N * D, p, &m->drop_rng);
    memcpy(e->r1, m->x[l], (size_t)(N * D) * sizeof(float));
    train_add_inplace(e->r1, e->att, N * D);
    ln_fwd(m, &e->ln1, e->r1, e->h1, e->m1, e->s1, N);
    ffn_forward(m, &e->ff1, &e->ff2, e->h1, e->f1, e->a1, e->f2, N);
    train_dropout_forward(e->f2, e->f2, e->k2, N * D, p, &m->drop_rng);
    memcpy(e->r2, e->h1, (size_t)(N * D) * sizeof(float));
    train_add_inplace(e->r2, e->f2, N * D);
    ln_fwd(m, &e->ln2, e->r2, m->x[l + 1], e->m2, e->s2, N);
  }
  return 0;
}

/* decoder with teacher forcing: tgt_in -> logits [M, V] */
static int decode_all(encdec *m, int64_t b, const int32_t *tgt_in, char *err,
                      size_t err_size) {
  const encdec_config *c = &m->c;
  const int64_t D = c->d_model, S = c->max_src, T = c->max_tgt, M = b * T;
  const float p = c->dropout;
  const float *mem = m->x[c->n_enc];
  attn_params os, ox;
  attn_opts(m, &os, 1, NULL);
  attn_opts(m, &ox, 0, m->src_len);
  embed(m, m->emb_tgt, tgt_in, M, T, 0, m->y[0]);
  train_dropout_forward(m->y[0], m->y[0], m->ky, M * D, p, &m->drop_rng);
  for (int64_t l = 0; l < c->n_dec; l++) {
    dec_layer *d = &m->dec[l];
    if (attn_call(d->self, &os, b, T, T, m->y[l], NULL, d->sa, NULL, NULL, NULL,
                  err, err_size))
      return -1;
    train_dropout_forward(d->sa, d->sa, d->k1, M * D, p, &m->drop_rng);
    memcpy(d->r1, m->y[l], (size_t)(M * D) * sizeof(float));
    train_add_inplace(d->r1, d->sa, M * D);
    ln_fwd(m, &d->ln1, d->r1, d->h1, d->m1, d->s1, M);
    if (attn_call(d->cross, &ox, b, T, S, d->h1, mem, d->ca, NULL, NULL, NULL,
                  err, err_size))
      return -1;
    train_dropout_forward(d->ca, d->ca, d->k2, M * D, p, &m->drop_rng);
    memcpy(d->r2, d->h1, (size_t)(M * D) * sizeof(float));
    train_add_inplace(d->r2, d->ca, M * D);
    ln_fwd(m, &d->ln2, d->r2, d->h2, d->m2, d->s2, M);
    ffn_forward(m, &d->ff1, &d->ff2, d->h2, d->f1, d->a1, d->f2, M);
    train_dropout_forward(d->f2, d->f2, d->k3, M * D, p, &m->drop_rng);
    memcpy(d->r3, d->h2, (size_t)(M * D) * sizeof(float));
    train_add_inplace(d->r3, d->f2, M * D);
    ln_fwd(m, &d->ln3, d->r3, m->y[l + 1], d->m3, d->s3, M);
  }
  train_linear_forward(m->y[c->n_dec], m->out.w, m->out.b, m->logits, M, D,
                       c->vocab_tgt);
  return 0;
}

static int forward(encdec *m, int64_t b, const int32_t *src,
                   const int32_t *src_len, const int32_t *tgt_in, char *err,
                   size_t err_size) {
  if (check_batch(m, b, src, src_len, tgt_in, err, err_size))
    return -1;
  memcpy(m->src_len, src_len, (size_t)b * sizeof *src_len);
  return encode(m, b, src, err, err_size) ||
                 decode_all(m, b, tgt_in, err, err_size)
             ? -1
             : 0;
}

/* ---- backward --------------------------------------------------------- */

/* dlogits [M, V] -> every parameter gradient (added) */
static int backward(encdec *m, int64_t b, const int32_t *src,
                    const int32_t *tgt_in, const float *dlogits, char *err,
                    size_t err_size) {
  const encdec_config *c = &m->c;
  const int64_t D = c->d_model, S = c->max_src, T = c->max_tgt;
  const int64_t M = b * T, N = b * S;
  const float p = c->dropout;
  const float *mem = m->x[c->n_enc];
  attn_params os, ox, oe;
  attn_opts(m, &os, 1, NULL);
  attn_opts(m, &ox, 0, m->src_len);
  attn_opts(m, &oe, 0, m->src_len);
  float *dy = m->ga, *t1 = m->gb, *t2 = m->gc;
  /* logits = y W^T + b */
  train_linear_backward(m->y[c->n_dec], m->out.w, dlogits, dy,
                        GRAD(m, m->out.w), GRAD(m, m->out.b), M, D,
                        c->vocab_tgt);
  memset(m->gmem, 0, (size_t)(N * D) * sizeof(float));
  for (int64_t l = c->n_dec - 1; l >= 0; l--) {
    dec_layer *d = &m->dec[l];
    /* y' = LN3(h2 + f2): dy -> t1 = d r3 */
    ln_bwd(m, &d->ln3, d->r3, d->m3, d->s3, dy, t1, M);
    /* dh2 = t1 + FFN'(dropout'(t1)) */
    train_dropout_backward(t1, d->k3, t2, M * D, p);
    ffn_backward(m, &d->ff1, &d->ff2, d->h2, d->f1, d->a1, t2, dy, M);
    train_add_inplace(dy, t1, M * D); /* dy = dh2 */
    /* h2 = LN2(h1 + ca) */
    ln_bwd(m, &d->ln2, d->r2, d->m2, d->s2, dy, t1, M); /* t1 = d r2 */
    train_dropout_backward(t1, d->k2, t2, M * D, p);    /* t2 = d ca */
    /* cross: dx -> dy (overwritten), d memory -> scratch, then added */
    if (attn_call(d->cross, &ox, b, T, S, d->h1, mem, d->ca, t2, dy, m->gtmp,
                  err, err_size))
      return -1;
    train_add_inplace(m->gmem, m->gtmp, N * D);
    train_add_inplace(dy, t1, M * D); /* dy = dh1 */
    /* h1 = LN1(y + sa) */
    ln_bwd(m, &d->ln1, d->r1, d->m1, d->s1, dy, t1, M); /* t1 = d r1 */
    train_dropout_backward(t1, d->k1, t2, M * D, p);    /* t2 = d sa */
    if (attn_call(d->self, &os, b, T, T, m->y[l], NULL, d->sa, t2, dy, NULL,
                  err, err_size))
      return -1;
    train_add_inplace(dy, t1, M * D); /* dy = d y[l] */
  }
  /* target embedding */
  train_dropout_backward(dy, m->ky, dy, M * D, p);
  train_embedding_backward(tgt_in, dy, sqrtf((float)D), GRAD(m, m->emb_tgt), M,
                           D);
  /* encoder, from d memory */
  float *dx = m->ga;
  memcpy(dx, m->gmem, (size_t)(N * D) * sizeof(float));
  for (int64_t l = c->n_enc - 1; l >= 0; l--) {
    enc_layer *e = &m->enc[l];
    ln_bwd(m, &e->ln2, e->r2, e->m2, e->s2, dx, t1, N); /* t1 = d r2 */
    train_dropout_backward(t1, e->k2, t2, N * D, p);
    ffn_backward(m, &e->ff1, &e->ff2, e->h1, e->f1, e->a1, t2, dx, N);
    train_add_inplace(dx, t1, N * D);                   /* dx = dh1 */
    ln_bwd(m, &e->ln1, e->r1, e->m1, e->s1, dx, t1, N); /* t1 = d r1 */
    train_dropout_backward(t1, e->k1, t2, N * D, p);
    if (attn_call(e->attn, &oe, b, S, S, m->x[l], NULL, e->att, t2, dx, NULL,
                  err, err_size))
      return -1;
    train_add_inplace(dx, t1, N * D);
  }
  train_dropout_backward(dx, m->kx, dx, N * D, p);
  train_embedding_backward(src, dx, sqrtf((float)D), GRAD(m, m->emb_src), N, D);
  return 0;
}

int encdec_train_step(encdec *m, int64_t b, const int32_t *src,
                      const int32_t *src_len, const int32_t *tgt_in,
                      const int32_t *tgt_out, double *loss, char *err,
                      size_t err_size) {
  const encdec_config *c = &m->c;
  const int64_t M = b * c->max_tgt;
  if (forward(m, b, src, src_len, tgt_in, err, err_size))
    return -1;
  for (int64_t i = 0; i < M; i++)
    if (tgt_out[i] >= c->vocab_tgt)
      return train_fail(err, err_size, "encdec: target id %d outside 0..%lld",
                        tgt_out[i], (long long)c->vocab_tgt - 1);
  /* dlogits over the logits, in place (the forward's logits are spent) */
  *loss = train_cross_entropy(m->logits, tgt_out, m->logits, M, c->vocab_tgt,
                              c->label_smoothing, NULL);
  return backward(m, b, src, tgt_in, m->logits, err, err_size);
}

int encdec_eval_loss(encdec *m, int64_t b, const int32_t *src,
                     const int32_t *src_len, const int32_t *tgt_in,
                     const int32_t *tgt_out, double *loss, float *logits,
                     char *err, size_t err_size) {
  const encdec_config *c = &m->c;
  const float p = c->dropout;
  m->c.dropout = 0;
  const int rc = forward(m, b, src, src_len, tgt_in, err, err_size);
  m->c.dropout = p;
  if (rc)
    return -1;
  const int64_t M = b * c->max_tgt;
  if (loss)
    *loss = train_cross_entropy(m->logits, tgt_out, NULL, M, c->vocab_tgt,
                                c->label_smoothing, NULL);
  if (logits)
    memcpy(logits, m->logits, (size_t)(M * c->vocab_tgt) * sizeof(float));
  return 0;
}

/* ---- greedy decoding through the KV caches ---------------------------- */

static int decode_step(encdec *m, int64_t b, int64_t t, char *err,
                       size_t err_size) {
  const encdec_config *c = &m->c;
  const int64_t D = c->d_model, S = c->max_src, H = c->heads;
  const float *mem = m->x[c->n_enc];
  attn_params os, ox;
  attn_opts(m, &os, 0, NULL);
  attn_opts(m, &ox, 0, m->src_len);
  float *x = m->y[0]; /* [b, D]: one token per sequence */
  embed(m, m->emb_tgt, m->tok, b, 1, t, x);
  for (int64_t l = 0; l < c->n_dec; l++) {
    dec_layer *d = &m->dec[l];
    attn_kv_cache kc;
    attn_kv_cache_init(&kc);
    kc.dtype = ATTN_DTYPE_F32;
    kc.num_seqs = b;
    kc.heads_kv = H;
    kc.head_dim = D / H;
    kc.capacity = c->max_tgt;
    kc.k = d->cache_k;
    kc.v = d->cache_v;
    kc.seq_lens = m->seq_lens;
    kc.error_message = err;
    kc.error_message_size = err_size;
    /* every layer appends at the same lengths: restore them per layer */
    for (int64_t i = 0; i < b; i++)
      m->seq_lens[i] = (int32_t)t;
    attn_layer_call lc;
    attn_layer_call_init(&lc);
    lc.batch = b;
    lc.seq_q = 1;
    lc.x = x;
    lc.out = d->sa;
    lc.options = &os;
    lc.error_message = err;
    lc.error_message_size = err_size;
    if (attn_layer_decode(d->self, NULL, &lc, &kc) != ATTN_OK)
      return -1;
    memcpy(d->r1, x, (size_t)(b * D) * sizeof(float));
    train_add_inplace(d->r1, d->sa, b * D);
    ln_fwd(m, &d->ln1, d->r1, d->h1, d->m1, d->s1, b);
    if (attn_call(d->cross, &ox, b, 1, S, d->h1, mem, d->ca, NULL, NULL, NULL,
                  err, err_size))
      return -1;
    memcpy(d->r2, d->h1, (size_t)(b * D) * sizeof(float));
    train_add_inplace(d->r2, d->ca, b * D);
    ln_fwd(m, &d->ln2, d->r2, d->h2, d->m2, d->s2, b);
    ffn_forward(m, &d->ff1, &d->ff2, d->h2, d->f1, d->a1, d->f2, b);
    memcpy(d->r3, d->h2, (size_t)(b * D) * sizeof(float));
    train_add_inplace(d->r3, d->f2, b * D);
    ln_fwd(m, &d->ln3, d->r3, x, d->m3, d->s3, b);
  }
  train_linear_forward(x, m->out.w, m->out.b, m->logits, b, D, c->vocab_tgt);
  return 0;
}

int encdec_greedy(encdec *m, int64_t b, const int32_t *src,
                  const int32_t *src_len, int32_t *out, float *logits,
                  char *err, size_t err_size) {
  const encdec_config *c = &m->c;
  const int64_t T = c->max_tgt, V = c->vocab_tgt;
  if (check_batch(m, b, src, src_len, NULL, err, err_size))
    return -1;
  memcpy(m->src_len, src_len, (size_t)b * sizeof *src_len);
  const float p = c->dropout;
  m->c.dropout = 0;
  int rc = encode(m, b, src, err, err_size);
  for (int64_t i = 0; i < b; i++)
    m->tok[i] = TASK_NUM_BOS;
  for (int64_t t = 0; t < T && !rc; t++) {
    rc = decode_step(m, b, t, err, err_size);
    for (int64_t i = 0; i < b && !rc; i++) {
      const float *l = m->logits + i * V;
      int32_t best = 0;
      for (int64_t j = 1; j < V; j++)
        best = l[j] > l[best] ? (int32_t)j : best;
      out[i * T + t] = best;
      m->tok[i] = best;
      if (logits)
        memcpy(logits + (i * T + t) * V, l, (size_t)V * sizeof(float));
    }
  }
  m->c.dropout = p;
  if (rc)
    return -1;
  for (int64_t i = 0; i < b; i++) {
    int done = 0;
    for (int64_t t = 0; t < T; t++) {
      if (done)
        out[i * T + t] = TASK_NUM_PAD;
      done |= out[i * T + t] == TASK_NUM_EOS;
    }
  }
  return 0;
}

/* ---- attention probes --------------------------------------------------- */

int encdec_probe(encdec *m, const int32_t *src, int64_t src_len,
                 const int32_t *tgt_in, int64_t tgt_len,
                 train_attn_probe **probes, int *n, char *err,
                 size_t err_size) {
  const encdec_config *c = &m->c;
  const int64_t S = c->max_src, T = c->max_tgt;
  *probes = NULL;
  *n = 0;
  if (src_len < 1 || src_len > S || tgt_len < 1 || tgt_len > T)
    return train_fail(err, err_size,
                      "encdec probe: lengths %lld, %lld outside "
                      "1..%lld, 1..%lld",
                      (long long)src_len, (long long)tgt_len, (long long)S,
                      (long long)T);
  int32_t *s = calloc((size_t)(S + T), sizeof *s);
  const int np = (int)(c->n_enc + 2 * c->n_dec);
  train_attn_probe *p = calloc((size_t)np, sizeof *p);
  if (!s || !p) {
    free(s);
    free(p);
    return train_fail(err, err_size, "encdec probe: out of memory");
  }
  memcpy(s, src, (size_t)src_len * sizeof *s);
  memcpy(s + S, tgt_in, (size_t)tgt_len * sizeof *s);
  const int32_t len = (int32_t)src_len;
  const float drop = c->dropout;
  m->c.dropout = 0;
  int rc = forward(m, 1, s, &len, s + S, err, err_size);
  m->c.dropout = drop;
  int k = 0;
  char name[32];
  for (int64_t l = 0; l < c->n_enc && !rc; l++) {
    snprintf(name, sizeof name, "enc.%lld.self", (long long)l);
    rc = train_attn_probe_run(m->enc[l].attn, c->heads, name, m->x[l], src_len,
                              NULL, 0, 0, &p[k++], err, err_size);
  }
  for (int64_t l = 0; l < c->n_dec && !rc; l++) {
    snprintf(name, sizeof name, "dec.%lld.self", (long long)l);
    rc = train_attn_probe_run(m->dec[l].self, c->heads, name, m->y[l], tgt_len,
                              NULL, 0, 1, &p[k++], err, err_size);
    snprintf(name, sizeof name, "dec.%lld.cross", (long long)l);
    if (!rc)
      rc = train_attn_probe_run(m->dec[l].cross, c->heads, name, m->dec[l].h1,
                                tgt_len, m->x[c->n_enc], src_len, 0, &p[k++],
                                err, err_size);
  }
  free(s);
  if (rc) {
    for (int i = 0; i < np; i++)
      train_attn_probe_free(&p[i]);
    free(p);
    return -1;
  }
  *probes = p;
  *n = np;
  return 0;
}

int encdec_load(const char *path, int64_t batch, int threads, encdec **out,
                char *err, size_t err_size) {
  *out = NULL;
  char kind[32];
  if (stwrite_read_meta(path, "model", kind, sizeof kind, err, err_size))
    return -1;
  if (strcmp(kind, "encdec") != 0)
    return train_fail(err, err_size, "%s: a %s checkpoint, not encdec", path,
                      kind);
  encdec_config c;
  encdec_config_default(&c);
  int64_t *f[] = {&c.vocab_src, &c.vocab_tgt, &c.max_src,
                  &c.max_tgt,   &c.d_model,   &c.heads,
                  &c.d_ff,      &c.n_enc,     &c.n_dec};
  const char *k[] = {"vocab_src", "vocab_tgt", "max_src", "max_tgt", "d_model",
                     "heads",     "d_ff",      "n_enc",   "n_dec"};
  for (int i = 0; i < 9; i++)
    if (train_meta_int(path, k[i], 1, 1 << 20, f[i], err, err_size))
      return -1;
  c.batch = batch;
  c.threads = threads;
  encdec *m;
  if (encdec_create(&c, 0, &m, err, err_size))
    return -1;
  if (train_params_load(m->ps.p, m->ps.n, path, err, err_size)) {
    encdec_free(m);
    return -1;
  }
  *out = m;
  return 0;
}
