/*
 * linear_fuzz.c - libFuzzer target for linear attention (attn/linear.h):
 * attn_linear_forward, attn_linear_backward, their workspace sizes, and the
 * recurrent state (create, step, reset, length, s, z, free). Shapes (batch,
 * GQA ratios, lengths 1 .. 257 across the chunk edges, head dims up to 256;
 * the larger head dim halved until an execution stays within tens of ms
 * under ASan),
 * the causal kinds, dtypes and layouts (contiguous, padded, inner stride 2,
 * heads outermost, stride 0 on an input) are carved out of the input; the
 * values come from a stream seeded by it, with NaN, +-inf, huge (1e30,
 * 3e38) and denormal entries, features that underflow (q or k near -88,
 * the denominator's guard) when the input asks; in its aliasing mode one
 * output lies over another array of the call.
 *
 * Checks:
 * - no crash or sanitizer report;
 * - a call the harness knows to be invalid (an output whose strides make
 *   elements share memory, an output over an input or another output, and
 *   one mutated call per input: NULL data, bad dtypes, shapes, ratios, dims
 *   over 256, negative strides, overflowing extents, bad causal or thread
 *   counts, a workspace 1 .. 64 bytes short, unknown struct sizes, bad steps
 *   and states) gets a status other than ATTN_OK and a reason, and writes
 *   nothing; a valid call gets ATTN_OK, its workspace size call too, and it
 *   writes no byte of an output's buffer that is not an element;
 * - o, dq, dk, dv, the state's outputs and its S and z against the
 *   quadratic form in double (the bounds: "The bounds" below), element by
 *   element; an element a non-finite input reaches, or an intermediate that
 *   may overflow f32, is not checked;
 * - the same bits on 1 and 3 threads (forward and backward), with and
 *   without a caller workspace of the size the library asked for;
 * - the state: steps of the input's sizes, then reset (length 0, S and z
 *   zero) and the tokens again in other steps: the same bits (a step
 *   appends token by token); its outputs against the parallel forward.
 *
 * The bounds. With u = 2^-24 and gamma(P) = P u / (1 - P u), an f32
 * evaluation of a sum of products in any order, each product's path through
 * at most P roundings, is within gamma(P) sum |terms| of the exact sum
 * (Higham, Accuracy and Stability, 3.1), with the terms taken at the
 * perturbed inputs. The inputs the harness cannot take exactly:
 * - phi(x) = exp(x) for x <= 0 is 2^(x log2e) by a polynomial: x log2e
 *   rounded twice (the constant and the product) gives 2 |x| u in the
 *   exponent, the polynomial 3.4 u plus about 2.5 u of its Horner steps,
 *   so (2 |x| + 10) u relative, plus 2^-149 when the result is subnormal,
 *   plus the whole value where x log2e < -126 (the library may give 0:
 *   its exp2 returns 0 from 2^-126.5 down, no subnormals);
 *   x + 1 for x > 0: u;
 * - the denominator D = max(den, FLT_MIN) and its error eD from den's
 *   bound (a max is 1-Lipschitz), D's lower bound Dlo >= FLT_MIN, so that
 *   every quotient's error is err / Dlo + |x| eD / (Dlo D);
 * - t D = -(dout . num) / D of the backward, and a' = phi(q) / D.
 * Products that underflow lose up to 2^-150 each (ETA = 2^-149 counts it
 * twice), times the factors that multiply them later (the ETA terms below
 * bound that generously), divided by D where the library divides after
 * the product ((da D) phi'(q) / D of dq). The paths, counted from
 * linear_body.h: a forward output or state output d + n + 4 roundings (n the
 * keys the row sees: through the state S, z or the chunk's weights W, then 1 /
 * D and the product); a gradient d + dv + seq_k + seq_q * group + 16 (R and y
 * sum over every row of the group's heads). The rows whose denominator
 * bound straddles FLT_MIN (the guard's branch of t D unknown) leave their
 * gradients unchecked. The storage dtype's rounding comes on top
 * (close_to). The oracle's own double rounding is 2^-29 of gamma's and is
 * covered by gamma's 1 / (1 - P u).
 *
 * Input: a header of 24 bytes (flags, mode, sizes, the values' seed and
 * kinds, the mutated call, the aliasing choice, the steps, the rate of
 * special values), then one layout byte per array (q k v o dout dq dk dv
 * and the state's output).
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

#define U32 (1.0 / 16777216.0) /* 2^-24 */
#define ETA 0x1p-149           /* an underflowing product's error, twice */
#define BIG 0x1p127            /* an intermediate past this may overflow */

/* The oracle is checked code, not code under test: its loops go without
 * libFuzzer's coverage and comparison tracing (as params2_fuzz's oracles,
 * fuzz/CMakeLists.txt), which took three quarters of an execution in the
 * build of scripts/ci_fuzz.sh; the sanitizers stay. */
#if defined(__clang__)
#define ORACLE __attribute__((no_sanitize("coverage")))
#else
#define ORACLE
#endif

static double gam(double P) { return P * U32 / (1.0 - P * U32); }

/* x, with NaN as +inf (for the overflow tests) */
static double mag(double x) { return isnan(x) ? INFINITY : fabs(x); }

static void fail(const char *what, long long a, long long b, double got,
                 double want) {
  fprintf(stderr, "linear_fuzz: %s [%lld, %lld]: got %.9g, want %.9g\n", what,
          a, b, got, want);
  abort();
}

static void *xcalloc(size_t n, size_t sz) {
  void *p = calloc(n ? n : 1, sz);
  if (!p)
    abort();
  return p;
}

/* ---- layouts and buffers --------------------------------------------- */

typedef struct layout {
  attn_dtype dt;
  int64_t stride[4];
  int bcast; /* a dimension of stride 0 (-1: none) */
} layout;

static const attn_dtype dtypes[3] = {ATTN_DTYPE_F32, ATTN_DTYPE_BF16,
                                     ATTN_DTYPE_F16};

/* A [B, S, H, D] layout from one byte: contiguous, padded, every second
 * element, heads outermost, or (inputs; outputs one time in four)
 * contiguous with one dimension of stride 0. */
