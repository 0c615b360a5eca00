/*
 * test_quant: quantised K and V (attn.h, ATTN_DTYPE_Q8_0 / ATTN_DTYPE_Q4_0,
 * GGUF's blocks of 32 along head_dim).
 *
 *   rows       attn_quantize_row against this file's own reference of
 *              ggml's rule (quantize_row_q8_0_ref / q4_0_ref, evaluated in
 *              double with ggml's f32 roundings made explicit), byte for
 *              byte, on random rows and edge cases: an all-zero block, one
 *              huge value, a negative extreme, ties, tiny values (1 / d
 *              overflows), a scale beyond f16 (inf, as in ggml), NaN and
 *              inf inputs (documented: scale NaN, the block dequantises to
 *              NaN); attn_dequantize_row exact (d q in f32); the error of
 *              a block within d / 2 (q8_0) or d (q4_0: the clipped top).
 *   forward    random problems (problem.h, forward profile, head dims
 *              rounded up to multiples of 32) whose K and/or V are then
 *              quantised (q8_0 or q4_0 each, bshd or bhsd, padded in
 *              blocks), plus hand-picked decode shapes (seq_k 1, 63/64/65,
 *              511/512/513, primes; GQA, causal, window, kv_lens): the
 *              tiled and the decode kernels on every ISA against the
 *              double oracle run on the dequantised values (oracle.c
 *              reads the blocks), oracle_compare's rule, the one used for
 *              f32 inputs; 1 and 3 threads bitwise equal.
 *   backward   random backward problems with quantised K/V: dq, dk, dv
 *              (f32|bf16|f16) against the oracle on the dequantised
 *              values (straight-through); 1, 2 and 3 threads bitwise.
 *   cache      q8_0 / q4_0 caches, contiguous and paged, filled by appends
 *              (RoPE on or off): the stored blocks are the quantised
 *              (rotated) rows; attend == attn_forward on the same blocks
 *              (bitwise, both take the decode kernel); paged == contiguous
 *              (bitwise, decode and the tiled fallback with a bias);
 *              against the oracle.
 *   bad input  quantised q, o, dout, dq, dk, dv, bias; head_dim not a
 *              multiple of 32; stride[3] != 1; a cache with head_dim 40;
 *              quantised k_new; o overlapping a quantised k (extents in
 *              bytes of blocks) and o right after it (fine).
 *
 * Environment: ATTN_TEST_SEED, ATTN_TEST_QUICK=1 (fewer cases). Last line:
 * "N passed, N failed".
 */
#include "attn.h"
#include "oracle_bwd.h"
#include "oracle_fwd.h"
#include "problem.h"
#include "test_common.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long n_pass, n_fail;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void
check(int ok, const char *fmt, ...) {
  if (ok) {
    n_pass++;
    return;
  }
  n_fail++;
  if (n_fail > 40)
    return;
  va_list ap;
  va_start(ap, fmt);
  printf("FAIL: ");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
}

#define QB 32
static size_t qbytes(attn_dtype dt) { return dt == ATTN_DTYPE_Q8_0 ? 34 : 18; }
static const char *qname(attn_dtype dt) {
  return dt == ATTN_DTYPE_Q8_0 ? "q8_0" : "q4_0";
}

/* ---------------------------------------------------------------------- */
/* The reference rule (ggml's, in double with its f32 roundings explicit)  */
/* ---------------------------------------------------------------------- */

/* One block of 32 values of x into blk (34 or 18 bytes). */
static void ref_quant_block(attn_dtype dt, const float *x, uint8_t *blk) {
  int finite = 1;
  double amax = 0, mx = 0;
  for (int i = 0; i < QB; i++) {
    if (!isfinite(x[i]))
      finite = 0;
    else if (fabs((double)x[i]) > amax) { /* the first of the largest */
      amax = fabs((double)x[i]);
      mx = x[i];
    }
  }
  uint16_t h;
  if (!finite) { /* documented: scale NaN, quants 0 (q4_0: 8) */
    h = 0x7e00;
    memset(blk + 2, dt == ATTN_DTYPE_Q8_0 ? 0 : 0x88, qbytes(dt) - 2);
    memcpy(blk, &h, 2);
    return;
  }
  /* f32 division and reciprocal: correctly rounded in double, then to f32
   * (double rounding is exact for one division of floats) */
  const float d =
      dt == ATTN_DTYPE_Q8_0 ? (float)(amax / 127.0) : (float)(mx / -8.0);
  const float id = d != 0.0f ? (float)(1.0 / (double)d) : 0.0f;
  h = tc_f32_to_f16(d);
  memcpy(blk, &h, 2);
  if (dt == ATTN_DTYPE_Q8_0) {
    for (int i = 0; i < QB; i++) {
      const double r = round((double)(float)((double)x[i] * id));
      /* |r| <= 127; when id overflowed (tiny d) clamp, NaN (0 inf) -> 0 */
      const int q = r > 127 ? 127 : r < -127 ? -127 : r == r ? (int)r : 0;
      blk[2 + i] = (uint8_t)(int8_t)q;
    }
  } else {
    for (int i = 0; i < QB / 2; i++) {
      int n[2];
      for (int k = 0; k < 2; k++) {
        const float xi = (float)((double)x[i + 16 * k] * id);
        const double v = (double)(float)((double)xi + 8.5);
        n[k] = v >= 15 ? 15 : v > 0 ? (int)v : 0; /* min(15, trunc) */
      }
      blk[2 + i] = (uint8_t)(n[0] | n[1] << 4);
    }
  }
}

