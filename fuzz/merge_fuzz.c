/*
 * merge_fuzz.c - libFuzzer target for attn_merge and attn_merge_backward
 * (attn/merge.h): shapes, layouts, dtypes, sinks and the optional arrays
 * carved out of the input; values with non-finite entries, huge and
 * denormal magnitudes when the input asks; and, in its aliasing mode, one
 * output placed over any other array of the call.
 *
 * Checks:
 * - no crash or sanitizer report;
 * - a call the harness knows to be invalid (n_parts < 1, a NaN or +inf
 *   sink, dsinks without sinks, an output whose strides make elements share
 *   memory, an output overlapping an input or another output) gets a status
 *   other than ATTN_OK and a reason, and writes nothing; a valid call gets
 *   ATTN_OK;
 * - the forward against the merge in double of the stored partials, with
 *   the bound tests/test_merge.c derives ((4n + 8) u max_c |O_c[x]| plus
 *   the output's rounding), element by element: an element a non-finite
 *   input reaches is non-finite, every other one within the bound; a row
 *   with a NaN or +inf part LSE is NaN, a row nothing saw is 0 with LSE
 *   -inf;
 * - the backward against its formulas in double from the stored o and lse
 *   (w_c = exp(LSE_c - LSE), dO_c = w_c dO, dLSE_c = w_c (rowsum(dO (O_c -
 *   O)) + dLSE), dsinks), with bounds from the f32 operations it does;
 * - the same bits on 1 and 3 threads, forward and backward.
 *
 * Input: a header of 16 bytes (flags, sizes, the values' seed, the
 * aliasing choice), then one layout byte per tensor; the values come from
 * a stream seeded by the header, so short inputs reach large shapes.
 */
#include "attn.h"
#include "carve.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define U32 (1.0 / 16777216.0) /* 2^-24 */
#define MAXP 5

static void fail(const char *what, long long a, long long b, double got,
                 double want) {
  fprintf(stderr, "merge_fuzz: %s [%lld, %lld]: got %.9g, want %.9g\n", what, a,
          b, got, want);
  abort();
}

/* ---- buffers ---------------------------------------------------------- */

/* Every array of a call: separate allocations (sanitizers see overruns),
 * or, in the aliasing mode, places in one arena. */
typedef struct arr {
  unsigned char *p;
  size_t bytes;
} arr;

typedef struct layout {
  attn_dtype dt;
  int64_t stride[4];
  int bcast; /* a dimension of stride 0 (-1: none) */
} layout;

static const attn_dtype dtypes[3] = {ATTN_DTYPE_F32, ATTN_DTYPE_BF16,
                                     ATTN_DTYPE_F16};

/* A [B, S, H, DV] layout from one byte: contiguous, padded, every second
 * element, heads outermost, or contiguous with one dimension broadcast. */
static layout make_layout(unsigned L, const int64_t sh[4]) {
  layout l;
  l.dt = dtypes[(L / 20) % 3];
  l.bcast = -1;
  const int64_t B = sh[0], S = sh[1], H = sh[2], D = sh[3];
  (void)B;
  switch (L % 5) {
  default:
  case 0:
  case 4:
    l.stride[3] = 1, l.stride[2] = D, l.stride[1] = H * D,
    l.stride[0] = S * H * D;
    break;
  case 1: {
    const int64_t p = 1 + (L / 60) % 3;
    l.stride[3] = 1, l.stride[2] = D + p, l.stride[1] = H * (D + p) + 2 * p,
    l.stride[0] = S * l.stride[1] + 3 * p;
    break;
  }
  case 2:
    l.stride[3] = 2, l.stride[2] = 2 * D, l.stride[1] = 2 * H * D,
    l.stride[0] = 2 * S * H * D;
    break;
  case 3:
    l.stride[3] = 1, l.stride[1] = D, l.stride[2] = S * D,
    l.stride[0] = H * S * D;
    break;
  }
  if (L % 5 == 4) {
    l.bcast = (int)((L / 60) % 4);
    l.stride[l.bcast] = 0;
  }
  return l;
}

