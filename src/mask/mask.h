/* Masks compiled to tile lists (DESIGN.md section 3; attn.h, "Compiled
 * masks").
 *
 * Two questions define a mask kind: for one query row, which keys may it
 * see (an analytic kind narrows the row's interval of key indices; see
 * attn_mask_kind), and for one element, is it allowed (the predicate of a
 * PARTIAL tile: the row's interval, then the boolean mask tensor). From
 * those, every (sequence, query tile of ATTN_TILE_Q rows, mask head) gets
 * its runs of key tiles (ATTN_TILE_K keys): FULL (no per-element test) or
 * PARTIAL; tiles in no run are EMPTY and cost nothing. The forward and the
 * backward walk only the runs. Nothing here is O(seq_q x seq_k) in memory.
 *
 * Adding an analytic kind: one file defining an attn_mask_kind, one line
 * in the registry of rows.c, one predicate in the test oracle. Kernel
 * bodies never learn mask kinds: they call attn_mask_apply on PARTIAL
 * tiles.
 */
#ifndef ATTN_MASK_H
#define ATTN_MASK_H

#include "core/internal.h"
#include "pos/pos.h"

typedef enum attn_tile_kind {
  ATTN_TILE_EMPTY = 0,
  ATTN_TILE_FULL = 1,
  ATTN_TILE_PARTIAL = 2
} attn_tile_kind;

/* One query row as the analytic kinds see it. */
typedef struct attn_mask_row {
  int64_t qpos;   /* the row's position                       */
  int64_t k0;     /* position of key 0                        */
  int64_t sq, sk; /* the sequence's query and (real) key count */
} attn_mask_row;

typedef struct attn_mask_kind {
  const char *name;
  int (*active)(const attn_params *p);
  /* Narrows [*lo, *hi] (inclusive key indices) to the keys the row may
   * see; an empty result has *hi < *lo. */
  void (*narrow)(const attn_params *p, const attn_mask_row *row, int64_t *lo,
                 int64_t *hi);
} attn_mask_kind;

extern const attn_mask_kind attn_mask_kind_causal; /* causal.c */
extern const attn_mask_kind attn_mask_kind_window; /* window.c */
extern const attn_mask_kind attn_mask_kind_prefix; /* prefix.c */
extern const attn_mask_kind attn_mask_kind_child;  /* sparse.c */

/* Allowed key interval lo[r]..hi[r] of rows i0..i0+rows-1 of sequence s,
 * under every active analytic kind (rows.c). */
void attn_mask_rows(const attn_params *p, const attn_seq *s,
                    const attn_pos *pos, int64_t i0, int rows, int64_t *lo,
                    int64_t *hi);

/* The element predicate of one (sequence, head, query tile). */
typedef struct attn_mask_view {
  int64_t i0;             /* row 0 of the tile inside its sequence     */
  const int64_t *lo, *hi; /* [rows] the analytic intervals            */
  const uint8_t *tensor;  /* (row 0 of the sequence, key 0) of this
                             (batch, head) slice of the mask, or NULL */
  int64_t tsi, tsj;       /* its row and key strides (0 broadcasts)   */
  /* The sparse patterns (sparse.c): sp = NULL when none is on. */
  const attn_params *sp;
  int64_t b, h;      /* the sequence and the query head          */
  int64_t q0, k0;    /* positions of row 0 and key 0             */
  int64_t sq, sk;    /* the sequence's rows and (real) keys      */
  const uint8_t *bm; /* (0, 0) of this slice of block_mask, or NULL */
  int64_t bsi, bsj;  /* its strides (0 broadcasts)               */
} attn_mask_view;

/* Sets s[r - r0][c] = -inf for every disallowed element of rows r0..r1-1
 * of the tile and keys j0 + c, c < ncol (row stride lds). */
void attn_mask_apply(const attn_mask_view *mv, int r0, int r1, int64_t j0,
                     int ncol, float *s, int64_t lds);

/* The (batch, head) slice of the mask tensor (tensor.c). */
void attn_mask_tensor_view(const attn_params *p, int64_t b, int64_t h,
                           attn_mask_view *mv);
/* Kind of the mask tensor over rows i0..i0+rows-1 and keys [j0, j1). */
attn_tile_kind attn_mask_tensor_tile_kind(const attn_mask_view *mv, int rows,
                                          int64_t j0, int64_t j1);

/* ---- sparse patterns (sparse.c; attn/sparse.h) ----------------------- */
/* 1 when a pattern that masks is on (global tokens, Child, block_mask,
 * mask_mod); attn_sparse_on also counts score_mod. */
