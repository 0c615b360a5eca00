/*
 * test_mask_compiled: masks compiled once by attn_mask_compile (attn.h,
 * "Compiled masks"), used by many calls through p.compiled_mask.
 *
 *   same results  random problems (problem.h, forward and backward
 *                 profiles): o, lse, dq, dk, dv, dbias with the compiled
 *                 mask are bitwise those of the call compiling its own;
 *   tile counts   attn_mask_tile_counts against the oracle's predicate
 *                 (oracle_mask.c): every tile with a visible element is
 *                 walked (FULL + PARTIAL >= non-empty tiles) and a FULL
 *                 tile has every element visible;
 *   status        a compiled mask used with other shapes or other mask
 *                 options (causal, window, prefix, positions, kv_lens,
 *                 cu_seqlens, mask tensor) is ATTN_ERR_INVALID_ARGUMENT for
 *                 attn_forward(_check) and attn_backward(_check); other
 *                 data, scores options, threads and ISAs are fine;
 *                 attn_mask_compile's own errors.
 * Only built when the library has compiled masks (ATTN_TEST_MASK_COMPILE);
 * ATTN_TEST_NEW_OPTIONS=0 skips everything. Environment: ATTN_TEST_CASES
 * (random problems, default 300), ATTN_TEST_SEED.
 * Last line: "N passed, N failed".
 */
#include "attn.h"
#include "oracle_mask.h"
#include "problem.h"
#include "test_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long n_pass, n_fail;

/* ---------------------------------------------------------------------- */
/* Tile counts against the oracle                                         */
/* ---------------------------------------------------------------------- */
typedef struct tile_truth {
  int64_t nonempty; /* tiles with at least one visible element           */
  int64_t full;     /* tiles whose every in-range element is visible     */
} tile_truth;

static void truth_tile(const attn_params *p, const oracle_seq_geom *g,
                       int64_t h, int64_t qt, int64_t kt, tile_truth *t) {
  int64_t seen = 0, all = 0;
  for (int64_t i = qt * ATTN_TILE_Q; i < (qt + 1) * ATTN_TILE_Q && i < g->sq;
       i++)
    for (int64_t j = kt * ATTN_TILE_K; j < (kt + 1) * ATTN_TILE_K && j < g->sk;
         j++) {
      all++;
      seen += oracle_allowed(p, g, h, i, j);
    }
  t->nonempty += seen > 0;
  t->full += all > 0 && seen == all;
}

/* Over every sequence, mask head and (query tile, key tile). */
static void tile_truth_get(const attn_params *p, tile_truth *t) {
  const int64_t mheads =
      p->mask.data && p->mask.shape[1] > 1 ? p->q.shape[2] : 1;
  memset(t, 0, sizeof *t);
  for (int64_t b = 0; b < oracle_num_seqs(p); b++) {
    oracle_seq_geom g;
    oracle_seq_geom_get(p, b, &g);
    for (int64_t h = 0; h < mheads; h++)
      for (int64_t qt = 0; qt * ATTN_TILE_Q < g.sq; qt++)
        for (int64_t kt = 0; kt * ATTN_TILE_K < g.sk; kt++)
          truth_tile(p, &g, h, qt, kt, t);
  }
}

static void check_tile_counts(const tp_problem *c, const attn_params *p,
                              const attn_mask *m) {
  int64_t full = -1, partial = -1, empty = -1;
  tile_truth t;
  const attn_status st = tp_mask_tile_counts(m, &full, &partial, &empty);
  CHECK(st == ATTN_OK, "case %d: attn_mask_tile_counts: %s", c->index,
        attn_strerror(st));
  if (st != ATTN_OK)
    return;
  tile_truth_get(p, &t);
  CHECK(full >= 0 && partial >= 0 && empty >= 0,
        "case %d: tile counts %lld full, %lld partial, %lld empty", c->index,
        (long long)full, (long long)partial, (long long)empty);
  CHECK(full + partial >= t.nonempty,
        "case %d: %lld FULL + %lld PARTIAL tiles, but %lld tiles have a "
        "visible element",
        c->index, (long long)full, (long long)partial, (long long)t.nonempty);
  CHECK(full <= t.full,
        "case %d: %lld FULL tiles, but only %lld have every element visible",
        c->index, (long long)full, (long long)t.full);
}

/* ---------------------------------------------------------------------- */
/* Same results with and without the compiled mask                        */
/* ---------------------------------------------------------------------- */
typedef struct snapshot {
  void *o, *g[4];
  float *lse;
} snapshot;