/* Bytes from the first element to past the last (strides >= 0). */
static size_t layout_bytes(const layout *l, const int64_t sh[4]) {
  int64_t last = 0;
  for (int i = 0; i < 4; i++)
    last += (sh[i] - 1) * l->stride[i];
  return (size_t)(last + 1) * attn_dtype_size(l->dt);
}

/* Whether two elements of the layout share memory (shape > 1 at stride 0;
 * the other layouts never do). */
static int self_aliases(const layout *l, const int64_t sh[4]) {
  return l->bcast >= 0 && sh[l->bcast] > 1;
}

static attn_tensor view(void *p, const layout *l, const int64_t sh[4]) {
  attn_tensor t;
  memset(&t, 0, sizeof t);
  t.data = p;
  t.dtype = l->dt;
  for (int i = 0; i < 4; i++)
    t.shape[i] = sh[i], t.stride[i] = l->stride[i];
  return t;
}

/* ---- values ----------------------------------------------------------- */

typedef struct gen {
  uint64_t s;
  int wild; /* non-finite, huge and denormal values now and then */
} gen;

static const float specials[] = {NAN,    INFINITY, -INFINITY, 3e38f,
                                 -3e38f, 1e30f,    -1e30f,    1e-40f,
                                 0.0f,   -0.0f,    65504.f,   1e5f};

static float value(gen *g, float scale) {
  const float r = frand(&g->s);
  if (g->wild && (g->s >> 59) == 0) /* 1 in 32 */
    return specials[(g->s >> 40) % (sizeof specials / sizeof specials[0])];
  return r * scale;
}

/* An LSE: a spread of logits, -inf (the part saw nothing) now and then,
 * and the wild values. */
static float lse_value(gen *g, float spread) {
  const float r = frand(&g->s);
  if ((g->s >> 60) == 0) /* 1 in 16 */
    return -INFINITY;
  if (g->wild && (g->s >> 59) == 1)
    return specials[(g->s >> 40) % 7];
  return r * spread;
}

static void fill_tensor(const attn_tensor *t, gen *g, float scale) {
  for (int64_t b = 0; b < t->shape[0]; b++)
    for (int64_t i = 0; i < t->shape[1]; i++)
      for (int64_t h = 0; h < t->shape[2]; h++)
        for (int64_t x = 0; x < t->shape[3]; x++)
          fz_set(t, b, i, h, x, value(g, scale));
}

/* ---- the call --------------------------------------------------------- */

enum { R_OP, R_LP, R_SINK, R_O, R_LSE, R_DOUT, R_DLSE, R_DOP, R_DLP, R_DS };

typedef struct call {
  int64_t sh[4], n, rows;
  int sinks, lse_out, bwd, dlse, dlse_parts, dsinks;
  layout lop[MAXP], lo, ldout, ldop[MAXP];
  /* arrays by role (part index for the per-part ones) */
  arr a[10][MAXP];
  unsigned char *arena;
} call;

static int role_parts(int r) {
  return r == R_OP || r == R_LP || r == R_DOP || r == R_DLP;
}

static int64_t role_n(const call *c, int r) { return role_parts(r) ? c->n : 1; }

/* Bytes of role r (0: absent in this call). */
static size_t role_bytes(const call *c, int r, int64_t k) {
  const size_t lse = (size_t)c->rows * sizeof(float);
  switch (r) {
  case R_OP:
    return layout_bytes(&c->lop[k], c->sh);
  case R_LP:
    return lse;
  case R_SINK:
    return c->sinks ? (size_t)c->sh[2] * sizeof(float) : 0;
  case R_O:
    return layout_bytes(&c->lo, c->sh);
  case R_LSE:
    return c->lse_out ? lse : 0;
  case R_DOUT:
    return c->bwd ? layout_bytes(&c->ldout, c->sh) : 0;
  case R_DLSE:
    return c->bwd && c->dlse ? lse : 0;
  case R_DOP:
    return c->bwd ? layout_bytes(&c->ldop[k], c->sh) : 0;
  case R_DLP:
    return c->bwd && c->dlse_parts ? lse : 0;
  case R_DS:
    return c->bwd && c->dsinks ? (size_t)c->sh[2] * sizeof(float) : 0;
  }
  return 0;
}

