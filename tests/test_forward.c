/*
 * test_forward: randomized, table-driven check of attn_forward against the
 * double-precision oracle (oracle_fwd.c), on every ISA this CPU supports.
 *
 * Each case is a tp_problem drawn by tp_generate (problem.h): shapes,
 * layouts, dtypes and every option from a seeded RNG; the inputs are stored
 * in the case's dtype, and the oracle and the naive f32 reference read
 * those same stored values. A run passes when
 *
 *     max|o_kernel - o_oracle| <= 2 * max|o_naive_f32 - o_oracle| + floor
 *
 * (and the same for LSE; see oracle_fwd.h for the floor and the
 * row-sensitivity allowance), rows without keys are exactly o = 0,
 * lse = -inf, nothing is NaN, and attn_forward wrote nothing outside o's
 * view or the LSE array. Padding inside input views and keys beyond kv_lens
 * hold NaN, so reading them shows up as NaN in the output.
 *
 * Usage: test_forward [cases]
 * Environment: ATTN_TEST_CASES (default 2500), ATTN_TEST_SEED, ATTN_TEST_ONLY
 * (run one case index), ATTN_TEST_VERBOSE=1 (describe every case),
 * ATTN_TEST_NEW_OPTIONS=0 (no prefix-LM, positions, compiled masks).
 * Last line: "N passed, N failed" (one per case and ISA run).
 */
#include "attn.h"
#include "oracle_fwd.h"
#include "problem.h"
#include "test_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CASES 2500
#define DEFAULT_SEED 0x1A77E57ull

/* ---------------------------------------------------------------------- */
/* Categories for the error table                                         */
/* ---------------------------------------------------------------------- */
#define CATEGORIES(X)                                                          \
  X(ALL, "all")                                                                \
  X(MHA, "mha")                                                                \
  X(GQA, "gqa")                                                                \
  X(MQA, "mqa")                                                                \
  X(IN_F32, "in f32")                                                          \
  X(IN_BF16, "in bf16")                                                        \
  X(IN_F16, "in f16")                                                          \
  X(OUT_F32, "out f32")                                                        \
  X(OUT_F32_PLAIN, "out f32 ~N(0,1)")                                          \
  X(OUT_BF16, "out bf16")                                                      \
  X(OUT_F16, "out f16")                                                        \
  X(DV, "dv != d")                                                             \
  X(TILE_EDGE, "tile edge len")                                                \
  X(CAUSAL_BR, "causal br")                                                    \
  X(CAUSAL_TL, "causal tl")                                                    \
  X(WINDOW, "window")                                                          \
  X(PREFIX, "prefix-lm")                                                       \
  X(POS, "pos offsets")                                                        \
  X(POS_SEQ, "pos per seq")                                                    \
  X(COMPILED, "compiled mask")                                                 \
  X(SOFTCAP, "softcap")                                                        \
  X(ALIBI, "alibi")                                                            \
  X(T5, "t5 table")                                                            \
  X(BIAS, "bias")                                                              \
  X(BIAS_NEGINF, "bias -inf")                                                  \
  X(MASK, "mask")                                                              \
  X(KV_LENS, "kv_lens")                                                        \
  X(VARLEN, "varlen")                                                          \
  X(VARLEN_EMPTY, "varlen empty")                                              \
  X(EMPTY_ROWS, "empty rows")                                                  \
  X(HUGE, "huge logits")                                                       \
  X(STRIDED, "strided")                                                        \
  X(BHSD, "bhsd")                                                              \
  X(PACKED_QKV, "packed qkv")                                                  \
  X(KV_BCAST, "kv batch bcast")                                                \
  X(DECODE, "decode")                                                          \
  X(SCALE, "explicit scale")                                                   \
  X(WORKSPACE, "workspace")                                                    \
  X(CONTEXT, "context")                                                        \
  X(T1, "threads 1")                                                           \
  X(T2, "threads 2")                                                           \
  X(T3, "threads 3")                                                           \
  X(T7, "threads 7")                                                           \
  X(ISA_GENERIC, "isa generic")                                                \
  X(ISA_AVX2, "isa avx2")                                                      \
  X(ISA_AVX512, "isa avx512")

