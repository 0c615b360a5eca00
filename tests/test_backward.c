/*
 * attn_backward against the double-precision analytic gradients of
 * oracle_bwd.c, over random tp_problems (problem.h, backward profile) that
 * cover every option (GQA/MQA, cross lengths, both causal alignments,
 * windows, prefix-LM, position offsets, compiled masks, softcap, ALiBi,
 * bias + dbias with broadcasting, boolean masks, kv_lens, packed varlen
 * batches with rows past the last sequence, every layout and stride,
 * f32/bf16/f16 storage, 1/2/3/7 threads, context, caller workspace, every
 * ISA the CPU has) and edge lengths (1, tile boundaries +-1, primes). Also:
 *   - a finite-difference check of the oracle itself (double precision);
 *   - determinism: bitwise identical gradients for 1, 2, 3 and 7 threads.
 * The backward's status codes are checked by test_status (status_bwd.c).
 *
 * Pass rule per gradient tensor (the forward's, FlashAttention's):
 *   max |kernel - oracle| <= 2 * max |naive f32 - oracle| + floor
 * floor = 1e-5 * max|oracle| over dq, dk, dv and this tensor (+ max|oracle| *
 * 2^-8 for bf16, 2^-11 for f16 outputs). The naive f32 reference runs the same
 * algorithm in plain f32 from the forward's stored O and LSE. Every gradient
 * element must be finite, and nothing outside the gradient views written.
 *
 * Environment: ATTN_TEST_CASES (default 1000), ATTN_TEST_SEED,
 * ATTN_TEST_ONLY=<case> (run one case, verbose), ATTN_TEST_NEW_OPTIONS=0.
 * The last line is exactly "N passed, N failed".
 */
#include "attn.h"
#include "oracle_bwd.h"
#include "problem.h"
#include "test_common.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_SEED 0xB5C0FFEEull

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
/* Statistics                                                             */
/* ---------------------------------------------------------------------- */
static double worst_budget[ORACLE_NGRADS], worst_err[ORACLE_NGRADS],
    worst_naive[ORACLE_NGRADS];
static int worst_case[ORACLE_NGRADS];
static long long n_compared, n_cond_cmp, n_cond_elems;
static double max_cond_ratio; /* max cond(x) / floor over the comparisons */
static double t_oracle, t_kernel;
static attn_context *shared_ctx;

static void stat_add(const tp_problem *c, const oracle_grad_cmp *cmp) {
  for (int t = 0; t < ORACLE_NGRADS; t++) {
    if (cmp->floor[t] > 0) {
      n_compared++;
      n_cond_cmp += cmp->n_cond[t] > 0;
      n_cond_elems += cmp->n_cond[t];
      max_cond_ratio = fmax(max_cond_ratio, cmp->cond[t] / cmp->floor[t]);
    }
    if (cmp->budget[t] > worst_budget[t]) {
      worst_budget[t] = cmp->budget[t];
      worst_err[t] = cmp->err[t];
      worst_naive[t] = cmp->naive[t];
      worst_case[t] = c->index;
    }
  }
}

/* ---------------------------------------------------------------------- */
/* Randomised cases                                                       */
/* ---------------------------------------------------------------------- */

/* The backward on one ISA; "" in why when it passes. */
static void run_isa(const tp_problem *c, attn_params *p, tp_bufs *m,
                    const oracle_grads *ref, const oracle_grads *nv,
                    attn_isa isa, char *why, size_t why_size) {
  attn_context *ctx = c->use_ctx ? shared_ctx : NULL;
  oracle_grad_cmp cmp;
  char inner[320] = "";
  why[0] = '\0';
  p->isa = isa;
  tp_reset_backward(m);
  if (c->workspace && !tp_attach_workspace(ctx, p, m, 1, inner, sizeof inner)) {
    snprintf(why, why_size, "isa %s: %s", attn_isa_name(isa), inner);
    return;
  }
  const double t0 = tc_now();
  const attn_status st = attn_backward(ctx, p);
  t_kernel += tc_now() - t0;
  if (st != ATTN_OK) {
    snprintf(why, why_size, "isa %s: attn_backward: %s (%s)",
             attn_isa_name(isa), attn_strerror(st), p->error_message);
    return;
  }
  oracle_grads_compare(p, ref, nv, &cmp);
  stat_add(c, &cmp);
  if (!cmp.ok)
    snprintf(why, why_size, "isa %s: %s", attn_isa_name(isa), cmp.problem);
  else if (!tp_untouched(m, inner, sizeof inner))
    snprintf(why, why_size, "isa %s: %s", attn_isa_name(isa), inner);
}

