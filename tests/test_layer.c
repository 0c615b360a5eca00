/*
 * test_layer: the multi-head attention layer (include/attn/layer.h).
 *
 *   forward    the layer against a naive double-precision oracle written
 *              here (projections, absolute positions, RoPE, attention with
 *              every mask and score option, output projection) over
 *              randomized configurations: self/cross, MHA/GQA/MQA, biases
 *              on/off, fused/separate weights, each position scheme,
 *              causal/window/prefix/mask/bias/kv_lens/packed batches,
 *              softcap, scale, offsets; lengths 1, tile edges +-1, primes.
 *   gradients  every parameter tensor and every input gradient against
 *              central finite differences of the same oracle (small shapes),
 *              plus accumulate/overwrite semantics.
 *   status     bad inputs, each with its status and a message.
 *   noalloc    with caller activations and workspace, neither pass
 *              allocates (malloc & co wrapped with --wrap; OpenBLAS's own
 *              buffer pool is outside what this counts).
 *
 * The oracle reads masks and positions through tests/oracle_mask.h and
 * oracle_pos.h (the core's one predicate), RoPE frequencies through
 * attn_rope_frequencies (tested against its own oracle by
 * test_positions), T5 buckets through attn_t5_bucket (likewise).
 *
 * Tolerances (u = 2^-24, f32 unit roundoff):
 *   forward: |out - ref| <= 8 u sqrt(n) max(1, |out|), n = E + kdim + vdim
 *     + seq_k + heads_q*head_dim_v, the lengths of the dot products on the
 *     longest chain: a random-walk accumulation bound (sqrt(n) u per sum)
 *     with a factor 8 for the rounding stages in a row (positions,
 *     projection, softmax, P V, output projection). Inputs and weights are
 *     O(1) over sqrt(fan_in) here, so the terms summed are O(1).
 *   gradients: the finite differences are taken in double with h = 1e-3
 *     relative (truncation error ~h^2 ~ 1e-6 relative); the layer's f32
 *     gradients go through about twice the stages of the forward: the
 *     budget is 2e-4 of the tensor's largest gradient plus 16 u sqrt(n)
 *     times the case's largest gradient (for tensors whose gradient
 *     vanishes, such as the key bias, which softmax ignores).
 * The measured maxima are printed. Last line: "N passed, N failed".
 */
#include "alloc_count.h" /* counting, n_allocs (--wrap) */
#include "attn/layer.h"
#include "oracle_fwd.h"
#include "oracle_mask.h"
#include "oracle_pos.h"
#include "test_common.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long n_pass, n_fail;

/* ---------------------------------------------------------------------- */
/* A test case                                                            */
/* ---------------------------------------------------------------------- */
typedef struct tcase {
  attn_layer_config cfg; /* with every size explicit (no 0 defaults) */
  attn_rope rope;
  int64_t B, Sq, Sk;
  int use_value;
  attn_params opt; /* the template */
  int32_t kv_lens[8], cu_q[9], cu_k[9];
  int64_t qoffs[8], koffs[8];
  float *bias;
  unsigned char *mask;
  float sinks[64]; /* opt.sinks points here when drawn */
  char desc[320];
} tcase;

static int64_t rows_q(const tcase *t) { return t->B * t->Sq; }
static int64_t rows_k(const tcase *t) { return t->B * t->Sk; }

static void tcase_free(tcase *t) {
  free(t->bias);
  free(t->mask);
  t->bias = NULL;
  t->mask = NULL;
}

/* An attn_params with the attention's shapes (for the oracles' geometry;
 * no data is read through q, k, v, o). */
static attn_params geom_params(const tcase *t) {
  static float dummy[1];
  const attn_layer_config *c = &t->cfg;
  attn_params p = t->opt;
  p.q = attn_tensor_bshd(dummy, ATTN_DTYPE_F32, t->B, t->Sq, c->heads_q,
                         c->head_dim);
  p.k = attn_tensor_bshd(dummy, ATTN_DTYPE_F32, t->B, t->Sk, c->heads_kv,
                         c->head_dim);
  p.v = attn_tensor_bshd(dummy, ATTN_DTYPE_F32, t->B, t->Sk, c->heads_kv,
                         c->head_dim_v);
  p.o = attn_tensor_bshd(dummy, ATTN_DTYPE_F32, t->B, t->Sq, c->heads_q,
                         c->head_dim_v);
  return p;
}

/* ---------------------------------------------------------------------- */
/* The double-precision oracle                                            */
/* ---------------------------------------------------------------------- */

/* Offsets of the named tensors in the flat buffer (-1 = absent). */
typedef struct poffs {
  int64_t w[4], b[4], pos, pos_kv, rel;
} poffs;

static int64_t find_off(attn_layer *L, const char *name) {
  attn_layer_param p;
  return attn_layer_param_find(L, name, &p) == ATTN_OK ? p.offset : -1;
}

static void get_offs(attn_layer *L, const tcase *t, poffs *o) {
  const attn_layer_config *c = &t->cfg;
  const int64_t nq = c->heads_q * c->head_dim, nk = c->heads_kv * c->head_dim;
  if (c->fused_qkv) {
    const int64_t w = find_off(L, "in_proj_weight");
    const int64_t b = find_off(L, "in_proj_bias");
    o->w[0] = w;
    o->w[1] = w + nq * c->d_model;
    o->w[2] = w + (nq + nk) * c->d_model;
    o->b[0] = b;
    o->b[1] = b < 0 ? -1 : b + nq;
    o->b[2] = b < 0 ? -1 : b + nq + nk;
  } else {
    o->w[0] = find_off(L, "q_proj_weight");
    o->w[1] = find_off(L, "k_proj_weight");
    o->w[2] = find_off(L, "v_proj_weight");
    o->b[0] = find_off(L, "q_proj_bias");
    o->b[1] = find_off(L, "k_proj_bias");
    o->b[2] = find_off(L, "v_proj_bias");
  }
  o->w[3] = find_off(L, "out_proj.weight");
  o->b[3] = find_off(L, "out_proj.bias");
  o->pos = find_off(L, "pos_table");
  o->pos_kv = find_off(L, "pos_table_kv");
  o->rel = find_off(L, "rel_bias");
}

/* The layer's absolute position of row r of x (key 0) or y (key 1). */
static int64_t abs_pos(const tcase *t, int key, int64_t r) {
  const int32_t *cu = key ? t->opt.cu_seqlens_k : t->opt.cu_seqlens_q;
  const int64_t S = key ? t->Sk : t->Sq;
  const int64_t *offs = key ? t->opt.k_pos_offsets : t->opt.q_pos_offsets;
  int64_t b = r / S, first = b * S;
  if (cu) {
    for (b = 0; b < t->opt.varlen_batch && cu[b + 1] <= r; b++)
      ;
    first = cu[b];
  }
  return r - first + (key ? t->opt.k_pos_offset : t->opt.q_pos_offset) +
         (offs ? offs[b] : 0);
}

