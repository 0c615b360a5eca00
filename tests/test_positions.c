/*
 * test_positions: RoPE and the sinusoidal table (attn.h, "Position
 * schemes") against double / long double oracles.
 *
 *   apply       attn_rope_apply for every style x scaling x partial dims x
 *               dtype in x dtype out x layout (bshd, bhsd, gapped) x
 *               positions (per-row array, offset, per-batch offsets, ~1e6,
 *               ~2^40 and +-2^48), forward and inverse, in place and apart.
 *               Oracle: the rotation in long double (x87: 64-bit mantissa)
 *               by the angle pos * freq, exact: freq is cut into pieces of
 *               15 bits, pos * piece is exact in 64 bits, and the pieces'
 *               cos/sin are combined by the angle-addition formulas (an
 *               algorithm unlike the library's double-double reduction).
 *               freq is the library's plan (checked on its own in
 *               "frequencies").
 *   roundtrip   inverse undoes forward (mscale^2 for YaRN), and inverse is
 *               the transpose: <R x, y> = <x, R^T y>.
 *   frequencies every scaling against formulas coded here from the papers
 *               and Hugging Face's definitions (Llama 3.1: factor 8, low 1,
 *               high 4, original 8192, base 500000, d 128; YaRN: factor 4,
 *               original 4096), public f32 output and internal doubles.
 *   sinusoidal  attn_sinusoidal_table against the double formula.
 *   qk          attn_rope_apply_qk with kv_lens, cu_seqlens and offsets
 *               against positions computed here from attn.h's definition.
 *   status      bad inputs: each with its status (and message where the
 *               call has attn_params); nothing written on error.
 *
 * Tolerances (per element, |y - ref| <=):
 *   (u_out + 2^-24) |ref|      storage rounding: the row is rounded to f32,
 *                              then to bf16/f16 (double rounding)
 *   + floor_out                f16 subnormal half-spacing (2^-25), else 0
 *   + 1e-14 |pair| mscale      the library's angle (~1e-15 rad) and its
 *                              double rotation (~1e-16), with margin
 * Prints the largest error found per output dtype in units of u_out |pair|.
 * Last line: "N passed, N failed".
 */
#include "attn.h"
#include "pos/rope.h"
#include "test_common.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long n_pass, n_fail;

/* ---------------------------------------------------------------------- */
/* Strided tensors of any storage dtype                                   */
/* ---------------------------------------------------------------------- */

typedef struct tbuf {
  attn_tensor t;
  void *mem;
  size_t bytes;
} tbuf;

/* layout 0: bshd, 1: bhsd, 2: bshd with gaps and inner stride 2. */
static tbuf tb_make(attn_dtype dt, int64_t B, int64_t S, int64_t H, int64_t D,
                    int layout) {
  tbuf b;
  const size_t es = attn_dtype_size(dt);
  if (layout == 0) {
    b.t = attn_tensor_bshd(NULL, dt, B, S, H, D);
  } else if (layout == 1) {
    b.t = attn_tensor_bhsd(NULL, dt, B, S, H, D);
  } else {
    const int64_t row = 2 * D + 3, tok = H * row + 5;
    const int64_t shape[4] = {B, S, H, D};
    const int64_t stride[4] = {S * tok + 7, tok, row, 2};
    b.t.dtype = dt;
    for (int i = 0; i < 4; i++) {
      b.t.shape[i] = shape[i];
      b.t.stride[i] = stride[i];
    }
  }
  int64_t last = 0;
  for (int i = 0; i < 4; i++)
    last += (b.t.shape[i] - 1) * b.t.stride[i];
  b.bytes = (size_t)(last + 1) * es;
  b.mem = tc_alloc(b.bytes);
  memset(b.mem, 0x5A, b.bytes);
  b.t.data = b.mem;
  return b;
}

static int64_t tb_index(const attn_tensor *t, int64_t b, int64_t s, int64_t h,
                        int64_t i) {
  return b * t->stride[0] + s * t->stride[1] + h * t->stride[2] +
         i * t->stride[3];
}

static double tb_get(const attn_tensor *t, int64_t b, int64_t s, int64_t h,
                     int64_t i) {
  const int64_t k = tb_index(t, b, s, h, i);
  switch (t->dtype) {
  case ATTN_DTYPE_F32:
    return ((const float *)t->data)[k];
  case ATTN_DTYPE_BF16:
    return tc_bf16_to_f32(((const uint16_t *)t->data)[k]);
  case ATTN_DTYPE_F16:
    return tc_f16_to_f32(((const uint16_t *)t->data)[k]);
  default:
    return NAN;
  }
}

static void tb_set(const attn_tensor *t, int64_t b, int64_t s, int64_t h,
                   int64_t i, float v) {
  const int64_t k = tb_index(t, b, s, h, i);
  switch (t->dtype) {
  case ATTN_DTYPE_F32:
    ((float *)t->data)[k] = v;
    break;
  case ATTN_DTYPE_BF16:
    ((uint16_t *)t->data)[k] = tc_f32_to_bf16(v);
    break;
  case ATTN_DTYPE_F16:
    ((uint16_t *)t->data)[k] = tc_f32_to_f16(v);
    break;
  default:
    break;
  }
}

static void tb_fill(tbuf *b, tc_rng *r) {
  const attn_tensor *t = &b->t;
  for (int64_t i0 = 0; i0 < t->shape[0]; i0++)
    for (int64_t i1 = 0; i1 < t->shape[1]; i1++)
      for (int64_t i2 = 0; i2 < t->shape[2]; i2++)
        for (int64_t i3 = 0; i3 < t->shape[3]; i3++)
          tb_set(t, i0, i1, i2, i3, (float)tc_uniform(r, -1.0, 1.0));
}

static void tb_free(tbuf *b) { free(b->mem); }

/* Unit roundoff of a storage dtype, and the f16 subnormal floor. */
static double dt_u(attn_dtype dt) {
  return dt == ATTN_DTYPE_F32    ? ldexp(1.0, -24)
         : dt == ATTN_DTYPE_BF16 ? ldexp(1.0, -8)
                                 : ldexp(1.0, -11);
}

static double dt_floor(attn_dtype dt) {
  return dt == ATTN_DTYPE_F16 ? ldexp(1.0, -25) : 0.0;
}

static const char *dt_name(attn_dtype dt) {
  return dt == ATTN_DTYPE_F32 ? "f32" : dt == ATTN_DTYPE_BF16 ? "bf16" : "f16";
}

/* ---------------------------------------------------------------------- */
/* The oracle: one row, pairs coded from attn.h's definition              */
/* ---------------------------------------------------------------------- */

typedef struct oracle_out {
  double y[ATTN_MAX_HEAD_DIM];
  double tol_abs[ATTN_MAX_HEAD_DIM]; /* angle and rotation part */
} oracle_out;

/* Effective frequency of pair i: the plan's, LINEAR's 1/factor applied
 * once in double (as the library defines it). */
static double eff_freq(const attn_rope_plan *pl, int64_t i) {
  return pl->pos_scale == 1.0 ? pl->inv_freq[i]
                              : pl->inv_freq[i] * pl->pos_scale;
}

/* cos and sin of pos * f, exact to long double rounding at any |pos| <=
 * 2^48 (see the header comment). */
static void oracle_sincos(int64_t pos, double f, long double *c,
                          long double *s) {
  long double C = 1, S = 0;
  double rest = f;
  for (int k = 0; k < 4 && rest != 0; k++) {
    int e;
    frexp(rest, &e);
    const double piece =
        k == 3 ? rest : ldexp(trunc(ldexp(rest, 15 - e)), e - 15);
    rest -= piece;                                  /* exact */
    const long double t = (long double)pos * piece; /* <= 64 bits: exact */
    const long double ct = cosl(t), st = sinl(t);
    const long double c2 = C * ct - S * st, s2 = S * ct + C * st;
    C = c2;
    S = s2;
  }
  *c = C;
  *s = S;
}

static void oracle_row(const attn_rope_plan *pl, const double *x, int64_t pos,
                       int inverse, oracle_out *o) {
  const int64_t d = pl->head_dim, rd = pl->dims, half = rd / 2;
  for (int64_t i = 0; i < d; i++) {
    o->y[i] = x[i];
    o->tol_abs[i] = 0.0;
  }
  for (int64_t i = 0; i < half; i++) {
    int64_t a, b;
    if (pl->style == ATTN_ROPE_HALF) {
      a = i;
      b = i + half;
    } else {
      a = 2 * i;
      b = 2 * i + 1;
    }
    long double c, s;
    oracle_sincos(pos, eff_freq(pl, i), &c, &s);
    c *= pl->mscale;
    s *= inverse ? -pl->mscale : pl->mscale;
    const long double xa = x[a], xb = x[b];
    o->y[a] = (double)(xa * c - xb * s);
    o->y[b] = (double)(xb * c + xa * s);
    const double pair = sqrt(x[a] * x[a] + x[b] * x[b]);
    o->tol_abs[a] = o->tol_abs[b] = 1e-14 * pair * fabs(pl->mscale);
  }
}