static void snap_take(const tp_bufs *m, int backward, snapshot *s) {
  void *src[4] = {m->mem[TP_DQ], m->mem[TP_DK], m->mem[TP_DV], m->dbias};
  const size_t n[4] = {m->bytes[TP_DQ], m->bytes[TP_DK], m->bytes[TP_DV],
                       m->dbias_bytes};
  memset(s, 0, sizeof *s);
  s->o = tc_alloc(m->bytes[TP_O]);
  memcpy(s->o, m->mem[TP_O], m->bytes[TP_O]);
  s->lse = tc_alloc((size_t)(m->n_lse + 16) * sizeof(float));
  memcpy(s->lse, m->lse_mem, (size_t)(m->n_lse + 16) * sizeof(float));
  for (int t = 0; backward && t < 4; t++)
    if (n[t]) {
      s->g[t] = tc_alloc(n[t]);
      memcpy(s->g[t], src[t], n[t]);
    }
}

/* Name of the first output that differs from the snapshot, or NULL. */
static const char *snap_differs(const tp_bufs *m, int backward,
                                const snapshot *s) {
  static const char *const gn[4] = {"dq", "dk", "dv", "dbias"};
  const void *cur[4] = {m->mem[TP_DQ], m->mem[TP_DK], m->mem[TP_DV], m->dbias};
  const size_t n[4] = {m->bytes[TP_DQ], m->bytes[TP_DK], m->bytes[TP_DV],
                       m->dbias_bytes};
  if (memcmp(s->o, m->mem[TP_O], m->bytes[TP_O]) != 0)
    return "o";
  if (memcmp(s->lse, m->lse_mem, (size_t)(m->n_lse + 16) * sizeof(float)))
    return "lse";
  for (int t = 0; backward && t < 4; t++)
    if (n[t] && memcmp(s->g[t], cur[t], n[t]) != 0)
      return gn[t];
  return NULL;
}

static void snap_free(snapshot *s) {
  free(s->o), free(s->lse);
  for (int t = 0; t < 4; t++)
    free(s->g[t]);
}

/* Forward (and backward) as the problem says; 0 and a message on error. */
static int run_calls(const tp_problem *c, attn_params *p, tp_bufs *m) {
  tp_reset_forward(c, p, m);
  attn_status st = attn_forward(NULL, p);
  if (st == ATTN_OK && c->grads) {
    tp_reset_backward(m);
    st = attn_backward(NULL, p);
  }
  CHECK(st == ATTN_OK, "case %d (%s mask): %s: %s", c->index,
        p->compiled_mask ? "compiled" : "own", attn_strerror(st),
        p->error_message);
  return st == ATTN_OK;
}

static void random_case(uint64_t seed, int index) {
  tp_problem c;
  attn_params p;
  tp_bufs m;
  snapshot s;
  char err[256] = "";
  tp_generate(&c, index % 2 ? &tp_profile_backward : &tp_profile_forward, seed,
              index);
  c.compiled = 0;
  c.workspace = 0;
  tp_build(&c, &p, &m);
  p.error_message = err;
  p.error_message_size = sizeof err;
  if (run_calls(&c, &p, &m)) {
    snap_take(&m, c.grads, &s);
    const attn_status st = tp_mask_compile(&p, &m.cmask);
    CHECK(st == ATTN_OK, "case %d: attn_mask_compile: %s (%s)", index,
          attn_strerror(st), err);
    if (st == ATTN_OK) {
      p.compiled_mask = m.cmask;
      check_tile_counts(&c, &p, m.cmask);
      if (run_calls(&c, &p, &m)) {
        const char *d = snap_differs(&m, c.grads, &s);
        CHECK(d == NULL, "case %d: %s with the compiled mask differs", index,
              d ? d : "");
        if (d)
          tp_describe(stdout, &c);
      }
    }
    snap_free(&s);
  }
  tp_bufs_free(&m);
}

/* ---------------------------------------------------------------------- */
/* Status                                                                 */
/* ---------------------------------------------------------------------- */

/* All four entry points on q must give want. */
static void expect4(const char *what, attn_params *q, attn_status want) {
  const attn_status s[4] = {attn_forward_check(q), attn_forward(NULL, q),
                            attn_backward_check(q), attn_backward(NULL, q)};
  static const char *const fn[4] = {"attn_forward_check", "attn_forward",
                                    "attn_backward_check", "attn_backward"};
  for (int i = 0; i < 4; i++)
    CHECK(s[i] == want, "%s: %s returned %d (%s), want %d (%s): %s", what,
          fn[i], (int)s[i], attn_strerror(s[i]), (int)want, attn_strerror(want),
          q->error_message);
}

