/* The interface between the portable backward framework (bwd.c) and the
 * per-ISA backward kernels (bwd_body.h compiled in generic/, avx2/,
 * avx512/). */
#ifndef ATTN_BWD_KERNELS_H
#define ATTN_BWD_KERNELS_H

#include "core/internal.h"
#include "kernels/philox.h"
#include "kernels/score.h"
#include "mask/mask.h"

/* One block: a tile of up to br query rows of one head against a tile of
 * up to bc keys of its kv head. The framework prepares every operand in
 * f32; the kernel recomputes P from the LSE and accumulates the gradients
 * (FlashAttention-2's backward inner loop, Dao 2023, Algorithm 2):
 *
 *   S  = scale (Q K^T), mods,    exactly the forward's score pipeline
 *        masks
 *   P  = exp(S - lse)            0 for masked keys and for lse = -inf
 *   Z  = keep / (1 - p)          dropout's factors (1 without dropout)
 *   dV += (P Z)^T dO             (dv != NULL)
 *   dS = P * ((dO V^T) Z - D)    left in ds (rows >= rows are 0); exact
 *                                with D = rowsum(dO * O), O the dropped
 *                                forward output
 *   dT5[u] = sum of dS over the diagonal u   (dt5 != NULL)
 *   dS'= dS * (1 - tanh^2)       softcap only, when dk or dq is wanted
 *   dK += dS'^T Q                (dk != NULL; caller multiplies by scale)
 *   dQ += dS' K                  (dq != NULL; caller multiplies by scale)
 */
typedef struct attn_bblock {
  int rows;          /* valid query rows, 1..br                            */
  int nkeys;         /* valid keys, 1..bc                                  */
  int partial;       /* 1: run the element predicate (masks)               */
  int64_t i0;        /* index of query row 0 inside its sequence           */
  int64_t j0;        /* index of key 0 inside its sequence                 */
  int64_t d, dv;     /* head dims of Q/K and of V/O                        */
  int64_t dp, dvp;   /* d, dv padded to the vector width                   */
  const float *q;    /* [br][dp] queries (unscaled); every row finite      */
  const float *dout; /* [br][dvp] dO rows; every row finite                */
  const float *lse;  /* [rows] the forward's LSE; -inf = row sees no key  */
  const float *dd;   /* [rows] D = rowsum(dO * O)                          */
  const float *kt;   /* [bc/nr][d][nr]  keys, transposed into panels       */
  const float *vt;   /* [bc/nr][dv][nr] values, transposed into panels     */
  const float *krow; /* [bc][dp] keys, rows >= nkeys zero                  */
  attn_score sc;     /* score modifiers of this (sequence, head)           */
  attn_mask_view mv; /* element predicate (PARTIAL blocks)                 */
  float *s;     /* scratch [br][bc]: P                                        */
  float *ds;    /* out [br][bc]: dS (dS' after the call when dk or dq set)    */
  float *g;     /* scratch [br][bc]: 1 - tanh^2 (softcap only)                */
  float *gm;    /* scratch [br][bc]: score_mod's derivative (score_mod only)  */
  float *dk;    /* [bc][dp] accumulator, or NULL                              */
  float *dvacc; /* [bc][dvp] accumulator, or NULL                          */
  float *dq;    /* [rows][dp] accumulator rows (row stride dp), or NULL    */
  float *dt5;   /* out [rows - 1 + bc]: dS summed per diagonal (T5's
                   distances, attn_score_t5_lut's layout), or NULL      */
  attn_dropout drop; /* dropout of this (sequence, head) (philox.h)       */
  float *z; /* scratch [br][bc]: dropout's factors (drop.on only)       */
  /* The bf16 kernel (bwd_bf16 of the table; docs/bf16.md) reads q as
   * bf16 values, takes S = qscale (Q K^T) with bf16 dot products, dP too where
   * dp16 says so (V and dO bf16), and rounds P (for dV, dO bf16) and dS (for
   * dK, dQ) to bf16 where pv16, dk16, dq16 say so (the gradient is stored
   * in bf16 anyway); f32 products otherwise (the AMX kernel: P or dS split
   * into three bf16 parts on the tiles, dO bf16 for dV: do16). */
  float qscale;
  int dp16, pv16, dk16, dq16, do16;
  uint16_t *bf;  /* scratch: ATTN_BWD_BF16_SCRATCH(br, bc, dp, dvp) */
  int keys_bf16; /* 1: prep_keys has filled bf with this key tile's keys */
  /* bf16 kernel: this query tile's Q and dO in bf16, as prep_rows left
   * them (ATTN_BWD_ROWS16 elements), or NULL: the block converts them. */
  const uint16_t *rows16;
  /* The AMX kernel: the calling thread's flag, 1 once its tile registers
   * are configured; block configures them on first use and leaves them so
   * (the caller ends with tiles_done). NULL: configured and released in
   * every block (an ldtilecfg costs ~90 ns, ~300 cycles, here). */
  int *tiles_on;
} attn_bblock;

