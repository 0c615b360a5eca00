/*
 * layer.c - the layer object: its config (defaults, checks), its named
 * parameter tensors in one flat buffer (and their gradients in another),
 * PyTorch's initialisation, and the message helper.
 */
#include "layer_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

attn_status layer_fail(char *buf, size_t size, attn_status st, const char *fmt,
                       ...) {
  if (buf && size > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, size, fmt, ap);
    va_end(ap);
  }
  return st;
}

/* The sizes of attn_layer_config this library knows: today's only. */
#define CONFIG_SIZE_0_3 sizeof(attn_layer_config)

static void config_defaults(attn_layer_config *c) {
  memset(c, 0, sizeof *c);
  c->bias_q = c->bias_k = c->bias_v = c->bias_out = 1;
  c->position = ATTN_LAYER_POS_NONE;
  c->max_positions = 2048;
  c->t5_buckets = 32;
  c->t5_max_distance = 128;
  c->t5_bidirectional = 1;
}

ATTN_API void attn_layer_config_init_sized(attn_layer_config *c, size_t size) {
  attn_layer_config d;
  if (!c || size != CONFIG_SIZE_0_3)
    return;
  config_defaults(&d);
  memcpy(c, &d, size);
}

/* --- checks of a config ------------------------------------------------- */

#define MAX_WIDTH ((int64_t)1 << 30) /* each GEMM dimension fits an int */

static attn_status check_width(const char *what, int64_t v, char *err,
                               size_t n) {
  if (v < 1 || v > MAX_WIDTH)
    return layer_fail(err, n, ATTN_ERR_INVALID_SHAPE,
                      "%s (%lld) must be in 1..2^30", what, (long long)v);
  return ATTN_OK;
}