/* ---------------------------------------------------------------------- */
/* Scaling configurations                                                 */
/* ---------------------------------------------------------------------- */

typedef struct cfg {
  const char *name;
  attn_rope_scaling scaling;
  double base, factor, omp, lo, hi, bf, bs, mscale;
} cfg;

static const cfg cfgs[] = {
    {"none", ATTN_ROPE_SCALING_NONE, 10000, 1, 8192, 1, 4, 32, 1, 0},
    {"linear4", ATTN_ROPE_SCALING_LINEAR, 10000, 4, 8192, 1, 4, 32, 1, 0},
    {"ntk8", ATTN_ROPE_SCALING_NTK, 10000, 8, 8192, 1, 4, 32, 1, 0},
    {"yarn4", ATTN_ROPE_SCALING_YARN, 10000, 4, 4096, 1, 4, 32, 1, 0},
    {"yarn16m", ATTN_ROPE_SCALING_YARN, 1e6, 16, 2048, 1, 4, 16, 2, 1.3},
    {"llama3", ATTN_ROPE_SCALING_LLAMA3, 500000, 8, 8192, 1, 4, 32, 1, 0},
    {"linear0.5", ATTN_ROPE_SCALING_LINEAR, 100, 0.5, 8192, 1, 4, 32, 1, 0},
};
#define N_CFGS ((int)(sizeof cfgs / sizeof cfgs[0]))

static attn_rope rope_of(const cfg *c, attn_rope_style style, int64_t dims) {
  attn_rope r;
  attn_rope_init(&r);
  r.base = c->base;
  r.style = style;
  r.dims = dims;
  r.scaling = c->scaling;
  r.factor = c->factor;
  r.original_max_position = c->omp;
  r.low_freq_factor = c->lo;
  r.high_freq_factor = c->hi;
  r.beta_fast = c->bf;
  r.beta_slow = c->bs;
  r.mscale = c->mscale;
  return r;
}

/* ---------------------------------------------------------------------- */
/* apply: the big matrix                                                  */
/* ---------------------------------------------------------------------- */

static const int64_t head_dims[] = {2,  4,  6,  7,  8,   10,
                                    32, 64, 66, 80, 128, 256};
#define N_HD ((int)(sizeof head_dims / sizeof head_dims[0]))
static const attn_dtype dts[3] = {ATTN_DTYPE_F32, ATTN_DTYPE_BF16,
                                  ATTN_DTYPE_F16};

/* largest error / (u_out |pair|) per output dtype, and at huge positions */
static double worst[3], worst_huge;

static int dt_slot(attn_dtype dt) {
  return dt == ATTN_DTYPE_F32 ? 0 : dt == ATTN_DTYPE_BF16 ? 1 : 2;
}

/* Compares y (after the call) with the oracle applied to x (before). */
static int compare_rows(const attn_rope_plan *pl, const double *xin,
                        const attn_tensor *y, int64_t b, int64_t s, int64_t h,
                        int64_t pos, int inverse, int huge, const char *what) {
  oracle_out o;
  oracle_row(pl, xin, pos, inverse, &o);
  const attn_dtype dt = y->dtype;
  const double u = dt_u(dt);
  int bad = 0;
  for (int64_t i = 0; i < pl->head_dim; i++) {
    const double got = tb_get(y, b, s, h, i), ref = o.y[i];
    const double tol =
        (u + ldexp(1.0, -24)) * fabs(ref) + dt_floor(dt) + o.tol_abs[i];
    const double err = fabs(got - ref);
    /* scale for the report: u_out times the pair's size (~ |x| ~ 1) */
    const double rel = err / (u * (fabs(ref) > 0.25 ? fabs(ref) : 0.25));
    if (rel > worst[dt_slot(dt)])
      worst[dt_slot(dt)] = rel;
    if (huge && dt == ATTN_DTYPE_F32 && rel > worst_huge)
      worst_huge = rel;
    if (!(err <= tol) && !bad) {
      bad = 1;
      CHECK(0,
            "%s: row (%lld,%lld,%lld) pos %lld elem %lld: got %.9g want "
            "%.9g (err %.3g > tol %.3g)",
            what, (long long)b, (long long)s, (long long)h, (long long)pos,
            (long long)i, got, ref, err, tol);
    }
  }
  if (!bad)
    n_pass++;
  return bad;
}

typedef struct apply_case {
  const cfg *c;
  attn_rope_style style;
  int partial;
  int64_t d;
  attn_dtype din, dout;
  int lay_in, lay_out;
  int pos_mode; /* 0 array, 1 offset, 2 per-batch offsets, 3 ~1e6, 4 ~2^40 */
  int inverse, in_place;
} apply_case;

static int64_t partial_dims(int64_t d) {
  int64_t rd = (d * 3 / 4) & ~(int64_t)1;
  return rd < 2 ? 2 : rd;
}

static void run_apply_case(const apply_case *ac, tc_rng *rng) {
  const int64_t B = tc_range(rng, 1, 3), S = tc_range(rng, 1, 6),
                H = tc_range(rng, 1, 3), D = ac->d;
  int64_t dims = ac->partial ? partial_dims(D) : 0;
  if (D % 2 && !ac->partial)
    return; /* odd head_dim needs partial dims (status tests) */
  if (ac->c->scaling == ATTN_ROPE_SCALING_NTK && (dims ? dims : D) < 4)
    return;
  attn_rope r = rope_of(ac->c, ac->style, dims);
  attn_rope_plan pl;
  char why[200] = "";
  attn_status st = attn_rope_plan_make(&r, D, &pl, why, sizeof why);
  CHECK(st == ATTN_OK, "plan %s d %lld: %s", ac->c->name, (long long)D, why);
  if (st != ATTN_OK)
    return;

  tbuf x = tb_make(ac->din, B, S, H, D, ac->lay_in);
  tb_fill(&x, rng);
  tbuf y = ac->in_place ? x : tb_make(ac->dout, B, S, H, D, ac->lay_out);
  /* positions */
  int64_t *positions = NULL, pos_offset = 0, *offs = NULL;
  if (ac->pos_mode == 0 || ac->pos_mode == 4) {
    positions = tc_alloc((size_t)(B * S) * sizeof *positions);
    for (int64_t i = 0; i < B * S; i++)
      positions[i] = ac->pos_mode == 0
                         ? tc_range(rng, -1000, 100000)
                         : ((int64_t)1 << 40) + tc_range(rng, -5000, 5000);
    if (ac->pos_mode == 4 && tc_chance(rng, 0.3))
      positions[0] = ((int64_t)1 << 48) * (tc_chance(rng, 0.5) ? 1 : -1);
  } else if (ac->pos_mode == 1) {
    pos_offset = tc_range(rng, -50, 5000);
  } else if (ac->pos_mode == 2) {
    pos_offset = tc_range(rng, -50, 50);
    offs = tc_alloc((size_t)B * sizeof *offs);
    for (int64_t b = 0; b < B; b++)
      offs[b] = tc_range(rng, -100, 100000);
  } else {
    pos_offset = 1000000 + tc_range(rng, -3, 3);
  }
  /* x before the call, as doubles */
  double *xin = tc_alloc((size_t)(B * S * H * D) * sizeof *xin);
  for (int64_t b = 0; b < B; b++)
    for (int64_t s = 0; s < S; s++)
      for (int64_t h = 0; h < H; h++)
        for (int64_t i = 0; i < D; i++)
          xin[((b * S + s) * H + h) * D + i] = tb_get(&x.t, b, s, h, i);

  st = attn_rope_apply(&r, x.t, y.t, positions, pos_offset, offs, ac->inverse);
  char what[160];
  snprintf(what, sizeof what,
           "%s %s dims %lld/%lld %s->%s lay %d/%d pos %d%s%s", ac->c->name,
           ac->style == ATTN_ROPE_HALF ? "half" : "interleaved",
           (long long)pl.dims, (long long)D, dt_name(ac->din),
           dt_name(ac->in_place ? ac->din : ac->dout), ac->lay_in, ac->lay_out,
           ac->pos_mode, ac->inverse ? " inverse" : "",
           ac->in_place ? " in place" : "");
  CHECK(st == ATTN_OK, "%s: status %d", what, (int)st);
  if (st == ATTN_OK) {
    int bad = 0;
    for (int64_t b = 0; b < B && !bad; b++)
      for (int64_t s = 0; s < S && !bad; s++) {
        const int64_t pos = positions ? positions[b * S + s]
                                      : pos_offset + (offs ? offs[b] : 0) + s;
        for (int64_t h = 0; h < H && !bad; h++)
          bad = compare_rows(&pl, xin + ((b * S + s) * H + h) * D, &y.t, b, s,
                             h, pos, ac->inverse, ac->pos_mode >= 3, what);
      }
  }
  free(xin);
  free(positions);
  free(offs);
  if (!ac->in_place)
    tb_free(&y);
  tb_free(&x);
}