#define CAT_ENUM(id, name) CAT_##id,
#define CAT_NAME(id, name) name,
enum { CATEGORIES(CAT_ENUM) CAT_COUNT };
static const char *const cat_names[CAT_COUNT] = {CATEGORIES(CAT_NAME)};

typedef struct cat_stat {
  long runs, fails;
  double worst_err_o, worst_naive_o; /* at the worst budget */
  double worst_budget_o, worst_budget_lse;
  double worst_err_lse;
  double max_cond_o; /* largest conditioning allowance used */
  int worst_case;
} cat_stat;

static cat_stat stats[CAT_COUNT];

static void stat_add(int cat, const tp_problem *c, const oracle_cmp *cmp,
                     int ok) {
  cat_stat *s = &stats[cat];
  s->runs++;
  s->fails += !ok;
  if (cmp->budget_o > s->worst_budget_o) {
    s->worst_budget_o = cmp->budget_o;
    s->worst_err_o = cmp->err_o;
    s->worst_naive_o = cmp->err_o_naive;
    s->worst_case = c->index;
  }
  if (cmp->budget_lse > s->worst_budget_lse)
    s->worst_budget_lse = cmp->budget_lse;
  if (cmp->err_lse > s->worst_err_lse)
    s->worst_err_lse = cmp->err_lse;
  if (cmp->cond_o > s->max_cond_o)
    s->max_cond_o = cmp->cond_o;
}

/* A length on a tile edge: a multiple of ATTN_TILE_Q or ATTN_TILE_K, +-1. */
static int tile_edge(int64_t n) {
  const int64_t a = n % ATTN_TILE_Q, b = n % ATTN_TILE_K;
  return n >= ATTN_TILE_Q - 1 &&
         (a <= 1 || a == ATTN_TILE_Q - 1 || b <= 1 || b == ATTN_TILE_K - 1);
}

static void case_cats_shape(const tp_problem *c, int cats[CAT_COUNT]) {
  cats[CAT_ALL] = 1;
  cats[c->hk == c->hq ? CAT_MHA : c->hk == 1 ? CAT_MQA : CAT_GQA] = 1;
  cats[c->in_dt == ATTN_DTYPE_F32    ? CAT_IN_F32
       : c->in_dt == ATTN_DTYPE_BF16 ? CAT_IN_BF16
                                     : CAT_IN_F16] = 1;
  cats[c->out_dt == ATTN_DTYPE_F32    ? CAT_OUT_F32
       : c->out_dt == ATTN_DTYPE_BF16 ? CAT_OUT_BF16
                                      : CAT_OUT_F16] = 1;
  cats[CAT_OUT_F32_PLAIN] = c->out_dt == ATTN_DTYPE_F32 && !c->huge;
  cats[CAT_DV] = c->dv != c->d;
  cats[CAT_TILE_EDGE] = !c->varlen && (tile_edge(c->sq) || tile_edge(c->sk));
  for (int64_t b = 0; c->varlen && b < c->nseq; b++) {
    if (tile_edge(c->cu_q[b + 1] - c->cu_q[b]) ||
        tile_edge(c->cu_k[b + 1] - c->cu_k[b]))
      cats[CAT_TILE_EDGE] = 1;
    if (c->cu_q[b + 1] == c->cu_q[b] || c->cu_k[b + 1] == c->cu_k[b])
      cats[CAT_VARLEN_EMPTY] = 1;
  }
  cats[CAT_VARLEN] = c->varlen;
  cats[CAT_HUGE] = c->huge;
  for (int t = 0; t < 4; t++) {
    if (c->padded[t] || c->dstride[t] > 1)
      cats[CAT_STRIDED] = 1;
    if (c->order[t])
      cats[CAT_BHSD] = 1;
  }
  cats[CAT_PACKED_QKV] = c->packed;
  cats[CAT_KV_BCAST] = c->kv_bcast;
  cats[CAT_DECODE] = c->decode;
}

