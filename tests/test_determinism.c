/*
 * test_determinism: attn.h promises bitwise identical results for every
 * thread count. For several hand-picked problems (problem.h: causal, varlen,
 * GQA/MQA, masks, a 1000-token sequence, a long decode, and with the 0.2
 * options prefix-LM, position offsets and a compiled mask used by every
 * call) and for every supported ISA separately, o and lse from 1 thread are
 * compared with memcmp against 2..8 and 12 threads, num_threads = 0, a context,
 * and a caller-provided workspace. The 1-thread result is also checked
 * against the oracle (same rule as test_forward).
 *
 * The portable generic kernels are slow, so they run the long shapes marked
 * big = 1 at a quarter of the length (the 1000-token causal shape runs in
 * full on every ISA). ATTN_TEST_QUICK=1 quarters every long shape
 * (sanitizer builds). ATTN_TEST_NEW_OPTIONS=0 leaves out the shapes with
 * the 0.2 options.
 * Last line: "N passed, N failed".
 */
#include "attn.h"
#include "oracle_fwd.h"
#include "problem.h"
#include "test_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long n_pass, n_fail;

typedef struct dshape {
  const char *name;
  struct {
    int64_t batch, hq, hk, sq, sk, d, dv;
  } n;
  attn_dtype in_dt, out_dt;
  attn_causal causal;
  int window; /* 1: (wl, wr) below, else none */
  int64_t wl, wr;
  float softcap;
  int alibi, bias, mask, kvlens, bhsd;
  int nseq; /* > 0: varlen with these lengths */
  int64_t lq[4], lk[4];
  int big; /* 1: a quarter of the length for the (slow) generic ISA and
              under ATTN_TEST_QUICK; 2: only under ATTN_TEST_QUICK */
  /* the 0.2 options (shapes using them are skipped when switched off) */
  int new_options;
  int64_t prefix_len; /* used when > 0 */
  int64_t q_pos_offset, k_pos_offset;
  int pos_per_seq; /* offsets 5 - 7 b (queries) and 3 b (keys) */
  int compiled;    /* needs the compiled masks linked */
  int64_t t5;      /* > 0: a T5 table of this many buckets (0.3)   */
  int t5_bidirectional;
} dshape;