static double ref_dequant(attn_dtype dt, const uint8_t *blk, int i) {
  uint16_t h;
  memcpy(&h, blk, 2);
  const double d = tc_f16_to_f32(h);
  if (dt == ATTN_DTYPE_Q8_0)
    return d * (int8_t)blk[2 + i];
  const int nib = i < 16 ? blk[2 + i] & 15 : blk[2 + i - 16] >> 4;
  return d * (nib - 8);
}

/* Compares one row of n values: library bytes == reference bytes, the
 * dequantised values exact, the error within the block's bound. */
static void row_case(attn_dtype dt, const float *x, int64_t n,
                     const char *what) {
  const size_t nb = (size_t)(n / QB) * qbytes(dt);
  uint8_t *got = tc_alloc(nb), *want = tc_alloc(nb);
  float *back = tc_alloc(sizeof(float) * (size_t)n);
  check(attn_quantize_row(dt, x, n, got) == ATTN_OK, "%s %s: quantize status",
        qname(dt), what);
  for (int64_t b = 0; b < n / QB; b++)
    ref_quant_block(dt, x + b * QB, want + (size_t)b * qbytes(dt));
  int64_t bad = -1;
  for (size_t i = 0; i < nb && bad < 0; i++)
    if (got[i] != want[i])
      bad = (int64_t)i;
  check(bad < 0, "%s %s: byte %lld is %u, the reference gives %u", qname(dt),
        what, (long long)bad, bad >= 0 ? got[bad] : 0,
        bad >= 0 ? want[bad] : 0);
  check(attn_dequantize_row(dt, got, n, back) == ATTN_OK,
        "%s %s: dequantize status", qname(dt), what);
  int exact = 1, within = 1;
  for (int64_t i = 0; i < n; i++) {
    const uint8_t *blk = got + (size_t)(i / QB) * qbytes(dt);
    const double r = ref_dequant(dt, blk, (int)(i % QB));
    if (!((double)back[i] == r || (isnan(r) && isnan(back[i]))))
      exact = 0;
    uint16_t h;
    memcpy(&h, blk, 2);
    const double d = fabs((double)tc_f16_to_f32(h));
    /* finite inputs whose scale is finite and normal in f16: |err| <=
     * d / 2 (q8_0), d (q4_0, the top nibble is clipped at 15), plus the
     * f16 rounding of d times the largest quant */
    if (isfinite(d) && d >= 6.2e-5 && isfinite(x[i])) {
      const double lim = (dt == ATTN_DTYPE_Q8_0 ? 0.5 : 1.0) * d +
                         (dt == ATTN_DTYPE_Q8_0 ? 127 : 8) * d * 0x1p-11;
      if (!(fabs(back[i] - (double)x[i]) <= lim))
        within = 0;
    }
  }
  check(exact, "%s %s: dequantised values differ from d * q", qname(dt), what);
  check(within, "%s %s: quantisation error above its bound", qname(dt), what);
  free(got);
  free(want);
  free(back);
}

static void test_rows(tc_rng *r) {
  static const attn_dtype dts[2] = {ATTN_DTYPE_Q8_0, ATTN_DTYPE_Q4_0};
  float x[256];
  for (int t = 0; t < 2; t++) {
    const attn_dtype dt = dts[t];
    for (int it = 0; it < 300; it++) {
      const int64_t n = QB * tc_range(r, 1, 8);
      const double mag = pow(10.0, tc_uniform(r, -6, 5));
      for (int64_t i = 0; i < n; i++)
        x[i] = (float)(tc_normal(r) * mag);
      row_case(dt, x, n, "random");
    }
    memset(x, 0, sizeof x);
    row_case(dt, x, 64, "all zero");
    for (int i = 0; i < 64; i++)
      x[i] = (float)tc_uniform(r, -1, 1);
    x[5] = 3000.0f;
    row_case(dt, x, 64, "one huge value");
    x[5] = -3.0f;
    x[40] = -2.5f;
    row_case(dt, x, 64, "negative extreme");
    for (int i = 0; i < 32; i++)
      x[i] = (float)(i - 16) * 0.5f; /* ties of x / d at .5 */
    row_case(dt, x, 32, "ties");
    for (int i = 0; i < 32; i++)
      x[i] = (float)tc_uniform(r, -1, 1) * 1e-38f;
    row_case(dt, x, 32, "tiny (1 / d overflows)");
    for (int i = 0; i < 32; i++)
      x[i] = (float)tc_uniform(r, -1, 1);
    x[3] = 1e7f;
    row_case(dt, x, 32, "scale beyond f16 (inf)");
    x[3] = NAN;
    row_case(dt, x, 64, "NaN");
    x[3] = -INFINITY;
    row_case(dt, x, 64, "-inf");
    /* the documented non-finite rule: the block is NaN, the next intact */
    uint8_t b[2 * 34];
    float y[64];
    attn_quantize_row(dt, x, 64, b);
    attn_dequantize_row(dt, b, 64, y);
    int nan_blk = 1, next_ok = 1;
    for (int i = 0; i < 32; i++)
      nan_blk &= isnan(y[i]);
    for (int i = 32; i < 64; i++)
      next_ok &= isfinite(y[i]) != 0;
    check(nan_blk && next_ok, "%s: a non-finite input makes its block NaN",
          qname(dt));
  }
  /* bad arguments */
  check(attn_quantize_row(ATTN_DTYPE_F32, x, 32, x) == ATTN_ERR_INVALID_DTYPE,
        "quantize f32: INVALID_DTYPE");
  check(attn_quantize_row(ATTN_DTYPE_Q8_0, x, 33, x) == ATTN_ERR_INVALID_SHAPE,
        "quantize 33 values: INVALID_SHAPE");
  check(attn_quantize_row(ATTN_DTYPE_Q8_0, x, -32, x) == ATTN_ERR_INVALID_SHAPE,
        "quantize -32 values: INVALID_SHAPE");
  check(attn_quantize_row(ATTN_DTYPE_Q4_0, NULL, 32, x) ==
            ATTN_ERR_NULL_POINTER,
        "quantize NULL: NULL_POINTER");
  check(attn_dequantize_row(ATTN_DTYPE_F16, x, 32, x) == ATTN_ERR_INVALID_DTYPE,
        "dequantize f16: INVALID_DTYPE");
  check(attn_dequantize_row(ATTN_DTYPE_Q4_0, x, 31, x) ==
            ATTN_ERR_INVALID_SHAPE,
        "dequantize 31 values: INVALID_SHAPE");
}