/* uint16_t elements of attn_bblock.bf: query rows rounded up to 32 and
 * row lengths up to a multiple of 32 (the AMX kernel's tile steps). */
#define ATTN_BWD_R32(n) (((n) + 31) / 32 * 32)
#define ATTN_BWD_BF16_SCRATCH(br, bc, dp, dvp)                                 \
  (2 * ATTN_BWD_R32(br) * (ATTN_BWD_R32(dp) + ATTN_BWD_R32(dvp)) +             \
   (bc) * (2 * ATTN_BWD_R32(dp) + ATTN_BWD_R32(dvp)) +                         \
   3 * ATTN_BWD_R32(br) * (bc) + 256)

/* uint16_t elements of one query tile's bf16 Q and dO (prep_rows): rows
 * and pairs of rows of each, the first four pieces of the scratch above. */
#define ATTN_BWD_ROWS16(br, dp, dvp)                                           \
  (2 * ATTN_BWD_R32(br) * (ATTN_BWD_R32(dp) + ATTN_BWD_R32(dvp)))

typedef struct attn_bwd_kernel {
  attn_isa isa;
  int vl; /* floats per vector                  */
  int mr; /* rows of the micro-kernels          */
  int nr; /* keys per transposed panel          */
  int br; /* query rows per block (mult. of mr) */
  int bc; /* keys per block (multiple of nr)    */
  void (*block)(const attn_bblock *t);
  /* out[i] = sum_c a[i lda + c] b[i ldb + c] in order for i < rows, with
   * the arithmetic of the micro-kernels' dot products (fused on
   * AVX2/AVX-512, two roundings in generic): D is computed with it, so
   * that dP - D is exactly 0 wherever O equals the one value a row sees
   * (dS = 0 then, as in exact arithmetic). */
  void (*row_dot)(const float *a, int64_t lda, const float *b, int64_t ldb,
                  int64_t n, int64_t rows, float *out);
  /* bf16 kernel: converts a key tile's kt, vt, krow into t->bf once for
   * all its blocks (then keys_bf16 = 1); NULL in the f32 kernels. */
  void (*prep_keys)(const attn_bblock *t);
  /* Releases the tile registers block left configured (tiles_on); NULL
   * where the kernel has none. */
  void (*tiles_done)(void);
  /* bf16 kernel: converts a query tile's Q and dO (t->q, t->dout, t->rows
   * and the flags) into out (ATTN_BWD_ROWS16 elements) once for all the
   * blocks of the tile that pass it as rows16; NULL in the f32 kernels. */
  void (*prep_rows)(const attn_bblock *t, uint16_t *out);
} attn_bwd_kernel;

const attn_bwd_kernel *attn_bwd_kernel_generic(void);
const attn_bwd_kernel *attn_bwd_kernel_avx2(void);
const attn_bwd_kernel *attn_bwd_kernel_avx512(void);
const attn_bwd_kernel *attn_bwd_kernel_generic_bf16(void);
const attn_bwd_kernel *attn_bwd_kernel_avx512bf16(void);
const attn_bwd_kernel *attn_bwd_kernel_amxbf16(void);

#endif
