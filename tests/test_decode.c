/*
 * test_decode: attn_forward with few query rows (seq_q <= ATTN_DECODE_MAX_ROWS
 * takes the split-KV decode kernel, src/kernels/decode.c) against the
 * double-precision oracle, on every ISA this CPU supports.
 *
 * Shapes are hand-picked where the decode kernel has edges: seq_q 1 .. 48,
 * seq_k 1, the sub-tile (64) and chunk (ATTN_DECODE_CHUNK = 512) edges +-1,
 * primes, 5000; GQA ratios 1, 2, 3, 4, 8, MQA; head dims 1, 7, 33, 64, 128,
 * 256 (and dv != d). Each shape gets random options from the problem
 * generator's vocabulary: dtypes (in and out), layouts and strides, causal in
 * both alignments, window, prefix-LM, kv_lens (empty sequences included),
 * position offsets, softcap, ALiBi, T5 buckets, scale, lse on/off, a
 * compiled mask, a caller workspace. Pass rule: oracle_compare's (oracle_fwd.h:
 * the error at most twice the naive f32 reference's plus a floor).
 *
 * Determinism: every case also runs with 2, 3 and 5 threads, which must give
 * the 1-thread bits exactly (o and lse).
 *
 * Environment: ATTN_TEST_SEED, ATTN_TEST_VERBOSE=1. Last line: "N passed, N
 * failed".
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

static const int64_t seq_qs[] = {1, 2, 3, 4, 5, 7, 8, 13, 16, 31, 47, 48};
static const int64_t seq_ks[] = {1,   2,   7,   63,   64,   65,   97,
                                 511, 512, 513, 1023, 1025, 1031, 5000};
static const int64_t heads[][2] = {{1, 1},  {2, 1},  {4, 1},  {8, 2}, {6, 3},
                                   {12, 4}, {16, 2}, {32, 8}, {5, 5}};
static const int64_t dims[][2] = {{1, 1},     {7, 7},   {33, 33}, {64, 64},
                                  {128, 128}, {64, 32}, {16, 48}, {256, 256}};

/* Bytes of o (its whole buffer) and lse of the problem's params. */
static void snapshot(const attn_params *p, const tp_bufs *m, uint8_t *o,
                     float *lse) {
  memcpy(o, m->mem[TP_O], m->bytes[TP_O]);
  if (p->lse)
    memcpy(lse, p->lse, sizeof(float) * (size_t)m->n_lse);
}

/* Random options for one shape, within what tp_build supports. */
static void draw_options(tc_rng *r, tp_problem *c) {
  static const attn_dtype dts[3] = {ATTN_DTYPE_F32, ATTN_DTYPE_BF16,
                                    ATTN_DTYPE_F16};
  c->in_dt = dts[tc_below(r, 3)];
  c->out_dt = dts[tc_below(r, 3)];
  for (int t = 0; t < TP_NT; t++) {
    c->order[t] = (int)tc_below(r, 2);
    c->padded[t] = tc_chance(r, 0.2);
    c->dstride[t] = tc_chance(r, 0.1) ? 2 : 1;
  }
  const int64_t mode = tc_below(r, 6);
  if (mode == 1)
    c->causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  else if (mode == 2)
    c->causal = ATTN_CAUSAL_TOP_LEFT;
  else if (mode == 3)
    c->prefix_len = tc_range(r, 0, c->sk);
  if (mode != 3 && tc_chance(r, 0.25)) {
    c->wl = tc_range(r, 0, c->sk);
    c->wr = tc_chance(r, 0.5) ? -1 : tc_range(r, 0, 9);
  }
  if (tc_chance(r, 0.3)) {
    c->kvlens = 1;
    for (int64_t b = 0; b < c->nseq; b++)
      c->kv_lens[b] = (int32_t)(tc_chance(r, 0.15) ? 0 : tc_range(r, 0, c->sk));
  }
  if (tp_new_options() && tc_chance(r, 0.25)) {
    c->q_pos_offset = tc_range(r, -40, 40);
    c->k_pos_offset = tc_range(r, -40, 40);
  }
  if (tc_chance(r, 0.2))
    c->softcap = (float)tc_uniform(r, 1.0, 30.0);
  if (tc_chance(r, 0.2))
    c->alibi = 1 + (int)tc_below(r, 2);
  if (tc_chance(r, 0.2)) {
    c->t5 = 1;
    c->t5_buckets = tc_range(r, 1, 40);
    c->t5_max_distance = tc_range(r, 1, 200);
    c->t5_bidirectional = tc_chance(r, 0.5);
    if (c->t5_bidirectional && c->t5_buckets < 2)
      c->t5_buckets = 2;
    c->t5_neginf = tc_chance(r, 0.2);
    c->t5_mag = 1.0;
  }
  if (tc_chance(r, 0.2))
    c->scale = (float)tc_uniform(r, 0.05, 1.0);
  if (tc_chance(r, 0.05))
    c->huge = 1;
  c->with_lse = tc_chance(r, 0.8);
  c->workspace = tc_chance(r, 0.2);
  c->compiled = tp_compiled_masks() && tc_chance(r, 0.1);
}