/* in [rows, w] plus the scheme's absolute positions, into out */
static void oracle_pos_add(const tcase *t, const double *th, int64_t tab_off,
                           int key, const double *in, int64_t w, double *out) {
  const int64_t rows = key ? rows_k(t) : rows_q(t);
  const attn_layer_position pos = t->cfg.position;
  const double base =
      t->cfg.sinusoidal_base > 0 ? t->cfg.sinusoidal_base : 10000.0;
  for (int64_t r = 0; r < rows; r++) {
    const int64_t p = abs_pos(t, key, r);
    for (int64_t i = 0; i < w; i++) {
      double v = in[r * w + i];
      if (pos == ATTN_LAYER_POS_LEARNED)
        v += th[tab_off + p * w + i];
      if (pos == ATTN_LAYER_POS_SINUSOIDAL) {
        const double a = (double)p / pow(base, (double)(i & ~1) / (double)w);
        v += (i & 1) ? cos(a) : sin(a);
      }
      out[r * w + i] = v;
    }
  }
}

/* out [rows, n] = in [rows, k] W^T + b */
static void oracle_linear(int64_t rows, int64_t n, int64_t k, const double *in,
                          const double *w, const double *b, double *out) {
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < n; j++) {
      double s = b ? b[j] : 0.0;
      for (int64_t i = 0; i < k; i++)
        s += in[r * k + i] * w[j * k + i];
      out[r * n + j] = s;
    }
}

/* Rotates the heads of row x [heads * d] to position pos. */
static void oracle_rope_row(const tcase *t, double *x, int64_t heads,
                            int64_t pos, const float *inv, double ms) {
  const int64_t d = t->cfg.head_dim;
  const int64_t rd = t->rope.dims ? t->rope.dims : d, half = rd / 2;
  for (int64_t h = 0; h < heads; h++) {
    double *v = x + h * d;
    for (int64_t i = 0; i < half; i++) {
      const double a = (double)pos * (double)inv[i];
      const double c = cos(a) * ms, s = sin(a) * ms;
      const int64_t i1 = t->rope.style == ATTN_ROPE_HALF ? i : 2 * i;
      const int64_t i2 = t->rope.style == ATTN_ROPE_HALF ? i + half : 2 * i + 1;
      const double a1 = v[i1], a2 = v[i2];
      v[i1] = a1 * c - a2 * s;
      v[i2] = a2 * c + a1 * s;
    }
  }
}

static void oracle_rope(const tcase *t, const attn_params *gp, double *Q,
                        double *K) {
  const attn_layer_config *c = &t->cfg;
  float inv[128], ms = 1.0f;
  attn_rope_frequencies(&t->rope, c->head_dim, inv, &ms);
  for (int64_t b = 0; b < oracle_num_seqs(gp); b++) {
    oracle_seq_geom g;
    oracle_seq_geom_get(gp, b, &g);
    for (int64_t i = 0; i < g.sq; i++) {
      const int64_t r = g.tb * t->Sq + g.q0 + i;
      oracle_rope_row(t, Q + r * c->heads_q * c->head_dim, c->heads_q,
                      oracle_qpos(gp, &g, i), inv, ms);
    }
    for (int64_t j = 0; j < g.sk; j++) {
      const int64_t r = g.tb * t->Sk + g.k0 + j;
      oracle_rope_row(t, K + r * c->heads_kv * c->head_dim, c->heads_kv,
                      oracle_kpos(gp, &g, j), inv, ms);
    }
  }
}

/* O [rows_q, hq * dv] = attention(Q, K, V) with every option of t */
static void oracle_attention(const tcase *t, const attn_params *gp,
                             const double *th, const poffs *po,
                             const float *slopes, const double *Q,
                             const double *K, const double *V, double *O) {
  const attn_layer_config *c = &t->cfg;
  const int64_t hq = c->heads_q, hkv = c->heads_kv, d = c->head_dim,
                dv = c->head_dim_v, grp = hq / hkv;
  const double scale = t->opt.scale != 0 ? t->opt.scale : 1.0 / sqrt((double)d);
  const float *sinks = t->opt.sinks;
  double *s = malloc((size_t)(t->Sk + 1) * sizeof(double));
  memset(O, 0, (size_t)(rows_q(t) * hq * dv) * sizeof(double));
  for (int64_t b = 0; b < oracle_num_seqs(gp); b++) {
    oracle_seq_geom g;
    oracle_seq_geom_get(gp, b, &g);
    for (int64_t h = 0; h < hq; h++)
      for (int64_t i = 0; i < g.sq; i++) {
        const int64_t qr = g.tb * t->Sq + g.q0 + i;
        const double *q = Q + qr * hq * d + h * d;
        double m = -INFINITY, sum = 0;
        for (int64_t j = 0; j < g.sk; j++) {
          const int64_t kr = g.tb * t->Sk + g.k0 + j;
          const double *k = K + kr * hkv * d + (h / grp) * d;
          double x = 0;
          s[j] = -INFINITY;
          if (!oracle_allowed(gp, &g, h, i, j))
            continue;
          for (int64_t e = 0; e < d; e++)
            x += q[e] * k[e];
          x *= scale;
          if (t->opt.softcap > 0)
            x = t->opt.softcap * tanh(x / t->opt.softcap);
          if (slopes)
            x -= slopes[h] * oracle_alibi_dist(gp, &g, i, j);
          if (t->opt.bias.data)
            x += oracle_tensor_get(&t->opt.bias, g.b, h, i, j);
          if (po->rel >= 0) {
            const int64_t bk = attn_t5_bucket(
                oracle_kpos(gp, &g, j) - oracle_qpos(gp, &g, i), c->t5_buckets,
                c->t5_max_distance, c->t5_bidirectional);
            x += th[po->rel + bk * hq + h];
          }
          s[j] = x;
          if (x > m)
            m = x;
        }
        if (m == -INFINITY)
          continue; /* no key: o = 0, with or without a sink */
        /* a sink joins the denominator with no value; dropout scales the
         * normalised probabilities by the call's own mask */
        const double sk = sinks ? (double)sinks[h] : -INFINITY;
        if (sk > m)
          m = sk;
        if (sk > -INFINITY)
          sum += exp(sk - m);
        for (int64_t j = 0; j < g.sk; j++)
          sum += (s[j] = exp(s[j] - m));
        for (int64_t j = 0; j < g.sk; j++) {
          const int64_t kr = g.tb * t->Sk + g.k0 + j;
          const double *v = V + kr * hkv * dv + (h / grp) * dv;
          const double z = oracle_dropout(gp, &g, h, i, j);
          if (s[j] == 0 || z == 0)
            continue;
          for (int64_t e = 0; e < dv; e++)
            O[qr * hq * dv + h * dv + e] += s[j] / sum * z * v[e];
        }
      }
  }
  free(s);
}

