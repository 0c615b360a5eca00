/*
 * The builder of tp_problem (problem.h): buffers, views and attn_params.
 *
 * Inputs are stored in the problem's dtype and every gap of their views
 * (padding, keys past kv_lens or past the last sequence) holds NaN, so a
 * kernel that reads them shows NaN in its output. Outputs start as a NaN
 * sentinel; the bytes outside their views must keep it (tp_untouched).
 */
#include "problem.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Strides for shape with the axes stored outer to inner in perm[], each
 * level padded by pad[k] elements; returns the elements spanned. */
static int64_t layout(attn_tensor *t, const int64_t shape[4], const int perm[4],
                      const int64_t pad[4], int64_t inner) {
  int64_t span = 1;
  t->stride[perm[3]] = inner;
  for (int k = 2; k >= 0; k--)
    t->stride[perm[k]] = t->stride[perm[k + 1]] * shape[perm[k + 1]] + pad[k];
  for (int a = 0; a < 4; a++) {
    t->shape[a] = shape[a];
    span += (shape[a] - 1) * t->stride[a];
  }
  return span;
}

static void random_pads(tc_rng *r, int padded, int64_t pad[4]) {
  for (int k = 0; k < 4; k++)
    pad[k] = padded && tc_chance(r, 0.7) ? tc_range(r, 1, 9) : 0;
}

static void store_at(attn_dtype dt, void *base, int64_t off, float x) {
  switch (dt) {
  case ATTN_DTYPE_F32:
    ((float *)base)[off] = x;
    break;
  case ATTN_DTYPE_BF16:
    ((uint16_t *)base)[off] = tc_f32_to_bf16(x);
    break;
  case ATTN_DTYPE_F16:
    ((uint16_t *)base)[off] = tc_f32_to_f16(x);
    break;
  case ATTN_DTYPE_BOOL:
    ((uint8_t *)base)[off] = x != 0.0f;
    break;
  case ATTN_DTYPE_Q8_0:
  case ATTN_DTYPE_Q4_0:
    break; /* not element-wise: test_quant.c builds its own blocks */
  }
}

static void fill_nan(attn_dtype dt, void *base, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    store_at(dt, base, i, NAN);
}

static int64_t offset_of(const attn_tensor *t, int64_t i0, int64_t i1,
                         int64_t i2, int64_t i3) {
  const int64_t idx[4] = {i0, i1, i2, i3};
  int64_t off = 0;
  for (int a = 0; a < 4; a++)
    if (t->shape[a] != 1)
      off += idx[a] * t->stride[a];
  return off;
}

void tp_store(const attn_tensor *t, int64_t i0, int64_t i1, int64_t i2,
              int64_t i3, float x) {
  store_at(t->dtype, t->data, offset_of(t, i0, i1, i2, i3), x);
}

/* Size-1 axes may carry any stride: give some a wild one. */
static void wild_unit_strides(tc_rng *r, const tp_problem *c, attn_tensor *t) {
  if (!c->wild_strides)
    return;
  for (int a = 0; a < 4; a++)
    if (t->shape[a] == 1 && tc_chance(r, 0.2))
      t->stride[a] = tc_range(r, 0, 1 << 20);
}

static float draw(tc_rng *r, const tp_problem *c) {
  if (c->huge)
    return (float)tc_uniform(r, -100.0, 100.0);
  return (float)tc_normal(r);
}

/* Is key row j (tensor seq index) of tensor batch tb one the call reads
 * (inside a sequence and inside kv_lens)? */
static int key_live(const tp_problem *c, int64_t tb, int64_t j) {
  if (!c->varlen)
    return !c->kvlens || j < c->kv_lens[tb];
  for (int64_t b = 0; b < c->nseq; b++)
    if (j >= c->cu_k[b] && j < c->cu_k[b + 1])
      return !c->kvlens || j - c->cu_k[b] < c->kv_lens[b];
  return 0;
}