/* Bitwise identical gradients for 1, 2, 3 and 7 threads (widest ISA). */
static void check_determinism(const tp_problem *c, attn_params *p, tp_bufs *m,
                              attn_isa isa) {
  void *first[6] = {0};
  void *data[6] = {m->mem[TP_DQ], m->mem[TP_DK], m->mem[TP_DV],
                   m->dbias,      m->drel,       m->dsinks};
  const size_t bytes[6] = {
      m->bytes[TP_DQ], m->bytes[TP_DK],
      m->bytes[TP_DV], m->dbias_bytes,
      m->drel_bytes,   m->dsinks ? (size_t)m->n_sinks * sizeof(float) : 0};
  static const int thr[] = {1, 2, 3, 7};
  int same = 1;
  p->isa = isa;
  p->workspace = NULL, p->workspace_size = 0;
  for (int i = 0; i < 4 && same; i++) {
    p->num_threads = thr[i];
    tp_reset_backward(m);
    if (attn_backward(NULL, p) != ATTN_OK) {
      same = 0;
      break;
    }
    for (int t = 0; t < 6; t++) {
      if (!bytes[t])
        continue;
      if (i == 0) {
        first[t] = tc_alloc(bytes[t]);
        memcpy(first[t], data[t], bytes[t]);
      } else if (memcmp(first[t], data[t], bytes[t]) != 0) {
        same = 0;
      }
    }
  }
  for (int t = 0; t < 6; t++)
    free(first[t]);
  p->num_threads = c->threads;
  result(same, "case %d: gradients differ across thread counts (1/2/3/7)",
         c->index);
}

/* The forward that writes o and lse, as a caller would run it. */
static int run_forward(const tp_problem *c, attn_params *p, tp_bufs *m) {
  attn_context *ctx = c->use_ctx ? shared_ctx : NULL;
  char why[320] = "";
  attn_status st = ATTN_OK;
  if (c->compiled && m->compile_status != ATTN_OK) {
    result(0, "case %d: attn_mask_compile: %s", c->index,
           attn_strerror(m->compile_status));
    return 0;
  }
  if (c->workspace && !tp_attach_workspace(ctx, p, m, 0, why, sizeof why)) {
    result(0, "case %d: %s", c->index, why);
    return 0;
  }
  st = attn_forward(ctx, p);
  if (st != ATTN_OK)
    result(0, "case %d: attn_forward: %s (%s)", c->index, attn_strerror(st),
           p->error_message);
  return st == ATTN_OK;
}

static void run_case(const tp_problem *c, const attn_isa *isas, int n_isas,
                     int verbose) {
  attn_params p;
  tp_bufs m;
  char err[256] = "";
  tp_build(c, &p, &m);
  p.error_message = err;
  p.error_message_size = sizeof err;
  if (verbose)
    tp_describe(stdout, c);
  if (!run_forward(c, &p, &m)) {
    tp_describe(stdout, c);
    tp_bufs_free(&m);
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
    char why[512];
    run_isa(c, &p, &m, &ref, &nv, isas[k], why, sizeof why);
    const int ok = why[0] == '\0';
    result(ok, "case %d: %s", c->index, why);
    if (!ok && g_fail <= 20)
      tp_describe(stdout, c);
    if (verbose)
      printf("    %s %s %s\n", ok ? "ok  " : "FAIL", attn_isa_name(isas[k]),
             why);
  }
  if (c->determinism)
    check_determinism(c, &p, &m, isas[n_isas - 1]);
  oracle_grads_free(&ref);
  oracle_grads_free(&nv);
  tp_bufs_free(&m);
}

/* ---------------------------------------------------------------------- */
/* Finite differences of the oracle (double precision)                     */
/* ---------------------------------------------------------------------- */