static void case_cats(const tp_problem *c, const attn_params *p,
                      const oracle_ref *ref, attn_isa isa,
                      int cats[CAT_COUNT]) {
  memset(cats, 0, sizeof(int) * CAT_COUNT);
  case_cats_shape(c, cats);
  cats[CAT_CAUSAL_BR] = c->causal == ATTN_CAUSAL_BOTTOM_RIGHT;
  cats[CAT_CAUSAL_TL] = c->causal == ATTN_CAUSAL_TOP_LEFT;
  cats[CAT_WINDOW] = c->wl >= 0 || c->wr >= 0;
  cats[CAT_PREFIX] = c->prefix_len >= 0;
  cats[CAT_POS] = c->q_pos_offset != 0 || c->k_pos_offset != 0;
  cats[CAT_POS_SEQ] = c->pos_per_seq;
  cats[CAT_COMPILED] = c->compiled;
  cats[CAT_SOFTCAP] = c->softcap > 0;
  cats[CAT_ALIBI] = c->alibi != 0;
  cats[CAT_T5] = c->t5;
  cats[CAT_BIAS] = c->bias;
  cats[CAT_BIAS_NEGINF] = c->bias && c->bias_neginf;
  cats[CAT_MASK] = c->mask;
  cats[CAT_KV_LENS] = c->kvlens;
  cats[CAT_EMPTY_ROWS] = ref->n_empty > 0;
  cats[CAT_SCALE] = p->scale != 0.0f;
  cats[CAT_WORKSPACE] = c->workspace;
  cats[CAT_CONTEXT] = c->use_ctx;
  cats[c->threads == 1   ? CAT_T1
       : c->threads == 2 ? CAT_T2
       : c->threads == 3 ? CAT_T3
                         : CAT_T7] = 1;
  cats[isa == ATTN_ISA_GENERIC ? CAT_ISA_GENERIC
       : isa == ATTN_ISA_AVX2  ? CAT_ISA_AVX2
                               : CAT_ISA_AVX512] = 1;
}

static void print_table(void) {
  printf("\n%-16s %6s %5s  %-9s %-9s %-7s %-9s  %-9s %-7s\n", "category",
         "runs", "fail", "err", "naive", "budget", "max cond", "lse err",
         "lse bdgt");
  for (int cat = 0; cat < CAT_COUNT; cat++) {
    const cat_stat *s = &stats[cat];
    if (!s->runs)
      continue;
    printf("%-16s %6ld %5ld  %-9.3g %-9.3g %-7.3f %-9.3g  %-9.3g %-7.3f\n",
           cat_names[cat], s->runs, s->fails, s->worst_err_o, s->worst_naive_o,
           s->worst_budget_o, s->max_cond_o, s->worst_err_lse,
           s->worst_budget_lse);
  }
  printf("err, naive: max |o - oracle| of the kernel and of the naive f32 "
         "reference in the\nrun with the largest budget = err / (2 * naive + "
         "max(floor, cond)); a run\npasses at budget <= 1. max cond: the "
         "largest rounding-sensitivity allowance\n(oracle_fwd.h).\n");
}

/* ---------------------------------------------------------------------- */
/* Running                                                                */
/* ---------------------------------------------------------------------- */
typedef struct run_totals {
  long passed, failed, printed;
  double worst_fail_budget;
  int worst_fail_case;
  attn_isa worst_fail_isa;
  double t_oracle, t_kernel;
} run_totals;

static attn_context *shared_ctx;