/* ---------------------------------------------------------------------- */
/* Quantised copies of a problem's K and V                                */
/* ---------------------------------------------------------------------- */

/* A quantised copy of src (any view, read through the oracle's reader):
 * bshd or bhsd in blocks, pad blocks after each row when padded (their
 * scale NaN). Returns the view; *mem owns the buffer. */
static attn_tensor quantise_view(const attn_tensor *src, attn_dtype dt,
                                 int bhsd, int pad, void **mem) {
  const int64_t b = src->shape[0], s = src->shape[1], h = src->shape[2],
                d = src->shape[3];
  const int64_t rb = d / QB + pad; /* blocks per row, padding included */
  const size_t bs = qbytes(dt);
  const size_t total = (size_t)(b * s * h * rb) * bs;
  uint8_t *buf = tc_alloc(total + 1);
  for (size_t i = 0; i < total; i += bs) { /* NaN scale everywhere */
    buf[i] = 0x00;
    buf[i + 1] = 0x7e;
    memset(buf + i + 2, 0, bs - 2);
  }
  attn_tensor t;
  t.data = buf;
  t.dtype = dt;
  t.shape[0] = b, t.shape[1] = s, t.shape[2] = h, t.shape[3] = d;
  if (bhsd) {
    t.stride[0] = h * s * rb, t.stride[1] = rb, t.stride[2] = s * rb;
  } else {
    t.stride[0] = s * h * rb, t.stride[1] = h * rb, t.stride[2] = rb;
  }
  t.stride[3] = 1;
  float row[256];
  for (int64_t i0 = 0; i0 < b; i0++)
    for (int64_t i1 = 0; i1 < s; i1++)
      for (int64_t i2 = 0; i2 < h; i2++) {
        for (int64_t x = 0; x < d; x++)
          row[x] = (float)oracle_tensor_get(src, i0, i1, i2, x);
        uint8_t *at = buf + (size_t)(i0 * t.stride[0] + i1 * t.stride[1] +
                                     i2 * t.stride[2]) *
                                bs;
        for (int64_t k = 0; k < d / QB; k++)
          ref_quant_block(dt, row + k * QB, at + (size_t)k * bs);
      }
  *mem = buf;
  return t;
}

static int64_t round32(int64_t d) {
  const int64_t r = (d + QB - 1) / QB * QB;
  return r > 256 ? 256 : r;
}

/* Replaces p's k and/or v by quantised copies (at least one of them). */
static void quantise_kv(tc_rng *r, attn_params *p, void *mem[2],
                        attn_dtype kv_dt[2]) {
  attn_tensor *kv[2] = {&p->k, &p->v};
  const int which = (int)tc_below(r, 3); /* 0: k, 1: v, 2: both */
  for (int t = 0; t < 2; t++) {
    mem[t] = NULL;
    kv_dt[t] = kv[t]->dtype;
    if (which != 2 && which != t)
      continue;
    kv_dt[t] = tc_chance(r, 0.5) ? ATTN_DTYPE_Q8_0 : ATTN_DTYPE_Q4_0;
    *kv[t] = quantise_view(kv[t], kv_dt[t], tc_chance(r, 0.3),
                           tc_chance(r, 0.3) ? 1 : 0, &mem[t]);
  }
}

static const attn_isa all_isas[4] = {ATTN_ISA_GENERIC, ATTN_ISA_AVX2,
                                     ATTN_ISA_AVX512, ATTN_ISA_AVX512_BF16};

/* attn_forward on every ISA against the oracle; then 1 vs 3 threads. */
static void forward_check(attn_params *p, tp_bufs *m, const tp_problem *c,
                          const char *what) {
  oracle_ref ref;
  oracle_naive nv;
  if (oracle_forward(p, &ref) != 0 || oracle_naive_f32(p, &nv) != 0) {
    fprintf(stderr, "test_quant: oracle out of memory\n");
    exit(2);
  }
  for (int k = 0; k < 4; k++) {
    if (!attn_isa_supported(all_isas[k]))
      continue;
    p->isa = all_isas[k];
    tp_reset_forward(c, p, m);
    const attn_status st = attn_forward(NULL, p);
    if (st != ATTN_OK) {
      check(0, "%s isa %s: attn_forward: %s (%s)", what,
            attn_isa_name(all_isas[k]), attn_strerror(st), p->error_message);
      continue;
    }
    oracle_cmp cmp;
    oracle_compare(p, &ref, &nv, &cmp);
    check(cmp.ok, "%s isa %s: %s", what, attn_isa_name(all_isas[k]),
          cmp.problem);
    if (!cmp.ok && n_fail < 10)
      tp_describe(stdout, c);
  }
  /* determinism: 1 and 3 threads, widest ISA */
  uint8_t *o1 = tc_alloc(m->bytes[TP_O]);
  float *l1 = tc_alloc(sizeof(float) * (size_t)(m->n_lse + 1));
  int same = 1;
  for (int t = 0; t < 2; t++) {
    p->num_threads = t == 0 ? 1 : 3;
    tp_reset_forward(c, p, m);
    if (attn_forward(NULL, p) != ATTN_OK) {
      same = 0;
      break;
    }
    if (t == 0) {
      memcpy(o1, m->mem[TP_O], m->bytes[TP_O]);
      if (p->lse)
        memcpy(l1, p->lse, sizeof(float) * (size_t)m->n_lse);
    } else {
      same = memcmp(o1, m->mem[TP_O], m->bytes[TP_O]) == 0 &&
             (!p->lse ||
              memcmp(l1, p->lse, sizeof(float) * (size_t)m->n_lse) == 0);
    }
  }
  p->num_threads = c->threads;
  check(same, "%s: 1 and 3 threads differ", what);
  free(o1);
  free(l1);
  oracle_ref_free(&ref);
  oracle_naive_free(&nv);
}

