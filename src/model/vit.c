/*
 * vit.c - the Vision Transformer of vit.h: forward, backward, prediction
 * and attention probes.
 *
 * Notation: b images in a call (b <= config.batch), NP patches of PD =
 * P*P pixels, Q = 1 + NP tokens per image, R = b Q token rows, D, F as in
 * vit.h, C classes.
 */
#include "vit.h"

#include "safetensors_write.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef train_lin vlin;   /* w [out, in], b [out] */
typedef train_norm vnorm; /* w, b [D] */

typedef struct vit_block {
  attn_layer *attn;
  vnorm ln1, ln2;
  vlin ff1, ff2;
  /* activations, R rows */
  float *h1, *att, *mid, *h2, *f1, *a1, *f2; /* [R, D] ([R, F]: f1, a1) */
  float *m1, *s1, *m2, *s2;                  /* [R]                     */
  uint8_t *k1, *k2;                          /* [R, D]                  */
} vit_block;

struct vit {
  vit_config c;
  int64_t np, pd, q; /* patches, pixels per patch, tokens per image */
  train_params ps;
  vlin patch; /* [D, PD], [D] */
  float *cls; /* [D]          */
  float *pos; /* [Q, D]       */
  vit_block *blk;
  vnorm lnf;
  vlin head;                /* [C, D], [C] */
  float *patches;           /* [b NP, PD]        */
  float *pe;                /* [b NP, D] patch embeddings          */
  float **x;                /* [L + 1] of [R, D] residual stream   */
  float *cls_rows;          /* [b, D] x[L] rows of the class token */
  float *z, *mf, *sf;       /* [b, D] LN(cls rows), [b] mean, rstd */
  float *logits;            /* [b, C]                              */
  float *ga, *gb, *gc, *gf; /* backward scratch [R, D] x3, [R, F] */
  train_rng drop_rng;
  char meta_val[10][24];
  const char *meta[20];
};

void vit_config_default(vit_config *c) {
  memset(c, 0, sizeof *c);
  c->patch = 2;
  c->d_model = 64;
  c->heads = 4;
  c->d_ff = 128;
  c->layers = 3;
  c->classes = 10;
  c->batch = 64;
  c->dropout = 0.1f;
  c->label_smoothing = 0.1f;
}

#define GRAD(m, p) train_params_grad_of(&(m)->ps, (p))

static int alloc_acts(vit *m) {
  const vit_config *c = &m->c;
  const int64_t D = c->d_model, F = c->d_ff, B = c->batch;
  const int64_t R = B * m->q;
  int ok = 1;
#define A(p, n) ok &= ((p) = calloc((size_t)(n) + 1, sizeof *(p))) != NULL
  for (int64_t l = 0; l < c->layers; l++) {
    vit_block *k = &m->blk[l];
    A(k->h1, R * D), A(k->att, R * D), A(k->mid, R * D), A(k->h2, R * D);
    A(k->f1, R * F), A(k->a1, R * F), A(k->f2, R * D);
    A(k->m1, R), A(k->s1, R), A(k->m2, R), A(k->s2, R);
    A(k->k1, R * D), A(k->k2, R * D);
  }
  A(m->x, c->layers + 1);
  if (!ok)
    return -1;
  for (int64_t l = 0; l <= c->layers; l++)
    A(m->x[l], R * D);
  A(m->patches, B * m->np * m->pd), A(m->pe, B * m->np * D);
  A(m->cls_rows, B * D), A(m->z, B * D), A(m->mf, B), A(m->sf, B);
  A(m->logits, B * c->classes);
  A(m->ga, R * D), A(m->gb, R * D), A(m->gc, R * D), A(m->gf, R * F);
#undef A
  return ok ? 0 : -1;
}

static void set_meta(vit *m) {
  const vit_config *c = &m->c;
  const char *keys[] = {"model", "patch",  "d_model", "heads",
                        "d_ff",  "layers", "classes"};
  const int64_t vals[] = {0,       c->patch,  c->d_model, c->heads,
                          c->d_ff, c->layers, c->classes};
  for (int i = 0; i < 7; i++) {
    if (i == 0)
      snprintf(m->meta_val[i], sizeof m->meta_val[i], "vit");
    else
      snprintf(m->meta_val[i], sizeof m->meta_val[i], "%lld",
               (long long)vals[i]);
    m->meta[2 * i] = keys[i];
    m->meta[2 * i + 1] = m->meta_val[i];
  }
}

