/* Sparse patterns (attn/sparse.h): Longformer's global tokens, Child et
 * al.'s strided and fixed patterns, block-sparse layouts and the user's
 * mask_mod, as parts of the mask machinery of mask.h:
 *   - an analytic kind (child: j <= p, causal by construction) that
 *     narrows the rows' intervals like causal and window do; with global
 *     tokens the window kind steps out of the intervals (window.c) and is
 *     tested here, OR-ed with the global set;
 *   - the rest of the element predicate (attn_sparse_apply, PARTIAL tiles
 *     only);
 *   - the kind of a (query tile, key tile) pair (attn_sparse_tile_kind),
 *     exact per row for the interval, window/global and Child parts.
 * Positions: qpos = q0 + i, kpos = k0 + j (pos.h). */
#include "mask/mask.h"

#include <math.h>

#define BIG ((int64_t)1 << 60)

static int64_t fdiv(int64_t a, int64_t l) { /* floor(a / l), l > 0 */
  const int64_t q = a / l;
  return a % l < 0 ? q - 1 : q;
}

static int64_t fmodp(int64_t a, int64_t l) { /* a mod l in [0, l) */
  const int64_t r = a % l;
  return r < 0 ? r + l : r;
}

int attn_sparse_mask_on(const attn_params *p) {
  return p->global_count > 0 || p->sparse_kind != ATTN_SPARSE_NONE ||
         p->block_mask.data != NULL || p->mask_mod != NULL;
}

int attn_sparse_on(const attn_params *p) {
  return attn_sparse_mask_on(p) || p->score_mod != NULL;
}

int attn_sparse_per_head(const attn_params *p) {
  return (p->block_mask.data && p->block_mask.shape[1] > 1) ||
         (p->mask_mod && p->mod_by_head);
}

/* ---- Child et al.: j <= p as an analytic kind ------------------------- */
static int child_active(const attn_params *p) {
  return p->sparse_kind != ATTN_SPARSE_NONE;
}

static void child_narrow(const attn_params *p, const attn_mask_row *row,
                         int64_t *lo, int64_t *hi) {
  (void)p;
  (void)lo;
  const int64_t last = row->qpos - row->k0;
  if (last < *hi)
    *hi = last;
}

const attn_mask_kind attn_mask_kind_child = {"child", child_active,
                                             child_narrow};

/* Kind of the Child pattern over key positions [pa, pb] (pb <= q). */
static attn_tile_kind child_kind(const attn_params *p, int64_t q, int64_t pa,
                                 int64_t pb) {
  const int64_t l = p->sparse_l, c = p->sparse_c;
  if (p->sparse_kind == ATTN_SPARSE_STRIDED) {
    if (l == 1 || pa >= q - l)
      return ATTN_TILE_FULL;
    if (pb >= q - l)
      return ATTN_TILE_PARTIAL;
    const int64_t first = pa + fmodp(q - pa, l); /* (q - first) % l == 0 */
    if (first > pb)
      return ATTN_TILE_EMPTY;
    return pa == pb ? ATTN_TILE_FULL : ATTN_TILE_PARTIAL;
  }
  const int64_t cs = l * fdiv(q, l); /* the query's block starts here */
  if (c == l || pa >= cs)
    return ATTN_TILE_FULL;
  const int64_t e = ATTN_MIN(pb, cs - 1); /* [pa, e]: earlier blocks */
  const int all =
      fdiv(pa, l) == fdiv(e, l) && fmodp(pa, l) >= l - c; /* one tail */
  if (pb >= cs)
    return all ? ATTN_TILE_FULL : ATTN_TILE_PARTIAL;
  if (all)
    return ATTN_TILE_FULL;
  const int64_t m = fmodp(pa, l);
  const int64_t f = m >= l - c ? pa : pa - m + l - c; /* first in a tail */
  return f <= e ? ATTN_TILE_PARTIAL : ATTN_TILE_EMPTY;
}

/* ---- global tokens ---------------------------------------------------- */
/* First index of global_idx with value >= x. */
static int64_t g_lower(const attn_params *p, int64_t x) {
  int64_t a = 0, b = p->global_count;
  while (a < b) {
    const int64_t m = a + (b - a) / 2;
    if ((int64_t)p->global_idx[m] < x)
      a = m + 1;
    else
      b = m;
  }
  return a;
}

/* Global positions in [x, y]. */
static int64_t g_count(const attn_params *p, int64_t x, int64_t y) {
  return y < x ? 0 : g_lower(p, y + 1) - g_lower(p, x);
}