static const dshape shapes[] = {
    {"mha 129x129 d64", {2, 4, 4, 129, 129, 64, 64}, .in_dt = ATTN_DTYPE_F32},
    /* keys >= 8192: the forward runs query tiles in groups over key chunks
     * (fwd.c), 4 tiles a group on 1 thread, 2 on 2, none from 3 threads */
    {"long keys qgroups 150x8200 d32",
     {1, 4, 4, 150, 8200, 32, 32},
     .in_dt = ATTN_DTYPE_F32},
    {"long keys qgroups gqa causal-br window alibi kv_lens f16 150x8300",
     {1, 8, 2, 150, 8300, 64, 64},
     .in_dt = ATTN_DTYPE_F16,
     .causal = ATTN_CAUSAL_BOTTOM_RIGHT,
     .window = 1,
     .wl = 700,
     .wr = 0,
     .alibi = 1,
     .kvlens = 1,
     .big = 1},
    {"long keys qgroups causal-tl bf16 100x8250 d128",
     {1, 4, 4, 100, 8250, 128, 128},
     .in_dt = ATTN_DTYPE_BF16,
     .out_dt = ATTN_DTYPE_BF16,
     .causal = ATTN_CAUSAL_TOP_LEFT,
     .big = 1},
    {"gqa causal-br 200x333 d128 bf16",
     {2, 8, 2, 200, 333, 128, 128},
     .in_dt = ATTN_DTYPE_BF16,
     .causal = ATTN_CAUSAL_BOTTOM_RIGHT,
     .bhsd = 1},
    {"causal-tl window softcap alibi bias f16->bf16 d80/59",
     {1, 4, 2, 150, 97, 80, 59},
     .in_dt = ATTN_DTYPE_F16,
     .out_dt = ATTN_DTYPE_BF16,
     .causal = ATTN_CAUSAL_TOP_LEFT,
     .window = 1,
     .wl = 32,
     .wr = 0,
     .softcap = 20.0f,
     .alibi = 1,
     .bias = 1},
    {"varlen mqa kv_lens d96",
     {1, 6, 1, 0, 0, 96, 96},
     .causal = ATTN_CAUSAL_BOTTOM_RIGHT,
     .kvlens = 1,
     .nseq = 3,
     .lq = {100, 0, 257},
     .lk = {300, 17, 64}},
    {"mask window 70x90 d32",
     {3, 3, 1, 70, 90, 32, 32},
     .out_dt = ATTN_DTYPE_F16,
     .window = 1,
     .wl = 20,
     .wr = 40,
     .mask = 1},
    {"long causal 1000x1000 d64",
     {1, 2, 2, 1000, 1000, 64, 64},
     .causal = ATTN_CAUSAL_BOTTOM_RIGHT,
     .big = 2},
    {"long 1000x1000 d128 gqa bf16",
     {1, 4, 2, 1000, 1000, 128, 128},
     .in_dt = ATTN_DTYPE_BF16,
     .bhsd = 1,
     .big = 1},
    {"decode 1x4000 d128 gqa kv_lens",
     {2, 8, 2, 1, 4000, 128, 128},
     .causal = ATTN_CAUSAL_BOTTOM_RIGHT,
     .kvlens = 1,
     .big = 1},
    {"decode 4x2500 d64 mqa",
     {1, 8, 1, 4, 2500, 64, 64},
     .in_dt = ATTN_DTYPE_F16,
     .alibi = 1,
     .big = 1},
    {"prefix-lm window alibi offsets 140x170 d64",
     {2, 4, 2, 140, 170, 64, 64},
     .window = 1,
     .wl = 60,
     .wr = 10,
     .alibi = 1,
     .new_options = 1,
     .prefix_len = 50,
     .q_pos_offset = -20,
     .k_pos_offset = 7},
    {"varlen per-seq offsets causal-tl kv_lens d48",
     {1, 4, 4, 0, 0, 48, 48},
     .causal = ATTN_CAUSAL_TOP_LEFT,
     .kvlens = 1,
     .nseq = 3,
     .lq = {97, 1, 130},
     .lk = {129, 64, 49},
     .new_options = 1,
     .pos_per_seq = 1},
    {"compiled mask causal-br mask gqa 300x300 d64",
     {1, 6, 2, 300, 300, 64, 64},
     .causal = ATTN_CAUSAL_BOTTOM_RIGHT,
     .mask = 1,
     .new_options = 1,
     .compiled = 1},
    {"t5 32/128 causal-br gqa per-seq offsets 400x500 d64",
     {2, 4, 2, 400, 500, 64, 64},
     .causal = ATTN_CAUSAL_BOTTOM_RIGHT,
     .new_options = 1,
     .pos_per_seq = 1,
     .t5 = 32},
    {"t5 bidirectional 33/20 varlen softcap d32",
     {1, 4, 4, 0, 0, 32, 32},
     .softcap = 15.0f,
     .nseq = 3,
     .lq = {150, 1, 97},
     .lk = {200, 64, 97},
     .new_options = 1,
     .t5 = 33,
     .t5_bidirectional = 1},
    /* one or two heads of few query tiles: from 2 threads the forward
     * splits tiles into row ranges and may claim a short last tile last
     * (fwd.c split_for) */
    {"one head 128x128 d64",
     {1, 1, 1, 128, 128, 64, 64},
     .in_dt = ATTN_DTYPE_F32},
    {"one head 512x512 d64",
     {1, 1, 1, 512, 512, 64, 64},
     .in_dt = ATTN_DTYPE_F32},
    {"one head prefix-lm 131x131 d64",
     {1, 1, 1, 131, 131, 64, 64},
     .in_dt = ATTN_DTYPE_F32,
     .new_options = 1,
     .prefix_len = 40},
    {"one head compiled mask causal-br 250x260 d64",
     {1, 1, 1, 250, 260, 64, 64},
     .causal = ATTN_CAUSAL_BOTTOM_RIGHT,
     .mask = 1,
     .new_options = 1,
     .compiled = 1},
    {"two heads window softcap alibi bias t5 f16 200x210 d40/24",
     {1, 2, 1, 200, 210, 40, 24},
     .in_dt = ATTN_DTYPE_F16,
     .window = 1,
     .wl = 50,
     .wr = 20,
     .softcap = 10.0f,
     .alibi = 1,
     .bias = 1,
     .new_options = 1,
     .t5 = 16},
};
#define N_SHAPES ((int)(sizeof shapes / sizeof shapes[0]))

