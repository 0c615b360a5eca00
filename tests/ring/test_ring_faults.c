/*
 * test_ring_faults.c - allocation and thread-start failures inside ring
 * attention (issue 15, "Faults"), on 2 ranks (mpirun -np 2 in ctest).
 *
 * attn_ring_forward and attn_ring_backward, each first counted (the
 * allocations and thread starts each rank makes), then run once per
 * (victim rank, n): on the victim the n-th allocation (or thread start)
 * fails, the other ranks run unarmed. Every try must
 *   - give every rank the same status (the ring agrees on failures: a rank
 *     that cannot allocate must not leave the others waiting, and a hang
 *     is caught by ctest's TIMEOUT), ATTN_ERR_OUT_OF_MEMORY or ATTN_OK;
 *   - with ATTN_OK, give bitwise the unarmed run's outputs;
 *   - leave no new live allocation on any rank (fault_inject.h's account);
 * and after each sweep an unarmed call gives the reference bits again.
 * A thread that cannot start is replaced by its caller (attn.h), so thread
 * failures must give ATTN_OK and the reference bits.
 *
 * Linked with the static libraries and the --wrap options of test_faults
 * (tests/CMakeLists.txt); Open MPI's own allocations are in its shared
 * library and not seen.
 */
#include "attn/ring.h"
#include "fault_inject.h"
#include "test_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

long n_pass, n_fail;
static int g_rank, g_size;

enum { B = 1, N = 37, HQ = 4, HKV = 2, D = 8, DV = 8 };

typedef struct state {
  attn_context *ctx;
  attn_params p;
  attn_ring_opts ro;
  char msg[300];
  float q[B * N * HQ * D], k[B * N * HKV * D], v[B * N * HKV * DV];
  float dout[B * N * HQ * DV];
  float o[B * N * HQ * DV], lse[B * HQ * N];
  float dq[B * N * HQ * D], dk[B * N * HKV * D], dv[B * N * HKV * DV];
} state;

/* The outputs of pass (0 forward, 1 backward), for comparing bits. */
static void outputs(state *s, int pass, const float *parts[3], size_t n[3]) {
  if (pass == 0) {
    parts[0] = s->o, n[0] = sizeof s->o;
    parts[1] = s->lse, n[1] = sizeof s->lse;
    parts[2] = NULL, n[2] = 0;
  } else {
    parts[0] = s->dq, n[0] = sizeof s->dq;
    parts[1] = s->dk, n[1] = sizeof s->dk;
    parts[2] = s->dv, n[2] = sizeof s->dv;
  }
}

/* Poisons the outputs of pass, runs it. */
static attn_status call(state *s, int pass) {
  const float *parts[3];
  size_t n[3];
  outputs(s, pass, parts, n);
  for (int i = 0; i < 3; i++)
    if (parts[i])
      memset((void *)parts[i], 0xA5, n[i]);
  s->msg[0] = 0;
  return pass == 0 ? attn_ring_forward(s->ctx, MPI_COMM_WORLD, &s->ro, &s->p)
                   : attn_ring_backward(s->ctx, MPI_COMM_WORLD, &s->ro, &s->p);
}

static int same_bits(state *s, int pass, float *const ref[3]) {
  const float *parts[3];
  size_t n[3];
  outputs(s, pass, parts, n);
  for (int i = 0; i < 3; i++)
    if (parts[i] && memcmp(parts[i], ref[i], n[i]) != 0)
      return 0;
  return 1;
}

