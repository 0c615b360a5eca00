/*
 * attn/positions.h - position schemes (0.3): RoPE with its scalings, the
 * sinusoidal table and T5 buckets. Included by attn.h; may also be included on
 * its own.
 */
#ifndef ATTN_POSITIONS_H
#define ATTN_POSITIONS_H

#include "../attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Position schemes (0.3)                                                   */
/* ------------------------------------------------------------------------ */
/*
 * Every scheme reads the positions of attn_params ("positions"): query i of
 * a sequence at i + seq_k - seq_q + offsets, key j at j + offsets, seq_k
 * being the effective key count (kv_lens). ALiBi (alibi_slopes) and T5
 * (rel_bias) are applied inside the kernels; RoPE rotates Q and K before
 * the call (attn_rope_apply_qk) or on the way into a KV cache; sinusoidal
 * and learned absolute tables are added to the layer's input (attn/layer.h).
 */

/* RoPE (Su et al. 2021). Pairs rotated by angle pos * inv_freq[i]:
 *   HALF         (x[i], x[i + dims/2])   GPT-NeoX, Llama
 *   INTERLEAVED  (x[2i], x[2i + 1])      GPT-J
 *   inv_freq[i] = base^(-2i / dims), i = 0 .. dims/2 - 1, then scaled. */
typedef enum attn_rope_style {
  ATTN_ROPE_HALF = 0,
  ATTN_ROPE_INTERLEAVED = 1
} attn_rope_style;

/* Context-extension scalings (as Hugging Face transformers defines them):
 *   LINEAR  positions / factor (position interpolation)
 *   NTK     base * factor^(dims / (dims - 2)) (NTK-aware)
 *   YARN    Peng et al. 2023: per-frequency ramp between interpolation and
 *           extrapolation (beta_fast, beta_slow, original_max_position),
 *           cos and sin multiplied by mscale (0 = 0.1 ln(factor) + 1)
 *   LLAMA3  Llama 3.1: low frequencies / factor, high kept, smooth between
 *           (low_freq_factor, high_freq_factor, original_max_position) */
typedef enum attn_rope_scaling {
  ATTN_ROPE_SCALING_NONE = 0,
  ATTN_ROPE_SCALING_LINEAR = 1,
  ATTN_ROPE_SCALING_NTK = 2,
  ATTN_ROPE_SCALING_YARN = 3,
  ATTN_ROPE_SCALING_LLAMA3 = 4
} attn_rope_scaling;

typedef struct attn_rope {
  double base;               /* default 10000; > 1                           */
  attn_rope_style style;     /* default HALF                                  */
  int64_t dims;              /* rotated leading dims, even; 0 (default) = all */
  attn_rope_scaling scaling; /* default NONE                           */
  double factor;             /* scaling factor, > 0 (default 1)        */
  double original_max_position; /* YARN, LLAMA3 (default 8192)            */
  double low_freq_factor;       /* LLAMA3 (default 1)                     */
  double high_freq_factor;      /* LLAMA3 (default 4)                     */
  double beta_fast;             /* YARN (default 32)                      */
  double beta_slow;             /* YARN (default 1)                       */
  double mscale;                /* YARN: 0 (default) = 0.1 ln(factor) + 1 */
} attn_rope;

ATTN_API void attn_rope_init_sized(attn_rope *r, size_t size);

/* inv_freq[dims/2] (dims = r->dims or head_dim) after scaling, and the
 * factor cos and sin are multiplied by (1 except YARN). Settings whose
 * frequencies are not finite, or so large that a position below 2^50
 * times them overflows (an NTK base * factor^(dims / (dims - 2)) past
 * DBL_MAX, a linear factor near 1e-300), get ATTN_ERR_INVALID_ARGUMENT. */
ATTN_API attn_status attn_rope_frequencies_sized(const attn_rope *r,
                                                 size_t size, int64_t head_dim,
                                                 float *inv_freq,
                                                 float *mscale);

/* Rotates x [batch, seq, heads, head_dim] into y (same shape; y may be x
 * itself, any other overlap is ATTN_ERR_OVERLAP; f32|bf16|f16 each). Row i
 * of batch b sits at positions[b * seq + i] when positions is set, else at
 * i + pos_offset (+ pos_offsets[b]). Angles are computed in double.
 * inverse rotates by the opposite angle: it undoes the rotation (up to
 * mscale^2 with YaRN) and is its gradient (dL/dx from dL/dy). */
ATTN_API attn_status attn_rope_apply_sized(const attn_rope *r, size_t size,
                                           attn_tensor x, attn_tensor y,
                                           const int64_t *positions,
                                           int64_t pos_offset,
                                           const int64_t *pos_offsets,
                                           int inverse);

/* Rotates p->q into q_out and p->k into k_out (same shapes; may be p->q and
 * p->k themselves) at exactly the positions the attention call p gives
 * them: kv_lens, packed sequences (cu_seqlens) and every offset apply.
 * With inverse, maps dL/d(rotated) to dL/d(unrotated). */
ATTN_API attn_status attn_rope_apply_qk_sized(
    const attn_rope *r, size_t rope_size, const attn_params *p,
    size_t params_size, attn_tensor q_out, attn_tensor k_out, int inverse);

/* The sinusoidal table of Vaswani et al. 2017 for n positions starting at
 * pos0: out[p * d_model + 2i] = sin(pos / base^(2i / d_model)),
 * out[p * d_model + 2i + 1] = cos(...). base 0 = 10000. Computed in double. */
ATTN_API attn_status attn_sinusoidal_table(int64_t n, int64_t d_model,
                                           int64_t pos0, double base,
                                           float *out);

/* T5's bucket for relative position rel = key position - query position
 * (the reference implementation's arithmetic, in f32 like it). Returns the
 * bucket in 0 .. buckets - 1, or -1 for invalid arguments. */
ATTN_API int64_t attn_t5_bucket(int64_t rel, int64_t buckets,
                                int64_t max_distance, int bidirectional);

/* The header-inline wrappers (attn.h, "ABI"). */
#if !defined(ATTN_BUILDING_LIBRARY)
static inline void attn_rope_init(attn_rope *r) {
  attn_rope_init_sized(r, sizeof *r);
}
static inline attn_status attn_rope_frequencies(const attn_rope *r,
                                                int64_t head_dim,
                                                float *inv_freq,
                                                float *mscale) {
  return attn_rope_frequencies_sized(r, sizeof *r, head_dim, inv_freq, mscale);
}
static inline attn_status
attn_rope_apply(const attn_rope *r, attn_tensor x, attn_tensor y,
                const int64_t *positions, int64_t pos_offset,
                const int64_t *pos_offsets, int inverse) {
  return attn_rope_apply_sized(r, sizeof *r, x, y, positions, pos_offset,
                               pos_offsets, inverse);
}
static inline attn_status attn_rope_apply_qk(const attn_rope *r,
                                             const attn_params *p,
                                             attn_tensor q_out,
                                             attn_tensor k_out, int inverse) {
  return attn_rope_apply_qk_sized(r, sizeof *r, p, sizeof *p, q_out, k_out,
                                  inverse);
}
#endif

#ifdef __cplusplus
}
#endif

#endif /* ATTN_POSITIONS_H */
