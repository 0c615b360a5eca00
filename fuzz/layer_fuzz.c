/*
 * layer_fuzz.c - libFuzzer target for the multi-head attention layer of
 * attn/layer.h (libattn_layer): attn_layer_config_init, attn_layer_create,
 * attn_layer_free, attn_layer_init_weights, the parameter listing
 * (attn_layer_num_params, _param_get, _param_find), attn_layer_buffer_sizes,
 * attn_layer_forward, attn_layer_backward, attn_layer_decode and its
 * workspace size.
 *
 * Draws: a config hostile in every field (widths and head counts zero,
 * negative or past the library's limits, heads_kv not dividing heads_q,
 * head dims past 256, bias flags, fused or separate projections, self or
 * cross attention with kdim/vdim, every position scheme with its settings,
 * RoPE descriptions valid and not); for a valid config, weights from a
 * value stream and a call of tiny shapes (batch, sequences, padded by
 * kv_lens or packed by cu_seqlens with rows past the last sequence,
 * causal and window masks, position offsets, a custom scale, caller or own
 * buffers) with one of its rules broken now and then; the core's score
 * options of the call's attn_params template (carve_extras): softcap,
 * attention sinks (some heads -inf: no sink) with dsinks asked of the
 * backward, an additive bias (some elements -inf) with dbias and a boolean
 * mask, each of every broadcast shape [b|1, hq|1, sq|1, sk|1] (packed
 * batches: seq axes of the longest sequence or longer), dropout with a
 * seed, and rarely a NaN or +-inf in x; one of their rules broken now and
 * then (softcap negative or not finite, a NaN or +inf sink, a bias or mask
 * of a wrong shape or dtype, dropout_p outside [0, 1), dsinks without
 * sinks, dbias without bias or of another shape: the last two the forward
 * may refuse too, since it sizes the backward's workspace); for decoding,
 * a KV cache (f32, bf16 or f16, contiguous or paged) fed a prompt and then
 * one token at a time, with softcap and sinks in the template (and a NaN
 * sink, dropout or a negative softcap as a broken rule).
 *
 * Checks:
 * - no crash or sanitizer report, no leak (create/free, every call);
 * - a config or call the harness knows to be invalid gets a status other
 *   than ATTN_OK and a message, and changes none of the call's outputs, the
 *   gradients or (decode) the cache; a valid one gets ATTN_OK;
 * - the parameter listing is the header's (names, order, shapes, offsets,
 *   counts); create's weights are attn_layer_init_weights(.., 0)'s and
 *   within PyTorch's initialisation ranges;
 * - the forward against a double-precision oracle of the layer written
 *   here (absolute positions, projections, RoPE, masks, ALiBi, T5,
 *   softmax, output projection), element by element within a bound carried
 *   through the oracle from the f32 operations (see "error bounds");
 * - the backward (parameter gradients added into the gradient buffer, dx,
 *   dy, dvalue overwritten) against the oracle's analytic gradients in
 *   double, with bounds carried the same way;
 * - the same bits on 1 and 3 threads (forward, backward, decode);
 * - decoding a prompt and then single tokens through a KV cache gives the
 *   rows of the causal forward over the same tokens (the same oracle and
 *   bounds, plus the cache's storage rounding);
 * - the template's options in the oracle: softcap, sinks (lse and P over
 *   the sink's term, dsinks[h] = -sum_i exp(sinks[h] - lse_i) D_i), the
 *   bias added after ALiBi/T5 (dbias = dS summed over its broadcast axes,
 *   before softcap's chain rule; every element overwritten), the mask and
 *   -inf bias elements as masked keys, dropout's factor z of
 *   attn_dropout_keep (O = sum P z V; dV = (P z)^T dO, dS = P (z dP - D));
 * - non-finite x: the forward's rows whose attention row sees a non-finite
 *   Q, K or V element (attn.h: o is NaN) are non-finite in every element;
 *   the other rows are within their bounds, except rows attn.h lets a
 *   masked key's non-finite V reach (self-attention, the non-finite token
 *   a key of the row's sequence: "0 * x" inside a tile), which may be
 *   non-finite instead; the backward only runs (ATTN_OK, the same on 3
 *   threads up to NaN payloads). With softcap only NaN is drawn, since
 *   tanh(+-inf) is finite, and no -inf bias elements (NaN + -inf is NaN).
 *
 * Error bounds (first order in u = 2^-24, f32's unit roundoff; g(n) =
 * n u / (1 - n u)). Every intermediate v of the oracle carries e(v), a
 * bound on |library's f32 value - v|:
 * - a sum of n products (OpenBLAS's GEMMs in any order, the bias as one
 *   more term): g(n + 1) sum |a||b| + sum (|b| e(a) + |a| e(b));
 * - an f32 addition or a rounding to f32: u |result| more;
 * - RoPE (rope.c: angles and rotation in double, one rounding to f32):
 *   m (e(x_a) + e(x_b)) + m (|x_a| + |x_b|) (angle error + 10 u_double) +
 *   u |result|, the angle error |pos f| 64 u_double + 2^-48 (the
 *   frequencies of the few descriptions drawn here are within 64 u_double
 *   relative: positions_fuzz checks them and derives that bound);
 * - the scores s_j = scale q.k_j + bias_j: delta_j = scale (g(d + 2)
 *   sum |q||k| + sum (|k| e(q) + |q| e(k))) + 8 u (A_j + |max_j s_j|),
 *   A_j = scale sum |q||k| + |bias_j| (the scale, the bias additions, the
 *   max subtraction and a base-2 change, a few roundings each); ALiBi's
 *   slope (rounded to f32) times the distance: 2 u |slope dist| more;
 * - the probabilities: scores off by at most D = max_j delta_j move every
 *   P_j by a factor within exp(+-2 D) (numerator and normaliser); exp in
 *   f32 within 4 u, the normaliser's sum g(n), the online softmax's
 *   rescalings 4 u each (at most n): relative error
 *   r = exp(2 D + (6 n + 16) u) - 1;
 * - O = sum_j P_j V_j: sum_j P_j (r |V_j| + e(V_j)) + g(n) sum P_j |V_j|;
 * - the backward the same way through dO = dout Wo, D_i = dO_i . O_i,
 *   dP = dO V^T, dS = P (dP - D), dQ = scale dS K, dK = scale dS^T Q,
 *   dV = P^T dO (P recomputed from the stored LSE: r plus the LSE's own
 *   error D + (n + 8) u + u |lse|), the inverse rotation, the weight
 *   gradients dW = dY^T X, the bias sums (blocks of 64 rows), dx = dY W.
 * The template's options:
 * - softcap c: t = s / c (1/c rounded, the product: 2 u |t|); vf_tanh
 *   within 2 u relative below |t| = 0.4 (Taylor to t^13, truncation under
 *   1e-8 relative, Horner in FMAs) and 9 u absolute above (exp2's
 *   polynomial within 2e-7 + its roundings, say 8 u, its argument 2 u |t|
 *   relative: 2/(e + 1) <= 0.62 carries 0.62 (8 u + 2 u) + 8 u |t| /
 *   (e^2|t| + 1) <= 7.4 u, the subtraction u), i.e. 24 u relative since
 *   |tanh| >= 0.379 there; t's 2 u moves tanh by sech^2(t) 2 u |t| <=
 *   2 u |tanh t|; c tanh rounded: u. So c tanh(s_lib / c) is within
 *   27 u |c tanh| (taken as 32 u) of c tanh(s' / c) for the library's
 *   score s' before the cap, and c tanh(. / c), whose slope is sech^2,
 *   moves delta_j to sech^2(max(0, |s| - delta_j) / c) delta_j (the mean
 *   value at the point nearest 0). A_j keeps scale sum |q||k| >= |c
 *   tanh(s / c)|, so the 8 u (A_j + |max s|) of the later roundings still
 *   holds. The backward's factor 1 - tanh^2 (f32) is off by
 *   e_t (2 |tanh| + e_t) + 2 u, e_t = delta_j / c (the capped score's
 *   bound over c), and dS' = dS (1 - tanh^2) adds that times |dS| + e(dS)
 *   and one rounding; dBias and the T5 gradient take dS before it.
 * - sinks: one more term exp(sink - m) of the normaliser, its logit exact:
 *   the sink's join (the running max's rescaling exp2((m - m') log2 e), the
 *   sink's own exp2((sink - m') log2 e), m' = max(m, sink)) moves it by
 *   D_s = 8 u (|sink| + |max s| + |m'|) relative to the keys' terms, so D
 *   becomes max(D, D_s) and n counts n + 1 terms in r and the LSE's bound;
 *   a row without keys has o = 0 and lse = sink exactly. dsinks[h]: the
 *   sink's probability exp(sink - lse_i) from the library's lse, relative
 *   error expm1(e(lse) + 8 u (|sink| + |lse|)) (the subtraction, log2 e,
 *   exp), times D_i with its bound, summed over rows: g(rows + 2) of the
 *   magnitudes.
 * - bias: an f32 input, exact; its addition is one of the roundings of
 *   8 u (A_j + |max s|), A_j = scale sum |q||k| + |ALiBi + T5 + bias|.
 *   -inf elements and the mask remove the key (P = 0, no bound). dbias:
 *   the e(dS) of its terms plus g(terms + 2) of their magnitudes (the
 *   kernel's sums in any order).
 * - dropout p: z = 1 / (1 - p) rounded to f32 (u) and P z rounded (u):
 *   O's sum takes g(n + 2) over z (P + e(P)) |V|; dV the same with
 *   g(rows + 3); dP z: 2 u |dP z| more.
 */
#include "attn.h"
#include "attn/layer.h"
#include "carve.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define U (1.0 / 16777216.0)          /* 2^-24 */
#define UD (1.0 / 9007199254740992.0) /* 2^-53 */
#define NT(t) ((int)(sizeof(t) / sizeof((t)[0])))
#define POSMAX ((int64_t)1 << 48)
#define MAXSEQ 4
#define MAXHEADS 8 /* heads_q of the valid configs drawn: at most 4 */

static void fail(const char *what, long long a, long long b, double got,
                 double want) {
  fprintf(stderr, "layer_fuzz: %s [%lld, %lld]: got %.9g, want %.9g\n", what, a,
          b, got, want);
  abort();
}

static double gam(double n) { return n * U / (1.0 - n * U); }

static void *xcalloc(size_t n, size_t s) {
  void *p = calloc(n ? n : 1, s ? s : 1);
  if (!p)
    abort();
  return p;
}

/* ---- the config --------------------------------------------------------- */

static const int64_t t_dmodel[] = {
    4, 8, 6, 12, 16, 3, 5, 1, 2, 0, -1, ((int64_t)1 << 30) + 1, 10, 8};
static const int64_t t_heads[] = {1, 2, 3, 4, 2, 1, 0, -1, 65537, 4};
static const int64_t t_headskv[] = {0, 0, 1, 2, 3, -1, 0, 99, 1};
static const int64_t t_hdim[] = {0, 0, 2, 4, 3, 8, 1, 257, -1, 6, 0};
static const int64_t t_hdimv[] = {0, 0, 2, 3, 5, 300, -3, 0};
static const int64_t t_dout[] = {0, 0, 3, 5, 8, -2, ((int64_t)1 << 30) + 1};
static const int64_t t_kdim[] = {0, 3, 6, -1, 0, 5};
static const int64_t t_vdim[] = {0, 2, 5, 0, -4};
static const int64_t t_maxpos[] = {2048, 64, 8, 1, 0, ((int64_t)1 << 24) + 1};
static const double t_sbase[] = {0, 10000, 100, 1.0, -1, NAN, 0.5, 2};
static const int64_t t_buckets[] = {32, 8, 1, 2, 3, 0, 65537, 16};
static const int64_t t_maxdist[] = {128, 4, 1, 0, 16};

/* The RoPE descriptions drawn (frequencies well conditioned: within
 * 64 u_double relative, see the header comment). */
enum {
  R_NULL,
  R_DEFAULT,
  R_DIMS2,
  R_INTERLEAVED,
  R_LINEAR,
  R_YARN,
  R_LLAMA3,
  R_BASE1, /* invalid: base <= 1 */
  R_DIMS3, /* invalid: odd dims */
  R_NTK2,  /* invalid: NTK with 2 dims */
  R_N
};

static void make_rope(int sel, attn_rope *r) {
  attn_rope_init(r);
  switch (sel) {
  case R_DIMS2:
    r->dims = 2;
    break;
  case R_INTERLEAVED:
    r->style = ATTN_ROPE_INTERLEAVED;
    r->base = 100;
    break;
  case R_LINEAR:
    r->scaling = ATTN_ROPE_SCALING_LINEAR;
    r->factor = 2;
    break;
  case R_YARN:
    r->scaling = ATTN_ROPE_SCALING_YARN;
    r->factor = 4;
    r->original_max_position = 16;
    r->base = 1000;
    break;
  case R_LLAMA3:
    r->scaling = ATTN_ROPE_SCALING_LLAMA3;
    r->factor = 8;
    r->base = 500000;
    r->original_max_position = 32;
    break;
  case R_BASE1:
    r->base = 1.0;
    break;
  case R_DIMS3:
    r->dims = 3;
    break;
  case R_NTK2:
    r->scaling = ATTN_ROPE_SCALING_NTK;
    r->factor = 4;
    r->dims = 2;
    break;
  default:
    break;
  }
}

/* The frequencies (LINEAR's 1/factor in) and mscale of a valid rope for
 * dims d, as the header defines them (Hugging Face's formulas). */
static void rope_freqs(const attn_rope *r, int64_t d, double *f, double *m) {
  const double tp = 6.283185307179586;
  *m = 1.0;
  for (int64_t i = 0; i < d / 2; i++) {
    double v = pow(r->base, -(double)(2 * i) / (double)d);
    if (r->scaling == ATTN_ROPE_SCALING_LINEAR) {
      v /= r->factor;
    } else if (r->scaling == ATTN_ROPE_SCALING_YARN) {
      double lo = floor((double)d *
                        log(r->original_max_position / (r->beta_fast * tp)) /
                        (2 * log(r->base)));
      double hi =
          ceil((double)d * log(r->original_max_position / (r->beta_slow * tp)) /
               (2 * log(r->base)));
      lo = fmax(lo, 0.0);
      hi = fmin(hi, (double)(d - 1));
      if (lo == hi)
        hi += 0.001;
      double ramp = ((double)i - lo) / (hi - lo);
      ramp = fmin(fmax(ramp, 0.0), 1.0);
      v = v / r->factor * ramp + v * (1.0 - ramp);
    } else if (r->scaling == ATTN_ROPE_SCALING_LLAMA3) {
      const double wl = tp / v, omp = r->original_max_position;
      if (wl > omp / r->low_freq_factor) {
        v /= r->factor;
      } else if (wl >= omp / r->high_freq_factor) {
        const double s = (omp / wl - r->low_freq_factor) /
                         (r->high_freq_factor - r->low_freq_factor);
        v = (1.0 - s) * v / r->factor + s * v;
      }
    }
    f[i] = v;
  }
  if (r->scaling == ATTN_ROPE_SCALING_YARN)
    *m = r->mscale > 0      ? r->mscale
         : r->factor <= 1.0 ? 1.0
                            : 0.1 * log(r->factor) + 1.0;
}