/* Hand-picked problem n of the finite-difference check. */
static void fd_problem(int n, tp_problem *c) {
  tp_problem_init(c, 1 + (n & 1), 1, 1, 5 + n, 7 - (n % 3), 4 + n, 3 + (n % 4));
  c->index = 100000 + n;
  c->seed = tc_case_seed(0x5EEDull, (uint64_t)c->index);
  c->hk = 1 + (n % 2);
  c->hq = c->hk * (1 + (n % 3 == 2));
  c->grads = 1;
  c->causal = (attn_causal)(n % 3);
  if (n == 4)
    c->wl = 2, c->wr = 1;
  c->softcap = n >= 3 ? 2.0f : 0.0f;
  c->alibi = n % 2;
  c->bias = c->dbias = n >= 1;
  c->bias_mode[1] = n % 2 ? TP_AX_ONE : TP_AX_FULL;
  c->bias_mode[0] = n == 2 ? TP_AX_ONE : TP_AX_FULL;
  c->mask = n == 5;
  c->mask_p = 0.7;
  if (n == 6) { /* prefix-LM, positions per call and per sequence */
    c->causal = ATTN_CAUSAL_NONE;
    c->prefix_len = 3;
    c->q_pos_offset = -2, c->k_pos_offset = 1;
    c->pos_per_seq = 1;
    c->q_pos_offsets[0] = 1, c->q_pos_offsets[1] = -1;
    c->wl = 4;
  }
  if (n >= 7) { /* T5 tables: unidirectional and bidirectional, GQA */
    c->t5 = c->drel = 1;
    c->t5_buckets = n == 7 ? 6 : 9;
    c->t5_max_distance = n == 7 ? 5 : 7;
    c->t5_bidirectional = n == 8;
    c->t5_mag = 1.0;
    c->causal = n == 7 ? ATTN_CAUSAL_BOTTOM_RIGHT : ATTN_CAUSAL_NONE;
    c->sq = 11, c->sk = 13;
  }
  if (n >= 9) { /* sinks: moderate and dominating, GQA, causal */
    c->t5 = c->drel = 0;
    c->sinks = c->dsinks = 1;
    c->sinks_mag = n == 9 ? 1.0 : 8.0;
    c->causal = n == 9 ? ATTN_CAUSAL_TOP_LEFT : ATTN_CAUSAL_NONE;
  }
}

/* The same for the sinks (tensor 5, dsinks), perturbed in place. */
static double fd_sinks(attn_params *p, const oracle_grads *ref, int n) {
  float *sk = (float *)(uintptr_t)p->sinks;
  double gmax = ref->gmax[5] + 1e-3, emax = 0;
  for (int64_t h = 0; h < p->q.shape[2]; h++) {
    const float x0 = sk[h];
    if (!isfinite(x0))
      continue;
    const double hstep = ldexp(1.0, -10);
    sk[h] = (float)(x0 + hstep);
    const double lp = oracle_loss(p);
    sk[h] = (float)(x0 - hstep);
    const double lm = oracle_loss(p);
    sk[h] = x0;
    emax = fmax(emax, fabs((lp - lm) / (2 * hstep) - ref->g[5][h]));
  }
  result(emax / gmax < 1e-4,
         "finite differences: case %d %s: max err %.3g of max |grad| %.3g", n,
         oracle_grad_names[5], emax, gmax);
  return emax / gmax;
}

/* The same for the T5 table (tensor 4, drel_bias): the table is the
 * case's own buffer, perturbed in place. */
static double fd_rel(attn_params *p, const oracle_grads *ref, int n) {
  float *tab = (float *)(uintptr_t)p->rel_bias;
  const int64_t cnt = p->rel_buckets * p->q.shape[2];
  double gmax = ref->gmax[4] + 1e-3, emax = 0;
  for (int64_t x = 0; x < cnt; x++) {
    const float x0 = tab[x];
    const double hstep = ldexp(1.0, -10);
    tab[x] = (float)(x0 + hstep);
    const double lp = oracle_loss(p);
    tab[x] = (float)(x0 - hstep);
    const double lm = oracle_loss(p);
    tab[x] = x0;
    emax = fmax(emax, fabs((lp - lm) / (2 * hstep) - ref->g[4][x]));
  }
  result(emax / gmax < 1e-4,
         "finite differences: case %d %s: max err %.3g of max |grad| %.3g", n,
         oracle_grad_names[4], emax, gmax);
  return emax / gmax;
}