/* Fills the 0 defaults of c and checks it. */
static attn_status config_resolve(attn_layer_config *c, char *err, size_t n) {
  attn_status st;
  if ((st = check_width("d_model", c->d_model, err, n)) != ATTN_OK)
    return st;
  if (c->heads_q < 1 || c->heads_q > 65536)
    return layer_fail(err, n, ATTN_ERR_INVALID_SHAPE,
                      "heads_q (%lld) must be in 1..65536",
                      (long long)c->heads_q);
  if (c->heads_kv == 0)
    c->heads_kv = c->heads_q;
  if (c->heads_kv < 1 || c->heads_kv > c->heads_q)
    return layer_fail(err, n, ATTN_ERR_INVALID_SHAPE,
                      "heads_kv (%lld) must be in 1..heads_q (%lld)",
                      (long long)c->heads_kv, (long long)c->heads_q);
  if (c->heads_q % c->heads_kv != 0)
    return layer_fail(err, n, ATTN_ERR_HEAD_RATIO,
                      "heads_q (%lld) must be a multiple of heads_kv (%lld)",
                      (long long)c->heads_q, (long long)c->heads_kv);
  if (c->head_dim == 0) {
    if (c->d_model % c->heads_q != 0)
      return layer_fail(err, n, ATTN_ERR_INVALID_SHAPE,
                        "head_dim = 0 needs d_model (%lld) divisible by "
                        "heads_q (%lld); set head_dim",
                        (long long)c->d_model, (long long)c->heads_q);
    c->head_dim = c->d_model / c->heads_q;
  }
  if (c->head_dim_v == 0)
    c->head_dim_v = c->head_dim;
  if (c->head_dim < 1 || c->head_dim > 256 || c->head_dim_v < 1 ||
      c->head_dim_v > 256)
    return layer_fail(err, n, ATTN_ERR_HEAD_DIM,
                      "head_dim (%lld) and head_dim_v (%lld) must be in 1..256",
                      (long long)c->head_dim, (long long)c->head_dim_v);
  if (c->d_out == 0)
    c->d_out = c->d_model;
  if ((st = check_width("d_out", c->d_out, err, n)) != ATTN_OK)
    return st;
  if (c->cross != 0 && c->cross != 1)
    return layer_fail(err, n, ATTN_ERR_INVALID_ARGUMENT,
                      "cross (%d) must be 0 or 1", c->cross);
  if (!c->cross && (c->kdim != 0 || c->vdim != 0))
    return layer_fail(err, n, ATTN_ERR_INVALID_ARGUMENT,
                      "kdim (%lld) and vdim (%lld) are for cross-attention "
                      "(cross = 1); self-attention reads K and V from x",
                      (long long)c->kdim, (long long)c->vdim);
  if (c->kdim == 0)
    c->kdim = c->d_model;
  if (c->vdim == 0)
    c->vdim = c->kdim;
  if ((st = check_width("kdim", c->kdim, err, n)) != ATTN_OK)
    return st;
  if ((st = check_width("vdim", c->vdim, err, n)) != ATTN_OK)
    return st;
  if (c->fused_qkv && c->cross)
    return layer_fail(err, n, ATTN_ERR_INVALID_ARGUMENT,
                      "fused_qkv needs self-attention: cross-attention "
                      "projects different inputs (use separate weights)");
  if (c->fused_qkv && (!c->bias_q != !c->bias_k || !c->bias_q != !c->bias_v))
    return layer_fail(err, n, ATTN_ERR_INVALID_ARGUMENT,
                      "fused_qkv has one in_proj_bias: bias_q (%d), bias_k "
                      "(%d) and bias_v (%d) must agree",
                      c->bias_q, c->bias_k, c->bias_v);
  if ((int)c->position < 0 || (int)c->position > (int)ATTN_LAYER_POS_T5)
    return layer_fail(err, n, ATTN_ERR_INVALID_ARGUMENT,
                      "position (%d) is not an attn_layer_position",
                      (int)c->position);
  if (c->position == ATTN_LAYER_POS_LEARNED &&
      (c->max_positions < 1 || c->max_positions > ((int64_t)1 << 24)))
    return layer_fail(err, n, ATTN_ERR_INVALID_SHAPE,
                      "max_positions (%lld) must be in 1..2^24",
                      (long long)c->max_positions);
  if (c->position == ATTN_LAYER_POS_SINUSOIDAL &&
      (c->sinusoidal_base < 0 || !isfinite(c->sinusoidal_base) ||
       (c->sinusoidal_base > 0 && c->sinusoidal_base <= 1)))
    return layer_fail(err, n, ATTN_ERR_INVALID_ARGUMENT,
                      "sinusoidal_base (%g) must be 0 (10000) or > 1",
                      c->sinusoidal_base);
  if (c->position == ATTN_LAYER_POS_T5 &&
      (c->t5_buckets < 1 || c->t5_buckets > 65536 || c->t5_max_distance < 1))
    return layer_fail(err, n, ATTN_ERR_INVALID_ARGUMENT,
                      "t5_buckets (%lld) must be in 1..65536 and "
                      "t5_max_distance (%lld) >= 1",
                      (long long)c->t5_buckets, (long long)c->t5_max_distance);
  /* the core refuses it on every call (half the buckets each direction) */
  if (c->position == ATTN_LAYER_POS_T5 && c->t5_bidirectional &&
      c->t5_buckets < 2)
    return layer_fail(err, n, ATTN_ERR_INVALID_ARGUMENT,
                      "t5_bidirectional needs t5_buckets >= 2 (got %lld): "
                      "half of them for each direction",
                      (long long)c->t5_buckets);
  if (c->heads_q * c->head_dim > MAX_WIDTH ||
      c->heads_q * c->head_dim_v > MAX_WIDTH)
    return layer_fail(err, n, ATTN_ERR_INVALID_SHAPE,
                      "heads_q * head_dim is above 2^30");
  return ATTN_OK;
}

/* --- named tensors -------------------------------------------------------- */

static void add_tensor(attn_layer *L, int id, const char *name, int64_t rows,
                       int64_t cols) {
  layer_tensor *t = &L->t[id];
  t->name = name;
  t->ndim = cols > 0 ? 2 : 1;
  t->shape[0] = rows;
  t->shape[1] = cols > 0 ? cols : 1;
  t->count = rows * t->shape[1];
  t->offset = L->n_params;
  L->n_params += t->count;
  L->pidx[id] = L->n_tensors;
  L->order[L->n_tensors++] = id;
}