typedef struct cfgx {
  attn_layer_config c; /* as passed */
  attn_rope rope;
  int rope_sel;
  int bad_size; /* 1: config size, 2: rope size */
  /* resolved (valid only) */
  int valid;
  int64_t E, hq, hkv, d, dv, dout, kdim, vdim, nq, nk, nv, no;
  double freq[128], mscale;
  int64_t rdims;
} cfgx;

/* The header's rules (and the library's documented limits: widths up to
 * 2^30, heads_q up to 65536, max_positions up to 2^24, t5_buckets up to
 * 65536). */
static void resolve(cfgx *x) {
  const attn_layer_config *c = &x->c;
  x->valid = 0;
  if (x->bad_size)
    return;
  const int64_t W = (int64_t)1 << 30;
  if (c->d_model < 1 || c->d_model > W || c->heads_q < 1 || c->heads_q > 65536)
    return;
  x->E = c->d_model;
  x->hq = c->heads_q;
  x->hkv = c->heads_kv ? c->heads_kv : c->heads_q;
  if (x->hkv < 1 || x->hkv > x->hq || x->hq % x->hkv)
    return;
  x->d = c->head_dim;
  if (!x->d) {
    if (x->E % x->hq)
      return;
    x->d = x->E / x->hq;
  }
  x->dv = c->head_dim_v ? c->head_dim_v : x->d;
  if (x->d < 1 || x->d > 256 || x->dv < 1 || x->dv > 256)
    return;
  x->dout = c->d_out ? c->d_out : x->E;
  if (x->dout < 1 || x->dout > W)
    return;
  if (c->cross != 0 && c->cross != 1)
    return;
  if (!c->cross && (c->kdim || c->vdim))
    return;
  x->kdim = c->kdim ? c->kdim : x->E;
  x->vdim = c->vdim ? c->vdim : x->kdim;
  if (x->kdim < 1 || x->kdim > W || x->vdim < 1 || x->vdim > W)
    return;
  if (c->fused_qkv && c->cross)
    return;
  if (c->fused_qkv && (!c->bias_q != !c->bias_k || !c->bias_q != !c->bias_v))
    return;
  if ((int)c->position < 0 || (int)c->position > 5)
    return;
  if (c->position == ATTN_LAYER_POS_LEARNED &&
      (c->max_positions < 1 || c->max_positions > ((int64_t)1 << 24)))
    return;
  if (c->position == ATTN_LAYER_POS_SINUSOIDAL &&
      (!(c->sinusoidal_base >= 0) || !isfinite(c->sinusoidal_base) ||
       (c->sinusoidal_base > 0 && c->sinusoidal_base <= 1)))
    return;
  if (c->position == ATTN_LAYER_POS_T5 &&
      (c->t5_buckets < 1 || c->t5_buckets > 65536 || c->t5_max_distance < 1 ||
       (c->t5_bidirectional && c->t5_buckets < 2)))
    return; /* bidirectional needs half the buckets for each direction */
  if (c->position == ATTN_LAYER_POS_ROPE) {
    const attn_rope *r = &x->rope;
    const int64_t rd = r->dims ? r->dims : x->d;
    if (x->rope_sel == R_BASE1 || x->rope_sel == R_DIMS3 ||
        x->rope_sel == R_NTK2 || rd % 2 || rd > x->d)
      return;
    x->rdims = rd;
    rope_freqs(r, rd, x->freq, &x->mscale);
  }
  x->nq = x->hq * x->d;
  x->nk = x->hkv * x->d;
  x->nv = x->hkv * x->dv;
  x->no = x->hq * x->dv;
  x->valid = 1;
}

/* ---- the parameter listing --------------------------------------------- */

typedef struct plist {
  int n;
  const char *name[16];
  int64_t rows[16], cols[16], off[16];
  int64_t total;
  /* offsets by role (-1: absent) */
  int64_t w[4], b[4], pos, pos_kv, rel;
} plist;

static void plist_add(plist *p, const char *name, int64_t rows, int64_t cols) {
  p->name[p->n] = name;
  p->rows[p->n] = rows;
  p->cols[p->n] = cols;
  p->off[p->n] = p->total;
  p->total += rows * (cols ? cols : 1);
  p->n++;
}

/* The header's listing, in its order. */
static void expected_params(const cfgx *x, plist *p) {
  const attn_layer_config *c = &x->c;
  memset(p, 0, sizeof *p);
  for (int i = 0; i < 4; i++)
    p->w[i] = p->b[i] = -1;
  p->pos = p->pos_kv = p->rel = -1;
  if (c->fused_qkv) {
    const int64_t n = x->nq + x->nk + x->nv;
    p->w[0] = p->total;
    p->w[1] = p->total + x->nq * x->E;
    p->w[2] = p->total + (x->nq + x->nk) * x->E;
    plist_add(p, "in_proj_weight", n, x->E);
    if (c->bias_q) {
      p->b[0] = p->total;
      p->b[1] = p->total + x->nq;
      p->b[2] = p->total + x->nq + x->nk;
      plist_add(p, "in_proj_bias", n, 0);
    }
  } else {
    p->w[0] = p->total;
    plist_add(p, "q_proj_weight", x->nq, x->E);
    p->w[1] = p->total;
    plist_add(p, "k_proj_weight", x->nk, x->kdim);
    p->w[2] = p->total;
    plist_add(p, "v_proj_weight", x->nv, x->vdim);
    if (c->bias_q) {
      p->b[0] = p->total;
      plist_add(p, "q_proj_bias", x->nq, 0);
    }
    if (c->bias_k) {
      p->b[1] = p->total;
      plist_add(p, "k_proj_bias", x->nk, 0);
    }
    if (c->bias_v) {
      p->b[2] = p->total;
      plist_add(p, "v_proj_bias", x->nv, 0);
    }
  }
  p->w[3] = p->total;
  plist_add(p, "out_proj.weight", x->dout, x->no);
  if (c->bias_out) {
    p->b[3] = p->total;
    plist_add(p, "out_proj.bias", x->dout, 0);
  }
  if (c->position == ATTN_LAYER_POS_LEARNED) {
    p->pos = p->total;
    plist_add(p, "pos_table", c->max_positions, x->E);
    if (c->cross) {
      p->pos_kv = p->total;
      plist_add(p, "pos_table_kv", c->max_positions, x->kdim);
    }
  }
  if (c->position == ATTN_LAYER_POS_T5) {
    p->rel = p->total;
    plist_add(p, "rel_bias", c->t5_buckets, x->hq);
  }
}

static void check_listing(attn_layer *L, const plist *p) {
  if (attn_layer_num_params(L) != p->n)
    fail("num_params", attn_layer_num_params(L), p->n, 0, 0);
  int64_t cnt = -1;
  float *params = attn_layer_params(L, &cnt);
  float *grads = attn_layer_grads(L, NULL);
  if (cnt != p->total || !params || !grads)
    fail("params count", cnt, p->total, 0, 0);
  for (int i = 0; i < p->n; i++) {
    attn_layer_param q, f;
    memset(&q, 0, sizeof q);
    if (attn_layer_param_get(L, i, &q) != ATTN_OK)
      fail("param_get refused an index", i, p->n, 0, 0);
    if (!q.name || strcmp(q.name, p->name[i]) != 0 ||
        q.ndim != (p->cols[i] ? 2 : 1) || q.shape[0] != p->rows[i] ||
        q.shape[1] != (p->cols[i] ? p->cols[i] : 1) || q.offset != p->off[i] ||
        q.count != p->rows[i] * (p->cols[i] ? p->cols[i] : 1) ||
        q.data != params + p->off[i] || q.grad != grads + p->off[i]) {
      fprintf(stderr,
              "layer_fuzz: tensor %d: %s [%lld, %lld] at %lld, want "
              "%s [%lld, %lld] at %lld\n",
              i, q.name ? q.name : "(null)", (long long)q.shape[0],
              (long long)q.shape[1], (long long)q.offset, p->name[i],
              (long long)p->rows[i], (long long)p->cols[i],
              (long long)p->off[i]);
      fail("param_get: not the header's listing", i, 0, 0, 0);
    }
    memset(&f, 0, sizeof f);
    if (attn_layer_param_find(L, p->name[i], &f) != ATTN_OK ||
        f.name != q.name || f.ndim != q.ndim || f.shape[0] != q.shape[0] ||
        f.shape[1] != q.shape[1] || f.offset != q.offset ||
        f.count != q.count || f.data != q.data || f.grad != q.grad)
      fail("param_find differs from param_get", i, 0, 0, 0);
  }
  attn_layer_param q;
  if (attn_layer_param_get(L, p->n, &q) == ATTN_OK ||
      attn_layer_param_get(L, -1, &q) == ATTN_OK)
    fail("param_get accepted an index out of range", p->n, 0, 0, 0);
  if (attn_layer_param_find(L, "q_proj.weight", &q) == ATTN_OK ||
      attn_layer_param_find(L, "", &q) == ATTN_OK ||
      attn_layer_param_find(L, NULL, &q) == ATTN_OK)
    fail("param_find accepted a name it does not have", 0, 0, 0, 0);
  if (attn_layer_param_get_sized(L, 0, &q, 0) == ATTN_OK)
    fail("param_get accepted size 0", 0, 0, 0, 0);
}

/* create's weights are init_weights(0)'s, within PyTorch's ranges. */
static void check_init(attn_layer *L, const cfgx *x, const plist *p) {
  int64_t n;
  float *params = attn_layer_params(L, &n);
  float *copy = xcalloc((size_t)n, sizeof *copy);
  memcpy(copy, params, (size_t)n * sizeof *copy);
  if (attn_layer_init_weights(L, 0) != ATTN_OK ||
      memcmp(copy, params, (size_t)n * sizeof *copy) != 0)
    fail("create's weights are not init_weights(0)'s", 0, 0, 0, 0);
  if (attn_layer_init_weights(NULL, 1) == ATTN_OK)
    fail("init_weights(NULL) accepted", 0, 0, 0, 0);
  for (int i = 0; i < p->n; i++) {
    const float *t = params + p->off[i];
    const int64_t c = p->rows[i] * (p->cols[i] ? p->cols[i] : 1);
    const char *nm = p->name[i];
    double a = INFINITY;
    if (!p->cols[i])
      a = 0.0; /* biases */
    else if (strstr(nm, "proj_weight"))
      a = sqrt(6.0 / (double)(p->rows[i] + p->cols[i]));
    else if (!strcmp(nm, "out_proj.weight"))
      a = 1.0 / sqrt((double)p->cols[i]);
    else if (!strcmp(nm, "rel_bias"))
      a = 40.0 / sqrt((double)x->E); /* N(0, 1/E): far tails only */
    else
      a = 0.02 * 40.0; /* N(0, 0.02^2) */
    for (int64_t k = 0; k < c; k++)
      if (!(fabs(t[k]) <= a * (1 + U)))
        fail("init weight out of its range", i, k, t[k], a);
  }
  free(copy);
}

/* ---- the call ----------------------------------------------------------- */

typedef struct callx {
  int64_t B, Sq, Sk, nseq;
  int use_value, varlen, use_kvl, use_qoffs, use_koffs, use_opts;
  int32_t cu_q[MAXSEQ + 1], cu_k[MAXSEQ + 1], kvl[MAXSEQ];
  int64_t qoffs[MAXSEQ], koffs[MAXSEQ];
  attn_params opt;
  float scale_used;
  /* the core's score options in the template (opt.softcap, opt.sinks,
   * opt.bias, opt.mask, opt.dropout_p, set by carve_extras) and what the
   * backward is asked for (opt.dsinks, opt.dbias) */
  float sinks[MAXHEADS];
  float *bias;         /* [bsh], opt.bias.data when drawn */
  unsigned char *mask; /* [msh], opt.mask.data when drawn */
  int64_t bsh[4], msh[4];
  int want_dsinks, want_dbias;
  float dsinks[MAXHEADS]; /* opt.dsinks when wanted */
  float *dbias;           /* [bsh], opt.dbias.data when wanted */
  int nonfinite;          /* x[nf_at] = nf_val, NaN or +-inf */
  int64_t nf_at;
  float nf_val;
} callx;

/* Where sequence b's rows are. */
typedef struct geo {
  int64_t qr0, sq, kr0, cap, sk; /* sk: effective keys (kv_lens) */
  int64_t q0, k0;                /* core positions of row/key 0 */
} geo;

static void geom(const cfgx *x, const callx *c, int64_t b, geo *g) {
  (void)x;
  if (c->varlen) {
    g->qr0 = c->cu_q[b];
    g->sq = c->cu_q[b + 1] - c->cu_q[b];
    g->kr0 = c->cu_k[b];
    g->cap = c->cu_k[b + 1] - c->cu_k[b];
  } else {
    g->qr0 = b * c->Sq;
    g->sq = c->Sq;
    g->kr0 = b * c->Sk;
    g->cap = c->Sk;
  }
  g->sk = c->use_kvl ? c->kvl[b] : g->cap;
  g->q0 =
      g->sk - g->sq + c->opt.q_pos_offset + (c->use_qoffs ? c->qoffs[b] : 0);
  g->k0 = c->opt.k_pos_offset + (c->use_koffs ? c->koffs[b] : 0);
}

/* Absolute position of row r of x (key 0) or y (key 1): i + offset within
 * its sequence; INT64_MIN for packed rows past the last sequence. */
static int64_t abs_pos(const callx *c, int key, int64_t r) {
  const int32_t *cu = key ? c->cu_k : c->cu_q;
  const int64_t S = key ? c->Sk : c->Sq;
  int64_t b, first;
  if (c->varlen) {
    if (r >= cu[c->nseq])
      return INT64_MIN;
    for (b = 0; b + 1 < c->nseq && cu[b + 1] <= r; b++)
      ;
    first = cu[b];
  } else {
    b = r / S;
    first = b * S;
  }
  const int64_t off =
      key ? c->opt.k_pos_offset + (c->use_koffs ? c->koffs[b] : 0)
          : c->opt.q_pos_offset + (c->use_qoffs ? c->qoffs[b] : 0);
  return r - first + off;
}