static void test_apply(void) {
  tc_rng rng = {0x0123456789ABCDEFull};
  long cases = 0;
  for (int ci = 0; ci < N_CFGS; ci++)
    for (int style = 0; style < 2; style++)
      for (int partial = 0; partial < 2; partial++)
        for (int din = 0; din < 3; din++)
          for (int dout = 0; dout < 3; dout++)
            for (int lay = 0; lay < 3; lay++)
              for (int pm = 0; pm < 5; pm++) {
                if (pm == 4 && LDBL_MANT_DIG < 64)
                  continue; /* the oracle needs 64-bit long doubles there */
                apply_case ac;
                ac.c = &cfgs[ci];
                ac.style = style ? ATTN_ROPE_INTERLEAVED : ATTN_ROPE_HALF;
                ac.partial = partial;
                ac.d = head_dims[tc_below(&rng, N_HD)];
                ac.din = dts[din];
                ac.dout = dts[dout];
                ac.lay_in = lay;
                ac.lay_out = (int)tc_below(&rng, 3);
                ac.pos_mode = pm;
                ac.inverse = tc_chance(&rng, 0.5);
                ac.in_place = din == dout && tc_chance(&rng, 0.3);
                run_apply_case(&ac, &rng);
                cases++;
              }
  printf("apply: %ld cases; max error / (u_out max(|ref|, 1/4)): f32 %.3f, "
         "bf16 %.3f, f16 %.3f; f32 at positions ~1e6..2^48: %.3f\n",
         cases, worst[0], worst[1], worst[2], worst_huge);
}

/* The internal row call the KV cache uses, with positions up to 2^48. */
static void test_rotate_f32(void) {
  tc_rng rng = {42};
  for (int ci = 0; ci < N_CFGS; ci++)
    for (int k = 0; k < 40; k++) {
      const int64_t D = 2 * tc_range(&rng, 2, 128);
      attn_rope r = rope_of(&cfgs[ci], k % 2 ? ATTN_ROPE_INTERLEAVED : 0,
                            k % 3 ? 0 : partial_dims(D));
      attn_rope_plan pl;
      CHECK(attn_rope_plan_make(&r, D, &pl, NULL, 0) == ATTN_OK, "plan");
      float x[256];
      double xd[256];
      for (int64_t i = 0; i < D; i++)
        xd[i] = x[i] = (float)tc_uniform(&rng, -1, 1);
      int64_t pos = tc_range(&rng, -100000, 100000);
      if (k % 4 == 1 && LDBL_MANT_DIG >= 64)
        pos = ((int64_t)1 << tc_range(&rng, 30, 48)) - tc_range(&rng, 0, 99);
      const int inverse = k % 5 == 2;
      attn_rope_rotate_f32(&pl, x, pos, inverse);
      oracle_out o;
      oracle_row(&pl, xd, pos, inverse, &o);
      int bad = 0;
      for (int64_t i = 0; i < D; i++) {
        const double tol = ldexp(1.0, -24) * fabs(o.y[i]) + o.tol_abs[i];
        if (!(fabs(x[i] - o.y[i]) <= tol))
          bad = 1;
      }
      CHECK(!bad, "rotate_f32 %s d %lld pos %lld", cfgs[ci].name, (long long)D,
            (long long)pos);
    }
}

/* ---------------------------------------------------------------------- */
/* Round trips: inverse undoes forward; inverse is the transpose          */
/* ---------------------------------------------------------------------- */

static void test_roundtrip(void) {
  tc_rng rng = {7};
  for (int ci = 0; ci < N_CFGS; ci++)
    for (int style = 0; style < 2; style++) {
      const int64_t B = 2, S = 5, H = 3, D = 64;
      attn_rope r =
          rope_of(&cfgs[ci], style ? ATTN_ROPE_INTERLEAVED : 0, style ? 48 : 0);
      attn_rope_plan pl;
      attn_rope_plan_make(&r, D, &pl, NULL, 0);
      const double m2 = pl.mscale * pl.mscale;
      tbuf x = tb_make(ATTN_DTYPE_F32, B, S, H, D, 0);
      tbuf y = tb_make(ATTN_DTYPE_F32, B, S, H, D, 1);
      tbuf z = tb_make(ATTN_DTYPE_F32, B, S, H, D, 2);
      tbuf w = tb_make(ATTN_DTYPE_F32, B, S, H, D, 0);
      tbuf v = tb_make(ATTN_DTYPE_F32, B, S, H, D, 0);
      tb_fill(&x, &rng);
      tb_fill(&w, &rng);
      const int64_t off = 123456789 + ci;
      CHECK(attn_rope_apply(&r, x.t, y.t, NULL, off, NULL, 0) == ATTN_OK,
            "fwd");
      CHECK(attn_rope_apply(&r, y.t, z.t, NULL, off, NULL, 1) == ATTN_OK,
            "inv");
      CHECK(attn_rope_apply(&r, w.t, v.t, NULL, off, NULL, 1) == ATTN_OK,
            "inv w");
      int bad = 0;
      double lhs = 0, rhs = 0, mag = 0;
      for (int64_t b = 0; b < B; b++)
        for (int64_t s = 0; s < S; s++)
          for (int64_t h = 0; h < H; h++) {
            double n2 = 0;
            for (int64_t i = 0; i < D; i++)
              n2 += tb_get(&x.t, b, s, h, i) * tb_get(&x.t, b, s, h, i);
            for (int64_t i = 0; i < D; i++) {
              const double xv = tb_get(&x.t, b, s, h, i);
              const double zv = tb_get(&z.t, b, s, h, i);
              /* two f32 roundings, each <= 2^-24 of a pair's size */
              const double tol =
                  3.0 * ldexp(1.0, -24) * (m2 > 1 ? m2 : 1) * sqrt(n2);
              const double want = i < pl.dims ? m2 * xv : xv;
              if (!(fabs(zv - want) <= tol))
                bad = 1;
              const double yv = tb_get(&y.t, b, s, h, i);
              const double wv = tb_get(&w.t, b, s, h, i);
              const double vv = tb_get(&v.t, b, s, h, i);
              lhs += yv * wv; /* <R x, w> */
              rhs += xv * vv; /* <x, R^T w> */
              mag += fabs(yv * wv) + fabs(xv * vv);
            }
          }
      CHECK(!bad, "%s style %d: inverse does not undo forward", cfgs[ci].name,
            style);
      CHECK(fabs(lhs - rhs) <= 2.0 * ldexp(1.0, -24) * mag,
            "%s style %d: <Rx,w> %.17g != <x,R^T w> %.17g", cfgs[ci].name,
            style, lhs, rhs);
      tb_free(&x);
      tb_free(&y);
      tb_free(&z);
      tb_free(&w);
      tb_free(&v);
    }
}

/* ---------------------------------------------------------------------- */
/* Frequencies: formulas coded here                                       */
/* ---------------------------------------------------------------------- */

static const double PI = 3.14159265358979323846;

/* Plain RoPE: theta_i = base^(-2i/d). */
static double ref_plain(double base, int64_t d, int64_t i) {
  return exp(-(double)(2 * i) / (double)d * log(base));
}

/* Independent coding of each scaling, in HF's variable names. */
static double ref_freq(const attn_rope *r, int64_t d, int64_t i,
                       double *attn_factor) {
  *attn_factor = 1.0;
  const double f = r->factor;
  switch (r->scaling) {
  case ATTN_ROPE_SCALING_NONE:
    return ref_plain(r->base, d, i);
  case ATTN_ROPE_SCALING_LINEAR:
    return ref_plain(r->base, d, i) / f;
  case ATTN_ROPE_SCALING_NTK: {
    const double base = r->base * pow(f, (double)d / (double)(d - 2));
    return ref_plain(base, d, i);
  }
  case ATTN_ROPE_SCALING_YARN: {
    /* dims that complete num_rot turns in the original context */
    double lo =
        floor(d * log(r->original_max_position / (r->beta_fast * 2 * PI)) /
              (2 * log(r->base)));
    double hi =
        ceil(d * log(r->original_max_position / (r->beta_slow * 2 * PI)) /
             (2 * log(r->base)));
    if (lo < 0)
      lo = 0;
    if (hi > d - 1)
      hi = (double)(d - 1);
    if (lo == hi)
      hi += 0.001;
    double ramp = ((double)i - lo) / (hi - lo);
    ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
    const double extrapolation_factor = 1.0 - ramp;
    const double pos_freq = pow(r->base, (double)(2 * i) / (double)d);
    *attn_factor = r->mscale > 0 ? r->mscale
                   : f <= 1      ? 1.0
                                 : 0.1 * log(f) + 1.0;
    return (1.0 / (f * pos_freq)) * (1 - extrapolation_factor) +
           (1.0 / pos_freq) * extrapolation_factor;
  }
  case ATTN_ROPE_SCALING_LLAMA3: {
    const double inv = ref_plain(r->base, d, i);
    const double wavelen = 2 * PI / inv;
    const double low_wl = r->original_max_position / r->low_freq_factor;
    const double high_wl = r->original_max_position / r->high_freq_factor;
    if (wavelen < high_wl)
      return inv;
    if (wavelen > low_wl)
      return inv / f;
    const double smooth =
        (r->original_max_position / wavelen - r->low_freq_factor) /
        (r->high_freq_factor - r->low_freq_factor);
    return (1 - smooth) * inv / f + smooth * inv;
  }
  }
  return NAN;
}