static int window_on(const attn_params *p) {
  return p->window_left >= 0 || p->window_right >= 0;
}

/* The window's key interval of the row at position q. */
static void row_window(const attn_mask_view *mv, int64_t q, int64_t *wl,
                       int64_t *wh) {
  *wl = -BIG;
  *wh = BIG;
  if (!window_on(mv->sp))
    return;
  attn_mask_row row;
  row.qpos = q;
  row.k0 = mv->k0;
  row.sq = mv->sq;
  row.sk = mv->sk;
  attn_mask_kind_window.narrow(mv->sp, &row, wl, wh);
}

/* ---- views and the element predicate ---------------------------------- */
void attn_sparse_view(const attn_params *p, const attn_seq *s,
                      const attn_pos *pos, int64_t h, attn_mask_view *mv) {
  mv->sp = attn_sparse_mask_on(p) ? p : NULL;
  mv->b = s->b;
  mv->h = h;
  mv->q0 = pos->q0;
  mv->k0 = pos->k0;
  mv->sq = s->sq;
  mv->sk = s->sk;
  mv->bm = NULL;
  mv->bsi = mv->bsj = 0;
  if (!p->block_mask.data)
    return;
  const attn_tensor *m = &p->block_mask;
  const int64_t off = (m->shape[0] == 1 ? 0 : s->b * m->stride[0]) +
                      (m->shape[1] == 1 ? 0 : h * m->stride[1]);
  mv->bm = (const uint8_t *)m->data + off;
  mv->bsi = m->shape[2] == 1 ? 0 : m->stride[2];
  mv->bsj = m->shape[3] == 1 ? 0 : m->stride[3];
}

/* x[c] = -inf for c in [c0, c1]. */
static void kill(float *x, int64_t c0, int64_t c1) {
  for (int64_t c = c0; c <= c1; c++)
    x[c] = -INFINITY;
}

/* Window or global on columns [a, b] of a row that is not a global query:
 * outside the window only the global keys stay. */
static void apply_global(const attn_mask_view *mv, int64_t q, int64_t j0,
                         int64_t a, int64_t b, float *x) {
  const attn_params *p = mv->sp;
  int64_t wl, wh;
  row_window(mv, q, &wl, &wh);
  const int64_t seg[2][2] = {{a, ATTN_MIN(b, wl - 1 - j0)},
                             {ATTN_MAX(a, wh + 1 - j0), b}};
  for (int s = 0; s < 2; s++) {
    int64_t c = seg[s][0];
    const int64_t end = seg[s][1];
    if (c > end)
      continue;
    int64_t g = g_lower(p, j0 + c + mv->k0);
    while (c <= end) {
      const int64_t next = g < p->global_count
                               ? (int64_t)p->global_idx[g] - mv->k0 - j0
                               : end + 1; /* column of the next global key */
      kill(x, c, ATTN_MIN(next, end + 1) - 1);
      c = next + 1;
      g++;
    }
  }
}

/* Child et al. on columns [a, b] (all at key positions <= q). */
static void apply_child(const attn_mask_view *mv, int64_t q, int64_t j0,
                        int64_t a, int64_t b, float *x) {
  const attn_params *p = mv->sp;
  const int64_t l = p->sparse_l, base = j0 + mv->k0; /* kpos of column 0 */
  if (p->sparse_kind == ATTN_SPARSE_STRIDED) {
    const int64_t end = ATTN_MIN(b, q - l - 1 - base); /* before p - L */
    if (l == 1 || a > end)
      return;
    int64_t keep = a + fmodp(q - (base + a), l); /* (q - kpos) % l == 0 */
    for (int64_t c = a; c <= end; c++) {
      if (c == keep)
        keep += l;
      else
        x[c] = -INFINITY;
    }
    return;
  }
  const int64_t end = ATTN_MIN(b, l * fdiv(q, l) - 1 - base); /* earlier */
  const int64_t lc = l - p->sparse_c;
  if (lc == 0 || a > end)
    return;
  int64_t m = fmodp(base + a, l);
  for (int64_t c = a; c <= end; c++) {
    if (m < lc)
      x[c] = -INFINITY;
    if (++m == l)
      m = 0;
  }
}

/* block_mask on columns [a, b] of sequence row i. */
static void apply_block(const attn_mask_view *mv, int64_t i, int64_t j0,
                        int64_t a, int64_t b, float *x) {
  const attn_params *p = mv->sp;
  const uint8_t *row = mv->bm + (i / p->block_q) * mv->bsi;
  for (int64_t c = a; c <= b;) {
    const int64_t blk = (j0 + c) / p->block_k;
    const int64_t last = ATTN_MIN(b, (blk + 1) * p->block_k - 1 - j0);
    if (!row[blk * mv->bsj])
      kill(x, c, last);
    c = last + 1;
  }
}

