/*
 * train_ops.c - the trainers' ops (train_ops.h): linear, embedding, layer
 * norm, GELU/ReLU, residual, dropout, cross-entropy, AdamW, clipping, the
 * learning-rate schedule and the attention probe. Shapes in train_ops.h.
 */
#include "train_ops.h"

#include "safetensors_write.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- random numbers ---------------------------------------------------- */

uint64_t train_hash64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t train_rng_next(train_rng *r) {
  r->s += 0x9e3779b97f4a7c15ULL;
  return train_hash64(r->s);
}

float train_rng_uniform(train_rng *r) {
  return (float)(train_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

float train_rng_normal(train_rng *r) {
  const double u1 =
      ((double)(train_rng_next(r) >> 11) + 0.5) / 9007199254740992.0;
  const double u2 = (double)(train_rng_next(r) >> 11) / 9007199254740992.0;
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

int64_t train_rng_below(train_rng *r, int64_t n) {
  return (int64_t)(train_rng_next(r) % (uint64_t)n);
}

void train_set_blas_threads(int n) {
  if (n > 0)
    openblas_set_num_threads(n);
}

/* ---- linear ------------------------------------------------------------ */

void train_linear_forward(const float *x, const float *w, const float *b,
                          float *y, int64_t n, int64_t in, int64_t out) {
  /* y [n, out] = x [n, in] W^T [in, out] */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)out,
              (int)in, 1.0f, x, (int)in, w, (int)in, 0.0f, y, (int)out);
  if (b)
    for (int64_t i = 0; i < n; i++)
      for (int64_t o = 0; o < out; o++)
        y[i * out + o] += b[o];
}

void train_linear_backward(const float *x, const float *w, const float *dy,
                           float *dx, float *dw, float *db, int64_t n,
                           int64_t in, int64_t out) {
  /* dx [n, in] = dy [n, out] W [out, in] */
  if (dx)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)in,
                (int)out, 1.0f, dy, (int)out, w, (int)in, 0.0f, dx, (int)in);
  /* dW [out, in] += dy^T [out, n] x [n, in] */
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)out, (int)in,
              (int)n, 1.0f, dy, (int)out, x, (int)in, 1.0f, dw, (int)in);
  if (db)
    for (int64_t i = 0; i < n; i++)
      for (int64_t o = 0; o < out; o++)
        db[o] += dy[i * out + o];
}

/* ---- embedding --------------------------------------------------------- */

void train_embedding_forward(const int32_t *ids, const float *table,
                             float scale, float *y, int64_t n, int64_t d) {
  for (int64_t i = 0; i < n; i++) {
    const float *row = table + (int64_t)ids[i] * d;
    for (int64_t c = 0; c < d; c++)
      y[i * d + c] = scale * row[c];
  }
}

void train_embedding_backward(const int32_t *ids, const float *dy, float scale,
                              float *dtable, int64_t n, int64_t d) {
  for (int64_t i = 0; i < n; i++) {
    float *row = dtable + (int64_t)ids[i] * d;
    for (int64_t c = 0; c < d; c++)
      row[c] += scale * dy[i * d + c];
  }
}

/* ---- layer norm -------------------------------------------------------- */

void train_layernorm_forward(const float *x, const float *g, const float *b,
                             float *y, float *mean, float *rstd, int64_t n,
                             int64_t d, float eps) {
  for (int64_t i = 0; i < n; i++) {
    const float *xr = x + i * d;
    double s = 0;
    for (int64_t c = 0; c < d; c++)
      s += xr[c];
    const double mu = s / (double)d;
    double ss = 0;
    for (int64_t c = 0; c < d; c++)
      ss += (xr[c] - mu) * (xr[c] - mu);
    const float rs = (float)(1.0 / sqrt(ss / (double)d + eps));
    const float m = (float)mu;
    for (int64_t c = 0; c < d; c++)
      y[i * d + c] = (xr[c] - m) * rs * g[c] + b[c];
    mean[i] = m;
    rstd[i] = rs;
  }
}