/* One ISA: returns "" in why when the run passes. */
static void run_isa(const tp_problem *c, attn_params *p, tp_bufs *m,
                    const oracle_ref *ref, const oracle_naive *nv, attn_isa isa,
                    oracle_cmp *cmp, char *why, size_t why_size,
                    run_totals *tot) {
  attn_context *ctx = c->use_ctx ? shared_ctx : NULL;
  char *errmsg = p->error_message;
  tp_reset_forward(c, p, m);
  p->isa = isa;
  p->workspace = NULL;
  p->workspace_size = 0;
  errmsg[0] = '\0';
  memset(cmp, 0, sizeof *cmp);
  why[0] = '\0';
  if (c->compiled && m->compile_status != ATTN_OK) {
    snprintf(why, why_size, "attn_mask_compile returned %d (%s)",
             (int)m->compile_status, attn_strerror(m->compile_status));
    return;
  }
  if (c->workspace && !tp_attach_workspace(ctx, p, m, 0, why, why_size))
    return;
  double t0 = tc_now();
  attn_status st = attn_forward(ctx, p);
  tot->t_kernel += tc_now() - t0;
  if (st != ATTN_OK) {
    snprintf(why, why_size, "attn_forward returned %d (%s): %s", (int)st,
             attn_strerror(st), errmsg);
    return;
  }
  oracle_compare(p, ref, nv, cmp);
  if (!cmp->ok)
    snprintf(why, why_size, "%s", cmp->problem);
  else
    tp_untouched(m, why, why_size);
}

static void report_fail(const tp_problem *c, attn_isa isa, const char *why,
                        const oracle_cmp *cmp, const oracle_ref *ref,
                        run_totals *tot) {
  double b = cmp->budget_o > cmp->budget_lse ? cmp->budget_o : cmp->budget_lse;
  if (!(b > 1.0))
    b = 1e30; /* status, NaN, masking or overwrite: worst of all */
  tot->failed++;
  if (tot->worst_fail_budget < b) {
    tot->worst_fail_budget = b;
    tot->worst_fail_case = c->index;
    tot->worst_fail_isa = isa;
  }
  if (tot->printed++ < 12) {
    printf("FAIL case %d isa %s: %s\n", c->index, attn_isa_name(isa), why);
    printf("    o err %.3g (naive %.3g, floor %.3g, cond %.3g); lse err "
           "%.3g (naive %.3g, floor %.3g); empty rows %lld of %lld\n",
           cmp->err_o, cmp->err_o_naive, cmp->floor_o, cmp->cond_o,
           cmp->err_lse, cmp->err_lse_naive, cmp->floor_lse,
           (long long)ref->n_empty, (long long)ref->n_rows);
    tp_describe(stdout, c);
  }
}

static void run_case(const tp_problem *c, const attn_isa *isas, int n_isas,
                     run_totals *tot, int verbose) {
  attn_params p;
  tp_bufs m;
  oracle_ref ref;
  oracle_naive nv;
  char errmsg[256];
  double t0 = tc_now();

  tp_build(c, &p, &m);
  p.error_message = errmsg;
  p.error_message_size = sizeof errmsg;
  if (verbose)
    tp_describe(stdout, c);
  if (oracle_forward(&p, &ref) != 0 || oracle_naive_f32(&p, &nv) != 0) {
    fprintf(stderr, "test_forward: oracle out of memory\n");
    exit(2);
  }
  tot->t_oracle += tc_now() - t0;

  for (int k = 0; k < n_isas; k++) {
    oracle_cmp cmp;
    int cats[CAT_COUNT];
    char why[320];
    run_isa(c, &p, &m, &ref, &nv, isas[k], &cmp, why, sizeof why, tot);
    const int ok = why[0] == '\0';
    case_cats(c, &p, &ref, isas[k], cats);
    for (int cat = 0; cat < CAT_COUNT; cat++)
      if (cats[cat])
        stat_add(cat, c, &cmp, ok);
    if (ok)
      tot->passed++;
    else
      report_fail(c, isas[k], why, &cmp, &ref, tot);
    if (verbose)
      printf("    %s %s: o err %.3g naive %.3g floor %.3g cond %.3g | lse "
             "err %.3g naive %.3g\n",
             ok ? "ok  " : "FAIL", attn_isa_name(isas[k]), cmp.err_o,
             cmp.err_o_naive, cmp.floor_o, cmp.cond_o, cmp.err_lse,
             cmp.err_lse_naive);
  }
  oracle_ref_free(&ref);
  oracle_naive_free(&nv);
  tp_bufs_free(&m);
}