/* Key j visible from query i of sequence g (attn.h's masks). */
static int visible(const callx *c, const geo *g, int64_t i, int64_t j) {
  if (j >= g->sk)
    return 0;
  const attn_params *o = &c->opt;
  const int64_t qp = g->q0 + i, kp = g->k0 + j;
  int64_t qa = qp; /* the causal alignment's query position */
  if (o->causal == ATTN_CAUSAL_BOTTOM_RIGHT && kp > qp)
    return 0;
  if (o->causal == ATTN_CAUSAL_TOP_LEFT) {
    qa = qp - (g->sk - g->sq);
    if (kp > qa)
      return 0;
  }
  if (o->window_left >= 0 && kp < qa - o->window_left)
    return 0;
  if (o->window_right >= 0 && kp > qa + o->window_right)
    return 0;
  return 1;
}

/* Element (b, h, i, j) of a [b|1, hq|1, sq|1, sk|1] tensor (bias, mask),
 * contiguous: the axes of size 1 broadcast (attn.h). */
static int64_t bc_index(const int64_t *sh, int64_t b, int64_t h, int64_t i,
                        int64_t j) {
  return (((sh[0] == 1 ? 0 : b) * sh[1] + (sh[1] == 1 ? 0 : h)) * sh[2] +
          (sh[2] == 1 ? 0 : i)) *
             sh[3] +
         (sh[3] == 1 ? 0 : j);
}

/* The template's tensors on key j of query i (sequence b, head h): the
 * boolean mask, and -inf in the bias, mask. */
static int tensor_allows(const callx *c, int64_t b, int64_t h, int64_t i,
                         int64_t j) {
  if (c->opt.mask.data && !c->mask[bc_index(c->msh, b, h, i, j)])
    return 0;
  if (c->opt.bias.data && c->bias[bc_index(c->bsh, b, h, i, j)] == -INFINITY)
    return 0;
  return 1;
}

/* The tensor bias of (b, h, i, j), 0 without one. */
static double tensor_bias(const callx *c, int64_t b, int64_t h, int64_t i,
                          int64_t j) {
  return c->opt.bias.data ? (double)c->bias[bc_index(c->bsh, b, h, i, j)] : 0.0;
}

/* Dropout's factor z of (b, h, i, j): 1 / (1 - p) kept, 0 dropped (the
 * decision is attn_dropout_keep's, as tests/oracle_fwd.c's oracle_dropout
 * takes it: the Philox stream is checked against known answers by
 * tests/test_dropout.c, this harness checks that the layer applies it
 * where the contract says), 1 without dropout. */
static double drop_z(const callx *c, int64_t b, int64_t h, int64_t i,
                     int64_t j) {
  const attn_params *o = &c->opt;
  if (o->dropout_p == 0.0f)
    return 1.0;
  if (!attn_dropout_keep(o->dropout_seed, o->dropout_p, b, h, i, j))
    return 0.0;
  return 1.0 / (1.0 - (double)o->dropout_p);
}

/* ---- T5 and ALiBi (references, as positions_fuzz) --------------------- */

static int64_t t5_ref(int64_t rel, int64_t buckets, int64_t maxd, int bidir) {
  int64_t nb = buckets, ret = 0;
  uint64_t n;
  if (bidir) {
    nb = buckets / 2;
    if (rel > 0)
      ret = nb;
    n = rel < 0 ? 0 - (uint64_t)rel : (uint64_t)rel;
  } else {
    n = rel < 0 ? 0 - (uint64_t)rel : 0;
  }
  const int64_t exact = nb / 2;
  if (exact == 0)
    return ret + nb - 1;
  if (n < (uint64_t)exact)
    return ret + (int64_t)n;
  const float q = (float)n / (float)exact;
  const float x =
      logf(q) / (float)log((double)maxd / (double)exact) * (float)(nb - exact);
  int64_t large;
  if (isnan(x) || x >= 0x1p62f)
    large = nb - 1;
  else if (x <= -0x1p62f)
    large = 0;
  else
    large = exact + (int64_t)x;
  if (large > nb - 1)
    large = nb - 1;
  if (large < 0)
    large = 0;
  return ret + large;
}

/* Press et al.'s slopes: 2^(-8 i / n) for n a power of two, else those of
 * the power of two m below n and every other one of 2m. */
static double alibi_slope(int64_t h, int64_t n) {
  int64_t m = 1;
  while (m * 2 <= n)
    m *= 2;
  if (h < m)
    return pow(2.0, -8.0 * (double)(h + 1) / (double)m);
  return pow(2.0, -8.0 * (double)(2 * (h - m) + 1) / (double)(2 * m));
}

/* ---- the oracle --------------------------------------------------------- */

typedef struct arr2 {
  double *v, *e; /* values and error bounds */
} arr2;

static arr2 arr_new(int64_t n) {
  arr2 a;
  a.v = xcalloc((size_t)n, sizeof(double));
  a.e = xcalloc((size_t)n, sizeof(double));
  return a;
}

static void arr_free(arr2 *a) {
  free(a->v);
  free(a->e);
}

/* y [m, n] = x [m, k] W^T + b (W at th + wo, [n, k]; b at th + bo or -1) */
static void lin(int64_t m, int64_t n, int64_t k, const arr2 *x,
                const double *th, int64_t wo, int64_t bo, arr2 *y) {
  for (int64_t i = 0; i < m; i++)
    for (int64_t o = 0; o < n; o++) {
      const double *w = th + wo + o * k;
      double s = bo >= 0 ? th[bo + o] : 0.0, a = fabs(s), e = 0.0;
      for (int64_t t = 0; t < k; t++) {
        s += x->v[i * k + t] * w[t];
        a += fabs(x->v[i * k + t] * w[t]);
        e += fabs(w[t]) * x->e[i * k + t];
      }
      y->v[i * n + o] = s;
      y->e[i * n + o] = gam((double)k + 1) * a + e;
    }
}

/* dx [m, k] (+)= dy [m, n] W [n, k] */
static void lin_dx(int64_t m, int64_t n, int64_t k, const arr2 *dy,
                   const double *th, int64_t wo, arr2 *dx, int acc) {
  for (int64_t i = 0; i < m; i++)
    for (int64_t t = 0; t < k; t++) {
      double s = 0.0, a = 0.0, e = 0.0;
      for (int64_t o = 0; o < n; o++) {
        const double w = th[wo + o * k + t];
        s += dy->v[i * n + o] * w;
        a += fabs(dy->v[i * n + o] * w);
        e += fabs(w) * dy->e[i * n + o];
      }
      const int64_t z = i * k + t;
      if (acc) {
        a += fabs(dx->v[z]);
        e += dx->e[z];
        s += dx->v[z];
      }
      dx->v[z] = s;
      dx->e[z] = gam((double)n + 2) * a + e;
    }
}

/* dW [n, k] = dy [m, n]^T x [m, k]; db [n] = column sums of dy (blocks of
 * 64 rows, then into the buffer) */
static void lin_dw(int64_t m, int64_t n, int64_t k, const arr2 *dy,
                   const arr2 *x, double *gw, double *ew, double *gb,
                   double *eb) {
  for (int64_t o = 0; o < n; o++) {
    for (int64_t t = 0; t < k; t++) {
      double s = 0.0, a = 0.0, e = 0.0;
      for (int64_t i = 0; i < m; i++) {
        const double p = dy->v[i * n + o] * x->v[i * k + t];
        s += p;
        a += fabs(p);
        e += fabs(x->v[i * k + t]) * dy->e[i * n + o] +
             fabs(dy->v[i * n + o]) * x->e[i * k + t];
      }
      gw[o * k + t] += s;
      ew[o * k + t] += gam((double)m + 1) * a + e;
    }
    if (gb) {
      double s = 0.0, a = 0.0, e = 0.0;
      for (int64_t i = 0; i < m; i++) {
        s += dy->v[i * n + o];
        a += fabs(dy->v[i * n + o]);
        e += dy->e[i * n + o];
      }
      gb[o] += s;
      eb[o] += gam((double)m + (double)m / 64 + 2) * a + e;
    }
  }
}

/* RoPE of the rows of a [rows, heads, d] array at core positions, or the
 * inverse rotation (the gradient). */
static void rope_row(const cfgx *x, arr2 *a, int64_t base, int64_t heads,
                     int64_t pos, int inverse) {
  const int64_t d = x->d, half = x->rdims / 2;
  const int inter = x->rope.style == ATTN_ROPE_INTERLEAVED;
  const double m = x->mscale;
  for (int64_t h = 0; h < heads; h++)
    for (int64_t i = 0; i < half; i++) {
      const int64_t ia = base + h * d + (inter ? 2 * i : i);
      const int64_t ib = base + h * d + (inter ? 2 * i + 1 : i + half);
      const double ang = (double)pos * x->freq[i];
      const double c = cos(ang) * m, s = (inverse ? -sin(ang) : sin(ang)) * m;
      const double xa = a->v[ia], xb = a->v[ib];
      const double ya = xa * c - xb * s, yb = xb * c + xa * s;
      const double th = fabs(ang) * 64 * UD + ldexp(1, -48);
      const double ea = m * (a->e[ia] + a->e[ib]) +
                        m * (fabs(xa) + fabs(xb)) * (th + 10 * UD);
      a->v[ia] = ya;
      a->v[ib] = yb;
      a->e[ia] = ea + U * fabs(ya);
      a->e[ib] = ea + U * fabs(yb);
    }
}

typedef struct net {
  const cfgx *x;
  const callx *c;
  const plist *pl;
  const double *th; /* the parameters */
  int64_t rq, rk;
  arr2 xp, yp, vsrc_own, Q, K, V, O, out;
  const arr2 *ksrc, *vsrc;
  /* per (seq, head, row): max score, normaliser, Delta, lse; P per key */
  double *P, *rel, *lse, *lse_e, *Dl;
  int64_t *pidx; /* (seq, head, row) -> first P index */
  double *alibi_e, *bias_v;
  double cache_u; /* decode: K (after RoPE) and V stored with this unit */
  /* per key: dropout's factor, softcap's derivative 1 - tanh^2 and its
   * bound; per (seq, head, row): the sink's probability and its bound */
  double *z, *cg, *cge, *psink, *psink_e;
} net;

/* x' = x + positions (SINUSOIDAL table, LEARNED rows) with its bound. */
static void add_abs(const cfgx *x, const callx *c, const double *th,
                    const plist *pl, int key, const float *in, int64_t rows,
                    int64_t w, arr2 *out) {
  const attn_layer_config *g = &x->c;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t i = 0; i < w; i++) {
      const double v = in[r * w + i];
      double p = 0.0, e = 0.0;
      const int64_t pos = abs_pos(c, key, r);
      if (pos != INT64_MIN && g->position == ATTN_LAYER_POS_SINUSOIDAL) {
        const double base =
            g->sinusoidal_base > 0 ? g->sinusoidal_base : 10000.0;
        const double f = pow(base, -(double)(i / 2 * 2) / (double)w);
        const double ang = (double)pos * f;
        p = i % 2 ? cos(ang) : sin(ang);
        /* the library's table: its angle within |a| 64 u_double + 2^-48,
         * rounded to f32; then the f32 addition */
        e = fabs(ang) * 64 * UD + ldexp(1, -48) + U * fabs(p) + U * fabs(v + p);
      } else if (pos != INT64_MIN && g->position == ATTN_LAYER_POS_LEARNED &&
                 pos >= 0 && pos < g->max_positions) {
        /* (rows past the table: refused calls, or decode steps not made,
         * whose rows are never compared) */
        p = th[(key ? pl->pos_kv : pl->pos) + pos * w + i];
        e = U * fabs(v + p);
      }
      out->v[r * w + i] = v + p;
      out->e[r * w + i] = e;
    }
}

/* |library's P - P| for a probability P with relative error bound r: at
 * most 1 (both are in [0, 1]); 1e-300 (1 + r) for P underflowing in
 * double. */
static double pabs(double P, double r) {
  if (!(r < 1e300))
    return 1.0;
  return fmin(P * r + 1e-300 * (1.0 + r), 1.0);
}

