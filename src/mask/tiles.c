/* Tile lists: the runs of non-empty key tiles of every (sequence, query
 * tile, mask head) slot (mask.h). A slot's analytic rows give one interval
 * of key tiles at most (every kind's bounds grow with the row, so the
 * union of the rows' intervals has no gap): a PARTIAL run, a FULL run and
 * a PARTIAL run. The mask tensor then refines each tile. */
#include "mask/mask.h"

#include <string.h>

#define TQ ATTN_TILE_Q
#define TK ATTN_TILE_K

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

static size_t align64(size_t x) { return (x + 63) / 64 * 64; }

attn_status attn_tiles_plan(const attn_problem *pr, attn_tiles *t,
                            size_t *bytes) {
  const attn_params *p = pr->p;
  t->batch = pr->batch;
  t->mheads = (p->mask.data && p->mask.shape[1] > 1) || attn_sparse_per_head(p)
                  ? pr->hq
                  : 1;
  t->cap = p->mask.data || attn_sparse_mask_on(p)
               ? ATTN_MAX(cdiv(pr->sk_max, TK), 1)
               : 3;
  int64_t tiles = 0;
  for (int64_t b = 0; b < pr->batch; b++) {
    attn_seq s;
    attn_problem_seq(pr, b, &s);
    tiles += cdiv(s.sq, TQ);
  }
  size_t n, runs;
  if (__builtin_mul_overflow((size_t)tiles, (size_t)t->mheads, &n) ||
      __builtin_mul_overflow(n, (size_t)t->cap, &runs) ||
      __builtin_mul_overflow(runs, sizeof(attn_tile_run), &runs))
    return ATTN_ERR_OVERFLOW;
  t->nslots = (int64_t)n;
  *bytes = align64(((size_t)pr->batch + 1) * sizeof(int64_t)) +
           align64(n * sizeof(int32_t)) + align64(runs);
  return ATTN_OK;
}

void attn_tiles_attach(attn_tiles *t, const attn_problem *pr, void *mem) {
  char *c = (char *)mem;
  t->qt_base = (int64_t *)c;
  c += align64(((size_t)t->batch + 1) * sizeof(int64_t));
  t->nruns = (int32_t *)c;
  c += align64((size_t)t->nslots * sizeof(int32_t));
  t->run = (attn_tile_run *)c;
  t->qt_base[0] = 0;
  for (int64_t b = 0; b < t->batch; b++) {
    attn_seq s;
    attn_problem_seq(pr, b, &s);
    t->qt_base[b + 1] = t->qt_base[b] + cdiv(s.sq, TQ);
  }
}

/* Appends tiles kt0..kt1-1 of kind k to the slot's runs, merging. */
static void push(attn_tile_run *run, int32_t *n, int64_t kt0, int64_t kt1,
                 attn_tile_kind k) {
  if (kt1 <= kt0 || k == ATTN_TILE_EMPTY)
    return;
  if (*n > 0 && run[*n - 1].kind == k && run[*n - 1].kt1 == kt0) {
    run[*n - 1].kt1 = kt1;
    return;
  }
  run[*n].kt0 = kt0;
  run[*n].kt1 = kt1;
  run[*n].kind = k;
  (*n)++;
}

/* The runs of one query tile from its rows' key intervals lo/hi ([rows],
 * row 0 = row i0 of sequence s; h: the query head, for the mask tensor). */
