/* RoPE inside the library (attn.h, "Position schemes"): a plan made once
 * from attn_rope and a head dim, then rows rotated at integer positions.
 * Used by attn_rope_apply, attn_rope_apply_qk, and the KV cache (keys are
 * rotated on the way in). */
#ifndef ATTN_POS_ROPE_H
#define ATTN_POS_ROPE_H

#include "core/internal.h"

#define ATTN_ROPE_MAX_PAIRS 128 /* head_dim <= 256 */

typedef struct attn_rope_plan {
  int64_t head_dim, dims; /* dims rotated (even, <= head_dim)     */
  attn_rope_style style;
  double mscale;                        /* cos/sin multiplier (YaRN), else 1 */
  double inv_freq[ATTN_ROPE_MAX_PAIRS]; /* [dims / 2]; NTK/YaRN/Llama3 in */
  double pos_scale;                     /* LINEAR: 1/factor, else 1           */
} attn_rope_plan;

/* Copies the caller's struct of `size` bytes (their attn.h's sizeof) over
 * defaults into *out; ATTN_ERR_NULL_POINTER for r NULL, ATTN_ERR_ABI for a
 * size no release declared. */
attn_status attn_rope_import(const attn_rope *r, size_t size, attn_rope *out);

/* Validates *r for head_dim and fills the plan; on error writes the reason
 * to err (may be NULL, or err_size 0). */
attn_status attn_rope_plan_make(const attn_rope *r, int64_t head_dim,
                                attn_rope_plan *out, char *err,
                                size_t err_size);

/* cos and sin of pos * freq: the product is formed exactly (FMA) and
 * reduced modulo 2 pi in double-double, so the angle is exact to ~1e-15
 * rad for |pos| <= 2^53 and |pos * freq| <= 2^60 (sinusoidal.c too). */
void attn_pos_sincos(int64_t pos, double freq, double *c, double *s);

/* cos and sin ([dims / 2] each, times mscale) of the angles
 * pos * pos_scale * inv_freq[i]; inverse negates the angles. Angles
 * by attn_pos_sincos with freq = pos_scale * inv_freq[i]. */
void attn_rope_angles(const attn_rope_plan *pl, int64_t pos, int inverse,
                      double *cos_out, double *sin_out);

/* Rotates one row x[head_dim] with the cos/sin of attn_rope_angles, in
 * double (one rounding to f32 per element); dims past pl->dims unchanged. */
void attn_rope_rotate_cs(const attn_rope_plan *pl, const double *c,
                         const double *s, float *x);

/* Rotates one row of head_dim floats in place at position pos (double
 * angles); inverse = opposite angle (the transpose: with mscale != 1 it
 * undoes the rotation up to mscale^2). */
void attn_rope_rotate_f32(const attn_rope_plan *pl, float *x, int64_t pos,
                          int inverse);

#endif
