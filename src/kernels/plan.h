/* What the forward and backward frameworks (fwd.c, bwd.c) share, written
 * once: preparing a call (ABI import, validation, ISA, kernel table,
 * threads), workspace layout, the tile lists of the mask, and the setup of
 * one (sequence, head, query tile). */
#ifndef ATTN_PLAN_H
#define ATTN_PLAN_H

#include "kernels/table.h"

typedef enum attn_pass { ATTN_PASS_FWD = 0, ATTN_PASS_BWD = 1 } attn_pass;

/* A call after preparation. */
typedef struct attn_plan {
  attn_params p;     /* the caller's params over defaults (abi.c)      */
  attn_problem pr;   /* sizes; pr.p points at p                        */
  attn_kernels k;    /* the kernel table of the resolved ISA           */
  attn_context *ctx; /* the context (never NULL: the default one)      */
  int threads;       /* wanted before the work-based clamp             */
  const attn_tiles *compiled; /* p.compiled_mask's lists, or NULL      */
  attn_tiles tiles; /* the call's own lists (when compiled is NULL)   */
  size_t tiles_bytes;
  attn_t5 t5; /* the T5 buckets (when p.rel_bias is set)         */
} attn_plan;

/* Import, validate (forward or backward), resolve the ISA and fill the
 * kernel table. ctx may be NULL. */
attn_status attn_plan_prepare(attn_context *ctx, const attn_params *user,
                              size_t size, attn_pass pass, attn_plan *pl);

/* Whether bf16 Q and K take the table's bf16 kernels (fwd_bf16, and
 * bwd_bf16, which must recompute the forward's S): the table has them and,
 * on AMX, the head dim takes the tiles (a multiple of 16). Other head dims
 * would fall back to vdpbf16ps there, which on the AMX Intel we measured
 * runs at half the f32 FMA peak (104 against 207 GFLOP/s a core): the
 * widened f32 kernel is faster (h8 s2048 d72 forward: 38 against 58 ms)
 * and more exact (decisions.md, "bf16 dot products on AMX machines"). */
static inline int attn_plan_bf16(const attn_plan *pl) {
  const attn_params *p = pl->pr.p;
  if (!pl->k.fwd_bf16 || p->q.dtype != ATTN_DTYPE_BF16 ||
      p->k.dtype != ATTN_DTYPE_BF16)
    return 0;
  return pl->k.fwd_bf16->isa != ATTN_ISA_AMX_BF16 || pl->pr.d % 16 == 0;
}

/* The lists the call walks: the compiled ones or its own. */
static inline const attn_tiles *attn_plan_tiles(const attn_plan *pl) {
  return pl->compiled ? pl->compiled : &pl->tiles;
}

/* Workspace layout: 64-byte aligned pieces, overflow remembered. */
typedef struct attn_ws {
  size_t off;
  int overflow;
} attn_ws;
size_t attn_ws_add(attn_ws *w, size_t count, size_t elem);
/* a * b, remembering an overflow in w. */
static inline size_t attn_ws_mul(attn_ws *w, size_t a, size_t b) {
  size_t n;
  if (__builtin_mul_overflow(a, b, &n)) {
    w->overflow = 1;
    return 0;
  }
  return n;
}

/* Address of element (i0, i1, i2, i3) of t. */
static inline void *attn_elem(const attn_tensor *t, int64_t i0, int64_t i1,
                              int64_t i2, int64_t i3) {
  const int64_t off = i0 * t->stride[0] + i1 * t->stride[1] +
                      i2 * t->stride[2] + i3 * t->stride[3];
  return (char *)t->data + off * (int64_t)attn_dtype_size(t->dtype);
}

/* Rows ahead of the one being read or written that loops over rows ask
 * for early (attn_prefetch_elem): about a memory latency's worth. */
#define ATTN_PREFETCH_ROWS 4

/* attn_prefetch_row of the n elements at (i0, i1, i2, 0) of t, when its
 * rows are contiguous (stride[3] 1). */
static inline void attn_prefetch_elem(const attn_tensor *t, int64_t i0,
                                      int64_t i1, int64_t i2, int64_t n,
                                      int write) {
  if (t->data && t->stride[3] == 1)
    attn_prefetch_row(attn_elem(t, i0, i1, i2, 0), t->dtype, n, write);
}

/* Everything a kernel needs about query tile [i0, i0 + rows) of sequence
 * s and head h: the rows' key intervals (lo, hi: [rows]), the score
 * modifiers and the mask predicate. Returns one past the last key any row
 * sees (0 when none). */
int64_t attn_plan_tile(const attn_plan *pl, const attn_seq *s, int64_t h,
                       int64_t i0, int rows, int64_t *lo, int64_t *hi,
                       attn_score *sc, attn_mask_view *mv);

#endif