static int supported_isas(attn_isa isas[5]) {
  static const attn_isa all_isas[5] = {ATTN_ISA_GENERIC, ATTN_ISA_AVX2,
                                       ATTN_ISA_AVX512, ATTN_ISA_AVX512_BF16,
                                       ATTN_ISA_AMX_BF16};
  int n = 0;
  for (int k = 0; k < 5; k++) {
    if (attn_isa_supported(all_isas[k]))
      isas[n++] = all_isas[k];
    else
      printf("isa %s: not supported on this CPU, skipped\n",
             attn_isa_name(all_isas[k]));
  }
  printf("isas tested:");
  for (int k = 0; k < n; k++)
    printf(" %s", attn_isa_name(isas[k]));
  printf("\n");
  return n;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* keep output if a sanitizer aborts */
  const unsigned long long seed = tc_env_ull("ATTN_TEST_SEED", DEFAULT_SEED);
  long long n_cases = tc_env_ll("ATTN_TEST_CASES", DEFAULT_CASES);
  const long long only = tc_env_ll("ATTN_TEST_ONLY", -1);
  const int verbose = (int)tc_env_ll("ATTN_TEST_VERBOSE", 0);
  attn_isa isas[5];
  run_totals tot;
  double t_start = tc_now();

  if (argc > 1)
    n_cases = strtoll(argv[1], NULL, 0);
  if (n_cases < 1)
    n_cases = 1;
  memset(&tot, 0, sizeof tot);
  printf("test_forward: seed 0x%llx (ATTN_TEST_SEED), %lld cases "
         "(ATTN_TEST_CASES)\n",
         seed, n_cases);
  printf("new options (prefix-LM, positions, compiled masks): %s "
         "(ATTN_TEST_NEW_OPTIONS); compiled masks %s\n",
         tp_new_options() ? "on" : "off",
         tp_mask_linked ? "linked" : "not linked (ATTN_TEST_MASK_COMPILE)");
  const int n_isas = supported_isas(isas);
  {
    attn_context_options opt;
    attn_context_options_init(&opt);
    opt.num_threads = 3;
    if (attn_context_create(&shared_ctx, &opt) != ATTN_OK) {
      printf("attn_context_create failed\n0 passed, 1 failed\n");
      return 1;
    }
  }

  for (long long i = 0; i < n_cases; i++) {
    tp_problem c;
    if (only >= 0 && i != only)
      continue;
    tp_generate(&c, &tp_profile_forward, seed, (int)i);
    run_case(&c, isas, n_isas, &tot, verbose || only >= 0);
  }
  attn_context_free(shared_ctx);
  print_table();
  if (tot.failed) {
    tp_problem c;
    tp_generate(&c, &tp_profile_forward, seed, tot.worst_fail_case);
    printf("\nworst failing run: isa %s\n", attn_isa_name(tot.worst_fail_isa));
    tp_describe(stdout, &c);
    printf("  reproduce: ATTN_TEST_SEED=0x%llx ATTN_TEST_ONLY=%d "
           "ATTN_TEST_NEW_OPTIONS=%d %s\n",
           seed, tot.worst_fail_case, tp_new_options(), argv[0]);
  }
  printf("time: %.1f s total (oracle %.1f s, attn_forward %.1f s)\n",
         tc_now() - t_start, tot.t_oracle, tot.t_kernel);
  printf("%ld passed, %ld failed\n", tot.passed, tot.failed);
  return tot.failed ? 1 : 0;
}