void train_layernorm_backward(const float *x, const float *g, const float *mean,
                              const float *rstd, const float *dy, float *dx,
                              float *dg, float *db, int64_t n, int64_t d) {
  /* xhat = (x - mean) rstd, dxhat = dy g,
   * dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)) */
  for (int64_t i = 0; i < n; i++) {
    const float *xr = x + i * d, *dyr = dy + i * d;
    double s1 = 0, s2 = 0;
    for (int64_t c = 0; c < d; c++) {
      const float xh = (xr[c] - mean[i]) * rstd[i];
      const float dxh = dyr[c] * g[c];
      s1 += dxh;
      s2 += (double)dxh * xh;
      dg[c] += dyr[c] * xh;
      db[c] += dyr[c];
    }
    const float m1 = (float)(s1 / (double)d), m2 = (float)(s2 / (double)d);
    for (int64_t c = 0; c < d; c++) {
      const float xh = (xr[c] - mean[i]) * rstd[i];
      dx[i * d + c] = rstd[i] * (dyr[c] * g[c] - m1 - xh * m2);
    }
  }
}

/* ---- activations ------------------------------------------------------- */

void train_gelu_forward(const float *x, float *y, int64_t count) {
  for (int64_t i = 0; i < count; i++)
    y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

void train_gelu_backward(const float *x, const float *dy, float *dx,
                         int64_t count) {
  /* d/dx x Phi(x) = Phi(x) + x phi(x) */
  for (int64_t i = 0; i < count; i++) {
    const float cdf = 0.5f * (1.0f + erff(x[i] * 0.70710678118654752f));
    const float pdf = 0.39894228040143268f * expf(-0.5f * x[i] * x[i]);
    dx[i] = dy[i] * (cdf + x[i] * pdf);
  }
}

void train_relu_forward(const float *x, float *y, int64_t count) {
  for (int64_t i = 0; i < count; i++)
    y[i] = x[i] > 0 ? x[i] : 0.0f;
}

void train_relu_backward(const float *x, const float *dy, float *dx,
                         int64_t count) {
  for (int64_t i = 0; i < count; i++)
    dx[i] = x[i] > 0 ? dy[i] : 0.0f;
}

void train_add_inplace(float *y, const float *x, int64_t count) {
  for (int64_t i = 0; i < count; i++)
    y[i] += x[i];
}

/* ---- dropout ----------------------------------------------------------- */

void train_dropout_forward(const float *x, float *y, uint8_t *keep,
                           int64_t count, float p, train_rng *rng) {
  if (p <= 0.0f) {
    if (y != x)
      memmove(y, x, (size_t)count * sizeof *y);
    memset(keep, 1, (size_t)count);
    return;
  }
  const float s = 1.0f / (1.0f - p);
  for (int64_t i = 0; i < count; i++) {
    keep[i] = train_rng_uniform(rng) >= p;
    y[i] = keep[i] ? x[i] * s : 0.0f;
  }
}

void train_dropout_backward(const float *dy, const uint8_t *keep, float *dx,
                            int64_t count, float p) {
  const float s = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
  for (int64_t i = 0; i < count; i++)
    dx[i] = keep[i] ? dy[i] * s : 0.0f;
}

/* ---- cross-entropy ----------------------------------------------------- */

double train_cross_entropy(const float *logits, const int32_t *targets,
                           float *dlogits, int64_t n, int64_t v, float eps,
                           int64_t *counted) {
  int64_t cnt = 0;
  for (int64_t i = 0; i < n; i++)
    cnt += targets[i] >= 0;
  double total = 0;
  for (int64_t i = 0; i < n; i++) {
    const float *l = logits + i * v;
    float *dl = dlogits ? dlogits + i * v : NULL;
    if (targets[i] < 0) {
      if (dl)
        memset(dl, 0, (size_t)v * sizeof *dl);
      continue;
    }
    double mx = l[0];
    for (int64_t j = 1; j < v; j++)
      mx = l[j] > mx ? l[j] : mx;
    double se = 0, sl = 0;
    for (int64_t j = 0; j < v; j++) {
      se += exp(l[j] - mx);
      sl += l[j];
    }
    const double lse = mx + log(se);
    const int64_t t = targets[i];
    total += -(1.0 - eps) * (l[t] - lse) - eps / (double)v * (sl - v * lse);
    if (dl)
      for (int64_t j = 0; j < v; j++) {
        const double q = (j == t ? 1.0 - eps : 0.0) + eps / (double)v;
        dl[j] = (float)((exp(l[j] - lse) - q) / (double)cnt);
      }
  }
  if (counted)
    *counted = cnt;
  return cnt ? total / (double)cnt : 0.0;
}

/* ---- AdamW, clipping, schedule ----------------------------------------- */

void train_adamw_step(const train_adamw *o, int64_t t, float *p, const float *g,
                      float *m, float *v, int64_t count, int decay) {
  /* torch.optim.AdamW, foreach=False: the scalars in double, as Python
   * computes them, then rounded to float for the elementwise ops */
  const float keep = (float)(1.0 - o->lr * o->weight_decay);
  const double bc1 = 1.0 - pow(o->beta1, (double)t);
  const double bc2 = 1.0 - pow(o->beta2, (double)t);
  const float step = (float)(o->lr / bc1);
  const float bc2s = (float)sqrt(bc2);
  const float w1 = (float)(1.0 - o->beta1), w2 = (float)(1.0 - o->beta2);
  const float b2 = (float)o->beta2, eps = (float)o->eps;
  for (int64_t i = 0; i < count; i++) {
    if (decay)
      p[i] *= keep;
    m[i] += w1 * (g[i] - m[i]);
    v[i] = v[i] * b2 + w2 * g[i] * g[i];
    const float den = sqrtf(v[i]) / bc2s + eps;
    p[i] += -step * (m[i] / den);
  }
}

double train_clip_grad_norm(train_param *params, int n, double max_norm) {
  double ss = 0;
  for (int i = 0; i < n; i++)
    for (int64_t j = 0; j < params[i].count; j++)
      ss += (double)params[i].grad[j] * params[i].grad[j];
  const double norm = sqrt(ss);
  if (max_norm > 0 && norm > max_norm) {
    const float c = (float)(max_norm / (norm + 1e-6));
    for (int i = 0; i < n; i++)
      for (int64_t j = 0; j < params[i].count; j++)
        params[i].grad[j] *= c;
  }
  return norm;
}

double train_lr_at(int64_t t, int64_t warmup, int64_t total, double peak,
                   double min_ratio) {
  if (warmup > 0 && t <= warmup)
    return peak * (double)t / (double)warmup;
  if (total <= warmup)
    return peak;
  double f = (double)(t - warmup) / (double)(total - warmup);
  f = f > 1 ? 1 : f;
  const double c = 0.5 * (1.0 + cos(3.14159265358979323846 * f));
  return peak * (min_ratio + (1.0 - min_ratio) * c);
}

/* ---- attention probe --------------------------------------------------- */

/* rows [r0, r0 + rows) of a named weight (and its bias) applied to x */
static int probe_project(attn_layer *L, const char *w, const char *b,
                         int64_t r0, int64_t rows, const float *x, int64_t n,
                         float *y) {
  attn_layer_param pw, pb;
  if (attn_layer_param_find(L, w, &pw) != ATTN_OK)
    return -1;
  const int64_t in = pw.shape[1];
  const float *bias = NULL;
  if (b && attn_layer_param_find(L, b, &pb) == ATTN_OK)
    bias = pb.data + r0;
  train_linear_forward(x, pw.data + r0 * in, bias, y, n, in, rows);
  return 0;
}

int train_attn_probe_run(attn_layer *layer, int64_t heads, const char *name,
                         const float *x, int64_t seq_q, const float *y,
                         int64_t seq_k, int causal, train_attn_probe *out,
                         char *err, size_t err_size) {
  memset(out, 0, sizeof *out);
  attn_layer_param po;
  if (attn_layer_param_find(layer, "out_proj.weight", &po) != ATTN_OK)
    return train_fail(err, err_size, "probe %s: not an attention layer", name);
  const int64_t hd = po.shape[1], d = hd / heads;
  if (!y) {
    y = x;
    seq_k = seq_q;
  }
  float *q = malloc((size_t)(seq_q * hd) * sizeof *q);
  float *k = malloc((size_t)(seq_k * hd) * sizeof *k);
  float *v = malloc((size_t)(seq_k * hd) * sizeof *v);
  float *o = malloc((size_t)(seq_q * hd) * sizeof *o);
  float *lse = malloc((size_t)(heads * seq_q) * sizeof *lse);
  int rc = -1;
  if (!q || !k || !v || !o || !lse) {
    train_fail(err, err_size, "probe %s: out of memory", name);
    goto done;
  }
  attn_layer_param tmp;
  if (attn_layer_param_find(layer, "in_proj_weight", &tmp) == ATTN_OK) {
    rc = probe_project(layer, "in_proj_weight", "in_proj_bias", 0, hd, x, seq_q,
                       q);
    rc |= probe_project(layer, "in_proj_weight", "in_proj_bias", hd, hd, y,
                        seq_k, k);
    rc |= probe_project(layer, "in_proj_weight", "in_proj_bias", 2 * hd, hd, y,
                        seq_k, v);
  } else {
    rc = probe_project(layer, "q_proj_weight", "q_proj_bias", 0, hd, x, seq_q,
                       q);
    rc |= probe_project(layer, "k_proj_weight", "k_proj_bias", 0, hd, y, seq_k,
                        k);
    rc |= probe_project(layer, "v_proj_weight", "v_proj_bias", 0, hd, y, seq_k,
                        v);
  }
  if (rc) {
    train_fail(err, err_size, "probe %s: projection weights missing", name);
    goto done;
  }
  attn_params p;
  char msg[256] = "";
  attn_params_init(&p);
  p.q = attn_tensor_bshd(q, ATTN_DTYPE_F32, 1, seq_q, heads, d);
  p.k = attn_tensor_bshd(k, ATTN_DTYPE_F32, 1, seq_k, heads, d);
  p.v = attn_tensor_bshd(v, ATTN_DTYPE_F32, 1, seq_k, heads, d);
  p.o = attn_tensor_bshd(o, ATTN_DTYPE_F32, 1, seq_q, heads, d);
  p.lse = lse;
  p.causal = causal ? ATTN_CAUSAL_TOP_LEFT : ATTN_CAUSAL_NONE;
  p.error_message = msg;
  p.error_message_size = sizeof msg;
  if (attn_forward(NULL, &p) != ATTN_OK) {
    rc = train_fail(err, err_size, "probe %s: %s", name, msg);
    goto done;
  }
  snprintf(out->name, sizeof out->name, "%s", name);
  out->seq_q = seq_q;
  out->seq_k = seq_k;
  out->heads = heads;
  out->head_dim = d;
  out->scale = 1.0f / sqrtf((float)d);
  out->causal = causal;
  out->q = q;
  out->k = k;
  out->lse = lse;
  q = k = lse = NULL;
  rc = 0;
done:
  free(q);
  free(k);
  free(v);
  free(o);
  free(lse);
  return rc;
}

void train_attn_probe_free(train_attn_probe *p) {
  if (!p)
    return;
  free(p->q);
  free(p->k);
  free(p->lse);
  memset(p, 0, sizeof *p);
}

/* ---- the optimiser over a parameter list -------------------------------- */

int train_optim_init(train_optim *o, const train_adamw *hp,
                     const train_param *params, int n) {
  memset(o, 0, sizeof *o);
  o->hp = *hp;
  for (int i = 0; i < n; i++)
    o->total += params[i].count;
  o->m = calloc((size_t)o->total + 1, sizeof *o->m);
  o->v = calloc((size_t)o->total + 1, sizeof *o->v);
  if (!o->m || !o->v) {
    train_optim_free(o);
    return -1;
  }
  return 0;
}

void train_optim_step(train_optim *o, train_param *params, int n, double lr) {
  train_adamw hp = o->hp;
  hp.lr = lr;
  o->t++;
  int64_t at = 0;
  for (int i = 0; i < n; i++) {
    train_adamw_step(&hp, o->t, params[i].data, params[i].grad, o->m + at,
                     o->v + at, params[i].count, params[i].decay);
    at += params[i].count;
  }
}

void train_optim_free(train_optim *o) {
  free(o->m);
  free(o->v);
  memset(o, 0, sizeof *o);
}

void train_params_zero_grad(train_param *params, int n) {
  for (int i = 0; i < n; i++)
    memset(params[i].grad, 0, (size_t)params[i].count * sizeof(float));
}

/* ---- parameter sets ------------------------------------------------------ */

static train_param *params_push(train_params *ps, const char *name) {
  if (strlen(name) >= sizeof ps->p[0].name)
    return NULL;
  if (ps->n == ps->cap) {
    const int cap = ps->cap ? 2 * ps->cap : 64;
    train_param *p = realloc(ps->p, (size_t)cap * sizeof *p);
    if (!p)
      return NULL;
    ps->p = p;
    float ***s = realloc(ps->slots, (size_t)cap * sizeof *s);
    if (!s)
      return NULL;
    ps->slots = s;
    ps->cap = cap;
  }
  train_param *t = &ps->p[ps->n];
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "%s", name);
  ps->slots[ps->n] = NULL;
  ps->n++;
  return t;
}