const char *const *vit_meta(vit *m, int *n) {
  *n = 7;
  return m->meta;
}

int vit_create(const vit_config *c, uint64_t seed, vit **out, char *err,
               size_t err_size) {
  *out = NULL;
  if ((c->patch != 1 && c->patch != 2 && c->patch != 4 && c->patch != 8) ||
      c->d_model < 1 || c->heads < 1 || c->d_model % c->heads || c->d_ff < 1 ||
      c->layers < 1 || c->classes < 2 || c->batch < 1 || c->dropout < 0 ||
      c->dropout >= 1 || c->label_smoothing < 0 || c->label_smoothing >= 1)
    return train_fail(
        err, err_size,
        "vit: bad configuration (patch 1, 2, 4 or 8; D a multiple of "
        "H; every size >= 1; dropout and smoothing in [0, 1))");
  vit *m = calloc(1, sizeof *m);
  if (!m)
    return train_fail(err, err_size, "vit: out of memory");
  m->c = *c;
  m->np = (8 / c->patch) * (8 / c->patch);
  m->pd = c->patch * c->patch;
  m->q = 1 + m->np;
  m->drop_rng.s = seed ^ 0xd409;
  m->blk = calloc((size_t)c->layers, sizeof *m->blk);
  if (!m->blk) {
    vit_free(m);
    return train_fail(err, err_size, "vit: out of memory");
  }
  const int64_t D = c->d_model, F = c->d_ff;
  train_params *ps = &m->ps;
  int rc = train_reg_lin(ps, "", "patch", &m->patch, D, m->pd);
  rc |= train_params_own(ps, "cls", D, 1, 0, &m->cls);
  rc |= train_params_own(ps, "pos", m->q, D, 0, &m->pos);
  for (int64_t l = 0; l < c->layers && !rc; l++) {
    vit_block *k = &m->blk[l];
    char pre[64], ap[80];
    snprintf(pre, sizeof pre, "blocks.%lld.", (long long)l);
    attn_layer_config lc;
    attn_layer_config_init(&lc);
    lc.d_model = D;
    lc.heads_q = c->heads;
    lc.fused_qkv = 1;
    if (attn_layer_create(&lc, &k->attn, err, err_size) != ATTN_OK) {
      vit_free(m);
      return -1;
    }
    rc |= train_reg_norm(ps, pre, "ln1", &k->ln1, D);
    snprintf(ap, sizeof ap, "%sattn.", pre);
    rc |= train_params_layer(ps, ap, k->attn);
    rc |= train_reg_norm(ps, pre, "ln2", &k->ln2, D);
    rc |= train_reg_lin(ps, pre, "ff1", &k->ff1, F, D);
    rc |= train_reg_lin(ps, pre, "ff2", &k->ff2, D, F);
  }
  rc |= train_reg_norm(ps, "", "ln_f", &m->lnf, D);
  rc |= train_reg_lin(ps, "", "head", &m->head, c->classes, D);
  if (rc || train_params_alloc(ps) || alloc_acts(m)) {
    vit_free(m);
    return train_fail(err, err_size, "vit: out of memory");
  }
  train_rng r = {seed};
  train_init_lin(&m->patch, D, m->pd, &r);
  for (int64_t i = 0; i < D; i++)
    m->cls[i] = 0.02f * train_rng_normal(&r);
  for (int64_t i = 0; i < m->q * D; i++)
    m->pos[i] = 0.02f * train_rng_normal(&r);
  for (int64_t l = 0; l < c->layers; l++) {
    vit_block *k = &m->blk[l];
    attn_layer_init_weights(k->attn, train_rng_next(&r));
    train_init_norm(&k->ln1, D);
    train_init_norm(&k->ln2, D);
    train_init_lin(&k->ff1, F, D, &r);
    train_init_lin(&k->ff2, D, F, &r);
  }
  train_init_norm(&m->lnf, D);
  train_init_lin(&m->head, c->classes, D, &r);
  set_meta(m);
  *out = m;
  return 0;
}