/* attn_forward on isa with nthreads; "" in why when it succeeded. */
static attn_status run(attn_params *p, tp_bufs *m, const tp_problem *c,
                       attn_isa isa, int nthreads, char *why, size_t n) {
  tp_reset_forward(c, p, m);
  p->isa = isa;
  p->num_threads = nthreads;
  p->workspace = NULL;
  p->workspace_size = 0;
  why[0] = '\0';
  if (c->workspace && !tp_attach_workspace(NULL, p, m, 0, why, n))
    return ATTN_ERR_WORKSPACE_TOO_SMALL;
  attn_status st = attn_forward(NULL, p);
  if (st != ATTN_OK)
    snprintf(why, n, "attn_forward: %s: %s", attn_strerror(st),
             p->error_message);
  return st;
}

static void one_case(const tp_problem *c, const attn_isa *isas, int n_isas,
                     int verbose) {
  attn_params p;
  tp_bufs m;
  oracle_ref ref;
  oracle_naive nv;
  char msg[256], why[320];
  tp_build(c, &p, &m);
  p.error_message = msg;
  p.error_message_size = sizeof msg;
  if (oracle_forward(&p, &ref) != 0 || oracle_naive_f32(&p, &nv) != 0) {
    fprintf(stderr, "test_decode: oracle out of memory\n");
    exit(2);
  }
  uint8_t *o1 = tc_alloc(m.bytes[TP_O]), *o2 = tc_alloc(m.bytes[TP_O]);
  float *l1 = tc_alloc(sizeof(float) * (size_t)(m.n_lse + 1));
  float *l2 = tc_alloc(sizeof(float) * (size_t)(m.n_lse + 1));
  for (int k = 0; k < n_isas; k++) {
    oracle_cmp cmp;
    if (run(&p, &m, c, isas[k], 1, why, sizeof why) == ATTN_OK) {
      oracle_compare(&p, &ref, &nv, &cmp);
      if (!cmp.ok)
        snprintf(why, sizeof why, "%s", cmp.problem);
      else
        tp_untouched(&m, why, sizeof why);
    }
    CHECK(why[0] == '\0', "isa %s: %s", attn_isa_name(isas[k]), why);
    if (why[0] != '\0' || verbose)
      tp_describe(stdout, c);
    if (verbose)
      printf("    %s: o err %.3g (naive %.3g) lse err %.3g (naive %.3g)\n",
             attn_isa_name(isas[k]), cmp.err_o, cmp.err_o_naive, cmp.err_lse,
             cmp.err_lse_naive);
    snapshot(&p, &m, o1, l1);
    static const int team[] = {2, 3, 5};
    for (int t = 0; t < 3; t++) {
      run(&p, &m, c, isas[k], team[t], why, sizeof why);
      snapshot(&p, &m, o2, l2);
      const int same =
          why[0] == '\0' && memcmp(o1, o2, m.bytes[TP_O]) == 0 &&
          (!p.lse || memcmp(l1, l2, sizeof(float) * (size_t)m.n_lse) == 0);
      CHECK(same, "isa %s: %d threads differ from 1 thread %s",
            attn_isa_name(isas[k]), team[t], why);
    }
  }
  free(o1);
  free(o2);
  free(l1);
  free(l2);
  oracle_ref_free(&ref);
  oracle_naive_free(&nv);
  tp_bufs_free(&m);
}

int main(void) {
  const uint64_t seed = tc_env_ull("ATTN_TEST_SEED", 0xDEC0DEull);
  const int verbose = tc_env_ll("ATTN_TEST_VERBOSE", 0) != 0;
  const int quick = tc_env_ll("ATTN_TEST_QUICK", 0) != 0;
  attn_isa isas[5];
  int n_isas = 0;
  for (int k = ATTN_ISA_GENERIC; k <= ATTN_ISA_AMX_BF16; k++)
    if (attn_isa_supported((attn_isa)k))
      isas[n_isas++] = (attn_isa)k;
  printf("test_decode: seed %#llx, ATTN_DECODE_CHUNK %d, max rows %d\n",
         (unsigned long long)seed, ATTN_DECODE_CHUNK, ATTN_DECODE_MAX_ROWS);
  const double t0 = tc_now();
  int cases = 0;
  const int nk = (int)(sizeof seq_ks / sizeof seq_ks[0]);
  const int nh = (int)(sizeof heads / sizeof heads[0]);
  const int nd = (int)(sizeof dims / sizeof dims[0]);
  for (size_t qi = 0; qi < sizeof seq_qs / sizeof seq_qs[0]; qi++) {
    for (int ki = 0; ki < nk; ki++) {
      tc_rng r = {tc_case_seed(seed, (uint64_t)(qi * 100 + (size_t)ki))};
      const int reps = quick ? 1 : 2;
      for (int rep = 0; rep < reps; rep++) {
        const int64_t *hh = heads[tc_below(&r, nh)];
        const int64_t *dd = dims[tc_below(&r, nd)];
        /* Keep the oracle's work moderate. */
        const int64_t sq = seq_qs[qi], sk = seq_ks[ki];
        const int64_t batch = sk * sq * hh[0] * (dd[0] + dd[1]) > 20000000
                                  ? 1
                                  : 1 + tc_below(&r, 3);
        if (sk * sq * hh[0] * (dd[0] + dd[1]) * batch > 60000000)
          continue;
        tp_problem c;
        tp_problem_init(&c, batch, hh[0], hh[1], sq, sk, dd[0], dd[1]);
        c.seed = tc_next(&r);
        draw_options(&r, &c);
        one_case(&c, isas, n_isas, verbose);
        cases++;
      }
    }
  }
  printf("%d cases, %.1f s\n", cases, tc_now() - t0);
  printf("%ld passed, %ld failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
