/*
 * positions_fuzz.c - libFuzzer target for the standalone position functions
 * of attn/positions.h: attn_rope_init_sized, attn_rope_frequencies,
 * attn_rope_apply, attn_rope_apply_qk, attn_sinusoidal_table and
 * attn_t5_bucket.
 *
 * Draws (one operation per input, chosen by its first byte):
 * - a RoPE description hostile in every field: base, style, rotated dims
 *   (0, even, odd, past head_dim, negative), every scaling (none, linear,
 *   NTK, YaRN, Llama 3, values outside the enum) with its parameters 0,
 *   negative, NaN, +-inf, denormal or huge; a wrong struct size now and
 *   then;
 * - apply: x and y [batch, seq, heads, head_dim] with their dtypes and
 *   layouts (padded, heads outermost, every second element, a broadcast or
 *   overlapping axis, a negative or overflowing stride, zero or negative
 *   sizes), positions as an explicit array or an offset plus per-batch
 *   offsets (up to and past +-2^48), inverse, and y in place, apart, or
 *   over x (shifted, another layout or dtype), the positions or the
 *   offsets;
 * - apply_qk: an attention call (heads in groups, padded batches by
 *   kv_lens, packed sequences by cu_seqlens with rows past their end,
 *   position offsets, causal) with one of its rules broken now and then,
 *   q_out and k_out in place, apart, or one over another array;
 * - the sinusoidal table and T5 buckets with hostile sizes, bases,
 *   positions, bucket counts and distances;
 * - values with NaN, +-inf, huge and denormal entries when the input asks.
 *
 * Checks:
 * - no crash or sanitizer report;
 * - a call the harness knows to be invalid (the header's rules, mirrored
 *   below) gets a status other than ATTN_OK (apply_qk: and a message) and
 *   writes nothing; a valid call gets ATTN_OK (where the double arithmetic
 *   of an extreme description may or may not overflow, either);
 * - attn_rope_init_sized writes the header's defaults, or nothing for a
 *   size it does not know;
 * - the frequencies and the rotation against an oracle in long double
 *   coded from the header (inv_freq[i] = base^(-2i/d), then each scaling
 *   as Hugging Face defines it), element by element within bounds derived
 *   below from the library's double and f32 operations; rotated pairs keep
 *   their length times mscale at any position; dims past the rotated ones
 *   are copied; a pair with a non-finite member is non-finite;
 * - apply_qk rotates every row at the position the attention call gives
 *   it, copies packed rows past the last sequence, and gives the same bits
 *   on 1 and 3 threads;
 * - the sinusoidal table against sin/cos in long double;
 * - T5 buckets equal to the reference's f32 arithmetic, written out here
 *   from Hugging Face's T5Attention._relative_position_bucket.
 */
#include "attn.h"
#include "carve.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXHD 256 /* the library's largest head dim */
#define POSMAX ((int64_t)1 << 48)
#define UD (1.0 / 9007199254740992.0) /* 2^-53: double's unit roundoff */
#define U32 (1.0 / 16777216.0)        /* 2^-24 */

static void fail(const char *what, long long a, long long b, double got,
                 double want) {
  fprintf(stderr, "positions_fuzz: %s [%lld, %lld]: got %.17g, want %.17g\n",
          what, a, b, got, want);
  abort();
}

/* ---- carving ---------------------------------------------------------- */

static double pick_d(bytes *in, const double *tab, int n) {
  return tab[take(in, n)];
}

static int64_t pick_i(bytes *in, const int64_t *tab, int n) {
  return tab[take(in, n)];
}

#define NT(t) ((int)(sizeof(t) / sizeof((t)[0])))

/* A double from two bytes: 1 .. ~1e7 on a log scale. */
static double carved_double(bytes *in) {
  const double e = (double)take(in, 256) / 255.0 * 7.0;
  return pow(10.0, e) * (1.0 + (double)take(in, 256) / 256.0);
}

/* ---- values ----------------------------------------------------------- */

typedef struct gen {
  uint64_t s;
  int wild;
} gen;

static const float specials[] = {NAN,    INFINITY, -INFINITY, 3e38f,
                                 -3e38f, 1e30f,    1e-40f,    0.0f,
                                 -0.0f,  65504.f,  1e5f,      -1e-45f};

static float value(gen *g) {
  const float r = frand(&g->s);
  if (g->wild && (g->s >> 59) == 0)
    return specials[(g->s >> 40) % NT(specials)];
  return r * 2.0f;
}

/* ---- tensors ---------------------------------------------------------- */

static const attn_dtype dtypes[3] = {ATTN_DTYPE_F32, ATTN_DTYPE_BF16,
                                     ATTN_DTYPE_F16};

static int is_storage(attn_dtype dt) {
  return dt == ATTN_DTYPE_F32 || dt == ATTN_DTYPE_BF16 || dt == ATTN_DTYPE_F16;
}

static size_t esize(attn_dtype dt) { return is_storage(dt) ? (dt ? 2 : 4) : 1; }

typedef struct layout {
  attn_dtype dt;
  int64_t stride[4];
  int bad;   /* 1: a stride < 0; 2: the extent overflows */
  int alias; /* elements share memory (an output must refuse it) */
} layout;

/* A [B, S, H, D] layout from one byte: contiguous, padded, heads
 * outermost, every second element, one axis broadcast, overlapping heads,
 * a negative or an overflowing stride; the dtype from the bits above
 * (now and then one that is not a storage dtype). */
static layout make_layout(unsigned L, const int64_t sh[4]) {
  layout l;
  memset(&l, 0, sizeof l);
  const unsigned dsel = (L >> 4) % 16;
  l.dt =
      dsel < 15 ? dtypes[dsel % 3] : (attn_dtype)(L & 1 ? ATTN_DTYPE_BOOL : 99);
  const int64_t S = sh[1], H = sh[2], D = sh[3];
  l.stride[3] = 1, l.stride[2] = D, l.stride[1] = H * D,
  l.stride[0] = S * H * D;
  switch (L % 12) {
  case 1:
  case 7:
    l.stride[2] = D + 3, l.stride[1] = H * (D + 3) + 1,
    l.stride[0] = S * l.stride[1] + 5;
    break;
  case 2:
  case 8:
    l.stride[1] = D, l.stride[2] = S * D, l.stride[0] = H * S * D;
    break;
  case 3:
    for (int i = 0; i < 4; i++)
      l.stride[i] *= 2;
    break;
  case 4: /* one axis broadcast */
    l.stride[(L >> 4) % 4] = 0;
    break;
  case 5: /* heads overlap: stride[2] = D - 1 */
    l.stride[2] = D > 1 ? D - 1 : 0;
    break;
  case 6:
    l.stride[(L >> 4) % 4] = -1;
    l.bad = 1;
    break;
  case 9:
    l.stride[(L >> 4) % 4] = (int64_t)1 << 62;
    break;
  default:
    break;
  }
  /* overflow and self-aliasing, as the header defines them */
  int64_t last = 0;
  int ovf = 0;
  for (int i = 0; i < 4 && !l.bad; i++) {
    int64_t t;
    if (sh[i] < 1)
      break;
    if (__builtin_mul_overflow(sh[i] - 1, l.stride[i], &t) ||
        __builtin_add_overflow(last, t, &last))
      ovf = 1;
  }
  int64_t nbytes;
  if (!l.bad && (ovf || __builtin_add_overflow(last, 1, &nbytes) ||
                 __builtin_mul_overflow(nbytes, (int64_t)esize(l.dt), &nbytes)))
    l.bad = 2;
  if (!l.bad) {
    /* two index tuples reach one element: an axis of stride 0 and size >
     * 1, or heads overlapping (stride[2] < D with D > 1 and H > 1) */
    for (int i = 0; i < 4; i++)
      if (l.stride[i] == 0 && sh[i] > 1)
        l.alias = 1;
    if (L % 12 == 5 && H > 1 && D > 1)
      l.alias = 1;
  }
  return l;
}