void vit_free(vit *m) {
  if (!m)
    return;
  for (int64_t l = 0; m->blk && l < m->c.layers; l++) {
    vit_block *k = &m->blk[l];
    attn_layer_free(k->attn);
    void *p[] = {k->h1, k->att, k->mid, k->h2, k->f1, k->a1, k->f2,
                 k->m1, k->s1,  k->m2,  k->s2, k->k1, k->k2};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
      free(p[i]);
  }
  for (int64_t l = 0; m->x && l <= m->c.layers; l++)
    free(m->x[l]);
  void *p[] = {m->blk, m->x,      m->patches, m->pe, m->cls_rows, m->z, m->mf,
               m->sf,  m->logits, m->ga,      m->gb, m->gc,       m->gf};
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
    free(p[i]);
  train_params_free(&m->ps);
  free(m);
}

train_param *vit_params(vit *m, int *n) {
  *n = m->ps.n;
  return m->ps.p;
}

/* ---- forward ------------------------------------------------------------ */

static int attn_call(const vit *m, attn_layer *L, int64_t b, const float *x,
                     float *out, const float *dout, float *dx, char *err,
                     size_t err_size) {
  attn_params o;
  attn_params_init(&o);
  o.num_threads = m->c.threads;
  attn_layer_call c;
  attn_layer_call_init(&c);
  c.batch = b;
  c.seq_q = m->q;
  c.x = x;
  c.out = out;
  c.options = &o;
  c.error_message = err;
  c.error_message_size = err_size;
  if (!dout)
    return attn_layer_forward(L, NULL, &c) == ATTN_OK ? 0 : -1;
  c.dout = dout;
  c.dx = dx;
  return attn_layer_backward(L, NULL, &c) == ATTN_OK ? 0 : -1;
}

/* images [b, 64] -> patches [b NP, PD], row-major patches of row-major
 * pixels (PyTorch: x.view(b, G, P, G, P).permute(0, 1, 3, 2, 4)) */
static void to_patches(const vit *m, int64_t b, const float *images) {
  const int64_t P = m->c.patch, G = 8 / P;
  for (int64_t i = 0; i < b; i++)
    for (int64_t pr = 0; pr < G; pr++)
      for (int64_t pc = 0; pc < G; pc++) {
        float *dst = m->patches + ((i * G + pr) * G + pc) * m->pd;
        for (int64_t r = 0; r < P; r++)
          for (int64_t c = 0; c < P; c++)
            dst[r * P + c] = images[i * 64 + (pr * P + r) * 8 + pc * P + c];
      }
}