/* out [rows_q, d_out] of the layer with parameters th on inputs x, y, val
 * (val NULL: V from y, or x); returns sum(out * G) when G is given. */
static double oracle_layer(const tcase *t, const poffs *po, const double *th,
                           const float *slopes, const double *x,
                           const double *y, const double *val, const double *G,
                           double *out) {
  const attn_layer_config *c = &t->cfg;
  const int64_t nq = c->heads_q * c->head_dim, nk = c->heads_kv * c->head_dim,
                nv = c->heads_kv * c->head_dim_v,
                no = c->heads_q * c->head_dim_v;
  const int64_t rq = rows_q(t), rk = rows_k(t);
  const attn_params gp = geom_params(t);
  double *xp = malloc((size_t)(rq * c->d_model) * sizeof(double));
  double *yp =
      c->cross ? malloc((size_t)(rk * c->kdim) * sizeof(double)) : NULL;
  double *Q = malloc((size_t)(rq * nq) * sizeof(double));
  double *K = malloc((size_t)(rk * nk) * sizeof(double));
  double *V = malloc((size_t)(rk * nv) * sizeof(double));
  double *O = malloc((size_t)(rq * no) * sizeof(double));
  double *res = out ? out : malloc((size_t)(rq * c->d_out) * sizeof(double));
  const double *src, *vsrc;
  double loss = 0;
#define B_(i) (po->b[i] >= 0 ? th + po->b[i] : NULL)
  oracle_pos_add(t, th, po->pos, 0, x, c->d_model, xp);
  if (c->cross)
    oracle_pos_add(t, th, po->pos_kv, 1, y, c->kdim, yp);
  src = c->cross ? yp : xp;
  vsrc = c->cross && val ? val : src;
  oracle_linear(rq, nq, c->d_model, xp, th + po->w[0], B_(0), Q);
  oracle_linear(rk, nk, c->cross ? c->kdim : c->d_model, src, th + po->w[1],
                B_(1), K);
  oracle_linear(rk, nv, c->cross ? c->vdim : c->d_model, vsrc, th + po->w[2],
                B_(2), V);
  if (c->position == ATTN_LAYER_POS_ROPE)
    oracle_rope(t, &gp, Q, K);
  oracle_attention(t, &gp, th, po, slopes, Q, K, V, O);
  oracle_linear(rq, c->d_out, no, O, th + po->w[3], B_(3), res);
#undef B_
  if (G)
    for (int64_t i = 0; i < rq * c->d_out; i++)
      loss += res[i] * G[i];
  free(xp);
  free(yp);
  free(Q);
  free(K);
  free(V);
  free(O);
  if (!out)
    free(res);
  return loss;
}

/* Creates the layer of t (kdim and vdim are for cross-attention only). */
static attn_status create_layer(const tcase *t, attn_layer **L, char *err,
                                size_t n) {
  attn_layer_config c = t->cfg;
  if (!c.cross)
    c.kdim = c.vdim = 0;
  return attn_layer_create(&c, L, err, n);
}

/* ---------------------------------------------------------------------- */
/* Case generation                                                        */
/* ---------------------------------------------------------------------- */
static const int64_t seq_list[] = {1,  2,  3,  5,  13, 31, 47,
                                   48, 49, 63, 64, 65, 97};

static int64_t pick_seq(tc_rng *r, int small) {
  if (small)
    return tc_range(r, 1, 6);
  return seq_list[tc_below(r, (int64_t)(sizeof seq_list / sizeof *seq_list))];
}

static void gen_rope(tc_rng *r, tcase *t) {
  attn_rope_init(&t->rope);
  t->rope.base = tc_chance(r, 0.5) ? 10000.0 : 500.0;
  t->rope.style = tc_chance(r, 0.5) ? ATTN_ROPE_HALF : ATTN_ROPE_INTERLEAVED;
  if (tc_chance(r, 0.3) && t->cfg.head_dim >= 4)
    t->rope.dims = 2 * tc_range(r, 1, t->cfg.head_dim / 2 - 1);
  t->rope.scaling = (attn_rope_scaling)tc_range(r, 0, 4);
  t->rope.factor = tc_chance(r, 0.5) ? 2.0 : 4.0;
  t->rope.original_max_position = 32;
  if (t->rope.scaling == ATTN_ROPE_SCALING_NTK &&
      (t->rope.dims ? t->rope.dims : t->cfg.head_dim) <= 2) {
    /* NTK's base * factor^(dims / (dims - 2)) needs dims > 2 */
    t->rope.dims = 0;
    if (t->cfg.head_dim <= 2)
      t->rope.scaling = ATTN_ROPE_SCALING_LINEAR;
  }
  t->cfg.rope = &t->rope;
}

/* Config part: heads, widths, biases, scheme. */
static void gen_config(tc_rng *r, tcase *t, int small) {
  static const int64_t heads[][2] = {{1, 1}, {2, 2}, {2, 1}, {4, 4},
                                     {4, 2}, {4, 1}, {3, 3}, {6, 2}};
  attn_layer_config *c = &t->cfg;
  const int hi = (int)tc_below(r, small ? 3 : 8);
  attn_layer_config_init(c);
  c->heads_q = heads[hi][0];
  c->heads_kv = heads[hi][1];
  c->position = (attn_layer_position)tc_range(r, 0, 5);
  c->head_dim = small ? 2 * tc_range(r, 1, 3) : tc_range(r, 1, 12) * 2;
  if (c->position != ATTN_LAYER_POS_ROPE && tc_chance(r, 0.2))
    c->head_dim = small ? 3 : 2 * tc_range(r, 1, 12) + 1;
  c->head_dim_v =
      tc_chance(r, 0.7) ? c->head_dim : tc_range(r, 1, small ? 5 : 20);
  c->d_model = small ? tc_range(r, 3, 8) : tc_range(r, 4, 40);
  c->d_out = tc_chance(r, 0.7) ? c->d_model : tc_range(r, 1, small ? 6 : 24);
  c->cross = tc_chance(r, 0.4);
  c->kdim = c->cross && tc_chance(r, 0.5) ? tc_range(r, 2, small ? 7 : 33)
                                          : c->d_model;
  c->vdim =
      c->cross && tc_chance(r, 0.3) ? tc_range(r, 2, small ? 7 : 33) : c->kdim;
  c->fused_qkv = !c->cross && tc_chance(r, 0.4);
  c->bias_q = tc_chance(r, 0.7);
  c->bias_k = c->fused_qkv ? c->bias_q : tc_chance(r, 0.7);
  c->bias_v = c->fused_qkv ? c->bias_q : tc_chance(r, 0.7);
  c->bias_out = tc_chance(r, 0.7);
  c->max_positions = 128 + 16;
  c->sinusoidal_base = tc_chance(r, 0.5) ? 0 : 100.0;
  c->t5_buckets = tc_range(r, 4, 32);
  c->t5_max_distance = tc_range(r, 8, 128);
  c->t5_bidirectional = tc_chance(r, 0.5);
  if (c->position == ATTN_LAYER_POS_ROPE)
    gen_rope(r, t);
}