static void fill_view(tc_rng *r, const tp_problem *c, const attn_tensor *t,
                      int is_kv, int is_v) {
  for (int64_t b = 0; b < t->shape[0]; b++)
    for (int64_t s = 0; s < t->shape[1]; s++) {
      if (is_kv && !key_live(c, b, s))
        continue; /* stays NaN: must never be read */
      for (int64_t h = 0; h < t->shape[2]; h++)
        for (int64_t x = 0; x < t->shape[3]; x++) {
          float val = draw(r, c);
          if (is_v && c->huge && tc_chance(r, 0.5))
            val = (float)tc_normal(r);
          tp_store(t, b, s, h, x, val);
        }
    }
}

/* View `which` ([batch, seq, heads, dim]) in its layout; returns its span. */
static int64_t make_view(tc_rng *r, const tp_problem *c, int which,
                         attn_tensor *t, attn_dtype dt, int64_t batch,
                         int64_t seq, int64_t heads, int64_t dim) {
  static const int bshd[4] = {0, 1, 2, 3}, bhsd[4] = {0, 2, 1, 3};
  const int64_t shape[4] = {batch, seq, heads, dim};
  int64_t pad[4];
  random_pads(r, c->padded[which], pad);
  t->dtype = dt;
  return layout(t, shape, c->order[which] ? bhsd : bshd, pad,
                c->dstride[which]);
}

/* Bias or mask: [nseq, hq, sq_max, sk_max] with per-axis broadcasting. */
static int64_t make_bcast_view(tc_rng *r, const tp_problem *c,
                               const int mode[4], int padded,
                               const int64_t full[4], attn_tensor *t) {
  static const int order[4] = {0, 1, 2, 3};
  int64_t store_shape[4], pad[4], span;
  for (int a = 0; a < 4; a++)
    store_shape[a] = mode[a] == TP_AX_FULL ? full[a] : 1;
  random_pads(r, padded, pad);
  span = layout(t, store_shape, order, pad, 1);
  for (int a = 0; a < 4; a++)
    if (mode[a] == TP_AX_ZERO) {
      t->shape[a] = full[a];
      t->stride[a] = 0;
    }
  wild_unit_strides(r, c, t);
  return span;
}

/* The storage of input `which` (TP_Q, TP_K, TP_V, TP_DOUT). */
static attn_dtype input_dt(const tp_problem *c, int which) {
  return c->mixed && (which == TP_V || which == TP_DOUT) ? c->vd_dt : c->in_dt;
}

/* q, k, v: one packed [batch, seq, 3, heads, d] buffer, or three views. */
static void build_inputs(tc_rng *r, const tp_problem *c, attn_params *p,
                         tp_bufs *m) {
  const size_t esz = attn_dtype_size(c->in_dt);
  if (c->packed) {
    const int64_t h = c->hq, d = c->d, s = c->sq, b = c->batch;
    const int64_t n = b * s * 3 * h * d;
    m->mem[TP_Q] = tc_alloc((size_t)n * esz);
    fill_nan(c->in_dt, m->mem[TP_Q], n);
    p->q = attn_tensor_bshd(m->mem[TP_Q], c->in_dt, b, s, h, d);
    p->q.stride[0] = s * 3 * h * d;
    p->q.stride[1] = 3 * h * d;
    p->k = p->q;
    p->v = p->q;
    p->k.data = (char *)m->mem[TP_Q] + (size_t)(h * d) * esz;
    p->v.data = (char *)m->mem[TP_Q] + (size_t)(2 * h * d) * esz;
  } else {
    attn_tensor *ts[3] = {&p->q, &p->k, &p->v};
    int64_t span[3];
    span[0] =
        make_view(r, c, TP_Q, &p->q, c->in_dt, c->batch, c->sq, c->hq, c->d);
    span[1] =
        make_view(r, c, TP_K, &p->k, c->in_dt, c->batch, c->sk, c->hk, c->d);
    span[2] = make_view(r, c, TP_V, &p->v, input_dt(c, TP_V), c->batch, c->sk,
                        c->hk, c->dv);
    if (c->kv_bcast) {
      span[1] -= (c->batch - 1) * p->k.stride[0];
      span[2] -= (c->batch - 1) * p->v.stride[0];
      p->k.stride[0] = p->v.stride[0] = 0;
    }
    for (int t = 0; t < 3; t++) {
      wild_unit_strides(r, c, ts[t]);
      const attn_dtype dt = input_dt(c, t); /* TP_Q, TP_K, TP_V = 0, 1, 2 */
      m->mem[t] = tc_alloc((size_t)span[t] * attn_dtype_size(dt));
      fill_nan(dt, m->mem[t], span[t]);
      ts[t]->data = m->mem[t];
    }
  }
  fill_view(r, c, &p->q, 0, 0);
  fill_view(r, c, &p->k, 1, 0);
  fill_view(r, c, &p->v, 1, 1);
}