/* A valid problem with the backward attached; mask tensor or not. */
static void status_problem(tp_problem *c, int with_mask, int varlen) {
  tp_problem_init(c, 2, 4, 2, 50, 70, 8, 8);
  c->grads = 1;
  c->causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  c->wl = 10, c->wr = 5;
  c->kvlens = 1;
  c->kv_lens[0] = 60, c->kv_lens[1] = 33;
  c->q_pos_offset = 3, c->k_pos_offset = -2;
  c->mask = with_mask;
  c->mask_p = 0.8;
  c->compiled = 1;
  if (varlen) {
    const int64_t lq[2] = {20, 30}, lk[2] = {40, 30};
    tp_problem_varlen(c, 2, lq, lk);
    c->kv_lens[0] = 40, c->kv_lens[1] = 17;
  }
}

#define MUT(what, want, stmt)                                                  \
  do {                                                                         \
    q = p;                                                                     \
    stmt;                                                                      \
    expect4(what, &q, want);                                                   \
  } while (0)

/* Other shapes (views kept consistent, so only the mask can object). */
static void status_shapes(void) {
  tp_problem c;
  attn_params p, q;
  tp_bufs m;
  char err[256] = "";
  status_problem(&c, 0, 0);
  tp_build(&c, &p, &m);
  p.error_message = err, p.error_message_size = sizeof err;
  CHECK(m.compile_status == ATTN_OK, "compile: %s", err);
  if (m.compile_status == ATTN_OK && attn_forward(NULL, &p) == ATTN_OK) {
    expect4("the shapes it was compiled for", &p, ATTN_OK);
    MUT("seq_q 49", ATTN_ERR_INVALID_ARGUMENT,
        q.q.shape[1] = q.o.shape[1] = q.dout.shape[1] = q.dq.shape[1] = 49);
    MUT("seq_k 69", ATTN_ERR_INVALID_ARGUMENT,
        q.k.shape[1] = q.v.shape[1] = q.dk.shape[1] = q.dv.shape[1] = 69);
    MUT("batch 1", ATTN_ERR_INVALID_ARGUMENT,
        q.q.shape[0] = q.k.shape[0] = q.v.shape[0] = q.o.shape[0] = 1;
        q.dout.shape[0] = q.dq.shape[0] = q.dk.shape[0] = q.dv.shape[0] = 1);
    MUT("heads_q 2", ATTN_ERR_INVALID_ARGUMENT,
        q.q.shape[2] = q.o.shape[2] = q.dout.shape[2] = q.dq.shape[2] = 2);
    /* what the mask does not depend on */
    MUT("scale, softcap", ATTN_OK, q.scale = 0.3f; q.softcap = 5.0f);
    MUT("threads, isa", ATTN_OK, q.num_threads = 3; q.isa = ATTN_ISA_GENERIC);
    MUT("other q data", ATTN_OK, q.q.data = m.mem[TP_DOUT];
        q.q.dtype = q.dout.dtype);
  }
  tp_bufs_free(&m);
}