/* The forward: out and every intermediate the backward needs. */
static void net_forward(net *N, const float *xin, const float *yin,
                        const float *vin) {
  const cfgx *x = N->x;
  const callx *c = N->c;
  const plist *pl = N->pl;
  const double *th = N->th;
  const attn_layer_config *g = &x->c;
  const int64_t rq = N->rq, rk = N->rk;
  const int absolute = g->position == ATTN_LAYER_POS_SINUSOIDAL ||
                       g->position == ATTN_LAYER_POS_LEARNED;
  N->xp = arr_new(rq * x->E);
  if (absolute)
    add_abs(x, c, th, pl, 0, xin, rq, x->E, &N->xp);
  else
    for (int64_t i = 0; i < rq * x->E; i++)
      N->xp.v[i] = xin[i];
  N->ksrc = N->vsrc = &N->xp;
  if (g->cross) {
    N->yp = arr_new(rk * x->kdim);
    if (absolute)
      add_abs(x, c, th, pl, 1, yin, rk, x->kdim, &N->yp);
    else
      for (int64_t i = 0; i < rk * x->kdim; i++)
        N->yp.v[i] = yin[i];
    N->ksrc = N->vsrc = &N->yp;
    if (c->use_value) {
      N->vsrc_own = arr_new(rk * x->vdim);
      for (int64_t i = 0; i < rk * x->vdim; i++)
        N->vsrc_own.v[i] = vin[i];
      N->vsrc = &N->vsrc_own;
    }
  }
  N->Q = arr_new(rq * x->nq);
  N->K = arr_new(rk * x->nk);
  N->V = arr_new(rk * x->nv);
  N->O = arr_new(rq * x->no);
  N->out = arr_new(rq * x->dout);
  lin(rq, x->nq, x->E, &N->xp, th, pl->w[0], pl->b[0], &N->Q);
  lin(rk, x->nk, x->kdim, N->ksrc, th, pl->w[1], pl->b[1], &N->K);
  lin(rk, x->nv, x->vdim, N->vsrc, th, pl->w[2], pl->b[2], &N->V);
  if (g->position == ATTN_LAYER_POS_ROPE)
    for (int64_t b = 0; b < c->nseq; b++) {
      geo G;
      geom(x, c, b, &G);
      for (int64_t i = 0; i < G.sq; i++)
        rope_row(x, &N->Q, (G.qr0 + i) * x->nq, x->hq, G.q0 + i, 0);
      for (int64_t j = 0; j < G.cap; j++)
        rope_row(x, &N->K, (G.kr0 + j) * x->nk, x->hkv, G.k0 + j, 0);
    }
  /* a KV cache's storage: one more rounding of K and V */
  for (int64_t i = 0; N->cache_u > 0 && i < rk * x->nk; i++)
    N->K.e[i] += N->cache_u * (fabs(N->K.v[i]) + N->K.e[i]);
  for (int64_t i = 0; N->cache_u > 0 && i < rk * x->nv; i++)
    N->V.e[i] += N->cache_u * (fabs(N->V.v[i]) + N->V.e[i]);
  /* attention */
  const double scale =
      c->opt.scale != 0.0f ? (double)c->opt.scale : 1.0 / sqrt((double)x->d);
  const int64_t grp = x->hq / x->hkv;
  int64_t np = 0;
  N->pidx = xcalloc((size_t)(c->nseq * x->hq * 64), sizeof(int64_t));
  for (int64_t b = 0; b < c->nseq; b++) {
    geo G;
    geom(x, c, b, &G);
    np += x->hq * G.sq * (G.sk > 0 ? G.sk : 1);
  }
  N->P = xcalloc((size_t)np, sizeof(double));
  N->rel = xcalloc((size_t)np, sizeof(double));
  N->bias_v = xcalloc((size_t)np, sizeof(double));
  N->alibi_e = xcalloc((size_t)np, sizeof(double));
  N->z = xcalloc((size_t)np, sizeof(double));
  N->cg = xcalloc((size_t)np, sizeof(double));
  N->cge = xcalloc((size_t)np, sizeof(double));
  N->psink = xcalloc((size_t)(c->nseq * x->hq * 64), sizeof(double));
  N->psink_e = xcalloc((size_t)(c->nseq * x->hq * 64), sizeof(double));
  N->lse = xcalloc((size_t)(c->nseq * x->hq * 64), sizeof(double));
  N->lse_e = xcalloc((size_t)(c->nseq * x->hq * 64), sizeof(double));
  N->Dl = xcalloc((size_t)(c->nseq * x->hq * 64), sizeof(double));
  const double cap = (double)c->opt.softcap;
  const int drop = c->opt.dropout_p != 0.0f;
  int64_t at = 0;
  for (int64_t b = 0; b < c->nseq; b++) {
    geo G;
    geom(x, c, b, &G);
    for (int64_t h = 0; h < x->hq; h++) {
      const int64_t kh = h / grp;
      const double sink = c->opt.sinks ? (double)c->opt.sinks[h] : -INFINITY;
      for (int64_t i = 0; i < G.sq; i++) {
        const int64_t row = (b * x->hq + h) * 64 + i;
        N->pidx[row] = at;
        const double *q = N->Q.v + (G.qr0 + i) * x->nq + h * x->d;
        const double *eq = N->Q.e + (G.qr0 + i) * x->nq + h * x->d;
        double smax = -INFINITY;
        double s[64], A[64], dl[64];
        int vis[64], any = 0, nonfin = 0;
        for (int64_t j = 0; j < G.sk; j++) {
          vis[j] = visible(c, &G, i, j) && tensor_allows(c, b, h, i, j);
          any |= vis[j];
        }
        /* non-finite x: a row that sees a non-finite Q, K or V element
         * gets o = NaN (attn.h); the bounds below are not computed */
        for (int64_t j = 0; c->nonfinite && any && j < G.sk; j++) {
          for (int64_t t = 0; vis[j] && t < x->d; t++)
            nonfin |= !isfinite(q[t]) ||
                      !isfinite(N->K.v[(G.kr0 + j) * x->nk + kh * x->d + t]);
          for (int64_t t = 0; vis[j] && t < x->dv; t++)
            nonfin |= !isfinite(N->V.v[(G.kr0 + j) * x->nv + kh * x->dv + t]);
        }
        if (nonfin) {
          for (int64_t t = 0; t < x->dv; t++) {
            N->O.v[(G.qr0 + i) * x->no + h * x->dv + t] = NAN;
            N->O.e[(G.qr0 + i) * x->no + h * x->dv + t] = 0.0;
          }
          N->lse[row] = NAN;
          at += G.sk > 0 ? G.sk : 1;
          continue;
        }
        for (int64_t j = 0; j < G.sk; j++) {
          if (!vis[j])
            continue;
          const double *k = N->K.v + (G.kr0 + j) * x->nk + kh * x->d;
          const double *ek = N->K.e + (G.kr0 + j) * x->nk + kh * x->d;
          double dot = 0.0, ad = 0.0, ed = 0.0;
          for (int64_t t = 0; t < x->d; t++) {
            dot += q[t] * k[t];
            ad += fabs(q[t] * k[t]);
            ed += fabs(k[t]) * eq[t] + fabs(q[t]) * ek[t];
          }
          double bias = 0.0, be = 0.0;
          const int64_t qp = G.q0 + i, kp = G.k0 + j;
          if (g->position == ATTN_LAYER_POS_ALIBI) {
            const double sl = alibi_slope(h, x->hq);
            const double dist = (double)llabs((long long)(qp - kp));
            bias = -sl * dist;
            be = 2 * U * fabs(bias);
          } else if (g->position == ATTN_LAYER_POS_T5) {
            const int64_t bk = t5_ref(kp - qp, g->t5_buckets,
                                      g->t5_max_distance, g->t5_bidirectional);
            bias = th[pl->rel + bk * x->hq + h];
          }
          bias += tensor_bias(c, b, h, i, j);
          double sc = scale * dot,
                 dsc = scale * (gam((double)x->d + 2) * ad + ed);
          N->cg[at + j] = 1.0;
          N->cge[at + j] = 0.0;
          if (cap > 0) {
            /* softcap (see "error bounds"): c tanh(./c) moves the score's
             * error by at most sech^2 at the point nearest 0, then 32 u
             * of the capped score; the derivative 1 - tanh^2 off by
             * e_t (2 |tanh| + e_t) + 2 u, e_t = the capped error / c */
            const double tt = tanh(sc / cap);
            const double lo = tanh(fmax(0.0, fabs(sc) - dsc) / cap);
            dsc = (1.0 - lo * lo) * dsc + 32 * U * fabs(cap * tt);
            sc = cap * tt;
            const double et = dsc / cap;
            N->cg[at + j] = 1.0 - tt * tt;
            N->cge[at + j] = et * (2 * fabs(tt) + et) + 2 * U;
          }
          s[j] = sc + bias;
          A[j] = scale * ad + fabs(bias);
          dl[j] = dsc + be;
          N->bias_v[at + j] = bias;
          N->z[at + j] = drop_z(c, b, h, i, j);
          if (s[j] > smax)
            smax = s[j];
        }
        /* the sink joins the denominator as one more term: its logit is
         * exact, the join's rescaling and its exp add Ds */
        const double m = sink > smax ? sink : smax;
        double Z = sink > -INFINITY ? exp(sink - m) : 0.0, D = 0.0;
        for (int64_t j = 0; j < G.sk; j++)
          if (vis[j]) {
            dl[j] += 8 * U * (A[j] + fabs(smax));
            if (dl[j] > D)
              D = dl[j];
            Z += exp(s[j] - m);
          }
        if (any && sink > -INFINITY) {
          const double Ds = 8 * U * (fabs(sink) + fabs(smax) + fabs(m));
          D = Ds > D ? Ds : D;
        }
        const double n = (double)G.sk + (sink > -INFINITY ? 1 : 0);
        const double r = expm1(2 * D + (6 * n + 16) * U);
        N->Dl[row] = D;
        N->lse[row] = any ? m + log(Z) : sink;
        N->lse_e[row] =
            any ? D + (n + 8) * U + U * fabs(N->lse[row]) : 0.0; /* sink */
        /* the sink's probability exp(sink - lse) (dsinks), from the
         * library's lse: its error, the subtraction, exp */
        N->psink[row] =
            sink > -INFINITY ? (any ? exp(sink - N->lse[row]) : 1.0) : 0.0;
        N->psink_e[row] =
            sink > -INFINITY && any
                ? pabs(N->psink[row],
                       expm1(N->lse_e[row] +
                             8 * U * (fabs(sink) + fabs(N->lse[row]))))
                : 0.0;
        double dpf[64];
        for (int64_t j = 0; j < G.sk; j++) {
          const double P = vis[j] ? exp(s[j] - m) / Z : 0.0;
          N->P[at + j] = P;
          /* the absolute error of the library's P_j: P_j r, at most 1
           * (both are probabilities), plus double's underflow of P_j */
          dpf[j] = vis[j] ? pabs(P, r) : 0.0;
          /* the backward's P from the stored LSE: r, the LSE's error, the
           * recomputation's roundings */
          N->rel[at + j] =
              vis[j] ? pabs(P, expm1(2 * D + N->lse_e[row] + (6 * n + 24) * U +
                                     10 * U * (A[j] + fabs(N->lse[row]))))
                     : 0.0;
        }
        for (int64_t t = 0; t < x->dv; t++) {
          double o = 0.0, a = 0.0, e = 0.0;
          for (int64_t j = 0; j < G.sk; j++) {
            if (!vis[j])
              continue;
            const int64_t vi = (G.kr0 + j) * x->nv + kh * x->dv + t;
            const double p = N->P[at + j], v = N->V.v[vi], z = N->z[at + j];
            o += p * z * v;
            a += z * (p + dpf[j]) * fabs(v);
            e += z * (dpf[j] * fabs(v) + (p + dpf[j]) * N->V.e[vi]);
          }
          const int64_t oi = (G.qr0 + i) * x->no + h * x->dv + t;
          N->O.v[oi] = o;
          /* dropout: z rounded to f32 and P z rounded, two more */
          N->O.e[oi] = gam((double)G.sk + (drop ? 2 : 0)) * a + e;
        }
        at += G.sk > 0 ? G.sk : 1;
      }
    }
  }
  lin(rq, x->dout, x->no, &N->O, th, pl->w[3], pl->b[3], &N->out);
}

/* Gradients of the loss sum(out * dout). */
typedef struct gradset {
  double *g, *e; /* [total params] */
  arr2 dx, dy, dval;
  arr2 dsinks, dbias; /* when the template asks for them */
} gradset;