int attn_sparse_mask_on(const attn_params *p);
int attn_sparse_on(const attn_params *p);
/* 1 when the tile lists need one slot per query head. */
int attn_sparse_per_head(const attn_params *p);
/* Fills mv's sparse fields for sequence s (at positions pos), head h. */
void attn_sparse_view(const attn_params *p, const attn_seq *s,
                      const attn_pos *pos, int64_t h, attn_mask_view *mv);
/* Sets x[c] = -inf for the keys j0 + c, c in [a, b], of tile row r that
 * the sparse patterns do not allow (the element predicate's last part). */
void attn_sparse_apply(const attn_mask_view *mv, int r, int64_t j0, int64_t a,
                       int64_t b, float *x);
/* One query tile prepared for classifying its key tiles. */
typedef struct attn_sparse_tile {
  const attn_mask_view *mv;
  int rows;
  int anyg;             /* some row is a global query */
  int64_t wu_lo, wu_hi; /* union of the rows' windows  */
  int64_t wlo[ATTN_TILE_Q], whi[ATTN_TILE_Q];
  uint8_t gq[ATTN_TILE_Q]; /* row r is a global query     */
} attn_sparse_tile;
void attn_sparse_tile_prepare(const attn_mask_view *mv, int rows,
                              attn_sparse_tile *st);
/* Kind of keys [j0, j1) for the prepared tile under every mask (the
 * rows' intervals mv->lo/hi, window/global, Child, block_mask, the mask
 * tensor, mask_mod). */
attn_tile_kind attn_sparse_tile_kind(const attn_sparse_tile *st, int64_t j0,
                                     int64_t j1);
/* The checks of the 0.5 fields (called by attn_validate_opts). */
attn_status attn_validate_sparse(const attn_params *p, const attn_problem *pr);

/* ---- tile lists ------------------------------------------------------ */
typedef struct attn_tile_run {
  int64_t kt0, kt1; /* key tiles kt0..kt1-1                   */
  int64_t kind;     /* ATTN_TILE_FULL or ATTN_TILE_PARTIAL   */
} attn_tile_run;

/* The runs of every (sequence, query tile, mask head) slot, each slot
 * with room for cap runs. */
typedef struct attn_tiles {
  int64_t batch;      /* sequences                                  */
  int64_t mheads;     /* 1, or heads_q when the mask tensor varies   */
  int64_t cap;        /* runs per slot                               */
  int64_t nslots;     /* sum over sequences of query tiles x mheads  */
  int64_t *qt_base;   /* [batch + 1] first query tile of sequence b  */
  int32_t *nruns;     /* [nslots]                                    */
  attn_tile_run *run; /* [nslots][cap]                               */
} attn_tiles;

/* Sizes the lists of pr; *bytes is the memory attn_tiles_attach needs. */
attn_status attn_tiles_plan(const attn_problem *pr, attn_tiles *t,
                            size_t *bytes);
/* Points t's arrays into mem (64-byte aligned, *bytes of plan) and fills
 * qt_base. */
void attn_tiles_attach(attn_tiles *t, const attn_problem *pr, void *mem);
/* Compiles the slots slot % step == first (a thread's share). */
void attn_tiles_fill(const attn_tiles *t, const attn_problem *pr, int64_t first,
                     int64_t step);
/* Compiles the runs of one query tile (qt of sequence s, query head h)
 * from its rows' key intervals lo/hi (attn_mask_rows) into run (room for
 * the plan's cap runs); returns how many. The forward compiles each query
 * tile this way right before using it, from the intervals it computes for
 * the tile anyway, so its threads never wait for each other. */
int attn_tiles_compile_one(const attn_problem *pr, const attn_seq *s, int64_t h,
                           int64_t qt, const int64_t *lo, const int64_t *hi,
                           attn_tile_run *run);
/* The runs of query tile qt of sequence b for query head h. */
static inline const attn_tile_run *
attn_tiles_get(const attn_tiles *t, int64_t b, int64_t h, int64_t qt, int *n) {
  const int64_t slot =
      (t->qt_base[b] + qt) * t->mheads + (t->mheads == 1 ? 0 : h);
  *n = t->nruns[slot];
  return t->run + slot * t->cap;
}
/* Kind of key tile kt in the runs (binary search). */
attn_tile_kind attn_tiles_kind(const attn_tile_run *run, int n, int64_t kt);

/* ---- compiled masks (compiled.c) ------------------------------------- */
/* The tile lists of a call: those of p->compiled_mask when it matches pr
 * (else ATTN_ERR_INVALID_ARGUMENT with the reason), or NULL when the call
 * must compile its own. */
attn_status attn_mask_lookup(const attn_problem *pr, const attn_tiles **out);

#endif