/* An output view: a NaN sentinel everywhere, and a map of its own bytes. */
static void build_output(tc_rng *r, const tp_problem *c, int which,
                         attn_tensor *t, attn_dtype dt, int64_t batch,
                         int64_t seq, int64_t heads, int64_t dim, tp_bufs *m) {
  const int64_t span = make_view(r, c, which, t, dt, batch, seq, heads, dim);
  const size_t esz = attn_dtype_size(dt);
  const size_t bytes = (size_t)span * esz;
  wild_unit_strides(r, c, t);
  m->bytes[which] = bytes;
  m->mem[which] = tc_alloc(bytes);
  m->init[which] = tc_alloc(bytes);
  m->inview[which] = calloc(bytes, 1);
  if (!m->inview[which]) {
    fprintf(stderr, "test: out of memory\n");
    exit(2);
  }
  for (size_t i = 0; i < bytes; i++) /* 0x7FA5: NaN in every dtype */
    ((uint8_t *)m->mem[which])[i] = (i & 1) ? 0x7F : 0xA5;
  memcpy(m->init[which], m->mem[which], bytes);
  t->data = m->mem[which];
  for (int64_t b = 0; b < batch; b++)
    for (int64_t s = 0; s < seq; s++)
      for (int64_t h = 0; h < heads; h++)
        for (int64_t x = 0; x < dim; x++)
          memset(m->inview[which] + (size_t)offset_of(t, b, s, h, x) * esz, 1,
                 esz);
}

/* cu_seqlens, kv_lens, positions and the mask options. */
static void build_seqs(const tp_problem *c, attn_params *p, tp_bufs *m) {
  if (c->varlen) {
    memcpy(m->cu_q, c->cu_q, sizeof m->cu_q);
    memcpy(m->cu_k, c->cu_k, sizeof m->cu_k);
    p->cu_seqlens_q = m->cu_q;
    p->cu_seqlens_k = m->cu_k;
    p->varlen_batch = c->nseq;
  }
  if (c->kvlens) {
    memcpy(m->kv_lens, c->kv_lens, sizeof m->kv_lens);
    p->kv_lens = m->kv_lens;
  }
  p->q_pos_offset = c->q_pos_offset;
  p->k_pos_offset = c->k_pos_offset;
  if (c->pos_per_seq) {
    memcpy(m->q_offs, c->q_pos_offsets, sizeof m->q_offs);
    memcpy(m->k_offs, c->k_pos_offsets, sizeof m->k_offs);
    p->q_pos_offsets = m->q_offs;
    p->k_pos_offsets = m->k_offs;
  }
  p->causal = c->causal;
  p->window_left = c->wl;
  p->window_right = c->wr;
  p->prefix_len = c->prefix_len;
}