static int overlap(const arr *x, const arr *y) {
  if (!x->bytes || !y->bytes)
    return 0;
  return x->p < y->p + y->bytes && y->p < x->p + x->bytes;
}

/* Whether an output of the phase (forward: o, lse; backward: do_parts,
 * dlse_parts, dsinks) overlaps any other array of that phase. */
static int phase_overlaps(const call *c, int bwd) {
  static const int fin[] = {R_OP, R_LP, R_SINK}, fout[] = {R_O, R_LSE};
  static const int bin[] = {R_OP, R_LP, R_SINK, R_O, R_LSE, R_DOUT, R_DLSE},
                   bout[] = {R_DOP, R_DLP, R_DS};
  const int *ins = bwd ? bin : fin, *outs = bwd ? bout : fout;
  const int nin = bwd ? 7 : 3, nout = bwd ? 3 : 2;
  for (int oi = 0; oi < nout; oi++)
    for (int64_t k = 0; k < role_n(c, outs[oi]); k++) {
      const arr *x = &c->a[outs[oi]][k];
      for (int j = 0; j < nin + nout; j++) {
        const int r = j < nin ? ins[j] : outs[j - nin];
        for (int64_t e = 0; e < role_n(c, r); e++)
          if (!(r == outs[oi] && e == k) && overlap(x, &c->a[r][e]))
            return 1;
      }
    }
  return 0;
}

/* ---- the oracle ------------------------------------------------------- */

static double out_unit(attn_dtype dt) {
  return dt == ATTN_DTYPE_BF16  ? ldexp(1, -8)
         : dt == ATTN_DTYPE_F16 ? ldexp(1, -11)
                                : 0.0;
}

static double out_max(attn_dtype dt) {
  return dt == ATTN_DTYPE_F16 ? 65504.0 : 3.4028234663852886e38;
}

/* got against want in a tensor of dtype dt, error bound tol in f32. */
static int close_to(double got, double want, double tol, attn_dtype dt) {
  const double uo = out_unit(dt);
  if (!isfinite(want))
    return !isfinite(got);
  if (fabs(want) * (1.0 + uo) + tol > out_max(dt)) /* may round to inf */
    /* the sign too, unless want is within the bound of 0 */
    return (isinf(got) && ((got > 0) == (want > 0) || fabs(want) <= tol)) ||
           fabs(got - want) <= tol + uo * fabs(want);
  const double t = tol + uo * (fabs(want) + tol) +
                   (dt == ATTN_DTYPE_F16    ? ldexp(1, -25)
                    : dt == ATTN_DTYPE_BF16 ? ldexp(1, -134)
                                            : ldexp(1, -149));
  return fabs(got - want) <= t;
}

/* Parts whose weight expf may or may not flush to zero: LSE_c - top in
 * this range leaves an element a non-finite value of that part reaches
 * unchecked. */
#define W_FLUSH_LO (-110.0)
#define W_FLUSH_HI (-100.0)

