/* Rotary position embedding (Su et al. 2021, "RoFormer") with the
 * context-extension scalings as Hugging Face transformers defines them
 * (modeling_rope_utils.py): linear position interpolation (Chen et al.
 * 2023), NTK-aware base scaling (static form), YaRN (Peng et al. 2023) and
 * Llama 3.1's frequency bands. See attn.h, "Position schemes".
 *
 * Precision. Frequencies are computed in double. The angle pos * freq is
 * formed exactly (an FMA gives the product's rounding error) and reduced
 * modulo 2 pi in double-double, so it is exact to ~1e-15 rad at any
 * position up to 2^48; cos and sin are taken in double and the rotation is
 * done in double, each output rounded once to its storage type. Hugging
 * Face forms the angles in f32 (position times inv_freq, both f32): at
 * position 1e6 the angle's ulp is 0.06 rad, so its results there are off
 * by percents; ours stay at f32 rounding.
 *
 * The calls here are single-threaded: a rotation is O(rows x head_dim),
 * memory-bound, and costs far less than the attention that follows. */
#include "pos/rope.h"

#include "pos/pos.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* The struct: defaults, sizes, import                                      */
/* ------------------------------------------------------------------------ */

/* Every attn_rope size a released attn.h declared, oldest first. */
static const size_t rope_sizes[] = {sizeof(attn_rope)};

static void rope_defaults(attn_rope *r) {
  memset(r, 0, sizeof *r);
  r->base = 10000.0;
  r->style = ATTN_ROPE_HALF;
  r->dims = 0;
  r->scaling = ATTN_ROPE_SCALING_NONE;
  r->factor = 1.0;
  r->original_max_position = 8192.0;
  r->low_freq_factor = 1.0;
  r->high_freq_factor = 4.0;
  r->beta_fast = 32.0;
  r->beta_slow = 1.0;
  r->mscale = 0.0;
}

static int rope_size_known(size_t size) {
  for (size_t i = 0; i < sizeof rope_sizes / sizeof rope_sizes[0]; i++)
    if (rope_sizes[i] == size)
      return 1;
  return 0;
}

void attn_rope_init_sized(attn_rope *r, size_t size) {
  if (!r || !rope_size_known(size))
    return; /* nothing is written into memory of unknown size */
  attn_rope full;
  rope_defaults(&full);
  memcpy(r, &full, size);
}

attn_status attn_rope_import(const attn_rope *r, size_t size, attn_rope *out) {
  if (!r || !out)
    return ATTN_ERR_NULL_POINTER;
  if (!rope_size_known(size))
    return ATTN_ERR_ABI;
  rope_defaults(out);
  memcpy(out, r, size);
  return ATTN_OK;
}

/* ------------------------------------------------------------------------ */
/* The plan: validation and frequencies                                     */
/* ------------------------------------------------------------------------ */

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static attn_status
plan_fail(char *err, size_t err_size, attn_status st, const char *fmt, ...) {
  if (err && err_size > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
  }
  return st;
}

#define PFAIL(st, ...) return plan_fail(err, err_size, (st), __VA_ARGS__)

static const double two_pi = 6.283185307179586;

static int finite_pos(double x) { return isfinite(x) && x > 0.0; }