/* The full [nseq, hq, sq_max, sk_max] shape of bias and mask. */
static void bcast_full_shape(const tp_problem *c, int64_t full[4]) {
  int64_t sq_max = c->sq, sk_max = c->sk;
  if (c->varlen) {
    sq_max = sk_max = 0;
    for (int64_t b = 0; b < c->nseq; b++) {
      if (c->cu_q[b + 1] - c->cu_q[b] > sq_max)
        sq_max = c->cu_q[b + 1] - c->cu_q[b];
      if (c->cu_k[b + 1] - c->cu_k[b] > sk_max)
        sk_max = c->cu_k[b + 1] - c->cu_k[b];
    }
  }
  full[0] = c->nseq;
  full[1] = c->hq;
  full[2] = sq_max > 0 ? sq_max : 1;
  full[3] = sk_max > 0 ? sk_max : 1;
}

static void build_bias(tc_rng *r, const tp_problem *c, const int64_t full[4],
                       attn_params *p, tp_bufs *m) {
  int64_t span =
      make_bcast_view(r, c, c->bias_mode, c->bias_padded, full, &p->bias);
  p->bias.dtype = ATTN_DTYPE_F32;
  m->bias = tc_alloc((size_t)span * sizeof(float));
  for (int64_t i = 0; i < span; i++)
    m->bias[i] = NAN;
  p->bias.data = m->bias;
  for (int64_t i0 = 0; i0 < p->bias.shape[0]; i0++)
    for (int64_t i1 = 0; i1 < p->bias.shape[1]; i1++)
      for (int64_t i2 = 0; i2 < p->bias.shape[2]; i2++) {
        int row_inf = c->bias_neginf && tc_chance(r, 0.1);
        for (int64_t i3 = 0; i3 < p->bias.shape[3]; i3++) {
          float x = (float)(c->bias_mag * tc_normal(r));
          if (row_inf || (c->bias_neginf && tc_chance(r, 0.3)))
            x = -INFINITY;
          m->bias[offset_of(&p->bias, i0, i1, i2, i3)] = x;
        }
      }
  if (c->dbias) { /* exactly bias's shape, contiguous */
    const int64_t *s = p->bias.shape;
    const int64_t n = s[0] * s[1] * s[2] * s[3];
    m->dbias_bytes = (size_t)n * sizeof(float);
    m->dbias = tc_alloc(m->dbias_bytes);
    p->dbias = attn_tensor_contiguous(m->dbias, ATTN_DTYPE_F32, s[0], s[1],
                                      s[2], s[3]);
  }
}

static void build_mask(tc_rng *r, const tp_problem *c, const int64_t full[4],
                       attn_params *p, tp_bufs *m) {
  int64_t span =
      make_bcast_view(r, c, c->mask_mode, c->mask_padded, full, &p->mask);
  p->mask.dtype = ATTN_DTYPE_BOOL;
  m->mask = tc_alloc((size_t)span);
  memset(m->mask, 0, (size_t)span);
  p->mask.data = m->mask;
  for (int64_t i0 = 0; i0 < p->mask.shape[0]; i0++)
    for (int64_t i1 = 0; i1 < p->mask.shape[1]; i1++)
      for (int64_t i2 = 0; i2 < p->mask.shape[2]; i2++) {
        int row_false = c->mask_false_rows && tc_chance(r, 0.2);
        for (int64_t i3 = 0; i3 < p->mask.shape[3]; i3++) {
          /* any nonzero byte means "may attend" */
          uint8_t x =
              tc_chance(r, c->mask_p)
                  ? (uint8_t)(tc_chance(r, 0.7) ? 1 : tc_range(r, 2, 255))
                  : 0;
          m->mask[offset_of(&p->mask, i0, i1, i2, i3)] = row_false ? 0 : x;
        }
      }
}