int train_params_own(train_params *ps, const char *name, int64_t rows,
                     int64_t cols, int decay, float **slot) {
  train_param *t = params_push(ps, name);
  if (!t)
    return -1;
  t->ndim = cols > 1 ? 2 : 1;
  t->shape[0] = rows;
  t->shape[1] = cols;
  t->count = rows * cols;
  t->decay = decay;
  ps->slots[ps->n - 1] = slot; /* data and grad: train_params_alloc */
  ps->own += t->count;
  return 0;
}

int train_fail(char *err, size_t size, const char *fmt, ...) {
  if (err && size) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, size, fmt, ap);
    va_end(ap);
  }
  return -1;
}

int train_reg_lin(train_params *ps, const char *pre, const char *nm,
                  train_lin *l, int64_t out, int64_t in) {
  char name[96];
  snprintf(name, sizeof name, "%s%s.weight", pre, nm);
  if (train_params_own(ps, name, out, in, 1, &l->w))
    return -1;
  snprintf(name, sizeof name, "%s%s.bias", pre, nm);
  return train_params_own(ps, name, out, 1, 0, &l->b);
}

int train_reg_norm(train_params *ps, const char *pre, const char *nm,
                   train_norm *n, int64_t d) {
  char name[96];
  snprintf(name, sizeof name, "%s%s.weight", pre, nm);
  if (train_params_own(ps, name, d, 1, 0, &n->w))
    return -1;
  snprintf(name, sizeof name, "%s%s.bias", pre, nm);
  return train_params_own(ps, name, d, 1, 0, &n->b);
}

