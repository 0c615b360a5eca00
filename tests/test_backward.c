/*
 * attn_backward against the double-precision analytic gradients of
 * oracle_bwd.c, over randomised cases covering every option (GQA/MQA, cross
 * lengths, both causal alignments, windows, softcap, ALiBi, bias + dbias with
 * broadcasting, boolean masks, kv_lens, packed varlen batches, both layouts,
 * f32/bf16/f16 storage, 1/2/3/7 threads, every ISA the CPU has) and edge
 * lengths (1, tile boundaries +-1, primes). Also:
 *   - a finite-difference check of the oracle itself (double precision);
 *   - determinism: bitwise identical gradients for 1, 2, 3 and 7 threads;
 *   - status codes of the backward's own validation.
 *
 * Pass rule per gradient tensor (the forward's, FlashAttention's):
 *   max |kernel - oracle| <= 2 * max |naive f32 - oracle| + floor
 * floor = 1e-5 * max|oracle| over dq, dk, dv and this tensor (+ max|oracle| *
 * 2^-8 for bf16, 2^-11 for f16 outputs). The naive f32 reference runs the same
 * algorithm in plain f32 from the forward's stored O and LSE. Every gradient
 * element must be finite.
 *
 * Environment: ATTN_TEST_CASES (default 1000), ATTN_TEST_SEED,
 * ATTN_TEST_ONLY=<case> (run one case, verbose). The last line is exactly
 * "N passed, N failed".
 */
#include "attn.h"
#include "oracle.h"
#include "oracle_bwd.h"
#include "test_common.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_SEED 0xB5C0FFEEull
#define MAXSEQ 4
#define ATTN_MAX_(a, b) ((a) > (b) ? (a) : (b))

static long g_pass, g_fail;