/* dout (an input, filled) and the gradient outputs dq, dk, dv. */
static void build_grads(tc_rng *r, const tp_problem *c, attn_params *p,
                        tp_bufs *m) {
  const attn_dtype ddt = input_dt(c, TP_DOUT);
  const int64_t span =
      make_view(r, c, TP_DOUT, &p->dout, ddt, c->batch, c->sq, c->hq, c->dv);
  wild_unit_strides(r, c, &p->dout);
  m->mem[TP_DOUT] = tc_alloc((size_t)span * attn_dtype_size(ddt));
  fill_nan(ddt, m->mem[TP_DOUT], span);
  p->dout.data = m->mem[TP_DOUT];
  fill_view(r, c, &p->dout, 0, 0);
  build_output(r, c, TP_DQ, &p->dq, c->g_dt[0], c->batch, c->sq, c->hq, c->d,
               m);
  build_output(r, c, TP_DK, &p->dk, c->g_dt[1], c->batch, c->sk, c->hk, c->d,
               m);
  build_output(r, c, TP_DV, &p->dv, c->g_dt[2], c->batch, c->sk, c->hk, c->dv,
               m);
}

static void build_scores(tc_rng *r, const tp_problem *c, attn_params *p,
                         tp_bufs *m) {
  p->scale = c->scale;
  p->softcap = c->softcap;
  if (c->alibi) {
    m->slopes = tc_alloc((size_t)c->hq * sizeof(float));
    for (int64_t h = 0; h < c->hq; h++)
      m->slopes[h] =
          c->alibi == 1
              ? (float)pow(2.0, -8.0 * (double)(h + 1) / (double)c->hq)
              : (float)tc_uniform(r, 0.0, 0.5);
    p->alibi_slopes = m->slopes;
  }
}

/* The T5 table [t5_buckets][hq] (its own random stream, so the other
 * buffers of a case are the same with or without it) and its gradient. */
static void build_t5(const tp_problem *c, attn_params *p, tp_bufs *m) {
  tc_rng rr = {c->seed ^ 0x7575ull}, *r = &rr;
  const int64_t n = c->t5_buckets * c->hq;
  m->rel = tc_alloc((size_t)n * sizeof(float));
  for (int64_t x = 0; x < n; x++)
    m->rel[x] = c->t5_neginf && tc_chance(r, 0.1)
                    ? -INFINITY
                    : (float)(c->t5_mag * tc_normal(r));
  p->rel_bias = m->rel;
  p->rel_buckets = c->t5_buckets;
  p->rel_max_distance = c->t5_max_distance;
  p->rel_bidirectional = c->t5_bidirectional;
  if (c->grads && c->drel) {
    m->drel_bytes = (size_t)n * sizeof(float);
    m->drel = tc_alloc(m->drel_bytes);
    memset(m->drel, 0x7F, m->drel_bytes);
    p->drel_bias = m->drel;
  }
}

/* Sinks [hq] (their own random stream) and their gradient. */
static void build_sinks(const tp_problem *c, attn_params *p, tp_bufs *m) {
  tc_rng rr = {c->seed ^ 0x51a4ull}, *r = &rr;
  m->sinks = tc_alloc((size_t)c->hq * sizeof(float));
  m->n_sinks = c->hq;
  for (int64_t h = 0; h < c->hq; h++)
    m->sinks[h] = c->sinks_neginf && tc_chance(r, 0.3)
                      ? -INFINITY
                      : (float)(c->sinks_mag * tc_normal(r));
  p->sinks = m->sinks;
  if (c->grads && c->dsinks) {
    m->dsinks = tc_alloc((size_t)c->hq * sizeof(float));
    memset(m->dsinks, 0x7F, (size_t)c->hq * sizeof(float));
    p->dsinks = m->dsinks;
  }
}