/* Call part: shapes, masks, score options. */
static void gen_call(tc_rng *r, tcase *t, int small) {
  attn_params *o = &t->opt;
  const attn_layer_config *c = &t->cfg;
  attn_params_init(o);
  t->B = tc_range(r, 1, small ? 2 : 3);
  t->Sq = pick_seq(r, small);
  t->Sk = c->cross ? pick_seq(r, small) : t->Sq;
  t->use_value = c->cross && (c->vdim != c->kdim || tc_chance(r, 0.5));
  if (tc_chance(r, 0.15) && !small) { /* packed sequences */
    const int64_t n = tc_range(r, 1, 4);
    t->cu_q[0] = t->cu_k[0] = 0;
    for (int64_t b = 0; b < n; b++) {
      const int64_t lq = tc_range(r, 1, 40);
      t->cu_q[b + 1] = t->cu_q[b] + (int32_t)lq;
      t->cu_k[b + 1] =
          t->cu_k[b] + (int32_t)(c->cross ? tc_range(r, 1, 40) : lq);
    }
    o->cu_seqlens_q = t->cu_q;
    o->cu_seqlens_k = t->cu_k;
    o->varlen_batch = n;
    t->B = 1;
    t->Sq = t->cu_q[n];
    t->Sk = t->cu_k[n];
  }
  const int64_t nseq = o->cu_seqlens_q ? o->varlen_batch : t->B;
  const int64_t msq = t->Sq, msk = t->Sk;
  switch (tc_below(r, 6)) {
  case 1:
    o->causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    break;
  case 2:
    o->causal = ATTN_CAUSAL_TOP_LEFT;
    break;
  case 3:
    o->window_left = tc_range(r, 0, 20);
    o->window_right = tc_chance(r, 0.5) ? -1 : tc_range(r, 0, 5);
    break;
  case 4:
    o->prefix_len = tc_range(r, 0, 10);
    break;
  default:
    break;
  }
  if (tc_chance(r, 0.25)) {
    for (int64_t b = 0; b < nseq; b++) {
      const int64_t len = o->cu_seqlens_k ? t->cu_k[b + 1] - t->cu_k[b] : t->Sk;
      t->kv_lens[b] = (int32_t)tc_range(r, 1, len);
    }
    o->kv_lens = t->kv_lens;
  }
  if (tc_chance(r, 0.2)) {
    const int64_t n = nseq * c->heads_q * msq * msk;
    t->mask = malloc((size_t)n);
    for (int64_t i = 0; i < n; i++)
      t->mask[i] = (unsigned char)tc_chance(r, 0.8);
    o->mask = attn_tensor_contiguous(t->mask, ATTN_DTYPE_BOOL, nseq, c->heads_q,
                                     msq, msk);
  }
  if (tc_chance(r, 0.2)) {
    const int64_t n = c->heads_q * msq * msk;
    t->bias = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
      t->bias[i] = (float)tc_uniform(r, -1, 1);
    o->bias = attn_tensor_contiguous(t->bias, ATTN_DTYPE_F32, 1, c->heads_q,
                                     msq, msk);
  }
  if (tc_chance(r, 0.2))
    o->softcap = (float)tc_uniform(r, 1, 5);
  if (tc_chance(r, 0.2))
    o->scale = (float)tc_uniform(r, 0.1, 0.6);
  if (tc_chance(r, 0.25)) {
    o->q_pos_offset = tc_range(r, 0, 7);
    o->k_pos_offset = tc_range(r, 0, 7);
    if (tc_chance(r, 0.5)) {
      for (int64_t b = 0; b < nseq; b++) {
        t->qoffs[b] = tc_range(r, 0, 9);
        t->koffs[b] = tc_range(r, 0, 9);
      }
      o->q_pos_offsets = t->qoffs;
      o->k_pos_offsets = t->koffs;
    }
  }
  if (tc_chance(r, 0.2)) { /* sinks (0.4), sometimes -inf for a head */
    for (int64_t h = 0; h < c->heads_q && h < 64; h++)
      t->sinks[h] = tc_chance(r, 0.2) ? -INFINITY : (float)tc_normal(r);
    o->sinks = t->sinks;
  }
  if (tc_chance(r, 0.2)) { /* dropout (0.4): the same mask in both passes */
    o->dropout_p = tc_chance(r, 0.5) ? 0.1f : 0.5f;
    o->dropout_seed = tc_next(r);
  }
  snprintf(
      t->desc, sizeof t->desc,
      "sinks=%d dropout=%g "
      "%s E=%lld kd=%lld vd=%lld hq=%lld hkv=%lld d=%lld dv=%lld "
      "dout=%lld pos=%d fused=%d bias=%d%d%d%d B=%lld Sq=%lld Sk=%lld "
      "value=%d varlen=%lld causal=%d win=%lld,%lld prefix=%lld "
      "kvlens=%d mask=%d biasT=%d softcap=%g scale=%g rope=%d/%lld/%d",
      o->sinks != NULL, (double)o->dropout_p, c->cross ? "cross" : "self",
      (long long)c->d_model, (long long)c->kdim, (long long)c->vdim,
      (long long)c->heads_q, (long long)c->heads_kv, (long long)c->head_dim,
      (long long)c->head_dim_v, (long long)c->d_out, (int)c->position,
      c->fused_qkv, c->bias_q, c->bias_k, c->bias_v, c->bias_out,
      (long long)t->B, (long long)t->Sq, (long long)t->Sk, t->use_value,
      (long long)o->varlen_batch, (int)o->causal, (long long)o->window_left,
      (long long)o->window_right, (long long)o->prefix_len, o->kv_lens != NULL,
      t->mask != NULL, t->bias != NULL, (double)o->softcap, (double)o->scale,
      (int)t->rope.style, (long long)t->rope.dims, (int)t->rope.scaling);
}

