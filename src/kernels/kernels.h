/* The interface between the portable forward framework (fwd.c) and the
 * per-ISA kernels (generic/, avx2/, avx512/). */
#ifndef ATTN_KERNELS_H
#define ATTN_KERNELS_H

#include "core/internal.h"
#include "kernels/philox.h"
#include "kernels/score.h"
#include "mask/mask.h"

/* One query tile of one head against the key tiles of its runs.
 * Everything is prepared by the framework; the kernel owns the
 * O(tile x keys) loops. */
typedef struct attn_qtile {
  int rows;    /* valid query rows, 1..br                                   */
  int64_t i0;  /* index of row 0 inside its sequence                        */
  int64_t d;   /* head dim of Q and K                                       */
  int64_t dvp; /* head dim of V padded to a multiple of the vector width    */
  const float *q;  /* [br][d]  scale * queries; rows >= rows are zero        */
  const float *kp; /* [ceil(sk/nr)][d][nr] keys, transposed into panels      */
  const float *vp; /* [ceil(sk/nr)*nr][dvp] values, zero padded              */
  const attn_tile_run *runs; /* the non-empty key tiles (mask.h)            */
  int nruns;
  int64_t j_end;     /* one past the last key any row may see               */
  attn_score sc;     /* score modifiers of this (sequence, head)            */
  attn_mask_view mv; /* element predicate of PARTIAL tiles                  */
  float *s;    /* scratch [br][bc]                                          */
  float *m;    /* scratch [br]: running max                                 */
  float *l;    /* scratch [br]: running sum                                 */
  float *acc;  /* out [br][dvp]: the normalised output rows                 */
  float *accm; /* scratch [br][dvp]: the sum of the current tile group      */
  float *lse;  /* out [br]: log-sum-exp per row (-inf when no key)          */
  float sink;  /* this head's sink logit (attn_params.sinks); -inf = none   */
  attn_dropout drop; /* dropout of this (sequence, head) (philox.h)       */
  /* The bf16 kernel (fwd_bf16 of the table; docs/bf16.md) reads these
   * instead of q and kp (and of vp when vh is set); d is then even. */
  const uint16_t *qh; /* [br][d] unscaled bf16 queries, rows >= rows zero  */
  const uint16_t *kh; /* [ceil(sk/nr)][d/2][nr][2] bf16 key pairs          */
  const uint16_t *vh; /* [ceil(sk/nr)*nr/2][dvp][2] bf16 value pairs, or
                         NULL: P V in f32 from vp                          */
  float qscale;       /* scale, applied to the dot products                */
  /* One tile in several calls over consecutive ranges of its runs (fwd.c's
   * query-tile groups). resume: m, l, acc, accm, *alpha, *lm and *ntiles
   * hold the previous call's state (else the call initialises them);
   * partial: more runs follow, so the final flush and the normalisation
   * wait. alpha, lm [br] and ntiles are the kernel's running state; NULL
   * (with resume = partial = 0): the kernel keeps its own. Splitting a
   * tile's runs this way gives the bits of one call over all of them. */
  int resume, partial;
  float *alpha, *lm;
  int *ntiles;
} attn_qtile;

typedef struct attn_kernel {
  attn_isa isa;
  int vl; /* floats per vector                              */
  int mr; /* rows of the register-blocked micro-kernels     */
  int nr; /* keys per packed K panel (nv vectors)           */
  int br; /* query rows per tile (multiple of mr)           */
  int bc; /* keys per tile (multiple of nr)                 */
  void (*fwd_qtile)(const attn_qtile *t);
} attn_kernel;

const attn_kernel *attn_kernel_generic(void);
const attn_kernel *attn_kernel_avx2(void);
const attn_kernel *attn_kernel_avx512(void);
const attn_kernel *attn_kernel_generic_bf16(void);
const attn_kernel *attn_kernel_avx512bf16(void);
const attn_kernel *attn_kernel_amxbf16(void);

#endif