static void test_forward_random(uint64_t seed, int n_cases) {
  for (int i = 0; i < n_cases; i++) {
    tp_problem c;
    tp_generate(&c, &tp_profile_forward, seed, i);
    c.d = round32(c.d);
    c.dv = round32(c.dv);
    c.sinks = 0; /* the lead's feature: checked by its own tests */
    c.compiled = 0;
    c.workspace = 0; /* sized for the unquantised call */
    if (c.packed)
      c.packed = 0;
    if (tp_work(&c) > 4e7)
      continue;
    attn_params p;
    tp_bufs m;
    char err[256] = "";
    tp_build(&c, &p, &m);
    p.error_message = err;
    p.error_message_size = sizeof err;
    tc_rng r = {tc_case_seed(seed ^ 0x9A17, (uint64_t)i)};
    void *mem[2];
    attn_dtype dts[2];
    quantise_kv(&r, &p, mem, dts);
    char what[96];
    snprintf(what, sizeof what, "forward case %d (k %s, v %s, seq_q %lld)", i,
             tp_dtype_name(dts[0]), tp_dtype_name(dts[1]), (long long)c.sq);
    forward_check(&p, &m, &c, what);
    free(mem[0]);
    free(mem[1]);
    tp_bufs_free(&m);
  }
}

/* Hand-picked decode shapes: the chunk and sub-tile edges. */
static void test_forward_decode(uint64_t seed, int quick) {
  static const int64_t sks[] = {1, 2, 31, 63, 64, 65, 97, 511, 512, 513, 1031};
  static const int64_t sqs[] = {1, 2, 4, 5, 48};
  static const int64_t heads[][2] = {{1, 1}, {4, 1}, {8, 2}, {6, 3}, {32, 8}};
  static const int64_t dims[][2] = {
      {32, 32}, {64, 64}, {128, 128}, {96, 32}, {256, 256}};
  tc_rng r = {seed ^ 0xDEC0DE};
  int idx = 0;
  for (size_t a = 0; a < sizeof sks / sizeof sks[0]; a++)
    for (int rep = 0; rep < (quick ? 1 : 3); rep++, idx++) {
      const int64_t *hh = heads[tc_below(&r, 5)];
      const int64_t *dd = dims[tc_below(&r, 5)];
      const int64_t sq = sqs[tc_below(&r, 5)], sk = sks[a];
      const int64_t batch = tc_range(&r, 1, 2);
      tp_problem c;
      tp_problem_init(&c, batch, hh[0], hh[1], sq, sk, dd[0], dd[1]);
      c.index = idx;
      c.seed = tc_case_seed(seed, (uint64_t)idx + 7000);
      c.in_dt = tc_chance(&r, 0.7) ? ATTN_DTYPE_F32 : ATTN_DTYPE_BF16;
      c.causal =
          tc_chance(&r, 0.5) ? ATTN_CAUSAL_BOTTOM_RIGHT : ATTN_CAUSAL_NONE;
      if (tc_chance(&r, 0.3)) {
        c.wl = tc_range(&r, 0, sk);
        c.wr = tc_chance(&r, 0.5) ? -1 : tc_range(&r, 0, 5);
      }
      if (tc_chance(&r, 0.4)) {
        c.kvlens = 1;
        for (int64_t b = 0; b < batch; b++)
          c.kv_lens[b] = (int32_t)tc_range(&r, 0, sk);
      }
      if (tc_chance(&r, 0.2))
        c.softcap = 20.0f;
      c.threads = 1;
      attn_params p;
      tp_bufs m;
      char err[256] = "";
      tp_build(&c, &p, &m);
      p.error_message = err;
      p.error_message_size = sizeof err;
      void *mem[2];
      attn_dtype dts[2];
      quantise_kv(&r, &p, mem, dts);
      char what[128];
      snprintf(what, sizeof what,
               "decode shape %d (sq %lld sk %lld h %lld/%lld d %lld/%lld, k %s "
               "v %s)",
               idx, (long long)sq, (long long)sk, (long long)hh[0],
               (long long)hh[1], (long long)dd[0], (long long)dd[1],
               tp_dtype_name(dts[0]), tp_dtype_name(dts[1]));
      forward_check(&p, &m, &c, what);
      free(mem[0]);
      free(mem[1]);
      tp_bufs_free(&m);
    }
}

/* ---------------------------------------------------------------------- */
/* Backward (straight-through)                                            */
/* ---------------------------------------------------------------------- */