static void fill_uniform(tc_rng *r, float *p, int64_t n, double a) {
  for (int64_t i = 0; i < n; i++)
    p[i] = (float)tc_uniform(r, -a, a);
}

/* Random parameters everywhere (biases and tables nonzero). */
static void randomize_params(tc_rng *r, attn_layer *L) {
  for (int i = 0; i < attn_layer_num_params(L); i++) {
    attn_layer_param p;
    attn_layer_param_get(L, i, &p);
    const double a = p.ndim == 2 && strstr(p.name, "weight")
                         ? 1.5 / sqrt((double)p.shape[1])
                         : 0.5;
    fill_uniform(r, p.data, p.count, a);
  }
}

/* ---------------------------------------------------------------------- */
/* Running the layer                                                      */
/* ---------------------------------------------------------------------- */
typedef struct run_bufs {
  float *x, *y, *val, *out, *dout, *dx, *dy, *dval;
} run_bufs;

static attn_layer_call make_call(const tcase *t, const run_bufs *b) {
  attn_layer_call c;
  attn_layer_call_init(&c);
  c.batch = t->B;
  c.seq_q = t->Sq;
  c.seq_k = t->cfg.cross ? t->Sk : 0;
  c.x = b->x;
  c.y = t->cfg.cross ? b->y : NULL;
  c.value = t->use_value ? b->val : NULL;
  c.out = b->out;
  c.options = &t->opt;
  c.dout = b->dout;
  c.dx = b->dx;
  c.dy = t->cfg.cross ? b->dy : NULL;
  c.dvalue = t->use_value ? b->dval : NULL;
  return c;
}

static double *to_double(const float *f, int64_t n) {
  double *d = malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
  for (int64_t i = 0; i < n; i++)
    d[i] = f ? f[i] : 0;
  return d;
}

static double max_fwd_err, max_grad_err;

static void alloc_bufs(tc_rng *r, const tcase *t, run_bufs *b) {
  const attn_layer_config *c = &t->cfg;
  const int64_t rq = rows_q(t), rk = rows_k(t);
  b->x = malloc((size_t)(rq * c->d_model) * sizeof(float));
  b->y = malloc((size_t)(rk * c->kdim + 1) * sizeof(float));
  b->val = malloc((size_t)(rk * c->vdim + 1) * sizeof(float));
  b->out = malloc((size_t)(rq * c->d_out) * sizeof(float));
  b->dout = malloc((size_t)(rq * c->d_out) * sizeof(float));
  b->dx = malloc((size_t)(rq * c->d_model) * sizeof(float));
  b->dy = malloc((size_t)(rk * c->kdim + 1) * sizeof(float));
  b->dval = malloc((size_t)(rk * c->vdim + 1) * sizeof(float));
  fill_uniform(r, b->x, rq * c->d_model, 1);
  fill_uniform(r, b->y, rk * c->kdim, 1);
  fill_uniform(r, b->val, rk * c->vdim, 1);
  fill_uniform(r, b->dout, rq * c->d_out, 1);
  fill_uniform(r, b->dx, rq * c->d_model, 100); /* overwritten */
  fill_uniform(r, b->dy, rk * c->kdim, 100);
  fill_uniform(r, b->dval, rk * c->vdim, 100);
}

static void free_bufs(run_bufs *b) {
  free(b->x);
  free(b->y);
  free(b->val);
  free(b->out);
  free(b->dout);
  free(b->dx);
  free(b->dy);
  free(b->dval);
}

/* The oracle's result for the layer's parameters and b's inputs. */
static double *oracle_out(const tcase *t, attn_layer *L, const run_bufs *b,
                          const poffs *po, const float *slopes) {
  int64_t np;
  const float *params = attn_layer_params(L, &np);
  double *th = to_double(params, np);
  double *x = to_double(b->x, rows_q(t) * t->cfg.d_model);
  double *y = to_double(b->y, rows_k(t) * t->cfg.kdim);
  double *v = to_double(b->val, rows_k(t) * t->cfg.vdim);
  double *out = malloc((size_t)(rows_q(t) * t->cfg.d_out) * sizeof(double));
  oracle_layer(t, po, th, slopes, x, y, t->use_value ? v : NULL, NULL, out);
  free(th);
  free(x);
  free(y);
  free(v);
  return out;
}

/* A bound on the f32 error of the forward (see the header comment). */
static double fwd_budget(const tcase *t, const double *ref, int64_t n) {
  const attn_layer_config *c = &t->cfg;
  const double u = ldexp(1.0, -24);
  const double len = (double)(c->d_model + c->kdim + c->vdim + t->Sk +
                              c->heads_q * c->head_dim_v);
  double m = 0;
  for (int64_t i = 0; i < n; i++)
    if (fabs(ref[i]) > m)
      m = fabs(ref[i]);
  /* the products here are O(1) by construction (inputs and weights of
   * unit scale over sqrt(fan_in)): the scale is max(1, |out|) */
  return 8 * u * sqrt(len) * (m > 1 ? m : 1);
}

static void forward_case(tc_rng *r, int index) {
  tcase t;
  attn_layer *L = NULL;
  run_bufs b;
  char err[256] = "";
  poffs po;
  float slopes[64];
  memset(&t, 0, sizeof t);
  gen_config(r, &t, 0);
  gen_call(r, &t, 0);
  if (create_layer(&t, &L, err, sizeof err) != ATTN_OK) {
    CHECK(0, "case %d create: %s (%s)", index, err, t.desc);
    tcase_free(&t);
    return;
  }
  randomize_params(r, L);
  alloc_bufs(r, &t, &b);
  attn_layer_call c = make_call(&t, &b);
  c.error_message = err;
  c.error_message_size = sizeof err;
  attn_status st = attn_layer_forward(L, NULL, &c);
  CHECK(st == ATTN_OK, "case %d forward: %s: %s (%s)", index, attn_strerror(st),
        err, t.desc);
  if (st == ATTN_OK) {
    get_offs(L, &t, &po);
    attn_alibi_slopes(t.cfg.heads_q, slopes);
    double *ref = oracle_out(
        &t, L, &b, &po, t.cfg.position == ATTN_LAYER_POS_ALIBI ? slopes : NULL);
    const int64_t n = rows_q(&t) * t.cfg.d_out;
    double e = 0;
    for (int64_t i = 0; i < n; i++) {
      const double d = fabs((double)b.out[i] - ref[i]);
      if (!(d <= e))
        e = d;
    }
    const double budget = fwd_budget(&t, ref, n);
    if (e / budget > max_fwd_err)
      max_fwd_err = e / budget;
    CHECK(e <= budget, "case %d forward err %.3g > budget %.3g (%s)", index, e,
          budget, t.desc);
    free(ref);
  }
  free_bufs(&b);
  attn_layer_free(L);
  tcase_free(&t);
}