static void check_forward(const attn_merge_params *m, const call *c) {
  const int64_t B = c->sh[0], S = c->sh[1], H = c->sh[2], D = c->sh[3];
  const int64_t n = c->n;
  double w[MAXP];
  for (int64_t b = 0; b < B; b++)
    for (int64_t i = 0; i < S; i++)
      for (int64_t h = 0; h < H; h++) {
        const int64_t row = (b * H + h) * S + i;
        const double sink = m->sinks ? m->sinks[h] : -INFINITY;
        int nan = 0;
        double top = sink;
        for (int64_t k = 0; k < n; k++) {
          const double l = m->lse_parts[k][row];
          if (isnan(l) || l == INFINITY)
            nan = 1;
          else if (l > top)
            top = l;
        }
        double lse, sum = 0.0;
        if (nan) {
          lse = NAN;
        } else if (top == -INFINITY) {
          lse = -INFINITY;
        } else {
          for (int64_t k = 0; k < n; k++)
            sum += w[k] = exp(m->lse_parts[k][row] - top);
          sum += exp(sink - top);
          lse = top + log(sum);
        }
        for (int64_t x = 0; x < D; x++) {
          const double got = fz_get(&m->o, b, i, h, x);
          if (nan) {
            if (!isnan(got))
              fail("o of a NaN row", row, x, got, NAN);
            continue;
          }
          if (top == -INFINITY) {
            if (got != 0.0)
              fail("o of a row nothing saw", row, x, got, 0.0);
            continue;
          }
          double acc = 0.0, omax = 0.0;
          int skip = 0, wild = 0;
          for (int64_t k = 0; k < n; k++) {
            const double l = m->lse_parts[k][row];
            if (l == -INFINITY)
              continue; /* never read */
            const double v = fz_get(&m->o_parts[k], b, i, h, x);
            const double d = l - top;
            if (!isfinite(v)) {
              if (d < W_FLUSH_LO)
                continue; /* its weight flushes to zero: never read */
              if (d <= W_FLUSH_HI)
                skip = 1;
              wild = 1;
            }
            acc += w[k] * v;
            omax = fmax(omax, fabs(v));
          }
          if (skip)
            continue;
          const double want = acc / sum;
          if (wild) {
            if (isfinite(got))
              fail("o reached by a non-finite part", row, x, got, want);
            continue;
          }
          const double tol = (4.0 * (double)n + 8.0) * U32 * omax;
          if (!close_to(got, want, tol, m->o.dtype))
            fail("o", row, x, got, want);
        }
        if (m->lse) {
          const double got = m->lse[row];
          const int ok =
              isnan(lse) ? isnan(got)
              : isinf(lse)
                  ? got == lse
                  : fabs(got - lse) <= U32 * (2.0 * fabs(lse) + 4.0 * n + 12.0);
          if (!ok)
            fail("lse", row, 0, got, lse);
        }
      }
}

/* sum_x dout (t - o) over the row, in double from the stored values (t
 * NULL: - dout o), and sum_x |dout| (|t| + |o|). */
static double row_dot(const attn_merge_params *m, const attn_tensor *t,
                      int64_t b, int64_t i, int64_t h, double *mag) {
  double s = 0.0, a = 0.0;
  for (int64_t x = 0; x < m->o.shape[3]; x++) {
    const double g = fz_get(&m->dout, b, i, h, x),
                 o = fz_get(&m->o, b, i, h, x);
    const double v = t ? fz_get(t, b, i, h, x) : 0.0;
    s += g * (v - o);
    a += fabs(g) * (fabs(v) + fabs(o));
  }
  *mag = a;
  return s;
}