static int all_equal(int x) {
  int lo, hi;
  MPI_Allreduce(&x, &lo, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(&x, &hi, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return lo == hi;
}

static long max_over_ranks(long x) {
  long m;
  MPI_Allreduce(&x, &m, 1, MPI_LONG, MPI_MAX, MPI_COMM_WORLD);
  return m;
}

/* A context of 2 threads whose workers start on its first call. */
static attn_context *fresh_context(void) {
  attn_context_options co;
  attn_context_options_init(&co);
  co.num_threads = 2;
  attn_context *c = NULL;
  if (attn_context_create(&c, &co) != ATTN_OK)
    MPI_Abort(MPI_COMM_WORLD, 1);
  return c;
}

/* One sweep: kind FI_ALLOC or FI_THREAD, pass 0/1. Thread starts are
 * tried on a fresh context each time (its pool starts its workers on the
 * first call). */
static void sweep(state *s, int pass, int kind, float *const ref[3]) {
  const char *what = pass == 0 ? "attn_ring_forward" : "attn_ring_backward";
  long allocs = 0, threads = 0;
  if (kind == FI_THREAD) {
    attn_context_free(s->ctx);
    s->ctx = fresh_context();
  }
  fi_arm_count();
  attn_status st = call(s, pass);
  fi_disarm(&allocs, &threads);
  CHECK(st == ATTN_OK, "%s: counting run status %d (%s)\n", what, (int)st,
        s->msg);
  const long tries = max_over_ranks(kind == FI_ALLOC ? allocs : threads);
  long failed = 0, absorbed = 0;
  for (int victim = 0; victim < g_size; victim++)
    for (long n = 1; n <= tries; n++) {
      /* thread starts: a fresh context, counted in the account and freed
       * after the try (what its pool keeps is its own, not a leak) */
      if (kind == FI_THREAD)
        attn_context_free(s->ctx);
      const long live0 = fi_live(NULL);
      if (kind == FI_THREAD)
        s->ctx = fresh_context();
      if (g_rank == victim)
        fi_arm_fail(kind, n, 0);
      st = call(s, pass);
      const int fired = g_rank == victim ? fi_disarm(NULL, NULL) : 0;
      const int ok_bits = st == ATTN_OK && same_bits(s, pass, ref);
      if (kind == FI_THREAD) {
        attn_context_free(s->ctx);
        s->ctx = NULL;
      }
      const long leaked = fi_live(NULL) - live0;
      if (kind == FI_THREAD)
        s->ctx = fresh_context();
      int any_fired = 0;
      MPI_Allreduce(&fired, &any_fired, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
      CHECK(all_equal((int)st),
            "%s: %s %ld failing on rank %d: ranks disagree (rank %d: %d, %s)\n",
            what, kind == FI_ALLOC ? "allocation" : "thread start", n, victim,
            g_rank, (int)st, s->msg);
      if (kind == FI_THREAD || st == ATTN_OK) {
        CHECK(ok_bits,
              "%s: %s %ld failing on rank %d: status %d (%s) or other bits\n",
              what, kind == FI_ALLOC ? "allocation" : "thread start", n, victim,
              (int)st, s->msg);
        absorbed += any_fired;
      } else {
        CHECK(st == ATTN_ERR_OUT_OF_MEMORY && (g_rank != victim || s->msg[0]),
              "%s: allocation %ld failing on rank %d: status %d (%s)\n", what,
              n, victim, (int)st, s->msg);
      }
      CHECK(leaked == 0, "%s: %ld allocations left live on rank %d\n", what,
            leaked, g_rank);
      failed += any_fired;
    }
  st = call(s, pass);
  CHECK(st == ATTN_OK && same_bits(s, pass, ref),
        "%s: unarmed call after the sweep: status %d (%s) or other bits\n",
        what, (int)st, s->msg);
  if (g_rank == 0)
    printf("%-20s %-13s up to %3ld per rank, %3ld failed (%ld absorbed)\n",
           what, kind == FI_ALLOC ? "allocations" : "thread starts", tries,
           failed, absorbed);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  state *s = calloc(1, sizeof *s);
  if (!s) {
    MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
  }
  tc_rng rng = {0x5eed + (uint64_t)g_rank};
  float *in[4] = {s->q, s->k, s->v, s->dout};
  const size_t nin[4] = {B * N * HQ * D, B * N * HKV * D, B * N * HKV * DV,
                         B * N * HQ * DV};
  for (int i = 0; i < 4; i++)
    for (size_t x = 0; x < nin[i]; x++)
      in[i][x] = (float)tc_normal(&rng);
  s->ctx = fresh_context();
  attn_params_init(&s->p);
  s->p.q = attn_tensor_bshd(s->q, ATTN_DTYPE_F32, B, N, HQ, D);
  s->p.k = attn_tensor_bshd(s->k, ATTN_DTYPE_F32, B, N, HKV, D);
  s->p.v = attn_tensor_bshd(s->v, ATTN_DTYPE_F32, B, N, HKV, DV);
  s->p.o = attn_tensor_bshd(s->o, ATTN_DTYPE_F32, B, N, HQ, DV);
  s->p.lse = s->lse;
  s->p.dout = attn_tensor_bshd(s->dout, ATTN_DTYPE_F32, B, N, HQ, DV);
  s->p.dq = attn_tensor_bshd(s->dq, ATTN_DTYPE_F32, B, N, HQ, D);
  s->p.dk = attn_tensor_bshd(s->dk, ATTN_DTYPE_F32, B, N, HKV, D);
  s->p.dv = attn_tensor_bshd(s->dv, ATTN_DTYPE_F32, B, N, HKV, DV);
  s->p.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  s->p.error_message = s->msg;
  s->p.error_message_size = sizeof s->msg;
  attn_ring_opts_init(&s->ro);
  s->ro.layout = ATTN_RING_ZIGZAG;

  /* references: an unarmed forward, then backward */
  static float ro_[B * N * HQ * DV], rl[B * HQ * N];
  static float rq[B * N * HQ * D], rk[B * N * HKV * D], rv[B * N * HKV * DV];
  attn_status st = call(s, 0);
  CHECK(st == ATTN_OK, "reference forward: %d (%s)\n", (int)st, s->msg);
  memcpy(ro_, s->o, sizeof ro_);
  memcpy(rl, s->lse, sizeof rl);
  st = call(s, 1);
  CHECK(st == ATTN_OK, "reference backward: %d (%s)\n", (int)st, s->msg);
  memcpy(rq, s->dq, sizeof rq);
  memcpy(rk, s->dk, sizeof rk);
  memcpy(rv, s->dv, sizeof rv);
  float *const fref[3] = {ro_, rl, NULL}, *const bref[3] = {rq, rk, rv};

  sweep(s, 0, FI_ALLOC, fref);
  sweep(s, 1, FI_ALLOC, bref);
  sweep(s, 0, FI_THREAD, fref);
  sweep(s, 1, FI_THREAD, bref);

  attn_context_free(s->ctx);
  free(s);
  long tot[2] = {n_pass, n_fail}, all[2];
  MPI_Allreduce(tot, all, 2, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
  if (g_rank == 0)
    printf("%ld passed, %ld failed\n", all[0], all[1]);
  MPI_Finalize();
  return all[1] != 0;
}