/* The scaling's own fields: only those it reads are checked (as HF). */
static attn_status check_scaling(const attn_rope *r, int64_t d, char *err,
                                 size_t err_size) {
  switch (r->scaling) {
  case ATTN_ROPE_SCALING_NONE:
  case ATTN_ROPE_SCALING_LINEAR:
    return ATTN_OK;
  case ATTN_ROPE_SCALING_NTK:
    if (d < 4)
      PFAIL(ATTN_ERR_INVALID_ARGUMENT,
            "NTK scaling needs at least 4 rotated dims (got %lld): the base "
            "is multiplied by factor^(dims / (dims - 2))",
            (long long)d);
    return ATTN_OK;
  case ATTN_ROPE_SCALING_YARN:
    if (!finite_pos(r->original_max_position))
      PFAIL(ATTN_ERR_INVALID_ARGUMENT,
            "original_max_position (%g) must be finite and > 0",
            r->original_max_position);
    if (!finite_pos(r->beta_fast) || !finite_pos(r->beta_slow))
      PFAIL(ATTN_ERR_INVALID_ARGUMENT,
            "beta_fast (%g) and beta_slow (%g) must be finite and > 0",
            r->beta_fast, r->beta_slow);
    if (!isfinite(r->mscale) || r->mscale < 0.0)
      PFAIL(ATTN_ERR_INVALID_ARGUMENT,
            "mscale (%g) must be finite and >= 0 (0 = 0.1 ln(factor) + 1)",
            r->mscale);
    return ATTN_OK;
  case ATTN_ROPE_SCALING_LLAMA3:
    if (!finite_pos(r->original_max_position))
      PFAIL(ATTN_ERR_INVALID_ARGUMENT,
            "original_max_position (%g) must be finite and > 0",
            r->original_max_position);
    if (!finite_pos(r->low_freq_factor) || !isfinite(r->high_freq_factor) ||
        r->high_freq_factor <= r->low_freq_factor)
      PFAIL(ATTN_ERR_INVALID_ARGUMENT,
            "low_freq_factor (%g) and high_freq_factor (%g) must be finite "
            "with 0 < low < high",
            r->low_freq_factor, r->high_freq_factor);
    return ATTN_OK;
  }
  PFAIL(ATTN_ERR_INVALID_ARGUMENT,
        "scaling (%d) is not an attn_rope_scaling value", (int)r->scaling);
}

static attn_status check_rope(const attn_rope *r, int64_t head_dim,
                              int64_t *dims, char *err, size_t err_size) {
  if (head_dim < 1 || head_dim > ATTN_MAX_HEAD_DIM)
    PFAIL(ATTN_ERR_HEAD_DIM, "head_dim (%lld) must be in 1..%d",
          (long long)head_dim, ATTN_MAX_HEAD_DIM);
  if (r->style != ATTN_ROPE_HALF && r->style != ATTN_ROPE_INTERLEAVED)
    PFAIL(ATTN_ERR_INVALID_ARGUMENT,
          "rope style (%d) is not an attn_rope_style value", (int)r->style);
  if (!isfinite(r->base) || !(r->base > 1.0))
    PFAIL(ATTN_ERR_INVALID_ARGUMENT, "rope base (%g) must be finite and > 1",
          r->base);
  if (!finite_pos(r->factor))
    PFAIL(ATTN_ERR_INVALID_ARGUMENT, "rope factor (%g) must be finite and > 0",
          r->factor);
  if (r->dims < 0 || r->dims > head_dim)
    PFAIL(ATTN_ERR_INVALID_ARGUMENT,
          "rope dims (%lld) must be in 0..head_dim (%lld); 0 = all",
          (long long)r->dims, (long long)head_dim);
  const int64_t d = r->dims ? r->dims : head_dim;
  if (d % 2 != 0) {
    if (r->dims == 0)
      PFAIL(ATTN_ERR_HEAD_DIM,
            "rope rotates pairs: head_dim (%lld) is odd, so set dims to an "
            "even number below it",
            (long long)head_dim);
    PFAIL(ATTN_ERR_INVALID_ARGUMENT, "rope dims (%lld) must be even",
          (long long)d);
  }
  *dims = d;
  return check_scaling(r, d, err, err_size);
}

/* YaRN's correction range (HF find_correction_dim / find_correction_range
 * with truncate): the dims whose wavelength completes num_rot rotations
 * within the original context. */
static double yarn_dim(double num_rot, double d, double base, double omp) {
  return d * log(omp / (num_rot * two_pi)) / (2.0 * log(base));
}