static void check_backward(const attn_merge_params *m, const call *c) {
  const int64_t B = c->sh[0], S = c->sh[1], H = c->sh[2], D = c->sh[3];
  double ds[64], dtol[64];
  int dbad[64], dskip[64];
  for (int64_t h = 0; h < H; h++)
    ds[h] = dtol[h] = 0.0, dbad[h] = dskip[h] = 0;
  for (int64_t b = 0; b < B; b++)
    for (int64_t i = 0; i < S; i++)
      for (int64_t h = 0; h < H; h++) {
        const int64_t row = (b * H + h) * S + i;
        const double lse = m->lse[row], dl = m->dlse ? m->dlse[row] : 0.0;
        const int bad = isnan(lse) || lse == INFINITY;
        for (int64_t k = 0; k < c->n; k++) {
          const double l = m->lse_parts[k][row];
          const double w = l == -INFINITY ? 0.0 : bad ? NAN : exp(l - lse);
          const double d = l - lse;
          /* expf(d) may flush to 0 in f32: then the part's gradients are
           * 0, which its tiny weight allows */
          const int flush = isfinite(d) && d < W_FLUSH_HI;
          /* w's error in f32: d = LSE_c - LSE rounded (u |d| relative in
           * the exponent), expf's ulp, the product's rounding. The stored
           * lse is the caller's: an lse that is not the forward's (w > 1)
           * is as valid an input as any. */
          const double errw = U32 * w * (fabs(d) + 3.0);
          for (int64_t x = 0; x < D; x++) {
            const double got = fz_get(&m->do_parts[k], b, i, h, x);
            if (w == 0.0) {
              if (got != 0.0)
                fail("do_parts of an unseen part", row, x, got, 0.0);
              continue;
            }
            const double g = fz_get(&m->dout, b, i, h, x);
            const double want = w * g;
            const double tol = fabs(g) * errw;
            if (flush && (got == 0.0 || !isfinite(g)))
              continue;
            if (!close_to(got, want, tol, m->do_parts[k].dtype))
              fail("do_parts", row, x, got, want);
          }
          if (!m->dlse_parts)
            continue;
          const double got = m->dlse_parts[k][row];
          if (w == 0.0) {
            if (got != 0.0)
              fail("dlse_parts of an unseen part", row, k, got, 0.0);
            continue;
          }
          double mag;
          const double dot = row_dot(m, &m->o_parts[k], b, i, h, &mag);
          const double want = w * (dot + dl);
          if (flush && (got == 0.0 || !isfinite(dot + dl)))
            continue;
          const double tol = (errw + 3.0 * U32 * w) * (fabs(dot) + fabs(dl)) +
                             1e-12 * w * mag + ldexp(1, -149);
          if (!close_to(got, want, tol, ATTN_DTYPE_F32))
            fail("dlse_parts", row, k, got, want);
        }
        if (!m->dsinks || m->sinks[h] == -INFINITY)
          continue;
        const double ws = bad ? NAN : exp(m->sinks[h] - lse);
        double mag;
        const double rd = row_dot(m, NULL, b, i, h, &mag);
        const double term = ws * (dl + rd);
        if (!bad && m->sinks[h] - lse < W_FLUSH_HI) {
          if (!isfinite(term))
            dskip[h] = 1; /* 0 or non-finite, as expf flushes */
          continue;       /* |term| below the bound */
        }
        if (!isfinite(term))
          dbad[h] = 1;
        ds[h] += term;
        const double errws = U32 * ws * (fabs(m->sinks[h] - lse) + 3.0);
        dtol[h] +=
            (errws + 3.0 * U32 * ws) * (fabs(rd) + fabs(dl)) + 1e-12 * ws * mag;
      }
  if (!m->dsinks)
    return;
  for (int64_t h = 0; h < H; h++) {
    const double got = m->dsinks[h];
    if (m->sinks[h] == -INFINITY) {
      if (got != 0.0)
        fail("dsinks of no sink", h, 0, got, 0.0);
      continue;
    }
    if (dskip[h])
      continue;
    if (dbad[h]) {
      if (isfinite(got))
        fail("dsinks of a non-finite row", h, 0, got, ds[h]);
      continue;
    }
    if (!close_to(got, ds[h], dtol[h] + 2.0 * U32 * fabs(ds[h]),
                  ATTN_DTYPE_F32))
      fail("dsinks", h, 0, got, ds[h]);
  }
}

/* ---- driver ----------------------------------------------------------- */