/* ---------------------------------------------------------------------- */
/* Gradients against finite differences of the oracle                     */
/* ---------------------------------------------------------------------- */
typedef struct fd_ctx {
  const tcase *t;
  const poffs *po;
  const float *slopes;
  double *th, *x, *y, *v, *G;
} fd_ctx;

static double fd_loss(const fd_ctx *f) {
  return oracle_layer(f->t, f->po, f->th, f->slopes, f->x, f->y,
                      f->t->use_value ? f->v : NULL, f->G, NULL);
}

/* Central difference of the loss along element i of arr. */
static double fd_at(const fd_ctx *f, double *arr, int64_t i) {
  const double x0 = arr[i], h = 1e-3 * (fabs(x0) > 1 ? fabs(x0) : 1);
  double lp, lm;
  arr[i] = x0 + h;
  lp = fd_loss(f);
  arr[i] = x0 - h;
  lm = fd_loss(f);
  arr[i] = x0;
  return (lp - lm) / (2 * h);
}

/* Compares the layer's gradient g [n] of arr (offset off) against finite
 * differences; returns the relative error. */
static double compare_grad(const fd_ctx *f, double *arr, int64_t off,
                           const float *g, int64_t n, double len, double gs,
                           const char *name, int index, const char *desc) {
  const double u = ldexp(1.0, -24);
  double *fd = malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
  double gmax = 0, e = 0;
  for (int64_t i = 0; i < n; i++) {
    fd[i] = fd_at(f, arr, off + i);
    if (fabs(fd[i]) > gmax)
      gmax = fabs(fd[i]);
  }
  for (int64_t i = 0; i < n; i++) {
    const double d = fabs((double)g[i] - fd[i]);
    if (!(d <= e))
      e = d;
  }
  const double budget = 2e-4 * gmax + 16 * u * sqrt(len) * gs;
  CHECK(e <= budget, "case %d grad %s: err %.3g > budget %.3g (max %.3g) (%s)",
        index, name, e, budget, gmax, desc);
  free(fd);
  /* relative to the tensor's largest gradient, or to the largest gradient
   * of the case for a tensor whose gradient vanishes (a key bias: softmax
   * ignores a constant added to a row's scores) */
  return e / (gmax > 1e-3 * gs ? gmax : gs);
}

static void grad_compare_all(const tcase *t, attn_layer *L, const run_bufs *b,
                             fd_ctx *f, int index) {
  const attn_layer_config *c = &t->cfg;
  const double len =
      (double)(c->d_model + c->kdim + t->Sk + c->heads_q * c->head_dim_v);
  int64_t ng;
  const float *grads = attn_layer_grads(L, &ng);
  double e, gs = 1e-30;
  const float *ins[3] = {b->dx, b->dy, b->dval};
  const int64_t nin[3] = {rows_q(t) * c->d_model,
                          c->cross ? rows_k(t) * c->kdim : 0,
                          t->use_value ? rows_k(t) * c->vdim : 0};
  for (int64_t i = 0; i < ng; i++)
    gs = fmax(gs, fabs(grads[i]));
  for (int k = 0; k < 3; k++)
    for (int64_t i = 0; i < nin[k]; i++)
      gs = fmax(gs, fabs(ins[k][i]));
  for (int i = 0; i < attn_layer_num_params(L); i++) {
    attn_layer_param p;
    attn_layer_param_get(L, i, &p);
    e = compare_grad(f, f->th, p.offset, grads + p.offset, p.count, len, gs,
                     p.name, index, t->desc);
    if (e > max_grad_err)
      max_grad_err = e;
  }
  e = compare_grad(f, f->x, 0, b->dx, rows_q(t) * c->d_model, len, gs, "dx",
                   index, t->desc);
  if (e > max_grad_err)
    max_grad_err = e;
  if (c->cross) {
    e = compare_grad(f, f->y, 0, b->dy, rows_k(t) * c->kdim, len, gs, "dy",
                     index, t->desc);
    if (e > max_grad_err)
      max_grad_err = e;
  }
  if (t->use_value) {
    e = compare_grad(f, f->v, 0, b->dval, rows_k(t) * c->vdim, len, gs,
                     "dvalue", index, t->desc);
    if (e > max_grad_err)
      max_grad_err = e;
  }
}

/* Gradients accumulate into the buffer; input gradients are overwritten. */
static void check_accumulate(attn_layer *L, attn_layer_call *c, const float *g1,
                             int64_t ng, const run_bufs *b, int64_t nx,
                             int index) {
  float *x1 = malloc((size_t)nx * sizeof(float));
  const float *g2 = attn_layer_grads(L, NULL);
  int ok_g = 1, ok_x = 1;
  memcpy(x1, b->dx, (size_t)nx * sizeof(float));
  CHECK(attn_layer_backward(L, NULL, c) == ATTN_OK, "case %d backward 2",
        index);
  for (int64_t i = 0; i < ng; i++)
    if (fabsf(g2[i] - 2 * g1[i]) > 1e-5f * (1 + fabsf(g1[i])))
      ok_g = 0;
  for (int64_t i = 0; i < nx; i++)
    if (b->dx[i] != x1[i])
      ok_x = 0;
  CHECK(ok_g, "case %d: a second backward must add the same gradients", index);
  CHECK(ok_x, "case %d: a second backward must overwrite dx the same", index);
  free(x1);
}