static void net_backward(net *N, const float *dout, gradset *G2) {
  const cfgx *x = N->x;
  const callx *c = N->c;
  const plist *pl = N->pl;
  const double *th = N->th;
  const attn_layer_config *g = &x->c;
  const int64_t rq = N->rq, rk = N->rk;
  arr2 dO = arr_new(rq * x->no), dQ = arr_new(rq * x->nq),
       dK = arr_new(rk * x->nk), dV = arr_new(rk * x->nv),
       dY = arr_new(rq * x->dout);
  G2->g = xcalloc((size_t)pl->total, sizeof(double));
  G2->e = xcalloc((size_t)pl->total, sizeof(double));
  for (int64_t i = 0; i < rq * x->dout; i++)
    dY.v[i] = dout[i];
  /* out projection */
  lin_dx(rq, x->dout, x->no, &dY, th, pl->w[3], &dO, 0);
  lin_dw(rq, x->dout, x->no, &dY, &N->O, G2->g + pl->w[3], G2->e + pl->w[3],
         pl->b[3] >= 0 ? G2->g + pl->b[3] : NULL,
         pl->b[3] >= 0 ? G2->e + pl->b[3] : NULL);
  /* attention */
  const double scale =
      c->opt.scale != 0.0f ? (double)c->opt.scale : 1.0 / sqrt((double)x->d);
  const int64_t grp = x->hq / x->hkv;
  const int drop = c->opt.dropout_p != 0.0f, cap = c->opt.softcap > 0.0f;
  /* dsinks and dbias: sums, their bounds' magnitudes and term counts */
  int64_t nbias = 1;
  for (int k = 0; k < 4; k++)
    nbias *= c->want_dbias ? c->bsh[k] : 1;
  double *ds_a = NULL, *ds_n = NULL, *db_a = NULL, *db_n = NULL;
  if (c->want_dsinks) {
    G2->dsinks = arr_new(x->hq);
    ds_a = xcalloc((size_t)x->hq, sizeof(double));
    ds_n = xcalloc((size_t)x->hq, sizeof(double));
  }
  if (c->want_dbias) {
    G2->dbias = arr_new(nbias);
    db_a = xcalloc((size_t)nbias, sizeof(double));
    db_n = xcalloc((size_t)nbias, sizeof(double));
  }
  int64_t at = 0;
  for (int64_t b = 0; b < c->nseq; b++) {
    geo G;
    geom(x, c, b, &G);
    for (int64_t h = 0; h < x->hq; h++) {
      const int64_t kh = h / grp;
      for (int64_t i = 0; i < G.sq; i++) {
        const int64_t qr = G.qr0 + i;
        const int64_t row = (b * x->hq + h) * 64 + i;
        const double *o = N->O.v + qr * x->no + h * x->dv;
        const double *eo = N->O.e + qr * x->no + h * x->dv;
        const double *go = dO.v + qr * x->no + h * x->dv;
        const double *ego = dO.e + qr * x->no + h * x->dv;
        double Dv = 0.0, Da = 0.0, De = 0.0;
        for (int64_t t = 0; t < x->dv; t++) {
          Dv += go[t] * o[t];
          Da += fabs(go[t] * o[t]);
          De += fabs(o[t]) * ego[t] + fabs(go[t]) * eo[t];
        }
        De += gam((double)x->dv + 1) * Da;
        /* dsinks[h] = - sum_i exp(sink - lse_i) D_i */
        if (c->want_dsinks && N->psink[row] > 0.0) {
          const double ps = N->psink[row], pe = N->psink_e[row];
          G2->dsinks.v[h] -= ps * Dv;
          G2->dsinks.e[h] += pe * fabs(Dv) + (ps + pe) * De;
          ds_a[h] += (ps + pe) * (fabs(Dv) + De);
          ds_n[h] += 1;
        }
        const double nq = (double)(G.sq * grp);
        for (int64_t j = 0; j < G.sk; j++) {
          const double P = N->P[at + j];
          if (P == 0.0 && N->rel[at + j] == 0.0)
            continue; /* not visible */
          const double dp = N->rel[at + j], Pm = P + dp, z = N->z[at + j];
          const int64_t kr = G.kr0 + j;
          double dP = 0.0, dPa = 0.0, dPe = 0.0;
          for (int64_t t = 0; t < x->dv; t++) {
            const int64_t vi = kr * x->nv + kh * x->dv + t;
            dP += go[t] * N->V.v[vi];
            dPa += fabs(go[t] * N->V.v[vi]);
            dPe += fabs(N->V.v[vi]) * ego[t] + fabs(go[t]) * N->V.e[vi];
            /* dV += P z dO (dropout: z and P z rounded, two more) */
            dV.v[vi] += P * z * go[t];
            dV.e[vi] += z * (dp * fabs(go[t]) + Pm * ego[t] +
                             gam(nq + 1 + (drop ? 2 : 0)) * Pm * fabs(go[t]));
          }
          dPe += gam((double)x->dv + 1) * dPa;
          /* dropout: dP z, z rounded and the product: 2 u |dP z| */
          const double dPz = z * dP;
          const double dPze = z * dPe + (drop ? 2 * U * fabs(dPz) : 0.0);
          const double dS = P * (dPz - Dv);
          const double eS = dp * fabs(dPz - Dv) +
                            Pm * (dPze + De + 3 * U * (fabs(dPz) + fabs(Dv)));
          const double dSm0 = fabs(dS) + eS;
          /* dbias = dS, summed over the axes bias broadcasts */
          if (c->want_dbias) {
            const int64_t bi = bc_index(c->bsh, b, h, i, j);
            G2->dbias.v[bi] += dS;
            G2->dbias.e[bi] += eS;
            db_a[bi] += dSm0;
            db_n[bi] += 1;
          }
          /* softcap: dS' = dS (1 - tanh^2), the factor off by cge, one
           * rounding */
          double dSc = dS, eSc = eS;
          if (cap) {
            const double cg = N->cg[at + j], ce = N->cge[at + j];
            dSc = dS * cg;
            eSc = fabs(cg) * eS + dSm0 * ce + U * dSm0 * (fabs(cg) + ce);
          }
          const double dSm = fabs(dSc) + eSc;
          /* dQ += scale dS' K, dK += scale dS' Q */
          for (int64_t t = 0; t < x->d; t++) {
            const int64_t qi = qr * x->nq + h * x->d + t;
            const int64_t ki = kr * x->nk + kh * x->d + t;
            const double kv = N->K.v[ki], qv = N->Q.v[qi];
            dQ.v[qi] += scale * dSc * kv;
            dQ.e[qi] += scale * (fabs(kv) * eSc + dSm * N->K.e[ki] +
                                 gam((double)G.sk + 3) * dSm * fabs(kv));
            dK.v[ki] += scale * dSc * qv;
            dK.e[ki] += scale * (fabs(qv) * eSc + dSm * N->Q.e[qi] +
                                 gam(nq + 3) * dSm * fabs(qv));
          }
          if (g->position == ATTN_LAYER_POS_T5) {
            const int64_t bk = t5_ref((G.k0 + j) - (G.q0 + i), g->t5_buckets,
                                      g->t5_max_distance, g->t5_bidirectional);
            const int64_t gi = pl->rel + bk * x->hq + h;
            G2->g[gi] += dS;
            G2->e[gi] += eS + gam((double)(rq * rk) + 2) * dSm0;
          }
        }
        at += G.sk > 0 ? G.sk : 1;
      }
    }
  }
  /* the sums' roundings, in any order: g(terms + 2) of their magnitudes */
  for (int64_t h = 0; c->want_dsinks && h < x->hq; h++)
    G2->dsinks.e[h] += gam(ds_n[h] + 2) * ds_a[h];
  for (int64_t k = 0; c->want_dbias && k < nbias; k++)
    G2->dbias.e[k] += gam(db_n[k] + 2) * db_a[k];
  free(ds_a);
  free(ds_n);
  free(db_a);
  free(db_n);
  if (g->position == ATTN_LAYER_POS_ROPE)
    for (int64_t b = 0; b < c->nseq; b++) {
      geo G;
      geom(x, c, b, &G);
      for (int64_t i = 0; i < G.sq; i++)
        rope_row(x, &dQ, (G.qr0 + i) * x->nq, x->hq, G.q0 + i, 1);
      for (int64_t j = 0; j < G.cap; j++)
        rope_row(x, &dK, (G.kr0 + j) * x->nk, x->hkv, G.k0 + j, 1);
    }
  /* projections */
  lin_dw(rq, x->nq, x->E, &dQ, &N->xp, G2->g + pl->w[0], G2->e + pl->w[0],
         pl->b[0] >= 0 ? G2->g + pl->b[0] : NULL,
         pl->b[0] >= 0 ? G2->e + pl->b[0] : NULL);
  lin_dw(rk, x->nk, x->kdim, &dK, N->ksrc, G2->g + pl->w[1], G2->e + pl->w[1],
         pl->b[1] >= 0 ? G2->g + pl->b[1] : NULL,
         pl->b[1] >= 0 ? G2->e + pl->b[1] : NULL);
  lin_dw(rk, x->nv, x->vdim, &dV, N->vsrc, G2->g + pl->w[2], G2->e + pl->w[2],
         pl->b[2] >= 0 ? G2->g + pl->b[2] : NULL,
         pl->b[2] >= 0 ? G2->e + pl->b[2] : NULL);
  G2->dx = arr_new(rq * x->E);
  lin_dx(rq, x->nq, x->E, &dQ, th, pl->w[0], &G2->dx, 0);
  if (!g->cross) {
    lin_dx(rk, x->nk, x->E, &dK, th, pl->w[1], &G2->dx, 1);
    lin_dx(rk, x->nv, x->E, &dV, th, pl->w[2], &G2->dx, 1);
  } else {
    G2->dy = arr_new(rk * x->kdim);
    lin_dx(rk, x->nk, x->kdim, &dK, th, pl->w[1], &G2->dy, 0);
    if (!c->use_value) {
      lin_dx(rk, x->nv, x->kdim, &dV, th, pl->w[2], &G2->dy, 1);
    } else {
      G2->dval = arr_new(rk * x->vdim);
      lin_dx(rk, x->nv, x->vdim, &dV, th, pl->w[2], &G2->dval, 0);
    }
  }
  if (g->position == ATTN_LAYER_POS_LEARNED) {
    for (int key = 0; key < 1 + g->cross; key++) {
      const arr2 *d = key ? &G2->dy : &G2->dx;
      const int64_t rows = key ? rk : rq, w = key ? x->kdim : x->E;
      const int64_t off = key ? pl->pos_kv : pl->pos;
      for (int64_t r = 0; r < rows; r++) {
        const int64_t pos = abs_pos(c, key, r);
        if (pos == INT64_MIN)
          continue;
        for (int64_t i = 0; i < w; i++) {
          G2->g[off + pos * w + i] += d->v[r * w + i];
          G2->e[off + pos * w + i] +=
              d->e[r * w + i] + gam((double)rows + 1) * fabs(d->v[r * w + i]);
        }
      }
    }
  }
  /* the addition into the gradient buffer */
  for (int64_t i = 0; i < pl->total; i++)
    G2->e[i] += U * fabs(G2->g[i]);
  arr_free(&dO);
  arr_free(&dQ);
  arr_free(&dK);
  arr_free(&dV);
  arr_free(&dY);
}

static void net_free(net *N) {
  arr_free(&N->xp);
  if (N->x->c.cross)
    arr_free(&N->yp);
  if (N->vsrc == &N->vsrc_own)
    arr_free(&N->vsrc_own);
  arr_free(&N->Q);
  arr_free(&N->K);
  arr_free(&N->V);
  arr_free(&N->O);
  arr_free(&N->out);
  free(N->P);
  free(N->rel);
  free(N->lse);
  free(N->lse_e);
  free(N->Dl);
  free(N->pidx);
  free(N->alibi_e);
  free(N->bias_v);
  free(N->z);
  free(N->cg);
  free(N->cge);
  free(N->psink);
  free(N->psink_e);
}

static void grads_free(gradset *G2, int cross, int value) {
  free(G2->g);
  free(G2->e);
  free(G2->dsinks.v);
  free(G2->dsinks.e);
  free(G2->dbias.v);
  free(G2->dbias.e);
  arr_free(&G2->dx);
  if (cross)
    arr_free(&G2->dy);
  if (cross && value)
    arr_free(&G2->dval);
}

static void compare(const char *what, const float *got, const arr2 *want,
                    int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const double w = want->v[i], t = want->e[i] * (1 + 1e-6) + 1e-30;
    if (!(fabs((double)got[i] - w) <= t)) {
      fprintf(stderr, "layer_fuzz: %s[%lld]: err %.3g > bound %.3g\n", what,
              (long long)i, fabs((double)got[i] - w), t);
      fail(what, i, 0, got[i], w);
    }
  }
}

/* ---- values ------------------------------------------------------------- */

static void fill(float *p, int64_t n, uint64_t *s, float scale) {
  for (int64_t i = 0; i < n; i++)
    p[i] = frand(s) * scale;
}

/* The weights from the value stream, each tensor at its init scale (and
 * biases, tables nonzero). */
static void fill_params(attn_layer *L, const plist *pl, uint64_t *s) {
  float *p = attn_layer_params(L, NULL);
  for (int i = 0; i < pl->n; i++) {
    const int64_t c = pl->rows[i] * (pl->cols[i] ? pl->cols[i] : 1);
    const float sc =
        pl->cols[i] ? (float)(1.5 / sqrt((double)pl->cols[i])) : 0.5f;
    fill(p + pl->off[i], c, s, sc);
  }
}

/* ---- forward and backward ----------------------------------------------- */

static const int64_t t_offs[] = {0, 0, 0, 3, -2, 5, POSMAX - 2, POSMAX + 1};

typedef struct bufs {
  float *x, *y, *val, *out, *dout, *dx, *dy, *dval;
  void *act, *ws;
} bufs;

/* Carves the call (tiny shapes) for a valid config. */
static void carve_call(bytes *in, const cfgx *x, callx *c) {
  memset(c, 0, sizeof *c);
  attn_params_init(&c->opt);
  const unsigned f = (unsigned)take(in, 256);
  c->B = 1 + take(in, 2);
  c->Sq = 1 + take(in, 5);
  c->Sk = x->c.cross ? 1 + take(in, 6) : c->Sq;
  c->use_value = x->c.cross && (x->vdim != x->kdim || (f & 1));
  c->use_opts = (f & 0x80) == 0;
  c->varlen = (f & 2) && c->use_opts;
  c->nseq = c->B;
  if (c->varlen) {
    c->nseq = 1 + take(in, 3);
    for (int64_t b = 0; b < c->nseq; b++) {
      c->cu_q[b + 1] = c->cu_q[b] + (int32_t)take(in, 4);
      c->cu_k[b + 1] =
          c->cu_k[b] +
          (int32_t)(x->c.cross ? take(in, 5) : c->cu_q[b + 1] - c->cu_q[b]);
    }
    c->B = 1;
    c->Sq = c->cu_q[c->nseq] + take(in, 2); /* rows past the last one */
    if (c->Sq < 1)
      c->Sq = 1;
    c->Sk = x->c.cross ? c->cu_k[c->nseq] + take(in, 2) : c->Sq;
    if (c->Sk < 1)
      c->Sk = 1;
    c->opt.cu_seqlens_q = c->cu_q;
    c->opt.cu_seqlens_k = c->cu_k;
    c->opt.varlen_batch = c->nseq;
  }
  c->use_kvl = (f & 4) && c->use_opts;
  for (int64_t b = 0; b < c->nseq; b++) {
    const int64_t cap = c->varlen ? c->cu_k[b + 1] - c->cu_k[b] : c->Sk;
    c->kvl[b] = (int32_t)(take(in, 256) % (unsigned)(cap + 1));
  }
  if (c->use_kvl)
    c->opt.kv_lens = c->kvl;
  const unsigned m = (unsigned)take(in, 256);
  c->opt.causal = (attn_causal)(m % 3);
  c->opt.window_left = (int64_t)((m / 3) % 4) - 1;
  c->opt.window_right = m & 0x40 ? 1 : -1;
  c->opt.scale = m & 0x80 ? 0.5f : 0.0f;
  c->opt.q_pos_offset = t_offs[take(in, NT(t_offs))];
  c->opt.k_pos_offset = t_offs[take(in, NT(t_offs))];
  c->use_qoffs = (f & 8) && c->use_opts;
  c->use_koffs = (f & 16) && c->use_opts;
  const unsigned os = (unsigned)take(in, 256);
  for (int64_t b = 0; b < MAXSEQ; b++) {
    c->qoffs[b] = (int64_t)((os + (unsigned)b) % 5) - 1;
    c->koffs[b] = (int64_t)((os / 5 + (unsigned)b * 3) % 7) - 2;
  }
  if (c->use_qoffs)
    c->opt.q_pos_offsets = c->qoffs;
  if (c->use_koffs)
    c->opt.k_pos_offsets = c->koffs;
  if (!c->use_opts) {
    attn_params_init(&c->opt);
    c->use_kvl = c->use_qoffs = c->use_koffs = 0;
  }
}

/* The core's score options the template may carry (attn.h), drawn here
 * for the layer: softcap, sinks (some heads -inf: no sink), an additive
 * bias and a boolean mask of every broadcast shape, dropout; the backward's
 * dsinks and dbias. */
static const float t_cap[] = {1.0f, 0.5f, 5.0f, 30.0f, 0.05f, 2.0f};
static const float t_sinkv[] = {-INFINITY, 0.0f,  1.5f,   -2.0f,
                                4.0f,      20.0f, -30.0f, 0.75f};
static const float t_bscale[] = {1.0f, 4.0f, 0.25f, 30.0f};
static const float t_keep[] = {-0.6f, 0.0f, 0.5f, -2.0f}; /* mask density */
static const float t_drop[] = {0.1f, 0.5f, 0.9f, 0.25f};

/* One broken rule of these options (run_fwd_bwd). */
enum {
  XB_NONE,
  XB_CAP_NEG,       /* softcap < 0 */
  XB_CAP_NONFINITE, /* softcap NaN or +inf */
  XB_SINK_NAN,      /* a NaN sink */
  XB_SINK_INF,      /* a +inf sink */
  XB_BIAS_SHAPE,    /* bias heads axis hq + 1 */
  XB_BIAS_DTYPE,    /* bias bf16 */
  XB_MASK_SHAPE,    /* mask heads axis hq + 1 */
  XB_MASK_DTYPE,    /* mask f32 */
  XB_DROP,          /* dropout_p 1, negative or NaN */
  XB_DSINKS,        /* dsinks without sinks (backward; the forward may
                       refuse it too: it sizes the backward) */
  XB_DBIAS,         /* dbias without bias, or not of bias's shape (same) */
  XB_N
};

/* A bias or mask shape: each axis full or 1 (sel bits 0..3); packed
 * batches index the seq axes inside each sequence: the longest one, or
 * one more (sel bit 7: longer axes are allowed there). */