static void place(call *c, int alias_victim, int alias_target,
                  unsigned alias_shift) {
  /* role and part of the victim and target among the present arrays */
  int vr = -1, tr = -1;
  int64_t vk = 0, tk = 0;
  int idx = 0, nouts = 0, nall = 0;
  for (int r = 0; r < 10; r++)
    for (int64_t k = 0; k < role_n(c, r); k++)
      if (role_bytes(c, r, k)) {
        nall++;
        if (r == R_O || r == R_LSE || r >= R_DOP)
          nouts++;
      }
  if (alias_victim >= 0 && nouts > 0 && nall > 1) {
    const int vi = alias_victim % nouts;
    int ti = alias_target % (nall - 1);
    idx = 0;
    for (int r = 0; r < 10 && vr < 0; r++)
      for (int64_t k = 0; k < role_n(c, r); k++)
        if (role_bytes(c, r, k) && (r == R_O || r == R_LSE || r >= R_DOP) &&
            idx++ == vi) {
          vr = r, vk = k;
          break;
        }
    idx = 0;
    for (int r = 0; r < 10 && tr < 0; r++)
      for (int64_t k = 0; k < role_n(c, r); k++)
        if (role_bytes(c, r, k) && !(r == vr && k == vk) && idx++ == ti) {
          tr = r, tk = k;
          break;
        }
  }
  if (vr < 0) { /* separate allocations */
    for (int r = 0; r < 10; r++)
      for (int64_t k = 0; k < role_n(c, r); k++) {
        c->a[r][k].bytes = role_bytes(c, r, k);
        c->a[r][k].p = c->a[r][k].bytes ? calloc(1, c->a[r][k].bytes) : NULL;
        if (c->a[r][k].bytes && !c->a[r][k].p)
          abort();
      }
    return;
  }
  /* one arena: every array at its own 64-byte aligned offset, then the
   * victim moved onto the target at a shift inside it */
  size_t off = 0, total = 0;
  size_t offs[10][MAXP];
  for (int r = 0; r < 10; r++)
    for (int64_t k = 0; k < role_n(c, r); k++) {
      offs[r][k] = off;
      off += (role_bytes(c, r, k) + 63) / 64 * 64;
    }
  const size_t tb = role_bytes(c, tr, tk);
  offs[vr][vk] = offs[tr][tk] + (alias_shift % tb) / 4 * 4;
  total = off;
  const size_t vend = offs[vr][vk] + role_bytes(c, vr, vk);
  if (vend > total)
    total = vend;
  c->arena = calloc(1, total + 64);
  if (!c->arena)
    abort();
  for (int r = 0; r < 10; r++)
    for (int64_t k = 0; k < role_n(c, r); k++) {
      c->a[r][k].bytes = role_bytes(c, r, k);
      c->a[r][k].p = c->a[r][k].bytes ? c->arena + offs[r][k] : NULL;
    }
}

static void release(call *c) {
  if (!c->arena)
    for (int r = 0; r < 10; r++)
      for (int64_t k = 0; k < role_n(c, r); k++)
        free(c->a[r][k].p);
  free(c->arena);
}

/* Copies of the bytes of the given roles (to check that a refused call
 * wrote nothing, and to compare the thread counts). */
typedef struct snap {
  unsigned char *p;
  size_t n;
} snap;

static snap take_snap(const call *c, const int *roles, int nr) {
  snap s = {NULL, 0};
  for (int j = 0; j < nr; j++)
    for (int64_t k = 0; k < role_n(c, roles[j]); k++)
      s.n += c->a[roles[j]][k].bytes;
  s.p = malloc(s.n ? s.n : 1);
  if (!s.p)
    abort();
  size_t o = 0;
  for (int j = 0; j < nr; j++)
    for (int64_t k = 0; k < role_n(c, roles[j]); k++) {
      if (c->a[roles[j]][k].bytes)
        memcpy(s.p + o, c->a[roles[j]][k].p, c->a[roles[j]][k].bytes);
      o += c->a[roles[j]][k].bytes;
    }
  return s;
}

static int snap_same(const snap *a, const snap *b) {
  return a->n == b->n && memcmp(a->p, b->p, a->n) == 0;
}

static void scribble(const call *c, const int *roles, int nr) {
  for (int j = 0; j < nr; j++)
    for (int64_t k = 0; k < role_n(c, roles[j]); k++)
      if (c->a[roles[j]][k].bytes)
        memset(c->a[roles[j]][k].p, 0xA5, c->a[roles[j]][k].bytes);
}

/* Runs one phase on 1 thread, checks the status against what the harness
 * knows; when it ran, again on 3 threads for the same bits. Returns
 * whether it ran. */