static void yarn_freqs(const attn_rope *r, int64_t d, attn_rope_plan *pl) {
  double low = floor(
      yarn_dim(r->beta_fast, (double)d, r->base, r->original_max_position));
  double high = ceil(
      yarn_dim(r->beta_slow, (double)d, r->base, r->original_max_position));
  low = fmax(low, 0.0);
  high = fmin(high, (double)(d - 1));
  if (low == high)
    high += 0.001; /* HF linear_ramp_factor: no zero width */
  for (int64_t i = 0; i < d / 2; i++) {
    double ramp = ((double)i - low) / (high - low);
    ramp = fmin(fmax(ramp, 0.0), 1.0);
    const double extra = pl->inv_freq[i];
    const double inter = extra / r->factor;
    /* ramp 0: extrapolation (high frequencies kept); 1: interpolation */
    pl->inv_freq[i] = inter * ramp + extra * (1.0 - ramp);
  }
  if (r->mscale > 0.0)
    pl->mscale = r->mscale;
  else
    pl->mscale = r->factor <= 1.0 ? 1.0 : 0.1 * log(r->factor) + 1.0;
}

static void llama3_freqs(const attn_rope *r, int64_t d, attn_rope_plan *pl) {
  const double omp = r->original_max_position;
  const double lo = r->low_freq_factor, hi = r->high_freq_factor;
  const double low_wavelen = omp / lo, high_wavelen = omp / hi;
  for (int64_t i = 0; i < d / 2; i++) {
    const double f = pl->inv_freq[i];
    const double wavelen = two_pi / f;
    if (wavelen > low_wavelen) {
      pl->inv_freq[i] = f / r->factor; /* low frequencies: interpolated */
    } else if (wavelen >= high_wavelen) {
      const double smooth = (omp / wavelen - lo) / (hi - lo);
      pl->inv_freq[i] = (1.0 - smooth) * f / r->factor + smooth * f;
    } /* high frequencies: kept */
  }
}

attn_status attn_rope_plan_make(const attn_rope *r, int64_t head_dim,
                                attn_rope_plan *out, char *err,
                                size_t err_size) {
  if (!r || !out)
    PFAIL(ATTN_ERR_NULL_POINTER, "rope or plan is NULL");
  int64_t d = 0;
  attn_status st = check_rope(r, head_dim, &d, err, err_size);
  if (st != ATTN_OK)
    return st;
  attn_rope_plan *pl = out;
  memset(pl, 0, sizeof *pl);
  pl->head_dim = head_dim;
  pl->dims = d;
  pl->style = r->style;
  pl->mscale = 1.0;
  pl->pos_scale = 1.0;
  double base = r->base;
  if (r->scaling == ATTN_ROPE_SCALING_NTK) {
    base *= pow(r->factor, (double)d / (double)(d - 2));
    /* an infinite base' would give every frequency but the first 0 */
    if (!isfinite(base))
      PFAIL(ATTN_ERR_INVALID_ARGUMENT,
            "NTK base * factor^(dims / (dims - 2)) overflows (base %g, "
            "factor %g, dims %lld)",
            r->base, r->factor, (long long)d);
  }
  for (int64_t i = 0; i < d / 2; i++)
    pl->inv_freq[i] = pow(base, -(double)(2 * i) / (double)d);
  switch (r->scaling) {
  case ATTN_ROPE_SCALING_LINEAR:
    pl->pos_scale = 1.0 / r->factor;
    break;
  case ATTN_ROPE_SCALING_YARN:
    yarn_freqs(r, d, pl);
    break;
  case ATTN_ROPE_SCALING_LLAMA3:
    llama3_freqs(r, d, pl);
    break;
  default:
    break;
  }
  /* every position the library rotates at is below 2^50 in magnitude
   * (offsets within +-2^48, plus lengths): pos * freq must stay finite,
   * or attn_pos_sincos's angle is inf and the rotation NaN */
  for (int64_t i = 0; i < d / 2; i++)
    if (!isfinite(pl->inv_freq[i]) ||
        !isfinite(pl->inv_freq[i] * pl->pos_scale * 0x1p50))
      PFAIL(ATTN_ERR_INVALID_ARGUMENT,
            "rope frequency %lld is not finite, or so large that positions "
            "times it overflow: base %g and factor %g too extreme",
            (long long)i, r->base, r->factor);
  if (!isfinite(pl->mscale))
    PFAIL(ATTN_ERR_INVALID_ARGUMENT, "rope mscale is not finite");
  return ATTN_OK;
}

/* ------------------------------------------------------------------------ */
/* Angles and rotation                                                      */
/* ------------------------------------------------------------------------ */