/* Other mask options. */
static void status_options(int varlen) {
  tp_problem c;
  attn_params p, q;
  tp_bufs m;
  char err[256] = "";
  int32_t kvl[2], cu[3];
  int64_t offs[2] = {1, -1};
  static float bias_one[1] = {0.5f};
  status_problem(&c, !varlen, varlen);
  tp_build(&c, &p, &m);
  p.error_message = err, p.error_message_size = sizeof err;
  CHECK(m.compile_status == ATTN_OK, "compile: %s", err);
  if (m.compile_status != ATTN_OK || attn_forward(NULL, &p) != ATTN_OK) {
    CHECK(0, "status problem: %s", err);
    tp_bufs_free(&m);
    return;
  }
  memcpy(kvl, p.kv_lens, sizeof kvl);
  kvl[1]--;
  MUT("causal top-left", ATTN_ERR_INVALID_ARGUMENT,
      q.causal = ATTN_CAUSAL_TOP_LEFT);
  MUT("causal none", ATTN_ERR_INVALID_ARGUMENT, q.causal = ATTN_CAUSAL_NONE);
  MUT("window_left", ATTN_ERR_INVALID_ARGUMENT, q.window_left = 11);
  MUT("window_right", ATTN_ERR_INVALID_ARGUMENT, q.window_right = -1);
  MUT("prefix_len", ATTN_ERR_INVALID_ARGUMENT, q.causal = ATTN_CAUSAL_NONE;
      q.prefix_len = 4);
  MUT("q_pos_offset", ATTN_ERR_INVALID_ARGUMENT, q.q_pos_offset = 4);
  MUT("k_pos_offset", ATTN_ERR_INVALID_ARGUMENT, q.k_pos_offset = 0);
  MUT("q_pos_offsets", ATTN_ERR_INVALID_ARGUMENT, q.q_pos_offsets = offs);
  MUT("k_pos_offsets", ATTN_ERR_INVALID_ARGUMENT, q.k_pos_offsets = offs);
  MUT("kv_lens values", ATTN_ERR_INVALID_ARGUMENT, q.kv_lens = kvl);
  MUT("no kv_lens", ATTN_ERR_INVALID_ARGUMENT, q.kv_lens = NULL);
  if (varlen) {
    memcpy(cu, p.cu_seqlens_q, sizeof cu);
    cu[1]++;
    MUT("cu_seqlens_q values", ATTN_ERR_INVALID_ARGUMENT, q.cu_seqlens_q = cu);
  } else {
    const size_t n = (size_t)(p.mask.shape[0] * p.mask.stride[0]);
    uint8_t *copy = tc_alloc(n + 64);
    memcpy(copy, p.mask.data, n);
    MUT("another mask tensor", ATTN_ERR_INVALID_ARGUMENT, q.mask.data = copy);
    MUT("no mask tensor", ATTN_ERR_INVALID_ARGUMENT, q.mask.data = NULL);
    free(copy);
  }
  MUT("bias added (not a mask option)", ATTN_OK,
      q.bias = attn_tensor_contiguous(bias_one, ATTN_DTYPE_F32, 1, 1, 1, 1));
  tp_bufs_free(&m);
}

static void status_compile(void) {
  tp_problem c;
  attn_params p;
  tp_bufs m;
  attn_mask *mk = NULL;
  int64_t f, pa, e;
  status_problem(&c, 0, 0);
  c.compiled = 0;
  tp_build(&c, &p, &m);
  CHECK(tp_mask_compile(NULL, &mk) == ATTN_ERR_NULL_POINTER,
        "attn_mask_compile(NULL, &m)");
  CHECK(tp_mask_compile(&p, NULL) == ATTN_ERR_NULL_POINTER,
        "attn_mask_compile(p, NULL)");
  p.prefix_len = 2;
  CHECK(tp_mask_compile(&p, &mk) == ATTN_ERR_INVALID_ARGUMENT,
        "attn_mask_compile of prefix_len with causal");
  p.prefix_len = -1;
  CHECK(tp_mask_tile_counts(NULL, &f, &pa, &e) == ATTN_ERR_NULL_POINTER,
        "attn_mask_tile_counts(NULL, ...)");
  tp_mask_free(NULL);
  tp_bufs_free(&m);
  /* no mask at all, whole tiles: every tile FULL */
  tp_problem_init(&c, 1, 2, 1, 2 * ATTN_TILE_Q, 3 * ATTN_TILE_K, 16, 16);
  c.compiled = 1;
  tp_build(&c, &p, &m);
  f = pa = e = -1;
  if (m.compile_status == ATTN_OK)
    tp_mask_tile_counts(m.cmask, &f, &pa, &e);
  CHECK(f == 6 && pa == 0 && e == 0,
        "no mask, 2 x 3 whole tiles: %lld full, %lld partial, %lld empty",
        (long long)f, (long long)pa, (long long)e);
  tp_bufs_free(&m);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  const unsigned long long seed = tc_env_ull("ATTN_TEST_SEED", 0xC0111EDull);
  const long long n_cases = tc_env_ll("ATTN_TEST_CASES", 300);
  const double t0 = tc_now();
  if (!tp_compiled_masks()) {
    printf("test_mask_compiled: %s: nothing to test\n",
           tp_mask_linked ? "ATTN_TEST_NEW_OPTIONS=0"
                          : "compiled masks not linked");
    printf("0 passed, 0 failed\n");
    return 0;
  }
  printf("test_mask_compiled: seed 0x%llx (ATTN_TEST_SEED), %lld cases "
         "(ATTN_TEST_CASES)\n",
         seed, n_cases);
  status_compile();
  status_shapes();
  status_options(0);
  status_options(1);
  for (long long i = 0; i < n_cases; i++)
    random_case(seed, (int)i);
  printf("time: %.1f s\n", tc_now() - t0);
  printf("%ld passed, %ld failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