static void grad_case(tc_rng *r, int index) {
  tcase t;
  attn_layer *L = NULL;
  run_bufs b;
  char err[256] = "";
  poffs po;
  float slopes[64];
  memset(&t, 0, sizeof t);
  gen_config(r, &t, 1);
  t.cfg.position = (attn_layer_position)(index % 6); /* each scheme */
  if (t.cfg.position == ATTN_LAYER_POS_ROPE) {
    t.cfg.head_dim += t.cfg.head_dim & 1;
    gen_rope(r, &t);
  }
  t.cfg.max_positions = 24;
  gen_call(r, &t, 1);
  if (create_layer(&t, &L, err, sizeof err) != ATTN_OK) {
    CHECK(0, "grad case %d create: %s (%s)", index, err, t.desc);
    tcase_free(&t);
    return;
  }
  randomize_params(r, L);
  alloc_bufs(r, &t, &b);
  attn_layer_call c = make_call(&t, &b);
  c.error_message = err;
  c.error_message_size = sizeof err;
  attn_status st = attn_layer_forward(L, NULL, &c);
  if (st == ATTN_OK)
    st = attn_layer_backward(L, NULL, &c);
  CHECK(st == ATTN_OK, "grad case %d: %s: %s (%s)", index, attn_strerror(st),
        err, t.desc);
  if (st == ATTN_OK) {
    int64_t np;
    const float *params = attn_layer_params(L, &np);
    fd_ctx f;
    get_offs(L, &t, &po);
    attn_alibi_slopes(t.cfg.heads_q, slopes);
    f.t = &t;
    f.po = &po;
    f.slopes = t.cfg.position == ATTN_LAYER_POS_ALIBI ? slopes : NULL;
    f.th = to_double(params, np);
    f.x = to_double(b.x, rows_q(&t) * t.cfg.d_model);
    f.y = to_double(b.y, rows_k(&t) * t.cfg.kdim);
    f.v = to_double(b.val, rows_k(&t) * t.cfg.vdim);
    f.G = to_double(b.dout, rows_q(&t) * t.cfg.d_out);
    grad_compare_all(&t, L, &b, &f, index);
    float *g1 = malloc((size_t)np * sizeof(float));
    memcpy(g1, attn_layer_grads(L, NULL), (size_t)np * sizeof(float));
    check_accumulate(L, &c, g1, np, &b, rows_q(&t) * t.cfg.d_model, index);
    free(g1);
    free(f.th);
    free(f.x);
    free(f.y);
    free(f.v);
    free(f.G);
  }
  free_bufs(&b);
  attn_layer_free(L);
  tcase_free(&t);
}

/* ---------------------------------------------------------------------- */
/* Bad inputs                                                             */
/* ---------------------------------------------------------------------- */
static void expect_create(const attn_layer_config *c, attn_status want,
                          const char *what) {
  attn_layer *L = (attn_layer *)(uintptr_t)1;
  char err[256] = "";
  attn_status st = attn_layer_create(c, &L, err, sizeof err);
  CHECK(st == want && (want == ATTN_OK ? L != NULL : L == NULL && err[0]),
        "create %s: got %d (%s) want %d", what, (int)st, err, (int)want);
  if (st == ATTN_OK)
    attn_layer_free(L);
}

static void status_create(void) {
  attn_layer_config c, d;
  attn_layer_config_init(&d);
  d.d_model = 16;
  d.heads_q = 4;
  c = d;
  c.d_model = 0;
  expect_create(&c, ATTN_ERR_INVALID_SHAPE, "d_model 0");
  c = d;
  c.heads_kv = 3;
  expect_create(&c, ATTN_ERR_HEAD_RATIO, "heads 4/3");
  c = d;
  c.heads_q = 3;
  expect_create(&c, ATTN_ERR_INVALID_SHAPE, "d_model 16 / 3 heads");
  c = d;
  c.head_dim = 300;
  expect_create(&c, ATTN_ERR_HEAD_DIM, "head_dim 300");
  c = d;
  c.cross = 1;
  c.fused_qkv = 1;
  expect_create(&c, ATTN_ERR_INVALID_ARGUMENT, "fused with cross");
  c = d;
  c.fused_qkv = 1;
  c.bias_k = 0;
  expect_create(&c, ATTN_ERR_INVALID_ARGUMENT, "fused, mixed biases");
  c = d;
  c.kdim = 8;
  expect_create(&c, ATTN_ERR_INVALID_ARGUMENT, "kdim without cross");
  c = d;
  c.position = (attn_layer_position)9;
  expect_create(&c, ATTN_ERR_INVALID_ARGUMENT, "position 9");
  c = d;
  c.position = ATTN_LAYER_POS_T5;
  c.t5_buckets = 0;
  expect_create(&c, ATTN_ERR_INVALID_ARGUMENT, "t5 buckets 0");
  {
    attn_rope rope;
    attn_rope_init(&rope);
    rope.dims = 3;
    c = d;
    c.position = ATTN_LAYER_POS_ROPE;
    c.rope = &rope;
    expect_create(&c, ATTN_ERR_INVALID_ARGUMENT, "rope dims 3");
  }
  {
    attn_layer *L = NULL;
    CHECK(attn_layer_create(NULL, &L, NULL, 0) == ATTN_ERR_NULL_POINTER,
          "create NULL config");
    CHECK(attn_layer_create_sized(&d, 3, sizeof(attn_rope), &L, NULL, 0) ==
              ATTN_ERR_ABI,
          "create with an unknown config size");
  }
  expect_create(&d, ATTN_OK, "good config");
}

static attn_status call_status(attn_layer *L, attn_layer_call *c, int bwd,
                               char *err, size_t n) {
  err[0] = 0;
  c->error_message = err;
  c->error_message_size = n;
  return bwd ? attn_layer_backward(L, NULL, c) : attn_layer_forward(L, NULL, c);
}