/* 2 pi as a sum of three doubles (the first is the double nearest 2 pi). */
static const double two_pi_1 = 6.283185307179586;
static const double two_pi_2 = 2.4492935982947064e-16;
static const double two_pi_3 = -5.989539619436679e-33;

void attn_pos_sincos(int64_t pos, double freq, double *c, double *s) {
  const double x = (double)pos; /* exact: |pos| <= 2^53 */
  const double a = x * freq;
  const double e = fma(x, freq, -a); /* a + e == x * freq exactly */
  const double k = nearbyint(a * (1.0 / two_pi));
  double r = fma(-k, two_pi_1, a); /* small: one rounding at its scale */
  r = fma(-k, two_pi_2, r);
  r = fma(-k, two_pi_3, r) + e;
  *c = cos(r);
  *s = sin(r);
}

void attn_rope_angles(const attn_rope_plan *pl, int64_t pos, int inverse,
                      double *cos_out, double *sin_out) {
  const int64_t half = pl->dims / 2;
  const double m = pl->mscale;
  for (int64_t i = 0; i < half; i++) {
    const double f = pl->pos_scale == 1.0 ? pl->inv_freq[i]
                                          : pl->inv_freq[i] * pl->pos_scale;
    double c, s;
    attn_pos_sincos(pos, f, &c, &s);
    cos_out[i] = c * m;
    sin_out[i] = inverse ? -s * m : s * m;
  }
}

void attn_rope_rotate_cs(const attn_rope_plan *pl, const double *c,
                         const double *s, float *x) {
  const int64_t half = pl->dims / 2;
  /* pair i: (x[i], x[i + half]) or (x[2i], x[2i + 1]) */
  const int64_t step = pl->style == ATTN_ROPE_HALF ? 1 : 2;
  const int64_t other = pl->style == ATTN_ROPE_HALF ? half : 1;
  for (int64_t i = 0; i < half; i++) {
    float *p0 = x + i * step, *p1 = p0 + other;
    const double x0 = *p0, x1 = *p1;
    *p0 = (float)(x0 * c[i] - x1 * s[i]);
    *p1 = (float)(x1 * c[i] + x0 * s[i]);
  }
}

void attn_rope_rotate_f32(const attn_rope_plan *pl, float *x, int64_t pos,
                          int inverse) {
  double c[ATTN_ROPE_MAX_PAIRS], s[ATTN_ROPE_MAX_PAIRS];
  attn_rope_angles(pl, pos, inverse, c, s);
  attn_rope_rotate_cs(pl, c, s, x);
}

/* ------------------------------------------------------------------------ */
/* Public: frequencies                                                      */
/* ------------------------------------------------------------------------ */

attn_status attn_rope_frequencies_sized(const attn_rope *r, size_t size,
                                        int64_t head_dim, float *inv_freq,
                                        float *mscale) {
  attn_rope rr;
  attn_status st = attn_rope_import(r, size, &rr);
  if (st != ATTN_OK)
    return st;
  if (!inv_freq || !mscale)
    return ATTN_ERR_NULL_POINTER;
  attn_rope_plan pl;
  st = attn_rope_plan_make(&rr, head_dim, &pl, NULL, 0);
  if (st != ATTN_OK)
    return st;
  for (int64_t i = 0; i < pl.dims / 2; i++)
    inv_freq[i] = (float)(pl.inv_freq[i] * pl.pos_scale);
  *mscale = (float)pl.mscale;
  return ATTN_OK;
}

/* ------------------------------------------------------------------------ */
/* Rows of strided tensors                                                  */
/* ------------------------------------------------------------------------ */

static int is_storage(attn_dtype d) {
  return d == ATTN_DTYPE_F32 || d == ATTN_DTYPE_BF16 || d == ATTN_DTYPE_F16;
}

static char *row_ptr(const attn_tensor *t, int64_t b, int64_t s, int64_t h) {
  const int64_t off = b * t->stride[0] + s * t->stride[1] + h * t->stride[2];
  return (char *)t->data + off * (int64_t)attn_dtype_size(t->dtype);
}

/* Every head of row (b, s) of x into y: rotated at pos, or copied when
 * rotate is 0 (rows outside every sequence). */