static void bc_shape(const cfgx *x, const callx *c, unsigned sel, int64_t *sh) {
  int64_t sq = c->Sq, sk = c->Sk;
  if (c->varlen) {
    sq = sk = 1;
    for (int64_t b = 0; b < c->nseq; b++) {
      sq = c->cu_q[b + 1] - c->cu_q[b] > sq ? c->cu_q[b + 1] - c->cu_q[b] : sq;
      sk = c->cu_k[b + 1] - c->cu_k[b] > sk ? c->cu_k[b + 1] - c->cu_k[b] : sk;
    }
    sq += (sel & 0x80) ? 1 : 0;
    sk += (sel & 0x80) ? 1 : 0;
  }
  sh[0] = sel & 1 ? 1 : c->nseq;
  sh[1] = sel & 2 ? 1 : x->hq;
  sh[2] = sel & 4 ? 1 : sq;
  sh[3] = sel & 8 ? 1 : sk;
}

/* Draws the options above into c->opt (with options only); returns the
 * broken rule, XB_NONE mostly. */
static int carve_extras(bytes *in, const cfgx *x, callx *c, uint64_t *s) {
  const unsigned xo = (unsigned)take(in, 256);
  if (!c->use_opts || !xo || x->hq > MAXHEADS)
    return XB_NONE;
  attn_params *o = &c->opt;
  /* non-finite x, a rare draw (1 in 4 of bit 7) */
  if ((xo & 0x80) && take(in, 4) == 0) {
    c->nonfinite = 1;
    c->nf_at = take(in, 256) % (c->B * c->Sq) * x->E + take(in, 256) % x->E;
    const float v[3] = {NAN, INFINITY, -INFINITY};
    c->nf_val = v[take(in, 3)];
  }
  if (xo & 1) {
    o->softcap = t_cap[take(in, NT(t_cap))];
    if (c->nonfinite) /* tanh(+-inf) is finite: NaN only (see below) */
      c->nf_val = NAN;
  }
  if (xo & 2) {
    for (int64_t h = 0; h < x->hq; h++)
      c->sinks[h] = t_sinkv[take(in, NT(t_sinkv))];
    o->sinks = c->sinks;
  }
  if (xo & 4) {
    const unsigned sel = (unsigned)take(in, 256);
    bc_shape(x, c, sel, c->bsh);
    const int64_t n = c->bsh[0] * c->bsh[1] * c->bsh[2] * c->bsh[3];
    const float sc = t_bscale[(sel >> 4) & 3];
    c->bias = xcalloc((size_t)n, sizeof(float));
    for (int64_t k = 0; k < n; k++) {
      const float r = frand(s);
      /* -inf masks (not with non-finite x: NaN + -inf is NaN) */
      c->bias[k] = (sel & 0x40) && !c->nonfinite && r < -0.75f ? -INFINITY
                                                               : frand(s) * sc;
    }
    o->bias = attn_tensor_contiguous(c->bias, ATTN_DTYPE_F32, c->bsh[0],
                                     c->bsh[1], c->bsh[2], c->bsh[3]);
  }
  if (xo & 8) {
    const unsigned sel = (unsigned)take(in, 256);
    bc_shape(x, c, sel, c->msh);
    const int64_t n = c->msh[0] * c->msh[1] * c->msh[2] * c->msh[3];
    const float thr = t_keep[(sel >> 4) & 3];
    c->mask = xcalloc((size_t)n, 1);
    for (int64_t k = 0; k < n; k++)
      c->mask[k] = frand(s) > thr ? (unsigned char)(1 + (sel & 0x40)) : 0;
    o->mask = attn_tensor_contiguous(c->mask, ATTN_DTYPE_BOOL, c->msh[0],
                                     c->msh[1], c->msh[2], c->msh[3]);
  }
  if (xo & 16) {
    o->dropout_p = t_drop[take(in, NT(t_drop))];
    o->dropout_seed = (uint64_t)take(in, 256) * 0x9E3779B97F4A7C15ULL;
  }
  if (xo & 32) {
    c->want_dsinks = o->sinks != NULL;
    c->want_dbias = o->bias.data != NULL;
    if (c->want_dsinks)
      o->dsinks = c->dsinks;
    if (c->want_dbias) {
      c->dbias =
          xcalloc((size_t)(c->bsh[0] * c->bsh[1] * c->bsh[2] * c->bsh[3]),
                  sizeof(float));
      o->dbias = attn_tensor_contiguous(c->dbias, ATTN_DTYPE_F32, c->bsh[0],
                                        c->bsh[1], c->bsh[2], c->bsh[3]);
    }
  }
  return xo & 64 ? 1 + (int)take(in, XB_N - 1) : XB_NONE;
}

/* Whether a valid config's call is valid (the core's rules on what was
 * drawn, the absolute tables' ranges). */
static int call_valid(const cfgx *x, const callx *c) {
  const attn_params *o = &c->opt;
  if (o->q_pos_offset < -POSMAX || o->q_pos_offset > POSMAX ||
      o->k_pos_offset < -POSMAX || o->k_pos_offset > POSMAX)
    return 0;
  if (c->varlen && (c->cu_q[c->nseq] > c->Sq || c->cu_k[c->nseq] > c->Sk))
    return 0;
  const int pos = x->c.position;
  for (int key = 0; key < 2; key++) {
    const int64_t rows = key ? c->B * c->Sk : c->B * c->Sq;
    if (key && !x->c.cross)
      break;
    for (int64_t r = 0; r < rows; r++) {
      const int64_t p = abs_pos(c, key, r);
      if (p == INT64_MIN)
        continue;
      if (pos == ATTN_LAYER_POS_LEARNED && (p < 0 || p >= x->c.max_positions))
        return 0;
      if (pos == ATTN_LAYER_POS_SINUSOIDAL && (p < -POSMAX || p > POSMAX))
        return 0;
    }
  }
  /* the core's positions stay within +-2^48 + lengths (its offsets are) */
  return 1;
}

enum {
  H_NONE,
  H_X_NULL,
  H_OUT_NULL,
  H_Y, /* self: y set; cross: y NULL */
  H_BATCH0,
  H_SEQNEG,
  H_OVERFLOW,
  H_OPT_Q,   /* options.q.data set */
  H_OPT_LSE, /* options.lse set */
  H_OPT_POS, /* alibi_slopes / rel_bias set for ALIBI / T5 */
  H_OPT_SIZE,
  H_CALL_SIZE,
  H_ACT_SMALL,
  H_ACT_ALIGN,
  H_WS_SMALL,
  H_WS_ALIGN,
  H_KVL,    /* kv_lens past the keys */
  H_CU,     /* cu_seqlens not non-decreasing */
  H_DVALUE, /* dvalue without a value input (backward) */
  H_DOUT,   /* dout NULL (backward) */
  H_SEQK,   /* self: seq_k neither 0 nor seq_q */
  H_N
};

static void snapshot(const float *p, int64_t n, float **keep) {
  *keep = NULL;
  if (!p)
    return;
  *keep = xcalloc((size_t)n, sizeof(float));
  memcpy(*keep, p, (size_t)n * sizeof(float));
}

static void same_as(const float *p, const float *keep, int64_t n,
                    const char *what) {
  if (p && keep && memcmp(p, keep, (size_t)n * sizeof(float)) != 0)
    fail(what, n, 0, 0, 0);
}

/* The same bits, or NaN where keep has NaN (non-finite inputs: NaN's
 * payload is not part of the contract). */
static void same_nan(const float *p, const float *keep, int64_t n,
                     const char *what) {
  for (int64_t i = 0; p && keep && i < n; i++)
    if (memcmp(p + i, keep + i, sizeof(float)) != 0 &&
        !(isnan(p[i]) && isnan(keep[i])))
      fail(what, i, n, p[i], keep[i]);
}

/* The forward's out with x[nf_at] non-finite: an out row the oracle makes
 * non-finite (its attention row sees a non-finite Q, K or V element: o is
 * NaN, attn.h) is non-finite in every element; a finite oracle row is
 * within its bound, or non-finite only where attn.h's one exception may
 * reach it: self-attention, where the non-finite row is a key of the
 * row's sequence (a non-finite V of a masked key reaches the rows of its
 * tile through 0 * x). */
static void compare_nonfinite(const cfgx *x, const callx *c, const float *got,
                              const arr2 *want) {
  const int64_t nf_row = c->nf_at / x->E, w = x->dout;
  for (int64_t r = 0; r < c->B * c->Sq; r++) {
    int ofin = 1, gfin = 1, leak = 0;
    for (int64_t t = 0; t < w; t++) {
      ofin &= isfinite(want->v[r * w + t]) != 0;
      gfin &= isfinite(got[r * w + t]) != 0;
    }
    for (int64_t b = 0; !x->c.cross && b < c->nseq; b++) {
      geo G;
      geom(x, c, b, &G);
      if (r >= G.qr0 && r < G.qr0 + G.sq && nf_row >= G.kr0 &&
          nf_row < G.kr0 + G.sk)
        leak = 1;
    }
    if (!ofin) {
      for (int64_t t = 0; t < w; t++)
        if (isfinite(got[r * w + t]))
          fail("forward out: finite where the oracle's row is not (x "
               "non-finite)",
               r, t, got[r * w + t], want->v[r * w + t]);
    } else if (gfin) {
      arr2 row = {want->v + r * w, want->e + r * w};
      compare("forward out (x non-finite, a finite row)", got + r * w, &row, w);
    } else if (!leak) {
      fail("forward out: non-finite where the oracle's row is finite", r,
           nf_row, 0, 0);
    }
  }
}