static void test_backward(uint64_t seed, int n_cases) {
  for (int i = 0; i < n_cases; i++) {
    tp_problem c;
    tp_generate(&c, &tp_profile_backward, seed ^ 0xB00, i);
    c.d = round32(c.d);
    c.dv = round32(c.dv);
    c.sinks = c.dsinks = 0;
    c.compiled = 0;
    c.workspace = 0;
    c.packed = 0;
    if (tp_work(&c) > 2e7)
      continue;
    attn_params p;
    tp_bufs m;
    char err[256] = "";
    tp_build(&c, &p, &m);
    p.error_message = err;
    p.error_message_size = sizeof err;
    tc_rng r = {tc_case_seed(seed ^ 0xB0B, (uint64_t)i)};
    void *mem[2];
    attn_dtype dts[2];
    quantise_kv(&r, &p, mem, dts);
    char what[96];
    snprintf(what, sizeof what, "backward case %d (k %s, v %s)", i,
             tp_dtype_name(dts[0]), tp_dtype_name(dts[1]));
    attn_status st = attn_forward(NULL, &p);
    check(st == ATTN_OK, "%s: attn_forward: %s (%s)", what, attn_strerror(st),
          err);
    oracle_grads ref, nv;
    if (st != ATTN_OK || oracle_backward(&p, &ref) != 0 ||
        oracle_backward_f32(&p, &nv) != 0) {
      free(mem[0]);
      free(mem[1]);
      tp_bufs_free(&m);
      continue;
    }
    for (int k = 0; k < 4; k++) {
      if (!attn_isa_supported(all_isas[k]))
        continue;
      p.isa = all_isas[k];
      tp_reset_backward(&m);
      st = attn_backward(NULL, &p);
      if (st != ATTN_OK) {
        check(0, "%s isa %s: attn_backward: %s (%s)", what,
              attn_isa_name(p.isa), attn_strerror(st), err);
        continue;
      }
      oracle_grad_cmp cmp;
      oracle_grads_compare(&p, &ref, &nv, &cmp);
      check(cmp.ok, "%s isa %s: %s", what, attn_isa_name(p.isa), cmp.problem);
      if (!cmp.ok && n_fail < 10)
        tp_describe(stdout, &c);
    }
    /* 1, 2, 3 threads: the same gradient bits */
    const size_t nb[3] = {m.bytes[TP_DQ], m.bytes[TP_DK], m.bytes[TP_DV]};
    void *first[3];
    int same = 1;
    for (int t = 0; t < 3; t++)
      first[t] = tc_alloc(nb[t]);
    for (int n = 1; n <= 3 && same; n++) {
      p.num_threads = n;
      tp_reset_backward(&m);
      if (attn_backward(NULL, &p) != ATTN_OK) {
        same = 0;
        break;
      }
      for (int t = 0; t < 3; t++) {
        void *g = m.mem[TP_DQ + t];
        if (n == 1)
          memcpy(first[t], g, nb[t]);
        else if (memcmp(first[t], g, nb[t]) != 0)
          same = 0;
      }
    }
    check(same, "%s: gradients differ across 1/2/3 threads", what);
    for (int t = 0; t < 3; t++)
      free(first[t]);
    oracle_grads_free(&ref);
    oracle_grads_free(&nv);
    free(mem[0]);
    free(mem[1]);
    tp_bufs_free(&m);
  }
}

/* ---------------------------------------------------------------------- */
/* KV cache                                                               */
/* ---------------------------------------------------------------------- */

typedef struct qcache {
  attn_kv_cache c;
  int32_t lens[3];
  int32_t *table;
  void *k, *v;
} qcache;

static void qcache_make(qcache *q, attn_dtype dt, int64_t ns, int64_t hk,
                        int64_t d, int64_t dv, int64_t cap, int64_t page) {
  memset(q, 0, sizeof *q);
  attn_kv_cache_init(&q->c);
  q->c.dtype = dt;
  q->c.num_seqs = ns;
  q->c.heads_kv = hk;
  q->c.head_dim = d;
  q->c.head_dim_v = dv;
  int64_t rows;
  if (page > 0) {
    const int64_t bps = (cap + page - 1) / page;
    q->c.page_size = page;
    q->c.blocks_per_seq = bps;
    q->c.num_pages = ns * bps + 1;
    q->table = tc_alloc(sizeof(int32_t) * (size_t)(ns * bps));
    for (int64_t s = 0; s < ns; s++) /* sequences interleaved, page 0 idle */
      for (int64_t b = 0; b < bps; b++)
        q->table[s * bps + b] = (int32_t)(1 + b * ns + (ns - 1 - s));
    q->c.block_table = q->table;
    rows = q->c.num_pages * page;
  } else {
    q->c.capacity = cap;
    rows = ns * cap;
  }
  const size_t bs = qbytes(dt);
  q->k = tc_alloc((size_t)(rows * hk * d / QB) * bs);
  q->v = tc_alloc((size_t)(rows * hk * dv / QB) * bs);
  memset(q->k, 0, (size_t)(rows * hk * d / QB) * bs);
  memset(q->v, 0, (size_t)(rows * hk * dv / QB) * bs);
  q->c.k = q->k;
  q->c.v = q->v;
  q->c.seq_lens = q->lens;
}

static void qcache_free(qcache *q) {
  free(q->k);
  free(q->v);
  free(q->table);
}