static void layout_tensors(attn_layer *L) {
  const attn_layer_config *c = &L->cfg;
  for (int i = 0; i < LP_COUNT; i++)
    L->pidx[i] = -1;
  if (c->fused_qkv) {
    add_tensor(L, LP_IN_W, "in_proj_weight", L->nq + L->nk + L->nv, c->d_model);
    if (c->bias_q)
      add_tensor(L, LP_IN_B, "in_proj_bias", L->nq + L->nk + L->nv, 0);
  } else {
    add_tensor(L, LP_QW, "q_proj_weight", L->nq, c->d_model);
    add_tensor(L, LP_KW, "k_proj_weight", L->nk, c->kdim);
    add_tensor(L, LP_VW, "v_proj_weight", L->nv, c->vdim);
    if (c->bias_q)
      add_tensor(L, LP_QB, "q_proj_bias", L->nq, 0);
    if (c->bias_k)
      add_tensor(L, LP_KB, "k_proj_bias", L->nk, 0);
    if (c->bias_v)
      add_tensor(L, LP_VB, "v_proj_bias", L->nv, 0);
  }
  add_tensor(L, LP_OW, "out_proj.weight", c->d_out, L->no);
  if (c->bias_out)
    add_tensor(L, LP_OB, "out_proj.bias", c->d_out, 0);
  if (c->position == ATTN_LAYER_POS_LEARNED) {
    add_tensor(L, LP_POS, "pos_table", c->max_positions, c->d_model);
    if (c->cross)
      add_tensor(L, LP_POS_KV, "pos_table_kv", c->max_positions, c->kdim);
  }
  if (c->position == ATTN_LAYER_POS_T5)
    add_tensor(L, LP_REL, "rel_bias", c->t5_buckets, c->heads_q);
}

void layer_weights_get(attn_layer *L, layer_weights *w) {
  memset(w, 0, sizeof *w);
  if (L->cfg.fused_qkv) {
    const int64_t off[3] = {0, L->nq, L->nq + L->nk};
    const int64_t E = L->cfg.d_model;
    const layer_tensor *tw = &L->t[LP_IN_W], *tb = &L->t[LP_IN_B];
    for (int i = 0; i < 3; i++) {
      w->w[i] = L->params + tw->offset + off[i] * E;
      w->gw[i] = L->grads + tw->offset + off[i] * E;
      if (L->pidx[LP_IN_B] >= 0) {
        w->b[i] = L->params + tb->offset + off[i];
        w->gb[i] = L->grads + tb->offset + off[i];
      }
    }
  } else {
    const int ids[3][2] = {{LP_QW, LP_QB}, {LP_KW, LP_KB}, {LP_VW, LP_VB}};
    for (int i = 0; i < 3; i++) {
      w->w[i] = L->params + L->t[ids[i][0]].offset;
      w->gw[i] = L->grads + L->t[ids[i][0]].offset;
      if (L->pidx[ids[i][1]] >= 0) {
        w->b[i] = L->params + L->t[ids[i][1]].offset;
        w->gb[i] = L->grads + L->t[ids[i][1]].offset;
      }
    }
  }
  w->w[3] = L->params + L->t[LP_OW].offset;
  w->gw[3] = L->grads + L->t[LP_OW].offset;
  if (L->pidx[LP_OB] >= 0) {
    w->b[3] = L->params + L->t[LP_OB].offset;
    w->gb[3] = L->grads + L->t[LP_OB].offset;
  }
}

/* --- create / free ------------------------------------------------------ */