void attn_sparse_apply(const attn_mask_view *mv, int r, int64_t j0, int64_t a,
                       int64_t b, float *x) {
  const attn_params *p = mv->sp;
  const int64_t i = mv->i0 + r, q = mv->q0 + i;
  if (a > b)
    return;
  if (p->global_count > 0 && window_on(p) && g_count(p, q, q) == 0)
    apply_global(mv, q, j0, a, b, x);
  if (p->sparse_kind != ATTN_SPARSE_NONE)
    apply_child(mv, q, j0, a, b, x);
  if (mv->bm)
    apply_block(mv, i, j0, a, b, x);
  if (p->mask_mod)
    for (int64_t c = a; c <= b; c++)
      if (x[c] != -INFINITY &&
          !p->mask_mod(mv->b, mv->h, i, j0 + c, p->mod_user))
        x[c] = -INFINITY;
}

/* ---- tile kinds ------------------------------------------------------- */
static attn_tile_kind kind_and(attn_tile_kind x, attn_tile_kind y) {
  if (x == ATTN_TILE_EMPTY || y == ATTN_TILE_EMPTY)
    return ATTN_TILE_EMPTY;
  return x == ATTN_TILE_FULL && y == ATTN_TILE_FULL ? ATTN_TILE_FULL
                                                    : ATTN_TILE_PARTIAL;
}

static attn_tile_kind count_kind(int64_t ones, int64_t total) {
  return ones == 0       ? ATTN_TILE_EMPTY
         : ones == total ? ATTN_TILE_FULL
                         : ATTN_TILE_PARTIAL;
}

void attn_sparse_tile_prepare(const attn_mask_view *mv, int rows,
                              attn_sparse_tile *st) {
  const attn_params *p = mv->sp;
  st->mv = mv;
  st->rows = rows;
  st->anyg = 0;
  st->wu_lo = BIG;
  st->wu_hi = -BIG;
  if (!(p->global_count > 0 && window_on(p)))
    return;
  for (int r = 0; r < rows; r++) {
    const int64_t q = mv->q0 + mv->i0 + r;
    st->gq[r] = g_count(p, q, q) > 0;
    st->anyg |= st->gq[r];
    row_window(mv, q, &st->wlo[r], &st->whi[r]);
    st->wu_lo = ATTN_MIN(st->wu_lo, st->wlo[r]);
    st->wu_hi = ATTN_MAX(st->wu_hi, st->whi[r]);
  }
}

/* Window or global over keys [a, b] of row r. */
static attn_tile_kind wg_kind(const attn_sparse_tile *st, int r, int64_t a,
                              int64_t b) {
  const attn_params *p = st->mv->sp;
  const int64_t k0 = st->mv->k0;
  if (st->gq[r])
    return ATTN_TILE_FULL;
  const int64_t wa = ATTN_MAX(a, st->wlo[r]), wb = ATTN_MIN(b, st->whi[r]);
  int64_t n = g_count(p, a + k0, b + k0);
  if (wa <= wb)
    n += (wb - wa + 1) - g_count(p, wa + k0, wb + k0);
  return count_kind(n, b - a + 1);
}

/* block_mask over rows i0..i0+rows-1 and keys [ja, jb]. */
static attn_tile_kind block_kind(const attn_mask_view *mv, int rows, int64_t ja,
                                 int64_t jb) {
  const attn_params *p = mv->sp;
  const int64_t r0 = mv->i0 / p->block_q;
  const int64_t r1 = (mv->i0 + rows - 1) / p->block_q;
  const int64_t c0 = ja / p->block_k, c1 = jb / p->block_k;
  int64_t ones = 0, total = 0;
  for (int64_t br = r0; br <= r1; br++) {
    const uint8_t *row = mv->bm + br * mv->bsi;
    for (int64_t bc = c0; bc <= c1; bc++)
      ones += row[bc * mv->bsj] != 0;
    total += c1 - c0 + 1;
    if (ones > 0 && ones < total)
      return ATTN_TILE_PARTIAL;
  }
  return count_kind(ones, total);
}