static int32_t runs_from_rows(const attn_problem *pr, const attn_seq *s,
                              int64_t h, int64_t i0, int rows,
                              const int64_t *lo, const int64_t *hi,
                              attn_tile_run *run) {
  const attn_params *p = pr->p;
  int64_t ulo = INT64_MAX, uhi = -1, flo = INT64_MIN, fhi = INT64_MAX;
  for (int r = 0; r < rows; r++) {
    if (lo[r] > hi[r]) { /* an empty row: no tile is FULL */
      flo = INT64_MAX;
      continue;
    }
    ulo = ATTN_MIN(ulo, lo[r]);
    uhi = ATTN_MAX(uhi, hi[r]);
    flo = ATTN_MAX(flo, lo[r]);
    fhi = ATTN_MIN(fhi, hi[r]);
  }
  int32_t n = 0;
  if (uhi < ulo)
    return 0;                                     /* no row sees any key */
  const int64_t t0 = ulo / TK, t1 = uhi / TK + 1; /* non-empty tiles   */
  int64_t f0 = t1, f1 = t1;                       /* FULL tiles: f0..f1-1 */
  if (flo <= fhi) {
    f0 = ATTN_MAX(cdiv(flo, TK), t0);
    f1 = ATTN_MIN((fhi + 1) / TK, t1);
    if (f1 <= f0)
      f0 = f1 = t1;
  }
  if (attn_sparse_mask_on(p)) { /* every tile on its own (sparse.c) */
    attn_mask_view mv;
    attn_pos pos;
    attn_pos_seq(p, s, &pos);
    attn_mask_tensor_view(p, s->b, h, &mv);
    mv.i0 = i0;
    mv.lo = lo;
    mv.hi = hi;
    attn_sparse_view(p, s, &pos, h, &mv);
    attn_sparse_tile st;
    attn_sparse_tile_prepare(&mv, rows, &st);
    for (int64_t kt = t0; kt < t1; kt++) {
      const int64_t j1 = ATTN_MIN((kt + 1) * TK, s->sk);
      push(run, &n, kt, kt + 1, attn_sparse_tile_kind(&st, kt * TK, j1));
    }
    return n;
  }
  if (!p->mask.data) {
    push(run, &n, t0, ATTN_MIN(f0, t1), ATTN_TILE_PARTIAL);
    push(run, &n, f0, f1, ATTN_TILE_FULL);
    push(run, &n, f1, t1, ATTN_TILE_PARTIAL);
    return n;
  }
  attn_mask_view mv;
  attn_mask_tensor_view(p, s->b, h, &mv);
  mv.i0 = i0;
  for (int64_t kt = t0; kt < t1; kt++) {
    const int64_t j1 = ATTN_MIN((kt + 1) * TK, s->sk);
    const attn_tile_kind tk =
        attn_mask_tensor_tile_kind(&mv, rows, kt * TK, j1);
    attn_tile_kind k = kt >= f0 && kt < f1 ? ATTN_TILE_FULL : ATTN_TILE_PARTIAL;
    if (tk == ATTN_TILE_EMPTY)
      k = ATTN_TILE_EMPTY;
    else if (tk == ATTN_TILE_PARTIAL)
      k = ATTN_TILE_PARTIAL;
    push(run, &n, kt, kt + 1, k);
  }
  return n;
}

int attn_tiles_compile_one(const attn_problem *pr, const attn_seq *s, int64_t h,
                           int64_t qt, const int64_t *lo, const int64_t *hi,
                           attn_tile_run *run) {
  const int64_t i0 = qt * TQ;
  const int rows = (int)ATTN_MIN((int64_t)TQ, s->sq - i0);
  return runs_from_rows(pr, s, h, i0, rows, lo, hi, run);
}

/* One slot: sequence s, query tile qt, head h (for the mask tensor). */
static void fill_slot(const attn_problem *pr, const attn_seq *s, int64_t h,
                      int64_t qt, attn_tile_run *run, int32_t *n) {
  int64_t lo[TQ], hi[TQ];
  attn_pos pos;
  attn_pos_seq(pr->p, s, &pos);
  const int64_t i0 = qt * TQ;
  const int rows = (int)ATTN_MIN((int64_t)TQ, s->sq - i0);
  attn_mask_rows(pr->p, s, &pos, i0, rows, lo, hi);
  *n = runs_from_rows(pr, s, h, i0, rows, lo, hi, run);
}

void attn_tiles_fill(const attn_tiles *t, const attn_problem *pr, int64_t first,
                     int64_t step) {
  int64_t slot = 0;
  for (int64_t b = 0; b < t->batch; b++) {
    const int64_t nqt = t->qt_base[b + 1] - t->qt_base[b];
    if (nqt == 0)
      continue;
    attn_seq s;
    attn_problem_seq(pr, b, &s);
    for (int64_t qt = 0; qt < nqt; qt++)
      for (int64_t h = 0; h < t->mheads; h++, slot++)
        if (slot % step == first)
          fill_slot(pr, &s, h, qt, t->run + slot * t->cap, &t->nruns[slot]);
  }
}

attn_tile_kind attn_tiles_kind(const attn_tile_run *run, int n, int64_t kt) {
  int a = 0, b = n; /* the first run with kt1 > kt is in [a, b] */
  while (a < b) {
    const int m = (a + b) / 2;
    if (run[m].kt1 <= kt)
      a = m + 1;
    else
      b = m;
  }
  if (a < n && run[a].kt0 <= kt)
    return (attn_tile_kind)run[a].kind;
  return ATTN_TILE_EMPTY;
}