static void run_fwd_bwd(bytes *in, const cfgx *x, attn_layer *L,
                        const plist *pl, uint64_t *s) {
  callx c;
  carve_call(in, x, &c);
  const int hostile = (int)take(in, 2 * H_N) < H_N ? (int)take(in, H_N) : 0;
  const unsigned bf = (unsigned)take(in, 256);
  const int caller_bufs = bf & 1, do_bwd = (bf & 2) || 1;
  const int64_t rq = c.B * c.Sq, rk = c.B * c.Sk;
  bufs b;
  memset(&b, 0, sizeof b);
  b.x = xcalloc((size_t)(rq * x->E), sizeof(float));
  b.out = xcalloc((size_t)(rq * x->dout), sizeof(float));
  b.dout = xcalloc((size_t)(rq * x->dout), sizeof(float));
  b.dx = xcalloc((size_t)(rq * x->E), sizeof(float));
  fill(b.x, rq * x->E, s, 1.0f);
  fill(b.dout, rq * x->dout, s, 1.0f);
  if (x->c.cross) {
    b.y = xcalloc((size_t)(rk * x->kdim), sizeof(float));
    b.dy = xcalloc((size_t)(rk * x->kdim), sizeof(float));
    fill(b.y, rk * x->kdim, s, 1.0f);
    if (c.use_value) {
      b.val = xcalloc((size_t)(rk * x->vdim), sizeof(float));
      b.dval = xcalloc((size_t)(rk * x->vdim), sizeof(float));
      fill(b.val, rk * x->vdim, s, 1.0f);
    }
  }
  const int xbad = carve_extras(in, x, &c, s);
  if (c.nonfinite)
    b.x[c.nf_at] = c.nf_val;
  const int64_t nbias = c.bsh[0] * c.bsh[1] * c.bsh[2] * c.bsh[3];
  for (int64_t h = 0; h < MAXHEADS; h++) /* overwritten by the backward */
    c.dsinks[h] = 1234.5f;
  for (int64_t k = 0; c.dbias && k < nbias; k++)
    c.dbias[k] = -1234.5f;
  char msg[256];
  attn_layer_call lc;
  attn_layer_call_init(&lc);
  lc.batch = c.B;
  lc.seq_q = c.Sq;
  lc.seq_k = x->c.cross ? c.Sk : 0;
  lc.x = b.x;
  lc.y = b.y;
  lc.value = b.val;
  lc.out = b.out;
  lc.dout = b.dout;
  lc.dx = b.dx;
  lc.dy = b.dy;
  lc.dvalue = b.dval;
  attn_params opt = c.opt;
  opt.num_threads = 1;
  lc.options = c.use_opts ? &opt : NULL;
  lc.error_message = msg;
  lc.error_message_size = sizeof msg;
  int valid = call_valid(x, &c);
  /* the sizes of the valid call */
  size_t act_bytes = 0, ws_bytes = 0;
  const attn_status sst =
      attn_layer_buffer_sizes(L, NULL, &lc, &act_bytes, &ws_bytes);
  if (valid && sst != ATTN_OK) {
    fprintf(stderr, "layer_fuzz: %s\n", msg);
    fail("buffer_sizes refused a valid call", sst, 0, 0, 0);
  }
  /* sizes of large calls are computed, not allocated: 2^30 rows (valid
   * when rows x widths stay within 2^44 elements), and 2^32 (refused) */
  if (c.use_opts && !c.varlen && !c.use_kvl && !c.use_qoffs && !c.use_koffs) {
    attn_layer_call big = lc;
    attn_params bo = opt;
    bo.q_pos_offset = bo.k_pos_offset = 0;
    /* tensors of the small shapes do not broadcast to the large ones */
    bo.bias.data = bo.mask.data = bo.dbias.data = NULL;
    big.options = &bo;
    big.batch = (int64_t)1 << 15;
    big.seq_q = (int64_t)1 << 15;
    big.seq_k = x->c.cross ? big.seq_q : 0;
    size_t ba = 0, bw = 0;
    int64_t wmax = x->E;
    const int64_t ws[] = {x->kdim, x->vdim, x->nq,   x->nk,
                          x->nv,   x->no,   x->dout, x->hq};
    for (int i = 0; i < NT(ws); i++)
      wmax = ws[i] > wmax ? ws[i] : wmax;
    const attn_status bst = attn_layer_buffer_sizes(L, NULL, &big, &ba, &bw);
    const int fits = wmax <= ((int64_t)1 << 14) &&
                     (x->c.position != ATTN_LAYER_POS_LEARNED ||
                      x->c.max_positions >= big.seq_q);
    if (fits && bst != ATTN_OK)
      fail("buffer_sizes refused a large valid call", bst, 0, 0, 0);
    if (bst == ATTN_OK &&
        ba < (size_t)((int64_t)1 << 30) * (size_t)(x->nq + x->nk + x->nv) * 4)
      fail("buffer_sizes: activations below Q, K, V", (long long)ba, 0, 0, 0);
    big.batch = (int64_t)1 << 17;
    if (attn_layer_buffer_sizes(L, NULL, &big, &ba, &bw) == ATTN_OK)
      fail("buffer_sizes accepted 2^32 rows", 0, 0, 0, 0);
  }
  /* the caller's buffers also serve the 3-thread runs: sized for both */
  if (caller_bufs && sst == ATTN_OK && c.use_opts) {
    size_t a3 = 0, w3 = 0;
    opt.num_threads = 3;
    if (attn_layer_buffer_sizes(L, NULL, &lc, &a3, &w3) != ATTN_OK)
      fail("buffer_sizes on 3 threads refused", 0, 0, 0, 0);
    opt.num_threads = 1;
    if (a3 != act_bytes)
      fail("buffer_sizes: activations depend on the threads", (long long)a3,
           (long long)act_bytes, 0, 0);
    if (w3 > ws_bytes)
      ws_bytes = w3;
  }
  if (caller_bufs && sst == ATTN_OK) {
    b.act = aligned_alloc(64, (act_bytes + 63) / 64 * 64 + 64);
    b.ws = aligned_alloc(64, (ws_bytes + 63) / 64 * 64 + 64);
    if (!b.act || !b.ws)
      abort();
    lc.activations = b.act;
    lc.activations_size = act_bytes;
    lc.workspace = b.ws;
    lc.workspace_size = ws_bytes;
  }
  size_t call_size = sizeof lc;
  int fwd_bad = 0, bwd_bad = 0;
  float fake[4] = {0};
  int32_t badcu[MAXSEQ + 1], badkv[MAXSEQ];
  switch (hostile) {
  case H_X_NULL:
    lc.x = NULL;
    fwd_bad = 1;
    break;
  case H_OUT_NULL:
    lc.out = NULL;
    fwd_bad = 1;
    break;
  case H_Y:
    lc.y = x->c.cross ? NULL : b.x;
    fwd_bad = 1;
    break;
  case H_BATCH0:
    lc.batch = 0;
    fwd_bad = 1;
    break;
  case H_SEQNEG:
    lc.seq_q = -1;
    fwd_bad = 1;
    break;
  case H_OVERFLOW:
    lc.batch = (int64_t)1 << 16;
    lc.seq_q = (int64_t)1 << 16;
    fwd_bad = 1;
    break;
  case H_OPT_Q:
    opt.q.data = fake;
    fwd_bad = c.use_opts;
    break;
  case H_OPT_LSE:
    opt.lse = fake;
    fwd_bad = c.use_opts;
    break;
  case H_OPT_POS:
    opt.alibi_slopes = fake;
    opt.rel_bias = fake;
    opt.rel_buckets = 1;
    fwd_bad = c.use_opts && (x->c.position == ATTN_LAYER_POS_ALIBI ||
                             x->c.position == ATTN_LAYER_POS_T5);
    if (c.use_opts && !fwd_bad) /* a table the layer does not fill: the
                                   core's, applied: not modelled here */
      opt.alibi_slopes = NULL, opt.rel_bias = NULL, opt.rel_buckets = 32;
    break;
  case H_OPT_SIZE:
    lc.options_size = sizeof(attn_params) + 8;
    fwd_bad = c.use_opts;
    break;
  case H_CALL_SIZE:
    call_size = sizeof lc - 8;
    fwd_bad = 1;
    break;
  case H_ACT_SMALL:
    if (lc.activations) {
      lc.activations_size = act_bytes - 1;
      fwd_bad = 1;
    }
    break;
  case H_ACT_ALIGN:
    if (lc.activations) {
      lc.activations = (char *)b.act + 2;
      fwd_bad = 1;
    }
    break;
  case H_WS_SMALL:
    if (lc.workspace && ws_bytes > 0) {
      lc.workspace_size = 0;
      fwd_bad = 1;
    }
    break;
  case H_WS_ALIGN:
    if (lc.workspace) {
      lc.workspace = (char *)b.ws + 1;
      fwd_bad = 1;
    }
    break;
  case H_KVL:
    if (c.use_opts) {
      for (int64_t k = 0; k < c.nseq; k++)
        badkv[k] = c.kvl[k];
      badkv[c.nseq - 1] = (int32_t)(c.Sk + 1);
      opt.kv_lens = badkv;
      fwd_bad = 1;
    }
    break;
  case H_CU:
    if (c.varlen) {
      memcpy(badcu, c.cu_q, sizeof badcu);
      badcu[1] = (int32_t)c.Sq + 1;
      opt.cu_seqlens_q = badcu;
      fwd_bad = 1;
    }
    break;
  case H_DVALUE:
    if (x->c.cross && !c.use_value) {
      lc.dvalue = b.dx;
      fwd_bad = 1; /* the same call: the forward checks it too */
    }
    break;
  case H_DOUT:
    lc.dout = NULL;
    bwd_bad = 1;
    break;
  case H_SEQK:
    if (!x->c.cross) {
      lc.seq_k = c.Sq + 1;
      fwd_bad = 1;
    }
    break;
  default:
    break;
  }
  /* one rule of the template's score options broken */
  float junk[64], xsinks[MAXHEADS];
  memset(junk, 0, sizeof junk);
  int either = 0; /* refused by the forward, or else by the backward */
  switch (xbad) {
  case XB_CAP_NEG:
    opt.softcap = -1.0f;
    fwd_bad = 1;
    break;
  case XB_CAP_NONFINITE:
    opt.softcap = bf & 4 ? NAN : INFINITY;
    fwd_bad = 1;
    break;
  case XB_SINK_NAN:
  case XB_SINK_INF:
    for (int64_t h = 0; h < MAXHEADS; h++)
      xsinks[h] = opt.sinks ? opt.sinks[h] : -INFINITY;
    xsinks[x->hq - 1] = xbad == XB_SINK_NAN ? NAN : INFINITY;
    opt.sinks = xsinks;
    fwd_bad = 1;
    break;
  case XB_BIAS_SHAPE:
    opt.bias = attn_tensor_contiguous(junk, ATTN_DTYPE_F32, 1, x->hq + 1, 1, 1);
    fwd_bad = 1;
    break;
  case XB_BIAS_DTYPE:
    opt.bias = attn_tensor_contiguous(junk, ATTN_DTYPE_BF16, 1, 1, 1, 1);
    fwd_bad = 1;
    break;
  case XB_MASK_SHAPE:
    opt.mask =
        attn_tensor_contiguous(junk, ATTN_DTYPE_BOOL, 1, x->hq + 1, 1, 1);
    fwd_bad = 1;
    break;
  case XB_MASK_DTYPE:
    opt.mask = attn_tensor_contiguous(junk, ATTN_DTYPE_F32, 1, 1, 1, 1);
    fwd_bad = 1;
    break;
  case XB_DROP:
    opt.dropout_p = bf & 4 ? 1.0f : bf & 8 ? -0.25f : NAN;
    fwd_bad = 1;
    break;
  case XB_DSINKS:
    if (!opt.sinks) {
      opt.dsinks = junk;
      either = 1;
    }
    break;
  case XB_DBIAS:
    opt.dbias = attn_tensor_contiguous(junk, ATTN_DTYPE_F32, 1,
                                       opt.bias.data ? x->hq + 1 : 1, 1, 1);
    either = 1;
    break;
  default:
    break;
  }
  (void)do_bwd;
  float *keep_out, *keep_grads;
  int64_t np;
  float *grads = attn_layer_grads(L, &np);
  attn_layer_zero_grad(L);
  snapshot(b.out, rq * x->dout, &keep_out);
  msg[0] = '\0';
  const attn_status st = attn_layer_forward_sized(L, NULL, &lc, call_size);
  if (valid && !fwd_bad && either && st == ATTN_OK)
    bwd_bad = 1; /* the forward took it: the backward must refuse it */
  if (!valid || fwd_bad || (either && st != ATTN_OK)) {
    if (st == ATTN_OK)
      fail(valid ? "forward accepted an invalid call (hostile)"
                 : "forward accepted an invalid call",
           hostile, x->c.position, 0, 0);
    if (!msg[0] && call_size == sizeof lc)
      fail("forward: a refused call without a reason", st, hostile, 0, 0);
    same_as(b.out, keep_out, rq * x->dout, "forward: a refused call wrote out");
    goto done;
  }
  if (st != ATTN_OK) {
    fprintf(stderr, "layer_fuzz: %s\n", msg);
    fail("forward refused a valid call", st, hostile, 0, 0);
  }
  /* the oracle */
  int64_t cnt;
  const float *params = attn_layer_params(L, &cnt);
  double *th = xcalloc((size_t)cnt, sizeof(double));
  for (int64_t i = 0; i < cnt; i++)
    th[i] = params[i];
  net N;
  memset(&N, 0, sizeof N);
  N.x = x;
  N.c = &c;
  N.pl = pl;
  N.th = th;
  N.rq = rq;
  N.rk = rk;
  net_forward(&N, b.x, b.y, b.val);
  if (c.nonfinite)
    compare_nonfinite(x, &c, b.out, &N.out);
  else
    compare("forward out", b.out, &N.out, rq * x->dout);
  /* 3 threads: the same bits (NaN for NaN with non-finite x) */
  if (c.use_opts) {
    float *one = NULL;
    snapshot(b.out, rq * x->dout, &one);
    memset(b.out, 0x55, (size_t)(rq * x->dout) * sizeof(float));
    opt.num_threads = 3;
    if (attn_layer_forward(L, NULL, &lc) != ATTN_OK)
      fail("forward on 3 threads refused", 0, 0, 0, 0);
    same_nan(b.out, one, rq * x->dout, "forward: 1 and 3 threads differ");
    free(one);
    opt.num_threads = 1;
  }
  /* the backward */
  {
    snapshot(grads, np, &keep_grads);
    float *keep_dx, *keep_ds, *keep_db;
    snapshot(b.dx, rq * x->E, &keep_dx);
    snapshot(c.dsinks, MAXHEADS, &keep_ds);
    snapshot(c.dbias, nbias, &keep_db);
    msg[0] = '\0';
    const attn_status bs = attn_layer_backward(L, NULL, &lc);
    if (bwd_bad) {
      if (bs == ATTN_OK)
        fail("backward accepted an invalid call", hostile, xbad, 0, 0);
      if (!msg[0])
        fail("backward: a refused call without a reason", bs, hostile, 0, 0);
      same_as(grads, keep_grads, np, "backward: a refused call wrote grads");
      same_as(b.dx, keep_dx, rq * x->E, "backward: a refused call wrote dx");
      same_as(c.dsinks, keep_ds, MAXHEADS,
              "backward: a refused call wrote dsinks");
      same_as(c.dbias, keep_db, nbias, "backward: a refused call wrote dbias");
    } else if (c.nonfinite) {
      /* non-finite x: only that the call runs, the same on 3 threads */
      if (bs != ATTN_OK) {
        fprintf(stderr, "layer_fuzz: %s\n", msg);
        fail("backward refused a valid call (non-finite x)", bs, 0, 0, 0);
      }
      if (c.use_opts) {
        float *g1, *dx1;
        snapshot(grads, np, &g1);
        snapshot(b.dx, rq * x->E, &dx1);
        attn_layer_zero_grad(L);
        opt.num_threads = 3;
        if (attn_layer_backward(L, NULL, &lc) != ATTN_OK)
          fail("backward on 3 threads refused", 0, 0, 0, 0);
        same_nan(grads, g1, np, "backward: 1 and 3 threads differ (grads)");
        same_nan(b.dx, dx1, rq * x->E, "backward: 1 and 3 threads differ (dx)");
        free(g1);
        free(dx1);
      }
    } else {
      if (bs != ATTN_OK) {
        fprintf(stderr, "layer_fuzz: %s\n", msg);
        fail("backward refused a valid call", bs, hostile, 0, 0);
      }
      gradset G2;
      memset(&G2, 0, sizeof G2);
      net_backward(&N, b.dout, &G2);
      arr2 gw = {G2.g, G2.e};
      compare("parameter gradients", grads, &gw, np);
      compare("dx", b.dx, &G2.dx, rq * x->E);
      if (x->c.cross)
        compare("dy", b.dy, &G2.dy, rk * x->kdim);
      if (x->c.cross && c.use_value)
        compare("dvalue", b.dval, &G2.dval, rk * x->vdim);
      if (c.want_dsinks)
        compare("dsinks", c.dsinks, &G2.dsinks, x->hq);
      if (c.want_dbias)
        compare("dbias", c.dbias, &G2.dbias, nbias);
      if (c.use_opts) { /* 3 threads: the same bits */
        float *g1, *dx1, *ds1, *db1;
        snapshot(grads, np, &g1);
        snapshot(b.dx, rq * x->E, &dx1);
        snapshot(c.dsinks, MAXHEADS, &ds1);
        snapshot(c.dbias, nbias, &db1);
        attn_layer_zero_grad(L);
        opt.num_threads = 3;
        if (attn_layer_backward(L, NULL, &lc) != ATTN_OK)
          fail("backward on 3 threads refused", 0, 0, 0, 0);
        same_as(grads, g1, np, "backward: 1 and 3 threads differ (grads)");
        same_as(b.dx, dx1, rq * x->E, "backward: 1 and 3 threads differ (dx)");
        same_as(c.dsinks, ds1, MAXHEADS,
                "backward: 1 and 3 threads differ (dsinks)");
        same_as(c.dbias, db1, nbias,
                "backward: 1 and 3 threads differ (dbias)");
        free(g1);
        free(dx1);
        free(ds1);
        free(db1);
      }
      grads_free(&G2, x->c.cross, c.use_value);
    }
    free(keep_grads);
    free(keep_dx);
    free(keep_ds);
    free(keep_db);
  }
  net_free(&N);
  free(th);
done:
  free(keep_out);
  free(c.bias);
  free(c.mask);
  free(c.dbias);
  free(b.x);
  free(b.y);
  free(b.val);
  free(b.out);
  free(b.dout);
  free(b.dx);
  free(b.dy);
  free(b.dval);
  free(b.act);
  free(b.ws);
}

/* ---- decode ------------------------------------------------------------- */

static const attn_dtype cache_dts[3] = {ATTN_DTYPE_F32, ATTN_DTYPE_BF16,
                                        ATTN_DTYPE_F16};

static double cache_u(attn_dtype dt) {
  return dt == ATTN_DTYPE_BF16  ? ldexp(1, -8)
         : dt == ATTN_DTYPE_F16 ? ldexp(1, -11)
                                : 0.0;
}