/* Largest |fd - analytic| / max|grad| over the elements of tensor t. */
static double fd_tensor(attn_params *p, const oracle_grads *ref, int n, int t) {
  attn_tensor *ts[4] = {&p->q, &p->k, &p->v, &p->bias};
  const int64_t *sh = ts[t]->shape;
  const int64_t cnt = sh[0] * sh[1] * sh[2] * sh[3];
  double gmax = ref->gmax[t] + 1e-3, emax = 0;
  for (int64_t x = 0; x < cnt; x++) {
    const int64_t i3 = x % sh[3], i2 = x / sh[3] % sh[2],
                  i1 = x / sh[3] / sh[2] % sh[1],
                  i0 = x / sh[3] / sh[2] / sh[1];
    const double x0 = oracle_tensor_get(ts[t], i0, i1, i2, i3);
    if (!isfinite(x0))
      continue;
    /* central differences with an exactly representable step */
    const double hstep = ldexp(1.0, -10);
    tp_store(ts[t], i0, i1, i2, i3, (float)(x0 + hstep));
    const double lp = oracle_loss(p);
    tp_store(ts[t], i0, i1, i2, i3, (float)(x0 - hstep));
    const double lm = oracle_loss(p);
    tp_store(ts[t], i0, i1, i2, i3, (float)x0);
    const double fd = (lp - lm) / (2 * hstep);
    /* oracle index: q/k/v are [b, s, h, d] contiguous, bias row-major */
    const int64_t oi =
        t == 3 ? x : ((i0 * sh[1] + i1) * sh[2] + i2) * sh[3] + i3;
    emax = fmax(emax, fabs(fd - ref->g[t][oi]));
  }
  result(emax / gmax < 1e-4,
         "finite differences: case %d %s: max err %.3g of max |grad| %.3g", n,
         oracle_grad_names[t], emax, gmax);
  return emax / gmax;
}

static void fd_check(void) {
  double worst = 0;
  const int n_problems = tp_new_options() ? 11 : 6;
  for (int n = 0; n < n_problems; n++) {
    tp_problem c;
    attn_params p;
    tp_bufs m;
    oracle_grads ref;
    fd_problem(n, &c);
    tp_build(&c, &p, &m);
    if (oracle_backward(&p, &ref) != 0)
      exit(2);
    for (int t = 0; t < 4; t++)
      if (t < 3 || p.bias.data)
        worst = fmax(worst, fd_tensor(&p, &ref, n, t));
    if (p.drel_bias)
      worst = fmax(worst, fd_rel(&p, &ref, n));
    if (p.dsinks)
      worst = fmax(worst, fd_sinks(&p, &ref, n));
    oracle_grads_free(&ref);
    tp_bufs_free(&m);
  }
  printf("finite differences of the oracle: worst max|fd - analytic| / "
         "max|grad| = %.3g (tolerance 1e-4)\n",
         worst);
}

/* p's q, k, v, o (all of dtype dt) as [1, S, H, d] bshd tensors. */
static void inputs_bshd(attn_params *p, void *q, void *k, void *v, void *o,
                        attn_dtype dt, int64_t S, int64_t H, int64_t d) {
  p->q = attn_tensor_bshd(q, dt, 1, S, H, d);
  p->k = attn_tensor_bshd(k, dt, 1, S, H, d);
  p->v = attn_tensor_bshd(v, dt, 1, S, H, d);
  p->o = attn_tensor_bshd(o, dt, 1, S, H, d);
}

/* p's dout (dtype dt) and f32 dq, dk, dv in g[0, 3 S H d), the same
 * shape. */
static void grads_bshd(attn_params *p, void *dout, attn_dtype dt, float *g,
                       int64_t S, int64_t H, int64_t d) {
  const int64_t n = S * H * d;
  p->dout = attn_tensor_bshd(dout, dt, 1, S, H, d);
  p->dq = attn_tensor_bshd(g, ATTN_DTYPE_F32, 1, S, H, d);
  p->dk = attn_tensor_bshd(g + n, ATTN_DTYPE_F32, 1, S, H, d);
  p->dv = attn_tensor_bshd(g + 2 * n, ATTN_DTYPE_F32, 1, S, H, d);
}