void tp_build(const tp_problem *c, attn_params *p, tp_bufs *m) {
  tc_rng rr = {c->seed ^ 0xB0F5ull}, *r = &rr;
  int64_t full[4];
  memset(m, 0, sizeof *m);
  attn_params_init(p);
  build_inputs(r, c, p, m);
  build_output(r, c, TP_O, &p->o, c->out_dt, c->batch, c->sq, c->hq, c->dv, m);
  m->n_lse = c->batch * c->hq * c->sq;
  m->lse_mem = tc_alloc((size_t)(m->n_lse + 16) * sizeof(float));
  for (int64_t i = 0; i < m->n_lse + 16; i++)
    m->lse_mem[i] = NAN;
  if (c->with_lse)
    p->lse = m->lse_mem + 8;
  build_seqs(c, p, m);
  build_scores(r, c, p, m);
  bcast_full_shape(c, full);
  if (c->bias)
    build_bias(r, c, full, p, m);
  if (c->mask)
    build_mask(r, c, full, p, m);
  if (c->grads)
    build_grads(r, c, p, m);
  if (c->t5)
    build_t5(c, p, m);
  if (c->sinks)
    build_sinks(c, p, m);
  p->num_threads = c->threads;
  m->compile_status = ATTN_OK;
  if (c->compiled) {
    m->compile_status = tp_mask_compile(p, &m->cmask);
    if (m->compile_status == ATTN_OK)
      p->compiled_mask = m->cmask;
  }
}

void tp_bufs_free(tp_bufs *m) {
  for (int t = 0; t < TP_NT; t++)
    free(m->mem[t]), free(m->init[t]), free(m->inview[t]);
  free(m->lse_mem), free(m->bias), free(m->dbias), free(m->slopes);
  free(m->rel), free(m->drel);
  free(m->sinks), free(m->dsinks);
  free(m->mask), free(m->ws);
  tp_mask_free(m->cmask);
  memset(m, 0, sizeof *m);
}

void tp_reset_forward(const tp_problem *c, attn_params *p, tp_bufs *m) {
  memcpy(m->mem[TP_O], m->init[TP_O], m->bytes[TP_O]);
  for (int64_t i = 0; i < m->n_lse + 16; i++)
    m->lse_mem[i] = NAN;
  p->lse = c->with_lse ? m->lse_mem + 8 : NULL;
}

void tp_reset_backward(tp_bufs *m) {
  for (int t = TP_DQ; t <= TP_DV; t++)
    if (m->mem[t])
      memcpy(m->mem[t], m->init[t], m->bytes[t]);
  if (m->dbias)
    memset(m->dbias, 0x7F, m->dbias_bytes); /* large: must be overwritten */
  if (m->drel)
    memset(m->drel, 0x7F, m->drel_bytes);
  if (m->dsinks)
    memset(m->dsinks, 0x7F, (size_t)m->n_sinks * sizeof(float));
}

int tp_untouched(const tp_bufs *m, char *why, size_t why_size) {
  static const char *const names[TP_NT] = {"", "",   "",   "o",
                                           "", "dq", "dk", "dv"};
  for (int t = 0; t < TP_NT; t++) {
    if (!m->inview[t])
      continue;
    for (size_t i = 0; i < m->bytes[t]; i++)
      if (!m->inview[t][i] &&
          ((const uint8_t *)m->mem[t])[i] != m->init[t][i]) {
        snprintf(why, why_size,
                 "byte %zu of %s's buffer, outside the view, was written", i,
                 names[t]);
        return 0;
      }
  }
  for (int64_t i = 0; i < 8; i++)
    if (!isnan(m->lse_mem[i]) || !isnan(m->lse_mem[8 + m->n_lse + i])) {
      snprintf(why, why_size, "a guard element around lse was written");
      return 0;
    }
  return 1;
}

int tp_attach_workspace(attn_context *ctx, attn_params *p, tp_bufs *m,
                        int backward, char *why, size_t why_size) {
  size_t bytes = 0;
  p->workspace = NULL;
  p->workspace_size = 0;
  attn_status st = backward ? attn_backward_workspace_size(ctx, p, &bytes)
                            : attn_forward_workspace_size(ctx, p, &bytes);
  if (st != ATTN_OK) {
    snprintf(why, why_size, "attn_%s_workspace_size: %s (%s)",
             backward ? "backward" : "forward", attn_strerror(st),
             p->error_message ? p->error_message : "");
    return 0;
  }
  free(m->ws);
  m->ws = tc_alloc(bytes + 64);
  p->workspace = (void *)(((uintptr_t)m->ws + 63) & ~(uintptr_t)63);
  p->workspace_size = bytes;
  return 1;
}