/* mask_mod over the tile: the caller's classifier, or probing. */
static attn_tile_kind mod_kind(const attn_mask_view *mv, int rows, int64_t ja,
                               int64_t jb) {
  const attn_params *p = mv->sp;
  const int64_t h = p->mod_by_head ? mv->h : 0, i0 = mv->i0;
  if (p->mask_tile) {
    const int v =
        p->mask_tile(mv->b, h, i0, i0 + rows, ja, jb + 1, p->mod_user);
    return v == ATTN_MOD_TILE_EMPTY  ? ATTN_TILE_EMPTY
           : v == ATTN_MOD_TILE_FULL ? ATTN_TILE_FULL
                                     : ATTN_TILE_PARTIAL;
  }
  int64_t ones = 0, total = 0;
  for (int r = 0; r < rows; r++) {
    for (int64_t j = ja; j <= jb; j++)
      ones += p->mask_mod(mv->b, h, i0 + r, j, p->mod_user) != 0;
    total += jb - ja + 1;
    if (ones > 0 && ones < total)
      return ATTN_TILE_PARTIAL;
  }
  return count_kind(ones, total);
}

attn_tile_kind attn_sparse_tile_kind(const attn_sparse_tile *st, int64_t j0,
                                     int64_t j1) {
  const attn_mask_view *mv = st->mv;
  const attn_params *p = mv->sp;
  const int64_t ja = j0, jb = j1 - 1, k0 = mv->k0;
  const int rows = st->rows;
  attn_tile_kind kb = ATTN_TILE_FULL;
  if (mv->bm && (kb = block_kind(mv, rows, ja, jb)) == ATTN_TILE_EMPTY)
    return ATTN_TILE_EMPTY;
  const int gon = p->global_count > 0 && window_on(p);
  if (gon && !st->anyg && (jb < st->wu_lo || ja > st->wu_hi) &&
      g_count(p, ja + k0, jb + k0) == 0)
    return ATTN_TILE_EMPTY; /* outside every window, no global key */
  const int child = p->sparse_kind != ATTN_SPARSE_NONE;
  int seen_e = 0, seen_f = 0, seen_p = 0;
  for (int r = 0; r < rows && !seen_p && !(seen_e && seen_f); r++) {
    const int64_t a = ATTN_MAX(mv->lo[r], ja), b = ATTN_MIN(mv->hi[r], jb);
    attn_tile_kind k = ATTN_TILE_EMPTY;
    if (a <= b) {
      k = a == ja && b == jb ? ATTN_TILE_FULL : ATTN_TILE_PARTIAL;
      if (gon)
        k = kind_and(k, wg_kind(st, r, a, b));
      if (child && k != ATTN_TILE_EMPTY) {
        const int64_t q = mv->q0 + mv->i0 + r;
        k = kind_and(k, child_kind(p, q, a + k0, b + k0));
      }
    }
    seen_e |= k == ATTN_TILE_EMPTY;
    seen_f |= k == ATTN_TILE_FULL;
    seen_p |= k == ATTN_TILE_PARTIAL;
  }
  attn_tile_kind kind = seen_p || (seen_e && seen_f) ? ATTN_TILE_PARTIAL
                        : seen_f                     ? ATTN_TILE_FULL
                                                     : ATTN_TILE_EMPTY;
  kind = kind_and(kind, kb);
  if (kind != ATTN_TILE_EMPTY && mv->tensor)
    kind = kind_and(kind, attn_mask_tensor_tile_kind(mv, rows, ja, j1));
  if (kind != ATTN_TILE_EMPTY && p->mask_mod)
    kind = kind_and(kind, mod_kind(mv, rows, ja, jb));
  return kind;
}

/* ---- validation ------------------------------------------------------- */
#define FAIL(st, ...) return attn_fail(p, (st), __VA_ARGS__)

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

static int has_offsets(const attn_params *p) {
  return p->q_pos_offset != 0 || p->k_pos_offset != 0 || p->q_pos_offsets ||
         p->k_pos_offsets;
}