/* Bytes from the first element to past the last (0: not addressable). */
static size_t layout_bytes(const layout *l, const int64_t sh[4]) {
  if (l->bad)
    return 16;
  for (int i = 0; i < 4; i++)
    if (sh[i] < 1)
      return 16;
  int64_t last = 0;
  for (int i = 0; i < 4; i++) {
    if (sh[i] > 1 && l->stride[i] > ((int64_t)1 << 30))
      return 16; /* the overflowing stride with a 1-byte dtype: refused */
    last += (sh[i] - 1) * l->stride[i];
  }
  return (size_t)(last + 1) * esize(l->dt);
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

static void *at(const attn_tensor *t, int64_t b, int64_t s, int64_t h,
                int64_t x) {
  const int64_t off =
      b * t->stride[0] + s * t->stride[1] + h * t->stride[2] + x * t->stride[3];
  return (char *)t->data + off * (int64_t)esize(t->dtype);
}

static double tget(const attn_tensor *t, int64_t b, int64_t s, int64_t h,
                   int64_t x) {
  const void *p = at(t, b, s, h, x);
  switch (t->dtype) {
  case ATTN_DTYPE_BF16:
    return attn_bf16_to_f32(*(const uint16_t *)p);
  case ATTN_DTYPE_F16:
    return attn_f16_to_f32(*(const uint16_t *)p);
  default:
    return *(const float *)p;
  }
}

static void tset(const attn_tensor *t, int64_t b, int64_t s, int64_t h,
                 int64_t x, float v) {
  void *p = at(t, b, s, h, x);
  switch (t->dtype) {
  case ATTN_DTYPE_BF16:
    *(uint16_t *)p = attn_f32_to_bf16(v);
    break;
  case ATTN_DTYPE_F16:
    *(uint16_t *)p = attn_f32_to_f16(v);
    break;
  default:
    *(float *)p = v;
    break;
  }
}

static void fill_tensor(const attn_tensor *t, gen *g) {
  for (int64_t b = 0; b < t->shape[0]; b++)
    for (int64_t s = 0; s < t->shape[1]; s++)
      for (int64_t h = 0; h < t->shape[2]; h++)
        for (int64_t x = 0; x < t->shape[3]; x++)
          tset(t, b, s, h, x, value(g));
}

/* The value v (an f32) stored in dt and read back. */
static double as_stored(double v, attn_dtype dt) {
  if (dt == ATTN_DTYPE_BF16)
    return attn_bf16_to_f32(attn_f32_to_bf16((float)v));
  if (dt == ATTN_DTYPE_F16)
    return attn_f16_to_f32(attn_f32_to_f16((float)v));
  return (float)v;
}

/* Byte ranges (the library's notion of overlap: first to past the last
 * element). */
typedef struct range {
  const unsigned char *p;
  size_t n;
} range;

static int overlap(range a, range b) {
  return a.n && b.n && a.p < b.p + b.n && b.p < a.p + a.n;
}

static range trange(const attn_tensor *t, const layout *l) {
  range r = {(const unsigned char *)t->data, layout_bytes(l, t->shape)};
  return r;
}

static int same_view(const attn_tensor *a, const attn_tensor *b) {
  if (a->data != b->data || a->dtype != b->dtype)
    return 0;
  for (int i = 0; i < 4; i++)
    if (a->shape[i] != b->shape[i] || a->stride[i] != b->stride[i])
      return 0;
  return 1;
}

/* ---- the RoPE description and its oracle ------------------------------ */

static const double bases[] = {
    10000,           500000, 1e6,      100, 2,     1.0001,
    1 + DBL_EPSILON, 1e300,  DBL_MAX,  1.0, 0.5,   0,
    -10000,          NAN,    INFINITY, -1,  10000, 500000};
static const double factors[] = {
    1,        2, 4,  8,   32,       0.5, 0.25, 1e-300, 1e300, DBL_MIN,
    4.9e-324, 0, -1, NAN, INFINITY, 1,   4,    16,     1e-5,  1e5};
static const double omps[] = {8192,  4096, 2048, 1,   0.5,      1e-300,
                              1e300, 0,    -1,   NAN, INFINITY, 8192};
static const double lows[] = {1, 1, 2, 0.5, 4, 0, -1, NAN, INFINITY, 1e-300};
static const double highs[] = {4,  4,   8,        1,     1.0000001, 0,
                               -1, NAN, INFINITY, 1e300, -INFINITY, 16};
static const double betas_f[] = {32, 32,  16,       1,      64,   0,
                                 -1, NAN, INFINITY, 1e-300, 1e300};
static const double betas_s[] = {1, 1, 2, 32, 0.5, 0, NAN, INFINITY, -1, 1e300};
static const double mscales[] = {0,     0,      0,  1.3, 0.7,      1,
                                 1e300, 1e-300, -1, NAN, INFINITY, -0.0};
static const int64_t head_dims[] = {2,  4,  6,  8,  10, 16,  32,  64,
                                    66, 7,  3,  1,  5,  128, 256, 257,
                                    0,  -2, 12, 24, 48, 80,  96,  18};

static attn_rope carve_rope(bytes *in, int64_t hd) {
  attn_rope r;
  attn_rope_init(&r);
  const unsigned bsel = (unsigned)take(in, 256);
  r.base = bsel < 240 ? bases[bsel % NT(bases)] : carved_double(in);
  const unsigned st = (unsigned)take(in, 16);
  r.style = st < 14 ? (attn_rope_style)(st & 1)
                    : (attn_rope_style)(st == 14 ? 2 : -1);
  const unsigned ds = (unsigned)take(in, 16);
  const int64_t half_even = (hd * 3 / 4) & ~(int64_t)1;
  switch (ds) {
  case 8:
    r.dims = half_even;
    break;
  case 9:
    r.dims = 2;
    break;
  case 10:
    r.dims = hd;
    break;
  case 11:
    r.dims = half_even + 1; /* odd */
    break;
  case 12:
    r.dims = hd + 2;
    break;
  case 13:
    r.dims = -2;
    break;
  case 14:
    r.dims = 4;
    break;
  case 15:
    r.dims = INT64_MAX;
    break;
  default:
    r.dims = 0;
    break;
  }
  const unsigned sc = (unsigned)take(in, 16);
  r.scaling = sc < 15 ? (attn_rope_scaling)(sc % 5)
                      : (attn_rope_scaling)(sc & 1 ? 5 : -1);
  const unsigned fsel = (unsigned)take(in, 256);
  r.factor = fsel < 240 ? factors[fsel % NT(factors)] : carved_double(in);
  r.original_max_position = pick_d(in, omps, NT(omps));
  r.low_freq_factor = pick_d(in, lows, NT(lows));
  r.high_freq_factor = pick_d(in, highs, NT(highs));
  r.beta_fast = pick_d(in, betas_f, NT(betas_f));
  r.beta_slow = pick_d(in, betas_s, NT(betas_s));
  r.mscale = pick_d(in, mscales, NT(mscales));
  return r;
}

/* What the oracle knows of a description for one head dim. */
typedef struct rope_ref {
  int valid; /* 1 valid, 0 invalid, -1 either (the double arithmetic
                of an extreme description may overflow) */
  int64_t hd, d;
  attn_rope_style style;
  long double f[MAXHD / 2]; /* effective frequencies (LINEAR's 1/factor in) */
  double eps[MAXHD / 2];    /* bound on the library's relative error in
                               its double frequency */
  long double m;            /* cos and sin multiplier */
  double meps;
  int loose; /* an intermediate of the library's frequencies is subnormal:
                their relative error is unbounded (only lengths checked) */
} rope_ref;

static int finite_pos(double x) { return isfinite(x) && x > 0.0; }

#define TWO_PI_L 6.283185307179586476925286766559L

/* The description's validity (the header's rules; a scaling's own fields
 * only when it reads them) and, when valid, its frequencies.
 *
 * The library's frequencies are doubles; the oracle's are long double
 * (64-bit significand: its own errors, ~2^-63 relative, are below the
 * slack of each bound). Relative error bounds of the library's double
 * frequency f (u = 2^-53):
 * - plain base^(-t), t = 2i/d: t rounded once (|dt| <= u t, so f is off by
 *   a factor exp(u t ln base)), pow within 1 ulp (2u), plus u slack:
 *   eps = 3u + u t |ln base|;
 * - NTK: base' = base * pow(factor, r), r = d / (d - 2) rounded (u r
 *   |ln factor| in the power), pow 2u, the product u: base' off by
 *   eb = 4u + u r |ln factor| relative, which moves f by t eb; then as
 *   plain with ln base';
 * - LINEAR: 1/factor and the product: + 2u;
 * - YaRN: inter = extra / factor (+u); ramp = (i - low) / (high - low)
 *   with low, high integers (floor/ceil, reproduced exactly below) has
 *   relative error u; the blend inter * ramp + extra * (1 - ramp) of
 *   positive terms: the first term's error eps + 3u, the second's through
 *   1 - ramp (absolute error <= u ramp + u (1 - ramp)); relative to the
 *   sum that is <= u min(max(1, factor), |high - low| + 1) (1 - ramp >=
 *   1/|high - low| for ramp < 1; ramp / (ramp / factor + 1 - ramp) <=
 *   factor), plus the sum's rounding;
 * - Llama 3: the bands' edges compare wavelengths 2 pi / f with
 *   omp / lo and omp / hi (errors eps + 3u); the function is continuous
 *   there, so a misclassified band moves f by at most f |1 - 1/factor|
 *   times the error of smooth, ds = hi / (hi - lo) (eps + 6u) + 4u,
 *   relative to f min(1, 1/factor): eps + 6u + (max(factor, 1/factor) - 1)
 *   ds. */
static void rope_oracle(const attn_rope *r, int64_t hd, rope_ref *o) {
  memset(o, 0, sizeof *o);
  o->hd = hd;
  o->style = r->style;
  o->m = 1.0L;
  o->meps = 0.0;
  if (hd < 1 || hd > MAXHD ||
      (r->style != ATTN_ROPE_HALF && r->style != ATTN_ROPE_INTERLEAVED) ||
      !isfinite(r->base) || !(r->base > 1.0) || !finite_pos(r->factor) ||
      r->dims < 0 || r->dims > hd)
    return;
  const int64_t d = r->dims ? r->dims : hd;
  if (d % 2)
    return;
  o->d = d;
  const double F = r->factor;
  switch (r->scaling) {
  case ATTN_ROPE_SCALING_NONE:
  case ATTN_ROPE_SCALING_LINEAR:
    break;
  case ATTN_ROPE_SCALING_NTK:
    if (d < 4) /* factor^(d / (d - 2)): d = 2 divides by zero */
      return;
    break;
  case ATTN_ROPE_SCALING_YARN:
    if (!finite_pos(r->original_max_position) || !finite_pos(r->beta_fast) ||
        !finite_pos(r->beta_slow) || !isfinite(r->mscale) || r->mscale < 0.0)
      return;
    break;
  case ATTN_ROPE_SCALING_LLAMA3:
    if (!finite_pos(r->original_max_position) ||
        !finite_pos(r->low_freq_factor) || !isfinite(r->high_freq_factor) ||
        !(r->high_freq_factor > r->low_freq_factor))
      return;
    break;
  default:
    return;
  }
  o->valid = 1;
  const long double lnb = logl((long double)r->base);
  const double lnF = fabs(log(F));
  long double lnbase = lnb; /* of the base the powers take */
  double eb = 0.0;          /* NTK: relative error of the library's base' */
  int amb = 0;
  if (r->scaling == ATTN_ROPE_SCALING_NTK) {
    const long double rr = (long double)d / (long double)(d - 2);
    lnbase = lnb + rr * logl((long double)F);
    eb = 4 * UD + UD * (double)rr * lnF;
    /* base' past DBL_MAX (ln 709.78...) is refused; within its error of
     * the edge, either; subnormal or 0 (its error unbounded, its powers
     * infinite), either */
    const double edge = (double)(lnbase - 709.782712893383996843L);
    if (edge > 2 * eb + 1e-15) {
      o->valid = 0;
      return;
    }
    if (edge >= -(2 * eb + 1e-15) || lnbase < -708.0L)
      amb = 1;
    /* factor^r or base' below DBL_MIN (e^-708.39): subnormal or 0 (then
     * base' 0 and its powers inf: refused), either */
    if (rr * logl((long double)F) < -708.3L || lnbase < -708.3L)
      o->loose = amb = 1;
  }
  const long double twopi = TWO_PI_L;
  for (int64_t i = 0; i < d / 2; i++) {
    const long double t = (long double)(2 * i) / (long double)d;
    long double f = expl(-t * lnbase);
    double eps =
        3 * UD + UD * (double)t * fabs((double)lnbase) + (double)t * eb;
    switch (r->scaling) {
    case ATTN_ROPE_SCALING_LINEAR:
      f /= (long double)F;
      eps += 2 * UD;
      break;
    case ATTN_ROPE_SCALING_YARN: {
      /* low and high as the library forms them (HF find_correction_range):
       * integers from floor and ceil, so reproduced in the same double
       * operations, not approximated */
      const double tp = 6.283185307179586, dd = (double)d;
      double low =
          floor(dd * log(r->original_max_position / (r->beta_fast * tp)) /
                (2.0 * log(r->base)));
      double high =
          ceil(dd * log(r->original_max_position / (r->beta_slow * tp)) /
               (2.0 * log(r->base)));
      low = fmax(low, 0.0);
      high = fmin(high, dd - 1.0);
      if (low == high)
        high += 0.001;
      long double ramp =
          ((long double)i - low) / ((long double)high - (long double)low);
      ramp = fminl(fmaxl(ramp, 0.0L), 1.0L);
      if (f / (long double)F > 0x1p1000L)
        amb = 1; /* inter = extra / factor overflows double */
      f = f / (long double)F * ramp + f * (1.0L - ramp);
      const double hl = fabs(high - low) + 1.0;
      eps += UD * (6.0 + (F > 1.0 ? fmin(F, isfinite(hl) ? hl : F) : 1.0));
      break;
    }
    case ATTN_ROPE_SCALING_LLAMA3: {
      const long double omp = r->original_max_position;
      const long double lo = r->low_freq_factor, hi = r->high_freq_factor;
      const long double wl = twopi / f;
      if (wl > omp / lo) {
        f /= (long double)F;
      } else if (wl >= omp / hi) {
        const long double smooth = (omp / wl - lo) / (hi - lo);
        f = (1.0L - smooth) * f / (long double)F + smooth * f;
      }
      const double ds = (double)(hi / (hi - lo)) * (eps + 6 * UD) + 4 * UD;
      eps += 6 * UD + (fmax(F, 1.0 / F) - 1.0) * ds;
      break;
    }
    default:
      break;
    }
    /* positions (|pos| < 2^50) times a frequency must not overflow: the
     * library refuses frequencies above DBL_MAX / 2^50 (~2^974) */
    if (f > 0x1p974L * (1.0L + 1e-6L)) {
      o->valid = 0;
      return;
    }
    if (!(f < 0x1p974L * (1.0L - 1e-6L)))
      amb = 1;
    o->f[i] = f;
    o->eps[i] = eps;
  }
  if (r->scaling == ATTN_ROPE_SCALING_YARN) {
    o->m = r->mscale > 0.0 ? (long double)r->mscale
           : F <= 1.0      ? 1.0L
                           : 0.1L * logl((long double)F) + 1.0L;
    o->meps = r->mscale > 0.0 ? 0.0 : 4 * UD; /* log, *, + in double */
  }
  if (amb)
    o->valid = -1;
}

/* ---- output bounds ---------------------------------------------------- */

static double out_unit(attn_dtype dt) {
  return dt == ATTN_DTYPE_BF16  ? ldexp(1, -8)
         : dt == ATTN_DTYPE_F16 ? ldexp(1, -11)
                                : 0.0;
}

static double out_max(attn_dtype dt) {
  return dt == ATTN_DTYPE_F16 ? 65504.0 : FLT_MAX;
}

/* Half the smallest subnormal step of f32 and of the output dtype: the
 * absolute part of the two roundings. */
static double out_floor(attn_dtype dt) {
  return ldexp(1, -150) + (dt == ATTN_DTYPE_F16    ? ldexp(1, -25)
                           : dt == ATTN_DTYPE_BF16 ? ldexp(1, -134)
                                                   : 0.0);
}

/* got (read from a tensor of dtype dt) against want, tol being the error
 * bound before the library's final roundings: double to f32, then f32 to
 * dt (each relative u, plus the subnormal floors). */
static int close_to(double got, double want, double tol, attn_dtype dt) {
  const double u = U32 + out_unit(dt) * (1.0 + U32);
  if (isnan(want))
    return isnan(got);
  if (isinf(want))
    return got == want;
  const double t = tol + u * (fabs(want) + tol) + out_floor(dt);
  if (fabs(want) + t > out_max(dt)) /* may round to inf */
    return (isinf(got) && ((got > 0) == (want > 0) || fabs(want) < t)) ||
           fabs(got - want) <= t;
  return fabs(got - want) <= t;
}

/* One row of head_dim values xin (as stored) rotated at pos into the
 * values read from the output row yout, checked element by element.
 *
 * The library: angle a = pos * f in double, reduced modulo 2 pi (within
 * 2^-48 + |a| 2^-100 rad for its 3-term 2 pi; rope.h), cos and sin in
 * double, times m, the pair's products and sum in double (about 8u of
 * m P, P = |x_a| + |x_b|, for cos/sin, the products and the sum; 10u
 * taken), then one rounding to f32 and one to the output dtype (close_to).
 * Its frequency is off by eps f (rope_oracle), so its angle by |pos| f eps;
 * the oracle's long double angle by |a| 2^-62. A rotation moves each
 * element by at most m P per radian. mscale off by meps relative. */
static void check_row(const rope_ref *o, const double *xin, const double *yout,
                      int64_t pos, int inverse, attn_dtype odt,
                      long long where) {
  const int64_t hd = o->hd, d = o->d, half = d / 2;
  for (int64_t i = d; i < hd; i++) {
    const double want = as_stored(xin[i], odt);
    if (!(yout[i] == want || (isnan(yout[i]) && isnan(want))))
      fail("apply: an unrotated dim changed", where, i, yout[i], want);
  }
  const long double m = o->m;
  for (int64_t i = 0; i < half; i++) {
    const int64_t a = o->style == ATTN_ROPE_HALF ? i : 2 * i;
    const int64_t b = o->style == ATTN_ROPE_HALF ? i + half : 2 * i + 1;
    const double xa = xin[a], xb = xin[b], ga = yout[a], gb = yout[b];
    if (!isfinite(xa) || !isfinite(xb)) {
      if (isfinite(ga) || isfinite(gb))
        fail("apply: a pair with a non-finite member came out finite", where, i,
             isfinite(ga) ? ga : gb, NAN);
      continue;
    }
    const long double ang = (long double)pos * o->f[i];
    const long double c = cosl(ang) * m,
                      s = (inverse ? -sinl(ang) : sinl(ang)) * m;
    const double wa = (double)(xa * c - xb * s), wb = (double)(xb * c + xa * s);
    const double A = fabs((double)ang);
    /* a relative error of 1 or more (or inf: an ill-conditioned band edge)
     * says nothing beyond |angle error| <= |angle| */
    const double ep = o->eps[i] < 1.0 ? o->eps[i] : 1.0;
    const double dth = A * ep + ldexp(1, -48) + A * 0x1p-100 + A * 0x1p-62 +
                       (double)llabs((long long)pos) * 0x1p-1070;
    const double P = fabs(xa) + fabs(xb);
    const double mp = (double)m * P;
    if (!isfinite(mp) || mp > 0x1p1000)
      continue; /* m x overflows the library's double products */
    const double tol = mp * (dth + 10 * UD + o->meps);
    if (!o->loose &&
        (!close_to(ga, wa, tol, odt) || !close_to(gb, wb, tol, odt))) {
      fprintf(stderr,
              "positions_fuzz: pos %lld pair %lld (x %.9g %.9g) "
              "freq %.17Lg m %.9Lg tol %.3g\n",
              (long long)pos, (long long)i, xa, xb, o->f[i], m, tol);
      fail(close_to(ga, wa, tol, odt) ? "apply: rotated element b"
                                      : "apply: rotated element a",
           where, i, close_to(ga, wa, tol, odt) ? gb : ga,
           close_to(ga, wa, tol, odt) ? wb : wa);
    }
    /* the pair's length is m times the input's at any angle: |y| - m|x|
     * within the double arithmetic (8u m P per element, 10u taken, and
     * meps), the two output roundings of each element, and this check's
     * own sums (3u) */
    const double ny = hypot(ga, gb), nx = hypot(xa, xb);
    if (isfinite(ny) && isfinite(mp) && mp < out_max(odt) / 4) {
      const double uo = U32 + out_unit(odt) * (1.0 + U32);
      const double e = 1.4142135623730951 *
                           (mp * (10 * UD + o->meps) +
                            uo * (fabs(ga) + fabs(gb)) + 2 * out_floor(odt)) +
                       4 * UD * (ny + (double)m * nx);
      if (!(fabs(ny - (double)m * nx) <= e))
        fail("apply: a rotated pair's length", where, i, ny, (double)m * nx);
    }
  }
}

/* attn_rope_frequencies against the oracle: each the library's double
 * frequency (eps) rounded to f32 (2^-24 relative, 2^-150 absolute). */
static void check_frequencies(const attn_rope *r, const rope_ref *o,
                              int null_out) {
  const int64_t n = o->d > 0 ? o->d / 2 : 0;
  const size_t cnt = (size_t)(n > 0 ? n : 1);
  float *buf = malloc(cnt * sizeof *buf);
  float ms = -7.0f;
  if (!buf)
    abort();
  memset(buf, 0xA5, cnt * sizeof *buf);
  const unsigned char *keep = (const unsigned char *)buf;
  unsigned char before[sizeof(float) * MAXHD];
  memcpy(before, keep, cnt * sizeof *buf);
  const attn_status st =
      attn_rope_frequencies(r, o->hd, null_out ? NULL : buf, &ms);
  if (null_out || o->valid == 0) {
    if (st == ATTN_OK)
      fail("frequencies accepted an invalid call", o->hd, r->scaling, 0, 0);
    if (memcmp(before, buf, cnt * sizeof *buf) != 0 || ms != -7.0f)
      fail("frequencies: a refused call wrote", o->hd, st, 0, 0);
    free(buf);
    return;
  }
  if (st != ATTN_OK) {
    if (o->valid == 1)
      fail("frequencies refused a valid call", o->hd, st, 0, 0);
    free(buf);
    return;
  }
  for (int64_t i = 0; i < n && !o->loose; i++) {
    const double want = (double)o->f[i];
    const double ep = o->eps[i] < 1.0 ? o->eps[i] : 1.0;
    const double tol = want * (ep + U32 * (1 + ep)) + ldexp(1, -150);
    const double got = buf[i];
    const int ok = want > FLT_MAX * (1.0 - U32)
                       ? (isinf(got) || fabs(got - want) <= tol)
                       : fabs(got - want) <= tol;
    if (!ok)
      fail("frequency", o->hd, i, got, want);
  }
  const double wm = (double)o->m;
  if (!(wm > FLT_MAX * (1.0 - U32)
            ? isinf(ms) || fabs(ms - wm) <= wm * U32
            : fabs(ms - wm) <= wm * (o->meps + U32) + 0x1p-150))
    fail("mscale", o->hd, 0, ms, wm);
  free(buf);
}

/* ---- memory: separate allocations or one arena ------------------------ */

#define MAXR 12

typedef struct mem {
  size_t bytes[MAXR];
  unsigned char *p[MAXR];
  unsigned char *arena;
  size_t arena_bytes;
  int n;
} mem;

/* Places n arrays: separately (victim < 0), or in one arena with the
 * victim's start moved into the target's bytes at shift. */
static void place(mem *m, int victim, int target, unsigned shift) {
  if (victim < 0 || target < 0 || victim == target || !m->bytes[victim] ||
      !m->bytes[target]) {
    for (int r = 0; r < m->n; r++) {
      m->p[r] = m->bytes[r] ? calloc(1, m->bytes[r]) : NULL;
      if (m->bytes[r] && !m->p[r])
        abort();
    }
    return;
  }
  size_t off[MAXR] = {0}, o = 0;
  for (int r = 0; r < m->n; r++) {
    off[r] = o;
    o += (m->bytes[r] + 63) / 64 * 64;
  }
  off[victim] = off[target] + (shift % m->bytes[target]) / 8 * 8;
  size_t total = o;
  if (off[victim] + m->bytes[victim] > total)
    total = off[victim] + m->bytes[victim];
  m->arena_bytes = total + 64;
  m->arena = calloc(1, m->arena_bytes);
  if (!m->arena)
    abort();
  for (int r = 0; r < m->n; r++)
    m->p[r] = m->bytes[r] ? m->arena + off[r] : NULL;
}

static void release(mem *m) {
  if (!m->arena)
    for (int r = 0; r < m->n; r++)
      free(m->p[r]);
  free(m->arena);
}

typedef struct snap {
  unsigned char *p;
  size_t n;
} snap;

static snap take_snap(const mem *m) {
  snap s = {NULL, 0};
  if (m->arena)
    s.n = m->arena_bytes;
  else
    for (int r = 0; r < m->n; r++)
      s.n += m->bytes[r];
  s.p = malloc(s.n ? s.n : 1);
  if (!s.p)
    abort();
  if (m->arena) {
    memcpy(s.p, m->arena, s.n);
  } else {
    size_t o = 0;
    for (int r = 0; r < m->n; r++) {
      if (m->bytes[r])
        memcpy(s.p + o, m->p[r], m->bytes[r]);
      o += m->bytes[r];
    }
  }
  return s;
}

static void same_snap(snap a, snap b, const char *what) {
  if (a.n != b.n || memcmp(a.p, b.p, a.n) != 0)
    fail(what, 0, 0, 0, 0);
  free(a.p);
  free(b.p);
}

/* ---- positions -------------------------------------------------------- */

static const int64_t offsets[] = {
    0,         0,         3,          -5,         1000000,
    -POSMAX,   POSMAX,    POSMAX - 7, POSMAX + 1, -POSMAX - 1,
    INT64_MAX, INT64_MIN, 1 << 20,    -(1 << 30), (int64_t)1 << 40,
    17};

static int pos_ok(int64_t x) { return x >= -POSMAX && x <= POSMAX; }

/* ---- attn_rope_init_sized --------------------------------------------- */

static void check_init(unsigned sel) {
  unsigned char buf[sizeof(attn_rope) + 64];
  memset(buf, 0xA5, sizeof buf);
  const size_t sizes[4] = {sizeof(attn_rope), sizeof(attn_rope) - 8,
                           sizeof(attn_rope) + 8, 0};
  const size_t sz = sizes[sel % 4];
  attn_rope_init_sized((attn_rope *)(void *)buf, sz);
  if (sz != sizeof(attn_rope)) {
    for (size_t i = 0; i < sizeof buf; i++)
      if (buf[i] != 0xA5)
        fail("rope_init_sized wrote with an unknown size", (long long)sz,
             (long long)i, buf[i], 0xA5);
    return;
  }
  attn_rope r;
  memcpy(&r, buf, sizeof r);
  if (r.base != 10000.0 || r.style != ATTN_ROPE_HALF || r.dims != 0 ||
      r.scaling != ATTN_ROPE_SCALING_NONE || r.factor != 1.0 ||
      r.original_max_position != 8192.0 || r.low_freq_factor != 1.0 ||
      r.high_freq_factor != 4.0 || r.beta_fast != 32.0 || r.beta_slow != 1.0 ||
      r.mscale != 0.0)
    fail("rope_init: not the header's defaults", 0, 0, r.base, 10000.0);
  for (size_t i = sizeof(attn_rope); i < sizeof buf; i++)
    if (buf[i] != 0xA5)
      fail("rope_init wrote past the struct", 0, (long long)i, buf[i], 0xA5);
}

/* ---- attn_rope_apply -------------------------------------------------- */

enum { A_X, A_Y, A_POS, A_POFF, A_N };

static void run_apply(bytes *in, gen *g) {
  const int64_t hd = pick_i(in, head_dims, NT(head_dims));
  attn_rope r = carve_rope(in, hd);
  const unsigned flags = (unsigned)take(in, 256);
  int64_t sh[4];
  sh[0] = 1 + take(in, 3);
  sh[1] = 1 + take(in, 9);
  sh[2] = 1 + take(in, 4);
  sh[3] = hd;
  const unsigned shape_bad = (unsigned)take(in, 32);
  int64_t shy[4] = {sh[0], sh[1], sh[2], sh[3]};
  if (shape_bad == 1)
    sh[1] = 0, shy[1] = 0;
  else if (shape_bad == 2)
    sh[2] = -1, shy[2] = -1;
  else if (shape_bad == 3)
    shy[1] = sh[1] + 1;
  const layout lx = make_layout((unsigned)take(in, 256), sh);
  layout ly = make_layout((unsigned)take(in, 256), shy);
  const int pmode = (int)take(in, 3); /* 0 offset, 1 array, 2 offsets */
  const int64_t off0 = pick_i(in, offsets, NT(offsets));
  const unsigned osel = (unsigned)take(in, 256);
  const int inverse = (flags & 1) != 0;
  /* where y goes: 0 apart, 1 in place (x's view), 2 over another array */
  const int ymode = flags & 2 ? 1 : flags & 4 ? 2 : 0;
  const int target = (int)take(in, 3); /* x, positions, offsets */
  const unsigned shift = (unsigned)(take(in, 256) << 8 | take(in, 256));
  const int size_bad = (flags & 0xF0) == 0xF0; /* a wrong struct size */
  const int rope_null = (flags & 0xF8) == 0xE8;
  g->wild = (flags & 8) != 0;

  rope_ref o;
  rope_oracle(&r, hd, &o);
  check_frequencies(&r, &o, (flags & 0x38) == 0x38);

  mem m;
  memset(&m, 0, sizeof m);
  m.n = A_N;
  int64_t nrows = 0;
  if (sh[0] > 0 && sh[1] > 0)
    nrows = sh[0] * sh[1];
  m.bytes[A_X] = layout_bytes(&lx, sh);
  m.bytes[A_Y] = ymode == 1 ? 0 : layout_bytes(&ly, shy);
  m.bytes[A_POS] = pmode == 1 ? (size_t)(nrows > 0 ? nrows : 1) * 8 : 0;
  m.bytes[A_POFF] = pmode == 2 ? (size_t)(sh[0] > 0 ? sh[0] : 1) * 8 : 0;
  const int tgt = target == 0 ? A_X : target == 1 ? A_POS : A_POFF;
  place(&m, ymode == 2 ? A_Y : -1, tgt, shift);

  attn_tensor x = view(m.p[A_X], &lx, sh);
  attn_tensor y;
  if (ymode == 1) {
    y = x;
    ly = lx;
    memcpy(shy, sh, sizeof shy);
  } else {
    y = view(m.p[A_Y], &ly, shy);
  }
  if (flags == 0x40) /* a NULL y, now and then */
    y.data = NULL;
  const int xok =
      !lx.bad && is_storage(lx.dt) && sh[1] > 0 && sh[2] > 0 && sh[3] > 0;
  if (xok)
    fill_tensor(&x, g);
  int64_t *pos = (int64_t *)m.p[A_POS], *poffs = (int64_t *)m.p[A_POFF];
  for (int64_t i = 0; pos && i < nrows; i++) {
    const unsigned k = (osel + (unsigned)i * 7u) % 64u;
    pos[i] = k < 48   ? (int64_t)(k * 37) - 300 + off0 % 100000
             : k < 60 ? (int64_t)((uint64_t)off0 + k) /* wraps */
                      : offsets[(k + osel) % NT(offsets)];
  }
  for (int64_t b = 0; poffs && b < sh[0]; b++)
    poffs[b] = osel % 4 == 3 ? offsets[(osel / 4 + (unsigned)b) % NT(offsets)]
                             : (int64_t)((osel % 7) * 11) - 20 + b;
  int64_t pos_offset = pmode == 1 ? offsets[osel % NT(offsets)] : off0;

  /* validity, from what is stored now */
  int valid = o.valid;
  if (size_bad || rope_null)
    valid = 0;
  if (!xok || !y.data || ly.bad || !is_storage(ly.dt))
    valid = 0;
  for (int i = 0; i < 4; i++)
    if (sh[i] != shy[i])
      valid = 0;
  if (valid && ly.alias)
    valid = 0;
  range rx = trange(&x, &lx), ry = trange(&y, &ly);
  if (valid && !same_view(&x, &y) && overlap(rx, ry))
    valid = 0;
  if (valid && pos) {
    const range rp = {(const unsigned char *)pos, (size_t)nrows * 8};
    if (overlap(rp, ry))
      valid = 0;
    for (int64_t i = 0; valid && i < nrows; i++)
      if (!pos_ok(pos[i]))
        valid = 0;
  } else if (valid) {
    if (!pos_ok(pos_offset))
      valid = 0;
    if (poffs) {
      const range rp = {(const unsigned char *)poffs, (size_t)sh[0] * 8};
      if (overlap(rp, ry))
        valid = 0;
    }
    for (int64_t b = 0; valid && b < (poffs ? sh[0] : 1); b++) {
      const int64_t ob = poffs ? poffs[b] : 0;
      /* pos_offset is within +-2^48 here: no overflow unless ob is not */
      if (!pos_ok(ob) || !pos_ok(pos_offset + ob) ||
          !pos_ok(pos_offset + ob + sh[1] - 1))
        valid = 0;
    }
  }

  /* the inputs as stored, before the call */
  const int64_t B = sh[0], S = sh[1], H = sh[2];
  double *xin = NULL;
  if (valid)
    xin = malloc((size_t)(B * S * H * hd) * sizeof *xin);
  for (int64_t b = 0; xin && b < B; b++)
    for (int64_t s = 0; s < S; s++)
      for (int64_t h = 0; h < H; h++)
        for (int64_t i = 0; i < hd; i++)
          xin[((b * S + s) * H + h) * hd + i] = tget(&x, b, s, h, i);
  if (valid && ymode == 0) /* an output apart: every element is written */
    memset(m.p[A_Y], 0x7F, m.bytes[A_Y]);
  const snap before = take_snap(&m);
  const attn_status st =
      size_bad ? attn_rope_apply_sized(&r, sizeof r + 8 * (1 + (flags & 1)), x,
                                       y, pos, pos_offset, poffs, inverse)
               : attn_rope_apply(rope_null ? NULL : &r, x, y, pos, pos_offset,
                                 poffs, inverse);
  if (!valid) {
    if (st == ATTN_OK) {
      fprintf(stderr,
              "positions_fuzz: rope base %g style %d dims %lld scaling %d "
              "factor %g omp %g lo %g hi %g bf %g bs %g ms %g (oracle %d); "
              "x %d/%d y %d/%d/%d, ymode %d, pmode %d\n",
              r.base, (int)r.style, (long long)r.dims, (int)r.scaling, r.factor,
              r.original_max_position, r.low_freq_factor, r.high_freq_factor,
              r.beta_fast, r.beta_slow, r.mscale, o.valid, (int)lx.dt, lx.bad,
              (int)ly.dt, ly.bad, ly.alias, ymode, pmode);
      fail("apply accepted an invalid call", hd, (long long)r.scaling, 0, 0);
    }
    same_snap(before, take_snap(&m), "apply: a refused call wrote memory");
    release(&m);
    return;
  }
  free(before.p);
  if (st != ATTN_OK) {
    if (valid == 1)
      fail("apply refused a valid call", hd, st, 0, 0);
    free(xin);
    release(&m);
    return;
  }
  double yout[MAXHD];
  for (int64_t b = 0; b < B; b++)
    for (int64_t s = 0; s < S; s++) {
      const int64_t p =
          pos ? pos[b * S + s] : pos_offset + (poffs ? poffs[b] : 0) + s;
      for (int64_t h = 0; h < H; h++) {
        for (int64_t i = 0; i < hd; i++)
          yout[i] = tget(&y, b, s, h, i);
        check_row(&o, xin + ((b * S + s) * H + h) * hd, yout, p, inverse, ly.dt,
                  (long long)((b * S + s) * H + h));
      }
    }
  free(xin);
  release(&m);
}

/* ---- attn_rope_apply_qk ----------------------------------------------- */

enum {
  Q_Q,
  Q_K,
  Q_V,
  Q_O,
  Q_KVL,
  Q_CUQ,
  Q_CUK,
  Q_QOFF,
  Q_KOFF,
  Q_QOUT,
  Q_KOUT,
  Q_N
};

static void run_qk(bytes *in, gen *g) {
  int64_t hd = pick_i(in, head_dims, NT(head_dims));
  if (hd < 1 || hd > MAXHD)
    hd = 8; /* an attention call needs a valid head dim */
  attn_rope r = carve_rope(in, hd);
  const unsigned flags = (unsigned)take(in, 256);
  const unsigned flags2 = (unsigned)take(in, 256);
  const int varlen = (flags & 1) != 0;
  const int64_t nb = 1 + take(in, 3); /* sequences */
  const int64_t hk = 1 + take(in, 3), grp = 1 + take(in, 3);
  int64_t hq = hk * grp;
  const int64_t dv = 1 + take(in, 4);
  int64_t sq = 1 + take(in, 6), sk = 1 + take(in, 8);
  int32_t cuq[5] = {0}, cuk[5] = {0}, kvl[4] = {0};
  if (varlen) {
    for (int64_t b = 0; b < nb; b++) {
      cuq[b + 1] = cuq[b] + (int32_t)take(in, 5);
      cuk[b + 1] = cuk[b] + (int32_t)take(in, 6);
    }
    sq = cuq[nb] + take(in, 3); /* rows past the last sequence */
    sk = cuk[nb] + take(in, 3);
    if (sq < 1)
      sq = 1;
    if (sk < 1)
      sk = 1;
  }
  const int use_kvl = (flags & 2) != 0;
  for (int64_t b = 0; b < nb; b++) {
    const int64_t cap = varlen ? cuk[b + 1] - cuk[b] : sk;
    kvl[b] = (int32_t)(take(in, 256) % (unsigned)(cap + 1));
  }
  const int use_qoffs = (flags & 4) != 0, use_koffs = (flags & 8) != 0;
  const int64_t qoff = pick_i(in, offsets, NT(offsets));
  const int64_t koff = pick_i(in, offsets, NT(offsets));
  int64_t qoffs[4], koffs[4];
  const unsigned osel = (unsigned)take(in, 256);
  for (int64_t b = 0; b < 4; b++) {
    qoffs[b] = osel % 5 == 4 ? offsets[(osel / 5 + (unsigned)b) % NT(offsets)]
                             : (int64_t)(osel % 13) - 6 + b;
    koffs[b] = osel % 7 == 6 ? offsets[(osel / 7 + (unsigned)b) % NT(offsets)]
                             : (int64_t)(osel % 11) - 2 * b;
  }
  /* one rule of the attention call broken, now and then */
  const int broken = (int)take(in, 16);
  int64_t hdk = hd;
  if (broken == 1 && hk > 1 && grp == 1)
    hq = hk + 1; /* heads_q not a multiple of heads_kv */
  if (broken == 2)
    hdk = hd + 2 <= MAXHD ? hd + 2 : hd - 2;
  if (broken == 3)
    kvl[nb - 1] = (int32_t)(varlen ? cuk[nb] - cuk[nb - 1] + 1 : sk + 1);
  if (broken == 4 && varlen)
    cuq[1] = cuq[1] + 40; /* past the rows / not non-decreasing */
  const int inverse = (flags & 16) != 0;
  const unsigned qsel = (unsigned)take(in, 256), ksel = (unsigned)take(in, 256);
  const unsigned qosel = (unsigned)take(in, 256),
                 kosel = (unsigned)take(in, 256);
  /* q_out/k_out: 0 apart, 1 in place, 2 over another array */
  const int qmode = (int)(flags2 % 3), kmode = (int)(flags2 / 3 % 3);
  const int tsel = (int)take(in, 16);
  const unsigned shift = (unsigned)(take(in, 256) << 8 | take(in, 256));
  g->wild = (flags & 32) != 0;
  const int causal = (int)((flags >> 6) % 3);

  const int64_t B = varlen ? 1 : nb;
  const int64_t shq[4] = {B, sq, hq, hd}, shk[4] = {B, sk, hk, hdk},
                shv[4] = {B, sk, hk, dv}, sho[4] = {B, sq, hq, dv};
  const layout lq = make_layout(qsel, shq), lk = make_layout(ksel, shk);
  layout lqo = make_layout(qosel, shq), lko = make_layout(kosel, shk);
  layout lv, lo;
  memset(&lv, 0, sizeof lv);
  lv.dt = ATTN_DTYPE_F32;
  lv.stride[3] = 1, lv.stride[2] = dv, lv.stride[1] = hk * dv,
  lv.stride[0] = sk * hk * dv;
  lo = lv;
  lo.stride[2] = dv, lo.stride[1] = hq * dv, lo.stride[0] = sq * hq * dv;

  mem m;
  memset(&m, 0, sizeof m);
  m.n = Q_N;
  m.bytes[Q_Q] = layout_bytes(&lq, shq);
  m.bytes[Q_K] = layout_bytes(&lk, shk);
  m.bytes[Q_V] = layout_bytes(&lv, shv);
  m.bytes[Q_O] = layout_bytes(&lo, sho);
  m.bytes[Q_KVL] = use_kvl ? (size_t)nb * 4 : 0;
  m.bytes[Q_CUQ] = varlen ? (size_t)(nb + 1) * 4 : 0;
  m.bytes[Q_CUK] = varlen ? (size_t)(nb + 1) * 4 : 0;
  m.bytes[Q_QOFF] = use_qoffs ? (size_t)nb * 8 : 0;
  m.bytes[Q_KOFF] = use_koffs ? (size_t)nb * 8 : 0;
  m.bytes[Q_QOUT] = qmode == 1 ? 0 : layout_bytes(&lqo, shq);
  m.bytes[Q_KOUT] = kmode == 1 ? 0 : layout_bytes(&lko, shk);
  int victim = -1;
  if (qmode == 2)
    victim = Q_QOUT;
  else if (kmode == 2)
    victim = Q_KOUT;
  place(&m, victim, victim < 0 ? -1 : (victim + 1 + tsel) % Q_N, shift);

  /* fill the inputs (aliased arrays: the last write wins; the oracle and
   * the validity read what is stored) */
  attn_params p;
  attn_params_init(&p);
  p.q = view(m.p[Q_Q], &lq, shq);
  p.k = view(m.p[Q_K], &lk, shk);
  p.v = view(m.p[Q_V], &lv, shv);
  p.o = view(m.p[Q_O], &lo, sho);
  p.causal = (attn_causal)causal;
  const int qfill = !lq.bad && is_storage(lq.dt),
            kfill = !lk.bad && is_storage(lk.dt);
  if (qfill)
    fill_tensor(&p.q, g);
  if (kfill)
    fill_tensor(&p.k, g);
  if (m.p[Q_V])
    fill_tensor(&p.v, g);
  if (use_kvl) {
    memcpy(m.p[Q_KVL], kvl, (size_t)nb * 4);
    p.kv_lens = (const int32_t *)m.p[Q_KVL];
  }
  if (varlen) {
    memcpy(m.p[Q_CUQ], cuq, (size_t)(nb + 1) * 4);
    memcpy(m.p[Q_CUK], cuk, (size_t)(nb + 1) * 4);
    p.cu_seqlens_q = (const int32_t *)m.p[Q_CUQ];
    p.cu_seqlens_k = (const int32_t *)m.p[Q_CUK];
    p.varlen_batch = nb;
  }
  if (use_qoffs) {
    memcpy(m.p[Q_QOFF], qoffs, (size_t)nb * 8);
    p.q_pos_offsets = (const int64_t *)m.p[Q_QOFF];
  }
  if (use_koffs) {
    memcpy(m.p[Q_KOFF], koffs, (size_t)nb * 8);
    p.k_pos_offsets = (const int64_t *)m.p[Q_KOFF];
  }
  p.q_pos_offset = qoff;
  p.k_pos_offset = koff;
  char msg[256];
  msg[0] = '\0';
  p.error_message = msg;
  p.error_message_size = sizeof msg;
  attn_tensor qo = qmode == 1 ? p.q : view(m.p[Q_QOUT], &lqo, shq);
  attn_tensor ko = kmode == 1 ? p.k : view(m.p[Q_KOUT], &lko, shk);
  if (qmode == 1)
    lqo = lq;
  if (kmode == 1)
    lko = lk;

  /* validity: the attention call (the rules broken above, read back from
   * memory), the description, then the outputs */
  rope_ref o;
  rope_oracle(&r, hd, &o);
  int valid = o.valid;
  if (!qfill || !kfill)
    valid = 0;
  if (hq % hk != 0 || hdk != hd)
    valid = 0;
  const int32_t *cq = p.cu_seqlens_q, *ck = p.cu_seqlens_k;
  const int32_t *kv = p.kv_lens;
  if (varlen && valid) {
    if (cq[0] != 0 || ck[0] != 0)
      valid = 0;
    for (int64_t b = 0; valid && b < nb; b++)
      if (cq[b + 1] < cq[b] || ck[b + 1] < ck[b])
        valid = 0;
    if (valid && (cq[nb] > sq || ck[nb] > sk))
      valid = 0;
  }
  for (int64_t b = 0; valid && kv && b < nb; b++) {
    const int64_t cap = varlen ? (int64_t)ck[b + 1] - ck[b] : sk;
    if (kv[b] < 0 || kv[b] > cap)
      valid = 0;
  }
  if (!pos_ok(qoff) || !pos_ok(koff))
    valid = 0;
  for (int64_t b = 0; valid && b < nb; b++)
    if ((p.q_pos_offsets && !pos_ok(p.q_pos_offsets[b])) ||
        (p.k_pos_offsets && !pos_ok(p.k_pos_offsets[b])))
      valid = 0;
  const range rq = trange(&p.q, &lq), rk = trange(&p.k, &lk);
  const range rv = trange(&p.v, &lv), ro = trange(&p.o, &lo);
  if (overlap(ro, rq) || overlap(ro, rk) || overlap(ro, rv))
    valid = 0; /* the attention call's own rule (o over an input) */
  const range aux[5] = {{m.p[Q_KVL], m.bytes[Q_KVL]},
                        {m.p[Q_CUQ], m.bytes[Q_CUQ]},
                        {m.p[Q_CUK], m.bytes[Q_CUK]},
                        {m.p[Q_QOFF], m.bytes[Q_QOFF]},
                        {m.p[Q_KOFF], m.bytes[Q_KOFF]}};
  for (int a = 0; a < 5; a++)
    if (overlap(ro, aux[a]))
      valid = 0;
  const range rqo = trange(&qo, &lqo), rko = trange(&ko, &lko);
  if (lqo.bad || lko.bad || !is_storage(lqo.dt) || !is_storage(lko.dt) ||
      lqo.alias || lko.alias)
    valid = 0;
  if (valid) {
    if ((!same_view(&qo, &p.q) && overlap(rqo, rq)) || overlap(rqo, rk) ||
        (!same_view(&ko, &p.k) && overlap(rko, rk)) || overlap(rko, rq) ||
        overlap(rqo, rko))
      valid = 0;
    for (int a = 0; a < 5; a++)
      if (overlap(rqo, aux[a]) || overlap(rko, aux[a]))
        valid = 0;
  }

  /* inputs as stored */
  double *qin = NULL, *kin = NULL;
  if (valid) {
    qin = malloc((size_t)(B * sq * hq * hd) * sizeof *qin);
    kin = malloc((size_t)(B * sk * hk * hd) * sizeof *kin);
    if (!qin || !kin)
      abort();
    for (int64_t b = 0; b < B; b++)
      for (int64_t s = 0; s < sq; s++)
        for (int64_t h = 0; h < hq; h++)
          for (int64_t i = 0; i < hd; i++)
            qin[((b * sq + s) * hq + h) * hd + i] = tget(&p.q, b, s, h, i);
    for (int64_t b = 0; b < B; b++)
      for (int64_t s = 0; s < sk; s++)
        for (int64_t h = 0; h < hk; h++)
          for (int64_t i = 0; i < hd; i++)
            kin[((b * sk + s) * hk + h) * hd + i] = tget(&p.k, b, s, h, i);
    /* outputs apart: scribbled, so that an unwritten element shows (not
     * one placed over another array: it may be its input, in place) */
    if (qmode == 0)
      memset(m.p[Q_QOUT], 0x7F, m.bytes[Q_QOUT]);
    if (kmode == 0 && victim != Q_KOUT)
      memset(m.p[Q_KOUT], 0x7F, m.bytes[Q_KOUT]);
  }
  p.num_threads = 1;
  const snap before = take_snap(&m);
  const int rope_null = broken == 15 && (flags2 & 64);
  const attn_status st =
      attn_rope_apply_qk(rope_null ? NULL : &r, &p, qo, ko, inverse);
  if (!valid || rope_null) {
    if (st == ATTN_OK)
      fail("apply_qk accepted an invalid call", hd, broken, 0, 0);
    if (!msg[0])
      fail("apply_qk: a refused call without a reason", st, 0, 0, 0);
    same_snap(before, take_snap(&m), "apply_qk: a refused call wrote memory");
    free(qin), free(kin);
    release(&m);
    return;
  }
  if (st != ATTN_OK) {
    if (valid == 1) {
      fprintf(stderr, "positions_fuzz: %s\n", msg);
      fail("apply_qk refused a valid call", hd, st, 0, 0);
    }
    free(before.p), free(qin), free(kin);
    release(&m);
    return;
  }
  /* the same bits on 3 threads, from the same inputs */
  const snap one = take_snap(&m);
  if (m.arena)
    memcpy(m.arena, before.p, before.n);
  else {
    size_t off = 0;
    for (int a = 0; a < m.n; a++) {
      if (m.bytes[a])
        memcpy(m.p[a], before.p + off, m.bytes[a]);
      off += m.bytes[a];
    }
  }
  p.num_threads = 3;
  const attn_status st3 = attn_rope_apply_qk(&r, &p, qo, ko, inverse);
  const snap three = take_snap(&m);
  if (st3 != ATTN_OK)
    fail("apply_qk: 3 threads refused", st3, 0, 0, 0);
  same_snap(one, three, "apply_qk: 1 and 3 threads differ");
  free(before.p);

  /* every row against the oracle */
  double yout[MAXHD];
  const int64_t rows_done_q = varlen ? cq[nb] : sq;
  const int64_t rows_done_k = varlen ? ck[nb] : sk;
  for (int64_t b = 0; b < nb; b++) {
    const int64_t tb = varlen ? 0 : b;
    const int64_t qoffr = varlen ? cq[b] : 0, koffr = varlen ? ck[b] : 0;
    const int64_t nq = varlen ? (int64_t)cq[b + 1] - cq[b] : sq;
    const int64_t cap = varlen ? (int64_t)ck[b + 1] - ck[b] : sk;
    const int64_t eff = kv ? kv[b] : cap;
    const int64_t q0 =
        eff - nq + qoff + (p.q_pos_offsets ? p.q_pos_offsets[b] : 0);
    const int64_t k0 = koff + (p.k_pos_offsets ? p.k_pos_offsets[b] : 0);
    for (int64_t s = 0; s < nq; s++)
      for (int64_t h = 0; h < hq; h++) {
        for (int64_t i = 0; i < hd; i++)
          yout[i] = tget(&qo, tb, qoffr + s, h, i);
        check_row(&o, qin + ((tb * sq + qoffr + s) * hq + h) * hd, yout, q0 + s,
                  inverse, lqo.dt, (long long)(1000 * b + s));
      }
    for (int64_t s = 0; s < cap; s++)
      for (int64_t h = 0; h < hk; h++) {
        for (int64_t i = 0; i < hd; i++)
          yout[i] = tget(&ko, tb, koffr + s, h, i);
        check_row(&o, kin + ((tb * sk + koffr + s) * hk + h) * hd, yout, k0 + s,
                  inverse, lko.dt, (long long)(-1000 * b - s - 1));
      }
  }
  /* packed rows past the last sequence: copied (or left, in place) */
  for (int64_t s = rows_done_q; varlen && s < sq; s++)
    for (int64_t h = 0; h < hq; h++)
      for (int64_t i = 0; i < hd; i++) {
        const double got = tget(&qo, 0, s, h, i);
        const double want = as_stored(qin[(s * hq + h) * hd + i], lqo.dt);
        if (!(got == want || (isnan(got) && isnan(want))))
          fail("apply_qk: a q row past the sequences", s, i, got, want);
      }
  for (int64_t s = rows_done_k; varlen && s < sk; s++)
    for (int64_t h = 0; h < hk; h++)
      for (int64_t i = 0; i < hd; i++) {
        const double got = tget(&ko, 0, s, h, i);
        const double want = as_stored(kin[(s * hk + h) * hd + i], lko.dt);
        if (!(got == want || (isnan(got) && isnan(want))))
          fail("apply_qk: a k row past the sequences", s, i, got, want);
      }
  free(qin), free(kin);
  release(&m);
}

/* ---- attn_sinusoidal_table -------------------------------------------- */

static const int64_t sin_ns[] = {
    1, 2, 3, 7, 16, 33, 0, -1, (int64_t)1 << 40, INT64_MAX, 5, 9};
static const int64_t sin_ds[] = {
    1, 2, 3, 5, 8, 16, 64, 127, 0, -3, (int64_t)1 << 40, INT64_MAX, 4, 31};
static const double sin_bases[] = {0,   10000, 2,  1.0001, 1e300,    500,
                                   1.0, 0.5,   -1, NAN,    INFINITY, 0};

static void run_sinusoidal(bytes *in) {
  const int64_t n = pick_i(in, sin_ns, NT(sin_ns));
  const int64_t d = pick_i(in, sin_ds, NT(sin_ds));
  const unsigned psel = (unsigned)take(in, 256);
  int64_t pos0 = offsets[psel % NT(offsets)];
  if (psel >= 240 && n > 0 && n < 100)
    pos0 = POSMAX - n + 1 + (int64_t)(psel & 1); /* the last one, or past */
  const unsigned bsel = (unsigned)take(in, 256);
  const double base =
      bsel < 240 ? sin_bases[bsel % NT(sin_bases)] : carved_double(in);
  const int null_out = take(in, 64) == 0;
  int valid = !null_out && n > 0 && d > 0;
  int64_t count = 0;
  if (valid &&
      (__builtin_mul_overflow(n, d, &count) || count > (int64_t)(SIZE_MAX / 4)))
    valid = 0;
  const double b = base == 0.0 ? 10000.0 : base;
  if (!isfinite(b) || !(b > 1.0))
    valid = 0;
  if (!pos_ok(pos0) || (n > 0 && (pos0 > POSMAX - (n - 1))))
    valid = 0;
  if (valid && count > 4096)
    return; /* valid, and larger than the buffer we would give */
  const size_t cnt = valid ? (size_t)count : 16;
  float *out = malloc(cnt * sizeof *out);
  if (!out)
    abort();
  memset(out, 0xA5, cnt * sizeof *out);
  const attn_status st =
      attn_sinusoidal_table(n, d, pos0, base, null_out ? NULL : out);
  if (!valid) {
    if (st == ATTN_OK)
      fail("sinusoidal accepted an invalid call", n, d, base, 0);
    for (size_t i = 0; i < cnt; i++) {
      uint32_t w;
      memcpy(&w, &out[i], 4);
      if (w != 0xA5A5A5A5u)
        fail("sinusoidal: a refused call wrote", n, d, 0, 0);
    }
    free(out);
    return;
  }
  if (st != ATTN_OK)
    fail("sinusoidal refused a valid call", n, d, base, st);
  /* out[p, 2i] = sin(pos f_i), out[p, 2i + 1] = cos(pos f_i), f_i =
   * base^(-2i / d): the library's f_i within (3u + u t ln base) relative
   * (rope_oracle's plain frequencies), its angle reduced within 2^-48 +
   * |a| 2^-100, sin/cos in double (2u), one rounding to f32 (close_to);
   * the oracle's long double angle within |a| 2^-62. */
  const long double lnb = logl((long double)b);
  for (int64_t i = 0; 2 * i < d; i++) {
    const long double t = (long double)(2 * i) / (long double)d;
    const long double f = expl(-t * lnb);
    const double eps = 3 * UD + UD * (double)t * (double)lnb;
    for (int64_t p = 0; p < n; p++) {
      const long double a = (long double)(pos0 + p) * f;
      const double A = fabs((double)a);
      const double tol =
          A * eps + ldexp(1, -48) + A * 0x1p-100 + A * 0x1p-62 + 2 * UD;
      const double ws = (double)sinl(a), wc = (double)cosl(a);
      const double gs = out[p * d + 2 * i];
      if (!close_to(gs, ws, tol, ATTN_DTYPE_F32) || fabs(gs) > 1.0)
        fail("sinusoidal sin", pos0 + p, 2 * i, gs, ws);
      if (2 * i + 1 < d) {
        const double gc = out[p * d + 2 * i + 1];
        if (!close_to(gc, wc, tol, ATTN_DTYPE_F32) || fabs(gc) > 1.0)
          fail("sinusoidal cos", pos0 + p, 2 * i + 1, gc, wc);
      }
    }
  }
  free(out);
}

/* ---- attn_t5_bucket --------------------------------------------------- */

/* Hugging Face transformers, T5Attention._relative_position_bucket, with
 * relative_position = key - query = rel:
 *   ret = 0
 *   if bidirectional: num_buckets //= 2
 *                     ret += (rel > 0) * num_buckets; n = |rel|
 *   else:             n = -min(rel, 0)
 *   max_exact = num_buckets // 2
 *   large = max_exact + (log(n.float() / max_exact)
 *                        / math.log(max_distance / max_exact)
 *                        * (num_buckets - max_exact)).to(long)
 *   large = min(large, num_buckets - 1)
 *   ret += n if n < max_exact else large
 * in f32 as torch does it (the float tensor divided by the int: f32; the
 * Python float log(D / E) cast to f32 for the division; the product by
 * the int in f32; .to(long) truncates). Where the reference is undefined,
 * the header's choices (t5.c): max_exact 0 gives the direction's last
 * bucket; a NaN or unrepresentable quotient the last bucket; a negative
 * index 0. Invalid arguments: -1. */
static int64_t t5_ref(int64_t rel, int64_t buckets, int64_t maxd, int bidir) {
  if (buckets < 1 || maxd < 1 || (bidir && buckets < 2))
    return -1;
  int64_t nb = buckets, ret = 0;
  uint64_t n;
  if (bidir) {
    nb = buckets / 2;
    if (rel > 0)
      ret = nb;
    n = rel < 0 ? 0 - (uint64_t)rel : (uint64_t)rel;
  } else {
    n = rel < 0 ? 0 - (uint64_t)rel : 0;
  }
  const int64_t exact = nb / 2;
  if (exact == 0)
    return ret + nb - 1;
  if (n < (uint64_t)exact)
    return ret + (int64_t)n;
  const float q = (float)n / (float)exact;
  const float lg = logf(q);
  const float den = (float)log((double)maxd / (double)exact);
  const float x = lg / den * (float)(nb - exact);
  int64_t large;
  if (isnan(x) || x >= 0x1p62f)
    large = nb - 1;
  else if (x <= -0x1p62f)
    large = 0;
  else
    large = exact + (int64_t)x; /* the cast truncates toward zero */
  if (large > nb - 1)
    large = nb - 1;
  if (large < 0)
    large = 0;
  return ret + large;
}

static const int64_t t5_buckets[] = {32,
                                     32,
                                     16,
                                     8,
                                     2,
                                     1,
                                     3,
                                     4,
                                     5,
                                     64,
                                     0,
                                     -1,
                                     65536,
                                     ((int64_t)1 << 25) + 3,
                                     ((int64_t)1 << 26) + 6,
                                     INT64_MAX,
                                     7,
                                     100,
                                     320,
                                     1000001};
static const int64_t t5_dists[] = {
    128, 128, 256, 1, 2, 3, 8, 16, 1000, 0, -5, INT64_MAX, 20, 64, 4, 1 << 30};

static void run_t5(bytes *in) {
  const int64_t B = pick_i(in, t5_buckets, NT(t5_buckets));
  const int64_t D = pick_i(in, t5_dists, NT(t5_dists));
  const int bidir = (int)take(in, 2);
  const int64_t c = (take(in, 256) - 128) * (take(in, 16) + 1);
  /* a window of distances around c, then the extremes and powers of 2 */
  for (int64_t rel = c - 70; rel <= c + 70; rel++) {
    const int64_t got = attn_t5_bucket(rel, B, D, bidir),
                  want = t5_ref(rel, B, D, bidir);
    if (got != want)
      fail("t5 bucket", rel, B * 2 + bidir, (double)got, (double)want);
  }
  for (int k = 0; k < 64; k++)
    for (int sgn = -1; sgn <= 1; sgn += 2) {
      int64_t rel =
          k == 63 ? (sgn < 0 ? INT64_MIN : INT64_MAX) : sgn * ((int64_t)1 << k);
      for (int64_t dd = -1; dd <= 1; dd++) {
        int64_t r2;
        if (__builtin_add_overflow(rel, dd, &r2))
          continue;
        const int64_t got = attn_t5_bucket(r2, B, D, bidir),
                      want = t5_ref(r2, B, D, bidir);
        if (got != want)
          fail("t5 bucket", r2, B * 2 + bidir, (double)got, (double)want);
      }
    }
  while (in->n >= 3) { /* more draws from the rest of the input */
    const int64_t B2 = pick_i(in, t5_buckets, NT(t5_buckets));
    const int64_t D2 = pick_i(in, t5_dists, NT(t5_dists));
    const int64_t rel =
        (int64_t)(take(in, 256) - 128) * ((int64_t)1 << take(in, 40));
    const int bd = (int)(rel & 1);
    const int64_t got = attn_t5_bucket(rel, B2, D2, bd),
                  want = t5_ref(rel, B2, D2, bd);
    if (got != want)
      fail("t5 bucket", rel, B2 * 2 + bd, (double)got, (double)want);
  }
}

/* ---- driver ----------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  bytes in = {data, size};
  const unsigned op = (unsigned)take(&in, 256);
  gen g;
  g.wild = 0;
  g.s = 0x9E3779B97F4A7C15ULL;
  for (int i = 0; i < 3; i++)
    g.s = g.s * 0x100000001B3ULL ^ (uint64_t)take(&in, 256);
  if (!g.s)
    g.s = 1;
  check_init(op >> 2);
  switch (op % 4) {
  case 0:
    run_apply(&in, &g);
    break;
  case 1:
    run_qk(&in, &g);
    break;
  case 2:
    run_sinusoidal(&in);
    break;
  default:
    run_t5(&in);
    break;
  }
  return 0;
}