static attn_status copy_rope(attn_layer *L, const attn_layer_config *c,
                             size_t rope_size, char *err, size_t n) {
  float mscale = 0.0f, *inv;
  attn_status st;
  attn_rope_init_sized(&L->rope, sizeof L->rope);
  if (c->rope) {
    if (rope_size < offsetof(attn_rope, factor) ||
        rope_size > sizeof(attn_rope))
      return layer_fail(err, n, ATTN_ERR_ABI,
                        "rope size %zu is not one this library knows (%zu)",
                        rope_size, sizeof(attn_rope));
    memcpy(&L->rope, c->rope, rope_size);
  }
  if (c->position != ATTN_LAYER_POS_ROPE)
    return ATTN_OK;
  /* settings checked now, not on the first call */
  inv = malloc((size_t)(L->cfg.head_dim / 2 + 1) * sizeof(float));
  if (!inv)
    return layer_fail(err, n, ATTN_ERR_OUT_OF_MEMORY, "out of memory");
  st = attn_rope_frequencies_sized(&L->rope, sizeof L->rope, L->cfg.head_dim,
                                   inv, &mscale);
  free(inv);
  if (st != ATTN_OK)
    return layer_fail(err, n, st,
                      "rope settings rejected for head_dim %lld (%s): base "
                      "> 1, dims even and <= head_dim, factor > 0",
                      (long long)L->cfg.head_dim, attn_strerror(st));
  return ATTN_OK;
}

ATTN_API attn_status attn_layer_create_sized(const attn_layer_config *c,
                                             size_t config_size,
                                             size_t rope_size, attn_layer **out,
                                             char *err, size_t err_size) {
  attn_layer *L;
  attn_status st;
  if (out)
    *out = NULL;
  if (!c || !out)
    return layer_fail(err, err_size, ATTN_ERR_NULL_POINTER,
                      "config and out must not be NULL");
  if (config_size != CONFIG_SIZE_0_3)
    return layer_fail(err, err_size, ATTN_ERR_ABI,
                      "attn_layer_config size %zu is not one this library "
                      "knows (%zu)",
                      config_size, CONFIG_SIZE_0_3);
  L = calloc(1, sizeof *L);
  if (!L)
    return layer_fail(err, err_size, ATTN_ERR_OUT_OF_MEMORY, "out of memory");
  L->cfg = *c;
  st = config_resolve(&L->cfg, err, err_size);
  if (st == ATTN_OK)
    st = copy_rope(L, c, rope_size, err, err_size);
  L->cfg.rope = NULL; /* the copy in L->rope is used */
  if (st != ATTN_OK) {
    free(L);
    return st;
  }
  L->nq = L->cfg.heads_q * L->cfg.head_dim;
  L->nk = L->cfg.heads_kv * L->cfg.head_dim;
  L->nv = L->cfg.heads_kv * L->cfg.head_dim_v;
  L->no = L->cfg.heads_q * L->cfg.head_dim_v;
  layout_tensors(L);
  L->params = calloc((size_t)L->n_params, sizeof(float));
  L->grads = calloc((size_t)L->n_params, sizeof(float));
  if (L->cfg.position == ATTN_LAYER_POS_ALIBI)
    L->alibi = calloc((size_t)L->cfg.heads_q, sizeof(float));
  if (!L->params || !L->grads ||
      (L->cfg.position == ATTN_LAYER_POS_ALIBI && !L->alibi)) {
    const long long n_params = (long long)L->n_params; /* L is freed */
    attn_layer_free(L);
    return layer_fail(err, err_size, ATTN_ERR_OUT_OF_MEMORY,
                      "out of memory for %lld parameters", n_params);
  }
  if (L->alibi) {
    st = attn_alibi_slopes(L->cfg.heads_q, L->alibi);
    if (st != ATTN_OK) {
      attn_layer_free(L);
      return layer_fail(err, err_size, st, "attn_alibi_slopes failed");
    }
  }
  attn_layer_init_weights(L, 0);
  *out = L;
  return ATTN_OK;
}

ATTN_API void attn_layer_free(attn_layer *L) {
  if (!L)
    return;
  free(L->params);
  free(L->grads);
  free(L->alibi);
  free(L->own_act);
  free(L);
}

/* --- parameters ----------------------------------------------------------- */

ATTN_API float *attn_layer_params(attn_layer *L, int64_t *count) {
  if (count)
    *count = L ? L->n_params : 0;
  return L ? L->params : NULL;
}