static void result(int ok, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void result(int ok, const char *fmt, ...) {
  if (ok) {
    g_pass++;
    return;
  }
  g_fail++;
  if (g_fail <= 20) {
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
  }
}

/* ---------------------------------------------------------------------- */
/* Cases                                                                  */
/* ---------------------------------------------------------------------- */
typedef struct bcase {
  int index;
  int64_t batch, sq, sk, hq, hk, d, dv;
  int bhsd;
  attn_dtype in_dt, o_dt, g_dt[3];
  attn_causal causal;
  int64_t wl, wr;
  float softcap, scale;
  int alibi;
  int bias, dbias, bias_bc[4], bias_neginf;
  int mask, mask_bc[4];
  double mask_p;
  int kvlens;
  int32_t kv_lens[MAXSEQ];
  int varlen, nseq;
  int32_t cu_q[MAXSEQ + 1], cu_k[MAXSEQ + 1];
  int64_t tail_q, tail_k; /* varlen: rows past the last sequence */
  int threads;
  int determinism; /* also run with 1, 2, 3, 7 threads and compare bits */
} bcase;

static int64_t pick_len(tc_rng *r, int64_t max) {
  static const int64_t edge[] = {1,  2,  3,  5,  7,  13, 16,  17,  31, 32,
                                 33, 47, 63, 64, 65, 97, 127, 128, 129};
  int64_t n;
  if (tc_chance(r, 0.5))
    n = edge[tc_below(r, (int64_t)(sizeof edge / sizeof edge[0]))];
  else
    n = tc_range(r, 1, max);
  return n > max ? max : n;
}

static attn_dtype pick_dt(tc_rng *r, double p_f32) {
  if (tc_chance(r, p_f32))
    return ATTN_DTYPE_F32;
  return tc_chance(r, 0.5) ? ATTN_DTYPE_BF16 : ATTN_DTYPE_F16;
}

static void case_generate(bcase *c, unsigned long long seed, int index) {
  tc_rng r = {tc_case_seed(seed, (uint64_t)index)};
  memset(c, 0, sizeof *c);
  c->index = index;
  const int big = tc_chance(&r, 0.15);
  const int64_t maxlen = big ? 150 : 70;
  c->hk = tc_chance(&r, 0.3) ? 1 : tc_range(&r, 1, 2);
  c->hq = c->hk * (tc_chance(&r, 0.4) ? 1 : tc_range(&r, 2, 3));
  c->batch = big ? 1 : tc_range(&r, 1, 2);
  static const int64_t dims[] = {1, 3, 8, 16, 17, 32, 40, 64, 72};
  c->d = dims[tc_below(&r, big ? 6 : 9)];
  c->dv = tc_chance(&r, 0.7) ? c->d : dims[tc_below(&r, big ? 6 : 9)];
  if (big && c->hq > 2)
    c->hq = c->hk = 1;
  c->sq = pick_len(&r, maxlen);
  c->sk = tc_chance(&r, 0.4) ? c->sq : pick_len(&r, maxlen);
  c->bhsd = tc_chance(&r, 0.4);
  c->in_dt = pick_dt(&r, 0.6);
  c->o_dt = pick_dt(&r, 0.7);
  for (int t = 0; t < 3; t++)
    c->g_dt[t] = pick_dt(&r, 0.7);
  c->causal = (attn_causal)tc_below(&r, 3);
  c->wl = c->wr = -1;
  if (tc_chance(&r, 0.2)) {
    c->wl = tc_chance(&r, 0.7) ? tc_range(&r, 0, 40) : -1;
    c->wr = tc_chance(&r, 0.5) ? tc_range(&r, 0, 20) : -1;
  }
  c->softcap = tc_chance(&r, 0.2) ? (float)tc_uniform(&r, 0.5, 10.0) : 0.0f;
  c->scale = tc_chance(&r, 0.2) ? (float)tc_uniform(&r, 0.05, 1.0) : 0.0f;
  c->alibi = tc_chance(&r, 0.15);
  c->varlen = tc_chance(&r, 0.15);
  if (c->varlen) {
    c->nseq = (int)tc_range(&r, 1, MAXSEQ);
    c->batch = 1;
    for (int b = 0; b < c->nseq; b++) {
      const int64_t lq = tc_chance(&r, 0.1) ? 0 : pick_len(&r, 60);
      const int64_t lk = tc_chance(&r, 0.1)   ? 0
                         : tc_chance(&r, 0.5) ? lq
                                              : pick_len(&r, 60);
      c->cu_q[b + 1] = c->cu_q[b] + (int32_t)lq;
      c->cu_k[b + 1] = c->cu_k[b] + (int32_t)lk;
    }
    c->tail_q = tc_chance(&r, 0.3) ? tc_range(&r, 1, 5) : 0;
    c->tail_k = tc_chance(&r, 0.3) ? tc_range(&r, 1, 5) : 0;
    c->sq = c->cu_q[c->nseq] + c->tail_q;
    c->sk = c->cu_k[c->nseq] + c->tail_k;
    if (c->sq == 0)
      c->sq = c->tail_q = 1;
    if (c->sk == 0)
      c->sk = c->tail_k = 1;
  } else {
    c->nseq = (int)c->batch;
  }
  c->kvlens = tc_chance(&r, 0.15);
  for (int b = 0; b < c->nseq; b++) {
    const int64_t cap = c->varlen ? c->cu_k[b + 1] - c->cu_k[b] : c->sk;
    c->kv_lens[b] = (int32_t)(tc_chance(&r, 0.1) ? 0 : tc_range(&r, 0, cap));
  }
  c->bias = tc_chance(&r, 0.3);
  c->dbias = c->bias && tc_chance(&r, 0.7);
  c->bias_neginf = tc_chance(&r, 0.2);
  for (int a = 0; a < 4; a++)
    c->bias_bc[a] = tc_chance(&r, 0.4);
  c->mask = tc_chance(&r, 0.2);
  c->mask_p = tc_uniform(&r, 0.3, 1.0);
  for (int a = 0; a < 4; a++)
    c->mask_bc[a] = tc_chance(&r, 0.4);
  static const int thr[] = {1, 2, 3, 7};
  c->threads = thr[tc_below(&r, 4)];
  c->determinism = tc_chance(&r, 0.1);
}

static void case_describe(FILE *f, const bcase *c) {
  static const char *dn[] = {"f32", "bf16", "f16", "bool"};
  fprintf(f,
          "  case %d: batch %lld sq %lld sk %lld hq %lld hk %lld d %lld dv "
          "%lld %s in %s o %s dq/dk/dv %s/%s/%s causal %d window (%lld,%lld) "
          "softcap %g scale %g alibi %d bias %d (bc %d%d%d%d neginf %d) dbias "
          "%d mask %d (bc %d%d%d%d p %.2f) kv_lens %d varlen %d (nseq %d) "
          "threads %d\n",
          c->index, (long long)c->batch, (long long)c->sq, (long long)c->sk,
          (long long)c->hq, (long long)c->hk, (long long)c->d, (long long)c->dv,
          c->bhsd ? "bhsd" : "bshd", dn[c->in_dt], dn[c->o_dt], dn[c->g_dt[0]],
          dn[c->g_dt[1]], dn[c->g_dt[2]], (int)c->causal, (long long)c->wl,
          (long long)c->wr, (double)c->softcap, (double)c->scale, c->alibi,
          c->bias, c->bias_bc[0], c->bias_bc[1], c->bias_bc[2], c->bias_bc[3],
          c->bias_neginf, c->dbias, c->mask, c->mask_bc[0], c->mask_bc[1],
          c->mask_bc[2], c->mask_bc[3], c->mask_p, c->kvlens, c->varlen,
          c->nseq, c->threads);
}

/* ---------------------------------------------------------------------- */
/* Buffers                                                                */
/* ---------------------------------------------------------------------- */
typedef struct bufs {
  void *mem[12];
  float *lse, *slopes, *bias, *dbias;
  uint8_t *mask;
  int32_t kv_lens[MAXSEQ], cu_q[MAXSEQ + 1], cu_k[MAXSEQ + 1];
  size_t gbytes[4];
} bufs;

static attn_tensor make_view(bufs *m, int slot, attn_dtype dt, int bhsd,
                             int64_t b, int64_t s, int64_t h, int64_t d) {
  m->mem[slot] = tc_alloc((size_t)(b * s * h * d) * attn_dtype_size(dt));
  return bhsd ? attn_tensor_bhsd(m->mem[slot], dt, b, s, h, d)
              : attn_tensor_bshd(m->mem[slot], dt, b, s, h, d);
}

static void store(attn_tensor *t, int64_t i0, int64_t i1, int64_t i2,
                  int64_t i3, float x) {
  const int64_t off = i0 * t->stride[0] + i1 * t->stride[1] +
                      i2 * t->stride[2] + i3 * t->stride[3];
  switch (t->dtype) {
  case ATTN_DTYPE_F32:
    ((float *)t->data)[off] = x;
    break;
  case ATTN_DTYPE_BF16:
    ((uint16_t *)t->data)[off] = tc_f32_to_bf16(x);
    break;
  case ATTN_DTYPE_F16:
    ((uint16_t *)t->data)[off] = tc_f32_to_f16(x);
    break;
  default:
    ((uint8_t *)t->data)[off] = x != 0.0f;
  }
}

static void fill(tc_rng *r, attn_tensor *t, double mag) {
  for (int64_t a = 0; a < t->shape[0]; a++)
    for (int64_t b = 0; b < t->shape[1]; b++)
      for (int64_t c = 0; c < t->shape[2]; c++)
        for (int64_t d = 0; d < t->shape[3]; d++)
          store(t, a, b, c, d, (float)(mag * tc_normal(r)));
}

static void case_build(const bcase *c, attn_params *p, bufs *m) {
  tc_rng r = {tc_case_seed(0x5EEDull, (uint64_t)c->index)};
  memset(m, 0, sizeof *m);
  attn_params_init(p);
  const int64_t B = c->batch;
  p->q = make_view(m, 0, c->in_dt, c->bhsd, B, c->sq, c->hq, c->d);
  p->k = make_view(m, 1, c->in_dt, c->bhsd, B, c->sk, c->hk, c->d);
  p->v = make_view(m, 2, c->in_dt, c->bhsd, B, c->sk, c->hk, c->dv);
  p->o = make_view(m, 3, c->o_dt, c->bhsd, B, c->sq, c->hq, c->dv);
  p->dout = make_view(m, 4, c->in_dt, c->bhsd, B, c->sq, c->hq, c->dv);
  p->dq = make_view(m, 5, c->g_dt[0], c->bhsd, B, c->sq, c->hq, c->d);
  p->dk = make_view(m, 6, c->g_dt[1], !c->bhsd, B, c->sk, c->hk, c->d);
  p->dv = make_view(m, 7, c->g_dt[2], c->bhsd, B, c->sk, c->hk, c->dv);
  m->gbytes[0] =
      (size_t)(B * c->sq * c->hq * c->d) * attn_dtype_size(c->g_dt[0]);
  m->gbytes[1] =
      (size_t)(B * c->sk * c->hk * c->d) * attn_dtype_size(c->g_dt[1]);
  m->gbytes[2] =
      (size_t)(B * c->sk * c->hk * c->dv) * attn_dtype_size(c->g_dt[2]);
  fill(&r, &p->q, 1.0);
  fill(&r, &p->k, 1.0);
  fill(&r, &p->v, 1.0);
  fill(&r, &p->dout, 1.0);
  m->lse = tc_alloc((size_t)(B * c->hq * c->sq) * sizeof(float));
  p->lse = m->lse;
  p->scale = c->scale;
  p->softcap = c->softcap;
  p->causal = c->causal;
  p->window_left = c->wl;
  p->window_right = c->wr;
  p->num_threads = c->threads;
  if (c->alibi) {
    m->slopes = tc_alloc((size_t)c->hq * sizeof(float));
    attn_alibi_slopes(c->hq, m->slopes);
    p->alibi_slopes = m->slopes;
  }
  int64_t sq_max = c->sq, sk_max = c->sk;
  if (c->varlen) {
    memcpy(m->cu_q, c->cu_q, sizeof m->cu_q);
    memcpy(m->cu_k, c->cu_k, sizeof m->cu_k);
    p->cu_seqlens_q = m->cu_q;
    p->cu_seqlens_k = m->cu_k;
    p->varlen_batch = c->nseq;
    sq_max = sk_max = 1;
    for (int b = 0; b < c->nseq; b++) {
      sq_max = ATTN_MAX_(sq_max, (int64_t)(c->cu_q[b + 1] - c->cu_q[b]));
      sk_max = ATTN_MAX_(sk_max, (int64_t)(c->cu_k[b + 1] - c->cu_k[b]));
    }
  }
  if (c->kvlens) {
    memcpy(m->kv_lens, c->kv_lens, sizeof m->kv_lens);
    p->kv_lens = m->kv_lens;
  }
  const int64_t full[4] = {c->nseq, c->hq, sq_max, sk_max};
  if (c->bias) {
    int64_t sh[4];
    for (int a = 0; a < 4; a++)
      sh[a] = c->bias_bc[a] ? 1 : full[a];
    const int64_t n = sh[0] * sh[1] * sh[2] * sh[3];
    m->bias = tc_alloc((size_t)n * sizeof(float));
    p->bias = attn_tensor_contiguous(m->bias, ATTN_DTYPE_F32, sh[0], sh[1],
                                     sh[2], sh[3]);
    for (int64_t i = 0; i < n; i++)
      m->bias[i] = c->bias_neginf && tc_chance(&r, 0.2) ? -INFINITY
                                                        : (float)tc_normal(&r);
    if (c->dbias) {
      m->dbias = tc_alloc((size_t)n * sizeof(float));
      p->dbias = attn_tensor_contiguous(m->dbias, ATTN_DTYPE_F32, sh[0], sh[1],
                                        sh[2], sh[3]);
      m->gbytes[3] = (size_t)n * sizeof(float);
    }
  }
  if (c->mask) {
    int64_t sh[4];
    for (int a = 0; a < 4; a++)
      sh[a] = c->mask_bc[a] ? 1 : full[a];
    const int64_t n = sh[0] * sh[1] * sh[2] * sh[3];
    m->mask = tc_alloc((size_t)n);
    p->mask = attn_tensor_contiguous(m->mask, ATTN_DTYPE_BOOL, sh[0], sh[1],
                                     sh[2], sh[3]);
    for (int64_t i = 0; i < n; i++)
      m->mask[i] = tc_chance(&r, c->mask_p) ? (uint8_t)tc_range(&r, 1, 255) : 0;
  }
}

static void bufs_free(bufs *m) {
  for (int i = 0; i < 12; i++)
    free(m->mem[i]);
  free(m->lse), free(m->slopes), free(m->bias), free(m->dbias), free(m->mask);
}

static void *grad_data(const attn_params *p, int t) {
  return t == 0   ? p->dq.data
         : t == 1 ? p->dk.data
         : t == 2 ? p->dv.data
                  : p->dbias.data;
}

static void poison(const attn_params *p, const bufs *m) {
  for (int t = 0; t < 4; t++)
    if (m->gbytes[t])
      memset(grad_data(p, t), 0x7F, m->gbytes[t]); /* NaN in every dtype */
}

/* Contiguous oracle index -> element of the kernel's view, as double. */
static double kernel_value(const attn_params *p, int t, int64_t x) {
  const attn_tensor *v = t == 0   ? &p->dq
                         : t == 1 ? &p->dk
                         : t == 2 ? &p->dv
                                  : &p->dbias;
  const int64_t *s = v->shape;
  const int64_t i3 = x % s[3], i2 = x / s[3] % s[2],
                i1 = x / s[3] / s[2] % s[1], i0 = x / s[3] / s[2] / s[1];
  return oracle_tensor_get(v, i0, i1, i2, i3);
}

/* ---------------------------------------------------------------------- */
/* Statistics                                                             */
/* ---------------------------------------------------------------------- */
static const char *const gname[4] = {"dq", "dk", "dv", "dbias"};
static double worst_budget[4], worst_err[4], worst_naive[4];
static int worst_case[4];

static int compare(const bcase *c, const attn_params *p,
                   const oracle_grads *ref, const oracle_grads *nv,
                   attn_isa isa, char *why, size_t why_size) {
  int ok = 1;
  for (int t = 0; t < 4; t++) {
    if (!ref->n[t])
      continue;
    double err = 0, en = 0;
    int64_t bad = -1, nonfinite = 0;
    const attn_dtype dt = t == 0   ? p->dq.dtype
                          : t == 1 ? p->dk.dtype
                          : t == 2 ? p->dv.dtype
                                   : ATTN_DTYPE_F32;
    for (int64_t x = 0; x < ref->n[t]; x++) {
      const double kv = kernel_value(p, t, x);
      if (!isfinite(kv)) {
        nonfinite++;
        continue;
      }
      const double e = fabs(kv - ref->g[t][x]);
      if (e > err)
        err = e, bad = x;
      const double e2 = fabs(nv->g[t][x] - ref->g[t][x]);
      if (isfinite(e2) && e2 > en)
        en = e2;
    }
    /* gmax_all: a gradient can vanish by cancellation (one visible key:
     * dS = P (dP - D) = 0 exactly), so the floor takes the scale of all */
    const double gmax_all = fmax(fmax(ref->gmax[0], ref->gmax[1]),
                                 fmax(ref->gmax[2], ref->gmax[t]));
    double floor = 1e-5 * gmax_all + 1e-7;
    if (dt == ATTN_DTYPE_BF16)
      floor += ref->gmax[t] * ldexp(1.0, -8);
    else if (dt == ATTN_DTYPE_F16)
      floor += ref->gmax[t] * ldexp(1.0, -11);
    const double allowed = 2 * en + floor;
    const double b = err / allowed;
    if (b > worst_budget[t]) {
      worst_budget[t] = b;
      worst_err[t] = err;
      worst_naive[t] = en;
      worst_case[t] = c->index;
    }
    if (nonfinite && ok) {
      snprintf(why, why_size, "isa %s: %s has %lld non-finite elements",
               attn_isa_name(isa), gname[t], (long long)nonfinite);
      ok = 0;
    } else if (b > 1.0 && ok) {
      snprintf(why, why_size,
               "isa %s: %s err %.3g at %lld (got %.9g want %.9g) > 2 * naive "
               "%.3g + floor %.3g",
               attn_isa_name(isa), gname[t], err, (long long)bad,
               kernel_value(p, t, bad), ref->g[t][bad], en, floor);
      ok = 0;
    }
  }
  return ok;
}

/* ---------------------------------------------------------------------- */
/* Randomised cases                                                       */
/* ---------------------------------------------------------------------- */
static double t_oracle, t_kernel;

static void run_case(const bcase *c, const attn_isa *isas, int n_isas,
                     int verbose) {
  attn_params p;
  bufs m;
  char err[256] = "";
  case_build(c, &p, &m);
  p.error_message = err;
  p.error_message_size = sizeof err;
  if (verbose)
    case_describe(stdout, c);
  attn_status st = attn_forward(NULL, &p);
  if (st != ATTN_OK) {
    result(0, "case %d: attn_forward: %s (%s)", c->index, attn_strerror(st),
           err);
    case_describe(stdout, c);
    bufs_free(&m);
    return;
  }
  oracle_grads ref, nv;
  double t0 = tc_now();
  if (oracle_backward(&p, &ref) != 0 || oracle_backward_f32(&p, &nv) != 0) {
    fprintf(stderr, "test_backward: oracle out of memory\n");
    exit(2);
  }
  t_oracle += tc_now() - t0;
  for (int k = 0; k < n_isas; k++) {
    char why[512] = "";
    p.isa = isas[k];
    poison(&p, &m);
    t0 = tc_now();
    st = attn_backward(NULL, &p);
    t_kernel += tc_now() - t0;
    int ok;
    if (st != ATTN_OK) {
      snprintf(why, sizeof why, "isa %s: attn_backward: %s (%s)",
               attn_isa_name(isas[k]), attn_strerror(st), err);
      ok = 0;
    } else {
      ok = compare(c, &p, &ref, &nv, isas[k], why, sizeof why);
    }
    result(ok, "case %d: %s", c->index, why);
    if (!ok && g_fail <= 20)
      case_describe(stdout, c);
    if (verbose)
      printf("    %s %s %s\n", ok ? "ok  " : "FAIL", attn_isa_name(isas[k]),
             why);
  }
  if (c->determinism) {
    /* bitwise identical for every thread count, on the widest ISA */
    void *first[4] = {0};
    static const int thr[] = {1, 2, 3, 7};
    int same = 1;
    p.isa = isas[n_isas - 1];
    for (int i = 0; i < 4 && same; i++) {
      p.num_threads = thr[i];
      poison(&p, &m);
      st = attn_backward(NULL, &p);
      if (st != ATTN_OK) {
        same = 0;
        break;
      }
      for (int t = 0; t < 4; t++) {
        if (!m.gbytes[t])
          continue;
        if (i == 0) {
          first[t] = tc_alloc(m.gbytes[t]);
          memcpy(first[t], grad_data(&p, t), m.gbytes[t]);
        } else if (memcmp(first[t], grad_data(&p, t), m.gbytes[t]) != 0) {
          same = 0;
        }
      }
    }
    for (int t = 0; t < 4; t++)
      free(first[t]);
    result(same, "case %d: gradients differ across thread counts (1/2/3/7)",
           c->index);
  }
  oracle_grads_free(&ref);
  oracle_grads_free(&nv);
  bufs_free(&m);
}

/* ---------------------------------------------------------------------- */
/* Finite differences of the oracle (double precision)                     */
/* ---------------------------------------------------------------------- */
static void fd_check(void) {
  double worst = 0;
  for (int n = 0; n < 6; n++) {
    bcase c;
    memset(&c, 0, sizeof c);
    c.index = 100000 + n;
    c.batch = 1 + (n & 1);
    c.sq = 5 + n;
    c.sk = 7 - (n % 3);
    c.hk = 1 + (n % 2);
    c.hq = c.hk * (1 + (n % 3 == 2));
    c.d = 4 + n;
    c.dv = 3 + (n % 4);
    c.in_dt = c.o_dt = ATTN_DTYPE_F32;
    c.causal = (attn_causal)(n % 3);
    c.wl = c.wr = -1;
    if (n == 4)
      c.wl = 2, c.wr = 1;
    c.softcap = n >= 3 ? 2.0f : 0.0f;
    c.alibi = n % 2;
    c.bias = c.dbias = n >= 1;
    c.bias_bc[1] = n % 2;
    c.bias_bc[0] = n == 2;
    c.mask = n == 5;
    c.mask_p = 0.7;
    c.nseq = (int)c.batch;
    c.threads = 1;
    attn_params p;
    bufs m;
    case_build(&c, &p, &m);
    oracle_grads ref;
    if (oracle_backward(&p, &ref) != 0)
      exit(2);
    /* every element of q, k, v and dbias's bias: central differences with
     * an exactly representable step */
    attn_tensor *ts[4] = {&p.q, &p.k, &p.v, &p.bias};
    for (int t = 0; t < 4; t++) {
      if (t == 3 && !p.bias.data)
        continue;
      const int64_t *sh = ts[t]->shape;
      const int64_t cnt = sh[0] * sh[1] * sh[2] * sh[3];
      double gmax = ref.gmax[t] + 1e-3, emax = 0;
      for (int64_t x = 0; x < cnt; x++) {
        const int64_t i3 = x % sh[3], i2 = x / sh[3] % sh[2],
                      i1 = x / sh[3] / sh[2] % sh[1],
                      i0 = x / sh[3] / sh[2] / sh[1];
        const double x0 = oracle_tensor_get(ts[t], i0, i1, i2, i3);
        if (!isfinite(x0))
          continue;
        const double hstep = ldexp(1.0, -10);
        store(ts[t], i0, i1, i2, i3, (float)(x0 + hstep));
        const double lp = oracle_loss(&p);
        store(ts[t], i0, i1, i2, i3, (float)(x0 - hstep));
        const double lm = oracle_loss(&p);
        store(ts[t], i0, i1, i2, i3, (float)x0);
        const double fd = (lp - lm) / (2 * hstep);
        /* oracle index: q/k/v are [b, s, h, d] contiguous, bias row-major */
        int64_t oi;
        if (t == 3)
          oi = x;
        else
          oi = ((i0 * sh[1] + i1) * sh[2] + i2) * sh[3] + i3;
        const double e = fabs(fd - ref.g[t == 3 ? 3 : t][oi]);
        if (e > emax)
          emax = e;
      }
      const double rel = emax / gmax;
      if (rel > worst)
        worst = rel;
      result(rel < 1e-4,
             "finite differences: case %d %s: max err %.3g of max "
             "|grad| %.3g",
             n, gname[t], emax, gmax);
    }
    oracle_grads_free(&ref);
    bufs_free(&m);
  }
  printf("finite differences of the oracle: worst max|fd - analytic| / "
         "max|grad| = %.3g (tolerance 1e-4)\n",
         worst);
}

/* ---------------------------------------------------------------------- */
/* Status codes                                                           */
/* ---------------------------------------------------------------------- */
static void expect(attn_status got, attn_status want, const char *what) {
  result(got == want, "status: %s: got %d (%s), want %d", what, (int)got,
         attn_strerror(got), (int)want);
}

static void status_tests(void) {
  bcase c;
  memset(&c, 0, sizeof c);
  c.index = 200000;
  c.batch = 2, c.sq = 9, c.sk = 11, c.hq = 4, c.hk = 2, c.d = 8, c.dv = 8;
  c.in_dt = c.o_dt = ATTN_DTYPE_F32;
  c.wl = c.wr = -1;
  c.bias = c.dbias = 1;
  c.bias_bc[1] = 1;
  c.nseq = 2, c.threads = 2;
  attn_params p, q;
  bufs m;
  case_build(&c, &p, &m);
  expect(attn_forward(NULL, &p), ATTN_OK, "forward");
  expect(attn_backward_check(&p), ATTN_OK, "valid check");
  expect(attn_backward(NULL, &p), ATTN_OK, "valid");
  expect(attn_backward(NULL, NULL), ATTN_ERR_NULL_POINTER, "NULL params");
  expect(attn_backward_check(NULL), ATTN_ERR_NULL_POINTER, "NULL check");
#define MUT(what, want, stmt)                                                  \
  do {                                                                         \
    q = p;                                                                     \
    stmt;                                                                      \
    expect(attn_backward(NULL, &q), want, what);                               \
    expect(attn_backward_check(&q), want, what " (check)");                    \
  } while (0)
  MUT("lse NULL", ATTN_ERR_NULL_POINTER, q.lse = NULL);
  MUT("dout NULL", ATTN_ERR_NULL_POINTER, q.dout.data = NULL);
  MUT("dq NULL", ATTN_ERR_NULL_POINTER, q.dq.data = NULL);
  MUT("dk NULL", ATTN_ERR_NULL_POINTER, q.dk.data = NULL);
  MUT("dv NULL", ATTN_ERR_NULL_POINTER, q.dv.data = NULL);
  MUT("dq bool", ATTN_ERR_INVALID_DTYPE, q.dq.dtype = ATTN_DTYPE_BOOL);
  MUT("dout bad dtype", ATTN_ERR_INVALID_DTYPE, q.dout.dtype = (attn_dtype)9);
  MUT("dbias bf16", ATTN_ERR_INVALID_DTYPE, q.dbias.dtype = ATTN_DTYPE_BF16);
  MUT("dq seq", ATTN_ERR_INVALID_SHAPE, q.dq.shape[1] = 8);
  MUT("dk heads", ATTN_ERR_INVALID_SHAPE, q.dk.shape[2] = 1);
  MUT("dv dim", ATTN_ERR_INVALID_SHAPE, q.dv.shape[3] = 7);
  MUT("dout batch", ATTN_ERR_INVALID_SHAPE, q.dout.shape[0] = 1);
  MUT("dq zero size", ATTN_ERR_INVALID_SHAPE, q.dq.shape[3] = 0);
  MUT("dq negative stride", ATTN_ERR_INVALID_STRIDE, q.dq.stride[1] = -1);
  MUT("dk self-aliasing", ATTN_ERR_INVALID_STRIDE, q.dk.stride[1] = 0);
  MUT("dbias self-aliasing", ATTN_ERR_INVALID_STRIDE, q.dbias.stride[3] = 0);
  MUT("dq stride overflow", ATTN_ERR_OVERFLOW, q.dq.stride[0] = INT64_MAX / 2);
  MUT("dbias shape", ATTN_ERR_INVALID_SHAPE, q.dbias.shape[1] = 4);
  MUT("dbias without bias", ATTN_ERR_INVALID_ARGUMENT,
      q.bias = attn_tensor_contiguous(NULL, ATTN_DTYPE_F32, 0, 0, 0, 0));
  MUT("dq overlaps q", ATTN_ERR_OVERLAP, q.dq.data = q.q.data);
  MUT("dk overlaps k", ATTN_ERR_OVERLAP, q.dk.data = q.k.data);
  MUT("dv overlaps dout", ATTN_ERR_OVERLAP, q.dv.data = q.dout.data);
  MUT("dq overlaps o", ATTN_ERR_OVERLAP, q.dq.data = q.o.data);
  MUT("dk overlaps dq", ATTN_ERR_OVERLAP, q.dk.data = q.dq.data);
  MUT("dv overlaps dk", ATTN_ERR_OVERLAP, q.dv.data = q.dk.data);
  MUT("dbias overlaps bias", ATTN_ERR_OVERLAP, q.dbias.data = q.bias.data);
  MUT("dq overlaps lse", ATTN_ERR_OVERLAP, q.dq.data = q.lse);
  MUT("forward check: head ratio", ATTN_ERR_HEAD_RATIO, q.k.shape[2] = 3;
      q.v.shape[2] = 3; q.dk.shape[2] = 3; q.dv.shape[2] = 3);
  MUT("forward check: scale", ATTN_ERR_INVALID_SCALE, q.scale = NAN);
  MUT("workspace 0 bytes", ATTN_ERR_WORKSPACE_TOO_SMALL, q.workspace = m.mem[0];
      q.workspace_size = 0);
#undef MUT
  size_t bytes = 0;
  expect(attn_backward_workspace_size(NULL, &p, &bytes), ATTN_OK,
         "workspace size");
  expect(attn_backward_workspace_size(NULL, &p, NULL), ATTN_ERR_NULL_POINTER,
         "workspace size NULL");
  {
    void *ws = tc_alloc(bytes);
    q = p;
    q.workspace = ws;
    q.workspace_size = bytes - 1;
    expect(attn_backward(NULL, &q), ATTN_ERR_WORKSPACE_TOO_SMALL,
           "workspace one byte short");
    q.workspace_size = bytes;
    expect(attn_backward(NULL, &q), ATTN_OK, "caller workspace");
    free(ws);
  }
  {
    char msg[128] = "";
    q = p;
    q.error_message = msg;
    q.error_message_size = sizeof msg;
    q.dq.shape[1] = 8;
    attn_backward(NULL, &q);
    result(strstr(msg, "dq.shape[1]") != NULL,
           "status: error message names dq.shape[1]: \"%s\"", msg);
  }
  bufs_free(&m);
}

/* ---------------------------------------------------------------------- */
int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  const unsigned long long seed = tc_env_ull("ATTN_TEST_SEED", DEFAULT_SEED);
  long long n_cases = tc_env_ll("ATTN_TEST_CASES", 1000);
  const long long only = tc_env_ll("ATTN_TEST_ONLY", -1);
  if (argc > 1)
    n_cases = strtoll(argv[1], NULL, 0);
  static const attn_isa all[3] = {ATTN_ISA_GENERIC, ATTN_ISA_AVX2,
                                  ATTN_ISA_AVX512};
  attn_isa isas[3];
  int n_isas = 0;
  const double t_start = tc_now();
  printf("test_backward: seed 0x%llx (ATTN_TEST_SEED), %lld cases "
         "(ATTN_TEST_CASES)\n",
         seed, n_cases);
  for (int k = 0; k < 3; k++)
    if (attn_isa_supported(all[k]))
      isas[n_isas++] = all[k];
    else
      printf("isa %s: not supported on this CPU, skipped\n",
             attn_isa_name(all[k]));
  if (only < 0) {
    fd_check();
    status_tests();
  }
  for (long long i = 0; i < n_cases; i++) {
    if (only >= 0 && i != only)
      continue;
    bcase c;
    case_generate(&c, seed, (int)i);
    run_case(&c, isas, n_isas, only >= 0);
  }
  printf("\n%-6s %-9s %-9s %-7s %s\n", "grad", "err", "naive", "budget",
         "case");
  for (int t = 0; t < 4; t++)
    printf("%-6s %-9.3g %-9.3g %-7.3f %d\n", gname[t], worst_err[t],
           worst_naive[t], worst_budget[t], worst_case[t]);
  printf("err, naive: max |grad - oracle| of the kernel and of the naive f32 "
         "reference in the case\nwith the largest budget = err / (2 * naive "
         "+ floor); a run passes at budget <= 1.\n");
  printf("time: %.1f s total (oracle %.1f s, attn_backward %.1f s)\n",
         tc_now() - t_start, t_oracle, t_kernel);
  printf("%ld passed, %ld failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}