static void rotate_row(const attn_rope_plan *pl, const attn_tensor *x,
                       const attn_tensor *y, int64_t b, int64_t s, int64_t yb,
                       int64_t ys, int rotate, int64_t pos, int inverse) {
  double c[ATTN_ROPE_MAX_PAIRS], sn[ATTN_ROPE_MAX_PAIRS];
  float row[ATTN_MAX_HEAD_DIM];
  const int64_t d = x->shape[3];
  if (rotate)
    attn_rope_angles(pl, pos, inverse, c, sn);
  for (int64_t h = 0; h < x->shape[2]; h++) {
    attn_load_row_f32(row_ptr(x, b, s, h), x->dtype, x->stride[3], d, 1.0f,
                      row);
    if (rotate)
      attn_rope_rotate_cs(pl, c, sn, row);
    attn_store_row(row, d, row_ptr(y, yb, ys, h), y->dtype, y->stride[3]);
  }
}

/* A valid view: positive shape, non-negative strides, extent in range. */
static attn_status check_view(const attn_tensor *t, uintptr_t *lo,
                              uintptr_t *hi) {
  if (!t->data)
    return ATTN_ERR_NULL_POINTER;
  if (!is_storage(t->dtype))
    return ATTN_ERR_INVALID_DTYPE;
  for (int i = 0; i < 4; i++) {
    if (t->shape[i] <= 0)
      return ATTN_ERR_INVALID_SHAPE;
    if (t->stride[i] < 0)
      return ATTN_ERR_INVALID_STRIDE;
  }
  if (!attn_tensor_extent(t, lo, hi))
    return ATTN_ERR_OVERFLOW;
  return ATTN_OK;
}

static int same_view(const attn_tensor *a, const attn_tensor *b) {
  if (a->data != b->data || a->dtype != b->dtype)
    return 0;
  for (int i = 0; i < 4; i++)
    if (a->shape[i] != b->shape[i] || a->stride[i] != b->stride[i])
      return 0;
  return 1;
}

static int ranges_overlap(uintptr_t alo, uintptr_t ahi, uintptr_t blo,
                          uintptr_t bhi) {
  return alo < bhi && blo < ahi;
}

static int pos_ok(int64_t x) {
  return x >= -ATTN_POS_OFFSET_MAX && x <= ATTN_POS_OFFSET_MAX;
}

/* ------------------------------------------------------------------------ */
/* Public: attn_rope_apply                                                  */
/* ------------------------------------------------------------------------ */

static attn_status apply_check(const attn_tensor *x, const attn_tensor *y,
                               const int64_t *positions, int64_t pos_offset,
                               const int64_t *pos_offsets) {
  uintptr_t xlo, xhi, ylo, yhi;
  attn_status st = check_view(x, &xlo, &xhi);
  if (st == ATTN_OK)
    st = check_view(y, &ylo, &yhi);
  if (st != ATTN_OK)
    return st;
  for (int i = 0; i < 4; i++)
    if (x->shape[i] != y->shape[i])
      return ATTN_ERR_INVALID_SHAPE;
  if (attn_tensor_self_aliases(y))
    return ATTN_ERR_INVALID_STRIDE;
  if (!same_view(x, y) && ranges_overlap(xlo, xhi, ylo, yhi))
    return ATTN_ERR_OVERLAP;
  const int64_t nb = x->shape[0], ns = x->shape[1];
  if (positions) {
    int64_t n;
    if (__builtin_mul_overflow(nb, ns, &n) ||
        __builtin_mul_overflow(n, (int64_t)sizeof(int64_t), &n))
      return ATTN_ERR_OVERFLOW;
    const uintptr_t plo = (uintptr_t)positions;
    if ((uint64_t)n > UINTPTR_MAX - plo)
      return ATTN_ERR_OVERFLOW;
    if (ranges_overlap(plo, plo + (uintptr_t)n, ylo, yhi))
      return ATTN_ERR_OVERLAP;
    for (int64_t i = 0; i < nb * ns; i++)
      if (!pos_ok(positions[i]))
        return ATTN_ERR_INVALID_ARGUMENT;
    return ATTN_OK;
  }
  /* every position i + pos_offset (+ pos_offsets[b]) within +-2^48 */
  if (!pos_ok(pos_offset))
    return ATTN_ERR_INVALID_ARGUMENT;
  if (pos_offsets) {
    const uintptr_t plo = (uintptr_t)pos_offsets;
    const uint64_t n = (uint64_t)nb * sizeof(int64_t); /* nb <= extent */
    if (n > UINTPTR_MAX - plo)
      return ATTN_ERR_OVERFLOW;
    if (ranges_overlap(plo, plo + (uintptr_t)n, ylo, yhi))
      return ATTN_ERR_OVERLAP;
  }
  for (int64_t b = 0; b < (pos_offsets ? nb : 1); b++) {
    const int64_t ob = pos_offsets ? pos_offsets[b] : 0;
    int64_t last;
    if (!pos_ok(ob) || !pos_ok(pos_offset + ob) ||
        __builtin_add_overflow(pos_offset + ob, ns - 1, &last) || !pos_ok(last))
      return ATTN_ERR_INVALID_ARGUMENT;
  }
  return ATTN_OK;
}