/* Rows that see one key (row 0 under causal masking) have dQ exactly 0
 * on every bf16 ISA: P = 1, O is that key's V row, and D = rowsum(dO ∘ O)
 * must be computed in dP's arithmetic for dS = P (dP - D) to vanish (the
 * AMX kernel's tiles included, at head dims of 0 and 16 mod 32). The
 * forward's O of such rows is checked to be V exactly too, also for every
 * row of a one-key window (window 0, 0) with an f32 output: a fused
 * softmax that guessed the row's max would leave P != 1 there. */
static void one_key_rows(const attn_isa *isas, int n_isas) {
  enum { S = 63, H = 2 };
  static const int dims[] = {32, 48, 64, 80, 128};
  for (int di = 0; di < (int)(sizeof dims / sizeof dims[0]); di++) {
    const int64_t d = dims[di], n = S * H * d;
    uint16_t *q = malloc(sizeof(uint16_t) * (size_t)(7 * n));
    float *g = malloc(sizeof(float) * (size_t)(3 * n));
    float lse[H * S];
    if (!q || !g) {
      result(0, "one_key_rows: out of memory");
      free(q);
      free(g);
      return;
    }
    uint16_t *k = q + n, *v = k + n, *o = v + n, *dout = o + n;
    uint16_t *q8 = dout + n; /* 8 q: large logits (exact in bf16) */
    uint64_t st = 0x243f6a8885a308d3ull + (uint64_t)d;
    for (int64_t i = 0; i < 5 * n; i++) { /* q, k, v, (o), dout */
      st = st * 6364136223846793005ull + 1442695040888963407ull;
      const float x = (float)((int64_t)(st >> 40) % 2001 - 1000) / 700.0f;
      q[i] = attn_f32_to_bf16(x);
    }
    for (int64_t i = 0; i < n; i++)
      q8[i] = attn_f32_to_bf16(8.0f * attn_bf16_to_f32(q[i]));
    for (int ii = 0; ii < n_isas; ii++) {
      attn_params p;
      attn_params_init(&p);
      inputs_bshd(&p, q, k, v, o, ATTN_DTYPE_BF16, S, H, d);
      p.lse = lse;
      p.causal = ATTN_CAUSAL_TOP_LEFT;
      p.isa = isas[ii];
      attn_status rc = attn_forward(shared_ctx, &p);
      grads_bshd(&p, dout, ATTN_DTYPE_BF16, g, S, H, d);
      if (rc == ATTN_OK)
        rc = attn_backward(shared_ctx, &p);
      int64_t nz = 0, ov = 0;
      for (int64_t i = 0; i < H * d; i++) /* row 0 of every head */
        nz += g[i] != 0.0f;
      for (int64_t i = 0; i < H * d && rc == ATTN_OK; i++)
        ov += o[i] != v[i];
      result(ov == 0,
             "one_key_rows: isa %s, head_dim %lld: %lld elements of O in "
             "rows that see one key differ from V",
             attn_isa_name(isas[ii]), (long long)d, (long long)ov);
      /* every row sees its own key only, with large logits (some within
       * the fused path's +-16 of a guessed max), f32 and bf16 out: O = V
       * exactly */
      for (int ob = 0; ob < 2; ob++) {
        float *of = g; /* free until the next backward */
        uint16_t *oh = (uint16_t *)(g + n);
        attn_params w;
        attn_params_init(&w);
        w.q = attn_tensor_bshd(q8, ATTN_DTYPE_BF16, 1, S, H, d);
        w.k = p.k, w.v = p.v;
        w.o = ob ? attn_tensor_bshd(oh, ATTN_DTYPE_BF16, 1, S, H, d)
                 : attn_tensor_bshd(of, ATTN_DTYPE_F32, 1, S, H, d);
        w.window_left = w.window_right = 0;
        w.isa = isas[ii];
        const attn_status rw = attn_forward(shared_ctx, &w);
        int64_t wv = 0;
        for (int64_t i = 0; i < n && rw == ATTN_OK; i++)
          wv += ob ? oh[i] != v[i] : of[i] != attn_bf16_to_f32(v[i]);
        result(rw == ATTN_OK && wv == 0,
               "one_key_rows: isa %s, head_dim %lld, window (0, 0), %s out: "
               "status %d, %lld elements of O differ from V",
               attn_isa_name(isas[ii]), (long long)d, ob ? "bf16" : "f32",
               (int)rw, (long long)wv);
      }
      if (rc == ATTN_OK) /* the backward of the causal call, again */
        rc = attn_backward(shared_ctx, &p);
      nz = 0;
      for (int64_t i = 0; i < H * d; i++)
        nz += g[i] != 0.0f;
      result(rc == ATTN_OK && nz == 0,
             "one_key_rows: isa %s, head_dim %lld: status %d, %lld nonzero "
             "dq elements in rows that see one key",
             attn_isa_name(isas[ii]), (long long)d, (int)rc, (long long)nz);
    }
    free(q);
    free(g);
  }
}