static void test_cache(uint64_t seed, int n_cases) {
  tc_rng r = {seed ^ 0xCAC4E};
  for (int it = 0; it < n_cases; it++) {
    const attn_dtype dt = it % 2 ? ATTN_DTYPE_Q4_0 : ATTN_DTYPE_Q8_0;
    const int64_t ns = tc_range(&r, 1, 3), hk = tc_range(&r, 1, 3);
    const int64_t hq = hk * tc_range(&r, 1, 4);
    const int64_t d = 32 * tc_range(&r, 1, 4), dv = 32 * tc_range(&r, 1, 3);
    const int64_t page = tc_range(&r, 1, 70);
    /* a whole number of pages: both caches have the same capacity (the
     * bias's key axis) */
    const int64_t cap = page * tc_range(&r, 1, 700 / page + 1);
    const int rope = tc_chance(&r, 0.5);
    const int64_t sq = tc_range(&r, 1, 6);
    qcache cc, pc;
    qcache_make(&cc, dt, ns, hk, d, dv, cap, 0);
    qcache_make(&pc, dt, ns, hk, d, dv, cap, page);
    attn_rope ro;
    attn_rope_init(&ro);
    /* appends of random sizes; k_new f32 random */
    int64_t filled[3] = {0, 0, 0};
    int64_t target[3];
    for (int64_t s = 0; s < ns; s++)
      target[s] = tc_range(&r, 0, cap);
    int ok = 1;
    for (int round = 0; round < 4 && ok; round++) {
      const int64_t seq_new = tc_range(&r, 1, cap);
      float *kn = tc_alloc(sizeof(float) * (size_t)(ns * seq_new * hk * d));
      float *vn = tc_alloc(sizeof(float) * (size_t)(ns * seq_new * hk * dv));
      for (int64_t i = 0; i < ns * seq_new * hk * d; i++)
        kn[i] = (float)tc_normal(&r);
      for (int64_t i = 0; i < ns * seq_new * hk * dv; i++)
        vn[i] = (float)tc_normal(&r);
      int32_t nn[3];
      for (int64_t s = 0; s < ns; s++) {
        int64_t want = round == 3 ? target[s] - filled[s]
                                  : tc_range(&r, 0, target[s] - filled[s]);
        nn[s] = (int32_t)(want < seq_new ? want : seq_new);
        filled[s] += nn[s];
      }
      attn_tensor kt = attn_tensor_bshd(kn, ATTN_DTYPE_F32, ns, seq_new, hk, d);
      attn_tensor vt =
          attn_tensor_bshd(vn, ATTN_DTYPE_F32, ns, seq_new, hk, dv);
      /* expected blocks of the contiguous cache (no RoPE: the rows as
       * given; with RoPE: checked through attend == forward below) */
      const int32_t before0 = cc.lens[0];
      attn_status s1 =
          attn_kv_cache_append(NULL, &cc.c, kt, vt, nn, rope ? &ro : NULL);
      attn_status s2 =
          attn_kv_cache_append(NULL, &pc.c, kt, vt, nn, rope ? &ro : NULL);
      ok = s1 == ATTN_OK && s2 == ATTN_OK;
      check(ok, "cache %d: append: %s / %s", it, attn_strerror(s1),
            attn_strerror(s2));
      if (ok && !rope && nn[0] > 0) {
        uint8_t want[8 * 34];
        const size_t rowb = (size_t)(d / QB) * qbytes(dt);
        const uint8_t *got =
            (const uint8_t *)cc.k + (size_t)(before0 * hk) * rowb;
        attn_quantize_row(dt, kn, d, want);
        check(memcmp(got, want, rowb) == 0,
              "cache %d: stored k row != attn_quantize_row of k_new", it);
      }
      free(kn);
      free(vn);
    }
    if (!ok) {
      qcache_free(&cc);
      qcache_free(&pc);
      continue;
    }
    /* attend: contiguous, paged, attn_forward on the contiguous blocks */
    float *qd = tc_alloc(sizeof(float) * (size_t)(ns * sq * hq * d));
    for (int64_t i = 0; i < ns * sq * hq * d; i++)
      qd[i] = (float)tc_normal(&r);
    const size_t no = (size_t)(ns * sq * hq * dv), nl = (size_t)(ns * hq * sq);
    float *o[3], *l[3];
    for (int k = 0; k < 3; k++) {
      o[k] = tc_alloc(sizeof(float) * no);
      l[k] = tc_alloc(sizeof(float) * nl);
    }
    const int bias = tc_chance(&r, 0.3);
    float *bias_mem = NULL;
    attn_params p;
    attn_params_init(&p);
    char err[256] = "";
    p.error_message = err;
    p.error_message_size = sizeof err;
    p.q = attn_tensor_bshd(qd, ATTN_DTYPE_F32, ns, sq, hq, d);
    p.causal = tc_chance(&r, 0.6) ? ATTN_CAUSAL_BOTTOM_RIGHT : ATTN_CAUSAL_NONE;
    if (bias) { /* the tiled fallback */
      bias_mem = tc_alloc(sizeof(float) * (size_t)(hq * sq * cap));
      for (int64_t i = 0; i < hq * sq * cap; i++)
        bias_mem[i] = (float)tc_uniform(&r, -1, 1);
      p.bias = attn_tensor_contiguous(bias_mem, ATTN_DTYPE_F32, 1, hq, sq, cap);
    }
    attn_status st[2];
    for (int k = 0; k < 2; k++) {
      p.o = attn_tensor_bshd(o[k], ATTN_DTYPE_F32, ns, sq, hq, dv);
      p.lse = l[k];
      p.num_threads = k == 0 ? 1 : 3;
      st[k] = attn_kv_cache_attend(NULL, k == 0 ? &cc.c : &pc.c, &p,
                                   rope ? &ro : NULL);
    }
    check(st[0] == ATTN_OK && st[1] == ATTN_OK,
          "cache %d: attend: %s / %s (%s)", it, attn_strerror(st[0]),
          attn_strerror(st[1]), err);
    check(memcmp(o[0], o[1], no * 4) == 0 && memcmp(l[0], l[1], nl * 4) == 0,
          "cache %d (%s, page %lld%s): paged != contiguous", it, qname(dt),
          (long long)page, bias ? ", bias" : "");
    /* attn_forward on the same blocks, queries rotated as attend does */
    float *qr = qd;
    if (rope) {
      qr = tc_alloc(sizeof(float) * (size_t)(ns * sq * hq * d));
      attn_tensor qi = attn_tensor_bshd(qd, ATTN_DTYPE_F32, ns, sq, hq, d);
      attn_tensor qo = attn_tensor_bshd(qr, ATTN_DTYPE_F32, ns, sq, hq, d);
      int64_t offs[3];
      for (int64_t s = 0; s < ns; s++)
        offs[s] = cc.lens[s] - sq;
      attn_rope_apply(&ro, qi, qo, NULL, 0, offs, 0);
    }
    attn_params f = p;
    f.q = attn_tensor_bshd(qr, ATTN_DTYPE_F32, ns, sq, hq, d);
    f.k = attn_tensor_bshd(cc.k, dt, ns, cap, hk, d);
    f.v = attn_tensor_bshd(cc.v, dt, ns, cap, hk, dv);
    f.kv_lens = cc.lens;
    f.o = attn_tensor_bshd(o[2], ATTN_DTYPE_F32, ns, sq, hq, dv);
    f.lse = l[2];
    f.num_threads = 2;
    attn_status sf = attn_forward(NULL, &f);
    check(sf == ATTN_OK, "cache %d: attn_forward: %s (%s)", it,
          attn_strerror(sf), err);
    if (!bias)
      check(memcmp(o[0], o[2], no * 4) == 0 && memcmp(l[0], l[2], nl * 4) == 0,
            "cache %d (%s): attend != attn_forward on the same blocks", it,
            qname(dt));
    /* the oracle on the dequantised blocks */
    oracle_ref ref;
    oracle_naive nv;
    if (sf == ATTN_OK && oracle_forward(&f, &ref) == 0 &&
        oracle_naive_f32(&f, &nv) == 0) {
      f.o.data = o[0];
      f.lse = l[0];
      oracle_cmp cmp;
      oracle_compare(&f, &ref, &nv, &cmp);
      check(cmp.ok, "cache %d (%s%s): attend vs oracle: %s", it, qname(dt),
            bias ? ", bias" : "", cmp.problem);
      oracle_ref_free(&ref);
      oracle_naive_free(&nv);
    }
    if (qr != qd)
      free(qr);
    free(qd);
    free(bias_mem);
    for (int k = 0; k < 3; k++) {
      free(o[k]);
      free(l[k]);
    }
    qcache_free(&cc);
    qcache_free(&pc);
  }
}