attn_status attn_rope_apply_sized(const attn_rope *r, size_t size,
                                  attn_tensor x, attn_tensor y,
                                  const int64_t *positions, int64_t pos_offset,
                                  const int64_t *pos_offsets, int inverse) {
  attn_rope rr;
  attn_status st = attn_rope_import(r, size, &rr);
  if (st != ATTN_OK)
    return st;
  st = apply_check(&x, &y, positions, pos_offset, pos_offsets);
  if (st != ATTN_OK)
    return st;
  attn_rope_plan pl;
  st = attn_rope_plan_make(&rr, x.shape[3], &pl, NULL, 0);
  if (st != ATTN_OK)
    return st;
  const int64_t ns = x.shape[1];
  for (int64_t b = 0; b < x.shape[0]; b++) {
    const int64_t off = pos_offset + (pos_offsets ? pos_offsets[b] : 0);
    for (int64_t s = 0; s < ns; s++) {
      const int64_t pos = positions ? positions[b * ns + s] : off + s;
      rotate_row(&pl, &x, &y, b, s, b, s, 1, pos, inverse);
    }
  }
  return ATTN_OK;
}

/* ------------------------------------------------------------------------ */
/* Public: attn_rope_apply_qk                                               */
/* ------------------------------------------------------------------------ */

#define QFAIL(st, ...) return attn_fail(p, (st), __VA_ARGS__)

/* out (named what) against its input in (same shape, in place or apart)
 * and the other input. */
static attn_status qk_check_out(const attn_params *p, const attn_problem *pr,
                                const attn_tensor *out, const attn_tensor *in,
                                const attn_tensor *other, const char *what,
                                const char *in_name, const char *other_name) {
  uintptr_t lo, hi, ilo, ihi, olo, ohi;
  attn_status st = check_view(out, &lo, &hi);
  if (st == ATTN_ERR_NULL_POINTER)
    QFAIL(st, "%s.data is NULL", what);
  if (st == ATTN_ERR_INVALID_DTYPE)
    QFAIL(st, "%s.dtype (%d) must be f32, bf16 or f16", what, (int)out->dtype);
  if (st != ATTN_OK)
    QFAIL(st, "%s is not a valid view (shape > 0, strides >= 0, in range)",
          what);
  for (int i = 0; i < 4; i++)
    if (out->shape[i] != in->shape[i])
      QFAIL(ATTN_ERR_INVALID_SHAPE,
            "%s.shape[%d] = %lld must equal %s.shape[%d] = %lld", what, i,
            (long long)out->shape[i], in_name, i, (long long)in->shape[i]);
  if (attn_tensor_self_aliases(out))
    QFAIL(ATTN_ERR_INVALID_STRIDE,
          "%s strides make different elements share memory", what);
  attn_tensor_extent(in, &ilo, &ihi);
  attn_tensor_extent(other, &olo, &ohi);
  if (!same_view(out, in) && ranges_overlap(lo, hi, ilo, ihi))
    QFAIL(ATTN_ERR_OVERLAP,
          "%s overlaps %s in memory (only exactly %s itself is allowed)", what,
          in_name, in_name);
  if (ranges_overlap(lo, hi, olo, ohi))
    QFAIL(ATTN_ERR_OVERLAP, "%s overlaps %s in memory", what, other_name);
  return attn_check_aux_overlap(p, pr, lo, hi, what);
}