/* The tp_problem of shape s (at a quarter of the length with shrink). */
static void shape_problem(const dshape *s, int shrink, tp_problem *c) {
  int64_t sq = s->n.sq, sk = s->n.sk;
  if (shrink) {
    sq = sq > 1 ? sq / 4 : sq;
    sk = sk / 4;
  }
  tp_problem_init(c, s->n.batch, s->n.hq, s->n.hk, sq, sk, s->n.d, s->n.dv);
  c->seed = 0xDE7E12ull;
  c->in_dt = s->in_dt, c->out_dt = s->out_dt;
  c->order[TP_Q] = c->order[TP_K] = c->order[TP_V] = s->bhsd;
  c->causal = s->causal;
  if (s->window)
    c->wl = s->wl, c->wr = s->wr;
  c->softcap = s->softcap;
  c->alibi = s->alibi ? 2 : 0;
  if (s->bias) { /* [1, hq, sq, sk] broadcast over batch */
    c->bias = 1;
    c->bias_mode[0] = TP_AX_ONE;
  }
  if (s->mask) { /* [b, 1, sq, sk] */
    c->mask = 1;
    c->mask_mode[1] = TP_AX_ONE;
    c->mask_p = 0.6;
  }
  if (s->nseq)
    tp_problem_varlen(c, s->nseq, s->lq, s->lk);
  c->kvlens = s->kvlens;
  for (int64_t b = 0; s->kvlens && b < c->nseq; b++) {
    const int64_t n = s->nseq ? s->lk[b] : c->sk;
    c->kv_lens[b] = (int32_t)(b == 0 ? n : n * (b + 1) / 5);
  }
  c->prefix_len = s->prefix_len > 0 ? s->prefix_len : -1;
  c->q_pos_offset = s->q_pos_offset;
  c->k_pos_offset = s->k_pos_offset;
  c->pos_per_seq = s->pos_per_seq;
  for (int b = 0; b < TP_MAX_SEQS; b++)
    c->q_pos_offsets[b] = 5 - 7 * b, c->k_pos_offsets[b] = 3 * b;
  c->compiled = s->compiled;
  if (s->t5) {
    c->t5 = 1;
    c->t5_buckets = s->t5;
    c->t5_max_distance = s->t5_bidirectional ? 20 : 128;
    c->t5_bidirectional = s->t5_bidirectional;
    c->t5_mag = 1.0;
  }
}

typedef struct dref {
  const dshape *s;
  void *o;
  float *lse;
} dref;

static int same_as(const tp_bufs *m, const dref *r) {
  return memcmp(m->mem[TP_O], r->o, m->bytes[TP_O]) == 0 &&
         memcmp(m->lse_mem + 8, r->lse, (size_t)m->n_lse * sizeof(float)) == 0;
}

static void clear_outputs(tp_bufs *m) {
  memset(m->mem[TP_O], 0xEE, m->bytes[TP_O]);
  memset(m->lse_mem + 8, 0xEE, (size_t)m->n_lse * sizeof(float));
}

/* Through a context with 5 threads. */
static void run_context(attn_params *p, tp_bufs *m, attn_isa isa,
                        const dref *r) {
  attn_context *ctx = NULL;
  attn_context_options opt;
  attn_context_options_init(&opt);
  opt.num_threads = 5;
  opt.isa = isa;
  attn_status st = attn_context_create(&ctx, &opt);
  CHECK(st == ATTN_OK, "attn_context_create");
  if (st == ATTN_OK) {
    clear_outputs(m);
    p->num_threads = 0;
    p->isa = ATTN_ISA_AUTO;
    st = attn_forward(ctx, p);
    CHECK(st == ATTN_OK && same_as(m, r),
          "[%s] %s: context (5 threads) differs", r->s->name,
          attn_isa_name(isa));
    p->isa = isa;
  }
  attn_context_free(ctx);
}

/* Caller workspace, 1 and 4 threads. */
static void run_workspace(attn_params *p, tp_bufs *m, attn_isa isa,
                          const dref *r) {
  const int ths[2] = {1, 4};
  for (int i = 0; i < 2; i++) {
    char why[320] = "";
    p->num_threads = ths[i];
    const int ok = tp_attach_workspace(NULL, p, m, 0, why, sizeof why);
    CHECK(ok, "[%s] workspace size: %s", r->s->name, why);
    if (!ok)
      continue;
    memset(m->ws, 0xC3, p->workspace_size);
    clear_outputs(m);
    const attn_status st = attn_forward(NULL, p);
    CHECK(st == ATTN_OK && same_as(m, r),
          "[%s] %s: caller workspace (%zu bytes, %d threads) differs "
          "(status %d: %s)",
          r->s->name, attn_isa_name(isa), p->workspace_size, ths[i], (int)st,
          p->error_message);
    p->workspace = NULL;
    p->workspace_size = 0;
  }
}