/* The backward's scores are the forward's, bit for bit, with f32 inputs
 * too: under window (0, 0) every row sees only its own key, so the
 * forward's lse is that score s and the backward's P = 2^((s - lse) log2
 * e) is exactly 1 only if it recomputes s with the same roundings; then dV
 * = P dO is dO exactly. Checked on the rows with |s| > 32 (most of them:
 * |q|, |k| up to 31 and a scale of 0.3, not a power of two, so that
 * queries scaled before their products would round differently from sums
 * scaled after them); rows nearer 0 may take the forward's fused softmax
 * with a guessed max, whose lse = log 2^(s log2 e) is s only to an ulp. */
static void same_scores_f32(const attn_isa *isas, int n_isas) {
  enum { S = 150, H = 3 }; /* S > ATTN_DECODE_MAX_ROWS: the tiled forward */
  static const int dims[] = {1, 7, 64, 80, 111};
  const float scale = 0.3f;
  for (int di = 0; di < (int)(sizeof dims / sizeof dims[0]); di++) {
    const int64_t d = dims[di], n = S * H * d;
    float *q = malloc(sizeof(float) * (size_t)(8 * n));
    float lse[S * H];
    if (!q) {
      result(0, "same_scores_f32: out of memory");
      return;
    }
    float *k = q + n, *v = k + n, *o = v + n, *dout = o + n, *g = dout + n;
    uint64_t st = 0x9e3779b97f4a7c15ull + (uint64_t)d;
    for (int64_t i = 0; i < 5 * n; i++) { /* q, k, v, (o), dout */
      st = st * 6364136223846793005ull + 1442695040888963407ull;
      q[i] = (float)((int64_t)(st >> 40) % 2001 - 1000) / 32.0f;
    }
    for (int ii = 0; ii < n_isas; ii++) {
      attn_params p;
      attn_params_init(&p);
      inputs_bshd(&p, q, k, v, o, ATTN_DTYPE_F32, S, H, d);
      p.lse = lse;
      p.window_left = p.window_right = 0;
      p.scale = scale;
      p.isa = isas[ii];
      attn_status rc = attn_forward(shared_ctx, &p);
      grads_bshd(&p, dout, ATTN_DTYPE_F32, g, S, H, d);
      if (rc == ATTN_OK)
        rc = attn_backward(shared_ctx, &p);
      int64_t bad_o = 0, bad_dv = 0, rows = 0;
      for (int64_t r = 0; r < S * H && rc == ATTN_OK; r++) {
        double sr = 0.0;
        for (int64_t c = 0; c < d; c++)
          sr += (double)q[r * d + c] * k[r * d + c];
        for (int64_t c = 0; c < d; c++)
          bad_o += o[r * d + c] != v[r * d + c];
        if (fabs(sr * scale) <= 32.0)
          continue;
        rows++;
        for (int64_t c = 0; c < d; c++)
          bad_dv += g[2 * n + r * d + c] != dout[r * d + c];
      }
      result(rc == ATTN_OK && bad_o == 0 && bad_dv == 0 && 2 * rows > S * H,
             "same_scores_f32: isa %s, head_dim %lld: status %d, %lld "
             "elements of O differ from V, %lld of dV from dO (%lld rows)",
             attn_isa_name(isas[ii]), (long long)d, (int)rc, (long long)bad_o,
             (long long)bad_dv, (long long)rows);
    }
    free(q);
  }
}