/* ---------------------------------------------------------------------- */
/* Bad input                                                              */
/* ---------------------------------------------------------------------- */

static void expect(attn_status got, attn_status want, const char *msg,
                   const char *need, const char *what) {
  check(got == want && (!need || strstr(msg, need)), "%s: %s (want %s) \"%s\"",
        what, attn_strerror(got), attn_strerror(want), msg);
}

static void test_bad(void) {
  /* batch 1, seq 4, 2 heads, head_dim 64 */
  static float q[512], o[512], dout[512], dq[512], dk[512], dv[512], lse[8];
  static uint8_t kq[1024], vq[1024];
  memset(kq, 0, sizeof kq);
  memset(vq, 0, sizeof vq);
  attn_params p;
  char msg[256];
  const attn_params *base = &p;
  (void)base;
#define FRESH()                                                                \
  do {                                                                         \
    attn_params_init(&p);                                                      \
    msg[0] = '\0';                                                             \
    p.error_message = msg;                                                     \
    p.error_message_size = sizeof msg;                                         \
    p.q = attn_tensor_bshd(q, ATTN_DTYPE_F32, 1, 4, 2, 64);                    \
    p.k = attn_tensor_bshd(kq, ATTN_DTYPE_Q8_0, 1, 4, 2, 64);                  \
    p.v = attn_tensor_bshd(vq, ATTN_DTYPE_Q4_0, 1, 4, 2, 64);                  \
    p.o = attn_tensor_bshd(o, ATTN_DTYPE_F32, 1, 4, 2, 64);                    \
    p.lse = lse;                                                               \
  } while (0)
  FRESH();
  expect(attn_forward_check(&p), ATTN_OK, msg, NULL, "valid quantised call");
  check(p.k.stride[2] == 2 && p.k.stride[1] == 4 && p.k.stride[3] == 1,
        "attn_tensor_bshd counts blocks for q8_0 (strides %lld %lld %lld)",
        (long long)p.k.stride[1], (long long)p.k.stride[2],
        (long long)p.k.stride[3]);
  FRESH();
  p.q = attn_tensor_bshd(kq, ATTN_DTYPE_Q8_0, 1, 4, 2, 64);
  expect(attn_forward_check(&p), ATTN_ERR_INVALID_DTYPE, msg, "only k and v",
         "q quantised");
  FRESH();
  p.o = attn_tensor_bshd(kq + 600, ATTN_DTYPE_Q4_0, 1, 4, 2, 64);
  expect(attn_forward_check(&p), ATTN_ERR_INVALID_DTYPE, msg, "only k and v",
         "o quantised");
  FRESH();
  p.k = attn_tensor_bshd(kq, ATTN_DTYPE_Q8_0, 1, 4, 2, 40);
  p.q = attn_tensor_bshd(q, ATTN_DTYPE_F32, 1, 4, 2, 40);
  expect(attn_forward_check(&p), ATTN_ERR_HEAD_DIM, msg, "multiple of 32",
         "k head_dim 40");
  FRESH();
  p.v = attn_tensor_bshd(vq, ATTN_DTYPE_Q4_0, 1, 4, 2, 48);
  p.o = attn_tensor_bshd(o, ATTN_DTYPE_F32, 1, 4, 2, 48);
  expect(attn_forward_check(&p), ATTN_ERR_HEAD_DIM, msg, "multiple of 32",
         "v head_dim 48");
  FRESH();
  p.k.stride[3] = 2;
  expect(attn_forward_check(&p), ATTN_ERR_INVALID_STRIDE, msg, "stride[3]",
         "k stride[3] 2");
  FRESH();
  p.bias = attn_tensor_contiguous(kq, ATTN_DTYPE_Q8_0, 1, 2, 4, 32);
  expect(attn_forward_check(&p), ATTN_ERR_INVALID_DTYPE, msg, "bias",
         "bias quantised");
  /* extents in bytes: k's blocks end at 8 rows * 2 blocks * 34 bytes */
  FRESH();
  p.k = attn_tensor_bshd(kq, ATTN_DTYPE_Q8_0, 1, 4, 2, 64);
  const size_t kbytes = 4 * 2 * 2 * 34;
  float *ob = (float *)(void *)(kq + kbytes - 4); /* overlaps the last 4 */
  p.o = attn_tensor_bshd(ob, ATTN_DTYPE_F32, 1, 1, 1, 32);
  p.q = attn_tensor_bshd(q, ATTN_DTYPE_F32, 1, 1, 2, 64);
  p.o = attn_tensor_bshd(ob, ATTN_DTYPE_F32, 1, 1, 2, 64);
  p.lse = NULL;
  expect(attn_forward_check(&p), ATTN_ERR_OVERLAP, msg, "overlaps k",
         "o over k's last block");
  p.o.data = kq + kbytes; /* touching, not overlapping */
  expect(attn_forward_check(&p), ATTN_OK, msg, NULL, "o right after k");
  /* backward: gradients are never quantised */
  const char *gn[4] = {"dout", "dq", "dk", "dv"};
  for (int g = 0; g < 4; g++) {
    FRESH();
    p.dout = attn_tensor_bshd(dout, ATTN_DTYPE_F32, 1, 4, 2, 64);
    p.dq = attn_tensor_bshd(dq, ATTN_DTYPE_F32, 1, 4, 2, 64);
    p.dk = attn_tensor_bshd(dk, ATTN_DTYPE_F32, 1, 4, 2, 64);
    p.dv = attn_tensor_bshd(dv, ATTN_DTYPE_F32, 1, 4, 2, 64);
    expect(attn_backward_check(&p), ATTN_OK, msg, NULL, "valid backward");
    attn_tensor *t[4] = {&p.dout, &p.dq, &p.dk, &p.dv};
    t[g]->dtype = ATTN_DTYPE_Q8_0;
    char what[64];
    snprintf(what, sizeof what, "%s quantised", gn[g]);
    expect(attn_backward_check(&p), ATTN_ERR_INVALID_DTYPE, msg, gn[g], what);
  }
  /* caches */
  attn_kv_cache c;
  attn_kv_cache_init(&c);
  int32_t lens[1] = {0};
  c.dtype = ATTN_DTYPE_Q8_0;
  c.num_seqs = 1;
  c.heads_kv = 1;
  c.head_dim = 40;
  c.capacity = 4;
  c.k = kq;
  c.v = vq;
  c.seq_lens = lens;
  c.error_message = msg;
  c.error_message_size = sizeof msg;
  float kn[256] = {0};
  attn_tensor kt = attn_tensor_bshd(kn, ATTN_DTYPE_F32, 1, 1, 1, 40);
  expect(attn_kv_cache_append(NULL, &c, kt, kt, NULL, NULL), ATTN_ERR_HEAD_DIM,
         msg, "multiple of 32", "q8_0 cache with head_dim 40");
  c.head_dim = 64;
  kt = attn_tensor_bshd(kn, ATTN_DTYPE_F32, 1, 1, 1, 64);
  attn_tensor kqt = attn_tensor_bshd(vq, ATTN_DTYPE_Q8_0, 1, 1, 1, 64);
  expect(attn_kv_cache_append(NULL, &c, kqt, kt, NULL, NULL),
         ATTN_ERR_INVALID_DTYPE, msg, "k_new", "quantised k_new");
  expect(attn_kv_cache_append(NULL, &c, kt, kt, NULL, NULL), ATTN_OK, msg, NULL,
         "q8_0 cache append");
  c.dtype = (attn_dtype)6;
  expect(attn_kv_cache_append(NULL, &c, kt, kt, NULL, NULL),
         ATTN_ERR_INVALID_DTYPE, msg, "q8_0 or q4_0", "cache dtype 6");
#undef FRESH
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  const uint64_t seed = tc_env_ull("ATTN_TEST_SEED", 0x9A4E7ull);
  const int quick = tc_env_ll("ATTN_TEST_QUICK", 0) != 0;
  printf("test_quant: seed 0x%llx%s\n", (unsigned long long)seed,
         quick ? " (quick)" : "");
  tc_rng r = {seed};
  test_rows(&r);
  printf("rows: %ld passed, %ld failed\n", n_pass, n_fail);
  test_bad();
  printf("bad input: %ld passed, %ld failed\n", n_pass, n_fail);
  test_forward_decode(seed, quick);
  printf("forward (decode shapes): %ld passed, %ld failed\n", n_pass, n_fail);
  test_forward_random(seed, quick ? 40 : 250);
  printf("forward (random): %ld passed, %ld failed\n", n_pass, n_fail);
  test_backward(seed, quick ? 20 : 120);
  printf("backward: %ld passed, %ld failed\n", n_pass, n_fail);
  test_cache(seed, quick ? 10 : 60);
  printf("cache: %ld passed, %ld failed\n", n_pass, n_fail);
  printf("%ld passed, %ld failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