void train_init_lin(train_lin *l, int64_t out, int64_t in, train_rng *r) {
  const float a = 1.0f / sqrtf((float)in);
  for (int64_t i = 0; i < out * in; i++)
    l->w[i] = a * (2.0f * train_rng_uniform(r) - 1.0f);
  for (int64_t i = 0; i < out; i++)
    l->b[i] = a * (2.0f * train_rng_uniform(r) - 1.0f);
}

void train_init_norm(train_norm *n, int64_t d) {
  for (int64_t i = 0; i < d; i++) {
    n->w[i] = 1.0f;
    n->b[i] = 0.0f;
  }
}

int train_params_layer(train_params *ps, const char *prefix, attn_layer *L) {
  const int n = attn_layer_num_params(L);
  for (int i = 0; i < n; i++) {
    attn_layer_param lp;
    char name[128];
    if (attn_layer_param_get(L, i, &lp) != ATTN_OK)
      return -1;
    snprintf(name, sizeof name, "%s%s", prefix, lp.name);
    train_param *t = params_push(ps, name);
    if (!t)
      return -1;
    t->ndim = lp.ndim;
    t->shape[0] = lp.shape[0];
    t->shape[1] = lp.shape[1];
    t->count = lp.count;
    t->data = lp.data;
    t->grad = lp.grad;
    t->decay = lp.ndim == 2;
  }
  return 0;
}