static void status_calls(void) {
  attn_layer_config cfg;
  attn_layer *L = NULL, *X = NULL;
  float x[2 * 5 * 8], out[2 * 5 * 8], dout[2 * 5 * 8], dx[2 * 5 * 8];
  float y[2 * 3 * 6];
  char err[256];
  attn_layer_call c, d;
  attn_params opt;
  attn_status st;
  memset(x, 0, sizeof x);
  memset(dout, 0, sizeof dout);
  memset(y, 0, sizeof y);
  attn_layer_config_init(&cfg);
  cfg.d_model = 8;
  cfg.heads_q = 2;
  attn_layer_create(&cfg, &L, NULL, 0);
  cfg.cross = 1;
  cfg.kdim = 6;
  cfg.vdim = 4;
  attn_layer_create(&cfg, &X, NULL, 0);
  attn_layer_call_init(&d);
  d.batch = 2;
  d.seq_q = 5;
  d.x = x;
  d.out = out;
  d.dout = dout;
  d.dx = dx;
#define EXPECT(L_, bwd, want, what)                                            \
  do {                                                                         \
    st = call_status(L_, &c, bwd, err, sizeof err);                            \
    CHECK(st == (want) && err[0], "%s: got %d (%s) want %d", what, (int)st,    \
          err, (int)(want));                                                   \
  } while (0)
  c = d;
  c.x = NULL;
  EXPECT(L, 0, ATTN_ERR_NULL_POINTER, "x NULL");
  c = d;
  c.out = NULL;
  EXPECT(L, 0, ATTN_ERR_NULL_POINTER, "out NULL");
  c = d;
  c.seq_q = 0;
  EXPECT(L, 0, ATTN_ERR_INVALID_SHAPE, "seq_q 0");
  c = d;
  c.seq_k = 4;
  EXPECT(L, 0, ATTN_ERR_INVALID_SHAPE, "self with seq_k != seq_q");
  c = d;
  c.y = y;
  EXPECT(L, 0, ATTN_ERR_INVALID_ARGUMENT, "self with y");
  c = d;
  c.batch = (int64_t)1 << 20;
  c.seq_q = (int64_t)1 << 12;
  EXPECT(L, 0, ATTN_ERR_OVERFLOW, "batch * seq above 2^31");
  c = d;
  c.seq_k = 3;
  EXPECT(X, 0, ATTN_ERR_NULL_POINTER, "cross without y");
  c = d;
  c.seq_k = 3;
  c.y = y;
  EXPECT(X, 0, ATTN_ERR_INVALID_SHAPE, "cross, vdim != kdim, no value");
  c = d;
  c.workspace = dx;
  c.workspace_size = 16;
  EXPECT(L, 0, ATTN_ERR_WORKSPACE_TOO_SMALL, "workspace too small");
  c = d;
  c.activations = dx;
  c.activations_size = 16;
  EXPECT(L, 0, ATTN_ERR_WORKSPACE_TOO_SMALL, "activations too small");
  attn_params_init(&opt);
  opt.q.data = x;
  c = d;
  c.options = &opt;
  EXPECT(L, 0, ATTN_ERR_INVALID_ARGUMENT, "options.q set");
  attn_params_init(&opt);
  opt.window_left = -5;
  c = d;
  c.options = &opt;
  EXPECT(L, 0, ATTN_ERR_INVALID_WINDOW, "window -5 (the core's check)");
  c = d;
  c.options = &opt;
  c.options_size = 12;
  EXPECT(L, 0, ATTN_ERR_ABI, "options_size 12");
  c = d;
  EXPECT(L, 1, ATTN_ERR_INVALID_ARGUMENT, "backward before any forward");
  c = d;
  CHECK(call_status(L, &c, 0, err, sizeof err) == ATTN_OK, "forward: %s", err);
  c.batch = 1;
  EXPECT(L, 1, ATTN_ERR_INVALID_ARGUMENT, "backward with other shapes");
  c = d;
  c.dout = NULL;
  EXPECT(L, 1, ATTN_ERR_NULL_POINTER, "dout NULL");
  CHECK(attn_layer_forward(NULL, NULL, &d) == ATTN_ERR_NULL_POINTER,
        "NULL layer");
  CHECK(attn_layer_forward_sized(L, NULL, &d, 7) == ATTN_ERR_ABI,
        "unknown call size");
  {
    attn_layer_param p;
    CHECK(attn_layer_param_find(L, "nope", &p) == ATTN_ERR_INVALID_ARGUMENT,
          "unknown parameter name");
    CHECK(attn_layer_param_get(L, 99, &p) == ATTN_ERR_INVALID_ARGUMENT,
          "parameter index 99");
  }
#undef EXPECT
  attn_layer_free(L);
  attn_layer_free(X);
  attn_layer_free(NULL);
}

/* ---------------------------------------------------------------------- */
/* No allocation with caller buffers                                      */
/* ---------------------------------------------------------------------- */
static void noalloc_case(attn_layer_position pos, int cross, int64_t sq) {
  tcase t;
  tc_rng r = {42 + (uint64_t)pos};
  attn_layer *L = NULL;
  run_bufs b;
  size_t na = 0, nw = 0;
  long n_fwd, n_bwd;
  memset(&t, 0, sizeof t);
  attn_layer_config_init(&t.cfg);
  t.cfg.d_model = 32;
  t.cfg.heads_q = 4;
  t.cfg.heads_kv = 2;
  t.cfg.head_dim = 8;
  t.cfg.head_dim_v = 8;
  t.cfg.d_out = 32;
  t.cfg.cross = cross;
  t.cfg.kdim = t.cfg.vdim = 32;
  t.cfg.position = pos;
  attn_params_init(&t.opt);
  t.opt.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  t.opt.num_threads = 1;
  t.B = 2;
  t.Sq = sq; /* 70: the tiled forward; 5: the decode kernel's rows */
  t.Sk = cross ? 50 : sq;
  create_layer(&t, &L, NULL, 0);
  alloc_bufs(&r, &t, &b);
  attn_layer_call c = make_call(&t, &b);
  CHECK(attn_layer_buffer_sizes(L, NULL, &c, &na, &nw) == ATTN_OK,
        "buffer sizes");
  void *act = aligned_alloc(64, (na + 63) / 64 * 64);
  void *ws = aligned_alloc(64, (nw + 63) / 64 * 64);
  c.activations = act;
  c.activations_size = na;
  c.workspace = ws;
  c.workspace_size = nw;
  attn_layer_forward(L, NULL, &c); /* warm-up: one-time setup */
  attn_layer_backward(L, NULL, &c);
  atomic_store(&n_allocs, 0);
  atomic_store(&counting, 1);
  attn_status s1 = attn_layer_forward(L, NULL, &c);
  atomic_store(&counting, 0);
  n_fwd = atomic_load(&n_allocs);
  atomic_store(&n_allocs, 0);
  atomic_store(&counting, 1);
  attn_status s2 = attn_layer_backward(L, NULL, &c);
  atomic_store(&counting, 0);
  n_bwd = atomic_load(&n_allocs);
  CHECK(s1 == ATTN_OK && s2 == ATTN_OK, "noalloc calls pos %d", (int)pos);
  CHECK(n_fwd == 0 && n_bwd == 0,
        "pos %d cross %d: %ld allocations in forward, %ld in backward",
        (int)pos, cross, n_fwd, n_bwd);
  printf("noalloc pos=%d cross=%d seq_q=%lld: activations %zu B, workspace "
         "%zu B, allocations forward %ld backward %ld\n",
         (int)pos, cross, (long long)sq, na, nw, n_fwd, n_bwd);
  free(act);
  free(ws);
  free_bufs(&b);
  attn_layer_free(L);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  const char *env = getenv("ATTN_TEST_CASES");
  const int cases = env && *env ? atoi(env) : 300;
  const int gcases = cases / 5 > 24 ? cases / 5 : 24;
  tc_rng r = {20261129};
  for (int i = 0; i < cases; i++) {
    tc_rng cr = {tc_case_seed(r.s, (uint64_t)i)};
    forward_case(&cr, i);
  }
  printf("forward: %d cases, worst error / budget %.3g\n", cases, max_fwd_err);
  for (int i = 0; i < gcases; i++) {
    tc_rng cr = {tc_case_seed(r.s ^ 0xABCDu, (uint64_t)i)};
    grad_case(&cr, i);
  }
  printf("gradients: %d cases, worst relative error vs finite differences "
         "%.3g\n",
         gcases, max_grad_err);
  status_create();
  status_calls();
  for (int pos = 0; pos <= 5; pos++)
    for (int k = 0; k < 2; k++)
      noalloc_case((attn_layer_position)pos, (pos + k) % 2, k ? 5 : 70);
  printf("%ld passed, %ld failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