static attn_status check_block_mask(const attn_params *p,
                                    const attn_problem *pr) {
  const attn_tensor *m = &p->block_mask;
  if (m->dtype != ATTN_DTYPE_BOOL)
    FAIL(ATTN_ERR_INVALID_DTYPE, "block_mask must be bool (dtype %d given)",
         (int)m->dtype);
  if (p->block_q < 1 || p->block_k < 1)
    FAIL(ATTN_ERR_INVALID_ARGUMENT,
         "block_q (%lld) and block_k (%lld) must be >= 1 with block_mask",
         (long long)p->block_q, (long long)p->block_k);
  const int64_t want[4] = {pr->batch, pr->hq, cdiv(pr->sq_max, p->block_q),
                           cdiv(pr->sk_max, p->block_k)};
  static const char *const ax[4] = {"batch", "heads_q", "ceil(seq_q / block_q)",
                                    "ceil(seq_k / block_k)"};
  for (int i = 0; i < 4; i++) {
    const int ok = m->shape[i] == want[i] || (i < 2 && m->shape[i] == 1);
    if (!ok)
      FAIL(ATTN_ERR_INVALID_SHAPE,
           "block_mask.shape[%d] = %lld, but %s = %lld%s", i,
           (long long)m->shape[i], ax[i], (long long)want[i],
           i < 2 ? " (or 1 to broadcast)" : "");
    if (m->stride[i] < 0)
      FAIL(ATTN_ERR_INVALID_STRIDE, "block_mask.stride[%d] = %lld is negative",
           i, (long long)m->stride[i]);
  }
  uint64_t last = 0;
  for (int i = 0; i < 4; i++) {
    uint64_t t;
    if (m->shape[i] > 1 &&
        (__builtin_mul_overflow((uint64_t)(m->shape[i] - 1),
                                (uint64_t)m->stride[i], &t) ||
         __builtin_add_overflow(last, t, &last)))
      FAIL(ATTN_ERR_OVERFLOW, "block_mask's extent overflows 64 bits");
  }
  if (last >= UINTPTR_MAX - (uintptr_t)m->data)
    FAIL(ATTN_ERR_OVERFLOW, "block_mask's extent overflows the address space");
  return ATTN_OK;
}

attn_status attn_validate_sparse(const attn_params *p, const attn_problem *pr) {
  if (p->global_count < 0)
    FAIL(ATTN_ERR_INVALID_ARGUMENT, "global_count (%lld) must be >= 0",
         (long long)p->global_count);
  if (p->global_count > 0 && !p->global_idx)
    FAIL(ATTN_ERR_NULL_POINTER, "global_idx is NULL with global_count %lld",
         (long long)p->global_count);
  for (int64_t n = 0; n < p->global_count; n++) {
    const int64_t g = p->global_idx[n];
    if (g < 0)
      FAIL(ATTN_ERR_INVALID_ARGUMENT, "global_idx[%lld] = %lld is negative",
           (long long)n, (long long)g);
    if (n > 0 && g <= p->global_idx[n - 1])
      FAIL(ATTN_ERR_INVALID_ARGUMENT,
           "global_idx must be strictly increasing: global_idx[%lld] = %lld "
           "follows %lld",
           (long long)n, (long long)g, (long long)p->global_idx[n - 1]);
    if (!has_offsets(p) && g >= pr->sk_max)
      FAIL(ATTN_ERR_INVALID_ARGUMENT,
           "global_idx[%lld] = %lld is out of range: seq_k is %lld",
           (long long)n, (long long)g, (long long)pr->sk_max);
  }
  switch (p->sparse_kind) {
  case ATTN_SPARSE_NONE:
    break;
  case ATTN_SPARSE_STRIDED:
    if (p->sparse_l < 1 || p->sparse_l > ((int64_t)1 << 48))
      FAIL(ATTN_ERR_INVALID_ARGUMENT,
           "strided pattern: sparse_l (%lld) must be in 1..2^48",
           (long long)p->sparse_l);
    break;
  case ATTN_SPARSE_FIXED:
    if (p->sparse_l < 1 || p->sparse_l > ((int64_t)1 << 48))
      FAIL(ATTN_ERR_INVALID_ARGUMENT,
           "fixed pattern: sparse_l (%lld) must be in 1..2^48",
           (long long)p->sparse_l);
    if (p->sparse_c < 1 || p->sparse_c > p->sparse_l)
      FAIL(ATTN_ERR_INVALID_ARGUMENT,
           "fixed pattern: sparse_c (%lld) must be in 1..sparse_l (%lld)",
           (long long)p->sparse_c, (long long)p->sparse_l);
    break;
  default:
    FAIL(ATTN_ERR_INVALID_ARGUMENT,
         "sparse_kind (%d) must be ATTN_SPARSE_NONE, _STRIDED or _FIXED",
         p->sparse_kind);
  }
  if (p->block_mask.data) {
    const attn_status st = check_block_mask(p, pr);
    if (st != ATTN_OK)
      return st;
  }
  if (p->mask_tile && !p->mask_mod)
    FAIL(ATTN_ERR_INVALID_ARGUMENT, "mask_tile is set without mask_mod");
  if (p->score_mod_grad && !p->score_mod)
    FAIL(ATTN_ERR_INVALID_ARGUMENT, "score_mod_grad is set without score_mod");
  return ATTN_OK;
}