/* Rows [lo, hi) of tensor batch tb: rotated from position pos0 on. */
static void qk_rows(const attn_rope_plan *pl, const attn_tensor *in,
                    const attn_tensor *out, int64_t tb, int64_t lo, int64_t hi,
                    int64_t pos0, int inverse) {
  for (int64_t s = lo; s < hi; s++)
    rotate_row(pl, in, out, tb, s, tb, s, 1, pos0 + (s - lo), inverse);
}

/* Rows of a packed tensor past the last sequence: copied unrotated. */
static void qk_copy_tail(const attn_rope_plan *pl, const attn_tensor *in,
                         const attn_tensor *out, int64_t from) {
  if (same_view(in, out))
    return;
  for (int64_t s = from; s < in->shape[1]; s++)
    rotate_row(pl, in, out, 0, s, 0, s, 0, 0, 0);
}

attn_status attn_rope_apply_qk_sized(const attn_rope *r, size_t rope_size,
                                     const attn_params *user,
                                     size_t params_size, attn_tensor q_out,
                                     attn_tensor k_out, int inverse) {
  attn_params pp;
  attn_status st = attn_params_import(user, params_size, &pp);
  if (st != ATTN_OK)
    return st;
  const attn_params *p = &pp;
  attn_rope rr;
  st = attn_rope_import(r, rope_size, &rr);
  if (st == ATTN_ERR_NULL_POINTER)
    QFAIL(st, "rope is NULL");
  if (st != ATTN_OK)
    QFAIL(st,
          "attn_rope is %zu bytes, but libattn %s knows %zu: built against a "
          "newer attn.h?",
          rope_size, attn_version_string(), sizeof(attn_rope));
  attn_problem pr;
  st = attn_validate(p, &pr);
  if (st != ATTN_OK)
    return st;
  pr.p = p;
  char why[200];
  attn_rope_plan pl;
  st = attn_rope_plan_make(&rr, pr.d, &pl, why, sizeof why);
  if (st != ATTN_OK)
    QFAIL(st, "%s", why);
  st = qk_check_out(p, &pr, &q_out, &p->q, &p->k, "q_out", "q", "k");
  if (st == ATTN_OK)
    st = qk_check_out(p, &pr, &k_out, &p->k, &p->q, "k_out", "k", "q");
  if (st != ATTN_OK)
    return st;
  uintptr_t qlo, qhi, klo, khi;
  attn_tensor_extent(&q_out, &qlo, &qhi);
  attn_tensor_extent(&k_out, &klo, &khi);
  if (ranges_overlap(qlo, qhi, klo, khi))
    QFAIL(ATTN_ERR_OVERLAP, "q_out overlaps k_out in memory");

  for (int64_t b = 0; b < pr.batch; b++) {
    attn_seq s;
    attn_pos pos;
    attn_problem_seq(&pr, b, &s);
    attn_pos_seq(p, &s, &pos);
    /* every stored key row of the sequence, kv_lens or not, sits at its
     * index: keys past kv_lens are rotated too (never read by attention) */
    const int64_t cap =
        pr.varlen ? (int64_t)p->cu_seqlens_k[b + 1] - p->cu_seqlens_k[b]
                  : p->k.shape[1];
    qk_rows(&pl, &p->q, &q_out, s.q_bat, s.q_off, s.q_off + s.sq, pos.q0,
            inverse);
    qk_rows(&pl, &p->k, &k_out, s.q_bat, s.k_off, s.k_off + cap, pos.k0,
            inverse);
  }
  if (pr.varlen) {
    qk_copy_tail(&pl, &p->q, &q_out, p->cu_seqlens_q[pr.batch]);
    qk_copy_tail(&pl, &p->k, &k_out, p->cu_seqlens_k[pr.batch]);
  }
  return ATTN_OK;
}