/* Reference: 1 thread. Then every other way of running must match it. */
static void run_isa(const dshape *s, attn_params *p, tp_bufs *m, attn_isa isa,
                    const oracle_ref *ref, const oracle_naive *nv, int shrink) {
  oracle_cmp cmp;
  dref r = {s, NULL, NULL};
  p->isa = isa;
  p->num_threads = 1;
  p->workspace = NULL;
  p->workspace_size = 0;
  attn_status st = attn_forward(NULL, p);
  CHECK(st == ATTN_OK, "[%s] %s, 1 thread: %s (%s)", s->name,
        attn_isa_name(isa), attn_strerror(st), p->error_message);
  if (st != ATTN_OK)
    return;
  r.o = tc_alloc(m->bytes[TP_O]);
  r.lse = tc_alloc((size_t)m->n_lse * sizeof(float));
  memcpy(r.o, m->mem[TP_O], m->bytes[TP_O]);
  memcpy(r.lse, m->lse_mem + 8, (size_t)m->n_lse * sizeof(float));

  oracle_compare(p, ref, nv, &cmp); /* the reference run is also right */
  CHECK(cmp.ok, "[%s] %s: wrong result: %s", s->name, attn_isa_name(isa),
        cmp.problem);
  printf("  %-52s %-7s o err %.2e (naive %.2e)  lse err %.2e%s\n", s->name,
         attn_isa_name(isa), cmp.err_o, cmp.err_o_naive, cmp.err_lse,
         shrink ? "  (1/4 length)" : "");

  /* 0 (the library's choice), 2..8, and 12: a team larger than fwd.c's
   * FWD_SPLIT_TEAM, which plans its row ranges the older way */
  static const int teams[] = {0, 2, 3, 4, 5, 6, 7, 8, 12};
  for (size_t i = 0; i < sizeof teams / sizeof teams[0]; i++) {
    const int t = teams[i];
    clear_outputs(m);
    p->num_threads = t;
    st = attn_forward(NULL, p);
    CHECK(st == ATTN_OK && same_as(m, &r),
          "[%s] %s: %d threads differ from 1 thread (status %d)", s->name,
          attn_isa_name(isa), t, (int)st);
  }
  run_context(p, m, isa, &r);
  run_workspace(p, m, isa, &r);
  free(r.o);
  free(r.lse);
}

/* One shape at a given size on the ISAs listed. */
static void run_shape(const dshape *s, int shrink, const attn_isa *isas,
                      int n_isas) {
  attn_params p;
  tp_bufs m;
  tp_problem c;
  oracle_ref ref;
  oracle_naive nv;
  char err[256] = "";
  if (n_isas == 0)
    return;
  shape_problem(s, shrink, &c);
  tp_build(&c, &p, &m);
  p.error_message = err;
  p.error_message_size = sizeof err;
  CHECK(m.compile_status == ATTN_OK, "[%s] attn_mask_compile: %s", s->name,
        attn_strerror(m.compile_status));
  if (oracle_forward(&p, &ref) != 0 || oracle_naive_f32(&p, &nv) != 0) {
    printf("oracle: out of memory\n");
    exit(2);
  }
  for (int i = 0; i < n_isas && m.compile_status == ATTN_OK; i++)
    run_isa(s, &p, &m, isas[i], &ref, &nv, shrink);
  oracle_ref_free(&ref);
  oracle_naive_free(&nv);
  tp_bufs_free(&m);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* keep output if a sanitizer aborts */
  static const attn_isa all[5] = {ATTN_ISA_GENERIC, ATTN_ISA_AVX2,
                                  ATTN_ISA_AVX512, ATTN_ISA_AVX512_BF16,
                                  ATTN_ISA_AMX_BF16};
  const int quick = (int)tc_env_ll("ATTN_TEST_QUICK", 0) != 0;
  attn_isa fast[4];
  int n_fast = 0;
  double t0 = tc_now();
  for (int i = 0; i < 5; i++) {
    if (!attn_isa_supported(all[i]))
      printf("isa %s: not supported on this CPU, skipped\n",
             attn_isa_name(all[i]));
    else if (all[i] != ATTN_ISA_GENERIC)
      fast[n_fast++] = all[i];
  }
  for (int s = 0; s < N_SHAPES; s++) {
    const dshape *sh = &shapes[s];
    if ((sh->new_options && !tp_new_options()) ||
        (sh->compiled && !tp_compiled_masks())) {
      printf("  %-52s skipped (%s)\n", sh->name,
             tp_new_options() ? "compiled masks not linked"
                              : "ATTN_TEST_NEW_OPTIONS=0");
      continue;
    }
    if (quick && sh->big) {
      run_shape(sh, 1, all, 1);
      run_shape(sh, 1, fast, n_fast);
    } else if (sh->big == 1) { /* generic at a quarter of the length */
      run_shape(sh, 1, all, 1);
      run_shape(sh, 0, fast, n_fast);
    } else {
      run_shape(sh, 0, all, 1);
      run_shape(sh, 0, fast, n_fast);
    }
  }
  printf("time: %.1f s%s\n", tc_now() - t0, quick ? " (quick)" : "");
  printf("%ld passed, %ld failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
