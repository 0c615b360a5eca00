/* The interface between the portable decode framework (decode.c) and the
 * per-ISA decode kernel (decode_body.h compiled in generic/, avx2/,
 * avx512/): one key chunk of one unit of query rows.
 *
 * A unit is up to ATTN_DEC_RB rows (query head, query row) that share one
 * kv head and one query tile of ATTN_TILE_Q rows; a chunk is the keys
 * [c * ATTN_DECODE_CHUNK, (c + 1) * ATTN_DECODE_CHUNK) of its sequence,
 * narrowed to the union of the rows' intervals. The kernel reads each key
 * once for all rows and leaves the chunk's unnormalised partial result:
 *
 *   S[r][j] = scale (q_r . k_j)     (non-finite -> NaN)
 *   S       = mods(S), -inf outside lo[r] .. hi[r]   (score_body.h)
 *   m[r]    = max_j S[r][j]
 *   P       = 2^((S - m) log2 e),   l[r] = sum_j P[r][j]
 *   o[r]    = sum_j P[r][j] v_j     (in key order, four keys per update
 *                                    of o; with many rows, 64-key sub-tiles
 *                                    in registers, then summed)
 *
 * One call serves nh kv heads whose units have the same rows (same query
 * rows, so the same intervals and keys): their keys are read key by key,
 * all heads of a key together, which is memory order for [.., seq, heads,
 * dim] storage (bshd, and the cache's pages). The framework merges a
 * unit's chunks by LSE in chunk order. */
#ifndef ATTN_DECODE_KERNELS_H
#define ATTN_DECODE_KERNELS_H

#include "core/internal.h"
#include "kernels/score.h"

#define ATTN_DEC_RB 64  /* rows per unit                           */
#define ATTN_DEC_SUB 64 /* keys per sub-tile (= ATTN_TILE_K)       */

typedef struct attn_dec_chunk attn_dec_chunk;
struct attn_dec_chunk {
  int nh;          /* kv heads (units) served together, 1 ..          */
  int rows;        /* rows per head, 1 .. ATTN_DEC_RB                 */
  int64_t d, dv;   /* head dims of K and V                            */
  int64_t dp, dvp; /* padded to the vector width                      */
  float *q;        /* [nh][rows][dp] q (unscaled), zero padded; the
                      kernel may reorder it in place (reloaded for
                      every chunk); for ATTN_DEC_BF16DOT [nh][rows]
                      [dp] bf16 q                                    */
  float scale;     /* S = scale * (q . k): the bf16 dot products'
                      qk applies it, dec_softmax_row otherwise       */
  /* ATTN_DEC_BF16DOT k (v): step (1) ((4)) with bf16 dot products
   * (decode_bf16dot.h) */
  void (*qk)(const attn_dec_chunk *c);
  void (*pv)(const attn_dec_chunk *c);
  uint32_t *qt;            /* scratch [nh][rows][dp / 2] for the AMX Q K's B
                              operands (amxbf16, bf16 q), else NULL            */
  const int64_t *qi;       /* [rows] the row's query index in its sequence    */
  const int64_t *lo;       /* [rows] first key the row may see                */
  const int64_t *hi;       /* [rows] last key the row may see (< lo: none)    */
  const attn_score *sc;    /* [nh][rows] score modifiers of the row's head    */
  int64_t ja, jb;          /* keys ja .. jb - 1 are read (ja < jb)            */
  const void *const *krow; /* [jb - ja] address of K[j][head 0][0]         */
  const void *const *vrow; /* [jb - ja] address of V[j][head 0][0]         */
  int64_t kstep, vstep;    /* bytes from one head's row to the next's      */
  attn_dtype kdt, vdt;     /* their dtypes                                 */
  int64_t ks, vs;          /* their element strides along head_dim         */
  int kmode, vmode;        /* how rows are read (ATTN_DEC_F32 ...)         */
  float *s;                /* scratch [nh][rows][ATTN_DEC_LDS]             */
  float *stage;            /* scratch [ATTN_DEC_STAGE(nh)][max(dp, dvp)]   */
  const float **rowp;      /* scratch [ATTN_DEC_SUB]                       */
  float *lut;              /* scratch [ATTN_DEC_LDS]: one row's T5 bias     */
  float *const *part;      /* [nh] the head's partial: m [pstride],
                              l [pstride], o [rows][dvp] (unnormalised)    */
  int64_t pstride;
};

/* How the loops read K and V rows: in place (unit stride, dims a multiple
 * of the vector width) as f32, bf16 or f16 widened in registers, or
 * converted to f32 rows in the stage scratch first (anything else).
 * q8_0 and q4_0 rows (always whole blocks, adjacent) are read in place by
 * the AVX2 and AVX-512 kernels: Q·K sums each block's products of f32 q
 * and the widened quants, then adds that times the block's scale; P·V
 * folds the scale into the broadcast probability, o += (p d) q. The
 * generic kernel stages them (dequantised rows, then the f32 loops).
 * ATTN_DEC_BF16DOT: bf16 k met by a bf16 q, in place, multiplied with bf16
 * dot products (the forward's rule, docs/bf16.md) by c->qk; bf16 v, when
 * the output is bf16 too, by c->pv with P rounded to bf16; on the ISAs
 * whose table has them (avx512bf16, and generic's exact emulation). */
enum {
  ATTN_DEC_F32 = 0,
  ATTN_DEC_BF16 = 1,
  ATTN_DEC_F16 = 2,
  ATTN_DEC_STAGED = 3,
  ATTN_DEC_Q8_0 = 4,
  ATTN_DEC_Q4_0 = 5,
  ATTN_DEC_BF16DOT = 6
};

/* Rows per head up to which P V streams keys in memory order with the
 * accumulators in L1; more rows use DMR x DNV register blocks per head. */
#define ATTN_DEC_STREAM_ROWS 8
/* Staging rows: four keys of every head, or one sub-tile; the row of key
 * k (of four) of head h. */
#define ATTN_DEC_STAGE(nh) ((nh)*4 > ATTN_DEC_SUB ? (nh)*4 : ATTN_DEC_SUB)
#define ATTN_DEC_STAGE_ROW(h, k) (4 * (h) + (k))

/* Row stride of the score scratch: a chunk plus one vector of padding. */
#define ATTN_DEC_LDS (ATTN_DECODE_CHUNK + 16)

typedef struct attn_decode_kernel {
  attn_isa isa;
  int vl; /* floats per vector */
  void (*chunk)(const attn_dec_chunk *c);
} attn_decode_kernel;

const attn_decode_kernel *attn_decode_kernel_generic(void);
const attn_decode_kernel *attn_decode_kernel_avx2(void);
const attn_decode_kernel *attn_decode_kernel_avx512(void);
/* Steps (1) and (4) for ATTN_DEC_BF16DOT (the tables' dec_qk_bf16 and
 * dec_pv_bf16). */
void attn_dec_qk_bf16_generic_bf16(const attn_dec_chunk *c);
void attn_dec_pv_bf16_generic_bf16(const attn_dec_chunk *c);
void attn_dec_qk_bf16_avx512bf16(const attn_dec_chunk *c);
void attn_dec_pv_bf16_avx512bf16(const attn_dec_chunk *c);
/* amxbf16: (1) with AMX tiles (avx512/decode_amxbf16.c), and the
 * vdpbf16ps steps compiled beside it. */
void attn_dec_qk_amx_amxbf16(const attn_dec_chunk *c);
void attn_dec_qk_bf16_amxbf16(const attn_dec_chunk *c);
void attn_dec_pv_bf16_amxbf16(const attn_dec_chunk *c);

#endif
