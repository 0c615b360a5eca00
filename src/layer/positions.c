/*
 * positions.c - absolute position tables added to the layer's inputs
 * (SINUSOIDAL: attn_sinusoidal_table, not trained; LEARNED: the layer's
 * pos_table / pos_table_kv, trained) and the gradient of the learned ones.
 *
 * Row i of sequence b of x sits at i + q_pos_offset (+ q_pos_offsets[b]),
 * row j of y at j + k_pos_offset (+ k_pos_offsets[b]); with cu_seqlens i
 * and j count from the start of the sequence, and rows after the last
 * sequence get no position (nothing reads them).
 */
#include "layer_internal.h"

#include <string.h>

/* Sequence of row r and its first row; -1 for rows past the last one. */
static int64_t row_seq(const layer_call *lc, int is_key, int64_t r,
                       int64_t *first) {
  const int32_t *cu = is_key ? lc->opt.cu_seqlens_k : lc->opt.cu_seqlens_q;
  const int64_t S = is_key ? lc->Sk : lc->Sq;
  if (!cu) {
    *first = (r / S) * S;
    return r / S;
  }
  if (r >= cu[lc->nseq] || r < cu[0])
    return -1;
  int64_t lo = 0, hi = lc->nseq - 1; /* cu[lo] <= r < cu[hi + 1] */
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (cu[mid] <= r)
      lo = mid;
    else
      hi = mid - 1;
  }
  *first = cu[lo];
  return lo;
}

static int64_t seq_offset(const layer_call *lc, int is_key, int64_t b) {
  const attn_params *o = &lc->opt;
  const int64_t *offs = is_key ? o->k_pos_offsets : o->q_pos_offsets;
  return (is_key ? o->k_pos_offset : o->q_pos_offset) + (offs ? offs[b] : 0);
}

int64_t layer_row_pos(const layer_call *lc, int is_key, int64_t r) {
  int64_t first;
  const int64_t b = row_seq(lc, is_key, r, &first);
  if (b < 0)
    return INT64_MIN;
  return r - first + seq_offset(lc, is_key, b);
}

static attn_status add_learned(const attn_layer *L, const layer_call *lc,
                               int is_key, const float *src, float *dst) {
  const int64_t rows = is_key ? lc->rows_k : lc->rows_q;
  const int64_t w = is_key ? L->cfg.kdim : L->cfg.d_model;
  const float *tab = L->params + L->t[is_key ? LP_POS_KV : LP_POS].offset;
  const int64_t n = L->cfg.max_positions;
  for (int64_t r = 0; r < rows; r++) {
    const int64_t pos = layer_row_pos(lc, is_key, r);
    const float *s = src + r * w;
    float *d = dst + r * w;
    if (pos == INT64_MIN) {
      memcpy(d, s, (size_t)w * sizeof(float));
      continue;
    }
    if (pos < 0 || pos >= n)
      return layer_fail(lc->err, lc->err_size, ATTN_ERR_INVALID_ARGUMENT,
                        "row %lld of %s sits at position %lld, outside the "
                        "learned table (0..%lld)",
                        (long long)r, is_key ? "y" : "x", (long long)pos,
                        (long long)(n - 1));
    for (int64_t i = 0; i < w; i++)
      d[i] = s[i] + tab[pos * w + i];
  }
  return ATTN_OK;
}

static attn_status add_sinusoidal(const attn_layer *L, const layer_call *lc,
                                  int is_key, const float *src, float *dst,
                                  float *tab) {
  const int64_t w = is_key ? L->cfg.kdim : L->cfg.d_model;
  const int32_t *cu = is_key ? lc->opt.cu_seqlens_k : lc->opt.cu_seqlens_q;
  const int64_t S = is_key ? lc->Sk : lc->Sq;
  const int64_t rows = is_key ? lc->rows_k : lc->rows_q;
  memcpy(dst, src, (size_t)(rows * w) * sizeof(float));
  for (int64_t b = 0; b < lc->nseq; b++) {
    const int64_t r0 = cu ? cu[b] : b * S, n = cu ? cu[b + 1] - cu[b] : S;
    attn_status st;
    if (n <= 0)
      continue;
    st = attn_sinusoidal_table(n, w, seq_offset(lc, is_key, b),
                               L->cfg.sinusoidal_base, tab);
    if (st != ATTN_OK)
      return layer_fail(lc->err, lc->err_size, st,
                        "attn_sinusoidal_table rejected %lld rows of width "
                        "%lld from position %lld",
                        (long long)n, (long long)w,
                        (long long)seq_offset(lc, is_key, b));
    for (int64_t i = 0; i < n * w; i++)
      dst[r0 * w + i] += tab[i];
  }
  return ATTN_OK;
}

attn_status layer_pos_add(const attn_layer *L, const layer_call *lc, int is_key,
                          const float *src, float *dst, float *tab) {
  if (L->cfg.position == ATTN_LAYER_POS_LEARNED)
    return add_learned(L, lc, is_key, src, dst);
  return add_sinusoidal(L, lc, is_key, src, dst, tab);
}

void layer_pos_grad(attn_layer *L, const layer_call *lc, int is_key,
                    const float *dsrc) {
  const int64_t rows = is_key ? lc->rows_k : lc->rows_q;
  const int64_t w = is_key ? L->cfg.kdim : L->cfg.d_model;
  float *g = L->grads + L->t[is_key ? LP_POS_KV : LP_POS].offset;
  for (int64_t r = 0; r < rows; r++) {
    const int64_t pos = layer_row_pos(lc, is_key, r);
    if (pos == INT64_MIN)
      continue; /* checked in range by the forward */
    for (int64_t i = 0; i < w; i++)
      g[pos * w + i] += dsrc[r * w + i];
  }
}