static int forward(vit *m, int64_t b, const float *images, float drop,
                   char *err, size_t err_size) {
  const vit_config *c = &m->c;
  const int64_t D = c->d_model, F = c->d_ff, Q = m->q, R = b * Q;
  if (b < 1 || b > c->batch)
    return train_fail(err, err_size, "vit: batch %lld outside 1..%lld",
                      (long long)b, (long long)c->batch);
  to_patches(m, b, images);
  train_linear_forward(m->patches, m->patch.w, m->patch.b, m->pe, b * m->np,
                       m->pd, D);
  float *x = m->x[0];
  for (int64_t i = 0; i < b; i++) {
    memcpy(x + i * Q * D, m->cls, (size_t)D * sizeof(float));
    memcpy(x + (i * Q + 1) * D, m->pe + i * m->np * D,
           (size_t)(m->np * D) * sizeof(float));
    train_add_inplace(x + i * Q * D, m->pos, Q * D);
  }
  for (int64_t l = 0; l < c->layers; l++) {
    vit_block *k = &m->blk[l];
    train_layernorm_forward(m->x[l], k->ln1.w, k->ln1.b, k->h1, k->m1, k->s1, R,
                            D, 1e-5f);
    if (attn_call(m, k->attn, b, k->h1, k->att, NULL, NULL, err, err_size))
      return -1;
    train_dropout_forward(k->att, k->att, k->k1, R * D, drop, &m->drop_rng);
    memcpy(k->mid, m->x[l], (size_t)(R * D) * sizeof(float));
    train_add_inplace(k->mid, k->att, R * D);
    train_layernorm_forward(k->mid, k->ln2.w, k->ln2.b, k->h2, k->m2, k->s2, R,
                            D, 1e-5f);
    train_linear_forward(k->h2, k->ff1.w, k->ff1.b, k->f1, R, D, F);
    train_gelu_forward(k->f1, k->a1, R * F);
    train_linear_forward(k->a1, k->ff2.w, k->ff2.b, k->f2, R, F, D);
    train_dropout_forward(k->f2, k->f2, k->k2, R * D, drop, &m->drop_rng);
    memcpy(m->x[l + 1], k->mid, (size_t)(R * D) * sizeof(float));
    train_add_inplace(m->x[l + 1], k->f2, R * D);
  }
  for (int64_t i = 0; i < b; i++)
    memcpy(m->cls_rows + i * D, m->x[c->layers] + i * Q * D,
           (size_t)D * sizeof(float));
  train_layernorm_forward(m->cls_rows, m->lnf.w, m->lnf.b, m->z, m->mf, m->sf,
                          b, D, 1e-5f);
  train_linear_forward(m->z, m->head.w, m->head.b, m->logits, b, D, c->classes);
  return 0;
}

static int backward(vit *m, int64_t b, float drop, char *err, size_t err_size) {
  const vit_config *c = &m->c;
  const int64_t D = c->d_model, F = c->d_ff, Q = m->q, R = b * Q;
  float *dx = m->ga, *t1 = m->gb, *t2 = m->gc;
  /* head and final LN: dlogits (in m->logits) -> dx rows of the class token */
  train_linear_backward(m->z, m->head.w, m->logits, t1, GRAD(m, m->head.w),
                        GRAD(m, m->head.b), b, D, c->classes);
  train_layernorm_backward(m->cls_rows, m->lnf.w, m->mf, m->sf, t1, t2,
                           GRAD(m, m->lnf.w), GRAD(m, m->lnf.b), b, D);
  memset(dx, 0, (size_t)(R * D) * sizeof(float));
  for (int64_t i = 0; i < b; i++)
    memcpy(dx + i * Q * D, t2 + i * D, (size_t)D * sizeof(float));
  for (int64_t l = c->layers - 1; l >= 0; l--) {
    vit_block *k = &m->blk[l];
    /* x' = mid + drop(FFN(LN2(mid))) */
    float *da = m->gf;
    train_dropout_backward(dx, k->k2, t1, R * D, drop);
    train_linear_backward(k->a1, k->ff2.w, t1, da, GRAD(m, k->ff2.w),
                          GRAD(m, k->ff2.b), R, F, D);
    train_gelu_backward(k->f1, da, da, R * F);
    train_linear_backward(k->h2, k->ff1.w, da, t2, GRAD(m, k->ff1.w),
                          GRAD(m, k->ff1.b), R, D, F);
    train_layernorm_backward(k->mid, k->ln2.w, k->m2, k->s2, t2, t1,
                             GRAD(m, k->ln2.w), GRAD(m, k->ln2.b), R, D);
    train_add_inplace(dx, t1, R * D); /* dx = d mid */
    /* mid = x + drop(Attn(LN1(x))) */
    train_dropout_backward(dx, k->k1, t1, R * D, drop);
    if (attn_call(m, k->attn, b, k->h1, k->att, t1, t2, err, err_size))
      return -1;
    train_layernorm_backward(m->x[l], k->ln1.w, k->m1, k->s1, t2, t1,
                             GRAD(m, k->ln1.w), GRAD(m, k->ln1.b), R, D);
    train_add_inplace(dx, t1, R * D); /* dx = d x[l] */
  }
  /* tokens: cls, positions, patch embedding */
  float *gcls = GRAD(m, m->cls), *gpos = GRAD(m, m->pos);
  for (int64_t i = 0; i < b; i++) {
    train_add_inplace(gcls, dx + i * Q * D, D);
    train_add_inplace(gpos, dx + i * Q * D, Q * D);
    memcpy(t1 + i * m->np * D, dx + (i * Q + 1) * D,
           (size_t)(m->np * D) * sizeof(float));
  }
  train_linear_backward(m->patches, m->patch.w, t1, NULL, GRAD(m, m->patch.w),
                        GRAD(m, m->patch.b), b * m->np, m->pd, D);
  return 0;
}