/* Keys past BWD_KEY_TILES_MIN_KEYS (8192): phase A runs four key tiles
 * per pass over the query tiles (bwd.c, key_tiles_per_pass), the last
 * pass here with one (8195 keys: 129 tiles). Few queries
 * keep the oracle cheap; the cases check every ISA against it and thread
 * counts against each other, f32 and bf16, with and without a causal
 * mask, two query heads per kv head. About 5 s (the oracle), so only in
 * runs of at least 100 random cases. */
static void long_keys(const attn_isa *isas, int n_isas) {
  for (int n = 0; n < 4; n++) {
    tp_problem c;
    tp_problem_init(&c, 1, 4, 2, 29, 8195, 16, 16);
    c.index = 200000 + n;
    c.seed = tc_case_seed(0x10E6ull, (uint64_t)c.index);
    c.grads = 1;
    c.determinism = 1;
    c.threads = 2;
    c.in_dt = n & 1 ? ATTN_DTYPE_BF16 : ATTN_DTYPE_F32;
    c.causal = n & 2 ? ATTN_CAUSAL_BOTTOM_RIGHT : ATTN_CAUSAL_NONE;
    run_case(&c, isas, n_isas, 0);
  }
}

/* ---------------------------------------------------------------------- */
int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  const unsigned long long seed = tc_env_ull("ATTN_TEST_SEED", DEFAULT_SEED);
  long long n_cases = tc_env_ll("ATTN_TEST_CASES", 1000);
  const long long only = tc_env_ll("ATTN_TEST_ONLY", -1);
  if (argc > 1)
    n_cases = strtoll(argv[1], NULL, 0);
  static const attn_isa all[5] = {ATTN_ISA_GENERIC, ATTN_ISA_AVX2,
                                  ATTN_ISA_AVX512, ATTN_ISA_AVX512_BF16,
                                  ATTN_ISA_AMX_BF16};
  attn_isa isas[5];
  int n_isas = 0;
  const double t_start = tc_now();
  printf("test_backward: seed 0x%llx (ATTN_TEST_SEED), %lld cases "
         "(ATTN_TEST_CASES), new options %s (ATTN_TEST_NEW_OPTIONS), "
         "compiled masks %s\n",
         seed, n_cases, tp_new_options() ? "on" : "off",
         tp_mask_linked ? "linked" : "not linked");
  for (int k = 0; k < 5; k++)
    if (attn_isa_supported(all[k]))
      isas[n_isas++] = all[k];
    else
      printf("isa %s: not supported on this CPU, skipped\n",
             attn_isa_name(all[k]));
  attn_context_options opt;
  attn_context_options_init(&opt);
  opt.num_threads = 3;
  if (attn_context_create(&shared_ctx, &opt) != ATTN_OK)
    result(0, "attn_context_create");
  if (only < 0) {
    fd_check();
    one_key_rows(isas, n_isas);
    same_scores_f32(isas, n_isas);
    if (n_cases >= 100) /* not in the short valgrind and TSan runs */
      long_keys(isas, n_isas);
  }
  for (long long i = 0; i < n_cases; i++) {
    if (only >= 0 && i != only)
      continue;
    tp_problem c;
    tp_generate(&c, &tp_profile_backward, seed, (int)i);
    run_case(&c, isas, n_isas, only >= 0);
  }
  attn_context_free(shared_ctx);
  printf("\n%-9s %-9s %-9s %-7s %s\n", "grad", "err", "naive", "budget",
         "case");
  for (int t = 0; t < ORACLE_NGRADS; t++)
    printf("%-9s %-9.3g %-9.3g %-7.3f %d\n", oracle_grad_names[t], worst_err[t],
           worst_naive[t], worst_budget[t], worst_case[t]);
  printf("err, naive: max |grad - oracle| of the kernel and of the naive f32 "
         "reference in the case\nwith the largest budget = max err(x) / (2 * "
         "naive + max(floor, cond(x))); a run passes at\nbudget <= 1.\n");
  printf("cond(x) above the floor in %lld of %lld gradient comparisons (%lld "
         "elements); max cond / floor %.3g\n",
         n_cond_cmp, n_compared, n_cond_elems, max_cond_ratio);
  printf("time: %.1f s total (oracle %.1f s, attn_backward %.1f s)\n",
         tc_now() - t_start, t_oracle, t_kernel);
  printf("%ld passed, %ld failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}