static void check_freqs(const attn_rope *r, int64_t head_dim,
                        const char *name) {
  const int64_t d = r->dims ? r->dims : head_dim;
  float f32[ATTN_ROPE_MAX_PAIRS], ms = -1;
  attn_status st = attn_rope_frequencies(r, head_dim, f32, &ms);
  CHECK(st == ATTN_OK, "%s: frequencies status %d", name, (int)st);
  attn_rope_plan pl;
  attn_rope_plan_make(r, head_dim, &pl, NULL, 0);
  int bad = 0, bad32 = 0;
  double af = 1, worst_rel = 0;
  for (int64_t i = 0; i < d / 2; i++) {
    const double ref = ref_freq(r, d, i, &af);
    const double got = eff_freq(&pl, i);
    const double rel = fabs(got - ref) / ref;
    worst_rel = rel > worst_rel ? rel : worst_rel;
    if (!(rel <= 1e-13)) /* exp/log vs pow: a few 1e-16 times log(base) */
      bad = 1;
    if (!(fabs(f32[i] - ref) <= ldexp(1.0, -24) * ref * (1 + 1e-9)))
      bad32 = 1;
  }
  CHECK(!bad, "%s: double frequencies off (worst rel %.3g)", name, worst_rel);
  CHECK(!bad32, "%s: f32 frequencies not the rounded reference", name);
  CHECK(fabs(ms - af) <= ldexp(1.0, -24) * af && fabs(pl.mscale - af) < 1e-15,
        "%s: mscale %.9g want %.9g", name, (double)ms, af);
}

static void test_frequencies(void) {
  attn_rope r;
  /* Llama 3.1 */
  attn_rope_init(&r);
  r.base = 500000;
  r.scaling = ATTN_ROPE_SCALING_LLAMA3;
  r.factor = 8;
  check_freqs(&r, 128, "llama3.1");
  {
    /* the three bands: wavelength < 2048 kept, > 8192 divided by 8 */
    float f[64], ms;
    attn_rope_frequencies(&r, 128, f, &ms);
    int kept = 0, divided = 0, smooth = 0;
    for (int i = 0; i < 64; i++) {
      const double inv = ref_plain(500000, 128, i), wl = 2 * PI / inv;
      kept += wl < 2048 && f[i] == (float)inv;
      divided += wl > 8192 && fabs(f[i] - inv / 8) <= 1e-7 * inv;
      smooth += wl >= 2048 && wl <= 8192 && f[i] < inv && f[i] > inv / 8;
    }
    CHECK(kept + divided + smooth == 64 && kept > 0 && divided > 0 &&
              smooth > 0,
          "llama3 bands: kept %d divided %d smooth %d", kept, divided, smooth);
  }
  /* YaRN, factor 4 from 4096 */
  attn_rope_init(&r);
  r.scaling = ATTN_ROPE_SCALING_YARN;
  r.factor = 4;
  r.original_max_position = 4096;
  check_freqs(&r, 128, "yarn4");
  {
    float f[64], ms;
    attn_rope_frequencies(&r, 128, f, &ms);
    CHECK(fabs(ms - (0.1 * log(4.0) + 1.0)) < 1e-7, "yarn mscale %.9g",
          (double)ms);
    CHECK(f[0] == 1.0f && fabs(f[63] - ref_plain(10000, 128, 63) / 4) <
                              1e-7 * ref_plain(10000, 128, 63),
          "yarn ends: extrapolated first, interpolated last");
  }
  r.mscale = 1.25;
  r.beta_fast = 16;
  r.beta_slow = 2;
  r.dims = 64;
  check_freqs(&r, 96, "yarn explicit mscale, partial");
  r.factor = 0.5; /* factor <= 1: attention factor 1 */
  r.mscale = 0;
  check_freqs(&r, 96, "yarn factor 0.5");
  r.beta_fast = 1; /* beta_fast < beta_slow: HF's arithmetic still holds */
  r.beta_slow = 32;
  check_freqs(&r, 96, "yarn betas swapped");
  /* none, linear, NTK with partial dims and both styles */
  for (int ci = 0; ci < N_CFGS; ci++)
    for (int k = 0; k < 4; k++) {
      const int64_t hd = k < 2 ? 128 : 80;
      attn_rope q = rope_of(&cfgs[ci], k % 2 ? ATTN_ROPE_INTERLEAVED : 0,
                            k == 3   ? 32
                            : k == 1 ? 64
                                     : 0);
      char name[64];
      snprintf(name, sizeof name, "%s #%d", cfgs[ci].name, k);
      check_freqs(&q, hd, name);
    }
  /* NTK: the base really becomes base * factor^(d/(d-2)) */
  attn_rope_init(&r);
  r.scaling = ATTN_ROPE_SCALING_NTK;
  r.factor = 8;
  r.dims = 4;
  {
    float f[2], ms;
    attn_rope_frequencies(&r, 10, f, &ms);
    /* d = 4: base' = 10000 * 8^2 = 640000; theta_1 = 640000^(-1/2) */
    CHECK(f[0] == 1.0f && fabs(f[1] - 1.0 / 800.0) < 1e-7 / 800.0 && ms == 1.0f,
          "ntk d=4: %.9g", (double)f[1]);
  }
}

/* ---------------------------------------------------------------------- */
/* Sinusoidal table                                                       */
/* ---------------------------------------------------------------------- */

static void test_sinusoidal(void) {
  const int64_t ns[] = {1, 7, 33};
  const int64_t ds[] = {1, 2, 5, 64, 127, 512};
  const int64_t p0s[] = {0, -20, 1000000, ((int64_t)1 << 48) - 40};
  const double bases[] = {0, 10000, 500};
  for (int a = 0; a < 3; a++)
    for (int b = 0; b < 6; b++)
      for (int c = 0; c < 4; c++)
        for (int e = 0; e < 3; e++) {
          const int64_t n = ns[a], d = ds[b], p0 = p0s[c];
          if (c == 3 && LDBL_MANT_DIG < 64)
            continue; /* the oracle needs 64-bit long doubles there */
          float *t = tc_alloc((size_t)(n * d) * sizeof *t);
          attn_status st = attn_sinusoidal_table(n, d, p0, bases[e], t);
          CHECK(st == ATTN_OK, "sinusoidal status %d", (int)st);
          const double base = bases[e] == 0 ? 10000 : bases[e];
          int bad = 0;
          for (int64_t p = 0; p < n && st == ATTN_OK; p++)
            for (int64_t j = 0; j < d; j++) {
              const int64_t i2 = j & ~(int64_t)1;
              const double inv = pow(base, -(double)i2 / (double)d);
              long double co, sn;
              oracle_sincos(p0 + p, inv, &co, &sn);
              const double ref = (double)(j % 2 ? co : sn);
              /* f32 rounding + the library's angle (~1e-15) */
              const double tol = ldexp(1.0, -24) * fabs(ref) + 1e-14;
              if (!(fabs(t[p * d + j] - ref) <= tol))
                bad = 1;
            }
          CHECK(!bad, "sinusoidal n %lld d %lld pos0 %lld base %g",
                (long long)n, (long long)d, (long long)p0, base);
          free(t);
        }
  float t[8];
  CHECK(attn_sinusoidal_table(1, 8, 0, 0, NULL) == ATTN_ERR_NULL_POINTER,
        "null");
  CHECK(attn_sinusoidal_table(0, 8, 0, 0, t) == ATTN_ERR_INVALID_SHAPE, "n");
  CHECK(attn_sinusoidal_table(1, 0, 0, 0, t) == ATTN_ERR_INVALID_SHAPE, "d");
  CHECK(attn_sinusoidal_table(1, 8, 0, 1.0, t) == ATTN_ERR_INVALID_ARGUMENT,
        "base 1");
  CHECK(attn_sinusoidal_table(1, 8, 0, -5, t) == ATTN_ERR_INVALID_ARGUMENT,
        "base < 0");
  CHECK(attn_sinusoidal_table(1, 8, 0, NAN, t) == ATTN_ERR_INVALID_ARGUMENT,
        "base nan");
  CHECK(attn_sinusoidal_table(2, 4, (int64_t)1 << 48, 0, t) ==
            ATTN_ERR_INVALID_ARGUMENT,
        "pos0 + n beyond 2^48");
  CHECK(attn_sinusoidal_table(INT64_MAX / 2, 4, 0, 0, t) == ATTN_ERR_OVERFLOW,
        "n * d overflows");
  /* pos 0 row: sin 0 = 0, cos 0 = 1 exactly */
  CHECK(attn_sinusoidal_table(1, 4, 0, 0, t) == ATTN_OK && t[0] == 0 &&
            t[1] == 1 && t[2] == 0 && t[3] == 1,
        "row 0");
}

/* ---------------------------------------------------------------------- */
/* attn_rope_apply_qk                                                     */
/* ---------------------------------------------------------------------- */

typedef struct qk_case {
  int varlen, kvlens, offsets, inverse, in_place;
  attn_dtype dt;
} qk_case;