static int run_phase(attn_merge_params *m, const call *c, int bwd,
                     int invalid) {
  static const int all[] = {R_OP,   R_LP,   R_SINK, R_O,   R_LSE,
                            R_DOUT, R_DLSE, R_DOP,  R_DLP, R_DS};
  static const int fout[] = {R_O, R_LSE}, bout[] = {R_DOP, R_DLP, R_DS};
  const int *outs = bwd ? bout : fout;
  const int nout = bwd ? 3 : 2;
  char msg[256];
  msg[0] = '\0';
  m->error_message = msg;
  m->error_message_size = sizeof msg;
  m->num_threads = 1;
  if (!invalid)
    scribble(c, outs, nout);
  const snap before = take_snap(c, all, 10);
  const attn_status st =
      bwd ? attn_merge_backward(NULL, m) : attn_merge(NULL, m);
  if (invalid) {
    const snap after = take_snap(c, all, 10);
    if (st == ATTN_OK)
      fail(bwd ? "backward accepted an invalid call"
               : "forward accepted an invalid call",
           (long long)c->n, 0, 0, 0);
    if (!msg[0])
      fail("a refused call without a reason", st, 0, 0, 0);
    if (!snap_same(&before, &after))
      fail("a refused call wrote memory", st, 0, 0, 0);
    free(before.p), free(after.p);
    return 0;
  }
  free(before.p);
  if (st != ATTN_OK) {
    fprintf(stderr, "merge_fuzz: %s\n", msg);
    fail(bwd ? "backward refused a valid call" : "forward refused a valid call",
         st, 0, 0, 0);
  }
  const snap one = take_snap(c, outs, nout);
  scribble(c, outs, nout);
  m->num_threads = 3;
  const attn_status st3 =
      bwd ? attn_merge_backward(NULL, m) : attn_merge(NULL, m);
  const snap three = take_snap(c, outs, nout);
  if (st3 != ATTN_OK || !snap_same(&one, &three))
    fail(bwd ? "backward: 1 and 3 threads differ"
             : "forward: 1 and 3 threads differ",
         st3, 0, 0, 0);
  free(one.p), free(three.p);
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  bytes in = {data, size};
  const unsigned flags = (unsigned)take(&in, 256);
  const unsigned np = (unsigned)take(&in, 256);
  call c;
  memset(&c, 0, sizeof c);
  c.sh[0] = 1 + take(&in, 3);
  c.sh[1] = 1 + take(&in, 40);
  c.sh[2] = 1 + take(&in, 12);
  c.sh[3] = 1 + take(&in, 48);
  if (flags & 0x80)
    c.sh[3] += 230 + take(&in, 60); /* past MERGE_CHUNK (256) */
  else
    (void)take(&in, 1);
  /* at most 2^15 elements per tensor (sequences halved first, then heads,
   * batch): every edge of the merge's work split (16 rows, 8 heads, 256
   * columns, 64 KiB per thread) stays reachable, and an execution stays
   * within milliseconds (tensors of 5 M elements took 50 ms) */
  while (c.sh[0] * c.sh[1] * c.sh[2] * c.sh[3] > 32768) {
    if (c.sh[1] > 1)
      c.sh[1] = (c.sh[1] + 1) / 2;
    else if (c.sh[2] > 1)
      c.sh[2] = (c.sh[2] + 1) / 2;
    else
      c.sh[0]--;
  }
  c.n = np % 16 == 15 ? 0 : 1 + (int64_t)(np % MAXP); /* 0: invalid */
  c.rows = c.sh[0] * c.sh[1] * c.sh[2];
  c.bwd = (flags & 1) != 0;
  c.lse_out = c.bwd || (flags & 2) != 0;
  c.sinks = (flags & 4) != 0;
  c.dlse = (flags & 8) != 0;
  c.dlse_parts = (flags & 16) != 0;
  c.dsinks = c.bwd && (flags & 32) != 0; /* without sinks: refused */
  gen g;
  g.wild = (flags & 64) != 0;
  g.s = 0x9E3779B97F4A7C15ULL;
  for (int i = 0; i < 4; i++)
    g.s = g.s * 0x100000001B3ULL ^ (uint64_t)take(&in, 256);
  if (!g.s)
    g.s = 1;
  const int64_t av = take(&in, 256), at_ = take(&in, 256);
  const unsigned ash = (unsigned)(take(&in, 256) << 8 | take(&in, 256));
  const int alias = (np & 0x80) != 0;
  const float spread = (float)(1 + take(&in, 4) * 10); /* LSE spread */
  const int64_t nn = c.n > 0 ? c.n : 1; /* arrays of an invalid call */
  const int64_t n_saved = c.n;
  c.n = nn;
  for (int64_t k = 0; k < nn; k++)
    c.lop[k] = make_layout((unsigned)take(&in, 256), c.sh);
  c.lo = make_layout((unsigned)take(&in, 256), c.sh);
  c.ldout = make_layout((unsigned)take(&in, 256), c.sh);
  for (int64_t k = 0; k < nn; k++)
    c.ldop[k] = make_layout((unsigned)take(&in, 256), c.sh);
  place(&c, alias ? (int)av : -1, (int)at_, ash);

  /* the inputs' values, through the tensors (aliased arrays: the last
   * write wins, and the oracle reads what is stored) */
  attn_tensor op[MAXP], dop[MAXP];
  const float *lp[MAXP];
  float *dlp[MAXP];
  for (int64_t k = 0; k < nn; k++) {
    op[k] = view(c.a[R_OP][k].p, &c.lop[k], c.sh);
    fill_tensor(&op[k], &g, k == 0 ? 1.0f : (float)(1 + k * 3));
    float *l = (float *)c.a[R_LP][k].p;
    for (int64_t r = 0; r < c.rows; r++)
      l[r] = lse_value(&g, spread);
    lp[k] = l;
  }
  float *sinks = (float *)c.a[R_SINK][0].p;
  int bad_sink = 0;
  for (int64_t h = 0; sinks && h < c.sh[2]; h++) {
    sinks[h] = lse_value(&g, spread);
    bad_sink |= isnan(sinks[h]) || sinks[h] == INFINITY;
  }
  attn_merge_params m;
  attn_merge_params_init(&m);
  c.n = n_saved;
  m.n_parts = c.n;
  m.o_parts = op;
  m.lse_parts = lp;
  m.o = view(c.a[R_O][0].p, &c.lo, c.sh);
  m.lse = (float *)c.a[R_LSE][0].p;
  m.sinks = sinks;
  c.n = nn;
  const int fwd_invalid = n_saved < 1 || bad_sink ||
                          self_aliases(&c.lo, c.sh) || phase_overlaps(&c, 0);
  const int ran = run_phase(&m, &c, 0, fwd_invalid);
  if (ran)
    check_forward(&m, &c);
  if (ran && c.bwd) {
    m.dout = view(c.a[R_DOUT][0].p, &c.ldout, c.sh);
    fill_tensor(&m.dout, &g, 1.0f);
    float *dlse = (float *)c.a[R_DLSE][0].p;
    for (int64_t r = 0; dlse && r < c.rows; r++)
      dlse[r] = value(&g, 1.0f);
    m.dlse = dlse;
    int dop_alias = 0;
    for (int64_t k = 0; k < nn; k++) {
      dop[k] = view(c.a[R_DOP][k].p, &c.ldop[k], c.sh);
      dop_alias |= self_aliases(&c.ldop[k], c.sh);
      dlp[k] = (float *)c.a[R_DLP][k].p;
    }
    m.do_parts = dop;
    m.dlse_parts = c.dlse_parts ? dlp : NULL;
    m.dsinks = (float *)c.a[R_DS][0].p;
    const int bwd_invalid =
        dop_alias || (c.dsinks && !c.sinks) || phase_overlaps(&c, 1);
    if (run_phase(&m, &c, 1, bwd_invalid))
      check_backward(&m, &c);
  }
  release(&c);
  return 0;
}