static void run_decode(bytes *in, const cfgx *x, attn_layer *L, const plist *pl,
                       uint64_t *s) {
  const unsigned f = (unsigned)take(in, 256);
  const int64_t B = 1 + take(in, 2);
  const int64_t prompt = 1 + take(in, 4), singles = 1 + take(in, 3);
  const int64_t n = prompt + singles;
  const attn_dtype dt = cache_dts[take(in, 3)];
  const int paged = (f & 1) != 0;
  const int hostile = (int)take(in, 12); /* 0..6: one rule broken */
  /* the template's softcap and sinks (the decode kernel takes both), or
   * one of their rules broken at the first step (1: a NaN sink, 2:
   * dropout, which the cache refuses, 3: a negative softcap) */
  const unsigned xo = (unsigned)take(in, 256);
  const float dcap = xo & 1 ? t_cap[take(in, NT(t_cap))] : 0.0f;
  float dsk[MAXHEADS], xsk[MAXHEADS];
  const int dsinks = (xo & 2) && x->hq <= MAXHEADS;
  for (int64_t h = 0; h < MAXHEADS; h++)
    dsk[h] = dsinks && h < x->hq ? t_sinkv[take(in, NT(t_sinkv))] : -INFINITY;
  const int dxbad = (xo & 4) && x->hq <= MAXHEADS ? 1 + (int)take(in, 3) : 0;
  const int64_t page = 2;
  const int64_t cap = paged ? ((n + page - 1) / page + (f & 2 ? 1 : 0)) * page
                            : n + (int64_t)(f & 2 ? 1 : 0);
  const int64_t hd = x->d, hdv = x->dv;
  const size_t es = dt == ATTN_DTYPE_F32 ? 4 : 2;
  attn_kv_cache kc;
  attn_kv_cache_init(&kc);
  kc.dtype = dt;
  kc.num_seqs = B;
  kc.heads_kv = x->hkv;
  kc.head_dim = hd;
  kc.head_dim_v = hdv;
  int32_t lens[4] = {0, 0, 0, 0};
  int32_t table[4 * 16];
  int64_t rows;
  if (paged) {
    kc.page_size = page;
    kc.blocks_per_seq = cap / page;
    kc.num_pages = B * kc.blocks_per_seq + 1;
    for (int64_t i = 0; i < B * kc.blocks_per_seq; i++)
      table[i] = (int32_t)(kc.num_pages - 1 - i); /* reversed, page 0 free */
    kc.block_table = table;
    rows = kc.num_pages * page;
  } else {
    kc.capacity = cap;
    rows = B * cap;
  }
  kc.k = xcalloc((size_t)(rows * x->hkv * hd), es);
  kc.v = xcalloc((size_t)(rows * x->hkv * hdv), es);
  kc.seq_lens = lens;
  char kmsg[128];
  kc.error_message = kmsg;
  kc.error_message_size = sizeof kmsg;
  const int64_t rq = B * n;
  float *xs = xcalloc((size_t)(rq * x->E), sizeof(float));
  fill(xs, rq * x->E, s, 1.0f);
  float *outs = xcalloc((size_t)(rq * x->dout), sizeof(float));
  /* the oracle: the causal forward over the n tokens of each sequence */
  callx c;
  memset(&c, 0, sizeof c);
  attn_params_init(&c.opt);
  c.opt.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  c.opt.softcap = dcap;
  memcpy(c.sinks, dsk, sizeof dsk);
  c.opt.sinks = dsinks ? c.sinks : NULL;
  c.B = c.nseq = B;
  c.Sq = c.Sk = n;
  /* a learned table shorter than the tokens: the step that reaches past
   * it is refused (and decoding stops there) */
  const int64_t maxp =
      x->c.position == ATTN_LAYER_POS_LEARNED ? x->c.max_positions : INT64_MAX;
  int64_t cnt;
  const float *params = attn_layer_params(L, &cnt);
  double *th = xcalloc((size_t)cnt, sizeof(double));
  for (int64_t i = 0; i < cnt; i++)
    th[i] = params[i];
  net N;
  memset(&N, 0, sizeof N);
  N.x = x;
  N.c = &c;
  N.pl = pl;
  N.th = th;
  N.rq = N.rk = rq;
  /* K after RoPE and V are stored in dt (u_c relative), then read back
   * exactly */
  N.cache_u = cache_u(dt);
  if (!x->c.cross)
    net_forward(&N, xs, NULL, NULL);
  free(th);
  char msg[256];
  attn_params opt;
  attn_params_init(&opt);
  opt.num_threads = 1;
  opt.softcap = dcap;
  opt.sinks = c.opt.sinks;
  int64_t done = 0;
  int step = 0, hostile_done = 0;
  while (done < n) {
    const int64_t chunk = done == 0 ? prompt : 1;
    float *xc = xcalloc((size_t)(B * chunk * x->E), sizeof(float));
    for (int64_t b = 0; b < B; b++)
      memcpy(xc + b * chunk * x->E, xs + (b * n + done) * x->E,
             (size_t)(chunk * x->E) * sizeof(float));
    float *oc = xcalloc((size_t)(B * chunk * x->dout), sizeof(float));
    attn_layer_call lc;
    attn_layer_call_init(&lc);
    lc.batch = B;
    lc.seq_q = chunk;
    lc.x = xc;
    lc.out = oc;
    opt.causal = chunk > 1 ? ATTN_CAUSAL_BOTTOM_RIGHT : ATTN_CAUSAL_NONE;
    lc.options = &opt;
    lc.error_message = msg;
    lc.error_message_size = sizeof msg;
    const int stop = x->c.cross || done + chunk > maxp;
    int bad = stop;
    attn_params hopt = opt;
    attn_kv_cache hc = kc;
    int32_t klen[4] = {1, 1, 1, 1};
    if (!hostile_done && hostile == 1) {
      lc.batch = B + 1;
      bad = 1;
    } else if (!hostile_done && hostile == 2) {
      hopt.kv_lens = klen;
      lc.options = &hopt;
      bad = 1;
    } else if (!hostile_done && hostile == 3) {
      hopt.q_pos_offset = 1;
      lc.options = &hopt;
      bad = 1;
    } else if (!hostile_done && hostile == 4) {
      hc.heads_kv = x->hkv + 1;
      bad = 1;
    } else if (!hostile_done && hostile == 5) {
      lc.seq_q = cap + 1; /* no room */
      bad = 1;
    } else if (!hostile_done && hostile == 6) {
      lc.batch = ((int64_t)1 << 40) + 1;
      bad = 1;
    }
    if (!hostile_done && dxbad) {
      if (dxbad == 1) {
        memcpy(xsk, dsk, sizeof xsk);
        xsk[x->hq - 1] = NAN;
        hopt.sinks = xsk;
      } else if (dxbad == 2) {
        hopt.dropout_p = 0.5f;
      } else {
        hopt.softcap = -2.0f;
      }
      lc.options = &hopt;
      bad = 1;
    }
    /* the workspace size (every sequence at capacity) */
    size_t wsb = 0, wsb3 = 0;
    const attn_status wst =
        attn_layer_decode_workspace_size(L, NULL, &lc, &hc, &wsb);
    if (wst == ATTN_OK && lc.options == &opt) { /* also for 3 threads */
      opt.num_threads = 3;
      if (attn_layer_decode_workspace_size(L, NULL, &lc, &hc, &wsb3) ==
              ATTN_OK &&
          wsb3 > wsb)
        wsb = wsb3;
      opt.num_threads = 1;
    }
    void *ws = NULL;
    if (wst == ATTN_OK && (f & 4)) {
      ws = aligned_alloc(64, (wsb + 63) / 64 * 64 + 64);
      if (!ws)
        abort();
      lc.workspace = ws;
      lc.workspace_size = wsb;
    }
    const size_t kb = (size_t)(rows * x->hkv * hd) * es,
                 vb = (size_t)(rows * x->hkv * hdv) * es;
    unsigned char *k0 = xcalloc(kb, 1), *v0 = xcalloc(vb, 1);
    memcpy(k0, kc.k, kb);
    memcpy(v0, kc.v, vb);
    int32_t l0[4];
    memcpy(l0, lens, sizeof l0);
    msg[0] = '\0';
    const attn_status st = attn_layer_decode(L, NULL, &lc, &hc);
    if (bad) {
      if (st == ATTN_OK)
        fail("decode accepted an invalid call", hostile, step, 0, 0);
      if (!msg[0])
        fail("decode: a refused call without a reason", st, hostile, 0, 0);
      if (memcmp(k0, kc.k, kb) || memcmp(v0, kc.v, vb) ||
          memcmp(l0, lens, sizeof l0))
        fail("decode: a refused call changed the cache", st, hostile, 0, 0);
      free(k0), free(v0), free(xc), free(oc), free(ws);
      if (stop)
        break;
      hostile_done = 1;
      continue; /* the same step, now valid */
    }
    if (st != ATTN_OK) {
      fprintf(stderr, "layer_fuzz: %s\n", msg);
      fail("decode refused a valid call", st, step, 0, 0);
    }
    /* 3 threads: the same bits, from the same cache */
    if (step == 0) {
      float *one;
      snapshot(oc, B * chunk * x->dout, &one);
      unsigned char *k1 = xcalloc(kb, 1), *v1 = xcalloc(vb, 1);
      memcpy(k1, kc.k, kb);
      memcpy(v1, kc.v, vb);
      memcpy(kc.k, k0, kb);
      memcpy(kc.v, v0, vb);
      memcpy(lens, l0, sizeof l0);
      opt.num_threads = 3;
      if (attn_layer_decode(L, NULL, &lc, &kc) != ATTN_OK)
        fail("decode on 3 threads refused", 0, 0, 0, 0);
      opt.num_threads = 1;
      same_as(oc, one, B * chunk * x->dout, "decode: 1 and 3 threads differ");
      if (memcmp(k1, kc.k, kb) || memcmp(v1, kc.v, vb))
        fail("decode: 1 and 3 threads cache differently", 0, 0, 0, 0);
      free(one), free(k1), free(v1);
    }
    for (int64_t b = 0; b < B; b++)
      if (lens[b] != done + chunk)
        fail("decode: seq_lens not advanced", b, lens[b], 0, 0);
    for (int64_t b = 0; b < B; b++)
      memcpy(outs + (b * n + done) * x->dout, oc + b * chunk * x->dout,
             (size_t)(chunk * x->dout) * sizeof(float));
    free(k0), free(v0), free(xc), free(oc), free(ws);
    done += chunk;
    step++;
  }
  /* every token decoded against the causal forward's row */
  if (!x->c.cross)
    for (int64_t b = 0; b < B; b++) {
      arr2 w = {N.out.v + b * n * x->dout, N.out.e + b * n * x->dout};
      compare("decode out", outs + b * n * x->dout, &w, done * x->dout);
    }
  if (!x->c.cross)
    net_free(&N);
  free(xs);
  free(outs);
  free(kc.k);
  free(kc.v);
}

/* ---- the driver --------------------------------------------------------- */

static const attn_layer_config *carve_config(bytes *in, cfgx *x) {
  memset(x, 0, sizeof *x);
  attn_layer_config_init(&x->c);
  attn_layer_config *c = &x->c;
  c->d_model = t_dmodel[take(in, NT(t_dmodel))];
  c->heads_q = t_heads[take(in, NT(t_heads))];
  c->heads_kv = t_headskv[take(in, NT(t_headskv))];
  c->head_dim = t_hdim[take(in, NT(t_hdim))];
  c->head_dim_v = t_hdimv[take(in, NT(t_hdimv))];
  c->d_out = t_dout[take(in, NT(t_dout))];
  const unsigned f = (unsigned)take(in, 256);
  c->cross = f & 1 ? (f & 0x80 ? 2 : 1) : 0;
  c->kdim = t_kdim[take(in, NT(t_kdim))];
  c->vdim = t_vdim[take(in, NT(t_vdim))];
  if (!c->cross && !(f & 0x40))
    c->kdim = c->vdim = 0; /* mostly valid */
  c->fused_qkv = (f & 2) != 0;
  const unsigned bias = (unsigned)take(in, 16);
  c->bias_q = !(bias & 1);
  c->bias_k = !(bias & 2) || c->fused_qkv;
  c->bias_v = !(bias & 4) || c->fused_qkv;
  c->bias_out = !(bias & 8);
  if (c->fused_qkv && (f & 0x20))
    c->bias_k = !c->bias_q; /* disagreeing flags */
  const unsigned ps = (unsigned)take(in, 16);
  c->position = (attn_layer_position)(ps < 14    ? (int)(ps % 6)
                                      : ps == 14 ? 6
                                                 : -1);
  c->max_positions = t_maxpos[take(in, NT(t_maxpos))];
  c->sinusoidal_base = t_sbase[take(in, NT(t_sbase))];
  x->rope_sel = (int)take(in, R_N);
  make_rope(x->rope_sel, &x->rope);
  c->rope = x->rope_sel == R_NULL ? NULL : &x->rope;
  c->t5_buckets = t_buckets[take(in, NT(t_buckets))];
  c->t5_max_distance = t_maxdist[take(in, NT(t_maxdist))];
  c->t5_bidirectional = (f & 4) != 0;
  if ((f & 0x18) == 0x18)
    x->bad_size = c->rope && (f & 0x20) ? 2 : 1;
  resolve(x);
  return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  bytes in = {data, size};
  const unsigned op = (unsigned)take(&in, 256);
  uint64_t s = 0x9E3779B97F4A7C15ULL;
  for (int i = 0; i < 3; i++)
    s = s * 0x100000001B3ULL ^ (uint64_t)take(&in, 256);
  if (!s)
    s = 1;
  cfgx x;
  carve_config(&in, &x);
  /* the parameters of a valid config stay small (libFuzzer's malloc
   * limit): larger ones are not created */
  plist pl;
  if (x.valid) {
    expected_params(&x, &pl);
    if (pl.total > 200000)
      return 0;
  }
  attn_layer *L = (attn_layer *)(uintptr_t)1;
  char err[256];
  err[0] = '\0';
  const attn_status st =
      x.bad_size == 1
          ? attn_layer_create_sized(&x.c, sizeof x.c + 8, sizeof(attn_rope), &L,
                                    err, sizeof err)
      : x.bad_size == 2
          ? attn_layer_create_sized(&x.c, sizeof x.c, 8, &L, err, sizeof err)
          : attn_layer_create(&x.c, &L, err, sizeof err);
  if (!x.valid) {
    if (st == ATTN_OK)
      fail("create accepted an invalid config", x.c.position, x.rope_sel, 0, 0);
    if (!err[0])
      fail("create: a refused config without a reason", st, 0, 0, 0);
    if (L != NULL)
      fail("create: *out not NULL after a failure", st, 0, 0, 0);
    return 0;
  }
  if (st != ATTN_OK) {
    fprintf(stderr, "layer_fuzz: %s\n", err);
    fail("create refused a valid config", st, x.c.position, 0, 0);
  }
  check_listing(L, &pl);
  if (op & 4)
    check_init(L, &x, &pl);
  fill_params(L, &pl, &s);
  if (op % 4 == 1)
    run_decode(&in, &x, L, &pl, &s);
  else if (op % 4 != 3)
    run_fwd_bwd(&in, &x, L, &pl, &s);
  attn_layer_free(L);
  return 0;
}