static void run_qk(const qk_case *qc, tc_rng *rng) {
  const int64_t nseq = tc_range(rng, 1, 4), hk = tc_range(rng, 1, 2),
                hq = hk * tc_range(rng, 1, 3), D = 2 * tc_range(rng, 1, 40);
  int32_t cuq[5] = {0}, cuk[5] = {0}, kvl[4];
  int64_t sqb[4], skb[4], qoffs[4], koffs[4];
  for (int64_t b = 0; b < nseq; b++) {
    sqb[b] = tc_range(rng, 0, 6);
    skb[b] = tc_range(rng, 1, 8);
    cuq[b + 1] = cuq[b] + (int32_t)sqb[b];
    cuk[b + 1] = cuk[b] + (int32_t)skb[b];
    qoffs[b] = tc_range(rng, -1000, 1000000);
    koffs[b] = tc_range(rng, -1000, 1000000);
  }
  int64_t Bt, Sq, Sk;
  if (qc->varlen) {
    Bt = 1;
    Sq = cuq[nseq] + tc_range(rng, 1, 3); /* rows past the last sequence */
    Sk = cuk[nseq] + tc_range(rng, 0, 2);
  } else {
    Bt = nseq;
    Sq = tc_range(rng, 1, 6);
    Sk = tc_range(rng, 1, 8);
    for (int64_t b = 0; b < nseq; b++) {
      sqb[b] = Sq;
      skb[b] = Sk;
    }
  }
  for (int64_t b = 0; b < nseq; b++)
    kvl[b] = (int32_t)tc_range(rng, 0, skb[b]);

  tbuf q = tb_make(qc->dt, Bt, Sq, hq, D, (int)tc_below(rng, 3));
  tbuf k = tb_make(qc->dt, Bt, Sk, hk, D, (int)tc_below(rng, 3));
  tbuf v = tb_make(ATTN_DTYPE_F32, Bt, Sk, hk, 8, 0);
  tbuf o = tb_make(ATTN_DTYPE_F32, Bt, Sq, hq, 8, 0);
  tb_fill(&q, rng);
  tb_fill(&k, rng);
  const attn_dtype dout = qc->in_place ? qc->dt : dts[tc_below(rng, 3)];
  tbuf qo = qc->in_place ? q : tb_make(dout, Bt, Sq, hq, D, 1);
  tbuf ko = qc->in_place ? k : tb_make(dout, Bt, Sk, hk, D, 2);
  double *qin = tc_alloc((size_t)(Bt * Sq * hq * D) * sizeof *qin);
  double *kin = tc_alloc((size_t)(Bt * Sk * hk * D) * sizeof *kin);
  for (int64_t b = 0; b < Bt; b++)
    for (int64_t s = 0; s < Sq; s++)
      for (int64_t h = 0; h < hq; h++)
        for (int64_t i = 0; i < D; i++)
          qin[((b * Sq + s) * hq + h) * D + i] = tb_get(&q.t, b, s, h, i);
  for (int64_t b = 0; b < Bt; b++)
    for (int64_t s = 0; s < Sk; s++)
      for (int64_t h = 0; h < hk; h++)
        for (int64_t i = 0; i < D; i++)
          kin[((b * Sk + s) * hk + h) * D + i] = tb_get(&k.t, b, s, h, i);

  attn_params p;
  attn_params_init(&p);
  char msg[256] = "";
  p.error_message = msg;
  p.error_message_size = sizeof msg;
  p.q = q.t;
  p.k = k.t;
  p.v = v.t;
  p.o = o.t;
  if (qc->varlen) {
    p.cu_seqlens_q = cuq;
    p.cu_seqlens_k = cuk;
    p.varlen_batch = nseq;
  }
  if (qc->kvlens)
    p.kv_lens = kvl;
  if (qc->offsets) {
    p.q_pos_offset = tc_range(rng, -100, 100);
    p.k_pos_offset = tc_range(rng, -100, 100);
    p.q_pos_offsets = qoffs;
    p.k_pos_offsets = koffs;
  }
  const cfg *c = &cfgs[tc_below(rng, N_CFGS)];
  attn_rope r = rope_of(c, tc_below(rng, 2) ? ATTN_ROPE_INTERLEAVED : 0,
                        tc_chance(rng, 0.3) ? (D >= 4 ? D - 2 : 2) : 0);
  if (c->scaling == ATTN_ROPE_SCALING_NTK && D < 6)
    r.scaling = ATTN_ROPE_SCALING_NONE;
  attn_rope_plan pl;
  attn_rope_plan_make(&r, D, &pl, NULL, 0);
  attn_status st = attn_rope_apply_qk(&r, &p, qo.t, ko.t, qc->inverse);
  char what[128];
  snprintf(what, sizeof what, "qk varlen %d kvlens %d offsets %d inv %d %s",
           qc->varlen, qc->kvlens, qc->offsets, qc->inverse, c->name);
  CHECK(st == ATTN_OK, "%s: status %d (%s)", what, (int)st, msg);
  if (st == ATTN_OK) {
    /* positions from attn.h's definition, coded here */
    int bad = 0;
    for (int64_t b = 0; b < nseq && !bad; b++) {
      const int64_t tb = qc->varlen ? 0 : b;
      const int64_t q_row0 = qc->varlen ? cuq[b] : 0;
      const int64_t k_row0 = qc->varlen ? cuk[b] : 0;
      const int64_t sk_eff = qc->kvlens ? kvl[b] : skb[b];
      const int64_t qo0 = qc->offsets ? p.q_pos_offset + qoffs[b] : 0;
      const int64_t ko0 = qc->offsets ? p.k_pos_offset + koffs[b] : 0;
      for (int64_t i = 0; i < sqb[b] && !bad; i++)
        for (int64_t h = 0; h < hq && !bad; h++)
          bad = compare_rows(&pl, qin + ((tb * Sq + q_row0 + i) * hq + h) * D,
                             &qo.t, tb, q_row0 + i, h,
                             i + sk_eff - sqb[b] + qo0, qc->inverse, 0, what);
      for (int64_t j = 0; j < skb[b] && !bad; j++)
        for (int64_t h = 0; h < hk && !bad; h++)
          bad = compare_rows(&pl, kin + ((tb * Sk + k_row0 + j) * hk + h) * D,
                             &ko.t, tb, k_row0 + j, h, j + ko0, qc->inverse, 0,
                             what);
    }
    if (qc->varlen) { /* rows past the last sequence: copied */
      for (int64_t s = cuq[nseq]; s < Sq; s++)
        for (int64_t i = 0; i < D; i++)
          bad |= fabs(tb_get(&qo.t, 0, s, 0, i) - qin[s * hq * D + i]) >
                 dt_u(dout) * fabs(qin[s * hq * D + i]);
      for (int64_t s = cuk[nseq]; s < Sk; s++)
        for (int64_t i = 0; i < D; i++)
          bad |= fabs(tb_get(&ko.t, 0, s, 0, i) - kin[s * hk * D + i]) >
                 dt_u(dout) * fabs(kin[s * hk * D + i]);
      CHECK(!bad, "%s: tail rows not copied", what);
    }
  }
  free(qin);
  free(kin);
  if (!qc->in_place) {
    tb_free(&qo);
    tb_free(&ko);
  }
  tb_free(&q);
  tb_free(&k);
  tb_free(&v);
  tb_free(&o);
}

static void test_qk(void) {
  tc_rng rng = {99};
  for (int rep = 0; rep < 6; rep++)
    for (int m = 0; m < 32; m++) {
      qk_case qc;
      qc.varlen = m & 1;
      qc.kvlens = (m >> 1) & 1;
      qc.offsets = (m >> 2) & 1;
      qc.inverse = (m >> 3) & 1;
      qc.in_place = (m >> 4) & 1;
      qc.dt = dts[(rep + m) % 3];
      run_qk(&qc, &rng);
    }
}

/* ---------------------------------------------------------------------- */
/* Bad inputs                                                             */
/* ---------------------------------------------------------------------- */

static attn_status apply_with(attn_rope r, int64_t D) {
  float x[2 * 3 * 2 * 16], y[2 * 3 * 2 * 16];
  for (int i = 0; i < 2 * 3 * 2 * 16; i++)
    x[i] = y[i] = 0.5f;
  attn_tensor tx = attn_tensor_bshd(x, ATTN_DTYPE_F32, 2, 3, 2, D);
  attn_tensor ty = attn_tensor_bshd(y, ATTN_DTYPE_F32, 2, 3, 2, D);
  return attn_rope_apply(&r, tx, ty, NULL, 0, NULL, 0);
}