static layout make_layout(unsigned L, const int64_t sh[4], int out) {
  layout l;
  l.dt = dtypes[(L / 20) % 3];
  l.bcast = -1;
  const int64_t S = sh[1], H = sh[2], D = sh[3];
  unsigned kind = L % 5;
  if (out && kind == 4 && (L / 5) % 4 != 0)
    kind = 0;
  switch (kind) {
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
  if (kind == 4) {
    l.bcast = (int)((L / 60) % 4);
    l.stride[l.bcast] = 0;
  }
  return l;
}

/* Bytes from the first element to past the last (strides >= 0): the
 * extent the library checks. */
static size_t view_bytes(const attn_tensor *t) {
  int64_t last = 0;
  for (int i = 0; i < 4; i++)
    last += (t->shape[i] - 1) * t->stride[i];
  return (size_t)(last + 1) * attn_dtype_size(t->dtype);
}

/* Whether two elements of t share memory (only stride 0 on an axis longer
 * than 1 does, in these layouts). */
static int self_aliases(const attn_tensor *t) {
  for (int i = 0; i < 4; i++)
    if (t->stride[i] == 0 && t->shape[i] > 1)
      return 1;
  return 0;
}

static int views_overlap(const attn_tensor *a, const attn_tensor *b) {
  const unsigned char *pa = a->data, *pb = b->data;
  return pa < pb + view_bytes(b) && pb < pa + view_bytes(a);
}

/* The arrays of a call by role; OS is the state's output. */
enum { R_Q, R_K, R_V, R_O, R_DOUT, R_DQ, R_DK, R_DV, R_OS, N_R };

static int is_out(int r) { return r == R_O || r >= R_DQ; }

typedef struct call {
  int64_t B, SQ, SK, HQ, HK, G, D, DV;
  int bwd, state, o_unset;
  attn_causal causal;
  layout lay[N_R];
  unsigned char *p[N_R]; /* NULL: absent from this call */
  size_t bytes[N_R];
  unsigned char *arena; /* the aliasing mode: every array in here */
  size_t arena_bytes;
  int victim, target; /* the aliasing mode's output and what it lies on */
} call;

static void role_shape(const call *c, int r, int64_t sh[4]) {
  sh[0] = c->B;
  switch (r) {
  case R_Q:
  case R_DQ:
    sh[1] = c->SQ, sh[2] = c->HQ, sh[3] = c->D;
    break;
  case R_K:
  case R_DK:
    sh[1] = c->SK, sh[2] = c->HK, sh[3] = c->D;
    break;
  case R_V:
  case R_DV:
    sh[1] = c->SK, sh[2] = c->HK, sh[3] = c->DV;
    break;
  default: /* o, dout, os */
    sh[1] = c->SQ, sh[2] = c->HQ, sh[3] = c->DV;
    break;
  }
}

static int role_present(const call *c, int r) {
  if (r >= R_DOUT && r <= R_DV)
    return c->bwd;
  if (r == R_OS)
    return c->state;
  return 1;
}

static attn_tensor view(const call *c, int r) {
  attn_tensor t;
  memset(&t, 0, sizeof t);
  int64_t sh[4];
  role_shape(c, r, sh);
  t.data = c->p[r];
  t.dtype = c->lay[r].dt;
  for (int i = 0; i < 4; i++)
    t.shape[i] = sh[i], t.stride[i] = c->lay[r].stride[i];
  return t;
}

/* Separate allocations (sanitizers see overruns), or, with victim >= 0,
 * one arena where the victim output lies on the target at a shift. */
static void place(call *c, int victim_sel, int target_sel, unsigned shift) {
  int outs[N_R], all[N_R], no = 0, na = 0;
  for (int r = 0; r < N_R; r++) {
    c->bytes[r] = 0;
    if (!role_present(c, r))
      continue;
    attn_tensor t = view(c, r);
    c->bytes[r] = view_bytes(&t);
    all[na++] = r;
    if (is_out(r))
      outs[no++] = r;
  }
  c->victim = c->target = -1;
  if (victim_sel >= 0 && no > 0 && na > 1) {
    c->victim = outs[victim_sel % no];
    int k = target_sel % (na - 1);
    for (int j = 0; j < na; j++)
      if (all[j] != c->victim && k-- == 0)
        c->target = all[j];
  }
  if (c->victim < 0) {
    for (int r = 0; r < N_R; r++)
      c->p[r] = c->bytes[r] ? xcalloc(1, c->bytes[r]) : NULL;
    return;
  }
  size_t off[N_R], total = 0;
  for (int r = 0; r < N_R; r++) {
    off[r] = total;
    total += (c->bytes[r] + 63) / 64 * 64;
  }
  off[c->victim] = off[c->target] + (shift % c->bytes[c->target]) / 4 * 4;
  if (off[c->victim] + c->bytes[c->victim] > total)
    total = off[c->victim] + c->bytes[c->victim];
  c->arena = xcalloc(1, total + 64);
  c->arena_bytes = total + 64;
  for (int r = 0; r < N_R; r++)
    c->p[r] = c->bytes[r] ? c->arena + off[r] : NULL;
}

static void release(call *c) {
  if (!c->arena)
    for (int r = 0; r < N_R; r++)
      free(c->p[r]);
  free(c->arena);
}

/* Every byte of the call's arrays (and an extra buffer), to check that a
 * refused call wrote nothing. */
typedef struct snap {
  unsigned char *p;
  size_t n;
} snap;

static snap take_all(const call *c, const void *extra, size_t extra_n) {
  snap s = {NULL, extra_n};
  if (c->arena)
    s.n += c->arena_bytes;
  else
    for (int r = 0; r < N_R; r++)
      s.n += c->bytes[r];
  s.p = xcalloc(1, s.n);
  size_t o = 0;
  if (c->arena) {
    memcpy(s.p, c->arena, c->arena_bytes);
    o = c->arena_bytes;
  } else {
    for (int r = 0; r < N_R; r++) {
      if (c->bytes[r])
        memcpy(s.p + o, c->p[r], c->bytes[r]);
      o += c->bytes[r];
    }
  }
  if (extra_n)
    memcpy(s.p + o, extra, extra_n);
  return s;
}

static void same_or_fail(const snap *a, const snap *b, const char *what) {
  if (a->n != b->n || memcmp(a->p, b->p, a->n) != 0)
    fail(what, 0, 0, 0, 0);
}

/* The element bytes of an output, scribbling and copying them. */
static void scribble(const attn_tensor *t) {
  memset(t->data, 0xA5, view_bytes(t));
}

static unsigned char *elems_of(const attn_tensor *t) {
  const size_t es = attn_dtype_size(t->dtype);
  unsigned char *o = xcalloc(
      (size_t)(t->shape[0] * t->shape[1] * t->shape[2] * t->shape[3]), es);
  size_t k = 0;
  for (int64_t b = 0; b < t->shape[0]; b++)
    for (int64_t i = 0; i < t->shape[1]; i++)
      for (int64_t h = 0; h < t->shape[2]; h++)
        for (int64_t x = 0; x < t->shape[3]; x++, k += es)
          memcpy(o + k, fz_elem(t, b, i, h, x), es);
  return o;
}

static size_t elems_bytes(const attn_tensor *t) {
  return (size_t)(t->shape[0] * t->shape[1] * t->shape[2] * t->shape[3]) *
         attn_dtype_size(t->dtype);
}

/* After a valid call on a scribbled output (not in the aliasing mode):
 * every byte of its extent that is no element still holds the scribble. */
static void check_pad(const attn_tensor *t, const char *what) {
  const size_t n = view_bytes(t), es = attn_dtype_size(t->dtype);
  unsigned char *mask = xcalloc(1, n);
  for (int64_t b = 0; b < t->shape[0]; b++)
    for (int64_t i = 0; i < t->shape[1]; i++)
      for (int64_t h = 0; h < t->shape[2]; h++)
        for (int64_t x = 0; x < t->shape[3]; x++)
          memset(mask + ((unsigned char *)fz_elem(t, b, i, h, x) -
                         (unsigned char *)t->data),
                 1, es);
  for (size_t k = 0; k < n; k++)
    if (!mask[k] && ((unsigned char *)t->data)[k] != 0xA5)
      fail(what, (long long)k, 0, ((unsigned char *)t->data)[k], 0xA5);
  free(mask);
}

/* ---- values ----------------------------------------------------------- */

typedef struct gen {
  uint64_t s;
  int wild; /* 0, or 3 .. 10: one value in 2^wild is special */
} gen;

static const float specials[] = {
    NAN,     INFINITY, -INFINITY, 3e38f,   -3e38f, 1e30f,  -1e30f, 1e-40f,
    -1e-40f, 0.0f,     -0.0f,     65504.f, 1e5f,   -88.5f, -100.f, -1e5f};

static float value(gen *g, double scale, double shift) {
  const double r = frand(&g->s);
  if (g->wild && (g->s >> (64 - g->wild)) == 0)
    return specials[(g->s >> 40) % (sizeof specials / sizeof specials[0])];
  return (float)(shift + r * scale);
}

/* q and k: a spread and a shift (the guard's regime near -88) */
static void qk_mode(unsigned m, double *scale, double *shift) {
  static const double sc[6] = {0.5, 1, 2, 5, 20, 100};
  static const double sh[12] = {0,     0,     0,   0,    -2, -20,
                                -87.5, -88.5, -95, -200, 3,  50};
  *scale = sc[m % 6];
  *shift = sh[(m / 6) % 12];
}

/* v and dout: magnitudes from denormal to huge */
static double vg_scale(unsigned m) {
  static const double sc[8] = {1, 1, 0.01, 100, 1e4, 1e-20, 1e-38, 1e20};
  return sc[m % 8];
}

static void fill(const attn_tensor *t, gen *g, double scale, double shift) {
  for (int64_t b = 0; b < t->shape[0]; b++)
    for (int64_t i = 0; i < t->shape[1]; i++)
      for (int64_t h = 0; h < t->shape[2]; h++)
        for (int64_t x = 0; x < t->shape[3]; x++)
          fz_set(t, b, i, h, x, value(g, scale, shift));
}

/* ---- the oracle: dense inputs ----------------------------------------- */

/* phi(x) = elu(x) + 1 in double, and a bound on the library's f32 error
 * (see "The bounds"); NaN for NaN. */
ORACLE static double phi_of(double x, double *err) {
  if (isnan(x)) {
    *err = INFINITY;
    return NAN;
  }
  if (x > 0) {
    *err = U32 * (x + 1.0);
    return x + 1.0;
  }
  if (x == -INFINITY) {
    *err = 0.0;
    return 0.0;
  }
  const double a = exp(x);
  double e = (2.0 * fabs(x) + 10.0) * U32 * a + ETA;
  if (x * 1.4426950408889634 < -126.0)
    e += a; /* 2^(x log2e) may round to 2^-127, which is 0 */
  *err = e;
  return a;
}

typedef struct dense {
  double *a, *ea; /* phi(q), its error  [B][SQ][HQ][D]  */
  double *b, *eb; /* phi(k)             [B][SK][HK][D]  */
  double *v;      /* [B][SK][HK][DV]                    */
  double *g;      /* dout [B][SQ][HQ][DV], backward only */
} dense;

#define IQ(c, b_, i, h, x)                                                     \
  ((((b_) * (c)->SQ + (i)) * (c)->HQ + (h)) * (c)->D + (x))
#define IK(c, b_, j, g, x)                                                     \
  ((((b_) * (c)->SK + (j)) * (c)->HK + (g)) * (c)->D + (x))
#define IV(c, b_, j, g, x)                                                     \
  ((((b_) * (c)->SK + (j)) * (c)->HK + (g)) * (c)->DV + (x))
#define IO(c, b_, i, h, x)                                                     \
  ((((b_) * (c)->SQ + (i)) * (c)->HQ + (h)) * (c)->DV + (x))
#define IR(c, b_, i, h) (((b_) * (c)->SQ + (i)) * (c)->HQ + (h))

ORACLE static double *densify_phi(const attn_tensor *t, double **err) {
  const int64_t n = t->shape[0] * t->shape[1] * t->shape[2] * t->shape[3];
  double *f = xcalloc((size_t)n, sizeof *f), *e = xcalloc((size_t)n, sizeof *e);
  int64_t k = 0;
  for (int64_t b = 0; b < t->shape[0]; b++)
    for (int64_t i = 0; i < t->shape[1]; i++)
      for (int64_t h = 0; h < t->shape[2]; h++)
        for (int64_t x = 0; x < t->shape[3]; x++, k++)
          f[k] = phi_of(fz_get(t, b, i, h, x), &e[k]);
  *err = e;
  return f;
}

ORACLE static double *densify(const attn_tensor *t) {
  const int64_t n = t->shape[0] * t->shape[1] * t->shape[2] * t->shape[3];
  double *f = xcalloc((size_t)n, sizeof *f);
  int64_t k = 0;
  for (int64_t b = 0; b < t->shape[0]; b++)
    for (int64_t i = 0; i < t->shape[1]; i++)
      for (int64_t h = 0; h < t->shape[2]; h++)
        for (int64_t x = 0; x < t->shape[3]; x++)
          f[k++] = fz_get(t, b, i, h, x);
  return f;
}

/* Keys row i sees: a prefix [0, n). */
static int64_t nvis(const call *c, attn_causal causal, int64_t i) {
  if (causal == ATTN_CAUSAL_NONE)
    return c->SK;
  const int64_t off = causal == ATTN_CAUSAL_BOTTOM_RIGHT ? c->SK - c->SQ : 0;
  const int64_t l = i + off + 1;
  return l < 0 ? 0 : l > c->SK ? c->SK : l;
}

/* ---- the oracle: forward ---------------------------------------------- */

enum {
  F_ROWBAD = 1, /* a feature of q, or of a key it sees, is not finite */
  F_ROWOVF = 2, /* den or z may overflow                             */
  F_COLBAD = 4, /* some column: a value it sees not finite, or S, num
                   may overflow                                      */
  F_AMB = 8,    /* den's bound straddles FLT_MIN                     */
  F_GUARD = 16, /* den < FLT_MIN for sure                            */
  F_ABAD = 32   /* a feature of q is not finite                      */
};

typedef struct fref {
  double *o, *eo, *num, *en; /* [B][SQ][HQ][DV]     */
  unsigned char *bad;        /* element not checked */
  double *D, *Dlo, *eD;      /* [B][SQ][HQ]         */
  unsigned char *fl;         /* F_* of the row      */
} fref;

static void fref_free(fref *R) {
  free(R->o), free(R->eo), free(R->num), free(R->en), free(R->bad);
  free(R->D), free(R->Dlo), free(R->eD), free(R->fl);
}

ORACLE static void oracle_fwd(const call *c, const dense *X, attn_causal causal,
                              fref *R) {
  const int64_t SK = c->SK, D = c->D, DV = c->DV;
  const size_t ne = (size_t)(c->B * c->SQ * c->HQ * DV);
  const size_t nr = (size_t)(c->B * c->SQ * c->HQ);
  R->o = xcalloc(ne, sizeof(double));
  R->eo = xcalloc(ne, sizeof(double));
  R->num = xcalloc(ne, sizeof(double));
  R->en = xcalloc(ne, sizeof(double));
  R->bad = xcalloc(ne, 1);
  R->D = xcalloc(nr, sizeof(double));
  R->Dlo = xcalloc(nr, sizeof(double));
  R->eD = xcalloc(nr, sizeof(double));
  R->fl = xcalloc(nr, 1);
  /* per (b, g), over the first n keys: any key feature not finite, max_x
   * sum (phi + err), max |v| per column, any v not finite per column */
  unsigned char *kbp = xcalloc((size_t)SK + 1, 1);
  unsigned char *vbp = xcalloc((size_t)((SK + 1) * DV), 1);
  double *zmax = xcalloc((size_t)SK + 1, sizeof(double));
  double *vmx = xcalloc((size_t)((SK + 1) * DV), sizeof(double));
  double *zs = xcalloc((size_t)D, sizeof(double));
  double *w = xcalloc((size_t)SK, sizeof(double));
  double *ew = xcalloc((size_t)SK, sizeof(double));
  for (int64_t b = 0; b < c->B; b++)
    for (int64_t g = 0; g < c->HK; g++) {
      memset(zs, 0, (size_t)D * sizeof *zs);
      for (int64_t j = 0; j < SK; j++) {
        int kb = 0;
        double zm = 0.0;
        for (int64_t x = 0; x < D; x++) {
          const double f = X->b[IK(c, b, j, g, x)],
                       e = X->eb[IK(c, b, j, g, x)];
          kb |= !isfinite(f) || !isfinite(e);
          zs[x] += f + e;
          zm = fmax(zm, mag(zs[x]));
        }
        kbp[j + 1] = kbp[j] | (unsigned char)kb;
        zmax[j + 1] = zm;
        for (int64_t x = 0; x < DV; x++) {
          const double v = X->v[IV(c, b, j, g, x)];
          vbp[(j + 1) * DV + x] = vbp[j * DV + x] | !isfinite(v);
          vmx[(j + 1) * DV + x] = fmax(vmx[j * DV + x], mag(v));
        }
      }
      for (int64_t h = g * c->G; h < (g + 1) * c->G; h++)
        for (int64_t i = 0; i < c->SQ; i++) {
          const int64_t row = IR(c, b, i, h), n = nvis(c, causal, i);
          const double *a = X->a + IQ(c, b, i, h, 0);
          const double *ea = X->ea + IQ(c, b, i, h, 0);
          unsigned char fl = 0;
          double asum = 0.0;
          for (int64_t x = 0; x < D; x++) {
            if (!isfinite(a[x]) || !isfinite(ea[x]))
              fl |= F_ABAD | F_ROWBAD;
            asum += a[x];
          }
          if (kbp[n])
            fl |= F_ROWBAD;
          R->D[row] = R->Dlo[row] = FLT_MIN;
          if (fl & F_ROWBAD) {
            R->fl[row] = fl;
            memset(R->bad + IO(c, b, i, h, 0), 1, (size_t)DV);
            continue;
          }
          if (n == 0) { /* no key: o = 0 exactly (S, z and num are 0) */
            R->fl[row] = fl | F_GUARD;
            continue;
          }
          double den = 0.0, Eden = 0.0;
          for (int64_t j = 0; j < n; j++) {
            const double *bj = X->b + IK(c, b, j, g, 0);
            const double *ebj = X->eb + IK(c, b, j, g, 0);
            double s = 0.0, e = 0.0;
            for (int64_t x = 0; x < D; x++) {
              s += a[x] * bj[x];
              e += ea[x] * bj[x] + a[x] * ebj[x] + ea[x] * ebj[x];
            }
            w[j] = s, ew[j] = e;
            den += s, Eden += e;
          }
          const double P = (double)(D + n + 4), gm = gam(P);
          const double eden =
              gm * (den + Eden) + Eden + 2.0 * ETA * (double)(n * D + D);
          const double Dn = fmax(den, FLT_MIN);
          const double Dhi = fmax(den + eden, FLT_MIN);
          const double Dlo = fmax(den - eden, FLT_MIN);
          const double eD = fmax(Dhi - Dn, Dn - Dlo);
          if (den + eden < FLT_MIN)
            fl |= F_GUARD;
          else if (den - eden < FLT_MIN)
            fl |= F_AMB;
          if (mag(den + eden) > BIG || zmax[n] > BIG)
            fl |= F_ROWOVF;
          R->D[row] = Dn, R->Dlo[row] = Dlo, R->eD[row] = eD;
          for (int64_t x = 0; x < DV; x++) {
            double num = 0.0, nabs = 0.0, Enum = 0.0, vsum = 0.0;
            for (int64_t j = 0; j < n; j++) {
              const double v = X->v[IV(c, b, j, g, x)];
              num += w[j] * v;
              nabs += w[j] * fabs(v);
              Enum += ew[j] * fabs(v);
              vsum += fabs(v);
            }
            const double en = gm * (nabs + Enum) + Enum +
                              2.0 * ETA *
                                  ((double)n * asum + (double)D +
                                   (double)D * vsum + (double)n);
            const double o = num / Dn;
            double eo = (en + fabs(o) * eD) / Dlo;
            eo += (fabs(o) + eo) * (2.0 * U32 + 0x1p-149 * Dhi) + ETA;
            const int colbad = vbp[n * DV + x] || mag(nabs + en) > BIG ||
                               mag(zmax[n] * vmx[n * DV + x]) > BIG;
            if (colbad)
              fl |= F_COLBAD;
            const int64_t e = IO(c, b, i, h, x);
            R->o[e] = o, R->eo[e] = eo, R->num[e] = num, R->en[e] = en;
            R->bad[e] = (unsigned char)(colbad || (fl & F_ROWOVF));
          }
          R->fl[row] = fl;
        }
    }
  free(kbp), free(vbp), free(zmax), free(vmx), free(zs), free(w), free(ew);
}

/* ---- the oracle: backward --------------------------------------------- */

typedef struct bref {
  double *dq, *edq, *dk, *edk, *dv, *edv;
  unsigned char *bq, *bk, *bv; /* not checked */
} bref;

static void bref_free(bref *R) {
  free(R->dq), free(R->edq), free(R->dk), free(R->edk), free(R->dv);
  free(R->edv), free(R->bq), free(R->bk), free(R->bv);
}

/* dq, dk, dv of sum(dout * o) (the formulas of linear_body.h's header, in
 * double, term by term) with their bounds. */
ORACLE static void oracle_bwd(const call *c, const dense *X, attn_causal causal,
                              const fref *F, bref *R) {
  const int64_t SK = c->SK, D = c->D, DV = c->DV;
  const size_t nq = (size_t)(c->B * c->SQ * c->HQ * D);
  const size_t nk = (size_t)(c->B * SK * c->HK * D);
  const size_t nv = (size_t)(c->B * SK * c->HK * DV);
  R->dq = xcalloc(nq, sizeof(double)), R->edq = xcalloc(nq, sizeof(double));
  R->dk = xcalloc(nk, sizeof(double)), R->edk = xcalloc(nk, sizeof(double));
  R->dv = xcalloc(nv, sizeof(double)), R->edv = xcalloc(nv, sizeof(double));
  R->bq = xcalloc(nq, 1), R->bk = xcalloc(nk, 1), R->bv = xcalloc(nv, 1);
  const double gb =
      gam((double)(D + DV + SK + c->SQ * c->G + 16)); /* every gradient */
  const size_t kv = (size_t)(SK * DV), kd = (size_t)(SK * D);
  double *V = xcalloc(kv, sizeof(double)), *Va = xcalloc(kv, sizeof(double));
  double *pV = xcalloc(kv, sizeof(double)), *gmx = xcalloc(kv, sizeof(double));
  double *Rb = xcalloc(kv, sizeof(double));
  unsigned char *dvb = xcalloc(kv, 1);
  double *KD = xcalloc(kd, sizeof(double)), *Ka = xcalloc(kd, sizeof(double));
  double *pK = xcalloc(kd, sizeof(double));
  double *yb = xcalloc((size_t)SK, sizeof(double));
  double *apS = xcalloc((size_t)SK, sizeof(double));
  int64_t *nr = xcalloc((size_t)SK, sizeof(int64_t));
  unsigned char *kt = xcalloc((size_t)SK, 1);
  double *ap = xcalloc((size_t)D, sizeof(double));
  double *eap = xcalloc((size_t)D, sizeof(double));
  double *QD = xcalloc((size_t)D, sizeof(double));
  double *Qa = xcalloc((size_t)D, sizeof(double));
  double *pQ = xcalloc((size_t)D, sizeof(double));
  double *zs = xcalloc((size_t)D, sizeof(double));
  unsigned char *gbc = xcalloc((size_t)DV, 1);
  for (int64_t b = 0; b < c->B; b++)
    for (int64_t g = 0; g < c->HK; g++) {
      memset(V, 0, kv * sizeof *V), memset(Va, 0, kv * sizeof *Va);
      memset(pV, 0, kv * sizeof *pV), memset(gmx, 0, kv * sizeof *gmx);
      memset(Rb, 0, kv * sizeof *Rb), memset(dvb, 0, kv);
      memset(KD, 0, kd * sizeof *KD), memset(Ka, 0, kd * sizeof *Ka);
      memset(pK, 0, kd * sizeof *pK);
      memset(yb, 0, (size_t)SK * sizeof *yb);
      memset(apS, 0, (size_t)SK * sizeof *apS);
      memset(nr, 0, (size_t)SK * sizeof *nr), memset(kt, 0, (size_t)SK);
      for (int64_t h = g * c->G; h < (g + 1) * c->G; h++)
        for (int64_t i = 0; i < c->SQ; i++) {
          const int64_t row = IR(c, b, i, h), n = nvis(c, causal, i);
          const unsigned char fl = F->fl[row];
          if (n == 0) { /* no key: dq = 0 exactly (phi'(q) finite) */
            memset(R->bq + IQ(c, b, i, h, 0), (fl & F_ABAD) != 0, (size_t)D);
            continue;
          }
          const double *a = X->a + IQ(c, b, i, h, 0);
          const double *ea = X->ea + IQ(c, b, i, h, 0);
          const double *gi = X->g + IO(c, b, i, h, 0);
          int gbad = 0;
          double gsum = 0.0;
          for (int64_t x = 0; x < DV; x++) {
            gbc[x] = !isfinite(gi[x]);
            gbad |= gbc[x];
            gsum += fabs(gi[x]);
          }
          const double Dn = F->D[row], Dlo = F->Dlo[row], eD = F->eD[row];
          const int rowbad = (fl & (F_ROWBAD | F_ROWOVF)) != 0;
          /* a' = phi(q) / D (pass B) */
          int apbad = rowbad;
          double apmax = 0.0;
          for (int64_t x = 0; x < D && !rowbad; x++) {
            ap[x] = a[x] / Dn;
            eap[x] = (ea[x] + a[x] * eD / Dn) / Dlo * (1.0 + U32) +
                     U32 * ap[x] + ETA;
            if (mag(ap[x] + eap[x]) > BIG)
              apbad = 1; /* documented: a' overflows */
            apmax = fmax(apmax, ap[x] + eap[x]);
          }
          /* t D = -(dout . num) / D, 0 under the guard */
          int tbad = rowbad || (fl & (F_COLBAD | F_AMB)) || gbad;
          double tD = 0.0, etD = 0.0;
          if (!tbad && !(fl & F_GUARD)) {
            double go = 0.0, goa = 0.0, ego = 0.0;
            for (int64_t x = 0; x < DV; x++) {
              const double nm = F->num[IO(c, b, i, h, x)];
              const double en = F->en[IO(c, b, i, h, x)];
              go += gi[x] * nm;
              goa += fabs(gi[x]) * (fabs(nm) + en);
              ego += fabs(gi[x]) * en;
            }
            ego += gam((double)DV + 1.0) * goa + 2.0 * ETA * (double)DV;
            if (mag(goa) > BIG || mag(goa / Dlo) > BIG)
              tbad = 1; /* dout . num is formed before / D */
            tD = -go / Dn;
            etD = (ego + fabs(go) * eD / Dn) / Dlo;
            etD += (fabs(tD) + etD) * U32 + ETA;
          }
          const int taint = tbad || apbad;
          memset(QD, 0, (size_t)D * sizeof *QD);
          memset(Qa, 0, (size_t)D * sizeof *Qa);
          memset(pQ, 0, (size_t)D * sizeof *pQ);
          memset(zs, 0, (size_t)D * sizeof *zs);
          int dwbig = 0; /* some dw_ij D_i may overflow */
          for (int64_t j = 0; j < n; j++) {
            nr[j]++;
            if (taint)
              kt[j] = 1;
            for (int64_t x = 0; x < DV; x++)
              dvb[j * DV + x] |= (unsigned char)(apbad || gbc[x]);
            if (taint && apbad)
              continue;
            const double *bj = X->b + IK(c, b, j, g, 0);
            const double *ebj = X->eb + IK(c, b, j, g, 0);
            const double *vj = X->v + IV(c, b, j, g, 0);
            if (!apbad) { /* dv_j += (w_ij / D_i) dout_i */
              double wp = 0.0, ewp = 0.0;
              for (int64_t x = 0; x < D; x++) {
                wp += ap[x] * bj[x];
                ewp += eap[x] * bj[x] + ap[x] * ebj[x] + eap[x] * ebj[x];
              }
              for (int64_t x = 0; x < DV; x++) {
                const double ag = fabs(gi[x]);
                V[j * DV + x] += wp * gi[x];
                Va[j * DV + x] += wp * ag;
                pV[j * DV + x] += ewp * ag;
                gmx[j * DV + x] = fmax(gmx[j * DV + x], ag);
                Rb[j * DV + x] += apmax * ag;
              }
            }
            if (taint)
              continue;
            /* dw_ij D_i = dout_i . v_j + t_i D_i */
            double gv = 0.0, gva = 0.0;
            for (int64_t x = 0; x < DV; x++) {
              gv += gi[x] * vj[x];
              gva += fabs(gi[x] * vj[x]);
            }
            const double dwD = gv + tD, dwA = gva + fabs(tD);
            dwbig |= mag(dwA) > BIG;
            for (int64_t x = 0; x < D; x++) {
              QD[x] += dwD * bj[x];
              Qa[x] += dwA * bj[x];
              pQ[x] += etD * (bj[x] + ebj[x]) + dwA * ebj[x];
              zs[x] += bj[x];
              KD[j * D + x] += dwD * ap[x];
              Ka[j * D + x] += dwA * ap[x];
              pK[j * D + x] += etD * (ap[x] + eap[x]) + dwA * eap[x];
            }
            yb[j] += (fabs(tD) + etD) * apmax;
            apS[j] += apmax;
          }
          if (dwbig) /* it reaches dq_i and the keys' dk */
            memset(kt, 1, (size_t)n);
          for (int64_t x = 0; x < D; x++) {
            const int64_t e = IQ(c, b, i, h, x);
            if (taint || dwbig || mag(Qa[x] + pQ[x]) > BIG) {
              R->bq[e] = 1;
              continue;
            }
            const double eta = 2.0 * ETA *
                               ((double)n * gsum + (double)DV + 1.0 +
                                (double)DV * zs[x] + (double)n);
            const double eQD = gb * (Qa[x] + pQ[x]) + pQ[x] + eta;
            const double dphi = a[x] > 1.0 ? 1.0 : a[x];
            const double edphi = a[x] > 1.0 ? 0.0 : ea[x];
            const double want = QD[x] * dphi / Dn;
            double err = (eQD * (dphi + edphi) + Qa[x] * edphi) / Dlo +
                         Qa[x] * dphi * eD / (Dlo * Dn);
            /* (da D) phi' is formed before / D: its underflow too is
             * divided by D */
            err += (fabs(want) + err) * 2.0 * U32 + ETA / Dlo + ETA;
            R->dq[e] = want, R->edq[e] = err;
          }
        }
      for (int64_t j = 0; j < SK; j++) {
        if (nr[j] == 0)
          continue; /* no row sees key j: dk = dv = 0 exactly */
        const double *bj = X->b + IK(c, b, j, g, 0);
        const double *ebj = X->eb + IK(c, b, j, g, 0);
        const double *vj = X->v + IV(c, b, j, g, 0);
        const double n = (double)nr[j];
        double bsum = 0.0, vsum = 0.0;
        int rbig = 0;
        for (int64_t x = 0; x < D; x++)
          bsum += bj[x];
        for (int64_t x = 0; x < DV; x++) {
          vsum += fabs(vj[x]);
          rbig |= mag(Rb[j * DV + x]) > BIG;
        }
        for (int64_t x = 0; x < DV; x++) {
          const int64_t e = IV(c, b, j, g, x), k = j * DV + x;
          if (dvb[k] || rbig || mag(Va[k] + pV[k]) > BIG || !isfinite(bsum)) {
            R->bv[e] = 1;
            continue;
          }
          const double eta =
              2.0 * ETA * (n * bsum + (double)D + n * (double)D * gmx[k] + n);
          R->dv[e] = V[k];
          R->edv[e] = gb * (Va[k] + pV[k]) + pV[k] + eta;
        }
        for (int64_t x = 0; x < D; x++) {
          const int64_t e = IK(c, b, j, g, x), k = j * D + x;
          if (kt[j] || rbig || mag(Ka[k] + pK[k]) > BIG || mag(yb[j]) > BIG) {
            R->bk[e] = 1;
            continue;
          }
          const double eta =
              2.0 * ETA *
              (n * vsum + (double)DV + 2.0 * n + (double)DV * apS[j] + 1.0);
          const double eKD = gb * (Ka[k] + pK[k]) + pK[k] + eta;
          const double dphi = bj[x] > 1.0 ? 1.0 : bj[x];
          const double edphi = bj[x] > 1.0 ? 0.0 : ebj[x];
          const double want = KD[k] * dphi;
          double err = eKD * (dphi + edphi) + Ka[k] * edphi;
          err += (fabs(want) + err) * U32 + ETA;
          R->dk[e] = want, R->edk[e] = err;
        }
      }
    }
  free(V), free(Va), free(pV), free(gmx), free(Rb), free(dvb), free(KD);
  free(Ka), free(pK), free(yb), free(apS), free(nr), free(kt), free(ap);
  free(eap), free(QD), free(Qa), free(pQ), free(zs), free(gbc);
}

/* ---- comparing -------------------------------------------------------- */

static double out_unit(attn_dtype dt) {
  return dt == ATTN_DTYPE_BF16  ? ldexp(1, -8)
         : dt == ATTN_DTYPE_F16 ? ldexp(1, -11)
                                : 0.0;
}

static double out_max(attn_dtype dt) {
  return dt == ATTN_DTYPE_F16 ? 65504.0 : 3.4028234663852886e38;
}

/* got against want in a tensor of dtype dt, error bound tol in f32 (the
 * storage's rounding added here: u of bf16 or f16 relative, and half the
 * spacing of its subnormals). A value whose bound reaches past the
 * storage's range may round to the infinity of that side. */
static int close_to(double got, double want, double tol, attn_dtype dt) {
  const double uo = out_unit(dt);
  if (!isfinite(want))
    return !isfinite(got);
  const double t = tol + uo * (fabs(want) + tol) +
                   (dt == ATTN_DTYPE_F16    ? ldexp(1, -25)
                    : dt == ATTN_DTYPE_BF16 ? ldexp(1, -134)
                                            : ldexp(1, -150));
  if (isinf(got))
    return got > 0 ? want + t >= out_max(dt) : want - t <= -out_max(dt);
  return fabs(got - want) <= t;
}

/* A view of the library's output t against want/err/bad laid out like the
 * dense arrays. */
ORACLE static void compare_rows(const attn_tensor *t, int64_t s0, int64_t S,
                                const double *want, const double *err,
                                const unsigned char *bad, const char *what) {
  for (int64_t b = 0; b < t->shape[0]; b++)
    for (int64_t i = 0; i < t->shape[1]; i++)
      for (int64_t h = 0; h < t->shape[2]; h++)
        for (int64_t x = 0; x < t->shape[3]; x++) {
          const int64_t k =
              ((b * S + s0 + i) * t->shape[2] + h) * t->shape[3] + x;
          if (bad[k])
            continue;
          const double got = fz_get(t, b, i, h, x);
          if (!close_to(got, want[k], err[k], t->dtype)) {
            fprintf(stderr,
                    "linear_fuzz: %s[%lld,%lld,%lld,%lld] dtype %d: bound "
                    "%.3g\n",
                    what, (long long)b, (long long)(s0 + i), (long long)h,
                    (long long)x, (int)t->dtype, err[k]);
            fail(what, (long long)(s0 + i), (long long)x, got, want[k]);
          }
        }
}

static void compare(const attn_tensor *t, const double *want, const double *err,
                    const unsigned char *bad, const char *what) {
  compare_rows(t, 0, t->shape[1], want, err, bad, what);
}

/* ---- running the calls ------------------------------------------------ */

static attn_context *generic_ctx(void) {
  static attn_context *ctx;
  if (!ctx) {
    attn_context_options opt;
    attn_context_options_init(&opt);
    opt.isa = ATTN_ISA_GENERIC;
    if (attn_context_create(&ctx, &opt) != ATTN_OK)
      abort();
  }
  return ctx;
}

enum { PH_FWD, PH_BWD };

static attn_status call_phase(attn_context *ctx, const attn_linear_params *p,
                              int ph) {
  return ph == PH_BWD ? attn_linear_backward(ctx, p)
                      : attn_linear_forward(ctx, p);
}

static attn_status ws_phase(attn_context *ctx, const attn_linear_params *p,
                            int ph, size_t *nb) {
  return ph == PH_BWD ? attn_linear_backward_workspace_size(ctx, p, nb)
                      : attn_linear_forward_workspace_size(ctx, p, nb);
}

/* A refused call: not ATTN_OK, a reason (when msg), nothing written
 * (before: every array and extra bytes, as before the call). */
static void expect_refused(attn_status st, const char *msg, const call *c,
                           const snap *before, const void *extra,
                           size_t extra_n, const char *what) {
  if (st == ATTN_OK)
    fail(what, 0, 0, 0, 0);
  if (msg && !msg[0])
    fail("a refused call without a reason", st, 0, 0, 0);
  snap after = take_all(c, extra, extra_n);
  same_or_fail(before, &after, "a refused call wrote memory");
  free(after.p);
}

/* One phase on 1 thread (and when it ran, on 3: the same bits), with a
 * caller workspace when ws. Returns whether it ran. */
static int run_phase(attn_context *ctx, attn_linear_params *p, const call *c,
                     int ph, int invalid, int ws) {
  static const int fo[] = {R_O}, bo[] = {R_DQ, R_DK, R_DV};
  const int *outs = ph == PH_BWD ? bo : fo;
  const int nout = ph == PH_BWD ? 3 : 1;
  attn_tensor ot[3];
  for (int k = 0; k < nout; k++)
    ot[k] = ph == PH_BWD ? (k == 0 ? p->dq : k == 1 ? p->dk : p->dv) : p->o;
  char msg[256];
  p->error_message = msg;
  p->error_message_size = sizeof msg;
  unsigned char *one[3] = {NULL, NULL, NULL};
  for (int t = 0; t < 2; t++) {
    p->num_threads = t == 0 ? 1 : 3;
    msg[0] = '\0';
    size_t need = 12345;
    const attn_status sw = ws_phase(ctx, p, ph, &need);
    if (invalid) {
      snap before = take_all(c, NULL, 0);
      expect_refused(sw, msg, c, &before, NULL, 0,
                     "workspace size accepted an invalid call");
      if (need != 12345)
        fail("a refused workspace size wrote its result", 0, 0, 0, 0);
      msg[0] = '\0';
      const attn_status st = call_phase(ctx, p, ph);
      expect_refused(st, msg, c, &before, NULL, 0,
                     ph ? "backward accepted an invalid call"
                        : "forward accepted an invalid call");
      free(before.p);
      return 0;
    }
    if (sw != ATTN_OK || need == 0) {
      fprintf(stderr, "linear_fuzz: %s\n", msg);
      fail("workspace size refused a valid call", sw, 0, 0, 0);
    }
    unsigned char *wsb = NULL;
    if (ws) { /* exactly the size asked for, at an odd address */
      wsb = xcalloc(1, need + 1);
      p->workspace = wsb + 1;
      p->workspace_size = need;
    }
    for (int k = 0; k < nout; k++)
      scribble(&ot[k]);
    const attn_status st = call_phase(ctx, p, ph);
    p->workspace = NULL;
    p->workspace_size = 0;
    free(wsb);
    if (st != ATTN_OK) {
      fprintf(stderr, "linear_fuzz: %s\n", msg);
      fail(ph ? "backward refused a valid call"
              : "forward refused a valid call",
           st, t, 0, 0);
    }
    for (int k = 0; k < nout; k++) {
      if (!c->arena)
        check_pad(&ot[k], "a valid call wrote outside its elements");
      unsigned char *e = elems_of(&ot[k]);
      if (t == 0) {
        one[k] = e;
      } else {
        if (memcmp(one[k], e, elems_bytes(&ot[k])) != 0)
          fail(ph ? "backward: 1 and 3 threads differ"
                  : "forward: 1 and 3 threads differ",
               outs[k], 0, 0, 0);
        free(e);
        free(one[k]);
      }
    }
  }
  return 1;
}

/* ---- the mutated call --------------------------------------------------- */

/* An axis of t longer than 1 (-1: none), from sel. */
static int long_axis(const attn_tensor *t, unsigned sel) {
  for (int k = 0; k < 4; k++) {
    const int a = (int)((sel + (unsigned)k) % 4);
    if (t->shape[a] > 1)
      return a;
  }
  return -1;
}

static attn_tensor *role_of(attn_linear_params *p, int r) {
  switch (r) {
  case R_Q:
    return &p->q;
  case R_K:
    return &p->k;
  case R_V:
    return &p->v;
  case R_O:
    return &p->o;
  case R_DOUT:
    return &p->dout;
  case R_DQ:
    return &p->dq;
  case R_DK:
    return &p->dk;
  default:
    return &p->dv;
  }
}

/* One call made invalid by kind (1 .. 15) and sel, on a copy of the
 * forward's (or, for kinds that touch the backward's tensors, the
 * backward's) parameters: refused, with a reason, writing nothing. */
static void mutated_call(attn_context *ctx, const attn_linear_params *good,
                         const call *c, unsigned kind, unsigned sel) {
  attn_linear_params p = *good;
  char msg[256];
  msg[0] = '\0';
  p.error_message = msg;
  p.error_message_size = sizeof msg;
  p.num_threads = 1;
  const int nroles = c->bwd ? 8 : 4; /* q k v o [dout dq dk dv] */
  const int r = (int)(sel % (unsigned)nroles);
  int ph = r >= R_DOUT ? PH_BWD : PH_FWD;
  if (r <= R_V && c->bwd && (sel & 128))
    ph = PH_BWD; /* q, k, v of the backward (which does not check o) */
  attn_tensor *t = role_of(&p, r);
  unsigned char *wsb = NULL;
  size_t wsn = 0;
  int need_msg = 1;
  switch (kind) {
  case 1:
    t->data = NULL;
    break;
  case 2: {
    static const int bad[5] = {ATTN_DTYPE_BOOL, ATTN_DTYPE_Q8_0,
                               ATTN_DTYPE_Q4_0, 99, -1};
    t->dtype = (attn_dtype)bad[(sel / 8) % 5];
    break;
  }
  case 3: { /* a shape that differs from its reference */
    switch ((sel / 8) % 8) {
    case 0:
      p.k.shape[0]++;
      break;
    case 1:
      p.v.shape[1]++;
      break;
    case 2:
      p.k.shape[3]++;
      break;
    case 3:
      p.v.shape[2]++;
      break;
    default: { /* an output's axis */
      attn_tensor *u =
          ph == PH_BWD ? role_of(&p, R_DQ + (int)(sel / 64) % 3) : &p.o;
      if (ph == PH_BWD && (sel & 64))
        u = &p.dout;
      u->shape[(sel / 8) % 4]++;
      break;
    }
    }
    break;
  }
  case 4: /* q heads not a multiple of k/v heads */
    p.k.shape[2] = p.v.shape[2] = p.q.shape[2] + 1;
    break;
  case 5: /* a head dim over 256 */
    if (sel & 8)
      p.q.shape[3] = p.k.shape[3] = 257 + (int64_t)(sel / 16);
    else
      p.v.shape[3] = p.o.shape[3] = p.dout.shape[3] = p.dv.shape[3] =
          257 + (int64_t)(sel / 16);
    break;
  case 6:
    t->stride[(sel / 8) % 4] = -1 - (int64_t)(sel / 32);
    break;
  case 7:
    t->shape[(sel / 8) % 4] = (sel & 32) ? 0 : -3;
    break;
  case 8: {
    static const int bad[3] = {3, -1, 100};
    p.causal = (attn_causal)bad[(sel / 8) % 3];
    break;
  }
  case 9:
    p.num_threads = -1 - (int)(sel / 8);
    break;
  case 10: { /* a workspace too small by 1 .. 64 bytes */
    size_t need = 0;
    if (ws_phase(ctx, &p, ph, &need) != ATTN_OK)
      return; /* an invalid call already: nothing to learn here */
    wsn = need;
    wsb = xcalloc(1, wsn);
    p.workspace = wsb;
    const size_t less = 1 + (sel / 8) % 64;
    p.workspace_size = need > less ? need - less : 0;
    break;
  }
  case 11: /* an output's strides share memory */
  case 12: /* an extent past 64 bits */
  {
    attn_tensor *u =
        kind == 11
            ? (ph == PH_BWD ? role_of(&p, R_DQ + (int)(sel / 8) % 3) : &p.o)
            : t;
    const int a = long_axis(u, sel / 32);
    if (a < 0)
      return;
    u->stride[a] = kind == 11 ? 0 : INT64_MAX / 2;
    break;
  }
  case 13: /* an output over another output, or over dout */
    if (!c->bwd)
      return;
    ph = PH_BWD;
    if (sel & 8)
      p.dk.data = p.dq.data;
    else
      p.dv.data = p.dout.data;
    break;
  case 14: { /* a struct size this release does not know */
    const size_t sizes[2] = {sizeof p + 8, 16};
    const int k = (sel / 8) % 2;
    need_msg = k == 0;
    snap before = take_all(c, NULL, 0);
    const attn_status st = ph == PH_BWD
                               ? attn_linear_backward_sized(ctx, &p, sizes[k])
                               : attn_linear_forward_sized(ctx, &p, sizes[k]);
    if (st != ATTN_ERR_ABI)
      fail("an unknown struct size: not ATTN_ERR_ABI", st, k, 0, 0);
    expect_refused(st, need_msg ? msg : NULL, c, &before, NULL, 0,
                   "unknown size");
    free(before.p);
    attn_linear_params q;
    memset(&q, 0x5A, sizeof q);
    attn_linear_params_init_sized(&q, sizeof q - 4 * (1 + sel / 16 % 4));
    for (size_t b = 0; b < sizeof q; b++)
      if (((unsigned char *)&q)[b] != 0x5A)
        fail("init with an unknown size wrote", (long long)b, 0, 0, 0);
    return;
  }
  default: { /* 15: NULL pointers */
    snap before = take_all(c, NULL, 0);
    attn_status st;
    if (sel & 8) {
      st = ws_phase(ctx, &p, ph, NULL);
      if (st != ATTN_ERR_NULL_POINTER)
        fail("workspace size with bytes NULL", st, 0, 0, 0);
      expect_refused(st, msg, c, &before, NULL, 0, "bytes NULL");
    } else {
      st = call_phase(ctx, NULL, ph);
      if (st != ATTN_ERR_NULL_POINTER)
        fail("NULL params", st, 0, 0, 0);
      expect_refused(st, NULL, c, &before, NULL, 0, "NULL params");
    }
    free(before.p);
    return;
  }
  }
  snap before = take_all(c, wsb, wsn);
  size_t nb = 777;
  attn_status st = ws_phase(ctx, &p, ph, &nb);
  if (kind != 10) { /* the workspace size call checks the same */
    expect_refused(st, msg, c, &before, wsb, wsn, "mutated workspace size");
    if (nb != 777)
      fail("a refused workspace size wrote its result", (long long)kind, 0, 0,
           0);
  }
  msg[0] = '\0';
  st = call_phase(ctx, &p, ph);
  if (kind == 10 && st != ATTN_ERR_WORKSPACE_TOO_SMALL)
    fail("a workspace too small: not ATTN_ERR_WORKSPACE_TOO_SMALL", st, 0, 0,
         0);
  expect_refused(st, need_msg ? msg : NULL, c, &before, wsb, wsn,
                 "a mutated call was accepted");
  free(before.p);
  free(wsb);
}

/* ---- the recurrent state ---------------------------------------------- */

/* Rows [s0, s0 + n) of t. */
static attn_tensor rows_of(const attn_tensor *t, int64_t s0, int64_t n) {
  attn_tensor w = *t;
  w.data =
      (char *)t->data + s0 * t->stride[1] * (int64_t)attn_dtype_size(t->dtype);
  w.shape[1] = n;
  return w;
}

static uint64_t rnd(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 0x2545F4914F6CDD1DULL;
}

/* The state's S and z against their sums in double. */
ORACLE static void check_state_sums(const call *c, const dense *X,
                                    const attn_linear_state *s) {
  const float *S = attn_linear_state_s(s), *z = attn_linear_state_z(s);
  if (!S || !z)
    fail("state views NULL", 0, 0, 0, 0);
  const int64_t T = c->SK, D = c->D, DV = c->DV;
  const double gz = gam((double)T + 1.0), gs = gam((double)T + 2.0);
  for (int64_t b = 0; b < c->B; b++)
    for (int64_t g = 0; g < c->HK; g++)
      for (int64_t x = 0; x < D; x++) {
        double sum = 0.0, pert = 0.0;
        for (int64_t j = 0; j < T; j++) {
          sum += X->b[IK(c, b, j, g, x)];
          pert += X->eb[IK(c, b, j, g, x)];
        }
        const double got = z[(b * c->HK + g) * D + x];
        if (isfinite(sum) && isfinite(pert) && sum + pert < BIG &&
            !close_to(got, sum, gz * (sum + pert) + pert, ATTN_DTYPE_F32))
          fail("state z", (long long)g, (long long)x, got, sum);
        for (int64_t y = 0; y < DV; y++) {
          double t = 0.0, ta = 0.0, tp = 0.0;
          for (int64_t j = 0; j < T; j++) {
            const double f = X->b[IK(c, b, j, g, x)],
                         v = X->v[IV(c, b, j, g, y)];
            t += f * v;
            ta += f * fabs(v);
            tp += X->eb[IK(c, b, j, g, x)] * fabs(v);
          }
          const double gs_ = S[((b * c->HK + g) * D + x) * DV + y];
          if (!isfinite(t) || !isfinite(ta + tp) || ta + tp >= BIG)
            continue;
          if (!close_to(gs_, t, gs * (ta + tp) + tp + 2.0 * ETA * (double)T,
                        ATTN_DTYPE_F32))
            fail("state S", (long long)x, (long long)y, gs_, t);
        }
      }
}

static void check_state_zero(const call *c, const attn_linear_state *s) {
  const float *S = attn_linear_state_s(s), *z = attn_linear_state_z(s);
  const int64_t hs = c->B * c->HK;
  if (attn_linear_state_length(s) != 0)
    fail("state length after reset", attn_linear_state_length(s), 0, 0, 0);
  for (int64_t k = 0; k < hs * c->D * c->DV; k++)
    if (S[k] != 0.0f)
      fail("state S after reset", (long long)k, 0, S[k], 0);
  for (int64_t k = 0; k < hs * c->D; k++)
    if (z[k] != 0.0f)
      fail("state z after reset", (long long)k, 0, z[k], 0);
}

/* The state's bytes: length, S and z. */
static snap state_snap(const call *c, const attn_linear_state *s) {
  const size_t ns = (size_t)(c->B * c->HK * c->D * c->DV) * sizeof(float);
  const size_t nz = (size_t)(c->B * c->HK * c->D) * sizeof(float);
  snap x = {xcalloc(1, ns + nz + 8), ns + nz + 8};
  const int64_t len = attn_linear_state_length(s);
  memcpy(x.p, &len, 8);
  memcpy(x.p + 8, attn_linear_state_s(s), ns);
  memcpy(x.p + 8 + ns, attn_linear_state_z(s), nz);
  return x;
}

/* Steps over all tokens in steps drawn by pattern; returns 0 when a step
 * was (rightly) refused. */
static int state_pass(const call *c, attn_linear_state *s,
                      const attn_linear_params *base, unsigned pattern,
                      uint64_t *rs, const fref *F) {
  static const int64_t maxstep[6] = {1, 3, 17, 64, 70, 1 << 20};
  const attn_tensor os = view(c, R_OS);
  int64_t len = attn_linear_state_length(s);
  for (int64_t t0 = 0; t0 < c->SQ;) {
    int64_t n = 1 + (int64_t)(rnd(rs) % (uint64_t)maxstep[pattern % 6]);
    if (pattern % 6 == 3)
      n = 64;
    if (n > c->SQ - t0)
      n = c->SQ - t0;
    attn_linear_params sp = *base;
    char msg[256];
    msg[0] = '\0';
    sp.error_message = msg;
    sp.error_message_size = sizeof msg;
    sp.q = rows_of(&base->q, t0, n);
    sp.k = rows_of(&base->k, t0, n);
    sp.v = rows_of(&base->v, t0, n);
    sp.o = rows_of(&os, t0, n);
    sp.causal = (attn_causal)(rnd(rs) % 3); /* ignored */
    sp.num_threads = (int)(rnd(rs) % 4);    /* ignored */
    const int invalid = self_aliases(&sp.o) || views_overlap(&sp.o, &sp.q) ||
                        views_overlap(&sp.o, &sp.k) ||
                        views_overlap(&sp.o, &sp.v);
    if (invalid) {
      snap before = take_all(c, NULL, 0), sb = state_snap(c, s);
      const attn_status st = attn_linear_state_step(NULL, s, &sp);
      expect_refused(st, msg, c, &before, NULL, 0,
                     "a step accepted an invalid call");
      snap sa = state_snap(c, s);
      same_or_fail(&sb, &sa, "a refused step changed the state");
      free(sa.p), free(sb.p), free(before.p);
      return 0;
    }
    const attn_status st = attn_linear_state_step(NULL, s, &sp);
    if (st != ATTN_OK) {
      fprintf(stderr, "linear_fuzz: %s\n", msg);
      fail("a step refused a valid call", st, (long long)t0, 0, 0);
    }
    if (F) /* each step's rows as it wrote them (os may alias rows) */
      compare_rows(&sp.o, t0, c->SQ, F->o, F->eo, F->bad, "state o");
    len += n;
    if (attn_linear_state_length(s) != len)
      fail("state length", attn_linear_state_length(s), (long long)len, 0, 0);
    t0 += n;
  }
  return 1;
}

/* Mutated steps and states (kind 16): refused, nothing written. */
static void mutated_state(const call *c, attn_linear_state *s,
                          const attn_linear_params *base, unsigned sel) {
  attn_linear_params sp = *base;
  char msg[256];
  msg[0] = '\0';
  sp.error_message = msg;
  sp.error_message_size = sizeof msg;
  sp.o = view(c, R_OS);
  attn_linear_state *other = NULL;
  attn_linear_state *use = s;
  switch (sel % 5) {
  case 4: { /* a struct size this release does not know */
    snap before = take_all(c, NULL, 0), sb = state_snap(c, s);
    const attn_status st =
        attn_linear_state_step_sized(NULL, s, &sp, sizeof sp + 8);
    if (st != ATTN_ERR_ABI)
      fail("a step with an unknown size: not ATTN_ERR_ABI", st, 0, 0, 0);
    expect_refused(st, msg, c, &before, NULL, 0, "step size");
    snap sa = state_snap(c, s);
    same_or_fail(&sb, &sa, "a refused step changed the state");
    free(sa.p), free(sb.p), free(before.p);
    return;
  }
  case 0: /* q rows differ from k rows */
    if (c->SQ < 2)
      return;
    sp.k = rows_of(&base->k, 0, c->SQ - 1);
    sp.v = rows_of(&base->v, 0, c->SQ - 1);
    break;
  case 1: /* a state of other sizes */
    if (attn_linear_state_create(&other, c->B + (sel & 8 ? 1 : 0),
                                 c->HK + (sel & 8 ? 0 : 1), c->D,
                                 c->DV) != ATTN_OK)
      abort();
    use = other;
    break;
  case 2:
    use = NULL;
    break;
  default: { /* bad sizes for create */
    static const int64_t bad[][4] = {{0, 1, 4, 4},
                                     {1, -1, 4, 4},
                                     {1, 1, 257, 4},
                                     {1, 1, 4, 300},
                                     {INT64_MAX / 4, 4, 4, 4},
                                     {1, 1, 0, 4}};
    static const attn_status want[] = {
        ATTN_ERR_INVALID_SHAPE, ATTN_ERR_INVALID_SHAPE, ATTN_ERR_HEAD_DIM,
        ATTN_ERR_HEAD_DIM,      ATTN_ERR_OVERFLOW,      ATTN_ERR_INVALID_SHAPE};
    const unsigned k = (sel / 5) % 6;
    attn_linear_state *x = (attn_linear_state *)&sp;
    const attn_status st = attn_linear_state_create(&x, bad[k][0], bad[k][1],
                                                    bad[k][2], bad[k][3]);
    if (st != want[k] || x != NULL)
      fail("state_create with bad sizes", st, (long long)k, 0, 0);
    if (attn_linear_state_create(NULL, 1, 1, 1, 1) != ATTN_ERR_NULL_POINTER)
      fail("state_create(NULL)", 0, 0, 0, 0);
    attn_linear_state_free(NULL);
    attn_linear_state_reset(NULL);
    if (attn_linear_state_length(NULL) != -1 || attn_linear_state_s(NULL) ||
        attn_linear_state_z(NULL))
      fail("a NULL state's views", 0, 0, 0, 0);
    return;
  }
  }
  snap before = take_all(c, NULL, 0), sb = state_snap(c, s);
  const attn_status st = attn_linear_state_step(NULL, use, &sp);
  expect_refused(st, msg, c, &before, NULL, 0, "a mutated step was accepted");
  snap sa = state_snap(c, s);
  same_or_fail(&sb, &sa, "a refused step changed the state");
  free(sa.p), free(sb.p), free(before.p);
  attn_linear_state_free(other);
}

/* ---- driver ----------------------------------------------------------- */

static const int64_t ratios[8][2] = {{1, 1}, {2, 2}, {2, 1}, {4, 2},
                                     {3, 1}, {4, 4}, {4, 1}, {6, 3}};
static const int64_t lens[16] = {1,   2,   63,  64,  65,  100, 127, 128,
                                 129, 130, 191, 192, 193, 200, 255, 257};
static const int64_t wide_dims[8] = {24, 32, 33, 64, 96, 128, 200, 256};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  bytes in = {data, size};
  const unsigned flags = (unsigned)take(&in, 256);
  const unsigned mode = (unsigned)take(&in, 256);
  const unsigned bb = (unsigned)take(&in, 256);
  const unsigned rb = (unsigned)take(&in, 256);
  const unsigned sqb = (unsigned)take(&in, 256);
  const unsigned skb = (unsigned)take(&in, 256);
  const unsigned db = (unsigned)take(&in, 256);
  const unsigned dvb = (unsigned)take(&in, 256);
  uint64_t seed = 0x9E3779B97F4A7C15ULL;
  for (int i = 0; i < 4; i++)
    seed = seed * 0x100000001B3ULL ^ (uint64_t)take(&in, 256);
  const unsigned qm = (unsigned)take(&in, 256), km = (unsigned)take(&in, 256);
  const unsigned vm = (unsigned)take(&in, 256), gm = (unsigned)take(&in, 256);
  const unsigned kind = (unsigned)take(&in, 32), sel = (unsigned)take(&in, 256);
  const int av = (int)take(&in, 256), at_ = (int)take(&in, 256);
  const unsigned ash = (unsigned)(take(&in, 256) << 8 | take(&in, 256));
  const unsigned steps = (unsigned)take(&in, 256);
  const unsigned wrate = (unsigned)take(&in, 256);

  call c;
  memset(&c, 0, sizeof c);
  c.bwd = (flags & 1) != 0;
  c.state = (flags & 2) != 0;
  const int wild = (flags & 4) != 0, alias = (flags & 8) != 0;
  const int use_generic = (flags & 16) != 0, ws = (flags & 32) != 0;
  c.o_unset = (flags & 64) != 0;
  c.causal = (attn_causal)((mode / 3) % 3);
  switch (mode % 3) {
  case 0: /* short, a few heads, dims up to 24 */
    c.B = 1 + bb % 2;
    c.HQ = ratios[rb % 8][0], c.HK = ratios[rb % 8][1];
    c.SQ = 1 + sqb % 40, c.SK = 1 + skb % 40;
    c.D = 1 + db % 24, c.DV = 1 + dvb % 24;
    break;
  case 1: /* long: across the chunk edges, small dims */
    c.B = 1;
    c.HQ = ratios[rb % 3][0], c.HK = ratios[rb % 3][1];
    c.SQ = lens[sqb % 16] + (sqb >= 128 ? (int64_t)((sqb / 16) % 3) - 1 : 0);
    c.SK = lens[skb % 16] + (skb >= 128 ? (int64_t)((skb / 16) % 3) - 1 : 0);
    if (c.SQ < 1)
      c.SQ = 1;
    if (c.SK < 1)
      c.SK = 1;
    c.D = 1 + db % 8, c.DV = 1 + dvb % 8;
    break;
  default: /* wide: head dims up to 256, short */
    c.B = 1;
    c.HQ = ratios[rb % 4 + (rb % 4 == 3)][0];
    c.HK = ratios[rb % 4 + (rb % 4 == 3)][1]; /* 1/1, 2/2, 2/1, 3/1 */
    c.SQ = 1 + sqb % 10, c.SK = 1 + skb % 10;
    c.D = (db & 128) ? 1 + db % 64 : wide_dims[db % 8];
    c.DV = (dvb & 128) ? 1 + dvb % 64 : wide_dims[dvb % 8];
    break;
  }
  if (c.state) { /* tokens: q, k, v of the same rows, causal */
    c.SK = c.SQ;
    if (c.causal == ATTN_CAUSAL_NONE)
      c.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  }
  /* tens of ms under ASan: the library's work (as lin_threads counts it)
   * and the oracle's (the quadratic form) within budgets, the larger head
   * dim halved until they are */
  for (;;) {
    const double lib =
        (double)(c.B * c.HQ * (c.SQ + c.SK)) * (double)(c.D * c.DV + 64 * c.D);
    const double orc =
        (double)(c.B * c.HQ * c.SQ * c.SK) * (double)(c.D + c.DV);
    if ((lib <= 3e6 && orc <= 1e6) || (c.D == 1 && c.DV == 1))
      break;
    if (c.D >= c.DV)
      c.D = (c.D + 1) / 2;
    else
      c.DV = (c.DV + 1) / 2;
  }
  c.G = c.HQ / c.HK;
  for (int r = 0; r < N_R; r++) {
    int64_t sh[4];
    role_shape(&c, r, sh);
    c.lay[r] = make_layout((unsigned)take(&in, 256), sh, is_out(r));
  }
  place(&c, alias ? av : -1, at_, ash);
  attn_context *ctx = use_generic ? generic_ctx() : NULL;

  gen g;
  g.s = seed ? seed : 1;
  g.wild = wild ? 3 + (int)(wrate % 8) : 0;
  double qs, qsh, ks, ksh;
  qk_mode(qm, &qs, &qsh);
  qk_mode(km, &ks, &ksh);
  attn_linear_params p;
  memset(&p, 0x5A, sizeof p);
  attn_linear_params_init(&p);
  if (p.q.data || p.o.data || p.dv.data || p.q.dtype != ATTN_DTYPE_F32 ||
      p.dq.dtype != ATTN_DTYPE_F32 || p.causal != ATTN_CAUSAL_NONE ||
      p.num_threads != 0 || p.workspace || p.workspace_size ||
      p.error_message || p.error_message_size)
    fail("attn_linear_params_init: not the defaults", 0, 0, 0, 0);
  p.q = view(&c, R_Q);
  p.k = view(&c, R_K);
  p.v = view(&c, R_V);
  p.o = view(&c, R_O);
  p.causal = c.causal;
  fill(&p.q, &g, qs, qsh);
  fill(&p.k, &g, ks, ksh);
  fill(&p.v, &g, vg_scale(vm), 0.0);
  if (c.bwd) {
    p.dout = view(&c, R_DOUT);
    p.dq = view(&c, R_DQ);
    p.dk = view(&c, R_DK);
    p.dv = view(&c, R_DV);
  }

  /* the mutated call (kinds 1 .. 15), before any output is written */
  if (kind >= 1 && kind <= 15)
    mutated_call(ctx, &p, &c, kind, sel);

  dense X;
  memset(&X, 0, sizeof X);
  X.a = densify_phi(&p.q, &X.ea);
  X.b = densify_phi(&p.k, &X.eb);
  X.v = densify(&p.v);
  fref F;
  memset(&F, 0, sizeof F);
  oracle_fwd(&c, &X, c.causal, &F);

  /* forward */
  const int fwd_invalid = self_aliases(&p.o) || views_overlap(&p.o, &p.q) ||
                          views_overlap(&p.o, &p.k) ||
                          views_overlap(&p.o, &p.v);
  double *opar = NULL; /* the forward's o, for the state */
  if (run_phase(ctx, &p, &c, PH_FWD, fwd_invalid, ws)) {
    compare(&p.o, F.o, F.eo, F.bad, "o");
    const size_t ne = (size_t)(c.B * c.SQ * c.HQ * c.DV);
    opar = xcalloc(ne, sizeof(double));
    size_t k = 0;
    for (int64_t b = 0; b < c.B; b++)
      for (int64_t i = 0; i < c.SQ; i++)
        for (int64_t h = 0; h < c.HQ; h++)
          for (int64_t x = 0; x < c.DV; x++)
            opar[k++] = fz_get(&p.o, b, i, h, x);
  }

  /* backward: dout filled now (o may lie on it) */
  if (c.bwd) {
    double gscale = vg_scale(gm);
    fill(&p.dout, &g, gscale, 0.0);
    X.g = densify(&p.dout);
    if (c.o_unset)
      p.o.data = NULL; /* not read */
    const attn_tensor *outs[3] = {&p.dq, &p.dk, &p.dv};
    const attn_tensor *ins[4] = {&p.q, &p.k, &p.v, &p.dout};
    int inv = 0;
    for (int k = 0; k < 3; k++) {
      inv |= self_aliases(outs[k]);
      for (int j = 0; j < 4; j++)
        inv |= views_overlap(outs[k], ins[j]);
      for (int j = 0; j < k; j++)
        inv |= views_overlap(outs[k], outs[j]);
    }
    if (run_phase(ctx, &p, &c, PH_BWD, inv, ws)) {
      bref R;
      memset(&R, 0, sizeof R);
      oracle_bwd(&c, &X, c.causal, &F, &R);
      compare(&p.dq, R.dq, R.edq, R.bq, "dq");
      compare(&p.dk, R.dk, R.edk, R.bk, "dk");
      compare(&p.dv, R.dv, R.edv, R.bv, "dv");
      bref_free(&R);
    }
    p.o = view(&c, R_O);
  }

  /* the recurrent state on the same tokens */
  if (c.state) {
    attn_linear_state *s = NULL;
    if (attn_linear_state_create(&s, c.B, c.HK, c.D, c.DV) != ATTN_OK || !s)
      fail("state_create refused valid sizes", 0, 0, 0, 0);
    check_state_zero(&c, s);
    if (kind == 16)
      mutated_state(&c, s, &p, sel);
    const attn_tensor os = view(&c, R_OS);
    /* an output over q, k or v: steps that do not overlap run and write
     * into the tokens, so only the refusals are checked; an output with
     * stride 0 on its rows takes steps of one token, each over the last */
    const int on_input = c.victim == R_OS && c.target <= R_V;
    const int os_alias = self_aliases(&os);
    uint64_t rs = seed | 1;
    scribble(&os);
    if (state_pass(&c, s, &p, steps, &rs, on_input ? NULL : &F) && !on_input) {
      if (!c.arena)
        check_pad(&os, "a step wrote outside its elements");
      check_state_sums(&c, &X, s);
    }
    if (!on_input && !os_alias && attn_linear_state_length(s) == c.SQ) {
      if (opar) { /* against the parallel form: both within their bounds */
        size_t k = 0;
        for (int64_t b = 0; b < c.B; b++)
          for (int64_t i = 0; i < c.SQ; i++)
            for (int64_t h = 0; h < c.HQ; h++)
              for (int64_t x = 0; x < c.DV; x++, k++) {
                const double got = fz_get(&os, b, i, h, x);
                if (F.bad[k] || !isfinite(got) || !isfinite(opar[k]))
                  continue; /* (each checked against the oracle) */
                /* both within eo of o and their storage's rounding */
                const double tol = 2.0 * F.eo[k] +
                                   (out_unit(os.dtype) + out_unit(p.o.dtype)) *
                                       (fabs(F.o[k]) + F.eo[k]) +
                                   2.0 * ldexp(1, -25);
                if (!close_to(got, opar[k], tol, ATTN_DTYPE_F32))
                  fail("state o vs the parallel o", (long long)i, (long long)x,
                       got, opar[k]);
              }
      }
      unsigned char *first = elems_of(&os);
      attn_linear_state_reset(s);
      check_state_zero(&c, s);
      scribble(&os);
      if (!state_pass(&c, s, &p, steps / 6 + 1, &rs, &F))
        fail("a step refused the second time", 0, 0, 0, 0);
      unsigned char *second = elems_of(&os);
      if (memcmp(first, second, elems_bytes(&os)) != 0)
        fail("the state's outputs differ with other steps", 0, 0, 0, 0);
      free(first), free(second);
    }
    attn_linear_state_free(s);
  }

  free(opar);
  fref_free(&F);
  free(X.a), free(X.ea), free(X.b), free(X.eb), free(X.v), free(X.g);
  release(&c);
  return 0;
}