static int check_labels(const vit *m, int64_t b, const int32_t *labels,
                        char *err, size_t err_size) {
  for (int64_t i = 0; i < b; i++)
    if (labels[i] < 0 || labels[i] >= m->c.classes)
      return train_fail(err, err_size, "vit: label %d outside 0..%lld",
                        labels[i], (long long)m->c.classes - 1);
  return 0;
}

int vit_train_step(vit *m, int64_t b, const float *images,
                   const int32_t *labels, double *loss, char *err,
                   size_t err_size) {
  if (check_labels(m, b < 0 ? 0 : b, labels, err, err_size) ||
      forward(m, b, images, m->c.dropout, err, err_size))
    return -1;
  *loss = train_cross_entropy(m->logits, labels, m->logits, b, m->c.classes,
                              m->c.label_smoothing, NULL);
  return backward(m, b, m->c.dropout, err, err_size);
}

int vit_predict(vit *m, int64_t b, const float *images, float *logits,
                int32_t *pred, char *err, size_t err_size) {
  if (forward(m, b, images, 0.0f, err, err_size))
    return -1;
  const int64_t C = m->c.classes;
  for (int64_t i = 0; i < b; i++) {
    const float *l = m->logits + i * C;
    int32_t best = 0;
    for (int64_t j = 1; j < C; j++)
      best = l[j] > l[best] ? (int32_t)j : best;
    if (pred)
      pred[i] = best;
  }
  if (logits)
    memcpy(logits, m->logits, (size_t)(b * C) * sizeof(float));
  return 0;
}

int vit_probe(vit *m, const float *image, train_attn_probe **probes, int *n,
              char *err, size_t err_size) {
  *probes = NULL;
  *n = 0;
  const int np = (int)m->c.layers;
  train_attn_probe *p = calloc((size_t)np, sizeof *p);
  if (!p)
    return train_fail(err, err_size, "vit probe: out of memory");
  int rc = forward(m, 1, image, 0.0f, err, err_size);
  for (int l = 0; l < np && !rc; l++) {
    char name[32];
    snprintf(name, sizeof name, "block.%d", l);
    rc = train_attn_probe_run(m->blk[l].attn, m->c.heads, name, m->blk[l].h1,
                              m->q, NULL, 0, 0, &p[l], err, err_size);
  }
  if (rc) {
    for (int l = 0; l < np; l++)
      train_attn_probe_free(&p[l]);
    free(p);
    return -1;
  }
  *probes = p;
  *n = np;
  return 0;
}

int vit_load(const char *path, int64_t batch, int threads, vit **out, char *err,
             size_t err_size) {
  *out = NULL;
  char kind[32];
  if (stwrite_read_meta(path, "model", kind, sizeof kind, err, err_size))
    return -1;
  if (strcmp(kind, "vit") != 0)
    return train_fail(err, err_size, "%s: a %s checkpoint, not vit", path,
                      kind);
  vit_config c;
  vit_config_default(&c);
  int64_t *f[] = {&c.patch, &c.d_model, &c.heads,
                  &c.d_ff,  &c.layers,  &c.classes};
  const char *k[] = {"patch", "d_model", "heads", "d_ff", "layers", "classes"};
  for (int i = 0; i < 6; i++)
    if (train_meta_int(path, k[i], 1, 1 << 20, f[i], err, err_size))
      return -1;
  c.batch = batch;
  c.threads = threads;
  c.dropout = 0;
  vit *m;
  if (vit_create(&c, 0, &m, err, err_size))
    return -1;
  if (train_params_load(m->ps.p, m->ps.n, path, err, err_size)) {
    vit_free(m);
    return -1;
  }
  *out = m;
  return 0;
}