int train_params_alloc(train_params *ps) {
  ps->data = calloc((size_t)ps->own + 1, sizeof(float));
  ps->grad = calloc((size_t)ps->own + 1, sizeof(float));
  if (!ps->data || !ps->grad)
    return -1;
  int64_t at = 0;
  for (int i = 0; i < ps->n; i++) {
    if (!ps->slots[i])
      continue;
    ps->p[i].data = ps->data + at;
    ps->p[i].grad = ps->grad + at;
    *ps->slots[i] = ps->p[i].data;
    at += ps->p[i].count;
  }
  return 0;
}

void train_params_free(train_params *ps) {
  free(ps->p);
  free(ps->slots);
  free(ps->data);
  free(ps->grad);
  memset(ps, 0, sizeof *ps);
}

float *train_params_grad_of(const train_params *ps, const float *data) {
  return ps->grad + (data - ps->data);
}

/* ---- checkpoints -----------------------------------------------------------
 */

int train_params_load(train_param *params, int n, const char *path, char *err,
                      size_t err_size) {
  for (int i = 0; i < n; i++)
    if (stwrite_read_f32(path, params[i].name, params[i].data, params[i].count,
                         err, err_size))
      return -1;
  return 0;
}

int train_meta_int(const char *path, const char *key, int64_t lo, int64_t hi,
                   int64_t *out, char *err, size_t err_size) {
  char v[32], *end;
  if (stwrite_read_meta(path, key, v, sizeof v, err, err_size))
    return -1;
  errno = 0;
  const long long x = strtoll(v, &end, 10);
  if (errno || end == v || *end || x < lo || x > hi)
    return train_fail(err, err_size,
                      "%s: metadata %s = '%s' is not an "
                      "integer in %lld..%lld",
                      path, key, v, (long long)lo, (long long)hi);
  *out = x;
  return 0;
}