ATTN_API float *attn_layer_grads(attn_layer *L, int64_t *count) {
  if (count)
    *count = L ? L->n_params : 0;
  return L ? L->grads : NULL;
}

ATTN_API void attn_layer_zero_grad(attn_layer *L) {
  if (L)
    memset(L->grads, 0, (size_t)L->n_params * sizeof(float));
}

ATTN_API int attn_layer_num_params(const attn_layer *L) {
  return L ? L->n_tensors : 0;
}

static attn_status param_out(attn_layer *L, int id, attn_layer_param *out,
                             size_t size) {
  attn_layer_param p;
  const layer_tensor *t = &L->t[id];
  if (size == 0 || size > sizeof p)
    return ATTN_ERR_ABI;
  p.name = t->name;
  p.ndim = t->ndim;
  p.shape[0] = t->shape[0];
  p.shape[1] = t->shape[1];
  p.offset = t->offset;
  p.count = t->count;
  p.data = L->params + t->offset;
  p.grad = L->grads + t->offset;
  memcpy(out, &p, size);
  return ATTN_OK;
}

ATTN_API attn_status attn_layer_param_get_sized(attn_layer *L, int index,
                                                attn_layer_param *out,
                                                size_t size) {
  if (!L || !out)
    return ATTN_ERR_NULL_POINTER;
  if (index < 0 || index >= L->n_tensors)
    return ATTN_ERR_INVALID_ARGUMENT;
  return param_out(L, L->order[index], out, size);
}

ATTN_API attn_status attn_layer_param_find_sized(attn_layer *L,
                                                 const char *name,
                                                 attn_layer_param *out,
                                                 size_t size) {
  if (!L || !name || !out)
    return ATTN_ERR_NULL_POINTER;
  for (int i = 0; i < L->n_tensors; i++)
    if (strcmp(L->t[L->order[i]].name, name) == 0)
      return param_out(L, L->order[i], out, size);
  return ATTN_ERR_INVALID_ARGUMENT;
}

/* --- initialisation ------------------------------------------------------- */

typedef struct init_rng {
  uint64_t s;
} init_rng;

/* splitmix64 */
static uint64_t rng_next(init_rng *r) {
  uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static double rng_unit(init_rng *r) {
  return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

static void fill_uniform(init_rng *r, float *p, int64_t n, double a) {
  for (int64_t i = 0; i < n; i++)
    p[i] = (float)((2.0 * rng_unit(r) - 1.0) * a);
}

static void fill_normal(init_rng *r, float *p, int64_t n, double sd) {
  for (int64_t i = 0; i < n; i++) {
    double u1 = rng_unit(r), u2 = rng_unit(r);
    if (u1 < 1e-300)
      u1 = 1e-300;
    p[i] = (float)(sd * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
  }
}

ATTN_API attn_status attn_layer_init_weights(attn_layer *L, uint64_t seed) {
  init_rng r = {seed ^ 0x6C61796572ull};
  if (!L)
    return ATTN_ERR_NULL_POINTER;
  memset(L->params, 0, (size_t)L->n_params * sizeof(float));
  for (int i = 0; i < L->n_tensors; i++) {
    const int id = L->order[i];
    const layer_tensor *t = &L->t[id];
    float *p = L->params + t->offset;
    const double fan_out = (double)t->shape[0], fan_in = (double)t->shape[1];
    switch (id) {
    case LP_IN_W:
    case LP_QW:
    case LP_KW:
    case LP_VW:
      fill_uniform(&r, p, t->count, sqrt(6.0 / (fan_in + fan_out)));
      break;
    case LP_OW:
      fill_uniform(&r, p, t->count, 1.0 / sqrt(fan_in));
      break;
    case LP_POS:
    case LP_POS_KV:
      fill_normal(&r, p, t->count, 0.02);
      break;
    case LP_REL:
      fill_normal(&r, p, t->count, 1.0 / sqrt((double)L->cfg.d_model));
      break;
    default: /* biases: 0 */
      break;
    }
  }
  return ATTN_OK;
}