static void test_status_rope(void) {
  attn_rope r0, r;
  attn_rope_init(&r0);
  CHECK(r0.base == 10000 && r0.style == ATTN_ROPE_HALF && r0.dims == 0 &&
            r0.scaling == ATTN_ROPE_SCALING_NONE && r0.factor == 1 &&
            r0.original_max_position == 8192 && r0.low_freq_factor == 1 &&
            r0.high_freq_factor == 4 && r0.beta_fast == 32 &&
            r0.beta_slow == 1 && r0.mscale == 0,
        "defaults");
  CHECK(apply_with(r0, 16) == ATTN_OK, "valid");
#define BAD(field, value, want)                                                \
  do {                                                                         \
    r = r0;                                                                    \
    r.field = value;                                                           \
    attn_status st_ = apply_with(r, 16);                                       \
    CHECK(st_ == (want), #field " = " #value ": status %d", (int)st_);         \
  } while (0)
  BAD(dims, 3, ATTN_ERR_INVALID_ARGUMENT);
  BAD(dims, 18, ATTN_ERR_INVALID_ARGUMENT);
  BAD(dims, -2, ATTN_ERR_INVALID_ARGUMENT);
  BAD(base, 1.0, ATTN_ERR_INVALID_ARGUMENT);
  BAD(base, 0.5, ATTN_ERR_INVALID_ARGUMENT);
  BAD(base, -10000, ATTN_ERR_INVALID_ARGUMENT);
  BAD(base, NAN, ATTN_ERR_INVALID_ARGUMENT);
  BAD(base, INFINITY, ATTN_ERR_INVALID_ARGUMENT);
  BAD(factor, 0.0, ATTN_ERR_INVALID_ARGUMENT);
  BAD(factor, -2.0, ATTN_ERR_INVALID_ARGUMENT);
  BAD(factor, NAN, ATTN_ERR_INVALID_ARGUMENT);
  BAD(factor, INFINITY, ATTN_ERR_INVALID_ARGUMENT);
  BAD(style, (attn_rope_style)2, ATTN_ERR_INVALID_ARGUMENT);
  BAD(style, (attn_rope_style)-1, ATTN_ERR_INVALID_ARGUMENT);
  BAD(scaling, (attn_rope_scaling)5, ATTN_ERR_INVALID_ARGUMENT);
  BAD(scaling, (attn_rope_scaling)-1, ATTN_ERR_INVALID_ARGUMENT);
  r0.scaling = ATTN_ROPE_SCALING_YARN;
  BAD(beta_fast, 0.0, ATTN_ERR_INVALID_ARGUMENT);
  BAD(beta_slow, NAN, ATTN_ERR_INVALID_ARGUMENT);
  BAD(original_max_position, 0.0, ATTN_ERR_INVALID_ARGUMENT);
  BAD(mscale, -1.0, ATTN_ERR_INVALID_ARGUMENT);
  BAD(mscale, INFINITY, ATTN_ERR_INVALID_ARGUMENT);
  r0.scaling = ATTN_ROPE_SCALING_LLAMA3;
  BAD(high_freq_factor, 1.0, ATTN_ERR_INVALID_ARGUMENT);
  BAD(low_freq_factor, 0.0, ATTN_ERR_INVALID_ARGUMENT);
  BAD(original_max_position, -5.0, ATTN_ERR_INVALID_ARGUMENT);
  r0.scaling = ATTN_ROPE_SCALING_NTK;
  BAD(dims, 2, ATTN_ERR_INVALID_ARGUMENT);
  r0.scaling = ATTN_ROPE_SCALING_LINEAR;
  BAD(factor, 1e-320, ATTN_ERR_INVALID_ARGUMENT); /* 1/factor is inf */
  r0.scaling = ATTN_ROPE_SCALING_NONE;
  /* a scaling's fields are not read by the others (as HF) */
  BAD(beta_fast, NAN, ATTN_OK);
  BAD(high_freq_factor, 0.0, ATTN_OK);
#undef BAD
  /* odd head_dim with dims 0 is a head-dim problem; head_dim > 256 too */
  CHECK(apply_with(r0, 7) == ATTN_ERR_HEAD_DIM, "odd head_dim");
  r = r0;
  r.dims = 6;
  CHECK(apply_with(r, 7) == ATTN_OK, "odd head_dim, even dims");

  float x[4 * 300] = {0}, f[200], ms;
  attn_tensor tx = attn_tensor_bshd(x, ATTN_DTYPE_F32, 1, 2, 1, 8);
  attn_tensor ty = attn_tensor_bshd(x + 16, ATTN_DTYPE_F32, 1, 2, 1, 8);
  attn_tensor big = attn_tensor_bshd(x, ATTN_DTYPE_F32, 1, 1, 1, 257);
  attn_tensor big2 = attn_tensor_bshd(x + 300, ATTN_DTYPE_F32, 1, 1, 1, 257);
  CHECK(attn_rope_apply(&r0, big, big2, NULL, 0, NULL, 0) == ATTN_ERR_HEAD_DIM,
        "head_dim 257");
  CHECK(attn_rope_frequencies(&r0, 300, f, &ms) == ATTN_ERR_HEAD_DIM,
        "frequencies head_dim 300");
  CHECK(attn_rope_frequencies(&r0, 0, f, &ms) == ATTN_ERR_HEAD_DIM,
        "frequencies head_dim 0");
  /* null pointers */
  CHECK(attn_rope_apply(NULL, tx, ty, NULL, 0, NULL, 0) ==
            ATTN_ERR_NULL_POINTER,
        "rope NULL");
  attn_tensor tn = tx;
  tn.data = NULL;
  CHECK(attn_rope_apply(&r0, tn, ty, NULL, 0, NULL, 0) == ATTN_ERR_NULL_POINTER,
        "x NULL");
  CHECK(attn_rope_apply(&r0, tx, tn, NULL, 0, NULL, 0) == ATTN_ERR_NULL_POINTER,
        "y NULL");
  CHECK(attn_rope_frequencies(NULL, 8, f, &ms) == ATTN_ERR_NULL_POINTER,
        "freq rope NULL");
  CHECK(attn_rope_frequencies(&r0, 8, NULL, &ms) == ATTN_ERR_NULL_POINTER,
        "freq out NULL");
  CHECK(attn_rope_frequencies(&r0, 8, f, NULL) == ATTN_ERR_NULL_POINTER,
        "mscale NULL");
  /* ABI: sizes no release declared */
  const size_t sizes[4] = {0, sizeof(attn_rope) - 8, sizeof(attn_rope) + 8, 1};
  for (int i = 0; i < 4; i++) {
    CHECK(attn_rope_apply_sized(&r0, sizes[i], tx, ty, NULL, 0, NULL, 0) ==
              ATTN_ERR_ABI,
          "apply size %zu", sizes[i]);
    CHECK(attn_rope_frequencies_sized(&r0, sizes[i], 8, f, &ms) == ATTN_ERR_ABI,
          "frequencies size %zu", sizes[i]);
    unsigned char raw[sizeof(attn_rope) + 16];
    memset(raw, 0xAB, sizeof raw);
    attn_rope_init_sized((attn_rope *)(void *)raw, sizes[i]);
    int untouched = 1;
    for (size_t j = 0; j < sizeof raw; j++)
      untouched &= raw[j] == 0xAB;
    CHECK(untouched, "init_sized(%zu) wrote into unknown memory", sizes[i]);
  }
  attn_rope_init_sized(NULL, sizeof(attn_rope)); /* no crash */
  /* tensors: dtype, shapes, strides, overlap */
  attn_tensor tb = ty;
  tb.dtype = ATTN_DTYPE_BOOL;
  CHECK(attn_rope_apply(&r0, tx, tb, NULL, 0, NULL, 0) ==
            ATTN_ERR_INVALID_DTYPE,
        "bool y");
  tb = tx;
  tb.dtype = (attn_dtype)9;
  CHECK(attn_rope_apply(&r0, tb, ty, NULL, 0, NULL, 0) ==
            ATTN_ERR_INVALID_DTYPE,
        "dtype 9");
  tb = ty;
  tb.shape[1] = 1;
  CHECK(attn_rope_apply(&r0, tx, tb, NULL, 0, NULL, 0) ==
            ATTN_ERR_INVALID_SHAPE,
        "shape mismatch");
  tb = ty;
  tb.shape[0] = 0;
  CHECK(attn_rope_apply(&r0, tb, tb, NULL, 0, NULL, 0) ==
            ATTN_ERR_INVALID_SHAPE,
        "empty");
  tb = ty;
  tb.stride[1] = -8;
  CHECK(attn_rope_apply(&r0, tx, tb, NULL, 0, NULL, 0) ==
            ATTN_ERR_INVALID_STRIDE,
        "negative stride");
  tb = ty;
  tb.stride[1] = 0; /* two rows on one */
  CHECK(attn_rope_apply(&r0, tx, tb, NULL, 0, NULL, 0) ==
            ATTN_ERR_INVALID_STRIDE,
        "y self-aliasing");
  tb = tx;
  tb.stride[1] = 0; /* an input may broadcast */
  CHECK(attn_rope_apply(&r0, tb, ty, NULL, 0, NULL, 0) == ATTN_OK,
        "x broadcast over seq");
  tb = tx;
  tb.data = x + 4; /* partial overlap */
  CHECK(attn_rope_apply(&r0, tx, tb, NULL, 0, NULL, 0) == ATTN_ERR_OVERLAP,
        "partial overlap");
  tb = tx;
  tb.stride[0] = 32; /* same data, other strides */
  tb.stride[1] = 16;
  CHECK(attn_rope_apply(&r0, tx, tb, NULL, 0, NULL, 0) == ATTN_ERR_OVERLAP,
        "same data, other strides");
  tb = tx;
  tb.dtype = ATTN_DTYPE_BF16; /* same data, other dtype */
  CHECK(attn_rope_apply(&r0, tx, tb, NULL, 0, NULL, 0) == ATTN_ERR_OVERLAP,
        "same data, other dtype");
  CHECK(attn_rope_apply(&r0, tx, tx, NULL, 0, NULL, 0) == ATTN_OK,
        "exactly in place");
  tb = tx;
  tb.stride[0] = INT64_MAX / 2;
  tb.shape[0] = 4;
  CHECK(attn_rope_apply(&r0, tb, ty, NULL, 0, NULL, 0) == ATTN_ERR_OVERFLOW,
        "extent overflow");
  /* positions */
  int64_t pos[2] = {0, ((int64_t)1 << 48) + 1};
  CHECK(attn_rope_apply(&r0, tx, ty, pos, 0, NULL, 0) ==
            ATTN_ERR_INVALID_ARGUMENT,
        "position beyond 2^48");
  pos[1] = -((int64_t)1 << 48);
  CHECK(attn_rope_apply(&r0, tx, ty, pos, 0, NULL, 0) == ATTN_OK,
        "position -2^48");
  CHECK(attn_rope_apply(&r0, tx, ty, NULL, (int64_t)1 << 48, NULL, 0) ==
            ATTN_ERR_INVALID_ARGUMENT,
        "offset + seq beyond 2^48");
  CHECK(attn_rope_apply(&r0, tx, ty, NULL, INT64_MAX, NULL, 0) ==
            ATTN_ERR_INVALID_ARGUMENT,
        "offset INT64_MAX");
  int64_t offs[1] = {INT64_MIN};
  CHECK(attn_rope_apply(&r0, tx, ty, NULL, 0, offs, 0) ==
            ATTN_ERR_INVALID_ARGUMENT,
        "offsets INT64_MIN");
  offs[0] = ((int64_t)1 << 47);
  CHECK(attn_rope_apply(&r0, tx, ty, NULL, (int64_t)1 << 47, offs, 0) ==
            ATTN_ERR_INVALID_ARGUMENT,
        "offset + offsets beyond 2^48");
  /* y over the positions array: the array would change under the call */
  int64_t *pw = (int64_t *)(void *)x;
  attn_tensor tp = attn_tensor_bshd(x + 8, ATTN_DTYPE_F32, 1, 2, 1, 8);
  pw[0] = 0;
  CHECK(attn_rope_apply(&r0, ty, tp, pw, 0, NULL, 0) == ATTN_ERR_OVERLAP,
        "y overlaps positions");
  /* nothing written on error */
  for (int i = 0; i < 16; i++)
    x[16 + i] = 3.0f;
  attn_rope rb = r0;
  rb.dims = 5;
  attn_rope_apply(&rb, tx, ty, NULL, 0, NULL, 0);
  int same = 1;
  for (int i = 0; i < 16; i++)
    same &= x[16 + i] == 3.0f;
  CHECK(same, "output written on error");
}

static void test_status_qk(void) {
  float q[2 * 3 * 2 * 8], k[2 * 4 * 2 * 8], v[2 * 4 * 2 * 4], o[2 * 3 * 2 * 4],
      qo[2 * 3 * 2 * 8], ko[2 * 4 * 2 * 8];
  memset(q, 0, sizeof q);
  memset(k, 0, sizeof k);
  memset(v, 0, sizeof v);
  memset(qo, 0, sizeof qo);
  memset(ko, 0, sizeof ko);
  attn_params p;
  attn_params_init(&p);
  char msg[256];
  p.error_message = msg;
  p.error_message_size = sizeof msg;
  p.q = attn_tensor_bshd(q, ATTN_DTYPE_F32, 2, 3, 2, 8);
  p.k = attn_tensor_bshd(k, ATTN_DTYPE_F32, 2, 4, 2, 8);
  p.v = attn_tensor_bshd(v, ATTN_DTYPE_F32, 2, 4, 2, 4);
  p.o = attn_tensor_bshd(o, ATTN_DTYPE_F32, 2, 3, 2, 4);
  attn_tensor tqo = attn_tensor_bshd(qo, ATTN_DTYPE_F32, 2, 3, 2, 8);
  attn_tensor tko = attn_tensor_bshd(ko, ATTN_DTYPE_F32, 2, 4, 2, 8);
  attn_rope r;
  attn_rope_init(&r);
  msg[0] = 0;
  CHECK(attn_rope_apply_qk(&r, &p, tqo, tko, 0) == ATTN_OK, "valid: %s", msg);
  CHECK(attn_rope_apply_qk(&r, &p, p.q, p.k, 0) == ATTN_OK, "in place: %s",
        msg);
#define QK_BAD(expr_st, needle, what)                                          \
  do {                                                                         \
    msg[0] = 0;                                                                \
    attn_status st_ = (expr_st);                                               \
    CHECK(st_ != ATTN_OK && strstr(msg, needle) != NULL,                       \
          "%s: status %d, message \"%s\" lacks \"%s\"", what, (int)st_, msg,   \
          needle);                                                             \
  } while (0)
  attn_rope rb = r;
  rb.dims = 5;
  QK_BAD(attn_rope_apply_qk(&rb, &p, tqo, tko, 0), "even", "odd dims");
  rb = r;
  rb.base = 0.5;
  QK_BAD(attn_rope_apply_qk(&rb, &p, tqo, tko, 0), "base", "base");
  rb = r;
  rb.scaling = (attn_rope_scaling)9;
  QK_BAD(attn_rope_apply_qk(&rb, &p, tqo, tko, 0), "scaling", "scaling");
  QK_BAD(attn_rope_apply_qk(NULL, &p, tqo, tko, 0), "rope is NULL", "NULL");
  QK_BAD(attn_rope_apply_qk_sized(&r, 3, &p, sizeof p, tqo, tko, 0),
         "attn_rope is 3 bytes", "rope size");
  CHECK(attn_rope_apply_qk_sized(&r, 3, &p, sizeof p, tqo, tko, 0) ==
            ATTN_ERR_ABI,
        "rope size status");
  CHECK(attn_rope_apply_qk_sized(&r, sizeof r, &p, 7, tqo, tko, 0) ==
            ATTN_ERR_ABI,
        "params size status");
  CHECK(attn_rope_apply_qk(&r, NULL, tqo, tko, 0) == ATTN_ERR_NULL_POINTER,
        "params NULL");
  attn_tensor t = tqo;
  t.data = q + 8; /* partial overlap with q */
  QK_BAD(attn_rope_apply_qk(&r, &p, t, tko, 0), "q_out overlaps q", "q_out");
  CHECK(attn_rope_apply_qk(&r, &p, t, tko, 0) == ATTN_ERR_OVERLAP, "status");
  t = tko;
  t.data = q; /* k_out over q */
  QK_BAD(attn_rope_apply_qk(&r, &p, tqo, t, 0), "k_out overlaps", "k_out");
  t = tqo;
  t.data = ko + 4; /* q_out over k_out */
  QK_BAD(attn_rope_apply_qk(&r, &p, t, tko, 0), "q_out overlaps k_out",
         "q_out/k_out");
  t = tqo;
  t.shape[1] = 2;
  QK_BAD(attn_rope_apply_qk(&r, &p, t, tko, 0), "q_out.shape[1]", "shape");
  CHECK(attn_rope_apply_qk(&r, &p, t, tko, 0) == ATTN_ERR_INVALID_SHAPE,
        "shape status");
  t = tko;
  t.dtype = ATTN_DTYPE_BOOL;
  QK_BAD(attn_rope_apply_qk(&r, &p, tqo, t, 0), "k_out.dtype", "dtype");
  t = tko;
  t.stride[1] = 0;
  QK_BAD(attn_rope_apply_qk(&r, &p, tqo, t, 0), "share memory", "alias");
  t = tko;
  t.data = NULL;
  QK_BAD(attn_rope_apply_qk(&r, &p, tqo, t, 0), "k_out.data", "null out");
  /* the attention call's own validation */
  int32_t kvl[2] = {1, 9};
  p.kv_lens = kvl;
  QK_BAD(attn_rope_apply_qk(&r, &p, tqo, tko, 0), "kv_lens[1]", "kv_lens");
  kvl[1] = 2;
  p.q_pos_offset = ((int64_t)1 << 50);
  QK_BAD(attn_rope_apply_qk(&r, &p, tqo, tko, 0), "2^48", "offset");
  p.q_pos_offset = 0;
  int64_t *offs = (int64_t *)(void *)ko; /* k_out over k_pos_offsets */
  offs[0] = offs[1] = 0;
  p.k_pos_offsets = offs;
  QK_BAD(attn_rope_apply_qk(&r, &p, tqo, tko, 0), "k_pos_offsets",
         "aux overlap");
  p.k_pos_offsets = NULL;
  CHECK(attn_rope_apply_qk(&r, &p, tqo, tko, 0) == ATTN_OK, "valid again: %s",
        msg);
  /* nothing written on error */
  for (size_t i = 0; i < sizeof qo / sizeof qo[0]; i++)
    qo[i] = 7.0f;
  rb = r;
  rb.factor = -1;
  attn_rope_apply_qk(&rb, &p, tqo, tko, 0);
  int same = 1;
  for (size_t i = 0; i < sizeof qo / sizeof qo[0]; i++)
    same &= qo[i] == 7.0f;
  CHECK(same, "qk wrote on error");
#undef QK_BAD
}

/* ---------------------------------------------------------------------- */
/* Gradients w.r.t. the unrotated Q and K: attn_backward on the rotated   */
/* inputs, then the inverse rotation (what `attn grad --rope` does),      */
/* against central differences of a double attention                      */
/* ---------------------------------------------------------------------- */

enum { FD_SQ = 3, FD_SK = 5, FD_D = 8, FD_DV = 4 };

/* L = sum dO * softmax(scale (R q)(R k)^T) v, everything in double;
 * query i at i + sk - sq + qoff, key j at j + koff. */
static double fd_loss(const attn_rope_plan *pl, const double *q,
                      const double *k, const double *v, const double *dout,
                      int64_t qoff, int64_t koff) {
  double qr[FD_SQ][FD_D], kr[FD_SK][FD_D];
  oracle_out o;
  for (int i = 0; i < FD_SQ; i++) {
    oracle_row(pl, q + i * FD_D, i + FD_SK - FD_SQ + qoff, 0, &o);
    memcpy(qr[i], o.y, sizeof qr[i]);
  }
  for (int j = 0; j < FD_SK; j++) {
    oracle_row(pl, k + j * FD_D, j + koff, 0, &o);
    memcpy(kr[j], o.y, sizeof kr[j]);
  }
  double L = 0;
  for (int i = 0; i < FD_SQ; i++) {
    double sc[FD_SK], m = -INFINITY, sum = 0;
    for (int j = 0; j < FD_SK; j++) {
      double d = 0;
      for (int c = 0; c < FD_D; c++)
        d += qr[i][c] * kr[j][c];
      sc[j] = d / sqrt((double)FD_D);
      m = sc[j] > m ? sc[j] : m;
    }
    for (int j = 0; j < FD_SK; j++)
      sum += (sc[j] = exp(sc[j] - m));
    for (int c = 0; c < FD_DV; c++) {
      double oc = 0;
      for (int j = 0; j < FD_SK; j++)
        oc += sc[j] / sum * v[j * FD_DV + c];
      L += dout[i * FD_DV + c] * oc;
    }
  }
  return L;
}

static void test_grad_fd(void) {
  tc_rng rng = {2024};
  for (int ci = 0; ci < N_CFGS; ci++)
    for (int style = 0; style < 2; style++) {
      float q[FD_SQ * FD_D], k[FD_SK * FD_D], v[FD_SK * FD_DV],
          dout[FD_SQ * FD_DV], o[FD_SQ * FD_DV], lse[FD_SQ];
      float qr[FD_SQ * FD_D], kr[FD_SK * FD_D], dq[FD_SQ * FD_D],
          dk[FD_SK * FD_D], dv[FD_SK * FD_DV];
      double qd[FD_SQ * FD_D], kd[FD_SK * FD_D], vd[FD_SK * FD_DV],
          dod[FD_SQ * FD_DV];
      for (int i = 0; i < FD_SQ * FD_D; i++)
        qd[i] = q[i] = (float)tc_uniform(&rng, -1.5, 1.5);
      for (int i = 0; i < FD_SK * FD_D; i++)
        kd[i] = k[i] = (float)tc_uniform(&rng, -1.5, 1.5);
      for (int i = 0; i < FD_SK * FD_DV; i++)
        vd[i] = v[i] = (float)tc_uniform(&rng, -1, 1);
      for (int i = 0; i < FD_SQ * FD_DV; i++)
        dod[i] = dout[i] = (float)tc_uniform(&rng, -1, 1);
      attn_rope r =
          rope_of(&cfgs[ci], style ? ATTN_ROPE_INTERLEAVED : 0, style ? 6 : 0);
      attn_rope_plan pl;
      attn_rope_plan_make(&r, FD_D, &pl, NULL, 0);
      attn_params p;
      attn_params_init(&p);
      p.q = attn_tensor_bshd(q, ATTN_DTYPE_F32, 1, FD_SQ, 1, FD_D);
      p.k = attn_tensor_bshd(k, ATTN_DTYPE_F32, 1, FD_SK, 1, FD_D);
      p.v = attn_tensor_bshd(v, ATTN_DTYPE_F32, 1, FD_SK, 1, FD_DV);
      p.o = attn_tensor_bshd(o, ATTN_DTYPE_F32, 1, FD_SQ, 1, FD_DV);
      p.lse = lse;
      p.q_pos_offset = 1000 * ci;
      p.k_pos_offset = 7 - 1000 * ci;
      const attn_tensor tqr =
          attn_tensor_bshd(qr, ATTN_DTYPE_F32, 1, FD_SQ, 1, FD_D);
      const attn_tensor tkr =
          attn_tensor_bshd(kr, ATTN_DTYPE_F32, 1, FD_SK, 1, FD_D);
      attn_status st = attn_rope_apply_qk(&r, &p, tqr, tkr, 0);
      p.q = tqr;
      p.k = tkr;
      if (st == ATTN_OK)
        st = attn_forward(NULL, &p);
      p.dout = attn_tensor_bshd(dout, ATTN_DTYPE_F32, 1, FD_SQ, 1, FD_DV);
      p.dq = attn_tensor_bshd(dq, ATTN_DTYPE_F32, 1, FD_SQ, 1, FD_D);
      p.dk = attn_tensor_bshd(dk, ATTN_DTYPE_F32, 1, FD_SK, 1, FD_D);
      p.dv = attn_tensor_bshd(dv, ATTN_DTYPE_F32, 1, FD_SK, 1, FD_DV);
      if (st == ATTN_OK)
        st = attn_backward(NULL, &p);
      attn_params g = p; /* the gradients as Q and K, rotated back */
      g.q = p.dq;
      g.k = p.dk;
      if (st == ATTN_OK)
        st = attn_rope_apply_qk(&r, &g, p.dq, p.dk, 1);
      CHECK(st == ATTN_OK, "fd %s: status %d", cfgs[ci].name, (int)st);
      if (st != ATTN_OK)
        continue;
      const double h = 1e-5;
      double worst_fd = 0, gmax = 0;
      double fdq[FD_SQ * FD_D], fdk[FD_SK * FD_D];
      for (int i = 0; i < FD_SQ * FD_D + FD_SK * FD_D; i++) {
        double *x = i < FD_SQ * FD_D ? qd + i : kd + (i - FD_SQ * FD_D);
        const double x0 = *x;
        *x = x0 + h;
        const double lp =
            fd_loss(&pl, qd, kd, vd, dod, p.q_pos_offset, p.k_pos_offset);
        *x = x0 - h;
        const double lm =
            fd_loss(&pl, qd, kd, vd, dod, p.q_pos_offset, p.k_pos_offset);
        *x = x0;
        const double gfd = (lp - lm) / (2 * h);
        if (i < FD_SQ * FD_D)
          fdq[i] = gfd;
        else
          fdk[i - FD_SQ * FD_D] = gfd;
        gmax = fabs(gfd) > gmax ? fabs(gfd) : gmax;
      }
      for (int i = 0; i < FD_SQ * FD_D; i++)
        worst_fd = fmax(worst_fd, fabs(dq[i] - fdq[i]));
      for (int i = 0; i < FD_SK * FD_D; i++)
        worst_fd = fmax(worst_fd, fabs(dk[i] - fdk[i]));
      /* f32 forward and backward (~1e-6 relative) against central
       * differences in double (truncation ~h^2, rounding ~1e-16 / h) */
      CHECK(worst_fd <= 1e-4 * (gmax > 1 ? gmax : 1),
            "fd %s style %d: |dq,dk - finite differences| %.3g (max grad "
            "%.3g)",
            cfgs[ci].name, style, worst_fd, gmax);
    }
}

/* What Hugging Face's f32 angles would give at position 1e6 (printed only:
 * the note in rope.c). */
static void note_f32_angles(void) {
  attn_rope r;
  attn_rope_init(&r);
  attn_rope_plan pl;
  attn_rope_plan_make(&r, 128, &pl, NULL, 0);
  double worst_f32 = 0;
  const int64_t pos = 1000000;
  for (int64_t i = 0; i < 64; i++) {
    const float a32 = (float)pos * (float)pl.inv_freq[i];
    const long double a = (long double)pos * pl.inv_freq[i];
    const double e = fabs(sin((double)a32) - (double)sinl(a));
    worst_f32 = e > worst_f32 ? e : worst_f32;
  }
  printf("note: f32 angles (as HF forms them) at position 1e6 err up to %.3g "
         "in sin; the library's double angles: see 'apply' above\n",
         worst_f32);
}

int main(void) {
  test_apply();
  test_rotate_f32();
  test_roundtrip();
  test_frequencies();
  test_sinusoidal();
  test_qk();
  test_status_rope();
  test_status_qk();
  test_grad_fd();
  note_f32_angles();
  printf("%ld passed, %ld failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
